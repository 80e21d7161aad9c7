//! A bound on the warnings one failing target writes.
//!
//! During an outage every request to a dead target fails, and a warning per failed attempt
//! would be thousands of lines a second. A target writes at most [`PER_SECOND`] failure
//! warnings in each second; the ones held back are counted and the count rides on the next
//! line written (`suppressed = N`). The metrics count every failure.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failure warnings one target writes a second.
pub const PER_SECOND: u32 = 5;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Counts one target's warnings in the current second.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// The second (since the process started) being counted.
    second: AtomicU64,
    written: AtomicU32,
    suppressed: AtomicU32,
}

impl LogThrottle {
    /// `Some(warnings held back since the last one written)` when this one may be written.
    pub fn admit(&self) -> Option<u32> {
        self.admit_at(START.elapsed())
    }

    fn admit_at(&self, now: Duration) -> Option<u32> {
        let second = now.as_secs();
        let counted = self.second.load(Ordering::Relaxed);
        if second > counted
            && self
                .second
                .compare_exchange(counted, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.written.store(0, Ordering::Relaxed);
        }
        if self.written.fetch_add(1, Ordering::Relaxed) < PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_burst_a_second_and_reports_what_it_held_back() {
        let t = LogThrottle::default();
        let at = |ms| Duration::from_millis(ms);
        let first: Vec<_> = (0..PER_SECOND)
            .map(|i| t.admit_at(at(u64::from(i))))
            .collect();
        assert_eq!(first, vec![Some(0); PER_SECOND as usize]);
        for _ in 0..7 {
            assert_eq!(t.admit_at(at(900)), None);
        }
        assert_eq!(t.admit_at(at(1_000)), Some(7));
        assert_eq!(t.admit_at(at(1_001)), Some(0));
        // A quiet spell: the next second starts a fresh burst.
        assert_eq!(t.admit_at(at(60_000)), Some(0));
    }
}

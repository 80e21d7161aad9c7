//! Adaptive concurrency limits for upstreams (AIMD).
//!
//! Each upstream with `adaptive_concurrency` has a limit on requests in flight. A response
//! that is fast enough (head within `latency_threshold`) and not a 5xx raises the limit by
//! `1/limit` — about +1 per limit's worth of good responses (additive increase); a slow
//! response, a 5xx or a failed request cuts it by 10 % (multiplicative decrease), never below
//! `min` nor above `max`. Requests over the limit are shed at once with 503 and `Retry-After`,
//! before a struggling upstream is pushed over the edge. AIMD needs no model of the upstream,
//! reacts within one round trip, and converges to a fair share when several gateways share
//! one upstream.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Settings from `adaptive_concurrency = { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveSettings {
    /// Starting limit.
    pub initial: u32,
    /// The limit never falls below this.
    pub min: u32,
    /// Nor rises above this.
    pub max: u32,
    /// A response head slower than this counts as a sign of overload.
    pub latency_threshold: Duration,
}

/// Decrease factor on overload.
const BACKOFF: f64 = 0.9;

/// The limit and in-flight count of one upstream.
pub struct AdaptiveLimit {
    settings: AdaptiveSettings,
    limit: Mutex<f64>,
    in_flight: AtomicU32,
}

/// A request admitted under the limit; report how it went with [`Permit::done`].
pub struct Permit {
    limiter: Arc<AdaptiveLimit>,
    started: Instant,
}

impl AdaptiveLimit {
    /// A limiter starting at `settings.initial`.
    pub fn new(settings: AdaptiveSettings) -> Arc<Self> {
        let initial = f64::from(
            settings
                .initial
                .clamp(settings.min.max(1), settings.max.max(1)),
        );
        Arc::new(Self {
            settings,
            limit: Mutex::new(initial),
            in_flight: AtomicU32::new(0),
        })
    }

    /// The current limit (whole requests).
    pub fn limit(&self) -> u32 {
        *self.lock() as u32
    }

    /// Admits a request if fewer than the limit are in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limit();
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Permit {
            limiter: self.clone(),
            started: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        self.limit.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, overloaded: bool) {
        let (min, max) = (
            f64::from(self.settings.min.max(1)),
            f64::from(self.settings.max.max(1)),
        );
        let mut limit = self.lock();
        *limit = match overloaded {
            true => (*limit * BACKOFF).max(min),
            false => (*limit + 1.0 / *limit).min(max),
        };
    }
}

impl Permit {
    /// Reports the outcome: `failed` for a 5xx or a request that got no response. A permit
    /// dropped without a report (the client went away) frees its slot and says nothing.
    pub fn done(self, failed: bool) {
        let slow = self.started.elapsed() > self.limiter.settings.latency_threshold;
        self.limiter.record(failed || slow);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Arc<AdaptiveLimit> {
        AdaptiveLimit::new(AdaptiveSettings {
            initial: 10,
            min: 2,
            max: 20,
            latency_threshold: Duration::from_secs(60),
        })
    }

    #[test]
    fn admits_up_to_the_limit_and_frees_on_drop() {
        let l = limiter();
        let permits: Vec<_> = (0..10).filter_map(|_| l.try_acquire()).collect();
        assert_eq!(permits.len(), 10);
        assert!(l.try_acquire().is_none());
        drop(permits);
        assert!(l.try_acquire().is_some());
    }

    #[test]
    fn failures_shrink_to_min_and_successes_grow_back_to_max() {
        let l = limiter();
        for _ in 0..100 {
            l.try_acquire().unwrap().done(true);
        }
        assert_eq!(l.limit(), 2);
        for _ in 0..1000 {
            l.try_acquire().unwrap().done(false);
        }
        assert_eq!(l.limit(), 20);
    }
}

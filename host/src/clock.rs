//! The process-wide monotonic clock that health, ejection and circuit state are kept on, in
//! milliseconds so that it fits an atomic. A leaf module.

use std::sync::LazyLock;
use std::time::Instant;

/// Milliseconds on a process-wide monotonic clock, from 1 (0 stands for "never").
pub fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

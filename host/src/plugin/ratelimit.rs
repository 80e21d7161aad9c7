//! The `rate-limit` capability, local backend: GCRA counters in a sharded in-process map.
//!
//! GCRA keeps one "theoretical arrival time" per key: a limit of L per window W admits a burst
//! of up to L and refills continuously at L/W, exactly, under any concurrency (each check is
//! one read-modify-write under the key's shard lock). A key whose arrival time has passed is at
//! full capacity and carries no information, so it is evicted when a shard fills up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::bindings::wasmgate::plugin::rate_limit::{self as wit, Decision};
use super::host::PluginState;

const SHARDS: usize = 64;
/// Keys tracked per shard at most (64 shards: about a million keys, ~100 MiB worst case).
const KEYS_PER_SHARD: usize = 16_384;

/// Counters for every plugin of a runtime, kept across reloads.
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    epoch: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: Instant::now(),
        }
    }
}

impl RateLimiter {
    /// Checks and, if allowed, counts `cost` for `key` against `limit` per `window_ms`.
    pub fn check(&self, key: String, limit: u64, window_ms: u64, cost: u64) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let window = window_ms.saturating_mul(1_000_000).max(1);
        if limit == 0 || cost > limit {
            return Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_ms: window_ms,
                retry_after_ms: window_ms,
            };
        }
        let interval = (window / limit).max(1);
        let shard = &self.shards[shard_of(&key)];
        let mut counters = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = counters.get(&key).copied().unwrap_or(0).max(now);
        let new_tat = tat.saturating_add(cost.saturating_mul(interval));
        let allow_at = new_tat.saturating_sub(window);
        let remaining_at = |tat: u64| (now.saturating_add(window).saturating_sub(tat)) / interval;
        if allow_at > now {
            return Decision {
                allowed: false,
                limit,
                remaining: remaining_at(tat),
                reset_ms: ms(tat - now),
                retry_after_ms: ms(allow_at - now).max(1),
            };
        }
        if counters.len() >= KEYS_PER_SHARD && !counters.contains_key(&key) {
            counters.retain(|_, tat| *tat > now);
        }
        counters.insert(key, new_tat);
        Decision {
            allowed: true,
            limit,
            remaining: remaining_at(new_tat),
            reset_ms: ms(new_tat - now),
            retry_after_ms: 0,
        }
    }
}

fn ms(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000)
}

fn shard_of(key: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (hash as usize) % SHARDS
}

impl wit::Host for PluginState {
    fn check(
        &mut self,
        key: String,
        limit: u64,
        window_ms: u64,
        cost: u64,
    ) -> wasmtime::Result<Decision> {
        let key = format!("{}\0{key}", self.label.plugin);
        Ok(self
            .services
            .rate_limiter
            .check(key, limit, window_ms, cost))
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    #[test]
    fn a_burst_of_exactly_the_limit_passes_then_refills() {
        let limiter = RateLimiter::default();
        let allowed = (0..10)
            .filter(|_| limiter.check("k".into(), 5, 60_000, 1).allowed)
            .count();
        assert_eq!(allowed, 5);
        let refused = limiter.check("k".into(), 5, 60_000, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(
            (11_000..=12_000).contains(&refused.retry_after_ms),
            "{refused:?}"
        );
        assert!(
            limiter.check("other".into(), 5, 60_000, 1).allowed,
            "keys are independent"
        );
    }

    #[test]
    fn cost_counts_several_units_and_remaining_reports_what_is_left() {
        let limiter = RateLimiter::default();
        let d = limiter.check("k".into(), 10, 1_000, 4);
        assert!(d.allowed);
        assert_eq!(d.remaining, 6);
        assert!(!limiter.check("k".into(), 10, 1_000, 7).allowed);
        assert!(limiter.check("k".into(), 10, 1_000, 6).allowed);
        assert!(
            !limiter.check("k".into(), 10, 1_000, 11).allowed,
            "cost above the limit never fits"
        );
    }
}

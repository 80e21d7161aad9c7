//! The `rate-limit` capability: GCRA counters, in a sharded in-process map (the default) or in
//! Redis, shared by every gateway pointed at it.
//!
//! GCRA keeps one "theoretical arrival time" per key: a limit of L per window W admits a burst
//! of up to L and refills continuously at L/W, exactly, under any concurrency (each check is
//! one read-modify-write under the key's shard lock). A key whose arrival time has passed is at
//! full capacity and carries no information, so it is evicted when a shard fills up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::bindings::wasmgate::plugin::rate_limit::{self as wit, Decision};
use super::host::PluginState;

const SHARDS: usize = 64;
/// Keys tracked per shard at most (64 shards: about a million keys, ~100 MiB worst case).
const KEYS_PER_SHARD: usize = 16_384;

/// Counters for every plugin of a runtime, kept across reloads.
#[derive(Default)]
pub struct RateLimiter {
    local: LocalCounters,
    redis: Option<RedisCounters>,
}

/// Where counters live, from the config's `[rate_limit]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateLimitBackend {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every gateway using the same server.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Deadline for one check.
        timeout: Duration,
        /// When Redis cannot answer: `true` to fall back to local counters (fail open, limits
        /// then hold per gateway), `false` to refuse (fail closed).
        fallback_local: bool,
    },
}

impl RateLimiter {
    /// Counters on `backend`. Redis is connected on first use, so a gateway starts (and
    /// serves with its fallback policy) while Redis is down.
    pub fn new(backend: &RateLimitBackend) -> Result<Self, String> {
        let redis = match backend {
            RateLimitBackend::Local => None,
            RateLimitBackend::Redis {
                url,
                timeout,
                fallback_local,
            } => Some(RedisCounters {
                client: redis::Client::open(url.as_str())
                    .map_err(|e| format!("rate_limit.redis_url `{url}`: {e}"))?,
                connection: tokio::sync::Mutex::new(None),
                script: redis::Script::new(GCRA_LUA),
                timeout: *timeout,
                fallback_local: *fallback_local,
                down_until: Mutex::new(None),
                failures: AtomicU64::new(0),
            }),
        };
        Ok(Self {
            local: LocalCounters::default(),
            redis,
        })
    }

    /// Checks and, if allowed, counts `cost` for `key` against `limit` per `window_ms`.
    pub async fn check(&self, key: String, limit: u64, window_ms: u64, cost: u64) -> Decision {
        let decision = self.decide(key, limit, window_ms, cost).await;
        crate::metrics::rate_limit_decision(decision.allowed);
        decision
    }

    async fn decide(&self, key: String, limit: u64, window_ms: u64, cost: u64) -> Decision {
        if let Some(redis) = &self.redis {
            match redis.check(&key, limit, window_ms, cost).await {
                Ok(decision) => return decision,
                Err(()) if redis.fallback_local => {}
                Err(()) => return refused(limit, 1_000),
            }
        }
        self.local.check(key, limit, window_ms, cost)
    }
}

fn refused(limit: u64, retry_after_ms: u64) -> Decision {
    Decision {
        allowed: false,
        limit,
        remaining: 0,
        reset_ms: retry_after_ms,
        retry_after_ms,
    }
}

/// How long Redis is left alone after a failure before it is tried again; meanwhile checks
/// use the fallback policy at once instead of waiting for a timeout each.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// GCRA in one atomic script, on Redis's clock so every gateway agrees on time.
/// Returns {allowed, remaining, reset_us, retry_after_us}.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2]) * 1000
local cost = tonumber(ARGV[3])
local interval = math.max(math.floor(window / limit), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, math.floor((now + window - tat) / interval), tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now + window - new_tat) / interval), new_tat - now, 0}
"#;

struct RedisCounters {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    script: redis::Script,
    timeout: Duration,
    fallback_local: bool,
    down_until: Mutex<Option<Instant>>,
    failures: AtomicU64,
}

impl RedisCounters {
    async fn check(
        &self,
        key: &str,
        limit: u64,
        window_ms: u64,
        cost: u64,
    ) -> Result<Decision, ()> {
        if limit == 0 || cost > limit {
            return Ok(refused(limit, window_ms));
        }
        if self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(());
        }
        let attempt = async {
            let mut connection = self.connection().await?;
            let result: redis::RedisResult<(i64, i64, i64, i64)> = self
                .script
                .key(format!("wasmgate:rl:{key}"))
                .arg(limit)
                .arg(window_ms)
                .arg(cost)
                .invoke_async(&mut connection)
                .await;
            result.map_err(|e| e.to_string())
        };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                self.failed(&e).await;
                return Err(());
            }
            Err(_) => {
                self.failed("timed out").await;
                return Err(());
            }
        };
        let (allowed, remaining, reset_us, retry_us) = outcome;
        let us_to_ms = |us: i64| u64::try_from(us).unwrap_or(0).div_ceil(1000);
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset_ms: us_to_ms(reset_us),
            retry_after_ms: us_to_ms(retry_us),
        })
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Records a failure: drop the connection, back off, log (at most once per backoff).
    async fn failed(&self, why: &str) {
        *self.connection.lock().await = None;
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + REDIS_BACKOFF);
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let policy = if self.fallback_local {
            "local counters"
        } else {
            "refusing requests"
        };
        tracing::warn!(target: "wasmgate::rate_limit", failures, "Redis rate-limit backend failed ({why}); {policy} for the next {REDIS_BACKOFF:?}");
    }
}

/// The in-process backend.
struct LocalCounters {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    epoch: Instant,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: Instant::now(),
        }
    }
}

impl LocalCounters {
    fn check(&self, key: String, limit: u64, window_ms: u64, cost: u64) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let window = window_ms.saturating_mul(1_000_000).max(1);
        if limit == 0 || cost > limit {
            return refused(limit, window_ms);
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
    async fn check(
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
            .check(key, limit, window_ms, cost)
            .await)
    }
}

#[cfg(test)]
mod tests {
    use super::LocalCounters as RateLimiter;

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

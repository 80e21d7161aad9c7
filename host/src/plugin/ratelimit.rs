//! The `rate-limit` capability: GCRA counters, in a sharded in-process map (the default) or in
//! Redis, shared by every gateway pointed at it.
//!
//! GCRA keeps one "theoretical arrival time" (TAT) per key: a limit of L per window W admits a
//! burst of up to L and refills continuously at L/W, exactly, under any concurrency (each check
//! is one read-modify-write under the key's shard lock).
//!
//! The in-process store holds at most `max_keys` keys, whatever clients send. A key is kept as
//! a 16-byte salted digest, so an entry has one size however long the key, and the salt is
//! random per process, so a client cannot choose keys that crowd one shard. When a shard is
//! full, a new key takes the place of the sampled key with the **soonest TAT**: a key whose TAT
//! has passed is at full capacity and carries no information, and among live keys dropping the
//! soonest one forgives the least debt. Least-recently-used would do the opposite of what a
//! limiter needs: a flood of fresh keys would push out the one client being limited, whose
//! budget would then start full again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::bindings::wasmgate::plugin::rate_limit::{self as wit, Decision};
use super::host::PluginState;

/// Keys the in-process store tracks at most unless `[rate_limit] max_keys` says otherwise:
/// about 49 MiB when full (see `LocalCounters`).
pub const DEFAULT_RATE_LIMIT_KEYS: usize = 1_000_000;

/// Counters for every plugin of a runtime, kept across reloads.
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
    /// Counters on `backend`, with at most `max_keys` keys in this process. Redis is connected
    /// on first use, so a gateway starts (and serves with its fallback policy) while Redis is
    /// down.
    pub fn new(backend: &RateLimitBackend, max_keys: usize) -> Result<Self, String> {
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
            local: LocalCounters::new(max_keys),
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

/// Shards at most: enough that two workers rarely wait for one lock.
const MAX_SHARDS: usize = 64;
/// Entries looked at to choose the one a new key replaces in a full shard. Eight random
/// entries find one of the soonest eighth of TATs with probability 1 - (7/8)^8 ≈ 66 %, and
/// the key with the largest debt is the one dropped only when all eight are it.
const EVICTION_SAMPLE: usize = 8;

/// A key as stored: the first 16 bytes of SHA-256(salt ‖ key) after the 8 that pick the shard.
/// With 2^20 keys a collision (two keys sharing one budget) has odds of about 2^-88.
type KeyDigest = [u8; 16];

/// The in-process backend.
///
/// Memory: each shard is an `IndexMap<[u8; 16], u64>`: 32 bytes per entry in its entry vector,
/// which grows by doubling but never past the shard's cap, and 8 bytes plus a control byte per
/// slot of its index table, which may be half empty after growth: about 51 bytes a key when full
/// (49 MiB for the default 1,000,000 keys, measured by
/// `two_million_keys_stay_within_the_cap_and_memory_bound`), and never more than 64.
struct LocalCounters {
    shards: Box<[Mutex<IndexMap<KeyDigest, u64>>]>,
    per_shard: usize,
    salt: [u8; 16],
    epoch: Instant,
}

impl LocalCounters {
    fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        // Small caps get fewer shards, so the cap holds closely instead of rounding up to
        // one key per shard times 64.
        let shards = max_keys.div_ceil(1024).clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(IndexMap::new())).collect(),
            per_shard: max_keys.div_ceil(shards),
            salt: random_salt(),
            epoch: Instant::now(),
        }
    }

    /// Keys held now, over all shards.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// The shard and stored form of `key`.
    fn locate(&self, key: &str) -> (usize, KeyDigest) {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(key.as_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        let (pick, rest) = digest.split_at(8);
        let mut shard = [0u8; 8];
        shard.copy_from_slice(pick);
        let mut stored = [0u8; 16];
        stored.copy_from_slice(&rest[..16]);
        // Modulo bias over 2^64 is negligible for 64 shards.
        let shard = (u64::from_le_bytes(shard) % self.shards.len() as u64) as usize;
        (shard, stored)
    }

    fn check(&self, key: String, limit: u64, window_ms: u64, cost: u64) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let window = window_ms.saturating_mul(1_000_000).max(1);
        if limit == 0 || cost > limit {
            return refused(limit, window_ms);
        }
        let interval = (window / limit).max(1);
        let (shard, stored) = self.locate(&key);
        let mut counters = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let tat = counters.get(&stored).copied().unwrap_or(0).max(now);
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
        if let Some(slot) = counters.get_mut(&stored) {
            *slot = new_tat;
        } else {
            if counters.len() >= self.per_shard {
                make_room(&mut counters, now);
            } else if counters.len() == counters.capacity() {
                // Grow by doubling, but never past the cap: the default growth would round
                // a full shard's entry vector up to twice what it may hold.
                let more = counters.len().max(64).min(self.per_shard - counters.len());
                counters.reserve_exact(more);
            }
            counters.insert(stored, new_tat);
            crate::metrics::rate_limit_key_added();
        }
        Decision {
            allowed: true,
            limit,
            remaining: remaining_at(new_tat),
            reset_ms: ms(new_tat - now),
            retry_after_ms: 0,
        }
    }
}

/// Drops the sampled entry with the soonest TAT from a full shard.
fn make_room(counters: &mut IndexMap<KeyDigest, u64>, now: u64) {
    let len = counters.len();
    let Some(victim) = (0..EVICTION_SAMPLE)
        .map(|_| fastrand::usize(..len))
        .min_by_key(|&i| counters.get_index(i).map_or(u64::MAX, |(_, tat)| *tat))
    else {
        return;
    };
    if let Some((_, tat)) = counters.swap_remove_index(victim) {
        crate::metrics::rate_limit_key_dropped(tat > now);
    }
}

/// 16 bytes no client can guess: `RandomState` is seeded from the operating system.
fn random_salt() -> [u8; 16] {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&state.hash_one(0u8).to_le_bytes());
    salt[8..].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
    salt
}

fn ms(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000)
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
    use super::{DEFAULT_RATE_LIMIT_KEYS, LocalCounters};

    fn limiter() -> LocalCounters {
        LocalCounters::new(DEFAULT_RATE_LIMIT_KEYS)
    }

    #[test]
    fn a_burst_of_exactly_the_limit_passes_then_refills() {
        let limiter = limiter();
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
        let limiter = limiter();
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

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The documented bound: at most `max_keys` keys (rounded up to whole shards), and under
    /// 64 bytes a key of resident memory, however many distinct keys clients send.
    #[test]
    fn two_million_keys_stay_within_the_cap_and_memory_bound() {
        let before = rss_kib();
        let limiter = limiter();
        let mut allowed = 0usize;
        for i in 0..2_000_000u32 {
            // Long keys: what is stored does not grow with them.
            let key = format!("plugin\0header:x-api-key=client-{i:08}-{}", "k".repeat(64));
            allowed += usize::from(limiter.check(key, 10, 60_000, 1).allowed);
        }
        assert_eq!(allowed, 2_000_000, "every new key has its full budget");
        let held = limiter.len();
        let cap = limiter.per_shard * limiter.shards.len();
        assert!(cap < DEFAULT_RATE_LIMIT_KEYS + limiter.shards.len());
        assert!(held <= cap, "{held} keys held, cap {cap}");
        assert!(
            held > DEFAULT_RATE_LIMIT_KEYS * 99 / 100,
            "the store fills up to its cap: {held}"
        );
        // What the tables hold: entry vectors (a hash, key and value each) at their capacity,
        // and index tables of power-of-two slots kept at most 7/8 full (8 bytes and a control
        // byte each).
        let table_bytes: usize = limiter
            .shards
            .iter()
            .map(|shard| {
                let map = shard.lock().unwrap_or_else(|p| p.into_inner());
                let entry = 8 + std::mem::size_of::<(super::KeyDigest, u64)>();
                let slots = (map.capacity() * 8).div_ceil(7).next_power_of_two();
                map.capacity() * entry + slots * 9
            })
            .sum();
        let bound = DEFAULT_RATE_LIMIT_KEYS * 64;
        assert!(
            table_bytes <= bound,
            "the tables take {table_bytes} bytes for {held} keys, bound {bound}"
        );
        // The process's RSS also counts the tests running beside this one: allow them as much
        // again before calling it a leak.
        let grown = rss_kib().saturating_sub(before);
        eprintln!(
            "2M keys: {held} held in {} KiB of tables, RSS grew {grown} KiB",
            table_bytes / 1024
        );
        assert!(
            grown <= 2 * (bound / 1024) as u64,
            "RSS grew {grown} KiB for {held} keys"
        );
    }

    #[test]
    fn a_flood_of_new_keys_does_not_free_a_limited_client() {
        let limiter = LocalCounters::new(1_000);
        let limit = |key: &str| limiter.check(key.into(), 5, 3_600_000, 1).allowed;
        assert_eq!((0..6).filter(|_| limit("abuser")).count(), 5);
        for i in 0..100_000 {
            assert!(
                limit(&format!("flood-{i}")),
                "fresh keys keep being answered"
            );
        }
        assert!(limiter.len() <= 1_000);
        assert!(
            !limit("abuser"),
            "the limited key outlives the flood: it has the most debt"
        );
    }

    #[test]
    fn shard_choice_is_keyed_per_process() {
        let (a, b) = (limiter(), limiter());
        let same = (0..1_000)
            .filter(|i| {
                let key = format!("key-{i}");
                a.locate(&key).0 == b.locate(&key).0
            })
            .count();
        // Unkeyed, all 1000 would agree; keyed, about 1000/64 do by chance.
        assert!(
            same < 100,
            "{same} of 1000 keys in the same shard in two stores"
        );
    }

    proptest::proptest! {
        #[test]
        fn the_cap_holds_for_any_sequence_of_checks(
            max_keys in 1usize..3_000,
            checks in proptest::collection::vec((0u32..5_000, 1u64..5, 1u64..100, 0u64..4), 1..2_000),
        ) {
            let limiter = LocalCounters::new(max_keys);
            let cap = limiter.per_shard * limiter.shards.len();
            proptest::prop_assert!(cap < max_keys + limiter.shards.len());
            for (key, limit, window_ms, cost) in checks {
                let decision = limiter.check(format!("k{key}"), limit, window_ms, cost);
                proptest::prop_assert!(decision.remaining <= limit);
                proptest::prop_assert!(limiter.len() <= cap);
            }
        }
    }
}

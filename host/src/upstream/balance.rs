//! Choosing a target for a request: weighted round-robin, least-outstanding (power of two
//! choices) and consistent hashing (rendezvous), always among the targets that are available
//! (healthy and not ejected).
//!
//! Every strategy honours the targets' weights, takes no lock and allocates nothing on the
//! request path.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How an upstream spreads requests over its targets (`balance = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// In turn, each target as often as its weight says (smooth weighted round-robin).
    #[default]
    RoundRobin,
    /// The same as `round-robin`: weights always apply. Accepted for readability.
    Weighted,
    /// The target with the fewest requests in flight, relative to its weight, of two picked
    /// at random (the "power of two choices": near-optimal, no global scan).
    LeastOutstanding,
    /// A hash of `hash_on` (header, cookie or client IP) picks the target, so one key sticks
    /// to one target; when a target leaves, only its keys move (rendezvous hashing).
    ConsistentHash,
}

/// A strategy with the state it needs.
pub struct Balancer {
    strategy: Strategy,
    /// Round-robin: target indices in smooth weighted order, one cycle long.
    schedule: Vec<usize>,
    next: AtomicUsize,
    weights: Vec<u32>,
}

/// What the balancer may look at for one pick.
pub struct Pick<'a> {
    /// Whether target `i` may take requests now.
    pub available: &'a dyn Fn(usize) -> bool,
    /// Requests in flight to target `i`.
    pub outstanding: &'a dyn Fn(usize) -> u32,
    /// The consistent-hash key, if the strategy uses one and the request has it.
    pub key: Option<u64>,
    /// A target to avoid if another is available (the one a retried attempt failed on).
    pub avoid: Option<usize>,
}

impl Balancer {
    /// A balancer over targets with these weights (each at least 1).
    pub fn new(strategy: Strategy, weights: Vec<u32>) -> Self {
        Self {
            strategy,
            schedule: smooth_schedule(&weights),
            next: AtomicUsize::new(fastrand::usize(..weights.len().max(1))),
            weights,
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The target for one request, or `None` when no target is available.
    pub fn pick(&self, p: &Pick<'_>) -> Option<usize> {
        let usable = |i: usize| (p.available)(i) && Some(i) != p.avoid;
        let choice = match self.strategy {
            Strategy::RoundRobin | Strategy::Weighted => self.round_robin(&usable),
            Strategy::LeastOutstanding => self.least_outstanding(&usable, p.outstanding),
            Strategy::ConsistentHash => match p.key {
                Some(key) => self.rendezvous(key, &usable),
                None => self.round_robin(&usable),
            },
        };
        // Only the avoided target is left: better it than nothing.
        choice.or_else(|| p.avoid.filter(|&i| (p.available)(i)))
    }

    fn round_robin(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.schedule.len();
        (0..n)
            .map(|k| self.schedule[(start + k) % n])
            .find(|&i| usable(i))
    }

    fn least_outstanding(
        &self,
        usable: &dyn Fn(usize) -> bool,
        outstanding: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = self.weights.len();
        let load = |i: usize| f64::from(outstanding(i)) / f64::from(self.weights[i]);
        let a = self.random_usable(usable)?;
        let b = match n {
            1 => a,
            _ => self.random_usable(usable).unwrap_or(a),
        };
        Some(if load(b) < load(a) { b } else { a })
    }

    /// A random usable target, weighted; a few tries, then a scan.
    fn random_usable(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.schedule.len();
        for _ in 0..4 {
            let i = self.schedule[fastrand::usize(..n)];
            if usable(i) {
                return Some(i);
            }
        }
        let start = fastrand::usize(..n);
        (0..n)
            .map(|k| self.schedule[(start + k) % n])
            .find(|&i| usable(i))
    }

    /// Highest random weight: each target scores `-weight / ln(u)` with `u` a uniform hash of
    /// (key, target); the best usable score wins. Removing a target moves only its keys.
    fn rendezvous(&self, key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, &weight) in self.weights.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let h = mix(key ^ mix(i as u64 + 1));
            // 53 bits into (0, 1).
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -f64::from(weight) / u.ln();
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// nginx's smooth weighted round-robin, unrolled into one cycle: weights 5, 1, 1 give
/// `a a b a c a a` rather than `a a a a a b c`.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &c)| (c, -(i as i64)))
        else {
            break;
        };
        current[best] -= total;
        schedule.push(best);
    }
    if schedule.is_empty() {
        schedule.push(0);
    }
    schedule
}

/// A stable 64-bit hash of `bytes` (FNV-1a, then mixed), the same on every gateway and
/// every version, so gateways behind one load balancer agree on where a key goes.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(b: &Balancer, available: &dyn Fn(usize) -> bool, key: Option<u64>) -> Option<usize> {
        b.pick(&Pick {
            available,
            outstanding: &|_| 0,
            key,
            avoid: None,
        })
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        let b = Balancer::new(Strategy::RoundRobin, vec![3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[pick(&b, &|_| true, None).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn unavailable_targets_are_skipped_and_none_left_is_none() {
        let b = Balancer::new(Strategy::RoundRobin, vec![1, 1, 1]);
        for _ in 0..10 {
            assert_ne!(pick(&b, &|i| i != 1, None), Some(1));
        }
        assert_eq!(pick(&b, &|_| false, None), None);
    }

    #[test]
    fn avoided_target_is_used_only_when_alone() {
        let b = Balancer::new(Strategy::RoundRobin, vec![1, 1]);
        let p = |available: &dyn Fn(usize) -> bool| {
            b.pick(&Pick {
                available,
                outstanding: &|_| 0,
                key: None,
                avoid: Some(0),
            })
        };
        for _ in 0..5 {
            assert_eq!(p(&|_| true), Some(1));
        }
        assert_eq!(p(&|i| i == 0), Some(0));
    }

    #[test]
    fn least_outstanding_prefers_the_idle_target() {
        let b = Balancer::new(Strategy::LeastOutstanding, vec![1, 1]);
        let mut idle = 0;
        for _ in 0..1000 {
            let i = b
                .pick(&Pick {
                    available: &|_| true,
                    outstanding: &|i| if i == 0 { 10 } else { 0 },
                    key: None,
                    avoid: None,
                })
                .unwrap();
            idle += usize::from(i == 1);
        }
        // Both samples land on the busy target a quarter of the time.
        assert!(idle > 650, "{idle}");
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_lost_targets_keys() {
        let b = Balancer::new(Strategy::ConsistentHash, vec![1, 1, 1, 1]);
        let keys: Vec<u64> = (0..2000u32).map(|k| hash_key(&k.to_le_bytes())).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| pick(&b, &|_| true, Some(k)).unwrap())
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|&k| pick(&b, &|_| true, Some(k)).unwrap())
            .collect();
        assert_eq!(before, again);
        let mut per_target = [0; 4];
        for &t in &before {
            per_target[t] += 1;
        }
        assert!(
            per_target.iter().all(|&c| (400..600).contains(&c)),
            "{per_target:?}"
        );
        let after: Vec<usize> = keys
            .iter()
            .map(|&k| pick(&b, &|i| i != 2, Some(k)).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(a, b, "a key moved off a target that stayed");
            }
        }
    }

    #[test]
    fn hash_key_is_stable() {
        assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
        assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
    }
}

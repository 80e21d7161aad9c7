//! Target health: passive outlier detection (failures seen by real requests eject a target
//! for a back-off period, like Envoy's outlier detection) and active checks (a probe request
//! every interval, with healthy/unhealthy thresholds).
//!
//! A target takes requests while it is healthy by its active checks (or has none) and not
//! ejected. State lives in atomics, so the request path reads it without a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::clock::now_ms;

/// `outlier_detection = { … }`: passive checks.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Consecutive failures (connect errors, timeouts, 5xx) that eject a target.
    pub consecutive_failures: u32,
    /// First ejection's length; each further ejection of the same target adds as much again.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Never eject more than this share of the targets (a single target is never ejected).
    pub max_ejection_percent: u8,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// `health_check = { … }`: active checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSettings {
    /// Path probed with `GET`.
    pub path: String,
    /// Time between probes of one target.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive passing probes that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failing probes that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Statuses that pass, as inclusive ranges (default 200–399).
    pub expected_statuses: Vec<(u16, u16)>,
}

impl ActiveSettings {
    /// Whether a probe answered with `status` passes.
    pub fn passes(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.expected_statuses
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&s))
    }
}

/// Why a target's health changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Ejected by passive checks for this long.
    Ejected(Duration),
    /// Back from an ejection.
    Readmitted,
    /// Failed enough active checks.
    MarkedUnhealthy,
    /// Passed enough active checks.
    MarkedHealthy,
}

/// The health of one target.
#[derive(Debug)]
pub struct TargetHealth {
    consecutive_failures: AtomicU32,
    /// `now_ms()` until which the target is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    /// Ejections since the target last served well for a base ejection period.
    ejections: AtomicU32,
    /// By active checks (true without them).
    healthy: AtomicBool,
    /// Consecutive probes with the same result as the last one.
    probe_streak: AtomicU32,
    last_probe_passed: AtomicBool,
    /// Whether the target has served since its last ejection ended.
    readmitted: AtomicBool,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            probe_streak: AtomicU32::new(0),
            last_probe_passed: AtomicBool::new(true),
            readmitted: AtomicBool::new(true),
        }
    }
}

impl TargetHealth {
    /// Whether the target may take requests at `now` (from [`crate::clock::now_ms`]).
    pub fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// Whether active checks find the target healthy.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive checks have it ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Records a request's outcome. `may_eject` says whether the upstream has room for one
    /// more ejection (see [`OutlierSettings::max_ejection_percent`]).
    pub fn record(
        &self,
        ok: bool,
        settings: &OutlierSettings,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Change> {
        let now = now_ms();
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let until = self.ejected_until.load(Ordering::Relaxed);
            if until == 0 || until > now {
                return None;
            }
            // Served well after its ejection: forget the back-off one base period later.
            if now >= until + settings.base_ejection.as_millis() as u64 {
                self.ejected_until.store(0, Ordering::Relaxed);
                self.ejections.store(0, Ordering::Relaxed);
            }
            let first = !self.readmitted.swap(true, Ordering::Relaxed);
            return first.then_some(Change::Readmitted);
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        // Fresh back from an ejection, one failure is enough to go again.
        let threshold = match self.ejections.load(Ordering::Relaxed) {
            0 => settings.consecutive_failures,
            _ => 1,
        };
        if failures < threshold || self.ejected(now) || !may_eject() {
            return None;
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = settings
            .base_ejection
            .saturating_mul(n)
            .min(settings.max_ejection);
        self.ejected_until
            .store(now + length.as_millis() as u64, Ordering::Relaxed);
        self.readmitted.store(false, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        Some(Change::Ejected(length))
    }

    /// Records an active probe's result.
    pub fn probe(&self, passed: bool, settings: &ActiveSettings) -> Option<Change> {
        let streak = match self.last_probe_passed.swap(passed, Ordering::Relaxed) == passed {
            true => self.probe_streak.fetch_add(1, Ordering::Relaxed) + 1,
            false => {
                self.probe_streak.store(1, Ordering::Relaxed);
                1
            }
        };
        let healthy = self.healthy.load(Ordering::Relaxed);
        if passed {
            // A passing probe also ends a passive ejection: the target is demonstrably back.
            // The ejection ends now rather than never having been, so its back-off is
            // forgotten only after the target has served well for a base period.
            let now = now_ms();
            let until = self.ejected_until.load(Ordering::Relaxed);
            let readmitted = until > now
                && self
                    .ejected_until
                    .compare_exchange(until, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if readmitted {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.readmitted.store(true, Ordering::Relaxed);
            }
            if !healthy && streak >= settings.healthy_threshold {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(Change::MarkedHealthy);
            }
            return readmitted.then_some(Change::Readmitted);
        }
        if healthy && streak >= settings.unhealthy_threshold {
            self.healthy.store(false, Ordering::Relaxed);
            return Some(Change::MarkedUnhealthy);
        }
        None
    }
}

/// How many of `targets` passive checks may have ejected at once.
pub fn max_ejected(targets: usize, percent: u8) -> usize {
    targets * usize::from(percent.min(100)) / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(200),
            max_ejection: Duration::from_millis(500),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_with_growing_back_off() {
        let h = TargetHealth::default();
        let s = settings();
        assert_eq!(h.record(false, &s, || true), None);
        assert_eq!(h.record(true, &s, || true), None);
        assert_eq!(h.record(false, &s, || true), None);
        assert_eq!(h.record(false, &s, || true), None);
        assert_eq!(
            h.record(false, &s, || true),
            Some(Change::Ejected(Duration::from_millis(200)))
        );
        assert!(!h.available(now_ms()));
        std::thread::sleep(Duration::from_millis(220));
        assert!(h.available(now_ms()));
        // Back, and failing at once: ejected again after one failure, for longer.
        assert_eq!(
            h.record(false, &s, || true),
            Some(Change::Ejected(Duration::from_millis(400)))
        );
        std::thread::sleep(Duration::from_millis(420));
        assert_eq!(
            h.record(false, &s, || true),
            Some(Change::Ejected(Duration::from_millis(500))),
            "capped at max_ejection"
        );
    }

    #[test]
    fn no_ejection_without_room() {
        let h = TargetHealth::default();
        for _ in 0..10 {
            assert_eq!(h.record(false, &settings(), || false), None);
        }
        assert!(h.available(now_ms()));
        assert_eq!(max_ejected(1, 50), 0);
        assert_eq!(max_ejected(2, 50), 1);
        assert_eq!(max_ejected(10, 30), 3);
    }

    #[test]
    fn active_thresholds_and_readmission() {
        let h = TargetHealth::default();
        let s = ActiveSettings {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![(200, 299)],
        };
        assert!(s.passes(StatusCode::NO_CONTENT));
        assert!(!s.passes(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(h.probe(false, &s), None);
        assert_eq!(h.probe(false, &s), None);
        assert_eq!(h.probe(false, &s), Some(Change::MarkedUnhealthy));
        assert!(!h.available(now_ms()));
        assert_eq!(h.probe(true, &s), None);
        assert_eq!(h.probe(true, &s), Some(Change::MarkedHealthy));
        for _ in 0..5 {
            h.record(false, &settings(), || true);
        }
        assert!(!h.available(now_ms()));
        assert_eq!(h.probe(true, &s), Some(Change::Readmitted));
        assert!(h.available(now_ms()));
        // A probe on a target that is not ejected readmits nothing.
        assert_eq!(h.probe(true, &s), None);
        // Served well for a base period after the probe readmitted it: the back-off is
        // forgotten, and one failure no longer ejects it.
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(h.record(true, &settings(), || true), None);
        assert_eq!(h.record(false, &settings(), || true), None);
        assert!(h.available(now_ms()));
    }
}

//! Resolving an `[upstreams.<name>]` table into [`UpstreamSettings`]: defaults filled in,
//! ranges checked, TLS files read, each problem worded for the operator.

use std::path::Path;
use std::sync::Arc;

use http::uri::Authority;
use sha2::{Digest, Sha256};

use super::raw::{StatusEntry, TargetEntry, Toggle, UpstreamSection};
use crate::adaptive::AdaptiveSettings;
use crate::upstream::balance::Strategy;
use crate::upstream::circuit::CircuitSettings;
use crate::upstream::health::{ActiveSettings, OutlierSettings};
use crate::upstream::retry::RetrySettings;
use crate::upstream::{self, UpstreamSettings, UpstreamTls};

/// An upstream ready to build: its targets with weights, settings and fingerprint.
pub struct Resolved {
    /// `host:port` and weight of each target.
    pub targets: Vec<(Authority, u32)>,
    /// The settings.
    pub settings: UpstreamSettings,
    /// Changes whenever anything the upstream was built from changes (TLS files included).
    pub fingerprint: String,
}

/// Resolves `section`; `base` is the config file's directory. Every problem is returned.
pub fn resolve(section: &UpstreamSection, base: &Path) -> Result<Resolved, Vec<String>> {
    let mut problems = Vec::new();
    let mut fingerprint = Sha256::new();
    fingerprint.update(format!("{section:?}"));
    if section.targets.is_empty() {
        problems.push("has no targets".to_owned());
    }
    let mut targets = Vec::new();
    for (i, entry) in section.targets.iter().enumerate() {
        let (addr, weight) = match entry {
            TargetEntry::Addr(addr) => (addr, 1),
            TargetEntry::Weighted { addr, weight } => (addr, *weight),
        };
        if !(1..=1000).contains(&weight) {
            problems.push(format!(
                "targets[{i}]: weight must be 1 to 1000, not {weight}"
            ));
        }
        match upstream::parse_target(addr) {
            Ok(authority) => targets.push((authority, weight)),
            Err(e) => problems.push(e),
        }
    }
    let hash_on = match (&section.hash_on, section.balance) {
        (Some(key), Strategy::ConsistentHash) => match key.parse() {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push(format!("hash_on: {e}"));
                None
            }
        },
        (None, Strategy::ConsistentHash) => {
            problems.push(
                "balance = \"consistent-hash\" needs hash_on (\"header:<name>\", \"cookie:<name>\" or \"client-ip\")"
                    .into(),
            );
            None
        }
        (Some(_), _) => {
            problems.push("hash_on only applies with balance = \"consistent-hash\"".into());
            None
        }
        (None, _) => None,
    };
    let adaptive = section.adaptive_concurrency.as_ref().map(|a| {
        if a.min == 0 || a.min > a.max {
            problems.push("adaptive_concurrency needs 1 <= min <= max".into());
        }
        AdaptiveSettings {
            initial: a.initial,
            min: a.min,
            max: a.max,
            latency_threshold: a.latency_threshold,
        }
    });
    let active = section.health_check.as_ref().map(|h| {
        if !h.path.starts_with('/') {
            problems.push(format!(
                "health_check.path `{}` must start with `/`",
                h.path
            ));
        }
        if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
            problems.push("health_check thresholds must be at least 1".into());
        }
        if h.interval.is_zero() || h.timeout.is_zero() {
            problems.push("health_check interval and timeout must be more than 0".into());
        }
        let mut expected = Vec::new();
        for entry in &h.expected_statuses {
            match status_range(entry) {
                Ok(range) => expected.push(range),
                Err(e) => problems.push(format!("health_check.expected_statuses: {e}")),
            }
        }
        if expected.is_empty() {
            expected.push((200, 399));
        }
        ActiveSettings {
            path: h.path.clone(),
            interval: h.interval,
            timeout: h.timeout,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            expected_statuses: expected,
        }
    });
    let outlier = match &section.outlier_detection {
        None | Some(Toggle::Switch(true)) => Some(OutlierSettings::default()),
        Some(Toggle::Switch(false)) => None,
        Some(Toggle::Settings(o)) => {
            let d = OutlierSettings::default();
            let s = OutlierSettings {
                consecutive_failures: o.consecutive_failures.unwrap_or(d.consecutive_failures),
                base_ejection: o.base_ejection.unwrap_or(d.base_ejection),
                max_ejection: o.max_ejection.unwrap_or(d.max_ejection),
                max_ejection_percent: o.max_ejection_percent.unwrap_or(d.max_ejection_percent),
            };
            if s.consecutive_failures == 0 {
                problems.push("outlier_detection.consecutive_failures must be at least 1".into());
            }
            if s.max_ejection_percent > 100 {
                problems.push("outlier_detection.max_ejection_percent must be 0 to 100".into());
            }
            if s.max_ejection < s.base_ejection {
                problems
                    .push("outlier_detection.max_ejection is shorter than base_ejection".into());
            }
            Some(s)
        }
    };
    let circuit = section.circuit_breaker.as_ref().map(|c| {
        if c.failure_ratio.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            problems.push("circuit_breaker.failure_ratio must be more than 0 and at most 1".into());
        }
        if c.max_requests == Some(0) {
            problems.push("circuit_breaker.max_requests must be at least 1".into());
        }
        if c.max_pending > 0 && c.max_requests.is_none() {
            problems.push("circuit_breaker.max_pending needs max_requests".into());
        }
        if c.max_requests.is_none() && c.failure_ratio.is_none() {
            problems.push("circuit_breaker needs max_requests, failure_ratio or both".into());
        }
        if c.half_open_requests == 0 || c.min_requests == 0 {
            problems.push(
                "circuit_breaker half_open_requests and min_requests must be at least 1".into(),
            );
        }
        CircuitSettings {
            max_requests: c.max_requests,
            max_pending: c.max_pending,
            pending_timeout: c.pending_timeout,
            failure_ratio: c.failure_ratio,
            min_requests: c.min_requests,
            window: c.window,
            open_for: c.open_for,
            half_open_requests: c.half_open_requests.max(1),
        }
    });
    let retry = match &section.retry {
        None | Some(Toggle::Switch(true)) => Some(RetrySettings::connect_failures()),
        Some(Toggle::Switch(false)) => None,
        Some(Toggle::Settings(r)) => Some(retry_settings(r, &mut problems)),
    };
    let tls = match &section.tls {
        None | Some(Toggle::Switch(false)) => None,
        Some(Toggle::Switch(true)) => tls_settings(&Default::default(), base, &mut fingerprint)
            .map_err(|e| problems.push(format!("tls: {e}")))
            .ok(),
        Some(Toggle::Settings(t)) => tls_settings(t, base, &mut fingerprint)
            .map_err(|e| problems.push(format!("tls: {e}")))
            .ok(),
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Resolved {
        targets,
        settings: UpstreamSettings {
            connect_timeout: section.connect_timeout,
            request_timeout: section.request_timeout,
            idle_timeout: section.idle_timeout,
            max_idle_per_target: section.max_idle_per_target,
            adaptive,
            balance: section.balance,
            hash_on,
            outlier,
            active,
            circuit,
            retry,
            tls,
            http2: section.http2,
        },
        fingerprint: format!("{:x}", fingerprint.finalize()),
    })
}

fn retry_settings(r: &super::raw::RetrySection, problems: &mut Vec<String>) -> RetrySettings {
    if r.retries > 10 {
        problems.push(format!("retry.retries is {}; at most 10", r.retries));
    }
    if !(0.0..=1.0).contains(&r.budget_ratio) {
        problems.push("retry.budget_ratio must be 0 to 1".into());
    }
    if let Some(bad) = r.statuses.iter().find(|s| !(100..=599).contains(*s)) {
        problems.push(format!("retry.statuses: {bad} is not an HTTP status"));
    }
    RetrySettings {
        retries: r.retries,
        statuses: r.statuses.clone(),
        non_idempotent: r.non_idempotent,
        connect_only: false,
        per_try_timeout: r.per_try_timeout,
        backoff: r.backoff,
        budget_ratio: r.budget_ratio,
        budget_min_per_second: r.budget_min_per_second,
    }
}

fn tls_settings(
    t: &super::raw::UpstreamTlsSection,
    base: &Path,
    fingerprint: &mut Sha256,
) -> Result<UpstreamTls, String> {
    let ca = t.ca.as_ref().map(|p| base.join(p));
    let client = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
        (None, None) => None,
        _ => return Err("a client certificate needs both `cert` and `key`".into()),
    };
    for path in ca.iter().chain(client.iter().flat_map(|(c, k)| [c, k])) {
        // Rotated files with the same names make a new upstream on reload.
        fingerprint.update(std::fs::read(path).unwrap_or_default());
    }
    let config = crate::tls::client_config(
        ca.as_deref(),
        client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )?;
    let server_name = match &t.server_name {
        None => None,
        Some(name) => Some(
            rustls_pki_types::ServerName::try_from(name.clone())
                .map_err(|_| format!("server_name `{name}` is not a DNS name or IP address"))?,
        ),
    };
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
    })
}

/// `204`, `"2xx"` or `"200-299"` as an inclusive range.
fn status_range(entry: &StatusEntry) -> Result<(u16, u16), String> {
    let valid = |s: u16| (100..=599).contains(&s);
    let range = match entry {
        StatusEntry::Code(s) => (*s, *s),
        StatusEntry::Range(text) => {
            let t = text.trim();
            if let Some(class) = t
                .strip_suffix("xx")
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (1..=5).contains(c))
            {
                (class * 100, class * 100 + 99)
            } else if let Some((lo, hi)) = t.split_once('-')
                && let (Ok(lo), Ok(hi)) = (lo.trim().parse(), hi.trim().parse())
            {
                (lo, hi)
            } else {
                return Err(format!("`{text}` is not a status, \"2xx\" or \"200-299\""));
            }
        }
    };
    if !valid(range.0) || !valid(range.1) || range.0 > range.1 {
        return Err(format!("{range:?} is not a range of HTTP statuses"));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range(&StatusEntry::Code(204)), Ok((204, 204)));
        assert_eq!(
            status_range(&StatusEntry::Range("2xx".into())),
            Ok((200, 299))
        );
        assert_eq!(
            status_range(&StatusEntry::Range("200-399".into())),
            Ok((200, 399))
        );
        assert!(status_range(&StatusEntry::Range("abc".into())).is_err());
        assert!(status_range(&StatusEntry::Code(42)).is_err());
    }
}

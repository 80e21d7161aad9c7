//! Retries: which failures are retried, how often, and the budget that keeps retries from
//! multiplying load on an upstream that is already failing (a retry storm).
//!
//! A request is retried only before any of its response reached the client (the decision is
//! taken on the response head, which is never sent on when retried), on another target when
//! one is available, after a short jittered back-off.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

/// `retry = { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Further attempts after the first.
    pub retries: u32,
    /// Response statuses that are retried (idempotent requests only).
    pub statuses: Vec<u16>,
    /// Retry non-idempotent methods (POST, PATCH) on statuses and timeouts too. Connect
    /// failures are retried for every method: nothing reached the upstream.
    pub non_idempotent: bool,
    /// Retry connect failures only (the default without a `retry` table, like nginx's
    /// `proxy_next_upstream error`).
    pub connect_only: bool,
    /// Time one attempt may take to its response head; it is then retried as a timeout.
    pub per_try_timeout: Option<Duration>,
    /// First back-off; each further retry doubles it, up to ten times, with full jitter.
    pub backoff: Duration,
    /// Retries may add this share of the requests (0.2 = 20 % more upstream requests)…
    pub budget_ratio: f64,
    /// …plus this many retries a second, so quiet upstreams can still be retried.
    pub budget_min_per_second: u32,
}

/// What went wrong with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: the request never reached the upstream.
    Connect,
    /// No response head within the per-try timeout.
    Timeout,
    /// The connection failed after the request was sent.
    Reset,
    /// A response with this status.
    Status(StatusCode),
}

/// What a failed exchange's transport error means, read off the types in its cause chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The request body went over its limit while it streamed: the client's fault.
    BodyTooLarge,
    /// The client's request body failed while it streamed: the client's fault.
    ClientBody,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// No connection: refused, unroutable, or the TLS handshake failed.
    ConnectFailed,
    /// The connection failed after the request was sent.
    Reset,
}

impl TransportError {
    /// Classifies an upstream client error.
    pub fn of(error: &hyper_util::client::legacy::Error) -> Self {
        let causes = || {
            std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
        };
        if causes().any(|e| {
            e.is::<crate::body::BodyTooLarge>() || e.is::<http_body_util::LengthLimitError>()
        }) {
            TransportError::BodyTooLarge
        } else if causes().any(|e| e.is::<crate::body::ClientBodyError>()) {
            TransportError::ClientBody
        } else if !error.is_connect() {
            TransportError::Reset
        } else if causes().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        }) {
            TransportError::ConnectTimeout
        } else {
            TransportError::ConnectFailed
        }
    }
}

impl Failure {
    /// The reason label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
            Failure::Status(_) => "status",
        }
    }
}

impl RetrySettings {
    /// What an upstream without a `retry` table does: one more try on another target when
    /// a connection cannot be made, since the request never left.
    pub fn connect_failures() -> Self {
        Self {
            retries: 1,
            statuses: Vec::new(),
            non_idempotent: false,
            connect_only: true,
            per_try_timeout: None,
            backoff: Duration::ZERO,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }

    /// Whether `failure` of a `method` request may be retried at all.
    pub fn retries_on(&self, method: &Method, failure: Failure) -> bool {
        let idempotent = self.non_idempotent || is_idempotent(method);
        match failure {
            _ if self.connect_only => failure == Failure::Connect,
            Failure::Connect => true,
            Failure::Timeout | Failure::Reset => idempotent,
            Failure::Status(status) => idempotent && self.statuses.contains(&status.as_u16()),
        }
    }

    /// The pause before retry number `n` (1-based): full jitter over an exponential step.
    pub fn backoff(&self, n: u32) -> Duration {
        let step = self
            .backoff
            .saturating_mul(1 << n.saturating_sub(1).min(10));
        step.mul_f64(fastrand::f64())
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A token bucket shared by every request to one upstream: each request deposits `ratio`
/// tokens, time adds `min_per_second` a second, and each retry takes one. The bucket holds
/// at most ten seconds' worth, so a long quiet spell cannot save up a storm.
pub struct RetryBudget {
    ratio: f64,
    per_second: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    /// A budget from the settings, starting with one second's worth of tokens.
    pub fn new(settings: &RetrySettings) -> Self {
        let per_second = f64::from(settings.budget_min_per_second);
        Self {
            ratio: settings.budget_ratio,
            per_second,
            cap: (per_second * 10.0).max(10.0),
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Counts a request (first attempts only).
    pub fn deposit(&self) {
        if self.ratio > 0.0 {
            let mut s = self.lock();
            s.0 = (s.0 + self.ratio).min(self.cap);
        }
    }

    /// Takes a token for one retry, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut s = self.lock();
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.per_second;
        s.0 = (s.0 + refill).min(self.cap);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RetrySettings {
        RetrySettings {
            retries: 2,
            statuses: vec![502, 503],
            non_idempotent: false,
            connect_only: false,
            per_try_timeout: None,
            backoff: Duration::from_millis(10),
            budget_ratio: 0.2,
            budget_min_per_second: 0,
        }
    }

    #[test]
    fn only_idempotent_requests_retry_statuses_and_timeouts() {
        let s = settings();
        let unavailable = Failure::Status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(s.retries_on(&Method::GET, unavailable));
        assert!(s.retries_on(&Method::PUT, Failure::Timeout));
        assert!(!s.retries_on(&Method::POST, unavailable));
        assert!(!s.retries_on(&Method::POST, Failure::Timeout));
        assert!(s.retries_on(&Method::POST, Failure::Connect));
        assert!(!s.retries_on(
            &Method::GET,
            Failure::Status(StatusCode::INTERNAL_SERVER_ERROR)
        ));
        let all = RetrySettings {
            non_idempotent: true,
            ..settings()
        };
        assert!(all.retries_on(&Method::POST, unavailable));
        let default = RetrySettings::connect_failures();
        assert!(default.retries_on(&Method::POST, Failure::Connect));
        assert!(!default.retries_on(&Method::GET, Failure::Timeout));
        assert!(!default.retries_on(&Method::GET, unavailable));
    }

    #[test]
    fn budget_allows_the_ratio_of_requests() {
        let budget = RetryBudget::new(&settings());
        let mut allowed = 0;
        for _ in 0..100 {
            budget.deposit();
            allowed += usize::from(budget.withdraw());
        }
        assert!((19..=20).contains(&allowed), "{allowed}");
    }

    #[test]
    fn backoff_is_jittered_under_the_exponential_step() {
        let s = settings();
        for n in 1..5 {
            assert!(s.backoff(n) <= Duration::from_millis(10 << (n - 1)));
        }
    }
}

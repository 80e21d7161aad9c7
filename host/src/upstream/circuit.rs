//! The circuit breaker of one upstream: a cap on requests in flight (with a bounded queue of
//! requests waiting for a slot), and a breaker that opens when the share of failed requests
//! in a sliding window passes a threshold.
//!
//! Closed: requests pass and outcomes are counted. Open: requests get 503 with `Retry-After`
//! at once, without an upstream call, for `open_for`. Half-open: up to `half_open_requests`
//! probe requests pass; if they all succeed the circuit closes, if one fails it opens again.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `circuit_breaker = { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitSettings {
    /// Requests in flight to the upstream at once; more wait in the queue or get 503.
    pub max_requests: Option<u32>,
    /// Requests that may wait for one of `max_requests` slots; more get 503 at once.
    pub max_pending: u32,
    /// How long a request waits in that queue before it gets 503.
    pub pending_timeout: Duration,
    /// Share of failed requests (0–1) in the window that opens the circuit.
    pub failure_ratio: Option<f64>,
    /// Requests the window must hold before the ratio counts.
    pub min_requests: u32,
    /// Length of the sliding window.
    pub window: Duration,
    /// How long the circuit stays open before it lets probes through.
    pub open_for: Duration,
    /// Probe requests let through when half-open.
    pub half_open_requests: u32,
}

/// The breaker's state, as exported in metrics (`0`, `1`, `2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests pass.
    Closed = 0,
    /// Requests are refused.
    Open = 1,
    /// A few probes pass.
    HalfOpen = 2,
}

impl State {
    /// The state's name, for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The circuit is open; try again after this long.
    Open(Duration),
    /// `max_requests` are in flight and the queue is full (or the wait ran out).
    Full,
}

const BUCKETS: usize = 10;

struct Window {
    /// (requests, failures) per bucket of `window / BUCKETS`.
    buckets: [(u32, u32); BUCKETS],
    /// Index of the bucket `current` refers to, in bucket lengths since `epoch`.
    current: u64,
    opened_at: Option<Instant>,
    probes: u32,
    probe_successes: u32,
}

/// One upstream's breaker.
pub struct Circuit {
    settings: CircuitSettings,
    epoch: Instant,
    state: AtomicU8,
    in_flight: AtomicU32,
    /// Requests waiting for a slot.
    pending: AtomicU32,
    /// Woken when a slot frees while requests wait.
    slot_freed: tokio::sync::Notify,
    window: Mutex<Window>,
}

/// A request let through. It holds its slot of `max_requests` (and, half-open, its probe)
/// until dropped, which is when the response body has been passed on or the request was
/// abandoned; its outcome is reported with [`Admission::report`] once the response head is in.
#[must_use]
pub struct Admission {
    circuit: Arc<Circuit>,
    probe: bool,
    reported: bool,
}

impl Admission {
    /// Records how the request went (once; later reports are ignored).
    pub fn report(&mut self, ok: bool) {
        if !std::mem::replace(&mut self.reported, true) {
            self.circuit.record(self.probe, ok);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let circuit = &self.circuit;
        if circuit.settings.max_requests.is_some() {
            circuit.in_flight.fetch_sub(1, Ordering::AcqRel);
            if circuit.pending.load(Ordering::Acquire) > 0 {
                circuit.slot_freed.notify_one();
            }
        }
        if self.probe && !self.reported {
            // Abandoned before its outcome was known: the probe goes back for another request.
            let mut w = circuit.lock();
            w.probes = w.probes.saturating_sub(1);
        }
    }
}

impl Circuit {
    /// A closed breaker.
    pub fn new(settings: CircuitSettings) -> Self {
        Self {
            settings,
            epoch: Instant::now(),
            state: AtomicU8::new(State::Closed as u8),
            in_flight: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            slot_freed: tokio::sync::Notify::new(),
            window: Mutex::new(Window {
                buckets: [(0, 0); BUCKETS],
                current: 0,
                opened_at: None,
                probes: 0,
                probe_successes: 0,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting for a slot.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Lets a request through, after waiting in the queue for a slot (up to `max_pending`
    /// requests, each for up to `pending_timeout`) when `max_requests` are in flight, or
    /// refuses it.
    pub async fn admit_or_wait(self: &Arc<Self>) -> Result<Admission, Refusal> {
        match self.admit() {
            Err(Refusal::Full) => {}
            decided => return decided,
        }
        let max = self.settings.max_pending;
        if self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refusal::Full);
        }
        let _waiting = Waiting(&self.pending);
        let deadline = tokio::time::Instant::now() + self.settings.pending_timeout;
        loop {
            // Registered before the retry, so a slot freed in between is not missed.
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.admit() {
                Err(Refusal::Full) => {}
                decided => return decided,
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Refusal::Full);
            }
        }
    }

    /// Lets a request through or refuses it, without waiting.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, Refusal> {
        let probe = match self.state() {
            State::Closed => false,
            State::Open | State::HalfOpen => {
                let mut w = self.lock();
                let opened_at = w.opened_at.unwrap_or(self.epoch);
                let waited = opened_at.elapsed();
                if waited < self.settings.open_for {
                    return Err(Refusal::Open(self.settings.open_for - waited));
                }
                if w.probes >= self.settings.half_open_requests {
                    // Probes are out; the verdict is pending.
                    return Err(Refusal::Open(Duration::from_secs(1)));
                }
                if self.state() == State::Open {
                    self.state.store(State::HalfOpen as u8, Ordering::Relaxed);
                    tracing::info!(target: "wasmgate::upstream", "circuit half-open: letting probe requests through");
                }
                w.probes += 1;
                true
            }
        };
        if let Some(max) = self.settings.max_requests {
            let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
            if before >= max {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                if probe {
                    self.lock().probes -= 1;
                }
                return Err(Refusal::Full);
            }
        }
        Ok(Admission {
            circuit: self.clone(),
            probe,
            reported: false,
        })
    }

    /// Counts how an admitted request (a probe or not) went.
    fn record(&self, probe: bool, ok: bool) {
        let Some(ratio) = self.settings.failure_ratio else {
            return;
        };
        let mut w = self.lock();
        if probe {
            if !ok {
                self.open(&mut w, "a probe request failed");
                return;
            }
            w.probe_successes += 1;
            if w.probe_successes >= self.settings.half_open_requests {
                *w = Window {
                    buckets: [(0, 0); BUCKETS],
                    current: w.current,
                    opened_at: None,
                    probes: 0,
                    probe_successes: 0,
                };
                self.state.store(State::Closed as u8, Ordering::Relaxed);
                tracing::info!(target: "wasmgate::upstream", "circuit closed: probe requests succeeded");
            }
            return;
        }
        if self.state() != State::Closed {
            // A request admitted before the circuit opened: it no longer counts.
            return;
        }
        let bucket_len = (self.settings.window / BUCKETS as u32).max(Duration::from_millis(1));
        let now = (self.epoch.elapsed().as_millis() / bucket_len.as_millis()) as u64;
        let stale = now.saturating_sub(w.current).min(BUCKETS as u64);
        let current = w.current;
        for k in 1..=stale {
            w.buckets[((current + k) % BUCKETS as u64) as usize] = (0, 0);
        }
        w.current = now;
        let b = &mut w.buckets[(now % BUCKETS as u64) as usize];
        b.0 += 1;
        b.1 += u32::from(!ok);
        let (total, failed) = w
            .buckets
            .iter()
            .fold((0, 0), |(t, f), b| (t + b.0, f + b.1));
        if !ok
            && total >= self.settings.min_requests
            && f64::from(failed) >= ratio * f64::from(total)
        {
            let why = format!("{failed} of the last {total} requests failed");
            self.open(&mut w, &why);
        }
    }

    fn open(&self, w: &mut Window, why: &str) {
        w.opened_at = Some(Instant::now());
        w.probes = 0;
        w.probe_successes = 0;
        w.buckets = [(0, 0); BUCKETS];
        self.state.store(State::Open as u8, Ordering::Relaxed);
        tracing::warn!(target: "wasmgate::upstream", open_for = ?self.settings.open_for, "circuit open: {why}");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // The window holds plain counters: a panic elsewhere cannot leave it inconsistent.
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request in the queue; leaves it when dropped (admitted, refused or cancelled).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the outcome and frees the slot, as the end of a response does.
    fn finish(mut admission: Admission, ok: bool) {
        admission.report(ok);
    }

    fn breaker(open_for: Duration) -> Arc<Circuit> {
        Arc::new(Circuit::new(CircuitSettings {
            max_requests: Some(2),
            max_pending: 0,
            pending_timeout: Duration::from_secs(1),
            failure_ratio: Some(0.5),
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for,
            half_open_requests: 1,
        }))
    }

    #[test]
    fn opens_at_the_failure_ratio_only_after_min_requests() {
        let c = breaker(Duration::from_secs(60));
        for ok in [false, false, true] {
            let a = c.admit().unwrap();
            finish(a, ok);
        }
        assert_eq!(
            c.state(),
            State::Closed,
            "3 requests are under min_requests"
        );
        let a = c.admit().unwrap();
        finish(a, false);
        assert_eq!(c.state(), State::Open);
        assert!(matches!(c.admit(), Err(Refusal::Open(d)) if d > Duration::from_secs(59)));
    }

    #[test]
    fn half_open_probe_closes_or_reopens() {
        let c = breaker(Duration::from_millis(50));
        for _ in 0..4 {
            let a = c.admit().unwrap();
            finish(a, false);
        }
        assert_eq!(c.state(), State::Open);
        std::thread::sleep(Duration::from_millis(60));
        let probe = c.admit().unwrap();
        assert_eq!(c.state(), State::HalfOpen);
        assert!(c.admit().is_err(), "one probe at a time");
        finish(probe, false);
        assert_eq!(c.state(), State::Open);
        std::thread::sleep(Duration::from_millis(60));
        let probe = c.admit().unwrap();
        finish(probe, true);
        assert_eq!(c.state(), State::Closed);
        assert!(c.admit().is_ok());
    }

    #[test]
    fn max_requests_caps_in_flight() {
        let c = breaker(Duration::from_secs(1));
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        assert_eq!(c.admit().err(), Some(Refusal::Full));
        finish(a, true);
        assert!(c.admit().is_ok());
        finish(b, true);
    }

    #[test]
    fn an_abandoned_request_frees_its_slot_and_its_probe() {
        let c = breaker(Duration::ZERO);
        for _ in 0..4 {
            finish(c.admit().unwrap(), false);
        }
        assert_eq!(c.state(), State::Open);
        // The probe's client went away before the answer: another request may probe.
        drop(c.admit().unwrap());
        assert_eq!(c.in_flight(), 0);
        let probe = c.admit().expect("the probe went back");
        finish(probe, true);
        assert_eq!(c.state(), State::Closed);
        // A slot is held until the admission is dropped, reported or not.
        let mut a = c.admit().unwrap();
        a.report(true);
        let _b = c.admit().unwrap();
        assert_eq!(c.admit().err(), Some(Refusal::Full));
        drop(a);
        assert!(c.admit().is_ok());
    }

    fn queue(max_pending: u32, pending_timeout: Duration) -> Arc<Circuit> {
        Arc::new(Circuit::new(CircuitSettings {
            max_requests: Some(1),
            max_pending,
            pending_timeout,
            failure_ratio: None,
            min_requests: 1,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(1),
            half_open_requests: 1,
        }))
    }

    #[tokio::test]
    async fn a_queued_request_takes_the_slot_that_frees() {
        let c = queue(1, Duration::from_secs(5));
        let first = c.admit_or_wait().await.unwrap();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.admit_or_wait().await.map(|a| finish(a, true)) }
        });
        while c.pending() == 0 {
            tokio::task::yield_now().await;
        }
        // The queue holds one: the next request is refused at once.
        assert_eq!(c.admit_or_wait().await.err(), Some(Refusal::Full));
        finish(first, true);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!((c.pending(), c.in_flight()), (0, 0));
    }

    #[tokio::test]
    async fn a_queued_request_gives_up_after_the_pending_timeout() {
        let c = queue(4, Duration::from_millis(50));
        let held = c.admit().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(c.admit_or_wait().await.err(), Some(Refusal::Full));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(c.pending(), 0);
        finish(held, true);
    }

    #[tokio::test]
    async fn without_a_queue_a_full_circuit_refuses_at_once() {
        let c = queue(0, Duration::from_secs(5));
        let held = c.admit().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(c.admit_or_wait().await.err(), Some(Refusal::Full));
        assert!(started.elapsed() < Duration::from_millis(50));
        finish(held, true);
    }
}

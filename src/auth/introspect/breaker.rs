//! The introspection circuit breaker: after `threshold` consecutive failed calls the endpoint is
//! not called for `open_for` (503 at once), then one trial call decides whether it closes.
//! Only calls that were made and failed count: a call refused by the gateway's own limits
//! (`limits`) never reaches the breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What "open for longer than a clock can count" becomes.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Consecutive-failure circuit breaker: closed → (N failures) → open for `open_for`, failing
/// fast → half-open: one trial call; its success closes, its failure reopens.
pub(super) struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    /// `Some` while open or half-open (once the instant has passed).
    open_until: Option<Instant>,
    /// Half-open and the trial call is under way.
    trial: bool,
}

/// Leave to make one call. Dropped unused (the caller was cancelled), a trial permit lets the
/// next caller try instead.
pub(super) struct Permit<'a> {
    breaker: &'a Breaker,
    pub(super) trial: bool,
    done: bool,
}

impl Breaker {
    pub(super) fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker { threshold, open_for, state: Mutex::new(BreakerState::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` = fail fast: open, or half-open with the trial call already under way.
    pub(super) fn admit(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        let trial = match state.open_until {
            None => false,
            Some(until) if Instant::now() < until || state.trial => return None,
            Some(_) => {
                state.trial = true;
                true
            }
        };
        Some(Permit { breaker: self, trial, done: false })
    }
}

impl Permit<'_> {
    pub(super) fn success(mut self) {
        self.done = true;
        let mut state = self.breaker.lock();
        if state.open_until.is_some() && self.trial {
            tracing::info!("introspection circuit breaker closed: trial call succeeded");
        }
        *state = BreakerState::default();
    }

    /// Returns whether this failure opened (or reopened) the breaker.
    pub(super) fn failure(mut self) -> bool {
        self.done = true;
        let mut state = self.breaker.lock();
        state.failures = state.failures.saturating_add(1);
        let open = self.trial || (state.open_until.is_none() && state.failures >= self.breaker.threshold);
        if open {
            // `open_for` is configured without an upper bound: saturate rather than panic.
            let now = Instant::now();
            state.open_until = now.checked_add(self.breaker.open_for).or_else(|| now.checked_add(FAR)).or(Some(now));
            state.trial = false;
        }
        open
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.done {
            self.breaker.lock().trial = false;
        }
    }
}

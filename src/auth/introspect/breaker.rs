//! The introspection circuit breaker: after `threshold` consecutive failed calls the endpoint is
//! not called for `open_for` (503 at once), then one trial call decides whether it closes.
//! Only calls that were made and failed count: a call refused by the gateway's own limits
//! (`limits`) never reaches the breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What "open for longer than a clock can count" becomes: a century.
const FAR: Duration = Duration::from_secs(3_153_600_000);

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
        if self.trial {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Open at once (one failure), half-open at once (`open_for` zero): the next caller is the
    /// trial.
    fn half_open() -> Breaker {
        let breaker = Breaker::new(1, Duration::ZERO);
        assert!(breaker.admit().unwrap().failure(), "one failure opens it");
        breaker
    }

    /// Closed → open after `threshold` failures → one trial at a time → closed on success.
    #[test]
    fn opens_after_threshold_and_admits_one_trial() {
        let breaker = Breaker::new(2, Duration::from_secs(3600));
        assert!(!breaker.admit().unwrap().failure());
        breaker.admit().unwrap().success();
        assert!(!breaker.admit().unwrap().failure(), "a success resets the count");
        assert!(breaker.admit().unwrap().failure(), "the second failure in a row opens it");
        assert!(breaker.admit().is_none(), "open: fail fast");

        let breaker = half_open();
        let trial = breaker.admit().expect("half-open: one trial");
        assert!(trial.trial);
        assert!(breaker.admit().is_none(), "the trial is under way");
        trial.success();
        let after = breaker.admit().expect("closed again");
        assert!(!after.trial);
    }

    /// A failed trial reopens it; `open_for` too large for the clock saturates, never panics.
    #[test]
    fn failed_trial_reopens_and_huge_open_for_saturates() {
        let breaker = half_open();
        assert!(breaker.admit().unwrap().failure(), "the trial failed: open again");
        let breaker = Breaker::new(1, Duration::MAX);
        assert!(breaker.admit().unwrap().failure());
        assert!(breaker.admit().is_none(), "open (for a century)");
    }

    /// A trial permit dropped unused (its caller was cancelled) lets the next caller try; a
    /// non-trial permit dropped unused while a trial is under way changes nothing.
    #[test]
    fn dropped_permits() {
        let breaker = half_open();
        drop(breaker.admit().unwrap());
        let trial = breaker.admit().expect("the abandoned trial is handed on");
        assert!(trial.trial);

        let breaker = Breaker::new(1, Duration::ZERO);
        let stale = breaker.admit().unwrap();
        assert!(!stale.trial);
        assert!(breaker.admit().unwrap().failure());
        let trial = breaker.admit().unwrap();
        drop(stale);
        assert!(breaker.admit().is_none(), "still one trial at a time");
        drop(trial);
    }
}

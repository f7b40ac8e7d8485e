//! The wall clock that authentication decisions read: a token's `exp`, `nbf`, and how long a
//! verified or introspected token may be served from memory.
//!
//! The gateway always runs on `Clock::System`; nothing in the config file or the environment
//! can select anything else. `ManualClock` exists so that tests can move time forward instead of
//! waiting for it: it is handed to `app::start_with_clock` in code, and a test then decides when
//! a token has expired. Reading either clock costs a match and, for the manual one, an atomic
//! load: no lock, no allocation on the request path.
//!
//! Monotonic timers (timeouts, JWKS refresh, breaker, rate limits) keep `Instant`/tokio time:
//! they measure intervals, not validity against a date.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the current time comes from. `Clock::default()` is the system clock.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// A `ManualClock`'s time: milliseconds since the Unix epoch.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock::System
    }

    /// Time since the Unix epoch. A system clock set before 1970 reads as the epoch.
    pub fn now(&self) -> Duration {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
            Clock::Manual(millis) => Duration::from_millis(millis.load(Ordering::Relaxed)),
        }
    }

    /// Whole seconds since the Unix epoch, as JWT NumericDates are compared.
    pub fn unix_secs(&self) -> u64 {
        self.now().as_secs()
    }
}

/// A clock that only moves when told to: for tests. Clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Stopped at `since_epoch` (millisecond precision).
    pub fn at(since_epoch: Duration) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(millis(since_epoch))))
    }

    /// Stopped at the start of the current system second, so that whole-second claims minted
    /// from the system time agree with it.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(Duration::from_secs(Clock::System.unix_secs()))
    }

    /// The `Clock` the gateway reads; it follows every later `advance` and `set`.
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.0.clone())
    }

    pub fn now(&self) -> Duration {
        self.clock().now()
    }

    pub fn unix_secs(&self) -> u64 {
        self.now().as_secs()
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::Relaxed);
    }

    pub fn set(&self, since_epoch: Duration) {
        self.0.store(millis(since_epoch), Ordering::Relaxed);
    }
}

/// Saturates rather than wraps: `u64` milliseconds last 584 million years.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system clock is the default and reads the system time.
    #[test]
    fn system_by_default() {
        assert!(matches!(Clock::default(), Clock::System));
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let read = Clock::default().now();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(before <= read && read <= after, "{before:?} {read:?} {after:?}");
    }

    /// A manual clock stands still until moved, and every `Clock` made from it moves with it.
    #[test]
    fn manual_clock_moves_only_when_told() {
        let manual = ManualClock::at(Duration::from_secs(1_700_000_000));
        let clock = manual.clock();
        assert_eq!(clock.unix_secs(), 1_700_000_000);
        manual.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), Duration::from_millis(1_700_000_001_500));
        assert_eq!(clock.unix_secs(), 1_700_000_001);
        manual.set(Duration::from_secs(5));
        assert_eq!(clock.clone().now(), Duration::from_secs(5));
    }

    /// Starting "now" means a whole second no later than the system time.
    #[test]
    fn starting_now_is_a_whole_second() {
        let manual = ManualClock::starting_now();
        assert_eq!(manual.now().subsec_nanos(), 0);
        assert!(manual.unix_secs() <= Clock::System.unix_secs());
    }
}

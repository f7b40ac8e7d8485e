//! Per-issuer limits on introspection calls, so that a flood of made-up opaque tokens (each one
//! a cache miss) can neither get the gateway's client throttled by the authorization server nor
//! hold an unbounded number of calls open: at most `max_concurrent` calls under way, started at
//! `rate_limit` per second on average with bursts of up to `rate_burst` (a token bucket).
//!
//! A call beyond the limits is refused at once, or after at most `SLOT_WAIT` for a free slot;
//! nothing queues longer. Refusals are the gateway's own decision, not the endpoint's failure:
//! they never count towards the circuit breaker. Cached answers never reach the limits.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How long a miss may wait for a free slot before it is refused: a few round trips of a
/// healthy endpoint, so a short burst is absorbed, and short enough that nothing waits long on
/// a slow one.
pub(super) const SLOT_WAIT: Duration = Duration::from_millis(100);

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    Rate,
    Concurrency,
}

impl Limit {
    /// The `limit` label of `tokengate_introspection_limited_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Limit::Rate => "rate",
            Limit::Concurrency => "concurrency",
        }
    }
}

/// The limits of one issuer's introspection calls.
pub(super) struct Limits {
    slots: Semaphore,
    bucket: Mutex<Bucket>,
}

impl Limits {
    /// `rate` is calls per second (finite, > 0), `burst` the bucket size (≥ 1); config
    /// validation guarantees both. `max_concurrent` is capped at what a semaphore can count.
    pub(super) fn new(max_concurrent: usize, rate: f64, burst: u32) -> Limits {
        let slots = Semaphore::new(max_concurrent.clamp(1, Semaphore::MAX_PERMITS));
        Limits { slots, bucket: Mutex::new(Bucket::new(rate, burst, Instant::now())) }
    }

    /// Leave to make one call: a token from the bucket, then a slot, held until the call ends.
    pub(super) async fn admit(&self) -> Result<SemaphorePermit<'_>, Limit> {
        if !self.bucket().take(Instant::now()) {
            return Err(Limit::Rate);
        }
        let slot = match self.slots.try_acquire() {
            Ok(slot) => Some(slot),
            Err(_) => tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await.ok().and_then(Result::ok),
        };
        slot.ok_or_else(|| {
            // No call was made: the token is not spent.
            self.bucket().give_back();
            Limit::Concurrency
        })
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Token bucket: holds up to `burst` tokens, refilled at `rate` per second; a call takes one.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    /// Starts full.
    fn new(rate: f64, burst: u32, now: Instant) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { tokens: burst, rate, burst, last: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        // `min` also turns an overflow to infinity (hours × a huge rate) back into `burst`.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full bucket admits `burst` calls at once, then one per 1/rate seconds.
    #[test]
    fn bucket_refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, 3, t0);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3, "the burst");
        assert!(!b.take(t0 + Duration::from_millis(400)), "0.8 of a token");
        assert!(b.take(t0 + Duration::from_millis(500)), "one token after 1/rate");
        assert!(!b.take(t0 + Duration::from_millis(500)));
        // A long idle period refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    /// Extreme settings and clocks neither panic nor admit more than the burst.
    #[test]
    fn bucket_extremes() {
        let t0 = Instant::now();
        let mut b = Bucket::new(f64::MAX, 1, t0);
        assert!(b.take(t0));
        let later = t0 + Duration::from_secs(86_400 * 365);
        assert!(b.take(later) && !b.take(later), "an infinite refill is capped at the burst");
        // An instant earlier than the last one (callers race) refills nothing.
        let mut b = Bucket::new(1.0, 1, later);
        assert!(b.take(later) && !b.take(t0));
        assert!(b.take(later + Duration::from_secs(1)));
    }

    /// At most `max_concurrent` permits are out; the next caller waits at most SLOT_WAIT, and
    /// its refusal gives the rate token back.
    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_and_waits_briefly() {
        let limits = Limits::new(2, 1000.0, 10);
        let (a, _b) = (limits.admit().await.unwrap(), limits.admit().await.unwrap());
        let started = Instant::now();
        assert_eq!(limits.admit().await.unwrap_err(), Limit::Concurrency);
        assert_eq!(started.elapsed(), SLOT_WAIT);
        assert_eq!(limits.bucket().tokens.floor(), 8.0, "the refused call's token was given back");
        // A slot freed while waiting is taken.
        let free_one = async move {
            tokio::time::sleep(SLOT_WAIT / 2).await;
            drop(a);
        };
        let (waited, ()) = tokio::join!(limits.admit(), free_one);
        assert!(waited.is_ok());
    }

    /// Beyond the burst the rate refuses at once, without waiting for a slot.
    #[tokio::test(start_paused = true)]
    async fn rate_refuses_at_once() {
        let limits = Limits::new(100, 0.001, 2);
        let _held: Vec<_> = vec![limits.admit().await.unwrap(), limits.admit().await.unwrap()];
        let started = Instant::now();
        assert_eq!(limits.admit().await.unwrap_err(), Limit::Rate);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

//! The answer cache of one introspector, keyed by the token's SHA-256 (the token itself is
//! never stored).
//!
//! Lifetime: RFC 7662 §4 lets a protected resource cache answers, trading freshness (a
//! revocation is seen late) for load. An active answer is kept until the token's `exp`, at most
//! `cache_max_ttl`; an inactive one for `negative_ttl`. The lifetime is decided once, on the
//! gateway's clock, when the answer arrives; moka drops the entry after it on its monotonic
//! clock (which frees the memory), and every hit also checks the gateway's clock (`is_live`),
//! so an answer is never served past its end on either clock.
//!
//! Size: bounded by entries and by bytes with one weight, as the verified-token cache is: each
//! entry weighs its approximate size, but at least `cache_max_bytes / cache_capacity`, and the
//! capacity is `cache_max_bytes`. A flood of tokens with large answers (every claim kept for the
//! claims header) therefore meets the byte bound long before the entry bound.

use std::mem::size_of;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::future::Cache;
use moka::Expiry;

use super::{Key, Verdict};
use crate::auth::token_cache::principal_bytes;
use crate::config::Introspection;

/// Per-entry bookkeeping of the moka cache (hash table slot, deque and timer-wheel nodes,
/// frequency sketch share, `Arc` headers): measured with a counting allocator at about 255
/// bytes beyond key and value (moka 0.12, per-entry expiry, 10 000 and 50 000 entries);
/// rounded up.
const ENTRY_OVERHEAD: usize = 320;

/// A verdict as the cache holds it, with the lifetime it was given when it arrived.
#[derive(Clone, Debug)]
pub(super) struct Cached {
    pub verdict: Verdict,
    /// How long moka keeps the entry, on its own monotonic clock.
    lifetime: Duration,
    /// Time since the epoch, on the gateway's clock, from which the entry is not served.
    until: Duration,
}

impl Cached {
    /// `verdict`, arrived at `now` (the gateway's clock, since the epoch).
    pub(super) fn new(verdict: Verdict, now: Duration, max_ttl: Duration, negative_ttl: Duration) -> Cached {
        let lifetime = ttl(&verdict, UNIX_EPOCH + now, max_ttl, negative_ttl);
        Cached { verdict, lifetime, until: now.saturating_add(lifetime) }
    }

    /// Servable at `now` (the gateway's clock): before the end of its lifetime.
    pub(super) fn is_live(&self, now: Duration) -> bool {
        now < self.until
    }
}

pub(super) fn answer_cache(settings: &Introspection) -> Cache<Key, Cached> {
    let max_bytes = settings.cache_max_bytes.max(1) as u64;
    // Every entry weighs at least this much, so `max_bytes` of weight is also `cache_capacity`.
    let min_weight = u32::try_from(max_bytes.div_ceil(settings.cache_capacity.max(1))).unwrap_or(u32::MAX);
    Cache::builder()
        .max_capacity(max_bytes)
        .weigher(move |_: &Key, cached: &Cached| {
            u32::try_from(approx_bytes(&cached.verdict)).unwrap_or(u32::MAX).max(min_weight)
        })
        .expire_after(LifetimeExpiry)
        .build()
}

/// Approximate bytes one cached answer holds: the entry and, for an active answer, the
/// principal with the claims it kept.
pub(super) fn approx_bytes(verdict: &Verdict) -> usize {
    let own = match verdict {
        Verdict::Active(p) => principal_bytes(p),
        Verdict::Inactive(_) => 0,
    };
    ENTRY_OVERHEAD + size_of::<Key>() + size_of::<Cached>() + own
}

/// Each entry's own lifetime, decided when its answer arrived (`Cached::new`).
struct LifetimeExpiry;

impl Expiry<Key, Cached> for LifetimeExpiry {
    fn expire_after_create(&self, _: &Key, cached: &Cached, _: std::time::Instant) -> Option<Duration> {
        Some(cached.lifetime)
    }
}

/// Active: until `exp` (if any), at most `max_ttl`; inactive: `negative_ttl`.
/// `exp` comes from the answer: any `u64` must work, so no `SystemTime` arithmetic (adding
/// `1e19` seconds to the epoch overflows it and panics); `Duration` holds every `u64` second.
pub(super) fn ttl(verdict: &Verdict, now: SystemTime, max_ttl: Duration, negative_ttl: Duration) -> Duration {
    match verdict {
        Verdict::Inactive(_) => negative_ttl,
        Verdict::Active(p) if p.expires_at > 0 => {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            Duration::from_secs(p.expires_at).saturating_sub(now).min(max_ttl)
        }
        Verdict::Active(_) => max_ttl,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::auth::{AuthError, Principal};

    /// The weight covers at least the moka entry, the key and the cached value, and an active
    /// answer adds its principal with every kept claim: the byte bound is never undercounted.
    #[test]
    fn weight_covers_entry_key_value_and_principal() {
        let inactive = approx_bytes(&Verdict::Inactive(AuthError::InvalidToken("token is not active")));
        assert!(inactive >= ENTRY_OVERHEAD + size_of::<Key>() + size_of::<Cached>(), "{inactive}");
        let serde_json::Value::Object(claims) = json!({"sub": "alice", "extra": "x".repeat(1000)}) else {
            unreachable!()
        };
        let principal = Arc::new(Principal::from_claims(0, Arc::from("i"), claims, &Default::default()));
        let active = approx_bytes(&Verdict::Active(principal.clone()));
        assert_eq!(active, inactive + principal_bytes(&principal));
        assert!(active > inactive + 1000);
    }
}

//! The answer cache of one introspector, keyed by the token's SHA-256 (the token itself is
//! never stored).
//!
//! Lifetime: RFC 7662 §4 lets a protected resource cache answers, trading freshness (a
//! revocation is seen late) for load. An active answer is kept until the token's `exp`, at most
//! `cache_max_ttl`; an inactive one for `negative_ttl`.
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

pub(super) fn answer_cache(settings: &Introspection) -> Cache<Key, Verdict> {
    let max_bytes = settings.cache_max_bytes.max(1) as u64;
    // Every entry weighs at least this much, so `max_bytes` of weight is also `cache_capacity`.
    let min_weight = u32::try_from(max_bytes.div_ceil(settings.cache_capacity.max(1))).unwrap_or(u32::MAX);
    Cache::builder()
        .max_capacity(max_bytes)
        .weigher(move |_: &Key, verdict: &Verdict| {
            u32::try_from(approx_bytes(verdict)).unwrap_or(u32::MAX).max(min_weight)
        })
        .expire_after(VerdictExpiry { max_ttl: settings.cache_max_ttl, negative_ttl: settings.negative_ttl })
        .build()
}

/// Approximate bytes one cached answer holds: the entry and, for an active answer, the
/// principal with the claims it kept.
pub(super) fn approx_bytes(verdict: &Verdict) -> usize {
    let own = match verdict {
        Verdict::Active(p) => principal_bytes(p),
        Verdict::Inactive(_) => 0,
    };
    ENTRY_OVERHEAD + size_of::<Key>() + size_of::<Verdict>() + own
}

struct VerdictExpiry {
    max_ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<Key, Verdict> for VerdictExpiry {
    fn expire_after_create(&self, _: &Key, verdict: &Verdict, _: std::time::Instant) -> Option<Duration> {
        Some(ttl(verdict, SystemTime::now(), self.max_ttl, self.negative_ttl))
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

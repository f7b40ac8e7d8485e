//! Verified-token cache: a JWT that validated once is admitted again by one lookup until it
//! expires, so the signature check (17–140 µs) is paid once per token, not once per request.
//!
//! Rules, each of which keeps the cache from admitting anything a full verification would refuse:
//! - The key is the SHA-256 of the whole token (`aws_lc_rs::digest`): a collision would be an
//!   authentication bypass, so no fast hash; and the shared cache never stores the raw token.
//! - An entry is served until the token's `exp` and never beyond it: no leeway after `exp`, and
//!   every hit checks the wall clock (an expired entry is a miss and is dropped). A token verified
//!   inside the leeway window past `exp`, or before its `nbf`, is not cached at all. `MAX_TTL`
//!   caps how long any entry is served.
//! - Each entry remembers the key-set generation (`JwksCache::generation`) of its issuer at the
//!   time it was verified; once the issuer's key set changes the entry is a miss and is dropped,
//!   so a key removed from the JWKS stops admitting its tokens at once.
//! - Route policy is not part of the entry: it is evaluated on every request (`proxy`), so a
//!   cached token never passes a route it does not satisfy.
//! - Refusals are remembered apart, and only those that stay true (`jwt::refusal_holds`): a
//!   signature that failed, until the issuer's key set changes; an expired token. A client
//!   retrying a dead token then costs a lookup, not an RSA verification. The refusal cache has
//!   its own small bound, so a flood of distinct forged tokens cannot push valid entries out.
//!
//! Each client connection also remembers the last token it presented (`LastToken`, compared in
//! full and in constant time, under the same `exp` and generation rules): a client that reuses
//! its token on a keep-alive connection — the common case — is admitted without hashing it at
//! all. That copy lives as long as the connection and is only ever compared with what arrives
//! on the same connection.
//!
//! The cache is bounded by entry count and by bytes with one weight: each entry weighs its
//! approximate size, but at least `max_bytes / max_entries`, and the capacity is `max_bytes`.
//! It is a quick_cache (S3-FIFO, sharded): its per-entry bookkeeping is a few dozen bytes where
//! moka's deques and timer wheel cost about a kilobyte, which decided whether 100 000 cached
//! tokens fit in the memory budget. Expired entries that are never read again leave by eviction.

use std::future::Future;
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::{IntCounter, IntCounterVec};
use serde_json::{Map, Value};

use super::{AuthError, Principal};
use crate::clock::Clock;
use crate::config::TokenCacheSettings;
use crate::secret::KeptToken;

/// No entry outlives this, whatever the token's `exp` says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The cache key: SHA-256 of the complete token.
pub type TokenDigest = crate::secret::Digest;

/// A failed verification and how long its verdict holds for the same token bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub error: AuthError,
    pub holds: Holds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Decide again next time (unknown key, not yet valid, keys unavailable).
    NotAtAll,
    /// Until this issuer's key set changes from this generation.
    WhileKeySet { issuer: usize, generation: u64 },
    /// For good: it depends on the token's bytes and the clock moving forward only.
    Always,
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Refusal {
        Refusal { error, holds: Holds::NotAtAll }
    }
}

/// Refused tokens remembered: this many at most, whatever the size of the verified-token cache.
const MAX_REFUSALS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Entry {
    principal: Arc<Principal>,
    /// Key-set generation of `principal.issuer` when the token was verified.
    generation: u64,
    /// Served until this time since the epoch: `exp`, or `MAX_TTL` after insertion if sooner.
    serve_until: Duration,
    weight: u32,
}

impl Entry {
    /// Servable at `now`: before `serve_until` and verified under the issuer's current key set.
    fn is_live(&self, now: Duration, generation: impl Fn(usize) -> u64) -> bool {
        now < self.serve_until && generation(self.principal.issuer) == self.generation
    }
}

/// The last token one client connection presented, with its cache entry: compared in full (so
/// not a fast hash) and served under the same rules as the cache. Per connection, so it holds
/// at most one token that the connection's own client sent; `Debug` never shows it.
#[derive(Default)]
pub struct LastToken(ArcSwapOption<Remembered>);

struct Remembered {
    token: KeptToken,
    entry: Entry,
}

impl LastToken {
    fn get(&self, token: &str, now: Duration, generation: impl Fn(usize) -> u64) -> Option<Arc<Principal>> {
        let guard = self.0.load();
        let remembered = guard.as_ref()?;
        // Constant time: behind a front proxy, one connection carries many clients' tokens, and
        // how far a guess matches must not show in the response time.
        let live = remembered.token.matches(token) && remembered.entry.is_live(now, generation);
        live.then(|| remembered.entry.principal.clone())
    }

    fn remember(&self, token: &str, entry: &Entry) {
        self.0.store(Some(Arc::new(Remembered { token: KeptToken::new(token), entry: entry.clone() })));
    }
}

impl std::fmt::Debug for LastToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LastToken(..)")
    }
}

#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<TokenDigest, Entry> for ByWeight {
    fn weight(&self, _: &TokenDigest, entry: &Entry) -> u64 {
        u64::from(entry.weight)
    }
}

/// Tokens that verified recently, with hit and miss counters.
pub struct TokenCache {
    cache: quick_cache::sync::Cache<TokenDigest, Entry, ByWeight>,
    refused: quick_cache::sync::Cache<TokenDigest, Refusal>,
    /// Every entry weighs at least this much, so `max_bytes` of weight is also `max_entries`.
    min_weight: u32,
    hits: IntCounter,
    misses: IntCounter,
    refusal_hits: IntCounter,
    refusal_misses: IntCounter,
    /// Read on every hit: an entry is never served past its `exp`.
    clock: Clock,
}

impl TokenCache {
    /// `None` when the cache is disabled. `lookups` is `tokengate_token_cache_lookups_total`;
    /// `clock` the wall clock entries expire by.
    pub fn new(settings: &TokenCacheSettings, lookups: &IntCounterVec, clock: Clock) -> Option<TokenCache> {
        if !settings.enabled {
            return None;
        }
        let max_bytes = settings.max_bytes.max(1) as u64;
        let min_weight = max_bytes.div_ceil(settings.max_entries.max(1) as u64);
        let cache = quick_cache::sync::Cache::with_weighter(settings.max_entries.max(1), max_bytes, ByWeight);
        Some(TokenCache {
            cache,
            refused: quick_cache::sync::Cache::new((settings.max_entries / 10).clamp(1, MAX_REFUSALS)),
            min_weight: u32::try_from(min_weight).unwrap_or(u32::MAX),
            hits: lookups.with_label_values(&["jwt", "hit"]),
            misses: lookups.with_label_values(&["jwt", "miss"]),
            refusal_hits: lookups.with_label_values(&["jwt_refusal", "hit"]),
            refusal_misses: lookups.with_label_values(&["jwt_refusal", "miss"]),
            clock,
        })
    }

    /// The principal for `token` if it is the one `last` remembers and it is still live (a hit).
    pub fn remembered(
        &self,
        token: &str,
        last: &LastToken,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Arc<Principal>> {
        let principal = last.get(token, self.clock.now(), generation)?;
        self.hits.inc();
        Some(principal)
    }

    /// The principal for `token`: from the cache when it holds a live entry for it, else from
    /// `verify` (which returns the principal and the key-set generation it was verified under),
    /// remembered when cacheable, in the cache and in `last`. A refusal that holds is
    /// remembered too and answered from memory next time. `generation(issuer)` is that
    /// issuer's current generation.
    pub async fn admit<Fut>(
        &self,
        token: &str,
        last: &LastToken,
        generation: impl Fn(usize) -> u64,
        verify: impl FnOnce() -> Fut,
    ) -> Result<Arc<Principal>, AuthError>
    where
        Fut: Future<Output = Result<(Principal, u64), Refusal>>,
    {
        let key = TokenDigest::of(token);
        if let Some(entry) = self.live(&key, self.clock.now(), &generation) {
            last.remember(token, &entry);
            return Ok(entry.principal);
        }
        if let Some(error) = self.still_refused(&key, &generation) {
            return Err(error);
        }
        let (principal, verified_under) = match verify().await {
            Ok(verified) => verified,
            Err(refusal) => {
                if refusal.holds != Holds::NotAtAll {
                    self.refused.insert(key, refusal);
                }
                return Err(refusal.error);
            }
        };
        let principal = Arc::new(principal);
        // The clock is read again: verification may have waited for a JWKS fetch.
        if let Some(entry) = self.insert(key, principal.clone(), verified_under, self.clock.now()) {
            last.remember(token, &entry);
        }
        Ok(principal)
    }

    /// The remembered refusal of this token, if it still holds.
    fn still_refused(&self, key: &TokenDigest, generation: impl Fn(usize) -> u64) -> Option<AuthError> {
        let refusal = self.refused.get(key);
        let holds = refusal.is_some_and(|r| match r.holds {
            Holds::WhileKeySet { issuer, generation: then } => generation(issuer) == then,
            Holds::Always => true,
            Holds::NotAtAll => false,
        });
        if holds {
            self.refusal_hits.inc();
            return refusal.map(|r| r.error);
        }
        if refusal.is_some() {
            self.refused.remove(key);
        }
        self.refusal_misses.inc();
        None
    }

    /// A live entry, or `None` (counted as a miss). An expired entry, or one from an older key
    /// set, is dropped.
    pub fn get(&self, key: &TokenDigest, now: Duration, generation: impl Fn(usize) -> u64) -> Option<Arc<Principal>> {
        self.live(key, now, generation).map(|e| e.principal)
    }

    fn live(&self, key: &TokenDigest, now: Duration, generation: impl Fn(usize) -> u64) -> Option<Entry> {
        match self.cache.get(key) {
            Some(e) if e.is_live(now, &generation) => {
                self.hits.inc();
                Some(e)
            }
            Some(_) => {
                self.cache.remove(key);
                self.misses.inc();
                None
            }
            None => {
                self.misses.inc();
                None
            }
        }
    }

    /// Remember a verified principal, unless it is already expired or not yet valid at `now`.
    /// Returns the entry when it was cached.
    pub fn insert(&self, key: TokenDigest, principal: Arc<Principal>, generation: u64, now: Duration) -> Option<Entry> {
        let expires_at = Duration::from_secs(principal.expires_at);
        if expires_at <= now || not_yet_valid(principal.not_before, now) {
            return None;
        }
        let serve_until = expires_at.min(now + MAX_TTL);
        let weight = u32::try_from(approx_bytes(&principal)).unwrap_or(u32::MAX).max(self.min_weight);
        let entry = Entry { principal, generation, serve_until, weight };
        self.cache.insert(key, entry.clone());
        Some(entry)
    }

    /// Entries currently held.
    pub fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Total weight (approximate bytes) currently held.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weight()
    }
}

/// `nbf` still in the future (the verifier may have admitted it within its leeway).
fn not_yet_valid(not_before: Option<f64>, now: Duration) -> bool {
    not_before.is_some_and(|nbf| nbf > now.as_secs_f64())
}

const STRING: usize = size_of::<String>();
/// Rough per-member cost of a `serde_json::Map` node beyond the key and value themselves.
const MAP_NODE: usize = 16;
/// Rough per-entry bookkeeping: the cache's slot and index, the `Arc` and allocator headers.
const CACHE_OVERHEAD: usize = 96;

/// Approximate bytes one entry holds: the principal's own data, not the token (never stored).
fn approx_bytes(p: &Principal) -> usize {
    size_of::<Entry>() + size_of::<TokenDigest>() + CACHE_OVERHEAD + principal_bytes(p)
}

/// Approximate bytes of a shared principal: the struct, its strings and kept claims. Also
/// weighs the introspection cache's entries.
pub(super) fn principal_bytes(p: &Principal) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| STRING + s.len()).sum::<usize>();
    size_of::<Principal>()
        + p.subject.as_ref().map_or(0, String::len)
        + p.client_id.as_ref().map_or(0, String::len)
        + strings(&p.audiences)
        + strings(&p.scopes)
        + map_bytes(&p.claims)
}

fn map_bytes(map: &Map<String, Value>) -> usize {
    map.iter().map(|(k, v)| MAP_NODE + STRING + k.len() + size_of::<Value>() + value_bytes(v)).sum()
}

fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|i| size_of::<Value>() + value_bytes(i)).sum(),
        Value::Object(map) => map_bytes(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_700_000_000;
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlZ21lbnQ";

    fn settings(max_entries: usize, max_bytes: usize) -> TokenCacheSettings {
        TokenCacheSettings { enabled: true, max_entries, max_bytes }
    }

    fn cache_with(s: &TokenCacheSettings) -> (TokenCache, IntCounterVec) {
        let lookups = IntCounterVec::new(prometheus::Opts::new("lookups", "test"), &["cache", "result"]).unwrap();
        (TokenCache::new(s, &lookups, Clock::system()).unwrap(), lookups)
    }

    fn cache() -> TokenCache {
        cache_with(&settings(1000, 1 << 20)).0
    }

    fn principal(claims: Value) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        Principal::from_claims(0, Arc::from("https://idp"), map, &Default::default())
    }

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn same_generation(_: usize) -> u64 {
        1
    }

    /// Admits through `verify` (counted) with a principal expiring in an hour.
    async fn admit_counting(c: &TokenCache, token: &str, calls: &AtomicUsize, claims: Value) -> Arc<Principal> {
        c.admit(token, &LastToken::default(), same_generation, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok((principal(claims), 1))
        })
        .await
        .unwrap()
    }

    fn live_claims() -> Value {
        json!({"sub": "alice", "scope": "read", "exp": Clock::system().unix_secs() + 3600})
    }

    /// A token that verified once is admitted again without verification, and counted as a hit.
    #[tokio::test]
    async fn hit_after_first_validation() {
        let (c, lookups) = cache_with(&settings(1000, 1 << 20));
        let calls = AtomicUsize::new(0);
        let first = admit_counting(&c, TOKEN, &calls, live_claims()).await;
        let second = admit_counting(&c, TOKEN, &calls, live_claims()).await;
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(lookups.with_label_values(&["jwt", "hit"]).get(), 1);
        assert_eq!(lookups.with_label_values(&["jwt", "miss"]).get(), 1);
        // Another token is a miss and is verified.
        admit_counting(&c, &format!("{TOKEN}x"), &calls, live_claims()).await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    /// Admits through a `verify` that refuses (counted), with how long the refusal holds.
    async fn refuse_counting(c: &TokenCache, calls: &AtomicUsize, holds: Holds, generation: u64) -> AuthError {
        c.admit(
            TOKEN,
            &LastToken::default(),
            |_| generation,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Refusal { error: AuthError::InvalidToken("signature verification failed"), holds })
            },
        )
        .await
        .unwrap_err()
    }

    /// A refusal that may not hold next time (unknown key, nbf) is decided again each time.
    #[tokio::test]
    async fn passing_refusals_are_not_cached() {
        let c = cache();
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            refuse_counting(&c, &calls, Holds::NotAtAll, 1).await;
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    /// A bad signature is answered from memory while the key set stays, and decided again once
    /// it changes; an expired token stays refused. Hits and misses are counted apart.
    #[tokio::test]
    async fn lasting_refusals_are_remembered() {
        let (c, lookups) = cache_with(&settings(1000, 1 << 20));
        let calls = AtomicUsize::new(0);
        let bad_signature = Holds::WhileKeySet { issuer: 0, generation: 1 };
        for _ in 0..3 {
            let e = refuse_counting(&c, &calls, bad_signature, 1).await;
            assert_eq!(e, AuthError::InvalidToken("signature verification failed"));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(lookups.with_label_values(&["jwt_refusal", "hit"]).get(), 2);
        // The key set changed: verified again (and remembered under the new generation).
        refuse_counting(&c, &calls, Holds::WhileKeySet { issuer: 0, generation: 2 }, 2).await;
        refuse_counting(&c, &calls, Holds::WhileKeySet { issuer: 0, generation: 2 }, 2).await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);

        let (c, _) = cache_with(&settings(1000, 1 << 20));
        let calls = AtomicUsize::new(0);
        refuse_counting(&c, &calls, Holds::Always, 1).await;
        refuse_counting(&c, &calls, Holds::Always, 9).await;
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    /// An entry is a hit up to the second before `exp` and a miss from `exp` on: no leeway.
    #[tokio::test]
    async fn expires_at_exp() {
        let c = cache();
        let key = TokenDigest::of(TOKEN);
        let p = Arc::new(principal(json!({"exp": NOW + 10})));
        c.insert(key, p, 1, at(NOW));
        assert!(c.get(&key, at(NOW + 9), same_generation).is_some());
        assert!(c.get(&key, Duration::from_millis((NOW + 9) * 1000 + 999), same_generation).is_some());
        assert!(c.get(&key, at(NOW + 10), same_generation).is_none());
        assert!(c.get(&key, at(NOW + 9), same_generation).is_none(), "a stale entry is dropped");
    }

    /// No entry is served longer than MAX_TTL, whatever `exp` says.
    #[tokio::test]
    async fn served_at_most_max_ttl() {
        let c = cache();
        let key = TokenDigest::of(TOKEN);
        c.insert(key, Arc::new(principal(json!({"exp": 1e300}))), 1, at(NOW));
        assert!(c.get(&key, at(NOW) + MAX_TTL - Duration::from_secs(1), same_generation).is_some());
        assert!(c.get(&key, at(NOW) + MAX_TTL, same_generation).is_none());
    }

    /// Tokens already past `exp` (admitted within the leeway) are not cached.
    #[tokio::test]
    async fn expired_token_not_cached() {
        let c = cache();
        let key = TokenDigest::of(TOKEN);
        c.insert(key, Arc::new(principal(json!({"exp": NOW}))), 1, at(NOW));
        c.insert(key, Arc::new(principal(json!({"exp": NOW - 5}))), 1, at(NOW));
        assert_eq!(c.entry_count(), 0);
    }

    /// A token whose `nbf` is still ahead (admitted within the leeway) is not cached.
    #[tokio::test]
    async fn nbf_not_cached() {
        let c = cache();
        let key = TokenDigest::of(TOKEN);
        c.insert(key, Arc::new(principal(json!({"exp": NOW + 60, "nbf": NOW + 5}))), 1, at(NOW));
        c.insert(key, Arc::new(principal(json!({"exp": NOW + 60, "nbf": NOW as f64 + 0.5}))), 1, at(NOW));
        assert_eq!(c.entry_count(), 0);
        assert!(c.get(&key, at(NOW), same_generation).is_none());
        c.insert(key, Arc::new(principal(json!({"exp": NOW + 60, "nbf": NOW}))), 1, at(NOW));
        assert!(c.get(&key, at(NOW), same_generation).is_some(), "nbf reached: cacheable");
    }

    /// A change of the issuer's key-set generation turns the entry into a miss and drops it.
    #[tokio::test]
    async fn generation_change_is_a_miss() {
        let c = cache();
        let key = TokenDigest::of(TOKEN);
        c.insert(key, Arc::new(principal(json!({"exp": NOW + 60}))), 7, at(NOW));
        assert!(c.get(&key, at(NOW), |_| 7).is_some());
        assert!(c.get(&key, at(NOW), |_| 8).is_none());
        assert!(c.get(&key, at(NOW), |_| 7).is_none(), "the stale entry was removed");
    }

    /// The entry count bound holds whatever the byte budget.
    #[tokio::test]
    async fn entry_count_bound() {
        let (c, _) = cache_with(&settings(10, 1 << 30));
        for i in 0..200 {
            let p = Arc::new(principal(json!({"sub": format!("user-{i}"), "exp": NOW + 60})));
            c.insert(TokenDigest::of(format!("token-{i}")), p, 1, at(NOW));
        }
        assert!(c.entry_count() <= 10, "{}", c.entry_count());
        assert!(c.entry_count() > 0);
    }

    /// The byte bound holds: big principals weigh more and fewer of them fit.
    #[tokio::test]
    async fn byte_bound() {
        let max_bytes = 64 * 1024;
        let (c, _) = cache_with(&settings(1_000_000, max_bytes));
        let big = "x".repeat(8 * 1024);
        for i in 0..100 {
            let p = Arc::new(principal(json!({"sub": format!("user-{i}"), "blob": big, "exp": NOW + 60})));
            assert!(approx_bytes(&p) > 8 * 1024);
            c.insert(TokenDigest::of(format!("token-{i}")), p, 1, at(NOW));
        }
        assert!(c.weighted_size() <= max_bytes as u64, "{}", c.weighted_size());
        assert!(c.entry_count() < 8, "{}", c.entry_count());
    }

    /// The cache's weight is the sum of its entries' weights.
    #[test]
    fn weighted_size_sums_entries() {
        let c = cache();
        assert_eq!(c.weighted_size(), 0);
        let mut total = 0;
        for (i, pad) in ["", &"x".repeat(5000)].into_iter().enumerate() {
            let p = Arc::new(principal(json!({"sub": pad, "exp": NOW + 60})));
            let entry = c.insert(TokenDigest::of(format!("token-{i}")), p, 1, at(NOW)).expect("cached");
            total += u64::from(entry.weight);
            assert_eq!(c.weighted_size(), total);
        }
    }

    /// An entry weighs a fixed cost (its structs and some bookkeeping) plus every byte the
    /// principal holds: each string, list item and kept claim adds its length and its own
    /// overhead, so the byte budget bounds what the cache really holds.
    #[test]
    fn weight_counts_every_part_of_a_principal() {
        let base = principal(json!({}));
        assert!(base.claims.is_empty() && base.subject.is_none());
        let fixed = approx_bytes(&base);
        let structs = size_of::<Entry>() + size_of::<TokenDigest>() + size_of::<Principal>();
        // Beyond the structs: the Arc's counts (16 bytes), the cache's slot and index entry.
        assert!(fixed >= structs + 64 && fixed < structs + 256, "{fixed} vs {structs}");
        let n = 1000;
        let grown = |f: &dyn Fn(&mut Principal)| {
            let mut p = base.clone();
            f(&mut p);
            approx_bytes(&p) - fixed
        };
        assert_eq!(grown(&|p| p.subject = Some("s".repeat(n))), n);
        assert_eq!(grown(&|p| p.client_id = Some("c".repeat(n))), n);
        assert_eq!(grown(&|p| p.audiences = vec!["a".repeat(n)]), STRING + n);
        assert_eq!(grown(&|p| p.scopes = vec!["r".repeat(n), "w".repeat(n)]), 2 * (STRING + n));
        let node = MAP_NODE + STRING + size_of::<Value>();
        let claim = |v: Value| move |p: &mut Principal| drop(p.claims.insert("k".into(), v.clone()));
        assert_eq!(grown(&claim(json!(true))), node + 1);
        assert_eq!(grown(&claim(json!("v".repeat(n)))), node + 1 + n);
        assert_eq!(grown(&claim(json!(["v".repeat(n)]))), node + 1 + size_of::<Value>() + n);
        assert_eq!(grown(&claim(json!({"i": "v".repeat(n)}))), node + 1 + node + 1 + n);
    }

    /// The key is the token's SHA-256; the token itself is stored nowhere in the cache.
    #[tokio::test]
    async fn keyed_by_digest_only() {
        let c = cache();
        let calls = AtomicUsize::new(0);
        admit_counting(&c, TOKEN, &calls, live_claims()).await;
        let entries: Vec<_> = c.cache.iter().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, TokenDigest::of(TOKEN));
        let signature = TOKEN.rsplit('.').next().unwrap();
        let dump = format!("{:?}", entries[0].1);
        assert!(!dump.contains(signature) && !dump.contains(TOKEN), "{dump}");
        assert_eq!(format!("{:?}", entries[0].0), "Digest(..)");
    }

    /// The connection's last token is admitted again without a cache lookup, and only that exact
    /// token: another token, even one the cache holds, goes through the cache.
    #[tokio::test]
    async fn last_token_is_remembered_in_full() {
        let (c, lookups) = cache_with(&settings(1000, 1 << 20));
        let last = LastToken::default();
        let calls = AtomicUsize::new(0);
        let verify = |claims: Value| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok((principal(claims), 1)) }
        };
        assert!(c.remembered(TOKEN, &last, same_generation).is_none(), "nothing remembered yet");
        let first = c.admit(TOKEN, &last, same_generation, || verify(live_claims())).await.unwrap();
        let again = c.remembered(TOKEN, &last, same_generation).expect("remembered");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(lookups.with_label_values(&["jwt", "hit"]).get(), 1, "a remembered token counts as a hit");
        let prefix = &TOKEN[..TOKEN.len() - 1];
        assert!(c.remembered(prefix, &last, same_generation).is_none());
        assert!(c.remembered(&format!("{TOKEN}x"), &last, same_generation).is_none());
        // A cache hit on another connection is remembered there too.
        let other = LastToken::default();
        c.admit(TOKEN, &other, same_generation, || verify(live_claims())).await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(c.remembered(TOKEN, &other, same_generation).is_some());
    }

    /// The remembered token obeys the cache's rules: not past `serve_until`, not after a key-set
    /// change, and a token the cache would not hold is not remembered either.
    #[test]
    fn last_token_expires_and_follows_the_key_set() {
        let c = cache();
        let last = LastToken::default();
        let key = TokenDigest::of(TOKEN);
        let entry = c.insert(key, Arc::new(principal(json!({"exp": NOW + 10}))), 7, at(NOW)).unwrap();
        last.remember(TOKEN, &entry);
        assert!(last.get(TOKEN, at(NOW + 9), |_| 7).is_some());
        assert!(last.get(TOKEN, at(NOW + 10), |_| 7).is_none(), "expired");
        assert!(last.get(TOKEN, at(NOW), |_| 8).is_none(), "key set changed");
        assert!(c.insert(key, Arc::new(principal(json!({"exp": NOW}))), 7, at(NOW)).is_none(), "expired: not cached");
        assert_eq!(format!("{last:?}"), "LastToken(..)");
    }
}

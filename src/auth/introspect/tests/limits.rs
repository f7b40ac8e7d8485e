//! The introspector's bounds: cache bytes and entries, call rate and concurrency, against the
//! fake endpoint of `super`.

use super::cache::approx_bytes;
use super::*;

// ---- cache size -------------------------------------------------------------------------

fn active_verdict(claims: Value) -> Verdict {
    let Value::Object(map) = claims else { unreachable!() };
    Verdict::Active(Arc::new(Principal::from_claims(0, Arc::from("i"), map, &Default::default())))
}

/// An entry weighs at least its bookkeeping, and an active one its strings and kept claims.
#[test]
fn entries_weigh_what_they_hold() {
    let inactive = approx_bytes(&Verdict::Inactive(INACTIVE));
    let small = approx_bytes(&active_verdict(json!({"sub": "alice", "scope": "read"})));
    let large = approx_bytes(&active_verdict(json!({"sub": "alice", "pad": "x".repeat(20_000)})));
    assert!((300..1000).contains(&inactive), "{inactive}");
    assert!(small > inactive, "{small} vs {inactive}");
    assert!(large >= inactive + 20_000, "{large} vs {inactive}");
    let many = approx_bytes(&active_verdict(json!({"groups": vec!["g"; 1000]})));
    assert!(many >= small + 1000 * std::mem::size_of::<Value>(), "{many}");
}

/// A flood of tokens with large answers stays under `cache_max_bytes`, far below the entry
/// bound; the cache keeps answering.
#[tokio::test]
async fn cache_stays_under_its_byte_bound() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.answer(Answer::Json(json!({"active": true, "sub": "a", "pad": "x".repeat(20_000)})));
    const MAX_BYTES: usize = 256 * 1024;
    let (i, _) = introspector(&fake, |s| {
        s.cache_max_bytes = MAX_BYTES;
        s.cache_capacity = 10_000;
    });
    for n in 0..60 {
        i.introspect(&format!("token-{n}")).await.unwrap();
        i.cache.run_pending_tasks().await;
        assert!(i.cache.weighted_size() <= MAX_BYTES as u64, "after {n}: {}", i.cache.weighted_size());
    }
    assert!(i.cache.entry_count() <= 12, "{} entries of ~20 KiB", i.cache.entry_count());
    assert!(i.cache.weighted_size() >= 100 * 1024, "the cache is still used: {}", i.cache.weighted_size());
}

/// Small entries meet the entry bound: weights are at least `cache_max_bytes / cache_capacity`.
#[tokio::test]
async fn cache_keeps_its_entry_bound() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let (i, _) = introspector(&fake, |s| {
        s.cache_max_bytes = 1 << 30;
        s.cache_capacity = 20;
    });
    for n in 0..60 {
        assert_eq!(i.introspect(&format!("token-{n}")).await, Err(INACTIVE));
    }
    i.cache.run_pending_tasks().await;
    assert!(i.cache.entry_count() <= 20, "{}", i.cache.entry_count());
}

// ---- call limits ------------------------------------------------------------------------

fn limited(m: &Metrics, i: &Introspector, limit: &str) -> u64 {
    m.introspection_limited.with_label_values(&[i.issuer.issuer.as_str(), limit]).get()
}

/// Beyond the rate, a miss is 503 "busy" with no call; cached answers (positive and negative)
/// keep working, and the refusals never count towards the breaker.
#[tokio::test]
async fn rate_limited_misses_are_busy_and_spare_the_breaker() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("good", json!({"sub": "a"}));
    let (i, m) = introspector(&fake, |s| {
        s.rate_limit = 0.001;
        s.rate_burst = 2;
        s.breaker_failures = 1;
    });
    assert!(i.introspect("good").await.is_ok());
    assert_eq!(i.introspect("revoked").await, Err(INACTIVE));
    for n in 0..20 {
        assert_eq!(i.introspect(&format!("random-{n}")).await, Err(BUSY));
    }
    assert_eq!(fake.calls(), 2, "refused misses make no call");
    assert_eq!((limited(&m, &i, "rate"), limited(&m, &i, "concurrency")), (20, 0));
    assert!(i.introspect("good").await.is_ok(), "a cached active answer still admits");
    assert_eq!(i.introspect("revoked").await, Err(INACTIVE), "a cached inactive answer still refuses");
    let permit = i.breaker.admit().expect("the breaker is closed");
    assert!(!permit.trial);
    assert_eq!(outcome(&m, &i, "circuit_open"), 0);
}

/// At most max_concurrent calls are under way; other misses wait briefly, then are busy.
#[tokio::test]
async fn concurrent_misses_beyond_the_limit_are_busy() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.with(|s| s.delay = Duration::from_millis(500));
    let (i, m) = introspector(&fake, |s| s.max_concurrent = 2);
    let i = Arc::new(i);
    let mut tasks = JoinSet::new();
    for n in 0..10 {
        let i = i.clone();
        tasks.spawn(async move { i.introspect(&format!("t{n}")).await });
    }
    let mut busy = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Err(BUSY) => busy += 1,
            other => assert_eq!(other, Err(INACTIVE)),
        }
    }
    assert_eq!((fake.calls(), busy, limited(&m, &i, "concurrency")), (2, 8, 8));
    assert!(i.breaker.admit().is_some_and(|p| !p.trial), "the breaker is closed");
}

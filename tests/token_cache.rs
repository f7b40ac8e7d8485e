//! The verified-token cache end to end: the real gateway, a real upstream and the dev issuer.
//! A cached token must never be admitted where a full verification would refuse it.
//! The gateway reads a `ManualClock`: a token expires when a test moves the clock past its
//! `exp`, not after a wait.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::*;
use tokengate::config::Config;
use tokengate::dev_issuer::{DevIssuer, SigningKey};

struct Env {
    idp: DevIssuer,
    up: Upstream,
    gw: tokengate::app::Running,
    /// The gateway's clock, stopped at the start of the second the gateway started in.
    clock: ManualClock,
    /// One client whose keep-alive connection is reused: its requests meet the connection's
    /// remembered last token rather than the shared cache.
    kept: reqwest::Client,
}

impl Env {
    async fn with(tweak: impl FnOnce(&mut Config)) -> Env {
        let key = Arc::new(SigningKey::rsa("k1", Algorithm::RS256));
        let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
        let up = Upstream::start().await;
        let mut cfg = config(
            &up.url(),
            vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
            vec![
                required_route("read", "/read", &["read"]),
                required_route("write", "/write", &["write"]),
                required_route("any", "/", &[]),
            ],
        );
        cfg.jwks.unknown_kid_cooldown = Duration::from_millis(1);
        tweak(&mut cfg);
        let clock = ManualClock::starting_now();
        let gw = gateway_with_clock(cfg, &clock).await;
        wait_ready(&gw).await;
        Env { idp, up, gw, clock, kept: client(false) }
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        let url = format!("http://{}{path}", self.gw.addr);
        client(false).get(url).bearer_auth(token).send().await.unwrap()
    }

    /// `token` on the kept connection is refused 401 `invalid_token` for `reason`, and nothing
    /// is forwarded (`support::assert_refused`).
    async fn refused_kept(&self, path: &str, token: &str, reason: &str) {
        let request = self.kept.get(format!("http://{}{path}", self.gw.addr)).bearer_auth(token);
        assert_refused(&self.up, request, 401, Some("invalid_token"), reason).await;
    }

    /// The same on a new connection.
    async fn refused(&self, path: &str, token: &str, reason: &str) {
        let request = client(false).get(format!("http://{}{path}", self.gw.addr)).bearer_auth(token);
        assert_refused(&self.up, request, 401, Some("invalid_token"), reason).await;
    }

    async fn get_kept(&self, path: &str, token: &str) -> reqwest::Response {
        let url = format!("http://{}{path}", self.gw.addr);
        self.kept.get(url).bearer_auth(token).send().await.unwrap()
    }

    fn claims(&self, scope: &str) -> Value {
        json!({"iss": self.idp.issuer(), "sub": "alice", "aud": "api", "scope": scope})
    }

    fn signed(&self, key: &SigningKey, claims: Value) -> String {
        let now = self.clock.unix_secs();
        let mut claims = claims;
        claims.as_object_mut().unwrap().entry("exp").or_insert(json!(now + 600));
        key.sign_raw(&json!({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}), &claims)
    }

    /// A "read" token that expires two seconds after the gateway's current time, and its `exp`.
    fn expiring_soon(&self, key: &SigningKey) -> (String, u64) {
        let exp = self.clock.unix_secs() + 2;
        let mut claims = self.claims("read");
        claims["exp"] = json!(exp);
        (self.signed(key, claims), exp)
    }

    /// `tokengate_token_cache_lookups_total{cache="jwt",result=…}`, 0 when absent.
    async fn lookups(&self, result: &str) -> u64 {
        self.lookups_of("jwt", result).await
    }

    async fn lookups_of(&self, cache: &str, result: &str) -> u64 {
        let url = format!("http://{}/metrics", self.gw.admin_addr);
        let text = client(false).get(url).send().await.unwrap().text().await.unwrap();
        let prefix = format!("tokengate_token_cache_lookups_total{{cache=\"{cache}\",result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// The gateway's clock one millisecond before second `exp` begins: the last moment a cache
    /// may still serve a token that expires at `exp`.
    fn just_before(&self, exp: u64) {
        self.clock.set(Duration::from_secs(exp) - Duration::from_millis(1));
    }

    /// The gateway's clock at second `exp + 1`: `exp` has passed for the verifier, which
    /// refuses at now > exp (whole seconds, no leeway here).
    fn past(&self, exp: u64) {
        self.clock.set(Duration::from_secs(exp + 1));
    }
}

/// The first request verifies (a miss), the same token again is a hit, another token a miss.
#[tokio::test]
async fn hits_and_misses_are_counted() {
    let env = Env::with(|_| {}).await;
    let token = env.idp.mint(env.claims("read"));
    for _ in 0..3 {
        assert_eq!(env.get("/read", &token).await.status(), 200);
    }
    assert_eq!((env.lookups("hit").await, env.lookups("miss").await), (2, 1));
    assert_eq!(env.get("/read", &env.idp.mint(env.claims("read"))).await.status(), 200);
    assert_eq!((env.lookups("hit").await, env.lookups("miss").await), (2, 2));
    assert_eq!(env.up.count(), 4);
}

/// A cached token with scope `read` is still refused 403 on a route needing `write`.
#[tokio::test]
async fn cached_token_still_checked_against_route_policy() {
    let env = Env::with(|_| {}).await;
    let token = env.idp.mint(env.claims("read"));
    assert_eq!(env.get("/read", &token).await.status(), 200);
    let request = client(false).get(format!("http://{}/write", env.gw.addr)).bearer_auth(&token);
    assert_insufficient(&env.up, request, LACKS_SCOPE, "write").await;
    assert_eq!(env.lookups("hit").await, 1, "the refusal came from a cache hit");
}

/// After the JWKS drops a key and the gateway refetches, a cached token signed by that key is
/// refused on its very next request.
#[tokio::test]
async fn removed_key_stops_cached_token_at_once() {
    let env = Env::with(|_| {}).await;
    let old = env.idp.keys()[0].clone();
    let old_token = env.signed(&old, env.claims("read"));
    assert_eq!(env.get("/", &old_token).await.status(), 200);
    assert_eq!(env.get("/", &old_token).await.status(), 200);
    assert_eq!(env.lookups("hit").await, 1, "the old token is cached");
    let fetches = env.idp.jwks_requests();

    let new = Arc::new(SigningKey::rsa("k2", Algorithm::RS256));
    env.idp.set_keys(vec![new.clone()]);
    // A token with the new kid makes the gateway refetch the JWKS (unknown kid).
    assert_eq!(env.get("/", &env.signed(&new, env.claims("read"))).await.status(), 200);
    assert_eq!(env.idp.jwks_requests(), fetches + 1);

    env.refused("/", &old_token, "unknown signing key").await;
}

/// The same rules hold for the token a connection remembers: on one kept-alive connection, the
/// remembered token is still checked against each route, refused once its key leaves the JWKS
/// (the refetch triggered from another connection), and served up to `exp` but refused once it
/// has passed.
#[tokio::test]
async fn remembered_token_on_one_connection_follows_the_rules() {
    let env = Env::with(|cfg| cfg.issuers[0].leeway = Duration::ZERO).await;
    let old = env.idp.keys()[0].clone();
    let token = env.signed(&old, env.claims("read"));
    for _ in 0..3 {
        assert_eq!(env.get_kept("/read", &token).await.status(), 200);
    }
    let request = env.kept.get(format!("http://{}/write", env.gw.addr)).bearer_auth(&token);
    assert_insufficient(&env.up, request, LACKS_SCOPE, "write").await;
    assert_eq!(env.lookups("hit").await, 3);

    let new = Arc::new(SigningKey::rsa("k2", Algorithm::RS256));
    env.idp.set_keys(vec![new.clone()]);
    assert_eq!(env.get("/", &env.signed(&new, env.claims("read"))).await.status(), 200);
    // A remembered token that outlived its key would be admitted here.
    env.refused_kept("/read", &token, "unknown signing key").await;

    let (short, exp) = env.expiring_soon(&new);
    assert_eq!(env.get_kept("/read", &short).await.status(), 200);
    let hits = env.lookups("hit").await;
    assert_eq!(env.get_kept("/read", &short).await.status(), 200);
    env.just_before(exp);
    assert_eq!(env.get_kept("/read", &short).await.status(), 200, "refused before its exp");
    assert_eq!(env.lookups("hit").await, hits + 2, "the connection did not remember the token");
    env.past(exp);
    // A remembered token that outlived its exp would be admitted here.
    env.refused_kept("/read", &short, "token expired").await;
    assert_eq!(env.lookups("hit").await, hits + 2, "a hit after exp");
    assert_eq!(env.up.count(), 7, "only the admitted requests reached the upstream");
}

/// A connection that switches tokens gets each token's own identity headers: the values a
/// connection reuses for its previous principal never leak onto another token's request, and
/// a client's spoofed copy is replaced every time.
#[tokio::test]
async fn identity_headers_follow_the_token_on_one_connection() {
    let env = Env::with(|_| {}).await;
    let key = env.idp.keys()[0].clone();
    let token_for = |sub: &str, scope: &str| {
        env.signed(&key, json!({"iss": env.idp.issuer(), "sub": sub, "aud": "api", "scope": scope}))
    };
    let (alice, bob) = (token_for("alice", "read"), token_for("bob", "read write"));
    let url = format!("http://{}/read", env.gw.addr);
    for (token, sub, scopes) in
        [(&alice, "alice", "read"), (&alice, "alice", "read"), (&bob, "bob", "read write"), (&alice, "alice", "read")]
    {
        let resp = env.kept.get(&url).bearer_auth(token).header("x-auth-subject", "admin").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen = env.up.last();
        assert_eq!(seen.headers.get_all("x-auth-subject").iter().collect::<Vec<_>>(), [sub]);
        assert_eq!(seen.headers["x-auth-scopes"], scopes);
    }
}

/// The values a connection reuses keep the gateway's rules: with `forward_authorization` off,
/// the client's Authorization never reaches the upstream on a reused set either; and a claim
/// that cannot be a header value is refused every time the same token comes back.
#[tokio::test]
async fn reused_identity_keeps_authorization_off_and_bad_claims_refused() {
    let env = Env::with(|cfg| cfg.identity.forward_authorization = false).await;
    let key = env.idp.keys()[0].clone();
    let good = env.signed(&key, env.claims("read"));
    let bad = env.signed(&key, json!({"iss": env.idp.issuer(), "sub": "a\u{1}b", "aud": "api", "scope": "read"}));
    let url = format!("http://{}/read", env.gw.addr);
    for token in [&good, &good, &bad, &bad, &good] {
        if token == &bad {
            env.refused_kept("/read", token, "a claim cannot be sent as a header value").await;
        } else {
            let status = env.kept.get(&url).bearer_auth(token).send().await.unwrap().status();
            assert_eq!(status, 200);
            let seen = env.up.last();
            assert_eq!(seen.headers["x-auth-subject"], "alice");
            assert!(seen.headers.get("authorization").is_none(), "Authorization was forwarded");
        }
    }
    // The second `good` and `bad` come from the connection's memory, the last `good` from the cache.
    assert_eq!(env.lookups("hit").await, 3, "the repeated tokens were verified again");
}

/// A forged token sent again is refused from the refusal cache, with the same answer. When the
/// issuer's key set changes, it is verified anew: here the issuer replaced its key under the
/// same `kid`, so the token that failed before now verifies.
#[tokio::test]
async fn refused_token_is_remembered_until_the_key_set_changes() {
    let env = Env::with(|_| {}).await;
    let replacement = Arc::new(SigningKey::rsa("k1", Algorithm::RS256));
    let token = env.signed(&replacement, env.claims("read"));
    // The same answer each time, the second and third from the refusal cache.
    for _ in 0..3 {
        env.refused("/", &token, "signature verification failed").await;
    }
    assert_eq!(env.lookups_of("jwt_refusal", "hit").await, 2);

    env.idp.set_keys(vec![replacement.clone(), Arc::new(SigningKey::rsa("k3", Algorithm::RS256))]);
    let unknown_kid = env.signed(&env.idp.keys()[1].clone(), env.claims("read"));
    assert_eq!(env.get("/", &unknown_kid).await.status(), 200, "the refetch brought the new keys");
    assert_eq!(env.get("/", &token).await.status(), 200, "a refusal outlived the key set it was made under");
}

/// A token refused for an unknown `kid` is not remembered as refused: once the issuer publishes
/// the key, the same token is admitted.
#[tokio::test]
async fn unknown_kid_refusal_is_decided_again() {
    let env = Env::with(|_| {}).await;
    let later = Arc::new(SigningKey::rsa("k9", Algorithm::RS256));
    let token = env.signed(&later, env.claims("read"));
    for _ in 0..2 {
        env.refused("/", &token, "unknown signing key").await;
    }
    let current = env.idp.keys()[0].clone();
    env.idp.set_keys(vec![current, later]);
    assert_eq!(env.get("/", &token).await.status(), 200, "an unknown-kid refusal was remembered");
    assert_eq!(env.lookups_of("jwt_refusal", "hit").await, 0);
}

/// A cached entry ends at `exp`: served from the cache until then, and with no leeway the token
/// is refused once `exp` has passed, without a hit and without reaching the upstream.
#[tokio::test]
async fn cached_token_refused_after_exp() {
    let env = Env::with(|cfg| cfg.issuers[0].leeway = Duration::ZERO).await;
    let key = env.idp.keys()[0].clone();
    let (token, exp) = env.expiring_soon(&key);
    assert_eq!(env.get("/", &token).await.status(), 200);
    assert_eq!(env.get("/", &token).await.status(), 200);
    assert_eq!(env.lookups("hit").await, 1);
    env.just_before(exp);
    assert_eq!(env.get("/", &token).await.status(), 200, "refused before its exp");
    assert_eq!(env.lookups("hit").await, 2, "not served from the cache before its exp");
    env.past(exp);
    // A cached token that outlived its exp would be admitted here.
    env.refused("/", &token, "token expired").await;
    assert_eq!(env.lookups("hit").await, 2, "no hit after exp");
}

/// With the cache disabled every request is verified and no lookup is counted.
#[tokio::test]
async fn disabled_cache_is_not_consulted() {
    let env = Env::with(|cfg| cfg.token_cache.enabled = false).await;
    let token = env.idp.mint(env.claims("read"));
    assert_eq!(env.get("/read", &token).await.status(), 200);
    assert_eq!(env.get("/read", &token).await.status(), 200);
    assert_eq!((env.lookups("hit").await, env.lookups("miss").await), (0, 0));
}

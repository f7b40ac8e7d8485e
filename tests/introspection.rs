//! Opaque tokens end to end (RFC 7662): the real gateway, a real upstream and a fake
//! introspection endpoint that counts calls and checks the gateway's client authentication.
//! Refusals are checked not to reach the upstream; IdP trouble is a 503, never a 401.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tokengate::config::{ClientAuthMethod, Config, Introspection, KeySource, Secret, TokenMode, DEFAULT_ALGORITHMS};
use tokengate::dev_issuer::{DevIssuer, SigningKey};

struct Env {
    idp: FakeIntrospection,
    up: Upstream,
    gw: tokengate::app::Running,
}

impl Env {
    async fn start() -> Env {
        Env::with(ClientAuthMethod::ClientSecretBasic, |_| {}).await
    }

    /// `tweak` gets the config and the introspection settings of its only issuer.
    async fn with(method: ClientAuthMethod, tweak: impl FnOnce(&mut Config)) -> Env {
        let idp = FakeIntrospection::start(method).await;
        let up = Upstream::start().await;
        let mut cfg = config(
            &up.url(),
            vec![introspection_issuer(&idp.issuer(), &idp.endpoint(), &["api"], method)],
            vec![required_route("read", "/read", &["read"]), required_route("any", "/", &[])],
        );
        tweak(&mut cfg);
        let gw = gateway(cfg).await;
        Env { idp, up, gw }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr)
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        client(false).get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Members of an active answer the route `/` accepts.
    fn active(&self, token: &str) {
        self.idp.active(token, self.members());
    }

    fn members(&self) -> Value {
        json!({
            "iss": self.idp.issuer(), "sub": "alice", "aud": "api", "scope": "read write",
            "client_id": "cli", "token_type": "Bearer", "exp": now() + 600,
        })
    }

    /// A 401 invalid_token whose description is exactly `why`, not forwarded.
    async fn assert_invalid(&self, token: &str, why: &str) {
        assert_token_refused(&self.gw, &self.up, token, why).await;
    }

    /// A 503 with Retry-After, no challenge (the client keeps its token) and `why` as the
    /// description, not forwarded.
    async fn assert_unavailable(&self, token: &str, why: &str) {
        assert_refused(&self.up, self.request("/", token), 503, None, why).await;
    }

    /// GET `path` with `token`, ready for `assert_refused`.
    fn request(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        client(false).get(self.url(path)).bearer_auth(token)
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.gw.admin_addr);
        client(false).get(url).send().await.unwrap().text().await.unwrap()
    }
}

/// The endpoint could not give an answer (down, slow, 5xx, garbage, refused our credentials).
const FAILED: &str = "token introspection failed";

fn settings(cfg: &mut Config) -> &mut Introspection {
    cfg.issuers[0].introspection.as_mut().unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Polls `cond` every 20 ms until it holds; panics after WAIT.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An active token is forwarded with identity headers; an introspection-only gateway is ready at once.
#[tokio::test]
async fn active_token_forwarded_with_identity() {
    let env = Env::start().await;
    let ready = client(false).get(format!("http://{}/readyz", env.gw.admin_addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "an introspection-only issuer needs no JWKS to be ready");
    env.active("opaque-token-1");
    let resp = env.get("/read/x", "opaque-token-1").await;
    assert_eq!(resp.status(), 200);
    let h = env.up.last().headers;
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h["x-auth-scopes"], "read write");
    assert_eq!(h["x-auth-client-id"], "cli");
    assert_eq!(h["x-auth-issuer"], env.idp.issuer().as_str());
    assert_eq!(h["authorization"], "Bearer opaque-token-1");
    assert_eq!((env.idp.calls(), env.idp.auth_failures()), (1, 0));
}

/// An answer's scopes are matched as a JWT's (RFC 7662 §2.2: space-separated, RFC 6749 §3.3):
/// every near miss of `read`, in `scope` or as an `scp` array, is 403 insufficient_scope with
/// `scope="read"` (RFC 6750 §3.1) and never forwarded; `read` among others is admitted.
#[tokio::test]
async fn near_miss_scopes_refused() {
    let env = Env::start().await;
    let answer = |token: &str, member: &str, value: Value| {
        let mut members = env.members();
        members.as_object_mut().unwrap().remove("scope");
        members[member] = value;
        env.idp.active(token, members);
    };
    for (n, near) in NEAR_MISS_SCOPES.iter().enumerate() {
        answer(&format!("near-miss-{n}"), "scope", json!(near));
    }
    answer("scp-readonly", "scp", json!(["readonly"]));
    answer("scp-near", "scp", json!(["read:all", "READ", "read "]));
    let tokens =
        (0..NEAR_MISS_SCOPES.len()).map(|n| format!("near-miss-{n}")).chain(["scp-readonly".into(), "scp-near".into()]);
    for token in tokens {
        assert_insufficient(&env.up, env.request("/read", &token), LACKS_SCOPE, "read").await;
    }
    assert_eq!(env.up.count(), 0);
    answer("among-others", "scope", json!("write read"));
    answer("scp-among-others", "scp", json!(["write", "read"]));
    for token in ["among-others", "scp-among-others"] {
        assert_eq!(env.get("/read", token).await.status(), 200, "{token}");
    }
}

/// An inactive token is 401 invalid_token.
#[tokio::test]
async fn inactive_token_is_401() {
    let env = Env::start().await;
    env.assert_invalid("revoked-or-unknown", "token is not active").await;
}

/// An active answer for another audience is 401 (route policy checks aud as for JWTs).
#[tokio::test]
async fn wrong_audience_is_401() {
    let env = Env::start().await;
    let mut members = env.members();
    members["aud"] = json!(["other-api"]);
    env.idp.active("t", members);
    env.assert_invalid("t", "token is not intended for this audience").await;
}

/// An active answer whose exp has passed (beyond the leeway) is 401 token expired.
#[tokio::test]
async fn expired_exp_is_401() {
    let env = Env::start().await;
    let mut members = env.members();
    members["exp"] = json!(now() - 120);
    env.idp.active("t", members);
    env.assert_invalid("t", "token expired").await;
}

/// An active answer naming another issuer, or for a refresh token, is 401.
#[tokio::test]
async fn foreign_issuer_or_refresh_token_is_401() {
    let env = Env::start().await;
    let mut members = env.members();
    members["iss"] = json!("https://other.example");
    env.idp.active("foreign", members);
    env.assert_invalid("foreign", "wrong issuer").await;
    let mut members = env.members();
    members["token_type"] = json!("refresh_token");
    env.idp.active("refresh", members);
    env.assert_invalid("refresh", "token is not an access token").await;
}

/// The endpoint refusing the gateway's client credentials is 503, not 401.
#[tokio::test]
async fn client_auth_rejected_is_503() {
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).client_secret = Secret(b"not the secret".to_vec());
    })
    .await;
    env.active("t");
    env.assert_unavailable("t", FAILED).await;
    assert_eq!(env.idp.auth_failures(), 1);
}

/// An unreachable endpoint is 503 with Retry-After.
#[tokio::test]
async fn endpoint_down_is_503() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).endpoint = Some(format!("http://{closed}/introspect"));
    })
    .await;
    env.assert_unavailable("t", FAILED).await;
}

/// A 200 answer that is not JSON (or has no boolean active) is 503.
#[tokio::test]
async fn malformed_answer_is_503() {
    let env = Env::start().await;
    env.idp.script(|s| s.raw = Some("{\"active\": tru".into()));
    env.assert_unavailable("t", FAILED).await;
    env.idp.script(|s| s.raw = Some("{\"sub\": \"alice\"}".into()));
    env.assert_unavailable("t", FAILED).await;
    assert_eq!(env.idp.calls(), 2, "failures are not cached");
}

/// A 5xx from the endpoint is 503.
#[tokio::test]
async fn server_error_is_503() {
    let env = Env::start().await;
    env.idp.script(|s| s.status = Some(500));
    env.assert_unavailable("t", FAILED).await;
}

/// An endpoint slower than the timeout is 503, within about the timeout.
#[tokio::test]
async fn slow_endpoint_is_503() {
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).timeout = Duration::from_millis(200);
    })
    .await;
    env.active("t");
    env.idp.script(|s| s.delay = Duration::from_secs(5));
    let started = Instant::now();
    env.assert_unavailable("t", FAILED).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

/// A second request with the same active token is served from the cache.
#[tokio::test]
async fn positive_cache_hit() {
    let env = Env::start().await;
    env.active("t");
    assert_eq!(env.get("/", "t").await.status(), 200);
    assert_eq!(env.get("/read", "t").await.status(), 200);
    assert_eq!(env.idp.calls(), 1);
    let metrics = env.metrics().await;
    assert!(
        metrics.contains("tokengate_token_cache_lookups_total{cache=\"introspection\",result=\"hit\"} 1"),
        "{metrics}"
    );
}

/// An inactive answer is cached for negative_ttl, then asked again.
#[tokio::test]
async fn negative_cache_and_its_expiry() {
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).negative_ttl = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    env.assert_invalid("t", "token is not active").await;
    env.assert_invalid("t", "token is not active").await;
    assert_eq!(env.idp.calls(), 1, "the inactive answer was not cached");
    // Activated at the IdP: admitted once the negative entry expires.
    env.active("t");
    eventually("the negative entry expires", async || env.get("/", "t").await.status() == 200).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "expired after {:?}", started.elapsed());
    assert_eq!(env.idp.calls(), 2);
}

/// An active answer is reused for cache_max_ttl at most, then the token is introspected again.
#[tokio::test]
async fn positive_cache_expires_after_ttl() {
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).cache_max_ttl = Duration::from_millis(300);
    })
    .await;
    env.active("t");
    let started = Instant::now();
    assert_eq!(env.get("/", "t").await.status(), 200);
    // Revoked at the IdP: refused once the cached answer expires.
    env.idp.script(|s| s.tokens.clear());
    eventually("the cached answer expires", async || env.get("/", "t").await.status() == 401).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "expired after {:?}", started.elapsed());
    assert_eq!(env.idp.calls(), 2);
    env.assert_invalid("t", "token is not active").await;
}

/// 50 concurrent requests with one uncached token make exactly one introspection call.
#[tokio::test]
async fn concurrent_requests_coalesce() {
    let env = Env::start().await;
    env.active("t");
    env.idp.script(|s| s.delay = Duration::from_millis(300));
    let http = client(false);
    let requests = (0..50).map(|_| http.get(env.url("/")).bearer_auth("t").send());
    for resp in futures_join_all(requests).await {
        assert_eq!(resp.unwrap().status(), 200);
    }
    assert_eq!(env.idp.calls(), 1);
    assert_eq!(env.up.count(), 50);
    let metrics = env.metrics().await;
    assert!(metrics.contains("tokengate_introspection_requests_total{issuer=\""), "{metrics}");
    assert!(metrics.contains("outcome=\"active\"} 1"), "{metrics}");
    assert!(metrics.contains("tokengate_introspection_duration_seconds_count{issuer=\""), "{metrics}");
}

/// After breaker_failures consecutive failures calls stop (503 at once); after breaker_open_for one trial call closes it.
#[tokio::test]
async fn circuit_breaker_opens_and_half_opens() {
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        settings(cfg).breaker_failures = 3;
        settings(cfg).breaker_open_for = Duration::from_millis(300);
    })
    .await;
    env.idp.script(|s| s.status = Some(502));
    for token in ["a", "b", "c"] {
        env.assert_unavailable(token, FAILED).await;
    }
    assert_eq!(env.idp.calls(), 3);
    // Open: the endpoint has recovered, but the gateway does not call it yet.
    env.idp.script(|s| s.status = None);
    env.active("d");
    env.assert_unavailable("d", "token introspection is temporarily suspended").await;
    env.assert_unavailable("d", "token introspection is temporarily suspended").await;
    assert_eq!(env.idp.calls(), 3, "an open breaker must not call the endpoint");
    // Half-open: one trial call; it succeeds and closes the breaker.
    eventually("the trial call", async || env.get("/", "d").await.status() == 200).await;
    assert_eq!(env.idp.calls(), 4);
    env.assert_invalid("e", "token is not active").await;
    assert_eq!(env.idp.calls(), 5, "closed: calls flow again");
    let metrics = env.metrics().await;
    let fast_fails: u64 = metrics
        .lines()
        .find(|l| l.starts_with("tokengate_introspection_requests_total") && l.contains("outcome=\"circuit_open\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no circuit_open series in {metrics}"));
    assert!(fast_fails >= 2, "{fast_fails}");
}

/// With client_secret_post the credentials go in the body, and the token is admitted.
#[tokio::test]
async fn client_secret_post_variant() {
    let env = Env::with(ClientAuthMethod::ClientSecretPost, |_| {}).await;
    env.active("t");
    assert_eq!(env.get("/", "t").await.status(), 200);
    assert_eq!((env.idp.calls(), env.idp.auth_failures()), (1, 0));
}

/// A JWT from a jwt-mode issuer is validated locally next to an introspection issuer; opaque tokens are introspected.
#[tokio::test]
async fn jwt_issuer_alongside_introspection() {
    let dev = DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![std::sync::Arc::new(SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256))],
    )
    .await
    .unwrap();
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        cfg.issuers.insert(0, issuer(dev.issuer(), &dev.jwks_uri(), &["api"]));
    })
    .await;
    assert_eq!(env.gw.state().config.issuers[0].mode, TokenMode::Jwt);
    wait_ready(&env.gw).await;

    let jwt = dev.mint(json!({"sub": "jwt-user", "aud": "api", "scope": "read"}));
    assert_eq!(env.get("/read", &jwt).await.status(), 200);
    assert_eq!(env.up.last().headers["x-auth-subject"], "jwt-user");
    assert_eq!(env.idp.calls(), 0, "a JWT from a jwt issuer was introspected");
    let forged = dev.mint(json!({"sub": "x", "aud": "api", "exp": now() - 3600}));
    env.assert_invalid(&forged, "token expired").await;
    assert_eq!(env.idp.calls(), 0, "a bad JWT from a jwt issuer falls back to introspection");

    env.active("opaque");
    assert_eq!(env.get("/read", "opaque").await.status(), 200);
    assert_eq!(env.up.last().headers["x-auth-subject"], "alice");
    assert_eq!(env.idp.calls(), 1);
    // A JWS naming the introspection-only issuer is introspected, never verified locally.
    let named = dev.mint(json!({"iss": env.idp.issuer(), "sub": "x", "aud": "api"}));
    env.assert_invalid(&named, "token is not active").await;
    assert_eq!(env.idp.calls(), 2);
}

/// An auto-mode issuer (RFC 7662 and a key set): a JWS naming it is validated locally — admitted
/// or refused without an introspection call — and an opaque token is introspected.
#[tokio::test]
async fn auto_issuer_validates_its_jws_locally() {
    let dev = DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![std::sync::Arc::new(SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256))],
    )
    .await
    .unwrap();
    let env = Env::with(ClientAuthMethod::ClientSecretBasic, |cfg| {
        cfg.issuers[0].mode = TokenMode::Auto;
        cfg.issuers[0].keys = KeySource::JwksUri(dev.jwks_uri());
        cfg.issuers[0].algorithms = DEFAULT_ALGORITHMS.to_vec();
    })
    .await;
    wait_ready(&env.gw).await;

    let jws = dev.mint(json!({"iss": env.idp.issuer(), "sub": "local", "aud": "api", "scope": "read"}));
    assert_eq!(env.get("/read", &jws).await.status(), 200);
    assert_eq!(env.up.last().headers["x-auth-subject"], "local");
    let expired = dev.mint(json!({"iss": env.idp.issuer(), "sub": "x", "aud": "api", "exp": now() - 3600}));
    env.assert_invalid(&expired, "token expired").await;
    assert_eq!(env.idp.calls(), 0, "a JWS naming an auto issuer was introspected");

    env.active("opaque");
    assert_eq!(env.get("/read", "opaque").await.status(), 200);
    assert_eq!(env.up.last().headers["x-auth-subject"], "alice");
    assert_eq!(env.idp.calls(), 1);
}

/// Await every future (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

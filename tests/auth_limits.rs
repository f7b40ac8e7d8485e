//! Nothing a remote party sends can panic a request or flood the auth path: out-of-range numbers
//! in introspection answers and tokens, floods of opaque tokens against the introspection call
//! limits, and JWTs without `kid` against large key sets. Real gateway, real upstream, real
//! loopback identity providers; every refused request is checked not to reach the upstream.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::*;
use tokengate::config::{ClientAuthMethod, Config, Introspection};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn get(gw: &tokengate::app::Running, token: &str) -> reqwest::Response {
    let resp = client(false).get(format!("http://{}/", gw.addr)).bearer_auth(token).send().await;
    resp.unwrap_or_else(|e| panic!("the connection dropped: {e}"))
}

async fn metrics(gw: &tokengate::app::Running) -> String {
    let url = format!("http://{}/metrics", gw.admin_addr);
    client(false).get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of the first series of `metrics` whose line contains every one of `parts`.
fn series(metrics: &str, parts: &[&str]) -> Option<u64> {
    let line = metrics.lines().find(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Polls `cond` every 10 ms; panics after WAIT.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 503 with Retry-After and no challenge (the client keeps its token), refused by the
/// introspection call limits (not by the breaker, not as the endpoint's failure).
async fn assert_busy(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 503, "{what}");
    assert!(resp.headers().contains_key("retry-after"), "{what}: {:?}", resp.headers());
    assert!(!resp.headers().contains_key("www-authenticate"), "{what}: a 503 must not challenge");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_description"], "introspection is busy", "{what}");
}

// === out-of-range numbers =====================================================================

/// An introspection answer whose `exp` is far beyond any clock (`1e19` is past `i64` seconds)
/// admits the token for the cache's TTL; it must not panic the request and drop the connection.
#[tokio::test]
async fn introspection_exp_out_of_range_does_not_panic() {
    let idp = FakeIntrospection::start(ClientAuthMethod::ClientSecretBasic).await;
    let up = Upstream::start().await;
    let cfg = config(
        &up.url(),
        vec![introspection_issuer(&idp.issuer(), &idp.endpoint(), &["api"], ClientAuthMethod::ClientSecretBasic)],
        vec![required_route("any", "/", &[])],
    );
    let gw = gateway(cfg).await;
    let members = |exp: Value| json!({"iss": idp.issuer(), "sub": "alice", "aud": "api", "exp": exp});
    for (token, exp) in [("exp-1e19", json!(1e19)), ("exp-u64-max", json!(u64::MAX)), ("exp-1e308", json!(1e308))] {
        idp.active(token, members(exp));
        assert_eq!(get(&gw, token).await.status(), 200, "{token}");
        assert_eq!(get(&gw, token).await.status(), 200, "{token}, cached");
    }
    // Far in the past, and nbf far in the future: refused, not a panic.
    idp.active("exp-neg", members(json!(-1e308)));
    assert_token_refused(&gw, &up, "exp-neg", "token expired").await;
    let mut nbf = members(json!(now() + 600));
    nbf["nbf"] = json!(1e308);
    idp.active("nbf-huge", nbf);
    assert_token_refused(&gw, &up, "nbf-huge", "token not yet valid").await;
    assert_eq!(up.count(), 6);
}

/// JWT `exp`/`nbf`/`iat` at the edges of what JSON numbers allow: accepted or refused, never a
/// panic, and the verified-token cache serves them no longer than its cap.
#[tokio::test]
async fn jwt_numbers_out_of_range_do_not_panic() {
    use tokengate::dev_issuer::{DevIssuer, SigningKey};
    let key = Arc::new(SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256));
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
    let up = Upstream::start().await;
    let cfg =
        config(&up.url(), vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])], vec![required_route("any", "/", &[])]);
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    let mint = |extra: Value| {
        let mut claims = json!({"sub": "alice", "aud": "api"});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        idp.mint(claims)
    };
    for exp in [json!(1e19), json!(u64::MAX), json!(1e308), json!(i64::MAX)] {
        let token = mint(json!({ "exp": exp, "iat": -1e308, "nbf": -1e308 }));
        assert_eq!(get(&gw, &token).await.status(), 200, "exp {exp}");
        assert_eq!(get(&gw, &token).await.status(), 200, "exp {exp}, cached");
    }
    for (claims, why) in [
        (json!({"exp": -1e308}), "token expired"),
        (json!({"exp": i64::MIN}), "token expired"),
        (json!({"nbf": 1e308}), "token not yet valid"),
        (json!({"nbf": u64::MAX}), "token not yet valid"),
    ] {
        assert_token_refused(&gw, &up, &mint(claims), why).await;
    }
}

// === introspection call limits ================================================================

/// A loopback RFC 7662 endpoint that holds every call until released and counts the calls in
/// flight (client authentication is `FakeIntrospection`'s concern, not this one's).
struct HeldIntrospection {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    active: Arc<Mutex<HashMap<String, Value>>>,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HeldIntrospection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HeldIntrospection {
    async fn start() -> HeldIntrospection {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(true);
        let active: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let (calls, in_flight, max_in_flight) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (calls2, in_flight2, max2, active2) =
            (calls.clone(), in_flight.clone(), max_in_flight.clone(), Arc::clone(&active));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (calls, in_flight, max, active, gate) =
                    (calls2.clone(), in_flight2.clone(), max2.clone(), active2.clone(), gate.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (calls, in_flight, max, active, mut gate) =
                        (calls.clone(), in_flight.clone(), max.clone(), active.clone(), gate.clone());
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let token = form_urlencoded::parse(&body).find(|(k, _)| k == "token").map(|(_, v)| v);
                        let answer = match token.and_then(|t| active.lock().unwrap().get(t.as_ref()).cloned()) {
                            Some(mut members) => {
                                members["active"] = json!(true);
                                members
                            }
                            None => json!({"active": false}),
                        };
                        let _ = tokio::time::timeout(WAIT, gate.wait_for(|open| *open)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let response = hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer.to_string())))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HeldIntrospection { addr, calls, in_flight, max_in_flight, active, open, task }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn activate(&self, token: &str) {
        let members = json!({"iss": self.issuer(), "sub": "alice", "aud": "api", "exp": now() + 600});
        self.active.lock().unwrap().insert(token.to_owned(), members);
    }

    fn hold(&self, held: bool) {
        self.open.send_replace(!held);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The gateway in front of `idp` with `tweak` applied to its introspection settings (timeout
/// 5 s so held calls do not time out; breaker after one failure, so that a refusal counted as
/// a failure would show).
async fn gateway_for(idp: &HeldIntrospection, up: &Upstream, tweak: impl FnOnce(&mut Introspection)) -> Config {
    let mut issuer = introspection_issuer(
        &idp.issuer(),
        &format!("{}/introspect", idp.issuer()),
        &["api"],
        ClientAuthMethod::ClientSecretBasic,
    );
    let settings = issuer.introspection.as_mut().unwrap();
    settings.timeout = Duration::from_secs(5);
    settings.breaker_failures = 1;
    tweak(settings);
    config(&up.url(), vec![issuer], vec![required_route("any", "/", &[])])
}

/// A flood of distinct opaque tokens against a slow endpoint: the endpoint never sees more
/// than `max_concurrent` calls at once, the excess gets 503 at once (no queue), a token cached
/// before the flood keeps working during it, and the breaker stays closed afterwards.
#[tokio::test]
async fn introspection_flood_is_bounded_by_max_concurrent() {
    const MAX: usize = 4;
    const FLOOD: usize = 40;
    let idp = HeldIntrospection::start().await;
    let up = Upstream::start().await;
    let gw = gateway(gateway_for(&idp, &up, |s| s.max_concurrent = MAX).await).await;
    idp.activate("cached-before-the-flood");
    assert_eq!(get(&gw, "cached-before-the-flood").await.status(), 200);
    assert_eq!(idp.calls(), 1);

    idp.hold(true);
    let mut flood = JoinSet::new();
    for n in 0..FLOOD {
        let url = format!("http://{}/", gw.addr);
        flood.spawn(async move { client(false).get(url).bearer_auth(format!("random-{n}")).send().await.unwrap() });
    }
    // While MAX calls are held, every other request is refused at once (after a short wait for
    // a slot at most), and the cached token is still admitted.
    eventually("MAX calls held at the endpoint", || idp.in_flight.load(Ordering::SeqCst) == MAX).await;
    let started = Instant::now();
    for n in 0..FLOOD - MAX {
        let resp = tokio::time::timeout(WAIT, flood.join_next()).await.expect("refused at once").unwrap().unwrap();
        assert_busy(resp, &format!("flood response {n}")).await;
    }
    assert!(started.elapsed() < Duration::from_secs(3), "the excess waited {:?}", started.elapsed());
    assert_eq!(get(&gw, "cached-before-the-flood").await.status(), 200, "a cached token works during the flood");
    assert_eq!(idp.in_flight.load(Ordering::SeqCst), MAX, "the held calls are still under way");

    idp.hold(false);
    while let Some(resp) = flood.join_next().await {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 401, "a held call answered inactive");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error_description"], "token is not active");
    }
    assert_eq!(idp.max_in_flight.load(Ordering::SeqCst), MAX, "the endpoint saw more than max_concurrent");
    assert_eq!(idp.calls(), 1 + MAX);
    assert_eq!(up.count(), 2, "only the cached token's requests were forwarded");

    // The breaker is closed: the next miss is introspected, not refused.
    idp.activate("after-the-flood");
    assert_eq!(get(&gw, "after-the-flood").await.status(), 200);
    assert_eq!(idp.calls(), 2 + MAX);
    let m = metrics(&gw).await;
    let limited = ["tokengate_introspection_limited_total{", "limit=\"concurrency\""];
    assert_eq!(series(&m, &limited), Some((FLOOD - MAX) as u64), "{m}");
    // Present at zero from start-up (`Metrics::prepare`), and never counted.
    assert_eq!(series(&m, &["tokengate_introspection_requests_total", "circuit_open"]), Some(0), "{m}");
}

/// Beyond the rate limit's burst, misses get 503 without waiting and without a call; cached
/// answers (positive and negative) keep working; with a breaker that opens on one failure,
/// every refusal is still counted as the limit's, never as the endpoint's failure.
#[tokio::test]
async fn introspection_rate_limit_refuses_excess() {
    let idp = HeldIntrospection::start().await;
    let up = Upstream::start().await;
    let gw = gateway(
        gateway_for(&idp, &up, |s| {
            s.rate_limit = 0.001;
            s.rate_burst = 2;
        })
        .await,
    )
    .await;
    idp.activate("good");
    assert_eq!(get(&gw, "good").await.status(), 200);
    assert_token_refused(&gw, &up, "revoked", "token is not active").await;
    let started = Instant::now();
    for n in 0..10 {
        let before = up.count();
        assert_busy(get(&gw, &format!("random-{n}")).await, &format!("random-{n}")).await;
        assert_eq!(up.count(), before, "a refused request reached the upstream");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "refusals waited: {:?}", started.elapsed());
    assert_eq!(idp.calls(), 2, "refused misses made no call");
    assert_eq!(get(&gw, "good").await.status(), 200, "a cached active answer still admits");
    assert_token_refused(&gw, &up, "revoked", "token is not active").await;
    let m = metrics(&gw).await;
    assert_eq!(series(&m, &["tokengate_introspection_limited_total{", "limit=\"rate\""]), Some(10), "{m}");
    // Present at zero from start-up (`Metrics::prepare`), and never counted.
    assert_eq!(series(&m, &["tokengate_introspection_requests_total", "circuit_open"]), Some(0), "{m}");
}

// === JWTs without kid =========================================================================

mod no_kid {
    use super::*;
    use tokengate::dev_issuer::{DevIssuer, SigningKey};

    fn ec(kid: &str) -> Arc<SigningKey> {
        Arc::new(SigningKey::ec(kid, jsonwebtoken::Algorithm::ES256))
    }

    /// A token signed by `key` whose header names no key.
    fn without_kid(idp: &DevIssuer, key: &SigningKey) -> String {
        let claims = json!({"iss": idp.issuer(), "sub": "alice", "aud": "api", "iat": now(), "exp": now() + 600});
        key.sign_raw(&json!({"alg": "ES256", "typ": "at+jwt"}), &claims)
    }

    async fn start(keys: Vec<Arc<SigningKey>>) -> (DevIssuer, Upstream, tokengate::app::Running) {
        let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), keys).await.unwrap();
        let up = Upstream::start().await;
        let cfg = config(
            &up.url(),
            vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
            vec![required_route("any", "/", &[])],
        );
        let gw = gateway(cfg).await;
        wait_ready(&gw).await;
        (idp, up, gw)
    }

    /// With more keys of the token's algorithm than may be tried, a token without kid is
    /// refused — even one genuinely signed by a published key — and causes no JWKS fetch; the
    /// same key named by its kid is admitted.
    #[tokio::test]
    async fn refused_against_a_large_key_set() {
        let keys: Vec<_> = (0..6).map(|i| ec(&format!("k{i}"))).collect();
        let (idp, up, gw) = start(keys.clone()).await;
        let fetches = idp.jwks_requests();
        let late = &keys[5];
        let token = without_kid(&idp, late);
        assert_token_refused(&gw, &up, &token, "token has no kid and the key set has too many candidate keys").await;
        assert_eq!(idp.jwks_requests(), fetches, "a refetch cannot make the key set smaller");
        let named = late.sign_raw(
            &json!({"alg": "ES256", "kid": "k5", "typ": "at+jwt"}),
            &json!({"iss": idp.issuer(), "sub": "alice", "aud": "api", "exp": now() + 600}),
        );
        assert_eq!(get(&gw, &named).await.status(), 200);
    }

    /// A token without kid signed by a key published since the last fetch is admitted after
    /// one refetch (as an unknown kid would be); a flood of forgeries without kid then causes
    /// no further fetch within the cooldown, concurrent or not.
    #[tokio::test]
    async fn unknown_key_refetch_is_rate_limited() {
        let (k1, k2) = (ec("k1"), ec("k2"));
        let (idp, up, gw) = start(vec![k1.clone()]).await;
        let fetches = idp.jwks_requests();
        idp.set_keys(vec![k1.clone(), k2.clone()]);
        assert_eq!(get(&gw, &without_kid(&idp, &k2)).await.status(), 200, "the rotated-in key, on first sight");
        assert_eq!(idp.jwks_requests(), fetches + 1);

        let stranger = ec("never-published");
        let mut flood = JoinSet::new();
        for _ in 0..30 {
            let (url, token) = (format!("http://{}/", gw.addr), without_kid(&idp, &stranger));
            flood.spawn(async move {
                let resp = client(false).get(url).bearer_auth(token).send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap()["error_description"].clone())
            });
        }
        while let Some(refused) = flood.join_next().await {
            assert_eq!(refused.unwrap(), (401, json!("signature verification failed")));
        }
        for _ in 0..20 {
            let token = without_kid(&idp, &stranger);
            assert_token_refused(&gw, &up, &token, "signature verification failed").await;
        }
        assert_eq!(idp.jwks_requests(), fetches + 1, "forgeries without kid within the cooldown fetched");
        assert_eq!(up.count(), 1);
    }
}

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::cache::ttl;
use super::*;
use crate::clock::ManualClock;
use crate::config::{KeySource, Secret, TokenMode, DEFAULT_LEEWAY};

/// Credentials with characters RFC 6749 §2.3.1 form-encodes before Basic.
const ID: &str = "gate way:1";
const SECRET: &str = "s3cr+t/&=é";
/// `ID:SECRET`, each form-urlencoded (Appendix B), written out independently of the code.
const ENCODED: &str = "gate+way%3A1:s3cr%2Bt%2F%26%3D%C3%A9";

// ---- a scriptable fake introspection endpoint on loopback -------------------------------

/// What `/introspect` answers once the client is authenticated.
#[derive(Clone)]
enum Answer {
    /// `by_token[token]` with `active: true` added, else `{"active": false}`.
    Tokens,
    Json(Value),
    Status(u16),
    Raw(String),
    /// `Raw`, sent chunked (no `Content-Length`): the size is known only once read.
    Chunked(String),
}

/// One request as the endpoint saw it.
#[derive(Clone, Debug)]
struct Seen {
    form: HashMap<String, String>,
    authorization: Option<String>,
    accept: Option<String>,
    content_type: Option<String>,
}

struct FakeState {
    answer: Answer,
    by_token: HashMap<String, Value>,
    delay: Duration,
    method: ClientAuthMethod,
    calls: usize,
    auth_failures: usize,
    seen: Vec<Seen>,
    metadata: Option<Value>,
    metadata_calls: usize,
}

struct Fake {
    base: String,
    state: Arc<StdMutex<FakeState>>,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(method: ClientAuthMethod) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(StdMutex::new(FakeState {
            answer: Answer::Tokens,
            by_token: HashMap::new(),
            delay: Duration::ZERO,
            method,
            calls: 0,
            auth_failures: 0,
            seen: Vec::new(),
            metadata: None,
            metadata_calls: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = shared.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Fake { base, state, task }
    }

    fn endpoint(&self) -> String {
        format!("{}/introspect", self.base)
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn active(&self, token: &str, claims: Value) {
        self.with(|s| s.by_token.insert(token.to_owned(), claims));
    }

    fn answer(&self, answer: Answer) {
        self.with(|s| s.answer = answer);
    }

    fn calls(&self) -> usize {
        self.with(|s| s.calls)
    }

    fn last(&self) -> Seen {
        self.with(|s| s.seen.last().cloned().expect("a request was made"))
    }
}

async fn answer(state: &StdMutex<FakeState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        Response::builder().status(status).header("content-type", "application/json").body(body.into()).unwrap()
    };
    if req.uri().path() == "/.well-known/openid-configuration" {
        let mut s = state.lock().unwrap();
        s.metadata_calls += 1;
        return match &s.metadata {
            Some(doc) => reply(200, doc.to_string()),
            None => reply(404, "{}".into()),
        };
    }
    if req.uri().path() != "/introspect" || req.method() != hyper::Method::POST {
        return reply(404, "{}".into());
    }
    let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (authorization, accept, content_type) = (header("authorization"), header("accept"), header("content-type"));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let (answer, delay) = {
        let mut s = state.lock().unwrap();
        s.calls += 1;
        s.seen.push(Seen { form: form.clone(), authorization: authorization.clone(), accept, content_type });
        let authenticated = match s.method {
            ClientAuthMethod::ClientSecretBasic => {
                authorization == Some(format!("Basic {}", STANDARD.encode(ENCODED)))
                    && !form.contains_key("client_secret")
            }
            ClientAuthMethod::ClientSecretPost => {
                authorization.is_none()
                    && form.get("client_id").map(String::as_str) == Some(ID)
                    && form.get("client_secret").map(String::as_str) == Some(SECRET)
            }
        };
        if !authenticated {
            s.auth_failures += 1;
            return reply(401, json!({"error": "invalid_client"}).to_string());
        }
        let token = form.get("token").cloned().unwrap_or_default();
        let answer = match &s.answer {
            Answer::Tokens => match s.by_token.get(&token) {
                Some(claims) => {
                    let mut claims = claims.clone();
                    claims["active"] = json!(true);
                    Answer::Json(claims)
                }
                None => Answer::Json(json!({"active": false})),
            },
            other => other.clone(),
        };
        (answer, s.delay)
    };
    tokio::time::sleep(delay).await;
    match answer {
        Answer::Json(v) => reply(200, v.to_string()),
        Answer::Status(status) => reply(status, json!({"error": "server_error"}).to_string()),
        Answer::Raw(text) => reply(200, text),
        Answer::Chunked(text) => {
            let mut response = reply(200, text);
            response.headers_mut().insert("transfer-encoding", "chunked".parse().unwrap());
            response
        }
        Answer::Tokens => unreachable!(),
    }
}

// ---- fixtures ---------------------------------------------------------------------------

fn issuer(iss: &str, settings: Introspection) -> Issuer {
    Issuer {
        id: iss.to_owned(),
        issuer: iss.to_owned(),
        keys: KeySource::None,
        audiences: vec![],
        audience_check: Default::default(),
        algorithms: vec![],
        leeway: DEFAULT_LEEWAY,
        require_at_jwt: false,
        mode: TokenMode::Introspection,
        introspection: Some(settings),
        ..Issuer::new(iss, KeySource::None)
    }
}

fn settings(endpoint: Option<String>, method: ClientAuthMethod) -> Introspection {
    Introspection {
        endpoint,
        client_id: ID.to_owned(),
        client_secret: Secret(SECRET.as_bytes().to_vec()),
        auth_method: method,
        protocol: Default::default(),
        timeout: Duration::from_secs(2),
        cache_max_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        cache_capacity: 1000,
        cache_max_bytes: 1 << 20,
        max_concurrent: 64,
        rate_limit: 1000.0,
        rate_burst: 1000,
        breaker_failures: 5,
        breaker_open_for: Duration::from_secs(10),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

/// An introspector for `fake` (issuer = the fake's base URL), with `tweak` applied.
fn introspector(fake: &Fake, tweak: impl FnOnce(&mut Introspection)) -> (Introspector, Metrics) {
    capped_introspector(fake, 64 * 1024, tweak)
}

/// `introspector` with answers capped at `max_response_bytes`.
fn capped_introspector(
    fake: &Fake,
    max_response_bytes: usize,
    tweak: impl FnOnce(&mut Introspection),
) -> (Introspector, Metrics) {
    let mut s = settings(Some(fake.endpoint()), fake.with(|s| s.method));
    tweak(&mut s);
    let metrics = Metrics::new();
    let iss = issuer(&fake.base, s);
    let i = Introspector::new(
        &iss,
        0,
        Arc::from(fake.base.as_str()),
        client(),
        max_response_bytes,
        &metrics,
        KeptClaims::All,
    )
    .unwrap();
    (i, metrics)
}

fn outcome(m: &Metrics, i: &Introspector, outcome: &str) -> u64 {
    m.introspection_requests.with_label_values(&[i.issuer.issuer.as_str(), outcome]).get()
}

fn lookups(m: &Metrics, result: &str) -> u64 {
    m.token_cache_lookups.with_label_values(&[CACHE_INTROSPECTION, result]).get()
}

fn now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// Polls `cond` every 10 ms; panics after 5 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- requests and answers ---------------------------------------------------------------

/// An active answer yields the principal; the request is an RFC 7662 §2.1 form POST with Basic auth.
#[tokio::test]
async fn active_answer_yields_principal() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let exp = now() + 300;
    fake.active(
        "opaque-1",
        json!({"sub": "alice", "scope": "read write", "client_id": "cli", "aud": ["api"], "exp": exp,
               "iss": fake.base, "token_type": "Bearer", "username": "al"}),
    );
    let (i, m) = introspector(&fake, |_| {});
    let p = i.introspect("opaque-1").await.unwrap();
    assert_eq!((p.issuer, &*p.issuer_id), (0, fake.base.as_str()));
    assert_eq!(p.subject.as_deref(), Some("alice"));
    assert_eq!(p.scopes, ["read", "write"]);
    assert_eq!(p.client_id.as_deref(), Some("cli"));
    assert_eq!(p.audiences, ["api"]);
    assert_eq!(p.expires_at, exp);
    assert_eq!(p.claims["username"], "al");
    assert!(!p.claims.contains_key("active"), "`active` is not a claim");

    let seen = fake.last();
    assert_eq!(seen.form.get("token").map(String::as_str), Some("opaque-1"));
    assert_eq!(seen.form.get("token_type_hint").map(String::as_str), Some("access_token"));
    assert_eq!(seen.form.len(), 2, "{:?}", seen.form);
    assert_eq!(seen.accept.as_deref(), Some("application/json"));
    assert_eq!(seen.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(fake.with(|s| s.auth_failures), 0);
    assert_eq!((outcome(&m, &i, "active"), lookups(&m, "miss")), (1, 1));
}

/// client_secret_post sends the credentials in the body and no Authorization header.
#[tokio::test]
async fn client_secret_post_sends_credentials_in_body() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretPost).await;
    fake.active("t", json!({"sub": "bob"}));
    let (i, _) = introspector(&fake, |_| {});
    assert_eq!(i.introspect("t").await.unwrap().subject.as_deref(), Some("bob"));
    let seen = fake.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.form.get("client_secret").map(String::as_str), Some(SECRET));
    assert_eq!(fake.with(|s| s.auth_failures), 0);
}

/// The endpoint refusing our client credentials (401) is 503-worthy, not cached, counted as http_error.
#[tokio::test]
async fn rejected_client_credentials_are_unavailable() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("t", json!({"sub": "bob"}));
    let (i, m) = introspector(&fake, |s| s.client_secret = Secret(b"wrong".to_vec()));
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!((fake.calls(), fake.with(|s| s.auth_failures)), (2, 2), "failures are never cached");
    assert_eq!(outcome(&m, &i, "http_error"), 2);
}

/// An inactive answer is invalid_token and is cached for negative_ttl.
#[tokio::test]
async fn inactive_is_invalid_token_and_cached() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let (i, m) = introspector(&fake, |_| {});
    assert_eq!(i.introspect("unknown").await, Err(INACTIVE));
    assert_eq!(i.introspect("unknown").await, Err(INACTIVE));
    assert_eq!(fake.calls(), 1);
    assert_eq!((outcome(&m, &i, "inactive"), lookups(&m, "miss"), lookups(&m, "hit")), (1, 1, 1));
}

/// Only HTTP 200 with a JSON object whose `active` is the boolean true admits; the rest is a failure, never cached.
#[tokio::test]
async fn only_boolean_true_is_active() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let (i, m) = introspector(&fake, |s| s.breaker_failures = 100);
    let answers = [
        Answer::Json(json!({"active": "true", "sub": "x"})),
        Answer::Json(json!({"active": 1})),
        Answer::Json(json!({"sub": "x"})),
        Answer::Json(json!([{"active": true}])),
        Answer::Raw("<html>active: true</html>".into()),
        Answer::Raw(String::new()),
        Answer::Status(500),
        Answer::Status(503),
        Answer::Status(302),
    ];
    for (n, answer) in answers.into_iter().enumerate() {
        fake.answer(answer);
        assert_eq!(i.introspect("t").await, Err(FAILED), "answer {n}");
        assert_eq!(fake.calls(), n + 1, "answer {n} was cached");
    }
    assert_eq!((outcome(&m, &i, "invalid"), outcome(&m, &i, "http_error")), (6, 3));
}

/// An endpoint slower than the timeout fails fast with outcome timeout.
#[tokio::test]
async fn slow_endpoint_times_out() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.with(|s| s.delay = Duration::from_secs(5));
    let (i, m) = introspector(&fake, |s| s.timeout = Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(outcome(&m, &i, "timeout"), 1);
}

/// An unreachable endpoint is a failure (outcome error).
#[tokio::test]
async fn unreachable_endpoint_fails() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (i, m) = introspector(&fake, |s| s.endpoint = Some(format!("http://{closed}/introspect")));
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!(outcome(&m, &i, "error"), 1);
}

/// An answer larger than the JWKS size cap is refused.
#[tokio::test]
async fn oversize_answer_refused() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("t", json!({"pad": "x".repeat(70 * 1024)}));
    let (i, m) = introspector(&fake, |_| {});
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!(outcome(&m, &i, "invalid"), 1);
}

/// The cap is inclusive, whether the size is announced (`Content-Length`) or found while
/// reading (chunked): an answer of exactly the cap is read, one byte more is refused.
#[tokio::test]
async fn answer_size_cap_is_exact() {
    const CAP: usize = 512;
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let sized = |len: usize| {
        let head = r#"{"active":true,"sub":"a","pad":""#;
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    assert_eq!(sized(CAP).len(), CAP);
    for chunked in [false, true] {
        for (len, fits) in [(CAP, true), (CAP + 1, false)] {
            let body = sized(len);
            fake.answer(if chunked { Answer::Chunked(body) } else { Answer::Raw(body) });
            let (i, _) = capped_introspector(&fake, CAP, |_| {});
            let got = i.introspect("t").await;
            assert_eq!(got.is_ok(), fits, "{len} bytes, chunked: {chunked}: {got:?}");
            if !fits {
                assert_eq!(got, Err(FAILED));
            }
        }
    }
}

/// `Debug` names the issuer and endpoint, never the client's credentials.
#[tokio::test]
async fn debug_shows_no_secret() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let (i, _) = introspector(&fake, |_| {});
    let shown = format!("{i:?}");
    assert!(shown.contains(&fake.base) && shown.contains("/introspect"), "{shown}");
    assert!(!shown.contains(SECRET) && !shown.contains(ENCODED), "{shown}");
}

/// An active answer refused by a claim check is cached like an inactive one, with its reason.
#[tokio::test]
async fn rejected_answer_cached_with_reason() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("refresh", json!({"token_type": "refresh_token"}));
    let (i, m) = introspector(&fake, |_| {});
    assert_eq!(i.introspect("refresh").await, Err(NOT_ACCESS_TOKEN));
    assert_eq!(i.introspect("refresh").await, Err(NOT_ACCESS_TOKEN));
    assert_eq!((fake.calls(), outcome(&m, &i, "rejected")), (1, 1));
}

// ---- claims, cache lifetime, coalescing -------------------------------------------------

/// Numbers past what JSON parsers hold are a broken answer (503), not a panic; huge ones that
/// parse are plain values for the claim checks and the cache.
#[test]
fn out_of_range_numbers_in_answers() {
    for body in [r#"{"active":true,"exp":1e400}"#, r#"{"active":true,"nbf":-1e400}"#] {
        assert!(matches!(parse_answer(body.as_bytes()), Err(CallError::Invalid(_))), "{body}");
    }
    for body in [r#"{"active":true,"exp":1e19}"#, r#"{"active":true,"exp":99999999999999999999999}"#] {
        assert!(parse_answer(body.as_bytes()).unwrap().is_some(), "{body}");
    }
}

/// An answer with a member named twice has no one meaning: a broken answer (503), not the
/// last member's (serde_json's) nor the first's reading.
#[test]
fn duplicate_members_in_answers() {
    for body in [
        r#"{"active":false,"active":true}"#,
        r#"{"active":true,"active":false}"#,
        r#"{"active":true,"scope":"read","scope":"admin"}"#,
        r#"{"active":true,"ext":{"a":1,"a":2}}"#,
    ] {
        assert!(matches!(parse_answer(body.as_bytes()), Err(CallError::Invalid(_))), "{body}");
    }
    assert!(parse_answer(br#"{"active":true,"ext":[{"a":1},{"a":2}]}"#).unwrap().is_some());
}

/// exp/nbf use the issuer's leeway; iss must match when present; token_type must name an access token.
#[test]
fn claim_checks() {
    const NOW: u64 = 1_700_000_000;
    let iss = issuer("https://as.test", settings(None, ClientAuthMethod::ClientSecretBasic));
    let check = |v: Value| check_claims(v.as_object().unwrap(), &iss, NOW);
    assert_eq!(check(json!({})), Ok(()), "exp and iss are optional in an answer");
    assert_eq!(check(json!({"exp": NOW - 29})), Ok(()), "within the 30 s leeway");
    // RFC 7519 §4.1.4: "on or after" exp (+ leeway) it is refused.
    assert_eq!(check(json!({"exp": NOW - 30})), Err(AuthError::InvalidToken("token expired")));
    assert_eq!(check(json!({"nbf": NOW + 30})), Ok(()));
    assert_eq!(check(json!({"nbf": NOW + 31})), Err(AuthError::InvalidToken("token not yet valid")));
    assert_eq!(check(json!({"exp": "soon"})), Err(MALFORMED_CLAIM));
    assert_eq!(check(json!({"iss": "https://as.test"})), Ok(()));
    assert_eq!(check(json!({"iss": "https://other.test"})), Err(WRONG_ISSUER));
    assert_eq!(check(json!({"iss": 1})), Err(MALFORMED_CLAIM));
    for ok in ["Bearer", "bearer", "BEARER", "access_token", "urn:ietf:params:oauth:token-type:access_token"] {
        assert_eq!(check(json!({ "token_type": ok })), Ok(()), "{ok}");
    }
    for bad in ["refresh_token", "Refresh_Token", "id_token", "DPoP", ""] {
        assert_eq!(check(json!({ "token_type": bad })), Err(NOT_ACCESS_TOKEN), "{bad}");
    }
    assert_eq!(check(json!({"aud": ["a", "b"]})), Ok(()));
    assert_eq!(check(json!({"aud": 5})), Err(MALFORMED_CLAIM));
    assert_eq!(check(json!({"scope": ["a"]})), Err(MALFORMED_CLAIM));
    assert_eq!(check(json!({"sub": 7})), Err(MALFORMED_CLAIM));
}

/// Active answers live until exp, at most cache_max_ttl; inactive ones for negative_ttl.
#[test]
fn cache_lifetime() {
    let now = SystemTime::now();
    let (max, neg) = (Duration::from_secs(60), Duration::from_secs(5));
    let active = |claims: Value| {
        let Value::Object(map) = claims else { unreachable!() };
        Verdict::Active(Arc::new(Principal::from_claims(0, Arc::from("i"), map, &Default::default())))
    };
    let secs = unix_seconds(now);
    assert_eq!(ttl(&active(json!({})), now, max, neg), max, "no exp: the cap");
    assert_eq!(ttl(&active(json!({"exp": secs + 3600})), now, max, neg), max);
    let soon = ttl(&active(json!({"exp": secs + 10})), now, max, neg);
    assert!(soon <= Duration::from_secs(10) && soon > Duration::from_secs(9), "{soon:?}");
    assert_eq!(ttl(&active(json!({"exp": secs - 10})), now, max, neg), Duration::ZERO, "expired (in leeway)");
    assert_eq!(ttl(&Verdict::Inactive(INACTIVE), now, max, neg), neg);
}

/// `exp` from an answer is untrusted: values past any clock clamp to the cap, never panic.
#[test]
fn cache_lifetime_of_out_of_range_exp() {
    let now = SystemTime::now();
    let (max, neg) = (Duration::from_secs(60), Duration::from_secs(5));
    for exp in [json!(1e19), json!(u64::MAX), json!(1e308), json!(i64::MAX), json!(18446744073709551615.0)] {
        let Value::Object(map) = json!({ "exp": exp }) else { unreachable!() };
        let verdict = Verdict::Active(Arc::new(Principal::from_claims(0, Arc::from("i"), map, &Default::default())));
        assert_eq!(ttl(&verdict, now, max, neg), max, "{exp}");
    }
    // A clock before the epoch (misconfigured host) is not a panic either.
    let Value::Object(map) = json!({ "exp": 10 }) else { unreachable!() };
    let verdict = Verdict::Active(Arc::new(Principal::from_claims(0, Arc::from("i"), map, &Default::default())));
    assert_eq!(ttl(&verdict, UNIX_EPOCH - Duration::from_secs(5), max, neg), Duration::from_secs(10));
}

/// A cached answer leaves the cache after its TTL on moka's own clock, which frees its memory:
/// the gateway's clock is stopped here, so its check on every hit cannot be what ends it.
#[tokio::test]
async fn cache_entry_expires() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("t", json!({"sub": "a"}));
    let (i, _) = introspector(&fake, |s| s.cache_max_ttl = Duration::from_millis(200));
    let i = i.with_clock(ManualClock::starting_now().clock());
    let started = Instant::now();
    i.introspect("t").await.unwrap();
    i.introspect("t").await.unwrap();
    assert_eq!(fake.calls(), 1);
    eventually("the entry expires", async || {
        i.introspect("t").await.unwrap();
        fake.calls() == 2
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(150), "expired after {:?}", started.elapsed());
}

/// The gateway's clock ends an entry as well as moka's: once it reaches the end of the answer's
/// lifetime (`cache_max_ttl` for an active answer, `negative_ttl` for an inactive one), the
/// token is introspected again, though moka's own timer is a minute away.
#[tokio::test]
async fn cache_entry_ends_on_the_gateways_clock() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("t", json!({"sub": "a"}));
    let (i, m) = introspector(&fake, |s| {
        s.cache_max_ttl = Duration::from_secs(60);
        s.negative_ttl = Duration::from_secs(30);
    });
    let start = Duration::from_secs(1_700_000_000);
    let clock = ManualClock::at(start);
    let i = i.with_clock(clock.clock());
    let just_before = |ttl: Duration| clock.set(start + ttl - Duration::from_millis(1));
    i.introspect("t").await.unwrap();
    just_before(Duration::from_secs(60));
    i.introspect("t").await.unwrap();
    assert_eq!(fake.calls(), 1, "ended before cache_max_ttl");
    clock.set(start + Duration::from_secs(60));
    i.introspect("t").await.unwrap();
    assert_eq!(fake.calls(), 2, "served past cache_max_ttl");
    assert_eq!((lookups(&m, "miss"), lookups(&m, "hit")), (2, 1));

    clock.set(start);
    assert_eq!(i.introspect("u").await, Err(INACTIVE));
    just_before(Duration::from_secs(30));
    assert_eq!(i.introspect("u").await, Err(INACTIVE));
    assert_eq!(fake.calls(), 3, "ended before negative_ttl");
    fake.active("u", json!({"sub": "b"}));
    clock.set(start + Duration::from_secs(30));
    assert_eq!(i.introspect("u").await.unwrap().subject.as_deref(), Some("b"), "served past negative_ttl");
    assert_eq!(fake.calls(), 4);
}

/// 50 concurrent requests for one uncached token make exactly one call.
#[tokio::test]
async fn concurrent_misses_coalesce() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.active("t", json!({"sub": "a"}));
    fake.with(|s| s.delay = Duration::from_millis(200));
    let (i, m) = introspector(&fake, |_| {});
    let i = Arc::new(i);
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let i = i.clone();
        tasks.spawn(async move { i.introspect("t").await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().subject.as_deref(), Some("a"));
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!((lookups(&m, "miss"), lookups(&m, "hit")), (1, 49));
}

// ---- circuit breaker --------------------------------------------------------------------

/// After N consecutive failures calls stop; after open_for one trial runs; its failure reopens, its success closes.
#[tokio::test]
async fn breaker_opens_and_half_opens() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    fake.answer(Answer::Status(500));
    let (i, m) = introspector(&fake, |s| {
        s.breaker_failures = 2;
        s.breaker_open_for = Duration::from_millis(200);
    });
    assert_eq!(i.introspect("a").await, Err(FAILED));
    assert_eq!(i.introspect("b").await, Err(FAILED));
    assert_eq!(i.introspect("c").await, Err(CIRCUIT_OPEN));
    assert_eq!(fake.calls(), 2, "open: no call");
    // Half-open: one trial, which fails and reopens.
    eventually("a trial call", async || i.introspect("d").await == Err(FAILED)).await;
    assert_eq!(fake.calls(), 3);
    assert_eq!(i.introspect("e").await, Err(CIRCUIT_OPEN), "a failed trial reopens");
    // Next trial succeeds and closes the breaker.
    fake.answer(Answer::Tokens);
    eventually("a successful trial", async || i.introspect("f").await == Err(INACTIVE)).await;
    assert_eq!(i.introspect("g").await, Err(INACTIVE), "closed again");
    assert_eq!(fake.calls(), 5);
    assert!(outcome(&m, &i, "circuit_open") >= 2);
}

/// While half-open only one trial is admitted, and a trial dropped unfinished frees the slot.
#[test]
fn breaker_admits_one_trial() {
    let b = Breaker::new(1, Duration::ZERO);
    assert!(b.admit().unwrap().failure(), "the first failure opens it");
    let trial = b.admit().expect("open_for elapsed: trial");
    assert!(trial.trial && b.admit().is_none(), "one trial at a time");
    drop(trial);
    let trial = b.admit().expect("a dropped trial frees the slot");
    trial.success();
    let permit = b.admit().unwrap();
    assert!(!permit.trial, "closed");
}

// ---- discovery and helpers --------------------------------------------------------------

/// Without a configured endpoint, `introspection_endpoint` comes from discovery, once.
#[tokio::test]
async fn endpoint_from_discovery() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let doc = json!({"issuer": fake.base, "introspection_endpoint": fake.endpoint()});
    fake.with(|s| s.metadata = Some(doc));
    fake.active("t", json!({"sub": "a"}));
    let (i, _) = introspector(&fake, |s| s.endpoint = None);
    assert!(i.introspect("t").await.is_ok());
    assert_eq!(i.introspect("other").await, Err(INACTIVE));
    assert_eq!((fake.with(|s| s.metadata_calls), fake.calls()), (1, 2));
}

/// The credentials never go to an endpoint of another scheme than the metadata's http (or
/// https).
#[tokio::test]
async fn discovered_endpoint_of_another_scheme_is_not_used() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let doc = json!({"issuer": fake.base, "introspection_endpoint": "ftp://127.0.0.1/introspect"});
    fake.with(|s| s.metadata = Some(doc));
    let (i, m) = introspector(&fake, |s| s.endpoint = None);
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!((fake.calls(), outcome(&m, &i, "error")), (0, 1));
}

/// Metadata naming another issuer is not used (RFC 8414 §3.3).
#[tokio::test]
async fn discovery_issuer_mismatch_fails() {
    let fake = Fake::start(ClientAuthMethod::ClientSecretBasic).await;
    let doc = json!({"issuer": "https://evil.test", "introspection_endpoint": fake.endpoint()});
    fake.with(|s| s.metadata = Some(doc));
    let (i, m) = introspector(&fake, |s| s.endpoint = None);
    assert_eq!(i.introspect("t").await, Err(FAILED));
    assert_eq!((fake.calls(), outcome(&m, &i, "error")), (0, 1));
}

/// Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1) and marked sensitive.
#[test]
fn basic_auth_encodes_credentials() {
    let value = basic_auth(ID.as_bytes(), SECRET.as_bytes());
    assert_eq!(value.to_str().unwrap(), format!("Basic {}", STANDARD.encode(ENCODED)));
    assert!(value.is_sensitive());
}

/// Only a JWS-shaped token yields an `iss`, and only a string one.
#[test]
fn jws_issuer_of_tokens() {
    let jws = |claims: Value| {
        let seg = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.{}", seg(json!({"alg": "RS256"})), seg(claims), URL_SAFE_NO_PAD.encode("sig"))
    };
    assert_eq!(jws_issuer(&jws(json!({"iss": "https://i"}))).as_deref(), Some("https://i"));
    assert_eq!(jws_issuer(&jws(json!({"sub": "x"}))), None);
    assert_eq!(jws_issuer(&jws(json!({"iss": 1}))), None);
    assert_eq!(jws_issuer("2YotnFZFEjr1zCsicMWpAA"), None);
    assert_eq!(jws_issuer("a.b.c"), None);
    // The tenant, for an issuer template, when it is a string.
    let both = |claims| jws_issuer_and_tenant(&jws(claims));
    assert_eq!(both(json!({"iss": "https://i/t1", "tid": "t1"})), Some(("https://i/t1".into(), Some("t1".into()))));
    assert_eq!(both(json!({"iss": "https://i", "tid": 7})), Some(("https://i".into(), None)));
    assert_eq!(both(json!({"tid": "t1"})), None);
}

mod limits;

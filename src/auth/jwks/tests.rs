use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll};

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::EncodingKey;
use prometheus::Opts;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::*;
use crate::config::Secret;

// ---- a tiny scriptable HTTP/1.1 server on loopback ------------------------------------

/// What the server answers on one path.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Bytes,
    cache_control: Option<String>,
    delay: Duration,
    /// Drop the connection without answering.
    close: bool,
    /// No Content-Length: the body goes out chunked, in small frames.
    chunked: bool,
}

impl Reply {
    fn ok(body: impl Into<Bytes>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            cache_control: None,
            delay: Duration::ZERO,
            close: false,
            chunked: false,
        }
    }
    fn status(status: u16) -> Reply {
        Reply { status, ..Reply::ok("error") }
    }
    fn cache_control(mut self, value: &str) -> Reply {
        self.cache_control = Some(value.to_owned());
        self
    }
}

#[derive(Default)]
struct Script {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, Vec<Instant>>,
}

struct TestServer {
    base: String,
    script: Arc<StdMutex<Script>>,
    accept: JoinHandle<()>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(StdMutex::new(Script::default()));
        let shared = script.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let script = shared.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let script = script.clone();
                    async move { respond(&script, req.uri().path()).await }
                });
                // One request per connection, so a stopped server refuses the next fetch
                // instead of answering it on a pooled connection.
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        TestServer { base, script, accept }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.script.lock().unwrap().replies.insert(path.to_owned(), reply);
    }

    fn hit_times(&self, path: &str) -> Vec<Instant> {
        self.script.lock().unwrap().hits.get(path).cloned().unwrap_or_default()
    }

    fn hits(&self, path: &str) -> usize {
        self.hit_times(path).len()
    }

    /// Stop listening: later connections are refused.
    async fn stop(self) {
        self.accept.abort();
        let _ = self.accept.await;
    }
}

async fn respond(script: &StdMutex<Script>, path: &str) -> Result<Response<TestBody>, std::io::Error> {
    let reply = {
        let mut script = script.lock().unwrap();
        script.hits.entry(path.to_owned()).or_default().push(Instant::now());
        script.replies.get(path).cloned()
    };
    let Some(reply) = reply else {
        return Ok(Response::builder().status(404).body(TestBody::new("", false)).unwrap());
    };
    tokio::time::sleep(reply.delay).await;
    if reply.close {
        // A service error makes hyper drop the connection without a response.
        return Err(std::io::Error::other("scripted connection drop"));
    }
    let mut response = Response::builder().status(reply.status);
    if let Some(value) = &reply.cache_control {
        response = response.header("cache-control", value);
    }
    Ok(response.body(TestBody::new(reply.body, reply.chunked)).unwrap())
}

/// A body that either declares its length or goes out chunked in 16-byte frames.
struct TestBody {
    frames: VecDeque<Bytes>,
    len: Option<u64>,
}

impl TestBody {
    fn new(body: impl Into<Bytes>, chunked: bool) -> TestBody {
        let mut body: Bytes = body.into();
        let len = (!chunked).then_some(body.len() as u64);
        let mut frames = VecDeque::new();
        while !body.is_empty() {
            frames.push_back(body.split_to(body.len().min(16)));
        }
        TestBody { frames, len }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().frames.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

// ---- fixtures -------------------------------------------------------------------------

/// A JWKS with one freshly generated P-256 public key per kid.
fn jwks(kids: &[&str]) -> Bytes {
    let keys: Vec<serde_json::Value> = kids
        .iter()
        .map(|kid| {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let der = pair.to_pkcs8v1().unwrap();
            let key = EncodingKey::from_ec_der(der.as_ref());
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap().into()
}

fn settings() -> JwksSettings {
    JwksSettings {
        min_refresh: Duration::from_millis(100),
        max_refresh: Duration::from_secs(10),
        default_refresh: Duration::from_secs(10),
        unknown_kid_cooldown: Duration::from_secs(30),
        fetch_timeout: Duration::from_secs(2),
        max_response_bytes: 64 * 1024,
    }
}

fn issuer(iss: &str, keys: KeySource) -> Issuer {
    Issuer::new(iss, keys)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .unwrap()
}

fn counter() -> IntCounterVec {
    IntCounterVec::new(Opts::new("jwks_fetches_total", "test"), &["issuer", "outcome"]).unwrap()
}

fn count(fetches: &IntCounterVec, iss: &str, outcome: &str) -> u64 {
    fetches.with_label_values(&[iss, outcome]).get()
}

/// A cache reading `{server}/jwks` directly.
fn jwks_cache(server: &TestServer, settings: &JwksSettings) -> (Arc<JwksCache>, IntCounterVec) {
    let fetches = counter();
    let iss = issuer("https://issuer.test", KeySource::JwksUri(server.url("/jwks")));
    (JwksCache::new(&iss, settings, client(), fetches.clone()), fetches)
}

/// Polls `cond` every 10 ms; panics after `limit`.
async fn eventually(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has_kid(cache: &JwksCache, kid: &str) -> bool {
    cache.keys().is_some_and(|k| k.has_kid(kid))
}

// ---- tests ----------------------------------------------------------------------------

/// The background task's first fetch installs the key set and makes the cache ready.
#[tokio::test]
async fn initial_fetch_populates_keys() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1", "k2"])));
    let (cache, fetches) = jwks_cache(&server, &settings());
    assert!(!cache.is_ready());
    assert!(cache.keys().is_none());
    assert_eq!(cache.installs(), 0);

    let task = tokio::spawn(cache.clone().run());
    eventually(Duration::from_secs(3), "ready", || cache.is_ready()).await;
    task.abort();

    let keys = cache.keys().unwrap();
    assert!(keys.has_kid("k1") && keys.has_kid("k2"));
    assert_eq!(keys.len(), 2);
    assert_eq!(cache.installs(), 1);
    assert_eq!(server.hits("/jwks"), 1);
    assert_eq!(count(&fetches, "https://issuer.test", "success"), 1);
}

/// 100 concurrent unknown-kid refreshes cause exactly one request and all see its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unknown_kid_refreshes_coalesce() {
    let server = TestServer::start().await;
    let mut reply = Reply::ok(jwks(&["k1"]));
    reply.delay = Duration::from_millis(200);
    server.set("/jwks", reply);
    let (cache, _) = jwks_cache(&server, &settings());

    let mut callers = JoinSet::new();
    for _ in 0..100 {
        let cache = cache.clone();
        callers.spawn(async move { cache.refresh_for_unknown_kid().await });
    }
    let results = callers.join_all().await;

    assert_eq!(server.hits("/jwks"), 1);
    let first = results[0].clone().expect("every caller sees the fetched set");
    assert!(first.has_kid("k1"));
    assert!(results.iter().all(|r| r.as_ref().is_some_and(|k| Arc::ptr_eq(k, &first))));
}

/// The same when the fetch brings nothing new: the callers that waited for it share it (the
/// cooldown it started), although the key set did not change. The set was loaded by the
/// background refresh, which starts no cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unknown_kid_refreshes_coalesce_when_nothing_changes() {
    let server = TestServer::start().await;
    let mut reply = Reply::ok(jwks(&["k1"]));
    reply.delay = Duration::from_millis(100);
    server.set("/jwks", reply);
    let (cache, _) = jwks_cache(&server, &settings());
    let task = tokio::spawn(cache.clone().run());
    eventually(Duration::from_secs(3), "ready", || cache.is_ready()).await;
    let loaded = cache.keys().unwrap();

    let mut callers = JoinSet::new();
    for _ in 0..20 {
        let cache = cache.clone();
        callers.spawn(async move { cache.refresh_for_unknown_kid().await });
    }
    let results = callers.join_all().await;
    task.abort();
    assert_eq!(server.hits("/jwks"), 2, "the waiting callers fetched again");
    assert_eq!(cache.installs(), 1);
    assert!(results.iter().all(|r| r.as_ref().is_some_and(|k| Arc::ptr_eq(k, &loaded))));
}

/// `refetch_for_unknown_key` answers `None` when the set it was given is still the current one
/// (checking the token again would be useless), and the new set with its generation otherwise.
#[tokio::test]
async fn refetch_for_unknown_key_reports_only_a_new_set() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1"])));
    let (cache, _) = jwks_cache(&server, &JwksSettings { unknown_kid_cooldown: Duration::ZERO, ..settings() });
    let before = cache.generation();
    let (generation, first) = cache.refetch_for_unknown_key(None).await.expect("the first set");
    assert!(generation != before && generation == cache.generation());
    assert!(cache.refetch_for_unknown_key(Some(&first)).await.is_none(), "the same document again");
    server.set("/jwks", Reply::ok(jwks(&["k1", "k2"])));
    let (second_generation, second) = cache.refetch_for_unknown_key(Some(&first)).await.expect("a new set");
    assert!(second_generation != generation && second_generation == cache.generation());
    assert_eq!(cache.installs(), 2);
    assert!(second.has_kid("k2"));
}

/// Within the cooldown an unknown kid causes no fetch; after it, exactly one more.
#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited_by_cooldown() {
    let cooldown = Duration::from_millis(300);
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["old"])));
    let (cache, _) = jwks_cache(&server, &JwksSettings { unknown_kid_cooldown: cooldown, ..settings() });

    assert!(cache.refresh_for_unknown_kid().await.unwrap().has_kid("old"));
    let first_done = Instant::now();
    server.set("/jwks", Reply::ok(jwks(&["new"])));

    // A flood of random kids inside the cooldown: no request, the old set is returned.
    for _ in 0..20 {
        let keys = cache.refresh_for_unknown_kid().await.unwrap();
        assert!(keys.has_kid("old") && !keys.has_kid("new"));
    }
    assert_eq!(server.hits("/jwks"), 1);

    // Keep asking; the second fetch happens only once the cooldown has passed.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.hits("/jwks") < 2 {
        assert!(Instant::now() < deadline, "no refetch after the cooldown");
        let _ = cache.refresh_for_unknown_kid().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.hit_times("/jwks")[1] - first_done >= cooldown);
    assert!(has_kid(&cache, "new"));
    assert_eq!(cache.installs(), 2);
    // And the new fetch starts a new cooldown.
    let _ = cache.refresh_for_unknown_kid().await;
    assert_eq!(server.hits("/jwks"), 2);
}

/// After a good fetch, 500s, timeouts, dropped connections and refused connections all keep
/// the previous key set; re-serving the same document does not change the generation.
#[tokio::test]
async fn failing_endpoint_keeps_previous_keys() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1"])));
    let settings =
        JwksSettings { unknown_kid_cooldown: Duration::ZERO, fetch_timeout: Duration::from_millis(200), ..settings() };
    let (cache, fetches) = jwks_cache(&server, &settings);
    let good = cache.refresh_for_unknown_kid().await.unwrap();
    let iss = "https://issuer.test";

    let unchanged = cache.refresh_for_unknown_kid().await.unwrap();
    assert!(Arc::ptr_eq(&good, &unchanged), "same document → same installed set");
    assert_eq!(count(&fetches, iss, "success"), 2);

    let kept = |cache: &JwksCache| {
        assert!(Arc::ptr_eq(&cache.keys().unwrap(), &good));
        assert!(cache.is_ready());
        assert_eq!(cache.installs(), 1);
    };

    server.set("/jwks", Reply::status(500));
    cache.refresh_for_unknown_kid().await;
    kept(&cache);
    assert_eq!(count(&fetches, iss, "http_error"), 1);

    let mut slow = Reply::ok(jwks(&["k2"]));
    slow.delay = Duration::from_secs(1);
    server.set("/jwks", slow);
    cache.refresh_for_unknown_kid().await;
    kept(&cache);
    assert_eq!(count(&fetches, iss, "timeout"), 1);

    server.set("/jwks", Reply { close: true, ..Reply::ok("") });
    cache.refresh_for_unknown_kid().await;
    kept(&cache);
    assert_eq!(count(&fetches, iss, "network_error"), 1);

    server.stop().await;
    cache.refresh_for_unknown_kid().await;
    kept(&cache);
    assert_eq!(count(&fetches, iss, "network_error"), 2);
}

/// The background task retries a failing first fetch with backoff, keeps the old set when a
/// later refresh fails, and installs the new set once the endpoint recovers.
#[tokio::test]
async fn background_refresh_retries_and_keeps_keys_while_failing() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::status(503));
    let (cache, _) = jwks_cache(&server, &settings());
    let task = tokio::spawn(cache.clone().run());

    // Backoff 250 ms then 500 ms: the third attempt comes well within 3 s.
    eventually(Duration::from_secs(3), "two failed attempts", || server.hits("/jwks") >= 2).await;
    assert!(!cache.is_ready());
    server.set("/jwks", Reply::ok(jwks(&["k1"])).cache_control("max-age=0"));
    eventually(Duration::from_secs(3), "ready", || cache.is_ready()).await;
    let times = server.hit_times("/jwks");
    assert!(times[1] - times[0] >= Duration::from_millis(250), "first retry after backoff");

    // max-age=0 → refresh every min_refresh (100 ms); now the refreshes fail.
    server.set("/jwks", Reply::status(500));
    let failed_from = server.hits("/jwks");
    eventually(Duration::from_secs(3), "failed refreshes", || server.hits("/jwks") >= failed_from + 2).await;
    assert!(has_kid(&cache, "k1"), "old keys kept while refreshes fail");

    server.set("/jwks", Reply::ok(jwks(&["k2"])));
    eventually(Duration::from_secs(3), "recovered", || has_kid(&cache, "k2")).await;
    assert!(!has_kid(&cache, "k1"));
    assert_eq!(cache.installs(), 2);
    task.abort();
}

/// `Cache-Control: max-age` schedules the next refresh.
#[tokio::test]
async fn cache_control_max_age_is_honoured() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1"])).cache_control("public, max-age=1"));
    let (cache, _) = jwks_cache(&server, &settings());
    let task = tokio::spawn(cache.clone().run());

    eventually(Duration::from_secs(4), "second fetch", || server.hits("/jwks") >= 2).await;
    task.abort();
    let times = server.hit_times("/jwks");
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_secs(1), "refreshed after {gap:?}, before max-age");
    assert!(gap < Duration::from_secs(3), "refreshed after {gap:?}, not at max-age");
}

/// A max-age above `max_refresh` is clamped to it.
#[tokio::test]
async fn cache_control_max_age_is_clamped() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1"])).cache_control("max-age=86400"));
    let settings = JwksSettings { max_refresh: Duration::from_millis(200), ..settings() };
    let (cache, _) = jwks_cache(&server, &settings);
    let task = tokio::spawn(cache.clone().run());

    eventually(Duration::from_secs(3), "three fetches", || server.hits("/jwks") >= 3).await;
    task.abort();
    let times = server.hit_times("/jwks");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(200));
    }
}

/// Header parsing: first max-age wins, Age is subtracted, bounds apply, default otherwise.
#[test]
fn refresh_interval_parsing() {
    let s = JwksSettings {
        min_refresh: Duration::from_secs(60),
        max_refresh: Duration::from_secs(3600),
        default_refresh: Duration::from_secs(300),
        ..settings()
    };
    let interval = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        refresh_interval(&h, &s).as_secs()
    };
    assert_eq!(interval(&[]), 300);
    assert_eq!(interval(&[("cache-control", "no-cache")]), 300);
    assert_eq!(interval(&[("cache-control", "public, Max-Age=600")]), 600);
    assert_eq!(interval(&[("cache-control", "max-age=\"600\"")]), 600);
    assert_eq!(interval(&[("cache-control", "max-age=600"), ("age", "100")]), 500);
    assert_eq!(interval(&[("cache-control", "max-age=5")]), 60);
    assert_eq!(interval(&[("cache-control", "max-age=99999999999999999999999")]), 3600);
    assert_eq!(interval(&[("cache-control", "max-age=-1")]), 300);
    assert_eq!(interval(&[("cache-control", "private"), ("cache-control", "max-age=120")]), 120);
    // Untrusted numbers past u64: "infinity" (RFC 9111 §1.2.2), then the bounds; never a panic.
    assert_eq!(interval(&[("cache-control", "max-age=99999999999999999999")]), 3600);
    assert_eq!(interval(&[("cache-control", "max-age=600"), ("age", "99999999999999999999")]), 60);
    assert_eq!(interval(&[("cache-control", "max-age=1e9")]), 300, "not delta-seconds");
}

/// A refresh scheduled past the end of time (huge max-age, unbounded max_refresh) saturates.
#[test]
fn refresh_far_in_the_future_saturates() {
    let s = JwksSettings { max_refresh: Duration::MAX, ..settings() };
    let mut h = HeaderMap::new();
    h.append("cache-control", "max-age=99999999999999999999".parse().unwrap());
    let now = Instant::now();
    let due = after(now, refresh_interval(&h, &s));
    assert!(due - now >= Duration::from_secs(364 * 24 * 3600), "{:?}", due - now);
    assert!(after(now, Duration::MAX) >= now);
}

/// OpenID Connect Discovery 1.0 §3: jwks_uri is https; http only when the metadata itself came
/// over http (a local development issuer); no other scheme ever.
#[test]
fn jwks_uri_must_be_https() {
    let allowed = |metadata: &str, jwks: &str| discovered_url_allowed(metadata, &Url::parse(jwks).unwrap());
    let https_meta = "https://idp.test/.well-known/openid-configuration";
    let http_meta = "http://127.0.0.1:9000/.well-known/openid-configuration";
    assert!(allowed(https_meta, "https://idp.test/keys"));
    assert!(!allowed(https_meta, "http://idp.test/keys"), "an https issuer downgraded to http");
    assert!(allowed(http_meta, "http://127.0.0.1:9000/keys"));
    assert!(allowed(http_meta, "https://idp.test/keys"));
    for other in ["file:///etc/keys", "ftp://idp.test/keys", "ws://idp.test/keys", "data:,{}"] {
        assert!(!allowed(https_meta, other) && !allowed(http_meta, other), "{other}");
    }
}

/// A fetch error is logged with every cause in its chain (reqwest's top-level message alone
/// rarely says what went wrong).
#[test]
fn error_chain_joins_every_cause() {
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }
    let e = Layer("error sending request", Some(Box::new(Layer("connect", Some(Box::new(Layer("refused", None)))))));
    assert_eq!(error_chain(&e), "error sending request: connect: refused");
    assert_eq!(error_chain(&Layer("alone", None)), "alone");
}

/// A failed refresh is retried after a delay that doubles up to the cap.
#[test]
fn backoff_doubles_up_to_the_cap() {
    let max = Duration::from_secs(60);
    assert_eq!(next_backoff(Duration::from_millis(250), max), Duration::from_millis(500));
    assert_eq!(next_backoff(Duration::from_secs(40), max), max);
    assert_eq!(next_backoff(max, max), max);
}

/// The background loop keeps a schedule that a fetch made meanwhile set for later, and fetches
/// when the refresh is due (at `now` or before) or none is scheduled.
#[test]
fn a_later_schedule_stands() {
    let now = Instant::now();
    let later = now + Duration::from_secs(1);
    assert_eq!(scheduled_later(Some(later), now), Some(later));
    assert_eq!(scheduled_later(Some(now), now), None);
    assert_eq!(scheduled_later(Some(now - Duration::from_millis(1)), now), None);
    assert_eq!(scheduled_later(None, now), None);
}

/// Metadata URLs follow OIDC Discovery §4 and RFC 8414 §3 (path after the well-known part).
#[test]
fn metadata_urls_follow_the_specs() {
    assert_eq!(
        metadata_urls("https://example.com/issuer1").unwrap(),
        (
            "https://example.com/issuer1/.well-known/openid-configuration".to_owned(),
            "https://example.com/.well-known/oauth-authorization-server/issuer1".to_owned()
        )
    );
    assert_eq!(
        metadata_urls("https://example.com/").unwrap(),
        (
            "https://example.com/.well-known/openid-configuration".to_owned(),
            "https://example.com/.well-known/oauth-authorization-server".to_owned()
        )
    );
    assert!(metadata_urls("not a url").is_err());
}

fn discovery_cache(iss: &str) -> (Arc<JwksCache>, IntCounterVec) {
    let fetches = counter();
    let cache = JwksCache::new(&issuer(iss, KeySource::Discovery), &settings(), client(), fetches.clone());
    (cache, fetches)
}

fn metadata(iss: &str, jwks_uri: &str) -> Bytes {
    serde_json::to_vec(&serde_json::json!({ "issuer": iss, "jwks_uri": jwks_uri, "x": 1 })).unwrap().into()
}

/// Discovery reads `{issuer}/.well-known/openid-configuration` and fetches its jwks_uri, once.
#[tokio::test]
async fn discovery_via_openid_configuration() {
    let server = TestServer::start().await;
    let iss = server.base.clone();
    server.set("/.well-known/openid-configuration", Reply::ok(metadata(&iss, &server.url("/keys"))));
    server.set("/keys", Reply::ok(jwks(&["k1"])));
    let (cache, _) = discovery_cache(&iss);

    assert!(cache.refresh_for_unknown_kid().await.unwrap().has_kid("k1"));
    assert_eq!(server.hits("/keys"), 1);
    // The jwks_uri is remembered while fetching it works.
    let cache2 = {
        let s = JwksSettings { unknown_kid_cooldown: Duration::ZERO, ..settings() };
        JwksCache::new(&issuer(&iss, KeySource::Discovery), &s, client(), counter())
    };
    cache2.refresh_for_unknown_kid().await;
    cache2.refresh_for_unknown_kid().await;
    assert_eq!(server.hits("/.well-known/openid-configuration"), 2);
    assert_eq!(server.hits("/keys"), 3);
}

/// Without OIDC metadata, RFC 8414 metadata at `/.well-known/oauth-authorization-server{path}`.
#[tokio::test]
async fn discovery_falls_back_to_oauth_authorization_server() {
    let server = TestServer::start().await;
    let iss = server.url("/tenant1");
    server.set(
        "/.well-known/oauth-authorization-server/tenant1",
        Reply::ok(metadata(&iss, &server.url("/tenant1/keys"))),
    );
    server.set("/tenant1/keys", Reply::ok(jwks(&["k1"])));
    let (cache, fetches) = discovery_cache(&iss);

    assert!(cache.refresh_for_unknown_kid().await.unwrap().has_kid("k1"));
    assert_eq!(server.hits("/tenant1/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/.well-known/oauth-authorization-server/tenant1"), 1);
    assert_eq!(count(&fetches, &iss, "success"), 1);
}

/// Metadata naming another issuer is never used: no JWKS fetch, not ready.
#[tokio::test]
async fn discovery_issuer_mismatch_is_not_ready() {
    let server = TestServer::start().await;
    let iss = server.base.clone();
    let evil = metadata("https://evil.test", &server.url("/keys"));
    server.set("/.well-known/openid-configuration", Reply::ok(evil.clone()));
    server.set("/.well-known/oauth-authorization-server", Reply::ok(evil));
    server.set("/keys", Reply::ok(jwks(&["k1"])));
    let (cache, fetches) = discovery_cache(&iss);

    assert!(cache.refresh_for_unknown_kid().await.is_none());
    assert!(!cache.is_ready());
    assert_eq!(server.hits("/keys"), 0);
    assert_eq!(count(&fetches, &iss, "invalid"), 1);
}

/// When both metadata documents fail, the failure reported (log and `outcome`) is the telling
/// one: an OIDC document that was there but unusable rather than a missing RFC 8414 one;
/// otherwise the last attempt's.
#[tokio::test]
async fn discovery_reports_the_telling_failure() {
    let server = TestServer::start().await;
    let iss = server.base.clone();
    server.set("/.well-known/openid-configuration", Reply::ok(metadata("https://evil.test", &server.url("/keys"))));
    let (cache, fetches) = discovery_cache(&iss);
    let error = cache.discover().await.unwrap_err();
    assert!(matches!(error, FetchError::Invalid { .. }) && error.to_string().contains("evil.test"), "{error}");
    assert!(cache.refresh_for_unknown_kid().await.is_none());
    assert_eq!(count(&fetches, &iss, "invalid"), 1);
    assert_eq!(count(&fetches, &iss, "http_error"), 0);

    let server = TestServer::start().await;
    let (cache, _) = discovery_cache(&server.base);
    let error = cache.discover().await.unwrap_err();
    assert!(
        matches!(error, FetchError::Status { .. }) && error.to_string().contains("oauth-authorization-server"),
        "{error}"
    );
}

/// JWKS larger than `max_response_bytes` are refused, with or without Content-Length.
#[tokio::test]
async fn oversize_jwks_rejected() {
    let server = TestServer::start().await;
    let doc = jwks(&["k1", "k2", "k3"]);
    let settings =
        JwksSettings { max_response_bytes: doc.len() - 1, unknown_kid_cooldown: Duration::ZERO, ..settings() };
    let (cache, fetches) = jwks_cache(&server, &settings);

    server.set("/jwks", Reply::ok(doc.clone()));
    assert!(cache.refresh_for_unknown_kid().await.is_none());
    server.set("/jwks", Reply { chunked: true, ..Reply::ok(doc.clone()) });
    assert!(cache.refresh_for_unknown_kid().await.is_none());
    assert!(!cache.is_ready());
    assert_eq!(count(&fetches, "https://issuer.test", "too_large"), 2);

    // Exactly at the limit is fine, streamed and with Content-Length.
    let exact = JwksSettings { max_response_bytes: doc.len(), ..settings };
    let (cache, _) = jwks_cache(&server, &exact);
    assert!(cache.refresh_for_unknown_kid().await.unwrap().has_kid("k3"));
    server.set("/jwks", Reply::ok(doc.clone()));
    let (cache, _) = jwks_cache(&server, &exact);
    assert!(cache.refresh_for_unknown_kid().await.unwrap().has_kid("k3"));
}

/// Garbage, non-JWKS JSON and a JWKS with no usable key keep the old set.
#[tokio::test]
async fn invalid_documents_keep_old_keys() {
    let server = TestServer::start().await;
    server.set("/jwks", Reply::ok(jwks(&["k1"])));
    let s = JwksSettings { unknown_kid_cooldown: Duration::ZERO, ..settings() };
    let (cache, fetches) = jwks_cache(&server, &s);
    let good = cache.refresh_for_unknown_kid().await.unwrap();

    let hmac_only = r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#;
    for body in ["<html>oops</html>", "{\"keys\":", "{}", "{\"keys\":[]}", hmac_only] {
        server.set("/jwks", Reply::ok(body));
        let keys = cache.refresh_for_unknown_kid().await.unwrap();
        assert!(Arc::ptr_eq(&keys, &good), "{body} replaced the key set");
    }
    assert_eq!(count(&fetches, "https://issuer.test", "invalid"), 5);
    assert_eq!(cache.installs(), 1);
}

/// A shared-secret issuer is ready at once and never touches the network.
#[tokio::test]
async fn secret_source_ready_without_network() {
    let mut iss = issuer("https://hmac.test", KeySource::Secret(Secret(b"0123456789abcdef".to_vec())));
    iss.algorithms = vec![Algorithm::HS256];
    let fetches = counter();
    let cache = JwksCache::new(&iss, &settings(), client(), fetches.clone());

    assert!(cache.is_ready());
    assert_eq!(cache.keys().unwrap().candidates(None, Algorithm::HS256).count(), 1);
    assert!(cache.refresh_for_unknown_kid().await.is_some());
    tokio::time::timeout(Duration::from_secs(1), cache.clone().run()).await.expect("run returns at once for a secret");
    assert_eq!(cache.installs(), 1);
    assert_eq!(count(&fetches, "https://hmac.test", "success"), 0);
    // Debug names the issuer and its key set, never the secret (in any spelling).
    let dump = format!("{cache:?}");
    assert!(
        dump.starts_with("JwksCache {") && dump.contains("https://hmac.test") && dump.contains("installs: 1"),
        "{dump}"
    );
    assert!(!dump.contains("0123456789abcdef") && !dump.contains("48, 49, 50"), "the secret shows in Debug: {dump}");
}

/// No two caches ever share a generation, whatever their issuers: a reload builds new caches,
/// and a verdict tagged with an old cache's generation must never match a new one's.
#[test]
fn generations_are_unique_in_the_process() {
    let settings = settings();
    let http = reqwest::Client::new();
    let fetches = prometheus::IntCounterVec::new(prometheus::Opts::new("f", "f"), &["issuer", "outcome"]).unwrap();
    let issuer = Issuer::new("https://issuer.test", KeySource::JwksUri("https://issuer.test/jwks".into()));
    let a = JwksCache::new(&issuer, &settings, http.clone(), fetches.clone());
    let b = JwksCache::new(&issuer, &settings, http, fetches);
    assert_ne!(a.generation(), b.generation());
    assert!(a.generation() > 0 && b.generation() > 0);
}

//! Test harness: a real upstream that records what reached it, the real gateway on an
//! ephemeral loopback port, and typed config builders. No fixed ports, no sleeps where a
//! readiness signal exists, every wait bounded. Time that must pass for a token or a cached
//! answer to expire is moved on a `ManualClock` (`gateway_with_clock`), not waited for.
//!
//! A test that needs an external program (promtool, node, npm) fails when it is missing
//! (`require_tool`), unless `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1` is set: then it prints why
//! and returns without running. `.ci/run` never sets it.
#![allow(dead_code)]

pub mod pki;
pub mod process;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
pub use tokengate::clock::ManualClock;
use tokengate::config::*;
use tokengate::dev_issuer::{DevIssuer, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// A real HTTP/1.1 upstream on loopback. Paths with special behaviour:
/// `/slow/<ms>…` answers after a delay; `/stream-in…` signals each received body chunk on
/// `chunks` before reading the next; `/stream-out…` sends one chunk, then waits for
/// `release_out` before finishing; `/hop…` answers with hop-by-hop headers; `/close…` answers
/// and closes the connection. Anything else: 200 "ok" after reading the whole body.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// How many requests `seen` holds, for `wait_for_requests`.
    arrivals: Arc<watch::Sender<usize>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    pub chunks: mpsc::UnboundedReceiver<usize>,
    release_out: mpsc::UnboundedSender<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrivals = Arc::new(watch::Sender::new(0));
        let (chunk_tx, chunks) = mpsc::unbounded_channel();
        let (release_out, release_rx) = mpsc::unbounded_channel::<()>();
        let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
        let seen2 = seen.clone();
        let arrivals2 = arrivals.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = seen2.clone();
                let arrivals = arrivals2.clone();
                let chunk_tx = chunk_tx.clone();
                let release_rx = release_rx.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let arrivals = arrivals.clone();
                    let chunk_tx = chunk_tx.clone();
                    let release_rx = release_rx.clone();
                    async move { Ok::<_, Infallible>(upstream_answer(req, seen, arrivals, chunk_tx, release_rx).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, arrivals, connections, chunks, release_out }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received a request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Until at least `n` requests have reached the upstream (their bodies read, before any
    /// `/slow/` delay): the readiness signal for "the request is in flight". Bounded by WAIT.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut arrivals = self.arrivals.subscribe();
        let reached = tokio::time::timeout(WAIT, arrivals.wait_for(|&count| count >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the upstream received {} request(s) within {WAIT:?}, expected {n}",
            self.count()
        );
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Let a `/stream-out` response finish.
    pub fn release_out(&self) {
        let _ = self.release_out.send(());
    }
}

type UpBody = http_body_util::Either<
    Full<Bytes>,
    StreamBody<ChannelStream<mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>>>,
>;

async fn upstream_answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrivals: Arc<watch::Sender<usize>>,
    chunk_tx: mpsc::UnboundedSender<usize>,
    release_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>,
) -> Response<UpBody> {
    let (parts, mut body) = req.into_parts();
    let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let mut body_len = 0;
    let streaming_in = target.starts_with("/stream-in");
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            body_len += data.len();
            if streaming_in {
                let _ = chunk_tx.send(data.len());
            }
        }
    }
    let count = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: parts.headers.clone(),
            body_len,
        });
        seen.len()
    };
    arrivals.send_replace(count);
    // A slow upstream is the behaviour under test here (response timeouts, draining on
    // shutdown), not a stand-in for readiness.
    if let Some(ms) = target.strip_prefix("/slow/") {
        let ms: u64 = ms.split(['/', '?']).next().unwrap_or("0").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if target.starts_with("/stream-out") {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"first;")))).unwrap();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(WAIT, release_rx.lock().await.recv()).await;
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second"))));
        });
        return Response::new(http_body_util::Either::Right(StreamBody::new(ChannelStream(rx))));
    }
    let mut response = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(format!("ok {body_len}")))));
    if target.starts_with("/hop") {
        let h = response.headers_mut();
        h.insert("connection", "x-upstream-private".parse().unwrap());
        h.insert("x-upstream-private", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-upstream-public", "fine".parse().unwrap());
    }
    if target.starts_with("/close") {
        response.headers_mut().insert("connection", "close".parse().unwrap());
    }
    response
}

// === config builders ===

pub fn config(upstream: &str, issuers: Vec<Issuer>, routes: Vec<Route>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        plain_listen: None,
        tls: None,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        realm: "test".into(),
        server: ServerSettings {
            header_read_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            max_header_bytes: 64 * 1024,
            worker_threads: None,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(5),
            http2_max_concurrent_streams: 100,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(10),
            tunnel_idle_timeout: Duration::from_secs(300),
        },
        upstream: Some(UpstreamSettings {
            uri: upstream.parse().unwrap(),
            protocol: UpstreamProtocol::Http1,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 16,
            max_in_flight: 1024,
        }),
        upstreams: Vec::new(),
        tokens: TokenSettings { allow_query: false, allow_form_body: false, max_token_bytes: 16 * 1024 },
        jwks: JwksSettings {
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            default_refresh: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(2),
            max_response_bytes: 256 * 1024,
        },
        token_cache: TokenCacheSettings { enabled: true, max_entries: 10_000, max_bytes: 16 * 1024 * 1024 },
        issuers,
        routes,
        identity: Identity {
            headers: Identity::default_headers(),
            claims_header: Some(HeaderName::from_static("x-auth-claims")),
            forward_authorization: true,
        },
        protected_resource: None,
        paths: PathSettings::default(),
        trusted_proxies: Vec::new(),
        decision: None,
        access_log: AccessLogSettings::default(),
    }
}

pub fn public_route(id: &str, prefix: &str) -> Route {
    Route::new(id, prefix, RouteAuth::Public)
}

pub fn required_route(id: &str, prefix: &str, scopes: &[&str]) -> Route {
    let policy = Policy { scopes: scopes.iter().map(|s| s.to_string()).collect(), ..Policy::default() };
    Route::new(id, prefix, RouteAuth::Required(policy))
}

pub fn issuer(issuer: &str, jwks_uri: &str, audiences: &[&str]) -> Issuer {
    Issuer {
        audiences: audiences.iter().map(|s| s.to_string()).collect(),
        ..Issuer::new(issuer, KeySource::JwksUri(jwks_uri.into()))
    }
}

pub async fn gateway(config: Config) -> tokengate::app::Running {
    tokengate::app::start(config).await.expect("the gateway starts")
}

/// The gateway judging token times and cache lifetimes by `clock`: a test moves it forward
/// (`ManualClock::advance`/`set`) instead of waiting for a token or a cached answer to expire.
pub async fn gateway_with_clock(config: Config, clock: &ManualClock) -> tokengate::app::Running {
    tokengate::app::start_with_clock(config, clock.clock()).await.expect("the gateway starts")
}

/// Wait (bounded) until `/readyz` on the admin port says every issuer can decide.
pub async fn wait_ready(gw: &tokengate::app::Running) {
    let url = format!("http://{}/readyz", gw.admin_addr);
    let deadline = std::time::Instant::now() + WAIT;
    while !client(false).get(&url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP client; `http2` selects HTTP/2 with prior knowledge (h2c).
pub fn client(http2: bool) -> reqwest::Client {
    let b = reqwest::Client::builder().no_proxy().timeout(WAIT);
    if http2 { b.http2_prior_knowledge() } else { b.http1_only() }.build().unwrap()
}

/// Send raw bytes on a fresh connection and read the response until the server closes it
/// (the request should carry `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.expect("response within WAIT").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A channel receiver as a `Stream` (for streaming bodies in tests).
pub struct ChannelStream<R>(pub R);

impl<T> futures_core::Stream for ChannelStream<mpsc::UnboundedReceiver<T>> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

impl<T> futures_core::Stream for ChannelStream<mpsc::Receiver<T>> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The embedded dev issuer on a loopback port, signing with one ES256 key named `kid`.
pub async fn dev_issuer(kid: &str) -> DevIssuer {
    let key = Arc::new(SigningKey::ec(kid, jsonwebtoken::Algorithm::ES256));
    DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap()
}

// === the decision service (issue 12) ===

/// The decision service's environment: the dev issuer (one ES256 key `k`), the app upstream,
/// and the gateway with issuer audience `api` and a decision listener on a loopback port.
pub struct DecisionEnv {
    pub idp: DevIssuer,
    pub up: Upstream,
    pub gw: tokengate::app::Running,
}

impl DecisionEnv {
    /// `routes`, forwarding to `up`; the decision listener believes peers in `trusted` (a CIDR).
    pub async fn start(routes: Vec<Route>, trusted: &str) -> DecisionEnv {
        DecisionEnv::with(routes, trusted, |_| {}).await
    }

    /// The same, `tweak` applied to the config last (e.g. `cfg.upstream = None`).
    pub async fn with(routes: Vec<Route>, trusted: &str, tweak: impl FnOnce(&mut Config)) -> DecisionEnv {
        let idp = dev_issuer("k").await;
        let up = Upstream::start().await;
        let mut cfg = config(&up.url(), vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])], routes);
        cfg.decision = Some(DecisionSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            trusted_peers: vec![trusted.parse().unwrap()],
        });
        tweak(&mut cfg);
        let gw = gateway(cfg).await;
        DecisionEnv { idp, up, gw }
    }

    /// A token for alice, audience `api`, with `scope`.
    pub fn token(&self, scope: &str) -> String {
        self.token_with(scope, serde_json::json!({}))
    }

    /// The same with the members of `extra` added (e.g. `{"client_id": "cli"}`).
    pub fn token_with(&self, scope: &str, extra: serde_json::Value) -> String {
        let mut claims = serde_json::json!({"sub": "alice", "aud": "api", "scope": scope});
        let serde_json::Value::Object(extra) = extra else { panic!("extra claims must be a JSON object: {extra}") };
        claims.as_object_mut().unwrap().extend(extra);
        self.idp.mint(claims)
    }

    /// Decisions counted by front door `door` with outcome `decision` (the metrics' labels).
    pub fn decisions(&self, door: &str, decision: &str) -> u64 {
        self.gw.metrics.decisions.with_label_values(&[door, decision]).get()
    }
}

// === external daemons (nginx, Traefik, Envoy) ===

/// An external program run in the foreground for one test, with a scratch directory of its
/// own (its config and logs): killed, reaped and the directory removed when dropped.
pub struct Daemon {
    child: Child,
    /// The program's file name, for messages.
    name: String,
    pub dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Daemon {
    /// A new scratch directory for `tool`, unique to this test process and `tag` (a port that
    /// is this test's alone, such as its decision port).
    pub fn scratch(tool: &str, tag: u16) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tokengate-{tool}-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Start `command`; `dir` (from `scratch`) goes with it.
    pub fn spawn(command: &mut Command, dir: PathBuf) -> Daemon {
        let name = std::path::Path::new(command.get_program()).file_name().unwrap_or_default();
        let name = name.to_string_lossy().into_owned();
        let child = command.spawn().unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Daemon { child, name, dir }
    }

    /// The file `name` in the scratch directory (a log), empty if there is none.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Fails, with the log file `log`, if the program has exited.
    pub fn assert_running(&mut self, log: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}): {}", self.name, self.read(log));
        }
    }

    /// Poll `ready` every 20 ms until it gives a value, and return that. Bounded by `WAIT`:
    /// then fails with `what` and the log file `log`; fails at once if the program exits.
    pub async fn wait_until<T, F: Future<Output = Option<T>>>(
        &mut self,
        what: &str,
        log: &str,
        mut ready: impl FnMut() -> F,
    ) -> T {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            self.assert_running(log);
            if let Some(value) = ready().await {
                return value;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {}", self.read(log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// === token introspection (RFC 7662) ===

/// The gateway's client credentials at `FakeIntrospection`; the secret needs form-encoding.
pub const INTROSPECTION_CLIENT_ID: &str = "tokengate";
pub const INTROSPECTION_CLIENT_SECRET: &str = "gateway secret+/=";

/// What `FakeIntrospection` does; tests change it through `FakeIntrospection::script`.
pub struct IntrospectionScript {
    /// Token → members of its active answer (`active: true` is added). Others are inactive.
    pub tokens: std::collections::HashMap<String, serde_json::Value>,
    /// Answer every authenticated request with this status instead.
    pub status: Option<u16>,
    /// Answer every authenticated request with this 200 body instead.
    pub raw: Option<String>,
    /// Wait this long before answering.
    pub delay: Duration,
    pub method: ClientAuthMethod,
    /// Requests received (authenticated or not).
    pub calls: usize,
    /// Requests whose client authentication was wrong (answered 401 invalid_client).
    pub auth_failures: usize,
}

/// A fake RFC 7662 introspection endpoint at `POST /introspect` on loopback. It checks the
/// client's authentication (Basic with form-encoded credentials, or credentials in the body)
/// against `INTROSPECTION_CLIENT_ID`/`_SECRET` and answers 401 when it is wrong.
pub struct FakeIntrospection {
    pub addr: SocketAddr,
    script: Arc<Mutex<IntrospectionScript>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIntrospection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIntrospection {
    pub async fn start(method: ClientAuthMethod) -> FakeIntrospection {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(IntrospectionScript {
            tokens: Default::default(),
            status: None,
            raw: None,
            delay: Duration::ZERO,
            method,
            calls: 0,
            auth_failures: 0,
        }));
        let shared = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let script = shared.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let script = script.clone();
                    async move { Ok::<_, Infallible>(introspection_answer(req, &script).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeIntrospection { addr, script, task }
    }

    /// The issuer it speaks for (the `iss` tests put in answers).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// Make `token` active with these members.
    pub fn active(&self, token: &str, members: serde_json::Value) {
        self.script(|s| s.tokens.insert(token.to_owned(), members));
    }

    pub fn script<R>(&self, f: impl FnOnce(&mut IntrospectionScript) -> R) -> R {
        f(&mut self.script.lock().unwrap())
    }

    pub fn calls(&self) -> usize {
        self.script(|s| s.calls)
    }

    pub fn auth_failures(&self) -> usize {
        self.script(|s| s.auth_failures)
    }
}

async fn introspection_answer(req: Request<Incoming>, script: &Mutex<IntrospectionScript>) -> Response<Full<Bytes>> {
    use base64::Engine as _;
    let reply = |status: u16, body: String| {
        Response::builder().status(status).header("content-type", "application/json").body(Full::from(body)).unwrap()
    };
    if req.uri().path() != "/introspect" || req.method() != http::Method::POST {
        return reply(404, "{}".into());
    }
    let authorization = req.headers().get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str);
    let (answer, delay) = {
        let mut s = script.lock().unwrap();
        s.calls += 1;
        let authenticated = match s.method {
            ClientAuthMethod::ClientSecretBasic => {
                let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                let credentials =
                    format!("{}:{}", encode(INTROSPECTION_CLIENT_ID), encode(INTROSPECTION_CLIENT_SECRET));
                let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
                authorization.as_deref() == Some(expected.as_str()) && field("client_secret").is_none()
            }
            ClientAuthMethod::ClientSecretPost => {
                authorization.is_none()
                    && field("client_id") == Some(INTROSPECTION_CLIENT_ID)
                    && field("client_secret") == Some(INTROSPECTION_CLIENT_SECRET)
            }
        };
        let answer = if !authenticated {
            s.auth_failures += 1;
            reply(401, r#"{"error":"invalid_client"}"#.into())
        } else if field("token_type_hint") != Some("access_token") {
            reply(400, r#"{"error":"invalid_request"}"#.into())
        } else if let Some(status) = s.status {
            reply(status, r#"{"error":"server_error"}"#.into())
        } else if let Some(raw) = &s.raw {
            reply(200, raw.clone())
        } else {
            match field("token").and_then(|t| s.tokens.get(t)) {
                Some(members) => {
                    let mut members = members.clone();
                    members["active"] = serde_json::Value::Bool(true);
                    reply(200, members.to_string())
                }
                None => reply(200, r#"{"active":false}"#.into()),
            }
        };
        (answer, s.delay)
    };
    tokio::time::sleep(delay).await;
    answer
}

/// Introspection settings for the client `client_id`, endpoint from discovery, with test
/// limits: timeout 2 s, positive and negative TTL 60 s, breaker 5 failures / 10 s.
pub fn introspection(client_id: &str, client_secret: &str, method: ClientAuthMethod) -> Introspection {
    Introspection {
        endpoint: None,
        client_id: client_id.into(),
        client_secret: Secret(client_secret.as_bytes().to_vec()),
        auth_method: method,
        protocol: Default::default(),
        timeout: Duration::from_secs(2),
        cache_max_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        cache_capacity: 10_000,
        cache_max_bytes: 16 << 20,
        max_concurrent: 64,
        rate_limit: 1000.0,
        rate_burst: 1000,
        breaker_failures: 5,
        breaker_open_for: Duration::from_secs(10),
    }
}

/// An introspection-only issuer using `FakeIntrospection` at `endpoint`, with short test limits:
/// timeout 500 ms, positive and negative TTL 60 s, breaker 5 failures / 10 s.
pub fn introspection_issuer(issuer: &str, endpoint: &str, audiences: &[&str], method: ClientAuthMethod) -> Issuer {
    Issuer {
        id: issuer.into(),
        issuer: issuer.into(),
        keys: KeySource::None,
        audiences: audiences.iter().map(|s| s.to_string()).collect(),
        audience_check: AudienceCheck::Enabled,
        algorithms: vec![],
        leeway: DEFAULT_LEEWAY,
        require_at_jwt: false,
        mode: TokenMode::Introspection,
        introspection: Some(Introspection {
            endpoint: Some(endpoint.into()),
            timeout: Duration::from_millis(500),
            ..introspection(INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET, method)
        }),
        ..Issuer::new(issuer, KeySource::None)
    }
}

// === refusals, exactly ===

/// The `error_description` of a 403 for a missing scope (`insufficient_scope`).
pub const LACKS_SCOPE: &str = "token lacks a required scope";

/// Send `request` and assert the gateway refused it, exactly: `status`; the RFC 6750 §3.1
/// `error` code (`None`: no credentials, or a 503 where the gateway could not decide); the exact
/// `error_description` naming the rule that refused, in the challenge and in the JSON body; no
/// echo of the token (16+ characters); and nothing forwarded to `up`. A vague "some 401" would
/// still pass when the rule under test is gone and another one happens to refuse the request.
///
/// The challenge is `Bearer realm="test"` plus, with an error code, `error` and
/// `error_description` and nothing else — except after `insufficient_scope`, whose trailing
/// attributes (`, scope="…"`) are returned for the caller to check. A 503 carries `Retry-After`
/// and no challenge, so the client keeps its token (RFC 6750 §3.1 has no code for it).
pub async fn assert_refused(
    up: &Upstream,
    request: reqwest::RequestBuilder,
    status: u16,
    error: Option<&str>,
    reason: &str,
) -> String {
    let before = up.count();
    let (http, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let resp = http.execute(request).await.expect("the gateway answers");
    assert_eq!(resp.status(), status, "{reason}");
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    assert_eq!(up.count(), before, "{reason}: a refused request reached the upstream");
    // Test tokens of a few letters ("t") occur in any English text; real ones cannot.
    assert!(token.len() < 16 || !body.contains(&token), "the token is echoed in the body");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["error_description"], reason, "{body}");
    if let Some(code) = error {
        assert_eq!(json["error"], code, "{body}");
    }
    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    if status == 503 {
        assert!(headers.contains_key("retry-after"), "{reason}: a 503 without Retry-After: {headers:?}");
        assert_eq!(challenge, None, "{reason}: a 503 must not challenge (the client would drop its token)");
        return String::new();
    }
    let challenge = challenge.unwrap_or_else(|| panic!("{reason}: a {status} without WWW-Authenticate"));
    assert!(token.len() < 16 || !challenge.contains(&token), "the token is echoed in the challenge");
    let Some(code) = error else {
        assert_eq!(challenge, "Bearer realm=\"test\"", "no credentials: no error attribute (RFC 6750 §3.1)");
        return String::new();
    };
    let expected = format!("Bearer realm=\"test\", error=\"{code}\", error_description=\"{reason}\"");
    let rest = challenge.strip_prefix(&expected).unwrap_or_else(|| panic!("expected {expected:?}, got {challenge:?}"));
    if code != "insufficient_scope" {
        assert_eq!(rest, "", "unexpected attributes in {challenge:?}");
    }
    rest.to_owned()
}

/// GET `/` with `token`: 401 `invalid_token` whose description is exactly `reason` (see
/// `assert_refused`).
pub async fn assert_token_refused(gw: &tokengate::app::Running, up: &Upstream, token: &str, reason: &str) {
    let request = client(false).get(format!("http://{}/", gw.addr)).bearer_auth(token);
    assert_refused(up, request, 401, Some("invalid_token"), reason).await;
}

/// `request` is 403 `insufficient_scope` for `reason`, and the challenge names the route's
/// required scopes, `scope="<scopes>"` (RFC 6750 §3.1), nothing after it.
pub async fn assert_insufficient(up: &Upstream, request: reqwest::RequestBuilder, reason: &str, scopes: &str) {
    let rest = assert_refused(up, request, 403, Some("insufficient_scope"), reason).await;
    assert_eq!(rest, format!(", scope=\"{scopes}\""), "RFC 6750 §3.1: the challenge names the scope the route needs");
}

/// Near misses for a route requiring `read`: scopes are whole, case-sensitive tokens separated
/// by spaces (RFC 6749 §3.3), and none of these strings holds the token `read` — a prefix or
/// extension of it, another case, other separators, `read` inside another scope, nothing.
pub const NEAR_MISS_SCOPES: &[&str] = &[
    "read:all",
    "reader",
    "READ",
    "Read",
    "rea",
    "read\twrite",
    "read,write",
    "read\u{a0}",
    "readwrite",
    "read-only",
    "unread",
    "thread",
    "write:read",
    "write reader",
    "",
];

// === external tools ===

/// Set to `1` to let a test whose external tool is missing pass without running (it prints
/// why). Unset, such a test fails: a test that cannot run is never counted as passed.
pub const ALLOW_MISSING_TOOLS: &str = "TOKENGATE_TEST_ALLOW_MISSING_TOOLS";

/// The path of `tool`, found on PATH. When it is missing the test fails with a message naming
/// the tool and `install` (how to get it), or, under `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1`,
/// this returns `None` and the test is expected to return at once.
pub fn require_tool(tool: &str, install: &str) -> Option<PathBuf> {
    let found = find_tool(tool);
    if found.is_none() {
        missing_tool(tool, install);
    }
    found
}

/// `tool` on PATH, if it is there.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(tool)).find(|p| p.is_file())
}

/// The one rule for a missing tool: fail, unless the opt-out is set to exactly `1`, in which
/// case print a skip notice and return.
pub fn missing_tool(tool: &str, install: &str) {
    let why = format!("`{tool}` is not installed; install {install}");
    if std::env::var_os(ALLOW_MISSING_TOOLS).is_some_and(|v| v == "1") {
        eprintln!("NOT RUN: {why}; passing only because {ALLOW_MISSING_TOOLS}=1");
        return;
    }
    panic!("{why}. This test cannot run without it; set {ALLOW_MISSING_TOOLS}=1 to let it pass without running.");
}

/// The identity headers the gateway sets with the test config (`config`): its default
/// `identity.headers` and the claims header.
pub const IDENTITY_HEADERS: [&str; 5] =
    ["x-auth-subject", "x-auth-scopes", "x-auth-client-id", "x-auth-issuer", "x-auth-claims"];

/// Through an ingress, a request to the public route at `url` carrying a forged copy of every
/// identity header, plus `x_auth_subject` (the spelling CGI-style backends read as
/// X-Auth-Subject) and any `extra` names, is forwarded with none of them.
pub async fn assert_forged_identity_never_forwarded(url: &str, up: &Upstream, extra: &[&str]) {
    let before = up.count();
    let forged: Vec<&str> =
        IDENTITY_HEADERS.iter().copied().chain(["x_auth_subject"]).chain(extra.iter().copied()).collect();
    let mut request = client(false).get(url);
    for name in &forged {
        request = request.header(*name, "mallory");
    }
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(up.count(), before + 1);
    let seen = up.last();
    for name in forged {
        assert!(!seen.headers.contains_key(name), "{name} reached the upstream: {:?}", seen.headers);
    }
}

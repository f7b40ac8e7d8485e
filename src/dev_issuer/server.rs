//! The running development issuer: a small hyper 1 server publishing discovery metadata and a
//! JWKS and serving the OAuth endpoints of `oauth`, plus the test controls (rotation, outage,
//! request counters, `Cache-Control`, introspection failure modes, clock).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clients::{validate_clients, DevClient, Registry};
use super::oauth::{self, TokenStore};
use super::SigningKey;

/// Default `Cache-Control: max-age` of the JWKS response, in seconds.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;

/// Lifetime of tokens from [`DevIssuer::mint`], in seconds.
pub const MINT_LIFETIME_SECS: u64 = 3600;

/// Larger form bodies at the OAuth endpoints are refused with 413.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// How long shutdown waits for open connections to finish before leaving them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How `POST /introspect` answers: normally, or with a simulated failure (a test control for
/// gateways that introspect). Failure modes apply before client authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IntrospectionMode {
    #[default]
    Normal,
    /// Answer this status with a JSON `{"error": "temporarily_unavailable"}` body.
    Status(u16),
    /// Answer 200 `application/json` with a body that is not JSON.
    Garbage,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

pub(crate) struct State {
    pub(crate) issuer: String,
    pub(crate) keys: ArcSwap<Vec<Arc<SigningKey>>>,
    jwks_available: AtomicBool,
    max_age: AtomicU64,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    pub(crate) clients: Registry,
    pub(crate) tokens: Mutex<TokenStore>,
    /// Seconds added to the system clock (see [`DevIssuer::advance_clock`]).
    clock_offset: AtomicU64,
    introspection_requests: AtomicUsize,
    introspection_mode: Mutex<IntrospectionMode>,
}

impl State {
    /// The issuer's clock: Unix seconds plus the test offset.
    pub(crate) fn now(&self) -> u64 {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        system + self.clock_offset.load(Ordering::SeqCst)
    }
}

/// Configures a [`DevIssuer`] before it starts: keys, registered clients, issuer URL.
#[derive(Debug, Default)]
pub struct DevIssuerBuilder {
    keys: Vec<Arc<SigningKey>>,
    clients: Vec<DevClient>,
    issuer: Option<String>,
}

impl DevIssuerBuilder {
    /// The published keys; the first one signs.
    pub fn keys(mut self, keys: Vec<Arc<SigningKey>>) -> Self {
        self.keys = keys;
        self
    }

    /// Register a client for the token, introspection and revocation endpoints.
    pub fn client(mut self, client: DevClient) -> Self {
        self.clients.push(client);
        self
    }

    pub fn clients(mut self, clients: impl IntoIterator<Item = DevClient>) -> Self {
        self.clients.extend(clients);
        self
    }

    /// The public issuer URL (`iss`, metadata) instead of `http://{bound address}`, e.g. behind
    /// a port forward. A trailing slash is removed.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.trim_end_matches('/').to_owned());
        self
    }

    /// Bind `addr` and serve (see [`DevIssuer::start`]). Fails with `InvalidInput` on a bad client
    /// list (see [`validate_clients`]). Must be called inside a tokio runtime.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<DevIssuer> {
        validate_clients(&self.clients).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            issuer: self.issuer.unwrap_or_else(|| format!("http://{addr}")),
            keys: ArcSwap::from_pointee(self.keys),
            jwks_available: AtomicBool::new(true),
            max_age: AtomicU64::new(DEFAULT_MAX_AGE_SECS),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            clients: Registry::new(self.clients),
            tokens: Mutex::new(TokenStore::default()),
            clock_offset: AtomicU64::new(0),
            introspection_requests: AtomicUsize::new(0),
            introspection_mode: Mutex::new(IntrospectionMode::Normal),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        tracing::warn!(issuer = %state.issuer, %addr, "development issuer started: not for production use");
        Ok(DevIssuer { state, addr, stop, task: Some(task) })
    }
}

/// Handle to a running development issuer. Dropping it or calling [`DevIssuer::shutdown`] stops
/// the server (the listener closes; open connections are asked to close).
pub struct DevIssuer {
    state: Arc<State>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.state.issuer).finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Bind `addr` (callers pass e.g. `127.0.0.1:0`) and serve, on a spawned task:
    /// `GET /.well-known/openid-configuration`, `GET /.well-known/oauth-authorization-server`
    /// (metadata), `GET /jwks` (the published public keys), and `POST /token`, `/introspect`,
    /// `/revoke` (which need registered clients: use [`DevIssuer::builder`]). The issuer URL is
    /// `http://{bound address}`. Must be called inside a tokio runtime.
    pub async fn start(addr: SocketAddr, keys: Vec<Arc<SigningKey>>) -> std::io::Result<DevIssuer> {
        DevIssuer::builder().keys(keys).start(addr).await
    }

    /// Configure keys, clients and the issuer URL, then [`DevIssuerBuilder::start`].
    pub fn builder() -> DevIssuerBuilder {
        DevIssuerBuilder::default()
    }

    /// The issuer URL, `http://{bound address}` unless overridden (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{issuer}/jwks`.
    pub fn jwks_uri(&self) -> String {
        jwks_uri(&self.state.issuer)
    }

    /// `{issuer}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.state.issuer)
    }

    /// `{issuer}/introspect`.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.state.issuer)
    }

    /// `{issuer}/revoke`.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/revoke", self.state.issuer)
    }

    /// Ask this issuer for a token the way a client does: `client_credentials` over HTTP with
    /// `client_secret_basic`; `params` adds form parameters (`scope`, `resource`). Returns the
    /// `access_token` (a JWT or an opaque token, per the client's format).
    ///
    /// # Panics
    /// If the request fails or the issuer answers anything but 200 with an `access_token`:
    /// this is for tests and benchmarks, which want to stop right there.
    pub async fn client_credentials(&self, client_id: &str, client_secret: &str, params: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(params);
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .post(self.token_endpoint())
            .header(header::AUTHORIZATION, super::basic_authorization(client_id, client_secret))
            .form(&form)
            .send()
            .await
            .expect("the dev issuer answers");
        assert_eq!(response.status(), StatusCode::OK, "token request for {client_id} refused");
        let answer: Value = response.json().await.expect("a JSON token response");
        answer["access_token"].as_str().expect("an access_token").to_owned()
    }

    /// Mint an access token with the first published key, bypassing client authentication.
    /// Header: `{alg, kid, typ: "at+jwt"}`.
    /// Claims: the defaults `{iss, iat: now, exp: now + 3600, jti: random}` overridden by the
    /// members of `claims`; a member set to `null` removes that default (e.g. `{"exp": null}`
    /// mints a token without `exp`). For full control over header and claims use
    /// [`SigningKey::sign_raw`].
    ///
    /// # Panics
    /// If no key is published or `claims` is not a JSON object.
    pub fn mint(&self, claims: Value) -> String {
        let keys = self.state.keys.load();
        let key = keys.first().expect("DevIssuer::mint: no key is published");
        let Value::Object(overrides) = claims else {
            panic!("DevIssuer::mint: claims must be a JSON object, got {claims}");
        };
        let now = self.state.now();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).expect("random jti");
        let mut merged = serde_json::Map::new();
        merged.insert("iss".into(), json!(self.state.issuer));
        merged.insert("iat".into(), json!(now));
        merged.insert("exp".into(), json!(now + MINT_LIFETIME_SECS));
        merged.insert("jti".into(), json!(URL_SAFE_NO_PAD.encode(jti)));
        for (name, value) in overrides {
            if value.is_null() {
                merged.remove(&name);
            } else {
                merged.insert(name, value);
            }
        }
        let header = json!({ "alg": key.alg, "kid": key.kid, "typ": "at+jwt" });
        key.sign_raw(&header, &Value::Object(merged))
    }

    /// Replace the published key set (rotation). Takes effect for the next request.
    pub fn set_keys(&self, keys: Vec<Arc<SigningKey>>) {
        self.state.keys.store(Arc::new(keys));
    }

    /// The currently published keys.
    pub fn keys(&self) -> Vec<Arc<SigningKey>> {
        self.state.keys.load().as_ref().clone()
    }

    /// How many requests reached `GET /jwks`, including those answered 503 while unavailable.
    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// How many requests reached either discovery metadata path.
    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// `false` makes `GET /jwks` answer 503 (a simulated outage); `true` restores it.
    pub fn set_jwks_available(&self, up: bool) {
        self.state.jwks_available.store(up, Ordering::SeqCst);
    }

    /// Set the `Cache-Control: max-age` sent with the JWKS (default 300 s).
    pub fn set_max_age(&self, secs: u64) {
        self.state.max_age.store(secs, Ordering::SeqCst);
    }

    /// How many requests reached `POST /introspect`, simulated failures included.
    pub fn introspection_requests(&self) -> usize {
        self.state.introspection_requests.load(Ordering::SeqCst)
    }

    /// Make `POST /introspect` fail (or slow down) until set back to [`IntrospectionMode::Normal`].
    ///
    /// # Panics
    /// On `Status(code)` with a code outside 100..=999.
    pub fn set_introspection_mode(&self, mode: IntrospectionMode) {
        if let IntrospectionMode::Status(code) = mode {
            assert!(StatusCode::from_u16(code).is_ok(), "set_introspection_mode: {code} is not an HTTP status");
        }
        *self.state.introspection_mode.lock().expect("mode lock") = mode;
    }

    /// Move the issuer's clock forward: tokens issued or minted afterwards carry the later
    /// `iat`/`exp`, and introspection judges expiry by it. Lets tests expire tokens without
    /// sleeping. Relying parties keep their own clocks.
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock_offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// Stop accepting, ask open connections to close and wait (up to 2 s) for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        // The accept task notices on its own; it finishes in the background.
        let _ = self.stop.send(true);
    }
}

fn jwks_uri(issuer: &str) -> String {
    format!("{issuer}/jwks")
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        // e.g. EMFILE: back off instead of spinning.
                        tracing::warn!(%error, "development issuer: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = Arc::clone(&state);
                let service = hyper::service::service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%error, "development issuer: connection error");
                    }
                });
            }
            // Fires on `send(true)` and also when the sender is dropped.
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// The endpoints and the one method each accepts.
fn allowed_method(path: &str) -> Option<Method> {
    match path {
        "/jwks" | "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => Some(Method::GET),
        "/token" | "/introspect" | "/revoke" => Some(Method::POST),
        _ => None,
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Some(allowed) = allowed_method(&path) else {
        return json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" }));
    };
    if req.method() != allowed {
        let mut response = json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method_not_allowed" }));
        response.headers_mut().insert(
            header::ALLOW,
            header::HeaderValue::from_str(allowed.as_str()).expect("a method name is a valid header value"),
        );
        return response;
    }
    match path.as_str() {
        "/jwks" => jwks(state),
        "/token" | "/introspect" | "/revoke" => oauth_endpoint(state, &path, req).await,
        _ => {
            state.discovery_requests.fetch_add(1, Ordering::SeqCst);
            json_response(StatusCode::OK, &metadata(state))
        }
    }
}

fn jwks(state: &State) -> Response<Full<Bytes>> {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if !state.jwks_available.load(Ordering::SeqCst) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": "temporarily_unavailable" }));
    }
    let keys: Vec<Value> = state.keys.load().iter().map(|k| k.public_jwk()).collect();
    let mut response = json_response(StatusCode::OK, &json!({ "keys": keys }));
    let max_age = state.max_age.load(Ordering::SeqCst);
    let cache_control =
        header::HeaderValue::from_str(&format!("max-age={max_age}")).expect("digits are a valid header value");
    response.headers_mut().insert(header::CACHE_CONTROL, cache_control);
    response
}

/// `POST /token`, `/introspect`, `/revoke`: apply the introspection failure mode, read the form
/// body (at most 64 KiB), dispatch.
async fn oauth_endpoint(state: &State, path: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if path == "/introspect" {
        state.introspection_requests.fetch_add(1, Ordering::SeqCst);
        let mode = *state.introspection_mode.lock().expect("mode lock");
        match mode {
            IntrospectionMode::Normal => {}
            IntrospectionMode::Delay(delay) => tokio::time::sleep(delay).await,
            IntrospectionMode::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return json_response(status, &json!({ "error": "temporarily_unavailable" }));
            }
            IntrospectionMode::Garbage => {
                return Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from_static(b"{\"active\": tru")))
                    .expect("valid response parts");
            }
        }
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({ "error": "invalid_request", "error_description": "body too large or unreadable" }),
            )
        }
    };
    let answer = match path {
        "/token" => oauth::token(state, &parts.headers, &body),
        "/introspect" => oauth::introspect(state, &parts.headers, &body),
        _ => oauth::revoke(state, &parts.headers, &body),
    };
    answer.unwrap_or_else(oauth::OAuthError::into_response)
}

/// Discovery metadata (OpenID Connect Discovery 1.0 §3 / RFC 8414 §2), limited to what this
/// issuer actually offers: no authorization endpoint, client credentials only.
fn metadata(state: &State) -> Value {
    let mut algs: Vec<Value> = Vec::new();
    for key in state.keys.load().iter() {
        let alg = json!(key.alg);
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    let mut scopes: Vec<&str> = state.clients.iter().flat_map(|c| c.scopes.iter().map(String::as_str)).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let auth_methods = json!(["client_secret_basic", "client_secret_post"]);
    let issuer = &state.issuer;
    json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri(issuer),
        "token_endpoint": format!("{issuer}/token"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).expect("JSON value serializes");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response parts")
}

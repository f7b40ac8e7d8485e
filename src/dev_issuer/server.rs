//! The running development issuer: a small hyper 1 server publishing discovery metadata and a
//! JWKS, plus the test controls (rotation, outage, request counters, `Cache-Control`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SigningKey;

/// Default `Cache-Control: max-age` of the JWKS response, in seconds.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;

/// Lifetime of tokens from [`DevIssuer::mint`], in seconds.
pub const MINT_LIFETIME_SECS: u64 = 3600;

/// How long shutdown waits for open connections to finish before leaving them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

struct State {
    issuer: String,
    keys: ArcSwap<Vec<Arc<SigningKey>>>,
    jwks_available: AtomicBool,
    max_age: AtomicU64,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
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
    /// (metadata) and `GET /jwks` (the published public keys). The issuer URL is
    /// `http://{bound address}`. Must be called inside a tokio runtime.
    pub async fn start(addr: SocketAddr, keys: Vec<Arc<SigningKey>>) -> std::io::Result<DevIssuer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            keys: ArcSwap::from_pointee(keys),
            jwks_available: AtomicBool::new(true),
            max_age: AtomicU64::new(DEFAULT_MAX_AGE_SECS),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        tracing::warn!(issuer = %state.issuer, "development issuer started: not for production use");
        Ok(DevIssuer { state, addr, stop, task: Some(task) })
    }

    /// The issuer URL, `http://{bound address}` (no trailing slash).
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

    /// Mint an access token with the first published key. Header: `{alg, kid, typ: "at+jwt"}`.
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
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
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
                    async move { Ok::<_, Infallible>(handle(&state, &req)) }
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

fn handle(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known =
        matches!(path, "/jwks" | "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server");
    if !known {
        return json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" }));
    }
    if req.method() != Method::GET {
        let mut response = json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method_not_allowed" }));
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    if path == "/jwks" {
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
    } else {
        state.discovery_requests.fetch_add(1, Ordering::SeqCst);
        json_response(StatusCode::OK, &metadata(state))
    }
}

/// Discovery metadata (OpenID Connect Discovery 1.0 §3 / RFC 8414 §2), limited to what this
/// issuer actually offers: no authorization or token endpoint yet.
fn metadata(state: &State) -> Value {
    let mut algs: Vec<Value> = Vec::new();
    for key in state.keys.load().iter() {
        let alg = json!(key.alg);
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    json!({
        "issuer": state.issuer,
        "jwks_uri": jwks_uri(&state.issuer),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).expect("JSON value serializes");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response parts")
}

//! JWKS fetching and caching: one `JwksCache` per issuer.
//!
//! The request path reads the current `KeySet` with one lock-free `ArcSwapOption` load
//! (`keys`). Fetching happens in two places that share one fetch path and one guard:
//!
//! - `run`, a background task: fetch now (retrying with exponential backoff), then again before
//!   the key set goes stale: at the response's `Cache-Control: max-age` clamped to
//!   `[min_refresh, max_refresh]`, or `default_refresh` without one.
//! - `refresh_for_unknown_kid`, on the request path when a token names a key we do not have:
//!   at most one fetch per `unknown_kid_cooldown`, and concurrent callers share one fetch.
//!
//! A failed fetch never removes keys: the last good set stays installed until a fetch succeeds.
//! Discovery (`KeySource::Discovery`) reads OpenID Connect Discovery metadata, falling back to
//! RFC 8414 authorization-server metadata, and takes its `jwks_uri`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use prometheus::IntCounterVec;
use reqwest::header::{HeaderMap, ACCEPT, AGE, CACHE_CONTROL};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::auth::keyset::KeySet;
use crate::config::{Issuer, JwksSettings, KeySource};

/// First retry delay after a failed fetch; doubles up to `min(MAX_BACKOFF, default_refresh)`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

const OIDC_DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";
const OAUTH_METADATA_PREFIX: &str = "/.well-known/oauth-authorization-server";

/// Where the keys come from, as far as fetching is concerned.
enum Source {
    /// A configured shared secret: installed at construction, never fetched.
    Static,
    JwksUri(String),
    Discovery,
    /// An introspection-only issuer: no keys, never fetched, never ready by itself.
    None,
}

/// State only the holder of the fetch guard touches.
#[derive(Default)]
struct FetchState {
    /// `jwks_uri` learned through discovery; forgotten when fetching it fails, so the next
    /// attempt discovers again.
    discovered_jwks_uri: Option<String>,
    /// The document behind the installed key set, to tell a changed set from a re-served one.
    installed_doc: Option<serde_json::Value>,
    /// When the installed set should be refreshed; set by every successful fetch.
    next_refresh: Option<Instant>,
}

/// The keys of one issuer, kept fresh.
pub struct JwksCache {
    issuer: String,
    algorithms: Vec<Algorithm>,
    source: Source,
    settings: JwksSettings,
    http: reqwest::Client,
    fetches: IntCounterVec,
    current: ArcSwapOption<KeySet>,
    generation: AtomicU64,
    /// Reference point for `last_attempt`.
    epoch: Instant,
    /// When the last fetch attempt ended, as nanoseconds since `epoch` plus one; 0 = never.
    /// Read without the guard so a flood of unknown kids inside the cooldown never queues.
    last_attempt: AtomicU64,
    /// Held for the whole of a fetch: concurrent refreshers wait here and then share its result.
    guard: Mutex<FetchState>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("generation", &self.generation())
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// Why one refresh attempt failed. Each maps to one bounded metrics `outcome`.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("GET {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("GET {url}: no complete response within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("GET {url}: HTTP status {status} (expected 200)")]
    Status { url: String, status: StatusCode },
    #[error("GET {url}: response larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
}

impl FetchError {
    fn outcome(&self) -> &'static str {
        match self {
            FetchError::Network { .. } => "network_error",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Status { .. } => "http_error",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Invalid { .. } => "invalid",
        }
    }

    fn invalid(url: &str, reason: impl Into<String>) -> FetchError {
        FetchError::Invalid { url: url.to_owned(), reason: reason.into() }
    }
}

/// A successfully fetched and parsed JWKS.
struct Fetched {
    keys: KeySet,
    doc: serde_json::Value,
    refresh_after: Duration,
}

/// Discovery metadata: only the members we use (unknown members are ignored).
#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
}

/// Records the end of a fetch attempt even when the attempt is cancelled (a request-path caller
/// whose client went away), so waiters do not each start a fetch of their own.
struct AttemptMark<'a>(&'a JwksCache);

impl Drop for AttemptMark<'_> {
    fn drop(&mut self) {
        let since = self.0.epoch.elapsed().as_nanos();
        let stamp = u64::try_from(since).unwrap_or(u64::MAX - 1).saturating_add(1);
        self.0.last_attempt.store(stamp, Ordering::Release);
    }
}

impl JwksCache {
    /// `http` is the app's shared client (User-Agent, redirects disabled, connect timeout);
    /// every request still gets `settings.fetch_timeout` as its total timeout.
    pub fn new(
        issuer: &Issuer,
        settings: &JwksSettings,
        http: reqwest::Client,
        fetches: IntCounterVec,
    ) -> Arc<JwksCache> {
        let (source, initial) = match &issuer.keys {
            KeySource::Secret(secret) => {
                (Source::Static, Some(Arc::new(KeySet::from_secret(&secret.0, &issuer.algorithms))))
            }
            KeySource::JwksUri(uri) => (Source::JwksUri(uri.clone()), None),
            KeySource::Discovery => (Source::Discovery, None),
            KeySource::None => (Source::None, None),
        };
        let generation = u64::from(initial.is_some());
        Arc::new(JwksCache {
            issuer: issuer.issuer.clone(),
            algorithms: issuer.algorithms.clone(),
            source,
            settings: settings.clone(),
            http,
            fetches,
            current: ArcSwapOption::new(initial),
            generation: AtomicU64::new(generation),
            epoch: Instant::now(),
            last_attempt: AtomicU64::new(0),
            guard: Mutex::new(FetchState::default()),
        })
    }

    /// The current key set; `None` until the first successful fetch. Lock-free.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Ready = a usable key set is installed (installed sets are never empty).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Incremented every time a different key set is installed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The issuer this cache serves.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// For a token whose `kid` (or `alg`) matches no current key: refetch, unless such a
    /// refetch ended less than `unknown_kid_cooldown` ago, so a flood of made-up kids costs the IdP at
    /// most one request per cooldown. Concurrent callers share one fetch and all see its result.
    /// Returns the (possibly new) current set. Never fetches for a shared secret.
    pub async fn refresh_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        if matches!(self.source, Source::Static | Source::None) {
            return self.keys();
        }
        let seen = self.generation();
        if self.attempted_within_cooldown() {
            tracing::debug!(issuer = %self.issuer, "unknown kid: JWKS refetch skipped (cooldown)");
            return self.keys();
        }
        let mut state = self.guard.lock().await;
        // Whoever held the guard before us may have just fetched: share that result.
        if self.generation() != seen || self.attempted_within_cooldown() {
            return self.keys();
        }
        tracing::debug!(issuer = %self.issuer, "unknown kid: refetching JWKS");
        // Only request-driven fetches start a cooldown: a scheduled refresh that happened just
        // before a rotation must not delay the first request carrying the new kid.
        let _mark = AttemptMark(self);
        let _ = self.fetch_locked(&mut state).await;
        self.keys()
    }

    /// Background refresh loop; the app spawns it and aborts it at shutdown. Returns at once for
    /// a shared secret or an issuer without keys.
    pub async fn run(self: Arc<Self>) {
        if matches!(self.source, Source::Static | Source::None) {
            return;
        }
        let max_backoff = MAX_BACKOFF.min(self.settings.default_refresh);
        let initial_backoff = INITIAL_BACKOFF.min(max_backoff);
        let mut backoff = initial_backoff;
        loop {
            let wake_at = {
                let mut state = self.guard.lock().await;
                let now = Instant::now();
                match state.next_refresh {
                    // Another fetch (an unknown kid) succeeded meanwhile: its schedule stands.
                    Some(due) if due > now => {
                        backoff = initial_backoff;
                        due
                    }
                    _ => match self.fetch_locked(&mut state).await {
                        Ok(due) => {
                            backoff = initial_backoff;
                            due
                        }
                        Err(()) => {
                            let due = after(Instant::now(), backoff);
                            backoff = (backoff * 2).min(max_backoff);
                            due
                        }
                    },
                }
            };
            tokio::time::sleep_until(wake_at).await;
        }
    }

    fn attempted_within_cooldown(&self) -> bool {
        match self.last_attempt.load(Ordering::Acquire) {
            0 => false,
            stamp => {
                let ended = self.epoch + Duration::from_nanos(stamp - 1);
                ended.elapsed() < self.settings.unknown_kid_cooldown
            }
        }
    }

    /// One refresh attempt, with the guard held: fetch, install if changed, record the outcome.
    /// Returns when the next refresh is due, or `Err` (already logged) on failure.
    async fn fetch_locked(&self, state: &mut FetchState) -> Result<Instant, ()> {
        let result = self.fetch(state).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.outcome(),
        };
        self.fetches.with_label_values(&[self.issuer.as_str(), outcome]).inc();
        match result {
            Ok(fetched) => {
                if state.installed_doc.as_ref() != Some(&fetched.doc) {
                    let generation = self.generation.load(Ordering::Relaxed) + 1;
                    // Only kids and algorithms are logged (KeySet's Debug), never key material.
                    tracing::info!(
                        issuer = %self.issuer, generation, keys = ?fetched.keys,
                        "installed new JWKS key set"
                    );
                    self.current.store(Some(Arc::new(fetched.keys)));
                    self.generation.store(generation, Ordering::Release);
                    state.installed_doc = Some(fetched.doc);
                } else {
                    tracing::debug!(issuer = %self.issuer, "JWKS unchanged");
                }
                let due = after(Instant::now(), fetched.refresh_after);
                state.next_refresh = Some(due);
                Ok(due)
            }
            Err(e) => {
                if self.is_ready() {
                    tracing::warn!(
                        issuer = %self.issuer, outcome, error = %e,
                        "JWKS refresh failed; keeping the previous key set"
                    );
                } else {
                    tracing::error!(
                        issuer = %self.issuer, outcome, error = %e,
                        "JWKS fetch failed; no key set yet, tokens from this issuer are refused"
                    );
                }
                Err(())
            }
        }
    }

    async fn fetch(&self, state: &mut FetchState) -> Result<Fetched, FetchError> {
        let jwks_uri = match &self.source {
            Source::Static | Source::None => unreachable!("a shared-secret or absent key set is never fetched"),
            Source::JwksUri(uri) => uri.clone(),
            Source::Discovery => match &state.discovered_jwks_uri {
                Some(uri) => uri.clone(),
                None => {
                    let uri = self.discover().await?;
                    state.discovered_jwks_uri = Some(uri.clone());
                    uri
                }
            },
        };
        let result = self.fetch_jwks(&jwks_uri).await;
        if result.is_err() {
            state.discovered_jwks_uri = None;
        }
        result
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Fetched, FetchError> {
        let (body, headers) = self.get(url, "application/jwk-set+json, application/json").await?;
        let keys = KeySet::from_jwks(&body, &self.algorithms).map_err(|e| FetchError::invalid(url, e.to_string()))?;
        if keys.is_empty() {
            return Err(FetchError::invalid(url, "the JWKS holds no key usable with the issuer's algorithms"));
        }
        // `from_jwks` accepted it, so it is JSON.
        let doc = serde_json::from_slice(&body).map_err(|e| FetchError::invalid(url, e.to_string()))?;
        Ok(Fetched { keys, doc, refresh_after: refresh_interval(&headers, &self.settings) })
    }

    /// The issuer's `jwks_uri` from its metadata: OpenID Connect Discovery first, then RFC 8414
    /// when that document is missing or unusable (but not on a network failure or timeout,
    /// which the second request to the same host would most likely repeat).
    async fn discover(&self) -> Result<String, FetchError> {
        let (oidc, oauth) = metadata_urls(&self.issuer).map_err(|reason| FetchError::invalid(&self.issuer, reason))?;
        match self.fetch_metadata(&oidc).await {
            Ok(uri) => Ok(uri),
            Err(first @ (FetchError::Status { .. } | FetchError::Invalid { .. })) => {
                tracing::debug!(
                    issuer = %self.issuer, error = %first,
                    "OpenID discovery failed; trying RFC 8414 metadata"
                );
                match self.fetch_metadata(&oauth).await {
                    // Both failed: a usable-but-wrong first document says more than a 404.
                    Err(FetchError::Status { .. }) if matches!(first, FetchError::Invalid { .. }) => Err(first),
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_metadata(&self, url: &str) -> Result<String, FetchError> {
        let (body, _) = self.get(url, "application/json").await?;
        let meta: Metadata = serde_json::from_slice(&body)
            .map_err(|e| FetchError::invalid(url, format!("not a metadata document: {e}")))?;
        // OpenID Connect Discovery 1.0 §4.3 and RFC 8414 §3.3: the `issuer` value returned MUST be
        // identical to the issuer identifier the metadata URL was built from; otherwise the
        // metadata MUST NOT be used (it could name another issuer's keys).
        if meta.issuer != self.issuer {
            return Err(FetchError::invalid(
                url,
                format!("metadata names issuer {:?}, expected {:?}", meta.issuer, self.issuer),
            ));
        }
        let Some(jwks_uri) = meta.jwks_uri else {
            return Err(FetchError::invalid(url, "metadata has no jwks_uri"));
        };
        let parsed =
            Url::parse(&jwks_uri).map_err(|e| FetchError::invalid(url, format!("jwks_uri {jwks_uri:?}: {e}")))?;
        // OpenID Connect Discovery 1.0 §3: jwks_uri MUST use the https scheme. Metadata that was
        // itself fetched over plain http (a local development issuer) may point to http.
        let metadata_is_https = url.starts_with("https://");
        if parsed.scheme() != "https" && (metadata_is_https || parsed.scheme() != "http") {
            return Err(FetchError::invalid(url, format!("jwks_uri {jwks_uri:?} is not https")));
        }
        Ok(jwks_uri)
    }

    /// GET with the total timeout and the size cap; only 200 is success.
    async fn get(&self, url: &str, accept: &str) -> Result<(Vec<u8>, HeaderMap), FetchError> {
        let timeout = self.settings.fetch_timeout;
        let limit = self.settings.max_response_bytes;
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout { url: url.to_owned(), timeout }
            } else if e.is_builder() {
                FetchError::invalid(url, error_chain(&e.without_url()))
            } else {
                FetchError::Network { url: url.to_owned(), reason: error_chain(&e.without_url()) }
            }
        };
        let mut response = self.http.get(url).header(ACCEPT, accept).timeout(timeout).send().await.map_err(classify)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status { url: url.to_owned(), status: response.status() });
        }
        let too_large = || FetchError::TooLarge { url: url.to_owned(), limit };
        let declared = response.content_length();
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        // Content-Length may be absent (chunked) or wrong: count what actually arrives.
        let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize));
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, std::mem::take(response.headers_mut())))
    }
}

/// `now + d`, saturating far in the future instead of panicking on overflow.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// The two metadata URLs for an issuer: OpenID Connect Discovery 1.0 §4 (`{issuer}` without a
/// trailing `/`, then `/.well-known/openid-configuration`) and RFC 8414 §3 (the well-known
/// segment inserted between the host and the issuer's path, the path's terminating `/` removed).
pub(crate) fn metadata_urls(issuer: &str) -> Result<(String, String), String> {
    let oidc = format!("{}{OIDC_DISCOVERY_SUFFIX}", issuer.trim_end_matches('/'));
    let mut url = Url::parse(issuer).map_err(|e| format!("issuer is not a URL: {e}"))?;
    if url.cannot_be_a_base() {
        return Err("issuer is not a hierarchical URL".to_owned());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{OAUTH_METADATA_PREFIX}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok((oidc, url.into()))
}

/// When to refresh after a response with these headers: its remaining freshness (RFC 9111
/// §4.2: `max-age` minus `Age`) clamped to `[min_refresh, max_refresh]`, or `default_refresh`
/// when there is no usable `max-age`.
fn refresh_interval(headers: &HeaderMap, settings: &JwksSettings) -> Duration {
    let Some(max_age) = max_age(headers) else {
        return settings.default_refresh;
    };
    let age = headers.get(AGE).and_then(|v| v.to_str().ok()).and_then(delta_seconds).unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).min(settings.max_refresh).max(settings.min_refresh)
}

/// The first `max-age` directive of the `Cache-Control` fields (RFC 9111 §4.2.1: with several,
/// the first occurrence may be used). Directive names are case-insensitive (§5.2).
fn max_age(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| directive.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("max-age"))
        .and_then(|(_, value)| delta_seconds(value.trim().trim_matches('"')))
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; a value too large to represent is "infinity".
fn delta_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
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
    use crate::config::{Secret, DEFAULT_ALGORITHMS};

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
        Issuer {
            issuer: iss.to_owned(),
            keys,
            audiences: vec![],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(30),
            require_at_jwt: false,
            scope_claim: None,
            mode: crate::config::TokenMode::Jwt,
            introspection: None,
        }
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
        assert_eq!(cache.generation(), 0);

        let task = tokio::spawn(cache.clone().run());
        eventually(Duration::from_secs(3), "ready", || cache.is_ready()).await;
        task.abort();

        let keys = cache.keys().unwrap();
        assert!(keys.has_kid("k1") && keys.has_kid("k2"));
        assert_eq!(keys.len(), 2);
        assert_eq!(cache.generation(), 1);
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
        assert_eq!(cache.generation(), 2);
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
        let settings = JwksSettings {
            unknown_kid_cooldown: Duration::ZERO,
            fetch_timeout: Duration::from_millis(200),
            ..settings()
        };
        let (cache, fetches) = jwks_cache(&server, &settings);
        let good = cache.refresh_for_unknown_kid().await.unwrap();
        let iss = "https://issuer.test";

        let unchanged = cache.refresh_for_unknown_kid().await.unwrap();
        assert!(Arc::ptr_eq(&good, &unchanged), "same document → same installed set");
        assert_eq!(count(&fetches, iss, "success"), 2);

        let kept = |cache: &JwksCache| {
            assert!(Arc::ptr_eq(&cache.keys().unwrap(), &good));
            assert!(cache.is_ready());
            assert_eq!(cache.generation(), 1);
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
        assert_eq!(cache.generation(), 2);
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

        // Exactly at the limit is fine, also when streamed.
        let exact = JwksSettings { max_response_bytes: doc.len(), ..settings };
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
        assert_eq!(cache.generation(), 1);
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
        tokio::time::timeout(Duration::from_secs(1), cache.clone().run())
            .await
            .expect("run returns at once for a secret");
        assert_eq!(cache.generation(), 1);
        assert_eq!(count(&fetches, "https://hmac.test", "success"), 0);
    }
}

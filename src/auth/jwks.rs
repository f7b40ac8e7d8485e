//! JWKS fetching and caching: one `JwksCache` per issuer.
//!
//! The request path reads the current `KeySet` with one lock-free `ArcSwapOption` load
//! (`keys`). Fetching happens in two places that share one fetch path and one guard:
//!
//! - `run`, a background task: fetch now (retrying with exponential backoff), then again before
//!   the key set goes stale: at the response's `Cache-Control: max-age` clamped to
//!   `[min_refresh, max_refresh]`, or `default_refresh` without one.
//! - `refresh_for_unknown_kid`, on the request path when a token's key is not in the set (an
//!   unknown `kid`, or for a token without `kid` no key that verifies it; see
//!   `refetch_for_unknown_key`): at most one fetch per `unknown_kid_cooldown`, and concurrent
//!   callers share one fetch.
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
    /// The configured metadata URL, instead of the ones derived from `issuer`.
    discovery_url: Option<String>,
    algorithms: Vec<Algorithm>,
    source: Source,
    settings: JwksSettings,
    http: reqwest::Client,
    fetches: IntCounterVec,
    current: ArcSwapOption<KeySet>,
    /// Names the installed key set; unique in the process (see `next_generation`).
    generation: AtomicU64,
    /// Key sets installed so far (1 after the first fetch), for the log and tests.
    installs: AtomicU64,
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
            .field("installs", &self.installs())
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
        // Nanoseconds since `epoch`, plus one so that 0 means "never"; saturating after 584 years.
        let since = self.0.epoch.elapsed().as_nanos();
        let stamp = u64::try_from(since).map_or(u64::MAX, |n| n.saturating_add(1));
        self.0.last_attempt.store(stamp, Ordering::Release);
    }
}

/// Key-set generations, shared by every cache in the process.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
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
        let installs = u64::from(initial.is_some());
        Arc::new(JwksCache {
            issuer: issuer.issuer.clone(),
            discovery_url: issuer.discovery_url.clone(),
            algorithms: issuer.algorithms.clone(),
            source,
            settings: settings.clone(),
            http,
            fetches,
            current: ArcSwapOption::new(initial),
            generation: AtomicU64::new(next_generation()),
            installs: AtomicU64::new(installs),
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
    /// Changes every time a different key set is installed. No two caches in the process ever
    /// share a value: after a config reload, an issuer at the same position is a new cache, and
    /// a verdict tagged (position, generation) under the old one can never pass for the new one's.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many key sets were installed (a secret counts as one at once).
    pub fn installs(&self) -> u64 {
        self.installs.load(Ordering::Relaxed)
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

    /// For a token whose key was not in `seen` (the set it was checked against): one refetch as
    /// `refresh_for_unknown_kid`, then the generation and key set now installed, or `None` when
    /// the set is still `seen` (cooldown, failed fetch, no keys) and checking again is useless.
    /// The generation is read before the keys, so it is never newer than the keys it tags.
    pub async fn refetch_for_unknown_key(&self, seen: Option<&Arc<KeySet>>) -> Option<(u64, Arc<KeySet>)> {
        self.refresh_for_unknown_kid().await;
        let generation = self.generation();
        let keys = self.keys()?;
        match seen {
            Some(seen) if Arc::ptr_eq(seen, &keys) => None,
            _ => Some((generation, keys)),
        }
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
                match scheduled_later(state.next_refresh, now) {
                    // Another fetch (an unknown kid) succeeded meanwhile: its schedule stands.
                    Some(due) => {
                        backoff = initial_backoff;
                        due
                    }
                    None => match self.fetch_locked(&mut state).await {
                        Ok(due) => {
                            backoff = initial_backoff;
                            due
                        }
                        Err(()) => {
                            let due = after(Instant::now(), backoff);
                            backoff = next_backoff(backoff, max_backoff);
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
                // A stamp is one more than the nanoseconds it records (0 is "never"); reading it
                // back as is puts the end 1 ns late, which no cooldown can notice.
                let ended = self.epoch + Duration::from_nanos(stamp);
                ended.elapsed() < self.settings.unknown_kid_cooldown
            }
        }
    }

    /// One refresh attempt, with the guard held: fetch, install if changed, record the outcome.
    /// Returns when the next refresh is due, or `Err` (already logged) on failure.
    async fn fetch_locked(&self, state: &mut FetchState) -> Result<Instant, ()> {
        let span = crate::telemetry::otel::Span::jwks_fetch(&self.issuer);
        let result = self.fetch(state).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.outcome(),
        };
        span.fetched(outcome);
        self.fetches.with_label_values(&[self.issuer.as_str(), outcome]).inc();
        match result {
            Ok(fetched) => {
                if state.installed_doc.as_ref() != Some(&fetched.doc) {
                    self.installs.fetch_add(1, Ordering::Relaxed);
                    // Only kids and algorithms are logged (KeySet's Debug), never key material.
                    tracing::info!(
                        issuer = %self.issuer, installs = self.installs(), keys = ?fetched.keys,
                        "installed new JWKS key set"
                    );
                    self.current.store(Some(Arc::new(fetched.keys)));
                    self.generation.store(next_generation(), Ordering::Release);
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
        // A configured metadata URL (a tenant template has no derivable one) is the only one.
        if let Some(url) = &self.discovery_url {
            return self.fetch_metadata(url).await;
        }
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
        if !discovered_url_allowed(url, &parsed) {
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

/// The refresh already scheduled for after `now` (by a fetch that succeeded meanwhile), if any:
/// a refresh due at `now` or before is due.
fn scheduled_later(next_refresh: Option<Instant>, now: Instant) -> Option<Instant> {
    next_refresh.filter(|&due| due > now)
}

/// The delay before the retry after this one: doubled, at most `max`.
fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    (backoff * 2).min(max)
}

/// OpenID Connect Discovery 1.0 §3: jwks_uri MUST use the https scheme; so must the
/// introspection endpoint found in metadata, since the client's credentials travel to it.
/// Metadata that was itself fetched over plain http (a local development issuer) may point to
/// http.
pub(super) fn discovered_url_allowed(metadata_url: &str, discovered: &Url) -> bool {
    match discovered.scheme() {
        "https" => true,
        "http" => !metadata_url.starts_with("https://"),
        _ => false,
    }
}

/// `now + d`, saturating far in the future instead of panicking on overflow (`d` may come from
/// a `max-age` with no upper bound when `max_refresh` is configured huge).
fn after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
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
mod tests;

//! Opaque tokens: OAuth 2.0 Token Introspection (RFC 7662), one `Introspector` per issuer that
//! has an `introspection` section.
//!
//! `Introspector::introspect` is the whole story: look the token's SHA-256 up in a bounded cache
//! of earlier answers; on a miss make exactly one call for all concurrent requests carrying the
//! token (moka's entry API coalesces them), unless the circuit breaker is open. Only an HTTP 200
//! JSON answer with `"active": true` admits a token, and then only after the same claim checks as
//! a local JWT (`exp`, `nbf`, `iss`, claim shapes; `aud`, when the answer has one, is checked by
//! route policy against the same audiences as a JWT's).
//!
//! Answers are cached (`cache`): active ones until the token's `exp` or `cache_max_ttl`,
//! whichever comes first; inactive (or rejected) ones for `negative_ttl`; the cache is bounded
//! in entries and in bytes. Claim times and cache lifetimes are read from the injected wall
//! clock (`Clock`, the system clock outside tests). Failures (endpoint unreachable, slow, not 200, not JSON) are never
//! cached: they become `AuthError::Unavailable` (503, never 401, so a client keeps a good token)
//! and count towards the breaker (`breaker`). A miss beyond the call limits (`limits`) is 503 at
//! once and counts towards nothing. The token is never logged, only the first bytes of its digest.

mod breaker;
mod cache;
mod limits;
mod tokeninfo;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use moka::future::Cache;
use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use self::breaker::Breaker;
use self::cache::Cached;
use self::limits::{Limit, Limits};
use super::jwks::{error_chain, metadata_urls};
use super::{jws, jwt, AuthError, KeptClaims, Principal, TokenSource};
use crate::clock::Clock;
use crate::config::{ClientAuthMethod, Introspection, IntrospectionProtocol, Issuer};
use crate::metrics::{Metrics, CACHE_INTROSPECTION};
use crate::telemetry::otel;

const INACTIVE: AuthError = AuthError::InvalidToken("token is not active");
const NOT_ACCESS_TOKEN: AuthError = AuthError::InvalidToken("token is not an access token");
const WRONG_ISSUER: AuthError = AuthError::InvalidToken("wrong issuer");
const MALFORMED_CLAIM: AuthError = AuthError::InvalidToken("malformed claim");
const FAILED: AuthError = AuthError::Unavailable("token introspection failed");
const CIRCUIT_OPEN: AuthError = AuthError::Unavailable("token introspection is temporarily suspended");
const BUSY: AuthError = AuthError::Unavailable("introspection is busy");

/// SHA-256 of the token: the cache key. Bounded size, and the token itself is never stored.
type Key = crate::secret::Digest;

/// A cached answer about one token.
#[derive(Clone, Debug)]
enum Verdict {
    /// `active: true` and every claim check passed.
    Active(Arc<Principal>),
    /// `active: false`, or active but refused by a claim check (the reason).
    Inactive(AuthError),
}

impl Verdict {
    /// The `outcome` label of the call that gave this answer (also a cached answer's, on its span).
    fn counted_as(&self) -> &'static str {
        match self {
            Verdict::Active(_) => "active",
            Verdict::Inactive(INACTIVE) => "inactive",
            Verdict::Inactive(_) => "rejected",
        }
    }
}

/// Why one introspection call failed. Each maps to one metrics `outcome`; none is cached.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Network(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0} (expected 200)")]
    Status(StatusCode),
    #[error("{0}")]
    Invalid(String),
    #[error("introspection endpoint not found: {0}")]
    Discovery(String),
}

impl CallError {
    fn outcome(&self) -> &'static str {
        match self {
            CallError::Network(_) | CallError::Discovery(_) => "error",
            CallError::Timeout(_) => "timeout",
            CallError::Status(_) => "http_error",
            CallError::Invalid(_) => "invalid",
        }
    }
}

/// Introspection for one issuer: endpoint, client credentials, answer cache, circuit breaker.
pub struct Introspector {
    issuer: Issuer,
    index: usize,
    id: Arc<str>,
    settings: Introspection,
    /// `Authorization: Basic …` for client_secret_basic, marked sensitive.
    basic_auth: Option<HeaderValue>,
    http: reqwest::Client,
    max_response_bytes: usize,
    /// The endpoint learned through discovery (only when none is configured).
    discovered: OnceCell<String>,
    /// What cached principals keep of the answer's members.
    kept_claims: KeptClaims,
    cache: Cache<Key, Cached>,
    /// The wall clock for claim times and answer lifetimes.
    clock: Clock,
    breaker: Breaker,
    limits: Limits,
    /// Calls refused by `limits`, label handles resolved once: `(rate, concurrency)`.
    limited: (IntCounter, IntCounter),
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Cache lookups, label handles resolved once: `(hit, miss)`.
    lookups: (IntCounter, IntCounter),
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer.issuer)
            .field("endpoint", &self.settings.endpoint)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// The introspector of issuer number `index`, or `None` when it has no introspection section.
    /// `http` is the app's client (redirects disabled); `max_response_bytes` caps answers.
    pub fn new(
        issuer: &Issuer,
        index: usize,
        id: Arc<str>,
        http: reqwest::Client,
        max_response_bytes: usize,
        metrics: &Metrics,
        kept_claims: KeptClaims,
    ) -> Option<Introspector> {
        let settings = issuer.introspection.clone()?;
        // Tokeninfo takes no client credentials.
        let basic_auth = (settings.auth_method == ClientAuthMethod::ClientSecretBasic
            && settings.protocol == IntrospectionProtocol::Rfc7662)
            .then(|| basic_auth(settings.client_id.as_bytes(), &settings.client_secret.0));
        let cache = cache::answer_cache(&settings);
        let limited =
            |limit: Limit| metrics.introspection_limited.with_label_values(&[issuer.issuer.as_str(), limit.label()]);
        Some(Introspector {
            issuer: issuer.clone(),
            index,
            id,
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_open_for),
            limits: Limits::new(settings.max_concurrent, settings.rate_limit, settings.rate_burst),
            limited: (limited(Limit::Rate), limited(Limit::Concurrency)),
            settings,
            basic_auth,
            http,
            max_response_bytes,
            discovered: OnceCell::new(),
            kept_claims,
            cache,
            clock: Clock::system(),
            requests: metrics.introspection_requests.clone(),
            duration: metrics.introspection_duration.clone(),
            lookups: (
                metrics.token_cache_lookups.with_label_values(&[CACHE_INTROSPECTION, "hit"]),
                metrics.token_cache_lookups.with_label_values(&[CACHE_INTROSPECTION, "miss"]),
            ),
        })
    }

    /// Judge claim times and answer lifetimes by `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Introspector {
        self.clock = clock;
        self
    }

    /// The principal behind `token`, from the cache or from one (coalesced) introspection call.
    /// Shared with the cache entry: a hit copies nothing.
    pub async fn introspect(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let span = otel::Span::introspection(&self.id);
        let key = Key::of(token);
        let mut result = span.scope(self.cache.entry(key).or_try_insert_with(self.call(token, &key))).await;
        // Past its end on the gateway's clock though moka's monotonic clock has not dropped it
        // yet (the wall clock stepped forward, or a test moved it): drop it and ask once more.
        // The second answer is served as it comes: it was judged just now.
        if result.as_ref().is_ok_and(|entry| !entry.is_fresh() && !entry.value().is_live(self.clock.now())) {
            self.cache.invalidate(&key).await;
            result = span.scope(self.cache.entry(key).or_try_insert_with(self.call(token, &key))).await;
        }
        // Coalesced waiters read the value the one caller fetched: for them it is a hit.
        let fresh = result.as_ref().map_or(true, |entry| entry.is_fresh());
        if fresh { &self.lookups.1 } else { &self.lookups.0 }.inc();
        let verdict = result.map_err(|e| *e).map(|entry| entry.into_value().verdict);
        span.looked_up(fresh, || verdict.as_ref().map_or("error", Verdict::counted_as));
        match verdict? {
            Verdict::Active(principal) => Ok(principal),
            Verdict::Inactive(e) => Err(e),
        }
    }

    /// One introspection call (a cache miss), guarded by the breaker and the limits, with
    /// metrics and logs.
    async fn call(&self, token: &str, key: &Key) -> Result<Cached, AuthError> {
        let Some(permit) = self.breaker.admit() else {
            self.count("circuit_open");
            return Err(CIRCUIT_OPEN);
        };
        // Refused here, no call is made: the breaker permit is dropped unused (a trial one
        // frees the trial for the next caller) and nothing counts as the endpoint's failure.
        let _slot = match self.limits.admit().await {
            Ok(slot) => slot,
            Err(limit) => {
                match limit {
                    Limit::Rate => &self.limited.0,
                    Limit::Concurrency => &self.limited.1,
                }
                .inc();
                tracing::debug!(issuer = %self.issuer.issuer, limit = limit.label(), "introspection call refused by its limit");
                otel::outcome("busy");
                return Err(BUSY);
            }
        };
        let started = Instant::now();
        let result = self.request(token).await;
        self.duration.with_label_values(&[self.issuer.issuer.as_str()]).observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => {
                permit.success();
                let now = self.clock.now();
                let verdict = self.verdict(answer, UNIX_EPOCH + now);
                self.count(verdict.counted_as());
                Ok(Cached::new(verdict, now, self.settings.cache_max_ttl, self.settings.negative_ttl))
            }
            Err(e) => {
                let outcome = e.outcome();
                let opened = permit.failure();
                self.count(outcome);
                tracing::warn!(
                    issuer = %self.issuer.issuer, token_sha256 = %key.short_hex(), outcome, error = %e,
                    "token introspection failed"
                );
                if opened {
                    tracing::error!(
                        issuer = %self.issuer.issuer, open_for = ?self.settings.breaker_open_for,
                        "introspection circuit breaker opened: failing fast"
                    );
                }
                Err(FAILED)
            }
        }
    }

    /// Count a call's outcome, and record it on its `introspection` span.
    fn count(&self, outcome: &'static str) {
        otel::outcome(outcome);
        self.requests.with_label_values(&[self.issuer.issuer.as_str(), outcome]).inc();
    }

    /// RFC 7662 §2.1: POST with form-encoded `token` (+ `token_type_hint`); the endpoint MUST
    /// require authorization, so every call carries the gateway's client credentials.
    /// Returns the answer's members when `active` is `true`, `None` when it is `false`.
    async fn request(&self, token: &str) -> Result<Option<Map<String, Value>>, CallError> {
        let endpoint = self.endpoint().await?;
        let tokeninfo = self.settings.protocol == IntrospectionProtocol::GoogleTokeninfo;
        let body = if tokeninfo { String::new() } else { self.form_body(token) };
        let mut request = self
            .http
            .post(endpoint)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .timeout(self.settings.timeout)
            .body(body);
        if let Some(value) = &self.basic_auth {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if tokeninfo {
            request = request.header(AUTHORIZATION, tokeninfo::authorization(token)?);
        }
        let response = request.send().await.map_err(|e| self.classify(e))?;
        if tokeninfo {
            let status = response.status();
            return tokeninfo::answer(status, &self.read_capped(response).await?);
        }
        // RFC 7662 §2.2: the answer is a 200 JSON object; anything else (a 401 means the endpoint
        // refused *our* credentials) says nothing about the token.
        if response.status() != StatusCode::OK {
            return Err(CallError::Status(response.status()));
        }
        let body = self.read_capped(response).await?;
        parse_answer(&body)
    }

    /// `token=…&token_type_hint=access_token`, plus the client credentials for client_secret_post
    /// (RFC 6749 §2.3.1 allows them in the body).
    fn form_body(&self, token: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token).append_pair("token_type_hint", "access_token");
        if self.settings.auth_method == ClientAuthMethod::ClientSecretPost {
            form.append_pair("client_id", &self.settings.client_id)
                .append_pair("client_secret", &String::from_utf8_lossy(&self.settings.client_secret.0));
        }
        form.finish()
    }

    fn classify(&self, e: reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout(self.settings.timeout)
        } else {
            CallError::Network(error_chain(&e))
        }
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
        let limit = self.max_response_bytes;
        let too_large = || CallError::Invalid(format!("answer larger than the {limit}-byte limit"));
        if response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The configured endpoint, or `introspection_endpoint` from the issuer's metadata (learned
    /// once; a failed discovery is retried by the next call).
    async fn endpoint(&self) -> Result<&str, CallError> {
        if let Some(endpoint) = &self.settings.endpoint {
            return Ok(endpoint);
        }
        self.discovered.get_or_try_init(|| self.discover()).await.map(String::as_str)
    }

    /// OpenID Connect Discovery metadata first, then RFC 8414 (which defines
    /// `introspection_endpoint`, §2).
    async fn discover(&self) -> Result<String, CallError> {
        let urls = match &self.issuer.discovery_url {
            Some(url) => vec![url.clone()],
            None => {
                let (oidc, oauth) = metadata_urls(&self.issuer.issuer).map_err(CallError::Discovery)?;
                vec![oidc, oauth]
            }
        };
        let mut reasons = Vec::new();
        for url in urls {
            match self.endpoint_from_metadata(&url).await {
                Ok(endpoint) => {
                    tracing::info!(issuer = %self.issuer.issuer, %endpoint, "discovered the introspection endpoint");
                    return Ok(endpoint);
                }
                Err(CallError::Timeout(t)) => return Err(CallError::Timeout(t)),
                Err(e) => reasons.push(format!("{url}: {e}")),
            }
        }
        Err(CallError::Discovery(reasons.join("; ")))
    }

    async fn endpoint_from_metadata(&self, url: &str) -> Result<String, CallError> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            introspection_endpoint: Option<String>,
        }
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if response.status() != StatusCode::OK {
            return Err(CallError::Status(response.status()));
        }
        let body = self.read_capped(response).await?;
        let meta: Metadata =
            serde_json::from_slice(&body).map_err(|e| CallError::Invalid(format!("not a metadata document: {e}")))?;
        // RFC 8414 §3.3: the metadata's `issuer` MUST be identical to the issuer identifier it
        // was requested for, or the metadata MUST NOT be used.
        if meta.issuer != self.issuer.issuer {
            return Err(CallError::Invalid(format!("metadata names issuer {:?}", meta.issuer)));
        }
        let endpoint = meta.introspection_endpoint.ok_or(CallError::Invalid("no introspection_endpoint".into()))?;
        let parsed = Url::parse(&endpoint).map_err(|e| CallError::Invalid(format!("{endpoint:?}: {e}")))?;
        if !super::jwks::discovered_url_allowed(url, &parsed) {
            return Err(CallError::Invalid(format!("introspection_endpoint {endpoint:?} is not https")));
        }
        Ok(endpoint)
    }

    /// What an answer means for the token: the same claim checks as a local JWT.
    fn verdict(&self, answer: Option<Map<String, Value>>, now: SystemTime) -> Verdict {
        let Some(mut claims) = answer else {
            return Verdict::Inactive(INACTIVE);
        };
        if let Err(e) = check_claims(&claims, &self.issuer, unix_seconds(now)) {
            return Verdict::Inactive(e);
        }
        // `active` describes the answer, not the token: it is not a claim.
        claims.remove("active");
        let mut principal = Principal::from_claims(self.index, self.id.clone(), claims, &self.issuer.sources);
        principal.source = match self.settings.protocol {
            IntrospectionProtocol::Rfc7662 => TokenSource::Introspection,
            IntrospectionProtocol::GoogleTokeninfo => TokenSource::Tokeninfo,
        };
        principal.retain_claims(&self.kept_claims);
        Verdict::Active(Arc::new(principal))
    }

    /// The body of a 200 answer, judged as `call` judges it but with no network, cache or
    /// breaker: an entry point for the fuzzers and property tests only.
    #[doc(hidden)]
    pub fn judge_answer(&self, body: &[u8], now: SystemTime) -> Result<Arc<Principal>, AuthError> {
        match parse_answer(body).map(|answer| self.verdict(answer, now)) {
            Ok(Verdict::Active(principal)) => Ok(principal),
            Ok(Verdict::Inactive(e)) => Err(e),
            Err(_) => Err(FAILED),
        }
    }
}

/// RFC 7662 §2.2: a JSON object whose `active` member is REQUIRED and boolean, and an inactive
/// token MUST be answered with `active: false`. Only the boolean `true` admits a token; an
/// answer without a boolean `active` is a broken endpoint (503), not an inactive token (401).
/// Duplicate member names are refused as in a JWT (`{"active":false,"active":true}` has no one
/// meaning: serde_json would take the last, another reader the first).
fn parse_answer(body: &[u8]) -> Result<Option<Map<String, Value>>, CallError> {
    let answer = super::jws::strict_object(body)
        .ok_or_else(|| CallError::Invalid("answer is not a JSON object with unique member names".into()))?;
    match answer.get("active") {
        Some(Value::Bool(true)) => Ok(Some(answer)),
        Some(Value::Bool(false)) => Ok(None),
        Some(_) => Err(CallError::Invalid("`active` is not a boolean".into())),
        None => Err(CallError::Invalid("answer has no `active` member".into())),
    }
}

/// Checks on the members of an active answer (RFC 7662 §2.2 names them after the JWT claims).
/// Unlike a JWT, `exp` and `iss` are optional here; when present they bind as for a JWT.
fn check_claims(claims: &Map<String, Value>, issuer: &Issuer, now: u64) -> Result<(), AuthError> {
    jwt::check_time_window(claims, issuer, now, false)?;
    // An answer vouching for another issuer's token is not this issuer's to give.
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if super::iss::names(issuer, iss, super::iss::tenant_of(claims)) => {}
        Some(Value::String(_)) => return Err(WRONG_ISSUER),
        Some(_) => return Err(MALFORMED_CLAIM),
    }
    // RFC 7662 §2.2 `token_type` (RFC 6749 §5.1): a bearer access token only; a refresh token
    // (or anything else) presented as a bearer token is refused.
    if let Some(token_type) = claims.get("token_type") {
        let token_type = token_type.as_str().ok_or(MALFORMED_CLAIM)?;
        if !is_access_token_type(token_type) {
            return Err(NOT_ACCESS_TOKEN);
        }
    }
    jwt::check_claim_shapes(claims, issuer)?;
    jwt::check_required_claims(claims, issuer)
}

/// `Bearer` (RFC 6750 §6.1.1, case-insensitive), `access_token`, or the RFC 8693 §3 URN.
fn is_access_token_type(token_type: &str) -> bool {
    ["bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"]
        .iter()
        .any(|t| token_type.eq_ignore_ascii_case(t))
}

/// The (unverified) `iss` of a JWS-shaped token, to pick the issuer that handles it; `None` for
/// an opaque token or a JWS without a string `iss`.
pub fn jws_issuer(token: &str) -> Option<String> {
    jws_issuer_and_tenant(token).map(|(iss, _)| iss)
}

/// `jws_issuer`, and the (unverified) `tid` that a tenant-templated issuer needs to be found.
pub fn jws_issuer_and_tenant(token: &str) -> Option<(String, Option<String>)> {
    #[derive(Deserialize)]
    struct Claims {
        iss: Option<Value>,
        tid: Option<Value>,
    }
    if !jws::looks_like_jws(token) {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let claims = serde_json::from_slice::<Claims>(&payload).ok()?;
    let tid = match claims.tid {
        Some(Value::String(tid)) => Some(tid),
        _ => None,
    };
    match claims.iss? {
        Value::String(iss) => Some((iss, tid)),
        _ => None,
    }
}

/// RFC 6749 §2.3.1: client id and secret are each form-urlencoded (Appendix B), then joined by
/// `:` and sent as HTTP Basic credentials (RFC 7617).
fn basic_auth(client_id: &[u8], secret: &[u8]) -> HeaderValue {
    let encode = |b: &[u8]| form_urlencoded::byte_serialize(b).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(secret));
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;

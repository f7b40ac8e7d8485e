//! The request story, top to bottom: route → strip headers → extract token → authenticate →
//! authorize (these three in `crate::decide`, shared with the decision service) → set identity →
//! forward → record. Any refusal becomes a response in
//! `crate::respond`; nothing is forwarded unless every step said yes.

pub mod connect;
pub mod forward;
pub mod forwarded;
pub mod headers;
pub mod pool;
pub mod route;
pub mod upgrade;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;

use crate::auth::token_cache::LastToken;
use crate::auth::{AuthError, Authenticator, Principal};
use crate::canon::{self, PathOptions};
use crate::clock::Clock;
use crate::config::{Config, IdentityValue};
use crate::decide::{self, Credentials, Refusal};
use crate::metrics::{Metrics, RouteMetrics, NO_ROUTE};
use crate::respond::{respond, Denial, UpstreamError};
use crate::server::{Hold, Peer};
use crate::telemetry::access::{self, Entry, Logged, X_REQUEST_ID};
use crate::telemetry::otel::RequestSpan;
use crate::tls::ClientCert;
use forward::{Forwarder, UpstreamBody};
use headers::{IdentityNames, IdentityValues, Untrusted};
use pool::PooledBody;
use route::{CompiledRoute, RouteTable};

/// Response body: the upstream's stream, or a small body of the gateway's own.
pub type Body = Either<PooledBody, Full<Bytes>>;

/// Form bodies read for an `access_token` are capped (RFC 6750 §2.2 tokens are small).
const MAX_FORM_BODY: usize = 64 * 1024;

/// The configuration being served: replaced whole by a reload (`crate::app::Running::reload`).
/// A request loads it once and ends on the snapshot it started with.
pub type Live = ArcSwap<State>;

/// Everything a request needs: one configuration snapshot, built at start-up and at each
/// reload, never changed in place.
pub struct State {
    /// Counts snapshots (0 at start-up): per-connection memories are only valid under the one
    /// they were made with.
    pub epoch: u64,
    pub config: Config,
    pub routes: RouteTable,
    pub auth: Authenticator,
    /// Every configured upstream: the default one (keyed `None`) and the named ones, each with
    /// its settings in `config`.
    pub upstreams: Vec<(Option<String>, Upstream)>,
    /// Each route's upstream, in route-table order; `None` when only the decision service runs.
    pub route_upstreams: Vec<Option<Upstream>>,
    pub identity_names: IdentityNames,
    pub path_options: PathOptions,
    pub metrics: Metrics,
    /// Request metrics per route, in route-table order, label handles resolved at start-up.
    pub route_metrics: Vec<RouteMetrics>,
    /// Request metrics of requests that matched no route.
    pub no_route_metrics: RouteMetrics,
    /// `realm` pre-quoted for the challenge.
    pub realm: String,
    /// RFC 9728 metadata document, pre-rendered, with the path it is served at.
    pub resource_metadata: Option<(String, Bytes)>,
}

/// An upstream and the name its metrics and access-log lines give it.
#[derive(Clone)]
pub struct Upstream {
    pub name: Arc<str>,
    pub forwarder: Arc<Forwarder>,
}

/// The per-connection service: cheap to clone (two reference counts), one per accepted
/// connection.
#[derive(Clone)]
pub struct Gateway {
    live: Arc<Live>,
    connection: Arc<Connection>,
}

/// What one client connection keeps between its requests: clients reuse one token for many
/// requests. HTTP/2 streams share it concurrently, so each field is an atomic swap or immutable.
struct Connection {
    client: IpAddr,
    /// The client's address as the `X-Forwarded-For` value, built once per connection.
    client_ip: HeaderValue,
    /// `X-Forwarded-Proto`: `https` on the TLS listener, `http` on a cleartext one.
    proto: &'static HeaderValue,
    /// The verified client certificate as identity-header values, rendered once; its
    /// `x5t#S256` thumbprint is also what certificate-bound tokens (RFC 8705) will be checked
    /// against.
    client_cert: Option<ClientCertValues>,
    memo: ArcSwap<Memo>,
    /// Kept by the tunnel of an upgrade (`upgrade::spawn`); `None` outside a listener.
    hold: Option<Hold>,
}

/// `client_cert_subject` and `client_cert_sha256` of the connection's client certificate.
struct ClientCertValues {
    /// `None` when the subject cannot be a header value.
    subject: Option<HeaderValue>,
    sha256: HeaderValue,
}

impl ClientCertValues {
    fn new(cert: &ClientCert) -> ClientCertValues {
        ClientCertValues {
            subject: HeaderValue::from_bytes(cert.subject.as_bytes()).ok().filter(|_| !cert.subject.is_empty()),
            sha256: HeaderValue::from_str(&cert.x5t_s256).expect("base64url is a valid header value"),
        }
    }

    /// Set every identity header whose source is the client certificate.
    fn apply(&self, headers: &mut HeaderMap, identity: &crate::config::Identity) {
        for h in identity.headers.iter().filter(|h| h.value.is_client_cert()) {
            let value = match h.value {
                IdentityValue::ClientCertSubject => self.subject.clone(),
                _ => Some(self.sha256.clone()),
            };
            if let Some(v) = value {
                headers.insert(h.name.clone(), v);
            }
        }
    }
}

/// What a connection learnt under one configuration snapshot; a request under a newer one
/// starts a new memo (a reload may change trusted proxies, issuers, kept claims or identity
/// headers, and nothing remembered under the old rules may answer under the new).
struct Memo {
    epoch: u64,
    /// The peer is in `trusted_proxies`: its forwarding headers are kept.
    trusted_peer: bool,
    /// The last JWT this connection presented, admitted again without a cache lookup.
    last_token: LastToken,
    /// The identity headers rendered for the last principal: the same (cached) principal again
    /// is forwarded with them, without rendering or copying a value.
    identity: ArcSwapOption<RenderedIdentity>,
}

impl Memo {
    fn new(state: &State, client: IpAddr) -> Memo {
        Memo {
            epoch: state.epoch,
            trusted_peer: forwarded::is_trusted(client, &state.config.trusted_proxies),
            last_token: LastToken::default(),
            identity: ArcSwapOption::empty(),
        }
    }
}

struct RenderedIdentity {
    /// Held, so the pointer comparison cannot match a new principal at a reused address.
    principal: Arc<Principal>,
    values: Result<IdentityValues, AuthError>,
}

impl Gateway {
    pub fn new(live: Arc<Live>, peer: Peer, hold: Option<Hold>) -> Gateway {
        let remote = peer.remote;
        let client_ip = HeaderValue::from_str(&remote.ip().to_string()).expect("an IP address is a valid header value");
        let memo = ArcSwap::from_pointee(Memo::new(&live.load(), remote.ip()));
        let proto = if peer.tls.is_some() { &PROTO_HTTPS } else { &PROTO_HTTP };
        let client_cert = peer.tls.as_ref().and_then(|t| t.client_cert.as_ref()).map(ClientCertValues::new);
        let connection = Connection { client: remote.ip(), client_ip, proto, client_cert, memo, hold };
        Gateway { live, connection: Arc::new(connection) }
    }

    /// The connection's memo for `state`: a fresh one when the configuration changed since.
    fn memo(&self, state: &State) -> Arc<Memo> {
        let memo = self.connection.memo.load_full();
        if memo.epoch == state.epoch {
            return memo;
        }
        let fresh = Arc::new(Memo::new(state, self.connection.client));
        self.connection.memo.store(fresh.clone());
        fresh
    }

    /// The connection's hyper service. Its future is not boxed: on HTTP/1 hyper keeps one
    /// allocation per connection for the request in flight, and a boxed future would be one
    /// more allocation per request, of more than a kilobyte, past malloc's per-thread cache.
    pub fn into_service(
        self,
    ) -> impl Service<Request<Incoming>, Response = Response<Logged<Body>>, Error = Infallible, Future: Send> + Send
    {
        hyper::service::service_fn(move |req| {
            let conn = self.clone();
            async move { Ok(handle(&conn, req).await) }
        })
    }
}

/// One request's view: the snapshot it runs under and the connection's memo for it.
struct Scope<'a> {
    state: &'a State,
    conn: &'a Gateway,
    memo: &'a Memo,
}

impl Scope<'_> {
    /// Set `principal`'s identity headers, rendered for this connection's previous request
    /// when that was the same principal (an admission from the token caches shares one).
    fn set_identity(&self, headers: &mut HeaderMap, principal: &Arc<Principal>) -> Result<(), AuthError> {
        let last = self.memo.identity.load();
        if let Some(rendered) = last.as_deref().filter(|r| Arc::ptr_eq(&r.principal, principal)) {
            return rendered.values.as_ref().map(|values| values.apply(headers)).map_err(|e| *e);
        }
        let values = IdentityValues::render(principal, &self.state.config.identity);
        if let Ok(values) = &values {
            values.apply(headers);
        }
        let error = values.as_ref().err().copied();
        self.memo.identity.store(Some(Arc::new(RenderedIdentity { principal: principal.clone(), values })));
        error.map_or(Ok(()), Err)
    }
}

/// `X-Forwarded-Proto` of a cleartext listener.
static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
/// `X-Forwarded-Proto` of the TLS listener.
static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");

/// What the pipeline learnt on the way, for the access log.
#[derive(Default)]
struct Trail {
    principal: Option<Arc<Principal>>,
    /// Time to the upstream's response head (or its failure), when the request was sent.
    upstream: Option<Duration>,
    /// The upstream it was sent to.
    upstream_name: Option<Arc<str>>,
}

async fn handle(conn: &Gateway, mut req: Request<Incoming>) -> Response<Logged<Body>> {
    let state = conn.live.load_full();
    let state = &*state;
    if let Some((path, body)) = &state.resource_metadata {
        if req.uri().path() == path && matches!(*req.method(), Method::GET | Method::HEAD) {
            return metadata_response(body.clone()).map(|b| Logged::new(b, None));
        }
    }
    let started = Instant::now();
    let grpc = crate::respond::is_grpc(req.version(), req.headers());
    let memo = conn.memo(state);
    let scope = Scope { state, conn, memo: &memo };
    let request_id = access::request_id(req.headers(), memo.trusted_peer);
    let mut span = RequestSpan::start(req.headers(), req.method(), &request_id);
    let mut entry = Entry::start(&state.config.access_log, "proxy", &request_id, conn.connection.client, started);
    if let Some(e) = entry.as_deref_mut() {
        let authority = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let host = req.headers().get(HOST).or(authority.as_ref());
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        e.request(req.method(), host, target, req.headers());
    }
    // The upstream sees the same id as the client and the log.
    req.headers_mut().insert(X_REQUEST_ID.clone(), request_id.clone());
    let mut trail = Trail::default();
    let (route, decision, mut response) = match span.scope(decide_and_forward(&scope, req, &mut trail)).await {
        Ok((route, response)) => (Some(route), "allowed", response),
        Err((route, denial)) => {
            let challenge = decide::challenge(state, route);
            let id = route.map_or(NO_ROUTE, |r| r.route.id.as_str());
            tracing::debug!(route = id, reason = denial.reason(), "request denied");
            if let Some(e) = entry.as_deref_mut() {
                e.refused(&denial);
            }
            span.refused(&denial);
            let mut response = respond(denial, &challenge);
            if grpc {
                response = crate::respond::grpc(response, denial);
            }
            (route, denial.reason(), response.map(Either::Right))
        }
    };
    response.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    let metrics = route.map_or(&state.no_route_metrics, |r| &state.route_metrics[r.index]);
    metrics.record(decision, response.status(), started.elapsed(), trail.upstream);
    span.finish("proxy", route.map(|r| &r.id), response.status());
    if let Some(e) = entry.as_deref_mut() {
        e.route = route.map(|r| r.id.clone());
        e.status = response.status().as_u16();
        e.principal = trail.principal;
        if let Some(elapsed) = trail.upstream {
            e.upstream = trail.upstream_name.clone();
            e.upstream_duration = Some(elapsed);
            e.upstream_status = (decision == "allowed").then_some(e.status);
        }
    }
    response.map(|b| Logged::new(b, entry))
}

async fn decide_and_forward<'s>(
    scope: &Scope<'s>,
    req: Request<Incoming>,
    trail: &mut Trail,
) -> Result<(&'s CompiledRoute, Response<Body>), Refusal<'s>> {
    let Scope { state, conn, memo } = *scope;
    let (mut parts, body) = req.into_parts();
    let bad = |d: &'static str| (None, Denial::BadRequest(d));
    // The route is chosen from the canonical path and host, and the upstream gets those same
    // bytes: what it serves is what was authorized.
    let (routes, host, uri) = {
        let host = canon::requested_host(parts.version, &parts.headers, &parts.uri).map_err(bad)?;
        let path = canon::path(parts.uri.path(), &state.path_options).map_err(bad)?;
        let routes = decide::route(state, host.as_ref(), &path, &parts.method)?;
        let host = forwarded_host(host, &parts.uri, &parts.headers);
        (routes, host, path.is_rewritten().then(|| rewritten_uri(path.forwarded(), parts.uri.query())))
    };
    let route = routes.primary();
    let deny = |d: Denial| (Some(route), d);
    if let Some(uri) = uri {
        parts.uri = uri.map_err(|_| deny(Denial::BadRequest("path cannot be rewritten")))?;
    }

    // An upgrade the gateway would tunnel keeps `Upgrade` and `Connection: upgrade`, nothing
    // else hop-by-hop; every other rule below applies to it as to any request.
    let body_empty = http_body::Body::is_end_stream(&body);
    let asked = upgrade::requested(parts.version, &parts.method, &parts.headers, body_empty);
    match asked {
        Some(_) => headers::strip_hop_by_hop_keeping_upgrade(&mut parts.headers),
        None => headers::strip_hop_by_hop(&mut parts.headers),
    }
    let untrusted = Untrusted { forwarding: !memo.trusted_peer, method_override: state.routes.matches_methods };
    headers::strip_client(&mut parts.headers, &state.identity_names, untrusted);
    // From the connection, not the token: on every route, after the client's copies are gone.
    if let Some(cert) = &conn.connection.client_cert {
        cert.apply(&mut parts.headers, &state.config.identity);
    }

    let mut body: UpstreamBody = Either::Left(body);
    // A form body is read (under its cap) only when some route will look for a token in it.
    let first_required = routes.required().next().map(|(r, _)| r);
    let form = match body {
        Either::Left(incoming)
            if first_required.is_some() && state.config.tokens.allow_form_body && is_form(&parts.headers) =>
        {
            let deny = |d: Denial| (first_required, d);
            let read = Limited::new(incoming, MAX_FORM_BODY).collect();
            let bytes = tokio::time::timeout(state.config.server.body_read_timeout, read)
                .await
                .map_err(|_| deny(Denial::BodyTimeout))?
                .map_err(|_| deny(Denial::BadRequest("form body too large or unreadable")))?
                .to_bytes();
            body = Either::Right(Full::new(bytes.clone()));
            Some(bytes)
        }
        _ => None,
    };
    let credentials = Credentials { headers: &parts.headers, query: parts.uri.query(), form: form.as_deref() };
    // Every route some reading of the path chooses must admit the request; usually one.
    if let Some(principal) = decide::admit(state, &routes, &credentials, &memo.last_token).await? {
        trail.principal = Some(principal.clone());
        scope.set_identity(&mut parts.headers, &principal).map_err(|e| (first_required, Denial::Auth(e)))?;
        if !state.config.identity.forward_authorization {
            // The upstream sees no token in any place the gateway accepts one.
            strip_form_token(&mut parts.headers, &mut body, form.as_deref());
        }
    }
    if !state.config.identity.forward_authorization {
        strip_query_token(&mut parts.uri).map_err(|_| deny(Denial::BadRequest("query cannot be rewritten")))?;
    }

    forwarded::add(&mut parts.headers, &conn.connection.client_ip, conn.connection.proto, host.as_ref());
    if let Some(v) = host {
        // The canonical host, whatever the client spelled (HTTP/2 carries it in :authority).
        if parts.headers.get(HOST) != Some(&v) {
            parts.headers.insert(HOST, v);
        }
    }
    // Without an upstream the proxy listener does not run; were it reached anyway, nothing is
    // forwarded.
    let upstream = state.route_upstreams[route.index].as_ref().ok_or(deny(Denial::Upstream(UpstreamError::Connect)))?;
    trail.upstream_name = Some(upstream.name.clone());
    // The client's end of a tunnel, taken before the request moves upstream (admitted only).
    let down = asked.as_ref().and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let sent = Instant::now();
    let response = upstream.forwarder.send(Request::from_parts(parts, body)).await;
    trail.upstream = Some(sent.elapsed());
    let response = response.map_err(|e| deny(Denial::Upstream(e)))?;
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        // Only to a protocol the client asked for; anything else is the upstream's fault, and
        // its connection (never pooled after a 101) is closed with the answer.
        let accepted = asked.as_ref().is_some_and(|asked| upgrade::accepted(asked, &parts.headers));
        let up = parts.extensions.remove::<OnUpgrade>();
        let (true, Some(down), Some(up)) = (accepted, down, up) else { return Err(deny(Denial::UpgradeMismatch)) };
        headers::strip_hop_by_hop_keeping_upgrade(&mut parts.headers);
        let idle = state.config.server.tunnel_idle_timeout;
        upgrade::spawn(down, up, idle, conn.connection.hold.clone(), &state.metrics);
    } else {
        headers::strip_hop_by_hop(&mut parts.headers);
    }
    Ok((route, Response::from_parts(parts, Either::Left(body))))
}

/// The `Host` the upstream gets: the canonical host. When that is the client's own `Host` value
/// as sent, the value is shared rather than copied (one allocation fewer per request).
fn forwarded_host(host: Option<canon::CanonHost<'_>>, uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match host {
        Some(h) if !h.is_rewritten() && uri.authority().is_none() => headers.get(HOST).cloned(),
        Some(h) => HeaderValue::from_str(h.as_str()).ok(),
        None => None,
    }
}

/// Origin-form target with the canonical path and the original query.
fn rewritten_uri(path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Ok(Uri::from(PathAndQuery::try_from(target)?))
}

/// Drop `access_token` from the query string.
fn strip_query_token(uri: &mut Uri) -> Result<(), ()> {
    let Some(query) = uri.query() else { return Ok(()) };
    let Some(rest) = forwarded::without_access_token(query.as_bytes()) else { return Ok(()) };
    let mut target = uri.path().as_bytes().to_vec();
    if !rest.is_empty() {
        target.push(b'?');
        target.extend_from_slice(&rest);
    }
    *uri = Uri::from(PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| ())?);
    Ok(())
}

/// Drop `access_token` from a form body the gateway read, and say its new length.
fn strip_form_token(headers: &mut HeaderMap, body: &mut UpstreamBody, form: Option<&[u8]>) {
    let Some(rest) = form.and_then(forwarded::without_access_token) else { return };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(rest.len()));
    *body = Either::Right(Full::new(Bytes::from(rest)));
}

/// RFC 9728 §3.2: the metadata document, JSON, served without authentication.
fn metadata_response(body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// RFC 9728 §2 metadata for the configured resource; bearer methods follow the token settings.
fn resource_metadata(config: &Config) -> Option<(String, Bytes)> {
    let p = config.protected_resource.as_ref()?;
    let mut methods = vec!["header"];
    if config.tokens.allow_form_body {
        methods.push("body");
    }
    if config.tokens.allow_query {
        methods.push("query");
    }
    let mut doc = serde_json::json!({
        "resource": p.resource,
        "authorization_servers": p.authorization_servers,
        "scopes_supported": p.scopes_supported,
        "bearer_methods_supported": methods,
    });
    if let Some(name) = &p.resource_name {
        doc["resource_name"] = name.as_str().into();
    }
    Some((p.metadata_path.clone(), Bytes::from(doc.to_string())))
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// Build the shared state from a validated config; `clock` is what authentication reads.
pub fn state(config: Config, metrics: Metrics, http: &reqwest::Client, clock: Clock) -> State {
    state_after(None, config, metrics, http, clock)
}

/// The snapshot for `config`, keeping from `previous` (the one serving until now) the key sets,
/// caches and upstream connections that `config` did not change (`Authenticator::after`).
pub fn state_after(
    previous: Option<&State>,
    config: Config,
    metrics: Metrics,
    http: &reqwest::Client,
    clock: Clock,
) -> State {
    let routes = RouteTable::new(&config.routes);
    metrics.prepare(&config);
    let upstreams = upstreams(previous, &config, &metrics);
    let route_upstreams = routes
        .routes()
        .map(|r| upstreams.iter().find(|(key, _)| *key == r.route.upstream).map(|(_, u)| u.clone()))
        .collect();
    State {
        epoch: previous.map_or(0, |p| p.epoch + 1),
        route_metrics: routes.routes().map(|r| metrics.route(&r.route.id)).collect(),
        no_route_metrics: metrics.route(NO_ROUTE),
        routes,
        auth: Authenticator::after(previous.map(|p| &p.auth), &config, http, &metrics, clock),
        upstreams,
        route_upstreams,
        identity_names: IdentityNames::new(&config.identity),
        path_options: PathOptions { keep_encoded_slashes: config.paths.keep_encoded_slashes },
        realm: crate::respond::quote(&config.realm),
        resource_metadata: resource_metadata(&config),
        metrics,
        config,
    }
}

/// The upstreams of `config`, each keeping its connections from `previous` when its settings
/// did not change.
fn upstreams(previous: Option<&State>, config: &Config, metrics: &Metrics) -> Vec<(Option<String>, Upstream)> {
    let default = config.upstream.iter().map(|u| (None, u, forward::name(u)));
    let named = config.upstreams.iter().map(|(name, u)| (Some(name.clone()), u, name.clone()));
    default
        .chain(named)
        .map(|(key, settings, name)| {
            let kept = previous
                .filter(|p| p.config.upstream_settings(key.as_deref()) == Some(settings))
                .and_then(|p| p.upstreams.iter().find(|(k, _)| *k == key))
                .map(|(_, u)| u.clone());
            let upstream = kept.unwrap_or_else(|| Upstream {
                forwarder: Arc::new(Forwarder::new(settings, &name, metrics)),
                name: Arc::from(name),
            });
            (key, upstream)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use http::Version;

    use super::*;

    fn config(upstreams: &str) -> Config {
        let text = format!(
            "{upstreams}\nissuers: [{{issuer: 'https://i/', jwks_uri: 'https://i/k', audiences: [a]}}]\nroutes:\n  - {{id: b, path_prefix: /b, upstream: b}}\n  - {{id: c, path_prefix: /c, upstream: c}}\n  - {{id: d, path_prefix: /}}\n"
        );
        crate::config::load_text(std::path::Path::new("t.yaml"), &text, &Default::default()).unwrap()
    }

    /// A reload keeps the connections of each upstream whose name and settings it did not
    /// change, and only those; each route gets its own upstream.
    #[tokio::test]
    async fn reload_keeps_unchanged_upstreams() {
        let http = reqwest::Client::new();
        let state = |previous: Option<&State>, c| state_after(previous, c, Metrics::new(), &http, Clock::system());
        let first = state(
            None,
            config("upstream: {url: 'http://a:1'}\nupstreams: {b: {url: 'http://b:1'}, c: {url: 'http://b:1'}}"),
        );
        let forwarder = |s: &State, i: usize| s.route_upstreams[i].as_ref().unwrap().forwarder.clone();
        let name = |s: &State, i: usize| s.route_upstreams[i].as_ref().unwrap().name.to_string();
        assert_eq!((name(&first, 0), name(&first, 1), name(&first, 2)), ("b".into(), "c".into(), "http://a:1".into()));
        // Same settings under two names: two upstreams, each with its own connections.
        assert!(!Arc::ptr_eq(&forwarder(&first, 0), &forwarder(&first, 1)));
        let second = state(
            Some(&first),
            config("upstream: {url: 'http://a:2'}\nupstreams: {b: {url: 'http://b:1'}, c: {url: 'http://c:1'}}"),
        );
        assert!(Arc::ptr_eq(&forwarder(&first, 0), &forwarder(&second, 0)), "b did not change");
        assert!(!Arc::ptr_eq(&forwarder(&first, 1), &forwarder(&second, 1)), "c's URL changed");
        assert!(!Arc::ptr_eq(&forwarder(&first, 2), &forwarder(&second, 2)), "the default's URL changed");
        assert_eq!(name(&second, 2), "http://a:2");
    }

    /// Host and target of a request as hyper hands them over, and the `Host` forwarded for it.
    fn forwarded(version: Version, host: Option<&str>, target: &str) -> Option<HeaderValue> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(HOST, HeaderValue::from_str(h).unwrap());
        }
        let uri: Uri = target.parse().unwrap();
        let canonical = canon::requested_host(version, &headers, &uri).unwrap();
        forwarded_host(canonical, &uri, &headers)
    }

    #[test]
    fn canonical_host_is_forwarded() {
        let out = forwarded(Version::HTTP_11, Some("API.Example.COM."), "/");
        assert_eq!(out.unwrap(), "api.example.com");
        // HTTP/2: `:authority` only, no `Host` header.
        let out = forwarded(Version::HTTP_2, None, "https://API.example.com/x");
        assert_eq!(out.unwrap(), "api.example.com");
        let out = forwarded(Version::HTTP_2, None, "https://api.example.com:8443/x");
        assert_eq!(out.unwrap(), "api.example.com:8443");
        let out = forwarded(Version::HTTP_10, None, "/");
        assert_eq!(out, None);
    }

    /// An already canonical `Host` is the client's own value, shared: not copied per request.
    #[test]
    fn canonical_client_host_is_shared() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str("api.example.com").unwrap());
        let uri: Uri = "/".parse().unwrap();
        let canonical = canon::requested_host(Version::HTTP_11, &headers, &uri).unwrap();
        let out = forwarded_host(canonical, &uri, &headers).unwrap();
        assert_eq!(out, "api.example.com");
        assert_eq!(out.as_bytes().as_ptr(), headers[HOST].as_bytes().as_ptr(), "copied");
    }
}

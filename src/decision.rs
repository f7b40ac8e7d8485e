//! The decision service: an ingress that keeps its own data path (nginx `auth_request`,
//! ingress-nginx `auth-url`, Traefik ForwardAuth, Envoy `ext_authz` over HTTP) asks here, per
//! request, whether the request it holds may pass. Each front door only describes the original
//! request and renders the answer; `crate::decide` decides, exactly as for the proxy.
//!
//! - `/verify`, any method: the original request is described by `X-Original-URI` (our nginx
//!   snippet; host in `X-Forwarded-Host`), `X-Original-URL` (ingress-nginx: scheme, host, path
//!   and query) or `X-Forwarded-Uri` (Traefik; host in `X-Forwarded-Host`), with its method in
//!   `X-Original-Method` or `X-Forwarded-Method`. `Host` is the decision service's own name here,
//!   never the original host.
//! - `/ext-authz/<original path>`: Envoy's HTTP `ext_authz` with `path_prefix: /ext-authz`; the
//!   method, `Host` and headers are the original request's.
//!
//! Allowed: 200 with the identity headers (for `auth_request_set`, `authResponseHeaders`,
//! `allowed_upstream_headers`). Refused: the proxy's own 400/401/403/404/503, with its
//! `WWW-Authenticate`. Only peers in `decision.trusted_peers` may describe a request (anyone
//! else could describe a public path and have a token admitted for it). tokengate cannot
//! rewrite what the ingress forwards, so a path whose canonical form differs from what was sent
//! is refused rather than decided on a form the upstream will not see.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::Service;

use crate::auth::token_cache::LastToken;
use crate::auth::Principal;
use crate::canon::{self, CanonHost};
use crate::decide::{self, Credentials, Refusal};
use crate::proxy::headers::IdentityValues;
use crate::proxy::route::CompiledRoute;
use crate::proxy::{forwarded, Live, State};
use crate::respond::{respond, Denial};
use crate::telemetry::access::{self, Entry, X_REQUEST_ID};
use crate::telemetry::otel::RequestSpan;

/// Envoy's HTTP `ext_authz` removes the headers listed here from the request it forwards.
static ENVOY_HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");
const EXT_AUTHZ_PREFIX: &str = "/ext-authz";
const GRPC_CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Response body: an HTTP door's small body, or tonic's gRPC body.
pub type DecisionBody = Either<Full<Bytes>, tonic::body::Body>;

/// Which front door a question came through: a metrics label, and how to render the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// nginx `auth_request` and ingress-nginx `auth-url`.
    AuthRequest,
    /// Traefik ForwardAuth.
    ForwardAuth,
    /// Envoy `ext_authz`, HTTP service.
    ExtAuthzHttp,
    /// Envoy `ext_authz`, gRPC service (`envoy.service.auth.v3.Authorization/Check`; Istio's
    /// CUSTOM action, Envoy Gateway's SecurityPolicy).
    ExtAuthzGrpc,
}

impl Door {
    pub fn label(self) -> &'static str {
        match self {
            Door::AuthRequest => "auth_request",
            Door::ForwardAuth => "forward_auth",
            Door::ExtAuthzHttp => "ext_authz_http",
            Door::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}

/// The original request as the ingress describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Original<'r> {
    pub door: Door,
    pub method: Method,
    /// Raw host (and port), as the client sent it; `None` when the ingress did not say.
    pub host: Option<&'r str>,
    /// Raw path and query, as the client sent them.
    pub target: &'r str,
}

/// Read the original request's description off a question. `Err(None)`: not a front door (404);
/// `Err(Some(reason))`: a front door, but the description is missing or ambiguous (400).
pub fn describe<'r>(
    method: &Method,
    uri: &'r Uri,
    headers: &'r HeaderMap,
) -> Result<Original<'r>, Option<&'static str>> {
    let path = uri.path();
    if path == "/verify" {
        return describe_verify(headers).map_err(Some);
    }
    if let Some(rest) = path.strip_prefix(EXT_AUTHZ_PREFIX).filter(|r| r.is_empty() || r.starts_with('/')) {
        let target = &uri.path_and_query().map_or("", |p| p.as_str())[EXT_AUTHZ_PREFIX.len()..];
        // `/ext-authz` alone, or `/ext-authz?q`: the original path was `/`... which Envoy
        // always sends as `/ext-authz/`. Anything else is not Envoy's.
        if rest.is_empty() {
            return Err(Some("no original path after /ext-authz"));
        }
        // Envoy forwards the original request's own Host (or :authority).
        let host = match single(headers, "host").map_err(Some)? {
            Some(host) => Some(host),
            None => uri.authority().map(|a| a.as_str()),
        };
        return Ok(Original { door: Door::ExtAuthzHttp, method: method.clone(), host, target });
    }
    Err(None)
}

/// `/verify`: exactly one description, in one ingress's vocabulary. An ingress passes the
/// client's own headers on to `/verify` (nginx and Traefik both do by default) and sets only its
/// own: a second description, or a method in the other vocabulary, may be the client's, so the
/// question is refused rather than answered for a request the ingress never holds.
fn describe_verify(headers: &HeaderMap) -> Result<Original<'_>, &'static str> {
    let url = single(headers, "x-original-url")?;
    let uri = single(headers, "x-original-uri")?;
    let forwarded_uri = single(headers, "x-forwarded-uri")?;
    let original_method = single(headers, "x-original-method")?;
    let forwarded_method = single(headers, "x-forwarded-method")?;
    let (door, method, host, target) = match (url, uri, forwarded_uri) {
        (Some(url), None, None) => {
            // Absolute: scheme, host, path and query (ingress-nginx's `$scheme://$host$request_uri`).
            let (host, target) = split_url(url).ok_or("X-Original-URL is not an absolute http(s) URL")?;
            (Door::AuthRequest, original_method, Some(host), target)
        }
        (None, Some(target), None) => {
            (Door::AuthRequest, original_method, single(headers, "x-forwarded-host")?, target)
        }
        (None, None, Some(target)) => {
            (Door::ForwardAuth, forwarded_method, single(headers, "x-forwarded-host")?, target)
        }
        (None, None, None) => {
            return Err("the original request is not described (X-Original-URI, X-Original-URL or X-Forwarded-Uri)")
        }
        _ => return Err("the original request is described more than once"),
    };
    let other_method = if door == Door::ForwardAuth { original_method } else { forwarded_method };
    if other_method.is_some() {
        return Err("the original method is described in another ingress's header");
    }
    let method = method.ok_or(match door {
        Door::ForwardAuth => "the original method is not described (X-Forwarded-Method)",
        _ => "the original method is not described (X-Original-Method)",
    })?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| "the original method is not a method")?;
    Ok(Original { door, method, host, target })
}

/// The one value of `name`, if any; two values, or one that is not visible ASCII, describe
/// nothing reliably.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("a header describing the original request appears more than once");
    }
    value.to_str().map(Some).map_err(|_| "a header describing the original request is not visible ASCII")
}

/// `http(s)://host[:port]/path?query` → (`host[:port]`, `/path?query`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let (host, target) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if host.is_empty() || !target.starts_with('/') {
        return None;
    }
    Some((host, target))
}

/// One decision-service connection, and (`current`) one question on it.
#[derive(Clone)]
pub struct Decision {
    live: Arc<Live>,
    /// The configuration the question runs under, loaded once per question.
    state: Arc<State>,
    client: IpAddr,
    /// What the connection remembers under `state` (for this question).
    memo: Arc<Memo>,
    /// The connection's memo, shared by its questions (`current`).
    memos: Arc<ArcSwap<Memo>>,
}

/// What a connection remembers under the configuration snapshot numbered `epoch`.
struct Memo {
    epoch: u64,
    /// The peer is in `decision.trusted_peers`.
    trusted: bool,
    /// The last JWT this connection's questions carried (an ingress keeps a few connections
    /// open and asks about one client's requests on them in a row).
    last_token: LastToken,
}

impl Memo {
    fn new(state: &State, client: IpAddr) -> Memo {
        let trusted = state.config.decision.as_ref().is_some_and(|d| forwarded::is_trusted(client, &d.trusted_peers));
        Memo { epoch: state.epoch, trusted, last_token: LastToken::default() }
    }
}

impl Decision {
    pub fn new(live: Arc<Live>, remote: SocketAddr) -> Decision {
        let state = live.load_full();
        let memo = Arc::new(Memo::new(&state, remote.ip()));
        let memos = Arc::new(ArcSwap::new(memo.clone()));
        Decision { live, state, client: remote.ip(), memo, memos }
    }

    /// This connection under the configuration being served now (a reload may have replaced
    /// the trusted peers, the routes or the issuers since the connection's last question).
    fn current(&self) -> Decision {
        let state = self.live.load_full();
        let mut memo = self.memos.load_full();
        if memo.epoch != state.epoch {
            memo = Arc::new(Memo::new(&state, self.client));
            self.memos.store(memo.clone());
        }
        Decision { live: self.live.clone(), state, client: self.client, memo, memos: self.memos.clone() }
    }

    /// The connection's hyper service: gRPC `Check` calls go to tonic (HTTP/2 on the same
    /// port, told apart by path as gRPC always is), everything else to the HTTP doors.
    pub fn into_service(
        self,
    ) -> impl Service<Request<Incoming>, Response = Response<DecisionBody>, Error = Infallible, Future: Send> + Send
    {
        // A `CheckRequest` carries the original request's head (what the proxy would accept,
        // `server.max_header_bytes`) and a little more: room for twice that.
        let max = 2 * self.state.config.server.max_header_bytes;
        let grpc = AuthorizationServer::new(grpc::GrpcDoor(self.clone())).max_decoding_message_size(max);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let this = self.current();
            let mut grpc = grpc.clone();
            async move {
                if req.uri().path() == GRPC_CHECK_PATH {
                    let response = tonic::codegen::Service::call(&mut grpc, req).await?;
                    return Ok(response.map(Either::Right));
                }
                Ok(this.answer(req).await.map(Either::Left))
            }
        })
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = access::request_id(req.headers(), self.memo.trusted);
        let described = match describe(req.method(), req.uri(), req.headers()) {
            Err(None) => return not_a_door(),
            described => described.map_err(Option::unwrap_or_default),
        };
        // The span describes the original request, as the access-log line does.
        let method = described.as_ref().map_or(req.method(), |o| &o.method);
        let mut span = RequestSpan::start(req.headers(), method, &request_id);
        let (door, outcome, original) = match described {
            Err(reason) => (door_of(req.uri()), Err((None, Denial::BadRequest(reason))), None),
            Ok(original) => (original.door, span.scope(self.decide(&original, req.headers())).await, Some(original)),
        };
        if let Err((_, denial)) = &outcome {
            span.refused(denial);
        }
        let mut entry = self.entry(door, &request_id, original.as_ref(), req.headers(), started);
        let (route, decision, mut response) = self.render(door, outcome, entry.as_deref_mut());
        response.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
        span.finish(door.label(), route.map(|r| &r.id), response.status());
        self.record(door, route, decision, response.status(), started, entry);
        response
    }

    /// The access-log line of a question, described by the original request when there is one.
    fn entry(
        &self,
        door: Door,
        request_id: &HeaderValue,
        original: Option<&Original<'_>>,
        headers: &HeaderMap,
        started: Instant,
    ) -> Option<Box<Entry>> {
        let mut entry = Entry::start(&self.state.config.access_log, door.label(), request_id, self.client, started)?;
        if let Some(o) = original {
            let host = o.host.and_then(|h| HeaderValue::from_str(h).ok());
            entry.request(&o.method, host.as_ref(), o.target, headers);
        }
        Some(entry)
    }

    /// The HTTP answer to a decision: 200 with the identity, or the proxy's refusal.
    fn render<'s>(
        &'s self,
        door: Door,
        outcome: Result<Admitted<'s>, Refusal<'s>>,
        entry: Option<&mut Entry>,
    ) -> (Option<&'s CompiledRoute>, &'static str, Response<Full<Bytes>>) {
        let state = &*self.state;
        let (route, decision, response) = match outcome {
            Ok((route, admitted)) => {
                let (principal, identity) = admitted.unzip();
                if let Some(e) = entry {
                    e.principal = principal;
                }
                (Some(route), "allowed", allowed(state, door, identity))
            }
            Err((route, denial)) => {
                let reason = denial.reason();
                if let Some(e) = entry {
                    e.refused(&denial);
                }
                (route, reason, respond(denial, &decide::challenge(state, route)))
            }
        };
        (route, decision, response)
    }

    /// Count a decision by door and by route (`tokengate_requests_total`, as the proxy does),
    /// and write its access-log line.
    fn record(
        &self,
        door: Door,
        route: Option<&CompiledRoute>,
        decision: &str,
        status: StatusCode,
        started: Instant,
        entry: Option<Box<Entry>>,
    ) {
        let state = &*self.state;
        state.metrics.decided(door.label(), decision);
        let metrics = route.map_or(&state.no_route_metrics, |r| &state.route_metrics[r.index]);
        metrics.record(decision, status, started.elapsed(), None);
        if let Some(mut e) = entry {
            e.route = route.map(|r| r.id.clone());
            e.status = status.as_u16();
            e.emit();
        }
    }

    /// Route and admit the described request: the proxy's decision, on the original's
    /// canonical host and path, with the token from `headers` (the original's, as the ingress
    /// passed them on). Returns the route and the identity to hand back.
    pub(crate) async fn decide<'s>(
        &'s self,
        original: &Original<'_>,
        headers: &HeaderMap,
    ) -> Result<Admitted<'s>, Refusal<'s>> {
        let state = &*self.state;
        if !self.memo.trusted {
            return Err((None, Denial::UntrustedPeer));
        }
        let bad = |reason: &'static str| (None, Denial::BadRequest(reason));
        let host: Option<CanonHost<'_>> = original.host.map(|h| canon::host(h.as_bytes())).transpose().map_err(bad)?;
        let (path, query) = match original.target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (original.target, None),
        };
        if !path.starts_with('/') {
            return Err(bad("the original path does not start with '/'"));
        }
        let path = canon::path(path, &state.path_options).map_err(bad)?;
        if path.is_rewritten() {
            // The ingress forwards the path as it is; deciding on another spelling of it would
            // authorize something other than what the upstream serves.
            return Err(bad("the original path is not in canonical form"));
        }
        let routes = decide::route(state, host.as_ref(), &path, &original.method)?;
        let credentials = Credentials { headers, query, form: None };
        let principal = decide::admit(state, &routes, &credentials, &self.memo.last_token).await?;
        let admitted = principal
            .map(|p| IdentityValues::render(&p, &state.config.identity).map(|identity| (p, identity)))
            .transpose()
            .map_err(|e| (Some(routes.primary()), Denial::Auth(e)))?;
        Ok((routes.primary(), admitted))
    }
}

/// An admitted question: its route, and the principal with its identity headers (none on a
/// public route).
pub(crate) type Admitted<'s> = (&'s CompiledRoute, Option<(Arc<Principal>, IdentityValues)>);

/// The door a malformed question was meant for, for its metrics label.
fn door_of(uri: &Uri) -> Door {
    if uri.path().starts_with(EXT_AUTHZ_PREFIX) {
        Door::ExtAuthzHttp
    } else {
        Door::AuthRequest
    }
}

/// 200 with the identity headers. Envoy's HTTP door is also told which headers to remove from
/// the forwarded request (`headers_to_remove`).
fn allowed(state: &State, door: Door, identity: Option<IdentityValues>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    if let Some(identity) = &identity {
        identity.apply(headers);
    }
    if door == Door::ExtAuthzHttp {
        let remove = headers_to_remove(state, headers).join(",");
        if let Ok(value) = HeaderValue::from_str(&remove) {
            if !remove.is_empty() {
                headers.insert(ENVOY_HEADERS_TO_REMOVE.clone(), value);
            }
        }
    }
    response
}

/// What Envoy must remove from the request it forwards, given the identity headers an answer
/// `sets`: the identity headers it does not set (a client-sent copy must not survive), and
/// `Authorization` unless `identity.forward_authorization`. Both Envoy doors send this list.
fn headers_to_remove<'s>(state: &'s State, sets: &HeaderMap) -> Vec<&'s str> {
    let mut remove: Vec<&str> =
        state.identity_names.names().iter().filter(|name| !sets.contains_key(*name)).map(HeaderName::as_str).collect();
    if !state.config.identity.forward_authorization {
        remove.push("authorization");
    }
    remove
}

/// 404: neither `/verify` nor `/ext-authz/…`.
fn not_a_door() -> Response<Full<Bytes>> {
    respond(Denial::NoRoute, &Default::default())
}

mod grpc;
#[cfg(test)]
mod tests;

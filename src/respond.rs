//! The one place where a refusal becomes an HTTP response: status code, RFC 6750 §3
//! `WWW-Authenticate` challenge and a small JSON body. Nothing else chooses a status for a
//! request the gateway did not forward.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::auth::AuthError;

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No route matched: deny by default.
    NoRoute,
    /// The request itself is unacceptable before any auth (e.g. a dot-segment path).
    BadRequest(&'static str),
    /// A body the gateway reads (a form body's token) did not arrive within
    /// `server.body_read_timeout`.
    BodyTimeout,
    /// A decision-service caller outside `decision.trusted_peers` described a request.
    UntrustedPeer,
    Auth(AuthError),
    Upstream(UpstreamError),
    /// The upstream answered an upgrade with 101 for a protocol the client did not ask for
    /// (or answered 101 to a request that asked for none): nothing is tunnelled.
    UpgradeMismatch,
}

/// How forwarding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream connection failed")]
    Connect,
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream connection broke")]
    Broken,
    /// `upstream.max_in_flight` requests are already in flight: refused at once, not queued.
    #[error("too many requests in flight to the upstream")]
    Overloaded,
}

impl Denial {
    /// Bounded label for metrics: the decision that was taken.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoRoute => "no_route",
            Denial::BadRequest(_) => "bad_request",
            Denial::BodyTimeout => "body_timeout",
            Denial::UntrustedPeer => "untrusted_peer",
            Denial::Auth(e) => e.reason(),
            Denial::Upstream(UpstreamError::Timeout) => "upstream_timeout",
            Denial::Upstream(UpstreamError::Overloaded) => "upstream_overloaded",
            Denial::Upstream(_) | Denial::UpgradeMismatch => "upstream_error",
        }
    }

    /// A dependency failed (an identity provider, the upstream): nothing was wrong with the
    /// request itself. Logged as `error` rather than `denied`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Denial::Upstream(_) | Denial::UpgradeMismatch | Denial::Auth(AuthError::Unavailable(_)))
    }
}

/// Attributes of the challenge that come from configuration, pre-quoted at load time.
#[derive(Debug, Clone, Default)]
pub struct Challenge<'a> {
    /// `realm="…"`, already a valid quoted-string body.
    pub realm: &'a str,
    /// Space-separated scopes the route requires (for `insufficient_scope`).
    pub scope: Option<&'a str>,
    /// RFC 9728 §5.1 `resource_metadata` URL, when configured.
    pub resource_metadata: Option<&'a str>,
}

/// Build the response for a denial.
pub fn respond(denial: Denial, challenge: &Challenge<'_>) -> Response<Full<Bytes>> {
    let (status, error, description) = classify(denial);
    let mut response = Response::new(Full::new(json_body(error, description)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match denial {
        // RFC 9110 §15.5.9: a server sending 408 SHOULD close the connection (the rest of the
        // body is still on it).
        Denial::BodyTimeout => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Denial::Upstream(UpstreamError::Overloaded) => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    if let Denial::Auth(e) = denial {
        if matches!(e, AuthError::Unavailable(_)) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Ok(value) = HeaderValue::from_str(&www_authenticate(&e, challenge)) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Status, RFC 6750 `error` code and description of a denial.
fn classify(denial: Denial) -> (StatusCode, &'static str, &'static str) {
    match denial {
        Denial::NoRoute => (StatusCode::NOT_FOUND, "not_found", "no route matches this request"),
        Denial::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
        Denial::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout", "request body not received in time"),
        Denial::UntrustedPeer => {
            (StatusCode::FORBIDDEN, "untrusted_peer", "this peer is not in decision.trusted_peers")
        }
        Denial::Upstream(UpstreamError::Overloaded) => {
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded", "too many requests in flight to the upstream")
        }
        Denial::Upstream(UpstreamError::Timeout) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "upstream did not answer in time")
        }
        Denial::Upstream(e @ (UpstreamError::Connect | UpstreamError::Broken)) => {
            (StatusCode::BAD_GATEWAY, "bad_gateway", upstream_description(e))
        }
        Denial::UpgradeMismatch => {
            (StatusCode::BAD_GATEWAY, "bad_gateway", "upstream switched to a protocol the client did not ask for")
        }
        Denial::Auth(e) => (auth_status(&e), e.code().unwrap_or("unauthorized"), e.description()),
    }
}

/// A gRPC call (HTTP/2, `content-type: application/grpc` or `application/grpc+proto` and the
/// like; not gRPC-Web, which has its own framing): its refusal must be a gRPC status, or the
/// client sees a protocol error instead of the reason.
pub fn is_grpc(version: http::Version, headers: &http::HeaderMap) -> bool {
    version == http::Version::HTTP_2
        && headers.get(CONTENT_TYPE).is_some_and(|v| {
            let v = v.as_bytes();
            v.len() >= 16
                && v[..16].eq_ignore_ascii_case(b"application/grpc")
                && matches!(v.get(16), None | Some(b'+' | b';'))
        })
}

/// The gRPC form of a refusal: HTTP 200 with no body and the status in the headers (a
/// "Trailers-Only" response, gRPC over HTTP/2 protocol spec): `grpc-status` 16 UNAUTHENTICATED
/// for 401, 7 PERMISSION_DENIED for 403, the others after gRPC's HTTP-to-gRPC status mapping;
/// `grpc-message` is the description, and `www-authenticate` and `retry-after` stay.
pub fn grpc(response: Response<Full<Bytes>>, denial: Denial) -> Response<Full<Bytes>> {
    let code: u16 = match response.status() {
        StatusCode::BAD_REQUEST => 3,                                    // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,                                  // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,                                      // PERMISSION_DENIED
        StatusCode::NOT_FOUND => 12,                                     // UNIMPLEMENTED
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => 4,  // DEADLINE_EXCEEDED
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 2,                                                          // UNKNOWN
    };
    let mut grpc = Response::new(Full::new(Bytes::new()));
    let headers = grpc.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(&grpc_message(classify(denial).2)) {
        headers.insert("grpc-message", message);
    }
    for name in [WWW_AUTHENTICATE, RETRY_AFTER] {
        if let Some(v) = response.headers().get(&name) {
            headers.insert(name, v.clone());
        }
    }
    grpc
}

/// gRPC's `grpc-message` encoding: percent-encoded outside printable ASCII, and `%` itself.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn upstream_description(e: UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect => "upstream connection failed",
        UpstreamError::Timeout => "upstream did not answer in time",
        UpstreamError::Broken => "upstream connection broke",
        UpstreamError::Overloaded => "too many requests in flight to the upstream",
    }
}

/// RFC 6750 §3.1: 400 invalid_request, 401 invalid_token (and no credentials), 403 insufficient_scope.
fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::MissingToken | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        AuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// RFC 6750 §3: `Bearer realm="…"`, plus `error`, `error_description` and `scope` when the
/// request carried credentials (§3.1: none of them when it did not).
fn www_authenticate(e: &AuthError, challenge: &Challenge<'_>) -> String {
    let mut value = format!("Bearer realm=\"{}\"", challenge.realm);
    if let Some(code) = e.code() {
        value.push_str(&format!(", error=\"{code}\", error_description=\"{}\"", e.description()));
        if let (AuthError::InsufficientScope(_), Some(scope)) = (e, challenge.scope) {
            value.push_str(&format!(", scope=\"{scope}\""));
        }
    }
    if let Some(url) = challenge.resource_metadata {
        value.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    value
}

/// The one answer written without hyper: to a connection accepted beyond
/// `server.max_connections`, which is closed right after it.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
cache-control: no-store\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 80\r\n\
\r\n\
{\"error\":\"overloaded\",\"error_description\":\"too many connections to the gateway\"}";

fn json_body(error: &str, description: &str) -> Bytes {
    let body = serde_json::json!({ "error": error, "error_description": description });
    Bytes::from(body.to_string())
}

/// Escape a configured string for use inside a quoted-string (RFC 9110 §5.6.4).
pub fn quote(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only HTTP/2 requests of gRPC's content types get gRPC refusals (not gRPC-Web).
    #[test]
    fn grpc_requests_are_recognised() {
        let with = |ct: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            h
        };
        for ct in ["application/grpc", "application/grpc+proto", "Application/GRPC; charset=x"] {
            assert!(is_grpc(http::Version::HTTP_2, &with(ct)), "{ct}");
            assert!(!is_grpc(http::Version::HTTP_11, &with(ct)), "{ct} over HTTP/1.1");
        }
        for ct in ["application/grpc-web", "application/grpcx", "application/json", "application/grp"] {
            assert!(!is_grpc(http::Version::HTTP_2, &with(ct)), "{ct}");
        }
        assert!(!is_grpc(http::Version::HTTP_2, &http::HeaderMap::new()));
    }

    /// Each refusal's gRPC status, with the description as `grpc-message` and the challenge
    /// kept; an HTTP 200 with no body (Trailers-Only).
    #[test]
    fn grpc_refusals() {
        let challenge = Challenge { realm: "r", ..Challenge::default() };
        let cases = [
            (Denial::Auth(AuthError::MissingToken), "16"),
            (Denial::Auth(AuthError::InsufficientScope("token lacks a required scope")), "7"),
            (Denial::BadRequest("bad path"), "3"),
            (Denial::NoRoute, "12"),
            (Denial::BodyTimeout, "4"),
            (Denial::Upstream(UpstreamError::Timeout), "4"),
            (Denial::Upstream(UpstreamError::Connect), "14"),
            (Denial::Upstream(UpstreamError::Overloaded), "14"),
            (Denial::UntrustedPeer, "7"),
        ];
        for (denial, code) in cases {
            let r = grpc(respond(denial, &challenge), denial);
            assert_eq!(r.status(), StatusCode::OK, "{denial:?}");
            assert_eq!(r.headers()["grpc-status"], code, "{denial:?}");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
            assert!(http_body::Body::is_end_stream(r.body()), "{denial:?}");
        }
        let r = grpc(respond(Denial::Auth(AuthError::MissingToken), &challenge), Denial::Auth(AuthError::MissingToken));
        assert_eq!(r.headers()["grpc-message"], "a bearer token is required");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"r\"");
        let overloaded = Denial::Upstream(UpstreamError::Overloaded);
        assert_eq!(grpc(respond(overloaded, &challenge), overloaded).headers()[RETRY_AFTER], "1");
        assert_eq!(grpc_message("50% done\n é"), "50%25 done%0A %C3%A9");
    }

    /// Only a failed dependency is a failure; every refusal of the request itself is not.
    #[test]
    fn failures_are_the_dependencies() {
        let failures = [
            Denial::Auth(AuthError::Unavailable("no keys")),
            Denial::Upstream(UpstreamError::Connect),
            Denial::Upstream(UpstreamError::Timeout),
            Denial::Upstream(UpstreamError::Broken),
            Denial::Upstream(UpstreamError::Overloaded),
            Denial::UpgradeMismatch,
        ];
        assert!(failures.iter().all(Denial::is_failure));
        let refusals = [
            Denial::NoRoute,
            Denial::BadRequest("x"),
            Denial::BodyTimeout,
            Denial::UntrustedPeer,
            Denial::Auth(AuthError::MissingToken),
        ];
        assert!(!refusals.iter().any(Denial::is_failure));
    }

    fn challenge() -> Challenge<'static> {
        Challenge { realm: "api", scope: Some("read write"), resource_metadata: None }
    }

    fn header(r: &Response<Full<Bytes>>) -> Option<&str> {
        r.headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap())
    }

    /// No credentials: 401 with a challenge that has no `error` attribute (RFC 6750 §3.1).
    #[test]
    fn missing_token() {
        let r = respond(Denial::Auth(AuthError::MissingToken), &challenge());
        assert_eq!(r.status(), 401);
        assert_eq!(header(&r), Some("Bearer realm=\"api\""));
    }

    /// Invalid token: 401 invalid_token with a description.
    #[test]
    fn invalid_token() {
        let r = respond(Denial::Auth(AuthError::InvalidToken("token expired")), &challenge());
        assert_eq!(r.status(), 401);
        assert_eq!(
            header(&r),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\"")
        );
    }

    /// Insufficient scope: 403 naming the required scopes.
    #[test]
    fn insufficient_scope() {
        let r = respond(Denial::Auth(AuthError::InsufficientScope("token lacks a required scope")), &challenge());
        assert_eq!(r.status(), 403);
        assert!(header(&r).unwrap().ends_with(
            "error=\"insufficient_scope\", error_description=\"token lacks a required scope\", scope=\"read write\""
        ));
    }

    /// A 101 for a protocol nobody asked for: 502, no challenge, counted as an upstream error.
    #[test]
    fn upgrade_mismatch() {
        let r = respond(Denial::UpgradeMismatch, &challenge());
        assert_eq!((r.status(), header(&r)), (StatusCode::BAD_GATEWAY, None));
        assert_eq!(Denial::UpgradeMismatch.reason(), "upstream_error");
    }

    /// Malformed credentials: 400 invalid_request.
    #[test]
    fn invalid_request() {
        let r = respond(Denial::Auth(AuthError::InvalidRequest("empty bearer token")), &challenge());
        assert_eq!(r.status(), 400);
        assert!(header(&r).unwrap().contains("error=\"invalid_request\""));
    }

    /// Auth unavailable: 503 with Retry-After and no challenge, so clients keep their token.
    #[test]
    fn unavailable() {
        let r = respond(Denial::Auth(AuthError::Unavailable("signing keys not loaded")), &challenge());
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        assert!(header(&r).is_none());
    }

    /// Routing and upstream failures: 404, 502, 504 with a JSON body.
    #[test]
    fn non_auth_statuses() {
        assert_eq!(respond(Denial::NoRoute, &challenge()).status(), 404);
        assert_eq!(respond(Denial::Upstream(UpstreamError::Connect), &challenge()).status(), 502);
        assert_eq!(respond(Denial::Upstream(UpstreamError::Broken), &challenge()).status(), 502);
        let r = respond(Denial::Upstream(UpstreamError::Timeout), &challenge());
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    /// RFC 9728 §5.1: the challenge advertises the protected resource metadata when configured.
    #[test]
    fn resource_metadata_attribute() {
        let c =
            Challenge { resource_metadata: Some("https://api/.well-known/oauth-protected-resource"), ..challenge() };
        let r = respond(Denial::Auth(AuthError::MissingToken), &c);
        assert!(header(&r)
            .unwrap()
            .ends_with("resource_metadata=\"https://api/.well-known/oauth-protected-resource\""));
    }

    /// The gateway's own limits: 408 that closes the connection, 503 with Retry-After.
    #[test]
    fn limit_statuses() {
        let r = respond(Denial::BodyTimeout, &challenge());
        assert_eq!((r.status().as_u16(), &r.headers()[CONNECTION]), (408, &HeaderValue::from_static("close")));
        let r = respond(Denial::Upstream(UpstreamError::Overloaded), &challenge());
        assert_eq!((r.status().as_u16(), &r.headers()[RETRY_AFTER]), (503, &HeaderValue::from_static("1")));
    }

    /// The raw 503 for a connection over the limit is a well-formed HTTP/1.1 response.
    #[test]
    fn too_many_connections_is_well_formed() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(TOO_MANY_CONNECTIONS).unwrap() else { panic!() };
        assert_eq!(response.code, Some(503));
        let length = response.headers.iter().find(|h| h.name == "content-length").unwrap().value;
        assert_eq!(std::str::from_utf8(length).unwrap().parse::<usize>().unwrap(), TOO_MANY_CONNECTIONS.len() - head);
        let body: serde_json::Value = serde_json::from_slice(&TOO_MANY_CONNECTIONS[head..]).unwrap();
        assert_eq!(body["error"], "overloaded");
    }

    /// Configured strings cannot break out of the quoted-string.
    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\r\n"), "a\\\"b\\\\c");
    }
}

//! The one place where a refusal becomes an HTTP response: status code, RFC 6750 §3
//! `WWW-Authenticate` challenge and a small JSON body. Nothing else chooses a status for a
//! request the gateway did not forward.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
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
    Auth(AuthError),
    Upstream(UpstreamError),
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
}

impl Denial {
    /// Bounded label for metrics: the decision that was taken.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoRoute => "no_route",
            Denial::BadRequest(_) => "bad_request",
            Denial::Auth(e) => e.reason(),
            Denial::Upstream(UpstreamError::Timeout) => "upstream_timeout",
            Denial::Upstream(_) => "upstream_error",
        }
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
    let (status, error, description) = match denial {
        Denial::NoRoute => (StatusCode::NOT_FOUND, "not_found", "no route matches this request"),
        Denial::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
        Denial::Upstream(UpstreamError::Timeout) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "upstream did not answer in time")
        }
        Denial::Upstream(e @ (UpstreamError::Connect | UpstreamError::Broken)) => {
            (StatusCode::BAD_GATEWAY, "bad_gateway", upstream_description(e))
        }
        Denial::Auth(e) => (auth_status(&e), e.code().unwrap_or("unauthorized"), e.description()),
    };
    let mut response = Response::new(Full::new(json_body(error, description)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Denial::Auth(e) = denial {
        if matches!(e, AuthError::Unavailable(_)) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Ok(value) = HeaderValue::from_str(&www_authenticate(&e, challenge)) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

fn upstream_description(e: UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect => "upstream connection failed",
        UpstreamError::Timeout => "upstream did not answer in time",
        UpstreamError::Broken => "upstream connection broke",
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

    /// Configured strings cannot break out of the quoted-string.
    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\r\n"), "a\\\"b\\\\c");
    }
}

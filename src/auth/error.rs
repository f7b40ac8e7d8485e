//! The outcome of authentication and authorization when it is not "allowed".
//!
//! Descriptions are fixed strings chosen by the gateway: they say what was wrong (expired, wrong
//! audience, unknown key …) and never echo the token or a claim value. The mapping to a status
//! code and a `WWW-Authenticate` challenge lives in `crate::respond`, and nowhere else.

/// Why a request was not authenticated or not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all (RFC 6750 §3.1: the challenge carries no `error`).
    #[error("no bearer token")]
    MissingToken,
    /// Malformed credentials: two Authorization headers, a token in two places, bad characters.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The token is expired, revoked, malformed, for another audience, or fails its signature.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A valid token that lacks a scope or claim the route requires.
    #[error("insufficient scope: {0}")]
    InsufficientScope(&'static str),
    /// The gateway cannot decide right now (no key set yet, introspection down): not the
    /// client's fault, so not a 401 that would make it throw away a good token.
    #[error("temporarily unavailable: {0}")]
    Unavailable(&'static str),
}

impl AuthError {
    /// The RFC 6750 §3.1 error code, if any.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken | AuthError::Unavailable(_) => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }

    /// Fixed, token-free text for `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "a bearer token is required",
            AuthError::InvalidRequest(d)
            | AuthError::InvalidToken(d)
            | AuthError::InsufficientScope(d)
            | AuthError::Unavailable(d) => d,
        }
    }

    /// Bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::Unavailable(_) => "auth_unavailable",
        }
    }
}

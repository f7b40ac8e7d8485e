//! JWS compact serialization parsing (RFC 7515 §7.1) — placeholder until the real parser lands.
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::AuthError;

pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

pub struct Jws<'a> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: &'a str,
}

pub fn parse(_token: &str) -> Result<Jws<'_>, AuthError> {
    Err(AuthError::InvalidToken("malformed token"))
}

pub fn looks_like_jws(_token: &str) -> bool {
    false
}

//! Google's tokeninfo endpoint, the check Google offers for its opaque access tokens (it is
//! not RFC 7662). The call is the one Google's own client library makes
//! (google-auth-library-nodejs `OAuth2Client.getTokenInfo`): `POST` with the token as
//! `Authorization: Bearer` and an empty form body, so the token is never in a URL, where access
//! logs would keep it. A valid token is answered 200 with its claims, any other with 400. The
//! answer is mapped onto an RFC 7662 one so the same claim checks, cache and breaker apply.

use reqwest::header::HeaderValue;
use serde_json::{Map, Value};

use super::CallError;

/// The `Authorization` header of a tokeninfo call, marked sensitive (never logged).
pub fn authorization(token: &str) -> Result<HeaderValue, CallError> {
    // The extractor admits only RFC 6750 b64token characters, all valid in a header value.
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| CallError::Invalid("the token cannot be sent in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A 200 answer's claims, or `None` for the 400 that every invalid or expired token gets.
/// Numbers arrive as strings (`"exp": "1700000000"`); `exp` is made a NumericDate so the usual
/// time checks apply, and an `exp` that is not a whole number is a broken answer.
pub fn answer(status: reqwest::StatusCode, body: &[u8]) -> Result<Option<Map<String, Value>>, CallError> {
    match status.as_u16() {
        200 => {}
        400 => return Ok(None),
        _ => return Err(CallError::Status(status)),
    }
    let mut claims = crate::auth::jws::strict_object(body)
        .ok_or_else(|| CallError::Invalid("answer is not a JSON object with unique member names".into()))?;
    // Google answers an error in a 200 only if something is badly wrong; never admit one.
    if claims.contains_key("error") || claims.contains_key("error_description") {
        return Err(CallError::Invalid("a 200 answer carries an error".into()));
    }
    let exp = match claims.get("exp") {
        Some(Value::String(s)) => s.parse::<u64>().map_err(|_| CallError::Invalid("`exp` is not a number".into()))?,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| CallError::Invalid("`exp` is not a number".into()))?,
        _ => return Err(CallError::Invalid("answer has no `exp`".into())),
    };
    claims.insert("exp".into(), Value::from(exp));
    // A boolean sent as a string: made the boolean an ID token carries, so one claim rule
    // (`email_verified equals true`) holds for both kinds of Google token.
    if let Some(Value::String(verified)) = claims.get("email_verified") {
        let verified = match verified.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(CallError::Invalid("`email_verified` is not a boolean".into())),
        };
        claims.insert("email_verified".into(), Value::Bool(verified));
    }
    // Derived from `exp` at the time of the answer; meaningless once cached.
    claims.remove("expires_in");
    Ok(Some(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde_json::json;

    fn ok(body: Value) -> Result<Option<Map<String, Value>>, CallError> {
        answer(StatusCode::OK, body.to_string().as_bytes())
    }

    #[test]
    fn valid_answer_becomes_claims() {
        let claims = ok(json!({
            "azp": "c.apps.googleusercontent.com", "aud": "c.apps.googleusercontent.com",
            "sub": "1234", "scope": "openid https://www.googleapis.com/auth/userinfo.email",
            "exp": "1700000000", "expires_in": "3599", "email": "a@example.com", "email_verified": "true",
        }))
        .unwrap()
        .unwrap();
        assert_eq!(claims["exp"], json!(1_700_000_000u64));
        assert!(!claims.contains_key("expires_in"));
        assert_eq!(claims["aud"], json!("c.apps.googleusercontent.com"));
        assert_eq!(claims["email_verified"], json!(true));
        let unverified = ok(json!({"exp": "1", "email_verified": "false"})).unwrap().unwrap();
        assert_eq!(unverified["email_verified"], json!(false));
        assert!(ok(json!({"exp": "1", "email_verified": "yes"})).is_err());
    }

    #[test]
    fn invalid_tokens_and_broken_answers() {
        let invalid = json!({"error": "invalid_token", "error_description": "Invalid Value"}).to_string();
        assert!(answer(StatusCode::BAD_REQUEST, invalid.as_bytes()).unwrap().is_none());
        for status in [StatusCode::UNAUTHORIZED, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::TOO_MANY_REQUESTS] {
            assert!(answer(status, b"{}").is_err(), "{status}");
        }
        assert!(ok(json!({"error": "invalid_token", "exp": "1"})).is_err());
        assert!(ok(json!({"sub": "x"})).is_err());
        assert!(ok(json!({"exp": "soon"})).is_err());
        assert!(ok(json!({"exp": "-1"})).is_err());
        // A number is taken as it is (Google's own library types it so), if it is a whole one.
        assert_eq!(ok(json!({"exp": 1_700_000_000u64})).unwrap().unwrap()["exp"], json!(1_700_000_000u64));
        assert!(ok(json!({"exp": 1.5})).is_err());
        assert!(ok(json!({"exp": -1})).is_err());
        assert!(answer(StatusCode::OK, b"not json").is_err());
        assert!(answer(StatusCode::OK, br#"{"exp":"1","exp":"2"}"#).is_err());
    }

    #[test]
    fn token_goes_in_a_sensitive_header() {
        let value = authorization("ya29.a+b/c=").unwrap();
        assert_eq!(value, "Bearer ya29.a+b/c=");
        assert!(value.is_sensitive());
        assert!(authorization("a\nb").is_err());
    }
}

//! RFC 6750 §2: find the bearer token in a request.
//!
//! Pure and total: never panics on hostile input; anything it cannot parse is
//! `InvalidRequest` (RFC 6750 §3.1), and a token over the size limit is refused unparsed.
//! The `Authorization` header is always read; the query string and form body only when enabled.

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::jws::{every_byte, is_base64url_byte};
use super::AuthError;
use crate::config::TokenSettings;

const PARAM: &str = "access_token";

/// The bearer token of a request, or `None` when it carries no bearer credentials at all.
///
/// `query` is the raw query string; `form` the body of an `application/x-www-form-urlencoded`
/// request when form tokens are enabled and the caller has read it.
pub fn bearer<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    form: Option<&'a [u8]>,
    settings: &TokenSettings,
) -> Result<Option<Cow<'a, str>>, AuthError> {
    let mut found: Option<Cow<'a, str>> = from_header(headers)?.map(Cow::Borrowed);
    if settings.allow_query {
        if let Some(q) = query {
            merge(&mut found, from_form(q.as_bytes())?)?;
        }
    }
    if settings.allow_form_body {
        if let Some(body) = form {
            merge(&mut found, from_form(body)?)?;
        }
    }
    if let Some(token) = &found {
        if token.len() > settings.max_token_bytes {
            return Err(AuthError::InvalidToken("token exceeds the size limit"));
        }
        if !is_b64token(token) {
            return Err(AuthError::InvalidRequest("malformed bearer token"));
        }
    }
    Ok(found)
}

/// RFC 6750 §2: "Clients MUST NOT use more than one method to transmit the token in each request."
fn merge<'a>(found: &mut Option<Cow<'a, str>>, more: Option<Cow<'a, str>>) -> Result<(), AuthError> {
    match (found.is_some(), more) {
        (true, Some(_)) => Err(AuthError::InvalidRequest("token sent in more than one place")),
        (false, Some(t)) => {
            *found = Some(t);
            Ok(())
        }
        (_, None) => Ok(()),
    }
}

/// `Authorization: Bearer <b64token>`, scheme case-insensitive (RFC 7235 §2.1). Another scheme
/// (Basic, …) is "no bearer credentials", not an error.
fn from_header(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest("more than one Authorization header"));
    }
    let value = value.to_str().map_err(|_| AuthError::InvalidRequest("malformed Authorization header"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest("empty bearer token"));
    }
    Ok(Some(token))
}

/// The `access_token` parameter of a form-encoded string; more than one is malformed.
fn from_form(raw: &[u8]) -> Result<Option<Cow<'_, str>>, AuthError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(raw) {
        if name == PARAM {
            if found.is_some() {
                return Err(AuthError::InvalidRequest("more than one access_token parameter"));
            }
            if value.is_empty() {
                return Err(AuthError::InvalidRequest("empty bearer token"));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && every_byte(body.as_bytes(), is_b64char)
}

/// The base64url alphabet plus `.`, `~`, `+` and `/`.
fn is_b64char(c: u8) -> bool {
    is_base64url_byte(c) | (c == b'.') | (c == b'~') | (c == b'+') | (c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Every byte value, in every position of a long token, against the RFC's alphabet.
    #[test]
    fn b64token_alphabet_is_exact() {
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64char(b), allowed, "byte {b:#04x}");
            for at in [0, 63, 64, 130] {
                let mut token = vec![b'a'; 131];
                token[at] = b;
                let Ok(token) = std::str::from_utf8(&token) else { continue };
                assert_eq!(is_b64token(token), allowed || (b == b'=' && at == 130), "byte {b:#04x} at {at}");
            }
        }
    }

    fn settings(query: bool, form: bool) -> TokenSettings {
        TokenSettings { allow_query: query, allow_form_body: form, max_token_bytes: 64 }
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn header_token(values: &[&[u8]]) -> Result<Option<String>, AuthError> {
        bearer(&headers(values), None, None, &settings(false, false)).map(|t| t.map(Cow::into_owned))
    }

    /// The scheme is case-insensitive and the token follows one or more spaces.
    #[test]
    fn bearer_header() {
        assert_eq!(header_token(&[b"Bearer abc.def"]).unwrap().as_deref(), Some("abc.def"));
        assert_eq!(header_token(&[b"bEaReR  abc"]).unwrap().as_deref(), Some("abc"));
        assert_eq!(header_token(&[b"Bearer a+/b=="]).unwrap().as_deref(), Some("a+/b=="));
    }

    /// No header or another scheme means "no bearer credentials", not malformed.
    #[test]
    fn no_credentials() {
        assert_eq!(header_token(&[]).unwrap(), None);
        assert_eq!(header_token(&[b"Basic dXNlcjpwYXNz"]).unwrap(), None);
    }

    /// Empty tokens, bad characters and duplicate headers are invalid_request.
    #[test]
    fn malformed_credentials() {
        for bad in [&b"Bearer"[..], b"Bearer ", b"Bearer a b", b"Bearer a,b", b"Bearer =", b"Bearer a\"b"] {
            assert!(
                matches!(header_token(&[bad]), Err(AuthError::InvalidRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(header_token(&[b"Bearer \xff"]), Err(AuthError::InvalidRequest(_))));
        assert!(matches!(header_token(&[b"Bearer a", b"Bearer a"]), Err(AuthError::InvalidRequest(_))));
    }

    /// Tokens over the size limit are refused before any parsing.
    #[test]
    fn oversize_token() {
        let long = format!("Bearer {}", "a".repeat(65));
        assert!(matches!(header_token(&[long.as_bytes()]), Err(AuthError::InvalidToken(_))));
    }

    /// Query and form tokens are ignored unless enabled.
    #[test]
    fn query_and_form_off_by_default() {
        let h = HeaderMap::new();
        let off = settings(false, false);
        assert_eq!(bearer(&h, Some("access_token=abc"), Some(b"access_token=abc"), &off).unwrap(), None);
        let on = settings(true, true);
        assert_eq!(bearer(&h, Some("x=1&access_token=abc"), None, &on).unwrap().as_deref(), Some("abc"));
        assert_eq!(bearer(&h, None, Some(b"access_token=a%2Fb"), &on).unwrap().as_deref(), Some("a/b"));
    }

    /// A token in two places, or two access_token parameters, is invalid_request.
    #[test]
    fn token_in_two_places() {
        let on = settings(true, true);
        let h = headers(&[b"Bearer abc"]);
        assert!(matches!(bearer(&h, Some("access_token=abc"), None, &on), Err(AuthError::InvalidRequest(_))));
        let none = HeaderMap::new();
        assert!(matches!(
            bearer(&none, Some("access_token=a"), Some(b"access_token=b"), &on),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            bearer(&none, Some("access_token=a&access_token=b"), None, &on),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(bearer(&none, Some("access_token="), None, &on), Err(AuthError::InvalidRequest(_))));
    }
}

//! Bearer extraction (RFC 6750 §2): `auth::extract::bearer` over an Authorization header set,
//! a query string and a form body.
//!
//! Input, so that seeds can be written by hand: byte 0 is a digit whose bits enable the query
//! (1) and the form body (2); byte 1 sets `max_token_bytes` to `16 * byte + 1`; then lines:
//! `A:<value>` an Authorization header (repeatable), `Q:<query>`, `F:<form body>`.
//!
//! Checked: an extracted token is one RFC 6750 §2.1 b64token within the limit and is the one
//! credential the request carried; two credentials are always refused; same input, same answer.
#![no_main]

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tokengate::auth::extract::bearer;
use tokengate::config::TokenSettings;

fuzz_target!(|data: &[u8]| {
    let [flags, limit, rest @ ..] = data else { return };
    let settings = TokenSettings {
        allow_query: flags & 1 != 0,
        allow_form_body: flags & 2 != 0,
        max_token_bytes: 16 * usize::from(*limit) + 1,
    };
    let mut headers = HeaderMap::new();
    let mut authorization = Vec::new();
    let (mut query, mut form) = (None, None);
    for line in rest.split(|&b| b == b'\n') {
        match line {
            [b'A', b':', value @ ..] => {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append(AUTHORIZATION, value);
                    authorization.push(line[2..].to_vec());
                }
            }
            [b'Q', b':', value @ ..] if query.is_none() => query = std::str::from_utf8(value).ok(),
            [b'F', b':', value @ ..] if form.is_none() => form = Some(value),
            _ => {}
        }
    }

    let result = bearer(&headers, query, form, &settings).map(|t| t.map(Cow::into_owned));
    let credentials =
        credentials(&authorization, query.filter(|_| settings.allow_query), form.filter(|_| settings.allow_form_body));
    match &result {
        Ok(Some(token)) => {
            assert!(is_b64token(token), "not a b64token: {token:?}");
            assert!(token.len() <= settings.max_token_bytes);
            assert_eq!(credentials, [token.clone()], "the token is not the one credential");
        }
        Ok(None) => assert!(credentials.is_empty(), "credentials ignored: {credentials:?}"),
        Err(_) => {}
    }
    if credentials.len() > 1 {
        assert!(result.is_err(), "two credentials accepted");
    }
    let again = bearer(&headers, query, form, &settings).map(|t| t.map(Cow::into_owned));
    assert_eq!(again, result);
});

/// Every bearer credential, read independently of the code under test: Authorization values
/// with the `Bearer` scheme, then `access_token` parameters.
fn credentials(authorization: &[Vec<u8>], query: Option<&str>, form: Option<&[u8]>) -> Vec<String> {
    let mut found: Vec<String> = authorization
        .iter()
        .filter_map(|v| {
            let v = String::from_utf8_lossy(v);
            let (scheme, rest) = v.split_once(' ').unwrap_or((&v, ""));
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim_start_matches(' ').to_owned())
        })
        .collect();
    for raw in [query.map(str::as_bytes), form].into_iter().flatten() {
        found.extend(form_urlencoded::parse(raw).filter(|(n, _)| n == "access_token").map(|(_, v)| v.into_owned()));
    }
    found
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

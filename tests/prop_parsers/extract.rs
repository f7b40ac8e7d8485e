//! Bearer extraction (RFC 6750 §2): what comes out is one RFC 6750 §2.1 b64token within the size
//! limit, taken from the one place that carried it.

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use tokengate::auth::extract::bearer;
use tokengate::auth::AuthError;
use tokengate::config::TokenSettings;

use crate::cases;

/// One request's possible carriers of a token.
#[derive(Debug, Clone)]
struct Carriers {
    authorization: Vec<Vec<u8>>,
    query: Option<String>,
    form: Option<Vec<u8>>,
    allow_query: bool,
    allow_form_body: bool,
    max_token_bytes: usize,
}

impl Carriers {
    fn settings(&self) -> TokenSettings {
        TokenSettings {
            allow_query: self.allow_query,
            allow_form_body: self.allow_form_body,
            max_token_bytes: self.max_token_bytes,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in &self.authorization {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(value).expect("strategy yields valid values"));
        }
        headers
    }

    fn extract(&self) -> Result<Option<String>, AuthError> {
        let headers = self.headers();
        bearer(&headers, self.query.as_deref(), self.form.as_deref(), &self.settings()).map(|t| t.map(Cow::into_owned))
    }

    /// Every bearer credential the request carries in a place the settings read, by an
    /// independent reading: header values with the `Bearer` scheme, `access_token` parameters.
    fn credentials(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .authorization
            .iter()
            .filter_map(|v| {
                let v = String::from_utf8_lossy(v);
                let (scheme, rest) = v.split_once(' ').unwrap_or((&v, ""));
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim_start_matches(' ').to_owned())
            })
            .collect();
        let params = |raw: &[u8]| -> Vec<String> {
            form_urlencoded::parse(raw).filter(|(n, _)| n == "access_token").map(|(_, v)| v.into_owned()).collect()
        };
        if let (true, Some(q)) = (self.allow_query, &self.query) {
            found.extend(params(q.as_bytes()));
        }
        if let (true, Some(f)) = (self.allow_form_body, &self.form) {
            found.extend(params(f));
        }
        found
    }
}

/// RFC 6750 §2.1, written out: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Mostly the b64token alphabet, sometimes the bytes next to it, sometimes anything printable.
fn tokenish() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~+/-]{0,20}={0,2}",
        2 => "[A-Za-z0-9._~+/= ,;\"%&\t-]{0,20}",
        1 => "\\PC{0,8}",
    ]
}

/// An `Authorization` value: a scheme, spaces, a token; or any bytes a header value may hold.
fn authorization_value() -> impl Strategy<Value = Vec<u8>> {
    let schemes =
        prop::sample::select(&["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Bearerx", "", "Bearer,"][..]);
    prop_oneof![
        4 => (schemes, " {0,3}", tokenish()).prop_map(|(s, sp, t)| format!("{s}{sp}{t}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|v| v.into_iter().filter(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t').collect()),
    ]
}

/// A form-encoded string, raw (so `%` and `+` decode), with `access_token` now and then.
fn form_string() -> impl Strategy<Value = String> {
    let name = prop::sample::select(&["access_token", "access_token", "x", "access%5Ftoken", "Access_token", ""][..]);
    prop::collection::vec((name, prop::option::of(tokenish())), 0..4).prop_map(|pairs| {
        let pairs: Vec<String> =
            pairs.into_iter().map(|(n, v)| v.map_or_else(|| n.to_owned(), |v| format!("{n}={v}"))).collect();
        pairs.join("&")
    })
}

fn carriers() -> impl Strategy<Value = Carriers> {
    (
        prop::collection::vec(authorization_value(), 0..3),
        prop::option::of(form_string()),
        prop::option::of(form_string().prop_map(String::into_bytes)),
        any::<bool>(),
        any::<bool>(),
        1usize..48,
    )
        .prop_map(|(authorization, query, form, allow_query, allow_form_body, max_token_bytes)| Carriers {
            authorization,
            query,
            form,
            allow_query,
            allow_form_body,
            max_token_bytes,
        })
}

proptest! {
    #![proptest_config(cases(2000))]

    /// A token comes out only when exactly one credential went in, and it is that credential, a
    /// b64token within the limit; two credentials are always refused (RFC 6750 §2: "MUST NOT use
    /// more than one method"). The same request always gets the same answer.
    #[test]
    fn extraction_yields_one_b64token_or_refuses(c in carriers()) {
        let result = c.extract();
        let credentials = c.credentials();
        match &result {
            Ok(Some(token)) => {
                prop_assert!(is_b64token(token), "{token:?}");
                prop_assert!(token.len() <= c.max_token_bytes);
                prop_assert_eq!(credentials.len(), 1);
                prop_assert_eq!(token, &credentials[0]);
            }
            Ok(None) => prop_assert!(credentials.is_empty(), "{credentials:?}"),
            Err(e) => prop_assert!(matches!(e, AuthError::InvalidRequest(_) | AuthError::InvalidToken(_)), "{e:?}"),
        }
        if credentials.len() > 1 {
            prop_assert!(result.is_err(), "two credentials accepted: {:?}", result);
        }
        prop_assert_eq!(c.extract(), result);
    }

    /// Positive control: one valid token, in any one enabled place, is extracted exactly.
    #[test]
    fn one_valid_token_is_extracted(token in "[A-Za-z0-9._~+/-]{1,30}={0,2}", place in 0..3u8, extra in "[a-z]{1,5}=[a-z]{0,5}") {
        let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let param = format!("{extra}&access_token={encoded}");
        let c = Carriers {
            authorization: if place == 0 { vec![format!("Bearer {token}").into_bytes()] } else { vec![] },
            query: Some(if place == 1 { param.clone() } else { extra.clone() }),
            form: Some(if place == 2 { param } else { extra }.into_bytes()),
            allow_query: true,
            allow_form_body: true,
            max_token_bytes: token.len(),
        };
        prop_assert_eq!(c.extract(), Ok(Some(token.clone())));
        let shorter = Carriers { max_token_bytes: token.len() - 1, ..c };
        prop_assert_eq!(shorter.extract(), Err(AuthError::InvalidToken("token exceeds the size limit")));
    }
}

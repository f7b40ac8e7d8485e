//! JWS compact parsing (RFC 7515 §7.1): only exactly three non-empty base64url segments are
//! accepted, an accepted token has one reading, and header and payload round-trip.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokengate::auth::jws::{looks_like_jws, parse, Jws};

use crate::{cases, json_object, json_value};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn is_base64url(segment: &str) -> bool {
    segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What every accepted token satisfies, checked against the token text itself.
fn check_accepted(token: &str, jws: &Jws<'_>) -> Result<(), TestCaseError> {
    let segments: Vec<&str> = token.split('.').collect();
    prop_assert_eq!(segments.len(), 3, "{:?}", token);
    prop_assert!(segments.iter().all(|s| !s.is_empty() && is_base64url(s)), "{:?}", token);
    prop_assert_eq!(format!("{}.{}", jws.signing_input, jws.signature), token);
    prop_assert!(looks_like_jws(token));
    // One reading: parsing again gives the same header, claims and segments.
    let again = parse(token).expect("accepted once, accepted again");
    prop_assert_eq!(&again.header, &jws.header);
    prop_assert_eq!(&again.claims, &jws.claims);
    prop_assert_eq!((again.signing_input, again.signature), (jws.signing_input, jws.signature));
    Ok(())
}

fn check_any(token: &str) -> Result<(), TestCaseError> {
    match parse(token) {
        Ok(jws) => check_accepted(token, &jws),
        Err(e) => {
            prop_assert_eq!(parse(token).unwrap_err(), e);
            Ok(())
        }
    }
}

/// The segment a valid token is made of, in a valid or a nearly valid form.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(b64(br#"{"alg":"RS256","kid":"k1"}"#)),
        Just(b64(br#"{"sub":"alice","exp":1}"#)),
        Just(b64(b"sig")),
        Just("e30".to_owned()),
        "[A-Za-z0-9_-]{1,12}",
        "[A-Za-z0-9_+/=-]{1,12}",
        json_value().prop_map(|v| b64(v.to_string().as_bytes())),
    ]
}

/// The `alg` member: supported, unsupported, `none` in several spellings, not a string.
fn alg() -> impl Strategy<Value = Option<Value>> {
    let names = ["RS256", "ES256", "PS512", "EdDSA", "HS256", "none", "NONE", "nOnE", "rs256", "RSA-OAEP", "", "dir"];
    prop_oneof![
        4 => prop::sample::select(names.to_vec()).prop_map(|a| Some(json!(a))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
}

/// A header object: arbitrary members plus an `alg`.
fn header() -> impl Strategy<Value = Map<String, Value>> {
    (json_object(), alg()).prop_map(|(mut h, alg)| {
        match alg {
            Some(alg) => h.insert("alg".into(), alg),
            None => h.remove("alg"),
        };
        h
    })
}

/// Whether `parse` must accept this header and payload: RFC 7515 §4.1.1 `alg`, never `none`
/// (RFC 8725 §3.1), no `crit` (§4.1.11), no key references (RFC 8725 §3.10), string `kid`/`typ`,
/// an object payload (RFC 7519 §7.2).
fn acceptable(header: &Map<String, Value>, payload: &Value) -> Option<Algorithm> {
    if ["crit", "jku", "jwk", "x5u", "x5c"].iter().any(|m| header.contains_key(*m)) || !payload.is_object() {
        return None;
    }
    if !["kid", "typ"].iter().all(|m| header.get(*m).is_none_or(Value::is_string)) {
        return None;
    }
    let alg = header.get("alg")?.as_str()?;
    if alg.eq_ignore_ascii_case("none") {
        return None;
    }
    alg.parse().ok()
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Only three non-empty base64url segments parse, whatever the segments are.
    #[test]
    fn only_three_nonempty_segments_parse(segments in prop::collection::vec(segment(), 0..6)) {
        let token = segments.join(".");
        check_any(&token)?;
        let well_formed = segments.len() == 3 && segments.iter().all(|s| !s.is_empty() && is_base64url(s));
        if !well_formed {
            prop_assert!(parse(&token).is_err(), "{token:?}");
        }
    }

    /// Header and payload JSON round-trip exactly when they are acceptable, and are refused otherwise.
    #[test]
    fn header_and_payload_round_trip(h in header(), payload in prop_oneof![json_object().prop_map(Value::Object), json_value()],
                                     sig in prop::collection::vec(any::<u8>(), 1..40)) {
        let token = format!("{}.{}.{}", b64(Value::Object(h.clone()).to_string().as_bytes()),
                            b64(payload.to_string().as_bytes()), b64(&sig));
        match (acceptable(&h, &payload), parse(&token)) {
            (Some(alg), Ok(jws)) => {
                prop_assert_eq!(jws.header.alg, alg);
                prop_assert_eq!(jws.header.kid.as_deref(), h.get("kid").and_then(Value::as_str));
                // Compared with serde_json's own reading of the text: floats need not round-trip.
                let reread: Value = serde_json::from_str(&payload.to_string()).unwrap();
                prop_assert_eq!(Value::Object(jws.claims.clone()), reread);
                check_accepted(&token, &jws)?;
            }
            (None, Err(_)) => {}
            (expected, got) => prop_assert!(false, "expected {:?}, got {:?} for {} / {}", expected, got, Value::Object(h), payload),
        }
    }

    /// Any one-character edit of a valid token is refused or still satisfies every invariant.
    #[test]
    fn edits_of_a_valid_token(at in any::<prop::sample::Index>(), edit in 0..3u8, c in "[A-Za-z0-9_.=+/ -]|\\PC") {
        let token = format!("{}.{}.{}", b64(br#"{"alg":"ES256","typ":"at+jwt"}"#), b64(br#"{"sub":"a","aud":["x"]}"#), b64(b"sig!"));
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        let c = c.chars().next().unwrap();
        match edit {
            0 => chars.insert(i, c),
            1 => { chars.remove(i); }
            _ => chars[i] = c,
        }
        check_any(&chars.into_iter().collect::<String>())?;
    }

    /// Arbitrary text near the alphabet never panics and never breaks the invariants.
    #[test]
    fn arbitrary_text(token in "[A-Za-z0-9_.=+/ -]{0,64}|\\PC{0,64}") {
        check_any(&token)?;
    }
}

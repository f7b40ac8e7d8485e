//! JWS compact parsing (RFC 7515 §7.1): `auth::jws::parse`.
//!
//! Input: a token as text; or, when it starts with `{`, header JSON and payload JSON on two
//! lines, which the target base64url-encodes (with a fixed signature) so that the fuzzer can
//! mutate the JSON itself rather than its encoding.
//!
//! Checked: only exactly three non-empty base64url segments are accepted, the segments are
//! returned as found, `alg` is never `none`, an accepted payload reads as serde_json reads it,
//! and parsing is deterministic.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokengate::auth::jws::{looks_like_jws, parse};

fuzz_target!(|data: &[u8]| {
    let (token, payload) = match data {
        [b'{', ..] => {
            let (header, payload) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
            let payload = payload.get(1..).unwrap_or_default();
            let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            (format!("{}.{}.c2ln", b64(header), b64(payload)), Some(payload))
        }
        _ => match std::str::from_utf8(data) {
            Ok(token) => (token.to_owned(), None),
            Err(_) => return,
        },
    };
    let _ = looks_like_jws(&token);
    let Ok(jws) = parse(&token) else {
        assert!(parse(&token).is_err(), "refused once, accepted again");
        return;
    };
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert!(segments
        .iter()
        .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
    assert_eq!(format!("{}.{}", jws.signing_input, jws.signature), token);
    assert!(!format!("{:?}", jws.header.alg).eq_ignore_ascii_case("none"));
    assert!(looks_like_jws(&token));
    if let Some(payload) = payload {
        let plain: Map<String, Value> = serde_json::from_slice(payload).expect("the strict reading is stricter");
        assert_eq!(plain, jws.claims);
    }
    let again = parse(&token).expect("accepted once, accepted again");
    assert_eq!(
        (&again.header, &again.claims, again.signing_input, again.signature),
        (&jws.header, &jws.claims, jws.signing_input, jws.signature)
    );
});

//! JWKS parsing (RFC 7517 §5): a public key set never yields an HMAC key, never binds a key to an
//! algorithm outside the issuer's allowlist (RFC 8725 §3.1), and odd members drop a key instead
//! of failing the set or panicking.

use std::sync::{LazyLock, OnceLock};

use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use serde_json::{json, Value};
use tokengate::auth::keyset::KeySet;
use tokengate::dev_issuer::SigningKey;

use crate::{cases, json_number, json_value};

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// Every algorithm: the HMAC ones and the asymmetric default allowlist.
static ALL: LazyLock<Vec<Algorithm>> =
    LazyLock::new(|| HMAC.iter().chain(tokengate::config::DEFAULT_ALGORITHMS).copied().collect());

/// Real public JWKs, one per key type and curve, generated once (RSA takes 100+ ms).
fn real_jwks() -> &'static [Value] {
    static KEYS: OnceLock<Vec<Value>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            SigningKey::rsa("rsa", Algorithm::RS256),
            SigningKey::ec("p256", Algorithm::ES256),
            SigningKey::ec("p384", Algorithm::ES384),
            SigningKey::ed25519("ed"),
        ]
        .iter()
        .map(SigningKey::public_jwk)
        .collect()
    })
}

/// Values for the members a JWK is read by: right, wrong, and of the wrong JSON type.
fn member_value() -> impl Strategy<Value = Value> {
    let strings = [
        "oct",
        "none",
        "RSA",
        "EC",
        "OKP",
        "weird",
        "",
        "HS256",
        "RS256",
        "PS256",
        "ES256",
        "ES384",
        "EdDSA",
        "sig",
        "enc",
        "P-256",
        "P-384",
        "P-521",
        "Ed25519",
        "X25519",
        "AQAB",
        "AA",
        "c2VjcmV0",
        "not*base64",
    ];
    prop_oneof![
        4 => prop::sample::select(strings.to_vec()).prop_map(|s| json!(s)),
        1 => prop::sample::select(vec![json!(["verify"]), json!(["sign"]), json!([]), json!(["verify", 7])]),
        1 => json_number(),
        1 => json_value(),
    ]
}

/// One JWK: a real key or an empty object, with up to four members overwritten or removed.
fn jwk() -> impl Strategy<Value = Value> {
    let names = ["kty", "alg", "use", "key_ops", "crv", "n", "e", "x", "y", "k", "kid"];
    let edit = (prop::sample::select(names.to_vec()), prop::option::of(member_value()));
    (0..=real_jwks().len(), prop::collection::vec(edit, 0..4)).prop_map(|(base, edits)| {
        let mut key = real_jwks().get(base).cloned().unwrap_or_else(|| json!({}));
        for (name, value) in edits {
            let object = key.as_object_mut().expect("JWKs are objects");
            match value {
                Some(value) => object.insert(name.to_owned(), value),
                None => object.remove(name),
            };
        }
        key
    })
}

/// A JWKS document as text, with the length of its `keys` array when it surely is a JSON object
/// with one: mostly `{"keys": [...]}`, sometimes any JSON, sometimes a number spelled beyond
/// what f64 or u64 can hold.
fn document() -> impl Strategy<Value = (String, Option<usize>)> {
    let huge = prop::sample::select(
        &["1e400", "-1e400", "123456789012345678901234567890", "-0", "1.5e-400", "18446744073709551616"][..],
    );
    prop_oneof![
        6 => prop::collection::vec(prop_oneof![4 => jwk(), 1 => json_value()], 0..5)
            .prop_map(|keys| (json!({ "keys": keys }).to_string(), Some(keys.len()))),
        1 => json_value().prop_map(|v| (v.to_string(), None)),
        1 => (prop::sample::select(&["n", "e", "x", "kid", "alg"][..]), huge).prop_map(|(name, number)| {
            let mut key = real_jwks()[0].clone();
            key[name] = json!("PLACEHOLDER");
            let text = json!({ "keys": [key] }).to_string().replace("\"PLACEHOLDER\"", number);
            (text, None)
        }),
    ]
}

proptest! {
    #![proptest_config(cases(500))]

    /// Whatever the document and allowlist: no HMAC key, no key outside the allowlist, no more
    /// keys than the document listed; an error only for a document without a `keys` array.
    #[test]
    fn public_key_sets_hold_only_allowed_asymmetric_keys(
        (text, listed) in document(),
        allowed in prop::sample::subsequence(&ALL[..], 0..=ALL.len()),
    ) {
        let Ok(set) = KeySet::from_jwks(text.as_bytes(), &allowed) else {
            prop_assert!(listed.is_none(), "a keys array was refused: {}", text);
            return Ok(());
        };
        let listed_keys = serde_json::from_str::<Value>(&text).ok().and_then(|v| Some(v.get("keys")?.as_array()?.len()));
        prop_assert!(set.len() <= listed_keys.unwrap_or(0), "{} keys from {}", set.len(), text);
        for alg in HMAC {
            prop_assert_eq!(set.candidates(None, alg).count(), 0, "{:?} key from {}", alg, text);
        }
        for alg in ALL.iter().filter(|a| !allowed.contains(a)) {
            prop_assert_eq!(set.candidates(None, *alg).count(), 0, "{:?} not allowed, from {}", alg, text);
        }
    }

    /// Positive control: the real keys, untouched, all load under the full allowlist.
    #[test]
    fn real_keys_load(picks in prop::sample::subsequence((0..real_jwks().len()).collect::<Vec<_>>(), 1..=4)) {
        let keys: Vec<Value> = picks.iter().map(|&i| real_jwks()[i].clone()).collect();
        let set = KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes(), &ALL[..]).unwrap();
        prop_assert_eq!(set.len(), keys.len());
        for key in &keys {
            prop_assert!(set.has_kid(key["kid"].as_str().unwrap()));
        }
    }
}

//! JWKS parsing (RFC 7517 §5): `auth::keyset::KeySet::from_jwks`.
//!
//! Input: a JWKS document, parsed under two allowlists: every algorithm (HMAC included, the
//! worst case) and a narrow one.
//!
//! Checked: never an HMAC key from a public key set (RFC 8725 §3.1, the RSA-key-as-HMAC-secret
//! confusion), never a key bound to an algorithm outside the allowlist, never more keys than
//! the document listed, and the same answer under the same allowlist.
#![no_main]

use std::sync::LazyLock;

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokengate::auth::keyset::KeySet;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Every algorithm: the HMAC ones and the asymmetric default allowlist.
static ALL: LazyLock<Vec<Algorithm>> =
    LazyLock::new(|| HMAC.iter().chain(tokengate::config::DEFAULT_ALGORITHMS).copied().collect());
const NARROW: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

fuzz_target!(|data: &[u8]| {
    // serde's derived struct reading also takes the sequence form `[[key, …]]` for `{"keys": […]}`.
    let listed = serde_json::from_slice::<Value>(data).ok().and_then(|v| match v {
        Value::Array(fields) => Some(fields.first()?.as_array()?.len()),
        v => Some(v.get("keys")?.as_array()?.len()),
    });
    for allowlist in [&ALL[..], &NARROW[..]] {
        let Ok(set) = KeySet::from_jwks(data, allowlist) else { continue };
        assert!(set.len() <= listed.expect("a key set from a document without a keys array"));
        for alg in HMAC {
            assert_eq!(set.candidates(None, alg).count(), 0, "an HMAC key from a public JWKS");
        }
        for alg in ALL.iter().filter(|a| !allowlist.contains(a)) {
            assert_eq!(set.candidates(None, *alg).count(), 0, "a key for {alg:?}, outside the allowlist");
        }
        let again = KeySet::from_jwks(data, allowlist).expect("accepted once, accepted again");
        assert_eq!(format!("{again:?}"), format!("{set:?}"));
    }
});

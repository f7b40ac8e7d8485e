//! `KeySet`: an issuer's verification keys, parsed once when the JWKS is fetched so the request
//! path only selects and verifies.
//!
//! Each key is bound to the algorithms it may verify (RFC 8725 §3.1, §2.1): the `alg` its JWK
//! declares, or else its key type's algorithms, always intersected with the issuer's allowlist.
//! Symmetric (`oct`) keys from a JWKS are never used: HMAC only with a configured secret, so a
//! token signed "HS256 with the RSA public key" has no key to verify against.

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{crypto, Algorithm, DecodingKey};
use serde::Deserialize;

/// A token is tried against at most this many keys. Without a `kid` every key bound to the
/// token's algorithm is a candidate, and each try is a signature verification (17–140 µs): a
/// large key set must not turn one forged token into dozens. Three covers an issuer that
/// rotates without kids (previous, current and next key); beyond it the token is refused.
pub const MAX_CANDIDATE_KEYS: usize = 3;

/// Why a key set offers no key to try for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCandidate {
    /// No key is bound to the token's `kid` and algorithm.
    Unknown,
    /// More than `MAX_CANDIDATE_KEYS` are.
    TooMany,
}

/// One verification key and the algorithms it may be used with.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
    /// Asymmetric keys parsed once into aws-lc-rs (the library behind jsonwebtoken's
    /// `aws_lc_rs` backend), one per allowed algorithm: jsonwebtoken's own verify rebuilds the
    /// public key from its components on every call, which is a tenth of an RSA verification
    /// and most of an ECDSA one. Empty for HMAC keys, which go through jsonwebtoken.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyKey {
    /// Whether `signature` (raw bytes) over `message` verifies under `alg`, which must be one of
    /// this key's algorithms.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8], signature_b64: &str) -> bool {
        if !self.algorithms.contains(&alg) {
            return false;
        }
        match self.parsed.iter().find(|(a, _)| *a == alg) {
            Some((_, key)) => key.verify_sig(message, signature).is_ok(),
            None => matches!(crypto::verify(signature_b64, message, &self.key, alg), Ok(true)),
        }
    }
}

/// The usable keys of one issuer.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (k.kid.as_deref(), &k.algorithms)).collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("the JWKS is not a JSON object with a \"keys\" array: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parse a JWKS document (RFC 7517 §5). Keys that cannot be used for signature verification
    /// under `allowlist` are skipped, so one odd key does not break the set.
    pub fn from_jwks(bytes: &[u8], allowlist: &[Algorithm]) -> Result<KeySet, KeySetError> {
        let raw: RawJwks = serde_json::from_slice(bytes).map_err(|e| KeySetError::Malformed(e.to_string()))?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| verify_key(&jwk, allowlist))
            .collect();
        Ok(KeySet { keys })
    }

    /// A shared-secret key set: HMAC algorithms from the allowlist only.
    pub fn from_secret(secret: &[u8], allowlist: &[Algorithm]) -> KeySet {
        let algorithms: Vec<_> = allowlist
            .iter()
            .copied()
            .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        KeySet {
            keys: vec![VerifyKey { kid: None, algorithms, key: DecodingKey::from_secret(secret), parsed: Vec::new() }],
        }
    }

    /// Keys that may verify a token with this `kid` and `alg`. A token without `kid` may be
    /// verified by any key bound to its algorithm.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>, alg: Algorithm) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys.iter().filter(move |k| k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid))
    }

    /// The keys to try for a token with this `kid` and `alg`: the candidates, unless there are
    /// none or more than `MAX_CANDIDATE_KEYS`.
    pub fn keys_to_try<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Result<impl Iterator<Item = &'a VerifyKey> + 'a, NoCandidate> {
        match self.candidates(kid, alg).take(MAX_CANDIDATE_KEYS + 1).count() {
            0 => Err(NoCandidate::Unknown),
            n if n > MAX_CANDIDATE_KEYS => Err(NoCandidate::TooMany),
            _ => Ok(self.candidates(kid, alg)),
        }
    }

    /// Whether any key carries this `kid` (used to decide whether a refetch could help).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn verify_key(jwk: &Jwk, allowlist: &[Algorithm]) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return None;
        }
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // `oct` keys and unknown key types never verify anything here.
        _ => return None,
    };
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
    };
    let algorithms: Vec<Algorithm> =
        family.iter().copied().filter(|a| allowlist.contains(a) && declared.is_none_or(|d| d == *a)).collect();
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let parsed =
        algorithms.iter().map(|&alg| Some((alg, parse_public(&jwk.algorithm, alg)?))).collect::<Option<_>>()?;
    Some(VerifyKey { kid: jwk.common.key_id.clone(), algorithms, key, parsed })
}

/// The JWK's public key in aws-lc-rs form for one JWS algorithm (RFC 7518 §3); `None` when the
/// key material is malformed, which drops the key like any other unusable JWK.
fn parse_public(params: &AlgorithmParameters, alg: Algorithm) -> Option<ParsedPublicKey> {
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
    match params {
        AlgorithmParameters::RSA(rsa) => {
            // aws-lc checks the size only when verifying: drop such a key now, so it is never a
            // candidate that cannot verify anything.
            let n = b64(&rsa.n)?;
            if !RSA_MODULUS_BITS.contains(&bit_length(&n)) {
                return None;
            }
            let components = RsaPublicKeyComponents { n, e: b64(&rsa.e)? };
            components.to_parsed_public_key(rsa_parameters(alg)?).ok()
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            // SEC1 uncompressed point; JWS ECDSA signatures are the fixed-width R || S form.
            let point = [&[4u8][..], &b64(&ec.x)?, &b64(&ec.y)?].concat();
            let verifier: &'static dyn sig::VerificationAlgorithm = match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return None,
            };
            ParsedPublicKey::new(verifier, point).ok()
        }
        AlgorithmParameters::OctetKeyPair(okp) if alg == Algorithm::EdDSA => {
            ParsedPublicKey::new(&sig::ED25519, b64(&okp.x)?).ok()
        }
        _ => None,
    }
}

/// RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"; larger than 8192 bits is
/// refused by the verification parameters below (and costs more per token than it is worth).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Bits of a big-endian unsigned integer, leading zeros ignored.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

/// RFC 7518 §3.3, §3.5; 2048 bits at least ("A key of size 2048 bits or larger MUST be used").
fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ALGORITHMS;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    /// An RSA-1024 public modulus and an RS256 signature by its private key (generated once
    /// with Python `cryptography`; the private key was not kept).
    const RSA_1024_N: &str = "Y5e9k857J3Og0sMRowrsGaUSVT30cMJGMmCfBSye617p7bQOzvJkgVocIwGEoXItdUCDVXhJwYDfJmXN-mMPQaGU1AgZzHZ-G3vWFnWjRJQ8Wp7S3AdQFBn-Sa2Wn8-lhVstigFpKr_Z2PvJTHBSS4WllmFNedfCvIBzz44iRnk";
    const RSA_1024_INPUT: &str = "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogImsifQ.eyJzdWIiOiAieCJ9";
    const RSA_1024_SIG: &str = "kziC6bUpBuB3ixHUH-eptxIpxZ9EueaNzCPKGwtqXYzyTAbfRFkOpMRoNhUP9v7Nx5AL9ig1ZshFTxhhxAz2MaotrdZYfz8tU4X-rGaVEOdonfYRnfgWoC4IK0KQcNIPAoay1b4N_DEf5p0_vbUNsaoztdaEx6P1NDAdCR4dbJA";

    fn jwks(keys: &str) -> Vec<u8> {
        format!(r#"{{"keys":[{keys}]}}"#).into_bytes()
    }

    /// A JWK's declared `alg` binds the key to that algorithm alone.
    #[test]
    fn declared_alg_binds_key() {
        let set = KeySet::from_jwks(
            &jwks(&format!(r#"{{"kty":"RSA","kid":"k1","alg":"PS256","n":"{RSA_N}","e":"AQAB"}}"#)),
            DEFAULT_ALGORITHMS,
        )
        .unwrap();
        assert_eq!(set.candidates(Some("k1"), Algorithm::PS256).count(), 1);
        assert_eq!(set.candidates(Some("k1"), Algorithm::RS256).count(), 0);
    }

    /// Without a declared `alg`, an RSA key may verify the RSA algorithms of the allowlist only.
    #[test]
    fn undeclared_alg_uses_family_within_allowlist() {
        let doc = jwks(&format!(r#"{{"kty":"RSA","kid":"k1","n":"{RSA_N}","e":"AQAB"}}"#));
        let set = KeySet::from_jwks(&doc, &[Algorithm::RS256, Algorithm::ES256]).unwrap();
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::PS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
    }

    /// Symmetric keys, encryption keys and unknown key types in a JWKS are skipped, not fatal.
    #[test]
    fn unusable_keys_are_skipped() {
        let doc = jwks(&format!(
            r#"{{"kty":"oct","kid":"s","k":"c2VjcmV0"}},
               {{"kty":"RSA","kid":"enc","use":"enc","n":"{RSA_N}","e":"AQAB"}},
               {{"kty":"weird","kid":"w"}},
               {{"kty":"RSA","kid":"sign-only","key_ops":["sign"],"n":"{RSA_N}","e":"AQAB"}},
               {{"kty":"RSA","kid":"ok","n":"{RSA_N}","e":"AQAB"}},
               {{"kty":"RSA","kid":"verify","key_ops":["sign","verify"],"n":"{RSA_N}","e":"AQAB"}}"#
        ));
        let all = [DEFAULT_ALGORITHMS, &[Algorithm::HS256]].concat();
        let set = KeySet::from_jwks(&doc, &all).unwrap();
        // RFC 7517 §4.3: `key_ops` without "verify" is not a verification key.
        assert_eq!(set.len(), 2);
        assert!(set.has_kid("ok") && set.has_kid("verify"));
        assert!(!set.has_kid("s") && !set.has_kid("enc") && !set.has_kid("sign-only"));
        // Debug lists kids and algorithms, never key material.
        let dump = format!("{set:?}");
        assert!(dump.starts_with("KeySet {") && dump.contains("\"verify\"") && dump.contains("RS256"), "{dump}");
        assert!(!dump.contains(&RSA_N[..20]), "key material in {dump}");
    }

    /// A key parses only for an algorithm of its own type, even if asked for another: an Ed25519
    /// key is never an ECDSA or RSA verifier, an EC key never Ed25519 (the JWK's family already
    /// decides this in `verify_key`; this is the second lock).
    #[test]
    fn keys_parse_only_for_their_own_algorithms() {
        let okp: Jwk =
            serde_json::from_str(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)
                .unwrap();
        assert!(parse_public(&okp.algorithm, Algorithm::EdDSA).is_some());
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256] {
            assert!(parse_public(&okp.algorithm, alg).is_none(), "{alg:?}");
        }
    }

    /// A token without `kid` is offered every key of its algorithm up to MAX_CANDIDATE_KEYS, and
    /// none beyond: the set is refused whole, not tried in order.
    #[test]
    fn candidate_keys_are_bounded() {
        let rsa = |kid: &str| format!(r#"{{"kty":"RSA","kid":"{kid}","alg":"RS256","n":"{RSA_N}","e":"AQAB"}}"#);
        let set = |kids: &[&str]| {
            let keys: Vec<String> = kids.iter().map(|k| rsa(k)).collect();
            KeySet::from_jwks(&jwks(&keys.join(",")), DEFAULT_ALGORITHMS).unwrap()
        };
        let three = set(&["a", "b", "c"]);
        assert_eq!(three.keys_to_try(None, Algorithm::RS256).unwrap().count(), 3);
        assert_eq!(three.keys_to_try(None, Algorithm::ES256).err(), Some(NoCandidate::Unknown));
        let four = set(&["a", "b", "c", "d"]);
        assert_eq!(four.keys_to_try(None, Algorithm::RS256).err(), Some(NoCandidate::TooMany));
        assert_eq!(four.keys_to_try(Some("d"), Algorithm::RS256).unwrap().count(), 1, "a kid picks one");
        assert_eq!(four.keys_to_try(Some("x"), Algorithm::RS256).err(), Some(NoCandidate::Unknown));
        // The same kid on many keys (a broken or hostile JWKS) is bounded too.
        let same = set(&["k", "k", "k", "k", "k"]);
        assert_eq!(same.keys_to_try(Some("k"), Algorithm::RS256).err(), Some(NoCandidate::TooMany));
    }

    /// Key sizes come from the JWKS: an RSA modulus outside 2048–8192 bits drops the key when
    /// the set is parsed (RFC 7518 §3.3). A huge public exponent parses, but aws-lc refuses it
    /// at verification (measured ~4 µs, less than a normal RSA-2048 verification).
    #[test]
    fn out_of_range_rsa_keys_are_unusable() {
        let n = URL_SAFE_NO_PAD.decode(RSA_N).unwrap();
        let rsa = |n: &[u8], e: &[u8]| {
            let (n, e) = (URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e));
            jwks(&format!(r#"{{"kty":"RSA","kid":"k","alg":"RS256","n":"{n}","e":"{e}"}}"#))
        };
        let parse = |doc: &[u8]| KeySet::from_jwks(doc, DEFAULT_ALGORITHMS).unwrap();
        assert_eq!(parse(&rsa(&n, &[1, 0, 1])).len(), 1, "the control");
        let rsa_1024 = URL_SAFE_NO_PAD.decode(RSA_1024_N).unwrap();
        let wide = [&n[..], &n[..], &n[..], &n[..], &n[..]].concat();
        for (what, n) in [("1024 bits", rsa_1024.clone()), ("2047 bits", n[1..].to_vec()), ("10240 bits", wide)] {
            assert!(parse(&rsa(&n, &[1, 0, 1])).is_empty(), "{what}");
        }
        // What the size check spares us: aws-lc would parse the 1024-bit key, then refuse even
        // a genuine signature of its own at every verification.
        let components = RsaPublicKeyComponents { n: rsa_1024, e: vec![1, 0, 1] };
        let parsed = components.to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256).unwrap();
        let signature = URL_SAFE_NO_PAD.decode(RSA_1024_SIG).unwrap();
        assert!(parsed.verify_sig(RSA_1024_INPUT.as_bytes(), &signature).is_err());
        let huge_e = [&[1u8][..], &[0; 255][..], &[1][..]].concat();
        let set = parse(&rsa(&n, &huge_e));
        let key = set.candidates(Some("k"), Algorithm::RS256).next().unwrap();
        assert!(!key.verify(Algorithm::RS256, b"m", &[1; 256], "AA"));
    }

    #[test]
    fn bit_lengths() {
        assert_eq!([bit_length(&[]), bit_length(&[0, 0]), bit_length(&[1]), bit_length(&[0, 0x80, 0])], [0, 0, 1, 16]);
    }

    /// A document without a `keys` array is an error (the previous key set is then kept).
    #[test]
    fn malformed_document_is_an_error() {
        assert!(KeySet::from_jwks(b"{}", DEFAULT_ALGORITHMS).is_err());
        assert!(KeySet::from_jwks(b"not json", DEFAULT_ALGORITHMS).is_err());
    }

    /// A key verifies only under the algorithms it is bound to, and malformed key material
    /// drops the key instead of failing at request time.
    #[test]
    fn parsed_keys_are_bound_and_checked() {
        let doc = jwks(&format!(r#"{{"kty":"RSA","kid":"k1","alg":"RS256","n":"{RSA_N}","e":"AQAB"}}"#));
        let set = KeySet::from_jwks(&doc, DEFAULT_ALGORITHMS).unwrap();
        let key = set.candidates(Some("k1"), Algorithm::RS256).next().unwrap();
        assert!(!key.verify(Algorithm::PS256, b"m", &[0; 256], "AA"), "PS256 on an RS256-bound key");
        assert!(!key.verify(Algorithm::RS256, b"m", &[0; 256], "AA"), "a zero signature");
        let bad = jwks(
            r#"{"kty":"RSA","kid":"bad","n":"not*base64","e":"AQAB"},{"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"}"#,
        );
        assert!(KeySet::from_jwks(&bad, DEFAULT_ALGORITHMS).unwrap().is_empty());
    }
}

//! Local JWT validation (RFC 7519 §7.2, RFC 8725, RFC 9068 §4) of a parsed `Jws` against an
//! issuer's `KeySet`.
//!
//! Pure: time comes in as `now` (unix seconds). The signature is checked with
//! `jsonwebtoken::crypto::verify` against keys already bound to algorithms; claims are read only
//! after a signature verifies. `jsonwebtoken::decode`/`Validation` are deliberately not used
//! (60 s default leeway, `nbf` off, `aud`/`iss` only checked when present).
//!
//! Audience membership is not checked here: a route may override the issuer's audiences, so
//! route policy does it. Here `aud` only has to be well-formed.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::jws::{JoseHeader, Jws};
use super::keyset::{KeySet, NoCandidate};
use super::token_cache::Holds;
use super::{iss, policy, AuthError, Principal};
use crate::config::Issuer;

const ALG_NOT_ALLOWED: AuthError = AuthError::InvalidToken("algorithm not allowed");
const NOT_AT_JWT: AuthError = AuthError::InvalidToken("token type is not at+jwt");
const UNKNOWN_KEY: AuthError = AuthError::InvalidToken("unknown signing key");
const NO_KEYS: AuthError = AuthError::Unavailable("signing keys are not available");
const TOO_MANY_KEYS: AuthError =
    AuthError::InvalidToken("token has no kid and the key set has too many candidate keys");
const TOO_MANY_KEYS_FOR_KID: AuthError = AuthError::InvalidToken("the key set has too many keys with this kid");
const BAD_SIGNATURE: AuthError = AuthError::InvalidToken("signature verification failed");
const NO_EXP: AuthError = AuthError::InvalidToken("token has no exp claim");
const EXPIRED: AuthError = AuthError::InvalidToken("token expired");
const NOT_YET_VALID: AuthError = AuthError::InvalidToken("token not yet valid");
const WRONG_ISSUER: AuthError = AuthError::InvalidToken("wrong issuer");
const MALFORMED_CLAIM: AuthError = AuthError::InvalidToken("malformed claim");
/// The issuer's `required_claims` do not hold: an ID token (Cognito `token_use: id`, Keycloak
/// `typ: ID`) or a refresh token is not an access token.
pub const NOT_AN_ACCESS_TOKEN: AuthError =
    AuthError::InvalidToken("token is not an access token of this issuer (a required claim does not match)");
/// Microsoft Graph's tokens carry a `nonce` header and only Graph can verify them.
const GRAPH_TOKEN: AuthError = AuthError::InvalidToken(
    "signature verification failed: the token has a nonce header, as Microsoft Graph tokens do, and only \
     Graph can verify it; request a token for this API instead",
);

/// Header checks that need the issuer but no key.
pub fn check_header(header: &JoseHeader, issuer: &Issuer) -> Result<(), AuthError> {
    // RFC 8725 §3.1: only algorithms on the issuer's explicit allowlist.
    if !issuer.algorithms.contains(&header.alg) {
        return Err(ALG_NOT_ALLOWED);
    }
    // RFC 9068 §4: resource servers MUST verify `typ` is "at+jwt" (or "application/at+jwt");
    // media types compare case-insensitively (RFC 7515 §4.1.9). Enforced when configured.
    if issuer.require_at_jwt {
        let ok = header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"));
        if !ok {
            return Err(NOT_AT_JWT);
        }
    }
    Ok(())
}

/// Verify the signature of `jws` with `keys`, then its claims, and build the `Principal` (which
/// takes the claims over: no copy of the map).
pub fn verify(
    jws: Jws<'_>,
    keys: &KeySet,
    issuer: &Issuer,
    issuer_index: usize,
    issuer_id: Arc<str>,
    now: u64,
) -> Result<Principal, AuthError> {
    check_header(&jws.header, issuer)?;
    check_signature(&jws, Some(keys))?;
    accept(jws, issuer, issuer_index, issuer_id, now)
}

/// The claim checks and the `Principal` of a token whose header and signature `check_header`
/// and `check_signature` accepted.
pub fn accept(
    jws: Jws<'_>,
    issuer: &Issuer,
    issuer_index: usize,
    issuer_id: Arc<str>,
    now: u64,
) -> Result<Principal, AuthError> {
    check_claims(&jws.claims, issuer, now)?;
    Ok(Principal::from_claims(issuer_index, issuer_id, jws.claims, &issuer.sources))
}

/// How long a refusal from `verify` stays true for the same token bytes: a signature that did
/// not verify stays bad, and a key set with too many candidates stays too large, until the
/// issuer's key set changes; an expired token stays expired. Anything else (an unknown `kid`
/// the next JWKS may bring, `nbf` not reached) is decided anew.
pub fn refusal_holds(e: &AuthError, issuer: usize, generation: u64) -> Holds {
    match *e {
        BAD_SIGNATURE | GRAPH_TOKEN | TOO_MANY_KEYS | TOO_MANY_KEYS_FOR_KID => {
            Holds::WhileKeySet { issuer, generation }
        }
        EXPIRED => Holds::Always,
        _ => Holds::NotAtAll,
    }
}

/// Whether refetching the issuer's key set could turn this refusal by `check_signature` of a
/// token with this header around: its key may be one not fetched yet — no keys yet, an unknown
/// `kid`, or, for a token without `kid` (whose key cannot be looked up by name), a signature
/// no current key verifies.
pub fn refetch_may_help(e: &AuthError, header: &JoseHeader) -> bool {
    match *e {
        NO_KEYS | UNKNOWN_KEY => true,
        BAD_SIGNATURE | GRAPH_TOKEN => header.kid.is_none(),
        _ => false,
    }
}

/// RFC 7515 §5.2 / RFC 7519 §7.2 step 7: the token is valid only if its signature verifies with
/// a key bound to the header's `alg` (RFC 8725 §3.1: the key, not the token, decides the
/// algorithm family, so an RSA key is never an HMAC secret). At most `MAX_CANDIDATE_KEYS` keys
/// are tried. `keys` is `None` before the issuer's first key set arrives.
pub fn check_signature(jws: &Jws, keys: Option<&KeySet>) -> Result<(), AuthError> {
    let alg = jws.header.alg;
    let kid = jws.header.kid.as_deref();
    let mut candidates = keys.ok_or(NO_KEYS)?.keys_to_try(kid, alg).map_err(|e| match e {
        NoCandidate::Unknown => UNKNOWN_KEY,
        NoCandidate::TooMany if kid.is_none() => TOO_MANY_KEYS,
        NoCandidate::TooMany => TOO_MANY_KEYS_FOR_KID,
    })?;
    let message = jws.signing_input.as_bytes();
    let signature = URL_SAFE_NO_PAD.decode(jws.signature).map_err(|_| BAD_SIGNATURE)?;
    if candidates.any(|key| key.verify(alg, message, &signature, jws.signature)) {
        return Ok(());
    }
    Err(if jws.header.nonce { GRAPH_TOKEN } else { BAD_SIGNATURE })
}

/// Claim checks, run only on signed claims.
fn check_claims(claims: &Map<String, Value>, issuer: &Issuer, now: u64) -> Result<(), AuthError> {
    // RFC 9068 §2.2: `exp` is REQUIRED in an access token.
    check_time_window(claims, issuer, now, true)?;
    // RFC 9068 §4: `iss` MUST exactly match the issuer; RFC 7519 §4.1.1: a case-sensitive string
    // (one of the issuer's documented spellings, a tenant template bound to `tid`: `iss`).
    match claims.get("iss") {
        Some(Value::String(iss)) if iss::names(issuer, iss, iss::tenant_of(claims)) => {}
        Some(Value::String(_)) | None => return Err(WRONG_ISSUER),
        Some(_) => return Err(MALFORMED_CLAIM),
    }
    check_claim_shapes(claims, issuer)?;
    check_required_claims(claims, issuer)
}

/// The issuer's `required_claims`: what makes its token an access token.
pub(super) fn check_required_claims(claims: &Map<String, Value>, issuer: &Issuer) -> Result<(), AuthError> {
    match issuer.required_claims.iter().all(|rule| policy::holds(rule, claims)) {
        true => Ok(()),
        false => Err(NOT_AN_ACCESS_TOKEN),
    }
}

/// `exp` and `nbf` with the issuer's leeway — shared by JWTs and introspection answers (where
/// `exp` is optional, RFC 7662 §2.2).
pub(super) fn check_time_window(
    claims: &Map<String, Value>,
    issuer: &Issuer,
    now: u64,
    exp_required: bool,
) -> Result<(), AuthError> {
    let now = i128::from(now);
    let leeway = i128::from(issuer.leeway.as_secs());
    // RFC 7519 §4.1.4: the token MUST NOT be accepted "on or after" `exp`, with "some small
    // leeway" for clock skew: expired means `now >= exp + leeway`. `now` is whole seconds (the
    // second that has begun), so comparing with `floor(exp)` refuses a fractional `exp` up to a
    // second early, never late.
    match claims.get("exp") {
        None if exp_required => return Err(NO_EXP),
        Some(v) if now >= (numeric_date(v)?.floor() as i128).saturating_add(leeway) => return Err(EXPIRED),
        _ => {}
    }
    // RFC 7519 §4.1.5: the token MUST NOT be accepted before `nbf` (minus the leeway);
    // `now < nbf` ⇔ `now < ceil(nbf)`.
    if let Some(nbf) = claims.get("nbf") {
        if now + leeway < numeric_date(nbf)?.ceil() as i128 {
            return Err(NOT_YET_VALID);
        }
    }
    Ok(())
}

/// The shapes of the claims a `Principal` is built from, shared by JWTs and introspection
/// answers so both kinds of token map alike.
pub(super) fn check_claim_shapes(claims: &Map<String, Value>, issuer: &Issuer) -> Result<(), AuthError> {
    // RFC 7519 §4.1.3: `aud` is a string or an array of strings. Membership: route policy.
    optional_string_or_strings(claims.get("aud"))?;
    // RFC 7519 §4.1.2 / RFC 8693 §4.2 / RFC 7662 §2.2 / OIDC: single strings (`scope` is
    // space-separated). `azp` feeds the client id too.
    for name in ["sub", "client_id", "azp", "scope", "username"] {
        if !matches!(claims.get(name), None | Some(Value::String(_))) {
            return Err(MALFORMED_CLAIM);
        }
    }
    optional_string_or_strings(claims.get("scp"))?;
    let sources = &issuer.sources;
    for path in sources.audience.iter().chain(&sources.scopes).chain(&sources.roles) {
        optional_string_or_strings(path.get(claims))?;
    }
    if !sources.client_id.iter().all(|path| matches!(path.get(claims), None | Some(Value::String(_)))) {
        return Err(MALFORMED_CLAIM);
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): a JSON number, integer or not. serde_json never yields NaN or ±∞.
fn numeric_date(value: &Value) -> Result<f64, AuthError> {
    value.as_f64().ok_or(MALFORMED_CLAIM)
}

fn optional_string_or_strings(value: Option<&Value>) -> Result<(), AuthError> {
    match value {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(MALFORMED_CLAIM),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::crypto;
    use std::sync::OnceLock;
    use std::time::Duration;

    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    use super::*;

    /// Only refusals that stay true for the same bytes may be remembered.
    #[test]
    fn which_refusals_hold() {
        assert_eq!(refusal_holds(&BAD_SIGNATURE, 2, 7), Holds::WhileKeySet { issuer: 2, generation: 7 });
        assert_eq!(refusal_holds(&EXPIRED, 2, 7), Holds::Always);
        for key_set_bound in [TOO_MANY_KEYS, TOO_MANY_KEYS_FOR_KID] {
            assert_eq!(refusal_holds(&key_set_bound, 2, 7), Holds::WhileKeySet { issuer: 2, generation: 7 });
        }
        for passing in [UNKNOWN_KEY, NOT_YET_VALID, AuthError::Unavailable("signing keys are not available")] {
            assert_eq!(refusal_holds(&passing, 2, 7), Holds::NotAtAll);
        }
    }
    use crate::auth::jws;
    use crate::config::{KeySource, DEFAULT_ALGORITHMS};

    const ISS: &str = "https://idp.example.com";
    const NOW: u64 = 1_700_000_000;

    /// PKCS#8 v1 DER of one RSA-2048 key, generated once per test run.
    fn rsa_pkcs8() -> &'static [u8] {
        static KEY: OnceLock<Vec<u8>> = OnceLock::new();
        KEY.get_or_init(|| {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
            der.as_ref().to_vec()
        })
    }

    /// jsonwebtoken's aws-lc RSA signer wants PKCS#1 DER; its PEM reader unwraps PKCS#8.
    fn rsa_encoding_key() -> EncodingKey {
        rsa_encoding_key_from(rsa_pkcs8())
    }

    fn rsa_encoding_key_from(der: &[u8]) -> EncodingKey {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }

    fn ec_encoding_key() -> EncodingKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref())
    }

    fn ed_encoding_key() -> EncodingKey {
        let pair = Ed25519KeyPair::generate().unwrap();
        EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref())
    }

    /// The public JWK of `enc`, with `kid`, and `alg` declared only when `declare_alg`.
    fn public_jwk(enc: &EncodingKey, alg: Algorithm, kid: &str, declare_alg: bool) -> Value {
        let mut jwk = Jwk::from_encoding_key(enc, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        if !declare_alg {
            jwk.common.key_algorithm = None;
        }
        serde_json::to_value(jwk).unwrap()
    }

    fn keyset(jwks: &[Value], allowlist: &[Algorithm]) -> KeySet {
        let doc = json!({ "keys": jwks });
        KeySet::from_jwks(doc.to_string().as_bytes(), allowlist).unwrap()
    }

    fn issuer() -> Issuer {
        Issuer::new(ISS, KeySource::JwksUri(format!("{ISS}/jwks")))
    }

    fn b64_json(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Sign `header`.`claims` by hand with `key` under `alg` (whatever the header says).
    fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let sig = crypto::sign(input.as_bytes(), key, alg).unwrap();
        format!("{input}.{sig}")
    }

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "sub": "alice",
            "aud": "api",
            "exp": NOW + 300,
            "iat": NOW - 10,
            "scope": "read write",
            "client_id": "c1",
        })
    }

    fn run(token: &str, keys: &KeySet, issuer: &Issuer, now: u64) -> Result<Principal, AuthError> {
        let jws = jws::parse(token)?;
        verify(jws, keys, issuer, 0, Arc::from(ISS), now)
    }

    /// The RSA key set and signing key used by most tests: kid "rsa", no declared alg.
    fn rsa() -> (EncodingKey, KeySet) {
        let enc = rsa_encoding_key();
        let set = keyset(&[public_jwk(&enc, Algorithm::RS256, "rsa", false)], DEFAULT_ALGORITHMS);
        (enc, set)
    }

    fn rs256(claims: &Value, enc: &EncodingKey) -> String {
        sign(&json!({"alg": "RS256", "kid": "rsa", "typ": "at+jwt"}), claims, enc, Algorithm::RS256)
    }

    /// A valid RS256 token verifies and yields the principal.
    #[test]
    fn valid_rs256() {
        let (enc, set) = rsa();
        let p = run(&rs256(&claims(), &enc), &set, &issuer(), NOW).unwrap();
        assert_eq!(p.issuer, 0);
        assert_eq!(&*p.issuer_id, ISS);
        assert_eq!(p.subject.as_deref(), Some("alice"));
        assert_eq!(p.audiences, ["api"]);
        assert_eq!(p.scopes, ["read", "write"]);
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        assert_eq!(p.expires_at, NOW + 300);
        assert_eq!(Value::Object(p.claims), claims());
    }

    /// A valid PS256 token verifies against an RSA key without a declared alg.
    #[test]
    fn valid_ps256() {
        let (enc, set) = rsa();
        let t = sign(&json!({"alg": "PS256", "kid": "rsa"}), &claims(), &enc, Algorithm::PS256);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
    }

    /// A valid ES256 token verifies against its P-256 key.
    #[test]
    fn valid_es256() {
        let enc = ec_encoding_key();
        let set = keyset(&[public_jwk(&enc, Algorithm::ES256, "ec", true)], DEFAULT_ALGORITHMS);
        let t = sign(&json!({"alg": "ES256", "kid": "ec"}), &claims(), &enc, Algorithm::ES256);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
    }

    /// A valid EdDSA token verifies against its Ed25519 key.
    #[test]
    fn valid_eddsa() {
        let enc = ed_encoding_key();
        let set = keyset(&[public_jwk(&enc, Algorithm::EdDSA, "ed", true)], DEFAULT_ALGORITHMS);
        let t = sign(&json!({"alg": "EdDSA", "kid": "ed"}), &claims(), &enc, Algorithm::EdDSA);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
    }

    /// With several keys, the `kid` selects the key; a signature by another key fails.
    #[test]
    fn kid_selects_among_keys() {
        let (rsa_enc, _) = rsa();
        let ec = ec_encoding_key();
        let ec2 = ec_encoding_key();
        let set = keyset(
            &[
                public_jwk(&rsa_enc, Algorithm::RS256, "rsa", false),
                public_jwk(&ec, Algorithm::ES256, "ec1", true),
                public_jwk(&ec2, Algorithm::ES256, "ec2", true),
            ],
            DEFAULT_ALGORITHMS,
        );
        let good = sign(&json!({"alg": "ES256", "kid": "ec2"}), &claims(), &ec2, Algorithm::ES256);
        assert!(run(&good, &set, &issuer(), NOW).is_ok());
        let wrong = sign(&json!({"alg": "ES256", "kid": "ec1"}), &claims(), &ec2, Algorithm::ES256);
        assert_eq!(run(&wrong, &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
    }

    /// A token without `kid` verifies against any key bound to its algorithm.
    #[test]
    fn no_kid_uses_matching_alg_keys() {
        let (rsa_enc, _) = rsa();
        let ec = ec_encoding_key();
        let ec2 = ec_encoding_key();
        let set = keyset(
            &[
                public_jwk(&rsa_enc, Algorithm::RS256, "rsa", false),
                public_jwk(&ec, Algorithm::ES256, "ec1", true),
                public_jwk(&ec2, Algorithm::ES256, "ec2", true),
            ],
            DEFAULT_ALGORITHMS,
        );
        let t = sign(&json!({"alg": "ES256"}), &claims(), &ec2, Algorithm::ES256);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
        let t = sign(&json!({"alg": "RS256"}), &claims(), &rsa_enc, Algorithm::RS256);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
        // No key is bound to ES384.
        let t = sign(&json!({"alg": "ES384"}), &claims(), &ec2, Algorithm::ES256);
        assert_eq!(run(&t, &set, &issuer(), NOW).unwrap_err(), UNKNOWN_KEY);
    }

    /// A token without `kid` is tried against at most MAX_CANDIDATE_KEYS keys: with more
    /// candidates it is refused before any verification — so a token genuinely signed by one of
    /// them is refused, which trying them in turn would have admitted. A `kid` still selects.
    #[test]
    fn no_kid_tries_a_bounded_number_of_keys() {
        use crate::auth::keyset::MAX_CANDIDATE_KEYS;
        let keys: Vec<EncodingKey> = (0..=MAX_CANDIDATE_KEYS + 2).map(|_| ec_encoding_key()).collect();
        let jwks: Vec<Value> =
            keys.iter().enumerate().map(|(i, k)| public_jwk(k, Algorithm::ES256, &format!("ec{i}"), true)).collect();
        let last = keys.last().unwrap();
        let no_kid = sign(&json!({"alg": "ES256"}), &claims(), last, Algorithm::ES256);
        let many = keyset(&jwks, DEFAULT_ALGORITHMS);
        assert_eq!(run(&no_kid, &many, &issuer(), NOW).unwrap_err(), TOO_MANY_KEYS);
        let kid = format!("ec{}", keys.len() - 1);
        let with_kid = sign(&json!({"alg": "ES256", "kid": kid}), &claims(), last, Algorithm::ES256);
        assert!(run(&with_kid, &many, &issuer(), NOW).is_ok(), "the kid selects the late key");
        // Up to the bound, every candidate is tried: the last one verifies.
        let bounded = keyset(&jwks[jwks.len() - MAX_CANDIDATE_KEYS..], DEFAULT_ALGORITHMS);
        assert!(run(&no_kid, &bounded, &issuer(), NOW).is_ok());
        // Many keys sharing the token's kid are bounded alike.
        let same_kid: Vec<Value> = keys.iter().map(|k| public_jwk(k, Algorithm::ES256, "dup", true)).collect();
        let dup = sign(&json!({"alg": "ES256", "kid": "dup"}), &claims(), last, Algorithm::ES256);
        assert_eq!(
            run(&dup, &keyset(&same_kid, DEFAULT_ALGORITHMS), &issuer(), NOW).unwrap_err(),
            TOO_MANY_KEYS_FOR_KID
        );
    }

    /// A refetch can help a key not fetched yet: no keys, an unknown kid, or a token without kid
    /// that no current key verifies; not a bad signature by a named key, nor a too-large set.
    #[test]
    fn when_a_refetch_may_help() {
        let header = |kid: Option<&str>| JoseHeader {
            alg: Algorithm::RS256,
            kid: kid.map(str::to_owned),
            typ: None,
            nonce: false,
        };
        let (named, unnamed) = (header(Some("k")), header(None));
        for e in [NO_KEYS, UNKNOWN_KEY] {
            assert!(refetch_may_help(&e, &named) && refetch_may_help(&e, &unnamed), "{e}");
        }
        assert!(refetch_may_help(&BAD_SIGNATURE, &unnamed));
        assert!(!refetch_may_help(&BAD_SIGNATURE, &named));
        for e in [TOO_MANY_KEYS, TOO_MANY_KEYS_FOR_KID, EXPIRED, MALFORMED_CLAIM] {
            assert!(!refetch_may_help(&e, &unnamed), "{e}");
        }
        let (enc, _) = rsa();
        let t = rs256(&claims(), &enc);
        assert_eq!(check_signature(&jws::parse(&t).unwrap(), None), Err(NO_KEYS));
    }

    /// A `kid` not in the key set is an unknown key.
    #[test]
    fn unknown_kid() {
        let (enc, set) = rsa();
        let t = sign(&json!({"alg": "RS256", "kid": "other"}), &claims(), &enc, Algorithm::RS256);
        assert_eq!(run(&t, &set, &issuer(), NOW).unwrap_err(), UNKNOWN_KEY);
        assert_eq!(run(&t, &KeySet::default(), &issuer(), NOW).unwrap_err(), UNKNOWN_KEY);
    }

    /// A key whose JWK declares `alg` cannot verify a token under another algorithm (RFC 8725 §3.1).
    #[test]
    fn declared_key_alg_is_binding() {
        let enc = rsa_encoding_key();
        let set = keyset(&[public_jwk(&enc, Algorithm::PS256, "rsa", true)], DEFAULT_ALGORITHMS);
        let ps = sign(&json!({"alg": "PS256", "kid": "rsa"}), &claims(), &enc, Algorithm::PS256);
        assert!(run(&ps, &set, &issuer(), NOW).is_ok());
        // Same key, genuinely signed with RS256: refused, the key is for PS256 only.
        let rs = sign(&json!({"alg": "RS256", "kid": "rsa"}), &claims(), &enc, Algorithm::RS256);
        assert_eq!(run(&rs, &set, &issuer(), NOW).unwrap_err(), UNKNOWN_KEY);
    }

    /// An algorithm outside the issuer's allowlist is refused before any key is tried.
    #[test]
    fn alg_not_in_allowlist() {
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.algorithms = vec![Algorithm::ES256];
        assert_eq!(run(&rs256(&claims(), &enc), &set, &iss, NOW).unwrap_err(), ALG_NOT_ALLOWED);
    }

    /// HS256 "signed" with the RSA public modulus as HMAC secret is refused: HS256 is not
    /// allowlisted, and even when it is, an RSA key is never an HMAC candidate.
    #[test]
    fn hs256_with_rsa_public_key_is_refused() {
        let (enc, _) = rsa();
        let jwk = public_jwk(&enc, Algorithm::RS256, "rsa", false);
        let n = match serde_json::from_value::<Jwk>(jwk.clone()).unwrap().algorithm {
            AlgorithmParameters::RSA(rsa) => URL_SAFE_NO_PAD.decode(rsa.n).unwrap(),
            _ => unreachable!(),
        };
        let hmac = EncodingKey::from_secret(&n);
        let t = sign(&json!({"alg": "HS256", "kid": "rsa"}), &claims(), &hmac, Algorithm::HS256);
        // Default allowlist: asymmetric only.
        let set = keyset(std::slice::from_ref(&jwk), DEFAULT_ALGORITHMS);
        assert_eq!(run(&t, &set, &issuer(), NOW).unwrap_err(), ALG_NOT_ALLOWED);
        // HS256 allowlisted: the RSA key is still not an HMAC key.
        let allow = [DEFAULT_ALGORITHMS, &[Algorithm::HS256]].concat();
        let set = keyset(std::slice::from_ref(&jwk), &allow);
        let mut iss = issuer();
        iss.algorithms = allow;
        assert_eq!(run(&t, &set, &iss, NOW).unwrap_err(), UNKNOWN_KEY);
        // Nor with the JWK's JSON text (another classic choice of secret), with or without kid.
        let secret = EncodingKey::from_secret(jwk.to_string().as_bytes());
        let t = sign(&json!({"alg": "HS256"}), &claims(), &secret, Algorithm::HS256);
        assert_eq!(run(&t, &set, &iss, NOW).unwrap_err(), UNKNOWN_KEY);
    }

    /// A configured shared secret verifies HS256 when allowlisted.
    #[test]
    fn hs256_with_configured_secret() {
        let secret = b"a shared secret of thirty-two bytes!";
        let set = KeySet::from_secret(secret, &[Algorithm::HS256]);
        let mut iss = issuer();
        iss.algorithms = vec![Algorithm::HS256];
        let t = sign(&json!({"alg": "HS256"}), &claims(), &EncodingKey::from_secret(secret), Algorithm::HS256);
        assert!(run(&t, &set, &iss, NOW).is_ok());
        let t = sign(&json!({"alg": "HS256"}), &claims(), &EncodingKey::from_secret(b"wrong"), Algorithm::HS256);
        assert_eq!(run(&t, &set, &iss, NOW).unwrap_err(), BAD_SIGNATURE);
    }

    /// `alg: none` never validates, unsigned ("xx.yy.") or with a fake signature.
    #[test]
    fn alg_none_is_refused() {
        let (_, set) = rsa();
        let input = format!("{}.{}", b64_json(&json!({"alg": "none"})), b64_json(&claims()));
        assert_eq!(run(&format!("{input}."), &set, &issuer(), NOW).unwrap_err(), jws::parse("a.b.").unwrap_err());
        let e = run(&format!("{input}.c2lnbmF0dXJl"), &set, &issuer(), NOW).unwrap_err();
        assert_eq!(e, AuthError::InvalidToken("unsigned tokens are not accepted"));
    }

    /// A changed payload no longer matches the signature.
    #[test]
    fn tampered_payload() {
        let (enc, set) = rsa();
        let t = rs256(&claims(), &enc);
        let (h, rest) = t.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let forged = format!("{h}.{}.{s}", b64_json(&evil));
        assert_eq!(run(&forged, &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
        // A changed header (here: dropped typ) breaks the signature too.
        let forged = format!("{}.{rest}", b64_json(&json!({"alg": "RS256", "kid": "rsa"})));
        assert_eq!(run(&forged, &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
    }

    /// A stripped or truncated signature fails; no claims are read.
    #[test]
    fn stripped_or_bad_signature() {
        let (enc, set) = rsa();
        let t = rs256(&claims(), &enc);
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(
            run(&format!("{input}."), &set, &issuer(), NOW).unwrap_err(),
            AuthError::InvalidToken("malformed token")
        );
        assert_eq!(run(&format!("{input}.{}", &sig[..8]), &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
        assert_eq!(run(&format!("{input}.AAAA"), &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
    }

    /// Claims are checked only after the signature: an expired forged token reports the signature.
    #[test]
    fn signature_checked_before_claims() {
        let (enc, set) = rsa();
        let other = ec_encoding_key();
        let mut c = claims();
        c["exp"] = json!(1);
        c["iss"] = json!("https://evil.example");
        let t = rs256(&c, &enc);
        let (input, _) = t.rsplit_once('.').unwrap();
        let sig = crypto::sign(input.as_bytes(), &other, Algorithm::ES256).unwrap();
        assert_eq!(run(&format!("{input}.{sig}"), &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
    }

    /// RFC 7519 §4.1.4: a token is expired "on or after" `exp` + leeway; before, it is accepted.
    #[test]
    fn exp_and_leeway() {
        let (enc, set) = rsa();
        let leeway = issuer().leeway.as_secs();
        let mut c = claims();
        c["exp"] = json!(NOW - leeway + 1);
        let t = rs256(&c, &enc);
        assert!(run(&t, &set, &issuer(), NOW).is_ok());
        assert_eq!(run(&t, &set, &issuer(), NOW + 1).unwrap_err(), EXPIRED);
        let mut strict = issuer();
        strict.leeway = Duration::ZERO;
        c["exp"] = json!(NOW + 1);
        let t = rs256(&c, &enc);
        assert!(run(&t, &set, &strict, NOW).is_ok());
        assert_eq!(run(&t, &set, &strict, NOW + 1).unwrap_err(), EXPIRED, "accepted at exp");
        // Long expired.
        c["exp"] = json!(NOW - 3600);
        assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), EXPIRED);
    }

    /// `exp` may be a non-integer NumericDate; negative or zero dates are simply in the past.
    #[test]
    fn exp_numeric_forms() {
        let (enc, set) = rsa();
        let mut strict = issuer();
        strict.leeway = Duration::ZERO;
        let mut c = claims();
        c["exp"] = json!(NOW as f64 + 1.5);
        let t = rs256(&c, &enc);
        assert!(run(&t, &set, &strict, NOW).is_ok());
        assert_eq!(run(&t, &set, &strict, NOW + 1).unwrap_err(), EXPIRED);
        // Within the second of a fractional `exp`: refused (early rather than late).
        c["exp"] = json!(NOW as f64 + 0.5);
        assert_eq!(run(&rs256(&c, &enc), &set, &strict, NOW).unwrap_err(), EXPIRED);
        for past in [json!(-1), json!(0), json!(-1e300)] {
            c["exp"] = past;
            assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), EXPIRED);
        }
        c["exp"] = json!(1e300);
        assert!(run(&rs256(&c, &enc), &set, &issuer(), NOW).is_ok());
        c["exp"] = json!(u64::MAX);
        assert!(run(&rs256(&c, &enc), &set, &issuer(), u64::MAX).is_ok());
    }

    /// RFC 9068 §2.2: `exp` is required.
    #[test]
    fn missing_exp() {
        let (enc, set) = rsa();
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), NO_EXP);
    }

    /// `exp` and `nbf` must be numbers.
    #[test]
    fn non_numeric_dates_are_malformed() {
        let (enc, set) = rsa();
        for (name, value) in [
            ("exp", json!("1900000000")),
            ("exp", json!(null)),
            ("exp", json!([NOW + 300])),
            ("exp", json!(true)),
            ("nbf", json!("0")),
            ("nbf", json!({})),
        ] {
            let mut c = claims();
            c[name] = value;
            assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), MALFORMED_CLAIM, "{name}");
        }
    }

    /// RFC 7519 §4.1.5: a token before `nbf` − leeway is not yet valid.
    #[test]
    fn nbf_in_future() {
        let (enc, set) = rsa();
        let mut c = claims();
        c["nbf"] = json!(NOW + 31);
        let t = rs256(&c, &enc);
        assert_eq!(run(&t, &set, &issuer(), NOW).unwrap_err(), NOT_YET_VALID);
        assert!(run(&t, &set, &issuer(), NOW + 1).is_ok());
        c["nbf"] = json!(NOW as f64 + 30.5);
        let t = rs256(&c, &enc);
        assert_eq!(run(&t, &set, &issuer(), NOW).unwrap_err(), NOT_YET_VALID);
        assert!(run(&t, &set, &issuer(), NOW + 1).is_ok());
        c["nbf"] = json!(NOW - 100);
        assert!(run(&rs256(&c, &enc), &set, &issuer(), NOW).is_ok());
    }

    /// `iss` must be a string exactly equal to the configured issuer.
    #[test]
    fn wrong_issuer() {
        let (enc, set) = rsa();
        for iss in [
            json!("https://evil.example"),
            json!("https://IDP.example.com"),
            json!("https://idp.example.com/"),
            json!(""),
        ] {
            let mut c = claims();
            c["iss"] = iss.clone();
            assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), WRONG_ISSUER, "{iss}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), WRONG_ISSUER);
        c["iss"] = json!([ISS]);
        assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), MALFORMED_CLAIM);
    }

    /// `aud` is a string or an array of strings; membership is not checked here.
    #[test]
    fn aud_shape_not_membership() {
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.audiences = vec!["configured".into()];
        for aud in [json!("other"), json!(["a", "b"]), json!([])] {
            let mut c = claims();
            c["aud"] = aud.clone();
            assert!(run(&rs256(&c, &enc), &set, &iss, NOW).is_ok(), "{aud}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        assert!(run(&rs256(&c, &enc), &set, &iss, NOW).is_ok());
        for aud in [json!(1), json!(["a", 1]), json!({"a": 1}), json!(null), json!([["a"]])] {
            c["aud"] = aud.clone();
            assert_eq!(run(&rs256(&c, &enc), &set, &iss, NOW).unwrap_err(), MALFORMED_CLAIM, "{aud}");
        }
    }

    /// `sub`, `client_id`, `azp`, `scope` must be strings; `scp` (and a configured scope claim)
    /// a string or an array of strings.
    #[test]
    fn identity_claim_types() {
        let (enc, set) = rsa();
        for (name, value) in [
            ("sub", json!(42)),
            ("sub", json!(["alice"])),
            ("client_id", json!({"id": "c"})),
            ("azp", json!(1)),
            ("scope", json!(["read"])),
            ("scp", json!(7)),
            ("scp", json!(["read", 1])),
        ] {
            let mut c = claims();
            c[name] = value;
            assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap_err(), MALFORMED_CLAIM, "{name}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["a", "b"]);
        assert_eq!(run(&rs256(&c, &enc), &set, &issuer(), NOW).unwrap().scopes, ["a", "b"]);
        let mut iss = issuer();
        iss.sources.scopes = vec![crate::config::ClaimPath::top("permissions")];
        c["permissions"] = json!(["x:y"]);
        assert_eq!(run(&rs256(&c, &enc), &set, &iss, NOW).unwrap().scopes, ["x:y"]);
        c["permissions"] = json!([{"x": "y"}]);
        assert_eq!(run(&rs256(&c, &enc), &set, &iss, NOW).unwrap_err(), MALFORMED_CLAIM);
    }

    /// RFC 9068 §4: when required, `typ` must be at+jwt or application/at+jwt, case-insensitively.
    #[test]
    fn typ_at_jwt() {
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.require_at_jwt = true;
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            let t = sign(&json!({"alg": "RS256", "kid": "rsa", "typ": typ}), &claims(), &enc, Algorithm::RS256);
            assert!(run(&t, &set, &iss, NOW).is_ok(), "{typ}");
        }
        for typ in [Some("JWT"), Some("at+jwt "), Some("application/jwt"), Some("jwt+at"), None] {
            let mut header = json!({"alg": "RS256", "kid": "rsa"});
            if let Some(typ) = typ {
                header["typ"] = json!(typ);
            }
            let t = sign(&header, &claims(), &enc, Algorithm::RS256);
            assert_eq!(run(&t, &set, &iss, NOW).unwrap_err(), NOT_AT_JWT, "{typ:?}");
            // Not required: any typ (or none) is accepted.
            assert!(run(&t, &set, &issuer(), NOW).is_ok(), "{typ:?}");
        }
    }

    /// `check_header` alone: allowlist first, then typ.
    #[test]
    fn check_header_rules() {
        let mut iss = issuer();
        iss.require_at_jwt = true;
        let header = |alg, typ: Option<&str>| JoseHeader { alg, kid: None, typ: typ.map(str::to_owned), nonce: false };
        assert_eq!(check_header(&header(Algorithm::HS256, Some("at+jwt")), &iss), Err(ALG_NOT_ALLOWED));
        assert_eq!(check_header(&header(Algorithm::RS256, None), &iss), Err(NOT_AT_JWT));
        assert_eq!(check_header(&header(Algorithm::RS256, Some("at+JWT")), &iss), Ok(()));
    }

    /// Hostile headers never reach verification (parse refuses them), even with a good signature.
    #[test]
    fn hostile_headers_with_valid_signature() {
        let (enc, set) = rsa();
        let jwk = public_jwk(&enc, Algorithm::RS256, "rsa", false);
        for header in [
            json!({"alg": "RS256", "kid": "rsa", "jwk": jwk}),
            json!({"alg": "RS256", "kid": "rsa", "jku": "https://evil.example/jwks"}),
            json!({"alg": "RS256", "kid": "rsa", "crit": ["exp"], "exp": 1}),
        ] {
            let t = sign(&header, &claims(), &enc, Algorithm::RS256);
            assert!(matches!(run(&t, &set, &issuer(), NOW), Err(AuthError::InvalidToken(_))), "{header}");
        }
    }

    /// Duplicate claims are refused even when correctly signed.
    #[test]
    fn signed_duplicate_claims() {
        let (enc, set) = rsa();
        let header = b64_json(&json!({"alg": "RS256", "kid": "rsa"}));
        let body = format!(r#"{{"iss":"{ISS}","exp":{},"sub":"alice","sub":"admin"}}"#, NOW + 60);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body));
        let sig = crypto::sign(input.as_bytes(), &enc, Algorithm::RS256).unwrap();
        assert_eq!(
            run(&format!("{input}.{sig}"), &set, &issuer(), NOW).unwrap_err(),
            AuthError::InvalidToken("malformed token")
        );
    }

    fn path(p: &str) -> crate::config::ClaimPath {
        crate::config::ClaimPath::parse(p).unwrap()
    }

    /// Configured sources must have the shapes they are read as; a client id is a string.
    #[test]
    fn configured_sources_are_shape_checked() {
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.sources.audience = Some(path("client_id"));
        iss.sources.roles = vec![path("realm_access.roles")];
        iss.sources.client_id = vec![path("cid")];
        let mut c = claims();
        c["realm_access"] = json!({"roles": ["admin"]});
        c["cid"] = json!("c9");
        let p = run(&rs256(&c, &enc), &set, &iss, NOW).unwrap();
        assert_eq!((p.audiences.as_slice(), p.roles.as_slice()), (&["c1".to_string()][..], &["admin".to_string()][..]));
        assert_eq!(p.client_id.as_deref(), Some("c9"));
        for (name, value) in [
            ("realm_access", json!({"roles": [1]})),
            ("realm_access", json!({"roles": {"a": 1}})),
            ("cid", json!(["c9"])),
        ] {
            let mut bad = c.clone();
            bad[name] = value;
            assert_eq!(run(&rs256(&bad, &enc), &set, &iss, NOW).unwrap_err(), MALFORMED_CLAIM, "{name}");
        }
        let mut bad = c.clone();
        bad["client_id"] = json!(3);
        assert_eq!(run(&rs256(&bad, &enc), &set, &iss, NOW).unwrap_err(), MALFORMED_CLAIM);
    }

    /// An issuer's required claims decide whether its token is an access token at all.
    #[test]
    fn required_claims_refuse_other_token_kinds() {
        use crate::config::{ClaimRule, ClaimTest};
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.required_claims = vec![ClaimRule { claim: path("token_use"), test: ClaimTest::Equals(json!("access")) }];
        let mut c = claims();
        c["token_use"] = json!("access");
        assert!(run(&rs256(&c, &enc), &set, &iss, NOW).is_ok());
        for kind in [json!("id"), json!("ACCESS"), json!(["access"])] {
            c["token_use"] = kind;
            assert_eq!(run(&rs256(&c, &enc), &set, &iss, NOW).unwrap_err(), NOT_AN_ACCESS_TOKEN);
        }
        c.as_object_mut().unwrap().remove("token_use");
        assert_eq!(run(&rs256(&c, &enc), &set, &iss, NOW).unwrap_err(), NOT_AN_ACCESS_TOKEN);
        // Not remembered: a reload may change the rule.
        assert_eq!(refusal_holds(&NOT_AN_ACCESS_TOKEN, 0, 1), Holds::NotAtAll);
    }

    /// `iss` may be an alias or a tenant template bound to `tid`, never anything looser.
    #[test]
    fn issuer_spellings_after_the_signature() {
        let (enc, set) = rsa();
        let mut iss = issuer();
        iss.aliases = vec!["idp.example.com".into(), "https://login.example.com/{tenantid}/v2.0".into()];
        iss.tenants = vec!["t1".into()];
        let with = |iss_claim: &str, tid: Option<&str>| {
            let mut c = claims();
            c["iss"] = json!(iss_claim);
            if let Some(tid) = tid {
                c["tid"] = json!(tid);
            }
            rs256(&c, &enc)
        };
        assert!(run(&with("idp.example.com", None), &set, &iss, NOW).is_ok());
        assert!(run(&with("https://login.example.com/t1/v2.0", Some("t1")), &set, &iss, NOW).is_ok());
        for (claim, tid) in [
            ("https://login.example.com/t2/v2.0", Some("t2")),
            ("https://login.example.com/t1/v2.0", Some("t2")),
            ("https://login.example.com/t1/v2.0", None),
            ("IDP.example.com", None),
        ] {
            assert_eq!(run(&with(claim, tid), &set, &iss, NOW).unwrap_err(), WRONG_ISSUER, "{claim} {tid:?}");
        }
    }

    /// A token with a `nonce` header (Microsoft Graph's) that no key verifies says why.
    #[test]
    fn graph_tokens_are_named() {
        let (enc, set) = rsa();
        let other = rsa_encoding_key_other();
        let header = json!({"alg": "RS256", "kid": "rsa", "typ": "JWT", "nonce": "abc"});
        let forged = sign(&header, &claims(), &other, Algorithm::RS256);
        assert_eq!(run(&forged, &set, &issuer(), NOW).unwrap_err(), GRAPH_TOKEN);
        assert_eq!(refusal_holds(&GRAPH_TOKEN, 0, 4), Holds::WhileKeySet { issuer: 0, generation: 4 });
        let unnamed = JoseHeader { alg: Algorithm::RS256, kid: None, typ: None, nonce: true };
        assert!(refetch_may_help(&GRAPH_TOKEN, &unnamed));
        // With no nonce, the plain refusal; and a nonce header on a good signature is no obstacle.
        let plain = sign(&json!({"alg": "RS256", "kid": "rsa"}), &claims(), &other, Algorithm::RS256);
        assert_eq!(run(&plain, &set, &issuer(), NOW).unwrap_err(), BAD_SIGNATURE);
        assert!(run(&sign(&header, &claims(), &enc, Algorithm::RS256), &set, &issuer(), NOW).is_ok());
    }

    /// A second RSA key, for signatures no key in `rsa()` verifies.
    fn rsa_encoding_key_other() -> EncodingKey {
        static KEY: OnceLock<Vec<u8>> = OnceLock::new();
        let der = KEY.get_or_init(|| {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
            der.as_ref().to_vec()
        });
        rsa_encoding_key_from(der)
    }
}

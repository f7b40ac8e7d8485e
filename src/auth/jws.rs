//! JWS compact serialization parsing (RFC 7515 §7.1).
//!
//! `parse` turns a token into a header, a claims object and the exact bytes the signature covers,
//! or a fixed-text `AuthError`. Nothing here is verified: the result is only fit to pick a key
//! and check a signature (`crate::auth::jwt`). The parser is strict so that one token has exactly
//! one reading: canonical unpadded base64url, JSON objects without duplicate member names, and a
//! header that names no key material and no extension we would have to understand.
//!
//! It never panics and never puts token content into an error.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::AuthError;

const MALFORMED: AuthError = AuthError::InvalidToken("malformed token");
const ENCRYPTED: AuthError = AuthError::InvalidToken("encrypted tokens are not accepted");
const UNSIGNED: AuthError = AuthError::InvalidToken("unsigned tokens are not accepted");
const UNSUPPORTED_ALG: AuthError = AuthError::InvalidToken("unsupported algorithm");
const KEY_IN_HEADER: AuthError = AuthError::InvalidToken("key references in the token header are not accepted");
const CRITICAL: AuthError = AuthError::InvalidToken("critical header extensions are not supported");

/// The JOSE header members the gateway acts on. Any other member is ignored, except those that
/// make `parse` refuse the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// `alg` (RFC 7515 §4.1.1), never `none`.
    pub alg: Algorithm,
    /// `kid` (RFC 7515 §4.1.4).
    pub kid: Option<String>,
    /// `typ` (RFC 7515 §4.1.9), as written.
    pub typ: Option<String>,
    /// A `nonce` member: Microsoft Graph's access tokens carry one, and their signature covers a
    /// hash of it, so no one but Graph can verify them. Only read to say so in the refusal.
    pub nonce: bool,
}

/// A parsed, *unverified* JWS.
#[derive(Clone)]
pub struct Jws<'a> {
    pub header: JoseHeader,
    /// The decoded payload, a JSON object (RFC 7519 §7.2 step 10).
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes the signature covers (RFC 7515 §5.2).
    pub signing_input: &'a str,
    /// The signature segment, still base64url-encoded (known to decode).
    pub signature: &'a str,
}

/// Prints the header only: claims and signature are token content and stay out of logs.
impl fmt::Debug for Jws<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws").field("header", &self.header).finish_non_exhaustive()
    }
}

/// Parse a JWS compact serialization (RFC 7515 §7.1) without verifying it.
pub fn parse(token: &str) -> Result<Jws<'_>, AuthError> {
    let (header_b64, payload_b64, signature) = split(token)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

    let header_json = decode_object(header_b64)?;
    let header = header_from(&header_json)?;
    let claims = decode_object(payload_b64)?;
    // The signature segment must decode too (RFC 7515 §5.2 step 3); only its bytes are checked here.
    URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;

    Ok(Jws { header, claims, signing_input, signature })
}

/// Cheap test of whether `token` is shaped like a JWS: three non-empty base64url segments whose
/// first decodes to a JSON object. Says nothing about whether `parse` will accept it.
pub fn looks_like_jws(token: &str) -> bool {
    let Ok((header_b64, _, _)) = split(token) else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header_b64) else {
        return false;
    };
    serde_json::from_slice::<HashMap<String, IgnoredAny>>(&bytes).is_ok()
}

/// Split into exactly three non-empty segments of the base64url alphabet (RFC 7515 §2: no padding,
/// no whitespace). Five segments is the JWE compact shape (RFC 7516 §7.1).
fn split(token: &str) -> Result<(&str, &str, &str), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), rest) =
        (parts.next(), parts.next(), parts.next(), parts.count())
    else {
        return Err(MALFORMED);
    };
    match rest {
        0 => {}
        2 => return Err(ENCRYPTED),
        _ => return Err(MALFORMED),
    }
    for segment in [header, payload, signature] {
        if segment.is_empty() || !is_base64url(segment) {
            return Err(MALFORMED);
        }
    }
    Ok((header, payload, signature))
}

fn is_base64url(segment: &str) -> bool {
    every_byte(segment.as_bytes(), is_base64url_byte)
}

/// Whether `allowed` holds for every byte. Tokens are long and these checks run on every new
/// one: whole chunks are checked without branching so the compiler vectorizes them (a
/// byte-at-a-time early-exit loop cost ~1 µs per token).
#[inline]
pub(super) fn every_byte(bytes: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    bytes.chunks(64).all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
}

/// The base64url alphabet (RFC 4648 §5), branch-free.
pub(super) fn is_base64url_byte(b: u8) -> bool {
    // `b | 0x20` folds ASCII upper case onto lower case and maps nothing else into a..z.
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'-') | (b == b'_')
}

/// base64url → JSON object, refusing duplicate member names at any depth. The base64 engine
/// refuses padding and non-zero trailing bits, so each byte string has one encoding.
fn decode_object(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| MALFORMED)?;
    strict_object(&bytes).ok_or(MALFORMED)
}

fn header_from(json: &Map<String, Value>) -> Result<JoseHeader, AuthError> {
    // RFC 7515 §4.1.11: a recipient MUST reject a JWS whose `crit` lists an extension it does
    // not understand. We understand none (this also covers RFC 7797 `b64`), so any `crit` fails.
    if json.contains_key("crit") {
        return Err(CRITICAL);
    }
    // RFC 8725 §3.10: keys are never taken from the token. Rather than ignore these members,
    // fail closed: a token pointing at its own key is not one our issuers mint.
    if ["jku", "jwk", "x5u", "x5c"].iter().any(|m| json.contains_key(*m)) {
        return Err(KEY_IN_HEADER);
    }
    // RFC 7515 §4.1.1: `alg` MUST be present.
    let alg = match json.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(MALFORMED),
    };
    // RFC 8725 §3.1: `none` is never accepted, however it is spelled.
    if alg.eq_ignore_ascii_case("none") {
        return Err(UNSIGNED);
    }
    let alg: Algorithm = alg.parse().map_err(|_| UNSUPPORTED_ALG)?;
    Ok(JoseHeader {
        alg,
        kid: optional_string(json, "kid")?,
        typ: optional_string(json, "typ")?,
        nonce: json.contains_key("nonce"),
    })
}

fn optional_string(json: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match json.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MALFORMED),
    }
}

/// A JSON object whose members, at every depth, have unique names; `None` for anything else.
/// Also the reading of introspection answers (`introspect`): one body, one meaning.
#[doc(hidden)]
pub fn strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Some(map),
        _ => None,
    }
}

/// A `serde_json::Value` whose objects, at every depth, have unique member names.
/// (RFC 7515 §4 / RFC 7519 §4: a parser MUST reject duplicates or use the last one; serde_json
/// silently keeps the last, we reject.) Depth is bounded by serde_json's recursion limit.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                // The name stays out of the error: errors here are discarded, but never leak.
                return Err(de::Error::custom("duplicate member name"));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorized alphabet check agrees with the definition for every byte value.
    #[test]
    fn base64url_alphabet_is_exact() {
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url_byte(b), allowed, "byte {b:#04x}");
            let mut segment = vec![b'a'; 100];
            segment[70] = b;
            if let Ok(segment) = std::str::from_utf8(&segment) {
                assert_eq!(is_base64url(segment), allowed, "byte {b:#04x}");
            }
        }
    }
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token from raw header and payload JSON text, with a dummy (decodable) signature.
    fn token_raw(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(b"sig"))
    }

    fn token(header: Value, payload: Value) -> String {
        token_raw(&header.to_string(), &payload.to_string())
    }

    fn ok_token() -> String {
        token(json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}), json!({"sub": "alice", "exp": 1}))
    }

    fn err(token: &str) -> AuthError {
        parse(token).unwrap_err()
    }

    const MALFORMED_TEXT: &str = "malformed token";

    /// Debug shows the header only: claims and signature are token content and stay out of logs.
    #[test]
    fn debug_shows_the_header_only() {
        let t = ok_token();
        let dump = format!("{:?}", parse(&t).unwrap());
        assert!(dump.starts_with("Jws {") && dump.contains("RS256") && dump.contains("k1"), "{dump}");
        let (input, sig) = t.rsplit_once('.').unwrap();
        for secret in ["alice", sig, input] {
            assert!(!dump.contains(secret), "{secret} shows in {dump}");
        }
    }

    /// A well-formed token yields its header, claims, signing input and signature segment.
    #[test]
    fn parses_well_formed_token() {
        let t = ok_token();
        let jws = parse(&t).unwrap();
        assert_eq!(
            jws.header,
            JoseHeader { alg: Algorithm::RS256, kid: Some("k1".into()), typ: Some("at+jwt".into()), nonce: false }
        );
        assert_eq!(jws.claims.get("sub"), Some(&json!("alice")));
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(jws.signing_input, input);
        assert_eq!(jws.signature, sig);
        assert!(looks_like_jws(&t));
    }

    /// `kid` and `typ` are optional.
    #[test]
    fn kid_and_typ_are_optional() {
        let jws_token = token(json!({"alg": "ES256"}), json!({}));
        let jws = parse(&jws_token).unwrap();
        assert_eq!(jws.header, JoseHeader { alg: Algorithm::ES256, kid: None, typ: None, nonce: false });
    }

    /// Only exactly three segments are a JWS; five is a JWE and is refused as such.
    #[test]
    fn segment_count() {
        let t = ok_token();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(err(&parts[..2].join(".")), AuthError::InvalidToken(MALFORMED_TEXT));
        assert_eq!(err(parts[0]), AuthError::InvalidToken(MALFORMED_TEXT));
        assert_eq!(err(&format!("{t}.{}", parts[2])), AuthError::InvalidToken(MALFORMED_TEXT));
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn";
        assert_eq!(err(jwe), ENCRYPTED);
        assert!(!looks_like_jws(jwe));
        // A JWE with an empty encrypted key (`dir`) is still JWE-shaped.
        assert_eq!(err("eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn"), ENCRYPTED);
        assert_eq!(err(""), AuthError::InvalidToken(MALFORMED_TEXT));
        assert_eq!(err(".."), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// Every segment must be non-empty: a stripped signature is malformed, not unsigned.
    #[test]
    fn empty_segments_are_malformed() {
        let t = ok_token();
        let (input, _) = t.rsplit_once('.').unwrap();
        assert_eq!(err(&format!("{input}.")), AuthError::InvalidToken(MALFORMED_TEXT));
        assert!(!looks_like_jws(&format!("{input}.")));
        let (h, rest) = t.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        assert_eq!(err(&format!("{h}..{s}")), AuthError::InvalidToken(MALFORMED_TEXT));
        assert_eq!(err(&format!(".{rest}")), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// Padding, whitespace and characters outside the base64url alphabet are refused.
    #[test]
    fn alphabet_is_strict() {
        let t = ok_token();
        let (h, rest) = t.split_once('.').unwrap();
        for bad in [
            format!("{t}="),
            format!("{h}=.{rest}"),
            format!("{t} "),
            format!(" {t}"),
            format!("{h}.\n{rest}"),
            format!("{h}\t.{rest}"),
            t.replacen('-', "+", 1).replacen('_', "/", 1),
            format!("{t}+"),
            format!("{h}.{rest}é"),
            format!("{t}\0"),
        ] {
            if bad == t {
                continue;
            }
            assert_eq!(parse(&bad).unwrap_err(), AuthError::InvalidToken(MALFORMED_TEXT), "{bad:?}");
            assert!(!looks_like_jws(&bad), "{bad:?}");
        }
    }

    /// Standard base64 (`+`, `/`) is not base64url even when it would decode to the same bytes.
    #[test]
    fn standard_base64_is_refused() {
        // '?' is 0x3f: a run of them encodes to '/' in standard base64, '_' in base64url.
        let header = br#"{"alg":"RS256","kid":"??????"}"#;
        let std_b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(header);
        let url_b64 = b64(header);
        assert!(std_b64.contains('/') && std_b64 != url_b64);
        assert!(parse(&format!("{url_b64}.e30.c2ln")).is_ok());
        assert_eq!(err(&format!("{std_b64}.e30.c2ln")), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// Non-canonical base64url (non-zero trailing bits, impossible lengths) is refused.
    #[test]
    fn non_canonical_base64_is_refused() {
        // "e30" is "{}"; "e31" has non-zero trailing bits and would also decode to "{}" leniently.
        let header = b64(br#"{"alg":"RS256"}"#);
        assert_eq!(parse(&format!("{header}.e30.c2ln")).unwrap().claims.len(), 0);
        assert_eq!(err(&format!("{header}.e31.c2ln")), AuthError::InvalidToken(MALFORMED_TEXT));
        // A segment of length 4n+1 cannot be base64.
        assert_eq!(err(&format!("{header}.e30A.c2ln")), AuthError::InvalidToken(MALFORMED_TEXT));
        assert_eq!(err(&format!("{header}.e30.c2lnA")), AuthError::InvalidToken(MALFORMED_TEXT));
        // "c2k" is "si"; "c2l" carries non-zero trailing bits.
        assert!(parse(&format!("{header}.e30.c2k")).is_ok());
        assert_eq!(err(&format!("{header}.e30.c2l")), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// Header and payload must both be JSON objects, in UTF-8.
    #[test]
    fn header_and_payload_must_be_objects() {
        let h = json!({"alg": "RS256"}).to_string();
        for payload in ["[]", "\"s\"", "1", "null", "", "{", "{}x", "{\"a\":1,}", "{'a':1}"] {
            assert_eq!(err(&token_raw(&h, payload)), AuthError::InvalidToken(MALFORMED_TEXT), "{payload}");
        }
        for header in ["[\"alg\"]", "\"RS256\"", "null", "{"] {
            assert_eq!(err(&token_raw(header, "{}")), AuthError::InvalidToken(MALFORMED_TEXT), "{header}");
            assert!(!looks_like_jws(&token_raw(header, "{}")), "{header}");
        }
        // Invalid UTF-8 inside a JSON string.
        let t = format!("{}.{}.{}", b64(h.as_bytes()), b64(b"{\"sub\":\"\xff\"}"), b64(b"sig"));
        assert_eq!(err(&t), AuthError::InvalidToken(MALFORMED_TEXT));
        // A lone surrogate escape is not a Unicode string.
        assert_eq!(err(&token_raw(&h, r#"{"sub":"\ud800"}"#)), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// Duplicate member names are refused in the header.
    #[test]
    fn duplicate_header_members() {
        let claims = "{}";
        for header in [
            r#"{"alg":"RS256","alg":"none"}"#,
            r#"{"alg":"none","alg":"RS256"}"#,
            r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
            r#"{"alg":"RS256","x":{"y":1,"y":2}}"#,
            r#"{"alg":"RS256","\u0061lg":"RS256"}"#,
        ] {
            assert_eq!(err(&token_raw(header, claims)), AuthError::InvalidToken(MALFORMED_TEXT), "{header}");
        }
    }

    /// Duplicate member names are refused in the claims, at any depth.
    #[test]
    fn duplicate_claim_members() {
        let h = r#"{"alg":"RS256"}"#;
        for claims in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"iss":"a","exp":1,"iss":"b"}"#,
            r#"{"act":{"sub":"x","sub":"y"}}"#,
            r#"{"a":[1,{"b":{"c":1,"c":1}}]}"#,
            r#"{"sub":"alice","s\u0075b":"admin"}"#,
        ] {
            assert_eq!(err(&token_raw(h, claims)), AuthError::InvalidToken(MALFORMED_TEXT), "{claims}");
        }
        // Equal names in different objects are fine.
        let jws_token = token_raw(h, r#"{"a":{"x":1},"b":{"x":[{"x":2}]},"x":3}"#);
        let jws = parse(&jws_token).unwrap();
        assert_eq!(Value::Object(jws.claims), json!({"a":{"x":1},"b":{"x":[{"x":2}]},"x":3}));
    }

    /// The strict parser keeps every JSON value as serde_json would.
    #[test]
    fn strict_parser_preserves_values() {
        let text = r#"{"n":null,"t":true,"f":false,"i":-5,"u":18446744073709551615,"x":1.5,
                       "e":1e3,"s":"é\n","a":[1,"2",[3]],"o":{"k":{}}}"#;
        let StrictValue(strict) = serde_json::from_str(text).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, plain);
    }

    /// Pathologically deep JSON is refused, not a stack overflow.
    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(err(&token_raw(r#"{"alg":"RS256"}"#, &deep)), AuthError::InvalidToken(MALFORMED_TEXT));
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(err(&token_raw(r#"{"alg":"RS256"}"#, &deep)), AuthError::InvalidToken(MALFORMED_TEXT));
    }

    /// `alg` is required and must be a string.
    #[test]
    fn alg_required_string() {
        for header in [json!({}), json!({"alg": null}), json!({"alg": 256}), json!({"alg": ["RS256"]})] {
            assert_eq!(err(&token(header.clone(), json!({}))), AuthError::InvalidToken(MALFORMED_TEXT), "{header}");
        }
    }

    /// `alg: none`, in any case, is refused (RFC 8725 §3.1).
    #[test]
    fn alg_none_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(json!({"alg": alg}), json!({"sub": "admin"}));
            assert_eq!(err(&t), UNSIGNED, "{alg}");
            // The classic unsigned form "header.payload." is malformed before alg is even read.
            let (input, _) = t.rsplit_once('.').unwrap();
            assert_eq!(err(&format!("{input}.")), AuthError::InvalidToken(MALFORMED_TEXT));
        }
    }

    /// Unknown or wrongly-cased algorithm names are unsupported, not guessed.
    #[test]
    fn unknown_alg_is_unsupported() {
        for alg in ["rs256", "ES512", "HS1", "RSA-OAEP", "dir", "Ed25519", ""] {
            assert_eq!(err(&token(json!({"alg": alg}), json!({}))), UNSUPPORTED_ALG, "{alg}");
        }
    }

    /// Every algorithm jsonwebtoken supports is parsed to its enum value.
    #[test]
    fn known_algs_parse() {
        for (name, alg) in [
            ("HS256", Algorithm::HS256),
            ("RS384", Algorithm::RS384),
            ("PS512", Algorithm::PS512),
            ("ES384", Algorithm::ES384),
            ("EdDSA", Algorithm::EdDSA),
        ] {
            assert_eq!(parse(&token(json!({"alg": name}), json!({}))).unwrap().header.alg, alg);
        }
    }

    /// Header members that name or carry a key (`jku`, `jwk`, `x5u`, `x5c`) are refused (RFC 8725 §3.10).
    #[test]
    fn key_references_are_refused() {
        for (name, value) in [
            ("jku", json!("https://attacker.example/jwks.json")),
            ("x5u", json!("https://attacker.example/cert.pem")),
            ("jwk", json!({"kty": "oct", "k": "c2VjcmV0"})),
            ("x5c", json!(["MIIB"])),
            ("jku", json!(null)),
        ] {
            let mut header = json!({"alg": "RS256", "kid": "k1"});
            header[name] = value;
            assert_eq!(err(&token(header, json!({}))), KEY_IN_HEADER, "{name}");
        }
    }

    /// Any `crit` header is refused: we understand no extensions (RFC 7515 §4.1.11), including `b64`.
    #[test]
    fn crit_is_refused() {
        for header in [
            json!({"alg": "RS256", "crit": ["exp"], "exp": 1}),
            json!({"alg": "RS256", "crit": ["b64"], "b64": false}),
            json!({"alg": "RS256", "crit": []}),
            json!({"alg": "RS256", "crit": "x"}),
        ] {
            assert_eq!(err(&token(header.clone(), json!({}))), CRITICAL, "{header}");
        }
    }

    /// `kid` and `typ`, when present, must be strings.
    #[test]
    fn kid_and_typ_must_be_strings() {
        for header in [
            json!({"alg": "RS256", "kid": 1}),
            json!({"alg": "RS256", "kid": null}),
            json!({"alg": "RS256", "kid": ["a"]}),
            json!({"alg": "RS256", "typ": true}),
            json!({"alg": "RS256", "typ": {"t": "at+jwt"}}),
        ] {
            assert_eq!(err(&token(header.clone(), json!({}))), AuthError::InvalidToken(MALFORMED_TEXT), "{header}");
        }
    }

    /// Error descriptions are fixed strings that never echo the token.
    #[test]
    fn errors_never_echo_token() {
        let secret = "SECRETVALUE";
        for t in [
            token(json!({"alg": secret}), json!({})),
            token(json!({"alg": "RS256", "kid": 7}), json!({"sub": secret})),
            token_raw(r#"{"alg":"RS256"}"#, &format!(r#"{{"{secret}":1,"{secret}":2}}"#)),
            format!("{secret}.{secret}"),
        ] {
            let e = err(&t);
            assert!(!e.to_string().contains(secret) && !e.description().contains(secret));
        }
        let t = ok_token();
        let dbg = format!("{:?}", parse(&t).unwrap());
        assert!(!dbg.contains("alice") && !dbg.contains(t.rsplit_once('.').unwrap().1));
    }

    /// Large random or hostile input never panics.
    #[test]
    fn garbage_never_panics() {
        // 64 KiB of deterministic pseudo-random bytes, as text of several shapes.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        let b64ish: String =
            (0..64 * 1024).map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char).collect();
        let bytes: Vec<u8> = (0..64 * 1024).map(|_| next() as u8).collect();
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let dots = ".".repeat(64 * 1024);
        let big_segments = format!("{}.{}.{}", "A".repeat(21_844), "A".repeat(21_844), "A".repeat(21_844));
        let big_header = token_raw(&format!(r#"{{"alg":"RS256","x":"{}"}}"#, "a".repeat(48 * 1024)), "{}");
        for t in [&b64ish, &lossy, &dots, &big_segments, &big_header] {
            let _ = parse(t);
            let _ = looks_like_jws(t);
        }
        // Every prefix of a valid token is handled without panicking.
        let t = ok_token();
        for i in 0..=t.len() {
            let _ = parse(&t[..i]);
            let _ = looks_like_jws(&t[..i]);
        }
        assert!(parse(&big_header).is_ok());
    }

    /// `looks_like_jws` accepts only the three-segment shape with an object header.
    #[test]
    fn looks_like_jws_shape() {
        assert!(looks_like_jws(&ok_token()));
        // Shape only: an unsupported alg or a non-object payload still looks like a JWS.
        assert!(looks_like_jws(&token(json!({"alg": "none"}), json!({}))));
        assert!(looks_like_jws(&token_raw(r#"{"alg":"RS256"}"#, "[]")));
        // Opaque tokens do not.
        assert!(!looks_like_jws("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jws("abc.def.ghi"));
        assert!(!looks_like_jws(&format!("{}.e30.c2ln", b64(b"[1]"))));
        assert!(!looks_like_jws(&format!("{}.e30.c2ln", b64(b"not json"))));
    }
}

//! Signing keys for the development issuer, generated at runtime with aws-lc-rs (no fixtures).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// A private signing key with its public JWK. Keys are generated at runtime; constructors panic on
/// an algorithm that does not fit the key type (this is a development tool, misuse is a bug).
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public half, for verifying tokens this issuer is asked to introspect or revoke.
    decoding: DecodingKey,
    /// The public JWK (`kty` and public parameters, `kid`, `alg`, `use: "sig"`); never `d`.
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is deliberately left out.
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl SigningKey {
    /// A fresh RSA-2048 key for RS256/384/512 or PS256/384/512. Generation takes 100+ ms:
    /// tests should generate once and share the `Arc`.
    pub fn rsa(kid: &str, alg: Algorithm) -> SigningKey {
        assert!(
            matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            "SigningKey::rsa: {alg:?} is not an RSA algorithm"
        );
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA-2048 key generation");
        let pkcs8 = pair.as_der().expect("RSA key to PKCS#8");
        // jsonwebtoken's aws-lc backend parses RSA keys as PKCS#1 `RSAPrivateKey`
        // (`RsaKeyPair::from_der`), while aws-lc-rs exports PKCS#8: unwrap the inner key.
        let pkcs1 = pkcs8_inner_key(pkcs8.as_ref()).expect("PKCS#8 PrivateKeyInfo from aws-lc-rs");
        Self::new(kid, alg, EncodingKey::from_rsa_der(pkcs1))
    }

    /// A fresh P-256 (ES256) or P-384 (ES384) key.
    pub fn ec(kid: &str, alg: Algorithm) -> SigningKey {
        let signing_alg = match alg {
            Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            other => panic!("SigningKey::ec: {other:?} is not ES256 or ES384"),
        };
        let pair = EcdsaKeyPair::generate(signing_alg).expect("EC key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("EC key to PKCS#8");
        Self::new(kid, alg, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    /// A fresh Ed25519 key (`alg: EdDSA`).
    pub fn ed25519(kid: &str) -> SigningKey {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        // PKCS#8 v1 (48 bytes): jsonwebtoken's `Jwk::from_encoding_key` recognises Ed25519 by
        // that length, and rejects the v2 form that also embeds the public key.
        let pkcs8 = pair.to_pkcs8v1().expect("Ed25519 key to PKCS#8 v1");
        Self::new(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(pkcs8.as_ref()))
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> SigningKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK of a fresh key");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key from a fresh public JWK");
        let jwk = serde_json::to_value(&jwk).expect("JWK serializes");
        SigningKey { kid: kid.to_owned(), alg, encoding, decoding, jwk }
    }

    /// The public JWK: key type and public parameters plus `kid`, `alg` and `"use": "sig"`.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.jwk.clone()
    }

    /// The private key, for callers that want `jsonwebtoken::encode` directly.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public key, for verifying signatures made with this key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Sign arbitrary header and claims JSON: `base64url(header) "." base64url(claims) "."
    /// signature`. The caller controls every header member (including `alg`, `kid`, `typ`,
    /// `crit`, `jku`…), so tests can craft hostile tokens; the signature is always computed with
    /// this key's own algorithm (`self.alg`), whatever the header claims.
    pub fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header JSON"));
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims JSON"));
        let signing_input = format!("{header}.{claims}");
        let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, self.alg)
            .expect("signing with a generated key");
        format!("{signing_input}.{signature}")
    }
}

/// The `privateKey` OCTET STRING of a DER PKCS#8 `PrivateKeyInfo` (RFC 5208 §5):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
fn pkcs8_inner_key(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (version, _, rest) = der_tlv(body)?;
    let (algorithm, _, rest) = der_tlv(rest)?;
    let (tag, key, _) = der_tlv(rest)?;
    (version == 0x02 && algorithm == 0x30 && tag == 0x04).then_some(key)
}

/// One DER element: (tag, contents, remaining input). Single-byte tags, definite lengths only.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

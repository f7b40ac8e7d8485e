//! Signing keys for the fake identity providers: RSA-2048 from a small pool generated once per
//! test run (RSA generation is the slow part), fresh P-256 keys, their public JWK members, and
//! JWS signing over header bytes exactly as given (Keycloak's header has spaces in it).

use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use serde_json::{json, Map, Value};

/// Distinct RSA keys available to one key set.
pub const RSA_POOL: usize = 3;

/// PKCS#8 v1 DER of RSA key number `slot` (< `RSA_POOL`).
fn rsa_pkcs8(slot: usize) -> &'static [u8] {
    static POOL: [OnceLock<Vec<u8>>; RSA_POOL] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    POOL[slot].get_or_init(|| {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        der.as_ref().to_vec()
    })
}

/// One private key, its `kid` and the algorithm it signs with.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
}

impl Key {
    /// RSA key number `slot` of the pool, signing RS256. Keys in one key set take distinct slots.
    pub fn rsa(slot: usize, kid: &str) -> Key {
        // jsonwebtoken's aws-lc RSA signer wants PKCS#1; its PEM reader unwraps PKCS#8.
        let body = STANDARD.encode(rsa_pkcs8(slot));
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        Key { kid: kid.to_owned(), alg: Algorithm::RS256, encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap() }
    }

    /// A fresh P-256 key, signing ES256.
    pub fn ec(kid: &str) -> Key {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let encoding = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
        Key { kid: kid.to_owned(), alg: Algorithm::ES256, encoding }
    }

    /// The public key's members only: `kty` and `n`/`e`, or `crv`/`x`/`y`.
    pub fn public_members(&self) -> Map<String, Value> {
        let jwk = serde_json::to_value(Jwk::from_encoding_key(&self.encoding, self.alg).unwrap()).unwrap();
        let names: &[&str] = match self.alg {
            Algorithm::ES256 => &["kty", "crv", "x", "y"],
            _ => &["kty", "n", "e"],
        };
        names.iter().map(|n| (n.to_string(), jwk[*n].clone())).collect()
    }

    /// A JWK: `members` (the IdP's own: `use`, `alg`, `x5c` …) plus the public key's; a `kid`
    /// given as `null` becomes this key's id. (Member order is not kept: serde_json sorts.)
    pub fn jwk(&self, members: Value) -> Value {
        let Value::Object(mut out) = members else { panic!("JWK members must be an object") };
        if out.get("kid") == Some(&Value::Null) {
            out.insert("kid".into(), json!(self.kid));
        }
        out.extend(self.public_members());
        Value::Object(out)
    }

    /// `header`.`claims`.signature, with `header` serialized as given.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_header_text(&header.to_string(), claims)
    }

    /// The same, with the header's exact bytes.
    pub fn sign_header_text(&self, header: &str, claims: &Value) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
    }
}

/// Stand-ins for the X.509 members real IdPs publish: `x5c` holds base64 DER (any bytes pass;
/// nothing reads them), `x5t` a base64url SHA-1-sized thumbprint, `x5t#S256` a SHA-256-sized one.
pub fn x5c(seed: &str) -> Value {
    json!([STANDARD.encode(format!("MIIC-not-a-certificate-{seed}"))])
}

pub fn x5t(seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, seed.as_bytes()))
}

pub fn x5t_s256(seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes()))
}

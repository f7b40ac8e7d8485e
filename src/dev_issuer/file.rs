//! The YAML configuration of `tokengate dev-issuer` (documented example:
//! `config/dev-issuer.yaml`). Unknown keys are refused; errors name the file and the field.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::clients::{validate_clients, DevClient, TokenFormat, DEFAULT_TOKEN_LIFETIME};
use super::SigningKey;
use crate::config::Secret;

/// Where the dev issuer listens when the file names nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";

/// The key generated when the file names none.
pub const DEFAULT_KEY: (&str, Algorithm) = ("dev-es256", Algorithm::ES256);

/// A loaded and validated dev issuer configuration.
#[derive(Debug, Clone)]
pub struct DevIssuerConfig {
    pub listen: SocketAddr,
    /// Public issuer URL; `None` = `http://{bound address}`.
    pub issuer: Option<String>,
    /// Generated at start, in this order; the first signs.
    pub keys: Vec<KeySpec>,
    pub clients: Vec<DevClient>,
}

/// A key to generate at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub kid: String,
    pub alg: Algorithm,
}

impl KeySpec {
    /// A fresh key of this algorithm (RSA-2048 for RS*/PS*, P-256/P-384 for ES*, Ed25519).
    pub fn generate(&self) -> SigningKey {
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => SigningKey::ec(&self.kid, self.alg),
            Algorithm::EdDSA => SigningKey::ed25519(&self.kid),
            _ => SigningKey::rsa(&self.kid, self.alg),
        }
    }
}

/// A configuration that cannot be read or used: `{origin}: {message}`.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct DevConfigError {
    pub origin: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    keys: Option<Vec<RawKey>>,
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    alg: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    scopes: Vec<String>,
    audiences: Vec<String>,
    #[serde(default)]
    token_format: TokenFormat,
    #[serde(default, with = "humantime_serde")]
    token_lifetime: Option<Duration>,
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<DevIssuerConfig, DevConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| DevConfigError { origin: origin.clone(), message: format!("cannot read: {e}") })?;
    parse(&origin, &text)
}

/// Parse and validate config text; `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> Result<DevIssuerConfig, DevConfigError> {
    let fail = |message: String| DevConfigError { origin: origin.to_owned(), message };
    let raw: RawFile = serde_norway::from_str(text).map_err(|e| fail(e.to_string()))?;
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr =
        listen.parse().map_err(|_| fail(format!("listen: {listen:?} is not an IP:port socket address")))?;
    let issuer = raw.issuer.map(|i| check_issuer(&i).map_err(fail)).transpose()?;
    let keys = match raw.keys {
        None => vec![KeySpec { kid: DEFAULT_KEY.0.to_owned(), alg: DEFAULT_KEY.1 }],
        Some(keys) => check_keys(keys).map_err(fail)?,
    };
    if raw.clients.is_empty() {
        return Err(fail("clients: at least one client is required".to_owned()));
    }
    let clients: Vec<DevClient> = raw
        .clients
        .into_iter()
        .map(|c| DevClient {
            client_id: c.client_id,
            client_secret: Secret(c.client_secret.into_bytes()),
            scopes: c.scopes,
            audiences: c.audiences,
            token_format: c.token_format,
            token_lifetime: c.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME),
        })
        .collect();
    validate_clients(&clients).map_err(fail)?;
    Ok(DevIssuerConfig { listen, issuer, keys, clients })
}

/// An `http`/`https` URL without query or fragment (RFC 8414 §2 asks for https; this is a
/// development tool, so plain http is allowed). The trailing slash is removed.
fn check_issuer(issuer: &str) -> Result<String, String> {
    let uri: http::Uri = issuer.parse().map_err(|_| format!("issuer: {issuer:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("issuer: {issuer:?} must be an http:// or https:// URL"));
    }
    if uri.query().is_some() || issuer.contains('#') {
        return Err(format!("issuer: {issuer:?} must not have a query or fragment (RFC 8414 §2)"));
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

fn check_keys(raw: Vec<RawKey>) -> Result<Vec<KeySpec>, String> {
    if raw.is_empty() {
        return Err("keys: at least one key is required (or leave keys out for one ES256 key)".to_owned());
    }
    let mut keys: Vec<KeySpec> = Vec::with_capacity(raw.len());
    for (i, key) in raw.into_iter().enumerate() {
        let alg = match key.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(format!(
                    "keys[{i}].alg: {other:?} is not one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"
                ))
            }
        };
        if key.kid.is_empty() || keys.iter().any(|k| k.kid == key.kid) {
            return Err(format!("keys[{i}].kid: {:?} is empty or used twice", key.kid));
        }
        keys.push(KeySpec { kid: key.kid, alg });
    }
    Ok(keys)
}

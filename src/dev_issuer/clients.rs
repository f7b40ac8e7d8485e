//! Registered clients of the development issuer and client authentication at its endpoints
//! (RFC 6749 §2.3.1: `client_secret_basic` and `client_secret_post`).

use std::collections::HashMap;
use std::time::Duration;

use crate::secret::Digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::config::Secret;

/// Default lifetime of tokens from the token endpoint.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// What the token endpoint issues to a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// An RFC 9068 JWT access token (`typ: at+jwt`) signed with the first published key.
    #[default]
    Jwt,
    /// 32 random bytes, base64url: meaningful only through introspection (RFC 7662).
    Opaque,
}

/// A confidential client registered with the development issuer.
#[derive(Debug, Clone)]
pub struct DevClient {
    pub client_id: String,
    /// Redacted in `Debug`.
    pub client_secret: Secret,
    /// The scopes it may request; a token request without `scope` gets all of them.
    pub scopes: Vec<String>,
    /// The resources (RFC 8707) it may request tokens for; the first is the default `aud`.
    /// At least one: RFC 9068 §2.2 makes `aud` mandatory.
    pub audiences: Vec<String>,
    pub token_format: TokenFormat,
    /// `exp - iat` of its tokens; whole seconds, at least one.
    pub token_lifetime: Duration,
}

impl DevClient {
    /// A JWT client with no scopes, the audience `api` and the default lifetime (1 h); adjust the
    /// public fields or use the `with_*` helpers.
    pub fn new(client_id: &str, client_secret: &str) -> DevClient {
        DevClient {
            client_id: client_id.to_owned(),
            client_secret: Secret(client_secret.as_bytes().to_vec()),
            scopes: Vec::new(),
            audiences: vec!["api".to_owned()],
            token_format: TokenFormat::Jwt,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }

    pub fn with_scopes(mut self, scopes: &[&str]) -> DevClient {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn with_audiences(mut self, audiences: &[&str]) -> DevClient {
        self.audiences = audiences.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn with_format(mut self, format: TokenFormat) -> DevClient {
        self.token_format = format;
        self
    }

    pub fn with_lifetime(mut self, lifetime: Duration) -> DevClient {
        self.token_lifetime = lifetime;
        self
    }
}

/// Check a client list: ids unique and non-empty, secrets non-empty, scope tokens well-formed
/// (RFC 6749 §3.3), at least one audience, a lifetime of at least one whole second.
pub fn validate_clients(clients: &[DevClient]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in clients.iter().enumerate() {
        let at = format!("clients[{i}]");
        if c.client_id.is_empty() {
            return Err(format!("{at}.client_id: must not be empty"));
        }
        if !seen.insert(c.client_id.as_str()) {
            return Err(format!("{at}.client_id: {:?} is registered twice", c.client_id));
        }
        if c.client_secret.0.is_empty() {
            return Err(format!("{at}.client_secret: must not be empty"));
        }
        if let Some(bad) = c.scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(format!(
                "{at}.scopes: {bad:?} is not a scope token (RFC 6749 §3.3: printable ASCII, no space, '\"' or '\\\\')"
            ));
        }
        if c.audiences.is_empty() || c.audiences.iter().any(String::is_empty) {
            return Err(format!("{at}.audiences: at least one non-empty audience is required (RFC 9068 §2.2)"));
        }
        if c.token_lifetime.as_secs() == 0 {
            return Err(format!("{at}.token_lifetime: must be at least 1s"));
        }
    }
    Ok(())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// The registered clients, with their secrets kept as SHA-256 digests for constant-time checks.
pub(crate) struct Registry {
    clients: HashMap<String, (DevClient, Digest)>,
}

impl Registry {
    pub(crate) fn new(clients: Vec<DevClient>) -> Registry {
        let clients = clients
            .into_iter()
            .map(|c| {
                let digest = Digest::of(&c.client_secret.0);
                (c.client_id.clone(), (c, digest))
            })
            .collect();
        Registry { clients }
    }

    /// The client these credentials authenticate, or `None`. The secret comparison is
    /// constant-time over SHA-256 digests, and an unknown id costs the same as a wrong secret.
    pub(crate) fn authenticate(&self, id: &str, secret: &str) -> Option<&DevClient> {
        let presented = Digest::of(secret);
        match self.clients.get(id) {
            Some((client, expected)) => (presented == *expected).then_some(client),
            None => {
                // The same work as a wrong secret.
                let _ = std::hint::black_box(presented == Digest::of(""));
                None
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &DevClient> {
        self.clients.values().map(|(c, _)| c)
    }
}

/// Decode an `Authorization: Basic` value per RFC 6749 §2.3.1: base64 of
/// `form-urlencode(client_id) ":" form-urlencode(client_secret)`. `None` when malformed.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte; the
/// result must be UTF-8. `None` on a broken escape.
fn form_urldecode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// Form-urlencode one value (the inverse of [`form_urldecode`]), e.g. for Basic credentials.
pub fn form_urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `Authorization: Basic` header value for a client, encoded per RFC 6749 §2.3.1.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_urlencode(client_id), form_urlencode(client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Basic credentials are form-urldecoded after base64 (RFC 6749 §2.3.1), so ':' may appear in the secret.
    #[test]
    fn basic_credentials_round_trip_with_special_characters() {
        let header = basic_authorization("my client", "s:e+c%r&t");
        assert_eq!(parse_basic(&header), Some(("my client".to_owned(), "s:e+c%r&t".to_owned())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic(&format!("Basic {}", STANDARD.encode("no-colon"))), None);
        assert_eq!(parse_basic(&format!("Basic {}", STANDARD.encode("a%zz:b"))), None);
    }

    /// Only the exact secret of a registered client authenticates.
    #[test]
    fn authenticate_checks_id_and_secret() {
        let registry = Registry::new(vec![DevClient::new("a", "secret")]);
        assert!(registry.authenticate("a", "secret").is_some());
        assert!(registry.authenticate("a", "secret ").is_none());
        assert!(registry.authenticate("b", "secret").is_none());
    }

    /// Client validation names the offending field.
    #[test]
    fn validate_clients_rejects_bad_entries() {
        let ok = DevClient::new("a", "s");
        assert!(validate_clients(std::slice::from_ref(&ok)).is_ok());
        let err = validate_clients(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(err.contains("registered twice"), "{err}");
        let err = validate_clients(&[ok.clone().with_scopes(&["a b"])]).unwrap_err();
        assert!(err.contains("clients[0].scopes"), "{err}");
        let err = validate_clients(&[ok.clone().with_audiences(&[])]).unwrap_err();
        assert!(err.contains("audiences"), "{err}");
        let err = validate_clients(&[ok.with_lifetime(Duration::from_millis(500))]).unwrap_err();
        assert!(err.contains("token_lifetime"), "{err}");
    }
}

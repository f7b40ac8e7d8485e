//! An upstream as the proxy uses it: where it is, how to speak to it (HTTP/1.1, TLS, cleartext
//! HTTP/2), and its limits. The certificate files are read at load time, so a bad file is a
//! config error with its field, and a reload that changes a file's contents builds a new
//! client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// `http://`, `https://` or `h2c://host:port`, no path: the request's path and query are
    /// appended byte-for-byte.
    pub uri: Uri,
    pub protocol: UpstreamProtocol,
    /// Set exactly when `protocol` is `Tls`.
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    /// Time until the upstream's response head arrives (default 30 s).
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Requests to the upstream in flight at once (default 1024); one more is answered 503 at
    /// once, never queued.
    pub max_in_flight: usize,
}

/// How requests reach an upstream, from its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// `http://`: HTTP/1.1 over pooled connections.
    Http1,
    /// `https://`: TLS, then HTTP/2 when the upstream's ALPN picks `h2`, else HTTP/1.1.
    Tls,
    /// `h2c://`: cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3), Traefik's spelling.
    H2c,
}

/// TLS to an `https://` upstream.
#[derive(Clone, PartialEq)]
pub struct UpstreamTls {
    /// `ca`: the only roots the upstream's certificate may chain to. `None`: the webpki roots.
    pub roots: Option<Arc<[CertificateDer<'static>]>>,
    /// SNI and the name the certificate must be valid for: `server_name`, else the URL's host.
    pub server_name: ServerName<'static>,
    /// `client_cert` and `client_key`: presented when the upstream asks (mTLS).
    pub client_identity: Option<ClientIdentity>,
    /// The keys as written (`ca`, `server_name`, `client_cert`, `client_key`), for `check-config`.
    pub written: WrittenTls,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrittenTls {
    pub ca: Option<String>,
    pub server_name: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("roots", &self.roots.as_ref().map_or("webpki".to_owned(), |r| format!("{} certificates", r.len())))
            .field("server_name", &self.server_name)
            .field("client_identity", &self.client_identity.is_some())
            .finish()
    }
}

/// A client certificate chain and its private key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain && self.key.secret_der() == other.key.secret_der()
    }
}

/// The key is never shown.
impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity").field("chain", &self.chain.len()).field("key", &"<redacted>").finish()
    }
}

impl UpstreamTls {
    /// The rustls client for this upstream: its roots, its client certificate, ALPN offering
    /// HTTP/2 first (`alpn`: `h2` then `http/1.1`). Fails only on a client key rustls cannot
    /// use, which config validation has refused already (`tls::load::read_pair`).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.roots {
            Some(certs) => {
                roots.add_parsable_certificates(certs.iter().cloned());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(crate::tls::load::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &self.client_identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

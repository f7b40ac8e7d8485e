//! Opening a connection to an upstream: the name resolved now (so DNS changes are seen), each
//! address tried in turn under the connect timeout, then TLS for `https://` upstreams, whose
//! ALPN answer says which HTTP version the connection speaks.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{UpstreamProtocol, UpstreamSettings};
use crate::respond::UpstreamError;

/// ALPN offered to `https://` upstreams: HTTP/2 preferred.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of a connection for an upgrade (WebSocket), which HTTP/1.1 alone can carry.
const ALPN_H1: &[&[u8]] = &[b"http/1.1"];

pub struct Connector {
    /// `host:port` to connect to.
    address: String,
    timeout: Duration,
    tls: Option<Tls>,
}

struct Tls {
    /// Offers `h2` and `http/1.1`.
    any: TlsConnector,
    /// Offers `http/1.1` only.
    h1: TlsConnector,
    name: ServerName<'static>,
}

/// A new connection, and whether it speaks HTTP/2.
pub enum Connected {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected {
    /// ALPN chose `h2` (TLS), or the upstream is `h2c://`.
    pub fn speaks_h2(&self, protocol: UpstreamProtocol) -> bool {
        match self {
            Connected::Tcp(_) => protocol == UpstreamProtocol::H2c,
            Connected::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl Connector {
    pub fn new(settings: &UpstreamSettings) -> Connector {
        let authority = settings.uri.authority().expect("validated upstream URL has an authority");
        let default_port = if settings.protocol == UpstreamProtocol::Tls { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        // `host()` keeps the brackets of an IPv6 literal; the socket address wants them off.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let tls = settings.tls.as_ref().map(|tls| {
            let connector = |alpn| {
                let config = tls.client_config(alpn).expect("validated: the client key is usable");
                TlsConnector::from(Arc::new(config))
            };
            Tls { any: connector(ALPN), h1: connector(ALPN_H1), name: tls.server_name.clone() }
        });
        Connector {
            address: if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") },
            timeout: settings.connect_timeout,
            tls,
        }
    }

    /// A new connection; over TLS, `h1_only` offers HTTP/1.1 alone in ALPN.
    pub async fn connect(&self, h1_only: bool) -> Result<Connected, UpstreamError> {
        let tcp = self.tcp().await?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Connected::Tcp(tcp)) };
        let (connector, name) = (if h1_only { &tls.h1 } else { &tls.any }, &tls.name);
        // The handshake is part of connecting: under the same timeout.
        match tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp)).await {
            Ok(Ok(tls)) => Ok(Connected::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, upstream = %self.address, "upstream TLS handshake failed");
                Err(UpstreamError::Connect)
            }
            Err(_) => {
                tracing::warn!(upstream = %self.address, timeout = ?self.timeout, "upstream TLS handshake timed out");
                Err(UpstreamError::Timeout)
            }
        }
    }

    async fn tcp(&self) -> Result<TcpStream, UpstreamError> {
        let addresses = tokio::net::lookup_host(&self.address).await.map_err(|e| {
            tracing::warn!(error = %e, upstream = %self.address, "upstream name did not resolve");
            UpstreamError::Connect
        })?;
        let mut failure = UpstreamError::Connect;
        for address in addresses {
            match tokio::time::timeout(self.timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, %address, "upstream connect failed");
                    failure = if e.kind() == std::io::ErrorKind::TimedOut {
                        UpstreamError::Timeout
                    } else {
                        UpstreamError::Connect
                    };
                }
                Err(_) => {
                    tracing::warn!(%address, timeout = ?self.timeout, "upstream connect timed out");
                    failure = UpstreamError::Timeout;
                }
            }
        }
        Err(failure)
    }
}

//! The upstream edge: a pooled HTTP/1.1 client that streams bodies both ways, with a connect
//! timeout and a response-head timeout, and a classification of failures into 502 / 504.

use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamSettings;
use crate::respond::UpstreamError;

/// Body sent upstream: the client's stream as-is, or a body the gateway had to read (form tokens).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

pub struct Forwarder {
    client: Client<HttpConnector, UpstreamBody>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    response_timeout: Duration,
}

impl Forwarder {
    pub fn new(settings: &UpstreamSettings) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let parts = settings.uri.clone().into_parts();
        Forwarder {
            client,
            scheme: parts.scheme.unwrap_or(http::uri::Scheme::HTTP),
            authority: parts.authority.expect("validated upstream URL has an authority"),
            response_timeout: settings.response_timeout,
        }
    }

    /// Send the request upstream; the path and query go byte-for-byte. Returns once the response
    /// head has arrived; its body streams through afterwards.
    pub async fn send(&self, mut req: Request<UpstreamBody>) -> Result<Response<Incoming>, UpstreamError> {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| UpstreamError::Broken)?;
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(error = %e, "upstream connect failed");
                Err(if is_timeout(&e) { UpstreamError::Timeout } else { UpstreamError::Connect })
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Err(UpstreamError::Broken)
            }
        }
    }
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = err.source();
    }
    false
}

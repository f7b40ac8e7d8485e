//! The upstream edge: HTTP/1.1 over pooled keep-alive connections, bodies streamed both ways, a
//! connect timeout and a response-head timeout, a cap on requests in flight (503 beyond it, at
//! once), and a classification of failures into 502 / 503 / 504. Each request's outcome is
//! counted per upstream: the response's status class and wait, or the error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::net::TcpStream;

use super::pool::{Pool, PooledBody, Sender};
use crate::coalesce::Coalesce;
use crate::config::UpstreamSettings;
pub use crate::metrics::InFlight;
use crate::metrics::{Metrics, UpstreamMetrics};
use crate::respond::UpstreamError;
use crate::telemetry::otel;

/// Body sent upstream: the client's stream as-is, or a body the gateway had to read (form tokens).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

pub struct Forwarder {
    pool: Arc<Pool>,
    /// `host:port` to connect to (resolved on each new connection, so DNS changes are seen).
    address: String,
    /// `Host` for requests that arrived without one (HTTP/1.0 clients).
    host: HeaderValue,
    connect_timeout: Duration,
    response_timeout: Duration,
    connections_opened: IntCounter,
    in_flight: InFlightCap,
    metrics: UpstreamMetrics,
}

/// `upstream.max_in_flight`. The gauge is the count itself: one atomic add when a request is
/// admitted, one subtract when its response body is dropped, no lock and no queue.
struct InFlightCap {
    count: IntGauge,
    max: i64,
    refused: IntCounter,
}

impl InFlightCap {
    fn admit(&self) -> Result<InFlight, UpstreamError> {
        let admitted = InFlight::new(&self.count);
        // Concurrent admissions may both see the other and both refuse: never more than `max`
        // pass, and the cap is only ever reached under load anyway.
        if self.count.get() > self.max {
            self.refused.inc();
            return Err(UpstreamError::Overloaded);
        }
        Ok(admitted)
    }
}

/// The upstream's name in metrics labels and access-log lines: its configured URL, without a
/// trailing slash.
pub fn name(settings: &UpstreamSettings) -> String {
    settings.uri.to_string().trim_end_matches('/').to_owned()
}

impl Forwarder {
    pub fn new(settings: &UpstreamSettings, metrics: &Metrics) -> Forwarder {
        let authority = settings.uri.authority().expect("validated upstream URL has an authority");
        let port = authority.port_u16().unwrap_or(80);
        // `host()` keeps the brackets of an IPv6 literal; the socket address wants them off.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let pool = Arc::new(Pool::new(settings.pool_max_idle_per_host, settings.pool_idle_timeout));
        pool.start_sweeping();
        Forwarder {
            pool,
            address: if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") },
            host: HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value"),
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
            connections_opened: metrics.upstream_connections.clone(),
            in_flight: InFlightCap {
                count: metrics.upstream_in_flight.clone(),
                max: i64::try_from(settings.max_in_flight).unwrap_or(i64::MAX),
                refused: metrics.upstream_refused.clone(),
            },
            metrics: UpstreamMetrics::new(metrics, &name(settings)),
        }
    }

    /// Send the request upstream; the path and query go byte-for-byte in origin form. Returns
    /// once the response head has arrived; its body streams through afterwards. Refused at once
    /// when `upstream.max_in_flight` requests are in flight.
    /// Traced, the request carries the `upstream` span's context (`traceparent`, `tracestate`).
    pub async fn send(&self, mut req: Request<UpstreamBody>) -> Result<Response<PooledBody>, UpstreamError> {
        let span = otel::Span::upstream(req.headers_mut());
        let started = Instant::now();
        let result = self.send_uncounted(req).await;
        span.answered(result.as_ref().map(Response::status).map_err(|e| *e));
        match &result {
            Ok(response) => self.metrics.response(response.status(), started.elapsed()),
            Err(e) => self.metrics.error(*e, started.elapsed()),
        }
        result
    }

    async fn send_uncounted(&self, mut req: Request<UpstreamBody>) -> Result<Response<PooledBody>, UpstreamError> {
        let in_flight = self.in_flight.admit()?;
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        match tokio::time::timeout(self.response_timeout, self.exchange(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok((response, sender))) => {
                Ok(PooledBody::for_response(response, sender, &self.pool).map(|body| body.holding(in_flight)))
            }
            Ok(Err(e)) => Err(e),
        }
    }

    async fn exchange(&self, req: Request<UpstreamBody>) -> Result<(Response<Incoming>, Sender), UpstreamError> {
        let mut sender = match self.pool.checkout() {
            Some(sender) => sender,
            // Boxed: the connect and handshake futures are large and rarely needed.
            None => Box::pin(self.connect()).await?,
        };
        match sender.try_send_request(req).await {
            Ok(response) => Ok((response, sender)),
            Err(mut e) => match e.take_message() {
                // The connection closed before the request was written (typically a pooled one
                // the upstream closed just as we picked it): nothing reached the upstream, so it
                // is safe to send the request once more, on a fresh connection.
                Some(req) => {
                    let mut fresh = Box::pin(self.connect()).await?;
                    let response = fresh.send_request(req).await.map_err(|e| broken(&e))?;
                    Ok((response, fresh))
                }
                _ => Err(broken(e.error())),
            },
        }
    }

    /// A new connection: the name resolved now (so DNS changes are seen), each address tried in
    /// turn with the connect timeout, then the HTTP/1.1 handshake.
    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let addresses = tokio::net::lookup_host(&self.address).await.map_err(|e| {
            tracing::warn!(error = %e, upstream = %self.address, "upstream name did not resolve");
            UpstreamError::Connect
        })?;
        let mut failure = UpstreamError::Connect;
        for address in addresses {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => return self.handshake(tcp).await,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, %address, "upstream connect failed");
                    failure = if e.kind() == std::io::ErrorKind::TimedOut {
                        UpstreamError::Timeout
                    } else {
                        UpstreamError::Connect
                    };
                }
                Err(_) => {
                    tracing::warn!(%address, timeout = ?self.connect_timeout, "upstream connect timed out");
                    failure = UpstreamError::Timeout;
                }
            }
        }
        Err(failure)
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<Sender, UpstreamError> {
        let _ = tcp.set_nodelay(true);
        // Vectored writes, so large bodies go out without a copy (hyper's flat-write strategy
        // cost ~35% more CPU on 1 MiB bodies); `Coalesce` joins the small ones into one write.
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(Coalesce(tcp))).await.map_err(|e| broken(&e))?;
        self.connections_opened.inc();
        // Any connection may carry an upgrade: after a 101 it hands itself to the tunnel
        // (without `with_upgrades`, hyper fails it: "upgrade expected but low level API in use").
        let connection = connection.with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

fn broken(e: &hyper::Error) -> UpstreamError {
    tracing::warn!(error = %e, "upstream request failed");
    UpstreamError::Broken
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A forwarder to `address` with a pool of its own, its upstream metrics in `metrics`
    /// (labelled `http://up`) and throwaway others.
    fn forwarder_with(address: String, metrics: &Metrics) -> Forwarder {
        let counter = || IntCounter::new("c", "c").unwrap();
        Forwarder {
            pool: Arc::new(Pool::new(4, Duration::from_secs(60))),
            address,
            host: HeaderValue::from_static("up"),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            connections_opened: counter(),
            in_flight: InFlightCap { count: IntGauge::new("g", "g").unwrap(), max: 8, refused: counter() },
            metrics: UpstreamMetrics::new(metrics, "http://up"),
        }
    }

    fn forwarder(address: String) -> Forwarder {
        forwarder_with(address, &Metrics::new())
    }

    /// Each request is counted once per upstream: its response's class, or its error; the
    /// wait is observed for responses and timeouts.
    #[tokio::test]
    async fn outcomes_are_counted_per_upstream() {
        let m = Metrics::new();
        let class = |c: &str| m.upstream_responses.with_label_values(&["http://up", c]).get();
        let error = |e: &str| m.upstream_errors.with_label_values(&["http://up", e]).get();
        let waits = || m.upstream_duration.with_label_values(&["http://up"]).get_sample_count();

        let ok = forwarder_with(upstream().await, &m);
        ok.send(get()).await.expect("answered");
        assert_eq!((class("2xx"), waits()), (1, 1));

        // Nothing listens on a port just freed.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        let refused = forwarder_with(address, &m);
        assert_eq!(refused.send(get()).await.err(), Some(UpstreamError::Connect));
        assert_eq!((error("connect"), waits()), (1, 1), "a connect error is not a wait");

        // Accepts, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut slow = forwarder_with(silent.local_addr().unwrap().to_string(), &m);
        slow.response_timeout = Duration::from_millis(50);
        assert_eq!(slow.send(get()).await.err(), Some(UpstreamError::Timeout));
        assert_eq!((error("timeout"), waits()), (1, 2));
        let sum = m.upstream_duration.with_label_values(&["http://up"]).get_sample_sum();
        assert!(sum >= 0.05, "the timeout's wait is observed: {sum}");

        let mut full = forwarder_with(upstream().await, &m);
        full.in_flight.max = 0;
        assert_eq!(full.send(get()).await.err(), Some(UpstreamError::Overloaded));
        assert_eq!((error("overloaded"), class("2xx"), error("broken")), (1, 1, 0));
        drop(silent);
    }

    /// An upstream answering every request with 200 `ok`.
    async fn upstream() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    fn get() -> Request<UpstreamBody> {
        Request::builder().uri("/").header(HOST, "up").body(Either::Right(Full::new(Bytes::new()))).unwrap()
    }

    /// A pooled connection whose peer has gone although its sender does not know yet (the
    /// close is seen only when the connection task next runs): the request is never written
    /// there and goes out once more on a fresh connection.
    #[tokio::test]
    async fn request_unsent_on_a_dead_pooled_connection_is_resent_on_a_fresh_one() {
        let forwarder = forwarder(upstream().await);
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(ours)).await.unwrap();
        let mut connection = Box::pin(connection);
        // Polled once, the connection asks for a request (the sender becomes ready) ...
        assert!(poll_once(&mut connection).await.is_none());
        drop(theirs);
        // ... and learns of the close only when polled again, after the request was queued.
        forwarder.pool.put(sender);
        tokio::spawn(connection);
        let (response, _) = forwarder.exchange(get()).await.expect("resent on a fresh connection");
        assert_eq!(response.status(), 200);
        assert_eq!(forwarder.connections_opened.get(), 1, "one fresh connection, no more");
    }

    /// Poll a future once: `Some` if it finished.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}

//! The upstream edge: HTTP/1.1 over pooled keep-alive connections, or HTTP/2 over one shared
//! connection (`h2c://`, or `https://` when the upstream's ALPN picks `h2`); bodies and
//! trailers streamed both ways, a connect timeout and a response-head timeout, a cap on
//! requests in flight (503 beyond it, at once), and a classification of failures into
//! 502 / 503 / 504. Each request's outcome is counted per upstream: the response's status class
//! and wait, or the error.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, COOKIE, HOST, TE, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Request, Response, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connect::{Connected, Connector};
use super::headers;
use super::pool::{Pool, PooledBody, Sender};
use crate::coalesce::Coalesce;
use crate::config::{UpstreamProtocol, UpstreamSettings};
pub use crate::metrics::InFlight;
use crate::metrics::{Metrics, UpstreamMetrics};
use crate::respond::UpstreamError;
use crate::telemetry::otel;

/// Body sent upstream: the client's stream as-is, or a body the gateway had to read (form tokens).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

type H2Sender = http2::SendRequest<UpstreamBody>;

pub struct Forwarder {
    /// Idle HTTP/1.1 connections.
    pool: Arc<Pool>,
    /// The HTTP/2 connection all requests share, once one is open.
    h2: Mutex<Option<H2Sender>>,
    connector: Connector,
    protocol: UpstreamProtocol,
    /// `:scheme` and `:authority` of HTTP/2 requests without a `Host` (HTTP/1.0 clients).
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1.1 requests that arrived without one (HTTP/1.0 clients).
    host: HeaderValue,
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

/// The default upstream's name in metrics labels and access-log lines: its configured URL,
/// without a trailing slash. Named upstreams go by their name.
pub fn name(settings: &UpstreamSettings) -> String {
    settings.uri.to_string().trim_end_matches('/').to_owned()
}

/// A connection just opened, speaking HTTP/1.1 or HTTP/2.
enum Fresh {
    H1(Sender),
    H2(H2Sender),
}

impl Forwarder {
    /// `name` labels its metrics.
    pub fn new(settings: &UpstreamSettings, name: &str, metrics: &Metrics) -> Forwarder {
        let authority = settings.uri.authority().expect("validated upstream URL has an authority").clone();
        let pool = Arc::new(Pool::new(settings.pool_max_idle_per_host, settings.pool_idle_timeout));
        pool.start_sweeping();
        Forwarder {
            pool,
            h2: Mutex::new(None),
            connector: Connector::new(settings),
            protocol: settings.protocol,
            scheme: if settings.protocol == UpstreamProtocol::Tls { Scheme::HTTPS } else { Scheme::HTTP },
            host: HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value"),
            authority,
            response_timeout: settings.response_timeout,
            connections_opened: metrics.upstream_connections.clone(),
            in_flight: InFlightCap {
                count: metrics.upstream_in_flight.with_label_values(&[name]),
                max: i64::try_from(settings.max_in_flight).unwrap_or(i64::MAX),
                refused: metrics.upstream_refused.clone(),
            },
            metrics: UpstreamMetrics::new(metrics, name),
        }
    }

    /// Send the request upstream; the path and query go byte-for-byte. Returns once the
    /// response head has arrived; its body streams through afterwards. Refused at once when
    /// `max_in_flight` requests are in flight.
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

    async fn send_uncounted(&self, req: Request<UpstreamBody>) -> Result<Response<PooledBody>, UpstreamError> {
        let in_flight = self.in_flight.admit()?;
        match tokio::time::timeout(self.response_timeout, self.exchange(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok((response, Some(sender)))) => {
                Ok(PooledBody::for_response(response, sender, &self.pool).map(|body| body.holding(in_flight)))
            }
            Ok(Ok((response, None))) => Ok(response.map(|body| PooledBody::unpooled(body).holding(in_flight))),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The response, and the HTTP/1.1 connection to pool once its body has been read.
    async fn exchange(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Sender>), UpstreamError> {
        // An upgrade (WebSocket) is HTTP/1.1 only: over TLS it takes a connection that offered
        // nothing else in ALPN (RFC 8441's HTTP/2 form is not spoken upstream).
        let h1_only = self.protocol == UpstreamProtocol::Tls && req.headers().contains_key(UPGRADE);
        if self.protocol != UpstreamProtocol::Http1 && !h1_only {
            if let Some(h2) = self.shared_h2() {
                return self.send_h2(h2, req).await.map(|r| (r, None));
            }
        }
        let mut sender = match self.pool.checkout() {
            Some(sender) => sender,
            // Boxed: the connect and handshake futures are large and rarely needed.
            None => match Box::pin(self.connect(h1_only)).await? {
                Fresh::H1(sender) => sender,
                Fresh::H2(h2) => return self.send_h2(h2, req).await.map(|r| (r, None)),
            },
        };
        let req = self.for_h1(req);
        match sender.try_send_request(req).await {
            Ok(response) => Ok((response, Some(sender))),
            Err(mut e) => match e.take_message() {
                // The connection closed before the request was written (typically a pooled one
                // the upstream closed just as we picked it): nothing reached the upstream, so it
                // is safe to send the request once more, on a fresh connection.
                Some(req) => match Box::pin(self.connect(h1_only)).await? {
                    Fresh::H1(mut fresh) => {
                        let response = fresh.send_request(req).await.map_err(|e| broken(&e))?;
                        Ok((response, Some(fresh)))
                    }
                    Fresh::H2(h2) => self.send_h2(h2, req).await.map(|r| (r, None)),
                },
                _ => Err(broken(e.error())),
            },
        }
    }

    /// The shared HTTP/2 connection, once one is open (a closed one is replaced on first use).
    fn shared_h2(&self) -> Option<H2Sender> {
        self.h2.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn send_h2(&self, h2: H2Sender, req: Request<UpstreamBody>) -> Result<Response<Incoming>, UpstreamError> {
        match try_h2(h2, self.for_h2(req)).await {
            Ok(response) => Ok(response),
            // The connection was closed (GOAWAY, the upstream went away) before the request was
            // written: nothing reached the upstream, so it goes once more on a fresh connection,
            // which becomes the shared one.
            Err(Some(req)) => match Box::pin(self.connect(false)).await? {
                Fresh::H2(fresh) => try_h2(fresh, req).await.map_err(|_| UpstreamError::Broken),
                // The upstream's ALPN no longer offers h2; later requests use HTTP/1.1.
                Fresh::H1(_) => Err(UpstreamError::Broken),
            },
            Err(None) => Err(UpstreamError::Broken),
        }
    }

    /// HTTP/1.1: origin form, `Host`, no `TE`, and one `cookie` field (RFC 9113 §8.2.3: the pieces an
    /// HTTP/2 client sent are joined with "; ").
    fn for_h1<B>(&self, mut req: Request<B>) -> Request<B> {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        // `TE: trailers` is kept for HTTP/2 (gRPC); on HTTP/1.1 it would need `Connection: TE`
        // (RFC 9110 §10.1.4), and no HTTP/1.1 upstream needs it.
        req.headers_mut().remove(TE);
        headers::join_cookies(req.headers_mut());
        req
    }

    /// HTTP/2: the target in `:scheme`, `:authority` (from `Host`) and `:path`; no `Host` and no
    /// connection-specific field (RFC 9113 §8.2.2, already stripped as hop-by-hop); cookies
    /// may go as separate fields (§8.2.3).
    fn for_h2<B>(&self, mut req: Request<B>) -> Request<B> {
        let authority = req
            .headers_mut()
            .remove(HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .unwrap_or_else(|| self.authority.clone());
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = Version::HTTP_2;
        // Connection-specific fields are malformed on HTTP/2 (§8.2.2); an upgrade asked of an
        // `h2c://` upstream goes as an ordinary request.
        req.headers_mut().remove(CONNECTION);
        req.headers_mut().remove(UPGRADE);
        if req.headers().contains_key(COOKIE) {
            headers::split_cookies(req.headers_mut());
        }
        req
    }

    /// A new connection: TCP (and TLS), then the HTTP/1.1 or HTTP/2 handshake. A new HTTP/2
    /// connection becomes the shared one.
    async fn connect(&self, h1_only: bool) -> Result<Fresh, UpstreamError> {
        let connected = self.connector.connect(h1_only).await?;
        let h2 = connected.speaks_h2(self.protocol);
        let fresh = match connected {
            Connected::Tcp(tcp) => self.handshake(tcp, h2).await?,
            Connected::Tls(tls) => self.handshake(tls, h2).await?,
        };
        self.connections_opened.inc();
        if let Fresh::H2(h2) = &fresh {
            *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(h2.clone());
        }
        Ok(fresh)
    }

    async fn handshake<T>(&self, io: T, h2: bool) -> Result<Fresh, UpstreamError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await
                .map_err(|e| broken(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            return Ok(Fresh::H2(sender));
        }
        // Vectored writes, so large bodies go out without a copy (hyper's flat-write strategy
        // cost ~35% more CPU on 1 MiB bodies); `Coalesce` joins the small ones into one write.
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(Coalesce(io))).await.map_err(|e| broken(&e))?;
        // Any connection may carry an upgrade: after a 101 it hands itself to the tunnel
        // (without `with_upgrades`, hyper fails it: "upgrade expected but low level API in use").
        let connection = connection.with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Fresh::H1(sender))
    }
}

/// One request on an HTTP/2 connection, once it can take one (it waits while the connection is
/// at its peer's stream limit). `Err(Some(req))`: the connection was closed before the request
/// was written; `Err(None)`: it failed after (logged).
async fn try_h2(
    mut h2: H2Sender,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Option<Request<UpstreamBody>>> {
    if let Err(e) = h2.ready().await {
        tracing::debug!(error = %e, "upstream HTTP/2 connection closed; opening another");
        return Err(Some(req));
    }
    h2.try_send_request(req).await.map_err(|mut e| {
        let unsent = e.take_message();
        if unsent.is_none() {
            broken(e.error());
        }
        unsent
    })
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
        let settings = UpstreamSettings {
            uri: format!("http://{address}").parse().unwrap(),
            protocol: UpstreamProtocol::Http1,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 4,
            max_in_flight: 8,
        };
        Forwarder {
            pool: Arc::new(Pool::new(4, Duration::from_secs(60))),
            h2: Mutex::new(None),
            connector: Connector::new(&settings),
            protocol: UpstreamProtocol::Http1,
            scheme: Scheme::HTTP,
            authority: Authority::from_static("up"),
            host: HeaderValue::from_static("up"),
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

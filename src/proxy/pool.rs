//! Idle upstream HTTP/1.1 connections, ready for their next request.
//!
//! A connection is checked out for one request and comes back when the response body has been
//! read to its end (trailers included); a response abandoned half-way takes its connection with
//! it (hyper closes it: the rest of the body cannot be skipped). The newest idle connection is
//! used first, so a burst's extra connections age out, and the one in use is the one least
//! likely to have been closed by the upstream's own keep-alive timeout. A sweep closes the
//! connections idle longer than `pool_idle_timeout`, and none older is ever handed out.
//!
//! A 101 (Switching Protocols) answer's connection is the new protocol's from then on: it never
//! returns, although its body is empty and so "read to the end" (`PooledBody::for_response`).
//!
//! Checkout and return each take a short, uncontended lock on a small `Vec` (as hyper-util's
//! pool does); what made hyper-util's pooled client cost ~1.7 µs a request here was its key
//! hashing and the task it spawned per request to wait for the connection (benches/load.sh).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::forward::{InFlight, UpstreamBody};

pub type Sender = SendRequest<UpstreamBody>;

pub struct Pool {
    /// Oldest first, newest last.
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn is_usable(&self, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < idle_timeout
    }
}

impl Pool {
    /// At most `max_idle` connections wait (0: none, every request opens its own); none is
    /// reused after `idle_timeout` unused. Call `start_sweeping` to also close them then.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool { idle: Mutex::new(Vec::with_capacity(max_idle.min(1024))), max_idle, idle_timeout }
    }

    /// Close idle connections past their timeout every so often, for as long as the pool lives
    /// (needs a tokio runtime; without one, expired connections are only dropped on checkout).
    pub fn start_sweeping(self: &Arc<Pool>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let period = self.idle_timeout.clamp(Duration::from_millis(100), Duration::from_secs(30));
        let pool: Weak<Pool> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    /// A connection that is open and waiting for a request, if there is one. Closed and
    /// expired connections are dropped on the way (dropping the last sender of an idle hyper
    /// connection closes it); one still finishing its previous exchange stays for later.
    pub fn checkout(&self) -> Option<Sender> {
        let mut idle = self.lock();
        let mut busy = Vec::new();
        let found = loop {
            let Some(entry) = idle.pop() else { break None };
            if !entry.is_usable(self.idle_timeout) {
                continue;
            }
            if entry.sender.is_ready() {
                break Some(entry.sender);
            }
            busy.push(entry);
        };
        idle.extend(busy.into_iter().rev());
        found
    }

    /// Give a connection back; when the pool is full, it is closed instead.
    pub(super) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    fn sweep(&self) {
        let timeout = self.idle_timeout;
        self.lock().retain(|entry| entry.is_usable(timeout));
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Nothing panics while holding it; a poisoned list of senders is still a valid list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

/// An upstream response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<(Sender, Arc<Pool>)>,
    ended: bool,
    /// The request counts as in flight until its response body is dropped.
    in_flight: Option<InFlight>,
}

impl PooledBody {
    fn leasing(inner: Incoming, lease: Option<(Sender, Arc<Pool>)>) -> PooledBody {
        PooledBody { inner, lease, ended: false, in_flight: None }
    }

    /// A body whose connection is not pooled (HTTP/2 streams share theirs).
    pub fn unpooled(inner: Incoming) -> PooledBody {
        PooledBody::leasing(inner, None)
    }

    /// `response`, received on `sender`'s connection, with its body returning that connection
    /// to `pool` once read; except after a 101, whose connection now belongs to a tunnel.
    pub fn for_response(response: Response<Incoming>, sender: Sender, pool: &Arc<Pool>) -> Response<PooledBody> {
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let lease = (!upgraded).then(|| (sender, pool.clone()));
        response.map(|inner| PooledBody::leasing(inner, lease))
    }

    /// Keep the request counted as in flight for as long as this body lives.
    pub fn holding(mut self, in_flight: InFlight) -> PooledBody {
        self.in_flight = Some(in_flight);
        self
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // Trailers end a body: hyper's server drops it right after them, without polling on.
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Bodies that are empty by definition (HEAD, 204, 304) are never polled; they count
        // as read to the end too.
        if self.ended || self.inner.is_end_stream() {
            if let Some((sender, pool)) = self.lease.take() {
                pool.put(sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw upstream on loopback answering every request on a connection with `answer`.
    async fn upstream(answer: &'static [u8]) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn connect(addr: std::net::SocketAddr) -> Sender {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    fn get() -> http::Request<UpstreamBody> {
        http::Request::builder()
            .uri("/")
            .header("host", "up")
            .body(http_body_util::Either::Right(http_body_util::Full::new(Bytes::new())))
            .unwrap()
    }

    /// The body of `request`, answered with `answer` by a fresh upstream, leased from `pool`.
    async fn leased(pool: &Arc<Pool>, answer: &'static [u8], request: http::Request<UpstreamBody>) -> PooledBody {
        let mut sender = connect(upstream(answer).await).await;
        let resp = sender.send_request(request).await.unwrap();
        PooledBody::for_response(resp, sender, pool).into_body()
    }

    #[tokio::test]
    async fn connection_returns_only_after_the_body_is_read() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let body = leased(&pool, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", get()).await;
        assert_eq!(pool.idle_count(), 0, "busy until the body is read");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(pool.idle_count(), 1);
        let mut again = pool.checkout().expect("the connection is reusable");
        assert_eq!(again.send_request(get()).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn abandoned_body_does_not_return_its_connection() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        drop(leased(&pool, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok", get()).await);
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout().is_none());
    }

    #[tokio::test]
    async fn closed_or_stale_connections_are_not_handed_out() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        leased(&pool, closing, get()).await.collect().await.unwrap();
        assert!(pool.checkout().is_none(), "a connection the upstream closed is not reused");

        let stale = Arc::new(Pool::new(4, Duration::ZERO));
        leased(&stale, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", get()).await.collect().await.unwrap();
        assert!(stale.checkout().is_none(), "a connection idle past the timeout is not reused");
    }

    /// Read a response through a `PooledBody` the way hyper's server does: frame by frame, and
    /// dropped right after trailers without asking for the end.
    async fn relay(pool: &Arc<Pool>, answer: &'static [u8], request: http::Request<UpstreamBody>) {
        let mut body = leased(pool, answer, request).await;
        while let Some(frame) = body.frame().await {
            if frame.unwrap().is_trailers() {
                break;
            }
        }
    }

    /// Chunked bodies with trailers, and bodies empty by definition (HEAD), count as read.
    #[tokio::test]
    async fn trailers_and_empty_bodies_return_their_connection() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n2\r\nok\r\n0\r\nx-sum: 1\r\n\r\n";
        relay(&pool, chunked, get()).await;
        assert_eq!(pool.idle_count(), 1, "trailers ended the body");

        let head =
            http::Request::head("/").header("host", "up").body(http_body_util::Either::Right(Default::default()));
        drop(leased(&pool, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", head.unwrap()).await);
        assert_eq!(pool.idle_count(), 2, "a HEAD response has no body to read");
    }

    /// A chunked body read to its end without trailers returns its connection; one abandoned
    /// after its first chunk does not (only trailers or the end of the body end it).
    #[tokio::test]
    async fn chunked_body_returns_its_connection_only_at_its_end() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(leased(&pool, chunked, get()).await.collect().await.unwrap().to_bytes(), "okok");
        assert_eq!(pool.idle_count(), 1);

        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let slow = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n";
        let mut body = leased(&pool, slow, get()).await;
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
        assert_eq!(pool.idle_count(), 0, "the rest of the body was never read");
    }

    /// A 101's body is empty, but its connection is the tunnel's: it is never pooled. Any other
    /// answer's is, once its (here empty) body is done.
    #[tokio::test]
    async fn switching_protocols_never_returns_its_connection() {
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        for (answer, pooled) in [
            (&b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"[..], 0),
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], 1),
        ] {
            let tcp = tokio::net::TcpStream::connect(upstream(answer).await).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            let response = sender.send_request(get()).await.unwrap();
            let body = PooledBody::for_response(response, sender, &pool).into_body();
            assert!(body.is_end_stream());
            drop(body);
            assert_eq!(pool.idle_count(), pooled, "{}", String::from_utf8_lossy(answer));
        }
    }

    /// Once sweeping, idle connections past their timeout are closed without waiting for the
    /// next checkout: the upstream sees its connection end.
    #[tokio::test]
    async fn sweeping_closes_idle_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            let _ = closed_tx.send(());
        });
        let pool = Arc::new(Pool::new(4, Duration::from_millis(100)));
        pool.start_sweeping();
        let mut sender = connect(addr).await;
        let resp = sender.send_request(get()).await.unwrap();
        PooledBody::for_response(resp, sender, &pool).into_body().collect().await.unwrap();
        assert_eq!(pool.idle_count(), 1);
        tokio::time::timeout(Duration::from_secs(10), closed).await.expect("the sweep closed it").unwrap();
        assert_eq!(pool.idle_count(), 0);
    }

    /// `pool_max_idle_per_host: 0` keeps nothing; otherwise the newest connection goes first.
    #[tokio::test]
    async fn capacity_and_order() {
        let none = Arc::new(Pool::new(0, Duration::from_secs(60)));
        relay(&none, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", get()).await;
        assert_eq!(none.idle_count(), 0);

        let pool = Arc::new(Pool::new(1, Duration::from_secs(60)));
        for _ in 0..2 {
            relay(&pool, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", get()).await;
        }
        assert_eq!(pool.idle_count(), 1, "full: the second one was closed");

        let (a, b) = (connect(upstream(b"").await).await, connect(upstream(b"").await).await);
        let pool = Pool::new(4, Duration::from_secs(60));
        pool.put(a);
        pool.put(b);
        let newest = pool.checkout().unwrap();
        assert_eq!(pool.idle_count(), 1);
        drop(newest);
    }

    /// The sweep keeps connections within their idle timeout and drops those past it (a zero
    /// timeout: any idle time is past it, no waiting needed).
    #[tokio::test]
    async fn sweep_drops_expired_connections() {
        for (timeout, kept) in [(Duration::from_secs(60), 1), (Duration::ZERO, 0)] {
            let pool = Arc::new(Pool::new(4, timeout));
            let mut sender = connect(upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await).await;
            sender.send_request(get()).await.unwrap().collect().await.unwrap();
            pool.put(sender);
            assert_eq!(pool.idle_count(), 1);
            pool.sweep();
            assert_eq!(pool.idle_count(), kept, "idle timeout {timeout:?}");
        }
    }
}

//! Idle upstream HTTP/1.1 connections, ready for their next request.
//!
//! A connection is checked out for one request and comes back when the response body has been
//! read to its end; a response abandoned half-way takes its connection with it (hyper closes it,
//! the rest of the body cannot be skipped). The idle set is a bounded lock-free queue: checkout
//! and return are one atomic operation each, with no lock, no hashing and no task spawned per
//! request (hyper-util's pooled client did all three, about 1.7 µs a request; benches/load.sh).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::forward::UpstreamBody;

pub type Sender = SendRequest<UpstreamBody>;

pub struct Pool {
    idle: ArrayQueue<Idle>,
    idle_timeout: Duration,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    /// `max_idle` is at least 1 (a zero-capacity queue cannot exist); `idle_timeout` bounds how
    /// long a connection may sit unused and still be trusted with a request.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool { idle: ArrayQueue::new(max_idle.max(1)), idle_timeout }
    }

    /// A connection that is open and waiting for a request, if there is one. Connections that
    /// closed, are still busy, or idled too long are dropped on the way (dropping the last
    /// sender of an idle hyper connection closes it).
    pub fn checkout(&self) -> Option<Sender> {
        while let Some(idle) = self.idle.pop() {
            if idle.sender.is_ready() && idle.since.elapsed() < self.idle_timeout {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Give a connection back; when the pool is full, it is closed instead.
    fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            let _ = self.idle.push(Idle { sender, since: Instant::now() });
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

/// An upstream response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<(Sender, Arc<Pool>)>,
    ended: bool,
}

impl PooledBody {
    pub fn new(inner: Incoming, sender: Sender, pool: Arc<Pool>) -> PooledBody {
        PooledBody { inner, lease: Some((sender, pool)), ended: false }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
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

    #[tokio::test]
    async fn connection_returns_only_after_the_body_is_read() {
        let addr = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let mut sender = connect(addr).await;
        let resp = sender.send_request(get()).await.unwrap();
        let body = PooledBody::new(resp.into_body(), sender, pool.clone());
        assert_eq!(pool.idle_count(), 0, "busy until the body is read");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(pool.idle_count(), 1);
        let mut again = pool.checkout().expect("the connection is reusable");
        assert_eq!(again.send_request(get()).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn abandoned_body_does_not_return_its_connection() {
        let addr = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok").await;
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let mut sender = connect(addr).await;
        let resp = sender.send_request(get()).await.unwrap();
        drop(PooledBody::new(resp.into_body(), sender, pool.clone()));
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout().is_none());
    }

    #[tokio::test]
    async fn closed_or_stale_connections_are_not_handed_out() {
        let addr = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let pool = Arc::new(Pool::new(4, Duration::from_secs(60)));
        let mut sender = connect(addr).await;
        let resp = sender.send_request(get()).await.unwrap();
        let body = PooledBody::new(resp.into_body(), sender, pool.clone());
        body.collect().await.unwrap();
        assert!(pool.checkout().is_none(), "a connection the upstream closed is not reused");

        let addr = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let stale = Arc::new(Pool::new(4, Duration::ZERO));
        let mut sender = connect(addr).await;
        let resp = sender.send_request(get()).await.unwrap();
        PooledBody::new(resp.into_body(), sender, stale.clone()).collect().await.unwrap();
        assert!(stale.checkout().is_none(), "a connection idle past the timeout is not reused");
    }
}

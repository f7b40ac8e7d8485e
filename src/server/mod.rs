//! Accept loop shared by the proxy and admin listeners: HTTP/1.1 and cleartext HTTP/2 (prior
//! knowledge) on one port, request framing checked before hyper reads a byte (`crate::framing`),
//! limits against slow and flooding clients, and a graceful drain: on shutdown stop accepting,
//! let in-flight requests finish, give up after the grace period.
//!
//! TLS (the proxy listener, when configured): the handshake runs in the connection's own task,
//! within `header_read_timeout` of the accept, so a slow or silent client never holds up the
//! accept loop; what it told about the client (`tls::TlsInfo`) goes to the service with the
//! client's address (`Peer`).
//!
//! Limits: at most `max_connections` connections per listener (one more is answered 503 and
//! closed at once); a header-read timeout for HTTP/1 (hyper's) and for the first request of
//! every connection (ours, `conn`); an idle timeout; HTTP/2 keep-alive pings and a bound on
//! concurrent streams.

mod conn;

pub use conn::Hold;

use std::convert::Infallible;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::coalesce::Coalesce;
use crate::config::ServerSettings;
use crate::framing::{Framing, OnRefusal};
use crate::metrics::ListenerMetrics;
use crate::respond::TOO_MANY_CONNECTIONS;
use crate::tls::{Tls, TlsInfo};

/// The client of one accepted connection, as the service is made for it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: SocketAddr,
    /// `Some` on a TLS listener, after the handshake.
    pub tls: Option<TlsInfo>,
}

/// Listener limits. A reload sends new ones: connections accepted afterwards get them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
}

impl Limits {
    pub fn new(server: &ServerSettings) -> Limits {
        Limits {
            header_read_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            shutdown_grace: server.shutdown_grace,
            max_connections: server.max_connections,
            idle_timeout: server.idle_timeout,
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            http2_keep_alive_interval: server.http2_keep_alive_interval,
            http2_keep_alive_timeout: server.http2_keep_alive_timeout,
        }
    }
}

/// Refused connections get their 503 and a short wait for the client to read it (closing with
/// unread request bytes would reset the connection and may lose the 503); at most this many at
/// once, the others are closed straight away.
const MAX_LINGERING: usize = 64;
const LINGER: Duration = Duration::from_secs(1);

/// Serve `listener` until `shutdown` turns true (or its sender is dropped), then drain for at
/// most `limits.shutdown_grace`. `limits` is read again whenever it changes (a reload). With
/// `tls`, every connection is a TLS one. `make_service` gets each connection's peer and `Hold`
/// (for a tunnel after an upgrade, which the connection's service spawns itself: HTTP/1.1
/// upgrades are served).
pub async fn serve<S, B>(
    listener: TcpListener,
    make_service: impl Fn(Peer, Hold) -> S + Send + Sync + 'static,
    tls: Option<Arc<Tls>>,
    mut limits: watch::Receiver<Limits>,
    metrics: ListenerMetrics,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data: Buf + Send> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let make_service = Arc::new(make_service);
    let mut current = *limits.borrow_and_update();
    let mut builder = builder(&current);
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let framing_metrics = metrics.clone();
    let on_refusal: OnRefusal = Arc::new(move |reason| framing_metrics.framing_refused(reason.as_str()));
    // Each connection holds a sender; the drain is over when the last one is dropped.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if limits.has_changed().unwrap_or(false) {
            current = *limits.borrow_and_update();
            builder = self::builder(&current);
        }
        let max_open = i64::try_from(current.max_connections).unwrap_or(i64::MAX);
        // Only this loop adds to the gauge, so the check cannot be raced past the limit.
        if metrics.open.get() >= max_open {
            metrics.refused.inc();
            refuse(stream, &lingering);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let slot = conn::Slot::new(metrics.open.clone(), alive.clone());
        let hold = Hold::new(slot, shutdown.clone(), current.shutdown_grace);
        let activity = Arc::new(conn::Activity::default());
        let timers = conn::Timers {
            header_read_timeout: current.header_read_timeout,
            idle_timeout: current.idle_timeout,
            shutdown_grace: current.shutdown_grace,
        };
        let Some(tls) = &tls else {
            let peer = Peer { remote, tls: None };
            let service = conn::tracked(make_service(peer, hold.clone()), activity.clone(), metrics.in_flight.clone());
            let io = Framing::new(Coalesce(stream), current.max_header_bytes, Some(on_refusal.clone()));
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
            tokio::spawn(conn::supervise(
                connection,
                |c| c.graceful_shutdown(),
                activity,
                timers,
                shutdown.clone(),
                hold,
            ));
            continue;
        };
        let (tls, make_service, builder) = (tls.clone(), make_service.clone(), builder.clone());
        let (in_flight, on_refusal, mut shutdown) = (metrics.in_flight.clone(), on_refusal.clone(), shutdown.clone());
        let max_header_bytes = current.max_header_bytes;
        tokio::spawn(async move {
            // The handshake is part of the first request's deadline; a drain abandons it.
            let handshake = tokio::select! {
                done = tls.handshake(stream, timers.header_read_timeout) => done,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some((stream, info)) = handshake else { return };
            let peer = Peer { remote, tls: Some(info) };
            let service = conn::tracked(make_service(peer, hold.clone()), activity.clone(), in_flight);
            let io = Framing::new(Coalesce(stream), max_header_bytes, Some(on_refusal));
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
            conn::supervise(connection, |c| c.graceful_shutdown(), activity, timers, shutdown, hold).await
        });
    }
    drop(listener);
    drop(alive);
    let grace = limits.borrow().shutdown_grace;
    if tokio::time::timeout(grace, drained.recv()).await.is_err() {
        tracing::warn!(?grace, "in-flight requests did not finish in time");
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also closes an idle keep-alive connection: the timer runs while hyper waits for the
        // next request head.
        .header_read_timeout(limits.header_read_timeout)
        // The read buffer bounds the request head; hyper answers 431 beyond it.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.try_into().unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    builder
}

/// Answer a connection over the limit with 503 and close it, without ever waiting on it here.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>) {
    // Written straight to the socket: a new connection's send buffer takes the whole answer at
    // once, and tokio's `try_write` would first wait for the reactor to see it writable.
    let Ok(mut socket) = stream.into_std() else { return };
    let _ = socket.write(TOO_MANY_CONNECTIONS);
    let _ = socket.shutdown(Shutdown::Write);
    let Ok(permit) = lingering.clone().try_acquire_owned() else { return };
    let Ok(mut stream) = TcpStream::from_std(socket) else { return };
    tokio::spawn(async move {
        let _permit = permit;
        // Read what the client sent until it closes, so the close is a FIN, not a reset that
        // could discard the 503 before the client reads it.
        let mut discard = [0u8; 1024];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = stream.read(&mut discard).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
}

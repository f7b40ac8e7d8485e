//! One client connection's life after accept: its place under `server.max_connections`, the
//! timers hyper does not have, and its part in the drain.
//!
//! - First request: a connection must deliver its first request head within
//!   `header_read_timeout` of being accepted. hyper's own header timer covers HTTP/1 only, and
//!   only once the protocol is known; this also covers a client that sends nothing, part of the
//!   HTTP/2 preface, or an HTTP/2 handshake with no complete HEADERS. (hyper has no per-stream
//!   header timeout for later HTTP/2 requests; `idle_timeout` bounds a connection whose only
//!   stream never completes its headers, `http2_max_concurrent_streams` and the header list
//!   size bound the rest.)
//! - Idle: an HTTP/2 connection with no stream in flight for `idle_timeout` is closed (GOAWAY).
//!   An HTTP/1 connection waiting for its next request is closed by hyper's header-read timer,
//!   which config validation keeps no longer than `idle_timeout`; so HTTP/1 requests are not
//!   tracked at all.
//! - Closing: a graceful close (GOAWAY, or close once the response is out) gets
//!   `header_read_timeout` to finish, a drain gets `shutdown_grace`; then the connection is
//!   dropped.
//! - Upgrades: a request that asks for one (`Upgrade`, HTTP/1) and is answered anything but 101
//!   gets `Connection: close` (the framing check passes the bytes after such a head through, and
//!   a client may already be sending the new protocol). A 101's tunnel keeps the connection's
//!   `Hold`, so it still counts under `max_connections` and in the drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;
use prometheus::IntGauge;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::metrics::InFlight;

/// A connection's place under `server.max_connections`: counted in the open-connections gauge
/// (which is the count the accept loop checks), and holding the drain open until dropped.
pub(super) struct Slot {
    open: IntGauge,
    _alive: mpsc::Sender<()>,
}

impl Slot {
    pub(super) fn new(open: IntGauge, alive: mpsc::Sender<()>) -> Slot {
        open.inc();
        Slot { open, _alive: alive }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// What a connection's service may keep of it past the connection's HTTP life: an upgraded
/// connection's tunnel holds its place under `max_connections` and in the drain, and hears the
/// drain begin. Cheap to clone.
#[derive(Clone)]
pub struct Hold {
    _slot: Arc<Slot>,
    shutdown: watch::Receiver<bool>,
    shutdown_grace: Duration,
}

impl Hold {
    pub(super) fn new(slot: Slot, shutdown: watch::Receiver<bool>, shutdown_grace: Duration) -> Hold {
        Hold { _slot: Arc::new(slot), shutdown, shutdown_grace }
    }

    /// Resolves once the listener has been draining for `server.shutdown_grace`: what is still
    /// open then is closed.
    pub async fn drain_over(mut self) {
        // A dropped sender drains too.
        let _ = self.shutdown.wait_for(|stop| *stop).await;
        tokio::time::sleep(self.shutdown_grace).await;
    }
}

/// What the service saw of the connection's requests.
#[derive(Default)]
pub(super) struct Activity {
    /// Some request arrived.
    served: AtomicBool,
    /// Told once, at the first request: the first-request timer is then no longer needed
    /// (and polling it on every wake-up of a busy connection costs more than the wake-up).
    first: tokio::sync::Notify,
    /// HTTP/2 streams: started (high 32 bits, wrapping) and in flight (low 32 bits), one atomic
    /// add to begin and one to end.
    streams: AtomicU64,
}

const STARTED: u64 = 1 << 32;
const IN_FLIGHT: u64 = STARTED - 1;

impl Activity {
    fn saw_request(&self) {
        // A load first: after the first request the flag is only ever read.
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
            self.first.notify_one();
        }
    }

    fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// (started, in flight) for HTTP/2 streams.
    fn streams(&self) -> (u64, u64) {
        let s = self.streams.load(Ordering::Relaxed);
        (s >> 32, s & IN_FLIGHT)
    }
}

/// An HTTP/2 stream in flight until its response body is dropped.
pub(super) struct Stream(Arc<Activity>);

impl Stream {
    fn begin(activity: &Arc<Activity>) -> Stream {
        activity.streams.fetch_add(STARTED + 1, Ordering::Relaxed);
        Stream(activity.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its HTTP/2 stream, and its request, counted in flight while it
/// lives.
pub(super) struct Tracked<B> {
    body: B,
    _stream: Option<Stream>,
    _request: Option<InFlight>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `service` reporting each request to `activity` (HTTP/1 requests cost one relaxed load) and
/// counting it in `in_flight` (the listener's `tokengate_in_flight_requests`) from its call
/// until its response body is dropped: finished, or cancelled with its connection.
pub(super) fn tracked<S>(service: S, activity: Arc<Activity>, in_flight: Option<IntGauge>) -> TrackedService<S> {
    TrackedService { service, activity, in_flight }
}

pub(super) struct TrackedService<S> {
    service: S,
    activity: Arc<Activity>,
    in_flight: Option<IntGauge>,
}

impl<S, B> Service<Request<Incoming>> for TrackedService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<Tracked<B>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // The stream is counted before the first request is announced, so `supervise` sees an
        // HTTP/2 connection as one.
        let stream = (req.version() == Version::HTTP_2).then(|| Stream::begin(&self.activity));
        self.activity.saw_request();
        let request = self.in_flight.as_ref().map(InFlight::new);
        let upgrade = req.version() < Version::HTTP_2 && req.headers().contains_key(UPGRADE);
        TrackedFuture { inner: self.service.call(req), stream, request, upgrade }
    }
}

pin_project_lite::pin_project! {
    /// The service's future, unchanged in place: an `async` wrapper would copy the (kilobytes
    /// of) request future into its own state on every request.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        stream: Option<Stream>,
        request: Option<InFlight>,
        // The request asked for an upgrade: only a 101 keeps the connection.
        upgrade: bool,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Tracked<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        if *this.upgrade && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let stream = this.stream.take();
        let request = this.request.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, _stream: stream, _request: request })))
    }
}

/// The timers of one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

enum Phase {
    /// Until the first request head: closed if none by the deadline.
    FirstRequest,
    /// HTTP/2 with streams in flight (or just finished): looked at every quarter idle timeout.
    Busy,
    /// HTTP/2 with nothing in flight since `started` streams had begun: closed at the deadline
    /// unless another began.
    Quiet { started: u64 },
    /// HTTP/1 after its first request: hyper's header-read timer owns idleness.
    Http1,
    /// Closing gracefully: dropped at the deadline.
    Closing,
}

/// Drive `conn` to its end, closing it (`close` = graceful shutdown) when it is slow to start,
/// idle, or the listener drains.
pub(super) async fn supervise<C, E>(
    conn: C,
    close: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    timers: Timers,
    mut shutdown: watch::Receiver<bool>,
    hold: Hold,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let mut phase = Phase::FirstRequest;
    let mut timer = pin!(tokio::time::sleep(timers.header_read_timeout));
    let mut draining = false;
    let ended = loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => break ended,
            // A dropped sender drains too.
            _ = shutdown.wait_for(|stop| *stop), if !draining => {
                draining = true;
                if !matches!(phase, Phase::Closing) {
                    close(conn.as_mut());
                }
                phase = Phase::Closing;
                timer.as_mut().reset(Instant::now() + timers.shutdown_grace);
            }
            _ = activity.first.notified(), if matches!(phase, Phase::FirstRequest) => {
                // HTTP/1 hands idleness to hyper's header-read timer; HTTP/2 starts its idle watch.
                if activity.streams().0 == 0 {
                    phase = Phase::Http1;
                } else {
                    phase = Phase::Busy;
                    timer.as_mut().reset(Instant::now() + timers.idle_timeout / 4);
                }
            }
            _ = timer.as_mut(), if !matches!(phase, Phase::Http1) => {
                let (next, wake) = match phase {
                    Phase::Closing => {
                        tracing::debug!("connection did not close in time: dropped");
                        break Ok(());
                    }
                    Phase::FirstRequest if !activity.served() => {
                        tracing::debug!("no request head within the header-read timeout: closing");
                        close(conn.as_mut());
                        (Phase::Closing, timers.header_read_timeout)
                    }
                    Phase::Quiet { started } if activity.streams() == (started, 0) => {
                        tracing::debug!("HTTP/2 connection idle: closing");
                        close(conn.as_mut());
                        (Phase::Closing, timers.header_read_timeout)
                    }
                    Phase::FirstRequest if activity.streams().0 == 0 => (Phase::Http1, Duration::ZERO),
                    _ => match activity.streams() {
                        (started, 0) => (Phase::Quiet { started }, timers.idle_timeout),
                        _ => (Phase::Busy, timers.idle_timeout / 4),
                    },
                };
                phase = next;
                timer.as_mut().reset(Instant::now() + wake);
            }
        }
    };
    drop(hold);
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

//! WebSockets and other HTTP/1.1 upgrades (RFC 9110 §7.8): which requests are tunnelled, which
//! 101 answers are accepted, and the tunnel itself.
//!
//! An upgrade goes through the same decision as any request; only then, and only when the
//! upstream answers 101 for a protocol the client asked for, do the two connections become one
//! byte stream. The tunnel ends when both directions have ended (each end's close is passed on
//! to the other), when no byte has crossed in either direction for `server.tunnel_idle_timeout`,
//! or `server.shutdown_grace` after the listener began draining. Every other answer to an
//! upgrade request closes the client connection afterwards (`server::conn`); the upstream
//! connection of a 101 never returns to the pool (`pool::PooledBody`).
//!
//! Never tunnelled: HTTP/1.0 and HTTP/2 requests, `CONNECT`, `Upgrade: h2c` (the gateway speaks
//! HTTP/2 itself, with prior knowledge), and requests with a body. Those keep today's treatment:
//! `Upgrade` is stripped as a hop-by-hop field and the request is forwarded as an ordinary one.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::server::Hold;

/// The protocols a request asks to switch to (its one `Upgrade` value), when the gateway would
/// tunnel it: HTTP/1.1, not `CONNECT`, `Connection` listing `upgrade`, no body, and no `h2c`
/// among the protocols.
pub fn requested(version: Version, method: &Method, headers: &HeaderMap, body_empty: bool) -> Option<HeaderValue> {
    // `Upgrade` first: one lookup is all an ordinary request costs.
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let (Some(value), None) = (upgrades.next(), upgrades.next()) else { return None };
    if version != Version::HTTP_11 || method == Method::CONNECT || !body_empty {
        return None;
    }
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let mut protocols = protocols(value).peekable();
    protocols.peek()?;
    let h2c = protocols.any(|p| p.eq_ignore_ascii_case(b"h2c"));
    (connection_upgrade && !h2c).then(|| value.clone())
}

/// A 101's `Upgrade` is one protocol, one of those the request asked for (case-insensitive).
pub fn accepted(asked: &HeaderValue, answer: &HeaderMap) -> bool {
    let mut answered = answer.get_all(UPGRADE).iter();
    let (Some(answered), None) = (answered.next(), answered.next()) else { return false };
    let mut chosen = protocols(answered);
    let (Some(chosen), None) = (chosen.next(), chosen.next()) else { return false };
    protocols(asked).any(|p| p.eq_ignore_ascii_case(chosen))
}

/// The non-empty items of a comma-separated list, trimmed.
fn protocols(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|p| !p.is_empty())
}

/// Why a tunnel ended: the `closed_by` label of `tokengate_tunnels_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client's side ended first (its close was passed on; then the upstream's followed).
    Client,
    /// The upstream's side ended first.
    Upstream,
    /// No byte either way for `server.tunnel_idle_timeout`.
    Idle,
    /// The listener drained for `server.shutdown_grace`.
    Shutdown,
    /// An I/O error on either side, or an upgrade that did not complete.
    Error,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Idle => "idle",
            ClosedBy::Shutdown => "shutdown",
            ClosedBy::Error => "error",
        }
    }
}

/// One tunnel counted open from its 101 until it ends, then counted by what ended it.
struct Counted {
    open: IntGauge,
    closed: [IntCounter; 5],
    by: ClosedBy,
}

impl Counted {
    fn new(metrics: &Metrics) -> Counted {
        let closed = crate::metrics::TUNNEL_CLOSERS.map(|c| metrics.tunnels.with_label_values(&[c]));
        metrics.tunnels_open.inc();
        Counted { open: metrics.tunnels_open.clone(), closed, by: ClosedBy::Error }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.dec();
        let i = crate::metrics::TUNNEL_CLOSERS.iter().position(|c| *c == self.by.as_str()).unwrap_or(4);
        self.closed[i].inc();
    }
}

/// Once hyper has written the 101 to the client (`down`) and handed over the upstream
/// connection (`up`), copy bytes both ways until the tunnel ends (see the module documentation).
/// `hold` keeps the client connection counted under `max_connections` and in the drain.
pub fn spawn(down: OnUpgrade, up: OnUpgrade, idle_timeout: Duration, hold: Option<Hold>, metrics: &Metrics) {
    let counted = Counted::new(metrics);
    tokio::spawn(async move {
        // The whole guard moves into the task (a field alone would be captured otherwise).
        let mut counted = counted;
        let drain_over = async {
            match hold.clone() {
                Some(hold) => hold.drain_over().await,
                None => std::future::pending().await,
            }
        };
        counted.by = tokio::select! {
            by = run(down, up, idle_timeout) => by,
            () = drain_over => ClosedBy::Shutdown,
        };
        tracing::debug!(closed_by = counted.by.as_str(), "tunnel closed");
        drop(hold);
    });
}

async fn run(down: OnUpgrade, up: OnUpgrade, idle_timeout: Duration) -> ClosedBy {
    let joined = tokio::time::timeout(idle_timeout, async { tokio::try_join!(down, up) }).await;
    let (down, up) = match joined {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return ClosedBy::Error;
        }
        Err(_) => return ClosedBy::Idle,
    };
    let activity = Arc::new(Activity { since: Instant::now(), last: AtomicU64::new(0), first_end: AtomicU8::new(0) });
    let mut client = Watched { io: TokioIo::new(down), side: CLIENT, activity: activity.clone() };
    let mut upstream = Watched { io: TokioIo::new(up), side: UPSTREAM, activity: activity.clone() };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    let idle = tokio::time::sleep(idle_timeout);
    let mut idle = std::pin::pin!(idle);
    loop {
        tokio::select! {
            copied = copy.as_mut() => {
                return match copied {
                    Err(e) => {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                        ClosedBy::Error
                    }
                    Ok(_) if activity.first_end.load(Ordering::Relaxed) == UPSTREAM => ClosedBy::Upstream,
                    Ok(_) => ClosedBy::Client,
                };
            }
            () = idle.as_mut() => {
                let last = activity.since + Duration::from_micros(activity.last.load(Ordering::Relaxed));
                let deadline = last + idle_timeout;
                if deadline <= Instant::now() {
                    return ClosedBy::Idle;
                }
                idle.as_mut().reset(deadline);
            }
        }
    }
}

const CLIENT: u8 = 1;
const UPSTREAM: u8 = 2;

/// When a byte last crossed (microseconds after `since`), and which side ended first.
struct Activity {
    since: Instant,
    last: AtomicU64,
    first_end: AtomicU8,
}

/// One end of a tunnel, reporting what it reads to the tunnel's `Activity`.
struct Watched<T> {
    io: T,
    side: u8,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                let micros = self.activity.since.elapsed().as_micros();
                self.activity.last.store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Relaxed);
            } else if asked {
                let _ = self.activity.first_end.compare_exchange(0, self.side, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const WS: &[(&str, &str)] = &[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")];

    /// Only an HTTP/1.1 request without a body, `Connection: upgrade` and one `Upgrade` that
    /// does not name h2c is tunnelled; `CONNECT` never is.
    #[test]
    fn which_requests_are_tunnelled() {
        let get = Method::GET;
        let asked = requested(Version::HTTP_11, &get, &headers(WS), true);
        assert_eq!(asked.unwrap(), "websocket");
        assert!(requested(Version::HTTP_10, &get, &headers(WS), true).is_none());
        assert!(requested(Version::HTTP_2, &get, &headers(WS), true).is_none());
        assert!(requested(Version::HTTP_11, &Method::CONNECT, &headers(WS), true).is_none());
        assert!(requested(Version::HTTP_11, &get, &headers(WS), false).is_none(), "a body");
        let refused: &[&[(&str, &str)]] = &[
            &[("upgrade", "websocket")],
            &[("connection", "upgrade")],
            &[("connection", "upgraded"), ("upgrade", "websocket")],
            &[("connection", "upgrade"), ("upgrade", "h2c")],
            &[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "websocket, H2C")],
            &[("connection", "upgrade"), ("upgrade", " , ")],
            &[("connection", "upgrade"), ("upgrade", "websocket"), ("upgrade", "foo")],
        ];
        for h in refused {
            assert!(requested(Version::HTTP_11, &get, &headers(h), true).is_none(), "{h:?}");
        }
        let split = [("connection", "keep-alive"), ("connection", "UPGRADE"), ("upgrade", "foo/2, websocket")];
        assert_eq!(requested(Version::HTTP_11, &get, &headers(&split), true).unwrap(), "foo/2, websocket");
    }

    /// A 101 must name exactly one protocol, one the client asked for, in any case.
    #[test]
    fn which_answers_are_accepted() {
        let asked = HeaderValue::from_static("foo/2, websocket");
        assert!(accepted(&asked, &headers(&[("upgrade", "WebSocket")])));
        assert!(accepted(&asked, &headers(&[("upgrade", " foo/2 ")])));
        assert!(!accepted(&asked, &headers(&[("upgrade", "foo")])));
        assert!(!accepted(&asked, &headers(&[("upgrade", "websocket, foo/2")])));
        assert!(!accepted(&asked, &headers(&[("upgrade", "websocket"), ("upgrade", "websocket")])));
        assert!(!accepted(&asked, &headers(&[])));
    }

    /// Bytes read mark activity; the first end of stream names its side, later ones do not.
    #[tokio::test]
    async fn activity_and_first_end() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let activity =
            Arc::new(Activity { since: Instant::now(), last: AtomicU64::new(0), first_end: AtomicU8::new(0) });
        let (mut a, b) = tokio::io::duplex(64);
        let (c, d) = tokio::io::duplex(64);
        let mut up = Watched { io: b, side: UPSTREAM, activity: activity.clone() };
        let mut client = Watched { io: c, side: CLIENT, activity: activity.clone() };
        a.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut buf = [0u8; 8];
        assert_eq!(up.read(&mut buf).await.unwrap(), 1);
        assert!(activity.last.load(Ordering::Relaxed) >= 1000, "a read marks the time");
        drop(a);
        assert_eq!(up.read(&mut buf).await.unwrap(), 0);
        drop(d);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(activity.first_end.load(Ordering::Relaxed), UPSTREAM);
    }
}

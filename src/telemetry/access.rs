//! The access log: one line per request and per decision-service question, at info level on
//! the `access` target, written once whatever the outcome. A proxied request's line is written
//! when its response body ends (or the client goes away), so it carries the bytes sent and the
//! whole duration.
//!
//! Keys (a fixed interface, for log pipelines): `request_id door client method host path [query]
//! route decision reason status subject client_id issuer upstream upstream_status bytes_in
//! bytes_out duration_ms upstream_duration_ms`. Absent values are null. No field holds a token:
//! credentials travel in headers, the query (logged only when `access_log.query`, and then
//! without `access_token`) and form bodies (never logged).

use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method};
use http_body::{Body, Frame, SizeHint};

use super::line::Line;
use crate::auth::Principal;
use crate::config::AccessLogSettings;
use crate::respond::Denial;

/// The tracing target of access-log lines (`RUST_LOG=access=off` silences them).
pub const TARGET: &str = "access";

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-chosen request id is kept (from a trusted peer) only if it is this short and plain.
const MAX_REQUEST_ID: usize = 128;

/// The request id: the trusted peer's `X-Request-Id` when it sent exactly one plain value,
/// otherwise a new one (32 hex digits: a per-process random prefix and a counter, unique
/// without a random draw per request).
pub fn request_id(headers: &HeaderMap, trusted: bool) -> HeaderValue {
    if trusted {
        let mut values = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(v), None) = (values.next(), values.next()) {
            let plain = v.as_bytes().iter().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'));
            if plain && !v.is_empty() && v.len() <= MAX_REQUEST_ID {
                return v.clone();
            }
        }
    }
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Uniqueness across restarts only; a failed draw still gives the time.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            bytes = (now.as_nanos() as u64).to_be_bytes();
        }
        u64::from_be_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("{prefix:016x}{n:016x}");
    HeaderValue::from_maybe_shared(Bytes::from(id)).expect("hex digits are a header value")
}

/// Whether a line would be written: configured on, and `RUST_LOG` lets `access` info through.
pub fn enabled(settings: &AccessLogSettings) -> bool {
    settings.enabled && tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// One request's line, filled along the pipeline.
#[derive(Debug)]
pub struct Entry {
    pub started: Instant,
    /// `proxy`, or the decision service's door.
    pub door: &'static str,
    pub request_id: HeaderValue,
    pub client: IpAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    /// Path and query as the client sent them.
    pub target: String,
    pub route: Option<Arc<str>>,
    /// `allowed`, `denied` (the request is refused) or `error` (it could not be decided or
    /// served: an identity provider or the upstream failed).
    pub decision: &'static str,
    /// Why, when not allowed: the same closed set as the metrics' `decision` label.
    pub reason: Option<&'static str>,
    pub status: u16,
    pub principal: Option<Arc<Principal>>,
    pub upstream: Option<Arc<str>>,
    pub upstream_status: Option<u16>,
    pub upstream_duration: Option<Duration>,
    /// The request's declared `Content-Length`.
    pub bytes_in: Option<u64>,
    pub bytes_out: u64,
    pub settings: AccessLogSettings,
}

impl Entry {
    /// A line for a request, or `None` when no line would be written (nothing is copied then).
    pub fn start(
        settings: &AccessLogSettings,
        door: &'static str,
        request_id: &HeaderValue,
        client: IpAddr,
        started: Instant,
    ) -> Option<Box<Entry>> {
        enabled(settings).then(|| Entry::new(settings, door, request_id, client, started))
    }

    pub fn new(
        settings: &AccessLogSettings,
        door: &'static str,
        request_id: &HeaderValue,
        client: IpAddr,
        started: Instant,
    ) -> Box<Entry> {
        Box::new(Entry {
            started,
            door,
            request_id: request_id.clone(),
            client,
            method: Method::GET,
            host: None,
            target: String::new(),
            route: None,
            decision: "allowed",
            reason: None,
            status: 0,
            principal: None,
            upstream: None,
            upstream_status: None,
            upstream_duration: None,
            bytes_in: None,
            bytes_out: 0,
            settings: *settings,
        })
    }

    /// What the request said of itself: method, host, target (path and query) and, from its
    /// headers, its declared length.
    pub fn request(&mut self, method: &Method, host: Option<&HeaderValue>, target: &str, headers: &HeaderMap) {
        self.method = method.clone();
        self.host = host.cloned();
        self.target = target.to_owned();
        self.bytes_in = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    }

    /// Record a refusal: `error` for failures of a dependency, `denied` for the rest.
    pub fn refused(&mut self, denial: &Denial) {
        self.decision = if denial.is_failure() { "error" } else { "denied" };
        self.reason = Some(denial.reason());
    }

    /// Write the line.
    pub fn emit(&self) {
        tracing::info!(target: TARGET, "{}", Rendered(self));
    }

    fn write(&self, l: &mut Line<'_>) -> fmt::Result {
        // Header values are visible ASCII unless a client sent obs-text: borrowed, not copied.
        fn text(v: &HeaderValue) -> std::borrow::Cow<'_, str> {
            String::from_utf8_lossy(v.as_bytes())
        }
        l.str("request_id", &text(&self.request_id))?;
        l.str("door", self.door)?;
        l.plain("client", self.client)?;
        l.str("method", self.method.as_str())?;
        l.opt("host", self.host.as_ref().map(text).as_deref())?;
        let (path, query) = match self.target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.target.as_str(), None),
        };
        l.str("path", path)?;
        if self.settings.query {
            let query = query.map(|q| match crate::proxy::forwarded::without_access_token(q.as_bytes()) {
                Some(rest) => String::from_utf8_lossy(&rest).into_owned(),
                None => q.to_owned(),
            });
            l.opt("query", query.as_deref().filter(|q| !q.is_empty()))?;
        }
        l.opt("route", self.route.as_deref())?;
        l.str("decision", self.decision)?;
        l.opt("reason", self.reason)?;
        l.num("status", self.status)?;
        let who = self.principal.as_deref().filter(|_| self.settings.subjects);
        l.opt("subject", who.and_then(|p| p.subject.as_deref()))?;
        l.opt("client_id", who.and_then(|p| p.client_id.as_deref()))?;
        l.opt("issuer", self.principal.as_deref().map(|p| &*p.issuer_id))?;
        l.opt("upstream", self.upstream.as_deref())?;
        l.opt_num("upstream_status", self.upstream_status)?;
        l.opt_num("bytes_in", self.bytes_in)?;
        l.num("bytes_out", self.bytes_out)?;
        l.num("duration_ms", Millis(self.started.elapsed()))?;
        l.opt_num("upstream_duration_ms", self.upstream_duration.map(Millis))
    }
}

/// An entry's fields in the process's log format, after the line's own `time`, `level`, `target`.
struct Rendered<'e>(&'e Entry);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(&mut Line::resume(f, super::format()))
    }
}

/// Milliseconds with microsecond precision.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts what it sends and writes the request's line when it is
    /// dropped: at its end, or when the client goes away first.
    pub struct Logged<B> {
        #[pin]
        body: B,
        pending: Pending,
    }
}

/// The line waiting for its body to end.
struct Pending(Option<Box<Entry>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(entry) = &self.0 {
            entry.emit();
        }
    }
}

impl<B> Logged<B> {
    pub fn new(body: B, entry: Option<Box<Entry>>) -> Self {
        Logged { body, pending: Pending(entry) }
    }
}

impl<B: Body<Data = Bytes>> Body for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(entry)) = (&frame, this.pending.0.as_mut()) {
            if let Some(data) = frame.data_ref() {
                entry.bytes_out += data.len() as u64;
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;

//! Traces: W3C Trace Context and OTLP span export, off unless an OTLP endpoint is configured.
//!
//! **Off** (no `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
//! `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`): every helper here is one load of
//! a static that finds nothing, and its `Span` holds nothing. No header is touched: a client's
//! `traceparent` and `tracestate` reach the upstream as any other header does.
//!
//! **On**: spans go through the OpenTelemetry SDK's batch span processor (a thread of its own)
//! to an OTLP/HTTP protobuf exporter (reqwest's blocking client, rustls), configured by the
//! standard variables the SDK reads: the endpoint, `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`,
//! `_TIMEOUT`, `_COMPRESSION`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER[_ARG]` (default: parent-based,
//! always on), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (service name `tokengate`
//! unless they name one). The request span continues the client's trace (`traceparent`,
//! `tracestate`); the upstream span's context replaces both on the request sent upstream.
//!
//! Spans, parent to child: `request` (server; one per proxied request or decision question) →
//! `authenticate` → `jwks_fetch` (an unknown key's refetch) or `introspection` (client); and
//! `request` → `upstream` (client). Background JWKS refreshes are `jwks_fetch` root spans.
//! Attributes are fixed labels, ids and status codes: never a token, a path, a query, a claim
//! or a header value.
//!
//! The OpenTelemetry API is used directly, not through `tracing` (tracing-opentelemetry): spans
//! do not depend on `RUST_LOG`, the log subscriber stays as it is, and the off path costs one
//! branch instead of a disabled-span check per span site.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, Key, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::auth::{AuthError, Principal};
use crate::respond::{Denial, UpstreamError};

/// The tracer, once `init` installed an exporter; its absence is the "off" every helper checks.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

// Attribute keys: OpenTelemetry's HTTP semantic conventions where one fits, ours otherwise.
const METHOD: &str = "http.request.method";
const STATUS_CODE: &str = "http.response.status_code";
const ERROR_TYPE: &str = "error.type";
const DOOR: &str = "tokengate.door";
const REQUEST_ID: &str = "tokengate.request_id";
const ROUTE: &str = "tokengate.route";
const DECISION: &str = "tokengate.decision";
const REASON: &str = "tokengate.reason";
const CACHE: &str = "tokengate.cache";
const ISSUER: &str = "tokengate.issuer";
const OUTCOME: &str = "tokengate.outcome";

/// Whether spans are exported (an OTLP endpoint is configured and the exporter was set up).
#[inline]
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Flushes and stops the exporter when dropped: hold it until the process ends.
#[must_use = "dropping the guard stops span export"]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            // Exports what is queued (bounded by OTEL_BSP_EXPORT_TIMEOUT) and joins the thread.
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "traces: the last spans could not be exported");
            }
        }
    }
}

/// Install the OTLP exporter when the environment asks for one (see the module doc); a no-op
/// otherwise. Call once, outside any async runtime (the exporter's blocking HTTP client runs a
/// runtime of its own). An exporter that cannot be set up is logged and tracing stays off: the
/// gateway's job does not depend on it.
pub fn init() -> Guard {
    let env = |name: &str| std::env::var(name).ok();
    if !wanted(env) {
        return Guard(None);
    }
    for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(p) = env(name).filter(|p| !p.trim().eq_ignore_ascii_case("http/protobuf")) {
            tracing::warn!(variable = name, protocol = %p, "traces: only http/protobuf is supported; using it");
        }
    }
    let exporter =
        match opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build() {
            Ok(exporter) => exporter,
            Err(e) => {
                tracing::error!(error = %e, "traces: the OTLP exporter could not be set up; no spans are exported");
                return Guard(None);
            }
        };
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource(env)).build();
    let scope = InstrumentationScope::builder("tokengate").with_version(env!("CARGO_PKG_VERSION")).build();
    if TRACER.set(provider.tracer_with_scope(scope)).is_err() {
        return Guard(None);
    }
    tracing::info!("traces: exporting spans over OTLP/HTTP");
    Guard(Some(provider))
}

/// An endpoint is set, and neither the SDK nor the traces exporter is switched off.
fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
    !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The SDK's resource (its detectors read `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`),
/// named `tokengate` with its version unless those variables say otherwise.
fn resource(env: impl Fn(&str) -> Option<String>) -> Resource {
    let from_env = EnvResourceDetector::new().detect();
    let given = |key: &'static str| from_env.get(&Key::from_static_str(key)).is_some();
    let mut builder = Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) && !given("service.name") {
        builder = builder.with_service_name("tokengate");
    }
    if !given("service.version") {
        builder = builder.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    builder.build()
}

/// One span, ended when dropped; holds nothing when tracing is off.
#[must_use]
pub struct Span(Option<Context>);

impl Span {
    /// A child of the current context's span (a root span where there is none).
    fn child(name: &'static str, kind: SpanKind, attributes: impl FnOnce() -> Vec<KeyValue>) -> Span {
        let Some(tracer) = TRACER.get() else { return Span(None) };
        Span(Some(Context::map_current(|parent| start(tracer, name, kind, parent, attributes()))))
    }

    /// `jwks_fetch`: one fetch of `issuer`'s key set (a root span for a background refresh).
    pub fn jwks_fetch(issuer: &str) -> Span {
        Span::child("jwks_fetch", SpanKind::Client, || vec![KeyValue::new(ISSUER, issuer.to_owned())])
    }

    /// `introspection`: one lookup of an opaque token at `issuer`, answered from the cache or by
    /// a call. Run the lookup under `scope`, so that the call's outcome (`outcome`) lands here.
    pub fn introspection(issuer: &Arc<str>) -> Span {
        Span::child("introspection", SpanKind::Client, || vec![KeyValue::new(ISSUER, issuer.clone())])
    }

    /// `upstream`: the request about to go upstream. When tracing is on, its `traceparent` and
    /// `tracestate` are replaced by this span's context; when off, `headers` are not touched.
    pub fn upstream(headers: &mut HeaderMap) -> Span {
        let span = Span::child("upstream", SpanKind::Client, Vec::new);
        if let Some(cx) = &span.0 {
            headers.remove(&TRACEPARENT);
            headers.remove(&TRACESTATE);
            TraceContextPropagator::new().inject_context(cx, &mut Outgoing(headers));
        }
        span
    }

    /// Run `future` with this span as the current context (its children's parent).
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped { cx: self.0.clone(), future }
    }

    fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute());
        }
    }

    fn fail(&self) {
        if let Some(cx) = &self.0 {
            cx.span().set_status(Status::error(""));
        }
    }

    /// The fetch's outcome (the `tokengate_jwks_fetches_total` label); anything but `success`
    /// marks the span as failed.
    pub fn fetched(&self, outcome: &'static str) {
        self.set(|| KeyValue::new(OUTCOME, outcome));
        if outcome != "success" {
            self.fail();
        }
    }

    /// An introspection lookup: answered by a call (a cache miss) or from the cache; for a hit,
    /// the cached answer's outcome (a call records its own through `outcome`). Also tells the
    /// enclosing `authenticate` span.
    pub fn looked_up(&self, called: bool, cached_outcome: impl FnOnce() -> &'static str) {
        if self.0.is_none() {
            return;
        }
        self.set(|| KeyValue::new(CACHE, if called { "miss" } else { "hit" }));
        if !called {
            self.set(|| KeyValue::new(OUTCOME, cached_outcome()));
        }
        cache_lookup(!called);
    }

    /// The upstream's answer (its status), or why there was none.
    pub fn answered(&self, outcome: Result<StatusCode, UpstreamError>) {
        match outcome {
            Ok(status) => {
                self.set(|| KeyValue::new(STATUS_CODE, i64::from(status.as_u16())));
                // A client span fails on 4xx and 5xx (OpenTelemetry's HTTP conventions).
                if status.as_u16() >= 400 {
                    self.fail();
                }
            }
            Err(e) => {
                self.set(|| KeyValue::new(ERROR_TYPE, upstream_error(e)));
                self.fail();
            }
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

fn start(
    tracer: &SdkTracer,
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    attributes: Vec<KeyValue>,
) -> Context {
    let span = tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(tracer, parent);
    parent.with_span(span)
}

fn upstream_error(e: UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect => "connect",
        UpstreamError::Timeout => "timeout",
        UpstreamError::Broken => "broken",
        UpstreamError::Overloaded => "overloaded",
    }
}

/// Record an outcome label on the current span (an introspection call's, from inside it).
pub fn outcome(outcome: &'static str) {
    if enabled() {
        Context::map_current(|cx| cx.span().set_attribute(KeyValue::new(OUTCOME, outcome)));
    }
}

/// Record that the token was verified (a cache miss) on the enclosing `authenticate` span.
pub fn verified() {
    cache_lookup(false);
}

/// What the token caches did for one `authenticate` span: nothing recorded yet, a hit, or a
/// miss (work was done: a signature verified, an introspection call made). A miss is final.
#[derive(Clone)]
struct Lookup(Arc<AtomicU8>);

const NOT_LOOKED_UP: u8 = 0;
const HIT: u8 = 1;
const MISS: u8 = 2;

fn cache_lookup(hit: bool) {
    if !enabled() {
        return;
    }
    Context::map_current(|cx| {
        if let Some(Lookup(state)) = cx.get::<Lookup>() {
            match hit {
                true => {
                    let _ = state.compare_exchange(NOT_LOOKED_UP, HIT, Ordering::Relaxed, Ordering::Relaxed);
                }
                false => state.store(MISS, Ordering::Relaxed),
            }
        }
    });
}

/// `authenticate`: run `authentication` under its span. `tokengate.cache` is `miss` when the
/// token was verified or introspected, `hit` when it was admitted from a cache (or its cached
/// introspection answer refused it), absent for a refusal that needed no verification (before
/// any lookup, or a remembered refusal); `tokengate.issuer` names the issuer that vouched for
/// it, `tokengate.reason` why it was refused.
pub async fn authenticate<F>(authentication: F) -> Result<Arc<Principal>, AuthError>
where
    F: Future<Output = Result<Arc<Principal>, AuthError>>,
{
    let Some(tracer) = TRACER.get() else { return authentication.await };
    let lookup = Arc::new(AtomicU8::new(NOT_LOOKED_UP));
    let cx = Context::map_current(|parent| {
        start(tracer, "authenticate", SpanKind::Internal, parent, Vec::new()).with_value(Lookup(lookup.clone()))
    });
    let span = Span(Some(cx));
    let result = span.scope(authentication).await;
    let cache = match (lookup.load(Ordering::Relaxed), &result) {
        (MISS, _) => Some("miss"),
        (HIT, _) | (_, Ok(_)) => Some("hit"),
        _ => None,
    };
    if let Some(cache) = cache {
        span.set(|| KeyValue::new(CACHE, cache));
    }
    match &result {
        Ok(principal) => span.set(|| KeyValue::new(ISSUER, principal.issuer_id.clone())),
        Err(e) => span.set(|| KeyValue::new(REASON, e.reason())),
    }
    result
}

/// The span of one request or decision question (`request`, a server span): the child of the
/// client's span when its headers carry a valid `traceparent`, else a new trace's root.
#[must_use]
pub struct RequestSpan {
    span: Span,
    refused: bool,
}

impl RequestSpan {
    pub fn start(headers: &HeaderMap, method: &Method, request_id: &HeaderValue) -> RequestSpan {
        let Some(tracer) = TRACER.get() else { return RequestSpan { span: Span(None), refused: false } };
        let parent = TraceContextPropagator::new().extract(&Incoming::new(headers));
        let attributes = vec![
            KeyValue::new(METHOD, method_label(method)),
            KeyValue::new(REQUEST_ID, String::from_utf8_lossy(request_id.as_bytes()).into_owned()),
        ];
        RequestSpan {
            span: Span(Some(start(tracer, "request", SpanKind::Server, &parent, attributes))),
            refused: false,
        }
    }

    /// Run `future` with this span as the current context.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        self.span.scope(future)
    }

    /// The request was refused (`denied`) or could not be served (`error`), and why.
    pub fn refused(&mut self, denial: &Denial) {
        if self.span.0.is_some() {
            self.refused = true;
            self.span.set(|| KeyValue::new(DECISION, if denial.is_failure() { "error" } else { "denied" }));
            self.span.set(|| KeyValue::new(REASON, denial.reason()));
        }
    }

    /// The answer: the door it came through, the route it was counted under, its status. Ends
    /// the span (at the response head; the body streams on).
    pub fn finish(self, door: &'static str, route: Option<&Arc<str>>, status: StatusCode) {
        let span = &self.span;
        if span.0.is_none() {
            return;
        }
        span.set(|| KeyValue::new(DOOR, door));
        if let Some(route) = route {
            span.set(|| KeyValue::new(ROUTE, route.clone()));
        }
        span.set(|| KeyValue::new(STATUS_CODE, i64::from(status.as_u16())));
        if !self.refused {
            span.set(|| KeyValue::new(DECISION, "allowed"));
        }
        // A server span fails on 5xx only: a 4xx is the client's doing.
        if status.is_server_error() {
            span.fail();
        }
    }
}

/// `http.request.method`: the standard methods by name, any other as `_OTHER` (the semantic
/// conventions' bound on cardinality).
fn method_label(method: &Method) -> &'static str {
    let known = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::CONNECT, "CONNECT"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::PATCH, "PATCH"),
    ];
    known.iter().find(|(m, _)| m == method).map_or("_OTHER", |(_, name)| name)
}

pin_project_lite::pin_project! {
    /// A future run with a span's context as the current one (attached on each poll).
    pub struct Scoped<F> {
        cx: Option<Context>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.cx.as_ref().map(|cx| cx.clone().attach());
        this.future.poll(task)
    }
}

/// The trace context of an incoming request. One `traceparent` (two are no parent, as W3C
/// Trace Context §3.2 asks); several `tracestate` fields are one list, joined (§3.3).
struct Incoming<'h> {
    headers: &'h HeaderMap,
    tracestate: Option<String>,
}

impl<'h> Incoming<'h> {
    fn new(headers: &'h HeaderMap) -> Incoming<'h> {
        let fields: Vec<&str> = headers.get_all(&TRACESTATE).iter().filter_map(|v| v.to_str().ok()).collect();
        Incoming { headers, tracestate: (!fields.is_empty()).then(|| fields.join(",")) }
    }
}

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACESTATE.as_str() {
            return self.tracestate.as_deref();
        }
        let mut values = self.headers.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(HeaderName::as_str).collect()
    }
}

/// The request going upstream: an empty value (no `tracestate`) sets no field.
struct Outgoing<'h>(&'h mut HeaderMap);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else { return };
        match HeaderValue::from_str(&value) {
            Ok(value) if !value.is_empty() => {
                self.0.insert(name, value);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn on_only_with_an_endpoint_and_not_disabled() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(!wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
        assert!(!wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])));
    }

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn incoming_trace_context() {
        let h = headers(&[("traceparent", PARENT), ("tracestate", "a=1"), ("tracestate", "b=2")]);
        let incoming = Incoming::new(&h);
        assert_eq!(incoming.get("traceparent"), Some(PARENT));
        assert_eq!(incoming.get("tracestate"), Some("a=1,b=2"), "several fields are one list");
        let cx = TraceContextPropagator::new().extract(&incoming);
        let parent = cx.span().span_context().clone();
        assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.trace_state().header(), "a=1,b=2");

        let two = headers(&[("traceparent", PARENT), ("traceparent", PARENT)]);
        assert_eq!(Incoming::new(&two).get("traceparent"), None, "two traceparent fields are no parent");
        let cx = TraceContextPropagator::new().extract(&Incoming::new(&two));
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn outgoing_replaces_and_drops_empty_fields() {
        let mut h = headers(&[("traceparent", PARENT), ("tracestate", "a=1")]);
        let mut out = Outgoing(&mut h);
        out.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        out.set("tracestate", String::new());
        assert_eq!(h.get_all("traceparent").iter().count(), 1);
        assert_eq!(h["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert!(!h.contains_key("tracestate"));
    }

    /// Off (no exporter installed in unit tests), nothing is touched and nothing is recorded.
    #[test]
    fn off_leaves_headers_alone() {
        assert!(!enabled());
        let mut h = headers(&[("traceparent", PARENT), ("tracestate", "a=1")]);
        let before = h.clone();
        let span = Span::upstream(&mut h);
        assert!(span.0.is_none());
        assert_eq!(h, before);
        let request = RequestSpan::start(&h, &Method::GET, &HeaderValue::from_static("id"));
        assert!(request.span.0.is_none());
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").unwrap()), "_OTHER");
    }
}

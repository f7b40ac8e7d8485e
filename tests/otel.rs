//! Traces as a collector receives them: the real binary exporting over OTLP/HTTP to a loopback
//! receiver that decodes every export with the OTLP protobuf types, a real issuer (the dev
//! issuer: JWTs, a key rotation, opaque tokens by introspection) and a real upstream that
//! records the trace context it was sent. Checked: the client's trace is continued, the
//! upstream gets the upstream span's context, the span tree and its attributes, refusals, the
//! decision service, the flush at exit, a canary token that no export may carry, and that with
//! tracing off the client's `traceparent` and `tracestate` pass through untouched.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use support::process::GatewayProcess;
use support::*;
use tokengate::dev_issuer::{DevClient, DevIssuer, SigningKey, TokenFormat};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One span as the collector got it, with its resource's attributes.
#[derive(Debug, Clone)]
struct Got {
    resource: Vec<KeyValue>,
    span: Span,
}

impl Got {
    fn name(&self) -> &str {
        &self.span.name
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute's value as text (strings as they are, numbers in decimal).
    fn attr(&self, key: &str) -> Option<String> {
        value_of(&self.span.attributes, key)
    }

    fn resource_attr(&self, key: &str) -> Option<String> {
        value_of(&self.resource, key)
    }
}

fn value_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one `POST /v1/traces` brought.
struct Export {
    content_type: Option<String>,
    raw: Bytes,
    spans: Vec<Got>,
}

/// A loopback OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`,
/// answered 200 with an empty `ExportTraceServiceResponse`; anything else 404 (and fails the
/// test when it is inspected).
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
    arrivals: Arc<watch::Sender<usize>>,
    strays: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let arrivals = Arc::new(watch::Sender::new(0));
        let strays = Arc::new(Mutex::new(Vec::new()));
        let (e, a, s) = (exports.clone(), arrivals.clone(), strays.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (e, a, s) = (e.clone(), a.clone(), s.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (e, a, s) = (e.clone(), a.clone(), s.clone());
                    async move { Ok::<_, Infallible>(receive(req, &e, &a, &s).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, exports, arrivals, strays, task }
    }

    /// The gateway's environment for exporting here: a short batch delay, so spans arrive soon
    /// after they end, and a resource attribute from `OTEL_RESOURCE_ATTRIBUTES`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", self.addr)),
            ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test".into()),
        ]
    }

    fn spans(&self) -> Vec<Got> {
        self.exports.lock().unwrap().iter().flat_map(|e| e.spans.clone()).collect()
    }

    /// The spans received once `ready` says they are all there, waiting for more exports
    /// (bounded by WAIT).
    async fn wait_for(&self, what: &str, ready: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let mut arrivals = self.arrivals.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let spans = self.spans();
            if ready(&spans) {
                assert!(self.strays.lock().unwrap().is_empty(), "unexpected requests: {:?}", self.strays);
                return spans;
            }
            let changed = tokio::time::timeout_at(deadline, arrivals.changed()).await;
            assert!(matches!(changed, Ok(Ok(()))), "{what}: not received within {WAIT:?}; got {:#?}", summary(&spans));
        }
    }

    /// The spans of `trace`, once its `request` span has arrived: a parent ends after its
    /// children, and the batch processor exports spans in the order they end.
    async fn trace(&self, trace: &str) -> Vec<Got> {
        let spans = self.wait_for(trace, |s| s.iter().any(|g| g.name() == "request" && g.trace_id() == trace)).await;
        spans.into_iter().filter(|g| g.trace_id() == trace).collect()
    }
}

async fn receive(
    req: Request<Incoming>,
    exports: &Mutex<Vec<Export>>,
    arrivals: &watch::Sender<usize>,
    strays: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        strays.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
        return Response::builder().status(404).body(Full::default()).unwrap();
    }
    let content_type = req.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    let request = ExportTraceServiceRequest::decode(raw.clone()).expect("an OTLP protobuf export");
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|rs| {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            rs.scope_spans.into_iter().flat_map(move |ss| {
                let resource = resource.clone();
                ss.spans.into_iter().map(move |span| Got { resource: resource.clone(), span })
            })
        })
        .collect();
    let count = {
        let mut all = exports.lock().unwrap();
        all.push(Export { content_type, raw, spans });
        all.len()
    };
    arrivals.send_replace(count);
    Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(ExportTraceServiceResponse::default().encode_to_vec())))
        .unwrap()
}

fn summary(spans: &[Got]) -> Vec<String> {
    spans
        .iter()
        .map(|g| format!("{} trace={} span={} parent={}", g.name(), g.trace_id(), g.span_id(), g.parent_id()))
        .collect()
}

/// The one span named `name` whose parent is `parent` (a span id).
fn child<'s>(spans: &'s [Got], name: &str, parent: &str) -> &'s Got {
    let found: Vec<&Got> = spans.iter().filter(|g| g.name() == name && g.parent_id() == parent).collect();
    assert_eq!(found.len(), 1, "one {name} under {parent}: {:#?}", summary(spans));
    found[0]
}

fn only<'s>(spans: &'s [Got], name: &str) -> &'s Got {
    let found: Vec<&Got> = spans.iter().filter(|g| g.name() == name).collect();
    assert_eq!(found.len(), 1, "one {name}: {:#?}", summary(spans));
    found[0]
}

/// A client's `traceparent` for trace `trace` (32 hex digits), span `span` (16), sampled.
fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The dev issuer (ES256 key `k`; an opaque-token client; the gateway's introspection client)
/// and the upstream.
struct Env {
    idp: DevIssuer,
    up: Upstream,
}

impl Env {
    async fn new() -> Env {
        let idp = DevIssuer::builder()
            .keys(vec![Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256))])
            .client(
                DevClient::new("opaque-app", "opaque-secret").with_scopes(&["read"]).with_format(TokenFormat::Opaque),
            )
            .client(DevClient::new("gateway", "gateway-secret"))
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Env { idp, up: Upstream::start().await }
    }

    /// Required `/orders`, public `/public`, tokens also in the query and form bodies (so that
    /// the canary can travel there); JWTs checked locally, opaque tokens introspected.
    fn config(&self, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{ url: {} }}\n\
             tokens: {{ query: true, form_body: true }}\n\
             issuers:\n  - id: dev\n    issuer: {}\n    jwks_uri: {}\n    audiences: [api]\n    \
             introspection: {{ endpoint: {}, client_id: gateway, client_secret: gateway-secret }}\n\
             routes:\n  - {{ id: public, path_prefix: /public, auth: none }}\n  - {{ id: orders, path_prefix: /orders, auth: required }}\n{extra}",
            self.up.url(),
            self.idp.issuer(),
            self.idp.jwks_uri(),
            self.idp.introspection_endpoint(),
        )
    }

    fn token(&self) -> String {
        self.idp.mint(json!({"sub": "alice", "client_id": "billing", "aud": "api", "scope": "read"}))
    }

    /// The gateway, exporting to `collector`.
    async fn gateway(&self, collector: &Collector, extra: &str) -> GatewayProcess {
        let env = collector.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        GatewayProcess::start(&env, Some(&self.config(extra))).await
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The client's trace continues through the gateway: its `request` span is the child of the
/// client's span, `authenticate` (a miss, then a hit for the same token) and `upstream` are its
/// children, and the upstream receives the upstream span's context with the client's
/// `tracestate`. The key set's fetch is traced too.
#[tokio::test]
async fn spans_continue_the_client_trace_to_the_upstream() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let token = env.token();
    let c = client(false);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = c
            .get(gw.url("/orders/1?page=2"))
            .bearer_auth(&token)
            .header("traceparent", traceparent(trace, CLIENT_SPAN))
            .header("tracestate", "vendor=abc")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ids.push(request_id(&response));
    }
    let spans = collector
        .wait_for("two requests and the key set's fetch", |s| {
            s.iter().filter(|g| g.name() == "request" && g.trace_id() == trace).count() == 2
                && s.iter().any(|g| g.name() == "jwks_fetch")
        })
        .await;
    assert!(collector
        .exports
        .lock()
        .unwrap()
        .iter()
        .all(|e| e.content_type.as_deref() == Some("application/x-protobuf")));

    let seen: HashMap<String, Seen> =
        env.up.seen().into_iter().map(|s| (s.headers["x-request-id"].to_str().unwrap().to_owned(), s)).collect();
    for (n, id) in ids.iter().enumerate() {
        let request =
            spans.iter().find(|g| g.name() == "request" && g.attr("tokengate.request_id").as_ref() == Some(id));
        let request = request.unwrap_or_else(|| panic!("no request span for {id}: {:#?}", summary(&spans)));
        assert_eq!((request.trace_id(), request.parent_id()), (trace.to_owned(), CLIENT_SPAN.to_owned()));
        assert_eq!(request.span.kind, SpanKind::Server as i32);
        for (key, value) in [
            ("http.request.method", "GET"),
            ("http.response.status_code", "200"),
            ("tokengate.route", "orders"),
            ("tokengate.decision", "allowed"),
            ("tokengate.door", "proxy"),
        ] {
            assert_eq!(request.attr(key).as_deref(), Some(value), "{key}: {request:?}");
        }
        assert_eq!(request.attr("tokengate.reason"), None);
        assert_eq!(request.resource_attr("service.name").as_deref(), Some("tokengate"));
        assert_eq!(request.resource_attr("deployment.environment.name").as_deref(), Some("test"));

        let authenticate = child(&spans, "authenticate", &request.span_id());
        let cache = if n == 0 { "miss" } else { "hit" };
        assert_eq!(authenticate.attr("tokengate.cache").as_deref(), Some(cache), "request {n}: {authenticate:?}");
        assert_eq!(authenticate.attr("tokengate.issuer").as_deref(), Some(env.idp.issuer()));
        assert_eq!(authenticate.trace_id(), trace);

        let upstream = child(&spans, "upstream", &request.span_id());
        assert_eq!(upstream.span.kind, SpanKind::Client as i32);
        assert_eq!(upstream.attr("http.response.status_code").as_deref(), Some("200"));
        // The upstream got the upstream span's context, one field each, the client's state kept.
        let headers = &seen[id].headers;
        assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(headers["traceparent"], traceparent(trace, &upstream.span_id()).as_str());
        assert_eq!(headers["tracestate"], "vendor=abc");
    }
    let fetch = spans.iter().find(|g| g.name() == "jwks_fetch").unwrap();
    assert_eq!(fetch.attr("tokengate.issuer").as_deref(), Some(env.idp.issuer()));
    assert_eq!(fetch.attr("tokengate.outcome").as_deref(), Some("success"));
    assert_eq!(fetch.span.kind, SpanKind::Client as i32);
    drop(gw);
}

/// Without a client `traceparent` the request starts a trace of its own, and the upstream gets
/// it (no `tracestate` to pass on).
#[tokio::test]
async fn requests_without_trace_context_start_a_trace() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "").await;
    let response = client(false).get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let spans = collector
        .wait_for("the request", |s| s.iter().any(|g| g.attr("tokengate.request_id").as_ref() == Some(&id)))
        .await;
    let request = spans.iter().find(|g| g.attr("tokengate.request_id").as_ref() == Some(&id)).unwrap();
    assert_eq!(request.parent_id(), "", "a root span");
    assert_eq!(request.attr("tokengate.route").as_deref(), Some("public"));
    let trace: Vec<Got> = spans.iter().filter(|g| g.trace_id() == request.trace_id()).cloned().collect();
    assert!(!trace.iter().any(|g| g.name() == "authenticate"), "a public route authenticates nothing");
    let upstream = child(&trace, "upstream", &request.span_id());
    let seen = env.up.last();
    assert_eq!(seen.headers["traceparent"], traceparent(&request.trace_id(), &upstream.span_id()).as_str());
    assert!(!seen.headers.contains_key("tracestate"));
}

/// A refused request has its `request` span, with the decision and reason, and no `upstream`
/// span. No export carries a token, wherever the client put it.
#[tokio::test]
async fn refusals_are_traced_and_no_export_carries_a_token() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "").await;
    let canary = "canary-0f3c1e9a7b5d4c2e8f6a";
    let refused = "11111111111111111111111111111111";
    let response = client(false)
        .get(gw.url("/orders/1"))
        .bearer_auth(canary)
        .header("traceparent", traceparent(refused, CLIENT_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let spans = collector.trace(refused).await;
    let request = only(&spans, "request");
    for (key, value) in [
        ("tokengate.decision", "denied"),
        ("tokengate.reason", "invalid_token"),
        ("http.response.status_code", "401"),
        ("tokengate.route", "orders"),
    ] {
        assert_eq!(request.attr(key).as_deref(), Some(value), "{key}: {request:?}");
    }
    let authenticate = child(&spans, "authenticate", &request.span_id());
    assert_eq!(authenticate.attr("tokengate.reason").as_deref(), Some("invalid_token"));
    assert!(!spans.iter().any(|g| g.name() == "upstream"), "nothing went upstream: {:#?}", summary(&spans));
    assert_eq!(env.up.count(), 0);

    // A valid token and the canary in every place a token can travel, each request a trace.
    let valid = env.token();
    let c = client(false);
    let mut traces = Vec::new();
    for (n, token) in [valid.as_str(), canary].into_iter().enumerate() {
        let requests = [
            c.get(gw.url("/orders/a")).bearer_auth(token),
            c.get(gw.url(&format!("/orders/b?page=1&access_token={token}"))),
            c.post(gw.url("/orders/c"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("access_token={token}&x=1")),
            c.get(gw.url("/public/d")).header("authorization", format!("Bearer {token}")),
        ];
        for (m, request) in requests.into_iter().enumerate() {
            let trace = format!("{:032x}", 0x2000 + n * 16 + m);
            request.header("traceparent", traceparent(&trace, CLIENT_SPAN)).send().await.unwrap();
            traces.push(trace);
        }
    }
    for trace in &traces {
        collector.trace(trace).await;
    }
    let signature = valid.rsplit('.').next().unwrap();
    for export in collector.exports.lock().unwrap().iter() {
        for secret in [canary, signature, "access_token"] {
            assert!(!export.raw.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} exported");
        }
        for got in &export.spans {
            let mut texts: Vec<String> = got.span.attributes.iter().map(|kv| format!("{kv:?}")).collect();
            texts.extend(got.span.events.iter().map(|e| format!("{e:?}")));
            texts.push(got.span.name.clone());
            for text in texts {
                assert!(!text.contains(canary) && !text.contains(signature), "a token in a span: {text}");
                assert!(!text.contains("/orders/"), "a path in a span: {text}");
            }
        }
    }
}

/// A token signed with a key the gateway has not fetched yet: the refetch it causes is a
/// `jwks_fetch` span under that request's `authenticate` span.
#[tokio::test]
async fn unknown_key_refetch_is_part_of_the_request_trace() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "").await;
    let c = client(false);
    // The startup fetch first, so that the refetch below is the request's.
    let warm = c.get(gw.url("/orders/1")).bearer_auth(env.token()).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let rotated = Arc::new(SigningKey::ec("k2", jsonwebtoken::Algorithm::ES256));
    env.idp.set_keys(vec![rotated, env.idp.keys()[0].clone()]);
    let trace = "22222222222222222222222222222222";
    let response = c
        .get(gw.url("/orders/1"))
        .bearer_auth(env.token())
        .header("traceparent", traceparent(trace, CLIENT_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = collector.trace(trace).await;
    let request = only(&spans, "request");
    let authenticate = child(&spans, "authenticate", &request.span_id());
    assert_eq!(authenticate.attr("tokengate.cache").as_deref(), Some("miss"));
    let fetch = child(&spans, "jwks_fetch", &authenticate.span_id());
    assert_eq!(fetch.attr("tokengate.outcome").as_deref(), Some("success"));
    assert_eq!(fetch.attr("tokengate.issuer").as_deref(), Some(env.idp.issuer()));
}

/// An opaque token is introspected under `authenticate`: a call (miss, `active`) the first
/// time, the cached answer (hit) the second.
#[tokio::test]
async fn introspection_is_traced_with_its_cache() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "").await;
    let token = env.idp.client_credentials("opaque-app", "opaque-secret", &[("scope", "read")]).await;
    let c = client(false);
    for (n, cache) in ["miss", "hit"].into_iter().enumerate() {
        let trace = format!("{:032x}", 0x3000 + n);
        let response = c
            .get(gw.url("/orders/1"))
            .bearer_auth(&token)
            .header("traceparent", traceparent(&trace, CLIENT_SPAN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let spans = collector.trace(&trace).await;
        let request = only(&spans, "request");
        let authenticate = child(&spans, "authenticate", &request.span_id());
        assert_eq!(authenticate.attr("tokengate.cache").as_deref(), Some(cache), "{authenticate:?}");
        let introspection = child(&spans, "introspection", &authenticate.span_id());
        assert_eq!(introspection.span.kind, SpanKind::Client as i32);
        assert_eq!(introspection.attr("tokengate.cache").as_deref(), Some(cache));
        assert_eq!(introspection.attr("tokengate.outcome").as_deref(), Some("active"));
        assert_eq!(introspection.attr("tokengate.issuer").as_deref(), Some(env.idp.issuer()));
    }
    assert_eq!(env.idp.introspection_requests(), 1);
}

/// A decision-service question is a `request` span too, describing the original request.
#[tokio::test]
async fn decision_questions_are_traced() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let gw = env.gateway(&collector, "decision: { listen: 127.0.0.1:0 }\n").await;
    let decision = gw.decision_addr.expect("the decision listener is logged");
    let trace = "33333333333333333333333333333333";
    let response = client(false)
        .get(format!("http://{decision}/verify"))
        .header("x-original-uri", "/orders/9")
        .header("x-original-method", "DELETE")
        .header("traceparent", traceparent(trace, CLIENT_SPAN))
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = collector.trace(trace).await;
    let request = only(&spans, "request");
    assert_eq!(request.parent_id(), CLIENT_SPAN);
    for (key, value) in [
        ("tokengate.door", "auth_request"),
        ("http.request.method", "DELETE"),
        ("tokengate.route", "orders"),
        ("tokengate.decision", "allowed"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(request.attr(key).as_deref(), Some(value), "{key}: {request:?}");
    }
    child(&spans, "authenticate", &request.span_id());
    assert!(!spans.iter().any(|g| g.name() == "upstream"));
}

/// Spans still queued when the gateway stops are exported before it exits: with a batch delay
/// longer than the test, only the flush at exit can deliver them.
#[tokio::test]
async fn queued_spans_are_flushed_at_exit() {
    let env = Env::new().await;
    let collector = Collector::start().await;
    let mut vars = collector.env();
    vars.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
    vars.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = GatewayProcess::start(&vars, Some(&env.config(""))).await;
    let trace = "44444444444444444444444444444444";
    let response = client(false)
        .get(gw.url("/public/1"))
        .header("traceparent", traceparent(trace, CLIENT_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gw.signal("INT");
    assert_eq!(gw.exit_code().await, Some(0));
    let spans = collector.trace(trace).await;
    child(&spans, "upstream", &only(&spans, "request").span_id());
}

/// With tracing off (no OTLP endpoint), the client's `traceparent` and `tracestate` reach the
/// upstream exactly as sent, like any other header.
#[tokio::test]
async fn trace_context_passes_through_when_tracing_is_off() {
    let env = Env::new().await;
    let gw = GatewayProcess::start(&[], Some(&env.config(""))).await;
    let sent = traceparent("4bf92f3577b34da6a3ce929d0e0e4736", CLIENT_SPAN);
    let response = client(false)
        .get(gw.url("/orders/1"))
        .bearer_auth(env.token())
        .header("traceparent", &sent)
        .header("tracestate", "vendor=abc")
        .header("tracestate", "other=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = env.up.last();
    assert_eq!(seen.headers.get_all("traceparent").iter().collect::<Vec<_>>(), [sent.as_str()]);
    assert_eq!(seen.headers.get_all("tracestate").iter().collect::<Vec<_>>(), ["vendor=abc", "other=1"]);
    assert!(!gw.lines().iter().any(|l| l.contains("traces:")), "no exporter was set up");
}

//! The access log as a log pipeline reads it: the real binary, a real issuer and upstream, one
//! line per request on stderr, checked field by field in both formats, and a canary token that
//! must never appear in any line, whatever the outcome and wherever the token was sent.

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::process::{logfmt, GatewayProcess};
use support::*;
use tokengate::dev_issuer::{DevIssuer, SigningKey};

struct Env {
    idp: DevIssuer,
    up: Upstream,
}

impl Env {
    async fn new() -> Env {
        let key = Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
        let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
        Env { idp, up: Upstream::start().await }
    }

    /// A config with a required route (`/orders`), a public one (`/public`), tokens allowed in
    /// the query and form bodies (so the canary can travel there), and `extra` YAML appended.
    fn config(&self, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{ url: {} }}\n\
             tokens: {{ query: true, form_body: true }}\n\
             issuers:\n  - id: dev\n    issuer: {}\n    audiences: [api]\n\
             routes:\n  - {{ id: public, path_prefix: /public, auth: none }}\n  - {{ id: orders, path_prefix: /orders, auth: required }}\n{extra}",
            self.up.url(),
            self.idp.issuer(),
        )
    }

    fn token(&self) -> String {
        self.idp.mint(json!({"sub": "alice", "client_id": "billing", "aud": "api", "scope": "read"}))
    }
}

fn id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// An allowed request's line carries every interface key with the request's values; the id
/// is the one the client got back and the upstream saw.
#[tokio::test]
async fn allowed_request_line_field_by_field() {
    let env = Env::new().await;
    let mut gw = GatewayProcess::start(&[], Some(&env.config(""))).await;
    let response = client(false)
        .post(gw.url("/orders/7?page=2"))
        .bearer_auth(env.token())
        .header("host", "api.example.com")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = id_of(&response);
    let body = response.text().await.unwrap();
    assert_eq!(body, "ok 12", "the upstream read the whole body");
    assert_eq!(env.up.last().headers["x-request-id"], id.as_str(), "the upstream sees the same id");
    let line = gw.access_line(&id).await;
    for (key, value) in [
        ("target", json!("access")),
        ("level", json!("info")),
        ("request_id", json!(id)),
        ("door", json!("proxy")),
        ("client", json!("127.0.0.1")),
        ("method", json!("POST")),
        ("host", json!("api.example.com")),
        ("path", json!("/orders/7")),
        ("route", json!("orders")),
        ("decision", json!("allowed")),
        ("reason", Value::Null),
        ("status", json!(200)),
        ("subject", json!("alice")),
        ("client_id", json!("billing")),
        ("issuer", json!(env.idp.issuer())),
        ("upstream", json!(env.up.url())),
        ("upstream_status", json!(200)),
        ("bytes_in", json!(12)),
        ("bytes_out", json!(body.len())),
    ] {
        assert_eq!(line.get(key), Some(&value), "{key}: {line:?}");
    }
    assert!(!line.contains_key("query"), "the query is not logged by default: {line:?}");
    let duration = line["duration_ms"].as_f64().unwrap();
    let upstream = line["upstream_duration_ms"].as_f64().unwrap();
    assert!(upstream > 0.0 && duration >= upstream, "{line:?}");
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line:?}");
}

/// Refusals are logged too, with their reason; nothing was sent upstream.
#[tokio::test]
async fn refusals_are_logged_with_their_reason() {
    let env = Env::new().await;
    let mut gw = GatewayProcess::start(&[], Some(&env.config(""))).await;
    let c = client(false);
    let cases = [
        (c.get(gw.url("/orders/1")), 401, "denied", "missing_token", Some("orders")),
        (c.get(gw.url("/orders/1")).bearer_auth("not.a.jwt"), 401, "denied", "invalid_token", Some("orders")),
        (c.get(gw.url("/elsewhere")), 404, "denied", "no_route", None),
    ];
    for (request, status, decision, reason, route) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        let line = gw.access_line(&id_of(&response)).await;
        assert_eq!(line["status"], status, "{line:?}");
        assert_eq!(line["decision"], decision, "{line:?}");
        assert_eq!(line["reason"], reason, "{line:?}");
        assert_eq!(line["route"], json!(route), "{line:?}");
        for key in ["subject", "client_id", "issuer", "upstream", "upstream_status", "upstream_duration_ms"] {
            assert_eq!(line.get(key), Some(&Value::Null), "{key}: {line:?}");
        }
    }
    assert_eq!(env.up.count(), 0);
    // A public route: allowed, no principal.
    let response = c.get(gw.url("/public/x")).send().await.unwrap();
    let line = gw.access_line(&id_of(&response)).await;
    assert_eq!((line["decision"].as_str(), line["route"].as_str()), (Some("allowed"), Some("public")));
    assert_eq!(line["subject"], Value::Null);
}

/// A valid token and an invalid one, sent in the header, the query and a form body, with
/// everything logged at debug level: neither appears in any line. With `access_log.query` the
/// query is logged, without the token.
#[tokio::test]
async fn canary_token_never_logged() {
    let env = Env::new().await;
    let config = env.config("access_log: { query: true }\n");
    let mut gw = GatewayProcess::start(&[("RUST_LOG", "debug")], Some(&config)).await;
    let valid = env.token();
    let canary = "canary-0f3c1e9a7b5d4c2e8f6a";
    let c = client(false);
    let mut ids = Vec::new();
    for token in [valid.as_str(), canary] {
        let requests = [
            c.get(gw.url("/orders/a")).bearer_auth(token),
            c.get(gw.url(&format!("/orders/b?page=1&access_token={token}"))),
            c.post(gw.url("/orders/c"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("access_token={token}&x=1")),
            c.get(gw.url("/public/d")).header("authorization", format!("Bearer {token}")),
        ];
        for request in requests {
            let response = request.send().await.unwrap();
            ids.push(id_of(&response));
        }
    }
    for id in &ids {
        gw.access_line(id).await;
    }
    let query_line = gw.access_line(&ids[1]).await;
    assert_eq!(query_line["query"], "page=1", "{query_line:?}");
    assert_eq!(query_line["decision"], "allowed");
    let lines = gw.lines();
    assert!(lines.iter().filter(|l| l.contains("\"target\":\"access\"")).count() >= ids.len());
    // The signature alone is enough to be a leak.
    let signature = valid.rsplit('.').next().unwrap();
    for line in &lines {
        assert!(!line.contains(canary) && !line.contains(signature), "a token was logged: {line}");
    }
}

/// With `access_log.subjects: false`, `subject` and `client_id` are present, as null.
#[tokio::test]
async fn subjects_can_be_turned_off() {
    let env = Env::new().await;
    let mut gw = GatewayProcess::start(&[], Some(&env.config("access_log: { subjects: false }\n"))).await;
    let response = client(false).get(gw.url("/orders/1")).bearer_auth(env.token()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let line = gw.access_line(&id_of(&response)).await;
    assert_eq!(line.get("subject"), Some(&Value::Null), "{line:?}");
    assert_eq!(line.get("client_id"), Some(&Value::Null), "{line:?}");
    assert_eq!(line["issuer"], env.idp.issuer());
    assert!(!gw.lines().iter().any(|l| l.contains("alice") || l.contains("billing")));
}

/// `TOKENGATE_LOG_FORMAT=text`: every line is logfmt, no colour codes; the access line has the
/// same keys.
#[tokio::test]
async fn text_format_is_logfmt() {
    let env = Env::new().await;
    let mut gw = GatewayProcess::start(&[("TOKENGATE_LOG_FORMAT", "text")], Some(&env.config(""))).await;
    let response = client(false).get(gw.url("/orders/1")).bearer_auth(env.token()).send().await.unwrap();
    let id = id_of(&response);
    let line = gw.wait_for(|l| l.contains("target=access") && l.contains(&id)).await;
    let fields = logfmt(&line);
    assert_eq!(fields["request_id"], id.as_str());
    assert_eq!(fields["decision"], "allowed");
    assert_eq!(fields["status"], "200");
    assert_eq!(fields["subject"], "alice");
    assert!(fields["duration_ms"].as_str().unwrap().parse::<f64>().is_ok(), "{line}");
    for line in gw.lines() {
        assert!(!line.contains('\u{1b}'), "colour codes: {line}");
        assert!(line.starts_with("time="), "{line}");
        logfmt(&line);
    }
}

/// `X-Request-Id` is kept from a trusted proxy and replaced when anyone else sends it.
#[tokio::test]
async fn request_id_kept_only_from_trusted_proxies() {
    let env = Env::new().await;
    let c = client(false);
    let mut untrusted = GatewayProcess::start(&[], Some(&env.config(""))).await;
    let response = c.get(untrusted.url("/public/1")).header("x-request-id", "client-chosen").send().await.unwrap();
    let id = id_of(&response);
    assert_ne!(id, "client-chosen");
    assert_eq!(env.up.last().headers["x-request-id"], id.as_str());
    assert_eq!(env.up.last().headers.get_all("x-request-id").iter().count(), 1);
    untrusted.access_line(&id).await;
    drop(untrusted);

    let mut trusted = GatewayProcess::start(&[], Some(&env.config("trusted_proxies: [127.0.0.1]\n"))).await;
    let response = c.get(trusted.url("/public/1")).header("x-request-id", "edge-42").send().await.unwrap();
    assert_eq!(id_of(&response), "edge-42");
    assert_eq!(env.up.last().headers["x-request-id"], "edge-42");
    let line = trusted.access_line("edge-42").await;
    assert_eq!(line["request_id"], "edge-42");
}

/// The decision service logs each question as the original request it describes.
#[tokio::test]
async fn decision_questions_are_logged() {
    let env = Env::new().await;
    let config = env.config("decision: { listen: 127.0.0.1:0 }\n");
    let mut gw = GatewayProcess::start(&[], Some(&config)).await;
    let decision = gw.decision_addr.expect("the decision listener is logged");
    let response = client(false)
        .get(format!("http://{decision}/verify"))
        .header("x-original-uri", "/orders/9?x=1")
        .header("x-original-method", "DELETE")
        .header("x-forwarded-host", "shop.example")
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let line = gw.access_line(&id_of(&response)).await;
    for (key, value) in [
        ("door", json!("auth_request")),
        ("method", json!("DELETE")),
        ("host", json!("shop.example")),
        ("path", json!("/orders/9")),
        ("route", json!("orders")),
        ("decision", json!("allowed")),
        ("status", json!(200)),
        ("subject", json!("alice")),
        ("upstream", Value::Null),
    ] {
        assert_eq!(line.get(key), Some(&value), "{key}: {line:?}");
    }
    let response = client(false)
        .get(format!("http://{decision}/verify"))
        .header("x-original-uri", "/orders/9")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let line = gw.access_line(&id_of(&response)).await;
    assert_eq!((line["decision"].as_str(), line["reason"].as_str()), (Some("denied"), Some("missing_token")));
    assert_eq!(env.up.count(), 0, "the decision service forwards nothing");
}

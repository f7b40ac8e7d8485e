//! The decision service (issue 12) over real sockets: each front door describes the original
//! request its own way, and the answer is the proxy's decision for it.

mod support;

use reqwest::RequestBuilder;
use serde_json::Value;
use support::*;

/// The decision service trusting `trusted`, with a host-bound `shop` route beside `public` and
/// `api`.
async fn start(trusted: &str) -> DecisionEnv {
    let mut shop = required_route("shop", "/", &["shop"]);
    shop.host = Some("shop.example.com".into());
    let routes = vec![shop, public_route("public", "/public"), required_route("api", "/api", &["read"])];
    DecisionEnv::start(routes, trusted).await
}

/// This file's ways of asking.
impl DecisionEnv {
    fn ask(&self, path: &str) -> RequestBuilder {
        client(false).get(format!("http://{}{path}", self.gw.decision_addr.expect("a decision listener")))
    }

    /// nginx `auth_request` as our snippet configures it.
    fn nginx(&self, method: &str, uri: &str) -> RequestBuilder {
        self.ask("/verify")
            .header("x-original-uri", uri)
            .header("x-original-method", method)
            .header("x-forwarded-host", "api.example.com")
    }
}

async fn challenge_and_body(request: RequestBuilder, status: u16) -> (String, Value) {
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), status);
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (challenge, resp.json().await.unwrap())
}

/// nginx: a valid token → 200 with the identity headers; no token → 401 with the challenge
/// nginx passes back; a missing scope → 403 insufficient_scope. Nothing reaches the upstream:
/// the ingress forwards, not tokengate.
#[tokio::test]
async fn nginx_auth_request() {
    let env = start("127.0.0.0/8").await;
    let resp = env.nginx("POST", "/api/orders?id=7").bearer_auth(env.token("read")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-subject"], "alice");
    assert_eq!(resp.headers()["x-auth-scopes"], "read");

    let (challenge, body) = challenge_and_body(env.nginx("GET", "/api/orders"), 401).await;
    assert_eq!(challenge, "Bearer realm=\"test\"");
    assert_eq!(body["error_description"], "a bearer token is required");

    let (challenge, body) = challenge_and_body(env.nginx("GET", "/api").bearer_auth(env.token("write")), 403).await;
    assert!(challenge.starts_with("Bearer realm=\"test\", error=\"insufficient_scope\""), "{challenge}");
    assert_eq!(body["error"], "insufficient_scope");

    let (_, body) = challenge_and_body(env.nginx("GET", "/api").bearer_auth("not-a-jwt"), 401).await;
    assert_eq!(body["error"], "invalid_token");

    // A public route needs no token; a path no route matches is 404.
    assert_eq!(env.nginx("GET", "/public/x").send().await.unwrap().status(), 200);
    assert_eq!(env.up.count(), 0);
    assert_eq!(env.decisions("auth_request", "allowed"), 2);
    assert_eq!(env.decisions("auth_request", "missing_token"), 1);
}

/// The original method decides method-bound routes and is required; the subrequest's own
/// method and Host are never read as the original's.
#[tokio::test]
async fn original_request_is_what_is_decided() {
    let env = start("127.0.0.0/8").await;
    let token = env.token("shop");
    // ingress-nginx: the host comes from X-Original-URL; Host is the auth service's own name.
    let shop = |url: &str| {
        env.ask("/verify").header("x-original-url", url).header("x-original-method", "GET").bearer_auth(&token)
    };
    let resp = shop("https://Shop.Example.com/cart").header("host", "tokengate.auth.svc").send().await.unwrap();
    assert_eq!(resp.status(), 200, "the shop route, by the original host");
    let (_, body) = challenge_and_body(shop("https://other.example.com/cart"), 404).await;
    assert_eq!(body["error"], "not_found", "another host: not the shop route, and no other matches");
    let forged_host = env.ask("/verify").header("x-original-uri", "/cart").header("x-original-method", "GET");
    let resp = forged_host.header("host", "shop.example.com").bearer_auth(&token).send().await.unwrap();
    assert_ne!(resp.status(), 200, "Host is not the original host");

    let no_method = env.ask("/verify").header("x-original-uri", "/public");
    let (_, body) = challenge_and_body(no_method, 400).await;
    assert_eq!(body["error_description"], "the original method is not described (X-Original-Method)");
}

/// A question describing the original request twice (a client's header passed on beside the
/// ingress's own) is refused, never answered for the client's choice.
#[tokio::test]
async fn smuggled_descriptions_are_refused() {
    let env = start("127.0.0.0/8").await;
    let traefik_with_client_uri = env
        .ask("/verify")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-host", "api.example.com")
        .header("x-forwarded-uri", "/api/orders")
        .header("x-original-uri", "/public/x");
    let (_, body) = challenge_and_body(traefik_with_client_uri, 400).await;
    assert_eq!(body["error_description"], "the original request is described more than once");
    let nginx_with_client_method = env.nginx("GET", "/api").header("x-forwarded-method", "GET");
    let (_, body) = challenge_and_body(nginx_with_client_method, 400).await;
    assert_eq!(body["error_description"], "the original method is described in another ingress's header");
}

/// A path the ingress would forward in another spelling than the one decided on is refused.
#[tokio::test]
async fn non_canonical_paths_are_refused() {
    let env = start("127.0.0.0/8").await;
    for path in ["/public//x", "/%70ublic", "/public/./x", "/public/../api", "public"] {
        let resp = env.nginx("GET", path).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
    }
}

/// Traefik ForwardAuth: X-Forwarded-Method, -Host, -Uri.
#[tokio::test]
async fn traefik_forward_auth() {
    let env = start("127.0.0.0/8").await;
    let ask = |token: &str| {
        env.ask("/verify")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-uri", "/api/x")
            .bearer_auth(token)
    };
    let resp = ask(&env.token("read")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-subject"], "alice");
    assert_eq!(ask(&env.token("write")).send().await.unwrap().status(), 403);
    assert_eq!(env.decisions("forward_auth", "allowed"), 1);
    assert_eq!(env.decisions("forward_auth", "insufficient_scope"), 1);
}

/// Envoy's HTTP ext_authz: the original path after /ext-authz; Envoy is told to remove the
/// identity headers this answer does not set, so a client-sent copy cannot survive.
#[tokio::test]
async fn envoy_ext_authz_http() {
    let env = start("127.0.0.0/8").await;
    let resp = env.ask("/ext-authz/api/x?y=1").bearer_auth(env.token("read")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-subject"], "alice");
    let remove = resp.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap().to_owned();
    assert!(remove.contains("x-auth-client-id"), "{remove}");
    assert!(!remove.contains("x-auth-subject"), "{remove}");

    let resp = env.ask("/ext-authz/public").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap().contains("x-auth-subject"));
    let (challenge, _) = challenge_and_body(env.ask("/ext-authz/api"), 401).await;
    assert_eq!(challenge, "Bearer realm=\"test\"");
    assert_eq!(env.decisions("ext_authz_http", "allowed"), 2);
}

/// Only trusted peers may describe a request: anyone else could describe a public path and
/// learn nothing, or a protected one and have a token judged for a request that never was.
#[tokio::test]
async fn untrusted_peers_are_refused() {
    let env = start("10.0.0.0/8").await;
    let (challenge, body) = challenge_and_body(env.nginx("GET", "/public"), 403).await;
    assert_eq!(body["error"], "untrusted_peer");
    assert_eq!(challenge, "");
    let resp = env.ask("/ext-authz/api").bearer_auth(env.token("read")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("x-auth-subject").is_none());
    assert_eq!(env.decisions("auth_request", "untrusted_peer"), 1);
    assert_eq!(env.decisions("ext_authz_http", "untrusted_peer"), 1);
    // Not a front door at all: 404.
    assert_eq!(env.ask("/").send().await.unwrap().status(), 404);
}

/// Without an upstream only the decision service runs: no proxy listener is opened.
#[tokio::test]
async fn decision_service_alone() {
    let routes = vec![required_route("api", "/api", &["read"])];
    let env = DecisionEnv::with(routes, "127.0.0.0/8", |cfg| cfg.upstream = None).await;
    let token = env.token("read");
    let gw = env.gw;
    assert_eq!(Some(gw.addr), gw.decision_addr);
    let ask = |token: &str| {
        client(false)
            .get(format!("http://{}/verify", gw.addr))
            .header("x-original-uri", "/api/x")
            .header("x-original-method", "GET")
            .bearer_auth(token)
    };
    let resp = ask(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-subject"], "alice");
    assert_eq!(ask("forged").send().await.unwrap().status(), 401);
    gw.shutdown().await;
}

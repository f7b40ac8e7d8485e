//! The decision service's gRPC front door: Envoy's `ext_authz` `Check` (the form Istio's CUSTOM
//! AuthorizationPolicy uses), called with a real tonic client over HTTP/2 on the decision port.

mod support;

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use serde_json::Value;
use support::*;

/// The decision service alone (no upstream), trusting `trusted`.
async fn start(trusted: &str) -> DecisionEnv {
    let routes = vec![public_route("public", "/public"), required_route("api", "/api", &["read"])];
    DecisionEnv::with(routes, trusted, |cfg| cfg.upstream = None).await
}

impl DecisionEnv {
    /// One `Check` for `GET <path>` on api.example.com with `headers`.
    async fn check(&self, path: &str, headers: &[(&str, &str)]) -> CheckResponse {
        self.check_on("api.example.com", path, headers).await
    }

    /// One `Check` for `GET <path>` on `host` (empty: the request named none).
    async fn check_on(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> CheckResponse {
        let mut client =
            AuthorizationClient::connect(format!("http://{}", self.gw.decision_addr.unwrap())).await.unwrap();
        let http = HttpRequest {
            method: "GET".into(),
            path: path.into(),
            host: host.into(),
            scheme: "https".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
            ..Default::default()
        };
        let attributes = AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        };
        let request = CheckRequest { attributes: Some(attributes) };
        client.check(request).await.expect("a CheckResponse, allowed or denied").into_inner()
    }
}

/// Status code, HTTP status (denied only), headers and body of a response.
fn parts(response: &CheckResponse) -> (i32, Option<i32>, HashMap<String, String>, Vec<String>, String) {
    let code = response.status.as_ref().map_or(0, |s| s.code);
    let header_pairs = |hs: &[envoy_types::ext_authz::v3::pb::HeaderValueOption]| {
        hs.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect()
    };
    match response.http_response.as_ref().expect("an HTTP response") {
        HttpResponse::OkResponse(ok) => {
            (code, None, header_pairs(&ok.headers), ok.headers_to_remove.clone(), String::new())
        }
        HttpResponse::DeniedResponse(denied) => {
            let status = denied.status.as_ref().map(|s| s.code);
            (code, status, header_pairs(&denied.headers), Vec::new(), denied.body.clone())
        }
        HttpResponse::ErrorResponse(_) => panic!("tokengate answers every Check: never an error response"),
    }
}

/// Allowed: OK with identity headers that overwrite a client-sent copy, and the identity headers
/// this principal lacks listed for removal.
#[tokio::test]
async fn allowed_with_identity_headers() {
    let env = start("127.0.0.0/8").await;
    let bearer = format!("Bearer {}", env.token("read"));
    let response = env.check("/api/x?y=1", &[("authorization", &bearer), ("x-auth-subject", "mallory")]).await;
    let (code, status, headers, remove, _) = parts(&response);
    assert_eq!((code, status), (0, None));
    assert_eq!(headers["x-auth-subject"], "alice");
    assert_eq!(headers["x-auth-scopes"], "read");
    let HttpResponse::OkResponse(ok) = response.http_response.unwrap() else { unreachable!() };
    let overwrite = envoy_types::ext_authz::v3::pb::HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert!(ok.headers.iter().all(|h| h.append_action == overwrite));
    assert!(remove.contains(&"x-auth-client-id".to_owned()), "{remove:?}");
    assert!(!remove.contains(&"x-auth-subject".to_owned()), "{remove:?}");

    // A public route: OK, and every identity header is removed from the forwarded request.
    let (code, _, headers, remove, _) = parts(&env.check("/public/x", &[("x-auth-subject", "mallory")]).await);
    assert_eq!(code, 0);
    assert!(!headers.contains_key("x-auth-subject"));
    assert!(remove.contains(&"x-auth-subject".to_owned()), "{remove:?}");
    assert_eq!(env.gw.metrics.decisions.with_label_values(&["ext_authz_grpc", "allowed"]).get(), 2);
}

/// Refused: UNAUTHENTICATED / PERMISSION_DENIED with the HTTP status, WWW-Authenticate and JSON
/// body the proxy would send.
#[tokio::test]
async fn denials_carry_status_challenge_and_body() {
    let env = start("127.0.0.0/8").await;
    let (code, status, headers, _, body) = parts(&env.check("/api/x", &[]).await);
    assert_eq!((code, status), (16, Some(401)));
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"test\"");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error_description"], "a bearer token is required");

    let bearer = format!("Bearer {}", env.token("write"));
    let (code, status, headers, _, _) = parts(&env.check("/api/x", &[("authorization", &bearer)]).await);
    assert_eq!((code, status), (7, Some(403)));
    assert!(headers["www-authenticate"].contains("error=\"insufficient_scope\""), "{headers:?}");

    // Two Authorization headers reach us joined by Envoy: refused like two headers.
    let joined = format!("Bearer {},Bearer other", env.token("read"));
    let (code, status, _, _, body) = parts(&env.check("/api/x", &[("authorization", &joined)]).await);
    assert_ne!(code, 0, "{body}");
    assert!(matches!(status, Some(400) | Some(401)), "{status:?}: {body}");

    // A path the upstream would read in another spelling is refused.
    let bearer = format!("Bearer {}", env.token("read"));
    let (code, status, _, _, body) = parts(&env.check("/public/../api/x", &[("authorization", &bearer)]).await);
    assert_eq!((code, status), (3, Some(400)), "{body}");
    let (code, status, _, _, _) = parts(&env.check("/nowhere", &[]).await);
    assert_eq!((code, status), (5, Some(404)));
}

/// Only trusted peers may ask.
#[tokio::test]
async fn untrusted_peer_is_refused() {
    let env = start("10.0.0.0/8").await;
    let bearer = format!("Bearer {}", env.token("read"));
    let (code, status, headers, _, body) = parts(&env.check("/api/x", &[("authorization", &bearer)]).await);
    assert_eq!((code, status), (7, Some(403)));
    assert!(!headers.contains_key("x-auth-subject"));
    assert!(body.contains("untrusted_peer"), "{body}");
}

/// A `CheckRequest` as large as the head the proxy accepts (`server.max_header_bytes`, 64 KiB
/// here) is decided; one far beyond it is refused by the decoder, unread.
#[tokio::test]
async fn check_requests_are_bounded() {
    let env = start("127.0.0.0/8").await;
    let cookie = "c".repeat(100 * 1024);
    let (code, status, _, _, _) = parts(&env.check("/public/x", &[("cookie", &cookie)]).await);
    assert_eq!((code, status), (0, None), "a 100 KiB CheckRequest is within twice the head limit");
    let mut client = AuthorizationClient::connect(format!("http://{}", env.gw.decision_addr.unwrap())).await.unwrap();
    let huge = HttpRequest {
        method: "GET".into(),
        path: "/public/x".into(),
        headers: [("cookie".to_owned(), "c".repeat(200 * 1024))].into(),
        ..Default::default()
    };
    let attributes =
        AttributeContext { request: Some(Request { http: Some(huge), ..Default::default() }), ..Default::default() };
    let refused = client.check(CheckRequest { attributes: Some(attributes) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
}

/// The original host decides host-bound routes, and a request that names none matches only
/// routes that name none. With `identity.forward_authorization: false`, Envoy is told to remove
/// `Authorization` too.
#[tokio::test]
async fn original_host_and_authorization_removal() {
    let mut shop = required_route("shop", "/", &["shop"]);
    shop.host = Some("shop.example.com".into());
    let env = DecisionEnv::with(vec![public_route("public", "/public"), shop], "127.0.0.0/8", |cfg| {
        cfg.upstream = None;
        cfg.identity.forward_authorization = false;
    })
    .await;
    let bearer = format!("Bearer {}", env.token("shop"));
    let (code, _, headers, remove, _) =
        parts(&env.check_on("Shop.Example.com", "/cart", &[("authorization", &bearer)]).await);
    assert_eq!(code, 0);
    assert_eq!(headers["x-auth-subject"], "alice");
    assert!(remove.contains(&"authorization".to_owned()), "{remove:?}");
    let (code, status, _, _, _) = parts(&env.check_on("", "/cart", &[("authorization", &bearer)]).await);
    assert_eq!((code, status), (5, Some(404)), "no host: not the shop route, and no other matches");
    let (code, _, _, remove, _) = parts(&env.check_on("", "/public/x", &[]).await);
    assert_eq!(code, 0);
    assert!(
        remove.contains(&"authorization".to_owned()) && remove.contains(&"x-auth-subject".to_owned()),
        "{remove:?}"
    );
}

/// Keys unavailable (the JWKS cannot be fetched): UNAVAILABLE with a 503 and Retry-After, never
/// OK, never a challenge that would make the client drop its token.
#[tokio::test]
async fn unavailable_keys_fail_closed() {
    let routes = vec![required_route("api", "/api", &["read"])];
    let env = DecisionEnv::with(routes, "127.0.0.0/8", |cfg| {
        cfg.upstream = None;
        cfg.issuers[0].keys = tokengate::config::KeySource::JwksUri("http://127.0.0.1:1/jwks".into());
    })
    .await;
    let bearer = format!("Bearer {}", env.token("read"));
    let (code, status, headers, _, _) = parts(&env.check("/api/x", &[("authorization", &bearer)]).await);
    assert_eq!((code, status), (14, Some(503)));
    assert!(headers.contains_key("retry-after") && !headers.contains_key("www-authenticate"), "{headers:?}");
}

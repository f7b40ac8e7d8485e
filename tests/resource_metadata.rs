//! RFC 9728 protected resource metadata: served on the proxy listener and advertised in every
//! `WWW-Authenticate` challenge, so clients can discover which authorization server to use.

mod support;

use serde_json::Value;
use support::*;
use tokengate::config::ProtectedResource;
use tokengate::dev_issuer::{DevIssuer, SigningKey};

/// The metadata document lists resource, authorization servers, scopes and bearer methods, and
/// the 401/403 challenges point to it with `resource_metadata`.
#[tokio::test]
async fn metadata_served_and_advertised() {
    let key = std::sync::Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
    let up = Upstream::start().await;
    let mut cfg = config(
        &up.url(),
        vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
        vec![required_route("api", "/api", &["read"])],
    );
    cfg.protected_resource = Some(ProtectedResource {
        resource: "https://api.example.com/v1".into(),
        metadata_path: "/.well-known/oauth-protected-resource/v1".into(),
        metadata_url: "https://api.example.com/.well-known/oauth-protected-resource/v1".into(),
        authorization_servers: vec![idp.issuer().to_owned()],
        scopes_supported: vec!["read".into()],
        resource_name: Some("Orders API".into()),
    });
    let gw = gateway(cfg).await;
    let c = client(false);

    let resp = c.get(format!("http://{}/.well-known/oauth-protected-resource/v1", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["resource"], "https://api.example.com/v1");
    assert_eq!(doc["authorization_servers"][0], idp.issuer());
    assert_eq!(doc["scopes_supported"], serde_json::json!(["read"]));
    assert_eq!(doc["bearer_methods_supported"], serde_json::json!(["header"]));
    assert_eq!(doc["resource_name"], "Orders API");
    assert_eq!(up.count(), 0, "the metadata is served by the gateway, not the upstream");
    let head = c.head(format!("http://{}/.well-known/oauth-protected-resource/v1", gw.addr)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    // Only GET and HEAD read it: any other method is an ordinary request (here: no route).
    let post = c.post(format!("http://{}/.well-known/oauth-protected-resource/v1", gw.addr)).send().await.unwrap();
    assert_eq!(post.status(), 404);
    assert!(!post.text().await.unwrap().contains("authorization_servers"));

    let resp = c.get(format!("http://{}/api", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"test\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/v1\""
    );
    let token = idp.mint(serde_json::json!({"sub": "a", "aud": "api", "scope": "write"}));
    let resp = c.get(format!("http://{}/api", gw.addr)).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("resource_metadata=\"https://"));
}

//! `/metrics` follows Prometheus conventions: `promtool check metrics` finds nothing to say.
//!
//! Needs `promtool` (Debian package `prometheus`; `.ci/run` installs it). Without it the test
//! fails, unless `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1` is set (see `support::require_tool`).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;
use tokengate::dev_issuer::{DevIssuer, SigningKey};

/// promtool accepts the exposition after allowed, denied and failed requests have populated
/// every metric family.
#[tokio::test]
async fn promtool_check_metrics_is_clean() {
    let Some(promtool) = require_tool("promtool", "the Debian package `prometheus`") else { return };
    let key = std::sync::Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
    let up = Upstream::start().await;
    let gw = gateway(config(
        &up.url(),
        vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
        vec![public_route("public", "/public"), required_route("api", "/", &["read"])],
    ))
    .await;
    wait_ready(&gw).await;
    let c = client(false);
    let token = idp.mint(serde_json::json!({"sub": "a", "aud": "api", "scope": "read"}));
    let allowed = c.get(format!("http://{}/x", gw.addr)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    c.get(format!("http://{}/x", gw.addr)).send().await.unwrap();
    c.get(format!("http://{}/public", gw.addr)).send().await.unwrap();
    let text = c.get(format!("http://{}/metrics", gw.admin_addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("tokengate_requests_total") && text.contains("tokengate_jwks_fetches_total"));
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}\n{text}");
}

//! The `tokengate` binary as an operator meets it: `check-config`, configuration errors with
//! exit status 64, env-only configuration, and SIGTERM → drain → exit 0.

mod support;

use std::process::Command;

use support::process;
use support::*;
use tokengate::dev_issuer::{DevIssuer, SigningKey};

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

fn tokengate() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().env("RUST_LOG", "info");
    c
}

/// check-config prints the effective configuration with secrets redacted and exits 0.
#[test]
fn check_config_prints_effective_config() {
    let out = tokengate()
        .args(["check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/tokengate.example.yaml")])
        .env("IDP_SECRET", "a-very-long-shared-secret-of-32-bytes!!")
        .env("INTROSPECTION_CLIENT_SECRET", "introspection-client-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("issuers:"), "{stdout}");
    assert!(stdout.contains("<redacted>"));
    assert!(!stdout.contains("a-very-long-shared-secret"), "the secret was printed");
    assert!(!stdout.contains("introspection-client-secret-value"), "the client secret was printed");
}

/// The deployable example configs stay valid.
#[test]
fn shipped_configs_are_valid() {
    for file in ["deploy/kustomize/base/tokengate.yaml", "config/demo.yaml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = tokengate()
            .args(["check-config", "--config", &path])
            .env("DEMO_LISTEN", "127.0.0.1:8080")
            .env("DEMO_UPSTREAM", "http://127.0.0.1:8081")
            .env("DEMO_ISSUER", "http://127.0.0.1:9400")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A bad config exits 64 and names the file, line and field.
#[test]
fn bad_config_exits_64_with_location() {
    let path = std::env::temp_dir().join(format!("tokengate-bad-{}.yaml", std::process::id()));
    std::fs::write(&path, "upstream:\n  url: http://127.0.0.1:1\nroutes:\n  - id: a\n    path_prefx: /\n").unwrap();
    let out = tokengate().args(["check-config", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":5:") && stderr.contains("path_prefx"), "{stderr}");
}

/// The environment alone configures a sidecar; missing pieces are named.
#[test]
fn env_only_config() {
    let out = tokengate()
        .arg("check-config")
        .env("TOKENGATE_UPSTREAM", "http://127.0.0.1:8081")
        .env("TOKENGATE_ISSUER", "https://idp.example.com/")
        .env("TOKENGATE_AUDIENCE", "api")
        .env("TOKENGATE_REQUIRED_SCOPES", "read write")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("https://idp.example.com/") && stdout.contains("write"), "{stdout}");
    let out = tokengate().arg("check-config").env("TOKENGATE_ISSUER", "https://idp.example.com/").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream"));
}

/// SIGTERM: `/readyz` turns 503 at once while the proxy still accepts for
/// `server.drain_delay`; then it stops accepting, the in-flight request completes, and the
/// process exits 0.
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let idp = DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![std::sync::Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256))],
    )
    .await
    .unwrap();
    let up = Upstream::start().await;
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nserver: {{ drain_delay: 2s }}\n\
         upstream: {{ url: {} }}\nissuers:\n  - {{ id: dev, issuer: {}, audiences: [api] }}\n",
        up.url(),
        idp.issuer()
    );
    let mut gw = process::GatewayProcess::start(&[], Some(&config)).await;
    let token = idp.mint(serde_json::json!({"sub": "a", "aud": "api"}));
    let c = client(false);
    let ready = format!("http://{}/readyz", gw.admin_addr);
    wait_ready_url(&ready).await;
    let in_flight = tokio::spawn(c.get(gw.url("/slow/3500")).bearer_auth(token.clone()).send());
    up.wait_for_requests(1).await;

    gw.signal("TERM");
    gw.wait_for(|l| l.contains("draining: /readyz is 503")).await;
    assert_eq!(c.get(&ready).send().await.unwrap().status(), 503, "readiness fails first");
    // Still accepting during the delay: a new connection's request is served.
    let fresh = client(false).get(gw.url("/during-delay")).bearer_auth(token.clone()).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "requests during the drain delay are served");
    gw.wait_for(|l| l.contains("no longer accepting")).await;
    assert!(
        client(false).get(gw.url("/after-delay")).bearer_auth(token).send().await.is_err(),
        "new connections are refused once the delay is over"
    );
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200, "the in-flight request finished");
    assert_eq!(gw.exit_code().await, Some(0));
    assert_eq!(up.count(), 2, "the slow request and the one during the delay");
}

/// SIGHUP no longer ends the process (it did, with exit status 129).
#[tokio::test]
async fn sighup_does_not_stop_the_gateway() {
    let up = Upstream::start().await;
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{ url: {} }}\n\
         issuers:\n  - {{ id: dev, issuer: http://127.0.0.1:9, audiences: [api] }}\n\
         routes:\n  - {{ id: open, path_prefix: /, auth: none }}\n",
        up.url()
    );
    let mut gw = process::GatewayProcess::start(&[], Some(&config)).await;
    gw.signal("HUP");
    gw.wait_for(|l| l.contains("SIGHUP")).await;
    assert_eq!(client(false).get(gw.url("/x")).send().await.unwrap().status(), 200);
    gw.signal("INT");
    assert_eq!(gw.exit_code().await, Some(0));
}

async fn wait_ready_url(url: &str) {
    let c = client(false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !c.get(url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(tokio::time::Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A busy port names the setting that moves it: `--listen` for the demo, the variable or key
/// for the gateway.
#[test]
fn busy_port_says_how_to_move() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = tokengate().args(["demo", "--listen", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"), "{stderr}");
    let out = tokengate()
        .env("TOKENGATE_LISTEN", &addr)
        .env("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("TOKENGATE_UPSTREAM", "http://127.0.0.1:9")
        .env("TOKENGATE_ISSUER", "http://127.0.0.1:9")
        .env("TOKENGATE_AUDIENCE", "api")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("(listen)") && stderr.contains("TOKENGATE_LISTEN"), "{stderr}");
}

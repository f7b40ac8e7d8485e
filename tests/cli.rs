//! The `tokengate` binary as an operator meets it: `check-config`, configuration errors with
//! exit status 64, env-only configuration, and SIGTERM → drain → exit 0.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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
    for file in ["deploy/kustomize/edge/tokengate.yaml", "config/demo.yaml"] {
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

/// SIGTERM: the in-flight request completes, then the process exits 0.
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let idp = DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![std::sync::Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256))],
    )
    .await
    .unwrap();
    let up = Upstream::start().await;
    let port = free_port();
    let mut child = tokengate()
        .env("TOKENGATE_UPSTREAM", up.url())
        .env("TOKENGATE_ISSUER", idp.issuer())
        .env("TOKENGATE_AUDIENCE", "api")
        .env("TOKENGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Readiness signal: the "listening" log line.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("tokengate listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(WAIT).expect("the gateway logs that it listens");
    let token = idp.mint(serde_json::json!({"sub": "a", "aud": "api"}));
    let in_flight =
        tokio::spawn(client(false).get(format!("http://127.0.0.1:{port}/slow/700")).bearer_auth(token).send());
    up.wait_for_requests(1).await;
    assert_eq!(up.count(), 1, "the request reached the upstream");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200, "in-flight request finished");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

//! The binary's configuration hygiene as an operator meets it: a sidecar without an audience is
//! refused (exit 64) with the way out, the explicit opt-out is reported, and misspelt
//! `TOKENGATE_*` variables are named with the closest real one (service links are not ours).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use support::WAIT;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

fn tokengate(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().env("RUST_LOG", "info").envs(vars.iter().copied());
    c
}

fn check_config(vars: &[(&str, &str)]) -> Output {
    tokengate(vars).arg("check-config").output().unwrap()
}

const SIDECAR: &[(&str, &str)] =
    &[("TOKENGATE_UPSTREAM", "http://127.0.0.1:8081"), ("TOKENGATE_ISSUER", "https://idp.example.com/")];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    SIDECAR.iter().chain(extra).copied().collect()
}

/// The minimal sidecar of old (upstream + issuer) is a config error naming the field and every fix.
#[test]
fn sidecar_without_audience_exits_64() {
    let out = check_config(SIDECAR);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["issuers[0].audiences", "TOKENGATE_AUDIENCE", "audience_check: disabled", "RFC 9068"] {
        assert!(stderr.contains(needle), "{needle:?} missing from {stderr}");
    }
    assert!(out.stdout.is_empty(), "nothing is printed as the effective config");
}

/// `TOKENGATE_AUDIENCES` (the typo) is not read: the config is still refused, and the
/// warning before the error names the right variable without echoing the value.
#[test]
fn misspelt_variable_is_named_with_the_closest() {
    let out = check_config(&with(&[("TOKENGATE_AUDIENCES", "orders-secret-ish")]));
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: TOKENGATE_AUDIENCES is not a tokengate variable and is ignored; did you mean TOKENGATE_AUDIENCE?"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("orders-secret-ish"), "a value was echoed: {stderr}");
    let warning = stderr.find("TOKENGATE_AUDIENCES is not").unwrap();
    assert!(warning < stderr.find("configuration error").unwrap(), "the hint comes before the error");
}

/// Service links for a Kubernetes Service named `tokengate` draw no warning; a correct
/// sidecar is valid.
#[test]
fn kubernetes_service_links_are_ignored() {
    let out = check_config(&with(&[
        ("TOKENGATE_AUDIENCE", "orders"),
        ("TOKENGATE_SERVICE_HOST", "10.96.0.10"),
        ("TOKENGATE_SERVICE_PORT", "8080"),
        ("TOKENGATE_SERVICE_PORT_HTTP", "8080"),
        ("TOKENGATE_PORT", "tcp://10.96.0.10:8080"),
        ("TOKENGATE_PORT_8080_TCP", "tcp://10.96.0.10:8080"),
        ("TOKENGATE_PORT_8080_TCP_ADDR", "10.96.0.10"),
        ("TOKENGATE_LOG_FORMAT", "text"),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// The explicit opt-out, from the file or the environment, loads and is reported by check-config.
#[test]
fn audience_check_disabled_is_reported() {
    let out = check_config(&with(&[("TOKENGATE_AUDIENCE_CHECK", "disabled")]));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("audience_check: disabled"), "{stdout}");
    assert!(
        stderr.contains("warning: issuers[0] (\"https://idp.example.com/\") has audience_check: disabled"),
        "{stderr}"
    );

    let path = std::env::temp_dir().join(format!("tokengate-audcheck-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - id: partner\n    issuer: https://idp.example.com/\n    \
         audience_check: disabled\n",
    )
    .unwrap();
    let out = tokengate(&[]).args(["check-config", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_file(&path).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("issuers[0] (\"partner\") has audience_check: disabled"), "{stderr}");
    // Only the exact word opts out.
    let out = check_config(&with(&[("TOKENGATE_AUDIENCE_CHECK", "off")]));
    assert_eq!(out.status.code(), Some(64));
}

/// `run` logs the same warnings at start, before it listens.
#[test]
fn run_logs_warnings_at_start() {
    let mut child = tokengate(&with(&[
        ("TOKENGATE_AUDIENCE_CHECK", "disabled"),
        ("TOKENGATE_JWKS_URL", "http://127.0.0.1:9/jwks"),
        ("TOKENGATE_LISTEN", "127.0.0.1:0"),
        ("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0"),
    ]))
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let listening = line.contains("tokengate listening");
            seen.push(line);
            if listening {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let lines = rx.recv_timeout(WAIT).expect("the gateway logs that it listens");
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines.join("\n");
    assert!(before.contains("level=warn") && before.contains("did you mean TOKENGATE_JWKS_URI?"), "{before}");
    assert!(before.contains("has audience_check: disabled"), "{before}");
}

/// Every pod template under deploy/ turns Kubernetes service links off.
#[test]
fn manifests_disable_service_links() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kustomize");
    let mut pods = 0;
    for overlay in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(overlay.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("template:") && text.contains("containers:") {
                pods += 1;
                assert!(text.contains("enableServiceLinks: false"), "{}", path.display());
            }
        }
    }
    assert!(pods >= 2, "found {pods} pod templates");
}

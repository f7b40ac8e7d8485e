//! The binary's configuration hygiene as an operator meets it: a sidecar without an audience is
//! refused (exit 64) with the way out, the explicit opt-out is reported, misspelt `TOKENGATE_*`
//! variables are named with the closest real one (service links are not ours), every setting
//! and introspection are reachable from the environment, secrets come from `_FILE` files, and a
//! canary secret never shows in `check-config` output, errors or start-up logs.

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

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
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
    let before = start_up_lines(&with(&[
        ("TOKENGATE_AUDIENCE_CHECK", "disabled"),
        ("TOKENGATE_JWKS_URL", "http://127.0.0.1:9/jwks"),
    ]));
    assert!(before.contains("level=warn") && before.contains("did you mean TOKENGATE_JWKS_URI?"), "{before}");
    assert!(before.contains("has audience_check: disabled"), "{before}");
}

/// Starts the gateway on ephemeral ports and returns what it logged up to "listening".
fn start_up_lines(vars: &[(&str, &str)]) -> String {
    let mut all = vars.to_vec();
    all.extend([("TOKENGATE_LISTEN", "127.0.0.1:0"), ("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0")]);
    let mut child = tokengate(&all).stderr(Stdio::piped()).spawn().unwrap();
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
    lines.join("\n")
}

/// Every pod template under deploy/ turns Kubernetes service links off.
#[test]
fn manifests_disable_service_links() {
    fn walk(dir: &std::path::Path, pods: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, pods);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("template:") && text.contains("containers:") {
                *pods += 1;
                assert!(text.contains("enableServiceLinks: false"), "{}", path.display());
            }
        }
    }
    let mut pods = 0;
    walk(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kustomize")), &mut pods);
    assert!(pods >= 2, "found {pods} pod templates");
}

/// The canary: a secret value that must never be printed anywhere.
const CANARY: &str = "canary-Jx4u9-do-not-print-0123456789abcdef";

/// A file in the temp directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("tokengate-config-env-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An introspecting sidecar from the environment alone, every other section tuned by
/// `TOKENGATE_<SECTION>_<KEY>`: check-config prints the effective values and redacts the secret.
#[test]
fn introspection_and_settings_from_the_environment() {
    let out = check_config(&with(&[
        ("TOKENGATE_AUDIENCE", "orders"),
        ("TOKENGATE_INTROSPECTION_URI", "https://idp.example.com/oauth2/introspect"),
        ("TOKENGATE_CLIENT_ID", "tokengate"),
        ("TOKENGATE_CLIENT_SECRET", CANARY),
        ("TOKENGATE_INTROSPECTION_AUTH_METHOD", "client_secret_post"),
        ("TOKENGATE_INTROSPECTION_CACHE_MAX_TTL", "30s"),
        ("TOKENGATE_SERVER_SHUTDOWN_GRACE", "3s"),
        ("TOKENGATE_JWKS_FETCH_TIMEOUT", "2s"),
        ("TOKENGATE_TOKEN_CACHE_MAX_ENTRIES", "5000"),
        ("TOKENGATE_UPSTREAM_MAX_IN_FLIGHT", "64"),
        ("TOKENGATE_IDENTITY_FORWARD_AUTHORIZATION", "false"),
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for needle in [
        "endpoint: https://idp.example.com/oauth2/introspect",
        "client_id: tokengate",
        "client_secret: <redacted>",
        "auth_method: client_secret_post",
        "cache_max_ttl: 30s",
        "mode: auto",
        "shutdown_grace: 3s",
        "fetch_timeout: 2s",
        "max_entries: 5000",
        "max_in_flight: 64",
        "forward_authorization: false",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from {stdout}");
    }
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY), "the secret was printed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// `_FILE` variants: the value is the file's contents without its trailing newline, for the
/// introspection client secret and the HMAC secret; neither is ever printed.
#[test]
fn secrets_from_files() {
    let client = TempFile::new("client-secret", &format!("{CANARY}\n"));
    let hmac = TempFile::new("hmac-secret", &format!("{CANARY}\n"));
    let out = check_config(&with(&[
        ("TOKENGATE_AUDIENCE", "orders"),
        ("TOKENGATE_CLIENT_ID", "tokengate"),
        ("TOKENGATE_CLIENT_SECRET_FILE", client.path()),
        ("TOKENGATE_ISSUER_HMAC_SECRET_FILE", hmac.path()),
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("client_secret: <redacted>") && stdout.contains("hmac_secret: <redacted>"), "{stdout}");
    assert!(stdout.contains("- HS256"), "the HMAC secret was applied: {stdout}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY), "the secret was printed:\n{stdout}\n{stderr}");
}

/// Negative, one per rule: X and X_FILE together; an unreadable file; an empty file; a secret
/// in a config refused for another reason; a short HMAC secret. Each exits 64 with an error
/// naming the variable (and the path), and the canary is in no output.
#[test]
fn secret_errors_never_show_the_secret() {
    let file = TempFile::new("both", CANARY);
    let empty = TempFile::new("empty", "\n");
    let missing = std::env::temp_dir().join("tokengate-config-env-no-such-file");
    let missing = missing.to_str().unwrap();
    let intro = [("TOKENGATE_AUDIENCE", "orders"), ("TOKENGATE_CLIENT_ID", "gw")];
    type Vars<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Vars, Vec<String>)> = vec![
        (
            [("TOKENGATE_CLIENT_SECRET", CANARY), ("TOKENGATE_CLIENT_SECRET_FILE", file.path())].to_vec(),
            vec!["TOKENGATE_CLIENT_SECRET_FILE: issuers[0].introspection.client_secret: TOKENGATE_CLIENT_SECRET is \
                 set as well; set only one of them"
                .into()],
        ),
        (
            [("TOKENGATE_CLIENT_SECRET_FILE", missing)].to_vec(),
            vec![format!(
                "TOKENGATE_CLIENT_SECRET_FILE: issuers[0].introspection.client_secret: {missing}: cannot read"
            )],
        ),
        (
            [("TOKENGATE_CLIENT_SECRET_FILE", empty.path())].to_vec(),
            vec![format!(
                "TOKENGATE_CLIENT_SECRET_FILE: issuers[0].introspection.client_secret: {}: the file is empty",
                empty.path()
            )],
        ),
        (
            [("TOKENGATE_CLIENT_SECRET", CANARY), ("TOKENGATE_INTROSPECTION_TIMEOUT", "soon")].to_vec(),
            vec!["TOKENGATE_INTROSPECTION_TIMEOUT: issuers[0].introspection.timeout: \"soon\" is not accepted".into()],
        ),
        (
            [("TOKENGATE_CLIENT_SECRET_FILE", file.path()), ("TOKENGATE_ISSUER_HMAC_SECRET", "canary-short")].to_vec(),
            vec!["TOKENGATE_ISSUER_HMAC_SECRET: issuers[0].hmac_secret: is 12 bytes".into()],
        ),
    ];
    for (vars, needles) in cases {
        let out = check_config(&with(&[intro.as_slice(), vars.as_slice()].concat()));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(64), "{vars:?}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(&needle), "{needle:?} missing from {stderr}");
        }
        for secret in [CANARY, "canary-short"] {
            assert!(!stdout.contains(secret) && !stderr.contains(secret), "{vars:?} printed a secret: {stderr}");
        }
    }
}

/// A config file with two issuers: the single-issuer variables are refused as ambiguous, the
/// secret's value is not echoed, and `_FILE` of a non-secret or a misspelt `_FILE` is named.
#[test]
fn single_issuer_rules_and_file_warnings() {
    let config = TempFile::new(
        "two-issuers.yaml",
        "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - { issuer: https://a.example/, audiences: [x] }\n  \
         - { issuer: https://b.example/, audiences: [x] }\n",
    );
    let out = tokengate(&[
        ("TOKENGATE_CLIENT_SECRET", CANARY),
        ("TOKENGATE_UPSTREAM_FILE", "/run/secrets/upstream"),
        ("TOKENGATE_CLIENT_SECRET_PATH", "/run/secrets/client"),
    ])
    .args(["check-config", "--config", config.path()])
    .output()
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("TOKENGATE_CLIENT_SECRET: issuers: the config file defines 2 issuers"), "{stderr}");
    assert!(stderr.contains("only variables that hold a secret have a _FILE variant"), "{stderr}");
    assert!(stderr.contains("did you mean TOKENGATE_CLIENT_SECRET_FILE?"), "{stderr}");
    assert!(!stderr.contains(CANARY) && !stderr.contains("/run/secrets"), "{stderr}");
}

/// Start-up logs (at debug level, the most talkative) never show a secret from the
/// environment or from a file.
#[test]
fn run_never_logs_secrets() {
    let hmac = TempFile::new("run-hmac", &format!("{CANARY}-hmac\n"));
    let before = start_up_lines(&with(&[
        ("RUST_LOG", "debug"),
        ("TOKENGATE_AUDIENCE", "orders"),
        ("TOKENGATE_INTROSPECTION_URI", "http://127.0.0.1:9/introspect"),
        ("TOKENGATE_CLIENT_ID", "gw"),
        ("TOKENGATE_CLIENT_SECRET", CANARY),
        ("TOKENGATE_ISSUER_HMAC_SECRET_FILE", hmac.path()),
    ]));
    assert!(before.contains("tokengate listening"), "{before}");
    assert!(!before.contains(CANARY), "a secret was logged: {before}");
}

/// config/sidecar-env.md names every variable the loader reads, and each variable in its
/// tables is one the loader reads (no typo in the documentation).
#[test]
fn documentation_lists_every_variable() {
    let doc = include_str!("../config/sidecar-env.md");
    let names = tokengate::config::env::names();
    for name in names {
        assert!(doc.contains(&format!("`{name}`")), "{name} is not documented in config/sidecar-env.md");
    }
    for row in doc.lines().filter(|l| l.starts_with("| `TOKENGATE_")) {
        let name = row.trim_start_matches("| `").split('`').next().unwrap();
        assert!(names.iter().any(|n| n == name), "the table documents {name}, which is not read");
    }
}

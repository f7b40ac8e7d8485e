//! `deploy/monitoring/` against a real Prometheus: `promtool check rules` passes on the rules
//! file; a Prometheus server (Debian's `prometheus`) scrapes a running tokengate under traffic
//! every second with the rules loaded; then every dashboard expression (template variables
//! substituted) and every alert expression (without its threshold) returns data from it, and
//! every rule evaluates with health `ok`.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`; `.ci/run` installs it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokengate::config::{CertificatePaths, ClientAuthMethod, DecisionSettings, TlsSettings};
use tokengate::dev_issuer::{DevIssuer, SigningKey};

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring").join(file)
}

const RULES: &str = "tokengate-rules.yaml";
const DASHBOARD: &str = "tokengate-dashboard.json";

/// What Grafana would substitute: every job and route, a one-minute rate window.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$route", ".*")
}

/// The expression an alert compares with its threshold: `expr` without its last top-level
/// comparison, and `absent(x)` as `x` (data there means the alert rightly does not fire).
fn without_threshold(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let (mut depth, mut quoted, mut cut) = (0i32, false, None);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b'(' | b'{' | b'[' if !quoted => depth += 1,
            b')' | b'}' | b']' if !quoted => depth -= 1,
            b'>' | b'<' if !quoted && depth == 0 => cut = Some(i),
            b'=' | b'!' if !quoted && depth == 0 && bytes.get(i + 1) == Some(&b'=') => {
                cut = Some(i);
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    let left = cut.map_or(expr, |c| &expr[..c]).trim();
    match left.strip_prefix("absent(").and_then(|inner| inner.strip_suffix(')')) {
        Some(inner) => inner.trim().to_owned(),
        None => left.to_owned(),
    }
}

#[test]
fn thresholds_are_cut_at_the_top_level_only() {
    assert_eq!(without_threshold(r#"up{job=~"a"} == 0"#), r#"up{job=~"a"}"#);
    assert_eq!(without_threshold("absent(up{job=~\".*\"})"), "up{job=~\".*\"}");
    assert_eq!(without_threshold("sum(x{a!=\"b\"}) / sum(y)\n> 0.05"), "sum(x{a!=\"b\"}) / sum(y)");
    assert_eq!(without_threshold("x >= 2"), "x");
}

/// Every alert: the file is a valid rules file; each rule has `for`, a severity, a summary,
/// a description and a runbook that is a section of deploy/monitoring/README.md.
fn alert_rules() -> Vec<Value> {
    let text = std::fs::read_to_string(monitoring(RULES)).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let readme = std::fs::read_to_string(monitoring("README.md")).unwrap().to_lowercase();
    let rules: Vec<Value> =
        doc["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("only alerting rules");
        assert!(rule["for"].is_string(), "{name}: no `for`");
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for annotation in ["summary", "description", "runbook"] {
            assert!(rule["annotations"][annotation].is_string(), "{name}: no {annotation}");
        }
        let anchor = rule["annotations"]["runbook"].as_str().unwrap().rsplit('#').next().unwrap();
        assert!(readme.contains(&format!("### {anchor}\n")), "{name}: no runbook section `### {name}` in the README");
    }
    rules
}

/// Every query of the dashboard, with where it comes from: panel targets and the template
/// variables' `label_values(selector, label)` (as the selector, whose results must carry the
/// label).
fn dashboard_queries() -> Vec<(String, String, Option<String>)> {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(monitoring(DASHBOARD)).unwrap()).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a `datasource` variable"
    );
    let mut queries = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values(…)");
        let (selector, label) = inner.rsplit_once(',').unwrap();
        queries.push((format!("variable {}", v["name"]), selector.trim().to_owned(), Some(label.trim().to_owned())));
    }
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() > 10);
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            queries.push((format!("panel {title:?} {}", t["refId"]), t["expr"].as_str().unwrap().to_owned(), None));
        }
    }
    queries
}

#[test]
fn promtool_check_rules_passes() {
    let Some(promtool) = require_tool("promtool", "the Debian package `prometheus`") else { return };
    let out = Command::new(promtool).args(["check", "rules"]).arg(monitoring(RULES)).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules: {report}");
    assert!(report.contains(&format!("SUCCESS: {} rules found", alert_rules().len())), "{report}");
}

/// The gateway with every part the dashboard shows: a JWKS issuer, an introspecting issuer,
/// public and protected routes, an upstream and the decision listener.
struct Gateway {
    idp: DevIssuer,
    fake: FakeIntrospection,
    _up: Upstream,
    gw: tokengate::app::Running,
}

async fn start_gateway() -> Gateway {
    let key = Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
    let fake = FakeIntrospection::start(ClientAuthMethod::ClientSecretBasic).await;
    let up = Upstream::start().await;
    let mut cfg = config(
        &up.url(),
        vec![
            issuer(idp.issuer(), &idp.jwks_uri(), &["api"]),
            introspection_issuer(&fake.issuer(), &fake.endpoint(), &["api"], ClientAuthMethod::ClientSecretBasic),
        ],
        vec![public_route("public", "/public"), required_route("api", "/api", &["read"])],
    );
    cfg.decision = Some(DecisionSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        trusted_peers: vec!["127.0.0.1/32".parse().unwrap()],
    });
    // TLS on the proxy listener (so the TLS series and alerts have data); the traffic below
    // goes through the cleartext listener beside it.
    let dir = Daemon::scratch("monitoring-tls", free_port());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    let certificate = CertificatePaths { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    std::fs::write(&certificate.cert, cert.pem()).unwrap();
    std::fs::write(&certificate.key, key.serialize_pem()).unwrap();
    cfg.tls = Some(TlsSettings { certificates: vec![certificate], client_ca: None, client_auth: None });
    cfg.plain_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    Gateway { idp, fake, _up: up, gw }
}

/// Allowed, refused and unrouted requests, by JWT and by opaque token, through the proxy and
/// the decision service, every 100 ms until aborted.
fn traffic(g: &Gateway) -> tokio::task::JoinHandle<()> {
    let jwt = g.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    let no_scope = g.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "other"}));
    let members = json!({"iss": g.fake.issuer(), "sub": "bob", "aud": "api", "scope": "read", "exp": 4_000_000_000u64});
    g.fake.active("opaque-active", members);
    let proxy = format!("http://{}", g.gw.plain_addr.unwrap());
    let decision = format!("http://{}/verify", g.gw.decision_addr.unwrap());
    tokio::spawn(async move {
        let c = client(false);
        loop {
            let _ = c.get(format!("{proxy}/api/x")).bearer_auth(&jwt).send().await;
            let _ = c.get(format!("{proxy}/api/x")).send().await;
            let _ = c.get(format!("{proxy}/api/x")).bearer_auth(&no_scope).send().await;
            let _ = c.get(format!("{proxy}/api/x")).bearer_auth("opaque-active").send().await;
            let _ = c.get(format!("{proxy}/api/x")).bearer_auth("opaque-inactive").send().await;
            let _ = c.get(format!("{proxy}/public")).send().await;
            let _ = c.get(format!("{proxy}/nowhere")).send().await;
            let ask = || c.get(&decision).header("x-original-uri", "/api/x").header("x-original-method", "GET");
            let _ = ask().bearer_auth(&jwt).send().await;
            let _ = ask().send().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus scraping `target` every second, with the rules loaded.
fn start_prometheus(prometheus: &Path, target: std::net::SocketAddr) -> (Daemon, String) {
    let port = free_port();
    let dir = Daemon::scratch("prometheus", port);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: tokengate\n    static_configs:\n      - targets: [\"{target}\"]\n",
        rules = monitoring(RULES).display().to_string(),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut command = Command::new(prometheus);
    command
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    (Daemon::spawn(&mut command, dir), format!("http://127.0.0.1:{port}"))
}

/// `GET {api}/api/v1/{path}`'s `data`, if the call succeeded.
async fn api(base: &str, path: &str, query: &[(&str, &str)]) -> Option<Value> {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    let response = client(false).get(format!("{base}/api/v1/{path}?{query}")).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

/// An instant query's result vector (empty on error).
async fn query(base: &str, q: &str) -> Vec<Value> {
    api(base, "query", &[("query", q)]).await.and_then(|d| d["result"].as_array().cloned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_and_alert_expression() {
    let Some(prometheus) = require_tool("prometheus", "the Debian package `prometheus`") else { return };
    let rules = alert_rules();
    let dashboard = dashboard_queries();
    let g = start_gateway().await;
    let load = traffic(&g);
    let (mut server, base) = start_prometheus(&prometheus, g.gw.admin_addr);
    const LOG: &str = "prometheus.log";

    server
        .wait_until("Prometheus answers and scrapes tokengate", LOG, || async {
            let targets = api(&base, "targets", &[]).await?;
            let up = targets["activeTargets"].as_array()?.iter().any(|t| t["health"] == "up");
            up.then_some(())
        })
        .await;
    // A few scrapes: rate() needs two samples, and the rules a few evaluations.
    server
        .wait_until("five scrapes of tokengate", LOG, || async {
            let samples = query(&base, r#"count_over_time(up{job="tokengate"}[1m])"#).await;
            let n: f64 = samples.first()?["value"][1].as_str()?.parse().ok()?;
            (n >= 5.0).then_some(())
        })
        .await;

    let mut failures = Vec::new();
    for (origin, expr, label) in &dashboard {
        let q = substitute(expr);
        let result = query(&base, &q).await;
        if result.is_empty() {
            failures.push(format!("{origin}: no data for {q}"));
        } else if let Some(label) = label {
            if !result.iter().all(|s| s["metric"][label].is_string()) {
                failures.push(format!("{origin}: results without `{label}` for {q}"));
            }
        }
    }
    for rule in &rules {
        let q = without_threshold(rule["expr"].as_str().unwrap());
        if query(&base, &q).await.is_empty() {
            failures.push(format!("alert {}: no data for {q}", rule["alert"]));
        }
    }
    // Each rule has been evaluated, without error.
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    let evaluated = server
        .wait_until("every rule evaluated", LOG, || async {
            let data = api(&base, "rules", &[]).await?;
            let loaded: Vec<Value> = data["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let done = loaded.len() == names.len()
                && loaded.iter().all(|r| {
                    r["health"] != "unknown" && !r["lastEvaluation"].as_str().unwrap_or("0001").starts_with("0001")
                });
            done.then_some(loaded)
        })
        .await;
    for rule in &evaluated {
        if rule["health"] != "ok" {
            failures.push(format!("rule {}: health {} ({})", rule["name"], rule["health"], rule["lastError"]));
        }
    }
    let mut seen: Vec<&str> = evaluated.iter().filter_map(|r| r["name"].as_str()).collect();
    seen.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(seen, expected, "the rules Prometheus loaded");
    // Healthy: the gateway is up, so the down alerts are not even pending.
    let alerts = api(&base, "alerts", &[]).await.unwrap();
    for alert in alerts["alerts"].as_array().unwrap() {
        let name = alert["labels"]["alertname"].as_str().unwrap_or("");
        if ["TokengateDown", "TokengateAbsent"].contains(&name) {
            failures.push(format!("{name} is {} while the gateway is up", alert["state"]));
        }
    }
    load.abort();
    assert!(failures.is_empty(), "{} problem(s):\n{}\n{}", failures.len(), failures.join("\n"), server.read(LOG));
    drop(server);
    g.gw.shutdown().await;
}

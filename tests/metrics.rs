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

/// `name{labels}` as the exposition writes it: labels sorted by name, a bucket's `le` last.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort_by_key(|(k, _)| (*k == "le", *k));
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The value of `series` in the exposition `text`, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(gw: &tokengate::app::Running) -> String {
    client(false).get(format!("http://{}/metrics", gw.admin_addr)).send().await.unwrap().text().await.unwrap()
}

/// Before any request, every series an alert or the dashboard needs is exported at zero: the
/// failure series do not wait for the first failure.
#[tokio::test]
async fn failure_series_exist_at_zero_before_any_traffic() {
    let key = std::sync::Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap();
    let fake = FakeIntrospection::start(tokengate::config::ClientAuthMethod::ClientSecretBasic).await;
    let up = Upstream::start().await;
    let mut cfg = config(
        &up.url(),
        vec![
            issuer(idp.issuer(), &idp.jwks_uri(), &["api"]),
            introspection_issuer(
                &fake.issuer(),
                &fake.endpoint(),
                &["api"],
                tokengate::config::ClientAuthMethod::ClientSecretBasic,
            ),
        ],
        vec![public_route("public", "/public"), required_route("api", "/", &["read"])],
    );
    cfg.decision = Some(tokengate::config::DecisionSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        trusted_peers: vec!["127.0.0.1/32".parse().unwrap()],
    });
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    let text = scrape(&gw).await;
    let upstream = up.url();
    let jwks_issuer = idp.issuer().to_owned();
    let introspecting = fake.issuer();
    let mut zero: Vec<String> = Vec::new();
    for (route, decision, status) in [
        ("api", "allowed", "200"),
        ("api", "missing_token", "401"),
        ("api", "invalid_token", "401"),
        ("api", "insufficient_scope", "403"),
        ("api", "auth_unavailable", "503"),
        ("api", "upstream_error", "502"),
        ("api", "upstream_timeout", "504"),
        ("api", "upstream_overloaded", "503"),
        ("public", "allowed", "200"),
        ("public", "upstream_error", "502"),
        ("public", "upstream_timeout", "504"),
        ("_none", "no_route", "404"),
    ] {
        zero.push(series("tokengate_requests_total", &[("route", route), ("decision", decision), ("status", status)]));
    }
    // JWKS failures (the first fetch may already have succeeded).
    for outcome in ["network_error", "timeout", "http_error", "too_large", "invalid"] {
        zero.push(series("tokengate_jwks_fetches_total", &[("issuer", &jwks_issuer), ("outcome", outcome)]));
    }
    for outcome in ["active", "inactive", "rejected", "timeout", "error", "http_error", "invalid", "circuit_open"] {
        zero.push(series(
            "tokengate_introspection_requests_total",
            &[("issuer", &introspecting), ("outcome", outcome)],
        ));
    }
    for limit in ["rate", "concurrency"] {
        zero.push(series("tokengate_introspection_limited_total", &[("issuer", &introspecting), ("limit", limit)]));
    }
    for cache in ["jwt", "jwt_refusal", "introspection"] {
        for result in ["hit", "miss"] {
            zero.push(series("tokengate_token_cache_lookups_total", &[("cache", cache), ("result", result)]));
        }
    }
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        zero.push(series("tokengate_upstream_responses_total", &[("upstream", &upstream), ("class", class)]));
    }
    for error in ["connect", "timeout", "broken", "overloaded"] {
        zero.push(series("tokengate_upstream_errors_total", &[("upstream", &upstream), ("error", error)]));
    }
    for door in ["auth_request", "forward_auth", "ext_authz_http", "ext_authz_grpc"] {
        for decision in
            ["allowed", "missing_token", "invalid_token", "insufficient_scope", "no_route", "auth_unavailable"]
        {
            zero.push(series("tokengate_decisions_total", &[("door", door), ("decision", decision)]));
        }
    }
    for listener in ["proxy", "decision"] {
        zero.push(series("tokengate_in_flight_requests", &[("listener", listener)]));
        zero.push(series("tokengate_refused_connections_total", &[("listener", listener)]));
    }
    for result in ["success", "failure"] {
        zero.push(series("tokengate_config_reloads_total", &[("result", result)]));
    }
    for closer in ["client", "upstream", "idle", "shutdown", "error"] {
        zero.push(series("tokengate_tunnels_total", &[("closed_by", closer)]));
    }
    zero.push("tokengate_tunnels_open".to_owned());
    for hist in ["tokengate_request_duration_seconds", "tokengate_gateway_duration_seconds"] {
        for route in ["api", "public", "_none"] {
            zero.push(series(&format!("{hist}_bucket"), &[("route", route), ("le", "60")]));
        }
    }
    zero.push(series("tokengate_upstream_duration_seconds_bucket", &[("upstream", &upstream), ("le", "60")]));
    let missing: Vec<&String> = zero.iter().filter(|s| value(&text, s) != Some(0.0)).collect();
    assert!(missing.is_empty(), "not exported at 0: {missing:#?}\n{text}");
    assert!(value(&text, &series("tokengate_jwks_fetches_total", &[("issuer", &jwks_issuer), ("outcome", "success")]))
        .is_some());
    assert_eq!(value(&text, &series("tokengate_jwks_ready", &[("issuer", &jwks_issuer)])), Some(1.0));
    assert!(!text.contains(r#"tokengate_in_flight_requests{listener="admin"}"#), "a scrape would count itself");
    // The last successful load is the start-up load, which is the process start.
    let loaded = value(&text, "tokengate_config_last_reload_success_timestamp_seconds").unwrap();
    let started = value(&text, "process_start_time_seconds").unwrap();
    assert!(loaded > 1.6e9 && (loaded - started).abs() < 1.0, "loaded {loaded}, started {started}");
    // CPU time is not whole seconds.
    let cpu = value(&text, "process_cpu_seconds_total").unwrap();
    assert!(cpu > 0.0 && cpu.fract() != 0.0, "process_cpu_seconds_total {cpu}");
    gw.shutdown().await;
}

/// A request is in flight on its listener until its response ends, and no longer once its
/// client gives up; its gateway-added time leaves out the upstream's wait.
#[tokio::test]
async fn in_flight_requests_and_gateway_time_over_real_sockets() {
    let up = Upstream::start().await;
    let mut cfg = config(&up.url(), vec![], vec![public_route("public", "/")]);
    cfg.upstream.as_mut().unwrap().response_timeout = std::time::Duration::from_secs(10);
    let gw = gateway(cfg).await;
    let in_flight = gw.metrics.in_flight.with_label_values(&["proxy"]);
    let url = format!("http://{}/slow/300", gw.addr);
    let slow = tokio::spawn(client(false).get(url).send());
    up.wait_for_requests(1).await;
    assert_eq!(in_flight.get(), 1);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    // The response body was sent; its guard goes with it.
    let deadline = std::time::Instant::now() + WAIT;
    while in_flight.get() != 0 {
        assert!(std::time::Instant::now() < deadline, "still in flight: {}", in_flight.get());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let total = gw.metrics.duration.with_label_values(&["public"]).get_sample_sum();
    let own = gw.metrics.gateway_duration.with_label_values(&["public"]).get_sample_sum();
    let upstream = gw.metrics.upstream_duration.with_label_values(&[&up.url()]).get_sample_sum();
    assert!(total >= 0.3 && upstream >= 0.3 && own < 0.25, "total {total}, upstream {upstream}, gateway {own}");

    // A client that gives up long before the upstream answers: its request is no longer
    // counted, although the upstream has not answered yet.
    let impatient =
        reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_millis(200)).build().unwrap();
    let url = format!("http://{}/slow/8000", gw.addr);
    assert!(impatient.get(url).send().await.is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while in_flight.get() != 0 {
        assert!(std::time::Instant::now() < deadline, "a cancelled request stays in flight");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gw.shutdown().await;
}

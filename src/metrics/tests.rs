use std::time::Duration;

use http::StatusCode;

use super::prepare::{INTROSPECTION_OUTCOMES, JWKS_OUTCOMES};
use super::route::{DECISIONS, DOORS};
use super::*;
use crate::respond::UpstreamError;

fn requests(m: &Metrics, route: &str, decision: &str, status: &str) -> u64 {
    m.requests.with_label_values(&[route, decision, status]).get()
}

fn text(m: &Metrics) -> String {
    String::from_utf8(m.render().1).unwrap()
}

/// Resolved handles count into the same series as the label lookup, slotted or not.
#[test]
fn route_metrics_count_into_the_labelled_series() {
    let m = Metrics::new();
    let r = m.route("api");
    r.record("allowed", StatusCode::OK, Duration::from_micros(100), None);
    r.record("allowed", StatusCode::OK, Duration::from_micros(100), None);
    r.record("allowed", StatusCode::IM_A_TEAPOT, Duration::from_micros(100), None);
    r.record("insufficient_scope", StatusCode::FORBIDDEN, Duration::from_micros(100), None);
    r.record("some_new_reason", StatusCode::FORBIDDEN, Duration::from_micros(100), None);
    assert_eq!(requests(&m, "api", "allowed", "200"), 2);
    assert_eq!(requests(&m, "api", "allowed", "418"), 1);
    assert_eq!(requests(&m, "api", "insufficient_scope", "403"), 1);
    assert_eq!(requests(&m, "api", "some_new_reason", "403"), 1);
    assert_eq!(m.duration.with_label_values(&["api"]).get_sample_count(), 5);
    assert!(!text(&m).contains(r#"decision="no_route",route="api""#), "no zero series for unused slots");
}

/// Every denial reason has a slot, and every door.
#[test]
fn every_denial_reason_and_door_has_a_slot() {
    use crate::auth::AuthError;
    use crate::decision::Door;
    use crate::respond::Denial;
    let denials = [
        Denial::NoRoute,
        Denial::BadRequest("x"),
        Denial::Auth(AuthError::MissingToken),
        Denial::Auth(AuthError::InvalidRequest("x")),
        Denial::Auth(AuthError::InvalidToken("x")),
        Denial::Auth(AuthError::InsufficientScope("x")),
        Denial::Auth(AuthError::Unavailable("x")),
        Denial::Upstream(UpstreamError::Timeout),
        Denial::Upstream(UpstreamError::Connect),
        Denial::Upstream(UpstreamError::Overloaded),
        Denial::BodyTimeout,
        Denial::UntrustedPeer,
    ];
    for d in denials {
        assert!(DECISIONS.contains(&d.reason()), "{}", d.reason());
    }
    for door in [Door::AuthRequest, Door::ForwardAuth, Door::ExtAuthzHttp, Door::ExtAuthzGrpc] {
        assert!(DOORS.contains(&door.label()), "{}", door.label());
    }
}

/// Gateway-added time is the request's time minus the upstream's; without an upstream wait
/// (a refusal) it is the whole time.
#[test]
fn gateway_time_excludes_the_upstream_wait() {
    let m = Metrics::new();
    let r = m.route("api");
    r.record("allowed", StatusCode::OK, Duration::from_millis(2000), Some(Duration::from_millis(1999)));
    let gateway = m.gateway_duration.with_label_values(&["api"]);
    assert!((gateway.get_sample_sum() - 0.001).abs() < 1e-9, "{}", gateway.get_sample_sum());
    r.record("missing_token", StatusCode::UNAUTHORIZED, Duration::from_millis(3), None);
    assert!((gateway.get_sample_sum() - 0.004).abs() < 1e-9, "{}", gateway.get_sample_sum());
    assert!((m.duration.with_label_values(&["api"]).get_sample_sum() - 2.003).abs() < 1e-9);
}

/// The latency buckets reach past the 30 s default upstream timeout, start below the
/// gateway's own overhead, and stay few.
#[test]
fn latency_buckets_cover_the_timeouts() {
    const { assert!(LATENCY_BUCKETS[0] <= 0.000_05 && LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] >= 60.0) };
    const { assert!(LATENCY_BUCKETS.len() <= 20) };
    assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    assert!(LATENCY_BUCKETS.contains(&0.05), "the alert budget is a bucket boundary");
    let m = Metrics::new();
    let r = m.route("api");
    r.record("upstream_timeout", StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(31), None);
    let t = text(&m);
    assert!(t.contains(r#"tokengate_request_duration_seconds_bucket{route="api",le="60"} 1"#), "{t}");
    assert!(t.contains(r#"tokengate_request_duration_seconds_bucket{route="api",le="30"} 0"#), "{t}");
}

/// Every upstream class and error exists at zero once the upstream is known; responses and
/// errors count in their own series, and timeouts are observed as waits.
#[test]
fn upstream_series_exist_at_zero_and_count() {
    let m = Metrics::new();
    let up = UpstreamMetrics::new(&m, "http://up:8080");
    let t = text(&m);
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        let line = format!(r#"tokengate_upstream_responses_total{{class="{class}",upstream="http://up:8080"}} 0"#);
        assert!(t.contains(&line), "{line} missing:\n{t}");
    }
    for error in ["connect", "timeout", "broken", "overloaded"] {
        let line = format!(r#"tokengate_upstream_errors_total{{error="{error}",upstream="http://up:8080"}} 0"#);
        assert!(t.contains(&line), "{line} missing:\n{t}");
    }
    up.response(StatusCode::OK, Duration::from_millis(5));
    up.response(StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(5));
    up.response(StatusCode::from_u16(600).unwrap(), Duration::from_millis(5));
    up.error(UpstreamError::Timeout, Duration::from_secs(30));
    up.error(UpstreamError::Connect, Duration::from_millis(1));
    let class = |c: &str| m.upstream_responses.with_label_values(&["http://up:8080", c]).get();
    let error = |e: &str| m.upstream_errors.with_label_values(&["http://up:8080", e]).get();
    assert_eq!((class("2xx"), class("5xx"), class("4xx")), (1, 1, 0));
    assert_eq!((error("timeout"), error("connect"), error("broken")), (1, 1, 0));
    let waits = m.upstream_duration.with_label_values(&["http://up:8080"]);
    assert_eq!(waits.get_sample_count(), 4, "three responses and the timeout; not the connect error");
}

/// The in-flight guard counts while it lives, also when dropped without finishing.
#[test]
fn in_flight_guard_uncounts_on_drop() {
    let m = Metrics::new();
    let listener = m.listener(LISTENER_PROXY);
    let gauge = listener.in_flight.as_ref().unwrap();
    let a = InFlight::new(gauge);
    let b = InFlight::new(gauge);
    assert_eq!(gauge.get(), 2);
    drop(a);
    drop(b);
    assert_eq!(gauge.get(), 0);
    assert!(m.listener(LISTENER_ADMIN).in_flight.is_none(), "a scrape would count itself");
    assert!(text(&m).contains(r#"tokengate_in_flight_requests{listener="proxy"} 0"#));
}

/// Decisions count per door into the labelled series, slotted or not.
#[test]
fn decisions_count_by_door() {
    let m = Metrics::new();
    m.decided("forward_auth", "allowed");
    m.decided("forward_auth", "allowed");
    m.decided("ext_authz_grpc", "something_new");
    assert_eq!(m.decisions.with_label_values(&["forward_auth", "allowed"]).get(), 2);
    assert_eq!(m.decisions.with_label_values(&["ext_authz_grpc", "something_new"]).get(), 1);
}

/// Both reload results exist at zero, and the last success starts at the process start.
#[test]
fn reload_metrics_start_at_zero_and_the_start_time() {
    let m = Metrics::new();
    let t = text(&m);
    assert!(t.contains(r#"tokengate_config_reloads_total{result="success"} 0"#), "{t}");
    assert!(t.contains(r#"tokengate_config_reloads_total{result="failure"} 0"#), "{t}");
    let started = m.config_last_reload_success.get();
    assert!(started > 1.6e9 && started <= now(), "{started}");
    #[cfg(target_os = "linux")]
    assert_eq!(Some(started), process::start_time_seconds());
    m.reload_failed();
    assert_eq!((m.config_reloads_success.get(), m.config_reloads_failure.get()), (0, 1));
    assert_eq!(m.config_last_reload_success.get(), started, "a failure is not a success");
    m.reload_succeeded();
    assert_eq!(m.config_reloads_success.get(), 1);
    assert!(m.config_last_reload_success.get() >= started);
}

/// The string literals of the function body that starts at `start` (up to the next line that
/// closes a block at the indentation `start` has).
fn literals_in(source: &str, start: &str) -> Vec<String> {
    let at = source.find(start).unwrap_or_else(|| panic!("{start} not found"));
    let indent = source[..at].rsplit('\n').next().unwrap().len();
    let close = format!("\n{}}}", " ".repeat(indent));
    let body = &source[at..at + source[at..].find(&close).unwrap()];
    body.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The outcome lists pre-created here are the ones the JWKS cache and the introspector count:
/// read from their source, so a new outcome cannot be missed.
#[test]
fn precreated_outcomes_are_the_counted_ones() {
    let jwks = include_str!("../auth/jwks.rs");
    let mut counted = literals_in(jwks, "fn outcome(&self)");
    counted.extend(literals_in(jwks, "let outcome = match &result"));
    counted.sort();
    let mut ours: Vec<String> = JWKS_OUTCOMES.iter().map(|s| s.to_string()).collect();
    ours.sort();
    assert_eq!(counted, ours, "JWKS outcomes");

    let introspect = include_str!("../auth/introspect.rs");
    let mut counted = literals_in(introspect, "fn outcome(&self)");
    counted.extend(literals_in(introspect, "fn counted_as(&self)"));
    counted.extend(introspect.split("self.count(\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_owned()));
    counted.sort();
    counted.dedup();
    let mut ours: Vec<String> = INTROSPECTION_OUTCOMES.iter().map(|s| s.to_string()).collect();
    ours.sort();
    assert_eq!(counted, ours, "introspection outcomes");
}

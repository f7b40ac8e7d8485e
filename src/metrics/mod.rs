//! Prometheus metrics: names declared once here, base units, `_total` counters, labels from
//! closed sets only (route ids from config, decision reasons, status codes, issuer and upstream
//! URLs from config) — never a subject, client id, path or token.
//!
//! Every series an alert or a dashboard divides by or compares against exists from start-up,
//! at zero (`prepare`): a failure series that appears only with the first failure makes
//! `rate()` blind to that first failure and leaves alert expressions without data.

mod prepare;
#[cfg(target_os = "linux")]
pub mod process;
mod route;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use route::{InFlight, RouteMetrics, UpstreamMetrics};
use route::{DECISIONS, DOORS};

pub const REQUESTS_TOTAL: &str = "tokengate_requests_total";
pub const REQUEST_DURATION: &str = "tokengate_request_duration_seconds";
pub const GATEWAY_DURATION: &str = "tokengate_gateway_duration_seconds";
pub const UPSTREAM_DURATION: &str = "tokengate_upstream_duration_seconds";
pub const IN_FLIGHT: &str = "tokengate_in_flight_requests";
pub const JWKS_FETCHES_TOTAL: &str = "tokengate_jwks_fetches_total";
pub const JWKS_READY: &str = "tokengate_jwks_ready";
pub const BUILD_INFO: &str = "tokengate_build_info";
pub const INTROSPECTION_REQUESTS_TOTAL: &str = "tokengate_introspection_requests_total";
pub const INTROSPECTION_DURATION: &str = "tokengate_introspection_duration_seconds";
pub const INTROSPECTION_LIMITED_TOTAL: &str = "tokengate_introspection_limited_total";
pub const TOKEN_CACHE_LOOKUPS_TOTAL: &str = "tokengate_token_cache_lookups_total";
pub const UPSTREAM_CONNECTIONS_TOTAL: &str = "tokengate_upstream_connections_opened_total";
pub const UPSTREAM_IN_FLIGHT: &str = "tokengate_upstream_in_flight_requests";
pub const UPSTREAM_REFUSED_TOTAL: &str = "tokengate_upstream_refused_requests_total";
pub const UPSTREAM_RESPONSES_TOTAL: &str = "tokengate_upstream_responses_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "tokengate_upstream_errors_total";
pub const OPEN_CONNECTIONS: &str = "tokengate_open_connections";
pub const REFUSED_CONNECTIONS_TOTAL: &str = "tokengate_refused_connections_total";
pub const FRAMING_REFUSALS_TOTAL: &str = "tokengate_framing_refusals_total";
pub const DECISIONS_TOTAL: &str = "tokengate_decisions_total";
pub const TUNNELS_OPEN: &str = "tokengate_tunnels_open";
pub const TUNNELS_TOTAL: &str = "tokengate_tunnels_total";

/// `closed_by` labels of `tokengate_tunnels_total`: which end closed first, the idle timeout,
/// the drain, or an I/O error (`proxy::upgrade::ClosedBy`).
pub const TUNNEL_CLOSERS: [&str; 5] = ["client", "upstream", "idle", "shutdown", "error"];
pub const CONFIG_RELOADS_TOTAL: &str = "tokengate_config_reloads_total";
pub const CONFIG_LAST_RELOAD_SUCCESS: &str = "tokengate_config_last_reload_success_timestamp_seconds";
pub const TLS_HANDSHAKES_TOTAL: &str = "tokengate_tls_handshakes_total";
pub const TLS_RELOADS_TOTAL: &str = "tokengate_tls_reloads_total";
pub const TLS_CERTIFICATE_NOT_AFTER: &str = "tokengate_tls_certificate_not_after_seconds";

/// `listener` label of the proxy listener's connection metrics.
pub const LISTENER_PROXY: &str = "proxy";
/// `listener` label of the admin listener's connection metrics.
pub const LISTENER_ADMIN: &str = "admin";
/// `listener` label of the decision service's connection metrics.
pub const LISTENER_DECISION: &str = "decision";

/// `cache` label of `TOKEN_CACHE_LOOKUPS_TOTAL` for the introspection result cache.
pub const CACHE_INTROSPECTION: &str = "introspection";

/// Label used for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

/// Buckets (seconds) of the three latency histograms: 50 µs (a cached token's whole gateway
/// overhead) to 60 s (beyond the 30 s default upstream response timeout, so a timed-out request
/// still lands in a finite bucket), 1-2.5-5 steps, 19 buckets: few series per route, and the
/// 50 ms alert budget (`deploy/monitoring`) on a bucket boundary.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// The gateway's metrics in a private registry (each test builds its own).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `route`, `decision` (allowed or a denial reason), `status`.
    pub requests: IntCounterVec,
    /// Time from request head to response head, per route.
    pub duration: HistogramVec,
    /// The part of `duration` the gateway itself added: minus the wait for the upstream's
    /// response head (or its failure) when the request was sent; all of it otherwise.
    pub gateway_duration: HistogramVec,
    /// `upstream`: time to the upstream's response head, and to a response timeout.
    pub upstream_duration: HistogramVec,
    /// `listener` (proxy, decision): requests whose response has not ended.
    pub in_flight: IntGaugeVec,
    /// `issuer`, `outcome`.
    pub jwks_fetches: IntCounterVec,
    /// `issuer`: 1 when a usable key set is loaded.
    pub jwks_ready: IntGaugeVec,
    /// `issuer`, `outcome`: active | inactive | rejected (active, but a claim check failed) |
    /// timeout | error (network, discovery) | http_error (not 200, e.g. our client auth refused) |
    /// invalid (not JSON, no boolean `active`, too large) | circuit_open (not called).
    pub introspection_requests: IntCounterVec,
    /// `issuer`: time of each introspection call that was made.
    pub introspection_duration: HistogramVec,
    /// `issuer`, `limit` (rate | concurrency): cache misses refused by the gateway's own call
    /// limits (503, no call made; not in `introspection_requests`).
    pub introspection_limited: IntCounterVec,
    /// `cache`, `result` (hit | miss).
    pub token_cache_lookups: IntCounterVec,
    /// Upstream connections opened; against request counts, it shows how well the pool reuses them.
    pub upstream_connections: IntCounter,
    /// Requests sent upstream whose response has not ended; `upstream.max_in_flight` caps it.
    /// By `upstream`.
    pub upstream_in_flight: IntGaugeVec,
    /// Requests answered 503 because `upstream.max_in_flight` were in flight.
    pub upstream_refused: IntCounter,
    /// `upstream`, `class` (1xx … 5xx): response heads received from the upstream.
    pub upstream_responses: IntCounterVec,
    /// `upstream`, `error` (connect | timeout | broken | overloaded): requests that got no
    /// response head. `timeout` covers both the connect and the response timeout.
    pub upstream_errors: IntCounterVec,
    /// `listener`: client connections being served; `server.max_connections` caps it.
    pub open_connections: IntGaugeVec,
    /// `listener`: connections answered 503 and closed because `server.max_connections` were open.
    pub refused_connections: IntCounterVec,
    /// `listener`, `reason` (`framing::Reason`): requests refused for their framing, before hyper.
    pub framing_refusals: IntCounterVec,
    /// `door` (auth_request | forward_auth | ext_authz_http | ext_authz_grpc), `decision` (allowed or a denial
    /// reason): the decision service's answers. Also counted per route in `requests`.
    pub decisions: IntCounterVec,
    /// Upgraded connections (WebSockets) being tunnelled, from their 101 to their end.
    pub tunnels_open: IntGauge,
    /// `closed_by` (`TUNNEL_CLOSERS`): tunnels ended, by what ended them.
    pub tunnels: IntCounterVec,
    /// `tokengate_config_reloads_total{result="success"}`.
    pub config_reloads_success: IntCounter,
    /// `tokengate_config_reloads_total{result="failure"}`: the new config was refused.
    pub config_reloads_failure: IntCounter,
    /// Unix time of the last successful config load; the initial load counts (process start).
    pub config_last_reload_success: Gauge,
    /// `result` (success | failure): TLS handshakes on the proxy listener; a timeout is a failure.
    pub tls_handshakes: IntCounterVec,
    /// `result` (success | failure): certificate, key or client CA changes seen on disk.
    pub tls_reloads: IntCounterVec,
    /// `certificate` (the cert file's path): notAfter of the leaf serving now, Unix seconds.
    pub tls_not_after: IntGaugeVec,
    /// `DOORS.len() × DECISIONS.len()` decision counters, door-major, resolved on first use.
    decision_slots: Arc<[OnceLock<IntCounter>]>,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn latency(name: &str, help: &str, label: &str) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), &[label]).expect("valid metric")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = counter_vec(
            REQUESTS_TOTAL,
            "Requests handled, by route, decision and response status.",
            &["route", "decision", "status"],
        );
        let duration = latency(REQUEST_DURATION, "Time from request head to response head, by route.", "route");
        let gateway_duration = latency(
            GATEWAY_DURATION,
            "Time the gateway added to each request (request duration minus the wait for the upstream's response head), by route.",
            "route",
        );
        let upstream_duration = latency(
            UPSTREAM_DURATION,
            "Time from sending a request upstream to its response head (or the response timeout), by upstream.",
            "upstream",
        );
        let in_flight = gauge_vec(IN_FLIGHT, "Requests whose response has not ended, by listener.", &["listener"]);
        let jwks_fetches = counter_vec(
            JWKS_FETCHES_TOTAL,
            "JWKS and discovery fetches, by issuer and outcome.",
            &["issuer", "outcome"],
        );
        let jwks_ready = gauge_vec(JWKS_READY, "1 when the issuer has a usable key set loaded.", &["issuer"]);
        let introspection_requests = counter_vec(
            INTROSPECTION_REQUESTS_TOTAL,
            "Token introspection requests, by issuer and outcome.",
            &["issuer", "outcome"],
        );
        // 1 ms … ~4 s: the default introspection timeout is 3 s.
        let introspection_duration = HistogramVec::new(
            HistogramOpts::new(INTROSPECTION_DURATION, "Time of token introspection calls, by issuer.")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 13).expect("valid buckets")),
            &["issuer"],
        )
        .expect("valid metric");
        let introspection_limited = counter_vec(
            INTROSPECTION_LIMITED_TOTAL,
            "Token introspection calls not made because a call limit refused them, by issuer and limit.",
            &["issuer", "limit"],
        );
        let token_cache_lookups = counter_vec(
            TOKEN_CACHE_LOOKUPS_TOTAL,
            "Token result cache lookups, by cache and result (hit or miss).",
            &["cache", "result"],
        );
        let upstream_connections =
            IntCounter::new(UPSTREAM_CONNECTIONS_TOTAL, "Upstream connections opened.").expect("valid metric");
        let upstream_in_flight = IntGaugeVec::new(
            Opts::new(UPSTREAM_IN_FLIGHT, "Upstream requests whose response has not ended, by upstream."),
            &["upstream"],
        )
        .expect("valid metric");
        let upstream_refused = IntCounter::new(
            UPSTREAM_REFUSED_TOTAL,
            "Requests answered 503 because upstream.max_in_flight requests were in flight.",
        )
        .expect("valid metric");
        let upstream_responses = counter_vec(
            UPSTREAM_RESPONSES_TOTAL,
            "Response heads received from the upstream, by upstream and status class.",
            &["upstream", "class"],
        );
        let upstream_errors = counter_vec(
            UPSTREAM_ERRORS_TOTAL,
            "Requests to the upstream that got no response head, by upstream and error (connect, timeout, broken, overloaded).",
            &["upstream", "error"],
        );
        let open_connections =
            gauge_vec(OPEN_CONNECTIONS, "Client connections being served, by listener.", &["listener"]);
        let refused_connections = counter_vec(
            REFUSED_CONNECTIONS_TOTAL,
            "Client connections answered 503 and closed because server.max_connections were open, by listener.",
            &["listener"],
        );
        let framing_refusals = counter_vec(
            FRAMING_REFUSALS_TOTAL,
            "Requests refused for their HTTP/1.1 framing, by listener and reason.",
            &["listener", "reason"],
        );
        let decisions = counter_vec(
            DECISIONS_TOTAL,
            "Decision service answers, by front door and decision.",
            &["door", "decision"],
        );
        let tunnels_open =
            IntGauge::new(TUNNELS_OPEN, "Upgraded connections (WebSockets) being tunnelled.").expect("valid metric");
        let tunnels = counter_vec(
            TUNNELS_TOTAL,
            "Tunnels (upgraded connections) ended, by what closed them: client, upstream, idle, shutdown or error.",
            &["closed_by"],
        );
        // Every reason exists at zero from the start (bounded: five).
        for closer in TUNNEL_CLOSERS {
            tunnels.with_label_values(&[closer]);
        }
        let config_reloads =
            counter_vec(CONFIG_RELOADS_TOTAL, "Configuration reloads, by result (success or failure).", &["result"]);
        let config_last_reload_success = Gauge::new(
            CONFIG_LAST_RELOAD_SUCCESS,
            "Unix time of the last successful configuration load (the initial load counts).",
        )
        .expect("valid metric");
        config_last_reload_success.set(start_time());
        let tls_handshakes = counter_vec(
            TLS_HANDSHAKES_TOTAL,
            "TLS handshakes on the proxy listener, by result (success or failure).",
            &["result"],
        );
        let tls_reloads = counter_vec(
            TLS_RELOADS_TOTAL,
            "TLS certificate, key and client CA changes on disk, by result (success: applied; failure: refused, the old one serves).",
            &["result"],
        );
        let tls_not_after = gauge_vec(
            TLS_CERTIFICATE_NOT_AFTER,
            "Expiry (notAfter, Unix seconds) of each serving TLS certificate, by certificate file.",
            &["certificate"],
        );
        let build_info = IntGauge::with_opts(
            Opts::new(BUILD_INFO, "Build information; always 1.").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(gateway_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(jwks_ready.clone()),
            Box::new(introspection_requests.clone()),
            Box::new(introspection_duration.clone()),
            Box::new(introspection_limited.clone()),
            Box::new(token_cache_lookups.clone()),
            Box::new(upstream_connections.clone()),
            Box::new(upstream_in_flight.clone()),
            Box::new(upstream_refused.clone()),
            Box::new(upstream_responses.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(open_connections.clone()),
            Box::new(refused_connections.clone()),
            Box::new(framing_refusals.clone()),
            Box::new(decisions.clone()),
            Box::new(tunnels_open.clone()),
            Box::new(tunnels.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_reload_success.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(tls_not_after.clone()),
            Box::new(build_info),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(process::ProcessCollector::new())).expect("process metrics register once");
        Metrics {
            registry,
            requests,
            duration,
            gateway_duration,
            upstream_duration,
            in_flight,
            jwks_fetches,
            jwks_ready,
            introspection_requests,
            introspection_duration,
            introspection_limited,
            token_cache_lookups,
            upstream_connections,
            upstream_in_flight,
            upstream_refused,
            upstream_responses,
            upstream_errors,
            open_connections,
            refused_connections,
            framing_refusals,
            decisions,
            tunnels_open,
            tunnels,
            // Both results exist at zero from the start.
            config_reloads_success: config_reloads.with_label_values(&["success"]),
            config_reloads_failure: config_reloads.with_label_values(&["failure"]),
            config_last_reload_success,
            tls_handshakes,
            tls_reloads,
            tls_not_after,
            decision_slots: (0..DOORS.len() * DECISIONS.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A configuration reload was applied: counted, and its time is the last success.
    pub fn reload_succeeded(&self) {
        self.config_reloads_success.inc();
        self.config_last_reload_success.set(now());
    }

    /// A configuration reload was refused; the old configuration keeps serving.
    pub fn reload_failed(&self) {
        self.config_reloads_failure.inc();
    }

    /// The connection metrics of one listener, resolved once. The admin listener's requests
    /// are not counted in flight (a scrape would always see itself).
    pub fn listener(&self, listener: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            open: self.open_connections.with_label_values(&[listener]),
            refused: self.refused_connections.with_label_values(&[listener]),
            in_flight: (listener != LISTENER_ADMIN).then(|| self.in_flight.with_label_values(&[listener])),
            framing_refusals: self.framing_refusals.clone(),
            listener,
        }
    }

    /// Request metrics of one route (`NO_ROUTE` for requests that matched none), resolved once.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics::new(self, route)
    }

    /// Count one decision-service answer by front door (`Door::label`). Known doors and
    /// decisions count through a resolved handle; anything else through the label lookup.
    pub fn decided(&self, door: &str, decision: &str) {
        let door_slot = DOORS.iter().position(|d| *d == door);
        let decision_slot = DECISIONS.iter().position(|d| *d == decision);
        match (door_slot, decision_slot) {
            (Some(o), Some(d)) => self.decision_slots[o * DECISIONS.len() + d]
                .get_or_init(|| self.decisions.with_label_values(&[DOORS[o], DECISIONS[d]]))
                .inc(),
            _ => self.decisions.with_label_values(&[door, decision]).inc(),
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        encoder.encode(&self.registry.gather(), &mut buf).expect("encoding to a Vec cannot fail");
        (encoder.format_type().to_owned(), buf)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The process's start time: the initial config load happened then.
fn start_time() -> f64 {
    #[cfg(target_os = "linux")]
    if let Some(t) = process::start_time_seconds() {
        return t;
    }
    now()
}

/// Connection and request metrics of one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
    /// `None` on the admin listener.
    pub in_flight: Option<IntGauge>,
    framing_refusals: IntCounterVec,
    listener: &'static str,
}

impl ListenerMetrics {
    /// Count a request refused for its framing (rare: the label lookup is fine).
    pub fn framing_refused(&self, reason: &str) {
        self.framing_refusals.with_label_values(&[self.listener, reason]).inc();
    }
}

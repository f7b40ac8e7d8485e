//! Prometheus metrics: names declared once here, base units, `_total` counters, labels from
//! closed sets only (route ids from config, decision reasons, status codes, issuer URLs from
//! config) — never a subject, client id, path or token.

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const REQUESTS_TOTAL: &str = "tokengate_requests_total";
pub const REQUEST_DURATION: &str = "tokengate_request_duration_seconds";
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
pub const OPEN_CONNECTIONS: &str = "tokengate_open_connections";
pub const REFUSED_CONNECTIONS_TOTAL: &str = "tokengate_refused_connections_total";
pub const FRAMING_REFUSALS_TOTAL: &str = "tokengate_framing_refusals_total";
pub const DECISIONS_TOTAL: &str = "tokengate_decisions_total";

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

/// The gateway's metrics in a private registry (each test builds its own).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `route`, `decision` (allowed or a denial reason), `status`.
    pub requests: IntCounterVec,
    /// Time from request head to response head, per route.
    pub duration: HistogramVec,
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
    pub upstream_in_flight: IntGauge,
    /// Requests answered 503 because `upstream.max_in_flight` were in flight.
    pub upstream_refused: IntCounter,
    /// `listener`: client connections being served; `server.max_connections` caps it.
    pub open_connections: IntGaugeVec,
    /// `listener`: connections answered 503 and closed because `server.max_connections` were open.
    pub refused_connections: IntCounterVec,
    /// `listener`, `reason` (`framing::Reason`): requests refused for their framing, before hyper.
    pub framing_refusals: IntCounterVec,
    /// `door` (auth_request | forward_auth | ext_authz_http | ext_authz_grpc), `decision` (allowed or a denial
    /// reason): the decision service's answers. Also counted per route in `requests`.
    pub decisions: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS_TOTAL, "Requests handled, by route, decision and response status."),
            &["route", "decision", "status"],
        )
        .expect("valid metric");
        // 50 µs … ~1.6 s: the gateway's own overhead is sub-millisecond, upstreams are not.
        let duration = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION, "Time from request head to response head, by route.")
                .buckets(exponential_buckets(0.00005, 2.0, 16).expect("valid buckets")),
            &["route"],
        )
        .expect("valid metric");
        let jwks_fetches = IntCounterVec::new(
            Opts::new(JWKS_FETCHES_TOTAL, "JWKS and discovery fetches, by issuer and outcome."),
            &["issuer", "outcome"],
        )
        .expect("valid metric");
        let jwks_ready =
            IntGaugeVec::new(Opts::new(JWKS_READY, "1 when the issuer has a usable key set loaded."), &["issuer"])
                .expect("valid metric");
        let introspection_requests = IntCounterVec::new(
            Opts::new(INTROSPECTION_REQUESTS_TOTAL, "Token introspection requests, by issuer and outcome."),
            &["issuer", "outcome"],
        )
        .expect("valid metric");
        // 1 ms … ~4 s: the default introspection timeout is 3 s.
        let introspection_duration = HistogramVec::new(
            HistogramOpts::new(INTROSPECTION_DURATION, "Time of token introspection calls, by issuer.")
                .buckets(exponential_buckets(0.001, 2.0, 13).expect("valid buckets")),
            &["issuer"],
        )
        .expect("valid metric");
        let introspection_limited = IntCounterVec::new(
            Opts::new(
                INTROSPECTION_LIMITED_TOTAL,
                "Token introspection calls not made because a call limit refused them, by issuer and limit.",
            ),
            &["issuer", "limit"],
        )
        .expect("valid metric");
        let token_cache_lookups = IntCounterVec::new(
            Opts::new(TOKEN_CACHE_LOOKUPS_TOTAL, "Token result cache lookups, by cache and result (hit or miss)."),
            &["cache", "result"],
        )
        .expect("valid metric");
        let upstream_connections =
            IntCounter::new(UPSTREAM_CONNECTIONS_TOTAL, "Upstream connections opened.").expect("valid metric");
        let upstream_in_flight =
            IntGauge::new(UPSTREAM_IN_FLIGHT, "Upstream requests whose response has not ended.").expect("valid metric");
        let upstream_refused = IntCounter::new(
            UPSTREAM_REFUSED_TOTAL,
            "Requests answered 503 because upstream.max_in_flight requests were in flight.",
        )
        .expect("valid metric");
        let open_connections = IntGaugeVec::new(
            Opts::new(OPEN_CONNECTIONS, "Client connections being served, by listener."),
            &["listener"],
        )
        .expect("valid metric");
        let refused_connections = IntCounterVec::new(
            Opts::new(
                REFUSED_CONNECTIONS_TOTAL,
                "Client connections answered 503 and closed because server.max_connections were open, by listener.",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let framing_refusals = IntCounterVec::new(
            Opts::new(FRAMING_REFUSALS_TOTAL, "Requests refused for their HTTP/1.1 framing, by listener and reason."),
            &["listener", "reason"],
        )
        .expect("valid metric");
        let decisions = IntCounterVec::new(
            Opts::new(DECISIONS_TOTAL, "Decision service answers, by front door and decision."),
            &["door", "decision"],
        )
        .expect("valid metric");
        let build_info = IntGauge::with_opts(
            Opts::new(BUILD_INFO, "Build information; always 1.").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(jwks_ready.clone()),
            Box::new(introspection_requests.clone()),
            Box::new(introspection_duration.clone()),
            Box::new(introspection_limited.clone()),
            Box::new(token_cache_lookups.clone()),
            Box::new(upstream_connections.clone()),
            Box::new(upstream_in_flight.clone()),
            Box::new(upstream_refused.clone()),
            Box::new(open_connections.clone()),
            Box::new(refused_connections.clone()),
            Box::new(framing_refusals.clone()),
            Box::new(decisions.clone()),
            Box::new(build_info),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            registry.register(Box::new(process)).expect("process metrics register once");
        }
        Metrics {
            registry,
            requests,
            duration,
            jwks_fetches,
            jwks_ready,
            introspection_requests,
            introspection_duration,
            introspection_limited,
            token_cache_lookups,
            upstream_connections,
            upstream_in_flight,
            upstream_refused,
            open_connections,
            refused_connections,
            framing_refusals,
            decisions,
        }
    }

    /// The connection metrics of one listener, resolved once.
    pub fn listener(&self, listener: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            open: self.open_connections.with_label_values(&[listener]),
            refused: self.refused_connections.with_label_values(&[listener]),
            framing_refusals: self.framing_refusals.clone(),
            listener,
        }
    }

    /// Request metrics of one route (`NO_ROUTE` for requests that matched none), resolved once.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            duration: self.duration.with_label_values(&[route]),
            requests: self.requests.clone(),
            slots: (0..DECISIONS.len() * STATUSES.len()).map(|_| OnceLock::new()).collect(),
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

/// Connection metrics of one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
    framing_refusals: IntCounterVec,
    listener: &'static str,
}

impl ListenerMetrics {
    /// Count a request refused for its framing (rare: the label lookup is fine).
    pub fn framing_refused(&self, reason: &str) {
        self.framing_refusals.with_label_values(&[self.listener, reason]).inc();
    }
}

/// Decisions with a pre-resolved counter slot: `allowed` and every `Denial::reason`. Any other
/// decision still counts, through the label lookup.
const DECISIONS: [&str; 12] = [
    "allowed",
    "no_route",
    "bad_request",
    "missing_token",
    "invalid_request",
    "invalid_token",
    "insufficient_scope",
    "auth_unavailable",
    "upstream_timeout",
    "upstream_error",
    "upstream_overloaded",
    "body_timeout",
];

/// Status codes with a slot: the gateway's own and the common upstream ones. Others still count,
/// through the label lookup.
const STATUSES: [u16; 25] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 500, 502,
    503, 504,
];

/// The request metrics of one route with their label handles resolved: recording a request is
/// an atomic add and a histogram observation, with no label hashing and no lock on the
/// `MetricVec`. The duration histogram is resolved at start-up; a (decision, status) counter on
/// first use (so no zero series are exported for combinations that never happen), then read
/// lock-free from its `OnceLock`.
pub struct RouteMetrics {
    route: String,
    duration: Histogram,
    requests: IntCounterVec,
    /// `DECISIONS.len() × STATUSES.len()`, decision-major.
    slots: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    /// Count one request and observe its duration.
    pub fn record(&self, decision: &str, status: StatusCode, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let decision_slot = DECISIONS.iter().position(|d| *d == decision);
        let status_slot = STATUSES.iter().position(|s| *s == status.as_u16());
        match (decision_slot, status_slot) {
            (Some(d), Some(s)) => self.slots[d * STATUSES.len() + s]
                .get_or_init(|| self.requests.with_label_values(&[&self.route, DECISIONS[d], status.as_str()]))
                .inc(),
            _ => self.requests.with_label_values(&[&self.route, decision, status.as_str()]).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(m: &Metrics, route: &str, decision: &str, status: &str) -> u64 {
        m.requests.with_label_values(&[route, decision, status]).get()
    }

    /// Resolved handles count into the same series as the label lookup, slotted or not.
    #[test]
    fn route_metrics_count_into_the_labelled_series() {
        let m = Metrics::new();
        let r = m.route("api");
        r.record("allowed", StatusCode::OK, Duration::from_micros(100));
        r.record("allowed", StatusCode::OK, Duration::from_micros(100));
        r.record("allowed", StatusCode::IM_A_TEAPOT, Duration::from_micros(100));
        r.record("insufficient_scope", StatusCode::FORBIDDEN, Duration::from_micros(100));
        r.record("some_new_reason", StatusCode::FORBIDDEN, Duration::from_micros(100));
        assert_eq!(requests(&m, "api", "allowed", "200"), 2);
        assert_eq!(requests(&m, "api", "allowed", "418"), 1);
        assert_eq!(requests(&m, "api", "insufficient_scope", "403"), 1);
        assert_eq!(requests(&m, "api", "some_new_reason", "403"), 1);
        assert_eq!(m.duration.with_label_values(&["api"]).get_sample_count(), 5);
        let (_, text) = m.render();
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains(r#"decision="no_route",route="api""#), "no zero series for unused slots");
    }

    /// Every denial reason has a slot.
    #[test]
    fn every_denial_reason_has_a_slot() {
        use crate::auth::AuthError;
        use crate::respond::{Denial, UpstreamError};
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
        ];
        for d in denials {
            assert!(DECISIONS.contains(&d.reason()), "{}", d.reason());
        }
    }
}

//! Prometheus metrics: names declared once here, base units, `_total` counters, labels from
//! closed sets only (route ids from config, decision reasons, status codes, issuer URLs from
//! config) — never a subject, client id, path or token.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub const REQUESTS_TOTAL: &str = "tokengate_requests_total";
pub const REQUEST_DURATION: &str = "tokengate_request_duration_seconds";
pub const JWKS_FETCHES_TOTAL: &str = "tokengate_jwks_fetches_total";
pub const JWKS_READY: &str = "tokengate_jwks_ready";
pub const BUILD_INFO: &str = "tokengate_build_info";
pub const TOKEN_CACHE_LOOKUPS_TOTAL: &str = "tokengate_token_cache_lookups_total";

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
    /// `cache` (`jwt`), `result` (`hit` or `miss`).
    pub token_cache_lookups: IntCounterVec,
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
        let token_cache_lookups = IntCounterVec::new(
            Opts::new(TOKEN_CACHE_LOOKUPS_TOTAL, "Verified-token cache lookups, by cache and result (hit or miss)."),
            &["cache", "result"],
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
            Box::new(token_cache_lookups.clone()),
            Box::new(build_info),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            registry.register(Box::new(process)).expect("process metrics register once");
        }
        Metrics { registry, requests, duration, jwks_fetches, jwks_ready, token_cache_lookups }
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

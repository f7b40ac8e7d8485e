//! Metrics on the request path, with their label handles resolved ahead of time: recording is
//! atomic adds and histogram observations, with no label hashing and no lock on a `MetricVec`.

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use super::Metrics;
use crate::respond::UpstreamError;

/// Decisions with a pre-resolved counter slot: `allowed` and every `Denial::reason`. Any other
/// decision still counts, through the label lookup.
pub(super) const DECISIONS: [&str; 13] = [
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
    "untrusted_peer",
];

/// The decision service's front doors (`decision::Door::label`).
pub(super) const DOORS: [&str; 4] = ["auth_request", "forward_auth", "ext_authz_http", "ext_authz_grpc"];

/// Status codes with a slot: the gateway's own and the common upstream ones. Others still count,
/// through the label lookup.
const STATUSES: [u16; 25] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 500, 502,
    503, 504,
];

/// `class` labels of `tokengate_upstream_responses_total`, by status / 100 − 1.
pub(super) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `error` labels of `tokengate_upstream_errors_total`, in `error_slot` order.
pub(super) const UPSTREAM_ERRORS: [&str; 4] = ["connect", "timeout", "broken", "overloaded"];

fn error_slot(e: UpstreamError) -> usize {
    match e {
        UpstreamError::Connect => 0,
        UpstreamError::Timeout => 1,
        UpstreamError::Broken => 2,
        UpstreamError::Overloaded => 3,
    }
}

/// The request metrics of one route. The histograms are resolved at start-up; a (decision,
/// status) counter on first use, then read lock-free from its `OnceLock` (the series that must
/// exist at zero before first use are created by `Metrics::prepare`).
pub struct RouteMetrics {
    route: String,
    duration: Histogram,
    gateway: Histogram,
    requests: IntCounterVec,
    /// `DECISIONS.len() × STATUSES.len()`, decision-major.
    slots: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    pub(super) fn new(metrics: &Metrics, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            duration: metrics.duration.with_label_values(&[route]),
            gateway: metrics.gateway_duration.with_label_values(&[route]),
            requests: metrics.requests.clone(),
            slots: (0..DECISIONS.len() * STATUSES.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Count one request and observe its duration (`elapsed`, to the response head) and the
    /// part the gateway added: `elapsed` minus `upstream`, the wait for the upstream's response
    /// head when the request was sent.
    pub fn record(&self, decision: &str, status: StatusCode, elapsed: Duration, upstream: Option<Duration>) {
        self.duration.observe(elapsed.as_secs_f64());
        let own = upstream.map_or(elapsed, |u| elapsed.saturating_sub(u));
        self.gateway.observe(own.as_secs_f64());
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

/// The metrics of one upstream, every series resolved (and so present at zero) at start-up.
pub struct UpstreamMetrics {
    /// To the response head; timeouts observed at the timeout.
    duration: Histogram,
    classes: [IntCounter; 5],
    errors: [IntCounter; 4],
}

impl UpstreamMetrics {
    /// `upstream` is its label: the configured URL, as the access log names it.
    pub fn new(metrics: &Metrics, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            duration: metrics.upstream_duration.with_label_values(&[upstream]),
            classes: CLASSES.map(|c| metrics.upstream_responses.with_label_values(&[upstream, c])),
            errors: UPSTREAM_ERRORS.map(|e| metrics.upstream_errors.with_label_values(&[upstream, e])),
        }
    }

    /// A response head arrived after `waited`. Statuses outside 100–599 count in no class.
    pub fn response(&self, status: StatusCode, waited: Duration) {
        self.duration.observe(waited.as_secs_f64());
        if let Some(class) = (status.as_u16() / 100).checked_sub(1).and_then(|i| self.classes.get(usize::from(i))) {
            class.inc();
        }
    }

    /// The request got no response head. A timeout is also observed as a wait of `waited`.
    pub fn error(&self, error: UpstreamError, waited: Duration) {
        self.errors[error_slot(error)].inc();
        if error == UpstreamError::Timeout {
            self.duration.observe(waited.as_secs_f64());
        }
    }
}

/// One request counted in a gauge until dropped: a cancelled request (its future dropped) is
/// uncounted like a finished one.
pub struct InFlight(IntGauge);

impl InFlight {
    pub fn new(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

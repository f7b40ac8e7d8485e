//! The label series created at zero at start-up, from the configuration.
//!
//! A counter series that appears only with its first increment is invisible to `rate()` and
//! `increase()` for that first event, and an alert or ratio over it has no data until then
//! (it cannot tell "no failures" from "not scraped"). So the series that alerts and the
//! dashboard in `deploy/monitoring/` look at exist from the start. Cardinality stays bounded by
//! the configuration: per route at most 8 `requests` series, per issuer its 6 JWKS or 8
//! introspection outcomes, per door (only with a decision listener) 6 decisions, per upstream 5
//! classes and 4 errors. Rarer combinations (other statuses, `bad_request`, framing refusals)
//! still appear on first use.
//!
//! Created elsewhere, also at start-up: the upstream series (`UpstreamMetrics::new`, by the
//! forwarder), per-listener connection and in-flight series (`Metrics::listener`), the token
//! caches' hit/miss series and introspection call limits (by the caches and introspectors),
//! and the config reload counters (`Metrics::new`).

use super::{Metrics, DOORS, NO_ROUTE};
use crate::config::{Config, KeySource, RouteAuth, TokenMode};

/// `outcome` labels of `tokengate_jwks_fetches_total` (`auth::jwks`: "success" and
/// `FetchError::outcome`; a test reads them from there).
pub(super) const JWKS_OUTCOMES: [&str; 6] =
    ["success", "network_error", "timeout", "http_error", "too_large", "invalid"];

/// `outcome` labels of `tokengate_introspection_requests_total` (`auth::introspect`: the
/// verdicts, "circuit_open" and `CallError::outcome`; a test reads them from there).
pub(super) const INTROSPECTION_OUTCOMES: [&str; 8] =
    ["active", "inactive", "rejected", "timeout", "error", "http_error", "invalid", "circuit_open"];

/// `tokengate_requests_total` series of every route: allowed, and the refusals an alert or the
/// error ratio needs from the start, with the status `respond` gives each.
const EVERY_ROUTE: [(&str, &str); 1] = [("allowed", "200")];
/// … of routes that require a token.
const AUTH_ROUTE: [(&str, &str); 4] =
    [("missing_token", "401"), ("invalid_token", "401"), ("insufficient_scope", "403"), ("auth_unavailable", "503")];
/// … when there is an upstream (not for the decision service alone).
const FORWARDED: [(&str, &str); 3] =
    [("upstream_error", "502"), ("upstream_timeout", "504"), ("upstream_overloaded", "503")];

/// `tokengate_decisions_total` series of every door, when the decision listener is configured.
const DOOR_DECISIONS: [&str; 6] =
    ["allowed", "missing_token", "invalid_token", "insufficient_scope", "no_route", "auth_unavailable"];

impl Metrics {
    /// Create at zero the series `config` will need (see the module documentation).
    pub fn prepare(&self, config: &Config) {
        let forwarded: &[(&str, &str)] = if config.proxies() { &FORWARDED } else { &[] };
        for route in &config.routes {
            let auth: &[(&str, &str)] = match route.auth {
                RouteAuth::Required(_) => &AUTH_ROUTE,
                RouteAuth::Public => &[],
            };
            for (decision, status) in EVERY_ROUTE.iter().chain(auth).chain(forwarded) {
                self.requests.with_label_values(&[route.id.as_str(), decision, status]);
            }
        }
        self.requests.with_label_values(&[NO_ROUTE, "no_route", "404"]);
        let mut introspecting = false;
        for issuer in &config.issuers {
            let name = issuer.issuer.as_str();
            if matches!(issuer.keys, KeySource::JwksUri(_) | KeySource::Discovery) {
                for outcome in JWKS_OUTCOMES {
                    self.jwks_fetches.with_label_values(&[name, outcome]);
                }
            }
            if issuer.mode != TokenMode::Introspection {
                self.jwks_ready.with_label_values(&[name]);
            }
            if issuer.introspection.is_some() {
                introspecting = true;
                for outcome in INTROSPECTION_OUTCOMES {
                    self.introspection_requests.with_label_values(&[name, outcome]);
                }
                self.introspection_duration.with_label_values(&[name]);
                for limit in ["rate", "concurrency"] {
                    self.introspection_limited.with_label_values(&[name, limit]);
                }
            }
        }
        let mut caches = Vec::new();
        if config.token_cache.enabled {
            caches.extend(["jwt", "jwt_refusal"]);
        }
        if introspecting {
            caches.push(super::CACHE_INTROSPECTION);
        }
        for cache in caches {
            for result in ["hit", "miss"] {
                self.token_cache_lookups.with_label_values(&[cache, result]);
            }
        }
        if config.decision.is_some() {
            for door in DOORS {
                for decision in DOOR_DECISIONS {
                    self.decisions.with_label_values(&[door, decision]);
                }
            }
        }
    }
}

//! Admin listener (its own port, no auth, never proxied): `/healthz` and `/livez` (the process
//! is alive), `/readyz` (every issuer has a usable key set — or is introspection-only — and we
//! are not draining), `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::config::TokenMode;
use crate::proxy::Live;

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct Admin {
    pub live: Arc<Live>,
    /// Set when shutdown starts so load balancers stop sending traffic.
    pub draining: Arc<AtomicBool>,
}

impl Admin {
    pub async fn handle<B>(&self, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
        }
        Ok(match req.uri().path() {
            "/healthz" | "/livez" => text(StatusCode::OK, "ok\n"),
            "/readyz" => self.ready(),
            "/metrics" => {
                self.issuers_waiting();
                let (content_type, body) = self.live.load().metrics.render();
                let mut r = Response::new(Full::new(Bytes::from(body)));
                if let Ok(v) = HeaderValue::from_str(&content_type) {
                    r.headers_mut().insert(CONTENT_TYPE, v);
                }
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        })
    }

    fn ready(&self) -> Response<Full<Bytes>> {
        if self.draining.load(Ordering::Relaxed) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
        }
        let waiting = self.issuers_waiting();
        if waiting.is_empty() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("no usable key set yet for: {}\n", waiting.join(", ")))
        }
    }
}

impl Admin {
    /// Issuers without a usable key set; also refreshes the `tokengate_jwks_ready` gauges.
    fn issuers_waiting(&self) -> Vec<String> {
        let state = self.live.load();
        let mut waiting = Vec::new();
        for issuer in state.auth.issuers() {
            if issuer.config.mode != TokenMode::Introspection {
                let loaded = i64::from(issuer.jwks.is_ready());
                state.metrics.jwks_ready.with_label_values(&[&issuer.config.issuer]).set(loaded);
            }
            if !issuer.is_ready() {
                waiting.push(issuer.config.issuer.clone());
            }
        }
        waiting
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

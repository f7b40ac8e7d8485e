//! Envoy's gRPC `ext_authz` front door (`envoy.service.auth.v3.Authorization/Check`), the form
//! Istio's CUSTOM AuthorizationPolicy and Envoy Gateway use. envoy-types carries the protos and
//! tonic the protocol; this file only reads the original request off a `CheckRequest` and
//! renders the decision as a `CheckResponse`.

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{Decision, Door, Original};

/// gRPC codes (google.rpc.Code) of refusals.
const INVALID_ARGUMENT: i32 = 3;
const NOT_FOUND: i32 = 5;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;
const INTERNAL: i32 = 13;

/// The tonic service: one per decision-service connection.
pub struct GrpcDoor(pub Decision);

#[tonic::async_trait]
impl Authorization for GrpcDoor {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        // Each call under the configuration being served when it arrives.
        Ok(tonic::Response::new(self.0.current().check(request.into_inner()).await))
    }
}

impl Decision {
    /// Decide a `CheckRequest`: the same decision as every other door, rendered for Envoy.
    pub(crate) async fn check(&self, request: CheckRequest) -> CheckResponse {
        let started = std::time::Instant::now();
        let http = request.attributes.and_then(|a| a.request).and_then(|r| r.http);
        let (outcome, mut entry) = match described(http.as_ref()) {
            Err(reason) => {
                let id = crate::telemetry::access::request_id(&HeaderMap::new(), false);
                let entry = self.entry(Door::ExtAuthzGrpc, &id, None, &HeaderMap::new(), started);
                (Err((None, crate::respond::Denial::BadRequest(reason))), entry)
            }
            Ok((original, headers)) => {
                // Envoy's own `x-request-id`, which its access log and the upstream see too.
                let id = crate::telemetry::access::request_id(&headers, self.memo.trusted);
                let entry = self.entry(Door::ExtAuthzGrpc, &id, Some(&original), &headers, started);
                (self.decide(&original, &headers).await, entry)
            }
        };
        let is_allowed = outcome.is_ok();
        let (route, decision, rendered) = self.render(Door::ExtAuthzGrpc, outcome, entry.as_deref_mut());
        self.record(Door::ExtAuthzGrpc, route, decision, rendered.status(), started, entry);
        if is_allowed {
            let remove = super::headers_to_remove(&self.state, rendered.headers());
            allowed(rendered.headers(), &remove)
        } else {
            denied(rendered).await
        }
    }
}

/// The original request in a `CheckRequest`: method, host, raw target and headers. Envoy joins
/// repeated headers with commas (two `Authorization` headers arrive as one value, which the
/// token extractor refuses like two headers) and may send raw headers instead.
fn described(http: Option<&HttpRequest>) -> Result<(Original<'_>, HeaderMap), &'static str> {
    let http = http.ok_or("the CheckRequest describes no HTTP request")?;
    let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| "the original method is not a method")?;
    let mut headers = HeaderMap::new();
    let raw = http.header_map.iter().flat_map(|m| &m.headers).map(|h| (h.key.as_str(), h.raw_value.as_slice()));
    let joined = http.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    for (name, value) in joined.chain(raw) {
        // Pseudo-headers (`:authority`, `:path`) are described by their own fields.
        if name.starts_with(':') {
            continue;
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| "a header of the original request is not valid")?;
        let value =
            http::HeaderValue::from_bytes(value).map_err(|_| "a header of the original request is not valid")?;
        headers.append(name, value);
    }
    let host = (!http.host.is_empty()).then_some(http.host.as_str());
    Ok((Original { door: Door::ExtAuthzGrpc, method, host, target: &http.path }, headers))
}

/// OK, with the identity headers to set (overwriting any client-sent copy) and the headers to
/// remove (`super::headers_to_remove`), as the HTTP door renders them.
fn allowed(identity: &HeaderMap, remove: &[&str]) -> CheckResponse {
    let ok = OkHttpResponse {
        headers: header_options(identity),
        headers_to_remove: remove.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    };
    // No `status`: protobuf's default, code 0, is OK.
    CheckResponse { http_response: Some(HttpResponse::OkResponse(ok)), ..Default::default() }
}

/// Denied, carrying the HTTP status, headers (`WWW-Authenticate`, `Retry-After`) and JSON body
/// the proxy would have answered with.
async fn denied(rendered: Response<Full<Bytes>>) -> CheckResponse {
    let (parts, body) = rendered.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers = header_options(&parts.headers);
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus { code: i32::from(parts.status.as_u16()) }),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    CheckResponse {
        status: Some(rpc::Status { code: grpc_code(parts.status), ..Default::default() }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..Default::default()
    }
}

/// Each header as an Envoy header option that replaces any value the request already has.
fn header_options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    let option = |(name, value): (&HeaderName, &http::HeaderValue)| HeaderValueOption {
        header: Some(HeaderValue {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    };
    headers.iter().map(option).collect()
}

/// The gRPC status of a refusal, from its HTTP status.
fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::UNAUTHORIZED => UNAUTHENTICATED,
        StatusCode::FORBIDDEN => PERMISSION_DENIED,
        StatusCode::NOT_FOUND => NOT_FOUND,
        StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
        s if s.is_client_error() => INVALID_ARGUMENT,
        _ => INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals map to the gRPC code that says the same (Envoy answers the HTTP status).
    #[test]
    fn grpc_codes() {
        for (status, code) in [
            (400, INVALID_ARGUMENT),
            (408, INVALID_ARGUMENT),
            (401, UNAUTHENTICATED),
            (403, PERMISSION_DENIED),
            (404, NOT_FOUND),
            (503, UNAVAILABLE),
            (502, INTERNAL),
            (500, INTERNAL),
        ] {
            assert_eq!(grpc_code(StatusCode::from_u16(status).unwrap()), code, "{status}");
        }
    }

    /// An allowed answer carries no status (OK by default), so Envoy reads it as OK.
    #[test]
    fn allowed_is_ok() {
        let response = allowed(&HeaderMap::new(), &[]);
        assert_eq!(response.status.map_or(0, |s| s.code), 0);
        assert!(matches!(response.http_response, Some(HttpResponse::OkResponse(_))));
    }
}

//! serde mirror of the YAML file: every key optional, unknown keys refused, no logic.
//!
//! Defaults and cross-field rules live in `validate`; env overrides are applied to these structs by
//! `env::apply`. The same structs serialize the effective config back out (`print`), so the printed
//! form is the file schema by construction.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::schema::{ClaimValue, HumantimeDuration};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Proxy listener, ip:port (default 0.0.0.0:8080).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Cleartext proxy listener beside the TLS one, ip:port; only with `tls` (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_listen: Option<String>,
    /// TLS on the proxy listener (`listen`); cleartext when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// Admin listener for /livez, /readyz and /metrics, ip:port; must not overlap `listen` (default 127.0.0.1:9090).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// `realm="..."` in every WWW-Authenticate challenge (default tokengate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Listener limits, timeouts and shutdown timings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<RawServer>,
    /// The protected service. Required unless only the decision service runs (`decision.listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<RawUpstream>,
    /// More upstreams by name, for routes that name one (`routes[].upstream`); same keys as `upstream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<BTreeMap<String, RawUpstream>>,
    /// Where a bearer token may be read from (RFC 6750 §2); the Authorization header always works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<RawTokens>,
    /// Refresh and fetch limits of the issuers' key sets (JWKS) and discovery documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<RawJwks>,
    /// Verified-token cache: a JWT that validated once is admitted again by one lookup until its exp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cache: Option<RawTokenCache>,
    /// Token issuers; a token's `iss` selects one. At least one is required (or TOKENGATE_ISSUER).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Vec<RawIssuer>>,
    /// How request paths are read and matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<RawPaths>,
    /// Routes, first match wins; a request matching none gets 404 (default: one route {id: default, path_prefix: /, auth: required}).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RawRoute>>,
    /// What the upstream learns about the caller; every header named here is removed from the client's request first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<RawIdentity>,
    /// RFC 9728 protected resource metadata (off when omitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_resource: Option<RawProtectedResource>,
    /// Peers (CIDRs or addresses) whose X-Forwarded-* and Forwarded headers are kept (default []).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// The decision service for an ingress that asks before it forwards (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz); off when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<RawDecision>,
    /// The access log: one line per request at info level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<RawAccessLog>,
}

/// `tls:`, TLS on the proxy listener. Files are PEM; they are re-read when their content changes.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    /// Certificate chain file (leaf first) of a single certificate, with `key`; served before those in `certificates` (TOKENGATE_TLS_CERT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Private key file (PKCS#8, PKCS#1 or SEC1) of `cert` (TOKENGATE_TLS_KEY).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Certificates chosen by SNI (exact name, then wildcard, then the first); ECDSA or RSA by what the client supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<RawCertificate>>,
    /// CA certificates (PEM) that client certificates must chain to; enables mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
    /// required: no client certificate, no connection | optional: a certificate is verified when presented (default required; needs client_ca).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<RawClientAuth>,
}

/// One certificate of `tls.certificates`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawCertificate {
    /// Certificate chain file, PEM, leaf first. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Private key file, PEM (PKCS#8, PKCS#1 or SEC1), matching the leaf. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuth {
    Required,
    Optional,
}

/// `access_log:`, the one line per request.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawAccessLog {
    /// Write the line (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Log the token's subject and client id; false logs both as null (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<bool>,
    /// Log the query string, any access_token removed (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<bool>,
}

/// `decision:`, the decision service for an ingress that asks before it forwards.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawDecision {
    /// Where the decision service listens, ip:port. Required in the section (or TOKENGATE_DECISION_LISTEN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Peers (the ingress) allowed to describe a request, CIDRs or addresses (default [127.0.0.0/8, ::1/128]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_peers: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawPaths {
    /// refuse: %2F and %5C in a path are 400 | keep: forwarded unchanged, and they count as "/" for matching (default refuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoded_slashes: Option<RawEncodedSlashes>,
    /// Default of routes[].case_insensitive (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_insensitive: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawEncodedSlashes {
    Refuse,
    Keep,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawProtectedResource {
    /// The resource identifier: an https URL, no query, no fragment. Required in the section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Issuer URLs clients may get tokens from (default: every issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_servers: Option<Vec<String>>,
    /// Scopes worth asking for (default: every scope some route requires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// Human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    /// A client must send its whole request head within this time, the slowloris guard (default 10s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub header_read_timeout: Option<Duration>,
    /// After SIGTERM, how long the listeners keep accepting while /readyz answers 503 (default 5s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub drain_delay: Option<Duration>,
    /// Once the listeners close, how long in-flight requests get to finish (default 20s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub shutdown_grace: Option<Duration>,
    /// Largest accepted request head in bytes, at least 8192 (default 65536).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,
    /// Tokio worker threads; null = one per CPU core (default null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    /// Client connections served at once, per listener; one more is answered 503 (default 10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// An HTTP/2 connection with no stream in flight for this long is closed; at least header_read_timeout (default 60s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub idle_timeout: Option<Duration>,
    /// Reading a form body for its access_token must finish within this, else 408 (default 10s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub body_read_timeout: Option<Duration>,
    /// HTTP/2 streams a client may have open at once on one connection (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_concurrent_streams: Option<u32>,
    /// HTTP/2: a PING after this long without a frame from the client (default 30s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub http2_keep_alive_interval: Option<Duration>,
    /// HTTP/2: the connection is closed if the PING is not answered within this (default 10s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub http2_keep_alive_timeout: Option<Duration>,
    /// A WebSocket (or other Upgrade) tunnel with no byte in either direction for this long is closed (default 5m).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub tunnel_idle_timeout: Option<Duration>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    /// The protected service: http://host[:port] (HTTP/1.1), https://host[:port] (TLS, HTTP/2 when ALPN offers it) or h2c://host[:port] (cleartext HTTP/2, e.g. gRPC), with no path and no query. Required (or TOKENGATE_UPSTREAM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// https: PEM file of the CA certificates the upstream's certificate must chain to (default: the system's webpki roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// https: the name sent as SNI and checked against the upstream's certificate (default: the URL's host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// https: PEM file of the client certificate chain presented to the upstream (mTLS); needs client_key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// https: PEM file of client_cert's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// TCP connect timeout (default 2s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub connect_timeout: Option<Duration>,
    /// Time until the upstream's response head arrives (default 30s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub response_timeout: Option<Duration>,
    /// Idle pooled connections are closed after this long (default 90s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub pool_idle_timeout: Option<Duration>,
    /// Idle pooled connections kept per upstream host; 0 disables pooling (default 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_max_idle_per_host: Option<usize>,
    /// Requests to the upstream in flight at once; one more is answered 503, never queued (default 1024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawTokens {
    /// Accept the `access_token` query parameter (RFC 6750 §2.3; leaks into logs, avoid) (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<bool>,
    /// Accept `access_token` in a form-encoded body (RFC 6750 §2.2) (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form_body: Option<bool>,
    /// Longer tokens are refused unparsed (default 16384).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawJwks {
    /// Lower bound for the JWKS response's Cache-Control max-age (default 60s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub min_refresh: Option<Duration>,
    /// Upper bound for the JWKS response's Cache-Control max-age (default 1h).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub max_refresh: Option<Duration>,
    /// Refresh interval when there is no usable max-age, between min_refresh and max_refresh (default 5m).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub default_refresh: Option<Duration>,
    /// At most one refetch per issuer per cooldown when a token names an unknown kid (default 30s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub unknown_kid_cooldown: Option<Duration>,
    /// Total time for one JWKS or discovery fetch (default 5s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub fetch_timeout: Option<Duration>,
    /// Larger JWKS or discovery documents are refused (default 262144).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawTokenCache {
    /// Turn the cache off to verify every signature on every request (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// At most this many tokens are remembered (default 100000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<usize>,
    /// At most about this many bytes of verified claims (default 67108864, 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawIssuer {
    /// Name used by routes[].issuers; unique (default: the issuer URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Exact `iss` value (case-sensitive). Required. https, or http for loopback hosts only. May hold {tenantid} (multi-tenant Entra ID; needs tenants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Preset for an identity provider; fills the keys left unset: generic | entra | okta | auth0 | cognito | keycloak | google | authelia (default generic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<RawProvider>,
    /// Other exact `iss` spellings the IdP documents for this issuer (Google: accounts.google.com); may hold {tenantid}.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_aliases: Option<Vec<String>>,
    /// Tenant ids accepted when issuer or an alias holds {tenantid}: the token's tid must be one of them and match its iss. Required then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// OpenID Connect or RFC 8414 metadata URL (default: derived from issuer); its `issuer` must still equal issuer exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// JWKS URL. Omit it (and hmac_secret) for discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Shared HMAC secret, at least 32 bytes; excludes jwks_uri. Printed as <redacted>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<RawSecret>,
    /// Tokens must carry one of these in `aud`; a route's `audiences` replace them (default []).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// enabled | disabled: `disabled` accepts any `aud` on routes that set no audiences (default enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience_check: Option<RawAudienceCheck>,
    /// Algorithm allowlist; "none" is always refused (default: the asymmetric ones, or [HS256] with hmac_secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// Clock-skew allowance for exp and nbf, at most 5m (default 30s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub leeway: Option<Duration>,
    /// Require the RFC 9068 header typ: at+jwt (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_typ_at_jwt: Option<bool>,
    /// Claim compared with audiences, a claim path (default aud; Cognito access tokens: client_id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience_claim: Option<String>,
    /// Claim path(s) holding the client id; the first present wins (default [client_id, azp]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_claim: Option<OneOrMany>,
    /// Claim path(s) holding the scopes, space-separated strings or arrays; all are read (default: scope, else scp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_claim: Option<OneOrMany>,
    /// Claim path(s) holding the roles, for routes[].roles and the `roles` identity header (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<OneOrMany>,
    /// Claim tests every token of this issuer must pass, as in routes[].claims; failing one is 401 invalid_token (e.g. Cognito token_use: access).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_claims: Option<Vec<RawClaimRule>>,
    /// jwt: checked locally | introspection: sent to the introspection endpoint | auto: JWTs locally, opaque tokens introspected (default jwt, or auto with introspection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<RawMode>,
    /// RFC 7662 token introspection for this issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<RawIntrospection>,
}

/// A string or a list of strings (`scope_claim: scp` or `scope_claim: [scp, roles]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawProvider {
    Generic,
    Entra,
    Okta,
    Auth0,
    Cognito,
    Keycloak,
    Google,
    Authelia,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawIntrospectionProtocol {
    Rfc7662,
    GoogleTokeninfo,
}

/// A secret as written in the file or the environment: `Debug` never shows it, so a logged or
/// asserted `RawConfig` cannot leak it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawAudienceCheck {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    Jwt,
    Introspection,
    Auto,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawIntrospection {
    /// Introspection URL, https (http for loopback hosts only). Omit to read it from the issuer's discovery metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The gateway's own client id at the endpoint. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The gateway's own client secret at the endpoint. Required. Printed as <redacted>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<RawSecret>,
    /// client_secret_basic (HTTP Basic) | client_secret_post (form body) (default client_secret_basic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<RawClientAuthMethod>,
    /// rfc7662 | google_tokeninfo: Google's tokeninfo endpoint, which takes no client credentials (default rfc7662).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<RawIntrospectionProtocol>,
    /// Total time for one introspection call (default 3s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub timeout: Option<Duration>,
    /// Active answers are reused for at most this long, never past the token's exp; 0s: no caching (default 60s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub cache_max_ttl: Option<Duration>,
    /// Inactive answers are reused for this long (default 5s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub negative_ttl: Option<Duration>,
    /// Most cached answers (default 100000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_capacity: Option<u64>,
    /// At most about this many bytes of cached answers (default 33554432, 32 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_bytes: Option<usize>,
    /// Introspection calls under way at once (default 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Introspection calls started per second on average (default 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Introspection calls started at most in a burst (default 2 x rate_limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u32>,
    /// After this many consecutive failures the endpoint is not called, 503 at once (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open before one trial call (default 10s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<HumantimeDuration>")]
    pub breaker_open_for: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, [A-Za-z0-9_.-]+, used as the metrics `route` label. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Host to match, without case or trailing dot; with a port only requests for that port match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Matches the path and everything below it at a "/" or ";" boundary; must start with "/". Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Compare path_prefix ignoring ASCII case (default paths.case_insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_insensitive: Option<bool>,
    /// Methods to match, case-sensitive. Omit to match any method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// none: forwarded without a token | required: a valid token is needed (default required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawAuth>,
    /// Ids of the issuers whose tokens this route accepts (default: all). Only with auth: required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Vec<String>>,
    /// Overrides the issuer's audiences for this route. Only with auth: required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// Scopes the token must carry (default []). Only with auth: required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// all: every listed scope | any: at least one (default all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_match: Option<RawScopeMatch>,
    /// Roles the token must carry (read from its issuer's roles_claim) (default []). Only with auth: required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// all: every listed role | any: at least one (default all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_match: Option<RawScopeMatch>,
    /// Claim tests, all must pass. Only with auth: required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<RawClaimRule>>,
    /// Name of the upstream (a key of `upstreams`) this route forwards to (default: `upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

impl RawRoute {
    /// The route used when the file has no `routes` section: everything, token required.
    pub fn default_route() -> Self {
        RawRoute {
            id: Some("default".into()),
            path_prefix: Some("/".into()),
            auth: Some(RawAuth::Required),
            ..RawRoute::default()
        }
    }

    /// `auth` defaults to `required`.
    pub fn requires_auth(&self) -> bool {
        self.auth != Some(RawAuth::None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    None,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawScopeMatch {
    All,
    Any,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawClaimRule {
    /// The claim to test: a name, a dotted path (`realm_access.roles`, `\\.` for a literal dot) or a JSON pointer (`/a~1b`). Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The claim equals this value (a string, number or boolean). Exactly one of equals or contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ClaimValue>")]
    pub equals: Option<serde_json::Value>,
    /// The claim is an array holding this value, or a space-separated string holding this word. Exactly one of equals or contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ClaimValue>")]
    pub contains: Option<serde_json::Value>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawIdentity {
    /// Header name → source: subject | scopes | roles | client_id | issuer | claim:<path> | client_cert_subject | client_cert_sha256 (from the verified TLS client certificate). `{}` sends none (default: X-Auth-Subject, X-Auth-Scopes, X-Auth-Client-Id, X-Auth-Issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderMapping>,
    /// Optional header carrying all verified claims as base64url(JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_header: Option<String>,
    /// Forward the client's Authorization header upstream (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_authorization: Option<bool>,
}

/// `identity.headers`: a YAML mapping kept in file order (header name → source).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeaderMapping(pub Vec<(String, String)>);

impl Serialize for HeaderMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, source) in &self.0 {
            map.serialize_entry(name, source)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for HeaderMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderMapping;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a mapping of header name to source (subject, scopes, roles, client_id, issuer, claim:<path>)",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMapping, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((name, source)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                        return Err(de::Error::custom(format!(
                            "header `{name}` is listed twice (header names are case-insensitive)"
                        )));
                    }
                    out.push((name, source));
                }
                Ok(HeaderMapping(out))
            }
        }
        d.deserialize_map(V)
    }
}

//! Validated, typed configuration. Everything the request path reads is parsed here once, at load
//! time: the hot path never looks at a string it could have parsed earlier.
//!
//! `load` is the only way in: YAML file (optional) → `${ENV}` substitution → env overrides
//! (`TOKENGATE_*`) → validation. Errors name the file, line and field, and say what is wrong.

mod claim_path;
pub mod env;
mod env_keys;
mod locate;
mod paths;
pub mod print;
pub mod provider;
pub mod raw;
mod resource;
mod schema;
mod secret_file;
mod subst;
mod upstream;
pub mod validate;
mod warnings;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method};
use jsonwebtoken::Algorithm;

pub use claim_path::{words, ClaimPath};
pub use print::render_effective;
pub use schema::schema;
pub use upstream::{ClientIdentity, UpstreamProtocol, UpstreamSettings, UpstreamTls, WrittenTls};
pub use validate::{load, load_text, ConfigError, Origin, Sources};
pub use warnings::warnings;

/// The algorithms an issuer accepts when its config names none: the asymmetric ones only
/// (RFC 8725 §3.1: an explicit allowlist; HMAC only when a shared secret is configured).
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_REALM: &str = "tokengate";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The proxy listener; TLS when `tls` is set.
    pub listen: SocketAddr,
    /// A cleartext proxy listener beside the TLS one (`plain_listen`); only with `tls`.
    pub plain_listen: Option<SocketAddr>,
    /// TLS on the proxy listener (`tls:`), when configured.
    pub tls: Option<TlsSettings>,
    pub admin_listen: SocketAddr,
    /// `realm` attribute of every `WWW-Authenticate` challenge.
    pub realm: String,
    pub server: ServerSettings,
    /// `None` only when the decision service runs alone (no proxy listener).
    pub upstream: Option<UpstreamSettings>,
    /// `upstreams`: more upstreams by name, for routes that name one.
    pub upstreams: Vec<(String, UpstreamSettings)>,
    pub tokens: TokenSettings,
    pub jwks: JwksSettings,
    pub token_cache: TokenCacheSettings,
    /// At least one. A token's `iss` selects among them.
    pub issuers: Vec<Issuer>,
    /// How request paths are canonicalised and matched (`crate::canon`).
    pub paths: PathSettings,
    /// At least one; first match wins; no match → 404.
    pub routes: Vec<Route>,
    pub identity: Identity,
    /// RFC 9728 protected resource metadata, when configured.
    pub protected_resource: Option<ProtectedResource>,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are kept (default none: the gateway
    /// is the first trusted hop and writes its own).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The decision service, when `decision.listen` is set.
    pub decision: Option<DecisionSettings>,
    pub access_log: AccessLogSettings,
}

impl Config {
    /// The proxy listener runs: some upstream is configured.
    pub fn proxies(&self) -> bool {
        self.upstream.is_some() || !self.upstreams.is_empty()
    }

    /// The default upstream's settings (`None`), or the named one's.
    pub fn upstream_settings(&self, name: Option<&str>) -> Option<&UpstreamSettings> {
        match name {
            None => self.upstream.as_ref(),
            Some(name) => self.upstreams.iter().find(|(n, _)| n == name).map(|(_, s)| s),
        }
    }
}

/// `tls:`: the proxy listener's certificates and client-certificate settings. Only paths: the
/// files are read (and checked) at load and re-read by `crate::tls` when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// At least one; the first is the default for clients whose SNI matches none.
    pub certificates: Vec<CertificatePaths>,
    /// PEM file of the CAs client certificates must chain to.
    pub client_ca: Option<std::path::PathBuf>,
    /// `Some` exactly when `client_ca` is set (default `Required`).
    pub client_auth: Option<ClientAuth>,
}

/// One certificate chain (leaf first) and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Whether a client must present a certificate (`tls.client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no handshake.
    Required,
    /// A client may present none; one it presents must verify.
    Optional,
}

/// `access_log:`: one line per request at info level (`crate::telemetry::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Default true.
    pub enabled: bool,
    /// Log `subject` and `client_id` (default true); when false both are logged as null, for
    /// sites that must not keep who called.
    pub subjects: bool,
    /// Log the query string, without any `access_token` (default false).
    pub query: bool,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings { enabled: true, subjects: true, query: false }
    }
}

/// `decision:`: the listener where an ingress (nginx `auth_request`, Traefik ForwardAuth, Envoy
/// `ext_authz`) asks whether a request it holds may pass (`crate::decision`).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSettings {
    pub listen: SocketAddr,
    /// Peers whose description of the original request is believed (default: loopback only).
    /// A list of its own: the proxy's `trusted_proxies` say something else.
    pub trusted_peers: Vec<ipnet::IpNet>,
}

/// `paths:`: what the canonical path keeps and how routes compare it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathSettings {
    /// Keep `%2F`/`%5C` in paths (they count as separators for matching); default: refuse them.
    pub keep_encoded_slashes: bool,
    /// Default of `routes[].case_insensitive`.
    pub case_insensitive: bool,
}

/// RFC 9728: what the gateway tells clients about the resource it protects, served at the
/// well-known URL derived from `resource` and advertised in every `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedResource {
    /// The resource identifier (RFC 9728 §1.2: an https URL without fragment).
    pub resource: String,
    /// Path of the metadata document on the proxy listener (RFC 9728 §3.1).
    pub metadata_path: String,
    /// Absolute URL of the metadata document, for the `resource_metadata` challenge attribute.
    pub metadata_url: String,
    /// Issuer URLs of the authorization servers clients may use (default: every issuer).
    pub authorization_servers: Vec<String>,
    /// Default: every scope some route requires.
    pub scopes_supported: Vec<String>,
    pub resource_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Slowloris guard: a client must send its request head within this time (default 10 s).
    pub header_read_timeout: Duration,
    /// After SIGTERM, how long the listeners keep accepting while `/readyz` says 503, so that
    /// load balancers and Kubernetes endpoints stop sending before connections are refused
    /// (default 5 s). SIGINT (a terminal's Ctrl-C) skips it.
    pub drain_delay: Duration,
    /// How long in-flight requests may take to finish once the listeners stop accepting
    /// (default 20 s; with the drain delay, 25 s of Kubernetes' default 30 s grace period).
    pub shutdown_grace: Duration,
    /// Cap on the request head (default 64 KiB); larger heads are refused by hyper.
    pub max_header_bytes: usize,
    /// Tokio worker threads; `None` = one per core.
    pub worker_threads: Option<usize>,
    /// Client connections served at once, per listener (default 10 000); one more is answered
    /// 503 and closed.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (default 60 s). HTTP/2 gets
    /// a GOAWAY; an idle HTTP/1.1 keep-alive connection is already closed by the header-read
    /// timer, which is never longer.
    pub idle_timeout: Duration,
    /// Reading a form body for its `access_token` must finish within this (default 10 s).
    pub body_read_timeout: Duration,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of each HTTP/2 connection (default 100).
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 PING sent after this long without a frame from the client (default 30 s) …
    pub http2_keep_alive_interval: Duration,
    /// … and the connection closed when it is not answered within this (default 10 s).
    pub http2_keep_alive_timeout: Duration,
    /// A tunnel (a WebSocket or other `Upgrade` after its 101) with no byte in either direction
    /// for this long is closed, both sides (default 5 min).
    pub tunnel_idle_timeout: Duration,
}

/// Where a bearer token may come from (RFC 6750 §2). Only the header by default.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSettings {
    /// `access_token` query parameter (RFC 6750 §2.3). Default off.
    pub allow_query: bool,
    /// `access_token` in an `application/x-www-form-urlencoded` body (RFC 6750 §2.2). Default off.
    pub allow_form_body: bool,
    /// Longer tokens are refused without being parsed (default 16 KiB).
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksSettings {
    /// Bounds applied to the JWKS response's `Cache-Control: max-age` (defaults 60 s / 1 h).
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Refresh interval when the response carries no usable max-age (default 5 min).
    pub default_refresh: Duration,
    /// At most one refetch per issuer per cooldown on an unknown `kid` (default 30 s).
    pub unknown_kid_cooldown: Duration,
    /// Total time for one JWKS or discovery fetch (default 5 s).
    pub fetch_timeout: Duration,
    /// Larger JWKS or discovery documents are refused (default 256 KiB).
    pub max_response_bytes: usize,
}

/// The verified-token cache (`crate::auth::token_cache`): a JWT that validated once is admitted
/// again by one lookup until its `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCacheSettings {
    /// Default true.
    pub enabled: bool,
    /// At most this many tokens are remembered (default 100 000).
    pub max_entries: usize,
    /// … and at most about this many bytes of verified claims (default 64 MiB).
    pub max_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Issuer {
    /// The name routes use in `issuers:` (default: the issuer URL). Unique.
    pub id: String,
    /// Exact `iss` value (RFC 7519 §4.1.1: compared as a case-sensitive string), or a template
    /// holding `{tenantid}` (multi-tenant Entra ID; see `tenants`).
    pub issuer: String,
    /// Which IdP's preset filled the unset settings (`crate::config::provider`).
    pub provider: Provider,
    /// Other exact `iss` spellings the IdP documents for the same issuer (Google's
    /// `accounts.google.com`); templates allowed as in `issuer`.
    pub aliases: Vec<String>,
    /// Tenant ids accepted where `issuer` or an alias is a template: the token's `tid` must be
    /// one of them and equal the tenant in its `iss`. Never empty when a template is configured.
    pub tenants: Vec<String>,
    /// Explicit metadata document URL; `None` = derived from `issuer`.
    pub discovery_url: Option<String>,
    pub keys: KeySource,
    /// Tokens must carry one of these in `aud` (a route's `audiences` replace them). Empty only
    /// when every route accepting this issuer names its own, or `audience_check` is `Disabled`.
    pub audiences: Vec<String>,
    /// `Disabled` is the operator's explicit opt-out: with no audiences from the route either,
    /// any `aud` is accepted. Never implied by an empty list.
    pub audience_check: AudienceCheck,
    /// Algorithm allowlist (RFC 8725 §3.1). Never contains `none`; HMAC only with `KeySource::Secret`.
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Duration,
    /// Require the RFC 9068 header `typ: at+jwt`.
    pub require_at_jwt: bool,
    /// Where audience, client id, scopes and roles are read in this issuer's tokens.
    pub sources: ClaimSources,
    /// Every token of this issuer must pass these (e.g. Cognito's `token_use: access`), or it
    /// is not an access token of this issuer: 401 invalid_token.
    pub required_claims: Vec<ClaimRule>,
    /// How this issuer's tokens are validated.
    pub mode: TokenMode,
    /// RFC 7662 token introspection; `Some` exactly when `mode` is `Introspection` or `Auto`.
    pub introspection: Option<Introspection>,
}

impl Issuer {
    /// A JWT issuer with every default the config file would give it: id = issuer URL, no
    /// audience (so routes must name theirs, or tokens are refused), the asymmetric algorithms,
    /// 30 s leeway, `typ` not required, no introspection.
    pub fn new(issuer: &str, keys: KeySource) -> Issuer {
        Issuer {
            id: issuer.to_owned(),
            issuer: issuer.to_owned(),
            provider: Provider::Generic,
            aliases: Vec::new(),
            tenants: Vec::new(),
            discovery_url: None,
            keys,
            audiences: Vec::new(),
            audience_check: AudienceCheck::Enabled,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: DEFAULT_LEEWAY,
            require_at_jwt: false,
            sources: ClaimSources::default(),
            required_claims: Vec::new(),
            mode: TokenMode::Jwt,
            introspection: None,
        }
    }
}

/// The identity provider an issuer's preset came from (`issuers[].provider`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Provider {
    #[default]
    Generic,
    Entra,
    Okta,
    Auth0,
    Cognito,
    Keycloak,
    Google,
    Authelia,
}

/// Where an issuer's tokens carry what a `Principal` is made of. Empty lists and `None` mean
/// the standard claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimSources {
    /// Compared with the audiences; `None` = `aud` (Cognito access tokens have none: `client_id`).
    pub audience: Option<ClaimPath>,
    /// First one present wins; empty = `client_id`, then `azp`.
    pub client_id: Vec<ClaimPath>,
    /// Union of all; empty = `scope` (space-delimited), else `scp` (string or array).
    pub scopes: Vec<ClaimPath>,
    /// Union of all; empty = no roles.
    pub roles: Vec<ClaimPath>,
}

/// Whether a token's `aud` must name this API (RFC 9068 §4, RFC 8725 §3.9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AudienceCheck {
    /// The default: a route's or the issuer's audiences are always checked.
    #[default]
    Enabled,
    /// `audience_check: disabled`: reported by `check-config` and at start.
    Disabled,
}

/// How an issuer's tokens are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    /// JWTs validated locally against the issuer's keys (the default without `introspection`).
    Jwt,
    /// Every token is introspected (RFC 7662); the issuer has no key set (`KeySource::None`).
    Introspection,
    /// JWTs naming this issuer are validated locally, opaque tokens are introspected (the
    /// default with `introspection`).
    Auto,
}

/// RFC 7662 introspection settings of one issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    /// The introspection endpoint; `None` = `introspection_endpoint` from the issuer's metadata.
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    /// How the gateway authenticates to the endpoint (RFC 6749 §2.3.1).
    pub auth_method: ClientAuthMethod,
    /// What the endpoint speaks.
    pub protocol: IntrospectionProtocol,
    /// Total time for one introspection call (default 3 s).
    pub timeout: Duration,
    /// Upper bound on how long an active answer is reused; never past the token's `exp` (default 60 s).
    pub cache_max_ttl: Duration,
    /// How long an inactive answer is reused (default 5 s).
    pub negative_ttl: Duration,
    /// Most cached answers (default 100 000).
    pub cache_capacity: u64,
    /// … and at most about this many bytes of cached answers (default 32 MiB).
    pub cache_max_bytes: usize,
    /// Calls under way at once; a miss beyond it waits briefly for a slot, then gets 503
    /// (default 64).
    pub max_concurrent: usize,
    /// Calls started per second, on average (token bucket; default 200).
    pub rate_limit: f64,
    /// … and in a burst (the bucket's size; default two seconds of `rate_limit`).
    pub rate_burst: u32,
    /// Consecutive failures that open the circuit breaker (default 5).
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one trial call (default 10 s).
    pub breaker_open_for: Duration,
}

/// The kind of endpoint that vouches for opaque tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntrospectionProtocol {
    /// RFC 7662 token introspection.
    #[default]
    Rfc7662,
    /// Google's tokeninfo endpoint: no client authentication; 200 with the token's claims for a
    /// valid token, 400 for any other.
    GoogleTokeninfo,
}

/// Client authentication at the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// A configured JWKS URL.
    JwksUri(String),
    /// `{issuer}/.well-known/openid-configuration`, falling back to RFC 8414 metadata.
    Discovery,
    /// A shared HMAC secret: the issuer then accepts only HS256/384/512.
    Secret(Secret),
    /// No keys: an introspection-only issuer validates nothing locally.
    None,
}

/// Bytes that must never be printed: `Debug` and `Display` redact them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Stable name used as the metrics `route` label.
    pub id: String,
    /// Canonical host name (lower-case, no trailing dot, no port); `None` matches any host.
    pub host: Option<String>,
    /// The port the request must be for, when the route's host names one.
    pub port: Option<u16>,
    /// Matches the path itself and everything below it at a `/` boundary
    /// (`/api` matches `/api`, `/api/x` and `/api;p`, not `/apix`); a prefix ending in `/`
    /// matches as written. Compared with the decoded canonical path (`crate::canon`).
    pub path_prefix: String,
    /// Compare the prefix ignoring ASCII case, for upstreams that route that way (ASP.NET, IIS).
    pub case_insensitive: bool,
    /// `None` matches any method.
    pub methods: Option<Vec<Method>>,
    pub auth: RouteAuth,
    /// The name of the upstream (one of `Config::upstreams`); `None`: the default `upstream`.
    pub upstream: Option<String>,
}

impl Route {
    /// A route on any host and method, compared case-sensitively (what the config file gives
    /// when only `id`, `path_prefix` and `auth` are written).
    pub fn new(id: &str, path_prefix: &str, auth: RouteAuth) -> Route {
        Route {
            id: id.to_owned(),
            host: None,
            port: None,
            path_prefix: path_prefix.to_owned(),
            case_insensitive: false,
            methods: None,
            auth,
            upstream: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteAuth {
    /// `auth: none`: forwarded without a token (identity headers are still stripped).
    Public,
    /// `auth: required`.
    Required(Policy),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Indices into `Config::issuers` of the issuers whose tokens this route accepts (`issuers:`
    /// ids resolved at load time); `None` = every issuer.
    pub issuers: Option<Vec<usize>>,
    /// Overrides the issuer's audiences for this route when set.
    pub audiences: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub scope_match: ScopeMatch,
    /// Roles the token must carry (its issuer's `roles_claim`), as `roles_match` says.
    pub roles: Vec<String>,
    pub roles_match: ScopeMatch,
    pub claims: Vec<ClaimRule>,
}

impl Policy {
    /// Does this route take tokens from issuer number `issuer`?
    pub fn accepts_issuer(&self, issuer: usize) -> bool {
        self.issuers.as_ref().is_none_or(|list| list.contains(&issuer))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScopeMatch {
    #[default]
    All,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    pub claim: ClaimPath,
    pub test: ClaimTest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    /// The claim equals this JSON value.
    Equals(serde_json::Value),
    /// The claim is an array holding this value, or a space-delimited string holding this word.
    Contains(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub headers: Vec<IdentityHeader>,
    /// Optional header carrying all verified claims as base64url(JSON).
    pub claims_header: Option<HeaderName>,
    /// Forward the client's `Authorization` header upstream (default true).
    pub forward_authorization: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeader {
    pub name: HeaderName,
    pub value: IdentityValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityValue {
    /// `sub`
    Subject,
    /// The token's scopes, space-separated.
    Scopes,
    /// `client_id`, else `azp`.
    ClientId,
    /// `iss`
    Issuer,
    /// The token's roles, space-separated.
    Roles,
    /// Any claim: strings as-is, arrays of strings joined with `,`, anything else as JSON text.
    Claim(ClaimPath),
    /// The verified TLS client certificate's subject, RFC 4514 (`client_cert_subject`); from
    /// the connection, not the token: set with no token too, absent without a certificate.
    ClientCertSubject,
    /// Its SHA-256 thumbprint, base64url without padding, RFC 8705 `x5t#S256`
    /// (`client_cert_sha256`).
    ClientCertSha256,
}

impl IdentityValue {
    /// Read from the TLS connection rather than from the token.
    pub fn is_client_cert(&self) -> bool {
        matches!(self, IdentityValue::ClientCertSubject | IdentityValue::ClientCertSha256)
    }
}

impl Identity {
    /// The default mapping: `X-Auth-Subject`, `X-Auth-Scopes`, `X-Auth-Client-Id`, `X-Auth-Issuer`.
    pub fn default_headers() -> Vec<IdentityHeader> {
        [
            ("x-auth-subject", IdentityValue::Subject),
            ("x-auth-scopes", IdentityValue::Scopes),
            ("x-auth-client-id", IdentityValue::ClientId),
            ("x-auth-issuer", IdentityValue::Issuer),
        ]
        .into_iter()
        .map(|(name, value)| IdentityHeader { name: HeaderName::from_static(name), value })
        .collect()
    }
}

//! Sources → `RawConfig` → `Config`: read, substitute, parse, apply env, validate. Every rule that
//! can be checked before binding a socket is checked here, and every error names the field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, Method, Uri};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::env::{self, Provenance};
use super::raw::{self, RawAuth, RawClientAuthMethod, RawConfig, RawMode, RawScopeMatch};
use super::{
    ClaimRule, ClaimTest, ClientAuthMethod, Config, Identity, IdentityHeader, IdentityValue, Introspection, Issuer,
    JwksSettings, KeySource, Policy, Route, RouteAuth, ScopeMatch, Secret, ServerSettings, TokenCacheSettings,
    TokenMode, TokenSettings, UpstreamSettings, DEFAULT_ADMIN_LISTEN, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_LISTEN, DEFAULT_REALM,
};

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper refuses (panics on) a smaller HTTP/1 read buffer.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 64;
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_DEFAULT_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;
pub const DEFAULT_TOKEN_CACHE_MAX_ENTRIES: usize = 100_000;
pub const DEFAULT_TOKEN_CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// RFC 7518 §3.2: an HMAC key at least as long as the hash output (256 bits for HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
pub const DEFAULT_INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_INTROSPECTION_CACHE_MAX_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_INTROSPECTION_NEGATIVE_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_INTROSPECTION_CACHE_CAPACITY: u64 = 100_000;
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);

/// Headers an identity mapping may never set: hop-by-hop (RFC 9110 §7.6.1) and framing or
/// credential headers the proxy itself owns.
const FORBIDDEN_IDENTITY_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "cookie",
    "www-authenticate",
];

/// Where configuration comes from. Tests build one by hand; `main` fills it from the process.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The YAML file given with `--config`, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (only `TOKENGATE_*` and those named by `${…}` are read).
    pub env: HashMap<String, String>,
}

/// What supplied a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// A `TOKENGATE_*` variable.
    Env(String),
    /// Neither: a required value is missing and there is no file.
    Defaults,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax or type error, unknown key, or failed `${…}` substitution.
    #[error("{}", fmt_parse(file, *location, field.as_deref(), message))]
    Parse {
        file: PathBuf,
        /// 1-based line and column, when the parser knows them.
        location: Option<(usize, usize)>,
        /// Key path such as `routes[1].scopes`, when known.
        field: Option<String>,
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{}", fmt_invalid(origin, field, message))]
    Invalid { origin: Origin, field: String, message: String },
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } => Some(field),
        }
    }
}

fn fmt_parse(file: &Path, location: Option<(usize, usize)>, field: Option<&str>, message: &str) -> String {
    let mut s = file.display().to_string();
    if let Some((line, column)) = location {
        s += &format!(":{line}:{column}");
    }
    if let Some(field) = field {
        s += &format!(": {field}");
    }
    format!("{s}: {message}")
}

fn fmt_invalid(origin: &Origin, field: &str, message: &str) -> String {
    match origin {
        Origin::File(path) => format!("{}: {field}: {message}", path.display()),
        Origin::Env(var) => format!("{var}: {field}: {message}"),
        Origin::Defaults => format!("{field}: {message}"),
    }
}

/// Reads, substitutes, parses, applies env overrides and validates. Never reads the process env.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    match &sources.file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            load_text(path, &text, &sources.env)
        }
        None => finish(RawConfig::default(), None, &sources.env),
    }
}

/// `load` for a config whose text is already in memory (the bundled demo config); `name` is
/// used in error messages.
pub fn load_text(name: &Path, text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    finish(parse_file(name, text, env)?, Some(name), env)
}

fn finish(mut raw: RawConfig, file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut prov = Provenance::default();
    env::apply(&mut raw, env, &mut prov)?;
    let ctx = Ctx { file, prov: &prov };
    validate(raw, &ctx)
}

/// `${…}` substitution then YAML parsing; `file` is only used in error messages.
pub fn parse_file(file: &Path, text: &str, env: &HashMap<String, String>) -> Result<RawConfig, ConfigError> {
    let text = env::substitute(text, env).map_err(|e| ConfigError::Parse {
        file: file.to_path_buf(),
        location: Some((e.line, e.column)),
        field: None,
        message: e.message,
    })?;
    serde_norway::from_str(&text).map_err(|e| yaml_error(file, &e))
}

/// serde_norway says `routes[1]: unknown field `x`, expected … at line 5 column 5`; split that into
/// position, key path and message.
fn yaml_error(file: &Path, e: &serde_norway::Error) -> ConfigError {
    let location = e.location().map(|l| (l.line(), l.column()));
    let mut message = e.to_string();
    if let Some((line, column)) = location {
        message = message.replace(&format!(" at line {line} column {column}"), "");
    }
    let mut field = None;
    if let Some((path, rest)) = message.split_once(": ") {
        if !path.is_empty() && !path.contains(char::is_whitespace) {
            field = Some(path.to_string());
            message = rest.to_string();
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once('`') {
            field = Some(match field {
                Some(parent) => format!("{parent}.{name}"),
                None => name.to_string(),
            });
            message = format!("unknown field{}", expected.replacen(", expected", "; expected", 1));
        }
    }
    if let Some(start) = message.find("struct Raw") {
        let end = message[start + 7..].find(|c: char| !c.is_alphanumeric()).map_or(message.len(), |e| start + 7 + e);
        message.replace_range(start..end, "a mapping");
    }
    ConfigError::Parse { file: file.to_path_buf(), location, field, message }
}

pub(super) struct Ctx<'a> {
    file: Option<&'a Path>,
    prov: &'a Provenance,
}

impl Ctx<'_> {
    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let field = field.into();
        let origin = match (self.prov.lookup(&field), self.file) {
            (Some(var), _) => Origin::Env(var.to_string()),
            (None, Some(file)) => Origin::File(file.to_path_buf()),
            (None, None) => Origin::Defaults,
        };
        ConfigError::Invalid { origin, field, message: message.into() }
    }
}

fn validate(raw: RawConfig, ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let listen = socket_addr(ctx, "listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let admin_listen = socket_addr(ctx, "admin_listen", raw.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN))?;
    let overlap = listen.port() == admin_listen.port()
        && listen.port() != 0
        && (listen.ip() == admin_listen.ip() || listen.ip().is_unspecified() || admin_listen.ip().is_unspecified());
    if overlap {
        return Err(ctx.err(
            "admin_listen",
            format!("{admin_listen} overlaps listen ({listen}); the admin listener needs its own port"),
        ));
    }
    let realm = raw.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
    if realm.is_empty() || realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(ctx.err(
            "realm",
            "must be non-empty and contain no '\"', '\\' or control characters (it is sent as a \
             quoted-string in WWW-Authenticate)",
        ));
    }
    // Validated in file order, so the first error reported is the first one in the file.
    let server = server(ctx, raw.server.unwrap_or_default())?;
    let upstream = upstream(ctx, raw.upstream.unwrap_or_default())?;
    let tokens = tokens(ctx, raw.tokens.unwrap_or_default())?;
    let jwks = jwks(ctx, raw.jwks.unwrap_or_default())?;
    let token_cache = token_cache(ctx, raw.token_cache.unwrap_or_default())?;
    let issuers = issuers(ctx, raw.issuers.unwrap_or_default())?;
    let routes = routes(ctx, raw.routes)?;
    let identity = identity(ctx, raw.identity.unwrap_or_default())?;
    let protected_resource = match raw.protected_resource {
        Some(r) => Some(super::resource::protected_resource(ctx, r, &issuers, &routes)?),
        None => None,
    };
    Ok(Config {
        listen,
        admin_listen,
        realm,
        server,
        upstream,
        tokens,
        jwks,
        token_cache,
        issuers,
        routes,
        identity,
        protected_resource,
    })
}

fn socket_addr(ctx: &Ctx<'_>, field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ctx.err(field, format!("{value:?} is not a socket address; expected ip:port such as 0.0.0.0:8080 or [::]:8080"))
    })
}

fn positive(ctx: &Ctx<'_>, field: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ctx.err(field, "must be greater than zero"));
    }
    Ok(d)
}

fn nonzero(ctx: &Ctx<'_>, field: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        return Err(ctx.err(field, "must be greater than zero"));
    }
    Ok(n)
}

fn server(ctx: &Ctx<'_>, raw: raw::RawServer) -> Result<ServerSettings, ConfigError> {
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if max_header_bytes < MIN_MAX_HEADER_BYTES {
        return Err(ctx.err(
            "server.max_header_bytes",
            format!("is {max_header_bytes}; expected at least {MIN_MAX_HEADER_BYTES} (hyper's smallest read buffer)"),
        ));
    }
    if raw.worker_threads == Some(0) {
        return Err(ctx.err("server.worker_threads", "must be at least 1, or null for one per core"));
    }
    Ok(ServerSettings {
        header_read_timeout: positive(
            ctx,
            "server.header_read_timeout",
            raw.header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        )?,
        shutdown_grace: raw.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_header_bytes,
        worker_threads: raw.worker_threads,
    })
}

fn upstream(ctx: &Ctx<'_>, raw: raw::RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    const FIELD: &str = "upstream.url";
    let Some(url) = raw.url else {
        return Err(ctx.err(
            FIELD,
            format!(
                "is required: set upstream.url in the config file or {} (e.g. http://127.0.0.1:8081)",
                env::UPSTREAM
            ),
        ));
    };
    let bad = |what: &str| ctx.err(FIELD, format!("{url:?} {what}; expected http://host:port with no path or query"));
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("must use the http scheme (the upstream is a plain-HTTP local service)"));
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("must not contain user info"));
    }
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    if uri.path() != "/" {
        return Err(bad("has a path"));
    }
    if uri.query().is_some() {
        return Err(bad("has a query"));
    }
    let uri = format!("http://{authority}").parse().map_err(|_| bad("is not a URL"))?;
    Ok(UpstreamSettings {
        uri,
        connect_timeout: positive(
            ctx,
            "upstream.connect_timeout",
            raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        )?,
        response_timeout: positive(
            ctx,
            "upstream.response_timeout",
            raw.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
        )?,
        pool_idle_timeout: raw.pool_idle_timeout.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
    })
}

fn tokens(ctx: &Ctx<'_>, raw: raw::RawTokens) -> Result<TokenSettings, ConfigError> {
    Ok(TokenSettings {
        allow_query: raw.query.unwrap_or(false),
        allow_form_body: raw.form_body.unwrap_or(false),
        max_token_bytes: nonzero(ctx, "tokens.max_bytes", raw.max_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES))?,
    })
}

fn jwks(ctx: &Ctx<'_>, raw: raw::RawJwks) -> Result<JwksSettings, ConfigError> {
    let min = positive(ctx, "jwks.min_refresh", raw.min_refresh.unwrap_or(DEFAULT_MIN_REFRESH))?;
    let max = raw.max_refresh.unwrap_or(DEFAULT_MAX_REFRESH);
    let default = raw.default_refresh.unwrap_or(DEFAULT_DEFAULT_REFRESH);
    let h = |d: Duration| humantime::format_duration(d).to_string();
    if min > max {
        return Err(ctx.err(
            "jwks.min_refresh",
            format!("is {} but jwks.max_refresh is {}; expected min_refresh <= max_refresh", h(min), h(max)),
        ));
    }
    if default < min || default > max {
        return Err(ctx.err(
            "jwks.default_refresh",
            format!(
                "is {}; expected a value between jwks.min_refresh ({}) and jwks.max_refresh ({})",
                h(default),
                h(min),
                h(max)
            ),
        ));
    }
    Ok(JwksSettings {
        min_refresh: min,
        max_refresh: max,
        default_refresh: default,
        unknown_kid_cooldown: raw.unknown_kid_cooldown.unwrap_or(DEFAULT_UNKNOWN_KID_COOLDOWN),
        fetch_timeout: positive(ctx, "jwks.fetch_timeout", raw.fetch_timeout.unwrap_or(DEFAULT_FETCH_TIMEOUT))?,
        max_response_bytes: nonzero(
            ctx,
            "jwks.max_response_bytes",
            raw.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        )?,
    })
}

fn token_cache(ctx: &Ctx<'_>, raw: raw::RawTokenCache) -> Result<TokenCacheSettings, ConfigError> {
    Ok(TokenCacheSettings {
        enabled: raw.enabled.unwrap_or(true),
        max_entries: nonzero(
            ctx,
            "token_cache.max_entries",
            raw.max_entries.unwrap_or(DEFAULT_TOKEN_CACHE_MAX_ENTRIES),
        )?,
        max_bytes: nonzero(ctx, "token_cache.max_bytes", raw.max_bytes.unwrap_or(DEFAULT_TOKEN_CACHE_MAX_BYTES))?,
    })
}

/// https, or http to a loopback host (127.0.0.0/8, ::1, localhost); no user info.
pub(super) fn check_idp_url(ctx: &Ctx<'_>, field: &str, url: &str) -> Result<Uri, ConfigError> {
    let bad = |what: &str| ctx.err(field, format!("{url:?} {what}"));
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL; expected https://host/..."))?;
    let Some(authority) = uri.authority() else {
        return Err(bad("is not an absolute URL; expected https://host/..."));
    };
    if authority.as_str().contains('@') {
        return Err(bad("must not contain user info"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(authority.host()) => Ok(uri),
        Some("http") => {
            Err(bad("must use https (http is only allowed for loopback hosts: 127.0.0.0/8, ::1, localhost)"))
        }
        _ => Err(bad("must be an https URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn issuers(ctx: &Ctx<'_>, raw: Vec<raw::RawIssuer>) -> Result<Vec<Issuer>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.err(
            "issuers",
            format!("at least one issuer is required: add issuers: to the config file or set {}", env::ISSUER),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("issuers[{i}].{name}");
        let Some(issuer) = r.issuer else {
            return Err(ctx.err(f("issuer"), "is required: the exact `iss` value of the tokens"));
        };
        let uri = check_idp_url(ctx, &f("issuer"), &issuer)?;
        if uri.query().is_some() {
            return Err(ctx.err(f("issuer"), format!("{issuer:?} must not contain a query (RFC 8414 §2)")));
        }
        if let Some(j) = seen.insert(issuer.clone(), i) {
            return Err(ctx.err(f("issuer"), format!("{issuer:?} is already configured as issuers[{j}].issuer")));
        }
        let introspection = match r.introspection {
            Some(raw) => Some(introspection(ctx, &f("introspection"), raw)?),
            None => None,
        };
        let mode = match (r.mode, introspection.is_some()) {
            (None | Some(RawMode::Jwt), false) => TokenMode::Jwt,
            (None | Some(RawMode::Auto), true) => TokenMode::Auto,
            (Some(RawMode::Introspection), true) => TokenMode::Introspection,
            (Some(RawMode::Jwt), true) => {
                return Err(ctx.err(
                    f("introspection"),
                    "is only used with mode: introspection or auto (this issuer has mode: jwt); remove one of them",
                ))
            }
            (Some(m @ (RawMode::Introspection | RawMode::Auto)), false) => {
                let m = if m == RawMode::Auto { "auto" } else { "introspection" };
                return Err(ctx.err(
                    f("introspection"),
                    format!("is required with mode: {m}: set at least introspection.client_id and client_secret"),
                ));
            }
        };
        let keys = if mode == TokenMode::Introspection {
            let local_only = [
                ("jwks_uri", r.jwks_uri.is_some()),
                ("hmac_secret", r.hmac_secret.is_some()),
                ("algorithms", r.algorithms.is_some()),
                ("require_typ_at_jwt", r.require_typ_at_jwt.is_some()),
            ];
            if let Some((name, _)) = local_only.iter().find(|(_, set)| *set) {
                return Err(ctx.err(
                    f(name),
                    "only applies to locally validated JWTs; an issuer with mode: introspection has no keys \
                     (use mode: auto to accept both)",
                ));
            }
            KeySource::None
        } else {
            key_source(ctx, i, r.jwks_uri, r.hmac_secret)?
        };
        let hmac = matches!(keys, KeySource::Secret(_));
        let algorithms = match keys {
            // Nothing is verified locally, so no algorithm is accepted.
            KeySource::None => Vec::new(),
            _ => algorithms(ctx, &f("algorithms"), r.algorithms, hmac)?,
        };
        let audiences = r.audiences.unwrap_or_default();
        non_empty_strings(ctx, &f("audiences"), &audiences)?;
        let leeway = r.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            return Err(ctx.err(f("leeway"), format!("is {}; expected at most 5m", humantime::format_duration(leeway))));
        }
        if r.scope_claim.as_deref() == Some("") {
            return Err(ctx.err(f("scope_claim"), "must not be empty; omit it to read `scope` then `scp`"));
        }
        out.push(Issuer {
            issuer,
            keys,
            audiences: dedup(audiences),
            algorithms,
            leeway,
            require_at_jwt: r.require_typ_at_jwt.unwrap_or(false),
            scope_claim: r.scope_claim,
            mode,
            introspection,
        });
    }
    Ok(out)
}

/// Where issuer `i` (mode jwt or auto) gets its keys: `jwks_uri`, `hmac_secret` or discovery.
fn key_source(
    ctx: &Ctx<'_>,
    i: usize,
    jwks_uri: Option<String>,
    hmac_secret: Option<String>,
) -> Result<KeySource, ConfigError> {
    let f = |name: &str| format!("issuers[{i}].{name}");
    match (jwks_uri, hmac_secret) {
        (Some(_), Some(_)) => Err(ctx.err(
            f("jwks_uri"),
            "cannot be combined with hmac_secret: an issuer uses either a shared HMAC secret or public keys",
        )),
        (Some(uri), None) => {
            check_idp_url(ctx, &f("jwks_uri"), &uri)?;
            Ok(KeySource::JwksUri(uri))
        }
        (None, Some(secret)) => {
            if secret.len() < MIN_HMAC_SECRET_BYTES {
                return Err(ctx.err(
                    f("hmac_secret"),
                    format!(
                        "is {} bytes; expected at least {MIN_HMAC_SECRET_BYTES} bytes (RFC 7518 §3.2)",
                        secret.len()
                    ),
                ));
            }
            Ok(KeySource::Secret(Secret(secret.into_bytes())))
        }
        (None, None) => Ok(KeySource::Discovery),
    }
}

/// `issuers[i].introspection` (`field`): credentials required, defaults filled in.
fn introspection(ctx: &Ctx<'_>, field: &str, raw: raw::RawIntrospection) -> Result<Introspection, ConfigError> {
    let f = |name: &str| format!("{field}.{name}");
    let endpoint = match raw.endpoint {
        Some(url) => {
            check_idp_url(ctx, &f("endpoint"), &url)?;
            Some(url)
        }
        None => None,
    };
    // RFC 7662 §2.1: the endpoint MUST require authorization, so the gateway always authenticates.
    let Some(client_id) = raw.client_id.filter(|id| !id.is_empty()) else {
        return Err(ctx.err(f("client_id"), "is required: the gateway's client id at the introspection endpoint"));
    };
    let Some(client_secret) = raw.client_secret.filter(|s| !s.is_empty()) else {
        return Err(ctx.err(f("client_secret"), "is required, e.g. \"${INTROSPECTION_CLIENT_SECRET}\""));
    };
    let breaker_failures = raw.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(ctx.err(f("breaker_failures"), "must be at least 1"));
    }
    let cache_capacity = raw.cache_capacity.unwrap_or(DEFAULT_INTROSPECTION_CACHE_CAPACITY);
    if cache_capacity == 0 {
        return Err(ctx.err(f("cache_capacity"), "must be greater than zero; set cache_max_ttl: 0s to not cache"));
    }
    Ok(Introspection {
        endpoint,
        client_id,
        client_secret: Secret(client_secret.into_bytes()),
        auth_method: match raw.auth_method {
            Some(RawClientAuthMethod::ClientSecretPost) => ClientAuthMethod::ClientSecretPost,
            Some(RawClientAuthMethod::ClientSecretBasic) | None => ClientAuthMethod::ClientSecretBasic,
        },
        timeout: positive(ctx, &f("timeout"), raw.timeout.unwrap_or(DEFAULT_INTROSPECTION_TIMEOUT))?,
        cache_max_ttl: raw.cache_max_ttl.unwrap_or(DEFAULT_INTROSPECTION_CACHE_MAX_TTL),
        negative_ttl: raw.negative_ttl.unwrap_or(DEFAULT_INTROSPECTION_NEGATIVE_TTL),
        cache_capacity,
        breaker_failures,
        breaker_open_for: positive(
            ctx,
            &f("breaker_open_for"),
            raw.breaker_open_for.unwrap_or(DEFAULT_BREAKER_OPEN_FOR),
        )?,
    })
}

fn algorithms(ctx: &Ctx<'_>, field: &str, raw: Option<Vec<String>>, hmac: bool) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = raw else {
        return Ok(if hmac { vec![Algorithm::HS256] } else { DEFAULT_ALGORITHMS.to_vec() });
    };
    if names.is_empty() {
        return Err(ctx.err(field, "must not be empty; omit it for the default allowlist"));
    }
    let mut out: Vec<Algorithm> = Vec::new();
    for (k, name) in names.iter().enumerate() {
        if name.eq_ignore_ascii_case("none") {
            return Err(ctx.err(
                format!("{field}[{k}]"),
                "\"none\" is never accepted: unsigned tokens prove nothing (RFC 8725 §3.1)",
            ));
        }
        let alg = Algorithm::from_str(name).map_err(|_| {
            ctx.err(
                format!("{field}[{k}]"),
                format!(
                    "unknown algorithm {name:?}; expected one of HS256 HS384 HS512 RS256 RS384 RS512 \
                     PS256 PS384 PS512 ES256 ES384 EdDSA"
                ),
            )
        })?;
        let is_hmac = alg.family() == AlgorithmFamily::Hmac;
        if hmac && !is_hmac {
            return Err(ctx.err(
                format!("{field}[{k}]"),
                format!(
                    "{name} needs a public key, but this issuer has hmac_secret; expected only HS256, HS384 or HS512"
                ),
            ));
        }
        if !hmac && is_hmac {
            return Err(ctx.err(
                format!("{field}[{k}]"),
                format!(
                    "{name} needs hmac_secret; an issuer with jwks_uri or discovery accepts only asymmetric algorithms"
                ),
            ));
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

fn non_empty_strings(ctx: &Ctx<'_>, field: &str, list: &[String]) -> Result<(), ConfigError> {
    match list.iter().position(|s| s.is_empty()) {
        Some(k) => Err(ctx.err(format!("{field}[{k}]"), "must not be empty")),
        None => Ok(()),
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    list.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn check_scope_token(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{scope:?} is not a valid scope-token (RFC 6749 §3.3): expected printable ASCII without \
             spaces, '\"' or '\\'"
        ))
    }
}

fn routes(ctx: &Ctx<'_>, raw: Option<Vec<raw::RawRoute>>) -> Result<Vec<Route>, ConfigError> {
    let raw = match raw {
        None => vec![raw::RawRoute::default_route()],
        Some(list) if list.is_empty() => {
            return Err(ctx.err("routes", "must not be empty; omit routes for one catch-all route requiring a token"))
        }
        Some(list) => list,
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("routes[{i}].{name}");
        let Some(id) = r.id.clone() else {
            return Err(ctx.err(f("id"), "is required: a unique name used as the metrics route label"));
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(ctx.err(f("id"), format!("{id:?} must match [A-Za-z0-9_.-]+")));
        }
        if let Some(j) = seen.insert(id.clone(), i) {
            return Err(ctx.err(f("id"), format!("{id:?} is already used by routes[{j}]")));
        }
        let host = match &r.host {
            None => None,
            Some(h) => Some(route_host(ctx, &f("host"), h)?),
        };
        let Some(path_prefix) = r.path_prefix.clone() else {
            return Err(ctx.err(f("path_prefix"), "is required, e.g. / or /api"));
        };
        if !path_prefix.starts_with('/')
            || path_prefix.contains(['?', '#'])
            || path_prefix.contains(char::is_whitespace)
        {
            return Err(ctx.err(
                f("path_prefix"),
                format!("{path_prefix:?} must start with '/' and contain no '?', '#' or whitespace"),
            ));
        }
        let methods = match &r.methods {
            None => None,
            Some(list) => Some(methods(ctx, &f("methods"), list)?),
        };
        let auth = match r.auth.unwrap_or(RawAuth::Required) {
            RawAuth::None => {
                let stray = [
                    ("audiences", r.audiences.is_some()),
                    ("scopes", r.scopes.is_some()),
                    ("scope_match", r.scope_match.is_some()),
                    ("claims", r.claims.is_some()),
                ];
                if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                    return Err(ctx.err(f(name), "is only allowed with auth: required (this route has auth: none)"));
                }
                RouteAuth::Public
            }
            RawAuth::Required => RouteAuth::Required(policy(ctx, i, r)?),
        };
        out.push(Route { id, host, path_prefix, methods, auth });
    }
    Ok(out)
}

fn route_host(ctx: &Ctx<'_>, field: &str, host: &str) -> Result<String, ConfigError> {
    let bad = |what: &str| ctx.err(field, format!("{host:?} {what}; expected a host name such as api.example.com"));
    let authority: Authority = host.parse().map_err(|_| bad("is not a valid host"))?;
    if authority.port().is_some() {
        return Err(bad("must not include a port"));
    }
    if host.is_empty() || host.contains('@') {
        return Err(bad("is not a valid host"));
    }
    Ok(host.to_ascii_lowercase())
}

fn methods(ctx: &Ctx<'_>, field: &str, list: &[String]) -> Result<Vec<Method>, ConfigError> {
    if list.is_empty() {
        return Err(ctx.err(field, "must not be empty; omit it to match every method"));
    }
    let mut out: Vec<Method> = Vec::new();
    for (k, name) in list.iter().enumerate() {
        if *name != name.to_ascii_uppercase() {
            return Err(ctx.err(
                format!("{field}[{k}]"),
                format!("{name:?}: methods are case-sensitive (RFC 9110 §9.1); write {:?}", name.to_ascii_uppercase()),
            ));
        }
        let m = Method::from_bytes(name.as_bytes())
            .map_err(|_| ctx.err(format!("{field}[{k}]"), format!("{name:?} is not a valid HTTP method")))?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

fn policy(ctx: &Ctx<'_>, i: usize, r: raw::RawRoute) -> Result<Policy, ConfigError> {
    let f = |name: &str| format!("routes[{i}].{name}");
    if let Some(auds) = &r.audiences {
        if auds.is_empty() {
            return Err(ctx.err(f("audiences"), "must not be empty; omit it to use the issuer's audiences"));
        }
        non_empty_strings(ctx, &f("audiences"), auds)?;
    }
    let scopes = r.scopes.unwrap_or_default();
    for (k, scope) in scopes.iter().enumerate() {
        check_scope_token(scope).map_err(|m| ctx.err(format!("{}[{k}]", f("scopes")), m))?;
    }
    let mut claims = Vec::new();
    for (k, c) in r.claims.unwrap_or_default().into_iter().enumerate() {
        let cf = |name: &str| format!("routes[{i}].claims[{k}].{name}");
        let Some(claim) = c.claim.filter(|c| !c.is_empty()) else {
            return Err(ctx.err(cf("claim"), "is required: the top-level claim name to test"));
        };
        let (name, test) = match (c.equals, c.contains) {
            (Some(v), None) => ("equals", ClaimTest::Equals(v)),
            (None, Some(v)) => ("contains", ClaimTest::Contains(v)),
            _ => {
                return Err(
                    ctx.err(format!("routes[{i}].claims[{k}]"), "expected exactly one of `equals` or `contains`")
                )
            }
        };
        let (ClaimTest::Equals(v) | ClaimTest::Contains(v)) = &test;
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(ctx.err(cf(name), "expected a scalar (string, number or boolean)"));
        }
        claims.push(ClaimRule { claim, test });
    }
    Ok(Policy {
        audiences: r.audiences.map(dedup),
        scopes: dedup(scopes),
        scope_match: match r.scope_match {
            Some(RawScopeMatch::Any) => ScopeMatch::Any,
            Some(RawScopeMatch::All) | None => ScopeMatch::All,
        },
        claims,
    })
}

fn header_name(ctx: &Ctx<'_>, field: &str, name: &str) -> Result<HeaderName, ConfigError> {
    let h = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ctx.err(field, format!("{name:?} is not a valid header name")))?;
    if FORBIDDEN_IDENTITY_HEADERS.contains(&h.as_str()) {
        return Err(ctx.err(
            field,
            format!(
                "{name:?} cannot carry identity: it is a hop-by-hop, framing or credential header; pick e.g. X-Auth-*"
            ),
        ));
    }
    Ok(h)
}

fn identity_value(source: &str) -> Option<IdentityValue> {
    Some(match source {
        "subject" => IdentityValue::Subject,
        "scopes" => IdentityValue::Scopes,
        "client_id" => IdentityValue::ClientId,
        "issuer" => IdentityValue::Issuer,
        _ => match source.strip_prefix("claim:") {
            Some(name) if !name.is_empty() => IdentityValue::Claim(name.to_string()),
            _ => return None,
        },
    })
}

fn identity(ctx: &Ctx<'_>, raw: raw::RawIdentity) -> Result<Identity, ConfigError> {
    let headers = match raw.headers {
        None => Identity::default_headers(),
        Some(map) => {
            let mut out: Vec<IdentityHeader> = Vec::new();
            for (name, source) in map.0 {
                let field = format!("identity.headers.{name}");
                let h = header_name(ctx, &field, &name)?;
                if out.iter().any(|x| x.name == h) {
                    return Err(ctx.err(field, "is listed twice (header names are case-insensitive)"));
                }
                let value = identity_value(&source).ok_or_else(|| {
                    ctx.err(
                        &field,
                        format!(
                            "unknown source {source:?}; expected subject, scopes, client_id, issuer or claim:<name>"
                        ),
                    )
                })?;
                out.push(IdentityHeader { name: h, value });
            }
            out
        }
    };
    let claims_header = match raw.claims_header {
        None => None,
        Some(name) => {
            let h = header_name(ctx, "identity.claims_header", &name)?;
            if headers.iter().any(|x| x.name == h) {
                return Err(ctx.err("identity.claims_header", format!("{name:?} is already an identity.headers entry")));
            }
            Some(h)
        }
    };
    Ok(Identity { headers, claims_header, forward_authorization: raw.forward_authorization.unwrap_or(true) })
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => f.write_str(v),
            Origin::Defaults => f.write_str("defaults"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::render_effective;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
    const BASE: &str = "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://idp.example.com/\n";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A file under the temp dir, unique per test and process, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!("tokengate-config-{}-{}.yaml", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load_text(text: &str, env: HashMap<String, String>) -> Result<Config, ConfigError> {
        let file = TempFile::new(text);
        load(&Sources { file: Some(file.0.clone()), env })
    }

    fn load_ok(text: &str) -> Config {
        load_text(text, HashMap::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads BASE + `extra` and expects an `Invalid` error for `field` whose message holds `needle`.
    #[track_caller]
    fn assert_invalid(extra: &str, field: &str, needle: &str) {
        let err = load_text(&format!("{BASE}{extra}"), HashMap::new()).expect_err("config should be refused");
        let text = err.to_string();
        assert_eq!(err.field(), Some(field), "{text}");
        assert!(text.contains(&format!(": {field}: ")), "{text}");
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }

    /// Like `assert_invalid` but with a complete file instead of BASE + extra.
    #[track_caller]
    fn assert_invalid_full(text: &str, field: &str, needle: &str) {
        let err = load_text(text, HashMap::new()).expect_err("config should be refused");
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    }

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tokengate.example.yaml")
    }

    const CLIENT_SECRET: &str = "introspection-client-secret";

    fn example_sources() -> Sources {
        Sources {
            file: Some(example_path()),
            env: env(&[("IDP_SECRET", SECRET), ("INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET)]),
        }
    }

    /// The shipped example file loads and every key lands where the schema says.
    #[test]
    fn example_file_parses_to_expected_config() {
        let c = load(&example_sources()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.realm, "tokengate");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.server.max_header_bytes, 65536);
        assert_eq!(c.server.worker_threads, None);
        assert_eq!(c.upstream.uri.authority().unwrap().as_str(), "127.0.0.1:8081");
        assert_eq!(c.upstream.uri.path(), "/");
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.upstream.response_timeout, Duration::from_secs(30));
        assert_eq!(c.upstream.pool_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.upstream.pool_max_idle_per_host, 64);
        assert!(!c.tokens.allow_query && !c.tokens.allow_form_body);
        assert_eq!(c.tokens.max_token_bytes, 16384);
        assert_eq!(c.jwks.min_refresh, Duration::from_secs(60));
        assert_eq!(c.jwks.max_refresh, Duration::from_secs(3600));
        assert_eq!(c.jwks.default_refresh, Duration::from_secs(300));
        assert_eq!(c.jwks.unknown_kid_cooldown, Duration::from_secs(30));
        assert_eq!(c.jwks.fetch_timeout, Duration::from_secs(5));
        assert_eq!(c.jwks.max_response_bytes, 262144);
        assert_eq!(c.token_cache, TokenCacheSettings { enabled: true, max_entries: 100_000, max_bytes: 67_108_864 });

        assert_eq!(c.issuers.len(), 4);
        let a = &c.issuers[0];
        assert_eq!(a.mode, TokenMode::Jwt);
        assert!(a.introspection.is_none());
        assert_eq!(a.issuer, "https://idp.example.com/");
        assert!(matches!(&a.keys, KeySource::JwksUri(u) if u == "https://idp.example.com/.well-known/jwks.json"));
        assert_eq!(a.audiences, ["api"]);
        assert_eq!(a.algorithms, [Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(a.leeway, DEFAULT_LEEWAY);
        assert!(!a.require_at_jwt);
        assert_eq!(a.scope_claim.as_deref(), Some("permissions"));
        let b = &c.issuers[1];
        assert!(matches!(b.keys, KeySource::Discovery));
        assert_eq!(b.audiences, ["api", "api://default"]);
        assert_eq!(b.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(b.scope_claim, None);
        let s = &c.issuers[2];
        assert!(matches!(&s.keys, KeySource::Secret(x) if x.0 == SECRET.as_bytes()));
        assert_eq!(s.algorithms, [Algorithm::HS256]);
        let o = &c.issuers[3];
        assert_eq!(o.issuer, "https://as.example.net/");
        assert_eq!(o.mode, TokenMode::Introspection);
        assert!(matches!(o.keys, KeySource::None));
        assert!(o.algorithms.is_empty(), "an introspection-only issuer accepts no JWS algorithm");
        assert_eq!(o.audiences, ["api"]);
        let x = o.introspection.as_ref().unwrap();
        assert_eq!(x.endpoint.as_deref(), Some("https://as.example.net/oauth2/introspect"));
        assert_eq!(x.client_id, "tokengate");
        assert_eq!(x.client_secret.0, CLIENT_SECRET.as_bytes());
        assert_eq!(x.auth_method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(x.timeout, DEFAULT_INTROSPECTION_TIMEOUT);
        assert_eq!(x.cache_max_ttl, DEFAULT_INTROSPECTION_CACHE_MAX_TTL);
        assert_eq!(x.negative_ttl, DEFAULT_INTROSPECTION_NEGATIVE_TTL);
        assert_eq!(x.cache_capacity, DEFAULT_INTROSPECTION_CACHE_CAPACITY);
        assert_eq!(x.breaker_failures, DEFAULT_BREAKER_FAILURES);
        assert_eq!(x.breaker_open_for, DEFAULT_BREAKER_OPEN_FOR);

        assert_eq!(c.routes.len(), 3);
        let health = &c.routes[0];
        assert_eq!(health.id, "public-health");
        assert_eq!(health.host.as_deref(), Some("api.example.com"));
        assert_eq!(health.path_prefix, "/health");
        assert_eq!(health.methods, Some(vec![Method::GET, Method::HEAD]));
        assert!(matches!(health.auth, RouteAuth::Public));
        let RouteAuth::Required(admin) = &c.routes[1].auth else { panic!("admin-api requires auth") };
        assert_eq!(admin.audiences, Some(vec!["api".to_string()]));
        assert_eq!(admin.scopes, ["read", "write"]);
        assert_eq!(admin.scope_match, ScopeMatch::All);
        assert_eq!(
            admin.claims,
            [
                ClaimRule { claim: "tenant".into(), test: ClaimTest::Equals("acme".into()) },
                ClaimRule { claim: "groups".into(), test: ClaimTest::Contains("admins".into()) },
            ]
        );
        let RouteAuth::Required(api) = &c.routes[2].auth else { panic!("api requires auth") };
        assert_eq!(api.scope_match, ScopeMatch::Any);
        assert_eq!(api.audiences, None);

        assert_eq!(c.identity.headers, Identity::default_headers());
        assert_eq!(c.identity.claims_header.as_ref().map(HeaderName::as_str), Some("x-auth-claims"));
        assert!(c.identity.forward_authorization);
    }

    /// TOKENGATE_UPSTREAM + TOKENGATE_ISSUER alone make a complete config with every default.
    #[test]
    fn env_only_config() {
        let e = env(&[
            (env::UPSTREAM, "http://127.0.0.1:3000"),
            (env::ISSUER, "https://idp.example.com/"),
            (env::AUDIENCE, "api, other api"),
            (env::REQUIRED_SCOPES, "read  write"),
            (env::ALGORITHMS, "ES256,RS256"),
            (env::JWKS_URI, ""),
        ]);
        let c = load(&Sources { file: None, env: e }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.upstream.uri.authority().unwrap().as_str(), "127.0.0.1:3000");
        assert_eq!(c.issuers.len(), 1);
        assert!(matches!(c.issuers[0].keys, KeySource::Discovery), "empty TOKENGATE_JWKS_URI means unset");
        assert_eq!(c.issuers[0].audiences, ["api", "other"]);
        assert_eq!(c.issuers[0].algorithms, [Algorithm::ES256, Algorithm::RS256]);
        assert_eq!(c.routes.len(), 1);
        assert_eq!((c.routes[0].id.as_str(), c.routes[0].path_prefix.as_str()), ("default", "/"));
        let RouteAuth::Required(p) = &c.routes[0].auth else { panic!("default route requires auth") };
        assert_eq!(p.scopes, ["read", "write"]);
        assert_eq!(c.identity.headers, Identity::default_headers());
    }

    /// With neither file nor env, the error says which variable supplies the missing value.
    #[test]
    fn empty_sources_name_the_missing_variable() {
        let err = load(&Sources::default()).unwrap_err();
        assert_eq!(err.to_string().split(':').next(), Some("upstream.url"));
        assert!(err.to_string().contains("TOKENGATE_UPSTREAM"), "{err}");
        let err = load(&Sources { file: None, env: env(&[(env::UPSTREAM, "http://a:1")]) }).unwrap_err();
        assert!(err.to_string().starts_with("issuers: ") && err.to_string().contains("TOKENGATE_ISSUER"), "{err}");
    }

    /// Env values replace the file's: listeners, upstream and the single issuer's fields.
    #[test]
    fn env_overrides_file() {
        let text =
            format!("{BASE}    audiences: [file-aud]\n    jwks_uri: https://idp.example.com/jwks\nlisten: 0.0.0.0:1\n");
        let e = env(&[
            (env::LISTEN, "127.0.0.1:7000"),
            (env::ADMIN_LISTEN, "127.0.0.1:7001"),
            (env::UPSTREAM, "http://upstream:9000"),
            (env::ISSUER, "https://other.example.com"),
            (env::JWKS_URI, "https://other.example.com/keys"),
            (env::AUDIENCE, "env-aud"),
        ]);
        let c = load_text(&text, e).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(c.upstream.uri.authority().unwrap().as_str(), "upstream:9000");
        assert_eq!(c.issuers[0].issuer, "https://other.example.com");
        assert!(matches!(&c.issuers[0].keys, KeySource::JwksUri(u) if u == "https://other.example.com/keys"));
        assert_eq!(c.issuers[0].audiences, ["env-aud"]);
    }

    /// TOKENGATE_REQUIRED_SCOPES is added to every required route and leaves public ones alone.
    #[test]
    fn required_scopes_added_to_required_routes() {
        let text = format!(
            "{BASE}routes:\n  - {{ id: pub, path_prefix: /p, auth: none }}\n  - {{ id: a, path_prefix: /, scopes: [read] }}\n"
        );
        let c = load_text(&text, env(&[(env::REQUIRED_SCOPES, "read admin")])).unwrap();
        assert!(matches!(c.routes[0].auth, RouteAuth::Public));
        let RouteAuth::Required(p) = &c.routes[1].auth else { panic!() };
        assert_eq!(p.scopes, ["read", "admin"]);
    }

    /// TOKENGATE_REQUIRED_SCOPES on a `scope_match: any` route is refused: it would not be required.
    #[test]
    fn required_scopes_refused_on_any_route() {
        let text = format!("{BASE}routes:\n  - {{ id: a, path_prefix: /, scopes: [x], scope_match: any }}\n");
        let err = load_text(&text, env(&[(env::REQUIRED_SCOPES, "admin")])).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_REQUIRED_SCOPES: routes[0].scope_match: "), "{err}");
    }

    /// An invalid scope in TOKENGATE_REQUIRED_SCOPES names the variable.
    #[test]
    fn required_scopes_must_be_scope_tokens() {
        let e = env(&[(env::UPSTREAM, "http://a:1"), (env::ISSUER, "https://i/"), (env::REQUIRED_SCOPES, "a\"b")]);
        let err = load(&Sources { file: None, env: e }).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_REQUIRED_SCOPES: "), "{err}");
        assert!(err.to_string().contains("scope-token"), "{err}");
    }

    /// Issuer variables with several issuers in the file are an error that names the variable.
    #[test]
    fn issuer_env_with_several_issuers_is_refused() {
        let text = format!("{BASE}  - issuer: https://second.example.com/\n");
        let err = load_text(&text, env(&[(env::AUDIENCE, "api")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("TOKENGATE_AUDIENCE: issuers: "), "{msg}");
        assert!(msg.contains("2 issuers") && msg.contains("ambiguous"), "{msg}");
    }

    /// Issuer variables other than TOKENGATE_ISSUER need an issuer to apply to.
    #[test]
    fn issuer_env_without_issuer() {
        let e = env(&[(env::UPSTREAM, "http://a:1"), (env::JWKS_URI, "https://i/jwks")]);
        let err = load(&Sources { file: None, env: e }).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_JWKS_URI: issuers: "), "{err}");
        assert!(err.to_string().contains("TOKENGATE_ISSUER"), "{err}");
    }

    /// A bad value from env is reported against the variable, not the file.
    #[test]
    fn env_value_errors_name_the_variable() {
        let err = load_text(BASE, env(&[(env::UPSTREAM, "https://app:8443")])).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_UPSTREAM: upstream.url: "), "{err}");
        assert!(err.to_string().contains("http scheme"), "{err}");
        let err = load_text(BASE, env(&[(env::ALGORITHMS, "RS256 none")])).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_ALGORITHMS: issuers[0].algorithms[1]: "), "{err}");
    }

    /// `${VAR}` in the file is replaced from Sources::env.
    #[test]
    fn substitution_from_env() {
        let text = format!("{BASE}    hmac_secret: ${{IDP_SECRET}}\nrealm: \"${{REALM}}\"\n");
        let c = load_text(&text, env(&[("IDP_SECRET", SECRET), ("REALM", "my realm")])).unwrap();
        assert!(matches!(&c.issuers[0].keys, KeySource::Secret(s) if s.0 == SECRET.as_bytes()));
        assert_eq!(c.realm, "my realm");
    }

    /// An unset `${VAR}` is a parse error at file:line:column that names the variable.
    #[test]
    fn missing_variable_reports_line() {
        let text = format!("{BASE}    hmac_secret: ${{IDP_SECRET}}\n");
        let file = TempFile::new(&text);
        let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
        let prefix = format!("{}:4:18: ", file.0.display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
        assert!(err.to_string().contains("IDP_SECRET is not set"), "{err}");
    }

    /// An unknown key is refused with its full path, line and column.
    #[test]
    fn unknown_field_names_field_and_position() {
        let text = format!("{BASE}routes:\n  - id: a\n    path_prefix: /\n    scope: [x]\n");
        let file = TempFile::new(&text);
        let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
        let ConfigError::Parse { location, field, .. } = &err else { panic!("{err}") };
        assert_eq!(*location, Some((7, 5)));
        assert_eq!(field.as_deref(), Some("routes[0].scope"));
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}:7:5: routes[0].scope: unknown field", file.0.display())), "{msg}");
        assert!(msg.contains("expected one of") && msg.contains("`scopes`"), "{msg}");
    }

    /// A wrongly typed value is reported with its path and position.
    #[test]
    fn type_error_names_field_and_position() {
        let text =
            format!("{BASE}routes:\n  - id: a\n    path_prefix: /\n  - id: b\n    path_prefix: /b\n    scopes: read\n");
        let file = TempFile::new(&text);
        let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}:9:13: routes[1].scopes: invalid type", file.0.display())), "{msg}");
        assert!(msg.contains("expected a sequence"), "{msg}");
    }

    /// A bad duration says what was expected.
    #[test]
    fn bad_duration() {
        let err = load_text(&format!("{BASE}jwks: {{ fetch_timeout: 5 }}\n"), HashMap::new()).unwrap_err();
        assert_eq!(err.field(), Some("jwks.fetch_timeout"), "{err}");
        assert!(err.to_string().contains("duration"), "{err}");
    }

    /// A file that cannot be read names the path.
    #[test]
    fn unreadable_file() {
        let path = std::env::temp_dir().join("tokengate-config-does-not-exist.yaml");
        let err = load(&Sources { file: Some(path.clone()), env: HashMap::new() }).unwrap_err();
        assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
    }

    /// Validation errors read `file: field: message`.
    #[test]
    fn validation_error_format() {
        let text = format!("{BASE}    jwks_uri: http://idp.example.com/jwks\n");
        let file = TempFile::new(&text);
        let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
        let prefix = format!("{}: issuers[0].jwks_uri: ", file.0.display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
        assert!(err.to_string().contains("must use https"), "{err}");
    }

    /// listen must be ip:port.
    #[test]
    fn listen_must_be_socket_addr() {
        assert_invalid("listen: localhost:80\n", "listen", "expected ip:port");
    }

    /// listen and admin_listen must not overlap (port 0 may repeat).
    #[test]
    fn listeners_must_differ() {
        assert_invalid("listen: 0.0.0.0:9000\nadmin_listen: 127.0.0.1:9000\n", "admin_listen", "overlaps listen");
        load_ok(&format!("{BASE}listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"));
    }

    /// realm must fit a quoted-string.
    #[test]
    fn realm_must_be_quotable() {
        assert_invalid("realm: 'a\"b'\n", "realm", "quoted-string");
    }

    /// upstream.url is required.
    #[test]
    fn upstream_required() {
        assert_invalid_full("issuers: [{ issuer: https://i/ }]\n", "upstream.url", "TOKENGATE_UPSTREAM");
    }

    /// upstream.url must be http.
    #[test]
    fn upstream_must_be_http() {
        assert_invalid_full(
            "upstream: { url: https://a:1 }\nissuers: [{ issuer: https://i/ }]\n",
            "upstream.url",
            "http scheme",
        );
    }

    /// upstream.url must not have a path or query.
    #[test]
    fn upstream_must_not_have_path() {
        let issuers = "issuers: [{ issuer: https://i/ }]\n";
        assert_invalid_full(&format!("upstream: {{ url: http://a:1/api }}\n{issuers}"), "upstream.url", "has a path");
        assert_invalid_full(&format!("upstream: {{ url: 'http://a:1/?x=1' }}\n{issuers}"), "upstream.url", "query");
        let c = load_ok(&format!("upstream: {{ url: http://a:1/ }}\n{issuers}"));
        assert_eq!(c.upstream.uri.path(), "/");
    }

    /// Timeouts that must be positive are refused at zero.
    #[test]
    fn zero_timeouts() {
        assert_invalid_full(
            "upstream: { url: http://a:1, connect_timeout: 0s }\nissuers: [{ issuer: https://i/ }]\n",
            "upstream.connect_timeout",
            "greater than zero",
        );
        assert_invalid("server: { header_read_timeout: 0s }\n", "server.header_read_timeout", "greater than zero");
    }

    /// server.max_header_bytes has hyper's floor; worker_threads is at least 1.
    #[test]
    fn server_limits() {
        assert_invalid("server: { max_header_bytes: 100 }\n", "server.max_header_bytes", "at least 8192");
        assert_invalid("server: { worker_threads: 0 }\n", "server.worker_threads", "at least 1");
    }

    /// tokens.max_bytes must be positive.
    #[test]
    fn max_token_bytes_positive() {
        assert_invalid("tokens: { max_bytes: 0 }\n", "tokens.max_bytes", "greater than zero");
    }

    /// min_refresh <= default_refresh <= max_refresh.
    #[test]
    fn refresh_ordering() {
        assert_invalid("jwks: { min_refresh: 2h }\n", "jwks.min_refresh", "max_refresh");
        assert_invalid("jwks: { default_refresh: 2h }\n", "jwks.default_refresh", "between");
        assert_invalid("jwks: { default_refresh: 10s }\n", "jwks.default_refresh", "between");
    }

    /// The token cache is on by default; its bounds must be positive; it can be turned off.
    #[test]
    fn token_cache_settings() {
        assert_invalid("token_cache: { max_entries: 0 }\n", "token_cache.max_entries", "greater than zero");
        assert_invalid("token_cache: { max_bytes: 0 }\n", "token_cache.max_bytes", "greater than zero");
        let err = load_text(&format!("{BASE}token_cache: {{ size: 1 }}\n"), HashMap::new()).unwrap_err();
        assert_eq!(err.field(), Some("token_cache.size"), "{err}");
        let c = load_ok(&format!("{BASE}token_cache: {{ enabled: false, max_entries: 10 }}\n"));
        assert_eq!(c.token_cache, TokenCacheSettings { enabled: false, max_entries: 10, max_bytes: 64 << 20 });
    }

    /// At least one issuer.
    #[test]
    fn issuers_required() {
        assert_invalid_full("upstream: { url: http://a:1 }\nissuers: []\n", "issuers", "at least one");
    }

    /// issuer is required in each entry.
    #[test]
    fn issuer_field_required() {
        assert_invalid("  - audiences: [x]\n", "issuers[1].issuer", "required");
    }

    /// Issuer URLs must be https unless the host is loopback.
    #[test]
    fn issuer_https_or_loopback() {
        assert_invalid("  - issuer: http://idp.internal/\n", "issuers[1].issuer", "must use https");
        assert_invalid("  - issuer: ftp://idp/\n", "issuers[1].issuer", "https");
        for ok in ["http://127.0.0.2:8080/", "http://[::1]:8080", "http://LOCALHOST/x"] {
            load_ok(&format!("{BASE}  - issuer: {ok}\n"));
        }
    }

    /// jwks_uri follows the same https/loopback rule.
    #[test]
    fn jwks_uri_https_or_loopback() {
        assert_invalid("    jwks_uri: http://10.0.0.1/jwks\n", "issuers[0].jwks_uri", "loopback");
    }

    /// Two issuers with the same issuer string are refused.
    #[test]
    fn duplicate_issuers() {
        assert_invalid(
            "  - issuer: https://idp.example.com/\n",
            "issuers[1].issuer",
            "already configured as issuers[0]",
        );
    }

    /// jwks_uri and hmac_secret are mutually exclusive.
    #[test]
    fn jwks_uri_excludes_hmac_secret() {
        let extra = format!("    jwks_uri: https://idp.example.com/jwks\n    hmac_secret: {SECRET}\n");
        assert_invalid(&extra, "issuers[0].jwks_uri", "cannot be combined with hmac_secret");
    }

    /// hmac_secret must be >= 32 bytes, and the error never echoes it.
    #[test]
    fn hmac_secret_too_short() {
        let err = load_text(&format!("{BASE}    hmac_secret: short-secret-value\n"), HashMap::new()).unwrap_err();
        assert_eq!(err.field(), Some("issuers[0].hmac_secret"));
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        assert!(!err.to_string().contains("short-secret-value") && !format!("{err:?}").contains("short-secret-value"));
    }

    /// With hmac_secret and no algorithms the allowlist is [HS256].
    #[test]
    fn hmac_default_algorithm() {
        let c = load_ok(&format!("{BASE}    hmac_secret: {SECRET}\n"));
        assert_eq!(c.issuers[0].algorithms, [Algorithm::HS256]);
        assert_eq!(load_ok(BASE).issuers[0].algorithms, DEFAULT_ALGORITHMS);
    }

    /// "none" is never an accepted algorithm.
    #[test]
    fn algorithm_none_refused() {
        assert_invalid("    algorithms: [RS256, none]\n", "issuers[0].algorithms[1]", "never accepted");
    }

    /// Unknown algorithm names list the known ones.
    #[test]
    fn unknown_algorithm() {
        assert_invalid("    algorithms: [RS255]\n", "issuers[0].algorithms[0]", "expected one of");
        assert_invalid("    algorithms: []\n", "issuers[0].algorithms", "must not be empty");
    }

    /// HS* algorithms need hmac_secret.
    #[test]
    fn hmac_algorithm_without_secret() {
        assert_invalid("    algorithms: [RS256, HS256]\n", "issuers[0].algorithms[1]", "needs hmac_secret");
    }

    /// Asymmetric algorithms are refused for an hmac_secret issuer.
    #[test]
    fn asymmetric_algorithm_with_secret() {
        let extra = format!("    hmac_secret: {SECRET}\n    algorithms: [HS256, ES256]\n");
        assert_invalid(&extra, "issuers[0].algorithms[1]", "only HS256, HS384 or HS512");
    }

    /// leeway is at most 5 minutes.
    #[test]
    fn leeway_limit() {
        assert_invalid("    leeway: 6m\n", "issuers[0].leeway", "at most 5m");
        load_ok(&format!("{BASE}    leeway: 5m\n"));
    }

    /// scope_claim, when given, is not empty.
    #[test]
    fn empty_scope_claim() {
        assert_invalid("    scope_claim: ''\n", "issuers[0].scope_claim", "must not be empty");
    }

    /// An empty routes list is refused (omit it for the default route).
    #[test]
    fn empty_routes() {
        assert_invalid("routes: []\n", "routes", "must not be empty");
    }

    /// Route ids are required, unique and metric-label safe.
    #[test]
    fn route_ids() {
        assert_invalid("routes: [{ path_prefix: / }]\n", "routes[0].id", "required");
        assert_invalid(
            "routes: [{ id: a, path_prefix: /a }, { id: a, path_prefix: /b }]\n",
            "routes[1].id",
            "already used by routes[0]",
        );
        assert_invalid("routes: [{ id: 'a b', path_prefix: / }]\n", "routes[0].id", "[A-Za-z0-9_.-]+");
    }

    /// path_prefix is required and starts with "/".
    #[test]
    fn path_prefix_rules() {
        assert_invalid("routes: [{ id: a }]\n", "routes[0].path_prefix", "required");
        assert_invalid("routes: [{ id: a, path_prefix: api }]\n", "routes[0].path_prefix", "must start with '/'");
    }

    /// host has no port and is lower-cased.
    #[test]
    fn route_host_rules() {
        assert_invalid("routes: [{ id: a, host: 'api.example.com:8080', path_prefix: / }]\n", "routes[0].host", "port");
        let c = load_ok(&format!("{BASE}routes: [{{ id: a, host: API.Example.com, path_prefix: / }}]\n"));
        assert_eq!(c.routes[0].host.as_deref(), Some("api.example.com"));
    }

    /// methods are valid, upper-case and non-empty.
    #[test]
    fn route_methods() {
        assert_invalid(
            "routes: [{ id: a, path_prefix: /, methods: [get] }]\n",
            "routes[0].methods[0]",
            "case-sensitive",
        );
        assert_invalid("routes: [{ id: a, path_prefix: /, methods: [] }]\n", "routes[0].methods", "must not be empty");
        assert_invalid(
            "routes: [{ id: a, path_prefix: /, methods: ['G T'] }]\n",
            "routes[0].methods[0]",
            "not a valid HTTP method",
        );
    }

    /// auth accepts only none | required.
    #[test]
    fn auth_values() {
        let err = load_text(&format!("{BASE}routes: [{{ id: a, path_prefix: /, auth: optional }}]\n"), HashMap::new())
            .unwrap_err();
        assert_eq!(err.field(), Some("routes[0].auth"), "{err}");
        assert!(err.to_string().contains("`none`") && err.to_string().contains("`required`"), "{err}");
    }

    /// Policy keys are refused on an auth: none route.
    #[test]
    fn policy_keys_need_required_auth() {
        for key in ["scopes: [a]", "audiences: [a]", "scope_match: any", "claims: []"] {
            let field = format!("routes[0].{}", key.split(':').next().unwrap());
            assert_invalid(
                &format!("routes: [{{ id: a, path_prefix: /, auth: none, {key} }}]\n"),
                &field,
                "only allowed with auth: required",
            );
        }
    }

    /// Route audiences, when given, are not empty.
    #[test]
    fn route_audiences_not_empty() {
        assert_invalid(
            "routes: [{ id: a, path_prefix: /, audiences: [] }]\n",
            "routes[0].audiences",
            "must not be empty",
        );
    }

    /// Scopes must be RFC 6749 §3.3 scope-tokens.
    #[test]
    fn scope_tokens() {
        assert_invalid(
            "routes: [{ id: a, path_prefix: /, scopes: [ok, 'a b'] }]\n",
            "routes[0].scopes[1]",
            "scope-token",
        );
        assert_invalid("routes: [{ id: a, path_prefix: /, scopes: ['a\"'] }]\n", "routes[0].scopes[0]", "scope-token");
        assert_invalid("routes: [{ id: a, path_prefix: /, scopes: ['a\\b'] }]\n", "routes[0].scopes[0]", "scope-token");
        assert_invalid("routes: [{ id: a, path_prefix: /, scopes: [''] }]\n", "routes[0].scopes[0]", "scope-token");
    }

    /// A claim rule has a claim and exactly one scalar equals/contains.
    #[test]
    fn claim_rules() {
        let r = |c: &str| format!("routes: [{{ id: a, path_prefix: /, claims: [{c}] }}]\n");
        assert_invalid(&r("{ claim: t, equals: a, contains: b }"), "routes[0].claims[0]", "exactly one");
        assert_invalid(&r("{ claim: t }"), "routes[0].claims[0]", "exactly one");
        assert_invalid(&r("{ equals: a }"), "routes[0].claims[0].claim", "required");
        assert_invalid(&r("{ claim: t, equals: [a] }"), "routes[0].claims[0].equals", "scalar");
        let c = load_ok(&format!("{BASE}{}", r("{ claim: n, equals: 3 }, { claim: b, contains: true }")));
        let RouteAuth::Required(p) = &c.routes[0].auth else { panic!() };
        assert_eq!(p.claims[0].test, ClaimTest::Equals(3.into()));
        assert_eq!(p.claims[1].test, ClaimTest::Contains(true.into()));
    }

    /// Identity header names must be valid header names.
    #[test]
    fn identity_header_invalid_name() {
        assert_invalid(
            "identity: { headers: { 'X Bad': subject } }\n",
            "identity.headers.X Bad",
            "not a valid header name",
        );
    }

    /// Identity headers may not be hop-by-hop or proxy-owned headers.
    #[test]
    fn identity_header_forbidden_names() {
        for name in ["Connection", "Host", "Authorization", "Content-Length", "Transfer-Encoding", "TE", "Upgrade"] {
            assert_invalid(
                &format!("identity: {{ headers: {{ {name}: subject }} }}\n"),
                &format!("identity.headers.{name}"),
                "cannot carry identity",
            );
        }
        assert_invalid("identity: { claims_header: Keep-Alive }\n", "identity.claims_header", "cannot carry identity");
    }

    /// Identity sources are subject | scopes | client_id | issuer | claim:<name>.
    #[test]
    fn identity_sources() {
        assert_invalid("identity: { headers: { X-A: sub } }\n", "identity.headers.X-A", "expected subject, scopes");
        assert_invalid("identity: { headers: { X-A: 'claim:' } }\n", "identity.headers.X-A", "claim:<name>");
        let c = load_ok(&format!("{BASE}identity: {{ headers: {{ X-Tenant: 'claim:tenant' }} }}\n"));
        assert_eq!(c.identity.headers[0].value, IdentityValue::Claim("tenant".into()));
        assert_eq!(load_ok(&format!("{BASE}identity: {{ headers: {{}} }}\n")).identity.headers, []);
    }

    /// The same identity header twice (any case) is refused, and claims_header is not one of them.
    #[test]
    fn identity_header_duplicates() {
        let err =
            load_text(&format!("{BASE}identity:\n  headers:\n    X-A: subject\n    x-a: issuer\n"), HashMap::new())
                .unwrap_err();
        assert_eq!(err.field(), Some("identity.headers"), "{err}");
        assert!(err.to_string().contains("listed twice"), "{err}");
        assert_invalid(
            "identity: { headers: { X-A: subject }, claims_header: x-a }\n",
            "identity.claims_header",
            "already",
        );
    }

    /// render_effective output loads back to the same config and never prints a secret.
    #[test]
    fn render_round_trips_and_redacts() {
        let first = load(&example_sources()).unwrap();
        let rendered = render_effective(&first);
        assert!(!rendered.contains(SECRET) && !rendered.contains(CLIENT_SECRET), "{rendered}");
        assert!(rendered.contains("hmac_secret: <redacted>"), "{rendered}");
        assert!(rendered.contains("client_secret: <redacted>"), "{rendered}");
        assert!(!format!("{first:?}").contains(CLIENT_SECRET), "Debug leaks the client secret");
        let again = rendered
            .replace("hmac_secret: <redacted>", "hmac_secret: ${IDP_SECRET}")
            .replace("client_secret: <redacted>", "client_secret: ${INTROSPECTION_CLIENT_SECRET}");
        let second = load_text(&again, example_sources().env).unwrap_or_else(|e| panic!("{e}\n{again}"));
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        assert!(matches!(&second.issuers[2].keys, KeySource::Secret(s) if s.0 == SECRET.as_bytes()));
        assert_eq!(second.issuers[3].introspection.as_ref().unwrap().client_secret.0, CLIENT_SECRET.as_bytes());
        assert_eq!(render_effective(&second), rendered);
    }

    const INTROSPECTION: &str = "    introspection: { client_id: gw, client_secret: s3cret }\n";

    /// The mode defaults to jwt without an introspection section and to auto with one.
    #[test]
    fn mode_defaults_follow_introspection() {
        let c = load_ok(BASE);
        assert_eq!(c.issuers[0].mode, TokenMode::Jwt);
        assert!(c.issuers[0].introspection.is_none());
        let c = load_ok(&format!("{BASE}{INTROSPECTION}"));
        assert_eq!(c.issuers[0].mode, TokenMode::Auto);
        assert!(matches!(c.issuers[0].keys, KeySource::Discovery), "auto still validates JWTs locally");
        assert_eq!(c.issuers[0].algorithms, DEFAULT_ALGORITHMS);
        let x = c.issuers[0].introspection.as_ref().unwrap();
        assert_eq!(x.endpoint, None, "no endpoint: discovered from metadata");
        assert_eq!((x.client_id.as_str(), x.client_secret.0.as_slice()), ("gw", b"s3cret".as_slice()));
        assert_eq!(x.auth_method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(
            (x.timeout, x.cache_max_ttl, x.negative_ttl, x.breaker_open_for),
            (Duration::from_secs(3), Duration::from_secs(60), Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!((x.cache_capacity, x.breaker_failures), (100_000, 5));
    }

    /// Every introspection key parses; mode: introspection leaves the issuer without keys.
    #[test]
    fn introspection_section_parses() {
        let c = load_ok(&format!(
            "{BASE}    mode: introspection\n    introspection:\n      endpoint: https://idp.example.com/introspect\n      \
             client_id: gw\n      client_secret: s3cret\n      auth_method: client_secret_post\n      \
             timeout: 500ms\n      cache_max_ttl: 0s\n      negative_ttl: 1s\n      cache_capacity: 10\n      \
             breaker_failures: 2\n      breaker_open_for: 1m\n"
        ));
        let i = &c.issuers[0];
        assert_eq!(i.mode, TokenMode::Introspection);
        assert!(matches!(i.keys, KeySource::None));
        let x = i.introspection.as_ref().unwrap();
        assert_eq!(x.endpoint.as_deref(), Some("https://idp.example.com/introspect"));
        assert_eq!(x.auth_method, ClientAuthMethod::ClientSecretPost);
        assert_eq!(
            (x.timeout, x.cache_max_ttl, x.negative_ttl),
            (Duration::from_millis(500), Duration::ZERO, Duration::from_secs(1))
        );
        assert_eq!((x.cache_capacity, x.breaker_failures, x.breaker_open_for), (10, 2, Duration::from_secs(60)));
    }

    /// mode and the introspection section must agree.
    #[test]
    fn mode_needs_matching_introspection() {
        assert_invalid("    mode: introspection\n", "issuers[0].introspection", "required with mode: introspection");
        assert_invalid("    mode: auto\n", "issuers[0].introspection", "required with mode: auto");
        assert_invalid(&format!("    mode: jwt\n{INTROSPECTION}"), "issuers[0].introspection", "mode: jwt");
        let err = load_text(&format!("{BASE}    mode: opaque\n"), HashMap::new()).unwrap_err();
        assert_eq!(err.field(), Some("issuers[0].mode"), "{err}");
    }

    /// Key and header settings are refused on an introspection-only issuer.
    #[test]
    fn introspection_only_refuses_local_settings() {
        for key in ["jwks_uri: https://idp.example.com/jwks", "algorithms: [RS256]", "require_typ_at_jwt: false"] {
            let name = key.split(':').next().unwrap();
            assert_invalid(
                &format!("    mode: introspection\n    {key}\n{INTROSPECTION}"),
                &format!("issuers[0].{name}"),
                "only applies to locally validated JWTs",
            );
        }
    }

    /// client_id and client_secret are required; the secret is never echoed.
    #[test]
    fn introspection_credentials_required() {
        let i = |body: &str| format!("    introspection: {{ {body} }}\n");
        assert_invalid(&i("client_secret: s3cret"), "issuers[0].introspection.client_id", "required");
        assert_invalid(&i("client_id: gw"), "issuers[0].introspection.client_secret", "required");
        assert_invalid(&i("client_id: gw, client_secret: ''"), "issuers[0].introspection.client_secret", "required");
        let err = load_text(
            &format!("{BASE}{}", i("client_id: gw, client_secret: s3cret, breaker_failures: 0")),
            HashMap::new(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cret") && !format!("{err:?}").contains("s3cret"), "{err:?}");
    }

    /// The endpoint follows the https/loopback rule; limits are positive; auth_method is closed.
    #[test]
    fn introspection_value_rules() {
        let i = |extra: &str| format!("    introspection: {{ client_id: gw, client_secret: s3cret, {extra} }}\n");
        let f = |name: &str| format!("issuers[0].introspection.{name}");
        assert_invalid(&i("endpoint: http://10.0.0.1/introspect"), &f("endpoint"), "loopback");
        load_ok(&format!("{BASE}{}", i("endpoint: http://127.0.0.1:9000/introspect")));
        assert_invalid(&i("timeout: 0s"), &f("timeout"), "greater than zero");
        assert_invalid(&i("breaker_open_for: 0s"), &f("breaker_open_for"), "greater than zero");
        assert_invalid(&i("breaker_failures: 0"), &f("breaker_failures"), "at least 1");
        assert_invalid(&i("cache_capacity: 0"), &f("cache_capacity"), "greater than zero");
        let err = load_text(&format!("{BASE}{}", i("auth_method: private_key_jwt")), HashMap::new()).unwrap_err();
        assert_eq!(err.field(), Some("issuers[0].introspection.auth_method"), "{err}");
        assert!(err.to_string().contains("client_secret_basic"), "{err}");
    }

    /// An env-only config renders to a file that loads without any env.
    #[test]
    fn render_env_only_round_trips() {
        let e = env(&[
            (env::UPSTREAM, "http://127.0.0.1:3000"),
            (env::ISSUER, "https://i.example/"),
            (env::REQUIRED_SCOPES, "read"),
        ]);
        let first = load(&Sources { file: None, env: e }).unwrap();
        let rendered = render_effective(&first);
        let second = load_text(&rendered, HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }
}

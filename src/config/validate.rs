//! Sources → `RawConfig` → `Config`: read, substitute, parse, apply env, validate. Every rule that
//! can be checked before binding a socket is checked here, and every error names the field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::env::{self, Provenance};
use super::locate::Locations;
use super::raw::{
    self, RawAudienceCheck, RawAuth, RawClientAuthMethod, RawConfig, RawDecision, RawMode, RawScopeMatch,
};
use super::{
    AccessLogSettings, AudienceCheck, ClaimPath, ClaimRule, ClaimTest, ClientAuthMethod, Config, DecisionSettings,
    Identity, IdentityHeader, IdentityValue, Introspection, Issuer, JwksSettings, KeySource, PathSettings, Policy,
    Route, RouteAuth, ScopeMatch, Secret, ServerSettings, TokenCacheSettings, TokenMode, TokenSettings,
    DEFAULT_ADMIN_LISTEN, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY, DEFAULT_LISTEN, DEFAULT_REALM,
};

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper refuses (panics on) a smaller HTTP/1 read buffer.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's own default is 200; RFC 9113 §6.5.2 suggests no fewer than 100.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default for a cluster's max_requests circuit breaker.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
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
/// An entry with a typical answer (sub, scopes, client id, no kept claims) costs about 700
/// bytes, so this holds about 48 000 of them, while the default rate limit and `cache_max_ttl`
/// let at most 200 × 60 = 12 000 answers be live at once. Large answers (every claim kept for
/// the claims header, up to `jwks.max_response_bytes` each) meet this bound first.
pub const DEFAULT_INTROSPECTION_CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Enough calls in flight for a few thousand misses per second at tens of milliseconds each;
/// only a slow endpoint fills it, and then it bounds the sockets and tasks waiting on it.
pub const DEFAULT_INTROSPECTION_MAX_CONCURRENT: usize = 64;
/// Calls per second to one endpoint: far above what cache misses of real clients need (each
/// active token is asked about once per `cache_max_ttl`), low enough that a flood of made-up
/// tokens does not get the gateway's client throttled by a typical authorization server.
pub const DEFAULT_INTROSPECTION_RATE_LIMIT: f64 = 200.0;
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
    /// The config file, and where in it (1-based line and column of the key, or of the
    /// nearest enclosing key when the value was left to its default).
    File(PathBuf, Option<(usize, usize)>),
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
    /// Several problems, each with its own place, in the order the sections are checked (the
    /// order of `config/tokengate.example.yaml`).
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Many(all) => all.first().and_then(ConfigError::field),
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
        Origin::File(path, Some((line, column))) => format!("{}:{line}:{column}: {field}: {message}", path.display()),
        Origin::File(path, None) => format!("{}: {field}: {message}", path.display()),
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
        None => finish(RawConfig::default(), None, &Locations::default(), &sources.env),
    }
}

/// `load` for a config whose text is already in memory (the bundled demo config); `name` is
/// used in error messages.
pub fn load_text(name: &Path, text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let (raw, locations) = parse_located(name, text, env)?;
    finish(raw, Some(name), &locations, env)
}

fn finish(
    mut raw: RawConfig,
    file: Option<&Path>,
    locations: &Locations,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let mut prov = Provenance::default();
    env::apply(&mut raw, env, &mut prov)?;
    let ctx = Ctx { file, locations, prov: &prov };
    validate(raw, &ctx)
}

/// `${…}` substitution then YAML parsing; `file` is only used in error messages.
pub fn parse_file(file: &Path, text: &str, env: &HashMap<String, String>) -> Result<RawConfig, ConfigError> {
    parse_located(file, text, env).map(|(raw, _)| raw)
}

/// `parse_file`, and where each key is in the substituted text.
fn parse_located(
    file: &Path,
    text: &str,
    env: &HashMap<String, String>,
) -> Result<(RawConfig, Locations), ConfigError> {
    let text = env::substitute(text, env).map_err(|e| ConfigError::Parse {
        file: file.to_path_buf(),
        location: Some((e.line, e.column)),
        field: None,
        message: e.message,
    })?;
    let raw = serde_norway::from_str(&text).map_err(|e| yaml_error(file, &e))?;
    Ok((raw, Locations::of(&text)))
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

pub(crate) struct Ctx<'a> {
    file: Option<&'a Path>,
    locations: &'a Locations,
    prov: &'a Provenance,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let field = field.into();
        let origin = match (self.prov.lookup(&field), self.file) {
            (Some(var), _) => Origin::Env(var.to_string()),
            (None, Some(file)) => Origin::File(file.to_path_buf(), self.locations.find(&field)),
            (None, None) => Origin::Defaults,
        };
        ConfigError::Invalid { origin, field, message: message.into() }
    }
}

/// Every section is checked, and every problem found is reported at once: a section that
/// fails does not hide the next one. A section that depends on another (routes name issuers) is
/// checked once that one is valid; within a section the first problem is reported.
fn validate(raw: RawConfig, ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let listen = p.take(socket_addr(ctx, "listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN)));
    let admin_listen =
        p.take(socket_addr(ctx, "admin_listen", raw.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN)));
    if let (Some(listen), Some(admin_listen)) = (listen, admin_listen) {
        if overlaps(listen, admin_listen) {
            p.add(ctx.err(
                "admin_listen",
                format!("{admin_listen} overlaps listen ({listen}); the admin listener needs its own port"),
            ));
        }
    }
    let realm = raw.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
    if realm.is_empty() || realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        p.add(ctx.err(
            "realm",
            "must be non-empty and contain no '\"', '\\' or control characters (it is sent as a \
             quoted-string in WWW-Authenticate)",
        ));
    }
    // Validated in the example file's order of sections, so problems are listed in that order.
    let server = p.take(server(ctx, raw.server.unwrap_or_default()));
    // Without an upstream only the decision service runs; without either there is nothing to do.
    // Named upstreams alone are enough when every route names one (checked below).
    let has_named = raw.upstreams.as_ref().is_some_and(|u| !u.is_empty());
    let upstream = match raw.upstream {
        None if raw.decision.is_some() || has_named => Some(None),
        raw_upstream => p.take(upstreams::upstream(ctx, "upstream", raw_upstream.unwrap_or_default())).map(Some),
    };
    let named_upstreams = p.take(upstreams::named(ctx, raw.upstreams));
    let tokens = p.take(tokens(ctx, raw.tokens.unwrap_or_default()));
    let jwks = p.take(jwks(ctx, raw.jwks.unwrap_or_default()));
    let token_cache = p.take(token_cache(ctx, raw.token_cache.unwrap_or_default()));
    let issuers = p.take(issuers(ctx, raw.issuers.unwrap_or_default()));
    let paths = super::paths::paths(raw.paths);
    let routes = match &issuers {
        Some(issuers) => p.take(routes(ctx, raw.routes, issuers, &paths)),
        None => None,
    };
    let identity = p.take(identity(ctx, raw.identity.unwrap_or_default()));
    let protected_resource = match (raw.protected_resource, &issuers, &routes) {
        (None, ..) => Some(None),
        (Some(r), Some(issuers), Some(routes)) => {
            p.take(super::resource::protected_resource(ctx, r, issuers, routes)).map(Some)
        }
        (Some(_), ..) => None,
    };
    // Cross-section: checked once each section is valid on its own.
    if let (Some(issuers), Some(routes)) = (&issuers, &routes) {
        p.take(trust::check_audiences(ctx, issuers, routes));
    }
    let trusted_proxies = p.take(super::paths::trusted_proxies(ctx, raw.trusted_proxies));
    if let (Some(routes), Some(named), Some(default)) = (&routes, &named_upstreams, &upstream) {
        // Without any upstream only the decision service runs, and a route needs none.
        let default_is_set = default.is_some() || named.is_empty();
        p.take(upstreams::check_routes(ctx, routes, named, default_is_set));
    }
    let upstream_is_set = matches!(upstream, Some(Some(_))) || named_upstreams.as_ref().is_some_and(|n| !n.is_empty());
    let decision_listen = raw.decision.as_ref().and_then(|d| d.listen.as_deref()).and_then(|l| l.parse().ok());
    let tls = match raw.tls {
        None => Some(None),
        Some(t) => p.take(tls::tls(ctx, t, upstream_is_set || upstream.is_none())).map(Some),
    };
    let plain_listen = match (raw.plain_listen, listen, admin_listen) {
        (None, ..) => Some(None),
        (Some(addr), Some(listen), Some(admin_listen)) => {
            let mut others = vec![(listen, "listen"), (admin_listen, "admin_listen")];
            others.extend(decision_listen.map(|d| (d, "decision.listen")));
            let has_tls = !matches!(tls, Some(None));
            p.take(tls::plain_listen(ctx, &addr, has_tls, &others)).map(Some)
        }
        (Some(_), ..) => None,
    };
    let decision = match (raw.decision, listen, admin_listen) {
        (None, ..) => Some(None),
        (Some(d), Some(listen), Some(admin_listen)) => {
            p.take(decision(ctx, d, upstream_is_set.then_some(listen), admin_listen)).map(Some)
        }
        (Some(_), ..) => None,
    };
    let (
        Some(listen),
        Some(admin_listen),
        Some(server),
        Some(upstream),
        Some(upstreams),
        Some(tokens),
        Some(jwks),
        Some(token_cache),
        Some(issuers),
        Some(routes),
        Some(identity),
        Some(protected_resource),
        Some(trusted_proxies),
        Some(decision),
        Some(tls),
        Some(plain_listen),
    ) = (
        listen,
        admin_listen,
        server,
        upstream,
        named_upstreams,
        tokens,
        jwks,
        token_cache,
        issuers,
        routes,
        identity,
        protected_resource,
        trusted_proxies,
        decision,
        tls,
        plain_listen,
    )
    else {
        // A section is absent only when it had a problem, which `finish` reports.
        return p.finish().and(Err(ConfigError::Invalid {
            origin: Origin::Defaults,
            field: "config".into(),
            message: "internal error: a section is missing after validation".into(),
        }));
    };
    // Every section is there; a cross-section check may still have found a problem.
    p.finish()?;
    Ok(Config {
        listen,
        plain_listen,
        tls,
        admin_listen,
        realm,
        server,
        upstream,
        upstreams,
        tokens,
        jwks,
        token_cache,
        issuers,
        paths,
        routes,
        identity,
        protected_resource,
        trusted_proxies,
        decision,
        access_log: access_log(raw.access_log.unwrap_or_default()),
    })
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, e: ConfigError) {
        match e {
            ConfigError::Many(all) => self.0.extend(all),
            e => self.0.push(e),
        }
    }

    /// The value, or `None` with its problem kept.
    fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.add(e)).ok()
    }

    /// One problem as itself, several as `ConfigError::Many`.
    fn finish(mut self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Many(self.0)),
        }
    }
}

/// `decision:`. Its listener needs a port of its own (`listen` is `None` when no proxy listener
/// runs); its trusted peers default to loopback.
fn decision(
    ctx: &Ctx<'_>,
    raw: RawDecision,
    listen: Option<SocketAddr>,
    admin_listen: SocketAddr,
) -> Result<DecisionSettings, ConfigError> {
    let Some(address) = raw.listen else {
        return Err(ctx.err(
            "decision.listen",
            "is required when `decision:` is present: the address the decision service listens on, such as \
             127.0.0.1:8181",
        ));
    };
    let decision = socket_addr(ctx, "decision.listen", &address)?;
    for (other, name) in listen.map(|l| (l, "listen")).into_iter().chain([(admin_listen, "admin_listen")]) {
        if overlaps(decision, other) {
            return Err(ctx.err(
                "decision.listen",
                format!("{decision} overlaps {name} ({other}); the decision service needs its own port"),
            ));
        }
    }
    let trusted_peers = match raw.trusted_peers {
        Some(list) => super::paths::networks(ctx, "decision.trusted_peers", list)?,
        None => vec!["127.0.0.0/8".parse().expect("a CIDR"), "::1/128".parse().expect("a CIDR")],
    };
    Ok(DecisionSettings { listen: decision, trusted_peers })
}

/// Two listeners would share a port (port 0 is a new port each time).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn socket_addr(ctx: &Ctx<'_>, field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ctx.err(field, format!("{value:?} is not a socket address; expected ip:port such as 0.0.0.0:8080 or [::]:8080"))
    })
}

/// A name that goes into metrics labels and log fields as it is (route ids, upstream names):
/// `[A-Za-z0-9_.-]+`.
fn is_label_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
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

fn access_log(raw: raw::RawAccessLog) -> AccessLogSettings {
    let d = AccessLogSettings::default();
    AccessLogSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        subjects: raw.subjects.unwrap_or(d.subjects),
        query: raw.query.unwrap_or(d.query),
    }
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
    let header_read_timeout =
        positive(ctx, "server.header_read_timeout", raw.header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT))?;
    let idle_timeout = positive(ctx, "server.idle_timeout", raw.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT))?;
    if idle_timeout < header_read_timeout {
        return Err(ctx.err(
            "server.idle_timeout",
            format!(
                "is {}; expected at least server.header_read_timeout ({}), which is what closes an idle \
                 HTTP/1.1 connection",
                humantime::format_duration(idle_timeout),
                humantime::format_duration(header_read_timeout)
            ),
        ));
    }
    let streams = raw.http2_max_concurrent_streams.unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS);
    if streams == 0 {
        return Err(ctx.err("server.http2_max_concurrent_streams", "must be at least 1"));
    }
    Ok(ServerSettings {
        header_read_timeout,
        drain_delay: raw.drain_delay.unwrap_or(DEFAULT_DRAIN_DELAY),
        shutdown_grace: raw.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_header_bytes,
        worker_threads: raw.worker_threads,
        max_connections: nonzero(
            ctx,
            "server.max_connections",
            raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        )?,
        idle_timeout,
        body_read_timeout: positive(
            ctx,
            "server.body_read_timeout",
            raw.body_read_timeout.unwrap_or(DEFAULT_BODY_READ_TIMEOUT),
        )?,
        http2_max_concurrent_streams: streams,
        http2_keep_alive_interval: positive(
            ctx,
            "server.http2_keep_alive_interval",
            raw.http2_keep_alive_interval.unwrap_or(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL),
        )?,
        http2_keep_alive_timeout: positive(
            ctx,
            "server.http2_keep_alive_timeout",
            raw.http2_keep_alive_timeout.unwrap_or(DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT),
        )?,
        tunnel_idle_timeout: positive(
            ctx,
            "server.tunnel_idle_timeout",
            raw.tunnel_idle_timeout.unwrap_or(DEFAULT_TUNNEL_IDLE_TIMEOUT),
        )?,
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

fn identity_value(source: &str) -> Result<IdentityValue, String> {
    Ok(match source {
        "subject" => IdentityValue::Subject,
        "scopes" => IdentityValue::Scopes,
        "roles" => IdentityValue::Roles,
        "client_id" => IdentityValue::ClientId,
        "issuer" => IdentityValue::Issuer,
        "client_cert_subject" => IdentityValue::ClientCertSubject,
        "client_cert_sha256" => IdentityValue::ClientCertSha256,
        _ => match source.strip_prefix("claim:") {
            Some(path) if !path.is_empty() => IdentityValue::Claim(ClaimPath::parse(path)?),
            _ => {
                return Err(format!(
                    "unknown source {source:?}; expected subject, scopes, roles, client_id, issuer, claim:<path>, \
                     client_cert_subject or client_cert_sha256"
                ))
            }
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
                let value = identity_value(&source).map_err(|m| ctx.err(&field, m))?;
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
            Origin::File(p, _) => write!(f, "{}", p.display()),
            Origin::Env(v) => f.write_str(v),
            Origin::Defaults => f.write_str("defaults"),
        }
    }
}

mod issuers;
mod routes;
mod tls;
mod trust;
mod upstreams;

use issuers::*;
pub(crate) use routes::check_scope_token;
use routes::*;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{render_effective, UpstreamProtocol};

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
const BASE: &str =
    "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://idp.example.com/\n    audiences: [api]\n";

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
    assert_eq!(c.server.drain_delay, Duration::from_secs(5));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.server.max_header_bytes, 65536);
    assert_eq!(c.server.worker_threads, None);
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.http2_max_concurrent_streams, 100);
    assert_eq!(c.server.http2_keep_alive_interval, Duration::from_secs(30));
    assert_eq!(c.server.http2_keep_alive_timeout, Duration::from_secs(10));
    assert_eq!(c.server.tunnel_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.upstream.as_ref().unwrap().max_in_flight, 1024);
    assert_eq!(c.upstream.as_ref().unwrap().uri.authority().unwrap().as_str(), "127.0.0.1:8081");
    assert_eq!(c.upstream.as_ref().unwrap().uri.path(), "/");
    assert_eq!(c.upstream.as_ref().unwrap().connect_timeout, Duration::from_secs(2));
    assert_eq!(c.upstream.as_ref().unwrap().response_timeout, Duration::from_secs(30));
    assert_eq!(c.upstream.as_ref().unwrap().pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(c.upstream.as_ref().unwrap().pool_max_idle_per_host, 64);
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
    assert_eq!(a.id, "main");
    assert_eq!(a.audience_check, AudienceCheck::Enabled);
    assert_eq!(a.mode, TokenMode::Jwt);
    assert!(a.introspection.is_none());
    assert_eq!(a.issuer, "https://idp.example.com/");
    assert!(matches!(&a.keys, KeySource::JwksUri(u) if u == "https://idp.example.com/.well-known/jwks.json"));
    assert_eq!(a.audiences, ["api"]);
    assert_eq!(a.algorithms, [Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(a.leeway, DEFAULT_LEEWAY);
    assert!(!a.require_at_jwt);
    assert_eq!(a.sources.scopes, [crate::config::ClaimPath::top("permissions")]);
    let b = &c.issuers[1];
    assert_eq!(b.id, b.issuer, "the id defaults to the issuer URL");
    assert!(matches!(b.keys, KeySource::Discovery));
    assert_eq!(b.audiences, ["api", "api://default"]);
    assert_eq!(b.algorithms, DEFAULT_ALGORITHMS);
    assert!(b.sources.scopes.is_empty());
    let s = &c.issuers[2];
    assert!(matches!(&s.keys, KeySource::Secret(x) if x.0 == SECRET.as_bytes()));
    assert_eq!(s.algorithms, [Algorithm::HS256]);
    assert_eq!((s.id.as_str(), &s.audiences[..]), ("internal", &["internal-jobs".to_string()][..]));
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
    assert_eq!(x.cache_max_bytes, DEFAULT_INTROSPECTION_CACHE_MAX_BYTES);
    assert_eq!(x.max_concurrent, DEFAULT_INTROSPECTION_MAX_CONCURRENT);
    assert_eq!((x.rate_limit, x.rate_burst), (DEFAULT_INTROSPECTION_RATE_LIMIT, 400));
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
    assert_eq!(admin.issuers, Some(vec![0]));
    assert_eq!(admin.audiences, Some(vec!["api".to_string()]));
    assert_eq!(admin.scopes, ["read", "write"]);
    assert_eq!(admin.scope_match, ScopeMatch::All);
    assert_eq!(
        admin.claims,
        [
            ClaimRule { claim: crate::config::ClaimPath::top("tenant"), test: ClaimTest::Equals("acme".into()) },
            ClaimRule { claim: crate::config::ClaimPath::top("groups"), test: ClaimTest::Contains("admins".into()) },
        ]
    );
    let RouteAuth::Required(api) = &c.routes[2].auth else { panic!("api requires auth") };
    assert_eq!(api.scope_match, ScopeMatch::Any);
    assert_eq!(api.audiences, None);
    assert_eq!(api.issuers, None);

    assert_eq!(c.identity.headers, Identity::default_headers());
    assert_eq!(c.identity.claims_header.as_ref().map(HeaderName::as_str), Some("x-auth-claims"));
    assert!(c.identity.forward_authorization);
}

/// TOKENGATE_UPSTREAM + TOKENGATE_ISSUER + TOKENGATE_AUDIENCE alone make a complete config.
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
    assert_eq!(c.upstream.as_ref().unwrap().uri.authority().unwrap().as_str(), "127.0.0.1:3000");
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
    // Both missing values at once.
    assert!(err.to_string().starts_with("2 problems:\n  upstream.url: "), "{err}");
    assert!(err.to_string().contains("TOKENGATE_UPSTREAM"), "{err}");
    assert!(err.to_string().contains("\n  issuers: ") && err.to_string().contains("TOKENGATE_ISSUER"), "{err}");
    let err = load(&Sources { file: None, env: env(&[(env::UPSTREAM, "http://a:1")]) }).unwrap_err();
    assert!(err.to_string().starts_with("issuers: ") && err.to_string().contains("TOKENGATE_ISSUER"), "{err}");
}

/// Env values replace the file's: listeners, upstream and the single issuer's fields.
#[test]
fn env_overrides_file() {
    let text = format!("{BASE}    jwks_uri: https://idp.example.com/jwks\nlisten: 0.0.0.0:1\n");
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
    assert_eq!(c.upstream.as_ref().unwrap().uri.authority().unwrap().as_str(), "upstream:9000");
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
    let err = load_text(BASE, env(&[(env::UPSTREAM, "ftp://app:8443")])).unwrap_err();
    assert!(err.to_string().starts_with("TOKENGATE_UPSTREAM: upstream.url: "), "{err}");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
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
    let prefix = format!("{}:5:18: ", file.0.display());
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
    assert_eq!(*location, Some((8, 5)));
    assert_eq!(field.as_deref(), Some("routes[0].scope"));
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}:8:5: routes[0].scope: unknown field", file.0.display())), "{msg}");
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
    assert!(msg.starts_with(&format!("{}:10:13: routes[1].scopes: invalid type", file.0.display())), "{msg}");
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

/// Every section's problem is reported in one run, each at its line and column, in file order.
#[test]
fn every_problem_in_one_run() {
    let text = "listen: nowhere\nserver:\n  max_connections: 0\nupstream:\n  url: ftp://app\nissuers:\n  - issuer: https://idp.example.com/\n    audiences: [api]\nrealm: 'a\"b'\n";
    let file = TempFile::new(text);
    let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
    let text = err.to_string();
    let name = file.0.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "4 problems:", "{text}");
    assert!(lines[1].starts_with(&format!("  {name}:1:1: listen: ")), "{text}");
    assert!(lines[2].starts_with(&format!("  {name}:9:1: realm: ")), "{text}");
    assert!(lines[3].starts_with(&format!("  {name}:3:3: server.max_connections: ")), "{text}");
    assert!(lines[4].starts_with(&format!("  {name}:5:3: upstream.url: ")), "{text}");
    assert_eq!(err.field(), Some("listen"));
}

/// Inside the issuers and routes, every item's problem is reported, not only the first's.
#[test]
fn every_issuer_and_route_problem_in_one_run() {
    let text = "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://a.example/\n    audiences: [api]\n    leeway: 1h\n  - issuer: https://b.example/\n    audiences: [api]\n    scope_claim: ''\nroutes:\n  - { id: 'bad id', path_prefix: / }\n  - { id: ok, path_prefix: /x, methods: [get] }\n";
    let file = TempFile::new(text);
    let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err().to_string();
    let name = file.0.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "only the issuers, then routes once issuers are valid: {err}");
    assert!(lines[1].starts_with(&format!("  {name}:5:5: issuers[0].leeway: ")), "{err}");
    assert!(lines[2].starts_with(&format!("  {name}:8:5: issuers[1].scope_claim: ")), "{err}");
    // With the issuers fixed, both routes' problems.
    let text = text.replace("    leeway: 1h\n", "").replace("    scope_claim: ''\n", "");
    let file = TempFile::new(&text);
    let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[1].contains("routes[0].id: "), "{err}");
    assert!(lines[2].contains("routes[1].methods[0]: "), "{err}");
}

/// Validation errors read `file:line:column: field: message`, at the key's position.
#[test]
fn validation_error_format() {
    let text = format!("{BASE}    jwks_uri: http://idp.example.com/jwks\n");
    let line = text.lines().count();
    let file = TempFile::new(&text);
    let err = load(&Sources { file: Some(file.0.clone()), env: HashMap::new() }).unwrap_err();
    let prefix = format!("{}:{line}:5: issuers[0].jwks_uri: ", file.0.display());
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

/// upstream.url is required, unless the decision service runs alone; with neither, the error
/// names both ways out.
#[test]
fn upstream_required() {
    assert_invalid_full("issuers: [{ issuer: https://i/ }]\n", "upstream.url", "TOKENGATE_UPSTREAM");
    assert_invalid_full("issuers: [{ issuer: https://i/ }]\n", "upstream.url", "only TOKENGATE_DECISION_LISTEN");
    let alone = "issuers: [{ issuer: https://i/, audiences: [api] }]\ndecision: { listen: 0.0.0.0:8080 }\n";
    let c = load_ok(alone);
    assert!(c.upstream.is_none());
    assert_eq!(c.decision.unwrap().listen.port(), 8080, "no proxy listener: its default port is free");
    let c = load_text(
        "issuers: [{ issuer: https://i/, audiences: [api] }]\n",
        env(&[(env::DECISION_LISTEN, "127.0.0.1:8181")]),
    );
    assert!(c.unwrap().upstream.is_none());
    // Upstream settings without a URL are still a mistake, decision service or not.
    assert_invalid_full(
        "upstream: { connect_timeout: 1s }\nissuers: [{ issuer: https://i/ }]\ndecision: { listen: 127.0.0.1:8181 }\n",
        "upstream.url",
        "is required",
    );
}

/// upstream.url is http, https or h2c; the TLS keys only go with https.
#[test]
fn upstream_schemes() {
    let issuers = "issuers: [{ issuer: https://i/, audiences: [api] }]\n";
    assert_invalid_full(&format!("upstream: {{ url: 'ftp://a:1' }}\n{issuers}"), "upstream.url", "unsupported scheme");
    for (url, protocol) in [
        ("http://a:1", UpstreamProtocol::Http1),
        ("https://a:1", UpstreamProtocol::Tls),
        ("h2c://a:1", UpstreamProtocol::H2c),
    ] {
        let c = load_ok(&format!("upstream: {{ url: '{url}' }}\n{issuers}"));
        let u = c.upstream.unwrap();
        assert_eq!((u.protocol, u.tls.is_some()), (protocol, protocol == UpstreamProtocol::Tls), "{url}");
    }
    let c = load_ok(&format!("upstream: {{ url: 'https://10.0.0.1:8443', server_name: api.internal }}\n{issuers}"));
    let tls = c.upstream.unwrap().tls.unwrap();
    assert_eq!(format!("{:?}", tls.server_name), "DnsName(\"api.internal\")");
    assert!(tls.roots.is_none(), "webpki roots by default");
    assert_invalid_full(
        &format!("upstream: {{ url: 'h2c://a:1', ca: /x.pem }}\n{issuers}"),
        "upstream.ca",
        "only used with an https:// upstream",
    );
    assert_invalid_full(
        &format!("upstream: {{ url: 'https://a:1', ca: /does/not/exist.pem }}\n{issuers}"),
        "upstream.ca",
        "/does/not/exist.pem",
    );
    assert_invalid_full(
        &format!("upstream: {{ url: 'https://a:1', client_cert: /c.pem }}\n{issuers}"),
        "upstream.client_key",
        "is required with client_cert",
    );
}

/// Routes name upstreams of `upstreams`; with no default upstream every route must name one.
#[test]
fn named_upstreams() {
    let issuers = "issuers: [{ issuer: https://i/, audiences: [api] }]\n";
    let c = load_ok(&format!(
        "upstream: {{ url: 'http://a:1' }}\nupstreams: {{ grpc: {{ url: 'h2c://g:50051', response_timeout: 5s }}, files: {{ url: 'http://f:80' }} }}\n{issuers}routes:\n  - {{ id: g, path_prefix: /pkg.Service, upstream: grpc }}\n  - {{ id: rest, path_prefix: / }}\n"
    ));
    let names: Vec<&str> = c.upstreams.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["files", "grpc"]);
    assert_eq!(c.upstreams[1].1.response_timeout, Duration::from_secs(5));
    assert_eq!(c.routes[0].upstream.as_deref(), Some("grpc"));
    assert_eq!(c.routes[1].upstream, None);
    assert!(c.proxies());
    // Only named upstreams: fine when every route names one.
    let c = load_ok(&format!(
        "upstreams: {{ a: {{ url: 'http://a:1' }} }}\n{issuers}routes: [{{ id: r, path_prefix: /, upstream: a }}]\n"
    ));
    assert!(c.upstream.is_none() && c.proxies());
    assert_invalid_full(
        &format!("upstreams: {{ a: {{ url: 'http://a:1' }} }}\n{issuers}routes: [{{ id: r, path_prefix: / }}]\n"),
        "routes[0].upstream",
        "there is no default upstream.url",
    );
    assert_invalid_full(
        &format!("upstream: {{ url: 'http://a:1' }}\nupstreams: {{ a: {{ url: 'http://a:1' }} }}\n{issuers}routes: [{{ id: r, path_prefix: /, upstream: b }}]\n"),
        "routes[0].upstream",
        "\"b\" is not a key of upstreams (known: a)",
    );
    assert_invalid_full(
        &format!("upstream: {{ url: 'http://a:1' }}\nupstreams: {{ a: {{ connect_timeout: 1s }} }}\n{issuers}"),
        "upstreams.a.url",
        "is required",
    );
    assert_invalid_full(
        &format!("upstream: {{ url: 'http://a:1' }}\nupstreams: {{ 'a b': {{ url: 'http://a:1' }} }}\n{issuers}"),
        "upstreams.a b",
        "must match",
    );
}

/// upstream.url must not have a path or query.
#[test]
fn upstream_must_not_have_path() {
    let issuers = "issuers: [{ issuer: https://i/, audiences: [api] }]\n";
    assert_invalid_full(&format!("upstream: {{ url: http://a:1/api }}\n{issuers}"), "upstream.url", "has a path");
    assert_invalid_full(&format!("upstream: {{ url: 'http://a:1/?x=1' }}\n{issuers}"), "upstream.url", "query");
    let c = load_ok(&format!("upstream: {{ url: http://a:1/ }}\n{issuers}"));
    assert_eq!(c.upstream.as_ref().unwrap().uri.path(), "/");
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
    assert_invalid("server: { max_connections: 0 }\n", "server.max_connections", "greater than zero");
    assert_invalid(
        "server: { http2_max_concurrent_streams: 0 }\n",
        "server.http2_max_concurrent_streams",
        "at least 1",
    );
    for key in [
        "idle_timeout",
        "body_read_timeout",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "tunnel_idle_timeout",
    ] {
        assert_invalid(&format!("server: {{ {key}: 0s }}\n"), &format!("server.{key}"), "greater than zero");
    }
    assert_invalid(
        "server: { header_read_timeout: 20s, idle_timeout: 10s }\n",
        "server.idle_timeout",
        "at least server.header_read_timeout (20s)",
    );
    assert_invalid_full(
        "upstream: { url: http://a:1, max_in_flight: 0 }\nissuers: [{ issuer: https://i/ }]\n",
        "upstream.max_in_flight",
        "greater than zero",
    );
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
        load_ok(&format!("{BASE}  - {{ issuer: \"{ok}\", audiences: [api] }}\n"));
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
        "already an issuer or alias of issuers[0]",
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

/// host is canonical (lower-case, no trailing dot) and may name a port.
#[test]
fn route_host_rules() {
    let c = load_ok(&format!("{BASE}routes: [{{ id: a, host: 'API.Example.com.:08443', path_prefix: / }}]\n"));
    assert_eq!((c.routes[0].host.as_deref(), c.routes[0].port), (Some("api.example.com"), Some(8443)));
    let c = load_ok(&format!("{BASE}routes: [{{ id: a, host: API.Example.com, path_prefix: / }}]\n"));
    assert_eq!((c.routes[0].host.as_deref(), c.routes[0].port), (Some("api.example.com"), None));
    for bad in ["'a b'", "'u@a'", "'a:0'", "'a..b'", "'a:x'"] {
        assert_invalid(
            &format!("routes: [{{ id: a, host: {bad}, path_prefix: / }}]\n"),
            "routes[0].host",
            "not a valid host",
        );
    }
}

/// A path prefix is written as the decoded canonical path it matches.
#[test]
fn path_prefix_canonical() {
    for (bad, why) in [
        ("/a%2Fb", "must not contain '%'"),
        ("/a;b", "must not contain '%', ';'"),
        ("'/a\\b'", "must not contain '%', ';', '\\'"),
        // Whitespace and control characters alone (no other forbidden character) are enough.
        ("'/a b'", "whitespace or control characters"),
        ("\"/a\\tb\"", "whitespace or control characters"),
        ("//a", "'//'"),
        ("/a/../b", "'..' segment"),
        ("/a/.", "'..' segment"),
    ] {
        assert_invalid(&format!("routes: [{{ id: a, path_prefix: {bad} }}]\n"), "routes[0].path_prefix", why);
    }
    let c = load_ok(&format!("{BASE}routes: [{{ id: a, path_prefix: /café/.well-known, case_insensitive: true }}]\n"));
    assert!(c.routes[0].case_insensitive);
}

/// `paths:` sets encoded-slash handling and the routes' default case sensitivity.
#[test]
fn paths_section() {
    let c = load_ok(&format!("{BASE}routes: [{{ id: a, path_prefix: / }}]\n"));
    assert_eq!(c.paths, PathSettings::default());
    assert!(!c.routes[0].case_insensitive);
    let text = format!(
        "{BASE}paths: {{ encoded_slashes: keep, case_insensitive: true }}\nroutes: [{{ id: a, path_prefix: / }}, {{ id: b, path_prefix: /b, case_insensitive: false }}]\n"
    );
    let c = load_ok(&text);
    assert!(c.paths.keep_encoded_slashes);
    assert!(c.routes[0].case_insensitive && !c.routes[1].case_insensitive);
    assert_invalid("paths: { encoded_slashes: decode }\n", "paths.encoded_slashes", "unknown variant");
}

/// TOKENGATE_TRUSTED_PROXIES lists CIDRs; a bad entry names the variable.
#[test]
fn trusted_proxies_from_env() {
    let c = load_text(BASE, env(&[(env::TRUSTED_PROXIES, "10.0.0.0/8, 192.168.1.7")])).unwrap();
    assert_eq!(c.trusted_proxies.len(), 2);
    let err = load_text(BASE, env(&[(env::TRUSTED_PROXIES, "10.0.0.0/8,lb")])).unwrap_err();
    assert!(err.to_string().starts_with("TOKENGATE_TRUSTED_PROXIES: trusted_proxies[1]: "), "{err}");
    let err = load_text(BASE, env(&[(env::TRUSTED_PROXIES, " , ")])).unwrap_err();
    assert!(err.to_string().contains("holds no network"), "{err}");
}

/// `decision:` starts the decision service on a port of its own; its trusted peers default to
/// loopback and are set from the file or TOKENGATE_DECISION_TRUSTED_PEERS.
#[test]
fn decision_section() {
    assert_eq!(load_ok(BASE).decision, None);
    let c = load_ok(&format!("{BASE}decision: {{ listen: 127.0.0.1:8181 }}\n"));
    let d = c.decision.unwrap();
    assert_eq!(d.listen, "127.0.0.1:8181".parse().unwrap());
    assert_eq!(d.trusted_peers, ["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
    let c = load_ok(&format!("{BASE}decision: {{ listen: 127.0.0.1:8181, trusted_peers: [10.1.0.0/16] }}\n"));
    assert_eq!(c.decision.unwrap().trusted_peers, ["10.1.0.0/16".parse().unwrap()]);

    let vars = env(&[(env::DECISION_LISTEN, "0.0.0.0:8181"), (env::DECISION_TRUSTED_PEERS, "10.0.0.0/8, 10.9.9.9")]);
    let d = load_text(BASE, vars).unwrap().decision.unwrap();
    assert_eq!(d.listen, "0.0.0.0:8181".parse().unwrap());
    assert_eq!(d.trusted_peers, ["10.0.0.0/8".parse().unwrap(), "10.9.9.9/32".parse().unwrap()]);

    assert_invalid("decision: { trusted_peers: [10.0.0.0/8] }\n", "decision.listen", "is required");
    assert_invalid("decision: { listen: nowhere }\n", "decision.listen", "not a socket address");
    assert_invalid("decision: { listen: 127.0.0.1:8080 }\n", "decision.listen", "overlaps listen");
    assert_invalid("decision: { listen: 127.0.0.1:9090 }\n", "decision.listen", "overlaps admin_listen");
    assert_invalid(
        "decision: { listen: 127.0.0.1:8181, trusted_peers: [ingress] }\n",
        "decision.trusted_peers[0]",
        "not an IP network",
    );
    let err = load_text(BASE, env(&[(env::DECISION_TRUSTED_PEERS, "10.0.0.0/8")])).unwrap_err();
    assert_eq!(err.field(), Some("decision.listen"), "{err}");
}

/// trusted_proxies are CIDRs or addresses.
#[test]
fn trusted_proxies_rules() {
    let c = load_ok(&format!("{BASE}trusted_proxies: [10.0.0.0/8, 192.168.1.7, 'fd00::/8', 10.1.2.3/8]\n"));
    let nets: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "10.0.0.0/8"]);
    assert_invalid("trusted_proxies: [10.0.0.0/33]\n", "trusted_proxies[0]", "not an IP network");
    assert_invalid("trusted_proxies: [lb.example]\n", "trusted_proxies[0]", "not an IP network");
}

/// methods are valid, upper-case and non-empty.
#[test]
fn route_methods() {
    assert_invalid("routes: [{ id: a, path_prefix: /, methods: [get] }]\n", "routes[0].methods[0]", "case-sensitive");
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
    assert_invalid("routes: [{ id: a, path_prefix: /, audiences: [] }]\n", "routes[0].audiences", "must not be empty");
}

/// Scopes must be RFC 6749 §3.3 scope-tokens.
#[test]
fn scope_tokens() {
    assert_invalid("routes: [{ id: a, path_prefix: /, scopes: [ok, 'a b'] }]\n", "routes[0].scopes[1]", "scope-token");
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

/// Identity sources are subject | scopes | roles | client_id | issuer | claim:<path>.
#[test]
fn identity_sources() {
    assert_invalid("identity: { headers: { X-A: sub } }\n", "identity.headers.X-A", "expected subject, scopes");
    assert_invalid("identity: { headers: { X-A: 'claim:' } }\n", "identity.headers.X-A", "claim:<path>");
    let c = load_ok(&format!("{BASE}identity: {{ headers: {{ X-Tenant: 'claim:tenant' }} }}\n"));
    assert_eq!(c.identity.headers[0].value, IdentityValue::Claim(crate::config::ClaimPath::top("tenant")));
    assert_eq!(load_ok(&format!("{BASE}identity: {{ headers: {{}} }}\n")).identity.headers, []);
}

/// The same identity header twice (any case) is refused, and claims_header is not one of them.
#[test]
fn identity_header_duplicates() {
    let err = load_text(&format!("{BASE}identity:\n  headers:\n    X-A: subject\n    x-a: issuer\n"), HashMap::new())
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
    assert_eq!((x.cache_max_bytes, x.max_concurrent, x.rate_limit, x.rate_burst), (32 << 20, 64, 200.0, 400));
}

/// Every introspection key parses; mode: introspection leaves the issuer without keys.
#[test]
fn introspection_section_parses() {
    let c = load_ok(&format!(
        "{BASE}    mode: introspection\n    introspection:\n      endpoint: https://idp.example.com/introspect\n      \
         client_id: gw\n      client_secret: s3cret\n      auth_method: client_secret_post\n      \
         timeout: 500ms\n      cache_max_ttl: 0s\n      negative_ttl: 1s\n      cache_capacity: 10\n      \
         breaker_failures: 2\n      breaker_open_for: 1m\n      cache_max_bytes: 4096\n      \
         max_concurrent: 3\n      rate_limit: 0.5\n      rate_burst: 7\n"
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
    assert_eq!((x.cache_max_bytes, x.max_concurrent, x.rate_limit, x.rate_burst), (4096, 3, 0.5, 7));
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
    let err =
        load_text(&format!("{BASE}{}", i("client_id: gw, client_secret: s3cret, breaker_failures: 0")), HashMap::new())
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
    assert_invalid(&i("cache_max_bytes: 0"), &f("cache_max_bytes"), "greater than zero");
    assert_invalid(&i("max_concurrent: 0"), &f("max_concurrent"), "greater than zero");
    for bad in ["0", "-1", ".nan", ".inf"] {
        assert_invalid(&i(&format!("rate_limit: {bad}")), &f("rate_limit"), "greater than zero");
    }
    assert_invalid(&i("rate_burst: 0"), &f("rate_burst"), "at least 1");
    // The burst defaults to two seconds of the rate, at least one call.
    let burst = |extra: &str| {
        let c = load_ok(&format!("{BASE}{}", i(extra)));
        c.issuers[0].introspection.as_ref().unwrap().rate_burst
    };
    assert_eq!((burst("rate_limit: 10"), burst("rate_limit: 0.1"), burst("rate_limit: 1e12")), (20, 1, u32::MAX));
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
        (env::AUDIENCE, "api"),
        (env::REQUIRED_SCOPES, "read"),
    ]);
    let first = load(&Sources { file: None, env: e }).unwrap();
    let rendered = render_effective(&first);
    let second = load_text(&rendered, HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
}

mod idp;

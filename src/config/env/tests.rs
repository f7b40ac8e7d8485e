//! `TOKENGATE_*` variables applied to the raw config, and the warnings about unknown ones.

use super::super::raw::RawAudienceCheck;
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Lists split on spaces and commas.
#[test]
fn list_splitting() {
    assert_eq!(split_list(" a, b  c,,d "), ["a", "b", "c", "d"]);
}

/// Unknown `TOKENGATE_*` names are reported for `main` to warn about.
#[test]
fn unrecognized_vars() {
    let e = env(&[
        ("TOKENGATE_AUDIENCES", "x"),
        ("TOKENGATE_CONFIG", "f"),
        ("TOKENGATE_LOG_FORMAT", "json"),
        (LISTEN, "x"),
        ("HOME", "/"),
    ]);
    assert_eq!(unrecognized(&e), ["TOKENGATE_AUDIENCES"]);
}

/// Service links injected for a Kubernetes Service named `tokengate` are not ours: no warning.
#[test]
fn kubernetes_service_links_are_ignored() {
    let e = env(&[
        ("TOKENGATE_SERVICE_HOST", "10.0.0.1"),
        ("TOKENGATE_SERVICE_PORT", "8080"),
        ("TOKENGATE_SERVICE_PORT_HTTP", "8080"),
        ("TOKENGATE_PORT", "tcp://10.0.0.1:8080"),
        ("TOKENGATE_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
        ("TOKENGATE_PORT_8080_TCP_PROTO", "tcp"),
        ("TOKENGATE_PORT_8080_TCP_ADDR", "10.0.0.1"),
    ]);
    assert!(unrecognized(&e).is_empty(), "{:?}", unrecognized(&e));
}

/// A misspelt variable is named with the closest known one; a far-off name gets no guess.
#[test]
fn warnings_suggest_the_closest_name() {
    assert_eq!(closest("TOKENGATE_AUDIENCES"), Some(AUDIENCE));
    assert_eq!(closest("TOKENGATE_JWKS_URL"), Some(JWKS_URI));
    assert_eq!(closest("TOKENGATE_UPSTREAM_URL"), Some(UPSTREAM));
    assert_eq!(closest("TOKENGATE_AUDIENCE_CHEK"), Some(AUDIENCE_CHECK));
    assert_eq!(closest("TOKENGATE_REQUIRED_SCOPE"), Some(REQUIRED_SCOPES));
    assert_eq!(closest("TOKENGATE_X"), None);
    assert_eq!(closest("TOKENGATE_SOMETHING_ELSE"), None);
    let w = warnings(&env(&[("TOKENGATE_AUDIENCES", "orders")]));
    assert_eq!(w, ["TOKENGATE_AUDIENCES is not a tokengate variable and is ignored; did you mean TOKENGATE_AUDIENCE?"]);
    assert!(!w[0].contains("orders"), "the value is never echoed");
}

/// TOKENGATE_AUDIENCE_CHECK takes only `disabled` or `enabled`.
#[test]
fn audience_check_words() {
    let mut raw = RawConfig::default();
    let e = env(&[(ISSUER, "https://i/"), (AUDIENCE_CHECK, "disabled")]);
    apply(&mut raw, &e, &mut Provenance::default()).unwrap();
    assert_eq!(raw.issuers.unwrap()[0].audience_check, Some(RawAudienceCheck::Disabled));
    for bad in ["off", "false", "Disabled", "no"] {
        let e = env(&[(ISSUER, "https://i/"), (AUDIENCE_CHECK, bad)]);
        let err = apply(&mut RawConfig::default(), &e, &mut Provenance::default()).unwrap_err();
        assert!(err.to_string().starts_with("TOKENGATE_AUDIENCE_CHECK: issuers[0].audience_check: "), "{err}");
    }
}

const CANARY: &str = "canary-7hQ2-never-print-me-0123456789abcdef";

fn sidecar(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e = env(&[(UPSTREAM, "http://127.0.0.1:8081"), (ISSUER, "https://idp.example.com/"), (AUDIENCE, "api")]);
    e.extend(env(extra));
    e
}

fn load_env(e: HashMap<String, String>) -> Result<crate::config::Config, ConfigError> {
    crate::config::load(&crate::config::Sources { file: None, env: e })
}

fn load_file(text: &str, e: HashMap<String, String>) -> Result<crate::config::Config, ConfigError> {
    crate::config::load_text(std::path::Path::new("t.yaml"), text, &e)
}

fn temp(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tokengate-env-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

/// Scalars of every section come from `TOKENGATE_<SECTION>_<KEY>`, parsed as the file would
/// parse them: durations, counts, booleans, words; a number-like string stays a string.
#[test]
fn every_section_is_reachable() {
    let c = load_env(sidecar(&[
        ("TOKENGATE_SERVER_SHUTDOWN_GRACE", "3s"),
        ("TOKENGATE_SERVER_WORKER_THREADS", "2"),
        ("TOKENGATE_SERVER_TUNNEL_IDLE_TIMEOUT", "90s"),
        ("TOKENGATE_UPSTREAM_RESPONSE_TIMEOUT", "45s"),
        ("TOKENGATE_TOKENS_QUERY", "true"),
        ("TOKENGATE_JWKS_FETCH_TIMEOUT", "1500ms"),
        ("TOKENGATE_TOKEN_CACHE_ENABLED", "false"),
        ("TOKENGATE_TOKEN_CACHE_MAX_ENTRIES", "10"),
        ("TOKENGATE_PATHS_ENCODED_SLASHES", "keep"),
        ("TOKENGATE_IDENTITY_CLAIMS_HEADER", "X-Claims"),
        ("TOKENGATE_IDENTITY_FORWARD_AUTHORIZATION", "false"),
        ("TOKENGATE_REALM", "12345"),
        ("TOKENGATE_ISSUER_LEEWAY", "10s"),
        ("TOKENGATE_ISSUER_SCOPE_CLAIM", "permissions"),
    ]))
    .unwrap();
    assert_eq!(c.server.shutdown_grace, std::time::Duration::from_secs(3));
    assert_eq!(c.server.worker_threads, Some(2));
    assert_eq!(c.server.tunnel_idle_timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.upstream.unwrap().response_timeout, std::time::Duration::from_secs(45));
    assert!(c.tokens.allow_query);
    assert_eq!(c.jwks.fetch_timeout, std::time::Duration::from_millis(1500));
    assert!(!c.token_cache.enabled);
    assert_eq!(c.token_cache.max_entries, 10);
    assert!(c.paths.keep_encoded_slashes);
    assert!(!c.identity.forward_authorization);
    assert_eq!(c.realm, "12345");
    assert_eq!(c.issuers[0].leeway, std::time::Duration::from_secs(10));
    assert_eq!(c.issuers[0].sources.scopes, [crate::config::ClaimPath::top("permissions")]);
}

/// A variable overrides its key; the file's other keys in the same section stay.
#[test]
fn env_overrides_one_key_of_a_section() {
    let text = "upstream: { url: http://127.0.0.1:1 }\nserver: { shutdown_grace: 20s, header_read_timeout: 7s }\n\
                issuers: [{ issuer: https://i.example/, audiences: [api], leeway: 5s }]\n";
    let c =
        load_file(text, env(&[("TOKENGATE_SERVER_SHUTDOWN_GRACE", "3s"), ("TOKENGATE_ISSUER_MODE", "jwt")])).unwrap();
    assert_eq!(c.server.shutdown_grace, std::time::Duration::from_secs(3));
    assert_eq!(c.server.header_read_timeout, std::time::Duration::from_secs(7));
    assert_eq!(c.issuers[0].leeway, std::time::Duration::from_secs(5));
    // A value the validator refuses is reported against the variable, not the file.
    let err = load_file(text, env(&[("TOKENGATE_SERVER_IDLE_TIMEOUT", "1s")])).unwrap_err();
    assert!(err.to_string().starts_with("TOKENGATE_SERVER_IDLE_TIMEOUT: server.idle_timeout: is 1s"), "{err}");
}

/// Applying variables leaves everything else in the file as it was, in file order: the identity
/// headers, claim values, a fractional rate.
#[test]
fn applying_keeps_the_rest_of_the_file() {
    let text = "upstream: { url: http://127.0.0.1:1 }\n\
                identity:\n  headers: { X-Zed: subject, X-Alpha: scopes, X-Mid: 'claim:tenant' }\n\
                issuers:\n  - issuer: https://i.example/\n    audiences: [api]\n    \
                introspection: { client_id: gw, client_secret: s, rate_limit: 12.5 }\n\
                routes:\n  - { id: r, path_prefix: /, claims: [{ claim: n, equals: 7 }, { claim: f, equals: 1.5 }] }\n";
    let untouched = load_file(text, HashMap::new()).unwrap();
    let e = env(&[("TOKENGATE_SERVER_SHUTDOWN_GRACE", "3s"), ("TOKENGATE_ISSUER_LEEWAY", "1s")]);
    let applied = load_file(text, e).unwrap();
    let names = |c: &crate::config::Config| c.identity.headers.iter().map(|h| h.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&applied), ["x-zed", "x-alpha", "x-mid"]);
    assert_eq!(format!("{:?}", applied.routes), format!("{:?}", untouched.routes));
    assert_eq!(applied.issuers[0].introspection.as_ref().unwrap().rate_limit, 12.5);
}

/// A value of the wrong type names the variable, the key and what is expected.
#[test]
fn bad_values_name_variable_key_and_type() {
    let cases = [
        ("TOKENGATE_SERVER_SHUTDOWN_GRACE", "3", "server.shutdown_grace: \"3\" is not accepted; expected a duration"),
        ("TOKENGATE_SERVER_MAX_CONNECTIONS", "-1", "server.max_connections: \"-1\" is not accepted; expected a whole"),
        ("TOKENGATE_SERVER_HTTP2_MAX_CONCURRENT_STREAMS", "5000000000", "expected a whole number from 0 to 4294967295"),
        ("TOKENGATE_TOKENS_FORM_BODY", "yes", "tokens.form_body: \"yes\" is not accepted; expected `true` or `false`"),
        ("TOKENGATE_PATHS_ENCODED_SLASHES", "decode", "expected `refuse` or `keep`"),
        ("TOKENGATE_INTROSPECTION_RATE_LIMIT", "fast", "issuers[0].introspection.rate_limit: \"fast\" is not"),
        (AUDIENCE_CHECK, "off", "issuers[0].audience_check: \"off\" is not accepted; expected `enabled` or `disabled`"),
        ("TOKENGATE_PROTECTED_RESOURCE_SCOPES_SUPPORTED", " , ", "protected_resource.scopes_supported: holds no"),
    ];
    for (var, value, needle) in cases {
        let err = apply(&mut RawConfig::default(), &sidecar(&[(var, value)]), &mut Provenance::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{var}: ")) && msg.contains(needle), "{var}: {msg}");
    }
}

/// Introspection from the short names, applied to the issuer TOKENGATE_ISSUER creates; the
/// rest of the section from `TOKENGATE_INTROSPECTION_<KEY>`.
#[test]
fn introspection_from_the_environment() {
    let c = load_env(sidecar(&[
        (INTROSPECTION_URI, "https://idp.example.com/introspect"),
        (CLIENT_ID, "12345"),
        (CLIENT_SECRET, CANARY),
        ("TOKENGATE_INTROSPECTION_AUTH_METHOD", "client_secret_post"),
        ("TOKENGATE_INTROSPECTION_TIMEOUT", "2s"),
        ("TOKENGATE_INTROSPECTION_RATE_LIMIT", "50.5"),
    ]))
    .unwrap();
    let issuer = &c.issuers[0];
    assert_eq!(issuer.mode, crate::config::TokenMode::Auto);
    let x = issuer.introspection.as_ref().unwrap();
    assert_eq!(x.endpoint.as_deref(), Some("https://idp.example.com/introspect"));
    assert_eq!((x.client_id.as_str(), x.client_secret.0.as_slice()), ("12345", CANARY.as_bytes()));
    assert_eq!(x.auth_method, crate::config::ClientAuthMethod::ClientSecretPost);
    assert_eq!((x.timeout, x.rate_limit), (std::time::Duration::from_secs(2), 50.5));
    // Without an endpoint, discovery supplies it; mode introspection from TOKENGATE_ISSUER_MODE.
    let c =
        load_env(sidecar(&[(CLIENT_ID, "gw"), (CLIENT_SECRET, CANARY), ("TOKENGATE_ISSUER_MODE", "introspection")]))
            .unwrap();
    let x = c.issuers[0].introspection.as_ref().unwrap();
    assert_eq!((x.endpoint.as_deref(), c.issuers[0].mode), (None, crate::config::TokenMode::Introspection));
}

/// The variables override the file's single issuer's introspection key by key.
#[test]
fn introspection_overrides_the_files_issuer() {
    let text =
        "upstream: { url: http://127.0.0.1:1 }\nissuers:\n  - issuer: https://i.example/\n    audiences: [api]\n    \
                introspection: { client_id: file-id, client_secret: file-secret, timeout: 4s }\n";
    let c = load_file(text, env(&[(CLIENT_SECRET, CANARY)])).unwrap();
    let x = c.issuers[0].introspection.as_ref().unwrap();
    assert_eq!((x.client_id.as_str(), x.client_secret.0.as_slice()), ("file-id", CANARY.as_bytes()));
    assert_eq!(x.timeout, std::time::Duration::from_secs(4));
}

/// Negative: introspection variables follow the single-issuer rules, and a section the
/// environment creates is reported against the variable that created it.
#[test]
fn introspection_variables_need_one_issuer() {
    let e = env(&[(UPSTREAM, "http://a:1"), (CLIENT_ID, "gw"), (CLIENT_SECRET, CANARY)]);
    let err = load_env(e).unwrap_err().to_string();
    assert!(err.starts_with("TOKENGATE_CLIENT_ID: issuers: ") && err.contains("set TOKENGATE_ISSUER"), "{err}");
    assert!(!err.contains(CANARY), "{err}");

    let two = "upstream: { url: http://127.0.0.1:1 }\nissuers:\n  - { issuer: https://a.example/, audiences: [x] }\n  \
               - { issuer: https://b.example/, audiences: [x] }\n";
    let err = load_file(two, env(&[(CLIENT_SECRET, CANARY)])).unwrap_err().to_string();
    assert!(err.starts_with("TOKENGATE_CLIENT_SECRET: issuers: the config file defines 2 issuers"), "{err}");
    assert!(!err.contains(CANARY), "{err}");

    let err = load_env(sidecar(&[(INTROSPECTION_URI, "https://idp.example.com/i")])).unwrap_err().to_string();
    assert!(err.starts_with("TOKENGATE_INTROSPECTION_URI: issuers[0].introspection.client_id: is required"), "{err}");
    let err = load_env(sidecar(&[(CLIENT_ID, "gw")])).unwrap_err().to_string();
    assert!(err.starts_with("TOKENGATE_CLIENT_ID: issuers[0].introspection.client_secret: is required"), "{err}");
    let err = load_env(sidecar(&[(CLIENT_ID, "gw"), (CLIENT_SECRET, CANARY), (INTROSPECTION_URI, "http://idp/i")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("TOKENGATE_INTROSPECTION_URI: issuers[0].introspection.endpoint: "), "{err}");
}

/// Secrets come from `X_FILE` (one trailing newline removed) and never show in errors or Debug.
#[test]
fn secrets_from_files() {
    let secret = temp("client", &format!("{CANARY}\n"));
    let hmac = temp("hmac", &format!("{CANARY}\r\n"));
    let e = sidecar(&[
        ("TOKENGATE_CLIENT_ID", "gw"),
        ("TOKENGATE_CLIENT_SECRET_FILE", secret.to_str().unwrap()),
        ("TOKENGATE_ISSUER_HMAC_SECRET_FILE", hmac.to_str().unwrap()),
    ]);
    let mut raw = RawConfig::default();
    apply(&mut raw, &e, &mut Provenance::default()).unwrap();
    assert!(!format!("{raw:?}").contains(CANARY), "Debug shows a secret: {raw:?}");
    let c = load_env(e).unwrap();
    std::fs::remove_file(&secret).ok();
    std::fs::remove_file(&hmac).ok();
    assert_eq!(c.issuers[0].introspection.as_ref().unwrap().client_secret.0, CANARY.as_bytes());
    assert!(matches!(&c.issuers[0].keys, crate::config::KeySource::Secret(s) if s.0 == CANARY.as_bytes()));
    let shown = format!("{c:?}\n{}", crate::config::render_effective(&c));
    assert!(!shown.contains(CANARY), "{shown}");
}

/// Negative: a secret that the validator refuses, or a secret set twice, is never echoed.
#[test]
fn secrets_never_appear_in_errors() {
    let short = "short-canary";
    let err = load_env(sidecar(&[("TOKENGATE_ISSUER_HMAC_SECRET", short)])).unwrap_err().to_string();
    assert!(err.starts_with("TOKENGATE_ISSUER_HMAC_SECRET: issuers[0].hmac_secret: is 12 bytes"), "{err}");
    assert!(!err.contains(short), "{err}");
    let path = temp("twice", CANARY);
    let e = sidecar(&[(CLIENT_SECRET, CANARY), ("TOKENGATE_CLIENT_SECRET_FILE", path.to_str().unwrap())]);
    let err = load_env(e).unwrap_err().to_string();
    std::fs::remove_file(&path).ok();
    assert!(err.starts_with("TOKENGATE_CLIENT_SECRET_FILE: issuers[0].introspection.client_secret: "), "{err}");
    assert!(!err.contains(CANARY), "{err}");
}

/// The nearest recorded key names the variable: a key set by its own variable is not blamed on
/// the one that created its section.
#[test]
fn provenance_prefers_the_nearest_key() {
    let mut p = Provenance::default();
    p.record("issuers[0].introspection", INTROSPECTION_URI);
    p.record("issuers[0].introspection.client_id", CLIENT_ID);
    assert_eq!(p.lookup("issuers[0].introspection.client_id"), Some(CLIENT_ID));
    assert_eq!(p.lookup("issuers[0].introspection.timeout"), Some(INTROSPECTION_URI));
    assert_eq!(p.lookup("issuers[0].introspections"), None);
    assert_eq!(p.lookup("issuers[0]"), None);
}

/// The larger set of names: `_FILE` names are known, a `_FILE` of a non-secret is explained,
/// and a name missing its section is found.
#[test]
fn warnings_know_every_name() {
    for name in ["TOKENGATE_CLIENT_SECRET_FILE", "TOKENGATE_ISSUER_HMAC_SECRET_FILE", "TOKENGATE_SERVER_SHUTDOWN_GRACE"]
    {
        assert!(unrecognized(&env(&[(name, "x")])).is_empty(), "{name}");
    }
    assert_eq!(closest("TOKENGATE_CLIENT_SECRET_PATH"), Some("TOKENGATE_CLIENT_SECRET_FILE"));
    assert_eq!(closest("TOKENGATE_CLIENT_SECRETS_FILE"), Some("TOKENGATE_CLIENT_SECRET_FILE"));
    assert_eq!(closest("TOKENGATE_SHUTDOWN_GRACE"), Some("TOKENGATE_SERVER_SHUTDOWN_GRACE"));
    assert_eq!(closest("TOKENGATE_FETCH_TIMEOUT"), Some("TOKENGATE_JWKS_FETCH_TIMEOUT"));
    assert_eq!(closest("TOKENGATE_INTROSPECTION_URL"), Some(INTROSPECTION_URI));
    // Ambiguous (tokens.max_bytes, token_cache.max_bytes, …): no guess.
    assert_eq!(closest("TOKENGATE_MAX_BYTES"), None);
    assert_eq!(
        warnings(&env(&[("TOKENGATE_UPSTREAM_FILE", "/run/secrets/up")])),
        ["TOKENGATE_UPSTREAM_FILE is not a tokengate variable and is ignored: only variables that hold a secret \
          have a _FILE variant, and TOKENGATE_UPSTREAM does not (set TOKENGATE_UPSTREAM itself)"]
    );
}

/// Every documented variable with a name of its own is one `load` reads.
#[test]
fn named_constants_are_read() {
    for name in ALL {
        assert!(names().iter().any(|n| n == name), "{name}");
    }
}

mod props {
    use proptest::prelude::*;

    use super::super::{split_list, typed};
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A list's items are non-empty, hold no separator, and split the same way again.
        #[test]
        fn lists_split_stably(text in "[a-z0-9:/., \t-]{0,40}") {
            let items = split_list(&text);
            for item in &items {
                prop_assert!(!item.is_empty() && !item.contains(|c: char| c == ',' || c.is_whitespace()));
            }
            prop_assert_eq!(split_list(&items.join(", ")), items);
        }

        /// A typed value is the text itself, as a string, number or boolean.
        #[test]
        fn typed_keeps_the_text(text in "\\PC{0,12}|-?[0-9]{1,25}(\\.[0-9]{1,5})?|true|false") {
            match typed(&text) {
                Value::String(s) => prop_assert_eq!(s, text),
                Value::Bool(b) => prop_assert_eq!(b.to_string(), text),
                Value::Number(n) => prop_assert_eq!(n.as_f64().unwrap(), text.parse::<f64>().unwrap()),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        /// Any value of any variable: applied, or an error naming that variable first; a secret's
        /// value is never in the error.
        #[test]
        fn any_value_is_applied_or_named(index in 0usize..200, value in "\\PC{1,24}") {
            let settings = env_keys::settings();
            let setting = &settings[index % settings.len()];
            let e = sidecar(&[(setting.var.as_str(), value.as_str())]);
            if let Err(err) = apply(&mut RawConfig::default(), &e, &mut Provenance::default()) {
                let msg = err.to_string();
                prop_assert!(msg.starts_with(&format!("{}: ", setting.var)), "{}", msg);
                if setting.secret && value.trim().len() > 3 {
                    prop_assert!(!msg.contains(value.trim()), "{}", msg);
                }
            }
        }
    }
}

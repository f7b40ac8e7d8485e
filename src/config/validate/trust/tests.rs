use std::collections::HashMap;
use std::path::Path;

use crate::config::{env, load_text, warnings, AudienceCheck, Config, ConfigError, RouteAuth, Sources};

const UPSTREAM: &str = "upstream: { url: http://127.0.0.1:8081 }\n";
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn load(text: &str) -> Result<Config, ConfigError> {
    load_text(Path::new("t.yaml"), &format!("{UPSTREAM}{text}"), &HashMap::new())
}

fn load_ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn assert_refused(text: &str, field: &str, needles: &[&str]) {
    let err = load(text).expect_err("config should be refused");
    assert_eq!(err.field(), Some(field), "{err}");
    for needle in needles {
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    }
}

fn required(policy: &RouteAuth) -> &crate::config::Policy {
    let RouteAuth::Required(p) = policy else { panic!("auth: required") };
    p
}

/// An issuer without audiences on a route without audiences is refused, and the message says
/// every way out: issuer audiences, TOKENGATE_AUDIENCE, route audiences, the explicit opt-out.
#[test]
fn issuer_without_audience_is_refused() {
    assert_refused(
        "issuers: [{ issuer: https://idp.example/ }]\n",
        "issuers[0].audiences",
        &[
            "route \"default\"",
            "issuers[0].audiences",
            env::AUDIENCE,
            "audiences on the route",
            "audience_check: disabled",
        ],
    );
    // Introspection-only issuers too: an answer's `aud`, when present, is checked the same way.
    assert_refused(
        "issuers:\n  - issuer: https://as.example/\n    mode: introspection\n    \
         introspection: { client_id: gw, client_secret: s }\n",
        "issuers[0].audiences",
        &["audience_check: disabled"],
    );
}

/// Routes that all name their audiences cover an issuer with none; public routes need none.
#[test]
fn route_audiences_cover_an_issuer() {
    load_ok(
        "issuers: [{ issuer: https://idp.example/ }]\nroutes:\n  - { id: pub, path_prefix: /p, auth: none }\n  \
         - { id: a, path_prefix: /, audiences: [api] }\n",
    );
}

/// The rule follows `issuers:`: a route that does not accept the audience-less issuer needs
/// nothing for it; one that does is refused, naming that issuer.
#[test]
fn route_issuers_scope_the_audience_rule() {
    let issuers = "issuers:\n  - { id: a, issuer: https://a.example/, audiences: [api] }\n  \
                   - { id: b, issuer: https://b.example/ }\n";
    load_ok(&format!(
        "{issuers}routes:\n  - {{ id: x, path_prefix: /x, issuers: [a] }}\n  \
         - {{ id: y, path_prefix: /, issuers: [b], audiences: [jobs] }}\n"
    ));
    assert_refused(
        &format!("{issuers}routes:\n  - {{ id: x, path_prefix: /x, issuers: [a] }}\n  - {{ id: y, path_prefix: / }}\n"),
        "issuers[1].audiences",
        &["route \"y\" (routes[1])"],
    );
}

/// `audience_check: disabled` is the explicit opt-out: accepted without audiences, refused
/// with them, printed by check-config's rendering and listed among the start-up warnings.
#[test]
fn audience_check_disabled_is_explicit_and_reported() {
    let c = load_ok("issuers: [{ id: any, issuer: https://idp.example/, audience_check: disabled }]\n");
    assert_eq!(c.issuers[0].audience_check, AudienceCheck::Disabled);
    let w = warnings(&c);
    assert!(w.len() == 1 && w[0].contains("\"any\"") && w[0].contains("audience_check: disabled"), "{w:?}");
    let rendered = crate::config::render_effective(&c);
    assert!(rendered.contains("audience_check: disabled"), "{rendered}");
    let again = load_text(Path::new("r.yaml"), &rendered, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{c:?}"), format!("{again:?}"));
    assert_refused(
        "issuers: [{ issuer: https://idp.example/, audiences: [api], audience_check: disabled }]\n",
        "issuers[0].audience_check",
        &["remove one"],
    );
    assert!(warnings(&load_ok("issuers: [{ issuer: https://idp.example/, audiences: [api] }]\n")).is_empty());
}

/// The minimal env-only sidecar needs TOKENGATE_AUDIENCE (or the explicit env opt-out).
#[test]
fn env_only_sidecar_needs_an_audience() {
    let vars = |extra: &[(&str, &str)]| -> HashMap<String, String> {
        [(env::UPSTREAM, "http://127.0.0.1:8081"), (env::ISSUER, "https://idp.example/")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let err = crate::config::load(&Sources { file: None, env: vars(&[]) }).unwrap_err();
    assert_eq!(err.field(), Some("issuers[0].audiences"), "{err}");
    assert!(err.to_string().contains(env::AUDIENCE), "{err}");
    // The misspelling from the issue is not read, so the config is still refused.
    assert!(crate::config::load(&Sources { file: None, env: vars(&[("TOKENGATE_AUDIENCES", "orders")]) }).is_err());
    let c = crate::config::load(&Sources { file: None, env: vars(&[(env::AUDIENCE, "orders")]) }).unwrap();
    assert_eq!(c.issuers[0].audiences, ["orders"]);
    let c = crate::config::load(&Sources { file: None, env: vars(&[(env::AUDIENCE_CHECK, "disabled")]) }).unwrap();
    assert_eq!(c.issuers[0].audience_check, AudienceCheck::Disabled);
}

/// Ids default to the issuer URL, must be unique (the error names both) and printable.
#[test]
fn issuer_ids() {
    let c = load_ok(&format!(
        "issuers:\n  - {{ issuer: https://a.example/, audiences: [api] }}\n  \
         - {{ id: local, issuer: http://127.0.0.1:9000/, hmac_secret: {SECRET}, audiences: [api] }}\n"
    ));
    assert_eq!((c.issuers[0].id.as_str(), c.issuers[1].id.as_str()), ("https://a.example/", "local"));
    assert_refused(
        "issuers:\n  - { id: t, issuer: https://a.example/, audiences: [api] }\n  \
         - { id: t, issuer: https://b.example/, audiences: [api] }\n",
        "issuers[1].id",
        &["\"t\" is already the id of issuers[0]"],
    );
    assert_refused(
        "issuers:\n  - { issuer: https://a.example/, audiences: [api] }\n  \
         - { id: \"https://a.example/\", issuer: https://b.example/, audiences: [api] }\n",
        "issuers[1].id",
        &["issuers[0]"],
    );
    for bad in ["\"\"", "\"a b\"", "\"a\\tb\""] {
        assert_refused(
            &format!("issuers: [{{ id: {bad}, issuer: https://a.example/, audiences: [api] }}]\n"),
            "issuers[0].id",
            &["non-empty"],
        );
    }
}

/// `routes[].issuers` resolves ids to sorted indices; unknown or empty lists are refused, and
/// so is the key on a public route.
#[test]
fn route_issuers_resolve_to_indices() {
    let issuers = "issuers:\n  - { id: a, issuer: https://a.example/, audiences: [api] }\n  \
                   - { id: b, issuer: https://b.example/, audiences: [api] }\n";
    let c = load_ok(&format!("{issuers}routes: [{{ id: r, path_prefix: /, issuers: [b, a, b] }}]\n"));
    assert_eq!(required(&c.routes[0].auth).issuers, Some(vec![0, 1]));
    let rendered = crate::config::render_effective(&c);
    assert!(rendered.contains("issuers:\n  - a\n  - b") || rendered.contains("- a\n    - b"), "{rendered}");
    assert_refused(
        &format!("{issuers}routes: [{{ id: r, path_prefix: /, issuers: [a, c] }}]\n"),
        "routes[0].issuers[1]",
        &["\"c\" is not the id of a configured issuer", "a, b"],
    );
    assert_refused(
        &format!("{issuers}routes: [{{ id: r, path_prefix: /, issuers: [] }}]\n"),
        "routes[0].issuers",
        &["must not be empty"],
    );
    assert_refused(
        &format!("{issuers}routes: [{{ id: r, path_prefix: /, auth: none, issuers: [a] }}]\n"),
        "routes[0].issuers",
        &["auth: required"],
    );
}

/// A route accepting several introspecting issuers is reported: opaque tokens go to the first.
#[test]
fn several_introspecting_issuers_on_one_route_are_reported() {
    let intro = |id: &str, host: &str| {
        format!(
            "  - {{ id: {id}, issuer: https://{host}/, mode: introspection, audiences: [api], \
             introspection: {{ client_id: gw, client_secret: s }} }}\n"
        )
    };
    let issuers = format!("issuers:\n{}{}", intro("a", "a.example"), intro("b", "b.example"));
    let c = load_ok(&format!(
        "{issuers}routes:\n  - {{ id: only-b, path_prefix: /b, issuers: [b] }}\n  - {{ id: both, path_prefix: / }}\n"
    ));
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"both\"") && w[0].contains("only at the first, \"a\""), "{w:?}");
}

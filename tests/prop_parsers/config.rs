//! Config text (`config::load_text`: `${…}` substitution, YAML, `TOKENGATE_*` overrides,
//! validation): any text and environment give a `Config` or a `ConfigError`, never a panic, and
//! the same answer every time.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use tokengate::config::{env, load_text, render_effective, ConfigError};

use crate::cases;

const EXAMPLE: &str = include_str!("../../config/tokengate.example.yaml");

/// What the example needs from the environment.
fn example_env() -> HashMap<String, String> {
    [("IDP_SECRET", "an idp secret of at least thirty-two bytes"), ("INTROSPECTION_CLIENT_SECRET", "s3cret")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn load(text: &str, env: &HashMap<String, String>) -> Result<String, String> {
    match load_text(Path::new("prop.yaml"), text, env) {
        // Rendering reads every validated field: it must not panic either.
        Ok(config) => Ok(render_effective(&config)),
        Err(e) => Err(describe(&e)),
    }
}

fn describe(e: &ConfigError) -> String {
    let text = e.to_string();
    assert!(!text.is_empty(), "an error that says nothing: {e:?}");
    format!("{text} [{:?}]", e.field())
}

/// Config keys, at any level, and a few that are not.
fn key() -> impl Strategy<Value = String> {
    let keys = [
        "listen",
        "admin_listen",
        "realm",
        "server",
        "upstream",
        "url",
        "tokens",
        "query",
        "form_body",
        "max_bytes",
        "jwks",
        "token_cache",
        "issuers",
        "issuer",
        "jwks_uri",
        "hmac_secret",
        "audiences",
        "algorithms",
        "leeway",
        "mode",
        "introspection",
        "endpoint",
        "client_id",
        "client_secret",
        "routes",
        "id",
        "path_prefix",
        "host",
        "methods",
        "auth",
        "scopes",
        "scope_match",
        "claims",
        "claim",
        "equals",
        "contains",
        "identity",
        "headers",
        "protected_resource",
        "resource",
        "timeout",
        "enabled",
        "max_entries",
        "worker_threads",
        "<<",
        "?",
    ];
    prop_oneof![5 => prop::sample::select(keys.to_vec()).prop_map(str::to_owned), 1 => "[a-z_]{1,8}"]
}

/// Scalars and YAML syntax that tend to break parsers: anchors, aliases, tags, block scalars,
/// flow collections, numbers beyond every integer type, durations, substitutions.
fn value() -> impl Strategy<Value = String> {
    let values = [
        "",
        "~",
        "null",
        "true",
        "0",
        "-1",
        "18446744073709551616",
        "1e999",
        "-0.5",
        ".nan",
        "5s",
        "0s",
        "1h",
        "99999999999999999999h",
        "1.5s",
        "\"x\"",
        "'y'",
        "[",
        "]",
        "{",
        "}",
        "[a, b]",
        "{a: 1}",
        "&a",
        "*a",
        "&a [1]",
        "!!str 1",
        "!!binary AA",
        "!tag x",
        "|",
        ">-",
        "\"",
        "'",
        "${TOKENGATE_X}",
        "${",
        "$${A}",
        "${A:-b}",
        "http://127.0.0.1:1",
        "https://issuer.example/",
        "0.0.0.0:0",
        "[::1]:99999",
        "/",
        "/api/",
        "RS256",
        "HS256",
        "none",
        "required",
        "introspection",
        "client_secret_post",
        "é",
        "#",
        ": :",
        "- -",
        "%TAG",
        "[RS256, none]",
        "[GET, \"BAD METHOD\"]",
    ];
    prop_oneof![5 => prop::sample::select(values.to_vec()).prop_map(str::to_owned), 1 => "\\PC{0,10}"]
}

/// Lines of YAML-ish text: indentation, list dashes, keys and values, in no particular order.
fn yamlish() -> impl Strategy<Value = String> {
    let line = (0..4usize, any::<bool>(), key(), value())
        .prop_map(|(depth, dash, k, v)| format!("{}{}{k}: {v}", "  ".repeat(depth), if dash { "- " } else { "" }));
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

/// An environment: recognised `TOKENGATE_*` variables, typos, and the example's names.
fn environment() -> impl Strategy<Value = HashMap<String, String>> {
    let mut names: Vec<&'static str> = env::ALL.to_vec();
    names.extend(["TOKENGATE_AUDIENCES", "TOKENGATE_X", "A", "IDP_SECRET", "INTROSPECTION_CLIENT_SECRET"]);
    prop::collection::hash_map(prop::sample::select(names).prop_map(str::to_owned), value(), 0..4)
}

/// The example with a few lines deleted, duplicated or given another value.
fn edited_example() -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = EXAMPLE.lines().collect();
    let n = lines.len();
    prop::collection::vec((0..n, 0..3u8, value()), 1..4).prop_map(move |edits| {
        let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        for (at, op, v) in edits {
            let at = at.min(lines.len().saturating_sub(1));
            match op {
                0 => {
                    lines.remove(at);
                }
                1 => lines.insert(at, lines[at].clone()),
                _ => {
                    let kept = lines[at].split_once(':').map_or(lines[at].clone(), |(k, _)| k.to_owned());
                    lines[at] = format!("{kept}: {v}");
                }
            }
        }
        lines.join("\n")
    })
}

proptest! {
    #![proptest_config(cases(300))]

    /// YAML-ish text under any environment: a config or a ConfigError, the same one twice.
    #[test]
    fn yamlish_text_loads_or_is_refused(text in yamlish(), env in environment()) {
        let first = load(&text, &env);
        prop_assert_eq!(load(&text, &env), first);
    }

    /// Any text at all.
    #[test]
    fn arbitrary_text_loads_or_is_refused(text in "\\PC{0,200}|[ a-z:\\-\\[\\]{}&*!|>'\"#\n]{0,200}", env in environment()) {
        let first = load(&text, &env);
        prop_assert_eq!(load(&text, &env), first);
    }

    /// The example with a few edits: mostly near-valid configs, which reach validation.
    #[test]
    fn edited_example_loads_or_is_refused(text in edited_example(), env in environment()) {
        let mut env = env;
        env.extend(example_env());
        let first = load(&text, &env);
        prop_assert_eq!(load(&text, &env), first);
    }
}

/// Positive control: the example loads as shipped.
#[test]
fn example_loads() {
    if let Err(e) = load(EXAMPLE, &example_env()) {
        panic!("{e}");
    }
}

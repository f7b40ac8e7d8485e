//! `TOKENGATE_*` environment variables: every scalar setting of the file has one (see
//! `env_keys` for the names), secrets also a `_FILE` variant (`secret_file`), and
//! `TOKENGATE_REQUIRED_SCOPES` adds scopes to the routes. `${NAME}` in the file text is `subst`.
//!
//! The environment is always passed in (`Sources::env`): nothing here reads the process
//! environment, so tests use a plain `HashMap`. A variable that is unset, empty or only whitespace
//! counts as unset. Env values override the file.
//!
//! A value is written onto the parsed file through its YAML value form (which keeps the file's
//! order, e.g. of `identity.headers`) and read back with the raw types' own `Deserialize`, so it is parsed exactly as the same text in the file would be
//! (durations, numbers, booleans, enum words), and checked alone first so an error names the
//! variable and the key.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_norway::{Mapping, Value};

use super::env_keys::{self, Kind, Scope, Setting, FILE_SUFFIX};
use super::raw::{RawConfig, RawIssuer, RawRoute, RawScopeMatch};
use super::secret_file::{self, get, EnvValue};
pub use super::subst::{substitute, SubstError};
use super::validate::{check_scope_token, ConfigError, Origin};

/// `listen`
pub const LISTEN: &str = "TOKENGATE_LISTEN";
/// `admin_listen`
pub const ADMIN_LISTEN: &str = "TOKENGATE_ADMIN_LISTEN";
/// `upstream.url`
pub const UPSTREAM: &str = "TOKENGATE_UPSTREAM";
/// The single issuer's `issuer` (creates the issuer when the file has none).
pub const ISSUER: &str = "TOKENGATE_ISSUER";
/// The single issuer's `jwks_uri`; unset → OIDC/RFC 8414 discovery.
pub const JWKS_URI: &str = "TOKENGATE_JWKS_URI";
/// The single issuer's `audiences`, space- or comma-separated.
pub const AUDIENCE: &str = "TOKENGATE_AUDIENCE";
/// The single issuer's `audience_check`: `disabled` (the explicit opt-out) or `enabled`.
pub const AUDIENCE_CHECK: &str = "TOKENGATE_AUDIENCE_CHECK";
/// Space-separated scopes added to every `auth: required` route.
pub const REQUIRED_SCOPES: &str = "TOKENGATE_REQUIRED_SCOPES";
/// The single issuer's `algorithms` allowlist, space- or comma-separated.
pub const ALGORITHMS: &str = "TOKENGATE_ALGORITHMS";
/// The single issuer's `introspection.endpoint`.
pub const INTROSPECTION_URI: &str = "TOKENGATE_INTROSPECTION_URI";
/// The single issuer's `introspection.client_id`.
pub const CLIENT_ID: &str = "TOKENGATE_CLIENT_ID";
/// The single issuer's `introspection.client_secret` (or `TOKENGATE_CLIENT_SECRET_FILE`).
pub const CLIENT_SECRET: &str = "TOKENGATE_CLIENT_SECRET";
/// `trusted_proxies`, comma- or space-separated CIDRs.
pub const TRUSTED_PROXIES: &str = "TOKENGATE_TRUSTED_PROXIES";
/// `decision.listen`: starts the decision service.
pub const DECISION_LISTEN: &str = "TOKENGATE_DECISION_LISTEN";
/// `decision.trusted_peers`, comma- or space-separated CIDRs.
pub const DECISION_TRUSTED_PEERS: &str = "TOKENGATE_DECISION_TRUSTED_PEERS";
/// Handled by `main` (`--config`), not by `load`; listed so it is not reported as unrecognized.
pub const CONFIG: &str = "TOKENGATE_CONFIG";
/// Handled by `main` (`--log-format`), not by `load`.
pub const LOG_FORMAT: &str = "TOKENGATE_LOG_FORMAT";

/// The variables with a name of their own here, in documentation order; `names` lists all.
pub const ALL: &[&str] = &[
    LISTEN,
    ADMIN_LISTEN,
    UPSTREAM,
    ISSUER,
    JWKS_URI,
    AUDIENCE,
    AUDIENCE_CHECK,
    REQUIRED_SCOPES,
    ALGORITHMS,
    INTROSPECTION_URI,
    CLIENT_ID,
    CLIENT_SECRET,
    TRUSTED_PROXIES,
    DECISION_LISTEN,
    DECISION_TRUSTED_PEERS,
];

/// The `TOKENGATE_*` names `main` reads.
const READ_BY_MAIN: &[&str] = &[CONFIG, LOG_FORMAT];

/// Every variable `load` reads: one per scalar setting, `_FILE` after each secret, then
/// `TOKENGATE_REQUIRED_SCOPES`.
pub fn names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut out = Vec::new();
        for s in env_keys::settings() {
            out.push(s.var.clone());
            out.extend(s.file_var());
        }
        out.push(REQUIRED_SCOPES.to_string());
        out
    })
}

/// Every name the binary knows.
fn known() -> impl Iterator<Item = &'static str> {
    names().iter().map(String::as_str).chain(READ_BY_MAIN.iter().copied())
}

/// Kubernetes injects `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT[_NAME]`, `{SVC}_PORT` and
/// `{SVC}_PORT_{port}_{proto}[_PROTO|_PORT|_ADDR]` for every Service in the namespace; for a
/// Service named `tokengate` they look like ours but are not meant for us.
const SERVICE_LINK_PREFIXES: &[&str] = &["TOKENGATE_SERVICE_", "TOKENGATE_PORT"];

/// Which config fields were set from which variable, so validation errors name the variable.
#[derive(Debug, Default)]
pub struct Provenance(Vec<(String, String)>);

impl Provenance {
    fn record(&mut self, field: impl Into<String>, var: &str) {
        self.0.push((field.into(), var.to_string()));
    }

    /// The variable that supplied `field` or its nearest ancestor (`issuers[0].audiences[1]` is
    /// covered by `issuers[0].audiences`; `issuers[0].introspection.client_id` by the variable
    /// that created `issuers[0].introspection` unless one set it).
    pub fn lookup(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(f, _)| {
                field == f
                    || field.strip_prefix(f.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .max_by_key(|(f, _)| f.len())
            .map(|(_, var)| var.as_str())
    }
}

/// `TOKENGATE_*` names that are set but not recognized (typos such as `TOKENGATE_AUDIENCES`), for
/// `main` to warn about. Kubernetes service-link variables are not reported.
pub fn unrecognized(env: &HashMap<String, String>) -> Vec<&str> {
    let mut out: Vec<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("TOKENGATE_") && !known().any(|n| n == *k))
        .filter(|k| !SERVICE_LINK_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    out.sort_unstable();
    out
}

/// One start-up warning per unrecognized `TOKENGATE_*` variable, naming the closest known one:
/// a misspelt variable is otherwise silently ignored. The value is never shown.
pub fn warnings(env: &HashMap<String, String>) -> Vec<String> {
    unrecognized(env).into_iter().map(warning).collect()
}

fn warning(name: &str) -> String {
    let ignored = format!("{name} is not a tokengate variable and is ignored");
    if let Some(base) = name.strip_suffix(FILE_SUFFIX).filter(|b| known().any(|k| k == *b)) {
        return format!(
            "{ignored}: only variables that hold a secret have a {FILE_SUFFIX} variant, and {base} does not \
             (set {base} itself)"
        );
    }
    match closest(name) {
        Some(known) => format!("{ignored}; did you mean {known}?"),
        None => format!("{ignored} (see config/sidecar-env.md)"),
    }
}

/// The known variable nearest to `name` by edit distance, if it is near enough to be a typo
/// (at most a third of the name's length after `TOKENGATE_`, and at most 4 edits); else the one
/// known variable that ends with the name (a missing section: `TOKENGATE_FETCH_TIMEOUT`).
pub fn closest(name: &str) -> Option<&'static str> {
    // The names the short variables would have had by the naming rule: a guess of the rule,
    // which edit distance would send to a neighbour (`TOKENGATE_UPSTREAM_CA`).
    const LONG_FORMS: &[(&str, &str)] = &[
        ("TOKENGATE_UPSTREAM_URL", UPSTREAM),
        ("TOKENGATE_ISSUER_ISSUER", ISSUER),
        ("TOKENGATE_INTROSPECTION_ENDPOINT", INTROSPECTION_URI),
    ];
    if let Some((_, short)) = LONG_FORMS.iter().find(|(long, _)| long.eq_ignore_ascii_case(name)) {
        return Some(short);
    }
    let suffix = |v: &str| v.strip_prefix("TOKENGATE_").unwrap_or(v).to_ascii_uppercase();
    let wanted = suffix(name);
    let limit = (wanted.len() / 3).clamp(1, 4);
    let near = known()
        .map(|known| (edit_distance(&wanted, &suffix(known)), known))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known);
    near.or_else(|| {
        let tail = format!("_{wanted}");
        let mut ending = known().filter(|k| !wanted.is_empty() && k.ends_with(&tail));
        match (ending.next(), ending.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    })
}

/// Levenshtein distance over bytes; names are short ASCII, inputs capped so the cost is bounded.
fn edit_distance(a: &str, b: &str) -> usize {
    const CAP: usize = 64;
    let (a, b) = (&a.as_bytes()[..a.len().min(CAP)], &b.as_bytes()[..b.len().min(CAP)]);
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn env_err(var: &str, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: Origin::Env(var.to_string()), field: field.into(), message: message.into() }
}

/// Space- and/or comma-separated list.
fn split_list(value: &str) -> Vec<String> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A value found in the environment, its setting, and its YAML form (already checked).
struct Found {
    setting: &'static Setting,
    value: EnvValue,
    yaml: Value,
}

/// Applies the `TOKENGATE_*` overrides to the parsed file (or to an empty config).
pub fn apply(raw: &mut RawConfig, env: &HashMap<String, String>, prov: &mut Provenance) -> Result<(), ConfigError> {
    let (mut global, mut issuer) = (Vec::new(), Vec::new());
    for setting in env_keys::settings() {
        let Some(value) = secret_file::resolve(env, setting)? else { continue };
        let yaml = to_yaml(setting, &value)?;
        let found = Found { setting, value, yaml };
        match setting.scope {
            Scope::Global => global.push(found),
            Scope::Issuer => issuer.push(found),
        }
    }
    if let Some(first) = global.first() {
        let mut doc = to_doc(&*raw);
        for found in &global {
            insert(&mut doc, &found.setting.path, found.yaml.clone());
            prov.record(found.setting.field(), &found.value.var);
        }
        *raw = from_doc(doc, first)?;
    }
    apply_issuer(raw, &issuer, prov)?;
    apply_required_scopes(raw, env)
}

fn to_doc<T: serde::Serialize>(raw: &T) -> Value {
    serde_norway::to_value(raw).expect("the raw config serializes")
}

/// Back from the YAML value; every value was checked alone, so this fails only on a bug (reported, not a panic).
fn from_doc<T: serde::de::DeserializeOwned>(doc: Value, first: &Found) -> Result<T, ConfigError> {
    serde_norway::from_value(doc).map_err(|_| {
        env_err(&first.value.var, first.setting.field(), "could not be applied to the configuration (a tokengate bug)")
    })
}

/// Sets `path` in the object `doc`, creating the sections on the way.
fn insert(doc: &mut Value, path: &[&str], value: Value) {
    let Some((last, sections)) = path.split_last() else { return };
    let mut at = doc;
    for key in sections {
        let mapping = ensure_mapping(at);
        at = mapping.entry(Value::from(*key)).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    ensure_mapping(at).insert(Value::from(*last), value);
}

fn ensure_mapping(v: &mut Value) -> &mut Mapping {
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    v.as_mapping_mut().expect("a mapping")
}

/// The YAML value the setting's type accepts for this text: the text as a string, else as a
/// number or boolean (`3s` is a duration, `100` a count, `true` a flag, `12345` may be a client
/// id). The error names the variable and the key, and never shows a secret.
fn to_yaml(setting: &Setting, value: &EnvValue) -> Result<Value, ConfigError> {
    let field = setting.field();
    let text = value.text();
    let candidates: Vec<Value> = match &setting.kind {
        Kind::List => {
            let items = split_list(text);
            if items.is_empty() {
                let (item, example) = list_hint(&field);
                return Err(env_err(
                    &value.var,
                    field,
                    format!("holds no {item}; expected a space- or comma-separated list such as \"{example}\""),
                ));
            }
            let strings = items.iter().map(|i| Value::String(i.clone())).collect();
            vec![Value::Sequence(strings), Value::Sequence(items.iter().map(|i| typed(i)).collect())]
        }
        Kind::Scalar | Kind::Word(_) => vec![Value::String(text.to_string()), typed(text)],
    };
    let mut errors = Vec::new();
    for candidate in candidates {
        match check(setting, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => errors.push(e),
        }
    }
    let message = if value.is_secret() {
        "is not accepted".to_string()
    } else if let Kind::Word(words) = setting.kind {
        let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
        format!("{text:?} is not accepted; expected {}", words.join(" or "))
    } else {
        // The string's error, unless it only says a string is the wrong type.
        let serde = errors.iter().find(|e| !e.starts_with("invalid type: string")).unwrap_or(&errors[0]);
        describe(text, serde)
    };
    Err(env_err(&value.var, field, message))
}

/// `true`/`false` as a boolean, a number as a number, anything else as a string.
fn typed(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| text.parse::<i64>().map(Value::from))
            .ok()
            .or_else(|| text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from))
            .unwrap_or_else(|| Value::String(text.to_string())),
    }
}

/// Deserializes the value alone, at its place in an otherwise empty config.
fn check(setting: &Setting, value: &Value) -> Result<(), String> {
    let mut doc = Value::Mapping(Mapping::new());
    insert(&mut doc, &setting.path, value.clone());
    if setting.scope == Scope::Issuer {
        let mut top = Mapping::new();
        top.insert(Value::from("issuers"), Value::Sequence(vec![doc]));
        doc = Value::Mapping(top);
    }
    serde_norway::from_value::<RawConfig>(doc).map(drop).map_err(|e| e.to_string())
}

/// serde's `invalid type: string "x", expected u32` as `"x" is not accepted; expected a whole number`.
fn describe(text: &str, serde: &str) -> String {
    let Some((_, expected)) = serde.split_once(", expected ") else {
        return format!("{text:?} is not accepted: {serde}");
    };
    let expected = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "`true` or `false`",
        "a duration" => "a duration such as 500ms, 5s or 1m",
        other => other,
    };
    format!("{text:?} is not accepted; expected {expected}")
}

/// What a list variable holds, for the error when it holds nothing.
fn list_hint(field: &str) -> (&'static str, &'static str) {
    match field {
        "trusted_proxies" => ("network", "10.0.0.0/8,192.168.0.0/16"),
        "decision.trusted_peers" => ("network", "10.0.0.0/8"),
        "issuers[0].audiences" => ("audience", "api other-api"),
        "issuers[0].algorithms" => ("algorithm", "RS256,ES256"),
        _ => ("value", "a,b"),
    }
}

/// The single-issuer variables: the file has no issuers → `TOKENGATE_ISSUER` creates one; one →
/// each variable overrides its key; several → an error (which one would be meant is a guess).
fn apply_issuer(raw: &mut RawConfig, found: &[Found], prov: &mut Provenance) -> Result<(), ConfigError> {
    let Some(first) = found.first() else {
        return Ok(());
    };
    let set: Vec<&str> = found.iter().map(|f| f.value.var.as_str()).collect();
    let issuers = raw.issuers.get_or_insert_with(Vec::new);
    match issuers.len() {
        0 => {
            if !found.iter().any(|f| f.setting.var == ISSUER) {
                return Err(env_err(
                    &first.value.var,
                    "issuers",
                    format!(
                        "there is no issuer to apply this to: the config file defines no issuers and \
                         {ISSUER} is not set; set {ISSUER} (the token issuer URL) as well"
                    ),
                ));
            }
            issuers.push(RawIssuer::default());
        }
        1 => {}
        n => {
            return Err(env_err(
                &first.value.var,
                "issuers",
                format!(
                    "the config file defines {n} issuers, so it is ambiguous which one {} \
                     would override; these variables only apply to a single issuer: configure the \
                     issuers in the file and unset {}",
                    set.join(", "),
                    set.join(", ")
                ),
            ))
        }
    }
    let mut doc = to_doc(&issuers[0]);
    for f in found {
        // Errors about a section the environment created (`client_id is required`) name the
        // variable that created it.
        if let [section, _, ..] = f.setting.path[..] {
            if doc.get(section).is_none() {
                prov.record(format!("issuers[0].{section}"), &f.value.var);
            }
        }
        insert(&mut doc, &f.setting.path, f.yaml.clone());
        prov.record(f.setting.field(), &f.value.var);
    }
    issuers[0] = from_doc(doc, first)?;
    Ok(())
}

fn apply_required_scopes(raw: &mut RawConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let Some(v) = get(env, REQUIRED_SCOPES) else {
        return Ok(());
    };
    let scopes: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    for scope in &scopes {
        check_scope_token(scope).map_err(|m| env_err(REQUIRED_SCOPES, "routes[*].scopes", m))?;
    }
    let routes = raw.routes.get_or_insert_with(|| vec![RawRoute::default_route()]);
    for (i, route) in routes.iter_mut().enumerate() {
        if !route.requires_auth() {
            continue;
        }
        // Added to an `any` route, the required scopes would become alternatives: a token with
        // only one of the route's own scopes would pass. Refuse rather than weaken the rule.
        if route.scope_match == Some(RawScopeMatch::Any) {
            return Err(env_err(
                REQUIRED_SCOPES,
                format!("routes[{i}].scope_match"),
                "cannot add required scopes to a route with scope_match: any (they would become \
                 alternatives, not requirements); list the scopes in the file instead or use \
                 scope_match: all",
            ));
        }
        let list = route.scopes.get_or_insert_with(Vec::new);
        for scope in &scopes {
            if !list.contains(scope) {
                list.push(scope.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

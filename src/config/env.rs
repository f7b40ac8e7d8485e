//! `TOKENGATE_*` environment variables and `${NAME}` substitution in the file text.
//!
//! The environment is always passed in (`Sources::env`): nothing here reads the process
//! environment, so tests use a plain `HashMap`. A variable that is unset, empty or only whitespace
//! counts as unset. Env values override the file.

use std::collections::HashMap;

use super::raw::{RawAudienceCheck, RawConfig, RawIssuer, RawRoute, RawScopeMatch};
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

/// Every variable `load` reads, in documentation order.
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
    TRUSTED_PROXIES,
    DECISION_LISTEN,
    DECISION_TRUSTED_PEERS,
];

/// The `TOKENGATE_*` names `main` reads; with `ALL`, every name the binary knows.
const READ_BY_MAIN: &[&str] = &[CONFIG, LOG_FORMAT];

fn known() -> impl Iterator<Item = &'static str> {
    ALL.iter().chain(READ_BY_MAIN).copied()
}

/// Kubernetes injects `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT[_NAME]`, `{SVC}_PORT` and
/// `{SVC}_PORT_{port}_{proto}[_PROTO|_PORT|_ADDR]` for every Service in the namespace; for a
/// Service named `tokengate` they look like ours but are not meant for us.
const SERVICE_LINK_PREFIXES: &[&str] = &["TOKENGATE_SERVICE_", "TOKENGATE_PORT"];

/// Which config fields were set from which variable, so validation errors name the variable.
#[derive(Debug, Default)]
pub struct Provenance(Vec<(String, &'static str)>);

impl Provenance {
    fn record(&mut self, field: impl Into<String>, var: &'static str) {
        self.0.push((field.into(), var));
    }

    /// The variable that supplied `field` or one of its ancestors (`issuers[0].audiences[1]` is
    /// covered by `issuers[0].audiences`).
    pub fn lookup(&self, field: &str) -> Option<&'static str> {
        self.0.iter().find_map(|(f, var)| {
            let covered = field == f
                || field.strip_prefix(f.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
            covered.then_some(*var)
        })
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
/// a misspelt variable is otherwise silently ignored.
pub fn warnings(env: &HashMap<String, String>) -> Vec<String> {
    unrecognized(env)
        .into_iter()
        .map(|name| match closest(name) {
            Some(known) => format!("{name} is not a tokengate variable and is ignored; did you mean {known}?"),
            None => format!("{name} is not a tokengate variable and is ignored (see config/sidecar-env.md)"),
        })
        .collect()
}

/// The known variable nearest to `name` by edit distance, if it is near enough to be a typo
/// (at most a third of the name's length after `TOKENGATE_`, and at most 4 edits).
pub fn closest(name: &str) -> Option<&'static str> {
    let suffix = |v: &str| v.strip_prefix("TOKENGATE_").unwrap_or(v).to_ascii_uppercase();
    let wanted = suffix(name);
    let limit = (wanted.len() / 3).clamp(1, 4);
    known()
        .map(|known| (edit_distance(&wanted, &suffix(known)), known))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
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

fn get<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn env_err(var: &'static str, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: Origin::Env(var.to_string()), field: field.into(), message: message.into() }
}

/// Space- and/or comma-separated list.
fn split_list(value: &str) -> Vec<String> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Applies the `TOKENGATE_*` overrides to the parsed file (or to an empty config).
pub fn apply(raw: &mut RawConfig, env: &HashMap<String, String>, prov: &mut Provenance) -> Result<(), ConfigError> {
    if let Some(v) = get(env, LISTEN) {
        raw.listen = Some(v.to_string());
        prov.record("listen", LISTEN);
    }
    if let Some(v) = get(env, ADMIN_LISTEN) {
        raw.admin_listen = Some(v.to_string());
        prov.record("admin_listen", ADMIN_LISTEN);
    }
    if let Some(v) = get(env, UPSTREAM) {
        raw.upstream.get_or_insert_with(Default::default).url = Some(v.to_string());
        prov.record("upstream.url", UPSTREAM);
    }
    // Set but listing nothing would silently trust nobody where the operator meant someone.
    if let Some(list) = list(env, prov, TRUSTED_PROXIES, "trusted_proxies", "network", "10.0.0.0/8,192.168.0.0/16")? {
        raw.trusted_proxies = Some(list);
    }
    if let Some(v) = get(env, DECISION_LISTEN) {
        raw.decision.get_or_insert_with(Default::default).listen = Some(v.to_string());
        prov.record("decision.listen", DECISION_LISTEN);
    }
    if let Some(list) = list(env, prov, DECISION_TRUSTED_PEERS, "decision.trusted_peers", "network", "10.0.0.0/8")? {
        raw.decision.get_or_insert_with(Default::default).trusted_peers = Some(list);
    }
    apply_issuer(raw, env, prov)?;
    apply_required_scopes(raw, env)
}

fn apply_issuer(raw: &mut RawConfig, env: &HashMap<String, String>, prov: &mut Provenance) -> Result<(), ConfigError> {
    let set: Vec<&'static str> = [ISSUER, JWKS_URI, AUDIENCE, AUDIENCE_CHECK, ALGORITHMS]
        .into_iter()
        .filter(|v| get(env, v).is_some())
        .collect();
    let Some(&first) = set.first() else {
        return Ok(());
    };
    let issuers = raw.issuers.get_or_insert_with(Vec::new);
    match issuers.len() {
        0 => {
            let Some(issuer) = get(env, ISSUER) else {
                return Err(env_err(
                    first,
                    "issuers",
                    format!(
                        "there is no issuer to apply this to: the config file defines no issuers and \
                         {ISSUER} is not set; set {ISSUER} (the token issuer URL) as well"
                    ),
                ));
            };
            issuers.push(RawIssuer { issuer: Some(issuer.to_string()), ..RawIssuer::default() });
            prov.record("issuers[0].issuer", ISSUER);
        }
        1 => {
            if let Some(v) = get(env, ISSUER) {
                issuers[0].issuer = Some(v.to_string());
                prov.record("issuers[0].issuer", ISSUER);
            }
        }
        n => {
            return Err(env_err(
                first,
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
    let issuer = &mut issuers[0];
    if let Some(v) = get(env, JWKS_URI) {
        issuer.jwks_uri = Some(v.to_string());
        prov.record("issuers[0].jwks_uri", JWKS_URI);
    }
    if let Some(list) = list(env, prov, AUDIENCE, "issuers[0].audiences", "audience", "api other-api")? {
        issuer.audiences = Some(list);
    }
    if let Some(v) = get(env, AUDIENCE_CHECK) {
        // Only the exact words: an opt-out out of a security check is never guessed from a typo.
        let check = match v {
            "disabled" => RawAudienceCheck::Disabled,
            "enabled" => RawAudienceCheck::Enabled,
            other => {
                return Err(env_err(
                    AUDIENCE_CHECK,
                    "issuers[0].audience_check",
                    format!("{other:?} is not accepted; expected `disabled` (accept any audience) or `enabled`"),
                ))
            }
        };
        issuer.audience_check = Some(check);
        prov.record("issuers[0].audience_check", AUDIENCE_CHECK);
    }
    if let Some(list) = list(env, prov, ALGORITHMS, "issuers[0].algorithms", "algorithm", "RS256,ES256")? {
        issuer.algorithms = Some(list);
    }
    Ok(())
}

/// `var` as a space- and/or comma-separated list for `field`; set but empty is an error.
fn list(
    env: &HashMap<String, String>,
    prov: &mut Provenance,
    var: &'static str,
    field: &str,
    item: &str,
    example: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(v) = get(env, var) else { return Ok(None) };
    let list = split_list(v);
    if list.is_empty() {
        return Err(env_err(
            var,
            field,
            format!("holds no {item}; expected a space- or comma-separated list such as \"{example}\""),
        ));
    }
    prov.record(field, var);
    Ok(Some(list))
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

/// A `${…}` substitution failure, 1-based position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain,
    Single,
    Double,
}

/// Replaces `${NAME}` with `env[NAME]` line by line (line numbers are kept); `$$` is a literal `$`,
/// any other `$` is kept as is. Comments are copied untouched. The value is escaped for the scalar
/// it lands in: inside `"…"` JSON-style, inside `'…'` by doubling `'`; in a plain scalar it must be
/// plain-safe (letters, digits, `._/+=:~?&%@-`), else the error asks for double quotes.
pub fn substitute(text: &str, env: &HashMap<String, String>) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        substitute_line(line, index + 1, env, &mut out)?;
    }
    Ok(out)
}

fn substitute_line(
    line: &str,
    line_no: usize,
    env: &HashMap<String, String>,
    out: &mut String,
) -> Result<(), SubstError> {
    let mut quote = Quote::Plain;
    // Last non-space character outside quotes: decides whether a quote character opens a scalar.
    let mut prev: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let column = line[..i].chars().count() + 1;
        match (quote, c) {
            (Quote::Plain, '#') if i == 0 || line[..i].ends_with(char::is_whitespace) => {
                out.push_str(&line[i..]);
                return Ok(());
            }
            (Quote::Plain, '"' | '\'') if matches!(prev, None | Some(':' | '-' | '[' | '{' | ',' | '?')) => {
                quote = if c == '"' { Quote::Double } else { Quote::Single };
                out.push(c);
            }
            (Quote::Double, '\\') => {
                out.push(c);
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            (Quote::Double, '"') | (Quote::Single, '\'') => {
                // `''` inside single quotes is an escaped quote and keeps the scalar open.
                if quote == Quote::Single && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                    chars.next();
                    out.push_str("''");
                } else {
                    quote = Quote::Plain;
                    prev = Some(c);
                    out.push(c);
                }
            }
            (_, '$') => match chars.peek().map(|&(_, n)| n) {
                Some('$') => {
                    chars.next();
                    out.push('$');
                }
                Some('{') => {
                    let rest = &line[i + 2..];
                    let Some(end) = rest.find('}') else {
                        return Err(SubstError {
                            line: line_no,
                            column,
                            message: "`${` without a closing `}`; write `$${` for a literal `${`".into(),
                        });
                    };
                    let name = &rest[..end];
                    let value = lookup(name, env).map_err(|message| SubstError { line: line_no, column, message })?;
                    let escaped =
                        escape(name, value, quote).map_err(|message| SubstError { line: line_no, column, message })?;
                    out.push_str(&escaped);
                    // Skip `{NAME}`.
                    for _ in 0..name.chars().count() + 2 {
                        chars.next();
                    }
                    prev = Some('}');
                }
                _ => out.push('$'),
            },
            _ => {
                if quote == Quote::Plain && !c.is_whitespace() {
                    prev = Some(c);
                }
                out.push(c);
            }
        }
    }
    Ok(())
}

fn lookup<'a>(name: &str, env: &'a HashMap<String, String>) -> Result<&'a str, String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{name}}}` is not a valid variable reference; expected `${{NAME}}` with NAME made of \
             letters, digits and `_` (defaults such as `${{NAME:-x}}` are not supported)"
        ));
    }
    env.get(name).map(String::as_str).ok_or_else(|| {
        format!("`${{{name}}}`: environment variable {name} is not set (write `$${{{name}}}` for a literal)")
    })
}

fn escape(name: &str, value: &str, quote: Quote) -> Result<String, String> {
    match quote {
        Quote::Double => {
            let json = serde_json::to_string(value).expect("a string serializes");
            Ok(json[1..json.len() - 1].to_string())
        }
        Quote::Single if value.contains(['\n', '\r']) => Err(format!(
            "`${{{name}}}`: the value of {name} contains a line break, which a single-quoted scalar \
             cannot hold; write \"${{{name}}}\" (double-quoted) instead"
        )),
        Quote::Single => Ok(value.replace('\'', "''")),
        Quote::Plain if is_plain_safe(value) => Ok(value.to_string()),
        Quote::Plain => Err(format!(
            "`${{{name}}}`: the value of {name} is empty or contains characters that would change the \
             YAML structure here; write \"${{{name}}}\" (double-quoted) instead"
        )),
    }
}

fn is_plain_safe(value: &str) -> bool {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || "._/+=".contains(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || "._/+=:~?&%@-".contains(c))
        && !value.ends_with(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// `${NAME}` is replaced in plain, single- and double-quoted scalars; lines stay where they were.
    #[test]
    fn substitutes_and_keeps_lines() {
        let e = env(&[("A", "x/y"), ("Q", "it's \"q\"\n")]);
        let text = "a: ${A}\nb: '${A}'\nc: \"${Q}\"\nd: 'p${A}'\n";
        let out = substitute(text, &e).unwrap();
        assert_eq!(out, "a: x/y\nb: 'x/y'\nc: \"it's \\\"q\\\"\\n\"\nd: 'px/y'\n");
        assert_eq!(out.lines().count(), text.lines().count());
    }

    /// `$$` is a literal `$`; a lone `$` is kept.
    #[test]
    fn dollar_escape() {
        let out = substitute("a: $${A} b$c $$\n", &env(&[])).unwrap();
        assert_eq!(out, "a: ${A} b$c $\n");
    }

    /// An unset variable is an error at its line and column, naming the variable.
    #[test]
    fn missing_variable_has_position() {
        let err = substitute("a: 1\nb:\n  c: ${NOPE}\n", &env(&[])).unwrap_err();
        assert_eq!((err.line, err.column), (3, 6));
        assert!(err.message.contains("NOPE is not set"), "{}", err.message);
    }

    /// Comments are not substituted, so commented-out examples need no variables.
    #[test]
    fn comments_are_left_alone() {
        let text = "# x: ${NOPE}\na: b # ${NOPE}\nc: \"# ${A}\"\n";
        let out = substitute(text, &env(&[("A", "1")])).unwrap();
        assert_eq!(out, "# x: ${NOPE}\na: b # ${NOPE}\nc: \"# 1\"\n");
    }

    /// A value that would change the YAML structure in a plain scalar is refused, not injected.
    #[test]
    fn unsafe_plain_value_is_refused() {
        let err = substitute("s: ${S}\n", &env(&[("S", "abc #def")])).unwrap_err();
        assert!(err.message.contains("double-quoted"), "{}", err.message);
        let err = substitute("s: ${S}\n", &env(&[("S", "")])).unwrap_err();
        assert!(err.message.contains("S is empty"), "{}", err.message);
    }

    /// A malformed reference is an error naming it.
    #[test]
    fn malformed_reference() {
        let err = substitute("a: ${A:-x}\n", &env(&[])).unwrap_err();
        assert!(err.message.contains("${A:-x}"), "{}", err.message);
        let err = substitute("a: ${A\n", &env(&[])).unwrap_err();
        assert!(err.message.contains("closing"), "{}", err.message);
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
        assert_eq!(
            w,
            ["TOKENGATE_AUDIENCES is not a tokengate variable and is ignored; did you mean TOKENGATE_AUDIENCE?"]
        );
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
}

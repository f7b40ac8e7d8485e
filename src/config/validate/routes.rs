//! `routes:`: each route's id, host, path prefix, methods and policy, checked one by one.

use super::*;

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

pub(super) fn routes(
    ctx: &Ctx<'_>,
    raw: Option<Vec<raw::RawRoute>>,
    issuers: &[Issuer],
    paths: &PathSettings,
) -> Result<Vec<Route>, ConfigError> {
    let raw = match raw {
        None => vec![raw::RawRoute::default_route()],
        Some(list) if list.is_empty() => {
            return Err(ctx.err("routes", "must not be empty; omit routes for one catch-all route requiring a token"))
        }
        Some(list) => list,
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    let mut problems = Problems::default();
    for (i, r) in raw.into_iter().enumerate() {
        out.extend(problems.take(route(ctx, i, r, issuers, paths, &mut seen)));
    }
    problems.finish()?;
    Ok(out)
}

/// `routes[i]`; `seen` holds the ids of the routes before it.
pub(super) fn route(
    ctx: &Ctx<'_>,
    i: usize,
    r: raw::RawRoute,
    issuers: &[Issuer],
    paths: &PathSettings,
    seen: &mut HashMap<String, usize>,
) -> Result<Route, ConfigError> {
    let f = |name: &str| format!("routes[{i}].{name}");
    let Some(id) = r.id.clone() else {
        return Err(ctx.err(f("id"), "is required: a unique name used as the metrics route label"));
    };
    if !is_label_name(&id) {
        return Err(ctx.err(f("id"), format!("{id:?} must match [A-Za-z0-9_.-]+")));
    }
    if let Some(j) = seen.insert(id.clone(), i) {
        return Err(ctx.err(f("id"), format!("{id:?} is already used by routes[{j}]")));
    }
    let (host, port) = match &r.host {
        None => (None, None),
        Some(h) => {
            let (name, port) = crate::config::paths::route_host(ctx, &f("host"), h)?;
            (Some(name), port)
        }
    };
    let Some(path_prefix) = r.path_prefix.clone() else {
        return Err(ctx.err(f("path_prefix"), "is required, e.g. / or /api"));
    };
    crate::config::paths::path_prefix(ctx, &f("path_prefix"), &path_prefix)?;
    let case_insensitive = r.case_insensitive.unwrap_or(paths.case_insensitive);
    let methods = match &r.methods {
        None => None,
        Some(list) => Some(methods(ctx, &f("methods"), list)?),
    };
    let upstream = r.upstream.clone();
    let auth = match r.auth.unwrap_or(RawAuth::Required) {
        RawAuth::None => {
            let stray = [
                ("issuers", r.issuers.is_some()),
                ("audiences", r.audiences.is_some()),
                ("scopes", r.scopes.is_some()),
                ("scope_match", r.scope_match.is_some()),
                ("roles", r.roles.is_some()),
                ("roles_match", r.roles_match.is_some()),
                ("claims", r.claims.is_some()),
            ];
            if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ctx.err(f(name), "is only allowed with auth: required (this route has auth: none)"));
            }
            RouteAuth::Public
        }
        RawAuth::Required => RouteAuth::Required(policy(ctx, i, r, issuers)?),
    };
    Ok(Route { id, host, port, path_prefix, case_insensitive, methods, auth, upstream })
}

pub(super) fn methods(ctx: &Ctx<'_>, field: &str, list: &[String]) -> Result<Vec<Method>, ConfigError> {
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

pub(super) fn policy(ctx: &Ctx<'_>, i: usize, r: raw::RawRoute, issuers: &[Issuer]) -> Result<Policy, ConfigError> {
    let f = |name: &str| format!("routes[{i}].{name}");
    let accepted = match &r.issuers {
        Some(ids) => Some(trust::route_issuers(ctx, &f("issuers"), ids, issuers)?),
        None => None,
    };
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
    let claims = claim_rules(ctx, &f("claims"), r.claims.unwrap_or_default())?;
    let roles = r.roles.unwrap_or_default();
    non_empty_strings(ctx, &f("roles"), &roles)?;
    Ok(Policy {
        issuers: accepted,
        audiences: r.audiences.map(dedup),
        scopes: dedup(scopes),
        scope_match: match r.scope_match {
            Some(RawScopeMatch::Any) => ScopeMatch::Any,
            Some(RawScopeMatch::All) | None => ScopeMatch::All,
        },
        roles: dedup(roles),
        roles_match: match r.roles_match {
            Some(RawScopeMatch::Any) => ScopeMatch::Any,
            Some(RawScopeMatch::All) | None => ScopeMatch::All,
        },
        claims,
    })
}

/// Claim tests (`routes[i].claims`, `issuers[i].required_claims`): a claim path and exactly one
/// scalar to compare with.
pub(super) fn claim_rules(
    ctx: &Ctx<'_>,
    field: &str,
    raw: Vec<raw::RawClaimRule>,
) -> Result<Vec<ClaimRule>, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (k, c) in raw.into_iter().enumerate() {
        let cf = |name: &str| format!("{field}[{k}].{name}");
        let Some(claim) = c.claim.filter(|c| !c.is_empty()) else {
            return Err(ctx.err(cf("claim"), "is required: the claim to test (a name or a path)"));
        };
        let claim = ClaimPath::parse(&claim).map_err(|m| ctx.err(cf("claim"), m))?;
        let (name, test) = match (c.equals, c.contains) {
            (Some(v), None) => ("equals", ClaimTest::Equals(v)),
            (None, Some(v)) => ("contains", ClaimTest::Contains(v)),
            _ => return Err(ctx.err(format!("{field}[{k}]"), "expected exactly one of `equals` or `contains`")),
        };
        let (ClaimTest::Equals(v) | ClaimTest::Contains(v)) = &test;
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(ctx.err(cf(name), "expected a scalar (string, number or boolean)"));
        }
        rules.push(ClaimRule { claim, test });
    }
    Ok(rules)
}

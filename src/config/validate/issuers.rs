//! `issuers:`: each issuer's keys, algorithms, audiences and introspection, checked one by one.

use super::routes::claim_rules;
use super::*;
use crate::config::provider;
use crate::config::raw::RawIntrospectionProtocol;
use crate::config::{ClaimPath, ClaimSources, IntrospectionProtocol, Provider};

pub(super) fn issuers(ctx: &Ctx<'_>, raw: Vec<raw::RawIssuer>) -> Result<Vec<Issuer>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.err(
            "issuers",
            format!("at least one issuer is required: add issuers: to the config file or set {}", env::ISSUER),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    let mut problems = Problems::default();
    for (i, r) in raw.into_iter().enumerate() {
        out.extend(problems.take(issuer(ctx, i, r, &mut seen, &mut seen_ids)));
    }
    problems.finish()?;
    Ok(out)
}

/// `issuers[i]`; `seen` and `seen_ids` hold the issuers and ids before it.
pub(super) fn issuer(
    ctx: &Ctx<'_>,
    i: usize,
    mut r: raw::RawIssuer,
    seen: &mut HashMap<String, usize>,
    seen_ids: &mut HashMap<String, usize>,
) -> Result<Issuer, ConfigError> {
    let f = |name: &str| format!("issuers[{i}].{name}");
    provider::apply(&mut r);
    let provider = r.provider.map(Provider::from).unwrap_or_default();
    let Some(issuer) = r.issuer else {
        return Err(ctx.err(f("issuer"), "is required: the exact `iss` value of the tokens"));
    };
    let aliases = r.issuer_aliases.unwrap_or_default();
    // Every spelling of `iss` this issuer answers to: unique across issuers, templates included.
    for (field, name) in std::iter::once((f("issuer"), &issuer))
        .chain(aliases.iter().enumerate().map(|(k, a)| (format!("{}[{k}]", f("issuer_aliases")), a)))
    {
        iss_spelling(ctx, &field, name, provider)?;
        if let Some(j) = seen.insert(name.clone(), i) {
            return Err(ctx.err(field, format!("{name:?} is already an issuer or alias of issuers[{j}]")));
        }
    }
    let templated = std::iter::once(&issuer).chain(&aliases).any(|s| s.contains(provider::TENANT));
    let tenants = r.tenants.unwrap_or_default();
    non_empty_strings(ctx, &f("tenants"), &tenants)?;
    match (templated, tenants.is_empty()) {
        (true, true) => {
            return Err(ctx.err(
                f("tenants"),
                "is required: the issuer is a {tenantid} template, and only the listed tenants' tokens are accepted",
            ))
        }
        (false, false) => {
            return Err(ctx.err(f("tenants"), "only applies when issuer or an alias holds {tenantid}; remove it"))
        }
        _ => {}
    }
    if let Some(k) =
        tenants.iter().position(|t| !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return Err(ctx.err(format!("{}[{k}]", f("tenants")), "expected a tenant id (letters, digits, '-' and '.')"));
    }
    let discovery_url = match r.discovery_url {
        Some(_) if r.jwks_uri.is_some() || r.hmac_secret.is_some() => {
            return Err(ctx.err(f("discovery_url"), "cannot be combined with jwks_uri or hmac_secret"))
        }
        Some(url) => {
            check_idp_url(ctx, &f("discovery_url"), &url)?;
            Some(url)
        }
        None if templated && r.jwks_uri.is_none() && r.hmac_secret.is_none() && r.mode != Some(RawMode::Introspection) => {
            return Err(ctx.err(
                f("discovery_url"),
                "is required with a {tenantid} issuer (or set jwks_uri): the metadata URL cannot be derived from a template",
            ))
        }
        None => None,
    };
    let id = trust::issuer_id(ctx, i, r.id, &issuer, seen_ids)?;
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
        key_source(ctx, i, r.jwks_uri, r.hmac_secret.map(|s| s.0))?
    };
    let hmac = matches!(keys, KeySource::Secret(_));
    let algorithms = match keys {
        // Nothing is verified locally, so no algorithm is accepted.
        KeySource::None => Vec::new(),
        _ => algorithms(ctx, &f("algorithms"), r.algorithms, hmac)?,
    };
    let audiences = r.audiences.unwrap_or_default();
    non_empty_strings(ctx, &f("audiences"), &audiences)?;
    let audience_check = match r.audience_check {
        Some(RawAudienceCheck::Disabled) if !audiences.is_empty() => {
            return Err(ctx.err(
                f("audience_check"),
                "is disabled but audiences are listed; remove one of them (the audiences would not be checked)",
            ))
        }
        Some(RawAudienceCheck::Disabled) => AudienceCheck::Disabled,
        Some(RawAudienceCheck::Enabled) | None => AudienceCheck::Enabled,
    };
    let leeway = r.leeway.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        return Err(ctx.err(f("leeway"), format!("is {}; expected at most 5m", humantime::format_duration(leeway))));
    }
    let paths = |name: &str, list: Option<raw::OneOrMany>| -> Result<Vec<ClaimPath>, ConfigError> {
        match list {
            None => Ok(Vec::new()),
            Some(raw::OneOrMany::One(p)) => Ok(vec![ClaimPath::parse(&p).map_err(|m| ctx.err(f(name), m))?]),
            Some(raw::OneOrMany::Many(list)) => list
                .iter()
                .enumerate()
                .map(|(k, p)| ClaimPath::parse(p).map_err(|m| ctx.err(format!("{}[{k}]", f(name)), m)))
                .collect(),
        }
    };
    let mut sources = ClaimSources {
        audience: match r.audience_claim {
            Some(p) => Some(ClaimPath::parse(&p).map_err(|m| ctx.err(f("audience_claim"), m))?),
            None => None,
        },
        client_id: paths("client_id_claim", r.client_id_claim)?,
        scopes: paths("scope_claim", r.scope_claim)?,
        roles: paths("roles_claim", r.roles_claim)?,
    };
    // The defaults spelled out are the defaults (what `check-config` prints reads back the same).
    if sources.audience.as_ref().is_some_and(|p| p.is("aud")) {
        sources.audience = None;
    }
    if let [a, b] = sources.client_id.as_slice() {
        if a.is("client_id") && b.is("azp") {
            sources.client_id.clear();
        }
    }
    let required_claims = claim_rules(ctx, &f("required_claims"), r.required_claims.unwrap_or_default())?;
    Ok(Issuer {
        id,
        issuer,
        provider,
        aliases,
        tenants,
        discovery_url,
        keys,
        audiences: dedup(audiences),
        audience_check,
        algorithms,
        leeway,
        require_at_jwt: r.require_typ_at_jwt.unwrap_or(false),
        sources,
        required_claims,
        mode,
        introspection,
    })
}

/// One spelling of `iss` (`issuer` or an alias): an https URL (http on loopback) without query,
/// or a bare host name where the IdP documents one (Google's `accounts.google.com`), holding
/// `{tenantid}` at most once, as a whole path segment.
fn iss_spelling(ctx: &Ctx<'_>, field: &str, iss: &str, provider: Provider) -> Result<(), ConfigError> {
    if iss.is_empty() {
        return Err(ctx.err(field, "must not be empty"));
    }
    let bare_host = !iss.contains('/') && !iss.contains(':');
    if bare_host && field.contains("issuer_aliases") {
        // The alias is compared as a string; only the metadata's issuer must be a URL.
    } else {
        let url = check_idp_url(ctx, field, &iss.replace(provider::TENANT, "tenant"))?;
        if url.query().is_some() {
            return Err(ctx.err(field, format!("{iss:?} must not contain a query (RFC 8414 §2)")));
        }
    }
    let count = iss.matches(provider::TENANT).count();
    if count > 1 || (count == 1 && !iss.split('/').any(|seg| seg == provider::TENANT)) {
        return Err(ctx.err(field, "{tenantid} may appear once, as a whole path segment"));
    }
    if iss.replace(provider::TENANT, "").contains(['{', '}']) {
        return Err(ctx.err(field, "the only placeholder is {tenantid}"));
    }
    match provider {
        Provider::Okta if !iss.contains("/oauth2/") => Err(ctx.err(
            field,
            "is Okta's org authorization server, whose access tokens are not meant to be validated by anyone but Okta; use a custom authorization server (https://{org}.okta.com/oauth2/default or /oauth2/{id})",
        )),
        Provider::Auth0 if field.ends_with(".issuer") && !iss.ends_with('/') => {
            Err(ctx.err(field, "Auth0's `iss` ends with `/` (https://{tenant}.auth0.com/); add it"))
        }
        _ => Ok(()),
    }
}

/// Where issuer `i` (mode jwt or auto) gets its keys: `jwks_uri`, `hmac_secret` or discovery.
pub(super) fn key_source(
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
pub(super) fn introspection(
    ctx: &Ctx<'_>,
    field: &str,
    raw: raw::RawIntrospection,
) -> Result<Introspection, ConfigError> {
    let f = |name: &str| format!("{field}.{name}");
    let endpoint = match raw.endpoint {
        Some(url) => {
            check_idp_url(ctx, &f("endpoint"), &url)?;
            Some(url)
        }
        None => None,
    };
    let protocol = match raw.protocol {
        Some(RawIntrospectionProtocol::GoogleTokeninfo) => IntrospectionProtocol::GoogleTokeninfo,
        Some(RawIntrospectionProtocol::Rfc7662) | None => IntrospectionProtocol::Rfc7662,
    };
    let (client_id, client_secret) = if protocol == IntrospectionProtocol::GoogleTokeninfo {
        // Tokeninfo takes no client credentials: none may be configured to leak there.
        if raw.client_id.is_some() || raw.client_secret.is_some() || raw.auth_method.is_some() {
            return Err(ctx.err(f("client_id"), "is not used with protocol: google_tokeninfo (the endpoint takes no client credentials); remove client_id, client_secret and auth_method"));
        }
        if endpoint.is_none() {
            return Err(ctx.err(
                f("endpoint"),
                format!("is required with protocol: google_tokeninfo, e.g. {}", provider::GOOGLE_TOKENINFO),
            ));
        }
        (String::new(), String::new())
    } else {
        // RFC 7662 §2.1: the endpoint MUST require authorization, so the gateway always authenticates.
        let Some(client_id) = raw.client_id.filter(|id| !id.is_empty()) else {
            return Err(ctx.err(f("client_id"), "is required: the gateway's client id at the introspection endpoint"));
        };
        let Some(client_secret) = raw.client_secret.map(|s| s.0).filter(|s| !s.is_empty()) else {
            return Err(ctx.err(f("client_secret"), "is required, e.g. \"${INTROSPECTION_CLIENT_SECRET}\""));
        };
        (client_id, client_secret)
    };
    let breaker_failures = raw.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(ctx.err(f("breaker_failures"), "must be at least 1"));
    }
    let cache_capacity = raw.cache_capacity.unwrap_or(DEFAULT_INTROSPECTION_CACHE_CAPACITY);
    if cache_capacity == 0 {
        return Err(ctx.err(f("cache_capacity"), "must be greater than zero; set cache_max_ttl: 0s to not cache"));
    }
    let rate_limit = raw.rate_limit.unwrap_or(DEFAULT_INTROSPECTION_RATE_LIMIT);
    if !(rate_limit.is_finite() && rate_limit > 0.0) {
        return Err(ctx.err(f("rate_limit"), format!("is {rate_limit}; expected calls per second greater than zero")));
    }
    // Two seconds' worth of calls by default, at least one call.
    let rate_burst = raw.rate_burst.unwrap_or_else(|| (rate_limit * 2.0).ceil().min(f64::from(u32::MAX)) as u32);
    if rate_burst == 0 {
        return Err(ctx.err(f("rate_burst"), "must be at least 1"));
    }
    Ok(Introspection {
        endpoint,
        client_id,
        client_secret: Secret(client_secret.into_bytes()),
        auth_method: match raw.auth_method {
            Some(RawClientAuthMethod::ClientSecretPost) => ClientAuthMethod::ClientSecretPost,
            Some(RawClientAuthMethod::ClientSecretBasic) | None => ClientAuthMethod::ClientSecretBasic,
        },
        protocol,
        timeout: positive(ctx, &f("timeout"), raw.timeout.unwrap_or(DEFAULT_INTROSPECTION_TIMEOUT))?,
        cache_max_ttl: raw.cache_max_ttl.unwrap_or(DEFAULT_INTROSPECTION_CACHE_MAX_TTL),
        negative_ttl: raw.negative_ttl.unwrap_or(DEFAULT_INTROSPECTION_NEGATIVE_TTL),
        cache_capacity,
        cache_max_bytes: nonzero(
            ctx,
            &f("cache_max_bytes"),
            raw.cache_max_bytes.unwrap_or(DEFAULT_INTROSPECTION_CACHE_MAX_BYTES),
        )?,
        max_concurrent: nonzero(
            ctx,
            &f("max_concurrent"),
            raw.max_concurrent.unwrap_or(DEFAULT_INTROSPECTION_MAX_CONCURRENT),
        )?,
        rate_limit,
        rate_burst,
        breaker_failures,
        breaker_open_for: positive(
            ctx,
            &f("breaker_open_for"),
            raw.breaker_open_for.unwrap_or(DEFAULT_BREAKER_OPEN_FOR),
        )?,
    })
}

pub(super) fn algorithms(
    ctx: &Ctx<'_>,
    field: &str,
    raw: Option<Vec<String>>,
    hmac: bool,
) -> Result<Vec<Algorithm>, ConfigError> {
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

pub(super) fn non_empty_strings(ctx: &Ctx<'_>, field: &str, list: &[String]) -> Result<(), ConfigError> {
    match list.iter().position(|s| s.is_empty()) {
        Some(k) => Err(ctx.err(format!("{field}[{k}]"), "must not be empty")),
        None => Ok(()),
    }
}

pub(super) fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    list.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

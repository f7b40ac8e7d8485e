//! `issuers:`: each issuer's keys, algorithms, audiences and introspection, checked one by one.

use super::*;

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
    r: raw::RawIssuer,
    seen: &mut HashMap<String, usize>,
    seen_ids: &mut HashMap<String, usize>,
) -> Result<Issuer, ConfigError> {
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
    if r.scope_claim.as_deref() == Some("") {
        return Err(ctx.err(f("scope_claim"), "must not be empty; omit it to read `scope` then `scp`"));
    }
    Ok(Issuer {
        id,
        issuer,
        keys,
        audiences: dedup(audiences),
        audience_check,
        algorithms,
        leeway,
        require_at_jwt: r.require_typ_at_jwt.unwrap_or(false),
        scope_claim: r.scope_claim,
        mode,
        introspection,
    })
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
    // RFC 7662 §2.1: the endpoint MUST require authorization, so the gateway always authenticates.
    let Some(client_id) = raw.client_id.filter(|id| !id.is_empty()) else {
        return Err(ctx.err(f("client_id"), "is required: the gateway's client id at the introspection endpoint"));
    };
    let Some(client_secret) = raw.client_secret.map(|s| s.0).filter(|s| !s.is_empty()) else {
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

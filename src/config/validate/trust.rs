//! Which tokens a route trusts: issuer ids, the issuers each route accepts, and the rule that
//! every route checks an audience unless the operator opted out in writing.
//!
//! An issuer that mints tokens for several APIs (and ID tokens for its clients) signs them all
//! with the same keys; only `aud` tells them apart. So a token's audience is always checked
//! (RFC 9068 §4, RFC 8725 §3.9): a configuration where some route would accept an issuer's
//! tokens without an audience list is refused here, before anything is bound.

use std::collections::HashMap;

use super::Ctx;
use crate::config::{env, AudienceCheck, ConfigError, Issuer, Route, RouteAuth};

/// `issuers[i].id`: default the issuer URL; non-empty, printable, unique.
pub(super) fn issuer_id(
    ctx: &Ctx<'_>,
    i: usize,
    id: Option<String>,
    issuer: &str,
    seen: &mut HashMap<String, usize>,
) -> Result<String, ConfigError> {
    let field = format!("issuers[{i}].id");
    let id = id.unwrap_or_else(|| issuer.to_owned());
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.err(field, format!("{id:?} must be non-empty, without spaces or control characters")));
    }
    if let Some(j) = seen.insert(id.clone(), i) {
        return Err(ctx.err(
            field,
            format!("{id:?} is already the id of issuers[{j}]; give one of them another `id` (the default is the issuer URL)"),
        ));
    }
    Ok(id)
}

/// `routes[i].issuers` (`field`): ids of configured issuers, resolved to their indices so the
/// request path compares integers. Sorted: "the first accepted issuer" is in config order.
pub(super) fn route_issuers(
    ctx: &Ctx<'_>,
    field: &str,
    ids: &[String],
    issuers: &[Issuer],
) -> Result<Vec<usize>, ConfigError> {
    if ids.is_empty() {
        return Err(ctx.err(field, "must not be empty; omit it to accept every issuer"));
    }
    let mut out: Vec<usize> = Vec::with_capacity(ids.len());
    for (k, id) in ids.iter().enumerate() {
        let Some(index) = issuers.iter().position(|x| x.id == *id) else {
            let known: Vec<&str> = issuers.iter().map(|x| x.id.as_str()).collect();
            return Err(ctx.err(
                format!("{field}[{k}]"),
                format!("{id:?} is not the id of a configured issuer; expected one of: {}", known.join(", ")),
            ));
        };
        if !out.contains(&index) {
            out.push(index);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Every `auth: required` route that accepts an issuer has an audience list to check its tokens
/// against: the route's own, else the issuer's, unless the issuer says `audience_check: disabled`.
pub(super) fn check_audiences(ctx: &Ctx<'_>, issuers: &[Issuer], routes: &[Route]) -> Result<(), ConfigError> {
    for (i, issuer) in issuers.iter().enumerate() {
        if !issuer.audiences.is_empty() || issuer.audience_check == AudienceCheck::Disabled {
            continue;
        }
        let uncovered = routes.iter().enumerate().find(|(_, r)| match &r.auth {
            RouteAuth::Required(p) => p.audiences.is_none() && p.accepts_issuer(i),
            RouteAuth::Public => false,
        });
        if let Some((j, route)) = uncovered {
            return Err(ctx.err(
                format!("issuers[{i}].audiences"),
                format!(
                    "is empty and route {:?} (routes[{j}]) sets no audiences, so it would accept any token \
                     this issuer minted, for any API, and its ID tokens (RFC 9068 §4: the audience is \
                     always checked). Set issuers[{i}].audiences to this API's identifier ({} for an \
                     issuer from the environment), set audiences on the route, or write \
                     `audience_check: disabled` on the issuer to accept every audience",
                    route.id,
                    env::AUDIENCE
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

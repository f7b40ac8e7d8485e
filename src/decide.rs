//! The one decision behind every front door. The proxy (`crate::proxy`) and the decision
//! service (`crate::decision`) each describe a request (canonical host and path, method, the
//! headers and query that may carry its token); `route` and `admit` decide it; each door then
//! renders the answer its client expects. No door decides anything on its own.

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::auth::token_cache::LastToken;
use crate::auth::{extract, policy, AuthError, Principal};
use crate::canon::{CanonHost, CanonPath};
use crate::proxy::route::{Candidates, CompiledRoute};
use crate::proxy::State;
use crate::respond::{Challenge, Denial};
use crate::telemetry::otel;

/// A refused request: the route it is counted under (none when no route matched) and why.
pub type Refusal<'s> = (Option<&'s CompiledRoute>, Denial);

/// The routes that every reading of the canonical path chooses; the request must satisfy all
/// of them. No route: 404, nothing forwarded (fail closed).
pub fn route<'s>(
    state: &'s State,
    host: Option<&CanonHost<'_>>,
    path: &CanonPath<'_>,
    method: &Method,
) -> Result<Candidates<'s>, Refusal<'s>> {
    state.routes.find(host, path, method).ok_or((None, Denial::NoRoute))
}

/// Where a request may carry its token: headers, query, and (proxy only) a form body the proxy
/// has read under its cap.
pub struct Credentials<'r> {
    pub headers: &'r HeaderMap,
    pub query: Option<&'r str>,
    pub form: Option<&'r [u8]>,
}

/// Extract the token, authenticate it, and authorize it for every candidate route that requires
/// one. `Ok(None)`: every candidate is public, no token is looked at. `last_token` is the
/// connection's memo of its last admitted JWT.
pub async fn admit<'s>(
    state: &'s State,
    routes: &Candidates<'s>,
    credentials: &Credentials<'_>,
    last_token: &LastToken,
) -> Result<Option<Arc<Principal>>, Refusal<'s>> {
    let mut required = routes.required();
    let Some((first, policy)) = required.next() else { return Ok(None) };
    let deny = |e: AuthError| (Some(first), Denial::Auth(e));
    let token = extract::bearer(credentials.headers, credentials.query, credentials.form, &state.config.tokens)
        .map_err(deny)?
        .ok_or(deny(AuthError::MissingToken))?;
    let authentication = state.auth.authenticate(&token, policy.issuers.as_deref(), last_token);
    let principal = otel::authenticate(authentication).await.map_err(deny)?;
    drop(token);
    let issuer = state.auth.issuer_config(principal.issuer);
    for (route, policy) in std::iter::once((first, policy)).chain(required) {
        policy::authorize(&principal, policy, issuer).map_err(|e| (Some(route), Denial::Auth(e)))?;
    }
    Ok(Some(principal))
}

/// The challenge attributes for a refusal counted under `route`.
pub fn challenge<'s>(state: &'s State, route: Option<&'s CompiledRoute>) -> Challenge<'s> {
    Challenge {
        realm: &state.realm,
        scope: route.and_then(|r| r.challenge_scope.as_deref()),
        resource_metadata: state.config.protected_resource.as_ref().map(|p| p.metadata_url.as_str()),
    }
}

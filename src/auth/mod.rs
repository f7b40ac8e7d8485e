//! Authentication: from a bearer token to a verified `Principal`, or an `AuthError`.
//!
//! `Authenticator::authenticate` is the whole story. The token picks its path: a JWS whose
//! (unverified) `iss` names an issuer in mode `jwt` or `auto` is validated locally; any other
//! token goes to introspection (`introspect`) — at the named issuer when it is introspection-only,
//! else at the first issuer *the route accepts* that has introspection (an opaque token names no
//! issuer, and is never sent to an issuer the route does not trust). Without introspection, every
//! token is a JWT. A JWS naming an issuer the route does not accept is refused before any work.
//!
//! Locally: parse the JWS, let the `iss` select one configured issuer — an unknown issuer is
//! refused with no network call — check the header against that issuer's rules, find its key
//! (one rate-limited JWKS refetch on an unknown `kid`, or when no key verifies a token without
//! `kid`), verify the signature, then the claims.
//!
//! A JWT that verified once is admitted again from the verified-token cache (`token_cache`) until
//! its `exp` or a change of its issuer's key set.

pub mod claims;
pub mod error;
pub mod extract;
pub mod introspect;
pub mod iss;
pub mod jwks;
pub mod jws;
pub mod jwt;
pub mod keyset;
pub mod policy;
pub mod token_cache;

use std::collections::HashMap;
use std::sync::Arc;

pub use claims::{KeptClaims, Principal, TokenSource};
pub use error::AuthError;

use crate::clock::Clock;
use crate::config::{Config, Issuer, JwksSettings, TokenCacheSettings, TokenMode};
use crate::metrics::Metrics;
use introspect::Introspector;
use jwks::JwksCache;
use token_cache::{LastToken, Refusal, TokenCache};

/// One configured issuer, its live key set and its introspection client.
pub struct IssuerState {
    pub config: Issuer,
    /// `iss`, shared with every principal it vouches for.
    pub id: Arc<str>,
    /// Never fetches for an introspection-only issuer (`KeySource::None`).
    pub jwks: Arc<JwksCache>,
    pub introspector: Option<Introspector>,
}

impl IssuerState {
    /// An introspection-only issuer needs no key set; the others need one loaded.
    pub fn is_ready(&self) -> bool {
        self.config.mode == TokenMode::Introspection || self.jwks.is_ready()
    }
}

pub struct Authenticator {
    /// Shared with the authenticator of the previous configuration where it did not change.
    issuers: Vec<Arc<IssuerState>>,
    /// Exact spellings of `iss` (issuers and their aliases) → position.
    by_iss: HashMap<String, usize>,
    /// Positions of the issuers with a `{tenantid}` template, tried when no exact spelling matches.
    templated: Vec<usize>,
    /// Where tokens that name no jwt/auto issuer go on a route accepting every issuer: the first
    /// issuer with introspection.
    default_introspection: Option<usize>,
    /// JWTs that verified recently; `None` when disabled.
    token_cache: Option<Arc<TokenCache>>,
    /// What principals keep of their claims.
    kept_claims: KeptClaims,
    /// Settings every key set was built with.
    jwks_settings: JwksSettings,
    token_cache_settings: TokenCacheSettings,
    /// The wall clock for `exp`/`nbf` (the system clock outside tests).
    clock: Clock,
}

impl Authenticator {
    pub fn new(config: &Config, http: &reqwest::Client, metrics: &Metrics, clock: Clock) -> Authenticator {
        Authenticator::after(None, config, http, metrics, clock)
    }

    /// The authenticator for `config`, keeping what `previous` (the one serving until now) has
    /// that `config` did not change, so a reload costs no key fetch and no cold cache:
    /// - an issuer's key set when the issuer sits at the same position with the same settings,
    ///   under the same JWKS settings; its introspection client and cache too when principals
    ///   keep the same claims;
    /// - the verified-token cache when its settings and the kept claims are the same. Its
    ///   entries name their issuer by position and key-set generation; generations are unique
    ///   in the process (`JwksCache::generation`), so an entry made under an issuer that changed
    ///   or moved never matches the new one.
    pub fn after(
        previous: Option<&Authenticator>,
        config: &Config,
        http: &reqwest::Client,
        metrics: &Metrics,
        clock: Clock,
    ) -> Authenticator {
        let kept_claims = KeptClaims::for_config(config);
        let same_keeping = previous.filter(|p| p.kept_claims == kept_claims);
        let same_fetching = previous.filter(|p| p.jwks_settings == config.jwks);
        let issuers: Vec<Arc<IssuerState>> = config
            .issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| {
                let unchanged = |p: &Authenticator| p.issuers.get(index).filter(|s| s.config == *issuer).cloned();
                let old = same_fetching.and_then(unchanged);
                if let Some(state) = old.as_ref().filter(|_| same_keeping.is_some()) {
                    return state.clone();
                }
                // Principals now keep other claims: the introspection cache starts again, the
                // key set carries over.
                let jwks = match old {
                    Some(old) => old.jwks.clone(),
                    None => JwksCache::new(issuer, &config.jwks, http.clone(), metrics.jwks_fetches.clone()),
                };
                let id: Arc<str> = Arc::from(issuer.issuer.as_str());
                let max_bytes = config.jwks.max_response_bytes;
                Arc::new(IssuerState {
                    config: issuer.clone(),
                    jwks,
                    introspector: Introspector::new(
                        issuer,
                        index,
                        id.clone(),
                        http.clone(),
                        max_bytes,
                        metrics,
                        kept_claims.clone(),
                    )
                    .map(|i| i.with_clock(clock.clone())),
                    id,
                })
            })
            .collect();
        let mut by_iss = HashMap::new();
        let mut templated = Vec::new();
        for (i, state) in issuers.iter().enumerate() {
            for spelling in iss::spellings(&state.config) {
                if iss::is_template(spelling) {
                    templated.push(i);
                } else {
                    by_iss.entry(spelling.to_owned()).or_insert(i);
                }
            }
        }
        templated.dedup();
        // Routes accepting several introspecting issuers are reported by `config::warnings`.
        let default_introspection = issuers.iter().position(|i| i.introspector.is_some());
        let token_cache = match same_keeping.filter(|p| p.token_cache_settings == config.token_cache) {
            Some(p) => p.token_cache.clone(),
            None => TokenCache::new(&config.token_cache, &metrics.token_cache_lookups, clock.clone()).map(Arc::new),
        };
        Authenticator {
            issuers,
            by_iss,
            templated,
            default_introspection,
            token_cache,
            kept_claims,
            jwks_settings: config.jwks.clone(),
            token_cache_settings: config.token_cache.clone(),
            clock,
        }
    }

    pub fn issuers(&self) -> &[Arc<IssuerState>] {
        &self.issuers
    }

    /// The configuration of issuer number `issuer` (a `Principal::issuer`).
    pub fn issuer_config(&self, issuer: usize) -> &Issuer {
        &self.issuers[issuer].config
    }

    /// Opaque tokens go to introspection (with its own cache); a JWT seen recently is admitted
    /// from the verified-token cache. Route policy, including whether the route accepts the
    /// principal's issuer, is the caller's (`policy::authorize`), on every request.
    /// `accepted` is the route's `issuers` (indices; `None` = all): it picks the introspection
    /// endpoint for an opaque token. `last` is the calling connection's memory of its previous
    /// token: the same JWT again is admitted without hashing, parsing or awaiting anything.
    pub async fn authenticate(
        &self,
        token: &str,
        accepted: Option<&[usize]>,
        last: &LastToken,
    ) -> Result<Arc<Principal>, AuthError> {
        // A verdict remembered under a configuration with more issuers can name a position that
        // no longer exists: generation 0 is never given out, so it matches nothing.
        let generation = |i: usize| self.issuers.get(i).map_or(0, |s| s.jwks.generation());
        if let Some(principal) = self.token_cache.as_ref().and_then(|c| c.remembered(token, last, generation)) {
            return Ok(principal);
        }
        // Boxed: the introspection and JWKS futures are kilobytes that the hit above never needs.
        Box::pin(async move {
            if let Some(introspector) = self.introspector_for(token, accepted)? {
                return introspector.introspect(token).await;
            }
            match &self.token_cache {
                Some(cache) => cache.admit(token, last, generation, || self.verify_jwt(token)).await,
                None => self.verify_jwt(token).await.map(|(principal, _)| Arc::new(principal)).map_err(|r| r.error),
            }
        })
        .await
    }

    /// `None` = validate locally: a JWS naming a jwt/auto issuer, or any token when no issuer
    /// the route accepts has introspection (the JWT path then refuses what it cannot read).
    /// A JWS naming an issuer the route does not accept is refused here: no key lookup, no
    /// signature check, no introspection call.
    fn introspector_for(&self, token: &str, accepted: Option<&[usize]>) -> Result<Option<&Introspector>, AuthError> {
        if accepted.is_none() && self.default_introspection.is_none() {
            return Ok(None);
        }
        let named =
            introspect::jws_issuer_and_tenant(token).and_then(|(iss, tid)| self.issuer_named(&iss, tid.as_deref()));
        Ok(match (named, accepted) {
            (Some(i), Some(list)) if !list.contains(&i) => return Err(policy::ISSUER_NOT_ACCEPTED),
            (Some(i), _) if self.issuers[i].config.mode != TokenMode::Introspection => None,
            (Some(i), _) => self.issuers[i].introspector.as_ref(),
            // Only the first accepted issuer that introspects: sending a token to every endpoint
            // in turn would disclose one tenant's tokens to another's authorization server.
            (None, Some(list)) => list.iter().find_map(|&i| self.issuers[i].introspector.as_ref()),
            (None, None) => self.default_introspection.and_then(|i| self.issuers[i].introspector.as_ref()),
        })
    }

    /// The issuer whose spelling `iss` is (a template only with a `tid` on its allowlist).
    fn issuer_named(&self, iss: &str, tid: Option<&str>) -> Option<usize> {
        if let Some(&i) = self.by_iss.get(iss) {
            return Some(i);
        }
        self.templated.iter().copied().find(|&i| iss::names(&self.issuers[i].config, iss, tid))
    }

    /// Full verification; also returns the issuer's key-set generation, read before its keys so
    /// that a cache entry is never tagged newer than the keys that verified it (and a refusal
    /// that depends on the keys, with the generation it was decided under).
    async fn verify_jwt(&self, token: &str) -> Result<(Principal, u64), Refusal> {
        crate::telemetry::otel::verified();
        let jws = jws::parse(token)?;
        let iss = jws
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::InvalidToken("token has no issuer"))?;
        let index =
            self.issuer_named(iss, iss::tenant_of(&jws.claims)).ok_or(AuthError::InvalidToken("unknown issuer"))?;
        let issuer = &self.issuers[index];
        jwt::check_header(&jws.header, &issuer.config)?;
        let (mut generation, keys) = (issuer.jwks.generation(), issuer.jwks.keys());
        let mut signature = jwt::check_signature(&jws, keys.as_deref());
        // A key not fetched yet (unknown kid, no keys yet, or a token without kid that no key
        // verifies): one coalesced, rate-limited refetch may bring it.
        if signature.is_err_and(|e| jwt::refetch_may_help(&e, &jws.header)) {
            if let Some((refetched, keys)) = issuer.jwks.refetch_for_unknown_key(keys.as_ref()).await {
                (generation, signature) = (refetched, jwt::check_signature(&jws, Some(&keys)));
            }
        }
        let refusal = |error| Refusal { error, holds: jwt::refusal_holds(&error, index, generation) };
        signature.map_err(refusal)?;
        let mut principal =
            jwt::accept(jws, &issuer.config, index, issuer.id.clone(), self.clock.unix_secs()).map_err(refusal)?;
        principal.retain_claims(&self.kept_claims);
        Ok((principal, generation))
    }
}

//! Authentication: from a bearer token to a verified `Principal`, or an `AuthError`.
//!
//! `Authenticator::authenticate` is the whole story: parse the JWS, let the (unverified) `iss`
//! select one configured issuer — an unknown issuer is refused with no network call — check the
//! header against that issuer's rules, find its key (one rate-limited JWKS refetch on an unknown
//! `kid`), verify the signature, then the claims. A JWT that verified once is admitted again from
//! the verified-token cache (`token_cache`) until its `exp` or a change of its issuer's key set.

pub mod claims;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod jws;
pub mod jwt;
pub mod keyset;
pub mod policy;
pub mod token_cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use claims::Principal;
pub use error::AuthError;

use crate::config::{Config, Issuer};
use crate::metrics::Metrics;
use jwks::JwksCache;
use token_cache::TokenCache;

/// One configured issuer and its live key set.
pub struct IssuerState {
    pub config: Issuer,
    /// `iss`, shared with every principal it vouches for.
    pub id: Arc<str>,
    pub jwks: Arc<JwksCache>,
}

pub struct Authenticator {
    issuers: Vec<IssuerState>,
    by_iss: HashMap<String, usize>,
    /// JWTs that verified recently; `None` when disabled.
    token_cache: Option<TokenCache>,
}

impl Authenticator {
    pub fn new(config: &Config, http: &reqwest::Client, metrics: &Metrics) -> Authenticator {
        let issuers: Vec<IssuerState> = config
            .issuers
            .iter()
            .map(|issuer| IssuerState {
                config: issuer.clone(),
                id: Arc::from(issuer.issuer.as_str()),
                jwks: JwksCache::new(issuer, &config.jwks, http.clone(), metrics.jwks_fetches.clone()),
            })
            .collect();
        let by_iss = issuers.iter().enumerate().map(|(i, s)| (s.config.issuer.clone(), i)).collect();
        let token_cache = TokenCache::new(&config.token_cache, &metrics.token_cache_lookups);
        Authenticator { issuers, by_iss, token_cache }
    }

    pub fn issuers(&self) -> &[IssuerState] {
        &self.issuers
    }

    /// The audiences a token from this issuer must carry when the route names none.
    pub fn issuer_audiences(&self, issuer: usize) -> &[String] {
        &self.issuers[issuer].config.audiences
    }

    /// Every issuer has a usable key set.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.jwks.is_ready())
    }

    /// A JWT seen recently is admitted from the token cache (`token_cache`); route policy is the
    /// caller's, on every request.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        match &self.token_cache {
            Some(cache) => cache.admit(token, |i| self.issuers[i].jwks.generation(), || self.verify_jwt(token)).await,
            None => self.verify_jwt(token).await.map(|(principal, _)| Arc::new(principal)),
        }
    }

    /// Full verification; also returns the issuer's key-set generation, read before its keys so
    /// that a cache entry is never tagged newer than the keys that verified it.
    async fn verify_jwt(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let jws = jws::parse(token)?;
        let iss = jws
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::InvalidToken("token has no issuer"))?;
        let index = *self.by_iss.get(iss).ok_or(AuthError::InvalidToken("unknown issuer"))?;
        let issuer = &self.issuers[index];
        jwt::check_header(&jws.header, &issuer.config)?;
        let generation = issuer.jwks.generation();
        let keys = match issuer.jwks.keys() {
            Some(keys) if keys.candidates(jws.header.kid.as_deref(), jws.header.alg).next().is_some() => keys,
            // Unknown kid (or no keys yet): one coalesced, rate-limited refetch may find it.
            current => match issuer.jwks.refresh_for_unknown_kid().await.or(current) {
                Some(keys) => keys,
                None => return Err(AuthError::Unavailable("signing keys are not available")),
            },
        };
        let principal = jwt::verify(&jws, &keys, &issuer.config, index, issuer.id.clone(), unix_now())?;
        Ok((principal, generation))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

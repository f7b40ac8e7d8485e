//! `Principal`: who the verified token says the caller is, normalised the same way whatever
//! the token's kind, so route policies and identity headers treat every token alike.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{words, ClaimPath, ClaimSources, Config, IdentityValue, RouteAuth};

/// The verified identity behind a request. Built only from claims whose signature (or
/// introspection response) has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Index of the issuer in `Config::issuers` that vouched for the token.
    pub issuer: usize,
    /// How the token was verified: decides whether a missing `aud` is acceptable.
    pub source: TokenSource,
    /// `iss`
    pub issuer_id: Arc<str>,
    /// `sub`
    pub subject: Option<String>,
    /// `aud` (or the issuer's `audience_claim`), as a list whether the token carried a string
    /// or an array.
    pub audiences: Vec<String>,
    /// From `scope` (space-delimited) or `scp` (string or array), or the configured claims.
    pub scopes: Vec<String>,
    /// From the issuer's `roles_claim` (none by default).
    pub roles: Vec<String>,
    /// `client_id`, else `azp`, or the first configured claim present.
    pub client_id: Option<String>,
    /// `exp`, seconds since the epoch; 0 when the token has none (introspection answers).
    pub expires_at: u64,
    /// `nbf`, seconds since the epoch, when present.
    pub not_before: Option<f64>,
    /// Verified claims that something reads later: claim rules, claim-to-header mapping and the
    /// claims header (see `KeptClaims`).
    pub claims: Map<String, Value>,
}

/// How a principal's claims were verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// A JWT whose signature the gateway checked.
    Jwt,
    /// An RFC 7662 introspection answer, where every member but `active` is optional.
    Introspection,
    /// A Google tokeninfo answer: Google always names the token's audience (the OAuth client it
    /// was issued to), so one without `aud` is refused as a JWT without it is.
    Tokeninfo,
}

/// Which claims a principal keeps once subject, audiences, scopes and client id are extracted.
/// Cached principals are the gateway's memory: keeping only what routes and identity headers
/// read makes 100 000 cached tokens cost a fraction of their full claim sets.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptClaims {
    /// The claims header forwards every claim.
    All,
    /// Claim names read by claim rules or claim-mapped headers, sorted. Usually none, and an
    /// empty map allocates nothing.
    Only(Vec<String>),
}

impl KeptClaims {
    pub fn for_config(config: &Config) -> KeptClaims {
        if config.identity.claims_header.is_some() {
            return KeptClaims::All;
        }
        let rules = config.routes.iter().flat_map(|r| match &r.auth {
            RouteAuth::Required(p) => p.claims.iter().map(|rule| rule.claim.root().to_owned()).collect(),
            RouteAuth::Public => Vec::new(),
        });
        let headers = config.identity.headers.iter().filter_map(|h| match &h.value {
            IdentityValue::Claim(path) => Some(path.root().to_owned()),
            _ => None,
        });
        let mut names: Vec<String> = rules.chain(headers).collect();
        names.sort();
        names.dedup();
        KeptClaims::Only(names)
    }
}

impl Principal {
    /// Build a principal from verified claims (`source` Jwt; introspection sets its own), reading
    /// them where the issuer's `sources` say.
    pub fn from_claims(
        issuer: usize,
        issuer_id: Arc<str>,
        claims: Map<String, Value>,
        sources: &ClaimSources,
    ) -> Principal {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let at = |path: &ClaimPath| path.get(&claims);
        let audiences = match sources.audience.as_ref().map_or_else(|| claims.get("aud"), at) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let scopes = if sources.scopes.is_empty() {
            match claims.get("scope") {
                Some(v) => scopes_of(Some(v)),
                None => scopes_of(claims.get("scp")),
            }
        } else {
            union(sources.scopes.iter().map(at))
        };
        let client_id = if sources.client_id.is_empty() {
            string("client_id").or_else(|| string("azp"))
        } else {
            sources.client_id.iter().find_map(|p| at(p).and_then(Value::as_str)).map(str::to_owned)
        };
        let expires_at = claims.get("exp").and_then(Value::as_f64).map_or(0, |e| e.max(0.0) as u64);
        Principal {
            issuer,
            source: TokenSource::Jwt,
            issuer_id,
            subject: string("sub"),
            audiences,
            scopes,
            roles: union(sources.roles.iter().map(at)),
            client_id,
            expires_at,
            not_before: claims.get("nbf").and_then(Value::as_f64),
            claims,
        }
    }
}

/// The words of several claims, each once, in order of appearance.
fn union<'a>(values: impl Iterator<Item = Option<&'a Value>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in values.flat_map(words) {
        if !out.iter().any(|w| w == word) {
            out.push(word.to_owned());
        }
    }
    out
}

/// Scopes from a space-delimited string (RFC 8693 §4.2, RFC 9068 §2.2.3) or an array of strings.
fn scopes_of(value: Option<&Value>) -> Vec<String> {
    words(value).map(str::to_owned).collect()
}

impl Principal {
    /// Drop the claims nothing will read.
    pub fn retain_claims(&mut self, keep: &KeptClaims) {
        if let KeptClaims::Only(names) = keep {
            // Rebuilt rather than `retain`ed: a BTreeMap emptied in place keeps its ~600-byte
            // root node, and an empty new map allocates nothing.
            self.claims = std::mem::take(&mut self.claims)
                .into_iter()
                .filter(|(name, _)| names.binary_search(name).is_ok())
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(claims: Value, scope_claim: Option<&str>) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        let sources =
            ClaimSources { scopes: scope_claim.map(ClaimPath::top).into_iter().collect(), ..Default::default() };
        Principal::from_claims(0, Arc::from("https://idp"), map, &sources)
    }

    fn with(claims: Value, sources: &ClaimSources) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        Principal::from_claims(0, Arc::from("https://idp"), map, sources)
    }

    fn paths(list: &[&str]) -> Vec<ClaimPath> {
        list.iter().map(|p| ClaimPath::parse(p).unwrap()).collect()
    }

    /// Configured sources: nested and namespaced claims, unions, first client id present,
    /// and an audience from another claim (Cognito).
    #[test]
    fn configured_sources() {
        let sources = ClaimSources {
            audience: Some(ClaimPath::top("client_id")),
            client_id: paths(&["cid", "appid"]),
            scopes: paths(&["scp", "roles"]),
            roles: paths(&["realm_access.roles", "resource_access.api.roles", r"https://x\.example/roles"]),
        };
        let p = with(
            json!({
                "aud": "ignored", "client_id": "c1", "appid": "c2",
                "scp": "read write", "roles": ["Task.Read", "read"],
                "realm_access": {"roles": ["admin"]},
                "resource_access": {"api": {"roles": ["reader", "admin"]}},
                "https://x.example/roles": ["ns"],
            }),
            &sources,
        );
        assert_eq!(p.audiences, ["c1"]);
        assert_eq!(p.client_id.as_deref(), Some("c2"));
        assert_eq!(p.scopes, ["read", "write", "Task.Read"]);
        assert_eq!(p.roles, ["admin", "reader", "ns"]);
        let bare = with(json!({"aud": "a"}), &sources);
        assert!(bare.audiences.is_empty() && bare.roles.is_empty() && bare.client_id.is_none());
    }

    /// `scope` is a space-delimited string; `scp` may be a string or an array.
    #[test]
    fn scopes_from_scope_or_scp() {
        assert_eq!(principal(json!({"scope": "a  b"}), None).scopes, ["a", "b"]);
        assert_eq!(principal(json!({"scp": ["a", "b"]}), None).scopes, ["a", "b"]);
        assert_eq!(principal(json!({"scp": "a b"}), None).scopes, ["a", "b"]);
        assert_eq!(principal(json!({"permissions": ["x:y"]}), Some("permissions")).scopes, ["x:y"]);
        assert!(principal(json!({"roles": ["r"]}), None).roles.is_empty());
        assert!(principal(json!({"scope": "a"}), Some("permissions")).scopes.is_empty());
    }

    /// `aud` may be a string or an array; `client_id` falls back to `azp`.
    #[test]
    fn audience_and_client_id() {
        let p = principal(json!({"aud": "api", "azp": "c1"}), None);
        assert_eq!(p.audiences, ["api"]);
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        let p = principal(json!({"aud": ["a", "b"], "client_id": "c2", "azp": "c1"}), None);
        assert_eq!(p.audiences, ["a", "b"]);
        assert_eq!(p.client_id.as_deref(), Some("c2"));
    }

    /// Only the claims rules and headers read survive; the claims header keeps all.
    #[test]
    fn kept_claims() {
        let mut p = principal(json!({"sub": "a", "exp": 1, "nbf": 0, "tenant": "t", "jti": "x", "scope": "r"}), None);
        p.retain_claims(&KeptClaims::Only(vec!["exp".into(), "nbf".into(), "tenant".into()]));
        assert_eq!(Value::Object(p.claims.clone()), json!({"exp": 1, "nbf": 0, "tenant": "t"}));
        assert_eq!(p.subject.as_deref(), Some("a"));
        assert_eq!(p.scopes, ["r"]);
        let mut all = principal(json!({"jti": "x"}), None);
        all.retain_claims(&KeptClaims::All);
        assert_eq!(all.claims.len(), 1);
    }
}

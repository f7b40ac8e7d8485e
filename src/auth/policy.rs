//! Authorization: does this verified principal satisfy this route's policy?
//!
//! Pure. Evaluated on every request, also for tokens admitted from a cache, so a token that
//! passed one route never passes another that needs more. This is where the audience is checked
//! (routes may override the issuer's audiences), then scopes, then claim rules.

use serde_json::Value;

use super::{AuthError, Principal};
use crate::config::{ClaimRule, ClaimTest, Policy, ScopeMatch};

/// Check `principal` against `policy`; `issuer_audiences` apply when the route names none.
pub fn authorize(principal: &Principal, policy: &Policy, issuer_audiences: &[String]) -> Result<(), AuthError> {
    let audiences = policy.audiences.as_deref().unwrap_or(issuer_audiences);
    if !audiences.is_empty() {
        // RFC 7519 §4.1.3: if the principal processing the claim does not identify itself with a
        // value in "aud", the JWT MUST be rejected. A token without `aud` cannot identify us.
        if principal.audiences.is_empty() {
            return Err(AuthError::InvalidToken("token has no audience"));
        }
        if !principal.audiences.iter().any(|a| audiences.contains(a)) {
            return Err(AuthError::InvalidToken("token is not intended for this audience"));
        }
    }
    let has = |scope: &String| principal.scopes.contains(scope);
    let scopes_ok = match policy.scope_match {
        ScopeMatch::All => policy.scopes.iter().all(has),
        ScopeMatch::Any => policy.scopes.is_empty() || policy.scopes.iter().any(has),
    };
    if !scopes_ok {
        return Err(AuthError::InsufficientScope("token lacks a required scope"));
    }
    if !policy.claims.iter().all(|rule| holds(rule, principal)) {
        return Err(AuthError::InsufficientScope("token lacks a required claim"));
    }
    Ok(())
}

fn holds(rule: &ClaimRule, principal: &Principal) -> bool {
    let Some(actual) = principal.claims.get(&rule.claim) else { return false };
    match &rule.test {
        ClaimTest::Equals(expected) => actual == expected,
        ClaimTest::Contains(expected) => match (actual, expected) {
            (Value::Array(items), _) => items.contains(expected),
            (Value::String(words), Value::String(word)) => words.split(' ').any(|w| w == word),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn principal(claims: Value) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        Principal::from_claims(0, Arc::from("https://idp"), map, None)
    }

    fn policy(scopes: &[&str], scope_match: ScopeMatch) -> Policy {
        Policy { scopes: scopes.iter().map(|s| s.to_string()).collect(), scope_match, ..Policy::default() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// With audiences configured, a token without `aud` or with another `aud` is invalid_token.
    #[test]
    fn audience_membership() {
        let p = Policy::default();
        let api = strings(&["api"]);
        assert_eq!(authorize(&principal(json!({"aud": "api"})), &p, &api), Ok(()));
        assert_eq!(authorize(&principal(json!({"aud": ["x", "api"]})), &p, &api), Ok(()));
        assert!(matches!(authorize(&principal(json!({})), &p, &api), Err(AuthError::InvalidToken(_))));
        assert!(matches!(authorize(&principal(json!({"aud": "other"})), &p, &api), Err(AuthError::InvalidToken(_))));
        assert_eq!(authorize(&principal(json!({})), &p, &[]), Ok(()));
    }

    /// A route's audiences replace the issuer's.
    #[test]
    fn route_audience_overrides_issuer() {
        let p = Policy { audiences: Some(strings(&["billing"])), ..Policy::default() };
        let api = strings(&["api"]);
        assert!(authorize(&principal(json!({"aud": "api"})), &p, &api).is_err());
        assert_eq!(authorize(&principal(json!({"aud": "billing"})), &p, &api), Ok(()));
    }

    /// Scopes are all-of by default, any-of when asked.
    #[test]
    fn scopes_all_and_any() {
        let tok = principal(json!({"scope": "read"}));
        assert!(matches!(
            authorize(&tok, &policy(&["read", "write"], ScopeMatch::All), &[]),
            Err(AuthError::InsufficientScope(_))
        ));
        assert_eq!(authorize(&tok, &policy(&["read", "write"], ScopeMatch::Any), &[]), Ok(()));
        assert!(authorize(&tok, &policy(&["admin"], ScopeMatch::Any), &[]).is_err());
        assert_eq!(authorize(&tok, &policy(&[], ScopeMatch::Any), &[]), Ok(()));
    }

    /// Claim rules: equals compares JSON values; contains looks in arrays and space lists.
    #[test]
    fn claim_rules() {
        let tok = principal(json!({"tenant": "acme", "groups": ["admins"], "roles": "a b", "level": 3}));
        let rule =
            |claim: &str, test| Policy { claims: vec![ClaimRule { claim: claim.into(), test }], ..Policy::default() };
        assert_eq!(authorize(&tok, &rule("tenant", ClaimTest::Equals(json!("acme"))), &[]), Ok(()));
        assert_eq!(authorize(&tok, &rule("level", ClaimTest::Equals(json!(3))), &[]), Ok(()));
        assert_eq!(authorize(&tok, &rule("groups", ClaimTest::Contains(json!("admins"))), &[]), Ok(()));
        assert_eq!(authorize(&tok, &rule("roles", ClaimTest::Contains(json!("b"))), &[]), Ok(()));
        for bad in [
            rule("tenant", ClaimTest::Equals(json!("evil"))),
            rule("missing", ClaimTest::Equals(json!("x"))),
            rule("groups", ClaimTest::Contains(json!("root"))),
            rule("tenant", ClaimTest::Contains(json!("ac"))),
        ] {
            assert!(matches!(authorize(&tok, &bad, &[]), Err(AuthError::InsufficientScope(_))));
        }
    }
}

//! Authorization: does this verified principal satisfy this route's policy?
//!
//! Pure. Evaluated on every request, also for tokens admitted from a cache, so a token that
//! passed one route never passes another that needs more. This is where the route's issuers are
//! checked, then the audience (routes may override the issuer's audiences), then scopes, then
//! roles, then claim rules.

use serde_json::{Map, Value};

use super::{AuthError, Principal, TokenSource};
use crate::config::{AudienceCheck, ClaimRule, ClaimTest, Issuer, Policy, ScopeMatch};

/// A valid token from an issuer the route does not list in `issuers:`.
pub const ISSUER_NOT_ACCEPTED: AuthError = AuthError::InvalidToken("token issuer is not accepted on this route");
const WRONG_AUDIENCE: AuthError = AuthError::InvalidToken("token is not intended for this audience");
const NO_AUDIENCE: AuthError = AuthError::InvalidToken("token has no audience");

/// Check `principal` against `policy`; `issuer` is the configuration of the issuer that vouched
/// for it (`principal.issuer`), whose audiences apply when the route names none.
pub fn authorize(principal: &Principal, policy: &Policy, issuer: &Issuer) -> Result<(), AuthError> {
    // Also for cached principals: a token admitted on a route that trusts issuer A is refused
    // on a route that trusts only B.
    if !policy.accepts_issuer(principal.issuer) {
        return Err(ISSUER_NOT_ACCEPTED);
    }
    check_audience(principal, policy, issuer)?;
    if !satisfied(&policy.scopes, policy.scope_match, &principal.scopes) {
        return Err(AuthError::InsufficientScope("token lacks a required scope"));
    }
    if !satisfied(&policy.roles, policy.roles_match, &principal.roles) {
        return Err(AuthError::InsufficientScope("token lacks a required role"));
    }
    if !policy.claims.iter().all(|rule| holds(rule, &principal.claims)) {
        return Err(AuthError::InsufficientScope("token lacks a required claim"));
    }
    Ok(())
}

/// RFC 9068 §4 / RFC 8725 §3.9: the audience is always checked. An empty list is skipped only
/// on the issuer's explicit `audience_check: disabled`; config validation refuses any other gap,
/// and a hand-built config that has one fails closed here.
fn check_audience(principal: &Principal, policy: &Policy, issuer: &Issuer) -> Result<(), AuthError> {
    let audiences = policy.audiences.as_deref().unwrap_or(&issuer.audiences);
    if audiences.is_empty() {
        return match issuer.audience_check {
            AudienceCheck::Disabled => Ok(()),
            AudienceCheck::Enabled => Err(WRONG_AUDIENCE),
        };
    }
    if principal.audiences.is_empty() {
        return match principal.source {
            // RFC 7519 §4.1.3: if the principal processing the claim does not identify itself with
            // a value in "aud", the JWT MUST be rejected. A JWT without `aud` cannot identify us.
            TokenSource::Jwt | TokenSource::Tokeninfo => Err(NO_AUDIENCE),
            // RFC 7662 §2.2: `aud` is OPTIONAL in an introspection answer; the endpoint vouched
            // for the token and named no audience to disagree with.
            TokenSource::Introspection => Ok(()),
        };
    }
    if !principal.audiences.iter().any(|a| audiences.contains(a)) {
        return Err(WRONG_AUDIENCE);
    }
    Ok(())
}

/// Whether the token `held` every (`All`) or at least one (`Any`) of the `required` names; an
/// empty requirement is always met. Scopes and roles are required alike.
fn satisfied(required: &[String], how: ScopeMatch, held: &[String]) -> bool {
    let has = |name: &String| held.contains(name);
    match how {
        ScopeMatch::All => required.iter().all(has),
        ScopeMatch::Any => required.is_empty() || required.iter().any(has),
    }
}

/// Whether `claims` pass `rule` (route claim rules and an issuer's required claims).
pub fn holds(rule: &ClaimRule, claims: &Map<String, Value>) -> bool {
    let Some(actual) = rule.claim.get(claims) else { return false };
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
    use crate::config::{ClaimPath, KeySource};
    use serde_json::json;
    use std::sync::Arc;

    fn principal(claims: Value) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        Principal::from_claims(0, Arc::from("https://idp"), map, &Default::default())
    }

    fn introspected(claims: Value) -> Principal {
        Principal { source: TokenSource::Introspection, ..principal(claims) }
    }

    /// A tokeninfo answer without `aud` is refused like a JWT without it.
    #[test]
    fn tokeninfo_audience_is_required() {
        let api = issuer(&["api"]);
        let tokeninfo = |claims| Principal { source: TokenSource::Tokeninfo, ..principal(claims) };
        assert_eq!(authorize(&tokeninfo(json!({})), &Policy::default(), &api), Err(NO_AUDIENCE));
        assert_eq!(authorize(&tokeninfo(json!({"aud": "api"})), &Policy::default(), &api), Ok(()));
    }

    fn policy(scopes: &[&str], scope_match: ScopeMatch) -> Policy {
        Policy { scopes: scopes.iter().map(|s| s.to_string()).collect(), scope_match, ..Policy::default() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// An issuer whose tokens must carry one of `audiences`.
    fn issuer(audiences: &[&str]) -> Issuer {
        Issuer { audiences: strings(audiences), ..Issuer::new("https://idp", KeySource::None) }
    }

    fn any_audience() -> Issuer {
        Issuer { audience_check: AudienceCheck::Disabled, ..issuer(&[]) }
    }

    /// With audiences configured, a token without `aud` or with another `aud` is invalid_token.
    #[test]
    fn audience_membership() {
        let p = Policy::default();
        let api = issuer(&["api"]);
        assert_eq!(authorize(&principal(json!({"aud": "api"})), &p, &api), Ok(()));
        assert_eq!(authorize(&principal(json!({"aud": ["x", "api"]})), &p, &api), Ok(()));
        assert_eq!(authorize(&principal(json!({})), &p, &api), Err(NO_AUDIENCE));
        assert_eq!(authorize(&principal(json!({"aud": "other"})), &p, &api), Err(WRONG_AUDIENCE));
    }

    /// No audience anywhere is refused unless the issuer explicitly disabled the check.
    #[test]
    fn empty_audience_list_fails_closed() {
        let p = Policy::default();
        assert_eq!(authorize(&principal(json!({"aud": "api"})), &p, &issuer(&[])), Err(WRONG_AUDIENCE));
        assert_eq!(authorize(&principal(json!({})), &p, &issuer(&[])), Err(WRONG_AUDIENCE));
        assert_eq!(authorize(&principal(json!({"aud": "any"})), &p, &any_audience()), Ok(()));
        assert_eq!(authorize(&principal(json!({})), &p, &any_audience()), Ok(()));
        // A route's own audiences still bind an issuer that opted out.
        let route = Policy { audiences: Some(strings(&["billing"])), ..Policy::default() };
        assert_eq!(authorize(&principal(json!({"aud": "any"})), &route, &any_audience()), Err(WRONG_AUDIENCE));
    }

    /// An introspection answer's `aud` is checked when present; its absence alone admits.
    #[test]
    fn introspected_audience_is_optional_but_binding() {
        let p = Policy::default();
        let api = issuer(&["api"]);
        assert_eq!(authorize(&introspected(json!({})), &p, &api), Ok(()));
        assert_eq!(authorize(&introspected(json!({"aud": "api"})), &p, &api), Ok(()));
        assert_eq!(authorize(&introspected(json!({"aud": ["x", "y"]})), &p, &api), Err(WRONG_AUDIENCE));
        assert_eq!(authorize(&introspected(json!({})), &p, &issuer(&[])), Err(WRONG_AUDIENCE));
    }

    /// A route that lists issuers refuses a principal from any other, before anything else.
    #[test]
    fn route_issuers() {
        let only_b = Policy { issuers: Some(vec![1]), ..Policy::default() };
        let from_a = principal(json!({"aud": "api"}));
        assert_eq!(authorize(&from_a, &only_b, &issuer(&["api"])), Err(ISSUER_NOT_ACCEPTED));
        let from_b = Principal { issuer: 1, ..from_a.clone() };
        assert_eq!(authorize(&from_b, &only_b, &issuer(&["api"])), Ok(()));
        let a_and_b = Policy { issuers: Some(vec![1, 0]), ..Policy::default() };
        assert_eq!(authorize(&from_a, &a_and_b, &issuer(&["api"])), Ok(()));
    }

    /// A route's audiences replace the issuer's.
    #[test]
    fn route_audience_overrides_issuer() {
        let p = Policy { audiences: Some(strings(&["billing"])), ..Policy::default() };
        let api = issuer(&["api"]);
        assert!(authorize(&principal(json!({"aud": "api"})), &p, &api).is_err());
        assert_eq!(authorize(&principal(json!({"aud": "billing"})), &p, &api), Ok(()));
    }

    /// Scopes are all-of by default, any-of when asked.
    #[test]
    fn scopes_all_and_any() {
        let tok = principal(json!({"scope": "read"}));
        let any = any_audience();
        assert!(matches!(
            authorize(&tok, &policy(&["read", "write"], ScopeMatch::All), &any),
            Err(AuthError::InsufficientScope(_))
        ));
        assert_eq!(authorize(&tok, &policy(&["read", "write"], ScopeMatch::Any), &any), Ok(()));
        assert!(authorize(&tok, &policy(&["admin"], ScopeMatch::Any), &any).is_err());
        assert_eq!(authorize(&tok, &policy(&[], ScopeMatch::Any), &any), Ok(()));
    }

    /// Roles (from the issuer's roles_claim) are required like scopes, all or any.
    #[test]
    fn roles_all_and_any() {
        let tok = Principal { roles: strings(&["reader"]), ..principal(json!({"scope": "reader"})) };
        let any = any_audience();
        let roles = |list: &[&str], roles_match| Policy { roles: strings(list), roles_match, ..Policy::default() };
        assert_eq!(authorize(&tok, &roles(&["reader"], ScopeMatch::All), &any), Ok(()));
        assert_eq!(authorize(&tok, &roles(&["admin", "reader"], ScopeMatch::Any), &any), Ok(()));
        assert_eq!(
            authorize(&tok, &roles(&["admin", "reader"], ScopeMatch::All), &any),
            Err(AuthError::InsufficientScope("token lacks a required role"))
        );
        // A scope of the same name is not a role.
        let scoped = principal(json!({"scope": "admin"}));
        assert!(authorize(&scoped, &roles(&["admin"], ScopeMatch::Any), &any).is_err());
    }

    /// Claim rules: equals compares JSON values; contains looks in arrays and space lists.
    #[test]
    fn claim_rules() {
        let tok = principal(json!({"tenant": "acme", "groups": ["admins"], "roles": "a b", "level": 3,
            "realm_access": {"roles": ["ops"]}, "https://x.example/team": "blue"}));
        let any = any_audience();
        let rule = |claim: &str, test| Policy {
            claims: vec![ClaimRule { claim: ClaimPath::parse(claim).unwrap(), test }],
            ..Policy::default()
        };
        assert_eq!(authorize(&tok, &rule("tenant", ClaimTest::Equals(json!("acme"))), &any), Ok(()));
        assert_eq!(authorize(&tok, &rule("level", ClaimTest::Equals(json!(3))), &any), Ok(()));
        assert_eq!(authorize(&tok, &rule("groups", ClaimTest::Contains(json!("admins"))), &any), Ok(()));
        assert_eq!(authorize(&tok, &rule("roles", ClaimTest::Contains(json!("b"))), &any), Ok(()));
        assert_eq!(authorize(&tok, &rule("realm_access.roles", ClaimTest::Contains(json!("ops"))), &any), Ok(()));
        assert_eq!(authorize(&tok, &rule(r"https://x\.example/team", ClaimTest::Equals(json!("blue"))), &any), Ok(()));
        for bad in [
            rule("realm_access.roles", ClaimTest::Contains(json!("admin"))),
            rule("realm_access", ClaimTest::Contains(json!("ops"))),
            rule("tenant", ClaimTest::Equals(json!("evil"))),
            rule("missing", ClaimTest::Equals(json!("x"))),
            rule("groups", ClaimTest::Contains(json!("root"))),
            rule("tenant", ClaimTest::Contains(json!("ac"))),
        ] {
            assert!(matches!(authorize(&tok, &bad, &any), Err(AuthError::InsufficientScope(_))));
        }
    }
}

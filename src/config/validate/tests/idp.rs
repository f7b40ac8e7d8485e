//! Identity-provider keys: presets, issuer spellings, tenant templates, claim paths, required
//! claims and tokeninfo.

use super::*;
use crate::config::{ClaimPath, IntrospectionProtocol, Provider};

fn issuer_of(extra_issuer_lines: &str) -> Issuer {
    let text = format!(
        "upstream: {{ url: http://127.0.0.1:8081 }}\nissuers:\n  - issuer: https://idp.example.com/\n    audiences: [api]\n{extra_issuer_lines}"
    );
    load_ok(&text).issuers.remove(0)
}

fn one_issuer(text: &str) -> Issuer {
    load_ok(&format!("upstream: {{ url: http://127.0.0.1:8081 }}\nissuers:\n{text}")).issuers.remove(0)
}

fn paths(list: &[&str]) -> Vec<ClaimPath> {
    list.iter().map(|p| ClaimPath::parse(p).unwrap()).collect()
}

/// Each preset fills what it documents, and a written key wins over it.
#[test]
fn presets_fill_unset_keys_only() {
    let cognito = one_issuer(
        "  - issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc\n    provider: cognito\n    audiences: [client1]\n",
    );
    assert_eq!(cognito.provider, Provider::Cognito);
    assert_eq!(cognito.sources.audience, Some(ClaimPath::top("client_id")));
    assert_eq!(cognito.sources.client_id, paths(&["client_id"]));
    assert_eq!(cognito.sources.roles, paths(&["cognito:groups"]));
    assert_eq!(cognito.required_claims.len(), 1);
    assert!(cognito.required_claims[0].claim.is("token_use"));

    let keycloak = one_issuer(
        "  - issuer: https://sso.example.com/realms/acme\n    provider: keycloak\n    audiences: [api]\n    roles_claim: [realm_access.roles, resource_access.api.roles]\n",
    );
    assert_eq!(keycloak.sources.roles, paths(&["realm_access.roles", "resource_access.api.roles"]));
    assert!(keycloak.required_claims[0].claim.is("typ"));

    let entra = one_issuer(
        "  - issuer: https://login.microsoftonline.com/{tenantid}/v2.0\n    provider: entra\n    tenants: [t1]\n    audiences: [api://x]\n",
    );
    assert_eq!(entra.sources.scopes, paths(&["scp"]));
    assert_eq!(entra.sources.roles, paths(&["roles"]));
    assert_eq!(entra.sources.client_id, paths(&["azp", "appid"]));
    assert_eq!(
        entra.discovery_url.as_deref(),
        Some("https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration")
    );

    let google = one_issuer(
        "  - issuer: https://accounts.google.com\n    provider: google\n    mode: auto\n    audiences: [c.apps.googleusercontent.com]\n",
    );
    assert_eq!(google.aliases, ["accounts.google.com"]);
    let info = google.introspection.expect("tokeninfo");
    assert_eq!(info.protocol, IntrospectionProtocol::GoogleTokeninfo);
    assert_eq!(info.endpoint.as_deref(), Some("https://oauth2.googleapis.com/tokeninfo"));

    let authelia = one_issuer("  - issuer: https://auth.example.com\n    provider: authelia\n    audiences: [api]\n");
    assert!(authelia.require_at_jwt);
    let overridden = one_issuer(
        "  - issuer: https://auth.example.com\n    provider: authelia\n    audiences: [api]\n    require_typ_at_jwt: false\n",
    );
    assert!(!overridden.require_at_jwt);
}

/// `check-config` prints what the preset filled in, and that output loads back the same.
#[test]
fn presets_are_visible_and_round_trip() {
    let text = "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc\n    provider: cognito\n    audiences: [client1]\n";
    let config = load_ok(text);
    let printed = render_effective(&config);
    for needle in ["provider: cognito", "audience_claim: client_id", "token_use", "cognito:groups"] {
        assert!(printed.contains(needle), "{needle} missing from:\n{printed}");
    }
    assert_eq!(load_ok(&printed), config);
}

#[test]
fn provider_specific_refusals() {
    assert_invalid_full(
        "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://acme.okta.com\n    provider: okta\n    audiences: [api://default]\n",
        "issuers[0].issuer",
        "org authorization server",
    );
    assert_invalid_full(
        "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n  - issuer: https://acme.auth0.com\n    provider: auth0\n    audiences: [https://api]\n",
        "issuers[0].issuer",
        "ends with `/`",
    );
}

/// A template needs its tenants (and nothing else gets them), and a metadata URL.
#[test]
fn tenant_templates() {
    let head = "upstream: { url: http://127.0.0.1:8081 }\nissuers:\n";
    assert_invalid_full(
        &format!("{head}  - issuer: https://login.microsoftonline.com/{{tenantid}}/v2.0\n    discovery_url: https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration\n    audiences: [api]\n"),
        "issuers[0].tenants",
        "is required",
    );
    assert_invalid_full(
        &format!("{head}  - issuer: https://login.microsoftonline.com/{{tenantid}}/v2.0\n    tenants: [t1]\n    audiences: [api]\n"),
        "issuers[0].discovery_url",
        "is required",
    );
    assert_invalid("    tenants: [t1]\n", "issuers[0].tenants", "only applies");
    assert_invalid_full(
        &format!("{head}  - issuer: https://login.example.com/x{{tenantid}}/v2.0\n    tenants: [t1]\n    jwks_uri: https://login.example.com/keys\n    audiences: [api]\n"),
        "issuers[0].issuer",
        "whole path segment",
    );
    assert_invalid_full(
        &format!("{head}  - issuer: https://login.example.com/{{tenant}}/v2.0\n    audiences: [api]\n"),
        "issuers[0].issuer",
        "only placeholder",
    );
    assert_invalid_full(
        &format!("{head}  - issuer: https://login.microsoftonline.com/{{tenantid}}/v2.0\n    tenants: ['t 1']\n    jwks_uri: https://login.microsoftonline.com/common/discovery/v2.0/keys\n    audiences: [api]\n"),
        "issuers[0].tenants[0]",
        "tenant id",
    );
}

/// Aliases are spellings like the issuer: unique across issuers.
#[test]
fn aliases_are_unique_spellings() {
    let i = issuer_of("    issuer_aliases: [idp.example.com]\n");
    assert_eq!(i.aliases, ["idp.example.com"]);
    assert_invalid(
        "    issuer_aliases: ['https://idp.example.com/']\n",
        "issuers[0].issuer_aliases[0]",
        "already an issuer",
    );
    assert_invalid("    issuer_aliases: ['ftp://idp.example.com/']\n", "issuers[0].issuer_aliases[0]", "https");
}

/// Claim paths are checked where they are written, with the field and what to write instead.
#[test]
fn claim_paths_in_config() {
    let i = issuer_of("    scope_claim: [scp, roles]\n    roles_claim: realm_access.roles\n    client_id_claim: cid\n");
    assert_eq!(i.sources.scopes, paths(&["scp", "roles"]));
    assert_eq!(i.sources.roles, paths(&["realm_access.roles"]));
    assert_eq!(i.sources.client_id, paths(&["cid"]));
    assert_invalid(
        "    roles_claim: https://example.com/roles\n",
        "issuers[0].roles_claim",
        r"https://example\.com/roles",
    );
    assert_invalid("    scope_claim: [scp, 'a..b']\n", "issuers[0].scope_claim[1]", "empty");
    assert_invalid("    audience_claim: 'a\\b'\n", "issuers[0].audience_claim", "must be followed");
    assert_invalid(
        "routes:\n  - { id: r, path_prefix: /, claims: [{ claim: 'https://example.com/team', equals: x }] }\n",
        "routes[0].claims[0].claim",
        "JSON pointer",
    );
    assert_invalid(
        "identity: { headers: { X-Team: 'claim:https://example.com/team' } }\n",
        "identity.headers.X-Team",
        r"https://example\.com/team",
    );
    let c = load_ok(&format!(
        "{BASE}routes:\n  - {{ id: r, path_prefix: /, roles: [admin], roles_match: any, claims: [{{ claim: 'resource_access.api.roles', contains: x }}] }}\nidentity: {{ headers: {{ X-Roles: roles, X-Team: 'claim:https://example\\.com/team' }} }}\n"
    ));
    let RouteAuth::Required(p) = &c.routes[0].auth else { panic!() };
    assert_eq!((p.roles.as_slice(), p.roles_match), (&["admin".to_string()][..], ScopeMatch::Any));
    assert_eq!(p.claims[0].claim, ClaimPath::parse("resource_access.api.roles").unwrap());
    assert_eq!(c.identity.headers[0].value, IdentityValue::Roles);
    assert_eq!(c.identity.headers[1].value, IdentityValue::Claim(ClaimPath::top("https://example.com/team")));
    assert_invalid(
        "routes:\n  - { id: r, path_prefix: /, auth: none, roles: [a] }\n",
        "routes[0].roles",
        "only allowed",
    );
}

#[test]
fn required_claims_parse_like_route_claims() {
    let i = issuer_of("    required_claims: [{ claim: token_use, equals: access }]\n");
    assert_eq!(
        i.required_claims,
        [ClaimRule { claim: ClaimPath::top("token_use"), test: ClaimTest::Equals("access".into()) }]
    );
    assert_invalid("    required_claims: [{ claim: token_use }]\n", "issuers[0].required_claims[0]", "exactly one");
}

/// Tokeninfo takes no client credentials, and needs an endpoint.
#[test]
fn tokeninfo_settings() {
    let i = issuer_of("    mode: auto\n    introspection: { protocol: google_tokeninfo, endpoint: 'https://oauth2.googleapis.com/tokeninfo' }\n");
    let info = i.introspection.unwrap();
    assert_eq!(info.protocol, IntrospectionProtocol::GoogleTokeninfo);
    assert!(info.client_id.is_empty() && info.client_secret.0.is_empty());
    assert_invalid(
        "    mode: auto\n    introspection: { protocol: google_tokeninfo, endpoint: 'https://oauth2.googleapis.com/tokeninfo', client_id: x }\n",
        "issuers[0].introspection.client_id",
        "not used",
    );
    assert_invalid(
        "    mode: auto\n    introspection: { protocol: google_tokeninfo }\n",
        "issuers[0].introspection.endpoint",
        "is required",
    );
}

/// The environment reaches the new list keys as lists.
#[test]
fn env_sets_claim_sources() {
    let c = load_text(
        BASE,
        env(&[
            ("TOKENGATE_ISSUER_ROLES_CLAIM", "realm_access.roles, groups"),
            ("TOKENGATE_ISSUER_PROVIDER", "keycloak"),
        ]),
    )
    .unwrap();
    assert_eq!(c.issuers[0].sources.roles, paths(&["realm_access.roles", "groups"]));
    assert_eq!(c.issuers[0].provider, Provider::Keycloak);
}

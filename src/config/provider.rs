//! `issuers[].provider`: what each identity provider's tokens look like, as defaults for the
//! issuer keys the file leaves unset. Applied to the raw issuer before validation, so a preset
//! value is checked like a written one, every one can be overridden, and `check-config` prints
//! the result. The documentation behind each value is cited in `config/idp/<provider>.yaml`.

use super::raw::{
    OneOrMany, RawClaimRule, RawIntrospection, RawIntrospectionProtocol, RawIssuer, RawMode, RawProvider,
};
use super::Provider;

/// Google's tokeninfo endpoint (the opaque-access-token check Google documents).
pub const GOOGLE_TOKENINFO: &str = "https://oauth2.googleapis.com/tokeninfo";

impl From<RawProvider> for Provider {
    fn from(p: RawProvider) -> Provider {
        match p {
            RawProvider::Generic => Provider::Generic,
            RawProvider::Entra => Provider::Entra,
            RawProvider::Okta => Provider::Okta,
            RawProvider::Auth0 => Provider::Auth0,
            RawProvider::Cognito => Provider::Cognito,
            RawProvider::Keycloak => Provider::Keycloak,
            RawProvider::Google => Provider::Google,
            RawProvider::Authelia => Provider::Authelia,
        }
    }
}

impl From<Provider> for RawProvider {
    fn from(p: Provider) -> RawProvider {
        match p {
            Provider::Generic => RawProvider::Generic,
            Provider::Entra => RawProvider::Entra,
            Provider::Okta => RawProvider::Okta,
            Provider::Auth0 => RawProvider::Auth0,
            Provider::Cognito => RawProvider::Cognito,
            Provider::Keycloak => RawProvider::Keycloak,
            Provider::Google => RawProvider::Google,
            Provider::Authelia => RawProvider::Authelia,
        }
    }
}

fn one(s: &str) -> Option<OneOrMany> {
    Some(OneOrMany::One(s.to_owned()))
}

fn many(list: &[&str]) -> Option<OneOrMany> {
    Some(OneOrMany::Many(list.iter().map(|s| (*s).to_owned()).collect()))
}

/// The IdPs that sign access tokens with RS256 only.
fn rs256() -> Option<Vec<String>> {
    Some(vec!["RS256".to_owned()])
}

fn equals(claim: &str, value: &str) -> Option<Vec<RawClaimRule>> {
    Some(vec![RawClaimRule { claim: Some(claim.to_owned()), equals: Some(value.into()), contains: None }])
}

/// Fill the keys of `r` its provider sets and the file left unset.
pub fn apply(r: &mut RawIssuer) {
    let Some(provider) = r.provider else { return };
    macro_rules! default {
        ($field:ident, $value:expr) => {
            if r.$field.is_none() {
                r.$field = $value;
            }
        };
    }
    match provider {
        RawProvider::Generic => {}
        RawProvider::Entra => {
            // Delegated permissions: `scp`, space-separated; application permissions and app
            // roles: `roles`, an array. v2.0 tokens name the client in `azp`, v1.0 in `appid`.
            default!(scope_claim, one("scp"));
            default!(roles_claim, one("roles"));
            default!(client_id_claim, many(&["azp", "appid"]));
            default!(algorithms, rs256());
            // A tenant template has no metadata of its own: the work-and-school document (the
            // `organizations` endpoint) names the same template as its issuer, and leaves out
            // the personal-account keys that `common` adds.
            if r.jwks_uri.is_none() && r.discovery_url.is_none() {
                if let Some(issuer) = r.issuer.as_deref().filter(|i| i.contains(TENANT)) {
                    let base = issuer.replace(TENANT, "organizations");
                    r.discovery_url = Some(format!("{}/.well-known/openid-configuration", base.trim_end_matches('/')));
                }
            }
        }
        RawProvider::Okta => {
            // Custom authorization servers: `scp` is an array, the client id is in `cid`.
            default!(scope_claim, one("scp"));
            default!(client_id_claim, one("cid"));
            default!(algorithms, rs256());
        }
        RawProvider::Auth0 => {
            // RBAC permissions ("Add Permissions in the Access Token") are an array, and are
            // scopes the client need not have requested: both count as scopes.
            default!(scope_claim, many(&["scope", "permissions"]));
            default!(client_id_claim, many(&["azp", "client_id"]));
        }
        RawProvider::Cognito => {
            // Access tokens carry no `aud`: the app client id in `client_id` stands in for it,
            // and `token_use` tells an access token from an ID token.
            default!(audience_claim, Some("client_id".to_owned()));
            default!(client_id_claim, one("client_id"));
            default!(scope_claim, one("scope"));
            default!(roles_claim, one("cognito:groups"));
            default!(required_claims, equals("token_use", "access"));
            default!(algorithms, rs256());
        }
        RawProvider::Keycloak => {
            // `typ` in the payload: Bearer for access tokens, ID for ID tokens, Refresh.
            default!(scope_claim, one("scope"));
            default!(roles_claim, one("realm_access.roles"));
            // `azp` names the client in user tokens; service-account tokens also carry `client_id`.
            default!(client_id_claim, many(&["azp", "client_id"]));
            default!(required_claims, equals("typ", "Bearer"));
        }
        RawProvider::Google => {
            // ID tokens name the issuer with or without the scheme.
            if r.issuer.as_deref() == Some("https://accounts.google.com") {
                default!(issuer_aliases, Some(vec!["accounts.google.com".to_owned()]));
            }
            default!(client_id_claim, many(&["azp", "aud"]));
            if r.mode != Some(RawMode::Introspection) {
                default!(algorithms, rs256());
            }
            // Opaque access tokens are checked at tokeninfo, not by RFC 7662 introspection.
            if r.introspection.is_none() && matches!(r.mode, Some(RawMode::Auto | RawMode::Introspection)) {
                r.introspection = Some(RawIntrospection::default());
            }
            if let Some(i) = r.introspection.as_mut() {
                if i.protocol.is_none() {
                    i.protocol = Some(RawIntrospectionProtocol::GoogleTokeninfo);
                }
                if i.protocol == Some(RawIntrospectionProtocol::GoogleTokeninfo) && i.endpoint.is_none() {
                    i.endpoint = Some(GOOGLE_TOKENINFO.to_owned());
                }
            }
        }
        RawProvider::Authelia => {
            // JWT access tokens are RFC 9068's (`typ: at+jwt`); opaque ones are introspected.
            if r.mode != Some(RawMode::Introspection) {
                default!(require_typ_at_jwt, Some(true));
            }
            // Authelia's JWT access tokens carry `scp` (an array); its introspection answers `scope`.
            default!(scope_claim, many(&["scope", "scp"]));
            default!(client_id_claim, many(&["client_id", "azp"]));
        }
    }
}

/// The placeholder of a multi-tenant issuer template.
pub const TENANT: &str = "{tenantid}";

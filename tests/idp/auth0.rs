//! Auth0: the issuer ends in `/`, keys from `/.well-known/jwks.json` through discovery, `aud` an
//! array naming the API and the userinfo endpoint when `openid` was requested, RBAC
//! `permissions` counted as scopes, roles from an Action's namespaced claim, and both token
//! profiles (Auth0's: typ JWT and `azp`; RFC 9068's: typ at+jwt and `client_id`). Shapes:
//! Auth0's "Access Token Profiles" and "Create Custom Claims" (issue 13 IdP research, §4).

use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::{x5c, x5t, Key};

const API: &str = "https://api.example.com";
const SPA: &str = "8a3CBFt9Yq2WDNcnr4LMhnf0oEDnqTUa";
const JOBS: &str = "Zk3mQ8vN1pX5tR7yW2bC4dF6gH9jK0lM";
const USER: &str = "auth0|64f1a2b3c4d5e6f708192a3b";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: auth0
    issuer: ${IDP}/
    provider: auth0
    audiences: ["https://api.example.com"]
    roles_claim: 'https://example\.com/roles'
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: admin, path_prefix: /admin, issuers: [auth0], roles: [admin] }
  - id: jobs
    path_prefix: /jobs
    issuers: [auth0]
    scopes: [run:jobs]
    claims:
      - { claim: azp, equals: "${JOBS}" }
  - id: orders-write
    path_prefix: /orders
    methods: [POST, PUT, PATCH, DELETE]
    issuers: [auth0]
    scopes: [write:orders]
  - { id: orders, path_prefix: /orders, issuers: [auth0], scopes: [read:orders] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Namespaced-Roles: 'claim:https://example\.com/roles'
    X-Auth-Plan: 'claim:/https:~1~1example.com~1plan'
"#;

struct Auth0 {
    env: Env,
    key: Key,
}

impl Auth0 {
    async fn start() -> Auth0 {
        let idp = FakeIdp::start().await;
        let iss = format!("{}/", idp.base());
        idp.serve(
            "/.well-known/openid-configuration",
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}authorize"),
                "token_endpoint": format!("{iss}oauth/token"),
                "device_authorization_endpoint": format!("{iss}oauth/device/code"),
                "userinfo_endpoint": format!("{iss}userinfo"),
                "mfa_challenge_endpoint": format!("{iss}mfa/challenge"),
                "jwks_uri": format!("{iss}.well-known/jwks.json"),
                "registration_endpoint": format!("{iss}oidc/register"),
                "revocation_endpoint": format!("{iss}oauth/revoke"),
                "scopes_supported": ["openid", "profile", "offline_access", "name", "given_name", "family_name", "nickname", "email", "email_verified", "picture", "created_at", "identities", "phone", "address"],
                "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token"],
                "code_challenge_methods_supported": ["S256", "plain"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256", "RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
                "claims_supported": ["aud", "auth_time", "created_at", "email", "email_verified", "exp", "family_name", "given_name", "iat", "identities", "iss", "name", "nickname", "phone_number", "picture", "sub"],
                "request_uri_parameter_supported": false,
                "request_parameter_supported": false,
                "end_session_endpoint": format!("{iss}oidc/logout")
            }),
        );
        // The signing key and the next one (during a rotation), with x5c/x5t; `alg` left out of
        // the next key, as the tenant setting "Include Signing Algorithms in JSON Web Key Set" does.
        let key = Key::rsa(0, "NjVBRjY5MDlCMUIwNzU4RTA2QzZFMDQ4QzQ2MDAyQjVDNjk1RTM2Qg");
        let next = Key::rsa(1, "a7lvTeDzh9JfNrX0fQnKm");
        let jwks = json!({ "keys": [
            key.jwk(json!({"alg": "RS256", "use": "sig", "x5c": x5c(&key.kid), "kid": null, "x5t": x5t(&key.kid)})),
            next.jwk(json!({"use": "sig", "x5c": x5c(&next.kid), "kid": null, "x5t": x5t(&next.kid)})),
        ]});
        idp.serve("/.well-known/jwks.json", &jwks);
        Auth0 { env: Env::start(idp, CONFIG, &[("JOBS", JOBS)]).await, key }
    }

    fn iss(&self) -> String {
        format!("{}/", self.env.idp.base())
    }

    /// Header of the "Auth0" token profile (the default): typ JWT.
    fn mint(&self, claims: &Value) -> String {
        self.key.sign(&json!({"alg": "RS256", "typ": "JWT", "kid": self.key.kid}), claims)
    }

    /// A user's access token through the SPA, requested with `openid` (so `aud` also names
    /// userinfo), RBAC permissions on, roles added by an Action under a namespace.
    fn user_claims(&self, scope: &str, permissions: &[&str], roles: &[&str]) -> Value {
        let t = now();
        json!({
            "https://example.com/roles": roles, "https://example.com/plan": "enterprise",
            "iss": self.iss(), "sub": USER, "aud": [API, format!("{}userinfo", self.iss())],
            "iat": t - 60, "exp": t + 3600, "azp": SPA, "scope": scope, "permissions": permissions
        })
    }

    /// A machine-to-machine token (client credentials): `aud` a plain string, `sub` `…@clients`.
    fn m2m_claims(&self, client: &str) -> Value {
        let t = now();
        json!({
            "iss": self.iss(), "sub": format!("{client}@clients"), "aud": API, "iat": t - 60, "exp": t + 3600,
            "scope": "run:jobs", "gty": "client-credentials", "azp": client, "permissions": ["run:jobs"]
        })
    }

    /// The user's ID token for the SPA: `aud` is the client ID.
    fn id_claims(&self) -> Value {
        let t = now();
        json!({
            "nickname": "janedoe", "name": "Jane Doe", "picture": "https://s.gravatar.com/avatar/0",
            "updated_at": "2024-05-01T09:00:00.000Z", "email": "janedoe@example.com", "email_verified": true,
            "iss": self.iss(), "aud": SPA, "sub": USER, "iat": t - 60, "exp": t + 36000,
            "sid": "6cXqG5nA2jNmD-rb9cOSG7lZk1oH3bQv", "nonce": "ZlFhTnVJbVNldkJ3VnNfWjg5eGRCNlpU"
        })
    }
}

/// Users' tokens pass with scopes from `scope` and `permissions`, roles from the namespaced
/// claim; machine tokens pass where their client is allowed; the ID token, another API's
/// token and a user without the role do not.
#[tokio::test]
async fn auth0_access_tokens() {
    let a = Auth0::start().await;
    // RBAC user: `write:orders` only in `permissions` (not requested as a scope).
    let user = a.mint(&a.user_claims("openid profile read:orders", &["read:orders", "write:orders"], &["admin"]));
    let seen = a.env.admitted("/orders/3", &user).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", USER),
            ("x-auth-client-id", SPA),
            ("x-auth-scopes", "openid profile read:orders write:orders"),
            ("x-auth-roles", "admin"),
            ("x-auth-namespaced-roles", "admin"),
            ("x-auth-plan", "enterprise"),
        ],
    );
    a.env.admitted_as("POST", "/orders", &user).await;
    a.env.admitted("/admin", &user).await;

    let seen = a.env.admitted_as("POST", "/jobs/run", &a.mint(&a.m2m_claims(JOBS))).await;
    assert_identity(&seen, &[("x-auth-subject", &format!("{JOBS}@clients")), ("x-auth-client-id", JOBS)]);
    let other_machine = a.mint(&a.m2m_claims("q8W3eR5tY7uI9oP1aS2dF4gH6jK8lZ0x"));
    let request =
        crate::support::client(false).post(format!("http://{}/jobs/run", a.env.gw.addr)).bearer_auth(other_machine);
    let rest = crate::support::assert_refused(
        &a.env.up,
        request,
        403,
        Some("insufficient_scope"),
        "token lacks a required claim",
    )
    .await;
    assert_eq!(rest, ", scope=\"run:jobs\"");

    a.env.lacks_role("/admin", &a.mint(&a.user_claims("openid read:orders", &["read:orders"], &[]))).await;
    a.env.refused("/orders/3", &a.mint(&a.id_claims()), WRONG_AUDIENCE).await;
    // A token for another API of the same tenant (the userinfo audience alone is not this API).
    let mut elsewhere = a.user_claims("openid read:orders", &["read:orders"], &["admin"]);
    elsewhere["aud"] = json!(["https://billing.example.com", format!("{}userinfo", a.iss())]);
    a.env.refused("/orders/3", &a.mint(&elsewhere), WRONG_AUDIENCE).await;
    // The issuer without its trailing slash is another issuer.
    let mut no_slash = a.user_claims("read:orders", &[], &[]);
    no_slash["iss"] = json!(a.env.idp.base());
    a.env.refused("/orders/3", &a.mint(&no_slash), UNKNOWN_ISSUER).await;
}

/// The RFC 9068 token profile: header typ at+jwt, the client in `client_id` (no `azp`), a
/// `jti`; it passes with the same preset.
#[tokio::test]
async fn auth0_rfc9068_profile() {
    let a = Auth0::start().await;
    let mut claims = a.user_claims("read:orders", &[], &["admin"]);
    let object = claims.as_object_mut().unwrap();
    object.remove("azp");
    object.insert("client_id".into(), json!(SPA));
    object.insert("jti".into(), json!("73WakrfVbNJBaAmhQtEeDv"));
    let token = a.key.sign(&json!({"alg": "RS256", "typ": "at+jwt", "kid": a.key.kid}), &claims);
    let seen = a.env.admitted("/admin/users", &token).await;
    assert_identity(&seen, &[("x-auth-client-id", SPA), ("x-auth-scopes", "read:orders"), ("x-auth-roles", "admin")]);
}

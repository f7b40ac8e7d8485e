//! Keycloak (Quarkus distribution, `{base}/realms/{realm}`): keys from the realm's discovery
//! document (`…/protocol/openid-connect/certs`, served `Cache-Control: no-cache`), a key set that
//! also holds an encryption key (`use: enc`, RSA-OAEP), header bytes with spaces, realm roles in
//! `realm_access.roles` and the API's client roles in `resource_access.<client>.roles`, and the
//! payload `typ` telling access tokens (Bearer) from ID tokens (ID). Shapes: a recorded real
//! token and Keycloak's test fixtures (issue 13 IdP research, §6).

use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::{x5c, x5t, x5t_s256, Key};

const WEB: &str = "web-app";
const USER: &str = "fd8fc3d3-0a39-41f7-9468-45926f658e41";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: keycloak
    issuer: ${IDP}/realms/acme
    provider: keycloak
    audiences: [orders-api]
    roles_claim: [realm_access.roles, resource_access.orders-api.roles]
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: admin, path_prefix: /admin, issuers: [keycloak], roles: [admin] }
  - id: orders-write
    path_prefix: /orders
    methods: [POST, PUT, PATCH, DELETE]
    issuers: [keycloak]
    roles: [order-writer]
  - { id: orders, path_prefix: /orders, issuers: [keycloak], roles: [order-reader, order-writer], roles_match: any }
  - { id: reports, path_prefix: /reports, issuers: [keycloak], scopes: [reports] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Api-Roles: claim:resource_access.orders-api.roles
    X-Auth-Username: claim:preferred_username
"#;

struct Keycloak {
    env: Env,
    sig: Key,
    /// The realm's encryption key pair: its public half is in the JWKS with `use: enc`.
    enc: Key,
}

impl Keycloak {
    async fn start() -> Keycloak {
        let idp = FakeIdp::start().await;
        let iss = format!("{}/realms/acme", idp.base());
        let oidc = format!("{iss}/protocol/openid-connect");
        idp.serve(
            "/realms/acme/.well-known/openid-configuration",
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{oidc}/auth"),
                "token_endpoint": format!("{oidc}/token"),
                "introspection_endpoint": format!("{oidc}/token/introspect"),
                "userinfo_endpoint": format!("{oidc}/userinfo"),
                "end_session_endpoint": format!("{oidc}/logout"),
                "jwks_uri": format!("{oidc}/certs"),
                "check_session_iframe": format!("{oidc}/login-status-iframe.html"),
                "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"],
                "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512"],
                "id_token_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"],
                "userinfo_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512", "none"],
                "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth", "client_secret_jwt"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth", "client_secret_jwt"],
                "claims_supported": ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username", "email", "acr"],
                "scopes_supported": ["openid", "profile", "email", "roles", "web-origins", "offline_access", "reports"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tls_client_certificate_bound_access_tokens": true,
                "revocation_endpoint": format!("{oidc}/revoke"),
                "device_authorization_endpoint": format!("{oidc}/auth/device"),
                "backchannel_logout_supported": true,
                "backchannel_logout_session_supported": true
            }),
        );
        let sig = Key::rsa(0, "KAa6_SOruKWTZN1zSQgX_VHuwlN7FQEoIlBigATjRr0");
        let enc = Key::rsa(1, "Q2O_f0Z7hVL1WUxKQbChyWK_FzQK-qRZh4Kg9mxxt_I");
        let x509 = |k: &Key| json!({"x5c": x5c(&k.kid), "x5t": x5t(&k.kid), "x5t#S256": x5t_s256(&k.kid)});
        let with = |k: &Key, members: Value| {
            let mut jwk = k.jwk(members);
            jwk.as_object_mut().unwrap().extend(x509(k).as_object().unwrap().clone());
            jwk
        };
        let jwks = json!({ "keys": [
            with(&sig, json!({"kid": null, "kty": "RSA", "alg": "RS256", "use": "sig"})),
            with(&enc, json!({"kid": null, "kty": "RSA", "alg": "RSA-OAEP", "use": "enc"})),
        ]});
        idp.serve_with("/realms/acme/protocol/openid-connect/certs", &jwks, &[("cache-control", "no-cache")]);
        Keycloak { env: Env::start(idp, CONFIG, &[]).await, sig, enc }
    }

    fn iss(&self) -> String {
        format!("{}/realms/acme", self.env.idp.base())
    }

    /// Keycloak's header bytes, spaces and all.
    fn mint_with(key: &Key, claims: &Value) -> String {
        key.sign_header_text(&format!(r#"{{"alg":"RS256","typ" : "JWT","kid" : "{}"}}"#, key.kid), claims)
    }

    fn mint(&self, claims: &Value) -> String {
        Keycloak::mint_with(&self.sig, claims)
    }

    /// A user's access token through the web app: `aud` lists orders-api (the Audience Resolve
    /// mapper, for its client roles) and account; payload `typ` Bearer.
    fn user_claims(&self, realm_roles: &[&str], api_roles: &[&str]) -> Value {
        let t = now();
        let mut realm = vec!["offline_access", "default-roles-acme", "uma_authorization"];
        realm.extend_from_slice(realm_roles);
        json!({
            "exp": t + 300, "iat": t - 10, "auth_time": t - 300, "jti": "e1ac2e55-a655-464b-9039-6874c52398e3",
            "iss": self.iss(), "aud": ["orders-api", "account"], "sub": USER, "typ": "Bearer", "azp": WEB,
            "session_state": "c09af47f-db7c-4013-bff6-60b78b959786", "acr": "1",
            "allowed-origins": ["https://app.example.com"],
            "realm_access": {"roles": realm},
            "resource_access": {
                "orders-api": {"roles": api_roles},
                "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}
            },
            "scope": "openid profile email reports", "sid": "c09af47f-db7c-4013-bff6-60b78b959786",
            "email_verified": true, "preferred_username": "guest", "email": "guest@example.com"
        })
    }

    /// The user's ID token for the web app: `typ` ID, `aud` the web app.
    fn id_claims(&self) -> Value {
        let t = now();
        json!({
            "exp": t + 300, "iat": t - 10, "auth_time": t - 300, "jti": "3a5f0c1e-8f0d-4b8e-9e52-5d8c2a1f7b64",
            "iss": self.iss(), "aud": WEB, "sub": USER, "typ": "ID", "azp": WEB,
            "session_state": "c09af47f-db7c-4013-bff6-60b78b959786", "at_hash": "UbB146Lw2fEcOkrltOo3uQ", "acr": "1",
            "sid": "c09af47f-db7c-4013-bff6-60b78b959786", "email_verified": true,
            "preferred_username": "guest", "email": "guest@example.com"
        })
    }
}

/// Access tokens pass with realm and API client roles; `roles_match: any` and `all` routes;
/// scopes from `scope`. ID tokens (payload typ ID) are refused as not access tokens, the
/// default `aud: account` token by audience.
#[tokio::test]
async fn keycloak_access_tokens() {
    let k = Keycloak::start().await;
    let reader = k.mint(&k.user_claims(&[], &["order-reader"]));
    let seen = k.env.admitted("/orders/9", &reader).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", USER),
            ("x-auth-client-id", WEB),
            ("x-auth-scopes", "openid profile email reports"),
            ("x-auth-roles", "offline_access default-roles-acme uma_authorization order-reader"),
            ("x-auth-api-roles", "order-reader"),
            ("x-auth-username", "guest"),
        ],
    );
    k.env.admitted("/reports/q3", &reader).await;
    let writer = k.mint(&k.user_claims(&["admin"], &["order-writer"]));
    k.env.admitted_as("POST", "/orders", &writer).await;
    k.env.admitted("/orders/9", &writer).await;
    k.env.admitted("/admin", &writer).await;

    k.env.lacks_role("/admin", &reader).await;
    let request = crate::support::client(false).post(format!("http://{}/orders", k.env.gw.addr)).bearer_auth(&reader);
    let rest = crate::support::assert_refused(&k.env.up, request, 403, Some("insufficient_scope"), LACKS_ROLE).await;
    assert_eq!(rest, "");
    // The account client's roles are not this API's.
    k.env.lacks_role("/orders/9", &k.mint(&k.user_claims(&[], &[]))).await;

    k.env.refused("/orders/9", &k.mint(&k.id_claims()), NOT_AN_ACCESS_TOKEN).await;
    // Refresh tokens and DPoP-bound tokens are not bearer access tokens either.
    for typ in ["Refresh", "Offline", "DPoP"] {
        let mut other = k.user_claims(&["admin"], &["order-writer"]);
        other["typ"] = json!(typ);
        k.env.refused("/orders/9", &k.mint(&other), NOT_AN_ACCESS_TOKEN).await;
    }
    // Without an Audience mapper, `aud` is just the account console.
    let mut account_only = k.user_claims(&[], &["order-reader"]);
    account_only["aud"] = json!("account");
    k.env.refused("/orders/9", &k.mint(&account_only), WRONG_AUDIENCE).await;
}

/// The encryption key in the realm's JWKS verifies nothing: a token signed with it under its
/// `kid` is refused as signed by an unknown key.
#[tokio::test]
async fn keycloak_encryption_key_is_not_a_signing_key() {
    let k = Keycloak::start().await;
    let forged = Keycloak::mint_with(&k.enc, &k.user_claims(&["admin"], &["order-writer"]));
    k.env.refused("/admin", &forged, "unknown signing key").await;
    k.env.admitted("/admin", &k.mint(&k.user_claims(&["admin"], &[]))).await;
}

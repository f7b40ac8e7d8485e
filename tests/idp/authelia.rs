//! Authelia: the issuer is its root URL, keys from `/jwks.json` through discovery (an RS256 and
//! an ES256 key: clients choose), JWT access tokens per RFC 9068 (header `typ: at+jwt`, scopes
//! as an array in `scp`, the client in `client_id`, `aud` only when requested) checked locally,
//! opaque ones introspected at the endpoint its discovery document names (mode auto). Groups
//! reach access tokens only through a claims policy; they are read as roles here. Shapes:
//! Authelia's source (`internal/oidc/session.go`) and docs (issue 13 IdP research, §8).

use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::Key;
use crate::support::{FakeIntrospection, INTROSPECTION_CLIENT_SECRET};
use tokengate::config::ClientAuthMethod;

const API: &str = "https://api.example.com";
const APP: &str = "orders-app";
const USER: &str = "8c3d4a5e-1f2b-4c6d-9e8f-0a1b2c3d4e5f";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: authelia
    issuer: ${IDP}
    provider: authelia
    audiences: [https://api.example.com]
    mode: auto
    introspection:
      client_id: tokengate
      client_secret: "${SECRET}"
      auth_method: client_secret_basic
    roles_claim: groups
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: admin, path_prefix: /admin, issuers: [authelia], roles: [admins] }
  - id: orders-write
    path_prefix: /orders
    methods: [POST, PUT, PATCH, DELETE]
    issuers: [authelia]
    scopes: [orders.write]
  - { id: orders, path_prefix: /orders, issuers: [authelia], scopes: [orders.read] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Amr: claim:amr
"#;

struct Authelia {
    env: Env,
    rsa: Key,
    ec: Key,
    introspection: FakeIntrospection,
}

impl Authelia {
    async fn start() -> Authelia {
        let idp = FakeIdp::start().await;
        let introspection = FakeIntrospection::start(ClientAuthMethod::ClientSecretBasic).await;
        let iss = idp.base();
        idp.serve(
            "/.well-known/openid-configuration",
            &json!({
                "issuer": iss,
                "jwks_uri": format!("{iss}/jwks.json"),
                "authorization_endpoint": format!("{iss}/api/oidc/authorization"),
                "token_endpoint": format!("{iss}/api/oidc/token"),
                "introspection_endpoint": introspection.endpoint(),
                "revocation_endpoint": format!("{iss}/api/oidc/revocation"),
                "userinfo_endpoint": format!("{iss}/api/oidc/userinfo"),
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
                "grant_types_supported": ["authorization_code", "implicit", "client_credentials", "refresh_token"],
                "scopes_supported": ["offline_access", "openid", "profile", "groups", "email", "orders.read", "orders.write"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "none"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
                "code_challenge_methods_supported": ["S256", "plain"]
            }),
        );
        let rsa = Key::rsa(0, "main");
        let ec = Key::ec("main-es256");
        let jwks = json!({ "keys": [
            rsa.jwk(json!({"kid": null, "kty": "RSA", "alg": "RS256", "use": "sig"})),
            ec.jwk(json!({"kid": null, "kty": "EC", "alg": "ES256", "use": "sig"})),
        ]});
        idp.serve("/jwks.json", &jwks);
        let env = Env::start(idp, CONFIG, &[("SECRET", INTROSPECTION_CLIENT_SECRET)]).await;
        Authelia { env, rsa, ec, introspection }
    }

    /// An RFC 9068 access token's header: typ at+jwt.
    fn mint(key: &Key, claims: &Value) -> String {
        let alg = if key.alg == jsonwebtoken::Algorithm::ES256 { "ES256" } else { "RS256" };
        key.sign(&json!({"alg": alg, "kid": key.kid, "typ": "at+jwt"}), claims)
    }

    /// A JWT access token for the app, which requested the API's audience.
    fn access_claims(&self, scp: &[&str], groups: &[&str]) -> Value {
        let t = now();
        json!({
            "iss": self.env.idp.base(), "sub": USER, "aud": [API], "exp": t + 3600, "iat": t - 10, "nbf": t - 10,
            "jti": "0b9f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "client_id": APP, "scp": scp,
            "amr": ["pwd", "otp", "mfa"], "groups": groups
        })
    }

    /// The user's ID token for the app: header typ JWT, `aud` the app.
    fn id_token(&self) -> String {
        let t = now();
        let claims = json!({
            "iss": self.env.idp.base(), "jti": "5e1c8d2f-0a3b-4c5d-8e9f-1a2b3c4d5e6f", "sub": USER, "aud": [APP],
            "exp": t + 3600, "iat": t - 10, "auth_time": t - 60, "amr": ["pwd", "otp", "mfa"], "azp": APP,
            "nonce": "qZ5Aw2xS8cV"
        });
        self.rsa.sign(&json!({"alg": "RS256", "kid": self.rsa.kid, "typ": "JWT"}), &claims)
    }
}

/// JWT access tokens (RS256 and ES256) pass with scopes from `scp`; opaque ones through
/// introspection at the discovered endpoint; the ID token (typ JWT), a token without the
/// requested audience, one for another API and one without the group do not.
#[tokio::test]
async fn authelia_access_tokens() {
    let a = Authelia::start().await;
    let token = Authelia::mint(&a.rsa, &a.access_claims(&["openid", "orders.read"], &["admins", "dev"]));
    let seen = a.env.admitted("/orders/2", &token).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", USER),
            ("x-auth-client-id", APP),
            ("x-auth-scopes", "openid orders.read"),
            ("x-auth-roles", "admins dev"),
            ("x-auth-amr", "pwd,otp,mfa"),
        ],
    );
    a.env.admitted("/admin", &token).await;
    let es256 = Authelia::mint(&a.ec, &a.access_claims(&["orders.read", "orders.write"], &[]));
    a.env.admitted_as("POST", "/orders", &es256).await;
    a.env.lacks_role("/admin", &es256).await;

    // An opaque token (the default), introspected with the gateway's client credentials.
    let opaque = "authelia_at_Kq8n1zR4tY7uI0oP3aS6dF9gH2jK5lZ8xC1vB4nM7qW0eR3tY6uI9oP2aS5dF8g.hJ1kL4zX7cV0bN3m";
    a.introspection.active(
        opaque,
        json!({
            "client_id": APP, "scope": "openid orders.read", "sub": USER, "aud": [API], "iss": a.env.idp.base(),
            "exp": now() + 3600, "iat": now() - 10, "token_type": "Bearer", "username": "john"
        }),
    );
    let seen = a.env.admitted("/orders/2", opaque).await;
    assert_identity(
        &seen,
        &[("x-auth-subject", USER), ("x-auth-client-id", APP), ("x-auth-scopes", "openid orders.read")],
    );
    assert_eq!((a.introspection.calls(), a.introspection.auth_failures()), (1, 0));

    a.env.refused("/orders/2", &a.id_token(), "token type is not at+jwt").await;
    let mut unrequested = a.access_claims(&["orders.read"], &[]);
    unrequested.as_object_mut().unwrap().remove("aud");
    a.env.refused("/orders/2", &Authelia::mint(&a.rsa, &unrequested), "token has no audience").await;
    let mut elsewhere = a.access_claims(&["orders.read"], &[]);
    elsewhere["aud"] = json!(["https://billing.example.com"]);
    a.env.refused("/orders/2", &Authelia::mint(&a.rsa, &elsewhere), WRONG_AUDIENCE).await;
}

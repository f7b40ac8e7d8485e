//! Okta, custom authorization server `default`: keys from its discovery document (`…/v1/keys`,
//! with Okta's 44-day `Cache-Control`), access tokens with no `typ` header, scopes as an array in
//! `scp`, the client in `cid`, the user in `uid`; a `groups` custom claim as roles. The org
//! authorization server's issuer is refused by config validation. Shapes: Okta's OAuth
//! guide "Access token" / "ID token" (issue 13 IdP research, §3).

use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::Key;

const AUDIENCE: &str = "api://default";
const CLIENT: &str = "0oa1b2c3d4e5f6g7h8i9";
const SERVICE: &str = "0oa9z8y7x6w5v4u3t2s1";
const USER: &str = "00ujmkLgagxeRrAg20g3";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: okta
    issuer: ${IDP}/oauth2/default
    provider: okta
    audiences: ["api://default"]
    roles_claim: groups
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: admin, path_prefix: /admin, issuers: [okta], roles: [Admins] }
  - id: orders-write
    path_prefix: /orders
    methods: [POST, PUT, PATCH, DELETE]
    issuers: [okta]
    scopes: [orders:write]
  - { id: orders, path_prefix: /orders, issuers: [okta], scopes: [orders:read, orders:write], scope_match: any }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-User-Id: claim:uid
    X-Auth-Custom: claim:custom_claim
"#;

struct Okta {
    env: Env,
    key: Key,
}

impl Okta {
    async fn start() -> Okta {
        let idp = FakeIdp::start().await;
        let iss = format!("{}/oauth2/default", idp.base());
        idp.serve(
            "/oauth2/default/.well-known/openid-configuration",
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/v1/authorize"),
                "token_endpoint": format!("{iss}/v1/token"),
                "userinfo_endpoint": format!("{iss}/v1/userinfo"),
                "registration_endpoint": format!("{}/oauth2/v1/clients", idp.base()),
                "jwks_uri": format!("{iss}/v1/keys"),
                "response_types_supported": ["code", "id_token", "code id_token", "code token", "id_token token", "code id_token token"],
                "response_modes_supported": ["query", "fragment", "form_post", "okta_post_message"],
                "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "address", "phone", "offline_access", "orders:read", "orders:write"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
                "claims_supported": ["iss", "ver", "sub", "aud", "iat", "exp", "jti", "auth_time", "amr", "idp", "nonce", "name", "email", "email_verified", "groups"],
                "code_challenge_methods_supported": ["S256"],
                "introspection_endpoint": format!("{iss}/v1/introspect"),
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
                "revocation_endpoint": format!("{iss}/v1/revoke"),
                "end_session_endpoint": format!("{iss}/v1/logout")
            }),
        );
        // The current key and the next one (Okta publishes both around a rotation).
        let key = Key::rsa(0, "U5R8cHbGw445Qbq8zVO1PcCpXL8yG6IcovVa3laCoxM");
        let next = Key::rsa(1, "h5Sr3LXcpQiQlAUVPdhrdLFoIvkhRTAVs_h39bQnxlU");
        let jwks: Vec<Value> =
            [&key, &next].iter().map(|k| k.jwk(json!({"alg": "RS256", "kid": null, "use": "sig"}))).collect();
        idp.serve_with(
            "/oauth2/default/v1/keys",
            &json!({ "keys": jwks }),
            &[("cache-control", "max-age=3832304, must-revalidate")],
        );
        Okta { env: Env::start(idp, CONFIG, &[]).await, key }
    }

    fn iss(&self) -> String {
        format!("{}/oauth2/default", self.env.idp.base())
    }

    /// Access tokens' header: `alg` and `kid` only.
    fn mint(&self, claims: &Value) -> String {
        self.key.sign_header_text(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, self.key.kid), claims)
    }

    /// A user's access token (the documented example's claims, plus a `groups` claim).
    fn user_claims(&self, scp: &[&str], groups: &[&str]) -> Value {
        let t = now();
        json!({
            "ver": 1, "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE", "iss": self.iss(),
            "aud": AUDIENCE, "sub": "john.doe@example.com", "iat": t - 60, "exp": t + 3600,
            "cid": CLIENT, "uid": USER, "scp": scp, "auth_time": t - 600,
            "custom_claim": "CustomValue", "groups": groups
        })
    }

    /// A client-credentials token: no user (`uid`), `sub` is the client.
    fn service_claims(&self, scp: &[&str]) -> Value {
        let t = now();
        json!({
            "ver": 1, "jti": "AT.qLhFfzU2Hj5uUpVb3gw3lXZ6bnyH1A1uHF1fxVFY4lQ", "iss": self.iss(),
            "aud": AUDIENCE, "iat": t - 60, "exp": t + 3600, "cid": SERVICE, "scp": scp, "sub": SERVICE
        })
    }

    /// The user's ID token for the client: `aud` is the client ID, no `cid`/`scp`.
    fn id_claims(&self) -> Value {
        let t = now();
        json!({
            "ver": 1, "sub": USER, "iss": self.iss(), "aud": CLIENT, "iat": t - 60, "exp": t + 3600,
            "amr": ["pwd"], "jti": "ID.4eAWJOCMB3SX8XewDfVR", "idp": "00o1b2c3d4e5f6g7h8i9",
            "nonce": "n-0S6_WzA2Mj", "auth_time": t - 600, "at_hash": "cpqKfdQA5eH891Ff5oJr_Q",
            "name": "John Doe", "preferred_username": "john.doe@example.com",
            "email": "john.doe@example.com", "email_verified": true
        })
    }
}

/// Users' and services' access tokens pass with scopes from the `scp` array, the client from
/// `cid`, the user from `uid`; the ID token, another audience and a missing group do not.
#[tokio::test]
async fn okta_access_tokens() {
    let o = Okta::start().await;
    let user = o.mint(&o.user_claims(&["openid", "email", "orders:read"], &["Everyone", "Admins"]));
    let seen = o.env.admitted("/orders/7", &user).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", "john.doe@example.com"),
            ("x-auth-client-id", CLIENT),
            ("x-auth-scopes", "openid email orders:read"),
            ("x-auth-roles", "Everyone Admins"),
            ("x-auth-user-id", USER),
            ("x-auth-custom", "CustomValue"),
        ],
    );
    o.env.admitted("/admin", &user).await;

    let service = o.mint(&o.service_claims(&["orders:write"]));
    let seen = o.env.admitted_as("POST", "/orders", &service).await;
    assert_identity(&seen, &[("x-auth-subject", SERVICE), ("x-auth-client-id", SERVICE), ("x-auth-roles", "")]);
    assert_no_header(&seen, "x-auth-user-id");

    o.env.lacks_role("/admin", &o.mint(&o.user_claims(&["orders:read"], &["Everyone"]))).await;
    o.env.lacks_role("/admin", &service).await;
    o.env.refused("/orders/7", &o.mint(&o.id_claims()), WRONG_AUDIENCE).await;
    let mut elsewhere = o.user_claims(&["orders:read"], &["Admins"]);
    elsewhere["aud"] = json!("api://billing");
    o.env.refused("/orders/7", &o.mint(&elsewhere), WRONG_AUDIENCE).await;
}

/// The org authorization server's issuer (no `/oauth2/` path) is refused at load time with a
/// message that says why and what to use instead.
#[test]
fn okta_org_authorization_server_is_refused() {
    let yaml = "upstream: { url: \"http://127.0.0.1:8081\" }\n\
                issuers: [{ issuer: \"https://acme.okta.com\", provider: okta, audiences: [\"api://default\"] }]\n";
    let e = try_load(yaml, &[]).expect_err("the org authorization server is refused");
    let text = e.to_string();
    assert_eq!(e.field(), Some("issuers[0].issuer"), "{text}");
    for part in [
        "is Okta's org authorization server",
        "whose access tokens are not meant to be validated by",
        "use a custom authorization server (https://{org}.okta.com/oauth2/default or /oauth2/{id})",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    // The custom authorization servers load.
    for issuer in ["https://acme.okta.com/oauth2/default", "https://acme.okta.com/oauth2/aus9s8r7q6p5o4n3m2l1"] {
        let yaml = yaml.replace("https://acme.okta.com", issuer);
        try_load(&yaml, &[]).unwrap_or_else(|e| panic!("{issuer}: {e}"));
    }
}

/// The same message reads as one sentence: no run of spaces from a broken line continuation.
#[test]
fn okta_org_authorization_server_message_is_clean() {
    let yaml = "upstream: { url: \"http://127.0.0.1:8081\" }\n\
                issuers: [{ issuer: \"https://acme.okta.com\", provider: okta, audiences: [\"api://default\"] }]\n";
    let text = try_load(yaml, &[]).expect_err("refused").to_string();
    assert!(text.contains("not meant to be validated by anyone but Okta;"), "{text}");
}

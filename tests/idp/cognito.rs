//! Amazon Cognito user pools: access tokens have no `aud` (the app client is `client_id`, which
//! the preset compares with `audiences`), `token_use` tells them from ID tokens (which do carry
//! `aud`), groups arrive in `cognito:groups`, and access and ID tokens are signed with different
//! keys. Header: `kid` and `alg` only. Shapes: the Cognito developer guide's "Using the access
//! token" / "Using the ID token" (issue 13 IdP research, §5).

use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::Key;

const POOL: &str = "eu-west-1_AbCdEf123";
const WEB: &str = "57cbishk4j24pabc1234567890";
const JOBS: &str = "4jd8s0cm2a9v7xhq3kz1lf5ntp";
const USER: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: cognito
    issuer: ${IDP}/${POOL}
    provider: cognito
    audiences: ["${WEB}", "${JOBS}"]
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: admin, path_prefix: /admin, issuers: [cognito], roles: [admins] }
  - { id: jobs, path_prefix: /jobs, issuers: [cognito], audiences: ["${JOBS}"], scopes: [orders-api/jobs] }
  - { id: orders, path_prefix: /orders, issuers: [cognito], scopes: [orders-api/read] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Groups: claim:cognito:groups
    X-Auth-Username: claim:username
"#;

struct Cognito {
    env: Env,
    /// Signs access tokens.
    access: Key,
    /// Signs ID tokens.
    id: Key,
}

impl Cognito {
    async fn start() -> Cognito {
        let idp = FakeIdp::start().await;
        let iss = format!("{}/{POOL}", idp.base());
        idp.serve(
            &format!("/{POOL}/.well-known/openid-configuration"),
            &json!({
                "authorization_endpoint": "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/authorize",
                "end_session_endpoint": "https://acme.auth.eu-west-1.amazoncognito.com/logout",
                "id_token_signing_alg_values_supported": ["RS256"],
                "issuer": iss,
                "jwks_uri": format!("{iss}/.well-known/jwks.json"),
                "response_types_supported": ["code", "token"],
                "revocation_endpoint": "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/revoke",
                "scopes_supported": ["openid", "email", "phone", "profile"],
                "subject_types_supported": ["public"],
                "token_endpoint": "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "userinfo_endpoint": "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/userInfo"
            }),
        );
        // kids are base64 (with `+`, `/`, `=`).
        let access = Key::rsa(0, "r6Xo2F1VDtP5dV2pZ0g3zR6Zw+Q1Q4kZ8dJYs5e5T7o=");
        let id = Key::rsa(1, "Jq9kYc/3mH7tW1vN5bX8aL2sD4fG6hJ0kP9oI8uY7tR=");
        let jwks: Vec<Value> =
            [&access, &id].iter().map(|k| k.jwk(json!({"alg": "RS256", "kid": null, "use": "sig"}))).collect();
        idp.serve(&format!("/{POOL}/.well-known/jwks.json"), &json!({ "keys": jwks }));
        let vars = [("POOL", POOL), ("WEB", WEB), ("JOBS", JOBS)];
        Cognito { env: Env::start(idp, CONFIG, &vars).await, access, id }
    }

    fn iss(&self) -> String {
        format!("{}/{POOL}", self.env.idp.base())
    }

    /// The header Cognito sends: `kid` then `alg`.
    fn mint(key: &Key, claims: &Value) -> String {
        key.sign_header_text(&format!(r#"{{"kid":"{}","alg":"RS256"}}"#, key.kid), claims)
    }

    /// A user's access token through the web client (the developer guide's example).
    fn user_claims(&self, scope: &str, groups: &[&str]) -> Value {
        let t = now();
        json!({
            "sub": USER, "device_key": "eu-west-1_bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
            "cognito:groups": groups, "token_use": "access", "scope": scope,
            "auth_time": t - 600, "iss": self.iss(), "exp": t + 3600, "iat": t - 60,
            "origin_jti": "11111111-2222-3333-4444-555555555555", "jti": "66666666-7777-8888-9999-000000000000",
            "client_id": WEB, "username": "janedoe"
        })
    }

    /// A machine-to-machine token (client credentials): no user, no groups.
    fn m2m_claims(&self, client: &str) -> Value {
        let t = now();
        json!({
            "sub": client, "token_use": "access", "scope": "orders-api/jobs orders-api/read",
            "auth_time": t - 60, "iss": self.iss(), "exp": t + 3600, "iat": t - 60, "version": 2,
            "jti": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "client_id": client
        })
    }

    /// The user's ID token: `aud` is the app client, `token_use` id.
    fn id_claims(&self) -> Value {
        let t = now();
        json!({
            "sub": USER, "cognito:groups": ["admins"], "email_verified": true, "iss": self.iss(),
            "cognito:username": "janedoe", "origin_jti": "11111111-2222-3333-4444-555555555555",
            "aud": WEB, "event_id": "aaaaaaaa-0000-1111-2222-333333333333", "token_use": "id",
            "auth_time": t - 600, "exp": t + 3600, "iat": t - 60, "given_name": "Jane",
            "jti": "77777777-8888-9999-aaaa-bbbbbbbbbbbb", "email": "janedoe@example.com"
        })
    }
}

/// Access tokens pass with the app client as audience and client id, groups as roles; the ID
/// token is refused as not an access token, another app client's token by audience.
#[tokio::test]
async fn cognito_access_tokens() {
    let c = Cognito::start().await;
    let user = Cognito::mint(&c.access, &c.user_claims("aws.cognito.signin.user.admin orders-api/read", &["admins"]));
    let seen = c.env.admitted("/orders/5", &user).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", USER),
            ("x-auth-client-id", WEB),
            ("x-auth-scopes", "aws.cognito.signin.user.admin orders-api/read"),
            ("x-auth-roles", "admins"),
            ("x-auth-groups", "admins"),
            ("x-auth-username", "janedoe"),
        ],
    );
    c.env.admitted("/admin", &user).await;

    let machine = Cognito::mint(&c.access, &c.m2m_claims(JOBS));
    let seen = c.env.admitted("/jobs/run", &machine).await;
    assert_identity(&seen, &[("x-auth-subject", JOBS), ("x-auth-client-id", JOBS), ("x-auth-roles", "")]);
    assert_no_header(&seen, "x-auth-groups");
    // /jobs admits the jobs client only, though the web client is an audience of the issuer.
    let web_machine = Cognito::mint(&c.access, &c.m2m_claims(WEB));
    c.env.admitted("/orders/5", &web_machine).await;
    c.env.refused("/jobs/run", &web_machine, WRONG_AUDIENCE).await;

    c.env.lacks_role("/admin", &machine).await;
    c.env.lacks_role("/admin", &Cognito::mint(&c.access, &c.user_claims("orders-api/read", &["viewers"]))).await;
    // The ID token names the web client in `aud` and is signed by the pool: only `token_use`
    // tells it apart.
    c.env.refused("/orders/5", &Cognito::mint(&c.id, &c.id_claims()), NOT_AN_ACCESS_TOKEN).await;
    let mut elsewhere = c.user_claims("orders-api/read", &["admins"]);
    elsewhere["client_id"] = json!("1example23456789");
    c.env.refused("/orders/5", &Cognito::mint(&c.access, &elsewhere), WRONG_AUDIENCE).await;
}

//! Microsoft Entra ID, multi-tenant: the issuer is the `{tenantid}` template that the
//! `organizations` discovery document names, keys come from that document (the entra preset
//! derives its URL from the template), and each token's `tid` must be allowed and equal the
//! tenant in its `iss`. Shapes: Microsoft's access-token and ID-token claims references and the
//! decoded samples in "Access tokens" (issue 13 IdP research, §2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::{x5c, Key};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const PARTNER: &str = "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f";
/// A real tenant, just not one this API accepts.
const OUTSIDER: &str = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
/// The API's Application (client) ID: `aud` of its v2.0 access tokens.
const API: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
/// Its App ID URI: `aud` of v1.0 access tokens requested for `api://…/.default`.
const API_URI: &str = "api://orders-api";
/// A web app signing users in (the `azp` of their tokens, the `aud` of their ID tokens).
const WEB_APP: &str = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c";
/// A daemon with the application permission Jobs.Run.
const DAEMON: &str = "9a2e7d31-52f4-4b83-a1c6-3e4d5f6a7b8c";
/// Microsoft Graph's application ID, the `aud` of Graph tokens.
const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const USER_OID: &str = "690222be-ff1a-4d56-abd1-7e4f7d38e474";

const CONFIG: &str = r##"
upstream: { url: "${UP}" }
issuers:
  - id: entra
    issuer: "${IDP}/{tenantid}/v2.0"
    provider: entra
    tenants: ["${TENANT}", "${PARTNER}"]
    audiences: ["${API}"#V1_AUDIENCE]
#V1_ALIAS
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - { id: jobs, path_prefix: /jobs, issuers: [entra], roles: [Jobs.Run] }
  - { id: admin, path_prefix: /admin, issuers: [entra], roles: [Orders.Admin] }
  - { id: orders, path_prefix: /orders, issuers: [entra], scopes: [Orders.Read] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Tenant: claim:tid
    X-Auth-Object-Id: claim:oid
"##;

/// v1.0 tokens too: their issuer spelling as an alias, their audience spelling as an audience.
const V1_ALIAS: &str = r#"    issuer_aliases: ["https://sts.windows.net/{tenantid}/"]"#;
const V1_AUDIENCE: &str = r#", "${API_URI}""#;

/// A single-tenant API (`config/idp/entra.yaml`): the tenant's own issuer, discovery derived
/// from it.
const SINGLE_TENANT: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - { id: entra, issuer: "${IDP}/${TENANT}/v2.0", provider: entra, audiences: ["${API}"] }
routes:
  - { id: jobs, path_prefix: /jobs, issuers: [entra], roles: [Jobs.Run] }
  - { id: orders, path_prefix: /orders, issuers: [entra], scopes: [Orders.Read] }
identity:
  headers:
    X-Auth-Client-Id: client_id
    X-Auth-Roles: roles
"#;

#[derive(Clone, Copy)]
enum Setup {
    /// The `{tenantid}` template for two tenants.
    MultiTenant,
    /// The same, also accepting v1.0 tokens.
    WithV1,
    SingleTenant,
}

struct Entra {
    env: Env,
    keys: Vec<Key>,
}

impl Entra {
    /// The fake `login.microsoftonline.com` and the gateway.
    async fn start(setup: Setup) -> Entra {
        let idp = FakeIdp::start().await;
        let base = idp.base();
        let template = format!("{base}/{{tenantid}}/v2.0");
        // The `organizations` v2.0 document (obs: panva/wellknown entra-organizations).
        idp.serve(
            "/organizations/v2.0/.well-known/openid-configuration",
            &json!({
                "token_endpoint": format!("{base}/organizations/oauth2/v2.0/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": format!("{base}/organizations/discovery/v2.0/keys"),
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": template,
                "request_uri_parameter_supported": false,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": format!("{base}/organizations/oauth2/v2.0/authorize"),
                "http_logout_supported": true,
                "frontchannel_logout_supported": true,
                "end_session_endpoint": format!("{base}/organizations/oauth2/v2.0/logout"),
                "claims_supported": ["sub", "iss", "cloud_instance_name", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
                "tenant_region_scope": null,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net"
            }),
        );
        // Keys without `alg`, with x5t (= kid), x5c and the `issuer` they may sign for.
        let keys = vec![
            Key::rsa(0, "i6lGk3FZzxRcUb2C3nEQ7syHJlY"),
            Key::rsa(1, "jS1Xo1OWDj_52vbwGNgvQO2VzMc"),
            Key::rsa(2, "L1KfKFI_jnXbwWc22xZxw1sUHH0"),
        ];
        let jwks: Vec<Value> = keys
            .iter()
            .map(|k| k.jwk(json!({"use": "sig", "kid": null, "x5t": k.kid, "x5c": x5c(&k.kid), "issuer": template})))
            .collect();
        idp.serve("/organizations/discovery/v2.0/keys", &json!({ "keys": jwks }));
        // The tenant's own document names the tenant's issuer; the keys are the same.
        let single = format!("{base}/{TENANT}/v2.0");
        idp.serve(
            &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
            &json!({
                "issuer": single, "jwks_uri": format!("{base}/{TENANT}/discovery/v2.0/keys"),
                "token_endpoint": format!("{base}/{TENANT}/oauth2/v2.0/token"),
                "authorization_endpoint": format!("{base}/{TENANT}/oauth2/v2.0/authorize"),
                "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["pairwise"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "tenant_region_scope": "WW", "cloud_instance_name": "microsoftonline.com"
            }),
        );
        idp.serve(&format!("/{TENANT}/discovery/v2.0/keys"), &json!({ "keys": jwks }));
        let config = match setup {
            Setup::MultiTenant => CONFIG.replace("#V1_ALIAS", "").replace("#V1_AUDIENCE", ""),
            Setup::WithV1 => CONFIG.replace("#V1_ALIAS", V1_ALIAS).replace("#V1_AUDIENCE", V1_AUDIENCE),
            Setup::SingleTenant => SINGLE_TENANT.to_owned(),
        };
        let vars = [("TENANT", TENANT), ("PARTNER", PARTNER), ("API", API), ("API_URI", API_URI)];
        Entra { env: Env::start(idp, &config, &vars).await, keys }
    }

    fn iss(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.env.idp.base())
    }

    /// A v2.0 token: header `typ` always JWT, `kid`, no `x5t` (v1.0 only).
    fn v2(&self, claims: &Value) -> String {
        let key = &self.keys[1];
        key.sign(&json!({"typ": "JWT", "alg": "RS256", "kid": key.kid}), claims)
    }

    /// A v1.0 token: header with `x5t` equal to `kid`.
    fn v1(&self, claims: &Value) -> String {
        let key = &self.keys[0];
        key.sign(&json!({"typ": "JWT", "alg": "RS256", "x5t": key.kid, "kid": key.kid}), claims)
    }

    /// A user's v2.0 access token through the web app (delegated: `scp`; an app role in `roles`).
    fn user_claims(&self, tenant: &str) -> Value {
        let t = now();
        json!({
            "aud": API, "iss": self.iss(tenant), "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
            "aio": "AXQAi/8IAAAAqxsuB+R4D2rFQqOETO4YdXbLD9kZ8xfXadeAM0Q2NkNT5izfg3uwbWSXhuSSj6UT5hy2D6WqApB5jKA6ZgZ9k/SU27uV9cetXfLOtpNttgk5DcBtk+LLstz/Jg+gYRmv9bUU4XlphTc6C86Jmj1FCw==",
            "azp": WEB_APP, "azpacr": "0", "name": "Abe Lincoln", "oid": USER_OID,
            "preferred_username": "abeli@microsoft.com", "rh": "I",
            "roles": ["Orders.Admin"], "scp": "Orders.Read Orders.Write",
            "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ", "tid": tenant,
            "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0"
        })
    }

    /// A daemon's app-only v2.0 token (client credentials): `roles`, no `scp`, no user.
    fn app_claims(&self, tenant: &str) -> Value {
        let t = now();
        json!({
            "aud": API, "iss": self.iss(tenant), "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
            "aio": "E2ZgYJg9bHfy+Lu7zc2yqp4kvr3bAA==", "azp": DAEMON, "azpacr": "1",
            "oid": "3c8cbb2a-7c1d-4a0e-b7c9-3bd9d4a2f1e8", "rh": "0.AXkAv4j5cvGGr0GRqy180BHbR.",
            "roles": ["Jobs.Run"], "sub": "3c8cbb2a-7c1d-4a0e-b7c9-3bd9d4a2f1e8", "tid": tenant,
            "uti": "Xb2yL7JmB0yTqC5XzK9VAA", "ver": "2.0"
        })
    }

    /// The user's v2.0 ID token for the web app: `aud` is the web app, no `azp`, no `scp`.
    fn id_claims(&self, tenant: &str) -> Value {
        let t = now();
        json!({
            "aud": WEB_APP, "iss": self.iss(tenant), "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
            "name": "Abe Lincoln", "nonce": "123523", "oid": USER_OID,
            "preferred_username": "abeli@microsoft.com", "rh": "I", "roles": ["Orders.Admin"],
            "sub": "MF4f-ggWMEji12KynJUNQZphaUTvLcQug5jMF2nWmCs", "tid": tenant,
            "uti": "bW8BvMPhMk6zB1UmKOs2AA", "ver": "2.0"
        })
    }

    /// A v1.0 access token (the default for Entra-only APIs): sts.windows.net issuer with its
    /// trailing slash, `aud` the App ID URI, the client in `appid`.
    fn v1_claims(&self, tenant: &str) -> Value {
        let t = now();
        json!({
            "aud": API_URI, "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": t - 60, "nbf": t - 60, "exp": t + 3600, "acr": "1",
            "aio": "AVQAq/8IAAAA0Sd8DzVwrw7udkhGlh7U4mHn3OM3uqmrc2IuSGDf13XIXu86jN31WYKzJmd4dNDKBgy5QbXJ+F0b47AQ0MaC/dNZhG2IrVqdq2L/IKRaXDM=",
            "amr": ["pwd", "mfa"], "appid": WEB_APP, "appidacr": "0", "family_name": "Lincoln",
            "given_name": "Abe", "ipaddr": "131.107.159.117", "name": "Abe Lincoln", "oid": USER_OID,
            "rh": "I", "scp": "Orders.Read", "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
            "tid": tenant, "unique_name": "abeli@microsoft.com", "upn": "abeli@microsoft.com",
            "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "1.0"
        })
    }

    /// A Microsoft Graph token: a `nonce` in the header, and a signature over the header with
    /// that nonce's SHA-256 instead, so no one but Graph can verify it.
    fn graph_token(&self, tenant: &str) -> String {
        let mut claims = self.v1_claims(tenant);
        claims["aud"] = json!(GRAPH);
        claims["scp"] = json!("openid profile User.Read email");
        let key = &self.keys[0];
        let nonce = "AQABAAAAAAD--DLA3VO7QrddgJg7WevrAgZ7xVPzXa6ss7jdXCEJ";
        let hashed = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, nonce.as_bytes()));
        let header = |nonce: &str| {
            format!(r#"{{"typ":"JWT","nonce":"{nonce}","alg":"RS256","x5t":"{0}","kid":"{0}"}}"#, key.kid)
        };
        let signed = key.sign_header_text(&header(&hashed), &claims);
        let (_, rest) = signed.split_once('.').unwrap();
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header(nonce)))
    }
}

/// Users' delegated tokens and daemons' app-only tokens from the allowed tenants pass with
/// their identity; ID tokens, tokens for another API and tokens without the route's app role
/// do not.
#[tokio::test]
async fn entra_v2_tokens_of_allowed_tenants() {
    let e = Entra::start(Setup::MultiTenant).await;
    let seen = e.env.admitted("/orders/1", &e.v2(&e.user_claims(TENANT))).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ"),
            ("x-auth-client-id", WEB_APP),
            ("x-auth-scopes", "Orders.Read Orders.Write"),
            ("x-auth-roles", "Orders.Admin"),
            ("x-auth-tenant", TENANT),
            ("x-auth-object-id", USER_OID),
        ],
    );
    e.env.admitted("/admin", &e.v2(&e.user_claims(PARTNER))).await;

    let seen = e.env.admitted("/jobs/nightly", &e.v2(&e.app_claims(PARTNER))).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-client-id", DAEMON),
            ("x-auth-scopes", ""),
            ("x-auth-roles", "Jobs.Run"),
            ("x-auth-tenant", PARTNER),
        ],
    );

    // The app role is what guards daemons' routes: a user token has scopes, not Jobs.Run, and
    // an app-only token has no scope.
    e.env.lacks_role("/jobs/nightly", &e.v2(&e.user_claims(TENANT))).await;
    let request = crate::support::client(false)
        .get(format!("http://{}/orders/1", e.env.gw.addr))
        .bearer_auth(e.v2(&e.app_claims(TENANT)));
    crate::support::assert_insufficient(&e.env.up, request, crate::support::LACKS_SCOPE, "Orders.Read").await;

    // The web app's ID token names the web app as its audience, not the API.
    e.env.refused("/orders/1", &e.v2(&e.id_claims(TENANT)), WRONG_AUDIENCE).await;
    let mut elsewhere = e.user_claims(TENANT);
    elsewhere["aud"] = json!("2b0b6c0e-4f3a-4a8c-9d7e-1c2b3a4d5e6f");
    e.env.refused("/orders/1", &e.v2(&elsewhere), WRONG_AUDIENCE).await;
    // v2.0 tokens never carry the App ID URI; the API's client ID alone is its audience.
    elsewhere["aud"] = json!(API_URI);
    e.env.refused("/orders/1", &e.v2(&elsewhere), WRONG_AUDIENCE).await;
}

/// The template names a token only for an allowed tenant whose id is both in `iss` and `tid`;
/// v1.0 tokens (another issuer spelling) are unknown without the alias.
#[tokio::test]
async fn entra_tenant_binding() {
    let e = Entra::start(Setup::MultiTenant).await;
    // The keys came through the document the preset derives from the template.
    assert_eq!(e.env.idp.received_at("/organizations/v2.0/.well-known/openid-configuration").len(), 1);
    assert_eq!(e.env.idp.received_at("/organizations/discovery/v2.0/keys").len(), 1);
    e.env.refused("/orders/1", &e.v2(&e.user_claims(OUTSIDER)), UNKNOWN_ISSUER).await;
    // tid says one allowed tenant, iss another.
    let mut crossed = e.user_claims(TENANT);
    crossed["tid"] = json!(PARTNER);
    e.env.refused("/orders/1", &e.v2(&crossed), UNKNOWN_ISSUER).await;
    crossed.as_object_mut().unwrap().remove("tid");
    e.env.refused("/orders/1", &e.v2(&crossed), UNKNOWN_ISSUER).await;
    // The template itself is no tenant.
    let mut template = e.user_claims(TENANT);
    template["iss"] = json!(e.iss("{tenantid}"));
    template["tid"] = json!("{tenantid}");
    e.env.refused("/orders/1", &e.v2(&template), UNKNOWN_ISSUER).await;
    // v1.0 (iss https://sts.windows.net/{tid}/), even for the allowed tenant.
    e.env.refused("/orders/1", &e.v1(&e.v1_claims(TENANT)), UNKNOWN_ISSUER).await;
    e.env.admitted("/orders/1", &e.v2(&e.user_claims(TENANT))).await;
}

/// With the v1.0 issuer as an alias (and the App ID URI as an audience), v1.0 tokens pass with
/// the client from `appid`; the tenant binding holds for the alias too. A Microsoft Graph token
/// is refused with the reason.
#[tokio::test]
async fn entra_v1_tokens_through_the_alias() {
    let e = Entra::start(Setup::WithV1).await;
    let seen = e.env.admitted("/orders/1", &e.v1(&e.v1_claims(TENANT))).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA"),
            ("x-auth-client-id", WEB_APP),
            ("x-auth-scopes", "Orders.Read"),
            ("x-auth-roles", ""),
            ("x-auth-tenant", TENANT),
        ],
    );
    e.env.admitted("/orders/1", &e.v2(&e.user_claims(PARTNER))).await;
    e.env.refused("/orders/1", &e.v1(&e.v1_claims(OUTSIDER)), UNKNOWN_ISSUER).await;
    let mut crossed = e.v1_claims(TENANT);
    crossed["tid"] = json!(PARTNER);
    e.env.refused("/orders/1", &e.v1(&crossed), UNKNOWN_ISSUER).await;

    let graph = "signature verification failed: the token has a nonce header, as Microsoft Graph tokens do, and \
                 only Graph can verify it; request a token for this API instead";
    e.env.refused("/orders/1", &e.graph_token(TENANT), graph).await;
}

/// A single-tenant issuer is an exact `iss`: its tenant's tokens pass, every other tenant's
/// (allowed elsewhere or not) is an unknown issuer.
#[tokio::test]
async fn entra_single_tenant() {
    let e = Entra::start(Setup::SingleTenant).await;
    assert_eq!(e.env.idp.received_at(&format!("/{TENANT}/v2.0/.well-known/openid-configuration")).len(), 1);
    let seen = e.env.admitted("/jobs/1", &e.v2(&e.app_claims(TENANT))).await;
    assert_identity(&seen, &[("x-auth-client-id", DAEMON), ("x-auth-roles", "Jobs.Run")]);
    e.env.admitted("/orders/1", &e.v2(&e.user_claims(TENANT))).await;
    e.env.refused("/orders/1", &e.v2(&e.user_claims(PARTNER)), UNKNOWN_ISSUER).await;
    e.env.refused("/orders/1", &e.v2(&e.id_claims(TENANT)), WRONG_AUDIENCE).await;
    e.env.lacks_role("/jobs/1", &e.v2(&e.user_claims(TENANT))).await;
}

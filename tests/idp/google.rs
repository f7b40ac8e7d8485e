//! Google: opaque access tokens checked at the tokeninfo endpoint (answers with numbers as
//! strings, 400 for any token it does not vouch for), and Google-signed ID tokens as bearer
//! JWTs under both documented `iss` spellings. The issuer is Google's own name,
//! `https://accounts.google.com`, so the preset's alias `accounts.google.com` applies; its
//! discovery document and keys are on the fake host (`discovery_url`), and so is tokeninfo.
//! Shapes: Google's OpenID Connect guide and observed tokeninfo answers
//! (issue 13 IdP research, §7).

use serde_json::{json, Value};

use jsonwebtoken::Algorithm;
use tokengate::config::{IntrospectionProtocol, TokenMode};

use crate::fake_idp::FakeIdp;
use crate::harness::*;
use crate::keys::Key;

const CLIENT: &str = "1234987819200-abc.apps.googleusercontent.com";
const OTHER_APP: &str = "407408718192.apps.googleusercontent.com";
const USER: &str = "110169484474386276334";
const EMAIL_SCOPE: &str = "https://www.googleapis.com/auth/userinfo.email";

const CONFIG: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: google
    issuer: https://accounts.google.com
    provider: google
    mode: auto
    discovery_url: ${IDP}/.well-known/openid-configuration
    audiences: ["${CLIENT}"]
    introspection:
      endpoint: ${IDP}/tokeninfo
routes:
  - { id: health, path_prefix: /health, methods: [GET, HEAD], auth: none }
  - id: admin
    path_prefix: /admin
    issuers: [google]
    scopes: [https://www.googleapis.com/auth/userinfo.email]
    claims:
      - { claim: email_verified, equals: true }
      - { claim: email, equals: ops@example.com }
  - { id: api, path_prefix: /, issuers: [google] }
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Scopes: scopes
    X-Auth-Roles: roles
    X-Auth-Email: claim:email
    X-Auth-Domain: claim:hd
"#;

/// The documented config (`config/idp/google.yaml`): tokeninfo only, no keys.
const TOKENINFO_ONLY: &str = r#"
upstream: { url: "${UP}" }
issuers:
  - id: google
    issuer: https://accounts.google.com
    provider: google
    mode: introspection
    audiences: ["${CLIENT}"]
    introspection:
      endpoint: ${IDP}/tokeninfo
identity:
  headers:
    X-Auth-Subject: subject
    X-Auth-Client-Id: client_id
    X-Auth-Email: claim:email
"#;

struct Google {
    env: Env,
    key: Key,
}

impl Google {
    async fn start() -> Google {
        Google::start_with(CONFIG).await
    }

    async fn start_with(config: &str) -> Google {
        let idp = FakeIdp::start().await;
        idp.serve(
            "/.well-known/openid-configuration",
            &json!({
                "issuer": "https://accounts.google.com",
                "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
                "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
                "token_endpoint": "https://oauth2.googleapis.com/token",
                "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
                "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
                "jwks_uri": format!("{}/oauth2/v3/certs", idp.base()),
                "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
            }),
        );
        let key = Key::rsa(0, "6719678351a5faedc2e70274bbea62da2a8c4a12");
        let next = Key::rsa(1, "a50f6e70ef4b548a5fd9142eecd1fb8f54dce9ee");
        let jwks: Vec<Value> = [&key, &next]
            .iter()
            .map(|k| k.jwk(json!({"kty": "RSA", "use": "sig", "kid": null, "alg": "RS256"})))
            .collect();
        idp.serve_with(
            "/oauth2/v3/certs",
            &json!({ "keys": jwks }),
            &[("cache-control", "public, max-age=20213, must-revalidate, no-transform")],
        );
        idp.tokeninfo_at("/tokeninfo");
        Google { env: Env::start(idp, config, &[("CLIENT", CLIENT)]).await, key }
    }

    /// An ID token issued to `aud` under the `iss` spelling `iss`.
    fn id_token(&self, iss: &str, aud: &str) -> String {
        let t = now();
        let claims = json!({
            "iss": iss, "azp": aud, "aud": aud, "sub": USER, "hd": "example.com",
            "email": "jsmith@example.com", "email_verified": true, "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
            "nonce": "0394852-3190485-2490358", "iat": t - 60, "exp": t + 3600
        });
        self.key.sign(&json!({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}), &claims)
    }

    /// tokeninfo's answer for an access token obtained by `aud` (numbers and booleans as strings).
    fn tokeninfo_answer(aud: &str, email: &str) -> Value {
        let exp = now() + 3016;
        json!({
            "azp": aud, "aud": aud, "sub": USER, "scope": format!("openid {EMAIL_SCOPE}"),
            "exp": exp.to_string(), "expires_in": "3016", "email": email, "email_verified": "true",
            "access_type": "online"
        })
    }
}

/// An opaque access token Google vouches for passes with its identity; tokeninfo is asked with
/// a POST that keeps the token out of the URL. Tokens Google does not know, tokens obtained by
/// another app and a failing tokeninfo are refused, each for its own reason.
#[tokio::test]
async fn google_opaque_access_tokens_through_tokeninfo() {
    let g = Google::start().await;
    let token = "ya29.a0AfB_byC7xQk2mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ3";
    g.env.idp.tokeninfo_knows(token, Google::tokeninfo_answer(CLIENT, "jsmith@example.com"));
    let seen = g.env.admitted("/profile", token).await;
    assert_identity(
        &seen,
        &[
            ("x-auth-subject", USER),
            ("x-auth-client-id", CLIENT),
            ("x-auth-scopes", &format!("openid {EMAIL_SCOPE}")),
            ("x-auth-roles", ""),
            ("x-auth-email", "jsmith@example.com"),
        ],
    );
    assert_no_header(&seen, "x-auth-domain");
    // Claim rules compare tokeninfo's string "true" as a string.
    let ops = "ya29.a0AfB_byD1ops8mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ3";
    g.env.idp.tokeninfo_knows(ops, Google::tokeninfo_answer(CLIENT, "ops@example.com"));
    g.env.admitted("/admin/users", ops).await;
    let request = crate::support::client(false).get(format!("http://{}/admin/users", g.env.gw.addr)).bearer_auth(token);
    crate::support::assert_insufficient(&g.env.up, request, "token lacks a required claim", EMAIL_SCOPE).await;

    let unknown = "ya29.a0AfB_byUnknown9mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1x";
    g.env.refused("/profile", unknown, "token is not active").await;
    // Any Google user's token from any app is valid at Google: only `aud` makes it ours.
    let other_app = "ya29.a0AfB_byOther7mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ";
    g.env.idp.tokeninfo_knows(other_app, Google::tokeninfo_answer(OTHER_APP, "jsmith@example.com"));
    g.env.refused("/profile", other_app, WRONG_AUDIENCE).await;

    let calls = g.env.idp.received_at("/tokeninfo");
    assert_eq!(calls.len(), 4, "one call per token (answers are cached): {calls:?}");
    for call in &calls {
        assert_eq!((call.method.as_str(), call.target.as_str()), ("POST", "/tokeninfo"), "no token in the URL");
        let token = call.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).expect("token as Bearer");
        assert!(!call.body.contains(token), "the token is sent once");
    }

    // Google failing is not the client's fault: 503, and the client keeps its token.
    g.env.idp.tokeninfo_fails(Some(500));
    let fresh = "ya29.a0AfB_byFresh5mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ3";
    g.env.idp.tokeninfo_knows(fresh, Google::tokeninfo_answer(CLIENT, "jsmith@example.com"));
    g.env.unavailable("/profile", fresh, "token introspection failed").await;
    g.env.idp.tokeninfo_fails(None);
    g.env.admitted("/profile", fresh).await;
}

/// Google-signed ID tokens for this app pass as bearer JWTs under both `iss` spellings, and
/// nothing looser; one issued to another app does not.
#[tokio::test]
async fn google_id_tokens_under_both_issuer_spellings() {
    let g = Google::start().await;
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        let seen = g.env.admitted("/profile", &g.id_token(iss, CLIENT)).await;
        assert_identity(
            &seen,
            &[
                ("x-auth-subject", USER),
                ("x-auth-client-id", CLIENT),
                ("x-auth-email", "jsmith@example.com"),
                ("x-auth-domain", "example.com"),
            ],
        );
    }
    for iss in ["http://accounts.google.com", "https://accounts.google.com/", "ACCOUNTS.google.com"] {
        // No issuer's spelling: the gateway cannot verify it locally, so, like any token it
        // cannot read, it goes to the route's introspecting issuer, and Google does not know it.
        let token = g.id_token(iss, CLIENT);
        let before = g.env.idp.received_at("/tokeninfo").len();
        g.env.refused("/profile", &token, "token is not active").await;
        assert_eq!(g.env.idp.received_at("/tokeninfo").len(), before + 1, "{iss}");
    }
    g.env.refused("/profile", &g.id_token("https://accounts.google.com", OTHER_APP), WRONG_AUDIENCE).await;
    assert_eq!(g.env.idp.received_at("/.well-known/openid-configuration").len(), 1);
}

/// A tokeninfo answer that names no `aud` is no evidence the token was obtained by this app:
/// Google's access tokens are not issued for an API, `aud` is the only binding (issue 13 IdP
/// research §7.3). RFC 7662's rule (an answer's `aud` is optional) does not apply to tokeninfo
/// answers: the reason is the one a JWT without `aud` gets.
#[tokio::test]
async fn google_tokeninfo_answer_without_aud_is_refused() {
    let g = Google::start().await;
    let token = "ya29.a0AfB_byNoAud3mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ3";
    let mut answer = Google::tokeninfo_answer(CLIENT, "jsmith@example.com");
    let members = answer.as_object_mut().unwrap();
    members.remove("aud");
    members.remove("azp");
    g.env.idp.tokeninfo_knows(token, answer);
    g.env.refused("/profile", token, "token has no audience").await;
}

/// `config/idp/google.yaml`'s shape: every token goes to tokeninfo, no key set is needed.
#[tokio::test]
async fn google_tokeninfo_only() {
    let g = Google::start_with(TOKENINFO_ONLY).await;
    let token = "ya29.a0AfB_byOnly4mN4pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5lN7pR9tV1xZ3";
    g.env.idp.tokeninfo_knows(token, Google::tokeninfo_answer(CLIENT, "jsmith@example.com"));
    let seen = g.env.admitted("/anything", token).await;
    assert_identity(
        &seen,
        &[("x-auth-subject", USER), ("x-auth-client-id", CLIENT), ("x-auth-email", "jsmith@example.com")],
    );
    g.env
        .refused(
            "/anything",
            "ya29.a0AfB_byNotKnown1pL9sT1vW3yZ5bD7fH9jK1mN3pQ5sT7vX9zB1dF3hJ5l",
            "token is not active",
        )
        .await;
    assert!(g.env.idp.received_at("/oauth2/v3/certs").is_empty(), "no keys fetched");
}

/// What the google preset fills in: the scheme-less alias for Google's issuer, tokeninfo as
/// the introspection protocol, RS256 for local JWTs. A loopback issuer has no scheme-less
/// spelling an alias may hold (`127.0.0.1:PORT` is neither a URL nor a bare host name), which
/// is why these tests use Google's own issuer name with the keys on the fake host.
#[test]
fn google_preset() {
    let vars = [("UP", "http://127.0.0.1:8081"), ("IDP", "http://127.0.0.1:9400"), ("CLIENT", CLIENT)];
    let config = load(CONFIG, &vars);
    let google = &config.issuers[0];
    assert_eq!(google.aliases, ["accounts.google.com"]);
    assert_eq!((google.mode, google.algorithms.as_slice()), (TokenMode::Auto, &[Algorithm::RS256][..]));
    let introspection = google.introspection.as_ref().unwrap();
    assert_eq!(introspection.protocol, IntrospectionProtocol::GoogleTokeninfo);
    assert_eq!(introspection.endpoint.as_deref(), Some("http://127.0.0.1:9400/tokeninfo"));

    let loopback = CONFIG
        .replace("issuer: https://accounts.google.com", "issuer: ${IDP}\n    issuer_aliases: [\"127.0.0.1:9400\"]")
        .replace("    discovery_url: ${IDP}/.well-known/openid-configuration\n", "");
    let e = try_load(&loopback, &vars).expect_err("a host:port alias is refused");
    assert_eq!(e.field(), Some("issuers[0].issuer_aliases[0]"), "{e}");
    assert!(e.to_string().ends_with("\"127.0.0.1:9400\" must be an https URL"), "{e}");
}

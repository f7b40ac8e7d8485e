//! Trust boundary between issuers, end to end: audiences are always checked, a route admits
//! only the issuers it lists (for JWTs and opaque tokens, from the caches too), and an opaque
//! token is introspected only at an issuer the route accepts. Configs go through the real
//! loader (YAML, ids resolved to indices). Every refusal is checked not to reach the upstream.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use support::*;
use tokengate::config::{AudienceCheck, ClientAuthMethod, Config, Policy, RouteAuth};
use tokengate::dev_issuer::{DevIssuer, SigningKey};

const NOT_ACCEPTED: &str = "token issuer is not accepted on this route";
const WRONG_AUDIENCE: &str = "token is not intended for this audience";

/// `yaml` (with `${NAME}` from `vars`) loaded through `config::load_text`, on ephemeral ports.
fn load(yaml: &str, vars: &[(&str, String)]) -> Config {
    let head = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nrealm: test\n";
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    tokengate::config::load_text(Path::new("issuers.yaml"), &format!("{head}{yaml}"), &env)
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn dev_issuer() -> DevIssuer {
    let key = Arc::new(SigningKey::ec("k", jsonwebtoken::Algorithm::ES256));
    DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![key]).await.unwrap()
}

async fn get(c: &reqwest::Client, gw: &tokengate::app::Running, path: &str, token: &str) -> reqwest::Response {
    c.get(format!("http://{}{path}", gw.addr)).bearer_auth(token).send().await.unwrap()
}

/// `path` with `token`, sent by `c` (its connection may remember the token), is 401
/// invalid_token for exactly `why`, and nothing reached `up`.
async fn assert_invalid_on(
    c: &reqwest::Client,
    gw: &tokengate::app::Running,
    up: &Upstream,
    path: &str,
    token: &str,
    why: &str,
) {
    let request = c.get(format!("http://{}{path}", gw.addr)).bearer_auth(token);
    assert_refused(up, request, 401, Some("invalid_token"), why).await;
}

async fn assert_admitted(c: &reqwest::Client, gw: &tokengate::app::Running, path: &str, token: &str) {
    assert_eq!(get(c, gw, path, token).await.status(), 200, "{path}");
}

// === audiences ===

/// An issuer with audiences refuses a token for another API, one without `aud`, and an OIDC
/// ID token (aud = the client id), also when it verifies and carries the right scopes.
#[tokio::test]
async fn jwt_with_wrong_audience_is_refused() {
    let idp = dev_issuer().await;
    let up = Upstream::start().await;
    let cfg = load(
        "upstream: { url: \"${UP}\" }\nissuers: [{ issuer: \"${ISS}\", jwks_uri: \"${JWKS}\", audiences: [orders] }]\n",
        &[("UP", up.url()), ("ISS", idp.issuer().into()), ("JWKS", idp.jwks_uri())],
    );
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    let c = client(false);
    assert_admitted(&c, &gw, "/", &idp.mint(json!({"sub": "a", "aud": "orders"}))).await;
    let billing = idp.mint(json!({"sub": "a", "aud": "billing", "scope": "read"}));
    assert_invalid_on(&c, &gw, &up, "/", &billing, WRONG_AUDIENCE).await;
    assert_invalid_on(&c, &gw, &up, "/", &idp.mint(json!({"sub": "a"})), "token has no audience").await;
    let id_token = idp.mint(json!({"sub": "a", "aud": "web-client", "nonce": "n-0S6", "azp": "web-client"}));
    assert_invalid_on(&c, &gw, &up, "/", &id_token, WRONG_AUDIENCE).await;
}

/// `audience_check: disabled` is the only way to accept any `aud`; a route's own audiences
/// still bind. A hand-built config with no audience and no opt-out fails closed.
#[tokio::test]
async fn audience_check_disabled_admits_and_an_empty_list_fails_closed() {
    let idp = dev_issuer().await;
    let up = Upstream::start().await;
    let cfg = load(
        "upstream: { url: \"${UP}\" }\n\
         issuers: [{ issuer: \"${ISS}\", jwks_uri: \"${JWKS}\", audience_check: disabled }]\n\
         routes:\n  - { id: billing, path_prefix: /billing, audiences: [billing] }\n  - { id: any, path_prefix: / }\n",
        &[("UP", up.url()), ("ISS", idp.issuer().into()), ("JWKS", idp.jwks_uri())],
    );
    assert_eq!(cfg.issuers[0].audience_check, AudienceCheck::Disabled);
    assert_eq!(tokengate::config::warnings(&cfg).len(), 1);
    let mut unchecked = cfg.clone();
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    let c = client(false);
    let elsewhere = idp.mint(json!({"sub": "a", "aud": "some-other-api"}));
    assert_admitted(&c, &gw, "/x", &elsewhere).await;
    assert_invalid_on(&c, &gw, &up, "/billing", &elsewhere, WRONG_AUDIENCE).await;
    assert_admitted(&c, &gw, "/billing", &idp.mint(json!({"sub": "a", "aud": "billing"}))).await;

    // Without the opt-out, the same (validation-bypassing) config admits nothing.
    unchecked.issuers[0].audience_check = AudienceCheck::Enabled;
    let strict = gateway(unchecked).await;
    wait_ready(&strict).await;
    assert_invalid_on(&c, &strict, &up, "/x", &elsewhere, WRONG_AUDIENCE).await;
}

// === issuers per route (JWT) ===

/// Two tenants: a route listing only tenant-b refuses tenant-a's valid token, on a fresh
/// request and after the token was admitted (and cached) by a route that accepts both.
#[tokio::test]
async fn route_refuses_a_jwt_from_an_issuer_it_does_not_list() {
    let (a, b) = (dev_issuer().await, dev_issuer().await);
    let up = Upstream::start().await;
    let cfg = load(
        "upstream: { url: \"${UP}\" }\nissuers:\n  \
         - { id: tenant-a, issuer: \"${A}\", jwks_uri: \"${A_JWKS}\", audiences: [api] }\n  \
         - { id: tenant-b, issuer: \"${B}\", jwks_uri: \"${B_JWKS}\", audiences: [api] }\n\
         routes:\n  - { id: b-only, path_prefix: /b, issuers: [tenant-b] }\n  - { id: any, path_prefix: / }\n",
        &[
            ("UP", up.url()),
            ("A", a.issuer().into()),
            ("A_JWKS", a.jwks_uri()),
            ("B", b.issuer().into()),
            ("B_JWKS", b.jwks_uri()),
        ],
    );
    let RouteAuth::Required(Policy { issuers, .. }) = &cfg.routes[0].auth else { panic!() };
    assert_eq!(issuers.as_deref(), Some(&[1][..]), "ids resolve to indices");
    let gw = gateway(cfg).await;
    wait_ready(&gw).await;
    let (from_a, from_b) = (a.mint(json!({"sub": "a", "aud": "api"})), b.mint(json!({"sub": "b", "aud": "api"})));

    let fresh = client(false);
    assert_invalid_on(&fresh, &gw, &up, "/b", &from_a, NOT_ACCEPTED).await;
    assert_admitted(&fresh, &gw, "/b", &from_b).await;

    // Admitted on `/`: now in the verified-token cache and this connection's last-token memo.
    let keep_alive = client(false);
    assert_admitted(&keep_alive, &gw, "/x", &from_a).await;
    assert_invalid_on(&keep_alive, &gw, &up, "/b/x", &from_a, NOT_ACCEPTED).await;
    assert_invalid_on(&client(false), &gw, &up, "/b/x", &from_a, NOT_ACCEPTED).await;
    let at_b: Vec<_> = up.seen().into_iter().filter(|s| s.target.starts_with("/b")).collect();
    assert!(at_b.len() == 1 && at_b[0].headers["x-auth-subject"] == "b", "only tenant-b's token reached /b");
}

// === issuers per route (introspection) ===

/// Two introspecting issuers, config order a then b; `/a` accepts a, `/b` accepts b, `/`
/// accepts both.
struct TwoAs {
    a: FakeIntrospection,
    b: FakeIntrospection,
    up: Upstream,
    gw: tokengate::app::Running,
}

impl TwoAs {
    async fn start() -> TwoAs {
        let a = FakeIntrospection::start(ClientAuthMethod::ClientSecretBasic).await;
        let b = FakeIntrospection::start(ClientAuthMethod::ClientSecretBasic).await;
        let up = Upstream::start().await;
        let issuer = |id: &str, var: &str| {
            format!(
                "  - {{ id: {id}, issuer: \"${{{var}}}\", mode: introspection, audiences: [api], introspection: \
                 {{ endpoint: \"${{{var}_EP}}\", client_id: {INTROSPECTION_CLIENT_ID}, client_secret: \"${{SECRET}}\" }} }}\n"
            )
        };
        let cfg = load(
            &format!(
                "upstream: {{ url: \"${{UP}}\" }}\nissuers:\n{}{}routes:\n  \
                 - {{ id: a-only, path_prefix: /a, issuers: [a] }}\n  \
                 - {{ id: b-only, path_prefix: /b, issuers: [b] }}\n  - {{ id: both, path_prefix: / }}\n",
                issuer("a", "A"),
                issuer("b", "B")
            ),
            &[
                ("UP", up.url()),
                ("A", a.issuer()),
                ("A_EP", a.endpoint()),
                ("B", b.issuer()),
                ("B_EP", b.endpoint()),
                ("SECRET", INTROSPECTION_CLIENT_SECRET.into()),
            ],
        );
        let warnings = tokengate::config::warnings(&cfg);
        assert!(warnings.len() == 1 && warnings[0].contains("\"both\""), "{warnings:?}");
        let gw = gateway(cfg).await;
        TwoAs { a, b, up, gw }
    }

    fn members(idp: &FakeIntrospection, extra: Value) -> Value {
        let mut m = json!({"iss": idp.issuer(), "sub": "alice", "aud": "api", "scope": "read", "exp": now() + 600});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// An opaque token for the second issuer works on a route that accepts only the second: it is
/// introspected there and never sent to the first.
#[tokio::test]
async fn opaque_token_for_the_second_issuer_on_its_route() {
    let env = TwoAs::start().await;
    env.b.active("opaque-for-b", TwoAs::members(&env.b, json!({})));
    let c = client(false);
    assert_admitted(&c, &env.gw, "/b", "opaque-for-b").await;
    assert_eq!(env.up.last().headers["x-auth-issuer"], env.b.issuer().as_str());
    assert_eq!((env.a.calls(), env.b.calls()), (0, 1), "introspected at b only");
    // On a route accepting both, an opaque token goes to the first (a) only, which does not know it.
    assert_invalid_on(&c, &env.gw, &env.up, "/", "opaque-for-b", "token is not active").await;
    assert_eq!((env.a.calls(), env.b.calls()), (1, 1));
}

/// A route that accepts only b refuses a token a vouches for, also right after a's answer was
/// cached for another route: the token goes to b (which says inactive), never to a's cache.
#[tokio::test]
async fn route_refuses_an_opaque_token_from_an_issuer_it_does_not_list() {
    let env = TwoAs::start().await;
    env.a.active("opaque-for-a", TwoAs::members(&env.a, json!({})));
    let c = client(false);
    assert_invalid_on(&c, &env.gw, &env.up, "/b", "opaque-for-a", "token is not active").await;
    assert_eq!((env.a.calls(), env.b.calls()), (0, 1));
    assert_admitted(&c, &env.gw, "/a", "opaque-for-a").await;
    assert_admitted(&c, &env.gw, "/", "opaque-for-a").await;
    assert_eq!(env.a.calls(), 1, "the second admission came from a's cache");
    assert_invalid_on(&c, &env.gw, &env.up, "/b", "opaque-for-a", "token is not active").await;
    assert_eq!(env.a.calls(), 1, "a was never asked on behalf of /b");
}

/// A JWS naming an introspection-only issuer the route does not list is refused before any
/// introspection call.
#[tokio::test]
async fn jws_naming_an_unlisted_introspecting_issuer_is_refused_without_a_call() {
    let env = TwoAs::start().await;
    let jws_for_a = dev_issuer().await.mint(json!({"iss": env.a.issuer(), "sub": "x", "aud": "api"}));
    assert_invalid_on(&client(false), &env.gw, &env.up, "/b", &jws_for_a, NOT_ACCEPTED).await;
    assert_eq!((env.a.calls(), env.b.calls()), (0, 0), "nobody was asked");
}

/// An introspection answer's `aud` is checked when present; without one the token is admitted
/// (RFC 7662 makes `aud` optional).
#[tokio::test]
async fn introspection_answer_audience() {
    let env = TwoAs::start().await;
    env.b.active("wrong-aud", TwoAs::members(&env.b, json!({"aud": ["billing"]})));
    let c = client(false);
    assert_invalid_on(&c, &env.gw, &env.up, "/b", "wrong-aud", WRONG_AUDIENCE).await;
    let mut no_aud = TwoAs::members(&env.b, json!({}));
    no_aud.as_object_mut().unwrap().remove("aud");
    env.b.active("no-aud", no_aud);
    assert_admitted(&c, &env.gw, "/b", "no-aud").await;
}

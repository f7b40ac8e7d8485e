//! JWT bearer tokens end to end: the real gateway, a real upstream and the embedded dev issuer
//! serving a JWKS the test changes. Every security rule has its negative case, and every
//! refused request is checked not to have reached the upstream.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::*;
use tokengate::config::{ClaimRule, ClaimTest, KeySource, Policy, RouteAuth, ScopeMatch, Secret};
use tokengate::dev_issuer::{DevIssuer, SigningKey};

struct Env {
    idp: DevIssuer,
    up: Upstream,
    gw: tokengate::app::Running,
}

impl Env {
    async fn start() -> Env {
        Env::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut tokengate::config::Config)) -> Env {
        let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![rsa("k1")]).await.unwrap();
        let up = Upstream::start().await;
        let mut cfg = config(
            &up.url(),
            vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
            vec![
                public_route("public", "/public"),
                required_route("read", "/read", &["read"]),
                required_route("any", "/", &[]),
            ],
        );
        tweak(&mut cfg);
        let gw = gateway(cfg).await;
        wait_ready(&gw).await;
        Env { idp, up, gw }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr)
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        client(false).get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Claims of a token the route `/` accepts.
    fn claims(&self) -> Value {
        json!({"iss": self.idp.issuer(), "sub": "alice", "aud": "api", "scope": "read write", "client_id": "cli"})
    }

    /// Sign `claims` with `key` under a standard header.
    fn signed(&self, key: &SigningKey, claims: Value) -> String {
        key.sign_raw(&json!({"alg": alg_name(key.alg), "kid": key.kid, "typ": "at+jwt"}), &full(claims))
    }

    /// Assert a 401 invalid_token whose description contains `why`, and that nothing was forwarded.
    async fn assert_invalid(&self, token: &str, why: &str) {
        assert_invalid_token(&self.gw, &self.up, token, why).await;
    }
}

fn rsa(kid: &str) -> Arc<SigningKey> {
    Arc::new(SigningKey::rsa(kid, Algorithm::RS256))
}

fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg).unwrap().as_str().unwrap().to_owned()
}

/// Add iat/exp to claims that do not set them.
fn full(mut claims: Value) -> Value {
    let now = now();
    let map = claims.as_object_mut().unwrap();
    map.entry("iat").or_insert(json!(now));
    map.entry("exp").or_insert(json!(now + 600));
    map.retain(|_, v| !v.is_null());
    claims
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A valid token is forwarded with identity headers; the client's Authorization goes too.
#[tokio::test]
async fn valid_token_forwarded_with_identity() {
    let env = Env::start().await;
    let token = env.idp.mint(env.claims());
    let resp = env.get("/read/x", &token).await;
    assert_eq!(resp.status(), 200);
    let h = env.up.last().headers;
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h["x-auth-scopes"], "read write");
    assert_eq!(h["x-auth-client-id"], "cli");
    assert_eq!(h["x-auth-issuer"], env.idp.issuer());
    assert_eq!(h["authorization"], format!("Bearer {token}"));
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h["x-auth-claims"].as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
}

/// Every signing algorithm of the default allowlist validates with its published key.
#[tokio::test]
async fn each_asymmetric_algorithm() {
    let env = Env::start().await;
    let keys = vec![
        Arc::new(SigningKey::rsa("ps", Algorithm::PS256)),
        Arc::new(SigningKey::ec("es", Algorithm::ES256)),
        Arc::new(SigningKey::ec("es384", Algorithm::ES384)),
        Arc::new(SigningKey::ed25519("ed")),
        rsa("k1"),
    ];
    env.idp.set_keys(keys.clone());
    for key in &keys {
        let resp = env.get("/", &env.signed(key, env.claims())).await;
        assert_eq!(resp.status(), 200, "{}", key.kid);
    }
}

/// No credentials: 401 with a bare challenge (RFC 6750 §3.1), nothing forwarded.
#[tokio::test]
async fn missing_token() {
    let env = Env::start().await;
    let resp = client(false).get(env.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"test\"");
    let body: Value = resp.json().await.unwrap();
    assert!(body["error_description"].is_string());
    assert_eq!(env.up.count(), 0);
}

/// Public routes need no token.
#[tokio::test]
async fn public_route_without_token() {
    let env = Env::start().await;
    assert_eq!(client(false).get(env.url("/public/x")).send().await.unwrap().status(), 200);
}

/// Time claims: expired, not yet valid, missing exp; leeway is 30 s, not the library's 60.
#[tokio::test]
async fn time_claims() {
    let env = Env::start().await;
    let key = &env.idp.keys()[0];
    let mut c = env.claims();
    c["exp"] = json!(now() - 45);
    env.assert_invalid(&env.signed(key, c), "token expired").await;
    let mut c = env.claims();
    c["nbf"] = json!(now() + 300);
    env.assert_invalid(&env.signed(key, c), "token not yet valid").await;
    let mut c = env.claims();
    c["exp"] = Value::Null;
    env.assert_invalid(&env.signed(key, c), "token has no exp claim").await;
    let mut c = env.claims();
    c["exp"] = json!(now() - 10);
    assert_eq!(env.get("/", &env.signed(key, c)).await.status(), 200, "within leeway");
}

/// Issuer and audience: unknown iss (no JWKS fetch), wrong aud, no aud when audiences are set.
#[tokio::test]
async fn issuer_and_audience() {
    let env = Env::start().await;
    let key = &env.idp.keys()[0];
    let fetches = env.idp.jwks_requests();
    let mut c = env.claims();
    c["iss"] = json!("https://evil.example");
    env.assert_invalid(&env.signed(key, c), "unknown issuer").await;
    assert_eq!(env.idp.jwks_requests(), fetches, "an unknown issuer caused a network call");
    let mut c = env.claims();
    c["aud"] = json!("other-api");
    env.assert_invalid(&env.signed(key, c), "audience").await;
    let mut c = env.claims();
    c["aud"] = Value::Null;
    env.assert_invalid(&env.signed(key, c), "token has no audience").await;
}

/// Forgeries: alg none, HS256 keyed with the RSA public key, tampered payload, stripped signature.
#[tokio::test]
async fn forged_tokens() {
    let env = Env::start().await;
    let key = &env.idp.keys()[0];
    let claims = full(env.claims());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&claims));
    env.assert_invalid(&unsigned, "").await;
    let unsigned_sig = format!("{}.{}.AAAA", b64(&json!({"alg": "none", "kid": "k1"})), b64(&claims));
    env.assert_invalid(&unsigned_sig, "").await;

    // HS256 with the RSA public key's modulus as the HMAC secret (the classic confusion attack).
    let n = key.public_jwk()["n"].as_str().unwrap().to_owned();
    let input = format!("{}.{}", b64(&json!({"alg": "HS256", "kid": "k1"})), b64(&claims));
    let hmac = jsonwebtoken::EncodingKey::from_secret(n.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &hmac, Algorithm::HS256).unwrap();
    env.assert_invalid(&format!("{input}.{sig}"), "algorithm not allowed").await;

    let good = env.signed(key, env.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = env.claims();
    evil["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&full(evil)), parts[2]);
    env.assert_invalid(&tampered, "signature verification failed").await;
    env.assert_invalid(&format!("{}.{}.", parts[0], parts[1]), "").await;
    env.assert_invalid(&format!("{}.{}", parts[0], parts[1]), "").await;
}

/// Key-carrying and critical headers are refused even when the signature is valid.
#[tokio::test]
async fn hostile_headers() {
    let env = Env::start().await;
    let attacker = SigningKey::rsa("k1", Algorithm::RS256);
    let claims = full(env.claims());
    let embedded = attacker.sign_raw(&json!({"alg": "RS256", "kid": "k1", "jwk": attacker.public_jwk()}), &claims);
    env.assert_invalid(&embedded, "").await;
    let jku =
        attacker.sign_raw(&json!({"alg": "RS256", "kid": "k1", "jku": format!("{}/jwks", env.idp.issuer())}), &claims);
    env.assert_invalid(&jku, "").await;
    let key = &env.idp.keys()[0];
    let crit = key.sign_raw(&json!({"alg": "RS256", "kid": "k1", "crit": ["exp-ext"], "exp-ext": 1}), &claims);
    env.assert_invalid(&crit, "critical").await;
}

/// Malformed shapes: JWE (5 parts), 64 KiB token, duplicate claim names; the gateway keeps serving.
#[tokio::test]
async fn malformed_tokens() {
    let env = Env::start().await;
    env.assert_invalid("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted").await;
    let huge = "a".repeat(64 * 1024);
    let resp = env.get("/", &huge).await;
    assert!(resp.status() == 401 || resp.status() == 431, "{}", resp.status());
    let key = &env.idp.keys()[0];
    let input = format!(
        "{}.{}",
        b64(&json!({"alg": "RS256", "kid": "k1"})),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"{}","sub":"alice","sub":"admin","aud":"api","exp":{}}}"#,
            env.idp.issuer(),
            now() + 600
        ))
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key.encoding_key(), Algorithm::RS256).unwrap();
    env.assert_invalid(&format!("{input}.{sig}"), "").await;
    assert_eq!(env.get("/", &env.idp.mint(env.claims())).await.status(), 200);
    assert_eq!(env.up.count(), 1);
}

/// Malformed credentials are 400 invalid_request.
#[tokio::test]
async fn malformed_credentials() {
    let env = Env::start().await;
    let token = env.idp.mint(env.claims());
    let two = client(false)
        .get(env.url("/"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
    assert!(two.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_request\""));
    let empty = client(false).get(env.url("/")).header("authorization", "Bearer ").send().await.unwrap();
    assert_eq!(empty.status(), 400);
    assert_eq!(env.up.count(), 0);
}

/// A token without the route's scope: 403 insufficient_scope naming the scope.
#[tokio::test]
async fn insufficient_scope() {
    let env = Env::start().await;
    let mut c = env.claims();
    c["scope"] = json!("write");
    let resp = env.get("/read", &env.idp.mint(c)).await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"read\""), "{challenge}");
    assert_eq!(env.up.count(), 0);
}

/// Any-of scopes, claim rules and Auth0-style `permissions` arrays.
#[tokio::test]
async fn scope_modes_and_claim_rules() {
    let env = Env::with(|cfg| {
        cfg.issuers[0].scope_claim = Some("permissions".into());
        cfg.routes.insert(
            0,
            tokengate::config::Route::new(
                "admin",
                "/admin",
                RouteAuth::Required(Policy {
                    audiences: None,
                    scopes: vec!["admin:read".into(), "admin:all".into()],
                    scope_match: ScopeMatch::Any,
                    claims: vec![ClaimRule { claim: "tenant".into(), test: ClaimTest::Equals(json!("acme")) }],
                    ..Policy::default()
                }),
            ),
        );
    })
    .await;
    let mut c = env.claims();
    c["permissions"] = json!(["admin:read"]);
    c["tenant"] = json!("acme");
    assert_eq!(env.get("/admin", &env.idp.mint(c.clone())).await.status(), 200);
    c["tenant"] = json!("other");
    assert_eq!(env.get("/admin", &env.idp.mint(c.clone())).await.status(), 403);
    c["tenant"] = json!("acme");
    c["permissions"] = json!(["read"]);
    assert_eq!(env.get("/admin", &env.idp.mint(c)).await.status(), 403);
}

/// A spoofed identity header never reaches the upstream next to a valid token.
#[tokio::test]
async fn spoofed_identity_with_valid_token() {
    let env = Env::start().await;
    let token = env.idp.mint(env.claims());
    client(false)
        .get(env.url("/"))
        .bearer_auth(&token)
        .header("x-auth-subject", "admin")
        .header("x_auth_subject", "admin")
        .header("connection", "x-auth-subject")
        .send()
        .await
        .unwrap();
    let seen = env.up.last();
    assert_eq!(seen.headers.get_all("x-auth-subject").iter().collect::<Vec<_>>(), ["alice"]);
    assert!(seen.headers.get("x_auth_subject").is_none());
}

/// Claim values that cannot be header values reject the request.
#[tokio::test]
async fn control_characters_in_claims() {
    let env = Env::start().await;
    let mut c = env.claims();
    c["sub"] = json!("alice\r\nX-Admin: true");
    env.assert_invalid(&env.idp.mint(c), "header").await;
}

/// Authorization can be kept from the upstream.
#[tokio::test]
async fn authorization_not_forwarded_when_configured() {
    let env = Env::with(|cfg| cfg.identity.forward_authorization = false).await;
    assert_eq!(env.get("/", &env.idp.mint(env.claims())).await.status(), 200);
    assert!(env.up.last().headers.get("authorization").is_none());
}

/// Rotation: a new kid is accepted on its first request; a removed key stops working once the
/// key set has been refetched.
#[tokio::test]
async fn key_rotation() {
    let env = Env::with(|cfg| cfg.jwks.unknown_kid_cooldown = Duration::from_millis(1)).await;
    let old = env.idp.keys()[0].clone();
    let old_token = env.signed(&old, env.claims());
    assert_eq!(env.get("/", &old_token).await.status(), 200);
    let new = rsa("k2");
    env.idp.set_keys(vec![new.clone()]);
    assert_eq!(env.get("/", &env.signed(&new, env.claims())).await.status(), 200, "new kid on first request");
    env.assert_invalid(&old_token, "unknown signing key").await;
}

/// JWKS endpoint down: the cached key set keeps working.
#[tokio::test]
async fn jwks_down_keeps_cached_keys() {
    let env = Env::with(|cfg| cfg.jwks.unknown_kid_cooldown = Duration::from_millis(1)).await;
    env.idp.set_jwks_available(false);
    // A refetch attempt fails (unknown kid) and must not drop the good set.
    let stranger = rsa("k9");
    env.assert_invalid(&env.signed(&stranger, env.claims()), "unknown signing key").await;
    assert_eq!(env.get("/", &env.idp.mint(env.claims())).await.status(), 200);
}

/// A flood of random kids causes at most one JWKS fetch per cooldown, and concurrent requests
/// with the same new kid share one fetch.
#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited_and_coalesced() {
    let env = Env::start().await;
    let before = env.idp.jwks_requests();
    let stranger = rsa("k-new");
    env.idp.set_keys(vec![env.idp.keys()[0].clone(), stranger.clone()]);
    let token = env.signed(&stranger, env.claims());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (c, url, t) = (client(false), env.url("/"), token.clone());
        tasks.push(tokio::spawn(async move { c.get(url).bearer_auth(t).send().await.unwrap().status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(env.idp.jwks_requests(), before + 1, "concurrent requests for a new kid share one fetch");
    for i in 0..50 {
        let mut header = json!({"alg": "RS256", "kid": format!("random-{i}")});
        header["typ"] = json!("at+jwt");
        env.assert_invalid(&stranger.sign_raw(&header, &full(env.claims())), "unknown signing key").await;
    }
    assert_eq!(env.idp.jwks_requests(), before + 1, "random kids within the cooldown cause no fetch");
}

/// The RFC 9068 `typ: at+jwt` requirement, when configured.
#[tokio::test]
async fn typ_at_jwt_required() {
    let env = Env::with(|cfg| cfg.issuers[0].require_at_jwt = true).await;
    let key = &env.idp.keys()[0];
    assert_eq!(env.get("/", &env.signed(key, env.claims())).await.status(), 200);
    let plain = key.sign_raw(&json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}), &full(env.claims()));
    env.assert_invalid(&plain, "at+jwt").await;
}

/// Several issuers: `iss` selects the issuer, and one issuer's key cannot vouch for another.
#[tokio::test]
async fn several_issuers() {
    let other = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![rsa("o1")]).await.unwrap();
    let (other_iss, other_jwks) = (other.issuer().to_owned(), other.jwks_uri());
    let env = Env::with(|cfg| cfg.issuers.push(issuer(&other_iss, &other_jwks, &["api"]))).await;
    let mut c = env.claims();
    c["iss"] = json!(other_iss);
    assert_eq!(env.get("/", &other.mint(c.clone())).await.status(), 200);
    assert_eq!(env.up.last().headers["x-auth-issuer"], other_iss.as_str());
    env.assert_invalid(&env.idp.mint(c), "").await;
}

/// An HMAC issuer with a configured secret accepts HS256 and nothing asymmetric.
#[tokio::test]
async fn hmac_issuer_with_secret() {
    let secret = b"0123456789abcdef0123456789abcdef".to_vec();
    let env = Env::with(|cfg| {
        cfg.issuers[0].keys = KeySource::Secret(Secret(secret.clone()));
        cfg.issuers[0].algorithms = vec![Algorithm::HS256];
    })
    .await;
    let input = format!("{}.{}", b64(&json!({"alg": "HS256"})), b64(&full(env.claims())));
    let key = jsonwebtoken::EncodingKey::from_secret(&secret);
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    assert_eq!(env.get("/", &format!("{input}.{sig}")).await.status(), 200);
    env.assert_invalid(&env.idp.mint(env.claims()), "algorithm not allowed").await;
}

/// Discovery: the JWKS URL comes from the issuer's metadata.
#[tokio::test]
async fn discovery() {
    let env = Env::with(|cfg| cfg.issuers[0].keys = KeySource::Discovery).await;
    assert_eq!(env.get("/", &env.idp.mint(env.claims())).await.status(), 200);
    assert!(env.idp.discovery_requests() >= 1);
}

/// /metrics counts decisions by route and status; /healthz is alive.
#[tokio::test]
async fn admin_endpoints() {
    let env = Env::start().await;
    env.get("/read", &env.idp.mint(env.claims())).await;
    client(false).get(env.url("/read")).send().await.unwrap();
    let admin = format!("http://{}", env.gw.admin_addr);
    assert_eq!(client(false).get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    let metrics = client(false).get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"tokengate_requests_total{decision="allowed",route="read",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tokengate_requests_total{decision="missing_token",route="read",status="401"} 1"#));
    assert!(metrics.contains("tokengate_request_duration_seconds_bucket"));
    assert!(metrics.contains(r#"tokengate_jwks_fetches_total{"#));
}

/// Cached principals keep only the claims something reads: claim rules and claim-mapped
/// headers still see theirs on the first and on cached requests.
#[tokio::test]
async fn kept_claims_serve_rules_and_headers() {
    let env = Env::with(|cfg| {
        cfg.identity.claims_header = None;
        cfg.identity.headers.push(tokengate::config::IdentityHeader {
            name: http::HeaderName::from_static("x-tenant"),
            value: tokengate::config::IdentityValue::Claim("tenant".into()),
        });
        cfg.routes.insert(
            0,
            tokengate::config::Route::new(
                "ops",
                "/ops",
                RouteAuth::Required(Policy {
                    claims: vec![ClaimRule { claim: "groups".into(), test: ClaimTest::Contains(json!("ops")) }],
                    ..Policy::default()
                }),
            ),
        );
    })
    .await;
    let mut c = env.claims();
    c["tenant"] = json!("acme");
    c["groups"] = json!(["ops"]);
    let token = env.idp.mint(c);
    for _ in 0..2 {
        assert_eq!(env.get("/ops", &token).await.status(), 200);
        assert_eq!(env.up.last().headers["x-tenant"], "acme");
    }
}

/// RFC 6750 §2.2/§2.3 when enabled: a form-body or query token is accepted, the form body still
/// reaches the upstream intact, and a token in two places is 400.
#[tokio::test]
async fn form_and_query_tokens_when_enabled() {
    let env = Env::with(|cfg| {
        cfg.tokens.allow_form_body = true;
        cfg.tokens.allow_query = true;
    })
    .await;
    let token = env.idp.mint(env.claims());
    let body = format!("note=hello&access_token={token}");
    let resp = client(false)
        .post(env.url("/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.up.last().body_len, body.len(), "the form body is forwarded whole");
    assert_eq!(env.up.last().headers["x-auth-subject"], "alice");
    assert_eq!(client(false).get(env.url(&format!("/q?access_token={token}"))).send().await.unwrap().status(), 200);
    let both = env.get(&format!("/q?access_token={token}"), &token).await;
    assert_eq!(both.status(), 400);
}

/// Query tokens stay ignored unless enabled: such a request has no credentials.
#[tokio::test]
async fn query_token_ignored_by_default() {
    let env = Env::start().await;
    let token = env.idp.mint(env.claims());
    let resp = client(false).get(env.url(&format!("/q?access_token={token}"))).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"test\"");
}

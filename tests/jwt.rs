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
        Env::with_keys(vec![rsa("k1")], tweak).await
    }

    /// The issuer publishes `keys` from the start (the first one mints).
    async fn with_keys(keys: Vec<Arc<SigningKey>>, tweak: impl FnOnce(&mut tokengate::config::Config)) -> Env {
        let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), keys).await.unwrap();
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

    /// Assert a 401 invalid_token whose description is exactly `why`, and that nothing was forwarded.
    async fn assert_invalid(&self, token: &str, why: &str) {
        assert_token_refused(&self.gw, &self.up, token, why).await;
    }

    /// GET `path` with `token`, ready for `assert_refused`.
    fn request(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        client(false).get(self.url(path)).bearer_auth(token)
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
    assert_refused(&env.up, client(false).get(env.url("/")), 401, None, "a bearer token is required").await;
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
    env.assert_invalid(&env.signed(key, c), "token is not intended for this audience").await;
    let mut c = env.claims();
    c["aud"] = Value::Null;
    env.assert_invalid(&env.signed(key, c), "token has no audience").await;
}

/// Forgeries: a tampered payload, a stripped or truncated signature, a JWS in two parts.
#[tokio::test]
async fn forged_tokens() {
    let env = Env::start().await;
    let key = &env.idp.keys()[0];
    let good = env.signed(key, env.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = env.claims();
    evil["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&full(evil)), parts[2]);
    env.assert_invalid(&tampered, "signature verification failed").await;
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..16]);
    env.assert_invalid(&truncated, "signature verification failed").await;
    // RFC 7515 §7.1: exactly three segments, none empty.
    env.assert_invalid(&format!("{}.{}.", parts[0], parts[1]), "malformed token").await;
    env.assert_invalid(&format!("{}.{}", parts[0], parts[1]), "malformed token").await;
}

// === hostile headers ===
//
// Each hostile token is signed with the issuer's own published key (kid "k1"), so its signature
// verifies: only the header rule under test stands between it and the upstream. A token signed
// with an attacker's key would be refused by the signature check whether the rule exists or not.
// Where the rule allows it, a test first shows the same header without the hostile member
// admitted, so the signature is known good.

/// The issuer's key signs `header` over a token the route `/` accepts.
fn signed_header(env: &Env, header: Value) -> String {
    env.idp.keys()[0].sign_raw(&header, &full(env.claims()))
}

/// RFC 8725 §3.1 / RFC 7518 §3.6: `alg: none` is never accepted, however spelled, even with a
/// valid signature by the issuer's key after it; with no signature at all the empty third
/// segment is refused before the header is read.
#[tokio::test]
async fn alg_none_refused_even_with_a_valid_signature() {
    let env = Env::start().await;
    assert_eq!(env.get("/", &signed_header(&env, json!({"alg": "RS256", "kid": "k1"}))).await.status(), 200);
    for none in ["none", "None", "NONE"] {
        let token = signed_header(&env, json!({"alg": none, "kid": "k1"}));
        env.assert_invalid(&token, "unsigned tokens are not accepted").await;
    }
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&full(env.claims())));
    env.assert_invalid(&unsigned, "malformed token").await;
}

/// RFC 8725 §3.10 (RFC 7515 §4.1.2–§4.1.6): keys are never taken from the token. `jku`, `jwk`,
/// `x5u` and `x5c` are refused even when they point at (or embed) the issuer's own key and the
/// signature verifies; `jku` is not fetched.
#[tokio::test]
async fn key_references_in_the_header_refused_with_a_valid_signature() {
    let env = Env::start().await;
    let fetches = env.idp.jwks_requests();
    assert_eq!(env.get("/", &signed_header(&env, json!({"alg": "RS256", "kid": "k1"}))).await.status(), 200);
    let own_jwk = env.idp.keys()[0].public_jwk();
    let attacker_jwk = SigningKey::rsa("k1", Algorithm::RS256).public_jwk();
    for (member, value) in [
        ("jku", json!(env.idp.jwks_uri())),
        ("jku", json!("https://evil.example/jwks")),
        ("jwk", own_jwk),
        ("jwk", attacker_jwk),
        ("x5u", json!("https://evil.example/cert.pem")),
        // Any certificate chain: its content is never read.
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGU"])),
    ] {
        let mut header = json!({"alg": "RS256", "kid": "k1"});
        header[member] = value;
        env.assert_invalid(&signed_header(&env, header), "key references in the token header are not accepted").await;
    }
    assert_eq!(env.idp.jwks_requests(), fetches, "a header made the gateway fetch keys");
}

/// RFC 7515 §4.1.11: a `crit` listing an extension the gateway does not understand (it
/// understands none, RFC 7797 `b64` included) is refused; an unknown member outside `crit` is
/// ignored (RFC 7515 §4).
#[tokio::test]
async fn critical_header_extensions_refused_with_a_valid_signature() {
    let env = Env::start().await;
    let ignored = signed_header(&env, json!({"alg": "RS256", "kid": "k1", "exp-ext": 1}));
    assert_eq!(env.get("/", &ignored).await.status(), 200);
    for header in [
        json!({"alg": "RS256", "kid": "k1", "crit": ["exp-ext"], "exp-ext": 1}),
        json!({"alg": "RS256", "kid": "k1", "crit": ["b64"], "b64": false}),
        json!({"alg": "RS256", "kid": "k1", "crit": []}),
    ] {
        env.assert_invalid(&signed_header(&env, header), "critical header extensions are not supported").await;
    }
}

/// RFC 8725 §3.1: only the issuer's allowlisted algorithms. An RS256 token genuinely signed by
/// a key the issuer publishes is refused when the issuer allows only ES256; an unknown `alg`
/// and a missing one are refused too.
#[tokio::test]
async fn algorithm_outside_the_allowlist_refused_with_a_valid_signature() {
    let ec = Arc::new(SigningKey::ec("e1", Algorithm::ES256));
    let env =
        Env::with_keys(vec![rsa("k1"), ec.clone()], |cfg| cfg.issuers[0].algorithms = vec![Algorithm::ES256]).await;
    assert_eq!(env.get("/", &env.signed(&ec, env.claims())).await.status(), 200);
    env.assert_invalid(&signed_header(&env, json!({"alg": "RS256", "kid": "k1"})), "algorithm not allowed").await;
    env.assert_invalid(&signed_header(&env, json!({"alg": "RS1", "kid": "k1"})), "unsupported algorithm").await;
    env.assert_invalid(&signed_header(&env, json!({"kid": "k1"})), "malformed token").await;
}

/// RFC 8725 §2.1/§3.1, the classic confusion: HS256 "signed" with the issuer's RSA public key
/// (its modulus, or its JWK text) as the HMAC secret. Refused by the allowlist; and where HS256
/// is allowlisted, the published RSA key is still never an HMAC key.
#[tokio::test]
async fn hmac_keyed_with_the_issuers_public_key_refused() {
    let forge = |env: &Env| {
        let jwk = env.idp.keys()[0].public_jwk();
        let secrets = [jwk["n"].as_str().unwrap().to_owned(), jwk.to_string()];
        secrets.map(|secret| {
            let input = format!("{}.{}", b64(&json!({"alg": "HS256", "kid": "k1"})), b64(&full(env.claims())));
            let hmac = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
            let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &hmac, Algorithm::HS256).unwrap();
            format!("{input}.{sig}")
        })
    };
    let env = Env::start().await;
    for token in forge(&env) {
        env.assert_invalid(&token, "algorithm not allowed").await;
    }
    let env = Env::with(|cfg| cfg.issuers[0].algorithms.push(Algorithm::HS256)).await;
    for token in forge(&env) {
        env.assert_invalid(&token, "unknown signing key").await;
    }
}

/// Malformed shapes: JWE (5 parts), a token over `max_token_bytes`, a request head over
/// `max_header_bytes`, duplicate claim names; the gateway keeps serving.
#[tokio::test]
async fn malformed_tokens() {
    let env = Env::start().await;
    env.assert_invalid("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted tokens are not accepted").await;
    env.assert_invalid(&"a".repeat(16 * 1024 + 1), "token exceeds the size limit").await;
    let huge = "a".repeat(64 * 1024);
    assert_eq!(env.get("/", &huge).await.status(), 431, "hyper refuses the head before any auth");
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
    // RFC 7519 §4 / RFC 7515 §5.2: a member named twice has no single meaning.
    env.assert_invalid(&format!("{input}.{sig}"), "malformed token").await;
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
        .header("authorization", format!("Bearer {token}"));
    assert_refused(&env.up, two, 400, Some("invalid_request"), "more than one Authorization header").await;
    let empty = client(false).get(env.url("/")).header("authorization", "Bearer ");
    assert_refused(&env.up, empty, 400, Some("invalid_request"), "empty bearer token").await;
    let spaced = client(false).get(env.url("/")).header("authorization", "Bearer a b");
    assert_refused(&env.up, spaced, 400, Some("invalid_request"), "malformed bearer token").await;
    assert_eq!(env.up.count(), 0);
}

/// A token without the route's scope: 403 insufficient_scope naming the scope.
#[tokio::test]
async fn insufficient_scope() {
    let env = Env::start().await;
    let mut c = env.claims();
    c["scope"] = json!("write");
    assert_insufficient(&env.up, env.request("/read", &env.idp.mint(c)), LACKS_SCOPE, "read").await;
}

/// Scopes are whole, case-sensitive tokens (RFC 6749 §3.3): a route requiring `read` refuses
/// every near miss — prefix, extension, case, truncation, other separators, the array form
/// (`scp`) with a near miss, `read` only inside another scope — with 403 insufficient_scope
/// and `scope="read"` (RFC 6750 §3.1); `read` among others is admitted, in either form.
#[tokio::test]
async fn near_miss_scopes_refused() {
    let env = Env::start().await;
    let with = |member: &str, value: Value| {
        let mut c = env.claims();
        c.as_object_mut().unwrap().remove("scope");
        c[member] = value;
        env.idp.mint(c)
    };
    for near in NEAR_MISS_SCOPES {
        let request = env.request("/read", &with("scope", json!(near)));
        assert_insufficient(&env.up, request, LACKS_SCOPE, "read").await;
    }
    for near in [json!(["readonly"]), json!(["read:all", "reader"]), json!(["read "]), json!(["READ"]), json!("reader")]
    {
        assert_insufficient(&env.up, env.request("/read", &with("scp", near)), LACKS_SCOPE, "read").await;
    }
    // Only `scope`, `scp` or the configured claim carries scopes.
    assert_insufficient(&env.up, env.request("/read", &with("scopes", json!("read"))), LACKS_SCOPE, "read").await;
    assert_eq!(env.up.count(), 0);
    for admitted in
        [with("scope", json!("write read")), with("scp", json!(["write", "read"])), with("scp", json!("read"))]
    {
        assert_eq!(env.get("/read", &admitted).await.status(), 200);
    }
    assert_eq!(env.up.count(), 3);
}

/// Any-of scopes, claim rules and Auth0-style `permissions` arrays.
#[tokio::test]
async fn scope_modes_and_claim_rules() {
    let env = Env::with(|cfg| {
        cfg.issuers[0].sources.scopes = vec![tokengate::config::ClaimPath::top("permissions")];
        cfg.routes.insert(
            0,
            tokengate::config::Route::new(
                "admin",
                "/admin",
                RouteAuth::Required(Policy {
                    audiences: None,
                    scopes: vec!["admin:read".into(), "admin:all".into()],
                    scope_match: ScopeMatch::Any,
                    claims: vec![ClaimRule {
                        claim: tokengate::config::ClaimPath::top("tenant"),
                        test: ClaimTest::Equals(json!("acme")),
                    }],
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
    let scopes = "admin:read admin:all";
    c["tenant"] = json!("other");
    let request = env.request("/admin", &env.idp.mint(c.clone()));
    assert_insufficient(&env.up, request, "token lacks a required claim", scopes).await;
    c["tenant"] = json!("acme");
    c["permissions"] = json!(["read"]);
    assert_insufficient(&env.up, env.request("/admin", &env.idp.mint(c.clone())), LACKS_SCOPE, scopes).await;
    // The configured claim replaces `scope`: a `scope` string naming the route's scope is not read.
    c["permissions"] = json!([]);
    c["scope"] = json!("admin:read");
    assert_insufficient(&env.up, env.request("/admin", &env.idp.mint(c)), LACKS_SCOPE, scopes).await;
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
    env.assert_invalid(&env.idp.mint(c), "a claim cannot be sent as a header value").await;
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

/// No key set ever loaded, the JWKS unreachable from the start: the gateway cannot decide, so a
/// JWT gets 503 with Retry-After and no challenge (a 401 would make the client throw away a good
/// token), nothing is forwarded, and `/readyz` is 503 naming the issuer.
#[tokio::test]
async fn jwks_unreachable_from_start_is_503_not_401() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let signer = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![rsa("k1")]).await.unwrap();
    let up = Upstream::start().await;
    let jwks = format!("http://{closed}/jwks");
    let gw = gateway(config(
        &up.url(),
        vec![issuer(signer.issuer(), &jwks, &["api"])],
        vec![required_route("any", "/", &[])],
    ))
    .await;
    let token = signer.mint(json!({"sub": "alice", "aud": "api"}));
    for _ in 0..2 {
        let request = client(false).get(format!("http://{}/", gw.addr)).bearer_auth(&token);
        assert_refused(&up, request, 503, None, "signing keys are not available").await;
    }
    let ready = client(false).get(format!("http://{}/readyz", gw.admin_addr)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), format!("no usable key set yet for: {}\n", signer.issuer()));
}

/// The JWKS failing (503) from the start: 503 as above, and once it answers the gateway turns
/// ready and admits the very same token (the 503 was not remembered against it).
#[tokio::test]
async fn jwks_failing_from_start_is_503_until_it_answers() {
    let idp = DevIssuer::start("127.0.0.1:0".parse().unwrap(), vec![rsa("k1")]).await.unwrap();
    idp.set_jwks_available(false);
    let up = Upstream::start().await;
    let routes = vec![required_route("any", "/", &[])];
    let gw = gateway(config(&up.url(), vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])], routes)).await;
    let token = idp.mint(json!({"sub": "alice", "aud": "api"}));
    let request = client(false).get(format!("http://{}/", gw.addr)).bearer_auth(&token);
    assert_refused(&up, request, 503, None, "signing keys are not available").await;
    let readyz = format!("http://{}/readyz", gw.admin_addr);
    assert_eq!(client(false).get(&readyz).send().await.unwrap().status(), 503);
    idp.set_jwks_available(true);
    wait_ready(&gw).await;
    let resp = client(false).get(format!("http://{}/", gw.addr)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
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

/// RFC 9068 §4, when configured: `typ` must be `at+jwt` (or `application/at+jwt`, any case,
/// RFC 7515 §4.1.9). Anything else — a plain `JWT` (an ID token, say), near misses, no `typ` —
/// is refused although the issuer's own key signed it; unconfigured, a plain JWT is admitted.
#[tokio::test]
async fn typ_at_jwt_required() {
    let env = Env::with(|cfg| cfg.issuers[0].require_at_jwt = true).await;
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "RS256", "kid": "k1"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        signed_header(&env, header)
    };
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert_eq!(env.get("/", &with_typ(Some(typ))).await.status(), 200, "{typ}");
    }
    for typ in [Some("JWT"), Some("jwt"), Some("application/jwt"), Some("at+jwt "), Some("at+jws"), None] {
        env.assert_invalid(&with_typ(typ), "token type is not at+jwt").await;
    }
    let env = Env::start().await;
    let plain = signed_header(&env, json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}));
    assert_eq!(env.get("/", &plain).await.status(), 200);
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
    // Signed with the first issuer's key (kid k1): the second issuer publishes no such key.
    env.assert_invalid(&env.idp.mint(c), "unknown signing key").await;
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
            value: tokengate::config::IdentityValue::Claim(tokengate::config::ClaimPath::top("tenant")),
        });
        cfg.routes.insert(
            0,
            tokengate::config::Route::new(
                "ops",
                "/ops",
                RouteAuth::Required(Policy {
                    claims: vec![ClaimRule {
                        claim: tokengate::config::ClaimPath::top("groups"),
                        test: ClaimTest::Contains(json!("ops")),
                    }],
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
    let both = env.request(&format!("/q?access_token={token}"), &token);
    assert_refused(&env.up, both, 400, Some("invalid_request"), "token sent in more than one place").await;

    // RFC 6750 §2.2: only an application/x-www-form-urlencoded body carries a token.
    let json = client(false).post(env.url("/form")).header("content-type", "application/json").body(body.clone());
    assert_refused(&env.up, json, 401, None, "a bearer token is required").await;

    // Form bodies are read up to 64 KiB, the cap included; one byte more is refused.
    let post = |body: String| {
        client(false).post(env.url("/form")).header("content-type", "application/x-www-form-urlencoded").body(body)
    };
    let padded = |len: usize| {
        let head = format!("access_token={token}&note=");
        let pad = "x".repeat(len - head.len());
        head + &pad
    };
    assert_eq!(post(padded(64 * 1024)).send().await.unwrap().status(), 200);
    assert_eq!(env.up.last().body_len, 64 * 1024);
    let before = env.up.count();
    let too_large = post(padded(64 * 1024 + 1)).send().await.unwrap();
    assert_eq!(too_large.status(), 400);
    let body: serde_json::Value = too_large.json().await.unwrap();
    assert_eq!(body["error_description"], "form body too large or unreadable");
    assert_eq!(env.up.count(), before, "nothing forwarded");
}

/// Query tokens stay ignored unless enabled: such a request has no credentials.
#[tokio::test]
async fn query_token_ignored_by_default() {
    let env = Env::start().await;
    let token = env.idp.mint(env.claims());
    let request = client(false).get(env.url(&format!("/q?access_token={token}")));
    assert_refused(&env.up, request, 401, None, "a bearer token is required").await;
}

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::{DevIssuer, SigningKey, DEFAULT_MAX_AGE_SECS, MINT_LIFETIME_SECS};

const LOOPBACK: &str = "127.0.0.1:0";

fn loopback() -> SocketAddr {
    LOOPBACK.parse().unwrap()
}

/// RSA-2048 generation costs 100+ ms: each test key is generated once per test binary.
fn cached(cell: &'static OnceLock<Arc<SigningKey>>, kid: &str, alg: Algorithm) -> Arc<SigningKey> {
    Arc::clone(cell.get_or_init(|| Arc::new(SigningKey::rsa(kid, alg))))
}

fn rs256_a() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    cached(&KEY, "rs256-a", Algorithm::RS256)
}

fn rs256_b() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    cached(&KEY, "rs256-b", Algorithm::RS256)
}

fn ps256() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    cached(&KEY, "ps256", Algorithm::PS256)
}

fn client() -> reqwest::Client {
    // No proxy: an HTTP(S)_PROXY in the environment must not intercept loopback calls.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_json(url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap();
    (status, headers, body)
}

async fn served_jwks(issuer: &DevIssuer) -> Value {
    let (status, _, body) = get_json(&issuer.jwks_uri()).await;
    assert_eq!(status, 200);
    body
}

fn served_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Verify `token` against the JWK the issuer serves for `kid`, as a relying party would.
fn verify(token: &str, jwks: &Value, issuer: &str, alg: Algorithm) -> jsonwebtoken::TokenData<Value> {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("minted tokens carry a kid");
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap()
}

/// Both discovery documents name the bound issuer URL and its JWKS URI.
#[tokio::test]
async fn metadata_served_with_matching_issuer_and_jwks_uri() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ec("ec", Algorithm::ES256))]).await.unwrap();
    assert_eq!(issuer.issuer(), format!("http://{}", issuer.local_addr()));
    assert_eq!(issuer.jwks_uri(), format!("{}/jwks", issuer.issuer()));
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let (status, headers, body) = get_json(&format!("{}{path}", issuer.issuer())).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["issuer"], issuer.issuer());
        assert_eq!(body["jwks_uri"], issuer.jwks_uri());
        assert_eq!(body["id_token_signing_alg_values_supported"], json!(["ES256"]));
    }
    assert_eq!(issuer.discovery_requests(), 2);
    assert_eq!(issuer.jwks_requests(), 0);
}

/// The JWKS publishes public parameters only (never "d" or other private members), with kid, alg
/// and use:sig, as application/json with the default Cache-Control max-age.
#[tokio::test]
async fn jwks_contains_public_parts_only() {
    let keys =
        vec![rs256_a(), Arc::new(SigningKey::ec("ec384", Algorithm::ES384)), Arc::new(SigningKey::ed25519("ed"))];
    let issuer = DevIssuer::start(loopback(), keys).await.unwrap();
    let response = client().get(issuer.jwks_uri()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], format!("max-age={DEFAULT_MAX_AGE_SECS}").as_str());
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(served_kids(&jwks), ["rs256-a", "ec384", "ed"]);
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(key.get(private).is_none(), "private member {private} in {key}");
        }
        assert_eq!(key["use"], "sig");
    }
    assert_eq!((&keys[0]["kty"], &keys[0]["alg"], &keys[0]["e"]), (&json!("RSA"), &json!("RS256"), &json!("AQAB")));
    assert_eq!((&keys[1]["kty"], &keys[1]["crv"], &keys[1]["alg"]), (&json!("EC"), &json!("P-384"), &json!("ES384")));
    assert_eq!(
        (&keys[2]["kty"], &keys[2]["crv"], &keys[2]["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    assert_eq!(keys[0], rs256_a().public_jwk());
}

/// A minted token verifies with jsonwebtoken against the served JWK, for RS256, PS256, ES256 and EdDSA.
#[tokio::test]
async fn minted_token_verifies_with_served_jwk() {
    let cases = [
        (rs256_a(), Algorithm::RS256),
        (ps256(), Algorithm::PS256),
        (Arc::new(SigningKey::ec("es256", Algorithm::ES256)), Algorithm::ES256),
        (Arc::new(SigningKey::ed25519("eddsa")), Algorithm::EdDSA),
    ];
    for (key, alg) in cases {
        let issuer = DevIssuer::start(loopback(), vec![Arc::clone(&key)]).await.unwrap();
        let token = issuer.mint(json!({ "sub": "alice", "aud": "api", "scope": "read" }));
        let jwks = served_jwks(&issuer).await;
        let data = verify(&token, &jwks, issuer.issuer(), alg);
        assert_eq!(data.header.alg, alg);
        assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
        let claims = data.claims;
        assert_eq!(
            (&claims["sub"], &claims["aud"], &claims["scope"]),
            (&json!("alice"), &json!("api"), &json!("read"))
        );
        assert_eq!(claims["iss"], issuer.issuer());
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, MINT_LIFETIME_SECS);
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        issuer.shutdown().await;
    }
}

/// Caller claims override the defaults and a null removes a default; every jti is fresh.
#[tokio::test]
async fn mint_merges_claims_over_defaults() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    let token = issuer.mint(json!({ "iss": "https://other.example", "exp": null, "iat": 7 }));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(&token).unwrap().claims;
    assert_eq!(claims["iss"], "https://other.example");
    assert_eq!(claims["iat"], 7);
    assert!(claims.get("exp").is_none(), "{claims}");
    let jti = |t: &str| jsonwebtoken::dangerous::insecure_decode::<Value>(t).unwrap().claims["jti"].clone();
    assert_ne!(jti(&issuer.mint(json!({}))), jti(&issuer.mint(json!({}))));
}

/// sign_raw keeps the caller's header verbatim (even a lying alg) and signs with the key's own algorithm.
#[test]
fn sign_raw_uses_caller_header_verbatim() {
    let key = SigningKey::ec("ec", Algorithm::ES256);
    let header = json!({ "alg": "HS256", "kid": "../../etc/passwd", "jku": "http://evil.example/jwks", "typ": "JWT" });
    let token = key.sign_raw(&header, &json!({ "sub": "mallory" }));
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), header);
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
    let message = format!("{}.{}", parts[0], parts[1]);
    let ok = jsonwebtoken::crypto::verify(
        parts[2],
        message.as_bytes(),
        &DecodingKey::from_jwk(&jwk).unwrap(),
        Algorithm::ES256,
    );
    assert!(ok.unwrap());
}

/// set_keys is visible at the next /jwks request, and mint switches to the new first key.
#[tokio::test]
async fn set_keys_rotation_visible_at_jwks() {
    let issuer = DevIssuer::start(loopback(), vec![rs256_a()]).await.unwrap();
    assert_eq!(served_kids(&served_jwks(&issuer).await), ["rs256-a"]);
    issuer.set_keys(vec![rs256_b(), rs256_a()]);
    assert_eq!(served_kids(&served_jwks(&issuer).await), ["rs256-b", "rs256-a"]);
    let kids: Vec<String> = issuer.keys().iter().map(|k| k.kid.clone()).collect();
    assert_eq!(kids, ["rs256-b", "rs256-a"]);
    let token = issuer.mint(json!({ "sub": "bob" }));
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(), Some("rs256-b"));
    issuer.set_keys(vec![rs256_b()]);
    let jwks = served_jwks(&issuer).await;
    assert_eq!(served_kids(&jwks), ["rs256-b"]);
    verify(&token, &jwks, issuer.issuer(), Algorithm::RS256);
}

/// set_jwks_available(false) makes /jwks answer 503 until it is set back to true.
#[tokio::test]
async fn jwks_outage_answers_503() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    issuer.set_jwks_available(false);
    let (status, headers, _) = get_json(&issuer.jwks_uri()).await;
    assert_eq!(status, 503);
    assert!(headers.get("cache-control").is_none());
    issuer.set_jwks_available(true);
    assert_eq!(served_kids(&served_jwks(&issuer).await), ["ed"]);
}

/// jwks_requests counts every GET /jwks, outage answers included, and nothing else.
#[tokio::test]
async fn jwks_requests_are_counted() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    assert_eq!(issuer.jwks_requests(), 0);
    served_jwks(&issuer).await;
    served_jwks(&issuer).await;
    assert_eq!(issuer.jwks_requests(), 2);
    issuer.set_jwks_available(false);
    get_json(&issuer.jwks_uri()).await;
    get_json(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await;
    get_json(&format!("{}/nope", issuer.issuer())).await;
    assert_eq!(issuer.jwks_requests(), 3);
    assert_eq!(issuer.discovery_requests(), 1);
}

/// set_max_age changes the Cache-Control max-age of the next JWKS response.
#[tokio::test]
async fn max_age_is_configurable() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    issuer.set_max_age(0);
    let (_, headers, _) = get_json(&issuer.jwks_uri()).await;
    assert_eq!(headers["cache-control"], "max-age=0");
    issuer.set_max_age(86_400);
    let (_, headers, _) = get_json(&issuer.jwks_uri()).await;
    assert_eq!(headers["cache-control"], "max-age=86400");
}

/// Unknown paths answer 404 JSON; the GET endpoints refuse other methods with 405.
#[tokio::test]
async fn unknown_path_404_and_wrong_method_405() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    let (status, headers, body) = get_json(&format!("{}/authorize", issuer.issuer())).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"], "not_found");
    let response = client().post(issuer.jwks_uri()).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(issuer.jwks_requests(), 0);
}

/// After shutdown() the port refuses connections; dropping the handle stops the server too.
#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    let uri = issuer.jwks_uri();
    served_jwks(&issuer).await;
    issuer.shutdown().await;
    assert!(client().get(&uri).send().await.is_err());

    let issuer = DevIssuer::start(loopback(), vec![Arc::new(SigningKey::ed25519("ed"))]).await.unwrap();
    let addr = issuer.local_addr();
    drop(issuer);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Constructors refuse an algorithm that does not fit the key type.
#[test]
#[should_panic(expected = "not an RSA algorithm")]
fn rsa_constructor_rejects_non_rsa_alg() {
    SigningKey::rsa("k", Algorithm::ES256);
}

/// ES512 does not exist in jsonwebtoken; ec() accepts only ES256 and ES384.
#[test]
#[should_panic(expected = "not ES256 or ES384")]
fn ec_constructor_rejects_other_algs() {
    SigningKey::ec("k", Algorithm::EdDSA);
}

//! The OAuth endpoints (token, introspection, revocation, metadata) over real loopback HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::{basic_authorization, DevClient, DevIssuer, IntrospectionMode, SigningKey, TokenFormat, REALM};

/// A secret that needs form-urlencoding inside Basic (RFC 6749 §2.3.1).
const JWT_SECRET: &str = "s3cret: +&%";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn es256() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(SigningKey::ec("es256-a", Algorithm::ES256))))
}

fn jwt_client() -> DevClient {
    DevClient::new("jwt-client", JWT_SECRET).with_scopes(&["read", "write", "admin"]).with_audiences(&["api", "other"])
}

fn opaque_client() -> DevClient {
    DevClient::new("opaque-client", "opaque-secret")
        .with_scopes(&["read"])
        .with_format(TokenFormat::Opaque)
        .with_lifetime(Duration::from_secs(300))
}

fn resource_server() -> DevClient {
    DevClient::new("rs", "rs-secret")
}

async fn start() -> DevIssuer {
    DevIssuer::builder()
        .keys(vec![es256()])
        .clients([jwt_client(), opaque_client(), resource_server()])
        .start(loopback())
        .await
        .unwrap()
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    None,
}

const JWT_BASIC: Auth<'static> = Auth::Basic("jwt-client", JWT_SECRET);
const RS_BASIC: Auth<'static> = Auth::Basic("rs", "rs-secret");

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post(url: &str, auth: Auth<'_>, params: &[(&str, &str)]) -> Answer {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    let mut request = reqwest::Client::builder().no_proxy().build().unwrap().post(url);
    match auth {
        Auth::Basic(id, secret) => request = request.header("authorization", basic_authorization(id, secret)),
        Auth::Post(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
        Auth::None => {}
    }
    let response = request.form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    Answer { status, headers, body }
}

async fn token(issuer: &DevIssuer, auth: Auth<'_>, params: &[(&str, &str)]) -> Answer {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(params);
    post(&issuer.token_endpoint(), auth, &form).await
}

async fn access_token(issuer: &DevIssuer, auth: Auth<'_>, params: &[(&str, &str)]) -> String {
    let answer = token(issuer, auth, params).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

async fn introspect(issuer: &DevIssuer, token: &str) -> Value {
    let answer = post(&issuer.introspection_endpoint(), RS_BASIC, &[("token", token)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

fn assert_error(answer: &Answer, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    assert_eq!(answer.headers["cache-control"], "no-store");
}

/// Verify a JWT as a relying party would: against the JWK the issuer serves for its kid.
async fn verify_with_served_jwks(issuer: &DevIssuer, token: &str, audience: &str) -> jsonwebtoken::TokenData<Value> {
    let jwks: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(issuer.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer.issuer()]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap()
}

/// client_secret_basic: an RFC 6749 §5.1 response with all allowed scopes by default and Cache-Control: no-store.
#[tokio::test]
async fn client_credentials_with_basic() {
    let issuer = start().await;
    let answer = token(&issuer, JWT_BASIC, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["pragma"], "no-cache");
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["expires_in"], 3600);
    assert_eq!(answer.body["scope"], "read write admin");
    assert!(answer.body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
}

/// client_secret_post: credentials in the form body work the same way.
#[tokio::test]
async fn client_credentials_with_post() {
    let issuer = start().await;
    let answer = token(&issuer, Auth::Post("jwt-client", JWT_SECRET), &[("scope", "read")]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["scope"], "read");
    let claims = verify_with_served_jwks(&issuer, answer.body["access_token"].as_str().unwrap(), "api").await.claims;
    assert_eq!(claims["client_id"], "jwt-client");
}

/// A JWT access token verifies against the served JWKS, has typ at+jwt, aud from resource and the requested scope subset.
#[tokio::test]
async fn jwt_token_is_rfc9068_and_verifies_against_jwks() {
    let issuer = start().await;
    let params = [("scope", "write  read write"), ("resource", "other")];
    let jwt = access_token(&issuer, JWT_BASIC, &params).await;
    let data = verify_with_served_jwks(&issuer, &jwt, "other").await;
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(data.header.kid.as_deref(), Some("es256-a"));
    let c = data.claims;
    assert_eq!(
        (&c["iss"], &c["sub"], &c["client_id"]),
        (&json!(issuer.issuer()), &json!("jwt-client"), &json!("jwt-client"))
    );
    assert_eq!(c["aud"], "other");
    assert_eq!(c["scope"], "write read");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 3600);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // Without resource, the client's first audience; with two, both.
    let default = access_token(&issuer, JWT_BASIC, &[]).await;
    assert_eq!(verify_with_served_jwks(&issuer, &default, "api").await.claims["aud"], "api");
    let both = access_token(&issuer, JWT_BASIC, &[("resource", "api"), ("resource", "other")]).await;
    assert_eq!(verify_with_served_jwks(&issuer, &both, "api").await.claims["aud"], json!(["api", "other"]));
}

/// token_format opaque: ≥ 32 random bytes base64url, not a JWT, meaningful through introspection.
#[tokio::test]
async fn opaque_token_format() {
    let issuer = start().await;
    let answer = token(&issuer, Auth::Basic("opaque-client", "opaque-secret"), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["expires_in"], 300);
    let opaque = answer.body["access_token"].as_str().unwrap();
    assert!(opaque.len() >= 43 && !opaque.contains('.'), "{opaque}");
    assert!(opaque.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let other = access_token(&issuer, Auth::Basic("opaque-client", "opaque-secret"), &[]).await;
    assert_ne!(opaque, other);
    let info = introspect(&issuer, opaque).await;
    assert_eq!(info["active"], true);
    assert_eq!(
        (&info["client_id"], &info["scope"], &info["aud"]),
        (&json!("opaque-client"), &json!("read"), &json!("api"))
    );
}

/// invalid_client (wrong secret, unknown client, no credentials, bad Basic) is 401 with a Basic challenge.
#[tokio::test]
async fn invalid_client_is_401_with_basic_challenge() {
    let issuer = start().await;
    let challenge = format!("Basic realm=\"{REALM}\"");
    for auth in [
        Auth::Basic("jwt-client", "wrong"),
        Auth::Basic("nobody", JWT_SECRET),
        Auth::Post("jwt-client", "wrong"),
        Auth::Post("nobody", "x"),
        Auth::None,
    ] {
        let answer = token(&issuer, auth, &[]).await;
        assert_error(&answer, 401, "invalid_client");
        assert_eq!(answer.headers["www-authenticate"], challenge.as_str());
    }
    // Basic without the RFC 6749 §2.3.1 form-urlencoding of the secret does not match.
    let raw = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = raw
        .post(issuer.token_endpoint())
        .basic_auth("jwt-client", Some(JWT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Using Basic and client_secret_post at once, a repeated parameter or a non-form body is invalid_request.
#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let issuer = start().await;
    let both = token(&issuer, JWT_BASIC, &[("client_secret", JWT_SECRET)]).await;
    assert_error(&both, 400, "invalid_request");
    let repeated = token(&issuer, JWT_BASIC, &[("scope", "read"), ("scope", "write")]).await;
    assert_error(&repeated, 400, "invalid_request");
    let missing = post(&issuer.token_endpoint(), JWT_BASIC, &[]).await;
    assert_error(&missing, 400, "invalid_request");
    let json_body = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(issuer.token_endpoint())
        .header("authorization", basic_authorization("jwt-client", JWT_SECRET))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
}

/// A grant type other than client_credentials is unsupported_grant_type.
#[tokio::test]
async fn unsupported_grant_type() {
    let issuer = start().await;
    let answer = post(&issuer.token_endpoint(), JWT_BASIC, &[("grant_type", "password"), ("username", "u")]).await;
    assert_error(&answer, 400, "unsupported_grant_type");
}

/// A scope outside the client's allowed scopes (or an empty scope) is invalid_scope.
#[tokio::test]
async fn invalid_scope() {
    let issuer = start().await;
    assert_error(&token(&issuer, JWT_BASIC, &[("scope", "read delete")]).await, 400, "invalid_scope");
    assert_error(&token(&issuer, JWT_BASIC, &[("scope", "   ")]).await, 400, "invalid_scope");
}

/// A resource that is not one of the client's audiences is invalid_target (RFC 8707 §2).
#[tokio::test]
async fn invalid_target() {
    let issuer = start().await;
    let answer = token(&issuer, JWT_BASIC, &[("resource", "api"), ("resource", "https://elsewhere.example")]).await;
    assert_error(&answer, 400, "invalid_target");
}

/// Introspecting a live JWT is active with its claims; after the issuer's clock passes exp it is inactive.
#[tokio::test]
async fn introspect_jwt_active_then_expired() {
    let issuer = start().await;
    let jwt = access_token(&issuer, JWT_BASIC, &[("scope", "read"), ("resource", "other")]).await;
    let info = introspect(&issuer, &jwt).await;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&jwt).unwrap().claims;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "Bearer");
    for name in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti"] {
        assert_eq!(info[name], claims[name], "{name}");
    }
    // Steps far from a second boundary: the real clock keeps ticking underneath the offset.
    issuer.advance_clock(Duration::from_secs(3000));
    assert_eq!(introspect(&issuer, &jwt).await["active"], true);
    issuer.advance_clock(Duration::from_secs(600));
    assert_eq!(introspect(&issuer, &jwt).await, json!({ "active": false }));
}

/// Minted tokens introspect as active too; forged, foreign-issuer and garbage tokens are inactive.
#[tokio::test]
async fn introspect_minted_forged_and_unknown_tokens() {
    let issuer = start().await;
    let minted = issuer.mint(json!({ "sub": "alice", "client_id": "jwt-client", "scope": "read" }));
    assert_eq!(introspect(&issuer, &minted).await["sub"], "alice");
    let foreign = issuer.mint(json!({ "iss": "https://other.example" }));
    let other_key = SigningKey::ec("es256-a", Algorithm::ES256);
    let forged = other_key.sign_raw(
        &json!({ "alg": "ES256", "kid": "es256-a", "typ": "at+jwt" }),
        &json!({ "iss": issuer.issuer(), "exp": u64::MAX / 2 }),
    );
    let no_typ = es256().sign_raw(
        &json!({ "alg": "ES256", "kid": "es256-a" }),
        &json!({ "iss": issuer.issuer(), "exp": 4_000_000_000u64 }),
    );
    for token in [foreign.as_str(), &forged, &no_typ, "not-a-token", "a.b.c"] {
        assert_eq!(introspect(&issuer, token).await, json!({ "active": false }), "{token}");
    }
}

/// Opaque tokens: active while live, inactive after expiry and after revocation.
#[tokio::test]
async fn introspect_opaque_expiry_and_revocation() {
    let issuer = start().await;
    let auth = Auth::Basic("opaque-client", "opaque-secret");
    let first = access_token(&issuer, auth, &[]).await;
    let second = access_token(&issuer, auth, &[]).await;
    assert_eq!(introspect(&issuer, &first).await["active"], true);
    let revoked =
        post(&issuer.revocation_endpoint(), auth, &[("token", &first), ("token_type_hint", "access_token")]).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(introspect(&issuer, &first).await, json!({ "active": false }));
    assert_eq!(introspect(&issuer, &second).await["active"], true);
    issuer.advance_clock(Duration::from_secs(300));
    assert_eq!(introspect(&issuer, &second).await, json!({ "active": false }));
}

/// A revoked JWT (by jti) introspects inactive while other tokens of the client stay active.
#[tokio::test]
async fn revoked_jwt_is_inactive() {
    let issuer = start().await;
    let jwt = access_token(&issuer, JWT_BASIC, &[]).await;
    let kept = access_token(&issuer, JWT_BASIC, &[]).await;
    let answer = post(&issuer.revocation_endpoint(), Auth::Post("jwt-client", JWT_SECRET), &[("token", &jwt)]).await;
    assert_eq!((answer.status, &answer.body), (200, &Value::Null));
    assert_eq!(introspect(&issuer, &jwt).await, json!({ "active": false }));
    assert_eq!(introspect(&issuer, &kept).await["active"], true);
}

/// A client may not revoke another client's token (RFC 7009 §2.1); the token stays active.
#[tokio::test]
async fn revoking_another_clients_token_is_refused() {
    let issuer = start().await;
    let jwt = access_token(&issuer, JWT_BASIC, &[]).await;
    let answer = post(&issuer.revocation_endpoint(), RS_BASIC, &[("token", &jwt)]).await;
    assert_error(&answer, 400, "unauthorized_client");
    assert_eq!(introspect(&issuer, &jwt).await["active"], true);
}

/// Introspection and revocation without client authentication are 401 invalid_client.
#[tokio::test]
async fn introspect_and_revoke_require_client_auth() {
    let issuer = start().await;
    let jwt = access_token(&issuer, JWT_BASIC, &[]).await;
    for url in [issuer.introspection_endpoint(), issuer.revocation_endpoint()] {
        let answer = post(&url, Auth::None, &[("token", &jwt)]).await;
        assert_error(&answer, 401, "invalid_client");
        assert!(answer.headers.contains_key("www-authenticate"));
        assert_error(&post(&url, Auth::Basic("rs", "nope"), &[("token", &jwt)]).await, 401, "invalid_client");
        assert_error(&post(&url, RS_BASIC, &[]).await, 400, "invalid_request");
    }
    assert_eq!(introspect(&issuer, &jwt).await["active"], true);
}

/// Revoking an unknown or malformed token answers 200 (RFC 7009 §2.2).
#[tokio::test]
async fn revoke_unknown_token_is_200() {
    let issuer = start().await;
    for token in ["never-issued", "a.b.c"] {
        let answer = post(&issuer.revocation_endpoint(), RS_BASIC, &[("token", token)]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["cache-control"], "no-store");
    }
}

/// Introspection failure modes (status, garbage, delay) apply until reset; every request is counted.
#[tokio::test]
async fn introspection_failure_modes_and_counter() {
    let issuer = start().await;
    let jwt = access_token(&issuer, JWT_BASIC, &[]).await;
    assert_eq!(issuer.introspection_requests(), 0);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = || {
        http.post(issuer.introspection_endpoint())
            .header("authorization", basic_authorization("rs", "rs-secret"))
            .form(&[("token", jwt.as_str())])
            .send()
    };
    issuer.set_introspection_mode(IntrospectionMode::Status(503));
    assert_eq!(send().await.unwrap().status(), 503);
    issuer.set_introspection_mode(IntrospectionMode::Garbage);
    let garbage = send().await.unwrap();
    assert_eq!(garbage.status(), 200);
    assert!(serde_json::from_str::<Value>(&garbage.text().await.unwrap()).is_err());
    issuer.set_introspection_mode(IntrospectionMode::Delay(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let slow: Value = send().await.unwrap().json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow["active"], true);
    issuer.set_introspection_mode(IntrospectionMode::Normal);
    assert_eq!(introspect(&issuer, &jwt).await["active"], true);
    assert_eq!(issuer.introspection_requests(), 4);
}

/// An impossible status code in a failure mode is a bug in the test: it panics.
#[tokio::test]
#[should_panic(expected = "is not an HTTP status")]
async fn introspection_mode_rejects_impossible_status() {
    start().await.set_introspection_mode(IntrospectionMode::Status(42));
}

/// After set_keys, new tokens use the new first key; old tokens stay active while their key is published.
#[tokio::test]
async fn rotation_keeps_issued_tokens_working_while_published() {
    let issuer = start().await;
    let old = access_token(&issuer, JWT_BASIC, &[]).await;
    let next = Arc::new(SigningKey::ed25519("ed-b"));
    issuer.set_keys(vec![Arc::clone(&next), es256()]);
    let new = access_token(&issuer, JWT_BASIC, &[]).await;
    assert_eq!(jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(), Some("ed-b"));
    assert_eq!(introspect(&issuer, &old).await["active"], true);
    assert_eq!(introspect(&issuer, &new).await["active"], true);
    issuer.set_keys(vec![next]);
    assert_eq!(introspect(&issuer, &old).await, json!({ "active": false }));
    assert_eq!(introspect(&issuer, &new).await["active"], true);
}

/// Metadata names the token, introspection and revocation endpoints, the grant, the auth methods and the scopes.
#[tokio::test]
async fn metadata_advertises_oauth_endpoints() {
    let issuer = start().await;
    let url = format!("{}/.well-known/oauth-authorization-server", issuer.issuer());
    let meta: Value =
        reqwest::Client::builder().no_proxy().build().unwrap().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["token_endpoint"], issuer.token_endpoint());
    assert_eq!(meta["introspection_endpoint"], issuer.introspection_endpoint());
    assert_eq!(meta["revocation_endpoint"], issuer.revocation_endpoint());
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(meta["token_endpoint_auth_methods_supported"], json!(["client_secret_basic", "client_secret_post"]));
    assert_eq!(meta["scopes_supported"], json!(["admin", "read", "write"]));
}

/// GET on the OAuth endpoints is 405 with Allow: POST.
#[tokio::test]
async fn oauth_endpoints_are_post_only() {
    let issuer = start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for url in [issuer.token_endpoint(), issuer.introspection_endpoint(), issuer.revocation_endpoint()] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 405, "{url}");
        assert_eq!(response.headers()["allow"], "POST");
    }
}

/// The builder's issuer override becomes iss and the metadata base; a bad client list refuses to start.
#[tokio::test]
async fn builder_issuer_override_and_client_validation() {
    let issuer = DevIssuer::builder()
        .keys(vec![es256()])
        .client(jwt_client())
        .issuer("https://dev-idp.example/")
        .start(loopback())
        .await
        .unwrap();
    assert_eq!(issuer.issuer(), "https://dev-idp.example");
    let base = format!("http://{}", issuer.local_addr());
    let answer = post(&format!("{base}/token"), JWT_BASIC, &[("grant_type", "client_credentials")]).await;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(answer.body["access_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], "https://dev-idp.example");
    let error = DevIssuer::builder().clients([jwt_client(), jwt_client()]).start(loopback()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

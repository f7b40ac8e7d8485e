//! Micro-benchmarks of the per-request work tokengate adds in front of the upstream.
//!
//! `cargo bench --bench auth` (add `-- --quick` for a short run). Keys are generated at start
//! with the dev issuer's `SigningKey`. Only the introspection benchmark uses the network: the
//! dev issuer on loopback answers the one call that fills the cache.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokengate::auth::keyset::KeySet;
use tokengate::auth::token_cache::{LastToken, TokenCache};
use tokengate::auth::{extract, jws, jwt, policy, Principal};
use tokengate::clock::Clock;
use tokengate::config::{
    ClaimRule, ClaimTest, Identity, Issuer, KeySource, Policy, TokenCacheSettings, TokenSettings, DEFAULT_ALGORITHMS,
};
use tokengate::dev_issuer::SigningKey;
use tokengate::proxy::headers::{self, IdentityNames, IdentityValues, Untrusted};

const ISS: &str = "https://idp.example.com";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn issuer() -> Issuer {
    Issuer { audiences: vec!["api".into()], ..Issuer::new(ISS, KeySource::JwksUri(format!("{ISS}/jwks"))) }
}

/// Claims shaped like a typical access token.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISS, "sub": "248289761001", "aud": "api", "client_id": "s6BhdRkqt3",
        "scope": "openid profile read write", "iat": now, "exp": now + 3600,
        "jti": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "tenant": "acme"
    })
}

struct Keys {
    keys: Vec<SigningKey>,
    set: KeySet,
}

fn keys() -> Keys {
    let keys = vec![
        SigningKey::rsa("rs", Algorithm::RS256),
        SigningKey::rsa("ps", Algorithm::PS256),
        SigningKey::ec("es", Algorithm::ES256),
        SigningKey::ed25519("ed"),
    ];
    let doc = json!({ "keys": keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>() });
    let set = KeySet::from_jwks(doc.to_string().as_bytes(), DEFAULT_ALGORITHMS).unwrap();
    Keys { keys, set }
}

fn token(key: &SigningKey) -> String {
    let alg = serde_json::to_value(key.alg).unwrap();
    key.sign_raw(&json!({"alg": alg, "kid": key.kid, "typ": "at+jwt"}), &claims())
}

fn principal() -> Principal {
    let Value::Object(map) = claims() else { unreachable!() };
    Principal::from_claims(0, Arc::from(ISS), map, &Default::default())
}

fn request_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("content-type", "application/json"),
        ("x-request-id", "0f8c4e1a-3b2d-4c5e-9f7a-1b2c3d4e5f60"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

fn bench_extract(c: &mut Criterion, keys: &Keys) {
    let settings = TokenSettings { allow_query: false, allow_form_body: false, max_token_bytes: 16 * 1024 };
    let headers = request_headers(&token(&keys.keys[0]));
    c.bench_function("extract/bearer_header", |b| {
        b.iter(|| extract::bearer(black_box(&headers), None, None, &settings).unwrap().unwrap().len())
    });
}

fn bench_verify_cold(c: &mut Criterion, keys: &Keys) {
    let issuer = issuer();
    let id: Arc<str> = Arc::from(ISS);
    for key in &keys.keys {
        let token = token(key);
        c.bench_function(&format!("jwt/cold/{:?}", key.alg), |b| {
            b.iter(|| {
                let jws = jws::parse(black_box(&token)).unwrap();
                jwt::verify(jws, &keys.set, &issuer, 0, id.clone(), now()).unwrap()
            })
        });
    }
}

/// A cache hit: SHA-256 of the token, one cache lookup, the generation and clock checks; and the
/// connection's remembered last token (a full comparison instead of the digest and lookup).
fn bench_verify_cached(c: &mut Criterion, keys: &Keys) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let settings = TokenCacheSettings { enabled: true, max_entries: 100_000, max_bytes: 64 << 20 };
    let metrics = tokengate::metrics::Metrics::new();
    let cache = TokenCache::new(&settings, &metrics.token_cache_lookups, Clock::system()).unwrap();
    let issuer = issuer();
    let id: Arc<str> = Arc::from(ISS);
    for key in &keys.keys {
        let token = token(key);
        let verify = || async {
            let jws = jws::parse(&token)?;
            Ok((jwt::verify(jws, &keys.set, &issuer, 0, id.clone(), now())?, 1))
        };
        let last = LastToken::default();
        rt.block_on(cache.admit(&token, &last, |_| 1, verify)).unwrap();
        c.bench_function(&format!("jwt/cached/{:?}", key.alg), |b| {
            b.to_async(&rt).iter(|| async {
                let fresh = LastToken::default();
                cache.admit(black_box(&token), &fresh, |_| 1, || async { unreachable!("a cache hit") }).await.unwrap()
            })
        });
        c.bench_function(&format!("jwt/remembered/{:?}", key.alg), |b| {
            b.iter(|| cache.remembered(black_box(&token), &last, |_| 1).unwrap())
        });
    }
}

fn bench_policy(c: &mut Criterion) {
    let p = principal();
    let policy = Policy {
        audiences: None,
        scopes: vec!["read".into(), "write".into()],
        claims: vec![ClaimRule {
            claim: tokengate::config::ClaimPath::top("tenant"),
            test: ClaimTest::Equals(json!("acme")),
        }],
        ..Policy::default()
    };
    let issuer = issuer();
    c.bench_function("policy/authorize", |b| b.iter(|| policy::authorize(black_box(&p), &policy, &issuer).unwrap()));
}

fn bench_headers(c: &mut Criterion, keys: &Keys) {
    let identity = Identity { headers: Identity::default_headers(), claims_header: None, forward_authorization: true };
    let names = IdentityNames::new(&identity);
    let p = principal();
    let template = request_headers(&token(&keys.keys[0]));
    // Per request: the identity values were rendered when the connection first saw the principal.
    let values = IdentityValues::render(&p, &identity).unwrap();
    c.bench_function("headers/rewrite", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| {
                headers::strip_hop_by_hop(h);
                headers::strip_client(h, &names, Untrusted { forwarding: true, method_override: false });
                values.apply(h);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("headers/render_identity", |b| {
        b.iter(|| IdentityValues::render(black_box(&p), &identity).unwrap())
    });
}

fn bench_metrics(c: &mut Criterion) {
    let m = tokengate::metrics::Metrics::new();
    // What the request path did before RouteMetrics: hash the labels and lock the vec each time.
    c.bench_function("metrics/record_request", |b| {
        b.iter(|| {
            m.requests.with_label_values(&[black_box("api"), "allowed", http::StatusCode::OK.as_str()]).inc();
            m.duration.with_label_values(&[black_box("api")]).observe(0.000_1);
        })
    });
    let route = m.route("api");
    let elapsed = std::time::Duration::from_micros(100);
    c.bench_function("metrics/record_request_resolved", |b| {
        b.iter(|| route.record(black_box("allowed"), black_box(http::StatusCode::OK), elapsed, None))
    });
}

/// An introspection cache hit: SHA-256 of the token, one moka lookup, the verdict's principal
/// shared (no copy). The dev issuer on loopback answers the one call that fills the cache.
fn bench_introspection_cached(c: &mut Criterion) {
    use tokengate::auth::introspect::Introspector;
    use tokengate::auth::KeptClaims;
    use tokengate::config::{ClientAuthMethod, Introspection, Secret, TokenMode};
    use tokengate::dev_issuer::{DevClient, DevIssuer, TokenFormat};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_idp, introspector, token) = rt.block_on(async {
        let idp = DevIssuer::builder()
            .keys(vec![Arc::new(SigningKey::rsa("k1", Algorithm::RS256))])
            .client(DevClient::new("app", "app-secret").with_scopes(&["read"]).with_format(TokenFormat::Opaque))
            .client(DevClient::new("gateway", "gateway-secret"))
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let token = idp.client_credentials("app", "app-secret", &[]).await;
        let issuer = Issuer {
            mode: TokenMode::Introspection,
            introspection: Some(Introspection {
                endpoint: Some(idp.introspection_endpoint()),
                client_id: "gateway".into(),
                client_secret: Secret(b"gateway-secret".to_vec()),
                auth_method: ClientAuthMethod::ClientSecretBasic,
                protocol: Default::default(),
                timeout: std::time::Duration::from_secs(2),
                cache_max_ttl: std::time::Duration::from_secs(600),
                negative_ttl: std::time::Duration::from_secs(60),
                cache_capacity: 10_000,
                cache_max_bytes: 16 << 20,
                max_concurrent: 64,
                rate_limit: 1e9,
                rate_burst: u32::MAX,
                breaker_failures: 5,
                breaker_open_for: std::time::Duration::from_secs(10),
            }),
            ..Issuer::new(idp.issuer(), KeySource::None)
        };
        let metrics = tokengate::metrics::Metrics::new();
        let id: Arc<str> = Arc::from(idp.issuer());
        let introspector =
            Introspector::new(&issuer, 0, id, reqwest::Client::new(), 1 << 16, &metrics, KeptClaims::Only(vec![]))
                .unwrap();
        introspector.introspect(&token).await.expect("the opaque token is active");
        (idp, introspector, token)
    });
    c.bench_function("introspection/cached", |b| {
        b.to_async(&rt).iter(|| async { introspector.introspect(black_box(&token)).await.unwrap() })
    });
}

fn benches(c: &mut Criterion) {
    let keys = keys();
    bench_extract(c, &keys);
    bench_verify_cold(c, &keys);
    bench_verify_cached(c, &keys);
    bench_introspection_cached(c);
    bench_policy(c);
    bench_headers(c, &keys);
    bench_metrics(c);
}

criterion_group!(auth, benches);
criterion_main!(auth);

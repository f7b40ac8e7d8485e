//! Introspection answers (RFC 7662 §2.2): `Introspector::judge_answer`, the parse-and-judge half
//! of an introspection call, on the body of a 200 answer.
//!
//! Input: the answer body.
//!
//! Checked: only a JSON `true` in `active` admits, and only in an object without duplicate
//! member names; `false` is inactive; anything else is a failed call, never an admission;
//! an admitted answer is within its `exp`/`nbf` and names this issuer or none; `active` is not
//! kept as a claim.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokengate::auth::introspect::Introspector;
use tokengate::auth::{AuthError, KeptClaims};
use tokengate::config::{ClientAuthMethod, Introspection, Issuer, KeySource, Secret, TokenMode};
use tokengate::metrics::Metrics;

const ISS: &str = "https://as.example/";
const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 30;

fn introspector() -> &'static Introspector {
    static INTROSPECTOR: OnceLock<Introspector> = OnceLock::new();
    INTROSPECTOR.get_or_init(|| {
        let settings = Introspection {
            endpoint: Some(format!("{ISS}introspect")),
            client_id: "gateway".into(),
            client_secret: Secret(b"secret".to_vec()),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            protocol: Default::default(),
            timeout: Duration::from_secs(1),
            cache_max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            cache_capacity: 10,
            cache_max_bytes: 1 << 20,
            max_concurrent: 4,
            rate_limit: 100.0,
            rate_burst: 100,
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(10),
        };
        let issuer = Issuer {
            mode: TokenMode::Introspection,
            introspection: Some(settings),
            leeway: Duration::from_secs(LEEWAY),
            ..Issuer::new(ISS, KeySource::None)
        };
        // Never used: judge_answer makes no call.
        let http = reqwest::Client::builder().no_proxy().build().expect("a client");
        Introspector::new(&issuer, 0, Arc::from(ISS), http, 64 * 1024, &Metrics::new(), KeptClaims::All)
            .expect("an introspection issuer")
    })
}

fuzz_target!(|body: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let judged = introspector().judge_answer(body, now);
    let model: Option<Map<String, Value>> = tokengate::auth::jws::strict_object(body);
    let active = model.as_ref().and_then(|m| m.get("active"));
    match (&judged, active) {
        (Ok(principal), Some(Value::Bool(true))) => {
            let model = model.as_ref().unwrap();
            assert!(!principal.claims.contains_key("active"));
            if let Some(exp) = model.get("exp") {
                let exp = exp.as_f64().expect("a numeric exp");
                assert!(exp.floor() + LEEWAY as f64 >= NOW as f64, "expired answer admitted");
            }
            if let Some(nbf) = model.get("nbf") {
                assert!((NOW + LEEWAY) as f64 >= nbf.as_f64().expect("a numeric nbf").ceil());
            }
            assert!(model.get("iss").is_none_or(|iss| iss == ISS));
        }
        (Ok(_), _) => panic!("admitted without `active: true`"),
        (Err(e), Some(Value::Bool(false))) => assert_eq!(*e, AuthError::InvalidToken("token is not active")),
        (Err(e), Some(Value::Bool(true))) => assert!(matches!(e, AuthError::InvalidToken(_)), "{e:?}"),
        (Err(e), _) => assert_eq!(*e, AuthError::Unavailable("token introspection failed")),
    }
    assert_eq!(introspector().judge_answer(body, now).err(), judged.err());
});

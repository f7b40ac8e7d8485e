//! Introspection answers (RFC 7662 §2.2): any body, however odd its JSON, is judged without a
//! panic; only a JSON `true` in `active` admits, and an admitted answer passed the claim checks.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokengate::auth::introspect::Introspector;
use tokengate::auth::{AuthError, KeptClaims};
use tokengate::config::{ClientAuthMethod, Introspection, Issuer, KeySource, Secret, TokenMode};
use tokengate::metrics::Metrics;

use crate::{cases, json_number, json_value, member_name};

const ISS: &str = "https://as.example/";
const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 30;

/// One introspector, never called over the network: only `judge_answer` is used.
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
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Introspector::new(&issuer, 0, Arc::from(ISS), http, 64 * 1024, &Metrics::new(), KeptClaims::All).unwrap()
    })
}

fn judge(body: &[u8]) -> Result<Arc<tokengate::auth::Principal>, AuthError> {
    introspector().judge_answer(body, UNIX_EPOCH + Duration::from_secs(NOW))
}

/// Values for the members the judgement reads: right ones, near misses, wrong JSON types.
fn member_value(name: &str) -> BoxedStrategy<Value> {
    let near_now = (-100i64..100).prop_map(|d| json!(NOW as i64 + d));
    match name {
        "active" => prop::sample::select(vec![
            json!(true),
            json!(false),
            json!("true"),
            json!(1),
            json!(0),
            json!(null),
            json!([true]),
            json!({"active": true}),
        ])
        .boxed(),
        "exp" | "nbf" => prop_oneof![json_number(), near_now, json_value()].boxed(),
        "iss" => prop_oneof![Just(json!(ISS)), Just(json!("https://other.example/")), json_value()].boxed(),
        "token_type" => prop_oneof![
            prop::sample::select(&["Bearer", "bearer", "access_token", "refresh_token", "N_A", ""][..])
                .prop_map(|s| json!(s)),
            json_value(),
        ]
        .boxed(),
        _ => json_value().boxed(),
    }
}

/// An answer as text: members in order, duplicates allowed (`{"active":false,"active":true}`).
fn answer() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        3 => prop::sample::select(&["active", "exp", "nbf", "iss", "token_type", "sub", "aud", "scope", "scp"][..])
            .prop_flat_map(|n| member_value(n).prop_map(move |v| (n.to_owned(), v))),
        1 => (member_name(), json_value()),
    ];
    prop::collection::vec(member, 0..8).prop_map(|members| {
        let members: Vec<String> = members.iter().map(|(n, v)| format!("{}:{v}", json!(n))).collect();
        format!("{{{}}}", members.join(","))
    })
}

/// A body that is not an answer: any text, truncated answers, numbers beyond f64.
fn non_answer() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "\\PC{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
        (answer(), any::<prop::sample::Index>()).prop_map(|(a, i)| a.as_bytes()[..i.index(a.len() + 1)].to_vec()),
        prop::sample::select(&["1e400", "-1e400", "123456789012345678901234567890", "-0", "1e-400"][..])
            .prop_map(|n| format!(r#"{{"active":true,"exp":{n}}}"#).into_bytes()),
    ]
}

/// The checks an admitted answer passed.
fn check_admitted(model: &Map<String, Value>, principal: &tokengate::auth::Principal) -> Result<(), TestCaseError> {
    prop_assert_eq!(model.get("active"), Some(&json!(true)));
    prop_assert!(!principal.claims.contains_key("active"), "`active` is not a claim");
    if let Some(exp) = model.get("exp") {
        let exp = exp.as_f64().expect("a numeric exp");
        prop_assert!(exp.floor() + LEEWAY as f64 >= NOW as f64, "expired exp {} admitted", exp);
        prop_assert_eq!(principal.expires_at, exp.max(0.0) as u64);
    }
    if let Some(nbf) = model.get("nbf") {
        prop_assert!((NOW + LEEWAY) as f64 >= nbf.as_f64().expect("a numeric nbf").ceil());
    }
    prop_assert!(model.get("iss").is_none_or(|iss| iss == ISS));
    Ok(())
}

fn check_any(body: &[u8]) -> Result<(), TestCaseError> {
    let judged = judge(body);
    // Duplicate member names make a body no answer at all (one body, one meaning).
    let model = tokengate::auth::jws::strict_object(body).ok_or(());
    if serde_json::from_slice::<Map<String, Value>>(body).is_ok() && model.is_err() {
        prop_assert_eq!(judged.as_ref().err(), Some(&AuthError::Unavailable("token introspection failed")));
    }
    match (&judged, model.as_ref().map(|m| m.get("active"))) {
        (Ok(principal), Ok(_)) => check_admitted(model.as_ref().unwrap(), principal)?,
        (Ok(_), Err(_)) => prop_assert!(false, "a body that is not a JSON object with unique members admitted"),
        // RFC 7662 §2.2: `false` means inactive (401); a missing or non-boolean `active` is a
        // broken endpoint (503), never an admission.
        (Err(e), Ok(Some(Value::Bool(false)))) => prop_assert_eq!(*e, AuthError::InvalidToken("token is not active")),
        (Err(e), Ok(Some(Value::Bool(true)))) => prop_assert!(matches!(e, AuthError::InvalidToken(_)), "{e:?}"),
        (Err(e), _) => prop_assert_eq!(*e, AuthError::Unavailable("token introspection failed")),
    }
    prop_assert_eq!(judge(body).err(), judged.err());
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any answer, duplicates (refused) and extreme numbers included, is judged consistently.
    #[test]
    fn answers_are_judged_by_their_active_member(body in answer()) {
        check_any(body.as_bytes())?;
    }

    /// Bodies that are not answers are never admitted and never panic.
    #[test]
    fn non_answers_are_never_admitted(body in non_answer()) {
        check_any(&body)?;
    }

    /// Positive control: a plain active answer within its lifetime admits.
    #[test]
    fn a_valid_answer_admits(ttl in 0..100_000u64, sub in "[a-z]{1,8}") {
        let body = json!({"active": true, "exp": NOW + ttl, "iss": ISS, "sub": sub, "token_type": "Bearer"});
        let principal = judge(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(principal.subject.as_deref(), Some(sub.as_str()));
        prop_assert_eq!(principal.expires_at, NOW + ttl);
    }
}

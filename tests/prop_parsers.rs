//! Property tests for the parsers of untrusted input (issue 9, "Trust boundary"): bearer
//! extraction, JWS, JWKS, introspection answers, config text and claim paths, through their public entry
//! points. Every property runs a bounded number of cases so the file stays CI-fast; the `fuzz/`
//! crate explores the same entry points without bounds.
//!
//! Each property says more than "does not panic": it names what an accepted input must look like,
//! and a positive control shows the parser is not simply refusing everything.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

#[path = "prop_parsers/claim_path.rs"]
mod claim_path;
#[path = "prop_parsers/config.rs"]
mod config;
#[path = "prop_parsers/extract.rs"]
mod extract;
#[path = "prop_parsers/introspect.rs"]
mod introspect;
#[path = "prop_parsers/jwks.rs"]
mod jwks;
#[path = "prop_parsers/jws.rs"]
mod jws;

/// `cases` per property; no forking, no persistence beyond proptest's regression files.
pub fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Member names that collide with the ones the parsers look for, and some that do not.
pub fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "alg", "kid", "typ", "crit", "jku", "jwk", "x5u", "x5c", "iss", "sub", "exp", "nbf", "aud", "scope",
            "scp", "active", "token_type", "client_id", "azp", "username", "kty", "use", "key_ops", "n", "e", "crv",
            "x", "y", "k", "keys",
        ][..])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,6}",
    ]
}

/// A JSON number at the edges: integers of both signs and widths, finite floats, extremes.
pub fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        prop::sample::select(&[0.0, -0.0, 0.5, -1.5, 1e300, -1e300, f64::MAX, f64::MIN, f64::EPSILON][..])
            .prop_map(Value::from),
    ]
}

/// Any JSON value, three levels deep at most.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        member_name().prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((member_name(), inner), 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object of arbitrary members.
pub fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((member_name(), json_value()), 0..5).prop_map(|m| m.into_iter().collect())
}

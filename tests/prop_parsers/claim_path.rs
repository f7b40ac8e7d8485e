//! Claim paths (`config::ClaimPath`): any name can be written so that it reads exactly that
//! member, nested names reach nested members, and printing a path gives text that parses back.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokengate::config::ClaimPath;

use super::cases;

/// Member names with the characters that mean something in a path.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_:]{1,8}",
        "[a-z./~\\\\:]{1,10}",
        Just("https://example.com/roles".to_string()),
        Just("cognito:groups".to_string()),
    ]
}

/// The dotted spelling of a path of `names`: `\` and `.` escaped.
fn dotted(names: &[String]) -> String {
    names.iter().map(|n| n.replace('\\', "\\\\").replace('.', "\\.")).collect::<Vec<_>>().join(".")
}

/// The JSON-pointer spelling (RFC 6901).
fn pointer(names: &[String]) -> String {
    names.iter().map(|n| format!("/{}", n.replace('~', "~0").replace('/', "~1"))).collect()
}

/// `names` nested as objects around `leaf`.
fn nest(names: &[String], leaf: Value) -> Map<String, Value> {
    let mut value = leaf;
    for n in names.iter().rev() {
        value = Value::Object(Map::from_iter([(n.clone(), value)]));
    }
    let Value::Object(map) = value else { unreachable!() };
    map
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Both spellings of the same names read the nested member, and nothing else.
    #[test]
    fn spellings_reach_the_member(names in prop::collection::vec(name(), 1..4)) {
        let claims = nest(&names, json!("found"));
        let by_pointer = ClaimPath::parse(&pointer(&names)).unwrap();
        prop_assert_eq!(by_pointer.get(&claims), Some(&json!("found")));
        prop_assert_eq!(by_pointer.root(), names[0].as_str());
        // A dotted spelling is refused only for an unescaped-looking URL, and one starting with
        // `/` is a pointer; otherwise it reads the same.
        if let (false, Ok(by_dots)) = (names[0].starts_with('/'), ClaimPath::parse(&dotted(&names))) {
            prop_assert_eq!(&by_dots, &by_pointer);
        }
        let top = ClaimPath::top(&names[0]);
        prop_assert!(top.is(&names[0]));
        prop_assert_eq!(ClaimPath::parse(top.as_str()).unwrap(), top);
    }

    /// Whatever parses prints back to itself, and finds only under its root.
    #[test]
    fn any_text(text in "[a-z./~\\\\:0-9]{0,16}", claims in prop::collection::btree_map(name(), Just(json!({"x": 1})), 0..3)) {
        if let Ok(path) = ClaimPath::parse(&text) {
            prop_assert_eq!(ClaimPath::parse(path.as_str()).unwrap(), path.clone());
            let map: Map<String, Value> = claims.into_iter().collect();
            if path.get(&map).is_some() {
                prop_assert!(map.contains_key(path.root()));
            }
        }
    }
}

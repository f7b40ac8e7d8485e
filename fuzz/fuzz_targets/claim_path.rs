//! Claim paths (`config::ClaimPath`): the dotted and JSON-pointer spellings in config files, and
//! the lookup of a path in a token's claims.
//!
//! Input: the first line is a path, the rest a JSON claims object.
//!
//! Checked: parsing never panics; a parsed path prints as text that parses back to the same
//! path; a lookup never panics and finds, when it finds something, a value under the path's
//! root claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokengate::config::ClaimPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, claims) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(parsed) = ClaimPath::parse(path) else { return };
    assert_eq!(ClaimPath::parse(parsed.as_str()).as_ref(), Ok(&parsed));
    let top = ClaimPath::top(parsed.root());
    assert_eq!(ClaimPath::parse(top.as_str()).as_ref(), Ok(&top));
    if let Ok(claims) = serde_json::from_str::<Map<String, Value>>(claims) {
        if parsed.get(&claims).is_some() {
            assert!(claims.contains_key(parsed.root()));
        }
    }
});

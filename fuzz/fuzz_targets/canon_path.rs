//! Request path and host canonicalisation (RFC 3986 §6.2.2): `canon::path` and `canon::host`.
//!
//! Input: byte 0 selects the options (bit 0: keep encoded slashes; bit 1: read the rest as a
//! Host value instead of a path); the rest is the raw path or host.
//!
//! Checked: an accepted path starts with `/`, has no dot-segment in any reading, no `\`, and no
//! `%2F`/`%5C` unless kept; canonicalising the forwarded form again changes nothing and gives
//! the same readings; the forwarded form is printable ASCII. An accepted host is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::canon::{self, PathOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    if flags & 2 != 0 {
        if let Ok(host) = canon::host(rest) {
            let again = canon::host(host.as_str().as_bytes()).expect("a canonical host is accepted");
            assert!(!again.is_rewritten());
            assert_eq!(again.as_str(), host.as_str());
            assert!(!host.name().ends_with('.') && host.name() == host.name().to_ascii_lowercase());
        }
        return;
    }
    let Ok(raw) = std::str::from_utf8(rest) else { return };
    let options = PathOptions { keep_encoded_slashes: flags & 1 != 0 };
    let Ok(path) = canon::path(raw, &options) else { return };
    let forwarded = path.forwarded();
    assert!(forwarded.starts_with('/'));
    assert!(forwarded.bytes().all(|b| b.is_ascii_graphic()), "{forwarded:?}");
    assert!(!forwarded.contains('\\'));
    let upper = forwarded.to_ascii_uppercase();
    if !options.keep_encoded_slashes {
        assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{forwarded:?}");
    }
    assert!(!upper.contains("%2E") && !upper.contains("%3B") && !upper.contains("%00"), "{forwarded:?}");
    for reading in path.readings() {
        for segment in reading.split(|&b| b == b'/') {
            let name = segment.split(|&b| b == b';').next().unwrap_or_default();
            assert!(name != b"." && name != b"..", "{forwarded:?} has a dot-segment reading");
        }
    }
    let again = canon::path(forwarded, &options).expect("a canonical path is accepted");
    assert!(!again.is_rewritten());
    assert_eq!(again.readings().collect::<Vec<_>>(), path.readings().collect::<Vec<_>>());
});

//! Config loading: `config::load_text` (`${…}` substitution, YAML, `TOKENGATE_*` overrides,
//! validation) and, for what loads, `config::render_effective`.
//!
//! Input: the YAML text. Lines `#env NAME=VALUE` (YAML comments) also set the environment.
//!
//! Checked: a `Config` or a `ConfigError` that says something, never a panic.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tokengate::config::{load_text, render_effective};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#env ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match load_text(Path::new("fuzz.yaml"), text, &env) {
        Ok(config) => {
            let _ = render_effective(&config);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            let _ = e.field();
        }
    }
});

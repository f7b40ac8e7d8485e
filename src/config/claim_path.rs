//! `ClaimPath`: where in a token's claims a value lives, parsed once at load time.
//!
//! IdPs nest claims (`realm_access.roles` in Keycloak) and name them with dots, slashes and
//! colons (`https://example.com/roles` in Auth0, `cognito:groups`). Two spellings:
//! - dotted: `realm_access.roles`; `\.` is a literal dot and `\\` a literal backslash
//!   (`https://example\.com/roles`). A name without dots is one top-level claim;
//! - an RFC 6901 JSON pointer when it starts with `/`: `/https:~1~1example.com~1roles`.
//!
//! A dotted path that cuts a URL at a dot (`https://example.com/roles` as written) is refused:
//! it is almost surely a namespaced claim name whose dots were not escaped, and reading it as a
//! path would silently find nothing (or, worse, something else).

use std::fmt;

use serde_json::{Map, Value};

/// Equal when they read the same member, however written.
#[derive(Clone)]
pub struct ClaimPath {
    /// As written in the config, for errors and `check-config`.
    text: String,
    /// Object member names from the top level down; never empty, no segment empty.
    segments: Vec<String>,
}

impl ClaimPath {
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        if text.is_empty() {
            return Err("a claim path must not be empty".into());
        }
        let segments = match text.strip_prefix('/') {
            Some(pointer) => pointer_segments(pointer)?,
            None => dotted_segments(text)?,
        };
        if let Some(empty) = segments.iter().position(String::is_empty) {
            return Err(format!("segment {} of claim path `{text}` is empty", empty + 1));
        }
        // `https://example.com/roles` unescaped splits into `https://example` and `com/roles`:
        // a segment that holds a scheme and a host cut short at a dot, with more to follow.
        let cut_url = |seg: &String| seg.split_once("://").is_some_and(|(_, rest)| !rest.contains('/'));
        let (_, inner) = segments.split_last().expect("never empty");
        if text.starts_with('/') || !inner.iter().any(cut_url) {
            return Ok(ClaimPath { text: text.to_owned(), segments });
        }
        Err(format!(
            "`{text}` reads as the nested path {segments:?}; a claim named `{text}` is written `{}` or, as a \
             JSON pointer, `{}`",
            text.replace('.', "\\."),
            ClaimPath::top(text).text,
        ))
    }

    /// One top-level claim, named as is (no escaping).
    pub fn top(name: &str) -> ClaimPath {
        let text = if name.contains(['.', '\\']) || name.starts_with('/') {
            format!("/{}", name.replace('~', "~0").replace('/', "~1"))
        } else {
            name.to_owned()
        };
        ClaimPath { text, segments: vec![name.to_owned()] }
    }

    /// The value at this path, if every step is an object member.
    pub fn get<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        rest.iter().try_fold(claims.get(first)?, |value, name| value.as_object()?.get(name))
    }

    /// The top-level claim the path starts in (what a principal must keep to read it later).
    pub fn root(&self) -> &str {
        &self.segments[0]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is the single top-level claim `name`.
    pub fn is(&self, name: &str) -> bool {
        self.segments.len() == 1 && self.segments[0] == name
    }
}

/// RFC 6901 §3/§4: segments split at `/`, then `~1` → `/` and `~0` → `~`; any other `~` is an error.
fn pointer_segments(pointer: &str) -> Result<Vec<String>, String> {
    pointer
        .split('/')
        .map(|raw| {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => out.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("`~` in JSON pointer segment `{raw}` must be `~0` or `~1`")),
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

fn dotted_segments(text: &str) -> Result<Vec<String>, String> {
    let mut segments = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('.' | '\\')) => segments.last_mut().expect("never empty").push(escaped),
                _ => return Err(format!("in claim path `{text}`, `\\` must be followed by `.` or `\\`")),
            },
            '.' => segments.push(String::new()),
            c => segments.last_mut().expect("never empty").push(c),
        }
    }
    Ok(segments)
}

impl PartialEq for ClaimPath {
    fn eq(&self, other: &ClaimPath) -> bool {
        self.segments == other.segments
    }
}

impl Eq for ClaimPath {}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimPath({:?})", self.text)
    }
}

/// Strings from a claim: a space-delimited string (RFC 8693 §4.2, RFC 9068 §2.2.3) or an array
/// of strings (other members skipped). Anything else gives nothing.
pub fn words(value: Option<&Value>) -> impl Iterator<Item = &str> {
    let (text, items) = match value {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(items)) => (None, Some(items.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    let text = text.into_iter().flat_map(|s| s.split(' ').filter(|w| !w.is_empty()));
    text.chain(items.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        let Value::Object(map) = v else { unreachable!() };
        map
    }

    fn at<'a>(path: &str, c: &'a Map<String, Value>) -> Option<&'a Value> {
        ClaimPath::parse(path).unwrap().get(c)
    }

    #[test]
    fn dotted_and_pointer_paths() {
        let c = claims(json!({
            "tid": "t",
            "cognito:groups": ["a"],
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my-api": {"roles": ["reader"]}},
            "https://example.com/roles": ["ns"],
            "a.b": 1,
            "x": {"y.z": 2, "w\\": 3},
        }));
        assert_eq!(at("tid", &c), Some(&json!("t")));
        assert_eq!(at("cognito:groups", &c), Some(&json!(["a"])));
        assert_eq!(at("realm_access.roles", &c), Some(&json!(["admin"])));
        assert_eq!(at("resource_access.my-api.roles", &c), Some(&json!(["reader"])));
        assert_eq!(at(r"https://example\.com/roles", &c), Some(&json!(["ns"])));
        let nested = claims(json!({"https://example.com/app": {"roles": ["r"]}}));
        assert_eq!(at(r"https://example\.com/app.roles", &nested), Some(&json!(["r"])));
        assert_eq!(at("/https:~1~1example.com~1roles", &c), Some(&json!(["ns"])));
        assert_eq!(at(r"a\.b", &c), Some(&json!(1)));
        assert_eq!(at("a.b", &c), None);
        assert_eq!(at(r"x.y\.z", &c), Some(&json!(2)));
        assert_eq!(at(r"x.w\\", &c), Some(&json!(3)));
        assert_eq!(at("/x/y.z", &c), Some(&json!(2)));
        // A step into a non-object finds nothing.
        assert_eq!(at("tid.x", &c), None);
        assert_eq!(at("realm_access.roles.0", &c), None);
    }

    #[test]
    fn refused_spellings() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            r"a\b",
            r"a\",
            "/",
            "/a/",
            "/a~2",
            "https://example.com/roles",
            "https://example.com",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = ClaimPath::parse("https://example.com/roles").unwrap_err();
        assert!(e.contains(r"`https://example\.com/roles`") && e.contains("`/https:~1~1example.com~1roles`"), "{e}");
    }

    /// `top` builds a path that reads exactly that member, and prints as something `parse`
    /// reads back the same.
    #[test]
    fn top_level_names_round_trip() {
        for name in ["sub", "a.b", "https://x.example/r", "/lead", "t~i/lde", r"back\slash"] {
            let p = ClaimPath::top(name);
            assert_eq!(p.root(), name);
            assert!(p.is(name));
            assert_eq!(ClaimPath::parse(p.as_str()).unwrap(), p, "{}", p.as_str());
        }
    }

    #[test]
    fn words_of_strings_and_arrays() {
        let w = |v: Value| words(Some(&v)).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(w(json!("a  b")), ["a", "b"]);
        assert_eq!(w(json!(["a", 1, "b c"])), ["a", "b c"]);
        assert!(w(json!(7)).is_empty());
        assert!(words(None).next().is_none());
    }
}

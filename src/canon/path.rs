//! The request path as every upstream framework will read it (RFC 3986 §6.2.2, RFC 9110 §4.2.3).
//!
//! One canonical form is both what the route is chosen from and what the upstream receives, so
//! no spelling can pass under one route and be served as another. Rewritten:
//! - escapes of unreserved characters are decoded (`%61` → `a`, `%2E` → `.`, §6.2.2.2);
//! - the remaining escapes are upper-cased (`%c3` → `%C3`, §6.2.2.1);
//! - bytes that may not appear in a path (non-ASCII, `"`, `{`, `|` …) are percent-encoded;
//! - repeated slashes are merged (`//admin` → `/admin`).
//!
//! Refused (400), because frameworks disagree on what they mean:
//! - a dot-segment in any spelling (`..`, `.%2e`, `%2E%2E`, `..;x` — Tomcat drops `;x`);
//! - `\` anywhere, and an encoded slash or backslash (`%2F`, `%5C`) unless the operator keeps them
//!   (`paths.encoded_slashes: keep`), in which case they are forwarded as they are and count as
//!   separators for matching and dot-segment detection, the way an upstream that decodes them reads
//!   them;
//! - a raw control character;
//! - an encoded `;` (`%3B`: Tomcat keeps it literal, nginx and Go decode it into a parameter
//!   delimiter), an encoded control character (`%00`–`%1F`, `%7F`), a double-encoded escape
//!   (`%25` followed by two hex digits, e.g. `%252e`), a malformed escape (`%zz`), a target that is
//!   not a path (`*`).
//!
//! Routes are matched against decoded readings of this form. The first is Tomcat's and Spring's:
//! `;parameters` removed from every segment (`/admin;x` is `/admin`), kept encoded separators
//! read as `/`. A path with a `;` or a kept `%2F`/`%5C` has other readings too: parameters kept
//! (Go, nginx: `/a;x/b` is not `/a/b` to them), encoded separators as ordinary characters (Go
//! 1.22's ServeMux, Spring without decoding, and `%5C` everywhere but IIS), and parameters that
//! swallow the encoded separators up to the next literal `/` (Tomcat and Spring remove them before
//! they decode: `/;%2Fa/admin` is `/admin`). The route table requires a request to satisfy every
//! route any reading chooses (`proxy::route`).

use std::borrow::Cow;

/// How paths are canonicalised; from `paths:` in the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// Keep `%2F` and `%5C` (GitLab-style `/projects/group%2Fname`) instead of refusing them.
    pub keep_encoded_slashes: bool,
}

/// A path in canonical form, plus the readings routes are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonPath<'a> {
    forwarded: Cow<'a, str>,
    /// Decoded, `;parameters` removed, encoded separators read as `/`, slashes merged.
    strict: Cow<'a, [u8]>,
    /// The other readings that differ from `strict`: usually none, so nothing is allocated.
    others: Vec<Vec<u8>>,
}

impl<'a> CanonPath<'a> {
    /// What the upstream receives: equal to the request's path unless it was rewritten.
    pub fn forwarded(&self) -> &str {
        &self.forwarded
    }

    /// True when the upstream must receive a different path than the client sent.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.forwarded, Cow::Owned(_))
    }

    /// The reading the route is named after (Tomcat's and Spring's).
    pub fn strict(&self) -> &[u8] {
        &self.strict
    }

    /// Every distinct reading, `strict` first.
    pub fn readings(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&*self.strict).chain(self.others.iter().map(Vec::as_slice))
    }
}

/// Canonicalise `raw` (the request target's path, without query). `Err` is the fixed reason
/// for the 400.
pub fn path<'a>(raw: &'a str, options: &PathOptions) -> Result<CanonPath<'a>, &'static str> {
    if is_plain(raw.as_bytes()) {
        // The common case: nothing to decode, merge or check. No allocation.
        return Ok(CanonPath {
            forwarded: Cow::Borrowed(raw),
            strict: Cow::Borrowed(raw.as_bytes()),
            others: Vec::new(),
        });
    }
    let mut canon = rewrite(raw.as_bytes(), options)?;
    if canon.forwarded == raw {
        // `/.well-known/x`, `/a;p`: checked the long way, forwarded as sent.
        canon.forwarded = Cow::Borrowed(raw);
    }
    Ok(canon)
}

/// Byte classes: 1 = may stand as-is in the fast path.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let ok = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,=:@/";
    let mut i = 0;
    while i < ok.len() {
        t[ok[i] as usize] = true;
        i += 1;
    }
    t
};

/// Starts with `/`, has only bytes that need no decoding or encoding, and no `//` or `/.`.
fn is_plain(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut previous_slash = false;
    for &b in bytes {
        if !PLAIN[b as usize] || (previous_slash && (b == b'/' || b == b'.')) {
            return false;
        }
        previous_slash = b == b'/';
    }
    true
}

/// One unit of the path once escapes are understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A literal `/`.
    Slash,
    /// `%2F` or `%5C`, kept: the byte it encodes.
    EncodedSeparator(u8),
    /// A byte of a segment, and whether it must stay percent-encoded when forwarded.
    Byte { value: u8, encoded: bool },
}

fn rewrite(raw: &[u8], options: &PathOptions) -> Result<CanonPath<'static>, &'static str> {
    if raw.first() != Some(&b'/') {
        return Err("request target is not an absolute path");
    }
    let units = units(raw, options)?;
    check_dot_segments(&units)?;
    let mut forwarded = String::with_capacity(raw.len() + 8);
    for (i, unit) in units.iter().enumerate() {
        match *unit {
            // Merge repeated literal slashes in what is forwarded.
            Unit::Slash if i > 0 && units[i - 1] == Unit::Slash => {}
            Unit::Slash => forwarded.push('/'),
            Unit::EncodedSeparator(b) => push_escape(&mut forwarded, b),
            Unit::Byte { value, encoded } if encoded || !is_pchar(value) => push_escape(&mut forwarded, value),
            Unit::Byte { value, .. } => forwarded.push(value as char),
        }
    }
    // `%25` then two hex digits reads as an escape to an upstream that decodes twice. Checked on
    // the output: decoding `%65` in `%252%65` is what makes `%252e`.
    if forwarded.as_bytes().windows(5).any(|w| w.starts_with(b"%25") && hex_pair(&w[3..]).is_some()) {
        return Err("path contains a double-encoded percent-escape");
    }
    let strict = reading(&units, Parameters::ToSeparator, true);
    // Every other reading, each once. Only paths that needed rewriting get here, so computing
    // all four costs little, and no test could tell a shortcut that skipped some from this.
    let mut others: Vec<Vec<u8>> = Vec::new();
    for (parameters, separate) in [
        (Parameters::Kept, true),
        (Parameters::ToSeparator, false),
        (Parameters::Kept, false),
        (Parameters::ToSlash, true),
    ] {
        let other = reading(&units, parameters, separate);
        if other != strict && !others.contains(&other) {
            others.push(other);
        }
    }
    Ok(CanonPath { forwarded: Cow::Owned(forwarded), strict: Cow::Owned(strict), others })
}

/// Where a `;parameter` ends, in a reading that removes parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameters {
    /// Not removed (Go, nginx).
    Kept,
    /// At the next separator, a kept `%2F`/`%5C` included: a framework that decodes the path
    /// before it removes parameters.
    ToSeparator,
    /// At the next literal `/`, swallowing kept encoded separators: Tomcat and Spring remove
    /// parameters from the undecoded path, then decode (`/;%2Fa/admin` is `/admin` to them).
    ToSlash,
}

/// A decoded reading: `;parameters` removed from each segment or kept, kept encoded separators
/// read as `/` or as their escape text (which no route prefix contains), separators merged.
fn reading(units: &[Unit], parameters: Parameters, separate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len());
    let mut in_parameters = false;
    for unit in units {
        match *unit {
            Unit::Slash => {
                in_parameters = false;
                push_separator(&mut out);
            }
            // Part of the parameter it follows.
            Unit::EncodedSeparator(_) if in_parameters && parameters == Parameters::ToSlash => {}
            Unit::EncodedSeparator(_) if separate => {
                in_parameters = false;
                push_separator(&mut out);
            }
            Unit::EncodedSeparator(b) if !in_parameters => {
                let mut escape = String::with_capacity(3);
                push_escape(&mut escape, b);
                out.extend_from_slice(escape.as_bytes());
            }
            Unit::EncodedSeparator(_) => {}
            Unit::Byte { value, encoded } => {
                // A `;` parameter runs to the end of its segment (Tomcat, Spring). `%3B` was refused.
                if value == b';' && !encoded && parameters != Parameters::Kept {
                    in_parameters = true;
                }
                if !in_parameters {
                    out.push(value);
                }
            }
        }
    }
    out
}

/// Merged: a separator is written only after something that is not one.
fn push_separator(view: &mut Vec<u8>) {
    if view.last() != Some(&b'/') {
        view.push(b'/');
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// RFC 3986 §3.3 `pchar` minus `%` (escapes are written by `push_escape`).
fn is_pchar(b: u8) -> bool {
    PLAIN[b as usize] && b != b'/' || b == b';'
}

/// RFC 3986 §2.3 unreserved characters: their escapes are decoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn units(raw: &[u8], options: &PathOptions) -> Result<Vec<Unit>, &'static str> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'/' => out.push(Unit::Slash),
            b'\\' => return Err("path contains a backslash"),
            // http::Uri refuses these already; canon does too rather than encode them into the
            // `%00` it refuses.
            0..=0x1f | 0x7f => return Err("path contains a control character"),
            b'%' => {
                let value =
                    raw.get(i + 1..i + 3).and_then(hex_pair).ok_or("path contains a malformed percent-escape")?;
                i += 2;
                match value {
                    b'/' | b'\\' if options.keep_encoded_slashes => out.push(Unit::EncodedSeparator(value)),
                    b'/' | b'\\' => return Err("path contains an encoded slash or backslash"),
                    b';' => return Err("path contains an encoded semicolon"),
                    0..=0x1f | 0x7f => return Err("path contains an encoded control character"),
                    v => out.push(Unit::Byte { value: v, encoded: !is_unreserved(v) }),
                }
            }
            _ => out.push(Unit::Byte { value: b, encoded: false }),
        }
        i += 1;
    }
    Ok(out)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// A segment whose name (the part before its first literal `;`) is `.` or `..` after decoding.
/// Segments end at any separator, kept encoded ones included.
fn check_dot_segments(units: &[Unit]) -> Result<(), &'static str> {
    for segment in units.split(|u| matches!(u, Unit::Slash | Unit::EncodedSeparator(_))) {
        let name = segment.split(|u| *u == Unit::Byte { value: b';', encoded: false }).next().unwrap_or(&[]);
        let dots = name.iter().take_while(|u| matches!(u, Unit::Byte { value: b'.', .. })).count();
        if dots == name.len() && (dots == 1 || dots == 2) {
            return Err("path contains a dot-segment");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: PathOptions = PathOptions { keep_encoded_slashes: true };

    fn canon(raw: &str) -> Result<(String, String, Option<String>), &'static str> {
        canon_with(raw, &PathOptions::default())
    }

    /// Forwarded form, strict reading, and the other readings joined with a space.
    fn canon_with(raw: &str, o: &PathOptions) -> Result<(String, String, Option<String>), &'static str> {
        let c = path(raw, o)?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let others: Vec<String> = c.readings().skip(1).map(text).collect();
        Ok((c.forwarded().to_owned(), text(c.strict()), (!others.is_empty()).then(|| others.join(" "))))
    }

    /// Plain paths are borrowed as they are: nothing to rewrite.
    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/api/v1/users", "/a..b/c", "/a/...", "/x:y@z/(1)*+,=!$&'~", "/.well-known/a", "/a;b"] {
            let c = path(p, &PathOptions::default()).unwrap();
            assert!(!c.is_rewritten(), "{p}");
            assert_eq!(c.forwarded(), p);
        }
    }

    /// The fast path takes exactly the paths with nothing to decode, encode, merge or check.
    #[test]
    fn fast_path_classification() {
        for plain in ["/", "/api/v1/users", "/a..b", "/x.y/z", "/x:y@z!$&'()*+,=~-_"] {
            assert!(is_plain(plain.as_bytes()), "{plain}");
        }
        for slow in ["", "a", "*", "//a", "/a//b", "/.well-known", "/a/.", "/a;b", "/%41", "/é", "/a\\b", "/a\"b"] {
            assert!(!is_plain(slow.as_bytes()), "{slow}");
        }
    }

    /// Unreserved escapes are decoded, the others upper-cased, and slashes merged.
    #[test]
    fn rewrites() {
        let f = |p: &str| canon(p).unwrap().0;
        assert_eq!(f("/%61dmin"), "/admin");
        assert_eq!(f("/%41%2d%2E%5f%7e"), "/A-._~");
        assert_eq!(f("//admin"), "/admin");
        assert_eq!(f("/a///b//"), "/a/b/");
        assert_eq!(f("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(f("/café"), "/caf%C3%A9");
        assert_eq!(f("/a%20b%3f"), "/a%20b%3F");
        // Escaped reserved characters stay escaped: `/a%2Bb` and `/a+b` differ to an upstream.
        assert_eq!(f("/a%2bb%40c%3Ad%21e%2C"), "/a%2Bb%40c%3Ad%21e%2C");
        assert_eq!(f("/a{b}|\"^[]"), "/a%7Bb%7D%7C%22%5E%5B%5D");
        assert_eq!(f("/.well-known/x"), "/.well-known/x");
        assert_eq!(f("/100%25"), "/100%25");
        assert_eq!(f("/admin;x"), "/admin;x");
    }

    /// The strict reading decodes, drops `;parameters` from every segment and merges separators.
    #[test]
    fn readings() {
        assert_eq!(canon("/admin;x").unwrap().1, "/admin");
        assert_eq!(canon("/admin;x").unwrap().2.as_deref(), Some("/admin;x"));
        assert_eq!(canon("/a;x=1/b;y").unwrap().1, "/a/b");
        assert_eq!(canon("/;x/b").unwrap().1, "/b");
        assert_eq!(canon("/caf%C3%A9/%20").unwrap().1, "/café/ ");
        assert_eq!(canon("/a%2Fb").unwrap_err(), "path contains an encoded slash or backslash");
        let (fwd, strict, others) = canon_with("/admin%2fx%2F%2F/y", &KEEP).unwrap();
        assert_eq!(fwd, "/admin%2Fx%2F%2F/y");
        assert_eq!(strict, "/admin/x/y");
        assert_eq!(others.as_deref(), Some("/admin%2Fx%2F%2F/y"));
        assert_eq!(canon_with("/g%5Cn", &KEEP).unwrap().1, "/g/n");
        let (_, strict, others) = canon_with("/a;p%2Fq/b;r", &KEEP).unwrap();
        assert_eq!(strict, "/a/q/b");
        assert_eq!(others.as_deref(), Some("/a;p/q/b;r /a/b /a;p%2Fq/b;r"));
        assert_eq!(canon("/a/b").unwrap().2, None);
        // Tomcat and Spring remove `;%2Fa` before decoding: `/admin/`, which must be a reading
        // (found by tests/path_normalisers.rs's proptest).
        let (_, strict, others) = canon_with("/;%2Fa/admin%2F;", &KEEP).unwrap();
        assert_eq!(strict, "/a/admin/");
        assert!(others.unwrap().split(' ').any(|r| r == "/admin/"));
    }

    /// The readings are distinct (a duplicate would only cost, so nothing else would notice):
    /// checked over every path of up to six pieces of parameters, separators and names.
    #[test]
    fn readings_differ() {
        let pieces = ["/", "a", ";", ";p", "%2F", "%5c"];
        let mut paths = vec![String::from("/")];
        for _ in 0..6 {
            let longer: Vec<String> =
                paths.iter().flat_map(|p| pieces.iter().map(move |x| format!("{p}{x}"))).collect();
            for p in &longer {
                let Ok(c) = path(p, &KEEP) else { continue };
                let all: Vec<&[u8]> = c.readings().collect();
                for (i, r) in all.iter().enumerate() {
                    assert!(
                        !all[i + 1..].contains(r),
                        "{p}: {:?}",
                        all.iter().map(|r| String::from_utf8_lossy(r)).collect::<Vec<_>>()
                    );
                }
            }
            paths = longer;
        }
    }

    /// Dot-segments are refused in every spelling, including after an encoded separator.
    #[test]
    fn dot_segments_refused() {
        for bad in [
            "/public/../admin",
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/public/%2E./admin",
            "/./admin",
            "/.;/admin",
            "/..",
            "/a/.",
            "/a/..;",
            "/%2e",
        ] {
            assert_eq!(canon(bad).unwrap_err(), "path contains a dot-segment", "{bad}");
        }
        for bad in ["/public%2F..%2Fadmin", "/public%5c..%5Cadmin", "/a%2F.", "/a/..%2Fb"] {
            assert_eq!(canon_with(bad, &KEEP).unwrap_err(), "path contains a dot-segment", "{bad}");
        }
        for ok in ["/a..b", "/...", "/.x", "/x.", "/a;..", "/a;/b"] {
            assert!(canon(ok).is_ok(), "{ok}");
        }
    }

    /// Spellings frameworks disagree on are refused with a fixed reason.
    #[test]
    fn refusals() {
        let cases = [
            ("/a\\b", "path contains a backslash"),
            ("/a%2Fb", "path contains an encoded slash or backslash"),
            ("/a%5cb", "path contains an encoded slash or backslash"),
            ("/admin%3Bx", "path contains an encoded semicolon"),
            ("/a%00", "path contains an encoded control character"),
            ("/a%0d%0a", "path contains an encoded control character"),
            ("/admin\0/admin", "path contains a control character"),
            ("/a\tb", "path contains a control character"),
            ("/a%7F", "path contains an encoded control character"),
            ("/%252e%252e/admin", "path contains a double-encoded percent-escape"),
            ("/%252%65%252%65/admin", "path contains a double-encoded percent-escape"),
            ("/d5:%252%65A:", "path contains a double-encoded percent-escape"),
            ("/a%zz", "path contains a malformed percent-escape"),
            ("/a%2", "path contains a malformed percent-escape"),
            ("/a%", "path contains a malformed percent-escape"),
            ("*", "request target is not an absolute path"),
            ("", "request target is not an absolute path"),
        ];
        for (raw, why) in cases {
            assert_eq!(canon(raw).unwrap_err(), why, "{raw}");
        }
        assert_eq!(canon_with("/a\\b", &KEEP).unwrap_err(), "path contains a backslash");
    }

    /// The forwarded form is a fixed point: canonicalising it again changes nothing.
    #[test]
    fn idempotent() {
        for p in ["/%61dmin//x", "/caf%c3%a9;p=%41", "/a{b}", "/x%20y/"] {
            let once = canon(p).unwrap();
            let twice = canon(&once.0).unwrap();
            assert_eq!(once, twice, "{p}");
        }
    }
}

//! The requested host in one spelling (RFC 3986 §6.2.2.1, RFC 9110 §7.2): lower-case, without
//! the trailing dot of a fully qualified name, port in plain decimal. `Admin.Example.com.:0443`
//! and `admin.example.com:443` are the same host to DNS and to every upstream, so they are the
//! same host to the route table and the same `Host` to the upstream.

use std::borrow::Cow;

/// A host (name or IP literal) and its port, if the request named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonHost<'a> {
    /// `name[:port]`, canonical: what routes see and the upstream receives as `Host`.
    text: Cow<'a, str>,
    /// Length of the name within `text`.
    name_len: usize,
    pub port: Option<u16>,
}

impl<'a> CanonHost<'a> {
    /// The host name or bracketed IP literal, without port.
    pub fn name(&self) -> &str {
        &self.text[..self.name_len]
    }

    /// `name[:port]` as it is forwarded.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the canonical form differs from what the client sent.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.text, Cow::Owned(_))
    }

    pub fn into_owned(self) -> CanonHost<'static> {
        CanonHost { text: Cow::Owned(self.text.into_owned()), name_len: self.name_len, port: self.port }
    }
}

const BAD: &str = "Host is not a valid host name";

/// Byte classes of a host name: one table lookup per byte on the hot path.
const INVALID: u8 = 0;
const NAME: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;
const COLON: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => NAME,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            b':' => COLON,
            _ => INVALID,
        };
        b += 1;
    }
    t
};

/// Canonicalise a `Host` value or URI authority. `Err` is the fixed reason for the 400.
pub fn host(raw: &[u8]) -> Result<CanonHost<'_>, &'static str> {
    if raw.first() == Some(&b'[') {
        return ip_literal(raw);
    }
    // One pass over the name: letters, digits, `-`, `_` and `.`; no empty label except one
    // final dot (a fully qualified name).
    let (mut upper, mut label_empty, mut name_len) = (false, true, raw.len());
    for (i, &b) in raw.iter().enumerate() {
        match CLASS[b as usize] {
            NAME => label_empty = false,
            UPPER => (upper, label_empty) = (true, false),
            DOT if !label_empty => label_empty = true,
            COLON => {
                name_len = i;
                break;
            }
            _ => return Err(BAD),
        }
    }
    // A dot never follows an empty label, so a label can only be empty at the end when the
    // name is empty or ends with its one final dot.
    let name = &raw[..name_len];
    if name.is_empty() {
        return Err(BAD);
    }
    let fqdn = name.ends_with(b".");
    finish(raw, name_len, !upper && !fqdn, name.strip_suffix(b".").unwrap_or(name))
}

/// `[v6]` or `[v6]:port`: hex digits, `:` and `.` inside the brackets (no zone id).
fn ip_literal(raw: &[u8]) -> Result<CanonHost<'_>, &'static str> {
    let name_len = raw.iter().position(|&b| b == b']').ok_or(BAD)? + 1;
    let inner = &raw[1..name_len - 1];
    if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
        return Err(BAD);
    }
    finish(raw, name_len, !inner.iter().any(u8::is_ascii_uppercase), &raw[..name_len])
}

/// The port after the name, and the host borrowed as sent when the name is `canonical_name`
/// and the port text is plain decimal (no `:0443`, no `host:`); else `name` (without a
/// trailing dot) lower-cased with the port.
fn finish<'a>(
    raw: &'a [u8],
    name_len: usize,
    canonical_name: bool,
    name: &[u8],
) -> Result<CanonHost<'a>, &'static str> {
    let port = port(&raw[name_len..])?;
    let canonical_port = match port {
        None => raw.len() == name_len,
        Some(p) => raw.len() - name_len - 1 == decimal_len(p),
    };
    if canonical_name && canonical_port {
        // Every byte is ASCII by now.
        let text = std::str::from_utf8(raw).map_err(|_| BAD)?;
        return Ok(CanonHost { text: Cow::Borrowed(text), name_len, port });
    }
    let mut text = String::with_capacity(name.len() + 6);
    text.extend(name.iter().map(|b| b.to_ascii_lowercase() as char));
    let name_len = text.len();
    if let Some(p) = port {
        text.push(':');
        text.push_str(&p.to_string());
    }
    Ok(CanonHost { text: Cow::Owned(text), name_len, port })
}

/// What follows the name: nothing, `:` (an empty port is no port, RFC 3986 §3.2.3), or `:`
/// and up to five digits of a port from 1 to 65535.
fn port(rest: &[u8]) -> Result<Option<u16>, &'static str> {
    match rest {
        [] | [b':'] => Ok(None),
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {
            let port = digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            match u16::try_from(port) {
                Ok(p) if p != 0 => Ok(Some(p)),
                _ => Err("Host has an invalid port"),
            }
        }
        [b':', ..] => Err("Host has an invalid port"),
        _ => Err(BAD),
    }
}

fn decimal_len(p: u16) -> usize {
    match p {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<(String, String, Option<u16>, bool), &'static str> {
        let h = host(raw.as_bytes())?;
        Ok((h.as_str().to_owned(), h.name().to_owned(), h.port, h.is_rewritten()))
    }

    /// Case, a trailing dot and a padded port are normalised; canonical input is borrowed.
    #[test]
    fn normalises() {
        assert_eq!(
            canon("api.example.com").unwrap(),
            ("api.example.com".into(), "api.example.com".into(), None, false)
        );
        assert_eq!(
            canon("api.example.com:8080").unwrap(),
            ("api.example.com:8080".into(), "api.example.com".into(), Some(8080), false)
        );
        assert_eq!(
            canon("Admin.Example.COM.").unwrap(),
            ("admin.example.com".into(), "admin.example.com".into(), None, true)
        );
        assert_eq!(
            canon("admin.example.com.:0443").unwrap(),
            ("admin.example.com:443".into(), "admin.example.com".into(), Some(443), true)
        );
        assert_eq!(canon("a:").unwrap(), ("a".into(), "a".into(), None, true));
        assert_eq!(canon("[::1]:80").unwrap(), ("[::1]:80".into(), "[::1]".into(), Some(80), false));
        assert_eq!(canon("[FE80::1]").unwrap().0, "[fe80::1]");
        assert!(!canon("127.0.0.1").unwrap().3);
        assert!(!canon("my_host-1").unwrap().3);
    }

    /// Anything that is not a plain host name or IP literal is refused.
    #[test]
    fn refuses() {
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.b..",
            "user@a",
            "a b",
            "a/b",
            "a%2eb",
            "[::1",
            "[::1]x",
            "[::1%25eth0]",
            "[]",
            "évil",
        ] {
            assert_eq!(canon(bad), Err(BAD), "{bad:?}");
        }
        for bad in ["a:b", "a:1:2", "a:65536", "a:0", "a:123456", "[::1]:x"] {
            assert_eq!(canon(bad), Err("Host has an invalid port"), "{bad:?}");
        }
    }

    /// A canonical port of any length is borrowed; a padded one is rewritten.
    #[test]
    fn port_lengths() {
        for ok in ["a:8", "a:80", "a:443", "a:8080", "a:65535", "[::1]:9"] {
            assert!(!canon(ok).unwrap().3, "{ok}");
        }
        for padded in ["a:08", "a:0443", "a:00080"] {
            assert!(canon(padded).unwrap().3, "{padded}");
        }
    }
}

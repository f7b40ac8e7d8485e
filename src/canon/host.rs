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

/// Canonicalise a `Host` value or URI authority. `Err` is the fixed reason for the 400.
pub fn host(raw: &[u8]) -> Result<CanonHost<'_>, &'static str> {
    const BAD: &str = "Host is not a valid host name";
    let (name, port) = split_port(raw)?;
    let ip_literal = name.first() == Some(&b'[');
    let valid = if ip_literal {
        name.len() > 2
            && name.ends_with(b"]")
            && name[1..name.len() - 1].iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        // Letters, digits, `-`, `_` and `.`; no empty label except one final dot.
        let trimmed = name.strip_suffix(b".").unwrap_or(name);
        !trimmed.is_empty()
            && trimmed.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !trimmed.split(|&b| b == b'.').any(<[u8]>::is_empty)
    };
    if !valid {
        return Err(BAD);
    }
    let canonical_name = !name.ends_with(b".") && !name.iter().any(u8::is_ascii_uppercase);
    // Borrowed only when the raw port text is already plain decimal (no `:0443`, no empty port).
    let canonical_port = match port {
        None => raw.len() == name.len(),
        Some(p) => raw.len() - name.len() - 1 == decimal_len(p),
    };
    let raw = std::str::from_utf8(raw).map_err(|_| BAD)?;
    if canonical_name && canonical_port {
        return Ok(CanonHost { text: Cow::Borrowed(raw), name_len: name.len(), port });
    }
    let mut text = String::with_capacity(raw.len());
    let name = name.strip_suffix(b".").unwrap_or(name);
    text.extend(name.iter().map(|b| b.to_ascii_lowercase() as char));
    let name_len = text.len();
    if let Some(p) = port {
        text.push(':');
        text.push_str(&p.to_string());
    }
    Ok(CanonHost { text: Cow::Owned(text), name_len, port })
}

/// `name` and the port after the last `:` outside an IP literal. An empty port (`host:`) is no
/// port (RFC 3986 §3.2.3).
fn split_port(raw: &[u8]) -> Result<(&[u8], Option<u16>), &'static str> {
    let name_end = if raw.first() == Some(&b'[') {
        raw.iter().position(|&b| b == b']').map_or(raw.len(), |i| i + 1)
    } else {
        raw.iter().position(|&b| b == b':').unwrap_or(raw.len())
    };
    let (name, rest) = raw.split_at(name_end);
    let port = match rest {
        [] | [b':'] => None,
        [b':', digits @ ..] => {
            let ok = digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit);
            let port = ok.then(|| std::str::from_utf8(digits).ok()?.parse::<u16>().ok()).flatten();
            Some(port.filter(|&p| p != 0).ok_or("Host has an invalid port")?)
        }
        _ => return Err("Host is not a valid host name"),
    };
    Ok((name, port))
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
            "a:b",
            "a:1:2",
            "a:65536",
            "a:0",
            "a:123456",
            "[::1",
            "[::1]x",
            "[::1%25eth0]",
            "[]",
            "évil",
        ] {
            assert!(canon(bad).is_err(), "{bad:?}");
        }
    }
}

//! How upstream frameworks read a request path before they route it, written from their
//! documented behaviour, so tests can check that every one of them serves the path the gateway
//! authorized. Each returns the decoded path the framework routes on, or `None` when the
//! framework itself refuses the request (a 400 from the upstream is no bypass).
//!
//! Included with `#[path]` by the tests that need it, not through `support`.

#![allow(dead_code)]

/// A framework's path normalisation.
pub type Normaliser = fn(&str) -> Option<Vec<u8>>;

/// Every normaliser, with its name for assertion messages.
pub const ALL: &[(&str, Normaliser)] =
    &[("tomcat", tomcat), ("spring", spring), ("go", go), ("go-1.22-mux", go_mux), ("nginx", nginx)];

/// Tomcat (CoyoteAdapter): `;parameters` removed from every segment before decoding, `%2F`
/// refused (ALLOW_ENCODED_SLASH=false), `%00` refused, then slashes merged and dot-segments
/// resolved; `..` above the root refused.
pub fn tomcat(path: &str) -> Option<Vec<u8>> {
    let stripped = strip_parameters(path);
    if contains_escape(&stripped, b'/') {
        return None;
    }
    let decoded = decode(&stripped)?;
    // CoyoteAdapter.normalize: a NUL or a backslash (ALLOW_BACKSLASH=false) is a 400.
    if decoded.contains(&0) || decoded.contains(&b'\\') {
        return None;
    }
    resolve_dots(&decoded)
}

/// Spring MVC's UrlPathHelper: `;parameters` removed, decoded, `//` merged; dot-segments are
/// left to the container (no StrictHttpFirewall, which would refuse more).
pub fn spring(path: &str) -> Option<Vec<u8>> {
    let decoded = decode(&strip_parameters(path))?;
    Some(merge_slashes(&decoded))
}

/// Go net/http: the path is decoded (`%2F` becomes `/`), and ServeMux routes on
/// `path.Clean` of it, keeping a trailing slash; `;` is an ordinary character.
pub fn go(path: &str) -> Option<Vec<u8>> {
    go_clean(&decode(path)?)
}

/// ServeMux's cleanPath: `path.Clean`, keeping a trailing slash.
fn go_clean(decoded: &[u8]) -> Option<Vec<u8>> {
    let trailing = decoded.ends_with(b"/") && decoded.len() > 1;
    let mut clean = resolve_dots(decoded).unwrap_or_else(|| b"/".to_vec());
    if trailing && !clean.ends_with(b"/") {
        clean.push(b'/');
    }
    Some(clean)
}

/// Go 1.22+ ServeMux: patterns match the path segment by segment, where an escaped `/` (or
/// `\`) belongs to its segment rather than separating it; kept here as its escape text.
pub fn go_mux(path: &str) -> Option<Vec<u8>> {
    go_clean(&decode_except(path, b"/\\")?)
}

/// nginx (ngx_http_parse_complex_uri): escapes decoded, then slashes merged and dot-segments
/// resolved on the decoded bytes; `..` above the root refused; `;` ordinary.
pub fn nginx(path: &str) -> Option<Vec<u8>> {
    resolve_dots(&decode(path)?)
}

/// Remove `;…` up to the next literal `/` in every segment.
fn strip_parameters(path: &str) -> String {
    path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/")
}

fn contains_escape(path: &str, byte: u8) -> bool {
    let hex = format!("%{byte:02x}");
    path.to_ascii_lowercase().contains(&hex)
}

/// Every `%XX` decoded; a malformed escape is a 400 in all four frameworks.
pub fn decode(path: &str) -> Option<Vec<u8>> {
    decode_except(path, b"")
}

/// `decode`, except that escapes of the bytes in `kept` stay as (upper-case) escape text.
fn decode_except(path: &str, kept: &[u8]) -> Option<Vec<u8>> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if kept.contains(&v) {
                out.extend_from_slice(format!("%{v:02X}").as_bytes());
            } else {
                out.push(v);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn merge_slashes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

/// RFC 3986 §5.2.4 on a merged path; `None` when `..` climbs above the root.
fn resolve_dots(path: &[u8]) -> Option<Vec<u8>> {
    let merged = merge_slashes(path);
    let trailing = merged.ends_with(b"/");
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = merged.split(|&b| b == b'/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut ends_in_dir = trailing;
    for (i, s) in parts.into_iter().enumerate() {
        match s {
            b"." => ends_in_dir |= i == last,
            b".." => {
                segments.pop()?;
                ends_in_dir |= i == last;
            }
            b"" => {}
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || ends_in_dir {
        out.push(b'/');
    }
    Some(out)
}

//! One log line's key/value pairs, as a flat JSON object or as logfmt. Values are escaped here
//! and nowhere else: whatever a client sent (a host, a path) cannot break a line in two or forge
//! a key.

use std::fmt::{self, Write};

use super::Format;

/// A line being written. JSON: `{"k":"v","n":1,"none":null}`; logfmt: `k=v n=1 none=` (a null
/// is an empty value, an empty string is `""`).
pub struct Line<'w> {
    out: &'w mut dyn Write,
    format: Format,
    first: bool,
}

impl<'w> Line<'w> {
    /// Open a line (JSON: `{`).
    pub fn start(out: &'w mut dyn Write, format: Format) -> Self {
        if format == Format::Json {
            let _ = out.write_char('{');
        }
        Line { out, format, first: true }
    }

    /// Continue a line someone else opened and will close (an access event's fields).
    pub fn resume(out: &'w mut dyn Write, format: Format) -> Self {
        Line { out, format, first: false }
    }

    /// Close the line (JSON: `}`); the newline is the writer's.
    pub fn end(self) -> fmt::Result {
        match self.format {
            Format::Json => self.out.write_char('}'),
            Format::Text => Ok(()),
        }
    }

    fn key(&mut self, key: &str) -> fmt::Result {
        let first = std::mem::replace(&mut self.first, false);
        match self.format {
            Format::Json => {
                if !first {
                    self.out.write_char(',')?;
                }
                json_string(self.out, key)?;
                self.out.write_char(':')
            }
            Format::Text => {
                if !first {
                    self.out.write_char(' ')?;
                }
                self.out.write_str(key)?;
                self.out.write_char('=')
            }
        }
    }

    pub fn str(&mut self, key: &str, value: &str) -> fmt::Result {
        self.key(key)?;
        match self.format {
            Format::Json => json_string(self.out, value),
            Format::Text => logfmt_value(self.out, value),
        }
    }

    /// A value whose `Display` never needs escaping (a timestamp, an IP address): quoted in
    /// JSON, bare in logfmt, written without an intermediate string.
    pub fn plain(&mut self, key: &str, value: impl fmt::Display) -> fmt::Result {
        self.key(key)?;
        match self.format {
            Format::Json => write!(self.out, "\"{value}\""),
            Format::Text => write!(self.out, "{value}"),
        }
    }

    /// A number or boolean: written as its `Display`, unquoted in both formats.
    pub fn num(&mut self, key: &str, value: impl fmt::Display) -> fmt::Result {
        self.key(key)?;
        write!(self.out, "{value}")
    }

    /// A string, or null.
    pub fn opt(&mut self, key: &str, value: Option<&str>) -> fmt::Result {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    /// A number, or null.
    pub fn opt_num(&mut self, key: &str, value: Option<impl fmt::Display>) -> fmt::Result {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) -> fmt::Result {
        self.key(key)?;
        match self.format {
            Format::Json => self.out.write_str("null"),
            Format::Text => Ok(()),
        }
    }

    /// Text that is already pairs in this line's format (it begins with its own separator).
    pub fn raw(&mut self, text: fmt::Arguments<'_>) -> fmt::Result {
        self.first = false;
        self.out.write_fmt(text)
    }
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped.
fn json_string(out: &mut dyn Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ' || c == '\u{7f}') {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{:04x}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)?;
    out.write_char('"')
}

/// A logfmt value: bare when it is non-empty printable text without space, `=` or `"`;
/// otherwise quoted, with the JSON string escapes.
fn logfmt_value(out: &mut dyn Write, s: &str) -> fmt::Result {
    let bare = !s.is_empty() && s.chars().all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if bare {
        out.write_str(s)
    } else {
        json_string(out, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, f: impl FnOnce(&mut Line<'_>) -> fmt::Result) -> String {
        let mut out = String::new();
        let mut line = Line::start(&mut out, format);
        f(&mut line).unwrap();
        line.end().unwrap();
        out
    }

    fn sample(l: &mut Line<'_>) -> fmt::Result {
        l.str("a", "plain")?;
        l.str("b", "two words \"quoted\" a=b\\")?;
        l.num("n", 42)?;
        l.opt("none", None)?;
        l.str("empty", "")?;
        l.str("ctl", "line\nbreak\u{1}\u{7f}")
    }

    #[test]
    fn json_is_one_parseable_object() {
        let out = line(Format::Json, sample);
        assert!(!out.contains('\n'), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "plain");
        assert_eq!(v["b"], "two words \"quoted\" a=b\\");
        assert_eq!(v["n"], 42);
        assert!(v["none"].is_null());
        assert_eq!(v["empty"], "");
        assert_eq!(v["ctl"], "line\nbreak\u{1}\u{7f}");
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let out = line(Format::Text, sample);
        assert_eq!(out, r#"a=plain b="two words \"quoted\" a=b\\" n=42 none= empty="" ctl="line\nbreak\u0001\u007f""#);
    }

    #[test]
    fn resumed_lines_continue_with_a_separator() {
        let mut out = String::new();
        let mut l = Line::resume(&mut out, Format::Json);
        l.str("k", "v").unwrap();
        assert_eq!(out, r#","k":"v""#);
        let mut out = String::new();
        Line::resume(&mut out, Format::Text).num("k", 1).unwrap();
        assert_eq!(out, " k=1");
    }
}

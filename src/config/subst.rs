//! `${NAME}` substitution in the config file's text, before it is parsed.

use std::collections::HashMap;

/// A `${…}` substitution failure, 1-based position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain,
    Single,
    Double,
}

/// Replaces `${NAME}` with `env[NAME]` line by line (line numbers are kept); `$$` is a literal `$`,
/// any other `$` is kept as is. Comments are copied untouched. The value is escaped for the scalar
/// it lands in: inside `"…"` JSON-style, inside `'…'` by doubling `'`; in a plain scalar it must be
/// plain-safe (letters, digits, `._/+=:~?&%@-`), else the error asks for double quotes.
pub fn substitute(text: &str, env: &HashMap<String, String>) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        substitute_line(line, index + 1, env, &mut out)?;
    }
    Ok(out)
}

fn substitute_line(
    line: &str,
    line_no: usize,
    env: &HashMap<String, String>,
    out: &mut String,
) -> Result<(), SubstError> {
    let mut quote = Quote::Plain;
    // Last non-space character outside quotes: decides whether a quote character opens a scalar.
    let mut prev: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let column = line[..i].chars().count() + 1;
        match (quote, c) {
            (Quote::Plain, '#') if i == 0 || line[..i].ends_with(char::is_whitespace) => {
                out.push_str(&line[i..]);
                return Ok(());
            }
            (Quote::Plain, '"' | '\'') if matches!(prev, None | Some(':' | '-' | '[' | '{' | ',' | '?')) => {
                quote = if c == '"' { Quote::Double } else { Quote::Single };
                out.push(c);
            }
            (Quote::Double, '\\') => {
                out.push(c);
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            (Quote::Double, '"') | (Quote::Single, '\'') => {
                // `''` inside single quotes is an escaped quote and keeps the scalar open.
                if quote == Quote::Single && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                    chars.next();
                    out.push_str("''");
                } else {
                    quote = Quote::Plain;
                    prev = Some(c);
                    out.push(c);
                }
            }
            (_, '$') => match chars.peek().map(|&(_, n)| n) {
                Some('$') => {
                    chars.next();
                    out.push('$');
                }
                Some('{') => {
                    let rest = &line[i + 2..];
                    let Some(end) = rest.find('}') else {
                        return Err(SubstError {
                            line: line_no,
                            column,
                            message: "`${` without a closing `}`; write `$${` for a literal `${`".into(),
                        });
                    };
                    let name = &rest[..end];
                    let value = lookup(name, env).map_err(|message| SubstError { line: line_no, column, message })?;
                    let escaped =
                        escape(name, value, quote).map_err(|message| SubstError { line: line_no, column, message })?;
                    out.push_str(&escaped);
                    // Skip `{NAME}`.
                    for _ in 0..name.chars().count() + 2 {
                        chars.next();
                    }
                    prev = Some('}');
                }
                _ => out.push('$'),
            },
            _ => {
                if quote == Quote::Plain && !c.is_whitespace() {
                    prev = Some(c);
                }
                out.push(c);
            }
        }
    }
    Ok(())
}

fn lookup<'a>(name: &str, env: &'a HashMap<String, String>) -> Result<&'a str, String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{name}}}` is not a valid variable reference; expected `${{NAME}}` with NAME made of \
             letters, digits and `_` (defaults such as `${{NAME:-x}}` are not supported)"
        ));
    }
    env.get(name).map(String::as_str).ok_or_else(|| {
        format!("`${{{name}}}`: environment variable {name} is not set (write `$${{{name}}}` for a literal)")
    })
}

fn escape(name: &str, value: &str, quote: Quote) -> Result<String, String> {
    match quote {
        Quote::Double => {
            let json = serde_json::to_string(value).expect("a string serializes");
            Ok(json[1..json.len() - 1].to_string())
        }
        Quote::Single if value.contains(['\n', '\r']) => Err(format!(
            "`${{{name}}}`: the value of {name} contains a line break, which a single-quoted scalar \
             cannot hold; write \"${{{name}}}\" (double-quoted) instead"
        )),
        Quote::Single => Ok(value.replace('\'', "''")),
        Quote::Plain if is_plain_safe(value) => Ok(value.to_string()),
        Quote::Plain => Err(format!(
            "`${{{name}}}`: the value of {name} is empty or contains characters that would change the \
             YAML structure here; write \"${{{name}}}\" (double-quoted) instead"
        )),
    }
}

fn is_plain_safe(value: &str) -> bool {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || "._/+=".contains(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || "._/+=:~?&%@-".contains(c))
        && !value.ends_with(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// `${NAME}` is replaced in plain, single- and double-quoted scalars; lines stay where they were.
    #[test]
    fn substitutes_and_keeps_lines() {
        let e = env(&[("A", "x/y"), ("Q", "it's \"q\"\n")]);
        let text = "a: ${A}\nb: '${A}'\nc: \"${Q}\"\nd: 'p${A}'\n";
        let out = substitute(text, &e).unwrap();
        assert_eq!(out, "a: x/y\nb: 'x/y'\nc: \"it's \\\"q\\\"\\n\"\nd: 'px/y'\n");
        assert_eq!(out.lines().count(), text.lines().count());
    }

    /// `$$` is a literal `$`; a lone `$` is kept.
    #[test]
    fn dollar_escape() {
        let out = substitute("a: $${A} b$c $$\n", &env(&[])).unwrap();
        assert_eq!(out, "a: ${A} b$c $\n");
    }

    /// An unset variable is an error at its line and column, naming the variable.
    #[test]
    fn missing_variable_has_position() {
        let err = substitute("a: 1\nb:\n  c: ${NOPE}\n", &env(&[])).unwrap_err();
        assert_eq!((err.line, err.column), (3, 6));
        assert!(err.message.contains("NOPE is not set"), "{}", err.message);
    }

    /// Comments are not substituted, so commented-out examples need no variables.
    #[test]
    fn comments_are_left_alone() {
        let text = "# x: ${NOPE}\na: b # ${NOPE}\nc: \"# ${A}\"\n";
        let out = substitute(text, &env(&[("A", "1")])).unwrap();
        assert_eq!(out, "# x: ${NOPE}\na: b # ${NOPE}\nc: \"# 1\"\n");
    }

    /// A value that would change the YAML structure in a plain scalar is refused, not injected.
    #[test]
    fn unsafe_plain_value_is_refused() {
        let err = substitute("s: ${S}\n", &env(&[("S", "abc #def")])).unwrap_err();
        assert!(err.message.contains("double-quoted"), "{}", err.message);
        let err = substitute("s: ${S}\n", &env(&[("S", "")])).unwrap_err();
        assert!(err.message.contains("S is empty"), "{}", err.message);
    }

    /// A malformed reference is an error naming it.
    #[test]
    fn malformed_reference() {
        let err = substitute("a: ${A:-x}\n", &env(&[])).unwrap_err();
        assert!(err.message.contains("${A:-x}"), "{}", err.message);
        let err = substitute("a: ${A\n", &env(&[])).unwrap_err();
        assert!(err.message.contains("closing"), "{}", err.message);
    }
}

//! The value of one `TOKENGATE_*` setting: from `X`, or for a secret from the file named by
//! `X_FILE` (the Docker and Kubernetes convention for secrets mounted as files).
//!
//! Rules: setting both is an error; the file's contents are the value with one trailing newline
//! (`\n` or `\r\n`) removed; an unreadable, empty, non-UTF-8 or oversized file is an error naming
//! the variable and the path, never the contents. A secret's value never appears in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use super::env_keys::Setting;
use super::validate::{ConfigError, Origin};

/// Larger secret files are refused: a secret is short, and `/dev/zero` must not hang the start.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A value and the variable that supplied it.
pub struct EnvValue {
    /// `X`, or `X_FILE` when it came from a file.
    pub var: String,
    text: String,
    secret: bool,
}

impl EnvValue {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: &dyn fmt::Debug = if self.secret { &"<redacted>" } else { &self.text };
        f.debug_struct("EnvValue").field("var", &self.var).field("text", text).finish()
    }
}

/// A variable that is unset, empty or only whitespace counts as unset.
pub fn get<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn err(var: &str, setting: &Setting, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { origin: Origin::Env(var.to_string()), field: setting.field(), message: message.into() }
}

/// The value of `setting`, if its variable (or, for a secret, its `_FILE` variable) is set.
pub fn resolve(env: &HashMap<String, String>, setting: &Setting) -> Result<Option<EnvValue>, ConfigError> {
    let direct = get(env, &setting.var);
    let Some(file_var) = setting.file_var() else {
        return Ok(direct.map(|v| EnvValue { var: setting.var.clone(), text: v.to_string(), secret: false }));
    };
    let path = get(env, &file_var);
    match (direct, path) {
        (Some(_), Some(_)) => Err(err(
            &file_var,
            setting,
            format!("{} is set as well; set only one of them ({file_var} names a file holding the value)", setting.var),
        )),
        (Some(v), None) => Ok(Some(EnvValue { var: setting.var.clone(), text: v.to_string(), secret: true })),
        (None, Some(path)) => {
            let text = read_secret(path).map_err(|problem| err(&file_var, setting, format!("{path}: {problem}")))?;
            Ok(Some(EnvValue { var: file_var, text, secret: true }))
        }
        (None, None) => Ok(None),
    }
}

/// The file's text without one trailing newline; the error says what is wrong, never what is in it.
fn read_secret(path: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("the file is larger than {MAX_SECRET_FILE_BYTES} bytes; it should hold only the secret"));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    strip_one_newline(&mut text);
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(text)
}

/// Removes one trailing `\n` or `\r\n` (what `echo` or an editor adds), and nothing else.
pub fn strip_one_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::env_keys::settings;
    use super::*;

    const CANARY: &str = "canary-Zq8vX3-secret";

    fn setting(var: &str) -> &'static Setting {
        settings().iter().find(|s| s.var == var).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn temp(name: &str, contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("tokengate-secret-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn one_trailing_newline_is_removed() {
        for (input, want) in [("s\n", "s"), ("s\r\n", "s"), ("s\n\n", "s\n"), ("s", "s"), (" s \n", " s "), ("\n", "")]
        {
            let mut text = input.to_string();
            strip_one_newline(&mut text);
            assert_eq!(text, want, "{input:?}");
        }
    }

    #[test]
    fn value_from_the_file() {
        let path = temp("ok", format!("{CANARY}\n").as_bytes());
        let s = setting("TOKENGATE_CLIENT_SECRET");
        let v = resolve(&env(&[("TOKENGATE_CLIENT_SECRET_FILE", path.to_str().unwrap())]), s).unwrap().unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!((v.var.as_str(), v.text()), ("TOKENGATE_CLIENT_SECRET_FILE", CANARY));
        assert!(!format!("{v:?}").contains(CANARY), "{v:?}");
    }

    /// Both set, unreadable, empty, not UTF-8, too large: each an error naming the variable and
    /// the path, never the contents.
    #[test]
    fn file_errors() {
        let s = setting("TOKENGATE_CLIENT_SECRET");
        let fv = "TOKENGATE_CLIENT_SECRET_FILE";
        let good = temp("good", CANARY.as_bytes());
        let empty = temp("empty", b"\n");
        let binary = temp("binary", b"\xff\xfe canary-Zq8vX3-secret");
        let large = temp("large", format!("{CANARY}{}", "x".repeat(70_000)).as_bytes());
        let missing = std::env::temp_dir().join("tokengate-secret-does-not-exist");
        let dir = std::env::temp_dir();
        let cases: Vec<(HashMap<String, String>, &str, String)> = vec![
            (
                env(&[("TOKENGATE_CLIENT_SECRET", CANARY), (fv, good.to_str().unwrap())]),
                "TOKENGATE_CLIENT_SECRET is set as well; set only one",
                String::new(),
            ),
            (env(&[(fv, missing.to_str().unwrap())]), "cannot read the file", missing.display().to_string()),
            (env(&[(fv, dir.to_str().unwrap())]), "cannot read the file", dir.display().to_string()),
            (env(&[(fv, empty.to_str().unwrap())]), "the file is empty", empty.display().to_string()),
            (env(&[(fv, binary.to_str().unwrap())]), "not UTF-8", binary.display().to_string()),
            (env(&[(fv, large.to_str().unwrap())]), "larger than 65536 bytes", large.display().to_string()),
        ];
        for (e, needle, path) in cases {
            let err = resolve(&e, s).unwrap_err().to_string();
            assert!(err.starts_with("TOKENGATE_CLIENT_SECRET_FILE: issuers[0].introspection.client_secret: "), "{err}");
            assert!(err.contains(needle) && err.contains(&path), "{needle:?} / {path:?} missing from {err}");
            assert!(!err.contains(CANARY), "{err}");
        }
        for p in [good, empty, binary, large] {
            std::fs::remove_file(p).ok();
        }
    }

    /// Unset, empty or whitespace `_FILE` counts as unset; a non-secret has no `_FILE`.
    #[test]
    fn unset_and_non_secrets() {
        let s = setting("TOKENGATE_CLIENT_SECRET");
        assert!(resolve(&env(&[("TOKENGATE_CLIENT_SECRET_FILE", "  ")]), s).unwrap().is_none());
        let v = resolve(&env(&[("TOKENGATE_CLIENT_SECRET", CANARY), ("TOKENGATE_CLIENT_SECRET_FILE", "")]), s);
        assert!(v.unwrap().unwrap().is_secret());
        let up = setting("TOKENGATE_UPSTREAM");
        assert!(resolve(&env(&[("TOKENGATE_UPSTREAM_FILE", "/etc/hostname")]), up).unwrap().is_none());
    }
}

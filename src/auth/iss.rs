//! Which configured issuer a token's `iss` names (RFC 7519 §4.1.1, RFC 9068 §4: an exact,
//! case-sensitive match).
//!
//! Exact spellings are the issuer and its documented aliases (Google's `accounts.google.com`).
//! A multi-tenant Entra ID issuer is a template, `https://login.microsoftonline.com/{tenantid}/v2.0`:
//! it names a token only when the text around `{tenantid}` matches exactly, the tenant in
//! between is the token's `tid` claim, and that tenant is on the issuer's allowlist. Nothing
//! here loosens the match in general: no case folding, no trailing-slash forgiveness.

use serde_json::{Map, Value};

use crate::config::provider::TENANT;
use crate::config::Issuer;

/// Every spelling of `iss` the issuer answers to, templates included.
pub fn spellings(issuer: &Issuer) -> impl Iterator<Item = &str> {
    std::iter::once(issuer.issuer.as_str()).chain(issuer.aliases.iter().map(String::as_str))
}

pub fn is_template(spelling: &str) -> bool {
    spelling.contains(TENANT)
}

/// The token's `tid`, when it is a string.
pub fn tenant_of(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("tid").and_then(Value::as_str)
}

/// Whether `iss` (with the token's `tid`) is one of `issuer`'s spellings.
pub fn names(issuer: &Issuer, iss: &str, tid: Option<&str>) -> bool {
    spellings(issuer).any(|spelling| matches(spelling, iss, tid, &issuer.tenants))
}

fn matches(spelling: &str, iss: &str, tid: Option<&str>, tenants: &[String]) -> bool {
    let Some((prefix, suffix)) = spelling.split_once(TENANT) else {
        return spelling == iss;
    };
    let Some(tenant) = iss.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)) else {
        return false;
    };
    !tenant.is_empty() && tid == Some(tenant) && tenants.iter().any(|t| t == tenant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeySource;

    fn entra(tenants: &[&str]) -> Issuer {
        Issuer {
            aliases: vec!["https://sts.windows.net/{tenantid}/".into()],
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..Issuer::new("https://login.microsoftonline.com/{tenantid}/v2.0", KeySource::Discovery)
        }
    }

    #[test]
    fn templates_bind_the_tenant_to_tid_and_the_allowlist() {
        let i = entra(&["t1", "t2"]);
        assert!(names(&i, "https://login.microsoftonline.com/t1/v2.0", Some("t1")));
        assert!(names(&i, "https://sts.windows.net/t2/", Some("t2")));
        // tid disagrees with iss, or is missing.
        assert!(!names(&i, "https://login.microsoftonline.com/t1/v2.0", Some("t2")));
        assert!(!names(&i, "https://login.microsoftonline.com/t1/v2.0", None));
        // A tenant off the allowlist.
        assert!(!names(&i, "https://login.microsoftonline.com/t3/v2.0", Some("t3")));
        // The template itself, other hosts, versions and spellings.
        assert!(!names(&i, "https://login.microsoftonline.com/{tenantid}/v2.0", Some("{tenantid}")));
        assert!(!names(&i, "https://login.microsoftonline.com/t1/v2.0/", Some("t1")));
        assert!(!names(&i, "https://login.microsoftonline.com/t1", Some("t1")));
        assert!(!names(&i, "https://sts.windows.net/t1", Some("t1")));
        assert!(!names(&i, "https://LOGIN.microsoftonline.com/t1/v2.0", Some("t1")));
        assert!(!names(&i, "https://evil.example/https://login.microsoftonline.com/t1/v2.0", Some("t1")));
    }

    #[test]
    fn which_spellings_are_templates() {
        assert!(is_template("https://login.microsoftonline.com/{tenantid}/v2.0"));
        assert!(!is_template("https://login.microsoftonline.com/t1/v2.0"));
        assert!(!is_template("accounts.google.com"));
    }

    #[test]
    fn exact_spellings_only() {
        let g = Issuer {
            aliases: vec!["accounts.google.com".into()],
            ..Issuer::new("https://accounts.google.com", KeySource::Discovery)
        };
        assert!(names(&g, "https://accounts.google.com", None));
        assert!(names(&g, "accounts.google.com", None));
        for other in ["https://accounts.google.com/", "http://accounts.google.com", "ACCOUNTS.google.com", ""] {
            assert!(!names(&g, other, None), "{other}");
        }
    }
}

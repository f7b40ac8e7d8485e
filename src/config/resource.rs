//! RFC 9728 protected resource metadata: validation of the `protected_resource` section and
//! derivation of the well-known URL.

use super::raw::RawProtectedResource;
use super::validate::{check_idp_url, check_scope_token, Ctx};
use super::{ConfigError, Issuer, ProtectedResource, Route, RouteAuth};

/// RFC 9728 §3: the well-known URI suffix.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

pub(super) fn protected_resource(
    ctx: &Ctx<'_>,
    raw: RawProtectedResource,
    issuers: &[Issuer],
    routes: &[Route],
) -> Result<ProtectedResource, ConfigError> {
    let field = "protected_resource.resource";
    let Some(resource) = raw.resource else {
        return Err(ctx.err(field, "is required: the URL clients use for this API, e.g. https://api.example.com"));
    };
    // RFC 9728 §1.2: an https URL (http only on loopback, for development) with no fragment.
    let uri = check_idp_url(ctx, field, &resource)?;
    if resource.contains('#') {
        return Err(ctx.err(field, format!("{resource:?} must not contain a fragment (RFC 9728 §1.2)")));
    }
    if uri.query().is_some() {
        return Err(ctx.err(field, format!("{resource:?} must not contain a query")));
    }
    let authority = uri.authority().expect("check_idp_url requires an absolute URL");
    // RFC 9728 §3.1: insert the well-known suffix between the host and the path; a terminating
    // slash is removed first.
    let path = uri.path().trim_end_matches('/');
    let metadata_path = format!("{WELL_KNOWN}{path}");
    let metadata_url = format!("{}://{authority}{metadata_path}", uri.scheme_str().unwrap_or("https"));

    let authorization_servers =
        raw.authorization_servers.unwrap_or_else(|| issuers.iter().map(|i| i.issuer.clone()).collect());
    for (i, server) in authorization_servers.iter().enumerate() {
        check_idp_url(ctx, &format!("protected_resource.authorization_servers[{i}]"), server)?;
    }
    let scopes_supported = match raw.scopes_supported {
        Some(scopes) => {
            for (i, scope) in scopes.iter().enumerate() {
                check_scope_token(scope)
                    .map_err(|m| ctx.err(format!("protected_resource.scopes_supported[{i}]"), m))?;
            }
            scopes
        }
        None => {
            let mut all: Vec<String> = routes
                .iter()
                .filter_map(|r| match &r.auth {
                    RouteAuth::Required(p) => Some(p.scopes.iter().cloned()),
                    RouteAuth::Public => None,
                })
                .flatten()
                .collect();
            all.sort();
            all.dedup();
            all
        }
    };
    if let Some(name) = &raw.resource_name {
        if name.chars().any(char::is_control) {
            return Err(ctx.err("protected_resource.resource_name", "must not contain control characters"));
        }
    }
    Ok(ProtectedResource {
        resource,
        metadata_path,
        metadata_url,
        authorization_servers,
        scopes_supported,
        resource_name: raw.resource_name,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::config::{load_text, Config, ConfigError};

    fn load(section: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "upstream: {{url: http://127.0.0.1:1}}\nissuers: [{{issuer: https://idp.example, audiences: [api]}}]\n\
             routes:\n  - {{id: a, path_prefix: /a, scopes: [read, write]}}\n  - {{id: b, path_prefix: /, scopes: [read]}}\n\
             protected_resource:\n{section}"
        );
        load_text(Path::new("t.yaml"), &text, &HashMap::new())
    }

    /// RFC 9728 §3.1: the well-known suffix goes between host and path; a final slash is dropped.
    #[test]
    fn metadata_url_derivation() {
        for (resource, url) in [
            ("https://api.example.com", "https://api.example.com/.well-known/oauth-protected-resource"),
            ("https://api.example.com/", "https://api.example.com/.well-known/oauth-protected-resource"),
            ("https://api.example.com/v1/", "https://api.example.com/.well-known/oauth-protected-resource/v1"),
        ] {
            let c = load(&format!("  resource: {resource}\n")).unwrap();
            let p = c.protected_resource.unwrap();
            assert_eq!(p.metadata_url, url);
            assert!(url.ends_with(&p.metadata_path));
        }
    }

    /// Defaults: every issuer is an authorization server; scopes are those the routes require.
    #[test]
    fn defaults_from_issuers_and_routes() {
        let p = load("  resource: https://api.example.com\n").unwrap().protected_resource.unwrap();
        assert_eq!(p.authorization_servers, ["https://idp.example"]);
        assert_eq!(p.scopes_supported, ["read", "write"]);
        let p = load("  resource: https://api.example.com\n  scopes_supported: [x]\n  authorization_servers: [https://as.example]\n")
            .unwrap()
            .protected_resource
            .unwrap();
        assert_eq!(p.scopes_supported, ["x"]);
        assert_eq!(p.authorization_servers, ["https://as.example"]);
    }

    /// The resource must be an https URL without fragment or query; errors name the field.
    #[test]
    fn resource_rules() {
        for bad in ["http://api.example.com", "https://api.example.com/#x", "https://api.example.com/?q=1", "api"] {
            let err = load(&format!("  resource: \"{bad}\"\n")).unwrap_err();
            assert_eq!(err.field(), Some("protected_resource.resource"), "{bad}: {err}");
        }
        let err = load("  resource_name: x\n").unwrap_err();
        assert_eq!(err.field(), Some("protected_resource.resource"));
        let err = load("  resource: https://a.example\n  scopes_supported: [\"a b\"]\n").unwrap_err();
        assert_eq!(err.field(), Some("protected_resource.scopes_supported[0]"));
    }
}

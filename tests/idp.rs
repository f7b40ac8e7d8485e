//! tokengate against each identity provider's documented token shapes, end to end: a fake IdP
//! on loopback serves the discovery document and JWKS at the IdP's own paths (keys shaped as the
//! IdP publishes them), the test mints access and ID tokens with that IdP's headers and claims,
//! and the gateway runs from YAML written the way a user of `provider: <idp>` would write it.
//! Each IdP's module checks that its access tokens pass with the right identity headers, that
//! its ID tokens and tokens for other audiences are refused with the exact reason, and its own
//! rules (Entra tenants and v1.0 tokens, Google's tokeninfo, …). The shapes and their sources:
//! the issue 13 IdP research notes (`idp-research.md`), cited by section in each module.
//!
//! The copyable configs in `config/idp/` are loaded here through the real loader too.

mod support;

#[path = "idp/fake_idp.rs"]
mod fake_idp;
#[path = "idp/harness.rs"]
mod harness;
#[path = "idp/keys.rs"]
mod keys;

#[path = "idp/auth0.rs"]
mod auth0;
#[path = "idp/authelia.rs"]
mod authelia;
#[path = "idp/cognito.rs"]
mod cognito;
#[path = "idp/entra.rs"]
mod entra;
#[path = "idp/google.rs"]
mod google;
#[path = "idp/keycloak.rs"]
mod keycloak;
#[path = "idp/okta.rs"]
mod okta;

use std::path::Path;

use tokengate::config::Provider;

/// `${NAME}` values for a config file.
type Vars = &'static [(&'static str, &'static str)];

/// Every `config/idp/*.yaml`, the provider its issuers use, and plausible values for the
/// variables it needs (those of `tests/config_schema.rs`).
const IDP_CONFIGS: &[(&str, Provider, Vars)] = &[
    (
        "auth0.yaml",
        Provider::Auth0,
        &[
            ("AUTH0_DOMAIN", "acme.eu.auth0.com"),
            ("AUTH0_AUDIENCE", "https://api.example.com"),
            ("AUTH0_JOBS_CLIENT_ID", "jobs"),
        ],
    ),
    (
        "authelia.yaml",
        Provider::Authelia,
        &[("AUTHELIA_URL", "https://auth.example.com"), ("AUTHELIA_INTROSPECTION_SECRET", "s3cret")],
    ),
    (
        "cognito.yaml",
        Provider::Cognito,
        &[
            ("COGNITO_REGION", "eu-west-1"),
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC"),
            ("COGNITO_WEB_CLIENT_ID", "web"),
            ("COGNITO_JOBS_CLIENT_ID", "jobs"),
        ],
    ),
    (
        "entra.yaml",
        Provider::Entra,
        &[
            ("ENTRA_API_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("ENTRA_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("ENTRA_PARTNER_TENANT_ID", "11111111-86f1-41af-91ab-2d7cd011db47"),
        ],
    ),
    ("google.yaml", Provider::Google, &[("GOOGLE_CLIENT_ID", "1234.apps.googleusercontent.com")]),
    ("keycloak.yaml", Provider::Keycloak, &[("KEYCLOAK_URL", "https://sso.example.com"), ("KEYCLOAK_REALM", "acme")]),
    (
        "okta.yaml",
        Provider::Okta,
        &[
            ("OKTA_DOMAIN", "acme.okta.com"),
            ("OKTA_AUDIENCE", "api://default"),
            ("OKTA_INTROSPECTION_SECRET", "s3cret"),
        ],
    ),
];

/// The copyable configs load through `config::load_text` (not only the schema), and their
/// issuers are the provider the file is named after; none is left out of this list.
#[test]
fn every_idp_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/idp");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    files.sort();
    let listed: Vec<&str> = IDP_CONFIGS.iter().map(|(file, _, _)| *file).collect();
    assert_eq!(files, listed, "every config/idp file is checked here");
    for (file, provider, vars) in IDP_CONFIGS {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut env: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.insert("UPSTREAM_URL".into(), "http://127.0.0.1:8081".into());
        let config = tokengate::config::load_text(&path, &text, &env).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!config.issuers.is_empty(), "{file}");
        for issuer in &config.issuers {
            assert_eq!(issuer.provider, *provider, "{file}: issuer {}", issuer.issuer);
        }
    }
}

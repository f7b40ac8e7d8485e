//! The YAML format of the development issuer.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::file;
use super::TokenFormat;

/// The bundled config/dev-issuer.yaml parses into the documented clients and keys.
#[test]
fn example_config_parses() {
    let config = file::parse("config/dev-issuer.yaml", include_str!("../../config/dev-issuer.yaml")).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9400".parse().unwrap());
    assert_eq!(config.issuer, None);
    let kids: Vec<(&str, Algorithm)> = config.keys.iter().map(|k| (k.kid.as_str(), k.alg)).collect();
    assert_eq!(kids, [("dev-es256", Algorithm::ES256), ("dev-rs256", Algorithm::RS256)]);
    let ids: Vec<&str> = config.clients.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["demo-client", "opaque-client", "resource-server"]);
    let opaque = &config.clients[1];
    assert_eq!((opaque.token_format, opaque.token_lifetime), (TokenFormat::Opaque, Duration::from_secs(300)));
    assert_eq!(config.clients[0].audiences, ["api", "demo-api"]);
}

/// Defaults: listen 127.0.0.1:9400, one ES256 key, JWT tokens for 1 h; the issuer's trailing slash is dropped.
#[test]
fn minimal_config_gets_defaults() {
    let yaml = "issuer: http://localhost:9400/\nclients:\n  - {client_id: a, client_secret: s, audiences: [api]}\n";
    let config = file::parse("t.yaml", yaml).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9400".parse().unwrap());
    assert_eq!(config.issuer.as_deref(), Some("http://localhost:9400"));
    assert_eq!((config.keys[0].kid.as_str(), config.keys[0].alg), ("dev-es256", Algorithm::ES256));
    let client = &config.clients[0];
    assert_eq!((client.token_format, client.token_lifetime), (TokenFormat::Jwt, Duration::from_secs(3600)));
    assert!(client.scopes.is_empty());
}

/// Bad configs are refused with the file and the field named: unknown keys, bad alg, no clients, bad issuer.
#[test]
fn bad_configs_are_refused() {
    let client = "clients:\n  - {client_id: a, client_secret: s, audiences: [api]}\n";
    let cases = [
        (format!("{client}extra: 1\n"), "unknown field `extra`"),
        ("clients:\n  - {client_id: a, client_secret: s, audiences: [api], colour: red}\n".to_owned(), "colour"),
        (format!("{client}keys: [{{kid: k, alg: HS256}}]\n"), "keys[0].alg"),
        (format!("{client}keys: [{{kid: k, alg: ES256}}, {{kid: k, alg: EdDSA}}]\n"), "keys[1].kid"),
        ("clients: []\n".to_owned(), "at least one client"),
        (format!("{client}listen: localhost\n"), "listen"),
        (format!("{client}issuer: ftp://x\n"), "issuer"),
        (format!("{client}issuer: http://x/?a=b\n"), "query"),
        ("clients:\n  - {client_id: a, client_secret: s, audiences: [api], token_format: jwe}\n".to_owned(), "jwe"),
        ("clients:\n  - {client_id: a, client_secret: '', audiences: [api]}\n".to_owned(), "client_secret"),
    ];
    for (yaml, expected) in cases {
        let error = file::parse("bad.yaml", &yaml).unwrap_err().to_string();
        assert!(error.starts_with("bad.yaml: "), "{error}");
        assert!(error.contains(expected), "{expected:?} not in {error:?} for\n{yaml}");
    }
    let missing = file::load(std::path::Path::new("/nonexistent/dev-issuer.yaml")).unwrap_err().to_string();
    assert!(missing.contains("cannot read"), "{missing}");
}

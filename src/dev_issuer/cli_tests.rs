//! The decisions of `tokengate dev-issuer`, tested as functions rather than as a process.

use std::net::SocketAddr;

use super::cli::{check_listen, prepare, DevIssuerArgs};
use super::DevClient;

/// The CLI refuses non-loopback listen addresses unless --allow-non-loopback.
#[test]
fn cli_refuses_non_loopback_listen() {
    for ok in ["127.0.0.1:9400", "127.1.2.3:1", "[::1]:9400", "[::ffff:127.0.0.1]:9400"] {
        assert!(check_listen(ok.parse().unwrap(), false).is_ok(), "{ok}");
    }
    for refused in ["0.0.0.0:9400", "[::]:9400", "192.168.1.10:9400", "[::ffff:10.0.0.1]:1"] {
        let addr: SocketAddr = refused.parse().unwrap();
        let error = check_listen(addr, false).unwrap_err();
        assert!(error.contains("--allow-non-loopback"), "{error}");
        assert!(check_listen(addr, true).is_ok());
    }
    let args = DevIssuerArgs { listen: Some("0.0.0.0:9400".parse().unwrap()), ..DevIssuerArgs::default() };
    assert!(prepare(&args).unwrap_err().to_string().contains("refusing to listen on 0.0.0.0:9400"));
    let allowed = DevIssuerArgs { allow_non_loopback: true, ..args };
    assert_eq!(prepare(&allowed).unwrap().listen, "0.0.0.0:9400".parse().unwrap());
}

/// Without --config the CLI has one client with a fresh random secret; the file's listen is overridden by --listen.
#[test]
fn cli_default_config_and_listen_override() {
    let a = prepare(&DevIssuerArgs::default()).unwrap();
    let b = prepare(&DevIssuerArgs::default()).unwrap();
    assert_eq!(a.listen, "127.0.0.1:9400".parse().unwrap());
    assert_eq!(a.clients[0].client_id, "dev-client");
    assert_ne!(a.clients[0].client_secret, b.clients[0].client_secret);
    let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-issuer.yaml"));
    let args = DevIssuerArgs { config: Some(path), listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
    let config = prepare(&args).unwrap();
    assert_eq!((config.listen, config.clients.len()), ("127.0.0.1:0".parse().unwrap(), 3));
}

/// A --config inherited from the gateway's TOKENGATE_CONFIG-style env fallback is ignored; an explicit one is kept.
#[test]
fn cli_ignores_config_from_environment() {
    use clap::{Args, FromArgMatches};
    const VAR: &str = "TOKENGATE_TEST_DEV_ISSUER_GLOBAL_CONFIG";
    let cmd = || {
        clap::Command::new("t")
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .global(true)
                    .env(VAR)
                    .value_parser(clap::value_parser!(std::path::PathBuf)),
            )
            .subcommand(DevIssuerArgs::augment_args(clap::Command::new("dev-issuer")))
    };
    let parse = |argv: &[&str]| {
        let matches = cmd().try_get_matches_from(argv).unwrap();
        DevIssuerArgs::from_arg_matches(matches.subcommand_matches("dev-issuer").unwrap()).unwrap()
    };
    // Only this test reads VAR.
    std::env::set_var(VAR, "/gateway.yaml");
    assert_eq!(parse(&["t", "dev-issuer"]).config, None);
    assert_eq!(parse(&["t", "dev-issuer", "--config", "/dev.yaml"]).config, Some("/dev.yaml".into()));
    assert_eq!(parse(&["t", "--config", "/dev.yaml", "dev-issuer"]).config, Some("/dev.yaml".into()));
    std::env::remove_var(VAR);
}

/// The printed curl commands form-urlencode Basic credentials and shell-quote every value.
#[test]
fn usage_prints_working_curl_commands() {
    let client = DevClient::new("my-client", "it's s3cret").with_scopes(&["read"]);
    let text = super::cli::usage("http://127.0.0.1:9400", &[client]);
    assert!(text.contains("-u 'my-client:it%27s+s3cret'"), "{text}");
    assert!(text.contains("--data-urlencode 'scope=read' --data-urlencode 'resource=api' http://127.0.0.1:9400/token"));
    assert!(text.contains("--data-urlencode 'client_secret=it'\\''s s3cret'"), "{text}");
    assert!(text.contains("http://127.0.0.1:9400/introspect") && text.contains("http://127.0.0.1:9400/revoke"));
}

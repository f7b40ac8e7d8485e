//! `tokengate dev-issuer`: the development authorization server as a process. Loudly labelled,
//! loopback only unless `--allow-non-loopback`, configured from YAML (`config/dev-issuer.yaml`)
//! or, without `--config`, one built-in client with a random secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::clients::{form_urlencode, DevClient, TokenFormat, DEFAULT_TOKEN_LIFETIME};
use super::file::{self, DevConfigError, DevIssuerConfig, KeySpec, DEFAULT_KEY, DEFAULT_LISTEN};
use super::DevIssuer;
use crate::config::Secret;

/// Command-line options of `tokengate dev-issuer`.
///
/// `--config` shares its name with the gateway's global `--config`, whose `TOKENGATE_CONFIG`
/// environment fallback clap would hand down to this subcommand too: a value that came from
/// the environment is ignored here (that file is the gateway's, not the dev issuer's).
#[derive(Debug, Clone, Default)]
pub struct DevIssuerArgs {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub allow_non_loopback: bool,
}

/// What clap parses; [`DevIssuerArgs`] is built from it (see there).
#[derive(clap::Args)]
struct RawArgs {
    /// Dev issuer YAML (see config/dev-issuer.yaml). Without it: one client "dev-client" with a
    /// random secret, scopes "read write", audience "dev-api". TOKENGATE_CONFIG is not read.
    #[arg(long = "config", id = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, overriding the file's `listen` (default 127.0.0.1:9400).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Allow a non-loopback listen address. This server is not hardened for any network.
    #[arg(long)]
    allow_non_loopback: bool,
}

impl clap::FromArgMatches for DevIssuerArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let raw = RawArgs::from_arg_matches(matches)?;
        let from_env = matches.value_source("config") == Some(clap::parser::ValueSource::EnvVariable);
        Ok(DevIssuerArgs {
            config: if from_env { None } else { raw.config },
            listen: raw.listen,
            allow_non_loopback: raw.allow_non_loopback,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for DevIssuerArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        RawArgs::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RawArgs::augment_args_for_update(cmd)
    }
}

/// The warning printed (to stderr) before anything else.
pub const BANNER: &str = "\
!!! ==================================================================== !!!
!!!  tokengate dev-issuer: a DEVELOPMENT authorization server.           !!!
!!!  NOT FOR PRODUCTION: keys and tokens live in memory, it speaks plain !!!
!!!  HTTP, and client secrets come from a plain file or the terminal.    !!!
!!! ==================================================================== !!!";

/// Refuse a listen address that is not loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback)
/// unless explicitly allowed.
pub fn check_listen(addr: SocketAddr, allow_non_loopback: bool) -> Result<(), String> {
    if addr.ip().to_canonical().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {addr}: the development issuer binds loopback addresses only; \
             pass --allow-non-loopback if you really mean to expose it"
        ))
    }
}

/// The built-in configuration used without `--config`: one JWT client with a fresh random secret.
pub fn default_config() -> DevIssuerConfig {
    let mut secret = [0u8; 24];
    aws_lc_rs::rand::fill(&mut secret).expect("random secret");
    DevIssuerConfig {
        listen: DEFAULT_LISTEN.parse().expect("valid default listen address"),
        issuer: None,
        keys: vec![KeySpec { kid: DEFAULT_KEY.0.to_owned(), alg: DEFAULT_KEY.1 }],
        clients: vec![DevClient {
            client_id: "dev-client".to_owned(),
            client_secret: Secret(URL_SAFE_NO_PAD.encode(secret).into_bytes()),
            scopes: vec!["read".to_owned(), "write".to_owned()],
            audiences: vec!["dev-api".to_owned()],
            token_format: TokenFormat::Jwt,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }],
    }
}

/// Load the configuration, apply `--listen`, and check the address. Everything that can be
/// refused is refused here, before any key is generated or port bound.
pub fn prepare(args: &DevIssuerArgs) -> Result<DevIssuerConfig, DevConfigError> {
    let mut config = match &args.config {
        Some(path) => file::load(path)?,
        None => default_config(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    check_listen(config.listen, args.allow_non_loopback)
        .map_err(|message| DevConfigError { origin: "--listen".to_owned(), message })?;
    Ok(config)
}

/// Generate the keys, start the server, print the banner and example commands, and run until
/// SIGINT/SIGTERM.
pub async fn run(config: DevIssuerConfig) -> std::io::Result<()> {
    eprintln!("{BANNER}");
    if config.issuer.is_none() && config.listen.ip().is_unspecified() {
        eprintln!(
            "warning: listening on {} without `issuer:` in the config: tokens will carry iss \"http://{}\", \
             which clients cannot reach; set `issuer` to the public URL",
            config.listen, config.listen
        );
    }
    let keys = config.keys.iter().map(|k| Arc::new(k.generate())).collect();
    let mut builder = DevIssuer::builder().keys(keys).clients(config.clients.iter().cloned());
    if let Some(issuer) = &config.issuer {
        builder = builder.issuer(issuer);
    }
    let issuer = builder.start(config.listen).await?;
    println!("{}", usage(issuer.issuer(), &config.clients));
    crate::app::shutdown_signal().await;
    issuer.shutdown().await;
    Ok(())
}

/// The endpoints, the clients, and curl commands that work against this issuer (they include
/// the first client's secret: this is a development tool and the commands are meant to be run).
pub fn usage(issuer: &str, clients: &[DevClient]) -> String {
    let mut out = format!(
        "development issuer {issuer}\n  metadata   {issuer}/.well-known/oauth-authorization-server\n  \
         jwks       {issuer}/jwks\n  token      {issuer}/token\n  introspect {issuer}/introspect\n  \
         revoke     {issuer}/revoke\n\nclients:\n"
    );
    for c in clients {
        let format = match c.token_format {
            TokenFormat::Jwt => "jwt",
            TokenFormat::Opaque => "opaque",
        };
        out.push_str(&format!(
            "  {} ({format}, scopes: [{}], audiences: [{}], lifetime {})\n",
            c.client_id,
            c.scopes.join(" "),
            c.audiences.join(" "),
            humantime::format_duration(c.token_lifetime),
        ));
    }
    let Some(client) = clients.first() else { return out };
    let secret = String::from_utf8_lossy(&client.client_secret.0);
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before they go into Basic.
    let basic = shell_quote(&format!("{}:{}", form_urlencode(&client.client_id), form_urlencode(&secret)));
    let id = shell_quote(&format!("client_id={}", client.client_id));
    let secret_param = shell_quote(&format!("client_secret={secret}"));
    let mut params = String::new();
    if let Some(scope) = client.scopes.first() {
        params.push_str(&format!(" --data-urlencode {}", shell_quote(&format!("scope={scope}"))));
    }
    params.push_str(&format!(" --data-urlencode {}", shell_quote(&format!("resource={}", client.audiences[0]))));
    out.push_str(&format!(
        "
  # a token for {client_id} (client_secret_basic), kept in $TOKEN
  TOKEN=$(curl -s -u {basic} -d grant_type=client_credentials{params} {issuer}/token \\
    | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/'); echo \"$TOKEN\"

  # the same with client_secret_post, showing the whole response
  curl -s -d grant_type=client_credentials --data-urlencode {id} --data-urlencode {secret_param} {issuer}/token

  # introspect it (RFC 7662), then revoke it (RFC 7009)
  curl -s -u {basic} --data-urlencode \"token=$TOKEN\" {issuer}/introspect
  curl -s -u {basic} --data-urlencode \"token=$TOKEN\" {issuer}/revoke

Press Ctrl-C to stop.",
        client_id = client.client_id,
    ));
    out
}

/// Single-quote for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

//! Embedded **development** OAuth 2.0 authorization server.
//!
//! This is a development and test tool. It must not be used in production: it generates its
//! keys in memory at startup, serves plain HTTP, keeps every token in memory and its client
//! secrets come from a plain config. It backs the README demo (`tokengate demo`) and
//! `tokengate dev-issuer`, and gives the integration tests a real issuer whose key set they can
//! rotate, take down and observe.
//!
//! - [`SigningKey`]: an RSA (RS*/PS*), EC (ES256/ES384) or Ed25519 key generated with aws-lc-rs,
//!   its public JWK, and [`SigningKey::sign_raw`] to sign arbitrary (even hostile) tokens.
//! - [`DevIssuer`]: a running server publishing discovery metadata at
//!   `/.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`, the key
//!   set at `/jwks`, and for the [`DevClient`]s registered through [`DevIssuer::builder`]:
//!   - `POST /token`: client credentials grant (RFC 6749 §4.4) with `client_secret_basic` or
//!     `client_secret_post`, `scope`, `resource` (RFC 8707); RFC 9068 JWT or opaque tokens;
//!   - `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009).
//!
//!   [`DevIssuer::mint`] issues access tokens directly with the first key.
//! - [`file`](mod@file): the YAML format of `tokengate dev-issuer --config`; [`cli`]: that subcommand.
//!
//! It binds wherever it is told; tests pass `127.0.0.1:0`, the CLI refuses non-loopback
//! addresses unless explicitly allowed.

pub mod cli;
mod clients;
pub mod file;
mod keys;
mod oauth;
mod server;

pub use clients::{basic_authorization, validate_clients, DevClient, TokenFormat, DEFAULT_TOKEN_LIFETIME};
pub use keys::SigningKey;
pub use oauth::REALM;
pub use server::{DevIssuer, DevIssuerBuilder, IntrospectionMode, DEFAULT_MAX_AGE_SECS, MINT_LIFETIME_SECS};

#[cfg(test)]
mod cli_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod oauth_tests;
#[cfg(test)]
mod tests;

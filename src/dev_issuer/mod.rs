//! Embedded **development** OAuth 2.0 / OpenID Connect issuer.
//!
//! This is a development and test tool. It must not be used in production: it generates its
//! keys in memory at startup, serves plain HTTP, has no authentication of its own and mints
//! whatever claims it is asked for. It backs the README demo (`tokengate demo`) and gives the
//! integration tests a real issuer whose key set they can rotate, take down and observe.
//!
//! - [`SigningKey`]: an RSA (RS*/PS*), EC (ES256/ES384) or Ed25519 key generated with aws-lc-rs,
//!   its public JWK, and [`SigningKey::sign_raw`] to sign arbitrary (even hostile) tokens.
//! - [`DevIssuer`]: a running server publishing discovery metadata at
//!   `/.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`, and the
//!   key set at `/jwks`; [`DevIssuer::mint`] issues access tokens with the first key.
//!
//! It binds wherever it is told; callers pass `127.0.0.1:0`.

mod keys;
mod server;

pub use keys::SigningKey;
pub use server::{DevIssuer, DEFAULT_MAX_AGE_SECS, MINT_LIFETIME_SECS};

#[cfg(test)]
mod tests;

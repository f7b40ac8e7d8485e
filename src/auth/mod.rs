//! Authentication: from a bearer token to a verified `Principal`, or an `AuthError`.

pub mod claims;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod jws;
pub mod jwt;
pub mod keyset;
pub mod policy;

pub use claims::Principal;
pub use error::AuthError;

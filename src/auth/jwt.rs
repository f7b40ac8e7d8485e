//! Local JWT validation — placeholder until the real validator lands.
use std::sync::Arc;

use super::jws::{JoseHeader, Jws};
use super::keyset::KeySet;
use super::{AuthError, Principal};
use crate::config::Issuer;

pub fn check_header(_header: &JoseHeader, _issuer: &Issuer) -> Result<(), AuthError> {
    Err(AuthError::InvalidToken("algorithm not allowed"))
}

pub fn verify(
    _jws: &Jws,
    _keys: &KeySet,
    _issuer: &Issuer,
    _issuer_index: usize,
    _issuer_id: Arc<str>,
    _now: u64,
) -> Result<Principal, AuthError> {
    Err(AuthError::InvalidToken("signature verification failed"))
}

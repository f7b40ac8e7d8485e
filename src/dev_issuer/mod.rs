//! Dev issuer — stub.

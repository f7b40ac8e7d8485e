//! JWS compact serialization parsing (RFC 7515 §7.1) — stub, to be written.

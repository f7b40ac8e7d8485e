//! JWKS fetching and caching — stub, to be written.

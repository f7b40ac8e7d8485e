//! Proxy — stub.

//! metrics — stub.

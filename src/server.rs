//! server — stub.

//! admin — stub.

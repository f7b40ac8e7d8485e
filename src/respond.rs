//! respond — stub.

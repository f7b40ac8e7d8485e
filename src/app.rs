//! app — stub.

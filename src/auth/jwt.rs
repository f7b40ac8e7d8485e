//! Local JWT validation — stub, to be written.

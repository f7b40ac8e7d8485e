//! TOKENGATE_* environment variables — stub.

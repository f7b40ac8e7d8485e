//! serde mirror of the YAML file — stub.

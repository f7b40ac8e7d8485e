//! Raw → validated Config — stub.
use std::collections::HashMap;
use std::path::PathBuf;

use super::Config;

/// Where configuration comes from. Tests build one by hand; `main` fills it from the process.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The YAML file given with `--config`, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (only `TOKENGATE_*` and those named by `${…}` are read).
    pub env: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn load(_sources: &Sources) -> Result<Config, ConfigError> {
    Err(ConfigError("not yet implemented".into()))
}

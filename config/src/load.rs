//! Loading a configuration file: reading, hashing, parsing and resolving relative paths.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::drivers::DriverCatalog;
use crate::error::ConfigError;
use crate::parse::parse_str_with_plugins;
use crate::schema::Config;

/// A configuration loaded from a file, with what provenance records need.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The validated configuration, relative paths resolved against the file's directory.
    pub config: Config,
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// `sha256:<hex>` of the file bytes, recorded in every execution's provenance.
    pub hash: String,
}

/// Reads, parses and validates the configuration file at `path`, then resolves the relative
/// `service.data_dir`, `tls.cert` and `tls.key` against the file's directory. Devices may name the built-in
/// drivers only.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with_plugins(path, &DriverCatalog::builtin(), crate::BUILTIN_MODELS)
}

/// [`load`] accepting the drivers of `drivers` (the built-in ones and those an embedder registered).
pub fn load_with(path: &Path, drivers: &DriverCatalog) -> Result<LoadedConfig, ConfigError> {
    load_with_plugins(path, drivers, crate::BUILTIN_MODELS)
}

/// [`load`] for a runtime that knows the models `models` (see [`crate::parse_str_with_models`]).
pub fn load_with_models(path: &Path, models: &[&str]) -> Result<LoadedConfig, ConfigError> {
    load_with_plugins(path, &DriverCatalog::builtin(), models)
}

/// [`load`] for a runtime that knows the drivers of `drivers` and the models `models`.
pub fn load_with_plugins(
    path: &Path,
    drivers: &DriverCatalog,
    models: &[&str],
) -> Result<LoadedConfig, ConfigError> {
    let bytes = read_capped(path, MAX_CONFIG_BYTES)?;
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError::Syntax {
            origin: origin.clone(),
            line: Some(line),
            column: None,
            message: format!(
                "the file is not valid UTF-8 (first bad byte at offset {})",
                valid.len()
            ),
        }
    })?;
    let hash = hash_bytes(text.as_bytes());
    let mut config = parse_str_with_plugins(&text, &origin, drivers, models)?;
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    config.resolve_relative_to(base);
    Ok(LoadedConfig {
        config,
        path: path.to_path_buf(),
        text,
        hash,
    })
}

/// Largest configuration file read: 1 MiB (a config is a few KiB; this stops `/dev/zero` or a wrong file).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit + 1` bytes of `path`; more than `limit` is an error naming the file and the limit.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than the limit of {limit} bytes (1 MiB) for a configuration file"),
        )));
    }
    Ok(bytes)
}

/// `sha256:<lowercase hex>` of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    /// Makes the relative `service.data_dir`, `tls.cert` and `tls.key` relative to `base`
    /// (the directory of the configuration file). Absolute paths are kept.
    pub fn resolve_relative_to(&mut self, base: &Path) {
        resolve(base, &mut self.service.data_dir);
        if let Some(cert) = &mut self.tls.cert {
            resolve(base, cert);
        }
        if let Some(key) = &mut self.tls.key {
            resolve(base, key);
        }
    }

    /// The data directory (`service.data_dir`).
    pub fn data_dir(&self) -> &Path {
        &self.service.data_dir
    }

    /// The database file: `persistence.file` relative to the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.service.data_dir.join(&self.persistence.file)
    }
}

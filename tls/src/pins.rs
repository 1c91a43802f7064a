//! The client's known-servers file: a JSON object mapping `host:port` to a pinned fingerprint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::TlsError;
use crate::private_fs::{create_private_dir, read_capped, write_private_file};

/// Largest pins file read: 1 MiB (a few thousand servers).
pub const MAX_PINS_BYTES: u64 = 1024 * 1024;

/// Pinned server certificates (trust on first use), persisted as a JSON object
/// `{"host:port": "sha256:<hex>", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServers {
    path: PathBuf,
    pins: BTreeMap<String, String>,
}

/// `true` if `fp` is `sha256:` followed by exactly 64 lowercase hex digits.
pub fn is_valid_fingerprint(fp: &str) -> bool {
    fp.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl KnownServers {
    /// Loads the pins file; a missing file is an empty set of pins.
    pub fn load(path: &Path) -> Result<KnownServers, TlsError> {
        let pins = match read_capped(path, MAX_PINS_BYTES) {
            Ok(bytes) => parse(path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(TlsError::io(path, e)),
        };
        Ok(KnownServers {
            path: path.to_path_buf(),
            pins,
        })
    }

    /// The file these pins are stored in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pinned fingerprint for `server` (`host:port`, exactly as used when pinning).
    pub fn get(&self, server: &str) -> Option<&str> {
        self.pins.get(server).map(String::as_str)
    }

    /// All pins, sorted by server.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pins.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Pins `server` to fingerprint `fp` (replacing any previous pin) and saves the file atomically.
    pub fn pin(&mut self, server: &str, fp: &str) -> Result<(), TlsError> {
        if !is_valid_fingerprint(fp) {
            return Err(TlsError::BadFingerprint {
                server: server.to_string(),
                value: fp.to_string(),
            });
        }
        if server.is_empty() {
            return Err(TlsError::ServerKey {
                value: server.to_string(),
                reason: "empty server name".into(),
            });
        }
        let previous = self.pins.insert(server.to_string(), fp.to_string());
        if let Err(e) = self.save() {
            // Keep memory consistent with disk.
            match previous {
                Some(old) => self.pins.insert(server.to_string(), old),
                None => self.pins.remove(server),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Removes the pin for `server`; returns whether there was one. Saves the file if it changed.
    pub fn forget(&mut self, server: &str) -> Result<bool, TlsError> {
        let Some(old) = self.pins.remove(server) else {
            return Ok(false);
        };
        if let Err(e) = self.save() {
            self.pins.insert(server.to_string(), old);
            return Err(e);
        }
        Ok(true)
    }

    /// Writes the pins atomically to a private (0600) file in a private (0700) directory.
    fn save(&self) -> Result<(), TlsError> {
        let mut text =
            serde_json::to_string_pretty(&self.pins).map_err(|e| TlsError::PinsFile {
                path: self.path.clone(),
                reason: format!("cannot serialize: {e}"),
            })?;
        text.push('\n');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| TlsError::io(dir, e))?;
        }
        write_private_file(&self.path, text.as_bytes()).map_err(|e| TlsError::io(&self.path, e))
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, TlsError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let pins: BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(|e| TlsError::PinsFile {
            path: path.to_path_buf(),
            reason: format!("expected a JSON object {{\"host:port\": \"sha256:<hex>\", ...}}: {e}"),
        })?;
    for (server, fp) in &pins {
        if !is_valid_fingerprint(fp) {
            return Err(TlsError::PinsFile {
                path: path.to_path_buf(),
                reason: format!(
                    "entry {server:?}: fingerprint {fp:?} is not \"sha256:\" followed by 64 lowercase hex digits"
                ),
            });
        }
    }
    Ok(pins)
}

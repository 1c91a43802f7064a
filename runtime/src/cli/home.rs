//! Client state under `SHOTLINE_HOME` (default: the user's config dir + `/shotline`): the session per server
//! (`sessions.json`: user, token, expiry, how the server is trusted) and pinned certificates
//! (`known_servers.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use shotline_client::Trust;
use shotline_tls::private_fs::{create_private_dir, read_capped, write_private_file};

/// Largest sessions file read: 1 MiB.
const MAX_SESSIONS_BYTES: u64 = 1024 * 1024;

/// One stored session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// User.
    pub user: String,
    /// Bearer token.
    pub token: String,
    /// Expiry.
    pub expires_at: String,
    /// CA file, when the server is trusted through a CA instead of a pin.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// The client's home folder.
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `SHOTLINE_HOME` or the default.
    pub fn locate() -> anyhow::Result<Home> {
        let dir = match std::env::var_os("SHOTLINE_HOME") {
            Some(d) => PathBuf::from(d),
            None => dirs::config_dir()
                .ok_or_else(|| anyhow!("no config dir on this system: set SHOTLINE_HOME"))?
                .join("shotline"),
        };
        // 0700, tightened if an older version created it open to others: it holds bearer tokens.
        create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Home { dir })
    }

    /// The pins file.
    pub fn pins_file(&self) -> PathBuf {
        self.dir.join("known_servers.json")
    }

    fn sessions_file(&self) -> PathBuf {
        self.dir.join("sessions.json")
    }

    fn sessions(&self) -> anyhow::Result<BTreeMap<String, Session>> {
        let path = self.sessions_file();
        match read_capped(&path, MAX_SESSIONS_BYTES) {
            Ok(text) => serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a valid sessions file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The session stored for `server`.
    pub fn session(&self, server: &str) -> anyhow::Result<Session> {
        self.sessions()?.remove(server).ok_or_else(|| {
            anyhow!("not logged in to {server}: run `shotline login --server {server} --user NAME`")
        })
    }

    /// Stores the session of `server` (file created readable by the owner only).
    pub fn save_session(&self, server: &str, session: Session) -> anyhow::Result<()> {
        let mut all = self.sessions()?;
        all.insert(server.to_string(), session);
        self.write_sessions(&all)
    }

    /// Forgets the session of `server`.
    pub fn forget_session(&self, server: &str) -> anyhow::Result<()> {
        let mut all = self.sessions()?;
        if all.remove(server).is_some() {
            self.write_sessions(&all)?;
        }
        Ok(())
    }

    /// Writes the sessions atomically into a file created 0600 (never readable by others, not even
    /// for a moment).
    fn write_sessions(&self, all: &BTreeMap<String, Session>) -> anyhow::Result<()> {
        let path = self.sessions_file();
        write_private_file(&path, &serde_json::to_vec_pretty(all)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// How to trust `server`: its CA if the session says so, otherwise the pins file.
    pub fn trust(&self, ca: Option<PathBuf>) -> Trust {
        match ca {
            Some(ca_file) => Trust::Ca { ca_file },
            None => Trust::Pin {
                pins_file: self.pins_file(),
            },
        }
    }
}

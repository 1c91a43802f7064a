//! Client state under `SHOTLINE_HOME` (default: the user's config dir + `/shotline`): the session per server
//! (`sessions.json`: user, token, expiry, how the server is trusted) and pinned certificates
//! (`known_servers.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use shotline_client::Trust;

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
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
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
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
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

    /// Stores the session of `server` (file readable by the owner only).
    pub fn save_session(&self, server: &str, session: Session) -> anyhow::Result<()> {
        let mut all = self.sessions()?;
        all.insert(server.to_string(), session);
        let path = self.sessions_file();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Forgets the session of `server`.
    pub fn forget_session(&self, server: &str) -> anyhow::Result<()> {
        let mut all = self.sessions()?;
        if all.remove(server).is_some() {
            let path = self.sessions_file();
            std::fs::write(&path, serde_json::to_vec_pretty(&all)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
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

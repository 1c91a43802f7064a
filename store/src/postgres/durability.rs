//! The durability check at start: shotline acknowledges a write once its `COMMIT` returned, which is a
//! promise only if the server flushed the commit first (`synchronous_commit` on, `remote_write` or
//! `remote_apply`, and `fsync` on).

use tokio_postgres::Client;

use super::error::pg_error;
use crate::StoreError;

/// The server settings the durability promise depends on, as the session sees them (role and database
/// settings included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurabilitySettings {
    /// `SHOW synchronous_commit`.
    pub synchronous_commit: String,
    /// `SHOW fsync`.
    pub fsync: String,
}

impl DurabilitySettings {
    /// Reads the settings on `client`.
    pub async fn read(client: &Client) -> Result<Self, StoreError> {
        let show = |name: &'static str| async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(pg_error)
        };
        Ok(Self {
            synchronous_commit: show("synchronous_commit").await?,
            fsync: show("fsync").await?,
        })
    }

    /// Whether a returned `COMMIT` has been flushed to disk on the server.
    pub fn durable(&self) -> bool {
        matches!(
            self.synchronous_commit.as_str(),
            "on" | "remote_write" | "remote_apply"
        ) && self.fsync == "on"
    }
}

/// Refuses settings that acknowledge commits before they are durable, unless `allow_off`.
pub fn check_durability_settings(
    s: &DurabilitySettings,
    allow_off: bool,
) -> Result<(), StoreError> {
    if allow_off {
        return Ok(());
    }
    if !matches!(
        s.synchronous_commit.as_str(),
        "on" | "remote_write" | "remote_apply"
    ) {
        return Err(StoreError::PostgresSetting {
            setting: "synchronous_commit",
            expected: "on (or remote_write, remote_apply)",
            got: s.synchronous_commit.clone(),
        });
    }
    if s.fsync != "on" {
        return Err(StoreError::PostgresSetting {
            setting: "fsync",
            expected: "on",
            got: s.fsync.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sc: &str, fsync: &str) -> DurabilitySettings {
        DurabilitySettings {
            synchronous_commit: sc.into(),
            fsync: fsync.into(),
        }
    }

    #[test]
    fn commits_not_flushed_before_the_ack_are_refused_unless_allowed() {
        for ok in ["on", "remote_write", "remote_apply"] {
            assert!(
                check_durability_settings(&s(ok, "on"), false).is_ok(),
                "{ok}"
            );
        }
        for bad in ["off", "local"] {
            let e = check_durability_settings(&s(bad, "on"), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("synchronous_commit") && e.contains(bad), "{e}");
            assert!(e.contains("allow_synchronous_commit_off"), "{e}");
            assert!(check_durability_settings(&s(bad, "on"), true).is_ok());
        }
        let e = check_durability_settings(&s("on", "off"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fsync"), "{e}");
        assert!(!s("on", "off").durable());
        assert!(s("on", "on").durable());
    }
}

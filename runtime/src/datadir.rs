//! The data dir: private (0700, files 0600), claimed by one process at a time, and checked at start so the
//! server never serves from a damaged, vanished or truncated store.
//!
//! - **Claim**: `server.lock`, locked with `flock(LOCK_EX | LOCK_NB)` for the life of the server (and for the
//!   few moments a `shotline user ...` command works on the store directly). The kernel releases it when the
//!   process dies, so a crash never leaves a stale claim.
//! - **Initialised marker**: `INITIALISED` (the date of the first start). A data dir that has it, or that
//!   holds a TLS identity or an acknowledged-work mark from an earlier start, must have a non-empty database.
//! - **Integrity**: `PRAGMA quick_check` at every start.
//! - **Acknowledged work**: the store's writer thread keeps `<db>.ack-hwm` (highest job seq and job event id
//!   committed, see `shotline_store::marks`); at start a database behind it is refused, naming what is missing.
//!
//! `shotline serve --accept-data-loss` ([`accept_data_loss`]) re-bases the marks on the database as it is.
//!
//! With `store.postgres` only the claim, the marker and the acknowledged-work check apply (the mark is
//! `<data_dir>/postgres.ack-hwm`, see [`crate::postgres_marks`]).
//!
//! These checks are SQLite maintenance by nature (a file, its WAL, `PRAGMA quick_check`, a mark file next to
//! it), so they use the SQLite `Store` directly; everything else reaches the store through the engine-neutral
//! interface (`shotline_store::api`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use shotline_store::{read_ack_hwm, write_ack_hwm, Store};
use shotline_tls::private_fs::{create_private_dir, tighten_file, write_private_file};

/// The lock file a running server holds.
pub const LOCK_FILE: &str = "server.lock";
/// The marker written at the first start.
pub const MARKER_FILE: &str = "INITIALISED";

/// Why the data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds `server.lock`.
    #[error(
        "another shotline process (a server, or a `shotline user` command working on the store) holds data dir \
         {0} ({0}/server.lock is locked); stop it first or use another --data-dir"
    )]
    InUse(PathBuf),
    /// A filesystem operation failed.
    #[error("data dir {path}: cannot {what}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The database is missing, empty, damaged or behind the acknowledged work.
    #[error("{0}")]
    Refused(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The claim on a data dir; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates the data dir (0700) if needed and takes its lock: `Ok(None)` if another process holds it.
pub fn try_lock(data_dir: &Path) -> Result<Option<DataDirLock>, DataDirError> {
    create_private_dir(data_dir).map_err(io("create the directory", data_dir))?;
    let path = data_dir.join(LOCK_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(&path).map_err(io("open the lock file", &path))?;
    // SAFETY: flock on a file descriptor we own, with constant flags.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(DataDirLock { _file: file }));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(None);
    }
    Err(io("lock the lock file", &path)(e))
}

/// Takes the lock or fails with [`DataDirError::InUse`].
pub fn lock(data_dir: &Path) -> Result<DataDirLock, DataDirError> {
    try_lock(data_dir)?.ok_or_else(|| DataDirError::InUse(data_dir.to_path_buf()))
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// Restricts the database and its companions to the owner (files an older version created 0644).
fn tighten_store_files(db: &Path) -> Result<(), DataDirError> {
    for suffix in ["", "-wal", "-shm", shotline_store::marks::ACK_HWM_SUFFIX] {
        let p = with_suffix(db, suffix);
        tighten_file(&p).map_err(io("restrict the file to its owner", &p))?;
    }
    Ok(())
}

/// Why a data dir is known to have been in use before, if it is.
fn earlier_use(data_dir: &Path, db: &Path) -> Option<String> {
    if let Ok(bytes) = shotline_tls::private_fs::read_capped(&data_dir.join(MARKER_FILE), 4096) {
        let text = String::from_utf8_lossy(&bytes);
        let when = text.trim().trim_start_matches("initialised ").to_string();
        return Some(format!("was initialised on {when}"));
    }
    if shotline_store::ack_hwm_path(db).exists() {
        return Some("has a record of acknowledged jobs (the .ack-hwm file)".into());
    }
    if data_dir.join("tls").join(shotline_tls::KEY_FILE).exists() {
        return Some("holds the TLS identity (tls/) of an earlier start".into());
    }
    None
}

/// Checks the store of a data dir whose lock is held (blocking: opens the database and reads all of it):
/// refuses a missing or empty database in a data dir used before, a damaged database, and a database that
/// lacks acknowledged work; then writes the initialised marker if it is missing.
pub fn check_store(data_dir: &Path, db: &Path) -> Result<(), DataDirError> {
    tighten_store_files(db)?;
    let len = match std::fs::metadata(db) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read the database's metadata", db)(e)),
    };
    if len.unwrap_or(0) == 0 {
        if let Some(why) = earlier_use(data_dir, db) {
            return Err(DataDirError::Refused(format!(
                "the data dir {} {why}, but the database {} is {}: all users and jobs would be gone. Restore \
                 the database from a backup, or start with `shotline serve --accept-data-loss` to begin again \
                 with an empty database",
                data_dir.display(),
                db.display(),
                if len.is_none() { "missing" } else { "empty" }
            )));
        }
    }
    let damaged = |what: String| {
        DataDirError::Refused(format!(
            "the database {} is damaged ({what}); shotline does not serve from a damaged store: restore it from a \
             backup (stop the server, copy the backup over it and remove its -wal and -shm files)",
            db.display()
        ))
    };
    let store = Store::open(db).map_err(|e| damaged(format!("cannot open it: {e}")))?;
    let report = store
        .quick_check(10)
        .map_err(|e| damaged(format!("PRAGMA quick_check failed: {e}")))?;
    if !report.is_empty() {
        return Err(damaged(format!(
            "PRAGMA quick_check reported: {}",
            report.join("; ")
        )));
    }
    let marks = store
        .ack_marks()
        .map_err(|e| damaged(format!("cannot read the jobs: {e}")))?;
    drop(store);
    let acknowledged = read_ack_hwm(db).map_err(|e| DataDirError::Refused(e.to_string()))?;
    if let Some(missing) = acknowledged.and_then(|a| marks.missing(&a)) {
        return Err(DataDirError::Refused(format!(
            "the database {} lacks work that was acknowledged to clients: {missing}. Its WAL was probably \
             damaged in a crash, or an older copy was put in place. Restore the database from a backup, or \
             start with `shotline serve --accept-data-loss` to serve what it holds (the missing work is lost)",
            db.display()
        )));
    }
    ensure_marker(data_dir)
}

/// Writes the initialised marker if it is missing.
pub(crate) fn ensure_marker(data_dir: &Path) -> Result<(), DataDirError> {
    if !data_dir.join(MARKER_FILE).exists() {
        write_marker(data_dir)?;
    }
    Ok(())
}

fn write_marker(data_dir: &Path) -> Result<(), DataDirError> {
    let marker = data_dir.join(MARKER_FILE);
    write_private_file(
        &marker,
        format!("initialised {}\n", shotline_actors::time::utc_now()).as_bytes(),
    )
    .map_err(io("write the initialised marker", &marker))
}

/// `serve --accept-data-loss`: the operator accepts the database as it is. A missing or empty database starts
/// afresh (the marker and the acknowledged-work mark are removed); otherwise the acknowledged-work mark is set
/// to what the database holds. A damaged database is still refused. Returns what was done.
pub fn accept_data_loss(data_dir: &Path, db: &Path) -> Result<String, DataDirError> {
    let _lock = lock(data_dir)?;
    let hwm = shotline_store::ack_hwm_path(db);
    let empty = std::fs::metadata(db).map(|m| m.len() == 0).unwrap_or(true);
    if empty {
        for p in [data_dir.join(MARKER_FILE), hwm] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p)(e)),
            }
        }
        // Create the new database now, so the start-up check sees an initialised store.
        Store::open(db).map_err(|e| {
            DataDirError::Refused(format!("cannot create the database {}: {e}", db.display()))
        })?;
        return Ok(format!(
            "--accept-data-loss: {} is missing or empty; starting with an empty database",
            db.display()
        ));
    }
    let store = Store::open(db).map_err(|e| {
        DataDirError::Refused(format!(
            "the database {} cannot be opened: {e}",
            db.display()
        ))
    })?;
    let marks = store
        .ack_marks()
        .map_err(|e| DataDirError::Refused(e.to_string()))?;
    drop(store);
    let before = read_ack_hwm(db).ok().flatten();
    write_ack_hwm(db, &marks).map_err(|e| DataDirError::Refused(e.to_string()))?;
    Ok(match before.and_then(|a| marks.missing(&a)) {
        Some(missing) => {
            format!("--accept-data-loss: serving the database as it is; lost: {missing}")
        }
        None => "--accept-data-loss: nothing acknowledged is missing".into(),
    })
}

//! The acknowledged-work mark of a data dir whose store is PostgreSQL (`store.postgres`).
//!
//! The SQLite checks of `datadir` (the database file, `PRAGMA quick_check`, an empty file in a data dir used
//! before) do not apply: the database is a server's. What still applies is the acknowledged-work check: the
//! server records what the database held of acknowledged work (`Engine::ack_marks`: highest job `seq` and
//! job event id) in `<data_dir>/postgres.ack-hwm`, and at start a database behind that mark (restored from
//! an older backup, or another, emptier database put behind the URL) is refused, naming what is missing,
//! unless the operator starts with `serve --accept-data-loss`, which re-bases the mark on the database.
//!
//! The mark is written from what the database returned (a read after the commits), never from what was
//! acknowledged, so it never claims more than the database held: no false alarm. It is written every
//! [`MARK_INTERVAL`] while the server runs (only when it moved) and at a clean shutdown, so work acknowledged
//! in the last interval before a crash may go unnoticed by this check (the database itself keeps it: the
//! commit returned with `synchronous_commit` on). Several servers sharing one database each keep their own
//! mark; the marks only grow, since `seq` and event ids come from sequences of the shared database.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shotline_actors::persistence::Db;
use shotline_store::{read_ack_hwm, write_ack_hwm, AckMarks, StoreSelection};

use crate::datadir::DataDirError;

/// How often a running server records the database's marks.
pub const MARK_INTERVAL: Duration = Duration::from_secs(1);

/// The name the mark file is derived from: `<data_dir>/postgres.ack-hwm`.
const MARK_BASE: &str = "postgres";

/// The path `shotline_store::marks` derives the mark file from (`<data_dir>/postgres` + `.ack-hwm`).
fn mark_base(data_dir: &Path) -> PathBuf {
    data_dir.join(MARK_BASE)
}

/// The mark file of `data_dir`.
pub fn mark_path(data_dir: &Path) -> PathBuf {
    shotline_store::ack_hwm_path(&mark_base(data_dir))
}

/// What the database of `selection` holds of acknowledged work (opens a short-lived engine).
pub async fn database_marks(selection: &StoreSelection) -> Result<AckMarks, DataDirError> {
    let refused = |e: shotline_store::StoreError| {
        DataDirError::Refused(format!(
            "the store {}: cannot read what it holds: {e}",
            selection.describe()
        ))
    };
    let engine = shotline_store::open(selection).await.map_err(refused)?;
    let marks = engine.ack_marks().await;
    let _ = engine.shutdown().await;
    marks.map_err(refused)
}

/// Checks, in a data dir whose lock is held, that the database (described by `store`, holding `marks`)
/// has all the work the data dir's mark records as acknowledged; then writes the initialised marker if
/// missing. Blocking (small file reads and writes).
pub fn check(data_dir: &Path, store: &str, marks: &AckMarks) -> Result<(), DataDirError> {
    let acknowledged =
        read_ack_hwm(&mark_base(data_dir)).map_err(|e| DataDirError::Refused(e.to_string()))?;
    if let Some(missing) = acknowledged.and_then(|a| marks.missing(&a)) {
        return Err(DataDirError::Refused(format!(
            "the store {store} lacks work that was acknowledged to clients of the server with data dir {} \
             (its mark {}): {missing}. The database was probably restored from an older backup, or the URL \
             names another database. Restore the newest backup, or start with `shotline serve \
             --accept-data-loss` to serve what it holds (the missing work is lost)",
            data_dir.display(),
            mark_path(data_dir).display()
        )));
    }
    crate::datadir::ensure_marker(data_dir)
}

/// `serve --accept-data-loss` on PostgreSQL: the mark of `data_dir` is set to what the database holds.
/// Returns what was done.
pub fn accept_data_loss(data_dir: &Path, marks: &AckMarks) -> Result<String, DataDirError> {
    let _lock = crate::datadir::lock(data_dir)?;
    let before = read_ack_hwm(&mark_base(data_dir)).ok().flatten();
    record(data_dir, marks)?;
    Ok(match before.and_then(|a| marks.missing(&a)) {
        Some(missing) => {
            format!("--accept-data-loss: serving the database as it is; lost: {missing}")
        }
        None => "--accept-data-loss: nothing acknowledged is missing".into(),
    })
}

/// Writes `marks` as the data dir's mark (0600, synced, replaced atomically). Blocking.
pub fn record(data_dir: &Path, marks: &AckMarks) -> Result<(), DataDirError> {
    write_ack_hwm(&mark_base(data_dir), marks).map_err(|e| DataDirError::Refused(e.to_string()))
}

/// Records the database's marks into the data dir's mark if they moved past `last`; returns the marks
/// recorded (or `last` when nothing was read or written).
pub async fn record_if_moved(db: &Db, data_dir: &Arc<PathBuf>, last: AckMarks) -> AckMarks {
    let marks = match db.run(|e| async move { e.ack_marks().await }).await {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the acknowledged-work marks");
            return last;
        }
    };
    if marks.job_seq <= last.job_seq && marks.job_event <= last.job_event {
        return last;
    }
    let dir = Arc::clone(data_dir);
    match tokio::task::spawn_blocking(move || record(&dir, &marks)).await {
        Ok(Ok(())) => marks,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot record the acknowledged-work mark");
            last
        }
        Err(e) => {
            tracing::warn!(error = %e, "recording the acknowledged-work mark panicked");
            last
        }
    }
}

/// Records the database's marks every [`MARK_INTERVAL`] while the runtime runs (a task, aborted when this
/// is dropped), and once more at a clean shutdown ([`MarkWriter::finish`]).
#[derive(Debug)]
pub struct MarkWriter {
    task: tokio::task::JoinHandle<()>,
    db: Db,
    data_dir: Arc<PathBuf>,
}

impl MarkWriter {
    /// Starts the task; `start` is what the data dir's mark holds now.
    pub fn spawn(db: Db, data_dir: PathBuf, start: AckMarks) -> Self {
        let data_dir = Arc::new(data_dir);
        let task = {
            let (db, data_dir) = (db.clone(), Arc::clone(&data_dir));
            tokio::spawn(async move {
                let mut last = start;
                let mut tick = tokio::time::interval(MARK_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    last = record_if_moved(&db, &data_dir, last).await;
                }
            })
        };
        Self { task, db, data_dir }
    }

    /// Stops the task and records the marks once more (while the store is still open).
    pub async fn finish(self) {
        self.task.abort();
        record_if_moved(&self.db, &self.data_dir, AckMarks::default()).await;
    }
}

impl Drop for MarkWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! The acknowledged-work high-water mark, kept outside the database, and the integrity check.
//!
//! After every batch that changed the database and committed, the writer thread writes the highest job
//! `seq` and the highest job event id it has committed into a small file next to the database
//! (`<db>.ack-hwm`). A commit is acknowledged only after it returned, so the file never claims more than
//! the database held at that moment. If the database later holds less (a WAL damaged after a crash loses
//! the frames after a bad checksum; an older copy was put in place), the comparison at start-up
//! ([`AckMarks::missing`]) names what is missing.
//!
//! Cost: two indexed `MAX()` reads and one 64-byte `pwrite` (no fsync) per changing batch. Without the
//! fsync the file survives a process crash (the kernel keeps the write) but may lag after a power loss:
//! then less is detected, never a false alarm, since the database commit was synced first.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::{Store, StoreError};

/// Suffix of the high-water-mark file appended to the database file name.
pub const ACK_HWM_SUFFIX: &str = ".ack-hwm";

/// Size of the fixed-width record in the high-water-mark file.
const RECORD_LEN: usize = 64;

/// What the database holds of acknowledged work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckMarks {
    /// Highest job `seq` (0: no job).
    pub job_seq: i64,
    /// Highest job event id (every status change of a job adds one).
    pub job_event: i64,
}

impl AckMarks {
    /// Reads the marks from a connection.
    pub(crate) fn of(conn: &Connection) -> rusqlite::Result<AckMarks> {
        let job_seq = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM jobs")?
            .query_row([], |r| r.get(0))?;
        let job_event = conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM job_events")?
            .query_row([], |r| r.get(0))?;
        Ok(AckMarks { job_seq, job_event })
    }

    /// What `acknowledged` has and `self` (the database) lacks, in words; `None` if nothing is missing.
    pub fn missing(&self, acknowledged: &AckMarks) -> Option<String> {
        let mut parts = Vec::new();
        if acknowledged.job_seq > self.job_seq {
            let n = acknowledged.job_seq - self.job_seq;
            parts.push(format!(
                "the database ends at job seq {} but seq {} was acknowledged: {n} acknowledged job{} missing",
                self.job_seq,
                acknowledged.job_seq,
                if n == 1 { " is" } else { "s are" }
            ));
        }
        if acknowledged.job_event > self.job_event {
            let n = acknowledged.job_event - self.job_event;
            parts.push(format!(
                "the last job event is {} but {} was committed: {n} job status change{} (submissions, starts, \
                 results, cancels) missing",
                self.job_event,
                acknowledged.job_event,
                if n == 1 { " is" } else { "s are" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn encode(&self) -> [u8; RECORD_LEN] {
        let text = format!("seq {:020} event {:020}", self.job_seq, self.job_event);
        let mut out = [b' '; RECORD_LEN];
        out[..text.len()].copy_from_slice(text.as_bytes());
        out[RECORD_LEN - 1] = b'\n';
        out
    }

    fn decode(bytes: &[u8]) -> Option<AckMarks> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut words = text.split_whitespace();
        if words.next()? != "seq" {
            return None;
        }
        let job_seq = words.next()?.parse().ok()?;
        if words.next()? != "event" {
            return None;
        }
        let job_event = words.next()?.parse().ok()?;
        Some(AckMarks { job_seq, job_event })
    }
}

/// The high-water-mark file of the database at `db`: `<db>.ack-hwm`.
pub fn ack_hwm_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(ACK_HWM_SUFFIX);
    db.with_file_name(name)
}

/// Reads the high-water mark of the database at `db`: `Ok(None)` if there is no file yet.
pub fn read_ack_hwm(db: &Path) -> Result<Option<AckMarks>, StoreError> {
    let path = ack_hwm_path(db);
    let read = std::fs::File::open(&path).and_then(|f| {
        use std::io::Read;
        let mut bytes = Vec::new();
        // The record is 64 bytes; never read more than a few KiB of whatever is there.
        f.take(4096).read_to_end(&mut bytes).map(|_| bytes)
    });
    match read {
        // Created but never written (a crash right after the first open): nothing recorded yet.
        Ok(bytes) if bytes.is_empty() => Ok(None),
        Ok(bytes) => AckMarks::decode(&bytes).map(Some).ok_or_else(|| StoreError::Io {
            what: "parse the acknowledged-work mark",
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "expected \"seq N event M\"; delete it only if the database is known to be complete",
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            what: "read",
            path,
            source,
        }),
    }
}

/// Writes `marks` as the high-water mark of the database at `db` (created 0600), replacing the file.
pub fn write_ack_hwm(db: &Path, marks: &AckMarks) -> Result<(), StoreError> {
    let path = ack_hwm_path(db);
    let io = |source| StoreError::Io {
        what: "write",
        path: path.clone(),
        source,
    };
    let tmp = path.with_extension("ack-hwm.tmp");
    let _ = std::fs::remove_file(&tmp);
    let f = open_private(&tmp, true).map_err(io)?;
    write_at(&f, &marks.encode()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn write_at(f: &File, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(bytes, 0)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, Write};
        let mut f = f;
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(bytes)
    }
}

/// Kept by the writer thread: the open mark file and the last marks written.
pub(crate) struct HwmWriter {
    file: Option<File>,
    path: PathBuf,
    last: AckMarks,
    changes: u64,
    written: bool,
}

impl HwmWriter {
    /// Opens (creating 0600) the mark file of `db`, starting from what it holds.
    pub(crate) fn open(db: &Path, store: &Store) -> HwmWriter {
        let path = ack_hwm_path(db);
        let last = read_ack_hwm(db).ok().flatten().unwrap_or_default();
        let file = match open_private(&path, false) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot open the acknowledged-work mark; lost commits will not be detected at start");
                None
            }
        };
        let mut writer = HwmWriter {
            file,
            path,
            last,
            changes: store.conn.total_changes(),
            written: false,
        };
        // Start from what the database holds now (never lowering the mark), so the file is always valid.
        writer.record(store);
        writer
    }

    /// After a successful COMMIT: records the new marks if the batch changed the database.
    pub(crate) fn committed(&mut self, store: &Store) {
        if self.file.is_none() {
            return;
        }
        let changes = store.conn.total_changes();
        if changes == self.changes {
            return;
        }
        self.changes = changes;
        self.record(store);
    }

    fn record(&mut self, store: &Store) {
        let Some(file) = &self.file else { return };
        let marks = match AckMarks::of(&store.conn) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the acknowledged-work marks");
                return;
            }
        };
        let next = AckMarks {
            job_seq: marks.job_seq.max(self.last.job_seq),
            job_event: marks.job_event.max(self.last.job_event),
        };
        if next == self.last && self.written {
            return;
        }
        if let Err(e) = write_at(file, &next.encode()) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot update the acknowledged-work mark");
            return;
        }
        self.last = next;
        self.written = true;
    }
}

impl Store {
    /// What the database holds of acknowledged work (highest job seq and job event id).
    pub fn ack_marks(&self) -> Result<AckMarks, StoreError> {
        Ok(AckMarks::of(&self.conn)?)
    }

    /// Runs `PRAGMA quick_check`: an empty list if the database is sound, otherwise what SQLite reported
    /// (at most `max_lines` lines).
    pub fn quick_check(&self, max_lines: u32) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA quick_check({})", max_lines.max(1)))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(if lines.len() == 1 && lines[0] == "ok" {
            Vec::new()
        } else {
            lines
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_name_what_is_missing() {
        let m = AckMarks {
            job_seq: 20,
            job_event: 45,
        };
        assert_eq!(AckMarks::decode(&m.encode()), Some(m));
        let db = AckMarks {
            job_seq: 10,
            job_event: 45,
        };
        let msg = db.missing(&m).unwrap();
        assert!(
            msg.contains(
                "ends at job seq 10 but seq 20 was acknowledged: 10 acknowledged jobs are missing"
            ),
            "{msg}"
        );
        assert_eq!(m.missing(&db), None);
    }

    /// The cost the mark adds to a committed batch, next to the batch's own commit. Run with
    /// `cargo test --release -p shotline-store --lib marks::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cost() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let thread = crate::DbThread::spawn(&db, 64).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let uid = rt
            .block_on(thread.run(|s| s.add_user("u", None, "h", false, "2026-01-01T00:00:00Z")))
            .unwrap()
            .id;
        let job = move |i: usize| crate::NewJob {
            id: format!("job-{i}"),
            user_id: uid,
            backend: "b".into(),
            qobj_id: None,
            priority: 0,
            tags: vec![],
            idempotency_key: None,
            body: "{}".into(),
            submitted_at: "2026-01-01T00:00:00Z".into(),
        };
        // Fill 20 000 jobs in big batches, then time one commit per job (what a lone submit costs).
        for chunk in 0..20 {
            rt.block_on(thread.run(move |s| {
                for i in 0..1000 {
                    s.insert_job(&job(chunk * 1000 + i))?;
                }
                Ok(())
            }))
            .unwrap();
        }
        let n = 300;
        let t = Instant::now();
        for i in 0..n {
            rt.block_on(thread.run(move |s| s.insert_job(&job(100_000 + i))))
                .unwrap();
        }
        let per_commit = t.elapsed() / n as u32;
        drop(thread);
        let store = Store::open(&db).unwrap();
        let mut w = HwmWriter::open(&db, &store);
        let k = 20_000u32;
        let t = Instant::now();
        for _ in 0..k {
            let _ = AckMarks::of(&store.conn).unwrap();
        }
        let read = t.elapsed() / k;
        let file = w.file.take().unwrap();
        let t = Instant::now();
        for i in 0..k {
            let m = AckMarks {
                job_seq: i64::from(i),
                job_event: 0,
            };
            write_at(&file, &m.encode()).unwrap();
        }
        let write = t.elapsed() / k;
        eprintln!(
            "one-job commit (fsync, incl. mark): {per_commit:?}; mark: read {read:?} + write {write:?} per batch"
        );
    }
}

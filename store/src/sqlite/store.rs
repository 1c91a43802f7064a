//! The [`Store`]: opening with durability checks, and every query.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::*;
use super::schema;
use crate::error::{violation, Violation};
use crate::records::*;
use crate::StoreError;

/// A SQLite-backed shotline store. One connection; not `Sync` — share it through a
/// [`DbThread`](crate::DbThread).
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
}

type Result<T> = std::result::Result<T, StoreError>;

fn check_durability(journal_mode: &str, synchronous: i64) -> Result<()> {
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Durability {
            pragma: "journal_mode",
            expected: "wal".into(),
            got: journal_mode.into(),
        });
    }
    if synchronous != 2 {
        return Err(StoreError::Durability {
            pragma: "synchronous",
            expected: "2 (FULL)".into(),
            got: synchronous.to_string(),
        });
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (an existing file is left as it is).
fn create_private_file(path: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            what: "create the database file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn day_ok(day: &str) -> bool {
    day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())
}

impl Store {
    /// Opens (creating if needed, with parent directories) the database at `path`, enables WAL,
    /// `synchronous=FULL`, foreign keys and a 5 s busy timeout, verifies the durability pragmas by
    /// reading them back, and applies pending migrations.
    ///
    /// A missing directory is created 0700 and a missing database file 0600 before SQLite opens it, whatever
    /// the umask; SQLite gives the `-wal` and `-shm` files the mode of the database file.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut dir = std::fs::DirBuilder::new();
            dir.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
            dir.create(parent).map_err(|source| StoreError::Io {
                what: "create the database directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(5000))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let mut store = Store { conn };
        let p = store.pragmas()?;
        check_durability(&p.journal_mode, p.synchronous)?;
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// Reads back `journal_mode` and `synchronous`.
    pub fn pragmas(&self) -> Result<Pragmas> {
        let journal_mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let synchronous: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok(Pragmas {
            journal_mode: journal_mode.to_ascii_lowercase(),
            synchronous,
        })
    }

    /// The applied schema version.
    pub fn schema_version(&self) -> Result<u32> {
        schema::current_version(&self.conn)
    }

    /// Runs `f` atomically inside a savepoint (nests inside the writer thread's batch transaction;
    /// outside a transaction it is its own transaction).
    pub(crate) fn atomic<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("SAVEPOINT store_atomic")?;
        match f(&self.conn) {
            Ok(v) => {
                self.conn.execute_batch("RELEASE store_atomic")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(re) = self
                    .conn
                    .execute_batch("ROLLBACK TO store_atomic; RELEASE store_atomic")
                {
                    tracing::error!(error = %re, "rolling back a failed store operation failed");
                }
                Err(e)
            }
        }
    }

    // ----- users -----

    /// Adds a user. A duplicate name is a [`StoreError::Conflict`].
    pub fn add_user(
        &self,
        name: &str,
        email: Option<&str>,
        password_hash: &str,
        is_admin: bool,
        now: &str,
    ) -> Result<UserRecord> {
        if name.is_empty() {
            return Err(StoreError::invalid("user name", name, "a non-empty name"));
        }
        let now = normalize_time("now", now)?;
        self.conn
            .execute(
                "INSERT INTO users (name, email, password_hash, is_admin, disabled, created_at) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![name, email, password_hash, i64::from(is_admin), now],
            )
            .map_err(|e| match violation(&e) {
                Some(Violation::Unique) => StoreError::Conflict(format!(
                    "user {name:?} already exists; choose another name"
                )),
                _ => e.into(),
            })?;
        Ok(UserRecord {
            id: self.conn.last_insert_rowid(),
            name: name.to_owned(),
            email: email.map(str::to_owned),
            password_hash: password_hash.to_owned(),
            is_admin,
            disabled: false,
            created_at: now,
        })
    }

    /// Looks a user up by name.
    pub fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE name = ?1");
        Ok(self
            .conn
            .query_row(&sql, [name], user_from_row)
            .optional()?)
    }

    /// Looks a user up by id.
    pub fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], user_from_row).optional()?)
    }

    /// All users, ordered by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY name");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], user_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Disables or re-enables a user. Unknown name -> [`StoreError::NotFound`]. Disabling also revokes every
    /// token of the user in the same transaction, so re-enabling the user later does not revive them.
    pub fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.atomic(|c| {
            let n = c.execute(
                "UPDATE users SET disabled = ?1 WHERE name = ?2",
                params![i64::from(disabled), name],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {name:?}")));
            }
            if disabled {
                c.execute(
                    "UPDATE tokens SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
                    [name],
                )?;
            }
            Ok(())
        })
    }

    // ----- tokens -----

    /// Stores a token hash for `user_id`, valid until `expires_at`.
    pub fn insert_token(
        &self,
        token_hash: &str,
        user_id: i64,
        now: &str,
        expires_at: &str,
    ) -> Result<()> {
        let now = normalize_time("now", now)?;
        let expires_at = normalize_time("expires_at", expires_at)?;
        self.conn
            .execute(
                "INSERT INTO tokens (token_hash, user_id, created_at, expires_at, revoked) \
                 VALUES (?1, ?2, ?3, ?4, 0)",
                params![token_hash, user_id, now, expires_at],
            )
            .map_err(|e| match violation(&e) {
                Some(Violation::ForeignKey) => StoreError::NotFound(format!("user id {user_id}")),
                Some(Violation::Unique) => StoreError::Conflict("token hash already stored".into()),
                None => e.into(),
            })?;
        Ok(())
    }

    /// The user a token authenticates at `now`: `None` if the token is unknown, revoked, expired
    /// (`expires_at <= now`, compared as normalised strings) or its user is disabled.
    pub fn user_for_token(&self, token_hash: &str, now: &str) -> Result<Option<UserRecord>> {
        let now = normalize_time("now", now)?;
        let cols = USER_COLS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ?1 AND t.revoked = 0 AND t.expires_at > ?2 AND u.disabled = 0"
        );
        Ok(self
            .conn
            .query_row(&sql, params![token_hash, now], user_from_row)
            .optional()?)
    }

    /// Revokes a token. Returns false if it was unknown.
    pub fn revoke_token(&self, token_hash: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1",
            [token_hash],
        )?;
        Ok(n > 0)
    }

    // ----- jobs -----

    /// Inserts a job with status `QUEUED` and the next `seq`, appending a job event. If the job has
    /// an idempotency key already used by the same user, the existing job is returned with
    /// `existing: true` and nothing is written.
    pub fn insert_job(&self, job: &NewJob) -> Result<Inserted> {
        let submitted_at = normalize_time("submitted_at", &job.submitted_at)?;
        let tags = serde_json::to_string(&job.tags)
            .map_err(|e| StoreError::invalid("tags", &e.to_string(), "a list of strings"))?;
        self.atomic(|c| {
            if let Some(key) = &job.idempotency_key {
                let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE user_id = ?1 AND idempotency_key = ?2");
                if let Some(existing) = c.query_row(&sql, params![job.user_id, key], job_from_row).optional()? {
                    return Ok(Inserted { job: existing, existing: true });
                }
            }
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| r.get(0))?;
            c.execute(
                "INSERT INTO jobs (id, seq, user_id, backend, qobj_id, priority, tags, idempotency_key, \
                 body, status, detail, error_message, attempts, submitted_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, 0, ?11, ?11)",
                params![
                    job.id, seq, job.user_id, job.backend, job.qobj_id, job.priority, tags,
                    job.idempotency_key, job.body, STATUS_QUEUED, submitted_at
                ],
            )
            .map_err(|e| match violation(&e) {
                Some(Violation::ForeignKey) => StoreError::NotFound(format!("user id {}", job.user_id)),
                Some(Violation::Unique) => {
                    StoreError::Conflict(format!("job id {:?} already exists; use a fresh job id", job.id))
                }
                None => e.into(),
            })?;
            c.execute(
                "INSERT INTO job_events (job_id, status, detail, at) VALUES (?1, ?2, NULL, ?3)",
                params![job.id, STATUS_QUEUED, submitted_at],
            )?;
            let record = JobRecord {
                id: job.id.clone(),
                seq,
                user_id: job.user_id,
                backend: job.backend.clone(),
                qobj_id: job.qobj_id.clone(),
                priority: job.priority,
                tags: job.tags.clone(),
                idempotency_key: job.idempotency_key.clone(),
                body: job.body.clone(),
                status: STATUS_QUEUED.to_owned(),
                detail: None,
                error_message: None,
                attempts: 0,
                submitted_at: submitted_at.clone(),
                updated_at: submitted_at.clone(),
            };
            Ok(Inserted { job: record, existing: false })
        })
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], job_from_row).optional()?)
    }

    /// Changes a job's status and appends a job event. Unknown id -> [`StoreError::NotFound`].
    pub fn set_job_status(
        &self,
        id: &str,
        status: &str,
        detail: Option<&str>,
        error_message: Option<&str>,
        now: &str,
    ) -> Result<()> {
        if status.is_empty() {
            return Err(StoreError::invalid(
                "status",
                status,
                "a non-empty job status",
            ));
        }
        let now = normalize_time("now", now)?;
        self.atomic(|c| {
            let n = c.execute(
                "UPDATE jobs SET status = ?1, detail = ?2, error_message = ?3, updated_at = ?4 WHERE id = ?5",
                params![status, detail, error_message, now, id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("job {id:?}")));
            }
            c.execute(
                "INSERT INTO job_events (job_id, status, detail, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, status, detail, now],
            )?;
            Ok(())
        })
    }

    /// Increments a job's attempt counter and returns the new value.
    pub fn increment_attempts(&self, id: &str) -> Result<u32> {
        self.atomic(|c| {
            let n = c.execute(
                "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?1",
                [id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("job {id:?}")));
            }
            let v: i64 = c.query_row("SELECT attempts FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
            u32::try_from(v).map_err(|_| {
                StoreError::Conflict(format!("job {id:?} has too many attempts ({v})"))
            })
        })
    }

    /// Jobs in `status`, in submission order.
    pub fn jobs_with_status(&self, status: &str) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE status = ?1 ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([status], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The status history of a job, oldest first.
    pub fn job_events(&self, id: &str) -> Result<Vec<JobEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, job_id, status, detail, at FROM job_events WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], event_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of jobs of `backend` in `status`.
    pub fn count_jobs(&self, backend: &str, status: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM jobs WHERE backend = ?1 AND status = ?2",
            params![backend, status],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ----- executions -----

    /// Allocates the next execution id of `day` (`YYYYMMDD`, UTC): `YYYYMMDD-NNN`, at least three
    /// digits, widening past 999. The counter is persisted, so ids are never reused, also across
    /// reopen.
    pub fn next_execution_id(&self, day: &str) -> Result<String> {
        if !day_ok(day) {
            return Err(StoreError::invalid(
                "day",
                day,
                "a UTC date as YYYYMMDD, e.g. 20261122",
            ));
        }
        self.atomic(|c| {
            c.execute(
                "INSERT INTO execution_counters (day, last) VALUES (?1, 1) \
                 ON CONFLICT (day) DO UPDATE SET last = execution_counters.last + 1",
                [day],
            )?;
            let n: i64 = c.query_row(
                "SELECT last FROM execution_counters WHERE day = ?1",
                [day],
                |r| r.get(0),
            )?;
            Ok(format!("{day}-{n:03}"))
        })
    }

    /// Records the start of an execution.
    pub fn insert_execution(&self, e: &ExecutionRecord) -> Result<()> {
        let started_at = normalize_time("started_at", &e.started_at)?;
        let ended_at = e
            .ended_at
            .as_deref()
            .map(|t| normalize_time("ended_at", t))
            .transpose()?;
        self.conn
            .execute(
                "INSERT INTO executions (id, job_id, backend, attempt, seed, config_hash, software_version, \
                 calibration, started_at, ended_at, outcome, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    e.id, e.job_id, e.backend, e.attempt, e.seed as i64, e.config_hash, e.software_version,
                    e.calibration, started_at, ended_at, e.outcome, e.detail
                ],
            )
            .map_err(|err| match violation(&err) {
                Some(Violation::ForeignKey) => StoreError::NotFound(format!("job {:?}", e.job_id)),
                Some(Violation::Unique) => StoreError::Conflict(format!(
                    "execution id {:?} already exists; allocate ids with next_execution_id",
                    e.id
                )),
                None => err.into(),
            })?;
        Ok(())
    }

    /// Records the end of an execution. Unknown id -> [`StoreError::NotFound`].
    pub fn finish_execution(
        &self,
        id: &str,
        ended_at: &str,
        outcome: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let ended_at = normalize_time("ended_at", ended_at)?;
        let n = self.conn.execute(
            "UPDATE executions SET ended_at = ?1, outcome = ?2, detail = ?3 WHERE id = ?4",
            params![ended_at, outcome, detail, id],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("execution {id:?}")));
        }
        Ok(())
    }

    /// An execution by id.
    pub fn execution(&self, id: &str) -> Result<Option<ExecutionRecord>> {
        let sql = format!("SELECT {EXECUTION_COLS} FROM executions WHERE id = ?1");
        Ok(self
            .conn
            .query_row(&sql, [id], execution_from_row)
            .optional()?)
    }

    /// The executions of a job, by attempt.
    pub fn executions_for_job(&self, job_id: &str) -> Result<Vec<ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLS} FROM executions WHERE job_id = ?1 ORDER BY attempt, id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([job_id], execution_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- shot data -----

    /// Stores the data of one experiment of an execution.
    pub fn insert_shot_data(&self, d: &ShotDataRecord) -> Result<()> {
        let (first, last, memory) = d.stored_columns()?;
        self.conn
            .execute(
                "INSERT INTO shot_data (execution_id, experiment_index, experiment_name, shots, memory, \
                 timing, first_shot_at, last_shot_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![d.execution_id, d.experiment_index, d.experiment_name, d.shots, memory, d.timing, first, last],
            )
            .map_err(|err| match violation(&err) {
                Some(Violation::ForeignKey) => StoreError::NotFound(format!("execution {:?}", d.execution_id)),
                Some(Violation::Unique) => StoreError::Conflict(format!(
                    "shot data for execution {:?} experiment {} already stored",
                    d.execution_id, d.experiment_index
                )),
                None => err.into(),
            })?;
        Ok(())
    }

    /// The shot data of an execution, by experiment index.
    pub fn shot_data(&self, execution_id: &str) -> Result<Vec<ShotDataRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT execution_id, experiment_index, experiment_name, shots, memory, timing, first_shot_at, \
             last_shot_at FROM shot_data WHERE execution_id = ?1 ORDER BY experiment_index",
        )?;
        let rows = stmt.query_map([execution_id], shot_data_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- results -----

    /// Stores the result of a job. A job has at most one result: a second put is a
    /// [`StoreError::Conflict`] (exactly-once results).
    pub fn put_result(
        &self,
        job_id: &str,
        execution_id: &str,
        body_json: &str,
        now: &str,
    ) -> Result<()> {
        let now = normalize_time("now", now)?;
        self.conn
            .execute(
                "INSERT INTO results (job_id, execution_id, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![job_id, execution_id, body_json, now],
            )
            .map_err(|e| match violation(&e) {
                Some(Violation::Unique) => StoreError::Conflict(format!(
                    "job {job_id:?} already has a result; results are stored exactly once"
                )),
                Some(Violation::ForeignKey) => StoreError::NotFound(format!("job {job_id:?}")),
                None => e.into(),
            })?;
        Ok(())
    }

    /// The result of a job, if stored.
    pub fn result(&self, job_id: &str) -> Result<Option<ResultRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT job_id, execution_id, body, created_at FROM results WHERE job_id = ?1",
                [job_id],
                |r| {
                    Ok(ResultRecord {
                        job_id: r.get(0)?,
                        execution_id: r.get(1)?,
                        body: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    // ----- locks -----

    /// Takes or refreshes a lock. If another owner holds it, this is a [`StoreError::Conflict`]
    /// unless that lock has an `expires_at` at or before `acquired_at`, in which case it is taken over.
    pub fn put_lock(
        &self,
        resource: &str,
        owner: &str,
        acquired_at: &str,
        expires_at: Option<&str>,
    ) -> Result<()> {
        let acquired_at = normalize_time("acquired_at", acquired_at)?;
        let expires_at = expires_at
            .map(|t| normalize_time("expires_at", t))
            .transpose()?;
        self.atomic(|c| {
            let held = c
                .query_row(
                    "SELECT resource, owner, acquired_at, expires_at FROM locks WHERE resource = ?1",
                    [resource],
                    lock_from_row,
                )
                .optional()?;
            if let Some(h) = &held {
                let expired = h.expires_at.as_deref().is_some_and(|e| e <= acquired_at.as_str());
                if h.owner != owner && !expired {
                    return Err(StoreError::Conflict(format!(
                        "lock {resource:?} is held by {:?} since {}; wait for its release or force-delete it",
                        h.owner, h.acquired_at
                    )));
                }
                c.execute(
                    "UPDATE locks SET owner = ?1, acquired_at = ?2, expires_at = ?3 WHERE resource = ?4",
                    params![owner, acquired_at, expires_at, resource],
                )?;
            } else {
                c.execute(
                    "INSERT INTO locks (resource, owner, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![resource, owner, acquired_at, expires_at],
                )?;
            }
            Ok(())
        })
    }

    /// Releases a lock held by `owner`. Returns false (and changes nothing) if it is not held by `owner`.
    pub fn delete_lock(&self, resource: &str, owner: &str) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM locks WHERE resource = ?1 AND owner = ?2",
            params![resource, owner],
        )?;
        Ok(n > 0)
    }

    /// Releases a lock whoever holds it. Returns false if it was not held.
    pub fn force_delete_lock(&self, resource: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM locks WHERE resource = ?1", [resource])?;
        Ok(n > 0)
    }

    /// All held locks, by resource.
    pub fn locks(&self) -> Result<Vec<LockRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT resource, owner, acquired_at, expires_at FROM locks ORDER BY resource",
        )?;
        let rows = stmt.query_map([], lock_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- calibrations and backend configs -----

    /// Records a calibration value (its `id` is ignored); returns the new id.
    pub fn insert_calibration(&self, cal: &CalibrationRecord) -> Result<i64> {
        let at = normalize_time("calibrated_at", &cal.calibrated_at)?;
        self.conn.execute(
            "INSERT INTO calibrations (backend, name, value, execution_id, task, calibrated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                cal.backend,
                cal.name,
                cal.value,
                cal.execution_id,
                cal.task,
                at
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// All calibration values of a backend, oldest first.
    pub fn calibrations(&self, backend: &str) -> Result<Vec<CalibrationRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, backend, name, value, execution_id, task, calibrated_at FROM calibrations \
             WHERE backend = ?1 ORDER BY calibrated_at, id",
        )?;
        let rows = stmt.query_map([backend], calibration_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a backend config under its hash unless already recorded. Returns true if inserted.
    pub fn record_backend_config(
        &self,
        backend: &str,
        hash: &str,
        body: &str,
        now: &str,
    ) -> Result<bool> {
        let now = normalize_time("now", now)?;
        let n = self.conn.execute(
            "INSERT INTO backend_configs (backend, config_hash, body, recorded_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (backend, config_hash) DO NOTHING",
            params![backend, hash, body, now],
        )?;
        Ok(n > 0)
    }

    /// The recorded body of a backend config, if any.
    pub fn backend_config(&self, backend: &str, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT body FROM backend_configs WHERE backend = ?1 AND config_hash = ?2",
                params![backend, hash],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::{check_durability, StoreError};

    #[test]
    fn durability_check_names_the_pragma() {
        assert!(check_durability("wal", 2).is_ok());
        assert!(check_durability("WAL", 2).is_ok());
        match check_durability("delete", 2) {
            Err(StoreError::Durability { pragma, got, .. }) => {
                assert_eq!(pragma, "journal_mode");
                assert_eq!(got, "delete");
            }
            other => panic!("expected a durability error, got {other:?}"),
        }
        match check_durability("wal", 1) {
            Err(StoreError::Durability { pragma, .. }) => assert_eq!(pragma, "synchronous"),
            other => panic!("expected a durability error, got {other:?}"),
        }
    }
}

//! The engine-neutral store interface: what the runtime needs from its durable store, as async,
//! object-safe traits. Both engines (SQLite, the embedded default, and PostgreSQL for a lab) implement
//! every trait; the actors hold an `Arc<dyn Engine>` and never see SQL or a connection type.
//!
//! # Contract common to every method
//! - **One method = one atomic transaction.** Either everything the method documents happened and was
//!   committed durably (SQLite: WAL + `synchronous=FULL`; PostgreSQL: `synchronous_commit` on) before the
//!   future resolves `Ok`, or nothing of it happened.
//! - **Acknowledge after commit.** A future resolves only after the engine's commit returned.
//! - **Times** are RFC 3339 UTC strings passed in by the caller (`now`, `started_at`, ...), normalised by
//!   [`normalize_time`](crate::normalize_time) before they are stored; engines never read the clock for
//!   data they store (lease expiry compares the caller's `now`).
//! - **Statuses and outcomes** cross this boundary typed ([`JobStatus`], [`ExecutionOutcome`]); the
//!   records keep their stored text form (`JobRecord::status` is `"QUEUED"`, ... ; parse it with
//!   [`JobRecord::job_status`](crate::JobRecord::job_status)).
//! - **Errors** are [`StoreError`]s; storage problems (disk full, failing storage, lost database) answer
//!   [`StoreError::storage_problem`] with `Some`.
//! - The futures are `Send` and borrow their arguments; dropping one before it resolves does not undo a
//!   transaction that already committed (the caller then does not know: treat as "maybe").

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use shotline_protocol::JobStatus;

use crate::marks::AckMarks;
use crate::records::{
    CalibrationRecord, ExecutionRecord, JobEvent, JobFilter, JobRecord, LockRecord, NewJob,
    ResultRecord, ShotDataRecord, UserRecord,
};
use crate::StoreError;

/// The future every store method returns: resolves once the method's transaction has committed.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Embedded SQLite, one writer thread (the default).
    Sqlite,
    /// A PostgreSQL server, shared by several processes.
    Postgres,
}

impl EngineKind {
    /// `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sqlite => "sqlite",
            EngineKind::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which store to open (see [`open`](crate::open)).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSelection {
    /// The SQLite database file `path` (created 0600, its directory 0700), with a writer queue of
    /// `queue_capacity` operations (`persistence.queue_capacity`).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Operations that may wait for the writer thread (at least 1).
        queue_capacity: usize,
    },
    /// The PostgreSQL database at `url` (`postgresql://USER@HOST:PORT/DB`).
    Postgres {
        /// Connection URL; may hold a password, so never print it (see [`StoreSelection::describe`]).
        url: String,
        /// Run even if the server's `synchronous_commit` is `off` or `local` (acknowledged work may then
        /// be lost in a server crash).
        allow_synchronous_commit_off: bool,
    },
}

impl StoreSelection {
    /// The engine this selection opens.
    pub fn kind(&self) -> EngineKind {
        match self {
            StoreSelection::Sqlite { .. } => EngineKind::Sqlite,
            StoreSelection::Postgres { .. } => EngineKind::Postgres,
        }
    }

    /// A description for logs and errors: the SQLite path, or the PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreSelection::Sqlite { path, .. } => format!("sqlite {}", path.display()),
            StoreSelection::Postgres { url, .. } => format!("postgres {}", redact_url(url)),
        }
    }
}

impl std::fmt::Debug for StoreSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password of a PostgreSQL URL.
        f.write_str(&self.describe())
    }
}

/// `url` with the password of its user-info part (`user:PASSWORD@host`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    // A password may also come as a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// How an execution ended (stored as its text form in `executions.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionOutcome {
    /// Every experiment ran; the result is stored.
    Done,
    /// Failed; the detail says why.
    Error,
    /// Stopped by a cancel at a shot boundary.
    Cancelled,
    /// Stopped by a shutdown, pause, restart or crash; the job was re-queued or failed.
    Interrupted,
}

impl ExecutionOutcome {
    /// The stored text: `DONE`, `ERROR`, `CANCELLED`, `INTERRUPTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionOutcome::Done => "DONE",
            ExecutionOutcome::Error => "ERROR",
            ExecutionOutcome::Cancelled => "CANCELLED",
            ExecutionOutcome::Interrupted => "INTERRUPTED",
        }
    }

    /// Parses the stored text (`None`: a value no release writes).
    pub fn parse(text: &str) -> Option<ExecutionOutcome> {
        [
            ExecutionOutcome::Done,
            ExecutionOutcome::Error,
            ExecutionOutcome::Cancelled,
            ExecutionOutcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

impl std::fmt::Display for ExecutionOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer of [`JobStore::admit_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The job was stored `QUEUED` with the next `seq` and its first event.
    Admitted(JobRecord),
    /// The user already submitted a job with this idempotency key: that job, nothing written.
    Existing(JobRecord),
    /// The user already has `active` jobs `QUEUED` or `RUNNING` (at least the limit): nothing written.
    LimitReached {
        /// The user's queued and running jobs.
        active: u64,
    },
}

/// An execution to close as part of a life-cycle transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionEnd<'a> {
    /// The execution id.
    pub id: &'a str,
    /// How it ended.
    pub outcome: ExecutionOutcome,
    /// Why (stored as the execution's detail).
    pub detail: &'a str,
}

/// The recovery policy applied to a job found `RUNNING` whose execution is gone
/// ([`ExecutionStore::settle_running`]); plain data, so every engine applies the same rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlePolicy {
    /// What interrupted the job (e.g. `interrupted by restart`); ` at <where>` is appended, where
    /// `<where>` is the progress its last open execution recorded (`shot K of N`) or `an unknown shot`.
    pub cause: String,
    /// A fault (restart, panic: subject to `max_attempts` and `fail_interrupted`) rather than a clean
    /// stop (shutdown, pause, emergency stop: always re-queued).
    pub counted: bool,
    /// A counted job already started this many times ends `ERROR` instead of being re-queued.
    pub max_attempts: u32,
    /// `recovery.on_interrupted: fail`: a counted job ends `ERROR` at once.
    pub fail_interrupted: bool,
}

impl SettlePolicy {
    /// Why the open executions are closed: the cause, ` at ` the progress the last of them recorded
    /// (`shot K of N`), or `an unknown shot`. One rule for every engine.
    pub fn reason(&self, open: &[ExecutionRecord]) -> String {
        let at = open
            .iter()
            .filter_map(|e| e.detail.as_deref())
            .next_back()
            .unwrap_or("an unknown shot");
        format!("{} at {at}", self.cause)
    }
}

/// One job settled by [`ExecutionStore::settle_running_of_backend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The job that was found `RUNNING`.
    pub job_id: String,
    /// The job as it was before it was re-queued (`None`: it ended `ERROR`).
    pub requeued: Option<JobRecord>,
}

/// Answer of [`LockStore::acquire_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockGrant {
    /// The caller holds the lease now (taken, refreshed, or taken over from an expired lease).
    Granted,
    /// Another owner holds an unexpired lease: nothing written.
    Held(LockRecord),
}

/// Why and since when a backend is paused (survives restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPause {
    /// The reason given by the operator, the emergency stop or the device fault.
    pub reason: String,
    /// When (RFC 3339 UTC).
    pub paused_at: String,
}

/// Counters of an engine since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Commits (SQLite: group-commit batches; PostgreSQL: transactions).
    pub commits: u64,
    /// Operations (trait method calls) run; `ops / commits` is the mean batch size.
    pub ops: u64,
}

/// Users and their login tokens.
pub trait UserStore: Send + Sync {
    /// Adds a user (not disabled). An empty name is [`StoreError::Invalid`]; a taken name is
    /// [`StoreError::Conflict`].
    fn add_user<'a>(
        &'a self,
        name: &'a str,
        email: Option<&'a str>,
        password_hash: &'a str,
        is_admin: bool,
        now: &'a str,
    ) -> StoreFuture<'a, UserRecord>;

    /// A user by name.
    fn user_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<UserRecord>>;

    /// A user by id.
    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<UserRecord>>;

    /// Every user, ordered by name.
    fn list_users(&self) -> StoreFuture<'_, Vec<UserRecord>>;

    /// Disables or re-enables a user; disabling also revokes every token of the user (re-enabling does
    /// not revive them). Unknown name: [`StoreError::NotFound`].
    fn set_user_disabled<'a>(&'a self, name: &'a str, disabled: bool) -> StoreFuture<'a, ()>;

    /// Replaces a user's password hash and revokes every token of the user. Unknown name:
    /// [`StoreError::NotFound`].
    fn set_password_hash<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// Removes a user who never submitted a job, with the user's tokens. Unknown name:
    /// [`StoreError::NotFound`]; a user owning jobs: [`StoreError::Conflict`] (disable instead).
    fn delete_user<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()>;

    /// Stores a token hash for `user_id`, valid until `expires_at`. Unknown user:
    /// [`StoreError::NotFound`]; a hash already stored: [`StoreError::Conflict`].
    fn insert_token<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: i64,
        now: &'a str,
        expires_at: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The user a token authenticates at `now`: `None` if the token is unknown, revoked, expired
    /// (`expires_at <= now`) or its user is disabled.
    fn user_for_token<'a>(
        &'a self,
        token_hash: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<UserRecord>>;

    /// Revokes a token; `false` if it was unknown.
    fn revoke_token<'a>(&'a self, token_hash: &'a str) -> StoreFuture<'a, bool>;
}

/// Jobs and their status history.
pub trait JobStore: Send + Sync {
    /// Admits a job, atomically with respect to every other admission of the same user (also from other
    /// processes sharing the database): if the user already has a job with `new.idempotency_key`, that
    /// job ([`Admission::Existing`]); else if the user has `max_active` or more jobs `QUEUED` or
    /// `RUNNING`, [`Admission::LimitReached`]; else the job is inserted `QUEUED` (attempts 0, the next
    /// `seq`, `updated_at = submitted_at`) with its first job event ([`Admission::Admitted`]).
    /// A job id already used: [`StoreError::Conflict`]; an unknown user: [`StoreError::NotFound`].
    fn admit_job(&self, new: NewJob, max_active: u64) -> StoreFuture<'_, Admission>;

    /// A job by id.
    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>>;

    /// A page of jobs matching `filter`, newest first (by `seq`), each with its owner's name, without
    /// bodies (`body` is empty); reading stops after the row that crosses `filter.max_bytes`.
    fn list_jobs<'a>(&'a self, filter: &'a JobFilter) -> StoreFuture<'a, Vec<(JobRecord, String)>>;

    /// The status history of a job, oldest first.
    fn job_events<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<JobEvent>>;

    /// Every job in `status`, in submission order (`seq`).
    fn jobs_with_status(&self, status: JobStatus) -> StoreFuture<'_, Vec<JobRecord>>;

    /// Number of jobs of `backend` in `status`.
    fn count_jobs<'a>(&'a self, backend: &'a str, status: JobStatus) -> StoreFuture<'a, u64>;

    /// Number of jobs of a user that are `QUEUED` or `RUNNING`.
    fn count_active_jobs_of_user(&self, user_id: i64) -> StoreFuture<'_, u64>;

    /// Cancels a job that is still `QUEUED` (status `CANCELLED` with `detail`, one job event) and returns
    /// it as it is now; `None` (nothing written) if it is unknown or not `QUEUED`.
    fn cancel_queued<'a>(
        &'a self,
        id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>>;
}

/// Executions, shot data and results, and the job life-cycle transitions they drive. Every transition
/// checks the job's current status inside its transaction, so a transition that lost a race (a cancel,
/// a restart that settled the job) changes nothing and says so.
pub trait ExecutionStore: Send + Sync {
    /// Allocates the next execution id of `day` (`YYYYMMDD`, UTC): `YYYYMMDD-NNN`, at least three digits,
    /// widening past 999. Never repeats, across reopen and across processes sharing the database.
    /// A malformed day: [`StoreError::Invalid`].
    fn next_execution_id<'a>(&'a self, day: &'a str) -> StoreFuture<'a, String>;

    /// An execution by id.
    fn execution<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ExecutionRecord>>;

    /// The executions of a job, by attempt.
    fn executions_for_job<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Vec<ExecutionRecord>>;

    /// The shot data of an execution, by experiment index.
    fn shot_data<'a>(&'a self, execution_id: &'a str) -> StoreFuture<'a, Vec<ShotDataRecord>>;

    /// The result of a job, if stored (at most one per job).
    fn result<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<ResultRecord>>;

    /// Records where a running execution is (`shot K of N`) as its detail; an ended or unknown execution
    /// is left as it is.
    fn set_execution_progress<'a>(&'a self, id: &'a str, detail: &'a str) -> StoreFuture<'a, ()>;

    /// Starts an execution, only if its job is still `QUEUED`: inserts `record` (open), increments the
    /// job's attempts and sets it `RUNNING` with detail `execution <id>` at `record.started_at`.
    /// `false`: the job is not `QUEUED` (cancelled, already running, unknown), nothing written.
    fn start_execution<'a>(&'a self, record: &'a ExecutionRecord) -> StoreFuture<'a, bool>;

    /// Commits the outcome of a successful execution, only if `execution_id` is the open execution of a
    /// `RUNNING` job: stores `shot_rows` and the result `body` (exactly once per job), closes the
    /// execution `DONE` and sets the job `DONE` with detail `execution <id>`. `false`: the job was
    /// settled elsewhere meanwhile (re-queued, failed, cancelled), nothing written.
    fn commit_result<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        shot_rows: &'a [ShotDataRecord],
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Fails a job: closes `execution_id` (if given) `ERROR` with `reason` as detail, then, only if the
    /// job is `RUNNING` or `QUEUED`, sets it `ERROR` (detail `failed`, error message `reason`).
    /// `true` if the job's status changed (never over a committed result).
    fn fail_job<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: Option<&'a str>,
        reason: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Ends a cancelled run: closes `execution_id` `CANCELLED` with `detail`, then, only if the job is
    /// `RUNNING`, sets it `CANCELLED` with `detail`. `true` if the job's status changed.
    fn cancel_running<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Puts a `RUNNING` job back in the queue: closes `close` (if given and still open) with its outcome
    /// and detail; then, if the job is `RUNNING`: with `max_attempts` given and the job's attempts at
    /// least that, it ends `ERROR` (detail `failed`, error message `<why>; gave up after N attempts`),
    /// otherwise it goes back to `QUEUED` with detail `why`. Returns the job (as read before the change)
    /// if it was re-queued.
    fn requeue_running<'a>(
        &'a self,
        job_id: &'a str,
        close: Option<ExecutionEnd<'a>>,
        why: &'a str,
        max_attempts: Option<u32>,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>>;

    /// Settles a job whose execution is gone, if it is still `RUNNING` (else `None`, nothing written):
    /// with `why = "<cause> at <where>"` (see [`SettlePolicy::cause`]) every open execution of the job
    /// is closed `INTERRUPTED` with detail `why`; a counted job with `fail_interrupted` ends `ERROR`
    /// (detail `failed`, error message `why`); otherwise it is re-queued as by
    /// [`requeue_running`](Self::requeue_running) with `why = "<why>; re-queued"` and `max_attempts`
    /// only when counted. Returns the job if it was re-queued.
    fn settle_running<'a>(
        &'a self,
        job_id: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>>;

    /// [`settle_running`](Self::settle_running) for every job of `backend` that is `RUNNING`, in one
    /// transaction (a backend's start-up recovery).
    fn settle_running_of_backend<'a>(
        &'a self,
        backend: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Settled>>;
}

/// Locks as leases: an owner and an optional expiry; an expired lease may be taken over by anyone.
pub trait LockStore: Send + Sync {
    /// Every held lock, by resource.
    fn locks(&self) -> StoreFuture<'_, Vec<LockRecord>>;

    /// Takes the lease on `resource` for `owner` until `expires_at` (`None`: until released). Granted if
    /// it is free, already `owner`'s (refreshed), or held by another owner with an `expires_at` at or
    /// before `now` (taken over); otherwise [`LockGrant::Held`] with the holder, nothing written.
    fn acquire_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        now: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, LockGrant>;

    /// Extends `owner`'s lease to `expires_at`; `false` (nothing written) if `owner` does not hold it
    /// (released, or taken over after it expired).
    fn renew_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, bool>;

    /// Releases `owner`'s lease; `false` (nothing written) if `owner` does not hold it.
    fn release_lock<'a>(&'a self, resource: &'a str, owner: &'a str) -> StoreFuture<'a, bool>;

    /// Releases the lease whoever holds it; returns the lease that was removed, if any.
    fn force_release_lock<'a>(&'a self, resource: &'a str) -> StoreFuture<'a, Option<LockRecord>>;
}

/// Calibration values with their provenance.
pub trait CalibrationStore: Send + Sync {
    /// Records a calibration value (its `id` is ignored); returns the new id.
    fn insert_calibration<'a>(&'a self, cal: &'a CalibrationRecord) -> StoreFuture<'a, i64>;

    /// Every calibration value of a backend, oldest first.
    fn calibrations<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Vec<CalibrationRecord>>;
}

/// Backend configurations (by hash, for provenance) and durable pauses.
pub trait BackendStore: Send + Sync {
    /// Records a backend config under its hash unless already recorded; `true` if inserted.
    fn record_backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// The recorded body of a backend config, if any.
    fn backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
    ) -> StoreFuture<'a, Option<String>>;

    /// Records that `backend` is paused (`Some`) or no longer (`None`). A pause survives restarts until
    /// an operator resumes the backend.
    fn set_backend_pause<'a>(
        &'a self,
        backend: &'a str,
        pause: Option<&'a BackendPause>,
    ) -> StoreFuture<'a, ()>;

    /// Why and since when `backend` is paused, if it is.
    fn backend_pause<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Option<BackendPause>>;
}

/// A complete store engine: every trait above, plus what the runtime needs to run it.
pub trait Engine:
    UserStore + JobStore + ExecutionStore + LockStore + CalibrationStore + BackendStore + Send + Sync
{
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// What it stores into, for logs: a path or a URL without its password.
    fn describe(&self) -> String;

    /// The applied schema version.
    fn schema_version(&self) -> StoreFuture<'_, u32>;

    /// What the database holds of acknowledged work (highest job `seq`, highest job event id), for the
    /// integrity check at start (compare with the marks recorded after commits).
    fn ack_marks(&self) -> StoreFuture<'_, AckMarks>;

    /// Commit counters since the engine was opened.
    fn stats(&self) -> EngineStats;

    /// Fault injection: hold every later commit this long (zero: none). Engines without it ignore it.
    fn set_commit_delay(&self, _delay: Duration) {}

    /// Lets queued work run and commit, then closes the engine; later calls fail with
    /// [`StoreError::Closed`]. Idempotent.
    fn shutdown(&self) -> StoreFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_a_url() {
        assert_eq!(
            redact_url("postgresql://lab:s3cret@db.example:5432/shotline"),
            "postgresql://lab:***@db.example:5432/shotline"
        );
        assert_eq!(
            redact_url("postgresql://lab@localhost/shotline?password=s3cret&sslmode=disable"),
            "postgresql://lab@localhost/shotline?password=***&sslmode=disable"
        );
        let sel = StoreSelection::Postgres {
            url: "postgres://u:hunter2@h/db".into(),
            allow_synchronous_commit_off: false,
        };
        assert!(!format!("{sel:?}").contains("hunter2"));
        assert!(!sel.describe().contains("hunter2"));
    }

    #[test]
    fn outcomes_round_trip_their_stored_text() {
        for o in [
            ExecutionOutcome::Done,
            ExecutionOutcome::Error,
            ExecutionOutcome::Cancelled,
            ExecutionOutcome::Interrupted,
        ] {
            assert_eq!(ExecutionOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(ExecutionOutcome::parse("done"), None);
    }

    #[test]
    fn engines_are_object_safe() {
        fn _takes(_: &std::sync::Arc<dyn Engine>) {}
    }
}

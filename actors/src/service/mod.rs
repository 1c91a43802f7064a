//! The service: the verbs of shotline (login, backends, submit, status, result, user administration), used
//! by the QUIC gateway and by the in-process embedding API alike. It checks, validates and routes; the actors
//! do the work. Every call is bounded by the configured actor timeout.

use std::collections::BTreeMap;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use shotline_protocol::wire::{codes, BackendStatus, BackendSummary};
use shotline_protocol::{BackendConfig, JobResult, JobStatus, StatusRecord, Value};
use shotline_store::{Admission, Inserted, NewJob, UserRecord};

use crate::auth;
use crate::context::{roles, Ctx};
use crate::error::ServiceError;
use crate::persistence::Db;
use crate::registry::{BackendEntry, RegistryMsg};
use crate::scheduler::SchedulerMsg;
use crate::time::{utc_in, utc_now};

/// An argon2id hash of nothing in particular: checking a password against it spends the same time on an
/// unknown user as on a known one, so login timing does not tell which user names exist.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| auth::hash_password("no such user").unwrap_or_default())
        .clone()
}

pub use shotline_protocol::wire::SubmitOptions;

/// A successful submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// Job id.
    pub job_id: String,
    /// Its status.
    pub status: StatusRecord,
    /// True when an earlier submission with the same idempotency key was returned.
    pub duplicate: bool,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedIn {
    /// Bearer token for every other verb.
    pub token: String,
    /// The user.
    pub user: String,
    /// When the token expires (RFC 3339 UTC).
    pub expires_at: String,
}

pub mod admin;
pub mod admission;
pub mod devices;
pub mod jobs;
pub mod limits;

/// The verbs of shotline.
#[derive(Clone, Debug)]
pub struct Service {
    ctx: Ctx,
    db: Db,
    limiter: std::sync::Arc<parking_lot::Mutex<limits::LoginLimiter>>,
    /// argon2 runs at most this many at a time (one per core): each costs ~19 MiB and tens of ms of CPU,
    /// so a burst of logins neither starves the machine nor balloons the memory.
    hash_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

async fn ask<M: Message, T: Send + 'static>(
    ctx: &Ctx,
    role: &str,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, ServiceError> {
    let actor: ActorRef<M> = ctx
        .lookup(role)
        .ok_or_else(|| ServiceError::unavailable(format!("the {role} is restarting")))?;
    match actor.call(build, Some(ctx.call_timeout())).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(_) => Err(ServiceError::unavailable(format!(
            "the {role} did not answer within {} ms",
            ctx.call_timeout().as_millis()
        ))),
        Err(e) => Err(ServiceError::unavailable(format!("the {role}: {e}"))),
    }
}

/// A client-given value in an error message: at most 64 characters of it, so an answer never echoes a
/// request-sized string.
pub(crate) fn shown(v: &str) -> String {
    if v.chars().count() <= 64 {
        format!("{v:?}")
    } else {
        format!(
            "{:?}... ({} bytes)",
            v.chars().take(64).collect::<String>(),
            v.len()
        )
    }
}

/// The status record of a stored job.
pub fn status_of(job: &shotline_store::JobRecord) -> StatusRecord {
    StatusRecord {
        job_id: job.id.clone(),
        status: job.status.parse().unwrap_or(JobStatus::Error),
        detail: job.detail.clone().unwrap_or_default(),
        error_message: job.error_message.clone().unwrap_or_default(),
    }
}

impl Service {
    /// The service of the runtime `ctx`.
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            ctx: ctx.clone(),
            db: Db::new(ctx),
            hash_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            limiter: std::sync::Arc::new(parking_lot::Mutex::new(
                limits::LoginLimiter::new(
                    ctx.config().auth.login_attempts_per_user,
                    ctx.config().auth.login_attempts_per_address,
                )
                .with_registrations(ctx.config().auth.registrations_per_address),
            )),
        }
    }

    /// The runtime context.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Hashes a password with argon2id on a blocking thread, one hash per core at a time.
    pub(crate) async fn hash_off_thread(&self, password: &str) -> Result<String, ServiceError> {
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(ServiceError::internal)
    }

    /// Checks a password and issues a token. Attempts are rate-limited per user name and per address.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<LoggedIn, ServiceError> {
        // Bounded before anything is counted or stored (the limiter keeps user names).
        auth::check_user_name_len(user)
            .and_then(|()| auth::check_password_len(password))
            .map_err(|m| ServiceError::new(codes::INVALID_ARGUMENT, m))?;
        if let Err(wait) = self
            .limiter
            .lock()
            .attempt(user, peer, std::time::Instant::now())
        {
            return Err(ServiceError::new(
                codes::RATE_LIMITED,
                format!(
                    "too many login attempts; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let name = user.to_string();
        let record = self
            .db
            .run(move |e| async move { e.user_by_name(&name).await })
            .await?;
        let (hash, usable) = match &record {
            Some(u) => (u.password_hash.clone(), !u.disabled),
            None => (String::new(), false),
        };
        let pw = password.to_string();
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let ok = tokio::task::spawn_blocking(move || {
            let hash = if hash.is_empty() { dummy_hash() } else { hash };
            auth::verify_password(&pw, &hash)
        })
        .await
        .map_err(|e| ServiceError::internal(format!("password check failed: {e}")))?;
        let user = match record {
            Some(u) if ok && usable => u,
            _ => {
                return Err(ServiceError::new(
                    codes::INVALID_CREDENTIALS,
                    "unknown user, wrong password or disabled account",
                ))
            }
        };
        self.limiter.lock().succeeded(&user.name);
        let token = auth::new_token();
        let hash = auth::token_hash(&token);
        let expires_at = utc_in(self.ctx.config().auth.token_ttl_s);
        let (uid, exp) = (user.id, expires_at.clone());
        self.db
            .run(move |e| async move { e.insert_token(&hash, uid, &utc_now(), &exp).await })
            .await?;
        Ok(LoggedIn {
            token,
            user: user.name,
            expires_at,
        })
    }

    /// The user a token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<UserRecord, ServiceError> {
        if token.is_empty() {
            return Err(ServiceError::new(
                codes::UNAUTHENTICATED,
                "no token: log in first (`shotline login`)",
            ));
        }
        let hash = auth::token_hash(token);
        self.db
            .run(move |e| async move { e.user_for_token(&hash, &utc_now()).await })
            .await?
            .ok_or_else(|| {
                ServiceError::new(
                    codes::UNAUTHENTICATED,
                    "the token is unknown, expired or revoked: log in again",
                )
            })
    }

    /// A user by name (for the embedding API).
    pub async fn user(&self, name: &str) -> Result<UserRecord, ServiceError> {
        let n = name.to_string();
        self.db
            .run(move |e| async move { e.user_by_name(&n).await })
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no user {}", shown(name))))
    }

    /// Creates a user (admin socket, embedding API).
    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<UserRecord, ServiceError> {
        auth::check_user_name(name).map_err(|m| ServiceError::new(codes::INVALID_ARGUMENT, m))?;
        auth::check_password_policy(password)
            .map_err(|m| ServiceError::new(codes::INVALID_ARGUMENT, m))?;
        let hash = self.hash_off_thread(password).await?;
        let n = name.to_string();
        self.db
            .run(move |e| async move { e.add_user(&n, None, &hash, is_admin, &utc_now()).await })
            .await
    }

    async fn registry_entries(&self) -> Result<Vec<BackendEntry>, ServiceError> {
        ask(&self.ctx, roles::REGISTRY, RegistryMsg::List).await
    }

    async fn pending(&self) -> BTreeMap<String, u64> {
        ask(&self.ctx, roles::SCHEDULER, SchedulerMsg::Pending)
            .await
            .unwrap_or_default()
    }

    fn backend_status(entry: &BackendEntry, pending: u64) -> BackendStatus {
        BackendStatus {
            operational: entry.operational,
            paused: entry.paused,
            pending_jobs: pending,
            status_msg: entry.status_msg.clone(),
            running_execution: entry.running_execution.clone(),
            devices: Vec::new(),
        }
    }

    /// Every backend with its status.
    pub async fn backends(&self) -> Result<Vec<BackendSummary>, ServiceError> {
        let entries = self.registry_entries().await?;
        let pending = self.pending().await;
        Ok(entries
            .iter()
            .map(|e| BackendSummary {
                name: e.config.backend_name.clone(),
                display_name: e.config.display_name.clone(),
                version: e.config.backend_version.clone(),
                simulator: e.config.simulator,
                status: Self::backend_status(
                    e,
                    pending.get(&e.config.backend_name).copied().unwrap_or(0),
                ),
            })
            .collect())
    }

    pub(crate) async fn entry(&self, name: &str) -> Result<BackendEntry, ServiceError> {
        let n = name.to_string();
        match ask(&self.ctx, roles::REGISTRY, |r| RegistryMsg::Get(n, r)).await? {
            Some(e) => Ok(e),
            None => {
                let known: Vec<String> = self
                    .registry_entries()
                    .await?
                    .into_iter()
                    .map(|e| e.config.backend_name)
                    .collect();
                Err(ServiceError::not_found(format!(
                    "no backend {}; available: {}",
                    shown(name),
                    known.join(", ")
                )))
            }
        }
    }

    /// One backend's config and status.
    pub async fn backend(
        &self,
        name: &str,
    ) -> Result<(BackendConfig, BackendStatus), ServiceError> {
        let e = self.entry(name).await?;
        let pending = self.pending().await.get(name).copied().unwrap_or(0);
        let mut status = Self::backend_status(&e, pending);
        status.devices = devices::describe(&self.ctx, name).await;
        Ok((e.config, status))
    }

    /// Validates and durably queues a job; answers only after the commit returned.
    pub async fn submit(
        &self,
        user: &UserRecord,
        backend: &str,
        job: &Value,
        options: SubmitOptions,
    ) -> Result<Submitted, ServiceError> {
        let entry = self.entry(backend).await?;
        let limits = &self.ctx.config().limits;
        shotline_protocol::check_options(&options, &admission::job_limits(limits)).map_err(
            |e| {
                let mut err = ServiceError::new(codes::INVALID_ARGUMENT, e.message);
                err.path = Some(e.path);
                err
            },
        )?;
        let typed = shotline_protocol::validate_job_within(
            job,
            &entry.config,
            &admission::job_limits(limits),
        )
        .map_err(ServiceError::validation)?;
        if let Some(section) = self
            .ctx
            .config()
            .backends
            .iter()
            .find(|b| b.name == backend)
        {
            let model = self.ctx.model_of(section).map_err(ServiceError::internal)?;
            model
                .validate(section, &typed)
                .map_err(ServiceError::validation)?;
            admission::check_duration(model.as_ref(), section, &typed, limits.max_job_duration_s)
                .map_err(ServiceError::validation)?;
            admission::check_result_size(
                &entry.config,
                section,
                &typed,
                options.qobj_id.as_deref(),
                limits.max_response_bytes,
            )
            .map_err(ServiceError::validation)?;
        }
        let body = serde_json::to_string(&typed)
            .map_err(|e| ServiceError::internal(format!("job encoding: {e}")))?;
        let limit = u64::from(self.ctx.config().limits.max_queued_jobs_per_user);
        let new = NewJob {
            id: hex::encode(rand::random::<[u8; 16]>()),
            user_id: user.id,
            backend: backend.to_string(),
            qobj_id: options.qobj_id.clone(),
            priority: i64::from(options.priority),
            tags: options.tags.clone(),
            idempotency_key: options.idempotency_key.clone(),
            body: body.clone(),
            submitted_at: utc_now(),
        };
        // One store operation: a retried submit finds its job even at the limit; a new one is refused
        // when the user already has `limit` jobs queued or running.
        let outcome = self
            .db
            .run(move |e| async move { e.admit_job(new, limit).await })
            .await?;
        let inserted = match outcome {
            Admission::Admitted(job) => Inserted {
                job,
                existing: false,
            },
            Admission::Existing(job) => Inserted {
                job,
                existing: true,
            },
            Admission::LimitReached { active } => {
                return Err(ServiceError::new(
                    codes::LIMIT_EXCEEDED,
                    format!(
                        "you have {active} queued or running jobs; the limit is {limit} (limits.max_queued_jobs_per_user): wait for some to finish or cancel some"
                    ),
                ))
            }
        };
        if inserted.existing {
            let first = &inserted.job;
            let differs = [
                ("backend", first.backend != backend),
                ("job body", first.body != body),
                ("priority", first.priority != i64::from(options.priority)),
                ("qobj_id", first.qobj_id != options.qobj_id),
                ("tags", first.tags != options.tags),
            ];
            let differs: Vec<&str> = differs
                .iter()
                .filter(|(_, d)| *d)
                .map(|(w, _)| *w)
                .collect();
            if !differs.is_empty() {
                return Err(ServiceError::new(
                    codes::IDEMPOTENCY_CONFLICT,
                    format!(
                        "idempotency key {:?} was already used for job {} (backend {}) with a different {}",
                        options.idempotency_key.unwrap_or_default(),
                        first.id,
                        first.backend,
                        differs.join(", ")
                    ),
                ));
            }
        }
        let job = inserted.job;
        if !inserted.existing {
            self.ctx.publish_status(status_of(&job));
            if let Some(s) = self.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
                // If the scheduler is restarting it rebuilds its queue from the store: nothing is lost.
                let _ = s.cast(SchedulerMsg::Enqueue {
                    job_id: job.id.clone(),
                    backend: job.backend.clone(),
                    priority: job.priority,
                    seq: job.seq,
                });
            }
        }
        Ok(Submitted {
            job_id: job.id.clone(),
            status: status_of(&job),
            duplicate: inserted.existing,
        })
    }

    pub(crate) async fn own_job(
        &self,
        user: &UserRecord,
        job_id: &str,
    ) -> Result<shotline_store::JobRecord, ServiceError> {
        let id = job_id.to_string();
        match self
            .db
            .run(move |e| async move { e.job(&id).await })
            .await?
        {
            Some(j) if j.user_id == user.id || user.is_admin => Ok(j),
            _ => Err(ServiceError::not_found(format!("no job {}", shown(job_id)))),
        }
    }

    /// Status of one of the user's jobs.
    pub async fn status(
        &self,
        user: &UserRecord,
        job_id: &str,
    ) -> Result<StatusRecord, ServiceError> {
        Ok(status_of(&self.own_job(user, job_id).await?))
    }

    /// Result of one of the user's jobs (DONE: the stored result; ERROR/CANCELLED: an unsuccessful result
    /// carrying the reason; otherwise RESULT_NOT_READY).
    pub async fn result(&self, user: &UserRecord, job_id: &str) -> Result<JobResult, ServiceError> {
        let job = self.own_job(user, job_id).await?;
        let id = job_id.to_string();
        if let Some(r) = self
            .db
            .run(move |e| async move { e.result(&id).await })
            .await?
        {
            return serde_json::from_str(&r.body)
                .map_err(|e| ServiceError::internal(format!("stored result unreadable: {e}")));
        }
        let status = status_of(&job);
        match status.status {
            JobStatus::Error | JobStatus::Cancelled => {
                let entry = self.entry(&job.backend).await.ok();
                let mut header = BTreeMap::new();
                header.insert("error_message".to_string(), status.error_message.clone());
                Ok(JobResult {
                    backend_name: job.backend.clone(),
                    display_name: entry
                        .as_ref()
                        .map(|e| e.config.display_name.clone())
                        .unwrap_or_default(),
                    backend_version: entry.map(|e| e.config.backend_version).unwrap_or_default(),
                    job_id: job.id,
                    qobj_id: job.qobj_id,
                    success: false,
                    status: status.status,
                    header,
                    results: Vec::new(),
                    execution_id: None,
                })
            }
            s => Err(ServiceError::new(
                codes::RESULT_NOT_READY,
                format!("job {job_id} is {s}: the result exists once it is DONE"),
            )),
        }
    }
}

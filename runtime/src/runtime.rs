//! The embedding API: `Runtime::start` builds the whole supervision tree in-process (with or without the
//! QUIC gateway), and offers submit / status / result without any network, so an existing lab control stack
//! can embed shotline. The `shotline serve` command is a thin layer over it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use shotline_actors::drivers::DriverRegistry;
use shotline_actors::gateway::binding::{
    unauthenticated_receive_window, Grant, AUTHENTICATED_RECEIVE_WINDOW, STREAM_RECEIVE_WINDOW,
};
use shotline_actors::gateway::stream::StreamLimits;
use shotline_actors::gateway::GatewayArgs;
use shotline_actors::root::{FailureSlot, RootActor, RootArgs, RootMsg};
use shotline_actors::service::{SubmitOptions, Submitted};
use shotline_actors::{Ctx, Service, ServiceError};
use shotline_config::{Config, LoadedConfig, TlsMode};
use shotline_models::ModelRegistry;
use shotline_protocol::{JobResult, StatusRecord, Value};
use shotline_store::UserRecord;
use shotline_tls::ServerOptions;

use crate::admin::AdminServer;

/// How to start a runtime.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Overrides `service.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `service.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Run the QUIC gateway (off for a purely in-process embedding).
    pub gateway: bool,
    /// Serve the local admin socket in the data dir. (The data dir is claimed in any case: a runtime holds
    /// `server.lock` for its life, so no other server shares it.)
    pub admin_socket: bool,
}

/// Why a runtime could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The data dir could not be prepared.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The data dir is in use, or its store is missing, damaged or lacks acknowledged work.
    #[error(transparent)]
    Store(#[from] crate::datadir::DataDirError),
    /// TLS identity or configuration.
    #[error(transparent)]
    Tls(#[from] shotline_tls::TlsError),
    /// The admin socket.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The supervision tree failed to start.
    #[error("the runtime could not start: {0}")]
    Start(String),
    /// The supervision tree gave up (restart intensity exceeded).
    #[error("the runtime stopped after a failure: {0}")]
    Failed(String),
}

/// A running shotline.
pub struct Runtime {
    ctx: Ctx,
    service: Service,
    root: ActorRef<RootMsg>,
    root_task: Option<tokio::task::JoinHandle<()>>,
    failure: FailureSlot,
    listen: Option<SocketAddr>,
    admin: Option<AdminServer>,
    local_user: tokio::sync::OnceCell<UserRecord>,
    /// PostgreSQL: records the database's acknowledged-work marks in the data dir.
    mark_writer: Option<crate::postgres_marks::MarkWriter>,
    /// The claim on the data dir, held until the runtime is gone.
    _lock: crate::datadir::DataDirLock,
}

/// Name of the user that in-process submissions run as.
pub const LOCAL_USER: &str = "local";

impl Runtime {
    /// Starts a runtime from a loaded configuration file.
    ///
    /// Cores pinned for shot clocks (`timing.realtime.cpu`) are kept free of the runtime's other threads only
    /// if the embedder reserved them before building its tokio runtime
    /// ([`crate::affinity::reserve_shot_clock_cpus`], as `shotline serve` does); otherwise a warning says so.
    pub async fn start(
        loaded: LoadedConfig,
        options: StartOptions,
    ) -> Result<Runtime, RuntimeError> {
        Self::start_with(loaded.config, loaded.hash, options).await
    }

    /// Starts a runtime from a configuration value (`hash` is recorded in every execution's provenance).
    /// Devices may name the built-in drivers; [`Runtime::builder`] adds others.
    pub async fn start_with(
        config: Config,
        hash: String,
        options: StartOptions,
    ) -> Result<Runtime, RuntimeError> {
        Self::launch(
            config,
            hash,
            options,
            DriverRegistry::builtin(),
            ModelRegistry::builtin(),
        )
        .await
    }

    /// A runtime with drivers and models registered from another crate (docs/drivers.md, docs/models.md).
    pub fn builder() -> crate::builder::RuntimeBuilder {
        crate::builder::RuntimeBuilder::default()
    }

    /// Starts a runtime whose backends find their models (by the name in `model:`) in `models`.
    pub async fn start_with_models(
        config: Config,
        hash: String,
        options: StartOptions,
        models: ModelRegistry,
    ) -> Result<Runtime, RuntimeError> {
        Self::launch(config, hash, options, DriverRegistry::builtin(), models).await
    }

    /// Starts a runtime whose backends build their devices with `drivers` and find their models in
    /// `models`.
    pub(crate) async fn launch(
        mut config: Config,
        hash: String,
        options: StartOptions,
        drivers: DriverRegistry,
        models: ModelRegistry,
    ) -> Result<Runtime, RuntimeError> {
        if let Some(d) = &options.data_dir {
            config.service.data_dir = d.clone();
        }
        if let Some(l) = options.listen {
            config.service.listen = l;
        }
        models
            .check_with_drivers(&config, &drivers.catalog())
            .map_err(|issues| {
                RuntimeError::Config(
                    issues
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
        let unreserved = crate::affinity::unreserved(&config);
        if !unreserved.is_empty() {
            // Embedding: the caller's tokio threads exist already and may share the pinned shot clocks' cores.
            tracing::warn!(
                cpus = ?unreserved,
                "cores pinned for shot clocks (timing.realtime.cpu) are not reserved: tokio workers and the store \
                 thread may run on them; call shotline::affinity::reserve_shot_clock_cpus on the main thread \
                 before building the tokio runtime (as `shotline serve` does)"
            );
        }
        let data_dir = config.data_dir().to_path_buf();
        // Claim the data dir (created 0700) before anything reads or writes it, then check the store:
        // integrity, the initialised marker and the acknowledged work (see `datadir`).
        let lock = crate::datadir::lock(&data_dir)?;
        // PostgreSQL: only the acknowledged-work check applies (`postgres_marks`); its marks at start.
        let postgres_marks = if config.store.postgres.is_some() {
            let selection = shotline_actors::persistence::store_selection(&config);
            let marks = crate::postgres_marks::database_marks(&selection).await?;
            let (dir, store) = (data_dir.clone(), selection.describe());
            tokio::task::spawn_blocking(move || {
                crate::postgres_marks::check(&dir, &store, &marks).map(|()| marks)
            })
            .await
            .map_err(|e| RuntimeError::Start(format!("the store check panicked: {e}")))?
            .map(Some)?
        } else {
            let (dir, db) = (data_dir.clone(), config.db_path());
            tokio::task::spawn_blocking(move || crate::datadir::check_store(&dir, &db))
                .await
                .map_err(|e| RuntimeError::Start(format!("the store check panicked: {e}")))??;
            None
        };
        shotline_tls::ensure_ring_provider();
        let unauthenticated_frame = config
            .limits
            .max_unauthenticated_frame_bytes
            .min(config.limits.max_frame_bytes);
        let gateway_parts = if options.gateway {
            let identity = match config.tls.mode {
                TlsMode::SelfSigned => {
                    shotline_tls::load_or_generate(&data_dir.join("tls"), &config.tls.names)?
                }
                TlsMode::Files => {
                    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
                        return Err(RuntimeError::Config(
                            "tls.mode is files but tls.cert or tls.key is missing".into(),
                        ));
                    };
                    shotline_tls::load_files(cert, key)?
                }
            };
            if identity.generated {
                tracing::info!(fingerprint = %identity.fingerprint, "generated a self-signed certificate");
            }
            let server_config = shotline_tls::server_config(
                &identity,
                &ServerOptions {
                    alpn: vec![shotline_protocol::wire::ALPN.to_vec()],
                    // Every connection starts unauthenticated; the gateway raises both limits when it
                    // authenticates (shotline_actors::gateway::binding).
                    max_concurrent_bidi_streams: config
                        .limits
                        .max_unauthenticated_streams
                        .min(config.limits.max_streams_per_connection),
                    idle_timeout_ms: config.limits.idle_timeout_ms,
                    keep_alive_ms: Some((config.limits.idle_timeout_ms / 3).max(1)),
                    receive_window: Some(unauthenticated_receive_window(unauthenticated_frame)),
                    stream_receive_window: Some(STREAM_RECEIVE_WINDOW),
                },
            )?;
            Some((server_config, identity.fingerprint))
        } else {
            None
        };
        let ctx = Ctx::with_plugins(config.clone(), hash, drivers, models);
        let service = Service::new(&ctx);
        let listen_slot = Arc::new(parking_lot::Mutex::new(config.service.listen));
        let gateway = gateway_parts.map(|(server_config, _)| GatewayArgs {
            service: service.clone(),
            server_config,
            listen: listen_slot.clone(),
            counts: Default::default(),
            limits: StreamLimits {
                max_connections_per_user: config.limits.max_connections_per_user,
                max_frame: config.limits.max_frame_bytes as usize,
                max_unauthenticated_frame: unauthenticated_frame as usize,
                request_timeout: Duration::from_millis(config.limits.request_timeout_ms),
                max_unauthenticated_connections: config.limits.max_unauthenticated_connections,
                unauthenticated_timeout: Duration::from_millis(
                    config.limits.unauthenticated_timeout_ms,
                ),
                grant: Grant {
                    max_streams: config.limits.max_streams_per_connection,
                    receive_window: AUTHENTICATED_RECEIVE_WINDOW,
                },
            },
        });
        let has_gateway = gateway.is_some();
        // Claim the data dir before anything writes to it.
        let admin = if options.admin_socket {
            Some(AdminServer::start(&data_dir, service.clone()).await?)
        } else {
            None
        };
        let failure: FailureSlot = Arc::new(parking_lot::Mutex::new(None));
        let (root, root_task) = Actor::spawn(
            Some(ctx.name(shotline_actors::context::roles::ROOT)),
            RootActor,
            RootArgs {
                ctx: ctx.clone(),
                gateway,
                failure: failure.clone(),
            },
        )
        .await
        .map_err(|e| RuntimeError::Start(e.to_string()))?;
        let listen = has_gateway.then(|| *listen_slot.lock());
        let mark_writer = postgres_marks.map(|marks| {
            crate::postgres_marks::MarkWriter::spawn(
                shotline_actors::persistence::Db::new(&ctx),
                data_dir.clone(),
                marks,
            )
        });
        Ok(Runtime {
            mark_writer,
            ctx,
            service,
            root,
            root_task: Some(root_task),
            failure,
            listen,
            admin,
            local_user: tokio::sync::OnceCell::new(),
            _lock: lock,
        })
    }

    /// The address the gateway listens on (the real port when 0 was asked).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// The verbs, for callers that manage users themselves.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The runtime context (configuration, actor names).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    async fn local(&self) -> Result<&UserRecord, ServiceError> {
        self.local_user
            .get_or_try_init(|| async {
                match self.service.user(LOCAL_USER).await {
                    Ok(u) => Ok(u),
                    Err(_) => {
                        // A password nobody knows: the local user never logs in over the network.
                        let pw = shotline_actors::auth::new_token();
                        match self.service.add_user(LOCAL_USER, &pw, true).await {
                            Ok(u) => Ok(u),
                            Err(_) => self.service.user(LOCAL_USER).await,
                        }
                    }
                }
            })
            .await
    }

    /// Pauses (`true`) or resumes a backend as the local user (an administrator): a paused backend's running
    /// job is re-queued and nothing starts until it is resumed, also across restarts.
    pub async fn set_paused(&self, backend: &str, paused: bool) -> Result<String, ServiceError> {
        let user = self.local().await?.clone();
        self.service.set_paused(&user, backend, paused).await
    }

    /// Emergency stop of every backend as the local user: running jobs stop at the next shot boundary and
    /// are re-queued, devices go to their safe state, backends stay paused (also across restarts) until
    /// resumed.
    /// The report says, per backend and per device, whether the safe state was reached.
    pub async fn estop(&self) -> Result<shotline_protocol::wire::EstopReport, ServiceError> {
        let user = self.local().await?.clone();
        self.service.estop(&user).await
    }

    /// Submits a job (JSON, in the format of DESIGN section 6) as the local user.
    pub async fn submit(
        &self,
        backend: &str,
        job: &serde_json::Value,
        options: SubmitOptions,
    ) -> Result<Submitted, ServiceError> {
        let value: Value = serde_json::from_value(job.clone())
            .map_err(|e| ServiceError::internal(format!("job conversion: {e}")))?;
        let user = self.local().await?.clone();
        self.service.submit(&user, backend, &value, options).await
    }

    /// Status of a job.
    pub async fn status(&self, job_id: &str) -> Result<StatusRecord, ServiceError> {
        let user = self.local().await?.clone();
        self.service.status(&user, job_id).await
    }

    /// Result of a job.
    pub async fn result(&self, job_id: &str) -> Result<JobResult, ServiceError> {
        let user = self.local().await?.clone();
        self.service.result(&user, job_id).await
    }

    /// Waits until the job is terminal (or `timeout`), returning its last status.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<StatusRecord, ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.status(job_id).await?;
            if s.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves when the supervision tree stops on its own (a give-up); returns the reason.
    pub async fn stopped(&mut self) -> Option<String> {
        if let Some(t) = self.root_task.as_mut() {
            let _ = t.await;
            self.root_task = None;
        }
        self.failure.lock().clone()
    }

    /// Stops cleanly: the gateway first, running jobs stop at a shot boundary and are re-queued, devices go
    /// to their safe state, the store drains and closes.
    pub async fn shutdown(mut self) -> Result<(), RuntimeError> {
        if let Some(w) = self.mark_writer.take() {
            w.finish().await;
        }
        self.root.stop(Some("shutdown".into()));
        if let Some(t) = self.root_task.take() {
            let _ = t.await;
        }
        drop(self.admin.take());
        match self.failure.lock().clone() {
            Some(f) => Err(RuntimeError::Failed(f)),
            None => Ok(()),
        }
    }
}

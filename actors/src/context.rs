//! What every actor of one runtime shares: the instance prefix of actor names, timeouts, static facts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use ractor::{ActorRef, Message};
use shotline_config::{BackendSection, Config};
use shotline_models::{BackendModel, ModelRegistry};

use crate::drivers::DriverRegistry;
use shotline_protocol::wire::JobEvent;
use shotline_protocol::StatusRecord;

static INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Shared, read-only facts of one runtime instance (cheap to clone).
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<CtxInner>,
}

struct CtxInner {
    prefix: String,
    instance: String,
    config: Config,
    models: ModelRegistry,
    config_hash: String,
    drivers: DriverRegistry,
    call_timeout: Duration,
    events: tokio::sync::broadcast::Sender<JobEvent>,
    shot_watchers: parking_lot::Mutex<HashMap<String, Vec<ShotSlot>>>,
    next_shot_watch: AtomicU64,
}

/// One shot watcher's end of its channel.
struct ShotSlot {
    id: u64,
    tx: tokio::sync::mpsc::Sender<JobEvent>,
    dropped: Arc<AtomicU64>,
}

/// Capacity of each shot watcher's own channel: a watcher this many shots behind misses the next ones (they
/// are counted for it), and nobody else notices.
pub const SHOT_WATCH_CAPACITY: usize = 1024;

/// Capacity of the job event channel (statuses and progress; shots go through each shot watcher's own
/// channel): a watcher more than this many events behind re-reads the status from the store (it never misses
/// the final status, which is persisted).
pub const EVENT_CAPACITY: usize = 4096;

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// A server's stable id: 12 hex digits of SHA-256 over the host name and the canonical data dir. The data
/// dir is held by one process at a time (`server.lock`), so on a shared store a lease carrying this id and
/// another instance's is a dead predecessor's, released at once by the next start.
pub fn server_id(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(config.data_dir())
        .unwrap_or_else(|_| config.data_dir().to_path_buf());
    let mut h = Sha256::new();
    h.update(host.trim().as_bytes());
    h.update([0]);
    h.update(dir.as_os_str().as_encoded_bytes());
    hex::encode(&h.finalize()[..6])
}

/// The software version recorded in every execution's provenance.
pub const SOFTWARE_VERSION: &str = concat!("shotline ", env!("CARGO_PKG_VERSION"));

impl Ctx {
    /// A context for a new runtime instance (actor names get a unique prefix, so several runtimes can live
    /// in one process, e.g. in tests).
    pub fn new(config: Config, config_hash: String) -> Self {
        Self::with_plugins(
            config,
            config_hash,
            DriverRegistry::builtin(),
            ModelRegistry::builtin(),
        )
    }

    /// [`Ctx::new`] whose backends build their devices with `drivers`.
    pub fn with_drivers(config: Config, config_hash: String, drivers: DriverRegistry) -> Self {
        Self::with_plugins(config, config_hash, drivers, ModelRegistry::builtin())
    }

    /// A context whose backends find their models in `models` (the built-in ones and any an embedding
    /// program registered).
    pub fn with_models(config: Config, config_hash: String, models: ModelRegistry) -> Self {
        Self::with_plugins(config, config_hash, DriverRegistry::builtin(), models)
    }

    /// A context whose backends build their devices with `drivers` and find their models in `models`.
    pub fn with_plugins(
        config: Config,
        config_hash: String,
        drivers: DriverRegistry,
        models: ModelRegistry,
    ) -> Self {
        let id = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let call_timeout = Duration::from_millis(config.supervision.call_timeout_ms.max(1));
        let (events, _) = tokio::sync::broadcast::channel(EVENT_CAPACITY);
        Self {
            inner: Arc::new(CtxInner {
                prefix: format!("rt{id}"),
                instance: format!(
                    "{}:{}-{:016x}",
                    server_id(&config),
                    std::process::id(),
                    rand::random::<u64>()
                ),
                config,
                models,
                config_hash,
                drivers,
                call_timeout,
                events,
                shot_watchers: parking_lot::Mutex::new(HashMap::new()),
                next_shot_watch: AtomicU64::new(0),
            }),
        }
    }

    /// This runtime instance's id, `<server>:<pid>-<16 hex>` (random per start): the owner prefix of its lock
    /// leases (`<instance>/<execution id>`), so servers sharing one database tell their leases apart.
    /// `<server>` names the data dir on this host ([`server_id`]); one process at a time holds a data dir,
    /// so a lease of the same server but another instance belongs to a dead predecessor.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The `<server>:` prefix of this instance (see [`Ctx::instance`]).
    pub fn server_prefix(&self) -> &str {
        let end = self.inner.instance.find(':').map_or(0, |i| i + 1);
        &self.inner.instance[..end]
    }

    /// Whether other processes may share the store (PostgreSQL): leases of other instances are honoured
    /// until they expire. SQLite is single-process (the data dir lock), so every lease not of this
    /// instance belongs to a dead one.
    pub fn shared_store(&self) -> bool {
        self.inner.config.store.postgres.is_some()
    }

    /// The lease of a backend lock (`recovery.lock_lease_ms`).
    pub fn lock_lease(&self) -> Duration {
        Duration::from_millis(self.inner.config.recovery.lock_lease_ms.max(1))
    }

    /// The full actor name for `role` in this runtime.
    pub fn name(&self, role: &str) -> String {
        format!("{}/{}", self.inner.prefix, role)
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The device drivers backends build their devices with.
    pub fn drivers(&self) -> &DriverRegistry {
        &self.inner.drivers
    }

    /// The models this runtime knows.
    pub fn models(&self) -> &ModelRegistry {
        &self.inner.models
    }

    /// The model of a backend section (the runtime checked at start that it is registered).
    pub fn model_of(&self, section: &BackendSection) -> Result<Arc<dyn BackendModel>, String> {
        self.inner
            .models
            .get(section.model.as_str())
            .ok_or_else(|| {
                format!(
                    "backend {}: unknown model \"{}\"; registered models: {}",
                    section.name,
                    section.model,
                    self.inner.models.names().join(", ")
                )
            })
    }

    /// `sha256:<hex>` of the configuration file.
    pub fn config_hash(&self) -> &str {
        &self.inner.config_hash
    }

    /// Timeout of every actor request/reply.
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// Publishes a job event to every watcher (dropped when nobody watches).
    pub fn publish(&self, event: JobEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Publishes a status change.
    pub fn publish_status(&self, status: StatusRecord) {
        self.publish(JobEvent::Status { status });
    }

    /// Receives every job event published from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Registers a watcher of `job`'s individual shots: it gets them through its own bounded channel
    /// ([`SHOT_WATCH_CAPACITY`]), never through the shared event bus (undone by dropping the guard).
    pub fn watch_shots(&self, job: &str) -> ShotWatch {
        let (tx, rx) = tokio::sync::mpsc::channel(SHOT_WATCH_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.inner.next_shot_watch.fetch_add(1, Ordering::Relaxed);
        self.inner
            .shot_watchers
            .lock()
            .entry(job.to_string())
            .or_default()
            .push(ShotSlot {
                id,
                tx,
                dropped: dropped.clone(),
            });
        ShotWatch {
            ctx: self.clone(),
            job: job.to_string(),
            id,
            rx,
            dropped,
        }
    }

    /// Whether anyone watches `job`'s individual shots.
    pub fn shots_watched(&self, job: &str) -> bool {
        self.inner.shot_watchers.lock().contains_key(job)
    }

    /// Hands a `shot` event to every shot watcher of its job, without waiting: a watcher whose channel is full
    /// misses it (counted in [`ShotWatch::dropped`]); other watchers and the event bus are unaffected.
    pub fn publish_shot(&self, event: JobEvent) {
        let watchers = self.inner.shot_watchers.lock();
        let Some(slots) = watchers.get(event.job_id()) else {
            return;
        };
        for slot in slots {
            if slot.tx.try_send(event.clone()).is_err() {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Finds the live actor playing `role` (None while it is restarting).
    pub fn lookup<M: Message>(&self, role: &str) -> Option<ActorRef<M>> {
        ractor::registry::where_is(self.name(role)).map(ActorRef::from)
    }
}

/// A registered shot watcher: receives its job's `shot` events; unregisters on drop.
pub struct ShotWatch {
    ctx: Ctx,
    job: String,
    id: u64,
    rx: tokio::sync::mpsc::Receiver<JobEvent>,
    dropped: Arc<AtomicU64>,
}

impl ShotWatch {
    /// The next shot event (waits; never `None` while the guard lives).
    pub async fn recv(&mut self) -> Option<JobEvent> {
        self.rx.recv().await
    }

    /// A shot event already waiting, if any.
    pub fn try_recv(&mut self) -> Option<JobEvent> {
        self.rx.try_recv().ok()
    }

    /// Shot events this watcher missed because it was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ShotWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShotWatch")
            .field("job", &self.job)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Drop for ShotWatch {
    fn drop(&mut self) {
        let mut w = self.ctx.inner.shot_watchers.lock();
        if let Some(slots) = w.get_mut(&self.job) {
            slots.retain(|s| s.id != self.id);
            if slots.is_empty() {
                w.remove(&self.job);
            }
        }
    }
}

/// Names of the roles in the tree.
pub mod roles {
    /// The persistence actor.
    pub const PERSISTENCE: &str = "persistence";
    /// The registry.
    pub const REGISTRY: &str = "registry";
    /// The lock manager.
    pub const LOCK_MANAGER: &str = "lock_manager";
    /// The scheduler.
    pub const SCHEDULER: &str = "scheduler";
    /// The gateway.
    pub const GATEWAY: &str = "gateway";
    /// The root supervisor.
    pub const ROOT: &str = "root";

    /// The backend supervisor of `name`.
    pub fn backend(name: &str) -> String {
        format!("backend:{name}")
    }

    /// A child of backend `backend`.
    pub fn backend_child(backend: &str, child: &str) -> String {
        format!("backend:{backend}/{child}")
    }
}

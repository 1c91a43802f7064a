//! What every actor of one runtime shares: the instance prefix of actor names, timeouts, static facts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, Message};
use shotline_config::Config;

static INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Shared, read-only facts of one runtime instance (cheap to clone).
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<CtxInner>,
}

struct CtxInner {
    prefix: String,
    config: Config,
    config_hash: String,
    call_timeout: Duration,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// The software version recorded in every execution's provenance.
pub const SOFTWARE_VERSION: &str = concat!("shotline ", env!("CARGO_PKG_VERSION"));

impl Ctx {
    /// A context for a new runtime instance (actor names get a unique prefix, so several runtimes can live
    /// in one process, e.g. in tests).
    pub fn new(config: Config, config_hash: String) -> Self {
        let id = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let call_timeout = Duration::from_millis(config.supervision.call_timeout_ms.max(1));
        Self {
            inner: Arc::new(CtxInner {
                prefix: format!("rt{id}"),
                config,
                config_hash,
                call_timeout,
            }),
        }
    }

    /// The full actor name for `role` in this runtime.
    pub fn name(&self, role: &str) -> String {
        format!("{}/{}", self.inner.prefix, role)
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// `sha256:<hex>` of the configuration file.
    pub fn config_hash(&self) -> &str {
        &self.inner.config_hash
    }

    /// Timeout of every actor request/reply.
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// Finds the live actor playing `role` (None while it is restarting).
    pub fn lookup<M: Message>(&self, role: &str) -> Option<ActorRef<M>> {
        ractor::registry::where_is(self.name(role)).map(ActorRef::from)
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

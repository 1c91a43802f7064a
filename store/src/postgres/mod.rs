//! The PostgreSQL engine: a pool of tokio-postgres connections, versioned migrations, a durability check
//! at start, and every store operation as one `READ COMMITTED` transaction acknowledged after its `COMMIT`
//! returned.
//!
//! Several processes may share one database. What keeps them correct:
//! - admission (idempotency lookup, active-job count, insert) runs under a row lock on the user
//!   (`SELECT ... FOR NO KEY UPDATE`), so two gateways never admit one user past the limit, and the unique
//!   index on `(user_id, idempotency_key)` backs the idempotency lookup;
//! - execution ids come from a per-day counter row bumped by `INSERT ... ON CONFLICT DO UPDATE ...
//!   RETURNING`, atomic in PostgreSQL;
//! - locks are leases (owner, expiry): a lease held by another owner is taken over only once expired, in
//!   one conditional upsert;
//! - job sequence numbers and row ids come from sequences.

mod backends;
mod copy;
mod durability;
mod engine;
mod error;
mod executions;
mod jobs;
mod locks;
mod rows;
pub mod schema;
mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{IsolationLevel, NoTls};

pub use copy::{copy_sqlite_to_postgres, CopyReport};
pub use durability::{check_durability_settings, DurabilitySettings};
pub(crate) use error::{pg_error, pool_error, violation};

use crate::{redact_url, StoreError};

/// Connections the pool holds at most (each transaction takes one for its duration).
pub const POOL_SIZE: usize = 16;
/// How long an operation waits for a free pooled connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// How long opening one connection may take (also the default `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest accepted URL (bytes).
pub const MAX_URL_BYTES: usize = 1024;

/// What a PostgreSQL engine is opened with.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgresql://USER[:PASSWORD]@HOST:PORT/DB` (key=value connection strings are accepted too).
    pub url: String,
    /// Run even when the server acknowledges commits before they are flushed (`synchronous_commit` off or
    /// local, or `fsync` off): commits acknowledged just before a server crash can then be lost.
    pub allow_synchronous_commit_off: bool,
    /// Pooled connections at most.
    pub pool_size: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field(
                "allow_synchronous_commit_off",
                &self.allow_synchronous_commit_off,
            )
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgOptions {
    /// Options for `url` with the durability check on and the default pool size.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            allow_synchronous_commit_off: false,
            pool_size: POOL_SIZE,
        }
    }
}

/// Parses a connection URL, naming the (redacted) value in the error.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    const EXPECTED: &str = "a PostgreSQL URL like postgresql://USER@HOST:PORT/DB";
    if url.len() > MAX_URL_BYTES {
        return Err(StoreError::Invalid {
            field: "store.postgres",
            value: format!("{} bytes", url.len()),
            expected: "a URL of at most 1024 bytes",
        });
    }
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(StoreError::Invalid {
            field: "store.postgres",
            value: redact_url(url),
            expected: EXPECTED,
        });
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| StoreError::Invalid {
        field: "store.postgres",
        value: redact_url(url),
        expected: EXPECTED,
    })?;
    if config.get_hosts().is_empty() || config.get_dbname().is_none() {
        return Err(StoreError::Invalid {
            field: "store.postgres",
            value: redact_url(url),
            expected: "a URL naming a host and a database, like postgresql://USER@HOST:PORT/DB",
        });
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("shotline");
    }
    Ok(config)
}

/// A description of the database for logs: user, hosts, ports and database, never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "PostgreSQL {}@{}:{}/{}",
        config.get_user().unwrap_or("(default user)"),
        hosts.join(","),
        if ports.is_empty() {
            "5432".to_owned()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("")
    )
}

/// What [`PgEngine::probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The database (never the password).
    pub description: String,
    /// Its durability settings.
    pub settings: DurabilitySettings,
    /// Its schema version (0: empty; the first `serve` migrates it).
    pub schema_version: u32,
}

/// The PostgreSQL engine (cheap to share: the pool is reference-counted).
pub struct PgEngine {
    pub(crate) pool: Pool,
    description: String,
    settings: DurabilitySettings,
    pub(crate) commits: AtomicU64,
    pub(crate) ops: AtomicU64,
    pub(crate) commit_delay_ns: AtomicU64,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEngine")
            .field("database", &self.description)
            .field("settings", &self.settings)
            .finish()
    }
}

impl PgEngine {
    /// Connects, checks the durability settings (refusing `synchronous_commit` off/local and `fsync` off
    /// unless `allow_synchronous_commit_off`), and applies pending migrations. Must run inside a tokio
    /// runtime, which then carries the pool's connections.
    pub async fn open(options: &PgOptions) -> Result<PgEngine, StoreError> {
        if options.pool_size == 0 {
            return Err(StoreError::invalid("pool_size", "0", "at least 1"));
        }
        let config = parse_url(&options.url)?;
        let description = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .build()
            .map_err(|e| StoreError::Postgres {
                sqlstate: "-----".into(),
                message: format!("cannot build the connection pool: {e}"),
            })?;
        let mut client = pool.get().await.map_err(pool_error)?;
        let settings = DurabilitySettings::read(&client).await?;
        check_durability_settings(&settings, options.allow_synchronous_commit_off)?;
        if options.allow_synchronous_commit_off && !settings.durable() {
            tracing::warn!(
                database = %description, synchronous_commit = %settings.synchronous_commit,
                fsync = %settings.fsync,
                "PostgreSQL acknowledges commits before they are durable (allowed by \
                 store.allow_synchronous_commit_off): a server crash can lose acknowledged jobs"
            );
        }
        let version = schema::migrate(&mut client).await?;
        drop(client);
        tracing::info!(database = %description, schema_version = version, "opened the PostgreSQL store");
        Ok(PgEngine {
            pool,
            description,
            settings,
            commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            commit_delay_ns: AtomicU64::new(0),
        })
    }

    /// Checks a database without changing it (`check-config`): connects, applies the durability check, and
    /// reads the schema version, refusing a database newer than this build. Returns what it found.
    pub async fn probe(options: &PgOptions) -> Result<Probe, StoreError> {
        let config = parse_url(&options.url)?;
        let description = describe(&config);
        let (client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
        let connection = tokio::spawn(connection);
        let found = async {
            let settings = DurabilitySettings::read(&client).await?;
            check_durability_settings(&settings, options.allow_synchronous_commit_off)?;
            let schema_version = schema::current_version(&client).await?;
            let latest = schema::latest_version();
            if schema_version > latest {
                return Err(StoreError::Migration(format!(
                    "the database has schema version {schema_version} but this build knows versions up to \
                     {latest}; upgrade shotline or use a database written by this version"
                )));
            }
            Ok(Probe {
                description: description.clone(),
                settings,
                schema_version,
            })
        }
        .await;
        drop(client);
        let _ = connection.await;
        found
    }

    /// The database for logs (never the password).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The durability settings read at start.
    pub fn durability_settings(&self) -> &DurabilitySettings {
        &self.settings
    }

    /// The applied schema version.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        schema::current_version(&client).await
    }

    /// A pooled connection for one operation (counted).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.pool.get().await.map_err(pool_error)
    }

    /// Counts a write committed by a single auto-committed statement.
    pub(crate) fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a `READ COMMITTED` transaction (whatever the server's default isolation): admission relies
    /// on each statement after a row lock seeing what committed while it waited.
    pub(crate) async fn begin(
        client: &mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(pg_error)
    }

    /// Commits and counts the commit.
    pub(crate) async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
    ) -> Result<(), StoreError> {
        let delay = self.commit_delay_ns.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_nanos(delay)).await;
        }
        tx.commit().await.map_err(pg_error)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in [
            "postgresql://alice:s3cret@/",
            "mysql://alice:s3cret@db/x",
            "postgresql://alice:s3cret@db:notaport/x",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("store.postgres"), "{e}");
        }
        let long = format!("postgresql://db/{}", "x".repeat(MAX_URL_BYTES));
        assert!(parse_url(&long).unwrap_err().to_string().contains("1024"));
        let ok = parse_url("postgresql://alice@db.lab:5433/shotline").unwrap();
        assert_eq!(describe(&ok), "PostgreSQL alice@db.lab:5433/shotline");
    }
}

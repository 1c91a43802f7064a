//! Moving a SQLite store into PostgreSQL (`shotline store copy`): every row of every table, verbatim (the two
//! schemas have the same tables and columns), in one PostgreSQL transaction, from one consistent SQLite
//! snapshot. The target must be empty; afterwards its sequences are moved past the copied ids.
//!
//! A blocking reader thread walks the SQLite tables and hands rows over a bounded channel to the inserter,
//! so memory stays bounded whatever the size of the store.

use std::path::Path;

use rusqlite::types::Value;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::rows::{exec, one};
use super::{schema, PgEngine, PgOptions};
use crate::StoreError;

/// Column kinds shared by both schemas.
#[derive(Clone, Copy)]
enum Kind {
    /// SQLite INTEGER / PostgreSQL BIGINT.
    Int,
    /// TEXT.
    Text,
    /// SQLite REAL / PostgreSQL DOUBLE PRECISION.
    Real,
}

use Kind::{Int, Real, Text};

/// Every table, parents before children, with its columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", Int),
            ("name", Text),
            ("email", Text),
            ("password_hash", Text),
            ("is_admin", Int),
            ("disabled", Int),
            ("created_at", Text),
        ],
    ),
    (
        "tokens",
        &[
            ("token_hash", Text),
            ("user_id", Int),
            ("created_at", Text),
            ("expires_at", Text),
            ("revoked", Int),
        ],
    ),
    (
        "jobs",
        &[
            ("id", Text),
            ("seq", Int),
            ("user_id", Int),
            ("backend", Text),
            ("qobj_id", Text),
            ("priority", Int),
            ("tags", Text),
            ("idempotency_key", Text),
            ("body", Text),
            ("status", Text),
            ("detail", Text),
            ("error_message", Text),
            ("attempts", Int),
            ("submitted_at", Text),
            ("updated_at", Text),
        ],
    ),
    (
        "job_events",
        &[
            ("id", Int),
            ("job_id", Text),
            ("status", Text),
            ("detail", Text),
            ("at", Text),
        ],
    ),
    ("execution_counters", &[("day", Text), ("last", Int)]),
    (
        "executions",
        &[
            ("id", Text),
            ("job_id", Text),
            ("backend", Text),
            ("attempt", Int),
            ("seed", Int),
            ("config_hash", Text),
            ("software_version", Text),
            ("calibration", Text),
            ("started_at", Text),
            ("ended_at", Text),
            ("outcome", Text),
            ("detail", Text),
        ],
    ),
    (
        "shot_data",
        &[
            ("execution_id", Text),
            ("experiment_index", Int),
            ("experiment_name", Text),
            ("shots", Int),
            ("memory", Text),
            ("timing", Text),
            ("first_shot_at", Text),
            ("last_shot_at", Text),
        ],
    ),
    (
        "results",
        &[
            ("job_id", Text),
            ("execution_id", Text),
            ("body", Text),
            ("created_at", Text),
        ],
    ),
    (
        "locks",
        &[
            ("resource", Text),
            ("owner", Text),
            ("acquired_at", Text),
            ("expires_at", Text),
        ],
    ),
    (
        "calibrations",
        &[
            ("id", Int),
            ("backend", Text),
            ("name", Text),
            ("value", Real),
            ("execution_id", Text),
            ("task", Text),
            ("calibrated_at", Text),
        ],
    ),
    (
        "backend_configs",
        &[
            ("backend", Text),
            ("config_hash", Text),
            ("body", Text),
            ("recorded_at", Text),
        ],
    ),
    (
        "backend_pauses",
        &[("backend", Text), ("reason", Text), ("paused_at", Text)],
    ),
];

/// Rows in flight between the reader and the inserter.
const CHANNEL_ROWS: usize = 256;

/// Rows copied, per table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// One typed value of a copied row.
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
    Real(Option<f64>),
}

impl Cell {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Int(v) => v,
            Cell::Text(v) => v,
            Cell::Real(v) => v,
        }
    }
}

/// What the reader sends: a table starts, one of its rows, or the reader failed.
enum Item {
    Table(usize),
    Row(Vec<Cell>),
    Failed(StoreError),
}

fn cell(table: &str, column: &str, kind: Kind, v: Value) -> Result<Cell, StoreError> {
    let bad = |what: &str| StoreError::Invalid {
        field: "source row",
        value: format!("{table}.{column} holds {what}"),
        expected: "the type of the shotline schema (INTEGER, TEXT or REAL)",
    };
    Ok(match (kind, v) {
        (Kind::Int, Value::Null) => Cell::Int(None),
        (Kind::Int, Value::Integer(i)) => Cell::Int(Some(i)),
        (Kind::Text, Value::Null) => Cell::Text(None),
        (Kind::Text, Value::Text(s)) => Cell::Text(Some(s)),
        (Kind::Real, Value::Null) => Cell::Real(None),
        (Kind::Real, Value::Real(f)) => Cell::Real(Some(f)),
        (Kind::Real, Value::Integer(i)) => Cell::Real(Some(i as f64)),
        (_, Value::Blob(_)) => return Err(bad("a blob")),
        (_, Value::Integer(_)) => return Err(bad("an integer")),
        (_, Value::Real(_)) => return Err(bad("a real")),
        (_, Value::Text(_)) => return Err(bad("text")),
    })
}

/// Reads every table of the SQLite store at `path` in one read transaction (a consistent snapshot, also while
/// a server writes), sending the rows to `tx`.
fn read_sqlite(path: &Path, tx: &mpsc::Sender<Item>) -> Result<(), StoreError> {
    let mut conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let snapshot = conn.transaction()?;
    let version: Option<i64> = snapshot
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(|e| {
            StoreError::Migration(format!("{} is not a shotline store: {e}", path.display()))
        })?;
    let latest = i64::from(crate::schema::latest_version());
    if version != Some(latest) {
        return Err(StoreError::Migration(format!(
            "{} has schema version {} but this build copies version {latest}; open it once with this \
             shotline version (shotline store migrate) first",
            path.display(),
            version.unwrap_or(0)
        )));
    }
    for (t, (table, columns)) in TABLES.iter().enumerate() {
        if tx.blocking_send(Item::Table(t)).is_err() {
            return Ok(());
        }
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let mut stmt = snapshot.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns.len());
            for (i, (column, kind)) in columns.iter().enumerate() {
                cells.push(cell(table, column, *kind, row.get::<_, Value>(i)?)?);
            }
            if tx.blocking_send(Item::Row(cells)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Copies the SQLite store at `sqlite` into the (empty) PostgreSQL database of `target`, migrating the target
/// first. Nothing is written unless everything is: one transaction.
pub async fn copy_sqlite_to_postgres(
    sqlite: &Path,
    target: &PgOptions,
) -> Result<CopyReport, StoreError> {
    if !sqlite.is_file() {
        return Err(StoreError::NotFound(format!(
            "SQLite store {} (give the database file, e.g. DATA_DIR/shotline.db)",
            sqlite.display()
        )));
    }
    let engine = PgEngine::open(target).await?;
    let (tx, mut rx) = mpsc::channel::<Item>(CHANNEL_ROWS);
    let path = sqlite.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = read_sqlite(&path, &tx) {
            let _ = tx.blocking_send(Item::Failed(e));
        }
    });
    let mut client = engine.client().await?;
    let pg = PgEngine::begin(&mut client).await?;
    for (table, _) in TABLES {
        let n =
            super::rows::count(&one(&pg, &format!("SELECT COUNT(*) FROM {table}"), &[]).await?)?;
        if n > 0 {
            return Err(StoreError::Conflict(format!(
                "the target database already holds {n} row(s) in {table}; copy into an empty database"
            )));
        }
    }
    let mut report = CopyReport { tables: Vec::new() };
    let mut insert = String::new();
    while let Some(item) = rx.recv().await {
        match item {
            Item::Table(t) => {
                let (table, columns) = TABLES[t];
                let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
                let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
                insert = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names.join(", "),
                    params.join(", ")
                );
                report.tables.push((table, 0));
            }
            Item::Row(cells) => {
                let params: Vec<&(dyn ToSql + Sync)> = cells.iter().map(Cell::as_sql).collect();
                exec(&pg, &insert, &params).await?;
                if let Some((_, n)) = report.tables.last_mut() {
                    *n += 1;
                }
            }
            Item::Failed(e) => return Err(e),
        }
    }
    reader
        .await
        .map_err(|e| StoreError::Panicked(format!("reading the SQLite store: {e}")))?;
    if report.tables.len() != TABLES.len() {
        return Err(StoreError::Transaction(
            "the SQLite reader stopped before the last table; nothing was copied".into(),
        ));
    }
    schema::resync_sequences(&pg).await?;
    engine.commit(pg).await?;
    drop(client);
    tracing::info!(rows = report.total(), database = %engine.description(), "copied the SQLite store");
    Ok(report)
}

//! `shotline store migrate` and `shotline store copy`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use shotline_store::postgres::{copy_sqlite_to_postgres, PgOptions};
use shotline_store::StoreSelection;

use super::{DataDirArgs, StoreAction};

/// Runs a store maintenance command.
pub async fn store(action: StoreAction) -> anyhow::Result<()> {
    match action {
        StoreAction::Migrate { data } => migrate(&data).await,
        StoreAction::Copy {
            from,
            to,
            allow_synchronous_commit_off,
        } => copy(&from, &to, allow_synchronous_commit_off).await,
    }
}

/// The store of `args` and the data dir it belongs to.
fn selection(args: &DataDirArgs) -> anyhow::Result<(PathBuf, StoreSelection)> {
    if let Some(c) = &args.config {
        let loaded = shotline_config::load(c).map_err(|e| anyhow!("{e}"))?;
        return Ok((
            loaded.config.data_dir().to_path_buf(),
            shotline_actors::persistence::store_selection(&loaded.config),
        ));
    }
    if let Some(d) = &args.data_dir {
        let path = d.join(shotline_config::PersistenceSection::default().file);
        return Ok((
            d.clone(),
            StoreSelection::Sqlite {
                path,
                queue_capacity: 16,
            },
        ));
    }
    bail!("say which store: --config FILE or --data-dir DIR")
}

/// Takes the data dir's lock: no server may use it meanwhile.
async fn lock(dir: &Path) -> anyhow::Result<shotline::datadir::DataDirLock> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || shotline::datadir::lock(&d))
        .await?
        .map_err(|e| anyhow!("{e}; stop the server first"))
}

async fn migrate(args: &DataDirArgs) -> anyhow::Result<()> {
    let (dir, selection) = selection(args)?;
    // A SQLite store belongs to its data dir: no server may hold it meanwhile. PostgreSQL migrations take an
    // advisory lock of their own, so servers may run (they migrated at their start).
    let _lock = match &selection {
        StoreSelection::Sqlite { .. } => Some(lock(&dir).await?),
        StoreSelection::Postgres { .. } => None,
    };
    let engine = shotline_store::open(&selection)
        .await
        .with_context(|| format!("cannot open the store {}", selection.describe()))?;
    let version = engine.schema_version().await?;
    engine.shutdown().await?;
    println!(
        "{}: schema version {version} (this build knows up to {})",
        engine.describe(),
        shotline_store::schema::latest_version()
    );
    Ok(())
}

async fn copy(from: &Path, to: &str, allow_synchronous_commit_off: bool) -> anyhow::Result<()> {
    let (dir, db) = if from.is_dir() {
        (
            from.to_path_buf(),
            from.join(shotline_config::PersistenceSection::default().file),
        )
    } else {
        let dir = from
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (dir.to_path_buf(), from.to_path_buf())
    };
    let _lock = lock(&dir).await?;
    let options = PgOptions {
        allow_synchronous_commit_off,
        ..PgOptions::new(to)
    };
    let report = copy_sqlite_to_postgres(&db, &options).await.map_err(|e| {
        anyhow!(
            "cannot copy {} into {}: {e}",
            db.display(),
            shotline_store::redact_url(to)
        )
    })?;
    let tables: Vec<String> = report
        .tables
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!(
        "copied {} rows from {} into {} ({})",
        report.total(),
        db.display(),
        shotline_store::redact_url(to),
        tables.join(", ")
    );
    Ok(())
}

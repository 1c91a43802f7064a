//! `shotline serve` and `shotline check-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use shotline::{Runtime, StartOptions};

/// Runs the service until SIGINT/SIGTERM (exit 0) or until the supervision tree gives up (error).
pub async fn serve(
    config: &Path,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    accept_data_loss: bool,
) -> anyhow::Result<()> {
    let loaded = shotline_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    shotline::logging::init(&loaded.config.logging);
    if accept_data_loss {
        let dir = data_dir
            .clone()
            .unwrap_or_else(|| loaded.config.data_dir().to_path_buf());
        let done = if loaded.config.store.postgres.is_some() {
            let selection = shotline_actors::persistence::store_selection(&loaded.config);
            let marks = shotline::postgres_marks::database_marks(&selection).await?;
            tokio::task::spawn_blocking(move || {
                shotline::postgres_marks::accept_data_loss(&dir, &marks)
            })
            .await??
        } else {
            let db = dir.join(&loaded.config.persistence.file);
            tokio::task::spawn_blocking(move || shotline::datadir::accept_data_loss(&dir, &db))
                .await??
        };
        tracing::warn!("{done}");
        eprintln!("warning: {done}");
    }
    // The handlers are installed before the runtime starts and before the ready line: a SIGTERM sent as soon
    // as "ready" is read (or during start-up) is a clean shutdown, never the default action (killed).
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let start = Runtime::start(
        loaded,
        StartOptions {
            listen,
            data_dir,
            gateway: true,
            admin_socket: true,
        },
    );
    // A signal during start-up ends the process at once (what the store holds is crash-safe).
    let mut runtime = tokio::select! {
        started = start => started.context("cannot start")?,
        _ = int.recv() => anyhow::bail!("SIGINT during start-up: not started"),
        _ = term.recv() => anyhow::bail!("SIGTERM during start-up: not started"),
    };
    let addr = runtime
        .listen_addr()
        .context("the gateway is not listening")?;
    eprintln!("shotline ready: listening on {addr}");
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        reason = runtime.stopped() => {
            anyhow::bail!("the runtime stopped: {}", reason.unwrap_or_else(|| "unknown reason".into()));
        }
    }
    runtime.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Validates a config file; prints every issue with its line and column.
pub fn check_config(file: &Path) -> anyhow::Result<()> {
    match shotline_config::load(file) {
        Ok(loaded) => {
            if let Err(issues) = shotline_models::ModelRegistry::builtin().check(&loaded.config) {
                for issue in &issues {
                    eprintln!("{}: {issue}", file.display());
                }
                anyhow::bail!("{} is not a valid shotline config", file.display());
            }
            println!(
                "{}: ok ({} backend{}, hash {})",
                file.display(),
                loaded.config.backends.len(),
                if loaded.config.backends.len() == 1 {
                    ""
                } else {
                    "s"
                },
                loaded.hash
            );
            if let Some(url) = &loaded.config.store.postgres {
                println!("{}", check_postgres(url, &loaded.config.store)?);
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!("{} is not a valid shotline config", file.display())
        }
    }
}

/// `check-config` with `store.postgres`: connects and checks the database the server would use (durability
/// settings, schema version) without changing it.
fn check_postgres(
    url: &shotline_config::PostgresUrl,
    store: &shotline_config::StoreSection,
) -> anyhow::Result<String> {
    use shotline_store::postgres::{PgEngine, PgOptions};
    let options = PgOptions {
        allow_synchronous_commit_off: store.allow_synchronous_commit_off,
        ..PgOptions::new(url.expose())
    };
    // On a thread of its own: check-config runs inside the CLI's runtime, which must not block.
    let probe = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a runtime to reach the database")?;
            rt.block_on(PgEngine::probe(&options))
                .map_err(|e| anyhow::anyhow!("store.postgres {}: {e}", url.redacted()))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the database check panicked"))?
    })?;
    let latest = shotline_store::postgres::schema::latest_version();
    Ok(format!(
        "store: {}: ok (schema version {} of {latest}{}, synchronous_commit {}, fsync {})",
        probe.description,
        probe.schema_version,
        if probe.schema_version < latest {
            "; serve migrates it"
        } else {
            ""
        },
        probe.settings.synchronous_commit,
        probe.settings.fsync
    ))
}

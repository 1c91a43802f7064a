//! The `shotline` binary.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use shotline_client::SubmitOptions;

fn main() -> std::process::ExitCode {
    // Like other Unix tools: output piped into `head` ends the process quietly instead of a panic.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Command::Serve { config, .. } = &cli.command {
        reserve_shot_clock_cpus(config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shotline-worker")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives threads that contend in `malloc` arenas of their own, up to 8 per core, each reserving 64 MiB of
/// address space: a server whose thread count moves (tokio's blocking pool, device and store threads) grows
/// its address space in 64 MiB steps that hold almost nothing, which trips address-space limits (`ulimit -v`,
/// container accounting) and hides real growth. At most 4 arenas (or one per core on bigger machines) keep it
/// bounded at a small cost in allocator contention. An operator's `MALLOC_ARENA_MAX` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(4)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; called on the main thread before any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Keeps every thread but the pinned shot clocks (tokio workers, blocking pool, store thread) off the cores
/// that backends reserve with `timing.realtime.cpu`: done on the main thread before any other thread exists,
/// so they all inherit it (`shotline::affinity`). Config errors are reported later by `serve` itself.
fn reserve_shot_clock_cpus(config: &std::path::Path) {
    let Ok(loaded) = shotline_config::load(config) else {
        return;
    };
    if let Err(e) = shotline::affinity::reserve_shot_clock_cpus(&loaded.config) {
        eprintln!("warning: {e}");
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            accept_data_loss,
        } => cli::serve::serve(&config, listen, data_dir, accept_data_loss).await,
        Command::CheckConfig { file } => cli::serve::check_config(&file),
        Command::User { action } => cli::user::user(action).await,
        Command::Store { action } => cli::store::store(action).await,
        Command::Fault { fault, data } => cli::user::fault(fault, data).await,
        Command::Login {
            client,
            user,
            password_stdin,
            ca,
            repin,
        } => cli::remote::login(&client, &user, password_stdin, ca, repin).await,
        Command::Backends { client } => cli::remote::backends(&client).await,
        Command::Backend {
            name_or_action,
            name,
            client,
        } => match (name_or_action.as_str(), name) {
            ("pause" | "resume", Some(n)) => {
                cli::remote::operator(&client, &name_or_action, Some(&n)).await
            }
            (b, None) => cli::remote::backend(&client, b).await,
            (a, Some(_)) => anyhow::bail!(
                "`backend {a} NAME`: unknown action {a:?}; use `backend NAME`, `backend pause NAME` or `backend resume NAME`"
            ),
        },
        Command::Logout { client } => cli::remote::logout(&client).await,
        Command::Register {
            user,
            password_stdin,
            client,
        } => cli::remote::register(&client, &user, password_stdin).await,
        Command::Whoami { client } => cli::remote::whoami(&client).await,
        Command::Jobs {
            status,
            backend,
            since,
            until,
            limit,
            after,
            all,
            client,
        } => {
            let status = match status {
                Some(s) => Some(
                    s.to_ascii_uppercase()
                        .parse::<shotline_protocol::JobStatus>()
                        .map_err(|_| anyhow::anyhow!("unknown status {s:?}: use QUEUED, RUNNING, DONE, ERROR or CANCELLED"))?,
                ),
                None => None,
            };
            cli::remote::jobs(
                &client,
                shotline_client::JobsQuery {
                    status,
                    backend,
                    since,
                    until,
                    limit: Some(limit),
                    after,
                    all,
                },
            )
            .await
        }
        Command::Cancel { job_id, client } => cli::remote::cancel(&client, &job_id).await,
        Command::Watch {
            job_id,
            shots,
            client,
        } => cli::remote::watch(&client, &job_id, shots).await,
        Command::Estop { client } => cli::remote::operator(&client, "estop", None).await,
        Command::Submit {
            file,
            backend,
            wait,
            priority,
            qobj_id,
            idempotency_key,
            tags,
            client,
        } => {
            cli::remote::submit(
                &client,
                &file,
                &backend,
                wait,
                SubmitOptions {
                    qobj_id,
                    priority,
                    tags,
                    idempotency_key,
                },
            )
            .await
        }
        Command::Status { job_id, client } => cli::remote::status(&client, &job_id).await,
        Command::Result { job_id, client } => cli::remote::result(&client, &job_id).await,
    }
}

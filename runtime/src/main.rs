//! The `shotline` binary.

mod cli;

use clap::Parser;
use cli::{Cli, Command, UserAction};
use shotline_client::SubmitOptions;

fn main() -> std::process::ExitCode {
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

/// Keeps every thread but the pinned shot clocks (tokio workers, blocking pool, store thread) off the cores
/// that backends reserve with `timing.realtime.cpu`: done on the main thread before any other thread exists,
/// so they all inherit it. Config errors are reported later by `serve` itself.
fn reserve_shot_clock_cpus(config: &std::path::Path) {
    let Ok(loaded) = shotline_config::load(config) else {
        return;
    };
    let cpus: Vec<usize> = loaded
        .config
        .backends
        .iter()
        .filter(|b| b.timing.realtime.enabled)
        .filter_map(|b| b.timing.realtime.cpu)
        .collect();
    if let Err(e) = shotline_hal::realtime::exclude_cpus(&cpus) {
        eprintln!("warning: {e}");
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => cli::serve::serve(&config, listen, data_dir).await,
        Command::CheckConfig { file } => cli::serve::check_config(&file),
        Command::User { action } => match action {
            UserAction::Add {
                name,
                admin,
                password_stdin,
                data,
            } => cli::user::add(&name, admin, password_stdin, &data).await,
        },
        Command::Login {
            client,
            user,
            password_stdin,
            ca,
            repin,
        } => cli::remote::login(&client, &user, password_stdin, ca, repin).await,
        Command::Backends { client } => cli::remote::backends(&client).await,
        Command::Backend { name, client } => cli::remote::backend(&client, &name).await,
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

//! The `shotline` binary.

mod cli;

use clap::Parser;
use cli::{Cli, Command, UserAction};
use shotline_client::SubmitOptions;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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

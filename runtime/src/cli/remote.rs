//! Client commands over QUIC: `login`, `backends`, `backend`, `submit`, `status`, `result`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use shotline_client::{Client, PinOutcome, SubmitOptions};
use shotline_protocol::{JobStatus, Value};
use shotline_tls::KnownServers;

use super::home::{Home, Session};
use super::ClientArgs;

fn server(args: &ClientArgs) -> anyhow::Result<String> {
    args.server
        .clone()
        .ok_or_else(|| anyhow!("no server: pass --server HOST:PORT or set SHOTLINE_SERVER"))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Logs in, stores the token and pins the certificate on first use.
pub async fn login(
    args: &ClientArgs,
    user: &str,
    password_stdin: bool,
    ca: Option<PathBuf>,
    repin: bool,
) -> anyhow::Result<()> {
    let server = server(args)?;
    let home = Home::locate()?;
    if repin {
        let mut known = KnownServers::load(&home.pins_file())?;
        if known.forget(&server)? {
            eprintln!("forgot the pinned certificate of {server}");
        }
    }
    let password =
        super::read_password(password_stdin, &format!("password for {user}@{server}: "))?;
    let trust = home.trust(ca.clone());
    let client = Client::connect(&server, &trust).await?;
    let login = client.login(user, &password).await?;
    let pinned = client.accept_first_use()?;
    home.save_session(
        &server,
        Session {
            user: login.user.clone(),
            token: login.token.clone(),
            expires_at: login.expires_at.clone(),
            ca,
        },
    )?;
    if args.json {
        print_json(&json!({
            "server": server, "user": login.user, "expires_at": login.expires_at,
            "pinned_certificate": pinned,
        }))?;
    } else {
        if let Some(fp) = &pinned {
            eprintln!("pinned the certificate of {server}: {fp}");
        } else if let Some(PinOutcome::Matched { fingerprint }) = client.pin_outcome() {
            eprintln!("certificate of {server} matches the pin {fingerprint}");
        }
        println!(
            "logged in to {server} as {} (token expires {})",
            login.user, login.expires_at
        );
    }
    client.close().await;
    Ok(())
}

async fn connect(args: &ClientArgs) -> anyhow::Result<(Client, Session)> {
    let server = server(args)?;
    let home = Home::locate()?;
    let session = home.session(&server)?;
    let client = Client::connect(&server, &home.trust(session.ca.clone())).await?;
    Ok((client, session))
}

/// Lists backends.
pub async fn backends(args: &ClientArgs) -> anyhow::Result<()> {
    let (client, session) = connect(args).await?;
    let list = client.backends(&session.token).await?;
    if args.json {
        print_json(&list)?;
    } else {
        for b in &list {
            let state = if !b.status.operational {
                "down"
            } else if b.status.paused {
                "paused"
            } else {
                "operational"
            };
            println!(
                "{:<16} {:<12} {} pending  {}  ({}{})",
                b.name,
                state,
                b.status.pending_jobs,
                b.display_name,
                b.version,
                if b.simulator { ", simulator" } else { "" }
            );
        }
    }
    client.close().await;
    Ok(())
}

/// One backend.
pub async fn backend(args: &ClientArgs, name: &str) -> anyhow::Result<()> {
    let (client, session) = connect(args).await?;
    let (config, status) = client.backend(&session.token, name).await?;
    if args.json {
        print_json(&json!({ "config": config, "status": status }))?;
    } else {
        println!(
            "{} — {} (version {})",
            config.backend_name, config.display_name, config.backend_version
        );
        println!("  {}", config.description);
        println!(
            "  status: {}{}, {} pending{}",
            if status.operational {
                "operational"
            } else {
                "down"
            },
            if status.paused { " (paused)" } else { "" },
            status.pending_jobs,
            status
                .running_execution
                .map(|x| format!(", running execution {x}"))
                .unwrap_or_default()
        );
        println!(
            "  limits: {} wires, {} shots, {} experiments",
            config.num_wires, config.max_shots, config.max_experiments
        );
        println!("  instructions:");
        for i in &config.instructions {
            let params: Vec<String> = i
                .params
                .iter()
                .map(|p| {
                    format!(
                        "{} in [{}, {}]{}",
                        p.name,
                        p.min,
                        p.max,
                        if p.integer { " (integer)" } else { "" }
                    )
                })
                .collect();
            println!(
                "    {:<8} {:?} {}",
                i.name,
                i.coupling_map,
                params.join(", ")
            );
        }
    }
    client.close().await;
    Ok(())
}

fn read_job(file: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
}

/// Submits a job; with `wait`, waits and prints the result.
#[allow(clippy::too_many_arguments)]
pub async fn submit(
    args: &ClientArgs,
    file: &Path,
    backend: &str,
    wait: bool,
    options: SubmitOptions,
) -> anyhow::Result<()> {
    let job = read_job(file)?;
    let (client, session) = connect(args).await?;
    let submitted = client.submit(&session.token, backend, job, options).await?;
    if !wait {
        if args.json {
            print_json(&json!({
                "job_id": submitted.job_id, "status": submitted.status, "duplicate": submitted.duplicate,
            }))?;
        } else {
            println!("{}", submitted.job_id);
        }
        client.close().await;
        return Ok(());
    }
    eprintln!("submitted job {}", submitted.job_id);
    let last = client
        .wait_terminal(&session.token, &submitted.job_id, |s| {
            eprintln!("job {}: {} {}", s.job_id, s.status, s.detail);
        })
        .await?;
    let result = client.result(&session.token, &submitted.job_id).await?;
    print_json(&result)?;
    client.close().await;
    if last.status != JobStatus::Done {
        bail!(
            "job {} ended {}: {}",
            last.job_id,
            last.status,
            last.error_message
        );
    }
    Ok(())
}

/// Prints a job's status.
pub async fn status(args: &ClientArgs, job_id: &str) -> anyhow::Result<()> {
    let (client, session) = connect(args).await?;
    let s = client.status(&session.token, job_id).await?;
    if args.json {
        print_json(&s)?;
    } else {
        print!("{} {}", s.job_id, s.status);
        if !s.detail.is_empty() {
            print!(" ({})", s.detail);
        }
        if !s.error_message.is_empty() {
            print!(": {}", s.error_message);
        }
        println!();
    }
    client.close().await;
    Ok(())
}

/// Prints a job's result (always JSON: it is the result format).
pub async fn result(args: &ClientArgs, job_id: &str) -> anyhow::Result<()> {
    let (client, session) = connect(args).await?;
    let r = client.result(&session.token, job_id).await?;
    print_json(&r)?;
    client.close().await;
    Ok(())
}

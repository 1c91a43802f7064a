//! Client commands over QUIC: `login`, `backends`, `backend`, `submit`, `status`, `result`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use shotline_client::{Client, JobsQuery, PinOutcome, SubmitOptions};
use shotline_protocol::wire::{EstopReport, JobEvent};
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
    closing(client, async |client| {
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

        Ok(())
    })
    .await
}

async fn connect(args: &ClientArgs) -> anyhow::Result<(Client, Session)> {
    let server = server(args)?;
    let home = Home::locate()?;
    let session = home.session(&server)?;
    let client = Client::connect(&server, &home.trust(session.ca.clone())).await?;
    Ok((client, session))
}

/// Runs `f` on `client` and closes the connection whatever `f` returns: a command that fails must not leave
/// its connection counting against the user's `limits.max_connections_per_user` on the server.
async fn closing<T>(
    client: Client,
    f: impl AsyncFnOnce(&Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let r = f(&client).await;
    client.close().await;
    r
}

/// Connects with the stored session, runs `f`, and closes the connection on every path.
async fn with_session<T>(
    args: &ClientArgs,
    f: impl AsyncFnOnce(&Client, &Session) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let (client, session) = connect(args).await?;
    closing(client, async |c| f(c, &session).await).await
}

/// Lists backends.
pub async fn backends(args: &ClientArgs) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
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
        Ok(())
    })
    .await
}

/// One backend.
pub async fn backend(args: &ClientArgs, name: &str) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
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
            if !status.devices.is_empty() {
                println!("  devices:");
                for d in &status.devices {
                    println!("    {}", device_line(d));
                }
            }
        }
        Ok(())
    })
    .await
}

/// One line per device: name, driver, state, the card's link for bridge devices, the last error.
fn device_line(d: &shotline_protocol::DeviceStatus) -> String {
    let mut line = format!("{:<12} {:<10} {}", d.name, d.driver, d.state);
    if let Some(c) = &d.card {
        let id = c.card_id.map(|i| format!(" card {i}")).unwrap_or_default();
        line.push_str(&format!(
            " — {} {}{id}, drift {:+.1} ppm, {} connects, {} firmware resets, {} retransmissions",
            c.endpoint,
            if c.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            c.drift_ppm,
            c.connects,
            c.firmware_resets,
            c.retransmissions
        ));
        if let (false, Some(e)) = (c.connected, &c.last_error) {
            line.push_str(&format!(" ({e})"));
        }
    }
    if let Some(e) = &d.last_error {
        line.push_str(&format!("; last error: {e}"));
    }
    line
}

fn read_job(file: &Path) -> anyhow::Result<Value> {
    let text = super::input::read_text_capped(file, super::input::MAX_JOB_FILE_BYTES, "job file")?;
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
    with_session(args, async |client, session| {
        let submitted = client.submit(&session.token, backend, job, options).await?;
        if !wait {
            if args.json {
                print_json(&json!({
                    "job_id": submitted.job_id, "status": submitted.status, "duplicate": submitted.duplicate,
                }))?;
            } else {
                println!("{}", submitted.job_id);
            }
            return Ok(());
        }
        eprintln!("submitted job {}", submitted.job_id);
        let last = follow(client, &session.token, &submitted.job_id, false).await?;
        let result = client.result(&session.token, &submitted.job_id).await?;
        print_json(&result)?;
        if last.status != JobStatus::Done {
            bail!(
                "job {} ended {}: {} {}",
                last.job_id,
                last.status,
                last.detail,
                last.error_message
            );
        }
        Ok(())
    })
    .await
}

/// Follows a job through `watch`: a progress bar on a terminal, plain lines otherwise.
async fn follow(
    client: &Client,
    token: &str,
    job_id: &str,
    shots: bool,
) -> anyhow::Result<shotline_protocol::StatusRecord> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} shots ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let last = client
        .watch(token, job_id, shots, |event| match event {
            JobEvent::Status { status } => {
                let line = format!(
                    "{} {} {}",
                    status.status, status.detail, status.error_message
                );
                match &bar {
                    Some(b) => b.set_message(line.trim().to_string()),
                    None => eprintln!("job {}: {}", status.job_id, line.trim()),
                }
            }
            JobEvent::Progress { progress, .. } => match &bar {
                Some(b) => {
                    b.set_length(progress.shots_total);
                    b.set_position(progress.shots_done);
                }
                None => eprintln!(
                    "job {job_id}: {}/{} shots ({})",
                    progress.shots_done, progress.shots_total, progress.experiment
                ),
            },
            JobEvent::Shot {
                experiment_index,
                shot,
                memory,
                ..
            } => {
                let line = format!("experiment {experiment_index} shot {shot}: {memory}");
                match &bar {
                    Some(b) => b.println(line),
                    None => println!("{line}"),
                }
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(last)
}

/// Follows a job until it is terminal.
pub async fn watch(args: &ClientArgs, job_id: &str, shots: bool) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
        let last = follow(client, &session.token, job_id, shots).await?;
        if args.json {
            print_json(&last)?;
        } else {
            println!(
                "{} {} {} {}",
                last.job_id, last.status, last.detail, last.error_message
            );
        }
        Ok(())
    })
    .await
}

/// Cancels a job.
pub async fn cancel(args: &ClientArgs, job_id: &str) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
        let s = client.cancel(&session.token, job_id).await?;
        if args.json {
            print_json(&s)?;
        } else if s.status == JobStatus::Cancelled {
            println!("{} CANCELLED ({})", s.job_id, s.detail);
        } else {
            println!(
                "{} is {}: it stops at the next shot boundary (shotline watch {} shows the end)",
                s.job_id, s.status, s.job_id
            );
        }
        Ok(())
    })
    .await
}

/// Creates an account (self-registration), pinning the certificate like `login`.
pub async fn register(args: &ClientArgs, user: &str, password_stdin: bool) -> anyhow::Result<()> {
    let server = server(args)?;
    let home = Home::locate()?;
    let password = super::read_password(
        password_stdin,
        &format!("new password for {user}@{server}: "),
    )?;
    let client = Client::connect(&server, &home.trust(None)).await?;
    let name = closing(client, async |client| {
        let name = client.register(user, &password).await?;
        client.accept_first_use()?;
        Ok(name)
    })
    .await?;
    println!(
        "account {name} created on {server}; now `shotline login --server {server} --user {name}`"
    );
    Ok(())
}

/// Logs out: revokes the token and forgets the session.
pub async fn logout(args: &ClientArgs) -> anyhow::Result<()> {
    let server = server(args)?;
    let revoked = with_session(args, async |client, session| {
        Ok(client.logout(&session.token).await)
    })
    .await?;
    Home::locate()?.forget_session(&server)?;
    revoked?;
    println!("logged out of {server}");
    Ok(())
}

/// Who am I.
pub async fn whoami(args: &ClientArgs) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
        let (user, admin) = client.whoami(&session.token).await?;
        if args.json {
            print_json(
                &json!({ "user": user, "is_admin": admin, "expires_at": session.expires_at }),
            )?;
        } else {
            println!(
                "{user}{} (token expires {})",
                if admin { " (admin)" } else { "" },
                session.expires_at
            );
        }
        Ok(())
    })
    .await
}

/// Lists jobs.
pub async fn jobs(args: &ClientArgs, q: JobsQuery) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
        let (jobs, next) = client.jobs(&session.token, q).await?;
        if args.json {
            print_json(&json!({ "jobs": jobs, "next": next }))?;
        } else {
            for j in &jobs {
                println!(
                    "{}  {:<9} {:<12} {:<10} {}  {}",
                    j.job_id, j.status, j.backend, j.user, j.submitted_at, j.detail
                );
            }
            if let Some(n) = next {
                println!("more: --after {n}");
            }
        }
        Ok(())
    })
    .await
}

/// Operator actions: pause / resume a backend, emergency stop.
pub async fn operator(args: &ClientArgs, action: &str, name: Option<&str>) -> anyhow::Result<()> {
    if action == "estop" {
        return with_session(args, async |client, session| {
            // Per backend and per device: safe or not, and why; non-zero exit unless every device is safe.
            let report = client.estop_report(&session.token).await?;
            if args.json {
                print_json(&report)?;
            } else {
                print_estop(&report);
            }
            if !report.all_safe {
                bail!("emergency stop incomplete: not every device reached its safe state");
            }
            Ok(())
        })
        .await;
    }
    with_session(args, async |client, session| {
        let message = match (action, name) {
            ("pause", Some(n)) => client.pause_backend(&session.token, n).await?,
            ("resume", Some(n)) => client.resume_backend(&session.token, n).await?,
            (a, _) => {
                bail!("unknown action {a}: use `backend pause NAME`, `backend resume NAME` or `estop`")
            }
        };
        if args.json {
            print_json(&json!({ "message": message }))?;
        } else {
            println!("{message}");
        }
        Ok(())
    })
    .await
}

/// Prints an emergency stop's report: each backend, then each of its devices, safe or not and why.
fn print_estop(report: &EstopReport) {
    for b in &report.backends {
        match &b.error {
            Some(e) => println!("{}: DID NOT ANSWER: {e}", b.backend),
            None => println!(
                "{}: paused{}",
                b.backend,
                match (&b.job_id, b.job_settled) {
                    (Some(j), true) => format!(", job {j} re-queued"),
                    (Some(j), false) =>
                        format!(", job {j} stopping (re-queued at its shot boundary)"),
                    (None, _) => String::new(),
                }
            ),
        }
        for d in &b.devices {
            match &d.reason {
                None if d.safe => println!("  {:<16} safe", d.device),
                r => println!(
                    "  {:<16} NOT SAFE: {}",
                    d.device,
                    r.as_deref().unwrap_or("")
                ),
            }
        }
    }
    println!("{}", report.message);
}

/// Prints a job's status.
pub async fn status(args: &ClientArgs, job_id: &str) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
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
        Ok(())
    })
    .await
}

/// Prints a job's result (always JSON: it is the result format).
pub async fn result(args: &ClientArgs, job_id: &str) -> anyhow::Result<()> {
    with_session(args, async |client, session| {
        let r = client.result(&session.token, job_id).await?;
        print_json(&r)?;
        Ok(())
    })
    .await
}

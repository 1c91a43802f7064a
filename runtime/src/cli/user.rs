//! `shotline user add | disable | enable | passwd | list | remove`: through the admin socket of a running
//! server (the server stays the only writer and sees the change at once), or directly on its store when no
//! server holds the data dir's lock (`server.lock`); a server that holds it but whose socket cannot be reached
//! is an error naming why, never a reason to open the store behind it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use shotline::admin::{self, AdminRequest, AdminResponse, Reached, UserLine};
use shotline_actors::auth;
use shotline_store::{Engine, StoreSelection};

use super::{DataDirArgs, UserAction};

/// The data dir and the store the server of `args` uses (the configured one, or the SQLite database in
/// `--data-dir`).
fn data_dir(args: &DataDirArgs) -> anyhow::Result<(PathBuf, StoreSelection)> {
    if let Some(c) = &args.config {
        let loaded = shotline_config::load(c).map_err(|e| anyhow!("{e}"))?;
        return Ok((
            loaded.config.data_dir().to_path_buf(),
            shotline_actors::persistence::store_selection(&loaded.config),
        ));
    }
    if let Some(d) = &args.data_dir {
        let db = d.join(shotline_config::PersistenceSection::default().file);
        let selection = StoreSelection::Sqlite {
            path: db,
            queue_capacity: 16,
        };
        return Ok((d.clone(), selection));
    }
    bail!("say where the server keeps its data: --config FILE or --data-dir DIR")
}

/// Sends `request` to the running server, or runs `direct` on the store (through the store interface, like
/// the server) when none runs.
async fn run<F, Fut>(
    args: &DataDirArgs,
    request: AdminRequest,
    direct: F,
) -> anyhow::Result<(AdminResponse, bool)>
where
    F: FnOnce(Arc<dyn Engine>) -> Fut,
    Fut: Future<Output = anyhow::Result<AdminResponse>>,
{
    let (dir, selection) = data_dir(args)?;
    let _lock = match admin::request(&dir, &request).await? {
        Reached::Answered(response) => return Ok((response, true)),
        // No server holds the data dir; keep its lock so none starts while the store is open here.
        Reached::NoServer(lock) => lock,
    };
    let engine = shotline_store::open(&selection)
        .await
        .with_context(|| format!("cannot open the store {}", selection.describe()))?;
    let answer = direct(Arc::clone(&engine)).await;
    engine.shutdown().await.map_err(store_err)?;
    Ok((answer?, false))
}

fn print(response: AdminResponse, through_server: bool, json: bool) -> anyhow::Result<()> {
    let via = if through_server {
        " (through the running server)"
    } else {
        " (directly in the store; no server was running)"
    };
    match response {
        AdminResponse::Ok { message } => println!("{message}{via}"),
        AdminResponse::Users { users } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    println!(
                        "{:<24} {}{} created {}",
                        u.name,
                        if u.admin { "admin" } else { "user " },
                        if u.disabled { " DISABLED" } else { "" },
                        u.created_at
                    );
                }
            }
        }
        AdminResponse::Error { code, message } => bail!("{code}: {message}"),
    }
    Ok(())
}

fn store_err(e: shotline_store::StoreError) -> anyhow::Error {
    anyhow!("{e}")
}

/// Runs a user administration command.
pub async fn user(action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add {
            name,
            admin,
            password_stdin,
            data,
        } => {
            auth::check_user_name(&name).map_err(|m| anyhow!(m))?;
            let password = super::read_password(password_stdin, &format!("password for {name}: "))?;
            auth::check_password_policy(&password).map_err(|m| anyhow!(m))?;
            let request = AdminRequest::AddUser {
                name: name.clone(),
                password: password.clone(),
                admin,
            };
            let (r, via) = run(&data, request, |e| async move {
                let hash = auth::hash_password(&password).map_err(|m| anyhow!(m))?;
                let now = shotline_actors::time::utc_now();
                e.add_user(&name, None, &hash, admin, &now)
                    .await
                    .map_err(store_err)?;
                Ok(AdminResponse::Ok {
                    message: format!("user {name} added{}", if admin { " (admin)" } else { "" }),
                })
            })
            .await?;
            print(r, via, false)
        }
        UserAction::Disable { name, data } => set_disabled(name, data, true).await,
        UserAction::Enable { name, data } => set_disabled(name, data, false).await,
        UserAction::Passwd {
            name,
            password_stdin,
            data,
        } => {
            let password =
                super::read_password(password_stdin, &format!("new password for {name}: "))?;
            auth::check_password_policy(&password).map_err(|m| anyhow!(m))?;
            let request = AdminRequest::Passwd {
                name: name.clone(),
                password: password.clone(),
            };
            let (r, via) = run(&data, request, |e| async move {
                let hash = auth::hash_password(&password).map_err(|m| anyhow!(m))?;
                e.set_password_hash(&name, &hash).await.map_err(store_err)?;
                Ok(AdminResponse::Ok {
                    message: format!("password of {name} changed; its tokens were revoked"),
                })
            })
            .await?;
            print(r, via, false)
        }
        UserAction::List { json, data } => {
            let (r, via) = run(&data, AdminRequest::ListUsers, |e| async move {
                let users = e.list_users().await.map_err(store_err)?;
                Ok(AdminResponse::Users {
                    users: users.into_iter().map(UserLine::from).collect(),
                })
            })
            .await?;
            print(r, via, json)
        }
        UserAction::Remove { name, data } => {
            let request = AdminRequest::RemoveUser { name: name.clone() };
            let (r, via) = run(&data, request, |e| async move {
                e.delete_user(&name).await.map_err(store_err)?;
                Ok(AdminResponse::Ok {
                    message: format!("user {name} removed"),
                })
            })
            .await?;
            print(r, via, false)
        }
    }
}

async fn set_disabled(name: String, data: DataDirArgs, disabled: bool) -> anyhow::Result<()> {
    let request = AdminRequest::SetDisabled {
        name: name.clone(),
        disabled,
    };
    let (r, via) = run(&data, request, |e| async move {
        e.set_user_disabled(&name, disabled)
            .await
            .map_err(store_err)?;
        Ok(AdminResponse::Ok {
            message: format!(
                "user {name} {}",
                if disabled { "disabled" } else { "enabled" }
            ),
        })
    })
    .await?;
    print(r, via, false)
}

/// Sends a fault-injection request to the running server.
pub async fn fault(fault: super::FaultCommand, data: DataDirArgs) -> anyhow::Result<()> {
    let spec = fault_spec(fault)?;
    let (dir, _) = data_dir(&data)?;
    match admin::request(&dir, &AdminRequest::Fault { spec }).await? {
        Reached::Answered(r) => print(r, true, false),
        Reached::NoServer(_) => bail!(
            "no server is running on {}: faults are injected into a running server",
            dir.display()
        ),
    }
}

/// The fault a `shotline fault` command asks for: every [`FaultSpec`] has its subcommand.
fn fault_spec(fault: super::FaultCommand) -> anyhow::Result<shotline_actors::faults::FaultSpec> {
    use shotline_actors::faults::{ActorFault, DeviceFaultKind, FaultSpec};
    Ok(match fault {
        super::FaultCommand::Actor { role, mode } => FaultSpec::Actor {
            role,
            mode: match mode.as_str() {
                "panic" => ActorFault::Panic,
                "kill" => ActorFault::Kill,
                m => bail!("unknown mode {m:?}: use panic or kill"),
            },
        },
        super::FaultCommand::Device {
            backend,
            device,
            kind,
            at_shot,
            hang_ms,
        } => FaultSpec::Device {
            backend,
            device,
            kind: match kind.as_str() {
                "error" => DeviceFaultKind::Error,
                "hang" => DeviceFaultKind::Hang,
                "disconnect" => DeviceFaultKind::Disconnect,
                "clear" => DeviceFaultKind::Clear,
                k => bail!("unknown kind {k:?}: use error, hang, disconnect or clear"),
            },
            at_shot,
            hang_ms,
        },
        super::FaultCommand::Clock { backend, delay_ns } => {
            FaultSpec::ClockDelay { backend, delay_ns }
        }
        super::FaultCommand::ExecutionPanic { backend } => FaultSpec::ExecutionPanic { backend },
        super::FaultCommand::AnalysisDelay { backend, delay_us } => {
            FaultSpec::AnalysisDelay { backend, delay_us }
        }
        super::FaultCommand::StoreDelay { delay_ms } => FaultSpec::StoreCommitDelay { delay_ms },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use shotline_actors::faults::FaultSpec;

    fn parse(args: &[&str]) -> FaultSpec {
        let cli =
            super::super::Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let super::super::Command::Fault { fault, .. } = cli.command else {
            panic!("not a fault command");
        };
        fault_spec(fault).unwrap()
    }

    #[test]
    fn every_fault_has_a_subcommand() {
        let every = [
            (vec!["actor", "scheduler", "--mode", "kill"], "actor"),
            (vec!["device", "b", "rf", "--kind", "hang"], "device"),
            (vec!["clock", "b", "--delay-ns", "5"], "clock_delay"),
            (vec!["execution-panic", "b"], "execution_panic"),
            (
                vec!["analysis-delay", "b", "--delay-us", "7"],
                "analysis_delay",
            ),
            (vec!["store-delay", "--delay-ms", "9"], "store_commit_delay"),
        ];
        let mut seen = Vec::new();
        for (args, kind) in every {
            let spec = parse(&[&["shotline", "fault", "--data-dir", "/d"], &args[..]].concat());
            // Exhaustive on purpose: a new FaultSpec fails to compile here until it has a subcommand.
            let got = match &spec {
                FaultSpec::Actor { .. } => "actor",
                FaultSpec::Device { .. } => "device",
                FaultSpec::StoreCommitDelay { delay_ms } => {
                    assert_eq!(*delay_ms, 9);
                    "store_commit_delay"
                }
                FaultSpec::ClockDelay { .. } => "clock_delay",
                FaultSpec::ExecutionPanic { backend } => {
                    assert_eq!(backend, "b");
                    "execution_panic"
                }
                FaultSpec::AnalysisDelay { backend, delay_us } => {
                    assert_eq!((backend.as_str(), *delay_us), ("b", 7));
                    "analysis_delay"
                }
            };
            assert_eq!(got, kind, "{args:?}");
            seen.push(got);
        }
        assert_eq!(seen.len(), 6);
    }
}

//! `shotline user add`: through the admin socket of a running server, or directly on its store.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use shotline_actors::auth;

use super::DataDirArgs;
use shotline::admin::{self, AdminRequest, AdminResponse};

fn data_dir(args: &DataDirArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(c) = &args.config {
        let loaded = shotline_config::load(c).map_err(|e| anyhow!("{e}"))?;
        return Ok((
            loaded.config.data_dir().to_path_buf(),
            loaded.config.db_path(),
        ));
    }
    if let Some(d) = &args.data_dir {
        let db = d.join(shotline_config::PersistenceSection::default().file);
        return Ok((d.clone(), db));
    }
    bail!("say where the server keeps its data: --config FILE or --data-dir DIR")
}

/// Adds a user.
pub async fn add(
    name: &str,
    is_admin: bool,
    password_stdin: bool,
    args: &DataDirArgs,
) -> anyhow::Result<()> {
    auth::check_user_name(name).map_err(|m| anyhow!(m))?;
    let (dir, db) = data_dir(args)?;
    let password = super::read_password(password_stdin, &format!("password for {name}: "))?;
    auth::check_password_policy(&password).map_err(|m| anyhow!(m))?;
    let request = AdminRequest::AddUser {
        name: name.to_string(),
        password: password.clone(),
        admin: is_admin,
    };
    match admin::request(&dir, &request).await? {
        Some(AdminResponse::Ok { message }) => {
            println!("{message} (through the running server)");
            Ok(())
        }
        Some(AdminResponse::Error { code, message }) => bail!("{code}: {message}"),
        None => {
            // No server: act on the store directly.
            let hash = auth::hash_password(&password).map_err(|m| anyhow!(m))?;
            let store = shotline_store::Store::open(&db)
                .with_context(|| format!("cannot open the store {}", db.display()))?;
            let now = shotline_actors::time::utc_now();
            store
                .add_user(name, None, &hash, is_admin, &now)
                .map_err(|e| anyhow!("{e}"))?;
            println!(
                "user {name} added{} (directly in {}; no server was running)",
                if is_admin { " (admin)" } else { "" },
                db.display()
            );
            Ok(())
        }
    }
}

//! Throw-away PostgreSQL databases for tests (feature `testing`).
//!
//! [`TestDatabase::new`] creates a fresh database `t_<unique>` per call and drops it when dropped. The
//! server is `SHOTLINE_TEST_POSTGRES` (a URL of a role allowed to create databases, e.g.
//! `postgresql://postgres@127.0.0.1:5432/postgres`) when set; otherwise a private cluster is started once
//! per test process with `initdb` and `pg_ctl` from `/usr/lib/postgresql/<version>/bin` (or
//! `SHOTLINE_PG_BIN`) in a temporary directory (`SHOTLINE_PG_DIR`, else `/dev/shm` when there is one), listening on 127.0.0.1 on a free port. As root the cluster
//! runs as the `postgres` system user (PostgreSQL refuses to run as root). A watchdog process stops the
//! cluster and removes its directory when the test process exits, however it exits.
//!
//! Test-only code: failures to set the server up panic with what to install or set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::postgres::PgOptions;

/// A fresh database on the test server; dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh empty database. Panics with instructions when no server can be had.
    pub fn new() -> Self {
        let admin_url = server_url();
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = with_database(&admin_url, &name);
        Self {
            url,
            name,
            admin_url,
        }
    }

    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Engine options for the database (durability check on).
    pub fn options(&self) -> PgOptions {
        PgOptions::new(&self.url)
    }

    /// Runs SQL as the server's administrative role, outside any test connection (e.g. `ALTER DATABASE`).
    pub fn admin(&self, sql: &str) {
        admin(&self.admin_url, sql);
    }

    /// Runs SQL as the administrative role inside this database (e.g. to damage it on purpose).
    pub fn admin_in_database(&self, sql: &str) {
        admin(&with_database(&self.admin_url, &self.name), sql);
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = try_admin(&self.admin_url, &sql) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

fn admin(url: &str, sql: &str) {
    if let Err(e) = try_admin(url, sql) {
        panic!(
            "test PostgreSQL server {}: {sql}: {e}",
            crate::redact_url(url)
        );
    }
}

/// Runs `sql` on a new connection on a thread of its own (callable from inside or outside a runtime).
fn try_admin(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let conn = tokio::spawn(conn);
            let r = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = conn.await;
            r
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_owned())?
}

/// The URL of the test server's administrative database (started on first use).
pub fn server_url() -> String {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("SHOTLINE_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_private_cluster(),
        })
        .clone()
        .unwrap_or_else(|e| panic!("no PostgreSQL server for the tests: {e}"))
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SHOTLINE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install it \
         (Debian: apt-get install postgresql) or set SHOTLINE_TEST_POSTGRES to a server URL like \
         postgresql://postgres@127.0.0.1:5432/postgres"
            .to_owned()
    })
}

/// The user the cluster runs as when we are root: uid and gid of `postgres`.
fn unprivileged_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: `name` is a valid NUL-terminated string; the returned record is read before any other
    // getpw* call (test setup runs once, under a OnceLock).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root and there is no `postgres` system user to run the test \
                    cluster as (PostgreSQL refuses root): install the postgresql package or create \
                    the user"
                .to_owned(),
        );
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A command running `program` as the cluster's user.
fn as_cluster_user(user: Option<(u32, u32)>, program: &Path) -> Command {
    match user {
        Some(_) => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Free space `/dev/shm` must have to hold the private cluster (about 40 MB) and the databases of the tests
/// running at once (about 8 MB each; each is dropped at the end of its test).
const SHM_NEEDED_BYTES: u64 = 512 * 1024 * 1024;

/// Where the private cluster lives: `SHOTLINE_PG_DIR` when set (benchmarks put it on the disk the SQLite
/// database is on, so durable commits cost the same fsyncs), else `/dev/shm` when it is there with room
/// enough (a tmpfs: creating and dropping a database per test costs milliseconds instead of the fsyncs of a
/// disk; `fsync` stays on, so the engine's durability check passes as in production), else the temporary
/// directory (containers often have a 64 MB `/dev/shm`).
fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHOTLINE_PG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && free_bytes(shm).is_some_and(|free| free >= SHM_NEEDED_BYTES) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Bytes available to unprivileged users on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // The field widths differ between platforms (u32 or u64).
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Some(blocks.saturating_mul(size))
}

fn start_private_cluster() -> Result<String, String> {
    let bin = bin_dir()?;
    let user = unprivileged_user()?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = scratch_dir().join(format!("shotline-pg-{}-{nanos}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot hand {} to postgres: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let mut initdb = as_cluster_user(user, &bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .arg("--no-instructions");
    run(initdb, "initdb")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let mut start = as_cluster_user(user, &bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            dir.display()
        ))
        .args(["-w", "-t", "60", "start"]);
    run(start, "pg_ctl start")?;
    spawn_watchdog(user, &bin, &dir, &data);
    Ok(format!("postgresql://postgres@127.0.0.1:{port}/postgres"))
}

/// Stops the cluster and removes its directory once this process is gone (a detached shell polling it).
fn spawn_watchdog(user: Option<(u32, u32)>, bin: &Path, dir: &Path, data: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = match user {
        Some(_) => format!(
            "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        ),
        None => format!(
            "'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        ),
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    let spawned = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "cannot start the watchdog of the test cluster in {}: {e}; stop it by hand",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgresql://u@h:1/postgres", "t_1"),
            "postgresql://u@h:1/t_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h:1/postgres?sslmode=disable", "t_1"),
            "postgresql://u:p@h:1/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "t"), "postgresql://h/t");
    }
}

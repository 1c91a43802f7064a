//! Shared helpers: a runtime on the embedded default config in a temporary data dir, on either store engine.
//!
//! Tests that touch the store run on BOTH engines from one body: `both_engines!(#[tokio::test] async fn
//! name);` next to `async fn name(engine: TestEngine) { .. }` (or a plain `fn` with `#[test]`) makes a module
//! `name` with the tests `name::sqlite` and `name::postgres`, each calling the body with its [`TestEngine`]. The helpers that start a server
//! ([`start_in`], [`serve_remote`], [`Server::start`], [`Server::start_with`]) take the [`TestEngine`]:
//! SQLite in the data dir, or a fresh throw-away PostgreSQL database per test
//! (`shotline_store::testing::TestDatabase`, set as `store: { postgres: URL }`), kept for the whole test so
//! a restart finds the same database.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shotline::config::{parse_str, Config, SIM_YAML};
use shotline::protocol::{JobResult, JobStatus};
use shotline::{Runtime, StartOptions, SubmitOptions};
use shotline_client::{Client, Trust};

/// The store engine a test runs on: SQLite in the data dir, or its own throw-away PostgreSQL database.
pub struct TestEngine {
    pg: Option<shotline_store::testing::TestDatabase>,
}

impl TestEngine {
    /// The default engine: SQLite in the data dir.
    pub fn sqlite() -> Self {
        Self { pg: None }
    }

    /// A fresh empty PostgreSQL database (dropped with this value).
    pub fn postgres() -> Self {
        Self {
            pg: Some(shotline_store::testing::TestDatabase::new()),
        }
    }

    /// The PostgreSQL database, if the test runs on PostgreSQL.
    pub fn database(&self) -> Option<&shotline_store::testing::TestDatabase> {
        self.pg.as_ref()
    }

    /// `config` on this engine.
    pub fn config(&self, mut config: Config) -> Config {
        if let Some(db) = &self.pg {
            config.store.postgres = Some(db.url().into());
        }
        config
    }

    /// The store of the runtime on `data_dir`, opened for the test to read (and to change) what the
    /// runtime keeps: another engine on the same database, like a second process.
    pub async fn open(&self, data_dir: &Path) -> std::sync::Arc<dyn shotline_store::Engine> {
        let selection = match &self.pg {
            Some(db) => shotline_store::StoreSelection::Postgres {
                url: db.url().to_owned(),
                allow_synchronous_commit_off: false,
            },
            None => shotline_store::StoreSelection::Sqlite {
                path: data_dir.join("shotline.db"),
                queue_capacity: 64,
            },
        };
        shotline_store::open(&selection)
            .await
            .expect("open the store")
    }

    /// `true` on SQLite (for the checks of its files only).
    pub fn is_sqlite(&self) -> bool {
        self.pg.is_none()
    }

    /// The YAML `store` section of this engine (empty for SQLite, the default).
    pub fn yaml(&self) -> String {
        match &self.pg {
            Some(db) => format!("store: {{ postgres: \"{}\" }}\n", db.url()),
            None => String::new(),
        }
    }

    /// The config file `base` on this engine: `base` itself for SQLite, else a copy in `dir` with the
    /// `store` section appended.
    pub fn config_file(&self, base: &Path, dir: &Path) -> std::path::PathBuf {
        if self.pg.is_none() {
            return base.to_path_buf();
        }
        let text = std::fs::read_to_string(base).expect("read the config");
        let path = dir.join(format!(
            "{}-store.yaml",
            base.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("config")
        ));
        std::fs::write(&path, format!("{text}\n{}", self.yaml())).expect("write the config");
        path
    }
}

/// Runs the body `async fn NAME(engine: TestEngine)` (or a plain `fn`), defined next to the invocation, as
/// two tests: `NAME::sqlite` and `NAME::postgres`. The attributes (`#[tokio::test(..)]`, `#[test]`) apply to
/// both:
///
/// ```ignore
/// both_engines!(#[tokio::test] async fn jobs_survive_a_restart);
/// async fn jobs_survive_a_restart(engine: TestEngine) { .. }
/// ```
macro_rules! both_engines {
    ($(#[$attr:meta])* async fn $name:ident) => {
        mod $name {
            $(#[$attr])*
            async fn sqlite() {
                super::$name($crate::common::TestEngine::sqlite()).await
            }

            $(#[$attr])*
            async fn postgres() {
                super::$name($crate::common::TestEngine::postgres()).await
            }
        }
    };
    ($(#[$attr:meta])* fn $name:ident) => {
        mod $name {
            $(#[$attr])*
            fn sqlite() {
                super::$name($crate::common::TestEngine::sqlite())
            }

            $(#[$attr])*
            fn postgres() {
                super::$name($crate::common::TestEngine::postgres())
            }
        }
    };
}
pub(crate) use both_engines;

/// The embedded default config.
pub fn sim_config() -> Config {
    parse_str(SIM_YAML, "sim.yaml").expect("sim.yaml is valid")
}

/// An in-process runtime (no gateway) on `dir` and the engine of `engine`.
pub async fn start_in(engine: &TestEngine, dir: &Path, config: Config) -> Runtime {
    let config = engine.config(config);
    if std::env::var_os("SHOTLINE_TEST_LOG").is_some() {
        shotline::logging::init(&config.logging);
    }
    Runtime::start_with(
        config,
        "sha256:test".into(),
        StartOptions {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .await
    .expect("runtime starts")
}

/// One experiment of singlequdit.
pub fn experiment(instructions: Value, shots: u32, seed: Option<u64>) -> Value {
    let mut e = json!({
        "instructions": instructions,
        "num_wires": 1,
        "shots": shots,
        "wire_order": "sequential",
    });
    if let Some(s) = seed {
        e["seed"] = json!(s);
    }
    e
}

/// A job of one experiment.
pub fn job1(instructions: Value, shots: u32, seed: Option<u64>) -> Value {
    json!({ "experiment_0": experiment(instructions, shots, seed) })
}

/// Submits and waits for a terminal status (panics on timeout).
pub async fn run_job(rt: &Runtime, job: &Value) -> (String, JobStatus) {
    let s = rt
        .submit("singlequdit", job, SubmitOptions::default())
        .await
        .expect("submit accepted");
    let status = rt
        .wait(&s.job_id, Duration::from_secs(60))
        .await
        .expect("status");
    assert!(
        status.status.is_terminal(),
        "job did not finish: {status:?}"
    );
    (s.job_id, status.status)
}

/// Runs a job that must succeed and returns its result.
pub async fn run_ok(rt: &Runtime, job: &Value) -> JobResult {
    let (id, status) = run_job(rt, job).await;
    let result = rt.result(&id).await.expect("result");
    assert_eq!(status, JobStatus::Done, "job failed: {:?}", result.header);
    result
}

/// The measured occupation numbers of experiment `i`.
pub fn memory(result: &JobResult, i: usize) -> Vec<u32> {
    result.results[i]
        .data
        .memory
        .iter()
        .map(|m| m.parse().expect("memory is a number"))
        .collect()
}

pub const BIN: &str = env!("CARGO_BIN_EXE_shotline");

/// A `shotline serve` child process.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: String,
}

impl Server {
    /// `shotline serve` on `configs/sim.yaml` and the engine of `engine` with the data dir `data`, once it
    /// is ready.
    pub fn start(engine: &TestEngine, data: &Path) -> Server {
        Self::start_with(
            engine,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim.yaml")),
            data,
        )
    }

    /// `shotline serve --config config` (on the engine of `engine`; for PostgreSQL a copy of the config is
    /// written next to `data`) with the data dir `data`, once it is ready.
    pub fn start_with(engine: &TestEngine, config: &Path, data: &Path) -> Server {
        let parent = data.parent().expect("the data dir has a parent");
        std::fs::create_dir_all(parent).expect("create the data dir's parent");
        let config = engine.config_file(config, parent);
        let config = config.as_path();
        let mut command = Command::new(BIN);
        command
            .args([
                "serve",
                "--config",
                config.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data);
        Self::spawn(command)
            .unwrap_or_else(|text| panic!("serve exited before it was ready:\n{text}"))
    }

    /// Runs `command` (a `shotline serve`): the server once it printed its ready line, or all it printed
    /// on stderr when it exited unsuccessfully without becoming ready.
    pub fn spawn(mut command: Command) -> Result<Server, String> {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn shotline serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("shotline ready: listening on ") {
                    let _ = tx.send(Ok(addr.to_string()));
                }
                all.push_str(&line);
                all.push('\n');
            }
            let _ = tx.send(Err(all));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => Ok(Server { child, addr }),
            Ok(Err(text)) => {
                let status = child.wait().unwrap();
                assert!(!status.success(), "serve exited 0 without being ready");
                Err(text)
            }
            Err(_) => {
                let _ = child.kill();
                panic!("serve neither became ready nor exited");
            }
        }
    }

    /// SIGTERM and a clean exit.
    pub fn stop(mut self) {
        // SIGTERM: clean shutdown with exit code 0.
        unsafe_kill(self.child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `kill -SIGNAL pid`.
pub fn unsafe_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Runs the CLI with `SHOTLINE_HOME=home`: (success, stdout, stderr).
pub fn shotline(home: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    run_cli(command, home, stdin)
}

/// Runs `command` (the CLI, however started) with `SHOTLINE_HOME=home` and `stdin` (none: closed at once):
/// (success, stdout, stderr).
pub fn run_cli(mut command: Command, home: &Path, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = command
        .env("SHOTLINE_HOME", home)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shotline");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `shotline user add NAME` then `shotline login` as NAME on `addr`, both with `password` on stdin.
pub fn add_user_and_login(home: &Path, data: &Path, addr: &str, name: &str, password: &str) {
    let password = format!("{password}\n");
    let (ok, out, err) = shotline(
        home,
        &[
            "user",
            "add",
            name,
            "--data-dir",
            data.to_str().unwrap(),
            "--password-stdin",
        ],
        Some(&password),
    );
    assert!(ok, "user add: {out} {err}");
    let (ok, out, err) = shotline(
        home,
        &[
            "login",
            "--server",
            addr,
            "--user",
            name,
            "--password-stdin",
        ],
        Some(&password),
    );
    assert!(ok, "login: {out} {err}");
}

/// `shotline submit JOB --backend singlequdit --server addr`: (success, stdout, stderr).
pub fn submit_file(home: &Path, job: &Path, addr: &str) -> (bool, String, String) {
    shotline(
        home,
        &[
            "submit",
            job.to_str().unwrap(),
            "--backend",
            "singlequdit",
            "--server",
            addr,
        ],
        None,
    )
}

/// A JSON value as the protocol's value.
pub fn value(v: Value) -> shotline::protocol::Value {
    serde_json::from_value(v).unwrap()
}

/// The error body of a request the server refused (panics on anything else).
pub fn server_error<T: std::fmt::Debug>(
    r: Result<T, shotline_client::ClientError>,
) -> shotline::protocol::ErrorBody {
    match r {
        Err(shotline_client::ClientError::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The error code of a request the server refused (panics on anything else).
pub fn code<T: std::fmt::Debug>(r: Result<T, shotline_client::ClientError>) -> String {
    server_error(r).code
}

/// An in-process runtime with the QUIC gateway on 127.0.0.1:0 and a pin file for its clients.
pub struct Remote {
    /// The runtime.
    pub rt: Runtime,
    /// Where the gateway listens.
    pub addr: String,
    /// Where clients keep their pins.
    pub pins: tempfile::TempDir,
    /// The server's data dir.
    pub data: tempfile::TempDir,
}

/// Starts [`Remote`] on `config` and the engine of `engine` with a temporary data dir.
pub async fn serve_remote(engine: &TestEngine, config: Config) -> Remote {
    let config = engine.config(config);
    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::start_with(
        config,
        "sha256:test".into(),
        StartOptions {
            data_dir: Some(data.path().to_path_buf()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            gateway: true,
            admin_socket: false,
        },
    )
    .await
    .unwrap();
    let addr = rt.listen_addr().unwrap().to_string();
    Remote {
        rt,
        addr,
        pins: tempfile::tempdir().unwrap(),
        data,
    }
}

impl Remote {
    /// How its clients trust the server: on first use, pinned in `pins`.
    pub fn trust(&self) -> Trust {
        Trust::Pin {
            pins_file: self.pins.path().join("pins.json"),
        }
    }

    /// A client trusting the server on first use.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr, &self.trust()).await.unwrap()
    }

    /// A new user `name` (password `password123`) and a client logged in as it, with its token.
    pub async fn user(&self, name: &str, admin: bool) -> (Client, String) {
        self.rt
            .service()
            .add_user(name, "password123", admin)
            .await
            .unwrap();
        let c = self.client().await;
        let token = c.login(name, "password123").await.unwrap().token;
        (c, token)
    }
}

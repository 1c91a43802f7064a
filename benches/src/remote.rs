//! Helpers of the benchmarks that go through the network face (`gateway`, `e2e_quic`) and of the drills
//! (`crash_trials`, `soak`): an in-process runtime with the QUIC gateway on loopback, a logged-in client,
//! JSON jobs as protocol values, the `shotline` binary next to the bench binary, and small argument
//! parsing for the drills' numeric options.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use shotline::config::Config;
use shotline::{Runtime, StartOptions};
use shotline_client::{Client, Trust};
use shotline_protocol::Value;

/// An in-process runtime serving QUIC on a loopback port, with its data and the client's pins in
/// temporary directories (removed on drop).
pub struct Served {
    /// The runtime (gateway on, admin socket off).
    pub rt: Runtime,
    /// `127.0.0.1:PORT` the gateway listens on.
    pub addr: String,
    pins: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Served {
    /// Starts `config` with the gateway on `127.0.0.1:0` (a free port).
    pub async fn start(config: Config) -> Result<Self> {
        let data = tempfile::tempdir().context("creating a temporary data dir")?;
        let pins = tempfile::tempdir().context("creating a temporary client dir")?;
        let listen = "127.0.0.1:0"
            .parse()
            .context("parsing the loopback address")?;
        let rt = Runtime::start_with(
            config,
            "sha256:bench".into(),
            StartOptions {
                data_dir: Some(data.path().to_path_buf()),
                listen: Some(listen),
                gateway: true,
                admin_socket: false,
            },
        )
        .await
        .map_err(|e| anyhow!("starting the runtime with the gateway: {e}"))?;
        let addr = rt
            .listen_addr()
            .ok_or_else(|| anyhow!("the runtime started without a listening address"))?
            .to_string();
        Ok(Self {
            rt,
            addr,
            pins,
            _data: data,
        })
    }

    /// Adds user `name` (admin when `admin`), connects a new client (trust on first use, pins in the
    /// temporary dir) and logs in; returns the client and its token.
    pub async fn user(&self, name: &str, admin: bool) -> Result<(Client, String)> {
        let password = "bench-password";
        self.rt
            .service()
            .add_user(name, password, admin)
            .await
            .map_err(|e| anyhow!("adding user {name}: {e}"))?;
        let client = self.client().await?;
        let token = client
            .login(name, password)
            .await
            .map_err(|e| anyhow!("login of {name}: {e}"))?
            .token;
        Ok((client, token))
    }

    /// A new connection to the gateway.
    pub async fn client(&self) -> Result<Client> {
        let trust = Trust::Pin {
            pins_file: self.pins.path().join("pins.json"),
        };
        let client = Client::connect(&self.addr, &trust)
            .await
            .map_err(|e| anyhow!("connecting to {}: {e}", self.addr))?;
        client
            .accept_first_use()
            .map_err(|e| anyhow!("pinning the server's certificate: {e}"))?;
        Ok(client)
    }

    /// Stops the runtime.
    pub async fn shutdown(self) -> Result<()> {
        self.rt
            .shutdown()
            .await
            .map_err(|e| anyhow!("runtime shutdown: {e}"))
    }
}

/// A JSON job as the protocol value the client sends.
pub fn to_value(job: &serde_json::Value) -> Result<Value> {
    serde_json::from_value(job.clone()).context("converting the job to a protocol value")
}

/// The `shotline` binary next to the running bench binary (`target/release/shotline` when the bench is
/// `target/release/NAME`), or an error saying how to build it.
pub fn shotline_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let binary = exe.with_file_name("shotline");
    check_binary(&binary)?;
    Ok(binary)
}

/// Checks that `binary` is an existing file, else says how to build it.
pub fn check_binary(binary: &Path) -> Result<()> {
    if binary.is_file() {
        return Ok(());
    }
    Err(anyhow!(
        "the shotline binary {} does not exist: build it first with `cargo build --release -p shotline` \
         (with the same CARGO_TARGET_DIR as the bench), or pass --binary PATH",
        binary.display()
    ))
}

/// Drill options on the command line: `--quick`, `--json`, and `--NAME VALUE` numeric options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrillArgs {
    /// Quick defaults.
    pub quick: bool,
    /// JSON output.
    pub json: bool,
    /// `--binary PATH` (else [`shotline_binary`]).
    pub binary: Option<PathBuf>,
    /// `--config FILE`: a config whose `store` section the drill's servers use (else SQLite in the trial dir).
    pub config: Option<PathBuf>,
    /// The numeric options given, by name without the dashes.
    pub numbers: Vec<(String, u64)>,
}

impl DrillArgs {
    /// The value of numeric option `name`, if given.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.numbers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// Parses `--quick`, `--json`, `--binary PATH`, `--config FILE` and `--NAME N` for each `NAME` in `numeric` (a non-negative
/// integer). `Ok(None)` on `--help`/`-h`. Anything else is an error naming the argument and the allowed ones.
pub fn parse_drill_args<I, S>(args: I, numeric: &[&str]) -> Result<Option<DrillArgs>, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let allowed = {
        let mut a: Vec<String> = ["--quick", "--json", "--binary PATH", "--config FILE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(numeric.iter().map(|n| format!("--{n} N")));
        a.push("--help".into());
        a.join(", ")
    };
    let mut parsed = DrillArgs::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let arg = arg.as_ref();
        match arg {
            "--quick" => parsed.quick = true,
            "--json" => parsed.json = true,
            "--help" | "-h" => return Ok(None),
            "--binary" => {
                let v = it
                    .next()
                    .ok_or_else(|| "`--binary` needs a path".to_string())?;
                parsed.binary = Some(PathBuf::from(v.as_ref()));
            }
            "--config" => {
                let v = it
                    .next()
                    .ok_or_else(|| "`--config` needs a file".to_string())?;
                parsed.config = Some(PathBuf::from(v.as_ref()));
            }
            other => {
                let name = other.strip_prefix("--").unwrap_or("");
                if !numeric.contains(&name) {
                    return Err(format!("unknown argument `{other}`; allowed: {allowed}"));
                }
                let v = it
                    .next()
                    .ok_or_else(|| format!("`{other}` needs a number"))?;
                let n: u64 = v.as_ref().parse().map_err(|_| {
                    format!("`{other} {}`: expected a non-negative integer", v.as_ref())
                })?;
                parsed.numbers.push((name.to_string(), n));
            }
        }
    }
    Ok(Some(parsed))
}

/// Parses `std::env::args()` with [`parse_drill_args`]; prints `usage` and exits 0 on `--help`, prints the
/// error and `usage` and exits 2 on a bad argument.
pub fn drill_args_or_exit(binary: &str, numeric: &[&str], usage: &str) -> DrillArgs {
    match parse_drill_args(std::env::args().skip(1), numeric) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{binary}: {message}\n\n{usage}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_numbers_and_flags_are_parsed() {
        let a = parse_drill_args(
            ["--trials", "20", "--json", "--kills", "5", "--binary", "/x"],
            &["trials", "kills"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.number("trials"), Some(20));
        assert_eq!(a.number("kills"), Some(5));
        assert_eq!(a.number("seconds"), None);
        assert!(a.json && !a.quick);
        assert_eq!(a.binary, Some(PathBuf::from("/x")));
        assert_eq!(parse_drill_args(["-h"], &["trials"]).unwrap(), None);
    }

    #[test]
    fn bad_drill_arguments_are_named() {
        let err = parse_drill_args(["--trials", "many"], &["trials"]).unwrap_err();
        assert!(err.contains("`--trials many`"), "{err}");
        let err = parse_drill_args(["--clients", "3"], &["trials"]).unwrap_err();
        assert!(
            err.contains("`--clients`") && err.contains("--trials N"),
            "{err}"
        );
        let err = parse_drill_args(["--kills"], &["kills"]).unwrap_err();
        assert!(err.contains("needs a number"), "{err}");
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = check_binary(Path::new("/nonexistent/shotline"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo build --release -p shotline"), "{err}");
    }
}

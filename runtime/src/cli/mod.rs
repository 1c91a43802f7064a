//! The `shotline` command line: `serve`, `check-config`, `user add` on the server host, and the client
//! commands (`login`, `backends`, `backend`, `submit`, `status`, `result`).

pub mod home;
pub mod input;
pub mod remote;
pub mod serve;
pub mod store;
pub mod user;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// shotline: actor-based real-time control runtime for physics labs.
#[derive(Debug, Parser)]
#[command(name = "shotline", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the server-side commands find the data dir.
#[derive(Debug, Args, Clone)]
pub struct DataDirArgs {
    /// The server's config file (its data dir is used).
    #[arg(long, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// The server's data dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Options shared by client commands.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server address HOST:PORT.
    #[arg(long, env = "SHOTLINE_SERVER")]
    pub server: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        /// Config file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Listen address (overrides service.listen; port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data dir (overrides service.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Start although the database lacks acknowledged work or is missing/empty in a data dir used
        /// before (the missing work is lost; see docs/operations.md). A damaged database is still refused.
        #[arg(long)]
        accept_data_loss: bool,
    },
    /// Validate a config file and report every error with line and column.
    CheckConfig {
        /// Config file (YAML).
        file: PathBuf,
    },
    /// Manage users (on the server host).
    User {
        /// What to do.
        #[command(subcommand)]
        action: UserAction,
    },
    /// Store maintenance: apply schema migrations, copy a SQLite data dir into PostgreSQL.
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Inject a fault into the running server (tests and drills; needs `faults.enabled`).
    Fault {
        /// What to inject.
        #[command(subcommand)]
        fault: FaultCommand,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Log in to a server: stores a token and pins the server's certificate on first use.
    Login {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Trust servers signed by this CA (PEM) instead of pinning.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Forget the pinned certificate of this server and pin the one it presents now.
        #[arg(long)]
        repin: bool,
    },
    /// List the backends.
    Backends {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One backend's config and status; `backend pause NAME` / `backend resume NAME` for operators.
    Backend {
        /// Backend name, or `pause` / `resume`.
        name_or_action: String,
        /// Backend name after `pause` / `resume`.
        name: Option<String>,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create an account on a server that allows self-registration.
    Register {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the stored token and forget the session.
    Logout {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show who the stored token belongs to.
    Whoami {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs (own; `--all` for administrators), newest first.
    Jobs {
        /// Only this status (QUEUED, RUNNING, DONE, ERROR, CANCELLED).
        #[arg(long)]
        status: Option<String>,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
        /// Submitted at or after (RFC 3339, e.g. 2026-11-22T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Submitted before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed at the end of the previous page).
        #[arg(long)]
        after: Option<i64>,
        /// Everyone's jobs (administrators).
        #[arg(long)]
        all: bool,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job (a running one stops at the next shot boundary).
    Cancel {
        /// Job id.
        job_id: String,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a job until it is terminal (pushed by the server).
    Watch {
        /// Job id.
        job_id: String,
        /// Also print each shot's memory value.
        #[arg(long)]
        shots: bool,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Emergency stop: every backend stops, devices to their safe state, jobs re-queued, backends paused.
    Estop {
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit a job file (JSON map of experiments).
    Submit {
        /// Job file.
        file: PathBuf,
        /// Backend.
        #[arg(long)]
        backend: String,
        /// Wait for the job to finish and print its result.
        #[arg(long)]
        wait: bool,
        /// Priority (higher runs first).
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Client-side id echoed in the result.
        #[arg(long)]
        qobj_id: Option<String>,
        /// Idempotency key: a retried submit with the same key returns the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Status of a job.
    Status {
        /// Job id.
        job_id: String,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Result of a job.
    Result {
        /// Job id.
        job_id: String,
        /// Client options.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Fault injection targets.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Make an actor panic or kill it (scheduler, lock_manager, persistence, registry, gateway,
    /// backend:NAME, backend:NAME/acquisition, backend:NAME/analysis, backend:NAME/sequencer:DEVICE).
    Actor {
        /// The actor's role.
        role: String,
        /// panic or kill.
        #[arg(long, default_value = "panic")]
        mode: String,
    },
    /// Make a simulated device fail, hang, disconnect, or clear its fault.
    Device {
        /// Backend.
        backend: String,
        /// Device.
        device: String,
        /// error, hang, disconnect or clear.
        #[arg(long)]
        kind: String,
        /// First shot affected.
        #[arg(long, default_value_t = 0)]
        at_shot: u64,
        /// Hang duration.
        #[arg(long, default_value_t = 1000)]
        hang_ms: u64,
    },
    /// Apply the next event of a backend's shot clock late.
    Clock {
        /// Backend.
        backend: String,
        /// How late.
        #[arg(long)]
        delay_ns: u64,
    },
    /// Make the next execution of a backend panic at its first experiment (job RUNNING, lock held).
    ExecutionPanic {
        /// Backend.
        backend: String,
    },
    /// Make a backend's analysis spend this long on every shot (0: back to normal): a slow consumer.
    AnalysisDelay {
        /// Backend.
        backend: String,
        /// Delay per shot, microseconds.
        #[arg(long)]
        delay_us: u64,
    },
    /// Hold every commit of the store this long before it runs (0: back to normal).
    StoreDelay {
        /// Delay in milliseconds.
        #[arg(long)]
        delay_ms: u64,
    },
}

/// Store maintenance.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Apply pending schema migrations to the store a config selects (SQLite or PostgreSQL) and print its
    /// schema version. `serve` does the same at start; this does it without starting a server.
    Migrate {
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Copy a SQLite data dir's store into an empty PostgreSQL database (every row, one transaction). The
    /// data dir must not be in use by a server.
    Copy {
        /// The data dir (or the SQLite database file) to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database to copy into: postgresql://USER@HOST:PORT/DB.
        #[arg(long)]
        to: String,
        /// Copy even if the server acknowledges commits before flushing them.
        #[arg(long)]
        allow_synchronous_commit_off: bool,
    },
}

/// User administration.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user.
    Add {
        /// User name.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Disable a user: its tokens stop working at once.
    Disable {
        /// User name.
        name: String,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Enable a disabled user.
    Enable {
        /// User name.
        name: String,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Set a new password (revokes the user's tokens).
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Remove a user who never submitted a job (disable the others).
    Remove {
        /// User name.
        name: String,
        /// Where the server keeps its data.
        #[command(flatten)]
        data: DataDirArgs,
    },
}

/// Reads a password from stdin (first line) or prompts without echo on a terminal.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let pw = if from_stdin {
        input::read_line_capped(
            std::io::stdin().lock(),
            input::MAX_PASSWORD_BYTES,
            "password",
        )?
    } else {
        rpassword::prompt_password(prompt)?
    };
    if pw.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(pw)
}

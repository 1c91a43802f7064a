//! The `shotline` command line: `serve`, `check-config`, `user add` on the server host, and the client
//! commands (`login`, `backends`, `backend`, `submit`, `status`, `result`).

pub mod home;
pub mod remote;
pub mod serve;
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
    /// One backend's config and status.
    Backend {
        /// Backend name.
        name: String,
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
}

/// Reads a password from stdin (first line) or prompts without echo on a terminal.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        rpassword::prompt_password(prompt)?
    };
    if pw.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(pw)
}

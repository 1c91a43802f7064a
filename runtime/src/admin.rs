//! The local admin socket: a Unix socket `admin.sock` in the data dir, owner-only (0600), through which
//! server-side admin commands (`shotline user add ...`) reach a running server, so the server stays the only
//! writer of its store and sees the change at once. Frames are the wire protocol's: a 4-byte big-endian length
//! and a msgpack map. The data dir itself is guarded by its lock (`crate::datadir`): the client falls back to
//! the store only when no server holds it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shotline_actors::Service;
use shotline_protocol::wire::{decode_body, encode_frame, frame_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// File name of the socket inside the data dir.
pub const SOCKET_NAME: &str = "admin.sock";
const MAX_ADMIN_FRAME: usize = 64 * 1024;

/// An admin request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create a user.
    AddUser {
        /// Name.
        name: String,
        /// Password.
        password: String,
        /// Administrator.
        admin: bool,
    },
    /// Disable or enable a user.
    SetDisabled {
        /// Name.
        name: String,
        /// Disabled.
        disabled: bool,
    },
    /// Set a new password.
    Passwd {
        /// Name.
        name: String,
        /// Password.
        password: String,
    },
    /// List users.
    ListUsers,
    /// Remove a user who never submitted a job.
    RemoveUser {
        /// Name.
        name: String,
    },
    /// Inject a fault (only with `faults.enabled`).
    Fault {
        /// What and where.
        spec: shotline_actors::faults::FaultSpec,
    },
}

/// One user in a listing (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserLine {
    /// Name.
    pub name: String,
    /// Administrator.
    pub admin: bool,
    /// Disabled.
    pub disabled: bool,
    /// Creation time.
    pub created_at: String,
}

impl From<shotline_store::UserRecord> for UserLine {
    fn from(u: shotline_store::UserRecord) -> Self {
        UserLine {
            name: u.name,
            admin: u.is_admin,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// An admin response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminResponse {
    /// Done.
    Ok {
        /// What was done.
        message: String,
    },
    /// The users.
    Users {
        /// One line each.
        users: Vec<UserLine>,
    },
    /// Failed.
    Error {
        /// Stable code.
        code: String,
        /// What went wrong.
        message: String,
    },
}

/// Path of the admin socket of `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A server already serves this data dir.
    #[error("another shotline server is already running on data dir {0} (its admin socket answers); stop it first or use another --data-dir")]
    InUse(PathBuf),
    /// I/O.
    #[error("admin socket {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A server holds the data dir but its admin socket cannot be reached.
    #[error(
        "a shotline server is running on this data dir (its server.lock is held) but its admin socket {path} \
         cannot be reached: {source}; run the command as the server's user, or check the socket (nothing was \
         changed: the store is not opened behind a running server)"
    )]
    Unreachable {
        /// Socket path.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The socket cannot be reached and whether a server runs cannot be told.
    #[error(
        "the admin socket {path} cannot be reached ({socket}) and whether a server runs cannot be told: {lock}; \
         nothing was changed"
    )]
    NoLock {
        /// Socket path.
        path: PathBuf,
        /// Why the connection failed.
        socket: std::io::Error,
        /// Why the lock could not be tried.
        lock: String,
    },
    /// Protocol.
    #[error("admin socket: {0}")]
    Protocol(String),
}

/// The server side: accepts admin connections until dropped.
pub struct AdminServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds the socket (refusing if a live server answers on it) and serves `service`.
    pub async fn start(data_dir: &Path, service: Service) -> Result<AdminServer, AdminError> {
        let path = socket_path(data_dir);
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(AdminError::InUse(data_dir.to_path_buf()));
            }
            // A stale socket from a process that died.
            let _ = std::fs::remove_file(&path);
        }
        let io = |source| AdminError::Io {
            path: path.clone(),
            source,
        };
        let listener = UnixListener::bind(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_one(stream, service.clone()));
            }
        });
        Ok(AdminServer { path, task })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn read_frame(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| e.to_string())?;
    let len = frame_len(header, MAX_ADMIN_FRAME).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(body)
}

async fn serve_one(mut stream: UnixStream, service: Service) {
    let response = match read_frame(&mut stream).await {
        Err(e) => AdminResponse::Error {
            code: "MALFORMED_REQUEST".into(),
            message: e,
        },
        Ok(body) => match decode_body::<AdminRequest>(&body) {
            Err(e) => AdminResponse::Error {
                code: "MALFORMED_REQUEST".into(),
                message: e.to_string(),
            },
            Ok(request) => handle(&service, request).await,
        },
    };
    if let Ok(frame) = encode_frame(&response, MAX_ADMIN_FRAME) {
        let _ = stream.write_all(&frame).await;
    }
}

fn failed(e: shotline_actors::ServiceError) -> AdminResponse {
    AdminResponse::Error {
        code: e.code.to_string(),
        message: e.message,
    }
}

fn ok(message: String) -> AdminResponse {
    AdminResponse::Ok { message }
}

async fn handle(service: &Service, request: AdminRequest) -> AdminResponse {
    match request {
        AdminRequest::AddUser {
            name,
            password,
            admin,
        } => match service.add_user(&name, &password, admin).await {
            Ok(u) => ok(format!(
                "user {} added{}",
                u.name,
                if u.is_admin { " (admin)" } else { "" }
            )),
            Err(e) => failed(e),
        },
        AdminRequest::SetDisabled { name, disabled } => {
            match service.set_user_disabled(&name, disabled).await {
                Ok(()) => ok(format!(
                    "user {name} {}",
                    if disabled {
                        "disabled (its tokens no longer work)"
                    } else {
                        "enabled"
                    }
                )),
                Err(e) => failed(e),
            }
        }
        AdminRequest::Passwd { name, password } => {
            match service.set_password(&name, &password).await {
                Ok(()) => ok(format!(
                    "password of {name} changed; its tokens were revoked"
                )),
                Err(e) => failed(e),
            }
        }
        AdminRequest::ListUsers => match service.list_users().await {
            Ok(users) => AdminResponse::Users {
                users: users.into_iter().map(UserLine::from).collect(),
            },
            Err(e) => failed(e),
        },
        AdminRequest::Fault { spec } => match service.inject_fault(spec).await {
            Ok(m) => ok(m),
            Err(e) => failed(e),
        },
        AdminRequest::RemoveUser { name } => match service.remove_user(&name).await {
            Ok(()) => ok(format!("user {name} removed")),
            Err(e) => failed(e),
        },
    }
}

/// What came of an admin request.
#[derive(Debug)]
pub enum Reached {
    /// The running server answered.
    Answered(AdminResponse),
    /// No server holds the data dir: the caller may work on the store directly while it keeps this lock.
    NoServer(crate::datadir::DataDirLock),
}

/// The client side. When the socket cannot be reached, falls back ([`Reached::NoServer`]) only if no server
/// holds the data dir's lock; otherwise a server is running but unreachable, and the error says why the
/// socket failed (permission denied, not a socket, ...). The store is never opened behind a running server.
pub async fn request(data_dir: &Path, request: &AdminRequest) -> Result<Reached, AdminError> {
    let path = socket_path(data_dir);
    let mut stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(source) => {
            return match crate::datadir::try_lock(data_dir) {
                Ok(Some(lock)) => Ok(Reached::NoServer(lock)),
                Ok(None) => Err(AdminError::Unreachable { path, source }),
                Err(e) => Err(AdminError::NoLock {
                    path,
                    socket: source,
                    lock: e.to_string(),
                }),
            };
        }
    };
    let frame =
        encode_frame(request, MAX_ADMIN_FRAME).map_err(|e| AdminError::Protocol(e.to_string()))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|source| AdminError::Io {
            path: path.clone(),
            source,
        })?;
    let body = read_frame(&mut stream)
        .await
        .map_err(AdminError::Protocol)?;
    decode_body(&body)
        .map(Reached::Answered)
        .map_err(|e| AdminError::Protocol(e.to_string()))
}

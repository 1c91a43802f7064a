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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// File name of the socket inside the data dir.
pub const SOCKET_NAME: &str = "admin.sock";
/// Largest admin request the server reads (names and passwords are far smaller).
const MAX_ADMIN_REQUEST: usize = 64 * 1024;
/// Largest admin response the client reads (a user listing grows with the users).
const MAX_ADMIN_RESPONSE: usize = 64 * 1024 * 1024;
/// Time an admin client has to send its whole request.
const ADMIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Time the server gives an admin client to read its answer.
const ADMIN_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Admin connections served at once; more wait in the listener's backlog.
const MAX_ADMIN_CONNECTIONS: usize = 16;

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
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    serve_one(stream, service).await;
                    drop(slot);
                });
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

/// Reads one frame of at most `max` bytes, growing `body` only as bytes arrive (an announced length alone
/// costs nothing).
async fn read_frame_into<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: usize,
    body: &mut Vec<u8>,
) -> Result<(), String> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("could not read the 4-byte frame header: {e}"))?;
    let len = frame_len(header, max).map_err(|e| e.to_string())?;
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await.map_err(|e| {
            format!(
                "the frame announced {len} bytes but reading failed after {}: {e}",
                body.len()
            )
        })?;
        if n == 0 {
            return Err(format!(
                "the frame announced {len} bytes but the stream ended after {}",
                body.len()
            ));
        }
        shotline_protocol::extend_frame_body(body, &chunk[..n], len);
    }
    Ok(())
}

async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    read_frame_into(stream, max, &mut body).await?;
    Ok(body)
}

async fn serve_one(mut stream: UnixStream, service: Service) {
    let read = tokio::time::timeout(
        ADMIN_REQUEST_TIMEOUT,
        read_frame(&mut stream, MAX_ADMIN_REQUEST),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "the request was not complete within {} s",
            ADMIN_REQUEST_TIMEOUT.as_secs()
        ))
    });
    let response = match read {
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
    let frame = encode_frame(&response, MAX_ADMIN_RESPONSE).or_else(|e| {
        encode_frame(
            &AdminResponse::Error {
                code: "INTERNAL".into(),
                message: format!("the response could not be sent: {e}"),
            },
            MAX_ADMIN_RESPONSE,
        )
    });
    if let Ok(frame) = frame {
        // A client that does not read its answer does not keep its place for good.
        let _ = tokio::time::timeout(ADMIN_WRITE_TIMEOUT, stream.write_all(&frame)).await;
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
    let frame = encode_frame(request, MAX_ADMIN_REQUEST)
        .map_err(|e| AdminError::Protocol(e.to_string()))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|source| AdminError::Io {
            path: path.clone(),
            source,
        })?;
    let body = read_frame(&mut stream, MAX_ADMIN_RESPONSE)
        .await
        .map_err(AdminError::Protocol)?;
    decode_body(&body)
        .map(Reached::Answered)
        .map_err(|e| AdminError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_announced_length_alone_allocates_nothing() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(&(MAX_ADMIN_REQUEST as u32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(b"0123456789").await.unwrap();
        let mut body = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            read_frame_into(&mut server, MAX_ADMIN_REQUEST, &mut body),
        )
        .await;
        assert!(read.is_err(), "the frame is not complete: {read:?}");
        assert_eq!(body, b"0123456789");
        assert!(body.capacity() < 4096, "{} bytes held", body.capacity());
        // A complete frame is read whole; a longer announcement than the limit is refused before any read.
        let (mut client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            let mut frame = (MAX_ADMIN_REQUEST as u32).to_be_bytes().to_vec();
            frame.resize(4 + MAX_ADMIN_REQUEST, 7);
            frame.extend_from_slice(&(MAX_ADMIN_REQUEST as u32 + 1).to_be_bytes());
            client.write_all(&frame).await.unwrap();
            client
        });
        let body = read_frame(&mut server, MAX_ADMIN_REQUEST).await.unwrap();
        assert_eq!(body.len(), MAX_ADMIN_REQUEST);
        let e = read_frame(&mut server, MAX_ADMIN_REQUEST)
            .await
            .unwrap_err();
        drop(writer.await.unwrap());
        assert!(e.contains("65537"), "{e}");
    }

    #[tokio::test]
    async fn a_listing_larger_than_a_request_is_answered() {
        let users = (0..2000)
            .map(|i| UserLine {
                name: format!("user-with-a-rather-long-name-{i:05}"),
                admin: false,
                disabled: false,
                created_at: "2026-12-06T10:00:00Z".into(),
            })
            .collect();
        let frame = encode_frame(&AdminResponse::Users { users }, MAX_ADMIN_RESPONSE).unwrap();
        assert!(frame.len() > MAX_ADMIN_REQUEST, "{} bytes", frame.len());
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move { server.write_all(&frame).await.unwrap() });
        let body = read_frame(&mut client, MAX_ADMIN_RESPONSE).await.unwrap();
        writer.await.unwrap();
        let AdminResponse::Users { users } = decode_body(&body).unwrap() else {
            panic!("not a listing");
        };
        assert_eq!(users.len(), 2000);
    }
}

//! The shotline client library: QUIC + MessagePack, one request per bidirectional stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shotline_client::ClientError> {
//! use shotline_client::{Client, Trust};
//! let client = Client::connect("127.0.0.1:7878", &Trust::Pin { pins_file: "pins.json".into() }).await?;
//! client.accept_first_use()?;                       // trust on first use, like SSH known_hosts
//! let login = client.login("alice", "secret password").await?;
//! let backends = client.backends(&login.token).await?;
//! # Ok(()) }
//! ```

pub mod error;
mod more;

pub use shotline_protocol::wire::{JobsQuery, SubmitOptions};

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use quinn::Endpoint;
use shotline_protocol::wire::{
    decode_body, encode_frame, frame_len, BackendStatus, BackendSummary, Request, Response, ALPN,
    DEFAULT_MAX_FRAME,
};
use shotline_protocol::{BackendConfig, JobResult, StatusRecord, Value};
use shotline_tls::{ClientOptions, KnownServers, PinCheck};
pub use shotline_tls::{PinOutcome, Trust};

pub use error::ClientError;

/// The client drops a connection after this long without a packet from the server (the server's own
/// `limits.idle_timeout_ms`, default 8 s, is what usually applies: QUIC takes the smaller of the two).
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
/// The client sends a keep-alive this often, so an idle but living client (e.g. a `watch` of a queued job) is
/// never taken for a dead one by the server.
pub const KEEP_ALIVE_MS: u64 = 2_000;

/// A successful login.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    /// Bearer token.
    pub token: String,
    /// User name.
    pub user: String,
    /// Expiry (RFC 3339 UTC).
    pub expires_at: String,
}

/// A successful submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Job id.
    pub job_id: String,
    /// Status right after submission.
    pub status: StatusRecord,
    /// True when an earlier submission with the same idempotency key was returned.
    pub duplicate: bool,
}

/// A connection to one shotline server.
pub struct Client {
    pub(crate) server: String,
    trust: Trust,
    endpoint: Endpoint,
    pub(crate) connection: quinn::Connection,
    pin: PinCheck,
    pub(crate) max_frame: usize,
    pub(crate) timeout: Duration,
}

fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let err = |reason: String| ClientError::Connect {
        server: server.to_string(),
        reason,
    };
    server
        .to_socket_addrs()
        .map_err(|e| {
            err(format!(
                "cannot resolve the address: {e} (expected HOST:PORT)"
            ))
        })?
        .next()
        .ok_or_else(|| err("the name resolves to no address".into()))
}

impl Client {
    /// Connects to `server` (`HOST:PORT`) trusting its certificate as `trust` says.
    pub async fn connect(server: &str, trust: &Trust) -> Result<Client, ClientError> {
        shotline_tls::ensure_ring_provider();
        let addr = resolve(server)?;
        let (host, _) = shotline_tls::split_server(server)?;
        let (config, pin) = shotline_tls::client_config(
            trust,
            server,
            &ClientOptions {
                alpn: vec![ALPN.to_vec()],
                idle_timeout_ms: IDLE_TIMEOUT_MS,
                keep_alive_ms: Some(KEEP_ALIVE_MS),
            },
        )?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|_| ClientError::Protocol("bind".into()))?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| ClientError::Protocol("bind".into()))?
        };
        let mut endpoint = Endpoint::client(bind).map_err(|e| ClientError::Connect {
            server: server.to_string(),
            reason: format!("cannot open a UDP socket: {e}"),
        })?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(addr, &host)
            .map_err(|e| ClientError::Connect {
                server: server.to_string(),
                reason: e.to_string(),
            })?;
        let connection = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Trust::Pin { pins_file } = trust {
                    if let Some(err) =
                        shotline_tls::mismatch_error(server, pins_file, pin.outcome())
                    {
                        return Err(err.into());
                    }
                }
                return Err(ClientError::Connect {
                    server: server.to_string(),
                    reason: format!("handshake failed: {e}"),
                });
            }
            Err(_) => {
                return Err(ClientError::Connect {
                    server: server.to_string(),
                    reason: "no answer within 10 s (is the server running and the port right?)"
                        .into(),
                })
            }
        };
        Ok(Client {
            server: server.to_string(),
            trust: trust.clone(),
            endpoint,
            connection,
            pin,
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(60),
        })
    }

    /// The QUIC connection itself, for tools and tests that speak the wire directly.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// How the server's certificate was trusted on this connection.
    pub fn pin_outcome(&self) -> Option<PinOutcome> {
        self.pin.outcome()
    }

    /// In pin mode, records the certificate seen on first use (call after the session proved useful, e.g.
    /// after a successful login). Returns the fingerprint pinned, if any.
    pub fn accept_first_use(&self) -> Result<Option<String>, ClientError> {
        if let (Trust::Pin { pins_file }, Some(PinOutcome::FirstUse { presented })) =
            (&self.trust, self.pin.outcome())
        {
            let mut known = KnownServers::load(pins_file)?;
            known.pin(&self.server, &presented)?;
            return Ok(Some(presented));
        }
        Ok(None)
    }

    /// Sends one request on a new stream and reads its response.
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        let transport = |reason: String| ClientError::Transport {
            server: self.server.clone(),
            reason,
        };
        let exchange = async {
            let (mut send, mut recv) = self
                .connection
                .open_bi()
                .await
                .map_err(|e| transport(e.to_string()))?;
            let frame = encode_frame(request, self.max_frame)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            send.write_all(&frame)
                .await
                .map_err(|e| transport(e.to_string()))?;
            let _ = send.finish();
            let mut header = [0u8; 4];
            recv.read_exact(&mut header)
                .await
                .map_err(|e| transport(format!("no response: {e}")))?;
            let len = frame_len(header, self.max_frame)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let body = read_body(&mut recv, len)
                .await
                .map_err(|e| transport(format!("truncated response: {e}")))?;
            decode_body::<Response>(&body).map_err(|e| ClientError::Protocol(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Response::Error { error })) => Err(ClientError::Server(error)),
            Ok(r) => r,
            Err(_) => Err(transport(format!(
                "no response within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// Logs in.
    pub async fn login(&self, user: &str, password: &str) -> Result<Login, ClientError> {
        match self
            .request(&Request::Login {
                user: user.to_string(),
                password: password.to_string(),
            })
            .await?
        {
            Response::LoggedIn {
                token,
                user,
                expires_at,
            } => Ok(Login {
                token,
                user,
                expires_at,
            }),
            other => Err(unexpected("logged_in", &other)),
        }
    }

    /// Every backend with its status.
    pub async fn backends(&self, token: &str) -> Result<Vec<BackendSummary>, ClientError> {
        match self
            .request(&Request::Backends {
                token: token.to_string(),
            })
            .await?
        {
            Response::Backends { backends } => Ok(backends),
            other => Err(unexpected("backends", &other)),
        }
    }

    /// One backend's config and status.
    pub async fn backend(
        &self,
        token: &str,
        name: &str,
    ) -> Result<(BackendConfig, BackendStatus), ClientError> {
        match self
            .request(&Request::Backend {
                token: token.to_string(),
                name: name.to_string(),
            })
            .await?
        {
            Response::Backend { config, status } => Ok((config, status)),
            other => Err(unexpected("backend", &other)),
        }
    }

    /// Submits a job (a map of experiments).
    pub async fn submit(
        &self,
        token: &str,
        backend: &str,
        job: Value,
        options: SubmitOptions,
    ) -> Result<Submission, ClientError> {
        match self
            .request(&Request::Submit {
                token: token.to_string(),
                backend: backend.to_string(),
                job,
                qobj_id: options.qobj_id,
                priority: options.priority,
                tags: options.tags,
                idempotency_key: options.idempotency_key,
            })
            .await?
        {
            Response::Submitted {
                job_id,
                status,
                duplicate,
            } => Ok(Submission {
                job_id,
                status,
                duplicate,
            }),
            other => Err(unexpected("submitted", &other)),
        }
    }

    /// Status of a job.
    pub async fn status(&self, token: &str, job_id: &str) -> Result<StatusRecord, ClientError> {
        match self
            .request(&Request::Status {
                token: token.to_string(),
                job_id: job_id.to_string(),
            })
            .await?
        {
            Response::Status { status } => Ok(status),
            other => Err(unexpected("status", &other)),
        }
    }

    /// Result of a job.
    pub async fn result(&self, token: &str, job_id: &str) -> Result<JobResult, ClientError> {
        match self
            .request(&Request::Result {
                token: token.to_string(),
                job_id: job_id.to_string(),
            })
            .await?
        {
            Response::Result { result } => Ok(result),
            other => Err(unexpected("result", &other)),
        }
    }

    /// Closes the connection politely and waits (at most 2 s) until the server was told, so the connection
    /// stops counting against the user's connection limit at once. Dropping a `Client` also closes the
    /// connection, but a process that exits right after may never send the close: call this on every path.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Reads a frame body of `len` bytes, growing the buffer only as bytes arrive (an announced length alone
/// costs nothing).
pub(crate) async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, String> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        let chunk = recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the stream ended after {} of {len} bytes", body.len()))?;
        shotline_protocol::extend_frame_body(&mut body, &chunk.bytes, len);
    }
    Ok(body)
}

pub(crate) fn unexpected(expected: &'static str, got: &Response) -> ClientError {
    let kind = match got {
        Response::LoggedIn { .. } => "logged_in",
        Response::Backends { .. } => "backends",
        Response::Backend { .. } => "backend",
        Response::Submitted { .. } => "submitted",
        Response::Status { .. } => "status",
        Response::Result { .. } => "result",
        Response::LoggedOut {} => "logged_out",
        Response::Whoami { .. } => "whoami",
        Response::Registered { .. } => "registered",
        Response::Jobs { .. } => "jobs",
        Response::Cancelled { .. } => "cancelled",
        Response::Event { .. } => "event",
        Response::Done { .. } => "done",
        Response::Estopped(_) => "estopped",
        Response::Error { .. } => "error",
    };
    ClientError::Unexpected {
        expected,
        got: kind.to_string(),
    }
}

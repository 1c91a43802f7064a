//! One request on one bidirectional QUIC stream: read a length-prefixed msgpack frame (bounded in size and
//! time), dispatch it to the service, write the response frame(s), finish the stream. A `watch` request gets
//! one `event` frame per status change or progress until the job is terminal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use shotline_protocol::wire::{
    codes, decode_request, encode_frame, frame_len, ErrorBody, FrameError, JobEvent, Request,
    Response,
};
use shotline_store::UserRecord;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ServiceError;
use crate::service::jobs::JobQuery;
use crate::service::{Service, SubmitOptions};

/// Limits applied to every stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Time allowed to receive the whole request.
    pub request_timeout: Duration,
    /// Connections one user may hold at once.
    pub max_connections_per_user: u32,
}

/// Which user each connection belongs to, to bound connections per user.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    per_user: parking_lot::Mutex<HashMap<i64, u32>>,
}

/// The user a connection is bound to (at its first authenticated request); released when dropped.
#[derive(Debug)]
pub struct ConnectionBinding {
    counts: Arc<ConnectionCounts>,
    user: parking_lot::Mutex<Option<i64>>,
    limit: u32,
}

impl ConnectionBinding {
    /// A binding for a new connection.
    pub fn new(counts: Arc<ConnectionCounts>, limit: u32) -> Self {
        Self {
            counts,
            user: parking_lot::Mutex::new(None),
            limit,
        }
    }

    fn bind(&self, user: &UserRecord) -> Result<(), ServiceError> {
        let mut bound = self.user.lock();
        if bound.is_some() {
            return Ok(());
        }
        let mut counts = self.counts.per_user.lock();
        let n = counts.entry(user.id).or_insert(0);
        if *n >= self.limit {
            return Err(ServiceError::new(
                codes::LIMIT_EXCEEDED,
                format!(
                    "user {} already has {} connections open; the limit is {} (limits.max_connections_per_user)",
                    user.name, n, self.limit
                ),
            ));
        }
        *n += 1;
        *bound = Some(user.id);
        Ok(())
    }
}

impl Drop for ConnectionBinding {
    fn drop(&mut self) {
        if let Some(uid) = *self.user.lock() {
            let mut counts = self.counts.per_user.lock();
            if let Some(n) = counts.get_mut(&uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&uid);
                }
            }
        }
    }
}

/// Everything a stream needs to know about its connection.
#[derive(Clone)]
pub struct StreamContext {
    /// The verbs.
    pub service: Service,
    /// Limits.
    pub limits: StreamLimits,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's user binding.
    pub binding: Arc<ConnectionBinding>,
}

fn error(code: &str, message: impl Into<String>) -> Response {
    Response::Error {
        error: ErrorBody::new(code, message),
    }
}

fn from_service(e: ServiceError) -> Response {
    Response::Error { error: e.to_body() }
}

async fn read_request(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, Response> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| {
        error(
            codes::MALFORMED_REQUEST,
            format!("could not read the 4-byte frame header: {e}"),
        )
    })?;
    let len = frame_len(header, max).map_err(|e| match e {
        FrameError::TooLarge { .. } => error(codes::FRAME_TOO_LARGE, e.to_string()),
        other => error(codes::MALFORMED_REQUEST, other.to_string()),
    })?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| {
        error(
            codes::MALFORMED_REQUEST,
            format!("the frame announced {len} bytes but the stream ended early: {e}"),
        )
    })?;
    Ok(body)
}

async fn write(send: &mut SendStream, response: &Response) -> bool {
    let frame = match encode_frame(response, usize::MAX) {
        Ok(f) => f,
        Err(e) => match encode_frame(&error(codes::INTERNAL, e.to_string()), usize::MAX) {
            Ok(f) => f,
            Err(_) => return false,
        },
    };
    send.write_all(&frame).await.is_ok()
}

async fn finish(mut send: SendStream) {
    let _ = send.finish();
    // Give the peer the data before the stream handle is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

/// Serves one stream to completion.
pub async fn serve(cx: StreamContext, mut send: SendStream, mut recv: RecvStream) {
    let request = match tokio::time::timeout(
        cx.limits.request_timeout,
        read_request(&mut recv, cx.limits.max_frame),
    )
    .await
    {
        Err(_) => Err(error(
            codes::MALFORMED_REQUEST,
            format!(
                "the request was not received within {} ms",
                cx.limits.request_timeout.as_millis()
            ),
        )),
        Ok(Err(r)) => Err(r),
        Ok(Ok(body)) => {
            decode_request(&body).map_err(|e| error(codes::MALFORMED_REQUEST, e.to_string()))
        }
    };
    match request {
        Err(r) => {
            if write(&mut send, &r).await {
                finish(send).await;
            }
        }
        Ok(Request::Watch {
            token,
            job_id,
            shots,
        }) => {
            watch(&cx, &mut send, &token, &job_id, shots).await;
        }
        Ok(req) => {
            let response = dispatch(&cx, req).await;
            if write(&mut send, &response).await {
                finish(send).await;
            }
        }
    }
}

async fn user(cx: &StreamContext, token: &str) -> Result<UserRecord, ServiceError> {
    let u = cx.service.authenticate(token).await?;
    cx.binding.bind(&u)?;
    Ok(u)
}

/// Runs one (non-watch) request.
pub async fn dispatch(cx: &StreamContext, req: Request) -> Response {
    let service = &cx.service;
    let r = async {
        Ok::<Response, ServiceError>(match req {
            Request::Login { user, password } => {
                let l = service.login(&user, &password, Some(cx.peer.ip())).await?;
                Response::LoggedIn {
                    token: l.token,
                    user: l.user,
                    expires_at: l.expires_at,
                }
            }
            Request::Register { user, password } => {
                let u = service.register(&user, &password).await?;
                Response::Registered { user: u.name }
            }
            Request::Logout { token } => {
                service.logout(&token).await?;
                Response::LoggedOut {}
            }
            Request::Whoami { token } => {
                let u = user(cx, &token).await?;
                Response::Whoami {
                    user: u.name,
                    is_admin: u.is_admin,
                }
            }
            Request::Backends { token } => {
                user(cx, &token).await?;
                Response::Backends {
                    backends: service.backends().await?,
                }
            }
            Request::Backend { token, name } => {
                user(cx, &token).await?;
                let (config, status) = service.backend(&name).await?;
                Response::Backend { config, status }
            }
            Request::Submit {
                token,
                backend,
                job,
                qobj_id,
                priority,
                tags,
                idempotency_key,
            } => {
                let u = user(cx, &token).await?;
                let s = service
                    .submit(
                        &u,
                        &backend,
                        &job,
                        SubmitOptions {
                            qobj_id,
                            priority,
                            tags,
                            idempotency_key,
                        },
                    )
                    .await?;
                Response::Submitted {
                    job_id: s.job_id,
                    status: s.status,
                    duplicate: s.duplicate,
                }
            }
            Request::Status { token, job_id } => {
                let u = user(cx, &token).await?;
                Response::Status {
                    status: service.status(&u, &job_id).await?,
                }
            }
            Request::Result { token, job_id } => {
                let u = user(cx, &token).await?;
                Response::Result {
                    result: service.result(&u, &job_id).await?,
                }
            }
            Request::Jobs {
                token,
                status,
                backend,
                since,
                until,
                limit,
                after,
                all,
            } => {
                let u = user(cx, &token).await?;
                let (jobs, next) = service
                    .jobs(
                        &u,
                        JobQuery {
                            status,
                            backend,
                            since,
                            until,
                            limit,
                            after,
                            all,
                        },
                    )
                    .await?;
                Response::Jobs { jobs, next }
            }
            Request::Cancel { token, job_id } => {
                let u = user(cx, &token).await?;
                Response::Cancelled {
                    status: service.cancel(&u, &job_id).await?,
                }
            }
            Request::PauseBackend { token, name } => {
                let u = user(cx, &token).await?;
                Response::Done {
                    message: service.set_paused(&u, &name, true).await?,
                }
            }
            Request::ResumeBackend { token, name } => {
                let u = user(cx, &token).await?;
                Response::Done {
                    message: service.set_paused(&u, &name, false).await?,
                }
            }
            Request::Estop { token } => {
                let u = user(cx, &token).await?;
                Response::Estopped(service.estop(&u).await?)
            }
            Request::Watch { .. } => {
                return Err(ServiceError::internal("watch is served on its own path"));
            }
        })
    }
    .await;
    r.unwrap_or_else(from_service)
}

/// Pushes the job's current status, then every event of the job, until a terminal status. Returns whether
/// the stream was finished normally.
async fn watch(
    cx: &StreamContext,
    send: &mut SendStream,
    token: &str,
    job_id: &str,
    shots: bool,
) -> bool {
    let service = &cx.service;
    // Subscribe before reading the status, so no change between the two is missed.
    let mut events = service.ctx().subscribe();
    let _shot_watch = shots.then(|| service.ctx().watch_shots(job_id));
    let first = async {
        let u = user(cx, token).await?;
        let s = service.status(&u, job_id).await?;
        Ok::<_, ServiceError>((u, s))
    }
    .await;
    let (u, mut last) = match first {
        Ok(v) => v,
        Err(e) => return write(send, &from_service(e)).await,
    };
    if !write(
        send,
        &Response::Event {
            event: JobEvent::Status {
                status: last.clone(),
            },
        },
    )
    .await
    {
        return false;
    }
    while !last.status.is_terminal() {
        let event = match events.recv().await {
            Ok(ev) if ev.job_id() == job_id => ev,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => {
                // Too far behind: the status in the store is the truth.
                match service.status(&u, job_id).await {
                    Ok(s) if s != last => JobEvent::Status { status: s },
                    Ok(_) => continue,
                    Err(e) => return write(send, &from_service(e)).await,
                }
            }
            Err(RecvError::Closed) => return false,
        };
        if let JobEvent::Status { status } = &event {
            if *status == last {
                continue;
            }
            last = status.clone();
        }
        if !write(send, &Response::Event { event }).await {
            return false;
        }
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    true
}

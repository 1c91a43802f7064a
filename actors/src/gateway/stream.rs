//! One request on one bidirectional QUIC stream: read a length-prefixed msgpack frame (bounded in size and
//! time), dispatch it to the service, write the response frame(s), finish the stream. A `watch` request gets
//! one `event` frame per status change or progress until the job is terminal.

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

pub use super::binding::{ConnectionBinding, ConnectionCounts, Grant};
use super::peek::{self, Peek};
use crate::error::ServiceError;
use crate::service::jobs::JobQuery;
use crate::service::{Service, SubmitOptions};

/// Limits applied to every stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Bytes of a frame read before its token must have checked out (and the largest frame without a token).
    pub max_unauthenticated_frame: usize,
    /// Time allowed to receive the whole request.
    pub request_timeout: Duration,
    /// Connections one user may hold at once.
    pub max_connections_per_user: u32,
    /// Connections not yet authenticated the gateway holds at once.
    pub max_unauthenticated_connections: u32,
    /// Time a connection has to authenticate.
    pub unauthenticated_timeout: Duration,
    /// What an authenticated connection gets (streams, receive window).
    pub grant: Grant,
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

/// Reads from `recv` until `body` holds `target` bytes, growing it only as bytes arrive (never to more than
/// twice what arrived, never beyond `target`): an announced length alone costs nothing.
async fn read_into(
    recv: &mut RecvStream,
    body: &mut Vec<u8>,
    target: usize,
    announced: usize,
) -> Result<(), Response> {
    while body.len() < target {
        let chunk = recv
            .read_chunk(target - body.len(), true)
            .await
            .map_err(|e| {
                error(
                    codes::MALFORMED_REQUEST,
                    format!(
                        "the frame announced {announced} bytes but reading failed after {}: {e}",
                        body.len()
                    ),
                )
            })?
            .ok_or_else(|| {
                error(
                    codes::MALFORMED_REQUEST,
                    format!(
                        "the frame announced {announced} bytes but the stream ended after {}",
                        body.len()
                    ),
                )
            })?;
        shotline_protocol::extend_frame_body(body, &chunk.bytes, target);
    }
    Ok(())
}

/// Reads one request frame. A body larger than `max_unauthenticated_frame` is read further only after the
/// `token` found in its first `max_unauthenticated_frame` bytes has checked out (and bound the connection):
/// a peer without a valid token never makes the server hold more than that per stream.
async fn read_request(cx: &StreamContext, recv: &mut RecvStream) -> Result<Vec<u8>, Response> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| {
        error(
            codes::MALFORMED_REQUEST,
            format!("could not read the 4-byte frame header: {e}"),
        )
    })?;
    let len = frame_len(header, cx.limits.max_frame).map_err(|e| match e {
        FrameError::TooLarge { .. } => error(codes::FRAME_TOO_LARGE, e.to_string()),
        other => error(codes::MALFORMED_REQUEST, other.to_string()),
    })?;
    let small = cx.limits.max_unauthenticated_frame;
    let mut body = Vec::new();
    if len > small {
        read_into(recv, &mut body, small, len).await?;
        let token = match peek::token(&body) {
            Peek::Token(t) => t,
            Peek::Absent | Peek::Truncated => {
                return Err(error(
                    codes::FRAME_TOO_LARGE,
                    format!(
                        "a frame of {len} bytes must carry a valid `token` within its first {small} bytes (limits.max_unauthenticated_frame_bytes); put `token` before `job`, or send a smaller frame"
                    ),
                ))
            }
        };
        user(cx, &token).await.map_err(from_service)?;
    }
    read_into(recv, &mut body, len, len).await?;
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
    let request =
        match tokio::time::timeout(cx.limits.request_timeout, read_request(&cx, &mut recv)).await {
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
    // Whatever else the peer sends on this stream is not wanted: quinn drops it instead of buffering it.
    let _ = recv.stop(0u32.into());
    drop(recv);
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
                // A successful login authenticates the connection (unless its user is at the connection
                // limit: the login still succeeds, the connection stays unauthenticated).
                if !cx.binding.is_authenticated() {
                    if let Ok(u) = service.authenticate(&l.token).await {
                        let _ = cx.binding.bind(&u);
                    }
                }
                Response::LoggedIn {
                    token: l.token,
                    user: l.user,
                    expires_at: l.expires_at,
                }
            }
            Request::Register { user, password } => {
                let u = service
                    .register(&user, &password, Some(cx.peer.ip()))
                    .await?;
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
/// the stream was finished normally. Statuses and progress come from the shared event bus; shots (with
/// `shots: true`) from this watcher's own bounded channel, so a slow shot watcher only misses its own shots.
/// Ends at once when the connection is lost.
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
    let mut shot_watch = shots.then(|| service.ctx().watch_shots(job_id));
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
    let connection = cx.binding.connection().cloned();
    let closed = async move {
        match connection {
            Some(c) => {
                c.closed().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(closed);
    while !last.status.is_terminal() {
        let next_shot = async {
            match shot_watch.as_mut() {
                Some(w) => w.recv().await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = &mut closed => return false,
            Some(shot) = next_shot => shot,
            received = events.recv() => match received {
                Ok(ev) if ev.job_id() == job_id && !matches!(ev, JobEvent::Shot { .. }) => ev,
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
            },
        };
        if let JobEvent::Status { status } = &event {
            if *status == last {
                continue;
            }
            last = status.clone();
            // Shots are published before the status that ends their run: deliver those already waiting first.
            if let Some(w) = shot_watch.as_mut() {
                while let Some(shot) = w.try_recv() {
                    if !write(send, &Response::Event { event: shot }).await {
                        return false;
                    }
                }
            }
        }
        if !write(send, &Response::Event { event }).await {
            return false;
        }
    }
    if let Some(w) = &shot_watch {
        if w.dropped() > 0 {
            tracing::info!(job = %job_id, dropped = w.dropped(), "a slow shot watcher missed shot events");
        }
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    true
}

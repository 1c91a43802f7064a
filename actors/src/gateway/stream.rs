//! One request on one bidirectional QUIC stream: read a length-prefixed msgpack frame (bounded in size and
//! time), dispatch it to the service, write the response frame, finish the stream.

use std::time::Duration;

use quinn::{RecvStream, SendStream};
use shotline_protocol::wire::{
    codes, decode_body, encode_frame, frame_len, ErrorBody, FrameError, Request, Response,
};

use crate::error::ServiceError;
use crate::service::{Service, SubmitOptions};

/// Limits applied to every stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Time allowed to receive the whole request.
    pub request_timeout: Duration,
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

/// Serves one stream to completion.
pub async fn serve(
    service: Service,
    limits: StreamLimits,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let response = match tokio::time::timeout(
        limits.request_timeout,
        read_request(&mut recv, limits.max_frame),
    )
    .await
    {
        Err(_) => error(
            codes::MALFORMED_REQUEST,
            format!(
                "the request was not received within {} ms",
                limits.request_timeout.as_millis()
            ),
        ),
        Ok(Err(r)) => r,
        Ok(Ok(body)) => match decode_body::<Request>(&body) {
            Err(e) => error(codes::MALFORMED_REQUEST, e.to_string()),
            Ok(req) => dispatch(&service, req).await,
        },
    };
    let frame = match encode_frame(&response, usize::MAX) {
        Ok(f) => f,
        Err(e) => match encode_frame(&error(codes::INTERNAL, e.to_string()), usize::MAX) {
            Ok(f) => f,
            Err(_) => return,
        },
    };
    if send.write_all(&frame).await.is_ok() {
        let _ = send.finish();
        // Give the peer the data before the stream handle is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    }
}

/// Runs one request.
pub async fn dispatch(service: &Service, req: Request) -> Response {
    let r = async {
        Ok::<Response, ServiceError>(match req {
            Request::Login { user, password } => {
                let l = service.login(&user, &password).await?;
                Response::LoggedIn {
                    token: l.token,
                    user: l.user,
                    expires_at: l.expires_at,
                }
            }
            Request::Backends { token } => {
                service.authenticate(&token).await?;
                Response::Backends {
                    backends: service.backends().await?,
                }
            }
            Request::Backend { token, name } => {
                service.authenticate(&token).await?;
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
                let user = service.authenticate(&token).await?;
                let s = service
                    .submit(
                        &user,
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
                let user = service.authenticate(&token).await?;
                Response::Status {
                    status: service.status(&user, &job_id).await?,
                }
            }
            Request::Result { token, job_id } => {
                let user = service.authenticate(&token).await?;
                Response::Result {
                    result: service.result(&user, &job_id).await?,
                }
            }
        })
    }
    .await;
    r.unwrap_or_else(from_service)
}

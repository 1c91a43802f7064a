//! The rest of the verbs: session (logout, whoami, register), jobs (list, cancel, watch) and operator
//! actions (pause, resume, estop).

use shotline_protocol::wire::{
    decode_body, encode_frame, frame_len, JobEvent, JobSummary, JobsQuery, Request, Response,
};
use shotline_protocol::StatusRecord;

use crate::{unexpected, Client, ClientError};

impl Client {
    /// Revokes the token.
    pub async fn logout(&self, token: &str) -> Result<(), ClientError> {
        match self
            .request(&Request::Logout {
                token: token.to_string(),
            })
            .await?
        {
            Response::LoggedOut {} => Ok(()),
            other => Err(unexpected("logged_out", &other)),
        }
    }

    /// The token's user and whether it is an administrator.
    pub async fn whoami(&self, token: &str) -> Result<(String, bool), ClientError> {
        match self
            .request(&Request::Whoami {
                token: token.to_string(),
            })
            .await?
        {
            Response::Whoami { user, is_admin } => Ok((user, is_admin)),
            other => Err(unexpected("whoami", &other)),
        }
    }

    /// Creates an account (when the server allows self-registration).
    pub async fn register(&self, user: &str, password: &str) -> Result<String, ClientError> {
        match self
            .request(&Request::Register {
                user: user.to_string(),
                password: password.to_string(),
            })
            .await?
        {
            Response::Registered { user } => Ok(user),
            other => Err(unexpected("registered", &other)),
        }
    }

    /// A page of jobs and the cursor of the next page.
    pub async fn jobs(
        &self,
        token: &str,
        q: JobsQuery,
    ) -> Result<(Vec<JobSummary>, Option<i64>), ClientError> {
        match self
            .request(&Request::Jobs {
                token: token.to_string(),
                status: q.status,
                backend: q.backend,
                since: q.since,
                until: q.until,
                limit: q.limit,
                after: q.after,
                all: q.all,
            })
            .await?
        {
            Response::Jobs { jobs, next } => Ok((jobs, next)),
            other => Err(unexpected("jobs", &other)),
        }
    }

    /// Cancels a job; returns its status right after the request.
    pub async fn cancel(&self, token: &str, job_id: &str) -> Result<StatusRecord, ClientError> {
        match self
            .request(&Request::Cancel {
                token: token.to_string(),
                job_id: job_id.to_string(),
            })
            .await?
        {
            Response::Cancelled { status } => Ok(status),
            other => Err(unexpected("cancelled", &other)),
        }
    }

    async fn admin(&self, request: Request) -> Result<String, ClientError> {
        match self.request(&request).await? {
            Response::Done { message } => Ok(message),
            other => Err(unexpected("done", &other)),
        }
    }

    /// Pauses a backend (administrators).
    pub async fn pause_backend(&self, token: &str, name: &str) -> Result<String, ClientError> {
        self.admin(Request::PauseBackend {
            token: token.to_string(),
            name: name.to_string(),
        })
        .await
    }

    /// Resumes a backend (administrators).
    pub async fn resume_backend(&self, token: &str, name: &str) -> Result<String, ClientError> {
        self.admin(Request::ResumeBackend {
            token: token.to_string(),
            name: name.to_string(),
        })
        .await
    }

    /// Emergency stop of every backend (administrators); the report's one-line message.
    pub async fn estop(&self, token: &str) -> Result<String, ClientError> {
        Ok(self.estop_report(token).await?.message)
    }

    /// Emergency stop of every backend (administrators): per backend and per device, whether the safe state
    /// was reached.
    pub async fn estop_report(
        &self,
        token: &str,
    ) -> Result<shotline_protocol::wire::EstopReport, ClientError> {
        match self
            .request(&Request::Estop {
                token: token.to_string(),
            })
            .await?
        {
            Response::Estopped(report) => Ok(report),
            other => Err(unexpected("estopped", &other)),
        }
    }

    /// Watches a job: `on_event` gets every pushed event (the first is the current status) until the job
    /// is terminal; returns the final status. The server pushes; nothing polls.
    pub async fn watch(
        &self,
        token: &str,
        job_id: &str,
        shots: bool,
        mut on_event: impl FnMut(&JobEvent),
    ) -> Result<StatusRecord, ClientError> {
        let transport = |reason: String| ClientError::Transport {
            server: self.server.clone(),
            reason,
        };
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| transport(e.to_string()))?;
        let frame = encode_frame(
            &Request::Watch {
                token: token.to_string(),
                job_id: job_id.to_string(),
                shots,
            },
            self.max_frame,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        send.write_all(&frame)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let _ = send.finish();
        let mut last: Option<StatusRecord> = None;
        loop {
            let mut header = [0u8; 4];
            match recv.read_exact(&mut header).await {
                Ok(()) => {}
                Err(quinn::ReadExactError::FinishedEarly(0)) => {
                    return last.ok_or_else(|| {
                        ClientError::Protocol("the watch stream ended without a status".into())
                    })
                }
                Err(e) => return Err(transport(format!("watch stream: {e}"))),
            }
            let len = frame_len(header, self.max_frame)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let body = crate::read_body(&mut recv, len)
                .await
                .map_err(|e| transport(format!("truncated event: {e}")))?;
            match decode_body::<Response>(&body)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                Response::Event { event } => {
                    if let JobEvent::Status { status } = &event {
                        last = Some(status.clone());
                    }
                    on_event(&event);
                    if last.as_ref().is_some_and(|s| s.status.is_terminal()) {
                        // The server finishes the stream after the terminal status.
                        return last.ok_or_else(|| ClientError::Protocol("no status".into()));
                    }
                }
                Response::Error { error } => return Err(ClientError::Server(error)),
                other => return Err(unexpected("event", &other)),
            }
        }
    }
}

//! The emergency stop of every backend at once (`Service::estop`): each backend is told concurrently and
//! answers per device whether the safe state was reached; a backend that does not answer in time is reported
//! as such, never waited for beyond the deadline.

use std::time::Duration;

use shotline_protocol::wire::{BackendEstop, EstopReport};

use super::BackendMsg;
use crate::context::{roles, Ctx};

/// Emergency-stops every configured backend concurrently. A backend answers within the call timeout (its
/// devices' deadline) plus a margin; past twice the call timeout it is reported as not answering.
pub async fn estop_all(ctx: &Ctx) -> EstopReport {
    let names: Vec<String> = ctx
        .config()
        .backends
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let wait = ctx.call_timeout() * 2;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let (ctx, name) = (ctx.clone(), name.clone());
        tasks.spawn(async move { (i, estop_one(&ctx, &name, wait).await) });
    }
    let mut answers: Vec<Option<BackendEstop>> = vec![None; names.len()];
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, b)) = r {
            answers[i] = Some(b);
        }
    }
    let backends = answers
        .into_iter()
        .zip(&names)
        .map(|(b, name)| b.unwrap_or_else(|| unanswered(name, "its estop task failed".into())))
        .collect();
    EstopReport::new(backends)
}

async fn estop_one(ctx: &Ctx, name: &str, wait: Duration) -> BackendEstop {
    let Some(b) = ctx.lookup::<BackendMsg>(&roles::backend(name)) else {
        return unanswered(
            name,
            "the backend is restarting (its devices are driven safe when it starts)".into(),
        );
    };
    match b.call(BackendMsg::Estop, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(_) => unanswered(name, format!("no answer within {} ms", wait.as_millis())),
        Err(e) => unanswered(name, format!("unreachable: {e}")),
    }
}

fn unanswered(name: &str, why: String) -> BackendEstop {
    BackendEstop {
        backend: name.to_string(),
        answered: false,
        paused: false,
        job_id: None,
        job_settled: false,
        devices: Vec::new(),
        error: Some(why),
    }
}

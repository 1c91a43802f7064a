//! The devices of a backend as operators see them (`backend NAME`): each sequencer's report, asked in
//! parallel and never waiting long for a device the shot clock holds, with the timing-card session of
//! bridge devices.

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;
use shotline_hal::bridge::SessionStatus;
use shotline_protocol::wire::{CardStatus, DeviceStatus};

use crate::context::{roles, Ctx};
use crate::sequencer::{DeviceReport, SequencerMsg, DESCRIBE_WAIT};

/// Longest wait for one sequencer's report (it may be finishing a program or a safe state first).
const REPORT_TIMEOUT: Duration = Duration::from_millis(500);

fn card_status(s: SessionStatus) -> CardStatus {
    CardStatus {
        endpoint: s.endpoint,
        connected: s.connected,
        card_id: s.card.map(|c| c.card_id),
        clock_hz: s.card.map(|c| c.clock_hz),
        drift_ppm: s.drift_ppm,
        clock_samples: s.clock_samples as u64,
        min_rtt_ns: s.min_rtt_ns,
        connects: s.connects,
        firmware_resets: s.firmware_resets,
        retransmissions: u64::from(s.link.retransmitted),
        crc_errors: u64::from(s.decoder.crc_errors),
        last_error: s.last_error,
    }
}

async fn report(ctx: &Ctx, backend: &str, device: &str) -> Option<DeviceReport> {
    let role = roles::backend_child(backend, &format!("sequencer:{device}"));
    let seq: ActorRef<SequencerMsg> = ctx.lookup(&role)?;
    match seq
        .call(SequencerMsg::Describe, Some(REPORT_TIMEOUT + DESCRIBE_WAIT))
        .await
    {
        Ok(CallResult::Success(r)) => Some(r),
        _ => None,
    }
}

/// Every device of `backend`, in configuration order. A device whose sequencer does not answer (restarting,
/// busy with a long operation) is reported with state `unknown`.
pub async fn describe(ctx: &Ctx, backend: &str) -> Vec<DeviceStatus> {
    let Some(section) = ctx.config().backends.iter().find(|b| b.name == backend) else {
        return Vec::new();
    };
    let tasks: Vec<_> = section
        .devices
        .iter()
        .map(|d| {
            let (ctx, backend, device) = (ctx.clone(), backend.to_string(), d.name.clone());
            tokio::spawn(async move { report(&ctx, &backend, &device).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (d, task) in section.devices.iter().zip(tasks) {
        let r = task.await.ok().flatten();
        let state = match &r {
            Some(DeviceReport { state: Some(s), .. }) => s.name(),
            Some(DeviceReport { state: None, .. }) => "busy",
            None => "unknown",
        };
        out.push(DeviceStatus {
            name: d.name.clone(),
            driver: d.driver.as_str().to_string(),
            state: state.to_string(),
            last_error: r.as_ref().and_then(|r| r.last_error.clone()),
            card: r.and_then(|r| r.card).map(card_status),
        });
    }
    out
}

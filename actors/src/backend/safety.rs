//! Driving devices to their safe state directly through their handles (the children may be gone), off the
//! actors and off tokio's worker threads: one short-lived thread per device, all at once, each answer awaited
//! up to a deadline. A device that is still held (by a shot clock inside a hung call, or an operation) when
//! the deadline passes is reported not safe with the reason; its thread keeps trying for a while and logs
//! when the device finally reached its safe state.

use std::time::{Duration, Instant};

use shotline_hal::DeviceHandle;
use shotline_protocol::wire::DeviceSafeState;
use tokio::sync::oneshot;

/// A device to make safe: its configured name and handle.
#[derive(Clone)]
pub struct NamedDevice {
    /// Name (configuration).
    pub name: String,
    /// Handle.
    pub handle: DeviceHandle,
}

/// Drives every device to its safe state at once. Each answer is awaited at most `deadline`; a device's
/// thread keeps waiting for the device up to `keep_trying` (at least `deadline`) and logs a late outcome.
pub async fn drive_safe(
    backend: &str,
    devices: &[NamedDevice],
    deadline: Duration,
    keep_trying: Duration,
) -> Vec<DeviceSafeState> {
    let hold = keep_trying.max(deadline);
    let mut waits = Vec::with_capacity(devices.len());
    for d in devices {
        let (tx, rx) = oneshot::channel();
        let (backend, name, handle) = (backend.to_string(), d.name.clone(), d.handle.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("safe-{name}"))
            .spawn(move || {
                let started = Instant::now();
                let outcome = match handle.try_lock_for(hold) {
                    Some(mut g) => g.safe_state().map_err(|e| format!("refused: {e}")),
                    None => Err(format!(
                        "still busy after {} ms (held by the shot clock or an operation)",
                        hold.as_millis()
                    )),
                };
                if let Err(late) = tx.send(outcome) {
                    // Nobody waits any more: the deadline passed. Say what finally happened.
                    match late {
                        Ok(()) => tracing::warn!(%backend, device = %name, after_ms = started.elapsed().as_millis() as u64, "device reached its safe state after the deadline"),
                        Err(e) => tracing::error!(%backend, device = %name, reason = %e, "device did not reach its safe state"),
                    }
                }
            });
        waits.push((d.name.clone(), spawned.map(|_| rx)));
    }
    let mut out = Vec::with_capacity(waits.len());
    let start = tokio::time::Instant::now();
    for (device, w) in waits {
        let outcome = match w {
            Err(e) => Err(format!("could not start its safe-state thread: {e}")),
            Ok(rx) => match tokio::time::timeout_at(start + deadline, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err("its safe-state thread ended without an answer".into()),
                Err(_) => Err(format!(
                    "no confirmation within {} ms: still busy (held by the shot clock or a hung call)",
                    deadline.as_millis()
                )),
            },
        };
        if let Err(reason) = &outcome {
            tracing::error!(%backend, %device, %reason, "device not in its safe state");
        }
        out.push(DeviceSafeState {
            device,
            safe: outcome.is_ok(),
            reason: outcome.err(),
        });
    }
    out
}

/// The devices of a backend with their configured names (same order as the handles).
pub fn named(
    section: &shotline_config::BackendSection,
    handles: &[DeviceHandle],
) -> Vec<NamedDevice> {
    handles
        .iter()
        .zip(&section.devices)
        .map(|(h, d)| NamedDevice {
            name: d.name.clone(),
            handle: h.clone(),
        })
        .collect()
}

//! A sequencer: the control side of one device. It programs the device with its timeline for an experiment
//! (on a blocking thread: driver I/O never runs on a tokio worker), drives it to its safe state, resets it,
//! and reports its lifecycle state (`shotline_hal::lifecycle`: manual → programming → programmed → armed →
//! running → manual, fault). Arming and playing happen on the shot clock thread, which takes the device for
//! the whole experiment and disarms it at the end.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shotline_hal::bridge::{SessionStatus, StatusHandle};
use shotline_hal::{DeviceHandle, DeviceState, DeviceTimeline};

/// What a sequencer reports of its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencerStatus {
    /// The device's lifecycle state.
    pub state: DeviceState,
    /// The last error of a program, safe state or reset, if the last such operation failed.
    pub last_error: Option<String>,
}

/// How long [`SequencerMsg::Describe`] waits for a device held elsewhere before calling it busy.
pub const DESCRIBE_WAIT: Duration = Duration::from_millis(20);

/// What a sequencer tells an operator about its device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReport {
    /// The lifecycle state; `None` when the device was busy (held by the shot clock or an operation).
    pub state: Option<DeviceState>,
    /// The last error of a program, safe state or reset, if the last such operation failed.
    pub last_error: Option<String>,
    /// For a device on a timing card: its session (connection, clock fit, link counters).
    pub card: Option<SessionStatus>,
}

/// Messages of a sequencer.
pub enum SequencerMsg {
    /// Upload `timeline`; answers whether the upload really happened (false: identical program cached).
    Program(DeviceTimeline, RpcReplyPort<Result<bool, String>>),
    /// Abort whatever the device does and drive it to its safe state (valid from every state).
    SafeState(RpcReplyPort<Result<(), String>>),
    /// Reset / reconnect the device: safe state and the upload cache forgotten.
    Reset(RpcReplyPort<Result<(), String>>),
    /// The device's state (waits up to the device timeout for a device the shot clock holds).
    Status(RpcReplyPort<SequencerStatus>),
    /// For operators: the state if the device is free within [`DESCRIBE_WAIT`] (else `None`: busy, e.g.
    /// playing shots), the last error, and the timing-card session if any. Never waits long.
    Describe(RpcReplyPort<DeviceReport>),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Start arguments.
pub struct SequencerArgs {
    /// The device.
    pub device: DeviceHandle,
    /// How long to wait for the device (it may be held by the shot clock).
    pub device_timeout: Duration,
    /// For a device on a timing card: its session's status, readable while the shot clock holds the device.
    pub card: Option<StatusHandle>,
}

/// State of a sequencer.
pub struct Sequencer {
    device: DeviceHandle,
    timeout: Duration,
    last_error: Option<String>,
    card: Option<StatusHandle>,
}

/// The sequencer actor.
pub struct SequencerActor;

async fn with_device<T: Send + 'static>(
    device: &DeviceHandle,
    timeout: Duration,
    f: impl FnOnce(&mut dyn shotline_hal::Device) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let device = device.clone();
    tokio::task::spawn_blocking(move || match device.try_lock_for(timeout) {
        Some(mut d) => f(d.as_mut()),
        None => Err(format!(
            "device busy for more than {} ms",
            timeout.as_millis()
        )),
    })
    .await
    .map_err(|e| format!("device worker failed: {e}"))?
}

impl Actor for SequencerActor {
    type Msg = SequencerMsg;
    type State = Sequencer;
    type Arguments = SequencerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SequencerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Sequencer {
            device: args.device,
            timeout: args.device_timeout,
            last_error: None,
            card: args.card,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: SequencerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SequencerMsg::InjectPanic => panic!("injected fault: SequencerMsg panics on request"),
            SequencerMsg::Program(timeline, reply) => {
                let r = with_device(&state.device, state.timeout, move |d| {
                    d.program(&timeline).map_err(|e| e.to_string())
                })
                .await;
                state.last_error = r.as_ref().err().cloned();
                let _ = reply.send(r);
            }
            SequencerMsg::SafeState(reply) => {
                let r = with_device(&state.device, state.timeout, |d| {
                    d.safe_state().map_err(|e| e.to_string())
                })
                .await;
                state.last_error = r.as_ref().err().cloned();
                let _ = reply.send(r);
            }
            SequencerMsg::Reset(reply) => {
                let r = with_device(&state.device, state.timeout, |d| {
                    d.reset().map_err(|e| e.to_string())
                })
                .await;
                state.last_error = r.as_ref().err().cloned();
                let _ = reply.send(r);
            }
            SequencerMsg::Status(reply) => {
                let device_state =
                    with_device(&state.device, state.timeout, |d| Ok(d.state())).await;
                let status = match device_state {
                    Ok(s) => SequencerStatus {
                        state: s,
                        last_error: state.last_error.clone(),
                    },
                    // Held by the shot clock for longer than the timeout: it is playing shots.
                    Err(e) => SequencerStatus {
                        state: DeviceState::Running,
                        last_error: Some(e),
                    },
                };
                let _ = reply.send(status);
            }
            SequencerMsg::Describe(reply) => {
                let device_state =
                    with_device(&state.device, DESCRIBE_WAIT, |d| Ok(d.state())).await;
                let _ = reply.send(DeviceReport {
                    state: device_state.ok(),
                    last_error: state.last_error.clone(),
                    card: state.card.as_ref().map(StatusHandle::status),
                });
            }
        }
        Ok(())
    }
}

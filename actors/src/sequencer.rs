//! A sequencer: the control side of one device. It programs the device with its timeline for an experiment
//! (on a blocking thread: driver I/O never runs on a tokio worker), drives it to its safe state, resets it,
//! and reports its lifecycle state (`shotline_hal::lifecycle`: manual → programming → programmed → armed →
//! running → manual, fault). Arming and playing happen on the shot clock thread, which takes the device for
//! the whole experiment and disarms it at the end.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shotline_hal::bridge::{SessionStatus, StatusHandle};
use shotline_hal::{DeviceError, DeviceHandle, DeviceState, DeviceTimeline};

/// Why a sequencer could not do what it was asked. Typed across the actor boundary, so the execution can
/// tell a device fault (the device-fault policy applies) from a program the device refused (the job's fault).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequencerError {
    /// The device answered with an error.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The device was held elsewhere (the shot clock, another operation) for longer than the wait.
    #[error("device {device}: busy for more than {waited_ms} ms")]
    Busy {
        /// Device.
        device: String,
        /// How long it was waited for.
        waited_ms: u64,
    },
    /// The blocking worker driving the device failed (the driver panicked).
    #[error("device {device}: its worker failed: {reason}")]
    Worker {
        /// Device.
        device: String,
        /// What the worker reported.
        reason: String,
    },
}

impl SequencerError {
    /// Whether this is a fault of the device (policy `device_faults` applies) rather than a program the device
    /// refused as invalid (the job's fault).
    pub fn is_device_fault(&self) -> bool {
        !matches!(self, SequencerError::Device(DeviceError::Timeline(_)))
    }
}

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
    Program(DeviceTimeline, RpcReplyPort<Result<bool, SequencerError>>),
    /// Abort whatever the device does and drive it to its safe state (valid from every state).
    SafeState(RpcReplyPort<Result<(), SequencerError>>),
    /// Reset / reconnect the device: safe state and the upload cache forgotten.
    Reset(RpcReplyPort<Result<(), SequencerError>>),
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
    /// The device's name (configuration).
    pub name: String,
    /// The device.
    pub device: DeviceHandle,
    /// How long to wait for the device (it may be held by the shot clock).
    pub device_timeout: Duration,
    /// For a device on a timing card: its session's status, readable while the shot clock holds the device.
    pub card: Option<StatusHandle>,
}

/// State of a sequencer.
pub struct Sequencer {
    name: String,
    device: DeviceHandle,
    timeout: Duration,
    last_error: Option<String>,
    card: Option<StatusHandle>,
}

/// The sequencer actor.
pub struct SequencerActor;

async fn with_device<T: Send + 'static>(
    name: &str,
    device: &DeviceHandle,
    timeout: Duration,
    f: impl FnOnce(&mut dyn shotline_hal::Device) -> Result<T, DeviceError> + Send + 'static,
) -> Result<T, SequencerError> {
    let device = device.clone();
    let n = name.to_string();
    tokio::task::spawn_blocking(move || match device.try_lock_for(timeout) {
        Some(mut d) => f(d.as_mut()).map_err(SequencerError::from),
        None => Err(SequencerError::Busy {
            device: n,
            waited_ms: timeout.as_millis() as u64,
        }),
    })
    .await
    .map_err(|e| SequencerError::Worker {
        device: name.to_string(),
        reason: e.to_string(),
    })?
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
            name: args.name,
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
                let r = with_device(&state.name, &state.device, state.timeout, move |d| {
                    d.program(&timeline)
                })
                .await;
                state.last_error = r.as_ref().err().map(ToString::to_string);
                let _ = reply.send(r);
            }
            SequencerMsg::SafeState(reply) => {
                let r = with_device(&state.name, &state.device, state.timeout, |d| {
                    d.safe_state()
                })
                .await;
                state.last_error = r.as_ref().err().map(ToString::to_string);
                let _ = reply.send(r);
            }
            SequencerMsg::Reset(reply) => {
                let r = with_device(&state.name, &state.device, state.timeout, |d| d.reset()).await;
                state.last_error = r.as_ref().err().map(ToString::to_string);
                let _ = reply.send(r);
            }
            SequencerMsg::Status(reply) => {
                let device_state =
                    with_device(&state.name, &state.device, state.timeout, |d| Ok(d.state())).await;
                let status = match device_state {
                    Ok(s) => SequencerStatus {
                        state: s,
                        last_error: state.last_error.clone(),
                    },
                    // Held by the shot clock for longer than the timeout: it is playing shots.
                    Err(e) => SequencerStatus {
                        state: DeviceState::Running,
                        last_error: Some(e.to_string()),
                    },
                };
                let _ = reply.send(status);
            }
            SequencerMsg::Describe(reply) => {
                let device_state =
                    with_device(&state.name, &state.device, DESCRIBE_WAIT, |d| Ok(d.state())).await;
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

//! A sequencer: the control side of one device. It programs the device with its timeline for an experiment
//! (on a blocking thread: driver I/O never runs on a tokio worker), drives it to its safe state, and tracks
//! the device's state the way BLACS does: manual -> programmed (buffered) -> manual, with faults remembered.
//! Arming and playing happen on the shot clock thread, which takes the device for the whole experiment.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shotline_hal::{DeviceHandle, DeviceTimeline};

/// Where the device stands, as seen by its sequencer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequencerState {
    /// Outputs static, no program armed.
    Manual,
    /// A program is uploaded for the next experiment.
    Programmed,
    /// The last operation failed.
    Fault(String),
}

/// Messages of a sequencer.
pub enum SequencerMsg {
    /// Upload `timeline`; answers whether the upload really happened (false: identical program cached).
    Program(DeviceTimeline, RpcReplyPort<Result<bool, String>>),
    /// Drive the device to its safe state.
    SafeState(RpcReplyPort<Result<(), String>>),
    /// Current state.
    State(RpcReplyPort<SequencerState>),
}

/// Start arguments.
pub struct SequencerArgs {
    /// The device.
    pub device: DeviceHandle,
    /// How long to wait for the device (it may be held by the shot clock).
    pub device_timeout: Duration,
}

/// State of a sequencer.
pub struct Sequencer {
    device: DeviceHandle,
    timeout: Duration,
    state: SequencerState,
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
            state: SequencerState::Manual,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: SequencerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SequencerMsg::Program(timeline, reply) => {
                let r = with_device(&state.device, state.timeout, move |d| {
                    d.program(&timeline).map_err(|e| e.to_string())
                })
                .await;
                state.state = match &r {
                    Ok(_) => SequencerState::Programmed,
                    Err(e) => SequencerState::Fault(e.clone()),
                };
                let _ = reply.send(r);
            }
            SequencerMsg::SafeState(reply) => {
                let r = with_device(&state.device, state.timeout, |d| {
                    d.safe_state().map_err(|e| e.to_string())
                })
                .await;
                state.state = match &r {
                    Ok(()) => SequencerState::Manual,
                    Err(e) => SequencerState::Fault(e.clone()),
                };
                let _ = reply.send(r);
            }
            SequencerMsg::State(reply) => {
                let _ = reply.send(state.state.clone());
            }
        }
        Ok(())
    }
}

//! Simulated devices: TTL banks, DDS channels and a camera acting on the simulated atoms.
//!
//! They behave like drivers of real hardware: they validate and keep their program (skipping an identical
//! re-upload), refuse calls in the wrong state, and report every applied event to the [`SimWorld`].

use super::world::{Coupling, SimWorld};
use crate::device::{Device, DeviceError, DeviceInfo, Readout, ReadoutValue, ShotContext};
use crate::timeline::{Action, DeviceTimeline, Event};

/// Kinds of simulated driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimDriver {
    /// Digital outputs and timed pulses.
    Ttl,
    /// RF synthesiser channel: timed pulses with a setpoint.
    Dds,
    /// Camera: acquire events, one read-out value per shot.
    Camera,
}

impl SimDriver {
    /// Driver name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            SimDriver::Ttl => "sim_ttl",
            SimDriver::Dds => "sim_dds",
            SimDriver::Camera => "sim_camera",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Manual,
    Programmed,
    Armed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Manual => "manual",
            State::Programmed => "programmed",
            State::Armed => "armed",
        }
    }
}

/// One simulated device.
pub struct SimDevice {
    info: DeviceInfo,
    kind: SimDriver,
    world: SimWorld,
    slot: usize,
    state: State,
    program: Option<DeviceTimeline>,
    uploads: u64,
    index: u16,
}

impl SimDevice {
    /// A simulated device `name` of kind `kind` that is number `index` of its backend, acting on `world`.
    pub fn new(
        name: &str,
        kind: SimDriver,
        clock_period_ns: u64,
        index: u16,
        world: &SimWorld,
        coupling: Coupling,
    ) -> Self {
        let slot = world.attach(name, coupling);
        Self {
            info: DeviceInfo {
                name: name.to_string(),
                driver: kind.name().to_string(),
                clock_period_ns: clock_period_ns.max(1),
                channels: 1,
                simulated: true,
            },
            kind,
            world: world.clone(),
            slot,
            state: State::Manual,
            program: None,
            uploads: 0,
            index,
        }
    }

    /// How many programs were really uploaded (identical re-programs are skipped).
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    fn wrong(&self, operation: &'static str) -> DeviceError {
        DeviceError::WrongState {
            device: self.info.name.clone(),
            operation,
            state: self.state.name(),
        }
    }

    fn check_actions(&self, timeline: &DeviceTimeline) -> Result<(), DeviceError> {
        for (i, ev) in timeline.events.iter().enumerate() {
            let ok = matches!(
                (self.kind, ev.action),
                (
                    SimDriver::Ttl,
                    Action::Digital { .. } | Action::Pulse { .. }
                ) | (SimDriver::Dds, Action::Pulse { .. })
                    | (SimDriver::Camera, Action::Acquire { .. })
            );
            if !ok {
                return Err(DeviceError::Fault {
                    device: self.info.name.clone(),
                    reason: format!(
                        "event {i}: a {} cannot perform {:?}",
                        self.kind.name(),
                        ev.action
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        // Programming an armed device disarms it first (the shot clock has released it between experiments).
        timeline.validate(self.info.clock_period_ns, self.info.channels)?;
        self.check_actions(timeline)?;
        if self.program.as_ref() == Some(timeline) {
            self.state = State::Programmed;
            return Ok(false);
        }
        self.world.set_program(self.slot, &timeline.events);
        self.program = Some(timeline.clone());
        self.uploads += 1;
        self.state = State::Programmed;
        Ok(true)
    }

    fn arm(&mut self) -> Result<(), DeviceError> {
        if self.state == State::Manual {
            return Err(self.wrong("arm"));
        }
        self.world.prepare(&self.info.name)?;
        self.state = State::Armed;
        Ok(())
    }

    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError> {
        if self.state != State::Armed {
            return Err(self.wrong("start_shot"));
        }
        self.world.begin_shot(shot, &self.info.name)
    }

    fn apply(
        &mut self,
        _index: usize,
        event: &Event,
        shot: &ShotContext,
    ) -> Result<(), DeviceError> {
        if self.state != State::Armed {
            return Err(self.wrong("apply"));
        }
        self.world.on_event(self.slot, event, shot, &self.info.name)
    }

    fn end_shot(&mut self, shot: &ShotContext, out: &mut Readout) -> Result<(), DeviceError> {
        if self.state != State::Armed {
            return Err(self.wrong("end_shot"));
        }
        if self.kind == SimDriver::Camera {
            if let Some(k) = self.world.outcome(shot) {
                let _ = out.push(ReadoutValue {
                    device: self.index,
                    channel: 0,
                    value: i64::from(k),
                });
            }
        }
        Ok(())
    }

    fn safe_state(&mut self) -> Result<(), DeviceError> {
        // Outputs off; the armed program is dropped but the uploaded one stays cached (a reset would clear it).
        if self.state == State::Armed {
            self.state = State::Programmed;
        }
        self.world.reset();
        Ok(())
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let _ = self.safe_state();
    }
}

//! Simulated devices: TTL banks, DDS channels and a camera acting on the simulated atoms.
//!
//! They behave like drivers of real hardware: they validate and keep their program (skipping an identical
//! re-upload until the device is reset), follow the [`Lifecycle`] (refusing calls in the wrong state), check
//! their setpoint range, and report every applied event to the [`SimWorld`].

use super::fault::{FaultSwitch, Firing};
use super::world::{Coupling, SimWorld};
use crate::device::{
    check_actions, Device, DeviceError, DeviceInfo, Readout, ReadoutValue, ShotContext,
    DDS_SETPOINTS, TTL_SETPOINTS,
};
use crate::lifecycle::{DeviceState, Lifecycle, Transition};
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

    /// Allowed pulse setpoints: a TTL pulse carries a non-negative level (for the MOT: the atom number to
    /// load), a DDS pulse a relative amplitude in [0, 1]; a camera takes no pulses.
    pub fn setpoint_range(self) -> (f64, f64) {
        match self {
            SimDriver::Ttl => TTL_SETPOINTS,
            SimDriver::Dds => DDS_SETPOINTS,
            SimDriver::Camera => (0.0, 0.0),
        }
    }

    /// Whether this driver can perform `action`, and the actions it can perform, in words.
    fn performs(self, action: &Action) -> bool {
        matches!(
            (self, action),
            (
                SimDriver::Ttl,
                Action::Digital { .. } | Action::Pulse { .. }
            ) | (SimDriver::Dds, Action::Pulse { .. })
                | (SimDriver::Camera, Action::Acquire { .. })
        )
    }

    fn actions(self) -> &'static str {
        match self {
            SimDriver::Ttl => "Digital, Pulse",
            SimDriver::Dds => "Pulse",
            SimDriver::Camera => "Acquire",
        }
    }
}

/// One simulated device.
pub struct SimDevice {
    info: DeviceInfo,
    kind: SimDriver,
    world: SimWorld,
    slot: usize,
    lifecycle: Lifecycle,
    program: Option<DeviceTimeline>,
    uploads: u64,
    index: u16,
    faults: FaultSwitch,
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
                setpoint_range: kind.setpoint_range(),
            },
            kind,
            world: world.clone(),
            slot,
            lifecycle: Lifecycle::default(),
            program: None,
            uploads: 0,
            index,
            faults: FaultSwitch::default(),
        }
    }

    /// The switch through which tests and drills inject faults into this device.
    pub fn fault_switch(&self) -> FaultSwitch {
        self.faults.clone()
    }

    fn disconnected(&self) -> Result<(), DeviceError> {
        if self.faults.disconnected() {
            return Err(DeviceError::Fault {
                device: self.info.name.clone(),
                reason: "disconnected (no answer on its link); reset it to reconnect".into(),
            });
        }
        Ok(())
    }

    /// How many programs were really uploaded (identical re-programs are skipped).
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    fn step(&mut self, t: Transition) -> Result<(), DeviceError> {
        self.lifecycle.step(&self.info.name, t)
    }

    fn check_actions(&self, timeline: &DeviceTimeline) -> Result<(), DeviceError> {
        let kind = self.kind;
        check_actions(&self.info, timeline, |a| kind.performs(a), kind.actions())
    }
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        self.disconnected()?;
        self.step(Transition::BeginProgram)?;
        let checked = timeline
            .validate(self.info.clock_period_ns, self.info.channels)
            .map_err(DeviceError::from)
            .and_then(|()| self.check_actions(timeline));
        if let Err(e) = checked {
            // A refused program leaves the device as it was before, with no program.
            self.program = None;
            let _ = self.step(Transition::Abort);
            return Err(e);
        }
        let uploaded = if self.program.as_ref() == Some(timeline) {
            false
        } else {
            self.world.set_program(self.slot, &timeline.events);
            self.program = Some(timeline.clone());
            self.uploads += 1;
            true
        };
        self.step(Transition::ProgramDone)?;
        Ok(uploaded)
    }

    fn arm(&mut self) -> Result<(), DeviceError> {
        self.disconnected()?;
        self.lifecycle
            .check(Transition::Arm)
            .map_err(|e| e.for_device(&self.info.name))?;
        if let Err(e) = self.world.prepare(&self.info.name) {
            let _ = self.step(Transition::Fail);
            return Err(e);
        }
        self.step(Transition::Arm)
    }

    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError> {
        self.step(Transition::StartShot)?;
        self.world.begin_shot(shot, &self.info.name)
    }

    fn apply(
        &mut self,
        _index: usize,
        event: &Event,
        shot: &ShotContext,
    ) -> Result<(), DeviceError> {
        self.lifecycle.require_running(&self.info.name, "apply")?;
        match self.faults.check(shot.shot) {
            Firing::No => {}
            Firing::Error => {
                let _ = self.step(Transition::Fail);
                return Err(DeviceError::Fault {
                    device: self.info.name.clone(),
                    reason: format!("injected error in shot {}", shot.shot),
                });
            }
            Firing::Hang(d) => {
                std::thread::sleep(d);
                let _ = self.step(Transition::Fail);
                return Err(DeviceError::Fault {
                    device: self.info.name.clone(),
                    reason: format!("timed out: no answer for {} ms", d.as_millis()),
                });
            }
            Firing::Disconnected => {
                let _ = self.step(Transition::Fail);
                return Err(DeviceError::Fault {
                    device: self.info.name.clone(),
                    reason: format!("disconnected in shot {}", shot.shot),
                });
            }
        }
        self.world.on_event(self.slot, event, shot, &self.info.name)
    }

    fn end_shot(&mut self, shot: &ShotContext, out: &mut Readout) -> Result<(), DeviceError> {
        self.step(Transition::EndShot)?;
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
        // Outputs off, nothing armed; the uploaded program stays cached (a reset clears it).
        let _ = self.step(Transition::Abort);
        self.world.reset();
        Ok(())
    }

    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.step(Transition::Disarm)
    }

    fn reset(&mut self) -> Result<(), DeviceError> {
        self.faults.clear();
        let _ = self.step(Transition::Reset);
        self.program = None;
        self.world.set_program(self.slot, &[]);
        self.world.reset();
        Ok(())
    }

    fn state(&self) -> DeviceState {
        self.lifecycle.state()
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let _ = self.safe_state();
    }
}

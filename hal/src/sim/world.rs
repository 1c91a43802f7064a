//! The simulated apparatus: the atoms that the simulated devices act on.
//!
//! Every simulated device of a backend holds the same [`SimWorld`] and a slot in it. When devices are
//! programmed, they hand their programmed timelines to the world; when they are armed, the world integrates
//! the **programmed** pulses (times and durations already rounded to the device clock periods) into the
//! outcome distribution of the experiment. During a shot the devices report each applied event; the camera's
//! acquire event samples the outcome with an RNG keyed by (seed, experiment, shot). Measured apply times never
//! enter the physics, so timing jitter cannot change a simulated result.
//!
//! Shot-path access uses `try_lock` (one compare-and-swap, never waits): only the shot clock thread touches
//! the world during a shot, so contention means a wiring bug and is reported as a device fault.

use std::f64::consts::PI;
use std::sync::Arc;

use parking_lot::Mutex;

use super::qudit::{shot_uniform, OutcomeSampler, SpinOp, SpinState};
use crate::device::{DeviceError, ShotContext};
use crate::timeline::{Action, Event};

/// What a simulated device does to the atoms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coupling {
    /// No effect on the atoms.
    None,
    /// A pulse loads `round(setpoint)` atoms (the MOT).
    Load,
    /// A pulse rotates the collective spin about x at `rate_hz` turns per second (RF drive, `rlx`).
    RotateX {
        /// Rabi frequency in Hz: angle = 2π · rate · duration.
        rate_hz: f64,
    },
    /// A pulse rotates about z (detuning, `rlz`).
    RotateZ {
        /// Rate in Hz.
        rate_hz: f64,
    },
    /// A pulse applies the one-axis twisting Lz² (interaction hold, `rlz2`).
    TwistZ2 {
        /// Rate in Hz.
        rate_hz: f64,
    },
    /// An acquire event images the atoms and reads out the occupation number (the camera).
    Image,
}

struct Prepared {
    sampler: OutcomeSampler,
    n_atoms: u32,
    has_load: bool,
    pulses_before_image: u32,
    has_image: bool,
}

struct ShotProgress {
    shot: Option<ShotContext>,
    loaded: bool,
    pulses: u32,
    outcome: Option<u32>,
}

struct WorldState {
    couplings: Vec<(String, Coupling)>,
    programs: Vec<Vec<Event>>,
    dirty: bool,
    prepared: Option<Prepared>,
    progress: ShotProgress,
    spin: SpinState,
    probabilities: Vec<f64>,
    max_atoms: u32,
}

/// The shared simulated apparatus (cheap to clone).
#[derive(Clone)]
pub struct SimWorld {
    inner: Arc<Mutex<WorldState>>,
}

impl std::fmt::Debug for SimWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimWorld").finish_non_exhaustive()
    }
}

/// Atom number when an experiment loads none explicitly (as in the reference model).
pub const DEFAULT_ATOMS: u32 = 1;

impl SimWorld {
    /// A world that can hold up to `max_atoms` atoms.
    pub fn new(max_atoms: u32) -> Self {
        let max_atoms = max_atoms.max(1);
        Self {
            inner: Arc::new(Mutex::new(WorldState {
                couplings: Vec::new(),
                programs: Vec::new(),
                dirty: true,
                prepared: None,
                progress: ShotProgress {
                    shot: None,
                    loaded: false,
                    pulses: 0,
                    outcome: None,
                },
                spin: SpinState::new(max_atoms),
                probabilities: vec![0.0; max_atoms as usize + 1],
                max_atoms,
            })),
        }
    }

    /// Registers a device and returns its slot (control plane, at construction).
    pub fn attach(&self, device: &str, coupling: Coupling) -> usize {
        let mut w = self.inner.lock();
        w.couplings.push((device.to_string(), coupling));
        w.programs.push(Vec::new());
        w.couplings.len() - 1
    }

    /// Records the programmed events of a slot (control plane).
    pub fn set_program(&self, slot: usize, events: &[Event]) {
        let mut w = self.inner.lock();
        if let Some(p) = w.programs.get_mut(slot) {
            p.clear();
            p.extend_from_slice(events);
        }
        w.dirty = true;
        w.prepared = None;
    }

    /// Integrates the programmed timelines of every slot into the outcome distribution (control plane; the
    /// first arm of an experiment does the work, the others find it done).
    pub fn prepare(&self, device: &str) -> Result<(), DeviceError> {
        let mut guard = self.inner.lock();
        let w = &mut *guard;
        if !w.dirty && w.prepared.is_some() {
            return Ok(());
        }
        let fault = |reason: String| DeviceError::Fault {
            device: device.to_string(),
            reason,
        };
        let mut merged: Vec<(u64, usize, Event)> = Vec::new();
        for (slot, events) in w.programs.iter().enumerate() {
            for ev in events {
                merged.push((ev.t_ns, slot, *ev));
            }
        }
        merged.sort_by_key(|(t, slot, _)| (*t, *slot));
        let mut n_atoms = DEFAULT_ATOMS;
        let mut has_load = false;
        let mut ops: Vec<SpinOp> = Vec::new();
        let mut has_image = false;
        let mut pulses_before_image = 0u32;
        for (_, slot, ev) in &merged {
            let (name, coupling) = &w.couplings[*slot];
            match (coupling, ev.action) {
                (Coupling::Load, Action::Pulse { setpoint, .. }) => {
                    if has_image || !ops.is_empty() || has_load {
                        return Err(fault(format!(
                            "{name}: atoms can only be loaded once, before any pulse"
                        )));
                    }
                    let n = setpoint.round();
                    if !(1.0..=w.max_atoms as f64).contains(&n) {
                        return Err(fault(format!(
                            "{name}: cannot load {setpoint} atoms (allowed 1..={})",
                            w.max_atoms
                        )));
                    }
                    n_atoms = n as u32;
                    has_load = true;
                }
                (
                    Coupling::RotateX { rate_hz }
                    | Coupling::RotateZ { rate_hz }
                    | Coupling::TwistZ2 { rate_hz },
                    Action::Pulse { duration_ns, .. },
                ) if !has_image => {
                    let angle = 2.0 * PI * rate_hz * (duration_ns as f64) * 1e-9;
                    ops.push(match coupling {
                        Coupling::RotateX { .. } => SpinOp::Rx(angle),
                        Coupling::RotateZ { .. } => SpinOp::Rz(angle),
                        _ => SpinOp::Rz2(angle),
                    });
                    pulses_before_image += 1;
                }
                (Coupling::Image, Action::Acquire { .. }) if !has_image => has_image = true,
                _ => {}
            }
        }
        w.spin
            .reset(n_atoms)
            .map_err(|e| fault(format!("simulator: {e}")))?;
        for op in &ops {
            w.spin
                .apply(*op)
                .map_err(|e| fault(format!("simulator: {e}")))?;
        }
        let n = n_atoms as usize + 1;
        let WorldState {
            spin,
            probabilities,
            ..
        } = w;
        spin.probabilities_into(&mut probabilities[..n])
            .map_err(|e| fault(format!("simulator: {e}")))?;
        let sampler = OutcomeSampler::from_probabilities(&probabilities[..n])
            .map_err(|e| fault(format!("simulator: {e}")))?;
        w.prepared = Some(Prepared {
            sampler,
            n_atoms,
            has_load,
            pulses_before_image,
            has_image,
        });
        w.dirty = false;
        Ok(())
    }

    /// Outcome probabilities of the prepared experiment (for tests and diagnostics).
    pub fn prepared_probabilities(&self) -> Option<Vec<f64>> {
        let w = self.inner.lock();
        let p = w.prepared.as_ref()?;
        Some(w.probabilities[..p.n_atoms as usize + 1].to_vec())
    }

    /// Forgets the prepared experiment (safe state / reset).
    pub fn reset(&self) {
        let mut w = self.inner.lock();
        w.prepared = None;
        w.dirty = true;
        w.progress.shot = None;
    }

    /// Shot path: a new shot begins (every device calls it; repeated calls are harmless).
    pub fn begin_shot(&self, shot: &ShotContext, device: &str) -> Result<(), DeviceError> {
        let Some(mut w) = self.inner.try_lock() else {
            return Err(DeviceError::Busy {
                device: device.to_string(),
            });
        };
        w.progress = ShotProgress {
            shot: Some(*shot),
            loaded: false,
            pulses: 0,
            outcome: None,
        };
        Ok(())
    }

    /// Shot path: an event of `slot` was applied.
    pub fn on_event(
        &self,
        slot: usize,
        event: &Event,
        shot: &ShotContext,
        device: &str,
    ) -> Result<(), DeviceError> {
        let Some(mut guard) = self.inner.try_lock() else {
            return Err(DeviceError::Busy {
                device: device.to_string(),
            });
        };
        let w = &mut *guard;
        if w.progress.shot != Some(*shot) {
            w.progress = ShotProgress {
                shot: Some(*shot),
                loaded: false,
                pulses: 0,
                outcome: None,
            };
        }
        let Some(prepared) = w.prepared.as_ref() else {
            return Err(DeviceError::WrongState {
                device: device.to_string(),
                operation: "apply",
                state: "unarmed",
            });
        };
        let coupling = w.couplings.get(slot).map(|c| c.1).unwrap_or(Coupling::None);
        match (coupling, event.action) {
            (Coupling::Load, Action::Pulse { .. }) => w.progress.loaded = true,
            (
                Coupling::RotateX { .. } | Coupling::RotateZ { .. } | Coupling::TwistZ2 { .. },
                Action::Pulse { .. },
            ) => w.progress.pulses += 1,
            (Coupling::Image, Action::Acquire { .. }) if w.progress.outcome.is_none() => {
                let complete = prepared.has_image
                    && (w.progress.loaded || !prepared.has_load)
                    && w.progress.pulses == prepared.pulses_before_image;
                if !complete {
                    return Err(DeviceError::Fault {
                        device: device.to_string(),
                        reason: "imaged atoms whose programmed sequence did not fully run".into(),
                    });
                }
                let u = shot_uniform(shot.seed, shot.experiment, shot.shot);
                w.progress.outcome = Some(prepared.sampler.sample(u));
            }
            _ => {}
        }
        Ok(())
    }

    /// Shot path: the outcome measured in `shot`, if the camera imaged it.
    pub fn outcome(&self, shot: &ShotContext) -> Option<u32> {
        let w = self.inner.try_lock()?;
        if w.progress.shot == Some(*shot) {
            w.progress.outcome
        } else {
            None
        }
    }
}

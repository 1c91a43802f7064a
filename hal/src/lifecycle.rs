//! The device lifecycle, modelled on how BLACS drives devices: manual → programming (transition to buffered)
//! → armed → running → armed (next shot) … → manual, with abort allowed from every state and a fault state
//! that only a safe state or a reset leaves. Drivers keep one [`Lifecycle`] and ask it before every call, so a
//! call in the wrong state is refused with the state it came in, never half-executed.

use std::fmt;

use crate::device::DeviceError;

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Outputs static, no program armed (a program may be cached).
    Manual,
    /// A program is being uploaded.
    Programming,
    /// A program is uploaded for the next experiment ("buffered").
    Programmed,
    /// Ready for the next shot.
    Armed,
    /// Inside a shot.
    Running,
    /// The last operation failed; only `safe_state` or `reset` leave this state.
    Fault,
}

impl DeviceState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Manual => "manual",
            DeviceState::Programming => "programming",
            DeviceState::Programmed => "programmed",
            DeviceState::Armed => "armed",
            DeviceState::Running => "running",
            DeviceState::Fault => "fault",
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is asked of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Start uploading a program.
    BeginProgram,
    /// The upload finished.
    ProgramDone,
    /// Prepare for the first shot.
    Arm,
    /// A shot starts.
    StartShot,
    /// The shot ended; ready for the next.
    EndShot,
    /// The experiment is over: back to manual (the program stays cached).
    Disarm,
    /// Stop whatever is going on and go to the safe state (allowed from every state).
    Abort,
    /// Something failed.
    Fail,
    /// Reset or reconnect: back to manual, cache forgotten (allowed from every state).
    Reset,
}

impl Transition {
    /// The device operation that asks for this transition, as named in errors (`program`, `arm`, ...).
    pub fn operation(self) -> &'static str {
        match self {
            Transition::BeginProgram | Transition::ProgramDone => "program",
            Transition::Arm => "arm",
            Transition::StartShot => "start_shot",
            Transition::EndShot => "end_shot",
            Transition::Disarm => "disarm",
            Transition::Abort => "abort",
            Transition::Fail => "fail",
            Transition::Reset => "reset",
        }
    }
}

/// A transition that is not allowed in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllowed {
    /// The request.
    pub transition: Transition,
    /// The state it came in.
    pub state: DeviceState,
}

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not allowed in state {}",
            self.transition, self.state
        )
    }
}

impl NotAllowed {
    /// The error a driver named `device` reports: the refused operation and the state it came in.
    pub fn for_device(self, device: &str) -> DeviceError {
        DeviceError::WrongState {
            device: device.to_string(),
            operation: self.transition.operation(),
            state: self.state.name(),
        }
    }
}

/// The state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    state: DeviceState,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            state: DeviceState::Manual,
        }
    }
}

impl Lifecycle {
    /// The current state.
    pub fn state(&self) -> DeviceState {
        self.state
    }

    /// The state `t` would lead to, without changing anything.
    pub fn check(&self, t: Transition) -> Result<DeviceState, NotAllowed> {
        use DeviceState as S;
        use Transition as T;
        let next = match (self.state, t) {
            (_, T::Abort | T::Reset) => S::Manual,
            (_, T::Fail) => S::Fault,
            (S::Manual | S::Programmed | S::Armed, T::BeginProgram) => S::Programming,
            (S::Programming, T::ProgramDone) => S::Programmed,
            (S::Programmed, T::Arm) => S::Armed,
            (S::Armed, T::StartShot) => S::Running,
            (S::Running, T::EndShot) => S::Armed,
            (S::Programmed | S::Armed | S::Running | S::Manual, T::Disarm) => S::Manual,
            (state, transition) => return Err(NotAllowed { transition, state }),
        };
        Ok(next)
    }

    /// Applies `t` if allowed.
    pub fn apply(&mut self, t: Transition) -> Result<DeviceState, NotAllowed> {
        let next = self.check(t)?;
        self.state = next;
        Ok(next)
    }

    /// Applies `t` for the driver named `device`, or the wrong-state error naming it.
    pub fn step(&mut self, device: &str, t: Transition) -> Result<(), DeviceError> {
        self.apply(t).map(|_| ()).map_err(|e| e.for_device(device))
    }

    /// `Ok` inside a shot (running); else the wrong-state error of `operation` for the driver `device`.
    pub fn require_running(
        &self,
        device: &str,
        operation: &'static str,
    ) -> Result<(), DeviceError> {
        if self.state == DeviceState::Running {
            return Ok(());
        }
        Err(DeviceError::WrongState {
            device: device.to_string(),
            operation,
            state: self.state.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceState as S;
    use super::Transition as T;
    use super::*;

    fn run(steps: &[T]) -> Result<DeviceState, NotAllowed> {
        let mut l = Lifecycle::default();
        let mut last = l.state();
        for s in steps {
            last = l.apply(*s)?;
        }
        Ok(last)
    }

    #[test]
    fn the_buffered_cycle_of_an_experiment() {
        let steps = [
            T::BeginProgram,
            T::ProgramDone,
            T::Arm,
            T::StartShot,
            T::EndShot,
            T::StartShot,
            T::EndShot,
            T::Disarm,
        ];
        assert_eq!(run(&steps), Ok(S::Manual));
        // Reprogramming an armed device (next experiment) is allowed.
        assert_eq!(
            run(&[T::BeginProgram, T::ProgramDone, T::Arm, T::BeginProgram]),
            Ok(S::Programming)
        );
    }

    #[test]
    fn abort_and_reset_work_from_every_state() {
        let prefixes: [&[T]; 6] = [
            &[],
            &[T::BeginProgram],
            &[T::BeginProgram, T::ProgramDone],
            &[T::BeginProgram, T::ProgramDone, T::Arm],
            &[T::BeginProgram, T::ProgramDone, T::Arm, T::StartShot],
            &[T::Fail],
        ];
        for p in prefixes {
            for end in [T::Abort, T::Reset] {
                let mut steps = p.to_vec();
                steps.push(end);
                assert_eq!(run(&steps), Ok(S::Manual), "{steps:?}");
            }
        }
    }

    #[test]
    fn wrong_order_is_refused_with_the_state() {
        assert_eq!(
            run(&[T::Arm]),
            Err(NotAllowed {
                transition: T::Arm,
                state: S::Manual
            })
        );
        assert!(run(&[T::BeginProgram, T::ProgramDone, T::StartShot]).is_err());
        assert!(run(&[T::Fail, T::Arm]).is_err());
        assert!(run(&[T::Fail, T::BeginProgram]).is_err());
        assert!(run(&[T::BeginProgram, T::Arm]).is_err());
    }
}

//! The simulated apparatus: simulated devices and the physics they act on.

pub mod device;
pub mod fault;
pub mod qudit;
pub mod world;

pub use device::{SimDevice, SimDriver};
pub use fault::{FaultSwitch, InjectedFault};
pub use world::{Coupling, SimWorld};

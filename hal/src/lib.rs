//! shotline hardware abstraction layer.
//!
//! - [`time`]: integer-nanosecond monotonic time and absolute-deadline waits;
//! - [`timeline`]: per-device events of a shot and their validation;
//! - [`device`]: the driver trait every device implements;
//! - [`lifecycle`]: the BLACS-like device state machine (manual, programming, armed, running, fault);
//! - [`shot_clock`]: the thread that plays timelines shot after shot through `rtrb` rings;
//! - [`sim`]: simulated devices and the simulated apparatus (single-qudit physics);
//! - [`realtime`]: opt-in real-time scheduling of the shot clock.
//!
//! The HAL knows nothing of actors, QUIC or persistence.

pub mod bridge;
pub mod device;
pub mod lifecycle;
pub mod realtime;
pub mod shot_clock;
pub mod sim;
pub mod time;
pub mod timeline;

pub use device::{Device, DeviceError, DeviceHandle, DeviceInfo, Readout, ShotContext};
pub use lifecycle::{DeviceState, Lifecycle, Transition};
pub use shot_clock::{ClockConfig, ClockControl, ClockOutputs, ExperimentRun, UnderflowPolicy};
pub use timeline::{Action, DeviceTimeline, Event};

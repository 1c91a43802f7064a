//! The typed schema of one backend: limits, shot timing, instruction sequencing and devices.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of a backend's model: its instruction set, timeline compiler, simulated physics and analysis.
/// Any name of the form `[a-z0-9_-]{1,32}` parses; which names exist is decided by the runtime's model
/// registry (`shotline_models::ModelRegistry`; built in: `singlequdit`), which checks it at start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelName(Cow<'static, str>);

/// The former name of [`ModelName`] (a closed enum before models became a plug-in point).
pub type BackendModel = ModelName;

impl ModelName {
    /// The built-in `singlequdit` model: one collective spin of N/2 for N loaded atoms.
    #[allow(non_upper_case_globals)]
    pub const SingleQudit: ModelName = ModelName(Cow::Borrowed("singlequdit"));

    /// A model name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The name as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The driver of a device: the name of an entry of the driver registry (`sim_ttl`, `sim_dds`, `sim_camera`,
/// `bridge`, or a driver an embedder registered). Any name parses; validation checks it against the
/// registered drivers ([`crate::DriverCatalog`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceDriver(Cow<'static, str>);

// The built-in drivers keep the spelling of the enum variants they used to be.
#[allow(non_upper_case_globals)]
impl DeviceDriver {
    /// Simulated TTL output bank.
    pub const SimTtl: Self = Self(Cow::Borrowed("sim_ttl"));
    /// Simulated direct digital synthesizer.
    pub const SimDds: Self = Self(Cow::Borrowed("sim_dds"));
    /// Simulated camera.
    pub const SimCamera: Self = Self(Cow::Borrowed("sim_camera"));
    /// A timing card behind the firmware bridge (TCP or serial; see the device's `bridge` section).
    pub const Bridge: Self = Self(Cow::Borrowed("bridge"));
}

impl DeviceDriver {
    /// The driver registered as `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The configuration spelling of the driver (`sim_ttl`, `sim_dds`, `sim_camera`, `bridge`, ...).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens when an event is late by more than the slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderflowPolicy {
    /// Fail the shot (the late event is applied, then the run stops).
    Fail,
    /// Record the underflow and go on (default).
    #[default]
    Record,
    /// Stop the run before a late event is applied (ARTIQ's RTIOUnderflow): the late output is never
    /// played, the devices go to their safe state and the job ends ERROR.
    Abort,
}

/// What happens when the acquisition ring overflows (shot records lost because nobody drained them in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// The experiment fails, naming how many shots were lost (default).
    #[default]
    Fail,
    /// The result keeps the shots that were acquired and reports how many were lost.
    Degrade,
}

/// What a device fault (error, timeout, disconnect) does to the job it interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceFaultAction {
    /// End the job ERROR naming the device and the fault (default).
    #[default]
    Fail,
    /// Put the job back in the queue (counted against `recovery.max_attempts`).
    Retry,
}

/// `backends[].device_faults`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceFaultSection {
    /// What happens to the job.
    pub action: DeviceFaultAction,
    /// Pause the backend's queue until an operator resumes it (as labscript does).
    pub pause_backend: bool,
}

/// One entry of `backends`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// Unique name, `[a-z0-9_-]{1,32}` (required).
    pub name: String,
    /// The model (instruction set, compiler, physics, analysis) by its registered name (required).
    pub model: ModelName,
    /// Name shown to users; empty means `name`.
    #[serde(default)]
    pub display_name: String,
    /// Free-text description published in the backend config.
    #[serde(default)]
    pub description: String,
    /// Backend version published in the backend config and in results.
    #[serde(default = "default_version")]
    pub version: String,
    /// Most shots per experiment (1..=1_000_000).
    #[serde(default = "default_max_shots")]
    pub max_shots: u32,
    /// Most experiments per job (1..=1000).
    #[serde(default = "default_max_experiments")]
    pub max_experiments: u32,
    /// Most atoms a `load` may ask for, and the simulator's size (1..=500).
    #[serde(default = "default_max_atoms")]
    pub max_atoms: u32,
    /// Shot clock timing.
    #[serde(default)]
    pub timing: TimingSection,
    /// How instructions become device events.
    #[serde(default)]
    pub sequence: SequenceSection,
    /// What a device fault does to the job and the backend.
    #[serde(default)]
    pub device_faults: DeviceFaultSection,
    /// The backend's devices (names unique).
    #[serde(default = "default_devices")]
    pub devices: Vec<DeviceSection>,
}

fn default_version() -> String {
    "0.1.0".to_owned()
}
fn default_max_shots() -> u32 {
    1_000_000
}
fn default_max_experiments() -> u32 {
    1000
}
fn default_max_atoms() -> u32 {
    500
}

/// The five simulated devices the default `sequence` refers to.
pub fn default_devices() -> Vec<DeviceSection> {
    let dev = |name: &str, driver, clock_period_ns| DeviceSection {
        name: name.to_owned(),
        driver,
        clock_period_ns,
        bridge: None,
        settings: BTreeMap::new(),
    };
    vec![
        dev("mot", DeviceDriver::SimTtl, 10),
        dev("rf", DeviceDriver::SimDds, 1),
        dev("detuning", DeviceDriver::SimDds, 1),
        dev("interaction", DeviceDriver::SimDds, 1),
        dev("camera", DeviceDriver::SimCamera, 1000),
    ]
}

/// `timing`: how the shot clock plays timelines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingSection {
    /// Each shot starts this long after the clock decides to start it (<= 10 s).
    pub lead_ns: u64,
    /// Shot repetition period; 0 = back to back (<= 1 h).
    pub cycle_ns: u64,
    /// Lateness above this is an underflow (<= 1 s).
    pub slack_ns: u64,
    /// Sleep until deadline minus this margin, then spin (<= 1 s).
    pub sleep_margin_ns: u64,
    /// What an underflow does.
    pub underflow_policy: UnderflowPolicy,
    /// Capacity of the shot record ring between the shot clock and acquisition.
    pub shot_ring: u32,
    /// Capacity of the event (lateness) record ring.
    pub event_ring: u32,
    /// What a full shot ring does.
    pub overflow_policy: OverflowPolicy,
    /// Spin through shots whose lead + length is at most this, never sleeping inside them (0 = never;
    /// <= 100 ms). With real time granted the clock rests between such shots.
    pub spin_shots_up_to_ns: u64,
    /// Opt-in real-time scheduling of the shot clock thread.
    pub realtime: RealtimeSection,
}

impl Default for TimingSection {
    fn default() -> Self {
        Self {
            lead_ns: 200_000,
            cycle_ns: 0,
            slack_ns: 100_000,
            sleep_margin_ns: 50_000,
            underflow_policy: UnderflowPolicy::Record,
            shot_ring: 4096,
            event_ring: 65_536,
            overflow_policy: OverflowPolicy::Fail,
            spin_shots_up_to_ns: 2_000_000,
            realtime: RealtimeSection::default(),
        }
    }
}

/// `timing.realtime`: `SCHED_FIFO`, core pinning and `mlock` of the shot clock thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeSection {
    /// Request real-time scheduling (off by default).
    pub enabled: bool,
    /// `SCHED_FIFO` priority (1..=99).
    pub priority: u8,
    /// Core to pin the shot clock thread to; none = not pinned.
    pub cpu: Option<usize>,
    /// Lock the shot buffers in memory.
    pub mlock: bool,
}

impl Default for RealtimeSection {
    fn default() -> Self {
        Self {
            enabled: false,
            priority: 80,
            cpu: None,
            mlock: false,
        }
    }
}

/// `sequence`: the timeline compiler's mapping of instructions to devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceSection {
    /// Dead time between consecutive instructions.
    pub gap_ns: u64,
    /// `load`: a loading pulse on a TTL or DDS device.
    pub load: LoadStep,
    /// `rlx(θ)`: an RF pulse of θ/(2π f) seconds on a DDS.
    pub rlx: RotationStep,
    /// `rlz(θ)`: a detuning pulse of θ/(2π f) seconds on a DDS.
    pub rlz: RateStep,
    /// `rlz2(θ)`: an interaction hold of θ/(2π f) seconds on a DDS.
    pub rlz2: RateStep,
    /// `measure`: a camera exposure.
    pub measure: MeasureStep,
}

impl Default for SequenceSection {
    fn default() -> Self {
        Self {
            gap_ns: 1000,
            load: LoadStep {
                device: "mot".to_owned(),
                duration_ns: 20_000,
            },
            rlx: RotationStep {
                device: "rf".to_owned(),
                rabi_frequency_hz: 10_000.0,
            },
            rlz: RateStep {
                device: "detuning".to_owned(),
                rate_hz: 10_000.0,
            },
            rlz2: RateStep {
                device: "interaction".to_owned(),
                rate_hz: 10_000.0,
            },
            measure: MeasureStep {
                device: "camera".to_owned(),
                exposure_ns: 10_000,
            },
        }
    }
}

/// `sequence.load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStep {
    /// Device that plays the pulse (driver `sim_ttl` or `sim_dds`).
    pub device: String,
    /// Length of the loading pulse.
    pub duration_ns: u64,
}

/// `sequence.rlx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationStep {
    /// Device that plays the pulse (driver `sim_dds`).
    pub device: String,
    /// Rabi frequency in Hz (finite, > 0).
    pub rabi_frequency_hz: f64,
}

/// `sequence.rlz` and `sequence.rlz2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    /// Device that plays the pulse (driver `sim_dds`).
    pub device: String,
    /// Phase rate in Hz (finite, > 0).
    pub rate_hz: f64,
}

/// `sequence.measure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureStep {
    /// Camera that takes the picture (driver `sim_camera`).
    pub device: String,
    /// Exposure time.
    pub exposure_ns: u64,
}

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// Unique name within the backend.
    pub name: String,
    /// Driver of the device.
    pub driver: DeviceDriver,
    /// Clock period of the device; event times are rounded to it (1..=1_000_000).
    pub clock_period_ns: u64,
    /// Driver `bridge` only: where the timing card is and how to talk to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeSection>,
    /// Drivers registered by an embedder only: their own settings (address, timeouts, ...), read by the
    /// driver's factory. The built-in drivers take none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, DriverSetting>,
}

/// One value of `devices[].settings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DriverSetting {
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    Text(String),
}

impl<'de> Deserialize<'de> for DriverSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = DriverSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, an integer, a number or a string")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(DriverSetting::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(DriverSetting::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(DriverSetting::Int).map_err(|_| {
                    E::custom(format!(
                        "integer {v} is out of range, allowed: {}..={}",
                        i64::MIN,
                        i64::MAX
                    ))
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(DriverSetting::Float(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DriverSetting::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// How a bridge device reaches its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeTransport {
    /// TCP to `address` (default).
    #[default]
    Tcp,
    /// A serial line at `path` with `baud`.
    Serial,
}

/// What the card's outputs are, for the sequence and the setpoint checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeRole {
    /// Digital outputs and timed pulses (setpoints 0..=1e6), like `sim_ttl`.
    Ttl,
    /// RF channel: timed pulses with an amplitude in 0..=1, like `sim_dds` (default).
    #[default]
    Dds,
}

/// `backends[].devices[].bridge`: a timing card behind the firmware bridge (docs/firmware-bridge.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeSection {
    /// `tcp` or `serial`.
    pub transport: BridgeTransport,
    /// TCP: `host:port` of the card.
    pub address: String,
    /// Serial: device path (`/dev/ttyACM0`).
    pub path: String,
    /// Serial: line speed.
    pub baud: u32,
    /// What the outputs are: `ttl` or `dds`.
    pub role: BridgeRole,
    /// Setpoint × this = the 32-bit `value` sent to the card.
    pub value_scale: f64,
    /// How long programming waits for the card to be connected.
    pub connect_timeout_ms: u64,
    /// How long a command (and the report of a shot) may take.
    pub reply_timeout_ms: u64,
    /// Heartbeat period (watchdog feed and clock estimate).
    pub heartbeat_ms: u64,
    /// Link retransmission timeout.
    pub retransmit_ms: u64,
    /// Retransmissions before the link is declared down.
    pub max_retries: u8,
    /// Frames in flight (host send window).
    pub window: u16,
    /// Longest wait between reconnection attempts (backoff doubles from 50 ms).
    pub backoff_max_ms: u64,
}

impl Default for BridgeSection {
    fn default() -> Self {
        Self {
            transport: BridgeTransport::Tcp,
            address: String::new(),
            path: String::new(),
            baud: 115_200,
            role: BridgeRole::Dds,
            value_scale: 1_000_000.0,
            connect_timeout_ms: 3_000,
            reply_timeout_ms: 1_000,
            heartbeat_ms: 20,
            retransmit_ms: 50,
            max_retries: 10,
            window: 8,
            backoff_max_ms: 2_000,
        }
    }
}

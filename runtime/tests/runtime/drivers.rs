//! Device drivers registered from outside the built-in ones through the embedding API
//! (`Runtime::builder().driver(..)`): configured by name, used on the shot path, driven to their safe state.

use std::f64::consts::PI;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;
use shotline::config::{parse_str_with, ConfigError, DriverSetting, OutputKind, SIM_YAML};
use shotline::hal::sim::{SimDevice, SimDriver};
use shotline::hal::{
    Device, DeviceError, DeviceInfo, DeviceState, DeviceTimeline, Event, Readout, ShotContext,
};
use shotline::{BuiltDevice, DriverContext, DriverFactory, Runtime, StartOptions};

use crate::common::*;

/// What the test driver counts, shared between the test and every device the factory builds.
#[derive(Default)]
struct Counters {
    applies: AtomicU64,
    programmed_events: AtomicU64,
    safe_states: AtomicU64,
    /// `DeviceState` after the last call, as its index in [`STATES`].
    state: AtomicU64,
    /// The device's `settings` as the factory saw them.
    settings: parking_lot::Mutex<Vec<(String, DriverSetting)>>,
}

const STATES: [DeviceState; 6] = [
    DeviceState::Manual,
    DeviceState::Programming,
    DeviceState::Programmed,
    DeviceState::Armed,
    DeviceState::Running,
    DeviceState::Fault,
];

/// `counting_dds`: a simulated DDS that counts what the runtime asks of it.
struct CountingDds {
    inner: SimDevice,
    counters: Arc<Counters>,
}

impl CountingDds {
    fn note_state(&self) {
        let i = STATES
            .iter()
            .position(|s| *s == self.inner.state())
            .unwrap_or(5);
        self.counters.state.store(i as u64, Ordering::Relaxed);
    }
}

impl Device for CountingDds {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        let r = self.inner.program(timeline);
        self.counters
            .programmed_events
            .store(timeline.events.len() as u64, Ordering::Relaxed);
        self.note_state();
        r
    }
    fn arm(&mut self) -> Result<(), DeviceError> {
        let r = self.inner.arm();
        self.note_state();
        r
    }
    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError> {
        self.inner.start_shot(shot)
    }
    fn apply(
        &mut self,
        index: usize,
        event: &Event,
        shot: &ShotContext,
    ) -> Result<(), DeviceError> {
        // Shot path: an atomic add, nothing else.
        self.counters.applies.fetch_add(1, Ordering::Relaxed);
        self.inner.apply(index, event, shot)
    }
    fn end_shot(&mut self, shot: &ShotContext, out: &mut Readout) -> Result<(), DeviceError> {
        self.inner.end_shot(shot, out)
    }
    fn safe_state(&mut self) -> Result<(), DeviceError> {
        let r = self.inner.safe_state();
        self.counters.safe_states.fetch_add(1, Ordering::Relaxed);
        self.note_state();
        r
    }
    fn disarm(&mut self) -> Result<(), DeviceError> {
        let r = self.inner.disarm();
        self.note_state();
        r
    }
    fn state(&self) -> DeviceState {
        self.inner.state()
    }
}

struct CountingFactory(Arc<Counters>);

impl DriverFactory for CountingFactory {
    fn name(&self) -> &str {
        "counting_dds"
    }
    fn outputs(&self) -> Vec<OutputKind> {
        vec![OutputKind::Dds]
    }
    fn build(&self, ctx: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError> {
        let d = ctx.device;
        *self.0.settings.lock() = d
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let inner = SimDevice::new(
            &d.name,
            SimDriver::Dds,
            d.clock_period_ns,
            ctx.index,
            ctx.world,
            ctx.coupling,
        );
        Ok(BuiltDevice::new(Box::new(CountingDds {
            inner,
            counters: self.0.clone(),
        })))
    }
}

const RF_SIM: &str = "{ name: rf, driver: sim_dds,";

#[tokio::test]
async fn a_driver_registered_by_the_embedder_plays_the_shots_and_ends_safe() {
    let counters = Arc::new(Counters::default());
    let dir = tempfile::tempdir().unwrap();
    let builder = Runtime::builder()
        .options(StartOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .driver(Arc::new(CountingFactory(counters.clone())))
        .expect("a new name registers");
    assert!(SIM_YAML.contains(RF_SIM));
    let text = SIM_YAML.replacen(
        RF_SIM,
        "{ name: rf, driver: counting_dds, settings: { label: lab-rf, retries: 3, gain: 0.5, verbose: true },",
        1,
    );
    let config = parse_str_with(&text, "sim.yaml", &builder.catalog()).expect("config is valid");
    let rt = builder
        .start_with(TestEngine::sqlite().config(config), "sha256:test".into())
        .await
        .expect("runtime starts");
    let shots = 20;
    let result = run_ok(
        &rt,
        &job1(
            json!([
                ["load", [0], [37]],
                ["rlx", [0], [PI]],
                ["measure", [0], []]
            ]),
            shots,
            Some(7),
        ),
    )
    .await;
    // The factory got the device's own settings, typed.
    assert_eq!(
        *counters.settings.lock(),
        vec![
            ("gain".to_owned(), DriverSetting::Float(0.5)),
            ("label".to_owned(), DriverSetting::Text("lab-rf".into())),
            ("retries".to_owned(), DriverSetting::Int(3)),
            ("verbose".to_owned(), DriverSetting::Bool(true)),
        ]
    );
    // The rotation went through the registered driver: every atom flipped on every shot.
    assert_eq!(memory(&result, 0), vec![37; shots as usize]);
    let per_shot = counters.programmed_events.load(Ordering::Relaxed);
    assert!(per_shot >= 1, "rf was programmed with no events");
    assert_eq!(
        counters.applies.load(Ordering::Relaxed),
        per_shot * u64::from(shots),
        "apply is called once per event per shot"
    );
    // An emergency stop drives it to its safe state explicitly, and so does the shutdown.
    let before = counters.safe_states.load(Ordering::Relaxed);
    rt.estop().await.expect("estop");
    let after_estop = counters.safe_states.load(Ordering::Relaxed);
    assert!(after_estop > before, "estop did not call safe_state");
    rt.shutdown().await.unwrap();
    assert!(
        counters.safe_states.load(Ordering::Relaxed) > after_estop,
        "shutdown did not call safe_state"
    );
    assert_eq!(
        STATES[counters.state.load(Ordering::Relaxed) as usize],
        DeviceState::Manual
    );
}

#[test]
fn validation_names_the_registered_drivers() {
    let counters = Arc::new(Counters::default());
    let builder = Runtime::builder()
        .driver(Arc::new(CountingFactory(counters.clone())))
        .unwrap();
    // An unknown name lists the built-in drivers and the registered one.
    let text = SIM_YAML.replacen(RF_SIM, "{ name: rf, driver: laser_x,", 1);
    let Err(ConfigError::Invalid { issues, .. }) =
        parse_str_with(&text, "sim.yaml", &builder.catalog())
    else {
        panic!("an unknown driver must be refused");
    };
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].path, "backends[0].devices[1].driver");
    assert!(issues[0].message.contains("\"laser_x\""), "{issues:?}");
    assert!(
        issues[0]
            .message
            .contains("sim_ttl, sim_dds, sim_camera, bridge, counting_dds"),
        "{issues:?}"
    );
    // Without the registration (what `shotline check-config` knows) the same name is refused.
    let text = SIM_YAML.replacen(RF_SIM, "{ name: rf, driver: counting_dds,", 1);
    let err = shotline::config::parse_str(&text, "sim.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("backends[0].devices[1].driver"), "{err}");
    assert!(
        err.contains("sim_ttl, sim_dds, sim_camera, bridge"),
        "{err}"
    );
    // A registered driver whose devices cannot rotate is refused as the rlx device, naming who can.
    let camera_like = shotline::config::DriverCatalog::builtin()
        .with(shotline::config::DriverSpec {
            name: "photodiode".into(),
            outputs: vec![OutputKind::Camera],
        })
        .unwrap();
    let text = SIM_YAML.replacen(RF_SIM, "{ name: rf, driver: photodiode,", 1);
    let Err(ConfigError::Invalid { issues, .. }) = parse_str_with(&text, "sim.yaml", &camera_like)
    else {
        panic!("a photodiode cannot play rlx");
    };
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].path, "backends[0].sequence.rlx.device");
    assert!(
        issues[0].message.contains("driver photodiode"),
        "{issues:?}"
    );
    // Settings belong to registered drivers; a built-in one refuses them, naming the field.
    let text = SIM_YAML.replacen(
        RF_SIM,
        "{ name: rf, driver: sim_dds, settings: { gain: 1 },",
        1,
    );
    let err = shotline::config::parse_str(&text, "sim.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("backends[0].devices[1].settings"), "{err}");
    assert!(err.contains("driver sim_dds takes no settings"), "{err}");
    // Names are unique: a built-in name cannot be taken over.
    struct Impostor;
    impl DriverFactory for Impostor {
        fn name(&self) -> &str {
            "sim_dds"
        }
        fn build(&self, _: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError> {
            unreachable!("never registered")
        }
    }
    let err = Runtime::builder().driver(Arc::new(Impostor)).unwrap_err();
    assert!(err.to_string().contains("\"sim_dds\""), "{err}");
}

/// A factory that refuses its device's settings.
struct Picky;

impl DriverFactory for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    fn build(&self, ctx: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError> {
        Err(DeviceError::Fault {
            device: ctx.device.name.clone(),
            reason: "settings.address: missing (expected host:port)".into(),
        })
    }
}

#[tokio::test]
async fn a_factory_refusing_its_settings_stops_the_start_naming_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let builder = Runtime::builder()
        .options(StartOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .driver(Arc::new(Picky))
        .unwrap();
    // A device no sequence step uses.
    let text = SIM_YAML.replacen(
        RF_SIM,
        "{ name: scope, driver: picky, clock_period_ns: 1 }\n      - { name: rf, driver: sim_dds,",
        1,
    );
    let config = parse_str_with(&text, "sim.yaml", &builder.catalog()).expect("config is valid");
    let started = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        builder.start_with(TestEngine::sqlite().config(config), "sha256:test".into()),
    )
    .await
    .expect("the start does not hang");
    let Err(err) = started else {
        panic!("a backend whose device cannot be built must not start");
    };
    let err = err.to_string();
    assert!(
        err.contains("scope") && err.contains("settings.address"),
        "{err}"
    );
}

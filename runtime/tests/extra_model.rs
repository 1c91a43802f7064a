//! A lab's own backend model, registered from outside shotline's crates through the embedding API
//! (`Runtime::builder().model(..)`), runs jobs through the real shot path: its compiler makes the timelines
//! the simulated devices play, its analysis makes the memory strings. Only public API is used here.

use std::f64::consts::PI;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shotline::config::{
    parse_str, parse_str_with_models, BackendSection, Config, ModelName, SIM_YAML,
};
use shotline::models::{
    singlequdit, BackendModel, CalibrationParam, CalibrationValue, CompileError,
};
use shotline::protocol::{
    BackendConfig, Experiment, GateSpec, InstructionKind, InstructionSpec, JobStatus,
};
use shotline::{Runtime, StartOptions, SubmitOptions};
use shotline_hal::shot_clock::ShotRecord;
use shotline_hal::sim::{Coupling, SimWorld};
use shotline_hal::timeline::{Action, DeviceTimeline, Event};

/// `flipper`: one atom, `flip` is a π pulse on the RF device, `measure` images it; memory "up"/"down".
struct Flipper;

fn spec(name: &str, kind: InstructionKind, description: &str) -> InstructionSpec {
    InstructionSpec {
        name: name.into(),
        kind,
        params: vec![],
        coupling_map: vec![vec![0]],
        description: description.into(),
    }
}

impl BackendModel for Flipper {
    fn name(&self) -> &str {
        "flipper"
    }

    fn summary(&self) -> &str {
        "one atom flipped by pi pulses"
    }

    fn check_section(&self, section: &BackendSection) -> Vec<(String, String)> {
        let rf = &section.sequence.rlx.device;
        if section.devices.iter().any(|d| &d.name == rf) {
            vec![]
        } else {
            vec![(
                "sequence.rlx.device".into(),
                format!("flipper needs the RF device \"{rf}\""),
            )]
        }
    }

    fn publish(&self, section: &BackendSection) -> BackendConfig {
        let mut config = singlequdit::publish(section);
        config.instructions = vec![
            spec("flip", InstructionKind::Gate, "A pi pulse"),
            spec("measure", InstructionKind::Measure, "Images the atom"),
        ];
        config.supported_instructions = vec!["flip".into(), "measure".into()];
        config.gates = vec![GateSpec::from(&config.instructions[0])];
        config
    }

    fn compile(
        &self,
        section: &BackendSection,
        experiment: &Experiment,
    ) -> Result<Vec<DeviceTimeline>, CompileError> {
        let seq = &section.sequence;
        let mut timelines: Vec<DeviceTimeline> = section
            .devices
            .iter()
            .map(|d| DeviceTimeline {
                device: d.name.clone(),
                events: vec![],
            })
            .collect();
        // A π pulse at the configured Rabi frequency, whole microseconds.
        let pi_ns =
            ((PI / (2.0 * PI * seq.rlx.rabi_frequency_hz)) * 1e9 / 1000.0).round() as u64 * 1000;
        let mut t = 0;
        for (index, ins) in experiment.instructions.iter().enumerate() {
            let (device, action) = match ins.name.as_str() {
                "flip" => (
                    &seq.rlx.device,
                    Action::Pulse {
                        duration_ns: pi_ns,
                        setpoint: 1.0,
                    },
                ),
                "measure" => (
                    &seq.measure.device,
                    Action::Acquire {
                        exposure_ns: seq.measure.exposure_ns,
                    },
                ),
                other => {
                    return Err(CompileError::Unknown {
                        index,
                        name: other.into(),
                    })
                }
            };
            let Some(tl) = timelines.iter_mut().find(|tl| &tl.device == device) else {
                return Err(CompileError::Refused {
                    index,
                    reason: format!("no device {device}"),
                });
            };
            tl.events.push(Event {
                t_ns: t,
                channel: 0,
                action,
            });
            t += action.duration_ns() + 1000;
        }
        Ok(timelines)
    }

    fn sim_world(&self, _section: &BackendSection) -> SimWorld {
        SimWorld::new(1)
    }

    fn sim_coupling(&self, section: &BackendSection, device: &str) -> Coupling {
        singlequdit::coupling(section, device)
    }

    fn memory(&self, record: &ShotRecord) -> Option<String> {
        let v = record.readout.iter().next()?.value;
        Some(if v == 1 { "up" } else { "down" }.into())
    }

    fn calibration(&self, section: &BackendSection) -> Vec<CalibrationParam> {
        vec![CalibrationParam {
            name: "rabi_frequency_hz",
            config_path: "sequence.rlx.rabi_frequency_hz",
            unit: "Hz",
            purpose: "length of the pi pulse of flip",
            value: CalibrationValue::Real(section.sequence.rlx.rabi_frequency_hz),
        }]
    }
}

/// `sim.yaml` plus a backend `lab` of model `flipper` (default sequence and devices), as a lab writes it.
fn flipper_yaml() -> String {
    format!("{SIM_YAML}  - name: lab\n    model: flipper\n")
}

fn flipper_config(models: &[&str]) -> Config {
    parse_str_with_models(&flipper_yaml(), "lab.yaml", models).expect("lab.yaml is valid")
}

#[test]
fn a_config_naming_a_model_parses_only_where_that_model_is_known() {
    // The plain parser knows the built-in models and names them, with the line of the offending key.
    let err = parse_str(&flipper_yaml(), "lab.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("backends[1].model")
            && err.contains("unknown model \"flipper\"; registered models: singlequdit"),
        "{err}"
    );
    let config = flipper_config(&["flipper", "singlequdit"]);
    assert_eq!(config.backends[1].model, ModelName::new("flipper"));
}

fn experiment(instructions: &[&str], shots: u32) -> serde_json::Value {
    json!({
        "instructions": instructions.iter().map(|n| json!([n, [0], []])).collect::<Vec<_>>(),
        "num_wires": 1,
        "shots": shots,
        "wire_order": "sequential",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_model_is_refused_naming_the_registered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Runtime::start_with(
        flipper_config(&["flipper", "singlequdit"]),
        "sha256:test".into(),
        StartOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
    )
    .await;
    let Err(e) = refused else {
        panic!("started a backend whose model nobody registered")
    };
    let text = e.to_string();
    assert!(
        text.contains("backends[1].model")
            && text.contains("\"flipper\"")
            && text.contains("registered models: singlequdit"),
        "{text}"
    );
    // A second model of an existing name is refused too.
    let taken = Runtime::builder().model(Arc::new(singlequdit::SingleQudit));
    assert!(taken.is_err(), "two models named singlequdit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_from_another_crate_runs_jobs_through_the_shot_path() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["flipper", "singlequdit"];
    let builder = Runtime::builder()
        .options(StartOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .model(Arc::new(Flipper))
        .expect("flipper registers");
    assert_eq!(builder.models().names(), names);
    let rt = builder
        .start_with(flipper_config(&names), "sha256:test".into())
        .await
        .expect("runtime starts");

    // The published config is the model's catalogue.
    let (published, _) = rt.service().backend("lab").await.expect("backend lab");
    assert_eq!(published.supported_instructions, vec!["flip", "measure"]);
    // The model's schema: rlx is not an instruction of flipper, flip is not one of singlequdit.
    let job = json!({ "e": experiment(&["rlx", "measure"], 1) });
    assert!(rt
        .submit("lab", &job, SubmitOptions::default())
        .await
        .is_err());
    let job = json!({ "e": experiment(&["flip", "measure"], 1) });
    assert!(rt
        .submit("singlequdit", &job, SubmitOptions::default())
        .await
        .is_err());

    // One flip: the atom is up on every shot; two: down again (the world integrates the compiled pulses).
    let job = json!({
        "once": experiment(&["flip", "measure"], 20),
        "twice": experiment(&["flip", "flip", "measure"], 20),
    });
    let submitted = rt
        .submit("lab", &job, SubmitOptions::default())
        .await
        .expect("flipper job accepted");
    let status = rt
        .wait(&submitted.job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(status.status, JobStatus::Done, "{status:?}");
    let result = rt.result(&submitted.job_id).await.unwrap();
    assert_eq!(result.results.len(), 2);
    assert_eq!(result.results[0].data.memory, vec!["up"; 20]);
    assert_eq!(result.results[1].data.memory, vec!["down"; 20]);
    rt.shutdown().await.unwrap();
}

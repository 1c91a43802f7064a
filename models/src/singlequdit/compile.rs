//! The singlequdit timeline compiler: an experiment's instructions become timed events on the backend's
//! devices, with every time and duration rounded to the clock period of the device that plays it.
//!
//! `load(n)` holds the MOT loading pulse (setpoint n atoms) for `sequence.load.duration_ns`; `rlx(θ)` is an RF
//! pulse of θ/(2π f_rabi); `rlz(θ)` and `rlz2(θ)` are detuning and interaction pulses of θ/(2π f); the first
//! `measure` is a camera exposure; `barrier` adds nothing. Instructions follow one another separated by
//! `sequence.gap_ns`; each event starts on the next tick of its device's clock. Every device of the backend
//! gets a timeline (possibly empty), so a device never replays an earlier experiment's program.

use std::f64::consts::PI;

use shotline_config::{BackendSection, DeviceSection};
use shotline_hal::timeline::{round_to_period, Action, DeviceTimeline, Event};
use shotline_protocol::Experiment;

use crate::CompileError;

/// (sequence step, device, duration in ns before rounding, the action for a rounded duration and the parameter).
type Step<'a> = (&'static str, &'a str, f64, fn(u64, f64) -> Action);

fn device_index(
    devices: &[DeviceSection],
    step: &'static str,
    name: &str,
) -> Result<usize, CompileError> {
    devices
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| CompileError::NoDevice {
            step,
            device: name.to_string(),
        })
}

fn align_up(t: u64, period: u64) -> u64 {
    let p = period.max(1);
    t.div_ceil(p).saturating_mul(p)
}

/// Compiles `experiment` into one timeline per configured device (in configuration order).
pub fn compile(
    section: &BackendSection,
    experiment: &Experiment,
) -> Result<Vec<DeviceTimeline>, CompileError> {
    let devices = &section.devices;
    let seq = &section.sequence;
    let mut timelines: Vec<DeviceTimeline> = devices
        .iter()
        .map(|d| DeviceTimeline {
            device: d.name.clone(),
            events: Vec::new(),
        })
        .collect();
    let mut t: u64 = 0;
    let mut measured = false;
    for (index, ins) in experiment.instructions.iter().enumerate() {
        let param = ins.params.first().copied().unwrap_or(0.0);
        let (step, device, duration_ns, action): Step<'_> = match ins.name.as_str() {
            "load" => (
                "load",
                &seq.load.device,
                seq.load.duration_ns as f64,
                |d, p| Action::Pulse {
                    duration_ns: d,
                    setpoint: p,
                },
            ),
            "rlx" => (
                "rlx",
                &seq.rlx.device,
                param / (2.0 * PI * seq.rlx.rabi_frequency_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "rlz" => (
                "rlz",
                &seq.rlz.device,
                param / (2.0 * PI * seq.rlz.rate_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "rlz2" => (
                "rlz2",
                &seq.rlz2.device,
                param / (2.0 * PI * seq.rlz2.rate_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "measure" if !measured => {
                measured = true;
                (
                    "measure",
                    &seq.measure.device,
                    seq.measure.exposure_ns as f64,
                    |d, _| Action::Acquire { exposure_ns: d },
                )
            }
            "measure" | "barrier" => continue,
            other => {
                return Err(CompileError::Unknown {
                    index,
                    name: other.to_string(),
                })
            }
        };
        let d = device_index(devices, step, device)?;
        let period = devices[d].clock_period_ns.max(1);
        let duration = round_to_period(duration_ns, period).ok_or(CompileError::BadDuration {
            index,
            value: param,
        })?;
        if duration == 0 {
            // A zero angle is no pulse at all.
            continue;
        }
        let start = align_up(t, period);
        timelines[d].events.push(Event {
            t_ns: start,
            channel: 0,
            action: action(duration, param),
        });
        t = start.saturating_add(duration).saturating_add(seq.gap_ns);
    }
    for (tl, dev) in timelines.iter().zip(devices) {
        tl.validate(dev.clock_period_ns.max(1), 1)?;
    }
    Ok(timelines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shot_length_ns;
    use shotline_config::{parse_str, SIM_YAML};
    use shotline_protocol::{Instruction, WireOrder};

    fn section() -> BackendSection {
        parse_str(SIM_YAML, "sim.yaml").unwrap().backends.remove(0)
    }

    fn exp(instructions: &[(&str, &[f64])]) -> Experiment {
        Experiment {
            instructions: instructions
                .iter()
                .map(|(n, p)| Instruction::new(*n, vec![0], p.to_vec()))
                .collect(),
            num_wires: 1,
            shots: 1,
            wire_order: WireOrder::Sequential,
            seed: None,
        }
    }

    fn events(tls: &[DeviceTimeline], device: &str) -> Vec<Event> {
        tls.iter()
            .find(|t| t.device == device)
            .unwrap()
            .events
            .clone()
    }

    #[test]
    fn every_instruction_becomes_timed_events_on_its_device() {
        let s = section();
        let tls = compile(
            &s,
            &exp(&[
                ("load", &[50.0]),
                ("rlx", &[PI]),
                ("rlz", &[PI / 2.0]),
                ("rlz2", &[0.1]),
                ("barrier", &[]),
                ("measure", &[]),
                ("measure", &[]),
            ]),
        )
        .unwrap();
        assert_eq!(tls.len(), s.devices.len(), "every device gets a timeline");
        // load: MOT pulse of the configured 20 µs, setpoint = atoms.
        assert_eq!(
            events(&tls, "mot"),
            vec![Event {
                t_ns: 0,
                channel: 0,
                action: Action::Pulse {
                    duration_ns: 20_000,
                    setpoint: 50.0
                }
            }]
        );
        // rlx(pi) at f = 10 kHz: 50 µs, after load + 1 µs gap.
        assert_eq!(
            events(&tls, "rf"),
            vec![Event {
                t_ns: 21_000,
                channel: 0,
                action: Action::Pulse {
                    duration_ns: 50_000,
                    setpoint: 1.0
                }
            }]
        );
        let rlz = events(&tls, "detuning");
        assert_eq!(rlz[0].t_ns, 72_000);
        assert_eq!(rlz[0].action.duration_ns(), 25_000);
        let rlz2 = events(&tls, "interaction");
        assert_eq!(rlz2[0].t_ns, 98_000);
        // 0.1 / (2 pi 10 kHz) = 1591.549... ns -> 1592 ns on the 1 ns DDS clock.
        assert_eq!(rlz2[0].action.duration_ns(), 1_592);
        // measure: one camera exposure, starting on the camera's 1 µs clock; the second measure adds nothing.
        let cam = events(&tls, "camera");
        assert_eq!(cam.len(), 1);
        assert_eq!(cam[0].t_ns, 101_000);
        assert_eq!(
            cam[0].action,
            Action::Acquire {
                exposure_ns: 10_000
            }
        );
        assert_eq!(shot_length_ns(&tls), 111_000);
    }

    #[test]
    fn durations_are_rounded_to_the_device_clock_and_a_zero_angle_is_no_pulse() {
        let mut s = section();
        for d in &mut s.devices {
            if d.name == "rf" {
                d.clock_period_ns = 100;
            }
        }
        let tls = compile(
            &s,
            &exp(&[("rlx", &[0.01]), ("rlx", &[0.0]), ("measure", &[])]),
        )
        .unwrap();
        let rf = events(&tls, "rf");
        assert_eq!(rf.len(), 1, "rlx(0) must not produce a pulse");
        // 0.01 / (2 pi 10 kHz) = 159.15 ns -> 200 ns on a 100 ns clock.
        assert_eq!(rf[0].action.duration_ns(), 200);
        assert_eq!(rf[0].t_ns % 100, 0);
    }

    #[test]
    fn a_missing_device_or_an_unknown_instruction_is_a_clear_error() {
        let mut s = section();
        s.sequence.rlx.device = "nope".into();
        assert_eq!(
            compile(&s, &exp(&[("rlx", &[1.0])])),
            Err(CompileError::NoDevice {
                step: "rlx",
                device: "nope".into()
            })
        );
        let s = section();
        assert!(matches!(
            compile(&s, &exp(&[("swap", &[])])),
            Err(CompileError::Unknown { index: 0, .. })
        ));
    }
}

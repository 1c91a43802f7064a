//! Admission of a validated job beyond its schema: the apparatus time it plans (shots x the compiled shot
//! duration, from the same compiler and shot period the execution uses) and an upper bound of its result's
//! encoded size (a result no client can read is refused before it is run).

use std::collections::BTreeMap;

use shotline_config::{BackendSection, DeviceDriver, LimitsSection};
use shotline_protocol::wire::Response;
use shotline_protocol::{
    encode_frame, BackendConfig, ErrorCode, ExperimentData, ExperimentHeader, ExperimentResult,
    Job, JobLimits, JobResult, JobStatus, LatenessStamp, TimingSummary, ValidationError,
    ValidationReport,
};

use shotline_models::{shot_period_ns, BackendModel, CompileError};

/// The size limits of a submission from the `limits` configuration.
pub fn job_limits(l: &LimitsSection) -> JobLimits {
    let size = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
    JobLimits {
        max_experiment_name_bytes: size(l.max_experiment_name_bytes),
        max_shots_per_job: l.max_shots_per_job,
        max_tags: size(l.max_tags),
        max_tag_bytes: size(l.max_tag_bytes),
        max_qobj_id_bytes: size(l.max_qobj_id_bytes),
    }
}

fn report(error: ValidationError) -> ValidationReport {
    let mut r = ValidationReport::default();
    r.push(error);
    r
}

fn secs(ns: u128) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// The apparatus time `job` takes on `section`, in ns: for each experiment its shots x the compiled shot
/// period. A pulse too long to be played is reported at its instruction (`JOB_TOO_LONG`); other compile
/// errors (a device missing from the configuration) are left to the execution, which reports them.
pub fn planned_duration_ns(
    model: &dyn BackendModel,
    section: &BackendSection,
    job: &Job,
) -> Result<u128, ValidationReport> {
    let mut total: u128 = 0;
    for (name, experiment) in &job.experiments {
        let per_shot = match model.compile(section, experiment) {
            Ok(timelines) => shot_period_ns(&section.timing, &timelines),
            Err(CompileError::BadDuration { index, value }) => {
                return Err(report(ValidationError {
                    code: ErrorCode::JobTooLong,
                    path: format!("{name}.instructions[{index}].params[0]"),
                    message: format!(
                        "parameter {value} gives a pulse longer than the device can play"
                    ),
                    value: Some(value.to_string()),
                    limit: None,
                }))
            }
            Err(_) => continue,
        };
        total = total.saturating_add(u128::from(per_shot) * u128::from(experiment.shots));
    }
    Ok(total)
}

/// Refuses `job` when it would take the apparatus longer than `limits.max_job_duration_s`.
pub fn check_duration(
    model: &dyn BackendModel,
    section: &BackendSection,
    job: &Job,
    max_job_duration_s: u64,
) -> Result<(), ValidationReport> {
    let planned = planned_duration_ns(model, section, job)?;
    let limit = u128::from(max_job_duration_s) * 1_000_000_000;
    if planned <= limit {
        return Ok(());
    }
    Err(report(ValidationError {
        code: ErrorCode::JobTooLong,
        path: "job".into(),
        message: format!(
            "the job would take {} of apparatus time (shots x compiled shot duration, summed over its \
             experiments); the limit is {max_job_duration_s} s (limits.max_job_duration_s)",
            secs(planned)
        ),
        value: Some(secs(planned)),
        limit: Some(format!("{max_job_duration_s} s")),
    }))
}

/// Bytes msgpack spends on a string of `len` bytes.
fn str_bytes(len: u64) -> u64 {
    let header = match len {
        0..=31 => 1,
        32..=255 => 2,
        256..=65_535 => 3,
        _ => 5,
    };
    header + len
}

/// Bytes of a msgpack uint (at most 9) and of an array or map header (at most 5).
const UINT_MAX_BYTES: u64 = 9;
const CONTAINER_HEADER_BYTES: u64 = 5;

/// Decimal digits of `v` (at least one).
fn digits(v: u64) -> u64 {
    v.checked_ilog10().map_or(1, |d| u64::from(d) + 1)
}

/// What one shot's memory string can hold on `section` (see `analysis::memory_of`: the read-out values of
/// the shot, space-separated): every simulated camera reports the outcome (an atom number, at most
/// `max_atoms`); a timing card measuring reports one acquisition sum (any `i64`), and so may every device of
/// a driver an embedder registered. Returns the longest
/// memory string in bytes and how many distinct strings there can be per experiment at most (`None`:
/// unbounded but for the shots).
pub fn memory_bound(section: &BackendSection) -> (u64, Option<u64>) {
    let cameras = section
        .devices
        .iter()
        .filter(|d| d.driver == DeviceDriver::SimCamera)
        .count() as u64;
    let card_measures = section
        .devices
        .iter()
        .any(|d| d.driver == DeviceDriver::Bridge && d.name == section.sequence.measure.device);
    // A driver registered by an embedder may read out anything: each of its devices counts as one `i64`.
    let others = section
        .devices
        .iter()
        .filter(|d| !shotline_config::BUILTIN_DRIVERS.contains(&d.driver.as_str()))
        .count() as u64;
    let unbounded = u64::from(card_measures) + others;
    let values = (cameras + unbounded).clamp(1, 8);
    let width = cameras * digits(u64::from(section.max_atoms)) + unbounded * 20 + (values - 1);
    let distinct = (unbounded == 0).then(|| u64::from(section.max_atoms) + 1);
    (width.max(1), distinct)
}

/// An upper bound of the bytes of the `result` answer of `job` (the msgpack body of the response frame):
/// the answer with every field the job fixes (names, instructions, `qobj_id`) and the largest value of
/// every field the run fills (timing, seed, execution id), plus for each experiment its shots x the longest
/// memory string and the largest histogram.
pub fn result_bound_bytes(
    published: &BackendConfig,
    section: &BackendSection,
    job: &Job,
    qobj_id: Option<&str>,
) -> u64 {
    let timing = TimingSummary {
        shots: u64::MAX,
        events: u64::MAX,
        p50_ns: i64::MIN,
        p99_ns: i64::MIN,
        p999_ns: i64::MIN,
        max_ns: i64::MIN,
        underflows: u64::MAX,
        lost_shots: u64::MAX,
        lost_events: u64::MAX,
        stamped: LatenessStamp::DeviceApplied,
    };
    let results = job
        .experiments
        .iter()
        .map(|(name, e)| ExperimentResult {
            header: ExperimentHeader { name: name.clone() },
            shots: u32::MAX,
            success: true,
            data: ExperimentData {
                memory: Vec::new(),
                instructions: Some(e.instructions.clone()),
                counts: BTreeMap::new(),
            },
            timing: Some(timing.clone()),
            seed: Some(u64::MAX),
        })
        .collect();
    let skeleton = Response::Result {
        result: JobResult {
            backend_name: published.backend_name.clone(),
            display_name: published.display_name.clone(),
            backend_version: published.backend_version.clone(),
            job_id: "f".repeat(32),
            qobj_id: qobj_id.map(str::to_string),
            success: true,
            status: JobStatus::Done,
            header: BTreeMap::new(),
            results,
            execution_id: Some(format!("99999999-{}", u64::MAX)),
        },
    };
    let fixed = encode_frame(&skeleton, usize::MAX).map_or(u64::MAX, |f| {
        f.len() as u64 - shotline_protocol::FRAME_HEADER_LEN as u64
    });
    let (width, distinct) = memory_bound(section);
    let per_shot = str_bytes(width);
    let per_count = str_bytes(width) + UINT_MAX_BYTES;
    job.experiments.iter().fold(fixed, |acc, (_, e)| {
        let shots = u64::from(e.shots);
        let keys = distinct.map_or(shots, |d| d.min(shots));
        acc.saturating_add(
            // the memory array (its empty header is in `fixed`), then `counts` (skipped when empty)
            CONTAINER_HEADER_BYTES
                + shots.saturating_mul(per_shot)
                + str_bytes("counts".len() as u64)
                + CONTAINER_HEADER_BYTES
                + keys.saturating_mul(per_count),
        )
    })
}

/// Refuses `job` when its result could exceed `max_response_bytes`, the largest answer a client reads.
pub fn check_result_size(
    published: &BackendConfig,
    section: &BackendSection,
    job: &Job,
    qobj_id: Option<&str>,
    max_response_bytes: u64,
) -> Result<(), ValidationReport> {
    let bound = result_bound_bytes(published, section, job, qobj_id);
    if bound <= max_response_bytes {
        return Ok(());
    }
    Err(report(ValidationError {
        code: ErrorCode::ResultTooLarge,
        path: "job".into(),
        message: format!(
            "the result of this job could be up to {bound} bytes, more than the {max_response_bytes} bytes \
             a client can read (limits.max_response_bytes); results are not paged yet: split the job into \
             smaller ones (fewer shots or experiments, shorter experiment names)"
        ),
        value: Some(format!("{bound} bytes")),
        limit: Some(format!("{max_response_bytes} bytes")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shotline_config::{parse_str, SIM_YAML};
    use shotline_models::singlequdit::SingleQudit;
    use shotline_protocol::{Experiment, Instruction, WireOrder};

    fn section() -> BackendSection {
        parse_str(SIM_YAML, "sim.yaml").unwrap().backends.remove(0)
    }

    fn job(experiments: usize, shots: u32, name_len: usize) -> Job {
        Job {
            experiments: (0..experiments)
                .map(|i| {
                    (
                        format!("{i:0>name_len$}"),
                        Experiment {
                            instructions: vec![
                                Instruction::new("load", vec![0], vec![500.0]),
                                Instruction::new("rlx", vec![0], vec![1.0]),
                                Instruction::new("measure", vec![0], vec![]),
                            ],
                            num_wires: 1,
                            shots,
                            wire_order: WireOrder::Sequential,
                            seed: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_sim_memory_string_is_one_atom_number() {
        assert_eq!(memory_bound(&section()), (3, Some(501)));
    }

    #[test]
    fn the_bound_covers_the_real_encoding() {
        let s = section();
        let published = shotline_protocol::singlequdit_config("singlequdit", "", "0.1.0", "", 1, 1);
        let j = job(3, 700, 40);
        let bound = result_bound_bytes(&published, &s, &j, Some("q"));
        // The worst real result: every shot the widest value, every value seen.
        let results = j
            .experiments
            .iter()
            .map(|(name, e)| {
                let memory: Vec<String> = (0..e.shots).map(|k| (k % 501).to_string()).collect();
                let mut counts = BTreeMap::new();
                for m in &memory {
                    *counts.entry(m.clone()).or_insert(u64::MAX - 1_000) += 1;
                }
                ExperimentResult {
                    header: ExperimentHeader { name: name.clone() },
                    shots: e.shots,
                    success: true,
                    data: ExperimentData {
                        memory,
                        instructions: Some(e.instructions.clone()),
                        counts,
                    },
                    timing: None,
                    seed: Some(u64::MAX),
                }
            })
            .collect();
        let real = Response::Result {
            result: JobResult {
                backend_name: "singlequdit".into(),
                display_name: String::new(),
                backend_version: "0.1.0".into(),
                job_id: "f".repeat(32),
                qobj_id: Some("q".into()),
                success: true,
                status: JobStatus::Done,
                header: BTreeMap::new(),
                results,
                execution_id: Some("20261206-001".into()),
            },
        };
        let real = encode_frame(&real, usize::MAX).unwrap().len() as u64 - 4;
        assert!(real <= bound, "real {real} > bound {bound}");
        assert!(bound < real * 2, "the bound {bound} is loose: real {real}");
    }

    #[test]
    fn huge_angles_plan_long_jobs() {
        let s = section();
        let mut j = job(1, 1000, 4);
        let short = planned_duration_ns(&SingleQudit, &s, &j).unwrap();
        j.experiments[0].1.instructions[1].params[0] = 1e6;
        let long = planned_duration_ns(&SingleQudit, &s, &j).unwrap();
        assert!(long > short * 100, "{short} vs {long}");
        let e = check_duration(&SingleQudit, &s, &j, 1).unwrap_err();
        assert_eq!(e.errors[0].code, ErrorCode::JobTooLong);
        assert!(e.errors[0].message.contains("limits.max_job_duration_s"));
    }
}

//! Shared helpers.

use shotline_protocol::{
    singlequdit_config, validate_job, BackendConfig, ErrorCode, ValidationError, ValidationReport,
    Value,
};

pub fn backend() -> BackendConfig {
    singlequdit_config(
        "singlequdit",
        "Single qudit",
        "0.1.0",
        "collective spin simulator",
        1_000_000,
        1000,
    )
}

/// The DESIGN section 6 example job.
pub const DESIGN_JOB: &str = r#"{
  "experiment_0": {
    "instructions": [["load", [0], [50]], ["rlx", [0], [1.5708]], ["measure", [0], []]],
    "num_wires": 1,
    "shots": 100,
    "wire_order": "sequential",
    "seed": 7
  }
}"#;

pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

/// A job with one experiment `experiment_0` whose fields are given as JSON object members.
pub fn exp_job(fields: &str) -> Value {
    json(&format!(r#"{{"experiment_0": {{{fields}}}}}"#))
}

/// A job with one experiment with the given instruction list (JSON) and valid other fields.
pub fn instr_job(instructions: &str) -> Value {
    exp_job(&format!(
        r#""instructions": {instructions}, "num_wires": 1, "shots": 10"#
    ))
}

pub fn report(job: &Value) -> ValidationReport {
    match validate_job(job, &backend()) {
        Ok(j) => panic!("expected validation errors, job was accepted: {j:?}"),
        Err(r) => r,
    }
}

/// Asserts the job has exactly one error, with this code and path, and returns it.
pub fn single(job: &Value, code: ErrorCode, path: &str) -> ValidationError {
    let r = report(job);
    assert_eq!(r.total, 1, "expected one error, got: {r}");
    assert_eq!(r.errors.len(), 1);
    let e = r.errors.into_iter().next().unwrap();
    assert_eq!(e.code, code, "{e}");
    assert_eq!(e.path, path, "{e}");
    assert!(!e.message.is_empty());
    e
}

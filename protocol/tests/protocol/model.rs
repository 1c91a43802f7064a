//! Backend configs, catalog, results and values as users see them.

use std::collections::BTreeMap;
use std::str::FromStr;

use shotline_protocol::{
    singlequdit_instructions, ExperimentData, ExperimentHeader, ExperimentResult, Instruction,
    InstructionKind, JobResult, JobStatus, TimingSummary, Value,
};

use crate::common::*;

#[test]
fn singlequdit_config_matches_the_design() {
    let b = backend();
    assert_eq!(b.num_wires, 1);
    assert_eq!(b.n_qubits, 1);
    assert_eq!(b.max_shots, 1_000_000);
    assert_eq!(b.max_experiments, 1000);
    assert!(b.simulator);
    assert_eq!(
        b.supported_instructions,
        vec!["rlx", "rlz", "rlz2", "load", "measure", "barrier"]
    );
    let gates: Vec<_> = b.gates.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(gates, vec!["rlx", "rlz", "rlz2"]);
    assert!(b.gates.iter().all(|g| g.parameters == vec!["theta"]));
    let load = b.instruction("load").unwrap();
    assert_eq!(load.kind, InstructionKind::Load);
    assert!(load.params[0].integer);
    assert_eq!((load.params[0].min, load.params[0].max), (1.0, 500.0));
    assert!(b.instruction("rly").is_none());
    assert!(singlequdit_instructions()
        .iter()
        .all(|i| i.coupling_map == vec![vec![0]]));
}

#[test]
fn backend_config_serialises_with_snake_case_fields_and_lowercase_enums() {
    let v = serde_json::to_value(backend()).unwrap();
    assert_eq!(v["cold_atom_type"], "spin");
    assert_eq!(v["wire_order"], "sequential");
    assert_eq!(v["backend_name"], "singlequdit");
    assert_eq!(v["gates"][0]["coupling_map"], serde_json::json!([[0]]));
    assert_eq!(v["instructions"][3]["kind"], "load");
    let back: shotline_protocol::BackendConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, backend());
}

#[test]
fn job_status_strings_and_terminality() {
    assert_eq!(
        serde_json::to_string(&JobStatus::Cancelled).unwrap(),
        "\"CANCELLED\""
    );
    assert_eq!(JobStatus::from_str("RUNNING").unwrap(), JobStatus::Running);
    assert_eq!(JobStatus::from_str("done").unwrap(), JobStatus::Done);
    let err = JobStatus::from_str("FINISHED").unwrap_err().to_string();
    assert!(err.contains("FINISHED") && err.contains("QUEUED"), "{err}");
    let terminal: Vec<_> = JobStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(
        terminal,
        vec![JobStatus::Done, JobStatus::Error, JobStatus::Cancelled]
    );
}

fn result() -> JobResult {
    JobResult {
        backend_name: "singlequdit".into(),
        display_name: "Single qudit".into(),
        backend_version: "0.1.0".into(),
        job_id: "job-1".into(),
        qobj_id: None,
        success: true,
        status: JobStatus::Done,
        header: BTreeMap::new(),
        results: vec![ExperimentResult {
            header: ExperimentHeader {
                name: "experiment_0".into(),
            },
            shots: 2,
            success: true,
            data: ExperimentData {
                memory: vec!["3".into(), "5".into()],
                instructions: None,
                counts: BTreeMap::new(),
            },
            timing: None,
            seed: Some(7),
        }],
        execution_id: None,
    }
}

#[test]
fn job_result_json_omits_empty_optionals_and_round_trips() {
    let r = result();
    let v = serde_json::to_value(&r).unwrap();
    let data = &v["results"][0]["data"];
    assert_eq!(data["memory"], serde_json::json!(["3", "5"]));
    assert!(data.get("counts").is_none());
    assert!(data.get("instructions").is_none());
    assert!(v["results"][0].get("timing").is_none());
    assert_eq!(v["status"], "DONE");
    assert_eq!(v["results"][0]["header"]["name"], "experiment_0");
    let back: shotline_protocol::JobResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);

    let mut full = result();
    full.results[0].data.instructions = Some(vec![Instruction::new("measure", vec![0], vec![])]);
    full.results[0].data.counts.insert("3".into(), 1);
    full.results[0].timing = Some(TimingSummary {
        shots: 2,
        events: 6,
        p50_ns: 100,
        p99_ns: 900,
        p999_ns: 1000,
        max_ns: 1200,
        underflows: 0,
        lost_shots: 3,
        lost_events: 0,
        stamped: shotline_protocol::LatenessStamp::AfterApply,
    });
    full.execution_id = Some("exec-1".into());
    let bytes = rmp_serde::to_vec_named(&full).unwrap();
    let back: JobResult = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, full);
    let v = serde_json::to_value(&full).unwrap();
    assert_eq!(
        v["results"][0]["data"]["instructions"],
        serde_json::json!([["measure", [0], []]])
    );
}

#[test]
fn value_helpers_treat_int_and_uint_alike() {
    let v = json(r#"{"a": 1, "b": -2, "c": 2.5, "d": "x", "e": [1], "a": 9}"#);
    assert_eq!(v.get("a").and_then(Value::as_u64), Some(1));
    assert_eq!(v.get("b").and_then(Value::as_u64), None);
    assert_eq!(v.get("b").and_then(Value::as_i64), Some(-2));
    assert_eq!(v.get("c").and_then(Value::as_f64), Some(2.5));
    assert_eq!(v.get("d").and_then(Value::as_str), Some("x"));
    assert_eq!(
        v.get("e").and_then(Value::as_array).map(<[Value]>::len),
        Some(1)
    );
    assert_eq!(v.as_map().map(<[(Value, Value)]>::len), Some(6));
    assert_eq!(Value::UInt(4).type_name(), Value::Int(-4).type_name());
    assert_eq!(Value::Bytes(vec![1]).type_name(), "bytes");
    assert_eq!(Value::Nil.type_name(), "nil");
}

#[test]
fn value_round_trips_through_msgpack_including_bytes_and_nil() {
    let v = Value::Map(vec![
        (Value::from("z"), Value::Bytes(vec![0, 255])),
        (Value::from("a"), Value::Nil),
        (
            Value::UInt(1),
            Value::Array(vec![Value::Bool(true), Value::Float(0.5), Value::Int(-3)]),
        ),
    ]);
    let bytes = rmp_serde::to_vec_named(&v).unwrap();
    let back: Value = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, v);
}

//! One test per validation rule: code, field path, value and limit.

use shotline_protocol::{validate_job, ErrorCode as C, Instruction, Value, WireOrder};

use crate::common::*;

const OK_INSTR: &str = r#"[["load", [0], [5]], ["rlx", [0], [1.0]], ["measure", [0], []]]"#;

#[test]
#[allow(clippy::approx_constant)] // 1.5708 is the literal angle of the DESIGN example
fn design_example_is_accepted_with_typed_fields() {
    let job = validate_job(&json(DESIGN_JOB), &backend()).unwrap();
    assert_eq!(job.experiments.len(), 1);
    let (name, e) = &job.experiments[0];
    assert_eq!(name, "experiment_0");
    assert_eq!(e.shots, 100);
    assert_eq!(e.num_wires, 1);
    assert_eq!(e.seed, Some(7));
    assert_eq!(e.wire_order, WireOrder::Sequential);
    assert_eq!(
        e.instructions,
        vec![
            Instruction::new("load", vec![0], vec![50.0]),
            Instruction::new("rlx", vec![0], vec![1.5708]),
            Instruction::new("measure", vec![0], vec![]),
        ]
    );
}

#[test]
fn optional_fields_default_to_backend_wire_order_and_no_seed() {
    let job = validate_job(&instr_job(OK_INSTR), &backend()).unwrap();
    let e = job.experiment("experiment_0").unwrap();
    assert_eq!(e.wire_order, WireOrder::Sequential);
    assert_eq!(e.seed, None);
    // a job without load is fine too (one atom)
    let job = instr_job(r#"[["rlx", [0], [0.5]], ["measure", [0], []]]"#);
    assert!(validate_job(&job, &backend()).is_ok());
}

#[test]
fn job_not_a_map_is_invalid_type() {
    let e = single(&json("[1, 2]"), C::InvalidType, "job");
    assert!(e.message.contains("got array"), "{}", e.message);
}

#[test]
fn empty_job() {
    single(&json("{}"), C::EmptyJob, "job");
}

#[test]
fn too_many_experiments_reports_limit() {
    let mut b = backend();
    b.max_experiments = 2;
    let exp = r#"{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}"#;
    let job = json(&format!(r#"{{"a": {exp}, "b": {exp}, "c": {exp}}}"#));
    let r = validate_job(&job, &b).unwrap_err();
    assert_eq!(r.total, 1, "{r}");
    let e = &r.errors[0];
    assert_eq!((e.code, e.path.as_str()), (C::TooManyExperiments, "job"));
    assert_eq!(e.value.as_deref(), Some("3"));
    assert_eq!(e.limit.as_deref(), Some("2"));
}

#[test]
fn duplicate_experiment_names() {
    let exp = r#"{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}"#;
    let job = json(&format!(r#"{{"e1": {exp}, "e1": {exp}}}"#));
    single(&job, C::DuplicateExperiment, "e1");
}

#[test]
fn experiment_names_must_be_non_empty_strings() {
    let exp = json(r#"{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}"#);
    let job = Value::Map(vec![(Value::from(""), exp.clone())]);
    single(&job, C::InvalidExperimentName, "job");
    let job = Value::Map(vec![(Value::UInt(3), exp)]);
    let e = single(&job, C::InvalidType, "job");
    assert!(e.message.contains("got integer"), "{}", e.message);
    // the body of an unnamed experiment is still checked, located by its index
    let job = json(
        r#"{"ok": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}, "": {"num_wires": 1, "shots": 1}}"#,
    );
    let paths: Vec<_> = report(&job).errors.into_iter().map(|e| e.path).collect();
    assert_eq!(paths, vec!["job", "job[1].instructions"]);
}

#[test]
fn experiment_not_a_map() {
    single(
        &json(r#"{"experiment_3": 5}"#),
        C::InvalidType,
        "experiment_3",
    );
}

#[test]
fn missing_fields() {
    let job = exp_job(&format!(r#""instructions": {OK_INSTR}, "num_wires": 1"#));
    single(&job, C::MissingField, "experiment_0.shots");
    let job = exp_job(&format!(r#""instructions": {OK_INSTR}, "shots": 1"#));
    single(&job, C::MissingField, "experiment_0.num_wires");
    let job = exp_job(r#""num_wires": 1, "shots": 1"#);
    single(&job, C::MissingField, "experiment_0.instructions");
}

#[test]
fn unknown_field_lists_allowed_fields() {
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "shot": 3"#
    ));
    let e = single(&job, C::UnknownField, "experiment_0.shot");
    let limit = e.limit.unwrap();
    for f in ["instructions", "num_wires", "shots", "wire_order", "seed"] {
        assert!(limit.contains(f), "{limit}");
    }
}

#[test]
fn duplicate_field_is_reported() {
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "shots": 2"#
    ));
    single(&job, C::DuplicateField, "experiment_0.shots");
}

#[test]
fn wrong_type_names_expected_and_got() {
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": "100""#
    ));
    let e = single(&job, C::InvalidType, "experiment_0.shots");
    assert!(e.message.contains("expected an integer"), "{}", e.message);
    assert!(e.message.contains("got string"), "{}", e.message);
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1.0, "shots": 1"#
    ));
    single(&job, C::InvalidType, "experiment_0.num_wires");
    let job = exp_job(r#""instructions": {}, "num_wires": 1, "shots": 1"#);
    single(&job, C::InvalidType, "experiment_0.instructions");
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "wire_order": 1"#
    ));
    single(&job, C::InvalidType, "experiment_0.wire_order");
}

#[test]
fn shots_out_of_range() {
    for (shots, value) in [("0", "0"), ("1000001", "1000001"), ("-5", "-5")] {
        let job = exp_job(&format!(
            r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": {shots}"#
        ));
        let e = single(&job, C::ShotsOutOfRange, "experiment_0.shots");
        assert_eq!(e.value.as_deref(), Some(value));
        assert_eq!(e.limit.as_deref(), Some("[1, 1000000]"));
    }
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1000000"#
    ));
    assert!(validate_job(&job, &backend()).is_ok());
}

#[test]
fn num_wires_out_of_range() {
    for n in ["0", "2"] {
        let job = exp_job(&format!(
            r#""instructions": {OK_INSTR}, "num_wires": {n}, "shots": 1"#
        ));
        let e = single(&job, C::NumWiresOutOfRange, "experiment_0.num_wires");
        assert_eq!(e.value.as_deref(), Some(n));
        assert_eq!(e.limit.as_deref(), Some("[1, 1]"));
    }
}

#[test]
fn wire_order_must_mean_the_backends() {
    // One species: `interleaved` lists the wires as `sequential` does, so both are the backend's order
    // (qiskit-cold-atom sends `interleaved`); an unknown order is refused naming both.
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "wire_order": "interleaved""#
    ));
    let e = validate_job(&job, &backend()).unwrap();
    assert_eq!(
        e.experiment("experiment_0").unwrap().wire_order,
        WireOrder::Sequential
    );
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "wire_order": "random""#
    ));
    let e = single(&job, C::WireOrderMismatch, "experiment_0.wire_order");
    assert_eq!(
        e.limit.as_deref(),
        Some("sequential, interleaved (the same with one species)")
    );
    assert!(
        e.message
            .contains("allowed values: sequential, interleaved"),
        "{}",
        e.message
    );
    // Two species: the orders differ, and only the backend's is accepted.
    let mut two = backend();
    two.num_species = 2;
    for wo in ["interleaved", "random"] {
        let job = exp_job(&format!(
            r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "wire_order": "{wo}""#
        ));
        let report = validate_job(&job, &two).unwrap_err();
        assert_eq!(report.total, 1, "{wo}: {report}");
        let e = &report.errors[0];
        assert_eq!(e.code, C::WireOrderMismatch, "{e}");
        assert_eq!(e.path, "experiment_0.wire_order");
        assert_eq!(e.limit.as_deref(), Some("sequential"));
        assert!(
            e.message.contains("allowed values: sequential"),
            "{}",
            e.message
        );
    }
}

#[test]
fn seed_must_be_u64() {
    for seed in ["-1", "1.5", "\"7\""] {
        let job = exp_job(&format!(
            r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "seed": {seed}"#
        ));
        let e = single(&job, C::InvalidSeed, "experiment_0.seed");
        assert_eq!(e.limit.as_deref(), Some("[0, 18446744073709551615]"));
    }
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "seed": 18446744073709551615"#
    ));
    let ok = validate_job(&job, &backend()).unwrap();
    assert_eq!(ok.experiments[0].1.seed, Some(u64::MAX));
    let job = exp_job(&format!(
        r#""instructions": {OK_INSTR}, "num_wires": 1, "shots": 1, "seed": null"#
    ));
    assert_eq!(
        validate_job(&job, &backend()).unwrap().experiments[0]
            .1
            .seed,
        None
    );
}

#[test]
fn malformed_instructions_point_at_the_bad_part() {
    let cases = [
        (r#"["rlx", [0]]"#, "experiment_0.instructions[0]"),
        (r#""rlx""#, "experiment_0.instructions[0]"),
        (r#"[1, [0], [1.0]]"#, "experiment_0.instructions[0].name"),
        (r#"["rlx", 0, [1.0]]"#, "experiment_0.instructions[0].wires"),
        (
            r#"["rlx", [-1], [1.0]]"#,
            "experiment_0.instructions[0].wires[0]",
        ),
        (
            r#"["rlx", [0.0], [1.0]]"#,
            "experiment_0.instructions[0].wires[0]",
        ),
        (
            r#"["rlx", [0], 1.0]"#,
            "experiment_0.instructions[0].params",
        ),
        (
            r#"["rlx", [0], ["pi"]]"#,
            "experiment_0.instructions[0].params[0]",
        ),
    ];
    for (instr, path) in cases {
        let job = instr_job(&format!(r#"[{instr}, ["measure", [0], []]]"#));
        single(&job, C::MalformedInstruction, path);
    }
}

#[test]
fn unknown_instruction_lists_allowed_names_and_does_not_cascade() {
    // wrong params too, but only one error for the unknown name
    let job = instr_job(r#"[["rly", [5], [1, 2, 3]], ["measure", [0], []]]"#);
    let e = single(
        &job,
        C::UnknownInstruction,
        "experiment_0.instructions[0].name",
    );
    assert_eq!(
        e.limit.as_deref(),
        Some("rlx, rlz, rlz2, load, measure, barrier")
    );
    assert_eq!(e.value.as_deref(), Some("\"rly\""));
}

#[test]
fn wire_out_of_range() {
    let job = instr_job(r#"[["rlx", [1], [1.0]], ["measure", [0], []]]"#);
    let e = single(
        &job,
        C::WireOutOfRange,
        "experiment_0.instructions[0].wires[0]",
    );
    assert_eq!(e.value.as_deref(), Some("1"));
    assert_eq!(e.limit.as_deref(), Some("[0, 0]"));
}

#[test]
fn wires_must_be_a_coupling_map_entry() {
    for wires in ["[0, 0]", "[]"] {
        let job = instr_job(&format!(
            r#"[["rlz", {wires}, [1.0]], ["measure", [0], []]]"#
        ));
        let e = single(
            &job,
            C::WiresNotInCouplingMap,
            "experiment_0.instructions[0].wires",
        );
        assert_eq!(e.limit.as_deref(), Some("[[0]]"));
    }
}

#[test]
fn wrong_param_count() {
    let job = instr_job(r#"[["rlx", [0], []], ["measure", [0], []]]"#);
    let e = single(
        &job,
        C::WrongParamCount,
        "experiment_0.instructions[0].params",
    );
    assert_eq!(e.value.as_deref(), Some("0"));
    assert_eq!(e.limit.as_deref(), Some("1"));
    let job = instr_job(r#"[["measure", [0], [1.0]]]"#);
    let e = single(
        &job,
        C::WrongParamCount,
        "experiment_0.instructions[0].params",
    );
    assert_eq!(e.limit.as_deref(), Some("0"));
}

#[test]
fn param_out_of_range_gives_the_range() {
    let cases = [
        ("rlx", "7.0", "[0, 6.283185307179586]"),
        ("rlz", "-0.1", "[0, 6.283185307179586]"),
        ("rlz2", "63", "[0, 62.83185307179586]"),
        ("load", "501", "[1, 500]"),
        ("load", "0", "[1, 500]"),
    ];
    for (name, p, limit) in cases {
        let job = instr_job(&format!(
            r#"[["{name}", [0], [{p}]], ["measure", [0], []]]"#
        ));
        let e = single(
            &job,
            C::ParamOutOfRange,
            "experiment_0.instructions[0].params[0]",
        );
        assert_eq!(e.limit.as_deref(), Some(limit), "{name}");
        assert_eq!(e.value.as_deref(), Some(p));
    }
    let job = instr_job(r#"[["rlz2", [0], [62.8]], ["measure", [0], []]]"#);
    assert!(validate_job(&job, &backend()).is_ok());
}

#[test]
fn param_not_integer() {
    let job = instr_job(r#"[["load", [0], [2.5]], ["measure", [0], []]]"#);
    let e = single(
        &job,
        C::ParamNotInteger,
        "experiment_0.instructions[0].params[0]",
    );
    assert_eq!(e.value.as_deref(), Some("2.5"));
    // a float with no fractional part is a whole number
    let job = instr_job(r#"[["load", [0], [3.0]], ["measure", [0], []]]"#);
    assert!(validate_job(&job, &backend()).is_ok());
}

#[test]
fn param_not_finite() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let instr = Value::Array(vec![
            Value::from("rlx"),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Float(x)]),
        ]);
        let measure = json(r#"["measure", [0], []]"#);
        let exp = Value::Map(vec![
            (
                Value::from("instructions"),
                Value::Array(vec![instr, measure]),
            ),
            (Value::from("num_wires"), Value::Int(1)),
            (Value::from("shots"), Value::Int(1)),
        ]);
        let job = Value::Map(vec![(Value::from("experiment_0"), exp)]);
        single(
            &job,
            C::ParamNotFinite,
            "experiment_0.instructions[0].params[0]",
        );
    }
}

#[test]
fn missing_measure() {
    let job = instr_job(r#"[["load", [0], [5]], ["rlx", [0], [1.0]]]"#);
    single(&job, C::MissingMeasure, "experiment_0.instructions");
}

#[test]
fn gate_after_measure_but_barrier_and_measure_are_allowed() {
    let job = instr_job(r#"[["measure", [0], []], ["barrier", [0], []], ["rlz", [0], [1.0]]]"#);
    single(&job, C::GateAfterMeasure, "experiment_0.instructions[2]");
    let job = instr_job(
        r#"[["rlx", [0], [1.0]], ["measure", [0], []], ["barrier", [0], []], ["measure", [0], []]]"#,
    );
    assert!(validate_job(&job, &backend()).is_ok());
}

#[test]
fn load_not_first() {
    let job = instr_job(r#"[["rlx", [0], [1.0]], ["load", [0], [5]], ["measure", [0], []]]"#);
    single(&job, C::LoadNotFirst, "experiment_0.instructions[1]");
}

#[test]
fn empty_instructions() {
    single(
        &instr_job("[]"),
        C::EmptyInstructions,
        "experiment_0.instructions",
    );
}

#[test]
fn three_different_errors_are_all_reported() {
    let job = exp_job(
        r#""instructions": [["rlx", [0], [9.0]], ["measure", [0], []]], "num_wires": 1, "shots": 0, "colour": "red""#,
    );
    let r = report(&job);
    assert_eq!(r.total, 3, "{r}");
    let got: Vec<_> = r.errors.iter().map(|e| (e.code, e.path.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (C::UnknownField, "experiment_0.colour"),
            (C::ShotsOutOfRange, "experiment_0.shots"),
            (C::ParamOutOfRange, "experiment_0.instructions[0].params[0]"),
        ]
    );
    let text = r.to_string();
    assert!(text.starts_with("3 errors:"), "{text}");
    assert!(
        text.contains("experiment_0.shots: SHOTS_OUT_OF_RANGE"),
        "{text}"
    );
}

#[test]
fn errors_in_several_experiments_are_all_reported() {
    let bad = r#"{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 0}"#;
    let job = json(&format!(r#"{{"a": {bad}, "b": {bad}}}"#));
    let paths: Vec<_> = report(&job).errors.into_iter().map(|e| e.path).collect();
    assert_eq!(paths, vec!["a.shots", "b.shots"]);
}

#[test]
fn two_hundred_bad_instructions_report_fifty_and_total() {
    let mut instrs: Vec<String> = (0..200)
        .map(|_| r#"["rlx", [0], [100.0]]"#.to_string())
        .collect();
    instrs.push(r#"["measure", [0], []]"#.to_string());
    let job = instr_job(&format!("[{}]", instrs.join(",")));
    let r = report(&job);
    assert_eq!(r.total, 200);
    assert_eq!(r.errors.len(), shotline_protocol::MAX_REPORTED_ERRORS);
    assert_eq!(r.errors[49].path, "experiment_0.instructions[49].params[0]");
    let text = r.to_string();
    assert!(text.starts_with("200 errors:"));
    assert!(text.ends_with("... and 150 more"), "{text}");
}

#[test]
fn msgpack_integers_validate_like_json_integers() {
    // rmp encodes non-negative ints as unsigned: the job decoded from msgpack still validates.
    let bytes = rmp_serde::to_vec_named(&json(DESIGN_JOB)).unwrap();
    let v: Value = rmp_serde::from_slice(&bytes).unwrap();
    let from_msgpack = validate_job(&v, &backend()).unwrap();
    let from_json = validate_job(&json(DESIGN_JOB), &backend()).unwrap();
    assert_eq!(from_msgpack, from_json);
}

#[test]
fn error_codes_serialise_as_stable_strings() {
    assert_eq!(
        serde_json::to_string(&C::ShotsOutOfRange).unwrap(),
        "\"SHOTS_OUT_OF_RANGE\""
    );
    assert_eq!(
        C::WiresNotInCouplingMap.as_str(),
        "WIRES_NOT_IN_COUPLING_MAP"
    );
    let c: C = serde_json::from_str("\"GATE_AFTER_MEASURE\"").unwrap();
    assert_eq!(c, C::GateAfterMeasure);
}

#[test]
fn long_experiment_names_are_refused_at_their_index_with_the_limit() {
    let limits = shotline_protocol::JobLimits {
        max_experiment_name_bytes: 8,
        ..Default::default()
    };
    let exp = r#"{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}"#;
    let ok = json(&format!(r#"{{"12345678": {exp}}}"#));
    assert!(shotline_protocol::validate_job_within(&ok, &backend(), &limits).is_ok());
    let long = "x".repeat(9);
    let job = json(&format!(r#"{{"a": {exp}, "{long}": {exp}}}"#));
    let r = shotline_protocol::validate_job_within(&job, &backend(), &limits).unwrap_err();
    assert_eq!(r.total, 1, "{r}");
    let e = &r.errors[0];
    assert_eq!(
        (e.code, e.path.as_str()),
        (C::InvalidExperimentName, "job[1]")
    );
    assert_eq!(e.limit.as_deref(), Some("8"));
    assert!(
        e.message.contains("9 bytes") && e.message.contains("limits.max_experiment_name_bytes"),
        "{}",
        e.message
    );
    // The default limit applies to plain `validate_job` too: a 7 MiB name is one short error.
    let huge = "n".repeat(7 << 20);
    let job = json(&format!(r#"{{"{huge}": {exp}}}"#));
    let r = validate_job(&job, &backend()).unwrap_err();
    assert!(r.to_string().len() < 1000, "{} bytes", r.to_string().len());
}

#[test]
fn total_shots_of_a_job_are_bounded() {
    let limits = shotline_protocol::JobLimits {
        max_shots_per_job: 1_000,
        ..Default::default()
    };
    let exp = |shots: u32| {
        format!(r#"{{"instructions": [["measure", [0], []]], "num_wires": 1, "shots": {shots}}}"#)
    };
    let job = json(&format!(r#"{{"a": {}, "b": {}}}"#, exp(500), exp(500)));
    assert!(shotline_protocol::validate_job_within(&job, &backend(), &limits).is_ok());
    let job = json(&format!(r#"{{"a": {}, "b": {}}}"#, exp(500), exp(501)));
    let r = shotline_protocol::validate_job_within(&job, &backend(), &limits).unwrap_err();
    let e = &r.errors[0];
    assert_eq!((e.code, e.path.as_str()), (C::TooManyShots, "job"));
    assert_eq!(e.value.as_deref(), Some("1001"));
    assert_eq!(e.limit.as_deref(), Some("1000"));
    assert!(
        e.message.contains("limits.max_shots_per_job"),
        "{}",
        e.message
    );
    // 1000 experiments of 1 000 000 shots (three days of apparatus time) is refused by the defaults.
    let many: Vec<String> = (0..1000)
        .map(|i| format!(r#""e{i}": {}"#, exp(1_000_000)))
        .collect();
    let job = json(&format!("{{{}}}", many.join(",")));
    let r = validate_job(&job, &backend()).unwrap_err();
    assert_eq!(r.errors[0].code, C::TooManyShots);
}

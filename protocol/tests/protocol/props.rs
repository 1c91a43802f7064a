//! Property tests: decoding and validation never panic.

use proptest::prelude::*;
use shotline_protocol::{decode_body, validate_job, Request, Response, Value};

use crate::common::*;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (0u64..4).prop_map(Value::UInt),
        any::<u64>().prop_map(Value::UInt),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            Just("measure"),
            Just("load"),
            Just("rlx"),
            Just("rlz2"),
            Just("shots"),
            Just("num_wires"),
            Just("instructions"),
            Just("seed"),
            Just("wire_order"),
            Just("sequential"),
            Just(""),
        ]
        .prop_map(Value::from),
        ".{0,8}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

/// Job-shaped values: maps of experiments whose fields are arbitrary values.
fn job_like() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("instructions"),
        Just("num_wires"),
        Just("shots"),
        Just("wire_order"),
        Just("seed"),
        Just("extra"),
    ];
    let exp = proptest::collection::vec((field.prop_map(Value::from), value()), 0..6)
        .prop_map(Value::Map);
    proptest::collection::vec((".{0,3}".prop_map(Value::Str), exp), 0..4).prop_map(Value::Map)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_body_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_body::<Request>(&bytes);
        let _ = decode_body::<Response>(&bytes);
        let _ = decode_body::<Value>(&bytes);
    }

    #[test]
    fn validate_job_never_panics_and_reports_consistently(v in prop_oneof![value(), job_like()]) {
        match validate_job(&v, &backend()) {
            Ok(job) => prop_assert!(!job.experiments.is_empty()),
            Err(r) => {
                prop_assert!(r.total >= 1);
                prop_assert_eq!(r.errors.len(), r.total.min(shotline_protocol::MAX_REPORTED_ERRORS));
            }
        }
    }

    #[test]
    fn submit_with_arbitrary_job_round_trips(v in value()) {
        let req = Request::Submit {
            token: "t".into(), backend: "b".into(), job: v, qobj_id: None, priority: 0,
            tags: vec![], idempotency_key: None,
        };
        if let Ok(frame) = shotline_protocol::encode_frame(&req, shotline_protocol::DEFAULT_MAX_FRAME) {
            let back: Request = decode_body(&frame[4..]).unwrap();
            // NaN != NaN, so compare the re-encoded bytes instead of the values
            let again = shotline_protocol::encode_frame(&back, shotline_protocol::DEFAULT_MAX_FRAME).unwrap();
            prop_assert_eq!(again, frame);
        }
    }
}

//! Framing and message round trips.

use std::collections::BTreeMap;

use shotline_protocol::{
    codes, decode_body, encode_frame, frame_len, BackendStatus, BackendSummary, ErrorBody,
    FrameError, JobResult, JobStatus, Request, Response, StatusRecord, Value, DEFAULT_MAX_FRAME,
};

use crate::common::*;

/// Encodes, splits header/body as a reader would, and decodes.
fn round_trip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let frame = encode_frame(msg, DEFAULT_MAX_FRAME).unwrap();
    let header: [u8; 4] = frame[..4].try_into().unwrap();
    let len = frame_len(header, DEFAULT_MAX_FRAME).unwrap();
    assert_eq!(len, frame.len() - 4);
    decode_body(&frame[4..]).unwrap()
}

fn status() -> StatusRecord {
    StatusRecord {
        job_id: "job-1".into(),
        status: JobStatus::Queued,
        detail: "position 1".into(),
        error_message: String::new(),
    }
}

fn backend_status() -> BackendStatus {
    BackendStatus {
        operational: true,
        paused: false,
        pending_jobs: 3,
        status_msg: "ok".into(),
        running_execution: Some("exec-9".into()),
        devices: vec![
            shotline_protocol::DeviceStatus {
                name: "mot".into(),
                driver: "sim_ttl".into(),
                state: "manual".into(),
                last_error: None,
                card: None,
            },
            shotline_protocol::DeviceStatus {
                name: "rf".into(),
                driver: "bridge".into(),
                state: "fault".into(),
                last_error: Some("device rf: fault: card 10.0.0.5:7700 is not connected".into()),
                card: Some(shotline_protocol::CardStatus {
                    endpoint: "10.0.0.5:7700".into(),
                    connected: false,
                    card_id: Some(7),
                    clock_hz: Some(1_000_000_000),
                    drift_ppm: -2.5,
                    clock_samples: 64,
                    min_rtt_ns: Some(41_000),
                    connects: 2,
                    firmware_resets: 1,
                    retransmissions: 3,
                    crc_errors: 1,
                    last_error: Some("link down".into()),
                }),
            },
        ],
    }
}

fn all_requests() -> Vec<Request> {
    let token = "tok".to_string();
    vec![
        Request::Login {
            user: "ada".into(),
            password: "pw".into(),
        },
        Request::Backends {
            token: token.clone(),
        },
        Request::Backend {
            token: token.clone(),
            name: "singlequdit".into(),
        },
        Request::Submit {
            token: token.clone(),
            backend: "singlequdit".into(),
            job: json(DESIGN_JOB),
            qobj_id: Some("q1".into()),
            priority: -2,
            tags: vec!["calib".into()],
            idempotency_key: Some("k1".into()),
        },
        Request::Status {
            token: token.clone(),
            job_id: "job-1".into(),
        },
        Request::Result {
            token,
            job_id: "job-1".into(),
        },
    ]
}

fn all_responses() -> Vec<Response> {
    let report = shotline_protocol::validate_job(&instr_job("[]"), &backend()).unwrap_err();
    vec![
        Response::LoggedIn {
            token: "tok".into(),
            user: "ada".into(),
            expires_at: "2026-01-01T00:00:00Z".into(),
        },
        Response::Backends {
            backends: vec![BackendSummary {
                name: "singlequdit".into(),
                display_name: "Single qudit".into(),
                version: "0.1.0".into(),
                simulator: true,
                status: backend_status(),
            }],
        },
        Response::Backend {
            config: backend(),
            status: backend_status(),
        },
        Response::Submitted {
            job_id: "job-1".into(),
            status: status(),
            duplicate: false,
        },
        Response::Status { status: status() },
        Response::Result {
            result: JobResult {
                backend_name: "singlequdit".into(),
                display_name: "Single qudit".into(),
                backend_version: "0.1.0".into(),
                job_id: "job-1".into(),
                qobj_id: Some("q1".into()),
                success: true,
                status: JobStatus::Done,
                header: BTreeMap::from([("k".to_string(), "v".to_string())]),
                results: vec![],
                execution_id: Some("exec-1".into()),
            },
        },
        Response::Error {
            error: ErrorBody::new(codes::NOT_FOUND, "no job job-2"),
        },
        Response::Error {
            error: ErrorBody::validation(report),
        },
    ]
}

#[test]
fn every_request_variant_round_trips() {
    for req in all_requests() {
        assert_eq!(round_trip(&req), req);
    }
}

#[test]
fn every_response_variant_round_trips() {
    for resp in all_responses() {
        assert_eq!(round_trip(&resp), resp);
    }
}

#[test]
fn frames_are_string_keyed_maps_readable_by_any_msgpack_library() {
    let frame = encode_frame(&all_requests()[0], DEFAULT_MAX_FRAME).unwrap();
    let v: Value = rmp_serde::from_slice(&frame[4..]).unwrap();
    assert_eq!(v.get("op").and_then(Value::as_str), Some("login"));
    assert_eq!(v.get("user").and_then(Value::as_str), Some("ada"));
    let resp = Response::Status { status: status() };
    let frame = encode_frame(&resp, DEFAULT_MAX_FRAME).unwrap();
    let v: Value = rmp_serde::from_slice(&frame[4..]).unwrap();
    assert_eq!(v.get("type").and_then(Value::as_str), Some("status"));
    assert_eq!(
        v.get("status")
            .and_then(|s| s.get("status"))
            .and_then(Value::as_str),
        Some("QUEUED")
    );
}

#[test]
fn submit_defaults_apply_when_optional_fields_are_absent() {
    let body = rmp_serde::to_vec_named(&json(
        r#"{"op": "submit", "token": "t", "backend": "singlequdit", "job": {}}"#,
    ))
    .unwrap();
    let req: Request = decode_body(&body).unwrap();
    assert_eq!(
        req,
        Request::Submit {
            token: "t".into(),
            backend: "singlequdit".into(),
            job: Value::Map(vec![]),
            qobj_id: None,
            priority: 0,
            tags: vec![],
            idempotency_key: None,
        }
    );
}

#[test]
fn validation_error_body_carries_details_and_total() {
    let report = shotline_protocol::validate_job(&instr_job("[]"), &backend()).unwrap_err();
    let body = ErrorBody::validation(report);
    assert_eq!(body.code, codes::VALIDATION_FAILED);
    assert_eq!(body.total_errors, 1);
    assert_eq!(body.path.as_deref(), Some("experiment_0.instructions"));
    assert_eq!(
        body.details[0].code,
        shotline_protocol::ErrorCode::EmptyInstructions
    );
    assert!(
        body.message.contains("EMPTY_INSTRUCTIONS"),
        "{}",
        body.message
    );
    let text = body.to_string();
    assert!(text.starts_with("VALIDATION_FAILED: "), "{text}");
    assert!(
        text.contains("experiment_0.instructions: EMPTY_INSTRUCTIONS"),
        "{text}"
    );
}

#[test]
fn oversized_and_empty_frames_are_rejected() {
    let req = all_requests().remove(3);
    let err = encode_frame(&req, 16).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { max: 16, .. }), "{err}");
    assert!(err.to_string().contains("exceeds the limit of 16 bytes"));
    let err = frame_len(1025u32.to_be_bytes(), 1024).unwrap_err();
    assert_eq!(
        err,
        FrameError::TooLarge {
            len: 1025,
            max: 1024
        }
    );
    assert_eq!(
        frame_len([0xff; 4], DEFAULT_MAX_FRAME).unwrap_err(),
        FrameError::TooLarge {
            len: u32::MAX as usize,
            max: DEFAULT_MAX_FRAME
        }
    );
    assert_eq!(frame_len([0; 4], 1024).unwrap_err(), FrameError::Empty);
    assert_eq!(frame_len(1024u32.to_be_bytes(), 1024).unwrap(), 1024);
    assert_eq!(decode_body::<Request>(&[]).unwrap_err(), FrameError::Empty);
}

fn decode_err(body: &[u8]) -> String {
    match decode_body::<Request>(body) {
        Err(FrameError::Decode(msg)) => msg,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn integer_keys_garbage_and_trailing_bytes_are_decode_errors() {
    let int_keys = Value::Map(vec![(Value::UInt(1), Value::from("login"))]);
    decode_err(&rmp_serde::to_vec(&int_keys).unwrap());
    decode_err(&[0xc1, 0xff, 0x00, 0x13]);
    decode_err(b"not msgpack at all");
    let mut body = rmp_serde::to_vec_named(&all_requests()[1]).unwrap();
    body.push(0x00);
    let msg = decode_err(&body);
    assert!(msg.contains("trailing"), "{msg}");
    // deeply nested arrays are refused, not a stack overflow
    let deep = vec![0x91u8; 100_000];
    decode_err(&deep);
}

#[test]
fn unknown_op_error_names_the_existing_ops() {
    let body = rmp_serde::to_vec_named(&json(r#"{"op": "delete", "token": "t"}"#)).unwrap();
    let msg = decode_err(&body);
    for op in ["login", "backends", "backend", "submit", "status", "result"] {
        assert!(msg.contains(op), "{msg}");
    }
    let full = FrameError::Decode(msg).to_string();
    assert!(full.starts_with("cannot decode frame body"), "{full}");
}

#[test]
fn an_estop_report_round_trips_and_names_what_is_not_safe() {
    use shotline_protocol::wire::{BackendEstop, DeviceSafeState, EstopReport};
    let device = |name: &str, safe: bool| DeviceSafeState {
        device: name.into(),
        safe,
        reason: (!safe).then(|| "still busy after 1000 ms".to_string()),
    };
    let report = EstopReport::new(vec![
        BackendEstop {
            backend: "a".into(),
            answered: true,
            paused: true,
            job_id: Some("job-1".into()),
            job_settled: false,
            devices: vec![device("rf", false), device("camera", true)],
            error: None,
        },
        BackendEstop {
            backend: "b".into(),
            answered: true,
            paused: true,
            job_id: None,
            job_settled: false,
            devices: vec![device("rf", true)],
            error: None,
        },
    ]);
    assert!(!report.all_safe);
    assert!(
        report.message.contains("a/rf NOT SAFE: still busy"),
        "{}",
        report.message
    );
    assert!(!report.message.contains("camera"), "{}", report.message);
    let resp = Response::Estopped(report);
    assert_eq!(round_trip(&resp), resp);
}

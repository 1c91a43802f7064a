//! The bad-input corpus ("nothing lost"): hostile frames over real QUIC, invalid jobs, broken configs and
//! bad device programs, each case one line of data with its expected error. After every category the test
//! checks that nothing was lost or corrupted: a job accepted before the bad input still has its status and
//! result, the connection and the server still answer, the device still takes a valid program.
//!
//! Cases: frames below ([`frame_cases`]), jobs in `tests/corpus/jobs.json` plus [`value_job_cases`] (values
//! JSON cannot express), configs in [`CONFIG_CASES`], devices in [`device_cases`].
//!
//! These tests are about devices, physics and the protocol, not the store: they run on the default engine
//! (SQLite). The store's behaviour through the runtime runs on both engines (embedding, e2e, crash,
//! faults, supervision, limits, remote).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use shotline::config::{parse_str, ConfigError, SIM_YAML};
use shotline::protocol::wire::{decode_body, Response};
use shotline::protocol::{JobStatus, Value};
use shotline::{SubmitOptions, LOCAL_USER};
use shotline_actors::service::jobs::JobQuery;
use shotline_client::Client;
use shotline_hal::lifecycle::DeviceState;
use shotline_hal::sim::{Coupling, InjectedFault, SimDevice, SimDriver, SimWorld};
use shotline_hal::timeline::{TimelineError, MAX_SHOT_NS};
use shotline_hal::{Action, Device, DeviceError, DeviceTimeline, Event, Readout, ShotContext};

use crate::common::*;

/// Cases run so far by every category (the corpus total is asserted in [`corpus_is_at_least_50_cases`]).
static RUN: AtomicUsize = AtomicUsize::new(0);

// ------------------------------------------------------------------------------------------------
// Values and frames

fn vs(s: &str) -> Value {
    Value::Str(s.into())
}

fn vu(n: u64) -> Value {
    Value::UInt(n)
}

fn va(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn vm(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (vs(k), v)).collect())
}

/// One experiment `e` of one shot: an optional gate and a measure.
fn job_with(gate: Option<Value>, shots: Value) -> Value {
    let mut ins = Vec::new();
    ins.extend(gate);
    ins.push(va(vec![vs("measure"), va(vec![vu(0)]), va(vec![])]));
    vm(vec![(
        "e",
        vm(vec![
            ("instructions", va(ins)),
            ("num_wires", vu(1)),
            ("shots", shots),
        ]),
    )])
}

fn rlx(theta: Value) -> Value {
    va(vec![vs("rlx"), va(vec![vu(0)]), va(vec![theta])])
}

/// Length prefix + body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn mp(v: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&v).unwrap()
}

fn mpv(v: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

/// A raw msgpack map of string keys to already-encoded values.
fn raw_map(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | u8::try_from(entries.len()).unwrap()];
    for (k, v) in entries {
        out.extend(mp(json!(k)));
        out.extend_from_slice(v);
    }
    out
}

fn submit(token: &str, job: Value) -> Vec<u8> {
    frame(&mpv(&vm(vec![
        ("op", vs("submit")),
        ("token", vs(token)),
        ("backend", vs("singlequdit")),
        ("job", job),
    ])))
}

fn whoami(token: &str) -> Vec<u8> {
    frame(&mp(json!({"op": "whoami", "token": token})))
}

/// What the server must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// One error frame with this code.
    Err(&'static str),
    /// One `VALIDATION_FAILED` frame whose first detail has this code.
    Invalid(&'static str),
    /// One frame of this response type (the bad part is ignored).
    Ok(&'static str),
}

/// Data a frame case may use.
struct Fx {
    token: String,
    job_id: String,
}

/// One hostile stream: the bytes, whether the client finishes its side, the expected answer.
struct FrameCase {
    name: &'static str,
    bytes: fn(&Fx) -> Vec<u8>,
    finish: bool,
    expect: Expect,
}

const MALFORMED: &str = "MALFORMED_REQUEST";
const TOO_LARGE: &str = "FRAME_TOO_LARGE";
const UNAUTH: &str = "UNAUTHENTICATED";

/// The frame limit of the server under test (so "just above" is known).
const MAX_FRAME: u64 = 4096;

fn case(name: &'static str, bytes: fn(&Fx) -> Vec<u8>, expect: Expect) -> FrameCase {
    FrameCase {
        name,
        bytes,
        finish: true,
        expect,
    }
}

#[rustfmt::skip]
fn frame_cases() -> Vec<FrameCase> {
    use Expect::*;
    vec![
        case("empty stream", |_| vec![], Err(MALFORMED)),
        case("two bytes of header", |_| vec![0, 0], Err(MALFORMED)),
        case("http request", |_| b"GET / HTTP/1.1\r\n\r\n".to_vec(), Err(TOO_LARGE)),
        case("length prefix 0", |_| vec![0, 0, 0, 0], Err(MALFORMED)),
        case("length prefix 0 then a body", |_| [0, 0, 0, 0, 0x80].to_vec(), Err(MALFORMED)),
        case("length one above the limit", |_| (MAX_FRAME as u32 + 1).to_be_bytes().to_vec(), Err(TOO_LARGE)),
        case("length u32::MAX", |_| u32::MAX.to_be_bytes().to_vec(), Err(TOO_LARGE)),
        case("body above the limit", |_| frame(&vec![0xc0; MAX_FRAME as usize + 10]), Err(TOO_LARGE)),
        case("truncated body", |_| { let mut f = 100u32.to_be_bytes().to_vec(); f.extend([0x81; 10]); f }, Err(MALFORMED)),
        case("reserved msgpack byte", |_| frame(&[0xc1]), Err(MALFORMED)),
        case("random bytes", |_| frame(&[0xde, 0xad, 0xbe, 0xef, 0x13, 0x37]), Err(MALFORMED)),
        case("msgpack integer", |_| frame(&mp(json!(42))), Err(MALFORMED)),
        case("msgpack string", |_| frame(&mp(json!("whoami"))), Err(MALFORMED)),
        case("msgpack nil", |_| frame(&mp(json!(null))), Err(MALFORMED)),
        case("msgpack array of numbers", |_| frame(&mp(json!([1, 2, 3]))), Err(MALFORMED)),
        case("empty map", |_| frame(&mp(json!({}))), Err(MALFORMED)),
        case("map without op", |f| frame(&mp(json!({"token": f.token}))), Err(MALFORMED)),
        case("unknown op", |f| frame(&mp(json!({"op": "format_disk", "token": f.token}))), Err(MALFORMED)),
        case("op in upper case", |f| frame(&mp(json!({"op": "WHOAMI", "token": f.token}))), Err(MALFORMED)),
        case("op out of the variant range", |f| frame(&mp(json!({"op": 99, "token": f.token}))), Err(MALFORMED)),
        case("job_id an integer", |f| frame(&mp(json!({"op": "status", "token": f.token, "job_id": 42}))), Err(MALFORMED)),
        case("token an array", |f| frame(&mp(json!({"op": "whoami", "token": [f.token]}))), Err(MALFORMED)),
        case("priority a string", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": {}, "priority": "high"}))), Err(MALFORMED)),
        case("priority above i32", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": {}, "priority": 1u64 << 40}))), Err(MALFORMED)),
        case("priority nil", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": {}, "priority": null}))), Err(MALFORMED)),
        case("tags not a list", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": {}, "tags": "x"}))), Err(MALFORMED)),
        case("jobs limit negative", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "limit": -1}))), Err(MALFORMED)),
        case("request missing its token", |_| frame(&mp(json!({"op": "backends"}))), Err(MALFORMED)),
        case("submit missing its token", |_| frame(&mp(json!({"op": "submit", "backend": "singlequdit", "job": {}}))), Err(MALFORMED)),
        case("empty token", |_| frame(&mp(json!({"op": "backends", "token": ""}))), Err(UNAUTH)),
        case("forged token", |_| frame(&mp(json!({"op": "backends", "token": "0".repeat(64)}))), Err(UNAUTH)),
        case("token with NUL bytes", |_| frame(&mp(json!({"op": "whoami", "token": "\0\0\0"}))), Err(UNAUTH)),
        case("integer map keys", |_| frame(&mpv(&Value::Map(vec![(vu(0), vs("whoami")), (vu(1), vs("x"))]))), Err(MALFORMED)),
        case("duplicate token key", |f| frame(&mpv(&Value::Map(vec![(vs("op"), vs("whoami")), (vs("token"), vs(&f.token)), (vs("token"), vs("forged"))]))), Err(MALFORMED)),
        case("invalid UTF-8 token", |_| frame(&raw_map(&[("op", &mp(json!("whoami"))), ("token", &[0xa2, 0xff, 0xfe])])), Err(MALFORMED)),
        case("array announcing 4 billion items", |_| frame(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]), Err(MALFORMED)),
        case("string announcing 4 GB", |_| frame(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']), Err(MALFORMED)),
        case("map announcing 4 billion entries", |_| frame(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa2, b'o', b'p']), Err(MALFORMED)),
        case("deeply nested job", |f| { let mut j = vu(1); for _ in 0..200 { j = va(vec![j]); } submit(&f.token, j) }, Err(MALFORMED)),
        case("deeply nested maps", |f| { let mut j = vu(1); for _ in 0..200 { j = vm(vec![("e", j)]); } submit(&f.token, j) }, Err(MALFORMED)),
        case("trailing byte inside the frame", |f| { let mut b = mp(json!({"op": "whoami", "token": f.token})); b.push(0xc0); frame(&b) }, Err(MALFORMED)),
        case("two messages in one frame", |f| { let mut b = mp(json!({"op": "whoami", "token": f.token})); b.extend(mp(json!({"op": "estop", "token": f.token}))); frame(&b) }, Err(MALFORMED)),
        case("valid frame followed by garbage", |f| { let mut b = whoami(&f.token); b.extend_from_slice(b"\xff\xff garbage"); b }, Ok("whoami")),
        case("valid frame followed by a second frame", |f| { let mut b = whoami(&f.token); b.extend(frame(&mp(json!({"op": "estop", "token": f.token})))); b }, Ok("whoami")),
        case("NaN param", |f| submit(&f.token, job_with(Some(rlx(Value::Float(f64::NAN))), vu(1))), Invalid("PARAM_NOT_FINITE")),
        case("infinite param", |f| submit(&f.token, job_with(Some(rlx(Value::Float(f64::INFINITY))), vu(1))), Invalid("PARAM_NOT_FINITE")),
        case("infinite shots", |f| submit(&f.token, job_with(None, Value::Float(f64::INFINITY))), Invalid("INVALID_TYPE")),
        case("shots as bytes", |f| submit(&f.token, job_with(None, Value::Bytes(vec![1]))), Invalid("INVALID_TYPE")),
        case("job of nothing but nil", |f| submit(&f.token, Value::Nil), Invalid("INVALID_TYPE")),
        case("unknown backend", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "../../etc/passwd", "job": {}}))), Err("NOT_FOUND")),
        case("status of an unknown job", |f| frame(&mp(json!({"op": "status", "token": f.token, "job_id": "nope"}))), Err("NOT_FOUND")),
        case("result of a 3000-character job id", |f| frame(&mp(json!({"op": "result", "token": f.token, "job_id": "x".repeat(3000)}))), Err("NOT_FOUND")),
        case("cancel with SQL in the job id", |f| frame(&mp(json!({"op": "cancel", "token": f.token, "job_id": "' OR 1=1; --"}))), Err("NOT_FOUND")),
        case("watch of an unknown job", |f| frame(&mp(json!({"op": "watch", "token": f.token, "job_id": "nope"}))), Err("NOT_FOUND")),
        case("watch with a forged token", |f| frame(&mp(json!({"op": "watch", "token": "forged", "job_id": f.job_id}))), Err(UNAUTH)),
        case("jobs page of 0", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "limit": 0}))), Err("INVALID_ARGUMENT")),
        case("jobs since garbage", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "since": "yesterday-ish"}))), Err("INVALID_ARGUMENT")),
        case("jobs of everyone as a user", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "all": true}))), Err("FORBIDDEN")),
        case("estop as a user", |f| frame(&mp(json!({"op": "estop", "token": f.token}))), Err("FORBIDDEN")),
        case("pause as a user", |f| frame(&mp(json!({"op": "pause_backend", "token": f.token, "name": "singlequdit"}))), Err("FORBIDDEN")),
        case("register while disabled", |_| frame(&mp(json!({"op": "register", "user": "mallory", "password": "password123"}))), Err("FORBIDDEN")),
        case("login with a wrong password", |_| frame(&mp(json!({"op": "login", "user": "alice", "password": "guess"}))), Err("INVALID_CREDENTIALS")),
        case("login of nobody", |_| frame(&mp(json!({"op": "login", "user": "", "password": ""}))), Err("INVALID_CREDENTIALS")),
        case("empty idempotency key", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "idempotency_key": "", "job": {"e": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}}}))), Err("INVALID_ARGUMENT")),
        case("idempotency key reused for another body", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "idempotency_key": "first", "job": {"e": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 2}}}))), Err("IDEMPOTENCY_CONFLICT")),
        case("jobs since a 13th month", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "since": "2026-13-40T00:00:00Z"}))), Err("INVALID_ARGUMENT")),
        case("jobs until February 30", |f| frame(&mp(json!({"op": "jobs", "token": f.token, "until": "2026-02-30T10:00:00Z"}))), Err("INVALID_ARGUMENT")),
        case("33 tags", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "tags": vec!["t"; 33], "job": {"e": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}}}))), Err("INVALID_ARGUMENT")),
        case("a tag of 300 bytes", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "tags": ["t".repeat(300)], "job": {"e": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}}}))), Err("INVALID_ARGUMENT")),
        case("a qobj_id of 300 bytes", |f| frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "qobj_id": "q".repeat(300), "job": {"e": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}}}))), Err("INVALID_ARGUMENT")),
        case("an experiment name of 300 bytes", |f| { let mut job = serde_json::Map::new(); job.insert("e".repeat(300), json!({"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1})); frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": job}))) }, Invalid("INVALID_EXPERIMENT_NAME")),
        case("eleven million shots", |f| { let job: serde_json::Map<String, serde_json::Value> = (0..11).map(|i| (format!("e{i}"), json!({"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1_000_000}))).collect(); frame(&mp(json!({"op": "submit", "token": f.token, "backend": "singlequdit", "job": job}))) }, Invalid("TOO_MANY_SHOTS")),
        FrameCase { name: "body that never completes", bytes: |_| { let mut f = 50u32.to_be_bytes().to_vec(); f.extend([0x81; 5]); f }, finish: false, expect: Err(MALFORMED) },
        FrameCase { name: "header that never completes", bytes: |_| vec![0, 0], finish: false, expect: Err(MALFORMED) },
    ]
}

/// Requests in encodings the protocol does not define ("one msgpack map with string keys, tagged by the
/// string `op`") that the gateway nevertheless executes: serde's derived decoding of the internally
/// tagged `Request` also takes a sequence (first element = tag), a variant index or bytes for `op`, and a
/// field index as a key. See [`lenient_decodings_are_refused`].
#[rustfmt::skip]
fn lenient_decoding_cases() -> Vec<FrameCase> {
    use Expect::*;
    vec![
        case("array with the op first", |f| frame(&mp(json!(["whoami", f.token]))), Err(MALFORMED)),
        case("op as a variant index", |f| frame(&mp(json!({"op": 7, "token": f.token}))), Err(MALFORMED)),
        case("op as bytes", |f| frame(&mpv(&Value::Map(vec![(vs("op"), Value::Bytes(b"whoami".to_vec())), (vs("token"), vs(&f.token))]))), Err(MALFORMED)),
        case("integer key for a field", |f| frame(&mpv(&Value::Map(vec![(vs("op"), vs("whoami")), (vu(0), vs(&f.token))]))), Err(MALFORMED)),
    ]
}

/// Sends one case on a new stream of `client`; returns every response frame and whether the server finished
/// the stream.
async fn exchange(client: &Client, bytes: &[u8], finish: bool) -> (Vec<Response>, bool) {
    let (mut send, mut recv) = client.connection().open_bi().await.unwrap();
    // The server may stop reading early (a too-large frame): a failed write is part of the case.
    let _ = send.write_all(bytes).await;
    if finish {
        let _ = send.finish();
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let finished = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match recv.read(&mut chunk).await {
                Ok(Some(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let body = &rest[4..(4 + len).min(rest.len())];
        frames.push(decode_body::<Response>(body).unwrap());
        rest = &rest[(4 + len).min(rest.len())..];
    }
    assert!(rest.is_empty(), "a partial frame from the server: {buf:?}");
    (frames, finished)
}

fn check_frame(
    name: &str,
    expect: Expect,
    frames: &[Response],
    finished: bool,
) -> Result<(), String> {
    if !finished {
        return Err(format!(
            "{name}: the server did not finish the stream ({frames:?})"
        ));
    }
    let [only] = frames else {
        return Err(format!(
            "{name}: expected one response frame, got {frames:?}"
        ));
    };
    match (expect, only) {
        (Expect::Err(code), Response::Error { error }) if error.code == code => {
            if error.message.is_empty() {
                return Err(format!("{name}: an error without a message"));
            }
            Ok(())
        }
        (Expect::Invalid(code), Response::Error { error })
            if error.code == "VALIDATION_FAILED"
                && error.details.first().map(|d| d.code.as_str()) == Some(code) =>
        {
            Ok(())
        }
        (Expect::Ok(kind), r) if serde_json::to_value(r).unwrap()["type"] == kind => Ok(()),
        (e, r) => Err(format!("{name}: expected {e:?}, got {r:?}")),
    }
}

async fn serve() -> Remote {
    let mut config = sim_config();
    config.limits.max_frame_bytes = MAX_FRAME;
    config.limits.request_timeout_ms = 300;
    serve_remote(&TestEngine::sqlite(), config).await
}

fn small_job(shots: u32) -> serde_json::Value {
    job1(
        json!([
            ["load", [0], [3]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        shots,
        Some(7),
    )
}

/// Runs frame cases on one connection; returns the failures. The connection must survive every case.
async fn run_frames(c: &Client, fx: &Fx, cases: &[FrameCase]) -> Vec<String> {
    let mut failures = Vec::new();
    for fc in cases {
        let (frames, finished) = exchange(c, &(fc.bytes)(fx), fc.finish).await;
        if let Err(e) = check_frame(fc.name, fc.expect, &frames, finished) {
            failures.push(e);
        }
        assert!(
            c.connection().close_reason().is_none(),
            "{}: the connection was closed",
            fc.name
        );
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_a_clear_error_and_change_nothing() {
    let s = serve().await;
    s.rt.service()
        .add_user("alice", "password123", false)
        .await
        .unwrap();
    let c = s.client().await;
    let token = c.login("alice", "password123").await.unwrap().token;
    // A job accepted before the hostile input (with an idempotency key, for the conflict case).
    let job: Value = serde_json::from_value(small_job(20)).unwrap();
    let before = c
        .submit(
            &token,
            "singlequdit",
            job,
            shotline_client::SubmitOptions {
                idempotency_key: Some("first".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let done = c
        .watch(&token, &before.job_id, false, |_| {})
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Done);
    let result_before =
        serde_json::to_value(c.result(&token, &before.job_id).await.unwrap()).unwrap();

    let fx = Fx {
        token: token.clone(),
        job_id: before.job_id.clone(),
    };
    let cases = frame_cases();
    let failures = run_frames(&c, &fx, &cases).await;
    RUN.fetch_add(cases.len(), Ordering::SeqCst);
    println!("frame cases: {}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} frame cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing lost or corrupted; the same connection and a new one still work.
    assert_eq!(c.whoami(&token).await.unwrap(), ("alice".into(), false));
    assert_eq!(
        c.status(&token, &before.job_id).await.unwrap().status,
        JobStatus::Done
    );
    let result_after =
        serde_json::to_value(c.result(&token, &before.job_id).await.unwrap()).unwrap();
    assert_eq!(result_after, result_before);
    let (jobs, _) = c.jobs(&token, Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 1, "a hostile frame created a job: {jobs:?}");
    let fresh = s.client().await;
    assert_eq!(fresh.backends(&token).await.unwrap()[0].name, "singlequdit");
    let again: Value = serde_json::from_value(small_job(5)).unwrap();
    let sub = c
        .submit(&token, "singlequdit", again, Default::default())
        .await
        .unwrap();
    let end = c.watch(&token, &sub.job_id, false, |_| {}).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    s.rt.shutdown().await.unwrap();
}

/// Encodings outside the protocol must be refused like any other malformed request, not executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_decodings_are_refused() {
    let s = serve().await;
    s.rt.service()
        .add_user("alice", "password123", false)
        .await
        .unwrap();
    let c = s.client().await;
    let token = c.login("alice", "password123").await.unwrap().token;
    let fx = Fx {
        token: token.clone(),
        job_id: String::new(),
    };
    let cases = lenient_decoding_cases();
    let failures = run_frames(&c, &fx, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(c.whoami(&token).await.unwrap(), ("alice".into(), false));
    s.rt.shutdown().await.unwrap();
}

// ------------------------------------------------------------------------------------------------
// Jobs

/// One invalid job: what is submitted and the expected service code, validation code and path.
struct JobCase {
    name: String,
    backend: String,
    idempotency_key: Option<String>,
    job: Value,
    /// Service error code.
    error: String,
    /// First validation error (code, path), for `VALIDATION_FAILED`.
    first: Option<(String, String)>,
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

/// The cases of `tests/corpus/jobs.json` (parsed as [`Value`], so duplicate keys survive).
fn fixture_job_cases() -> Vec<JobCase> {
    let all: Value = serde_json::from_str(include_str!("../corpus/jobs.json")).unwrap();
    let Value::Array(items) = all else {
        panic!("jobs.json must be an array");
    };
    items
        .iter()
        .map(|c| {
            let name = str_field(c, "name").expect("every case has a name");
            let first = str_field(c, "code").map(|code| {
                (
                    code,
                    str_field(c, "path").unwrap_or_else(|| panic!("{name}: code without path")),
                )
            });
            JobCase {
                backend: str_field(c, "backend").unwrap_or_else(|| "singlequdit".into()),
                idempotency_key: str_field(c, "idempotency_key"),
                job: c
                    .get("job")
                    .cloned()
                    .unwrap_or_else(|| panic!("{name}: no job")),
                error: str_field(c, "error").unwrap_or_else(|| "VALIDATION_FAILED".into()),
                first,
                name,
            }
        })
        .collect()
}

/// Jobs JSON cannot express: non-string keys, non-finite floats, bytes.
#[rustfmt::skip]
fn value_job_cases() -> Vec<JobCase> {
    let invalid = |name: &str, job: Value, code: &str, path: &str| JobCase {
        name: name.into(),
        backend: "singlequdit".into(),
        idempotency_key: None,
        job,
        error: "VALIDATION_FAILED".into(),
        first: Some((code.into(), path.into())),
    };
    let measure_only = || match job_with(None, vu(1)) {
        Value::Map(mut m) => m.remove(0).1,
        _ => unreachable!(),
    };
    vec![
        invalid("NaN param", job_with(Some(rlx(Value::Float(f64::NAN))), vu(1)), "PARAM_NOT_FINITE", "e.instructions[0].params[0]"),
        invalid("+inf param", job_with(Some(rlx(Value::Float(f64::INFINITY))), vu(1)), "PARAM_NOT_FINITE", "e.instructions[0].params[0]"),
        invalid("-inf param", job_with(Some(rlx(Value::Float(f64::NEG_INFINITY))), vu(1)), "PARAM_NOT_FINITE", "e.instructions[0].params[0]"),
        invalid("NaN shots", job_with(None, Value::Float(f64::NAN)), "INVALID_TYPE", "e.shots"),
        invalid("integer experiment name", Value::Map(vec![(vu(0), measure_only())]), "INVALID_TYPE", "job"),
        invalid("nil experiment name", Value::Map(vec![(Value::Nil, measure_only())]), "INVALID_TYPE", "job"),
        invalid("integer field key", vm(vec![("e", Value::Map(vec![(vu(3), vu(1))]))]), "UNKNOWN_FIELD", "e"),
        invalid("instruction name as bytes", job_with(Some(va(vec![Value::Bytes(b"rlx".to_vec()), va(vec![vu(0)]), va(vec![Value::Float(1.0)])])), vu(1)), "MALFORMED_INSTRUCTION", "e.instructions[0].name"),
        invalid("wire as a bool", job_with(Some(va(vec![vs("rlx"), va(vec![Value::Bool(true)]), va(vec![Value::Float(1.0)])])), vu(1)), "MALFORMED_INSTRUCTION", "e.instructions[0].wires[0]"),
        invalid("param as a map", job_with(Some(rlx(vm(vec![("theta", Value::Float(1.0))]))), vu(1)), "MALFORMED_INSTRUCTION", "e.instructions[0].params[0]"),
        invalid("shots i64::MIN", job_with(None, Value::Int(i64::MIN)), "SHOTS_OUT_OF_RANGE", "e.shots"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_refused_with_code_and_path_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config();
    config.backends[0].max_experiments = 2;
    let rt = start_in(&TestEngine::sqlite(), dir.path(), config).await;
    // A job accepted before the bad ones (it also creates the local user).
    let result_before = run_ok(&rt, &small_job(20)).await;
    let user = rt.service().user(LOCAL_USER).await.unwrap();
    let (listed, _) = rt.service().jobs(&user, JobQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    let job_id = listed[0].job_id.clone();

    let mut cases = fixture_job_cases();
    cases.extend(value_job_cases());
    let mut failures = Vec::new();
    for c in &cases {
        let options = SubmitOptions {
            idempotency_key: c.idempotency_key.clone(),
            ..Default::default()
        };
        let outcome = rt
            .service()
            .submit(&user, &c.backend, &c.job, options)
            .await;
        let e = match outcome {
            Ok(s) => {
                failures.push(format!("{}: accepted as job {}", c.name, s.job_id));
                continue;
            }
            Err(e) => e,
        };
        if e.code != c.error {
            failures.push(format!("{}: expected {}, got {e}", c.name, c.error));
            continue;
        }
        if let Some((code, path)) = &c.first {
            let first = e.report.as_ref().and_then(|r| r.errors.first());
            match first {
                Some(f) if f.code.as_str() == code && &f.path == path => {
                    if e.path.as_deref() != Some(path.as_str()) {
                        failures.push(format!(
                            "{}: error path {:?}, first detail at {path}",
                            c.name, e.path
                        ));
                    }
                }
                _ => failures.push(format!(
                    "{}: expected {code} at {path}, got {:?}",
                    c.name,
                    e.report.as_ref().map(|r| &r.errors)
                )),
            }
        }
    }
    // The embedding API (JSON) answers the same for the JSON-expressible cases.
    for c in cases.iter().take(5) {
        if let Ok(json) = serde_json::to_value(&c.job) {
            let e = rt
                .submit(&c.backend, &json, SubmitOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.code, c.error, "{} through Runtime::submit", c.name);
        }
    }
    RUN.fetch_add(cases.len(), Ordering::SeqCst);
    println!("job cases: {}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} job cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing lost: still one job, still DONE with the same result; a valid job still runs.
    let (listed, _) = rt.service().jobs(&user, JobQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1, "an invalid job was stored: {listed:?}");
    assert_eq!(rt.status(&job_id).await.unwrap().status, JobStatus::Done);
    assert_eq!(
        serde_json::to_value(rt.result(&job_id).await.unwrap()).unwrap(),
        serde_json::to_value(&result_before).unwrap()
    );
    run_ok(&rt, &small_job(5)).await;
    rt.shutdown().await.unwrap();
}

// ------------------------------------------------------------------------------------------------
// Configs

/// A broken config: `from` replaced by `to` in the embedded `sim.yaml` (`from` empty: `to` is the whole
/// text); the expected issue path (empty: a YAML syntax error) and the text whose line the error names.
struct ConfigCase {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    path: &'static str,
    at: &'static str,
}

const fn cc(
    name: &'static str,
    from: &'static str,
    to: &'static str,
    path: &'static str,
    at: &'static str,
) -> ConfigCase {
    ConfigCase {
        name,
        from,
        to,
        path,
        at,
    }
}

#[rustfmt::skip]
const CONFIG_CASES: &[ConfigCase] = &[
    cc("unclosed flow sequence", "listen: 127.0.0.1:7878", "listen: [127.0.0.1", "", "logging:"),
    cc("unclosed quote", "display_name: \"Single qudit (simulated)\"", "display_name: \"Single qudit", "", "description:"),
    cc("tab indentation", "  level: info", "\tlevel: info", "", "\tlevel"),
    cc("unknown top-level key", "logging:\n", "loging:\n", "loging", "loging:"),
    cc("unknown backend key", "max_atoms: 500", "max_atom: 500", "backends[0].max_atom", "max_atom:"),
    cc("unknown key in a flow mapping", "{ device: mot, duration_ns: 20000 }", "{ device: mot, duration: 20000 }", "backends[0].sequence.load.duration", "duration:"),
    cc("string for an integer", "max_shots: 1000000", "max_shots: lots", "backends[0].max_shots", "max_shots:"),
    cc("negative for an unsigned", "max_experiments: 1000", "max_experiments: -1", "backends[0].max_experiments", "max_experiments:"),
    cc("mapping for an enum (unknown variant a)", "level: info", "level: {a: 1}", "logging.level.a", "level:"),
    cc("bad log level", "level: info", "level: loud", "logging.level", "level:"),
    cc("bad driver", "{ name: mot, driver: sim_ttl", "{ name: mot, driver: real_laser", "backends[0].devices[0].driver", "real_laser"),
    cc("bad model", "model: singlequdit", "model: multiqudit", "backends[0].model", "model:"),
    cc("max_shots out of range", "max_shots: 1000000", "max_shots: 2000000", "backends[0].max_shots", "max_shots:"),
    cc("realtime priority 0", "priority: 80", "priority: 0", "backends[0].timing.realtime.priority", "priority:"),
    cc("clock period 0", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: sim_dds, clock_period_ns: 0 }", "backends[0].devices[1].clock_period_ns", "clock_period_ns: 0"),
    cc("NaN rate", "rlz: { device: detuning, rate_hz: 10000.0 }", "rlz: { device: detuning, rate_hz: .nan }", "backends[0].sequence.rlz.rate_hz", ".nan"),
    cc("token ttl of 5 s", "logging:\n", "auth: { token_ttl_s: 5 }\nlogging:\n", "auth.token_ttl_s", "token_ttl_s"),
    cc("frame limit of 10 bytes", "logging:\n", "limits:\n  max_frame_bytes: 10\nlogging:\n", "limits.max_frame_bytes", "max_frame_bytes"),
    cc("bad listen address", "listen: 127.0.0.1:7878", "listen: localhost:99999", "service.listen", "listen:"),
    cc("duplicate YAML key", "  listen: 127.0.0.1:7878\n", "  listen: 127.0.0.1:7878\n  listen: 127.0.0.1:7879\n", "service.listen", "listen: 127.0.0.1:7879"),
    cc("tls files mode without files", "mode: self_signed", "mode: files", "tls.cert", "tls:"),
    cc("cert in self-signed mode", "mode: self_signed", "mode: self_signed\n  cert: /etc/cert.pem", "tls.cert", "cert:"),
    cc("duplicate device name", "{ name: detuning,", "{ name: rf,", "backends[0].devices[2].name", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }\n      - { name: interaction"),
    cc("sequence naming a missing device", "rlx: { device: rf,", "rlx: { device: laser,", "backends[0].sequence.rlx.device", "laser"),
    cc("sequence device of the wrong kind", "measure: { device: camera,", "measure: { device: rf,", "backends[0].sequence.measure.device", "measure: { device: rf"),
    cc("invalid backend name", "name: singlequdit", "name: \"Single Qudit!\"", "backends[0].name", "Single Qudit!"),
    cc("missing backends section", "", "service:\n  listen: 127.0.0.1:7878\n", "backends", "service:"),
    cc("empty backends list", "", "service: {}\nbackends: []\n", "backends", "backends:"),
    cc("duplicate backend name", "", "service: {}\nbackends:\n  - { name: a, model: singlequdit }\n  - { name: a, model: singlequdit, version: \"2\" }\n", "backends[1].name", "version"),
    cc("document is a list", "", "- service\n- backends\n", "", "- service"),
    cc("bridge driver without its section", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1 }", "backends[0].devices[1].bridge", "driver: bridge"),
    cc("bridge section on a simulated device", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: sim_dds, clock_period_ns: 1, bridge: { address: \"h:1\" } }", "backends[0].devices[1].bridge", "bridge:"),
    cc("bridge tcp address without a port", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { address: card.lab } }", "backends[0].devices[1].bridge.address", "bridge:"),
    cc("bridge serial without a path", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { transport: serial } }", "backends[0].devices[1].bridge.path", "bridge:"),
    cc("bridge serial at an odd baud", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { transport: serial, path: /dev/ttyACM0, baud: 12345 } }", "backends[0].devices[1].bridge.baud", "baud:"),
    cc("bridge window 0", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { address: \"h:1\", window: 0 } }", "backends[0].devices[1].bridge.window", "window:"),
    cc("bridge unknown transport", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { transport: usb } }", "backends[0].devices[1].bridge.transport", "usb"),
    cc("bridge unknown key", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { adress: \"h:1\" } }", "backends[0].devices[1].bridge.adress", "adress"),
    cc("ttl bridge asked to rotate", "{ name: rf, driver: sim_dds, clock_period_ns: 1 }", "{ name: rf, driver: bridge, clock_period_ns: 1, bridge: { address: \"h:1\", role: ttl } }", "backends[0].sequence.rlx.device", "rlx:"),
];

fn line_of(text: &str, needle: &str) -> Option<usize> {
    let at = text.find(needle)?;
    Some(text[..at].matches('\n').count() + 1)
}

#[test]
fn broken_configs_are_located_by_path_line_and_column() {
    let mut failures = Vec::new();
    for c in CONFIG_CASES {
        let text = if c.from.is_empty() {
            c.to.to_string()
        } else {
            assert!(
                SIM_YAML.contains(c.from),
                "{}: {:?} is not in sim.yaml",
                c.name,
                c.from
            );
            SIM_YAML.replacen(c.from, c.to, 1)
        };
        let want_line = line_of(&text, c.at);
        let (path, line, column) = match parse_str(&text, "bad.yaml") {
            Ok(_) => {
                failures.push(format!("{}: accepted", c.name));
                continue;
            }
            Err(ConfigError::Syntax { line, column, .. }) => (String::new(), line, column),
            Err(e) => match e
                .issues()
                .iter()
                .find(|i| i.path == c.path)
                .or(e.issues().first())
            {
                Some(i) => (i.path.clone(), i.line, i.column),
                None => {
                    failures.push(format!("{}: no issue in {e}", c.name));
                    continue;
                }
            },
        };
        if path != c.path || line != want_line || column.is_none() {
            failures.push(format!(
                "{}: expected {:?} at line {want_line:?}, got {path:?} at {line:?}:{column:?}",
                c.name, c.path
            ));
        }
    }
    RUN.fetch_add(CONFIG_CASES.len(), Ordering::SeqCst);
    println!("config cases: {}", CONFIG_CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {} config cases failed:\n{}",
        failures.len(),
        CONFIG_CASES.len(),
        failures.join("\n")
    );
    // Nothing shared was touched: the embedded config still parses.
    parse_str(SIM_YAML, "sim.yaml").unwrap();
}

// ------------------------------------------------------------------------------------------------
// Devices

const PERIOD: u64 = 10;

fn ev(t_ns: u64, action: Action) -> Event {
    Event {
        t_ns,
        channel: 0,
        action,
    }
}

fn pulse(t_ns: u64, duration_ns: u64, setpoint: f64) -> Event {
    ev(
        t_ns,
        Action::Pulse {
            duration_ns,
            setpoint,
        },
    )
}

fn program(d: &mut SimDevice, events: Vec<Event>) -> Result<(), DeviceError> {
    let tl = DeviceTimeline {
        device: d.info().name.clone(),
        events,
    };
    d.program(&tl).map(|_| ())
}

/// The valid program of each kind of device.
fn valid(kind: SimDriver) -> Vec<Event> {
    match kind {
        SimDriver::Ttl => vec![pulse(0, 100, 2.0)],
        SimDriver::Dds => vec![pulse(0, 100, 0.5)],
        SimDriver::Camera => vec![ev(0, Action::Acquire { exposure_ns: 1000 })],
    }
}

const SHOT: ShotContext = ShotContext {
    seed: 1,
    experiment: 0,
    shot: 0,
};

/// Programs, arms and runs one shot of the valid program.
fn run_shot(d: &mut SimDevice, kind: SimDriver) -> Result<Readout, DeviceError> {
    program(d, valid(kind))?;
    d.arm()?;
    d.start_shot(&SHOT)?;
    for (i, e) in valid(kind).iter().enumerate() {
        d.apply(i, e, &SHOT)?;
    }
    let mut out = Readout::new();
    d.end_shot(&SHOT, &mut out)?;
    Ok(out)
}

/// One bad device input: the device kind, what is done to it, the expected error (a substring of its
/// label, see [`label`]) and the state it leaves the device in.
struct DeviceCase {
    name: &'static str,
    kind: SimDriver,
    run: fn(&mut SimDevice) -> Result<(), DeviceError>,
    expect: &'static str,
    state: DeviceState,
}

fn label(e: &DeviceError) -> String {
    match e {
        DeviceError::Timeline(t) => {
            let v = match t {
                TimelineError::Unsorted { .. } => "Unsorted",
                TimelineError::Misaligned { what, .. } => {
                    return format!("Timeline::Misaligned({what})")
                }
                TimelineError::Overlap { .. } => "Overlap",
                TimelineError::TooLong { .. } => "TooLong",
                TimelineError::BadValue { .. } => "BadValue",
                TimelineError::NoSuchChannel { .. } => "NoSuchChannel",
            };
            format!("Timeline::{v}")
        }
        DeviceError::WrongState {
            operation, state, ..
        } => format!("WrongState({operation} in {state})"),
        DeviceError::Fault { reason, .. } => format!("Fault({reason})"),
        DeviceError::Busy { .. } => "Busy".into(),
    }
}

fn dc(
    name: &'static str,
    kind: SimDriver,
    run: fn(&mut SimDevice) -> Result<(), DeviceError>,
    expect: &'static str,
    state: DeviceState,
) -> DeviceCase {
    DeviceCase {
        name,
        kind,
        run,
        expect,
        state,
    }
}

#[rustfmt::skip]
fn device_cases() -> Vec<DeviceCase> {
    use DeviceState::{Armed, Fault, Manual, Programmed, Running};
    use SimDriver::{Camera, Dds, Ttl};
    vec![
        dc("overlapping pulses", Dds, |d| program(d, vec![pulse(0, 100, 0.5), pulse(50, 100, 0.5)]), "Timeline::Overlap", Manual),
        dc("unsorted events", Dds, |d| program(d, vec![pulse(100, 10, 0.5), pulse(0, 10, 0.5)]), "Timeline::Unsorted", Manual),
        dc("time off the clock grid", Dds, |d| program(d, vec![pulse(5, 100, 0.5)]), "Timeline::Misaligned(time)", Manual),
        dc("duration off the clock grid", Ttl, |d| program(d, vec![pulse(0, 15, 1.0)]), "Timeline::Misaligned(duration)", Manual),
        dc("event past the longest shot", Dds, |d| program(d, vec![pulse(MAX_SHOT_NS, 10, 0.5)]), "Timeline::TooLong", Manual),
        dc("end time overflows u64", Dds, |d| program(d, vec![pulse(u64::MAX / 10 * 10, 10, 0.5)]), "Timeline::TooLong", Manual),
        dc("NaN setpoint", Dds, |d| program(d, vec![pulse(0, 10, f64::NAN)]), "Timeline::BadValue", Manual),
        dc("infinite setpoint", Ttl, |d| program(d, vec![pulse(0, 10, f64::INFINITY)]), "Timeline::BadValue", Manual),
        dc("channel that does not exist", Dds, |d| program(d, vec![Event { t_ns: 0, channel: 1, action: Action::Pulse { duration_ns: 10, setpoint: 0.5 } }]), "Timeline::NoSuchChannel", Manual),
        dc("channel u16::MAX", Camera, |d| program(d, vec![Event { t_ns: 0, channel: u16::MAX, action: Action::Acquire { exposure_ns: 1000 } }]), "Timeline::NoSuchChannel", Manual),
        dc("DDS amplitude above 1", Dds, |d| program(d, vec![pulse(0, 10, 1.5)]), "outside the device range", Manual),
        dc("negative DDS amplitude", Dds, |d| program(d, vec![pulse(0, 10, -0.1)]), "outside the device range", Manual),
        dc("TTL setpoint above range", Ttl, |d| program(d, vec![pulse(0, 10, 2.0e6)]), "outside the device range", Manual),
        dc("digital edge on a DDS", Dds, |d| program(d, vec![ev(0, Action::Digital { high: true })]), "cannot perform", Manual),
        dc("pulse on a camera", Camera, |d| program(d, vec![pulse(0, 1000, 0.0)]), "cannot perform", Manual),
        dc("acquire on a TTL", Ttl, |d| program(d, vec![ev(0, Action::Acquire { exposure_ns: 10 })]), "cannot perform", Manual),
        dc("bad program after a good one", Dds, |d| { program(d, valid(Dds))?; program(d, vec![pulse(0, 10, f64::NAN)]) }, "Timeline::BadValue", Manual),
        dc("arm before program", Dds, |d| d.arm(), "WrongState(arm in manual)", Manual),
        dc("arm twice", Camera, |d| { program(d, valid(Camera))?; d.arm()?; d.arm() }, "WrongState(arm in armed)", Armed),
        dc("apply before arm", Dds, |d| d.apply(0, &valid(Dds)[0], &SHOT), "WrongState(apply in manual)", Manual),
        dc("apply after program, before arm", Dds, |d| { program(d, valid(Dds))?; d.apply(0, &valid(Dds)[0], &SHOT) }, "WrongState(apply in programmed)", Programmed),
        dc("start shot before arm", Ttl, |d| d.start_shot(&SHOT), "WrongState(start_shot in manual)", Manual),
        dc("end shot never started", Camera, |d| { program(d, valid(Camera))?; d.arm()?; d.end_shot(&SHOT, &mut Readout::new()) }, "WrongState(end_shot in armed)", Armed),
        dc("program while running", Dds, |d| { program(d, valid(Dds))?; d.arm()?; d.start_shot(&SHOT)?; program(d, valid(Dds)) }, "WrongState(program in running)", Running),
        dc("device disconnected", Dds, |d| { d.fault_switch().set(InjectedFault::Disconnect); program(d, valid(Dds)) }, "disconnected", Manual),
        dc("device errors in a shot", Dds, |d| { d.fault_switch().set(InjectedFault::Error { at_shot: 0 }); run_shot(d, Dds).map(|_| ()) }, "injected error", Fault),
        dc("MOT loads no atom", Ttl, |d| { program(d, vec![pulse(0, 100, 0.2)])?; d.arm() }, "cannot load", Fault),
        dc("MOT loads twice", Ttl, |d| { program(d, vec![pulse(0, 100, 2.0), pulse(200, 100, 2.0)])?; d.arm() }, "loaded once", Fault),
    ]
}

fn device(kind: SimDriver, world: &SimWorld) -> SimDevice {
    let coupling = match kind {
        SimDriver::Ttl => Coupling::Load,
        SimDriver::Dds => Coupling::RotateX { rate_hz: 10_000.0 },
        SimDriver::Camera => Coupling::Image,
    };
    SimDevice::new(kind.name(), kind, PERIOD, 0, world, coupling)
}

#[test]
fn bad_device_programs_are_refused_and_the_device_stays_usable() {
    let cases = device_cases();
    let mut failures = Vec::new();
    for c in &cases {
        let world = SimWorld::new(500);
        let mut d = device(c.kind, &world);
        match (c.run)(&mut d) {
            Ok(()) => failures.push(format!("{}: accepted", c.name)),
            Err(e) if !label(&e).contains(c.expect) => failures.push(format!(
                "{}: expected {}, got {} ({e})",
                c.name,
                c.expect,
                label(&e)
            )),
            Err(_) if d.state() != c.state => failures.push(format!(
                "{}: left in state {}, expected {}",
                c.name,
                d.state(),
                c.state
            )),
            Err(_) => {}
        }
        // Usable after: a device in fault (or disconnected) is reset, the documented way out; then a valid
        // program is accepted and a shot runs.
        if d.state() == DeviceState::Fault || c.expect == "disconnected" {
            d.reset().unwrap();
        }
        d.safe_state().unwrap();
        match run_shot(&mut d, c.kind) {
            Ok(out) => {
                let readouts = usize::from(c.kind == SimDriver::Camera);
                if out.len() != readouts {
                    failures.push(format!("{}: after it, a shot read {out:?}", c.name));
                }
            }
            Err(e) => failures.push(format!("{}: after it, a valid program fails: {e}", c.name)),
        }
    }
    RUN.fetch_add(cases.len(), Ordering::SeqCst);
    println!("device cases: {}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} device cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The corpus is at least 50 cases (counted from the tables, independent of test order).
#[test]
fn corpus_is_at_least_50_cases() {
    let jobs: Value = serde_json::from_str(include_str!("../corpus/jobs.json")).unwrap();
    let n_jobs = jobs.as_array().map_or(0, <[Value]>::len) + value_job_cases().len();
    let frames = frame_cases().len() + lenient_decoding_cases().len();
    let total = frames + n_jobs + CONFIG_CASES.len() + device_cases().len();
    println!(
        "bad-input corpus: {total} cases (frames {frames}, jobs {n_jobs}, configs {}, devices {}); run so far {}",
        CONFIG_CASES.len(),
        device_cases().len(),
        RUN.load(Ordering::SeqCst)
    );
    assert!(total >= 50, "{total}");
}

//! The remote face over real QUIC (in-process server, client library): every verb, every auth failure,
//! the limits, cancel with the safe-state check, watch order.

use std::time::Duration;

use serde_json::json;
use shotline::protocol::wire::JobEvent;
use shotline::protocol::{JobStatus, Value};
use shotline_client::{ClientError, JobsQuery, SubmitOptions};

use crate::common::*;

fn long_job() -> Value {
    value(job1(
        json!([
            ["load", [0], [5]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        // ~10 s of shots: long enough that a cancel, a pause or an estop always finds it running, even on
        // a loaded machine; every test that uses it stops it early.
        40_000,
        Some(3),
    ))
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn every_verb_round_trips_and_watch_delivers_every_transition_in_order);
async fn every_verb_round_trips_and_watch_delivers_every_transition_in_order(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    assert_eq!(c.whoami(&token).await.unwrap(), ("alice".into(), false));
    assert_eq!(c.backends(&token).await.unwrap()[0].name, "singlequdit");
    let (config, status) = c.backend(&token, "singlequdit").await.unwrap();
    assert_eq!(config.backend_name, "singlequdit");
    assert!(status.operational && !status.paused);

    let job = value(job1(
        json!([
            ["load", [0], [4]],
            ["rlx", [0], [std::f64::consts::PI]],
            ["measure", [0], []]
        ]),
        50,
        Some(1),
    ));
    let sub = c
        .submit(&token, "singlequdit", job, SubmitOptions::default())
        .await
        .unwrap();
    let mut statuses = Vec::new();
    let mut progress = Vec::new();
    let mut shots = Vec::new();
    let last = c
        .watch(&token, &sub.job_id, true, |e| match e {
            JobEvent::Status { status } => statuses.push(status.status),
            JobEvent::Progress { progress: p, .. } => progress.push((p.shots_done, p.shots_total)),
            JobEvent::Shot { shot, memory, .. } => shots.push((*shot, memory.clone())),
        })
        .await
        .unwrap();
    assert_eq!(last.status, JobStatus::Done);
    // Every transition, in order, ending with DONE (the first event is the status at subscription).
    let order: Vec<JobStatus> = statuses
        .iter()
        .copied()
        .skip_while(|s| *s == JobStatus::Queued)
        .collect();
    assert!(
        matches!(
            statuses.first(),
            Some(JobStatus::Queued | JobStatus::Running)
        ),
        "{statuses:?}"
    );
    assert_eq!(
        order,
        vec![JobStatus::Running, JobStatus::Done],
        "{statuses:?}"
    );
    assert_eq!(progress.last(), Some(&(50, 50)), "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(shots.len(), 50);
    assert!(shots.iter().all(|(_, m)| m == "4"));

    assert_eq!(
        c.status(&token, &sub.job_id).await.unwrap().status,
        JobStatus::Done
    );
    let result = c.result(&token, &sub.job_id).await.unwrap();
    assert_eq!(result.results[0].data.memory, vec!["4"; 50]);

    // Watching a finished job returns its final status at once.
    assert_eq!(
        c.watch(&token, &sub.job_id, false, |_| {})
            .await
            .unwrap()
            .status,
        JobStatus::Done
    );

    // Listing with filters and paging.
    for _ in 0..3 {
        c.submit(
            &token,
            "singlequdit",
            value(job1(json!([["measure", [0], []]]), 1, None)),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    }
    let (page1, next) = c
        .jobs(
            &token,
            JobsQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.len(), 2);
    let (page2, _) = c
        .jobs(
            &token,
            JobsQuery {
                limit: Some(2),
                after: next,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
    assert!(page1
        .iter()
        .all(|j| !page2.iter().any(|k| k.job_id == j.job_id)));
    assert!(page2.iter().any(|j| j.job_id == sub.job_id));
    let done = c
        .jobs(
            &token,
            JobsQuery {
                status: Some(JobStatus::Done),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .0;
    assert!(done.iter().all(|j| j.status == JobStatus::Done) && !done.is_empty());
    assert_eq!(
        code(
            c.jobs(
                &token,
                JobsQuery {
                    all: true,
                    ..Default::default()
                }
            )
            .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        code(
            c.jobs(
                &token,
                JobsQuery {
                    limit: Some(0),
                    ..Default::default()
                }
            )
            .await
        ),
        "INVALID_ARGUMENT"
    );

    c.logout(&token).await.unwrap();
    assert_eq!(code(c.status(&token, &sub.job_id).await), "UNAUTHENTICATED");
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn every_auth_failure_is_refused);
async fn every_auth_failure_is_refused(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    let (_, bob) = r.user("bob", false).await;
    let job = value(job1(json!([["measure", [0], []]]), 2, None));
    let sub = c
        .submit(&token, "singlequdit", job, SubmitOptions::default())
        .await
        .unwrap();
    // No token, an unknown token.
    assert_eq!(code(c.backends("").await), "UNAUTHENTICATED");
    assert_eq!(code(c.backends("0123").await), "UNAUTHENTICATED");
    // Wrong password, unknown user.
    assert_eq!(
        code(c.login("alice", "wrong-password").await),
        "INVALID_CREDENTIALS"
    );
    assert_eq!(
        code(c.login("nobody", "password123").await),
        "INVALID_CREDENTIALS"
    );
    // Another user's job does not exist for bob; he can neither see nor cancel it.
    assert_eq!(code(c.status(&bob, &sub.job_id).await), "NOT_FOUND");
    assert_eq!(code(c.result(&bob, &sub.job_id).await), "NOT_FOUND");
    assert_eq!(code(c.cancel(&bob, &sub.job_id).await), "NOT_FOUND");
    assert_eq!(
        code(c.watch(&bob, &sub.job_id, false, |_| {}).await),
        "NOT_FOUND"
    );
    // Operator verbs need an administrator.
    assert_eq!(
        code(c.pause_backend(&token, "singlequdit").await),
        "FORBIDDEN"
    );
    assert_eq!(code(c.estop(&token).await), "FORBIDDEN");
    // Self-registration is off by default.
    assert_eq!(code(c.register("eve", "password123").await), "FORBIDDEN");
    // Disabling a user revokes its tokens at once; enabling does not revive them (issue 10): log in again.
    r.rt.service().set_user_disabled("bob", true).await.unwrap();
    assert_eq!(code(c.backends(&bob).await), "UNAUTHENTICATED");
    assert_eq!(
        code(c.login("bob", "password123").await),
        "INVALID_CREDENTIALS"
    );
    r.rt.service()
        .set_user_disabled("bob", false)
        .await
        .unwrap();
    assert_eq!(code(c.backends(&bob).await), "UNAUTHENTICATED");
    let bob = c.login("bob", "password123").await.unwrap().token;
    assert!(c.backends(&bob).await.is_ok());
    // A new password revokes the old tokens.
    r.rt.service()
        .set_password("bob", "another-password")
        .await
        .unwrap();
    assert_eq!(code(c.backends(&bob).await), "UNAUTHENTICATED");
    // An expired token.
    let expired = "f".repeat(64);
    let hash = shotline_actors::auth::token_hash(&expired);
    let uid = r.rt.service().user("alice").await.unwrap().id;
    let store = engine.open(r.data.path()).await;
    store
        .insert_token(&hash, uid, "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")
        .await
        .unwrap();
    store.shutdown().await.unwrap();
    assert_eq!(code(c.backends(&expired).await), "UNAUTHENTICATED");
    // Too many login attempts.
    let mut last = String::new();
    for _ in 0..8 {
        last = code(c.login("carol", "wrong-password").await);
    }
    assert_eq!(last, "RATE_LIMITED");
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn registration_works_when_the_config_allows_it);
async fn registration_works_when_the_config_allows_it(engine: TestEngine) {
    let mut config = sim_config();
    config.auth.allow_registration = true;
    let r = serve_remote(&engine, config).await;
    let c = r.client().await;
    assert_eq!(c.register("eve", "password123").await.unwrap(), "eve");
    assert_eq!(code(c.register("eve", "password123").await), "CONFLICT");
    assert_eq!(code(c.register("eve2", "short").await), "INVALID_ARGUMENT");
    let token = c.login("eve", "password123").await.unwrap().token;
    assert_eq!(c.whoami(&token).await.unwrap(), ("eve".into(), false));
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn limits_are_enforced_with_clear_errors);
async fn limits_are_enforced_with_clear_errors(engine: TestEngine) {
    let mut config = sim_config();
    config.limits.max_queued_jobs_per_user = 2;
    config.limits.max_connections_per_user = 1;
    config.limits.max_frame_bytes = 4096;
    config.limits.request_timeout_ms = 300;
    let r = serve_remote(&engine, config).await;
    let (c, token) = r.user("alice", false).await;
    // Queued jobs per user.
    let a = c
        .submit(&token, "singlequdit", long_job(), SubmitOptions::default())
        .await
        .unwrap();
    c.submit(&token, "singlequdit", long_job(), SubmitOptions::default())
        .await
        .unwrap();
    let e = c
        .submit(&token, "singlequdit", long_job(), SubmitOptions::default())
        .await;
    match e {
        Err(ClientError::Server(b)) => {
            assert_eq!(b.code, "LIMIT_EXCEEDED");
            assert!(
                b.message.contains("max_queued_jobs_per_user"),
                "{}",
                b.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Connections per user: a second connection of alice is refused.
    let second = r.client().await;
    assert_eq!(code(second.backends(&token).await), "LIMIT_EXCEEDED");
    // Frame size: a job bigger than the frame limit.
    let big: Vec<serde_json::Value> = (0..400).map(|_| json!(["barrier", [0], []])).collect();
    let mut ins = vec![json!(["load", [0], [1]])];
    ins.extend(big);
    ins.push(json!(["measure", [0], []]));
    assert_eq!(
        code(
            c.submit(
                &token,
                "singlequdit",
                value(job1(json!(ins), 1, None)),
                SubmitOptions::default()
            )
            .await
        ),
        "FRAME_TOO_LARGE"
    );
    // A request that never completes is cut off by the request timeout.
    let (mut send, mut recv) = c.connection().open_bi().await.unwrap();
    send.write_all(&[0, 0]).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 1024];
        while let Ok(Some(n)) = recv.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the stream open");
    let body: shotline::protocol::wire::Response =
        shotline::protocol::wire::decode_body(&buf[4..]).unwrap();
    assert!(
        format!("{body:?}").contains("not received within"),
        "{body:?}"
    );
    let _ = c.cancel(&token, &a.job_id).await;
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn cancel_of_queued_and_running_jobs_and_of_finished_ones);
async fn cancel_of_queued_and_running_jobs_and_of_finished_ones(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    let a = c
        .submit(&token, "singlequdit", long_job(), SubmitOptions::default())
        .await
        .unwrap();
    let b = c
        .submit(&token, "singlequdit", long_job(), SubmitOptions::default())
        .await
        .unwrap();
    // B waits behind A: cancelled at once.
    let sb = c.cancel(&token, &b.job_id).await.unwrap();
    assert_eq!(sb.status, JobStatus::Cancelled);
    // A runs: it stops at the next shot boundary and ends CANCELLED with the shots completed.
    let mut seen_running = false;
    for _ in 0..500 {
        if c.status(&token, &a.job_id).await.unwrap().status == JobStatus::Running {
            seen_running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_running);
    c.cancel(&token, &a.job_id).await.unwrap();
    let end = c.watch(&token, &a.job_id, false, |_| {}).await.unwrap();
    assert_eq!(end.status, JobStatus::Cancelled);
    assert!(end.detail.contains("of 40000 shots"), "{}", end.detail);
    // Every device is back in its safe state (manual).
    for dev in ["mot", "rf", "detuning", "interaction", "camera"] {
        let seq = ractor::registry::where_is(
            r.rt.ctx()
                .name(&format!("backend:singlequdit/sequencer:{dev}")),
        )
        .map(ractor::ActorRef::<shotline_actors::sequencer::SequencerMsg>::from)
        .unwrap();
        let st =
            ractor::call_t!(seq, shotline_actors::sequencer::SequencerMsg::Status, 5000).unwrap();
        assert_eq!(st.state, shotline_hal::DeviceState::Manual, "{dev}");
    }
    // A finished job cannot be cancelled.
    assert_eq!(code(c.cancel(&token, &a.job_id).await), "ALREADY_FINISHED");
    assert_eq!(code(c.cancel(&token, &b.job_id).await), "ALREADY_FINISHED");
    // Both results say so.
    let ra = c.result(&token, &a.job_id).await.unwrap();
    assert!(!ra.success && ra.status == JobStatus::Cancelled);
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn pause_resume_and_estop);
async fn pause_resume_and_estop(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, admin) = r.user("root", true).await;
    let a = c
        .submit(&admin, "singlequdit", long_job(), SubmitOptions::default())
        .await
        .unwrap();
    loop {
        if c.status(&admin, &a.job_id).await.unwrap().status == JobStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Pause: the running job goes back to the queue and waits.
    c.pause_backend(&admin, "singlequdit").await.unwrap();
    assert_eq!(
        c.status(&admin, &a.job_id).await.unwrap().status,
        JobStatus::Queued
    );
    assert!(c.backend(&admin, "singlequdit").await.unwrap().1.paused);
    // A restarted registry learns the pause from the backend.
    ractor::registry::where_is(r.rt.ctx().name("registry"))
        .unwrap()
        .kill();
    let mut shown = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok((_, st)) = c.backend(&admin, "singlequdit").await {
            shown = st.paused;
            break;
        }
    }
    assert!(shown, "the pause was forgotten by the restarted registry");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        c.status(&admin, &a.job_id).await.unwrap().status,
        JobStatus::Queued,
        "ran while paused"
    );
    // Resume: it runs again.
    c.resume_backend(&admin, "singlequdit").await.unwrap();
    loop {
        if c.status(&admin, &a.job_id).await.unwrap().status == JobStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Emergency stop: re-queued, paused, devices safe.
    let msg = c.estop(&admin).await.unwrap();
    assert!(msg.contains("emergency stop"), "{msg}");
    assert_eq!(
        c.status(&admin, &a.job_id).await.unwrap().status,
        JobStatus::Queued
    );
    assert!(c.backends(&admin).await.unwrap()[0].status.paused);
    assert_eq!(code(c.pause_backend(&admin, "nope").await), "NOT_FOUND");
    c.resume_backend(&admin, "singlequdit").await.unwrap();
    loop {
        if c.status(&admin, &a.job_id).await.unwrap().status == JobStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.cancel(&admin, &a.job_id).await.unwrap();
    let end = c.watch(&admin, &a.job_id, false, |_| {}).await.unwrap();
    assert_eq!(end.status, JobStatus::Cancelled);
    r.rt.shutdown().await.unwrap();
}

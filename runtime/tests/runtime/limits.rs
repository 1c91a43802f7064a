//! Issue 10 limits: every user-controlled size of a submission is bounded with an error naming the field,
//! the value and the limit; the apparatus time and the result size of a job are bounded at submission; a
//! `jobs` page always fits in a client's frame; idempotency keys compare the backend and the options;
//! disabling a user revokes its tokens; `since`/`until` must be real dates.

use serde_json::json;
use shotline::protocol::wire::Response;
use shotline::protocol::{encode_frame, JobStatus};
use shotline_client::{JobsQuery, SubmitOptions};

use crate::common::*;

fn measure_only(shots: u32) -> serde_json::Value {
    experiment(json!([["measure", [0], []]]), shots, Some(1))
}

fn tagged(tags: Vec<String>) -> SubmitOptions {
    SubmitOptions {
        tags,
        ..Default::default()
    }
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn tags_and_qobj_id_are_bounded_and_jobs_pages_fit_the_answer_limit);
async fn tags_and_qobj_id_are_bounded_and_jobs_pages_fit_the_answer_limit(engine: TestEngine) {
    let mut config = sim_config();
    config.limits.max_response_bytes = 65_536;
    config.limits.max_tags = 32;
    config.limits.max_tag_bytes = 1024;
    let r = serve_remote(&engine, config).await;
    let (c, token) = r.user("alice", false).await;
    let (admin, admin_token) = r.user("root", true).await;
    let job = || value(json!({ "e": measure_only(1) }));

    // Each bound names the field, the value and the limit.
    let e = server_error(
        c.submit(&token, "singlequdit", job(), tagged(vec!["t".into(); 33]))
            .await,
    );
    assert_eq!(e.code, "INVALID_ARGUMENT");
    assert_eq!(e.path.as_deref(), Some("tags"));
    assert!(
        e.message.contains("33") && e.message.contains("limits.max_tags"),
        "{}",
        e.message
    );
    let e = server_error(
        c.submit(
            &token,
            "singlequdit",
            job(),
            tagged(vec!["ok".into(), "x".repeat(7 << 20)]),
        )
        .await,
    );
    // A 7 MiB tag is beyond the request frame limit already; a tag just over its own limit is refused by it.
    assert!(
        e.code == "FRAME_TOO_LARGE" || e.code == "INVALID_ARGUMENT",
        "{e:?}"
    );
    let e = server_error(
        c.submit(
            &token,
            "singlequdit",
            job(),
            tagged(vec!["ok".into(), "x".repeat(1025)]),
        )
        .await,
    );
    assert_eq!(e.path.as_deref(), Some("tags[1]"));
    assert!(
        e.message.contains("1025")
            && e.message.contains("1024")
            && e.message.contains("limits.max_tag_bytes"),
        "{}",
        e.message
    );
    let e = server_error(
        c.submit(
            &token,
            "singlequdit",
            job(),
            SubmitOptions {
                qobj_id: Some("q".repeat(257)),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(e.path.as_deref(), Some("qobj_id"));
    assert!(
        e.message.contains("limits.max_qobj_id_bytes"),
        "{}",
        e.message
    );

    // 12 jobs with the most tags allowed (32 x 1000 bytes): together far above one answer.
    let mut ids = Vec::new();
    for i in 0..12 {
        let tags = (0..32)
            .map(|k| format!("{i:02}{k:02}{}", "t".repeat(996)))
            .collect();
        ids.push(
            c.submit(&token, "singlequdit", job(), tagged(tags))
                .await
                .unwrap()
                .job_id,
        );
    }
    for (client, tok, all) in [(&c, &token, false), (&admin, &admin_token, true)] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (jobs, next) = client
                .jobs(
                    tok,
                    JobsQuery {
                        limit: Some(500),
                        after,
                        all,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            pages += 1;
            let answer = encode_frame(
                &Response::Jobs {
                    jobs: jobs.clone(),
                    next,
                },
                usize::MAX,
            )
            .unwrap()
            .len()
                - 4;
            assert!(answer <= 65_536, "a jobs page of {answer} bytes");
            seen.extend(jobs.into_iter().map(|j| j.job_id));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
            assert!(pages < 20, "paging does not progress");
        }
        assert!(
            pages >= 6,
            "12 jobs of ~33 KB need several 64 KiB pages, got {pages}"
        );
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(seen, expected, "every job exactly once, newest first");
    }
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn shots_names_and_apparatus_time_of_a_job_are_bounded);
async fn shots_names_and_apparatus_time_of_a_job_are_bounded(engine: TestEngine) {
    let mut config = sim_config();
    config.limits.max_shots_per_job = 1_000;
    config.limits.max_job_duration_s = 1;
    config.limits.max_experiment_name_bytes = 16;
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), config).await;
    let refused = |r: Result<shotline::Submitted, shotline_actors::error::ServiceError>| {
        let e = r.expect_err("refused");
        assert_eq!(e.code, "VALIDATION_FAILED", "{e:?}");
        e.report.unwrap().errors.remove(0)
    };
    // Total shots.
    let job = json!({ "a": measure_only(600), "b": measure_only(401) });
    let e = refused(rt.submit("singlequdit", &job, Default::default()).await);
    assert_eq!(
        (e.code.as_str(), e.path.as_str()),
        ("TOO_MANY_SHOTS", "job")
    );
    assert_eq!(
        (e.value.as_deref(), e.limit.as_deref()),
        (Some("1001"), Some("1000"))
    );
    // Experiment names.
    let job = json!({ "a_name_of_17_byte": measure_only(1) });
    let e = refused(rt.submit("singlequdit", &job, Default::default()).await);
    assert_eq!(
        (e.code.as_str(), e.path.as_str()),
        ("INVALID_EXPERIMENT_NAME", "job[0]")
    );
    assert!(
        e.message.contains("limits.max_experiment_name_bytes"),
        "{}",
        e.message
    );
    // Apparatus time: 20 interaction holds of 20π at 10 kHz are 20 ms a shot; 100 shots are 2 s.
    let mut instructions = vec![json!(["load", [0], [5]])];
    instructions.extend((0..20).map(|_| json!(["rlz2", [0], [20.0 * std::f64::consts::PI]])));
    instructions.push(json!(["measure", [0], []]));
    let long = |shots| json!({ "e": experiment(json!(instructions), shots, Some(1)) });
    let e = refused(
        rt.submit("singlequdit", &long(100), Default::default())
            .await,
    );
    assert_eq!((e.code.as_str(), e.path.as_str()), ("JOB_TOO_LONG", "job"));
    assert!(
        e.message.contains("limits.max_job_duration_s") && e.message.contains("2.0"),
        "{}",
        e.message
    );
    assert_eq!(e.limit.as_deref(), Some("1 s"));
    // The same experiment with few shots plans well under a second and runs.
    let ok = rt
        .submit("singlequdit", &long(10), Default::default())
        .await
        .unwrap();
    assert_eq!(ok.status.status, JobStatus::Queued);
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_result_over_the_answer_limit_is_refused_and_one_just_under_is_fetched);
async fn a_result_over_the_answer_limit_is_refused_and_one_just_under_is_fetched(
    engine: TestEngine,
) {
    use shotline_actors::service::admission::result_bound_bytes;
    const LIMIT: u64 = 65_536;
    let mut config = sim_config();
    config.limits.max_response_bytes = LIMIT;
    let section = config.backends[0].clone();
    let r = serve_remote(&engine, config).await;
    let (c, token) = r.user("alice", false).await;
    let (published, _) = r.rt.service().backend("singlequdit").await.unwrap();
    // n experiments of one shot with 200-byte names: the most whose result bound fits.
    let job = |n: usize| {
        let mut m = serde_json::Map::new();
        for i in 0..n {
            m.insert(format!("{i:0>200}"), measure_only(1));
        }
        serde_json::Value::Object(m)
    };
    let typed = |n: usize| shotline::protocol::validate_job(&value(job(n)), &published).unwrap();
    let bound = |n: usize| result_bound_bytes(&published, &section, &typed(n), None);
    let mut n = 1;
    while bound(n + 1) <= LIMIT {
        n += 1;
    }
    assert!(n > 50, "{n} experiments");
    // Just over: refused, naming the limit.
    let e = server_error(
        c.submit(
            &token,
            "singlequdit",
            value(job(n + 1)),
            SubmitOptions::default(),
        )
        .await,
    );
    assert_eq!(e.code, "VALIDATION_FAILED");
    assert_eq!(e.details[0].code.as_str(), "RESULT_TOO_LARGE");
    assert!(
        e.details[0].message.contains("65536")
            && e.details[0].message.contains("limits.max_response_bytes"),
        "{}",
        e.details[0].message
    );
    // Just under: runs, and the real client fetches a result that fits.
    let s = c
        .submit(
            &token,
            "singlequdit",
            value(job(n)),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let st = c.status(&token, &s.job_id).await.unwrap();
        if st.status.is_terminal() {
            assert_eq!(st.status, JobStatus::Done, "{st:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let result = c.result(&token, &s.job_id).await.unwrap();
    assert_eq!(result.results.len(), n);
    let size = encode_frame(&Response::Result { result }, usize::MAX)
        .unwrap()
        .len() as u64
        - 4;
    assert!(size <= LIMIT, "the result is {size} bytes");
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn at_the_default_limits_a_result_above_the_client_frame_is_refused);
async fn at_the_default_limits_a_result_above_the_client_frame_is_refused(engine: TestEngine) {
    let config = sim_config();
    assert_eq!(
        config.limits.max_response_bytes,
        shotline::protocol::DEFAULT_MAX_FRAME as u64,
        "by default the answer limit is the client's frame limit"
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), config).await;
    // 4 M shots: memory strings alone are above 8 MiB (the "any job above ~4 M shots").
    let job = json!({
        "a": measure_only(1_000_000), "b": measure_only(1_000_000),
        "c": measure_only(1_000_000), "d": measure_only(1_000_000),
    });
    let e = rt
        .submit("singlequdit", &job, Default::default())
        .await
        .unwrap_err();
    let first = &e.report.as_ref().unwrap().errors[0];
    assert_eq!(first.code.as_str(), "RESULT_TOO_LARGE", "{e:?}");
    assert!(first.message.contains("8388608"), "{}", first.message);
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_idempotency_key_compares_the_backend_and_the_options);
async fn an_idempotency_key_compares_the_backend_and_the_options(engine: TestEngine) {
    let mut config = sim_config();
    let mut second = config.backends[0].clone();
    second.name = "singlequdit2".into();
    config.backends.push(second);
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), config).await;
    let job = json!({ "e": measure_only(1) });
    let keyed = |priority: i32| SubmitOptions {
        idempotency_key: Some("k1".into()),
        priority,
        ..Default::default()
    };
    let first = rt.submit("singlequdit", &job, keyed(0)).await.unwrap();
    assert!(!first.duplicate);
    let again = rt.submit("singlequdit", &job, keyed(0)).await.unwrap();
    assert!(again.duplicate && again.job_id == first.job_id);
    // Same key and body, another backend: a conflict, not the first backend's job.
    let e = rt.submit("singlequdit2", &job, keyed(0)).await.unwrap_err();
    assert_eq!(e.code, "IDEMPOTENCY_CONFLICT", "{e:?}");
    assert!(
        e.message.contains("backend") && e.message.contains(&first.job_id),
        "{}",
        e.message
    );
    // Same backend and body, another priority: a conflict too.
    let e = rt.submit("singlequdit", &job, keyed(5)).await.unwrap_err();
    assert_eq!(e.code, "IDEMPOTENCY_CONFLICT");
    assert!(e.message.contains("priority"), "{}", e.message);
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn re_enabling_a_user_does_not_revive_its_tokens);
async fn re_enabling_a_user_does_not_revive_its_tokens(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    assert_eq!(c.whoami(&token).await.unwrap().0, "alice");
    let svc = r.rt.service();
    svc.set_user_disabled("alice", true).await.unwrap();
    svc.set_user_disabled("alice", false).await.unwrap();
    let e = server_error(c.whoami(&token).await);
    assert_eq!(e.code, "UNAUTHENTICATED");
    // Logging in again works.
    let token = c.login("alice", "password123").await.unwrap().token;
    assert_eq!(c.whoami(&token).await.unwrap().0, "alice");
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn jobs_refuses_impossible_dates_naming_the_field);
async fn jobs_refuses_impossible_dates_naming_the_field(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    for (since, until, field, bad) in [
        (
            Some("2026-13-40T00:00:00Z"),
            None,
            "since",
            "2026-13-40T00:00:00Z",
        ),
        (
            None,
            Some("2026-02-30T10:00:00Z"),
            "until",
            "2026-02-30T10:00:00Z",
        ),
        (
            Some("2026-11-22T25:00:00Z"),
            None,
            "since",
            "2026-11-22T25:00:00Z",
        ),
    ] {
        let e = server_error(
            c.jobs(
                &token,
                JobsQuery {
                    since: since.map(Into::into),
                    until: until.map(Into::into),
                    ..Default::default()
                },
            )
            .await,
        );
        assert_eq!(e.code, "INVALID_ARGUMENT");
        assert_eq!(e.path.as_deref(), Some(field));
        assert!(
            e.message.starts_with(field) && e.message.contains(bad),
            "{}",
            e.message
        );
    }
    let ok = c
        .jobs(
            &token,
            JobsQuery {
                since: Some("2028-02-29T00:00:00Z".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn errors_do_not_echo_request_sized_values);
async fn errors_do_not_echo_request_sized_values(engine: TestEngine) {
    let r = serve_remote(&engine, sim_config()).await;
    let (c, token) = r.user("alice", false).await;
    let huge = "x".repeat(1 << 20);
    let e = server_error(c.status(&token, &huge).await);
    assert_eq!(e.code, "NOT_FOUND");
    assert!(e.message.len() < 300, "{} bytes", e.message.len());
    let e = server_error(
        c.submit(
            &token,
            &huge,
            value(json!({ "e": measure_only(1) })),
            SubmitOptions::default(),
        )
        .await,
    );
    assert_eq!(e.code, "NOT_FOUND");
    assert!(
        e.message.len() < 300 && e.message.contains("singlequdit"),
        "{}",
        &e.message[..e.message.len().min(300)]
    );
    let e = server_error(
        c.jobs(
            &token,
            JobsQuery {
                since: Some(huge.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(e.code, "INVALID_ARGUMENT");
    assert!(e.message.len() < 400, "{} bytes", e.message.len());
    r.rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_job_stored_with_oversized_tags_before_the_limits_still_lists_within_the_answer);
async fn a_job_stored_with_oversized_tags_before_the_limits_still_lists_within_the_answer(
    engine: TestEngine,
) {
    let mut config = sim_config();
    config.limits.max_response_bytes = 65_536;
    let r = serve_remote(&engine, config).await;
    let (c, token) = r.user("alice", false).await;
    let first = c
        .submit(
            &token,
            "singlequdit",
            value(json!({ "e": measure_only(1) })),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    // As a database written before the limits held it: 100 tags of 1000 bytes (100 KB) on one job.
    let uid = r.rt.service().user("alice").await.unwrap().id;
    shotline_actors::persistence::Db::new(r.rt.ctx())
        .run(move |e| async move {
            let legacy = shotline_store::NewJob {
                id: "legacy".into(),
                user_id: uid,
                backend: "singlequdit".into(),
                qobj_id: None,
                priority: 0,
                tags: vec!["t".repeat(1000); 100],
                idempotency_key: None,
                body: "{}".into(),
                submitted_at: "2026-11-22T10:00:00Z".into(),
            };
            e.admit_job(legacy, u64::MAX).await
        })
        .await
        .unwrap();
    let (jobs, next) = c.jobs(&token, JobsQuery::default()).await.unwrap();
    let answer = encode_frame(
        &Response::Jobs {
            jobs: jobs.clone(),
            next,
        },
        usize::MAX,
    )
    .unwrap()
    .len();
    assert!(answer <= 65_536, "{answer} bytes");
    assert_eq!(jobs[0].job_id, "legacy");
    assert_eq!(jobs[0].tags.len(), 1);
    assert!(
        jobs[0].tags[0].contains("100 tags not shown"),
        "{:?}",
        jobs[0].tags
    );
    // The next page goes on with the older job.
    let (older, _) = c
        .jobs(
            &token,
            JobsQuery {
                after: next,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(older[0].job_id, first.job_id);
    r.rt.shutdown().await.unwrap();
}

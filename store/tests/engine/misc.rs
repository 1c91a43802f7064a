use shotline_store::{BackendPause, CalibrationRecord, EngineKind, StoreError};

use crate::harness::{Harness, T0, T1, T2};

fn cal(backend: &str, name: &str, value: f64, at: &str) -> CalibrationRecord {
    CalibrationRecord {
        id: 0,
        backend: backend.to_owned(),
        name: name.to_owned(),
        value,
        execution_id: Some("20261122-001".to_owned()),
        task: None,
        calibrated_at: at.to_owned(),
    }
}

pub async fn calibrations_and_backend_configs_round_trip(h: Harness) {
    let e = &h.engine;
    let later = e
        .insert_calibration(&cal("b1", "pi_time", 1.5e-6, T1))
        .await
        .unwrap();
    let earlier = e
        .insert_calibration(&cal("b1", "freq", 2.0e9, T0))
        .await
        .unwrap();
    e.insert_calibration(&cal("b2", "freq", 1.0, T0))
        .await
        .unwrap();
    assert_ne!(later, earlier);
    let got = e.calibrations("b1").await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        [earlier, later],
        "oldest first"
    );
    assert_eq!(got[1].value, 1.5e-6);
    assert_eq!(got[1].execution_id.as_deref(), Some("20261122-001"));
    assert!(e.calibrations("none").await.unwrap().is_empty());

    assert!(e
        .record_backend_config("b1", "h1", "{\"a\":1}", T0)
        .await
        .unwrap());
    assert!(
        !e.record_backend_config("b1", "h1", "{\"a\":2}", T1)
            .await
            .unwrap(),
        "once per hash"
    );
    assert_eq!(
        e.backend_config("b1", "h1").await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(e.backend_config("b1", "h2").await.unwrap(), None);
    assert_eq!(e.backend_config("b2", "h1").await.unwrap(), None);
}

pub async fn backend_pauses_persist_until_cleared(h: Harness) {
    let e = &h.engine;
    assert_eq!(e.backend_pause("b1").await.unwrap(), None);
    let p = BackendPause {
        reason: "emergency stop".into(),
        paused_at: T0.into(),
    };
    e.set_backend_pause("b1", Some(&p)).await.unwrap();
    let q = BackendPause {
        reason: "operator".into(),
        paused_at: T1.into(),
    };
    e.set_backend_pause("b1", Some(&q)).await.unwrap();
    let reopened = h.another_process().await;
    assert_eq!(reopened.backend_pause("b1").await.unwrap(), Some(q));
    e.set_backend_pause("b1", None).await.unwrap();
    assert_eq!(e.backend_pause("b1").await.unwrap(), None);
    e.set_backend_pause("b1", None).await.unwrap();
}

pub async fn the_engine_reports_marks_stats_and_shuts_down(h: Harness) {
    let e = &h.engine;
    assert!(matches!(
        e.kind(),
        EngineKind::Sqlite | EngineKind::Postgres
    ));
    assert!(!e.describe().is_empty());
    assert_eq!(
        e.schema_version().await.unwrap(),
        shotline_store::schema::latest_version()
    );
    let empty = e.ack_marks().await.unwrap();
    assert_eq!((empty.job_seq, empty.job_event), (0, 0));
    let u = h.user("alice").await;
    h.job(&u, "a", "b").await;
    let b = h.job(&u, "b", "b").await;
    e.cancel_queued("a", "x", T2).await.unwrap();
    let marks = e.ack_marks().await.unwrap();
    assert_eq!(marks.job_seq, b.seq);
    let events: i64 = e
        .job_events("a")
        .await
        .unwrap()
        .iter()
        .chain(&e.job_events("b").await.unwrap())
        .map(|v| v.id)
        .max()
        .unwrap();
    assert_eq!(marks.job_event, events);
    let stats = e.stats();
    assert!(
        stats.commits >= 1 && stats.ops >= stats.commits,
        "{stats:?}"
    );
    e.shutdown().await.unwrap();
    assert!(matches!(e.job("a").await, Err(StoreError::Closed)));
    e.shutdown().await.unwrap();
}

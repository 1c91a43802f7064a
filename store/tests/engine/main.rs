//! The store interface's contract, one suite for every engine: each test body in [`suite`] takes an
//! `Arc<dyn Engine>` and knows nothing of the engine behind it. `engine_suite!` instantiates every body
//! for an engine (a module of `#[tokio::test]`s); add an engine by adding one invocation.

mod suite;

use std::sync::Arc;

use shotline_store::{Engine, StoreSelection};

/// A fresh SQLite engine in a temp dir (kept alive by the returned guard).
async fn sqlite() -> (tempfile::TempDir, Arc<dyn Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let selection = StoreSelection::Sqlite {
        path: dir.path().join("shotline.db"),
        queue_capacity: 1024,
    };
    let engine = shotline_store::open(&selection).await.unwrap();
    (dir, engine)
}

macro_rules! engine_suite {
    ($engine:ident, $open:path, [$($name:ident),* $(,)?]) => {
        mod $engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_guard, engine) = $open().await;
                    crate::suite::$name(engine.clone()).await;
                    engine.shutdown().await.unwrap();
                }
            )*
        }
    };
}

engine_suite!(
    sqlite,
    crate::sqlite,
    [
        admission_is_idempotent_and_limited,
        concurrent_admissions_never_pass_the_limit,
        execution_ids_never_repeat_under_concurrency,
        an_execution_starts_only_a_queued_job,
        only_the_live_execution_commits_a_result_once,
        failing_never_overwrites_a_result,
        cancels_apply_only_to_the_right_status,
        requeue_gives_up_after_max_attempts,
        settling_names_the_shot_and_follows_the_policy,
        settling_a_backend_leaves_other_backends_alone,
        a_lease_is_taken_over_only_after_it_expired,
        users_tokens_and_pauses_round_trip,
        a_shut_down_engine_refuses_work,
    ]
);

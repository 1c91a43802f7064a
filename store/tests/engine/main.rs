//! The store interface's contract, one suite for every engine: each test body knows nothing of the engine
//! behind it. `engine_suite!` instantiates every body for an engine (a module of `#[tokio::test]`s named
//! after the engine: `sqlite::NAME`, `postgres::NAME`); add an engine by adding one invocation.
//!
//! - [`suite`]: bodies taking the engine (`Arc<dyn Engine>`);
//! - [`users`], [`jobs`], [`executions`], [`locks`], [`misc`]: every trait method, taking a [`Harness`]
//!   (the engine and the database it runs on);
//! - [`concurrency`]: two engines on one database stand for two server processes sharing it.
//!
//! PostgreSQL runs on a throw-away database per test (`shotline_store::testing`: `SHOTLINE_TEST_POSTGRES`
//! or a private cluster started once per test binary).
//!
//! [`Harness`]: harness::Harness

mod concurrency;
mod executions;
mod harness;
mod jobs;
mod locks;
mod misc;
mod suite;
mod users;

macro_rules! engine_suite {
    ($engine:ident, $open:path) => {
        mod $engine {
            engine_suite!(@contract $open, [
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
            ]);
            engine_suite!(@harness $open, [
                users::users_are_added_found_listed_and_names_are_unique,
                users::tokens_authenticate_until_expired_revoked_or_disabled,
                users::password_changes_and_deletion_follow_the_rules,
                jobs::admission_inserts_queued_jobs_in_order_with_an_event,
                jobs::admission_honours_idempotency_keys_and_the_active_limit,
                jobs::admission_refuses_unknown_users_and_reused_job_ids,
                jobs::listings_filter_page_and_stop_at_their_byte_budget,
                jobs::queued_jobs_cancel_once_and_counts_follow_statuses,
                executions::execution_ids_count_up_per_day_and_reject_bad_days,
                executions::a_started_execution_commits_its_result_exactly_once,
                executions::failing_and_cancelling_never_override_a_result,
                executions::requeue_closes_the_execution_and_gives_up_at_the_limit,
                executions::settling_applies_the_recovery_policy,
                executions::settling_a_backend_touches_only_its_running_jobs,
                locks::leases_are_granted_refreshed_and_held,
                locks::an_expired_lease_is_taken_over_and_its_old_owner_loses_it,
                locks::releases_need_the_owner_unless_forced,
                misc::calibrations_and_backend_configs_round_trip,
                misc::backend_pauses_persist_until_cleared,
                misc::the_engine_reports_marks_stats_and_shuts_down,
                concurrency::two_processes_never_admit_a_user_past_the_limit,
                concurrency::two_processes_admit_one_job_per_idempotency_key,
                concurrency::two_processes_never_hand_out_one_execution_id_twice,
                concurrency::two_processes_race_for_a_lease_and_one_wins,
            ]);
        }
    };
    (@contract $open:path, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let h = $open().await;
                crate::suite::$name(h.engine.clone()).await;
                h.engine.shutdown().await.unwrap();
            }
        )*
    };
    (@harness $open:path, [$($module:ident :: $name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::$module::$name($open().await).await
            }
        )*
    };
}

engine_suite!(sqlite, crate::harness::Harness::sqlite);
engine_suite!(postgres, crate::harness::Harness::postgres);

//! One store test suite, run against both engines: every body below runs as `sqlite::NAME` (a SQLite file
//! in a temporary directory) and as `postgres::NAME` (a throw-away PostgreSQL database, see
//! `shotline_store::testing`). Bodies only use the engine-neutral traits.

mod concurrency;
mod executions;
mod harness;
mod jobs;
mod locks;
mod misc;
mod users;

/// Instantiates each `module::body` once per engine.
macro_rules! engine_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::harness::Harness::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::harness::Harness::postgres().await).await
                }
            )*
        }
    };
}

engine_tests!(
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
    executions::requeue_gives_up_after_max_attempts,
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
);

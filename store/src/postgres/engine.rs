//! [`Engine`] on PostgreSQL: identity, schema version, acknowledged-work marks, counters, shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::rows::one;
use super::PgEngine;
use crate::api::{Engine, EngineKind, EngineStats, StoreFuture};
use crate::marks::AckMarks;

/// How long [`Engine::shutdown`] waits for operations in flight to return their connections.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

impl Engine for PgEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn describe(&self) -> String {
        self.description().to_owned()
    }

    fn schema_version(&self) -> StoreFuture<'_, u32> {
        Box::pin(PgEngine::schema_version(self))
    }

    fn ack_marks(&self) -> StoreFuture<'_, AckMarks> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = one(
                &c,
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM jobs), \
                 (SELECT COALESCE(MAX(id), 0) FROM job_events)",
                &[],
            )
            .await?;
            Ok(AckMarks {
                job_seq: row.get(0),
                job_event: row.get(1),
            })
        })
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
        }
    }

    fn set_commit_delay(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.commit_delay_ns.store(ns, Ordering::Relaxed);
    }

    fn shutdown(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // New operations fail with Closed at once; those in flight finish and commit.
            self.pool.close();
            let deadline = Instant::now() + SHUTDOWN_WAIT;
            while self.pool.status().size > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        })
    }
}

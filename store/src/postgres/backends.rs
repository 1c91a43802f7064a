//! [`CalibrationStore`] and [`BackendStore`] on PostgreSQL.

use super::rows::{self, exec, one, opt};
use super::PgEngine;
use crate::api::{BackendPause, BackendStore, CalibrationStore, StoreFuture};
use crate::normalize_time;
use crate::records::CalibrationRecord;

impl CalibrationStore for PgEngine {
    fn insert_calibration<'a>(&'a self, cal: &'a CalibrationRecord) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            let at = normalize_time("calibrated_at", &cal.calibrated_at)?;
            let c = self.client().await?;
            let id: i64 = one(
                &c,
                "INSERT INTO calibrations (backend, name, value, execution_id, task, calibrated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &cal.backend,
                    &cal.name,
                    &cal.value,
                    &cal.execution_id,
                    &cal.task,
                    &at,
                ],
            )
            .await?
            .get(0);
            self.count_commit();
            Ok(id)
        })
    }

    fn calibrations<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Vec<CalibrationRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let found = rows::rows(
                &c,
                "SELECT id, backend, name, value, execution_id, task, calibrated_at FROM calibrations \
                 WHERE backend = $1 ORDER BY calibrated_at, id",
                &[&backend],
            )
            .await?;
            rows::all(found, rows::calibration)
        })
    }
}

impl BackendStore for PgEngine {
    fn record_backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let now = normalize_time("now", now)?;
            let c = self.client().await?;
            let n = exec(
                &c,
                "INSERT INTO backend_configs (backend, config_hash, body, recorded_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (backend, config_hash) DO NOTHING",
                &[&backend, &hash, &body, &now],
            )
            .await?;
            self.count_commit();
            Ok(n > 0)
        })
    }

    fn backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = opt(
                &c,
                "SELECT body FROM backend_configs WHERE backend = $1 AND config_hash = $2",
                &[&backend, &hash],
            )
            .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn set_backend_pause<'a>(
        &'a self,
        backend: &'a str,
        pause: Option<&'a BackendPause>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            match pause {
                Some(p) => exec(
                    &c,
                    "INSERT INTO backend_pauses (backend, reason, paused_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (backend) DO UPDATE SET reason = excluded.reason, \
                         paused_at = excluded.paused_at",
                    &[&backend, &p.reason, &p.paused_at],
                )
                .await?,
                None => {
                    exec(
                        &c,
                        "DELETE FROM backend_pauses WHERE backend = $1",
                        &[&backend],
                    )
                    .await?
                }
            };
            self.count_commit();
            Ok(())
        })
    }

    fn backend_pause<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Option<BackendPause>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = opt(
                &c,
                "SELECT reason, paused_at FROM backend_pauses WHERE backend = $1",
                &[&backend],
            )
            .await?;
            Ok(row.map(|r| BackendPause {
                reason: r.get(0),
                paused_at: r.get(1),
            }))
        })
    }
}

//! Queries for listings and administration: job pages with filters, per-user counts, password changes,
//! user removal, persisted backend pauses.

use rusqlite::params;

use super::rows::{job_from_row, JOB_COLS};
use crate::records::{listing_row_bytes, JobFilter, JobRecord};
use crate::{Store, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// The count of a user's active jobs (the admission check of every submit): answered from the
/// `jobs_user_status` index (schema v3) by two seeks, whatever the user's history.
pub(crate) const ACTIVE_JOBS_OF_USER: &str =
    "SELECT COUNT(*) FROM jobs WHERE user_id = ?1 AND status IN ('QUEUED', 'RUNNING')";

impl Store {
    /// A page of jobs matching `f`, newest first, with their owners' names (without their bodies: `body`
    /// is empty).
    pub fn list_jobs(&self, f: &JobFilter) -> Result<Vec<(JobRecord, String)>> {
        let since = f
            .since
            .as_deref()
            .map(|s| crate::records::normalize_time("since", s))
            .transpose()?;
        let until = f
            .until
            .as_deref()
            .map(|s| crate::records::normalize_time("until", s))
            .transpose()?;
        // The job body (up to a frame) is not part of a listing: it is not read (`body` is empty).
        let cols: String = JOB_COLS
            .split(',')
            .map(|c| match c.trim() {
                "body" => "'' AS body".to_string(),
                c => format!("j.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, u.name FROM jobs j JOIN users u ON u.id = j.user_id \
             WHERE (?1 IS NULL OR j.user_id = ?1) AND (?2 IS NULL OR j.status = ?2) \
             AND (?3 IS NULL OR j.backend = ?3) AND (?4 IS NULL OR j.submitted_at >= ?4) \
             AND (?5 IS NULL OR j.submitted_at < ?5) AND (?6 IS NULL OR j.seq < ?6) \
             ORDER BY j.seq DESC LIMIT ?7"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let width = JOB_COLS.split(',').count();
        let rows = stmt.query_map(
            params![
                f.user_id,
                f.status,
                f.backend,
                since,
                until,
                f.before_seq,
                i64::from(f.limit.max(1))
            ],
            |r| Ok((job_from_row(r)?, r.get::<_, String>(width)?)),
        )?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in rows {
            let (job, owner) = row?;
            bytes = bytes.saturating_add(listing_row_bytes(&job, &owner));
            out.push((job, owner));
            if f.max_bytes > 0 && bytes > f.max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The job a user submitted with idempotency key `key`, if any.
    pub fn job_by_idempotency_key(&self, user_id: i64, key: &str) -> Result<Option<JobRecord>> {
        use rusqlite::OptionalExtension;
        let sql =
            format!("SELECT {JOB_COLS} FROM jobs WHERE user_id = ?1 AND idempotency_key = ?2");
        Ok(self
            .conn
            .query_row(&sql, params![user_id, key], job_from_row)
            .optional()?)
    }

    /// Records where a running execution is (e.g. `shot 120 of 3000`), so that a crash can say where it
    /// interrupted the job.
    pub fn set_execution_progress(&self, id: &str, detail: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE executions SET detail = ?1 WHERE id = ?2 AND ended_at IS NULL",
            params![detail, id],
        )?;
        Ok(())
    }

    /// Jobs of a user that are QUEUED or RUNNING.
    pub fn count_active_jobs_of_user(&self, user_id: i64) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(ACTIVE_JOBS_OF_USER, [user_id], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Replaces a user's password hash and revokes every token of the user.
    pub fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE users SET password_hash = ?1 WHERE name = ?2",
            params![password_hash, name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        self.conn.execute(
            "UPDATE tokens SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )?;
        Ok(())
    }

    /// Removes a user who never submitted a job (jobs keep their owner: disable such a user instead).
    pub fn delete_user(&self, name: &str) -> Result<()> {
        let Some(user) = self.user_by_name(name)? else {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        };
        let jobs: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM jobs WHERE user_id = ?1",
            [user.id],
            |r| r.get(0),
        )?;
        if jobs > 0 {
            return Err(StoreError::Conflict(format!(
                "user {name:?} owns {jobs} job(s) whose records must keep their owner; disable the user instead"
            )));
        }
        self.conn
            .execute("DELETE FROM tokens WHERE user_id = ?1", [user.id])?;
        self.conn
            .execute("DELETE FROM users WHERE id = ?1", [user.id])?;
        Ok(())
    }

    /// Records that `backend` is paused (`Some((reason, at))`) or no longer (`None`). A pause survives
    /// restarts until an operator resumes the backend.
    pub fn set_backend_pause(&self, backend: &str, pause: Option<(&str, &str)>) -> Result<()> {
        match pause {
            Some((reason, at)) => self.conn.execute(
                "INSERT INTO backend_pauses (backend, reason, paused_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (backend) DO UPDATE SET reason = excluded.reason, paused_at = excluded.paused_at",
                params![backend, reason, at],
            )?,
            None => self
                .conn
                .execute("DELETE FROM backend_pauses WHERE backend = ?1", [backend])?,
        };
        Ok(())
    }

    /// Why and since when `backend` is paused, if it is.
    pub fn backend_pause(&self, backend: &str) -> Result<Option<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT reason, paused_at FROM backend_pauses WHERE backend = ?1")?;
        let mut rows = stmt.query([backend])?;
        match rows.next()? {
            Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: &Store, sql: &str) -> String {
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt.query_map([1i64], |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn counting_active_jobs_seeks_the_user_status_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let p = plan(&store, ACTIVE_JOBS_OF_USER);
        assert!(
            p.contains("jobs_user_status") && p.contains("status=?"),
            "the count must seek (user_id, status), not scan the user's history: {p}"
        );
        assert!(!p.contains("SCAN"), "{p}");
    }
}

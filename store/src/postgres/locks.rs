//! [`LockStore`] on PostgreSQL: locks are leases (owner, expiry), taken over only once expired.

use super::rows::{self, exec, opt, Result, LOCK_COLS};
use super::PgEngine;
use crate::api::{LockGrant, LockStore, StoreFuture};
use crate::normalize_time;
use crate::records::LockRecord;

impl PgEngine {
    async fn acquire(
        &self,
        resource: &str,
        owner: &str,
        now: &str,
        expires_at: Option<&str>,
    ) -> Result<LockGrant> {
        let now = normalize_time("now", now)?;
        let expires_at = expires_at
            .map(|t| normalize_time("expires_at", t))
            .transpose()?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        // One conditional upsert: free, already ours, or expired at `now` -> ours. Otherwise the existing
        // row is left as it is (and locked by the statement, so the holder read below is the one that won).
        let granted = opt(
            &tx,
            "INSERT INTO locks (resource, owner, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, \
             acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
             WHERE locks.owner = excluded.owner \
             OR (locks.expires_at IS NOT NULL AND locks.expires_at <= excluded.acquired_at) \
             RETURNING resource",
            &[&resource, &owner, &now, &expires_at],
        )
        .await?
        .is_some();
        if granted {
            self.commit(tx).await?;
            return Ok(LockGrant::Granted);
        }
        let sql = format!("SELECT {LOCK_COLS} FROM locks WHERE resource = $1");
        let holder = opt(&tx, &sql, &[&resource]).await?;
        drop(tx);
        match holder {
            Some(row) => Ok(LockGrant::Held(rows::lock(&row)?)),
            // Unreachable while the conflicting row is locked; answer as a holder-less refusal would be
            // wrong, so report the conflict plainly.
            None => Err(crate::StoreError::Conflict(format!(
                "lock {resource:?} changed hands during the acquisition; retry"
            ))),
        }
    }
}

impl LockStore for PgEngine {
    fn locks(&self) -> StoreFuture<'_, Vec<LockRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {LOCK_COLS} FROM locks ORDER BY resource");
            rows::all(rows::rows(&c, &sql, &[]).await?, rows::lock)
        })
    }

    fn acquire_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        now: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, LockGrant> {
        Box::pin(self.acquire(resource, owner, now, expires_at))
    }

    fn renew_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let expires_at = expires_at
                .map(|t| normalize_time("expires_at", t))
                .transpose()?;
            let c = self.client().await?;
            let n = exec(
                &c,
                "UPDATE locks SET expires_at = $3 WHERE resource = $1 AND owner = $2",
                &[&resource, &owner, &expires_at],
            )
            .await?;
            self.count_commit();
            Ok(n > 0)
        })
    }

    fn release_lock<'a>(&'a self, resource: &'a str, owner: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let n = exec(
                &c,
                "DELETE FROM locks WHERE resource = $1 AND owner = $2",
                &[&resource, &owner],
            )
            .await?;
            self.count_commit();
            Ok(n > 0)
        })
    }

    fn force_release_lock<'a>(&'a self, resource: &'a str) -> StoreFuture<'a, Option<LockRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("DELETE FROM locks WHERE resource = $1 RETURNING {LOCK_COLS}");
            let row = opt(&c, &sql, &[&resource]).await?;
            self.count_commit();
            row.as_ref().map(rows::lock).transpose()
        })
    }
}

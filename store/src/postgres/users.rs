//! [`UserStore`] on PostgreSQL.

use super::error::Violation;
use super::rows::{self, exec, exec_or, one, opt, USER_COLS};
use super::PgEngine;
use crate::api::{StoreFuture, UserStore};
use crate::records::UserRecord;
use crate::{normalize_time, StoreError};

impl UserStore for PgEngine {
    fn add_user<'a>(
        &'a self,
        name: &'a str,
        email: Option<&'a str>,
        password_hash: &'a str,
        is_admin: bool,
        now: &'a str,
    ) -> StoreFuture<'a, UserRecord> {
        Box::pin(async move {
            if name.is_empty() {
                return Err(StoreError::invalid("user name", name, "a non-empty name"));
            }
            let now = normalize_time("now", now)?;
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO users (name, email, password_hash, is_admin, disabled, created_at) \
                     VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
                )
                .await
                .map_err(super::pg_error)?;
            let row = c
                .query_one(
                    &st,
                    &[&name, &email, &password_hash, &i64::from(is_admin), &now],
                )
                .await
                .map_err(|e| match super::violation(&e) {
                    Some(Violation::Unique) => StoreError::Conflict(format!(
                        "user {name:?} already exists; choose another name"
                    )),
                    _ => super::pg_error(e),
                })?;
            self.count_commit();
            Ok(UserRecord {
                id: row.get(0),
                name: name.to_owned(),
                email: email.map(str::to_owned),
                password_hash: password_hash.to_owned(),
                is_admin,
                disabled: false,
                created_at: now,
            })
        })
    }

    fn user_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {USER_COLS} FROM users WHERE name = $1");
            opt(&c, &sql, &[&name])
                .await?
                .as_ref()
                .map(rows::user)
                .transpose()
        })
    }

    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<UserRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
            opt(&c, &sql, &[&id])
                .await?
                .as_ref()
                .map(rows::user)
                .transpose()
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<UserRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {USER_COLS} FROM users ORDER BY name");
            rows::all(rows::rows(&c, &sql, &[]).await?, rows::user)
        })
    }

    fn set_user_disabled<'a>(&'a self, name: &'a str, disabled: bool) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = Self::begin(&mut c).await?;
            let n = exec(
                &tx,
                "UPDATE users SET disabled = $1 WHERE name = $2",
                &[&i64::from(disabled), &name],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {name:?}")));
            }
            if disabled {
                exec(
                    &tx,
                    "UPDATE tokens SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = $1)",
                    &[&name],
                )
                .await?;
            }
            self.commit(tx).await
        })
    }

    fn set_password_hash<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = Self::begin(&mut c).await?;
            let n = exec(
                &tx,
                "UPDATE users SET password_hash = $1 WHERE name = $2",
                &[&password_hash, &name],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {name:?}")));
            }
            exec(
                &tx,
                "UPDATE tokens SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = $1)",
                &[&name],
            )
            .await?;
            self.commit(tx).await
        })
    }

    fn delete_user<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = Self::begin(&mut c).await?;
            // The row lock keeps a concurrent admission from adding a job between the count and the delete.
            let Some(row) = opt(
                &tx,
                "SELECT id FROM users WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
            else {
                return Err(StoreError::NotFound(format!("user {name:?}")));
            };
            let id: i64 = row.get(0);
            let jobs = rows::count(
                &one(&tx, "SELECT COUNT(*) FROM jobs WHERE user_id = $1", &[&id]).await?,
            )?;
            if jobs > 0 {
                return Err(StoreError::Conflict(format!(
                    "user {name:?} owns {jobs} job(s) whose records must keep their owner; disable the user instead"
                )));
            }
            exec(&tx, "DELETE FROM tokens WHERE user_id = $1", &[&id]).await?;
            exec(&tx, "DELETE FROM users WHERE id = $1", &[&id]).await?;
            self.commit(tx).await
        })
    }

    fn insert_token<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: i64,
        now: &'a str,
        expires_at: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let now = normalize_time("now", now)?;
            let expires_at = normalize_time("expires_at", expires_at)?;
            let c = self.client().await?;
            exec_or(
                &c,
                "INSERT INTO tokens (token_hash, user_id, created_at, expires_at, revoked) \
                 VALUES ($1, $2, $3, $4, 0)",
                &[&token_hash, &user_id, &now, &expires_at],
                |v| {
                    Some(match v {
                        Violation::ForeignKey => StoreError::NotFound(format!("user id {user_id}")),
                        Violation::Unique => {
                            StoreError::Conflict("token hash already stored".into())
                        }
                    })
                },
            )
            .await?;
            self.count_commit();
            Ok(())
        })
    }

    fn user_for_token<'a>(
        &'a self,
        token_hash: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(async move {
            let now = normalize_time("now", now)?;
            let c = self.client().await?;
            let cols = USER_COLS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {cols} FROM tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.revoked = 0 AND t.expires_at > $2 AND u.disabled = 0"
            );
            opt(&c, &sql, &[&token_hash, &now])
                .await?
                .as_ref()
                .map(rows::user)
                .transpose()
        })
    }

    fn revoke_token<'a>(&'a self, token_hash: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let n = exec(
                &c,
                "UPDATE tokens SET revoked = 1 WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
            self.count_commit();
            Ok(n > 0)
        })
    }
}

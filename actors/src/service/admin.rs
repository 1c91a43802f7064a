//! Session and operator verbs: logout, whoami, self-registration, backend pause/resume, emergency stop, and
//! user administration (used by the local admin socket).

use shotline_protocol::wire::codes;
use shotline_store::UserRecord;

use super::Service;
use crate::auth;
use crate::backend::BackendMsg;
use crate::context::roles;
use crate::error::ServiceError;
use crate::time::utc_now;

fn require_admin(user: &UserRecord) -> Result<(), ServiceError> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ServiceError::new(
            codes::FORBIDDEN,
            format!("user {} is not an administrator", user.name),
        ))
    }
}

impl Service {
    /// Revokes `token`.
    pub async fn logout(&self, token: &str) -> Result<(), ServiceError> {
        self.authenticate(token).await?;
        let hash = auth::token_hash(token);
        self.db
            .run(move |e| async move { e.revoke_token(&hash).await })
            .await?;
        Ok(())
    }

    /// Creates a non-admin account, if the configuration allows self-registration. Attempts are limited per
    /// client address (`auth.registrations_per_address` per hour), counted before any other check.
    pub async fn register(
        &self,
        user: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<UserRecord, ServiceError> {
        if !self.ctx.config().auth.allow_registration {
            return Err(ServiceError::new(
                codes::FORBIDDEN,
                "self-registration is disabled on this server (auth.allow_registration); ask an operator",
            ));
        }
        if let Some(addr) = peer {
            let mut limiter = self.limiter.lock();
            if let Err(wait) = limiter.register_attempt(addr, std::time::Instant::now()) {
                return Err(ServiceError::new(
                    codes::RATE_LIMITED,
                    format!(
                        "too many registrations from {addr}: the limit is {} per hour (auth.registrations_per_address); try again in {} s",
                        limiter.registrations_limit(),
                        wait.as_secs().max(1)
                    ),
                ));
            }
        }
        self.add_user(user, password, false).await
    }

    async fn backend_call<T: Send + 'static>(
        &self,
        name: &str,
        build: impl FnOnce(ractor::RpcReplyPort<T>) -> BackendMsg,
    ) -> Result<T, ServiceError> {
        self.entry(name).await?;
        let b = self
            .ctx
            .lookup::<BackendMsg>(&roles::backend(name))
            .ok_or_else(|| ServiceError::unavailable(format!("backend {name} is restarting")))?;
        // Stopping a running job waits for its shot boundary: allow more than the usual call timeout.
        let timeout = self.ctx.call_timeout() * 4;
        match b.call(build, Some(timeout)).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(ServiceError::unavailable(format!(
                "backend {name} did not answer"
            ))),
        }
    }

    /// Pauses (`true`) or resumes a backend (administrators).
    pub async fn set_paused(
        &self,
        user: &UserRecord,
        backend: &str,
        paused: bool,
    ) -> Result<String, ServiceError> {
        require_admin(user)?;
        self.backend_call(backend, |r| BackendMsg::SetPaused(paused, r))
            .await?;
        tracing::warn!(%backend, by = %user.name, paused, "backend pause changed");
        Ok(if paused {
            format!("backend {backend} paused: its running job was re-queued; queued jobs wait")
        } else {
            format!("backend {backend} resumed")
        })
    }

    /// Emergency stop of every backend at once (administrators): per backend and per device, whether the
    /// safe state was reached.
    pub async fn estop(
        &self,
        user: &UserRecord,
    ) -> Result<shotline_protocol::wire::EstopReport, ServiceError> {
        require_admin(user)?;
        tracing::warn!(by = %user.name, "EMERGENCY STOP");
        let report = crate::backend::estop::estop_all(&self.ctx).await;
        if report.all_safe {
            tracing::warn!(message = %report.message, "emergency stop done");
        } else {
            tracing::error!(message = %report.message, "emergency stop incomplete");
        }
        Ok(report)
    }

    /// Disables or enables a user. Disabling revokes every token of the user (in the same store transaction),
    /// so enabling the user again does not revive them: the user logs in again.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), ServiceError> {
        let n = name.to_string();
        self.db
            .run(move |e| async move { e.set_user_disabled(&n, disabled).await })
            .await
    }

    /// Changes a user's password (and revokes the user's tokens).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), ServiceError> {
        auth::check_password_policy(password)
            .map_err(|m| ServiceError::new(codes::INVALID_ARGUMENT, m))?;
        let hash = self.hash_off_thread(password).await?;
        let n = name.to_string();
        self.db
            .run(move |e| async move { e.set_password_hash(&n, &hash).await })
            .await
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, ServiceError> {
        self.db.run(|e| async move { e.list_users().await }).await
    }

    /// Removes a user who never submitted a job.
    pub async fn remove_user(&self, name: &str) -> Result<(), ServiceError> {
        let n = name.to_string();
        self.db
            .run(move |e| async move { e.delete_user(&n).await })
            .await
    }

    /// A timestamp for admin messages.
    pub fn now(&self) -> String {
        utc_now()
    }
}

impl Service {
    /// Injects a fault (only when `faults.enabled` is set in the configuration).
    pub async fn inject_fault(
        &self,
        spec: crate::faults::FaultSpec,
    ) -> Result<String, ServiceError> {
        use crate::faults::{ActorFault, FaultSpec};
        if !self.ctx.config().faults.enabled {
            return Err(ServiceError::new(
                codes::FORBIDDEN,
                "fault injection is disabled (faults.enabled: false in the configuration)",
            ));
        }
        match spec {
            FaultSpec::Actor { role, mode } => {
                let cell = ractor::registry::where_is(self.ctx.name(&role)).ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "no actor {role:?} (e.g. scheduler, lock_manager, persistence, registry, gateway, backend:NAME, backend:NAME/acquisition, backend:NAME/analysis, backend:NAME/sequencer:DEVICE)"
                    ))
                })?;
                tracing::warn!(%role, ?mode, "fault injected");
                match mode {
                    ActorFault::Kill => cell.kill(),
                    ActorFault::Panic => {
                        let sent = if role.contains("/sequencer:") {
                            cell.send_message(crate::sequencer::SequencerMsg::InjectPanic)
                                .map_err(|e| e.to_string())
                        } else if role.ends_with("/acquisition") {
                            cell.send_message(crate::acquisition::AcquisitionMsg::InjectPanic)
                                .map_err(|e| e.to_string())
                        } else if role.ends_with("/analysis") {
                            cell.send_message(crate::analysis::AnalysisMsg::InjectPanic)
                                .map_err(|e| e.to_string())
                        } else if role.starts_with("backend:") {
                            cell.send_message(BackendMsg::InjectPanic)
                                .map_err(|e| e.to_string())
                        } else {
                            match role.as_str() {
                                roles::SCHEDULER => cell
                                    .send_message(crate::scheduler::SchedulerMsg::InjectPanic)
                                    .map_err(|e| e.to_string()),
                                roles::LOCK_MANAGER => cell
                                    .send_message(crate::lock_manager::LockMsg::InjectPanic)
                                    .map_err(|e| e.to_string()),
                                roles::PERSISTENCE => cell
                                    .send_message(crate::persistence::PersistenceMsg::InjectPanic)
                                    .map_err(|e| e.to_string()),
                                roles::REGISTRY => cell
                                    .send_message(crate::registry::RegistryMsg::InjectPanic)
                                    .map_err(|e| e.to_string()),
                                _ => {
                                    return Err(ServiceError::new(
                                        codes::INVALID_ARGUMENT,
                                        format!("{role} cannot be made to panic; use kill"),
                                    ))
                                }
                            }
                        };
                        sent.map_err(ServiceError::unavailable)?;
                    }
                }
                Ok(format!("{role}: {mode:?} injected"))
            }
            FaultSpec::StoreCommitDelay { delay_ms } => {
                let p = self
                    .ctx
                    .lookup::<crate::persistence::PersistenceMsg>(roles::PERSISTENCE)
                    .ok_or_else(|| ServiceError::unavailable("the store is restarting"))?;
                p.cast(crate::persistence::PersistenceMsg::SetCommitDelay(
                    std::time::Duration::from_millis(delay_ms),
                ))
                .map_err(|e| ServiceError::unavailable(e.to_string()))?;
                tracing::warn!(delay_ms, "store commit delay injected");
                Ok(format!("every commit is held {delay_ms} ms"))
            }
            FaultSpec::Device { .. }
            | FaultSpec::ClockDelay { .. }
            | FaultSpec::ExecutionPanic { .. }
            | FaultSpec::AnalysisDelay { .. } => {
                let name = spec.backend().unwrap_or_default().to_string();
                let r = self
                    .backend_call(&name, |reply| BackendMsg::InjectFault(spec, reply))
                    .await?;
                r.map_err(|m| ServiceError::new(codes::INVALID_ARGUMENT, m))
            }
        }
    }
}

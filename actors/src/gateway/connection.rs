//! A connection actor: a temporary child of the gateway that serves one QUIC connection, one task per
//! bidirectional stream (quinn bounds how many are open at once). Its failures never count toward the
//! restart intensity of the tree: the gateway only logs them. A connection not authenticated within
//! `limits.unauthenticated_timeout_ms` is closed.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use std::sync::Arc;

use super::stream::{self, ConnectionBinding, ConnectionCounts, StreamContext, StreamLimits};
use crate::service::Service;
use tokio::sync::OwnedSemaphorePermit;

/// Start arguments.
pub struct ConnectionArgs {
    /// The established connection.
    pub connection: quinn::Connection,
    /// The verbs.
    pub service: Service,
    /// Per-stream limits.
    pub limits: StreamLimits,
    /// Connections per user, shared by the gateway.
    pub counts: Arc<ConnectionCounts>,
    /// The gateway's unauthenticated-connection slot this connection holds until it authenticates.
    pub slot: Option<OwnedSemaphorePermit>,
}

/// Messages of a connection actor.
pub enum ConnectionMsg {
    /// The peer went away.
    Closed(String),
}

/// The connection actor.
pub struct ConnectionActor;

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = tokio::task::JoinHandle<()>;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ConnectionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let connection = args.connection;
        let limits = args.limits;
        let cx = StreamContext {
            service: args.service.clone(),
            limits,
            peer: connection.remote_address(),
            binding: Arc::new(ConnectionBinding::for_connection(
                args.counts.clone(),
                limits.max_connections_per_user,
                Some(connection.clone()),
                args.slot,
                limits.grant,
            )),
        };
        let task = tokio::spawn(async move {
            let deadline = tokio::time::sleep(limits.unauthenticated_timeout);
            tokio::pin!(deadline);
            let mut armed = true;
            let reason = loop {
                tokio::select! {
                    accepted = connection.accept_bi() => match accepted {
                        Ok((send, recv)) => {
                            tokio::spawn(stream::serve(cx.clone(), send, recv));
                        }
                        Err(e) => break e.to_string(),
                    },
                    _ = &mut deadline, if armed => {
                        armed = false;
                        if !cx.binding.is_authenticated() {
                            let ms = limits.unauthenticated_timeout.as_millis();
                            connection.close(
                                1u32.into(),
                                format!("not authenticated within {ms} ms (limits.unauthenticated_timeout_ms)")
                                    .as_bytes(),
                            );
                        }
                    }
                }
            };
            let _ = myself.cast(ConnectionMsg::Closed(reason));
        });
        Ok(task)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: ConnectionMsg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectionMsg::Closed(reason) => {
                tracing::debug!(%reason, "connection closed");
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        task: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}

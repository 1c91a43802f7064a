//! The gateway: the QUIC listener (quinn, TLS 1.3 with the ring provider, ALPN `shotline/1`). Each accepted
//! connection becomes a temporary child actor; their failures are logged, never escalated.

pub mod binding;
pub mod connection;
mod peek;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::service::Service;
use connection::{ConnectionActor, ConnectionArgs};
use stream::StreamLimits;

/// Start arguments (cloneable: the root restarts the gateway with the same ones).
#[derive(Clone)]
pub struct GatewayArgs {
    /// The verbs.
    pub service: Service,
    /// TLS + transport configuration.
    pub server_config: quinn::ServerConfig,
    /// Where to listen; after the first bind it holds the real address (a port 0 becomes the real port, so a
    /// restarted gateway listens where clients already connect).
    pub listen: Arc<parking_lot::Mutex<SocketAddr>>,
    /// Per-stream limits.
    pub limits: StreamLimits,
    /// Connections per user (shared across gateway restarts).
    pub counts: Arc<stream::ConnectionCounts>,
}

/// State of the gateway.
pub struct GatewayState {
    endpoint: quinn::Endpoint,
    accept: tokio::task::JoinHandle<()>,
}

/// The gateway actor.
pub struct GatewayActor;

impl Actor for GatewayActor {
    type Msg = ();
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let addr = *args.listen.lock();
        let endpoint = quinn::Endpoint::server(args.server_config.clone(), addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = endpoint.local_addr()?;
        *args.listen.lock() = local;
        tracing::info!(%local, "gateway listening");
        let ep = endpoint.clone();
        let cell = myself.get_cell();
        // Connections not yet authenticated (handshakes included) hold one of these slots.
        let unauthenticated = Arc::new(tokio::sync::Semaphore::new(
            args.limits.max_unauthenticated_connections as usize,
        ));
        let accept = tokio::spawn(async move {
            let mut refused: u64 = 0;
            let mut last_warning: Option<std::time::Instant> = None;
            while let Some(incoming) = ep.accept().await {
                let Ok(slot) = unauthenticated.clone().try_acquire_owned() else {
                    // Refused before the handshake: costs one packet, holds nothing.
                    incoming.refuse();
                    refused += 1;
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_warning = Some(std::time::Instant::now());
                        tracing::warn!(
                            refused,
                            limit = args.limits.max_unauthenticated_connections,
                            "refusing connections: too many not yet authenticated (limits.max_unauthenticated_connections)"
                        );
                    }
                    continue;
                };
                let (service, limits, cell) = (args.service.clone(), args.limits, cell.clone());
                let counts = args.counts.clone();
                tokio::spawn(async move {
                    let connection =
                        match tokio::time::timeout(Duration::from_secs(10), incoming).await {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let remote = connection.remote_address();
                    let spawned = Actor::spawn_linked(
                        None,
                        ConnectionActor,
                        ConnectionArgs {
                            connection,
                            service,
                            limits,
                            counts,
                            slot: Some(slot),
                        },
                        cell,
                    )
                    .await;
                    if let Err(e) = spawned {
                        tracing::warn!(%remote, error = %e, "could not start a connection actor");
                    }
                });
            }
        });
        Ok(GatewayState { endpoint, accept })
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::warn!(connection = ?cell.get_id(), error = %err, "connection actor failed");
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.endpoint.close(0u32.into(), b"server shutting down");
        state.accept.abort();
        Ok(())
    }
}

impl Drop for GatewayState {
    fn drop(&mut self) {
        // Also when killed: stop accepting and release the port.
        self.endpoint.close(0u32.into(), b"gateway stopped");
        self.accept.abort();
    }
}

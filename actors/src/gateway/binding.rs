//! What a connection may hold, and when it becomes authenticated.
//!
//! A connection starts **unauthenticated**: it holds one of the gateway's `limits.max_unauthenticated_connections`
//! slots (taken before the handshake), may open `limits.max_unauthenticated_streams` streams, and quinn buffers
//! at most the small initial receive window for it. It becomes **authenticated** when a request's token checks
//! out on it (or a `login` succeeds on it) and the user is under `limits.max_connections_per_user`: it is bound
//! to that user, gives its unauthenticated slot back, and gets the full stream limit and receive window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shotline_protocol::wire::codes;
use shotline_store::UserRecord;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ServiceError;

/// Bytes a peer may have in flight on one stream (quinn's per-stream receive window).
pub const STREAM_RECEIVE_WINDOW: u64 = 1 << 20;
/// Bytes a peer may have in flight across all streams of an authenticated connection.
pub const AUTHENTICATED_RECEIVE_WINDOW: u64 = 4 << 20;

/// Bytes a peer may have in flight across all streams of a connection not yet authenticated: one
/// unauthenticated frame prefix and a little more. Together with `max_unauthenticated_streams` ×
/// `max_unauthenticated_frame_bytes` read by the gateway, this is all such a connection can make the server
/// hold.
pub fn unauthenticated_receive_window(max_unauthenticated_frame_bytes: u64) -> u64 {
    max_unauthenticated_frame_bytes.saturating_add(4096)
}

/// Which user each connection belongs to, to bound connections per user.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    per_user: parking_lot::Mutex<HashMap<i64, u32>>,
}

impl ConnectionCounts {
    /// Connections currently bound to user `uid`.
    pub fn of(&self, uid: i64) -> u32 {
        self.per_user.lock().get(&uid).copied().unwrap_or(0)
    }
}

/// What an authenticated connection is allowed (applied to quinn when it authenticates).
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// Concurrent bidirectional streams.
    pub max_streams: u32,
    /// Connection-wide receive window in bytes.
    pub receive_window: u64,
}

/// The user a connection is bound to (at its first authenticated request); released when dropped.
#[derive(Debug)]
pub struct ConnectionBinding {
    counts: Arc<ConnectionCounts>,
    user: parking_lot::Mutex<Option<i64>>,
    limit: u32,
    authenticated: AtomicBool,
    unauthenticated_slot: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    connection: Option<quinn::Connection>,
    grant: Grant,
}

impl ConnectionBinding {
    /// A binding without a QUIC connection behind it (tests, tools): authentication changes no transport limit.
    pub fn new(counts: Arc<ConnectionCounts>, limit: u32) -> Self {
        Self::for_connection(
            counts,
            limit,
            None,
            None,
            Grant {
                max_streams: 0,
                receive_window: 0,
            },
        )
    }

    /// A binding for a new QUIC connection holding an unauthenticated-connection slot.
    pub fn for_connection(
        counts: Arc<ConnectionCounts>,
        limit: u32,
        connection: Option<quinn::Connection>,
        slot: Option<OwnedSemaphorePermit>,
        grant: Grant,
    ) -> Self {
        Self {
            counts,
            user: parking_lot::Mutex::new(None),
            limit,
            authenticated: AtomicBool::new(false),
            unauthenticated_slot: parking_lot::Mutex::new(slot),
            connection,
            grant,
        }
    }

    /// Whether a token has checked out on this connection (and its user was under the connection limit).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// The QUIC connection, if any.
    pub fn connection(&self) -> Option<&quinn::Connection> {
        self.connection.as_ref()
    }

    /// Binds the connection to `user` (no-op when already bound); `LIMIT_EXCEEDED` above the per-user limit.
    pub fn bind(&self, user: &UserRecord) -> Result<(), ServiceError> {
        let mut bound = self.user.lock();
        if bound.is_some() {
            return Ok(());
        }
        {
            let mut counts = self.counts.per_user.lock();
            let n = counts.entry(user.id).or_insert(0);
            if *n >= self.limit {
                let n = *n;
                return Err(ServiceError::new(
                    codes::LIMIT_EXCEEDED,
                    format!(
                        "user {} already has {} connections open; the limit is {} (limits.max_connections_per_user)",
                        user.name, n, self.limit
                    ),
                ));
            }
            *n += 1;
        }
        *bound = Some(user.id);
        drop(bound);
        self.authenticated.store(true, Ordering::Release);
        // Give the unauthenticated slot back and open the connection up.
        self.unauthenticated_slot.lock().take();
        if let Some(c) = &self.connection {
            if let Ok(w) = quinn::VarInt::from_u64(self.grant.receive_window) {
                c.set_receive_window(w);
            }
            c.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(self.grant.max_streams));
        }
        Ok(())
    }
}

impl Drop for ConnectionBinding {
    fn drop(&mut self) {
        if let Some(uid) = *self.user.lock() {
            let mut counts = self.counts.per_user.lock();
            if let Some(n) = counts.get_mut(&uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&uid);
                }
            }
        }
    }
}

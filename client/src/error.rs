//! What can go wrong on the client side, in words a user can act on.

use shotline_protocol::wire::ErrorBody;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address could not be used.
    #[error("cannot reach {server}: {reason}")]
    Connect {
        /// host:port.
        server: String,
        /// Why.
        reason: String,
    },
    /// TLS set-up, pinning or certificate problems (includes a changed pinned certificate).
    #[error(transparent)]
    Tls(#[from] shotline_tls::TlsError),
    /// The connection or stream failed.
    #[error("connection to {server} failed: {reason}")]
    Transport {
        /// host:port.
        server: String,
        /// Why.
        reason: String,
    },
    /// The server sent something that is not a valid response.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("{}", server_error(.0))]
    Server(ErrorBody),
    /// The server answered with a response of an unexpected kind.
    #[error("unexpected response: expected {expected}, got {got}")]
    Unexpected {
        /// What was asked.
        expected: &'static str,
        /// What came back.
        got: String,
    },
}

fn server_error(e: &ErrorBody) -> String {
    let mut s = format!("{}: {}", e.code, e.message);
    if let Some(p) = &e.path {
        s.push_str(&format!(" (at {p})"));
    }
    if !e.details.is_empty() {
        for d in &e.details {
            s.push_str(&format!(
                "\n  {}: {}: {}",
                d.path,
                d.code.as_str(),
                d.message
            ));
        }
        if e.total_errors > e.details.len() {
            s.push_str(&format!(
                "\n  ... and {} more",
                e.total_errors - e.details.len()
            ));
        }
    }
    s
}

impl ClientError {
    /// The server's error code, if the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server(e) => Some(&e.code),
            _ => None,
        }
    }
}

//! quinn server configuration (TLS 1.3, ring only) and the transport limits shared with clients.

use std::sync::Arc;
use std::time::Duration;

use crate::error::TlsError;
use crate::identity::ServerIdentity;

/// Server-side QUIC/TLS options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// ALPN protocol names the server accepts (e.g. `b"shotline/1"`); at least one.
    pub alpn: Vec<Vec<u8>>,
    /// Maximum number of concurrently open client-initiated bidirectional streams per connection.
    pub max_concurrent_bidi_streams: u32,
    /// Close a connection after this long without any traffic (milliseconds, > 0).
    pub idle_timeout_ms: u64,
    /// Send keep-alive packets at this interval (milliseconds, < `idle_timeout_ms`), if set.
    pub keep_alive_ms: Option<u64>,
    /// Bytes a peer may have in flight on one connection across all its streams before it must wait for the
    /// server to read (quinn buffers at most this much per connection). The gateway starts every connection
    /// with this and raises it once the connection is authenticated (`quinn::Connection::set_receive_window`).
    /// `None`: quinn's default (unbounded across streams).
    pub receive_window: Option<u64>,
    /// Bytes a peer may have in flight on one stream. `None`: quinn's default (1.25 MB).
    pub stream_receive_window: Option<u64>,
}

/// Bytes of not-yet-accepted connections (e.g. 0-RTT data) quinn buffers per connection attempt and in all.
const INCOMING_BUFFER: u64 = 64 * 1024;
const INCOMING_BUFFER_TOTAL: u64 = 4 * 1024 * 1024;

fn window(field: &str, value: u64) -> Result<quinn::VarInt, TlsError> {
    if value == 0 {
        return Err(TlsError::Config(format!(
            "{field}: must be greater than 0 (got 0)"
        )));
    }
    quinn::VarInt::from_u64(value)
        .map_err(|_| TlsError::Config(format!("{field}: {value} is too large (limit 2^62 - 1)")))
}

/// The ring crypto provider, the only one this crate ever uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default rustls provider unless one is already installed.
/// Only needed for code paths that ask rustls for the default provider; this crate's own
/// configs always name ring explicitly.
pub fn ensure_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Builds the quinn server config: TLS 1.3 only, ring only, no client certificates, the given
/// ALPN list, `max_concurrent_bidi_streams` bidirectional and zero unidirectional streams, the given
/// receive windows, and small buffers for connection attempts not yet accepted.
pub fn server_config(
    id: &ServerIdentity,
    opts: &ServerOptions,
) -> Result<quinn::ServerConfig, TlsError> {
    if opts.max_concurrent_bidi_streams == 0 {
        return Err(TlsError::Config(
            "max_concurrent_bidi_streams: must be at least 1 (got 0)".into(),
        ));
    }
    check_alpn(&opts.alpn)?;
    let mut transport = transport(opts.idle_timeout_ms, opts.keep_alive_ms)?;
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(opts.max_concurrent_bidi_streams));
    if let Some(w) = opts.receive_window {
        transport.receive_window(window("receive_window", w)?);
    }
    if let Some(w) = opts.stream_receive_window {
        transport.stream_receive_window(window("stream_receive_window", w)?);
    }

    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(format!("TLS 1.3 with ring: {e}")))?
        .with_no_client_auth()
        .with_single_cert(id.cert_chain.clone(), id.key.clone_key())
        .map_err(|e| {
            TlsError::Config(format!(
                "server certificate {} / private key: {e}",
                id.fingerprint
            ))
        })?;
    tls.alpn_protocols = opts.alpn.clone();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))
        .map_err(|e| TlsError::Config(format!("QUIC server crypto: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    config.incoming_buffer_size(INCOMING_BUFFER);
    config.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
    Ok(config)
}

/// Checks an ALPN list: non-empty, every entry 1..=255 bytes.
pub(crate) fn check_alpn(alpn: &[Vec<u8>]) -> Result<(), TlsError> {
    if alpn.is_empty() {
        return Err(TlsError::Config(
            "alpn: at least one protocol name is required (e.g. \"shotline/1\")".into(),
        ));
    }
    for (i, name) in alpn.iter().enumerate() {
        if name.is_empty() || name.len() > 255 {
            return Err(TlsError::Config(format!(
                "alpn[{i}]: length must be 1..=255 bytes (got {})",
                name.len()
            )));
        }
    }
    Ok(())
}

/// Transport settings common to both sides: idle timeout, keep-alive, no unidirectional streams.
pub(crate) fn transport(
    idle_timeout_ms: u64,
    keep_alive_ms: Option<u64>,
) -> Result<quinn::TransportConfig, TlsError> {
    if idle_timeout_ms == 0 {
        return Err(TlsError::Config(
            "idle_timeout_ms: must be greater than 0 (got 0)".into(),
        ));
    }
    let idle =
        quinn::IdleTimeout::try_from(Duration::from_millis(idle_timeout_ms)).map_err(|_| {
            TlsError::Config(format!(
                "idle_timeout_ms: {idle_timeout_ms} is too large (limit 2^62 - 1)"
            ))
        })?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(idle));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    if let Some(ka) = keep_alive_ms {
        if ka == 0 || ka >= idle_timeout_ms {
            return Err(TlsError::Config(format!(
                "keep_alive_ms: must be between 1 and idle_timeout_ms - 1 = {} (got {ka})",
                idle_timeout_ms - 1
            )));
        }
        transport.keep_alive_interval(Some(Duration::from_millis(ka)));
    }
    Ok(transport)
}

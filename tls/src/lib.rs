//! shotline TLS: the gateway's server identity (generated self-signed certificate or PEM files),
//! quinn/rustls configurations that use **only** the ring crypto provider and TLS 1.3, and
//! client-side trust: certificate pinning (trust on first use, like SSH `known_hosts`) or a CA file.
//!
//! Server side: [`load_or_generate`] or [`load_files`], then [`server_config`].
//! Client side: [`client_config`]; after a successful first session, pin the fingerprint reported
//! by [`PinCheck::outcome`] with [`KnownServers::pin`]; on a failed handshake, [`mismatch_error`]
//! turns a [`PinOutcome::Mismatch`] into a user-facing [`TlsError::CertificateChanged`].

mod client;
mod error;
mod identity;
mod pins;
pub mod private_fs;
mod server;

pub use client::{
    client_config, mismatch_error, split_server, ClientOptions, PinCheck, PinOutcome, Trust,
};
pub use error::TlsError;
pub use identity::{
    fingerprint, load_files, load_or_generate, ServerIdentity, CERT_FILE, KEY_FILE, MAX_PEM_BYTES,
};
pub use pins::{is_valid_fingerprint, KnownServers};
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{ensure_ring_provider, server_config, ServerOptions};

//! quinn client configuration: certificate pinning (trust on first use) or CA verification.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::TlsError;
use crate::identity::{fingerprint, read_certs};
use crate::pins::KnownServers;
use crate::server::{check_alpn, provider, transport};

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust on first use: compare the leaf certificate with the pin stored in `pins_file`.
    Pin {
        /// The known-servers JSON file (see [`KnownServers`]).
        pins_file: PathBuf,
    },
    /// Ordinary WebPKI verification against the certificates in a PEM CA file.
    Ca {
        /// PEM file with one or more trusted root certificates.
        ca_file: PathBuf,
    },
}

/// Client-side QUIC/TLS options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// ALPN protocol names offered to the server; at least one.
    pub alpn: Vec<Vec<u8>>,
    /// Close the connection after this long without any traffic (milliseconds, > 0).
    pub idle_timeout_ms: u64,
    /// Send keep-alive packets at this interval (milliseconds, < `idle_timeout_ms`), if set.
    pub keep_alive_ms: Option<u64>,
}

/// What pin verification concluded for the latest handshake made with a client config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOutcome {
    /// The presented certificate matches the stored pin.
    Matched {
        /// The (matching) fingerprint.
        fingerprint: String,
    },
    /// No pin was stored; the certificate was accepted and should be pinned once the session works.
    FirstUse {
        /// Fingerprint of the presented certificate.
        presented: String,
    },
    /// The presented certificate differs from the stored pin; the handshake was refused.
    Mismatch {
        /// The pinned fingerprint.
        expected: String,
        /// Fingerprint of the presented certificate.
        presented: String,
    },
}

/// Handle to the pin verification result of a config built by [`client_config`].
///
/// It is shared with the config's verifier, so it reports the most recent handshake made with
/// that config. In CA mode it always reports `None`.
#[derive(Debug, Clone, Default)]
pub struct PinCheck {
    outcome: Arc<Mutex<Option<PinOutcome>>>,
}

impl PinCheck {
    /// The outcome of the latest handshake's certificate check, if one has happened.
    pub fn outcome(&self) -> Option<PinOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn record(&self, outcome: PinOutcome) {
        *self
            .outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome);
    }
}

/// Builds [`TlsError::CertificateChanged`] if `outcome` is a [`PinOutcome::Mismatch`].
pub fn mismatch_error(
    server: &str,
    pins_file: &Path,
    outcome: Option<PinOutcome>,
) -> Option<TlsError> {
    match outcome {
        Some(PinOutcome::Mismatch {
            expected,
            presented,
        }) => Some(TlsError::CertificateChanged {
            server: server.to_string(),
            expected,
            presented,
            pins_file: pins_file.to_path_buf(),
        }),
        _ => None,
    }
}

/// Splits `host:port` (IPv6 hosts in brackets: `[::1]:4433`) into host and port.
pub fn split_server(server_key: &str) -> Result<(String, u16), TlsError> {
    let bad = |reason: &str| TlsError::ServerKey {
        value: server_key.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = if let Some(rest) = server_key.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']' after IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("missing \":PORT\" after ']'"))?;
        (host, port)
    } else {
        let (host, port) = server_key
            .rsplit_once(':')
            .ok_or_else(|| bad("missing \":PORT\""))?;
        if host.contains(':') {
            return Err(bad("IPv6 addresses must be written in brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port must be a number between 1 and 65535"))?;
    if port == 0 {
        return Err(bad("port must be a number between 1 and 65535"));
    }
    Ok((host.to_string(), port))
}

/// Builds a client config for connecting to `server_key` (`host:port`, as the user typed it).
///
/// * [`Trust::Pin`]: if the pins file has a fingerprint for `server_key`, the presented leaf
///   certificate must match it exactly (otherwise the handshake fails and the [`PinCheck`] reports
///   [`PinOutcome::Mismatch`]); without a pin the certificate is accepted and reported as
///   [`PinOutcome::FirstUse`] so the caller can [`KnownServers::pin`] it after the session works.
///   The handshake signature is always verified against the presented certificate's key.
/// * [`Trust::Ca`]: WebPKI verification against the CA file's roots, for the host part of
///   `server_key` (whatever server name is later passed to `quinn::Endpoint::connect`).
///
/// The client accepts no server-initiated streams.
pub fn client_config(
    trust: &Trust,
    server_key: &str,
    opts: &ClientOptions,
) -> Result<(quinn::ClientConfig, PinCheck), TlsError> {
    let (host, _port) = split_server(server_key)?;
    check_alpn(&opts.alpn)?;
    let mut transport = transport(opts.idle_timeout_ms, opts.keep_alive_ms)?;
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));

    let provider = provider();
    let check = PinCheck::default();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Pin { pins_file } => {
            let known = KnownServers::load(pins_file)?;
            Arc::new(PinVerifier {
                expected: known.get(server_key).map(str::to_string),
                check: check.clone(),
                algorithms: provider.signature_verification_algorithms,
            })
        }
        Trust::Ca { ca_file } => {
            let mut roots = rustls::RootCertStore::empty();
            for (i, cert) in read_certs(ca_file)?.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::pem(ca_file, format!("certificate #{}: {e}", i + 1)))?;
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Config(format!("CA file {}: {e}", ca_file.display())))?;
            let name = ServerName::try_from(host.clone()).map_err(|e| TlsError::ServerKey {
                value: server_key.to_string(),
                reason: format!("host {host:?} is neither a DNS name nor an IP address: {e}"),
            })?;
            Arc::new(CaVerifier { inner, name })
        }
    };

    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(format!("TLS 1.3 with ring: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = opts.alpn.clone();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| TlsError::Config(format!("QUIC client crypto: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok((config, check))
}

/// The presented certificate is not the pinned one.
#[derive(Debug)]
struct PinMismatch {
    expected: String,
    presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate {} does not match pinned {}",
            self.presented, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Trust-on-first-use verifier: compares leaf fingerprints, still checks handshake signatures.
#[derive(Debug)]
struct PinVerifier {
    expected: Option<String>,
    check: PinCheck,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        match &self.expected {
            None => {
                self.check.record(PinOutcome::FirstUse { presented });
                Ok(ServerCertVerified::assertion())
            }
            Some(expected) if *expected == presented => {
                self.check.record(PinOutcome::Matched {
                    fingerprint: presented,
                });
                Ok(ServerCertVerified::assertion())
            }
            Some(expected) => {
                let mismatch = PinMismatch {
                    expected: expected.clone(),
                    presented: presented.clone(),
                };
                self.check.record(PinOutcome::Mismatch {
                    expected: expected.clone(),
                    presented,
                });
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(mismatch)),
                )))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// WebPKI verifier that always checks the certificate against the host of the server key.
#[derive(Debug)]
struct CaVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

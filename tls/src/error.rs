//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading identities, building TLS configs or managing pins.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory could not be read, written or created.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file did not contain what was expected (or its content is unusable).
    #[error("bad PEM file {path}: {reason}")]
    Pem {
        /// The PEM file involved.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Only one of the two identity files exists; refusing to overwrite or guess.
    #[error(
        "incomplete server identity: {present} exists but {missing} is missing; restore {missing} \
         or delete {present} to generate a new self-signed identity (clients that pinned the old one \
         will then have to re-pin)"
    )]
    IncompleteIdentity {
        /// The identity file that exists.
        present: PathBuf,
        /// The identity file that does not.
        missing: PathBuf,
    },
    /// Self-signed certificate generation failed.
    #[error("cannot generate self-signed certificate: {0}")]
    Generate(String),
    /// Invalid options or a rustls/quinn configuration failure.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// The server string is not of the form `host:port`.
    #[error("invalid server {value:?}: {reason} (expected HOST:PORT, e.g. \"localhost:4433\" or \"[::1]:4433\")")]
    ServerKey {
        /// The string as given.
        value: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The known-servers (pins) file is not valid.
    #[error("bad pins file {path}: {reason}")]
    PinsFile {
        /// The pins file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A fingerprint string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid fingerprint {value:?} for server {server:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    BadFingerprint {
        /// The server the fingerprint was meant for.
        server: String,
        /// The fingerprint as given.
        value: String,
    },
    /// The server presented a certificate different from the pinned one.
    #[error(
        "the certificate of server {server} has CHANGED since it was pinned.\n  \
         pinned:    {expected}\n  presented: {presented}\n\
         This can mean the server was reinstalled or its certificate replaced, or that someone is \
         intercepting the connection. Check the new fingerprint with the server's administrator. \
         To accept the new certificate deliberately, run `shotline login --server {server} --user NAME --repin` \
         or remove the entry for {server} from {}.",
        pins_file.display()
    )]
    CertificateChanged {
        /// The `host:port` key the pin is stored under.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// The fingerprint of the certificate the server presented.
        presented: String,
        /// The pins file holding the old pin.
        pins_file: PathBuf,
    },
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pem(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TlsError::Pem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

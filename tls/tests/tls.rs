//! Integration tests: real QUIC handshakes on 127.0.0.1 with generated identities.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shotline_tls::{
    client_config, load_files, load_or_generate, mismatch_error, server_config, split_server,
    ClientOptions, KnownServers, PinOutcome, ServerIdentity, ServerOptions, TlsError, Trust,
};

const ALPN: &[u8] = b"shotline/1";

fn names() -> Vec<String> {
    vec!["localhost".to_string(), "127.0.0.1".to_string()]
}

fn server_opts() -> ServerOptions {
    ServerOptions {
        alpn: vec![ALPN.to_vec()],
        max_concurrent_bidi_streams: 16,
        idle_timeout_ms: 30_000,
        keep_alive_ms: None,
        receive_window: Some(1 << 20),
        stream_receive_window: Some(1 << 20),
    }
}

fn client_opts(alpn: &[u8]) -> ClientOptions {
    ClientOptions {
        alpn: vec![alpn.to_vec()],
        idle_timeout_ms: 30_000,
        keep_alive_ms: Some(5_000),
    }
}

/// Starts a server that accepts (and holds) every connection; returns the endpoint and address.
fn start_server(id: &ServerIdentity) -> (quinn::Endpoint, SocketAddr) {
    let cfg = server_config(id, &server_opts()).unwrap();
    let ep = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = ep.local_addr().unwrap();
    let accept = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    (ep, addr)
}

/// Connects with `cfg`; returns the handshake result (the timeout is only a hang guard).
async fn connect(cfg: quinn::ClientConfig, addr: SocketAddr) -> Result<quinn::Connection, String> {
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = ep.connect_with(cfg, addr, "localhost").unwrap();
    match tokio::time::timeout(Duration::from_secs(60), connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => panic!("handshake hung"),
    }
}

fn pin_trust(pins: &Path) -> Trust {
    Trust::Pin {
        pins_file: pins.to_path_buf(),
    }
}

#[test]
fn generate_writes_private_key_and_reload_keeps_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let idir = dir.path().join("tls");
    let first = load_or_generate(&idir, &names()).unwrap();
    assert!(first.generated);
    assert!(first.fingerprint.starts_with("sha256:"));
    assert_eq!(first.fingerprint.len(), "sha256:".len() + 64);
    assert!(idir.join("cert.pem").is_file());
    assert!(idir.join("key.pem").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(idir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = load_or_generate(&idir, &names()).unwrap();
    assert!(!again.generated);
    assert_eq!(again.fingerprint, first.fingerprint);
    assert_eq!(
        again.fingerprint,
        shotline_tls::fingerprint(&again.cert_chain[0])
    );
}

#[test]
fn half_an_identity_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    load_or_generate(dir.path(), &names()).unwrap();
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    let err = load_or_generate(dir.path(), &names()).unwrap_err();
    assert!(
        matches!(err, TlsError::IncompleteIdentity { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("key.pem"), "{err}");
    assert!(dir.path().join("cert.pem").is_file());
}

#[tokio::test]
async fn pin_first_use_then_match_then_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("known_servers.json");
    let server_key = "lab-gateway:4433";
    let id_a = load_or_generate(&dir.path().join("a"), &names()).unwrap();
    let (_ep_a, addr_a) = start_server(&id_a);

    // First use: accepted, reported, not yet pinned.
    let (cfg, check) = client_config(&pin_trust(&pins), server_key, &client_opts(ALPN)).unwrap();
    let conn = connect(cfg, addr_a).await.unwrap();
    assert_eq!(
        conn.handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol),
        Some(ALPN.to_vec())
    );
    let presented = match check.outcome() {
        Some(PinOutcome::FirstUse { presented }) => presented,
        other => panic!("expected FirstUse, got {other:?}"),
    };
    assert_eq!(presented, id_a.fingerprint);
    let mut known = KnownServers::load(&pins).unwrap();
    assert_eq!(known.get(server_key), None);
    known.pin(server_key, &presented).unwrap();

    // Second connection: pin loaded from disk and matched.
    let (cfg, check) = client_config(&pin_trust(&pins), server_key, &client_opts(ALPN)).unwrap();
    connect(cfg, addr_a).await.unwrap();
    assert_eq!(
        check.outcome(),
        Some(PinOutcome::Matched {
            fingerprint: id_a.fingerprint.clone()
        })
    );

    // Same server key, different identity: refused, both fingerprints reported.
    let id_b = load_or_generate(&dir.path().join("b"), &names()).unwrap();
    assert_ne!(id_a.fingerprint, id_b.fingerprint);
    let (_ep_b, addr_b) = start_server(&id_b);
    let (cfg, check) = client_config(&pin_trust(&pins), server_key, &client_opts(ALPN)).unwrap();
    let err = connect(cfg, addr_b).await.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    let outcome = check.outcome();
    assert_eq!(
        outcome,
        Some(PinOutcome::Mismatch {
            expected: id_a.fingerprint.clone(),
            presented: id_b.fingerprint.clone(),
        })
    );
    let err = mismatch_error(server_key, &pins, outcome).unwrap();
    let msg = err.to_string();
    assert!(msg.contains(&id_a.fingerprint), "{msg}");
    assert!(msg.contains(&id_b.fingerprint), "{msg}");
    assert!(
        msg.contains("shotline login --server lab-gateway:4433 --user NAME --repin"),
        "{msg}"
    );
    assert!(msg.contains(&pins.display().to_string()), "{msg}");
    // The pin is untouched by a failed handshake.
    assert_eq!(
        KnownServers::load(&pins).unwrap().get(server_key),
        Some(id_a.fingerprint.as_str())
    );
    assert!(mismatch_error(
        server_key,
        &pins,
        Some(PinOutcome::FirstUse {
            presented: id_b.fingerprint
        })
    )
    .is_none());
}

/// Writes a CA certificate (PEM) and returns it together with its issuer.
fn make_ca(path: &Path, name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(path, ca.pem()).unwrap();
    ca
}

#[tokio::test]
async fn ca_mode_accepts_leaf_signed_by_trusted_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(&dir.path().join("ca.pem"), "lab CA");
    let _other = make_ca(&dir.path().join("other-ca.pem"), "other CA");

    let mut params = rcgen::CertificateParams::new(names()).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&leaf_key, &ca).unwrap();
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    let id = load_files(&cert_path, &key_path).unwrap();
    assert_eq!(id.cert_chain.len(), 2);
    assert!(!id.generated);
    let (_ep, addr) = start_server(&id);

    let trust = Trust::Ca {
        ca_file: dir.path().join("ca.pem"),
    };
    let key = format!("127.0.0.1:{}", addr.port());
    let (cfg, check) = client_config(&trust, &key, &client_opts(ALPN)).unwrap();
    connect(cfg, addr).await.unwrap();
    assert_eq!(check.outcome(), None);

    // The name checked is the host of the server key, which the certificate does not cover.
    let wrong_host = format!("elsewhere.example:{}", addr.port());
    let (cfg, _) = client_config(&trust, &wrong_host, &client_opts(ALPN)).unwrap();
    let err = connect(cfg, addr).await.unwrap_err();
    assert!(
        err.contains("not valid for name \"elsewhere.example\""),
        "{err}"
    );

    let other = Trust::Ca {
        ca_file: dir.path().join("other-ca.pem"),
    };
    let (cfg, _) = client_config(&other, &key, &client_opts(ALPN)).unwrap();
    let err = connect(cfg, addr).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn alpn_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let id = load_or_generate(dir.path(), &names()).unwrap();
    let (_ep, addr) = start_server(&id);
    let pins = dir.path().join("pins.json");
    let (cfg, _) = client_config(
        &pin_trust(&pins),
        "localhost:1",
        &client_opts(b"shotline/2"),
    )
    .unwrap();
    let err = connect(cfg, addr).await.unwrap_err();
    assert!(
        err.contains("error 120") && err.contains("protocol"),
        "{err}"
    );
}

#[test]
fn load_files_reports_bad_and_missing_files_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let err = load_files(&garbage, &garbage).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if *path == garbage),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&garbage.display().to_string()),
        "{err}"
    );

    let good = load_or_generate(&dir.path().join("id"), &names()).unwrap();
    assert!(good.generated);
    let cert = dir.path().join("id").join("cert.pem");
    let err = load_files(&cert, &garbage).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if *path == garbage),
        "{err:?}"
    );

    let missing = dir.path().join("nope.pem");
    let err = load_files(&missing, &garbage).unwrap_err();
    assert!(
        matches!(&err, TlsError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.pem"), "{err}");

    // A key that belongs to a different certificate is refused.
    let other = load_or_generate(&dir.path().join("other"), &names()).unwrap();
    assert!(other.generated);
    let err = load_files(&cert, &dir.path().join("other").join("key.pem")).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn known_servers_persist_forget_and_reject_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("known.json");
    let fp = format!("sha256:{}", "ab".repeat(32));
    let mut known = KnownServers::load(&path).unwrap();
    known.pin("h:1", &fp).unwrap();
    known.pin("h:2", &fp).unwrap();
    let mut reloaded = KnownServers::load(&path).unwrap();
    assert_eq!(reloaded.get("h:1"), Some(fp.as_str()));
    assert!(reloaded.forget("h:1").unwrap());
    assert!(!reloaded.forget("h:1").unwrap());
    let reloaded = KnownServers::load(&path).unwrap();
    assert_eq!(reloaded.get("h:1"), None);
    assert_eq!(reloaded.get("h:2"), Some(fp.as_str()));

    let err = known.pin("h:3", "md5:1234").unwrap_err();
    assert!(err.to_string().contains("md5:1234"), "{err}");

    std::fs::write(&path, "{not json").unwrap();
    let err = KnownServers::load(&path).unwrap_err();
    assert!(
        matches!(&err, TlsError::PinsFile { path: p, .. } if *p == path),
        "{err:?}"
    );
    std::fs::write(&path, r#"{"h:1": "sha256:XYZ"}"#).unwrap();
    let err = KnownServers::load(&path).unwrap_err();
    assert!(err.to_string().contains("\"h:1\""), "{err}");
}

#[test]
fn options_and_server_keys_are_validated() {
    assert_eq!(
        split_server("localhost:4433").unwrap(),
        ("localhost".to_string(), 4433)
    );
    assert_eq!(
        split_server("[::1]:4433").unwrap(),
        ("::1".to_string(), 4433)
    );
    for bad in [
        "localhost",
        "::1:4433",
        ":4433",
        "host:0",
        "host:99999",
        "[::1]4433",
    ] {
        let err = split_server(bad).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let id = load_or_generate(dir.path(), &names()).unwrap();
    let mut opts = server_opts();
    opts.alpn.clear();
    assert!(server_config(&id, &opts)
        .unwrap_err()
        .to_string()
        .contains("alpn"));
    let mut opts = server_opts();
    opts.keep_alive_ms = Some(60_000);
    assert!(server_config(&id, &opts)
        .unwrap_err()
        .to_string()
        .contains("keep_alive_ms"));
    let mut opts = server_opts();
    opts.max_concurrent_bidi_streams = 0;
    assert!(server_config(&id, &opts)
        .unwrap_err()
        .to_string()
        .contains("max_concurrent_bidi_streams"));
    let mut copts = client_opts(ALPN);
    copts.idle_timeout_ms = 0;
    let trust = pin_trust(&dir.path().join("p.json"));
    assert!(client_config(&trust, "h:1", &copts)
        .unwrap_err()
        .to_string()
        .contains("idle_timeout_ms"));
}

#[test]
fn ensure_ring_provider_is_idempotent() {
    shotline_tls::ensure_ring_provider();
    shotline_tls::ensure_ring_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

#[test]
fn certificate_changed_message_reads_well() {
    let err = mismatch_error(
        "gw.lab:4433",
        Path::new("/home/u/.config/shotline/known_servers.json"),
        Some(PinOutcome::Mismatch {
            expected: "sha256:old".into(),
            presented: "sha256:new".into(),
        }),
    )
    .unwrap();
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains("pinned:    sha256:old"), "{msg}");
    assert!(msg.contains("presented: sha256:new"), "{msg}");
    assert!(
        msg.contains(
            "remove the entry for gw.lab:4433 from /home/u/.config/shotline/known_servers.json"
        ),
        "{msg}"
    );
}

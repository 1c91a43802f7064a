//! The real `shotline` binary end to end: serve on 127.0.0.1:0 with a temporary data dir, add a user, log
//! in over QUIC, submit a seeded job and wait for its result, then restart the server and find it again.

use crate::common::{both_engines, shotline, submit_file, Server, TestEngine};

both_engines!(#[test] fn serve_login_submit_wait_restart_and_find_the_result_again);
fn serve_login_submit_wait_restart_and_find_the_result_again(engine: TestEngine) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let server = Server::start(&engine, &data);
    let addr = server.addr.clone();
    let data_s = data.to_str().unwrap();

    let (ok, out, err) = shotline(
        &home,
        &[
            "user",
            "add",
            "alice",
            "--data-dir",
            data_s,
            "--password-stdin",
        ],
        Some("correct horse\n"),
    );
    assert!(ok, "user add: {out} {err}");
    assert!(out.contains("through the running server"), "{out}");

    let (ok, _, err) = shotline(
        &home,
        &[
            "login",
            "--server",
            &addr,
            "--user",
            "alice",
            "--password-stdin",
        ],
        Some("wrong password\n"),
    );
    assert!(!ok && err.contains("INVALID_CREDENTIALS"), "{err}");
    let (ok, out, err) = shotline(
        &home,
        &[
            "login",
            "--server",
            &addr,
            "--user",
            "alice",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    );
    assert!(ok, "login: {out} {err}");
    assert!(err.contains("pinned the certificate"), "{err}");

    let (ok, out, err) = shotline(&home, &["backends", "--server", &addr, "--json"], None);
    assert!(ok, "{err}");
    let backends: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(backends[0]["name"], "singlequdit");

    let (ok, out, err) = shotline(
        &home,
        &["backend", "singlequdit", "--server", &addr, "--json"],
        None,
    );
    assert!(ok, "{err}");
    let backend: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(backend["config"]["max_experiments"], 1000);
    let devices = backend["status"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 5, "{devices:?}");
    assert_eq!(devices[4]["name"], "camera");
    assert_eq!(devices[4]["state"], "manual");

    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rabi.json");
    let (ok, out, err) = shotline(
        &home,
        &[
            "submit",
            job,
            "--backend",
            "singlequdit",
            "--wait",
            "--server",
            &addr,
        ],
        None,
    );
    assert!(ok, "submit: {err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["status"], "DONE");
    assert_eq!(result["success"], true);
    let job_id = result["job_id"].as_str().unwrap().to_string();
    let memory = result["results"][0]["data"]["memory"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(memory.len(), 100);
    assert!(memory
        .iter()
        .all(|m| m.as_str().unwrap().parse::<u32>().unwrap() <= 50));

    // An invalid job: a clear error naming the field, exit code non-zero.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"experiment_0": {"instructions": [["rlx", [0], [9.0]]], "num_wires": 1, "shots": 5}}"#,
    )
    .unwrap();
    let (ok, _, err) = submit_file(&home, &bad, &addr);
    assert!(!ok);
    assert!(
        err.contains("experiment_0.instructions[0].params[0]"),
        "{err}"
    );

    server.stop();

    // Restart on the same data dir: the job and its result are still there, the pinned cert still matches.
    let server = Server::start(&engine, &data);
    let addr = server.addr.clone();
    let (ok, _, err) = shotline(
        &home,
        &[
            "login",
            "--server",
            &addr,
            "--user",
            "alice",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    );
    assert!(ok, "login after restart: {err}");
    let (ok, out, err) = shotline(
        &home,
        &["status", &job_id, "--server", &addr, "--json"],
        None,
    );
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["status"], "DONE");
    let (ok, out, err) = shotline(&home, &["result", &job_id, "--server", &addr], None);
    assert!(ok, "{err}");
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        again["results"][0]["data"]["memory"].as_array().unwrap(),
        &memory
    );

    // A server presenting a certificate other than the pinned one is refused, with the way out.
    let pins = home.join("known_servers.json");
    let mut known: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pins).unwrap()).unwrap();
    known[&addr] = serde_json::Value::String(format!("sha256:{}", "0".repeat(64)));
    std::fs::write(&pins, serde_json::to_vec(&known).unwrap()).unwrap();
    let (ok, _, err) = shotline(&home, &["backends", "--server", &addr], None);
    assert!(!ok, "a changed certificate must be refused");
    assert!(
        err.contains("--repin") && err.contains("sha256:0000"),
        "{err}"
    );
    let (ok, _, err) = shotline(
        &home,
        &[
            "login",
            "--server",
            &addr,
            "--user",
            "alice",
            "--password-stdin",
            "--repin",
        ],
        Some("correct horse\n"),
    );
    assert!(ok, "repin: {err}");
    let (ok, _, err) = shotline(&home, &["backends", "--server", &addr], None);
    assert!(ok, "after repin: {err}");
    server.stop();
}

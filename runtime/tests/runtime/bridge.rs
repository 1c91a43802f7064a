//! The RF device on a timing card behind the firmware bridge: the firmware simulator (`shotline-cardsim`)
//! over TCP and over a pseudo-terminal, the whole service on top. Results must equal the all-simulated run
//! for the same seed; every bridge fault ends in a clear device fault, devices safe, never a hang; a host
//! killed mid-job leaves the card to its watchdog.
//!
//! These tests are about devices, physics and the protocol, not the store: they run on the default engine
//! (SQLite). The store's behaviour through the runtime runs on both engines (embedding, e2e, crash,
//! faults, supervision, limits, remote).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use shotline::config::{BridgeSection, BridgeTransport, Config, DeviceDriver, DeviceFaultAction};
use shotline::protocol::JobStatus;
use shotline::SubmitOptions;
use shotline_cardsim::{CardSim, CardSimConfig, CardState, Listen, Misbehaviour};

use crate::common::*;

/// A job that uses every device, with enough shots to cross several frames of timestamps.
fn qudit_job(shots: u32) -> serde_json::Value {
    job1(
        json!([
            ["load", [0], [6]],
            ["rlx", [0], [0.7]],
            ["rlz", [0], [0.4]],
            ["rlx", [0], [1.1]],
            ["measure", [0], []]
        ]),
        shots,
        Some(11),
    )
}

fn card(listen: Listen, misbehaviour: Misbehaviour) -> CardSim {
    let config = CardSimConfig {
        misbehaviour,
        // A host session thread starved for over half a second on a loaded 2-core test machine must not trip
        // the card's watchdog in the tests of results; the watchdog itself is tested in hal and cardsim.
        watchdog_ms: 3_000,
        ..CardSimConfig::default()
    };
    CardSim::spawn(config, listen).expect("card simulator starts")
}

fn tcp_card(misbehaviour: Misbehaviour) -> CardSim {
    card(Listen::Tcp("127.0.0.1:0".parse().unwrap()), misbehaviour)
}

/// `sim.yaml` with the RF drive on the card at `endpoint`.
fn bridged(card: &CardSim, transport: BridgeTransport) -> Config {
    let mut c = sim_config();
    let rf = &mut c.backends[0].devices[1];
    assert_eq!(rf.name, "rf");
    rf.driver = DeviceDriver::Bridge;
    let mut b = BridgeSection {
        transport,
        reply_timeout_ms: 2_000,
        connect_timeout_ms: 5_000,
        // Tolerate a card thread starved for 2.5 s on a loaded 2-core test machine (the default gives up after
        // 0.5 s of silence, which parallel tests spinning shot clocks can cause); what the link does at its
        // limit is tested in hal's bridge tests.
        max_retries: 50,
        ..BridgeSection::default()
    };
    match transport {
        BridgeTransport::Tcp => b.address = card.endpoint(),
        BridgeTransport::Serial => b.path = card.endpoint(),
    }
    rf.bridge = Some(b);
    c.validate().expect("bridged config is valid");
    c
}

async fn all_simulated_result(job: &serde_json::Value) -> shotline::protocol::JobResult {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let r = run_ok(&rt, job).await;
    rt.shutdown().await.unwrap();
    r
}

async fn all_simulated(job: &serde_json::Value) -> Vec<u32> {
    memory(&all_simulated_result(job).await, 0)
}

async fn same_results_through(card: CardSim, transport: BridgeTransport) {
    let job = qudit_job(150);
    let sim = all_simulated_result(&job).await;
    let expected = memory(&sim, 0);
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), bridged(&card, transport)).await;
    let r = run_ok(&rt, &job).await;
    assert_eq!(
        memory(&r, 0),
        expected,
        "bridged results differ ({transport:?})"
    );
    // The card's timestamps entered the lateness report: as many events as in the all-simulated run.
    let (t_sim, t_card) = (
        sim.results[0].timing.clone().expect("timing"),
        r.results[0].timing.clone().expect("timing"),
    );
    assert_eq!((t_card.shots, t_card.events), (t_sim.shots, t_sim.events));
    // Operators see the card: connected, its id and clock, next to the simulated devices.
    let (_, status) = rt.service().backend("singlequdit").await.unwrap();
    let names: Vec<&str> = status.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["mot", "rf", "detuning", "interaction", "camera"]);
    let rf = &status.devices[1];
    assert_eq!(
        (rf.driver.as_str(), rf.state.as_str()),
        ("bridge", "manual"),
        "{rf:?}"
    );
    let link = rf.card.as_ref().expect("rf has a card");
    assert!(link.connected, "{link:?}");
    assert_eq!(
        (link.card_id, link.clock_hz),
        (Some(CardSimConfig::default().card_id), Some(1_000_000_000))
    );
    assert!(status.devices[0].card.is_none());
    // A second job re-uses the uploaded program and still matches.
    let again = run_ok(&rt, &job).await;
    assert_eq!(memory(&again, 0), expected);
    assert!(card.stats().shots_done >= 300, "{:?}", card.stats());
    rt.shutdown().await.unwrap();
    // The service leaves the card safe when it stops.
    assert!(card.outputs_safe(), "card outputs not safe after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf_on_a_card_over_tcp_gives_the_all_simulated_results() {
    same_results_through(tcp_card(Misbehaviour::default()), BridgeTransport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf_on_a_card_over_a_serial_line_gives_the_all_simulated_results() {
    let card = card(Listen::Pty, Misbehaviour::default());
    same_results_through(card, BridgeTransport::Serial).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_corrupted_frames_are_retransmitted_and_change_nothing() {
    let card = tcp_card(Misbehaviour {
        drop_every: 9,
        corrupt_every: 13,
        ..Misbehaviour::default()
    });
    same_results_through(card, BridgeTransport::Tcp).await;
}

/// Submits a long job, lets it run on the card, applies `fault`, and returns the job's end.
async fn fault_mid_job(
    card: &CardSim,
    config: Config,
    fault: Misbehaviour,
    dir: &Path,
) -> (shotline::protocol::StatusRecord, shotline::Runtime) {
    let rt = start_in(&TestEngine::sqlite(), dir, config).await;
    let s = rt
        .submit("singlequdit", &qudit_job(100_000), SubmitOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while card.stats().shots_done < 5 {
        assert!(Instant::now() < deadline, "the job never ran on the card");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    card.set_misbehaviour(fault);
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    (end, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_that_stops_answering_fails_the_job_naming_the_device() {
    let card = tcp_card(Misbehaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let (end, rt) = fault_mid_job(
        &card,
        bridged(&card, BridgeTransport::Tcp),
        Misbehaviour {
            silent_after_frames: Some(0),
            ..Misbehaviour::default()
        },
        dir.path(),
    )
    .await;
    assert_eq!(end.status, JobStatus::Error, "{end:?}");
    assert!(
        end.error_message.contains("device rf"),
        "{}",
        end.error_message
    );
    crate::faults::devices_are_safe(&rt).await;
    // The card answers again: the next job runs.
    card.set_misbehaviour(Misbehaviour::default());
    run_ok(&rt, &qudit_job(5)).await;
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_reset_mid_shot_is_detected_and_the_retry_policy_reruns_the_job() {
    let card = tcp_card(Misbehaviour::default());
    let mut config = bridged(&card, BridgeTransport::Tcp);
    config.backends[0].device_faults.action = DeviceFaultAction::Retry;
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), config).await;
    let job = qudit_job(400);
    let expected = all_simulated(&job).await;
    card.set_misbehaviour(Misbehaviour {
        reset_at_shot: Some(card.stats().shots_done as u32 + 120),
        ..Misbehaviour::default()
    });
    let r = run_ok(&rt, &job).await;
    assert_eq!(
        memory(&r, 0),
        expected,
        "the re-run must give the same results"
    );
    assert!(card.stats().resets >= 1, "{:?}", card.stats());
    rt.shutdown().await.unwrap();
}

#[test]
fn a_host_killed_mid_job_leaves_the_card_to_its_watchdog() {
    let card = tcp_card(Misbehaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim.yaml"))
        .unwrap();
    let rf_line = "      - { name: rf, driver: sim_dds, clock_period_ns: 1 }\n";
    assert!(yaml.contains(rf_line));
    let yaml = yaml.replace(
        rf_line,
        &format!(
            "      - {{ name: rf, driver: bridge, clock_period_ns: 1, bridge: {{ address: \"{}\" }} }}\n",
            card.endpoint()
        ),
    );
    let config = tmp.path().join("bridge.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut server = Server::start_with(&TestEngine::sqlite(), Path::new(&config), &data);
    let addr = server.addr.clone();
    add_user_and_login(&home, &data, &addr, "alice", "correct horse");
    let job = tmp.path().join("long.json");
    std::fs::write(&job, qudit_job(1_000_000).to_string()).unwrap();
    let (ok, _, err) = submit_file(&home, &job, &addr);
    assert!(ok, "submit: {err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while card.stats().shots_done < 3 {
        assert!(Instant::now() < deadline, "the job never ran on the card");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(card.state(), CardState::Safe);
    // SIGKILL: no cleanup runs on the host; only the card's watchdog can make it safe.
    unsafe_kill(server.child.id(), 9);
    let _ = server.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while card.state() != CardState::Safe {
        assert!(
            Instant::now() < deadline,
            "the card never went safe: {:?}",
            card.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(card.outputs_safe());
    assert_eq!(card.stats().watchdog_expiries, 1, "{:?}", card.stats());
}

/// The `shotline-cardsim` binary, killed on drop.
struct CardProcess(std::process::Child);

impl Drop for CardProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_binary_with_a_drifting_clock_is_fitted_and_changes_no_result() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shotline-cardsim"))
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--drift-ppm",
            "2000",
            "--card-id",
            "42",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shotline-cardsim");
    let stdout = child.stdout.take().unwrap();
    let _card = CardProcess(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let line: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    assert_eq!(line["event"], "listening", "{first}");
    let endpoint = line["endpoint"].as_str().unwrap().to_string();

    let mut config = sim_config();
    let rf = &mut config.backends[0].devices[1];
    rf.driver = DeviceDriver::Bridge;
    rf.bridge = Some(BridgeSection {
        address: endpoint,
        ..BridgeSection::default()
    });
    let job = qudit_job(100);
    let expected = all_simulated(&job).await;
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), config).await;
    assert_eq!(memory(&run_ok(&rt, &job).await, 0), expected);
    // A card clock 2000 ppm fast (2 ms per second): once the heartbeats span a second, the fit sees it. On a
    // loaded machine most round trips are slow and the fit keeps only the fast ones, so it may take longer
    // than the first window: look until the fit is within bounds or 20 s have passed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let card = loop {
        let (_, status) = rt.service().backend("singlequdit").await.unwrap();
        let card = status.devices[1].card.clone().expect("rf has a card");
        let fitted = (card.drift_ppm - 2000.0).abs() < 500.0;
        if card.clock_samples >= 60 && (fitted || Instant::now() >= deadline) {
            break card;
        }
        assert!(Instant::now() < deadline, "no clock samples: {card:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(card.card_id, Some(42));
    assert!(
        (card.drift_ppm - 2000.0).abs() < 500.0,
        "fitted drift {} ppm, the card runs 2000 ppm fast: {card:?}",
        card.drift_ppm
    );
    rt.shutdown().await.unwrap();
}

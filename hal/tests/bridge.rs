//! The host side of the firmware bridge against a small scripted card (built from the protocol core):
//! handshake, heartbeat clock, upload chunking and its barrier, firmware reset, link down and
//! reconnection, and a `BridgeDevice` playing shots.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shotline_firmware_bridge::message::Status;
use shotline_firmware_bridge::{Frame, FrameDecoder, Link, LinkConfig, Message, WireEvent};
use shotline_hal::bridge::{
    BridgeDevice, BridgeOptions, BridgeRole, Endpoint, Reply, Request, Session, SessionConfig,
    SessionError, ShotFault, ShotReport,
};
use shotline_hal::device::{Device, Readout, ShotContext};
use shotline_hal::time::monotonic_ns;
use shotline_hal::timeline::{Action, DeviceTimeline, Event};
use shotline_hal::DeviceState;

/// What the scripted card does; tests flip these while it runs.
#[derive(Default)]
struct Script {
    watchdog_ms: AtomicU32,
    /// Refuse the upload chunk at this offset (u32::MAX: none).
    refuse_offset: AtomicU32,
    /// Reboot now: reset the link and say Hello with sequence 0.
    reboot: AtomicBool,
    /// Stop answering anything (until the next connection).
    mute: AtomicBool,
    /// Ignore Start commands.
    ignore_start: AtomicBool,
    /// Send a shot's `Status` (Armed, 5 shots done) just before the answer to Arm, Abort and
    /// SafeState, as a card does when a shot ends right before the command is processed.
    stale_status: AtomicBool,
    chunks: Mutex<Vec<(u32, usize)>>,
    starts: Mutex<Vec<u64>>,
    connections: AtomicU32,
}

const CLOCK_HZ: u64 = 100_000_000;

fn card_ticks(epoch: u64) -> u64 {
    (monotonic_ns() - epoch) / 10
}

struct ScriptedCard {
    script: Arc<Script>,
    address: String,
}

impl ScriptedCard {
    fn spawn() -> ScriptedCard {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let script = Arc::new(Script::default());
        script.watchdog_ms.store(1000, Ordering::SeqCst);
        script.refuse_offset.store(u32::MAX, Ordering::SeqCst);
        let s = script.clone();
        std::thread::spawn(move || {
            let epoch = monotonic_ns() - 1_000_000_000;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                s.connections.fetch_add(1, Ordering::SeqCst);
                s.mute.store(false, Ordering::SeqCst);
                let s = s.clone();
                stream
                    .set_read_timeout(Some(Duration::from_millis(2)))
                    .unwrap();
                std::thread::spawn(move || serve(stream, &s, epoch));
            }
        });
        ScriptedCard { script, address }
    }

    /// The same card on a pseudo-terminal: returns the card and the slave path.
    fn spawn_pty() -> (ScriptedCard, String) {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: valid out-pointers; null termios/winsize are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: openpty wrote a NUL-terminated name.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: we own both descriptors; the slave stays open so the master never sees EIO, and
        // the master is made non-blocking before it is wrapped.
        let file = unsafe {
            let mut tio: libc::termios = std::mem::zeroed();
            libc::tcgetattr(slave, &mut tio);
            libc::cfmakeraw(&mut tio);
            libc::tcsetattr(slave, libc::TCSANOW, &tio);
            let flags = libc::fcntl(master, libc::F_GETFL);
            libc::fcntl(master, libc::F_SETFL, flags | libc::O_NONBLOCK);
            std::fs::File::from_raw_fd(master)
        };
        let script = Arc::new(Script::default());
        script.watchdog_ms.store(1000, Ordering::SeqCst);
        script.refuse_offset.store(u32::MAX, Ordering::SeqCst);
        let s = script.clone();
        std::thread::spawn(move || {
            let _slave = slave;
            serve(file, &s, monotonic_ns() - 1_000_000_000)
        });
        (
            ScriptedCard {
                script,
                address: path.clone(),
            },
            path,
        )
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Tcp {
            address: self.address.clone(),
        }
    }
}

fn hello(watchdog_ms: u32) -> Message {
    Message::Hello {
        protocol_version: 1,
        card_id: 4242,
        channels: 4,
        clock_hz: CLOCK_HZ,
        max_events: 10_000,
        buffer_events: 64,
        watchdog_ms,
    }
}

fn error(code: u16, text: &str) -> Message {
    let mut detail = heapless::String::new();
    let _ = detail.push_str(text);
    Message::Error { code, detail }
}

/// One connection of the scripted card (a TCP stream, or a pty master).
fn serve(mut stream: impl Read + Write, s: &Script, epoch: u64) {
    let mut link: Link<16> = Link::new(LinkConfig {
        retransmit_ms: 50,
        max_retries: 50,
    });
    let mut decoder = FrameDecoder::new();
    let mut outbox: VecDeque<Message> = VecDeque::new();
    let mut events: Vec<WireEvent> = Vec::new();
    let mut shots_done = 0u32;
    let mut buf = [0u8; 4096];
    loop {
        let now_ms = monotonic_ns() / 1_000_000;
        if s.reboot.swap(false, Ordering::SeqCst) {
            link.reset();
            events.clear();
            outbox.clear();
            outbox.push_back(hello(s.watchdog_ms.load(Ordering::SeqCst)));
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                std::thread::sleep(Duration::from_millis(1));
                0
            }
            // A pty master reads EIO while no slave is open.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                std::thread::sleep(Duration::from_millis(1));
                0
            }
            Err(_) => return,
        };
        let mut frames: Vec<Frame> = Vec::new();
        decoder.push_slice(&buf[..n], |r| {
            if let Ok(f) = r {
                frames.push(f);
            }
        });
        if s.mute.load(Ordering::SeqCst) {
            continue;
        }
        for f in frames {
            let Ok(Some(msg)) = link.on_frame(&f, now_ms) else {
                continue;
            };
            match msg {
                Message::Hello { .. } => {
                    outbox.push_back(hello(s.watchdog_ms.load(Ordering::SeqCst)))
                }
                Message::Heartbeat { .. } => outbox.push_back(Message::Heartbeat {
                    card_ticks: card_ticks(epoch),
                    state: 0,
                }),
                Message::UploadChunk {
                    offset, events: ev, ..
                } => {
                    s.chunks.lock().push((offset, ev.len()));
                    if offset == s.refuse_offset.load(Ordering::SeqCst) {
                        outbox.push_back(error(
                            17,
                            "upload chunk at event offset 44, expected offset 0",
                        ));
                        continue;
                    }
                    if offset == 0 {
                        events.clear();
                    }
                    events.extend(ev.iter().copied());
                }
                Message::Arm { .. } | Message::Abort | Message::SafeState
                    if s.stale_status.load(Ordering::SeqCst) =>
                {
                    outbox.push_back(Message::Status(Status {
                        state: 2,
                        shots_done: 5,
                        ..Status::default()
                    }));
                    outbox.push_back(match msg {
                        Message::Arm { .. } => Message::Status(Status {
                            state: 2,
                            ..Status::default()
                        }),
                        Message::Abort => Message::Status(Status {
                            state: 1,
                            ..Status::default()
                        }),
                        _ => Message::Status(Status {
                            state: 4,
                            ..Status::default()
                        }),
                    });
                }
                Message::Arm { .. } => {
                    shots_done = 0;
                    outbox.push_back(Message::Status(Status {
                        state: 2,
                        events_loaded: events.len() as u32,
                        ..Status::default()
                    }));
                }
                Message::Start { at_card_ticks, .. } => {
                    s.starts.lock().push(at_card_ticks);
                    if s.ignore_start.load(Ordering::SeqCst) {
                        continue;
                    }
                    let shot = shots_done;
                    for (i, chunk) in events.chunks(126).enumerate() {
                        let mut applied = heapless::Vec::new();
                        for e in chunk {
                            // The card is 3 ticks late on every event.
                            let _ = applied.push(at_card_ticks + e.t_ticks + 3);
                        }
                        outbox.push_back(Message::EventTimestamps {
                            shot,
                            first_event: (i * 126) as u32,
                            applied_ticks: applied,
                        });
                    }
                    for e in events.iter().filter(|e| e.kind == 2) {
                        let mut samples = heapless::Vec::new();
                        let _ = samples.push(100 + i32::from(e.channel));
                        outbox.push_back(Message::AcquisitionChunk {
                            shot,
                            channel: e.channel,
                            offset: 0,
                            samples,
                        });
                    }
                    shots_done += 1;
                    outbox.push_back(Message::Status(Status {
                        state: 2,
                        shots_done,
                        ..Status::default()
                    }));
                }
                Message::Abort => outbox.push_back(Message::Status(Status {
                    state: 1,
                    ..Status::default()
                })),
                Message::SafeState => {
                    events.clear();
                    outbox.push_back(Message::Status(Status {
                        state: 4,
                        ..Status::default()
                    }))
                }
                _ => {}
            }
        }
        while let Some(m) = outbox.front() {
            if link.send(m, now_ms).is_err() {
                break;
            }
            outbox.pop_front();
        }
        let mut out = Vec::new();
        let _ = link.poll(now_ms, |b| out.extend_from_slice(b));
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn config(card: &ScriptedCard) -> SessionConfig {
    let mut c = SessionConfig::new(card.endpoint());
    c.reply_timeout_ms = 2000;
    c.heartbeat_ms = 20;
    c
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wire_events(n: usize) -> Vec<WireEvent> {
    (0..n)
        .map(|i| WireEvent {
            t_ticks: i as u64 * 10,
            channel: 0,
            kind: 0,
            duration_ticks: 0,
            value: (i % 2) as i32,
        })
        .collect()
}

#[test]
fn handshake_takes_the_card_hello_and_fits_the_clock() {
    let card = ScriptedCard::spawn();
    let session = Session::start(config(&card)).unwrap();
    let info = session.wait_connected(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (info.card_id, info.channels, info.clock_hz),
        (4242, 4, CLOCK_HZ)
    );
    wait_for("clock samples", || session.status().clock_samples >= 3);
    let st = session.status();
    assert!(st.connected && st.connects == 1 && st.epoch == 1);
    // The scripted card's clock is exact: any fitted drift is noise from the round trips.
    assert!(st.drift_ppm.abs() < 5_000.0, "drift {}", st.drift_ppm);
    assert!(st.min_rtt_ns.is_some());
}

#[test]
fn upload_is_chunked_by_44_and_ends_with_a_barrier() {
    let card = ScriptedCard::spawn();
    let session = Session::start(config(&card)).unwrap();
    session.wait_connected(Duration::from_secs(5)).unwrap();
    let r = session.request(
        Request::Upload {
            timeline_id: 7,
            events: wire_events(100),
        },
        Duration::from_secs(5),
    );
    assert_eq!(r, Ok(Reply::Done));
    assert_eq!(
        *card.script.chunks.lock(),
        vec![(0, 44), (44, 44), (88, 12)]
    );
    let r = session.request(
        Request::Arm {
            timeline_id: 7,
            events_total: 100,
        },
        Duration::from_secs(5),
    );
    assert!(matches!(r, Ok(Reply::Status(s)) if s.state == 2 && s.events_loaded == 100));
}

#[test]
fn a_refused_chunk_fails_the_upload_with_the_card_error() {
    let card = ScriptedCard::spawn();
    card.script.refuse_offset.store(44, Ordering::SeqCst);
    let session = Session::start(config(&card)).unwrap();
    session.wait_connected(Duration::from_secs(5)).unwrap();
    let err = session
        .request(
            Request::Upload {
                timeline_id: 1,
                events: wire_events(60),
            },
            Duration::from_secs(5),
        )
        .unwrap_err();
    assert!(
        matches!(err, SessionError::Card { code: 17, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("card error 17 UploadOutOfOrder"), "{text}");
    // The session goes on.
    let r = session.request(Request::Abort, Duration::from_secs(5));
    assert!(matches!(r, Ok(Reply::Status(_))), "{r:?}");
}

#[test]
fn a_card_hello_mid_session_is_a_firmware_reset_that_fails_the_shot() {
    let card = ScriptedCard::spawn();
    card.script.ignore_start.store(true, Ordering::SeqCst);
    let mut session = Session::start(config(&card)).unwrap();
    session.wait_connected(Duration::from_secs(5)).unwrap();
    wait_for("heartbeats", || session.status().clock_samples >= 2);
    let epoch = session.status().epoch;
    session.trigger(5, monotonic_ns()).unwrap();
    wait_for("start", || !card.script.starts.lock().is_empty());
    card.script.reboot.store(true, Ordering::SeqCst);
    let mut fault = None;
    wait_for("fault", || {
        while let Some(r) = session.next_report() {
            if let ShotReport::Fault { shot, fault: f } = r {
                fault = Some((shot, f));
            }
        }
        fault.is_some()
    });
    assert_eq!(fault, Some((Some(5), ShotFault::FirmwareReset)));
    wait_for("session again", || session.status().connected);
    let st = session.status();
    assert_eq!(st.firmware_resets, 1);
    assert!(st.epoch > epoch);
    // The card (numbering from 0 again) still answers.
    let r = session.request(Request::Abort, Duration::from_secs(5));
    assert!(matches!(r, Ok(Reply::Status(_))), "{r:?}");
}

#[test]
fn a_silent_card_takes_the_link_down_and_the_session_reconnects() {
    let card = ScriptedCard::spawn();
    let mut cfg = config(&card);
    cfg.retransmit_ms = 10;
    cfg.max_retries = 3;
    let session = Session::start(cfg).unwrap();
    session.wait_connected(Duration::from_secs(5)).unwrap();
    card.script.mute.store(true, Ordering::SeqCst);
    wait_for("reconnection", || {
        card.script.connections.load(Ordering::SeqCst) >= 2 && session.status().connected
    });
    let st = session.status();
    assert_eq!(st.connects, 2);
    let r = session.request(Request::Abort, Duration::from_secs(5));
    assert!(matches!(r, Ok(Reply::Status(_))), "{r:?}");
}

#[test]
fn a_card_whose_watchdog_is_too_short_for_the_heartbeat_is_refused() {
    let card = ScriptedCard::spawn();
    card.script.watchdog_ms.store(45, Ordering::SeqCst);
    let session = Session::start(config(&card)).unwrap();
    let err = session
        .wait_connected(Duration::from_millis(500))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("watchdog of 45 ms") && err.contains("heartbeat_ms is 20"),
        "{err}"
    );
}

#[test]
fn requests_to_an_absent_card_fail_within_their_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let session = Session::start(SessionConfig::new(Endpoint::Tcp {
        address: address.clone(),
    }))
    .unwrap();
    let t = Instant::now();
    let err = session
        .request(Request::SafeState, Duration::from_millis(300))
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains(&address), "{err}");
    let err = session
        .wait_connected(Duration::from_millis(200))
        .unwrap_err();
    assert!(err.to_string().contains("connect"), "{err}");
}

fn ttl_timeline() -> DeviceTimeline {
    DeviceTimeline {
        device: "card".into(),
        events: vec![
            Event {
                t_ns: 0,
                channel: 0,
                action: Action::Digital { high: true },
            },
            Event {
                t_ns: 1_000,
                channel: 1,
                action: Action::Pulse {
                    duration_ns: 500,
                    setpoint: 2.5,
                },
            },
            Event {
                t_ns: 2_000,
                channel: 2,
                action: Action::Acquire { exposure_ns: 100 },
            },
        ],
    }
}

fn device(card: &ScriptedCard) -> BridgeDevice {
    let mut o = BridgeOptions::new(card.endpoint());
    o.heartbeat_ms = 20;
    o.reply_timeout_ms = 2000;
    BridgeDevice::new("card", o, 3, None).unwrap()
}

fn ctx(shot: u64) -> ShotContext {
    ShotContext {
        seed: 1,
        experiment: 0,
        shot,
    }
}

fn run_shot(dev: &mut BridgeDevice, shot: u64) -> (Result<(), shotline_hal::DeviceError>, Readout) {
    let tl = ttl_timeline();
    let c = ctx(shot);
    dev.start_shot(&c).unwrap();
    for (i, e) in tl.events.iter().enumerate() {
        dev.apply(i, e, &c).unwrap();
    }
    dev.trigger(&c, monotonic_ns() + 1_000_000).unwrap();
    let mut readout = Readout::new();
    let r = dev.end_shot(&c, &mut readout);
    (r, readout)
}

#[test]
fn bridge_device_plays_shots_and_reports_applied_times_and_acquisitions() {
    let card = ScriptedCard::spawn();
    let mut dev = device(&card);
    assert!(dev.hardware_timed());
    assert_eq!(dev.program(&ttl_timeline()), Ok(true));
    assert_eq!(
        dev.program(&ttl_timeline()),
        Ok(false),
        "identical re-program is skipped"
    );
    assert_eq!(dev.uploads(), 1);
    dev.arm().unwrap();
    for shot in 0..3 {
        let (r, readout) = run_shot(&mut dev, shot);
        r.unwrap();
        assert_eq!(readout.len(), 1);
        assert_eq!(
            (readout[0].device, readout[0].channel, readout[0].value),
            (3, 2, 102)
        );
        let mut times = Vec::new();
        dev.applied_times(&ctx(shot), &mut |e, t| times.push((e, t)))
            .unwrap();
        assert_eq!(times.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // Applied times follow the schedule on the host clock (1 µs apart; the fitted rate stays
        // near nominal whatever the round-trip noise).
        let d1 = times[1].1 as i64 - times[0].1 as i64;
        let d2 = times[2].1 as i64 - times[1].1 as i64;
        assert!(
            (500..2_000).contains(&d1) && (500..2_000).contains(&d2),
            "{times:?}"
        );
    }
    assert_eq!(card.script.starts.lock().len(), 3);
    assert_eq!(dev.state(), DeviceState::Armed);
    dev.disarm().unwrap();
    // The safe state discards the card's timeline: the next program uploads again.
    dev.safe_state().unwrap();
    assert_eq!(dev.program(&ttl_timeline()), Ok(true));
    assert_eq!(dev.uploads(), 2);
}

#[test]
fn bridge_device_refuses_programs_it_cannot_play() {
    let card = ScriptedCard::spawn();
    let mut o = BridgeOptions::new(card.endpoint());
    o.heartbeat_ms = 20;
    o.clock_period_ns = 15;
    let mut dev = BridgeDevice::new("card", o, 0, None).unwrap();
    let err = dev.program(&ttl_timeline()).unwrap_err().to_string();
    assert!(
        err.contains("clock_period_ns 15") && err.contains("100000000 Hz"),
        "{err}"
    );
    assert_eq!(dev.state(), DeviceState::Manual);

    let mut o = BridgeOptions::new(card.endpoint());
    o.heartbeat_ms = 20;
    o.role = BridgeRole::Dds;
    let mut dev = BridgeDevice::new("rf", o, 0, None).unwrap();
    let err = dev.program(&ttl_timeline()).unwrap_err().to_string();
    assert!(err.contains("event 0") && err.contains("Digital"), "{err}");
    let mut tl = ttl_timeline();
    tl.events.remove(0);
    let err = dev.program(&tl).unwrap_err().to_string();
    assert!(
        err.contains("setpoint 2.5") && err.contains("[0, 1]"),
        "{err}"
    );
}

#[test]
fn a_card_that_never_reports_the_shot_faults_within_the_reply_timeout() {
    let card = ScriptedCard::spawn();
    card.script.ignore_start.store(true, Ordering::SeqCst);
    let mut o = BridgeOptions::new(card.endpoint());
    o.heartbeat_ms = 20;
    o.reply_timeout_ms = 300;
    let mut dev = BridgeDevice::new("card", o, 0, None).unwrap();
    dev.program(&ttl_timeline()).unwrap();
    dev.arm().unwrap();
    let (r, _) = run_shot(&mut dev, 0);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "card {} did not report shot 0 within 300 ms",
            card.address
        )),
        "{err}"
    );
    assert_eq!(dev.state(), DeviceState::Fault);
    dev.reset().unwrap();
    assert_eq!(dev.state(), DeviceState::Manual);
}

#[test]
fn a_firmware_reset_during_a_shot_is_a_device_fault_naming_the_reset() {
    let card = ScriptedCard::spawn();
    card.script.ignore_start.store(true, Ordering::SeqCst);
    let mut dev = device(&card);
    dev.program(&ttl_timeline()).unwrap();
    dev.arm().unwrap();
    let c = ctx(4);
    dev.start_shot(&c).unwrap();
    dev.trigger(&c, monotonic_ns()).unwrap();
    wait_for("start", || !card.script.starts.lock().is_empty());
    card.script.reboot.store(true, Ordering::SeqCst);
    let err = dev
        .end_shot(&c, &mut Readout::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("card reset (firmware restarted) during shot 4"),
        "{err}"
    );
    assert_eq!(dev.state(), DeviceState::Fault);
    // After a reset, the program is uploaded again (the card lost it).
    dev.reset().unwrap();
    card.script.ignore_start.store(false, Ordering::SeqCst);
    assert_eq!(dev.program(&ttl_timeline()), Ok(true));
    dev.arm().unwrap();
    let (r, _) = run_shot(&mut dev, 0);
    r.unwrap();
}

#[test]
fn bridge_device_over_a_serial_line_plays_shots() {
    let (card, path) = ScriptedCard::spawn_pty();
    let mut o = BridgeOptions::new(Endpoint::Serial {
        path: path.clone(),
        baud: 115200,
    });
    o.heartbeat_ms = 20;
    o.reply_timeout_ms = 2000;
    let mut dev = BridgeDevice::new("card", o, 1, None).unwrap();
    assert_eq!(dev.program(&ttl_timeline()), Ok(true));
    dev.arm().unwrap();
    for shot in 0..2 {
        let (r, readout) = run_shot(&mut dev, shot);
        r.unwrap();
        assert_eq!(readout[0].value, 102);
        let mut n = 0;
        dev.applied_times(&ctx(shot), &mut |_, _| n += 1).unwrap();
        assert_eq!(n, 3);
    }
    assert_eq!(dev.session().status().endpoint, path);
    assert_eq!(card.script.starts.lock().len(), 2);
}

#[test]
fn a_shot_status_queued_before_a_command_is_not_taken_for_its_answer() {
    let card = ScriptedCard::spawn();
    card.script.stale_status.store(true, Ordering::SeqCst);
    let session = Session::start(config(&card)).unwrap();
    session.wait_connected(Duration::from_secs(5)).unwrap();
    let t = Duration::from_secs(2);
    let Ok(Reply::Status(s)) = session.request(Request::Abort, t) else {
        panic!("abort failed");
    };
    assert_eq!(
        s.state, 1,
        "the abort's own answer (Loaded), not the shot's: {s:?}"
    );
    let arm = Request::Arm {
        timeline_id: 1,
        events_total: 0,
    };
    let Ok(Reply::Status(s)) = session.request(arm, t) else {
        panic!("arm failed");
    };
    assert_eq!((s.state, s.shots_done), (2, 0), "{s:?}");
    let Ok(Reply::Status(s)) = session.request(Request::SafeState, t) else {
        panic!("safe state failed");
    };
    assert_eq!(s.state, 4, "{s:?}");
}

/// 5000 digital events on channel 0: a shot report larger than the session's report ring.
fn big_timeline() -> DeviceTimeline {
    DeviceTimeline {
        device: "card".into(),
        events: (0..5000u64)
            .map(|i| Event {
                t_ns: i * 10,
                channel: 0,
                action: Action::Digital { high: i % 2 == 0 },
            })
            .collect(),
    }
}

#[test]
fn a_late_report_of_an_abandoned_shot_is_not_taken_for_the_next_run_with_the_same_shot_number() {
    let card = ScriptedCard::spawn();
    let mut o = BridgeOptions::new(card.endpoint());
    o.heartbeat_ms = 20;
    o.reply_timeout_ms = 500;
    let mut dev = BridgeDevice::new("card", o, 0, None).unwrap();
    let tl = big_timeline();
    dev.program(&tl).unwrap();
    dev.arm().unwrap();
    // Run 1, shot 0 is triggered and the card reports it, but the run ends before its end_shot
    // (another device failed): the report stays queued.
    dev.start_shot(&ctx(0)).unwrap();
    dev.trigger(&ctx(0), monotonic_ns()).unwrap();
    // The abort is answered after the card's whole report (the card answers in order).
    dev.disarm().unwrap();
    assert_eq!(dev.program(&tl), Ok(false));
    dev.arm().unwrap();
    // Run 2, shot 0 again; this time the card never plays it.
    card.script.ignore_start.store(true, Ordering::SeqCst);
    dev.start_shot(&ctx(0)).unwrap();
    dev.trigger(&ctx(0), monotonic_ns()).unwrap();
    let err = dev.end_shot(&ctx(0), &mut Readout::new()).unwrap_err();
    assert!(
        err.to_string().contains("did not report shot 0"),
        "the first run's report was taken for this shot: {err}"
    );
}

/// A TCP listener whose accept queue is full: a further connect waits until its own timeout.
fn full_listener() -> (std::os::fd::OwnedFd, String, Vec<std::net::TcpStream>) {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a descriptor we own; the address struct is fully initialised.
    let (fd, port) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut len = len;
        libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len);
        (
            std::os::fd::OwnedFd::from_raw_fd(fd),
            u16::from_be(addr.sin_port),
        )
    };
    let address = format!("127.0.0.1:{port}");
    let sock: std::net::SocketAddr = address.parse().unwrap();
    let held = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).ok()
        })
        .collect();
    (fd, address, held)
}

#[test]
fn dropping_a_session_stuck_connecting_does_not_wait_for_the_connect_timeout() {
    let (_listener, address, _held) = full_listener();
    let sock: std::net::SocketAddr = address.parse().unwrap();
    if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_ok() {
        eprintln!("this system accepts connections beyond a full queue; nothing to test");
        return;
    }
    let mut c = SessionConfig::new(Endpoint::Tcp { address });
    c.connect_timeout_ms = 60_000;
    c.reply_timeout_ms = 200;
    let session = Session::start(c).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(session);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "drop waited {:?} for a connect bounded by 60 s",
        t.elapsed()
    );
}

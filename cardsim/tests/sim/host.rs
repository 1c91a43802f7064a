//! A minimal host: `Link<8>` + `FrameDecoder` over a non-blocking byte stream.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use shotline_cardsim::{CardSim, CardSimConfig, Listen};
use shotline_firmware_bridge::message::{msg_type, Status};
use shotline_firmware_bridge::{FrameDecoder, Link, LinkConfig, Message, WireEvent};

pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

pub struct Host {
    s: Box<dyn Stream>,
    link: Link<8>,
    dec: FrameDecoder,
    start: Instant,
    last_hb: Instant,
    pub inbox: VecDeque<Message>,
    /// The card started a new session (it rebooted and said `Hello` with sequence 0).
    pub card_reset_seen: bool,
    /// Send a heartbeat every 100 ms while waiting.
    pub keepalive: bool,
}

pub fn sim(listen: Listen, tweak: impl FnOnce(&mut CardSimConfig)) -> CardSim {
    let mut cfg = CardSimConfig {
        card_id: 77,
        max_events: 1000,
        watchdog_ms: 1000,
        ..CardSimConfig::default()
    };
    tweak(&mut cfg);
    CardSim::spawn(cfg, listen).unwrap()
}

pub fn tcp(sim: &CardSim) -> Host {
    let s = TcpStream::connect(sim.endpoint()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    Host::new(Box::new(s))
}

pub fn pty(sim: &CardSim) -> Host {
    let path = sim.endpoint();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    let f: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .unwrap();
    Host::new(Box::new(f))
}

pub fn hello() -> Message {
    Message::host_hello()
}

pub fn heartbeat() -> Message {
    Message::Heartbeat {
        card_ticks: 0,
        state: 0,
    }
}

pub fn ev(t_ticks: u64, channel: u16, kind: u8, duration_ticks: u64, value: i32) -> WireEvent {
    WireEvent {
        t_ticks,
        channel,
        kind,
        duration_ticks,
        value,
    }
}

pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

impl Host {
    fn new(s: Box<dyn Stream>) -> Self {
        let mut h = Self {
            s,
            link: Link::new(LinkConfig::default()),
            dec: FrameDecoder::new(),
            start: Instant::now(),
            last_hb: Instant::now(),
            inbox: VecDeque::new(),
            card_reset_seen: false,
            keepalive: true,
        };
        // Flush receiver garbage, as the doc recommends on connecting.
        h.write(&[0]);
        h
    }

    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn write(&mut self, mut bytes: &[u8]) {
        let end = deadline(2);
        while !bytes.is_empty() {
            match self.s.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < end, "card does not read");
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    pub fn send(&mut self, msg: Message) {
        let ms = self.ms();
        self.link.send(&msg, ms).unwrap();
        self.pump();
    }

    fn pump(&mut self) {
        let ms = self.ms();
        let mut out = Vec::new();
        self.link.poll(ms, |b| out.extend_from_slice(b)).unwrap();
        self.write(&out);
    }

    /// Reads what is there, delivers messages to the inbox, sends acks / retransmissions /
    /// keepalive heartbeats.
    pub fn turn(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let ms = self.ms();
                    for &b in &buf[..n] {
                        let Some(Ok(f)) = self.dec.push(b) else {
                            continue;
                        };
                        if self.link.starts_new_session(&f) {
                            self.link.reset();
                            self.card_reset_seen = true;
                        }
                        if let Ok(Some(m)) = self.link.on_frame(&f, ms) {
                            self.inbox.push_back(m);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        if self.keepalive && self.last_hb.elapsed() >= Duration::from_millis(100) {
            self.last_hb = Instant::now();
            let ms = self.ms();
            let _ = self.link.send(&heartbeat(), ms);
        }
        self.pump();
        std::thread::sleep(Duration::from_micros(500));
    }

    /// Waits (generous deadline) for a message matching `pred`; returns it and everything received
    /// before it.
    pub fn until(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Vec<Message> {
        let end = deadline(5);
        let mut seen = Vec::new();
        loop {
            while let Some(m) = self.inbox.pop_front() {
                let done = pred(&m);
                seen.push(m);
                if done {
                    return seen;
                }
            }
            assert!(
                Instant::now() < end,
                "no {what} from the card; got {seen:?}"
            );
            self.turn();
        }
    }

    pub fn request(&mut self, msg: Message, reply: u8) -> Vec<Message> {
        self.send(msg);
        self.until("reply", |m| m.msg_type() == reply)
    }

    /// The card clock now (from a heartbeat answer).
    pub fn card_ticks(&mut self) -> u64 {
        match self.request(heartbeat(), msg_type::HEARTBEAT).pop() {
            Some(Message::Heartbeat { card_ticks, .. }) => card_ticks,
            other => panic!("{other:?}"),
        }
    }

    /// Says hello, uploads `events` as timeline 5 (chunks of 44) and arms it.
    pub fn load(&mut self, events: &[WireEvent]) {
        let got = self.request(hello(), msg_type::HELLO);
        assert!(
            matches!(
                got.last(),
                Some(Message::Hello {
                    card_id: 77,
                    protocol_version: 1,
                    clock_hz: 1_000_000_000,
                    ..
                })
            ),
            "{got:?}"
        );
        for (i, part) in events.chunks(44).enumerate() {
            self.send(Message::UploadChunk {
                timeline_id: 5,
                offset: (i * 44) as u32,
                events: heapless::Vec::from_slice(part).unwrap(),
            });
        }
        let got = self.request(
            Message::Arm {
                timeline_id: 5,
                events_total: events.len() as u32,
            },
            msg_type::STATUS,
        );
        assert!(
            matches!(got.last(), Some(Message::Status(Status { state: 2, .. }))),
            "{got:?}"
        );
    }
}

/// What a played shot returned.
pub struct ShotResult {
    pub start: u64,
    pub applied: Vec<u64>,
    pub samples: Vec<(u16, u32, Vec<i32>)>,
    pub status: Status,
}

/// Starts one shot at "card now + 5 ms" and collects its report.
pub fn play_shot(host: &mut Host) -> ShotResult {
    let start = host.card_ticks() + 5_000_000;
    host.send(Message::Start {
        at_card_ticks: start,
        shots: 1,
    });
    let got = host.until("shot status", |m| matches!(m, Message::Status(_)));
    let mut applied = Vec::new();
    let mut samples = Vec::new();
    let mut status = None;
    for m in got {
        match m {
            Message::EventTimestamps {
                first_event,
                applied_ticks,
                ..
            } => {
                assert_eq!(first_event as usize, applied.len(), "timestamps in order");
                applied.extend(applied_ticks);
            }
            Message::AcquisitionChunk {
                channel,
                offset,
                samples: s,
                ..
            } => samples.push((channel, offset, s.to_vec())),
            Message::Status(s) => status = Some(s),
            Message::Error { code, detail } => panic!("card error {code}: {detail}"),
            _ => {}
        }
    }
    ShotResult {
        start,
        applied,
        samples,
        status: status.unwrap(),
    }
}

//! The card thread: waits for input or the card's next deadline, feeds the card, polls it and
//! writes its frames out, applying the configured misbehaviour on the way out.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use shotline_firmware_bridge::card::{Card, CardConfig, CardStats, SafeCause, StoredEvent};

use crate::clock::SimClock;
use crate::config::{CardSimConfig, CardSimStats, Misbehaviour, SimEvent};
use crate::port::{self, Port};

/// Longest sleep: the loop looks at misbehaviour changes and the stop flag at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// The last stretch before a deadline is spun rather than slept, so events are applied on time.
const SPIN: Duration = Duration::from_micros(20);
/// Outgoing bytes buffered when the host does not read; further frames are dropped (the link
/// retransmits them).
const OUT_LIMIT: usize = 256 * 1024;
/// Notable events kept for `CardSim::next_event`.
const EVENT_LIMIT: usize = 10_000;

/// State shared between the card thread and the `CardSim` handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) misbehaviour: Mutex<Misbehaviour>,
    /// Bumped by every `set_misbehaviour`; `applied` follows once the card loop has read it.
    pub(crate) generation: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) stats: Mutex<CardSimStats>,
    pub(crate) state: AtomicU8,
    pub(crate) outputs_safe: AtomicBool,
    pub(crate) stop: AtomicBool,
    events: Mutex<VecDeque<SimEvent>>,
    event_ready: Condvar,
}

impl Shared {
    pub(crate) fn new(misbehaviour: Misbehaviour) -> Self {
        Self {
            misbehaviour: Mutex::new(misbehaviour),
            generation: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            stats: Mutex::new(CardSimStats::default()),
            state: AtomicU8::new(0),
            outputs_safe: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            events: Mutex::new(VecDeque::new()),
            event_ready: Condvar::new(),
        }
    }

    fn event(&self, e: SimEvent) {
        let mut q = self.events.lock();
        if q.len() >= EVENT_LIMIT {
            q.pop_front();
        }
        q.push_back(e);
        self.event_ready.notify_all();
    }

    /// The next notable event, waiting up to `timeout`.
    pub(crate) fn next_event(&self, timeout: Duration) -> Option<SimEvent> {
        let deadline = Instant::now() + timeout;
        let mut q = self.events.lock();
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            if self.event_ready.wait_until(&mut q, deadline).timed_out() {
                return q.pop_front();
            }
        }
    }
}

struct Runner<'a, const W: usize> {
    card: Card<'a, W>,
    port: Port,
    shared: Arc<Shared>,
    clock: SimClock,
    out: VecDeque<u8>,
    delayed: VecDeque<(Instant, Vec<u8>)>,
    frames_produced: u64,
    frames_out: u64,
    connections: u64,
    reset_done_for: Option<u32>,
    prev: CardStats,
}

/// Runs a card with send window `W` until the stop flag is set.
pub(crate) fn run<const W: usize>(cfg: CardSimConfig, port: Port, shared: Arc<Shared>) {
    port::tight_timer_slack();
    let mut storage = vec![StoredEvent::default(); cfg.max_events as usize].into_boxed_slice();
    let card_cfg = CardConfig {
        card_id: cfg.card_id,
        channels: cfg.channels,
        clock_hz: cfg.clock_hz,
        max_events: cfg.max_events,
        buffer_events: cfg.buffer_events,
        watchdog_ms: cfg.watchdog_ms,
    };
    let mut card: Card<'_, W> = Card::new(card_cfg, &mut storage, cfg.link);
    // Booted long before anyone listens: the boot `Hello` reached nobody.
    card.reset_link();
    let prev = card.stats();
    let mut r = Runner {
        card,
        port,
        clock: SimClock::new(cfg.clock_hz, cfg.misbehaviour.drift_ppm),
        shared,
        out: VecDeque::new(),
        delayed: VecDeque::new(),
        frames_produced: 0,
        frames_out: 0,
        connections: 0,
        reset_done_for: None,
        prev,
    };
    r.publish();
    while !r.shared.stop.load(Ordering::Acquire) {
        r.step();
    }
}

impl<const W: usize> Runner<'_, W> {
    fn step(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mb = self.shared.misbehaviour.lock().clone();
        self.shared.applied.store(generation, Ordering::Release);
        self.clock.set_drift(mb.drift_ppm);
        let silent = mb.silent_after_frames.is_some_and(|n| self.frames_out >= n);
        self.accept();
        if !silent {
            self.read();
        }
        let now = self.clock.now();
        if let (Some(k), Some(shot)) = (mb.reset_at_shot, self.card.shot_in_progress()) {
            let mid = shot.start_ticks + (shot.end_ticks.saturating_sub(shot.start_ticks)) / 2;
            if shot.serial == u64::from(k) && now.ticks >= mid && self.reset_done_for != Some(k) {
                self.reset_done_for = Some(k);
                self.card.reset();
                self.shared.event(SimEvent::Reset);
            }
        }
        let mut produced: Vec<Vec<u8>> = Vec::new();
        self.card.poll(now, |b| produced.push(b.to_vec()));
        for frame in produced {
            self.emit(frame, &mb, silent);
        }
        let instant = Instant::now();
        while self.delayed.front().is_some_and(|(due, _)| *due <= instant) {
            if let Some((_, frame)) = self.delayed.pop_front() {
                self.enqueue(&frame);
            }
        }
        if !silent {
            self.flush();
        }
        self.publish();
        self.wait(&mb, silent);
    }

    fn accept(&mut self) {
        if let Some((data, peer)) = self.port.accept() {
            if self.port.data.is_some() {
                self.shared.event(SimEvent::Disconnected);
            }
            self.port.data = Some(data);
            self.card.reset_link();
            self.out.clear();
            self.delayed.clear();
            self.connections += 1;
            self.shared.event(SimEvent::Connected { peer });
        }
    }

    fn disconnect(&mut self) {
        if self.port.listener.is_some() {
            self.port.data = None;
            self.out.clear();
            self.delayed.clear();
            self.shared.event(SimEvent::Disconnected);
        }
    }

    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(data) = self.port.data.as_mut() else {
                return;
            };
            match data.read(&mut buf) {
                Ok(0) => {
                    // TCP: the host closed. A pty master with our slave open never reports this.
                    self.disconnect();
                    return;
                }
                Ok(n) => {
                    let now = self.clock.now();
                    self.card.on_bytes(&buf[..n], now);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.disconnect();
                    return;
                }
            }
        }
    }

    /// Applies drop / corrupt / silence / delay to one outgoing frame.
    fn emit(&mut self, mut frame: Vec<u8>, mb: &Misbehaviour, silent: bool) {
        self.frames_produced += 1;
        let nth = |every: u32| every > 0 && self.frames_produced.is_multiple_of(u64::from(every));
        if silent || self.port.data.is_none() || nth(mb.drop_every) {
            return;
        }
        if nth(mb.corrupt_every) && frame.len() > 1 {
            let i = (frame.len() - 1) / 2;
            // Never 0x00: the frame stays one frame, with a wrong CRC.
            frame[i] = if frame[i] == 0x01 {
                0x03
            } else {
                frame[i] ^ 0x01
            };
        }
        if mb.delay_us > 0 {
            let due = Instant::now() + Duration::from_micros(mb.delay_us);
            self.delayed.push_back((due, frame));
        } else {
            self.enqueue(&frame);
        }
    }

    fn enqueue(&mut self, frame: &[u8]) {
        if self.out.len() + frame.len() <= OUT_LIMIT {
            self.out.extend(frame);
            self.frames_out += 1;
        }
    }

    fn flush(&mut self) {
        while !self.out.is_empty() {
            let Some(data) = self.port.data.as_mut() else {
                self.out.clear();
                return;
            };
            let (chunk, _) = self.out.as_slices();
            match data.write(chunk) {
                Ok(0) => return,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.disconnect();
                    return;
                }
            }
        }
    }

    fn publish(&mut self) {
        let s = self.card.stats();
        let p = self.prev;
        if s.hellos > p.hellos {
            self.shared.event(SimEvent::Hello);
        }
        if s.timelines_armed > p.timelines_armed {
            self.shared.event(SimEvent::Armed {
                events: self.card.events_loaded(),
            });
        }
        if s.shots_done > p.shots_done {
            self.shared.event(SimEvent::ShotDone {
                shots_done: s.shots_done,
            });
        }
        if s.safe_entries > p.safe_entries {
            let cause = self.card.safe_cause().unwrap_or(SafeCause::Host);
            self.shared.event(SimEvent::Safe { cause });
        }
        self.prev = s;
        *self.shared.stats.lock() = CardSimStats {
            frames_in: s.frames_in,
            frames_out: self.frames_out,
            shots_done: s.shots_done,
            safe_entries: s.safe_entries,
            watchdog_expiries: s.watchdog_expiries,
            resets: s.resets,
            connections: self.connections,
            events_loaded: self.card.events_loaded(),
            timelines_armed: s.timelines_armed,
        };
        self.shared
            .state
            .store(self.card.state().code(), Ordering::Release);
        self.shared
            .outputs_safe
            .store(self.card.outputs_safe(), Ordering::Release);
    }

    /// Sleeps until input, the card's next wakeup (spinning the last [`SPIN`]), a delayed frame or
    /// [`MAX_SLEEP`].
    fn wait(&mut self, mb: &Misbehaviour, silent: bool) {
        let start = Instant::now();
        let now = self.clock.now();
        let mut deadline = start + MAX_SLEEP;
        if let Some(t) = self.card.next_wakeup(now) {
            deadline = deadline.min(self.clock.instant_of(t));
        }
        if let (Some(k), Some(shot)) = (mb.reset_at_shot, self.card.shot_in_progress()) {
            if shot.serial == u64::from(k) {
                let mid = shot.start_ticks + (shot.end_ticks.saturating_sub(shot.start_ticks)) / 2;
                deadline = deadline.min(self.clock.instant_of(mid));
            }
        }
        if let Some((due, _)) = self.delayed.front() {
            deadline = deadline.min(*due);
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
        if let Some(l) = &self.port.listener {
            fds.push(pollfd(std::os::fd::AsRawFd::as_raw_fd(l), libc::POLLIN));
        }
        if let (Some(data), false) = (&self.port.data, silent) {
            let mut events = libc::POLLIN;
            if !self.out.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(pollfd(data.fd(), events));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining > SPIN {
            let ns = u64::try_from((remaining - SPIN).as_nanos()).unwrap_or(u64::MAX);
            port::wait(&mut fds, ns);
            return;
        }
        while Instant::now() < deadline {
            if port::wait(&mut fds, 0) {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

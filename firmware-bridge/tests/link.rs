//! The reliable link over simulated lossy channels: drops, duplicates, reordering, total loss.

use std::collections::VecDeque;

use shotline_firmware_bridge::link::LinkConfig;
use shotline_firmware_bridge::{BridgeError, FrameDecoder, Link, Message};

/// A deterministic misbehaving wire: frame number `i` (counted per direction) is dropped when
/// `i % drop_every == drop_every - 1`, duplicated when `i % dup_every == 0`, and swapped with the
/// next frame when `i % swap_every == 1`. With `random_drop_percent` it also drops frames by a seeded
/// pseudo-random sequence (deterministic from run to run).
struct Wire {
    drop_every: usize,
    dup_every: usize,
    swap_every: usize,
    count: usize,
    random_drop_percent: u64,
    rng: u64,
    in_flight: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
}

impl Wire {
    fn new(drop_every: usize, dup_every: usize, swap_every: usize) -> Self {
        Self {
            drop_every,
            dup_every,
            swap_every,
            count: 0,
            random_drop_percent: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            in_flight: VecDeque::new(),
            held: None,
        }
    }

    fn transmit(&mut self, bytes: &[u8]) {
        let i = self.count;
        self.count += 1;
        if self.drop_every > 0 && i % self.drop_every == self.drop_every - 1 {
            return;
        }
        if self.random_drop_percent > 0 {
            // xorshift64
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng % 100 < self.random_drop_percent {
                return;
            }
        }
        if self.swap_every > 0 && i % self.swap_every == 1 && self.held.is_none() {
            self.held = Some(bytes.to_vec());
            return;
        }
        self.in_flight.push_back(bytes.to_vec());
        if let Some(h) = self.held.take() {
            self.in_flight.push_back(h);
        }
        if self.dup_every > 0 && i % self.dup_every == 0 {
            self.in_flight.push_back(bytes.to_vec());
        }
    }

    /// Everything currently on the wire, in arrival order (a held frame is released too, late).
    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.in_flight.drain(..) {
            out.extend(f);
        }
        out
    }

    fn flush_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.in_flight.push_back(h);
        }
    }
}

struct End {
    link: Link<8>,
    decoder: FrameDecoder,
    received: Vec<Message>,
}

impl End {
    fn new(config: LinkConfig) -> Self {
        Self {
            link: Link::new(config),
            decoder: FrameDecoder::new(),
            received: Vec::new(),
        }
    }

    fn receive(&mut self, bytes: &[u8], now: u64) {
        let mut frames = Vec::new();
        self.decoder.push_slice(bytes, |r| frames.push(r));
        for f in frames {
            let f = f.expect("the simulated wire never corrupts bytes");
            if let Some(m) = self.link.on_frame(&f, now).unwrap() {
                self.received.push(m);
            }
        }
    }
}

fn msg(i: u32) -> Message {
    Message::Arm {
        timeline_id: i,
        events_total: i.wrapping_mul(3),
    }
}

/// Runs both directions at once until everything is delivered (or a step limit); returns the ends.
fn exchange(n: u32, a_to_b: &mut Wire, b_to_a: &mut Wire, config: LinkConfig) -> (End, End) {
    let mut a = End::new(config);
    let mut b = End::new(config);
    let (mut next_a, mut next_b) = (0u32, 0u32);
    let mut now = 0u64;
    for _ in 0..200_000 {
        while next_a < n && a.link.send(&msg(next_a), now).is_ok() {
            next_a += 1;
        }
        while next_b < n && b.link.send(&msg(1_000_000 + next_b), now).is_ok() {
            next_b += 1;
        }
        a.link.poll(now, |bytes| a_to_b.transmit(bytes)).unwrap();
        b.link.poll(now, |bytes| b_to_a.transmit(bytes)).unwrap();
        if now % 40 == 0 {
            a_to_b.flush_held();
            b_to_a.flush_held();
        }
        b.receive(&a_to_b.drain(), now);
        a.receive(&b_to_a.drain(), now);
        let done = next_a == n
            && next_b == n
            && a.link.in_flight() == 0
            && b.link.in_flight() == 0
            && a.received.len() == n as usize
            && b.received.len() == n as usize;
        if done {
            break;
        }
        now += 5;
    }
    (a, b)
}

fn assert_exactly_once_in_order(a: &End, b: &End, n: u32) {
    let want_b: Vec<Message> = (0..n).map(msg).collect();
    let want_a: Vec<Message> = (0..n).map(|i| msg(1_000_000 + i)).collect();
    assert_eq!(b.received, want_b);
    assert_eq!(a.received, want_a);
}

#[test]
fn perfect_channel_delivers_everything_without_retransmission() {
    let (a, b) = exchange(
        100,
        &mut Wire::new(0, 0, 0),
        &mut Wire::new(0, 0, 0),
        LinkConfig::default(),
    );
    assert_exactly_once_in_order(&a, &b, 100);
    assert_eq!(a.link.stats().retransmitted, 0);
    assert_eq!(a.link.stats().sent, 100);
}

#[test]
fn dropping_every_kth_frame_still_delivers_exactly_once_in_order() {
    let config = LinkConfig {
        retransmit_ms: 20,
        max_retries: 10,
    };
    for (k_ab, k_ba) in [
        (2, 0),
        (0, 2),
        (3, 3),
        (4, 5),
        (5, 7),
        (7, 5),
        (6, 0),
        (9, 2),
    ] {
        let (a, b) = exchange(
            200,
            &mut Wire::new(k_ab, 0, 0),
            &mut Wire::new(k_ba, 0, 0),
            config,
        );
        assert_exactly_once_in_order(&a, &b, 200);
        let retransmitted = a.link.stats().retransmitted + b.link.stats().retransmitted;
        assert!(retransmitted > 0, "k = {k_ab}/{k_ba}");
    }
}

#[test]
fn random_loss_of_a_third_still_delivers_exactly_once_in_order() {
    let config = LinkConfig {
        retransmit_ms: 20,
        max_retries: 30,
    };
    let mut ab = Wire::new(0, 5, 4);
    ab.random_drop_percent = 33;
    let mut ba = Wire::new(0, 6, 0);
    ba.random_drop_percent = 33;
    ba.rng = 12345;
    let (a, b) = exchange(200, &mut ab, &mut ba, config);
    assert_exactly_once_in_order(&a, &b, 200);
}

#[test]
fn duplicates_are_dropped() {
    let config = LinkConfig {
        retransmit_ms: 20,
        max_retries: 10,
    };
    let (a, b) = exchange(
        150,
        &mut Wire::new(0, 2, 0),
        &mut Wire::new(0, 3, 0),
        config,
    );
    assert_exactly_once_in_order(&a, &b, 150);
    assert!(b.link.stats().duplicates > 0);
}

#[test]
fn reordering_drops_and_duplicates_together() {
    let config = LinkConfig {
        retransmit_ms: 20,
        max_retries: 20,
    };
    let (a, b) = exchange(
        300,
        &mut Wire::new(5, 7, 3),
        &mut Wire::new(6, 4, 5),
        config,
    );
    assert_exactly_once_in_order(&a, &b, 300);
    let s = b.link.stats();
    assert!(s.out_of_order > 0 && s.duplicates > 0, "{s:?}");
}

#[test]
fn total_loss_reports_link_down_after_retries() {
    let config = LinkConfig {
        retransmit_ms: 10,
        max_retries: 3,
    };
    let mut link: Link<4> = Link::new(config);
    let seq = link.send(&Message::Abort, 0).unwrap();
    let mut transmissions = 0;
    let mut result = Ok(());
    for now in (0..1000).step_by(5) {
        result = link.poll(now, |_| transmissions += 1);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(BridgeError::LinkDown { seq, retries: 3 }));
    assert_eq!(transmissions, 4, "one transmission plus three retries");
    assert_eq!(
        link.send(&Message::Abort, 2000),
        Err(BridgeError::LinkDown { seq, retries: 3 })
    );
    link.reset();
    assert_eq!(link.down(), None);
    assert_eq!(link.send(&Message::Abort, 2000), Ok(0));
}

#[test]
fn full_window_is_busy_until_acknowledged() {
    let mut host: Link<2> = Link::new(LinkConfig::default());
    let mut card: Link<2> = Link::new(LinkConfig::default());
    host.send(&Message::Abort, 0).unwrap();
    host.send(&Message::SafeState, 0).unwrap();
    assert_eq!(
        host.send(&Message::Abort, 0),
        Err(BridgeError::Busy { window: 2 })
    );
    let mut wire = Vec::new();
    host.poll(0, |b| wire.extend_from_slice(b)).unwrap();
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    dec.push_slice(&wire, |r| got.push(card.on_frame(&r.unwrap(), 1).unwrap()));
    assert_eq!(got, vec![Some(Message::Abort), Some(Message::SafeState)]);
    let mut back = Vec::new();
    card.poll(1, |b| back.extend_from_slice(b)).unwrap();
    assert_eq!(
        card.stats().acks_sent,
        1,
        "one cumulative ack for both frames"
    );
    dec.push_slice(&back, |r| {
        assert_eq!(host.on_frame(&r.unwrap(), 2).unwrap(), None)
    });
    assert_eq!(host.in_flight(), 0);
    assert_eq!(host.send(&Message::Abort, 2), Ok(2));
}

#[test]
fn ack_cannot_be_sent_as_a_sequenced_message() {
    let mut link: Link<2> = Link::new(LinkConfig::default());
    assert_eq!(
        link.send(&Message::Ack { seq: 1 }, 0),
        Err(BridgeError::UnsequencedMessage { msg_type: 0x09 })
    );
}

#[test]
fn undecodable_payload_in_sequence_is_acknowledged_and_reported() {
    use shotline_firmware_bridge::Frame;
    let mut card: Link<2> = Link::new(LinkConfig::default());
    let bogus = Frame::new(0x42, 0, 0xFFFF, &[1, 2, 3]).unwrap();
    assert_eq!(
        card.on_frame(&bogus, 0),
        Err(BridgeError::UnknownMessageType { msg_type: 0x42 })
    );
    assert_eq!(
        card.ack_value(),
        0,
        "consumed: the sender will not retransmit it forever"
    );
    let next = Frame::new(0x05, 1, 0xFFFF, &[]).unwrap();
    assert_eq!(card.on_frame(&next, 0), Ok(Some(Message::Abort)));
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut a: Link<8> = Link::new(LinkConfig::default());
    let mut b: Link<8> = Link::new(LinkConfig::default());
    let mut dec_b = FrameDecoder::new();
    let mut dec_a = FrameDecoder::new();
    let total = 70_000u32;
    let mut sent = 0u32;
    let mut delivered = 0u32;
    let mut now = 0u64;
    while delivered < total {
        while sent < total && a.send(&Message::Abort, now).is_ok() {
            sent += 1;
        }
        let mut wire = Vec::new();
        a.poll(now, |x| wire.extend_from_slice(x)).unwrap();
        dec_b.push_slice(&wire, |r| {
            if let Some(m) = b.on_frame(&r.unwrap(), now).unwrap() {
                assert_eq!(m, Message::Abort);
                delivered += 1;
            }
        });
        let mut back = Vec::new();
        b.poll(now, |x| back.extend_from_slice(x)).unwrap();
        dec_a.push_slice(&back, |r| {
            a.on_frame(&r.unwrap(), now).unwrap();
        });
        now += 1;
    }
    assert_eq!(a.stats().retransmitted, 0);
    assert_eq!(b.stats().duplicates, 0);
    assert_eq!(b.ack_value(), (total - 1) as u16);
}

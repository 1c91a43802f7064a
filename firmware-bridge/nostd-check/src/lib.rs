//! Build-only check: a `no_std` static library linking the firmware-bridge core, including the
//! reference card ([`Card`]) in its no-allocation configuration.
//!
//! If the core or any of its dependencies pulled in `std`, this crate would fail to build (duplicate
//! `panic_impl` lang item against our `#[panic_handler]`). Build with
//! `cargo build --release --manifest-path firmware-bridge/nostd-check/Cargo.toml`.
#![no_std]

use shotline_firmware_bridge::card::{Card, CardConfig, CardTime, StoredEvent};
use shotline_firmware_bridge::{
    encode_frame, BridgeError, CardMachine, Frame, FrameDecoder, Link, LinkConfig, Message,
    MAX_ENCODED_FRAME, MAX_PAYLOAD,
};

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

fn round_trip(ticks: u16) -> Result<u32, BridgeError> {
    let msg = Message::Start {
        at_card_ticks: u64::from(ticks) * 1000,
        shots: 3,
    };
    let mut payload = [0u8; MAX_PAYLOAD];
    let n = msg.encode(&mut payload)?;
    // First frame of a fresh link: sequence 0.
    let frame = Frame::new(msg.msg_type(), 0, 0, &payload[..n])?;
    let mut wire = [0u8; MAX_ENCODED_FRAME];
    let w = encode_frame(&frame, &mut wire)?;
    let mut decoder = FrameDecoder::new();
    let mut card = CardMachine::new(500, 1024);
    let mut link: Link<4> = Link::new(LinkConfig::default());
    let mut delivered = 0u32;
    for &b in &wire[..w] {
        if let Some(result) = decoder.push(b) {
            let got = result?;
            if let Some(m) = link.on_frame(&got, 0)? {
                if m == msg {
                    delivered += 1;
                }
                let _ = card.handle(&m, 0);
            }
        }
    }
    let mut acks = 0u32;
    link.poll(1, |_| acks += 1)?;
    Ok(delivered + acks * 10 + u32::from(card.state().code()) * 100)
}

/// Encodes a `Start` frame (at `ticks` × 1000), decodes it through the streaming decoder, the link
/// and the card state machine; returns `11` on success (delivered once, one ack, card idle) or
/// `0x8000_0000 | error code`.
#[no_mangle]
pub extern "C" fn shotline_bridge_check(ticks: u16) -> u32 {
    match round_trip(ticks) {
        Ok(v) => v,
        Err(e) => 0x8000_0000 | u32::from(e.code()),
    }
}

/// Runs the reference card on a static-size timeline: feeds it `len` received bytes at card tick
/// `ticks` and polls it; returns the number of bytes it transmitted (its boot `Hello` at least).
///
/// # Safety
/// `bytes` must point to `len` readable bytes (or be null with `len == 0`).
#[no_mangle]
pub unsafe extern "C" fn shotline_card_check(bytes: *const u8, len: usize, ticks: u64) -> u32 {
    let input: &[u8] = if bytes.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes at `bytes`.
        unsafe { core::slice::from_raw_parts(bytes, len) }
    };
    let mut storage = [StoredEvent::default(); 16];
    let mut card: Card<'_, 1> =
        Card::new(CardConfig::default(), &mut storage, LinkConfig::default());
    let now = CardTime {
        ticks,
        ms: ticks / 1_000_000,
    };
    card.on_bytes(input, now);
    let mut sent = 0u32;
    card.poll(now, |b| sent += b.len() as u32);
    sent
}

/// The host target's precompiled `core` references an unwinding personality routine even with
/// `panic = "abort"`; nothing here unwinds, so a stub lets C programs link the library (the
/// `cargo build` check itself does not need it).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

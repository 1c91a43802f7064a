//! Build-only check: a `no_std` static library linking the firmware-bridge core.
//!
//! If the core or any of its dependencies pulled in `std`, this crate would fail to build (duplicate
//! `panic_impl` lang item against our `#[panic_handler]`). Build with
//! `cargo build --release --manifest-path firmware-bridge/nostd-check/Cargo.toml`.
#![no_std]

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

/// The host target's precompiled `core` references an unwinding personality routine even with
/// `panic = "abort"`; nothing here unwinds, so a stub lets C programs link the library (the
/// `cargo build` check itself does not need it).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

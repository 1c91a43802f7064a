//! Frames on the byte stream: header + payload + CRC-32, COBS-encoded, terminated by `0x00`.
//!
//! Raw frame layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | protocol version ([`PROTOCOL_VERSION`]) |
//! | 1 | 1 | message type |
//! | 2 | 2 | sequence number |
//! | 4 | 2 | cumulative acknowledgement |
//! | 6 | 2 | payload length (≤ [`MAX_PAYLOAD`]) |
//! | 8 | n | payload |
//! | 8+n | 4 | CRC-32 over bytes `0 .. 8+n` |

use crate::cobs;
use crate::crc::crc32;
use crate::error::BridgeError;

/// Protocol version carried in every frame header.
pub const PROTOCOL_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 8;
/// CRC trailer length in bytes.
pub const CRC_LEN: usize = 4;
/// Maximum payload length in bytes.
pub const MAX_PAYLOAD: usize = 1024;
/// Maximum raw (un-stuffed) frame length: header + payload + CRC.
pub const MAX_RAW_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;
/// Minimum raw frame length: header + CRC with an empty payload.
pub const MIN_RAW_FRAME: usize = HEADER_LEN + CRC_LEN;
/// Maximum bytes on the wire for one frame, including the `0x00` delimiter.
pub const MAX_ENCODED_FRAME: usize = cobs::max_encoded_len(MAX_RAW_FRAME) + 1;

/// One frame: routing header fields plus an opaque payload (see `message` for its meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte.
    pub msg_type: u8,
    /// Sequence number of this frame.
    pub seq: u16,
    /// Cumulative acknowledgement: the sender has received every sequenced frame up to this one.
    pub ack: u16,
    /// Payload, at most [`MAX_PAYLOAD`] bytes.
    pub payload: heapless::Vec<u8, MAX_PAYLOAD>,
}

impl Frame {
    /// Builds a frame, checking the payload length.
    pub fn new(msg_type: u8, seq: u16, ack: u16, payload: &[u8]) -> Result<Self, BridgeError> {
        let payload =
            heapless::Vec::from_slice(payload).map_err(|_| BridgeError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            })?;
        Ok(Self {
            msg_type,
            seq,
            ack,
            payload,
        })
    }

    /// Writes the raw (un-stuffed) frame into `out` and returns its length.
    pub fn write_raw(&self, out: &mut [u8]) -> Result<usize, BridgeError> {
        let n = self.payload.len();
        let total = HEADER_LEN + n + CRC_LEN;
        if out.len() < total {
            return Err(BridgeError::BufferTooSmall {
                needed: total,
                available: out.len(),
            });
        }
        out[0] = PROTOCOL_VERSION;
        out[1] = self.msg_type;
        out[2..4].copy_from_slice(&self.seq.to_le_bytes());
        out[4..6].copy_from_slice(&self.ack.to_le_bytes());
        // n ≤ MAX_PAYLOAD (1024) always fits a u16.
        out[6..8].copy_from_slice(&(n as u16).to_le_bytes());
        out[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&self.payload);
        let crc = crc32(&out[..HEADER_LEN + n]);
        out[HEADER_LEN + n..total].copy_from_slice(&crc.to_le_bytes());
        Ok(total)
    }

    /// Parses a raw (un-stuffed) frame, checking length, CRC, version and payload length, in that
    /// order.
    pub fn from_raw(raw: &[u8]) -> Result<Self, BridgeError> {
        if raw.len() < MIN_RAW_FRAME {
            return Err(BridgeError::FrameTooShort {
                len: raw.len(),
                min: MIN_RAW_FRAME,
            });
        }
        if raw.len() > MAX_RAW_FRAME {
            return Err(BridgeError::PayloadTooLarge {
                len: raw.len() - MIN_RAW_FRAME,
                max: MAX_PAYLOAD,
            });
        }
        let body_len = raw.len() - CRC_LEN;
        let received = u32::from_le_bytes([
            raw[body_len],
            raw[body_len + 1],
            raw[body_len + 2],
            raw[body_len + 3],
        ]);
        let computed = crc32(&raw[..body_len]);
        if received != computed {
            return Err(BridgeError::CrcMismatch { received, computed });
        }
        if raw[0] != PROTOCOL_VERSION {
            return Err(BridgeError::WrongVersion {
                got: raw[0],
                expected: PROTOCOL_VERSION,
            });
        }
        let declared = usize::from(u16::from_le_bytes([raw[6], raw[7]]));
        if declared > MAX_PAYLOAD {
            return Err(BridgeError::PayloadTooLarge {
                len: declared,
                max: MAX_PAYLOAD,
            });
        }
        let actual = body_len - HEADER_LEN;
        if declared != actual {
            return Err(BridgeError::LengthMismatch {
                header: declared,
                actual,
            });
        }
        Frame::new(
            raw[1],
            u16::from_le_bytes([raw[2], raw[3]]),
            u16::from_le_bytes([raw[4], raw[5]]),
            &raw[HEADER_LEN..body_len],
        )
    }
}

/// Encodes `frame` for the wire (raw frame, COBS, `0x00` delimiter) into `out`; returns the number of
/// bytes to transmit. `out` of [`MAX_ENCODED_FRAME`] bytes always suffices.
pub fn encode_frame(frame: &Frame, out: &mut [u8]) -> Result<usize, BridgeError> {
    let mut raw = [0u8; MAX_RAW_FRAME];
    let n = frame.write_raw(&mut raw)?;
    let needed = cobs::max_encoded_len(n) + 1;
    if out.len() < needed {
        return Err(BridgeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let m = cobs::encode(&raw[..n], &mut out[..needed - 1])?;
    out[m] = 0;
    Ok(m + 1)
}

/// Counters kept by a [`FrameDecoder`] (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames decoded successfully.
    pub frames: u32,
    /// Frames rejected by the CRC.
    pub crc_errors: u32,
    /// Frames longer than the maximum (on the wire or by their header).
    pub oversize: u32,
    /// Frames rejected for any other reason (COBS, too short, version, length mismatch).
    pub malformed: u32,
}

/// Streaming frame decoder: feed it received bytes in any chunking; it yields each complete frame or
/// the reason one was rejected, and resynchronises at the next `0x00` after any garbage.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: [u8; MAX_ENCODED_FRAME - 1],
    len: usize,
    overflowed: bool,
    stats: DecoderStats,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_ENCODED_FRAME - 1],
            len: 0,
            overflowed: false,
            stats: DecoderStats {
                frames: 0,
                crc_errors: 0,
                oversize: 0,
                malformed: 0,
            },
        }
    }

    /// Counters so far.
    pub const fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Discards a partly received frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Feeds one byte. Returns `Some` when the byte was a delimiter that ended a non-empty frame:
    /// the frame, or why it was rejected. Empty frames (consecutive delimiters) are ignored.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, BridgeError>> {
        if byte != 0 {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
            }
            return None;
        }
        let len = self.len;
        let overflowed = self.overflowed;
        self.reset();
        if overflowed {
            self.stats.oversize = self.stats.oversize.wrapping_add(1);
            return Some(Err(BridgeError::FrameTooLong {
                max: MAX_ENCODED_FRAME - 1,
            }));
        }
        if len == 0 {
            return None;
        }
        let result = self.decode(len);
        let counter = match &result {
            Ok(_) => &mut self.stats.frames,
            Err(BridgeError::CrcMismatch { .. }) => &mut self.stats.crc_errors,
            Err(BridgeError::PayloadTooLarge { .. }) | Err(BridgeError::FrameTooLong { .. }) => {
                &mut self.stats.oversize
            }
            Err(_) => &mut self.stats.malformed,
        };
        *counter = counter.wrapping_add(1);
        Some(result)
    }

    fn decode(&self, len: usize) -> Result<Frame, BridgeError> {
        let mut raw = [0u8; MAX_RAW_FRAME];
        let n = match cobs::decode(&self.buf[..len], &mut raw) {
            Ok(n) => n,
            Err(BridgeError::BufferTooSmall { .. }) => {
                return Err(BridgeError::FrameTooLong {
                    max: MAX_ENCODED_FRAME - 1,
                })
            }
            Err(e) => return Err(e),
        };
        Frame::from_raw(&raw[..n])
    }

    /// Feeds a slice of received bytes, calling `on_frame` for every frame (or rejection) completed.
    pub fn push_slice(
        &mut self,
        data: &[u8],
        mut on_frame: impl FnMut(Result<Frame, BridgeError>),
    ) {
        for &b in data {
            if let Some(r) = self.push(b) {
                on_frame(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn wire(frame: &Frame) -> Vec<u8> {
        let mut out = [0u8; MAX_ENCODED_FRAME];
        let n = encode_frame(frame, &mut out).unwrap();
        out[..n].to_vec()
    }

    /// Encodes a raw frame (possibly invalid) as COBS + delimiter.
    fn stuff(raw: &[u8]) -> Vec<u8> {
        let mut out = [0u8; 4096];
        let n = cobs::encode(raw, &mut out).unwrap();
        let mut v = out[..n].to_vec();
        v.push(0);
        v
    }

    fn decode_all(dec: &mut FrameDecoder, bytes: &[u8]) -> Vec<Result<Frame, BridgeError>> {
        let mut v = std::vec::Vec::new();
        dec.push_slice(bytes, |r| v.push(r));
        v
    }

    fn sample(seq: u16, len: usize) -> Frame {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + usize::from(seq)) as u8).collect();
        Frame::new(0x07, seq, seq.wrapping_sub(1), &payload).unwrap()
    }

    #[test]
    fn max_sizes_are_consistent() {
        assert_eq!(MAX_RAW_FRAME, 1036);
        assert_eq!(MAX_ENCODED_FRAME, 1042);
        let f = Frame::new(1, 2, 3, &[0xFF; MAX_PAYLOAD]).unwrap();
        assert_eq!(wire(&f).len(), MAX_ENCODED_FRAME);
        assert!(Frame::new(1, 2, 3, &[0; MAX_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn roundtrip_sizes_including_zero_length() {
        let mut dec = FrameDecoder::new();
        for len in [0usize, 1, 253, 254, 255, 1000, MAX_PAYLOAD] {
            let f = sample(len as u16, len);
            let out = decode_all(&mut dec, &wire(&f));
            assert_eq!(out, vec![Ok(f)]);
        }
        assert_eq!(dec.stats().frames, 7);
    }

    #[test]
    fn byte_at_a_time_and_back_to_back() {
        let mut bytes = wire(&sample(1, 10));
        bytes.extend(wire(&sample(2, 0)));
        bytes.extend(wire(&sample(3, 500)));
        let mut dec = FrameDecoder::new();
        let mut got = std::vec::Vec::new();
        for b in bytes {
            if let Some(r) = dec.push(b) {
                got.push(r.unwrap().seq);
            }
        }
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let f = sample(9, 40);
        let mut raw = [0u8; MAX_RAW_FRAME];
        let n = f.write_raw(&mut raw).unwrap();
        for bit in 0..n * 8 {
            let mut bad = raw;
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut dec = FrameDecoder::new();
            let out = decode_all(&mut dec, &stuff(&bad[..n]));
            assert_eq!(out.len(), 1);
            assert!(
                matches!(out[0], Err(BridgeError::CrcMismatch { .. })),
                "bit {bit}: {:?}",
                out[0]
            );
        }
    }

    #[test]
    fn bit_flips_on_the_wire_never_yield_a_wrong_frame() {
        let f = sample(4, 100);
        let w = wire(&f);
        for bit in 0..(w.len() - 1) * 8 {
            let mut bad = w.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut dec = FrameDecoder::new();
            for r in decode_all(&mut dec, &bad) {
                assert!(r.is_err(), "corrupted wire bit {bit} produced a frame");
            }
        }
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let f = sample(5, 30);
        let mut raw = [0u8; MAX_RAW_FRAME];
        let n = f.write_raw(&mut raw).unwrap();
        for cut in 1..n {
            let mut dec = FrameDecoder::new();
            let out = decode_all(&mut dec, &stuff(&raw[..cut]));
            assert_eq!(out.len(), 1);
            assert!(out[0].is_err(), "truncated to {cut} bytes was accepted");
        }
        let mut dec = FrameDecoder::new();
        let out = decode_all(&mut dec, &stuff(&raw[..5]));
        assert_eq!(
            out,
            vec![Err(BridgeError::FrameTooShort { len: 5, min: 12 })]
        );
    }

    fn raw_with(version: u8, declared_len: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![version, 0x07, 1, 0, 0, 0];
        v.extend_from_slice(&declared_len.to_le_bytes());
        v.extend_from_slice(payload);
        let crc = crc32(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    #[test]
    fn oversize_lengths_are_rejected() {
        let mut dec = FrameDecoder::new();
        let out = decode_all(&mut dec, &stuff(&raw_with(PROTOCOL_VERSION, 5000, &[1, 2])));
        assert_eq!(
            out,
            vec![Err(BridgeError::PayloadTooLarge {
                len: 5000,
                max: 1024
            })]
        );
        let out = decode_all(&mut dec, &stuff(&raw_with(PROTOCOL_VERSION, 3, &[1, 2])));
        assert_eq!(
            out,
            vec![Err(BridgeError::LengthMismatch {
                header: 3,
                actual: 2
            })]
        );
        // A payload physically longer than the maximum (valid CRC).
        let out = decode_all(
            &mut dec,
            &stuff(&raw_with(PROTOCOL_VERSION, 1025, &[9; 1025])),
        );
        assert_eq!(out, vec![Err(BridgeError::FrameTooLong { max: 1041 })]);
        // An endless stream without delimiter is cut off, then the decoder recovers.
        let mut flood = vec![0x55u8; 5000];
        flood.push(0);
        let out = decode_all(&mut dec, &flood);
        assert_eq!(out, vec![Err(BridgeError::FrameTooLong { max: 1041 })]);
        let good = sample(77, 3);
        assert_eq!(decode_all(&mut dec, &wire(&good)), vec![Ok(good)]);
        assert_eq!(dec.stats().oversize, 3);
        assert_eq!(dec.stats().malformed, 1);
    }

    #[test]
    fn wrong_version_is_rejected_with_both_versions() {
        let mut dec = FrameDecoder::new();
        let out = decode_all(&mut dec, &stuff(&raw_with(9, 0, &[])));
        assert_eq!(
            out,
            vec![Err(BridgeError::WrongVersion {
                got: 9,
                expected: 1
            })]
        );
    }

    #[test]
    fn garbage_between_frames_resynchronises() {
        let a = sample(1, 20);
        let b = sample(2, 20);
        let c = sample(3, 20);
        let mut bytes = vec![0u8, 0, 0]; // leading delimiters / empty frames are ignored
        bytes.extend(wire(&a));
        bytes.extend([0x13, 0x37, 0xFF, 0x01, 0x00]); // garbage ended by a delimiter
        bytes.extend(wire(&b));
        bytes.extend([0xAA, 0xBB]); // garbage glued to the next frame: that frame is lost
        bytes.extend(wire(&c));
        bytes.extend(wire(&a));
        let mut dec = FrameDecoder::new();
        let ok: Vec<u16> = decode_all(&mut dec, &bytes)
            .into_iter()
            .filter_map(|r| r.ok().map(|f| f.seq))
            .collect();
        assert_eq!(ok, vec![1, 2, 1]);
        let s = dec.stats();
        assert_eq!(s.frames, 3);
        assert_eq!(s.crc_errors + s.malformed + s.oversize, 2);
    }

    #[test]
    fn encode_checks_output_buffer() {
        let f = sample(1, 100);
        let mut small = [0u8; 50];
        assert!(matches!(
            encode_frame(&f, &mut small),
            Err(BridgeError::BufferTooSmall { .. })
        ));
    }
}

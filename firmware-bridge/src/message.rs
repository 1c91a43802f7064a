//! Typed messages of a timing card and their fixed-layout, little-endian payload encodings.
//!
//! Every list has a fixed maximum (so the whole message fits [`MAX_PAYLOAD`]); decoding checks the
//! item count against it and the payload length against the count exactly. See
//! `docs/firmware-bridge.md` for the byte-by-byte layout.

use crate::error::BridgeError;
use crate::frame::MAX_PAYLOAD;

/// Message type codes (the `msg_type` byte of the frame header).
pub mod msg_type {
    /// [`super::Message::Hello`].
    pub const HELLO: u8 = 0x01;
    /// [`super::Message::UploadChunk`].
    pub const UPLOAD_CHUNK: u8 = 0x02;
    /// [`super::Message::Arm`].
    pub const ARM: u8 = 0x03;
    /// [`super::Message::Start`].
    pub const START: u8 = 0x04;
    /// [`super::Message::Abort`].
    pub const ABORT: u8 = 0x05;
    /// [`super::Message::SafeState`].
    pub const SAFE_STATE: u8 = 0x06;
    /// [`super::Message::Heartbeat`].
    pub const HEARTBEAT: u8 = 0x07;
    /// [`super::Message::Status`].
    pub const STATUS: u8 = 0x08;
    /// [`super::Message::Ack`].
    pub const ACK: u8 = 0x09;
    /// [`super::Message::AcquisitionChunk`].
    pub const ACQUISITION_CHUNK: u8 = 0x0A;
    /// [`super::Message::EventTimestamps`].
    pub const EVENT_TIMESTAMPS: u8 = 0x0B;
    /// [`super::Message::Error`].
    pub const ERROR: u8 = 0x0C;
}

/// Encoded size of one [`WireEvent`].
pub const WIRE_EVENT_LEN: usize = 23;
/// Fixed part of an `UploadChunk` payload (timeline id, offset, count).
pub const UPLOAD_HEADER_LEN: usize = 10;
/// Maximum events per `UploadChunk` (44).
pub const MAX_UPLOAD_EVENTS: usize = (MAX_PAYLOAD - UPLOAD_HEADER_LEN) / WIRE_EVENT_LEN;
/// Fixed part of an `AcquisitionChunk` payload (shot, channel, offset, count).
pub const ACQ_HEADER_LEN: usize = 12;
/// Maximum samples per `AcquisitionChunk` (253).
pub const MAX_ACQ_SAMPLES: usize = (MAX_PAYLOAD - ACQ_HEADER_LEN) / 4;
/// Fixed part of an `EventTimestamps` payload (shot, first event, count).
pub const TIMESTAMPS_HEADER_LEN: usize = 10;
/// Maximum timestamps per `EventTimestamps` (126).
pub const MAX_TIMESTAMPS: usize = (MAX_PAYLOAD - TIMESTAMPS_HEADER_LEN) / 8;
/// Maximum UTF-8 bytes of an `Error` detail.
pub const MAX_ERROR_DETAIL: usize = 64;

/// One timeline event as uploaded to the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireEvent {
    /// Scheduled time, card-clock ticks from the start of the shot.
    pub t_ticks: u64,
    /// Output channel.
    pub channel: u16,
    /// Event kind (assignments owned by the HAL device; opaque to the core).
    pub kind: u8,
    /// Duration in ticks (pulses, ramps; 0 otherwise).
    pub duration_ticks: u64,
    /// Value (level, DAC code, ...).
    pub value: i32,
}

/// Card status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Card state code (see `watchdog::CardState`).
    pub state: u8,
    /// Loaded timeline id (0: none).
    pub timeline_id: u32,
    /// Events of that timeline loaded.
    pub events_loaded: u32,
    /// Shots completed since `Start`.
    pub shots_done: u32,
    /// Card clock now.
    pub card_ticks: u64,
    /// Code of the last error (0: none).
    pub last_error: u16,
}

/// Every message of the protocol.
// The variants hold their fixed-capacity lists inline: without an allocator there is nothing to box
// them into, and a fixed worst-case size is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Card → host on connect (and in reply to a host `Hello`): version and capabilities.
    Hello {
        /// Highest protocol version spoken.
        protocol_version: u8,
        /// Card identifier (serial number).
        card_id: u32,
        /// Output channels.
        channels: u16,
        /// Card clock rate in Hz.
        clock_hz: u64,
        /// Maximum events of one timeline.
        max_events: u32,
        /// Events the card buffers ahead.
        buffer_events: u32,
        /// Heartbeat watchdog timeout in milliseconds.
        watchdog_ms: u32,
    },
    /// Host → card: part of a timeline.
    UploadChunk {
        /// Timeline being uploaded.
        timeline_id: u32,
        /// Index of the first event of this chunk in the timeline.
        offset: u32,
        /// Events, at most [`MAX_UPLOAD_EVENTS`].
        events: heapless::Vec<WireEvent, MAX_UPLOAD_EVENTS>,
    },
    /// Host → card: the upload is complete; get ready to start.
    Arm {
        /// Timeline to arm.
        timeline_id: u32,
        /// Total events the timeline must have.
        events_total: u32,
    },
    /// Host → card: start at a card-clock time.
    Start {
        /// Card tick of the first shot.
        at_card_ticks: u64,
        /// Number of shots (repetitions).
        shots: u32,
    },
    /// Host → card: stop playing, keep the timeline.
    Abort,
    /// Host → card: drive every output to its safe state now.
    SafeState,
    /// Both directions: liveness; the card reports its clock and state.
    Heartbeat {
        /// Card clock (0 from the host).
        card_ticks: u64,
        /// Card state code (0 from the host).
        state: u8,
    },
    /// Card → host: status report.
    Status(Status),
    /// Both directions: cumulative acknowledgement (generated by the link).
    Ack {
        /// Every sequenced frame up to and including this one was received.
        seq: u16,
    },
    /// Card → host: acquired samples.
    AcquisitionChunk {
        /// Shot index.
        shot: u32,
        /// Input channel.
        channel: u16,
        /// Index of the first sample of this chunk within the shot.
        offset: u32,
        /// Samples, at most [`MAX_ACQ_SAMPLES`].
        samples: heapless::Vec<i32, MAX_ACQ_SAMPLES>,
    },
    /// Card → host: card-clock ticks at which events were actually applied (for lateness).
    EventTimestamps {
        /// Shot index.
        shot: u32,
        /// Timeline index of the first event reported.
        first_event: u32,
        /// Applied ticks, at most [`MAX_TIMESTAMPS`].
        applied_ticks: heapless::Vec<u64, MAX_TIMESTAMPS>,
    },
    /// Either direction: an error with a code (see `BridgeError::code`) and a short text.
    Error {
        /// Error code.
        code: u16,
        /// Human-readable detail, at most [`MAX_ERROR_DETAIL`] bytes.
        detail: heapless::String<MAX_ERROR_DETAIL>,
    },
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BridgeError> {
        let end = self.pos + bytes.len();
        if end > self.buf.len() {
            return Err(BridgeError::BufferTooSmall {
                needed: end,
                available: self.buf.len(),
            });
        }
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), BridgeError> {
        self.put(&[v])
    }
    fn u16(&mut self, v: u16) -> Result<(), BridgeError> {
        self.put(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> Result<(), BridgeError> {
        self.put(&v.to_le_bytes())
    }
    fn i32(&mut self, v: i32) -> Result<(), BridgeError> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), BridgeError> {
        self.put(&v.to_le_bytes())
    }
}

/// Reader over a payload whose total length was already checked; reads past the end are still
/// reported as errors rather than trusted.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg_type: u8,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BridgeError> {
        let mut out = [0u8; N];
        let end = self.pos + N;
        let src = self
            .buf
            .get(self.pos..end)
            .ok_or(BridgeError::BadMessageLength {
                msg_type: self.msg_type,
                len: self.buf.len(),
                expected: end,
            })?;
        out.copy_from_slice(src);
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, BridgeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, BridgeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, BridgeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, BridgeError> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, BridgeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

fn expect_len(msg_type: u8, payload: &[u8], expected: usize) -> Result<(), BridgeError> {
    if payload.len() != expected {
        return Err(BridgeError::BadMessageLength {
            msg_type,
            len: payload.len(),
            expected,
        });
    }
    Ok(())
}

/// Checks a list count against its maximum and the payload length against `header + count * item`.
fn expect_list(
    msg_type: u8,
    payload: &[u8],
    header: usize,
    count: usize,
    item: usize,
    max: usize,
) -> Result<(), BridgeError> {
    if count > max {
        return Err(BridgeError::TooManyItems {
            msg_type,
            count,
            max,
        });
    }
    expect_len(msg_type, payload, header + count * item)
}

impl Message {
    /// The `Hello` a host sends on connecting: its protocol version, every other field 0.
    pub const fn host_hello() -> Self {
        Self::Hello {
            protocol_version: crate::frame::PROTOCOL_VERSION,
            card_id: 0,
            channels: 0,
            clock_hz: 0,
            max_events: 0,
            buffer_events: 0,
            watchdog_ms: 0,
        }
    }

    /// The message type code of this message.
    pub const fn msg_type(&self) -> u8 {
        match self {
            Self::Hello { .. } => msg_type::HELLO,
            Self::UploadChunk { .. } => msg_type::UPLOAD_CHUNK,
            Self::Arm { .. } => msg_type::ARM,
            Self::Start { .. } => msg_type::START,
            Self::Abort => msg_type::ABORT,
            Self::SafeState => msg_type::SAFE_STATE,
            Self::Heartbeat { .. } => msg_type::HEARTBEAT,
            Self::Status(_) => msg_type::STATUS,
            Self::Ack { .. } => msg_type::ACK,
            Self::AcquisitionChunk { .. } => msg_type::ACQUISITION_CHUNK,
            Self::EventTimestamps { .. } => msg_type::EVENT_TIMESTAMPS,
            Self::Error { .. } => msg_type::ERROR,
        }
    }

    /// An `Error` message for `err`, with its code and as much of its text as fits.
    pub fn from_error(err: &BridgeError) -> Self {
        let mut detail = heapless::String::new();
        let _ = core::fmt::write(&mut Truncating(&mut detail), format_args!("{err}"));
        Self::Error {
            code: err.code(),
            detail,
        }
    }

    /// Encodes the payload into `out`; returns its length (at most [`MAX_PAYLOAD`]).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BridgeError> {
        encode(self, out)
    }

    /// Decodes a payload of the given message type.
    pub fn decode(msg_type: u8, payload: &[u8]) -> Result<Self, BridgeError> {
        decode(msg_type, payload)
    }
}

/// `fmt::Write` into a fixed string that silently stops at capacity (on a char boundary).
struct Truncating<'a, const N: usize>(&'a mut heapless::String<N>);

impl<const N: usize> core::fmt::Write for Truncating<'_, N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Encodes the payload of `msg` into `out`; returns its length (at most [`MAX_PAYLOAD`]).
pub fn encode(msg: &Message, out: &mut [u8]) -> Result<usize, BridgeError> {
    let mut w = Writer { buf: out, pos: 0 };
    match msg {
        Message::Hello {
            protocol_version,
            card_id,
            channels,
            clock_hz,
            max_events,
            buffer_events,
            watchdog_ms,
        } => {
            w.u8(*protocol_version)?;
            w.u32(*card_id)?;
            w.u16(*channels)?;
            w.u64(*clock_hz)?;
            w.u32(*max_events)?;
            w.u32(*buffer_events)?;
            w.u32(*watchdog_ms)?;
        }
        Message::UploadChunk {
            timeline_id,
            offset,
            events,
        } => {
            w.u32(*timeline_id)?;
            w.u32(*offset)?;
            // Capacity (44) fits a u16.
            w.u16(events.len() as u16)?;
            for e in events {
                w.u64(e.t_ticks)?;
                w.u16(e.channel)?;
                w.u8(e.kind)?;
                w.u64(e.duration_ticks)?;
                w.i32(e.value)?;
            }
        }
        Message::Arm {
            timeline_id,
            events_total,
        } => {
            w.u32(*timeline_id)?;
            w.u32(*events_total)?;
        }
        Message::Start {
            at_card_ticks,
            shots,
        } => {
            w.u64(*at_card_ticks)?;
            w.u32(*shots)?;
        }
        Message::Abort | Message::SafeState => {}
        Message::Heartbeat { card_ticks, state } => {
            w.u64(*card_ticks)?;
            w.u8(*state)?;
        }
        Message::Status(s) => {
            w.u8(s.state)?;
            w.u32(s.timeline_id)?;
            w.u32(s.events_loaded)?;
            w.u32(s.shots_done)?;
            w.u64(s.card_ticks)?;
            w.u16(s.last_error)?;
        }
        Message::Ack { seq } => w.u16(*seq)?,
        Message::AcquisitionChunk {
            shot,
            channel,
            offset,
            samples,
        } => {
            w.u32(*shot)?;
            w.u16(*channel)?;
            w.u32(*offset)?;
            w.u16(samples.len() as u16)?;
            for s in samples {
                w.i32(*s)?;
            }
        }
        Message::EventTimestamps {
            shot,
            first_event,
            applied_ticks,
        } => {
            w.u32(*shot)?;
            w.u32(*first_event)?;
            w.u16(applied_ticks.len() as u16)?;
            for t in applied_ticks {
                w.u64(*t)?;
            }
        }
        Message::Error { code, detail } => {
            w.u16(*code)?;
            // Capacity (64) fits a u8.
            w.u8(detail.len() as u8)?;
            w.put(detail.as_bytes())?;
        }
    }
    Ok(w.pos)
}

/// Decodes a payload of message type `msg_type`. Unknown types, wrong lengths, counts above the
/// maxima and invalid UTF-8 are errors; nothing is read outside `payload`.
pub fn decode(msg_type: u8, payload: &[u8]) -> Result<Message, BridgeError> {
    use self::msg_type as t;
    let mut r = Reader {
        buf: payload,
        pos: 0,
        msg_type,
    };
    let msg = match msg_type {
        t::HELLO => {
            expect_len(msg_type, payload, 27)?;
            Message::Hello {
                protocol_version: r.u8()?,
                card_id: r.u32()?,
                channels: r.u16()?,
                clock_hz: r.u64()?,
                max_events: r.u32()?,
                buffer_events: r.u32()?,
                watchdog_ms: r.u32()?,
            }
        }
        t::UPLOAD_CHUNK => {
            let timeline_id = r.u32()?;
            let offset = r.u32()?;
            let count = usize::from(r.u16()?);
            expect_list(
                msg_type,
                payload,
                UPLOAD_HEADER_LEN,
                count,
                WIRE_EVENT_LEN,
                MAX_UPLOAD_EVENTS,
            )?;
            let mut events = heapless::Vec::new();
            for _ in 0..count {
                let e = WireEvent {
                    t_ticks: r.u64()?,
                    channel: r.u16()?,
                    kind: r.u8()?,
                    duration_ticks: r.u64()?,
                    value: r.i32()?,
                };
                events.push(e).map_err(|_| BridgeError::TooManyItems {
                    msg_type,
                    count,
                    max: MAX_UPLOAD_EVENTS,
                })?;
            }
            Message::UploadChunk {
                timeline_id,
                offset,
                events,
            }
        }
        t::ARM => {
            expect_len(msg_type, payload, 8)?;
            Message::Arm {
                timeline_id: r.u32()?,
                events_total: r.u32()?,
            }
        }
        t::START => {
            expect_len(msg_type, payload, 12)?;
            Message::Start {
                at_card_ticks: r.u64()?,
                shots: r.u32()?,
            }
        }
        t::ABORT => {
            expect_len(msg_type, payload, 0)?;
            Message::Abort
        }
        t::SAFE_STATE => {
            expect_len(msg_type, payload, 0)?;
            Message::SafeState
        }
        t::HEARTBEAT => {
            expect_len(msg_type, payload, 9)?;
            Message::Heartbeat {
                card_ticks: r.u64()?,
                state: r.u8()?,
            }
        }
        t::STATUS => {
            expect_len(msg_type, payload, 23)?;
            Message::Status(Status {
                state: r.u8()?,
                timeline_id: r.u32()?,
                events_loaded: r.u32()?,
                shots_done: r.u32()?,
                card_ticks: r.u64()?,
                last_error: r.u16()?,
            })
        }
        t::ACK => {
            expect_len(msg_type, payload, 2)?;
            Message::Ack { seq: r.u16()? }
        }
        t::ACQUISITION_CHUNK => {
            let shot = r.u32()?;
            let channel = r.u16()?;
            let offset = r.u32()?;
            let count = usize::from(r.u16()?);
            expect_list(msg_type, payload, ACQ_HEADER_LEN, count, 4, MAX_ACQ_SAMPLES)?;
            let mut samples = heapless::Vec::new();
            for _ in 0..count {
                samples
                    .push(r.i32()?)
                    .map_err(|_| BridgeError::TooManyItems {
                        msg_type,
                        count,
                        max: MAX_ACQ_SAMPLES,
                    })?;
            }
            Message::AcquisitionChunk {
                shot,
                channel,
                offset,
                samples,
            }
        }
        t::EVENT_TIMESTAMPS => {
            let shot = r.u32()?;
            let first_event = r.u32()?;
            let count = usize::from(r.u16()?);
            expect_list(
                msg_type,
                payload,
                TIMESTAMPS_HEADER_LEN,
                count,
                8,
                MAX_TIMESTAMPS,
            )?;
            let mut applied_ticks = heapless::Vec::new();
            for _ in 0..count {
                applied_ticks
                    .push(r.u64()?)
                    .map_err(|_| BridgeError::TooManyItems {
                        msg_type,
                        count,
                        max: MAX_TIMESTAMPS,
                    })?;
            }
            Message::EventTimestamps {
                shot,
                first_event,
                applied_ticks,
            }
        }
        t::ERROR => {
            let code = r.u16()?;
            let len = usize::from(r.u8()?);
            expect_list(msg_type, payload, 3, len, 1, MAX_ERROR_DETAIL)?;
            let text = core::str::from_utf8(&payload[3..3 + len])
                .map_err(|_| BridgeError::InvalidUtf8 { msg_type })?;
            let mut detail = heapless::String::new();
            detail
                .push_str(text)
                .map_err(|_| BridgeError::TooManyItems {
                    msg_type,
                    count: len,
                    max: MAX_ERROR_DETAIL,
                })?;
            Message::Error { code, detail }
        }
        other => return Err(BridgeError::UnknownMessageType { msg_type: other }),
    };
    Ok(msg)
}

//! Consistent Overhead Byte Stuffing (COBS): removes every `0x00` from a frame so that `0x00` can
//! delimit frames on a byte stream.
//!
//! Both directions write into caller-provided buffers and never allocate. Decoding checks every code
//! byte against the input and output bounds and rejects malformed input with an error.

use crate::error::BridgeError;

/// The largest encoded size of `len` input bytes (without the `0x00` delimiter): one code byte per
/// started block of 254 data bytes, and at least one.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Encodes `input` into `out` (without a trailing delimiter) and returns the number of bytes written.
///
/// Fails with [`BridgeError::BufferTooSmall`] when `out` is shorter than [`max_encoded_len`] of the
/// input would need at the point of overflow.
pub fn encode(input: &[u8], out: &mut [u8]) -> Result<usize, BridgeError> {
    let needed = max_encoded_len(input.len());
    if out.len() < needed {
        return Err(BridgeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let mut code_at = 0usize;
    let mut w = 1usize;
    let mut code: u8 = 1;
    for &b in input {
        if b == 0 {
            out[code_at] = code;
            code_at = w;
            w += 1;
            code = 1;
        } else {
            out[w] = b;
            w += 1;
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = w;
                w += 1;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    Ok(w)
}

/// Decodes one COBS block sequence `input` (the bytes between two delimiters, delimiter excluded) into
/// `out` and returns the number of bytes written.
///
/// Errors: [`BridgeError::CobsMalformed`] for an empty input, a `0x00` inside the input, or a code byte
/// that points past the end; [`BridgeError::BufferTooSmall`] when `out` cannot hold the result.
pub fn decode(input: &[u8], out: &mut [u8]) -> Result<usize, BridgeError> {
    if input.is_empty() {
        return Err(BridgeError::CobsMalformed { offset: 0 });
    }
    let mut r = 0usize;
    let mut w = 0usize;
    while r < input.len() {
        let code = input[r];
        if code == 0 {
            return Err(BridgeError::CobsMalformed { offset: r });
        }
        let block_end = r + usize::from(code);
        if block_end > input.len() {
            return Err(BridgeError::CobsMalformed { offset: r });
        }
        r += 1;
        while r < block_end {
            let b = input[r];
            if b == 0 {
                return Err(BridgeError::CobsMalformed { offset: r });
            }
            if w >= out.len() {
                return Err(BridgeError::BufferTooSmall {
                    needed: w + 1,
                    available: out.len(),
                });
            }
            out[w] = b;
            w += 1;
            r += 1;
        }
        // A block shorter than 254 data bytes stands for a zero, except at the very end.
        if code != 0xFF && r < input.len() {
            if w >= out.len() {
                return Err(BridgeError::BufferTooSmall {
                    needed: w + 1,
                    available: out.len(),
                });
            }
            out[w] = 0;
            w += 1;
        }
    }
    Ok(w)
}

/// Encodes `input` into a fixed-capacity vector (cleared first).
pub fn encode_to_vec<const N: usize>(
    input: &[u8],
    out: &mut heapless::Vec<u8, N>,
) -> Result<(), BridgeError> {
    out.clear();
    let needed = max_encoded_len(input.len());
    if needed > N {
        return Err(BridgeError::BufferTooSmall {
            needed,
            available: N,
        });
    }
    out.resize_default(needed)
        .map_err(|_| BridgeError::BufferTooSmall {
            needed,
            available: N,
        })?;
    let n = encode(input, out.as_mut_slice())?;
    out.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn roundtrip(data: &[u8]) {
        let mut enc = [0u8; 2048];
        let n = encode(data, &mut enc).unwrap();
        assert!(n <= max_encoded_len(data.len()));
        assert!(
            !enc[..n].contains(&0),
            "encoded output must not contain 0x00"
        );
        let mut dec = [0u8; 2048];
        let m = decode(&enc[..n], &mut dec).unwrap();
        assert_eq!(&dec[..m], data);
    }

    #[test]
    fn known_vectors() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[0x01]),
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        ];
        for (raw, enc) in cases {
            let mut out = [0u8; 16];
            let n = encode(raw, &mut out).unwrap();
            assert_eq!(&out[..n], *enc, "encoding {raw:?}");
            let mut back = [0u8; 16];
            let m = decode(enc, &mut back).unwrap();
            assert_eq!(&back[..m], *raw, "decoding {enc:?}");
        }
    }

    #[test]
    fn long_runs_without_zero() {
        for len in [253usize, 254, 255, 508, 509, 1036] {
            let data: Vec<u8> = (0..len).map(|i| (i % 255 + 1) as u8).collect();
            roundtrip(&data);
        }
        let mixed: Vec<u8> = (0..1100).map(|i| (i % 7) as u8).collect();
        roundtrip(&mixed);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(
            decode(&[], &mut [0; 4]),
            Err(BridgeError::CobsMalformed { offset: 0 })
        ));
        assert!(matches!(
            decode(&[0x05, 1, 2], &mut [0; 8]),
            Err(BridgeError::CobsMalformed { .. })
        ));
        assert!(matches!(
            decode(&[0x02, 0, 1], &mut [0; 8]),
            Err(BridgeError::CobsMalformed { .. })
        ));
        assert!(matches!(
            decode(&[0x00], &mut [0; 8]),
            Err(BridgeError::CobsMalformed { .. })
        ));
    }

    #[test]
    fn small_buffers_are_errors() {
        assert!(matches!(
            encode(&[1, 2, 3], &mut [0; 3]),
            Err(BridgeError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            decode(&[0x04, 1, 2, 3], &mut [0; 2]),
            Err(BridgeError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn encode_into_heapless_vec() {
        let mut v: heapless::Vec<u8, 8> = heapless::Vec::new();
        encode_to_vec(&[1, 0, 2], &mut v).unwrap();
        assert_eq!(v.as_slice(), &[0x02, 1, 0x02, 2]);
        let mut tiny: heapless::Vec<u8, 2> = heapless::Vec::new();
        assert!(encode_to_vec(&[1, 2, 3], &mut tiny).is_err());
    }
}

//! Finds the `token` of a request in the first bytes of its frame body, without decoding (or waiting for) the
//! rest: a frame larger than `limits.max_unauthenticated_frame_bytes` is read further only once this token
//! has checked out. A small msgpack walker over a byte prefix: no allocation besides the token, no recursion.

/// What the prefix of a request body says about its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// The top-level map has a string `token`.
    Token(String),
    /// The prefix holds the whole top-level map (or the body is not a map) and it has no string `token`.
    Absent,
    /// The prefix ends before a `token` was found.
    Truncated,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A msgpack item header: how many bytes of payload follow and how many nested items.
enum Item {
    /// `n` payload bytes follow.
    Bytes(u64),
    /// `n` nested items follow (array elements, or twice the map entries).
    Nested(u64),
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn uint(&mut self, width: usize) -> Option<u64> {
        let end = self.pos.checked_add(width)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        if end > self.buf.len() {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Reads one item header; `None` when the prefix ends (an invalid marker reads as a 0-byte item: the full
    /// decoder reports it later).
    fn header(&mut self) -> Option<Item> {
        let b = self.byte()?;
        Some(match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0..=0xc3 => Item::Bytes(0),
            0x80..=0x8f => Item::Nested(2 * u64::from(b & 0x0f)),
            0x90..=0x9f => Item::Nested(u64::from(b & 0x0f)),
            0xa0..=0xbf => Item::Bytes(u64::from(b & 0x1f)),
            0xc4 | 0xd9 => Item::Bytes(self.uint(1)?),
            0xc5 | 0xda => Item::Bytes(self.uint(2)?),
            0xc6 | 0xdb => Item::Bytes(self.uint(4)?),
            0xc7 => Item::Bytes(self.uint(1)? + 1),
            0xc8 => Item::Bytes(self.uint(2)? + 1),
            0xc9 => Item::Bytes(self.uint(4)? + 1),
            0xca => Item::Bytes(4),
            0xcb => Item::Bytes(8),
            0xcc | 0xd0 => Item::Bytes(1),
            0xcd | 0xd1 => Item::Bytes(2),
            0xce | 0xd2 => Item::Bytes(4),
            0xcf | 0xd3 => Item::Bytes(8),
            0xd4 => Item::Bytes(2),
            0xd5 => Item::Bytes(3),
            0xd6 => Item::Bytes(5),
            0xd7 => Item::Bytes(9),
            0xd8 => Item::Bytes(17),
            0xdc => Item::Nested(self.uint(2)?),
            0xdd => Item::Nested(self.uint(4)?),
            0xde => Item::Nested(2 * self.uint(2)?),
            0xdf => Item::Nested(2 * self.uint(4)?),
        })
    }

    /// A string item's bytes, or `Ok(None)` when the item is not a string (then it is skipped).
    fn str_or_skip(&mut self) -> Option<Option<&'a [u8]>> {
        let marker = *self.buf.get(self.pos)?;
        let is_str = matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb);
        if !is_str {
            self.skip_value()?;
            return Some(None);
        }
        let Item::Bytes(n) = self.header()? else {
            return None;
        };
        let start = self.pos;
        self.skip(n)?;
        Some(Some(&self.buf[start..self.pos]))
    }

    /// Skips one complete value (with everything nested in it), iteratively.
    fn skip_value(&mut self) -> Option<()> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.header()? {
                Item::Bytes(n) => self.skip(n)?,
                Item::Nested(n) => pending = pending.saturating_add(n),
            }
        }
        Some(())
    }
}

/// Looks for the top-level `token` string in `prefix`, the first bytes of a request body.
pub fn token(prefix: &[u8]) -> Peek {
    let mut c = Cursor {
        buf: prefix,
        pos: 0,
    };
    let entries = match prefix.first() {
        None => return Peek::Truncated,
        Some(0x80..=0x8f | 0xde | 0xdf) => match c.header() {
            Some(Item::Nested(n)) => n / 2,
            _ => return Peek::Truncated,
        },
        Some(_) => return Peek::Absent,
    };
    for _ in 0..entries {
        let key = match c.str_or_skip() {
            Some(k) => k,
            None => return Peek::Truncated,
        };
        if key == Some(b"token".as_slice()) {
            return match c.str_or_skip() {
                Some(Some(t)) => match std::str::from_utf8(t) {
                    Ok(t) => Peek::Token(t.to_string()),
                    Err(_) => Peek::Absent,
                },
                Some(None) => Peek::Absent,
                None => Peek::Truncated,
            };
        }
        if c.skip_value().is_none() {
            return Peek::Truncated;
        }
    }
    Peek::Absent
}

#[cfg(test)]
mod tests {
    use super::*;
    use shotline_protocol::wire::Request;
    use shotline_protocol::Value;

    fn body(r: &Request) -> Vec<u8> {
        rmp_serde::to_vec_named(r).unwrap()
    }

    #[test]
    fn finds_the_token_of_a_submit_in_its_first_bytes() {
        let job: Value = serde_json::from_str(
            r#"{"experiment_0": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 3}}"#,
        )
        .unwrap();
        let b = body(&Request::Submit {
            token: "abc".into(),
            backend: "singlequdit".into(),
            job,
            qobj_id: None,
            priority: 0,
            tags: vec!["x".repeat(100_000)],
            idempotency_key: None,
        });
        assert_eq!(token(&b[..64]), Peek::Token("abc".into()));
        assert_eq!(token(&b), Peek::Token("abc".into()));
        assert_eq!(token(&b[..5]), Peek::Truncated);
        assert_eq!(token(&[]), Peek::Truncated);
    }

    #[test]
    fn a_token_after_a_big_value_is_truncated_and_a_login_has_none() {
        // {"job": <200 kB string>, "token": "t"}
        let mut b = vec![0x82, 0xa3];
        b.extend_from_slice(b"job");
        b.push(0xdb);
        b.extend_from_slice(&200_000u32.to_be_bytes());
        b.extend(std::iter::repeat_n(b'x', 200_000));
        b.extend_from_slice(&[0xa5]);
        b.extend_from_slice(b"token");
        b.extend_from_slice(&[0xa1, b't']);
        assert_eq!(token(&b[..65_536]), Peek::Truncated);
        assert_eq!(token(&b), Peek::Token("t".into()));
        let login = body(&Request::Login {
            user: "u".into(),
            password: "p".into(),
        });
        assert_eq!(token(&login), Peek::Absent);
        // Not a map; a non-string token; nested containers and every fixed-width marker are skipped.
        assert_eq!(token(&[0x93, 1, 2, 3]), Peek::Absent);
        assert_eq!(
            token(&[0x81, 0xa5, b't', b'o', b'k', b'e', b'n', 0x05]),
            Peek::Absent
        );
        let mut nested = vec![0x83, 0x01, 0x92, 0x91, 0x80, 0xcb];
        nested.extend_from_slice(&[0; 8]);
        nested.extend_from_slice(&[0xa1, b'k', 0xd8, 1]);
        nested.extend_from_slice(&[0; 16]);
        nested.extend_from_slice(&[0xa5, b't', b'o', b'k', b'e', b'n', 0xa2, b'o', b'k']);
        assert_eq!(token(&nested), Peek::Token("ok".into()));
        // Huge announced counts in a short prefix never loop long or overflow.
        assert_eq!(
            token(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xdd, 0xff]),
            Peek::Truncated
        );
    }
}

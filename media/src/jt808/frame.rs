//! JT/T 808 framing: `0x7e` delimiters, escaping and the XOR checksum.
//!
//! Push/poll contract: feed whatever bytes the socket gave with [`Deframer::push`], then call
//! [`Deframer::next_frame`] until it returns `None`. Each call yields one frame: `Ok(bytes)` is
//! header + body, unescaped, checksum verified and removed; `Err(..)` is one bad frame, already
//! dropped. Bytes before the first delimiter are skipped.

use super::Jt808Error;

/// Frame delimiter.
pub const FLAG: u8 = 0x7e;
/// Escape byte.
pub const ESCAPE: u8 = 0x7d;
/// Longest frame accepted, escaped (a 1,023-byte body with a 2019 header, everything escaped).
pub const MAX_FRAME: usize = 2 * (1023 + 21 + 1) + 2;

/// XOR of all bytes.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, b| a ^ b)
}

/// Frame a message: append the checksum, escape, add delimiters.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 4);
    out.push(FLAG);
    for &b in message.iter().chain(std::iter::once(&checksum(message))) {
        match b {
            FLAG => out.extend_from_slice(&[ESCAPE, 0x02]),
            ESCAPE => out.extend_from_slice(&[ESCAPE, 0x01]),
            b => out.push(b),
        }
    }
    out.push(FLAG);
    out
}

/// Unescape without verifying (for reading the header of a frame whose checksum failed, to
/// answer it). Bad escapes are kept as they are.
pub fn unescape_lenient(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        match (inner[i], inner.get(i + 1)) {
            (ESCAPE, Some(0x01)) => {
                out.push(ESCAPE);
                i += 2;
            }
            (ESCAPE, Some(0x02)) => {
                out.push(FLAG);
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out.pop();
    out
}

/// Unescape and verify one frame's inner bytes (between the delimiters).
pub fn decode(inner: &[u8]) -> Result<Vec<u8>, Jt808Error> {
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        if b == ESCAPE {
            match it.next() {
                Some(0x01) => out.push(ESCAPE),
                Some(0x02) => out.push(FLAG),
                Some(&other) => return Err(Jt808Error::BadEscape(other)),
                None => {
                    return Err(Jt808Error::Truncated {
                        what: "escape",
                        need: 1,
                        have: 0,
                    })
                }
            }
        } else {
            out.push(b);
        }
    }
    let Some(expected) = out.pop() else {
        return Err(Jt808Error::Truncated {
            what: "checksum",
            need: 1,
            have: 0,
        });
    };
    let computed = checksum(&out);
    if computed != expected {
        return Err(Jt808Error::BadChecksum { expected, computed });
    }
    Ok(out)
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    last_bad: Option<Vec<u8>>,
}

impl Deframer {
    /// A new deframer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The raw (escaped) inner bytes of the last frame that failed to decode, taken once: lets
    /// the caller try to read its header to answer it, and log an excerpt.
    pub fn take_last_bad(&mut self) -> Option<Vec<u8>> {
        self.last_bad.take()
    }

    /// Bytes held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, Jt808Error>> {
        loop {
            let start = match self.buf.iter().position(|&b| b == FLAG) {
                Some(s) => s,
                None => {
                    // No delimiter at all: nothing here can start a frame.
                    self.buf.clear();
                    return None;
                }
            };
            if start > 0 {
                self.buf.drain(..start);
            }
            let end = match self.buf[1..].iter().position(|&b| b == FLAG) {
                Some(e) => e + 1,
                None => {
                    if self.buf.len() > MAX_FRAME {
                        self.buf.clear();
                        return Some(Err(Jt808Error::TooLong(MAX_FRAME)));
                    }
                    return None;
                }
            };
            if end == 1 {
                // Two delimiters in a row (the end of one frame doubles as the start of the
                // next on some terminals): skip one.
                self.buf.drain(..1);
                continue;
            }
            let inner: Vec<u8> = self.buf[1..end].to_vec();
            self.buf.drain(..=end);
            let r = decode(&inner);
            if r.is_err() {
                self.last_bad = Some(inner);
            }
            return Some(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_checksums() {
        let msg = [0x30, 0x7e, 0x08, 0x7d, 0x55];
        let framed = encode(&msg);
        assert_eq!(
            framed,
            vec![
                0x7e,
                0x30,
                0x7d,
                0x02,
                0x08,
                0x7d,
                0x01,
                0x55,
                checksum(&msg),
                0x7e
            ]
        );
        assert_eq!(decode(&framed[1..framed.len() - 1]).unwrap(), msg);
    }

    #[test]
    fn splits_a_stream_in_any_chunking() {
        let a = encode(&[0x00, 0x02, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 0, 1]);
        let b = encode(&[0x00, 0x02, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 0, 2]);
        let stream: Vec<u8> = [&b"junk"[..], &a, &b].concat();
        for chunk in 1..stream.len() {
            let mut d = Deframer::new();
            let mut frames = Vec::new();
            for c in stream.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame() {
                    frames.push(f.unwrap());
                }
            }
            assert_eq!(frames.len(), 2, "chunk {chunk}");
            assert_eq!(frames[1][11], 2);
        }
    }

    #[test]
    fn bad_frames_are_dropped_and_the_stream_resyncs() {
        let good = encode(&[0x00, 0x02, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 0, 9]);
        let mut bad = good.clone();
        bad[5] ^= 0xff;
        let mut d = Deframer::new();
        d.push(&bad);
        d.push(&[0x7e, 0x7d, 0x05, 0x7e]);
        d.push(&good);
        assert!(matches!(
            d.next_frame(),
            Some(Err(Jt808Error::BadChecksum { .. }))
        ));
        assert!(matches!(
            d.next_frame(),
            Some(Err(Jt808Error::BadEscape(0x05)))
        ));
        assert_eq!(d.next_frame().unwrap().unwrap()[11], 9);
        assert!(d.next_frame().is_none());
    }

    #[test]
    fn endless_garbage_is_bounded() {
        let mut d = Deframer::new();
        d.push(&[0x7e]);
        d.push(&vec![0x11; MAX_FRAME + 10]);
        assert!(matches!(d.next_frame(), Some(Err(Jt808Error::TooLong(_)))));
        assert_eq!(d.buffered(), 0);
    }
}

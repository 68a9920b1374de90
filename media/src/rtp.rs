//! RTP (RFC 3550) packets as GB/T 28181 devices send them: parsing, building, a small reorder
//! buffer, and RFC 4571 framing for RTP over TCP. Sans-IO and clock-free.
//!
//! * [`Packet::parse`] checks version 2, CSRCs, the header extension and padding against the
//!   packet length, and borrows the payload.
//! * [`Reorder`] puts packets back in sequence order within a window of [`REORDER_WINDOW`]
//!   packets; a gap that does not fill within the window is reported as [`Ordered::Lost`] so the
//!   PS demuxer can resync.
//! * [`Rfc4571`] cuts a TCP byte stream into packets by their 2-byte length prefix;
//!   [`frame_rfc4571`] adds it.

/// Packets held while waiting for a missing one.
pub const REORDER_WINDOW: usize = 32;
/// Packets collected before the first is released.
pub const PRIME_PACKETS: usize = 3;

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the fixed header.
    #[error("packet of {0} bytes is shorter than an RTP header")]
    Short(usize),
    /// Version other than 2.
    #[error("RTP version {0} is not 2")]
    Version(u8),
    /// CSRCs, extension or padding run past the end.
    #[error("RTP header fields run past the packet end ({0})")]
    Length(&'static str),
}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Marker bit (end of a frame for GB/T 28181 video).
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp (90 kHz for PS).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload without padding.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parse one packet.
    pub fn parse(b: &'a [u8]) -> Result<Packet<'a>, RtpError> {
        if b.len() < 12 {
            return Err(RtpError::Short(b.len()));
        }
        let v = b[0] >> 6;
        if v != 2 {
            return Err(RtpError::Version(v));
        }
        let padding = b[0] & 0x20 != 0;
        let ext = b[0] & 0x10 != 0;
        let cc = (b[0] & 0x0F) as usize;
        let mut start = 12 + 4 * cc;
        if start > b.len() {
            return Err(RtpError::Length("CSRC list"));
        }
        if ext {
            if start + 4 > b.len() {
                return Err(RtpError::Length("extension header"));
            }
            let words = u16::from_be_bytes([b[start + 2], b[start + 3]]) as usize;
            start += 4 + 4 * words;
            if start > b.len() {
                return Err(RtpError::Length("extension"));
            }
        }
        let mut end = b.len();
        if padding {
            let n = b[b.len() - 1] as usize;
            if n == 0 || start + n > end {
                return Err(RtpError::Length("padding"));
            }
            end -= n;
        }
        Ok(Packet {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7F,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: &b[start..end],
        })
    }
}

/// Build an RTP packet (no CSRC, no extension).
pub fn build(pt: u8, marker: bool, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(0x80);
    out.push(pt & 0x7F | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Split a PS frame into RTP packets of at most `mtu_payload` bytes, the marker on the last.
pub fn packetize(
    pt: u8,
    seq: &mut u16,
    timestamp: u32,
    ssrc: u32,
    frame: &[u8],
    mtu_payload: usize,
) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = frame.chunks(mtu_payload.max(1)).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let p = build(pt, i + 1 == n, *seq, timestamp, ssrc, c);
            *seq = seq.wrapping_add(1);
            p
        })
        .collect()
}

/// What [`Reorder`] releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ordered {
    /// The next packet in order: (marker, payload).
    Packet {
        /// Marker bit.
        marker: bool,
        /// Sequence number.
        seq: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Packets were lost before the next one released.
    Lost(u16),
}

/// A reorder buffer keyed by sequence number.
#[derive(Debug, Default)]
pub struct Reorder {
    next: Option<u16>,
    primed: bool,
    held: std::collections::BTreeMap<u16, (bool, Vec<u8>)>,
    /// Packets dropped as duplicates or too late.
    pub late: u64,
}

impl Reorder {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn dist(a: u16, b: u16) -> i32 {
        b.wrapping_sub(a) as i16 as i32
    }

    /// Take one packet; returns what can be released in order.
    pub fn push(&mut self, seq: u16, marker: bool, payload: &[u8]) -> Vec<Ordered> {
        let mut out = Vec::new();
        self.push_into(seq, marker, payload, &mut out);
        out
    }

    /// As [`Reorder::push`], appending to `out` (a buffer the caller reuses).
    pub fn push_into(&mut self, seq: u16, marker: bool, payload: &[u8], out: &mut Vec<Ordered>) {
        if self.primed && self.held.is_empty() && self.next == Some(seq) {
            // The common case: the next packet in order, nothing held.
            out.push(Ordered::Packet {
                marker,
                seq,
                payload: payload.to_vec(),
            });
            self.next = Some(seq.wrapping_add(1));
            return;
        }
        if !self.primed {
            // Hold the first packets so one that overtook an earlier one does not make the
            // earlier one "late".
            let n = *self.next.get_or_insert(seq);
            if Self::dist(n, seq) < 0 {
                self.next = Some(seq);
            }
            self.held
                .entry(seq)
                .or_insert_with(|| (marker, payload.to_vec()));
            if self.held.len() >= PRIME_PACKETS {
                self.primed = true;
                self.drain(out);
            }
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let d = Self::dist(next, seq);
        if d < 0 {
            self.late += 1;
            return;
        }
        if d > 1000 {
            // A jump (device restart): start over from here.
            self.held.clear();
            self.next = Some(seq);
            out.push(Ordered::Lost(0));
        }
        self.held
            .entry(seq)
            .or_insert_with(|| (marker, payload.to_vec()));
        self.drain(out);
        if self.held.len() > REORDER_WINDOW {
            // Give up on the gap: skip to the oldest held packet.
            let n = self.next.unwrap_or(seq);
            let oldest = *self
                .held
                .keys()
                .min_by_key(|k| Self::dist(n, **k))
                .expect("held is not empty");
            let lost = Self::dist(n, oldest).max(0) as u16;
            out.push(Ordered::Lost(lost));
            self.next = Some(oldest);
            self.drain(out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Ordered>) {
        while let Some(n) = self.next {
            match self.held.remove(&n) {
                Some((marker, payload)) => {
                    out.push(Ordered::Packet {
                        marker,
                        seq: n,
                        payload,
                    });
                    self.next = Some(n.wrapping_add(1));
                }
                None => break,
            }
        }
    }
}

/// Prefix a packet with its RFC 4571 length.
pub fn frame_rfc4571(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&(packet.len().min(65_535) as u16).to_be_bytes());
    out.extend_from_slice(&packet[..packet.len().min(65_535)]);
    out
}

/// Cuts an RFC 4571 stream into packets.
#[derive(Debug, Default)]
pub struct Rfc4571 {
    buf: Vec<u8>,
}

impl Rfc4571 {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next packet; `Ok(None)` = need more bytes; `Err` = a length below an RTP header (the
    /// stream is not RFC 4571; close it).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Vec<u8>>, RtpError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let n = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if n < 12 {
            return Err(RtpError::Short(n));
        }
        if self.buf.len() < 2 + n {
            return Ok(None);
        }
        let p = self.buf[2..2 + n].to_vec();
        self.buf.drain(..2 + n);
        Ok(Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_build_round_trip_and_errors() {
        let p = build(96, true, 65535, 90_000, 0x1234_5678, b"abc");
        let q = Packet::parse(&p).unwrap();
        assert_eq!(
            (
                q.marker,
                q.payload_type,
                q.seq,
                q.timestamp,
                q.ssrc,
                q.payload
            ),
            (true, 96, 65535, 90_000, 0x1234_5678, &b"abc"[..])
        );
        assert_eq!(Packet::parse(&p[..11]), Err(RtpError::Short(11)));
        let mut v1 = p.clone();
        v1[0] = 0x40;
        assert_eq!(Packet::parse(&v1), Err(RtpError::Version(1)));
        let mut pad = p.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert_eq!(Packet::parse(&pad), Err(RtpError::Length("padding")));
        let mut cc = p.clone();
        cc[0] |= 0x0F;
        assert_eq!(Packet::parse(&cc), Err(RtpError::Length("CSRC list")));
    }

    #[test]
    fn reorder_restores_order_and_reports_loss() {
        let mut r = Reorder::new();
        let seqs = |o: Vec<Ordered>| -> Vec<i32> {
            o.into_iter()
                .map(|x| match x {
                    Ordered::Packet { seq, .. } => seq as i32,
                    Ordered::Lost(n) => -(n as i32),
                })
                .collect()
        };
        // The first packets are held until three arrived, the earliest first.
        assert_eq!(seqs(r.push(65535, false, b"")), Vec::<i32>::new());
        assert_eq!(seqs(r.push(65534, false, b"")), Vec::<i32>::new());
        assert_eq!(seqs(r.push(0, false, b"")), [65534, 65535, 0]);
        assert!(r.push(65535, false, b"").is_empty(), "duplicate");
        // 1 and 2 never arrive.
        let mut got = Vec::new();
        for s in 3..=(3 + REORDER_WINDOW as u16) {
            got.extend(seqs(r.push(s, false, b"")));
        }
        assert_eq!(got[0], -2, "{got:?}");
        assert_eq!(got[1], 3);
        assert_eq!(*got.last().unwrap(), 3 + REORDER_WINDOW as i32);
    }

    #[test]
    fn rfc4571_framing() {
        let a = build(96, false, 1, 0, 7, &[1; 100]);
        let b = build(96, true, 2, 0, 7, &[2; 1400]);
        let mut stream = frame_rfc4571(&a);
        stream.extend(frame_rfc4571(&b));
        let mut f = Rfc4571::new();
        let mut got = Vec::new();
        for c in stream.chunks(3) {
            f.push(c);
            while let Some(p) = f.next().unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got, [a, b]);
        let mut f = Rfc4571::new();
        f.push(&[0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(f.next(), Err(RtpError::Short(5)));
        let mut seq = 10u16;
        let pk = packetize(96, &mut seq, 1, 2, &[0u8; 3000], 1400);
        assert_eq!((pk.len(), seq), (3, 13));
        assert!(Packet::parse(&pk[2]).unwrap().marker && !Packet::parse(&pk[0]).unwrap().marker);
    }
}

//! JT/T 808 (2013 and 2019) vehicle terminal protocol, sans-IO.
//!
//! * [`frame`] — the byte stream: `0x7e`-delimited frames, escaping (`0x7e ↔ 0x7d 0x02`,
//!   `0x7d ↔ 0x7d 0x01`) and the XOR checksum. [`frame::Deframer`] is fed bytes as they arrive
//!   ([`frame::Deframer::push`]) and yields whole, verified frames ([`frame::Deframer::next_frame`]);
//!   a bad frame is an error for that frame only, and the stream resynchronises at the next
//!   delimiter.
//! * [`header`] — the message header of both versions (2019 adds a version byte and a 10-byte
//!   BCD phone number) with the sub-packet fields.
//! * [`location`] — the 0x0200 location report (alarm and status words, position, additional
//!   items) and its conversion to the shared [`crate::model::Position`].
//! * [`message`] — terminal messages (register 0x0100, auth 0x0102, heartbeat 0x0002, general
//!   response 0x0001, location 0x0200, position answer 0x0201, batch 0x0704) and platform
//!   messages (0x8001, 0x8100, 0x8202; 0x8201 has an empty body).
//! * [`reassembly`] — split messages joined by (id, first serial), bounded and timed out.
//! * [`limits`] — the per-source-address budget of frames sent before authentication.
//!
//! Nothing here reads a clock or touches a socket. Times in location reports are GMT+8 and are
//! converted to UTC milliseconds.

pub mod frame;
pub mod header;
pub mod limits;
pub mod location;
pub mod message;
pub mod reassembly;
#[cfg(not(fuzzing))]
pub mod server;
pub mod session;

/// What can be wrong with JT/T 808 bytes. Each variant names enough to find the frame in a
/// capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Jt808Error {
    /// `0x7d` followed by something other than `0x01` or `0x02`.
    #[error("bad escape 0x7d 0x{0:02x}")]
    BadEscape(u8),
    /// The checksum byte does not match the XOR of the frame.
    #[error("checksum mismatch: frame says 0x{expected:02x}, computed 0x{computed:02x}")]
    BadChecksum {
        /// The byte in the frame.
        expected: u8,
        /// The XOR of header and body.
        computed: u8,
    },
    /// A frame longer than any valid message (the terminal sends garbage or no delimiters).
    #[error("frame longer than {0} bytes")]
    TooLong(usize),
    /// The frame ends before a field it must hold.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The body length in the header disagrees with the frame.
    #[error("body length {declared} in the header, {actual} in the frame")]
    BodyLength {
        /// From the attributes word.
        declared: usize,
        /// Present.
        actual: usize,
    },
    /// A BCD digit above 9.
    #[error("bad BCD byte 0x{0:02x} in {1}")]
    BadBcd(u8, &'static str),
    /// The encryption bits announce a cipher this server does not speak.
    #[error("encrypted body (method bits {0:#05b}) is not supported")]
    Encrypted(u8),
    /// A field value outside its range (e.g. month 13 in a time).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Decode a BCD byte slice to its digit string.
pub fn bcd_to_string(bytes: &[u8], what: &'static str) -> Result<String, Jt808Error> {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let (hi, lo) = (b >> 4, b & 0x0f);
        if hi > 9 || lo > 9 {
            return Err(Jt808Error::BadBcd(b, what));
        }
        s.push((b'0' + hi) as char);
        s.push((b'0' + lo) as char);
    }
    Ok(s)
}

/// Encode a digit string as `len` BCD bytes, left-padded with zeros.
pub fn string_to_bcd(digits: &str, len: usize) -> Vec<u8> {
    let d: Vec<u8> = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|c| c - b'0')
        .collect();
    let mut padded = vec![0u8; (len * 2).saturating_sub(d.len())];
    padded.extend(d.iter().rev().take(len * 2).rev());
    padded.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

/// Decode GBK text (terminals send Chinese plate numbers and names in GBK).
pub fn gbk(bytes: &[u8]) -> String {
    encoding_rs::GBK
        .decode_without_bom_handling(bytes)
        .0
        .into_owned()
}

/// Encode text as GBK.
pub fn to_gbk(s: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(s).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_round_trip() {
        assert_eq!(
            bcd_to_string(&[0x01, 0x38, 0x00, 0x13, 0x80, 0x00], "phone").unwrap(),
            "013800138000"
        );
        assert_eq!(
            string_to_bcd("13800138000", 6),
            vec![0x01, 0x38, 0x00, 0x13, 0x80, 0x00]
        );
        assert!(matches!(
            bcd_to_string(&[0x1a], "phone"),
            Err(Jt808Error::BadBcd(0x1a, "phone"))
        ));
    }

    #[test]
    fn gbk_plates() {
        let b = to_gbk("沪A12345");
        assert_eq!(b[0..2], [0xbb, 0xa6]);
        assert_eq!(gbk(&b), "沪A12345");
    }
}

//! The JT/T 808 message header, 2013 and 2019.
//!
//! 2013: `id(2) attributes(2) phone BCD[6] serial(2) [total(2) index(2)]`.
//! 2019: `id(2) attributes(2) version(1) phone BCD[10] serial(2) [total(2) index(2)]`.
//! Attributes: bits 0–9 body length, 10–12 encryption, 13 sub-packet, 14 the 2019 flag.

use super::{bcd_to_string, string_to_bcd, Jt808Error};

/// Protocol revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// JT/T 808-2013 (and 2011): 6-byte phone.
    V2013,
    /// JT/T 808-2019: version byte, 10-byte phone.
    V2019(u8),
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Message id.
    pub msg_id: u16,
    /// Revision.
    pub version: Version,
    /// Terminal phone number (digits, leading zeros of the BCD field removed).
    pub phone: String,
    /// Message serial number.
    pub serial: u16,
    /// (total packets, this packet's 1-based index) when the message is split.
    pub packet: Option<(u16, u16)>,
    /// Body length from the attributes word.
    pub body_len: usize,
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, Jt808Error> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(Jt808Error::Truncated {
            what,
            need: at + 2,
            have: b.len(),
        })
}

impl Header {
    /// Parse a header from an unescaped frame; returns it and the body slice.
    pub fn parse(frame: &[u8]) -> Result<(Header, &[u8]), Jt808Error> {
        let msg_id = u16_at(frame, 0, "message id")?;
        let attrs = u16_at(frame, 2, "attributes")?;
        let body_len = (attrs & 0x03ff) as usize;
        let encryption = ((attrs >> 10) & 0x07) as u8;
        if encryption != 0 {
            return Err(Jt808Error::Encrypted(encryption));
        }
        let split = attrs & (1 << 13) != 0;
        let (version, phone_at, phone_len) = if attrs & (1 << 14) != 0 {
            let v = *frame.get(4).ok_or(Jt808Error::Truncated {
                what: "version",
                need: 5,
                have: frame.len(),
            })?;
            (Version::V2019(v), 5, 10)
        } else {
            (Version::V2013, 4, 6)
        };
        let phone_bytes =
            frame
                .get(phone_at..phone_at + phone_len)
                .ok_or(Jt808Error::Truncated {
                    what: "phone",
                    need: phone_at + phone_len,
                    have: frame.len(),
                })?;
        let digits = bcd_to_string(phone_bytes, "phone")?;
        let phone = digits.trim_start_matches('0').to_string();
        let serial_at = phone_at + phone_len;
        let serial = u16_at(frame, serial_at, "serial")?;
        let mut body_at = serial_at + 2;
        let packet = if split {
            let total = u16_at(frame, body_at, "packet total")?;
            let index = u16_at(frame, body_at + 2, "packet index")?;
            body_at += 4;
            if total == 0 || index == 0 || index > total {
                return Err(Jt808Error::Invalid("packet index"));
            }
            Some((total, index))
        } else {
            None
        };
        let body = &frame[body_at.min(frame.len())..];
        if body.len() != body_len {
            return Err(Jt808Error::BodyLength {
                declared: body_len,
                actual: body.len(),
            });
        }
        Ok((
            Header {
                msg_id,
                version,
                phone,
                serial,
                packet,
                body_len,
            },
            body,
        ))
    }

    /// Encode a header for `body` (attributes computed from it); returns header + body.
    pub fn encode(msg_id: u16, version: Version, phone: &str, serial: u16, body: &[u8]) -> Vec<u8> {
        let mut attrs = (body.len() as u16) & 0x03ff;
        let mut out = Vec::with_capacity(body.len() + 17);
        out.extend_from_slice(&msg_id.to_be_bytes());
        match version {
            Version::V2013 => {
                out.extend_from_slice(&attrs.to_be_bytes());
                out.extend_from_slice(&string_to_bcd(phone, 6));
            }
            Version::V2019(v) => {
                attrs |= 1 << 14;
                out.extend_from_slice(&attrs.to_be_bytes());
                out.push(v);
                out.extend_from_slice(&string_to_bcd(phone, 10));
            }
        }
        out.extend_from_slice(&serial.to_be_bytes());
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_round_trip() {
        for v in [Version::V2013, Version::V2019(1)] {
            let bytes = Header::encode(0x0200, v, "13800138000", 7, &[1, 2, 3]);
            let (h, body) = Header::parse(&bytes).unwrap();
            assert_eq!(
                (h.msg_id, h.version, h.phone.as_str(), h.serial, h.packet),
                (0x0200, v, "13800138000", 7, None)
            );
            assert_eq!(body, &[1, 2, 3]);
        }
    }

    #[test]
    fn sub_packets_and_errors() {
        let mut bytes = Header::encode(0x0704, Version::V2013, "123", 1, &[]);
        bytes[2] |= 0x20; // sub-packet bit
        bytes.extend_from_slice(&[0, 2, 0, 1, 9]);
        bytes[3] = 1; // body length 1
        let (h, body) = Header::parse(&bytes).unwrap();
        assert_eq!(h.packet, Some((2, 1)));
        assert_eq!(body, &[9]);
        assert!(matches!(
            Header::parse(&bytes[..5]),
            Err(Jt808Error::Truncated { .. })
        ));
        let mut wrong_len = Header::encode(0x0002, Version::V2013, "1", 1, &[]);
        wrong_len[3] = 5;
        assert!(matches!(
            Header::parse(&wrong_len),
            Err(Jt808Error::BodyLength {
                declared: 5,
                actual: 0
            })
        ));
        let mut enc = Header::encode(0x0002, Version::V2013, "1", 1, &[]);
        enc[2] |= 0x04; // RSA bit
        assert!(matches!(Header::parse(&enc), Err(Jt808Error::Encrypted(1))));
    }
}

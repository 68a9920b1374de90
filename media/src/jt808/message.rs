//! Terminal messages and platform replies.

use super::header::{Header, Version};
use super::location::LocationReport;
use super::{gbk, to_gbk, Jt808Error};

/// Terminal general response.
pub const TERMINAL_RESPONSE: u16 = 0x0001;
/// Heartbeat.
pub const HEARTBEAT: u16 = 0x0002;
/// Register.
pub const REGISTER: u16 = 0x0100;
/// Authenticate.
pub const AUTH: u16 = 0x0102;
/// Location report.
pub const LOCATION: u16 = 0x0200;
/// Batch location upload.
pub const LOCATION_BATCH: u16 = 0x0704;
/// Platform general response.
pub const PLATFORM_RESPONSE: u16 = 0x8001;
/// Register response.
pub const REGISTER_RESPONSE: u16 = 0x8100;
/// Query position.
pub const QUERY_POSITION: u16 = 0x8201;
/// Temporary position tracking.
pub const TRACK_POSITION: u16 = 0x8202;
/// Answer to a position query.
pub const QUERY_POSITION_RESPONSE: u16 = 0x0201;

/// A terminal registration (0x0100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Province id.
    pub province: u16,
    /// City id.
    pub city: u16,
    /// Manufacturer id.
    pub maker: String,
    /// Terminal model.
    pub model: String,
    /// Terminal id.
    pub terminal_id: String,
    /// Plate colour (0 = no plate).
    pub plate_color: u8,
    /// Plate number or VIN.
    pub plate: String,
}

/// A decoded terminal message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// 0x0001: the terminal's answer to a platform message.
    TerminalResponse {
        /// Serial of the platform message.
        reply_serial: u16,
        /// Id of the platform message.
        reply_id: u16,
        /// 0 ok, 1 failed, 2 wrong message, 3 unsupported.
        result: u8,
    },
    /// 0x0002.
    Heartbeat,
    /// 0x0100.
    Register(Register),
    /// 0x0102 (2019 adds IMEI and software version).
    Auth {
        /// The auth code the platform issued.
        code: String,
        /// IMEI (2019).
        imei: Option<String>,
        /// Software version (2019).
        software_version: Option<String>,
    },
    /// 0x0200.
    Location(LocationReport),
    /// 0x0201: the answer to a 0x8201 query.
    QueryPositionResponse {
        /// Serial of the query.
        reply_serial: u16,
        /// The position.
        report: LocationReport,
    },
    /// 0x0704: `backfill` is true for blind-area data (type 1), which goes to history only.
    LocationBatch {
        /// Blind-area backfill.
        backfill: bool,
        /// The reports.
        reports: Vec<LocationReport>,
    },
    /// Any other id: answered with "unsupported".
    Unknown(u16),
}

fn text(b: &[u8]) -> String {
    gbk(b).trim_end_matches('\0').trim().to_string()
}

impl Message {
    /// Decode one unescaped, checksum-verified frame. Sub-packets are returned as
    /// [`Message::Unknown`] of their id until reassembly lands.
    pub fn decode(frame: &[u8]) -> Result<(Header, Message), Jt808Error> {
        let (h, body) = Header::parse(frame)?;
        if h.packet.is_some_and(|(total, _)| total > 1) {
            return Ok((h.clone(), Message::Unknown(h.msg_id)));
        }
        let m = Self::decode_body(&h, body)?;
        Ok((h, m))
    }

    /// Decode a body (of a single frame, or of a reassembled split message) under its header.
    pub fn decode_body(h: &Header, body: &[u8]) -> Result<Message, Jt808Error> {
        let need = |n: usize, what: &'static str| {
            if body.len() < n {
                Err(Jt808Error::Truncated {
                    what,
                    need: n,
                    have: body.len(),
                })
            } else {
                Ok(())
            }
        };
        let m = match h.msg_id {
            TERMINAL_RESPONSE => {
                need(5, "terminal response")?;
                Message::TerminalResponse {
                    reply_serial: u16::from_be_bytes([body[0], body[1]]),
                    reply_id: u16::from_be_bytes([body[2], body[3]]),
                    result: body[4],
                }
            }
            HEARTBEAT => Message::Heartbeat,
            REGISTER => {
                // 2013: maker 5, model 20, id 7; 2019: maker 11, model 30, id 30.
                let (mk, md, id) = match h.version {
                    Version::V2013 => (5, 20, 7),
                    Version::V2019(_) => (11, 30, 30),
                };
                let fixed = 4 + mk + md + id + 1;
                need(fixed, "register")?;
                let mut at = 4;
                let mut take = |n: usize| {
                    let s = &body[at..at + n];
                    at += n;
                    s
                };
                let maker = text(take(mk));
                let model = text(take(md));
                let terminal_id = text(take(id));
                Message::Register(Register {
                    province: u16::from_be_bytes([body[0], body[1]]),
                    city: u16::from_be_bytes([body[2], body[3]]),
                    maker,
                    model,
                    terminal_id,
                    plate_color: body[fixed - 1],
                    plate: text(&body[fixed..]),
                })
            }
            AUTH => match h.version {
                Version::V2013 => Message::Auth {
                    code: text(body),
                    imei: None,
                    software_version: None,
                },
                Version::V2019(_) => {
                    need(1, "auth code length")?;
                    let n = body[0] as usize;
                    need(1 + n + 15 + 20, "auth")?;
                    Message::Auth {
                        code: text(&body[1..1 + n]),
                        imei: Some(text(&body[1 + n..16 + n])),
                        software_version: Some(text(&body[16 + n..36 + n])),
                    }
                }
            },
            LOCATION => Message::Location(LocationReport::parse(body)?),
            QUERY_POSITION_RESPONSE => {
                need(2, "query position response")?;
                Message::QueryPositionResponse {
                    reply_serial: u16::from_be_bytes([body[0], body[1]]),
                    report: LocationReport::parse(&body[2..])?,
                }
            }
            LOCATION_BATCH => {
                need(3, "batch")?;
                let count = u16::from_be_bytes([body[0], body[1]]) as usize;
                let backfill = body[2] == 1;
                let mut reports = Vec::with_capacity(count.min(64));
                let mut at = 3;
                for _ in 0..count {
                    need(at + 2, "batch item length")?;
                    let n = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
                    need(at + 2 + n, "batch item")?;
                    reports.push(LocationReport::parse(&body[at + 2..at + 2 + n])?);
                    at += 2 + n;
                }
                Message::LocationBatch { backfill, reports }
            }
            other => Message::Unknown(other),
        };
        Ok(m)
    }
}

/// Platform general response (0x8001) body: replied serial, replied id, result
/// (0 ok, 1 failed, 2 wrong message, 3 unsupported, 4 alarm acknowledged).
pub fn platform_response(reply_serial: u16, reply_id: u16, result: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(5);
    b.extend_from_slice(&reply_serial.to_be_bytes());
    b.extend_from_slice(&reply_id.to_be_bytes());
    b.push(result);
    b
}

/// Register response (0x8100) body: replied serial, result (0 ok, 1 vehicle registered, 2 no
/// such vehicle, 3 terminal registered, 4 no such terminal), and the auth code on success.
pub fn register_response(reply_serial: u16, result: u8, auth_code: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 + auth_code.len());
    b.extend_from_slice(&reply_serial.to_be_bytes());
    b.push(result);
    if result == 0 {
        b.extend_from_slice(&to_gbk(auth_code));
    }
    b
}

/// Temporary tracking (0x8202) body: report every `interval_s` seconds for `duration_s`
/// seconds (interval 0 stops tracking).
pub fn track_position(interval_s: u16, duration_s: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(6);
    b.extend_from_slice(&interval_s.to_be_bytes());
    b.extend_from_slice(&duration_s.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::super::frame;
    use super::*;

    fn roundtrip(id: u16, v: Version, body: &[u8]) -> (Header, Message) {
        let wire = frame::encode(&Header::encode(id, v, "13800138000", 42, body));
        let mut d = frame::Deframer::new();
        d.push(&wire);
        Message::decode(&d.next_frame().unwrap().unwrap()).unwrap()
    }

    #[test]
    fn register_both_versions() {
        let mut b = vec![0, 31, 0, 115];
        b.extend_from_slice(b"HK001");
        b.extend_from_slice(&[b'M'; 20]);
        b.extend_from_slice(b"T000001");
        b.push(1);
        b.extend_from_slice(&to_gbk("沪A12345"));
        let (h, m) = roundtrip(REGISTER, Version::V2013, &b);
        assert_eq!(h.phone, "13800138000");
        let Message::Register(r) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (
                r.maker.as_str(),
                r.terminal_id.as_str(),
                r.plate.as_str(),
                r.plate_color
            ),
            ("HK001", "T000001", "沪A12345", 1)
        );
        // The 2013 body is too short for the 2019 layout and is refused, not misread.
        let wire = Header::encode(REGISTER, Version::V2019(1), "1", 1, &b);
        assert!(matches!(
            Message::decode(&wire),
            Err(Jt808Error::Truncated {
                what: "register",
                ..
            })
        ));
        let mut b19 = vec![0, 31, 0, 115];
        b19.extend_from_slice(b"HK001000000");
        b19.extend_from_slice(&[b'M'; 30]);
        let mut id = b"T2019-0001".to_vec();
        id.resize(30, 0);
        b19.extend_from_slice(&id);
        b19.push(2);
        b19.extend_from_slice(&to_gbk("沪B54321"));
        let (h, m) = roundtrip(REGISTER, Version::V2019(1), &b19);
        assert_eq!(h.version, Version::V2019(1));
        let Message::Register(r) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (r.terminal_id.as_str(), r.plate.as_str()),
            ("T2019-0001", "沪B54321")
        );
    }

    #[test]
    fn auth_location_batch() {
        let (_, m) = roundtrip(AUTH, Version::V2013, b"AUTH-7788");
        assert_eq!(
            m,
            Message::Auth {
                code: "AUTH-7788".into(),
                imei: None,
                software_version: None
            }
        );
        let mut a19 = vec![4];
        a19.extend_from_slice(b"abcd");
        a19.extend_from_slice(b"860000000000001");
        a19.extend_from_slice(&[b'1'; 20]);
        let (_, m) = roundtrip(AUTH, Version::V2019(1), &a19);
        assert!(
            matches!(m, Message::Auth { ref imei, .. } if imei.as_deref() == Some("860000000000001"))
        );
        let body = super::super::location::tests::sample_body();
        let (_, m) = roundtrip(LOCATION, Version::V2013, &body);
        assert!(matches!(m, Message::Location(ref r) if r.alarm == 1));
        let mut batch = vec![0, 2, 1];
        for _ in 0..2 {
            batch.extend_from_slice(&(body.len() as u16).to_be_bytes());
            batch.extend_from_slice(&body);
        }
        let (_, m) = roundtrip(LOCATION_BATCH, Version::V2013, &batch);
        assert!(
            matches!(m, Message::LocationBatch { backfill: true, ref reports } if reports.len() == 2)
        );
        batch[1] = 3; // claims three
        let wire = Header::encode(LOCATION_BATCH, Version::V2013, "1", 1, &batch);
        assert!(matches!(
            Message::decode(&wire),
            Err(Jt808Error::Truncated { .. })
        ));
        assert_eq!(
            roundtrip(0x0900, Version::V2013, &[1]).1,
            Message::Unknown(0x0900)
        );
    }

    #[test]
    fn position_query_answer() {
        let mut b = vec![0, 9];
        b.extend_from_slice(&super::super::location::tests::sample_body());
        let (_, m) = roundtrip(QUERY_POSITION_RESPONSE, Version::V2013, &b);
        assert!(
            matches!(m, Message::QueryPositionResponse { reply_serial: 9, ref report } if report.fix_valid())
        );
        assert_eq!(track_position(10, 600), vec![0, 10, 0, 0, 2, 88]);
    }

    #[test]
    fn replies() {
        assert_eq!(platform_response(42, 0x0200, 0), vec![0, 42, 0x02, 0x00, 0]);
        assert_eq!(
            register_response(7, 0, "AUTH"),
            vec![0, 7, 0, b'A', b'U', b'T', b'H']
        );
        assert_eq!(register_response(7, 4, "AUTH"), vec![0, 7, 4]);
    }
}

//! One terminal connection's protocol state, sans-IO.
//!
//! The I/O layer feeds received bytes to [`Session::on_bytes`] and carries out the returned
//! [`Action`]s: send bytes, ask storage to register or authenticate the terminal (then hand the
//! answer back with [`Session::registered`] / [`Session::authenticated`]), publish unit events,
//! or close. Rules:
//!
//! * A terminal must authenticate (0x0102) before its positions count; until then location,
//!   batch and heartbeat messages are answered with "failed" (result 1) and dropped.
//! * Every frame before authentication counts (registrations and authentications too): after
//!   [`MAX_UNAUTHENTICATED`] of them, or [`MAX_IDENTITY_ATTEMPTS`] registrations and
//!   authentications, the connection is closed. The I/O layer also charges them to the source
//!   address ([`Session::unauthenticated_frames`]).
//! * A location report whose additional item overruns the body keeps its fix and is answered
//!   with success; the dropped item is reported ([`Action::ItemsDropped`]) for a metric.
//! * One connection speaks for one terminal: a frame with another phone number closes it.
//! * A frame whose header can be read but whose body (or checksum) is wrong is answered with a
//!   general response, result 2 ("wrong message"); a frame whose header cannot be read closes the
//!   connection, as do [`MAX_BAD_FRAMES`] bad frames in a row.

use super::frame::{self, Deframer};
use super::header::{Header, Version};
use super::location::LocationReport;
use super::message::{self, Message, Register};
use super::reassembly::Reassembler;
use super::Jt808Error;
use crate::model::{PositionSource, UnitEvent};

/// Bad frames in a row after which the connection is closed.
pub const MAX_BAD_FRAMES: u32 = 8;
/// Messages before authentication after which the connection is closed.
pub const MAX_UNAUTHENTICATED: u32 = 32;
/// Registrations and authentications one connection may try before it is authenticated.
pub const MAX_IDENTITY_ATTEMPTS: u32 = 4;

/// What the I/O layer must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these (framed) bytes.
    Send(Vec<u8>),
    /// Register the terminal; answer with [`Session::registered`].
    Register {
        /// Serial of the 0x0100.
        serial: u16,
        /// Terminal phone.
        phone: String,
        /// What it said.
        register: Register,
    },
    /// Check the auth code; answer with [`Session::authenticated`].
    Authenticate {
        /// Serial of the 0x0102.
        serial: u16,
        /// Terminal phone.
        phone: String,
        /// The code.
        code: String,
    },
    /// Publish to dispatch.
    Event(UnitEvent),
    /// Log a malformed frame that was answered (terminal phone if known, error, hex excerpt).
    Malformed {
        /// Error.
        error: String,
        /// Up to 64 bytes of the frame, hex.
        excerpt: String,
    },
    /// A location report kept its fix but lost additional items that overran its body: count
    /// them.
    ItemsDropped {
        /// Items dropped.
        count: u32,
        /// Up to 64 bytes of the frame, hex.
        excerpt: String,
    },
    /// Close the connection (reason, for the log, with a hex excerpt when a frame caused it).
    Close(String),
}

/// Protocol state of one connection.
#[derive(Debug, Default)]
pub struct Session {
    deframer: Deframer,
    reassembler: Reassembler,
    phone: Option<String>,
    version: Option<Version>,
    unit_id: Option<String>,
    serial: u16,
    bad_in_a_row: u32,
    unauthenticated: u32,
    unauthenticated_total: u64,
    frames_total: u64,
    identity_attempts: u32,
    closed: bool,
}

/// Bytes of a frame always shown: no message body starts before them (a 2013 header is 12
/// bytes, a 2019 one 17).
const HEADER_SHOWN: usize = 12;

/// Hex of up to 64 bytes of a frame (its inner bytes, from the message id), for the log. The
/// body of an authentication (0x0102) or registration answer (0x8100) carries an auth code and
/// is redacted: only the first 12 bytes (the shortest header) are shown.
pub fn excerpt(b: &[u8]) -> String {
    let secret = b.len() >= 2
        && matches!(
            u16::from_be_bytes([b[0], b[1]]),
            message::AUTH | message::REGISTER_RESPONSE
        );
    if secret && b.len() > HEADER_SHOWN {
        return format!(
            "{}…(body redacted, {} bytes)",
            hex_string(&b[..HEADER_SHOWN]),
            b.len() - HEADER_SHOWN
        );
    }
    let mut s = hex_string(&b[..b.len().min(64)]);
    if b.len() > 64 {
        s.push('…');
    }
    s
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Session {
    /// A fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The terminal's phone number, once a frame named it.
    pub fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }

    /// The unit, once authenticated.
    pub fn unit_id(&self) -> Option<&str> {
        self.unit_id.as_deref()
    }

    /// Frames received while not authenticated, over the connection's life (the I/O layer
    /// charges the increase to the source address before acting on the frames).
    pub fn unauthenticated_frames(&self) -> u64 {
        self.unauthenticated_total
    }

    /// Whole frames received (good or bad) over the connection's life: the I/O layer's idle
    /// timer restarts only when this grows, never on stray bytes.
    pub fn frames(&self) -> u64 {
        self.frames_total
    }

    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }

    /// Frame a platform message to this terminal.
    pub fn platform_message(&mut self, msg_id: u16, body: &[u8]) -> Vec<u8> {
        let serial = self.next_serial();
        let phone = self.phone.clone().unwrap_or_default();
        let v = self.version.unwrap_or(Version::V2013);
        frame::encode(&Header::encode(msg_id, v, &phone, serial, body))
    }

    fn general(&mut self, h: &Header, result: u8) -> Action {
        let body = message::platform_response(h.serial, h.msg_id, result);
        Action::Send(self.platform_message(message::PLATFORM_RESPONSE, &body))
    }

    /// Take in received bytes at `now_ms`.
    pub fn on_bytes(&mut self, bytes: &[u8], now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.deframer.push(bytes);
        while let Some(r) = self.deframer.next_frame() {
            self.frames_total += 1;
            match r {
                Ok(f) => {
                    self.bad_in_a_row = 0;
                    self.on_frame(&f, now_ms, &mut out);
                }
                Err(e) => self.on_bad_frame(e, &mut out),
            }
            if self.closed {
                break;
            }
        }
        out
    }

    fn close(&mut self, reason: String, out: &mut Vec<Action>) {
        self.closed = true;
        out.push(Action::Close(reason));
    }

    fn on_bad_frame(&mut self, e: Jt808Error, out: &mut Vec<Action>) {
        self.bad_in_a_row += 1;
        let raw = self.deframer.take_last_bad().unwrap_or_default();
        if matches!(e, Jt808Error::TooLong(_)) {
            return self.close(format!("{e}"), out);
        }
        let plain = frame::unescape_lenient(&raw);
        match Header::parse(&plain) {
            Ok((h, _)) if self.phone.as_deref().is_none_or(|p| p == h.phone) => {
                out.push(Action::Malformed {
                    error: e.to_string(),
                    excerpt: excerpt(&raw),
                });
                let a = self.general(&h, 2);
                out.push(a);
            }
            _ => return self.close(format!("unreadable frame ({e}): {}", excerpt(&raw)), out),
        }
        if self.bad_in_a_row >= MAX_BAD_FRAMES {
            self.close(format!("{MAX_BAD_FRAMES} bad frames in a row"), out);
        }
    }

    fn on_frame(&mut self, f: &[u8], now_ms: i64, out: &mut Vec<Action>) {
        let (h, body) = match Header::parse(f) {
            Ok(x) => x,
            Err(e) => return self.close(format!("bad header ({e}): {}", excerpt(f)), out),
        };
        match &self.phone {
            Some(p) if *p != h.phone => {
                return self.close(
                    format!("frame from terminal {} on the connection of {p}", h.phone),
                    out,
                )
            }
            Some(_) => {}
            None => self.phone = Some(h.phone.clone()),
        }
        self.version = Some(h.version);
        if self.unit_id.is_none() {
            self.unauthenticated += 1;
            self.unauthenticated_total += 1;
            if self.unauthenticated > MAX_UNAUTHENTICATED {
                return self.close("terminal keeps sending without authenticating".into(), out);
            }
        }
        let msg = if h.packet.is_some_and(|(total, _)| total > 1) {
            match self.reassembler.push(&h, body, now_ms) {
                Some(whole) => Message::decode_body(&h, &whole),
                None => {
                    // Each part is acknowledged; the whole message is handled when complete.
                    let a = self.general(&h, 0);
                    out.push(a);
                    return;
                }
            }
        } else {
            Message::decode_body(&h, body)
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                out.push(Action::Malformed {
                    error: e.to_string(),
                    excerpt: excerpt(f),
                });
                let a = self.general(&h, 2);
                out.push(a);
                return;
            }
        };
        let dropped: u32 = match &msg {
            Message::Location(r) | Message::QueryPositionResponse { report: r, .. } => {
                u32::from(r.dropped_items)
            }
            Message::LocationBatch { reports, .. } => {
                reports.iter().map(|r| u32::from(r.dropped_items)).sum()
            }
            _ => 0,
        };
        if dropped > 0 {
            out.push(Action::ItemsDropped {
                count: dropped,
                excerpt: excerpt(f),
            });
        }
        self.on_message(&h, msg, out);
    }

    fn on_message(&mut self, h: &Header, msg: Message, out: &mut Vec<Action>) {
        let phone = h.phone.clone();
        if matches!(msg, Message::Register(_) | Message::Auth { .. }) && self.unit_id.is_none() {
            self.identity_attempts += 1;
            if self.identity_attempts > MAX_IDENTITY_ATTEMPTS {
                return self.close(
                    format!("more than {MAX_IDENTITY_ATTEMPTS} registrations or authentications"),
                    out,
                );
            }
        }
        match msg {
            Message::Register(register) => out.push(Action::Register {
                serial: h.serial,
                phone,
                register,
            }),
            Message::Auth { code, .. } => out.push(Action::Authenticate {
                serial: h.serial,
                phone,
                code,
            }),
            Message::TerminalResponse { .. } => {}
            Message::Unknown(_) => {
                let a = self.general(h, 3);
                out.push(a);
            }
            Message::Heartbeat
            | Message::Location(_)
            | Message::LocationBatch { .. }
            | Message::QueryPositionResponse { .. } => {
                let Some(unit) = self.unit_id.clone() else {
                    let a = self.general(h, 1);
                    out.push(a);
                    return;
                };
                let a = self.general(h, 0);
                out.push(a);
                match msg {
                    Message::Heartbeat => out.push(Action::Event(UnitEvent::Online {
                        unit_id: unit,
                        source: PositionSource::Jt808,
                    })),
                    Message::Location(r) | Message::QueryPositionResponse { report: r, .. } => {
                        out.push(position(&unit, &r, true));
                    }
                    Message::LocationBatch { backfill, reports } => {
                        for r in &reports {
                            out.push(position(&unit, r, !backfill));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Answer a registration: `Ok(code)` or `Err(result)` (1–4 per 0x8100).
    pub fn registered(&mut self, serial: u16, result: Result<String, u8>) -> Vec<u8> {
        let body = match &result {
            Ok(code) => message::register_response(serial, 0, code),
            Err(r) => message::register_response(serial, *r, ""),
        };
        self.platform_message(message::REGISTER_RESPONSE, &body)
    }

    /// Answer an authentication: the unit when the code matched.
    pub fn authenticated(&mut self, serial: u16, unit: Option<String>) -> Vec<Action> {
        let ok = unit.is_some();
        let body = message::platform_response(serial, message::AUTH, if ok { 0 } else { 1 });
        let mut out = vec![Action::Send(
            self.platform_message(message::PLATFORM_RESPONSE, &body),
        )];
        if let Some(u) = unit {
            self.unit_id = Some(u.clone());
            self.unauthenticated = 0;
            self.identity_attempts = 0;
            out.push(Action::Event(UnitEvent::Online {
                unit_id: u,
                source: PositionSource::Jt808,
            }));
        }
        out
    }

    /// What to publish when the connection ends.
    pub fn on_close(&self) -> Option<UnitEvent> {
        self.unit_id.as_ref().map(|u| UnitEvent::Offline {
            unit_id: u.clone(),
            source: PositionSource::Jt808,
        })
    }
}

fn position(unit: &str, r: &LocationReport, live: bool) -> Action {
    Action::Event(UnitEvent::Position {
        position: r.to_position(unit),
        live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jt808::header::Version;

    const PHONE: &str = "13800138000";

    fn wire(id: u16, serial: u16, body: &[u8]) -> Vec<u8> {
        frame::encode(&Header::encode(id, Version::V2013, PHONE, serial, body))
    }

    fn location_body(lat_e6: u32, lon_e6: u32, alarm: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&alarm.to_be_bytes());
        b.extend_from_slice(&0x0000_0002u32.to_be_bytes()); // fix valid
        b.extend_from_slice(&lat_e6.to_be_bytes());
        b.extend_from_slice(&lon_e6.to_be_bytes());
        b.extend_from_slice(&5u16.to_be_bytes());
        b.extend_from_slice(&300u16.to_be_bytes());
        b.extend_from_slice(&90u16.to_be_bytes());
        b.extend_from_slice(&[0x26, 0x11, 0x22, 0x11, 0x30, 0x00]);
        b
    }

    fn replies(actions: &[Action]) -> Vec<(u16, Vec<u8>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => {
                    let mut d = Deframer::new();
                    d.push(b);
                    let f = d.next_frame().unwrap().unwrap();
                    let (h, body) = Header::parse(&f).unwrap();
                    Some((h.msg_id, body.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn positions_count_only_after_authentication() {
        let mut s = Session::new();
        let a = s.on_bytes(
            &wire(0x0200, 1, &location_body(31_230_000, 121_470_000, 0)),
            0,
        );
        let r = replies(&a);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, message::PLATFORM_RESPONSE);
        assert_eq!(r[0].1[4], 1, "failed before auth");
        assert!(!a.iter().any(|x| matches!(x, Action::Event(_))));

        let a = s.on_bytes(&wire(0x0102, 2, b"CODE1234"), 0);
        assert!(
            matches!(&a[..], [Action::Authenticate { code, serial: 2, .. }] if code == "CODE1234")
        );
        let a = s.authenticated(2, Some("veh-1".into()));
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::Event(UnitEvent::Online { .. }))));

        let a = s.on_bytes(
            &wire(0x0200, 3, &location_body(31_230_000, 121_470_000, 1)),
            0,
        );
        assert_eq!(replies(&a)[0].1[4], 0);
        let ev = a.iter().find_map(|x| match x {
            Action::Event(UnitEvent::Position { position, live }) => {
                Some((position.clone(), *live))
            }
            _ => None,
        });
        let (p, live) = ev.unwrap();
        assert!(live);
        assert_eq!(
            (p.unit_id.as_str(), p.lat, p.lon, p.alarm_flags),
            ("veh-1", 31.23, 121.47, 1)
        );
        assert_eq!(
            s.on_close(),
            Some(UnitEvent::Offline {
                unit_id: "veh-1".into(),
                source: PositionSource::Jt808
            })
        );
    }

    #[test]
    fn bad_checksum_is_answered_with_result_2() {
        let mut s = Session::new();
        let mut w = wire(0x0002, 7, &[]);
        let n = w.len();
        w[n - 2] ^= 0x55; // break the checksum
        let a = s.on_bytes(&w, 0);
        assert!(a.iter().any(|x| matches!(x, Action::Malformed { .. })));
        let r = replies(&a);
        assert_eq!(r[0].0, message::PLATFORM_RESPONSE);
        assert_eq!(&r[0].1[..], &[0, 7, 0, 2, 2]);
    }

    #[test]
    fn auth_codes_never_reach_the_log_excerpts() {
        let code = b"SECRETCODE123456";
        let code_hex: String = code.iter().map(|x| format!("{x:02x}")).collect();
        // A 0x0102 whose checksum is wrong: answered as malformed, excerpt without the code.
        let mut w = wire(message::AUTH, 1, code);
        let n = w.len();
        w[n - 2] ^= 0x55;
        let mut s = Session::new();
        let a = s.on_bytes(&w, 0);
        let Some(Action::Malformed { excerpt: e, .. }) =
            a.iter().find(|x| matches!(x, Action::Malformed { .. }))
        else {
            panic!("{a:?}")
        };
        assert!(e.contains("redacted") && !e.contains(&code_hex[..8]), "{e}");
        // A 0x8100 sent to us: the same.
        let body = message::register_response(1, 0, "SECRETCODE123456");
        let f = Header::encode(message::REGISTER_RESPONSE, Version::V2013, PHONE, 2, &body);
        let e = excerpt(&f);
        assert!(e.starts_with("8100") && !e.contains(&code_hex[..8]), "{e}");
        // Other frames are shown as they are.
        assert!(excerpt(&[0x02, 0x00, 0xab]).contains("0200ab"));
    }

    #[test]
    fn unreadable_frames_close_the_connection_with_an_excerpt() {
        let mut s = Session::new();
        let a = s.on_bytes(&[0x7e, 0x01, 0x02, 0x03, 0x7e], 0);
        assert!(
            matches!(&a[..], [Action::Close(r)] if r.contains("0102")),
            "{a:?}"
        );
        assert!(
            s.on_bytes(&wire(0x0002, 1, &[]), 0).is_empty(),
            "closed sessions ignore input"
        );
    }

    #[test]
    fn another_terminal_on_the_same_connection_is_refused() {
        let mut s = Session::new();
        s.on_bytes(&wire(0x0002, 1, &[]), 0);
        let other = frame::encode(&Header::encode(
            0x0002,
            Version::V2013,
            "13900000000",
            2,
            &[],
        ));
        let a = s.on_bytes(&other, 0);
        assert!(matches!(a.last(), Some(Action::Close(r)) if r.contains("13900000000")));
    }

    #[test]
    fn truncated_body_gets_result_2_and_the_session_goes_on() {
        let mut s = Session::new();
        s.on_bytes(&wire(0x0102, 1, b"C"), 0);
        s.authenticated(1, Some("v".into()));
        let a = s.on_bytes(&wire(0x0200, 2, &[0, 0, 0]), 0);
        assert_eq!(replies(&a)[0].1[4], 2);
        let a = s.on_bytes(&wire(0x0002, 3, &[]), 0);
        assert_eq!(replies(&a)[0].1[4], 0);
    }

    #[test]
    fn garbage_between_frames_is_skipped() {
        let mut s = Session::new();
        s.on_bytes(&wire(0x0102, 1, b"C"), 0);
        s.authenticated(1, Some("v".into()));
        let mut bytes = b"GARBAGE".to_vec();
        bytes.extend(wire(0x0002, 2, &[]));
        let a = s.on_bytes(&bytes, 0);
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::Event(UnitEvent::Online { .. }))));
    }

    /// The fixture's frame, from its hex file (`#` lines are comments).
    fn fixture(text: &str) -> Vec<u8> {
        let h: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<String>()
            .split_whitespace()
            .collect();
        hex::decode(h).expect("hex fixture")
    }

    #[test]
    fn an_item_overrunning_the_body_loses_the_item_not_the_fix() {
        let bytes = fixture(include_str!("testdata/0200_item_overruns_body.hex"));
        let phone = "013912345678";
        let mut s = Session::new();
        s.on_bytes(
            &frame::encode(&Header::encode(0x0102, Version::V2013, phone, 1, b"C")),
            0,
        );
        s.authenticated(1, Some("veh".into()));
        let a = s.on_bytes(&bytes, 0);
        // Answered with success (0x8001: serial 0x0021, id 0x0200, result 0).
        let r = replies(&a);
        assert_eq!(r.len(), 1, "{a:?}");
        assert_eq!(
            (r[0].0, &r[0].1[..]),
            (message::PLATFORM_RESPONSE, &[0, 0x21, 2, 0, 0][..])
        );
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::ItemsDropped { count: 1, .. })));
        let p = a
            .iter()
            .find_map(|x| match x {
                Action::Event(UnitEvent::Position { position, live }) => {
                    Some((position.clone(), *live))
                }
                _ => None,
            })
            .expect("the fix is kept");
        assert!(p.1);
        assert!((p.0.lat - 31.230416).abs() < 1e-9 && (p.0.lon - 121.473701).abs() < 1e-9);
        assert_eq!(p.0.time_ms, 1_795_311_000_000);
    }

    #[test]
    fn a_real_devices_overrunning_item_loses_the_item_not_the_fix() {
        let bytes = fixture(include_str!(
            "testdata/0200_real_device_empty_items_overrun.hex"
        ));
        let mut s = Session::new();
        s.on_bytes(
            &frame::encode(&Header::encode(
                0x0102,
                Version::V2013,
                "202000129707",
                1,
                b"C",
            )),
            0,
        );
        s.authenticated(1, Some("veh".into()));
        let a = s.on_bytes(&bytes, 0);
        let r = replies(&a);
        assert_eq!(r.len(), 1, "{a:?}");
        assert_eq!(
            (r[0].0, &r[0].1[..]),
            (message::PLATFORM_RESPONSE, &[0, 0x1c, 2, 0, 0][..]),
            "answered with success"
        );
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::ItemsDropped { count: 1, .. })));
        let p = a
            .iter()
            .find_map(|x| match x {
                Action::Event(UnitEvent::Position { position, .. }) => Some(position.clone()),
                _ => None,
            })
            .expect("the fix is kept");
        assert!((p.lat + 27.455656).abs() < 1e-9 && (p.lon - 153.029616).abs() < 1e-9);
        assert_eq!(p.time_ms, 1_604_344_653_000);
    }

    #[test]
    fn identity_attempts_count_before_authentication() {
        let mut s = Session::new();
        for serial in 1..=MAX_IDENTITY_ATTEMPTS as u16 {
            let a = s.on_bytes(&wire(0x0102, serial, b"WRONG"), 0);
            assert!(matches!(&a[..], [Action::Authenticate { .. }]), "{a:?}");
            s.authenticated(serial, None);
        }
        assert_eq!(s.unauthenticated_frames(), u64::from(MAX_IDENTITY_ATTEMPTS));
        let a = s.on_bytes(&wire(0x0102, 99, b"GUESS"), 0);
        assert!(matches!(&a[..], [Action::Close(_)]), "{a:?}");

        // Any frame counts toward the unauthenticated limit.
        let mut s = Session::new();
        for serial in 0..MAX_UNAUTHENTICATED as u16 {
            let a = s.on_bytes(&wire(0x0002, serial, &[]), 0);
            assert_eq!(replies(&a)[0].1[4], 1);
        }
        let a = s.on_bytes(&wire(0x0002, 999, &[]), 0);
        assert!(matches!(a.last(), Some(Action::Close(_))), "{a:?}");
    }

    #[test]
    fn blind_area_batch_is_history_only() {
        let mut s = Session::new();
        s.on_bytes(&wire(0x0102, 1, b"C"), 0);
        s.authenticated(1, Some("v".into()));
        let item = location_body(31_230_000, 121_470_000, 0);
        let mut body = vec![0, 2, 1];
        for _ in 0..2 {
            body.extend_from_slice(&(item.len() as u16).to_be_bytes());
            body.extend_from_slice(&item);
        }
        let a = s.on_bytes(&wire(0x0704, 2, &body), 0);
        let lives: Vec<bool> = a
            .iter()
            .filter_map(|x| match x {
                Action::Event(UnitEvent::Position { live, .. }) => Some(*live),
                _ => None,
            })
            .collect();
        assert_eq!(lives, [false, false]);
    }
}

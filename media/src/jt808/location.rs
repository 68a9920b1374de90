//! 0x0200 location report: alarm and status words, WGS-84 position, altitude, speed, direction,
//! BCD time in GMT+8, and the additional items (id, length, value).
//!
//! Lenient where devices are sloppy: an additional item that declares more bytes than the body
//! holds is dropped (with anything after it) and counted in [`LocationReport::dropped_items`];
//! the intact 28-byte location is kept.

use super::{bcd_to_string, Jt808Error};
use crate::model::{Position, PositionSource};

/// Alarm bit 0: emergency (SOS) button.
pub const ALARM_SOS: u32 = 1;
/// Status bit 1: the fix is valid.
pub const STATUS_FIX: u32 = 1 << 1;
/// Status bit 2: south latitude.
pub const STATUS_SOUTH: u32 = 1 << 2;
/// Status bit 3: west longitude.
pub const STATUS_WEST: u32 = 1 << 3;

/// A parsed location report.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationReport {
    /// Alarm word.
    pub alarm: u32,
    /// Status word.
    pub status: u32,
    /// Latitude, 1e-6 degrees, signed by the status bit.
    pub lat_e6: i64,
    /// Longitude, 1e-6 degrees, signed by the status bit.
    pub lon_e6: i64,
    /// Altitude, metres.
    pub altitude_m: u16,
    /// Speed, 0.1 km/h.
    pub speed_dkmh: u16,
    /// Direction, degrees from north.
    pub direction_deg: u16,
    /// Device time, UTC milliseconds (the wire carries GMT+8).
    pub time_ms: i64,
    /// Mileage, 0.1 km (item 0x01).
    pub mileage_dkm: Option<u32>,
    /// Signal strength (item 0x30).
    pub signal: Option<u8>,
    /// Satellites in view (item 0x31).
    pub satellites: Option<u8>,
    /// Additional items dropped because they declared more bytes than the body holds (0 or 1:
    /// nothing after a broken item can be read).
    pub dropped_items: u8,
}

impl LocationReport {
    /// Fixed part length.
    pub const FIXED_LEN: usize = 28;

    /// Parse a 0x0200 body (or one item of a 0x0704 batch).
    pub fn parse(body: &[u8]) -> Result<Self, Jt808Error> {
        if body.len() < Self::FIXED_LEN {
            return Err(Jt808Error::Truncated {
                what: "location",
                need: Self::FIXED_LEN,
                have: body.len(),
            });
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        let alarm = u32_at(0);
        let status = u32_at(4);
        let mut lat_e6 = i64::from(u32_at(8));
        let mut lon_e6 = i64::from(u32_at(12));
        if lat_e6 > 90_000_000 || lon_e6 > 180_000_000 {
            return Err(Jt808Error::Invalid("coordinates"));
        }
        if status & STATUS_SOUTH != 0 {
            lat_e6 = -lat_e6;
        }
        if status & STATUS_WEST != 0 {
            lon_e6 = -lon_e6;
        }
        let time_ms = bcd_time_ms(&body[22..28])?;
        let (mut mileage_dkm, mut signal, mut satellites) = (None, None, None);
        let mut dropped_items = 0;
        let mut i = Self::FIXED_LEN;
        while i + 2 <= body.len() {
            let (id, len) = (body[i], body[i + 1] as usize);
            let Some(v) = body.get(i + 2..i + 2 + len) else {
                // The item overruns the body (seen from real terminals): keep the fix, drop the
                // item; nothing after it can be framed.
                dropped_items = 1;
                break;
            };
            match (id, len) {
                (0x01, 4) => mileage_dkm = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                (0x30, 1) => signal = Some(v[0]),
                (0x31, 1) => satellites = Some(v[0]),
                _ => {}
            }
            i += 2 + len;
        }
        Ok(Self {
            alarm,
            status,
            lat_e6,
            lon_e6,
            altitude_m: u16_at(16),
            speed_dkmh: u16_at(18),
            direction_deg: u16_at(20),
            time_ms,
            mileage_dkm,
            signal,
            satellites,
            dropped_items,
        })
    }

    /// Whether the terminal says its fix is valid and the point is not (0, 0).
    pub fn fix_valid(&self) -> bool {
        self.status & STATUS_FIX != 0 && !(self.lat_e6 == 0 && self.lon_e6 == 0)
    }

    /// The shared position of `unit_id`. A report without a valid fix becomes (0, 0), which
    /// the dispatch core flags as a zero fix and keeps off the live map.
    pub fn to_position(&self, unit_id: &str) -> Position {
        let valid = self.fix_valid();
        Position {
            unit_id: unit_id.to_string(),
            time_ms: self.time_ms,
            lat: if valid { self.lat_e6 as f64 / 1e6 } else { 0.0 },
            lon: if valid { self.lon_e6 as f64 / 1e6 } else { 0.0 },
            speed_kmh: Some(f64::from(self.speed_dkmh) / 10.0),
            heading_deg: Some(f64::from(self.direction_deg)),
            altitude_m: Some(f64::from(self.altitude_m)),
            accuracy_m: None,
            source: PositionSource::Jt808,
            alarm_flags: self.alarm,
        }
    }
}

/// `YYMMDDhhmmss` BCD in GMT+8 → UTC milliseconds (years 2000–2099).
pub fn bcd_time_ms(b: &[u8]) -> Result<i64, Jt808Error> {
    let s = bcd_to_string(b, "time")?;
    let n = |i: usize| -> i64 { s[i..i + 2].parse().unwrap_or(0) };
    let (y, mo, d, h, mi, se) = (2000 + n(0), n(2), n(4), n(6), n(8), n(10));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(Jt808Error::Invalid("time"));
    }
    // Days from the civil date (Howard Hinnant's algorithm), no clock, no time zone database.
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3600 + mi * 60 + se) - 8 * 3600) * 1000)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 0x0200 body as a terminal sends it: SOS alarm, fix valid, 31.230416 N 121.473701 E,
    /// 12 m, 36.5 km/h, heading 90, 2026-11-22 09:30:00 GMT+8, mileage 1234.5 km, 9 satellites.
    pub(crate) fn sample_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&STATUS_FIX.to_be_bytes());
        b.extend_from_slice(&31_230_416u32.to_be_bytes());
        b.extend_from_slice(&121_473_701u32.to_be_bytes());
        b.extend_from_slice(&12u16.to_be_bytes());
        b.extend_from_slice(&365u16.to_be_bytes());
        b.extend_from_slice(&90u16.to_be_bytes());
        b.extend_from_slice(&[0x26, 0x11, 0x22, 0x09, 0x30, 0x00]);
        b.extend_from_slice(&[0x01, 4, 0, 0, 0x30, 0x39]);
        b.extend_from_slice(&[0x31, 1, 9]);
        b.extend_from_slice(&[0xe1, 2, 0xaa, 0xbb]); // a vendor item, skipped
        b
    }

    #[test]
    fn parses_a_report() {
        let r = LocationReport::parse(&sample_body()).unwrap();
        assert_eq!(r.alarm & ALARM_SOS, 1);
        assert!(r.fix_valid());
        assert_eq!((r.lat_e6, r.lon_e6), (31_230_416, 121_473_701));
        assert_eq!(r.time_ms, 1_795_311_000_000); // 2026-11-22T01:30:00Z
        assert_eq!(
            (r.mileage_dkm, r.satellites, r.signal),
            (Some(12_345), Some(9), None)
        );
        let p = r.to_position("13800138000");
        assert_eq!(p.speed_kmh, Some(36.5));
        assert!((p.lat - 31.230416).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_reports() {
        let b = sample_body();
        assert!(matches!(
            LocationReport::parse(&b[..20]),
            Err(Jt808Error::Truncated { .. })
        ));
        let mut bad_time = b.clone();
        bad_time[23] = 0x13; // month 13
        assert!(matches!(
            LocationReport::parse(&bad_time),
            Err(Jt808Error::Invalid("time"))
        ));
        let mut bad_item = b.clone();
        bad_item.extend_from_slice(&[0x02, 9, 1]);
        let r = LocationReport::parse(&bad_item).expect("an overrunning item drops the item only");
        assert_eq!((r.dropped_items, r.satellites), (1, Some(9)));
        let mut south_west = b.clone();
        south_west[7] |= (STATUS_SOUTH | STATUS_WEST) as u8;
        let r = LocationReport::parse(&south_west).unwrap();
        assert!(r.lat_e6 < 0 && r.lon_e6 < 0);
    }
}

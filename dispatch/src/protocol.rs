//! The dispatch WebSocket schema (`docs/api/dispatch-ws.md`): client messages and their parser,
//! the phone app's position format, and the unit view the server sends.

use serde::{Deserialize, Serialize};

use shouhu_storage::model::{Position, PositionSource, UnitKind};
use shouhu_storage::positions::flags;

use crate::coords::Crs;
use crate::core::{DispatchState, Link, UnitState};

/// Largest client message accepted, bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most positions in one upload.
pub const MAX_POSITIONS: usize = 500;

/// A viewport and filters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// `[min_lon, min_lat, max_lon, max_lat]` in `crs`.
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
    /// Unit kinds.
    #[serde(default)]
    pub kinds: Option<Vec<UnitKind>>,
    /// Org unit subtree.
    #[serde(default)]
    pub org_unit_id: Option<String>,
    /// Dispatch states.
    #[serde(default)]
    pub states: Option<Vec<DispatchState>>,
    /// Coordinate system of everything sent and of `bbox`.
    #[serde(default)]
    pub crs: Option<Crs>,
}

/// One position from the phone app (WGS-84).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPosition {
    /// Device time, RFC 3339.
    pub time: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Speed, km/h.
    #[serde(default)]
    pub speed_kmh: Option<f64>,
    /// Heading, degrees.
    #[serde(default)]
    pub heading_deg: Option<f64>,
    /// Altitude, metres.
    #[serde(default)]
    pub altitude_m: Option<f64>,
    /// Horizontal accuracy, metres.
    #[serde(default)]
    pub accuracy_m: Option<f64>,
    /// The officer pressed the emergency button.
    #[serde(default)]
    pub sos: bool,
}

/// A message from a WebSocket client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Set viewport and filters.
    Subscribe(Subscription),
    /// Phone app positions.
    Positions {
        /// The fixes.
        positions: Vec<AppPosition>,
    },
    /// Keep-alive.
    Ping,
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not JSON or not a known message.
    #[error("{0}")]
    Bad(String),
}

/// Parse one text frame.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let m: ClientMessage =
        serde_json::from_str(text).map_err(|e| ProtocolError::Bad(e.to_string()))?;
    if let ClientMessage::Subscribe(s) = &m {
        if let Some(b) = s.bbox {
            if b.iter().any(|v| !v.is_finite()) || b[0] > b[2] || b[1] > b[3] {
                return Err(ProtocolError::Bad(
                    "bbox must be [min_lon, min_lat, max_lon, max_lat] with min ≤ max".into(),
                ));
            }
        }
    }
    if let ClientMessage::Positions { positions } = &m {
        if positions.len() > MAX_POSITIONS {
            return Err(ProtocolError::Bad(format!(
                "{} positions in one message; at most {MAX_POSITIONS}",
                positions.len()
            )));
        }
    }
    Ok(m)
}

/// A rejected app position.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionRejection {
    /// Index in the batch.
    pub index: usize,
    /// Machine code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Furthest a device clock may run ahead of the server, ms.
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;
/// Oldest fix accepted from the app, ms before now (older ones are refused, not stored).
pub const MAX_AGE_MS: i64 = 7 * 24 * 3_600_000;

/// Check an app position and turn it into a [`Position`] of `unit_id`.
pub fn app_position(
    unit_id: &str,
    p: &AppPosition,
    now_ms: i64,
) -> Result<Position, (&'static str, String)> {
    let t = chrono::DateTime::parse_from_rfc3339(p.time.trim())
        .map_err(|_| ("invalid_time", format!("time {:?} is not RFC 3339", p.time)))?
        .timestamp_millis();
    if t > now_ms + MAX_FUTURE_MS {
        return Err((
            "invalid_time",
            "time is more than 5 minutes in the future".into(),
        ));
    }
    if t < now_ms - MAX_AGE_MS {
        return Err(("invalid_time", "time is more than 7 days old".into()));
    }
    if !(p.lat.is_finite() && (-90.0..=90.0).contains(&p.lat)) {
        return Err(("invalid_lat", "lat must be within -90..90".into()));
    }
    if !(p.lon.is_finite() && (-180.0..=180.0).contains(&p.lon)) {
        return Err(("invalid_lon", "lon must be within -180..180".into()));
    }
    let check = |v: Option<f64>, lo: f64, hi: f64, name: &'static str| match v {
        Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => {
            Err(("invalid_value", format!("{name} must be within {lo}..{hi}")))
        }
        _ => Ok(()),
    };
    check(p.speed_kmh, 0.0, 500.0, "speed_kmh")?;
    check(p.heading_deg, 0.0, 360.0, "heading_deg")?;
    check(p.altitude_m, -500.0, 9000.0, "altitude_m")?;
    check(p.accuracy_m, 0.0, 100_000.0, "accuracy_m")?;
    Ok(Position {
        unit_id: unit_id.to_string(),
        time_ms: t,
        lat: p.lat,
        lon: p.lon,
        speed_kmh: p.speed_kmh,
        heading_deg: p.heading_deg,
        altitude_m: p.altitude_m,
        accuracy_m: p.accuracy_m,
        source: PositionSource::App,
        alarm_flags: u32::from(p.sos),
    })
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The target of an assigned unit, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Name.
    pub name: String,
    /// Latitude in the requested system.
    pub lat: f64,
    /// Longitude in the requested system.
    pub lon: f64,
}

/// A unit as the API and the WebSocket show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UnitView {
    /// Id.
    pub id: String,
    /// `vehicle`, `officer`, `recorder`.
    #[schema(value_type = String)]
    pub kind: UnitKind,
    /// Plate or name.
    pub name: String,
    /// Org unit.
    pub org_unit_id: String,
    /// JT/T 808 terminal phone.
    pub terminal: Option<String>,
    /// GB/T 28181 device id.
    pub device: Option<String>,
    /// Latitude in the requested system (null before the first usable fix).
    pub lat: Option<f64>,
    /// Longitude in the requested system.
    pub lon: Option<f64>,
    /// Device time of the fix, RFC 3339.
    pub time: Option<String>,
    /// km/h.
    pub speed_kmh: Option<f64>,
    /// Degrees.
    pub heading_deg: Option<f64>,
    /// Metres.
    pub altitude_m: Option<f64>,
    /// Metres.
    pub accuracy_m: Option<f64>,
    /// Source of the fix.
    #[schema(value_type = Option<String>)]
    pub source: Option<PositionSource>,
    /// `online`, `unknown`, `offline`.
    #[schema(value_type = String)]
    pub link: Link,
    /// `idle`, `assigned`, `on_scene`, `in_call`.
    #[schema(value_type = String)]
    pub state: DispatchState,
    /// Target of the open assignment.
    pub target: Option<TargetView>,
    /// An SOS alarm is open.
    pub sos: bool,
    /// Quality marks of the last fix: `jump`, `zero_fix`, `stale`.
    pub flags: Vec<&'static str>,
}

impl UnitView {
    /// The view of a unit in `crs`.
    pub fn of(u: &UnitState, crs: Crs) -> UnitView {
        let p = u.live.as_ref();
        let ll = p.map(|p| crs.from_wgs84(p.lat, p.lon));
        let mut fl = Vec::new();
        if u.last_flags & flags::JUMP != 0 {
            fl.push("jump");
        }
        if u.last_flags & flags::ZERO_FIX != 0 {
            fl.push("zero_fix");
        }
        if u.last_flags & flags::STALE != 0 {
            fl.push("stale");
        }
        UnitView {
            id: u.info.id.clone(),
            kind: u.info.kind,
            name: u.info.name.clone(),
            org_unit_id: u.info.org_unit_id.clone(),
            terminal: u.info.terminal.clone(),
            device: u.info.device.clone(),
            lat: ll.map(|x| round7(x.0)),
            lon: ll.map(|x| round7(x.1)),
            time: p.map(|p| rfc3339(p.time_ms)),
            speed_kmh: p.and_then(|p| p.speed_kmh),
            heading_deg: p.and_then(|p| p.heading_deg),
            altitude_m: p.and_then(|p| p.altitude_m),
            accuracy_m: p.and_then(|p| p.accuracy_m),
            source: p.map(|p| p.source),
            link: u.link,
            state: u.state(),
            target: u.target.as_ref().map(|t| {
                let (lat, lon) = crs.from_wgs84(t.lat, t.lon);
                TargetView {
                    enterprise_id: t.enterprise_id.clone(),
                    name: t.name.clone(),
                    lat: round7(lat),
                    lon: round7(lon),
                }
            }),
            sos: u.sos,
            flags: fl,
        }
    }
}

/// Seven decimals: 1 cm, and shorter JSON.
fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_message() {
        let m = parse_client_message(
            r#"{"type":"subscribe","bbox":[121.4,31.1,121.5,31.3],"kinds":["vehicle"],"crs":"gcj02","states":["idle"]}"#,
        )
        .unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.crs, Some(Crs::Gcj02));
        assert_eq!(s.kinds, Some(vec![UnitKind::Vehicle]));
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping
        );
        let m = parse_client_message(
            r#"{"type":"positions","positions":[{"time":"2026-11-22T03:00:00Z","lat":31.2,"lon":121.4}]}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Positions { positions } if positions.len() == 1));
    }

    #[test]
    fn refuses_junk_with_a_reason() {
        for (text, needle) in [
            ("not json", "expected"),
            (r#"{"type":"subscrib"}"#, "subscrib"),
            (
                r#"{"type":"subscribe","bbox":[121.5,31.1,121.4,31.3]}"#,
                "bbox",
            ),
            (r#"{"type":"subscribe","colour":"red"}"#, "colour"),
            (r#"{"type":"subscribe","crs":"utm"}"#, "utm"),
        ] {
            let e = parse_client_message(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let big = format!(
            r#"{{"type":"ping","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            parse_client_message(&big),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn app_positions_are_checked() {
        let now = 1_795_000_000_000;
        let ok = AppPosition {
            time: rfc3339(now - 1000),
            lat: 31.2,
            lon: 121.4,
            speed_kmh: Some(5.0),
            heading_deg: None,
            altitude_m: None,
            accuracy_m: Some(8.0),
            sos: true,
        };
        let p = app_position("o1", &ok, now).unwrap();
        assert_eq!((p.time_ms, p.alarm_flags), (now - 1000, 1));
        let bad = |f: &dyn Fn(&mut AppPosition)| {
            let mut x = ok.clone();
            f(&mut x);
            app_position("o1", &x, now).unwrap_err().0
        };
        assert_eq!(bad(&|x| x.lat = 91.0), "invalid_lat");
        assert_eq!(bad(&|x| x.lon = f64::NAN), "invalid_lon");
        assert_eq!(bad(&|x| x.time = "yesterday".into()), "invalid_time");
        assert_eq!(bad(&|x| x.time = rfc3339(now + 3_600_000)), "invalid_time");
        assert_eq!(bad(&|x| x.speed_kmh = Some(-1.0)), "invalid_value");
    }
}

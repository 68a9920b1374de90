//! The dispatch WebSocket schema (`docs/api/dispatch-ws.md`): client messages and their parser,
//! the phone app's position format, and the unit view the server sends.

use serde::Serialize;

use shouhu_storage::model::{Position, PositionSource, UnitKind};
use shouhu_storage::positions::flags;

use crate::coords::Crs;
use crate::core::{DispatchState, Link, UnitState};

pub use crate::wire::{
    parse_client_message, AppPosition, ClientMessage, ProtocolError, Subscription,
    MAX_MESSAGE_BYTES, MAX_POSITIONS,
};

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
    /// JT/T 808 terminal phone: REST answers of roles that manage devices only; never on the
    /// WebSocket.
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

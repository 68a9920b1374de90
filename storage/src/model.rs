//! Shared domain types that more than one crate speaks: positions and unit events.
//!
//! `media` (devices) pushes what devices report into a [`UnitEventSink`]; `api` wires the sink to
//! `dispatch`. Keeping the types here lets `media` and `dispatch` stay independent of each other.

use serde::{Deserialize, Serialize};

/// Kind of a dispatchable unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// An enforcement vehicle (JT/T 808 terminal).
    Vehicle,
    /// An officer (reported by the bound recorder or the phone app).
    Officer,
    /// A recorder not bound to any officer.
    Recorder,
}

/// Where a position came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionSource {
    /// JT/T 808 location report.
    Jt808,
    /// GB/T 28181 MobilePosition.
    Gb28181,
    /// Officer phone app over HTTP or WebSocket.
    App,
}

/// One WGS-84 fix of one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The unit the fix belongs to.
    pub unit_id: String,
    /// Device time, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// WGS-84 latitude in degrees.
    pub lat: f64,
    /// WGS-84 longitude in degrees.
    pub lon: f64,
    /// Speed over ground, km/h.
    pub speed_kmh: Option<f64>,
    /// Heading, degrees clockwise from north.
    pub heading_deg: Option<f64>,
    /// Altitude in metres.
    pub altitude_m: Option<f64>,
    /// Horizontal accuracy in metres.
    pub accuracy_m: Option<f64>,
    /// Which protocol reported it.
    pub source: PositionSource,
    /// Device alarm flags (JT/T 808 alarm word; bit 0 = SOS).
    pub alarm_flags: u32,
}

/// What devices report about units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UnitEvent {
    /// A position fix; `live` is false for backfilled (blind-area) history.
    Position {
        /// The fix.
        position: Position,
        /// Whether it may update the live state.
        live: bool,
    },
    /// The device is connected and talking (authenticated, heartbeat, keepalive).
    Online {
        /// Unit id.
        unit_id: String,
        /// Which device kind was heard.
        source: PositionSource,
    },
    /// The device disconnected (or its registration expired).
    Offline {
        /// Unit id.
        unit_id: String,
        /// Which device kind left.
        source: PositionSource,
    },
    /// An SOS / emergency alarm.
    Sos {
        /// Unit id.
        unit_id: String,
        /// Device time, ms since the epoch.
        time_ms: i64,
        /// Which device kind raised it.
        source: PositionSource,
    },
}

/// Receiver of unit events. Implementations must not block: they hand the event on.
pub trait UnitEventSink: Send + Sync {
    /// Deliver one event.
    fn publish(&self, event: UnitEvent);
}

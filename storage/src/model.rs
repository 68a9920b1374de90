//! Shared domain types that more than one crate speaks: positions, unit events, and the
//! GB/T 28181 identifiers ([`DeviceId`], [`ChannelId`]) parsed once at the edge.
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

/// Why a device or channel identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not exactly 20 characters.
    #[error("{what} must be 20 digits (GB/T 28181 code), got {len} characters")]
    Length {
        /// `device_id` or `channel_id`.
        what: &'static str,
        /// Characters given.
        len: usize,
    },
    /// A character other than an ASCII digit.
    #[error("{what} must be 20 digits (GB/T 28181 code): character {index} is not a digit")]
    NotDigit {
        /// `device_id` or `channel_id`.
        what: &'static str,
        /// 0-based index of the first offending character.
        index: usize,
    },
}

/// Check a 20-digit code: a non-digit (CR, LF, a letter) is named by its position first, then
/// the length.
fn check_code(what: &'static str, s: &str) -> Result<(), IdError> {
    if let Some(index) = s.chars().position(|c| !c.is_ascii_digit()) {
        return Err(IdError::NotDigit { what, index });
    }
    if s.len() != 20 {
        return Err(IdError::Length { what, len: s.len() });
    }
    Ok(())
}

/// A GB/T 28181 device id: exactly 20 ASCII digits. Parsed once at the edge, so that nothing
/// else has to wonder whether it can go into a SIP Request-URI, a header or MANSCDP XML.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// The 20 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DeviceId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        check_code("device_id", s)?;
        Ok(DeviceId(s.to_string()))
    }
}

impl TryFrom<String> for DeviceId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for DeviceId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{20}$"))
            .description(Some("GB/T 28181 device id (20 digits)"))
            .into()
    }
}

impl utoipa::ToSchema for DeviceId {}

/// A channel of a recorder: a GB/T 28181 channel code (20 ASCII digits, as the device's catalog
/// names it), or one of the named channels that publishers feed over WHIP ([`ChannelId::APP`],
/// [`ChannelId::CONSOLE`]), which no device is ever asked to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId(String);

impl ChannelId {
    /// The phone app's own camera and microphone, published over WHIP by the officer.
    pub const APP: &'static str = "app";
    /// The command centre's side of a dispatch call, published over WHIP by the operator.
    pub const CONSOLE: &'static str = "console";

    /// The channel as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a named (published) channel rather than a device's channel code.
    pub fn is_named(&self) -> bool {
        self.0 == Self::APP || self.0 == Self::CONSOLE
    }

    /// Whether it is the phone app's channel.
    pub fn is_app(&self) -> bool {
        self.0 == Self::APP
    }

    /// Whether it is a call's console channel.
    pub fn is_console(&self) -> bool {
        self.0 == Self::CONSOLE
    }

    /// The app channel.
    pub fn app() -> ChannelId {
        ChannelId(Self::APP.into())
    }

    /// The console channel.
    pub fn console() -> ChannelId {
        ChannelId(Self::CONSOLE.into())
    }
}

impl std::str::FromStr for ChannelId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s == Self::APP || s == Self::CONSOLE {
            return Ok(ChannelId(s.to_string()));
        }
        check_code("channel_id", s)?;
        Ok(ChannelId(s.to_string()))
    }
}

impl TryFrom<String> for ChannelId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<ChannelId> for String {
    fn from(c: ChannelId) -> String {
        c.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for ChannelId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^([0-9]{20}|app|console)$"))
            .description(Some(
                "channel: a GB/T 28181 channel code (20 digits) or a named channel (app, console)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ChannelId {}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "31010000001320000001";

    #[test]
    fn a_device_id_is_twenty_digits() {
        let d: DeviceId = DEV.parse().unwrap();
        assert_eq!(d.as_str(), DEV);
        assert_eq!(d.to_string(), DEV);
        assert!(matches!(
            "3101000000132000000".parse::<DeviceId>(),
            Err(IdError::Length { len: 19, .. })
        ));
        assert!(matches!(
            "310100000013200000011".parse::<DeviceId>(),
            Err(IdError::Length { len: 21, .. })
        ));
        assert!(matches!(
            "3101000000132000000a".parse::<DeviceId>(),
            Err(IdError::NotDigit { index: 19, .. })
        ));
        assert!("".parse::<DeviceId>().is_err());
        assert!(
            "app".parse::<DeviceId>().is_err(),
            "named channels are not devices"
        );
        // Full-width digits are digits to Unicode, not to a SIP URI.
        assert!("３1010000001320000001".parse::<DeviceId>().is_err());
    }

    #[test]
    fn a_channel_id_is_twenty_digits_or_a_named_channel() {
        let c: ChannelId = "31010000001310000001".parse().unwrap();
        assert!(!c.is_named());
        for n in ["app", "console"] {
            let c: ChannelId = n.parse().unwrap();
            assert!(c.is_named());
            assert_eq!(c.to_string(), n);
        }
        assert!(ChannelId::app().is_app() && ChannelId::console().is_console());
        for bad in [
            "APP",
            "app ",
            "1",
            "abc",
            "3101000000131000000",
            "310100000013100000011",
        ] {
            assert!(bad.parse::<ChannelId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn crlf_is_refused_and_named_in_the_error() {
        let e = "3101000000\r\nVia: x".parse::<ChannelId>().unwrap_err();
        assert_eq!(
            e,
            IdError::NotDigit {
                what: "channel_id",
                index: 10
            }
        );
        assert!(e.to_string().contains("channel_id"), "{e}");
        let e = "31010000001310000001\r\n".parse::<ChannelId>().unwrap_err();
        assert!(matches!(e, IdError::NotDigit { index: 20, .. }), "{e:?}");
    }

    #[test]
    fn serde_round_trips_and_refuses_bad_ids() {
        let d: DeviceId = serde_json::from_str(&format!("\"{DEV}\"")).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{DEV}\""));
        let c: ChannelId = serde_json::from_str("\"console\"").unwrap();
        assert!(c.is_console());
        assert!(serde_json::from_str::<ChannelId>("\"12\\r\\n\"").is_err());
        assert!(serde_json::from_str::<DeviceId>("\"1\"").is_err());
    }
}

//! The client side of the dispatch WebSocket: messages a client may send and their parser.
//! Depends only on serde and small type modules, so the fuzz target can include it as is.

use serde::{Deserialize, Serialize};

use crate::coords::Crs;
use crate::model::UnitKind;
use crate::states::DispatchState;

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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(not(fuzzing), derive(utoipa::ToSchema))]
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
}

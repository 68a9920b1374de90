//! GB/T 28181-2016/2022 for body-worn recorders: the platform side.
//!
//! * [`manscdp`]: the XML bodies (keepalive, positions, alarms, catalog, queries);
//! * [`register`]: `REGISTER` admission with digest;
//! * [`sdp`]: the live-stream offer and answer;
//! * [`platform`]: the sans-IO state machine over every device;
//! * [`limits`]: the per-source budget of traffic not from a device's registered source;
//! * [`server`]: the thin UDP and TCP transports around it.

pub mod limits;
pub mod manscdp;
pub mod platform;
pub mod register;
pub mod sdp;
#[cfg(not(fuzzing))]
pub mod server;

pub use platform::{DeviceUpdate, Output, Peer, Platform, PlatformConfig, StreamUpdate, Transport};
pub use register::Secret;

/// The clock, passed in: a monotonic time for timers and the wall time for what devices see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin).
    pub mono_ms: u64,
    /// UTC milliseconds since the epoch.
    pub utc_ms: i64,
}

/// A 20-digit GB/T 28181 id.
pub fn is_device_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// The 3-digit type code of an id (positions 11–13): 132 camera, 131 channel, 200 platform.
pub fn type_code(id: &str) -> Option<&str> {
    is_device_id(id).then(|| &id[10..13])
}

//! The dispatch crate: live unit state, spatial index, geofences, WebSocket push and tracks.
//!
//! Empty so far: the foundation only fixes its place in the workspace. It depends on `storage`
//! (for the shared `model` types) and never on `media`.
#![forbid(unsafe_code)]

pub use shouhu_storage::model;

//! The dispatch crate: live unit state, spatial index, geofences, WebSocket push and tracks.
//!
//! * [`core`] — the sans-IO state machine: units, live fixes in an R-tree, link states,
//!   dispatch states, geofence enter/leave, SOS raising, nearest-unit queries.
//! * [`hub`] — the tokio wrapper: feeds the core, batches history writes, fans changes out to
//!   WebSocket subscribers (latest state per unit per client, sent at a fixed rate).
//! * [`protocol`] — the WebSocket message schema (`docs/api/dispatch-ws.md`) and its parser.
//! * [`coords`], [`geodesy`], [`fence`], [`simplify`], [`track`] — coordinate systems,
//!   distances, geofence shapes, Douglas–Peucker, GPX/GeoJSON export.
//!
//! It depends on `storage` (shared `model` types, repositories) and never on `media`.
#![forbid(unsafe_code)]

pub mod coords;
pub mod core;
pub mod fence;
pub mod geodesy;
pub mod hub;
pub mod protocol;
pub mod simplify;
pub mod states;
pub mod track;
pub mod wire;

pub use shouhu_storage::model;

//! The media crate: device protocols and the stream hub (GB/T 28181, JT/T 808, WebRTC, recording).
//!
//! Empty so far: the foundation only fixes its place in the workspace. It depends on `storage`
//! (for the shared `model` types) and never on `dispatch`.
#![forbid(unsafe_code)]

pub use shouhu_storage::model;

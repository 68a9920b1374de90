//! The media crate: device protocols and the stream hub (GB/T 28181, JT/T 808, WebRTC,
//! recording). It depends on `storage` (for the shared `model` types) and never on `dispatch`.
//!
//! So far: JT/T 808 ([`jt808`]), SIP ([`sip`]) and GB/T 28181 signalling ([`gb28181`]). Protocol code here is sans-IO and clock-free:
//! bytes and a `now` in, frames, events or bytes out; sockets live in one thin module per
//! protocol.

#![forbid(unsafe_code)]

pub mod bufpool;
pub mod digester;
pub mod gb28181;
pub mod hub;
pub mod jt808;
pub mod mp4;
pub mod ps;
#[cfg(not(fuzzing))]
pub mod recorder;
pub mod rtp;
pub mod sip;
pub mod stats;
pub mod transcode;
pub mod whep;
pub mod whip;

pub use shouhu_storage::model;

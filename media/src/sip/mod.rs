//! SIP (RFC 3261) as GB/T 28181 uses it, sans-IO: message parsing and serialisation
//! ([`message`]), digest authentication ([`digest`]) and UDP transaction timers
//! ([`transaction`]). The GB/T 28181 device logic on top lives in [`crate::gb28181`].

pub mod digest;
pub mod message;
pub mod transaction;

pub use message::{parse_datagram, Message, NameAddr, ParseError, SipUri, StartLine, Via};

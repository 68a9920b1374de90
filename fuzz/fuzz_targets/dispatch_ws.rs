//! Dispatch WebSocket client messages: the parser never panics, and what it accepts keeps its
//! invariants (ordered, finite viewport; bounded position batches).
#![no_main]

#[path = "../../storage/src/model.rs"]
#[allow(dead_code)]
mod model;

#[path = "../../dispatch/src/coords.rs"]
#[allow(dead_code)]
mod coords;

#[path = "../../dispatch/src/states.rs"]
#[allow(dead_code)]
mod states;

#[path = "../../dispatch/src/wire.rs"]
#[allow(dead_code)]
mod wire;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match wire::parse_client_message(text) {
        Ok(wire::ClientMessage::Subscribe(s)) => {
            if let Some(b) = s.bbox {
                assert!(b.iter().all(|v| v.is_finite()) && b[0] <= b[2] && b[1] <= b[3]);
            }
        }
        Ok(wire::ClientMessage::Positions { positions }) => assert!(positions.len() <= wire::MAX_POSITIONS),
        Ok(wire::ClientMessage::Ping) | Err(_) => {}
    }
});

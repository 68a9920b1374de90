//! JT/T 808 bytes from a vehicle terminal: deframing, message decoding and the connection
//! session never panic, a bad frame never stops the frames after it, and framing round-trips any
//! message bytes.
#![no_main]

#[path = "../../storage/src/model.rs"]
#[allow(dead_code)]
mod model;

#[path = "../../media/src/jt808/mod.rs"]
#[allow(dead_code)]
mod jt808;

use jt808::frame::{encode, Deframer};
use jt808::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A whole connection: the session answers or closes, never panics, and stays closed.
    let mut s = jt808::session::Session::new();
    let (a, b) = data.split_at(data.len() / 2);
    let mut closed = false;
    for part in [a, b] {
        let actions = s.on_bytes(part, 0);
        if closed {
            assert!(actions.is_empty());
        }
        closed |= actions.iter().any(|x| matches!(x, jt808::session::Action::Close(_)));
    }
    let mut d = Deframer::new();
    d.push(data);
    while let Some(frame) = d.next_frame() {
        if let Ok(f) = frame {
            let _ = Message::decode(&f);
        }
    }
    if data.len() <= 1024 {
        let mut d = Deframer::new();
        d.push(&encode(data));
        assert_eq!(d.next_frame().expect("one frame").expect("valid frame"), data);
    }
});

//! JT/T 808 bytes from a vehicle terminal: deframing and message decoding never panic, a bad
//! frame never stops the frames after it, and framing round-trips any message bytes.
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

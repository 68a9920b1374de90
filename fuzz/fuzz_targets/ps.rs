//! MPEG-PS bytes from a device: the demuxer never panics, never holds more than its bounds, and
//! whatever it emits as video starts at a start code. The first byte steers how the input is
//! cut into "RTP payloads" and where markers and losses fall.
#![no_main]

#[path = "../../media/src/ps.rs"]
#[allow(dead_code)]
mod ps;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&steer, rest)) = data.split_first() else { return };
    let piece = 1 + (steer as usize & 0x3F) * 23;
    let mut d = ps::PsDemuxer::new();
    for (i, c) in rest.chunks(piece).enumerate() {
        let mut frames = d.push(c);
        if steer & 0x40 != 0 && i % 3 == 2 {
            frames.extend(d.end_of_frame());
        }
        if steer & 0x80 != 0 && i % 7 == 6 {
            d.lost();
        }
        for f in frames {
            assert!(f.data.len() <= ps::MAX_FRAME);
            if f.codec.is_video() {
                assert!(f.data.starts_with(&[0, 0, 1]) || f.data.starts_with(&[0, 0, 0, 1]));
            }
        }
    }
    let _ = d.end_of_frame();
});

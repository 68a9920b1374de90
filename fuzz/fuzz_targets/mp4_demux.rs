//! A camera's MP4 file as uploaded: `mp4::demux` reads its `moov` sample tables and its samples
//! from untrusted bytes; it must never panic, and every frame it yields lies within the input.
#![no_main]

#[path = "../../media/src/ps.rs"]
#[allow(dead_code)]
mod ps;

#[path = "../../media/src/bufpool.rs"]
#[allow(dead_code)]
mod bufpool;

#[path = "../../media/src/mp4/mod.rs"]
#[allow(dead_code)]
mod mp4;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(movie) = mp4::demux::read(data) else { return };
    for f in movie.frames(data).take(10_000) {
        let Ok(f) = f else { break };
        assert!(f.dts_90k.is_some());
    }
});

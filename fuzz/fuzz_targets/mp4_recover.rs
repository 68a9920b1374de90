//! A segment file cut short by a crash, or any file handed to the recovery and export code:
//! `mp4::recover::layout` and `cut` read box sizes, track headers, `tfdt` and `trun` from
//! untrusted bytes and must never panic; a cut never reaches past the input, and every
//! fragment lies within it after the init section.
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
    if let Some(l) = mp4::recover::layout(data) {
        assert!(l.init_len <= data.len());
        for f in &l.fragments {
            assert!(f.start >= l.init_len && f.start < f.end && f.end <= data.len());
        }
    }
    if let Some(c) = mp4::recover::cut(data) {
        assert!(c.len <= data.len() && c.end_90k > c.start_90k);
    }
});

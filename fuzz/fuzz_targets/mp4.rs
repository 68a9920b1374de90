//! Access units and audio frames from a device into the recorder's segmenter and MP4 writer:
//! parameter-set parsing (H.264/H.265 SPS, hvcC, avcC), ADTS headers and the muxer never panic,
//! and every box written has a size that fits in the bytes written. The first byte steers the
//! codecs, keyframe flags and timestamps; the rest is cut into frames at each `00 00 01 FF`.
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
use mp4::segmenter::{Output, Segmenter};
use ps::{Codec, Frame};

/// Every top-level box of a segment's bytes has a size within them.
fn boxes_fit(data: &[u8]) {
    let mut i = 0;
    while i < data.len() {
        assert!(i + 8 <= data.len(), "box header past the end");
        let n = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        assert!(n >= 8 && i + n <= data.len(), "box size {n} at {i} of {}", data.len());
        i += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&steer, rest)) = data.split_first() else { return };
    let video = if steer & 1 == 0 { Codec::H264 } else { Codec::H265 };
    let audio = [Codec::G711A, Codec::G711U, Codec::Aac, Codec::Opus][usize::from(steer >> 1) & 3];
    let mut seg = Segmenter::new(1);
    let mut out = Vec::new();
    let mut t: u64 = if steer & 0x80 != 0 { (1 << 33) - 45_000 } else { 0 };
    for (i, piece) in rest.split(|&b| b == 0xFF).enumerate() {
        let is_audio = steer & 0x08 != 0 && i % 3 == 2;
        t += if steer & 0x10 != 0 { 3600 } else { (piece.len() as u64 * 997) % 20_000 };
        seg.push(
            &Frame {
                codec: if is_audio { audio } else { video },
                pts_90k: Some((t + u64::from(steer & 0x20) * 10) % (1 << 33)),
                dts_90k: if steer & 0x40 != 0 { None } else { Some(t % (1 << 33)) },
                data: piece.to_vec(),
                keyframe: is_audio || i % 4 == 0 || piece.len() % 7 == 0,
                received: None,
                rtp_payloads: Default::default(),
            },
            &mut out,
        );
    }
    seg.finish(&mut out);
    let mut file: Vec<u8> = Vec::new();
    for o in out {
        match o {
            Output::Begin { .. } => file.clear(),
            Output::Data(d) => file.extend(d),
            Output::End(info) => {
                assert_eq!(info.bytes as usize, file.len());
                assert!(info.end_90k >= info.start_90k);
                boxes_fit(&file);
            }
        }
    }
});

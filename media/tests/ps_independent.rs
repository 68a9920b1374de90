//! The PS demuxer against program streams from independent muxers — ffmpeg's `vob` muxer
//! (no PSM; H.264 and H.265) and GStreamer's `mpegpsmux` (with a PSM) — with the PSM falsified,
//! packets lost, reordered and truncated on the way; and our own muxer's output read back by an
//! independent demuxer (ffprobe).

use std::path::Path;
use std::process::Command;

use shouhu_media::ps::{Codec, Frame, PsDemuxer, PsMuxer};
use shouhu_media::rtp::{self, Ordered, Packet, Reorder};

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make test installs ffmpeg and GStreamer)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ffmpeg_ps(dir: &Path, codec: &str, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            codec,
            "-g",
            "25",
            "-bf",
            "0",
        ])
        .args(if codec == "libx265" {
            vec!["-x265-params", "log-level=error"]
        } else {
            vec![]
        })
        .args(["-f", "vob"])
        .arg(&path));
    std::fs::read(path).unwrap()
}

fn gst_ps(dir: &Path) -> Vec<u8> {
    let path = dir.join("gst.ps");
    let pipeline = format!(
        "videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 ! \
         x264enc key-int-max=25 bframes=0 ! h264parse ! mpegpsmux ! filesink location={}",
        path.display()
    );
    run(Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace()));
    std::fs::read(path).unwrap()
}

/// Feed a whole file in 1,400-byte pieces, as RTP payloads without markers.
fn demux_all(ps: &[u8]) -> (Vec<Frame>, PsDemuxer) {
    let mut d = PsDemuxer::new();
    let mut out = Vec::new();
    for c in ps.chunks(1400) {
        out.extend(d.push(c));
    }
    out.extend(d.end_of_frame());
    (out, d)
}

fn video(frames: &[Frame]) -> Vec<&Frame> {
    frames.iter().filter(|f| f.codec.is_video()).collect()
}

#[test]
fn ffmpeg_vob_without_psm_h264_and_h265() {
    let dir = tempfile::tempdir().unwrap();
    for (codec, want) in [("libx264", Codec::H264), ("libx265", Codec::H265)] {
        let ps = ffmpeg_ps(dir.path(), codec, &format!("{codec}.vob"));
        assert!(
            !ps.windows(4).any(|w| w == [0, 0, 1, 0xBC]),
            "ffmpeg writes no PSM"
        );
        let (frames, d) = demux_all(&ps);
        let v = video(&frames);
        assert_eq!(v.len(), 50, "{codec}: every frame of 2 s at 25 fps");
        assert!(v.iter().all(|f| f.codec == want), "{codec}");
        assert!(v[0].keyframe && v[25].keyframe && !v[1].keyframe, "{codec}");
        let pts: Vec<u64> = v.iter().map(|f| f.pts_90k.unwrap()).collect();
        assert!(
            pts.windows(2).all(|w| w[1] == w[0] + 3600),
            "{codec}: {pts:?}"
        );
        assert_eq!(d.stats().dropped_frames, 0);
    }
}

#[test]
fn gstreamer_mpegpsmux_with_psm_and_with_a_lying_psm() {
    let dir = tempfile::tempdir().unwrap();
    let ps = gst_ps(dir.path());
    let (frames, _) = demux_all(&ps);
    let v = video(&frames);
    assert_eq!(v.len(), 50);
    assert!(v.iter().all(|f| f.codec == Codec::H264));
    // Falsify the PSM's stream type (H.264 → H.265): the probe wins.
    let mut lying = ps.clone();
    let at = lying
        .windows(4)
        .position(|w| w == [0, 0, 1, 0xBC])
        .expect("mpegpsmux writes a PSM");
    let entry = lying[at..]
        .windows(2)
        .position(|w| w == [0x1B, 0xE0])
        .expect("the H.264 entry")
        + at;
    lying[entry] = 0x24;
    let (frames, d) = demux_all(&lying);
    let v = video(&frames);
    assert_eq!(v.len(), 50);
    assert!(v.iter().all(|f| f.codec == Codec::H264));
    assert!(d.stats().psm_mismatches >= 1);
}

#[test]
fn loss_reordering_and_truncation_over_rtp() {
    let dir = tempfile::tempdir().unwrap();
    let ps = gst_ps(dir.path());
    let (clean, _) = demux_all(&ps);
    let clean = video(&clean).into_iter().cloned().collect::<Vec<_>>();
    // RTP packets of 1,400 bytes (a pack may straddle packets; no markers, as some devices).
    let mut seq = 1000u16;
    let packets = rtp::packetize(96, &mut seq, 0, 7, &ps, 1400);
    // Swap neighbours everywhere, and drop one packet in the middle of the second GOP.
    let mut order: Vec<usize> = (0..packets.len()).collect();
    for i in (0..order.len() - 1).step_by(2) {
        order.swap(i, i + 1);
    }
    let drop_at = packets.len() * 3 / 4;
    let mut reorder = Reorder::new();
    let mut d = PsDemuxer::new();
    let mut got = Vec::new();
    let mut losses = 0;
    for i in order {
        if i == drop_at {
            continue;
        }
        let p = Packet::parse(&packets[i]).unwrap();
        for o in reorder.push(p.seq, p.marker, p.payload) {
            match o {
                Ordered::Packet { payload, .. } => got.extend(d.push(&payload)),
                Ordered::Lost(_) => {
                    losses += 1;
                    d.lost();
                }
            }
        }
    }
    got.extend(d.end_of_frame());
    assert_eq!(losses, 1);
    let got = video(&got);
    // Every frame emitted is byte-identical to the clean run's frame with the same PTS.
    for f in &got {
        let twin = clean
            .iter()
            .find(|c| c.pts_90k == f.pts_90k)
            .expect("a known PTS");
        assert_eq!(f.data, twin.data, "pts {:?}", f.pts_90k);
    }
    // Frames before the loss all arrive; after it nothing until the next keyframe.
    assert!(got.len() >= 25 && got.len() < 50, "{}", got.len());
    // A truncated pack: cut the stream in the middle of a PES; the rest resyncs.
    let cut = ps.len() / 2;
    let mut d = PsDemuxer::new();
    let mut frames = d.push(&ps[..cut - 500]);
    frames.extend(d.push(&ps[cut..]));
    frames.extend(d.end_of_frame());
    let v = video(&frames);
    assert!(v.len() >= 10 && v.len() < 50, "{}", v.len());
    for f in v {
        assert_eq!(
            Some(&f.data),
            clean
                .iter()
                .find(|c| c.pts_90k == f.pts_90k)
                .map(|c| &c.data)
        );
    }
}

/// Split an Annex B stream with access unit delimiters into access units.
fn access_units(es: &[u8], aud: impl Fn(u8) -> bool) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 0 && es[i + 3] == 1 && aud(es[i + 4]) {
            starts.push(i);
        }
        i += 1;
    }
    starts.push(es.len());
    starts.windows(2).map(|w| es[w[0]..w[1]].to_vec()).collect()
}

#[test]
fn our_ps_is_read_by_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    for (codec, fmt, params, name, aud, want) in [
        (
            "libx264",
            "h264",
            "-x264-params",
            "aud=1",
            (|b: u8| b & 0x1F == 9) as fn(u8) -> bool,
            "h264",
        ),
        (
            "libx265",
            "hevc",
            "-x265-params",
            "aud=1:log-level=error",
            (|b: u8| (b >> 1) & 0x3F == 35) as fn(u8) -> bool,
            "hevc",
        ),
    ] {
        let es_path = dir.path().join(format!("in.{fmt}"));
        run(Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-t",
                "2",
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                codec,
                "-g",
                "25",
                "-bf",
                "0",
                params,
                name,
                "-f",
                fmt,
            ])
            .arg(&es_path));
        let es = std::fs::read(&es_path).unwrap();
        let aus = access_units(&es, aud);
        assert_eq!(aus.len(), 50);
        let video = if fmt == "h264" {
            Codec::H264
        } else {
            Codec::H265
        };
        let m = PsMuxer { video, audio: None };
        let mut ps = Vec::new();
        for (i, au) in aus.iter().enumerate() {
            let key = shouhu_media::ps::is_keyframe(video, au);
            ps.extend(m.video_frame(3600 * (i as u64 + 1), au, key));
        }
        let ps_path = dir.path().join(format!("out-{fmt}.ps"));
        std::fs::write(&ps_path, &ps).unwrap();
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "json",
            ])
            .arg(&ps_path)
            .output()
            .unwrap();
        assert!(
            out.stderr.is_empty(),
            "{fmt}: ffprobe complained: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["streams"][0]["codec_name"], want);
        assert_eq!(v["streams"][0]["nb_read_frames"], "50", "{v}");
        // And our demuxer gives the access units back.
        let (frames, _) = demux_all(&ps);
        assert_eq!(
            frames.iter().map(|f| &f.data).collect::<Vec<_>>(),
            aus.iter().collect::<Vec<_>>()
        );
    }
}

//! Fragmented MP4 segments written by `mp4::fmp4::Writer` from ffmpeg's elementary streams
//! (H.264 with G.711 A-law, H.265 with AAC), then read back by ffprobe and decoded by ffmpeg:
//! the codecs, the picture size, every frame, the duration within one frame, no errors.

use std::path::Path;
use std::process::Command;

use shouhu_media::mp4::fmp4::{AudioConfig, VideoConfig, Writer};
use shouhu_media::mp4::params::nal_units;
use shouhu_media::ps::Codec;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg (Debian package ffmpeg) runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Access units of an Annex B stream with access unit delimiters, each with whether it is a
/// keyframe.
fn access_units(codec: Codec, data: &[u8]) -> Vec<(Vec<u8>, bool)> {
    type Is = fn(&[u8]) -> bool;
    let (aud, key): (Is, Is) = match codec {
        Codec::H265 => (
            |n| (n[0] >> 1) & 0x3F == 35,
            |n| (16..=21).contains(&((n[0] >> 1) & 0x3F)),
        ),
        _ => (|n| n[0] & 0x1F == 9, |n| n[0] & 0x1F == 5),
    };
    let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
    for nal in nal_units(data) {
        if nal.is_empty() {
            continue;
        }
        if aud(nal) || out.is_empty() {
            out.push((Vec::new(), false));
        }
        let au = out.last_mut().unwrap();
        au.0.extend_from_slice(&[0, 0, 0, 1]);
        au.0.extend_from_slice(nal);
        au.1 |= key(nal);
    }
    out
}

/// The video stream of an ffprobe answer.
fn video_stream(p: &serde_json::Value) -> serde_json::Value {
    p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap()
        .clone()
}

fn probe(file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffprobe reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn decodes_cleanly(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffmpeg decoding reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mux `aus` (25 fps) and `audio` frames (each with its 90 kHz time) into one segment, a
/// fragment per keyframe.
fn mux(
    codec: Codec,
    aus: &[(Vec<u8>, bool)],
    audio: AudioConfig,
    frames: &[(u64, Vec<u8>)],
) -> Vec<u8> {
    let video = VideoConfig::from_access_unit(codec, &aus[0].0)
        .unwrap()
        .expect("parameter sets in the first access unit");
    let mut w = Writer::new(Some(video), Some(audio));
    let mut out = w.init();
    let mut a = frames.iter().peekable();
    for (i, (au, key)) in aus.iter().enumerate() {
        let t = i as u64 * 3600;
        if *key && i > 0 {
            out.extend(w.fragment().unwrap());
        }
        while let Some((at, f)) = a.next_if(|(at, _)| *at <= t) {
            w.push_audio(*at, f).unwrap();
        }
        w.push_video(t, t, *key, au).unwrap();
    }
    for (at, f) in a {
        w.push_audio(*at, f).unwrap();
    }
    out.extend(w.finish().unwrap());
    out
}

/// Four seconds of H.264 (25 fps, a keyframe a second, no B-frames, with access unit
/// delimiters) of `size`, as access units, and of G.711 A-law at 8 kHz.
fn h264_and_alaw(dir: &Path, size: &str) -> (Vec<(Vec<u8>, bool)>, Vec<u8>) {
    let (v, a) = (dir.join("v.h264"), dir.join("a.alaw"));
    let src = format!("testsrc2=size={size}:rate=25");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &src,
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-g",
        "25",
        "-bsf:v",
        "h264_metadata=aud=insert",
        "-f",
        "h264",
        v.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
        "-t",
        "4",
        "-c:a",
        "pcm_alaw",
        "-f",
        "alaw",
        a.to_str().unwrap(),
    ]);
    (
        access_units(Codec::H264, &std::fs::read(&v).unwrap()),
        std::fs::read(&a).unwrap(),
    )
}

#[test]
fn h264_with_g711a_plays() {
    let dir = tempfile::tempdir().unwrap();
    let (aus, pcm) = h264_and_alaw(dir.path(), "640x360");
    assert_eq!(aus.len(), 100);
    assert_eq!(aus.iter().filter(|a| a.1).count(), 4);
    // G.711 in 20 ms frames (160 samples).
    let frames: Vec<(u64, Vec<u8>)> = pcm
        .chunks(160)
        .enumerate()
        .map(|(k, c)| (k as u64 * 1800, c.to_vec()))
        .collect();
    let seg = mux(Codec::H264, &aus, AudioConfig::G711A, &frames);
    let f = dir.path().join("seg.mp4");
    std::fs::write(&f, &seg).unwrap();
    let p = probe(&f);
    let streams = p["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(video["nb_read_frames"], "100");
    let vd: f64 = video["duration"].as_str().unwrap().parse().unwrap();
    assert!((vd - 4.0).abs() <= 0.04 + 1e-9, "video duration {vd}");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "pcm_alaw");
    assert_eq!(audio["sample_rate"], "8000");
    let ad: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!((ad - 4.0).abs() <= 0.04 + 1e-9, "audio duration {ad}");
    decodes_cleanly(&f);
}

#[test]
fn h265_with_aac_plays() {
    let dir = tempfile::tempdir().unwrap();
    let (v, a) = (dir.path().join("v.hevc"), dir.path().join("a.aac"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25",
        "-t",
        "2",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error:bframes=0:keyint=25:min-keyint=25:scenecut=0",
        "-bsf:v",
        "hevc_metadata=aud=insert",
        "-f",
        "hevc",
        v.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-c:a",
        "aac",
        "-ac",
        "1",
        "-f",
        "adts",
        a.to_str().unwrap(),
    ]);
    let aus = access_units(Codec::H265, &std::fs::read(&v).unwrap());
    assert_eq!(aus.len(), 50);
    let adts = std::fs::read(&a).unwrap();
    let mut frames = Vec::new();
    let mut i = 0;
    while i + 7 <= adts.len() {
        let len = ((usize::from(adts[i + 3] & 3)) << 11)
            | (usize::from(adts[i + 4]) << 3)
            | usize::from(adts[i + 5] >> 5);
        frames.push((
            frames.len() as u64 * 1024 * 90_000 / 48_000,
            adts[i..i + len].to_vec(),
        ));
        i += len;
    }
    let audio = AudioConfig::from_frame(Codec::Aac, &frames[0].1).unwrap();
    assert_eq!(audio.rate(), 48_000);
    let seg = mux(Codec::H265, &aus, audio, &frames);
    let f = dir.path().join("seg.mp4");
    std::fs::write(&f, &seg).unwrap();
    let p = probe(&f);
    let streams = p["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video["codec_name"], "hevc");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(video["nb_read_frames"], "50");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(
        audio["nb_read_frames"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        frames.len()
    );
    decodes_cleanly(&f);
}

fn frame(codec: Codec, t: u64, key: bool, data: Vec<u8>) -> shouhu_media::ps::Frame {
    shouhu_media::ps::Frame {
        codec,
        pts_90k: Some(t),
        dts_90k: Some(t),
        data,
        keyframe: key,
        received: None,
        rtp_payloads: Default::default(),
    }
}

#[test]
fn segments_are_cut_at_keyframes_and_each_plays_alone() {
    use shouhu_media::mp4::segmenter::{Output, Segmenter};
    let dir = tempfile::tempdir().unwrap();
    let (aus, pcm) = h264_and_alaw(dir.path(), "320x240");
    // Timestamps near the 33-bit wrap, so the segmenter has to unwrap them.
    let base: u64 = (1 << 33) - 90_000;
    let mut frames = Vec::new();
    let mut chunks = pcm.chunks(160).enumerate().peekable();
    for (i, (au, key)) in aus.iter().enumerate() {
        let t = i as u64 * 3600;
        while let Some((k, c)) = chunks.next_if(|(k, _)| *k as u64 * 1800 <= t) {
            frames.push(frame(
                Codec::G711A,
                (base + k as u64 * 1800) % (1 << 33),
                true,
                c.to_vec(),
            ));
        }
        frames.push(frame(Codec::H264, (base + t) % (1 << 33), *key, au.clone()));
    }
    let mut seg = Segmenter::new(1);
    let mut out = Vec::new();
    for f in &frames {
        seg.push(f, &mut out);
    }
    seg.finish(&mut out);
    // Write each segment to its own file as the recorder would.
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut infos = Vec::new();
    for o in out {
        match o {
            Output::Begin { index } => {
                assert_eq!(index as usize, files.len());
                files.push(Vec::new());
            }
            Output::Data(d) => files.last_mut().unwrap().extend(d),
            Output::End(info) => {
                assert_eq!(info.bytes as usize, files.last().unwrap().len());
                infos.push(info);
            }
        }
    }
    assert_eq!(files.len(), 4, "{infos:?}");
    assert_eq!(seg.stats.dropped_video, 0);
    let mut total = 0;
    for (k, (bytes, info)) in files.iter().zip(&infos).enumerate() {
        if k > 0 {
            assert_eq!(
                infos[k - 1].end_90k,
                info.start_90k,
                "segments are contiguous"
            );
        }
        assert_eq!(
            info.start_90k,
            k as u64 * 90_000,
            "the recording's time 0 is its first frame"
        );
        let f = dir.path().join(format!("seg{k}.mp4"));
        std::fs::write(&f, bytes).unwrap();
        let p = probe(&f);
        let video = video_stream(&p);
        let n: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
        total += n;
        // ffprobe gives a fragmented file's stream start and its end time (from 0) as duration.
        let start: f64 = video["start_time"].as_str().unwrap().parse().unwrap();
        let end: f64 = video["duration"].as_str().unwrap().parse().unwrap();
        let (istart, iend) = (
            info.start_90k as f64 / 90_000.0,
            info.end_90k as f64 / 90_000.0,
        );
        assert!(
            (start - istart).abs() <= 0.04 + 1e-9 && (end - iend).abs() <= 0.04 + 1e-9,
            "segment {k}: {start}–{end} s in the file, {istart}–{iend} s indexed"
        );
        assert!(p["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["codec_name"] == "pcm_alaw"));
        decodes_cleanly(&f);
    }
    assert_eq!(total, 100);
}

/// A camera's MP4 file (H.264 or H.265 with B-frames, AAC; the index at the end or at the
/// front) read by `mp4::demux` and cut by the segmenter: every segment plays alone with both
/// tracks, the segments hold every video frame of the file, and their spans add up to its
/// duration within a frame.
#[test]
fn camera_files_are_imported_into_segments() {
    use shouhu_media::mp4::demux;
    use shouhu_media::mp4::segmenter::{Output, Segmenter};
    let dir = tempfile::tempdir().unwrap();
    // Body cameras encode without B-frames; a file with them is imported too, its spans (decode
    // times) then trail the presentation by the reordering delay.
    for (name, vcodec, extra, bframes) in [
        ("h264.mp4", "libx264", &["-bf", "0"][..], false),
        (
            "h265.mp4",
            "libx265",
            &["-x265-params", "log-level=error:bframes=0"][..],
            false,
        ),
        (
            "faststart.mp4",
            "libx264",
            &["-bf", "0", "-movflags", "+faststart"][..],
            false,
        ),
        ("bframes.mp4", "libx264", &["-bf", "2"][..], true),
    ] {
        let src = dir.path().join(name);
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3.2",
            "-c:v",
            vcodec,
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
        ];
        args.extend_from_slice(extra);
        let s = src.to_str().unwrap();
        args.push(s);
        ffmpeg(&args);
        let file = std::fs::read(&src).unwrap();
        let movie = demux::read(&file).unwrap();
        let expected_frames = movie.video.samples.len();
        assert_eq!(expected_frames, 80, "{name}");
        let mut seg = Segmenter::new(1);
        let mut out = Vec::new();
        let mut files: Vec<(Vec<u8>, u64, u64)> = Vec::new();
        let mut cur = Vec::new();
        let mut collect = |out: &mut Vec<Output>, files: &mut Vec<(Vec<u8>, u64, u64)>| {
            for o in out.drain(..) {
                match o {
                    Output::Begin { .. } => cur.clear(),
                    Output::Data(d) => cur.extend(d),
                    Output::End(i) => {
                        files.push((std::mem::take(&mut cur), i.start_90k, i.end_90k))
                    }
                }
            }
        };
        let frames: Vec<_> = movie.frames(&file).collect::<Result<_, _>>().unwrap();
        let cts0 = frames
            .iter()
            .find(|f| f.codec.is_video())
            .map(|f| f.pts_90k.unwrap() - f.dts_90k.unwrap())
            .unwrap();
        if let Some(a) = frames.iter().find(|f| !f.codec.is_video()) {
            seg.prime(a);
        }
        for f in &frames {
            seg.push(f, &mut out);
            collect(&mut out, &mut files);
        }
        seg.finish(&mut out);
        collect(&mut out, &mut files);
        assert_eq!(
            seg.stats.dropped_video + seg.stats.refused,
            0,
            "{name}: {:?}",
            seg.stats
        );
        assert!(files.len() >= 3, "{name}: {} segments", files.len());
        let mut video_frames = 0;
        for (i, (bytes, start, end)) in files.iter().enumerate() {
            let p = dir.path().join(format!("{name}.{i}.mp4"));
            std::fs::write(&p, bytes).unwrap();
            let v = probe(&p);
            let codecs: Vec<&str> = v["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["codec_name"].as_str().unwrap())
                .collect();
            let want = if vcodec == "libx265" { "hevc" } else { "h264" };
            assert_eq!(codecs, [want, "aac"], "{name} segment {i}");
            video_frames += v["streams"][0]["nb_read_frames"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap();
            // ffprobe gives presentation times; the index holds decode times, which B-frames
            // delay by the reordering.
            let dur: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
            let tolerance = if bframes { 0.2 } else { 0.041 };
            assert!(
                (dur - (*end + cts0) as f64 / 90_000.0).abs() <= tolerance,
                "{name} segment {i}: ends {dur}, index {}",
                *end as f64 / 90_000.0
            );
            assert!(end > start);
            decodes_cleanly(&p);
        }
        assert_eq!(video_frames, expected_frames, "{name}: every frame kept");
        let total = files.last().unwrap().2 - files[0].1;
        assert!(
            (total as f64 / 90_000.0 - 3.2).abs() <= 0.041,
            "{name}: {total}"
        );
    }
}

/// Opus (what a phone app sends over WebRTC) is kept as it is: a file with H.264 and Opus read
/// by `mp4::demux`, cut by the segmenter, plays with an `opus` track of the file's duration
/// (within one 20 ms packet) and decodes without errors.
#[test]
fn opus_sound_is_recorded_as_it_is() {
    use shouhu_media::mp4::demux;
    use shouhu_media::mp4::segmenter::{Output, Segmenter};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("opus.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-g",
        "50",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        src.to_str().unwrap(),
    ]);
    let file = std::fs::read(&src).unwrap();
    let movie = demux::read(&file).unwrap();
    let frames: Vec<_> = movie.frames(&file).collect::<Result<_, _>>().unwrap();
    let opus = frames.iter().filter(|f| f.codec == Codec::Opus).count();
    assert!(opus >= 95, "{opus} Opus packets");
    let mut seg = Segmenter::new(60);
    seg.prime(frames.iter().find(|f| f.codec == Codec::Opus).unwrap());
    let mut out = Vec::new();
    for f in &frames {
        seg.push(f, &mut out);
    }
    seg.finish(&mut out);
    let mut data = Vec::new();
    let mut ends = 0;
    for o in out {
        match o {
            Output::Begin { .. } => {}
            Output::Data(d) => data.extend(d),
            Output::End(i) => {
                ends += 1;
                assert_eq!(i.audio, Some(Codec::Opus));
            }
        }
    }
    assert_eq!(ends, 1);
    let f = dir.path().join("seg.mp4");
    std::fs::write(&f, &data).unwrap();
    let p = probe(&f);
    let streams = p["streams"].as_array().unwrap();
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "opus");
    assert_eq!(audio["sample_rate"], "48000");
    let ad: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!((ad - 2.0).abs() <= 0.02 + 1e-9, "audio duration {ad}");
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video["nb_read_frames"], "50");
    decodes_cleanly(&f);
}

/// A resumed download repeats up to a second of what is stored (devices seek to whole
/// seconds): the segmenter starts at the first keyframe at or after the stored end, and the
/// segment it writes plays alone from there.
#[test]
fn a_resumed_stream_starts_at_the_first_keyframe_after_what_is_stored() {
    use shouhu_media::mp4::segmenter::{Output, Segmenter};
    let dir = tempfile::tempdir().unwrap();
    let (aus, _) = h264_and_alaw(dir.path(), "320x240");
    // The stream's first frame is at 10 s of the recording; 11.5 s are stored.
    let (at, skip) = (10 * 90_000, 90_000 + 45_000);
    let mut seg = Segmenter::new(60);
    seg.resume(at, at + skip);
    let mut out = Vec::new();
    for (i, (au, key)) in aus.iter().enumerate() {
        let f = frame(Codec::H264, 7_200 + i as u64 * 3600, *key, au.clone());
        seg.push(&f, &mut out);
    }
    seg.finish(&mut out);
    let first_key = aus
        .iter()
        .enumerate()
        .find(|(i, (_, key))| *key && *i as u64 * 3600 >= skip)
        .map(|(i, _)| i as u64 * 3600)
        .expect("a keyframe after 1.5 s");
    assert_eq!(first_key, 2 * 90_000, "keyframes every second");
    let mut file = Vec::new();
    let mut infos = Vec::new();
    for o in out {
        match o {
            Output::Begin { .. } => file.clear(),
            Output::Data(d) => file.extend(d),
            Output::End(info) => infos.push(info),
        }
    }
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert_eq!(infos[0].start_90k, at + first_key);
    assert_eq!(infos[0].end_90k, at + aus.len() as u64 * 3600);
    // Frames before 11.5 s are skipped; the ones up to the keyframe at 12 s wait for it.
    let before = skip.div_ceil(3600);
    assert_eq!(seg.stats.skipped, before);
    assert_eq!(seg.stats.dropped_video, first_key / 3600 - before);
    let f = dir.path().join("resumed.mp4");
    std::fs::write(&f, &file).unwrap();
    let p = probe(&f);
    let video = video_stream(&p);
    let n: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        n,
        aus.len() as u64 - first_key / 3600,
        "every frame from the keyframe on decodes"
    );
    let start: f64 = video["start_time"].as_str().unwrap().parse().unwrap();
    assert!(
        (start - (at + first_key) as f64 / 90_000.0).abs() < 0.001,
        "the file's timeline is the recording's: {start}"
    );
}

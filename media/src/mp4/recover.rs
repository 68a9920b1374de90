//! Recovering a segment cut short by a crash: a fragmented MP4 file whose end may be missing.
//!
//! The recorder appends a segment fragment by fragment (`moof` + `mdat`), so what a crash
//! leaves is the init section, complete fragments, and perhaps half of one. [`cut`] finds the
//! end of the last complete fragment and the span those fragments cover (from each track's
//! `tfdt` and the `trun` sample durations), so the prefix can be indexed as a playable
//! segment. Reads untrusted bytes: bounded, never panics.

use crate::ps::Codec;

/// The playable prefix of a partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Bytes to keep.
    pub len: usize,
    /// First decode time of the video (else audio), 90 kHz.
    pub start_90k: u64,
    /// End of the last complete sample, 90 kHz.
    pub end_90k: u64,
    /// Video codec of the init section.
    pub video: Option<Codec>,
    /// Audio codec.
    pub audio: Option<Codec>,
    /// Bytes of media data kept.
    pub payload_bytes: u64,
}

/// Boxes in `b`: (type, body, end offset of the box within `b`); stops at a box that does not
/// fit (the cut point of a truncated file).
fn boxes(b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8], usize)> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = b.get(at..at + 8)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let kind = [h[4], h[5], h[6], h[7]];
        let (size, head) = match size32 {
            1 => {
                let l = b.get(at + 8..at + 16)?;
                (u64::from_be_bytes(l.try_into().ok()?), 16)
            }
            0 => return None,
            s => (s, 8),
        };
        let end = at.checked_add(usize::try_from(size).ok()?)?;
        if size < head as u64 || end > b.len() {
            return None;
        }
        let body = &b[at + head..end];
        at = end;
        Some((kind, body, end))
    })
}

/// Boxes in `b` (see `boxes`), for the demuxer.
pub(crate) fn boxes_of(b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8], usize)> {
    boxes(b)
}

/// The body of the first child box of `kind`.
pub(crate) fn child_of<'a>(b: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    child(b, kind)
}

fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(b)
        .find(|(k, _, _)| k == kind)
        .map(|(_, body, _)| body)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[derive(Debug, Clone, Copy)]
struct TrackInfo {
    id: u32,
    timescale: u32,
    video: bool,
    codec: Option<Codec>,
}

fn track(trak: &[u8]) -> Option<TrackInfo> {
    let tkhd = child(trak, b"tkhd")?;
    let id = if tkhd.first()? == &1 {
        u32_at(tkhd, 20)?
    } else {
        u32_at(tkhd, 12)?
    };
    let mdia = child(trak, b"mdia")?;
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = if mdhd.first()? == &1 {
        u32_at(mdhd, 20)?
    } else {
        u32_at(mdhd, 12)?
    };
    let hdlr = child(mdia, b"hdlr")?;
    let handler = hdlr.get(8..12)?;
    let stsd = child(child(child(mdia, b"minf")?, b"stbl")?, b"stsd")?;
    let entry = stsd.get(12..16)?;
    let codec = match entry {
        b"avc1" | b"avc3" => Some(Codec::H264),
        b"hvc1" | b"hev1" => Some(Codec::H265),
        b"alaw" => Some(Codec::G711A),
        b"ulaw" => Some(Codec::G711U),
        b"mp4a" => Some(Codec::Aac),
        _ => None,
    };
    (timescale > 0).then_some(TrackInfo {
        id,
        timescale,
        video: handler == b"vide",
        codec,
    })
}

/// Per track: (first decode time, end) in the track's timescale, from one `moof`.
fn fragment_spans(moof: &[u8]) -> Vec<(u32, u64, u64)> {
    let mut v = Vec::new();
    for (k, traf, _) in boxes(moof) {
        if &k != b"traf" {
            continue;
        }
        let Some(tfhd) = child(traf, b"tfhd") else {
            continue;
        };
        let Some(id) = u32_at(tfhd, 4) else { continue };
        let tf_flags = u32_at(tfhd, 0).unwrap_or(0) & 0x00FF_FFFF;
        // Optional tfhd fields before default-sample-duration.
        let mut at = 8;
        if tf_flags & 0x01 != 0 {
            at += 8;
        }
        if tf_flags & 0x02 != 0 {
            at += 4;
        }
        let default_duration = if tf_flags & 0x08 != 0 {
            u32_at(tfhd, at).unwrap_or(0)
        } else {
            0
        };
        let Some(tfdt) = child(traf, b"tfdt") else {
            continue;
        };
        let base = if tfdt.first() == Some(&1) {
            u64_at(tfdt, 4)
        } else {
            u32_at(tfdt, 4).map(u64::from)
        };
        let Some(base) = base else { continue };
        let mut total = 0u64;
        for (k, trun, _) in boxes(traf) {
            if &k != b"trun" {
                continue;
            }
            let flags = u32_at(trun, 0).unwrap_or(0) & 0x00FF_FFFF;
            let Some(count) = u32_at(trun, 4) else { break };
            let mut at = 8;
            if flags & 0x01 != 0 {
                at += 4;
            }
            if flags & 0x04 != 0 {
                at += 4;
            }
            let per = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|f| flags & **f != 0)
                .count()
                * 4;
            // A count the box cannot hold is corrupt.
            if per > 0 && (count as usize).saturating_mul(per) > trun.len().saturating_sub(at) {
                break;
            }
            if flags & 0x100 == 0 {
                total = total.saturating_add(u64::from(default_duration) * u64::from(count));
                continue;
            }
            for _ in 0..count {
                total = total.saturating_add(u64::from(u32_at(trun, at).unwrap_or(0)));
                at += per;
            }
        }
        v.push((id, base, base.saturating_add(total)));
    }
    v
}

/// One complete fragment (`moof` + `mdat`) of a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Byte offset of its `moof`.
    pub start: usize,
    /// Byte offset after its `mdat`.
    pub end: usize,
    /// First decode time, 90 kHz (the video track's; the audio's when there is no video).
    pub start_90k: u64,
    /// End of its last sample, 90 kHz.
    pub end_90k: u64,
    /// Bytes of media data.
    pub payload: u64,
}

/// A segment file's layout: its init section and complete fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Length of the init section (everything before the first `moof`).
    pub init_len: usize,
    /// Video codec.
    pub video: Option<Codec>,
    /// Audio codec.
    pub audio: Option<Codec>,
    /// Complete fragments in file order.
    pub fragments: Vec<Fragment>,
}

/// The layout of a (possibly truncated) fragmented MP4 file: `None` without an init section.
pub fn layout(file: &[u8]) -> Option<Layout> {
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut pending_moof: Option<(&[u8], usize)> = None;
    let mut init_len = None;
    let mut prev_end = 0usize;
    let mut fragments = Vec::new();
    for (kind, body, box_end) in boxes(file) {
        let box_start = prev_end;
        prev_end = box_end;
        match &kind {
            b"moov" => {
                tracks = boxes(body)
                    .filter(|(k, _, _)| k == b"trak")
                    .filter_map(|(_, t, _)| track(t))
                    .take(8)
                    .collect();
            }
            b"moof" => {
                init_len.get_or_insert(box_start);
                pending_moof = Some((body, box_start));
            }
            b"mdat" => {
                let Some((moof, start)) = pending_moof.take() else {
                    continue;
                };
                if tracks.is_empty() {
                    return None;
                }
                let mut v: Option<(u64, u64)> = None;
                let mut a: Option<(u64, u64)> = None;
                for (id, s, e) in fragment_spans(moof) {
                    let Some(t) = tracks.iter().find(|t| t.id == id) else {
                        continue;
                    };
                    let to90 = |x: u64| (u128::from(x) * 90_000 / u128::from(t.timescale)) as u64;
                    let span = if t.video { &mut v } else { &mut a };
                    *span = Some(match *span {
                        None => (to90(s), to90(e)),
                        Some((s0, e0)) => (s0.min(to90(s)), e0.max(to90(e))),
                    });
                }
                if let Some((s, e)) = v.or(a) {
                    fragments.push(Fragment {
                        start,
                        end: box_end,
                        start_90k: s,
                        end_90k: e,
                        payload: body.len() as u64,
                    });
                }
            }
            _ => {}
        }
    }
    if tracks.is_empty() {
        return None;
    }
    Some(Layout {
        init_len: init_len.unwrap_or(prev_end),
        video: tracks.iter().find(|t| t.video).and_then(|t| t.codec),
        audio: tracks.iter().find(|t| !t.video).and_then(|t| t.codec),
        fragments,
    })
}

/// The playable prefix of a (possibly truncated) fragmented MP4 segment: `None` when it has no
/// init section or no complete fragment.
pub fn cut(file: &[u8]) -> Option<Cut> {
    let l = layout(file)?;
    let first = l.fragments.first()?;
    let last = l.fragments.last()?;
    let end_90k = l.fragments.iter().map(|f| f.end_90k).max()?;
    (end_90k > first.start_90k).then(|| Cut {
        len: last.end,
        start_90k: first.start_90k,
        end_90k,
        video: l.video,
        audio: l.audio,
        payload_bytes: l.fragments.iter().map(|f| f.payload).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: &[u8] = include_bytes!("../../../fuzz/corpus-seed/mp4_recover/whole.mp4");

    #[test]
    fn a_truncated_file_is_cut_to_its_last_complete_fragment() {
        // ffmpeg's fragmented MP4 (H.264 every 0.5 s, AAC): 1 s in fragments.
        let l = layout(WHOLE).expect("layout");
        assert_eq!(l.video, Some(Codec::H264));
        assert_eq!(l.audio, Some(Codec::Aac));
        assert!(l.fragments.len() >= 2, "{l:?}");
        // ffmpeg ends the file with an `mfra` index after the last fragment.
        let end = l.fragments.last().map(|f| f.end).unwrap();
        assert_eq!(&WHOLE[end + 4..end + 8], b"mfra");
        for w in l.fragments.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        let whole = cut(WHOLE).expect("cut");
        assert_eq!(whole.len, end);
        assert!(
            (whole.end_90k - whole.start_90k).abs_diff(90_000) <= 9_000,
            "{whole:?}"
        );
        // Cut inside the second fragment: only the first one is kept.
        let second = &l.fragments[1];
        let short = &WHOLE[..second.start + (second.end - second.start) / 2];
        let c = cut(short).expect("cut");
        assert_eq!(c.len, l.fragments[0].end);
        assert_eq!(
            (c.start_90k, c.end_90k),
            (l.fragments[0].start_90k, l.fragments[0].end_90k)
        );
        // Only the init section: nothing playable.
        assert_eq!(cut(&WHOLE[..l.init_len + 10]), None);
    }

    #[test]
    fn times_near_the_top_of_u64_do_not_overflow() {
        // Found by the fuzzer: a `tfdt` near 2^64 plus the sample durations.
        let crash = include_bytes!("../../../fuzz/corpus-seed/mp4_recover/overflow-tfdt.mp4");
        let _ = layout(crash);
        let _ = cut(crash);
    }

    #[test]
    fn noise_and_empty_input_give_nothing() {
        assert_eq!(cut(&[]), None);
        assert_eq!(cut(&[0, 0, 0, 1]), None);
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(cut(&noise), None);
        // Box sizes that overflow or lie.
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"moov");
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(cut(&b), None);
    }
}

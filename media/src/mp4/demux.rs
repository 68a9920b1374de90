//! Reading a camera's MP4 file (as docking stations deliver them) into the frames the recorder
//! takes: the `moov` sample tables (`stsz`, `stco`/`co64`, `stsc`, `stts`, `ctts`, `stss`) give
//! each sample's place and times; H.264/H.265 samples become Annex B access units (parameter
//! sets from `avcC`/`hvcC` before each sync sample), AAC samples ADTS frames, G.711 samples as
//! they are. Sans-IO: [`parse`] reads the `moov` box's bytes, [`Movie::frames`] the samples
//! from the file's bytes. Reads untrusted bytes: bounded, never panics, every problem named.

use super::recover::{boxes_of, child_of};
use crate::ps::{Codec, Frame};

/// Why a file cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    /// No `moov` box (not an MP4 file, or cut before its index).
    #[error("not an MP4 file with an index (no moov box)")]
    NoMoov,
    /// A fragmented file (the recorder's own segments and exports are imported as they are not).
    #[error("a fragmented MP4 file (moof) cannot be imported; upload the camera's original file")]
    Fragmented,
    /// No video track the recorder can keep.
    #[error("no H.264 or H.265 video track")]
    NoVideo,
    /// A sample table that does not add up.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A sample that lies outside the file.
    #[error("sample {index} of track {track} lies outside the file (truncated upload?)")]
    Truncated {
        /// Track id.
        track: u32,
        /// Sample index.
        index: usize,
    },
}

/// Where one sample is and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    /// Byte offset in the file.
    pub offset: u64,
    /// Size.
    pub size: u32,
    /// Decode time, track timescale.
    pub dts: u64,
    /// Presentation minus decode time, track timescale.
    pub cts: i64,
    /// A sync (key) sample.
    pub sync: bool,
}

/// One track the recorder can keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Track id.
    pub id: u32,
    /// Codec.
    pub codec: Codec,
    /// Ticks per second.
    pub timescale: u32,
    /// Samples in decode order.
    pub samples: Vec<SampleRef>,
    /// Video: parameter sets (VPS, SPS, PPS) as NAL units; AAC: the AudioSpecificConfig.
    pub config: Vec<Vec<u8>>,
    /// Video: bytes of each NAL unit's length prefix.
    pub nal_len: u8,
}

/// A parsed `moov`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// When the file says it was made, ms since the Unix epoch (from `mvhd`; cameras often
    /// write local time here, so the importer prefers a time it is given).
    pub created_ms: Option<i64>,
    /// The video track.
    pub video: Track,
    /// The first audio track the recorder can keep.
    pub audio: Option<Track>,
}

/// Samples a file may declare (a 24 h recording at 60 fps with audio is far below).
const MAX_SAMPLES: u64 = 20_000_000;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Entries of a full box's table: (count, entries' bytes) after `skip` bytes past version/flags.
fn table<'a>(
    b: &'a [u8],
    skip: usize,
    entry: usize,
    what: &'static str,
) -> Result<(usize, &'a [u8]), DemuxError> {
    let n = u32_at(b, 4 + skip).ok_or(DemuxError::Malformed(what))? as usize;
    let body = b.get(8 + skip..).ok_or(DemuxError::Malformed(what))?;
    if n.checked_mul(entry).is_none_or(|l| l > body.len()) || n as u64 > MAX_SAMPLES {
        return Err(DemuxError::Malformed(what));
    }
    Ok((n, body))
}

/// Find the top-level `moov` of a file: (its body). A `moof` before it means a fragmented file.
pub fn find_moov(file: &[u8]) -> Result<&[u8], DemuxError> {
    let mut moov = None;
    for (k, body, _) in boxes_of(file) {
        match &k {
            b"moov" => moov = Some(body),
            b"moof" => return Err(DemuxError::Fragmented),
            _ => {}
        }
    }
    moov.ok_or(DemuxError::NoMoov)
}

/// Find and parse the `moov` of a whole file.
pub fn read(file: &[u8]) -> Result<Movie, DemuxError> {
    parse(find_moov(file)?, file.len() as u64)
}

/// Parse a `moov` box's body; `file_len` is the length of the file it came from (the samples it
/// declares must fit in it).
pub fn parse(moov: &[u8], file_len: u64) -> Result<Movie, DemuxError> {
    let created_ms = child_of(moov, b"mvhd").and_then(|m| {
        let secs = if m.first() == Some(&1) {
            u64_at(m, 4)?
        } else {
            u64::from(u32_at(m, 4)?)
        };
        // Seconds since 1904-01-01; 0 means unknown.
        i64::try_from(secs)
            .ok()?
            .checked_sub(2_082_844_800)
            .filter(|s| *s > 0)?
            .checked_mul(1000)
    });
    if child_of(moov, b"mvex").is_some() {
        return Err(DemuxError::Fragmented);
    }
    let mut video = None;
    let mut audio = None;
    for (k, trak, _) in boxes_of(moov) {
        if &k != b"trak" {
            continue;
        }
        let Some(t) = track(trak, file_len)? else {
            continue;
        };
        if t.codec.is_video() {
            video.get_or_insert(t);
        } else {
            audio.get_or_insert(t);
        }
    }
    Ok(Movie {
        created_ms,
        video: video.ok_or(DemuxError::NoVideo)?,
        audio,
    })
}

fn track(trak: &[u8], file_len: u64) -> Result<Option<Track>, DemuxError> {
    let m = DemuxError::Malformed;
    let tkhd = child_of(trak, b"tkhd").ok_or(m("tkhd"))?;
    let id = if tkhd.first() == Some(&1) {
        u32_at(tkhd, 20)
    } else {
        u32_at(tkhd, 12)
    }
    .ok_or(m("tkhd"))?;
    let mdia = child_of(trak, b"mdia").ok_or(m("mdia"))?;
    let mdhd = child_of(mdia, b"mdhd").ok_or(m("mdhd"))?;
    let timescale = if mdhd.first() == Some(&1) {
        u32_at(mdhd, 20)
    } else {
        u32_at(mdhd, 12)
    }
    .filter(|t| *t > 0)
    .ok_or(m("mdhd"))?;
    let stbl = child_of(child_of(mdia, b"minf").ok_or(m("minf"))?, b"stbl").ok_or(m("stbl"))?;
    let stsd = child_of(stbl, b"stsd").ok_or(m("stsd"))?;
    let entry = stsd.get(8..).ok_or(m("stsd"))?;
    let Some((kind, body, _)) = boxes_of(entry).next() else {
        return Err(m("stsd"));
    };
    let (codec, config, nal_len) = match &kind {
        b"avc1" | b"avc3" => {
            let rec = child_of(body.get(78..).ok_or(m("avc1"))?, b"avcC").ok_or(m("avcC"))?;
            let (sets, len) = avcc(rec).ok_or(m("avcC"))?;
            (Codec::H264, sets, len)
        }
        b"hvc1" | b"hev1" => {
            let rec = child_of(body.get(78..).ok_or(m("hvc1"))?, b"hvcC").ok_or(m("hvcC"))?;
            let (sets, len) = hvcc(rec).ok_or(m("hvcC"))?;
            (Codec::H265, sets, len)
        }
        b"mp4a" => {
            let asc = body
                .get(28..)
                .and_then(|b| child_of(b, b"esds"))
                .and_then(esds_asc)
                .ok_or(m("esds"))?;
            (Codec::Aac, vec![asc], 0)
        }
        b"alaw" => (Codec::G711A, Vec::new(), 0),
        b"ulaw" => (Codec::G711U, Vec::new(), 0),
        b"Opus" => (Codec::Opus, Vec::new(), 0),
        _ => return Ok(None),
    };
    let samples = samples(stbl, id, file_len)?;
    Ok(Some(Track {
        id,
        codec,
        timescale,
        samples,
        config,
        nal_len,
    }))
}

/// Parameter sets and NAL length size of an `avcC` record.
fn avcc(r: &[u8]) -> Option<(Vec<Vec<u8>>, u8)> {
    let len = (r.get(4)? & 3) + 1;
    let mut at = 5;
    let mut sets = Vec::new();
    let n_sps = usize::from(r.get(at)? & 0x1F);
    at += 1;
    for _ in 0..n_sps {
        let l = usize::from(u16::from_be_bytes(r.get(at..at + 2)?.try_into().ok()?));
        let set = r.get(at + 2..at + 2 + l)?;
        if !set.is_empty() {
            sets.push(set.to_vec());
        }
        at += 2 + l;
    }
    let n_pps = usize::from(*r.get(at)?);
    at += 1;
    for _ in 0..n_pps {
        let l = usize::from(u16::from_be_bytes(r.get(at..at + 2)?.try_into().ok()?));
        let set = r.get(at + 2..at + 2 + l)?;
        if !set.is_empty() {
            sets.push(set.to_vec());
        }
        at += 2 + l;
    }
    Some((sets, len))
}

/// Parameter sets and NAL length size of an `hvcC` record.
fn hvcc(r: &[u8]) -> Option<(Vec<Vec<u8>>, u8)> {
    let len = (r.get(21)? & 3) + 1;
    let arrays = usize::from(*r.get(22)?);
    let mut at = 23;
    let mut sets = Vec::new();
    for _ in 0..arrays {
        let n = usize::from(u16::from_be_bytes(r.get(at + 1..at + 3)?.try_into().ok()?));
        at += 3;
        for _ in 0..n {
            let l = usize::from(u16::from_be_bytes(r.get(at..at + 2)?.try_into().ok()?));
            let set = r.get(at + 2..at + 2 + l)?;
            if !set.is_empty() {
                sets.push(set.to_vec());
            }
            at += 2 + l;
        }
    }
    Some((sets, len))
}

/// The AudioSpecificConfig in an `esds` box (descriptor tags 3 → 4 → 5).
fn esds_asc(e: &[u8]) -> Option<Vec<u8>> {
    let mut at = 4;
    let read_len = |at: &mut usize| -> Option<usize> {
        let mut l = 0usize;
        for _ in 0..4 {
            let b = *e.get(*at)?;
            *at += 1;
            l = (l << 7) | usize::from(b & 0x7F);
            if b & 0x80 == 0 {
                break;
            }
        }
        Some(l)
    };
    if *e.get(at)? != 3 {
        return None;
    }
    at += 1;
    read_len(&mut at)?;
    let flags = *e.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*e.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    if *e.get(at)? != 4 {
        return None;
    }
    at += 1;
    read_len(&mut at)?;
    at += 13;
    if *e.get(at)? != 5 {
        return None;
    }
    at += 1;
    let l = read_len(&mut at)?;
    let asc = e.get(at..at + l)?.to_vec();
    (asc.len() >= 2).then_some(asc)
}

fn samples(stbl: &[u8], track: u32, file_len: u64) -> Result<Vec<SampleRef>, DemuxError> {
    let m = DemuxError::Malformed;
    // Sizes.
    let stsz = child_of(stbl, b"stsz").ok_or(m("stsz"))?;
    let fixed = u32_at(stsz, 4).ok_or(m("stsz"))?;
    let (n, sizes) = table(stsz, 4, if fixed == 0 { 4 } else { 0 }, "stsz")?;
    // With one size for all, the count is bounded by no table: bound it by the file, before a
    // table of that many samples is built.
    if fixed != 0 && (n as u64).saturating_mul(u64::from(fixed)) > file_len {
        return Err(m("stsz"));
    }
    let size = |i: usize| -> u32 {
        if fixed != 0 {
            fixed
        } else {
            u32_at(sizes, 4 * i).unwrap_or(0)
        }
    };
    // Chunk offsets.
    let offsets: Vec<u64> = if let Some(stco) = child_of(stbl, b"stco") {
        let (c, b) = table(stco, 0, 4, "stco")?;
        (0..c)
            .filter_map(|i| u32_at(b, 4 * i).map(u64::from))
            .collect()
    } else {
        let co64 = child_of(stbl, b"co64").ok_or(m("stco"))?;
        let (c, b) = table(co64, 0, 8, "co64")?;
        (0..c).filter_map(|i| u64_at(b, 8 * i)).collect()
    };
    // Samples per chunk.
    let stsc = child_of(stbl, b"stsc").ok_or(m("stsc"))?;
    let (nc, sc) = table(stsc, 0, 12, "stsc")?;
    let runs: Vec<(u32, u32)> = (0..nc)
        .filter_map(|i| Some((u32_at(sc, 12 * i)?, u32_at(sc, 12 * i + 4)?)))
        .collect();
    // Runs start at chunk 1 and ascend (ISO/IEC 14496-12 8.7.4): the chunk walk below then
    // finds each chunk's run by moving forward only.
    let unordered = runs.windows(2).any(|w| w[0].0 >= w[1].0);
    if unordered || (!offsets.is_empty() && runs.first().is_none_or(|r| r.0 != 1)) {
        return Err(m("stsc"));
    }
    // Decode times.
    let stts = child_of(stbl, b"stts").ok_or(m("stts"))?;
    let (nt, tt) = table(stts, 0, 8, "stts")?;
    let ctts = child_of(stbl, b"ctts")
        .map(|c| table(c, 0, 8, "ctts").map(|(n, b)| (n, b, c.first() == Some(&1))))
        .transpose()?;
    let stss = child_of(stbl, b"stss")
        .map(|s| table(s, 0, 4, "stss"))
        .transpose()?;
    let mut out: Vec<SampleRef> = Vec::with_capacity(n.min(1 << 20));
    // Offsets: walk the chunks.
    let mut sample = 0usize;
    let mut run = 0usize;
    for (ci, off) in offsets.iter().enumerate() {
        if sample >= n {
            break;
        }
        let chunk = u32::try_from(ci + 1).map_err(|_| m("stco"))?;
        while runs.get(run + 1).is_some_and(|r| r.0 <= chunk) {
            run += 1;
        }
        let per = runs.get(run).map(|r| r.1).ok_or(m("stsc"))?;
        let mut at = *off;
        for _ in 0..per {
            if sample >= n {
                break;
            }
            let s = size(sample);
            out.push(SampleRef {
                offset: at,
                size: s,
                dts: 0,
                cts: 0,
                sync: stss.is_none(),
            });
            at = at.checked_add(u64::from(s)).ok_or(m("stco"))?;
            sample += 1;
        }
    }
    if out.len() != n {
        return Err(DemuxError::Malformed("stsc"));
    }
    // Times. A run's count is the file's word, not the samples': each run touches at most the
    // samples still without a time, so the cost follows the samples, not a count of 2^32.
    let mut dts = 0u64;
    let mut i = 0usize;
    for e in 0..nt {
        if i >= n {
            break;
        }
        let count = u32_at(tt, 8 * e).unwrap_or(0) as usize;
        let delta = u64::from(u32_at(tt, 8 * e + 4).unwrap_or(0));
        let take = count.min(n - i);
        for s in &mut out[i..i + take] {
            s.dts = dts;
            dts = dts.saturating_add(delta);
        }
        i += take;
    }
    if i < n {
        return Err(DemuxError::Malformed("stts"));
    }
    if let Some((nc, cb, signed)) = ctts {
        let mut i = 0usize;
        for e in 0..nc {
            if i >= n {
                break;
            }
            let count = u32_at(cb, 8 * e).unwrap_or(0) as usize;
            let raw = u32_at(cb, 8 * e + 4).unwrap_or(0);
            let off = if signed {
                i64::from(raw as i32)
            } else {
                i64::from(raw)
            };
            let take = count.min(n - i);
            for s in &mut out[i..i + take] {
                s.cts = off;
            }
            i += take;
        }
    }
    if let Some((ns, sb)) = stss {
        for k in 0..ns {
            let idx = u32_at(sb, 4 * k).unwrap_or(0) as usize;
            if let Some(s) = idx.checked_sub(1).and_then(|i| out.get_mut(i)) {
                s.sync = true;
            }
        }
    }
    let _ = track;
    Ok(out)
}

/// ADTS header of an AAC frame of `len` payload bytes, from the AudioSpecificConfig.
fn adts_header(asc: &[u8], len: usize) -> Option<[u8; 7]> {
    let object = asc.first()? >> 3;
    let freq = ((asc.first()? & 7) << 1) | (asc.get(1)? >> 7);
    let channels = (asc.get(1)? >> 3) & 0x0F;
    if !(1..=4).contains(&object) || freq > 12 {
        return None;
    }
    let full = len + 7;
    if full > 0x1FFF {
        return None;
    }
    Some([
        0xFF,
        0xF1,
        ((object - 1) << 6) | (freq << 2) | (channels >> 2),
        ((channels & 3) << 6) | ((full >> 11) as u8 & 3),
        (full >> 3) as u8,
        (((full & 7) as u8) << 5) | 0x1F,
        0xFC,
    ])
}

impl Movie {
    /// The file's frames in decode order (video and audio interleaved), times in 90 kHz from
    /// the file's start. `file` is the whole file.
    pub fn frames<'a>(
        &'a self,
        file: &'a [u8],
    ) -> impl Iterator<Item = Result<Frame, DemuxError>> + 'a {
        let tracks: Vec<&Track> = std::iter::once(&self.video)
            .chain(self.audio.as_ref())
            .collect();
        let mut next = vec![0usize; tracks.len()];
        // The parameter sets in Annex B, once per track: each sync sample starts with them.
        let prefixes: Vec<Vec<u8>> = tracks
            .iter()
            .map(|t| {
                t.config
                    .iter()
                    .flat_map(|p| [&[0u8, 0, 0, 1][..], p.as_slice()])
                    .flatten()
                    .copied()
                    .collect()
            })
            .collect();
        std::iter::from_fn(move || {
            // The track whose next sample decodes first.
            let (ti, s) = tracks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.samples.get(next[i]).map(|s| (i, *s)))
                .min_by_key(|(i, s)| {
                    u128::from(s.dts) * 90_000 / u128::from(tracks[*i].timescale)
                })?;
            let t = tracks[ti];
            let index = next[ti];
            next[ti] += 1;
            let to90 = |x: i128| (x * 90_000 / i128::from(t.timescale)).max(0) as u64;
            let bytes = usize::try_from(s.offset)
                .ok()
                .and_then(|o| file.get(o..o.checked_add(s.size as usize)?));
            let Some(bytes) = bytes else {
                return Some(Err(DemuxError::Truncated { track: t.id, index }));
            };
            let data = match t.codec {
                Codec::H264 | Codec::H265 => {
                    let mut au = Vec::with_capacity(bytes.len() + 64);
                    if s.sync {
                        au.extend_from_slice(&prefixes[ti]);
                    }
                    let mut at = 0usize;
                    let w = usize::from(t.nal_len);
                    while at + w <= bytes.len() {
                        let l = bytes[at..at + w]
                            .iter()
                            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
                        at += w;
                        let Some(nal) = bytes.get(at..at.saturating_add(l)) else {
                            return Some(Err(DemuxError::Malformed("NAL unit length")));
                        };
                        au.extend_from_slice(&[0, 0, 0, 1]);
                        au.extend_from_slice(nal);
                        at += l;
                    }
                    au
                }
                Codec::Aac => {
                    let Some(h) = t
                        .config
                        .first()
                        .and_then(|asc| adts_header(asc, bytes.len()))
                    else {
                        return Some(Err(DemuxError::Malformed("AAC frame")));
                    };
                    let mut f = h.to_vec();
                    f.extend_from_slice(bytes);
                    f
                }
                _ => bytes.to_vec(),
            };
            let dts = to90(i128::from(s.dts));
            Some(Ok(Frame {
                codec: t.codec,
                pts_90k: Some(to90(i128::from(s.dts) + i128::from(s.cts))),
                dts_90k: Some(dts),
                data,
                keyframe: s.sync || !t.codec.is_video(),
                received: None,
                rtp_payloads: Default::default(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_and_cut_files_are_refused_with_a_reason() {
        assert_eq!(find_moov(&[]), Err(DemuxError::NoMoov));
        let noise: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        assert!(find_moov(&noise).is_err());
        let _ = parse(&noise, noise.len() as u64);
        let fragmented = include_bytes!("../../../fuzz/corpus-seed/mp4_recover/whole.mp4");
        assert_eq!(find_moov(fragmented), Err(DemuxError::Fragmented));
    }

    /// A fixed sample size with a count whose samples cannot fit in the file is refused before
    /// a table of that many samples is built (the fuzzer's slow inputs did this).
    #[test]
    fn a_sample_count_beyond_the_file_is_refused() {
        let mut file = include_bytes!("../../../fuzz/corpus-seed/mp4_demux/camera.mp4").to_vec();
        assert!(read(&file).is_ok());
        let at = file.windows(4).position(|w| w == b"stsz").expect("stsz");
        file[at + 8..at + 12].copy_from_slice(&1u32.to_be_bytes());
        file[at + 12..at + 16].copy_from_slice(&20_000_000u32.to_be_bytes());
        assert_eq!(read(&file).err(), Some(DemuxError::Malformed("stsz")));
    }

    /// The fuzzer's slow input (issue 21 item 8): camera.mp4 with every `stts` and `ctts` run
    /// claiming 2^32 - 1 samples. The runs' cost follows the samples: the first run times them
    /// all, the rest are not walked.
    #[test]
    fn run_counts_of_2_pow_32_cost_what_the_samples_cost() {
        let good = read(include_bytes!(
            "../../../fuzz/corpus-seed/mp4_demux/camera.mp4"
        ))
        .unwrap();
        let file = include_bytes!("../../../fuzz/corpus-seed/mp4_demux/stts-count-2e32.mp4");
        let m = read(file).unwrap();
        let v = &m.video.samples;
        assert_eq!(v.len(), good.video.samples.len());
        let delta = v[1].dts - v[0].dts;
        assert!(delta > 0);
        assert!(v.iter().enumerate().all(|(i, s)| s.dts == delta * i as u64));
        assert!(v.iter().all(|s| s.cts == v[0].cts));
        assert_eq!(
            m.frames(file).filter(Result::is_ok).count(),
            good.frames(file).count()
        );
    }

    /// Sample-to-chunk runs must start at chunk 1 and ascend; any other order is refused.
    #[test]
    fn sample_to_chunk_runs_out_of_order_are_refused() {
        let mut file = include_bytes!("../../../fuzz/corpus-seed/mp4_demux/camera.mp4").to_vec();
        let at = file.windows(4).position(|w| w == b"stsc").expect("stsc");
        // The first run's first chunk (after version/flags and the count).
        file[at + 12..at + 16].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(read(&file).err(), Some(DemuxError::Malformed("stsc")));
    }

    #[test]
    fn adts_headers_match_the_config() {
        // AAC LC 48 kHz stereo: 0x11 0x90.
        let h = adts_header(&[0x11, 0x90], 100).unwrap();
        let mut f = h.to_vec();
        f.extend_from_slice(&[0; 100]);
        let cfg = crate::mp4::fmp4::AudioConfig::from_frame(Codec::Aac, &f).unwrap();
        assert_eq!(
            cfg,
            crate::mp4::fmp4::AudioConfig::Aac {
                asc: [0x11, 0x90],
                rate: 48_000,
                channels: 2
            }
        );
    }
}

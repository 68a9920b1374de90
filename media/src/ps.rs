//! MPEG-2 program stream (ISO/IEC 13818-1 §2.5) as GB/T 28181 devices send it in RTP: a sans-IO
//! demuxer and the muxer the device simulator uses.
//!
//! Demuxer contract: feed the payloads of in-order RTP packets with [`PsDemuxer::push`]; call
//! [`PsDemuxer::end_of_frame`] when a packet carries the RTP marker bit (devices set it on the
//! last packet of a frame, so the frame goes out without waiting for the next one) and
//! [`PsDemuxer::lost`] when packets are missing. Each call returns the [`Frame`]s completed.
//!
//! What devices get wrong, and what is done about it:
//! * the PSM is missing, lies about the codec, or is malformed: the video codec is probed from
//!   the NAL units (H.264 and H.265 parameter sets and slice types), and the PSM is only believed
//!   when the probe agrees or has not decided; audio without a PSM is AAC when ADTS sync words are
//!   present, else G.711 A-law (the GB/T 28181 default);
//! * a frame spans several PES packets, only the first carrying a PTS: PES packets without PTS
//!   continue the current access unit;
//! * video PES with length 0 (unbounded): the payload runs to the next start code of a pack or
//!   PES header;
//! * truncated packs, garbage, or loss: the demuxer drops the partial frame, skips to the next
//!   pack header and then waits for a keyframe before it emits video again.
//!
//! Bounds: [`MAX_BUFFER`] bytes held, [`MAX_FRAME`] bytes per access unit; beyond either the
//! stream resyncs.

/// Most bytes held while waiting for the rest of a PES packet.
pub const MAX_BUFFER: usize = 4 * 1024 * 1024;
/// Largest access unit accepted.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Video bytes probed for the codec before the stream is given up as unknown (without a PSM).
pub const PROBE_LIMIT: usize = 512 * 1024;

/// Elementary stream codecs GB/T 28181 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC (PSM stream type 0x1B).
    H264,
    /// H.265 / HEVC (0x24).
    H265,
    /// G.711 A-law (0x90).
    G711A,
    /// G.711 μ-law (0x91).
    G711U,
    /// AAC in ADTS (0x0F).
    Aac,
    /// Opus: not a GB/T 28181 codec; what WebRTC publishers send and what AAC is transcoded to
    /// for browsers. Never muxed into PS.
    Opus,
}

impl Codec {
    /// From a PSM stream type.
    pub fn from_stream_type(t: u8) -> Option<Codec> {
        match t {
            0x1B => Some(Codec::H264),
            0x24 => Some(Codec::H265),
            0x90 => Some(Codec::G711A),
            0x91 => Some(Codec::G711U),
            0x0F => Some(Codec::Aac),
            _ => None,
        }
    }

    /// The PSM stream type.
    pub fn stream_type(self) -> u8 {
        match self {
            Codec::H264 => 0x1B,
            Codec::H265 => 0x24,
            Codec::G711A => 0x90,
            Codec::G711U => 0x91,
            Codec::Aac => 0x0F,
            // No PS stream type exists; private stream 1 marks it should it ever be muxed.
            Codec::Opus => 0xBD,
        }
    }

    /// Whether it is a video codec.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265)
    }
}

/// One access unit (video, Annex B with start codes) or one audio PES payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Codec.
    pub codec: Codec,
    /// Presentation time, 90 kHz.
    pub pts_90k: Option<u64>,
    /// Decode time, 90 kHz (the PTS when absent).
    pub dts_90k: Option<u64>,
    /// Bytes.
    pub data: Vec<u8>,
    /// Whether a decoder can start here (IDR / IRAP; always for audio).
    pub keyframe: bool,
    /// When the frame's last packet arrived (set by the stream hub, not by the demuxer, which
    /// is clock-free), for the hub's added-latency figure.
    pub received: Option<std::time::Instant>,
    /// The frame cut into RTP payloads, once, by the first WebRTC viewer that sends it; the
    /// other viewers of the stream send the same payloads under their own headers.
    pub rtp_payloads: std::sync::OnceLock<std::sync::Arc<[bytes::Bytes]>>,
}

/// Counters of what was dropped, for logs and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DemuxStats {
    /// Bytes skipped while looking for a pack header.
    pub skipped_bytes: u64,
    /// Times the demuxer resynchronised.
    pub resyncs: u64,
    /// Video frames dropped while waiting for a keyframe.
    pub dropped_frames: u64,
    /// PSMs seen that contradicted the probed codec.
    pub psm_mismatches: u64,
}

/// The video elementary stream between PES packets and access units. PES boundaries need not
/// match access units (ffmpeg's muxer packs 2 KiB packs regardless of frames), so access units
/// are cut by their NAL units: an access unit delimiter, a parameter set or SEI after a slice,
/// or a slice that starts a new picture. A PES timestamp belongs to the first access unit that
/// starts in that PES (ISO/IEC 13818-1 §2.4.3.7).
#[derive(Debug, Default)]
struct Es {
    data: Vec<u8>,
    /// Absolute stream offset of `data[0]`.
    base: u64,
    /// (absolute offset of a PES payload, PTS, DTS) not yet given to an access unit.
    marks: std::collections::VecDeque<(u64, u64, Option<u64>)>,
    /// The current access unit: start (index into `data`), timestamps, whether it has a slice.
    au_start: Option<usize>,
    au_pts: Option<u64>,
    au_dts: Option<u64>,
    au_vcl: bool,
    /// Where scanning for NAL units resumes.
    scan: usize,
    /// PTS of the last access unit emitted, and the frame interval seen (90 kHz), to stamp
    /// access units whose PES carried no PTS (it need only be sent every 0.7 s).
    last_pts: Option<u64>,
    interval: Option<u64>,
}

/// The program stream demuxer.
#[derive(Debug, Default)]
pub struct PsDemuxer {
    buf: Vec<u8>,
    psm_video: Option<Codec>,
    psm_audio: Option<Codec>,
    probed_video: Option<Codec>,
    video: Es,
    synced: bool,
    waiting_keyframe: bool,
    stats: DemuxStats,
}

/// The next start code (`00 00 01`) at or after `from` (SIMD search: the hub scans every byte
/// of every stream for these).
pub(crate) fn find_start(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    START_CODE.find(rest).map(|p| p + from)
}

/// The start-code searcher, built once (building one costs more than most searches).
pub(crate) static START_CODE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(&[0, 0, 1]));

/// A start code whose stream id begins a pack, system header, PSM or PES (0xB9..=0xFF).
fn find_ps_start(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = find_start(b, i) {
        if b.get(p + 3).is_some_and(|id| *id >= 0xB9) {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

fn read_ts(b: &[u8]) -> u64 {
    (((b[0] >> 1) & 0x07) as u64) << 30
        | (b[1] as u64) << 22
        | ((b[2] >> 1) as u64) << 15
        | (b[3] as u64) << 7
        | (b[4] >> 1) as u64
}

/// NAL unit types of an Annex B buffer, as H.264 or H.265 reads them.
fn nal_headers(data: &[u8]) -> impl Iterator<Item = (u8, Option<u8>)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let p = find_start(data, i)?;
        let h = *data.get(p + 3)?;
        let h2 = data.get(p + 4).copied();
        i = p + 3;
        Some((h, h2))
    })
}

/// Probe the video codec from NAL headers: `Some` once a parameter set or a slice type only one
/// of the two codecs allows is seen.
pub fn probe_video(data: &[u8]) -> Option<Codec> {
    let mut h264 = 0i32;
    let mut h265 = 0i32;
    for (b, b2) in nal_headers(data) {
        if b & 0x80 != 0 {
            continue;
        }
        // H.265: 6-bit type, layer id 0, temporal id + 1 in 1..=7.
        let t265 = (b >> 1) & 0x3F;
        let ok265 =
            b & 0x01 == 0 && b2.is_some_and(|x| (1..=7).contains(&(x & 0x07)) && x & 0xF8 == 0);
        // H.264: 5-bit type with nal_ref_idc.
        let t264 = b & 0x1F;
        let ref_idc = (b >> 5) & 0x03;
        if ok265 && matches!(t265, 32..=34) {
            h265 += 4;
        }
        if matches!(t264, 7 | 8) && ref_idc != 0 {
            h264 += 4;
        }
        if ok265 && matches!(t265, 0..=9 | 16..=21 | 35 | 39 | 40) {
            h265 += 1;
        }
        if matches!(t264, 1 | 5 | 9) || (t264 == 6 && ref_idc == 0) {
            h264 += 1;
        }
    }
    if h264 >= 4 && h264 > h265 {
        Some(Codec::H264)
    } else if h265 >= 4 && h265 > h264 {
        Some(Codec::H265)
    } else {
        None
    }
}

/// The NAL units of an Annex B byte stream, without their start codes (and without the zero
/// byte of a following four-byte start code).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while let Some(p) = find_start(data, i) {
        starts.push(p + 3);
        i = p + 3;
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map(|n| n - 3).unwrap_or(data.len());
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        if e > s {
            out.push(&data[s..e]);
        }
    }
    out
}

/// Whether an access unit holds a picture a decoder can start at.
pub fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    nal_headers(data).any(|(b, _)| match codec {
        Codec::H264 => b & 0x1F == 5,
        Codec::H265 => matches!((b >> 1) & 0x3F, 16..=21),
        _ => true,
    })
}

impl PsDemuxer {
    /// A demuxer waiting for the first pack header.
    pub fn new() -> Self {
        Self {
            waiting_keyframe: true,
            ..Self::default()
        }
    }

    /// What was dropped so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// The video codec in use (probed, else from the PSM).
    pub fn video_codec(&self) -> Option<Codec> {
        self.probed_video.or(self.psm_video)
    }

    /// Packets were lost: drop the partial frame, resync at the next pack header, and wait for
    /// a keyframe.
    pub fn lost(&mut self) {
        self.resync();
    }

    fn resync(&mut self) {
        self.stats.resyncs += 1;
        self.buf.clear();
        self.video = Es::default();
        self.synced = false;
        self.waiting_keyframe = true;
    }

    /// The current frame is complete (RTP marker): emit it.
    pub fn end_of_frame(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        // A bounded video PES may already be complete in the buffer.
        self.parse(&mut out, true);
        self.flush_video(&mut out);
        out
    }

    /// Feed PS bytes (one RTP payload, in order).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.buf.len() + bytes.len() > MAX_BUFFER {
            self.resync();
        }
        self.buf.extend_from_slice(bytes);
        self.parse(&mut out, false);
        out
    }

    /// Emit the current access unit `[au_start, end)` of the elementary stream.
    fn emit_au(&mut self, end: usize, out: &mut Vec<Frame>) {
        let Some(start) = self.video.au_start else {
            return;
        };
        // A copy of exactly the access unit: the buffer stays, at the size of the largest
        // access unit so far. (Handing the buffer itself over and starting a new one measured
        // worse: the new one grows by reallocation through fresh pages at every keyframe.)
        let data = self.video.data[start..end].to_vec();
        let (mut pts, mut dts, vcl) = (self.video.au_pts, self.video.au_dts, self.video.au_vcl);
        self.video.au_start = None;
        self.video.au_vcl = false;
        if !vcl {
            return;
        }
        match (pts, self.video.last_pts) {
            (Some(p), Some(last)) if p > last && p - last <= 90_000 => {
                self.video.interval = Some(p - last);
            }
            (None, Some(last)) => {
                pts = Some(last + self.video.interval.unwrap_or(3600));
                dts = None;
            }
            _ => {}
        }
        if pts.is_some() {
            self.video.last_pts = pts;
        }
        let Some(codec) = self.video_codec() else {
            self.stats.dropped_frames += 1;
            return;
        };
        let keyframe = is_keyframe(codec, &data);
        if self.waiting_keyframe {
            if !keyframe {
                self.stats.dropped_frames += 1;
                return;
            }
            self.waiting_keyframe = false;
        }
        out.push(Frame {
            codec,
            pts_90k: pts,
            dts_90k: dts.or(pts),
            data,
            keyframe,
            received: None,
            rtp_payloads: Default::default(),
        });
    }

    /// Start an access unit at `at` (index into the elementary stream buffer).
    fn begin_au(&mut self, at: usize) {
        let abs = self.video.base + at as u64;
        let mut ts = None;
        while let Some(&(off, pts, dts)) = self.video.marks.front() {
            if off > abs {
                break;
            }
            ts = Some((pts, dts));
            self.video.marks.pop_front();
        }
        self.video.au_start = Some(at);
        self.video.au_pts = ts.map(|t| t.0);
        self.video.au_dts = ts.and_then(|t| t.1);
        self.video.au_vcl = false;
    }

    /// Append video ES bytes and emit every access unit completed.
    fn video_bytes(
        &mut self,
        pts: Option<u64>,
        dts: Option<u64>,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> bool {
        if let Some(p) = pts {
            let abs = self.video.base + self.video.data.len() as u64;
            self.video.marks.push_back((abs, p, dts));
            if self.video.marks.len() > 64 {
                self.video.marks.pop_front();
            }
        }
        self.video.data.extend_from_slice(payload);
        if self.video.data.len() > MAX_FRAME {
            return false;
        }
        if self.probed_video.is_none() && self.video.data.len() > PROBE_LIMIT {
            if self.psm_video.is_none() {
                // Still no idea what this is: drop it rather than scan it again and again.
                return false;
            }
        } else if self.probed_video.is_none() {
            if let Some(c) = probe_video(&self.video.data) {
                if self.psm_video.is_some_and(|psm| psm != c) {
                    self.stats.psm_mismatches += 1;
                }
                self.probed_video = Some(c);
            }
        }
        let Some(codec) = self.video_codec() else {
            return true; // keep collecting until the codec is known
        };
        // Scan NAL units from where the last scan stopped (a start code needs 3 bytes, the
        // header up to 3 more).
        let data_len = self.video.data.len();
        let mut i = self.video.scan;
        while i + 6 <= data_len {
            let d = &self.video.data;
            match find_start(&d[..data_len], i) {
                Some(p) if p + 6 <= data_len => i = p,
                // Too close to the end to read its header: scan it again with more data.
                Some(p) => {
                    i = p;
                    break;
                }
                None => {
                    i = i.max(data_len - 5);
                    break;
                }
            }
            // Include a leading zero of a 4-byte start code in the unit it starts.
            let sc = if i > 0 && d[i - 1] == 0 { i - 1 } else { i };
            let (h, h2, h3) = (d[i + 3], d[i + 4], d[i + 5]);
            let (vcl, first_slice, boundary_if_after_vcl, aud) = match codec {
                Codec::H265 => {
                    let t = (h >> 1) & 0x3F;
                    (
                        t <= 31,
                        t <= 31 && h3 & 0x80 != 0,
                        matches!(t, 32..=34 | 39 | 41..=44 | 48..=55),
                        t == 35,
                    )
                }
                _ => {
                    let t = h & 0x1F;
                    let _ = h3;
                    (
                        matches!(t, 1..=5),
                        matches!(t, 1..=5) && h2 & 0x80 != 0,
                        matches!(t, 6..=8 | 14..=18),
                        t == 9,
                    )
                }
            };
            let new_au = match self.video.au_start {
                None => true,
                Some(_) => aud || (self.video.au_vcl && (first_slice || boundary_if_after_vcl)),
            };
            if new_au {
                if self.video.au_start.is_some() {
                    self.emit_au(sc, out);
                }
                self.begin_au(sc);
            }
            if vcl {
                self.video.au_vcl = true;
            }
            i += 3;
        }
        self.video.scan = i;
        self.compact();
        true
    }

    /// Drop emitted bytes from the front of the ES buffer.
    fn compact(&mut self) {
        let keep_from = self
            .video
            .au_start
            .unwrap_or(self.video.scan.min(self.video.data.len()));
        if keep_from > 0 {
            self.video.data.drain(..keep_from);
            self.video.base += keep_from as u64;
            self.video.scan -= keep_from.min(self.video.scan);
            if let Some(s) = self.video.au_start.as_mut() {
                *s -= keep_from;
            }
        }
    }

    /// End of a frame (RTP marker or end of input): the current access unit is complete.
    fn flush_video(&mut self, out: &mut Vec<Frame>) {
        if self.video.au_start.is_some() {
            let end = self.video.data.len();
            self.emit_au(end, out);
            self.video.data.clear();
            self.video.base += end as u64;
            self.video.scan = 0;
        }
    }

    fn parse(&mut self, out: &mut Vec<Frame>, at_frame_end: bool) {
        let mut pos = 0usize;
        loop {
            if !self.synced {
                // Skip to a pack header.
                let mut found = None;
                let mut i = pos;
                while let Some(p) = find_start(&self.buf, i) {
                    if self.buf.get(p + 3) == Some(&0xBA) {
                        found = Some(p);
                        break;
                    }
                    i = p + 1;
                }
                match found {
                    Some(p) => {
                        self.stats.skipped_bytes += (p - pos) as u64;
                        pos = p;
                        self.synced = true;
                    }
                    None => {
                        // Keep the last 3 bytes: a start code may straddle packets.
                        let keep = self.buf.len().saturating_sub(3).max(pos);
                        self.stats.skipped_bytes += (keep - pos) as u64;
                        self.buf.drain(..keep);
                        return;
                    }
                }
            }
            let b = &self.buf[pos..];
            if b.len() < 4 {
                break;
            }
            if b[0] != 0 || b[1] != 0 || b[2] != 1 {
                // Not at a start code: the previous unit's length was wrong. Resync.
                self.synced = false;
                self.stats.resyncs += 1;
                continue;
            }
            let id = b[3];
            let consumed = match id {
                0xBA => match pack_header_len(b) {
                    Some(Ok(n)) => n,
                    Some(Err(())) => {
                        self.synced = false;
                        self.stats.resyncs += 1;
                        pos += 4;
                        continue;
                    }
                    None => break,
                },
                0xB9 => 4, // program end
                0xBB | 0xBE | 0xBF | 0xF0..=0xFF => match sized(b) {
                    Some(n) => n,
                    None => break,
                },
                0xBC => match sized(b) {
                    Some(n) => {
                        let unit = b[..n].to_vec();
                        self.read_psm(&unit);
                        n
                    }
                    None => break,
                },
                0xE0..=0xEF | 0xC0..=0xDF | 0xBD => {
                    if b.len() < 6 {
                        break;
                    }
                    let declared = u16::from_be_bytes([b[4], b[5]]) as usize;
                    let n = if declared == 0 {
                        // Unbounded (video): up to the next pack/PES start, or the frame end.
                        match find_ps_start(b, 6) {
                            Some(e) => e,
                            None if at_frame_end => b.len(),
                            None => break,
                        }
                    } else {
                        let n = 6 + declared;
                        // Accept a bounded PES only when the next start code is where its length
                        // says: otherwise the pack was truncated and the PES is corrupt.
                        if b.len() < n + 3 {
                            if !(at_frame_end && b.len() == n) {
                                break;
                            }
                        } else if b[n..n + 3] != [0, 0, 1] {
                            self.resync();
                            return;
                        }
                        n
                    };
                    // The PES is read in place: the buffer is lent out for the call (reading a
                    // PES never touches it).
                    let buf = std::mem::take(&mut self.buf);
                    let ok = self.read_pes(id, &buf[pos..pos + n], out);
                    self.buf = buf;
                    if !ok {
                        self.resync();
                        return;
                    }
                    n
                }
                _ => {
                    // A start code inside payload or an unknown id: resync.
                    self.synced = false;
                    self.stats.resyncs += 1;
                    pos += 4;
                    continue;
                }
            };
            pos += consumed;
        }
        self.buf.drain(..pos.min(self.buf.len()));
    }

    fn read_psm(&mut self, b: &[u8]) {
        // 00 00 01 BC len(2) flags(1) marker(1) info_len(2) [info] map_len(2) [entries] crc(4)
        let get = |i: usize| b.get(i).copied();
        let Some(info_len) = get(8)
            .zip(get(9))
            .map(|(h, l)| u16::from_be_bytes([h, l]) as usize)
        else {
            return;
        };
        let mut i = 10 + info_len;
        let Some(map_len) = get(i)
            .zip(get(i + 1))
            .map(|(h, l)| u16::from_be_bytes([h, l]) as usize)
        else {
            return;
        };
        i += 2;
        let end = (i + map_len).min(b.len());
        while i + 4 <= end {
            let stream_type = b[i];
            let es_id = b[i + 1];
            let es_info = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            if let Some(c) = Codec::from_stream_type(stream_type) {
                match es_id {
                    0xE0..=0xEF if c.is_video() => self.psm_video = Some(c),
                    0xC0..=0xDF if !c.is_video() => self.psm_audio = Some(c),
                    _ => {}
                }
            }
            i += 4 + es_info;
        }
    }

    /// Handle one PES packet; `false` when it is malformed beyond use.
    fn read_pes(&mut self, id: u8, pes: &[u8], out: &mut Vec<Frame>) -> bool {
        if pes.len() < 9 {
            return pes.len() >= 6;
        }
        let (pts, dts, payload) = if pes[6] & 0xC0 == 0x80 {
            // MPEG-2 PES header.
            let flags = pes[7] >> 6;
            let hlen = pes[8] as usize;
            if 9 + hlen > pes.len() {
                return false;
            }
            let h = &pes[9..9 + hlen];
            let pts = (flags & 0b10 != 0 && h.len() >= 5).then(|| read_ts(&h[..5]));
            let dts = (flags == 0b11 && h.len() >= 10).then(|| read_ts(&h[5..10]));
            (pts, dts, &pes[9 + hlen..])
        } else {
            // MPEG-1 style: stuffing 0xFF, optional STD buffer, then timestamps.
            let mut i = 6;
            while i < pes.len() && pes[i] == 0xFF {
                i += 1;
            }
            if i < pes.len() && pes[i] & 0xC0 == 0x40 {
                i += 2;
            }
            let (pts, dts) = match pes.get(i).map(|x| x >> 4) {
                Some(0b0010) if i + 5 <= pes.len() => {
                    let p = read_ts(&pes[i..i + 5]);
                    i += 5;
                    (Some(p), None)
                }
                Some(0b0011) if i + 10 <= pes.len() => {
                    let p = read_ts(&pes[i..i + 5]);
                    let d = read_ts(&pes[i + 5..i + 10]);
                    i += 10;
                    (Some(p), Some(d))
                }
                _ => {
                    i += 1;
                    (None, None)
                }
            };
            (pts, dts, &pes[i.min(pes.len())..])
        };
        match id {
            0xE0..=0xEF => return self.video_bytes(pts, dts, payload, out),
            0xC0..=0xDF => {
                if payload.is_empty() {
                    return true;
                }
                let adts = payload.len() >= 2 && payload[0] == 0xFF && payload[1] & 0xF6 == 0xF0;
                let codec = match self.psm_audio {
                    Some(c) => c,
                    None if adts => Codec::Aac,
                    None => Codec::G711A,
                };
                out.push(Frame {
                    codec,
                    pts_90k: pts,
                    dts_90k: dts.or(pts),
                    data: payload.to_vec(),
                    keyframe: true,
                    received: None,
                    rtp_payloads: Default::default(),
                });
            }
            _ => {}
        }
        true
    }
}

/// Length of a pack header: `None` = need more bytes, `Err` = not a pack header.
fn pack_header_len(b: &[u8]) -> Option<Result<usize, ()>> {
    if b.len() < 5 {
        return None;
    }
    if b[4] >> 6 == 0b01 {
        if b.len() < 14 {
            return None;
        }
        let n = 14 + (b[13] & 0x07) as usize;
        if b.len() < n {
            return None;
        }
        Some(Ok(n))
    } else if b[4] >> 4 == 0b0010 {
        if b.len() < 12 {
            return None;
        }
        Some(Ok(12))
    } else {
        Some(Err(()))
    }
}

/// Total length of a unit with a 2-byte length after the start code.
fn sized(b: &[u8]) -> Option<usize> {
    if b.len() < 6 {
        return None;
    }
    let n = 6 + u16::from_be_bytes([b[4], b[5]]) as usize;
    (b.len() >= n).then_some(n)
}

fn write_ts(out: &mut Vec<u8>, marker: u8, ts: u64) {
    let ts = ts & 0x1_FFFF_FFFF;
    out.push(marker << 4 | ((ts >> 29) as u8 & 0x0E) | 1);
    out.push((ts >> 22) as u8);
    out.push(((ts >> 14) as u8 & 0xFE) | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts << 1) as u8 & 0xFE) | 1);
}

/// The muxer: what a GB/T 28181 device sends — per frame a pack header; before keyframes a
/// system header and a PSM; then PES packets (split at 65,000 bytes, PTS on the first).
#[derive(Debug, Clone)]
pub struct PsMuxer {
    /// Video codec.
    pub video: Codec,
    /// Audio codec, when audio is sent.
    pub audio: Option<Codec>,
}

impl PsMuxer {
    fn pack_header(out: &mut Vec<u8>, scr_90k: u64) {
        let scr = scr_90k & 0x1_FFFF_FFFF;
        out.extend_from_slice(&[0, 0, 1, 0xBA]);
        out.push(0x40 | ((scr >> 27) as u8 & 0x38) | 0x04 | ((scr >> 28) as u8 & 0x03));
        out.push((scr >> 20) as u8);
        out.push(((scr >> 12) as u8 & 0xF8) | 0x04 | ((scr >> 13) as u8 & 0x03));
        out.push((scr >> 5) as u8);
        out.push(((scr << 3) as u8 & 0xF8) | 0x04);
        out.push(0x01); // SCR extension 0, marker
                        // program_mux_rate 6106 (50 bytes/s units), markers, no stuffing.
        out.extend_from_slice(&[0x01, 0x7D, 0xBB, 0xF8]);
    }

    fn system_header(&self, out: &mut Vec<u8>) {
        let mut body = vec![0x80, 0x3E, 0xDD, 0x04 | 0x01, 0xE1, 0xFF];
        body.extend_from_slice(&[0xE0, 0xE0, 0xE8]);
        if self.audio.is_some() {
            body.extend_from_slice(&[0xC0, 0xC0, 0x20]);
        }
        out.extend_from_slice(&[0, 0, 1, 0xBB]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn psm(&self, out: &mut Vec<u8>) {
        let mut map = vec![self.video.stream_type(), 0xE0, 0, 0];
        if let Some(a) = self.audio {
            map.extend_from_slice(&[a.stream_type(), 0xC0, 0, 0]);
        }
        let mut body = vec![0xE0, 0xFF, 0, 0];
        body.extend_from_slice(&(map.len() as u16).to_be_bytes());
        body.extend_from_slice(&map);
        let len = body.len() + 4;
        let mut unit = vec![0, 0, 1, 0xBC];
        unit.extend_from_slice(&(len as u16).to_be_bytes());
        unit.extend_from_slice(&body);
        let crc = crc32_mpeg(&unit);
        unit.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&unit);
    }

    fn pes(out: &mut Vec<u8>, id: u8, pts: Option<u64>, payload: &[u8]) {
        let mut first = true;
        for chunk in payload.chunks(65_000) {
            let with_pts = first && pts.is_some();
            let hlen = if with_pts { 5 } else { 0 };
            let len = 3 + hlen + chunk.len();
            out.extend_from_slice(&[0, 0, 1, id]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.push(0x80);
            out.push(if with_pts { 0x80 } else { 0x00 });
            out.push(hlen as u8);
            if let (true, Some(p)) = (with_pts, pts) {
                write_ts(out, 0b0010, p);
            }
            out.extend_from_slice(chunk);
            first = false;
        }
    }

    /// One video access unit (Annex B) as a PS pack.
    pub fn video_frame(&self, pts_90k: u64, au: &[u8], keyframe: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(au.len() + 64);
        Self::pack_header(&mut out, pts_90k);
        if keyframe {
            self.system_header(&mut out);
            self.psm(&mut out);
        }
        Self::pes(&mut out, 0xE0, Some(pts_90k), au);
        out
    }

    /// One audio frame as a PS pack.
    pub fn audio_frame(&self, pts_90k: u64, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 40);
        Self::pack_header(&mut out, pts_90k);
        Self::pes(&mut out, 0xC0, Some(pts_90k), data);
        out
    }
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, no reflection, init all ones).
pub fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264_idr() -> Vec<u8> {
        let mut v = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1F, 0xDA, 0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80,
        ];
        v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        v.extend(std::iter::repeat_n(0xAB, 3000));
        v
    }

    fn h264_p() -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0x41, 0x9A, 0x02];
        v.extend(std::iter::repeat_n(0xCD, 500));
        v
    }

    fn h265_idr() -> Vec<u8> {
        let mut v = vec![
            0, 0, 0, 1, 0x40, 0x01, 0x0C, 0, 0, 0, 1, 0x42, 0x01, 0x01, 0, 0, 0, 1, 0x44, 0x01,
            0xC1,
        ];
        v.extend_from_slice(&[0, 0, 0, 1, 0x26, 0x01, 0xAF]);
        v.extend(std::iter::repeat_n(0x5A, 2000));
        v
    }

    #[test]
    fn probes() {
        assert_eq!(probe_video(&h264_idr()), Some(Codec::H264));
        assert_eq!(probe_video(&h265_idr()), Some(Codec::H265));
        assert_eq!(probe_video(&h264_p()), None);
        assert!(is_keyframe(Codec::H264, &h264_idr()));
        assert!(!is_keyframe(Codec::H264, &h264_p()));
        assert!(is_keyframe(Codec::H265, &h265_idr()));
    }

    #[test]
    fn mux_demux_round_trip_in_small_pieces() {
        let m = PsMuxer {
            video: Codec::H264,
            audio: Some(Codec::G711A),
        };
        // Fed as RTP payloads: the marker ends each frame.
        let mut d = PsDemuxer::new();
        let mut frames = Vec::new();
        for part in [
            m.video_frame(3600, &h264_idr(), true),
            m.audio_frame(3600, &[0xD5; 320]),
            m.video_frame(7200, &h264_p(), false),
        ] {
            for c in part.chunks(700) {
                frames.extend(d.push(c));
            }
            frames.extend(d.end_of_frame());
        }
        assert_eq!(
            frames.iter().map(|f| f.data.len()).sum::<usize>(),
            h264_idr().len() + 320 + h264_p().len()
        );
        let kinds: Vec<_> = frames
            .iter()
            .map(|f| (f.codec, f.pts_90k, f.keyframe))
            .collect();
        assert_eq!(
            kinds,
            [
                (Codec::H264, Some(3600), true),
                (Codec::G711A, Some(3600), true),
                (Codec::H264, Some(7200), false)
            ]
        );
        assert_eq!(frames[0].data, h264_idr());
        assert_eq!(frames[2].data, h264_p());
    }

    #[test]
    fn psm_missing_or_wrong_is_overridden_by_the_probe() {
        // A PSM that says H.264 for an H.265 stream.
        let lying = PsMuxer {
            video: Codec::H264,
            audio: None,
        };
        let mut d = PsDemuxer::new();
        let mut f = d.push(&lying.video_frame(0, &h265_idr(), true));
        f.extend(d.end_of_frame());
        assert_eq!(f[0].codec, Codec::H265);
        assert!(f[0].keyframe);
        assert_eq!(d.stats().psm_mismatches, 1);
        // No PSM at all (only the pack and the PES).
        let m = PsMuxer {
            video: Codec::H264,
            audio: None,
        };
        let full = m.video_frame(0, &h264_idr(), false);
        let mut d = PsDemuxer::new();
        let mut f = d.push(&full);
        f.extend(d.end_of_frame());
        assert_eq!((f[0].codec, f.len()), (Codec::H264, 1));
    }

    #[test]
    fn loss_waits_for_a_keyframe_and_garbage_is_skipped() {
        let m = PsMuxer {
            video: Codec::H264,
            audio: None,
        };
        let mut d = PsDemuxer::new();
        let idr = m.video_frame(0, &h264_idr(), true);
        let p1 = m.video_frame(3600, &h264_p(), false);
        let mut out = d.push(&idr);
        out.extend(d.end_of_frame());
        assert_eq!(out.len(), 1);
        // Lose the middle of a P frame.
        d.push(&p1[..100]);
        d.lost();
        let mut out = d.push(&p1[300..]);
        out.extend(d.end_of_frame());
        out.extend(d.push(&m.video_frame(7200, &h264_p(), false)));
        out.extend(d.end_of_frame());
        assert!(out.is_empty(), "P frames after loss are held back: {out:?}");
        // Garbage, a truncated pack, then a keyframe.
        d.push(&[0x12, 0x00, 0x00, 0x01, 0xBA, 0x44]);
        let mut out = d.push(&[0xFF; 50]);
        out.extend(d.push(&m.video_frame(10800, &h264_idr(), true)));
        out.extend(d.end_of_frame());
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert!(d.stats().skipped_bytes > 0);
    }

    #[test]
    fn a_frame_split_over_pes_packets_without_pts() {
        let m = PsMuxer {
            video: Codec::H264,
            audio: None,
        };
        let big: Vec<u8> = {
            let mut v = h264_idr();
            v.extend(std::iter::repeat_n(0x11, 150_000));
            v
        };
        let mut d = PsDemuxer::new();
        let mut f = d.push(&m.video_frame(90_000, &big, true));
        f.extend(d.end_of_frame());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].data.len(), big.len());
    }

    #[test]
    fn crc_of_known_vector() {
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_E6E7);
    }
}

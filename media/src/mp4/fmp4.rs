//! Fragmented MP4 (ISO/IEC 14496-12) segments from access units, without transcoding.
//!
//! A [`Writer`] makes one self-contained segment: [`Writer::init`] is its `ftyp` + `moov`
//! (the sample entries: `avc1` + `avcC`, `hvc1` + `hvcC`, `mp4a` + `esds`, or G.711 as `alaw` /
//! `ulaw`), then each [`Writer::fragment`] is a `moof` + `mdat` of the samples pushed since the
//! last one. Video samples are the access units with their NAL units length-prefixed and the
//! access unit delimiters and parameter sets left out (they are in the sample entry; a stream
//! whose parameter sets change starts a new segment). A sample's duration is the distance to the
//! next sample's decode time, so the newest sample of each track waits for its successor;
//! [`Writer::finish`] writes it with the previous duration.
//!
//! Times are 90 kHz for video; audio runs on its sample rate, each fragment's audio placed at the
//! decode time of its first frame.

use super::params::{avcc, h264_sps_size, h265_sps, hvcc, nal_units, PictureSize};
use super::Mp4Error;
use crate::ps::Codec;

/// Video track id.
pub const VIDEO_TRACK: u32 = 1;
/// Audio track id.
pub const AUDIO_TRACK: u32 = 2;

/// The video sample entry of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// H.264 or H.265.
    pub codec: Codec,
    /// Picture size from the SPS.
    pub size: PictureSize,
    /// `avcC` or `hvcC` record.
    pub record: Vec<u8>,
}

fn nal_type(codec: Codec, nal: &[u8]) -> u8 {
    match codec {
        Codec::H265 => (nal[0] >> 1) & 0x3F,
        _ => nal[0] & 0x1F,
    }
}

/// Whether a NAL unit stays out of the samples: delimiters and parameter sets.
fn out_of_band(codec: Codec, nal: &[u8]) -> bool {
    let t = nal_type(codec, nal);
    match codec {
        Codec::H265 => matches!(t, 32..=35),
        _ => matches!(t, 7..=9),
    }
}

impl VideoConfig {
    /// The sample entry from the parameter sets in an access unit (Annex B), `None` when it
    /// carries none (not every frame repeats them).
    pub fn from_access_unit(codec: Codec, data: &[u8]) -> Result<Option<VideoConfig>, Mp4Error> {
        let nals = nal_units(data);
        let find = |t: u8| {
            nals.iter()
                .copied()
                .find(|n| !n.is_empty() && nal_type(codec, n) == t)
        };
        match codec {
            Codec::H264 => {
                let (Some(sps), Some(pps)) = (find(7), find(8)) else {
                    return Ok(None);
                };
                Ok(Some(VideoConfig {
                    codec,
                    size: h264_sps_size(sps)?,
                    record: avcc(sps, pps)?,
                }))
            }
            Codec::H265 => {
                let (Some(vps), Some(sps), Some(pps)) = (find(32), find(33), find(34)) else {
                    return Ok(None);
                };
                Ok(Some(VideoConfig {
                    codec,
                    size: h265_sps(sps)?.size,
                    record: hvcc(vps, sps, pps)?,
                }))
            }
            _ => Err(Mp4Error::UnexpectedCodec("audio")),
        }
    }
}

/// The audio sample entry of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioConfig {
    /// G.711 A-law, 8 kHz mono.
    G711A,
    /// G.711 μ-law, 8 kHz mono.
    G711U,
    /// AAC (from ADTS): the AudioSpecificConfig, sample rate and channels.
    Aac {
        /// AudioSpecificConfig (2 bytes).
        asc: [u8; 2],
        /// Sample rate, Hz.
        rate: u32,
        /// Channels.
        channels: u16,
    },
    /// Opus (as WebRTC sends it), 48 kHz: one packet per sample (`Opus` + `dOps`).
    Opus {
        /// Output channels (2: WebRTC's `opus/48000/2`; a mono packet decodes to both).
        channels: u8,
    },
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1): the frame size
/// of its configuration times its frame count; `None` for a packet that is not valid.
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // 2.5, 5, 10, 20, 40, 60 ms at 48 kHz.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        12..=15 => [480, 960][usize::from(config & 1)],
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let n = frame * frames;
    // At most 120 ms in a packet.
    (frames > 0 && n <= 5760).then_some(n)
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// An ADTS frame: (AudioSpecificConfig, rate, channels, header length, frame length).
fn adts(data: &[u8]) -> Result<([u8; 2], u32, u16, usize, usize), Mp4Error> {
    if data.len() < 7 || data[0] != 0xFF || data[1] & 0xF6 != 0xF0 {
        return Err(Mp4Error::BadAdts);
    }
    let profile = (data[2] >> 6) + 1;
    let freq = usize::from((data[2] >> 2) & 0x0F);
    let channels = u16::from(((data[2] & 1) << 2) | (data[3] >> 6));
    let rate = *AAC_RATES.get(freq).ok_or(Mp4Error::BadAdts)?;
    if channels == 0 {
        return Err(Mp4Error::BadAdts);
    }
    let header = if data[1] & 1 == 1 { 7 } else { 9 };
    let len =
        (usize::from(data[3] & 3) << 11) | (usize::from(data[4]) << 3) | usize::from(data[5] >> 5);
    if len < header || len > data.len() {
        return Err(Mp4Error::BadAdts);
    }
    let asc = [
        (profile << 3) | (freq as u8 >> 1),
        ((freq as u8 & 1) << 7) | ((channels as u8) << 3),
    ];
    Ok((asc, rate, channels, header, len))
}

impl AudioConfig {
    /// The sample entry for an audio frame of `codec` (AAC: from its ADTS header).
    pub fn from_frame(codec: Codec, data: &[u8]) -> Result<AudioConfig, Mp4Error> {
        match codec {
            Codec::G711A => Ok(AudioConfig::G711A),
            Codec::G711U => Ok(AudioConfig::G711U),
            Codec::Aac => {
                let (asc, rate, channels, _, _) = adts(data)?;
                Ok(AudioConfig::Aac {
                    asc,
                    rate,
                    channels,
                })
            }
            Codec::Opus => {
                opus_samples(data).ok_or(Mp4Error::BadOpus)?;
                Ok(AudioConfig::Opus { channels: 2 })
            }
            Codec::H264 | Codec::H265 => Err(Mp4Error::UnexpectedCodec("video")),
        }
    }

    /// Sample rate, Hz (the audio track's timescale).
    pub fn rate(&self) -> u32 {
        match self {
            AudioConfig::Aac { rate, .. } => *rate,
            AudioConfig::Opus { .. } => 48_000,
            _ => 8000,
        }
    }
}

/// One sample waiting for its fragment.
#[derive(Debug, Clone)]
struct Sample {
    /// Decode time in the track's timescale.
    dts: u64,
    /// Presentation minus decode time.
    cts: i32,
    duration: u32,
    keyframe: bool,
    /// Where its bytes are in the track's buffer.
    at: usize,
    len: usize,
}

#[derive(Debug, Default)]
struct Track {
    /// The bytes of the samples not yet written, one after another (one buffer reused for the
    /// whole segment instead of an allocation per sample).
    bytes: Vec<u8>,
    /// Samples with known durations.
    ready: Vec<Sample>,
    /// The newest sample, waiting for the next decode time.
    last: Option<Sample>,
    /// Decode time after the last written sample.
    next_dts: Option<u64>,
    /// Decode time of the first sample of the segment.
    first_dts: Option<u64>,
    last_duration: u32,
}

impl Track {
    fn push(&mut self, s: Sample, default_duration: u32) {
        if self.first_dts.is_none() {
            self.first_dts = Some(s.dts);
        }
        if let Some(mut prev) = self.last.take() {
            let d = s.dts.saturating_sub(prev.dts);
            // A gap of more than ten seconds is a hole in the stream, not a frame's duration.
            prev.duration = if d == 0 || d > u64::from(default_duration) * 250 {
                if self.last_duration > 0 {
                    self.last_duration
                } else {
                    default_duration
                }
            } else {
                d as u32
            };
            self.last_duration = prev.duration;
            self.ready.push(prev);
        }
        self.last = Some(s);
    }

    fn take(&mut self, all: bool, default_duration: u32) -> Vec<Sample> {
        if all {
            if let Some(mut l) = self.last.take() {
                if l.duration == 0 {
                    l.duration = if self.last_duration > 0 {
                        self.last_duration
                    } else {
                        default_duration
                    };
                }
                self.ready.push(l);
            }
        }
        let v = std::mem::take(&mut self.ready);
        if let Some(s) = v.last() {
            self.next_dts = Some(s.dts + u64::from(s.duration));
        }
        v
    }

    /// The bytes of `samples` (taken from the front), handed over rather than copied: the
    /// buffer goes out, the waiting sample's bytes move to the front of a recycled one.
    fn take_bytes(&mut self, samples: &[Sample]) -> Vec<u8> {
        let (Some(f), Some(l)) = (samples.first(), samples.last()) else {
            return Vec::new();
        };
        let end = l.at + l.len;
        let mut next = crate::bufpool::take(self.bytes.capacity());
        next.extend_from_slice(&self.bytes[end..]);
        let mut out = std::mem::replace(&mut self.bytes, next);
        out.truncate(end);
        if f.at > 0 {
            out.drain(..f.at);
        }
        if let Some(w) = self.last.as_mut() {
            w.at -= end;
        }
        out
    }
}

/// Writes one self-contained fragmented MP4 segment.
#[derive(Debug)]
pub struct Writer {
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    v: Track,
    a: Track,
    sequence: u32,
    last_video_dts_90k: Option<u64>,
    /// Elementary-stream bytes taken in (what the samples carry).
    pub payload_bytes: u64,
}

/// 25 frames per second, the usual body-camera rate, for a duration nothing else tells.
const DEFAULT_VIDEO_DURATION: u32 = 3600;

impl Writer {
    /// A segment with these tracks (at least one).
    pub fn new(video: Option<VideoConfig>, audio: Option<AudioConfig>) -> Self {
        Writer {
            video,
            audio,
            v: Track::default(),
            a: Track::default(),
            sequence: 0,
            last_video_dts_90k: None,
            payload_bytes: 0,
        }
    }

    /// The video sample entry.
    pub fn video(&self) -> Option<&VideoConfig> {
        self.video.as_ref()
    }

    /// The audio sample entry.
    pub fn audio(&self) -> Option<&AudioConfig> {
        self.audio.as_ref()
    }

    fn audio_default_duration(&self) -> u32 {
        match self.audio {
            Some(AudioConfig::Aac { .. }) => 1024,
            Some(AudioConfig::Opus { .. }) => 960,
            _ => 160,
        }
    }

    /// Add a video access unit (Annex B) with its decode and presentation times (90 kHz).
    pub fn push_video(
        &mut self,
        dts_90k: u64,
        pts_90k: u64,
        keyframe: bool,
        annex_b: &[u8],
    ) -> Result<(), Mp4Error> {
        let Some(cfg) = &self.video else {
            return Err(Mp4Error::UnexpectedCodec("video"));
        };
        if let Some(prev) = self.last_video_dts_90k {
            if dts_90k < prev {
                return Err(Mp4Error::NonMonotonic {
                    previous: prev,
                    dts: dts_90k,
                });
            }
        }
        let at = self.v.bytes.len();
        self.v.bytes.reserve(annex_b.len() + 16);
        for nal in nal_units(annex_b) {
            if nal.is_empty() || out_of_band(cfg.codec, nal) {
                continue;
            }
            self.v
                .bytes
                .extend_from_slice(&(nal.len() as u32).to_be_bytes());
            self.v.bytes.extend_from_slice(nal);
        }
        let len = self.v.bytes.len() - at;
        if len == 0 {
            return Err(Mp4Error::EmptyAccessUnit);
        }
        self.last_video_dts_90k = Some(dts_90k);
        self.payload_bytes += annex_b.len() as u64;
        let cts = (pts_90k as i64 - dts_90k as i64).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
            as i32;
        self.v.push(
            Sample {
                dts: dts_90k,
                cts,
                duration: 0,
                keyframe,
                at,
                len,
            },
            DEFAULT_VIDEO_DURATION,
        );
        Ok(())
    }

    /// Add an audio frame (G.711 bytes, or one ADTS frame of AAC) decoded at `dts_90k`.
    pub fn push_audio(&mut self, dts_90k: u64, data: &[u8]) -> Result<(), Mp4Error> {
        let Some(cfg) = &self.audio else {
            return Err(Mp4Error::UnexpectedCodec("audio"));
        };
        let rate = u64::from(cfg.rate());
        let (payload, samples) = match cfg {
            AudioConfig::Aac { .. } => {
                let (_, _, _, header, len) = adts(data)?;
                (&data[header..len], 1024u32)
            }
            AudioConfig::Opus { .. } => (data, opus_samples(data).ok_or(Mp4Error::BadOpus)?),
            _ => {
                if data.is_empty() {
                    return Ok(());
                }
                (data, data.len() as u32)
            }
        };
        self.payload_bytes += data.len() as u64;
        let at = dts_90k * rate / 90_000;
        // Audio runs on its sample count: a frame is placed where the previous one ended
        // unless its own time is more than a frame away (a gap, or the first frame).
        let dts = match self.a.last.as_ref().map(|l| (l.dts, l.duration)) {
            Some((d, dur)) if at.abs_diff(d + u64::from(dur)) <= u64::from(samples) => {
                d + u64::from(dur)
            }
            _ => at.max(self.a.last.as_ref().map(|l| l.dts + 1).unwrap_or(0)),
        };
        let start = self.a.bytes.len();
        self.a.bytes.extend_from_slice(payload);
        self.a.push(
            Sample {
                dts,
                cts: 0,
                duration: samples,
                keyframe: true,
                at: start,
                len: payload.len(),
            },
            samples,
        );
        Ok(())
    }

    /// Decode time (90 kHz) of the segment's first video sample, or audio when there is none.
    pub fn start_90k(&self) -> Option<u64> {
        self.v.first_dts.or_else(|| {
            let rate = u64::from(self.audio.as_ref()?.rate());
            Some(self.a.first_dts? * 90_000 / rate)
        })
    }

    /// Decode time (90 kHz) just after the last sample written so far: of the video, or of the
    /// audio when there is no video (the segment's span on the recording's timeline).
    pub fn end_90k(&self) -> Option<u64> {
        if self.video.is_some() {
            return self.v.next_dts;
        }
        let rate = u64::from(self.audio.as_ref()?.rate());
        Some(self.a.next_dts? * 90_000 / rate)
    }

    /// `ftyp` + `moov`.
    pub fn init(&self) -> Vec<u8> {
        let mut w = Boxes::default();
        let b = w.begin(b"ftyp");
        w.raw(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"iso5", b"mp41", b"isom"] {
            w.raw(brand);
        }
        w.end(b);
        let moov = w.begin(b"moov");
        let mvhd = w.full(b"mvhd", 0, 0);
        w.u32(0);
        w.u32(0);
        w.u32(1000);
        w.u32(0);
        w.u32(0x0001_0000);
        w.u16(0x0100);
        w.zeros(10);
        matrix(&mut w);
        w.zeros(24);
        w.u32(3);
        w.end(mvhd);
        if let Some(v) = &self.video {
            self.trak_video(&mut w, v);
        }
        if let Some(a) = &self.audio {
            self.trak_audio(&mut w, a);
        }
        let mvex = w.begin(b"mvex");
        for (id, present) in [
            (VIDEO_TRACK, self.video.is_some()),
            (AUDIO_TRACK, self.audio.is_some()),
        ] {
            if present {
                let trex = w.full(b"trex", 0, 0);
                w.u32(id);
                w.u32(1);
                w.u32(0);
                w.u32(0);
                w.u32(0);
                w.end(trex);
            }
        }
        w.end(mvex);
        w.end(moov);
        w.0
    }

    fn tkhd(w: &mut Boxes, id: u32, audio: bool, size: Option<PictureSize>) {
        let tkhd = w.full(b"tkhd", 0, 3);
        w.u32(0);
        w.u32(0);
        w.u32(id);
        w.u32(0);
        w.u32(0);
        w.zeros(8);
        w.u16(0);
        w.u16(0);
        w.u16(if audio { 0x0100 } else { 0 });
        w.u16(0);
        matrix(w);
        let (width, height) = size.map(|s| (s.width, s.height)).unwrap_or((0, 0));
        w.u32(width << 16);
        w.u32(height << 16);
        w.end(tkhd);
    }

    fn mdia_head(w: &mut Boxes, timescale: u32, handler: &[u8; 4], name: &str) {
        let mdhd = w.full(b"mdhd", 0, 0);
        w.u32(0);
        w.u32(0);
        w.u32(timescale);
        w.u32(0);
        w.u16(0x55C4); // "und"
        w.u16(0);
        w.end(mdhd);
        let hdlr = w.full(b"hdlr", 0, 0);
        w.u32(0);
        w.raw(handler);
        w.zeros(12);
        w.raw(name.as_bytes());
        w.u8(0);
        w.end(hdlr);
    }

    fn stbl_tail(w: &mut Boxes) {
        for kind in [b"stts", b"stsc", b"stco"] {
            let b = w.full(kind, 0, 0);
            w.u32(0);
            w.end(b);
        }
        let stsz = w.full(b"stsz", 0, 0);
        w.u32(0);
        w.u32(0);
        w.end(stsz);
    }

    fn dinf(w: &mut Boxes) {
        let dinf = w.begin(b"dinf");
        let dref = w.full(b"dref", 0, 0);
        w.u32(1);
        let url = w.full(b"url ", 0, 1);
        w.end(url);
        w.end(dref);
        w.end(dinf);
    }

    fn trak_video(&self, w: &mut Boxes, v: &VideoConfig) {
        let trak = w.begin(b"trak");
        Self::tkhd(w, VIDEO_TRACK, false, Some(v.size));
        let mdia = w.begin(b"mdia");
        Self::mdia_head(w, 90_000, b"vide", "Shouhu video");
        let minf = w.begin(b"minf");
        let vmhd = w.full(b"vmhd", 0, 1);
        w.zeros(8);
        w.end(vmhd);
        Self::dinf(w);
        let stbl = w.begin(b"stbl");
        let stsd = w.full(b"stsd", 0, 0);
        w.u32(1);
        let (entry, rec) = match v.codec {
            Codec::H265 => (b"hvc1", b"hvcC"),
            _ => (b"avc1", b"avcC"),
        };
        let e = w.begin(entry);
        w.zeros(6);
        w.u16(1);
        w.zeros(16);
        w.u16(v.size.width as u16);
        w.u16(v.size.height as u16);
        w.u32(0x0048_0000);
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1);
        w.zeros(32);
        w.u16(0x0018);
        w.u16(0xFFFF);
        let r = w.begin(rec);
        w.raw(&v.record);
        w.end(r);
        w.end(e);
        w.end(stsd);
        Self::stbl_tail(w);
        w.end(stbl);
        w.end(minf);
        w.end(mdia);
        w.end(trak);
    }

    fn trak_audio(&self, w: &mut Boxes, a: &AudioConfig) {
        let trak = w.begin(b"trak");
        Self::tkhd(w, AUDIO_TRACK, true, None);
        let mdia = w.begin(b"mdia");
        Self::mdia_head(w, a.rate(), b"soun", "Shouhu audio");
        let minf = w.begin(b"minf");
        let smhd = w.full(b"smhd", 0, 0);
        w.u32(0);
        w.end(smhd);
        Self::dinf(w);
        let stbl = w.begin(b"stbl");
        let stsd = w.full(b"stsd", 0, 0);
        w.u32(1);
        let (kind, channels): (&[u8; 4], u16) = match a {
            AudioConfig::G711A => (b"alaw", 1),
            AudioConfig::G711U => (b"ulaw", 1),
            AudioConfig::Aac { channels, .. } => (b"mp4a", *channels),
            AudioConfig::Opus { channels } => (b"Opus", u16::from(*channels)),
        };
        let e = w.begin(kind);
        w.zeros(6);
        w.u16(1);
        w.zeros(8);
        w.u16(channels);
        w.u16(16);
        w.u32(0);
        w.u32(a.rate().min(0xFFFF) << 16);
        if let AudioConfig::Aac { asc, .. } = a {
            let esds = w.full(b"esds", 0, 0);
            // ES_Descriptor { DecoderConfigDescriptor { DecoderSpecificInfo }, SLConfig }.
            w.u8(0x03);
            w.u8(23 + asc.len() as u8);
            w.u16(0);
            w.u8(0);
            w.u8(0x04);
            w.u8(15 + asc.len() as u8);
            w.u8(0x40);
            w.u8(0x15);
            w.zeros(3);
            w.u32(0);
            w.u32(0);
            w.u8(0x05);
            w.u8(asc.len() as u8);
            w.raw(asc);
            w.u8(0x06);
            w.u8(1);
            w.u8(0x02);
            w.end(esds);
        }
        if let AudioConfig::Opus { channels } = a {
            // Encapsulation of Opus in ISO BMFF, §4.3.2: version, channels, pre-skip (WebRTC
            // streams start mid-conversation: none), input rate, gain, mapping family 0.
            let d = w.begin(b"dOps");
            w.u8(0);
            w.u8(*channels);
            w.u16(0);
            w.u32(48_000);
            w.u16(0);
            w.u8(0);
            w.end(d);
        }
        w.end(e);
        w.end(stsd);
        Self::stbl_tail(w);
        w.end(stbl);
        w.end(minf);
        w.end(mdia);
        w.end(trak);
    }

    /// A `moof` + `mdat` of the samples whose durations are known (`None` when there are none).
    pub fn fragment(&mut self) -> Option<Vec<u8>> {
        self.emit(false).map(|p| p.concat())
    }

    /// The rest: every sample, the newest of each track with the duration before it.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.emit(true).map(|p| p.concat())
    }

    /// [`Writer::fragment`] in pieces to write one after another: the boxes up to the `mdat`
    /// header, then each track's sample bytes (handed over, not copied).
    pub fn fragment_parts(&mut self) -> Option<Vec<Vec<u8>>> {
        self.emit(false)
    }

    /// [`Writer::finish`] in pieces, as [`Writer::fragment_parts`].
    pub fn finish_parts(&mut self) -> Option<Vec<Vec<u8>>> {
        self.emit(true)
    }

    fn emit(&mut self, all: bool) -> Option<Vec<Vec<u8>>> {
        let ad = self.audio_default_duration();
        let tracks: Vec<(u32, bool, Vec<Sample>)> = [
            (VIDEO_TRACK, true, self.v.take(all, DEFAULT_VIDEO_DURATION)),
            (AUDIO_TRACK, false, self.a.take(all, ad)),
        ]
        .into_iter()
        .filter(|(_, _, s)| !s.is_empty())
        .collect();
        if tracks.is_empty() {
            return None;
        }
        self.sequence += 1;
        // The boxes: at most 16 bytes a sample and a few hundred for the rest.
        let (payload, count) = tracks
            .iter()
            .flat_map(|t| &t.2)
            .fold((0, 0), |(p, c), s| (p + s.len, c + 1));
        let mut w = Boxes(Vec::with_capacity(16 * count + 256));
        let moof = w.begin(b"moof");
        let mfhd = w.full(b"mfhd", 0, 0);
        w.u32(self.sequence);
        w.end(mfhd);
        let mut offsets = Vec::new();
        for (id, video, samples) in &tracks {
            let traf = w.begin(b"traf");
            let tfhd = w.full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
            w.u32(*id);
            w.end(tfhd);
            let tfdt = w.full(b"tfdt", 1, 0);
            w.u64(samples[0].dts);
            w.end(tfdt);
            let flags = 0x01 | 0x100 | 0x200 | 0x400 | if *video { 0x800 } else { 0 };
            let trun = w.full(b"trun", 1, flags);
            w.u32(samples.len() as u32);
            offsets.push(w.0.len());
            w.u32(0);
            for s in samples {
                w.u32(s.duration);
                w.u32(s.len as u32);
                w.u32(if s.keyframe { 0x0200_0000 } else { 0x0101_0000 });
                if *video {
                    w.u32(s.cts as u32);
                }
            }
            w.end(trun);
            w.end(traf);
        }
        w.end(moof);
        let moof_len = w.0.len();
        let mut data_at = moof_len + 8;
        for ((_, _, samples), at) in tracks.iter().zip(offsets) {
            w.0[at..at + 4].copy_from_slice(&(data_at as u32).to_be_bytes());
            data_at += samples.iter().map(|s| s.len).sum::<usize>();
        }
        // The `mdat` header; its payload is the tracks' buffers, one after another.
        w.u32((8 + payload) as u32);
        w.raw(b"mdat");
        let mut parts = vec![w.0];
        for (id, _, samples) in &tracks {
            let t = if *id == VIDEO_TRACK {
                &mut self.v
            } else {
                &mut self.a
            };
            parts.push(t.take_bytes(samples));
        }
        Some(parts)
    }
}

fn matrix(w: &mut Boxes) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        w.u32(v);
    }
}

/// A buffer of boxes whose sizes are filled in when they end.
#[derive(Default)]
struct Boxes(Vec<u8>);

impl Boxes {
    fn begin(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.0.extend_from_slice(kind);
        at
    }

    fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.begin(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
        at
    }

    fn end(&mut self, at: usize) {
        let n = (self.0.len() - at) as u32;
        self.0[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }

    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_packet_durations_come_from_the_toc() {
        // SILK 20 ms, one frame; CELT 20 ms, two frames; CELT 2.5 ms, five frames (code 3).
        assert_eq!(opus_samples(&[1 << 3, 0xAA]), Some(960));
        assert_eq!(opus_samples(&[(31 << 3) | 1, 0, 0]), Some(1920));
        assert_eq!(opus_samples(&[(16 << 3) | 3, 5, 0]), Some(600));
        // Hybrid 10 ms.
        assert_eq!(opus_samples(&[12 << 3]), Some(480));
        // Nothing, a code-3 packet without its count or with none, more than 120 ms.
        assert_eq!(opus_samples(&[]), None);
        assert_eq!(opus_samples(&[(31 << 3) | 3]), None);
        assert_eq!(opus_samples(&[(31 << 3) | 3, 0]), None);
        assert_eq!(opus_samples(&[(3 << 3) | 3, 3]), None);
        assert!(matches!(
            AudioConfig::from_frame(Codec::Opus, &[]),
            Err(Mp4Error::BadOpus)
        ));
        assert_eq!(
            AudioConfig::from_frame(Codec::Opus, &[31 << 3])
                .unwrap()
                .rate(),
            48_000
        );
    }

    /// The boxes at the top level of `data`: (kind, size).
    fn top_boxes(data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 8 <= data.len() {
            let n = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&data[i + 4..i + 8]).into_owned(), n));
            assert!(n >= 8 && i + n <= data.len(), "box size {n} at {i}");
            i += n;
        }
        assert_eq!(i, data.len());
        out
    }

    fn h264_key() -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x09, 0x10];
        au.extend_from_slice(&[
            0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1E, 0xAC, 0xD9, 0x40, 0xA0, 0x2F, 0xF9, 0x70, 0x11,
            0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x16, 0x2D, 0x96,
        ]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0]);
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84, 0x00]);
        au
    }

    #[test]
    fn a_segment_is_init_then_fragments() {
        let key = h264_key();
        let cfg = VideoConfig::from_access_unit(Codec::H264, &key)
            .unwrap()
            .unwrap();
        assert_eq!(
            cfg.size,
            PictureSize {
                width: 640,
                height: 360
            }
        );
        let mut w = Writer::new(Some(cfg), Some(AudioConfig::G711A));
        let init = w.init();
        let kinds: Vec<String> = top_boxes(&init).into_iter().map(|b| b.0).collect();
        assert_eq!(kinds, ["ftyp", "moov"]);
        w.push_video(90_000, 90_000, true, &key).unwrap();
        w.push_audio(90_000, &[0xD5; 160]).unwrap();
        assert!(w.fragment().is_none(), "no duration is known yet");
        w.push_video(93_600, 93_600, false, &[0, 0, 1, 0x41, 0x9A, 0x00])
            .unwrap();
        w.push_audio(91_800, &[0xD5; 160]).unwrap();
        let f = w.fragment().unwrap();
        let kinds: Vec<String> = top_boxes(&f).into_iter().map(|b| b.0).collect();
        assert_eq!(kinds, ["moof", "mdat"]);
        let rest = w.finish().unwrap();
        assert_eq!(top_boxes(&rest).len(), 2);
        assert_eq!(w.start_90k(), Some(90_000));
        assert_eq!(w.end_90k(), Some(97_200));
        // The sample holds the slice alone, length-prefixed: no AUD, SPS or PPS.
        let mdat = &f[f.len() - (8 + 8 + 160)..];
        assert_eq!(&mdat[..8], &[0, 0, 0, 8 + 8 + 160, b'm', b'd', b'a', b't']);
        assert_eq!(&mdat[8..16], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x00]);
    }

    #[test]
    fn refusals() {
        let cfg = VideoConfig::from_access_unit(Codec::H264, &h264_key())
            .unwrap()
            .unwrap();
        let mut w = Writer::new(Some(cfg), None);
        assert_eq!(
            w.push_audio(0, &[1]),
            Err(Mp4Error::UnexpectedCodec("audio"))
        );
        w.push_video(1000, 1000, true, &h264_key()).unwrap();
        assert!(matches!(
            w.push_video(999, 999, false, &[0, 0, 1, 0x41, 1]),
            Err(Mp4Error::NonMonotonic { .. })
        ));
        assert_eq!(
            w.push_video(2000, 2000, false, &[0, 0, 1, 0x09, 0x10]),
            Err(Mp4Error::EmptyAccessUnit)
        );
        assert_eq!(
            VideoConfig::from_access_unit(Codec::H264, &[0, 0, 1, 0x41, 1]),
            Ok(None)
        );
        assert!(AudioConfig::from_frame(Codec::Aac, &[0xFF, 0xF1, 0, 0]).is_err());
    }

    #[test]
    fn adts_header_gives_the_audio_specific_config() {
        // AAC LC, 44.1 kHz, stereo, a 10-byte frame with a 7-byte header.
        let frame = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x5F, 0xFC, 1, 2, 3];
        let cfg = AudioConfig::from_frame(Codec::Aac, &frame).unwrap();
        assert_eq!(
            cfg,
            AudioConfig::Aac {
                asc: [0x12, 0x10],
                rate: 44_100,
                channels: 2
            }
        );
    }
}

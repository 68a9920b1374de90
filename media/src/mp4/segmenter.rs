//! Cutting a stream into self-contained fMP4 segments: the recorder's core, sans-IO.
//!
//! Frames from the stream hub go in; [`Output`]s come out: a segment [`Output::Begin`]s, its
//! bytes follow as [`Output::Data`] (the init section, then a fragment at each keyframe or at
//! least every two seconds, so a crash loses little; a fragment comes in pieces — its boxes, then
//! each track's sample bytes, handed over rather than copied), and it [`Output::End`]s with its
//! span.
//! A segment is cut at the first keyframe once it is `target` long, or at once when the
//! stream's parameter sets change (a new resolution needs a new init section). Video that
//! cannot start a segment (no keyframe with parameter sets yet) is dropped and counted.
//! PS timestamps are 33-bit: they are unwrapped here, and the recording's timeline starts at 0
//! with its first frame (segment times are offsets into the recording; the recorder anchors
//! them to UTC).

use super::fmp4::{AudioConfig, VideoConfig, Writer};
use crate::ps::{Codec, Frame};

/// What the recorder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A new segment file starts.
    Begin {
        /// Its position in the recording, from 0.
        index: u32,
    },
    /// Bytes to append to the current segment file.
    Data(Vec<u8>),
    /// The current segment file is complete.
    End(SegmentInfo),
}

/// A finished segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Position in the recording, from 0.
    pub index: u32,
    /// First decode time, 90 kHz from the recording's first frame.
    pub start_90k: u64,
    /// End (last sample's decode time plus its duration), 90 kHz.
    pub end_90k: u64,
    /// Video codec.
    pub video: Option<Codec>,
    /// Audio codec.
    pub audio: Option<Codec>,
    /// Bytes of the file.
    pub bytes: u64,
    /// Elementary-stream bytes it carries.
    pub payload_bytes: u64,
}

/// 33-bit PTS/DTS unwrapping.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<u64>,
    base: u64,
}

const WRAP: u64 = 1 << 33;

impl Unwrap {
    fn at(&mut self, raw: u64) -> u64 {
        let raw = raw % WRAP;
        if let Some(last) = self.last {
            let cur = self.base + raw;
            if cur + WRAP / 2 < last {
                self.base += WRAP;
            } else if cur > last + WRAP / 2 && self.base >= WRAP {
                // A late frame from before the wrap.
                let t = self.base - WRAP + raw;
                return t;
            }
        }
        let t = self.base + raw;
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        t
    }
}

/// Counters of what the segmenter could not record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Video frames dropped before a keyframe with parameter sets.
    pub dropped_video: u64,
    /// Audio frames dropped (before the first segment, or a codec the segment lacks).
    pub dropped_audio: u64,
    /// Frames refused by the muxer (timestamps going back, empty access units).
    pub refused: u64,
    /// Video frames before the time given to [`Segmenter::resume`] (footage already
    /// stored, sent again by a resumed download).
    pub skipped: u64,
}

/// Cuts one stream into segments.
#[derive(Debug)]
pub struct Segmenter {
    target_90k: u64,
    writer: Option<Writer>,
    bytes: u64,
    index: u32,
    video_cfg: Option<VideoConfig>,
    audio_cfg: Option<AudioConfig>,
    audio_codec: Option<Codec>,
    video_ts: Unwrap,
    audio_ts: Unwrap,
    last_fragment_90k: u64,
    /// The first unwrapped timestamp of the stream: time 0 of the recording.
    origin: Option<u64>,
    /// The recording's time of the stream's first frame (0 unless resumed).
    offset_90k: u64,
    /// The first segment starts at the first keyframe at or after this time.
    skip_90k: u64,
    /// What could not be recorded.
    pub stats: SegmenterStats,
}

const FRAGMENT_MAX_90K: u64 = 2 * 90_000;

impl Segmenter {
    /// Segments of about `target_secs` seconds (cut at the next keyframe).
    pub fn new(target_secs: u32) -> Self {
        Segmenter {
            target_90k: u64::from(target_secs.max(1)) * 90_000,
            writer: None,
            bytes: 0,
            index: 0,
            video_cfg: None,
            audio_cfg: None,
            audio_codec: None,
            video_ts: Unwrap::default(),
            audio_ts: Unwrap::default(),
            last_fragment_90k: 0,
            origin: None,
            offset_90k: 0,
            skip_90k: 0,
            stats: SegmenterStats::default(),
        }
    }

    fn emit(&mut self, out: &mut Vec<Output>, data: Option<Vec<u8>>) {
        if let Some(d) = data {
            self.bytes += d.len() as u64;
            out.push(Output::Data(d));
        }
    }

    /// A fragment in pieces ([`Writer::fragment_parts`]): one [`Output::Data`] each.
    fn emit_parts(&mut self, out: &mut Vec<Output>, parts: Option<Vec<Vec<u8>>>) {
        for d in parts.into_iter().flatten() {
            if !d.is_empty() {
                self.emit(out, Some(d));
            }
        }
    }

    fn close(&mut self, out: &mut Vec<Output>) {
        if let Some(mut w) = self.writer.take() {
            let rest = w.finish_parts();
            self.emit_parts(out, rest);
            if let (Some(start), Some(end)) = (w.start_90k(), w.end_90k()) {
                out.push(Output::End(SegmentInfo {
                    index: self.index,
                    start_90k: start,
                    end_90k: end,
                    video: w.video().map(|v| v.codec),
                    audio: self.audio_codec.filter(|_| w.audio().is_some()),
                    bytes: self.bytes,
                    payload_bytes: w.payload_bytes,
                }));
            } else {
                out.push(Output::End(SegmentInfo {
                    index: self.index,
                    start_90k: 0,
                    end_90k: 0,
                    video: None,
                    audio: None,
                    bytes: self.bytes,
                    payload_bytes: 0,
                }));
            }
            self.index += 1;
            self.bytes = 0;
        }
    }

    fn open(&mut self, out: &mut Vec<Output>, at_90k: u64) {
        let w = Writer::new(self.video_cfg.clone(), self.audio_cfg.clone());
        out.push(Output::Begin { index: self.index });
        let init = w.init();
        self.writer = Some(w);
        self.last_fragment_90k = at_90k;
        self.emit(out, Some(init));
    }

    /// Take one frame of the stream.
    pub fn push(&mut self, f: &Frame, out: &mut Vec<Output>) {
        let Some(raw) = f.dts_90k.or(f.pts_90k) else {
            self.stats.refused += 1;
            return;
        };
        match f.codec {
            Codec::H264 | Codec::H265 => self.push_video(f, raw, out),
            Codec::G711A | Codec::G711U | Codec::Aac | Codec::Opus => self.push_audio(f, raw),
        }
    }

    /// An unwrapped stream time as a time of the recording.
    fn rebase(&mut self, t: u64) -> u64 {
        t.saturating_sub(*self.origin.get_or_insert(t)) + self.offset_90k
    }

    fn push_video(&mut self, f: &Frame, raw: u64, out: &mut Vec<Output>) {
        let t = self.video_ts.at(raw);
        let dts = self.rebase(t);
        if self.writer.is_none() && dts < self.skip_90k {
            self.stats.skipped += 1;
            return;
        }
        let pts = f
            .pts_90k
            .map(|p| dts + (p % WRAP + WRAP - raw % WRAP) % WRAP)
            .unwrap_or(dts);
        if f.keyframe {
            let cfg = match VideoConfig::from_access_unit(f.codec, &f.data) {
                Ok(Some(c)) => Some(c),
                Ok(None) => self.video_cfg.clone().filter(|c| c.codec == f.codec),
                Err(_) => None,
            };
            let Some(cfg) = cfg else {
                self.stats.dropped_video += 1;
                return;
            };
            let changed = self.video_cfg.as_ref() != Some(&cfg);
            self.video_cfg = Some(cfg);
            let due = self
                .writer
                .as_ref()
                .and_then(|w| w.start_90k())
                .is_some_and(|s| dts >= s + self.target_90k);
            if self.writer.is_some() && (changed || due) {
                self.close(out);
            }
            if self.writer.is_none() {
                self.open(out, dts);
            } else {
                let frag = self.writer.as_mut().and_then(Writer::fragment_parts);
                self.last_fragment_90k = dts;
                self.emit_parts(out, frag);
            }
        } else if self.writer.is_none() {
            self.stats.dropped_video += 1;
            return;
        } else if dts >= self.last_fragment_90k + FRAGMENT_MAX_90K {
            let frag = self.writer.as_mut().and_then(Writer::fragment_parts);
            self.last_fragment_90k = dts;
            self.emit_parts(out, frag);
        }
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if w.push_video(dts, pts, f.keyframe, &f.data).is_err() {
            self.stats.refused += 1;
        }
    }

    fn push_audio(&mut self, f: &Frame, raw: u64) {
        let t = self.audio_ts.at(raw);
        let dts = self.rebase(t);
        if self.audio_codec != Some(f.codec) {
            match AudioConfig::from_frame(f.codec, &f.data) {
                Ok(c) => {
                    self.audio_cfg = Some(c);
                    self.audio_codec = Some(f.codec);
                }
                Err(_) => {
                    self.stats.refused += 1;
                    return;
                }
            }
        }
        let Some(w) = self.writer.as_mut() else {
            self.stats.dropped_audio += 1;
            return;
        };
        // A segment opened before the audio appeared (or with another codec) records it from
        // the next segment on.
        if w.audio() != self.audio_cfg.as_ref() {
            self.stats.dropped_audio += 1;
            return;
        }
        if w.push_audio(dts, &f.data).is_err() {
            self.stats.refused += 1;
        }
    }

    /// Learn the stream's audio from a frame without recording it (the recorder shows the
    /// segmenter an audio frame of the cached group of pictures first, so the first segment,
    /// opened at the keyframe before it, already carries the audio track).
    pub fn prime(&mut self, f: &Frame) {
        if matches!(
            f.codec,
            Codec::G711A | Codec::G711U | Codec::Aac | Codec::Opus
        ) && self.audio_codec != Some(f.codec)
        {
            if let Ok(c) = AudioConfig::from_frame(f.codec, &f.data) {
                self.audio_cfg = Some(c);
                self.audio_codec = Some(f.codec);
            }
        }
    }

    /// Continue a recording: the stream's first frame is at `at_90k` of the recording, and
    /// the first segment starts at the first keyframe at or after `stored_90k`, where the
    /// stored footage ends (a resumed download asks the device from a whole second, so it
    /// repeats up to a second of it). Call before the first frame.
    pub fn resume(&mut self, at_90k: u64, stored_90k: u64) {
        self.offset_90k = at_90k;
        self.skip_90k = stored_90k;
    }

    /// The stream ended: finish the current segment.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.close(out);
    }

    /// Whether a segment is open.
    pub fn recording(&self) -> bool {
        self.writer.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_unwrap_across_33_bits() {
        let mut u = Unwrap::default();
        assert_eq!(u.at(WRAP - 3600), WRAP - 3600);
        assert_eq!(u.at(0), WRAP);
        assert_eq!(u.at(3600), WRAP + 3600);
        // A late frame from before the wrap stays before it.
        assert_eq!(u.at(WRAP - 1800), WRAP - 1800);
        assert_eq!(u.at(7200), WRAP + 7200);
    }
}

//! ISO BMFF (MP4) for recordings: fragmented MP4 segments written from the stream hub's access
//! units without transcoding ([`fmp4`]), cut into self-contained segments at keyframes
//! ([`segmenter`]), and the video parameter sets they need ([`params`]).
//! Sans-IO and clock-free: frames in, bytes out; the recorder decides where the bytes go.

pub mod demux;
pub mod fmp4;
pub mod params;
pub mod recover;
pub mod segmenter;

/// Why an access unit or a parameter set could not be muxed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// A parameter set that does not parse.
    #[error("bad parameter set: {0}")]
    BadParameterSet(&'static str),
    /// A keyframe without the parameter sets a sample entry needs (SPS/PPS, and VPS for H.265).
    #[error("no parameter sets before the first keyframe")]
    NoParameterSets,
    /// A frame of a codec the writer was not opened for.
    #[error("unexpected {0} frame")]
    UnexpectedCodec(&'static str),
    /// A decode time earlier than the previous frame's.
    #[error("decode time went back from {previous} to {dts} (90 kHz)")]
    NonMonotonic {
        /// The previous frame's decode time.
        previous: u64,
        /// This frame's.
        dts: u64,
    },
    /// An ADTS header that does not parse.
    #[error("bad ADTS header")]
    BadAdts,
    /// An Opus packet whose TOC byte does not parse (or that is empty).
    #[error("bad Opus packet")]
    BadOpus,
    /// An access unit with no NAL unit in it.
    #[error("empty access unit")]
    EmptyAccessUnit,
}

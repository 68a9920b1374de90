//! Transcoding for browsers that cannot take what a camera sends, with GStreamer
//! (gstreamer-rs): H.265 → H.264 (a hardware encoder when the machine has one, else x264 tuned
//! for latency) and AAC → Opus. One [`Transcoder`] per pipeline; frames go in with
//! [`Transcoder::push`] and come out of [`Transcoder::pull`] (blocking, for a blocking thread).

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::ps::{Codec, Frame};

/// Why a transcoder could not start or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GStreamer: {0}")]
pub struct TranscodeError(pub String);

fn err(e: impl std::fmt::Display) -> TranscodeError {
    TranscodeError(e.to_string())
}

/// What a transcoder turns into what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// H.265 access units → H.264 (constrained baseline, Annex B, one access unit per buffer).
    H265ToH264 {
        /// Target bit rate, kbit/s.
        bitrate_kbps: u32,
    },
    /// AAC (ADTS) → Opus at 48 kHz.
    AacToOpus,
}

/// The H.264 encoder to use: the first hardware one GStreamer has, else x264.
pub fn h264_encoder(bitrate_kbps: u32) -> String {
    let hw = [
        (
            "vah264enc",
            format!("vah264enc bitrate={bitrate_kbps} key-int-max=50"),
        ),
        (
            "vaapih264enc",
            format!("vaapih264enc bitrate={bitrate_kbps} keyframe-period=50"),
        ),
        (
            "nvh264enc",
            format!("nvh264enc bitrate={bitrate_kbps} gop-size=50 zerolatency=true"),
        ),
        ("v4l2h264enc", "v4l2h264enc".to_string()),
    ];
    for (name, desc) in hw {
        if gst::ElementFactory::find(name).is_some() {
            return desc;
        }
    }
    format!(
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max=50 bframes=0 threads=2"
    )
}

/// A running GStreamer pipeline from `appsrc` to `appsink`.
pub struct Transcoder {
    conversion: Conversion,
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("conversion", &self.conversion)
            .finish()
    }
}

impl Transcoder {
    /// Build and start the pipeline for `conversion`.
    pub fn new(conversion: Conversion) -> Result<Transcoder, TranscodeError> {
        gst::init().map_err(err)?;
        let desc = match conversion {
            Conversion::H265ToH264 { bitrate_kbps } => format!(
                "appsrc name=src is-live=true format=time caps=video/x-h265,stream-format=byte-stream,alignment=au \
                 ! h265parse ! avdec_h265 ! videoconvert ! video/x-raw,format=I420 ! {} \
                 ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
                 ! video/x-h264,stream-format=byte-stream,alignment=au \
                 ! appsink name=sink sync=false max-buffers=100 drop=false",
                h264_encoder(bitrate_kbps)
            ),
            Conversion::AacToOpus => "appsrc name=src is-live=true format=time caps=audio/mpeg,mpegversion=4,stream-format=adts \
                 ! aacparse ! avdec_aac ! audioconvert ! audioresample ! audio/x-raw,rate=48000 \
                 ! opusenc frame-size=20 ! appsink name=sink sync=false max-buffers=200 drop=false"
                .to_string(),
        };
        let pipeline = gst::parse::launch(&desc)
            .map_err(err)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| err("not a pipeline"))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| err("no appsrc"))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| err("no appsink"))?;
        src.set_max_bytes(16 * 1024 * 1024);
        pipeline.set_state(gst::State::Playing).map_err(err)?;
        Ok(Transcoder {
            conversion,
            pipeline,
            src,
            sink,
        })
    }

    /// Feed one frame (its PTS, 90 kHz, becomes the buffer's).
    pub fn push(&self, f: &Frame) -> Result<(), TranscodeError> {
        let mut buf = gst::Buffer::from_slice(f.data.clone());
        if let Some(pts) = f.pts_90k {
            let b = buf.get_mut().ok_or_else(|| err("buffer not writable"))?;
            b.set_pts(gst::ClockTime::from_nseconds(pts * 100_000 / 9));
        }
        self.src.push_buffer(buf).map(|_| ()).map_err(err)
    }

    /// The next output frame, waiting at most `timeout`; `Ok(None)` on time-out, an error at the
    /// end of the stream or when the pipeline failed.
    pub fn pull(&self, timeout: Duration) -> Result<Option<Frame>, TranscodeError> {
        let Some(sample) = self
            .sink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            if self.sink.is_eos() {
                return Err(err("end of stream"));
            }
            if let Some(bus) = self.pipeline.bus() {
                while let Some(m) = bus.pop() {
                    if let gst::MessageView::Error(e) = m.view() {
                        return Err(err(e.error()));
                    }
                }
            }
            return Ok(None);
        };
        let buffer = sample
            .buffer()
            .ok_or_else(|| err("sample without buffer"))?;
        let map = buffer.map_readable().map_err(err)?;
        let pts = buffer.pts().map(|t| t.nseconds() * 9 / 100_000);
        let (codec, keyframe) = match self.conversion {
            Conversion::H265ToH264 { .. } => (
                Codec::H264,
                !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            ),
            Conversion::AacToOpus => (Codec::Opus, true),
        };
        Ok(Some(Frame {
            codec,
            pts_90k: pts,
            dts_90k: pts,
            data: map.as_slice().to_vec(),
            keyframe,
            received: None,
            rtp_payloads: Default::default(),
        }))
    }

    /// No more input.
    pub fn finish(&self) {
        let _ = self.src.end_of_stream();
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

//! WHEP (WebRTC-HTTP egress): live video from the stream hub to browsers, with webrtc-rs.
//!
//! One peer connection per viewer, a send-only video track fed with the hub's access units
//! (H.264, or H.265 when the browser offered it; passed through, not transcoded here — the hub's
//! `watch_web` picks a transcoding stream for browsers that need one) and, when the channel has
//! sound, an audio track (PCMA/PCMU or Opus): the cached group of pictures first, so the picture
//! appears at once, then live frames. A viewer that falls behind skips to the next keyframe. The session
//! ends on `DELETE` ([`Whep::stop`]), when the peer connection fails or closes, or when the
//! stream ends; `on_end` is called once with what was watched and for how long.
//!
//! ICE uses the UDP port range `udp_ports`; `nat_ips` are announced as host candidates when the
//! server sits behind a 1:1 NAT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use tokio::sync::{broadcast, watch};
use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_HEVC, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::nack::generator::Generator;
use webrtc::interceptor::nack::responder::Responder;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp;
use webrtc::rtp::codecs::g7xx::G7xxPayloader;
use webrtc::rtp::codecs::h264::H264Payloader;
use webrtc::rtp::codecs::h265::HevcPayloader;
use webrtc::rtp::codecs::opus::OpusPayloader;
use webrtc::rtp::packetizer::Payloader;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};

use crate::hub::Viewer;
use crate::ps::{Codec, Frame};
use crate::stats::LatencyHistogram;

/// WHEP settings (`[media]`).
#[derive(Debug, Clone)]
pub struct WhepConfig {
    /// UDP ports for ICE, inclusive.
    pub udp_ports: (u16, u16),
    /// Addresses announced as host candidates (1:1 NAT); empty = the interfaces' own.
    pub nat_ips: Vec<String>,
    /// Offer loopback candidates too (a browser on the same machine).
    pub include_loopback: bool,
    /// Gather ICE host candidates on this address only (`media.bind_ip` when it is not a
    /// wildcard; the demo's loopback); `None` = every interface.
    pub only_ip: Option<std::net::IpAddr>,
    /// How long ICE gathering may take before the answer goes out anyway.
    pub gather_timeout: Duration,
}

impl Default for WhepConfig {
    fn default() -> Self {
        Self {
            udp_ports: (31_000, 31_999),
            nat_ips: Vec::new(),
            include_loopback: true,
            only_ip: None,
            gather_timeout: Duration::from_secs(3),
        }
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    /// The offer is not SDP or cannot be answered.
    #[error("the offer cannot be answered: {0}")]
    Offer(String),
    /// The stream carries no video the browser can take.
    #[error("{0}")]
    Codec(String),
    /// The WebRTC stack failed.
    #[error("WebRTC: {0}")]
    Internal(String),
}

/// What a session watched, for the audit log.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// Recorder.
    pub device_id: String,
    /// Channel.
    pub channel_id: String,
    /// How long.
    pub watched: Duration,
    /// Why it ended.
    pub reason: String,
}

/// Who started a session and what it carries: a session is stopped only by its owner or
/// someone in charge of the recorder (the API decides; this only remembers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    /// The account that started it.
    pub account_id: String,
    /// Recorder.
    pub device_id: String,
    /// Channel.
    pub channel_id: String,
}

struct Session {
    stop: watch::Sender<bool>,
    owner: SessionOwner,
}

/// The WHEP endpoint's state.
pub struct Whep {
    api: API,
    sessions: Mutex<HashMap<String, Session>>,
    cfg: WhepConfig,
    latency: Arc<LatencyHistogram>,
}

impl std::fmt::Debug for Whep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whep").field("cfg", &self.cfg).finish()
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> WhepError {
    WhepError::Internal(e.to_string())
}

/// How many sent packets each outgoing stream keeps for retransmission on NACK, as a power of
/// two: 1,024 packets, 5 s of a 2 Mbit/s camera (a browser stops asking for a packet after
/// about a second). webrtc-rs's default, 8,192, cost 10 MB per viewer while each stored packet
/// held its own copy of the payload; now the payloads are shared with the stream's other
/// viewers.
const NACK_BUFFER_LOG2: u8 = 10;

/// webrtc-rs's default interceptors (NACK generator and responder, sender and receiver
/// reports, TWCC receiver side) with a smaller NACK send buffer.
fn interceptors(m: &mut MediaEngine) -> Result<Registry, WhepError> {
    for parameter in ["", "pli"] {
        m.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RTPCodecType::Video,
        );
    }
    let mut registry = Registry::new();
    registry.add(Box::new(
        Responder::builder().with_log2_size(NACK_BUFFER_LOG2),
    ));
    registry.add(Box::new(Generator::builder()));
    let registry = configure_rtcp_reports(registry);
    configure_twcc_receiver_only(registry, m).map_err(internal)
}

/// The WebRTC API over `m` with the [`interceptors`] and the ICE settings of `cfg` (shared by
/// WHEP and WHIP). `cm_first`: offer SRTP AES-CM + HMAC-SHA1 before AES-GCM.
pub(crate) fn build_api(
    cfg: &WhepConfig,
    mut m: MediaEngine,
    cm_first: bool,
) -> Result<API, WhepError> {
    let registry = interceptors(&mut m)?;
    let mut s = SettingEngine::default();
    let (lo, hi) = cfg.udp_ports;
    s.set_udp_network(UDPNetwork::Ephemeral(
        EphemeralUDP::new(lo, hi).map_err(internal)?,
    ));
    if !cfg.nat_ips.is_empty() {
        s.set_nat_1to1_ips(cfg.nat_ips.clone(), RTCIceCandidateType::Host);
    }
    s.set_include_loopback_candidate(cfg.include_loopback);
    if let Some(ip) = cfg.only_ip {
        s.set_ip_filter(Box::new(move |a| a == ip));
    }
    if cm_first {
        // We answer as the DTLS client, so our order is offered first. webrtc-srtp's AES-CM +
        // HMAC-SHA1 writes packets in place, its AES-GCM assembles each one byte by byte.
        s.set_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ]);
    }
    Ok(APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}

impl Whep {
    /// Build the WebRTC API once.
    pub fn new(cfg: WhepConfig) -> Result<Whep, WhepError> {
        let mut m = MediaEngine::default();
        m.register_default_codecs().map_err(internal)?;
        let api = build_api(&cfg, m, true)?;
        Ok(Whep {
            api,
            sessions: Mutex::new(HashMap::new()),
            cfg,
            latency: Arc::new(LatencyHistogram::default()),
        })
    }

    /// Server-added latency of live frames: from the arrival of a frame's last RTP packet at
    /// the hub to the return of the SRTP send towards one viewer (one count per frame and
    /// viewer; the cached frames a session starts with are not counted).
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Sessions running.
    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Answer a browser's offer and start sending `viewer`'s video, for the account
    /// `owner_account`. Returns (session id, answer SDP).
    pub async fn start(
        self: &Arc<Self>,
        offer: String,
        viewer: Viewer,
        owner_account: &str,
        on_end: Box<dyn FnOnce(SessionInfo) + Send>,
    ) -> Result<(String, String), WhepError> {
        let (video, audio) = viewer.stream().codecs();
        let video =
            video.ok_or_else(|| WhepError::Codec("the channel has sent no picture yet".into()))?;
        let offers_h265 = offer.contains("H265/90000");
        let video_cap = match video {
            Codec::H264 => RTCRtpCodecCapability {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                sdp_fmtp_line:
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
                ..Default::default()
            },
            Codec::H265 if offers_h265 => RTCRtpCodecCapability {
                mime_type: MIME_TYPE_HEVC.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            other => {
                return Err(WhepError::Codec(format!(
                    "the channel sends {other:?}, which this browser does not take"
                )))
            }
        };
        let audio_cap = match audio {
            Some(Codec::G711A) => Some((MIME_TYPE_PCMA, 8_000, 1)),
            Some(Codec::G711U) => Some((MIME_TYPE_PCMU, 8_000, 1)),
            Some(Codec::Opus) => Some((MIME_TYPE_OPUS, 48_000, 2)),
            _ => None,
        }
        .map(|(m, rate, ch)| RTCRtpCodecCapability {
            mime_type: m.to_owned(),
            clock_rate: rate,
            channels: ch,
            ..Default::default()
        });
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| WhepError::Offer(e.to_string()))?;
        let pc = Arc::new(
            self.api
                .new_peer_connection(RTCConfiguration::default())
                .await
                .map_err(internal)?,
        );
        let track = Arc::new(TrackLocalStaticRTP::new(
            video_cap,
            "video".into(),
            "shouhu".into(),
        ));
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .map_err(internal)?;
        let audio_track = match audio_cap {
            Some(cap) => {
                let rate = cap.clock_rate;
                let t = Arc::new(TrackLocalStaticRTP::new(
                    cap,
                    "audio".into(),
                    "shouhu".into(),
                ));
                let s = pc
                    .add_track(Arc::clone(&t) as Arc<dyn TrackLocal + Send + Sync>)
                    .await
                    .map_err(internal)?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1500];
                    while s.read(&mut buf).await.is_ok() {}
                });
                Some(Out::new(t, rate))
            }
            None => None,
        };
        // RTCP from the browser must be read for the interceptors (NACK, reports) to work.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        if let Err(e) = pc.set_remote_description(offer).await {
            let _ = pc.close().await;
            return Err(WhepError::Offer(e.to_string()));
        }
        let answer = match pc.create_answer(None).await {
            Ok(a) => a,
            Err(e) => {
                let _ = pc.close().await;
                return Err(WhepError::Offer(e.to_string()));
            }
        };
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(answer).await.map_err(internal)?;
        let _ = tokio::time::timeout(self.cfg.gather_timeout, gathered.recv()).await;
        let sdp = pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| internal("no local description"))?;
        let id = uuid_like();
        let (stop, stop_rx) = watch::channel(false);
        let owner = {
            let (d, c) = viewer.stream().key();
            SessionOwner {
                account_id: owner_account.to_string(),
                device_id: d.to_string(),
                channel_id: c.to_string(),
            }
        };
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Session { stop, owner });
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = state_tx.send(s);
            Box::pin(async {})
        }));
        let me = Arc::clone(self);
        let sid = id.clone();
        tokio::spawn(async move {
            let (device_id, channel_id) = {
                let (d, c) = viewer.stream().key();
                (d.to_string(), c.to_string())
            };
            let started = Instant::now();
            let tracks = Tracks {
                video: (video, Out::new(track, 90_000)),
                audio: audio_track,
            };
            let reason = pump(viewer, tracks, stop_rx, state_rx, &me.latency).await;
            let _ = pc.close().await;
            me.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&sid);
            tracing::info!(session = %sid, device.id = %device_id, reason = %reason, "whep.ended");
            on_end(SessionInfo {
                id: sid,
                device_id,
                channel_id,
                watched: started.elapsed(),
                reason,
            });
        });
        Ok((id, sdp))
    }

    /// Who owns a running session, and what it watches.
    pub fn owner(&self, id: &str) -> Option<SessionOwner> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.owner.clone())
    }

    /// End a session (`DELETE`); `false` when there is none by that id.
    pub fn stop(&self, id: &str) -> bool {
        match self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            Some(s) => {
                let _ = s.stop.send(true);
                true
            }
            None => false,
        }
    }
}

fn uuid_like() -> String {
    let a: u128 = rand::random();
    format!("{a:032x}")
}

/// RTP payload size: webrtc-rs's outbound MTU (1,200 bytes) less the 12-byte RTP header.
const RTP_PAYLOAD_MTU: usize = 1_188;

/// `f` cut into RTP payloads: made by the first viewer that sends the frame, then shared (by
/// reference count) by every viewer of the stream, and by their NACK send buffers.
fn payloads(f: &Frame) -> Arc<[Bytes]> {
    f.rtp_payloads
        .get_or_init(|| {
            let copy = || Bytes::copy_from_slice(&f.data);
            let cut = match f.codec {
                Codec::H264 => H264Payloader::default().payload(RTP_PAYLOAD_MTU, &copy()),
                Codec::H265 => {
                    // webrtc-rs's H.265 payloader splits only at four-byte start codes when
                    // there are any; encoders use three-byte ones inside an access unit.
                    let mut b = Vec::with_capacity(f.data.len() + 16);
                    for n in crate::ps::nal_units(&f.data) {
                        b.extend_from_slice(&[0, 0, 0, 1]);
                        b.extend_from_slice(n);
                    }
                    HevcPayloader::default().payload(RTP_PAYLOAD_MTU, &Bytes::from(b))
                }
                Codec::G711A | Codec::G711U => G7xxPayloader.payload(RTP_PAYLOAD_MTU, &copy()),
                Codec::Opus => OpusPayloader.payload(RTP_PAYLOAD_MTU, &copy()),
                Codec::Aac => Ok(Vec::new()),
            };
            cut.unwrap_or_else(|e| {
                tracing::debug!(error = %e, codec = ?f.codec, "whep.payload_failed");
                Vec::new()
            })
            .into()
        })
        .clone()
}

/// One outgoing track of a session: its own sequence numbers and RTP clock over the shared
/// payloads.
struct Out {
    track: Arc<TrackLocalStaticRTP>,
    clock_rate: u32,
    seq: u16,
    timestamp: u32,
    last_pts: Option<u64>,
}

impl Out {
    fn new(track: Arc<TrackLocalStaticRTP>, clock_rate: u32) -> Out {
        Out {
            track,
            clock_rate,
            seq: rand::random(),
            timestamp: rand::random(),
            last_pts: None,
        }
    }

    /// Send `f`; `false` when the track is closed. `latency`: record the server-added latency.
    ///
    /// A frame goes out whole, outside tokio's cooperative budget: a keyframe is some hundred
    /// packets, each a few channel and lock operations deep in webrtc-rs, and with the budget
    /// spent the task would be sent to the back of the run queue, behind every other viewer,
    /// several times per keyframe.
    async fn write(&mut self, f: &Frame, latency: Option<&LatencyHistogram>) -> bool {
        tokio::task::unconstrained(self.write_frame(f, latency)).await
    }

    async fn write_frame(&mut self, f: &Frame, latency: Option<&LatencyHistogram>) -> bool {
        let duration = match (f.codec, f.pts_90k, self.last_pts) {
            // G.711: one byte per sample at 8 kHz.
            (Codec::G711A | Codec::G711U, _, _) => Duration::from_micros(f.data.len() as u64 * 125),
            (_, Some(p), Some(l)) if p > l && p - l < 90_000 => {
                Duration::from_micros((p - l) * 100 / 9)
            }
            (Codec::Opus, _, _) => Duration::from_millis(20),
            _ => Duration::from_millis(40),
        };
        if f.pts_90k.is_some() {
            self.last_pts = f.pts_90k;
        }
        let parts = payloads(f);
        let last = parts.len().saturating_sub(1);
        for (i, payload) in parts.iter().enumerate() {
            let p = rtp::packet::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i == last,
                    sequence_number: self.seq,
                    timestamp: self.timestamp,
                    ..Default::default()
                },
                payload: payload.clone(),
            };
            self.seq = self.seq.wrapping_add(1);
            if let Err(e) = self.track.write_rtp(&p).await {
                tracing::debug!(error = %e, "whep.write_failed");
                return false;
            }
        }
        let samples = (duration.as_secs_f64() * f64::from(self.clock_rate)) as u32;
        self.timestamp = self.timestamp.wrapping_add(samples);
        if let (Some(h), Some(at)) = (latency, f.received) {
            h.record(at.elapsed());
        }
        true
    }
}

/// The tracks of a session: video (its codec) and audio, when the channel has audio the
/// browser takes.
struct Tracks {
    video: (Codec, Out),
    audio: Option<Out>,
}

/// Feed the tracks until the session ends; returns why.
async fn pump(
    mut viewer: Viewer,
    tracks: Tracks,
    mut stop: watch::Receiver<bool>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    latency: &LatencyHistogram,
) -> String {
    // Wait for the connection before sending (samples written earlier are lost anyway).
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match *state.borrow_and_update() {
                RTCPeerConnectionState::Connected => return true,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return false,
                _ => {}
            }
            if state.changed().await.is_err() {
                return false;
            }
        }
    });
    tokio::select! {
        ok = connected => match ok {
            Ok(true) => {}
            Ok(false) => return "the browser's connection failed".into(),
            Err(_) => return "the browser did not connect within 20 s".into(),
        },
        _ = stop.changed() => return "stopped before connecting".into(),
    }
    let mut stream_state = viewer.stream().subscribe_state();
    let (video_codec, mut video) = tracks.video;
    let mut audio = tracks.audio;
    let mut need_key = true;
    let initial: Vec<Arc<Frame>> = std::mem::take(&mut viewer.initial);
    for f in initial.iter().filter(|f| f.codec == video_codec) {
        if need_key && !f.keyframe {
            continue;
        }
        need_key = false;
        if !video.write(f, None).await {
            return "the track closed".into();
        }
    }
    loop {
        tokio::select! {
            r = viewer.rx.recv() => match r {
                Ok(f) if f.codec == video_codec => {
                    if need_key && !f.keyframe {
                        continue;
                    }
                    need_key = false;
                    if !video.write(&f, Some(latency)).await {
                        return "the track closed".into();
                    }
                }
                Ok(f) if !f.codec.is_video() => {
                    if let Some(a) = &mut audio {
                        // A closed audio track (not negotiated) is not a reason to stop.
                        let _ = a.write(&f, None).await;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "whep.viewer_lagged");
                    need_key = true;
                }
                Err(broadcast::error::RecvError::Closed) => return "the stream ended".into(),
            },
            _ = stop.changed() => return "stopped (DELETE)".into(),
            _ = stream_state.changed() => {
                if let crate::hub::StreamState::Ended(why) = stream_state.borrow().clone() {
                    return format!("the stream ended: {why}");
                }
            }
            _ = state.changed() => {
                let s = *state.borrow();
                if matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected) {
                    return format!("the browser's connection is {s}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: Codec, data: Vec<u8>) -> Frame {
        Frame {
            codec,
            pts_90k: Some(0),
            dts_90k: Some(0),
            data,
            keyframe: true,
            received: None,
            rtp_payloads: Default::default(),
        }
    }

    #[test]
    fn a_frame_is_cut_once_and_its_payloads_are_shared() {
        // SPS, PPS and a 5,000-byte IDR slice.
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        au.extend_from_slice(&[0, 0, 1, 0x65]);
        au.extend((0..5_000u32).map(|i| (i % 251) as u8 | 1));
        let f = frame(Codec::H264, au);
        let a = payloads(&f);
        let b = payloads(&f);
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second viewer must reuse the first one's cut"
        );
        assert!(a.iter().all(|p| p.len() <= RTP_PAYLOAD_MTU));
        // STAP-A with SPS and PPS first, then the slice in FU-A fragments.
        assert_eq!(a[0][0] & 0x1f, 24, "STAP-A");
        assert!(a[1..].iter().all(|p| p[0] & 0x1f == 28), "FU-A");
        assert_eq!(a[1][1] & 0x80, 0x80, "first fragment has the start bit");
        assert_eq!(
            a[a.len() - 1][1] & 0x40,
            0x40,
            "last fragment has the end bit"
        );
        let carried: usize = a[1..].iter().map(|p| p.len() - 2).sum();
        assert_eq!(carried, 5_000, "the slice's bytes after its NAL header");
        // The same payload bytes, not copies, for every viewer.
        assert_eq!(a[1].as_ptr(), b[1].as_ptr());
    }

    #[test]
    fn h265_three_byte_start_codes_are_split_and_g711_fits_packets() {
        // VPS, SPS, PPS with three-byte start codes, then a small IDR.
        let mut au = Vec::new();
        for t in [32u8, 33, 34, 19] {
            au.extend_from_slice(&[0, 0, 1, t << 1, 1, 0xaa, 0xbb]);
        }
        let p = payloads(&frame(Codec::H265, au));
        assert!(!p.is_empty());
        assert!(p.iter().all(|x| x.len() <= RTP_PAYLOAD_MTU));
        let g = payloads(&frame(Codec::G711A, vec![0xd5; 320]));
        assert_eq!(g.iter().map(|x| x.len()).sum::<usize>(), 320);
        assert!(payloads(&frame(Codec::Aac, vec![1, 2, 3])).is_empty());
    }
}

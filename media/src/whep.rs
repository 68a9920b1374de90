//! WHEP (WebRTC-HTTP egress): live video from the stream hub to browsers, with webrtc-rs.
//!
//! One peer connection per viewer, one send-only H.264 track fed with the hub's access units
//! (passed through, not transcoded): the cached group of pictures first, so the picture appears
//! at once, then live frames. A viewer that falls behind skips to the next keyframe. The session
//! ends on `DELETE` ([`Whep::stop`]), when the peer connection fails or closes, or when the
//! stream ends; `on_end` is called once with what was watched and for how long.
//!
//! ICE uses the UDP port range `udp_ports`; `nat_ips` are announced as host candidates when the
//! server sits behind a 1:1 NAT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_H264};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

use crate::hub::Viewer;
use crate::ps::{Codec, Frame};

/// WHEP settings (`[media]`).
#[derive(Debug, Clone)]
pub struct WhepConfig {
    /// UDP ports for ICE, inclusive.
    pub udp_ports: (u16, u16),
    /// Addresses announced as host candidates (1:1 NAT); empty = the interfaces' own.
    pub nat_ips: Vec<String>,
    /// Offer loopback candidates too (a browser on the same machine).
    pub include_loopback: bool,
    /// How long ICE gathering may take before the answer goes out anyway.
    pub gather_timeout: Duration,
}

impl Default for WhepConfig {
    fn default() -> Self {
        Self {
            udp_ports: (31_000, 31_999),
            nat_ips: Vec::new(),
            include_loopback: true,
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

struct Session {
    stop: watch::Sender<bool>,
}

/// The WHEP endpoint's state.
pub struct Whep {
    api: API,
    sessions: Mutex<HashMap<String, Session>>,
    cfg: WhepConfig,
}

impl std::fmt::Debug for Whep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whep").field("cfg", &self.cfg).finish()
    }
}

fn internal(e: impl std::fmt::Display) -> WhepError {
    WhepError::Internal(e.to_string())
}

impl Whep {
    /// Build the WebRTC API once.
    pub fn new(cfg: WhepConfig) -> Result<Whep, WhepError> {
        let mut m = MediaEngine::default();
        m.register_default_codecs().map_err(internal)?;
        let registry = register_default_interceptors(Registry::new(), &mut m).map_err(internal)?;
        let mut s = SettingEngine::default();
        let (lo, hi) = cfg.udp_ports;
        s.set_udp_network(UDPNetwork::Ephemeral(
            EphemeralUDP::new(lo, hi).map_err(internal)?,
        ));
        if !cfg.nat_ips.is_empty() {
            s.set_nat_1to1_ips(cfg.nat_ips.clone(), RTCIceCandidateType::Host);
        }
        s.set_include_loopback_candidate(cfg.include_loopback);
        let api = APIBuilder::new()
            .with_media_engine(m)
            .with_interceptor_registry(registry)
            .with_setting_engine(s)
            .build();
        Ok(Whep {
            api,
            sessions: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    /// Sessions running.
    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Answer a browser's offer and start sending `viewer`'s video. Returns (session id,
    /// answer SDP).
    pub async fn start(
        self: &Arc<Self>,
        offer: String,
        viewer: Viewer,
        on_end: Box<dyn FnOnce(SessionInfo) + Send>,
    ) -> Result<(String, String), WhepError> {
        if let Some(f) = viewer.initial.iter().find(|f| f.codec.is_video()) {
            if f.codec != Codec::H264 {
                return Err(WhepError::Codec(
                    "the camera sends H.265, which this browser path does not carry yet".into(),
                ));
            }
        }
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| WhepError::Offer(e.to_string()))?;
        let pc = Arc::new(
            self.api
                .new_peer_connection(RTCConfiguration::default())
                .await
                .map_err(internal)?,
        );
        let track = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                sdp_fmtp_line:
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
                ..Default::default()
            },
            "video".into(),
            "shouhu".into(),
        ));
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .map_err(internal)?;
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
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Session { stop });
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
            let reason = pump(viewer, track, stop_rx, state_rx).await;
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

async fn write(track: &TrackLocalStaticSample, f: &Frame, last_pts: &mut Option<u64>) -> bool {
    let duration = match (f.pts_90k, *last_pts) {
        (Some(p), Some(l)) if p > l && p - l < 90_000 => Duration::from_micros((p - l) * 100 / 9),
        _ => Duration::from_millis(40),
    };
    if f.pts_90k.is_some() {
        *last_pts = f.pts_90k;
    }
    track
        .write_sample(&Sample {
            data: bytes::Bytes::copy_from_slice(&f.data),
            duration,
            ..Default::default()
        })
        .await
        .is_ok()
}

/// Feed the track until the session ends; returns why.
async fn pump(
    mut viewer: Viewer,
    track: Arc<TrackLocalStaticSample>,
    mut stop: watch::Receiver<bool>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
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
    let mut last_pts = None;
    let mut need_key = true;
    let initial: Vec<Arc<Frame>> = std::mem::take(&mut viewer.initial);
    for f in initial.iter().filter(|f| f.codec == Codec::H264) {
        if need_key && !f.keyframe {
            continue;
        }
        need_key = false;
        if !write(&track, f, &mut last_pts).await {
            return "the track closed".into();
        }
    }
    loop {
        tokio::select! {
            r = viewer.rx.recv() => match r {
                Ok(f) if f.codec == Codec::H264 => {
                    if need_key && !f.keyframe {
                        continue;
                    }
                    need_key = false;
                    if !write(&track, &f, &mut last_pts).await {
                        return "the track closed".into();
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

//! WHIP (WebRTC-HTTP ingest): a phone app (or any WebRTC sender) publishes a channel into the
//! stream hub without GB/T 28181, with webrtc-rs.
//!
//! The answer accepts H.264 video (packetization mode 1, the profiles browsers send) and Opus
//! audio. Video RTP is reassembled into access units (Annex B) and audio packets become Opus
//! frames; both go to a [`Publisher`], so viewers, snapshots and recordings take a published
//! channel like a camera's. A picture loss indication every two seconds keeps keyframes coming,
//! so a viewer that joins starts within two seconds and the hub's cached group of pictures stays
//! short. The session ends on `DELETE` ([`Whip::stop`]) or when the sender's connection fails or
//! closes; then the stream ends for its viewers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS};
use webrtc::api::API;
use webrtc::media::io::sample_builder::SampleBuilder;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::RTCPFeedback;

use crate::hub::Publisher;
use crate::ps::{is_keyframe, Codec, Frame};
use crate::whep::{build_api, internal, SessionInfo, SessionOwner, WhepConfig, WhepError};

/// The WHIP endpoint's state.
pub struct Whip {
    api: API,
    sessions: Mutex<HashMap<String, (watch::Sender<bool>, SessionOwner)>>,
    cfg: WhepConfig,
}

impl std::fmt::Debug for Whip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whip").field("cfg", &self.cfg).finish()
    }
}

/// Extends 32-bit RTP timestamps to 64 bits across wrap-arounds.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<u64>,
}

impl Unwrap {
    fn next(&mut self, ts: u32) -> u64 {
        let v = match self.last {
            None => ts as u64 + (1 << 32),
            Some(l) => {
                let d = ts.wrapping_sub(l as u32) as i32 as i64;
                (l as i64 + d).max(0) as u64
            }
        };
        self.last = Some(v);
        v
    }
}

fn media_engine() -> Result<MediaEngine, WhepError> {
    let mut m = MediaEngine::default();
    let fb = vec![
        RTCPFeedback {
            typ: "goog-remb".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ];
    for (pt, profile) in [
        (102u8, "42e01f"),
        (103, "42001f"),
        (104, "4d001f"),
        (105, "64001f"),
    ] {
        m.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: MIME_TYPE_H264.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!(
                        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                    ),
                    rtcp_feedback: fb.clone(),
                },
                payload_type: pt,
                ..Default::default()
            },
            RTPCodecType::Video,
        )
        .map_err(internal)?;
    }
    m.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )
    .map_err(internal)?;
    Ok(m)
}

impl Whip {
    /// Build the WebRTC API once (the same ICE settings as WHEP).
    pub fn new(cfg: WhepConfig) -> Result<Whip, WhepError> {
        let api = build_api(&cfg, media_engine()?, false)?;
        Ok(Whip {
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

    /// Answer a publisher's offer (of the account `owner_account`); its media goes to
    /// `publisher`. Returns (session id, answer SDP). `on_end` is called once when the session
    /// is over.
    pub async fn start(
        self: &Arc<Self>,
        offer: String,
        publisher: Publisher,
        owner_account: &str,
        on_end: Box<dyn FnOnce(SessionInfo) + Send>,
    ) -> Result<(String, String), WhepError> {
        if !offer.contains("H264/90000") {
            return Err(WhepError::Codec(
                "the offer has no H.264 video: WHIP publishers must send H.264".into(),
            ));
        }
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| WhepError::Offer(e.to_string()))?;
        let pc = Arc::new(
            self.api
                .new_peer_connection(RTCConfiguration::default())
                .await
                .map_err(internal)?,
        );
        let publisher = Arc::new(publisher);
        let (done_tx, done_rx) = watch::channel(false);
        let weak_pc = Arc::downgrade(&pc);
        let pub2 = publisher.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let publisher = pub2.clone();
            let weak_pc = weak_pc.clone();
            let mime = track.codec().capability.mime_type.to_ascii_lowercase();
            let done = done_rx.clone();
            tokio::spawn(async move {
                if mime == MIME_TYPE_H264.to_ascii_lowercase() {
                    // Keyframes on a schedule, for viewers that join and for the GOP cache.
                    let ssrc = track.ssrc();
                    let mut done2 = done.clone();
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_secs(2));
                        loop {
                            tokio::select! {
                                _ = every.tick() => {}
                                _ = done2.changed() => return,
                            }
                            let Some(pc) = weak_pc.upgrade() else { return };
                            let pli = PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc: ssrc,
                            };
                            if pc.write_rtcp(&[Box::new(pli)]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut sb = SampleBuilder::new(256, H264Packet::default(), 90_000);
                    let mut ts = Unwrap::default();
                    while let Ok((p, _)) = track.read_rtp().await {
                        sb.push(p);
                        while let Some(s) = sb.pop() {
                            let data = s.data.to_vec();
                            publisher.push(Frame {
                                codec: Codec::H264,
                                pts_90k: Some(ts.next(s.packet_timestamp)),
                                dts_90k: None,
                                keyframe: is_keyframe(Codec::H264, &data),
                                data,
                                received: None,
                                rtp_payloads: Default::default(),
                            });
                        }
                    }
                } else if mime == MIME_TYPE_OPUS.to_ascii_lowercase() {
                    let mut ts = Unwrap::default();
                    while let Ok((p, _)) = track.read_rtp().await {
                        if p.payload.is_empty() {
                            continue;
                        }
                        let t = ts.next(p.header.timestamp);
                        publisher.push(Frame {
                            codec: Codec::Opus,
                            pts_90k: Some(t * 90 / 48),
                            dts_90k: None,
                            keyframe: true,
                            data: p.payload.to_vec(),
                            received: None,
                            rtp_payloads: Default::default(),
                        });
                    }
                }
            });
            Box::pin(async {})
        }));
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
        let id = format!("{:032x}", rand::random::<u128>());
        let (stop, mut stop_rx) = watch::channel(false);
        let owner = {
            let (d, c) = publisher.stream().key();
            SessionOwner {
                account_id: owner_account.to_string(),
                device_id: d.to_string(),
                channel_id: c.to_string(),
            }
        };
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), (stop, owner));
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = state_tx.send(s);
            Box::pin(async {})
        }));
        let me = Arc::clone(self);
        let sid = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (device_id, channel_id) = {
                let (d, c) = publisher.stream().key();
                (d.to_string(), c.to_string())
            };
            let deadline = tokio::time::sleep(Duration::from_secs(20));
            tokio::pin!(deadline);
            let mut connected = false;
            let reason = loop {
                tokio::select! {
                    _ = stop_rx.changed() => break "stopped (DELETE)".to_string(),
                    r = state.changed() => {
                        if r.is_err() {
                            break "the connection went away".into();
                        }
                        let s = *state.borrow();
                        match s {
                            RTCPeerConnectionState::Connected => connected = true,
                            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected => {
                                break format!("the publisher's connection is {s}");
                            }
                            _ => {}
                        }
                    }
                    _ = &mut deadline, if !connected => break "the publisher did not connect within 20 s".into(),
                }
            };
            let _ = done_tx.send(true);
            let _ = pc.close().await;
            me.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&sid);
            // The track tasks hold the publisher too; they end with the connection.
            drop(publisher);
            tracing::info!(session = %sid, device.id = %device_id, reason = %reason, "whip.ended");
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

    /// Who owns a running session, and what it publishes.
    pub fn owner(&self, id: &str) -> Option<SessionOwner> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.1.clone())
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
                let _ = s.0.send(true);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unwrap;

    #[test]
    fn rtp_timestamps_extend_across_the_wrap() {
        let mut u = Unwrap::default();
        let a = u.next(u32::MAX - 10);
        let b = u.next(5);
        assert_eq!(b - a, 16);
        let c = u.next(u32::MAX - 20);
        assert!(c < b, "a late packet goes back, not forward by 2^32");
    }
}

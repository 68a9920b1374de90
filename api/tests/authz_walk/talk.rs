//! Walk fixtures: see `fixture_talk`.
//!
//! The rows that need a device or a peer on the line: dispatch calls, the console's WebRTC
//! side, the officer app's publication, and commands to a vehicle's JT/T 808 terminal.
//!
//! Per district the walk keeps
//! - an officer with a phone terminal (a recorder bound to the officer that never registers
//!   over SIP, as the app's device is): in Huangpu the officer `hp_officer` is bound to, so its
//!   app answers, declines and plays the console's side; in Xuhui an officer of its own;
//! - a vehicle whose terminal is online: a simulated JT/T 808 terminal
//!   (`shouhu_api::simulate::run_terminal`) over TCP at the test server's bound JT/T 808
//!   address, registering with the vehicle's phone number, authenticating, reporting once an
//!   hour and answering position queries (0x8201 → 0x0201) and tracking requests (0x8202).
//!
//! SDP offers come from a real WebRTC stack (webrtc-rs): H.264 + Opus tracks to publish,
//! receive-only transceivers to play. The answers are not applied: a 2xx is what the walk
//! shows, and each session is stopped after the call ([`Walk::settle`]).
//!
//! The console's picture for `POST /calls/{id}/whep` is put on the hub in-process (the first
//! access unit of the simulated recorders' ffmpeg H.264 sample, pushed as the console channel's
//! publisher would), and only when the call is expected to succeed: a refused caller is refused
//! before the console is looked at, and a picture on the air is recorded by the call (rows a
//! refusal check must not see appear).
//!
//! After every call of these rows [`Walk::settle`] stops the session the call opened, hangs up
//! every open call (which waits until the call's recordings are stored and closed), takes the
//! console off the air, waits for the answer of a successful position query to reach the
//! history, and waits for the database to hold still when something was on the air.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use shouhu_api::simulate::{self, Route, SimStats, TerminalSpec};
use shouhu_media::hub::Publisher;
use shouhu_media::ps::{Codec, Frame};
use shouhu_storage::org_units::OrgUnit;
use tokio::sync::watch;
use tokio::time::Instant;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::{jreq, req, Body, Req, Row, Walk};

/// What a district offers the talk rows.
#[derive(Clone)]
struct TalkUnit {
    /// The called officer (a dispatch unit).
    officer: String,
    /// Its phone terminal (a recorder bound to it).
    phone: String,
    /// A vehicle whose terminal is online.
    vehicle: String,
}

/// Per test server (keyed by its base URL).
#[derive(Default)]
struct TalkState {
    units: HashMap<String, TalkUnit>,
    /// The simulated terminals' stop switches (dropping one makes its terminal hang up).
    terminals: Vec<watch::Sender<bool>>,
    /// The console on the air for a call's WHEP (taken off by `settle`).
    console: Option<Publisher>,
    /// A successful position query's pending answer: the history's row count before it.
    locate_before: Option<usize>,
    /// The second (Unix time) of the last position query's answer: the terminal stamps its
    /// answer with the current second, and the history keeps one row per unit and second.
    last_locate_s: u64,
}

static TALK: tokio::sync::Mutex<Option<HashMap<String, TalkState>>> =
    tokio::sync::Mutex::const_new(None);

/// An SDP offer from webrtc-rs: to publish (an H.264 camera and an Opus microphone), or to
/// play (receive-only video and audio). ICE gathered (host candidates, no mDNS).
pub(super) async fn webrtc_offer(publish: bool) -> Result<String, String> {
    let e = |e: webrtc::Error| e.to_string();
    let mut m = MediaEngine::default();
    m.register_default_codecs().map_err(e)?;
    let mut s = SettingEngine::default();
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    s.set_include_loopback_candidate(true);
    let api = APIBuilder::new()
        .with_media_engine(m)
        .with_setting_engine(s)
        .build();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .map_err(e)?;
    if publish {
        for (mime, id) in [(MIME_TYPE_H264, "video"), (MIME_TYPE_OPUS, "audio")] {
            let track = Arc::new(TrackLocalStaticSample::new(
                RTCRtpCodecCapability {
                    mime_type: mime.to_owned(),
                    ..Default::default()
                },
                id.to_owned(),
                "walk".to_owned(),
            ));
            pc.add_track(track).await.map_err(e)?;
        }
    } else {
        for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(e)?;
        }
    }
    let offer = pc.create_offer(None).await.map_err(e)?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.map_err(e)?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let sdp = pc
        .local_description()
        .await
        .ok_or("no local description")?
        .sdp;
    let _ = pc.close().await;
    Ok(sdp)
}

/// The request body of an SDP offer.
pub(super) fn sdp_body(sdp: String) -> Body {
    Body::Bytes("application/sdp", sdp.into_bytes())
}

impl Walk {
    /// The concrete request of `row` on district `d`'s called officer, phone terminal or
    /// vehicle, or `None` when this module has no fixture for it.
    pub(super) async fn fixture_talk(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let known = matches!(
            (row.method, row.path),
            ("POST", "/calls")
                | ("GET", "/calls/{id}")
                | ("POST", "/calls/{id}/answer")
                | ("POST", "/calls/{id}/hangup")
                | ("POST", "/calls/{id}/whip")
                | ("POST", "/calls/{id}/whep")
                | ("POST", "/streams/{device_id}/{channel_id}/whip")
                | ("DELETE", "/streams/whip/{session_id}")
                | ("POST", "/units/{id}/locate")
                | ("POST", "/units/{id}/track-request")
        );
        if !known {
            return None;
        }
        let mut guard = TALK.lock().await;
        let st = guard
            .get_or_insert_with(Default::default)
            .entry(self.s.base.clone())
            .or_default();
        let u = self.talk_unit(st, d).await;
        // The walk calls the fixture of `d` = Huangpu for the allowed roles (2xx expected) and
        // the wrong ones (403), and of `d` = Xuhui for the outside check (404).
        let calling = self.calling_as.lock().unwrap().clone();
        let succeeds = d.id == self.s.huangpu.id
            && calling.as_ref().is_some_and(|(_, r)| row.roles.contains(r));
        let admin = self.district_admin(d).to_string();
        let q = match (row.method, row.path) {
            ("POST", "/calls") => jreq(row.path.into(), json!({"unit_id": u.officer})),
            ("GET", "/calls/{id}")
            | ("POST", "/calls/{id}/answer")
            | ("POST", "/calls/{id}/hangup") => {
                let call = self.talk_call(&admin, &u).await;
                req(row.path.replace("{id}", &call))
            }
            ("POST", "/calls/{id}/whip") => {
                // Only the operator who placed the call speaks for the command centre.
                let placer = match (&calling, succeeds) {
                    (Some((token, _)), true) => token.clone(),
                    _ => admin,
                };
                let call = self.talk_call(&placer, &u).await;
                Req {
                    path: row.path.replace("{id}", &call),
                    body: sdp_body(self.talk_offer(true).await),
                }
            }
            ("POST", "/calls/{id}/whep") => {
                let call = self.talk_call(&admin, &u).await;
                if succeeds {
                    self.talk_console_on_air(st, &u).await;
                }
                Req {
                    path: row.path.replace("{id}", &call),
                    body: sdp_body(self.talk_offer(false).await),
                }
            }
            ("POST", "/streams/{device_id}/{channel_id}/whip") => Req {
                path: row
                    .path
                    .replace("{device_id}", &u.phone)
                    .replace("{channel_id}", "app"),
                body: sdp_body(self.talk_offer(true).await),
            },
            ("DELETE", "/streams/whip/{session_id}") => {
                // The console of a call, published by the district's administrator.
                let call = self.talk_call(&admin, &u).await;
                let q = Req {
                    path: format!("/calls/{call}/whip"),
                    body: sdp_body(self.talk_offer(true).await),
                };
                let (code, b) = self.call("POST", &admin, &q).await;
                let session = session_of(&b).unwrap_or_else(|| {
                    self.talk_broken(format!("the console's WHIP was answered {code} {b}"));
                    "fixture-failed".into()
                });
                req(row.path.replace("{session_id}", &session))
            }
            ("POST", "/units/{id}/locate") => {
                if succeeds {
                    // A new second, so that the answer is a new row of the history.
                    while unix_s() <= st.last_locate_s {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    st.last_locate_s = unix_s();
                    st.locate_before = Some(self.position_count().await);
                }
                req(row.path.replace("{id}", &u.vehicle))
            }
            ("POST", "/units/{id}/track-request") => jreq(
                row.path.replace("{id}", &u.vehicle),
                // Back to the terminal's own interval (0 ends a temporary tracking): the
                // terminal acknowledges and reports no more often than before.
                json!({"interval_s": 0, "duration_s": 0}),
            ),
            _ => unreachable!("matched above"),
        };
        Some(q)
    }

    /// After a call of a talk row (answered `b`): stop the session it opened, hang up every
    /// open call, take the console off the air, wait for a position query's answer, and for
    /// the database to hold still when something was on the air.
    pub(super) async fn settle(&self, row: &Row, b: &Value) {
        let talk = row.path.starts_with("/calls")
            || row.path.starts_with("/streams/")
            || row.path.starts_with("/units/{id}/locate")
            || row.path.starts_with("/units/{id}/track-request");
        if !talk {
            return;
        }
        let mut on_air = false;
        if let Some(session) = session_of(b) {
            let stopped = if b["location"].as_str().is_some_and(|l| l.contains("/whep/")) {
                self.s.state.whep.stop(&session)
            } else {
                self.s.state.whip.stop(&session)
            };
            on_air |= stopped;
        }
        for c in self.s.state.calls.all() {
            if c.state != shouhu_api::calls::CallState::Ended {
                if let Ok(c) = self.s.state.calls.hang_up(&c.id, "hangup").await {
                    on_air |= !c.recordings.is_empty();
                }
            }
        }
        let mut guard = TALK.lock().await;
        let Some(st) = guard.as_mut().and_then(|m| m.get_mut(&self.s.base)) else {
            return;
        };
        if let Some(p) = st.console.take() {
            p.end("the walk's call is over");
            on_air = true;
        }
        if let Some(before) = st.locate_before.take() {
            self.wait_positions(before + 1).await;
        }
        drop(guard);
        if on_air {
            self.live_still(Duration::from_millis(500), Duration::from_secs(15))
                .await;
        }
    }

    /// District `d`'s officer, phone terminal and online vehicle (made the first time).
    async fn talk_unit(&self, st: &mut TalkState, d: &OrgUnit) -> TalkUnit {
        if let Some(u) = st.units.get(&d.id) {
            return u.clone();
        }
        let n = self.next();
        let officer = if d.id == self.s.huangpu.id {
            self.bound_officer.get().cloned().unwrap_or_default()
        } else {
            let o = self
                .okd(
                    d,
                    "POST",
                    "/officers",
                    json!({"name": "王强", "certificate_no": format!("W-TALK{n}"), "org_unit_id": d.id}),
                )
                .await;
            o["id"].as_str().unwrap_or("fixture-failed").to_string()
        };
        let phone = format!("31010100001321{n:06}");
        self.okd(
            d,
            "POST",
            "/recorders",
            json!({"device_id": phone, "name": format!("手机终端{n}"), "org_unit_id": d.id,
                   "officer_id": officer}),
        )
        .await;
        let terminal = 13_800_000_000u64 + u64::from(n);
        let plate = format!("沪A·T{n:04}");
        let v = self
            .okd(
                d,
                "POST",
                "/vehicles",
                json!({"plate": plate, "org_unit_id": d.id, "terminal_phone": terminal.to_string()}),
            )
            .await;
        let vehicle = v["id"].as_str().unwrap_or("fixture-failed").to_string();
        let u = TalkUnit {
            officer,
            phone,
            vehicle,
        };
        st.units.insert(d.id.clone(), u.clone());
        let Some(addr) = self.s.state.jt808.local_addr() else {
            self.talk_broken("the JT/T 808 server is not listening".into());
            return u;
        };
        let (stop, stop_rx) = watch::channel(false);
        st.terminals.push(stop);
        let stats = Arc::new(SimStats::default());
        tokio::spawn(simulate::run_terminal(
            TerminalSpec {
                phone: terminal,
                plate,
                route: Route::new((31.23, 121.47), 300.0, 30.0, u64::from(n)),
            },
            addr,
            // One report when it authenticates: positions are rows.
            Duration::from_secs(3_600),
            stats.clone(),
            None,
            stop_rx,
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while stats.authenticated.load(Ordering::Relaxed) == 0 {
            if Instant::now() > deadline {
                self.talk_broken(format!(
                    "simulated terminal {terminal} did not authenticate in 20 s (refused {}, errors {})",
                    stats.refused.load(Ordering::Relaxed),
                    stats.errors.load(Ordering::Relaxed)
                ));
                return u;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Its registration and first position stored (positions go in 2 s batches).
        self.live_still(Duration::from_millis(2_500), Duration::from_secs(15))
            .await;
        u
    }

    /// A call to `u`'s officer placed by `placer`; its id.
    async fn talk_call(&self, placer: &str, u: &TalkUnit) -> String {
        let c = self
            .ok_as(placer, "POST", "/calls", json!({"unit_id": u.officer}))
            .await;
        c["id"].as_str().unwrap_or("fixture-failed").to_string()
    }

    /// A webrtc-rs offer (a failure is recorded in `broken`).
    pub(super) async fn talk_offer(&self, publish: bool) -> String {
        match webrtc_offer(publish).await {
            Ok(s) => s,
            Err(e) => {
                self.talk_broken(format!("webrtc-rs made no offer: {e}"));
                String::from("v=0\r\n")
            }
        }
    }

    /// Put the console channel of `u`'s calls on the air with one H.264 picture, and wait until
    /// the call records it (the recording's start is a row).
    async fn talk_console_on_air(&self, st: &mut TalkState, u: &TalkUnit) {
        let Some(sample) = shouhu_api::simulate_gb::sample(&super::live::live_profile()).await
        else {
            self.talk_broken("no H.264 sample (ffmpeg)".into());
            return;
        };
        let publisher = match self
            .s
            .state
            .streams
            .publish(&u.phone, shouhu_api::calls::CONSOLE_CHANNEL)
        {
            Ok(p) => p,
            Err(e) => {
                self.talk_broken(format!("the console could not go on the air: {e}"));
                return;
            }
        };
        publisher.push(Frame {
            codec: Codec::H264,
            pts_90k: Some(0),
            dts_90k: Some(0),
            data: sample.video[0].clone(),
            keyframe: true,
            received: None,
            rtp_payloads: Default::default(),
        });
        st.console = Some(publisher);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let recorded = self.s.state.calls.all().iter().any(|c| {
                c.recordings.iter().any(|r| {
                    r.device_id == u.phone
                        && r.channel_id == shouhu_api::calls::CONSOLE_CHANNEL
                        && r.recording_id.is_some()
                })
            });
            if recorded {
                break;
            }
            if Instant::now() > deadline {
                self.talk_broken("the call did not record the console in 15 s".into());
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.live_still(Duration::from_millis(500), Duration::from_secs(15))
            .await;
    }

    fn talk_broken(&self, what: String) {
        self.broken
            .lock()
            .unwrap()
            .insert(format!("fixture (talk): {what}"));
    }
}

/// The session id of a WHEP/WHIP answer (`Location: /api/v1/streams/{kind}/{id}`).
pub(super) fn session_of(b: &Value) -> Option<String> {
    b["location"]
        .as_str()
        .and_then(|l| l.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

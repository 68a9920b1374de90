//! Walk fixtures: see `fixture_live`.
//!
//! The rows that need a device on the line (catalog, the card's records, a snapshot, on-demand
//! recording, a download from the card, a live view over WHEP and its stop) are walked against a real GB/T 28181 recorder simulated
//! in-process (`shouhu_api::simulate_gb`): one per district, registered in the recorder registry
//! by the district's administrator with its own SIP password, then registering over SIP/UDP
//! with digest authentication at the test server's bound SIP address. It answers Catalog,
//! DeviceInfo and RecordInfo queries and streams H.264 + G.711 in PS over RTP for live and
//! download INVITEs.
//!
//! The device is shared by every fixture of its district, so each fixture first puts it back
//! in its quiet state: on-demand recordings left by the previous call are stopped (through the
//! API, by the district's administrator), a download or a catalog the previous call asked for
//! is waited for until it is stored, and the database is waited for until it holds still. A
//! quiet device writes nothing: its keepalives only refresh the server's memory, and it reports
//! a position only once, when it registers (the position interval is an hour).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shouhu_api::simulate_gb::{self, GbStats, GbTarget, MediaProfile, RecorderSpec};
use shouhu_media::ps::Codec;
use shouhu_media::recorder::Trigger;
use shouhu_storage::org_units::OrgUnit;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{jreq, req, Req, Row, Walk, UNTRACKED};

/// The simulated recorders' own SIP password (the test server has no shared one).
const LIVE_PASSWORD: &str = "Walk@Gb28181";

/// The rows this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveOp {
    Catalog,
    Records,
    Snapshot,
    Start,
    Stop,
    Download,
    Whep,
    WhepStop,
}

/// A registered simulated recorder.
struct LiveDevice {
    device: String,
    channel: String,
    /// Its district (org unit id).
    district: String,
    /// Kept so that it keeps running (dropping it would make the device unregister).
    _stop: watch::Sender<bool>,
}

/// Per test server (keyed by its base URL).
#[derive(Default)]
struct LiveState {
    devices: Vec<LiveDevice>,
    /// What the previous fixture's call leaves going when it succeeds (as the walk expects it
    /// to): the operation, the device, and for a catalog the channels' stamp before it.
    pending: Option<(LiveOp, String, i64)>,
}

static LIVE: tokio::sync::Mutex<Option<HashMap<String, LiveState>>> =
    tokio::sync::Mutex::const_new(None);

/// What the simulated recorders stream: small, so that it costs little CPU.
pub(super) fn live_profile() -> MediaProfile {
    MediaProfile {
        video: Codec::H264,
        bitrate_kbps: 200,
        size: (320, 180),
        audio: Some(Codec::G711A),
    }
}

impl Walk {
    /// The concrete request of `row` on the registered simulated recorder of district `d`, or
    /// `None` when this module has no fixture for it.
    pub(super) async fn fixture_live(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let op = match (row.method, row.path) {
            ("POST", "/recorders/{id}/catalog") => LiveOp::Catalog,
            ("GET", "/recorders/{id}/records") => LiveOp::Records,
            ("GET", "/streams/{device_id}/{channel_id}/snapshot.jpg") => LiveOp::Snapshot,
            ("POST", "/recordings/start") => LiveOp::Start,
            ("POST", "/recordings/stop") => LiveOp::Stop,
            ("POST", "/recordings/download") => LiveOp::Download,
            ("POST", "/streams/{device_id}/{channel_id}/whep") => LiveOp::Whep,
            ("DELETE", "/streams/whep/{session_id}") => LiveOp::WhepStop,
            _ => return None,
        };
        let mut guard = LIVE.lock().await;
        let st = guard
            .get_or_insert_with(Default::default)
            .entry(self.s.base.clone())
            .or_default();
        self.live_quiet(st).await;
        let (device, channel) = self.live_device(st, d).await;
        // The walk calls the fixture of `d` = Huangpu for the allowed roles (2xx expected) and
        // the wrong ones (403), and of `d` = Xuhui for the outside check (404).
        let role = self.calling_as.lock().unwrap().clone().map(|(_, r)| r);
        let succeeds = d.id == self.s.huangpu.id && role.is_some_and(|r| row.roles.contains(&r));
        let chan = json!({"device_id": device, "channel_id": channel});
        let now = self.s.state.now();
        let q = match op {
            LiveOp::Catalog => {
                if succeeds {
                    let stamp = self.live_catalog_stamp(&device).await;
                    st.pending = Some((op, device.clone(), stamp));
                }
                req(row.path.replace("{id}", &device))
            }
            LiveOp::Records => req(format!(
                "/recorders/{device}/records?channel_id={channel}&from={}&to={now}",
                now - 3_600_000
            )),
            LiveOp::Snapshot => req(row
                .path
                .replace("{device_id}", &device)
                .replace("{channel_id}", &channel)),
            LiveOp::Start => {
                if succeeds {
                    st.pending = Some((op, device.clone(), 0));
                }
                jreq(row.path.into(), chan)
            }
            LiveOp::Stop => {
                // A recording of the channel started on demand by the district's own people.
                self.okd(d, "POST", "/recordings/start", chan.clone()).await;
                jreq(row.path.into(), chan)
            }
            LiveOp::Whep => Req {
                path: row
                    .path
                    .replace("{device_id}", &device)
                    .replace("{channel_id}", &channel),
                body: super::talk::sdp_body(self.talk_offer(false).await),
            },
            LiveOp::WhepStop => {
                // A live view opened by the district's administrator.
                let view = Req {
                    path: format!("/streams/{device}/{channel}/whep"),
                    body: super::talk::sdp_body(self.talk_offer(false).await),
                };
                let admin = self.district_admin(d).to_string();
                let (code, b) = self.call("POST", &admin, &view).await;
                let session = super::talk::session_of(&b).unwrap_or_else(|| {
                    self.live_broken(format!("the live view was answered {code} {b}"));
                    "fixture-failed".into()
                });
                req(row.path.replace("{session_id}", &session))
            }
            LiveOp::Download => {
                if succeeds {
                    st.pending = Some((op, device.clone(), 0));
                }
                // Four seconds of the card, a fresh range in the past hours, sent at 16 times
                // real time.
                let start = now - 3_600_000 - i64::from(self.next() % 1_000) * 10_000;
                jreq(
                    row.path.into(),
                    json!({"device_id": device, "channel_id": channel, "start": start,
                           "end": start + 4_000, "speed": 16}),
                )
            }
        };
        Some(q)
    }

    /// The registered simulated recorder of `d` (registered the first time): (device id,
    /// channel id).
    async fn live_device(&self, st: &mut LiveState, d: &OrgUnit) -> (String, String) {
        if let Some(x) = st.devices.iter().find(|x| x.district == d.id) {
            return (x.device.clone(), x.channel.clone());
        }
        let n = self.next();
        let device = format!("31010100001320{n:06}");
        let channel = simulate_gb::channel_of(&device);
        self.okd(
            d,
            "POST",
            "/recorders",
            json!({"device_id": device, "name": format!("现场记录仪{n}"), "org_unit_id": d.id,
                   "password": LIVE_PASSWORD}),
        )
        .await;
        let (stop, stop_rx) = watch::channel(false);
        st.devices.push(LiveDevice {
            device: device.clone(),
            channel: channel.clone(),
            district: d.id.clone(),
            _stop: stop,
        });
        let Some((sip, _)) = self.s.state.sip.local_addrs() else {
            self.live_broken("the SIP server is not listening".into());
            return (device, channel);
        };
        let cfg = &self.s.state.cfg.sip;
        let target = GbTarget {
            sip,
            platform_id: cfg.platform_id.clone(),
            domain: cfg.domain.clone(),
            // Often enough to stay online (the server assumes 60 s, three misses).
            keepalive: Duration::from_secs(20),
            // One position, when it registers: positions are rows.
            position: Duration::from_secs(3_600),
            expires_secs: 3_600,
            media: live_profile(),
            drop_first_download: false,
        };
        // The sample (ffmpeg, once per process) before the device answers its first INVITE.
        if simulate_gb::sample(&target.media).await.is_none() {
            self.live_broken("the simulated recorder has no media (ffmpeg)".into());
        }
        let spec = RecorderSpec {
            device_id: device.clone(),
            password: LIVE_PASSWORD.into(),
            route: shouhu_api::simulate::Route::new((31.05, 121.2), 200.0, 4.0, u64::from(n)),
            media: None,
        };
        let stats = Arc::new(GbStats::default());
        tokio::spawn(simulate_gb::run_recorder(
            spec,
            target,
            stats.clone(),
            stop_rx,
        ));
        // Registered, and the catalog it answered on registering stored.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let registered = self.s.state.sip.access(&device).is_some();
            let catalog = self
                .s
                .state
                .db
                .recorders()
                .channels(&device)
                .await
                .map(|c| c.iter().any(|c| c.channel_id == channel))
                .unwrap_or(false);
            if registered && catalog {
                break;
            }
            if Instant::now() > deadline {
                self.live_broken(format!(
                    "simulated recorder {device} did not register with its catalog in 20 s \
                     (registered {registered}, catalog {catalog}, refused {})",
                    stats.refused.load(std::sync::atomic::Ordering::Relaxed)
                ));
                return (device, channel);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its access, device info and first position stored (positions go in 2 s batches).
        self.live_still(Duration::from_millis(2_500), Duration::from_secs(15))
            .await;
        (device, channel)
    }

    /// Put every simulated recorder back in its quiet state: on-demand recordings stopped, the
    /// download or catalog the previous call asked for stored, the database still.
    async fn live_quiet(&self, st: &mut LiveState) {
        let mut busy = false;
        for a in self.s.state.recorder.active() {
            let Some(x) = st.devices.iter().find(|x| x.device == a.device_id) else {
                continue;
            };
            if a.triggers.contains(&Trigger::OnDemand) {
                let unit = if x.district == self.s.xuhui.id {
                    self.s.xuhui.clone()
                } else {
                    self.s.huangpu.clone()
                };
                self.okd(
                    &unit,
                    "POST",
                    "/recordings/stop",
                    json!({"device_id": a.device_id, "channel_id": a.channel_id}),
                )
                .await;
                busy = true;
            }
        }
        match st.pending.take() {
            Some((LiveOp::Catalog, device, before)) => {
                busy = true;
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.live_catalog_stamp(&device).await <= before {
                    if Instant::now() > deadline {
                        self.live_broken(format!(
                            "the catalog of {device} was not stored again within 10 s"
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Some(_) => busy = true,
            None => {}
        }
        if !busy {
            return;
        }
        // Recordings of the devices (a download goes on after its answer) closed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let open = self
                .s
                .state
                .db
                .recordings()
                .unfinished()
                .await
                .map(|v| {
                    v.iter()
                        .filter(|r| st.devices.iter().any(|x| x.device == r.device_id))
                        .count()
                })
                .unwrap_or(0);
            if open == 0 {
                break;
            }
            if Instant::now() > deadline {
                self.live_broken(format!(
                    "{open} recordings of the simulated recorders still open after 60 s"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.live_still(Duration::from_millis(300), Duration::from_secs(10))
            .await;
    }

    /// The newest `updated_at_ms` of the device's catalog channels.
    async fn live_catalog_stamp(&self, device: &str) -> i64 {
        self.s
            .state
            .db
            .recorders()
            .channels(device)
            .await
            .map(|c| c.iter().map(|c| c.updated_at_ms).max().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Wait until the tables the walk compares hold still for `window` (at most `max`).
    pub(super) async fn live_still(&self, window: Duration, max: Duration) {
        let end = Instant::now() + max;
        let mut last = self.s.state.db.table_digests(UNTRACKED).await.unwrap();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.s.state.db.table_digests(UNTRACKED).await.unwrap();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= window {
                return;
            }
            if Instant::now() > end {
                self.live_broken(format!(
                    "the database did not hold still for {window:?} within {max:?}"
                ));
                return;
            }
        }
    }

    fn live_broken(&self, what: String) {
        self.broken
            .lock()
            .unwrap()
            .insert(format!("fixture (live): {what}"));
    }
}

//! The live-video benchmark, `shouhu bench live` (figures in docs/benchmarks.md).
//!
//! Phase 1, the hub: a fresh SQLite database with `--recorders` recorders; the server runs as a
//! child process (`shouhu serve`), so its CPU time and RSS are its own. This process is the
//! load: it runs the simulated recorders (GB/T 28181 over SIP/UDP, each sending
//! `--bitrate-kbps` H.264 in PS over RTP/UDP when invited) and `--viewers-per-stream` WebRTC
//! viewers per recorder, each a webrtc-rs peer connection that receives, decrypts and counts the
//! RTP packets without decoding them. After every viewer has its first packet and a warm-up,
//! `--duration` seconds are measured: packets lost on the way in (sequence gaps at the hub) and
//! on the way out (at the viewers, after NACK retransmission), the hub's own server-added latency
//! (frame's last RTP packet in → SRTP send out, from `GET /api/v1/streams/stats`, differenced
//! over the window), the server's CPU and peak RSS.
//!
//! Phase 2, Janus (Debian package `janus`, streaming plugin), under the same load: one RTP
//! mountpoint per recorder, fed the same H.264 access units as plain RTP (RFC 6184, from this
//! process, at the same rate), watched by the same number of webrtc-rs viewers through Janus's
//! HTTP API. Same window, same counters, Janus's CPU and RSS. Reported: CPU per viewer of each,
//! and their ratio (the hub's includes its PS demultiplexing).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use shouhu_media::ps::Codec;
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::recorders::{RecorderInput, SipSecretChange};
use shouhu_storage::Db;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;

use crate::bench_positions::{free_port, login, proc_cpu_s, proc_rss_mb, PASSWORD};
use crate::bench_sip::{Child2, TempDir};
use crate::clock::{Clock, SystemClock};
use crate::simulate_gb::{MediaProfile, Sample};

/// Options of `shouhu bench live`.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveBenchArgs {
    /// Simulated recorders, each streaming.
    #[arg(long, default_value_t = 50)]
    pub recorders: u64,
    /// WebRTC viewers of each recorder.
    #[arg(long, default_value_t = 4)]
    pub viewers_per_stream: u64,
    /// Video bit rate of each recorder, kbit/s.
    #[arg(long, default_value_t = 2_000)]
    pub bitrate_kbps: u32,
    /// Seconds measured in each phase.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seconds between the last viewer's first packet and the start of the window.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Skip the Janus phase.
    #[arg(long)]
    pub skip_janus: bool,
    /// Invite every recorder at once, so that the 50 recorders' keyframes (one a second) reach
    /// the hub together: the worst case. By default the first viewers of the recorders arrive
    /// one GOP (1 s) ÷ recorders apart, as operators open cameras at different moments.
    #[arg(long)]
    pub aligned_keyframes: bool,
}

const SHARED: &str = "Bench#2026x";
/// The simulated recorders' group of pictures: a keyframe every 25 frames at 25 fps.
const GOP: Duration = Duration::from_secs(1);

/// When the `i`th of `n` streams starts: spread over one GOP, or all at once with
/// `--aligned-keyframes`.
fn start_delay(a: &LiveBenchArgs, i: usize, n: usize) -> Duration {
    if a.aligned_keyframes {
        Duration::ZERO
    } else {
        GOP * i as u32 / n.max(1) as u32
    }
}
const BASE: &str = "31010000001320000001";
const USER: &str = "livebench";

/// What one viewer received.
#[derive(Debug, Default)]
struct RxState {
    base: Option<i64>,
    max_ext: i64,
    received: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Rx(Mutex<RxState>);

impl Rx {
    fn on_packet(&self, seq: u16, len: usize) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.base {
            None => {
                s.base = Some(seq as i64);
                s.max_ext = seq as i64;
            }
            Some(_) => {
                let d = seq.wrapping_sub(s.max_ext as u16) as i16 as i64;
                if d > 0 {
                    s.max_ext += d;
                }
            }
        }
        s.received += 1;
        s.bytes += len as u64;
    }

    /// (expected, received, bytes) so far.
    fn read(&self) -> (u64, u64, u64) {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let expected = s.base.map(|b| (s.max_ext - b + 1) as u64).unwrap_or(0);
        (expected, s.received, s.bytes)
    }
}

/// The load client's WebRTC stack: a UDP socket per viewer (webrtc-rs's UDP mux loses packets
/// at this rate), no interceptors (no NACK: a packet lost is counted lost, and neither server
/// spends time on retransmissions), no mDNS.
fn load_api() -> anyhow::Result<API> {
    let mut m = MediaEngine::default();
    m.register_default_codecs()?;
    let mut s = SettingEngine::default();
    s.set_udp_network(UDPNetwork::Ephemeral(EphemeralUDP::new(40_000, 49_999)?));
    s.set_include_loopback_candidate(true);
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // The same SRTP profile with both servers: AES-CM + HMAC-SHA1, which the hub prefers. As
    // the DTLS client of Janus (we answer its offer) webrtc-rs would otherwise offer AES-GCM
    // first, which webrtc-srtp decrypts several times slower, and the load client, not Janus,
    // would drop packets.
    s.set_srtp_protection_profiles(vec![
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    ]);
    Ok(APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(Registry::new())
        .with_setting_engine(s)
        .build())
}

/// A receive-only peer connection whose video packets are counted in `rx`.
async fn receiver(api: &API, rx: Arc<Rx>) -> anyhow::Result<Arc<RTCPeerConnection>> {
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
    pc.add_transceiver_from_kind(
        RTPCodecType::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            send_encodings: vec![],
        }),
    )
    .await?;
    pc.on_track(Box::new(move |track, _, _| {
        let rx = rx.clone();
        tokio::spawn(async move {
            while let Ok((p, _)) = track.read_rtp().await {
                rx.on_packet(p.header.sequence_number, p.payload.len());
            }
        });
        Box::pin(async {})
    }));
    Ok(pc)
}

/// Set a local description and wait for ICE gathering (no trickle); returns its SDP.
async fn local_sdp(pc: &RTCPeerConnection, d: RTCSessionDescription) -> anyhow::Result<String> {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(d).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), done.recv()).await;
    Ok(pc
        .local_description()
        .await
        .context("no local description")?
        .sdp)
}

/// One WHEP viewer of the hub.
async fn whep_viewer(
    api: &API,
    http: &str,
    token: &str,
    device: &str,
    rx: Arc<Rx>,
) -> anyhow::Result<(Arc<RTCPeerConnection>, String)> {
    let pc = receiver(api, rx).await?;
    let offer = pc.create_offer(None).await?;
    let sdp = local_sdp(&pc, offer).await?;
    let channel = crate::simulate_gb::channel_of(device);
    let r = reqwest::Client::new()
        .post(format!("{http}/api/v1/streams/{device}/{channel}/whep"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await?;
    anyhow::ensure!(
        r.status() == reqwest::StatusCode::CREATED,
        "WHEP for {device}: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let answer = r.text().await?;
    pc.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok((pc, location))
}

/// Counters read at the start and the end of a window.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    expected: u64,
    received: u64,
    bytes: u64,
    server_cpu: f64,
    client_cpu: f64,
}

fn read_all(rxs: &[Arc<Rx>], server_pid: u32) -> Reading {
    let mut r = Reading {
        server_cpu: proc_cpu_s(server_pid),
        client_cpu: proc_cpu_s(std::process::id()),
        ..Default::default()
    };
    for x in rxs {
        let (e, n, b) = x.read();
        r.expected += e;
        r.received += n;
        r.bytes += b;
    }
    r
}

/// What a phase measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    name: &'static str,
    viewers: usize,
    received: u64,
    lost: u64,
    mbit_per_viewer: f64,
    cpu_pct: f64,
    client_cpu_pct: f64,
    rss_mb: f64,
}

impl Outcome {
    fn cpu_per_viewer(&self) -> f64 {
        self.cpu_pct / self.viewers.max(1) as f64
    }
}

async fn wait_all_flowing(rxs: &[Arc<Rx>], what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let flowing = rxs.iter().filter(|r| r.read().1 > 0).count();
        if flowing == rxs.len() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: only {flowing} of {} viewers receive video after 90 s",
            rxs.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Measure the window.
async fn measure(
    name: &'static str,
    a: &LiveBenchArgs,
    rxs: &[Arc<Rx>],
    server_pid: u32,
) -> Outcome {
    let r0 = read_all(rxs, server_pid);
    let t0 = Instant::now();
    let mut rss: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(a.duration) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = rss.max(proc_rss_mb(server_pid));
    }
    let secs = t0.elapsed().as_secs_f64();
    let r1 = read_all(rxs, server_pid);
    let expected = r1.expected - r0.expected;
    let received = r1.received - r0.received;
    Outcome {
        name,
        viewers: rxs.len(),
        received,
        lost: expected.saturating_sub(received),
        mbit_per_viewer: (r1.bytes - r0.bytes) as f64 * 8.0 / secs / 1e6 / rxs.len().max(1) as f64,
        cpu_pct: (r1.server_cpu - r0.server_cpu) / secs * 100.0,
        client_cpu_pct: (r1.client_cpu - r0.client_cpu) / secs * 100.0,
        rss_mb: rss,
    }
}

/// Close peer connections, all at once (one by one takes seconds each).
async fn close_all(pcs: Vec<Arc<RTCPeerConnection>>) {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for pc in pcs {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), pc.close()).await;
        });
    }
    while set.join_next().await.is_some() {}
    eprintln!("closed the viewers in {:.1} s", t.elapsed().as_secs_f64());
}

fn print_outcome(o: &Outcome) {
    eprintln!(
        "{}: {} packets to {} viewers, {} lost, {:.2} Mbit/s per viewer, server CPU {:.1} % ({:.3} % per viewer), RSS {:.0} MB, load client CPU {:.1} %",
        o.name, o.received, o.viewers, o.lost, o.mbit_per_viewer, o.cpu_pct, o.cpu_per_viewer(), o.rss_mb, o.client_cpu_pct
    );
}

async fn seed(url: &str, n: u64) -> anyhow::Result<()> {
    seed_with(url, n, BASE, USER).await
}

/// A database with `n` recorders (ids from `base`) spread over the demo's districts, and the
/// operator account `user`.
pub(crate) async fn seed_with(url: &str, n: u64, base: &str, user: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let org = crate::demo::seed_org(&db).await?;
    let actor = Actor {
        username: Some("bench".into()),
        ..Default::default()
    };
    let ids = crate::simulate::recorder_ids(base, n)?;
    let n_d = org.districts.len();
    for (i, id) in ids.iter().enumerate() {
        let input = RecorderInput {
            device_id: id.clone(),
            name: format!("记录仪{}", &id[13..]),
            org_unit_id: org.districts[i % n_d].0.id.clone(),
            officer_id: None,
            status: "active".into(),
            model: None,
            channels: 1,
            password: None,
        };
        db.recorders()
            .insert(
                &input,
                &SipSecretChange::Clear,
                &AuditEntry::new(&actor, "recorder.create", SystemClock.now_ms()),
            )
            .await?;
    }
    let mut cfg = crate::config::Config::default();
    cfg.auth.argon2_memory_kib = 1024;
    cfg.auth.argon2_iterations = 1;
    let hash = crate::auth::password::hash(&cfg.auth, PASSWORD).await?;
    db.accounts()
        .create(
            &NewAccount {
                username: user.into(),
                display_name: user.into(),
                password_hash: hash,
                role: "operator".into(),
                org_unit_id: org.corps.id.clone(),
                must_change_password: false,
            },
            &AuditEntry::new(&actor, "account.create", SystemClock.now_ms()),
        )
        .await?;
    db.close().await;
    Ok(())
}

async fn stats(http: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::Client::new()
        .get(format!("{http}/api/v1/streams/stats"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn buckets(v: &serde_json::Value) -> HashMap<u64, u64> {
    v["latency_buckets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| Some((b[0].as_u64()?, b[1].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// p-quantile (ms) of the difference of two bucket readings.
fn window_percentile(before: &HashMap<u64, u64>, after: &HashMap<u64, u64>, q: f64) -> f64 {
    let mut d: Vec<(u64, u64)> = after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    d.sort();
    let total: u64 = d.iter().map(|x| x.1).sum();
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (edge, c) in d {
        seen += c;
        if seen >= rank {
            return edge as f64 / 1000.0;
        }
    }
    f64::NAN
}

/// Run it.
pub async fn run(a: LiveBenchArgs) -> anyhow::Result<()> {
    let dir_path = std::env::temp_dir().join(format!("shouhu-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir_path)?;
    let dir = TempDir(dir_path);
    let profile = MediaProfile {
        video: Codec::H264,
        bitrate_kbps: a.bitrate_kbps,
        size: (1280, 720),
        audio: None,
    };
    let t = Instant::now();
    let sample = crate::simulate_gb::sample(&profile)
        .await
        .context("ffmpeg could not make the H.264 sample")?;
    let es_bytes: usize = sample.video.iter().map(Vec::len).sum();
    println!(
        "sample: {} access units, {:.2} Mbit/s H.264 {}x{} (made in {:.1} s)",
        sample.video.len(),
        es_bytes as f64 * 8.0 / (sample.video.len() as f64 / 25.0) / 1e6,
        profile.size.0,
        profile.size.1,
        t.elapsed().as_secs_f64()
    );
    let url = Db::sqlite_url_in(dir.path());
    seed(&url, a.recorders).await?;
    let hub = hub_phase(&a, &dir, &url, &profile).await?;
    let janus = if a.skip_janus {
        None
    } else {
        Some(janus_phase(&a, &dir, &sample).await?)
    };
    println!();
    println!(
        "Live video: {} recorders × {:.1} Mbit/s H.264, {} WebRTC viewers each ({} in all, not decoding), {} s window, keyframes {}",
        a.recorders,
        es_bytes as f64 * 8.0 / (sample.video.len() as f64 / 25.0) / 1e6,
        a.viewers_per_stream,
        a.recorders * a.viewers_per_stream,
        a.duration,
        if a.aligned_keyframes {
            "aligned (every recorder invited at once)"
        } else {
            "spread over one GOP"
        }
    );
    println!("| server | packets to viewers | lost | Mbit/s per viewer | server CPU (% of a core) | CPU per viewer | peak RSS | load client CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    for o in std::iter::once(&hub.0).chain(janus.iter()) {
        println!(
            "| {} | {} | {} | {:.2} | {:.1} % | {:.3} % | {:.0} MB | {:.1} % |",
            o.name,
            o.received,
            o.lost,
            o.mbit_per_viewer,
            o.cpu_pct,
            o.cpu_per_viewer(),
            o.rss_mb,
            o.client_cpu_pct
        );
    }
    println!("hub ingest: {}", hub.1);
    println!("hub server-added latency (RTP in → SRTP out): {}", hub.2);
    if let Some(j) = &janus {
        println!(
            "CPU per viewer, hub ÷ Janus: {:.2} (target ≤ 1)",
            hub.0.cpu_per_viewer() / j.cpu_per_viewer().max(1e-9)
        );
    }
    Ok(())
}

async fn hub_phase(
    a: &LiveBenchArgs,
    dir: &TempDir,
    url: &str,
    profile: &MediaProfile,
) -> anyhow::Result<(Outcome, String, String)> {
    let (h, sip) = (free_port()?, {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        u.local_addr()?.port()
    });
    let child = Child2(
        Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("SHOUHU__SERVER__DATA_DIR", dir.path())
            .env("SHOUHU__DATABASE__URL", url)
            .env("SHOUHU__HTTP__LISTEN", format!("127.0.0.1:{h}"))
            .env("SHOUHU__HTTP__WEB_DIR", dir.path().join("no-web"))
            .env("SHOUHU__METRICS__ENABLED", "false")
            .env("SHOUHU__JT808__ENABLED", "false")
            .env("SHOUHU__SIP__LISTEN", format!("127.0.0.1:{sip}"))
            .env("SHOUHU__SIP__PASSWORD", SHARED)
            .env("SHOUHU__MEDIA__ADVERTISE_IP", "127.0.0.1")
            .env("SHOUHU__MEDIA__GRACE_SECS", "2")
            .env(
                "SHOUHU_LOG",
                std::env::var("SHOUHU_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let pid = child.0.id();
    let http = format!("http://127.0.0.1:{h}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{http}/healthz")).await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = crate::simulate::recorder_ids(BASE, a.recorders)?;
    let specs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, device_id)| crate::simulate_gb::RecorderSpec {
            device_id: device_id.clone(),
            password: SHARED.into(),
            route: crate::simulate::Route::new((31.23, 121.47), 5_000.0, 5.0, i as u64),
            media: None,
        })
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gb = crate::simulate_gb::start(
        specs,
        &crate::simulate_gb::GbTarget {
            sip: format!("127.0.0.1:{sip}").parse()?,
            platform_id: "34020000002000000001".into(),
            domain: "3402000000".into(),
            keepalive: Duration::from_secs(30),
            position: Duration::from_secs(30),
            expires_secs: 3600,
            media: profile.clone(),
            drop_first_download: false,
        },
        stop_rx,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while gb.registered.load(Ordering::Relaxed) < a.recorders {
        anyhow::ensure!(Instant::now() < deadline, "the recorders did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = login(&http, USER).await?;
    // WHEP takes only a channel the recorder's catalog lists: wait until every catalog is stored.
    for id in &ids {
        loop {
            let v: serde_json::Value = reqwest::Client::new()
                .get(format!("{http}/api/v1/recorders/{id}"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if v["channel_list"].as_array().is_some_and(|c| !c.is_empty()) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the recorders did not report their catalog"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let api = Arc::new(load_api()?);
    let mut rxs = Vec::new();
    let mut pcs = Vec::new();
    let mut sessions = Vec::new();
    // The first viewer of each recorder starts its stream; the others join it.
    for round in 0..a.viewers_per_stream {
        let mut set = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (api, http, token, id) = (api.clone(), http.clone(), token.clone(), id.clone());
            let rx = Arc::new(Rx::default());
            rxs.push(rx.clone());
            // The recorders start streaming (with a keyframe) when their first viewer comes.
            let delay = if round == 0 {
                start_delay(a, i, ids.len())
            } else {
                Duration::ZERO
            };
            set.spawn(async move {
                tokio::time::sleep(delay).await;
                whep_viewer(&api, &http, &token, &id, rx).await
            });
        }
        while let Some(r) = set.join_next().await {
            let (pc, loc) = r??;
            pcs.push(pc);
            sessions.push(loc);
        }
        eprintln!("hub: {} viewers connected (round {})", pcs.len(), round + 1);
    }
    wait_all_flowing(&rxs, "hub").await?;
    eprintln!("hub: every viewer receives video; measuring");
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let s0 = stats(&http, &token).await?;
    let out = measure("Shouhu hub", a, &rxs, pid).await;
    print_outcome(&out);
    let s1 = stats(&http, &token).await?;
    let (b0, b1) = (buckets(&s0), buckets(&s1));
    let frames = s1["frames_out"].as_u64().unwrap_or(0) - s0["frames_out"].as_u64().unwrap_or(0);
    let ms = |q: f64| {
        let v = window_percentile(&b0, &b1, q);
        if v > 200.0 {
            "≥ 200 ms".to_string()
        } else {
            format!("{v:.2} ms")
        }
    };
    let latency = format!(
        "p50 {}, p99 {} over {frames} frame sends (target p99 ≤ 20 ms)",
        ms(0.5),
        ms(0.99)
    );
    let ingest = format!(
        "{} streams, {} RTP packets in, {} lost",
        s1["streams"],
        s1["packets"].as_u64().unwrap_or(0),
        s1["lost"].as_u64().unwrap_or(0)
    );
    close_all(pcs).await;
    let _ = stop_tx.send(true);
    drop(child);
    drop(sessions);
    Ok((out, ingest, latency))
}

const JANUS_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/janus";

fn janus_config(
    dir: &std::path::Path,
    http_port: u16,
    mounts: &[(u64, u16)],
) -> anyhow::Result<()> {
    let lib = std::env::var("JANUS_LIB").unwrap_or_else(|_| JANUS_PLUGINS.into());
    let disable_plugins = [
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "textroom",
        "videocall",
        "videoroom",
        "voicemail",
    ]
    .map(|p| format!("libjanus_{p}.so"))
    .join(",");
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"general: {{
  configs_folder = "{d}"
  plugins_folder = "{lib}/plugins"
  transports_folder = "{lib}/transports"
  events_folder = "{lib}/events"
  loggers_folder = "{lib}/loggers"
  debug_level = 3
  session_timeout = 0
}}
media: {{ rtp_port_range = "32000-32999" }}
nat: {{ nice_debug = false }}
plugins: {{ disable = "{disable_plugins}" }}
transports: {{ disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_mqtt.so,libjanus_nanomsg.so" }}
events: {{ broadcast = false }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
"#,
            d = dir.display()
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{ json = \"compact\", base_path = \"/janus\", http = true, port = {http_port}, ip = \"127.0.0.1\" }}\nadmin: {{ admin_http = false }}\n"
        ),
    )?;
    let mut s = String::from("general: { }\n");
    for (id, port) in mounts {
        s.push_str(&format!(
            "m{id}: {{ type = \"rtp\", id = {id}, description = \"m{id}\", media = ( {{ type = \"video\", mid = \"v\", port = {port}, pt = 96, codec = \"h264\", fmtp = \"profile-level-id=42e01f;packetization-mode=1\" }} ) }}\n"
        ));
    }
    std::fs::write(dir.join("janus.plugin.streaming.jcfg"), s)?;
    Ok(())
}

/// RFC 6184 packets of one access unit: single NAL units, FU-A above `mtu`; access unit
/// delimiters and filler data dropped (as webrtc-rs drops them on the hub's way out).
fn rfc6184(au: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for nal in shouhu_media::ps::nal_units(au) {
        let Some(&h) = nal.first() else { continue };
        let t = h & 0x1F;
        if t == 9 || t == 12 {
            continue;
        }
        if nal.len() <= mtu {
            out.push(nal.to_vec());
            continue;
        }
        let body = &nal[1..];
        let chunks: Vec<&[u8]> = body.chunks(mtu - 2).collect();
        for (i, c) in chunks.iter().enumerate() {
            let mut p = Vec::with_capacity(c.len() + 2);
            p.push((h & 0xE0) | 28);
            let mut fu = t;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == chunks.len() {
                fu |= 0x40;
            }
            p.push(fu);
            p.extend_from_slice(c);
            out.push(p);
        }
    }
    out
}

/// Feed a mountpoint after `delay`: the sample's access units as RTP H.264, one per 40 ms.
pub(crate) async fn feed(
    port: u16,
    sample: Arc<Sample>,
    delay: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => return,
    }
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return;
    };
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut every = tokio::time::interval(Duration::from_millis(40));
    for (n, au) in (0u32..).zip(sample.video.iter().cycle()) {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let payloads = rfc6184(au, 1200);
        let last = payloads.len().saturating_sub(1);
        for (i, p) in payloads.iter().enumerate() {
            let pkt = shouhu_media::rtp::build(96, i == last, seq, n.wrapping_mul(3600), ssrc, p);
            seq = seq.wrapping_add(1);
            let _ = sock.send_to(&pkt, ("127.0.0.1", port)).await;
        }
    }
}

struct Janus {
    http: reqwest::Client,
    base: String,
}

impl Janus {
    async fn call(
        &self,
        path: &str,
        mut body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        body["transaction"] = serde_json::json!(format!("{:x}", rand::random::<u64>()));
        let v: serde_json::Value = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(v["janus"] != "error", "Janus {path}: {v}");
        Ok(v)
    }

    /// A viewer of mountpoint `id`: session, handle, `watch`, Janus's offer, our answer, `start`.
    async fn viewer(
        &self,
        api: &API,
        id: u64,
        rx: Arc<Rx>,
    ) -> anyhow::Result<Arc<RTCPeerConnection>> {
        let s = self
            .call("/janus", serde_json::json!({"janus": "create"}))
            .await?;
        let sid = s["data"]["id"].as_u64().context("no session id")?;
        let h = self
            .call(
                &format!("/janus/{sid}"),
                serde_json::json!({"janus": "attach", "plugin": "janus.plugin.streaming"}),
            )
            .await?;
        let hid = h["data"]["id"].as_u64().context("no handle id")?;
        self.call(
            &format!("/janus/{sid}/{hid}"),
            serde_json::json!({"janus": "message", "body": {"request": "watch", "id": id}}),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let offer = loop {
            anyhow::ensure!(Instant::now() < deadline, "Janus sent no offer");
            let ev: serde_json::Value = self
                .http
                .get(format!("{}/janus/{sid}?maxev=1", self.base))
                .send()
                .await?
                .json()
                .await?;
            if let Some(sdp) = ev["jsep"]["sdp"].as_str() {
                break sdp.to_string();
            }
        };
        let pc = receiver(api, rx).await?;
        pc.set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = pc.create_answer(None).await?;
        let sdp = local_sdp(&pc, answer).await?;
        self.call(
            &format!("/janus/{sid}/{hid}"),
            serde_json::json!({"janus": "message", "body": {"request": "start"},
                "jsep": {"type": "answer", "sdp": sdp}}),
        )
        .await?;
        Ok(pc)
    }
}

async fn janus_phase(
    a: &LiveBenchArgs,
    dir: &TempDir,
    sample: &Arc<Sample>,
) -> anyhow::Result<Outcome> {
    let jdir = dir.path().join("janus");
    std::fs::create_dir_all(&jdir)?;
    let port = free_port()?;
    let mounts: Vec<(u64, u16)> = (0..a.recorders)
        .map(|i| (i + 1, 34_000 + 2 * i as u16))
        .collect();
    janus_config(&jdir, port, &mounts)?;
    let log = std::fs::File::create(jdir.join("janus.log"))?;
    let child = Child2(
        Command::new("janus")
            .arg("-C")
            .arg(jdir.join("janus.jcfg"))
            .arg("-F")
            .arg(&jdir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("janus (Debian package janus) is not installed: run ./scripts/install-deps.sh --bench")?,
    );
    let pid = child.0.id();
    let janus = Janus {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = janus
            .http
            .get(format!("{}/janus/info", janus.base))
            .send()
            .await
        {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Janus did not start (see its log in {})",
            jdir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for (i, (_, p)) in mounts.iter().enumerate() {
        let delay = start_delay(a, i, mounts.len());
        tokio::spawn(feed(*p, sample.clone(), delay, stop_rx.clone()));
    }
    let api = Arc::new(load_api()?);
    let janus = Arc::new(janus);
    let mut rxs = Vec::new();
    let mut pcs = Vec::new();
    for round in 0..a.viewers_per_stream {
        let mut set = tokio::task::JoinSet::new();
        for (id, _) in &mounts {
            let (api, janus, id) = (api.clone(), janus.clone(), *id);
            let rx = Arc::new(Rx::default());
            rxs.push(rx.clone());
            set.spawn(async move { janus.viewer(&api, id, rx).await });
        }
        while let Some(r) = set.join_next().await {
            pcs.push(r??);
        }
        eprintln!(
            "janus: {} viewers connected (round {})",
            pcs.len(),
            round + 1
        );
    }
    wait_all_flowing(&rxs, "janus").await?;
    eprintln!("janus: every viewer receives video; measuring");
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let out = measure("Janus 1.1 streaming", a, &rxs, pid).await;
    print_outcome(&out);
    close_all(pcs).await;
    let _ = stop_tx.send(true);
    drop(child);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_gaps_across_the_sequence_wrap() {
        let rx = Rx::default();
        for s in [65_533u16, 65_534, 65_535, 1, 2] {
            rx.on_packet(s, 10);
        }
        let (expected, received, bytes) = rx.read();
        assert_eq!((expected, received, bytes), (6, 5, 50));
    }

    #[test]
    fn fu_a_splits_large_nal_units_and_drops_delimiters() {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xF0];
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend(std::iter::repeat_n(0xAB, 3000));
        let p = rfc6184(&au, 1200);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0][0] & 0x1F, 28);
        assert_eq!(p[0][1], 0x80 | 5);
        assert_eq!(p[2][1], 0x40 | 5);
        let total: usize = p.iter().map(|x| x.len() - 2).sum();
        assert_eq!(total, 3000);
    }
}

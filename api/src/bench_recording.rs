//! The recording benchmarks (figures in docs/benchmarks.md).
//!
//! `shouhu bench recording`: phase 1, the hub: a fresh SQLite database with `--recorders`
//! recorders set to record always; the server runs as a child process (`shouhu serve`, so its
//! CPU time is its own) and this process runs the simulated recorders (GB/T 28181 over SIP/UDP,
//! each sending `--bitrate-kbps` H.264 in PS over RTP/UDP when invited). Once every recorder
//! records, `--duration` seconds are measured: the server's CPU. Then the server stops (its
//! recordings end with their last segment stored) and the index gives bytes written ÷
//! elementary-stream bytes received; ffprobe checks every segment (codec, span within one frame
//! of the index, no errors). Phase 2, ffmpeg under the same load: one `ffmpeg -c copy -f
//! segment` per stream, fed the same H.264 as plain RTP (RFC 6184; ffmpeg's RTP demuxer cannot
//! read PS), the CPU of all its processes summed over the same window.
//!
//! `shouhu bench seek`: an index holding `--days` of `--segment-secs` segments for
//! `--recorders` recorders filming `--hours` a day (a year of 60 s segments for 500 recorders 8
//! hours a day is 87.6 million segments), on SQLite or PostgreSQL; then `--requests` seeks at
//! random instants of random recordings, from `--clients` clients: the time from the playlist
//! request to the first byte of the first segment's init section (every segment row names one
//! real segment file in the blob store).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use shouhu_media::ps::Codec;
use shouhu_storage::Db;

use crate::bench_positions::{free_port, login, proc_cpu_s, PASSWORD};
use crate::bench_sip::{Child2, TempDir};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Secret};
use crate::simulate_gb::MediaProfile;

/// Options of `shouhu bench recording`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordingBenchArgs {
    /// Simulated recorders, each streaming and recorded.
    #[arg(long, default_value_t = 100)]
    pub recorders: u64,
    /// Video bit rate of each recorder, kbit/s.
    #[arg(long, default_value_t = 2_000)]
    pub bitrate_kbps: u32,
    /// Seconds measured in each phase.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seconds between the last recording's start and the start of the window.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Skip the ffmpeg phase.
    #[arg(long)]
    pub skip_ffmpeg: bool,
}

/// Options of `shouhu bench seek`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeekBenchArgs {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// PostgreSQL server (the benchmark makes and uses the database `shouhu_bench` on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// Recorders.
    #[arg(long, default_value_t = 500)]
    pub recorders: u64,
    /// Days of footage (one recording per recorder a day).
    #[arg(long, default_value_t = 365)]
    pub days: u64,
    /// Hours filmed a day.
    #[arg(long, default_value_t = 8)]
    pub hours: u64,
    /// Segment length, s.
    #[arg(long, default_value_t = 60)]
    pub segment_secs: u64,
    /// Seeks measured.
    #[arg(long, default_value_t = 2_000)]
    pub requests: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: u64,
    /// Keep the seeded database in this directory (and `shouhu_bench`) for later runs.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

const SHARED: &str = "Bench#2026x";
const USER: &str = "bench_operator";
const BASE: &str = "31011500001320000001";

/// Run `shouhu bench recording`.
pub async fn run(a: RecordingBenchArgs) -> anyhow::Result<()> {
    let dir_path = std::env::temp_dir().join(format!("shouhu-bench-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir_path)?;
    let dir = TempDir(dir_path);
    let profile = MediaProfile {
        video: Codec::H264,
        bitrate_kbps: a.bitrate_kbps,
        size: (1280, 720),
        audio: None,
    };
    let sample = crate::simulate_gb::sample(&profile)
        .await
        .context("ffmpeg could not make the H.264 sample")?;
    let es: usize = sample.video.iter().map(Vec::len).sum();
    println!(
        "Recording: {} recorders × {:.2} Mbit/s H.264 1280x720 (PS over RTP/UDP into the hub; plain RTP into ffmpeg), {} s window, segments of 60 s",
        a.recorders,
        es as f64 * 8.0 / (sample.video.len() as f64 / 25.0) / 1e6,
        a.duration
    );
    let url = Db::sqlite_url_in(dir.path());
    crate::bench_live::seed_with(&url, a.recorders, BASE, USER).await?;
    {
        let db = Db::connect(&url, 1).await?;
        db.execute_raw("UPDATE recorders SET record_always = TRUE")
            .await?;
        db.close().await;
    }
    let hub = hub_phase(&a, &dir, &url, &profile).await?;
    println!(
        "| recorder | streams | CPU (% of a core) | CPU per stream | bytes written ÷ ES bytes | segments valid |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| Shouhu hub (PS demux + fMP4 segments, SHA-256 + SM3, index) | {} | {:.1} | {:.3} | {:.4} | {} |",
        a.recorders,
        hub.cpu_pct,
        hub.cpu_pct / a.recorders as f64,
        hub.ratio,
        hub.valid
    );
    if !a.skip_ffmpeg {
        let ff = ffmpeg_phase(&a, &dir, &sample).await?;
        println!(
            "| ffmpeg -c copy -f segment (plain RTP, one process per stream) | {} | {:.1} | {:.3} | – | – |",
            a.recorders,
            ff,
            ff / a.recorders as f64
        );
        println!(
            "hub CPU per stream ÷ ffmpeg's: {:.2} (target ≤ 0.5)",
            hub.cpu_pct / ff.max(1e-9)
        );
    }
    Ok(())
}

struct HubOutcome {
    cpu_pct: f64,
    ratio: f64,
    valid: String,
}

async fn hub_phase(
    a: &RecordingBenchArgs,
    dir: &TempDir,
    url: &str,
    profile: &MediaProfile,
) -> anyhow::Result<HubOutcome> {
    let (h, sip) = (free_port()?, {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        u.local_addr()?.port()
    });
    let mut child = Child2(
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
            .env("SHOUHU__RECORDING__START_TIMEOUT_SECS", "30")
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
            keepalive: Duration::from_secs(20),
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
    // Always-on recorders start recording within the recorder's 10 s check once online.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{http}/api/v1/recordings/status"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let recording = v["active"]
            .as_array()
            .map(|a| a.iter().filter(|r| r["recording_id"].is_string()).count())
            .unwrap_or(0) as u64;
        if recording >= a.recorders {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {recording} of {} recorders record",
            a.recorders
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("hub: every recorder records; measuring");
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let c0 = proc_cpu_s(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let cpu_pct = (proc_cpu_s(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    eprintln!("hub: CPU {cpu_pct:.1} %; stopping (recordings end with their last segment)");
    // SIGTERM: the server stores every recording's last segment and closes it, then exits.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait()?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let db = Db::connect(url, 2).await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = db
        .recordings()
        .segment_summary()
        .await
        .context("reading the index")?;
    db.close().await;
    let (bytes, payload): (i64, i64) = rows.iter().fold((0, 0), |(b, p), r| (b + r.1, p + r.2));
    let mut bad = Vec::new();
    for (key, _, _, start, end) in &rows {
        let path = dir.path().join("blobs").join(key);
        if let Err(e) = check_segment(&path, *start, *end) {
            bad.push(format!("{key}: {e}"));
        }
    }
    for b in bad.iter().take(5) {
        eprintln!("invalid segment {b}");
    }
    Ok(HubOutcome {
        cpu_pct,
        ratio: bytes as f64 / payload.max(1) as f64,
        valid: format!("{} of {}", rows.len() - bad.len(), rows.len()),
    })
}

/// ffprobe one segment: H.264, no errors, span within one frame (40 ms) of the index.
fn check_segment(path: &Path, start_90k: i64, end_90k: i64) -> anyhow::Result<()> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=start_time,duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()?;
    anyhow::ensure!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(v["streams"][0]["codec_name"] == "h264", "not H.264: {v}");
    let num = |k: &str| {
        v["format"][k]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let (s, e) = (start_90k as f64 / 90_000.0, end_90k as f64 / 90_000.0);
    anyhow::ensure!(
        (num("start_time") - s).abs() <= 0.041 && (num("duration") - e).abs() <= 0.041,
        "span {}–{} s, index {s}–{e} s",
        num("start_time"),
        num("duration")
    );
    Ok(())
}

/// ffmpeg remuxing the same H.264 (plain RTP) to 60 s MP4 segments, one process per stream;
/// returns the CPU of all of them over the window, % of a core.
async fn ffmpeg_phase(
    a: &RecordingBenchArgs,
    dir: &TempDir,
    sample: &Arc<crate::simulate_gb::Sample>,
) -> anyhow::Result<f64> {
    let fdir = dir.path().join("ffmpeg");
    std::fs::create_dir_all(&fdir)?;
    let mut children = Vec::new();
    let mut ports = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for i in 0..a.recorders {
        let port = free_rtp_port(&mut taken)?;
        let sdir = fdir.join(format!("s{i:03}"));
        std::fs::create_dir_all(&sdir)?;
        let sdp = sdir.join("in.sdp");
        std::fs::write(
            &sdp,
            format!(
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
            ),
        )?;
        let child = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-protocol_whitelist",
                "file,udp,rtp",
                "-buffer_size",
                "4194304",
                "-i",
            ])
            .arg(&sdp)
            .args([
                "-c",
                "copy",
                "-f",
                "segment",
                "-segment_time",
                "60",
                "-segment_format",
                "mp4",
                "-reset_timestamps",
                "1",
            ])
            .arg(sdir.join("out%03d.mp4"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sdir.join("ffmpeg.log"))?)
            .spawn()
            .context("ffmpeg (Debian package ffmpeg)")?;
        children.push(Child2(child));
        ports.push((port, sdir));
    }
    // Every ffmpeg has bound its ports before the senders bind theirs (an ephemeral sender port
    // could otherwise take one an ffmpeg still starting is about to bind).
    let deadline = Instant::now() + Duration::from_secs(60);
    while ports.iter().any(|(p, _)| {
        std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
            || std::net::UdpSocket::bind(("127.0.0.1", *p + 1)).is_ok()
    }) {
        if Instant::now() > deadline {
            anyhow::bail!("not every ffmpeg bound its RTP ports within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for (i, (p, _)) in ports.iter().enumerate() {
        let delay = Duration::from_millis(1000 * i as u64 / a.recorders.max(1));
        tokio::spawn(crate::bench_live::feed(
            *p,
            sample.clone(),
            delay,
            stop_rx.clone(),
        ));
    }
    // Every ffmpeg writes its first segment.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing = ports
            .iter()
            .filter(|(_, d)| {
                std::fs::metadata(d.join("out000.mp4")).is_ok_and(|m| m.len() > 100_000)
            })
            .count();
        if writing == ports.len() {
            break;
        }
        if Instant::now() > deadline {
            let idle: Vec<String> = ports
                .iter()
                .filter(|(_, d)| {
                    !std::fs::metadata(d.join("out000.mp4")).is_ok_and(|m| m.len() > 100_000)
                })
                .map(|(p, d)| format!("port {p} ({})", d.display()))
                .collect();
            anyhow::bail!(
                "only {writing} of {} ffmpeg processes write; idle: {idle:?}",
                ports.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("ffmpeg: every process writes; measuring");
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    let c0: f64 = pids.iter().map(|p| proc_cpu_s(*p)).sum();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let c1: f64 = pids.iter().map(|p| proc_cpu_s(*p)).sum();
    let pct = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let _ = stop_tx.send(true);
    drop(children);
    Ok(pct)
}

/// An even UDP port whose successor (RTCP) is free too, not handed out before (the ports are
/// only probed here: an ffmpeg still starting has not bound the last one yet, and the kernel
/// would offer it again).
fn free_rtp_port(taken: &mut std::collections::HashSet<u16>) -> anyhow::Result<u16> {
    for _ in 0..1000 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let p = a.local_addr()?.port();
        if p % 2 == 0
            && p < 65_000
            && !taken.contains(&p)
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            taken.insert(p);
            return Ok(p);
        }
    }
    anyhow::bail!("no free RTP port pair")
}

/// Run `shouhu bench seek`.
pub async fn seek(mut cfg: Config, a: SeekBenchArgs) -> anyhow::Result<()> {
    let dir = a.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shouhu-bench-seek-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let marker_path = dir.join("seeded.txt");
    let marker = format!(
        "{} {} {} {} {}\n",
        a.engine, a.recorders, a.days, a.hours, a.segment_secs
    );
    let reuse =
        a.keep.is_some() && std::fs::read_to_string(&marker_path).is_ok_and(|m| m == marker);
    if !reuse {
        let _ = std::fs::remove_file(&marker_path);
        for f in ["shouhu.db", "shouhu.db-wal", "shouhu.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    cfg.server.data_dir = dir.clone();
    cfg.metrics.enabled = false;
    cfg.jt808.enabled = false;
    cfg.sip.enabled = false;
    cfg.database.max_connections = 16;
    cfg.auth.session_cache_secs = 5;
    cfg.auth.argon2_memory_kib = 1024;
    cfg.auth.argon2_iterations = 1;
    cfg.recording.retention_interval_secs = 86_400 * 365;
    cfg.database.url = Secret(match a.engine.as_str() {
        "sqlite" => Db::sqlite_url_in(&dir),
        "postgres" if reuse => crate::bench::bench_pg_url(&a.database_url),
        "postgres" => crate::bench::fresh_pg(&a.database_url).await?,
        other => anyhow::bail!("unknown engine {other:?}"),
    });
    let state = crate::server::build_state(cfg.clone(), Arc::new(SystemClock)).await?;
    // One real segment every index row points at.
    let seg = segment_file().await?;
    let key = "bench/segment.mp4";
    state.blobs.put(key, &seg).await?;
    let init = shouhu_media::mp4::recover::layout(&seg)
        .map(|l| l.init_len)
        .context("the sample segment")?;
    let segs_per = a.hours * 3600 / a.segment_secs;
    let total = a.recorders * a.days * segs_per;
    let base_ms = SystemClock.now_ms() / 86_400_000 * 86_400_000 - a.days as i64 * 86_400_000;
    if !reuse {
        let t = Instant::now();
        let org = crate::demo::seed_org(&state.db).await?;
        let hash = crate::auth::password::hash(&cfg.auth, PASSWORD).await?;
        state
            .db
            .accounts()
            .create(
                &shouhu_storage::accounts::NewAccount {
                    username: USER.into(),
                    display_name: USER.into(),
                    password_hash: hash,
                    role: "operator".into(),
                    org_unit_id: org.corps.id.clone(),
                    must_change_password: false,
                },
                &shouhu_storage::audit::AuditEntry::new(
                    &shouhu_storage::audit::Actor::default(),
                    "account.create",
                    SystemClock.now_ms(),
                ),
            )
            .await?;
        let units: Vec<String> = org.districts.iter().map(|d| d.0.id.clone()).collect();
        shouhu_storage::bulk::seed_recordings(
            &state.db,
            &shouhu_storage::bulk::RecordingPlan {
                recorders: a.recorders,
                days: a.days,
                segments_per_day: segs_per,
                segment_ms: a.segment_secs as i64 * 1000,
                base_ms,
                org_units: units,
                blob_key: key.into(),
                bytes: seg.len() as i64,
                init_bytes: init as i64,
            },
        )
        .await?;
        eprintln!(
            "seeded {} recordings, {total} segments in {:.0} s",
            a.recorders * a.days,
            t.elapsed().as_secs_f64()
        );
        if a.keep.is_some() {
            std::fs::write(&marker_path, &marker)?;
        }
    }
    let size = state.db.size_bytes().await.unwrap_or(0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(state, listener, None, async move {
        let _ = rx.await;
    }));
    let token = login(&http, USER).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let hist = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let per = a.requests.div_ceil(a.clients.max(1));
    let mut set = tokio::task::JoinSet::new();
    for c in 0..a.clients {
        let (client, http, token, hist) =
            (client.clone(), http.clone(), token.clone(), hist.clone());
        let a = a.clone();
        set.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c);
            for _ in 0..per {
                let (r, d) = (rng.gen_range(0..a.recorders), rng.gen_range(0..a.days));
                let id = shouhu_storage::bulk::bench_recording_id(r, d);
                let start = base_ms + d as i64 * 86_400_000;
                let at = start + rng.gen_range(0..(a.hours * 3_600_000) as i64);
                let t = Instant::now();
                let pl = client
                    .get(format!(
                        "{http}/api/v1/recordings/{id}/playlist.m3u8?from={at}"
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?;
                let uri = pl
                    .lines()
                    .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
                    .and_then(|l| l.split('"').next())
                    .context("no EXT-X-MAP in the playlist")?;
                let mut resp = client
                    .get(format!("{http}/api/v1/recordings/{id}/{uri}"))
                    .send()
                    .await?
                    .error_for_status()?;
                let first = resp.chunk().await?;
                anyhow::ensure!(first.is_some_and(|b| !b.is_empty()), "no media byte");
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                hist.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
            }
            anyhow::Ok(())
        });
    }
    let t = Instant::now();
    while let Some(r) = set.join_next().await {
        r??;
    }
    let wall = t.elapsed().as_secs_f64();
    let mut v = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    println!(
        "Seek ({}): {} recordings, {total} segments of {} s, database {:.1} GB; {} seeks from {} clients in {:.1} s",
        a.engine,
        a.recorders * a.days,
        a.segment_secs,
        size as f64 / 1e9,
        v.len(),
        a.clients,
        wall
    );
    println!(
        "playlist request → first media byte: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 50 ms)",
        q(0.5),
        q(0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
    let _ = tx.send(());
    let _ = server.await;
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A real 60 s segment (H.264 1280x720 2 Mbit/s, as the recorder writes them): ffmpeg's sample
/// through the segmenter.
async fn segment_file() -> anyhow::Result<Vec<u8>> {
    let profile = MediaProfile {
        video: Codec::H264,
        bitrate_kbps: 2_000,
        size: (1280, 720),
        audio: None,
    };
    let sample = crate::simulate_gb::sample(&profile)
        .await
        .context("ffmpeg could not make the H.264 sample")?;
    let mut seg = shouhu_media::mp4::segmenter::Segmenter::new(60);
    let mut out = Vec::new();
    let mut file = Vec::new();
    for (n, au) in sample.video.iter().cycle().take(25 * 61).enumerate() {
        let f = shouhu_media::ps::Frame {
            codec: Codec::H264,
            pts_90k: Some(n as u64 * 3600),
            dts_90k: Some(n as u64 * 3600),
            data: au.clone(),
            keyframe: n % 25 == 0,
            received: None,
            rtp_payloads: Default::default(),
        };
        seg.push(&f, &mut out);
        for o in out.drain(..) {
            match o {
                shouhu_media::mp4::segmenter::Output::Data(d) => file.extend(d),
                shouhu_media::mp4::segmenter::Output::End(_) => return Ok(file),
                shouhu_media::mp4::segmenter::Output::Begin { .. } => {}
            }
        }
    }
    anyhow::bail!("the sample did not make a segment")
}

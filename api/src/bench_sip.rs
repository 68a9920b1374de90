//! The GB/T 28181 signalling benchmark, `shouhu bench sip` (figures in docs/benchmarks.md).
//!
//! A fresh SQLite database with the Shanghai org tree and `--devices` recorders on the shared
//! SIP password. The server runs as a child process (`shouhu serve`), so its CPU time and RSS
//! are its own. This process then starts `--devices` simulated recorders over loopback SIP/UDP
//! (each its own socket), all within the first second: each registers with digest (two
//! REGISTERs), answers the platform's Catalog and DeviceInfo queries and its MobilePosition
//! SUBSCRIBE, then sends a keepalive every `--keepalive-s` and a position every
//! `--position-s`. Reported: the time until every device is registered (target: 30 s), how many
//! were refused (target: none), the server's CPU during registration and during `--duration`
//! seconds of keepalives, keepalives answered per second, and the server's RSS.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::recorders::{RecorderInput, SipSecretChange};
use shouhu_storage::Db;

use crate::bench_positions::{free_port, proc_cpu_s, proc_rss_mb};
use crate::clock::{Clock, SystemClock};

/// Options of `shouhu bench sip`.
#[derive(Debug, Clone, clap::Args)]
pub struct SipBenchArgs {
    /// Simulated recorders.
    #[arg(long, default_value_t = 5_000)]
    pub devices: u64,
    /// Seconds between a recorder's keepalives.
    #[arg(long, default_value_t = 10)]
    pub keepalive_s: u64,
    /// Seconds between a recorder's positions.
    #[arg(long, default_value_t = 30)]
    pub position_s: u64,
    /// Seconds measured in the keepalive phase.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
}

const SHARED: &str = "Bench#2026x";
const BASE: &str = "31010000001320000001";

pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Child2(pub(crate) Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

/// Run it.
pub async fn run(a: SipBenchArgs) -> anyhow::Result<()> {
    let dir_path = std::env::temp_dir().join(format!("shouhu-bench-sip-{}", std::process::id()));
    std::fs::create_dir_all(&dir_path)?;
    let dir = TempDir(dir_path);
    let url = Db::sqlite_url_in(dir.path());
    let started = Instant::now();
    {
        let db = Db::connect(&url, 4).await?;
        db.migrate().await?;
        let org = crate::demo::seed_org(&db).await?;
        let actor = Actor {
            username: Some("bench".into()),
            ..Default::default()
        };
        let ids = crate::simulate::recorder_ids(BASE, a.devices)?;
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
        db.close().await;
    }
    println!(
        "seeded {} recorders in {:.1} s",
        a.devices,
        started.elapsed().as_secs_f64()
    );
    let (h, sip) = (free_port()?, {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        u.local_addr()?.port()
    });
    let child = Child2(
        Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("SHOUHU__SERVER__DATA_DIR", dir.path())
            .env("SHOUHU__DATABASE__URL", &url)
            .env("SHOUHU__HTTP__LISTEN", format!("127.0.0.1:{h}"))
            .env("SHOUHU__HTTP__WEB_DIR", dir.path().join("no-web"))
            .env("SHOUHU__METRICS__ENABLED", "false")
            .env("SHOUHU__JT808__ENABLED", "false")
            .env("SHOUHU__SIP__LISTEN", format!("127.0.0.1:{sip}"))
            .env("SHOUHU__SIP__PASSWORD", SHARED)
            .env("SHOUHU_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{h}/healthz")).await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = crate::simulate::recorder_ids(BASE, a.devices)?;
    let specs: Vec<_> = ids
        .into_iter()
        .enumerate()
        .map(|(i, device_id)| crate::simulate_gb::RecorderSpec {
            device_id,
            password: SHARED.into(),
            route: crate::simulate::Route::new((31.23, 121.47), 5_000.0, 5.0, i as u64),
            media: None,
        })
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cpu0 = proc_cpu_s(pid);
    let t0 = Instant::now();
    let stats = crate::simulate_gb::start(
        specs,
        &crate::simulate_gb::GbTarget {
            sip: format!("127.0.0.1:{sip}").parse()?,
            platform_id: "34020000002000000001".into(),
            domain: "3402000000".into(),
            keepalive: Duration::from_secs(a.keepalive_s.max(1)),
            position: Duration::from_secs(a.position_s.max(1)),
            expires_secs: 3600,
            media: Default::default(),
            drop_first_download: false,
        },
        stop_rx,
    );
    let reg_deadline = Instant::now() + Duration::from_secs(120);
    while stats.registered.load(Ordering::Relaxed) < a.devices && Instant::now() < reg_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t_reg = t0.elapsed().as_secs_f64();
    let registered = stats.registered.load(Ordering::Relaxed);
    // Let the platform's queries and subscriptions settle before measuring the steady state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu1 = proc_cpu_s(pid);
    let t1 = Instant::now();
    let ka0 = stats.keepalives.load(Ordering::Relaxed);
    let pos0 = stats.positions.load(Ordering::Relaxed);
    let mut rss_peak: f64 = 0.0;
    while t1.elapsed() < Duration::from_secs(a.duration) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak = rss_peak.max(proc_rss_mb(pid));
    }
    let secs = t1.elapsed().as_secs_f64();
    let cpu2 = proc_cpu_s(pid);
    let ka = stats.keepalives.load(Ordering::Relaxed) - ka0;
    let pos = stats.positions.load(Ordering::Relaxed) - pos0;
    let _ = stop_tx.send(true);
    println!();
    println!(
        "GB/T 28181 signalling: {} simulated recorders over SIP/UDP (loopback)",
        a.devices
    );
    println!(
        "  registration: {registered}/{} registered in {t_reg:.1} s (target ≤ 30 s), {} refused, {} client time-outs",
        a.devices,
        stats.refused.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed)
    );
    println!(
        "  server CPU during registration (start to +5 s settle): {:.1} s ({:.1} % of one core over {:.1} s)",
        cpu1 - cpu0,
        (cpu1 - cpu0) / (t_reg + 5.0) * 100.0,
        t_reg + 5.0
    );
    println!(
        "  keepalive phase, {secs:.0} s: {:.0} keepalives/s answered, {:.0} positions/s, server CPU {:.1} % of one core, {:.1} µs CPU per message, peak RSS {rss_peak:.0} MB",
        ka as f64 / secs,
        pos as f64 / secs,
        (cpu2 - cpu1) / secs * 100.0,
        (cpu2 - cpu1) / ((ka + pos).max(1) as f64) * 1e6,
    );
    anyhow::ensure!(registered == a.devices, "not every device registered");
    anyhow::ensure!(
        stats.refused.load(Ordering::Relaxed) == 0,
        "some registrations were refused"
    );
    drop(child);
    Ok(())
}

//! The live-positions benchmark, `shouhu bench positions` (figures in docs/benchmarks.md).
//!
//! 1. **Full load.** A fresh SQLite database with the Shanghai org tree, `--terminals` vehicles
//!    (spread over the 16 districts) and the viewing accounts. The server runs as a child
//!    process (`shouhu serve`), so its CPU time and RSS are its own. This process then drives
//!    `--terminals` simulated JT/T 808 terminals over loopback TCP, each reporting once a second,
//!    and `--wall-clients` city-wide plus `--district-clients` district-viewport WebSocket clients.
//!    The simulator records the instant it writes each report; a client's latency sample is that
//!    instant to the receipt of the message carrying the fix. Reported: reports sent, received
//!    by the server and lost; positions delivered to clients; latency p50/p99; server CPU (% of
//!    one core) and peak RSS over the measurement window.
//! 2. **Comparison**, one after the other at the same load: `--compare-rate` positions/s delivered
//!    to `--compare-subscribers` city-wide subscribers, by the hub (a fresh server, fed by that
//!    many terminals reporting once a second) and by Mosquitto (its own instance; as many
//!    publisher connections, each publishing its position once a second, one MQTT message per
//!    position, QoS 0, city-wide subscriptions). Reported: each server's
//!    CPU time per delivered position, and their ratio.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::vehicles::VehicleInput;
use shouhu_storage::Db;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::simulate::{Route, SentHook, SimTarget, TerminalSpec};

/// Options of `shouhu bench positions`.
#[derive(Debug, Clone, clap::Args)]
pub struct PositionsBenchArgs {
    /// Simulated JT/T 808 terminals of the full-load phase (one report a second each).
    #[arg(long, default_value_t = 10_000)]
    pub terminals: u64,
    /// City-wide WebSocket clients (wall screens).
    #[arg(long, default_value_t = 20)]
    pub wall_clients: usize,
    /// WebSocket clients with one district's viewport.
    #[arg(long, default_value_t = 180)]
    pub district_clients: usize,
    /// Seconds measured in the full-load phase.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Positions a second in the comparison.
    #[arg(long, default_value_t = 1_000)]
    pub compare_rate: u64,
    /// City-wide subscribers in the comparison.
    #[arg(long, default_value_t = 50)]
    pub compare_subscribers: usize,
    /// Seconds measured per server in the comparison.
    #[arg(long, default_value_t = 30)]
    pub compare_duration: u64,
    /// The Mosquitto broker binary.
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto: PathBuf,
    /// Store in PostgreSQL at this server URL (a database `shouhu_bench` is created on it,
    /// replacing any old one) instead of SQLite; its CPU is reported beside the hub's.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Skip the full-load phase.
    #[arg(long)]
    pub skip_full: bool,
    /// Skip the comparison.
    #[arg(long)]
    pub skip_compare: bool,
}

const PHONE_BASE: u64 = 14_000_000_000;
pub(crate) const PASSWORD: &str = "Bench@2026x";

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU seconds (user + system) and RSS of a process.
pub(crate) fn proc_cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every `postgres` process on the machine (the database of a PostgreSQL run).
fn postgres_cpu_s() -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(proc_cpu_s)
        .sum()
}

pub(crate) fn proc_rss_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmRSS:")
}

/// A `/proc/PID/status` figure in kB, as MB.
fn proc_status_mb(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The resident set and its parts: (total, anonymous — heaps, caches —, file-backed — the
/// database read through its memory map —), MB.
fn proc_rss_parts_mb(pid: u32) -> (f64, f64, f64) {
    (
        proc_status_mb(pid, "VmRSS:"),
        proc_status_mb(pid, "RssAnon:"),
        proc_status_mb(pid, "RssFile:"),
    )
}

struct Server {
    child: Child,
    http: String,
    metrics: String,
    jt808: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

async fn start_server(dir: &Path, url: &str) -> anyhow::Result<Server> {
    let (h, m, j) = (free_port()?, free_port()?, free_port()?);
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("SHOUHU__SERVER__DATA_DIR", dir)
        .env("SHOUHU__DATABASE__URL", url)
        .env("SHOUHU__HTTP__LISTEN", format!("127.0.0.1:{h}"))
        .env("SHOUHU__HTTP__WEB_DIR", dir.join("no-web"))
        .env("SHOUHU__METRICS__LISTEN", format!("127.0.0.1:{m}"))
        .env("SHOUHU__JT808__LISTEN", format!("127.0.0.1:{j}"))
        .env("SHOUHU__SIP__ENABLED", "false")
        .env("SHOUHU__JT808__MAX_CONNECTIONS", "30000")
        // Every simulated terminal connects from 127.0.0.1: one address for 10,000 vehicles,
        // where a city's vehicles come from thousands.
        .env("SHOUHU__JT808__SOURCE_BURST", "100000")
        .env("SHOUHU__JT808__SOURCE_PER_SEC", "10000")
        .env("SHOUHU__JT808__MAX_UNAUTHENTICATED_PER_SOURCE", "30000")
        // And every WebSocket client from 127.0.0.1 too.
        .env("SHOUHU__HTTP__MAX_CONNECTIONS_PER_ADDRESS", "10000")
        .env("SHOUHU_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let s = Server {
        child,
        http: format!("http://127.0.0.1:{h}"),
        metrics: format!("http://127.0.0.1:{m}/metrics"),
        jt808: format!("127.0.0.1:{j}").parse()?,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", s.http)).await {
            if r.status().is_success() {
                return Ok(s);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(url: &str, name: &str) -> f64 {
    let Ok(r) = reqwest::get(url).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per-terminal send instants: 4 slots by second, each `(second << 40) | micros since start`.
struct SentLog {
    start: Instant,
    slots: Vec<AtomicU64>,
}

impl SentLog {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(SentLog {
            start: Instant::now(),
            slots: (0..n * 4).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn record(&self, idx: usize, sec: i64, at: Instant) {
        let us = at.duration_since(self.start).as_micros() as u64 & ((1 << 40) - 1);
        let v = ((sec as u64 & 0xff_ffff) << 40) | us;
        if let Some(s) = self.slots.get(idx * 4 + (sec as usize & 3)) {
            s.store(v, Ordering::Relaxed);
        }
    }

    fn latency_us(&self, idx: usize, sec: i64, now: Instant) -> Option<u64> {
        let v = self
            .slots
            .get(idx * 4 + (sec as usize & 3))?
            .load(Ordering::Relaxed);
        if v >> 40 != (sec as u64 & 0xff_ffff) {
            return None;
        }
        let sent = v & ((1 << 40) - 1);
        let now_us = now.duration_since(self.start).as_micros() as u64;
        now_us.checked_sub(sent)
    }
}

/// Latency histogram in 0.1 ms buckets up to 10 s.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    fn new() -> Arc<Self> {
        Arc::new(Histogram {
            buckets: (0..100_001).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn add(&self, us: u64) {
        let b = ((us / 100) as usize).min(self.buckets.len() - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return (i as f64 + 1.0) / 10.0;
            }
        }
        f64::NAN
    }
}

#[derive(Default)]
struct Delivered {
    positions: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Read a dispatch WebSocket, counting unit updates and timing those the log knows.
async fn ws_reader(
    http: String,
    token: String,
    subscribe: serde_json::Value,
    log: Arc<SentLog>,
    hist: Arc<Histogram>,
    out: Arc<Delivered>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = format!(
        "{}/api/v1/dispatch/ws?token={token}",
        http.replacen("http", "ws", 1)
    );
    let conf = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(64 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(conf), false).await?;
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        subscribe.to_string().into(),
    ))
    .await?;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => return Ok(()),
        };
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = m else {
            match m {
                Some(Ok(_)) => continue,
                _ => anyhow::bail!("WebSocket closed"),
            }
        };
        let now = Instant::now();
        let t = t.as_str();
        if !t.starts_with(r#"{"type":"units""#) {
            continue;
        }
        out.messages.fetch_add(1, Ordering::Relaxed);
        out.bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
        let mut rest = t;
        let mut n = 0;
        // A vehicle is known by its plate (`沪B00042` is terminal 42): the WebSocket carries no
        // terminal phone.
        const NAME: &str = r#""name":"沪B"#;
        while let Some(i) = rest.find(NAME) {
            rest = &rest[i + NAME.len()..];
            n += 1;
            let end = rest.find('"').unwrap_or(0);
            let Ok(index) = rest[..end].parse::<usize>() else {
                continue;
            };
            let Some(ti) = rest.find(r#""time":""#) else {
                continue;
            };
            let ts = &rest[ti + 8..];
            let te = ts.find('"').unwrap_or(0);
            let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&ts[..te]) else {
                continue;
            };
            if let Some(us) = log.latency_us(index, dt.timestamp(), now) {
                hist.add(us);
            }
        }
        out.positions.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) async fn login(http: &str, user: &str) -> anyhow::Result<String> {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    r["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("login of {user} failed: {r}"))
}

/// Seed the org tree, vehicles and viewing accounts; returns district centres (lat, lon).
async fn seed(
    url: &str,
    terminals: u64,
    wall: usize,
    district_accounts: usize,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let org = crate::demo::seed_org(&db).await?;
    let actor = Actor {
        username: Some("bench".into()),
        ..Default::default()
    };
    let audit = |a: &str| AuditEntry::new(&actor, a, SystemClock.now_ms());
    let n_d = org.districts.len() as u64;
    for i in 0..terminals {
        let d = &org.districts[(i % n_d) as usize].0;
        db.vehicles()
            .insert(
                &VehicleInput {
                    plate: format!("沪B{:05}", i),
                    org_unit_id: d.id.clone(),
                    terminal_phone: Some((PHONE_BASE + i).to_string()),
                    status: "active".into(),
                },
                &audit("vehicle.create"),
            )
            .await?;
    }
    let mut cfg = Config::default();
    cfg.auth.argon2_memory_kib = 1024;
    cfg.auth.argon2_iterations = 1;
    let hash = crate::auth::password::hash(&cfg.auth, PASSWORD).await?;
    let mk = |u: String, role: &str, unit: String| {
        let db = db.clone();
        let hash = hash.clone();
        let role = role.to_string();
        let a = audit("account.create");
        async move {
            db.accounts()
                .create(
                    &NewAccount {
                        username: u.clone(),
                        display_name: u,
                        password_hash: hash,
                        role,
                        org_unit_id: unit,
                        must_change_password: false,
                    },
                    &a,
                )
                .await
        }
    };
    for i in 0..wall {
        mk(format!("wall{i:03}"), "operator", org.corps.id.clone()).await?;
    }
    for j in 0..district_accounts {
        let d = &org.districts[j % org.districts.len()].0;
        mk(format!("district{j:03}"), "brigade_head", d.id.clone()).await?;
    }
    db.close().await;
    Ok(org.districts.iter().map(|d| (d.2[1], d.2[0])).collect())
}

fn terminals(n: u64, centres: &[(f64, f64)]) -> Vec<TerminalSpec> {
    (0..n)
        .map(|i| TerminalSpec {
            phone: PHONE_BASE + i,
            plate: format!("沪B{:05}", i),
            route: Route::new(
                centres[(i % centres.len() as u64) as usize],
                3000.0,
                20.0 + (i % 30) as f64,
                i,
            ),
        })
        .collect()
}

/// Run the benchmark.
pub async fn run(args: PositionsBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("shouhu-bench-positions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let wall = args.wall_clients.max(args.compare_subscribers);
    let url = match &args.database_url {
        Some(u) => crate::bench::fresh_pg(u).await?,
        None => Db::sqlite_url_in(&dir),
    };
    let centres = seed(
        &url,
        args.terminals.max(args.compare_rate),
        wall,
        args.district_clients,
    )
    .await?;
    eprintln!(
        "seeded {} vehicles and {} accounts in {:.1} s",
        args.terminals.max(args.compare_rate),
        wall + args.district_clients,
        t.elapsed().as_secs_f64()
    );
    println!("| phase | load | result |");
    println!("|---|---|---|");
    if !args.skip_full {
        full_load(&args, &dir, &url, &centres).await?;
    }
    if !args.skip_compare {
        // The full load's terminals registered and hold auth codes its simulator took with it:
        // the same numbers registering again are refused (as a real platform refuses a cloned
        // terminal), so the comparison runs on a database seeded afresh.
        let (cdir, curl) = if args.skip_full {
            (dir.clone(), url.clone())
        } else {
            let cdir = dir.join("compare");
            std::fs::create_dir_all(&cdir)?;
            let curl = match &args.database_url {
                Some(u) => crate::bench::fresh_pg(u).await?,
                None => Db::sqlite_url_in(&cdir),
            };
            seed(&curl, args.compare_rate, wall, args.district_clients).await?;
            (cdir, curl)
        };
        compare(&args, &cdir, &curl, &centres).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn full_load(
    args: &PositionsBenchArgs,
    dir: &Path,
    url: &str,
    centres: &[(f64, f64)],
) -> anyhow::Result<()> {
    let server = start_server(dir, url).await?;
    let pid = server.child.id();
    let (stop_tx, stop_rx) = watch::channel(false);
    let log = SentLog::new(args.terminals as usize);
    let hist = Histogram::new();
    let delivered = Arc::new(Delivered::default());
    // Clients first, so they see the terminals arrive.
    for i in 0..args.wall_clients {
        let token = login(&server.http, &format!("wall{i:03}")).await?;
        tokio::spawn(ws_reader(
            server.http.clone(),
            token,
            serde_json::json!({"type": "subscribe"}),
            log.clone(),
            hist.clone(),
            delivered.clone(),
            stop_rx.clone(),
        ));
    }
    for j in 0..args.district_clients {
        let token = login(&server.http, &format!("district{j:03}")).await?;
        let (lat, lon) = centres[j % centres.len()];
        let sub = serde_json::json!({"type": "subscribe", "bbox": [lon - 0.045, lat - 0.04, lon + 0.045, lat + 0.04]});
        tokio::spawn(ws_reader(
            server.http.clone(),
            token,
            sub,
            log.clone(),
            hist.clone(),
            delivered.clone(),
            stop_rx.clone(),
        ));
    }
    let hook_log = log.clone();
    let hook: SentHook =
        Arc::new(move |phone, sec, at| hook_log.record((phone - PHONE_BASE) as usize, sec, at));
    let target = SimTarget {
        jt808: server.jt808,
        http: server.http.clone(),
        interval: Duration::from_secs(1),
        app_interval: Duration::from_secs(1),
    };
    // Connect terminals in waves so the listener's backlog is not flooded.
    let specs = terminals(args.terminals, centres);
    let mut stats = Vec::new();
    for chunk in specs.chunks(500) {
        stats.push(crate::simulate::start(
            chunk.to_vec(),
            Vec::new(),
            &target,
            Some(hook.clone()),
            stop_rx.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let authed = || {
        stats
            .iter()
            .map(|s| s.authenticated.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let sent = || {
        stats
            .iter()
            .map(|s| s.reports.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while authed() < args.terminals {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} terminals authenticated",
            authed(),
            args.terminals
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the report phases spread over the second, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for b in &hist.buckets {
        b.store(0, Ordering::Relaxed);
    }
    let (cpu0, sent0, recv0, del0, wall0) = (
        proc_cpu_s(pid),
        sent(),
        metric(&server.metrics, "shouhu_positions_received_total").await,
        delivered.positions.load(Ordering::Relaxed),
        Instant::now(),
    );
    let me0 = proc_cpu_s(std::process::id());
    let pg0 = postgres_cpu_s();
    let mut rss_max: f64 = 0.0;
    let mut rss_parts = (0.0, 0.0);
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end {
        let (rss, anon, file) = proc_rss_parts_mb(pid);
        if rss > rss_max {
            rss_max = rss;
            rss_parts = (anon, file);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let secs = wall0.elapsed().as_secs_f64();
    let cpu = proc_cpu_s(pid) - cpu0;
    let me = proc_cpu_s(std::process::id()) - me0;
    let pg = postgres_cpu_s() - pg0;
    let del = delivered.positions.load(Ordering::Relaxed) - del0;
    let sent_window = sent() - sent0;
    let (p50, p99) = (hist.quantile_ms(0.50), hist.quantile_ms(0.99));
    // Stop the terminals, let them and the server drain, then compare totals.
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_total = sent();
    let recv_total = metric(&server.metrics, "shouhu_positions_received_total").await;
    let recv_window = recv_total - recv0;
    let lost = sent_total as f64 - recv_total;
    println!(
        "| full load | {} terminals × 1 report/s over TCP; {} city-wide + {} district WebSocket clients; {} s | reports sent {} ({:.0}/s), received by the server {:.0}, lost {:.0} (whole run: sent {sent_total}, received {recv_total:.0}); positions delivered {} ({:.0}/s); latency p50 {:.1} ms, p99 {:.1} ms (batch interval 250 ms); server CPU {:.1} % of one core, peak RSS {:.0} MB (anonymous {:.0}, file-backed {:.0}); {}load generator and clients {:.1} % |",
        args.terminals, args.wall_clients, args.district_clients, args.duration,
        sent_window, sent_window as f64 / secs, recv_window, lost.max(0.0), del, del as f64 / secs, p50, p99,
        cpu / secs * 100.0, rss_max, rss_parts.0, rss_parts.1,
        if args.database_url.is_some() { format!("PostgreSQL processes {:.1} %; ", pg / secs * 100.0) } else { String::new() },
        me / secs * 100.0,
    );
    drop(server);
    Ok(())
}

async fn compare(
    args: &PositionsBenchArgs,
    dir: &Path,
    url: &str,
    centres: &[(f64, f64)],
) -> anyhow::Result<()> {
    // The hub.
    let server = start_server(dir, url).await?;
    let pid = server.child.id();
    let (stop_tx, stop_rx) = watch::channel(false);
    let log = SentLog::new(args.compare_rate as usize);
    let hist = Histogram::new();
    let delivered = Arc::new(Delivered::default());
    for i in 0..args.compare_subscribers {
        let token = login(&server.http, &format!("wall{i:03}")).await?;
        tokio::spawn(ws_reader(
            server.http.clone(),
            token,
            serde_json::json!({"type": "subscribe"}),
            log.clone(),
            hist.clone(),
            delivered.clone(),
            stop_rx.clone(),
        ));
    }
    let hook_log = log.clone();
    let hook: SentHook =
        Arc::new(move |phone, sec, at| hook_log.record((phone - PHONE_BASE) as usize, sec, at));
    let target = SimTarget {
        jt808: server.jt808,
        http: server.http.clone(),
        interval: Duration::from_secs(1),
        app_interval: Duration::from_secs(1),
    };
    let stats = crate::simulate::start(
        terminals(args.compare_rate, centres),
        Vec::new(),
        &target,
        Some(hook),
        stop_rx.clone(),
    );
    while stats.authenticated.load(Ordering::Relaxed) < args.compare_rate {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, d0, t0) = (
        proc_cpu_s(pid),
        delivered.positions.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.compare_duration)).await;
    let hub_cpu = proc_cpu_s(pid) - cpu0;
    let hub_del = delivered.positions.load(Ordering::Relaxed) - d0;
    let hub_secs = t0.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    drop(server);
    let hub_per = hub_cpu / hub_del.max(1) as f64 * 1e6;
    println!(
        "| comparison: hub | {} positions/s (JT/T 808) to {} city-wide WebSocket subscribers, {} s | delivered {} ({:.0}/s); server CPU {:.2} s = {:.2} µs per delivered position (includes JT/T 808 ingest, history writes, spatial index) |",
        args.compare_rate, args.compare_subscribers, args.compare_duration, hub_del, hub_del as f64 / hub_secs, hub_cpu, hub_per
    );

    // Mosquitto.
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"))?;
    let mut broker = Command::new(&args.mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", args.mosquitto.display()))?;
    let bpid = broker.id();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "mosquitto did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = Arc::new(AtomicU64::new(0));
    let (mstop_tx, mstop_rx) = watch::channel(false);
    for i in 0..args.compare_subscribers {
        let mut s = mqtt_connect(&addr, &format!("sub{i}")).await?;
        mqtt_subscribe(&mut s, "shouhu/positions/#").await?;
        tokio::spawn(mqtt_count(s, got.clone(), mstop_rx.clone()));
    }
    let publisher = tokio::spawn(mqtt_publish(
        addr.clone(),
        args.compare_rate,
        centres.to_vec(),
        mstop_rx.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, d0, t0) = (
        proc_cpu_s(bpid),
        got.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.compare_duration)).await;
    let mq_cpu = proc_cpu_s(bpid) - cpu0;
    let mq_del = got.load(Ordering::Relaxed) - d0;
    let mq_secs = t0.elapsed().as_secs_f64();
    let _ = mstop_tx.send(true);
    let _ = publisher.await;
    let _ = broker.kill();
    let _ = broker.wait();
    let mq_per = mq_cpu / mq_del.max(1) as f64 * 1e6;
    println!(
        "| comparison: Mosquitto | {} messages/s (one per position, QoS 0; one publisher connection per unit, once a second) to {} subscribers of `shouhu/positions/#`, {} s | delivered {} ({:.0}/s); broker CPU {:.2} s = {:.2} µs per delivered position |",
        args.compare_rate, args.compare_subscribers, args.compare_duration, mq_del, mq_del as f64 / mq_secs, mq_cpu, mq_per
    );
    println!(
        "| comparison: ratio | hub ÷ Mosquitto, CPU per delivered position | {:.2} |",
        hub_per / mq_per
    );
    Ok(())
}

/// MQTT 3.1.1 remaining length.
fn mqtt_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn mqtt_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn mqtt_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    mqtt_len(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

async fn mqtt_connect(addr: &str, id: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut b = Vec::new();
    mqtt_str("MQTT", &mut b);
    b.extend_from_slice(&[4, 0x02, 0, 120]);
    mqtt_str(id, &mut b);
    s.write_all(&mqtt_packet(0x10, &b)).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    anyhow::ensure!(
        ack[0] == 0x20 && ack[3] == 0,
        "MQTT CONNACK refused: {ack:?}"
    );
    Ok(s)
}

async fn mqtt_subscribe(s: &mut TcpStream, filter: &str) -> anyhow::Result<()> {
    let mut b = vec![0, 1];
    mqtt_str(filter, &mut b);
    b.push(0);
    s.write_all(&mqtt_packet(0x82, &b)).await?;
    let mut ack = [0u8; 5];
    s.read_exact(&mut ack).await?;
    anyhow::ensure!(ack[0] == 0x90, "MQTT SUBACK expected");
    Ok(())
}

/// Count PUBLISH packets until stopped.
async fn mqtt_count(mut s: TcpStream, got: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = tokio::select! {
            r = s.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = stop.changed() => return,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        loop {
            if pending.len() < at + 2 {
                break;
            }
            let (mut len, mut mul, mut i) = (0usize, 1usize, at + 1);
            let mut complete = false;
            while i < pending.len() {
                let b = pending[i];
                len += usize::from(b & 0x7f) * mul;
                mul *= 128;
                i += 1;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete || pending.len() < i + len {
                break;
            }
            if pending[at] >> 4 == 3 {
                got.fetch_add(1, Ordering::Relaxed);
            }
            at = i + len;
        }
        pending.drain(..at);
    }
}

/// One publisher per unit, like a terminal speaking MQTT: a message (JSON like the hub's unit
/// view) once a second, each publisher at its own phase of the second.
async fn mqtt_publish(
    addr: String,
    rate: u64,
    centres: Vec<(f64, f64)>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for i in 0..rate {
        let addr = addr.clone();
        let mut stop = stop.clone();
        let mut route = Route::new(
            centres[(i % centres.len() as u64) as usize],
            3000.0,
            30.0,
            i,
        );
        tasks.push(tokio::spawn(async move {
            let mut s = mqtt_connect(&addr, &format!("unit{i}")).await?;
            let phase = Duration::from_micros(i * 1_000_000 / rate);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
            let topic = format!("shouhu/positions/{i}");
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return anyhow::Ok(()),
                }
                let (lat, lon, v, hd) = route.step(1.0);
                let body = serde_json::json!({
                    "id": format!("unit-{i:05}"), "kind": "vehicle", "name": format!("沪B{i:05}"), "org_unit_id": "district",
                    "terminal": null, "device": null, "lat": lat, "lon": lon,
                    "time": crate::clock::rfc3339(SystemClock.now_ms()), "speed_kmh": v, "heading_deg": hd, "altitude_m": 5.0,
                    "accuracy_m": null, "source": "jt808", "link": "online", "state": "idle", "target": null, "sos": false, "flags": []
                })
                .to_string();
                let mut b = Vec::new();
                mqtt_str(&topic, &mut b);
                b.extend_from_slice(body.as_bytes());
                s.write_all(&mqtt_packet(0x30, &b)).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

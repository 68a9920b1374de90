//! The foundation benchmark, `shouhu bench` (figures in docs/benchmarks.md).
//!
//! On a fresh database of the chosen engine: seed the Shanghai org tree, 100,000 enterprises and
//! 2,000 accounts; start the server in this process on 127.0.0.1; then, one phase after the
//! other:
//! 1. logins at a fixed rate (20/s, open loop: each request starts on schedule whatever the
//!    previous ones do) on distinct accounts, measured here;
//! 2. exact look-ups by USCC (`GET /api/v1/enterprises?uscc=…`) by 70 concurrent clients with
//!    pre-issued tokens, driven by `wrk` for 60 s;
//! 3. substring searches (`GET /api/v1/enterprises?q=…`, two to four Chinese characters taken
//!    from real names) the same way.
//!
//! It prints one Markdown table row per phase.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::Db;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Secret};

/// Benchmark options.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Another benchmark than the foundation one.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// PostgreSQL server URL (a database `shouhu_bench` is created on it, replacing any old one).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// Enterprises to seed.
    #[arg(long, default_value_t = 100_000)]
    pub enterprises: usize,
    /// Accounts to seed.
    #[arg(long, default_value_t = 2_000)]
    pub accounts: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent clients of the look-up and search phases.
    #[arg(long, default_value_t = 70)]
    pub clients: usize,
    /// Logins per second in the login phase.
    #[arg(long, default_value_t = 20)]
    pub login_rate: u64,
    /// The load tool for the look-up and search phases.
    #[arg(long, default_value = "wrk")]
    pub wrk: PathBuf,
}

/// The other benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Live positions: JT/T 808 terminals, WebSocket fan-out, and the Mosquitto comparison.
    Positions(crate::bench_positions::PositionsBenchArgs),
    /// GB/T 28181 signalling: thousands of recorders registering and keeping alive.
    Sip(crate::bench_sip::SipBenchArgs),
    /// Live video: recorders streaming through the hub to WebRTC viewers, then Janus.
    Live(crate::bench_live::LiveBenchArgs),
    /// Daily enforcement work: a year of inspections, hazards and cases; 70 users, mixed load.
    Enforcement(crate::bench_enforcement::EnforcementBenchArgs),
    /// Recording: streams recorded into fMP4 segments by the hub, then by ffmpeg.
    Recording(crate::bench_recording::RecordingBenchArgs),
    /// Seeking in a year of recordings: playlist request to first media byte.
    Seek(crate::bench_recording::SeekBenchArgs),
}

const BENCH_PASSWORD: &str = "Bench@2026x";

/// Run the benchmark.
pub async fn run(mut cfg: Config, args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        Some(BenchWhat::Positions(a)) => return crate::bench_positions::run(a).await,
        Some(BenchWhat::Sip(a)) => return crate::bench_sip::run(a).await,
        Some(BenchWhat::Live(a)) => return crate::bench_live::run(a).await,
        Some(BenchWhat::Enforcement(a)) => return crate::bench_enforcement::run(cfg, a).await,
        Some(BenchWhat::Recording(a)) => return crate::bench_recording::run(a).await,
        Some(BenchWhat::Seek(a)) => return crate::bench_recording::seek(cfg, a).await,
        None => {}
    }
    let dir = std::env::temp_dir().join(format!("shouhu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    cfg.server.data_dir = dir.clone();
    cfg.metrics.enabled = false;
    cfg.jt808.enabled = false;
    cfg.sip.enabled = false;
    cfg.database.max_connections = 16;
    cfg.database.url = Secret(match args.engine.as_str() {
        "sqlite" => Db::sqlite_url_in(&dir),
        "postgres" => fresh_pg(&args.database_url).await?,
        other => anyhow::bail!("unknown engine {other:?}"),
    });
    let state = crate::server::build_state(cfg.clone(), Arc::new(SystemClock)).await?;
    let db = state.db.clone();

    let t = Instant::now();
    let org = crate::demo::seed_org(&db).await?;
    let list = crate::demo::enterprises(&org, args.enterprises, 7);
    crate::demo::insert_enterprises(&db, &list).await?;
    let seeded_enterprises = t.elapsed();
    let t = Instant::now();
    let hash = crate::auth::password::hash(&cfg.auth, BENCH_PASSWORD).await?;
    let actor = Actor {
        account_id: None,
        username: Some("bench".into()),
        ip: None,
    };
    let mut usernames = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        // Every account at the corps level, so each look-up sees the whole registry.
        let username = format!("bench{i:05}");
        db.accounts()
            .create(
                &NewAccount {
                    username: username.clone(),
                    display_name: username.clone(),
                    password_hash: hash.clone(),
                    role: "operator".into(),
                    org_unit_id: org.corps.id.clone(),
                    must_change_password: false,
                },
                &AuditEntry::new(&actor, "account.create", SystemClock.now_ms()),
            )
            .await?;
        usernames.push(username);
    }
    eprintln!(
        "seeded {} enterprises in {:.1} s and {} accounts in {:.1} s ({:?})",
        args.enterprises,
        seeded_enterprises.as_secs_f64(),
        args.accounts,
        t.elapsed().as_secs_f64(),
        db.engine()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(state, listener, None, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // Phase 1: logins at a fixed rate on distinct accounts.
    let n_logins = (args.login_rate * args.duration) as usize;
    anyhow::ensure!(
        n_logins + args.clients <= usernames.len(),
        "need more accounts than {} logins + {} clients",
        n_logins,
        args.clients
    );
    let period = Duration::from_secs_f64(1.0 / args.login_rate as f64);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(n_logins);
    for (i, u) in usernames.iter().take(n_logins).enumerate() {
        tokio::time::sleep_until(start + period * i as u32).await;
        let c = client.clone();
        let url = format!("{base}/api/v1/auth/login");
        let body = serde_json::json!({"username": u, "password": BENCH_PASSWORD});
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = c
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            (t.elapsed(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(n_logins);
    let mut errors = 0;
    for h in handles {
        let (d, ok) = h.await?;
        lat.push(d);
        errors += usize::from(!ok);
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort();
    let (p50, p99) = (pct(&lat, 0.50), pct(&lat, 0.99));
    let m = &cfg.auth;
    println!("| {:?} | login, {} /s fixed rate, distinct accounts (argon2id m={} KiB, t={}, p={}) | {} | {:.1} | {:.1} | {:.1} /s | {errors} |",
        db.engine(), args.login_rate, m.argon2_memory_kib, m.argon2_iterations, m.argon2_parallelism, n_logins, ms(p50), ms(p99), n_logins as f64 / wall);

    // Tokens for the load phases: distinct accounts not used above.
    let mut tokens = Vec::new();
    for u in usernames.iter().skip(n_logins).take(args.clients) {
        let r: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": u, "password": BENCH_PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(
            r["token"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("login failed: {r}"))?
                .to_string(),
        );
    }
    let mut rng = StdRng::seed_from_u64(11);
    let lookups: Vec<String> = list
        .choose_multiple(&mut rng, 5_000)
        .map(|e| format!("/api/v1/enterprises?uscc={}", e.uscc))
        .collect();
    let searches: Vec<String> = (0..5_000)
        .map(|_| {
            // Two to four characters of what people type: the trade name and the line of
            // business, i.e. the name without the city prefix and the legal-form suffix.
            let full = &list.choose(&mut rng).expect("enterprises").name;
            let core = full.trim_start_matches("上海");
            let core = core
                .split("有限")
                .next()
                .unwrap_or(core)
                .trim_end_matches("公司");
            let name: Vec<char> = core.chars().collect();
            let len = rng.gen_range(2..=4).min(name.len()).max(1);
            let from = rng.gen_range(0..=name.len() - len);
            let q: String = name[from..from + len].iter().collect();
            format!("/api/v1/enterprises?q={}", crate_urlencode(&q))
        })
        .collect();
    for (label, paths) in [
        ("exact look-up by USCC", &lookups),
        ("substring search (2–4 chars)", &searches),
    ] {
        let r = wrk(&args, &base, &dir, paths, &tokens)?;
        println!(
            "| {:?} | {label}, {} clients, {} s | {} | {:.1} | {:.1} | {:.0} /s | {} |",
            db.engine(),
            args.clients,
            args.duration,
            r.requests,
            r.p50_ms,
            r.p99_ms,
            r.rps,
            r.errors
        );
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn crate_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A fresh `shouhu_bench` database on the server of `url`; returns its URL.
pub(crate) async fn fresh_pg(url: &str) -> anyhow::Result<String> {
    let admin = Db::connect(url, 1).await?;
    admin
        .execute_raw("DROP DATABASE IF EXISTS shouhu_bench WITH (FORCE)")
        .await?;
    admin.execute_raw("CREATE DATABASE shouhu_bench").await?;
    admin.close().await;
    Ok(bench_pg_url(url))
}

/// The URL of the `shouhu_bench` database on the server of `url`.
pub(crate) fn bench_pg_url(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let cut = base
        .rfind('/')
        .filter(|i| *i > base.find("://").map(|j| j + 2).unwrap_or(0))
        .unwrap_or(base.len());
    format!("{}/shouhu_bench", &base[..cut])
}

struct WrkResult {
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
    errors: u64,
}

const WRK_LUA: &str = r#"
local paths, tokens = {}, {}
for l in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = l end
for l in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = l end
local n = 0
setup = function(thread) n = n + 1; thread:set("id", n) end
init = function(args) math.randomseed(id * 7919) end
request = function()
  return wrk.format("GET", paths[math.random(#paths)], { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %.3f %.3f %d %d %d\n", summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, 0))
end
"#;

fn wrk(
    args: &BenchArgs,
    base: &str,
    dir: &std::path::Path,
    paths: &[String],
    tokens: &[String],
) -> anyhow::Result<WrkResult> {
    let script = dir.join("bench.lua");
    let pf = dir.join("paths.txt");
    let tf = dir.join("tokens.txt");
    std::fs::write(&script, WRK_LUA)?;
    std::fs::write(&pf, paths.join("\n") + "\n")?;
    std::fs::write(&tf, tokens.join("\n") + "\n")?;
    let out = std::process::Command::new(&args.wrk)
        .args([
            "-t2",
            &format!("-c{}", args.clients),
            &format!("-d{}s", args.duration),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .env("BENCH_PATHS", &pf)
        .env("BENCH_TOKENS", &tf)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {} (apt-get install wrk; `make bench` does): {e}",
                args.wrk.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .ok_or_else(|| anyhow::anyhow!("no summary from wrk: {text}"))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    Ok(WrkResult {
        requests: f[0] as u64,
        p50_ms: f[1],
        p99_ms: f[2],
        rps: f[0] / (f[3] / 1e6),
        errors: f[4] as u64,
    })
}

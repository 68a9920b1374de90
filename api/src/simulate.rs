//! `shouhu simulate`: JT/T 808 terminals over real TCP and officer phone apps over the real
//! WebSocket, moving along plausible routes. Used by the demo, the tests and the benchmark.
//!
//! A terminal registers (0x0100), authenticates (0x0102) and reports its position (0x0200) every
//! interval; it answers position queries (0x8201 → 0x0201) and follows temporary tracking
//! (0x8202). An app logs in and sends `positions` messages on `/api/v1/dispatch/ws`.
//! Movement: each simulated unit drives from waypoint to waypoint around its home point at a
//! speed of its kind (vehicles 20–50 km/h, officers on foot 3–6 km/h).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, Timelike};
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shouhu_media::jt808::frame::{self, Deframer};
use shouhu_media::jt808::header::{Header, Version};
use shouhu_media::jt808::{message, to_gbk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Hook called with (terminal phone, device time in whole seconds, send instant) for every
/// location report sent (the benchmark's latency reference).
pub type SentHook = Arc<dyn Fn(u64, i64, Instant) + Send + Sync>;

/// A moving point.
#[derive(Debug, Clone)]
pub struct Route {
    home: (f64, f64),
    radius_m: f64,
    pos: (f64, f64),
    target: (f64, f64),
    speed_kmh: f64,
    heading: f64,
    rng: StdRng,
}

const M_PER_DEG_LAT: f64 = 111_195.0;

impl Route {
    /// A route around `home` (lat, lon) within `radius_m`, at `speed_kmh`.
    pub fn new(home: (f64, f64), radius_m: f64, speed_kmh: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let start = Self::point(&mut rng, home, radius_m);
        let target = Self::point(&mut rng, home, radius_m);
        Route {
            home,
            radius_m,
            pos: start,
            target,
            speed_kmh,
            heading: 0.0,
            rng,
        }
    }

    fn point(rng: &mut StdRng, home: (f64, f64), radius_m: f64) -> (f64, f64) {
        let r = radius_m * rng.gen::<f64>().sqrt();
        let a = rng.gen::<f64>() * std::f64::consts::TAU;
        let dlat = r * a.cos() / M_PER_DEG_LAT;
        let dlon = r * a.sin() / (M_PER_DEG_LAT * home.0.to_radians().cos());
        (home.0 + dlat, home.1 + dlon)
    }

    /// Advance by `dt` seconds; returns (lat, lon, speed km/h, heading degrees). Moves along
    /// the grid (first east-west, then north-south), as streets in a city run.
    pub fn step(&mut self, dt: f64) -> (f64, f64, f64, f64) {
        let mut left = self.speed_kmh / 3.6 * dt;
        let kx = M_PER_DEG_LAT * self.pos.0.to_radians().cos();
        while left > 0.0 {
            let dx = (self.target.1 - self.pos.1) * kx;
            let dy = (self.target.0 - self.pos.0) * M_PER_DEG_LAT;
            let (leg, horizontal) = if dx.abs() > 1.0 {
                (dx, true)
            } else {
                (dy, false)
            };
            if leg.abs() < 1.0 {
                self.target = Self::point(&mut self.rng, self.home, self.radius_m);
                continue;
            }
            let d = leg.abs().min(left);
            left -= d;
            let sgn = leg.signum();
            if horizontal {
                self.pos.1 += sgn * d / kx;
                self.heading = if sgn > 0.0 { 90.0 } else { 270.0 };
            } else {
                self.pos.0 += sgn * d / M_PER_DEG_LAT;
                self.heading = if sgn > 0.0 { 0.0 } else { 180.0 };
            }
        }
        (self.pos.0, self.pos.1, self.speed_kmh, self.heading)
    }
}

/// One simulated terminal.
#[derive(Debug, Clone)]
pub struct TerminalSpec {
    /// Phone number (the terminal id in every header).
    pub phone: u64,
    /// Plate it registers with.
    pub plate: String,
    /// Its route.
    pub route: Route,
}

/// One simulated phone app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Login.
    pub username: String,
    /// Password.
    pub password: String,
    /// Its route.
    pub route: Route,
}

/// Counters of a simulation.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Terminals authenticated.
    pub authenticated: AtomicU64,
    /// Location reports sent.
    pub reports: AtomicU64,
    /// Terminals refused (registration or authentication).
    pub refused: AtomicU64,
    /// App positions accepted.
    pub app_accepted: AtomicU64,
    /// Connection failures.
    pub errors: AtomicU64,
}

fn bcd_now_gmt8(ms: i64) -> [u8; 6] {
    let t = chrono::DateTime::from_timestamp_millis(ms + 8 * 3_600_000).unwrap_or_default();
    let v = [
        (t.year() % 100) as u8,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    ];
    v.map(|x| ((x / 10) << 4) | (x % 10))
}

/// The 0x0200 body of a fix.
pub fn location_body(
    lat: f64,
    lon: f64,
    speed_kmh: f64,
    heading: f64,
    alarm: u32,
    time_ms: i64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&alarm.to_be_bytes());
    b.extend_from_slice(&0x0000_0002u32.to_be_bytes());
    b.extend_from_slice(&((lat * 1e6).round() as u32).to_be_bytes());
    b.extend_from_slice(&((lon * 1e6).round() as u32).to_be_bytes());
    b.extend_from_slice(&5u16.to_be_bytes());
    b.extend_from_slice(&((speed_kmh * 10.0) as u16).to_be_bytes());
    b.extend_from_slice(&(heading as u16).to_be_bytes());
    b.extend_from_slice(&bcd_now_gmt8(time_ms));
    b.extend_from_slice(&[0x30, 1, 25, 0x31, 1, 12]);
    b
}

/// The 0x0100 body (2013 layout).
pub fn register_body(plate: &str, terminal_id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&31u16.to_be_bytes());
    b.extend_from_slice(&100u16.to_be_bytes());
    let mut fixed = |s: &str, n: usize| {
        let mut v = s.as_bytes().to_vec();
        v.resize(n, 0);
        b.extend_from_slice(&v);
    };
    fixed("SHSIM", 5);
    fixed("SH-T808", 20);
    fixed(terminal_id, 7);
    b.push(2);
    b.extend_from_slice(&to_gbk(plate));
    b
}

struct Conn {
    stream: TcpStream,
    deframer: Deframer,
    phone: String,
    serial: u16,
    buf: Vec<u8>,
}

impl Conn {
    async fn send(&mut self, id: u16, body: &[u8]) -> std::io::Result<u16> {
        self.serial = self.serial.wrapping_add(1);
        let bytes = frame::encode(&Header::encode(
            id,
            Version::V2013,
            &self.phone,
            self.serial,
            body,
        ));
        self.stream.write_all(&bytes).await?;
        Ok(self.serial)
    }

    async fn next(&mut self) -> std::io::Result<(Header, Vec<u8>)> {
        loop {
            if let Some(f) = self.deframer.next_frame() {
                if let Ok(f) = f {
                    if let Ok((h, body)) = Header::parse(&f) {
                        return Ok((h.clone(), body.to_vec()));
                    }
                }
                continue;
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed by the server",
                ));
            }
            self.deframer.push(&self.buf[..n]);
        }
    }

    async fn expect(&mut self, id: u16) -> std::io::Result<Vec<u8>> {
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (h, body) = self.next().await?;
                if h.msg_id == id {
                    return Ok(body);
                }
            }
        })
        .await;
        r.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer",
            ))
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Register terminal `phone` once (0x0100 with `terminal_id`) and hang up without
/// authenticating: the registration result (0 = registered, 3 = the vehicle already has a
/// terminal). The demo uses it for a terminal that was later replaced.
pub async fn register_once(
    addr: SocketAddr,
    phone: u64,
    plate: &str,
    terminal_id: &str,
) -> std::io::Result<u8> {
    let stream = TcpStream::connect(addr).await?;
    let mut c = Conn {
        stream,
        deframer: Deframer::new(),
        phone: phone.to_string(),
        serial: 0,
        buf: vec![0; 2048],
    };
    c.send(message::REGISTER, &register_body(plate, terminal_id))
        .await?;
    let body = c.expect(message::REGISTER_RESPONSE).await?;
    body.get(2)
        .copied()
        .ok_or_else(|| std::io::Error::other("short registration answer"))
}

/// Run one terminal until `stop`: connect, register, authenticate, report every `interval`.
/// Reconnects after errors (with a pause), like a real terminal.
pub async fn run_terminal(
    mut spec: TerminalSpec,
    addr: SocketAddr,
    interval: Duration,
    stats: Arc<SimStats>,
    hook: Option<SentHook>,
    mut stop: watch::Receiver<bool>,
) {
    let mut code: Option<String> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let r = terminal_session(
            &mut spec,
            addr,
            interval,
            &stats,
            hook.as_ref(),
            &mut stop,
            &mut code,
        )
        .await;
        if *stop.borrow() {
            return;
        }
        if let Err(e) = r {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(phone = spec.phone, error = %e, "simulated terminal: reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn terminal_session(
    spec: &mut TerminalSpec,
    addr: SocketAddr,
    interval: Duration,
    stats: &SimStats,
    hook: Option<&SentHook>,
    stop: &mut watch::Receiver<bool>,
    code: &mut Option<String>,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        deframer: Deframer::new(),
        phone: spec.phone.to_string(),
        serial: 0,
        buf: vec![0; 2048],
    };
    if code.is_none() {
        let tid = format!("{:07}", spec.phone % 10_000_000);
        c.send(message::REGISTER, &register_body(&spec.plate, &tid))
            .await?;
        let body = c.expect(message::REGISTER_RESPONSE).await?;
        if body.get(2) != Some(&0) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "registration refused (result {:?})",
                body.get(2)
            )));
        }
        *code = Some(String::from_utf8_lossy(&body[3..]).into_owned());
    }
    let auth_serial = c
        .send(message::AUTH, code.as_deref().unwrap_or("").as_bytes())
        .await?;
    loop {
        let body = c.expect(message::PLATFORM_RESPONSE).await?;
        if body.len() >= 5 && u16::from_be_bytes([body[0], body[1]]) == auth_serial {
            if body[4] != 0 {
                *code = None;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::Error::other("authentication refused"));
            }
            break;
        }
    }
    stats.authenticated.fetch_add(1, Ordering::Relaxed);
    let mut every = interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let dt = last.elapsed().as_secs_f64();
                last = Instant::now();
                let (lat, lon, v, hd) = spec.route.step(dt);
                let t = now_ms();
                c.send(message::LOCATION, &location_body(lat, lon, v, hd, 0, t)).await?;
                if let Some(h) = hook {
                    h(spec.phone, t.div_euclid(1000), Instant::now());
                }
                stats.reports.fetch_add(1, Ordering::Relaxed);
            }
            r = c.next() => {
                let (h, body) = r?;
                match h.msg_id {
                    message::QUERY_POSITION => {
                        let (lat, lon, v, hd) = spec.route.step(0.0);
                        let mut b = h.serial.to_be_bytes().to_vec();
                        b.extend(location_body(lat, lon, v, hd, 0, now_ms()));
                        c.send(message::QUERY_POSITION_RESPONSE, &b).await?;
                    }
                    message::TRACK_POSITION if body.len() >= 6 => {
                        let s = u16::from_be_bytes([body[0], body[1]]);
                        let ack = message::platform_response(h.serial, h.msg_id, 0);
                        c.send(message::TERMINAL_RESPONSE, &ack).await?;
                        let new = if s == 0 { interval } else { Duration::from_secs(u64::from(s)) };
                        if new != every {
                            every = new;
                            tick = tokio::time::interval(every);
                        }
                    }
                    _ => {}
                }
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Run one phone app until `stop`: log in, then send a position every `interval` over the
/// dispatch WebSocket.
pub async fn run_app(
    mut spec: AppSpec,
    http: String,
    interval: Duration,
    stats: Arc<SimStats>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let r = app_session(&mut spec, &http, interval, &stats, &mut stop).await;
        if *stop.borrow() {
            return;
        }
        if let Err(e) = r {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(user = %spec.username, error = %e, "simulated app: reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn app_session(
    spec: &mut AppSpec,
    http: &str,
    interval: Duration,
    stats: &SimStats,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{http}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": spec.username, "password": spec.password}))
        .send()
        .await?;
    if !r.status().is_success() {
        anyhow::bail!("login of {} failed: {}", spec.username, r.status());
    }
    let token = r.json::<serde_json::Value>().await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ws_url = format!(
        "{}/api/v1/dispatch/ws?token={token}",
        http.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let mut tick = tokio::time::interval(interval);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (lat, lon, v, hd) = spec.route.step(last.elapsed().as_secs_f64());
                last = Instant::now();
                let msg = serde_json::json!({"type": "positions", "positions": [{
                    "time": crate::clock::rfc3339(now_ms()), "lat": lat, "lon": lon,
                    "speed_kmh": v, "heading_deg": hd, "accuracy_m": 8.0}]});
                ws.send(tokio_tungstenite::tungstenite::Message::Text(msg.to_string().into())).await?;
            }
            m = ws.next() => match m {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "positions_ack" {
                        stats.app_accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    } else if v["type"] == "error" {
                        anyhow::bail!("server said {}", v["message"]);
                    }
                }
                Some(Ok(_)) => {}
                _ => anyhow::bail!("WebSocket closed"),
            },
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// `shouhu simulate` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// JT/T 808 server address.
    #[arg(long, default_value = "127.0.0.1:7611")]
    pub jt808: SocketAddr,
    /// HTTP base URL of the server (for app clients and provisioning).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// Number of JT/T 808 terminals.
    #[arg(long, default_value_t = 20)]
    pub terminals: u64,
    /// Phone number of the first terminal; the others follow.
    #[arg(long, default_value_t = 13_900_000_000)]
    pub phone_base: u64,
    /// Seconds between a terminal's reports.
    #[arg(long, default_value_t = 1.0)]
    pub interval_s: f64,
    /// App clients: accounts `<app-user>1` … `<app-user>N` (bound to officers).
    #[arg(long, default_value_t = 0)]
    pub apps: u64,
    /// Prefix of the app accounts.
    #[arg(long, default_value = "app")]
    pub app_user: String,
    /// Password of the app accounts.
    #[arg(long, default_value = "Shouhu@2026")]
    pub app_password: String,
    /// Register the terminals as vehicles first (needs an account with device.manage).
    #[arg(long)]
    pub provision_user: Option<String>,
    /// Password of the provisioning account.
    #[arg(long, default_value = "Shouhu@2026")]
    pub provision_password: String,
    /// Centre of the area, `lon,lat`.
    #[arg(long, default_value = "121.4737,31.2304", value_parser = parse_lonlat)]
    pub center: (f64, f64),
    /// Radius of the area, metres.
    #[arg(long, default_value_t = 8000.0)]
    pub radius_m: f64,
    /// Stop after this many seconds (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_s: u64,
    /// GB/T 28181 recorders (over SIP/UDP).
    #[arg(long, default_value_t = 0)]
    pub recorders: u64,
    /// The platform's SIP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub sip: SocketAddr,
    /// Device id of the first recorder; the others follow.
    #[arg(long, default_value = "34020000001320000001")]
    pub recorder_base: String,
    /// SIP password of the recorders (set on each when provisioning).
    #[arg(long, default_value = "Recorder#2026")]
    pub recorder_password: String,
    /// The platform's SIP id.
    #[arg(long, default_value = "34020000002000000001")]
    pub platform_id: String,
    /// The SIP domain.
    #[arg(long, default_value = "3402000000")]
    pub domain: String,
    /// Seconds between a recorder's keepalives.
    #[arg(long, default_value_t = 60)]
    pub keepalive_s: u64,
    /// Video codec the recorders send: `h264` or `h265`.
    #[arg(long, default_value = "h264", value_parser = parse_video)]
    pub video: shouhu_media::ps::Codec,
    /// Video bit rate, kbit/s.
    #[arg(long, default_value_t = 800)]
    pub bitrate_kbps: u32,
    /// Audio the recorders send: `g711a`, `g711u`, `aac` or `none`.
    #[arg(long, default_value = "g711a")]
    pub audio: String,
}

fn parse_video(s: &str) -> Result<shouhu_media::ps::Codec, String> {
    match s.to_ascii_lowercase().as_str() {
        "h264" | "avc" => Ok(shouhu_media::ps::Codec::H264),
        "h265" | "hevc" => Ok(shouhu_media::ps::Codec::H265),
        _ => Err(format!("unknown video codec {s:?}: h264 or h265")),
    }
}

fn parse_audio(s: &str) -> Result<Option<shouhu_media::ps::Codec>, String> {
    match s.to_ascii_lowercase().as_str() {
        "g711a" | "pcma" => Ok(Some(shouhu_media::ps::Codec::G711A)),
        "g711u" | "pcmu" => Ok(Some(shouhu_media::ps::Codec::G711U)),
        "aac" => Ok(Some(shouhu_media::ps::Codec::Aac)),
        "none" => Ok(None),
        _ => Err(format!(
            "unknown audio codec {s:?}: g711a, g711u, aac or none"
        )),
    }
}

/// Device ids of `n` recorders from `base` (a 20-digit id; the last 7 digits count up).
pub fn recorder_ids(base: &str, n: u64) -> anyhow::Result<Vec<String>> {
    if base.len() != 20 || !base.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("--recorder-base must be a 20-digit device id");
    }
    let start: u64 = base[13..].parse()?;
    if start + n > 10_000_000 {
        anyhow::bail!("--recorder-base leaves room for fewer than {n} recorders");
    }
    Ok((0..n)
        .map(|i| format!("{}{:07}", &base[..13], start + i))
        .collect())
}

fn parse_lonlat(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(',').ok_or("expected lon,lat")?;
    let lon: f64 = a.trim().parse().map_err(|_| "bad longitude")?;
    let lat: f64 = b.trim().parse().map_err(|_| "bad latitude")?;
    Ok((lat, lon))
}

async fn provision(args: &SimulateArgs) -> anyhow::Result<()> {
    let Some(user) = &args.provision_user else {
        return Ok(());
    };
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{}/api/v1/auth/login", args.http))
        .json(&serde_json::json!({"username": user, "password": args.provision_password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default();
    let org = login["account"]["org_unit_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for id in recorder_ids(&args.recorder_base, args.recorders)? {
        let r = client
            .post(format!("{}/api/v1/recorders", args.http))
            .bearer_auth(token)
            .json(&serde_json::json!({"device_id": id, "name": format!("模拟记录仪{}", &id[14..]), "org_unit_id": org, "password": args.recorder_password}))
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            anyhow::bail!(
                "provisioning recorder {id}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    for i in 0..args.terminals {
        let phone = args.phone_base + i;
        let r = client
            .post(format!("{}/api/v1/vehicles", args.http))
            .bearer_auth(token)
            .json(&serde_json::json!({"plate": format!("沪A·S{:04}", i % 10_000), "org_unit_id": org, "terminal_phone": phone.to_string()}))
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            anyhow::bail!(
                "provisioning terminal {phone}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Terminals and apps for `args`, deterministic.
pub fn plan(args: &SimulateArgs) -> (Vec<TerminalSpec>, Vec<AppSpec>) {
    let mut rng = StdRng::seed_from_u64(808);
    let terminals = (0..args.terminals)
        .map(|i| TerminalSpec {
            phone: args.phone_base + i,
            plate: format!("沪A·S{:04}", i % 10_000),
            route: Route::new(
                args.center,
                args.radius_m,
                rng.gen_range(20.0..50.0),
                args.phone_base + i,
            ),
        })
        .collect();
    let apps = (1..=args.apps)
        .map(|i| AppSpec {
            username: format!("{}{i}", args.app_user),
            password: args.app_password.clone(),
            route: Route::new(
                args.center,
                args.radius_m / 4.0,
                rng.gen_range(3.0..6.0),
                10_000 + i,
            ),
        })
        .collect();
    (terminals, apps)
}

/// Where and how often simulated units report.
#[derive(Debug, Clone)]
pub struct SimTarget {
    /// JT/T 808 server.
    pub jt808: SocketAddr,
    /// HTTP base URL (apps).
    pub http: String,
    /// Between a terminal's reports.
    pub interval: Duration,
    /// Between an app's reports.
    pub app_interval: Duration,
}

/// Start every simulated unit in the background; they stop when `stop` turns true.
pub fn start(
    terminals: Vec<TerminalSpec>,
    apps: Vec<AppSpec>,
    target: &SimTarget,
    hook: Option<SentHook>,
    stop: watch::Receiver<bool>,
) -> Arc<SimStats> {
    let stats = Arc::new(SimStats::default());
    for t in terminals {
        tokio::spawn(run_terminal(
            t,
            target.jt808,
            target.interval,
            stats.clone(),
            hook.clone(),
            stop.clone(),
        ));
    }
    for a in apps {
        tokio::spawn(run_app(
            a,
            target.http.clone(),
            target.app_interval,
            stats.clone(),
            stop.clone(),
        ));
    }
    stats
}

/// `shouhu simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    provision(&args).await?;
    let (terminals, apps) = plan(&args);
    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = Duration::from_secs_f64(args.interval_s.max(0.05));
    let target = SimTarget {
        jt808: args.jt808,
        http: args.http.clone(),
        interval,
        app_interval: interval * 3,
    };
    let stats = start(terminals, apps, &target, None, stop_rx.clone());
    let mut rng = StdRng::seed_from_u64(28181);
    let recorders: Vec<crate::simulate_gb::RecorderSpec> =
        recorder_ids(&args.recorder_base, args.recorders)?
            .into_iter()
            .enumerate()
            .map(|(i, device_id)| crate::simulate_gb::RecorderSpec {
                device_id,
                password: args.recorder_password.clone(),
                route: Route::new(
                    args.center,
                    args.radius_m / 4.0,
                    rng.gen_range(3.0..6.0),
                    20_000 + i as u64,
                ),
                media: None,
            })
            .collect();
    let gb = crate::simulate_gb::start(
        recorders,
        &crate::simulate_gb::GbTarget {
            sip: args.sip,
            platform_id: args.platform_id.clone(),
            domain: args.domain.clone(),
            keepalive: Duration::from_secs(args.keepalive_s.max(1)),
            position: interval * 5,
            expires_secs: 3600,
            media: crate::simulate_gb::MediaProfile {
                video: args.video,
                bitrate_kbps: args.bitrate_kbps.clamp(50, 20_000),
                audio: parse_audio(&args.audio).map_err(|e| anyhow::anyhow!("--audio: {e}"))?,
                ..Default::default()
            },
            drop_first_download: false,
        },
        stop_rx,
    );
    let started = Instant::now();
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = report.tick() => {
                println!(
                    "{:>6.0} s: {} terminals authenticated, {} refused, {} reports, {} app positions, {} connection errors",
                    started.elapsed().as_secs_f64(),
                    stats.authenticated.load(Ordering::Relaxed),
                    stats.refused.load(Ordering::Relaxed),
                    stats.reports.load(Ordering::Relaxed),
                    stats.app_accepted.load(Ordering::Relaxed),
                    stats.errors.load(Ordering::Relaxed),
                );
                if args.recorders > 0 {
                    println!(
                        "        recorders: {} registered, {} refused, {} keepalives, {} positions, {} queries answered, {} errors",
                        gb.registered.load(Ordering::Relaxed),
                        gb.refused.load(Ordering::Relaxed),
                        gb.keepalives.load(Ordering::Relaxed),
                        gb.positions.load(Ordering::Relaxed),
                        gb.queries.load(Ordering::Relaxed),
                        gb.errors.load(Ordering::Relaxed),
                    );
                }
                if args.duration_s > 0 && started.elapsed().as_secs() >= args.duration_s {
                    break;
                }
            }
            _ = crate::server::shutdown_signal() => break,
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_move_at_their_speed_and_stay_near_home() {
        let mut r = Route::new((31.23, 121.47), 2000.0, 36.0, 7);
        let (mut lat, mut lon, ..) = r.step(0.0);
        for _ in 0..600 {
            let (la, lo, ..) = r.step(1.0);
            let d = shouhu_dispatch::geodesy::haversine_m(lat, lon, la, lo);
            // The route moves in a local projection; haversine differs by well under 0.1 %.
            assert!(d <= 10.01, "36 km/h is 10 m/s, moved {d}");
            lat = la;
            lon = lo;
            assert!(shouhu_dispatch::geodesy::haversine_m(31.23, 121.47, la, lo) < 2900.0);
        }
    }

    #[test]
    fn bodies_decode_with_our_codec() {
        let b = location_body(31.2304, 121.4737, 36.5, 90.0, 1, 1_795_000_000_000);
        let r = shouhu_media::jt808::location::LocationReport::parse(&b).unwrap();
        assert_eq!((r.lat_e6, r.lon_e6, r.alarm), (31_230_400, 121_473_700, 1));
        assert_eq!(r.time_ms, 1_795_000_000_000);
    }
}

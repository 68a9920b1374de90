//! JT/T 808 identity end to end (issue 19, items 1, 6 and 7): the real binary (demo data, no
//! simulation), terminals speaking raw frames over TCP. The legitimate terminal connects from
//! 127.0.0.1, the attacker from 127.0.0.2.
//!
//! * Re-registration with a vehicle's number is refused (result 3) and recorded for the device
//!   managers; the vehicle keeps its terminal, its position and its commands; an operator's
//!   re-bind names the one attempt it approves (terminal id and source IP): only that terminal
//!   gets the new code; the attacker's registrations during the window are refused.
//!   (Also on PostgreSQL, with a vehicle entered through the API.)
//! * One source address cannot hold every connection slot with idle connections.
//! * Open registration creates few vehicles a minute per source address.
//! * Re-binding, changing the terminal phone, disabling or deleting a vehicle closes its old
//!   terminal's authenticated link.
//! * A terminal that reconnects and authenticates takes over its half-open connection.
//! * Frames before authentication are limited per connection and per source address.
//! * Terminal phones only for roles that manage devices.
//! * A terminal registering by itself (open registration) and a vehicle created through the API
//!   are live at once.
//! * A location whose additional item overruns the body keeps its fix.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use shouhu_e2e::{run_ok, shouhu, Running};
use shouhu_media::jt808::frame::{self, Deframer};
use shouhu_media::jt808::header::{Header, Version};
use shouhu_media::jt808::message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMsg;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

const PW: &str = "Shouhu@2026";
/// Demo terminals: three per district, Huangpu first.
const HUANGPU_1: u64 = 13_900_000_000;
const HUANGPU_2: u64 = 13_900_000_001;
const HUANGPU_3: u64 = 13_900_000_002;
const DEVICE_IP: &str = "127.0.0.1";
const ATTACKER_IP: &str = "127.0.0.2";

struct Demo {
    run: Running,
    http: String,
    jt808: String,
    _dir: tempfile::TempDir,
}

fn demo(env: &[(&str, &str)]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    c.args(["demo", "--enterprises", "30", "--no-simulation"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let jt808 = run
        .jt808
        .clone()
        .expect("JT/T 808 listener address in the log");
    Demo {
        run,
        http,
        jt808,
        _dir: dir,
    }
}

/// The demo data seeded, then `shouhu serve` on it with open JT/T 808 registration (the open
/// registration's org unit must exist when the server starts).
fn served_with_open_registration(env: &[(&str, &str)]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = shouhu(dir.path());
    seed.args(["demo", "--enterprises", "30", "--seed-only"]);
    run_ok(seed);
    let mut c = shouhu(&dir.path().join("demo"));
    c.arg("serve")
        .env("SHOUHU__JT808__OPEN_REGISTRATION", "true");
    for (k, v) in env {
        c.env(k, v);
    }
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let jt808 = run
        .jt808
        .clone()
        .expect("JT/T 808 listener address in the log");
    Demo {
        run,
        http,
        jt808,
        _dir: dir,
    }
}

/// Device time of the next fix: now, and always a second after the last one (fixes of one
/// unit must move forward in time to count as live).
fn next_fix_ms() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_ms();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let t = now.max(last + 1000);
        match LAST.compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return t,
            Err(l) => last = l,
        }
    }
}

async fn login(http: &str, user: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().expect("token").to_string()
}

async fn get(http: &str, token: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{http}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn post(http: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{http}/api/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Wait until `f` holds, for at most 10 s.
async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

/// A JT/T 808 terminal speaking 2013 frames from a chosen source address.
struct Term {
    s: TcpStream,
    d: Deframer,
    phone: String,
    serial: u16,
}

impl Term {
    async fn connect_from(ip: &str, addr: &str, phone: u64) -> Term {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
        let s = sock.connect(addr.parse().unwrap()).await.unwrap();
        assert_eq!(s.local_addr().unwrap().ip().to_string(), ip);
        Term {
            s,
            d: Deframer::new(),
            phone: phone.to_string(),
            serial: 0,
        }
    }

    async fn device(addr: &str, phone: u64) -> Term {
        Self::connect_from(DEVICE_IP, addr, phone).await
    }

    async fn attacker(addr: &str, phone: u64) -> Term {
        Self::connect_from(ATTACKER_IP, addr, phone).await
    }

    fn frame(&mut self, id: u16, body: &[u8]) -> Vec<u8> {
        self.serial += 1;
        frame::encode(&Header::encode(
            id,
            Version::V2013,
            &self.phone,
            self.serial,
            body,
        ))
    }

    /// Send; false when the server has closed the connection.
    async fn send(&mut self, id: u16, body: &[u8]) -> u16 {
        let f = self.frame(id, body);
        let _ = self.s.write_all(&f).await;
        self.serial
    }

    /// The next platform message, or None when the server closed the connection.
    async fn recv(&mut self) -> Option<(u16, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(f)) = self.d.next_frame() {
                let (h, body) = Header::parse(&f).unwrap();
                return Some((h.msg_id, body.to_vec()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.d.push(&buf[..n]),
                Err(_) => panic!(
                    "terminal {}: no message from the server in 10 s",
                    self.phone
                ),
            }
        }
    }

    /// The answer to `serial` (0x8001 result, or 0x8100 result and code), skipping others.
    async fn answer(&mut self, serial: u16) -> Option<(u16, u8, Vec<u8>)> {
        loop {
            let (id, body) = self.recv().await?;
            if body.len() >= 3 && u16::from_be_bytes([body[0], body[1]]) == serial {
                return Some(match id {
                    message::REGISTER_RESPONSE => (id, body[2], body[3..].to_vec()),
                    _ => (id, body[4], Vec::new()),
                });
            }
        }
    }

    /// Register: the 0x8100 result and the code.
    async fn register(&mut self, terminal_id: &str) -> (u8, Vec<u8>) {
        let serial = self
            .send(message::REGISTER, &body::register(terminal_id))
            .await;
        let (id, result, code) = self.answer(serial).await.expect("register answer");
        assert_eq!(id, message::REGISTER_RESPONSE);
        (result, code)
    }

    /// Authenticate: the 0x8001 result.
    async fn auth(&mut self, code: &[u8]) -> u8 {
        let serial = self.send(message::AUTH, code).await;
        let (id, result, _) = self.answer(serial).await.expect("auth answer");
        assert_eq!(id, message::PLATFORM_RESPONSE);
        result
    }

    /// Register and authenticate; the code.
    async fn login(&mut self, terminal_id: &str) -> Vec<u8> {
        let (r, code) = self.register(terminal_id).await;
        assert_eq!(r, 0, "registration of {} refused", self.phone);
        assert_eq!(self.auth(&code).await, 0);
        code
    }

    /// Report a fix; the result of the general response.
    async fn report(&mut self, lat: f64, lon: f64, alarm: u32) -> u8 {
        self.report_body(body::location(lat, lon, alarm, next_fix_ms()))
            .await
    }

    async fn report_body(&mut self, b: Vec<u8>) -> u8 {
        let serial = self.send(message::LOCATION, &b).await;
        self.answer(serial).await.expect("location answer").1
    }

    /// Whether the server closed this connection (reading until EOF, 10 s at most).
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Message bodies built by hand, as a terminal would.
mod body {
    pub fn register(terminal_id: &str) -> Vec<u8> {
        let mut b = vec![0, 31, 0, 100];
        b.extend_from_slice(b"TEST\0");
        let mut model = b"E2E-808".to_vec();
        model.resize(20, 0);
        b.extend_from_slice(&model);
        let mut tid = terminal_id.as_bytes().to_vec();
        tid.resize(7, 0);
        b.extend_from_slice(&tid);
        b.push(1);
        b.extend_from_slice(&shouhu_media::jt808::to_gbk("沪A·T0001"));
        b
    }

    pub fn location(lat: f64, lon: f64, alarm: u32, t_ms: i64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&alarm.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&((lat * 1e6).round() as u32).to_be_bytes());
        b.extend_from_slice(&((lon * 1e6).round() as u32).to_be_bytes());
        b.extend_from_slice(&[0, 4, 1, 44, 0, 90]);
        b.extend_from_slice(&bcd_time(t_ms + 8 * 3_600_000));
        b
    }

    /// YYMMDDhhmmss BCD of a UTC+8 millisecond time.
    fn bcd_time(ms: i64) -> [u8; 6] {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let v = [y % 100, m, d, sod / 3600, sod % 3600 / 60, sod % 60];
        v.map(|x| (((x / 10) << 4) | (x % 10)) as u8)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The unit of a terminal, looked up as a device manager (`token`): only roles that manage
/// devices may filter by terminal phone.
async fn unit_of(http: &str, token: &str, phone: u64) -> Option<Value> {
    let v = get(http, token, &format!("/units?terminal={phone}")).await;
    v["items"].as_array().and_then(|a| a.first().cloned())
}

async fn unit_lat(http: &str, token: &str, id: &str) -> Option<f64> {
    get(http, token, &format!("/units/{id}")).await["lat"].as_f64()
}

/// The id of the refused attempt of `terminal_id` from `ip` for vehicle `id`, as listed for a
/// device manager.
async fn attempt_of(http: &str, manager: &str, id: &str, terminal_id: &str, ip: &str) -> String {
    let pending = get(http, manager, "/vehicles/rebinds").await;
    let p = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vehicle_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("vehicle {id} not listed: {pending}"));
    p["recent_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["terminal_id"] == terminal_id && a["source_ip"] == ip)
        .unwrap_or_else(|| panic!("no attempt of {terminal_id} from {ip}: {p}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn put(http: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(format!("{http}/api/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn audit_count(http: &str, admin: &str, action: &str) -> i64 {
    get(http, admin, &format!("/audit?action={action}")).await["total"]
        .as_i64()
        .unwrap_or(0)
}

async fn ws(http: &str, token: &str) -> Ws {
    let url = format!(
        "{}/api/v1/dispatch/ws?token={token}",
        http.replacen("http", "ws", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Read WebSocket messages until a unit `id` shows at `lat`, for at most 10 s.
async fn ws_sees(w: &mut Ws, id: &str, lat: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, w.next())
            .await
            .unwrap_or_else(|_| panic!("unit {id} at {lat} not on the WebSocket within 10 s"));
        let Some(Ok(WsMsg::Text(t))) = m else {
            assert!(matches!(m, Some(Ok(_))), "WebSocket ended: {m:?}");
            continue;
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        let seen = matches!(v["type"].as_str(), Some("snapshot" | "units"))
            .then(|| v["units"].as_array())
            .flatten()
            .and_then(|a| a.iter().find(|u| u["id"] == id && u["lat"] == lat));
        if let Some(u) = seen {
            assert!(
                u["terminal"].is_null(),
                "terminal phone on the WebSocket: {u}"
            );
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registration_is_refused_until_an_operator_releases_the_vehicle() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let manager = login(&d.http, "hp_head").await;
    let admin = login(&d.http, "admin").await;
    let unit = unit_of(&d.http, &admin, HUANGPU_1)
        .await
        .expect("demo unit");
    let id = unit["id"].as_str().unwrap().to_string();

    // The vehicle's terminal registers (first registration) and reports.
    let mut dev = Term::device(&d.jt808, HUANGPU_1).await;
    let code = dev.login("DEV0001").await;
    assert_eq!(dev.report(31.2305, 121.4801, 0).await, 0);
    wait_for("the device's fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2305)
    })
    .await;

    // The attack: another address registers with the vehicle's number.
    let mut evil = Term::attacker(&d.jt808, HUANGPU_1).await;
    let (result, evil_code) = evil.register("EVIL001").await;
    assert_eq!(result, 3, "terminal already registered");
    assert!(evil_code.is_empty(), "no auth code for the attacker");
    // Guessing codes gets nowhere; neither do its positions.
    assert_eq!(evil.auth(b"AAAAAAAAAAAAAAAA").await, 1);
    assert_eq!(evil.report(31.0, 121.0, 1).await, 1);
    // Still the device's vehicle: its terminal id, its fix, no SOS; commands go to the device.
    let v = get(&d.http, &manager, &format!("/vehicles/{id}")).await;
    assert_eq!(v["terminal_id"], "DEV0001");
    assert_eq!(unit_lat(&d.http, &op, &id).await, Some(31.2305));
    assert_eq!(
        get(&d.http, &op, &format!("/units/{id}")).await["sos"],
        false
    );
    let (s, _) = post(&d.http, &op, &format!("/units/{id}/locate"), json!({})).await;
    assert_eq!(s, 202);
    let (mid, _) = dev.recv().await.expect("the device gets the query");
    assert_eq!(mid, message::QUERY_POSITION);
    // The device goes on.
    assert_eq!(dev.report(31.2311, 121.4811, 0).await, 0);
    wait_for("the device's next fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2311)
    })
    .await;
    drop(evil);

    // Device managers see who tried, when and from where; others see no terminal phones.
    let pending = get(&d.http, &manager, "/vehicles/rebinds").await;
    let p = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vehicle_id"] == id.as_str())
        .cloned()
        .expect("the refused attempt is listed");
    assert!(
        p["attempt_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{p}"
    );
    assert_eq!(p["attempts"], 1);
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/vehicles/rebinds", d.http))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let ops_view = get(&d.http, &op, "/vehicles").await;
    assert!(ops_view["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v.get("terminal_phone").is_none()));
    assert!(get(&d.http, &op, &format!("/vehicles/{id}"))
        .await
        .get("terminal_phone")
        .is_none());
    // Nor in the live units: not in the operator's view, not as a filter (which would confirm a
    // guessed number); a device manager sees and filters by it.
    assert!(get(&d.http, &op, &format!("/units/{id}")).await["terminal"].is_null());
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/units?terminal={HUANGPU_1}", d.http))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&d.http, &admin, &format!("/units/{id}")).await["terminal"],
        HUANGPU_1.to_string()
    );
    assert_eq!(
        get(&d.http, &manager, &format!("/vehicles/{id}")).await["terminal_phone"],
        HUANGPU_1.to_string()
    );
    assert_eq!(
        audit_count(&d.http, &admin, "vehicle.terminal_register_refused").await,
        1
    );

    // The legitimate road: the terminal is replaced; its registration is refused and listed; a
    // device manager approves that attempt and the new terminal registers once, with a new
    // code; the old code stops working.
    let mut replaced = Term::device(&d.jt808, HUANGPU_1).await;
    assert_eq!(replaced.register("DEV0002").await.0, 3);
    let attempt = attempt_of(&d.http, &manager, &id, "DEV0002", DEVICE_IP).await;
    let (s, r) = post(
        &d.http,
        &op,
        &format!("/vehicles/{id}/rebind"),
        json!({"attempt_id": attempt}),
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = post(
        &d.http,
        &manager,
        &format!("/vehicles/{id}/rebind"),
        json!({"attempt_id": attempt}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(r["released_until_ms"].as_i64().unwrap() > now_ms());
    let (result, new_code) = replaced.register("DEV0002").await;
    assert_eq!(result, 0);
    assert_ne!(new_code, code);
    assert_eq!(replaced.auth(&new_code).await, 0);
    assert_eq!(replaced.report(31.2322, 121.4822, 0).await, 0);
    wait_for("the replaced terminal's fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2322)
    })
    .await;
    assert!(dev.closed().await, "the old terminal's link is closed");
    let mut old = Term::device(&d.jt808, HUANGPU_1).await;
    assert_eq!(old.auth(&code).await, 1, "the old code is retired");
    // The release was used up.
    let mut again = Term::attacker(&d.jt808, HUANGPU_1).await;
    assert_eq!(again.register("EVIL001").await.0, 3);
    assert_eq!(audit_count(&d.http, &admin, "vehicle.rebind").await, 1);
    assert_eq!(
        audit_count(&d.http, &admin, "vehicle.terminal_rebind").await,
        1
    );
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_reconnects_takes_over_its_half_open_connection() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let admin = login(&d.http, "admin").await;
    let id = unit_of(&d.http, &admin, HUANGPU_2)
        .await
        .expect("demo unit")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut first = Term::device(&d.jt808, HUANGPU_2).await;
    let code = first.login("DEV0002").await;
    assert_eq!(first.report(31.2305, 121.4801, 0).await, 0);

    // The attacker cannot take the connection over without the code.
    let mut evil = Term::attacker(&d.jt808, HUANGPU_2).await;
    assert_eq!(evil.auth(b"WRONGCODE").await, 1);
    let (s, _) = post(&d.http, &op, &format!("/units/{id}/locate"), json!({})).await;
    assert_eq!(s, 202);
    assert_eq!(
        first.recv().await.expect("still connected").0,
        message::QUERY_POSITION
    );

    // The link drops without a FIN (the old socket stays open on the server); the terminal
    // reconnects and authenticates with its code: the old connection is closed, commands and
    // positions use the new one, and the unit stays online.
    let mut second = Term::device(&d.jt808, HUANGPU_2).await;
    assert_eq!(second.auth(&code).await, 0);
    assert!(first.closed().await, "the old connection is closed");
    let (s, _) = post(&d.http, &op, &format!("/units/{id}/locate"), json!({})).await;
    assert_eq!(s, 202);
    assert_eq!(
        second.recv().await.expect("query").0,
        message::QUERY_POSITION
    );
    assert_eq!(second.report(31.2333, 121.4833, 0).await, 0);
    wait_for("the fix on the new connection", || async {
        let u = get(&d.http, &op, &format!("/units/{id}")).await;
        u["lat"] == 31.2333 && u["link"] == "online"
    })
    .await;
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_authentication_are_limited_per_connection_and_address() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let admin = login(&d.http, "admin").await;

    // Per connection: a few registrations or authentications, then the connection is closed.
    let mut evil = Term::attacker(&d.jt808, HUANGPU_3).await;
    for i in 0..4 {
        assert_eq!(evil.auth(format!("GUESS{i}").as_bytes()).await, 1);
    }
    let serial = evil.send(message::AUTH, b"GUESS4").await;
    assert!(
        evil.answer(serial).await.is_none(),
        "closed after 4 attempts"
    );

    // Registration attempts of an unknown number: audited at most once a minute.
    for _ in 0..3 {
        let mut t = Term::attacker(&d.jt808, 13_700_000_077).await;
        assert_eq!(t.register("EVIL077").await.0, 4);
    }
    assert_eq!(
        audit_count(&d.http, &admin, "vehicle.terminal_register_refused").await,
        1
    );

    // Per address: connection after connection of frames before authentication, until the
    // address's budget is spent and its connections are closed unanswered.
    let mut refused = false;
    for _ in 0..400 {
        let mut t = Term::attacker(&d.jt808, HUANGPU_3).await;
        let mut burst = Vec::new();
        for _ in 0..30 {
            burst.extend(t.frame(message::HEARTBEAT, &[]));
        }
        let _ = t.s.write_all(&burst).await;
        let mut answered = 0;
        while answered < 30 {
            match t.recv().await {
                Some(_) => answered += 1,
                None => break,
            }
        }
        if answered == 0 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the address's budget never ran out");
    // The device, from its own address, is not affected.
    let id = unit_of(&d.http, &admin, HUANGPU_3)
        .await
        .expect("demo unit")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dev = Term::device(&d.jt808, HUANGPU_3).await;
    dev.login("DEV0003").await;
    assert_eq!(dev.report(31.2344, 121.4844, 0).await, 0);
    wait_for("the device's fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2344)
    })
    .await;
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_registering_by_itself_is_live_at_once() {
    let d = served_with_open_registration(&[]);
    let op = login(&d.http, "operator").await;
    let admin = login(&d.http, "admin").await;
    let mut w = ws(&d.http, &op).await;
    const NEW: u64 = 13_700_000_123;
    assert!(unit_of(&d.http, &admin, NEW).await.is_none());

    // A terminal nobody entered registers on the running server: its next fix is on the map.
    let mut t = Term::device(&d.jt808, NEW).await;
    t.login("NEW0123").await;
    let unit = unit_of(&d.http, &admin, NEW)
        .await
        .expect("the new vehicle is a live unit without a restart");
    let id = unit["id"].as_str().unwrap().to_string();
    assert_eq!(t.report(31.2255, 121.4755, 0).await, 0);
    ws_sees(&mut w, &id, 31.2255).await;

    // A vehicle created through the API is live at once too, and its terminal's fixes show.
    let manager = login(&d.http, "hp_head").await;
    let huangpu_1 = unit_of(&d.http, &admin, HUANGPU_1)
        .await
        .expect("demo unit");
    let org = huangpu_1["org_unit_id"].as_str().unwrap().to_string();
    const API: u64 = 13_700_000_456;
    let (s, v) = post(
        &d.http,
        &manager,
        "/vehicles",
        json!({"plate": "沪A·N0456", "org_unit_id": org, "terminal_phone": API.to_string()}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let vid = v["id"].as_str().unwrap().to_string();
    let u = unit_of(&d.http, &admin, API).await.expect("live at once");
    assert_eq!(u["id"], vid.as_str());
    let mut t = Term::device(&d.jt808, API).await;
    t.login("API0456").await;
    assert_eq!(t.report(31.2266, 121.4766, 0).await, 0);
    ws_sees(&mut w, &vid, 31.2266).await;

    // A location whose additional item says 158 bytes with a few left keeps its fix.
    let mut b = body::location(31.2277, 121.4777, 0, next_fix_ms());
    b.extend_from_slice(&[0x01, 4, 0, 0, 0x30, 0x39, 0xeb, 158, 0x00, 0x0c, 0x00, 0xb2]);
    assert_eq!(t.report_body(b).await, 0, "answered with success");
    ws_sees(&mut w, &vid, 31.2277).await;
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lets_only_the_approved_attempt_through() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let manager = login(&d.http, "hp_head").await;
    let admin = login(&d.http, "admin").await;
    let id = unit_of(&d.http, &admin, HUANGPU_1)
        .await
        .expect("demo unit")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dev = Term::device(&d.jt808, HUANGPU_1).await;
    dev.login("DEV0001").await;
    assert_eq!(dev.report(31.2305, 121.4801, 0).await, 0);

    // The attacker keeps registering with the vehicle's number; the replaced terminal tries
    // once from its own address. Both attempts are listed, each on its own.
    for _ in 0..3 {
        let mut evil = Term::attacker(&d.jt808, HUANGPU_1).await;
        assert_eq!(evil.register("EVIL001").await.0, 3);
    }
    let mut new_dev = Term::device(&d.jt808, HUANGPU_1).await;
    assert_eq!(new_dev.register("DEV0002").await.0, 3);
    let mut evil = Term::attacker(&d.jt808, HUANGPU_1).await;
    assert_eq!(evil.register("EVIL001").await.0, 3);
    let evil_attempt = attempt_of(&d.http, &manager, &id, "EVIL001", ATTACKER_IP).await;
    let dev_attempt = attempt_of(&d.http, &manager, &id, "DEV0002", DEVICE_IP).await;
    assert_ne!(evil_attempt, dev_attempt);

    // A release must name the attempt.
    let (s, r) = post(
        &d.http,
        &manager,
        &format!("/vehicles/{id}/rebind"),
        json!({}),
    )
    .await;
    assert_eq!(s, 422, "{r}");
    // The operator approves the device's attempt.
    let (s, r) = post(
        &d.http,
        &manager,
        &format!("/vehicles/{id}/rebind"),
        json!({"attempt_id": dev_attempt}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["released_for"],
        json!({"terminal_id": "DEV0002", "source_ip": DEVICE_IP})
    );

    // During the window the attacker's registrations are refused and get no code: with its
    // own terminal id, and with the device's.
    let (result, code) = evil.register("EVIL001").await;
    assert_eq!((result, code.is_empty()), (3, true));
    let mut evil = Term::attacker(&d.jt808, HUANGPU_1).await;
    let (result, code) = evil.register("DEV0002").await;
    assert_eq!((result, code.is_empty()), (3, true));
    // Still listed, still released for the device.
    let pending = get(&d.http, &manager, "/vehicles/rebinds").await;
    let p = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vehicle_id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(p["released_for"]["terminal_id"], "DEV0002");
    assert_eq!(p["recent_attempts"].as_array().unwrap().len(), 3, "{p}");
    // The old terminal still speaks for the vehicle until the new one registers.
    assert_eq!(dev.report(31.2306, 121.4806, 0).await, 0);

    // The device's registration gets the new code and works; the old terminal's link is
    // closed and what it sends no longer moves the unit.
    let (result, new_code) = new_dev.register("DEV0002").await;
    assert_eq!(result, 0);
    assert!(!new_code.is_empty());
    assert!(dev.closed().await, "the old link is revoked");
    assert_eq!(new_dev.auth(&new_code).await, 0);
    assert_eq!(new_dev.report(31.2308, 121.4808, 0).await, 0);
    wait_for("the new terminal's fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2308)
    })
    .await;
    let _ = dev
        .send(
            message::LOCATION,
            &body::location(31.0, 121.0, 1, next_fix_ms()),
        )
        .await;
    assert_eq!(new_dev.report(31.2309, 121.4809, 0).await, 0);
    wait_for("the new terminal's next fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2309)
    })
    .await;
    assert_eq!(
        get(&d.http, &op, &format!("/units/{id}")).await["sos"],
        false
    );
    // The release audit names the approved attempt.
    let a = get(&d.http, &admin, "/audit?action=vehicle.rebind").await;
    let text = a.to_string();
    assert!(
        text.contains("DEV0002") && text.contains(DEVICE_IP),
        "{text}"
    );
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection_slot() {
    let d = demo(&[("SHOUHU__JT808__MAX_UNAUTHENTICATED_PER_SOURCE", "8")]);
    let op = login(&d.http, "operator").await;
    let admin = login(&d.http, "admin").await;

    // The attacker opens its share of idle connections (no frame at all) ...
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(Term::attacker(&d.jt808, HUANGPU_1).await);
    }
    // ... and more: those are closed at once, unanswered.
    for i in 0..4 {
        let mut t = Term::attacker(&d.jt808, HUANGPU_1).await;
        let _ = t.send(message::HEARTBEAT, &[]).await;
        assert!(
            t.closed().await,
            "connection {} over the cap stays open",
            9 + i
        );
    }
    // A terminal on another address connects, registers and reports.
    let id = unit_of(&d.http, &admin, HUANGPU_1)
        .await
        .expect("demo unit")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dev = Term::device(&d.jt808, HUANGPU_1).await;
    dev.login("DEV0001").await;
    assert_eq!(dev.report(31.2355, 121.4855, 0).await, 0);
    wait_for("the device's fix", || async {
        unit_lat(&d.http, &op, &id).await == Some(31.2355)
    })
    .await;

    // When the idle connections go, the address gets its slots back.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut t = Term::attacker(&d.jt808, HUANGPU_2).await;
        let serial = t.send(message::HEARTBEAT, &[]).await;
        if let Some((_, result, _)) = t.answer(serial).await {
            assert_eq!(result, 1, "a heartbeat before authentication fails");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the address never got its slots back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_disabling_or_deleting_a_vehicle_closes_its_terminals_link() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let manager = login(&d.http, "hp_head").await;
    let admin = login(&d.http, "admin").await;
    let unit_id = |phone: u64| {
        let (http, admin) = (d.http.clone(), admin.clone());
        async move {
            unit_of(&http, &admin, phone).await.expect("demo unit")["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let changed = unit_id(HUANGPU_1).await;
    let disabled = unit_id(HUANGPU_2).await;
    let deleted = unit_id(HUANGPU_3).await;
    let mut a = Term::device(&d.jt808, HUANGPU_1).await;
    let mut b = Term::device(&d.jt808, HUANGPU_2).await;
    let mut c = Term::device(&d.jt808, HUANGPU_3).await;
    for (t, id, tid, lat) in [
        (&mut a, &changed, "DEV0001", 31.2301),
        (&mut b, &disabled, "DEV0002", 31.2302),
        (&mut c, &deleted, "DEV0003", 31.2303),
    ] {
        t.login(tid).await;
        assert_eq!(t.report(lat, 121.48, 0).await, 0);
        wait_for("the fix", || async {
            unit_lat(&d.http, &op, id).await == Some(lat)
        })
        .await;
    }

    // The vehicle's terminal phone changes: the old terminal's link is closed, the unit goes
    // offline, and what the old terminal still sends does not move it.
    let mut v = get(&d.http, &manager, &format!("/vehicles/{changed}")).await;
    let update = |v: &Value, phone: &str, status: &str| {
        json!({"version": v["version"], "plate": v["plate"], "org_unit_id": v["org_unit_id"],
            "terminal_phone": phone, "status": status})
    };
    let (s, r) = put(
        &d.http,
        &manager,
        &format!("/vehicles/{changed}"),
        update(&v, "13700000999", "active"),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(a.closed().await, "the changed vehicle's old link is closed");
    let _ = a
        .send(
            message::LOCATION,
            &body::location(31.0, 121.0, 1, next_fix_ms()),
        )
        .await;
    wait_for("the changed vehicle offline", || async {
        get(&d.http, &op, &format!("/units/{changed}")).await["link"] == "offline"
    })
    .await;
    let u = get(&d.http, &op, &format!("/units/{changed}")).await;
    assert_eq!(
        (u["lat"].as_f64(), &u["sos"]),
        (Some(31.2301), &json!(false))
    );

    // Disabled: the same.
    v = get(&d.http, &manager, &format!("/vehicles/{disabled}")).await;
    let (s, r) = put(
        &d.http,
        &manager,
        &format!("/vehicles/{disabled}"),
        update(&v, &HUANGPU_2.to_string(), "inactive"),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(b.closed().await, "the disabled vehicle's link is closed");
    let mut again = Term::device(&d.jt808, HUANGPU_2).await;
    assert_eq!(again.auth(b"ANYTHING").await, 1);

    // Deleted: the same; its unit is gone.
    let r = reqwest::Client::new()
        .delete(format!("{}/api/v1/vehicles/{deleted}", d.http))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(c.closed().await, "the deleted vehicle's link is closed");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/units/{deleted}", d.http))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The legitimate road: the changed vehicle's new terminal registers and reports.
    let mut new_t = Term::device(&d.jt808, 13_700_000_999).await;
    new_t.login("NEW0999").await;
    assert_eq!(new_t.report(31.2304, 121.4801, 0).await, 0);
    wait_for("the new terminal's fix", || async {
        unit_lat(&d.http, &op, &changed).await == Some(31.2304)
    })
    .await;
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registration_creates_few_vehicles_per_address() {
    let d = served_with_open_registration(&[(
        "SHOUHU__JT808__OPEN_REGISTRATIONS_PER_SOURCE_PER_MIN",
        "3",
    )]);
    let admin = login(&d.http, "admin").await;
    // The attacker registers made-up numbers: three vehicles, then "failed" (result 1).
    for i in 0..3 {
        let mut t = Term::attacker(&d.jt808, 13_700_001_000 + i).await;
        assert_eq!(t.register("EVIL").await.0, 0);
    }
    for i in 3..6 {
        let phone = 13_700_001_000 + i;
        let mut t = Term::attacker(&d.jt808, phone).await;
        let (result, code) = t.register("EVIL").await;
        assert_eq!((result, code.is_empty()), (1, true));
        assert!(unit_of(&d.http, &admin, phone).await.is_none());
    }
    // A known number from that address is not held back by the limit: it is no creation.
    let mut t = Term::attacker(&d.jt808, 13_700_001_000).await;
    assert_eq!(t.register("EVIL").await.0, 3, "already registered");
    // A new terminal on another address registers and is live.
    const NEW: u64 = 13_700_002_000;
    let mut dev = Term::device(&d.jt808, NEW).await;
    dev.login("NEW2000").await;
    assert!(unit_of(&d.http, &admin, NEW).await.is_some());
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lets_only_the_approved_attempt_through_postgres() {
    let admin_url = std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Some(db) = shouhu_e2e::pg::create_database(&admin_url, "t_jt808id").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = shouhu(dir.path());
        c.env("SHOUHU__DATABASE__URL", &db.url).args(args);
        c
    };
    run_ok(cmd(&["migrate"]));
    run_ok(cmd(&[
        "admin",
        "create-user",
        "--username",
        "admin",
        "--password",
        PW,
        "--role",
        "admin",
        "--no-force-change",
    ]));
    let run = Running::start(cmd(&["serve"]), "http");
    let http = run.base.clone();
    let jt808 = run.jt808.clone().expect("JT/T 808 listener address");
    let admin = login(&http, "admin").await;
    let (s, org) = post(
        &http,
        &admin,
        "/org-units",
        json!({"parent_id": null, "kind": "corps", "name": "总队", "code": "JT808PG"}),
    )
    .await;
    assert_eq!(s, 200, "{org}");
    const PHONE: u64 = 13_600_000_001;
    let (s, v) = post(
        &http,
        &admin,
        "/vehicles",
        json!({"plate": "沪A·P0001", "org_unit_id": org["id"], "terminal_phone": PHONE.to_string()}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut dev = Term::device(&jt808, PHONE).await;
    dev.login("DEV0001").await;
    assert_eq!(dev.report(31.2305, 121.4801, 0).await, 0);

    // The attacker keeps registering; the replaced device tries once.
    for _ in 0..2 {
        let mut evil = Term::attacker(&jt808, PHONE).await;
        assert_eq!(evil.register("EVIL001").await.0, 3);
    }
    let mut new_dev = Term::device(&jt808, PHONE).await;
    assert_eq!(new_dev.register("DEV0002").await.0, 3);
    let attempt = attempt_of(&http, &admin, &id, "DEV0002", DEVICE_IP).await;
    let (s, r) = post(
        &http,
        &admin,
        &format!("/vehicles/{id}/rebind"),
        json!({"attempt_id": attempt}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    // The attacker during the window: refused, no code.
    let mut evil = Term::attacker(&jt808, PHONE).await;
    let (result, code) = evil.register("DEV0002").await;
    assert_eq!((result, code.is_empty()), (3, true));
    // The device: a new code that works; the old link is closed.
    let (result, new_code) = new_dev.register("DEV0002").await;
    assert_eq!(result, 0);
    assert!(dev.closed().await, "the old link is revoked");
    assert_eq!(new_dev.auth(&new_code).await, 0);
    assert_eq!(new_dev.report(31.2307, 121.4803, 0).await, 0);
    wait_for("the new terminal's fix", || async {
        unit_lat(&http, &admin, &id).await == Some(31.2307)
    })
    .await;
    run.stop();
    db.drop_now().await;
}

//! Live positions end to end: the real binary (demo data, no simulation) with JT/T 808
//! terminals over real TCP and WebSocket clients (tokio-tungstenite).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};
use shouhu_media::jt808::frame::{self, Deframer};
use shouhu_media::jt808::header::{Header, Version};
use shouhu_media::jt808::message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMsg;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

const PW: &str = "Shouhu@2026";
/// Demo terminals: three per district, Huangpu first, then Xuhui.
const HUANGPU_1: u64 = 13_900_000_000;
const HUANGPU_2: u64 = 13_900_000_001;
const HUANGPU_3: u64 = 13_900_000_002;
const XUHUI_1: u64 = 13_900_000_003;

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

/// A JT/T 808 terminal speaking 2013 frames.
struct Term {
    s: TcpStream,
    d: Deframer,
    phone: String,
    serial: u16,
}

impl Term {
    async fn connect(addr: &str, phone: u64) -> Term {
        let s = TcpStream::connect(addr).await.unwrap();
        Term {
            s,
            d: Deframer::new(),
            phone: phone.to_string(),
            serial: 0,
        }
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, id: u16, body: &[u8]) -> u16 {
        self.serial += 1;
        let f = frame::encode(&Header::encode(
            id,
            Version::V2013,
            &self.phone,
            self.serial,
            body,
        ));
        self.raw(&f).await;
        self.serial
    }

    /// The next platform message, or None when the server closed the connection.
    async fn recv(&mut self) -> Option<(u16, Vec<u8>)> {
        let mut buf = [0u8; 1024];
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

    /// Register (answer code) and authenticate.
    async fn login(&mut self) {
        self.send(message::REGISTER, &shouhu_api_body::register(&self.phone))
            .await;
        let (id, body) = self.recv().await.unwrap();
        assert_eq!(id, message::REGISTER_RESPONSE);
        assert_eq!(body[2], 0, "registration of {} refused", self.phone);
        let code = body[3..].to_vec();
        let serial = self.send(message::AUTH, &code).await;
        let (id, body) = self.recv().await.unwrap();
        assert_eq!(
            (id, u16::from_be_bytes([body[0], body[1]]), body[4]),
            (message::PLATFORM_RESPONSE, serial, 0)
        );
    }

    /// Report a fix (device time `t_ms`) and check the general response.
    async fn report(&mut self, lat: f64, lon: f64, alarm: u32, t_ms: i64) {
        let serial = self
            .send(
                message::LOCATION,
                &shouhu_api_body::location(lat, lon, alarm, t_ms),
            )
            .await;
        loop {
            let (id, body) = self.recv().await.expect("server closed the connection");
            if id == message::PLATFORM_RESPONSE && u16::from_be_bytes([body[0], body[1]]) == serial
            {
                assert_eq!(body[4], 0, "location refused");
                return;
            }
        }
    }
}

/// Message bodies built by hand, as a terminal would.
mod shouhu_api_body {
    pub fn register(phone: &str) -> Vec<u8> {
        let mut b = vec![0, 31, 0, 100];
        b.extend_from_slice(b"TEST\0");
        let mut model = b"E2E-808".to_vec();
        model.resize(20, 0);
        b.extend_from_slice(&model);
        b.extend_from_slice(&phone.as_bytes()[phone.len() - 7..]);
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
        let s = chrono_like(t_ms + 8 * 3_600_000);
        b.extend_from_slice(&s);
        b
    }

    /// YYMMDDhhmmss BCD of a UTC+8 millisecond time (civil-from-days, no date library).
    fn chrono_like(ms: i64) -> [u8; 6] {
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

async fn ws(http: &str, token: &str) -> Ws {
    let url = format!(
        "{}/api/v1/dispatch/ws?token={token}",
        http.replacen("http", "ws", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn ws_send(w: &mut Ws, v: Value) {
    w.send(WsMsg::Text(v.to_string().into())).await.unwrap();
}

/// Read messages until `f` returns Some, for at most `secs`.
async fn ws_until<T>(w: &mut Ws, secs: u64, mut f: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, w.next())
            .await
            .unwrap_or_else(|_| panic!("condition not met within {secs} s"));
        match m {
            Some(Ok(WsMsg::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(x) = f(&v) {
                    return x;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("WebSocket ended: {other:?}"),
        }
    }
}

fn units_of(v: &Value) -> Vec<Value> {
    match v["type"].as_str() {
        Some("snapshot") | Some("units") => v["units"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn events_of(v: &Value) -> Vec<Value> {
    if v["type"] == "events" {
        v["events"].as_array().cloned().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// The unit of a demo terminal, found by its plate (`沪A·E1001` is the first terminal's): the
/// terminal phone itself is for roles that manage devices only.
async fn unit_id(http: &str, token: &str, phone: u64) -> String {
    let plate = format!("沪A·E{:04}", 1001 + phone - HUANGPU_1);
    let v = get(http, token, &format!("/units?kind=vehicle&q={plate}")).await;
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one vehicle {plate}: {v}");
    items[0]["id"]
        .as_str()
        .expect("unit of the terminal")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_reach_subscribers_within_their_scope() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let hp = login(&d.http, "hp_head").await;
    let hp_unit = unit_id(&d.http, &op, HUANGPU_1).await;
    let xh_unit = unit_id(&d.http, &op, XUHUI_1).await;

    let mut w_op = ws(&d.http, &op).await;
    let mut w_op_gcj = ws(&d.http, &op).await;
    let mut w_hp = ws(&d.http, &hp).await;
    ws_send(&mut w_op_gcj, json!({"type": "subscribe", "crs": "gcj02"})).await;
    ws_until(&mut w_op_gcj, 10, |v| {
        (v["type"] == "snapshot" && v["crs"] == "gcj02").then_some(())
    })
    .await;
    // The brigade's snapshot holds only its own units.
    let snap = ws_until(&mut w_hp, 10, |v| {
        (v["type"] == "snapshot").then(|| units_of(v))
    })
    .await;
    assert!(!snap.is_empty());
    assert!(snap.iter().all(|u| u["id"] != xh_unit.as_str()));
    assert!(snap.iter().any(|u| u["id"] == hp_unit.as_str()));

    let mut a = Term::connect(&d.jt808, HUANGPU_1).await;
    let mut b = Term::connect(&d.jt808, XUHUI_1).await;
    a.login().await;
    b.login().await;
    let t = now_ms();
    b.report(31.188, 121.437, 0, t).await;
    a.report(31.2305, 121.4801, 0, t).await;

    let got = ws_until(&mut w_op, 10, |v| {
        units_of(v)
            .into_iter()
            .find(|u| u["id"] == hp_unit.as_str() && u["lat"].is_number())
    })
    .await;
    assert_eq!(
        (got["lat"].as_f64().unwrap(), got["lon"].as_f64().unwrap()),
        (31.2305, 121.4801)
    );
    assert_eq!(
        (
            got["link"].as_str(),
            got["source"].as_str(),
            got["kind"].as_str()
        ),
        (Some("online"), Some("jt808"), Some("vehicle"))
    );
    let gcj = ws_until(&mut w_op_gcj, 10, |v| {
        units_of(v)
            .into_iter()
            .find(|u| u["id"] == hp_unit.as_str() && u["lat"].is_number())
    })
    .await;
    let want = shouhu_dispatch::coords::wgs84_to_gcj02(31.2305, 121.4801);
    assert!(
        (gcj["lat"].as_f64().unwrap() - want.0).abs() < 1e-6
            && (gcj["lon"].as_f64().unwrap() - want.1).abs() < 1e-6
    );

    // The brigade sees its vehicle move twice and never the other district's.
    let mut seen_xh = false;
    let mut seen = 0;
    a.report(31.2306, 121.4802, 0, t + 1000).await;
    ws_until(&mut w_hp, 10, |v| {
        for u in units_of(v) {
            seen_xh |= u["id"] == xh_unit.as_str();
            if u["id"] == hp_unit.as_str() && u["lat"].is_number() {
                seen += 1;
            }
        }
        (seen >= 1
            && v["units"]
                .as_array()
                .is_some_and(|us| us.iter().any(|u| u["lat"] == 31.2306)))
        .then_some(())
    })
    .await;
    assert!(!seen_xh, "a Huangpu account received a Xuhui vehicle");
    // REST agrees, with the terminal looked up in either number form.
    let r = get(&d.http, &hp, "/units?terminal=13900000003").await;
    assert_eq!(r["items"].as_array().unwrap().len(), 0);
    let r = get(&d.http, &op, &format!("/units/{xh_unit}")).await;
    assert_eq!(r["lat"], 31.188);
    // The track holds both fixes of the Huangpu vehicle, in GPX too.
    wait_for(|| async {
        get(&d.http, &op, &format!("/units/{hp_unit}/track")).await["total"] == 2
    })
    .await;
    let gpx = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/units/{hp_unit}/track?format=gpx",
            d.http
        ))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(gpx.matches("<trkpt").count(), 2, "{gpx}");
    assert!(gpx.contains("lat=\"31.2305000\" lon=\"121.4801000\""));
    drop(d.run);
}

async fn wait_for<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sos_geofences_nearest_and_arrival() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let admin = login(&d.http, "admin").await;
    let me: Value = get(&d.http, &admin, "/auth/me").await;
    let corps = me["account"]["org_unit_id"]
        .as_str()
        .or(me["org_unit_id"].as_str())
        .unwrap()
        .to_string();
    let mut w = ws(&d.http, &op).await;
    ws_until(&mut w, 10, |v| (v["type"] == "snapshot").then_some(())).await;

    // A custom fence: 200 m around (31.2000, 121.4000).
    let (s, fence) = post(
        &d.http,
        &admin,
        "/geofences",
        json!({
        "name": "测试围栏", "kind": "custom", "org_unit_id": corps,
        "circle": {"lat": 31.2, "lon": 121.4, "radius_m": 200.0}}),
    )
    .await;
    assert_eq!(s, 200, "{fence}");
    let fence_id = fence["id"].as_str().unwrap().to_string();

    let mut a = Term::connect(&d.jt808, HUANGPU_1).await;
    a.login().await;
    let unit = unit_id(&d.http, &op, HUANGPU_1).await;
    let t0 = now_ms() - 60_000;
    // Outside, inside, inside, outside, outside: one enter, one leave.
    for (k, lat) in [31.205, 31.2005, 31.2001, 31.206, 31.207]
        .iter()
        .enumerate()
    {
        a.report(*lat, 121.4, 0, t0 + k as i64 * 10_000).await;
    }
    let mut fence_events = Vec::new();
    ws_until(&mut w, 10, |v| {
        for e in events_of(v) {
            if e["geofence_id"] == fence_id.as_str() {
                fence_events.push(e["kind"].as_str().unwrap().to_string());
            }
        }
        (fence_events.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(fence_events, ["geofence_enter", "geofence_leave"]);

    // Position query (0x8201) from the API: the terminal answers with 0x0201 and the unit moves.
    let (s, r) = post(&d.http, &op, &format!("/units/{unit}/locate"), json!({})).await;
    assert_eq!(s, 202, "{r}");
    let (id, _) = a.recv().await.unwrap();
    assert_eq!(id, message::QUERY_POSITION);
    let mut body = vec![0, 0];
    body.extend(shouhu_api_body::location(31.2081, 121.4, 0, t0 + 45_000));
    let serial = a.send(message::QUERY_POSITION_RESPONSE, &body).await;
    let (_, ack) = a.recv().await.unwrap();
    assert_eq!((u16::from_be_bytes([ack[0], ack[1]]), ack[4]), (serial, 0));
    wait_for(|| async { get(&d.http, &op, &format!("/units/{unit}")).await["lat"] == 31.2081 })
        .await;
    // Temporary tracking (0x8202): every 5 s for 60 s.
    let (s, _) = post(
        &d.http,
        &op,
        &format!("/units/{unit}/track-request"),
        json!({"interval_s": 5, "duration_s": 60}),
    )
    .await;
    assert_eq!(s, 202);
    let (id, body) = a.recv().await.unwrap();
    assert_eq!(
        (id, body),
        (message::TRACK_POSITION, vec![0, 5, 0, 0, 0, 60])
    );
    // A vehicle whose terminal is not connected cannot be queried.
    let other = unit_id(&d.http, &op, XUHUI_1).await;
    let (s, r) = post(&d.http, &op, &format!("/units/{other}/locate"), json!({})).await;
    assert_eq!((s, r["code"].as_str()), (409, Some("not_connected")));

    // SOS: the alarm bit raises an event at once.
    a.report(31.207, 121.4, 1, t0 + 50_000).await;
    let sos = ws_until(&mut w, 10, |v| {
        events_of(v).into_iter().find(|e| e["kind"] == "sos")
    })
    .await;
    assert_eq!(sos["unit_id"], unit.as_str());
    let sos_id = sos["id"].as_str().unwrap().to_string();
    wait_for(|| async {
        get(&d.http, &op, "/sos").await["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let (s, _) = post(&d.http, &op, &format!("/sos/{sos_id}/handle"), json!({})).await;
    assert_eq!(s, 422, "handling needs a note");
    for (step, body) in [
        ("acknowledge", json!({})),
        ("handle", json!({"note": "电话联系，误触"})),
        ("close", json!({"note": "结束"})),
    ] {
        let (s, r) = post(&d.http, &op, &format!("/sos/{sos_id}/{step}"), body).await;
        assert_eq!(s, 200, "{step}: {r}");
    }
    let (s, _) = post(
        &d.http,
        &op,
        &format!("/sos/{sos_id}/acknowledge"),
        json!({}),
    )
    .await;
    assert_eq!(s, 409, "a closed alarm cannot be acknowledged");
    let all = get(&d.http, &op, "/sos?status=all").await;
    let a0 = &all["items"][0];
    assert_eq!(
        (
            a0["status"].as_str(),
            a0["acknowledged_by"].as_str(),
            a0["closed_by"].as_str()
        ),
        (Some("closed"), Some("operator"), Some("operator"))
    );
    let audit = get(
        &d.http,
        &admin,
        &format!("/audit?target_id={sos_id}&page_size=50"),
    )
    .await;
    let mut actions: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["sos.acknowledge", "sos.close", "sos.handle", "sos.raise"]
    );

    // Nearest: from (31.2, 121.4), A is 0.007° north (≈778 m), B 0.010° north (≈1,112 m),
    // C 0.011° east (≈1,046 m). By raw degrees B is nearer than C; on the ground C is.
    let mut b = Term::connect(&d.jt808, HUANGPU_2).await;
    let mut c = Term::connect(&d.jt808, HUANGPU_3).await;
    b.login().await;
    c.login().await;
    let t = now_ms();
    b.report(31.210, 121.400, 0, t).await;
    c.report(31.200, 121.411, 0, t).await;
    let (ub, uc) = (
        unit_id(&d.http, &op, HUANGPU_2).await,
        unit_id(&d.http, &op, HUANGPU_3).await,
    );
    wait_for(|| async {
        let n = get(
            &d.http,
            &op,
            "/units/nearest?lat=31.2&lon=121.4&k=3&kinds=vehicle",
        )
        .await;
        n["items"][0]["unit"]["id"] == unit.as_str()
            && n["items"][1]["unit"]["id"] == uc.as_str()
            && n["items"][2]["unit"]["id"] == ub.as_str()
    })
    .await;

    // Assign C to a point 1 km east; it turns on_scene by itself when it gets there.
    let (s, r) = post(
        &d.http,
        &op,
        &format!("/units/{uc}/assign"),
        json!({"lat": 31.2, "lon": 121.42, "name": "现场"}),
    )
    .await;
    assert_eq!((s, r["state"].as_str()), (200, Some("assigned")), "{r}");
    let n = get(
        &d.http,
        &op,
        "/units/nearest?lat=31.2&lon=121.4&k=5&kinds=vehicle",
    )
    .await;
    assert!(
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["unit"]["id"] != uc.as_str()),
        "busy units are not offered"
    );
    c.report(31.2001, 121.4199, 0, t + 60_000).await;
    ws_until(&mut w, 10, |v| {
        events_of(v).into_iter().find(|e| {
            e["kind"] == "state" && e["unit_id"] == uc.as_str() && e["state"] == "on_scene"
        })
    })
    .await;
    let (s, r) = post(&d.http, &op, &format!("/units/{uc}/clear"), json!({})).await;
    assert_eq!((s, r["state"].as_str()), (200, Some("idle")));
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_go_offline_after_the_timeout_or_at_disconnect() {
    let d = demo(&[
        ("SHOUHU__DISPATCH__ONLINE_TIMEOUT_JT808_SECS", "1"),
        ("SHOUHU__DISPATCH__OFFLINE_AFTER_SECS", "2"),
    ]);
    let op = login(&d.http, "operator").await;
    let silent = unit_id(&d.http, &op, HUANGPU_1).await;
    let leaving = unit_id(&d.http, &op, HUANGPU_2).await;
    let mut w = ws(&d.http, &op).await;
    ws_until(&mut w, 10, |v| (v["type"] == "snapshot").then_some(())).await;
    let mut a = Term::connect(&d.jt808, HUANGPU_1).await;
    let mut b = Term::connect(&d.jt808, HUANGPU_2).await;
    a.login().await;
    b.login().await;
    let started = Instant::now();
    a.report(31.23, 121.48, 0, now_ms()).await;
    drop(b);
    let mut offline = Vec::new();
    ws_until(&mut w, 15, |v| {
        for e in events_of(v) {
            if e["kind"] == "offline" {
                offline.push((
                    e["unit_id"].as_str().unwrap().to_string(),
                    started.elapsed(),
                ));
            }
        }
        offline.iter().any(|(u, _)| *u == silent).then_some(())
    })
    .await;
    let at = |id: &str| offline.iter().find(|(u, _)| u == id).map(|(_, t)| *t);
    assert!(at(&leaving).is_some(), "a disconnect is offline at once");
    assert!(
        at(&silent).unwrap() >= Duration::from_secs(2),
        "silence is offline only after offline_after_secs"
    );
    let r = get(&d.http, &op, &format!("/units/{silent}")).await;
    assert_eq!(r["link"], "offline");
    drop(a);
    drop(d.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_or_closed_and_other_sessions_go_on() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let good_unit = unit_id(&d.http, &op, HUANGPU_1).await;
    let mut good = Term::connect(&d.jt808, HUANGPU_1).await;
    good.login().await;

    // An unknown terminal may not register (registration is closed by default).
    let mut stranger = Term::connect(&d.jt808, 13_800_000_999).await;
    stranger
        .send(message::REGISTER, &shouhu_api_body::register("13800000999"))
        .await;
    let (id, body) = stranger.recv().await.unwrap();
    assert_eq!((id, body[2]), (message::REGISTER_RESPONSE, 4));
    // Its positions do not count before authentication.
    let serial = stranger
        .send(
            message::LOCATION,
            &shouhu_api_body::location(31.2, 121.4, 0, now_ms()),
        )
        .await;
    let (id, body) = stranger.recv().await.unwrap();
    assert_eq!(
        (id, u16::from_be_bytes([body[0], body[1]]), body[4]),
        (message::PLATFORM_RESPONSE, serial, 1)
    );

    // A bad checksum is answered with result 2, and the session goes on.
    good.serial += 1;
    let mut f = frame::encode(&Header::encode(
        message::HEARTBEAT,
        Version::V2013,
        &good.phone,
        good.serial,
        &[],
    ));
    let n = f.len();
    f[n - 2] ^= 0x21;
    good.raw(&f).await;
    let (id, body) = good.recv().await.unwrap();
    assert_eq!(
        (id, u16::from_be_bytes([body[0], body[1]]), body[4]),
        (message::PLATFORM_RESPONSE, good.serial, 2)
    );
    // A truncated location body too.
    let serial = good.send(message::LOCATION, &[0, 0, 0, 0, 0]).await;
    let (_, body) = good.recv().await.unwrap();
    assert_eq!(
        (u16::from_be_bytes([body[0], body[1]]), body[4]),
        (serial, 2)
    );

    // An unreadable frame closes that connection only.
    let mut junk = Term::connect(&d.jt808, 13_900_000_001).await;
    junk.raw(&[0x7e, 0x01, 0x02, 0x03, 0x04, 0x7e]).await;
    assert!(
        junk.recv().await.is_none(),
        "the server must close an unreadable connection"
    );
    good.report(31.2311, 121.4811, 0, now_ms()).await;
    wait_for(|| async {
        get(&d.http, &op, &format!("/units/{good_unit}")).await["lat"] == 31.2311
    })
    .await;

    // WebSocket junk: an error message, then a close.
    let mut w = ws(&d.http, &op).await;
    ws_until(&mut w, 10, |v| (v["type"] == "snapshot").then_some(())).await;
    w.send(WsMsg::Text("{\"type\":\"subscrib\"}".into()))
        .await
        .unwrap();
    let err = ws_until(&mut w, 10, |v| (v["type"] == "error").then(|| v.clone())).await;
    assert_eq!(err["code"], "bad_message");
    assert!(err["message"].as_str().unwrap().contains("subscrib"));
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match w.next().await {
                Some(Ok(WsMsg::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1003));
    // A WebSocket without credentials is refused before the upgrade.
    let url = format!("{}/api/v1/dispatch/ws", d.http.replacen("http", "ws", 1));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    // Phone-app positions from an account without an officer are refused; from an app account
    // they are checked one by one.
    let (s, _) = post(
        &d.http,
        &op,
        "/positions",
        json!({"positions": [{"time": "2026-01-01T00:00:00Z", "lat": 31.2, "lon": 121.4}]}),
    )
    .await;
    assert_eq!(s, 403);
    let app = login(&d.http, "app1").await;
    let t = shouhu_dispatch::protocol::rfc3339(now_ms());
    let (s, r) = post(
        &d.http,
        &app,
        "/positions",
        json!({"positions": [
        {"time": t, "lat": 31.2201, "lon": 121.4801, "accuracy_m": 5.0},
        {"time": t, "lat": 95.0, "lon": 121.4},
        {"time": "yesterday", "lat": 31.2, "lon": 121.4}]}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["accepted"], 1);
    let codes: Vec<&str> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["invalid_lat", "invalid_time"]);
    drop(d.run);
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_current_positions_not_a_backlog() {
    let d = demo(&[]);
    let op = login(&d.http, "operator").await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for k in 0..12 {
            v.push(unit_id(&d.http, &op, HUANGPU_1 + k).await);
        }
        v
    };
    let mut terms = Vec::new();
    for k in 0..12 {
        let mut t = Term::connect(&d.jt808, HUANGPU_1 + k).await;
        t.login().await;
        terms.push(t);
    }
    let mut slow = ws(&d.http, &op).await;
    ws_until(&mut slow, 10, |v| (v["type"] == "snapshot").then_some(())).await;
    let rss_before = rss_kb(d.run.child.id());
    // The client stops reading; every terminal reports once a second for 5 s.
    let t0 = now_ms() - 10_000;
    let mut sent = 0;
    for s in 0..5i64 {
        for (k, t) in terms.iter_mut().enumerate() {
            t.report(
                31.2 + k as f64 * 0.001,
                121.4 + s as f64 * 0.001,
                0,
                t0 + s * 1000,
            )
            .await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let rss_after = rss_kb(d.run.child.id());
    // Catching up: what arrives ends with the newest fix of every unit, in few messages.
    let mut latest = std::collections::HashMap::new();
    let mut messages = 0;
    ws_until(&mut slow, 10, |v| {
        if v["type"] == "units" {
            messages += 1;
        }
        for u in units_of(v) {
            latest.insert(
                u["id"].as_str().unwrap().to_string(),
                u["lon"].as_f64().unwrap_or(0.0),
            );
        }
        ids.iter()
            .all(|id| {
                latest
                    .get(id)
                    .is_some_and(|lon| (lon - 121.404).abs() < 1e-9)
            })
            .then_some(())
    })
    .await;
    assert_eq!(sent, 60);
    // 60 fixes in 5 s at 4 batches a second: at most about 20 batches, never one per fix.
    assert!(messages <= 24, "{messages} messages for {sent} fixes");
    assert!(
        rss_after < rss_before + 50_000,
        "server RSS grew from {rss_before} kB to {rss_after} kB"
    );
    drop(d.run);
}

//! GB/T 28181 identity end to end (issue 19, item 2): the real binary against a recorder played
//! with raw SIP over UDP from 127.0.0.1 and an attacker on 127.0.0.2 who knows everything a
//! sniffer would (Call-IDs, branches, a captured authenticated `REGISTER`):
//!
//! * a forged `BYE` for a live stream's Call-ID is dropped and counted; the device's own `BYE`
//!   still ends the dialog;
//! * a forged `200 OK` to the platform's `INVITE` (TCP-active media, `c=` pointing at a third
//!   address) is dropped: no ACK to the forger, no connection to that address; the device's own
//!   answer is used, its (private) `c=` ignored for the registered source IP;
//! * a captured `REGISTER` replayed while the device is registered, after it unregistered, and
//!   after a restart of the server is refused `401` and moves nothing (on SQLite and on
//!   PostgreSQL, where the used nonces live);
//! * a flood of keepalives and `REGISTER`s naming the camera from 127.0.0.2, far beyond the
//!   device's rate, before it registers and while it is registered, spends nothing of the
//!   camera's own budget: it registers at once, its keepalives keep getting `200`,
//!   it stays registered and online, and the flood is refused (`403`, `401`) or dropped over the
//!   attacker's address budget, and counted.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};
use shouhu_media::sip::digest::{self, Algorithm, Credentials};
use shouhu_media::sip::{parse_datagram, Message};
use tokio::net::UdpSocket;

const PW: &str = "Shouhu@2026";
const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const DEV_PW: &str = "Dev#pass2026";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    run: Running,
    http: String,
    sip: SocketAddr,
    metrics: String,
    token: String,
}

/// Start a server command (demo or serve) with metrics on a known port; log in as admin.
async fn start(mut c: Command) -> Server {
    let mport = free_port();
    c.env("SHOUHU__METRICS__LISTEN", format!("127.0.0.1:{mport}"))
        .env("SHOUHU__MEDIA__NO_MEDIA_TIMEOUT_SECS", "60");
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let sip = run.sip.clone().expect("SIP address").parse().unwrap();
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Server {
        run,
        http,
        sip,
        metrics: format!("http://127.0.0.1:{mport}/metrics"),
        token: r["token"].as_str().expect("token").to_string(),
    }
}

/// `shouhu demo` without the simulation (the test plays the recorder).
async fn demo(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut c = shouhu(dir);
    c.args([
        "demo",
        "--enterprises",
        "2",
        "--always-on-recorders",
        "0",
        "--no-simulation",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    start(c).await
}

impl Server {
    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.http))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    /// A recorder with its own SIP password, in the root org unit.
    async fn recorder(&self, device: &str) {
        let units = self.get("/org-units").await;
        let org = units
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["parent_id"].is_null())
            .unwrap()["id"]
            .clone();
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/recorders", self.http))
            .bearer_auth(&self.token)
            .json(
                &json!({"device_id": device, "name": "记录仪", "org_unit_id": org,
                "model": "DSJ-V9", "password": DEV_PW}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    async fn access(&self, device: &str) -> Value {
        self.get(&format!("/recorders/{device}")).await["access"].clone()
    }

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `shouhu_sip_dropped_total{reason=…}` now.
    async fn dropped(&self, reason: &str) -> f64 {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let key = format!("shouhu_sip_dropped_total{{reason=\"{reason}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_dropped(&self, reason: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.dropped(reason).await < at_least {
            assert!(
                Instant::now() < deadline,
                "shouhu_sip_dropped_total{{reason={reason}}} never reached {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A SIP end over UDP (the recorder on 127.0.0.1, or the attacker on 127.0.0.2).
struct End {
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    id: String,
    channel: String,
    n: u32,
}

impl End {
    async fn bind(ip: &str, id: &str, server: SocketAddr) -> End {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        let local = sock.local_addr().unwrap();
        End {
            sock,
            local,
            server,
            id: id.to_string(),
            channel: format!("{}131{}", &id[..10], &id[13..]),
            n: 0,
        }
    }

    async fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }

    /// The next message `want` accepts, answering the platform's queries on the way (`200`, and
    /// the catalog with one channel). Panics after `secs`.
    async fn recv(&mut self, secs: u64, want: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, _) = tokio::time::timeout(left, self.sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{}: nothing wanted within {secs} s", self.local))
                .unwrap();
            let Ok(m) = parse_datagram(&buf[..n]) else {
                continue;
            };
            if want(&m) {
                return m;
            }
            if matches!(m.method(), Some("MESSAGE" | "SUBSCRIBE" | "NOTIFY")) {
                let ok = m.response(200, "OK", Some("devtag"));
                self.send(&ok.to_bytes()).await;
                if m.body_text().contains("<CmdType>Catalog</CmdType>") {
                    self.catalog(&m.body_text()).await;
                }
            }
        }
    }

    /// Whether anything arrives within `ms` (for what must not come).
    async fn silent_for(&self, ms: u64) -> bool {
        let mut buf = vec![0u8; 65_536];
        tokio::time::timeout(Duration::from_millis(ms), self.sock.recv_from(&mut buf))
            .await
            .is_err()
    }

    async fn catalog(&mut self, query: &str) {
        let sn = query
            .split("<SN>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("1")
            .to_string();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n\
             <DeviceID>{}</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>{}</DeviceID>\r\n\
             <Name>cam</Name>\r\n<Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n",
            self.id, self.channel
        );
        let n = self.next();
        let msg = format!(
            "MESSAGE sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKcat{n}x{}\r\n\
             From: <sip:{}@{DOMAIN}>;tag=c{n}\r\nTo: <sip:{PLATFORM}@{DOMAIN}>\r\nCall-ID: cat{n}@{}\r\n\
             CSeq: {n} MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{body}",
            self.local, self.local.port(), self.id, self.local, body.len()
        );
        self.send(msg.as_bytes()).await;
    }

    fn register_msg(&mut self, expires: u32, auth: Option<&str>) -> String {
        let n = self.next();
        let mut s = format!(
            "REGISTER sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKreg{n}x{}\r\n\
             From: <sip:{}@{DOMAIN}>;tag=r{n}\r\nTo: <sip:{}@{DOMAIN}>\r\nCall-ID: reg@{}\r\nCSeq: {n} REGISTER\r\n\
             Contact: <sip:{}@{}>\r\nMax-Forwards: 70\r\nExpires: {expires}\r\n",
            self.local, self.local.port(), self.id, self.id, self.local, self.id, self.local
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    /// A `Keepalive` MESSAGE naming this end's device id; its Call-ID.
    fn keepalive_msg(&mut self) -> (String, String) {
        let n = self.next();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n\
             <SN>{n}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
            self.id
        );
        let call = format!("ka{n}@{}", self.local);
        let msg = format!(
            "MESSAGE sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKka{n}x{}\r\n\
             From: <sip:{}@{DOMAIN}>;tag=k{n}\r\nTo: <sip:{PLATFORM}@{DOMAIN}>\r\nCall-ID: {call}\r\n\
             CSeq: {n} MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{body}",
            self.local, self.local.port(), self.id, body.len()
        );
        (msg, call)
    }

    /// REGISTER (challenge, then digest): the authenticated request's bytes and the final status.
    async fn register(&mut self, expires: u32) -> (Vec<u8>, u16) {
        let first = self.register_msg(expires, None);
        self.send(first.as_bytes()).await;
        let ch = self
            .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "REGISTER"))
            .await;
        assert_eq!(ch.status(), Some(401));
        let params = digest::parse_params(
            ch.header("WWW-Authenticate")
                .unwrap()
                .trim_start_matches("Digest")
                .trim(),
        )
        .unwrap();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut c = Credentials {
            username: self.id.clone(),
            realm: get("realm").unwrap(),
            nonce: get("nonce").unwrap(),
            uri: format!("sip:{PLATFORM}@{DOMAIN}"),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
            ..Default::default()
        };
        let alg = Algorithm::Md5;
        c.response = digest::expected_response(
            &c,
            alg,
            &digest::ha1(alg, &self.id, &c.realm, DEV_PW),
            "REGISTER",
        );
        let auth = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
            c.username, c.realm, c.nonce, c.uri, c.response
        );
        let authed = self.register_msg(expires, Some(&auth));
        self.send(authed.as_bytes()).await;
        let r = self
            .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "REGISTER"))
            .await;
        (authed.into_bytes(), r.status().unwrap())
    }

    /// The 200 to an INVITE with an SDP naming `c=` `ip` and port `port`.
    fn ok_to(&self, invite: &Message, ip: &str, port: u16, tcp: bool) -> Vec<u8> {
        let mut r = invite.response(200, "OK", Some("devtag"));
        let (proto, setup) = if tcp {
            (
                "TCP/RTP/AVP",
                "a=setup:passive\r\na=connection:new\r\n".to_string(),
            )
        } else {
            ("RTP/AVP", String::new())
        };
        r.push("Contact", format!("<sip:{}@{}>", self.channel, self.local))
            .push("Content-Type", "APPLICATION/SDP");
        r.body = format!(
            "v=0\r\no={} 0 0 IN IP4 {ip}\r\ns=Play\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=video {port} {proto} 96\r\n\
             a=sendonly\r\na=rtpmap:96 PS/90000\r\n{setup}y=0100000001\r\n",
            self.channel
        )
        .into_bytes();
        r.to_bytes()
    }
}

/// Register the recorder and wait until its catalog is stored (streams need a known channel).
async fn register_with_catalog(s: &Server, dev: &mut End) {
    assert_eq!(dev.register(3600).await.1, 200);
    let id = dev.id.clone();
    let channel = dev.channel.clone();
    // Answer the queries until the catalog is stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = s.get(&format!("/recorders/{id}")).await;
        if v["channel_list"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["channel_id"] == channel.as_str()))
        {
            break;
        }
        assert!(Instant::now() < deadline, "catalog never stored: {v}");
        let _ = tokio::time::timeout(Duration::from_millis(200), dev.recv(1, |_| false)).await;
    }
}

/// Ask for a snapshot (in the background: it waits for a picture that never comes), which makes
/// the hub INVITE the device; returns the INVITE.
async fn start_stream(s: &Server, dev: &mut End) -> (tokio::task::JoinHandle<()>, Message) {
    let url = format!(
        "{}/api/v1/streams/{}/{}/snapshot.jpg",
        s.http, dev.id, dev.channel
    );
    let token = s.token.clone();
    let task = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await;
    });
    let invite = dev.recv(15, |m| m.method() == Some("INVITE")).await;
    (task, invite)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_bye_does_not_end_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &[]).await;
    let id = "34020000001320000701";
    s.recorder(id).await;
    let mut dev = End::bind("127.0.0.1", id, s.sip).await;
    let attacker = End::bind("127.0.0.2", id, s.sip).await;
    register_with_catalog(&s, &mut dev).await;
    let (snap, invite) = start_stream(&s, &mut dev).await;
    let call = invite.call_id().unwrap().to_string();
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = dev.ok_to(
        &invite,
        "127.0.0.1",
        rtp.local_addr().unwrap().port(),
        false,
    );
    dev.send(&ok).await;
    dev.recv(10, |m| m.method() == Some("ACK")).await;
    s.wait_for("/streams", "the stream is listed", |v| {
        v.to_string().contains(id)
    })
    .await;
    let from = invite.header("From").unwrap().to_string();
    let to = invite.header("To").unwrap().to_string();
    let bye = |end: &End, branch: &str| {
        format!(
            "BYE sip:{PLATFORM}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch={branch}\r\nFrom: {to};tag=devtag\r\n\
             To: {from}\r\nCall-ID: {call}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            s.sip, end.local
        )
    };
    // The forged BYE from 127.0.0.2: dropped and counted, not answered, the stream stays.
    attacker
        .send(bye(&attacker, "z9hG4bKforged").as_bytes())
        .await;
    s.wait_dropped("request_not_from_device", 1.0).await;
    assert!(
        attacker.silent_for(500).await,
        "the forged BYE was answered"
    );
    let streams = s.get("/streams").await;
    assert!(streams.to_string().contains(id), "{streams}");
    // The device's own BYE ends the dialog (200, not 481: it was still there).
    dev.send(bye(&dev, "z9hG4bKown").as_bytes()).await;
    let r = dev
        .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "BYE"))
        .await;
    assert_eq!(r.status(), Some(200));
    snap.abort();
    s.run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_neither_rewrites_the_dialog_nor_redirects_tcp_media() {
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &[("SHOUHU__MEDIA__TRANSPORT", "tcp-active")]).await;
    let id = "34020000001320000702";
    s.recorder(id).await;
    let mut dev = End::bind("127.0.0.1", id, s.sip).await;
    let mut attacker = End::bind("127.0.0.2", id, s.sip).await;
    register_with_catalog(&s, &mut dev).await;
    // Where the forger wants the server to connect, and where the device really serves media.
    let lure = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let media = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (snap, invite) = start_stream(&s, &mut dev).await;
    assert!(invite.body_text().contains("a=setup:active"));
    // The forged 200 (right branch, Call-ID and tags) from 127.0.0.2, c= the lure.
    let lure_port = lure.local_addr().unwrap().port();
    let forged = attacker.ok_to(&invite, "127.0.0.3", lure_port, true);
    attacker.send(&forged).await;
    s.wait_dropped("response_not_from_device", 1.0).await;
    // The device's answer with a private c= (it sits behind carrier NAT): the server connects
    // to the registered source IP on the answered port.
    let media_port = media.local_addr().unwrap().port();
    dev.send(&dev.ok_to(&invite, "10.255.0.9", media_port, true))
        .await;
    let ack = dev.recv(10, |m| m.method() == Some("ACK")).await;
    assert_eq!(ack.call_id(), invite.call_id());
    let (conn, from) = tokio::time::timeout(Duration::from_secs(10), media.accept())
        .await
        .expect("the server connects for the media")
        .unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.1");
    drop(conn);
    // Nothing for the forger: no ACK, no connection to the lure.
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            attacker.recv(1, |m| m.method() == Some("ACK"))
        )
        .await
        .is_err(),
        "the forger got an ACK"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), lure.accept())
            .await
            .is_err(),
        "the server connected to the forged c= address"
    );
    snap.abort();
    s.run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_naming_the_camera_from_elsewhere_does_not_knock_it_offline() {
    let dir = tempfile::tempdir().unwrap();
    // A small per-device budget (20, then 5 a second) makes the flood far beyond it; the
    // attacker's address gets ten times that (200, then 50 a second).
    let s = demo(
        dir.path(),
        &[
            ("SHOUHU__SIP__RATE_BURST", "20"),
            ("SHOUHU__SIP__RATE_PER_SEC", "5"),
        ],
    )
    .await;
    let id = "34020000001320000705";
    s.recorder(id).await;
    let mut dev = End::bind("127.0.0.1", id, s.sip).await;
    let mut attacker = End::bind("127.0.0.2", id, s.sip).await;
    // Before the camera registers: 100 REGISTERs naming it from 127.0.0.2 (five times its
    // burst) are challenged, then refused 503 — on the attacker's own budget.
    let mut pre = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..100 {
        let m = attacker.register_msg(3600, None);
        attacker.send(m.as_bytes()).await;
        let r = attacker
            .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "REGISTER"))
            .await;
        *pre.entry(r.status().unwrap_or(0)).or_default() += 1;
    }
    // The burst of 20, plus what 5 a second refilled meanwhile.
    let challenged = pre.get(&401).copied().unwrap_or(0);
    assert!((20..=35).contains(&challenged), "{pre:?}");
    assert_eq!(
        pre.get(&503).copied().unwrap_or(0),
        100 - challenged,
        "{pre:?}"
    );
    // The camera registers from its own address at once.
    assert_eq!(dev.register(3600).await.1, 200);
    let here = dev.local.to_string();
    s.wait_for(&format!("/recorders/{id}"), "registered and online", |v| {
        v["access"]["registered"] == true && v["access"]["online"] == true
    })
    .await;

    // The flood: 500 keepalives and REGISTERs with the camera's id from 127.0.0.2 in about
    // 2.5 s (200 a second, 40 times the device's rate).
    const FLOOD: usize = 500;
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        flood.push(if i % 2 == 0 {
            attacker.keepalive_msg().0
        } else {
            attacker.register_msg(3600, None)
        });
    }
    let sock = attacker.sock;
    let server = s.sip;
    let attack = tokio::spawn(async move {
        let send = async {
            for m in &flood {
                sock.send_to(m.as_bytes(), server).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let mut answers: std::collections::BTreeMap<u16, usize> = Default::default();
        let recv = async {
            let mut buf = vec![0u8; 65_536];
            // Until 1.5 s of silence after the last answer.
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(1500), sock.recv_from(&mut buf)).await
            {
                if let Ok(m) = parse_datagram(&buf[..n]) {
                    *answers.entry(m.status().unwrap_or(0)).or_default() += 1;
                }
            }
        };
        tokio::join!(send, recv);
        answers
    });

    // Meanwhile the camera's own keepalive every 200 ms: each answered 200, none 503.
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut kept = 0;
    while Instant::now() < deadline {
        let (ka, call) = dev.keepalive_msg();
        dev.send(ka.as_bytes()).await;
        let r = dev
            .recv(5, |m| !m.is_request() && m.call_id() == Some(call.as_str()))
            .await;
        assert_eq!(
            r.status(),
            Some(200),
            "the camera's keepalive {kept} during the flood"
        );
        kept += 1;
        let _ = tokio::time::timeout(Duration::from_millis(200), dev.recv(1, |_| false)).await;
    }
    assert!(kept >= 10, "only {kept} keepalives");
    let answers = attack.await.unwrap();

    // The camera stays registered and online at its own address.
    let a = s.access(id).await;
    assert_eq!(a["registered"], true, "{a}");
    assert_eq!(a["online"], true, "{a}");
    assert_eq!(a["remote_addr"], here.as_str());
    // The flood was refused (403 to the keepalives, 401 challenges to the REGISTERs, never a
    // 200 nor a 503), and what went over the attacker's address budget dropped unanswered.
    assert!(
        !answers.contains_key(&200) && !answers.contains_key(&503),
        "{answers:?}"
    );
    assert!(answers.get(&403).copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(answers.get(&401).copied().unwrap_or(0) > 0, "{answers:?}");
    let answered: usize = answers.values().sum();
    assert!(answered < FLOOD, "nothing dropped: {answers:?}");
    // Counted.
    s.wait_dropped("message_not_from_device", 1.0).await;
    s.wait_dropped("source_rate_limited", (FLOOD - answered) as f64 / 2.0)
        .await;
    // The camera refreshes its registration as always after the flood.
    assert_eq!(dev.register(3600).await.1, 200);
    let a = s.access(id).await;
    assert_eq!(a["remote_addr"], here.as_str());
    assert_eq!(a["online"], true);
    s.run.stop();
}

/// Send the captured REGISTER from the attacker: refused `401` (`stale=TRUE` when asked).
async fn replay(attacker: &mut End, captured: &[u8], stale: bool) {
    attacker.send(captured).await;
    let r = attacker
        .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "REGISTER"))
        .await;
    assert_eq!(r.status(), Some(401), "the replay was not refused");
    if stale {
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|h| h.contains("stale=TRUE")),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_register_replayed_moves_nothing_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &[]).await;
    // The restart serves the demo's database.
    let mut restart = shouhu(&dir.path().join("demo"));
    restart.arg("serve");
    replay_attack(s, "34020000001320000703", restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_register_replayed_moves_nothing_even_after_a_restart_postgres() {
    let admin_url = std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Some(db) = shouhu_e2e::pg::create_database(&admin_url, "t_sipid").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = shouhu(dir.path());
        c.env("SHOUHU__DATABASE__URL", &db.url).args(args);
        c
    };
    shouhu_e2e::run_ok(cmd(&["migrate"]));
    shouhu_e2e::run_ok(cmd(&[
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
    let s = start(cmd(&["serve"])).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/org-units", s.http))
        .bearer_auth(&s.token)
        .json(&json!({"parent_id": null, "kind": "corps", "name": "支队", "code": "SIPID"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    replay_attack(s, "34020000001320000704", cmd(&["serve"])).await;
    // Only the three authenticated REGISTERs (register, unregister, register after the restart)
    // wrote a row: the challenges, the unauthenticated flood and the refused replays none.
    let check = shouhu_storage::Db::connect(&db.url, 1).await.unwrap();
    assert_eq!(
        check.sip_nonces().purge_expired(i64::MAX).await.unwrap(),
        3,
        "rows in sip_used_nonces"
    );
    check.close().await;
    db.drop_now().await;
}

/// Register the recorder `id`, then replay its captured REGISTER from 127.0.0.2 while it is
/// registered, after it unregistered, and after the server restarts with `restart`.
async fn replay_attack(s: Server, id: &str, restart: Command) {
    s.recorder(id).await;
    let mut dev = End::bind("127.0.0.1", id, s.sip).await;
    let mut attacker = End::bind("127.0.0.2", id, s.sip).await;
    let (captured, code) = dev.register(3600).await;
    assert_eq!(code, 200);
    let here = dev.local.to_string();
    let a = s
        .wait_for(&format!("/recorders/{id}"), "registered", |v| {
            v["access"]["registered"] == true
        })
        .await;
    assert_eq!(a["access"]["remote_addr"], here.as_str());

    // Unauthenticated REGISTERs naming the device from elsewhere: challenged, nothing stored.
    for _ in 0..50 {
        let m = attacker.register_msg(3600, None);
        attacker.send(m.as_bytes()).await;
        let r = attacker
            .recv(10, |m| m.cseq().is_some_and(|(_, m)| m == "REGISTER"))
            .await;
        assert_eq!(r.status(), Some(401));
    }
    // While the device is registered: refused, its address stays.
    replay(&mut attacker, &captured, true).await;
    assert_eq!(s.access(id).await["remote_addr"], here.as_str());
    assert_eq!(s.access(id).await["registered"], true);
    // After the device unregistered: refused, still not registered.
    assert_eq!(dev.register(0).await.1, 200);
    s.wait_for(&format!("/recorders/{id}"), "unregistered", |v| {
        v["access"]["registered"] == false
    })
    .await;
    replay(&mut attacker, &captured, true).await;
    assert_eq!(s.access(id).await["registered"], false);

    // After a restart on the same database (`serve` on the demo's data).
    let (st, _) = s.run.stop();
    assert!(st.success());
    let s = start(restart).await;
    dev.server = s.sip;
    attacker.server = s.sip;
    replay(&mut attacker, &captured, false).await;
    assert_eq!(s.access(id).await["registered"], false);
    // The device itself registers as always, from its own address.
    assert_eq!(dev.register(3600).await.1, 200);
    let a = s
        .wait_for(&format!("/recorders/{id}"), "registered again", |v| {
            v["access"]["registered"] == true
        })
        .await;
    assert_eq!(a["access"]["remote_addr"], here.as_str());
    s.run.stop();
}

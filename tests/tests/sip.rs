//! GB/T 28181 signalling end to end: the real binary (demo data, no simulation) against SIPp
//! (`sip-tester`) running the scenarios in `tests/sipp/`: register with digest over UDP and TCP,
//! keepalive, MobilePosition (by MESSAGE and by NOTIFY) moving the bound officer's marker, a wrong password and an unknown
//! device refused, a flood of registrations from 200 devices served; plus malformed datagrams
//! answered `400` without disturbing registered devices.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};

const PW: &str = "Shouhu@2026";
const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const SHARED: &str = "Shared#2026";

struct Demo {
    run: Running,
    http: String,
    sip: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// A demo server without the simulation (SIPp plays the devices), on the shared password.
async fn demo() -> Demo {
    demo_with(&["--no-simulation"], &[("SHOUHU__SIP__PASSWORD", SHARED)]).await
}

/// A demo server with extra arguments and environment, logged in as admin.
async fn demo_with(args: &[&str], env: &[(&str, &str)]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    // No always-on recording: these tests watch the streams themselves.
    c.args(["demo", "--enterprises", "10", "--always-on-recorders", "0"])
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let sip = run.sip.clone().expect("SIP address in the log");
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["token"].as_str().expect("token").to_string();
    Demo {
        run,
        http,
        sip,
        token,
        _dir: dir,
    }
}

impl Demo {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.http))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.http))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn root_org(&self) -> String {
        let (_, units) = self.get("/org-units").await;
        units
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["parent_id"].is_null())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn recorder(&self, device: &str, officer: Option<&str>, password: Option<&str>) {
        let org = self.root_org().await;
        let mut body = json!({"device_id": device, "name": format!("记录仪{}", &device[16..]),
            "org_unit_id": org, "officer_id": officer, "model": "DSJ-V9"});
        if let Some(p) = password {
            body["password"] = json!(p);
        }
        let (s, v) = self.send(reqwest::Method::POST, "/recorders", body).await;
        assert_eq!(s, 200, "{v}");
        assert!(v.get("password").is_none(), "the password is never shown");
    }

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.get(path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// One simulated recorder for SIPp.
struct Dev<'a> {
    id: &'a str,
    password: &'a str,
    lon: f64,
}

fn sipp_command(
    target: &str,
    scen: &str,
    dev: &Dev<'_>,
    transport: &str,
    dir: &std::path::Path,
) -> Command {
    // A local port of its own: SIPp's default (5060, then the next free one) races when many
    // run at once.
    let free = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let mut c = Command::new("sipp");
    // SIPp also binds an RTP echo port (6000 by default) even for signalling-only scenarios.
    c.args(["-p", &free().to_string(), "-mp", &free().to_string()]);
    c.current_dir(dir)
        .arg(target)
        .arg("-sf")
        .arg(scenario(scen))
        .args(["-s", PLATFORM, "-au", dev.id, "-ap", dev.password])
        .args(["-key", "device", dev.id, "-key", "domain", DOMAIN])
        .args(["-key", "lon", &format!("{:.4}", dev.lon)])
        .args(["-t", transport, "-i", "127.0.0.1", "-m", "1"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ]);
    c
}

fn collect(out: std::process::Output, dir: &std::path::Path) -> (bool, String) {
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains("errors") {
            log.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    (out.status.success(), log)
}

/// SIPp could not bind one of its own media sockets (taken by another process on this
/// machine): a harness problem, not the server's; such a run is repeated.
fn bind_clash(log: &str) -> bool {
    log.contains("Unable to bind")
}

/// Run SIPp for one device to completion; returns (success, its screen and error log).
fn sipp(target: &str, scen: &str, dev: Dev<'_>, transport: &str) -> (bool, String) {
    let mut tries = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let out = sipp_command(target, scen, &dev, transport, dir.path())
            .output()
            .expect("run sipp (Debian package sip-tester)");
        let (ok, log) = collect(out, dir.path());
        tries += 1;
        if ok || !bind_clash(&log) || tries == 3 {
            return (ok, log);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_recorders_register_keepalive_and_report_positions() {
    let d = demo().await;
    let (_, officers) = d.get("/officers?page_size=5").await;
    let officer = officers["items"][0]["id"].as_str().unwrap().to_string();
    // One recorder with its own password, bound to an officer; one on the shared password.
    let own = "34020000001320000101";
    let shared = "34020000001320000102";
    d.recorder(own, Some(&officer), Some("Own#pass2026")).await;
    d.recorder(shared, None, None).await;

    // UDP, own password, bound: the position moves the officer's marker.
    let (ok, log) = sipp(
        &d.sip,
        "register_keepalive_position.xml",
        Dev {
            id: own,
            password: "Own#pass2026",
            lon: 121.4811,
        },
        "u1",
    );
    assert!(ok, "sipp over UDP failed:\n{log}");
    let rec = d
        .wait_for(&format!("/recorders/{own}"), "registered over UDP", |v| {
            v["access"]["registered"] == json!(true)
        })
        .await;
    assert_eq!(rec["access"]["transport"], "UDP");
    assert_eq!(rec["access"]["online"], true);
    assert!(rec["access"]["remote_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(rec["bindings"][0]["officer_id"], json!(officer));
    let unit = d
        .wait_for(
            &format!("/units/{officer}"),
            "officer moved by MobilePosition",
            |v| v["lon"].as_f64() == Some(121.4811),
        )
        .await;
    assert_eq!(unit["lat"].as_f64(), Some(31.2304));
    assert_eq!(unit["link"], "online");

    // TCP, shared password, unbound: the recorder is a unit of its own.
    let (ok, log) = sipp(
        &d.sip,
        "register_keepalive_position.xml",
        Dev {
            id: shared,
            password: SHARED,
            lon: 121.5011,
        },
        "t1",
    );
    assert!(ok, "sipp over TCP failed:\n{log}");
    d.wait_for(&format!("/units/{shared}"), "recorder unit moved", |v| {
        v["lon"].as_f64() == Some(121.5011)
    })
    .await;
    // SIPp closed its TCP connection when it finished: the registration over it is gone.
    d.wait_for(
        &format!("/recorders/{shared}"),
        "TCP registration dropped with its connection",
        |v| v["access"]["registered"] == json!(false) && v["access"]["transport"] == "TCP",
    )
    .await;

    // A wrong password is refused with 403; an unknown device with 403 at once.
    let (ok, log) = sipp(
        &d.sip,
        "register_bad_password.xml",
        Dev {
            id: own,
            password: "wrong-password",
            lon: 0.0,
        },
        "u1",
    );
    assert!(ok, "wrong password not refused with 403:\n{log}");
    let (ok, log) = sipp(
        &d.sip,
        "register_unknown_device.xml",
        Dev {
            id: "34020000001329999999",
            password: SHARED,
            lon: 0.0,
        },
        "u1",
    );
    assert!(ok, "unknown device not refused with 403:\n{log}");
    // The refused attempt did not end the standing registration.
    let (_, rec) = d.get(&format!("/recorders/{own}")).await;
    assert_eq!(rec["access"]["registered"], true);

    // Malformed datagrams get 400 naming the problem, or are dropped; the server keeps serving.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bad = format!(
        "REGISTER sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad\r\n\
         From: <sip:{own}@{DOMAIN}>;tag=1\r\nTo: <sip:{own}@{DOMAIN}>\r\nCall-ID: bad\r\nCSeq: 1 INVITE\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), &d.sip).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("a 400 answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request (CSeq method"),
        "{answer}"
    );
    for junk in [&b"\x00\x01garbage"[..], b"INVITE\r\n\r\n", &[0xff; 3000]] {
        sock.send_to(junk, &d.sip).await.unwrap();
    }
    let (ok, log) = sipp(
        &d.sip,
        "register_keepalive_position.xml",
        Dev {
            id: own,
            password: "Own#pass2026",
            lon: 121.4822,
        },
        "u1",
    );
    assert!(ok, "server stopped serving after junk:\n{log}");
    d.wait_for(&format!("/units/{officer}"), "second position", |v| {
        v["lon"].as_f64() == Some(121.4822)
    })
    .await;
    // MobilePosition by NOTIFY (as within a subscription) moves the officer too.
    let (ok, log) = sipp(
        &d.sip,
        "register_keepalive_position_notify.xml",
        Dev {
            id: own,
            password: "Own#pass2026",
            lon: 121.4833,
        },
        "u1",
    );
    assert!(ok, "NOTIFY scenario failed:\n{log}");
    d.wait_for(&format!("/units/{officer}"), "position by NOTIFY", |v| {
        v["lon"].as_f64() == Some(121.4833)
    })
    .await;
    let (status, _) = d.run.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_registrations_is_served() {
    let d = demo().await;
    let org = d.root_org().await;
    let ids: Vec<String> = (0..200)
        .map(|i| format!("340200000013200{:05}", 1000 + i))
        .collect();
    for id in &ids {
        let (s, v) = d
            .send(reqwest::Method::POST, "/recorders", json!({"device_id": id, "name": format!("记录仪{}", &id[15..]), "org_unit_id": org}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    // 200 devices at once, each its own SIPp process (SIPp takes a digest username only from
    // its command line): REGISTER twice (challenge, answer) and two MESSAGEs each; every one must
    // succeed.
    let dirs: Vec<tempfile::TempDir> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let started = Instant::now();
    let children: Vec<_> = ids
        .iter()
        .zip(&dirs)
        .map(|(id, dir)| {
            let dev = Dev {
                id,
                password: SHARED,
                lon: 121.4,
            };
            sipp_command(
                &d.sip,
                "register_keepalive_position.xml",
                &dev,
                "u1",
                dir.path(),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sipp (Debian package sip-tester)")
        })
        .collect();
    let mut failed = Vec::new();
    for ((child, dir), id) in children.into_iter().zip(&dirs).zip(&ids) {
        let (ok, log) = collect(child.wait_with_output().unwrap(), dir.path());
        if !ok && bind_clash(&log) {
            let dev = Dev {
                id,
                password: SHARED,
                lon: 121.4,
            };
            let (ok, log) = sipp(&d.sip, "register_keepalive_position.xml", dev, "u1");
            if !ok {
                failed.push(format!("{id}:\n{log}"));
            }
        } else if !ok {
            failed.push(format!("{id}:\n{log}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 200 flood registrations failed; first:\n{}",
        failed.len(),
        failed[0]
    );
    eprintln!("200 devices registered in {:?}", started.elapsed());
    let v = d
        .wait_for("/recorders", "all 200 registered", |v| {
            v["items"].as_array().is_some_and(|a| {
                a.iter()
                    .filter(|r| r["access"]["registered"] == json!(true))
                    .count()
                    == 200
            })
        })
        .await;
    // Only the flood's devices registered (the demo's own recorders are not simulated here).
    let registered: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["access"]["registered"] == json!(true))
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    assert!(registered.iter().all(|id| ids.iter().any(|i| i == id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_recorders_register_report_their_catalog_and_move_their_officers() {
    let d = demo_with(&[], &[("SHOUHU__MEDIA__GRACE_SECS", "1")]).await;
    // Every district's recorder registers over SIP and keeps its officer's marker moving.
    let list = d
        .wait_for("/recorders", "16 demo recorders registered", |v| {
            v["items"].as_array().is_some_and(|a| {
                a.len() == 16
                    && a.iter().all(|r| {
                        r["access"]["registered"] == json!(true)
                            && r["access"]["online"] == json!(true)
                    })
            })
        })
        .await;
    let first = list["items"][0]["device_id"].as_str().unwrap().to_string();
    let officer = list["items"][0]["officer_id"].as_str().unwrap().to_string();
    // The catalog (a GB2312 body with a Chinese channel name) and DeviceInfo were asked and stored.
    let rec = d
        .wait_for(
            &format!("/recorders/{first}"),
            "catalog and device info stored",
            |v| {
                v["channel_list"].as_array().is_some_and(|c| c.len() == 1)
                    && v["manufacturer"] == "Shouhu"
            },
        )
        .await;
    assert!(rec["channel_list"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("执法记录仪"));
    let first_fix = d
        .wait_for(&format!("/units/{officer}"), "a GB/T 28181 position", |v| {
            v["source"] == "gb28181"
        })
        .await;
    d.wait_for(&format!("/units/{officer}"), "the officer moves", |v| {
        v["time"] != first_fix["time"] && v["source"] == "gb28181"
    })
    .await;

    // Live video: the snapshot starts the stream (INVITE, PS over RTP/UDP from the simulated
    // recorder, our demuxer) and decodes its keyframe; an independent reader checks the JPEG.
    let channel = rec["channel_list"][0]["channel_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/streams/{first}/{channel}/snapshot.jpg",
            d.http
        ))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let jpeg = r.bytes().await.unwrap();
    let path = d._dir.path().join("snap.jpg");
    std::fs::write(&path, &jpeg).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        probe.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let v: Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(
        (
            v["streams"][0]["width"].as_u64(),
            v["streams"][0]["height"].as_u64()
        ),
        (Some(640), Some(360))
    );
    let (_, streams) = d.get("/streams").await;
    assert!(
        streams
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["device_id"] == json!(first) && s["frames"].as_u64() > Some(0)),
        "{streams}"
    );
    // The last viewer left: after the grace period the hub hangs up (BYE) and the stream is gone.
    d.wait_for("/streams", "the stream ends after the grace period", |v| {
        v.as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    let (_, rec) = d.get(&format!("/recorders/{first}")).await;
    assert_eq!(rec["access"]["streaming"], false);
    // The look is on record.
    let (_, audit) = d.get("/audit?action=stream.view").await;
    assert!(audit.to_string().contains(&first), "{audit}");
    let (status, _) = d.run.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_video_over_tcp_passive_and_active() {
    for transport in ["tcp-passive", "tcp-active"] {
        let d = demo_with(
            &[],
            &[
                ("SHOUHU__MEDIA__TRANSPORT", transport),
                ("SHOUHU__MEDIA__GRACE_SECS", "1"),
            ],
        )
        .await;
        let device = "31010000001320000001";
        let rec = d
            .wait_for(
                &format!("/recorders/{device}"),
                "registered with its catalog",
                |v| {
                    v["access"]["registered"] == json!(true)
                        && v["channel_list"].as_array().is_some_and(|c| !c.is_empty())
                },
            )
            .await;
        let channel = rec["channel_list"][0]["channel_id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/streams/{device}/{channel}/snapshot.jpg",
                d.http
            ))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        assert_eq!(
            status,
            200,
            "{transport}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.starts_with(&[0xFF, 0xD8]), "{transport}: a JPEG");
        let (_, streams) = d.get("/streams").await;
        assert!(
            streams
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["device_id"] == device && s["packets"].as_u64() > Some(0)),
            "{transport}: {streams}"
        );
        let (st, _) = d.run.stop();
        assert!(st.success());
    }
}

/// The channel of a demo recorder, registered with its catalog.
async fn demo_channel(d: &Demo, device: &str) -> String {
    let rec = d
        .wait_for(
            &format!("/recorders/{device}"),
            "registered with its catalog",
            |v| {
                v["access"]["registered"] == json!(true)
                    && v["channel_list"].as_array().is_some_and(|c| !c.is_empty())
            },
        )
        .await;
    rec["channel_list"][0]["channel_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn snapshot(d: &Demo, device: &str, channel: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/streams/{device}/{channel}/snapshot.jpg",
            d.http
        ))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_video_through_one_shared_rtp_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = demo_with(
        &[],
        &[
            ("SHOUHU__MEDIA__RTP_SHARED_PORT", &port.to_string()),
            ("SHOUHU__MEDIA__BIND_IP", "127.0.0.1"),
            ("SHOUHU__MEDIA__GRACE_SECS", "30"),
        ],
    )
    .await;
    // Two cameras (one H.264, the demo's H.265 one) into the same port at the same time.
    let devices = ["31010000001320000001", "31010000001320000016"];
    let mut channels = Vec::new();
    for dev in devices {
        channels.push(demo_channel(&d, dev).await);
    }
    let (a, b) = tokio::join!(
        snapshot(&d, devices[0], &channels[0]),
        snapshot(&d, devices[1], &channels[1])
    );
    for (dev, (status, body)) in devices.iter().zip([a, b]) {
        assert_eq!(status, 200, "{dev}: {}", String::from_utf8_lossy(&body));
        assert!(body.starts_with(&[0xFF, 0xD8]), "{dev}: a JPEG");
    }
    // Both streams are still up (grace period) and each got its own packets, none lost.
    let (_, streams) = d.get("/streams").await;
    for dev in devices {
        assert!(
            streams
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["device_id"] == dev && s["packets"].as_u64() > Some(10)),
            "{dev}: {streams}"
        );
    }
    let (_, stats) = d.get("/streams/stats").await;
    assert_eq!(stats["lost"], json!(0), "{stats}");
    let (st, log) = d.run.stop();
    assert!(st.success());
    assert!(
        log.iter().any(|l| l.contains("RTP shared port listening")),
        "the shared port was used"
    );
}

/// RFC 7798 depacketizer (single NAL unit, aggregation and fragmentation units) to Annex B.
#[derive(Default)]
struct Hevc {
    out: Vec<u8>,
    fu: Option<Vec<u8>>,
}

impl Hevc {
    fn push(&mut self, p: &[u8]) {
        if p.len() < 3 {
            return;
        }
        let t = (p[0] >> 1) & 0x3F;
        match t {
            48 => {
                let mut i = 2;
                while i + 2 <= p.len() {
                    let n = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                    i += 2;
                    if i + n > p.len() {
                        return;
                    }
                    self.nal(&p[i..i + n]);
                    i += n;
                }
            }
            49 => {
                let (s, e, ft) = (p[2] & 0x80 != 0, p[2] & 0x40 != 0, p[2] & 0x3F);
                if s {
                    let mut nal = vec![(p[0] & 0x81) | (ft << 1), p[1]];
                    nal.extend_from_slice(&p[3..]);
                    self.fu = Some(nal);
                } else if let Some(f) = &mut self.fu {
                    f.extend_from_slice(&p[3..]);
                }
                if e {
                    if let Some(f) = self.fu.take() {
                        self.nal(&f);
                    }
                }
            }
            _ => self.nal(p),
        }
    }

    fn nal(&mut self, n: &[u8]) {
        self.out.extend_from_slice(&[0, 0, 0, 1]);
        self.out.extend_from_slice(n);
    }
}

/// A WHEP viewer that offers H.265 (webrtc-rs as the browser) gets the H.265 camera's stream
/// passed through untranscoded, decodable by ffmpeg, and its AAC sound as Opus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_passes_through_to_a_viewer_that_offers_it() {
    use std::sync::{Arc, Mutex};
    use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_HEVC, MIME_TYPE_OPUS};
    use webrtc::api::APIBuilder;
    use webrtc::peer_connection::configuration::RTCConfiguration;
    use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
    use webrtc::rtp_transceiver::rtp_codec::{
        RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
    };
    use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
    use webrtc::rtp_transceiver::RTCRtpTransceiverInit;

    let d = demo_with(&[], &[("SHOUHU__MEDIA__GRACE_SECS", "1")]).await;
    let device = "31010000001320000016";
    let channel = demo_channel(&d, device).await;

    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_HEVC.into(),
                clock_rate: 90_000,
                ..Default::default()
            },
            payload_type: 126,
            ..Default::default()
        },
        RTPCodecType::Video,
    )
    .unwrap();
    m.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            payload_type: 111,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )
    .unwrap();
    let api = APIBuilder::new().with_media_engine(m).build();
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    }
    let video = Arc::new(Mutex::new((Hevc::default(), 0u32)));
    let audio_packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (v2, a2) = (video.clone(), audio_packets.clone());
    pc.on_track(Box::new(move |track, _, _| {
        let (v, a) = (v2.clone(), a2.clone());
        tokio::spawn(async move {
            let is_video = track.kind() == RTPCodecType::Video;
            while let Ok((p, _)) = track.read_rtp().await {
                if is_video {
                    let mut g = v.lock().unwrap();
                    g.0.push(&p.payload);
                    g.1 += p.header.marker as u32;
                } else {
                    a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Box::pin(async {})
    }));
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    let sdp = pc.local_description().await.unwrap().sdp;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/streams/{device}/{channel}/whep", d.http))
        .bearer_auth(&d.token)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let answer = r.text().await.unwrap();
    if status != 201 {
        let (_, log) = d.run.stop();
        let errors: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        panic!("WHEP answered {status}: {answer}\n{errors:#?}");
    }
    let location = location.expect("Location");
    assert!(answer.contains("H265/90000"), "{answer}");
    assert!(answer.to_lowercase().contains("opus/48000"), "{answer}");
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    // 50 pictures (two seconds) and some sound.
    let deadline = Instant::now() + Duration::from_secs(30);
    while video.lock().unwrap().1 < 50
        || audio_packets.load(std::sync::atomic::Ordering::Relaxed) < 20
    {
        if Instant::now() > deadline {
            let (pictures, audio) = (
                video.lock().unwrap().1,
                audio_packets.load(std::sync::atomic::Ordering::Relaxed),
            );
            let (_, log) = d.run.stop();
            let lines: Vec<&String> = log
                .iter()
                .filter(|l| l.contains("stream.") || l.contains("whep") || l.contains("ERROR"))
                .collect();
            panic!("pictures {pictures}, audio packets {audio}\n{lines:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pc.close().await.unwrap();
    let es = std::mem::take(&mut video.lock().unwrap().0.out);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("received.hevc");
    std::fs::write(&file, &es).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("codec_name=hevc"), "{text}");
    assert!(
        text.contains("width=640") && text.contains("height=360"),
        "{text}"
    );
    let frames: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(frames >= 40, "{text}");
    let del = reqwest::Client::new()
        .delete(format!("{}{location}", d.http))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert!(del.status() == 200 || del.status() == 404);
    let (st, _) = d.run.stop();
    assert!(st.success());
}

//! Media origin end to end: a live ingest takes RTP only from the address its camera registered
//! from. An attacker on another address (127.0.0.2; the simulated camera is on 127.0.0.1) sends
//! RTP to the stream's port (UDP), connects to it first (TCP passive), or sprays every SSRC the
//! `y=` format allows onto the shared port: nothing of it reaches the stream (no packet counted,
//! no loss, no gap), every refusal is counted (`/streams/stats`, and
//! `shouhu_rtp_dropped_total{reason="foreign_source"}` on the metrics listener), and the
//! camera's own stream still plays.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PW: &str = "Shouhu@2026";
/// The demo's first simulated camera.
const DEVICE: &str = "31010000001320000001";
/// Where the attacker sends from.
const ATTACKER: &str = "127.0.0.2";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP.
fn free_media_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

struct Demo {
    run: Running,
    http: String,
    token: String,
    metrics: u16,
    _dir: tempfile::TempDir,
}

async fn demo(env: &[(&str, String)]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let mut c = shouhu(dir.path());
    c.args(["demo", "--enterprises", "10", "--always-on-recorders", "0"])
        .env("SHOUHU__METRICS__LISTEN", format!("127.0.0.1:{metrics}"))
        .env("SHOUHU__MEDIA__BIND_IP", "127.0.0.1");
    for (k, v) in env {
        c.env(k, v);
    }
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Demo {
        run,
        http,
        token: r["token"].as_str().expect("token").to_string(),
        metrics,
        _dir: dir,
    }
}

impl Demo {
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

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.get(path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn channel(&self) -> String {
        let rec = self
            .wait_for(
                &format!("/recorders/{DEVICE}"),
                "registered with its catalog",
                |v| {
                    v["access"]["online"] == json!(true)
                        && v["channel_list"].as_array().is_some_and(|c| !c.is_empty())
                },
            )
            .await;
        assert!(
            rec["access"]["remote_addr"]
                .as_str()
                .is_none_or(|a| a.starts_with("127.0.0.1:")),
            "the camera registered from 127.0.0.1: {rec}"
        );
        rec["channel_list"][0]["channel_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A snapshot of the camera: (status, a JPEG?).
    async fn snapshot(&self, channel: &str) -> (u16, bool) {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/streams/{DEVICE}/{channel}/snapshot.jpg",
                self.http
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]))
    }

    async fn dropped(&self) -> u64 {
        self.get("/streams/stats").await["rtp_dropped_foreign_source"]
            .as_u64()
            .expect("rtp_dropped_foreign_source")
    }

    /// `shouhu_rtp_dropped_total{reason="foreign_source"}` from the metrics listener.
    async fn dropped_metric(&self) -> u64 {
        let m = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.lines()
            .find(|l| {
                l.starts_with("shouhu_rtp_dropped_total") && l.contains("reason=\"foreign_source\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// The camera's stream: (packets, lost).
    async fn stream(&self) -> (u64, u64) {
        let streams = self.get("/streams").await;
        let s = streams
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["device_id"] == DEVICE)
            .cloned()
            .unwrap_or(Value::Null);
        let stats = self.get("/streams/stats").await;
        (
            s["packets"].as_u64().unwrap_or(0),
            stats["lost"].as_u64().unwrap_or(0),
        )
    }
}

/// An RTP packet carrying the start of an MPEG-PS pack, as a camera sends it.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x60 | 0x80];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 3600).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0xBA, 0x44, 0, 4, 0, 4, 1, 0, 0, 3, 0xF8]);
    p.extend_from_slice(&[0xEE; 200]);
    p
}

/// A UDP socket on the attacker's address.
async fn attacker_udp() -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind((ATTACKER, 0))
        .await
        .expect("bind 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_from_another_address_never_reaches_a_udp_stream() {
    let port = free_media_port();
    let d = demo(&[
        ("SHOUHU__MEDIA__RTP_PORT_MIN", port.to_string()),
        ("SHOUHU__MEDIA__RTP_PORT_MAX", port.to_string()),
        ("SHOUHU__MEDIA__GRACE_SECS", "60".into()),
    ])
    .await;
    let channel = d.channel().await;
    // The camera's stream starts (the only RTP port of the range is `port`).
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let before = d.dropped().await;
    let (packets_before, lost_before) = d.stream().await;
    assert!(packets_before > 0);
    // The attack: 300 packets onto the live stream's port, every SSRC the y= format allows for
    // the first 300 sequence numbers.
    let sock = attacker_udp().await;
    const N: u64 = 300;
    for i in 0..N {
        let ssrc = 200_000_000 + (i as u32 * 37) % 10_000;
        sock.send_to(&rtp(40_000 + i as u16, ssrc), ("127.0.0.1", port))
            .await
            .unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Every one refused and counted, in the stats and the metric.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.dropped().await < before + N {
        assert!(
            Instant::now() < deadline,
            "dropped {} of {N}",
            d.dropped().await - before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.dropped().await, before + N, "only the attacker's packets");
    assert!(d.dropped_metric().await >= before + N);
    // Nothing of it reached the stream: no loss, no reordering gap; the camera still plays (its
    // next packets arrive: the counters are read, not pushed, so wait for them).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (packets_after, lost_after) = loop {
        let (p, l) = d.stream().await;
        if p > packets_before {
            break (p, l);
        }
        assert!(Instant::now() < deadline, "the camera keeps sending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(packets_after > packets_before);
    assert_eq!(lost_after, lost_before, "no gap from a foreign sequence");
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let (st, _) = d.run.stop();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_from_another_address_is_closed_and_the_camera_still_connects() {
    let port = free_media_port();
    let d = demo(&[
        ("SHOUHU__MEDIA__TRANSPORT", "tcp-passive".into()),
        ("SHOUHU__MEDIA__RTP_PORT_MIN", port.to_string()),
        ("SHOUHU__MEDIA__RTP_PORT_MAX", port.to_string()),
        ("SHOUHU__MEDIA__GRACE_SECS", "60".into()),
    ])
    .await;
    let channel = d.channel().await;
    let before = d.dropped().await;
    // The attacker waits for the port to open and connects at once from 127.0.0.2, before the
    // camera (which connects only once it has answered the INVITE), and sends RTP.
    let attacker = std::thread::spawn(move || -> Result<bool, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let target: SocketAddr = ([127, 0, 0, 1], port).into();
            let from: SocketAddr = format!("{ATTACKER}:0").parse().unwrap();
            loop {
                let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                s.bind(from).map_err(|e| e.to_string())?;
                if let Ok(mut t) = s.connect(target).await {
                    let p = rtp(1, 200_000_001);
                    let mut framed = (p.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&p);
                    let _ = t.write_all(&framed).await;
                    let mut b = [0u8; 64];
                    // Closed by the server: end of stream or a reset, not a timeout.
                    return Ok(
                        match tokio::time::timeout(Duration::from_secs(10), t.read(&mut b)).await {
                            Ok(Ok(0)) => true,
                            Ok(Ok(_)) | Err(_) => false,
                            Ok(Err(e)) => matches!(
                                e.kind(),
                                std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                            ),
                        },
                    );
                }
                if Instant::now() > deadline {
                    return Err("the media port never opened".into());
                }
                std::thread::yield_now();
            }
        })
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The camera's stream starts: the first connection is the attacker's, and it is closed.
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let closed = tokio::task::spawn_blocking(move || attacker.join().unwrap())
        .await
        .unwrap()
        .expect("the attacker connected");
    assert!(closed, "the server closed the attacker's connection");
    assert!(
        d.dropped().await > before,
        "the refused connection is counted"
    );
    assert!(d.dropped_metric().await > 0);
    let (packets, lost) = d.stream().await;
    assert!(packets > 0 && lost == 0, "{packets} {lost}");
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let (st, log) = d.run.stop();
    assert!(st.success());
    assert!(
        log.iter().any(|l| l.contains("stream.foreign_tcp_refused")),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ssrc_on_the_shared_port_from_another_address_is_dropped() {
    let port = free_media_port();
    let d = demo(&[
        ("SHOUHU__MEDIA__RTP_SHARED_PORT", port.to_string()),
        ("SHOUHU__MEDIA__GRACE_SECS", "60".into()),
    ])
    .await;
    let channel = d.channel().await;
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let (packets_before, lost_before) = d.stream().await;
    let before = d.dropped().await;
    // The attack: the y= format leaves four digits free — send every live SSRC of the domain
    // (0 + the domain's digits 4–8 + 0000..9999) from 127.0.0.2. One of them is the stream's.
    let sock = attacker_udp().await;
    let domain: u32 = 200_000_000; // "0" + "20000" of the demo domain 3402000000, as a number
    for i in 0..10_000u32 {
        let ssrc = domain + i;
        sock.send_to(
            &rtp(50_000u16.wrapping_add(i as u16), ssrc),
            ("127.0.0.1", port),
        )
        .await
        .unwrap();
        if i % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // The stream's SSRC came from the wrong address: refused as foreign; the rest are unknown.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.dropped().await == before {
        assert!(Instant::now() < deadline, "no foreign packet counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (packets_after, lost_after) = d.stream().await;
    assert!(packets_after > packets_before);
    assert_eq!(
        lost_after, lost_before,
        "nothing foreign reached the stream"
    );
    assert_eq!(d.snapshot(&channel).await, (200, true));
    let (st, _) = d.run.stop();
    assert!(st.success());
}

//! `shouhu demo` stays on its machine: with no listen address configured, JT/T 808 and SIP listen
//! on 127.0.0.1 only, so a device on another address (here 127.0.0.2, which Linux routes to the
//! loopback interface too) reaches neither; a listen address set in the environment still wins.

use std::net::SocketAddr;
use std::time::Duration;

use shouhu_e2e::{shouhu, Running};

fn demo(env: &[(&str, &str)]) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    // The helper points every listener at 127.0.0.1:0; the demo's own defaults are under test.
    c.env_remove("SHOUHU__JT808__LISTEN")
        .env_remove("SHOUHU__SIP__LISTEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(["demo", "--enterprises", "5", "--no-simulation"]);
    (Running::start(c, "http"), dir)
}

/// A UDP datagram from 127.0.0.2 to `to`: `true` when the kernel reports nobody listening
/// (ICMP port unreachable surfaces as `ConnectionRefused` on a connected socket).
async fn udp_refused(to: SocketAddr) -> bool {
    let s = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    s.connect(to).await.unwrap();
    s.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_listens_on_loopback_only() {
    let (run, _dir) = demo(&[]);
    let jt: SocketAddr = run
        .jt808
        .clone()
        .expect("JT/T 808 address")
        .parse()
        .unwrap();
    let sip: SocketAddr = run.sip.clone().expect("SIP address").parse().unwrap();
    assert_eq!(jt, "127.0.0.1:7611".parse().unwrap());
    assert_eq!(sip, "127.0.0.1:5060".parse().unwrap());
    // The legitimate road: a terminal on the machine connects.
    tokio::net::TcpStream::connect(jt)
        .await
        .expect("JT/T 808 on 127.0.0.1");
    // Another address of the machine reaches neither listener.
    let other = |a: SocketAddr| SocketAddr::new("127.0.0.2".parse().unwrap(), a.port());
    let e = tokio::net::TcpStream::connect(other(jt)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let e = tokio::net::TcpStream::connect(other(sip))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    assert!(
        udp_refused(other(sip)).await,
        "SIP over UDP answered on 127.0.0.2"
    );
    let (st, _) = run.stop();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_listen_address_wins() {
    let (run, _dir) = demo(&[
        ("SHOUHU__JT808__LISTEN", "0.0.0.0:0"),
        ("SHOUHU__SIP__LISTEN", "127.0.0.2:0"),
    ]);
    let jt: SocketAddr = run
        .jt808
        .clone()
        .expect("JT/T 808 address")
        .parse()
        .unwrap();
    let sip: SocketAddr = run.sip.clone().expect("SIP address").parse().unwrap();
    assert!(jt.ip().is_unspecified(), "{jt}");
    assert_eq!(sip.ip().to_string(), "127.0.0.2");
    let (st, _) = run.stop();
    assert!(st.success());
}

//! Limits on every listener (issue 21 item 2), attacked over real sockets: a slow-loris and a
//! connection flood on HTTP, SIP over TCP and JT/T 808, a stalled request body and an idle
//! keep-alive connection on HTTP, a flood from many addresses bounded in connections and
//! memory. Each attack is cut off at its limit while another client is served. The flood comes
//! from 127.0.0.1 (or 127.0.1.x), the other client from 127.0.0.2.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from `from` to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Read until the peer closes (or `max` passes): what was read, and whether it closed.
async fn read_until_closed(s: &mut TcpStream, max: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + max;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Send `bytes` one at a time, `every` apart, then `a`s, until the peer stops taking them; how
/// many went.
async fn dribble(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) -> usize {
    let mut sent = 0;
    for b in bytes.iter().chain(std::iter::repeat(&b'a')).take(10_000) {
        if w.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(every).await;
    }
    sent
}

/// One HTTP/1.1 GET on an open connection; the status.
async fn get_on(s: &mut TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: shouhu\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Wait (at most 10 s) until a listener the server binds as it starts is bound.
async fn listening<T>(addr: impl Fn() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(a) = addr() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the listener was not bound in 10 s");
}

fn http_addr(s: &common::Server) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slow_loris_stalled_body_and_idle_connection_are_cut_off() {
    let s = common::start_with(common::Engine::Sqlite, |c| {
        c.http.header_timeout_secs = 1;
        c.http.body_timeout_secs = 1;
        c.http.idle_timeout_secs = 1;
    })
    .await
    .unwrap();
    let addr = http_addr(&s);

    // A slow-loris: a header line a byte at a time, never finished.
    let loris = connect_from("127.0.0.1", addr).await;
    let (mut r, w) = loris.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(dribble(
        w,
        b"GET /healthz HTTP/1.1\r\nHost: shouhu\r\nX-Slow: ".to_vec(),
        Duration::from_millis(100),
    ));
    // Meanwhile another client is served.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(get_on(&mut other, "/healthz").await, 200);
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the slow-loris kept its connection");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    let sent = writer.await.unwrap();
    assert!(sent < 150, "{sent} bytes dribbled before the cut");

    // A body that stalls: promised 100 bytes, sent 10.
    let mut c = connect_from("127.0.0.1", addr).await;
    c.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: shouhu\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut c, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        (400..500).contains(&status),
        "a stalled body is answered 4xx: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // An idle keep-alive connection is closed once nothing is in flight.
    let mut c = connect_from("127.0.0.1", addr).await;
    assert_eq!(get_on(&mut c, "/healthz").await, 200);
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut c, Duration::from_secs(15)).await;
    assert!(closed, "the idle connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_per_address() {
    let s = common::start_with(common::Engine::Sqlite, |c| {
        c.http.max_connections_per_address = 8;
        c.http.header_timeout_secs = 60;
    })
    .await
    .unwrap();
    let addr = http_addr(&s);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    // The first eight are served; the other twelve were closed unread.
    let mut extra = held.split_off(8);
    for c in &mut held {
        assert_eq!(get_on(c, "/healthz").await, 200);
    }
    for c in &mut extra {
        let (got, closed) = read_until_closed(c, Duration::from_secs(10)).await;
        assert!(closed && got.is_empty(), "an excess connection was served");
    }
    // Another address is served while the eight are held.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(get_on(&mut other, "/healthz").await, 200);
    // A held connection given back makes room.
    drop(held.pop());
    let mut again = None;
    for _ in 0..200 {
        let mut c = connect_from("127.0.0.1", addr).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: shouhu\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            if n > 0 {
                again = Some(String::from_utf8_lossy(&buf[..n]).to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        again.is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "a freed slot is reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_tcp_slow_loris_and_flood_are_cut_off() {
    let s = common::start_with(common::Engine::Sqlite, |c| {
        c.sip.tcp_idle_timeout_secs = 1;
        c.sip.max_tcp_per_address = 4;
    })
    .await
    .unwrap();
    let (_, tcp) = listening(|| s.state.sip.local_addrs()).await;
    // A slow-loris: a REGISTER a byte at a time.
    let loris = connect_from("127.0.0.1", tcp).await;
    let (mut r, w) = loris.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(dribble(
        w,
        b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKslow\r\n".to_vec(),
        Duration::from_millis(100),
    ));
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the slow-loris kept its SIP connection");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(writer.await.unwrap() < 150);
    // A flood from one address: four are kept, the rest closed at once.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from("127.0.0.1", tcp).await);
    }
    let mut extra = held.split_off(4);
    for c in &mut extra {
        let (got, closed) = read_until_closed(c, Duration::from_secs(10)).await;
        assert!(closed && got.is_empty());
    }
    // A held one and another address still get answers (an OPTIONS is answered).
    let options = |n: u32| {
        format!(
            "OPTIONS sip:34020000002000000001@3402000000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKopt{n}\r\n\
             From: <sip:34020000001320000077@3402000000>;tag=o{n}\r\nTo: <sip:34020000002000000001@3402000000>\r\n\
             Call-ID: opt{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut other = connect_from("127.0.0.2", tcp).await;
    for (i, c) in [&mut held[0], &mut other].into_iter().enumerate() {
        c.write_all(options(i as u32).as_bytes()).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 "),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jt808_bytes_without_frames_do_not_keep_a_connection() {
    let s = common::start_with(common::Engine::Sqlite, |c| {
        c.jt808.idle_timeout_secs = 1;
        c.jt808.auth_timeout_secs = 60;
    })
    .await
    .unwrap();
    let addr = listening(|| s.state.jt808.local_addr()).await;
    // Bytes that never make a frame (no closing 0x7e), one at a time.
    let c = connect_from("127.0.0.1", addr).await;
    let (mut r, w) = c.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(dribble(
        w,
        vec![0x7e, 0x01, 0x02, 0x00],
        Duration::from_millis(100),
    ));
    // (After these four, `a`s: a frame that never ends.)
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "stray bytes kept the terminal connection");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(writer.await.unwrap() < 150);
}

/// Resident memory of this process, bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_flood_from_many_addresses_is_bounded_in_connections_and_memory() {
    let s = common::start_with(common::Engine::Sqlite, |c| {
        c.http.max_connections = 100;
        c.http.max_connections_per_address = 10;
        c.http.header_timeout_secs = 5;
    })
    .await
    .unwrap();
    let addr = http_addr(&s);
    let before = rss_bytes();
    // 400 connections from 40 addresses, each sending a partial request head.
    let mut flood = Vec::new();
    for i in 0..400u32 {
        let from = format!("127.0.1.{}", 1 + i % 40);
        let mut c = connect_from(&from, addr).await;
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: shouhu\r\nX-Pad: ")
            .await;
        flood.push(c);
    }
    // At most 100 are held open (waiting for their heads, up to 5 s); the rest were closed
    // unread at once.
    let reads = flood.iter_mut().map(|c| async move {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), c.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    });
    let refused = futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
    assert!(refused >= 300, "only {refused} of 400 refused at once");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew {} MiB", grown >> 20);
    // Once the held ones time out, a new client is served again.
    let mut served = false;
    for _ in 0..100 {
        let mut c = connect_from("127.0.0.2", addr).await;
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: shouhu\r\n\r\n")
            .await;
        let mut buf = [0u8; 32];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await {
            if buf[..n].starts_with(b"HTTP/1.1 200") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "served again after the flood timed out");
}

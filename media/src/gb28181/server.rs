//! The SIP transports: one UDP socket and one TCP listener around the sans-IO [`Platform`].
//!
//! Every datagram and every framed TCP message is handed to the platform under one lock, and
//! the outputs are carried out after the lock is released: bytes go out on the socket they
//! belong to, unit events to the [`UnitEventSink`], device updates to the channel the binary
//! reads (it persists them). A tick task drives the platform's timers. Bad bytes from one peer
//! close at most that peer's TCP connection; nothing here panics on input.
//!
//! With a nonce store ([`SipServer::use_nonce_store`], the database every signalling node
//! shares), digest nonces are single-use across nodes and restarts: challenging stores nothing
//! (nonces are stateless HMACs), and only a `REGISTER` whose digest the platform verified is
//! recorded as used — an insert that conflicts when the nonce was used before (then `401
//! stale`) — in a task of its own, so no keepalive waits for the database. Used nonces past
//! their expiry are purged once a minute. The platform's random ids are
//! seeded from the OS's CSPRNG. Messages the platform drops (not from the device's registered
//! address and transport) are counted in `shouhu_sip_dropped_total{reason}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::platform::{
    DeviceUpdate, Output, Peer, Platform, PlatformConfig, StreamUpdate, Transport,
};
use super::register::Secret;
use super::sdp::Offer;
use super::Now;
use crate::model::UnitEventSink;
use crate::sip::message::{parse_datagram, Framed, StreamFramer};
use crate::sip::Message;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct SipServerConfig {
    /// The platform's settings.
    pub platform: PlatformConfig,
    /// Most TCP connections at once.
    pub max_tcp_connections: usize,
    /// Most TCP connections at once from one address (IPv6: its /64).
    pub max_tcp_per_address: usize,
    /// A TCP connection that delivers no whole message for this long is closed (stray bytes
    /// do not restart the timer).
    pub tcp_idle_timeout: Duration,
}

impl Default for SipServerConfig {
    fn default() -> Self {
        Self {
            platform: PlatformConfig::default(),
            max_tcp_connections: 20_000,
            max_tcp_per_address: 64,
            tcp_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct SipStats {
    /// Messages received (both transports).
    pub received: AtomicU64,
    /// Messages that did not parse.
    pub malformed: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages dropped as not coming from the device they concern.
    pub dropped: AtomicU64,
}

/// A registered device's access state as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessState {
    /// Keepalives arriving.
    pub online: bool,
    /// `UDP` / `TCP`.
    pub transport: &'static str,
    /// Where it registered from.
    pub remote: SocketAddr,
    /// Last message, UTC ms.
    pub last_seen_ms: i64,
    /// Registration end, UTC ms.
    pub registered_until_ms: i64,
}

/// Who waits for a `RecordInfo` answer.
type RecordWaiter = tokio::sync::oneshot::Sender<Vec<super::manscdp::RecordItem>>;

struct Inner {
    platform: Mutex<Platform>,
    udp: OnceLock<Arc<UdpSocket>>,
    addrs: OnceLock<(SocketAddr, SocketAddr)>,
    tcp: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Open TCP connections per source key (the address; IPv6 its /64).
    tcp_per_source: Mutex<HashMap<std::net::IpAddr, usize>>,
    sink: Arc<dyn UnitEventSink>,
    updates: mpsc::UnboundedSender<DeviceUpdate>,
    streams: OnceLock<mpsc::UnboundedSender<StreamUpdate>>,
    origin: Instant,
    next_conn: AtomicU64,
    stats: SipStats,
    cfg: SipServerConfig,
    /// `RecordInfo` queries waiting for their answer, by (device, SN).
    records: Mutex<HashMap<(String, u32), RecordWaiter>>,
    /// The shared single-use nonce store, when set.
    nonce_db: OnceLock<shouhu_storage::Db>,
}

/// The SIP server: created with [`SipServer::new`], serving once [`SipServer::run`] hands it
/// bound sockets. Cheap to clone.
#[derive(Clone)]
pub struct SipServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipServer")
            .field("addrs", &self.inner.addrs.get())
            .finish()
    }
}

impl Inner {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.origin.elapsed().as_millis() as u64,
            utc_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    fn with_platform(&self, f: impl FnOnce(&mut Platform, Now)) -> Vec<Output> {
        let now = self.now();
        let mut p = self.platform.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p, now);
        p.take_outputs()
    }

    /// Hand a parsed message to the platform. With a nonce store, a `REGISTER` whose digest is
    /// right comes back to have its nonce spent there: that happens in a task of its own, so
    /// nothing else (a keepalive, another device) waits for the database.
    async fn deliver(self: &Arc<Self>, peer: Peer, msg: Message) {
        let mut spend = None;
        let out = self.with_platform(|p, now| spend = p.receive(peer, msg, now));
        self.carry_out(out).await;
        let Some(spend) = spend else { return };
        let Some(db) = self.nonce_db.get().cloned() else {
            // Not reached: the platform asks only when a store is set.
            return;
        };
        let inner = self.clone();
        tokio::spawn(async move {
            let first_use = match db
                .sip_nonces()
                .spend(spend.nonce(), spend.expires_at_ms())
                .await
            {
                Ok(first) => first,
                Err(e) => {
                    tracing::warn!(error = %e, "sip.nonce_store_failed");
                    false
                }
            };
            let out = inner.with_platform(|p, now| p.on_nonce_spent(spend, first_use, now));
            inner.carry_out(out).await;
        });
    }

    async fn carry_out(&self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Dropped { reason, peer } => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("shouhu_sip_dropped_total", "reason" => reason).increment(1);
                    tracing::debug!(remote = %peer.addr, transport = peer.transport.token(), reason, "sip.dropped");
                }
                Output::Send { peer, bytes } => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    match peer.transport {
                        Transport::Udp => {
                            let Some(udp) = self.udp.get() else { continue };
                            if let Err(e) = udp.send_to(&bytes, peer.addr).await {
                                tracing::debug!(remote = %peer.addr, error = %e, "sip.udp_send_failed");
                            }
                        }
                        Transport::Tcp(conn) => {
                            let tx = self
                                .tcp
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&conn)
                                .cloned();
                            if let Some(tx) = tx {
                                if tx.try_send(bytes).is_err() {
                                    tracing::warn!(remote = %peer.addr, "sip.tcp_backlog_full");
                                }
                            }
                        }
                    }
                }
                Output::Event(e) => self.sink.publish(e),
                Output::Device(DeviceUpdate::RecordInfo {
                    device_id,
                    sn,
                    items,
                }) => {
                    let waiter = self
                        .records
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(device_id, sn));
                    if let Some(tx) = waiter {
                        let _ = tx.send(items);
                    }
                }
                Output::Device(u) => {
                    let _ = self.updates.send(u);
                }
                Output::Stream(u) => match self.streams.get() {
                    Some(tx) => {
                        let _ = tx.send(u);
                    }
                    None => tracing::debug!(update = ?u, "sip.stream_update_unclaimed"),
                },
            }
        }
    }
}

impl SipServer {
    /// A server that is not yet listening. Device updates (registration, link, info, catalog) go
    /// to `updates`; unit events (device ids as unit ids) to `sink`.
    pub fn new(
        cfg: SipServerConfig,
        nonce_secret: [u8; 32],
        sink: Arc<dyn UnitEventSink>,
        updates: mpsc::UnboundedSender<DeviceUpdate>,
    ) -> SipServer {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        SipServer {
            inner: Arc::new(Inner {
                platform: Mutex::new(Platform::new(cfg.platform.clone(), nonce_secret, seed)),
                udp: OnceLock::new(),
                addrs: OnceLock::new(),
                tcp: Mutex::new(HashMap::new()),
                tcp_per_source: Mutex::new(HashMap::new()),
                sink,
                updates,
                streams: OnceLock::new(),
                origin: Instant::now(),
                next_conn: AtomicU64::new(1),
                stats: SipStats::default(),
                cfg,
                records: Mutex::new(HashMap::new()),
                nonce_db: OnceLock::new(),
            }),
        }
    }

    /// Keep digest nonces in `db` (single-use across nodes and restarts) instead of the
    /// platform's memory. Call before [`SipServer::run`]; later calls do nothing.
    pub fn use_nonce_store(&self, db: shouhu_storage::Db) {
        if self.inner.nonce_db.set(db).is_ok() {
            self.inner
                .platform
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .use_shared_nonces();
        }
    }

    /// Serve on bound sockets until `shutdown` turns true. Call once.
    pub fn run(
        &self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let udp_addr = udp.local_addr()?;
        let tcp_addr = tcp.local_addr()?;
        if self.inner.udp.set(Arc::new(udp)).is_err() {
            return Err(std::io::Error::other("SIP server already running"));
        }
        let _ = self.inner.addrs.set((udp_addr, tcp_addr));
        if self.inner.cfg.platform.advertised.is_empty() {
            let host = advertised_ip(udp_addr);
            let adv = SocketAddr::new(host, udp_addr.port()).to_string();
            tracing::info!(advertise = %adv, "sip.advertise");
            self.inner
                .platform
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_advertised(adv);
        }
        let inner = self.inner.clone();
        tokio::spawn(udp_loop(inner.clone(), shutdown.clone()));
        tokio::spawn(tcp_loop(inner.clone(), tcp, shutdown.clone()));
        if let Some(db) = self.inner.nonce_db.get().cloned() {
            tokio::spawn(purge_nonces(db, shutdown.clone()));
        }
        tokio::spawn(tick_loop(inner, shutdown));
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, "SIP listening");
        Ok(())
    }

    /// The UDP and TCP addresses served, once running.
    pub fn local_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.inner.addrs.get().copied()
    }

    /// Counters.
    pub fn stats(&self) -> &SipStats {
        &self.inner.stats
    }

    /// Add or replace a known device.
    pub fn set_device(&self, device_id: &str, secret: Secret) {
        let _ = self
            .inner
            .with_platform(|p, _| p.set_device(device_id, secret));
    }

    /// Forget a device; a standing registration ends now.
    pub async fn remove_device(&self, device_id: &str) {
        let out = self.inner.with_platform(|p, _| p.remove_device(device_id));
        self.inner.carry_out(out).await;
    }

    /// Ask a registered device a MANSCDP query; `false` when it is not registered.
    pub async fn query(&self, device_id: &str, cmd_type: &str) -> bool {
        let mut ok = false;
        let out = self
            .inner
            .with_platform(|p, now| ok = p.query(device_id, cmd_type, now));
        self.inner.carry_out(out).await;
        ok
    }

    /// The live-stream dialog updates (the stream hub takes them). `None` after the first call.
    pub fn stream_updates(&self) -> Option<mpsc::UnboundedReceiver<StreamUpdate>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.streams.set(tx).ok()?;
        Some(rx)
    }

    /// Ask a device to stream a channel (see [`Platform::invite`]); the Call-ID on success.
    ///
    /// `before_send` gets the dialog's Call-ID before the INVITE leaves, so that whoever waits
    /// for the answer is registered when it comes: a device on the same network answers in less
    /// time than a busy task takes to be scheduled again.
    pub async fn invite(
        &self,
        device_id: &str,
        channel_id: &str,
        offer: &Offer,
        before_send: impl FnOnce(&str),
    ) -> Result<String, &'static str> {
        let mut r = Err("not started");
        let out = self
            .inner
            .with_platform(|p, now| r = p.invite(device_id, channel_id, offer, now));
        if let Ok(call_id) = &r {
            before_send(call_id);
        }
        self.inner.carry_out(out).await;
        r
    }

    /// The footage a device's channel stored between two instants (GB/T 28181 `RecordInfo`),
    /// every page of the answer collected. `None` when the device is not registered or does not
    /// answer within `timeout`.
    pub async fn record_info(
        &self,
        device_id: &str,
        channel_id: &str,
        start_ms: i64,
        end_ms: i64,
        timeout: std::time::Duration,
    ) -> Option<Vec<super::manscdp::RecordItem>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut sn = None;
        let out = self.inner.with_platform(|p, now| {
            sn = p.record_info(device_id, channel_id, start_ms, end_ms, now);
            if let Some(sn) = sn {
                self.inner
                    .records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((device_id.to_string(), sn), tx);
            }
        });
        let sn = sn?;
        self.inner.carry_out(out).await;
        let r = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if r.is_none() {
            self.inner
                .records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(device_id.to_string(), sn));
        }
        r
    }

    /// End a live-stream dialog.
    pub async fn bye(&self, call_id: &str) {
        let out = self.inner.with_platform(|p, now| p.bye(call_id, now));
        self.inner.carry_out(out).await;
    }

    /// The address the platform advertises (for SDP when `media.advertise` is unset).
    pub fn advertised(&self) -> String {
        let p = self
            .inner
            .platform
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.config().advertised.clone()
    }

    /// A device's access state, when registered.
    pub fn access(&self, device_id: &str) -> Option<AccessState> {
        let now = self.inner.now();
        let p = self
            .inner
            .platform
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.device(device_id).map(|d| AccessState {
            online: d.online,
            transport: d.peer.transport.token(),
            remote: d.peer.addr,
            last_seen_ms: d.last_seen_utc_ms,
            registered_until_ms: now.utc_ms + d.registered_until_ms as i64 - now.mono_ms as i64,
        })
    }

    /// How many devices are registered.
    pub fn registered_count(&self) -> usize {
        let p = self
            .inner
            .platform
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.registered().count()
    }
}

/// The address devices can reach: the bound one, or for a wildcard the address of the interface
/// with the default route (found by connecting a UDP socket, which sends nothing), else loopback.
fn advertised_ip(bound: SocketAddr) -> std::net::IpAddr {
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

async fn udp_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let Some(udp) = inner.udp.get().cloned() else {
        return;
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems; keep serving.
                    tracing::debug!(error = %e, "sip.udp_recv_error");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        inner.stats.received.fetch_add(1, Ordering::Relaxed);
        let bytes = &buf[..n];
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue; // NAT keep-alive
        }
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        match parse_datagram(bytes) {
            Ok(msg) => inner.deliver(peer, msg).await,
            Err(e) => {
                inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
                let out = inner.with_platform(|p, now| p.on_parse_error(peer, e, now));
                inner.carry_out(out).await;
            }
        }
    }
}

async fn tcp_loop(inner: Arc<Inner>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "sip.accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let open = inner.tcp.lock().unwrap_or_else(|e| e.into_inner()).len();
        if open >= inner.cfg.max_tcp_connections {
            tracing::warn!(remote = %from, open, "sip.tcp_connection_refused");
            metrics::counter!("shouhu_sip_tcp_refused_total", "reason" => "global").increment(1);
            continue;
        }
        let source = source_key(from.ip());
        {
            let mut per = inner
                .tcp_per_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = per.entry(source).or_insert(0);
            if *n >= inner.cfg.max_tcp_per_address {
                tracing::debug!(remote = %from, open = *n, "sip.tcp_connection_refused_per_address");
                metrics::counter!("shouhu_sip_tcp_refused_total", "reason" => "per_address")
                    .increment(1);
                continue;
            }
            *n += 1;
        }
        let _ = stream.set_nodelay(true);
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(tcp_connection(
            inner.clone(),
            stream,
            from,
            conn,
            shutdown.clone(),
        ));
    }
}

async fn tcp_connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    from: SocketAddr,
    conn: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    inner
        .tcp
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(conn, tx);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        transport: Transport::Tcp(conn),
        addr: from,
    };
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 4 * 1024];
    // The idle timer restarts on whole messages only: a byte now and then (a slow-loris)
    // does not keep the connection.
    let mut last_message = tokio::time::Instant::now();
    let reason = loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => break "closed by peer".to_string(),
                Ok(n) => n,
                Err(e) => break e.to_string(),
            },
            _ = tokio::time::sleep_until(last_message + inner.cfg.tcp_idle_timeout) => {
                break "idle (no whole message)".to_string()
            }
            _ = shutdown.changed() => break "shutdown".to_string(),
        };
        framer.push(&buf[..n]);
        let mut fatal = None;
        loop {
            match framer.next() {
                Ok(None) => break,
                Ok(Some(Framed::Message(msg))) => {
                    last_message = tokio::time::Instant::now();
                    inner.stats.received.fetch_add(1, Ordering::Relaxed);
                    inner.deliver(peer, msg).await;
                }
                Ok(Some(Framed::Bad(e))) => {
                    inner.stats.received.fetch_add(1, Ordering::Relaxed);
                    inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    let out = inner.with_platform(|p, now| p.on_parse_error(peer, e, now));
                    inner.carry_out(out).await;
                }
                Err(e) => {
                    inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    fatal = Some(format!("unframable stream: {}", e.reason));
                    break;
                }
            }
        }
        if let Some(f) = fatal {
            break f;
        }
    };
    tracing::info!(remote = %from, reason = %reason, "sip.tcp_closed");
    inner
        .tcp
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn);
    {
        let mut per = inner
            .tcp_per_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let source = source_key(from.ip());
        if let Some(n) = per.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&source);
            }
        }
    }
    writer.abort();
    let out = inner.with_platform(|p, _| p.on_connection_closed(conn));
    inner.carry_out(out).await;
}

/// The key connections are counted under: the address, or for IPv6 its /64 (one subscriber's
/// prefix).
fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Delete expired nonces from the store once a minute.
async fn purge_nonces(db: shouhu_storage::Db, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        match db.sip_nonces().purge_expired(now_ms).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "sip.nonces_purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sip.nonce_store_failed"),
        }
    }
}

async fn tick_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let out = inner.with_platform(|p, now| p.on_tick(now));
        inner.carry_out(out).await;
    }
}

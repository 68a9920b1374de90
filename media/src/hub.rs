//! The stream hub: one ingest per camera channel, fanned out to every consumer.
//!
//! [`StreamHub::watch`] returns a [`Viewer`]; the first viewer of a channel starts the ingest
//! (an RTP port from the configured range, `INVITE` through the SIP server, RTP → reorder → PS
//! demux → frames), later viewers join it and get the cached group of pictures first, so they
//! start at a keyframe at once. When the last viewer leaves, the stream stays up for
//! `grace`, then `BYE`. No media within `no_media_timeout` ends the stream with a log line that
//! names the likely cause (nothing on the port: the SDP address or NAT; packets from another
//! SSRC; packets that are not RTP).
//!
//! Media origin: an ingest latches to the IP address the device registered from
//! ([`SipServer::access`]). Datagrams from any other address are dropped, a TCP-passive
//! connection from elsewhere is closed (the listener keeps waiting for the device), TCP-active
//! connects to the registered address whatever the SDP answer's `c=` says; each refusal is
//! counted ([`crate::stats::RtpDrops`], `shouhu_rtp_dropped_total{reason}`). SSRCs are random
//! within the GB/T 28181 `y=` format, but with four free digits that is no defence: the address
//! latch is. On the shared port a packet is routed by SSRC only when it comes from the claiming
//! stream's device address; a device that ignores `y=` is routed by its address while only one
//! of its streams waits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

use crate::gb28181::sdp::{self, MediaTransport, Offer};
use crate::gb28181::server::SipServer;
use crate::gb28181::StreamUpdate;
use crate::ps::{Codec, Frame, PsDemuxer};
use crate::rtp::{Ordered, Packet, Reorder};
use crate::stats::{DropReason, RtpDrops};
use shouhu_storage::model::{ChannelId, DeviceId};

/// Whether two addresses are the same host (an IPv4-mapped IPv6 address equals its IPv4 one).
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Hub settings (`[media]`).
#[derive(Debug, Clone)]
pub struct StreamHubConfig {
    /// The address put in SDP offers (where devices send RTP); unspecified (`0.0.0.0`) = the
    /// host of the SIP server's advertised address.
    pub advertise_ip: IpAddr,
    /// The local address RTP sockets bind.
    pub bind_ip: IpAddr,
    /// RTP port range, inclusive.
    pub rtp_ports: (u16, u16),
    /// One UDP port for every stream, demultiplexed by SSRC (0: a port per stream from
    /// `rtp_ports`). Only for UDP transport.
    pub shared_port: u16,
    /// A stream with no media this long after the answer (or this long silent) ends.
    pub no_media_timeout: Duration,
    /// How long a stream stays up after its last viewer left.
    pub grace: Duration,
    /// How long to wait for the device's answer.
    pub answer_timeout: Duration,
    /// SIP domain (for SSRCs).
    pub domain: String,
    /// Platform id (SDP `o=`).
    pub platform_id: String,
    /// How media travels: UDP, or RTP over TCP (RFC 4571) with the device connecting to us
    /// (passive) or us connecting to the device (active).
    pub transport: MediaTransport,
}

impl Default for StreamHubConfig {
    fn default() -> Self {
        Self {
            advertise_ip: IpAddr::from([127, 0, 0, 1]),
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            rtp_ports: (30_000, 30_999),
            shared_port: 0,
            no_media_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(10),
            domain: "3402000000".into(),
            platform_id: "34020000002000000001".into(),
            transport: MediaTransport::Udp,
        }
    }
}

/// Where RTP packets come from.
enum Source {
    Udp(UdpSocket),
    /// The shared port's packets with this stream's SSRC.
    Shared(mpsc::Receiver<(Vec<u8>, SocketAddr)>),
    /// TCP passive, before the device connected: only a connection from the device's address
    /// is taken; others are closed and counted.
    Listen(tokio::net::TcpListener, IpAddr, Arc<RtpDrops>),
    /// TCP active, before we connected.
    Connect(SocketAddr),
    Tcp {
        rd: tokio::net::tcp::OwnedReadHalf,
        _wr: tokio::net::tcp::OwnedWriteHalf,
        framer: crate::rtp::Rfc4571,
        from: SocketAddr,
    },
}

impl Source {
    /// A packet already waiting, without waiting: `None` when there is none (or the source
    /// cannot tell without waiting).
    fn try_next(&mut self, buf: &mut [u8]) -> Option<std::io::Result<(usize, SocketAddr)>> {
        match self {
            Source::Udp(s) => match s.try_recv_from(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                r => Some(r),
            },
            Source::Shared(rx) => {
                let (p, from) = rx.try_recv().ok()?;
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Some(Ok((n, from)))
            }
            _ => None,
        }
    }

    /// The next packet into `buf`: (length, sender). An error ends the stream.
    async fn next(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            match self {
                Source::Udp(s) => return s.recv_from(buf).await,
                Source::Shared(rx) => {
                    let Some((p, from)) = rx.recv().await else {
                        return Err(std::io::Error::other("the shared RTP port closed"));
                    };
                    let n = p.len().min(buf.len());
                    buf[..n].copy_from_slice(&p[..n]);
                    return Ok((n, from));
                }
                Source::Listen(l, device_ip, drops) => {
                    let (stream, from) = l.accept().await?;
                    if !same_host(from.ip(), *device_ip) {
                        drops.count(DropReason::ForeignSource);
                        tracing::warn!(remote = %from, device.ip = %device_ip, "stream.foreign_tcp_refused");
                        drop(stream);
                        continue;
                    }
                    let (rd, wr) = stream.into_split();
                    *self = Source::Tcp {
                        rd,
                        _wr: wr,
                        framer: crate::rtp::Rfc4571::new(),
                        from,
                    };
                }
                Source::Connect(addr) => {
                    let stream = tokio::net::TcpStream::connect(*addr).await?;
                    let from = *addr;
                    let (rd, wr) = stream.into_split();
                    *self = Source::Tcp {
                        rd,
                        _wr: wr,
                        framer: crate::rtp::Rfc4571::new(),
                        from,
                    };
                }
                Source::Tcp {
                    rd, framer, from, ..
                } => {
                    match framer.next() {
                        Ok(Some(p)) => {
                            let n = p.len().min(buf.len());
                            buf[..n].copy_from_slice(&p[..n]);
                            return Ok((n, *from));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                e.to_string(),
                            ))
                        }
                    }
                    let mut tmp = [0u8; 16 * 1024];
                    use tokio::io::AsyncReadExt;
                    let n = rd.read(&mut tmp).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the device closed the TCP media connection",
                        ));
                    }
                    framer.push(&tmp[..n]);
                }
            }
        }
    }
}

/// Why a stream cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The device refused or is not there.
    #[error("{0}")]
    Device(String),
    /// No RTP port is free.
    #[error("no RTP port free in the configured range")]
    NoPort,
    /// The stream started but no media came.
    #[error("{0}")]
    NoMedia(String),
    /// Someone already sends this channel.
    #[error("the channel is already being sent (by the device or another publisher)")]
    Busy,
    /// A transcoder could not start.
    #[error("{0}")]
    Transcode(String),
}

/// Where a stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// INVITE sent.
    Starting,
    /// Media flowing.
    Live,
    /// Over (with why).
    Ended(String),
}

type Key = (String, String);

/// One channel's ingest.
#[derive(Debug)]
pub struct Stream {
    key: Key,
    tx: broadcast::Sender<Arc<Frame>>,
    gop: Mutex<Vec<Arc<Frame>>>,
    viewers: AtomicUsize,
    state: watch::Sender<StreamState>,
    call_id: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
    /// Frames received.
    pub frames: AtomicU64,
    /// RTP packets received.
    pub packets: AtomicU64,
    /// RTP packets that never came (sequence gaps past the reorder window).
    pub lost: AtomicU64,
    /// Fed by a publisher (WHIP) rather than an ingest the hub runs: it lives while the
    /// publisher does, whatever the viewers do.
    published: bool,
    /// A download of stored footage (GB/T 28181 `s=Download`) rather than the live picture.
    download: Option<sdp::Download>,
    /// Video and audio codecs seen so far.
    codecs: Mutex<(Option<Codec>, Option<Codec>)>,
}

impl Stream {
    /// Device and channel.
    pub fn key(&self) -> (&str, &str) {
        (&self.key.0, &self.key.1)
    }

    /// Current state.
    pub fn state(&self) -> StreamState {
        self.state.borrow().clone()
    }

    /// Follow the state.
    pub fn subscribe_state(&self) -> watch::Receiver<StreamState> {
        self.state.subscribe()
    }

    /// Viewers now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Frames pushed that some viewer has not yet taken (what a test feeding frames waits on,
    /// instead of pacing by the clock and hoping the viewers keep up).
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Whether a publisher (WHIP) feeds it.
    pub fn is_published(&self) -> bool {
        self.published
    }

    /// The (video, audio) codecs seen so far.
    pub fn codecs(&self) -> (Option<Codec>, Option<Codec>) {
        *self.codecs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A consumer of one stream. Dropping it leaves the stream.
#[derive(Debug)]
pub struct Viewer {
    stream: Arc<Stream>,
    hub: Arc<Inner>,
    /// Frames from the last keyframe up to now, to start with.
    pub initial: Vec<Arc<Frame>>,
    /// Frames as they arrive.
    pub rx: broadcast::Receiver<Arc<Frame>>,
}

impl Viewer {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Wait until the stream is live (or ended).
    pub async fn wait_live(&self, timeout: Duration) -> Result<(), HubError> {
        let mut st = self.stream.state.subscribe();
        let r = tokio::time::timeout(timeout, async {
            loop {
                match st.borrow_and_update().clone() {
                    StreamState::Live => return Ok(()),
                    StreamState::Ended(why) => return Err(HubError::Device(why)),
                    StreamState::Starting => {}
                }
                if st.changed().await.is_err() {
                    return Err(HubError::Device("the stream ended".into()));
                }
            }
        })
        .await;
        r.unwrap_or_else(|_| Err(HubError::NoMedia("the stream did not start in time".into())))
    }

    /// Wait until the viewer can start at a picture: `initial` then begins with a keyframe
    /// (from the cache, or the first one to arrive, with `rx` continuing after it).
    pub async fn wait_picture(&mut self, timeout: Duration) -> Result<(), HubError> {
        if let Some(i) = self
            .initial
            .iter()
            .position(|f| f.keyframe && f.codec.is_video())
        {
            self.initial.drain(..i);
            return Ok(());
        }
        let key = self.keyframe(timeout).await?;
        self.initial = vec![key];
        Ok(())
    }

    /// The next keyframe: from the cached group of pictures, else the first one to arrive.
    pub async fn keyframe(&mut self, timeout: Duration) -> Result<Arc<Frame>, HubError> {
        if let Some(f) = self
            .initial
            .iter()
            .find(|f| f.keyframe && f.codec.is_video())
        {
            return Ok(f.clone());
        }
        let mut st = self.stream.state.subscribe();
        let r = tokio::time::timeout(timeout, async {
            loop {
                if let StreamState::Ended(why) = st.borrow_and_update().clone() {
                    return Err(HubError::Device(why));
                }
                tokio::select! {
                    f = self.rx.recv() => match f {
                        Ok(f) if f.keyframe && f.codec.is_video() => return Ok(f),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(HubError::NoMedia("the stream ended".into()))
                        }
                    },
                    _ = st.changed() => {}
                }
            }
        })
        .await;
        r.unwrap_or_else(|_| Err(HubError::NoMedia("no keyframe arrived in time".into())))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if self.stream.viewers.fetch_sub(1, Ordering::AcqRel) == 1 && !self.stream.published {
            let stream = self.stream.clone();
            let grace = self.hub.cfg.grace;
            let hub = self.hub.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    if stream.viewers.load(Ordering::Acquire) == 0 {
                        hub.forget(&stream);
                        let _ = stream.stop.send(true);
                    }
                });
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    cfg: StreamHubConfig,
    sip: SipServer,
    streams: Mutex<HashMap<Key, Arc<Stream>>>,
    calls: Mutex<HashMap<String, mpsc::UnboundedSender<StreamUpdate>>>,
    /// RTP refused (foreign source, unknown SSRC).
    drops: Arc<RtpDrops>,
    /// Ingests started (INVITEs about to go out) since start.
    ingests: AtomicU64,
    next_port: Mutex<u16>,
    shared: tokio::sync::OnceCell<Result<Arc<SharedPort>, String>>,
}

/// One stream's claim on the shared port.
#[derive(Debug)]
struct Route {
    tx: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    /// The address the device registered from: only its packets are routed here (and, for
    /// devices that ignore `y=`, the one address routed by).
    device_ip: IpAddr,
    /// Whether a packet reached it yet.
    started: std::sync::atomic::AtomicBool,
}

/// The shared RTP port: one socket, packets routed to streams by SSRC.
#[derive(Debug)]
struct SharedPort {
    port: u16,
    routes: Mutex<HashMap<u32, Arc<Route>>>,
    /// Packets whose SSRC no stream claims.
    unknown: AtomicU64,
    drops: Arc<RtpDrops>,
}

impl SharedPort {
    async fn bind(addr: SocketAddr, drops: Arc<RtpDrops>) -> Result<Arc<SharedPort>, String> {
        let sock = bind_udp(addr)
            .await
            .map_err(|e| format!("the shared RTP port {addr} cannot be bound: {e}"))?;
        let me = Arc::new(SharedPort {
            port: addr.port(),
            routes: Mutex::new(HashMap::new()),
            unknown: AtomicU64::new(0),
            drops,
        });
        let weak = Arc::downgrade(&me);
        tracing::info!(%addr, "RTP shared port listening");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(me) = weak.upgrade() else { return };
                me.route(&buf[..n], from);
            }
        });
        Ok(me)
    }

    /// Hand a datagram to the stream its SSRC belongs to. A device that ignored `y=` is
    /// recognised by its address while it is the only stream from there still waiting.
    fn route(&self, d: &[u8], from: SocketAddr) {
        let Ok(p) = Packet::parse(d) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let route = {
            let mut m = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&p.ssrc) {
                Some(r) if same_host(r.device_ip, from.ip()) => Some(r.clone()),
                Some(_) => {
                    drop(m);
                    self.drops.count(DropReason::ForeignSource);
                    return;
                }
                None => {
                    let mut waiting = m.values().filter(|r| {
                        same_host(r.device_ip, from.ip()) && !r.started.load(Ordering::Relaxed)
                    });
                    match (waiting.next().cloned(), waiting.next()) {
                        (Some(r), None) => {
                            tracing::info!(remote = %from, ssrc = p.ssrc, "stream.ssrc_differs (shared port: routed by address)");
                            m.insert(p.ssrc, r.clone());
                            Some(r)
                        }
                        _ => None,
                    }
                }
            }
        };
        match route {
            Some(r) => {
                r.started.store(true, Ordering::Relaxed);
                // A full queue drops the packet (the reorder buffer treats it as loss).
                let _ = r.tx.try_send((d.to_vec(), from));
            }
            None => {
                self.drops.count(DropReason::UnknownSsrc);
                if self.unknown.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    tracing::warn!(remote = %from, ssrc = p.ssrc, port = self.port, "RTP on the shared port with an SSRC no stream asked for");
                }
            }
        }
    }

    fn claim(
        &self,
        ssrc: u32,
        device_ip: IpAddr,
    ) -> (Arc<Route>, mpsc::Receiver<(Vec<u8>, SocketAddr)>) {
        let (tx, rx) = mpsc::channel(2048);
        let r = Arc::new(Route {
            tx,
            device_ip,
            started: std::sync::atomic::AtomicBool::new(false),
        });
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ssrc, r.clone());
        (r, rx)
    }

    fn release(&self, route: &Arc<Route>) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, r| !Arc::ptr_eq(r, route));
    }
}

/// Releases a stream's routes on the shared port when the stream ends.
struct Claim(Arc<SharedPort>, Arc<Route>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.release(&self.1);
    }
}

impl Inner {
    fn forget(&self, stream: &Arc<Stream>) {
        let mut m = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&stream.key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            m.remove(&stream.key);
        }
    }

    /// Try each port of the range once, starting after the last one handed out.
    async fn bind_in_range<T, F, Fut>(&self, bind: F) -> Result<T, HubError>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<T>>,
    {
        let (lo, hi) = self.cfg.rtp_ports;
        let span = (hi.saturating_sub(lo) as u32 + 1).max(1);
        for _ in 0..span {
            let port = {
                let mut n = self.next_port.lock().unwrap_or_else(|e| e.into_inner());
                let p = if *n < lo || *n > hi { lo } else { *n };
                *n = if p >= hi { lo } else { p + 1 };
                p
            };
            if let Ok(s) = bind(SocketAddr::new(self.cfg.bind_ip, port)).await {
                return Ok(s);
            }
        }
        Err(HubError::NoPort)
    }

    async fn bind_tcp(&self) -> Result<tokio::net::TcpListener, HubError> {
        self.bind_in_range(tokio::net::TcpListener::bind).await
    }

    async fn bind_rtp(&self) -> Result<UdpSocket, HubError> {
        self.bind_in_range(bind_udp).await
    }
}

/// Receive buffer asked for on RTP sockets (the kernel caps it at `net.core.rmem_max`): a
/// keyframe arrives as a burst of ~100 packets, and a busy moment must not cost packets.
pub const RTP_RECV_BUFFER: usize = 4 << 20;

/// A UDP socket for RTP with a large receive buffer.
async fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = sock.set_recv_buffer_size(RTP_RECV_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// The hub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

impl StreamHub {
    /// A hub that sets streams up through `sip` (it takes the SIP server's stream updates).
    pub fn new(cfg: StreamHubConfig, sip: SipServer) -> StreamHub {
        let inner = Arc::new(Inner {
            cfg,
            sip: sip.clone(),
            streams: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            drops: Arc::new(RtpDrops::default()),
            ingests: AtomicU64::new(0),
            next_port: Mutex::new(0),
            shared: tokio::sync::OnceCell::new(),
        });
        if let Some(mut rx) = sip.stream_updates() {
            let weak = Arc::downgrade(&inner);
            tokio::spawn(async move {
                while let Some(u) = rx.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    let call = match &u {
                        StreamUpdate::Answered { call_id, .. }
                        | StreamUpdate::Failed { call_id, .. }
                        | StreamUpdate::Ended { call_id, .. } => call_id.clone(),
                    };
                    let tx = inner
                        .calls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&call)
                        .cloned();
                    if let Some(tx) = tx {
                        let _ = tx.send(u);
                    }
                }
            });
        }
        StreamHub { inner }
    }

    /// RTP refused since start, by reason.
    pub fn drops(&self) -> &RtpDrops {
        &self.inner.drops
    }

    /// Ingests started since start (each one an `INVITE` to a device and an RTP port).
    pub fn ingests_started(&self) -> u64 {
        self.inner.ingests.load(Ordering::Relaxed)
    }

    /// Streams running now.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Whether a device has a stream running.
    pub fn is_streaming(&self, device_id: &str) -> bool {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .any(|(d, _)| d == device_id)
    }

    fn new_stream(
        key: Key,
        published: bool,
        download: Option<sdp::Download>,
    ) -> (Arc<Stream>, watch::Receiver<bool>) {
        let (tx, _) = broadcast::channel(256);
        let (state, _) = watch::channel(StreamState::Starting);
        let (stop, stop_rx) = watch::channel(false);
        let s = Arc::new(Stream {
            key,
            tx,
            gop: Mutex::new(Vec::new()),
            viewers: AtomicUsize::new(0),
            state,
            call_id: Mutex::new(None),
            stop,
            frames: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            published,
            download,
            codecs: Mutex::new((None, None)),
        });
        (s, stop_rx)
    }

    fn join(&self, stream: Arc<Stream>) -> Viewer {
        stream.viewers.fetch_add(1, Ordering::AcqRel);
        // Under the GOP lock (publish sends under it too): no frame both cached and received.
        let (rx, initial) = {
            let gop = stream.gop.lock().unwrap_or_else(|e| e.into_inner());
            (stream.tx.subscribe(), gop.clone())
        };
        Viewer {
            stream,
            hub: self.inner.clone(),
            initial,
            rx,
        }
    }

    /// Join the stream of `key`, or start it with `start` when none is running.
    fn join_or_start(
        &self,
        key: Key,
        start: impl FnOnce(Arc<Inner>, Arc<Stream>, watch::Receiver<bool>),
    ) -> Viewer {
        self.join_or_start_with(key, None, start)
    }

    fn join_or_start_with(
        &self,
        key: Key,
        download: Option<sdp::Download>,
        start: impl FnOnce(Arc<Inner>, Arc<Stream>, watch::Receiver<bool>),
    ) -> Viewer {
        let mut m = self.inner.streams.lock().unwrap_or_else(|e| e.into_inner());
        let live = m
            .get(&key)
            .filter(|s| !matches!(*s.state.borrow(), StreamState::Ended(_)))
            .cloned();
        let stream = match live {
            Some(s) => s,
            None => {
                let (s, stop_rx) = Self::new_stream(key.clone(), false, download);
                m.insert(key, s.clone());
                start(self.inner.clone(), s.clone(), stop_rx);
                s
            }
        };
        drop(m);
        self.join(stream)
    }

    /// Join (or start) the stream of a device's channel.
    pub fn watch(&self, device_id: &str, channel_id: &str) -> Viewer {
        let key = (device_id.to_string(), channel_id.to_string());
        self.join_or_start(key, |inner, s, stop| {
            tokio::spawn(ingest(inner, s, stop));
        })
    }

    /// Download footage the device stored (GB/T 28181 `INVITE` with `s=Download`, sent at
    /// `speed` times real time): a stream of its own (`<channel>@dl<start>`) that ends when the
    /// device has sent it all (its `BYE`, or `MediaStatus` 121), or when no media comes.
    pub fn download(
        &self,
        device_id: &str,
        channel_id: &str,
        start_ms: i64,
        end_ms: i64,
        speed: u32,
    ) -> Viewer {
        let key = (device_id.to_string(), format!("{channel_id}@dl{start_ms}"));
        let d = sdp::Download {
            channel_id: channel_id.to_string(),
            start_s: start_ms.div_euclid(1000),
            end_s: (end_ms + 999).div_euclid(1000),
            speed: speed.clamp(1, 16),
        };
        self.join_or_start_with(key, Some(d), |inner, s, stop| {
            tokio::spawn(ingest(inner, s, stop));
        })
    }

    /// Join the channel in a form a browser takes: H.264 video (H.265 passes through only when
    /// `accept_h265`, else it is transcoded) and G.711 or Opus audio (AAC is transcoded to
    /// Opus). When a conversion is needed, one transcoding stream per channel serves every
    /// such viewer; it keeps the camera's stream up while it runs.
    pub async fn watch_web(
        &self,
        device_id: &str,
        channel_id: &str,
        accept_h265: bool,
        wait: Duration,
    ) -> Result<Viewer, HubError> {
        let mut src = self.watch(device_id, channel_id);
        src.wait_live(wait).await?;
        src.wait_picture(wait).await?;
        let (video, mut audio) = src.stream.codecs();
        if audio.is_none() {
            // Cameras interleave audio with the pictures: a few frames tell whether there is any.
            let mut peek = src.stream.tx.subscribe();
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                let mut pictures = 0;
                while let Ok(f) = peek.recv().await {
                    pictures += 1;
                    if !f.codec.is_video() || pictures >= 4 {
                        return;
                    }
                }
            })
            .await;
            audio = src.stream.codecs().1;
        }
        let video_ok = match video {
            Some(Codec::H265) => accept_h265,
            _ => true,
        };
        let audio_ok = audio != Some(Codec::Aac);
        if video_ok && audio_ok {
            return Ok(src);
        }
        // One transcoding stream per channel and conversion: the picture too (to H.264), or
        // only the sound (the viewer takes the camera's video as it is).
        let to_h264 = !video_ok;
        let key = (
            device_id.to_string(),
            format!("{channel_id}@{}", if to_h264 { "h264" } else { "sound" }),
        );
        let mut viewer = self.join_or_start(key, move |inner, s, stop| {
            // What it will carry, known before the first transcoded frame comes out.
            *s.codecs.lock().unwrap_or_else(|e| e.into_inner()) = (
                if to_h264 { Some(Codec::H264) } else { video },
                audio.map(|a| if a == Codec::Aac { Codec::Opus } else { a }),
            );
            tokio::spawn(transcode(inner, s, stop, src, to_h264));
        });
        viewer.wait_live(wait).await?;
        viewer.wait_picture(wait).await?;
        Ok(viewer)
    }

    /// Start publishing a channel (WHIP): a stream fed by the returned [`Publisher`], which
    /// viewers join like any other. Refused while the channel already streams.
    pub fn publish(&self, device_id: &str, channel_id: &str) -> Result<Publisher, HubError> {
        let key = (device_id.to_string(), channel_id.to_string());
        let mut m = self.inner.streams.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&key)
            .is_some_and(|s| !matches!(*s.state.borrow(), StreamState::Ended(_)))
        {
            return Err(HubError::Busy);
        }
        let (s, _stop) = Self::new_stream(key.clone(), true, None);
        m.insert(key, s.clone());
        Ok(Publisher {
            stream: s,
            hub: self.inner.clone(),
        })
    }

    /// The running stream of a channel, if any.
    pub fn stream(&self, device_id: &str, channel_id: &str) -> Option<Arc<Stream>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(device_id.to_string(), channel_id.to_string()))
            .filter(|s| !matches!(*s.state.borrow(), StreamState::Ended(_)))
            .cloned()
    }
}

/// What feeds a published stream. Dropping it ends the stream.
#[derive(Debug)]
pub struct Publisher {
    stream: Arc<Stream>,
    hub: Arc<Inner>,
}

impl Publisher {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Hand one frame to the viewers.
    pub fn push(&self, f: Frame) {
        publish(&self.stream, f);
    }

    /// End the stream now, saying why.
    pub fn end(self, why: &str) {
        let _ = self
            .stream
            .state
            .send_replace(StreamState::Ended(why.into()));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub.forget(&self.stream);
        if !matches!(*self.stream.state.borrow(), StreamState::Ended(_)) {
            let _ = self
                .stream
                .state
                .send_replace(StreamState::Ended("the publisher left".into()));
        }
        tracing::info!(device.id = %self.stream.key.0, channel.id = %self.stream.key.1, frames = self.stream.frames.load(Ordering::Relaxed), "stream.unpublished");
    }
}

/// The transcoding stream: frames of `src` in, browser-ready frames out.
async fn transcode(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    mut stop: watch::Receiver<bool>,
    mut src: Viewer,
    to_h264: bool,
) {
    use crate::transcode::{Conversion, Transcoder};
    let (device, channel) = (stream.key.0.clone(), stream.key.1.clone());
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(256);
    let mut video: Option<(Arc<Transcoder>, std::thread::JoinHandle<()>)> = None;
    let mut audio: Option<(Arc<Transcoder>, std::thread::JoinHandle<()>)> = None;
    let start = |c: Conversion,
                 tx: mpsc::Sender<Frame>|
     -> Result<(Arc<Transcoder>, std::thread::JoinHandle<()>), HubError> {
        let t = Arc::new(Transcoder::new(c).map_err(|e| HubError::Transcode(e.to_string()))?);
        let t2 = t.clone();
        let h = std::thread::Builder::new()
            .name("transcode".into())
            .spawn(move || loop {
                match t2.pull(Duration::from_millis(200)) {
                    Ok(Some(f)) => {
                        if tx.blocking_send(f).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        if tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stream.transcoder_stopped");
                        return;
                    }
                }
            })
            .map_err(|e| HubError::Transcode(e.to_string()))?;
        Ok((t, h))
    };
    tracing::info!(device.id = %device, channel.id = %channel, "stream.transcoding");
    let mut src_state = src.stream().subscribe_state();
    let initial = std::mem::take(&mut src.initial);
    let mut pending: std::collections::VecDeque<Arc<Frame>> = initial.into();
    let why: String = loop {
        let f = if let Some(f) = pending.pop_front() {
            f
        } else {
            tokio::select! {
                r = src.rx.recv() => match r {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "stream.transcoder_lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break "the camera's stream ended".into(),
                },
                o = out_rx.recv() => match o {
                    Some(f) => { publish(&stream, f); continue; }
                    None => break "the transcoder stopped".into(),
                },
                _ = src_state.changed() => {
                    if let StreamState::Ended(w) = src_state.borrow().clone() {
                        break format!("the camera's stream ended: {w}");
                    }
                    continue;
                }
                _ = stop.changed() => break "stopped".into(),
            }
        };
        let target = match f.codec {
            Codec::H265 if to_h264 => {
                if video.is_none() {
                    match start(
                        Conversion::H265ToH264 {
                            bitrate_kbps: 2_000,
                        },
                        out_tx.clone(),
                    ) {
                        Ok(v) => video = Some(v),
                        Err(e) => break e.to_string(),
                    }
                }
                video.as_ref().map(|v| v.0.clone())
            }
            Codec::Aac => {
                if audio.is_none() {
                    match start(Conversion::AacToOpus, out_tx.clone()) {
                        Ok(a) => audio = Some(a),
                        Err(e) => break e.to_string(),
                    }
                }
                audio.as_ref().map(|a| a.0.clone())
            }
            _ => {
                publish(&stream, (*f).clone());
                None
            }
        };
        if let Some(t) = target {
            if let Err(e) = t.push(&f) {
                break e.to_string();
            }
        }
    };
    drop(out_rx);
    for (t, h) in [video, audio].into_iter().flatten() {
        t.finish();
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    drop(src);
    inner.forget(&stream);
    tracing::info!(device.id = %device, channel.id = %channel, reason = %why, frames = stream.frames.load(Ordering::Relaxed), "stream.transcoding_ended");
    let _ = stream.state.send_replace(StreamState::Ended(why));
}

async fn ingest(inner: Arc<Inner>, stream: Arc<Stream>, stop: watch::Receiver<bool>) {
    let why = match run_ingest(&inner, &stream, stop).await {
        Ok(()) => "stopped".to_string(),
        Err(e) => e.to_string(),
    };
    let call = stream
        .call_id
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(c) = &call {
        inner
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(c);
        inner.sip.bye(c).await;
    }
    inner.forget(&stream);
    tracing::info!(device.id = %stream.key.0, channel.id = %stream.key.1, reason = %why, frames = stream.frames.load(Ordering::Relaxed), "stream.ended");
    let _ = stream.state.send_replace(StreamState::Ended(why));
}

async fn run_ingest(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), HubError> {
    let device = &stream.key.0;
    let channel = stream
        .download
        .as_ref()
        .map(|d| &d.channel_id)
        .unwrap_or(&stream.key.1);
    let transport = inner.cfg.transport;
    // The API parses ids at its edge; this is the last door before an INVITE: only a 20-digit
    // device and channel code go out (never a named channel, never a header's worth of text).
    let device_ok = device.parse::<DeviceId>().is_ok();
    let channel_ok = channel.parse::<ChannelId>().is_ok_and(|c| !c.is_named());
    if !device_ok || !channel_ok {
        return Err(HubError::Device(format!(
            "{channel:?} of {device:?} is not a channel a device can be asked for"
        )));
    }
    // The address the device registered from: the only one its media is taken from.
    let device_ip = inner
        .sip
        .access(device)
        .map(|a| a.remote.ip())
        .ok_or_else(|| HubError::Device("the device is not registered".into()))?;
    inner.ingests.fetch_add(1, Ordering::Relaxed);
    let shared = if transport == MediaTransport::Udp && inner.cfg.shared_port != 0 {
        let addr = SocketAddr::new(inner.cfg.bind_ip, inner.cfg.shared_port);
        let drops = inner.drops.clone();
        let s = inner
            .shared
            .get_or_init(|| SharedPort::bind(addr, drops))
            .await
            .clone()
            .map_err(HubError::Device)?;
        Some(s)
    } else {
        None
    };
    let (mut source, port) = match transport {
        // Claimed below, once the SSRC and the device's address are known.
        MediaTransport::Udp if shared.is_some() => (
            Source::Connect(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0)),
            inner.cfg.shared_port,
        ),
        MediaTransport::Udp => {
            let sock = inner.bind_rtp().await?;
            let port = sock.local_addr().map_err(|_| HubError::NoPort)?.port();
            (Source::Udp(sock), port)
        }
        MediaTransport::TcpPassive => {
            let l = inner.bind_tcp().await?;
            let port = l.local_addr().map_err(|_| HubError::NoPort)?.port();
            (Source::Listen(l, device_ip, inner.drops.clone()), port)
        }
        // The port in an active offer is a placeholder (RFC 4145): the device answers with its own.
        MediaTransport::TcpActive => (
            Source::Connect(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 9)),
            9,
        ),
    };
    let ssrc = pick_ssrc(&inner.cfg.domain, stream.download.is_some(), |v| {
        shared.as_ref().is_some_and(|sp| {
            sp.routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&v)
        })
    });
    let advertise_ip = if inner.cfg.advertise_ip.is_unspecified() {
        inner
            .sip
            .advertised()
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        inner.cfg.advertise_ip
    };
    let offer = Offer {
        platform_id: inner.cfg.platform_id.clone(),
        ip: advertise_ip,
        port,
        transport,
        ssrc: ssrc.clone(),
        download: stream.download.clone(),
    };
    let (tx, mut updates) = mpsc::unbounded_channel();
    let call_id = inner
        .sip
        .invite(device, channel, &offer, |call_id| {
            inner
                .calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(call_id.to_string(), tx);
        })
        .await
        .map_err(|e| HubError::Device(e.into()))?;
    *stream.call_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(call_id.clone());
    let answer = tokio::select! {
        u = tokio::time::timeout(inner.cfg.answer_timeout, updates.recv()) => match u {
            Ok(Some(StreamUpdate::Answered { media, .. })) => media,
            Ok(Some(StreamUpdate::Failed { code, reason, .. })) => return Err(HubError::Device(format!("the device refused the stream: {code} {reason}"))),
            Ok(Some(StreamUpdate::Ended { reason, .. })) => return Err(HubError::Device(reason.into())),
            Ok(None) | Err(_) => return Err(HubError::Device("the device did not answer the INVITE".into())),
        },
        _ = stop.changed() => return Ok(()),
    };
    if let Source::Connect(addr) = &mut source {
        // The registered address, whatever the answer's c= says (a device behind carrier NAT
        // writes its private address there; a forged answer could name any host).
        if answer.ip.is_some_and(|ip| !same_host(ip, device_ip)) {
            tracing::info!(device.id = %device, answer.ip = ?answer.ip, device.ip = %device_ip, "stream.answer_address_ignored");
        }
        *addr = SocketAddr::new(device_ip, answer.port);
    }
    let expected_ssrc: Option<u32> = answer
        .ssrc
        .as_deref()
        .or(Some(&ssrc))
        .and_then(|s| s.parse().ok());
    let _claim = match &shared {
        Some(sp) => {
            let (route, rx) = sp.claim(expected_ssrc.unwrap_or(0), device_ip);
            // Our own SSRC too, should the device answer with another and then use ours.
            if let Ok(own) = ssrc.parse::<u32>() {
                if Some(own) != expected_ssrc {
                    sp.routes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(own, route.clone());
                }
            }
            source = Source::Shared(rx);
            Some(Claim(sp.clone(), route))
        }
        None => None,
    };
    let mut demux = PsDemuxer::new();
    let mut reorder = Reorder::new();
    let mut ordered = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut other_ssrc: Option<u32> = None;
    let mut not_rtp = 0u64;
    let mut foreign = 0u64;
    let mut last = Instant::now();
    let mut got_any = false;
    loop {
        let timeout = inner.cfg.no_media_timeout.saturating_sub(last.elapsed());
        let (n, from) = tokio::select! {
            r = tokio::time::timeout(timeout, source.next(&mut buf)) => match r {
                Ok(Ok(x)) => x,
                Ok(Err(e)) if transport == MediaTransport::Udp => {
                    tracing::debug!(error = %e, "stream.udp_recv_error");
                    continue;
                }
                Ok(Err(e)) => {
                    let cause = format!("TCP media ({transport:?}): {e}");
                    tracing::warn!(device.id = %device, channel.id = %channel, call_id = %call_id, cause = %cause, "stream.media_failed");
                    return Err(HubError::NoMedia(cause));
                }
                Err(_) => {
                    let cause = if let Some(o) = other_ssrc {
                        format!("RTP arrived with SSRC {o}, not the {} asked for in y= (SSRC mismatch)", expected_ssrc.unwrap_or(0))
                    } else if foreign > 0 && !got_any {
                        format!("{foreign} datagrams on port {port} came from addresses other than the device's registered {device_ip} and were dropped")
                    } else if not_rtp > 0 {
                        format!("{not_rtp} datagrams on port {port} were not RTP")
                    } else if got_any {
                        format!("media stopped for {} s", inner.cfg.no_media_timeout.as_secs())
                    } else {
                        format!(
                            "nothing arrived on RTP port {port} ({transport:?}): the SDP offered {}:{port} — check that the device can reach that address (advertised address, NAT, firewall); the device answered with {:?}:{}",
                            advertise_ip, answer.ip, answer.port
                        )
                    };
                    tracing::warn!(device.id = %device, channel.id = %channel, call_id = %call_id, cause = %cause, "stream.no_media");
                    return Err(HubError::NoMedia(cause));
                }
            },
            u = updates.recv() => match u {
                Some(StreamUpdate::Ended { reason, .. }) => return Err(HubError::Device(reason.into())),
                _ => continue,
            },
            _ = stop.changed() => return Ok(()),
        };
        // Take what else is already queued without another trip through the select (a frame
        // arrives as a burst of packets), up to a bound so other streams get their turn.
        let mut next = Some((n, from));
        let mut burst = 0;
        while let Some((n, from)) = next.take() {
            'packet: {
                if !same_host(from.ip(), device_ip) {
                    foreign += 1;
                    inner.drops.count(DropReason::ForeignSource);
                    if inner.drops.get(DropReason::ForeignSource) % 1000 == 1 {
                        tracing::warn!(device.id = %device, remote = %from, device.ip = %device_ip, port, "stream.foreign_rtp_dropped");
                    }
                    break 'packet;
                }
                let Ok(p) = Packet::parse(&buf[..n]) else {
                    not_rtp += 1;
                    break 'packet;
                };
                if let Some(want) = expected_ssrc {
                    if p.ssrc != want && want != 0 {
                        // Many devices ignore y=; accept the first SSRC they use, but say so once.
                        if other_ssrc.is_none() {
                            tracing::info!(device.id = %device, remote = %from, got = p.ssrc, asked = want, "stream.ssrc_differs");
                        }
                        other_ssrc = Some(p.ssrc);
                    }
                }
                last = Instant::now();
                if !got_any {
                    got_any = true;
                    tracing::info!(device.id = %device, channel.id = %channel, remote = %from, port, "stream.media_started");
                }
                stream.packets.fetch_add(1, Ordering::Relaxed);
                reorder.push_into(p.seq, p.marker, p.payload, &mut ordered);
                for o in ordered.drain(..) {
                    let frames = match o {
                        Ordered::Packet {
                            marker, payload, ..
                        } => {
                            let mut f = demux.push(&payload);
                            if marker {
                                f.extend(demux.end_of_frame());
                            }
                            f
                        }
                        Ordered::Lost(n) => {
                            stream.lost.fetch_add(n as u64, Ordering::Relaxed);
                            demux.lost();
                            Vec::new()
                        }
                    };
                    for f in frames {
                        publish(stream, f);
                    }
                }
            }
            burst += 1;
            if burst < MAX_BURST {
                next = match source.try_next(&mut buf) {
                    Some(Ok(x)) => Some(x),
                    _ => None,
                };
            }
        }
    }
}

/// A random SSRC in the GB/T 28181 `y=` format (附录 F: `0` live / `1` history, the domain's
/// digits 4–8, four free digits), avoiding those `taken` (the shared port's claims) when it can.
/// Four digits are no secret: the address latch is the defence, this only avoids collisions and
/// makes the next stream's SSRC unknowable from the last one.
fn pick_ssrc(domain: &str, history: bool, taken: impl Fn(u32) -> bool) -> String {
    let pick = || {
        let seq = rand::random::<u32>() % 10_000;
        if history {
            sdp::history_ssrc(domain, seq)
        } else {
            sdp::live_ssrc(domain, seq)
        }
    };
    let mut s = pick();
    for _ in 0..16 {
        if !s.parse::<u32>().is_ok_and(&taken) {
            break;
        }
        s = pick();
    }
    s
}

/// Packets taken from a socket at one wake-up at most.
const MAX_BURST: usize = 64;

fn publish(stream: &Stream, mut f: Frame) {
    f.received = Some(Instant::now());
    let f = Arc::new(f);
    {
        let mut c = stream.codecs.lock().unwrap_or_else(|e| e.into_inner());
        let slot = if f.codec.is_video() {
            &mut c.0
        } else {
            &mut c.1
        };
        if *slot != Some(f.codec) {
            *slot = Some(f.codec);
        }
    }
    {
        let mut gop = stream.gop.lock().unwrap_or_else(|e| e.into_inner());
        if f.keyframe && f.codec.is_video() {
            gop.clear();
        }
        if gop.len() < 300 && (!gop.is_empty() || (f.keyframe && f.codec.is_video())) {
            gop.push(f.clone());
        }
        let _ = stream.tx.send(f);
    }
    if stream.frames.fetch_add(1, Ordering::Relaxed) == 0 {
        let _ = stream.state.send_replace(StreamState::Live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0x60];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0, 0, 1, 0xBA]);
        p
    }

    fn port() -> SharedPort {
        SharedPort {
            port: 0,
            routes: Mutex::new(HashMap::new()),
            unknown: AtomicU64::new(0),
            drops: Arc::new(RtpDrops::default()),
        }
    }

    #[test]
    fn ssrcs_are_random_within_the_y_format_and_avoid_claimed_ones() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let s = pick_ssrc("3402000000", false, |v| v == 200_000_000);
            assert_eq!(s.len(), 10, "{s}");
            assert!(s.starts_with("020000"), "{s}");
            assert_ne!(s, "0200000000");
            seen.insert(s);
        }
        assert!(
            seen.len() > 150,
            "random, not a counter: {} distinct",
            seen.len()
        );
        let h = pick_ssrc("3402000000", true, |_| false);
        assert!(h.starts_with("120000") && h.len() == 10, "{h}");
    }

    const DEVICE: [u8; 4] = [127, 0, 0, 1];
    const ATTACKER: [u8; 4] = [127, 0, 0, 2];

    #[test]
    fn the_shared_port_routes_a_known_ssrc_only_from_the_devices_address() {
        let sp = port();
        let (_route, mut rx) = sp.claim(200_001_234, IpAddr::from(DEVICE));
        // The attacker guessed the SSRC: dropped as foreign, nothing reaches the stream.
        sp.route(&rtp(1, 200_001_234), SocketAddr::from((ATTACKER, 4000)));
        assert!(rx.try_recv().is_err());
        assert_eq!(sp.drops.get(DropReason::ForeignSource), 1);
        // An IPv4-mapped address of the attacker is the attacker.
        let mapped = SocketAddr::new(
            std::net::Ipv4Addr::from(ATTACKER).to_ipv6_mapped().into(),
            4000,
        );
        sp.route(&rtp(2, 200_001_234), mapped);
        assert!(rx.try_recv().is_err());
        assert_eq!(sp.drops.get(DropReason::ForeignSource), 2);
        // The device's own packet goes through.
        sp.route(&rtp(3, 200_001_234), SocketAddr::from((DEVICE, 4000)));
        let (p, from) = rx.try_recv().expect("routed");
        assert_eq!(from.ip(), IpAddr::from(DEVICE));
        assert_eq!(Packet::parse(&p).unwrap().seq, 3);
    }

    #[test]
    fn a_device_that_ignores_y_is_routed_by_its_address_and_nobody_else_is() {
        let sp = port();
        let (_route, mut rx) = sp.claim(200_001_234, IpAddr::from(DEVICE));
        // Another SSRC from elsewhere: nobody's.
        sp.route(&rtp(1, 77), SocketAddr::from((ATTACKER, 4000)));
        assert!(rx.try_recv().is_err());
        assert_eq!(sp.drops.get(DropReason::UnknownSsrc), 1);
        // Its own SSRC from the device's address, while it is the only stream waiting there.
        sp.route(&rtp(2, 99), SocketAddr::from((DEVICE, 4000)));
        assert!(rx.try_recv().is_ok());
        // That SSRC is now the stream's, and still only from the device's address.
        sp.route(&rtp(3, 99), SocketAddr::from((ATTACKER, 4000)));
        assert!(rx.try_recv().is_err());
        assert_eq!(sp.drops.get(DropReason::ForeignSource), 1);
    }
}

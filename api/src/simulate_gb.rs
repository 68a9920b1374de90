//! Simulated GB/T 28181 body-worn recorders for `shouhu simulate --recorders N` and the demo:
//! each registers over real SIP/UDP with digest authentication, sends `Keepalive`, reports
//! `MobilePosition` along a [`Route`] (by `NOTIFY` once the platform subscribed, by `MESSAGE`
//! before), answers `Catalog` and `DeviceInfo` queries, and registers again before expiry or
//! after being refused. An `INVITE` for live video (RTP over UDP, or over TCP in either
//! direction, RFC 4571) is answered with its SDP and,
//! after the ACK, the recorder streams H.264 in MPEG-PS over RTP (the elementary stream comes
//! from ffmpeg once per process; the PS and RTP are ours) until `BYE`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shouhu_media::gb28181::manscdp;
use shouhu_media::ps::Codec;
use shouhu_media::sip::digest::{self, Algorithm, Credentials};
use shouhu_media::sip::message::parse_datagram;
use shouhu_media::sip::Message;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::simulate::Route;

/// One simulated recorder.
#[derive(Debug, Clone)]
pub struct RecorderSpec {
    /// 20-digit device id.
    pub device_id: String,
    /// SIP password.
    pub password: String,
    /// Where it walks.
    pub route: Route,
    /// What it streams, when not the target's profile.
    pub media: Option<MediaProfile>,
}

/// Where and how the recorders report.
#[derive(Debug, Clone)]
pub struct GbTarget {
    /// The platform's SIP address (UDP).
    pub sip: SocketAddr,
    /// Platform id.
    pub platform_id: String,
    /// SIP domain.
    pub domain: String,
    /// Between keepalives.
    pub keepalive: Duration,
    /// Between positions.
    pub position: Duration,
    /// Registration lifetime asked for, seconds.
    pub expires_secs: u32,
    /// What they stream.
    pub media: MediaProfile,
    /// Each device hangs up (BYE) the first download it is asked for half-way, as a camera
    /// whose docking link drops would; the platform's next attempt gets the rest.
    pub drop_first_download: bool,
}

/// Counters.
#[derive(Debug, Default)]
pub struct GbStats {
    /// Registrations accepted.
    pub registered: AtomicU64,
    /// Registrations refused (403, 400).
    pub refused: AtomicU64,
    /// Keepalives answered 200.
    pub keepalives: AtomicU64,
    /// Positions sent.
    pub positions: AtomicU64,
    /// Queries answered.
    pub queries: AtomicU64,
    /// Time-outs and socket errors.
    pub errors: AtomicU64,
}

/// An answered INVITE: how to reach the platform, the SSRC, and for a download the frames to
/// send and the speed.
type Answered = (MediaPath, u32, Option<Download>);

struct Device {
    spec: RecorderSpec,
    target: GbTarget,
    sock: UdpSocket,
    local: SocketAddr,
    cseq: u32,
    n: u64,
    call_id: String,
    tag: String,
    sn: u32,
    subscribed: Option<(String, String)>,
    /// Answered INVITEs waiting for their ACK: call id → (how to reach the platform, SSRC, for
    /// a download the frames to send and the speed).
    offers: std::collections::HashMap<String, Answered>,
    /// Downloads that ended (call id; whether they sent everything): a complete one gets its
    /// `MediaStatus` 121, a cut one the device's BYE.
    done_tx: tokio::sync::mpsc::UnboundedSender<(String, bool)>,
    /// Whether this device already cut a download short (see [`GbTarget::drop_first_download`]).
    dropped_download: bool,
    /// The platform's side of each answered INVITE (its `From`), for the device's own BYE.
    peers: std::collections::HashMap<String, String>,
    /// Running streams: call id → stop.
    streams: std::collections::HashMap<String, watch::Sender<bool>>,
    /// The 200 sent for each INVITE, for its retransmissions.
    answers: std::collections::HashMap<String, Vec<u8>>,
}

/// What the simulated recorders send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaProfile {
    /// Video codec: H.264 or H.265.
    pub video: Codec,
    /// Video bit rate, kbit/s (constant: the encoder pads to it).
    pub bitrate_kbps: u32,
    /// Picture size.
    pub size: (u32, u32),
    /// Audio codec (G.711 A/μ-law at 8 kHz, or AAC at 16 kHz), or none.
    pub audio: Option<Codec>,
}

impl Default for MediaProfile {
    fn default() -> Self {
        Self {
            video: Codec::H264,
            bitrate_kbps: 800,
            size: (640, 360),
            audio: Some(Codec::G711A),
        }
    }
}

/// Ten seconds of media, looped: video access units (Annex B) at 25 frames a second with a
/// keyframe every second, and audio frames with their offsets (90 kHz) into the loop.
#[derive(Debug)]
pub struct Sample {
    /// Video access units, one per 40 ms.
    pub video: Vec<Vec<u8>>,
    /// Audio frames: (offset in the loop, 90 kHz; bytes).
    pub audio: Vec<(u64, Vec<u8>)>,
}

/// Length of the sample, 90 kHz.
const LOOP_90K: u64 = 10 * 90_000;

type SampleCache = std::collections::HashMap<MediaProfile, Option<Arc<Sample>>>;
static SAMPLES: tokio::sync::Mutex<Option<SampleCache>> = tokio::sync::Mutex::const_new(None);

async fn ffmpeg(args: &[String]) -> Option<Vec<u8>> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => Some(o.stdout),
        Ok(o) => {
            tracing::warn!(stderr = %String::from_utf8_lossy(&o.stderr), "simulated recorders: ffmpeg failed; they cannot stream");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "simulated recorders: ffmpeg is missing; they cannot stream");
            None
        }
    }
}

/// The sample of a profile, made by ffmpeg once per process.
pub async fn sample(p: &MediaProfile) -> Option<Arc<Sample>> {
    let mut cache = SAMPLES.lock().await;
    let cache = cache.get_or_insert_with(Default::default);
    if let Some(s) = cache.get(p) {
        return s.clone();
    }
    let s = make_sample(p).await.map(Arc::new);
    cache.insert(p.clone(), s.clone());
    s
}

async fn make_sample(p: &MediaProfile) -> Option<Sample> {
    let s = |x: &str| x.to_string();
    let (w, h) = p.size;
    let rate = format!("{}k", p.bitrate_kbps);
    let mut args = vec![
        s("-f"),
        s("lavfi"),
        s("-i"),
        format!("testsrc2=size={w}x{h}:rate=25"),
        s("-t"),
        s("10"),
        // Grain, so that high bit rates carry real picture data rather than encoder padding.
        s("-vf"),
        s(if p.bitrate_kbps > 1_000 {
            "noise=alls=8:allf=t"
        } else {
            "null"
        }),
        s("-pix_fmt"),
        s("yuv420p"),
        s("-g"),
        s("25"),
        s("-bf"),
        s("0"),
        s("-b:v"),
        rate.clone(),
        s("-minrate"),
        rate.clone(),
        s("-maxrate"),
        rate.clone(),
        s("-bufsize"),
        rate,
    ];
    match p.video {
        Codec::H265 => args.extend(
            [
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "aud=1:repeat-headers=1:keyint=25:min-keyint=25:bframes=0:log-level=error",
                "-f",
                "hevc",
                "pipe:1",
            ]
            .map(s),
        ),
        _ => args.extend(
            [
                "-c:v",
                "libx264",
                "-profile:v",
                "baseline",
                "-preset",
                "veryfast",
                "-x264-params",
                "aud=1",
                "-f",
                "h264",
                "pipe:1",
            ]
            .map(s),
        ),
    }
    let video = access_units(&ffmpeg(&args).await?, p.video);
    if video.is_empty() {
        return None;
    }
    let audio = match p.audio {
        None => Vec::new(),
        Some(c @ (Codec::G711A | Codec::G711U)) => {
            let fmt = if c == Codec::G711A { "alaw" } else { "mulaw" };
            let codec = if c == Codec::G711A {
                "pcm_alaw"
            } else {
                "pcm_mulaw"
            };
            let pcm = ffmpeg(
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=8000",
                    "-t",
                    "10",
                    "-ac",
                    "1",
                    "-c:a",
                    codec,
                    "-f",
                    fmt,
                    "pipe:1",
                ]
                .map(s),
            )
            .await?;
            // 40 ms (320 samples) per frame, with the video.
            pcm.chunks(320)
                .enumerate()
                .map(|(i, c)| (i as u64 * 3600, c.to_vec()))
                .collect()
        }
        Some(_) => {
            let adts = ffmpeg(
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=16000",
                    "-t",
                    "10",
                    "-ac",
                    "1",
                    "-c:a",
                    "aac",
                    "-b:a",
                    "32k",
                    "-f",
                    "adts",
                    "pipe:1",
                ]
                .map(s),
            )
            .await?;
            // 1024 samples at 16 kHz per frame: 5760 ticks of 90 kHz.
            adts_frames(&adts)
                .into_iter()
                .enumerate()
                .map(|(i, f)| (i as u64 * 5760, f))
                .filter(|(t, _)| *t < LOOP_90K)
                .collect()
        }
    };
    Some(Sample { video, audio })
}

/// Split ADTS into its frames (each with its header).
pub fn adts_frames(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 7 <= b.len() {
        if b[i] != 0xFF || b[i + 1] & 0xF0 != 0xF0 {
            break;
        }
        let len = (((b[i + 3] & 0x03) as usize) << 11)
            | ((b[i + 4] as usize) << 3)
            | ((b[i + 5] as usize) >> 5);
        if len < 7 || i + len > b.len() {
            break;
        }
        out.push(b[i..i + len].to_vec());
        i += len;
    }
    out
}

/// Split an Annex B stream at its access unit delimiters (H.264 NAL type 9, H.265 type 35).
pub fn access_units(es: &[u8], codec: Codec) -> Vec<Vec<u8>> {
    let is_aud = |b: u8| match codec {
        Codec::H265 => (b >> 1) & 0x3F == 35,
        _ => b & 0x1F == 9,
    };
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 0 && es[i + 3] == 1 && is_aud(es[i + 4]) {
            starts.push(i);
        }
        i += 1;
    }
    starts.push(es.len());
    starts.windows(2).map(|w| es[w[0]..w[1]].to_vec()).collect()
}

/// How a simulated recorder sends its media.
#[derive(Debug)]
enum MediaPath {
    /// RTP/UDP to this address.
    Udp(SocketAddr),
    /// RTP over TCP: we connect to the platform (it offered `a=setup:passive`).
    Connect(SocketAddr),
    /// RTP over TCP: the platform connects to us (it offered `a=setup:active`).
    Accept(tokio::net::TcpListener),
}

enum Sink {
    Udp(UdpSocket, SocketAddr),
    Tcp(tokio::net::TcpStream),
}

impl Sink {
    async fn open(path: MediaPath) -> std::io::Result<Sink> {
        match path {
            MediaPath::Udp(target) => {
                let bind: SocketAddr = if target.ip().is_loopback() {
                    "127.0.0.1:0"
                } else {
                    "0.0.0.0:0"
                }
                .parse()
                .expect("valid");
                Ok(Sink::Udp(UdpSocket::bind(bind).await?, target))
            }
            MediaPath::Connect(target) => {
                Ok(Sink::Tcp(tokio::net::TcpStream::connect(target).await?))
            }
            MediaPath::Accept(l) => Ok(Sink::Tcp(
                tokio::time::timeout(Duration::from_secs(10), l.accept())
                    .await??
                    .0,
            )),
        }
    }

    async fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Sink::Udp(s, to) => s.send_to(packet, *to).await.map(|_| ()),
            Sink::Tcp(t) => t.write_all(&shouhu_media::rtp::frame_rfc4571(packet)).await,
        }
    }
}

/// Stream the sample as PS over RTP until `stop`: per 40 ms one video pack, and the audio
/// frames that fall in that interval as packs of their own.
/// A download sends `frames` frames at `speed` times real time (or stops after `cut` frames),
/// then reports its call id and whether it sent everything.
type DownloadDone = (
    Download,
    String,
    tokio::sync::mpsc::UnboundedSender<(String, bool)>,
);

/// What a download INVITE asked for.
#[derive(Debug, Clone, Copy)]
struct Download {
    /// Frames in the asked range.
    frames: u64,
    /// Times real time.
    speed: u32,
    /// Stop after this many frames (a dropped link), if set.
    cut: Option<u64>,
}

async fn stream_to(
    path: MediaPath,
    ssrc: u32,
    media: (MediaProfile, Arc<Sample>),
    mut stop: watch::Receiver<bool>,
    download: Option<DownloadDone>,
) {
    let Ok(mut sink) = Sink::open(path).await else {
        return;
    };
    let (profile, sample) = media;
    let mux = shouhu_media::ps::PsMuxer {
        video: profile.video,
        audio: profile.audio,
    };
    let mut seq: u16 = rand::random();
    let speed = download.as_ref().map_or(1, |d| d.0.speed.clamp(1, 16));
    let mut every = tokio::time::interval(Duration::from_micros(40_000 / u64::from(speed)));
    let base: u64 = 3600;
    let mut audio_next = 0usize;
    for (n, au) in (0u64..).zip(sample.video.iter().cycle()) {
        if let Some((d, call, done)) = &download {
            if d.cut.is_some_and(|c| n >= c) {
                let _ = done.send((call.clone(), false));
                return;
            }
            if n >= d.frames {
                let _ = done.send((call.clone(), true));
                return;
            }
        }
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let pts = base + n * 3600;
        let key = shouhu_media::ps::is_keyframe(profile.video, au);
        let mut packs = vec![(pts, mux.video_frame(pts, au, key))];
        // Audio frames due up to the end of this video frame, across loops of the sample.
        let end = (n + 1) * 3600;
        while !sample.audio.is_empty() {
            let i = audio_next % sample.audio.len();
            let lap = (audio_next / sample.audio.len()) as u64;
            let (off, data) = &sample.audio[i];
            let t = lap * LOOP_90K + off;
            if t >= end {
                break;
            }
            packs.push((base + t, mux.audio_frame(base + t, data)));
            audio_next += 1;
        }
        for (ts, ps) in packs {
            for p in shouhu_media::rtp::packetize(96, &mut seq, ts as u32, ssrc, &ps, 1400) {
                if sink.send(&p).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Device {
    /// What this recorder streams.
    fn profile(&self) -> &MediaProfile {
        self.spec.media.as_ref().unwrap_or(&self.target.media)
    }

    fn branch(&mut self) -> String {
        self.n += 1;
        format!("z9hG4bK{}x{}", self.spec.device_id, self.n)
    }

    fn request(
        &mut self,
        method: &str,
        to_user: &str,
        call_id: &str,
        body: Option<String>,
    ) -> Message {
        let branch = self.branch();
        self.cseq += 1;
        let t = &self.target;
        let mut m = Message::request(method, &format!("sip:{}@{}", t.platform_id, t.domain));
        m.push(
            "Via",
            format!("SIP/2.0/UDP {};rport;branch={branch}", self.local),
        )
        .push(
            "From",
            format!(
                "<sip:{}@{}>;tag={}",
                self.spec.device_id, t.domain, self.tag
            ),
        )
        .push("To", format!("<sip:{to_user}@{}>", t.domain))
        .push("Call-ID", call_id.to_string())
        .push("CSeq", format!("{} {method}", self.cseq))
        .push("Max-Forwards", "70")
        .push("User-Agent", "Shouhu recorder simulator");
        if let Some(b) = body {
            m.push("Content-Type", "Application/MANSCDP+xml");
            m.body = manscdp::encode(&b);
        }
        m
    }

    async fn send(&self, m: &Message) -> std::io::Result<()> {
        self.sock
            .send_to(&m.to_bytes(), self.target.sip)
            .await
            .map(|_| ())
    }

    /// Send a request and wait for its final response, answering platform requests meanwhile.
    async fn transact(&mut self, m: Message) -> std::io::Result<Message> {
        let branch = m
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let bytes = m.to_bytes();
        let mut wait = Duration::from_millis(500);
        for _ in 0..7 {
            self.sock.send_to(&bytes, self.target.sip).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let mut buf = vec![0u8; 65_536];
                let got = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await;
                let Ok(Ok((n, _))) = got else { break };
                let Ok(msg) = parse_datagram(&buf[..n]) else {
                    continue;
                };
                if msg.is_request() {
                    self.on_request(msg).await?;
                    continue;
                }
                let same = msg
                    .top_via()
                    .and_then(|v| v.branch().map(str::to_string))
                    .as_deref()
                    == Some(branch.as_str());
                if same && msg.status().is_some_and(|s| s >= 200) {
                    return Ok(msg);
                }
            }
            wait = (wait * 2).min(Duration::from_secs(4));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the platform",
        ))
    }

    async fn register(&mut self, stats: &GbStats) -> std::io::Result<bool> {
        let call_id = format!("reg-{}@{}", self.spec.device_id, self.local);
        let id = self.spec.device_id.clone();
        let mut m = self.request("REGISTER", &id, &call_id, None);
        m.set("To", format!("<sip:{id}@{}>", self.target.domain));
        m.push("Contact", format!("<sip:{id}@{}>", self.local))
            .push("Expires", self.target.expires_secs.to_string());
        let r = self.transact(m.clone()).await?;
        let r = if r.status() == Some(401) {
            let Some(ch) = r.header("WWW-Authenticate") else {
                return Ok(false);
            };
            let params =
                digest::parse_params(ch.trim_start_matches("Digest").trim()).unwrap_or_default();
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let alg = get("algorithm")
                .and_then(|a| Algorithm::from_token(&a))
                .unwrap_or(Algorithm::Md5);
            let mut c = Credentials {
                username: id.clone(),
                realm: get("realm").unwrap_or_default(),
                nonce: get("nonce").unwrap_or_default(),
                uri: format!("sip:{}@{}", self.target.platform_id, self.target.domain),
                qop: get("qop").map(|_| "auth".to_string()),
                nc: Some("00000001".into()),
                cnonce: Some(format!("{:08x}", self.n)),
                algorithm: Some(alg.token().into()),
                ..Default::default()
            };
            if c.qop.is_none() {
                c.nc = None;
                c.cnonce = None;
            }
            let ha1 = digest::ha1(alg, &id, &c.realm, &self.spec.password);
            c.response = digest::expected_response(&c, alg, &ha1, "REGISTER");
            let mut auth = format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
                c.username, c.realm, c.nonce, c.uri, c.response, alg.token()
            );
            if c.qop.is_some() {
                auth.push_str(&format!(
                    ", qop=auth, nc=00000001, cnonce=\"{}\"",
                    c.cnonce.clone().unwrap_or_default()
                ));
            }
            let mut again = m;
            let branch = self.branch();
            again.set(
                "Via",
                format!("SIP/2.0/UDP {};rport;branch={branch}", self.local),
            );
            self.cseq += 1;
            again.set("CSeq", format!("{} REGISTER", self.cseq));
            again.push("Authorization", auth);
            self.transact(again).await?
        } else {
            r
        };
        if r.status() == Some(200) {
            stats.registered.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        } else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device.id = %id, status = ?r.status(), "simulated recorder refused");
            Ok(false)
        }
    }

    async fn on_request(&mut self, req: Message) -> std::io::Result<()> {
        let method = req.method().unwrap_or("").to_string();
        let call = req.call_id().unwrap_or_default().to_string();
        match method.as_str() {
            "INVITE" => return self.on_invite(req).await,
            "ACK" => {
                if let Some((path, ssrc, download)) = self.offers.remove(&call) {
                    let profile = self.profile().clone();
                    if let Some(smp) = sample(&profile).await {
                        let (tx, rx) = watch::channel(false);
                        self.streams.insert(call.clone(), tx);
                        let media = (profile, smp);
                        let done = download.map(|mut d| {
                            if self.target.drop_first_download && !self.dropped_download {
                                self.dropped_download = true;
                                d.cut = Some(d.frames / 2);
                            }
                            (d, call, self.done_tx.clone())
                        });
                        tokio::spawn(stream_to(path, ssrc, media, rx, done));
                    }
                }
                return Ok(());
            }
            "BYE" => {
                self.answers.remove(&call);
                self.offers.remove(&call);
                self.peers.remove(&call);
                let known = self.streams.remove(&call).map(|tx| tx.send(true)).is_some();
                let r = req.response(
                    if known { 200 } else { 481 },
                    if known {
                        "OK"
                    } else {
                        "Call/Transaction Does Not Exist"
                    },
                    Some(&self.tag),
                );
                self.sock.send_to(&r.to_bytes(), self.target.sip).await?;
                return Ok(());
            }
            _ => {}
        }
        let code = match method.as_str() {
            "MESSAGE" | "SUBSCRIBE" => 200,
            _ => 501,
        };
        let mut r = req.response(
            code,
            if code == 200 {
                "OK"
            } else {
                "Not Acceptable Here"
            },
            Some(&self.tag),
        );
        if method == "SUBSCRIBE" {
            r.push(
                "Expires",
                req.header("Expires").unwrap_or("3600").to_string(),
            );
            self.subscribed = Some((
                req.call_id().unwrap_or_default().to_string(),
                req.from()
                    .and_then(|f| f.param("tag").map(str::to_string))
                    .unwrap_or_default(),
            ));
        }
        self.sock.send_to(&r.to_bytes(), self.target.sip).await?;
        if method == "MESSAGE" {
            let Ok(tree) = manscdp::parse_tree(&req.body_text()) else {
                return Ok(());
            };
            let sn: u32 = tree.text_of("SN").and_then(|s| s.parse().ok()).unwrap_or(0);
            let id = self.spec.device_id.clone();
            let body = match tree.text_of("CmdType") {
                Some("Catalog") => Some(format!(
                    "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n\
                     <DeviceID>{id}</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>{}</DeviceID>\r\n\
                     <Name>执法记录仪{}</Name>\r\n<Manufacturer>Shouhu</Manufacturer>\r\n<Model>SIM-1</Model>\r\n<ParentID>{id}</ParentID>\r\n\
                     <Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n",
                    channel_of(&id),
                    &id[16..]
                )),
                Some("RecordInfo") => {
                    // Footage "stored" on the card: 20 s at 10, 20 and 30 minutes before the
                    // end of the range (on the ten minutes), within the range.
                    let t = |n: &str| tree.text_of(n).and_then(manscdp::parse_local_time);
                    let (from, to) = (t("StartTime").unwrap_or(0), t("EndTime").unwrap_or(0));
                    let chan = tree.text_of("DeviceID").unwrap_or(&id).to_string();
                    let slot = to.div_euclid(600_000) * 600_000;
                    let items: Vec<String> = (1..=3)
                        .map(|k| slot - k * 600_000)
                        .filter(|s| *s >= from && *s + 20_000 <= to)
                        .map(|s| {
                            let f = |ms: i64| manscdp::format_local_time(ms).chars().take(19).collect::<String>();
                            format!(
                                "<Item>\r\n<DeviceID>{chan}</DeviceID>\r\n<Name>执法记录仪{}</Name>\r\n<FilePath>/sd/{}.mp4</FilePath>\r\n\
                                 <Address>SD</Address>\r\n<StartTime>{}</StartTime>\r\n<EndTime>{}</EndTime>\r\n<Secrecy>0</Secrecy>\r\n\
                                 <Type>time</Type>\r\n<FileSize>5242880</FileSize>\r\n</Item>\r\n",
                                &id[16..], s / 1000, f(s), f(s + 20_000)
                            )
                        })
                        .collect();
                    Some(format!(
                        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>{sn}</SN>\r\n\
                         <DeviceID>{chan}</DeviceID>\r\n<Name>执法记录仪</Name>\r\n<SumNum>{n}</SumNum>\r\n<RecordList Num=\"{n}\">\r\n{}</RecordList>\r\n</Response>\r\n",
                        items.concat(),
                        n = items.len()
                    ))
                }
                Some("DeviceInfo") => Some(format!(
                    "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n\
                     <DeviceID>{id}</DeviceID>\r\n<Result>OK</Result>\r\n<DeviceName>执法记录仪</DeviceName>\r\n<Manufacturer>Shouhu</Manufacturer>\r\n\
                     <Model>SIM-1</Model>\r\n<Firmware>1.0</Firmware>\r\n<Channel>1</Channel>\r\n</Response>\r\n"
                )),
                _ => None,
            };
            if let Some(b) = body {
                let call = format!("q{}-{}", sn, self.spec.device_id);
                let to = self.target.platform_id.clone();
                let m = self.request("MESSAGE", &to, &call, Some(b));
                self.send(&m).await?;
            }
        }
        Ok(())
    }
}

impl Device {
    async fn on_invite(&mut self, req: Message) -> std::io::Result<()> {
        let call = req.call_id().unwrap_or_default().to_string();
        if let Some(bytes) = self.answers.get(&call) {
            // A retransmission: the same answer again (a new one would open a new port).
            return self.sock.send_to(bytes, self.target.sip).await.map(|_| ());
        }
        let offer = shouhu_media::gb28181::sdp::parse(&req.body_text());
        let usable = matches!(&offer, Ok(m) if m.ip.is_some());
        if !usable || sample(&self.profile().clone()).await.is_none() {
            let r = req.response(488, "Not Acceptable Here", Some(&self.tag));
            return self
                .sock
                .send_to(&r.to_bytes(), self.target.sip)
                .await
                .map(|_| ());
        }
        let m = offer.expect("checked");
        let ssrc_text = m.ssrc.clone().unwrap_or_else(|| "0".into());
        let ssrc: u32 = ssrc_text.parse().unwrap_or(0);
        use shouhu_media::gb28181::sdp::MediaTransport;
        let target = SocketAddr::new(m.ip.expect("checked"), m.port);
        let ip = self.local.ip();
        let (path, port, media_line) = match m.transport {
            MediaTransport::Udp => (
                MediaPath::Udp(target),
                self.local.port(),
                "RTP/AVP 96\r\na=sendonly".to_string(),
            ),
            MediaTransport::TcpPassive => (
                MediaPath::Connect(target),
                9,
                "TCP/RTP/AVP 96\r\na=sendonly\r\na=setup:active\r\na=connection:new".to_string(),
            ),
            MediaTransport::TcpActive => {
                let l = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await?;
                let port = l.local_addr()?.port();
                (
                    MediaPath::Accept(l),
                    port,
                    "TCP/RTP/AVP 96\r\na=sendonly\r\na=setup:passive\r\na=connection:new"
                        .to_string(),
                )
            }
        };
        // A download: the `t=` range at `a=downloadspeed`, as 25 frames a second.
        let text = req.body_text();
        let download = m.session.eq_ignore_ascii_case("Download").then(|| {
            let line = |p: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(p).map(str::to_string))
            };
            let (a, b) = line("t=")
                .and_then(|t| {
                    let mut it = t.split_whitespace().map(|x| x.parse::<u64>().ok());
                    Some((it.next()??, it.next()??))
                })
                .unwrap_or((0, 0));
            let speed = line("a=downloadspeed:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            Download {
                frames: b.saturating_sub(a) * 25,
                speed,
                cut: None,
            }
        });
        let session = if download.is_some() {
            "Download"
        } else {
            "Play"
        };
        self.offers.insert(call.clone(), (path, ssrc, download));
        if let Some(from) = req.header("From") {
            self.peers.insert(call.clone(), from.to_string());
        }
        let answer = format!(
            "v=0\r\no={} 0 0 IN IP4 {ip}\r\ns={session}\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=video {port} {media_line}\r\na=rtpmap:96 PS/90000\r\ny={ssrc_text}\r\nf=\r\n",
            self.spec.device_id,
        );
        let mut r = req.response(200, "OK", Some(&self.tag));
        r.push(
            "Contact",
            format!("<sip:{}@{}>", self.spec.device_id, self.local),
        )
        .push("Content-Type", "APPLICATION/SDP");
        r.body = answer.into_bytes();
        let bytes = r.to_bytes();
        self.answers.insert(call, bytes.clone());
        self.sock.send_to(&bytes, self.target.sip).await.map(|_| ())
    }
}

/// The channel id of a simulated recorder: type code 131 in place of 132.
pub fn channel_of(device_id: &str) -> String {
    if device_id.len() == 20 {
        format!("{}131{}", &device_id[..10], &device_id[13..])
    } else {
        device_id.to_string()
    }
}

fn now_local() -> String {
    manscdp::format_local_time(chrono::Utc::now().timestamp_millis())
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Run one recorder until `stop`.
pub async fn run_recorder(
    spec: RecorderSpec,
    target: GbTarget,
    stats: Arc<GbStats>,
    mut stop: watch::Receiver<bool>,
) {
    let bind: SocketAddr = if target.sip.ip().is_loopback() {
        "127.0.0.1:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .expect("valid");
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "simulated recorder cannot bind");
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let local = sock.local_addr().expect("bound");
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    let mut d = Device {
        done_tx,
        dropped_download: false,
        peers: Default::default(),
        tag: format!("{:x}", rand::random::<u32>()),
        call_id: format!("ka-{}@{}", spec.device_id, local),
        spec,
        target,
        sock,
        local,
        cseq: 0,
        n: 0,
        sn: 0,
        subscribed: None,
        offers: std::collections::HashMap::new(),
        streams: std::collections::HashMap::new(),
        answers: std::collections::HashMap::new(),
    };
    let mut route = d.spec.route.clone();
    'outer: loop {
        match d.register(&stats).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        let reregister = tokio::time::Instant::now()
            + Duration::from_secs(u64::from(d.target.expires_secs) * 4 / 5);
        let mut keepalive = tokio::time::interval(d.target.keepalive);
        let mut position = tokio::time::interval(d.target.position);
        let mut last = tokio::time::Instant::now();
        loop {
            let mut buf = vec![0u8; 65_536];
            tokio::select! {
                _ = stop.changed() => {
                    let id = d.spec.device_id.clone();
                    let mut m = d.request("REGISTER", &id, &format!("reg-{}@{}", id, d.local), None);
                    m.push("Expires", "0");
                    let _ = d.send(&m).await;
                    return;
                }
                _ = tokio::time::sleep_until(reregister) => continue 'outer,
                Some((call, complete)) = done_rx.recv() => {
                    d.streams.remove(&call);
                    if !complete {
                    // A download cut short: the device hangs up its side of the dialog.
                    d.answers.remove(&call);
                    let to = d.target.platform_id.clone();
                    let mut m = d.request("BYE", &to, &call, None);
                    if let Some(peer) = d.peers.remove(&call) {
                        m.set("To", peer);
                    }
                    tracing::info!(device.id = %d.spec.device_id, call_id = %call, "simulated recorder dropped a download");
                    if d.transact(m).await.is_err() {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                    }
                    // A download sent everything: say so (MediaStatus 121); the platform hangs up.
                    d.peers.remove(&call);
                    d.sn += 1;
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>MediaStatus</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<NotifyType>121</NotifyType>\r\n</Notify>\r\n",
                        d.sn, channel_of(&d.spec.device_id)
                    );
                    let to = d.target.platform_id.clone();
                    let m = d.request("MESSAGE", &to, &format!("ms-{call}"), Some(body));
                    let _ = d.send(&m).await;
                }
                _ = keepalive.tick() => {
                    d.sn += 1;
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
                        d.sn, d.spec.device_id
                    );
                    let to = d.target.platform_id.clone();
                    let call = d.call_id.clone();
                    let m = d.request("MESSAGE", &to, &call, Some(body));
                    match d.transact(m).await {
                        Ok(r) if r.status() == Some(200) => { stats.keepalives.fetch_add(1, Ordering::Relaxed); }
                        Ok(_) => continue 'outer, // refused: register again
                        Err(_) => { stats.errors.fetch_add(1, Ordering::Relaxed); }
                    }
                }
                _ = position.tick() => {
                    let dt = last.elapsed().as_secs_f64();
                    last = tokio::time::Instant::now();
                    let (lat, lon, speed, heading) = route.step(dt);
                    d.sn += 1;
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>MobilePosition</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n\
                         <Time>{}</Time>\r\n<Longitude>{lon:.6}</Longitude>\r\n<Latitude>{lat:.6}</Latitude>\r\n<Speed>{speed:.1}</Speed>\r\n<Direction>{heading:.0}</Direction>\r\n<Altitude>5</Altitude>\r\n</Notify>\r\n",
                        d.sn, channel_of(&d.spec.device_id), now_local()
                    );
                    let to = d.target.platform_id.clone();
                    let m = match d.subscribed.clone() {
                        Some((call, from_tag)) => {
                            let mut m = d.request("NOTIFY", &to, &call, Some(body));
                            m.set("To", format!("<sip:{to}@{}>;tag={from_tag}", d.target.domain));
                            m.push("Event", "presence").push("Subscription-State", "active");
                            m
                        }
                        None => {
                            let call = d.call_id.clone();
                            d.request("MESSAGE", &to, &call, Some(body))
                        }
                    };
                    if d.send(&m).await.is_ok() {
                        stats.positions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                r = d.sock.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r {
                        if let Ok(msg) = parse_datagram(&buf[..n]) {
                            if msg.is_request() && d.on_request(msg).await.is_ok() {
                                stats.queries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Start recorders in the background (spread over the first second so they do not all register
/// in one instant); they stop, unregistering, when `stop` turns true.
pub fn start(
    recorders: Vec<RecorderSpec>,
    target: &GbTarget,
    stop: watch::Receiver<bool>,
) -> Arc<GbStats> {
    let stats = Arc::new(GbStats::default());
    let n = recorders.len().max(1) as u64;
    for (i, r) in recorders.into_iter().enumerate() {
        let t = target.clone();
        let s = stats.clone();
        let st = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 1000 / n)).await;
            run_recorder(r, t, s, st).await;
        });
    }
    stats
}

//! The configuration tree: defaults → TOML file → environment (`SHOUHU__SECTION__KEY`).
//!
//! Every struct denies unknown fields, so a typo in the file or in an environment variable is an
//! error at start, not a silently ignored setting. Secrets are redacted in `Debug`. The example
//! file `deploy/shouhu.example.toml` documents every key with its default; `shouhu config example`
//! prints it, and a test checks it parses into this tree.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The example configuration shipped in `deploy/`.
pub const EXAMPLE_TOML: &str = include_str!("../../deploy/shouhu.example.toml");

/// The secret settings. Each may also come from a file named by the environment variable of
/// its key with `_FILE` appended (`SHOUHU__DATABASE__URL_FILE=/run/secrets/db_url`), as container
/// secrets are mounted: the file's content, without a trailing newline, is the value.
pub const SECRET_KEYS: [&str; 7] = [
    "database.url",
    "blob.s3_secret_key",
    "sip.password",
    "auth.media_token_key",
    "auth.field_key",
    "auth.previous_field_keys",
    "auth.evidence_key",
];

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Process-wide settings.
    pub server: ServerConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// The HTTP(S) listener.
    pub http: HttpConfig,
    /// The Prometheus metrics listener.
    pub metrics: MetricsConfig,
    /// Login, sessions and lockout.
    pub auth: AuthConfig,
    /// The JT/T 808 vehicle terminal listener.
    pub jt808: Jt808Config,
    /// Live positions and dispatch.
    pub dispatch: DispatchConfig,
    /// The GB/T 28181 SIP server for body-worn recorders.
    pub sip: SipConfig,
    /// The stream hub: RTP ingest of live video.
    pub media: MediaConfig,
    /// Enforcement documents (PDF and Word).
    pub documents: DocumentsConfig,
    /// Where blobs (files, documents, recordings) are stored.
    pub blob: BlobConfig,
    /// Recording, retention and the disk-space watermark.
    pub recording: RecordingConfig,
    /// The audit log's hash chain and its exported heads.
    pub audit: AuditConfig,
}

/// `[audit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often the sealing job chains new audit rows and exports a signed head, seconds
    /// (also once at shutdown). Default 60.
    pub seal_interval_secs: u64,
    /// How long a transaction may stay open and still have its audit row sealed in the right
    /// place: rows committed later than this after rows above them were sealed count as
    /// inserted. Seconds, default 600.
    pub settle_secs: u64,
    /// File each seal appends its signed head to, one JSON line (ship it off the machine).
    /// Empty: `<data_dir>/audit-heads.jsonl`.
    pub heads_file: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            seal_interval_secs: 60,
            settle_secs: 600,
            heads_file: String::new(),
        }
    }
}

/// `[recording]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Target segment length in seconds (cut at the next keyframe). Default 60.
    pub segment_secs: u32,
    /// Days a recording is kept (org units can set their own). Default 365.
    pub retention_days: i64,
    /// The shortest retention anyone may set for an org unit, days (`PUT
    /// /recordings/retention/{org_unit_id}` answers 422 below it; `retention_days` must not be
    /// below it either). Default 365: the mission keeps enforcement video a year.
    pub min_retention_days: i64,
    /// How often the retention job runs, seconds. Default 3600.
    pub retention_interval_secs: u64,
    /// Raise the low-disk alert when the data directory's file system has less than this
    /// percentage free. Nothing is deleted because of it. Default 10.
    pub min_free_percent: f64,
    /// How long a start waits for the stream's first picture, seconds. Default 15.
    pub start_timeout_secs: u64,
    /// Largest camera file `POST /recordings/import` takes, bytes (it is held in memory while
    /// it is cut into segments). Default 2 GiB.
    pub max_import_bytes: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            segment_secs: 60,
            retention_days: 365,
            min_retention_days: 365,
            retention_interval_secs: 3600,
            min_free_percent: 10.0,
            start_timeout_secs: 15,
            max_import_bytes: 2 << 30,
        }
    }
}

/// `[blob]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobConfig {
    /// `local` (files under `<data_dir>/blobs`) or `s3` (an S3-compatible object store).
    pub backend: String,
    /// S3 endpoint URL, e.g. `http://minio:9000` (path-style requests).
    pub s3_endpoint: String,
    /// S3 bucket (created at start if it does not exist).
    pub s3_bucket: String,
    /// S3 region of the signature. Default `us-east-1`.
    pub s3_region: String,
    /// S3 access key id.
    pub s3_access_key: String,
    /// S3 secret access key.
    pub s3_secret_key: Secret,
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key: String::new(),
            s3_secret_key: Secret::default(),
        }
    }
}

/// `[documents]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// TrueType/OpenType font (or collection) with Chinese glyphs, embedded as a subset in PDFs.
    /// Default: WenQuanYi Micro Hei from Debian's `fonts-wqy-microhei`.
    pub font_path: PathBuf,
    /// Face index within a font collection (`.ttc`). Default 0.
    pub font_index: u32,
    /// Document batches rendered at once on this node (the others wait). Default 1.
    pub batch_workers: usize,
    /// Document batches one account may have queued or running (more is `429`), and finished
    /// archives it keeps. Default 2.
    pub max_open_batches: usize,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            font_path: PathBuf::from("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
            font_index: 0,
            batch_workers: 1,
            max_open_batches: 2,
        }
    }
}

/// `[media]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The address put in SDP offers, where devices send RTP. Empty (default): the host of the
    /// SIP server's advertised address.
    pub advertise_ip: String,
    /// Local address of RTP sockets and, when it is not a wildcard, the only address WebRTC
    /// (ICE) offers to browsers. Default `0.0.0.0` (`127.0.0.1` for `shouhu demo`).
    pub bind_ip: String,
    /// First RTP port. Default 30000.
    pub rtp_port_min: u16,
    /// Last RTP port. Default 30999.
    pub rtp_port_max: u16,
    /// One UDP port for every live stream, told apart by SSRC (for firewalls that open one
    /// port). Default 0: a port per stream from the range.
    pub rtp_shared_port: u16,
    /// A stream with no media this long ends, with a log line naming the likely cause. Default 10.
    pub no_media_timeout_secs: u64,
    /// A stream stays up this long after its last viewer left. Default 10.
    pub grace_secs: u64,
    /// First UDP port of WebRTC (ICE) for browsers. Default 31000.
    pub webrtc_udp_port_min: u16,
    /// Last UDP port of WebRTC. Default 31999.
    pub webrtc_udp_port_max: u16,
    /// Addresses announced to browsers as ICE host candidates (1:1 NAT). Default none: the
    /// interfaces' own addresses.
    pub webrtc_nat_ips: Vec<String>,
    /// How recorders send media: `udp` (default), `tcp-passive` (the device connects to us) or
    /// `tcp-active` (we connect to the device), RTP over TCP framed per RFC 4571.
    pub transport: String,
    /// Helper programs (ffmpeg for the AAC audio of HLS segments, gst-launch for snapshots) run
    /// at once on this node. Default 4.
    pub max_subprocesses: usize,
    /// How long a request waits for a free helper slot, seconds (then `503 busy`). Default 10.
    pub subprocess_queue_secs: u64,
    /// A helper program running longer is stopped, seconds (`504 timed_out`). Default 30.
    pub subprocess_timeout_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            advertise_ip: String::new(),
            bind_ip: "0.0.0.0".into(),
            rtp_port_min: 30_000,
            rtp_port_max: 30_999,
            rtp_shared_port: 0,
            no_media_timeout_secs: 10,
            grace_secs: 10,
            webrtc_udp_port_min: 31_000,
            webrtc_udp_port_max: 31_999,
            webrtc_nat_ips: Vec::new(),
            transport: "udp".into(),
            max_subprocesses: 4,
            subprocess_queue_secs: 10,
            subprocess_timeout_secs: 30,
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Run the SIP server. Default true.
    pub enabled: bool,
    /// UDP and TCP listen address. Default `0.0.0.0:5060` (`127.0.0.1:5060` for `shouhu demo`).
    pub listen: SocketAddr,
    /// The `host:port` put in `Via` and `Contact` of requests to devices. Empty (default): the
    /// listen address, or, when that is a wildcard, the address of the interface with the
    /// default route.
    pub advertise: String,
    /// The platform's 20-digit SIP id. Default `34020000002000000001`.
    pub platform_id: String,
    /// SIP domain and digest realm (10 digits). Default `3402000000`.
    pub domain: String,
    /// Shared password of recorders that have none of their own. Default empty: such recorders
    /// cannot register.
    pub password: Secret,
    /// Digest algorithms challenged, in order: `MD5`, `SHA-256`. Default `["MD5"]`.
    pub digest_algorithms: Vec<String>,
    /// Longest registration granted (seconds). Default 7200.
    pub max_expires_secs: u32,
    /// Keepalive interval assumed for devices (seconds). Default 60.
    pub keepalive_interval_secs: u32,
    /// Missed keepalives before a recorder is offline. Default 3.
    pub keepalive_misses: u32,
    /// MobilePosition subscription interval asked of devices (seconds; 0 = do not subscribe).
    /// Default 5.
    pub position_interval_secs: u32,
    /// Messages a device may send in a burst before rate limiting. Default 100.
    pub rate_burst: u32,
    /// Messages per second a device may sustain. Default 20.
    pub rate_per_sec: u32,
    /// Most simultaneous TCP connections. Default 20000.
    pub max_tcp_connections: usize,
    /// Most simultaneous TCP connections from one address (IPv6: its /64). Default 64.
    pub max_tcp_per_address: usize,
    /// A TCP connection that delivers no whole message for this long is closed, seconds
    /// (stray bytes do not count). Default 300.
    pub tcp_idle_timeout_secs: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:5060".parse().expect("valid"),
            advertise: String::new(),
            platform_id: "34020000002000000001".into(),
            domain: "3402000000".into(),
            password: Secret::default(),
            digest_algorithms: vec!["MD5".into()],
            max_expires_secs: 7200,
            keepalive_interval_secs: 60,
            keepalive_misses: 3,
            position_interval_secs: 5,
            rate_burst: 100,
            rate_per_sec: 20,
            max_tcp_connections: 20_000,
            max_tcp_per_address: 64,
            tcp_idle_timeout_secs: 300,
        }
    }
}

/// `[jt808]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jt808Config {
    /// Run the listener. Default true.
    pub enabled: bool,
    /// TCP listen address. Default `0.0.0.0:7611` (`127.0.0.1:7611` for `shouhu demo`).
    pub listen: SocketAddr,
    /// Let unknown terminals register (a vehicle is created for each). Default false: only
    /// terminals entered in the vehicle registry may register.
    pub open_registration: bool,
    /// Org unit code that vehicles created by open registration belong to; empty = the root.
    pub open_registration_org_unit: String,
    /// Close connections that have not authenticated within this many seconds. Default 60.
    pub auth_timeout_secs: u64,
    /// Close connections silent for this many seconds. Default 300.
    pub idle_timeout_secs: u64,
    /// Most simultaneous terminal connections. Default 20000.
    pub max_connections: usize,
    /// Frames one source address may send before its connections authenticate, at once
    /// (registrations and authentications count). Default 2000: generous, since many 4G
    /// terminals share a carrier NAT address and all re-authenticate after a restart.
    pub source_burst: u32,
    /// Unauthenticated frames a source address regains per second. Default 100.
    pub source_per_sec: u32,
    /// Connections one source address (an IPv6 source: its /64) may hold before they
    /// authenticate. Default 256: many 4G terminals share a carrier NAT address and all
    /// reconnect after a restart. The last 10 % of `max_connections` are kept for
    /// authenticated links whatever this says.
    pub max_unauthenticated_per_source: u32,
    /// With open registration: vehicles unknown terminals from one source address (IPv6: its
    /// /64) may create a minute; beyond it they are answered "failed" (they retry). Default 10.
    pub open_registrations_per_source_per_min: u32,
}

impl Default for Jt808Config {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:7611".parse().expect("valid"),
            open_registration: false,
            open_registration_org_unit: String::new(),
            auth_timeout_secs: 60,
            idle_timeout_secs: 300,
            max_connections: 20_000,
            source_burst: 2_000,
            source_per_sec: 100,
            max_unauthenticated_per_source: 256,
            open_registrations_per_source_per_min: 10,
        }
    }
}

/// `[dispatch]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Position batches per second sent to each WebSocket client. Default 4.
    pub push_rate_hz: f64,
    /// A JT/T 808 vehicle silent this long is no longer online (seconds). Default 180.
    pub online_timeout_jt808_secs: u64,
    /// A GB/T 28181 recorder silent this long is no longer online (seconds). Default 180.
    pub online_timeout_gb28181_secs: u64,
    /// A phone app silent this long is no longer online (seconds). Default 120.
    pub online_timeout_app_secs: u64,
    /// A unit silent this long is offline (seconds). Default 600.
    pub offline_after_secs: u64,
    /// Moves implying more than this speed are implausible jumps (km/h). Default 250.
    pub max_speed_kmh: f64,
    /// Arrival radius around an enterprise without a drawn boundary (metres). Default 150.
    pub enterprise_radius_m: f64,
    /// Position history is kept this many days. Default 365.
    pub track_retention_days: i64,
    /// Fixes are collected this long before each history transaction (ms). Default 2000.
    pub history_flush_ms: u64,
    /// Latitude of the city, for the metric spatial index. Default 31.2 (Shanghai).
    pub reference_latitude: f64,
    /// A call to an officer's phone app that nobody answers ends after this long (seconds).
    /// Default 45.
    pub call_ring_secs: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            push_rate_hz: 4.0,
            online_timeout_jt808_secs: 180,
            online_timeout_gb28181_secs: 180,
            online_timeout_app_secs: 120,
            offline_after_secs: 600,
            max_speed_kmh: 250.0,
            enterprise_radius_m: 150.0,
            track_retention_days: 365,
            history_flush_ms: 2000,
            reference_latitude: 31.2,
            call_ring_secs: 45,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Directory for the SQLite database, blobs and generated keys. Default `data`.
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; empty means `sqlite://<data_dir>/shouhu.db`.
    pub url: Secret,
    /// Pool size. Default 16.
    pub max_connections: u32,
    /// SQLite: page cache per connection, MiB (allocated as pages are used; all connections
    /// together are bounded by `sqlite_heap_limit_mib`). Default 128.
    pub sqlite_cache_mib: u64,
    /// SQLite: memory map of the database file, MiB (pages read through it count as resident,
    /// file-backed memory). Default 0 (off).
    pub sqlite_mmap_mib: u64,
    /// SQLite: all connections' heap together, MiB — page caches share it (a soft limit: near
    /// it, connections reuse cache pages instead of allocating). 0 = no limit. Default 32.
    pub sqlite_heap_limit_mib: u64,
}

impl DatabaseConfig {
    /// SQLite's memory settings.
    pub fn sqlite_tuning(&self) -> shouhu_storage::SqliteTuning {
        shouhu_storage::SqliteTuning {
            cache_mib: self.sqlite_cache_mib,
            mmap_mib: self.sqlite_mmap_mib,
            heap_limit_mib: self.sqlite_heap_limit_mib,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 16,
            sqlite_cache_mib: 128,
            sqlite_mmap_mib: 0,
            sqlite_heap_limit_mib: 32,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Directory of the built web UI (`web/dist`). Default `web/dist`.
    pub web_dir: PathBuf,
    /// Largest JSON body, bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest upload (imports, files), bytes. Default 32 MiB.
    pub max_upload_bytes: usize,
    /// Longest URL (path and query, as sent), bytes: longer is `414`. Default 8192.
    pub max_uri_bytes: usize,
    /// Connections at once. Default 10000.
    pub max_connections: usize,
    /// Connections at once from one address (IPv6: its /64; behind a proxy, the proxy's).
    /// Default 256.
    pub max_connections_per_address: usize,
    /// The TLS handshake and each request's headers must arrive within this, seconds.
    /// Default 10.
    pub header_timeout_secs: u64,
    /// A request body that sends nothing for this long ends the request, seconds. Default 30.
    pub body_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed, seconds. Default 120.
    pub idle_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` is believed: the client address of a request
    /// from one of them is the rightmost address in that header that is not a trusted proxy.
    /// Default none (the TCP peer is the client).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Mark the session cookie `Secure` even without TLS here (behind a TLS proxy). Default false.
    pub secure_cookies: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid"),
            tls_cert: None,
            tls_key: None,
            web_dir: PathBuf::from("web/dist"),
            max_body_bytes: 1 << 20,
            max_upload_bytes: 32 << 20,
            max_uri_bytes: 8192,
            trusted_proxies: Vec::new(),
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 120,
            secure_cookies: false,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` on its own listener. Default true.
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9464".parse().expect("valid"),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Failed logins before the account locks. Default 5.
    pub max_failures: u32,
    /// Lock duration, minutes. Default 15.
    pub lockout_minutes: u64,
    /// Idle timeout, minutes. Default 30.
    pub idle_timeout_minutes: u64,
    /// Per-role idle timeout overrides, minutes (0 = never).
    pub role_idle_timeout_minutes: BTreeMap<String, u64>,
    /// Roles whose wall-screen sessions never time out for idleness. Default `["operator"]`.
    pub wall_screen_roles: Vec<String>,
    /// argon2id memory cost, KiB. Default 19456 (OWASP minimum).
    pub argon2_memory_kib: u32,
    /// argon2id iterations. Default 2.
    pub argon2_iterations: u32,
    /// argon2id parallelism. Default 1.
    pub argon2_parallelism: u32,
    /// Key for signed media URLs (hex, 32 bytes); empty = generated once into the data directory.
    pub media_token_key: Secret,
    /// SM4 key sealing personal data at rest — officers' and enterprise principals' phones, a
    /// case party's ID number and phone, a proposed fine (hex, 16 bytes); empty = generated once
    /// into the data directory (`field.key`).
    pub field_key: Secret,
    /// Keys that sealed personal data before `field_key` replaced them (hex, comma-separated):
    /// values sealed under them stay readable until `shouhu admin rotate-field-key` seals them
    /// again under `field_key`. Empty by default.
    pub previous_field_keys: Secret,
    /// Ed25519 seed signing recordings' digest chains and export manifests (hex, 32 bytes);
    /// empty = generated once into the data directory (`evidence.key`).
    pub evidence_key: Secret,
    /// Lifetime of a signed media token, seconds. Default 300.
    pub media_token_ttl_secs: u64,
    /// How long a node trusts its cached view of a session, seconds. Default 5.
    pub session_cache_secs: u64,
    /// Failed logins one client address may make in a burst (successful ones cost nothing).
    /// Default 10.
    pub login_burst: u32,
    /// Failed logins an address regains per minute. Default 10.
    pub login_per_minute: u32,
    /// Login attempts of one address checked at once (more are `429` at once). Default 32.
    pub login_concurrent_per_address: u32,
    /// Password hashes computed at once in the process (each takes `argon2_memory_kib`); 0 =
    /// one per CPU. Default 0.
    pub hash_concurrency: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout_minutes: 15,
            idle_timeout_minutes: 30,
            role_idle_timeout_minutes: BTreeMap::new(),
            wall_screen_roles: vec!["operator".into()],
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            media_token_key: Secret::default(),
            field_key: Secret::default(),
            previous_field_keys: Secret::default(),
            evidence_key: Secret::default(),
            media_token_ttl_secs: 300,
            login_burst: 10,
            login_per_minute: 10,
            login_concurrent_per_address: 32,
            hash_concurrency: 0,
            session_cache_secs: 5,
        }
    }
}

impl Config {
    /// Load: defaults, then `file` (if given; it must exist), then `SHOUHU__…` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with_env(file, Env::prefixed("SHOUHU__").split("__"))
    }

    /// Load for `shouhu demo`: like [`Config::load`], but every device-facing listener defaults to
    /// the loopback address (JT/T 808 `127.0.0.1:7611`, SIP `127.0.0.1:5060`, RTP and WebRTC on
    /// `127.0.0.1`), so a demo never answers devices on the network and advertises no interface
    /// address. A value set in the file or the environment still wins.
    pub fn load_demo(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_layers(
            file,
            Env::prefixed("SHOUHU__").split("__"),
            Some(Self::demo_defaults()),
        )
    }

    /// The demo's own defaults, layered over the product's.
    fn demo_defaults() -> Figment {
        let lo = std::net::Ipv4Addr::LOCALHOST;
        let d = Config::default();
        Figment::new()
            .merge(Serialized::default(
                "jt808.listen",
                SocketAddr::new(lo.into(), d.jt808.listen.port()),
            ))
            .merge(Serialized::default(
                "sip.listen",
                SocketAddr::new(lo.into(), d.sip.listen.port()),
            ))
            .merge(Serialized::default("media.bind_ip", lo.to_string()))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> anyhow::Result<Self> {
        Self::load_layers(file, env, None)
    }

    fn load_layers(file: Option<&Path>, env: Env, over: Option<Figment>) -> anyhow::Result<Self> {
        // `…_FILE` variables name files of secrets (below), not keys of the tree.
        let env = env.filter(|k| !k.as_str().to_ascii_lowercase().ends_with("_file"));
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(o) = over {
            fig = fig.merge(o);
        }
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(env);
        for key in SECRET_KEYS {
            let var = format!("SHOUHU__{}_FILE", key.replace('.', "__").to_uppercase());
            let Some(path) = std::env::var_os(&var) else {
                continue;
            };
            let value = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "{var}: cannot read the file of {key} ({}): {e}",
                    Path::new(&path).display()
                )
            })?;
            fig = fig.merge(Serialized::default(
                key,
                value.trim_end_matches(['\n', '\r']).to_string(),
            ));
        }
        let cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            anyhow::bail!("http.tls_cert and http.tls_key go together");
        }
        if self.auth.max_failures == 0 {
            anyhow::bail!("auth.max_failures must be at least 1");
        }
        if !(self.dispatch.push_rate_hz > 0.0 && self.dispatch.push_rate_hz <= 50.0) {
            anyhow::bail!("dispatch.push_rate_hz must be in (0, 50]");
        }
        if !(1..=36_500).contains(&self.recording.min_retention_days) {
            anyhow::bail!("recording.min_retention_days must be 1–36500");
        }
        if self.recording.retention_days < self.recording.min_retention_days {
            anyhow::bail!(
                "recording.retention_days ({}) must not be below recording.min_retention_days ({})",
                self.recording.retention_days,
                self.recording.min_retention_days
            );
        }
        if self.dispatch.track_retention_days < 1 {
            anyhow::bail!("dispatch.track_retention_days must be at least 1");
        }
        if self.dispatch.enterprise_radius_m.is_nan() || self.dispatch.enterprise_radius_m <= 0.0 {
            anyhow::bail!("dispatch.enterprise_radius_m must be positive");
        }
        let sip = &self.sip;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&sip.platform_id, 20) {
            anyhow::bail!("sip.platform_id must be 20 digits");
        }
        if !digits(&sip.domain, 10) {
            anyhow::bail!("sip.domain must be 10 digits");
        }
        if sip.digest_algorithms.is_empty() {
            anyhow::bail!("sip.digest_algorithms must name at least one of MD5, SHA-256");
        }
        for a in &sip.digest_algorithms {
            if shouhu_media::sip::digest::Algorithm::from_token(a).is_none() {
                anyhow::bail!("sip.digest_algorithms: {a:?} is not MD5 or SHA-256");
            }
        }
        if sip.keepalive_interval_secs == 0 || sip.keepalive_misses == 0 {
            anyhow::bail!(
                "sip.keepalive_interval_secs and sip.keepalive_misses must be at least 1"
            );
        }
        if sip.max_expires_secs < 60 {
            anyhow::bail!("sip.max_expires_secs must be at least 60");
        }
        if sip.rate_burst == 0 || sip.rate_per_sec == 0 {
            anyhow::bail!("sip.rate_burst and sip.rate_per_sec must be at least 1");
        }
        let m = &self.media;
        if !m.advertise_ip.is_empty() && m.advertise_ip.parse::<std::net::IpAddr>().is_err() {
            anyhow::bail!("media.advertise_ip must be an IP address");
        }
        if m.bind_ip.parse::<std::net::IpAddr>().is_err() {
            anyhow::bail!("media.bind_ip must be an IP address");
        }
        if m.webrtc_udp_port_min == 0 || m.webrtc_udp_port_min > m.webrtc_udp_port_max {
            anyhow::bail!("media.webrtc_udp_port_min must be at least 1 and not above media.webrtc_udp_port_max");
        }
        for ip in &m.webrtc_nat_ips {
            if ip.parse::<std::net::IpAddr>().is_err() {
                anyhow::bail!("media.webrtc_nat_ips: {ip:?} is not an IP address");
            }
        }
        if shouhu_media::gb28181::sdp::MediaTransport::parse(&m.transport).is_none() {
            anyhow::bail!("media.transport must be udp, tcp-passive or tcp-active");
        }
        if m.rtp_port_min == 0 || m.rtp_port_min > m.rtp_port_max {
            anyhow::bail!("media.rtp_port_min must be at least 1 and not above media.rtp_port_max");
        }
        if !(1..=86_400).contains(&self.audit.seal_interval_secs) {
            anyhow::bail!("audit.seal_interval_secs must be between 1 and 86400");
        }
        if self.audit.settle_secs < 1 {
            anyhow::bail!("audit.settle_secs must be at least 1");
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        if self.database.url.0.is_empty() {
            shouhu_storage::Db::sqlite_url_in(&self.server.data_dir)
        } else {
            self.database.url.0.clone()
        }
    }

    /// The file sealed audit heads are appended to.
    pub fn audit_heads_file(&self) -> PathBuf {
        if self.audit.heads_file.is_empty() {
            self.server.data_dir.join("audit-heads.jsonl")
        } else {
            PathBuf::from(&self.audit.heads_file)
        }
    }

    /// Idle timeout of a session of `role` (None = never).
    pub fn idle_timeout_ms(&self, role: &str, wall_screen: bool) -> Option<i64> {
        if wall_screen && self.auth.wall_screen_roles.iter().any(|r| r == role) {
            return None;
        }
        let minutes = self
            .auth
            .role_idle_timeout_minutes
            .get(role)
            .copied()
            .unwrap_or(self.auth.idle_timeout_minutes);
        (minutes > 0).then_some(minutes as i64 * 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_the_default_tree() {
        let fig = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(EXAMPLE_TOML));
        let cfg: Config = fig.extract().expect("example parses");
        assert_eq!(cfg.http.listen, Config::default().http.listen);
        assert_eq!(cfg.auth.max_failures, 5);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let fig = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[http]\nlisten_addr = \"x\"\n"));
        let err = fig.extract::<Config>().unwrap_err().to_string();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn environment_overrides() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SHOUHU__HTTP__LISTEN", "127.0.0.1:0");
            jail.set_env("SHOUHU__AUTH__LOCKOUT_MINUTES", "30");
            let cfg = Config::load(None).expect("loads");
            assert_eq!(cfg.http.listen.port(), 0);
            assert_eq!(cfg.auth.lockout_minutes, 30);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn the_demo_listens_on_loopback_unless_told_otherwise() {
        figment::Jail::expect_with(|jail| {
            let cfg = Config::load_demo(None).expect("loads");
            assert_eq!(
                cfg.jt808.listen,
                "127.0.0.1:7611".parse::<SocketAddr>().unwrap()
            );
            assert_eq!(
                cfg.sip.listen,
                "127.0.0.1:5060".parse::<SocketAddr>().unwrap()
            );
            assert_eq!(cfg.media.bind_ip, "127.0.0.1");
            assert_eq!(cfg.http.listen.ip(), std::net::Ipv4Addr::LOCALHOST);
            // `serve` keeps the product's defaults.
            assert!(Config::load(None).unwrap().sip.listen.ip().is_unspecified());
            jail.set_env("SHOUHU__SIP__LISTEN", "0.0.0.0:5062");
            jail.create_file("demo.toml", "[jt808]\nlisten = \"0.0.0.0:7612\"\n")?;
            let cfg = Config::load_demo(Some(Path::new("demo.toml"))).expect("loads");
            assert_eq!(
                cfg.sip.listen,
                "0.0.0.0:5062".parse::<SocketAddr>().unwrap()
            );
            assert_eq!(
                cfg.jt808.listen,
                "0.0.0.0:7612".parse::<SocketAddr>().unwrap()
            );
            assert_eq!(cfg.media.bind_ip, "127.0.0.1");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn secrets_come_from_files_named_in_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("db_url", "postgres://shouhu:s3cret@db:5432/shouhu\n")?;
            jail.create_file("sip_password", "Device@Pass1")?;
            jail.set_env("SHOUHU__DATABASE__URL_FILE", "db_url");
            jail.set_env("SHOUHU__SIP__PASSWORD_FILE", "sip_password");
            let cfg = Config::load(None).expect("loads");
            assert_eq!(
                cfg.database.url.0,
                "postgres://shouhu:s3cret@db:5432/shouhu"
            );
            assert_eq!(cfg.sip.password.0, "Device@Pass1");
            jail.set_env("SHOUHU__AUTH__FIELD_KEY_FILE", "no-such-file");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.contains("SHOUHU__AUTH__FIELD_KEY_FILE") && err.contains("auth.field_key"),
                "{err}"
            );
            Ok(())
        });
    }

    /// Issue 21 item 5: metrics on loopback unless configured, also in the container image; no
    /// password in the shipped deployment files.
    #[test]
    fn shipped_defaults_are_safe() {
        assert!(Config::default().metrics.listen.ip().is_loopback());
        assert!(Config::default().http.listen.ip().is_loopback());
        let image = include_str!("../../deploy/Containerfile");
        assert!(
            image
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .all(|l| !l.contains("SHOUHU__METRICS__LISTEN")),
            "the image opens metrics"
        );
        let compose = include_str!("../../deploy/compose.yaml");
        for line in compose.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !line.contains("POSTGRES_PASSWORD:") && !line.contains("postgres://shouhu:"),
                "a password in compose.yaml: {line}"
            );
        }
        assert!(compose.contains("POSTGRES_PASSWORD_FILE"));
        assert!(compose.contains("SHOUHU__DATABASE__URL_FILE"));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::default();
        c.database.url = Secret("postgres://u:pw@h/db".into());
        assert!(!format!("{c:?}").contains("pw@"));
    }

    #[test]
    fn wall_screen_operators_never_idle_out() {
        let c = Config::default();
        assert_eq!(c.idle_timeout_ms("operator", true), None);
        assert_eq!(c.idle_timeout_ms("operator", false), Some(30 * 60_000));
        assert_eq!(c.idle_timeout_ms("admin", true), Some(30 * 60_000));
    }
}

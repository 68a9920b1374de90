//! The GB/T 28181 platform's device-facing state machine, sans-IO and clock-free.
//!
//! Contract: the I/O layer feeds every parsed message with [`Platform::on_message`], every
//! unparsable one with [`Platform::on_parse_error`], calls [`Platform::on_tick`] at least once a
//! second (or at [`Platform::next_deadline`]), and after each call drains
//! [`Platform::take_outputs`]: bytes to send to a [`Peer`], unit events for dispatch, and device
//! updates for the registry. The registry of known devices and their secrets is pushed in with
//! [`Platform::set_device`] / [`Platform::remove_device`].
//!
//! What it does:
//! * `REGISTER` with digest ([`super::register`]); a new registration asks the device for its
//!   `Catalog` and `DeviceInfo` and, when `position_interval_secs > 0`, subscribes to
//!   `MobilePosition`;
//! * `Keepalive` keeps a device online; [`PlatformConfig::keepalive_misses`] missed intervals, an
//!   expired registration or `Expires: 0` make it offline;
//! * `MobilePosition` by `MESSAGE` or `NOTIFY`, `Alarm` (answered with a `Response`), multi-page
//!   `Catalog`, `DeviceInfo` and `DeviceStatus` responses;
//! * UDP retransmissions are absorbed ([`ServerTransactions`]) and the platform's own requests
//!   retransmitted ([`ClientTransactions`]);
//! * each device id has a token bucket, charged only by messages from the device's registered
//!   source; a device over its rate is answered `503` (and logged once per window) without
//!   touching other devices that may share its address. Before it registers, its messages are
//!   charged per (device id, source address) with the same budget, so a flood naming it from
//!   elsewhere cannot keep it from registering either.
//!   Everything else — a message naming a registered device from another address or transport,
//!   a `REGISTER` moving a device, an unknown id — is charged to its source address
//!   ([`super::limits::SourceBudget`], [`SOURCE_RATE_FACTOR`] times a device's budget) and
//!   dropped silently over it ([`drop_reason::SOURCE_RATE_LIMITED`]): a flood naming a camera
//!   from elsewhere cannot spend the camera's own budget.
//!
//! Identity (who may speak for a device):
//! * tags, branches and Call-IDs are random, from the CSPRNG seeded at [`Platform::new`] (the
//!   binary seeds it from the OS); they say nothing about the nonce secret or each other;
//! * a digest nonce answers one `REGISTER` only. Nonces are stateless (HMAC and issue time):
//!   challenging stores nothing. Only a `REGISTER` whose digest is right spends its nonce: by
//!   default in the platform's own memory ([`Platform::on_message`]); with a shared store
//!   ([`Platform::use_shared_nonces`]), [`Platform::receive`] hands such a request back as a
//!   [`NonceSpend`], the I/O layer records the nonce as used in the store (an insert that
//!   conflicts when it was used before) and feeds the outcome to [`Platform::on_nonce_spent`].
//!   A captured `REGISTER` replayed later gets `401 stale`; nothing else waits for the store;
//! * requests inside a dialog (`BYE`) and responses to the platform's requests count only when
//!   they come from the device's registered source address over its registered transport; the
//!   rest is dropped and reported as [`Output::Dropped`];
//! * with TCP media where the platform connects (`a=setup:active`), the answer's `c=` address is
//!   replaced by the device's registered source address (devices behind carrier NAT announce a
//!   private one, and an address anyone could write must not make the platform connect to it).
//!
//! Unit events name the device id as `unit_id`; the binary maps device ids to units.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::limits::{source_key as source_ip_key, Budget, SourceBudget};
use super::manscdp::{self, Body, CatalogItem};
use super::register::{self, Admission, NonceState, RegisterPolicy, Secret};
use super::sdp::{self, MediaTransport, Offer};
use super::Now;
use crate::model::{Position, PositionSource, UnitEvent};
use crate::sip::digest::{Algorithm, NonceIssuer};
use crate::sip::message::{NameAddr, ParseError};
use crate::sip::transaction::{ClientTransactions, ResponseMatch, ServerTransactions};
use crate::sip::Message;

/// How bytes reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The shared UDP socket.
    Udp,
    /// A TCP connection, by the I/O layer's connection id.
    Tcp(u64),
}

impl Transport {
    /// `UDP` / `TCP`.
    pub fn token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
        }
    }
}

/// A device's network end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Socket kind.
    pub transport: Transport,
    /// Remote address.
    pub addr: SocketAddr,
}

/// Platform settings.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The platform's 20-digit SIP id.
    pub platform_id: String,
    /// SIP domain / realm (10 digits).
    pub domain: String,
    /// The `host:port` the platform puts in `Via` and `Contact`.
    pub advertised: String,
    /// Digest algorithms challenged, in order.
    pub algorithms: Vec<Algorithm>,
    /// Longest registration granted, seconds.
    pub max_expires_secs: u32,
    /// Keepalive interval assumed for devices, seconds.
    pub keepalive_interval_secs: u32,
    /// Missed keepalives before a device is offline.
    pub keepalive_misses: u32,
    /// MobilePosition subscription interval, seconds (0: do not subscribe).
    pub position_interval_secs: u32,
    /// How long a nonce is good for, seconds.
    pub nonce_lifetime_secs: u64,
    /// Token bucket per device: burst.
    pub rate_burst: u32,
    /// Token bucket per device: refill per second.
    pub rate_per_sec: u32,
    /// `User-Agent` / `Server` value.
    pub user_agent: String,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            platform_id: "34020000002000000001".into(),
            domain: "3402000000".into(),
            advertised: "127.0.0.1:5060".into(),
            algorithms: vec![Algorithm::Md5],
            max_expires_secs: 7200,
            keepalive_interval_secs: 60,
            keepalive_misses: 3,
            position_interval_secs: 5,
            nonce_lifetime_secs: 300,
            rate_burst: 100,
            rate_per_sec: 20,
            user_agent: "Shouhu".into(),
        }
    }
}

/// A change in a device's access state, for the registry and the API.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceUpdate {
    /// Every page of a `RecordInfo` answer collected (records sorted by start).
    RecordInfo {
        /// Device id.
        device_id: String,
        /// SN of the query.
        sn: u32,
        /// The records.
        items: Vec<manscdp::RecordItem>,
    },
    /// Registered (first time since being away).
    Registered {
        /// Device id.
        device_id: String,
        /// Where it is.
        peer: Peer,
        /// Granted lifetime.
        expires_secs: u32,
    },
    /// Unregistered (`Expires: 0`) or its registration ran out.
    Unregistered {
        /// Device id.
        device_id: String,
        /// Why.
        reason: &'static str,
    },
    /// Keepalives stopped (registration still standing) or resumed.
    Link {
        /// Device id.
        device_id: String,
        /// Online now.
        online: bool,
    },
    /// `DeviceInfo` answered.
    Info {
        /// Device id.
        device_id: String,
        /// Manufacturer.
        manufacturer: Option<String>,
        /// Model.
        model: Option<String>,
        /// Firmware.
        firmware: Option<String>,
        /// Channel count.
        channels: Option<u32>,
    },
    /// Every page of a `Catalog` answer collected.
    Catalog {
        /// Device id.
        device_id: String,
        /// Its channels.
        items: Vec<CatalogItem>,
    },
}

/// A `REGISTER` whose digest is right, waiting for its nonce to be spent in the shared store
/// (see [`Platform::receive`]). Hand it back with [`Platform::on_nonce_spent`].
#[derive(Debug, Clone)]
pub struct NonceSpend {
    nonce: String,
    expires_at_ms: i64,
    peer: Peer,
    msg: Message,
}

impl NonceSpend {
    /// The nonce to record as used.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Until when to keep the record, UTC ms (the nonce is stale afterwards anyway).
    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

/// Most used nonces the platform remembers itself (when full of unexpired ones, a further
/// `REGISTER` is answered `401 stale` until some expire: refusing is the safe side).
pub const MAX_LOCAL_NONCES: usize = 65_536;

/// A source address's budget for traffic not from a registered device's own source, as a
/// multiple of one device's budget (many devices may share a carrier NAT address and move
/// together).
pub const SOURCE_RATE_FACTOR: u32 = 10;

/// Why a message was dropped (the label of the drop counter).
pub mod drop_reason {
    /// A request inside a dialog (`BYE`) from another address or transport than the device's
    /// registration.
    pub const REQUEST_NOT_FROM_DEVICE: &str = "request_not_from_device";
    /// A response to one of the platform's requests from another address or transport than the
    /// one the request went to.
    pub const RESPONSE_NOT_FROM_DEVICE: &str = "response_not_from_device";
    /// A response on the right branch naming another dialog.
    pub const RESPONSE_WRONG_DIALOG: &str = "response_wrong_dialog";
    /// A MANSCDP message for a registered device from another address or transport (answered
    /// `403`, its content ignored).
    pub const MESSAGE_NOT_FROM_DEVICE: &str = "message_not_from_device";
    /// A request not from a registered device's own source over its source address's budget
    /// (not answered).
    pub const SOURCE_RATE_LIMITED: &str = "source_rate_limited";
}

/// What the I/O layer must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A message was dropped; count it.
    Dropped {
        /// Why (one of [`drop_reason`]).
        reason: &'static str,
        /// Who sent it.
        peer: Peer,
    },
    /// Send bytes.
    Send {
        /// To whom.
        peer: Peer,
        /// A whole SIP message.
        bytes: Vec<u8>,
    },
    /// Publish to dispatch.
    Event(UnitEvent),
    /// Record in the registry.
    Device(DeviceUpdate),
    /// A live-stream dialog changed.
    Stream(StreamUpdate),
}

/// What happened to a live-stream dialog the platform opened with [`Platform::invite`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamUpdate {
    /// The device accepted (ACK sent): media should now arrive as its SDP says.
    Answered {
        /// Dialog.
        call_id: String,
        /// The device's answer.
        media: sdp::Media,
    },
    /// The device refused, did not answer, or its answer was unusable.
    Failed {
        /// Dialog.
        call_id: String,
        /// SIP status (408 for no answer, 488 for an unusable SDP).
        code: u16,
        /// Why.
        reason: String,
    },
    /// The dialog ended from the device's side (BYE, unregistration, lost connection).
    Ended {
        /// Dialog.
        call_id: String,
        /// Why.
        reason: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Dialog {
    device_id: String,
    peer: Peer,
    request_uri: String,
    from: String,
    to: String,
    to_tag: Option<String>,
    cseq: u32,
    answered: bool,
    /// A download (`s=Download`): `MediaStatus` 121 from the device ends it.
    download: bool,
    /// The platform connects for the media (TCP `a=setup:active`).
    tcp_active: bool,
}

/// One registered device's live state (see [`Platform::device`]).
#[derive(Debug, Clone)]
pub struct DeviceState {
    /// Where it registered from.
    pub peer: Peer,
    /// Registration end, monotonic ms.
    pub registered_until_ms: u64,
    /// Last message, monotonic ms.
    pub last_seen_ms: u64,
    /// Last message, UTC ms.
    pub last_seen_utc_ms: i64,
    /// Keepalives arriving.
    pub online: bool,
    catalog: Vec<CatalogItem>,
    catalog_sum: Option<u32>,
    /// `RecordInfo` answers being collected, by SN: (expected sum, records so far).
    records: HashMap<u32, (Option<u32>, Vec<manscdp::RecordItem>)>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
    refused: u64,
    warned_at_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Pending {
    device_id: String,
    what: &'static str,
    call_id: Option<String>,
}

/// The platform state machine.
#[derive(Debug)]
pub struct Platform {
    cfg: PlatformConfig,
    nonces: NonceIssuer,
    registry: HashMap<String, Secret>,
    devices: HashMap<String, DeviceState>,
    buckets: HashMap<String, Bucket>,
    /// Traffic not from a registered device's own source, by source address.
    sources: SourceBudget,
    /// A known device's traffic before it registers, by (device id, source address).
    unregistered: Budget<(String, IpAddr)>,
    source_refused: u64,
    source_warned_at_ms: Option<u64>,
    server_tx: ServerTransactions,
    client_tx: ClientTransactions<Peer>,
    pending: HashMap<String, Pending>,
    dialogs: HashMap<String, Dialog>,
    out: Vec<Output>,
    /// CSeq and MANSCDP SN counter (not secret).
    seq: u64,
    /// Tags, branches and Call-IDs.
    rng: StdRng,
    /// Nonces used, with their expiry (UTC s), when no shared store is used.
    local_nonces: HashMap<String, u64>,
    local_nonce_order: VecDeque<(u64, String)>,
    /// Spend nonces in a shared store (see [`Platform::receive`]).
    shared_nonces: bool,
    /// Nonces being spent in the shared store now (a copy of the request meanwhile is dropped).
    spending: HashSet<String>,
}

/// Whether a message from `from` comes from the device registered at `registered`: the same IP
/// over the same transport (the same connection for TCP). UDP ports may move behind NAT.
pub fn same_source(registered: Peer, from: Peer) -> bool {
    registered.addr.ip() == from.addr.ip()
        && match (registered.transport, from.transport) {
            (Transport::Udp, Transport::Udp) => true,
            (Transport::Tcp(a), Transport::Tcp(b)) => a == b,
            _ => false,
        }
}

/// The server-transaction source key of a peer.
fn source_key(peer: Peer) -> String {
    match peer.transport {
        Transport::Udp => format!("u{}", peer.addr),
        Transport::Tcp(c) => format!("t{c}/{}", peer.addr),
    }
}

impl Platform {
    /// A platform with a nonce secret (random per process; share it across nodes if devices may
    /// move between them) and the seed of its random ids (tags, branches, Call-IDs): from the
    /// OS's CSPRNG in production, fixed in tests.
    pub fn new(cfg: PlatformConfig, nonce_secret: [u8; 32], seed: [u8; 32]) -> Self {
        let sources = SourceBudget::new(
            cfg.rate_burst.saturating_mul(SOURCE_RATE_FACTOR),
            cfg.rate_per_sec.saturating_mul(SOURCE_RATE_FACTOR),
            super::limits::MAX_SOURCES,
        );
        let unregistered =
            Budget::new(cfg.rate_burst, cfg.rate_per_sec, super::limits::MAX_SOURCES);
        Self {
            unregistered,
            nonces: NonceIssuer::new(nonce_secret, cfg.nonce_lifetime_secs),
            cfg,
            registry: HashMap::new(),
            devices: HashMap::new(),
            buckets: HashMap::new(),
            sources,
            source_refused: 0,
            source_warned_at_ms: None,
            server_tx: ServerTransactions::new(),
            client_tx: ClientTransactions::new(),
            pending: HashMap::new(),
            dialogs: HashMap::new(),
            out: Vec::new(),
            seq: 0,
            rng: StdRng::from_seed(seed),
            local_nonces: HashMap::new(),
            local_nonce_order: VecDeque::new(),
            shared_nonces: false,
            spending: HashSet::new(),
        }
    }

    /// 128 random bits as 32 hex digits.
    fn random_token(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        hex::encode(b)
    }

    /// A fresh tag.
    pub fn new_tag(&mut self) -> String {
        self.random_token()
    }

    /// A fresh RFC 3261 branch (`z9hG4bK` and 128 random bits).
    pub fn new_branch(&mut self) -> String {
        format!("z9hG4bK{}", self.random_token())
    }

    /// A fresh Call-ID.
    pub fn new_call_id(&mut self) -> String {
        format!("{}@{}", self.random_token(), self.cfg.platform_id)
    }

    fn response(&mut self, req: &Message, code: u16, reason: &str) -> Message {
        let tag = self.new_tag();
        let mut r = req.response(code, reason, Some(&tag));
        r.push("Server", self.cfg.user_agent.clone());
        r
    }

    fn drop_msg(&mut self, reason: &'static str, peer: Peer) {
        self.out.push(Output::Dropped { reason, peer });
    }

    /// Spend a nonce in the platform's own memory: `true` the first time. A full memory (of
    /// unexpired nonces) refuses: the device is challenged again.
    fn spend_local_nonce(&mut self, nonce: &str, until_secs: u64, now_secs: u64) -> bool {
        if self.local_nonces.contains_key(nonce) {
            return false;
        }
        if self.local_nonces.len() >= MAX_LOCAL_NONCES {
            self.purge_local_nonces(now_secs);
            if self.local_nonces.len() >= MAX_LOCAL_NONCES {
                tracing::warn!(used = self.local_nonces.len(), "sip.nonce_memory_full");
                return false;
            }
        }
        self.local_nonces.insert(nonce.to_string(), until_secs);
        self.local_nonce_order
            .push_back((until_secs, nonce.to_string()));
        true
    }

    /// Forget used nonces whose expiry passed (they are stale anyway).
    fn purge_local_nonces(&mut self, now_secs: u64) {
        if self.local_nonces.len() >= MAX_LOCAL_NONCES {
            self.local_nonces.retain(|_, until| *until > now_secs);
            self.local_nonce_order
                .retain(|(until, _)| *until > now_secs);
            return;
        }
        while let Some((until, _)) = self.local_nonce_order.front() {
            if *until > now_secs {
                break;
            }
            if let Some((_, n)) = self.local_nonce_order.pop_front() {
                if self.local_nonces.get(&n).is_some_and(|u| *u <= now_secs) {
                    self.local_nonces.remove(&n);
                }
            }
        }
    }

    /// Spend digest nonces in a shared store: [`Platform::receive`] hands a `REGISTER` with a
    /// right digest back for the I/O layer to spend its nonce, instead of the platform's memory.
    pub fn use_shared_nonces(&mut self) {
        self.shared_nonces = true;
    }

    /// The registered peer of a device, if it is registered.
    fn device_peer(&self, device_id: &str) -> Option<Peer> {
        self.devices.get(device_id).map(|d| d.peer)
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.cfg
    }

    /// Set the `host:port` put in `Via` and `Contact` (known once the socket is bound).
    pub fn set_advertised(&mut self, host_port: String) {
        self.cfg.advertised = host_port;
    }

    /// Add or replace a known device and its secret.
    pub fn set_device(&mut self, device_id: &str, secret: Secret) {
        self.registry.insert(device_id.to_string(), secret);
    }

    /// Forget a device (deleted or deactivated): a standing registration ends now.
    pub fn remove_device(&mut self, device_id: &str) {
        self.registry.remove(device_id);
        self.buckets.remove(device_id);
        if self.devices.remove(device_id).is_some() {
            self.went_away(device_id, "removed from the registry");
        }
    }

    /// Known devices.
    pub fn known_devices(&self) -> usize {
        self.registry.len()
    }

    /// A registered device's state.
    pub fn device(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices.get(device_id)
    }

    /// Registered devices.
    pub fn registered(&self) -> impl Iterator<Item = (&String, &DeviceState)> {
        self.devices.iter()
    }

    /// Drain what to do.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// When [`Platform::on_tick`] next has transaction work (device timers are checked on
    /// every tick).
    pub fn next_deadline(&self) -> Option<u64> {
        self.client_tx.next_deadline()
    }

    fn next_id(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn send(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.out.push(Output::Send { peer, bytes });
    }

    fn reply(&mut self, peer: Peer, req: &Message, code: u16, reason: &str, now: Now) {
        let r = self.response(req, code, reason);
        self.finish(peer, req, r, now);
    }

    fn finish(&mut self, peer: Peer, req: &Message, resp: Message, now: Now) {
        let bytes = resp.to_bytes();
        if peer.transport == Transport::Udp {
            self.server_tx
                .answered(req, &source_key(peer), &bytes, now.mono_ms);
        }
        self.send(peer, bytes);
    }

    /// A message that did not parse. When its headers could be read, a request is answered
    /// `400` with the reason; otherwise it is only logged.
    pub fn on_parse_error(&mut self, peer: Peer, err: ParseError, now: Now) {
        tracing::warn!(remote = %peer.addr, transport = peer.transport.token(), reason = %err.reason, "sip.malformed");
        if let Some(partial) = err.partial {
            if partial.is_request()
                && partial.method() != Some("ACK")
                && partial.top_via().is_some()
            {
                let reason = format!("Bad Request ({})", sanitize_reason(&err.reason));
                self.reply(peer, &partial, 400, &reason, now);
            }
        }
    }

    /// A parsed message from `peer`; the nonce of a `REGISTER` is spent in the platform's own
    /// memory (or, after [`Platform::use_shared_nonces`], a `REGISTER` needing the store is
    /// dropped: use [`Platform::receive`] there).
    pub fn on_message(&mut self, peer: Peer, msg: Message, now: Now) {
        let _ = self.receive(peer, msg, now);
    }

    /// A parsed message from `peer`. Returns a [`NonceSpend`] only with a shared nonce store
    /// ([`Platform::use_shared_nonces`]), for a `REGISTER` whose digest is right: record its
    /// nonce as used in the store, then call [`Platform::on_nonce_spent`] (nothing is answered
    /// meanwhile; a copy of the request arriving meanwhile is dropped). Everything else is
    /// decided here and now.
    pub fn receive(&mut self, peer: Peer, msg: Message, now: Now) -> Option<NonceSpend> {
        if !msg.is_request() {
            self.on_response(peer, msg, now);
            return None;
        }
        if peer.transport == Transport::Udp {
            if let Some(bytes) = self.server_tx.retransmission(&msg, &source_key(peer)) {
                let bytes = bytes.to_vec();
                self.send(peer, bytes);
                return None;
            }
        }
        let device_id = msg.from().and_then(|f| f.uri.user).unwrap_or_default();
        // The device's own budget only for what comes from its registered source; before it
        // registers, a budget per (device, source address); the rest is charged to its source
        // address.
        let known = self.registry.contains_key(&device_id);
        let registered = self.devices.get(&device_id).map(|d| d.peer);
        if known && registered.is_some_and(|r| same_source(r, peer)) {
            if !self.take_token(&device_id, peer, now) {
                self.reply(peer, &msg, 503, "Service Unavailable (rate limit)", now);
                return None;
            }
        } else if known && registered.is_none() {
            let key = (device_id.clone(), source_ip_key(peer.addr.ip()));
            if !self.unregistered.charge_key(key, now.mono_ms) {
                self.reply(peer, &msg, 503, "Service Unavailable (rate limit)", now);
                return None;
            }
        } else if !self.sources.charge(peer.addr.ip(), now.mono_ms) {
            self.source_refused += 1;
            if self
                .source_warned_at_ms
                .is_none_or(|w| now.mono_ms >= w + 60_000)
            {
                self.source_warned_at_ms = Some(now.mono_ms);
                tracing::warn!(remote = %peer.addr, device.id = %device_id, refused = self.source_refused, "sip.source_rate_limited");
            }
            self.drop_msg(drop_reason::SOURCE_RATE_LIMITED, peer);
            return None;
        }
        let method = msg.method().unwrap_or("").to_string();
        match method.as_str() {
            "REGISTER" => return self.on_register(peer, msg, device_id, now, NonceState::Unknown),
            "MESSAGE" | "NOTIFY" => self.on_manscdp(peer, msg, device_id, now),
            "OPTIONS" => {
                let mut r = self.response(&msg, 200, "OK");
                r.push(
                    "Allow",
                    "REGISTER, MESSAGE, NOTIFY, SUBSCRIBE, INVITE, ACK, BYE, OPTIONS",
                );
                self.finish(peer, &msg, r, now);
            }
            "ACK" => {}
            "BYE" => {
                let call = msg.call_id().unwrap_or_default().to_string();
                let owner = self.dialogs.get(&call).map(|d| {
                    let registered = self.device_peer(&d.device_id).unwrap_or(d.peer);
                    (d.device_id.clone(), registered)
                });
                if let Some((owner, registered)) = owner {
                    if !same_source(registered, peer) {
                        tracing::warn!(device.id = %owner, remote = %peer.addr, transport = peer.transport.token(), registered = %registered.addr, call_id = %call, "sip.bye_not_from_device");
                        self.drop_msg(drop_reason::REQUEST_NOT_FROM_DEVICE, peer);
                        return None;
                    }
                    self.dialogs.remove(&call);
                    self.reply(peer, &msg, 200, "OK", now);
                    tracing::info!(device.id = %owner, call_id = %call, "sip.stream_bye_from_device");
                    self.out.push(Output::Stream(StreamUpdate::Ended {
                        call_id: call,
                        reason: "the device hung up",
                    }));
                } else {
                    self.reply(peer, &msg, 481, "Call/Transaction Does Not Exist", now);
                }
            }
            "CANCEL" => self.reply(peer, &msg, 481, "Call/Transaction Does Not Exist", now),
            _ => self.reply(peer, &msg, 501, "Not Implemented", now),
        }
        None
    }

    /// What the shared store said about a [`NonceSpend`]'s nonce: `first_use` when this request
    /// recorded it (the `REGISTER` is then admitted), `false` when it was used before or the
    /// store failed (`401 stale`: the device asks again).
    pub fn on_nonce_spent(&mut self, spend: NonceSpend, first_use: bool, now: Now) {
        self.spending.remove(&spend.nonce);
        let device_id = spend
            .msg
            .from()
            .and_then(|f| f.uri.user)
            .unwrap_or_default();
        let state = if first_use {
            NonceState::Unused
        } else {
            NonceState::Used
        };
        if let Some(again) = self.on_register(spend.peer, spend.msg, device_id, now, state) {
            // Cannot happen (a known state is decided), but never leave a request unanswered.
            self.spending.remove(&again.nonce);
            self.reply(again.peer, &again.msg, 500, "Server Internal Error", now);
        }
    }

    fn take_token(&mut self, device_id: &str, peer: Peer, now: Now) -> bool {
        let (burst, rate) = (self.cfg.rate_burst as f64, self.cfg.rate_per_sec as f64);
        let b = self.buckets.entry(device_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at_ms: now.mono_ms,
            refused: 0,
            warned_at_ms: None,
        });
        let dt = now.mono_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.at_ms = now.mono_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        b.refused += 1;
        if b.warned_at_ms.is_none_or(|w| now.mono_ms >= w + 60_000) {
            b.warned_at_ms = Some(now.mono_ms);
            tracing::warn!(device.id = device_id, remote = %peer.addr, refused = b.refused, "sip.rate_limited");
        }
        false
    }

    fn on_register(
        &mut self,
        peer: Peer,
        req: Message,
        device_id: String,
        now: Now,
        nonce: NonceState,
    ) -> Option<NonceSpend> {
        let now_secs = (now.utc_ms.max(0) / 1000) as u64;
        let policy = RegisterPolicy {
            realm: &self.cfg.domain,
            algorithms: &self.cfg.algorithms,
            max_expires_secs: self.cfg.max_expires_secs,
        };
        let mut decision = register::admit(
            &req,
            self.registry.get(&device_id),
            nonce,
            &policy,
            &self.nonces,
            now_secs,
        );
        if let Admission::Spend {
            nonce,
            expires_at_secs,
        } = decision
        {
            if self.shared_nonces {
                if !self.spending.insert(nonce.clone()) {
                    // The same nonce is being spent now (a retransmission or a copy): the first
                    // one is answered.
                    tracing::debug!(device.id = %device_id, remote = %peer.addr, "sip.register_nonce_in_flight");
                    return None;
                }
                return Some(NonceSpend {
                    nonce,
                    expires_at_ms: (expires_at_secs.min(i64::MAX as u64 / 1000) as i64)
                        .saturating_mul(1000),
                    peer,
                    msg: req,
                });
            }
            let state = if self.spend_local_nonce(&nonce, expires_at_secs, now_secs) {
                NonceState::Unused
            } else {
                NonceState::Used
            };
            let policy = RegisterPolicy {
                realm: &self.cfg.domain,
                algorithms: &self.cfg.algorithms,
                max_expires_secs: self.cfg.max_expires_secs,
            };
            decision = register::admit(
                &req,
                self.registry.get(&device_id),
                state,
                &policy,
                &self.nonces,
                now_secs,
            );
        }
        match decision {
            Admission::Spend { .. } => {
                // Only after a known state, which admit never answers with Spend.
                self.reply(peer, &req, 500, "Server Internal Error", now);
            }
            Admission::Challenge(challenges) => {
                let mut r = self.response(&req, 401, "Unauthorized");
                for c in challenges {
                    r.push("WWW-Authenticate", c.header);
                }
                self.finish(peer, &req, r, now);
            }
            Admission::Refuse(code, why) => {
                tracing::warn!(device.id = %device_id, remote = %peer.addr, code, reason = %why, "sip.register_refused");
                let phrase = if code == 403 {
                    "Forbidden"
                } else {
                    "Bad Request"
                };
                self.reply(
                    peer,
                    &req,
                    code,
                    &format!("{phrase} ({})", sanitize_reason(&why)),
                    now,
                );
            }
            Admission::TooBrief => {
                let mut r = self.response(&req, 423, "Interval Too Brief");
                r.push("Min-Expires", register::MIN_EXPIRES_SECS.to_string());
                self.finish(peer, &req, r, now);
            }
            Admission::Unregister => {
                let r = self.register_ok(&req, 0, now);
                self.finish(peer, &req, r, now);
                if self.devices.remove(&device_id).is_some() {
                    tracing::info!(device.id = %device_id, remote = %peer.addr, "sip.unregistered");
                    self.went_away(&device_id, "unregistered");
                }
            }
            Admission::Register { expires_secs } => {
                let r = self.register_ok(&req, expires_secs, now);
                self.finish(peer, &req, r, now);
                let until = now.mono_ms + expires_secs as u64 * 1000;
                let fresh = match self.devices.get_mut(&device_id) {
                    Some(d) => {
                        let moved = d.peer != peer;
                        d.peer = peer;
                        d.registered_until_ms = until;
                        d.last_seen_ms = now.mono_ms;
                        d.last_seen_utc_ms = now.utc_ms;
                        if !d.online {
                            d.online = true;
                            push_link(&mut self.out, &device_id, true);
                        }
                        moved
                    }
                    None => {
                        self.devices.insert(
                            device_id.clone(),
                            DeviceState {
                                peer,
                                registered_until_ms: until,
                                last_seen_ms: now.mono_ms,
                                last_seen_utc_ms: now.utc_ms,
                                online: true,
                                catalog: Vec::new(),
                                catalog_sum: None,
                                records: HashMap::new(),
                            },
                        );
                        self.out.push(Output::Event(UnitEvent::Online {
                            unit_id: device_id.clone(),
                            source: PositionSource::Gb28181,
                        }));
                        true
                    }
                };
                if fresh {
                    tracing::info!(device.id = %device_id, remote = %peer.addr, transport = peer.transport.token(), expires = expires_secs, "sip.registered");
                    self.out.push(Output::Device(DeviceUpdate::Registered {
                        device_id: device_id.clone(),
                        peer,
                        expires_secs,
                    }));
                    self.query(&device_id, "Catalog", now);
                    self.query(&device_id, "DeviceInfo", now);
                    if self.cfg.position_interval_secs > 0 {
                        self.subscribe_positions(&device_id, now);
                    }
                }
            }
        }
        None
    }

    fn register_ok(&mut self, req: &Message, expires: u32, now: Now) -> Message {
        let mut r = self.response(req, 200, "OK");
        if let Some(c) = req.header("Contact") {
            if let Some(na) = NameAddr::parse(c) {
                r.push("Contact", format!("<{}>;expires={expires}", na.uri));
            }
        }
        r.push("Expires", expires.to_string());
        r.push("Date", manscdp::format_local_time(now.utc_ms));
        r
    }

    fn went_away(&mut self, device_id: &str, reason: &'static str) {
        self.end_dialogs_of(device_id, reason);
        self.out.push(Output::Device(DeviceUpdate::Unregistered {
            device_id: device_id.to_string(),
            reason,
        }));
        self.out.push(Output::Event(UnitEvent::Offline {
            unit_id: device_id.to_string(),
            source: PositionSource::Gb28181,
        }));
    }

    fn on_manscdp(&mut self, peer: Peer, req: Message, device_id: String, now: Now) {
        let Some(dev) = self.devices.get_mut(&device_id) else {
            // Not registered (or the platform restarted): refusing makes the device register.
            self.reply(peer, &req, 403, "Forbidden (not registered)", now);
            return;
        };
        if !same_source(dev.peer, peer) {
            tracing::warn!(device.id = %device_id, remote = %peer.addr, transport = peer.transport.token(), registered = %dev.peer.addr, "sip.address_mismatch");
            self.drop_msg(drop_reason::MESSAGE_NOT_FROM_DEVICE, peer);
            self.reply(
                peer,
                &req,
                403,
                "Forbidden (not the registered address)",
                now,
            );
            return;
        }
        dev.peer = peer;
        dev.last_seen_ms = now.mono_ms;
        dev.last_seen_utc_ms = now.utc_ms;
        let came_back = !dev.online;
        dev.online = true;
        if came_back {
            push_link(&mut self.out, &device_id, true);
        }
        if req.body.is_empty() {
            self.reply(peer, &req, 400, "Bad Request (empty body)", now);
            return;
        }
        let body = match manscdp::parse(&req.body_text()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(device.id = %device_id, remote = %peer.addr, reason = %e, "sip.bad_manscdp");
                self.reply(
                    peer,
                    &req,
                    400,
                    &format!("Bad Request ({})", sanitize_reason(&e.to_string())),
                    now,
                );
                return;
            }
        };
        self.reply(peer, &req, 200, "OK", now);
        match body {
            Body::Keepalive { .. } => {}
            Body::MobilePosition(p) => {
                self.out.push(Output::Event(UnitEvent::Position {
                    position: Position {
                        unit_id: device_id,
                        time_ms: p.time_ms.unwrap_or(now.utc_ms),
                        lat: p.lat,
                        lon: p.lon,
                        speed_kmh: p.speed_kmh,
                        heading_deg: p.heading_deg,
                        altitude_m: p.altitude_m,
                        accuracy_m: None,
                        source: PositionSource::Gb28181,
                        alarm_flags: 0,
                    },
                    live: true,
                }));
            }
            Body::Alarm(a) => {
                let sn = manscdp::parse_tree(&req.body_text())
                    .ok()
                    .and_then(|t| t.text_of("SN").and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                self.request(
                    &device_id,
                    "MESSAGE",
                    manscdp::alarm_response(sn, &a.device_id),
                    now,
                );
                let sos = a.priority == Some(1)
                    || a.method == Some(1)
                    || a.description.as_deref().is_some_and(|d| {
                        d.contains("SOS") || d.contains("求救") || d.contains("紧急")
                    });
                tracing::info!(device.id = %device_id, priority = ?a.priority, method = ?a.method, sos, "sip.alarm");
                if sos {
                    self.out.push(Output::Event(UnitEvent::Sos {
                        unit_id: device_id.clone(),
                        time_ms: a.time_ms.unwrap_or(now.utc_ms),
                        source: PositionSource::Gb28181,
                    }));
                }
                if let (Some(lon), Some(lat)) = (a.lon, a.lat) {
                    if (-180.0..=180.0).contains(&lon)
                        && (-90.0..=90.0).contains(&lat)
                        && (lon, lat) != (0.0, 0.0)
                    {
                        self.out.push(Output::Event(UnitEvent::Position {
                            position: Position {
                                unit_id: device_id,
                                time_ms: a.time_ms.unwrap_or(now.utc_ms),
                                lat,
                                lon,
                                speed_kmh: None,
                                heading_deg: None,
                                altitude_m: None,
                                accuracy_m: None,
                                source: PositionSource::Gb28181,
                                alarm_flags: u32::from(sos),
                            },
                            live: true,
                        }));
                    }
                }
            }
            Body::Catalog { sum, items, .. } => {
                let Some(dev) = self.devices.get_mut(&device_id) else {
                    return;
                };
                dev.catalog_sum = sum.or(dev.catalog_sum);
                for it in items {
                    if let Some(old) = dev.catalog.iter_mut().find(|o| o.device_id == it.device_id)
                    {
                        *old = it;
                    } else if dev.catalog.len() < 4096 {
                        dev.catalog.push(it);
                    }
                }
                let want = dev.catalog_sum.unwrap_or(0) as usize;
                if dev.catalog.len() >= want.min(4096) {
                    let items = std::mem::take(&mut dev.catalog);
                    dev.catalog_sum = None;
                    self.out
                        .push(Output::Device(DeviceUpdate::Catalog { device_id, items }));
                }
            }
            Body::DeviceInfo {
                manufacturer,
                model,
                firmware,
                channels,
                ..
            } => self.out.push(Output::Device(DeviceUpdate::Info {
                device_id,
                manufacturer,
                model,
                firmware,
                channels,
            })),
            Body::DeviceStatus { online, .. } => {
                tracing::debug!(device.id = %device_id, ?online, "sip.device_status");
            }
            Body::RecordInfo { sn, sum, items, .. } => {
                let Some(dev) = self.devices.get_mut(&device_id) else {
                    return;
                };
                let sn = sn.unwrap_or(0);
                if !dev.records.contains_key(&sn) && dev.records.len() >= 16 {
                    return;
                }
                let entry = dev.records.entry(sn).or_insert((None, Vec::new()));
                entry.0 = sum.or(entry.0);
                for it in items {
                    if entry.1.len() < 4096 {
                        entry.1.push(it);
                    }
                }
                let want = entry.0.unwrap_or(0) as usize;
                if entry.1.len() >= want.min(4096) {
                    let (_, mut items) = dev.records.remove(&sn).unwrap_or_default();
                    items.sort_by_key(|i| i.start_ms);
                    self.out.push(Output::Device(DeviceUpdate::RecordInfo {
                        device_id,
                        sn,
                        items,
                    }));
                }
            }
            Body::MediaStatus { notify_type, .. } => {
                tracing::info!(device.id = %device_id, ?notify_type, "sip.media_status");
                if notify_type == Some(121) {
                    // The device sent all of a download: end its download dialogs.
                    let done: Vec<String> = self
                        .dialogs
                        .iter()
                        .filter(|(_, d)| d.device_id == device_id && d.download)
                        .map(|(c, _)| c.clone())
                        .collect();
                    for call_id in done {
                        self.bye(&call_id, now);
                        self.out.push(Output::Stream(StreamUpdate::Ended {
                            call_id,
                            reason: "the device sent the whole download (MediaStatus 121)",
                        }));
                    }
                }
            }
            Body::Other { root, cmd_type, .. } => {
                tracing::debug!(device.id = %device_id, root = %root, cmd = %cmd_type, "sip.manscdp_ignored");
            }
        }
    }

    fn on_response(&mut self, peer: Peer, resp: Message, _now: Now) {
        let code = resp.status().unwrap_or(0);
        // Responses to INVITE must also name the dialog the INVITE opened.
        let call = resp.call_id().unwrap_or_default().to_string();
        let branch = resp
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        if let Some(p) = self.pending.get(&branch) {
            if p.call_id.as_ref().is_some_and(|c| *c != call) {
                tracing::warn!(device.id = %p.device_id, remote = %peer.addr, call_id = %call, "sip.response_wrong_dialog");
                self.drop_msg(drop_reason::RESPONSE_WRONG_DIALOG, peer);
                return;
            }
        }
        let registered = |sent_to: &Peer| same_source(*sent_to, peer);
        match self.client_tx.on_response(&resp, registered) {
            ResponseMatch::Foreign(_) => {
                tracing::warn!(remote = %peer.addr, transport = peer.transport.token(), code, call_id = %call, "sip.response_not_from_device");
                self.drop_msg(drop_reason::RESPONSE_NOT_FROM_DEVICE, peer);
            }
            ResponseMatch::Final(branch) => {
                if let Some(p) = self.pending.remove(&branch) {
                    if p.what == "INVITE" {
                        self.invite_answered(peer, &resp, &branch, p);
                        return;
                    }
                    if code >= 300 {
                        tracing::warn!(device.id = %p.device_id, remote = %peer.addr, code, what = p.what, "sip.request_refused");
                    }
                }
            }
            ResponseMatch::Provisional(_) => {}
            ResponseMatch::Unknown => {
                // A retransmitted 200 to an INVITE: the ACK was lost; send it again.
                let is_invite = resp.cseq().is_some_and(|(_, m)| m == "INVITE");
                let dialog_peer = self
                    .dialogs
                    .get(&call)
                    .filter(|d| d.answered)
                    .map(|d| d.peer);
                if is_invite && (200..300).contains(&code) && dialog_peer.is_some() {
                    if dialog_peer.is_some_and(|d| !same_source(d, peer)) {
                        tracing::warn!(remote = %peer.addr, call_id = %call, "sip.response_not_from_device");
                        self.drop_msg(drop_reason::RESPONSE_NOT_FROM_DEVICE, peer);
                        return;
                    }
                    self.send_ack(&call, &resp);
                } else {
                    tracing::debug!(remote = %peer.addr, "sip.stray_response");
                }
            }
        }
    }

    fn send_ack(&mut self, call_id: &str, resp: &Message) {
        let Some(d) = self.dialogs.get(call_id) else {
            return;
        };
        let d = d.clone();
        let branch = self.new_branch();
        let cseq = resp.cseq().map(|c| c.0).unwrap_or(d.cseq);
        let mut ack = Message::request("ACK", &d.request_uri);
        ack.push(
            "Via",
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                d.peer.transport.token(),
                self.cfg.advertised,
            ),
        )
        .push("From", d.from.clone())
        .push("To", resp.header("To").unwrap_or(&d.to).to_string())
        .push("Call-ID", call_id.to_string())
        .push("CSeq", format!("{cseq} ACK"))
        .push("Max-Forwards", "70");
        self.send(d.peer, ack.to_bytes());
    }

    fn invite_answered(&mut self, peer: Peer, resp: &Message, branch: &str, p: Pending) {
        let code = resp.status().unwrap_or(0);
        let Some(call) = p.call_id else { return };
        if code >= 300 {
            // Non-2xx: the ACK belongs to the INVITE transaction (same branch).
            if let Some(d) = self.dialogs.remove(&call) {
                let mut ack = Message::request("ACK", &d.request_uri);
                ack.push(
                    "Via",
                    format!(
                        "SIP/2.0/{} {};rport;branch={branch}",
                        peer.transport.token(),
                        self.cfg.advertised
                    ),
                )
                .push("From", d.from.clone())
                .push("To", resp.header("To").unwrap_or(&d.to).to_string())
                .push("Call-ID", call.clone())
                .push("CSeq", format!("{} ACK", d.cseq))
                .push("Max-Forwards", "70");
                self.send(peer, ack.to_bytes());
            }
            let reason = match &resp.start {
                crate::sip::StartLine::Response { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            tracing::warn!(device.id = %p.device_id, call_id = %call, code, reason = %reason, "sip.invite_refused");
            self.out.push(Output::Stream(StreamUpdate::Failed {
                call_id: call,
                code,
                reason,
            }));
            return;
        }
        let to_tag = resp.to().and_then(|t| t.param("tag").map(str::to_string));
        match self.dialogs.get_mut(&call) {
            Some(d) => {
                d.answered = true;
                d.to_tag = to_tag;
                if let Some(t) = resp.header("To") {
                    d.to = t.to_string();
                }
                if let Some(c) = resp.header("Contact").and_then(NameAddr::parse) {
                    d.request_uri = c.uri.to_string();
                }
            }
            None => return,
        }
        self.send_ack(&call, resp);
        match sdp::parse(&resp.body_text()) {
            Ok(mut media) => {
                let tcp_active = self.dialogs.get(&call).is_some_and(|d| d.tcp_active);
                if tcp_active {
                    // Connect where the device registered from, on the port it answered: its
                    // `c=` may be a private address behind carrier NAT, or anyone's choice.
                    let ip = self.device_peer(&p.device_id).unwrap_or(peer).addr.ip();
                    if media.ip.is_some_and(|c| c != ip) {
                        tracing::info!(device.id = %p.device_id, call_id = %call, sdp.ip = ?media.ip, registered = %ip, "sip.answer_address_ignored");
                    }
                    media.ip = Some(ip);
                }
                tracing::info!(device.id = %p.device_id, call_id = %call, media.port = media.port, media.ssrc = ?media.ssrc, media.transport = ?media.transport, "sip.stream_answered");
                self.out.push(Output::Stream(StreamUpdate::Answered {
                    call_id: call,
                    media,
                }));
            }
            Err(e) => {
                tracing::warn!(device.id = %p.device_id, call_id = %call, reason = %e, "sip.stream_bad_answer");
                self.bye(
                    &call,
                    Now {
                        mono_ms: 0,
                        utc_ms: 0,
                    },
                );
                self.out.push(Output::Stream(StreamUpdate::Failed {
                    call_id: call,
                    code: 488,
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// Ask a registered device to stream `channel_id` as `offer` says (`INVITE`, `s=Play`).
    /// Returns the dialog's Call-ID; the outcome arrives as [`Output::Stream`].
    pub fn invite(
        &mut self,
        device_id: &str,
        channel_id: &str,
        offer: &Offer,
        now: Now,
    ) -> Result<String, &'static str> {
        let Some(dev) = self.devices.get(device_id) else {
            return Err("the recorder is not registered");
        };
        if !dev.online {
            return Err("the recorder is registered but not online");
        }
        let peer = dev.peer;
        let branch = self.new_branch();
        let call_id = self.new_call_id();
        let tag = self.new_tag();
        let cfg = &self.cfg;
        let request_uri = format!("sip:{channel_id}@{}", peer.addr);
        let from = format!("<sip:{}@{}>;tag={tag}", cfg.platform_id, cfg.domain);
        let to = format!("<sip:{channel_id}@{}>", cfg.domain);
        let mut m = Message::request("INVITE", &request_uri);
        m.push(
            "Via",
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                peer.transport.token(),
                cfg.advertised
            ),
        )
        .push("From", from.clone())
        .push("To", to.clone())
        .push("Call-ID", call_id.clone())
        .push("CSeq", "1 INVITE")
        .push(
            "Contact",
            format!("<sip:{}@{}>", cfg.platform_id, cfg.advertised),
        )
        .push("Max-Forwards", "70")
        .push("User-Agent", cfg.user_agent.clone())
        .push(
            "Subject",
            format!("{channel_id}:{},{}:0", offer.ssrc, cfg.platform_id),
        )
        .push("Content-Type", "APPLICATION/SDP");
        m.body = offer.to_sdp().into_bytes();
        let bytes = m.to_bytes();
        let reliable = peer.transport != Transport::Udp;
        self.client_tx
            .start(&branch, bytes.clone(), peer, reliable, true, now.mono_ms);
        self.pending.insert(
            branch,
            Pending {
                device_id: device_id.to_string(),
                what: "INVITE",
                call_id: Some(call_id.clone()),
            },
        );
        self.dialogs.insert(
            call_id.clone(),
            Dialog {
                device_id: device_id.to_string(),
                peer,
                request_uri,
                from,
                to,
                to_tag: None,
                cseq: 1,
                answered: false,
                download: offer.download.is_some(),
                tcp_active: offer.transport == MediaTransport::TcpActive,
            },
        );
        tracing::info!(device.id = device_id, channel.id = channel_id, call_id = %call_id, ssrc = %offer.ssrc, media.port = offer.port, download = offer.download.is_some(), "sip.invite");
        self.send(peer, bytes);
        Ok(call_id)
    }

    /// End a live-stream dialog (`BYE`; before an answer the dialog is simply forgotten and a
    /// late 200 is answered with ACK and BYE).
    pub fn bye(&mut self, call_id: &str, now: Now) {
        let Some(d) = self.dialogs.remove(call_id) else {
            return;
        };
        if !d.answered {
            return;
        }
        let branch = self.new_branch();
        let mut m = Message::request("BYE", &d.request_uri);
        m.push(
            "Via",
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                d.peer.transport.token(),
                self.cfg.advertised
            ),
        )
        .push("From", d.from.clone())
        .push("To", d.to.clone())
        .push("Call-ID", call_id.to_string())
        .push("CSeq", format!("{} BYE", d.cseq + 1))
        .push("Max-Forwards", "70");
        let bytes = m.to_bytes();
        let reliable = d.peer.transport != Transport::Udp;
        self.client_tx
            .start(&branch, bytes.clone(), d.peer, reliable, false, now.mono_ms);
        self.pending.insert(
            branch,
            Pending {
                device_id: d.device_id.clone(),
                what: "BYE",
                call_id: Some(call_id.to_string()),
            },
        );
        tracing::info!(device.id = %d.device_id, call_id = %call_id, "sip.bye");
        self.send(d.peer, bytes);
    }

    fn end_dialogs_of(&mut self, device_id: &str, reason: &'static str) {
        let gone: Vec<String> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.device_id == device_id)
            .map(|(c, _)| c.clone())
            .collect();
        for call_id in gone {
            self.dialogs.remove(&call_id);
            self.out
                .push(Output::Stream(StreamUpdate::Ended { call_id, reason }));
        }
    }

    /// Ask a registered device a MANSCDP query (`Catalog`, `DeviceInfo`, `DeviceStatus`).
    /// Returns `false` when the device is not registered.
    pub fn query(&mut self, device_id: &str, cmd_type: &str, now: Now) -> bool {
        let sn = (self.next_id() % 1_000_000) as u32;
        let body = manscdp::query(cmd_type, sn, device_id);
        self.request(device_id, "MESSAGE", body, now)
    }

    /// Ask a registered device for the footage a channel stored between two instants
    /// (`RecordInfo`); the answer comes as [`DeviceUpdate::RecordInfo`] with the returned SN.
    /// `None` when the device is not registered.
    pub fn record_info(
        &mut self,
        device_id: &str,
        channel_id: &str,
        start_ms: i64,
        end_ms: i64,
        now: Now,
    ) -> Option<u32> {
        let sn = (self.next_id() % 1_000_000) as u32;
        let body = manscdp::record_info_query(sn, channel_id, start_ms, end_ms);
        self.request(device_id, "MESSAGE", body, now).then_some(sn)
    }

    fn subscribe_positions(&mut self, device_id: &str, now: Now) {
        let sn = (self.next_id() % 1_000_000) as u32;
        let body =
            manscdp::mobile_position_subscription(sn, device_id, self.cfg.position_interval_secs);
        self.request(device_id, "SUBSCRIBE", body, now);
    }

    fn request(&mut self, device_id: &str, method: &'static str, body: String, now: Now) -> bool {
        let Some(dev) = self.devices.get(device_id) else {
            return false;
        };
        let peer = dev.peer;
        let n = self.next_id();
        let branch = self.new_branch();
        let tag = self.new_tag();
        let call_id = self.new_call_id();
        let cfg = &self.cfg;
        let mut m = Message::request(method, &format!("sip:{device_id}@{}", peer.addr));
        m.push(
            "Via",
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                peer.transport.token(),
                cfg.advertised
            ),
        )
        .push(
            "From",
            format!("<sip:{}@{}>;tag={tag}", cfg.platform_id, cfg.domain),
        )
        .push("To", format!("<sip:{device_id}@{}>", cfg.domain))
        .push("Call-ID", call_id)
        .push("CSeq", format!("{} {method}", n % 100_000 + 1))
        .push("Max-Forwards", "70")
        .push("User-Agent", cfg.user_agent.clone())
        .push("Content-Type", "Application/MANSCDP+xml");
        if method == "SUBSCRIBE" {
            m.push("Event", "presence").push("Expires", "3600").push(
                "Contact",
                format!("<sip:{}@{}>", cfg.platform_id, cfg.advertised),
            );
        }
        m.body = manscdp::encode(&body);
        let bytes = m.to_bytes();
        let reliable = peer.transport != Transport::Udp;
        self.client_tx
            .start(&branch, bytes.clone(), peer, reliable, false, now.mono_ms);
        self.pending.insert(
            branch,
            Pending {
                device_id: device_id.to_string(),
                what: method,
                call_id: None,
            },
        );
        self.send(peer, bytes);
        true
    }

    /// A TCP connection closed: devices registered over it are unreachable until they register
    /// again.
    pub fn on_connection_closed(&mut self, conn: u64) {
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.peer.transport == Transport::Tcp(conn))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.devices.remove(&id);
            self.went_away(&id, "connection closed");
        }
    }

    /// Timers: retransmissions, transaction time-outs, keepalive and registration expiry.
    pub fn on_tick(&mut self, now: Now) {
        self.server_tx.expire(now.mono_ms);
        self.purge_local_nonces((now.utc_ms.max(0) / 1000) as u64);
        let (resend, timed_out) = self.client_tx.poll(now.mono_ms);
        for (peer, bytes) in resend {
            self.send(peer, bytes);
        }
        for b in timed_out {
            if let Some(p) = self.pending.remove(&b) {
                tracing::warn!(device.id = %p.device_id, what = p.what, "sip.request_timeout");
                if p.what == "INVITE" {
                    if let Some(call_id) = p.call_id {
                        if self.dialogs.remove(&call_id).is_some() {
                            self.out.push(Output::Stream(StreamUpdate::Failed {
                                call_id,
                                code: 408,
                                reason: "the device did not answer the INVITE".into(),
                            }));
                        }
                    }
                }
            }
        }
        let silence_ms =
            self.cfg.keepalive_interval_secs as u64 * self.cfg.keepalive_misses as u64 * 1000;
        let mut expired = Vec::new();
        for (id, d) in self.devices.iter_mut() {
            if now.mono_ms >= d.registered_until_ms {
                expired.push(id.clone());
            } else if d.online && now.mono_ms >= d.last_seen_ms + silence_ms {
                d.online = false;
                tracing::info!(device.id = %id, "sip.keepalive_missed");
                push_link(&mut self.out, id, false);
            }
        }
        for id in expired {
            self.end_dialogs_of(&id, "registration expired");
            let was_online = self.devices.remove(&id).is_some_and(|d| d.online);
            tracing::info!(device.id = %id, "sip.registration_expired");
            self.out.push(Output::Device(DeviceUpdate::Unregistered {
                device_id: id.clone(),
                reason: "registration expired",
            }));
            if was_online {
                self.out.push(Output::Event(UnitEvent::Offline {
                    unit_id: id,
                    source: PositionSource::Gb28181,
                }));
            }
        }
        // Buckets of devices that went quiet are dropped so the map stays small.
        if self.buckets.len() > self.registry.len() + 1024 {
            let registry = &self.registry;
            self.buckets.retain(|k, _| registry.contains_key(k));
        }
    }
}

/// Keepalives resumed or stopped: the registry update and the dispatch event.
fn push_link(out: &mut Vec<Output>, device_id: &str, online: bool) {
    out.push(Output::Device(DeviceUpdate::Link {
        device_id: device_id.to_string(),
        online,
    }));
    let (unit_id, source) = (device_id.to_string(), PositionSource::Gb28181);
    out.push(Output::Event(if online {
        UnitEvent::Online { unit_id, source }
    } else {
        UnitEvent::Offline { unit_id, source }
    }));
}

/// A reason phrase must be one line of printable text.
fn sanitize_reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    //! Identity: random ids, single-use nonces, dialogs and responses bound to the device's
    //! registered source. The attacker is 10.66.0.2; the device 192.168.1.64.

    use super::*;
    use crate::sip::digest::{self, Credentials};
    use crate::sip::parse_datagram;

    const ID: &str = "34020000001320000001";
    const CHANNEL: &str = "34020000001310000001";
    const REALM: &str = "3402000000";
    const PW: &str = "12345678";
    const DEVICE: &str = "192.168.1.64:5060";
    const ATTACKER: &str = "10.66.0.2:5060";

    fn secret() -> [u8; 32] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
    }

    fn udp(addr: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
        }
    }

    fn now(s: u64) -> Now {
        Now {
            mono_ms: s * 1000,
            utc_ms: 1_795_000_000_000 + s as i64 * 1000,
        }
    }

    fn platform(seed: u8) -> Platform {
        let cfg = PlatformConfig {
            advertised: "10.0.0.1:5060".into(),
            position_interval_secs: 0,
            ..Default::default()
        };
        let mut p = Platform::new(cfg, secret(), [seed; 32]);
        p.set_device(ID, Secret::from_password(ID, REALM, PW));
        p
    }

    fn sent(out: &[Output]) -> Vec<(Peer, Message)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { peer, bytes } => Some((*peer, parse_datagram(bytes).unwrap())),
                _ => None,
            })
            .collect()
    }

    fn dropped(out: &[Output]) -> Vec<&'static str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Dropped { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn register_req(branch: &str, expires: u32, auth: Option<&str>) -> Message {
        let mut s = format!(
            "REGISTER sip:34020000002000000001@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {DEVICE};rport;branch={branch}\r\n\
             From: <sip:{ID}@{REALM}>;tag=d1\r\nTo: <sip:{ID}@{REALM}>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:{ID}@{DEVICE}>\r\nExpires: {expires}\r\n"
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        parse_datagram(s.as_bytes()).unwrap()
    }

    fn answer(challenge: &str) -> String {
        let params = digest::parse_params(challenge.strip_prefix("Digest ").unwrap()).unwrap();
        let nonce = params.iter().find(|(k, _)| k == "nonce").unwrap().1.clone();
        let mut c = Credentials {
            username: ID.into(),
            realm: REALM.into(),
            nonce,
            uri: format!("sip:34020000002000000001@{REALM}"),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("c0ffee".into()),
            ..Default::default()
        };
        let alg = Algorithm::Md5;
        c.response =
            digest::expected_response(&c, alg, &digest::ha1(alg, ID, REALM, PW), "REGISTER");
        format!(
            "Digest username=\"{ID}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
            c.nonce, c.uri, c.response
        )
    }

    /// Challenge then authenticate from `DEVICE`; returns the authenticated REGISTER and the
    /// final status.
    fn register(p: &mut Platform, n: u32, expires: u32, t: u64) -> (Message, u16) {
        p.on_message(
            udp(DEVICE),
            register_req(&format!("z9hG4bKa{n}"), expires, None),
            now(t),
        );
        let out = p.take_outputs();
        let (_, ch) = sent(&out).remove(0);
        assert_eq!(ch.status(), Some(401));
        let auth = answer(ch.header("WWW-Authenticate").unwrap());
        let req = register_req(&format!("z9hG4bKb{n}"), expires, Some(&auth));
        p.on_message(udp(DEVICE), req.clone(), now(t));
        let out = p.take_outputs();
        (req, sent(&out)[0].1.status().unwrap())
    }

    fn offer(transport: MediaTransport) -> Offer {
        Offer {
            platform_id: "34020000002000000001".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port: 9,
            transport,
            ssrc: "0100000001".into(),
            download: None,
        }
    }

    /// A device's 200 to an INVITE, its SDP saying `c=IN IP4 {c}` and port 40000.
    fn ok_to(invite: &Message, c: &str, contact: &str) -> Message {
        let mut r = invite.response(200, "OK", Some("devtag"));
        r.push("Contact", format!("<sip:{CHANNEL}@{contact}>"))
            .push("Content-Type", "APPLICATION/SDP");
        r.body = format!(
            "v=0\r\no={CHANNEL} 0 0 IN IP4 {c}\r\ns=Play\r\nc=IN IP4 {c}\r\nt=0 0\r\n\
             m=video 40000 TCP/RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\na=setup:passive\r\n\
             a=connection:new\r\ny=0100000001\r\n"
        )
        .into_bytes();
        parse_datagram(&r.to_bytes()).unwrap()
    }

    #[test]
    fn ids_are_random_unique_and_unrelated_to_the_nonce_secret() {
        let mut p = platform(1);
        let mut ids: Vec<String> = Vec::new();
        for _ in 0..2000 {
            ids.push(p.new_tag());
            ids.push(p.new_branch().trim_start_matches("z9hG4bK").to_string());
            ids.push(p.new_call_id().split('@').next().unwrap().to_string());
        }
        // The ids in real messages too: REGISTER answers, queries, an INVITE.
        let (_, code) = register(&mut p, 1, 3600, 1);
        assert_eq!(code, 200);
        p.take_outputs();
        p.query(ID, "DeviceStatus", now(2));
        p.invite(ID, CHANNEL, &offer(MediaTransport::Udp), now(2))
            .unwrap();
        let mut texts = Vec::new();
        for (_, m) in sent(&p.take_outputs()) {
            let branch = m.top_via().unwrap().branch().unwrap().to_string();
            let tag = m.from().unwrap().param("tag").unwrap().to_string();
            let call = m.call_id().unwrap().to_string();
            ids.push(branch.trim_start_matches("z9hG4bK").to_string());
            ids.push(tag);
            ids.push(call.split('@').next().unwrap().to_string());
            texts.push(String::from_utf8_lossy(&m.to_bytes()).into_owned());
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no id repeats");
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}: 128 random bits");
            u128::from_str_radix(id, 16).unwrap();
        }
        // Not counters: consecutive ids are far apart (a counter moves by a few).
        for w in ids.windows(2) {
            let (a, b) = (
                u128::from_str_radix(&w[0], 16).unwrap(),
                u128::from_str_radix(&w[1], 16).unwrap(),
            );
            assert!(a.abs_diff(b) > 1 << 64, "{} then {}", w[0], w[1]);
        }
        // No 4-byte run of the nonce secret (the old tag was its first four) in any id or
        // message, in hex of either case.
        let s = secret();
        for win in s.windows(4) {
            let hexes = [hex::encode(win), hex::encode_upper(win)];
            for id in ids.iter().chain(texts.iter()) {
                for h in &hexes {
                    assert!(!id.contains(h.as_str()), "{id} contains secret bytes {h}");
                }
            }
        }
        // The same nonce secret with another seed: other ids (they come from the seed alone).
        let mut q = platform(2);
        let mut p1 = platform(1);
        assert_ne!(q.new_branch(), p1.new_branch());
        assert_eq!(
            platform(1).new_tag(),
            platform(1).new_tag(),
            "seeded: reproducible in tests"
        );
    }

    #[test]
    fn a_replayed_register_is_stale_after_unregister_and_moves_nothing() {
        let mut p = platform(1);
        let (captured, code) = register(&mut p, 1, 3600, 1);
        assert_eq!(code, 200);
        // Replayed from elsewhere while the device is registered: stale, the address stays.
        p.on_message(udp(ATTACKER), captured.clone(), now(2));
        let out = sent(&p.take_outputs());
        assert_eq!(out[0].1.status(), Some(401));
        assert!(out[0]
            .1
            .header("WWW-Authenticate")
            .unwrap()
            .contains("stale=TRUE"));
        assert_eq!(p.device(ID).unwrap().peer, udp(DEVICE));
        // The device unregisters (a fresh nonce), then the captured REGISTER comes back.
        let (_, code) = register(&mut p, 2, 0, 3);
        assert_eq!(code, 200);
        assert!(p.device(ID).is_none());
        p.on_message(udp(ATTACKER), captured.clone(), now(4));
        let out = sent(&p.take_outputs());
        assert_eq!(out[0].1.status(), Some(401));
        assert!(out[0]
            .1
            .header("WWW-Authenticate")
            .unwrap()
            .contains("stale=TRUE"));
        assert!(p.device(ID).is_none(), "the replay registered nothing");
        // A shared store that says the nonce was used (a restart, another node) wins too.
        let mut fresh = platform(3);
        fresh.use_shared_nonces();
        let spend = fresh
            .receive(udp(ATTACKER), captured, now(5))
            .expect("a right digest asks the store");
        fresh.on_nonce_spent(spend, false, now(5));
        let out = sent(&fresh.take_outputs());
        assert_eq!(out[0].1.status(), Some(401));
        assert!(fresh.device(ID).is_none());
        // The device itself registers again as always.
        let (_, code) = register(&mut p, 3, 3600, 6);
        assert_eq!(code, 200);
        assert_eq!(p.device(ID).unwrap().peer, udp(DEVICE));
    }

    #[test]
    fn forged_responses_and_byes_from_elsewhere_are_dropped() {
        let mut p = platform(1);
        assert_eq!(register(&mut p, 1, 3600, 1).1, 200);
        p.take_outputs();
        let call = p
            .invite(ID, CHANNEL, &offer(MediaTransport::TcpActive), now(2))
            .unwrap();
        let (to, invite) = sent(&p.take_outputs()).remove(0);
        assert_eq!(to, udp(DEVICE));
        // A forged 200 (right branch and Call-ID) from elsewhere pointing the media elsewhere.
        p.on_message(udp(ATTACKER), ok_to(&invite, "10.66.0.3", ATTACKER), now(2));
        let out = p.take_outputs();
        assert_eq!(dropped(&out), [drop_reason::RESPONSE_NOT_FROM_DEVICE]);
        assert!(sent(&out).is_empty(), "no ACK to the forger");
        assert!(!out.iter().any(|o| matches!(o, Output::Stream(_))));
        // A response on the right branch naming another dialog is dropped too.
        let mut other = ok_to(&invite, "10.66.0.3", DEVICE);
        other.set("Call-ID", "not-the-dialog");
        p.on_message(udp(DEVICE), other, now(2));
        assert_eq!(
            dropped(&p.take_outputs()),
            [drop_reason::RESPONSE_WRONG_DIALOG]
        );
        // The device's own answer: its private c= is ignored, the registered IP is used.
        p.on_message(udp(DEVICE), ok_to(&invite, "10.9.9.9", DEVICE), now(2));
        let out = p.take_outputs();
        let media = out
            .iter()
            .find_map(|o| match o {
                Output::Stream(StreamUpdate::Answered { call_id, media }) if *call_id == call => {
                    Some(media.clone())
                }
                _ => None,
            })
            .expect("answered");
        assert_eq!(media.ip, Some("192.168.1.64".parse().unwrap()));
        assert_eq!(media.port, 40000);
        let (ack_to, ack) = sent(&out).remove(0);
        assert_eq!((ack_to, ack.method()), (udp(DEVICE), Some("ACK")));
        let crate::sip::StartLine::Request { uri, .. } = &ack.start else {
            panic!("not a request")
        };
        assert_eq!(*uri, format!("sip:{CHANNEL}@{DEVICE}"));
        // A forged retransmission of the 200 from elsewhere gets no ACK.
        p.on_message(udp(ATTACKER), ok_to(&invite, "10.66.0.3", ATTACKER), now(3));
        let out = p.take_outputs();
        assert!(sent(&out).is_empty());
        assert_eq!(dropped(&out), [drop_reason::RESPONSE_NOT_FROM_DEVICE]);
        // A forged BYE for the live Call-ID: dropped, unanswered, the stream stays.
        let bye = |from: &str| {
            parse_datagram(
                format!(
                    "BYE sip:34020000002000000001@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKbye\r\n\
                     From: <sip:{CHANNEL}@{REALM}>;tag=devtag\r\nTo: <sip:34020000002000000001@{REALM}>;tag=x\r\n\
                     Call-ID: {call}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        p.on_message(udp(ATTACKER), bye(ATTACKER), now(4));
        let out = p.take_outputs();
        assert_eq!(dropped(&out), [drop_reason::REQUEST_NOT_FROM_DEVICE]);
        assert!(sent(&out).is_empty());
        assert!(!out.iter().any(|o| matches!(o, Output::Stream(_))));
        // Over TCP from the device's own IP is another transport: dropped as well.
        let tcp = Peer {
            transport: Transport::Tcp(7),
            addr: DEVICE.parse().unwrap(),
        };
        p.on_message(tcp, bye(DEVICE), now(4));
        assert_eq!(
            dropped(&p.take_outputs()),
            [drop_reason::REQUEST_NOT_FROM_DEVICE]
        );
        // The device's own BYE ends it.
        p.on_message(udp(DEVICE), bye(DEVICE), now(5));
        let out = p.take_outputs();
        assert_eq!(sent(&out)[0].1.status(), Some(200));
        assert!(out.iter().any(
            |o| matches!(o, Output::Stream(StreamUpdate::Ended { call_id, .. }) if *call_id == call)
        ));
    }

    fn keepalive(from: &str, n: u32) -> Message {
        let body = format!(
            "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{n}</SN>\r\n\
             <DeviceID>{ID}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
        );
        parse_datagram(
            format!(
                "MESSAGE sip:34020000002000000001@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKk{n}\r\n\
                 From: <sip:{ID}@{REALM}>;tag=k{n}\r\nTo: <sip:34020000002000000001@{REALM}>\r\nCall-ID: ka{n}\r\n\
                 CSeq: {n} MESSAGE\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_flood_naming_the_device_from_elsewhere_does_not_spend_its_budget() {
        let mut p = platform(1);
        assert_eq!(register(&mut p, 1, 3600, 1).1, 200);
        p.take_outputs();
        let (burst, rate) = (p.cfg.rate_burst, p.cfg.rate_per_sec);
        let source_burst = (burst * SOURCE_RATE_FACTOR) as usize;
        // 2,000 forged keepalives and REGISTERs naming the device from 10.66.0.2 within two
        // seconds (far beyond the device's 100 + 20/s and the source's 1,000 + 200/s), the
        // device's own keepalive every 100 ms among them.
        let (mut refused, mut limited, mut challenged, mut device_ok) = (0, 0, 0, 0);
        for i in 0..2000u32 {
            let t = Now {
                mono_ms: 2000 + u64::from(i),
                utc_ms: now(2).utc_ms + i64::from(i),
            };
            let forged = if i % 2 == 0 {
                keepalive(ATTACKER, 10_000 + i)
            } else {
                register_req(&format!("z9hG4bKx{i}"), 3600, None)
            };
            p.on_message(udp(ATTACKER), forged, t);
            for o in p.take_outputs() {
                match o {
                    Output::Dropped { reason, peer } => {
                        assert_eq!(peer, udp(ATTACKER));
                        match reason {
                            drop_reason::SOURCE_RATE_LIMITED => limited += 1,
                            drop_reason::MESSAGE_NOT_FROM_DEVICE => {}
                            r => panic!("{r}"),
                        }
                    }
                    Output::Send { peer, bytes } => {
                        assert_eq!(peer, udp(ATTACKER));
                        match parse_datagram(&bytes).unwrap().status() {
                            Some(403) => refused += 1,
                            Some(401) => challenged += 1,
                            s => panic!("the forger got {s:?}"),
                        }
                    }
                    o => panic!("the forgery did something: {o:?}"),
                }
            }
            if i % 100 == 0 {
                p.on_message(udp(DEVICE), keepalive(DEVICE, i + 1), t);
                let out = sent(&p.take_outputs());
                assert_eq!(out.len(), 1);
                assert_eq!(out[0].0, udp(DEVICE));
                assert_eq!(out[0].1.status(), Some(200), "keepalive {i} refused");
                device_ok += 1;
            }
        }
        assert_eq!(device_ok, 20);
        // The source's burst and two seconds of its refill were answered; the rest dropped
        // silently (no 503 reflected to a forged source).
        let answered = refused + challenged;
        assert!(answered >= source_burst && answered <= source_burst + 2 * 10 * rate as usize + 1);
        assert_eq!(answered + limited, 2000);
        let d = p.device(ID).unwrap();
        assert!(d.online);
        assert_eq!(d.peer, udp(DEVICE));
        // The device's own budget is whole but for its own keepalives: a burst of its own still
        // passes.
        for i in 0..(burst - 30) {
            p.on_message(udp(DEVICE), keepalive(DEVICE, 50_000 + i), now(4));
            assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(200));
        }
        // And the device still refreshes its registration.
        assert_eq!(register(&mut p, 9, 3600, 5).1, 200);
        // Its own flood is still limited by its own bucket (503 to itself).
        let mut own_503 = 0;
        for i in 0..(burst + 10) {
            p.on_message(udp(DEVICE), keepalive(DEVICE, 60_000 + i), now(6));
            if sent(&p.take_outputs())[0].1.status() == Some(503) {
                own_503 += 1;
            }
        }
        assert!(own_503 > 0);
    }

    #[test]
    fn a_flood_naming_an_unregistered_device_does_not_keep_it_from_registering() {
        let mut p = platform(1);
        let mut limited = 0;
        for i in 0..500u32 {
            p.on_message(
                udp(ATTACKER),
                register_req(&format!("z9hG4bKu{i}"), 3600, None),
                now(1),
            );
            let out = sent(&p.take_outputs());
            assert_eq!(out[0].0, udp(ATTACKER));
            match out[0].1.status() {
                Some(401) => {}
                Some(503) => limited += 1,
                s => panic!("{s:?}"),
            }
        }
        assert_eq!(limited, 500 - p.cfg.rate_burst);
        // The device from its own address: its own budget, registered at once.
        assert_eq!(register(&mut p, 1, 3600, 1).1, 200);
        assert_eq!(p.device(ID).unwrap().peer, udp(DEVICE));
    }

    #[test]
    fn a_shared_store_is_asked_only_after_a_right_digest() {
        let mut p = platform(1);
        p.use_shared_nonces();
        // Unauthenticated: challenged, nothing to store.
        assert!(p
            .receive(udp(DEVICE), register_req("z9hG4bKs1", 3600, None), now(1))
            .is_none());
        let (_, ch) = sent(&p.take_outputs()).remove(0);
        assert_eq!(ch.status(), Some(401));
        let auth = answer(ch.header("WWW-Authenticate").unwrap());
        // A wrong password: refused 403 without the store.
        let wrong = auth.replace("response=\"", "response=\"0");
        assert!(p
            .receive(
                udp(ATTACKER),
                register_req("z9hG4bKs2", 3600, Some(&wrong)),
                now(1)
            )
            .is_none());
        assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(403));
        // A forged nonce: a fresh challenge without the store.
        let forged = register_req("z9hG4bKs3", 3600, Some(&answer("Digest nonce=\"00ff\"")));
        assert!(p.receive(udp(ATTACKER), forged, now(1)).is_none());
        assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(401));
        // The right answer: handed back to spend the nonce, until its own expiry.
        let authed = register_req("z9hG4bKs4", 3600, Some(&auth));
        let spend = p.receive(udp(DEVICE), authed.clone(), now(1)).unwrap();
        assert!(p.take_outputs().is_empty(), "nothing answered meanwhile");
        let issued_at = u64::from_str_radix(&spend.nonce()[..16], 16).unwrap();
        assert_eq!(
            spend.expires_at_ms(),
            ((issued_at + p.cfg.nonce_lifetime_secs + 1) * 1000) as i64
        );
        // Its retransmission meanwhile is dropped, not spent twice.
        assert!(p.receive(udp(DEVICE), authed.clone(), now(1)).is_none());
        assert!(p.take_outputs().is_empty());
        p.on_nonce_spent(spend, true, now(1));
        assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(200));
        assert_eq!(p.device(ID).unwrap().peer, udp(DEVICE));
        // A retransmission after the answer: answered from memory, the store not asked.
        assert!(p.receive(udp(DEVICE), authed.clone(), now(1)).is_none());
        assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(200));
        // Replayed from elsewhere: the store says used → 401 stale, nothing moves.
        let mut replay = authed;
        replay.set("Via", format!("SIP/2.0/UDP {ATTACKER};branch=z9hG4bKr1"));
        let spend = p.receive(udp(ATTACKER), replay, now(2)).unwrap();
        p.on_nonce_spent(spend, false, now(2));
        let out = sent(&p.take_outputs());
        assert_eq!(out[0].1.status(), Some(401));
        assert!(out[0]
            .1
            .header("WWW-Authenticate")
            .unwrap()
            .contains("stale=TRUE"));
        assert_eq!(p.device(ID).unwrap().peer, udp(DEVICE));
        // A keepalive never waits: decided at once.
        assert!(p
            .receive(udp(DEVICE), keepalive(DEVICE, 1), now(3))
            .is_none());
        assert_eq!(sent(&p.take_outputs())[0].1.status(), Some(200));
    }

    #[test]
    fn local_used_nonces_expire_and_stay_bounded() {
        let mut p = platform(1);
        assert!(p.spend_local_nonce("n1", 100, 10));
        assert!(!p.spend_local_nonce("n1", 100, 10), "single use");
        p.on_tick(Now {
            mono_ms: 0,
            utc_ms: 101_000,
        });
        assert!(p.local_nonces.is_empty(), "expired ones purged");
        for i in 0..MAX_LOCAL_NONCES {
            assert!(p.spend_local_nonce(&format!("f{i}"), 200, 10));
        }
        assert!(
            !p.spend_local_nonce("over", 200, 10),
            "full of live ones: refused"
        );
        assert!(
            p.spend_local_nonce("later", 300, 250),
            "room once they expired"
        );
        assert!(p.local_nonces.len() <= MAX_LOCAL_NONCES);
    }
}

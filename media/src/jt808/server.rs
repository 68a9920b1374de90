//! The JT/T 808 TCP listener: one task per terminal connection around a [`Session`].
//!
//! Identity rules (issue 19): a terminal that already holds an auth code cannot register again
//! unless an operator released its vehicle for re-binding (answered 0x8100 result 3 and recorded
//! on the vehicle); frames before authentication are limited per connection (in the
//! [`Session`]) and charged to the source address ([`SourceBudget`]); refused registrations of
//! unknown terminals are audited at most once a minute per phone. A terminal that
//! authenticates with its current code while an older connection of it is still open (a 4G/NAT
//! drop the server has not noticed) takes over: the old connection is told to close and
//! commands go to the new one. A registration that creates or re-binds a vehicle tells the
//! live registry ([`VehicleRegistry`]) before the terminal gets its code, so its first fix is
//! live.
//!
//! Connection slots (issue 19 review): each source address (an IPv6 source by its /64) may hold
//! at most `max_unauthenticated_per_source` connections that have not authenticated yet, each
//! accept costs one token of the address's [`SourceBudget`], and the last
//! [`AUTHENTICATED_RESERVE_PERCENT`] % of `max_connections` are kept for authenticated links
//! (an unauthenticated connection beyond the rest is refused). A vehicle's live link is closed
//! by [`Jt808Server::revoke`] when its terminal is re-bound, changed, disabled or deleted.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use shouhu_storage::audit::{Actor, AuditEntry, Outcome};
use shouhu_storage::vehicles::{normalize_phone, RegisterOutcome, TerminalRegistration};
use shouhu_storage::Db;

use super::limits::{source_key, SourceBudget};
use super::message;
use super::session::{Action, Session};
use crate::model::UnitEventSink;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Jt808Config {
    /// Org unit new vehicles go to when registration is open; `None` = closed (unknown
    /// terminals are refused).
    pub open_registration_org: Option<String>,
    /// A connection that has not authenticated within this time is closed.
    pub auth_timeout: Duration,
    /// A connection silent for this long is closed (terminals send heartbeats).
    pub idle_timeout: Duration,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Frames before authentication one source address may send at once (see
    /// [`SourceBudget`]).
    pub source_burst: u32,
    /// Frames before authentication a source address regains per second.
    pub source_per_sec: u32,
    /// Connections one source address (an IPv6 source: its /64) may hold before they
    /// authenticate.
    pub max_unauthenticated_per_source: u32,
    /// Vehicles open registration may create for one source address (an IPv6 source: its /64)
    /// a minute; an unknown terminal beyond it is answered 0x8100 result 1 and logged.
    pub open_registrations_per_source_per_min: u32,
}

impl Default for Jt808Config {
    fn default() -> Self {
        Self {
            open_registration_org: None,
            auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            max_connections: 20_000,
            source_burst: 2_000,
            source_per_sec: 100,
            max_unauthenticated_per_source: 256,
            open_registrations_per_source_per_min: 10,
        }
    }
}

/// Why a command to a terminal could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The unit has no connected, authenticated terminal.
    #[error("the vehicle's terminal is not connected")]
    NotConnected,
    /// Commands already wait for the terminal; it has not taken them yet.
    #[error("the vehicle's terminal has not yet taken the commands sent before")]
    Busy,
}

/// Counters.
#[derive(Debug, Default)]
pub struct Jt808Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Frames answered as malformed.
    pub malformed: AtomicU64,
    /// Connections closed for protocol errors.
    pub closed_for_errors: AtomicU64,
    /// Registrations refused because the terminal already holds an auth code.
    pub reregistrations_refused: AtomicU64,
    /// Connections closed because their source address ran out of unauthenticated frames.
    pub source_budget_refused: AtomicU64,
    /// Older connections of a terminal closed because it authenticated on a new one.
    pub taken_over: AtomicU64,
    /// Additional items of location reports dropped because they overran the body.
    pub extension_items_dropped: AtomicU64,
    /// Connections refused at accept (limits: global, reserve, per source, budget).
    pub connections_refused: AtomicU64,
    /// Authenticated links closed by [`Jt808Server::revoke`].
    pub revoked: AtomicU64,
    /// Unknown terminals refused because their address used up its open registrations.
    pub open_registrations_limited: AtomicU64,
}

/// Share of `max_connections`, in percent, that only authenticated links may hold.
pub const AUTHENTICATED_RESERVE_PERCENT: usize = 10;

/// Connections not yet authenticated, by source key.
#[derive(Debug, Default)]
struct Unauthenticated {
    by_source: Mutex<HashMap<std::net::IpAddr, u32>>,
    total: AtomicUsize,
}

/// One unauthenticated connection's hold on its source's slots; given back when the
/// connection authenticates or ends.
struct UnauthSlot {
    table: Arc<Unauthenticated>,
    key: std::net::IpAddr,
    held: bool,
}

impl UnauthSlot {
    fn release(&mut self) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        self.table.total.fetch_sub(1, Ordering::Relaxed);
        let mut m = self
            .table
            .by_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Platform commands waiting for one connection. A queue of its own rather than a tokio channel:
/// a channel allocates its first block of slots when made, 1.5 KB for each of 10,000
/// connections that mostly never receive a command.
#[derive(Default)]
struct CommandQueue {
    queue: std::sync::Mutex<std::collections::VecDeque<(u16, Vec<u8>)>>,
    ready: Notify,
    closed: AtomicBool,
}

/// Commands queued for one connection at most; more are refused until it catches up.
const COMMAND_QUEUE: usize = 8;

impl CommandQueue {
    fn push(&self, id: u16, body: Vec<u8>) -> Result<(), CommandError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(CommandError::NotConnected);
        }
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= COMMAND_QUEUE {
            return Err(CommandError::Busy);
        }
        q.push_back((id, body));
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    fn pop(&self) -> Option<(u16, Vec<u8>)> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

type Commands = Arc<CommandQueue>;

/// The connection that speaks for a unit: its command channel and how to close it.
#[derive(Clone)]
struct Link {
    commands: Commands,
    close: Arc<Notify>,
    revoked: Arc<Revoked>,
}

/// Set when the link's vehicle is re-bound, changed, disabled or deleted.
#[derive(Default)]
struct Revoked {
    flag: std::sync::atomic::AtomicBool,
    wake: Notify,
}

/// Told when a terminal's registration created or re-bound a vehicle, so the live dispatch
/// registry has the unit before the terminal gets its auth code.
pub trait VehicleRegistry: Send + Sync {
    /// The vehicle `vehicle_id` was created or changed.
    fn vehicle_changed<'a>(
        &'a self,
        vehicle_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A registry that is told nothing (tools and tests without a live hub).
#[derive(Debug, Default)]
pub struct NoRegistry;

impl VehicleRegistry for NoRegistry {
    fn vehicle_changed<'a>(
        &'a self,
        _vehicle_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(std::future::ready(()))
    }
}

/// Most phones remembered for the once-a-minute audit of unknown terminals' registrations.
const MAX_AUDIT_PHONES: usize = 10_000;

/// The server.
pub struct Jt808Server {
    db: Db,
    sink: Arc<dyn UnitEventSink>,
    registry: Arc<dyn VehicleRegistry>,
    cfg: Jt808Config,
    now: Arc<dyn Fn() -> i64 + Send + Sync>,
    connected: Mutex<HashMap<String, Link>>,
    budget: Mutex<SourceBudget>,
    unauthenticated: Arc<Unauthenticated>,
    unknown_audited: Mutex<HashMap<String, i64>>,
    /// Open registrations by source key: (minute window start, vehicles created in it).
    open_created: Mutex<HashMap<std::net::IpAddr, (i64, u32)>>,
    active: AtomicUsize,
    /// The address served, once running.
    addr: std::sync::OnceLock<SocketAddr>,
    /// Counters.
    pub stats: Jt808Stats,
}

impl std::fmt::Debug for Jt808Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jt808Server").finish_non_exhaustive()
    }
}

fn new_auth_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut r = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[r.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Jt808Server {
    /// A server publishing to `sink` and telling `registry` about vehicles registrations
    /// create or re-bind.
    pub fn new(
        db: Db,
        sink: Arc<dyn UnitEventSink>,
        registry: Arc<dyn VehicleRegistry>,
        cfg: Jt808Config,
        now: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            sink,
            registry,
            budget: Mutex::new(SourceBudget::new(cfg.source_burst, cfg.source_per_sec)),
            unknown_audited: Mutex::new(HashMap::new()),
            open_created: Mutex::new(HashMap::new()),
            unauthenticated: Arc::new(Unauthenticated::default()),
            cfg,
            now,
            connected: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            addr: std::sync::OnceLock::new(),
            stats: Jt808Stats::default(),
        })
    }

    /// Accept connections until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        if let Ok(a) = listener.local_addr() {
            let _ = self.addr.set(a);
        }
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let slot = match self.admit(peer) {
                            Ok(slot) => slot,
                            Err(reason) => {
                                self.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!("shouhu_jt808_connections_refused_total", "reason" => reason)
                                    .increment(1);
                                tracing::debug!(%peer, reason, "JT/T 808 connection refused");
                                drop(stream);
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        self.active.fetch_add(1, Ordering::Relaxed);
                        self.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let me = self.clone();
                        let sd = shutdown.clone();
                        tokio::spawn(async move {
                            me.connection(stream, peer, slot, sd).await;
                            me.active.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JT/T 808 accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Connections open now.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections open now that have not authenticated.
    pub fn unauthenticated_connections(&self) -> usize {
        self.unauthenticated.total.load(Ordering::Relaxed)
    }

    /// Whether a new connection from `peer` may be served, and its slot: refused when the
    /// server is full, when only the reserve for authenticated links is left, when the source
    /// holds its share of unauthenticated connections, or when its budget is spent (each accept
    /// costs a token). The error is the reason, a metric label.
    fn admit(&self, peer: SocketAddr) -> Result<UnauthSlot, &'static str> {
        let max = self.cfg.max_connections;
        if self.active.load(Ordering::Relaxed) >= max {
            tracing::warn!(%peer, "JT/T 808 connection refused: connection limit reached");
            return Err("full");
        }
        let unauth_max = max - max * AUTHENTICATED_RESERVE_PERCENT / 100;
        if self.unauthenticated.total.load(Ordering::Relaxed) >= unauth_max {
            return Err("reserved");
        }
        let key = source_key(peer.ip());
        let mut m = self
            .unauthenticated
            .by_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.get(&key).copied().unwrap_or(0);
        if n >= self.cfg.max_unauthenticated_per_source {
            return Err("source");
        }
        let now = (self.now)();
        if !self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .charge(peer.ip(), 1, now)
        {
            return Err("budget");
        }
        m.insert(key, n + 1);
        self.unauthenticated.total.fetch_add(1, Ordering::Relaxed);
        Ok(UnauthSlot {
            table: self.unauthenticated.clone(),
            key,
            held: true,
        })
    }

    /// Close the authenticated link of `vehicle_id`, if any (its terminal was re-bound, its
    /// terminal phone changed, or the vehicle was disabled or deleted): frames it sent after
    /// this are not acted on, and the unit goes offline as when a terminal hangs up. Whether a
    /// link was open.
    pub fn revoke(&self, vehicle_id: &str) -> bool {
        let link = self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(vehicle_id)
            .cloned();
        let Some(link) = link else { return false };
        link.revoked.flag.store(true, Ordering::SeqCst);
        link.revoked.wake.notify_one();
        self.stats.revoked.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shouhu_jt808_links_revoked_total").increment(1);
        tracing::info!(vehicle = %vehicle_id, "JT/T 808 link revoked");
        true
    }

    /// Send a platform message to the terminal of `unit_id` (0x8201 query position, 0x8202
    /// temporary tracking).
    pub async fn command(
        &self,
        unit_id: &str,
        msg_id: u16,
        body: Vec<u8>,
    ) -> Result<(), CommandError> {
        let tx = self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(unit_id)
            .map(|l| l.commands.clone())
            .ok_or(CommandError::NotConnected)?;
        tx.push(msg_id, body)
    }

    /// The address served, once running (the bound port when configured as port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }

    /// Ask the terminal for its position now (0x8201); the answer arrives as a position.
    pub async fn query_position(&self, unit_id: &str) -> Result<(), CommandError> {
        self.command(unit_id, message::QUERY_POSITION, Vec::new())
            .await
    }

    /// Ask the terminal to report every `interval_s` for `duration_s` (0x8202).
    pub async fn track(
        &self,
        unit_id: &str,
        interval_s: u16,
        duration_s: u32,
    ) -> Result<(), CommandError> {
        self.command(
            unit_id,
            message::TRACK_POSITION,
            message::track_position(interval_s, duration_s),
        )
        .await
    }

    async fn connection(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        mut slot: UnauthSlot,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut s = Session::new();
        let ctx: Commands = Arc::default();
        let taken_over = Arc::new(Notify::new());
        let revoked = Arc::new(Revoked::default());
        let mut charged = 0u64;
        // Reports are ~100 bytes; longer frames arrive over several reads (the deframer keeps
        // the partial one). 10,000 terminals × 2 KiB was 20 MB of the resident set.
        let mut buf = vec![0u8; 512];
        let started = tokio::time::Instant::now();
        // The idle timer restarts on whole frames only: a byte now and then (a slow-loris)
        // does not keep the connection.
        let mut last_frame = started;
        let mut frames_seen = 0u64;
        let reason = loop {
            let deadline = if s.unit_id().is_none() {
                (started + self.cfg.auth_timeout).min(last_frame + self.cfg.idle_timeout)
            } else {
                last_frame + self.cfg.idle_timeout
            };
            let n = tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => break "closed by the terminal".to_string(),
                    Ok(n) => n,
                    Err(e) => break format!("read error: {e}"),
                },
                _ = ctx.ready.notified() => {
                    let mut failed = None;
                    while let Some((id, body)) = ctx.pop() {
                        let bytes = s.platform_message(id, &body);
                        if let Err(e) = write(&mut stream, &bytes).await { failed = Some(e); break; }
                    }
                    match failed { Some(e) => break e, None => continue }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break if s.unit_id().is_none() { "not authenticated in time".into() } else { "idle timeout".into() };
                }
                _ = taken_over.notified() => {
                    self.stats.taken_over.fetch_add(1, Ordering::Relaxed);
                    break "the terminal authenticated on a new connection".into();
                }
                _ = revoked.wake.notified() => break "revoked".into(),
                _ = shutdown.changed() => break "server shutting down".into(),
            };
            if revoked.flag.load(Ordering::SeqCst) {
                // Revoked while these bytes were on their way: not acted on.
                break "revoked".into();
            }
            let now = (self.now)();
            let actions = s.on_bytes(&buf[..n], now);
            if s.frames() > frames_seen {
                frames_seen = s.frames();
                last_frame = tokio::time::Instant::now();
            }
            // Frames before authentication are charged to the source address before anything
            // is looked up for them.
            let unauth = s.unauthenticated_frames();
            if unauth > charged {
                let ok = self
                    .budget
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .charge(peer.ip(), unauth - charged, now);
                charged = unauth;
                if !ok {
                    self.stats
                        .source_budget_refused
                        .fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("shouhu_jt808_source_budget_refused_total").increment(1);
                    tracing::warn!(terminal = s.phone().unwrap_or("?"), %peer,
                        "JT/T 808 connection closed: its address sent too many frames before authenticating");
                    break "source address over its unauthenticated budget".into();
                }
            }
            let mut close = None;
            let mut queue: std::collections::VecDeque<Action> = actions.into();
            while let Some(a) = queue.pop_front() {
                match a {
                    Action::Send(b) => {
                        if let Err(e) = write(&mut stream, &b).await {
                            close = Some(e);
                            break;
                        }
                    }
                    Action::Event(ev) => {
                        if revoked.flag.load(Ordering::SeqCst) {
                            close = Some("revoked".into());
                            break;
                        }
                        self.sink.publish(ev)
                    }
                    Action::ItemsDropped { count, excerpt } => {
                        self.stats
                            .extension_items_dropped
                            .fetch_add(u64::from(count), Ordering::Relaxed);
                        metrics::counter!("shouhu_jt808_extension_items_dropped_total")
                            .increment(u64::from(count));
                        tracing::debug!(terminal = s.phone().unwrap_or("?"), %peer, dropped = count, frame = %excerpt,
                            "JT/T 808 location kept, additional item overrunning the body dropped");
                    }
                    Action::Malformed { error, excerpt } => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(terminal = s.phone().unwrap_or("?"), %peer, %error, frame = %excerpt,
                            "malformed JT/T 808 frame answered with result 2");
                    }
                    Action::Register {
                        serial,
                        phone,
                        register,
                    } => {
                        let reg = TerminalRegistration {
                            manufacturer: register.maker.clone(),
                            model: register.model.clone(),
                            terminal_id: register.terminal_id.clone(),
                            plate: register.plate.clone(),
                        };
                        if !Box::pin(self.open_registration_allowed(&phone, peer, now)).await {
                            self.stats
                                .open_registrations_limited
                                .fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("shouhu_jt808_open_registrations_limited_total")
                                .increment(1);
                            tracing::warn!(terminal = %phone, %peer,
                                "JT/T 808 open registration refused: too many new vehicles from this address this minute");
                            queue.push_front(Action::Send(s.registered(serial, Err(1))));
                            continue;
                        }
                        // Boxed: the storage future is large and would otherwise enlarge every idle
                        // connection's task for its whole life.
                        let r = Box::pin(self.db.vehicles().register_terminal(
                            &phone,
                            &reg,
                            self.cfg.open_registration_org.as_deref(),
                            &new_auth_code(),
                            &peer.to_string(),
                            now,
                        ))
                        .await;
                        let answer = match r {
                            Ok(RegisterOutcome::Registered {
                                auth_code,
                                vehicle_id,
                            }) => {
                                tracing::info!(terminal = %phone, vehicle = %vehicle_id, %peer, "JT/T 808 terminal registered");
                                // A new code retires the old one: so goes the link that used it.
                                self.revoke(&vehicle_id);
                                // The unit is live before the terminal has its code.
                                Box::pin(self.registry.vehicle_changed(&vehicle_id)).await;
                                Ok(auth_code)
                            }
                            Ok(RegisterOutcome::AlreadyRegistered {
                                vehicle_id,
                                audited,
                            }) => {
                                self.stats
                                    .reregistrations_refused
                                    .fetch_add(1, Ordering::Relaxed);
                                metrics::counter!("shouhu_jt808_reregistrations_refused_total")
                                    .increment(1);
                                if audited {
                                    tracing::warn!(terminal = %phone, vehicle = %vehicle_id, %peer,
                                        "JT/T 808 registration refused: terminal already registered and not released for re-binding");
                                }
                                Err(3)
                            }
                            Ok(RegisterOutcome::UnknownTerminal) => {
                                if self.audit_unknown_due(&phone, now) {
                                    tracing::warn!(terminal = %phone, %peer, "JT/T 808 registration refused: unknown terminal");
                                    let a = AuditEntry::new(
                                        &Actor {
                                            username: Some(format!("jt808:{}", normalize_phone(&phone))),
                                            ip: Some(peer.to_string()),
                                            ..Default::default()
                                        },
                                        "vehicle.terminal_register_refused",
                                        now,
                                    )
                                    .outcome(Outcome::Denied)
                                    .details(serde_json::json!({"terminal_phone": normalize_phone(&phone),
                                        "terminal_id": register.terminal_id, "from": peer.to_string(),
                                        "reason": "unknown terminal"}));
                                    if let Err(e) = Box::pin(self.db.audit().record(&a)).await {
                                        tracing::error!(error = %e, "JT/T 808: auditing a refused registration failed");
                                    }
                                }
                                Err(4)
                            }
                            Ok(RegisterOutcome::Inactive) => Err(2),
                            Err(e) => {
                                tracing::error!(terminal = %phone, error = %e, "JT/T 808 registration failed");
                                Err(1)
                            }
                        };
                        queue.push_front(Action::Send(s.registered(serial, answer)));
                    }
                    Action::Authenticate {
                        serial,
                        phone,
                        code,
                    } => {
                        let unit = match Box::pin(
                            self.db.vehicles().authenticate_terminal(&phone, &code),
                        )
                        .await
                        {
                            Ok(u) => u,
                            Err(e) => {
                                tracing::error!(terminal = %phone, error = %e, "JT/T 808 authentication failed");
                                None
                            }
                        };
                        if unit.is_none() {
                            tracing::warn!(terminal = %phone, %peer, "JT/T 808 authentication refused");
                        }
                        if let Some(u) = &unit {
                            let old = self
                                .connected
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(
                                    u.clone(),
                                    Link {
                                        commands: ctx.clone(),
                                        close: taken_over.clone(),
                                        revoked: revoked.clone(),
                                    },
                                );
                            if let Some(old) = old.filter(|o| !Arc::ptr_eq(&o.commands, &ctx)) {
                                // The terminal's older connection (a link that dropped without
                                // a FIN) closes; commands go here now.
                                tracing::info!(terminal = %phone, vehicle = %u, %peer,
                                    "JT/T 808 terminal re-authenticated on a new connection; closing the old one");
                                old.close.notify_one();
                            }
                            slot.release();
                        }
                        for a in s.authenticated(serial, unit).into_iter().rev() {
                            queue.push_front(a);
                        }
                    }
                    Action::Close(r) => {
                        self.stats.closed_for_errors.fetch_add(1, Ordering::Relaxed);
                        close = Some(r);
                        break;
                    }
                }
            }
            if let Some(r) = close {
                tracing::warn!(terminal = s.phone().unwrap_or("?"), %peer, reason = %r, "JT/T 808 connection closed");
                break r;
            }
        };
        ctx.closed.store(true, Ordering::SeqCst);
        tracing::debug!(terminal = s.phone().unwrap_or("?"), %peer, %reason, "JT/T 808 connection ended");
        // Only the connection that still speaks for the unit takes it offline: one that was
        // taken over leaves the unit to its successor.
        let mut current = false;
        if let Some(u) = s.unit_id() {
            let mut c = self
                .connected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.get(u).is_some_and(|l| Arc::ptr_eq(&l.commands, &ctx)) {
                c.remove(u);
                current = true;
            }
        }
        if current {
            if let Some(ev) = s.on_close() {
                self.sink.publish(ev);
            }
        }
        let _ = stream.shutdown().await;
    }
}

impl Jt808Server {
    /// Whether a registration of `phone` from `peer` may go ahead: always, unless registration
    /// is open, the number is unknown (the registration would create a vehicle) and the
    /// address has created its share of vehicles this minute. A creation is counted here.
    async fn open_registration_allowed(&self, phone: &str, peer: SocketAddr, now_ms: i64) -> bool {
        if self.cfg.open_registration_org.is_none() {
            return true;
        }
        match self.db.vehicles().by_terminal(phone).await {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(terminal = %phone, error = %e, "JT/T 808: looking up a terminal failed");
                return true;
            }
        }
        let key = source_key(peer.ip());
        let mut m = self
            .open_created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= MAX_AUDIT_PHONES && !m.contains_key(&key) {
            m.retain(|_, (start, _)| *start > now_ms - 60_000);
        }
        let e = m.entry(key).or_insert((now_ms, 0));
        if e.0 <= now_ms - 60_000 {
            *e = (now_ms, 0);
        }
        if e.1 >= self.cfg.open_registrations_per_source_per_min {
            return false;
        }
        e.1 += 1;
        true
    }

    /// Whether a refused registration of the unknown terminal `phone` is due for the audit log
    /// (at most once a minute per phone).
    fn audit_unknown_due(&self, phone: &str, now_ms: i64) -> bool {
        let mut m = self
            .unknown_audited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = normalize_phone(phone);
        if m.get(&key).is_some_and(|&t| t > now_ms - 60_000) {
            return false;
        }
        if m.len() >= MAX_AUDIT_PHONES {
            m.retain(|_, t| *t > now_ms - 60_000);
            if m.len() >= MAX_AUDIT_PHONES {
                return false;
            }
        }
        m.insert(key, now_ms);
        true
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(10), stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSink;
    impl UnitEventSink for NoSink {
        fn publish(&self, _event: crate::model::UnitEvent) {}
    }

    async fn server(max_connections: usize, per_source: u32) -> Arc<Jt808Server> {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        Jt808Server::new(
            db,
            Arc::new(NoSink),
            Arc::new(NoRegistry),
            Jt808Config {
                max_connections,
                max_unauthenticated_per_source: per_source,
                ..Default::default()
            },
            Arc::new(|| 0),
        )
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40_000)
    }

    #[tokio::test]
    async fn one_source_holds_its_share_of_unauthenticated_slots() {
        let s = server(1000, 3).await;
        let held: Vec<_> = (0..3)
            .map(|_| s.admit(peer("127.0.0.2")).unwrap())
            .collect();
        assert_eq!(s.admit(peer("127.0.0.2")).err(), Some("source"));
        assert!(s.admit(peer("127.0.0.1")).is_ok(), "another address");
        // An IPv6 source is its /64; an IPv4-mapped address is the IPv4 one.
        let v6: Vec<_> = (0..3)
            .map(|i| s.admit(peer(&format!("2001:db8:1:2::{i}"))).unwrap())
            .collect();
        assert_eq!(s.admit(peer("2001:db8:1:2:ffff::1")).err(), Some("source"));
        assert!(s.admit(peer("2001:db8:1:3::1")).is_ok());
        assert_eq!(s.admit(peer("::ffff:127.0.0.2")).err(), Some("source"));
        // A slot given back (authenticated, or closed) can be taken again.
        drop(held);
        assert!(s.admit(peer("127.0.0.2")).is_ok());
        drop(v6);
        assert_eq!(s.unauthenticated_connections(), 0, "every slot was dropped");
    }

    #[tokio::test]
    async fn the_last_tenth_of_the_slots_is_for_authenticated_links() {
        let s = server(20, 100).await;
        let mut held: Vec<_> = (0..18)
            .map(|i| s.admit(peer(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(s.admit(peer("10.0.1.1")).err(), Some("reserved"));
        // A connection that authenticates gives its unauthenticated slot back.
        held[0].release();
        assert!(s.admit(peer("10.0.1.1")).is_ok());
    }

    #[tokio::test]
    async fn each_accept_costs_a_budget_token() {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        let s = Jt808Server::new(
            db,
            Arc::new(NoSink),
            Arc::new(NoRegistry),
            Jt808Config {
                source_burst: 2,
                source_per_sec: 0,
                ..Default::default()
            },
            Arc::new(|| 0),
        );
        drop(s.admit(peer("127.0.0.2")).unwrap());
        drop(s.admit(peer("127.0.0.2")).unwrap());
        assert_eq!(s.admit(peer("127.0.0.2")).err(), Some("budget"));
    }

    #[tokio::test]
    async fn a_connection_queues_a_few_commands_and_refuses_more_or_after_it_ended() {
        let q = CommandQueue::default();
        for i in 0..COMMAND_QUEUE {
            q.push(message::QUERY_POSITION, vec![i as u8]).unwrap();
        }
        // The connection is woken once for everything queued.
        tokio::time::timeout(Duration::from_secs(5), q.ready.notified())
            .await
            .expect("woken");
        assert!(matches!(
            q.push(message::QUERY_POSITION, vec![]),
            Err(CommandError::Busy)
        ));
        let taken: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|(_, b)| b[0]).collect();
        assert_eq!(
            taken,
            (0..COMMAND_QUEUE as u8).collect::<Vec<_>>(),
            "in order"
        );
        q.push(message::QUERY_POSITION, vec![]).unwrap();
        q.closed.store(true, Ordering::SeqCst);
        assert!(matches!(
            q.push(message::QUERY_POSITION, vec![]),
            Err(CommandError::NotConnected)
        ));
    }
}

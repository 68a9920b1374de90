//! The JT/T 808 TCP listener: one task per terminal connection around a [`Session`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use shouhu_storage::vehicles::{RegisterOutcome, TerminalRegistration};
use shouhu_storage::Db;

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
}

impl Default for Jt808Config {
    fn default() -> Self {
        Self {
            open_registration_org: None,
            auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            max_connections: 20_000,
        }
    }
}

/// Why a command to a terminal could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The unit has no connected, authenticated terminal.
    #[error("the vehicle's terminal is not connected")]
    NotConnected,
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
}

type Commands = mpsc::Sender<(u16, Vec<u8>)>;

/// The server.
pub struct Jt808Server {
    db: Db,
    sink: Arc<dyn UnitEventSink>,
    cfg: Jt808Config,
    now: Arc<dyn Fn() -> i64 + Send + Sync>,
    connected: Mutex<HashMap<String, Commands>>,
    active: AtomicUsize,
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
    /// A server publishing to `sink`.
    pub fn new(
        db: Db,
        sink: Arc<dyn UnitEventSink>,
        cfg: Jt808Config,
        now: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            sink,
            cfg,
            now,
            connected: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            stats: Jt808Stats::default(),
        })
    }

    /// Accept connections until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        if self.active.load(Ordering::Relaxed) >= self.cfg.max_connections {
                            tracing::warn!(%peer, "JT/T 808 connection refused: connection limit reached");
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        self.active.fetch_add(1, Ordering::Relaxed);
                        self.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let me = self.clone();
                        let sd = shutdown.clone();
                        tokio::spawn(async move {
                            me.connection(stream, peer, sd).await;
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
            .expect("connections lock")
            .get(unit_id)
            .cloned()
            .ok_or(CommandError::NotConnected)?;
        tx.send((msg_id, body))
            .await
            .map_err(|_| CommandError::NotConnected)
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
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut s = Session::new();
        let (ctx, mut crx) = mpsc::channel::<(u16, Vec<u8>)>(8);
        let mut buf = vec![0u8; 2048];
        let started = tokio::time::Instant::now();
        let reason = loop {
            let deadline = if s.unit_id().is_none() {
                (started + self.cfg.auth_timeout)
                    .min(tokio::time::Instant::now() + self.cfg.idle_timeout)
            } else {
                tokio::time::Instant::now() + self.cfg.idle_timeout
            };
            let n = tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => break "closed by the terminal".to_string(),
                    Ok(n) => n,
                    Err(e) => break format!("read error: {e}"),
                },
                Some((id, body)) = crx.recv() => {
                    let bytes = s.platform_message(id, &body);
                    if let Err(e) = write(&mut stream, &bytes).await { break e; }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break if s.unit_id().is_none() { "not authenticated in time".into() } else { "idle timeout".into() };
                }
                _ = shutdown.changed() => break "server shutting down".into(),
            };
            let now = (self.now)();
            let actions = s.on_bytes(&buf[..n], now);
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
                    Action::Event(ev) => self.sink.publish(ev),
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
                        // Boxed: the storage future is large and would otherwise enlarge every idle
                        // connection's task for its whole life.
                        let r = Box::pin(self.db.vehicles().register_terminal(
                            &phone,
                            &reg,
                            self.cfg.open_registration_org.as_deref(),
                            &new_auth_code(),
                            now,
                        ))
                        .await;
                        let answer = match r {
                            Ok(RegisterOutcome::Registered {
                                auth_code,
                                vehicle_id,
                            }) => {
                                tracing::info!(terminal = %phone, vehicle = %vehicle_id, "JT/T 808 terminal registered");
                                Ok(auth_code)
                            }
                            Ok(RegisterOutcome::UnknownTerminal) => {
                                tracing::warn!(terminal = %phone, %peer, "JT/T 808 registration refused: unknown terminal");
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
                            self.connected
                                .lock()
                                .expect("connections lock")
                                .insert(u.clone(), ctx.clone());
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
        tracing::debug!(terminal = s.phone().unwrap_or("?"), %peer, %reason, "JT/T 808 connection ended");
        if let Some(u) = s.unit_id() {
            let mut c = self.connected.lock().expect("connections lock");
            if c.get(u).is_some_and(|tx| tx.same_channel(&ctx)) {
                c.remove(u);
            }
        }
        if let Some(ev) = s.on_close() {
            self.sink.publish(ev);
        }
        let _ = stream.shutdown().await;
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(10), stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

//! The hub: the dispatch core behind a lock, fed by devices and the API, fanning changes out.
//!
//! * Device events arrive through [`UnitEventSink::publish`] (never blocks: the core is a short
//!   critical section, history goes to a bounded queue drained by a writer task in batches).
//! * Every change of a unit becomes one [`Frame`]: a snapshot of the unit, serialised at most
//!   once per coordinate system however many clients receive it. Changes are coalesced per unit
//!   and broadcast as a [`Batch`] every `flush_interval`; SOS events go out at once.
//! * Each WebSocket client keeps a [`ClientSession`]: the latest frame per unit that matches its
//!   subscription, sent at the client's rate. A client that falls behind the broadcast ring is
//!   resynchronised from the current frames — it gets the newest positions, never a backlog.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use shouhu_storage::assignments::Assignment;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::model::{Position, UnitEvent, UnitEventSink, UnitKind};
use shouhu_storage::org_units::Scope;
use shouhu_storage::positions::{source_str, TrackPoint};
use shouhu_storage::sos::{SosAlarm, SosStep};
use shouhu_storage::{Db, StorageError};

use crate::coords::Crs;
use crate::core::{
    Core, CoreConfig, DispatchState, Event, EventKind, FenceDef, Output, Target, UnitInfo,
    UnitState,
};
use crate::fence::Shape;
use crate::protocol::{rfc3339, Subscription, UnitView};

/// Tunables of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The core's.
    pub core: CoreConfig,
    /// How often changes are broadcast to client sessions.
    pub flush_interval: Duration,
    /// Arrival radius around an enterprise without a drawn fence, metres.
    pub enterprise_radius_m: f64,
    /// Position history is deleted after this many days.
    pub track_retention_days: i64,
    /// Capacity of the history queue (fixes waiting to be written).
    pub history_queue: usize,
    /// Batches kept in the broadcast ring before a slow client is resynchronised.
    pub broadcast_capacity: usize,
    /// How long fixes are collected before a history transaction.
    pub history_flush: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            core: CoreConfig::default(),
            flush_interval: Duration::from_millis(20),
            enterprise_radius_m: 150.0,
            track_retention_days: 365,
            history_queue: 200_000,
            broadcast_capacity: 64,
            history_flush: Duration::from_secs(2),
        }
    }
}

/// Errors of hub operations.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Storage failed or refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No such unit.
    #[error("unit not found")]
    UnknownUnit,
    /// The request is wrong (message says how).
    #[error("{0}")]
    Invalid(String),
}

/// A snapshot of one unit at one change, shared by every client that receives it.
#[derive(Debug)]
pub struct Frame {
    /// Unit index in the core.
    pub idx: u32,
    /// Interned org unit (see [`Hub::filter`]).
    org: u32,
    kind_bit: u8,
    state_bit: u8,
    /// Who.
    pub info: Arc<UnitInfo>,
    /// The view in WGS-84.
    pub view: UnitView,
    wgs: Option<(f64, f64)>,
    target_wgs: Option<(f64, f64)>,
    /// The unit was removed from the registry.
    pub removed: bool,
    json: [OnceLock<String>; 3],
}

impl Frame {
    fn new(idx: u32, org: u32, u: &UnitState, removed: bool) -> Frame {
        Frame {
            idx,
            org,
            kind_bit: kind_bit(u.info.kind),
            state_bit: state_bit(u.state()),
            info: u.info.clone(),
            view: UnitView {
                // The frame goes to every WebSocket client alike: no terminal phone, which only
                // roles that manage devices may read (REST adds it for them).
                terminal: None,
                ..UnitView::of(u, Crs::Wgs84)
            },
            wgs: u.live.as_ref().map(|p| (p.lat, p.lon)),
            target_wgs: u.target.as_ref().map(|t| (t.lat, t.lon)),
            removed,
            json: Default::default(),
        }
    }

    /// Dispatch state.
    pub fn state(&self) -> DispatchState {
        self.view.state
    }

    /// WGS-84 position.
    pub fn wgs(&self) -> Option<(f64, f64)> {
        self.wgs
    }

    /// The view in `crs`.
    pub fn view_in(&self, crs: Crs) -> UnitView {
        let mut v = self.view.clone();
        if crs != Crs::Wgs84 {
            if let Some((la, lo)) = self.wgs {
                let (a, b) = crs.from_wgs84(la, lo);
                v.lat = Some(a);
                v.lon = Some(b);
            }
            if let (Some(t), Some((la, lo))) = (v.target.as_mut(), self.target_wgs) {
                let (a, b) = crs.from_wgs84(la, lo);
                t.lat = a;
                t.lon = b;
            }
        }
        v
    }

    /// The JSON of the view in `crs`, serialised on first use.
    pub fn json(&self, crs: Crs) -> &str {
        self.json[crs.index()]
            .get_or_init(|| serde_json::to_string(&self.view_in(crs)).unwrap_or_default())
    }
}

/// An event ready to send.
#[derive(Debug)]
pub struct EventOut {
    /// The unit's org unit (scope filter).
    pub org_unit_id: String,
    /// Send at once (SOS).
    pub urgent: bool,
    /// The JSON object.
    pub json: String,
    /// Kind (for tests and metrics).
    pub kind: EventKind,
}

/// What one flush broadcasts.
#[derive(Debug, Default)]
pub struct Batch {
    /// Changed units (latest frame per unit within the flush interval).
    pub frames: Vec<Arc<Frame>>,
    /// Events.
    pub events: Vec<Arc<EventOut>>,
}

/// Counters for metrics and the benchmark.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Position events received.
    pub positions_in: AtomicU64,
    /// Fixes written to history.
    pub history_written: AtomicU64,
    /// History transactions (each carries many fixes).
    pub history_batches: AtomicU64,
    /// Fixes dropped because the history queue was full.
    pub history_dropped: AtomicU64,
    /// Events for units the registry does not know.
    pub unknown_unit: AtomicU64,
    /// Batches broadcast.
    pub batches: AtomicU64,
    /// Client resynchronisations after lag.
    pub resyncs: AtomicU64,
}

struct State {
    core: Core,
    latest: Vec<Option<Arc<Frame>>>,
    pending: HashMap<u32, Arc<Frame>>,
    events: Vec<Arc<EventOut>>,
    officer_by_account: HashMap<String, String>,
    device_units: HashMap<String, String>,
    orgs: HashMap<String, u32>,
}

impl State {
    fn org_index(&mut self, org: &str) -> u32 {
        if let Some(&i) = self.orgs.get(org) {
            return i;
        }
        let i = self.orgs.len() as u32;
        self.orgs.insert(org.to_string(), i);
        i
    }
}

/// The live dispatch hub. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    state: Mutex<State>,
    db: Db,
    cfg: HubConfig,
    now: Arc<dyn Fn() -> i64 + Send + Sync>,
    batches: broadcast::Sender<Arc<Batch>>,
    urgent: broadcast::Sender<Arc<EventOut>>,
    history: Mutex<Option<mpsc::Sender<TrackPoint>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serialises registry refreshes: each reads the database and applies what it read, so an
    /// older read never undoes a newer one.
    registry: tokio::sync::Mutex<()>,
    /// Counters.
    pub stats: HubStats,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn system_actor() -> Actor {
    Actor {
        username: Some("system".into()),
        ..Default::default()
    }
}

impl Hub {
    /// Load the registry, geofences, open assignments and alarms, and the last fixes; start the
    /// flush, tick, history and retention tasks. `now` gives the time in ms (a test clock in
    /// tests).
    pub async fn start(
        db: Db,
        cfg: HubConfig,
        now: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Arc<Hub>, HubError> {
        let (btx, _) = broadcast::channel(cfg.broadcast_capacity);
        let (utx, _) = broadcast::channel(1024);
        let (htx, hrx) = mpsc::channel(cfg.history_queue);
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                core: Core::new(cfg.core.clone()),
                latest: Vec::new(),
                pending: HashMap::new(),
                events: Vec::new(),
                officer_by_account: HashMap::new(),
                device_units: HashMap::new(),
                orgs: HashMap::new(),
            }),
            db,
            cfg,
            now,
            batches: btx,
            urgent: utx,
            history: Mutex::new(Some(htx)),
            writer: Mutex::new(None),
            registry: tokio::sync::Mutex::new(()),
            stats: HubStats::default(),
        });
        hub.refresh_registry().await?;
        hub.reload_fences().await?;
        hub.restore().await?;
        let writer = tokio::spawn(history_writer(Arc::downgrade(&hub), hub.db.clone(), hrx));
        *hub.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(writer);
        tokio::spawn(flusher(Arc::downgrade(&hub)));
        tokio::spawn(retention(Arc::downgrade(&hub)));
        Ok(hub)
    }

    /// Stop accepting history and wait until everything queued is written.
    pub async fn close(&self) {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(w) = w {
            let _ = w.await;
        }
    }

    /// The database the hub reads its registry from.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    fn now_ms(&self) -> i64 {
        (self.now)()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-read vehicles, officers and recorders (after registry changes): new units appear,
    /// removed ones disappear, renamed or re-bound ones update.
    pub async fn refresh_registry(&self) -> Result<(), HubError> {
        let _serial = self.registry.lock().await;
        let vehicles = self.db.vehicles().list(&Scope::All).await?;
        let officers = self.db.officers().all_active().await?;
        let mut infos = Vec::with_capacity(vehicles.len() + officers.len());
        for v in vehicles.into_iter().filter(|v| v.status == "active") {
            infos.push(UnitInfo {
                id: v.id,
                kind: UnitKind::Vehicle,
                name: v.plate,
                org_unit_id: v.org_unit_id,
                terminal: v.terminal_phone,
                device: None,
            });
        }
        let recorders = self.db.recorders().list(&Scope::All).await?;
        let active_officers: HashSet<&str> = officers.iter().map(|o| o.id.as_str()).collect();
        // A recorder bound to an active officer reports for the officer; any other active
        // recorder is a unit of its own, named by its device id.
        let mut device_units = HashMap::new();
        let mut officer_device = HashMap::new();
        for r in recorders.iter().filter(|r| r.status == "active") {
            match r
                .officer_id
                .as_deref()
                .filter(|o| active_officers.contains(o))
            {
                Some(o) => {
                    device_units.insert(r.device_id.clone(), o.to_string());
                    officer_device.insert(o.to_string(), r.device_id.clone());
                }
                None => {
                    device_units.insert(r.device_id.clone(), r.device_id.clone());
                    infos.push(UnitInfo {
                        id: r.device_id.clone(),
                        kind: UnitKind::Recorder,
                        name: r.name.clone(),
                        org_unit_id: r.org_unit_id.clone(),
                        terminal: None,
                        device: Some(r.device_id.clone()),
                    });
                }
            }
        }
        let mut by_account = HashMap::new();
        for o in officers {
            if let Some(a) = &o.account_id {
                by_account.insert(a.clone(), o.id.clone());
            }
            infos.push(UnitInfo {
                device: officer_device.get(&o.id).cloned(),
                id: o.id,
                kind: UnitKind::Officer,
                name: o.name,
                org_unit_id: o.org_unit_id,
                terminal: None,
            });
        }
        let mut st = self.lock();
        let keep: HashSet<String> = infos.iter().map(|i| i.id.clone()).collect();
        let gone: Vec<String> = st
            .core
            .units()
            .map(|(_, u)| u.info.id.clone())
            .filter(|id| !keep.contains(id))
            .collect();
        for id in gone {
            Self::remove_locked(&mut st, &id);
        }
        for info in infos {
            let changed = st.core.unit_by_id(&info.id).is_none_or(|u| *u.info != info);
            if changed {
                let i = st.core.upsert_unit(info);
                self.changed(&mut st, i);
            }
        }
        st.officer_by_account = by_account;
        st.device_units = device_units;
        Ok(())
    }

    fn remove_locked(st: &mut State, id: &str) {
        if let Some(i) = st.core.index_of(id) {
            let org = st
                .core
                .unit(i)
                .map(|u| u.info.org_unit_id.clone())
                .unwrap_or_default();
            let org = st.org_index(&org);
            let f = st
                .core
                .unit(i)
                .map(|u| Arc::new(Frame::new(i, org, u, true)));
            st.core.remove_unit(id);
            if let Some(f) = f {
                st.pending.insert(i, f);
                if let Some(slot) = st.latest.get_mut(i as usize) {
                    *slot = None;
                }
            }
        }
    }

    /// Re-read one vehicle (a terminal registered by itself, a vehicle created, changed or
    /// deleted): its unit appears, updates or disappears at once, without re-reading the whole
    /// registry.
    pub async fn refresh_vehicle(&self, id: &str) -> Result<(), HubError> {
        let _serial = self.registry.lock().await;
        let v = match self.db.vehicles().get(&Scope::All, id).await {
            Ok(v) => Some(v),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut st = self.lock();
        match v.filter(|v| v.status == "active") {
            Some(v) => {
                let info = UnitInfo {
                    id: v.id,
                    kind: UnitKind::Vehicle,
                    name: v.plate,
                    org_unit_id: v.org_unit_id,
                    terminal: v.terminal_phone,
                    device: None,
                };
                if st.core.unit_by_id(&info.id).is_none_or(|u| *u.info != info) {
                    let i = st.core.upsert_unit(info);
                    self.changed(&mut st, i);
                }
            }
            None => Self::remove_locked(&mut st, id),
        }
        Ok(())
    }

    /// Re-read the geofences.
    pub async fn reload_fences(&self) -> Result<(), HubError> {
        let rows = self.db.geofences().list().await?;
        let mut defs = Vec::with_capacity(rows.len());
        for g in rows {
            let shape = match (&g.geometry, g.center_lat, g.center_lon, g.radius_m) {
                (Some(geo), _, _, _) => Shape::from_geojson(geo),
                (None, Some(la), Some(lo), Some(r)) => Shape::circle(la, lo, r),
                _ => continue,
            };
            match shape {
                Ok(shape) => defs.push(FenceDef {
                    id: g.id,
                    name: g.name,
                    kind: g.kind,
                    org_unit_id: g.org_unit_id,
                    shape,
                }),
                Err(e) => {
                    tracing::warn!(geofence = %g.id, error = %e, "skipping a stored geofence")
                }
            }
        }
        self.lock().core.set_fences(defs);
        Ok(())
    }

    async fn restore(&self) -> Result<(), HubError> {
        let ids: Vec<String> = self
            .lock()
            .core
            .units()
            .map(|(_, u)| u.info.id.clone())
            .collect();
        let last = self.db.positions().latest(&ids).await?;
        let open = self.db.assignments().open().await?;
        let mut targets = Vec::new();
        for a in open {
            let t = self.target_of(&a).await?;
            targets.push((a, t));
        }
        let alarms = self.db.sos().list(true, None, 10_000).await?;
        let mut st = self.lock();
        let mut sink = Vec::new();
        for p in last {
            st.core.restore_position(p.position);
        }
        for (a, t) in targets {
            if st.core.assign(&a.unit_id, t, 0, &mut sink).is_ok() && a.status == "on_scene" {
                let _ = st.core.arrive(&a.unit_id, 0, &mut sink);
            }
        }
        for s in alarms.iter().filter(|s| s.status != "handled") {
            let _ = st.core.set_sos(&s.unit_id, true, &mut sink);
        }
        let n = st.core.units().count();
        st.latest.clear();
        let all: Vec<u32> = st.core.units().map(|(i, _)| i).collect();
        for i in all {
            self.changed(&mut st, i);
        }
        tracing::info!(units = n, "dispatch hub loaded");
        Ok(())
    }

    async fn target_of(&self, a: &Assignment) -> Result<Target, HubError> {
        let fence = match &a.enterprise_id {
            Some(e) => self.db.geofences().of_enterprise(e).await?,
            None => None,
        };
        let shape = fence
            .and_then(
                |g| match (&g.geometry, g.center_lat, g.center_lon, g.radius_m) {
                    (Some(geo), ..) => Shape::from_geojson(geo).ok(),
                    (None, Some(la), Some(lo), Some(r)) => Shape::circle(la, lo, r).ok(),
                    _ => None,
                },
            )
            .map_or_else(|| Shape::circle(a.target_lat, a.target_lon, a.radius_m), Ok)
            .map_err(|e| HubError::Invalid(e.to_string()))?;
        Ok(Target {
            enterprise_id: a.enterprise_id.clone(),
            name: a.target_name.clone(),
            lat: a.target_lat,
            lon: a.target_lon,
            shape,
        })
    }

    fn changed(&self, st: &mut State, i: u32) {
        let Some(org) = st.core.unit(i).map(|u| u.info.org_unit_id.clone()) else {
            return;
        };
        let org = st.org_index(&org);
        let Some(u) = st.core.unit(i) else { return };
        let f = Arc::new(Frame::new(i, org, u, false));
        if st.latest.len() <= i as usize {
            st.latest.resize(i as usize + 1, None);
        }
        st.latest[i as usize] = Some(f.clone());
        st.pending.insert(i, f);
    }

    fn event_out(&self, e: &Event) -> Arc<EventOut> {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        v["time"] = rfc3339(e.time_ms).into();
        Arc::new(EventOut {
            org_unit_id: e.org_unit_id.clone(),
            urgent: false,
            json: v.to_string(),
            kind: e.kind,
        })
    }

    fn handle(&self, st: &mut State, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Changed(i) => self.changed(st, i),
                Output::Event(e) => {
                    let ev = self.event_out(&e);
                    st.events.push(ev);
                }
                Output::History(t) => {
                    let tx = self
                        .history
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let sent = tx.is_some_and(|tx| tx.try_send(t).is_ok());
                    if !sent {
                        self.stats.history_dropped.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("shouhu_positions_history_dropped_total").increment(1);
                    }
                }
                Output::Arrived { unit_id, time_ms } => {
                    let db = self.db.clone();
                    let audit = AuditEntry::new(&system_actor(), "dispatch.arrive", self.now_ms())
                        .details(serde_json::json!({"by": "geofence", "fix_time_ms": time_ms}));
                    tokio::spawn(async move {
                        if let Err(e) = db.assignments().arrive(&unit_id, &audit).await {
                            tracing::error!(unit = %unit_id, error = %e, "recording an arrival failed");
                        }
                    });
                }
                Output::Sos {
                    unit,
                    time_ms,
                    at,
                    source,
                } => {
                    let Some(u) = st.core.unit(unit) else {
                        continue;
                    };
                    let alarm = SosAlarm {
                        id: shouhu_storage::new_id(),
                        unit_id: u.info.id.clone(),
                        unit_kind: kind_str(u.info.kind).into(),
                        unit_name: u.info.name.clone(),
                        org_unit_id: u.info.org_unit_id.clone(),
                        source: source_str(source).into(),
                        raised_at_ms: time_ms,
                        lat: at.map(|a| a.0),
                        lon: at.map(|a| a.1),
                        status: "raised".into(),
                        acknowledged_by: None,
                        acknowledged_at_ms: None,
                        handled_by: None,
                        handled_at_ms: None,
                        handle_note: None,
                        closed_by: None,
                        closed_at_ms: None,
                        close_note: None,
                    };
                    let json = serde_json::json!({
                        "kind": "sos", "id": alarm.id, "unit_id": alarm.unit_id, "unit_name": alarm.unit_name,
                        "time": rfc3339(time_ms), "lat": alarm.lat, "lon": alarm.lon, "source": alarm.source,
                    });
                    let ev = Arc::new(EventOut {
                        org_unit_id: alarm.org_unit_id.clone(),
                        urgent: true,
                        json: json.to_string(),
                        kind: EventKind::Sos,
                    });
                    // At once, not at the next batch.
                    let _ = self.urgent.send(ev);
                    metrics::counter!("shouhu_sos_raised_total").increment(1);
                    tracing::warn!(unit = %alarm.unit_id, name = %alarm.unit_name, "SOS raised");
                    let db = self.db.clone();
                    let actor = Actor {
                        username: Some(format!("device:{}", alarm.unit_id)),
                        ..Default::default()
                    };
                    let audit = AuditEntry::new(&actor, "sos.raise", self.now_ms());
                    tokio::spawn(async move {
                        if let Err(e) = db.sos().raise(&alarm, &audit).await {
                            tracing::error!(unit = %alarm.unit_id, error = %e, "storing an SOS alarm failed");
                        }
                    });
                }
            }
        }
    }

    fn apply(&self, ev: UnitEvent) {
        if matches!(ev, UnitEvent::Position { .. }) {
            self.stats.positions_in.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shouhu_positions_received_total").increment(1);
        }
        let now = self.now_ms();
        let mut outs = Vec::new();
        let mut st = self.lock();
        if st.core.apply(ev, now, &mut outs).is_err() {
            self.stats.unknown_unit.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.handle(&mut st, outs);
    }

    /// Broadcast what changed since the last flush (the flusher task calls this; tests may too).
    pub fn flush(&self) {
        let batch = {
            let mut st = self.lock();
            if st.pending.is_empty() && st.events.is_empty() {
                return;
            }
            Batch {
                frames: st.pending.drain().map(|(_, f)| f).collect(),
                events: std::mem::take(&mut st.events),
            }
        };
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let _ = self.batches.send(Arc::new(batch));
    }

    /// Re-evaluate link states now.
    pub fn tick(&self) {
        let now = self.now_ms();
        let mut outs = Vec::new();
        let mut st = self.lock();
        st.core.tick(now, &mut outs);
        self.handle(&mut st, outs);
    }

    /// Receive broadcast batches.
    pub fn batches(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// A client filter whose org check is a table lookup by interned org index.
    pub fn filter(
        &self,
        sub: &Subscription,
        orgs: Option<Arc<HashSet<String>>>,
        scope: Option<Arc<HashSet<String>>>,
    ) -> ClientFilter {
        let mut f = ClientFilter::new(sub, orgs, scope);
        if let Some(names) = &f.orgs {
            let st = self.lock();
            let mut bits = vec![false; st.orgs.len()];
            for (name, &i) in &st.orgs {
                bits[i as usize] = names.contains(name);
            }
            f.org_bits = Arc::new(bits);
        }
        f
    }

    /// Receive urgent events (SOS), as soon as they are raised.
    pub fn urgent(&self) -> broadcast::Receiver<Arc<EventOut>> {
        self.urgent.subscribe()
    }

    /// The current frame of every unit.
    pub fn frames(&self) -> Vec<Arc<Frame>> {
        self.lock().latest.iter().flatten().cloned().collect()
    }

    /// The current view of one unit.
    pub fn unit(&self, id: &str, crs: Crs) -> Option<(UnitView, String)> {
        let st = self.lock();
        st.core
            .unit_by_id(id)
            .map(|u| (UnitView::of(u, crs), u.info.org_unit_id.clone()))
    }

    /// The officer unit an account reports for (phone app).
    pub fn officer_of_account(&self, account_id: &str) -> Option<String> {
        self.lock().officer_by_account.get(account_id).cloned()
    }

    /// The unit a GB/T 28181 recorder reports for: its officer when bound, else itself. Device
    /// protocols resolve ids with this before publishing positions, alarms and keepalives.
    pub fn unit_for_device(&self, device_id: &str) -> Option<String> {
        self.lock().device_units.get(device_id).cloned()
    }

    /// Feed positions from the phone app (already validated).
    pub fn app_positions(&self, positions: Vec<Position>) {
        for p in positions {
            self.apply(UnitEvent::Position {
                position: p,
                live: true,
            });
        }
    }

    /// The `k` nearest available units of `kinds` whose org unit passes `org_ok`, with metres.
    pub fn nearest(
        &self,
        lat: f64,
        lon: f64,
        k: usize,
        kinds: Option<&[UnitKind]>,
        org_ok: &dyn Fn(&str) -> bool,
        crs: Crs,
    ) -> Vec<(UnitView, f64)> {
        let mut st = self.lock();
        let found = st.core.nearest(lat, lon, k, |u| {
            u.available()
                && kinds.is_none_or(|ks| ks.contains(&u.info.kind))
                && org_ok(&u.info.org_unit_id)
        });
        found
            .into_iter()
            .filter_map(|(i, d)| st.core.unit(i).map(|u| (UnitView::of(u, crs), d)))
            .collect()
    }

    /// Send a unit to an enterprise (its drawn fence, or a circle of `enterprise_radius_m`) or to
    /// a point.
    pub async fn assign(
        &self,
        unit_id: &str,
        enterprise_id: Option<&str>,
        point: Option<(f64, f64, String)>,
        audit: &AuditEntry,
    ) -> Result<(), HubError> {
        if self.lock().core.index_of(unit_id).is_none() {
            return Err(HubError::UnknownUnit);
        }
        let (name, lat, lon) = match (enterprise_id, point) {
            (Some(e), _) => {
                let ent = self.db.enterprises().get(&Scope::All, e).await?;
                let (Some(lat), Some(lon)) = (ent.lat, ent.lon) else {
                    return Err(HubError::Invalid(format!(
                        "enterprise {} has no location on the map",
                        ent.name
                    )));
                };
                (ent.name, lat, lon)
            }
            (None, Some((lat, lon, name))) => (name, lat, lon),
            (None, None) => {
                return Err(HubError::Invalid(
                    "give enterprise_id or lat, lon and name".into(),
                ))
            }
        };
        let a = Assignment {
            id: shouhu_storage::new_id(),
            unit_id: unit_id.to_string(),
            enterprise_id: enterprise_id.map(str::to_string),
            target_name: name,
            target_lat: lat,
            target_lon: lon,
            radius_m: self.cfg.enterprise_radius_m,
            status: "assigned".into(),
            assigned_by: audit.actor.username.clone().unwrap_or_default(),
            assigned_at_ms: audit.at_ms,
            arrived_at_ms: None,
            cleared_by: None,
            cleared_at_ms: None,
        };
        let target = self.target_of(&a).await?;
        self.db.assignments().assign(&a, audit).await?;
        let mut outs = Vec::new();
        let mut st = self.lock();
        st.core
            .assign(unit_id, target, audit.at_ms, &mut outs)
            .map_err(|_| HubError::UnknownUnit)?;
        self.handle(&mut st, outs);
        Ok(())
    }

    /// Mark a unit arrived by hand. False when it had no open assignment or already arrived.
    pub async fn arrive(&self, unit_id: &str, audit: &AuditEntry) -> Result<bool, HubError> {
        if self.lock().core.index_of(unit_id).is_none() {
            return Err(HubError::UnknownUnit);
        }
        if !self.db.assignments().arrive(unit_id, audit).await? {
            return Ok(false);
        }
        let mut outs = Vec::new();
        let mut st = self.lock();
        let ok = st
            .core
            .arrive(unit_id, audit.at_ms, &mut outs)
            .map_err(|_| HubError::UnknownUnit)?;
        self.handle(&mut st, outs);
        Ok(ok)
    }

    /// Release a unit. False when it had no open assignment.
    pub async fn clear(&self, unit_id: &str, audit: &AuditEntry) -> Result<bool, HubError> {
        if self.lock().core.index_of(unit_id).is_none() {
            return Err(HubError::UnknownUnit);
        }
        let by = audit.actor.username.clone().unwrap_or_default();
        let stored = self.db.assignments().clear(unit_id, &by, audit).await?;
        let mut outs = Vec::new();
        let mut st = self.lock();
        let live = st
            .core
            .clear(unit_id, audit.at_ms, &mut outs)
            .map_err(|_| HubError::UnknownUnit)?;
        self.handle(&mut st, outs);
        Ok(stored || live)
    }

    /// Start or end a call with a unit (used by the call service).
    pub fn set_in_call(&self, unit_id: &str, in_call: bool) -> Result<(), HubError> {
        let now = self.now_ms();
        let mut outs = Vec::new();
        let mut st = self.lock();
        st.core
            .set_in_call(unit_id, in_call, now, &mut outs)
            .map_err(|_| HubError::UnknownUnit)?;
        self.handle(&mut st, outs);
        Ok(())
    }

    /// Apply an SOS workflow step; the unit's SOS mark clears once handled or closed.
    pub async fn sos_step(
        &self,
        id: &str,
        step: SosStep,
        note: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<SosAlarm, HubError> {
        let by = audit.actor.username.clone().unwrap_or_default();
        let a = self.db.sos().step(id, step, &by, note, audit).await?;
        let still_open = self
            .db
            .sos()
            .list(true, None, 10_000)
            .await?
            .iter()
            .any(|o| o.unit_id == a.unit_id && o.status != "handled");
        let json = serde_json::json!({
            "kind": "sos_update", "id": a.id, "unit_id": a.unit_id, "unit_name": a.unit_name,
            "status": a.status, "by": by, "time": rfc3339(audit.at_ms), "note": note,
        });
        let mut outs = Vec::new();
        let mut st = self.lock();
        let _ = st.core.set_sos(&a.unit_id, still_open, &mut outs);
        self.handle(&mut st, outs);
        st.events.push(Arc::new(EventOut {
            org_unit_id: a.org_unit_id.clone(),
            urgent: false,
            json: json.to_string(),
            kind: EventKind::SosUpdate,
        }));
        Ok(a)
    }

    /// Every unit passing `keep`, in `crs`, by name.
    pub fn list(&self, crs: Crs, keep: &dyn Fn(&UnitState) -> bool) -> Vec<UnitView> {
        let st = self.lock();
        let mut v: Vec<UnitView> = st
            .core
            .units()
            .filter(|(_, u)| keep(u))
            .map(|(_, u)| UnitView::of(u, crs))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Fixes waiting in the history queue.
    pub fn history_backlog(&self) -> usize {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
}

fn kind_str(k: UnitKind) -> &'static str {
    match k {
        UnitKind::Vehicle => "vehicle",
        UnitKind::Officer => "officer",
        UnitKind::Recorder => "recorder",
    }
}

impl UnitEventSink for Hub {
    fn publish(&self, event: UnitEvent) {
        self.apply(event);
    }
}

async fn flusher(hub: Weak<Hub>) {
    let Some(h) = hub.upgrade() else { return };
    let mut flush = tokio::time::interval(h.cfg.flush_interval);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    drop(h);
    let mut ticks = 0u64;
    loop {
        flush.tick().await;
        let Some(h) = hub.upgrade() else { return };
        ticks += 1;
        if ticks % (1000 / h.cfg.flush_interval.as_millis().max(1) as u64).max(1) == 0 {
            h.tick();
        }
        h.flush();
    }
}

/// Most fixes per history write.
const HISTORY_BATCH: usize = 50_000;

async fn history_writer(hub: Weak<Hub>, db: Db, mut rx: mpsc::Receiver<TrackPoint>) {
    let flush = hub
        .upgrade()
        .map_or(Duration::from_secs(2), |h| h.cfg.history_flush);
    let mut buf = Vec::with_capacity(HISTORY_BATCH);
    let mut closed = false;
    loop {
        if closed {
            return;
        }
        if rx.recv_many(&mut buf, HISTORY_BATCH).await == 0 {
            return;
        }
        // Collect for `history_flush`: every unit reports several times per transaction, so
        // each index page it dirties carries several new rows instead of one.
        let deadline = tokio::time::Instant::now() + flush;
        while buf.len() < HISTORY_BATCH {
            let room = HISTORY_BATCH - buf.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, room)).await {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let mut attempt = 0;
        loop {
            match db.positions().insert_batch(&buf).await {
                Ok(_) => {
                    if let Some(h) = hub.upgrade() {
                        h.stats
                            .history_written
                            .fetch_add(buf.len() as u64, Ordering::Relaxed);
                        h.stats.history_batches.fetch_add(1, Ordering::Relaxed);
                    }
                    metrics::counter!("shouhu_positions_history_written_total")
                        .increment(buf.len() as u64);
                    break;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, rows = buf.len(), attempt, "writing position history failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = buf.len(), "position history lost after retries");
                    break;
                }
            }
        }
        buf.clear();
    }
}

async fn retention(hub: Weak<Hub>) {
    // First run a minute after start, then daily.
    tokio::time::sleep(Duration::from_secs(60)).await;
    loop {
        let Some(h) = hub.upgrade() else { return };
        if let Err(e) = h.apply_retention().await {
            tracing::error!(error = %e, "track retention failed");
        }
        drop(h);
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
}

impl Hub {
    /// Delete position history older than the retention period. Returns rows deleted.
    pub async fn apply_retention(&self) -> Result<u64, HubError> {
        let cutoff = self.now_ms() - self.cfg.track_retention_days * 86_400_000;
        let ids = self.db.positions().unit_ids().await?;
        let n = self.db.positions().delete_older_than(&ids, cutoff).await?;
        if n > 0 {
            tracing::info!(rows = n, "deleted position history past retention");
        }
        Ok(n)
    }
}

/// Bit of a kind in a mask.
fn kind_bit(k: UnitKind) -> u8 {
    match k {
        UnitKind::Vehicle => 1,
        UnitKind::Officer => 2,
        UnitKind::Recorder => 4,
    }
}

fn state_bit(s: DispatchState) -> u8 {
    match s {
        DispatchState::Idle => 1,
        DispatchState::Assigned => 2,
        DispatchState::OnScene => 4,
        DispatchState::InCall => 8,
    }
}

/// One client's filter, resolved: org units are the account's scope intersected with the
/// subscription's subtree (`None` = all).
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    bbox: Option<[f64; 4]>,
    kinds: Option<u8>,
    states: Option<u8>,
    orgs: Option<Arc<HashSet<String>>>,
    /// `orgs` by interned index (filled by [`Hub::filter`]; beyond it, names are looked up).
    org_bits: Arc<Vec<bool>>,
    scope: Option<Arc<HashSet<String>>>,
    /// Coordinate system of what is sent.
    pub crs: Crs,
}

impl ClientFilter {
    /// Build from a subscription; `orgs` are the org units the client may see and asked for.
    pub fn new(
        sub: &Subscription,
        orgs: Option<Arc<HashSet<String>>>,
        scope: Option<Arc<HashSet<String>>>,
    ) -> Self {
        let crs = sub.crs.unwrap_or_default();
        let bbox = sub.bbox.map(|b| {
            // Convert the corners to WGS-84 (the shift is smooth: corners bound the box).
            let (s, w) = crs.to_wgs84(b[1], b[0]);
            let (n, e) = crs.to_wgs84(b[3], b[2]);
            [w, s, e, n]
        });
        ClientFilter {
            bbox,
            kinds: sub
                .kinds
                .as_ref()
                .map(|ks| ks.iter().fold(0, |m, k| m | kind_bit(*k))),
            states: sub
                .states
                .as_ref()
                .map(|ss| ss.iter().fold(0, |m, s| m | state_bit(*s))),
            orgs,
            org_bits: Arc::new(Vec::new()),
            scope,
            crs,
        }
    }

    /// Whether a frame matches.
    pub fn matches(&self, f: &Frame) -> bool {
        if f.removed {
            return false;
        }
        if let Some(b) = self.bbox {
            match f.wgs {
                Some((lat, lon)) if lon >= b[0] && lon <= b[2] && lat >= b[1] && lat <= b[3] => {}
                _ => return false,
            }
        }
        if self.kinds.is_some_and(|m| m & f.kind_bit == 0) {
            return false;
        }
        if self.states.is_some_and(|m| m & f.state_bit == 0) {
            return false;
        }
        match &self.orgs {
            None => true,
            Some(names) => match self.org_bits.get(f.org as usize) {
                Some(&b) => b,
                None => names.contains(&f.info.org_unit_id),
            },
        }
    }

    /// Whether an event may be sent (scope only: an SOS outside the viewport still goes out).
    pub fn event_ok(&self, e: &EventOut) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|o| o.contains(&e.org_unit_id))
    }
}

/// Most units in one message: a city-wide snapshot or tick is split into messages of this size
/// (≈ 80 KB), which bounds the write buffer each connection keeps — a WebSocket's buffer stays
/// as large as the largest message it ever sent: 2,000 units a message cost 60 MB over 200
/// clients in the positions benchmark.
pub const MAX_UNITS_PER_MESSAGE: usize = 250;

/// Most events queued for one client; beyond it the oldest non-urgent ones are dropped.
pub const MAX_CLIENT_EVENTS: usize = 1_000;

/// Hashes a unit's slot (a `u32`) by one multiplication (Fibonacci hashing): the slots are
/// ours, not an attacker's, and the map is on the delivery path of every position.
#[derive(Debug, Default, Clone, Copy)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SlotMap<V> = std::collections::HashMap<u32, V, std::hash::BuildHasherDefault<SlotHasher>>;

/// One subscriber's state: the latest matching frame per unit waiting to be sent, and its
/// events. Keyed by the unit's slot in the core, so it holds at most one frame per unit
/// whatever the update rate — and only for units waiting (a district's client does not hold a
/// slot for every unit of the city: 200 clients × 10,000 slots were 21 MB).
#[derive(Debug, Default)]
pub struct ClientSession {
    filter: ClientFilter,
    pending: SlotMap<Arc<Frame>>,
    dirty: Vec<u32>,
    known: Vec<bool>,
    events: Vec<Arc<EventOut>>,
}

impl ClientSession {
    /// A session with `filter`.
    pub fn new(filter: ClientFilter) -> Self {
        Self {
            filter,
            ..Default::default()
        }
    }

    fn is_known(&self, i: u32) -> bool {
        self.known.get(i as usize).copied().unwrap_or(false)
    }

    fn set_known(&mut self, i: u32, v: bool) {
        let i = i as usize;
        if self.known.len() <= i {
            if !v {
                return;
            }
            self.known.resize(i + 1, false);
        }
        self.known[i] = v;
    }

    /// Replace the filter and build the snapshot message from `frames`.
    pub fn snapshot(&mut self, filter: ClientFilter, frames: &[Arc<Frame>], now_ms: i64) -> String {
        self.filter = filter;
        self.dirty.clear();
        self.pending.clear();
        self.known.clear();
        let crs = self.filter.crs;
        let matching: Vec<&Arc<Frame>> = frames.iter().filter(|f| self.filter.matches(f)).collect();
        let (now, rest) = matching.split_at(matching.len().min(MAX_UNITS_PER_MESSAGE));
        let size: usize = now.iter().map(|f| f.json(crs).len() + 1).sum();
        let mut s = String::with_capacity(120 + size);
        s.push_str(r#"{"type":"snapshot","server_time":""#);
        s.push_str(&rfc3339(now_ms));
        s.push_str(r#"","crs":""#);
        s.push_str(crs_name(crs));
        s.push_str(r#"","complete":"#);
        s.push_str(if rest.is_empty() { "true" } else { "false" });
        s.push_str(r#","units":["#);
        for (k, f) in now.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            s.push_str(f.json(crs));
        }
        s.push_str("]}");
        for f in now {
            self.set_known(f.idx, true);
        }
        // The rest follow as `units` messages (see `take_units`).
        for f in rest {
            self.offer(f);
        }
        s
    }

    /// Take in a broadcast batch. Returns true when it carried an urgent event for this client.
    pub fn on_batch(&mut self, b: &Batch) -> bool {
        for f in &b.frames {
            self.offer(f);
        }
        let mut urgent = false;
        for e in &b.events {
            if self.filter.event_ok(e) {
                urgent |= e.urgent;
                self.events.push(e.clone());
            }
        }
        if self.events.len() > MAX_CLIENT_EVENTS {
            let excess = self.events.len() - MAX_CLIENT_EVENTS;
            let mut dropped = 0;
            self.events.retain(|e| {
                if dropped < excess && !e.urgent {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
        urgent
    }

    fn offer(&mut self, f: &Arc<Frame>) {
        if !(self.filter.matches(f) || self.is_known(f.idx)) {
            return;
        }
        if self.pending.insert(f.idx, f.clone()).is_none() {
            self.dirty.push(f.idx);
        }
    }

    /// An urgent event for this client, as an `events` message (None when out of scope).
    pub fn urgent_message(&self, e: &EventOut) -> Option<String> {
        self.filter
            .event_ok(e)
            .then(|| format!(r#"{{"type":"events","events":[{}]}}"#, e.json))
    }

    /// After falling behind the broadcast: take the current frame of every unit.
    pub fn resync(&mut self, frames: &[Arc<Frame>]) {
        let mut present = vec![false; self.known.len()];
        for f in frames {
            if let Some(p) = present.get_mut(f.idx as usize) {
                *p = true;
            }
            self.offer(f);
        }
        // Units removed while we were behind.
        for (k, p) in self.known.iter_mut().zip(present) {
            *k &= p;
        }
    }

    /// Units waiting to be sent.
    pub fn pending_len(&self) -> usize {
        self.dirty.len()
    }

    /// The next `units` message of what changed since the last one (at most
    /// [`MAX_UNITS_PER_MESSAGE`] units; call again until `None`).
    pub fn take_units(&mut self) -> Option<String> {
        if self.dirty.is_empty() {
            return None;
        }
        let crs = self.filter.crs;
        let mut send: Vec<Arc<Frame>> = Vec::with_capacity(self.dirty.len());
        let mut gone: Vec<Arc<Frame>> = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        let mut taken = 0;
        for &i in &dirty {
            if send.len() >= MAX_UNITS_PER_MESSAGE {
                break;
            }
            taken += 1;
            let Some(f) = self.pending.remove(&i) else {
                continue;
            };
            if self.filter.matches(&f) {
                self.set_known(i, true);
                send.push(f);
            } else if self.is_known(i) {
                self.set_known(i, false);
                gone.push(f);
            }
        }
        self.dirty = dirty;
        self.dirty.drain(..taken);
        if send.is_empty() && gone.is_empty() {
            return None;
        }
        let size: usize = send.iter().map(|f| f.json(crs).len() + 1).sum::<usize>()
            + gone.iter().map(|f| f.info.id.len() + 3).sum::<usize>();
        let mut s = String::with_capacity(48 + size);
        s.push_str(r#"{"type":"units","units":["#);
        for (k, f) in send.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            s.push_str(f.json(crs));
        }
        s.push_str(r#"],"gone":["#);
        for (k, f) in gone.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(&f.info.id);
            s.push('"');
        }
        s.push_str("]}");
        Some(s)
    }

    /// The `events` message, if any are queued.
    pub fn take_events(&mut self) -> Option<String> {
        if self.events.is_empty() {
            return None;
        }
        let body: Vec<&str> = self.events.iter().map(|e| e.json.as_str()).collect();
        let s = format!(r#"{{"type":"events","events":[{}]}}"#, body.join(","));
        self.events.clear();
        Some(s)
    }
}

fn crs_name(c: Crs) -> &'static str {
    match c {
        Crs::Wgs84 => "wgs84",
        Crs::Gcj02 => "gcj02",
        Crs::Bd09 => "bd09",
    }
}

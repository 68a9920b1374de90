//! The dispatch core: live state of every unit, sans-IO and clock-free.
//!
//! The caller feeds it [`UnitEvent`]s and the current time, and calls [`Core::tick`] now and then;
//! it answers with [`Output`]s — which units changed, which events to push, what to write to
//! history — and never blocks, sleeps or reads a clock. [`crate::hub::Hub`] wraps it for tokio.
//!
//! * One unit per vehicle and per officer (whatever device reports for the officer), plus one per
//!   unbound recorder. Device ids map to units through [`UnitInfo::terminal`] / `device`, which
//!   the caller resolves before handing positions in.
//! * Live positions sit in an R-tree in local metres ([`LocalProjection`]); nearest-unit queries
//!   walk it and re-rank the candidates by great-circle distance.
//! * "Live" is the newest fix by device time: an older or equal fix goes to history only (flag
//!   `stale`); a fix implying more than `max_speed_kmh` from the live one is held back (flag
//!   `jump`) unless the next fix confirms it; a (0, 0) or invalid fix is never live (`zero_fix`).
//! * Link state per source: `online` while the source is heard within its timeout, `unknown`
//!   when it falls silent or was not heard since start, `offline` after a disconnect or
//!   `offline_after_ms` of silence.

use std::collections::HashMap;
use std::sync::Arc;

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use serde::Serialize;

use shouhu_storage::model::{Position, PositionSource, UnitEvent, UnitKind};
use shouhu_storage::positions::{flags, TrackPoint};

use crate::fence::Shape;
use crate::geodesy::{haversine_m, LocalProjection};

/// Tunables of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Latitude the metric projection is true at (the city's).
    pub ref_lat: f64,
    /// Silence after which a source no longer counts as online, ms, per source
    /// (JT/T 808, GB/T 28181, app).
    pub online_timeout_ms: [i64; 3],
    /// Silence after which a unit is offline, ms.
    pub offline_after_ms: i64,
    /// Faster than this between two fixes is an implausible jump, km/h.
    pub max_speed_kmh: f64,
    /// Moves shorter than this are never jumps (GNSS noise at standstill), metres.
    pub jump_min_m: f64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            ref_lat: 31.2,
            online_timeout_ms: [180_000, 180_000, 120_000],
            offline_after_ms: 600_000,
            max_speed_kmh: 250.0,
            jump_min_m: 500.0,
        }
    }
}

fn source_index(s: PositionSource) -> usize {
    match s {
        PositionSource::Jt808 => 0,
        PositionSource::Gb28181 => 1,
        PositionSource::App => 2,
    }
}

/// Who a unit is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitInfo {
    /// Unit id (vehicle id, officer id, or recorder device id when unbound).
    pub id: String,
    /// Kind.
    pub kind: UnitKind,
    /// Plate or person's name.
    pub name: String,
    /// Org unit (for data scope).
    pub org_unit_id: String,
    /// JT/T 808 terminal phone (normalised).
    pub terminal: Option<String>,
    /// GB/T 28181 device id.
    pub device: Option<String>,
}

pub use crate::states::{DispatchState, Link};

/// Where an assigned unit is sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// The enterprise, if the target is one.
    pub enterprise_id: Option<String>,
    /// Name shown.
    pub name: String,
    /// Latitude (WGS-84).
    pub lat: f64,
    /// Longitude (WGS-84).
    pub lon: f64,
    /// Arrival area: the enterprise's fence or a circle around the point.
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, Default)]
struct SourceLink {
    last_heard_ms: Option<i64>,
    disconnected: bool,
}

/// Live state of one unit.
#[derive(Debug, Clone)]
pub struct UnitState {
    /// Who.
    pub info: Arc<UnitInfo>,
    /// Newest usable fix.
    pub live: Option<Position>,
    /// Flags of the last fix received (see [`flags`]).
    pub last_flags: i64,
    /// Link state.
    pub link: Link,
    links: [SourceLink; 3],
    /// Target of the open assignment.
    pub target: Option<Target>,
    /// Arrived at the target.
    pub on_scene: bool,
    /// In a call.
    pub in_call: bool,
    /// An SOS alarm is open.
    pub sos: bool,
    last_alarm_bit: bool,
    fences: Vec<u32>,
    pending_jump: Option<Position>,
}

impl UnitState {
    fn new(info: Arc<UnitInfo>) -> Self {
        Self {
            info,
            live: None,
            last_flags: 0,
            link: Link::Unknown,
            links: [SourceLink::default(); 3],
            target: None,
            on_scene: false,
            in_call: false,
            sos: false,
            last_alarm_bit: false,
            fences: Vec::new(),
            pending_jump: None,
        }
    }

    /// The dispatch state.
    pub fn state(&self) -> DispatchState {
        if self.in_call {
            DispatchState::InCall
        } else if self.target.is_some() {
            if self.on_scene {
                DispatchState::OnScene
            } else {
                DispatchState::Assigned
            }
        } else {
            DispatchState::Idle
        }
    }

    /// Available for a new assignment: idle and not offline.
    pub fn available(&self) -> bool {
        self.state() == DispatchState::Idle && self.link != Link::Offline
    }

    /// Geofences the unit is in (indexes into [`Core::fences`]).
    pub fn fences(&self) -> &[u32] {
        &self.fences
    }
}

/// A geofence as the core uses it.
#[derive(Debug, Clone)]
pub struct FenceDef {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `district`, `enterprise`, `custom`.
    pub kind: String,
    /// Owning org unit.
    pub org_unit_id: String,
    /// Shape.
    pub shape: Shape,
}

/// Kind of a pushed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// SOS raised.
    Sos,
    /// SOS workflow step.
    SosUpdate,
    /// Entered a geofence.
    GeofenceEnter,
    /// Left a geofence.
    GeofenceLeave,
    /// Came online.
    Online,
    /// Went offline.
    Offline,
    /// Dispatch state changed.
    State,
}

/// An event for subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Kind.
    pub kind: EventKind,
    /// Unit.
    pub unit_id: String,
    /// Unit name.
    pub unit_name: String,
    /// Unit's org unit (scope filter; not sent).
    #[serde(skip)]
    pub org_unit_id: String,
    /// When, ms since the epoch.
    #[serde(skip)]
    pub time_ms: i64,
    /// Geofence, for enter/leave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geofence_id: Option<String>,
    /// Geofence name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geofence_name: Option<String>,
    /// New dispatch state, for `state`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<DispatchState>,
}

/// What the core asks its caller to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// The unit at this index changed (position, link, state or flags): push it.
    Changed(u32),
    /// Push this event.
    Event(Event),
    /// Write this fix to history.
    History(TrackPoint),
    /// The unit entered its target's area: record the arrival.
    Arrived {
        /// Unit.
        unit_id: String,
        /// Device time of the fix, ms.
        time_ms: i64,
    },
    /// The unit raised an SOS: store the alarm, then push it.
    Sos {
        /// Unit index.
        unit: u32,
        /// Device time, ms.
        time_ms: i64,
        /// Where, if known.
        at: Option<(f64, f64)>,
        /// Which source raised it.
        source: PositionSource,
    },
}

type Entry = GeomWithData<[f64; 2], u32>;
type FenceEntry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// No such unit.
    #[error("unknown unit {0}")]
    UnknownUnit(String),
}

/// The live state of every unit.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    proj: LocalProjection,
    units: Vec<Option<UnitState>>,
    by_id: HashMap<String, u32>,
    free: Vec<u32>,
    tree: RTree<Entry>,
    /// Positions changed since the tree was built: it is rebuilt (bulk-loaded) at the next
    /// spatial query. Fixes arrive thousands of times a second, queries a few times a minute,
    /// so rebuilding on demand costs far less than moving every point in the tree.
    tree_dirty: bool,
    fences: Vec<FenceDef>,
    fence_tree: RTree<FenceEntry>,
}

fn usable(p: &Position) -> bool {
    p.lat.is_finite()
        && p.lon.is_finite()
        && (-90.0..=90.0).contains(&p.lat)
        && (-180.0..=180.0).contains(&p.lon)
        && !(p.lat.abs() < 1e-7 && p.lon.abs() < 1e-7)
}

impl Core {
    /// An empty core.
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            proj: LocalProjection::new(cfg.ref_lat),
            cfg,
            units: Vec::new(),
            by_id: HashMap::new(),
            free: Vec::new(),
            tree: RTree::new(),
            tree_dirty: false,
            fences: Vec::new(),
            fence_tree: RTree::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Add or update a unit's identity. Returns its index.
    pub fn upsert_unit(&mut self, info: UnitInfo) -> u32 {
        if let Some(&i) = self.by_id.get(&info.id) {
            if let Some(u) = self.units[i as usize].as_mut() {
                u.info = Arc::new(info);
            }
            return i;
        }
        let id = info.id.clone();
        let st = UnitState::new(Arc::new(info));
        let i = if let Some(i) = self.free.pop() {
            self.units[i as usize] = Some(st);
            i
        } else {
            self.units.push(Some(st));
            (self.units.len() - 1) as u32
        };
        self.by_id.insert(id, i);
        i
    }

    /// Remove a unit. Returns its index if it existed.
    pub fn remove_unit(&mut self, id: &str) -> Option<u32> {
        let i = self.by_id.remove(id)?;
        if let Some(u) = self.units[i as usize].take() {
            if u.live.is_some() {
                self.tree_dirty = true;
            }
        }
        self.free.push(i);
        Some(i)
    }

    /// Index of a unit.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// A unit by index.
    pub fn unit(&self, i: u32) -> Option<&UnitState> {
        self.units.get(i as usize).and_then(Option::as_ref)
    }

    /// A unit by id.
    pub fn unit_by_id(&self, id: &str) -> Option<&UnitState> {
        self.index_of(id).and_then(|i| self.unit(i))
    }

    /// Every unit with its index.
    pub fn units(&self) -> impl Iterator<Item = (u32, &UnitState)> {
        self.units
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.as_ref().map(|u| (i as u32, u)))
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The geofences.
    pub fn fences(&self) -> &[FenceDef] {
        &self.fences
    }

    /// Replace the geofences. Membership is recomputed silently (no enter/leave events for
    /// fences that were just loaded).
    pub fn set_fences(&mut self, fences: Vec<FenceDef>) {
        self.fence_tree = RTree::bulk_load(
            fences
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let b = f.shape.bbox();
                    FenceEntry::new(
                        Rectangle::from_corners([b[0], b[1]], [b[2], b[3]]),
                        i as u32,
                    )
                })
                .collect(),
        );
        self.fences = fences;
        for i in 0..self.units.len() {
            let inside = match self.units[i].as_ref().and_then(|u| u.live.as_ref()) {
                Some(p) => self.fences_at(p.lat, p.lon),
                None => Vec::new(),
            };
            if let Some(u) = self.units[i].as_mut() {
                u.fences = inside;
            }
        }
    }

    fn fences_at(&self, lat: f64, lon: f64) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .fence_tree
            .locate_all_at_point(&[lon, lat])
            .map(|e| e.data)
            .filter(|&i| self.fences[i as usize].shape.contains(lat, lon))
            .collect();
        v.sort_unstable();
        v
    }

    /// Feed one device event at `now_ms` (server receipt time).
    pub fn apply(
        &mut self,
        ev: UnitEvent,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        match ev {
            UnitEvent::Position { position, live } => self.position(position, live, now_ms, out),
            UnitEvent::Online { unit_id, source } => {
                let i = self.idx(&unit_id)?;
                self.heard(i, source, now_ms, out);
                Ok(())
            }
            UnitEvent::Offline { unit_id, source } => {
                let i = self.idx(&unit_id)?;
                if let Some(u) = self.units[i as usize].as_mut() {
                    u.links[source_index(source)].disconnected = true;
                }
                self.relink(i, now_ms, out);
                Ok(())
            }
            UnitEvent::Sos {
                unit_id,
                time_ms,
                source,
            } => {
                let i = self.idx(&unit_id)?;
                self.heard(i, source, now_ms, out);
                self.raise_sos(i, time_ms, source, out);
                Ok(())
            }
        }
    }

    fn idx(&self, id: &str) -> Result<u32, CoreError> {
        self.index_of(id)
            .ok_or_else(|| CoreError::UnknownUnit(id.to_string()))
    }

    fn heard(&mut self, i: u32, source: PositionSource, now_ms: i64, out: &mut Vec<Output>) {
        if let Some(u) = self.units[i as usize].as_mut() {
            let l = &mut u.links[source_index(source)];
            l.last_heard_ms = Some(l.last_heard_ms.map_or(now_ms, |t| t.max(now_ms)));
            l.disconnected = false;
        }
        self.relink(i, now_ms, out);
    }

    fn link_of(&self, u: &UnitState, now_ms: i64) -> Link {
        let mut heard = false;
        let mut best = Link::Offline;
        for (s, l) in u.links.iter().enumerate() {
            let Some(t) = l.last_heard_ms else { continue };
            heard = true;
            if l.disconnected {
                continue;
            }
            let age = now_ms - t;
            if age <= self.cfg.online_timeout_ms[s] {
                return Link::Online;
            }
            if age <= self.cfg.offline_after_ms {
                best = Link::Unknown;
            }
        }
        if heard {
            best
        } else {
            Link::Unknown
        }
    }

    fn relink(&mut self, i: u32, now_ms: i64, out: &mut Vec<Output>) {
        let Some(u) = self.units[i as usize].as_ref() else {
            return;
        };
        let new = self.link_of(u, now_ms);
        let old = u.link;
        if new == old {
            return;
        }
        let u = self.units[i as usize].as_mut().expect("checked above");
        u.link = new;
        out.push(Output::Changed(i));
        let kind = match new {
            Link::Online => Some(EventKind::Online),
            Link::Offline => Some(EventKind::Offline),
            Link::Unknown => None,
        };
        if let Some(kind) = kind {
            out.push(Output::Event(event(kind, u, now_ms)));
        }
    }

    fn raise_sos(&mut self, i: u32, time_ms: i64, source: PositionSource, out: &mut Vec<Output>) {
        let Some(u) = self.units[i as usize].as_mut() else {
            return;
        };
        if u.sos {
            return;
        }
        u.sos = true;
        let at = u.live.as_ref().map(|p| (p.lat, p.lon));
        out.push(Output::Changed(i));
        out.push(Output::Sos {
            unit: i,
            time_ms,
            at,
            source,
        });
    }

    fn position(
        &mut self,
        p: Position,
        live: bool,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let i = self.idx(&p.unit_id)?;
        self.heard(i, p.source, now_ms, out);
        let mut fl = 0;
        if !live {
            fl |= flags::BACKFILL;
        }
        let ok = usable(&p);
        if !ok {
            fl |= flags::ZERO_FIX;
        }
        let mut accept = false;
        if live && ok {
            let u = self.units[i as usize].as_ref().expect("index is live");
            match &u.live {
                Some(cur) if p.time_ms <= cur.time_ms => fl |= flags::STALE,
                Some(cur) => {
                    if self.is_jump(cur, &p) {
                        // A jump is accepted when the next fix confirms it (the device really
                        // is there: it was moved while off, or the old fix was the bad one).
                        let confirmed = u
                            .pending_jump
                            .as_ref()
                            .is_some_and(|pj| p.time_ms > pj.time_ms && !self.is_jump(pj, &p));
                        if confirmed {
                            accept = true;
                        } else {
                            fl |= flags::JUMP;
                        }
                    } else {
                        accept = true;
                    }
                }
                None => accept = true,
            }
        }
        let alarm_bit = p.alarm_flags & 1 != 0;
        let u = self.units[i as usize].as_mut().expect("index is live");
        let rising = alarm_bit && !u.last_alarm_bit && live;
        if live {
            u.last_alarm_bit = alarm_bit;
        }
        if fl & flags::JUMP != 0 {
            u.pending_jump = Some(p.clone());
        } else if accept {
            u.pending_jump = None;
        }
        if live {
            if u.last_flags != fl {
                out.push(Output::Changed(i));
            }
            u.last_flags = fl;
        }
        out.push(Output::History(TrackPoint {
            position: p.clone(),
            flags: fl,
            received_at_ms: now_ms,
        }));
        if accept {
            self.move_unit(i, p, now_ms, out);
        }
        if rising {
            let t = self
                .unit(i)
                .and_then(|u| u.live.as_ref().map(|l| l.time_ms))
                .unwrap_or(now_ms);
            self.raise_sos(i, t, PositionSource::Jt808, out);
        }
        Ok(())
    }

    fn is_jump(&self, a: &Position, b: &Position) -> bool {
        let d = haversine_m(a.lat, a.lon, b.lat, b.lon);
        if d <= self.cfg.jump_min_m {
            return false;
        }
        let hours = ((b.time_ms - a.time_ms).max(1) as f64) / 3_600_000.0;
        d / 1000.0 / hours > self.cfg.max_speed_kmh
    }

    fn move_unit(&mut self, i: u32, p: Position, now_ms: i64, out: &mut Vec<Output>) {
        self.tree_dirty = true;
        let inside = self.fences_at(p.lat, p.lon);
        let (lat, lon, t) = (p.lat, p.lon, p.time_ms);
        let u = self.units[i as usize].as_mut().expect("index is live");
        u.live = Some(p);
        out.push(Output::Changed(i));
        if inside != u.fences {
            for &f in u.fences.iter().filter(|f| !inside.contains(f)) {
                let fd = &self.fences[f as usize];
                let mut e = event(EventKind::GeofenceLeave, u, now_ms);
                e.geofence_id = Some(fd.id.clone());
                e.geofence_name = Some(fd.name.clone());
                out.push(Output::Event(e));
            }
            for &f in inside.iter().filter(|f| !u.fences.contains(f)) {
                let fd = &self.fences[f as usize];
                let mut e = event(EventKind::GeofenceEnter, u, now_ms);
                e.geofence_id = Some(fd.id.clone());
                e.geofence_name = Some(fd.name.clone());
                out.push(Output::Event(e));
            }
            u.fences = inside;
        }
        let arrived = !u.on_scene
            && u.target
                .as_ref()
                .is_some_and(|tg| tg.shape.contains(lat, lon));
        if arrived {
            u.on_scene = true;
            let mut e = event(EventKind::State, u, now_ms);
            e.state = Some(u.state());
            out.push(Output::Event(e));
            out.push(Output::Arrived {
                unit_id: u.info.id.clone(),
                time_ms: t,
            });
        }
    }

    /// Re-evaluate link states (call about once a second).
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        for i in 0..self.units.len() as u32 {
            self.relink(i, now_ms, out);
        }
    }

    /// Send a unit to a target. If it is already inside the target's area it is on scene at once.
    pub fn assign(
        &mut self,
        id: &str,
        target: Target,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let i = self.idx(id)?;
        let u = self.units[i as usize].as_mut().expect("index is live");
        let inside = u
            .live
            .as_ref()
            .is_some_and(|p| target.shape.contains(p.lat, p.lon));
        u.target = Some(target);
        u.on_scene = inside;
        self.state_changed(i, now_ms, out);
        if inside {
            out.push(Output::Arrived {
                unit_id: id.to_string(),
                time_ms: now_ms,
            });
        }
        Ok(())
    }

    /// Mark an assigned unit as arrived (by hand). Returns false if it had no target or was
    /// already on scene.
    pub fn arrive(
        &mut self,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<bool, CoreError> {
        let i = self.idx(id)?;
        let u = self.units[i as usize].as_mut().expect("index is live");
        if u.target.is_none() || u.on_scene {
            return Ok(false);
        }
        u.on_scene = true;
        self.state_changed(i, now_ms, out);
        Ok(true)
    }

    /// Release a unit from its assignment.
    pub fn clear(
        &mut self,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<bool, CoreError> {
        let i = self.idx(id)?;
        let u = self.units[i as usize].as_mut().expect("index is live");
        if u.target.is_none() {
            return Ok(false);
        }
        u.target = None;
        u.on_scene = false;
        self.state_changed(i, now_ms, out);
        Ok(true)
    }

    /// Start or end a call with the unit.
    pub fn set_in_call(
        &mut self,
        id: &str,
        in_call: bool,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let i = self.idx(id)?;
        let u = self.units[i as usize].as_mut().expect("index is live");
        if u.in_call != in_call {
            u.in_call = in_call;
            self.state_changed(i, now_ms, out);
        }
        Ok(())
    }

    /// Mark whether the unit has an open SOS (after the alarm is handled or closed, or when
    /// restoring open alarms at start).
    pub fn set_sos(
        &mut self,
        id: &str,
        open: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let i = self.idx(id)?;
        let u = self.units[i as usize].as_mut().expect("index is live");
        if u.sos != open {
            u.sos = open;
            out.push(Output::Changed(i));
        }
        Ok(())
    }

    /// Restore a live fix (from history, at start) without events or history output.
    pub fn restore_position(&mut self, p: Position) {
        let Some(i) = self.index_of(&p.unit_id) else {
            return;
        };
        if !usable(&p) {
            return;
        }
        let mut sink = Vec::new();
        self.move_unit(i, p, 0, &mut sink);
        let inside = self.unit(i).map(|u| u.fences.clone()).unwrap_or_default();
        if let Some(u) = self.units[i as usize].as_mut() {
            u.fences = inside;
        }
    }

    fn state_changed(&mut self, i: u32, now_ms: i64, out: &mut Vec<Output>) {
        let u = self.units[i as usize].as_ref().expect("index is live");
        let mut e = event(EventKind::State, u, now_ms);
        e.state = Some(u.state());
        out.push(Output::Changed(i));
        out.push(Output::Event(e));
    }

    /// The `k` nearest units to a WGS-84 point that pass `filter`, with great-circle distances in
    /// metres, nearest first.
    pub fn nearest(
        &mut self,
        lat: f64,
        lon: f64,
        k: usize,
        mut filter: impl FnMut(&UnitState) -> bool,
    ) -> Vec<(u32, f64)> {
        if k == 0 {
            return Vec::new();
        }
        self.refresh_tree();
        // The projection is within a fraction of a percent of the true distance near the
        // reference latitude; take a few more candidates than asked and re-rank exactly.
        let want = k + 8;
        let mut cand: Vec<(u32, f64)> = Vec::with_capacity(want);
        for e in self
            .tree
            .nearest_neighbor_iter(&self.proj.project(lat, lon))
        {
            let Some(u) = self.unit(e.data) else { continue };
            if !filter(u) {
                continue;
            }
            let p = u.live.as_ref().expect("indexed units have a live fix");
            cand.push((e.data, haversine_m(lat, lon, p.lat, p.lon)));
            if cand.len() >= want {
                break;
            }
        }
        cand.sort_by(|a, b| a.1.total_cmp(&b.1));
        cand.truncate(k);
        cand
    }

    fn refresh_tree(&mut self) {
        if !self.tree_dirty {
            return;
        }
        let pts: Vec<Entry> = self
            .units()
            .filter_map(|(i, u)| {
                u.live
                    .as_ref()
                    .map(|p| Entry::new(self.proj.project(p.lat, p.lon), i))
            })
            .collect();
        self.tree = RTree::bulk_load(pts);
        self.tree_dirty = false;
    }

    /// Units whose live fix lies in a WGS-84 box `[min_lon, min_lat, max_lon, max_lat]`.
    pub fn in_bbox(&mut self, b: [f64; 4]) -> Vec<u32> {
        self.refresh_tree();
        let lo = self.proj.project(b[1], b[0]);
        let hi = self.proj.project(b[3], b[2]);
        self.tree
            .locate_in_envelope(&AABB::from_corners(lo, hi))
            .map(|e| e.data)
            .collect()
    }
}

fn event(kind: EventKind, u: &UnitState, now_ms: i64) -> Event {
    Event {
        kind,
        unit_id: u.info.id.clone(),
        unit_name: u.info.name.clone(),
        org_unit_id: u.info.org_unit_id.clone(),
        time_ms: now_ms,
        geofence_id: None,
        geofence_name: None,
        state: None,
    }
}

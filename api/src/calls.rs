//! Dispatch calls (调度通话): an operator calls an officer (or an unbound recorder) from the
//! command centre; both sides' sound and picture go through the stream hub, and every stream of
//! the called unit's devices is recorded while the call lasts (trigger `dispatch_call`).
//!
//! The media of a call:
//! - the officer's side is what the unit's devices send: a body camera's live channel over
//!   GB/T 28181 (started by the call), and the phone app's camera and microphone published over
//!   WHIP (`POST /streams/{device}/{channel}/whip`) once the app answers;
//! - the console's side (the operator's microphone, and camera or a placard picture) is
//!   published over WHIP as the channel [`CONSOLE_CHANNEL`] of the unit's first device, which
//!   the phone app plays over WHEP (`POST /calls/{id}/whep`).
//!
//! A call to an officer whose phone app has an account rings until the app answers (or
//! `dispatch.call_ring_secs` pass); a call to a body camera alone is connected at once (the
//! camera has no answer button). While the call is open the unit shows `in_call` on the map.
//! Calls live in memory (a restart ends them); their start, answer and end are in the audit log
//! (`call.start`, `call.answer`, `call.end` with the reason, the length and the recordings).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use shouhu_media::hub::StreamState;
use shouhu_media::recorder::Trigger;
use shouhu_storage::audit::{Actor, AuditEntry};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::state::AppState;

/// The channel (of the called unit's first device) that carries the console's side.
pub const CONSOLE_CHANNEL: &str = "console";

/// How many ended calls stay listed.
const KEEP_ENDED: usize = 200;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Waiting for the officer's app to answer.
    Ringing,
    /// Both sides connected.
    Connected,
    /// Over (see `end_reason`).
    Ended,
}

/// A channel recorded for a call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallRecording {
    /// Device.
    pub device_id: String,
    /// Channel (`console` is the command centre's side).
    pub channel_id: String,
    /// The recording (none while it starts, or when the channel gave no picture).
    pub recording_id: Option<String>,
}

/// A dispatch call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Call {
    /// Id.
    pub id: String,
    /// The called unit (officer id, or a recorder's device id when it is bound to nobody).
    pub unit_id: String,
    /// Its name.
    pub unit_name: String,
    /// Its org unit.
    pub org_unit_id: String,
    /// The officer, when the unit is one.
    pub officer_id: Option<String>,
    /// The unit's devices (body cameras, phone terminals); every stream of theirs is recorded
    /// while the call lasts.
    pub devices: Vec<String>,
    /// Where the console publishes and the app plays: `[device_id, channel_id]`.
    pub console: [String; 2],
    /// Whether the officer's app must answer (else the call connects at once).
    pub answer_needed: bool,
    /// Who called (account id).
    pub caller_account_id: String,
    /// Their name.
    pub caller_name: String,
    /// State.
    pub state: CallState,
    /// When it was placed, ms.
    pub created_at_ms: i64,
    /// When it connected, ms.
    pub answered_at_ms: Option<i64>,
    /// When it ended, ms.
    pub ended_at_ms: Option<i64>,
    /// `hangup` (by the console), `declined`, `hangup_officer`, `no_answer`, `shutdown`.
    pub end_reason: Option<String>,
    /// Channels recorded for the call.
    pub recordings: Vec<CallRecording>,
}

/// Why a call could not be placed or changed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The unit is in another open call.
    #[error("the unit is already in call {0}")]
    Busy(String),
    /// No such call.
    #[error("no such call")]
    NotFound,
    /// The call is over, or not in the state the step needs.
    #[error("{0}")]
    State(&'static str),
}

struct Entry {
    call: Call,
    stop: watch::Sender<Option<String>>,
    done: watch::Receiver<bool>,
    /// The console's WHIP session, ended with the call.
    console_session: Option<String>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, Entry>,
    ended: VecDeque<String>,
}

/// The open (and recently ended) calls. Cheap to share.
pub struct Calls {
    inner: Mutex<Inner>,
    /// Bumped on every change: list requests wait on it (the app's long poll).
    version: watch::Sender<u64>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            inner: Mutex::new(Inner::default()),
            version: watch::channel(0).0,
        }
    }
}

/// What placing a call needs to know of the unit.
pub struct NewCall {
    /// Unit id.
    pub unit_id: String,
    /// Unit name.
    pub unit_name: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Officer, when the unit is one.
    pub officer_id: Option<String>,
    /// Its devices (at least one).
    pub devices: Vec<String>,
    /// Whether an app must answer.
    pub answer_needed: bool,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// The change counter now.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Wait until the change counter passes `after` or `wait` runs out.
    pub async fn wait_change(&self, after: u64, wait: Duration) {
        let mut rx = self.version.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v > after)).await;
    }

    /// Every call held (open ones and the last ended ones), newest first.
    pub fn all(&self) -> Vec<Call> {
        let mut v: Vec<Call> = self.lock().calls.values().map(|e| e.call.clone()).collect();
        v.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        v
    }

    /// One call.
    pub fn get(&self, id: &str) -> Option<Call> {
        self.lock().calls.get(id).map(|e| e.call.clone())
    }

    /// The open call of a unit, if any.
    pub fn open_of_unit(&self, unit_id: &str) -> Option<Call> {
        self.lock()
            .calls
            .values()
            .find(|e| e.call.unit_id == unit_id && e.call.state != CallState::Ended)
            .map(|e| e.call.clone())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Call)) {
        if let Some(e) = self.lock().calls.get_mut(id) {
            f(&mut e.call);
        }
        self.bump();
    }

    /// Place a call: the unit turns `in_call`, its streams start recording. `audit` is the
    /// caller's `call.start` row (written here, with the call's id).
    pub async fn place(
        self: &Arc<Self>,
        state: &AppState,
        n: NewCall,
        caller_name: &str,
        audit: AuditEntry,
    ) -> Result<Call, CallError> {
        let now = state.now();
        let id = shouhu_storage::new_id();
        let (stop, stop_rx) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        let call = Call {
            id: id.clone(),
            unit_id: n.unit_id.clone(),
            unit_name: n.unit_name,
            org_unit_id: n.org_unit_id,
            officer_id: n.officer_id,
            console: [n.devices[0].clone(), CONSOLE_CHANNEL.to_string()],
            devices: n.devices,
            answer_needed: n.answer_needed,
            caller_account_id: audit.actor.account_id.clone().unwrap_or_default(),
            caller_name: caller_name.to_string(),
            state: if n.answer_needed {
                CallState::Ringing
            } else {
                CallState::Connected
            },
            created_at_ms: now,
            answered_at_ms: (!n.answer_needed).then_some(now),
            ended_at_ms: None,
            end_reason: None,
            recordings: Vec::new(),
        };
        {
            let mut g = self.lock();
            if let Some(e) = g
                .calls
                .values()
                .find(|e| e.call.unit_id == n.unit_id && e.call.state != CallState::Ended)
            {
                return Err(CallError::Busy(e.call.id.clone()));
            }
            g.calls.insert(
                id.clone(),
                Entry {
                    call: call.clone(),
                    stop,
                    done,
                    console_session: None,
                },
            );
        }
        self.bump();
        if let Err(e) = state.hub.set_in_call(&call.unit_id, true) {
            tracing::warn!(call.id = %id, unit.id = %call.unit_id, error = %e, "call: the unit is not on the map");
        }
        let row = audit
            .target("unit", &call.unit_id)
            .details(serde_json::json!({
                "call_id": id, "devices": call.devices, "answer_needed": call.answer_needed,
            }));
        if let Err(e) = state.db.audit().record(&row).await {
            tracing::warn!(call.id = %id, error = %e, "call: audit of the start failed");
        }
        tracing::info!(call.id = %id, unit.id = %call.unit_id, devices = ?call.devices, "call.started");
        let calls = self.clone();
        let st = state.clone();
        let c = call.clone();
        tokio::spawn(async move {
            calls.run(st, c, stop_rx).await;
            let _ = done_tx.send(true);
        });
        Ok(call)
    }

    /// The officer's app answers a ringing call.
    pub async fn answer(
        &self,
        state: &AppState,
        id: &str,
        actor: &Actor,
    ) -> Result<Call, CallError> {
        let now = state.now();
        let call = {
            let mut g = self.lock();
            let e = g.calls.get_mut(id).ok_or(CallError::NotFound)?;
            match e.call.state {
                CallState::Ringing => {}
                CallState::Connected => return Ok(e.call.clone()),
                CallState::Ended => return Err(CallError::State("the call is over")),
            }
            e.call.state = CallState::Connected;
            e.call.answered_at_ms = Some(now);
            e.call.clone()
        };
        self.bump();
        let row = AuditEntry::new(actor, "call.answer", now)
            .target("unit", &call.unit_id)
            .details(serde_json::json!({"call_id": id}));
        if let Err(e) = state.db.audit().record(&row).await {
            tracing::warn!(call.id = %id, error = %e, "call: audit of the answer failed");
        }
        Ok(call)
    }

    /// Remember the console's WHIP session (ended with the call).
    pub fn set_console_session(&self, id: &str, session: &str) -> Result<(), CallError> {
        let mut g = self.lock();
        let e = g.calls.get_mut(id).ok_or(CallError::NotFound)?;
        if e.call.state == CallState::Ended {
            return Err(CallError::State("the call is over"));
        }
        e.console_session = Some(session.to_string());
        Ok(())
    }

    /// End a call (`reason`), and wait until its recordings are stored and closed.
    pub async fn hang_up(&self, id: &str, reason: &str) -> Result<Call, CallError> {
        let mut done = {
            let g = self.lock();
            let e = g.calls.get(id).ok_or(CallError::NotFound)?;
            if e.call.state != CallState::Ended {
                e.stop.send_if_modified(|r| {
                    if r.is_none() {
                        *r = Some(reason.to_string());
                        true
                    } else {
                        false
                    }
                });
            }
            e.done.clone()
        };
        let _ = done.wait_for(|d| *d).await;
        self.get(id).ok_or(CallError::NotFound)
    }

    /// End every open call (server shutdown).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self
            .lock()
            .calls
            .values()
            .filter(|e| e.call.state != CallState::Ended)
            .map(|e| e.call.id.clone())
            .collect();
        for id in ids {
            let _ = self.hang_up(&id, "shutdown").await;
        }
    }

    /// A call from start to end: rings out, records every stream of the unit's devices as it
    /// appears, and at the end stops those recordings, ends the console's publication and
    /// frees the unit.
    async fn run(&self, state: AppState, call: Call, mut stop: watch::Receiver<Option<String>>) {
        let id = call.id.clone();
        let ring = Duration::from_secs(state.cfg.dispatch.call_ring_secs.max(1));
        let mut tasks = tokio::task::JoinSet::new();
        let mut channels: BTreeMap<(String, String), Slot> = BTreeMap::new();
        // A body camera registered over SIP is asked for its picture at once.
        for d in &call.devices {
            if state.sip.access(d).is_none() {
                continue;
            }
            let ch = match state.db.recorders().channels(d).await {
                Ok(list) => list.first().map(|c| c.channel_id.clone()),
                Err(_) => None,
            };
            let key = (d.clone(), ch.unwrap_or_else(|| d.clone()));
            channels.insert(key.clone(), Slot::starting());
            spawn_start(&mut tasks, &state, &call, key);
        }
        let rang_at = tokio::time::Instant::now();
        let reason = loop {
            // Streams of the unit's devices that went live since the last look.
            let now = tokio::time::Instant::now();
            for s in state.streams.streams() {
                let (d, c) = s.key();
                if !call.devices.iter().any(|x| x == d)
                    || c.contains('@')
                    || !matches!(s.state(), StreamState::Live)
                {
                    continue;
                }
                let key = (d.to_string(), c.to_string());
                let due = match channels.get(&key) {
                    None => true,
                    Some(slot) => slot.retry_at.is_some_and(|t| now >= t),
                };
                if due {
                    channels.insert(key.clone(), Slot::starting());
                    spawn_start(&mut tasks, &state, &call, key);
                }
            }
            let ringing = self.get(&id).is_some_and(|c| c.state == CallState::Ringing);
            let wait = if ringing {
                ring.saturating_sub(rang_at.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            if ringing && wait.is_zero() {
                break "no_answer".to_string();
            }
            tokio::select! {
                r = stop.wait_for(|r| r.is_some()) => {
                    break r.map(|r| (*r).clone().unwrap_or_default()).unwrap_or_else(|_| "shutdown".into());
                }
                Some(Ok((key, r))) = tasks.join_next() => {
                    match r {
                        Ok(rec) => {
                            channels.insert(key, Slot { recording: Some(rec), retry_at: None });
                            self.set_recordings(&id, &channels);
                        }
                        Err(why) => {
                            tracing::info!(call.id = %id, device.id = %key.0, channel.id = %key.1, reason = %why, "call: a channel did not start recording; tried again while it streams");
                            channels.insert(key, Slot { recording: None, retry_at: Some(tokio::time::Instant::now() + Duration::from_secs(5)) });
                        }
                    }
                }
                // Streams that appear (the app publishing once it answered) are looked for
                // twice a second.
                _ = tokio::time::sleep(wait.min(Duration::from_millis(500))) => {}
            }
        };
        // Starts in flight are abandoned; each channel ever started drops the call's trigger
        // (a recording kept for another reason goes on); then the console stops speaking.
        tasks.shutdown().await;
        for (key, slot) in channels.iter_mut() {
            if let Some(r) = state
                .recorder
                .stop(&key.0, &key.1, Trigger::DispatchCall)
                .await
            {
                slot.recording = Some(r);
            }
        }
        let console = {
            let mut g = self.lock();
            g.calls.get_mut(&id).and_then(|e| e.console_session.take())
        };
        if let Some(s) = console {
            state.whip.stop(&s);
        }
        let now = state.now();
        let _ = state.hub.set_in_call(&call.unit_id, false);
        let recordings = to_list(&channels);
        let final_call = {
            let mut g = self.lock();
            let c = g.calls.get_mut(&id).map(|e| {
                e.call.state = CallState::Ended;
                e.call.ended_at_ms = Some(now);
                e.call.end_reason = Some(reason.clone());
                e.call.recordings = recordings.clone();
                e.call.clone()
            });
            g.ended.push_back(id.clone());
            while g.ended.len() > KEEP_ENDED {
                if let Some(old) = g.ended.pop_front() {
                    g.calls.remove(&old);
                }
            }
            c
        };
        self.bump();
        let Some(c) = final_call else { return };
        let row = AuditEntry::new(&Actor::default(), "call.end", now)
            .target("unit", &c.unit_id)
            .details(serde_json::json!({
                "call_id": id, "reason": reason,
                "seconds": (now - c.created_at_ms).max(0) / 1000,
                "talked_seconds": c.answered_at_ms.map(|a| (now - a).max(0) / 1000),
                "recordings": recordings.iter().filter_map(|r| r.recording_id.clone()).collect::<Vec<_>>(),
            }));
        if let Err(e) = state.db.audit().record(&row).await {
            tracing::warn!(call.id = %id, error = %e, "call: audit of the end failed");
        }
        tracing::info!(call.id = %id, reason = %reason, recordings = recordings.len(), "call.ended");
    }

    fn set_recordings(&self, id: &str, channels: &BTreeMap<(String, String), Slot>) {
        let list = to_list(channels);
        self.update(id, |c| c.recordings = list);
    }
}

/// A channel of a call: its recording, or when to try again after a failed start.
struct Slot {
    recording: Option<String>,
    retry_at: Option<tokio::time::Instant>,
}

impl Slot {
    fn starting() -> Slot {
        Slot {
            recording: None,
            retry_at: None,
        }
    }
}

fn to_list(channels: &BTreeMap<(String, String), Slot>) -> Vec<CallRecording> {
    channels
        .iter()
        .map(|((d, c), s)| CallRecording {
            device_id: d.clone(),
            channel_id: c.clone(),
            recording_id: s.recording.clone(),
        })
        .collect()
}

type StartResult = ((String, String), Result<String, String>);

fn spawn_start(
    tasks: &mut tokio::task::JoinSet<StartResult>,
    state: &AppState,
    call: &Call,
    key: (String, String),
) {
    let rec = state.recorder.clone();
    let audit = AuditEntry::new(
        &Actor {
            account_id: Some(call.caller_account_id.clone()),
            ..Default::default()
        },
        "recording.start",
        state.now(),
    )
    .details(serde_json::json!({"call_id": call.id, "trigger": "dispatch_call"}));
    tasks.spawn(async move {
        let r = rec
            .start(&key.0, &key.1, Trigger::DispatchCall, Some(audit))
            .await
            .map_err(|e| e.to_string());
        (key, r)
    });
}

//! The recorder: what the stream hub carries, written as self-contained fMP4 segments into the
//! blob store and indexed with their digests and the recording's chain.
//!
//! One task per recorded channel joins the hub like any viewer (so the stream stays up while it
//! records) and feeds the [`Segmenter`]. The segment being written goes to a spool file
//! (`<spool>/<recording>/<n>.part`, appended fragment by fragment: a crash loses at most the
//! last fragment); when it is complete it is renamed `<n>.done` beside a `<n>.json` with its
//! span, and a second task per recording stores it in the blob store and indexes it, in order,
//! so a slow store never stalls the frames. A channel records while it has at least one
//! trigger: always-on (per recorder), on demand (from the API), a dispatch call.
//!
//! After a crash, [`Recorder::reconcile`] (at start-up, before any recording starts) finishes
//! what the spool holds: complete segments are stored and indexed, a partial segment is cut to
//! its last complete fragment and indexed when that is playable, else dropped with a log line;
//! then the interrupted recordings are closed and signed, and every indexed segment is checked
//! to be in the blob store.
//!
//! No silent gaps, no duplicates:
//! - A segment is identified by its SHA-256: before storing, the index is asked whether the
//!   recording holds that file already (a crash between the index commit and the spool file's
//!   removal, or an index commit whose answer was lost); if so it is not stored again.
//! - A store or index failure is retried with a bounded backoff ([`StoreRetry`]). When it
//!   persists, the segment becomes a gap of its recording (`recording_gaps`): the recording is
//!   `incomplete` and its head is signed over the incomplete head message naming every gap, never
//!   as a whole; the error `recording.segment_gap` is logged, `shouhu_recording_segment_gaps_total`
//!   counted, and the spool file kept as `<n>.lost` for an operator. While the store keeps
//!   failing (a segment already given up, none stored since), each further segment is tried once.
//! - The spool's files and sidecars are fsynced before a segment is handed on, and the local
//!   blob store fsyncs a file and its directory before the index names it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shouhu_storage::audit::AuditEntry;
use shouhu_storage::blob::BlobStore;
use shouhu_storage::evidence::Signer;
use shouhu_storage::org_units::Scope;
use shouhu_storage::recordings::{NewRecording, NewSegment, Recording};
use shouhu_storage::Db;
use tokio::sync::{broadcast, mpsc, watch};

use crate::digester::{Digester, Digesting};
use crate::hub::{StreamHub, StreamState};
use crate::mp4::segmenter::{Output, SegmentInfo, Segmenter};
use crate::ps::Codec;

/// Recorder settings (`[recording]`).
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Target segment length (cut at the next keyframe).
    pub segment_secs: u32,
    /// Where segments are written while they grow.
    pub spool_dir: PathBuf,
    /// How long a start waits for the stream's first picture.
    pub start_timeout: Duration,
    /// How long to wait before restarting a recording whose stream dropped.
    pub retry: Duration,
}

/// How a segment's store is retried before it becomes a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRetry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each, up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for StoreRetry {
    /// 6 attempts over about 15 s (0.5, 1, 2, 4, 8 s between them).
    fn default() -> Self {
        StoreRetry {
            attempts: 6,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// A fault point for crash tests (`SHOUHU_FAULT_AFTER_INDEX`, read once when the recorder is
/// made; nothing is checked when it is unset): right after a live segment's index commit and
/// before its spool file is removed, `pause` stops that recording's storing for good (for a
/// `kill -9` from outside), `abort` aborts the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pause,
    Abort,
}

/// Why a channel records.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The recorder is set to record whenever it streams.
    Always,
    /// Someone asked through the API.
    OnDemand,
    /// A dispatch call is in progress.
    DispatchCall,
}

impl Trigger {
    /// Its code in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Always => "always",
            Trigger::OnDemand => "on_demand",
            Trigger::DispatchCall => "dispatch_call",
        }
    }
}

/// Why a recording could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The device is not registered as a recorder.
    #[error("no recorder {0}")]
    UnknownDevice(String),
    /// The stream did not start or gave no picture in time.
    #[error("{0}")]
    NoMedia(String),
    /// The index could not be written.
    #[error("storage: {0}")]
    Storage(String),
}

/// A channel being recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveRecording {
    /// Device id.
    pub device_id: String,
    /// Channel id.
    pub channel_id: String,
    /// The recording being written (none while the stream (re)starts).
    pub recording_id: Option<String>,
    /// Why it records.
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Starting,
    Recording(String),
    Failed(String),
}

type Key = (String, String);

#[derive(Debug)]
struct Active {
    triggers: BTreeSet<Trigger>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    done: watch::Receiver<bool>,
}

/// Called with every recording that closed (for link suggestions).
pub type ClosedHook = Arc<dyn Fn(Recording) + Send + Sync>;

/// The recorder. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    hub: StreamHub,
    db: Db,
    blobs: Arc<dyn BlobStore>,
    signer: Arc<Signer>,
    cfg: RecorderConfig,
    now: Arc<dyn Fn() -> i64 + Send + Sync>,
    active: Mutex<HashMap<Key, Active>>,
    on_closed: Mutex<Option<ClosedHook>>,
    digester: Digester,
    retry: Mutex<StoreRetry>,
    /// A segment was given up and none stored since: further segments are tried once.
    store_failing: AtomicBool,
    /// Segments lost to store failures since start.
    gaps: AtomicU64,
    fault: Option<Fault>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// The codec's name in the index.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "h264",
        Codec::H265 => "h265",
        Codec::G711A => "g711a",
        Codec::G711U => "g711u",
        Codec::Aac => "aac",
        Codec::Opus => "opus",
    }
}

/// The blob key of a recording's segment.
pub fn segment_key(recording_id: &str, seq: i64) -> String {
    format!("recordings/{recording_id}/{seq:06}.mp4")
}

/// Length of an MP4 file's init section: the top-level boxes before the first `moof`.
pub fn init_len(file: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().ok()?) as usize;
        if &file[at + 4..at + 8] == b"moof" {
            return Some(at);
        }
        if size < 8 || at + size > file.len() {
            return None;
        }
        at += size;
    }
    None
}

/// What the spool keeps beside a completed segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpoolInfo {
    start_90k: u64,
    end_90k: u64,
    video: Option<String>,
    audio: Option<String>,
    payload_bytes: u64,
    /// Taken while the file was written (live recording); the start-up check recomputes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<Written>,
}

/// What the spool writer knows of a segment file it completed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Written {
    bytes: u64,
    init_bytes: u64,
    #[serde(with = "hex::serde")]
    sha256: [u8; 32],
    #[serde(with = "hex::serde")]
    sm3: [u8; 32],
}

impl From<&SegmentInfo> for SpoolInfo {
    fn from(i: &SegmentInfo) -> Self {
        SpoolInfo {
            start_90k: i.start_90k,
            end_90k: i.end_90k,
            video: i.video.map(|c| codec_name(c).to_string()),
            audio: i.audio.map(|c| codec_name(c).to_string()),
            payload_bytes: i.payload_bytes,
            written: None,
        }
    }
}

/// What the start-up check found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Interrupted recordings closed.
    pub closed: u64,
    /// Complete segments from the spool stored and indexed.
    pub indexed: u64,
    /// Partial segments cut to their last complete fragment and indexed.
    pub recovered: u64,
    /// Partial segments dropped (nothing playable in them).
    pub dropped: u64,
    /// Indexed segments whose file is not in the blob store.
    pub missing: u64,
    /// Spooled segments found indexed already (by their digest) and not stored again.
    pub already_indexed: u64,
    /// Spooled segments that could not be stored: gaps of their (incomplete) recordings.
    pub gaps: u64,
}

impl Recorder {
    /// A recorder over the hub, writing through `blobs` and indexing in `db`.
    pub fn new(
        hub: StreamHub,
        db: Db,
        blobs: Arc<dyn BlobStore>,
        signer: Arc<Signer>,
        cfg: RecorderConfig,
        now: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                hub,
                db,
                blobs,
                signer,
                cfg,
                now,
                active: Mutex::new(HashMap::new()),
                on_closed: Mutex::new(None),
                digester: Digester::new(),
                retry: Mutex::new(StoreRetry::default()),
                store_failing: AtomicBool::new(false),
                gaps: AtomicU64::new(0),
                fault: match std::env::var("SHOUHU_FAULT_AFTER_INDEX").as_deref() {
                    Ok("pause") => Some(Fault::Pause),
                    Ok("abort") => Some(Fault::Abort),
                    _ => None,
                },
            }),
        }
    }

    /// Set how a segment's store is retried before it becomes a gap.
    pub fn set_store_retry(&self, r: StoreRetry) {
        *self.inner.retry.lock().unwrap_or_else(|e| e.into_inner()) = StoreRetry {
            attempts: r.attempts.max(1),
            ..r
        };
    }

    /// Segments lost to store failures since start (each a gap of an incomplete recording).
    pub fn segment_gaps(&self) -> u64 {
        self.inner.gaps.load(Ordering::Relaxed)
    }

    /// Set what runs when a recording closes.
    pub fn on_closed(&self, hook: ClosedHook) {
        *self
            .inner
            .on_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Channels being recorded now.
    pub fn active(&self) -> Vec<ActiveRecording> {
        let m = self.inner.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ActiveRecording> = m
            .iter()
            .map(|((d, c), a)| ActiveRecording {
                device_id: d.clone(),
                channel_id: c.clone(),
                recording_id: match &*a.status.borrow() {
                    Status::Recording(id) => Some(id.clone()),
                    _ => None,
                },
                triggers: a.triggers.iter().copied().collect(),
            })
            .collect();
        v.sort_by(|a, b| (&a.device_id, &a.channel_id).cmp(&(&b.device_id, &b.channel_id)));
        v
    }

    /// Record a channel for `trigger` (joining a recording already running for another
    /// trigger). Waits for the first picture; returns the recording's id. `audit` is written
    /// with the recording when it is a new one started on someone's request.
    pub async fn start(
        &self,
        device_id: &str,
        channel_id: &str,
        trigger: Trigger,
        audit: Option<AuditEntry>,
    ) -> Result<String, RecordError> {
        let key: Key = (device_id.to_string(), channel_id.to_string());
        let recorder = self
            .inner
            .db
            .recorders()
            .get(&Scope::All, device_id)
            .await
            .map_err(|_| RecordError::UnknownDevice(device_id.to_string()))?;
        let mut status = {
            let mut m = self.inner.active.lock().unwrap_or_else(|e| e.into_inner());
            let running = m
                .get(&key)
                .filter(|a| !*a.done.borrow() && !matches!(*a.status.borrow(), Status::Failed(_)));
            match running {
                Some(_) => {
                    let a = m.get_mut(&key).expect("present");
                    a.triggers.insert(trigger);
                    a.status.clone()
                }
                None => {
                    let (stop, stop_rx) = watch::channel(false);
                    let (status_tx, status) = watch::channel(Status::Starting);
                    let (done_tx, done) = watch::channel(false);
                    m.insert(
                        key.clone(),
                        Active {
                            triggers: [trigger].into(),
                            stop,
                            status: status.clone(),
                            done,
                        },
                    );
                    let ctx = Channel {
                        inner: self.inner.clone(),
                        key: key.clone(),
                        officer_id: recorder.officer_id.clone(),
                        org_unit_id: recorder.org_unit_id.clone(),
                        trigger,
                        audit,
                    };
                    tokio::spawn(async move {
                        ctx.run(stop_rx, status_tx).await;
                        let _ = done_tx.send(true);
                    });
                    status
                }
            }
        };
        let wait = self.inner.cfg.start_timeout;
        let r = tokio::time::timeout(wait, async {
            loop {
                match status.borrow_and_update().clone() {
                    Status::Recording(id) => return Ok(id),
                    Status::Failed(why) => return Err(RecordError::NoMedia(why)),
                    Status::Starting => {}
                }
                if status.changed().await.is_err() {
                    return Err(RecordError::NoMedia("the recording ended".into()));
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(RecordError::NoMedia(
                "no picture from the device in time".into(),
            ))
        });
        if r.is_err() {
            self.release(&key, trigger);
        }
        r
    }

    /// Drop `trigger` from a channel; when no trigger is left the recording stops (its last
    /// segment is stored and it is closed before this returns). Returns the recording's id.
    pub async fn stop(
        &self,
        device_id: &str,
        channel_id: &str,
        trigger: Trigger,
    ) -> Option<String> {
        let key: Key = (device_id.to_string(), channel_id.to_string());
        let (id, done) = {
            let m = self.inner.active.lock().unwrap_or_else(|e| e.into_inner());
            let a = m.get(&key)?;
            let id = match &*a.status.borrow() {
                Status::Recording(id) => Some(id.clone()),
                _ => None,
            };
            (id, a.done.clone())
        };
        if self.release(&key, trigger) {
            let mut done = done;
            let _ = done.wait_for(|d| *d).await;
        }
        id
    }

    /// Remove a trigger; stops the channel when none is left. Returns whether it stopped.
    fn release(&self, key: &Key, trigger: Trigger) -> bool {
        let mut m = self.inner.active.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = m.get_mut(key) else {
            return false;
        };
        a.triggers.remove(&trigger);
        if a.triggers.is_empty() {
            let _ = a.stop.send(true);
            m.remove(key);
            true
        } else {
            false
        }
    }

    /// Stop every recording and wait until each is stored and closed (server shutdown).
    pub async fn shutdown(&self) {
        let dones: Vec<watch::Receiver<bool>> = {
            let mut m = self.inner.active.lock().unwrap_or_else(|e| e.into_inner());
            m.drain()
                .map(|(_, a)| {
                    let _ = a.stop.send(true);
                    a.done
                })
                .collect()
        };
        for mut d in dones {
            let _ = d.wait_for(|d| *d).await;
        }
    }

    /// The start-up check after a crash (see the module docs). Run before recording starts.
    pub async fn reconcile(&self) -> Result<ReconcileReport, RecordError> {
        let inner = &self.inner;
        let mut report = ReconcileReport::default();
        let unfinished = inner
            .db
            .recordings()
            .unfinished()
            .await
            .map_err(|e| RecordError::Storage(e.to_string()))?;
        for r in unfinished {
            let dir = inner.cfg.spool_dir.join(&r.id);
            let mut spooled: Vec<(u32, PathBuf)> = Vec::new();
            if let Ok(mut rd) = tokio::fs::read_dir(&dir).await {
                while let Ok(Some(e)) = rd.next_entry().await {
                    let p = e.path();
                    let idx = p
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<u32>().ok());
                    let ext = p.extension().and_then(|s| s.to_str()).unwrap_or("");
                    if let (Some(i), "done" | "part") = (idx, ext) {
                        spooled.push((i, p));
                    }
                }
            }
            spooled.sort();
            let mut keep_open = false;
            for (i, p) in spooled {
                let done = p.extension().is_some_and(|e| e == "done");
                let data = tokio::fs::read(&p).await.unwrap_or_default();
                let info = if done {
                    tokio::fs::read(p.with_extension("json"))
                        .await
                        .ok()
                        .and_then(|j| serde_json::from_slice::<SpoolInfo>(&j).ok())
                } else {
                    None
                };
                let (data, info, recovered) = match info {
                    Some(info) => (data, Some(info), false),
                    None => match crate::mp4::recover::cut(&data) {
                        Some(cut) => {
                            let info = SpoolInfo {
                                start_90k: cut.start_90k,
                                end_90k: cut.end_90k,
                                video: cut.video.map(|c| codec_name(c).to_string()),
                                audio: cut.audio.map(|c| codec_name(c).to_string()),
                                payload_bytes: cut.payload_bytes,
                                written: None,
                            };
                            let mut d = data;
                            d.truncate(cut.len);
                            (d, Some(info), true)
                        }
                        None => (data, None, false),
                    },
                };
                match info {
                    Some(info) => match store_retrying(inner, &r.id, || {
                        store_segment(inner, &r.id, &data, &info)
                    })
                    .await
                    {
                        Ok(s) if !s.new => {
                            report.already_indexed += 1;
                            tracing::info!(recording.id = %r.id, segment = s.seq, spool = i, "recording.segment_already_indexed: the spooled file is indexed already (by its digest); not stored again");
                        }
                        Ok(s) => {
                            if recovered {
                                report.recovered += 1;
                                tracing::warn!(recording.id = %r.id, segment = s.seq, bytes = data.len(), "recording.segment_recovered: a partial segment was cut to its last complete fragment and indexed");
                            } else {
                                report.indexed += 1;
                            }
                        }
                        Err(e) => {
                            if lose_segment(inner, &r.id, &p, &info, &e).await {
                                report.gaps += 1;
                            } else {
                                // Neither stored nor recorded as a gap: the file stays and the
                                // recording open, for the next start.
                                keep_open = true;
                            }
                            continue;
                        }
                    },
                    None => {
                        report.dropped += 1;
                        tracing::warn!(recording.id = %r.id, spool = i, bytes = data.len(), "recording.segment_dropped: the partial segment holds no complete fragment");
                    }
                }
                remove_spooled(&p).await;
            }
            let _ = tokio::fs::remove_dir(&dir).await;
            if keep_open {
                tracing::error!(recording.id = %r.id, "recording.left_open: a spooled segment was neither stored nor recorded as a gap; the next start tries again");
                continue;
            }
            match close_recording(inner, &r.id).await {
                Ok(_) => report.closed += 1,
                Err(e) => {
                    tracing::error!(recording.id = %r.id, error = %e, "recording.close_failed")
                }
            }
        }
        // Index and files agree: every segment of the recordings closed now is in the store.
        // (Segments are stored before they are indexed, so only an outside deletion loses one.)
        report.missing = self.check_recent().await?;
        // Spool directories of recordings that no longer exist (deleted before being indexed).
        if let Ok(mut rd) = tokio::fs::read_dir(&inner.cfg.spool_dir).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                let id = e.file_name().to_string_lossy().to_string();
                if inner.db.recordings().get(&Scope::All, &id).await.is_err() {
                    tracing::warn!(recording.id = %id, "recording.spool_orphan: removed a spool directory without a recording");
                    let _ = tokio::fs::remove_dir_all(e.path()).await;
                }
            }
        }
        if report != ReconcileReport::default() {
            tracing::info!(?report, "recording.reconciled");
        }
        Ok(report)
    }

    /// Check that the segments of the last day's recordings are in the blob store; returns how
    /// many are missing (each logged).
    async fn check_recent(&self) -> Result<u64, RecordError> {
        let inner = &self.inner;
        let since = (inner.now)() - shouhu_storage::recordings::DAY_MS;
        let f = shouhu_storage::recordings::RecordingFilter {
            from_ms: Some(since),
            ..Default::default()
        };
        let page = inner
            .db
            .recordings()
            .search(
                &Scope::All,
                &f,
                shouhu_storage::PageRequest::new(Some(1), Some(500)),
            )
            .await
            .map_err(|e| RecordError::Storage(e.to_string()))?;
        let mut missing = 0;
        for r in page.items {
            let segs = inner
                .db
                .recordings()
                .segments(&r.id, None, None)
                .await
                .map_err(|e| RecordError::Storage(e.to_string()))?;
            for s in segs {
                if !inner.blobs.exists(&s.blob_key).await.unwrap_or(false) {
                    missing += 1;
                    tracing::error!(recording.id = %r.id, segment = s.seq, key = %s.blob_key, "recording.segment_missing: an indexed segment is not in the blob store");
                }
            }
        }
        Ok(missing)
    }
}

/// A camera's file to import.
#[derive(Debug, Clone)]
pub struct Import {
    /// Device.
    pub device_id: String,
    /// Channel.
    pub channel_id: String,
    /// Officer the device was bound to when it filmed.
    pub officer_id: Option<String>,
    /// Org unit.
    pub org_unit_id: String,
    /// UTC ms of the file's first frame.
    pub started_at_ms: i64,
    /// `upload` (docking station, browser) or `device` (GB/T 28181 download).
    pub source: String,
    /// What the index notes about it (`sha256:<hex of the file>`: a second import of the same
    /// file is refused).
    pub note: String,
}

/// Why an import failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("{0}")]
    File(#[from] crate::mp4::demux::DemuxError),
    /// Nothing in it could be recorded.
    #[error("no playable video in the file")]
    Empty,
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl Recorder {
    /// Import a camera's MP4 file as a closed recording: its frames cut into segments like a
    /// live stream, stored, indexed with the same digests and chain, signed. The file is read
    /// whole before anything is written; a failure while storing removes what was written.
    pub async fn import(
        &self,
        i: &Import,
        file: &[u8],
        audit: &AuditEntry,
    ) -> Result<Recording, ImportError> {
        use crate::mp4::demux;
        let movie = demux::read(file)?;
        // Every sample must be readable before a row is written.
        let mut first_audio = None;
        for f in movie.frames(file) {
            let f = f?;
            if first_audio.is_none() && !f.codec.is_video() {
                first_audio = Some(f);
            }
        }
        let inner = &self.inner;
        let storage = |e: shouhu_storage::StorageError| ImportError::Storage(e.to_string());
        let id = shouhu_storage::new_id();
        inner
            .db
            .recordings()
            .open(
                &NewRecording {
                    id: id.clone(),
                    device_id: i.device_id.clone(),
                    channel_id: i.channel_id.clone(),
                    officer_id: i.officer_id.clone(),
                    org_unit_id: i.org_unit_id.clone(),
                    source: i.source.clone(),
                    trigger: "import".into(),
                    started_at_ms: i.started_at_ms,
                },
                Some(
                    &audit
                        .clone()
                        .details(serde_json::json!({"note": i.note, "bytes": file.len()})),
                ),
            )
            .await
            .map_err(storage)?;
        inner
            .db
            .recordings()
            .set_note(&id, &i.note)
            .await
            .map_err(storage)?;
        let result = async {
            let mut seg = Segmenter::new(inner.cfg.segment_secs);
            if let Some(a) = &first_audio {
                seg.prime(a);
            }
            let mut out = Vec::new();
            let mut cur = Vec::new();
            let mut stored = 0u32;
            let mut frames = movie.frames(file);
            loop {
                let f = frames.next().transpose()?;
                match &f {
                    Some(f) => seg.push(f, &mut out),
                    None => seg.finish(&mut out),
                }
                for o in out.drain(..) {
                    match o {
                        Output::Begin { .. } => cur.clear(),
                        Output::Data(d) => cur.extend_from_slice(&d),
                        Output::End(info) if info.end_90k > info.start_90k => {
                            // The caller still has the file: a segment that cannot be stored
                            // fails the import (nothing kept), no gap.
                            let info = SpoolInfo::from(&info);
                            store_retrying(inner, &id, || store_segment(inner, &id, &cur, &info))
                                .await
                                .map_err(|e| ImportError::Storage(e.to_string()))?;
                            stored += 1;
                        }
                        Output::End(_) => {}
                    }
                }
                if f.is_none() {
                    break;
                }
            }
            if stored == 0 {
                return Err(ImportError::Empty);
            }
            close_recording(inner, &id)
                .await
                .map_err(|e| ImportError::Storage(e.to_string()))?
                .ok_or(ImportError::Empty)
        }
        .await;
        if result.is_err() {
            // Nothing half written: the segments stored so far and the rows go.
            if let Ok(segs) = inner.db.recordings().segments(&id, None, None).await {
                for s in segs {
                    let _ = inner.blobs.delete(&s.blob_key).await;
                }
            }
            let _ = inner.db.recordings().discard(&id).await;
        }
        result
    }
}

/// Footage stored on a device, to download into the index (GB/T 28181 `Download`).
#[derive(Debug, Clone)]
pub struct DeviceDownload {
    /// Device.
    pub device_id: String,
    /// Channel.
    pub channel_id: String,
    /// The record's start, UTC ms.
    pub start_ms: i64,
    /// Its end, UTC ms.
    pub end_ms: i64,
    /// Times real time the device is asked to send.
    pub speed: u32,
    /// Officer the device was bound to then.
    pub officer_id: Option<String>,
    /// Org unit.
    pub org_unit_id: String,
}

/// Give up a download after this many interrupted attempts.
const DOWNLOAD_ATTEMPTS: u32 = 4;

impl Recorder {
    /// Download a record from the device into a new recording (`source = device`, its time 0
    /// the record's start). Returns the recording's id once the first picture arrived; the rest
    /// comes in the background. When the stream stops short of the record's end (the device
    /// hung up, the network dropped), the download resumes from the end of what was stored, up
    /// to four attempts; the recording is closed and signed when the footage is complete or the
    /// attempts are spent (logged with how much is missing).
    pub async fn download(
        &self,
        d: &DeviceDownload,
        audit: &AuditEntry,
    ) -> Result<String, RecordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        let d = d.clone();
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let r = download_task(&inner, &d, &audit, &mut tx).await;
            if let Err(e) = r {
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => {
                        tracing::error!(device.id = %d.device_id, error = %e, "recording.download_failed")
                    }
                }
            }
        });
        rx.await
            .unwrap_or_else(|_| Err(RecordError::NoMedia("the download ended".into())))
    }
}

type Started = Option<tokio::sync::oneshot::Sender<Result<String, RecordError>>>;

async fn download_task(
    inner: &Arc<Inner>,
    d: &DeviceDownload,
    audit: &AuditEntry,
    started: &mut Started,
) -> Result<(), RecordError> {
    let storage = |e: shouhu_storage::StorageError| RecordError::Storage(e.to_string());
    let id = shouhu_storage::new_id();
    let wanted_90k = ((d.end_ms - d.start_ms).max(0) as u64) * 90;
    let mut done_90k = 0u64;
    let mut opened = false;
    let mut attempts = 0;
    while attempts < DOWNLOAD_ATTEMPTS && done_90k + 2 * 90_000 < wanted_90k {
        attempts += 1;
        let from = d.start_ms + (done_90k / 90) as i64;
        // Devices seek to whole seconds (SDP `t=`): this attempt's time 0 is the second the
        // stored footage ends in; what it repeats is skipped up to the next keyframe.
        let base = if done_90k == 0 {
            0
        } else {
            ((from.div_euclid(1000) * 1000 - d.start_ms).max(0) as u64) * 90
        };
        let mut viewer = inner
            .hub
            .download(&d.device_id, &d.channel_id, from, d.end_ms, d.speed);
        let wait = inner.cfg.start_timeout;
        let ready = async {
            viewer.wait_live(wait).await?;
            viewer.wait_picture(wait).await
        }
        .await;
        if let Err(e) = ready {
            if !opened {
                return Err(RecordError::NoMedia(e.to_string()));
            }
            tracing::warn!(recording.id = %id, attempt = attempts, error = %e, "recording.download_retry");
            tokio::time::sleep(inner.cfg.retry).await;
            continue;
        }
        if !opened {
            inner
                .db
                .recordings()
                .open(
                    &NewRecording {
                        id: id.clone(),
                        device_id: d.device_id.clone(),
                        channel_id: d.channel_id.clone(),
                        officer_id: d.officer_id.clone(),
                        org_unit_id: d.org_unit_id.clone(),
                        source: "device".into(),
                        trigger: "import".into(),
                        started_at_ms: d.start_ms,
                    },
                    Some(&audit.clone().details(serde_json::json!({
                        "device_id": d.device_id, "channel_id": d.channel_id,
                        "start_ms": d.start_ms, "end_ms": d.end_ms, "speed": d.speed}))),
                )
                .await
                .map_err(storage)?;
            opened = true;
            tracing::info!(recording.id = %id, device.id = %d.device_id, start_ms = d.start_ms, end_ms = d.end_ms, "recording.download_started");
            if let Some(tx) = started.take() {
                let _ = tx.send(Ok(id.clone()));
            }
        }
        let mut seg = Segmenter::new(inner.cfg.segment_secs);
        seg.resume(base, done_90k);
        let mut stored = 0u32;
        let mut initial = std::mem::take(&mut viewer.initial);
        if !initial.iter().any(|f| !f.codec.is_video()) {
            let _ = tokio::time::timeout(Duration::from_millis(600), async {
                while let Ok(f) = viewer.rx.recv().await {
                    let audio = !f.codec.is_video();
                    initial.push(f);
                    if audio {
                        return;
                    }
                }
            })
            .await;
        }
        if let Some(a) = initial.iter().find(|f| !f.codec.is_video()) {
            seg.prime(a);
        }
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut state = viewer.stream().subscribe_state();
        for f in &initial {
            seg.push(f, &mut out);
        }
        let mut finished = false;
        loop {
            for o in out.drain(..) {
                match o {
                    Output::Begin { .. } => cur.clear(),
                    Output::Data(b) => cur.extend_from_slice(&b),
                    Output::End(info) if info.end_90k > info.start_90k => {
                        let retry = attempts < DOWNLOAD_ATTEMPTS;
                        if finished && retry && stored > 0 && info.end_90k + 2 * 90_000 < wanted_90k
                        {
                            // Cut short: the last segment does not end at a keyframe, so the
                            // next attempt fetches it again from its start (no gap in the
                            // evidence). An attempt that stored nothing else, or the last
                            // attempt, keeps it.
                            tracing::info!(recording.id = %id, start_90k = info.start_90k, end_90k = info.end_90k, "recording.download_partial_refetched");
                            continue;
                        }
                        let info = SpoolInfo::from(&info);
                        match store_retrying(inner, &id, || store_segment(inner, &id, &cur, &info))
                            .await
                        {
                            Ok(_) => stored += 1,
                            Err(e) => {
                                if !record_gap(inner, &id, None, &info, &e).await {
                                    return Err(e);
                                }
                            }
                        }
                        done_90k = done_90k.max(info.end_90k);
                    }
                    Output::End(_) => {}
                }
            }
            if finished {
                break;
            }
            if matches!(*state.borrow_and_update(), StreamState::Ended(_)) {
                seg.finish(&mut out);
                finished = true;
                continue;
            }
            tokio::select! {
                f = viewer.rx.recv() => match f {
                    Ok(f) => seg.push(&f, &mut out),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(recording.id = %id, frames = n, "recording.lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        seg.finish(&mut out);
                        finished = true;
                    }
                },
                _ = state.changed() => {}
            }
        }
        drop(viewer);
        if done_90k + 2 * 90_000 < wanted_90k {
            tracing::warn!(recording.id = %id, attempt = attempts, stored_s = done_90k / 90_000, wanted_s = wanted_90k / 90_000, "recording.download_interrupted: resuming from the end of the stored footage");
        }
    }
    if !opened {
        return Err(RecordError::NoMedia("the device sent no footage".into()));
    }
    if done_90k + 2 * 90_000 < wanted_90k {
        tracing::error!(recording.id = %id, stored_s = done_90k / 90_000, wanted_s = wanted_90k / 90_000, "recording.download_incomplete: closed with what the device sent");
    }
    close_recording(inner, &id).await?;
    Ok(())
}

async fn remove_spooled(p: &Path) {
    let _ = tokio::fs::remove_file(p).await;
    let _ = tokio::fs::remove_file(p.with_extension("json")).await;
}

/// A segment's place in the index.
#[derive(Debug, Clone, Copy)]
struct Stored {
    seq: i64,
    /// Indexed now (false: the recording held this file already).
    new: bool,
}

/// The segment of the recording with this digest, if it is indexed already.
async fn indexed_already(
    inner: &Inner,
    recording_id: &str,
    sha256: &[u8; 32],
) -> Result<Option<Stored>, RecordError> {
    Ok(inner
        .db
        .recordings()
        .segment_by_digest(recording_id, sha256)
        .await
        .map_err(|e| RecordError::Storage(e.to_string()))?
        .map(|s| Stored {
            seq: s.seq,
            new: false,
        }))
}

/// Run `attempt` until it succeeds, at most [`StoreRetry::attempts`] times with a doubling
/// wait between (once while the store is failing: see the module docs).
async fn store_retrying<F, Fut>(
    inner: &Inner,
    recording_id: &str,
    mut attempt: F,
) -> Result<Stored, RecordError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Stored, RecordError>>,
{
    let r = *inner.retry.lock().unwrap_or_else(|e| e.into_inner());
    let attempts = if inner.store_failing.load(Ordering::Relaxed) {
        1
    } else {
        r.attempts.max(1)
    };
    let mut wait = r.first_backoff;
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(s) => {
                if inner.store_failing.swap(false, Ordering::Relaxed) {
                    metrics::gauge!("shouhu_recording_store_failing").set(0.0);
                    tracing::info!(recording.id = %recording_id, "recording.store_recovered: segments are stored again");
                }
                return Ok(s);
            }
            Err(e) if n >= attempts => return Err(e),
            Err(e) => {
                metrics::counter!("shouhu_recording_store_retries_total").increment(1);
                tracing::warn!(recording.id = %recording_id, attempt = n, of = attempts, wait_ms = wait.as_millis() as u64, error = %e, "recording.store_retry");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(r.max_backoff);
                n += 1;
            }
        }
    }
}

/// A segment that could not be stored becomes a gap of its recording (see [`record_gap`]); its
/// spool file is kept as `<n>.lost`. Returns whether the gap was recorded (else the file stays
/// as it is, for the start-up check).
async fn lose_segment(
    inner: &Inner,
    recording_id: &str,
    path: &Path,
    info: &SpoolInfo,
    error: &RecordError,
) -> bool {
    if !record_gap(inner, recording_id, Some(path), info, error).await {
        return false;
    }
    let lost = path.with_extension("lost");
    if let Err(e) = tokio::fs::rename(path, &lost).await {
        tracing::warn!(recording.id = %recording_id, spool = %path.display(), error = %e, "recording.spool_rename_failed");
    }
    true
}

/// Record the gap a lost segment leaves (the recording becomes incomplete) and raise the
/// alert: error `recording.segment_gap`, `shouhu_recording_segment_gaps_total`, the gauge
/// `shouhu_recording_store_failing`. Returns whether the gap is in the index.
async fn record_gap(
    inner: &Inner,
    recording_id: &str,
    kept: Option<&Path>,
    info: &SpoolInfo,
    error: &RecordError,
) -> bool {
    inner.store_failing.store(true, Ordering::Relaxed);
    metrics::gauge!("shouhu_recording_store_failing").set(1.0);
    match inner
        .db
        .recordings()
        .add_gap(
            recording_id,
            info.start_90k as i64,
            info.end_90k as i64,
            &error.to_string(),
        )
        .await
    {
        Ok(g) => {
            inner.gaps.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shouhu_recording_segment_gaps_total").increment(1);
            tracing::error!(
                recording.id = %recording_id,
                after_segments = g.after_segments,
                start_90k = info.start_90k,
                end_90k = info.end_90k,
                gap_start_ms = g.start_ms,
                gap_end_ms = g.end_ms,
                kept = %kept.map(|p| p.with_extension("lost").display().to_string()).unwrap_or_default(),
                error = %error,
                "recording.segment_gap: a segment could not be stored; the recording is incomplete"
            );
            true
        }
        Err(e) => {
            tracing::error!(recording.id = %recording_id, error = %error, gap_error = %e, "recording.gap_not_recorded: a segment could not be stored, nor its gap recorded");
            false
        }
    }
}

/// Store one complete segment and index it as the recording's next, unless the recording
/// holds this file already (by its SHA-256).
async fn store_segment(
    inner: &Inner,
    recording_id: &str,
    data: &[u8],
    info: &SpoolInfo,
) -> Result<Stored, RecordError> {
    let storage = |e: shouhu_storage::StorageError| RecordError::Storage(e.to_string());
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(data).into();
    if let Some(s) = indexed_already(inner, recording_id, &sha).await? {
        return Ok(s);
    }
    let seq = next_seq(inner, recording_id).await?;
    let key = segment_key(recording_id, seq);
    let stored = inner.blobs.put(&key, data).await.map_err(storage)?;
    let init = init_len(data).unwrap_or(data.len()) as u64;
    index_segment(inner, recording_id, seq, stored, init, info).await
}

/// Store a completed spool file (a local store links it in, no copy) with the digests taken while
/// it was written, and index it as the recording's next segment, unless the recording holds
/// this file already. The spool file stays.
async fn store_spooled(
    inner: &Inner,
    recording_id: &str,
    path: &Path,
    info: &SpoolInfo,
) -> Result<Stored, RecordError> {
    let Some(w) = &info.written else {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| RecordError::Storage(format!("spool {}: {e}", path.display())))?;
        return store_segment(inner, recording_id, &data, info).await;
    };
    if let Some(s) = indexed_already(inner, recording_id, &w.sha256).await? {
        return Ok(s);
    }
    let storage = |e: shouhu_storage::StorageError| RecordError::Storage(e.to_string());
    let seq = next_seq(inner, recording_id).await?;
    let key = segment_key(recording_id, seq);
    let stored = inner
        .blobs
        .put_file(&key, path, Some((w.sha256, w.sm3)))
        .await
        .map_err(storage)?;
    if stored.size != w.bytes {
        return Err(RecordError::Storage(format!(
            "spool {}: {} bytes stored, {} written",
            path.display(),
            stored.size,
            w.bytes
        )));
    }
    index_segment(inner, recording_id, seq, stored, w.init_bytes, info).await
}

async fn next_seq(inner: &Inner, recording_id: &str) -> Result<i64, RecordError> {
    let r = inner
        .db
        .recordings()
        .get(&Scope::All, recording_id)
        .await
        .map_err(|e| RecordError::Storage(e.to_string()))?;
    Ok(r.segment_count)
}

async fn index_segment(
    inner: &Inner,
    recording_id: &str,
    seq: i64,
    stored: shouhu_storage::blob::BlobInfo,
    init_bytes: u64,
    info: &SpoolInfo,
) -> Result<Stored, RecordError> {
    let raw = |h: &str| -> Option<[u8; 32]> { hex::decode(h).ok()?.try_into().ok() };
    let (Some(sha256), Some(sm3)) = (raw(&stored.sha256), raw(&stored.sm3)) else {
        return Err(RecordError::Storage(format!(
            "the blob store returned no digests for {}",
            stored.key
        )));
    };
    inner
        .db
        .recordings()
        .add_segment(
            recording_id,
            &NewSegment {
                seq,
                start_90k: info.start_90k as i64,
                end_90k: info.end_90k as i64,
                blob_key: stored.key,
                bytes: stored.size as i64,
                init_bytes: init_bytes as i64,
                payload_bytes: info.payload_bytes as i64,
                video_codec: info.video.clone(),
                audio_codec: info.audio.clone(),
                sha256,
                sm3,
            },
        )
        .await
        .map_err(|e| RecordError::Storage(e.to_string()))?;
    Ok(Stored { seq, new: true })
}

async fn close_recording(inner: &Inner, id: &str) -> Result<Option<Recording>, RecordError> {
    let signer = inner.signer.clone();
    let sign = move |m: &[u8]| signer.sign(m);
    let r = inner
        .db
        .recordings()
        .close(id, &sign)
        .await
        .map_err(|e| RecordError::Storage(e.to_string()))?;
    if let Some(r) = &r {
        tracing::info!(recording.id = %r.id, device.id = %r.device_id, segments = r.segment_count, bytes = r.bytes, "recording.closed");
        let hook = inner
            .on_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = hook {
            h(r.clone());
        }
    }
    Ok(r)
}

/// One recorded channel.
struct Channel {
    inner: Arc<Inner>,
    key: Key,
    officer_id: Option<String>,
    org_unit_id: String,
    trigger: Trigger,
    audit: Option<AuditEntry>,
}

enum Ended {
    Stopped,
    StreamEnded(String),
}

impl Channel {
    async fn run(mut self, mut stop: watch::Receiver<bool>, status: watch::Sender<Status>) {
        let mut first = true;
        loop {
            match self.record_once(&mut stop, &status).await {
                Ok(Ended::Stopped) => return,
                Ok(Ended::StreamEnded(why)) | Err(why) => {
                    if first && !matches!(*status.borrow(), Status::Recording(_)) {
                        let _ = status.send(Status::Failed(why));
                        return;
                    }
                    tracing::warn!(device.id = %self.key.0, channel.id = %self.key.1, reason = %why, "recording.interrupted: the stream dropped; recording again when it returns");
                    let _ = status.send(Status::Starting);
                }
            }
            first = false;
            self.audit = None;
            tokio::select! {
                _ = tokio::time::sleep(self.inner.cfg.retry) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One recording: until stopped or until the stream ends.
    async fn record_once(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        status: &watch::Sender<Status>,
    ) -> Result<Ended, String> {
        let inner = self.inner.clone();
        let (device, channel) = self.key.clone();
        let mut viewer = inner.hub.watch(&device, &channel);
        let wait = inner.cfg.start_timeout;
        tokio::select! {
            r = async {
                viewer.wait_live(wait).await?;
                viewer.wait_picture(wait).await
            } => r.map_err(|e| e.to_string())?,
            _ = stop.wait_for(|s| *s) => return Ok(Ended::Stopped),
        }
        let id = shouhu_storage::new_id();
        let started = (inner.now)();
        let rec = inner
            .db
            .recordings()
            .open(
                &NewRecording {
                    id: id.clone(),
                    device_id: device.clone(),
                    channel_id: channel.clone(),
                    officer_id: self.officer_id.clone(),
                    org_unit_id: self.org_unit_id.clone(),
                    source: "live".into(),
                    trigger: self.trigger.as_str().into(),
                    started_at_ms: started,
                },
                self.audit.as_ref(),
            )
            .await
            .map_err(|e| format!("the index: {e}"))?;
        let dir = inner.cfg.spool_dir.join(&rec.id);
        shouhu_storage::private_fs::create_dir_all_async(&dir)
            .await
            .map_err(|e| format!("spool {}: {e}", dir.display()))?;
        shouhu_storage::blob::sync_dir(&inner.cfg.spool_dir)
            .await
            .map_err(|e| format!("spool {}: {e}", inner.cfg.spool_dir.display()))?;
        tracing::info!(recording.id = %id, device.id = %device, channel.id = %channel, trigger = self.trigger.as_str(), "recording.started");
        let _ = status.send(Status::Recording(id.clone()));

        // Completed segments go to the storing task in order.
        let (jobs, mut jobs_rx) = mpsc::unbounded_channel::<(PathBuf, SpoolInfo)>();
        let storer = {
            let inner = inner.clone();
            let id = id.clone();
            tokio::spawn(async move {
                while let Some((path, info)) = jobs_rx.recv().await {
                    match store_retrying(&inner, &id, || store_spooled(&inner, &id, &path, &info))
                        .await
                    {
                        Ok(s) => {
                            if s.new {
                                match inner.fault {
                                    None => {}
                                    Some(Fault::Abort) => std::process::abort(),
                                    Some(Fault::Pause) => {
                                        tracing::warn!(recording.id = %id, segment = s.seq, spool = %path.display(), "recording.fault_pause: SHOUHU_FAULT_AFTER_INDEX: indexed, the spool file not removed; storing stops here");
                                        std::future::pending::<()>().await;
                                    }
                                }
                            }
                            remove_spooled(&path).await
                        }
                        Err(e) => {
                            if !lose_segment(&inner, &id, &path, &info, &e).await {
                                tracing::error!(recording.id = %id, spool = %path.display(), error = %e, "recording.segment_not_stored: kept in the spool for the start-up check");
                            }
                        }
                    }
                }
            })
        };

        let mut seg = Segmenter::new(inner.cfg.segment_secs);
        let mut initial = std::mem::take(&mut viewer.initial);
        if !initial.iter().any(|f| !f.codec.is_video()) {
            // The first segment opens at the keyframe: learn the audio first (cameras
            // interleave it with the pictures), so that segment carries it too.
            let _ = tokio::time::timeout(Duration::from_millis(600), async {
                while let Ok(f) = viewer.rx.recv().await {
                    let audio = !f.codec.is_video();
                    initial.push(f);
                    if audio {
                        return;
                    }
                }
            })
            .await;
        }
        if let Some(a) = initial.iter().find(|f| !f.codec.is_video()) {
            seg.prime(a);
        }
        let mut file = SpoolFile {
            digester: inner.digester.clone(),
            open: None,
        };
        let mut out = Vec::new();
        let mut lagged = 0u64;
        let mut state = viewer.stream().subscribe_state();
        for f in &initial {
            seg.push(f, &mut out);
        }
        let why = loop {
            if let Err(e) = file.apply(&dir, &mut out, &jobs).await {
                break Ended::StreamEnded(format!("spool: {e}"));
            }
            if let StreamState::Ended(why) = state.borrow_and_update().clone() {
                break Ended::StreamEnded(why);
            }
            tokio::select! {
                f = viewer.rx.recv() => match f {
                    Ok(f) => seg.push(&f, &mut out),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        lagged += n;
                        tracing::warn!(recording.id = %id, frames = n, "recording.lagged: frames lost (the store or the disk is too slow)");
                    }
                    Err(broadcast::error::RecvError::Closed) => break Ended::StreamEnded("the stream ended".into()),
                },
                _ = state.changed() => {}
                _ = stop.wait_for(|s| *s) => break Ended::Stopped,
            }
        };
        drop(viewer);
        seg.finish(&mut out);
        if let Err(e) = file.apply(&dir, &mut out, &jobs).await {
            tracing::error!(recording.id = %id, error = %e, "recording.spool_failed");
        }
        drop(jobs);
        let _ = storer.await;
        let _ = tokio::fs::remove_dir(&dir).await;
        if seg.stats.dropped_video + seg.stats.refused + lagged > 0 {
            tracing::info!(recording.id = %id, dropped_video = seg.stats.dropped_video, dropped_audio = seg.stats.dropped_audio, refused = seg.stats.refused, lagged, "recording.losses");
        }
        close_recording(&inner, &id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(why)
    }
}

/// The segment file growing in the spool, digested as it is written (the storing task then
/// need not read it back).
struct SpoolFile {
    digester: Digester,
    open: Option<Growing>,
}

struct Growing {
    index: u32,
    path: PathBuf,
    /// Written by the digest thread (the fragments handed over, not copied); synced here.
    file: Arc<std::fs::File>,
    bytes: u64,
    /// The file's first bytes until its init section is known.
    head: Vec<u8>,
    init_bytes: Option<u64>,
    digests: Digesting,
}

/// How much of a segment's start is kept to find its init section.
const HEAD_MAX: usize = 1 << 20;

impl Growing {
    fn take(&mut self, d: Vec<u8>) -> std::io::Result<()> {
        if let Some(e) = self.digests.failed() {
            return Err(std::io::Error::other(format!(
                "spool {}: {e}",
                self.path.display()
            )));
        }
        if self.init_bytes.is_none() && self.head.len() < HEAD_MAX {
            self.head.extend_from_slice(&d);
            if let Some(n) = init_len(&self.head) {
                self.init_bytes = Some(n as u64);
                self.head = Vec::new();
            }
        }
        self.bytes += d.len() as u64;
        self.digests.update(d);
        Ok(())
    }

    async fn written(self) -> std::io::Result<Written> {
        let (sha256, sm3) =
            self.digests.finish().await.map_err(|e| {
                std::io::Error::other(format!("spool {}: {e}", self.path.display()))
            })?;
        Ok(Written {
            bytes: self.bytes,
            init_bytes: self.init_bytes.unwrap_or(self.bytes),
            sha256,
            sm3,
        })
    }
}

impl SpoolFile {
    /// Carry out the segmenter's outputs.
    async fn apply(
        &mut self,
        dir: &Path,
        out: &mut Vec<Output>,
        jobs: &mpsc::UnboundedSender<(PathBuf, SpoolInfo)>,
    ) -> std::io::Result<()> {
        for o in out.drain(..) {
            match o {
                Output::Begin { index } => {
                    let path = dir.join(format!("{index:06}.part"));
                    let file = Arc::new(
                        shouhu_storage::private_fs::create_file_async(&path)
                            .await?
                            .into_std()
                            .await,
                    );
                    self.open = Some(Growing {
                        index,
                        path,
                        file: file.clone(),
                        bytes: 0,
                        head: Vec::new(),
                        init_bytes: None,
                        digests: self.digester.begin_writing(file),
                    });
                }
                Output::Data(d) => {
                    if let Some(g) = &mut self.open {
                        g.take(d)?;
                    }
                }
                Output::End(info) => {
                    let Some(g) = self.open.take() else {
                        continue;
                    };
                    let (index, path) = (g.index, g.path.clone());
                    if info.end_90k <= info.start_90k {
                        // Nothing in it (the stream stopped right after a cut).
                        drop(g);
                        let _ = tokio::fs::remove_file(&path).await;
                        continue;
                    }
                    // Every fragment written (and digested), then on disk.
                    let f = g.file.clone();
                    let written = g.written().await?;
                    tokio::task::spawn_blocking(move || f.sync_data())
                        .await
                        .map_err(std::io::Error::other)??;
                    let done = dir.join(format!("{index:06}.done"));
                    let mut spool = SpoolInfo::from(&info);
                    spool.written = Some(written);
                    // The sidecar on disk before the file is named done, and both names on
                    // disk before the segment is handed on.
                    let sidecar = done.with_extension("json");
                    let json = serde_json::to_vec(&spool).unwrap_or_default();
                    tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        let mut f = shouhu_storage::private_fs::create_file(&sidecar)?;
                        f.write_all(&json)?;
                        f.sync_all()
                    })
                    .await
                    .map_err(std::io::Error::other)??;
                    tokio::fs::rename(&path, &done).await?;
                    shouhu_storage::blob::sync_dir(dir).await?;
                    let _ = jobs.send((done, spool));
                }
            }
        }
        Ok(())
    }
}

//! Background work around recordings: the start-up reconcile, link suggestions when a
//! recording closes, always-on recorders, the retention job and the disk-space watermark.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use shouhu_media::recorder::Trigger;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::recordings::Recording;
use tokio::sync::watch;

use crate::state::AppState;

fn system(action: &str, at_ms: i64) -> AuditEntry {
    AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("system".into()),
            ip: None,
        },
        action,
        at_ms,
    )
}

/// What one retention run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Recordings deleted (files, then index rows).
    pub deleted: Vec<String>,
    /// Recordings whose files could not all be deleted (claimed, kept in the index and
    /// resumed by the next run).
    pub failed: Vec<String>,
    /// Recordings marked as expired that a hold, a link or a longer retention saved before
    /// they were claimed: nothing of them was deleted.
    pub kept: Vec<String>,
}

/// Recordings marked per retention period in one run (the next run takes the rest).
pub const RETENTION_BATCH_PER_PERIOD: i64 = 1_000;

/// Where a retention run stands, told to a [`RetentionHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionStep {
    /// The mark transaction committed; these recordings are marked, none is claimed yet.
    Marked(Vec<String>),
    /// This recording is claimed; its files are about to be deleted.
    Claimed(String),
}

/// Code a test runs between the steps of a retention run (see [`retention_run_with_hook`]).
pub type RetentionHook =
    dyn Fn(RetentionStep) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// One run of the retention job at `now_ms`: every closed recording past its org unit's
/// retention that no hold and no link to an open case keeps loses its segment files, then its
/// index rows (audited `recording.delete`, logged). The steps and why a hold or a link that
/// arrives during the run always wins are in [`shouhu_storage::retention`]:
///
/// 1. recordings claimed by an earlier, interrupted run are finished first;
/// 2. the expired recordings are marked in one transaction, at most
///    [`RETENTION_BATCH_PER_PERIOD`] per distinct retention period, each period with its own
///    cutoff (a unit keeping recordings longer never holds up another's);
/// 3. each marked recording is claimed under its row lock, re-checking the mark and the
///    conditions; one that a hold, a link or a longer retention saved meanwhile is kept;
/// 4. a claimed recording's files are deleted, then its rows.
pub async fn retention_run(state: &AppState, now_ms: i64) -> anyhow::Result<RetentionReport> {
    retention_run_with_hook(state, now_ms, None).await
}

/// [`retention_run`], calling `hook` after the mark transaction and after each claim, so a
/// test can set a hold or a link exactly there. Production passes `None`.
pub async fn retention_run_with_hook(
    state: &AppState,
    now_ms: i64,
    hook: Option<&RetentionHook>,
) -> anyhow::Result<RetentionReport> {
    let repo = state.db.recordings();
    let default_days = state.cfg.recording.retention_days;
    let mut report = RetentionReport::default();
    for r in repo.deleting().await? {
        delete_claimed(state, &r, now_ms, &mut report).await?;
    }
    let marked = repo
        .mark_expired(now_ms, default_days, RETENTION_BATCH_PER_PERIOD)
        .await?;
    if let Some(hook) = hook {
        hook(RetentionStep::Marked(
            marked.iter().map(|r| r.id.clone()).collect(),
        ))
        .await;
    }
    for r in marked {
        if !repo.claim_for_deletion(&r.id, now_ms, default_days).await? {
            tracing::info!(recording.id = %r.id, "recording.retention_kept: held or linked since it was marked");
            report.kept.push(r.id);
            continue;
        }
        if let Some(hook) = hook {
            hook(RetentionStep::Claimed(r.id.clone())).await;
        }
        delete_claimed(state, &r, now_ms, &mut report).await?;
    }
    Ok(report)
}

/// Steps 3 and 4 for a claimed recording: its segment files, then its rows.
async fn delete_claimed(
    state: &AppState,
    r: &Recording,
    now_ms: i64,
    report: &mut RetentionReport,
) -> anyhow::Result<()> {
    let segs = state.db.recordings().segments(&r.id, None, None).await?;
    for s in &segs {
        if let Err(e) = state.blobs.delete(&s.blob_key).await {
            tracing::error!(recording.id = %r.id, key = %s.blob_key, error = %e, "recording.delete_failed");
            report.failed.push(r.id.clone());
            return Ok(());
        }
    }
    let audit = system("recording.delete", now_ms).details(serde_json::json!({
        "reason": "retention", "device_id": r.device_id, "started_at_ms": r.started_at_ms,
        "ended_at_ms": r.ended_at_ms, "segments": r.segment_count, "bytes": r.bytes,
    }));
    if state.db.recordings().delete(&r.id, &audit).await? {
        tracing::info!(recording.id = %r.id, device.id = %r.device_id, started_at_ms = r.started_at_ms, segments = r.segment_count, bytes = r.bytes, "recording.deleted: retention expired");
        report.deleted.push(r.id.clone());
    }
    Ok(())
}

/// Free space of the data directory's file system, as a percentage.
pub fn free_percent(state: &AppState) -> Option<f64> {
    let s = rustix::fs::statvfs(&state.cfg.server.data_dir).ok()?;
    (s.f_blocks > 0).then(|| s.f_bavail as f64 * 100.0 / s.f_blocks as f64)
}

/// Check the watermark: below `recording.min_free_percent` raise the alert (a log line at
/// error level, the `shouhu_recording_disk_low` gauge, `low_disk` in `GET /recordings/status`);
/// nothing is deleted. Returns whether the disk is low.
pub fn disk_check(state: &AppState) -> bool {
    let Some(free) = free_percent(state) else {
        return false;
    };
    let low = free < state.cfg.recording.min_free_percent;
    let was = state.low_disk.swap(low, Ordering::Relaxed);
    metrics::gauge!("shouhu_recording_disk_free_percent").set(free);
    metrics::gauge!("shouhu_recording_disk_low").set(if low { 1.0 } else { 0.0 });
    if low && !was {
        tracing::error!(free_percent = free, threshold = state.cfg.recording.min_free_percent, data_dir = %state.cfg.server.data_dir.display(),
            "recording.disk_low: free space below the watermark; recordings continue, nothing is deleted — add storage or shorten retention");
    } else if !low && was {
        tracing::info!(free_percent = free, "recording.disk_ok");
    }
    low
}

/// Start recording the always-on recorders that are online and not yet recorded.
pub async fn always_on_tick(state: &AppState) -> anyhow::Result<()> {
    let want = state.db.recordings().always_on().await?;
    let active = state.recorder.active();
    for (device, channel) in want {
        let online = state.sip.access(&device).is_some_and(|a| a.online);
        let running = active.iter().any(|a| {
            a.device_id == device
                && a.channel_id == channel
                && a.triggers.contains(&Trigger::Always)
        });
        if online && !running {
            let rec = state.recorder.clone();
            tokio::spawn(async move {
                if let Err(e) = rec.start(&device, &channel, Trigger::Always, None).await {
                    tracing::warn!(device.id = %device, channel.id = %channel, error = %e, "recording.always_on_failed");
                }
            });
        }
    }
    Ok(())
}

/// Reconcile the spool and the index (before anything records), then start the background
/// loops; they end when `stop` turns true.
pub async fn start(state: &AppState, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    state
        .recorder
        .reconcile()
        .await
        .map_err(|e| anyhow::anyhow!("recording start-up check: {e}"))?;
    {
        let st = state.clone();
        state.recorder.on_closed(std::sync::Arc::new(move |r| {
            let st = st.clone();
            // Positions reach the database in batches: wait for the last ones.
            let delay = Duration::from_millis(st.cfg.dispatch.history_flush_ms + 1_000);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = crate::routes::recordings::suggest_links(&st, &r).await {
                    tracing::warn!(recording.id = %r.id, error = %e, "recording.suggest_failed");
                }
            });
        }));
    }
    let every = |secs: u64| Duration::from_secs(secs.max(1));
    let st = state.clone();
    let mut rx = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every(st.cfg.recording.retention_interval_secs));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = rx.wait_for(|v| *v) => break,
            }
            disk_check(&st);
            if let Err(e) = retention_run(&st, st.now()).await {
                tracing::warn!(error = %e, "recording retention run failed");
            }
        }
    });
    let st = state.clone();
    let mut rx = stop;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = rx.wait_for(|v| *v) => break,
            }
            if st.low_disk.load(Ordering::Relaxed) {
                // Re-check often while low, so the alert clears soon after space is freed.
                disk_check(&st);
            }
            if let Err(e) = always_on_tick(&st).await {
                tracing::warn!(error = %e, "always-on recording check failed");
            }
        }
    });
    Ok(())
}

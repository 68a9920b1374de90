//! Background work around recordings: the start-up reconcile, link suggestions when a
//! recording closes, always-on recorders, the retention job and the disk-space watermark.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use shouhu_media::recorder::Trigger;
use shouhu_storage::audit::{Actor, AuditEntry};
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
    /// Recordings whose files could not all be deleted (kept in the index, retried next run).
    pub failed: Vec<String>,
}

/// One run of the retention job at `now_ms`: every closed recording past its org unit's
/// retention that no hold keeps loses its segment files, then its index rows (audited
/// `recording.delete`, logged). A held recording is never touched.
pub async fn retention_run(state: &AppState, now_ms: i64) -> anyhow::Result<RetentionReport> {
    let mut report = RetentionReport::default();
    let expired = state
        .db
        .recordings()
        .expired(now_ms, state.cfg.recording.retention_days)
        .await?;
    for r in expired {
        let segs = state.db.recordings().segments(&r.id, None, None).await?;
        let mut ok = true;
        for s in &segs {
            if let Err(e) = state.blobs.delete(&s.blob_key).await {
                tracing::error!(recording.id = %r.id, key = %s.blob_key, error = %e, "recording.delete_failed");
                ok = false;
                break;
            }
        }
        if !ok {
            report.failed.push(r.id);
            continue;
        }
        let audit = system("recording.delete", now_ms).details(serde_json::json!({
            "reason": "retention", "device_id": r.device_id, "started_at_ms": r.started_at_ms,
            "ended_at_ms": r.ended_at_ms, "segments": r.segment_count, "bytes": r.bytes,
        }));
        if state.db.recordings().delete(&r.id, &audit).await? {
            tracing::info!(recording.id = %r.id, device.id = %r.device_id, started_at_ms = r.started_at_ms, segments = r.segment_count, bytes = r.bytes, "recording.deleted: retention expired");
            report.deleted.push(r.id);
        }
    }
    Ok(report)
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

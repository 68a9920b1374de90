//! Recordings (录像): search, playback (HLS), export with a signed manifest, links to
//! inspections (业务数据关联) with the system's suggestions, legal holds, retention per org
//! unit, on-demand recording, the evidence package of an inspection.
//!
//! Playback: `playlist.m3u8` lists the segments overlapping the range; each segment file is
//! self-contained, so the playlist maps its init section (`EXT-X-MAP`) and its fragments
//! separately (`…/init.mp4`, `…/media.m4s`). Browsers cannot play G.711 in MP4 (nor Opus in
//! HLS everywhere): when the recording's audio is G.711 or Opus (a phone app's, a dispatch
//! call's) the playlist points at the AAC variant (`?audio=aac`), which
//! ffmpeg makes from the stored segment on the way out (video copied; the stored file is never
//! changed). Segment URLs carry a media token bound to the recording, so players need no header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_media::mp4::recover::{layout, Layout};
use shouhu_media::recorder::{ActiveRecording, Trigger};
use shouhu_storage::evidence::{genesis, Manifest, SignedHead};
use shouhu_storage::recordings::{Recording, RecordingFilter, RecordingLink, Segment};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::Page;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::inspections::Problems;
use crate::state::AppState;

/// The recording routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(active_recordings))
        .routes(routes!(start_recording))
        .routes(routes!(stop_recording))
        .routes(routes!(get_recording))
        .routes(routes!(playlist))
        .routes(routes!(segment_init))
        .routes(routes!(segment_media))
        .routes(routes!(export_mp4))
        .routes(routes!(manifest))
        .routes(routes!(link, list_links))
        .routes(routes!(unlink))
        .routes(routes!(suggest))
        .routes(routes!(hold))
        .routes(routes!(set_retention))
        .routes(routes!(evidence_package))
        .routes(routes!(recording_status))
        .routes(routes!(device_records))
        .routes(routes!(download))
        .routes(routes!(set_always))
}

/// Footage stored on a device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRecord {
    /// Channel id.
    pub channel_id: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// Name the device gives it.
    pub name: Option<String>,
    /// Path on the device.
    pub file_path: Option<String>,
    /// `time`, `alarm`, `manual`.
    pub kind: Option<String>,
    /// Size, bytes.
    pub file_size: Option<u64>,
    /// The recording it was downloaded into already, if any.
    pub recording_id: Option<String>,
}

/// A range of a device's footage.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// Channel (default: the recorder's first catalog channel).
    pub channel_id: Option<String>,
    /// From, UTC ms.
    pub from: i64,
    /// To, UTC ms (at most 7 days after `from`).
    pub to: i64,
}

/// The officer a recorder was bound to at `at_ms` (its binding history).
async fn officer_at(state: &AppState, device: &str, at_ms: i64) -> ApiResult<Option<String>> {
    Ok(state
        .db
        .recorders()
        .bindings(device)
        .await?
        .into_iter()
        .find(|b| b.bound_at_ms <= at_ms && b.unbound_at_ms.is_none_or(|u| u > at_ms))
        .map(|b| b.officer_id))
}

/// The channel a device is asked for (`RecordInfo`, a download): given, it must parse as a
/// channel code and be in the recorder's catalog (400/422 otherwise, before anything is sent);
/// else the recorder's first catalog channel.
async fn device_channel(state: &AppState, device: &str, c: Option<String>) -> ApiResult<String> {
    use crate::routes::streams::{parse_channel, parse_device, require_in_catalog};
    let device = parse_device(device)?;
    if let Some(c) = &c {
        let channel = parse_channel(c)?;
        if channel.is_named() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_channel",
                format!("channel_id {channel} is published, not stored on the device"),
            ));
        }
        require_in_catalog(state, &device, &channel).await?;
    }
    channel_or_first(state, device.as_str(), c, None).await
}

/// The channel given, else the recorder's first catalog channel, else `fallback`.
async fn channel_or_first(
    state: &AppState,
    device: &str,
    c: Option<String>,
    fallback: Option<&str>,
) -> ApiResult<String> {
    Ok(match c {
        Some(c) => c,
        None => state
            .db
            .recorders()
            .channels(device)
            .await?
            .first()
            .map(|c| c.channel_id.clone())
            .or(fallback.map(str::to_string))
            .ok_or_else(|| {
                crate::routes::auth::field_error(
                    "channel_id",
                    "the recorder reported no channel; give channel_id",
                )
            })?,
    })
}

/// The footage a recorder stored on its card in a time range (GB/T 28181 `RecordInfo`, asked
/// of the device now; every page of its answer collected). `504` when the device does not
/// answer, `409` when it is not registered.
#[utoipa::path(get, path = "/recorders/{id}/records", tag = "recordings", params(("id" = String, Path), RecordsQuery),
    responses((status = 200, body = Vec<DeviceRecord>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn device_records(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
) -> ApiResult<Json<Vec<DeviceRecord>>> {
    caller.require(Perm::RecordingView)?;
    crate::routes::streams::parse_device(&id)?;
    state.db.recorders().get(&caller.scope, &id).await?;
    if q.to <= q.from || q.to - q.from > 7 * 86_400_000 {
        return Err(crate::routes::auth::field_error(
            "to",
            "must be after from, by at most 7 days",
        ));
    }
    let channel = device_channel(&state, &id, q.channel_id).await?;
    if state.sip.access(&id).is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offline",
            "the recorder is not registered",
        ));
    }
    let items = state
        .sip
        .record_info(
            &id,
            &channel,
            q.from,
            q.to,
            std::time::Duration::from_secs(15),
        )
        .await
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "no_answer",
                "the recorder did not answer the RecordInfo query",
            )
        })?;
    let mut out = Vec::new();
    for i in items {
        let f = RecordingFilter {
            device_id: Some(id.clone()),
            from_ms: Some(i.start_ms),
            to_ms: Some(i.end_ms),
            ..Default::default()
        };
        let have = state
            .db
            .recordings()
            .search(&caller.scope, &f, PageRequest::new(Some(1), Some(50)))
            .await?
            .items
            .into_iter()
            .find(|r| r.source == "device" && r.started_at_ms == i.start_ms)
            .map(|r| r.id);
        out.push(DeviceRecord {
            channel_id: i.device_id,
            start_ms: i.start_ms,
            end_ms: i.end_ms,
            name: i.name,
            file_path: i.file_path,
            kind: i.kind,
            file_size: i.file_size,
            recording_id: have,
        });
    }
    Ok(Json(out))
}

/// Footage to download from a device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadInput {
    /// Recorder.
    pub device_id: String,
    /// Channel (default: the recorder's first catalog channel).
    pub channel_id: Option<String>,
    /// From, UTC ms (a record's start).
    pub start: i64,
    /// To, UTC ms (at most 24 h after `start`).
    pub end: i64,
    /// Times real time the device is asked to send (1–16, default 4).
    pub speed: Option<u32>,
}

/// Download footage stored on a recorder into the index (GB/T 28181 `INVITE` with
/// `s=Download`), as a recording of its own whose time 0 is `start`, with the officer the
/// recorder was bound to then. Answers once the first picture arrived; the rest follows in the
/// background (resumed where it stopped if the stream drops), then the recording is closed and
/// signed. Audited (`recording.download`).
#[utoipa::path(post, path = "/recordings/download", tag = "recordings", request_body = DownloadInput,
    responses((status = 200, body = Started), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(i): ApiJson<DownloadInput>,
) -> ApiResult<Json<Started>> {
    caller.require(Perm::RecordingReview)?;
    let recorder = state
        .db
        .recorders()
        .get(&caller.scope, &i.device_id)
        .await?;
    if i.end <= i.start || i.end - i.start > 86_400_000 {
        return Err(crate::routes::auth::field_error(
            "end",
            "must be after start, by at most 24 hours",
        ));
    }
    if i.speed.is_some_and(|s| !(1..=16).contains(&s)) {
        return Err(crate::routes::auth::field_error("speed", "1 to 16"));
    }
    let channel = device_channel(&state, &i.device_id, i.channel_id).await?;
    if state.sip.access(&i.device_id).is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offline",
            "the recorder is not registered",
        ));
    }
    let officer = officer_at(&state, &i.device_id, i.start).await?;
    let id = state
        .recorder
        .download(
            &shouhu_media::recorder::DeviceDownload {
                device_id: i.device_id.clone(),
                channel_id: channel,
                start_ms: i.start,
                end_ms: i.end,
                speed: i.speed.unwrap_or(4),
                officer_id: officer,
                org_unit_id: recorder.org_unit_id,
            },
            &caller.audit("recording.download", state.now()),
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_media", e.to_string()))?;
    Ok(Json(Started { recording_id: id }))
}

/// The recorder's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingStatus {
    /// Channels being recorded.
    pub active: Vec<ActiveRecording>,
    /// Free space of the data directory, percent.
    pub free_percent: Option<f64>,
    /// Below the `recording.min_free_percent` watermark (the alert is raised; nothing is
    /// deleted).
    pub low_disk: bool,
}

/// What is recording, and the disk-space alert.
#[utoipa::path(get, path = "/recordings/status", tag = "recordings", responses((status = 200, body = RecordingStatus)))]
async fn recording_status(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RecordingStatus>> {
    caller.require(Perm::RecordingView)?;
    let low_disk = crate::recording_jobs::disk_check(&state);
    Ok(Json(RecordingStatus {
        active: state.recorder.active(),
        free_percent: crate::recording_jobs::free_percent(&state),
        low_disk,
    }))
}

/// Always-on recording of a recorder.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlwaysInput {
    /// Record whenever the recorder is online.
    pub always: bool,
}

/// Set a recorder to record whenever it is online (or stop that). Audited
/// (`recorder.record_always`).
#[utoipa::path(put, path = "/recorders/{id}/recording", tag = "recordings", params(("id" = String, Path)), request_body = AlwaysInput,
    responses((status = 200), (status = 404, body = ErrorBody)))]
async fn set_always(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<AlwaysInput>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::DeviceManage)?;
    state
        .db
        .recordings()
        .set_always(
            &caller.scope,
            &id,
            i.always,
            &caller.audit("recorder.record_always", state.now()),
        )
        .await?;
    if i.always {
        crate::recording_jobs::always_on_tick(&state).await?;
    } else {
        for a in state
            .recorder
            .active()
            .into_iter()
            .filter(|a| a.device_id == id)
        {
            let rec = state.recorder.clone();
            tokio::spawn(
                async move { rec.stop(&a.device_id, &a.channel_id, Trigger::Always).await },
            );
        }
    }
    Ok(StatusCode::OK)
}

/// The import route (its own body limit, `recording.max_import_bytes`).
pub(crate) fn import_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// Where an imported file comes from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The recorder that filmed it.
    pub device_id: String,
    /// Its channel (default: the recorder's first catalog channel, else `1`).
    pub channel_id: Option<String>,
    /// When filming began, UTC ms. Default: the file's own creation time (`mvhd`), which
    /// cameras often write in local time — give it when known.
    pub started_at: Option<i64>,
    /// The file's name on the camera (kept in the audit row).
    pub file_name: Option<String>,
}

/// Import a camera's MP4 file (as a docking station delivers it; the body is the file): cut
/// into segments like a live recording, stored, indexed with the same digests and chain and
/// signed, with the officer the recorder was bound to at that time. The same file twice is
/// refused (409 `duplicate` with `recording_id`); a file that is not a readable MP4 with H.264
/// or H.265 video is refused (422) with the reason, and nothing is kept. Audited
/// (`recording.import`).
#[utoipa::path(post, path = "/recordings/import", tag = "recordings", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "video/mp4"),
    responses((status = 200, body = Recording), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Recording>> {
    caller.require(Perm::RecordingReview)?;
    let recorder = state
        .db
        .recorders()
        .get(&caller.scope, &q.device_id)
        .await?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let note = format!("sha256:{sha}");
    if let Some(existing) = state.db.recordings().by_note(&note).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            "this file was imported already",
        )
        .with("recording_id", serde_json::json!(existing)));
    }
    let file = body.to_vec();
    let created = shouhu_media::mp4::demux::read(&file)
        .map_err(|e| crate::routes::auth::field_error("file", &e.to_string()))?
        .created_ms;
    let started = q.started_at.or(created).ok_or_else(|| {
        crate::routes::auth::field_error(
            "started_at",
            "the file does not say when it was filmed: give started_at",
        )
    })?;
    // A camera that never reported a catalog (files from a docking station): the camera itself.
    let channel = channel_or_first(&state, &q.device_id, q.channel_id, Some(&q.device_id)).await?;
    let officer = officer_at(&state, &q.device_id, started).await?;
    let audit = caller
        .audit("recording.import", state.now())
        .details(serde_json::json!({"file_name": q.file_name}));
    let r = state
        .recorder
        .import(
            &shouhu_media::recorder::Import {
                device_id: q.device_id.clone(),
                channel_id: channel,
                officer_id: officer,
                org_unit_id: recorder.org_unit_id.clone(),
                started_at_ms: started,
                source: "upload".into(),
                note,
            },
            &file,
            &audit,
        )
        .await
        .map_err(|e| match e {
            shouhu_media::recorder::ImportError::Storage(m) => ApiError::internal(m),
            other => crate::routes::auth::field_error("file", &other.to_string()),
        })?;
    let r = state.db.recordings().get(&caller.scope, &r.id).await?;
    Ok(Json(r))
}

/// Recording search.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Recorder (device id).
    pub device_id: Option<String>,
    /// Officer.
    pub officer_id: Option<String>,
    /// Org unit (and its subtree).
    pub org_unit_id: Option<String>,
    /// Enterprise of a linked inspection.
    pub enterprise_id: Option<String>,
    /// Linked inspection.
    pub inspection_id: Option<String>,
    /// Recordings overlapping from this instant (UTC ms).
    pub from: Option<i64>,
    /// … up to this instant (UTC ms).
    pub to: Option<i64>,
    /// `recording` or `closed`.
    pub status: Option<String>,
    /// Only held (`true`) or un-held (`false`).
    pub held: Option<bool>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// Find recordings in scope, newest first.
#[utoipa::path(get, path = "/recordings", tag = "recordings", params(SearchQuery),
    responses((status = 200, body = Page<Recording>), (status = 422, body = ErrorBody)))]
async fn list_recordings(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Page<Recording>>> {
    caller.require(Perm::RecordingView)?;
    let mut p = Problems::default();
    if q.status
        .as_deref()
        .is_some_and(|s| s != "recording" && s != "closed")
    {
        p.add("status", "must be recording or closed");
    }
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t < f {
            p.add("to", "must not be before from");
        }
    }
    p.finish()?;
    let f = RecordingFilter {
        device_id: q.device_id,
        officer_id: q.officer_id,
        org_unit_id: q.org_unit_id,
        enterprise_id: q.enterprise_id,
        inspection_id: q.inspection_id,
        from_ms: q.from,
        to_ms: q.to,
        status: q.status,
        held: q.held,
    };
    let page = state
        .db
        .recordings()
        .search(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, |r| r)))
}

/// Channels being recorded now.
#[utoipa::path(get, path = "/recordings/active", tag = "recordings",
    responses((status = 200, body = Vec<ActiveRecording>)))]
async fn active_recordings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ActiveRecording>>> {
    caller.require(Perm::RecordingView)?;
    Ok(Json(state.recorder.active()))
}

/// A channel to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRef {
    /// Recorder (device id).
    pub device_id: String,
    /// Channel id (the catalog's).
    pub channel_id: String,
}

/// A recording started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// The recording.
    pub recording_id: String,
}

/// The caller may start or stop recording the channel; the ids parse (400 otherwise). Starting
/// also needs the channel in the recorder's catalog (or a named channel).
async fn check_channel(
    state: &AppState,
    caller: &Caller,
    c: &ChannelRef,
    starting: bool,
) -> ApiResult<()> {
    if caller.require(Perm::RecordingReview).is_err() {
        caller.require(Perm::DispatchCommand)?;
    }
    use crate::routes::streams::{parse_channel, parse_device, require_in_catalog};
    let (device, channel) = (parse_device(&c.device_id)?, parse_channel(&c.channel_id)?);
    state
        .db
        .recorders()
        .get(&caller.scope, device.as_str())
        .await?;
    if starting {
        require_in_catalog(state, &device, &channel).await?;
    }
    Ok(())
}

/// Record a channel on demand (until stopped). Waits for the first picture; `504` when the
/// device sends none in time. Audited (`recording.start`).
#[utoipa::path(post, path = "/recordings/start", tag = "recordings", request_body = ChannelRef,
    responses((status = 200, body = Started), (status = 404, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn start_recording(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(c): ApiJson<ChannelRef>,
) -> ApiResult<Json<Started>> {
    check_channel(&state, &caller, &c, true).await?;
    let audit = caller.audit("recording.start", state.now());
    let id = state
        .recorder
        .start(&c.device_id, &c.channel_id, Trigger::OnDemand, Some(audit))
        .await
        .map_err(|e| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_media", e.to_string()))?;
    Ok(Json(Started { recording_id: id }))
}

/// Stop an on-demand recording (other triggers keep it going). Its last segment is stored and
/// the recording closed and signed before the answer. Audited (`recording.stop`).
#[utoipa::path(post, path = "/recordings/stop", tag = "recordings", request_body = ChannelRef,
    responses((status = 200, body = Started), (status = 404, body = ErrorBody)))]
async fn stop_recording(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(c): ApiJson<ChannelRef>,
) -> ApiResult<Json<Started>> {
    check_channel(&state, &caller, &c, false).await?;
    let id = state
        .recorder
        .stop(&c.device_id, &c.channel_id, Trigger::OnDemand)
        .await
        .ok_or_else(|| ApiError::not_found("on-demand recording of this channel"))?;
    let audit = caller
        .audit("recording.stop", state.now())
        .target("recording", &id);
    state.db.audit().record(&audit).await?;
    Ok(Json(Started { recording_id: id }))
}

/// A recording in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingDetail {
    /// The recording.
    #[serde(flatten)]
    pub recording: Recording,
    /// Its segments.
    pub segments: Vec<Segment>,
    /// Its links to inspections (suggested ones included).
    pub links: Vec<RecordingLink>,
    /// Retention that applies, days.
    pub retention_days: i64,
    /// When retention ends, ms (none while recording).
    pub expires_at_ms: Option<i64>,
}

/// One recording with its segments and links.
#[utoipa::path(get, path = "/recordings/{id}", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, body = RecordingDetail), (status = 404, body = ErrorBody)))]
async fn get_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordingDetail>> {
    caller.require(Perm::RecordingView)?;
    let recording = state.db.recordings().get(&caller.scope, &id).await?;
    let segments = state.db.recordings().segments(&id, None, None).await?;
    let links = state.db.recordings().links(&id).await?;
    let retention_days = state
        .db
        .recordings()
        .retention_days(&recording.org_unit_id, state.cfg.recording.retention_days)
        .await?;
    let expires_at_ms = (recording.status == "closed")
        .then(|| recording.ended_at_ms.unwrap_or(recording.started_at_ms))
        .map(|e| e + retention_days * shouhu_storage::recordings::DAY_MS);
    Ok(Json(RecordingDetail {
        recording,
        segments,
        links,
        retention_days,
        expires_at_ms,
    }))
}

/// A time range of a recording.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// From this instant (UTC ms); default the start.
    pub from: Option<i64>,
    /// To this instant (UTC ms); default the end.
    pub to: Option<i64>,
    /// `aac` (G.711 or Opus transcoded for browsers) or `original`; default `aac` when the
    /// audio is G.711 or Opus.
    pub audio: Option<String>,
    /// Media token (from the playlist's URLs).
    pub media_token: Option<String>,
}

/// The range on the recording's 90 kHz timeline.
fn range_90k(r: &Recording, q: &RangeQuery) -> ApiResult<(Option<i64>, Option<i64>)> {
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t <= f {
            return Err(crate::routes::auth::field_error("to", "must be after from"));
        }
    }
    let at = |ms: i64| (ms - r.started_at_ms).max(0) * 90;
    Ok((q.from.map(at), q.to.map(at)))
}

async fn segments_of(
    state: &AppState,
    r: &Recording,
    q: &RangeQuery,
) -> ApiResult<(Vec<Segment>, Option<i64>, Option<i64>)> {
    let (from, to) = range_90k(r, q)?;
    let segs = state.db.recordings().segments(&r.id, from, to).await?;
    if segs.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no footage of this recording in that range",
        ));
    }
    Ok((segs, from, to))
}

fn aac_wanted(r: &Recording, q: &RangeQuery) -> ApiResult<bool> {
    let convert = matches!(r.audio_codec.as_deref(), Some("g711a" | "g711u" | "opus"));
    match q.audio.as_deref() {
        None => Ok(convert),
        Some("aac") => Ok(convert),
        Some("original") => Ok(false),
        Some(_) => Err(crate::routes::auth::field_error(
            "audio",
            "must be aac or original",
        )),
    }
}

/// HLS playlist (fMP4, VOD) of a time range: the overlapping segments, starting at `from`.
/// Audited (`recording.play`) — the start of a playback.
#[utoipa::path(get, path = "/recordings/{id}/playlist.m3u8", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, content_type = "application/vnd.apple.mpegurl"), (status = 404, body = ErrorBody)))]
async fn playlist(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (segs, from, _) = segments_of(&state, &r, &q).await?;
    let aac = aac_wanted(&r, &q)?;
    let prefix = format!("/api/v1/recordings/{id}/");
    let token = crate::auth::sign_media_token(
        state.media_key.as_ref(),
        &caller.account.id,
        &prefix,
        state.now() + 6 * 3_600_000,
    );
    let query = format!(
        "?media_token={token}{}",
        if aac { "&audio=aac" } else { "&audio=original" }
    );
    let secs = |t: i64| t as f64 / 90_000.0;
    let target = segs
        .iter()
        .map(|s| secs(s.end_90k - s.start_90k).ceil() as i64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut m = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    if let Some(f) = from {
        let off = secs((f - segs[0].start_90k).max(0));
        if off > 0.0 {
            m.push_str(&format!("#EXT-X-START:TIME-OFFSET={off:.3},PRECISE=YES\n"));
        }
    }
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            // Each file has its own init section; transcoded audio restarts at 0 per file.
            m.push_str("#EXT-X-DISCONTINUITY\n");
        }
        m.push_str(&format!(
            "#EXT-X-MAP:URI=\"segments/{seq}/init.mp4{query}\"\n#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{dur:.3},\nsegments/{seq}/media.m4s{query}\n",
            seq = s.seq,
            dur = secs(s.end_90k - s.start_90k),
            pdt = chrono::DateTime::from_timestamp_millis(s.start_ms)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        ));
    }
    m.push_str("#EXT-X-ENDLIST\n");
    let audit = caller
        .audit("recording.play", state.now())
        .target("recording", &id)
        .details(serde_json::json!({"from": q.from, "to": q.to, "device_id": r.device_id}));
    state.db.audit().record(&audit).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        m,
    )
        .into_response())
}

/// A stored segment (or its AAC variant) with its layout.
async fn segment_file(
    state: &AppState,
    caller: &Caller,
    id: &str,
    seq: i64,
    q: &RangeQuery,
) -> ApiResult<(Arc<Vec<u8>>, usize)> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, id).await?;
    let s = state.db.recordings().segment(id, seq).await?;
    let aac = aac_wanted(&r, q)?;
    if !aac {
        let data = state.blobs.get(&s.blob_key).await?;
        return Ok((Arc::new(data), s.init_bytes as usize));
    }
    segment_aac(state, id, seq, &s).await
}

/// A segment's AAC variant (transcoded once, kept while it is being played).
async fn segment_aac(
    state: &AppState,
    id: &str,
    seq: i64,
    s: &Segment,
) -> ApiResult<(Arc<Vec<u8>>, usize)> {
    let key = (id.to_string(), seq);
    if let Some(hit) = transcoded()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let data = state.blobs.get(&s.blob_key).await?;
    let out = to_aac(&data).await?;
    let init = layout(&out)
        .map(|l| l.init_len)
        .ok_or_else(|| ApiError::internal("the transcoded segment has no init section"))?;
    let v = (Arc::new(out), init);
    let mut cache = transcoded().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 32 {
        cache.clear();
    }
    cache.insert(key, v.clone());
    Ok(v)
}

type Transcoded = Mutex<HashMap<(String, i64), (Arc<Vec<u8>>, usize)>>;

/// Recently transcoded segments (a player asks for the init and the media of each).
fn transcoded() -> &'static Transcoded {
    static CACHE: OnceLock<Transcoded> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A segment with its G.711 or Opus audio as AAC (video copied), by ffmpeg.
async fn to_aac(data: &[u8]) -> ApiResult<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "mp4",
            "-i",
            "pipe:0",
            "-map",
            "0:v?",
            "-map",
            "0:a?",
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-b:a",
            "48k",
            "-ar",
            "16000",
            "-f",
            "mp4",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "pipe:1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("ffmpeg: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = data.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| ApiError::internal(format!("ffmpeg: {e}")))?;
    let _ = feed.await;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(ApiError::internal(format!(
            "transcoding the audio failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn media_response(ct: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

/// A segment's init section (HLS `EXT-X-MAP`).
#[utoipa::path(get, path = "/recordings/{id}/segments/{seq}/init.mp4", tag = "recordings",
    params(("id" = String, Path), ("seq" = i64, Path), RangeQuery),
    responses((status = 200, content_type = "video/mp4"), (status = 404, body = ErrorBody)))]
async fn segment_init(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    if !aac_wanted(&r, &q)? {
        // Only the init section is read from the store.
        let s = state.db.recordings().segment(&id, seq).await?;
        let init = state
            .blobs
            .get_range(&s.blob_key, 0, s.init_bytes as u64)
            .await?;
        return Ok(media_response("video/mp4", init));
    }
    let (data, init) = segment_file(&state, &caller, &id, seq, &q).await?;
    Ok(media_response(
        "video/mp4",
        data[..init.min(data.len())].to_vec(),
    ))
}

/// A segment's fragments (HLS media segment).
#[utoipa::path(get, path = "/recordings/{id}/segments/{seq}/media.m4s", tag = "recordings",
    params(("id" = String, Path), ("seq" = i64, Path), RangeQuery),
    responses((status = 200, content_type = "video/iso.segment"), (status = 404, body = ErrorBody)))]
async fn segment_media(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    let (data, init) = segment_file(&state, &caller, &id, seq, &q).await?;
    Ok(media_response(
        "video/iso.segment",
        data[init.min(data.len())..].to_vec(),
    ))
}

/// The export of a range: the first segment's init section and every fragment overlapping the
/// range, from consecutive segments with the same init section (a change of resolution ends
/// an export: export the rest separately). Returns the bytes, the segments used, the span.
async fn build_export(
    state: &AppState,
    r: &Recording,
    q: &RangeQuery,
) -> ApiResult<(Vec<u8>, Vec<Segment>, i64, i64)> {
    let (segs, from, to) = segments_of(state, r, q).await?;
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(i64::MAX));
    let mut out: Vec<u8> = Vec::new();
    let mut used = Vec::new();
    let mut init: Option<Vec<u8>> = None;
    let (mut span_start, mut span_end) = (i64::MAX, i64::MIN);
    for s in segs {
        let data = state.blobs.get(&s.blob_key).await?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
        if sha != s.sha256 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "integrity",
                format!(
                    "segment {} of the recording does not match its recorded digest: it was altered or damaged",
                    s.seq
                ),
            ));
        }
        let Some(Layout {
            init_len,
            fragments,
            ..
        }) = layout(&data)
        else {
            return Err(ApiError::internal(format!(
                "segment {} is not a fragmented MP4",
                s.seq
            )));
        };
        let this_init = &data[..init_len];
        match &init {
            None => {
                init = Some(this_init.to_vec());
                out.extend_from_slice(this_init);
            }
            Some(i) if i.as_slice() != this_init => {
                if used.is_empty() {
                    continue;
                }
                break;
            }
            Some(_) => {}
        }
        let mut any = false;
        for f in fragments {
            let (fs, fe) = (f.start_90k as i64, f.end_90k as i64);
            if fe > from && fs < to {
                out.extend_from_slice(&data[f.start..f.end]);
                span_start = span_start.min(fs);
                span_end = span_end.max(fe);
                any = true;
            }
        }
        if any {
            used.push(s);
        }
    }
    if used.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no footage of this recording in that range",
        ));
    }
    let ms = |t: i64| r.started_at_ms + t.div_euclid(90);
    Ok((out, used, ms(span_start), ms(span_end)))
}

/// The signed manifest of an export.
fn manifest_of(
    state: &AppState,
    r: &Recording,
    file: &[u8],
    used: &[Segment],
    from_ms: i64,
    to_ms: i64,
    chain_start: String,
) -> Manifest {
    let (sha, sm3) = shouhu_storage::evidence::digests(file);
    Manifest {
        format: "shouhu-manifest-v1".into(),
        recording_id: r.id.clone(),
        from_ms,
        to_ms,
        export_sha256: hex::encode(sha),
        export_sm3: hex::encode(sm3),
        export_bytes: file.len() as u64,
        chain_start,
        segments: used.iter().map(Segment::chained).collect(),
        head: r.head_signature.as_ref().map(|sig| SignedHead {
            segments: r.segment_count as u32,
            head: r.chain_link.clone(),
            signature: sig.clone(),
        }),
        public_key: String::new(),
        signature: String::new(),
    }
    .sign(&state.signer)
}

async fn chain_start(state: &AppState, r: &Recording, first: &Segment) -> ApiResult<String> {
    Ok(if first.seq == 0 {
        hex::encode(genesis(&r.id))
    } else {
        state
            .db
            .recordings()
            .segment(&r.id, first.seq - 1)
            .await?
            .link
    })
}

/// Parse `Range: bytes=a-b` against a length.
fn byte_range(headers: &HeaderMap, len: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let spec = v.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().map_err(|_| ())?,
            b.parse::<usize>()
                .map_err(|_| ())?
                .min(len.saturating_sub(1)),
        ),
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// MP4 export of a range as one file (`Range` requests supported); its manifest is at
/// `/recordings/{id}/manifest` with the same range. Audited (`recording.export`; not for
/// follow-up range requests).
#[utoipa::path(get, path = "/recordings/{id}/export.mp4", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, content_type = "video/mp4"), (status = 206, content_type = "video/mp4"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 416)))]
async fn export_mp4(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (file, used, from_ms, to_ms) = build_export(&state, &r, &q).await?;
    let len = file.len();
    let name = format!(
        "recording-{}-{}.mp4",
        r.device_id,
        chrono::DateTime::from_timestamp_millis(from_ms)
            .unwrap_or_default()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .format("%Y%m%d-%H%M%S")
    );
    let range = match byte_range(&headers, len) {
        Ok(r) => r,
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response())
        }
    };
    if range.is_none_or(|(s, _)| s == 0) {
        let audit = caller
            .audit("recording.export", state.now())
            .target("recording", &id)
            .details(
                serde_json::json!({"from": from_ms, "to": to_ms, "bytes": len,
                "segments": used.iter().map(|s| s.seq).collect::<Vec<_>>()}),
            );
        state.db.audit().record(&audit).await?;
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(match range {
        None => (h, Body::from(file)).into_response(),
        Some((s, e)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (
                StatusCode::PARTIAL_CONTENT,
                h,
                Body::from(file[s..=e].to_vec()),
            )
                .into_response()
        }
    })
}

/// The signed manifest of the export of the same range: the export's digests, the digests and
/// chain links of the segments it came from, the recording's signed chain head, and the
/// server's signature. `shouhu verify FILE MANIFEST` checks it offline.
#[utoipa::path(get, path = "/recordings/{id}/manifest", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (file, used, from_ms, to_ms) = build_export(&state, &r, &q).await?;
    let start = chain_start(&state, &r, &used[0]).await?;
    let m = manifest_of(&state, &r, &file, &used, from_ms, to_ms, start);
    let body = serde_json::to_vec_pretty(&m).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"manifest.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// A link to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    /// The inspection.
    pub inspection_id: String,
}

async fn reviewable(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Recording> {
    caller.require(Perm::RecordingReview)?;
    Ok(state.db.recordings().get(&caller.scope, id).await?)
}

/// Link a recording to an inspection (also confirms a suggestion). Audited (`recording.link`).
#[utoipa::path(post, path = "/recordings/{id}/links", tag = "recordings", params(("id" = String, Path)), request_body = LinkInput,
    responses((status = 200, body = Vec<RecordingLink>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<LinkInput>,
) -> ApiResult<Json<Vec<RecordingLink>>> {
    reviewable(&state, &caller, &id).await?;
    if state
        .db
        .inspections()
        .get(&caller.scope, &i.inspection_id)
        .await
        .is_err()
    {
        return Err(crate::routes::auth::field_error(
            "inspection_id",
            "no such inspection in your scope",
        ));
    }
    state
        .db
        .recordings()
        .set_link(
            &id,
            &i.inspection_id,
            "linked",
            &caller.audit("recording.link", state.now()),
        )
        .await?;
    Ok(Json(state.db.recordings().links(&id).await?))
}

/// The links of a recording, suggestions included.
#[utoipa::path(get, path = "/recordings/{id}/links", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, body = Vec<RecordingLink>), (status = 404, body = ErrorBody)))]
async fn list_links(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RecordingLink>>> {
    caller.require(Perm::RecordingView)?;
    state.db.recordings().get(&caller.scope, &id).await?;
    Ok(Json(state.db.recordings().links(&id).await?))
}

/// Unlink a recording from an inspection, or dismiss a suggestion. Audited
/// (`recording.unlink`).
#[utoipa::path(delete, path = "/recordings/{id}/links/{inspection_id}", tag = "recordings",
    params(("id" = String, Path), ("inspection_id" = String, Path)),
    responses((status = 200, body = Vec<RecordingLink>), (status = 404, body = ErrorBody)))]
async fn unlink(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, inspection_id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<RecordingLink>>> {
    reviewable(&state, &caller, &id).await?;
    state
        .db
        .recordings()
        .set_link(
            &id,
            &inspection_id,
            "dismissed",
            &caller.audit("recording.unlink", state.now()),
        )
        .await?;
    Ok(Json(state.db.recordings().links(&id).await?))
}

/// Look for inspections this recording may evidence (also done when a recording closes): an
/// inspection of the recording's officer, open during the recording, of an enterprise whose
/// geofence (else its location within `dispatch.enterprise_radius_m`) held one of the officer's
/// positions meanwhile. New suggestions await a reviewer.
#[utoipa::path(post, path = "/recordings/{id}/suggestions", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, body = Vec<RecordingLink>), (status = 404, body = ErrorBody)))]
async fn suggest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RecordingLink>>> {
    let r = reviewable(&state, &caller, &id).await?;
    suggest_links(&state, &r).await?;
    Ok(Json(state.db.recordings().links(&id).await?))
}

/// Propose links for a recording (as `POST /recordings/{id}/suggestions` does); returns how
/// many were new.
pub async fn suggest_links(state: &AppState, r: &Recording) -> anyhow::Result<u64> {
    use shouhu_dispatch::fence::Shape;
    let Some(officer) = &r.officer_id else {
        return Ok(0);
    };
    let (from, to) = (r.started_at_ms, r.ended_at_ms.unwrap_or(r.started_at_ms));
    let candidates = state
        .db
        .recordings()
        .candidate_inspections(officer, from, to)
        .await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let track = state
        .db
        .positions()
        .track(officer, from, to + 1, 20_000)
        .await?;
    let mut hits = Vec::new();
    for c in candidates {
        let shape = match state.db.geofences().of_enterprise(&c.enterprise_id).await? {
            Some(g) => match (&g.geometry, g.center_lat, g.center_lon, g.radius_m) {
                (Some(geo), _, _, _) => Shape::from_geojson(geo).ok(),
                (None, Some(lat), Some(lon), Some(rad)) => Shape::circle(lat, lon, rad).ok(),
                _ => None,
            },
            None => match (c.lat, c.lon) {
                (Some(lat), Some(lon)) => {
                    Shape::circle(lat, lon, state.cfg.dispatch.enterprise_radius_m).ok()
                }
                _ => None,
            },
        };
        let Some(shape) = shape else { continue };
        if track
            .iter()
            .any(|p| shape.contains(p.position.lat, p.position.lon))
        {
            hits.push(c.id);
        }
    }
    let n = state
        .db
        .recordings()
        .suggest(&r.id, &hits, state.now())
        .await?;
    if n > 0 {
        tracing::info!(recording.id = %r.id, suggested = n, "recording.links_suggested");
    }
    Ok(n)
}

/// A legal hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldInput {
    /// Hold (`true`) or release (`false`).
    pub held: bool,
    /// Why (required to hold).
    pub reason: Option<String>,
}

/// Put a recording under a legal hold (kept past its retention until released), or release
/// it. Audited (`recording.hold`).
#[utoipa::path(put, path = "/recordings/{id}/hold", tag = "recordings", params(("id" = String, Path)), request_body = HoldInput,
    responses((status = 200, body = Recording), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<HoldInput>,
) -> ApiResult<Json<Recording>> {
    reviewable(&state, &caller, &id).await?;
    let reason = i.reason.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if i.held && reason.is_none() {
        return Err(crate::routes::auth::field_error(
            "reason",
            "a hold needs a reason",
        ));
    }
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(crate::routes::auth::field_error(
            "reason",
            "at most 500 characters",
        ));
    }
    Ok(Json(
        state
            .db
            .recordings()
            .set_hold(
                &caller.scope,
                &id,
                i.held,
                reason,
                &caller.audit("recording.hold", state.now()),
            )
            .await?,
    ))
}

/// A retention period.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionInput {
    /// Days (1–36500).
    pub days: i64,
}

/// Set an org unit's recording retention (its subtree inherits it unless a nearer unit sets
/// its own). Audited (`recording.retention`).
#[utoipa::path(put, path = "/recordings/retention/{org_unit_id}", tag = "recordings", params(("org_unit_id" = String, Path)),
    request_body = RetentionInput, responses((status = 200), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiJson(i): ApiJson<RetentionInput>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::OrgWrite)?;
    state.db.org_units().get(&org).await?;
    state
        .db
        .recordings()
        .set_retention(
            &org,
            i.days,
            &caller.audit("recording.retention", state.now()),
        )
        .await?;
    Ok(StatusCode::OK)
}

/// The evidence package of an inspection: a ZIP with every linked recording exported whole,
/// each with its signed manifest, the inspection's summary (`inspection.json`), the server's
/// public key and `SHA256SUMS`. Audited (`recording.export` per recording and
/// `inspection.evidence_package`).
#[utoipa::path(get, path = "/inspections/{id}/evidence.zip", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/zip"), (status = 404, body = ErrorBody)))]
async fn evidence_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    use std::io::Write;
    caller.require(Perm::RecordingView)?;
    let inspection = state.db.inspections().get(&caller.scope, &id).await?;
    let f = RecordingFilter {
        inspection_id: Some(id.clone()),
        ..Default::default()
    };
    let recs = state
        .db
        .recordings()
        .search(&caller.scope, &f, PageRequest::new(Some(1), Some(500)))
        .await?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut sums = String::new();
    let mut add = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8]| -> ApiResult<()> {
        sums.push_str(&format!(
            "{}  {name}\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        ));
        zip.start_file(name, opts)
            .and_then(|_| zip.write_all(bytes).map_err(Into::into))
            .map_err(ApiError::internal)
    };
    let summary = serde_json::json!({
        "inspection": inspection,
        "recordings": recs.items.iter().map(|r| serde_json::json!({
            "id": r.id, "device_id": r.device_id, "officer_id": r.officer_id, "officer_name": r.officer_name,
            "started_at_ms": r.started_at_ms, "ended_at_ms": r.ended_at_ms, "segments": r.segment_count,
        })).collect::<Vec<_>>(),
        "generated_at_ms": state.now(),
        "generated_by": caller.account.username,
    });
    add(
        &mut zip,
        "inspection.json",
        &serde_json::to_vec_pretty(&summary).map_err(ApiError::internal)?,
    )?;
    let none = RangeQuery {
        from: None,
        to: None,
        audio: None,
        media_token: None,
    };
    for r in &recs.items {
        if r.status != "closed" {
            continue;
        }
        let (file, used, from_ms, to_ms) = build_export(&state, r, &none).await?;
        let start = chain_start(&state, r, &used[0]).await?;
        let m = manifest_of(&state, r, &file, &used, from_ms, to_ms, start);
        add(&mut zip, &format!("{}/recording.mp4", r.id), &file)?;
        add(
            &mut zip,
            &format!("{}/manifest.json", r.id),
            &serde_json::to_vec_pretty(&m).map_err(ApiError::internal)?,
        )?;
        let audit = caller
            .audit("recording.export", state.now())
            .target("recording", &r.id)
            .details(
                serde_json::json!({"inspection_id": id, "package": true, "bytes": file.len()}),
            );
        state.db.audit().record(&audit).await?;
    }
    add(
        &mut zip,
        "public_key.txt",
        format!("{}\n", state.signer.public_key_hex()).as_bytes(),
    )?;
    zip.start_file("SHA256SUMS", opts)
        .and_then(|_| zip.write_all(sums.as_bytes()).map_err(Into::into))
        .map_err(ApiError::internal)?;
    let bytes = zip.finish().map_err(ApiError::internal)?.into_inner();
    let audit = caller
        .audit("inspection.evidence_package", state.now())
        .target("inspection", &id)
        .details(serde_json::json!({"recordings": recs.items.len()}));
    state.db.audit().record(&audit).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{}.zip\"", inspection.code),
            ),
        ],
        bytes,
    )
        .into_response())
}

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
use shouhu_media::mp4::recover::layout;
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

mod export;
mod playback;
mod review;

pub(crate) use export::import_router;
pub use review::suggest_links;

/// The recording routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(active_recordings))
        .routes(routes!(start_recording))
        .routes(routes!(stop_recording))
        .routes(routes!(get_recording))
        .routes(routes!(recording_status))
        .routes(routes!(device_records))
        .routes(routes!(download))
        .routes(routes!(set_always))
        .merge(playback::router())
        .merge(export::router())
        .merge(review::router())
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
    let recorder = recorder_in_scope(&state, &caller, &i.device_id).await?;
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
    /// Segments the blob store refused (after retries) since the server started: each is a gap
    /// of an incomplete recording (the alert `recording.segment_gap`; the recordings show it).
    pub segment_gaps: u64,
}

/// What is recording in the caller's scope, and the disk-space alert (node-wide).
#[utoipa::path(get, path = "/recordings/status", tag = "recordings", responses((status = 200, body = RecordingStatus)))]
async fn recording_status(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RecordingStatus>> {
    caller.require(Perm::RecordingView)?;
    let low_disk = crate::recording_jobs::disk_check(&state);
    Ok(Json(RecordingStatus {
        active: active_in_scope(&state, &caller).await?,
        free_percent: crate::recording_jobs::free_percent(&state),
        low_disk,
        segment_gaps: state.recorder.segment_gaps(),
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

/// Channels being recorded now, in the caller's scope.
#[utoipa::path(get, path = "/recordings/active", tag = "recordings",
    responses((status = 200, body = Vec<ActiveRecording>)))]
async fn active_recordings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ActiveRecording>>> {
    caller.require(Perm::RecordingView)?;
    Ok(Json(active_in_scope(&state, &caller).await?))
}

/// The channels being recorded that the caller may know of: a recorder of the caller's
/// subtree, or a recording (a phone app's, a call's) of it. The corps sees every one; a channel
/// that is neither (still starting, of no registered recorder) only the corps.
async fn active_in_scope(state: &AppState, caller: &Caller) -> ApiResult<Vec<ActiveRecording>> {
    let all = state.recorder.active();
    if caller.at_corps() {
        return Ok(all);
    }
    let recorders: std::collections::HashSet<String> = state
        .db
        .recorders()
        .list(&caller.scope)
        .await?
        .into_iter()
        .map(|r| r.device_id)
        .collect();
    let mut out = Vec::new();
    for a in all {
        let visible = recorders.contains(&a.device_id)
            || match &a.recording_id {
                Some(id) => match state.db.recordings().get(&caller.scope, id).await {
                    Ok(_) => true,
                    Err(shouhu_storage::StorageError::NotFound(_)) => false,
                    Err(e) => return Err(e.into()),
                },
                None => false,
            };
        if visible {
            out.push(a);
        }
    }
    Ok(out)
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
    recorder_in_scope(state, caller, device.as_str()).await?;
    if starting {
        require_in_catalog(state, &device, &channel).await?;
    }
    Ok(())
}

/// A recorder named in a request body, in the caller's scope; another unit's answers the same
/// 404 as a missing one, audited as denied (the central check sees only path parameters).
pub(super) async fn recorder_in_scope(
    state: &AppState,
    caller: &Caller,
    device_id: &str,
) -> ApiResult<shouhu_storage::recorders::Recorder> {
    match state.db.recorders().get(&caller.scope, device_id).await {
        Ok(r) => Ok(r),
        Err(shouhu_storage::StorageError::NotFound(_))
            if state
                .db
                .row_exists_by("recorders", "device_id", device_id)
                .await? =>
        {
            Err(ApiError::out_of_scope("recorder", device_id))
        }
        Err(e) => Err(e.into()),
    }
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
    /// Its links to inspections (suggested ones included); a link to an inspection outside the
    /// caller's scope has its inspection and enterprise blanked.
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
    let links = review::links_in_scope(&state, &caller, &id).await?;
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

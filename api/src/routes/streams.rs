//! Live video: the streams the hub runs and a snapshot of a channel's last keyframe.
//!
//! Who may look follows the data scope: the recorder must be visible to the caller. Every look
//! is audited (`stream.view`, with the channel and the kind of view).
//!
//! Identifiers are parsed here, once ([`DeviceId`], [`ChannelId`]): an id that does not parse,
//! or a channel code that is not in the recorder's catalog, is answered 400/422 and starts
//! nothing (no `INVITE`, no RTP port). The named channels (`app`, `console`) are never asked of
//! a device: they are watched only while someone publishes them.
//!
//! Publishing (WHIP) onto `/streams/…` is for the phone app's `app` channel of a recorder bound
//! to the caller's own officer; the console channel is published only through
//! `/calls/{id}/whip`. A WebRTC session is stopped by its owner, or by a dispatcher
//! (`dispatch.command`) who sees the recorder.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shouhu_media::hub::{HubError, StreamState};
use shouhu_media::ps::Codec;
use shouhu_storage::model::{ChannelId, DeviceId};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{grants, Perm};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiText;
use crate::state::AppState;

/// The stream routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_streams))
        .routes(routes!(stream_stats))
        .routes(routes!(snapshot))
        .routes(routes!(whep_start))
        .routes(routes!(whep_stop))
        .routes(routes!(whip_start))
        .routes(routes!(whip_stop))
}

/// One running stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    /// Recorder.
    pub device_id: String,
    /// Channel.
    pub channel_id: String,
    /// `starting`, `live` or `ended`.
    pub state: String,
    /// Consumers now.
    pub viewers: usize,
    /// Frames received.
    pub frames: u64,
    /// RTP packets received.
    pub packets: u64,
}

/// Streams running now (of recorders in the caller's scope).
#[utoipa::path(get, path = "/streams", tag = "dispatch", responses((status = 200, body = Vec<StreamView>)))]
async fn list_streams(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<StreamView>>> {
    caller.require(Perm::DispatchView)?;
    let mut out = Vec::new();
    for s in state.streams.streams() {
        let (d, c) = s.key();
        if state.db.recorders().get(&caller.scope, d).await.is_err() {
            continue;
        }
        out.push(StreamView {
            device_id: d.into(),
            channel_id: c.into(),
            state: match s.state() {
                StreamState::Starting => "starting",
                StreamState::Live => "live",
                StreamState::Ended(_) => "ended",
            }
            .into(),
            viewers: s.viewers(),
            frames: s.frames.load(std::sync::atomic::Ordering::Relaxed),
            packets: s.packets.load(std::sync::atomic::Ordering::Relaxed),
        });
    }
    Ok(Json(out))
}

/// The hub's totals and its server-added latency.
#[derive(Debug, Serialize, ToSchema)]
pub struct HubStats {
    /// Streams running.
    pub streams: usize,
    /// Live-view (WHEP) sessions.
    pub sessions: usize,
    /// RTP packets received by the running streams.
    pub packets: u64,
    /// RTP packets the running streams never got (sequence gaps).
    pub lost: u64,
    /// Frames sent to viewers since start (one per frame and viewer), by latency.
    pub frames_out: u64,
    /// Median server-added latency, ms: from a frame's last RTP packet in to its SRTP out.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub latency_p99_ms: Option<f64>,
    /// The histogram behind them: `[bucket upper edge µs, count]`, non-empty buckets only
    /// (50 µs buckets; the last edge means "200 ms or more"), so that two readings can be
    /// differenced.
    pub latency_buckets: Vec<[u64; 2]>,
    /// RTP datagrams (and TCP media connections) refused since start because they came from an
    /// address other than the device's registered one (`shouhu_rtp_dropped_total{reason="foreign_source"}`).
    pub rtp_dropped_foreign_source: u64,
    /// Datagrams on the shared RTP port with an SSRC no stream claims.
    pub rtp_dropped_unknown_ssrc: u64,
    /// Ingests started since start (each an `INVITE` to a device and an RTP port).
    pub ingests_started: u64,
}

/// Totals of the stream hub: packets in and lost, live-view sessions, server-added latency,
/// refused RTP. Corps accounts with the dispatch view only (`403` elsewhere, audited
/// `stream.stats` denied): the figures are the whole hub's — every district's streams, and
/// drops and latencies no unit owns — so they cannot be cut to a subtree.
#[utoipa::path(get, path = "/streams/stats", tag = "dispatch", responses((status = 200, body = HubStats), (status = 403, body = ErrorBody)))]
async fn stream_stats(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<HubStats>> {
    caller.require(Perm::DispatchView)?;
    if !caller.at_corps() {
        crate::auth::audit_denied(&state, &caller, "stream.stats", "hub", "streams").await;
        return Err(ApiError::forbidden(
            "the hub's totals are the whole city's: corps accounts only",
        ));
    }
    let streams = state.streams.streams();
    let counts = state.whep.latency().snapshot();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    Ok(Json(HubStats {
        streams: streams.len(),
        sessions: state.whep.sessions(),
        packets: streams
            .iter()
            .map(|s| s.packets.load(std::sync::atomic::Ordering::Relaxed))
            .sum(),
        lost: streams
            .iter()
            .map(|s| s.lost.load(std::sync::atomic::Ordering::Relaxed))
            .sum(),
        frames_out: counts.iter().sum(),
        latency_p50_ms: ms(shouhu_media::stats::percentile(&counts, 0.5)),
        latency_p99_ms: ms(shouhu_media::stats::percentile(&counts, 0.99)),
        latency_buckets: counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| [(i as u64 + 1) * shouhu_media::stats::BUCKET_US, *c])
            .collect(),
        rtp_dropped_foreign_source: state
            .streams
            .drops()
            .get(shouhu_media::stats::DropReason::ForeignSource),
        rtp_dropped_unknown_ssrc: state
            .streams
            .drops()
            .get(shouhu_media::stats::DropReason::UnknownSsrc),
        ingests_started: state.streams.ingests_started(),
    }))
}

pub(crate) fn hub_error(e: HubError) -> ApiError {
    match e {
        HubError::Device(m) => ApiError::new(StatusCode::BAD_GATEWAY, "device_refused", m),
        HubError::NoPort => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_rtp_port",
            e.to_string(),
        ),
        HubError::NoMedia(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_media", m),
        HubError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        HubError::Transcode(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "transcode", m),
    }
}

/// The callback that audits the end of a WebRTC session (`action`, with its length and why).
pub(crate) fn end_audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    device_id: &str,
) -> Box<dyn FnOnce(shouhu_media::whep::SessionInfo) + Send> {
    let end = caller
        .audit(action, state.now())
        .target("recorder", device_id);
    let db = state.db.clone();
    let clock = state.clock.clone();
    let action = action.to_string();
    Box::new(move |info: shouhu_media::whep::SessionInfo| {
        let mut e = end.details(serde_json::json!({
            "session": info.id, "channel_id": info.channel_id,
            "seconds": info.watched.as_secs(), "reason": info.reason,
        }));
        e.at_ms = clock.now_ms();
        tokio::spawn(async move {
            if let Err(err) = db.audit().record(&e).await {
                tracing::warn!(error = %err, action = %action, "audit of a session's end failed");
            }
        });
    })
}

pub(crate) fn webrtc_error(e: shouhu_media::whep::WhepError) -> ApiError {
    match e {
        shouhu_media::whep::WhepError::Offer(m) => ApiError::bad_request(m),
        shouhu_media::whep::WhepError::Codec(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "codec", m)
        }
        other => ApiError::internal(other),
    }
}

/// `201` with the SDP answer and the session's URL (`kind`: `whep` or `whip`).
pub(crate) fn sdp_created(kind: &str, id: &str, answer: String) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/api/v1/streams/{kind}/{id}")),
        ],
        answer,
    )
        .into_response()
}

/// A WHEP/WHIP request body must be an SDP offer.
pub(crate) fn require_sdp(offer: &str) -> ApiResult<()> {
    if offer.trim_start().starts_with("v=0") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body must be an SDP offer (application/sdp)",
        ))
    }
}

/// A device id from a path or a body: 400 `invalid_id` naming the problem.
pub(crate) fn parse_device(s: &str) -> ApiResult<DeviceId> {
    s.parse().map_err(|e: shouhu_storage::model::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.to_string())
    })
}

/// A channel id from a path or a body: 400 `invalid_id` naming the problem.
pub(crate) fn parse_channel(s: &str) -> ApiResult<ChannelId> {
    s.parse().map_err(|e: shouhu_storage::model::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.to_string())
    })
}

/// A device's channel code must be one its catalog lists (422 `unknown_channel`); the named
/// channels are nobody's catalog entry and pass.
pub(crate) async fn require_in_catalog(
    state: &AppState,
    device: &DeviceId,
    channel: &ChannelId,
) -> ApiResult<()> {
    if channel.is_named() {
        return Ok(());
    }
    let known = state
        .db
        .recorders()
        .channels(device.as_str())
        .await?
        .iter()
        .any(|c| c.channel_id == channel.as_str());
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_channel",
            format!("channel_id {channel} is not in the catalog recorder {device} reported"),
        ))
    }
}

/// A channel can be watched when its recorder is registered over SIP or a publisher sends it;
/// a named channel only while it is published (no device is ever asked for one).
fn require_source(state: &AppState, device: &DeviceId, channel: &ChannelId) -> ApiResult<()> {
    let (device_id, channel_id) = (device.as_str(), channel.as_str());
    if channel.is_named() && state.streams.stream(device_id, channel_id).is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_published",
            format!("nobody publishes the {channel_id} channel of this recorder now"),
        ));
    }
    if state.sip.access(device_id).is_none()
        && state.streams.stream(device_id, channel_id).is_none()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_registered",
            "the recorder is not registered and nobody publishes this channel",
        ));
    }
    Ok(())
}

/// Decode one keyframe to JPEG with GStreamer (in one of the node's helper slots, stopped at
/// its timeout).
async fn jpeg_of(state: &AppState, codec: Codec, keyframe: &[u8]) -> Result<Vec<u8>, ApiError> {
    let (parse, dec) = match codec {
        Codec::H264 => ("h264parse", "avdec_h264"),
        Codec::H265 => ("h265parse", "avdec_h265"),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_video",
                "the channel sends no video",
            ))
        }
    };
    let pipeline =
        format!("fdsrc fd=0 ! {parse} ! {dec} ! videoconvert ! jpegenc quality=85 ! fdsink fd=1");
    let mut cmd = tokio::process::Command::new("gst-launch-1.0");
    cmd.arg("-q").args(pipeline.split_whitespace());
    let out = state
        .subprocesses
        .run("snapshot decoding (gst-launch)", cmd, keyframe.to_vec())
        .await?;
    if !out.status.success() || !out.stdout.starts_with(&[0xFF, 0xD8]) {
        return Err(ApiError::internal(format!(
            "snapshot decoder failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    Ok(out.stdout)
}

/// A JPEG of the channel's last keyframe (starting the stream when nobody watches it; it stays
/// up for `media.grace_secs`, so tiles refreshing every few seconds share one ingest).
#[utoipa::path(get, path = "/streams/{device_id}/{channel_id}/snapshot.jpg", tag = "dispatch",
    params(("device_id" = String, Path), ("channel_id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path((device_id, channel_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Perm::DispatchView)?;
    let (device, channel) = (parse_device(&device_id)?, parse_channel(&channel_id)?);
    state
        .db
        .recorders()
        .get(&caller.scope, device.as_str())
        .await?;
    require_in_catalog(&state, &device, &channel).await?;
    require_source(&state, &device, &channel)?;
    let audit = caller
        .audit("stream.view", state.now())
        .target("recorder", &device_id)
        .details(serde_json::json!({"channel_id": channel_id, "view": "snapshot"}));
    state.db.audit().record(&audit).await?;
    let mut viewer = state.streams.watch(&device_id, &channel_id);
    let key = viewer
        .keyframe(Duration::from_secs(15))
        .await
        .map_err(hub_error)?;
    let jpeg = jpeg_of(&state, key.codec, &key.data).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// Start watching a channel live over WebRTC (WHEP): the body is the browser's SDP offer, the
/// answer SDP comes back with `201` and the session's URL in `Location` (`DELETE` it to stop).
/// H.264 passes through untranscoded; H.265 passes through when the offer has H.265, else one
/// GStreamer transcode to H.264 per channel serves every such viewer. G.711 audio passes
/// through (PCMA/PCMU), AAC is transcoded to Opus. Audited at the start (`stream.view`) and the end
/// (`stream.view_end`, with how long).
#[utoipa::path(post, path = "/streams/{device_id}/{channel_id}/whep", tag = "dispatch",
    params(("device_id" = String, Path), ("channel_id" = String, Path)), request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, content_type = "application/sdp"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn whep_start(
    State(state): State<AppState>,
    caller: Caller,
    Path((device_id, channel_id)): Path<(String, String)>,
    ApiText(offer): ApiText,
) -> ApiResult<Response> {
    caller.require(Perm::DispatchView)?;
    let (device, channel) = (parse_device(&device_id)?, parse_channel(&channel_id)?);
    require_sdp(&offer)?;
    state
        .db
        .recorders()
        .get(&caller.scope, device.as_str())
        .await?;
    require_in_catalog(&state, &device, &channel).await?;
    require_source(&state, &device, &channel)?;
    let accept_h265 = offer.contains("H265/90000");
    let viewer = state
        .streams
        .watch_web(
            &device_id,
            &channel_id,
            accept_h265,
            Duration::from_secs(15),
        )
        .await
        .map_err(hub_error)?;
    let on_end = end_audit(&state, &caller, "stream.view_end", &device_id);
    let (id, answer) = state
        .whep
        .start(offer, viewer, &caller.account.id, on_end)
        .await
        .map_err(webrtc_error)?;
    let audit = caller
        .audit("stream.view", state.now())
        .target("recorder", &device_id)
        .details(serde_json::json!({"channel_id": channel_id, "view": "live", "session": id}));
    state.db.audit().record(&audit).await?;
    Ok(sdp_created("whep", &id, answer))
}

/// Whether the caller may stop session `id` of `owner`: its owner, or a dispatcher
/// (`dispatch.command`) who sees the recorder. 403 for an account outside dispatch; 404 (with a
/// `denied` audit row) when the caller cannot see the recorder.
async fn may_stop(
    state: &AppState,
    caller: &Caller,
    id: &str,
    owner: &shouhu_media::whep::SessionOwner,
) -> ApiResult<()> {
    if owner.account_id == caller.account.id {
        return Ok(());
    }
    if !grants(&caller.account.role, Perm::DispatchView) {
        return Err(ApiError::forbidden(
            "only the session's owner or a dispatcher in charge of the recorder stops it",
        ));
    }
    state
        .db
        .recorders()
        .get(&caller.scope, &owner.device_id)
        .await
        .map_err(|_| ApiError::out_of_scope("session", id))?;
    if grants(&caller.account.role, Perm::DispatchCommand) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the session's owner or a dispatcher in charge of the recorder stops it",
        ))
    }
}

/// Stop a WHEP session: its owner, or a dispatcher (`dispatch.command`) who sees the recorder.
#[utoipa::path(delete, path = "/streams/whep/{session_id}", tag = "dispatch", params(("session_id" = String, Path)),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn whep_stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = state
        .whep
        .owner(&id)
        .ok_or_else(|| ApiError::not_found("WHEP session"))?;
    may_stop(&state, &caller, &id, &owner).await?;
    if state.whep.stop(&id) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("WHEP session"))
    }
}

/// Publish a channel over WebRTC (WHIP), e.g. from the officer's phone app: the body is the
/// publisher's SDP offer (H.264 video, optionally Opus audio); the answer comes back with `201`
/// and the session's URL in `Location` (`DELETE` it to stop). Viewers then watch the channel
/// through WHEP like a camera. Only the channel `app`, and only by the account of the officer
/// the recorder is bound to (a camera's own channels come from the camera; the console channel
/// only through `/calls/{id}/whip`). Audited (`stream.publish`, `stream.publish_end`).
#[utoipa::path(post, path = "/streams/{device_id}/{channel_id}/whip", tag = "dispatch",
    params(("device_id" = String, Path), ("channel_id" = String, Path)), request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, content_type = "application/sdp"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn whip_start(
    State(state): State<AppState>,
    caller: Caller,
    Path((device_id, channel_id)): Path<(String, String)>,
    ApiText(offer): ApiText,
) -> ApiResult<Response> {
    let (device, channel) = (parse_device(&device_id)?, parse_channel(&channel_id)?);
    require_sdp(&offer)?;
    if !channel.is_app() {
        return Err(ApiError::forbidden(
            "only the app channel is published here (a camera's channels come from the camera, the console's through /calls/{id}/whip)",
        ));
    }
    let recorder = state
        .db
        .recorders()
        .get(&caller.scope, device.as_str())
        .await?;
    let own = recorder.officer_id.is_some()
        && state.hub.officer_of_account(&caller.account.id) == recorder.officer_id;
    if !own {
        return Err(ApiError::forbidden(
            "only the officer this recorder is bound to publishes its app channel",
        ));
    }
    let (device_id, channel_id) = (device.to_string(), channel.to_string());
    let publisher = state
        .streams
        .publish(&device_id, &channel_id)
        .map_err(hub_error)?;
    let on_end = end_audit(&state, &caller, "stream.publish_end", &device_id);
    let (id, answer) = state
        .whip
        .start(offer, publisher, &caller.account.id, on_end)
        .await
        .map_err(webrtc_error)?;
    let audit = caller
        .audit("stream.publish", state.now())
        .target("recorder", &device_id)
        .details(serde_json::json!({"channel_id": channel_id, "session": id}));
    state.db.audit().record(&audit).await?;
    Ok(sdp_created("whip", &id, answer))
}

/// Stop a WHIP publication: its owner, or a dispatcher (`dispatch.command`) who sees the
/// recorder.
#[utoipa::path(delete, path = "/streams/whip/{session_id}", tag = "dispatch", params(("session_id" = String, Path)),
    responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn whip_stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = state
        .whip
        .owner(&id)
        .ok_or_else(|| ApiError::not_found("WHIP session"))?;
    may_stop(&state, &caller, &id, &owner).await?;
    if state.whip.stop(&id) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("WHIP session"))
    }
}

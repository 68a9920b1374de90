//! Live dispatch over REST: units, nearest units, tracks, assignments, terminal commands, SOS
//! alarms, phone-app positions, geofences and vehicles. The WebSocket is in [`super::dispatch_ws`].

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_dispatch::coords::Crs;
use shouhu_dispatch::core::{DispatchState, Link};
use shouhu_dispatch::fence::Shape;
use shouhu_dispatch::hub::HubError;
use shouhu_dispatch::protocol::{
    app_position, AppPosition, PositionRejection, UnitView, MAX_POSITIONS,
};
use shouhu_dispatch::track;
use shouhu_storage::geofences::Geofence;
use shouhu_storage::model::UnitKind;
use shouhu_storage::org_units::Scope;
use shouhu_storage::positions::flags;
use shouhu_storage::sos::{SosAlarm, SosStep};
use shouhu_storage::vehicles::{
    ApprovedTerminal, PendingRebind, RebindTarget, Vehicle, VehicleInput,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::clock::{parse_time, rfc3339, rfc3339_opt};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_units))
        .routes(routes!(nearest))
        .routes(routes!(get_unit))
        .routes(routes!(unit_track))
        .routes(routes!(assign))
        .routes(routes!(arrive))
        .routes(routes!(clear))
        .routes(routes!(locate))
        .routes(routes!(track_request))
        .routes(routes!(list_sos))
        .routes(routes!(sos_step))
        .routes(routes!(post_positions))
        .routes(routes!(list_geofences, create_geofence))
        .routes(routes!(delete_geofence))
        .routes(routes!(list_vehicles, create_vehicle))
        .routes(routes!(list_rebinds))
        .routes(routes!(get_vehicle, update_vehicle, delete_vehicle))
        .routes(routes!(rebind_vehicle))
}

pub(crate) fn hub_error(e: HubError) -> ApiError {
    match e {
        HubError::Storage(s) => s.into(),
        HubError::UnknownUnit => ApiError::not_found("unit"),
        HubError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
    }
}

/// A unit as `caller` may see it: the JT/T 808 terminal phone only for roles that manage devices
/// (it names the terminal on the device network; the WebSocket never carries it).
pub(crate) fn unit_for(caller: &Caller, mut v: UnitView) -> UnitView {
    if caller.require(Perm::DeviceManage).is_err() {
        v.terminal = None;
    }
    v
}

/// The org units the caller may see (`None` = all).
pub(crate) async fn visible(
    state: &AppState,
    caller: &Caller,
) -> ApiResult<Option<HashSet<String>>> {
    Ok(match &caller.scope {
        Scope::All => None,
        s => Some(state.db.org_units().visible_ids(s).await?),
    })
}

fn crs_of(s: Option<&str>) -> ApiResult<Crs> {
    match s {
        None | Some("") => Ok(Crs::Wgs84),
        Some(x) => Crs::parse(x)
            .ok_or_else(|| ApiError::bad_request(format!("crs {x:?}: use wgs84, gcj02 or bd09"))),
    }
}

fn parse_enum<T: for<'de> Deserialize<'de>>(field: &str, v: &str) -> ApiResult<T> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| ApiError::bad_request(format!("{field}: unknown value {v:?}")))
}

/// A list of units.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitList {
    /// The units.
    pub items: Vec<UnitView>,
}

/// Unit filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UnitQuery {
    /// `vehicle`, `officer`, `recorder`.
    pub kind: Option<String>,
    /// Org unit subtree.
    pub org_unit_id: Option<String>,
    /// Dispatch state: `idle`, `assigned`, `on_scene`, `in_call`.
    pub state: Option<String>,
    /// `online`, `unknown`, `offline`.
    pub link: Option<String>,
    /// JT/T 808 terminal phone number (any number of leading zeros); roles that manage devices
    /// only (403 for the others: the filter would tell them which numbers are terminals).
    pub terminal: Option<String>,
    /// GB/T 28181 device id.
    pub device: Option<String>,
    /// Substring of the name.
    pub q: Option<String>,
    /// `wgs84` (default), `gcj02`, `bd09`.
    pub crs: Option<String>,
}

/// Live state of the units in scope.
#[utoipa::path(get, path = "/units", tag = "dispatch", params(UnitQuery), responses((status = 200, body = UnitList)))]
async fn list_units(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UnitQuery>,
) -> ApiResult<Json<UnitList>> {
    caller.require(Perm::DispatchView)?;
    let crs = crs_of(q.crs.as_deref())?;
    let vis = visible(&state, &caller).await?;
    let sub = match q.org_unit_id.as_deref().filter(|s| !s.is_empty()) {
        Some(o) => Some(
            state
                .db
                .org_units()
                .visible_ids(&Scope::Subtree(o.to_string()))
                .await?,
        ),
        None => None,
    };
    let kind: Option<UnitKind> = q
        .kind
        .as_deref()
        .map(|k| parse_enum("kind", k))
        .transpose()?;
    let st: Option<DispatchState> = q
        .state
        .as_deref()
        .map(|k| parse_enum("state", k))
        .transpose()?;
    let link: Option<Link> = q
        .link
        .as_deref()
        .map(|k| parse_enum("link", k))
        .transpose()?;
    if q.terminal.is_some() {
        caller.require(Perm::DeviceManage)?;
    }
    let terminal = q
        .terminal
        .as_deref()
        .map(shouhu_storage::vehicles::normalize_phone);
    let needle = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let items = state.hub.list(crs, &|u| {
        vis.as_ref().is_none_or(|v| v.contains(&u.info.org_unit_id))
            && sub.as_ref().is_none_or(|v| v.contains(&u.info.org_unit_id))
            && kind.is_none_or(|k| k == u.info.kind)
            && st.is_none_or(|s| s == u.state())
            && link.is_none_or(|l| l == u.link)
            && terminal
                .as_ref()
                .is_none_or(|t| u.info.terminal.as_ref() == Some(t))
            && q.device
                .as_ref()
                .is_none_or(|d| u.info.device.as_ref() == Some(d))
            && needle.is_none_or(|n| u.info.name.contains(n))
    });
    let items = items.into_iter().map(|v| unit_for(&caller, v)).collect();
    Ok(Json(UnitList { items }))
}

pub(crate) async fn visible_unit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    crs: Crs,
) -> ApiResult<UnitView> {
    let (v, org) = state
        .hub
        .unit(id, crs)
        .ok_or_else(|| ApiError::not_found("unit"))?;
    if let Some(vis) = visible(state, caller).await? {
        if !vis.contains(&org) {
            return Err(ApiError::out_of_scope("unit", id));
        }
    }
    Ok(unit_for(caller, v))
}

/// Crs query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CrsQuery {
    /// `wgs84` (default), `gcj02`, `bd09`.
    pub crs: Option<String>,
}

/// One unit's live state.
#[utoipa::path(get, path = "/units/{id}", tag = "dispatch", params(("id" = String, Path), CrsQuery),
    responses((status = 200, body = UnitView), (status = 404, body = ErrorBody)))]
async fn get_unit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CrsQuery>,
) -> ApiResult<Json<UnitView>> {
    caller.require(Perm::DispatchView)?;
    Ok(Json(
        visible_unit(&state, &caller, &id, crs_of(q.crs.as_deref())?).await?,
    ))
}

/// Nearest-unit query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NearestQuery {
    /// Latitude (in `crs`).
    pub lat: Option<f64>,
    /// Longitude (in `crs`).
    pub lon: Option<f64>,
    /// Or: the enterprise's location.
    pub enterprise_id: Option<String>,
    /// How many (1–50, default 5).
    pub k: Option<usize>,
    /// Comma-separated kinds (default all).
    pub kinds: Option<String>,
    /// `wgs84` (default), `gcj02`, `bd09`, for the point and the answer.
    pub crs: Option<String>,
}

/// A unit and its distance.
#[derive(Debug, Serialize, ToSchema)]
pub struct NearUnit {
    /// The unit.
    pub unit: UnitView,
    /// Great-circle distance, metres.
    pub distance_m: f64,
}

/// Nearest units.
#[derive(Debug, Serialize, ToSchema)]
pub struct NearestList {
    /// Nearest first.
    pub items: Vec<NearUnit>,
}

/// The `k` nearest available units (idle and not offline) in scope, nearest first, by
/// great-circle distance.
#[utoipa::path(get, path = "/units/nearest", tag = "dispatch", params(NearestQuery),
    responses((status = 200, body = NearestList), (status = 400, body = ErrorBody)))]
async fn nearest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<NearestQuery>,
) -> ApiResult<Json<NearestList>> {
    caller.require(Perm::DispatchView)?;
    let crs = crs_of(q.crs.as_deref())?;
    let (lat, lon) = match (q.lat, q.lon, &q.enterprise_id) {
        (_, _, Some(e)) => {
            let ent = state.db.enterprises().get(&caller.scope, e).await?;
            match (ent.lat, ent.lon) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "enterprise {} has no location",
                        ent.name
                    )))
                }
            }
        }
        (Some(a), Some(b), None) => {
            if !(a.is_finite()
                && b.is_finite()
                && (-90.0..=90.0).contains(&a)
                && (-180.0..=180.0).contains(&b))
            {
                return Err(ApiError::bad_request("lat/lon out of range"));
            }
            crs.to_wgs84(a, b)
        }
        _ => return Err(ApiError::bad_request("give lat and lon, or enterprise_id")),
    };
    let k = q.k.unwrap_or(5);
    if !(1..=50).contains(&k) {
        return Err(ApiError::bad_request("k must be 1–50"));
    }
    let kinds: Option<Vec<UnitKind>> = q
        .kinds
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|k| parse_enum("kinds", k.trim()))
                .collect::<ApiResult<Vec<_>>>()
        })
        .transpose()?;
    let vis = visible(&state, &caller).await?;
    let items = state
        .hub
        .nearest(
            lat,
            lon,
            k,
            kinds.as_deref(),
            &|o| vis.as_ref().is_none_or(|v| v.contains(o)),
            crs,
        )
        .into_iter()
        .map(|(unit, d)| NearUnit {
            unit: unit_for(&caller, unit),
            distance_m: (d * 10.0).round() / 10.0,
        })
        .collect();
    Ok(Json(NearestList { items }))
}

/// Track query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrackQuery {
    /// Start, RFC 3339 (default: an hour before `to`).
    pub from: Option<String>,
    /// End, RFC 3339 (default: now).
    pub to: Option<String>,
    /// `json` (default), `geojson`, `gpx`.
    pub format: Option<String>,
    /// Douglas–Peucker tolerance in metres (default: chosen to fit `max_points`).
    pub tolerance_m: Option<f64>,
    /// Most points returned (default 5000, at most 50000).
    pub max_points: Option<usize>,
    /// Include fixes flagged as jumps or zero fixes (default false).
    pub include_flagged: Option<bool>,
    /// `wgs84` (default), `gcj02`, `bd09` (GPX is always WGS-84).
    pub crs: Option<String>,
}

/// One point of a track.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackPointDto {
    /// Device time.
    pub time: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// km/h.
    pub speed_kmh: Option<f64>,
    /// Degrees.
    pub heading_deg: Option<f64>,
    /// `jt808`, `gb28181`, `app`.
    pub source: String,
    /// Quality marks.
    pub flags: Vec<&'static str>,
}

/// A track.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackDto {
    /// Unit.
    pub unit_id: String,
    /// Unit name.
    pub name: String,
    /// Range start.
    pub from: String,
    /// Range end.
    pub to: String,
    /// Points stored in the range.
    pub total: usize,
    /// Tolerance used when the track was simplified.
    pub tolerance_m: Option<f64>,
    /// The points, oldest first.
    pub points: Vec<TrackPointDto>,
}

/// Most points read for one track request.
const TRACK_READ_LIMIT: i64 = 500_000;

/// A unit's position history, simplified for long ranges; JSON, GeoJSON or GPX.
#[utoipa::path(get, path = "/units/{id}/track", tag = "dispatch", params(("id" = String, Path), TrackQuery),
    responses((status = 200, body = TrackDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unit_track(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TrackQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::DispatchView)?;
    let crs = crs_of(q.crs.as_deref())?;
    let unit = visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    let time = |s: &Option<String>, name: &str| -> ApiResult<Option<i64>> {
        s.as_deref()
            .map(|t| {
                parse_time(t)
                    .ok_or_else(|| ApiError::bad_request(format!("{name}: not an RFC 3339 time")))
            })
            .transpose()
    };
    let to = time(&q.to, "to")?.unwrap_or_else(|| state.now());
    let from = time(&q.from, "from")?.unwrap_or(to - 3_600_000);
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    if to - from > 31 * 86_400_000 {
        return Err(ApiError::bad_request("at most 31 days per request"));
    }
    let max_points = q.max_points.unwrap_or(5000).clamp(2, 50_000);
    let mut pts = state
        .db
        .positions()
        .track(&id, from, to, TRACK_READ_LIMIT)
        .await?;
    if !q.include_flagged.unwrap_or(false) {
        pts.retain(|t| t.flags & (flags::JUMP | flags::ZERO_FIX) == 0);
    }
    let total = pts.len();
    let (pts, tolerance_m) = track::simplify(pts, max_points, q.tolerance_m);
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let points = pts
                .iter()
                .map(|t| {
                    let (lat, lon) = crs.from_wgs84(t.position.lat, t.position.lon);
                    let mut fl = Vec::new();
                    for (bit, name) in [
                        (flags::JUMP, "jump"),
                        (flags::ZERO_FIX, "zero_fix"),
                        (flags::BACKFILL, "backfill"),
                        (flags::STALE, "stale"),
                    ] {
                        if t.flags & bit != 0 {
                            fl.push(name);
                        }
                    }
                    TrackPointDto {
                        time: rfc3339(t.position.time_ms),
                        lat,
                        lon,
                        speed_kmh: t.position.speed_kmh,
                        heading_deg: t.position.heading_deg,
                        source: shouhu_storage::positions::source_str(t.position.source).into(),
                        flags: fl,
                    }
                })
                .collect();
            Ok(Json(TrackDto {
                unit_id: id,
                name: unit.name,
                from: rfc3339(from),
                to: rfc3339(to),
                total,
                tolerance_m,
                points,
            })
            .into_response())
        }
        "geojson" => Ok((
            [(header::CONTENT_TYPE, "application/geo+json")],
            track::to_geojson(&id, &unit.name, &pts, crs).to_string(),
        )
            .into_response()),
        "gpx" => Ok((
            [
                (header::CONTENT_TYPE, "application/gpx+xml".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"track-{id}.gpx\""),
                ),
            ],
            track::to_gpx(&unit.name, &pts),
        )
            .into_response()),
        other => Err(ApiError::bad_request(format!(
            "format {other:?}: use json, geojson or gpx"
        ))),
    }
}

/// Where to send a unit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// An enterprise (its drawn boundary, or a radius around its location).
    pub enterprise_id: Option<String>,
    /// Or a point: latitude (WGS-84 unless `crs`).
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Name of the point.
    pub name: Option<String>,
    /// `wgs84` (default), `gcj02`, `bd09` for `lat`/`lon`.
    pub crs: Option<String>,
}

/// Send a unit to an enterprise or a point; it turns `on_scene` by itself when it enters the
/// target's area.
#[utoipa::path(post, path = "/units/{id}/assign", tag = "dispatch", params(("id" = String, Path)), request_body = AssignInput,
    responses((status = 200, body = UnitView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<AssignInput>,
) -> ApiResult<Json<UnitView>> {
    caller.require(Perm::DispatchCommand)?;
    visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    let point = match (i.lat, i.lon) {
        (Some(a), Some(b)) => {
            if !(a.is_finite()
                && b.is_finite()
                && (-90.0..=90.0).contains(&a)
                && (-180.0..=180.0).contains(&b))
            {
                return Err(ApiError::bad_request("lat/lon out of range"));
            }
            let (la, lo) = crs_of(i.crs.as_deref())?.to_wgs84(a, b);
            let name = i
                .name
                .clone()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "指定地点".into());
            Some((la, lo, name))
        }
        _ => None,
    };
    if let Some(e) = &i.enterprise_id {
        state.db.enterprises().get(&caller.scope, e).await?;
    }
    state
        .hub
        .assign(
            &id,
            i.enterprise_id.as_deref(),
            point,
            &caller.audit("dispatch.assign", state.now()),
        )
        .await
        .map_err(hub_error)?;
    Ok(Json(visible_unit(&state, &caller, &id, Crs::Wgs84).await?))
}

/// Mark an assigned unit as arrived.
#[utoipa::path(post, path = "/units/{id}/arrive", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = UnitView), (status = 409, body = ErrorBody)))]
async fn arrive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UnitView>> {
    caller.require(Perm::DispatchCommand)?;
    visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    let ok = state
        .hub
        .arrive(&id, &caller.audit("dispatch.arrive", state.now()))
        .await
        .map_err(hub_error)?;
    if !ok {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the unit has no assignment it has not yet arrived at",
        ));
    }
    Ok(Json(visible_unit(&state, &caller, &id, Crs::Wgs84).await?))
}

/// Release a unit from its assignment.
#[utoipa::path(post, path = "/units/{id}/clear", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = UnitView), (status = 409, body = ErrorBody)))]
async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UnitView>> {
    caller.require(Perm::DispatchCommand)?;
    visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    let ok = state
        .hub
        .clear(&id, &caller.audit("dispatch.clear", state.now()))
        .await
        .map_err(hub_error)?;
    if !ok {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the unit has no open assignment",
        ));
    }
    Ok(Json(visible_unit(&state, &caller, &id, Crs::Wgs84).await?))
}

/// Ask a vehicle's terminal for its position now (JT/T 808 0x8201); the answer arrives as a
/// position update.
#[utoipa::path(post, path = "/units/{id}/locate", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 202), (status = 409, body = ErrorBody)))]
async fn locate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::DispatchCommand)?;
    visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    state
        .jt808
        .query_position(&id)
        .await
        .map_err(command_refused)?;
    state
        .db
        .audit()
        .record(
            &caller
                .audit("dispatch.locate", state.now())
                .target("unit", &id),
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// A command the terminal cannot take now: not connected, or still holding earlier ones.
fn command_refused(e: shouhu_media::jt808::server::CommandError) -> ApiError {
    use shouhu_media::jt808::server::CommandError;
    let code = match e {
        CommandError::NotConnected => "not_connected",
        CommandError::Busy => "terminal_busy",
    };
    ApiError::new(StatusCode::CONFLICT, code, e.to_string())
}

/// Temporary tracking request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackRequestInput {
    /// Report every this many seconds (1–3600; 0 stops tracking).
    pub interval_s: u16,
    /// For this many seconds (at most one day).
    pub duration_s: u32,
}

/// Ask a vehicle's terminal to report at a given interval for a while (JT/T 808 0x8202).
#[utoipa::path(post, path = "/units/{id}/track-request", tag = "dispatch", params(("id" = String, Path)), request_body = TrackRequestInput,
    responses((status = 202), (status = 409, body = ErrorBody)))]
async fn track_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<TrackRequestInput>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::DispatchCommand)?;
    if i.interval_s > 3600 || i.duration_s > 86_400 {
        return Err(ApiError::bad_request(
            "interval_s ≤ 3600 and duration_s ≤ 86400",
        ));
    }
    visible_unit(&state, &caller, &id, Crs::Wgs84).await?;
    state
        .jt808
        .track(&id, i.interval_s, i.duration_s)
        .await
        .map_err(command_refused)?;
    state
        .db
        .audit()
        .record(
            &caller
                .audit("dispatch.track_request", state.now())
                .target("unit", &id)
                .details(
                    serde_json::json!({"interval_s": i.interval_s, "duration_s": i.duration_s}),
                ),
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// An SOS alarm.
#[derive(Debug, Serialize, ToSchema)]
pub struct SosDto {
    /// Id.
    pub id: String,
    /// Unit.
    pub unit_id: String,
    /// `vehicle`, `officer`, `recorder`.
    pub unit_kind: String,
    /// Unit name.
    pub unit_name: String,
    /// Org unit.
    pub org_unit_id: String,
    /// `jt808`, `gb28181`, `app`.
    pub source: String,
    /// When raised (device time).
    pub raised_at: String,
    /// Where (WGS-84).
    pub lat: Option<f64>,
    /// Where (WGS-84).
    pub lon: Option<f64>,
    /// `raised`, `acknowledged`, `handled`, `closed`.
    pub status: String,
    /// Who acknowledged.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<String>,
    /// Who handled.
    pub handled_by: Option<String>,
    /// When.
    pub handled_at: Option<String>,
    /// What was done.
    pub handle_note: Option<String>,
    /// Who closed.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<String>,
    /// Closing remark.
    pub close_note: Option<String>,
    /// The note of the latest step.
    pub note: Option<String>,
}

impl From<SosAlarm> for SosDto {
    fn from(a: SosAlarm) -> Self {
        SosDto {
            note: a.close_note.clone().or_else(|| a.handle_note.clone()),
            id: a.id,
            unit_id: a.unit_id,
            unit_kind: a.unit_kind,
            unit_name: a.unit_name,
            org_unit_id: a.org_unit_id,
            source: a.source,
            raised_at: rfc3339(a.raised_at_ms),
            lat: a.lat,
            lon: a.lon,
            status: a.status,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: rfc3339_opt(a.acknowledged_at_ms),
            handled_by: a.handled_by,
            handled_at: rfc3339_opt(a.handled_at_ms),
            handle_note: a.handle_note,
            closed_by: a.closed_by,
            closed_at: rfc3339_opt(a.closed_at_ms),
            close_note: a.close_note,
        }
    }
}

/// SOS list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SosList {
    /// Newest first.
    pub items: Vec<SosDto>,
}

/// SOS filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SosQuery {
    /// `open` (default: not closed) or `all`.
    pub status: Option<String>,
    /// At most this many (default 200, at most 1000).
    pub limit: Option<i64>,
}

/// SOS alarms in scope, newest first.
#[utoipa::path(get, path = "/sos", tag = "dispatch", params(SosQuery), responses((status = 200, body = SosList)))]
async fn list_sos(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SosQuery>,
) -> ApiResult<Json<SosList>> {
    caller.require(Perm::DispatchView)?;
    let open = match q.status.as_deref().unwrap_or("open") {
        "open" => true,
        "all" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "status {other:?}: use open or all"
            )))
        }
    };
    let vis: Option<Vec<String>> = visible(&state, &caller)
        .await?
        .map(|s| s.into_iter().collect());
    let items = state
        .db
        .sos()
        .list(open, vis.as_deref(), q.limit.unwrap_or(200).clamp(1, 1000))
        .await?
        .into_iter()
        .map(SosDto::from)
        .collect();
    Ok(Json(SosList { items }))
}

/// A workflow step's note.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SosStepInput {
    /// What was done or why (required to handle).
    pub note: Option<String>,
}

/// Acknowledge, handle or close an SOS alarm (`step` = `acknowledge`, `handle`, `close`).
#[utoipa::path(post, path = "/sos/{id}/{step}", tag = "dispatch", params(("id" = String, Path), ("step" = String, Path)),
    request_body = SosStepInput, responses((status = 200, body = SosDto), (status = 409, body = ErrorBody)))]
async fn sos_step(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SosDto>> {
    caller.require(Perm::DispatchCommand)?;
    let step = match step.as_str() {
        "acknowledge" => SosStep::Acknowledge,
        "handle" => SosStep::Handle,
        "close" => SosStep::Close,
        _ => return Err(ApiError::not_found("route")),
    };
    let input: SosStepInput = if body.iter().all(u8::is_ascii_whitespace) {
        SosStepInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?
    };
    let note = input
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::bad_request("note: at most 500 characters"));
    }
    if step == SosStep::Handle && note.is_none() {
        return Err(crate::routes::auth::field_error(
            "note",
            "say what was done",
        ));
    }
    let a = state.db.sos().get(&id).await?;
    if let Some(vis) = visible(&state, &caller).await? {
        if !vis.contains(&a.org_unit_id) {
            return Err(ApiError::not_found("sos alarm"));
        }
    }
    let action = format!(
        "sos.{}",
        match step {
            SosStep::Acknowledge => "acknowledge",
            SosStep::Handle => "handle",
            SosStep::Close => "close",
        }
    );
    let a = state
        .hub
        .sos_step(
            &id,
            step,
            note.as_deref(),
            &caller.audit(&action, state.now()),
        )
        .await
        .map_err(hub_error)?;
    Ok(Json(a.into()))
}

/// A batch of phone-app positions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionsInput {
    /// Up to 500 fixes.
    pub positions: Vec<AppPosition>,
}

/// What was taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionsAck {
    /// Accepted fixes.
    pub accepted: usize,
    /// Refused fixes, by index.
    pub rejected: Vec<PositionRejection>,
}

/// Validate app positions of the caller's officer unit; accepted ones go to dispatch.
pub(crate) fn take_app_positions(
    state: &AppState,
    caller: &Caller,
    ps: &[AppPosition],
) -> ApiResult<PositionsAck> {
    let unit = state
        .hub
        .officer_of_account(&caller.account.id)
        .ok_or_else(|| ApiError::forbidden("this account is not bound to an officer"))?;
    if ps.len() > MAX_POSITIONS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_POSITIONS} positions per batch"
        )));
    }
    let now = state.now();
    let mut ok = Vec::with_capacity(ps.len());
    let mut rejected = Vec::new();
    for (index, p) in ps.iter().enumerate() {
        match app_position(&unit, p, now) {
            Ok(p) => ok.push(p),
            Err((code, message)) => rejected.push(PositionRejection {
                index,
                code,
                message,
            }),
        }
    }
    let accepted = ok.len();
    state.hub.app_positions(ok);
    Ok(PositionsAck { accepted, rejected })
}

/// The officer phone app's position upload (the caller's account must be bound to an officer).
#[utoipa::path(post, path = "/positions", tag = "dispatch", request_body = PositionsInput,
    responses((status = 200, body = PositionsAck), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_positions(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(i): ApiJson<PositionsInput>,
) -> ApiResult<Response> {
    let ack = take_app_positions(&state, &caller, &i.positions)?;
    if ack.accepted == 0 && !ack.rejected.is_empty() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({
            "code": "invalid_position", "message": "no position of the batch was valid", "rejected": ack.rejected,
        }))).into_response());
    }
    Ok(Json(ack).into_response())
}

/// A geofence.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeofenceDto {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `district`, `enterprise`, `custom`.
    pub kind: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// GeoJSON geometry (WGS-84).
    #[schema(value_type = Option<Object>)]
    pub geometry: Option<serde_json::Value>,
    /// Circle.
    pub circle: Option<CircleDto>,
}

/// A circle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircleDto {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
}

impl From<Geofence> for GeofenceDto {
    fn from(g: Geofence) -> Self {
        GeofenceDto {
            geometry: g
                .geometry
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            circle: match (g.center_lat, g.center_lon, g.radius_m) {
                (Some(lat), Some(lon), Some(radius_m)) => Some(CircleDto { lat, lon, radius_m }),
                _ => None,
            },
            id: g.id,
            name: g.name,
            kind: g.kind,
            org_unit_id: g.org_unit_id,
            enterprise_id: g.enterprise_id,
        }
    }
}

/// Geofences.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeofenceList {
    /// The fences.
    pub items: Vec<GeofenceDto>,
}

/// Geofence filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GeofenceQuery {
    /// `district`, `enterprise`, `custom`.
    pub kind: Option<String>,
}

/// Geofences (all are visible to dispatch viewers: district outlines frame the map).
#[utoipa::path(get, path = "/geofences", tag = "dispatch", params(GeofenceQuery), responses((status = 200, body = GeofenceList)))]
async fn list_geofences(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<GeofenceQuery>,
) -> ApiResult<Json<GeofenceList>> {
    caller.require(Perm::DispatchView)?;
    let items = state
        .db
        .geofences()
        .list()
        .await?
        .into_iter()
        .filter(|g| q.kind.as_ref().is_none_or(|k| *k == g.kind))
        .map(GeofenceDto::from)
        .collect();
    Ok(Json(GeofenceList { items }))
}

/// A new geofence: `geometry` (GeoJSON Polygon/MultiPolygon) or `circle`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeofenceInput {
    /// Name.
    pub name: String,
    /// `district`, `enterprise`, `custom`.
    pub kind: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Enterprise (for `enterprise`).
    pub enterprise_id: Option<String>,
    /// GeoJSON geometry (WGS-84).
    #[schema(value_type = Option<Object>)]
    pub geometry: Option<serde_json::Value>,
    /// Or a circle.
    pub circle: Option<CircleDto>,
}

/// Create a geofence.
#[utoipa::path(post, path = "/geofences", tag = "dispatch", request_body = GeofenceInput,
    responses((status = 200, body = GeofenceDto), (status = 422, body = ErrorBody)))]
async fn create_geofence(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(i): ApiJson<GeofenceInput>,
) -> ApiResult<Json<GeofenceDto>> {
    caller.require(Perm::DeviceManage)?;
    let name = i.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(crate::routes::auth::field_error("name", "1–100 characters"));
    }
    if !matches!(i.kind.as_str(), "district" | "enterprise" | "custom") {
        return Err(crate::routes::auth::field_error(
            "kind",
            "district, enterprise or custom",
        ));
    }
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &i.org_unit_id)
        .await?
    {
        return Err(ApiError::out_of_scope("org unit", &i.org_unit_id));
    }
    if i.kind == "enterprise" {
        let Some(e) = &i.enterprise_id else {
            return Err(crate::routes::auth::field_error(
                "enterprise_id",
                "an enterprise fence needs its enterprise",
            ));
        };
        state.db.enterprises().get(&caller.scope, e).await?;
    }
    let (geometry, circle) = match (&i.geometry, &i.circle) {
        (Some(g), None) => {
            Shape::from_geojson_value(g)
                .map_err(|e| crate::routes::auth::field_error("geometry", &e.to_string()))?;
            (Some(g.to_string()), None)
        }
        (None, Some(c)) => {
            Shape::circle(c.lat, c.lon, c.radius_m)
                .map_err(|e| crate::routes::auth::field_error("circle", &e.to_string()))?;
            (None, Some(c))
        }
        _ => {
            return Err(crate::routes::auth::field_error(
                "geometry",
                "give either geometry or circle",
            ))
        }
    };
    let now = state.now();
    let g = state
        .db
        .geofences()
        .insert(
            &Geofence {
                id: String::new(),
                name,
                kind: i.kind.clone(),
                org_unit_id: i.org_unit_id.clone(),
                enterprise_id: i.enterprise_id.clone(),
                geometry,
                center_lat: circle.map(|c| c.lat),
                center_lon: circle.map(|c| c.lon),
                radius_m: circle.map(|c| c.radius_m),
                created_at_ms: now,
                updated_at_ms: now,
            },
            &caller.audit("geofence.create", now),
        )
        .await?;
    state.hub.reload_fences().await.map_err(hub_error)?;
    Ok(Json(g.into()))
}

/// Delete a geofence.
#[utoipa::path(delete, path = "/geofences/{id}", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_geofence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::DeviceManage)?;
    let g = state.db.geofences().get(&id).await?;
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &g.org_unit_id)
        .await?
    {
        return Err(ApiError::not_found("geofence"));
    }
    state
        .db
        .geofences()
        .delete(&id, &caller.audit("geofence.delete", state.now()))
        .await?;
    state.hub.reload_fences().await.map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Vehicles.
#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleList {
    /// By plate.
    pub items: Vec<Vehicle>,
}

/// A vehicle as `caller` may see it: the terminal phone only for roles that manage devices
/// (it names the terminal on the device network).
fn vehicle_for(caller: &Caller, mut v: Vehicle) -> Vehicle {
    if caller.require(Perm::DeviceManage).is_err() {
        v.terminal_phone = None;
    }
    v
}

/// Vehicles in scope (`terminal_phone` only for roles that manage devices).
#[utoipa::path(get, path = "/vehicles", tag = "dispatch", responses((status = 200, body = VehicleList)))]
async fn list_vehicles(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<VehicleList>> {
    caller.require(Perm::RegistryRead)?;
    let items = state.db.vehicles().list(&caller.scope).await?;
    Ok(Json(VehicleList {
        items: items.into_iter().map(|v| vehicle_for(&caller, v)).collect(),
    }))
}

/// Pending re-registrations.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebindList {
    /// The latest attempt first.
    pub items: Vec<PendingRebind>,
}

/// Vehicles in scope whose terminal tried to register again (refused: the terminal already
/// holds an auth code), or that are released for re-binding: which terminal tried, when and
/// from which address.
#[utoipa::path(get, path = "/vehicles/rebinds", tag = "dispatch", responses((status = 200, body = RebindList)))]
async fn list_rebinds(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RebindList>> {
    caller.require(Perm::DeviceManage)?;
    Ok(Json(RebindList {
        items: state.db.vehicles().pending_rebinds(&caller.scope).await?,
    }))
}

/// How long a release for re-binding lasts.
pub const REBIND_WINDOW_MS: i64 = 30 * 60_000;

/// Which refused registration attempt a release approves: `attempt_id` (from `GET
/// /vehicles/rebinds`), or `terminal_id` and `source_ip` together.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebindRequest {
    /// A recorded attempt of this vehicle (`recent_attempts[].id`).
    #[serde(default)]
    pub attempt_id: Option<String>,
    /// The new terminal's id (as it gives it in 0x0100).
    #[serde(default)]
    pub terminal_id: Option<String>,
    /// The IP address it registers from (no port).
    #[serde(default)]
    pub source_ip: Option<String>,
}

impl RebindRequest {
    fn target(self) -> ApiResult<RebindTarget> {
        use crate::routes::auth::field_error;
        let trim = |o: Option<String>| o.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        match (
            trim(self.attempt_id),
            trim(self.terminal_id),
            trim(self.source_ip),
        ) {
            (Some(a), None, None) => Ok(RebindTarget::Attempt(a)),
            (None, Some(t), Some(ip)) => {
                let ip: std::net::IpAddr = ip
                    .parse()
                    .map_err(|_| field_error("source_ip", "an IP address (no port)"))?;
                if t.chars().count() > 30 {
                    return Err(field_error("terminal_id", "up to 30 characters"));
                }
                Ok(RebindTarget::Terminal(ApprovedTerminal {
                    terminal_id: t,
                    source_ip: ip.to_canonical().to_string(),
                }))
            }
            _ => Err(field_error(
                "attempt_id",
                "name the approved attempt: attempt_id, or terminal_id and source_ip",
            )),
        }
    }
}

/// Release a vehicle's terminal for one re-registration within 30 minutes (a replaced or
/// reset terminal), for ONE attempt the device manager approved: only the next 0x0100 for its
/// number with that terminal id from that source IP gets a new auth code (the old code stops
/// working and the old terminal's link is closed); any other registration is refused and
/// recorded. Audited with the approved attempt.
#[utoipa::path(post, path = "/vehicles/{id}/rebind", tag = "dispatch", params(("id" = String, Path)),
    request_body = RebindRequest,
    responses((status = 200, body = PendingRebind), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rebind_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RebindRequest>,
) -> ApiResult<Json<PendingRebind>> {
    caller.require(Perm::DeviceManage)?;
    let target = req.target()?;
    let now = state.now();
    let p = state
        .db
        .vehicles()
        .release_rebind(
            &caller.scope,
            &id,
            &target,
            now + REBIND_WINDOW_MS,
            &caller.audit("vehicle.rebind", now),
        )
        .await
        .map_err(|e| match e {
            shouhu_storage::StorageError::NotFound("attempt") => {
                crate::routes::auth::field_error("attempt_id", "no such attempt of this vehicle")
            }
            e => e.into(),
        })?;
    state.hub.refresh_vehicle(&id).await.map_err(hub_error)?;
    Ok(Json(p))
}

/// One vehicle.
#[utoipa::path(get, path = "/vehicles/{id}", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = Vehicle), (status = 404, body = ErrorBody)))]
async fn get_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vehicle>> {
    caller.require(Perm::RegistryRead)?;
    let v = state.db.vehicles().get(&caller.scope, &id).await?;
    Ok(Json(vehicle_for(&caller, v)))
}

/// Field rules, then the org unit: it must exist and lie in the caller's scope.
pub(crate) async fn check_fields_and_org(
    state: &AppState,
    caller: &Caller,
    errs: Vec<shouhu_storage::enterprises::FieldError>,
    org_unit_id: &str,
) -> ApiResult<()> {
    if !errs.is_empty() {
        return Err(ApiError::validation(
            errs.into_iter().map(Into::into).collect(),
        ));
    }
    if state.db.org_units().get(org_unit_id).await.is_err() {
        return Err(crate::routes::auth::field_error(
            "org_unit_id",
            "no such org unit",
        ));
    }
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, org_unit_id)
        .await?
    {
        return Err(ApiError::out_of_scope("org unit", org_unit_id));
    }
    Ok(())
}

async fn check_vehicle(state: &AppState, caller: &Caller, i: &mut VehicleInput) -> ApiResult<()> {
    i.normalize();
    check_fields_and_org(state, caller, i.validate(), &i.org_unit_id).await
}

/// Register a vehicle (with its JT/T 808 terminal phone number, so the terminal may register).
#[utoipa::path(post, path = "/vehicles", tag = "dispatch", request_body = VehicleInput,
    responses((status = 200, body = Vehicle), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut i): ApiJson<VehicleInput>,
) -> ApiResult<Json<Vehicle>> {
    caller.require(Perm::DeviceManage)?;
    check_vehicle(&state, &caller, &mut i).await?;
    let v = state
        .db
        .vehicles()
        .insert(&i, &caller.audit("vehicle.create", state.now()))
        .await?;
    state.hub.refresh_vehicle(&v.id).await.map_err(hub_error)?;
    Ok(Json(v))
}

/// Vehicle update (optimistic lock).
#[derive(Debug, Deserialize, ToSchema)]
pub struct VehicleUpdate {
    /// The version read.
    pub version: i64,
    /// New fields.
    #[serde(flatten)]
    pub input: VehicleInput,
}

/// Change a vehicle. Changing its terminal number revokes the old terminal's auth code.
#[utoipa::path(put, path = "/vehicles/{id}", tag = "dispatch", params(("id" = String, Path)), request_body = VehicleUpdate,
    responses((status = 200, body = Vehicle), (status = 409, body = ErrorBody)))]
async fn update_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(mut u): ApiJson<VehicleUpdate>,
) -> ApiResult<Json<Vehicle>> {
    caller.require(Perm::DeviceManage)?;
    check_vehicle(&state, &caller, &mut u.input).await?;
    let old = state.db.vehicles().get(&caller.scope, &id).await?;
    let v = state
        .db
        .vehicles()
        .update(
            &caller.scope,
            &id,
            u.version,
            &u.input,
            &caller.audit("vehicle.update", state.now()),
        )
        .await?;
    // A changed terminal or a disabled vehicle: the old terminal's live link goes too.
    if old.terminal_phone != v.terminal_phone || v.status != "active" {
        state.jt808.revoke(&id);
    }
    state.hub.refresh_vehicle(&id).await.map_err(hub_error)?;
    Ok(Json(v))
}

/// Delete a vehicle.
#[utoipa::path(delete, path = "/vehicles/{id}", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::DeviceManage)?;
    state
        .db
        .vehicles()
        .delete(
            &caller.scope,
            &id,
            &caller.audit("vehicle.delete", state.now()),
        )
        .await?;
    state.jt808.revoke(&id);
    state.hub.refresh_vehicle(&id).await.map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT)
}

//! Body-worn recorders (执法记录仪登记): the registry, officer binding (绑定) with its history,
//! the SIP password, and the live access state the SIP server knows (registered, online,
//! transport, remote address, last seen) with the catalog channels the device reported.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::recorders::{Binding, Channel, Recorder, RecorderInput};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::dispatch::{check_fields_and_org, hub_error};
use crate::state::AppState;

/// The recorder routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recorders, create_recorder))
        .routes(routes!(get_recorder, update_recorder))
        .routes(routes!(refresh_catalog))
}

/// Live access state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Access {
    /// Registered with the SIP server now.
    pub registered: bool,
    /// Keepalives arriving.
    pub online: bool,
    /// Sending live video now.
    pub streaming: bool,
    /// `UDP` / `TCP` of the current (else last) registration.
    pub transport: Option<String>,
    /// Remote address of the current (else last) registration.
    pub remote_addr: Option<String>,
    /// Last heard, ms.
    pub last_seen_at_ms: Option<i64>,
    /// When the current registration runs out, ms.
    pub registered_until_ms: Option<i64>,
}

/// A recorder with its access state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecorderView {
    /// The registry entry.
    #[serde(flatten)]
    pub recorder: Recorder,
    /// Live access state.
    pub access: Access,
}

/// One recorder in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecorderDetail {
    /// Entry and access state.
    #[serde(flatten)]
    pub recorder: RecorderView,
    /// Catalog channels as last reported.
    pub channel_list: Vec<Channel>,
    /// Who wore it, newest first.
    pub bindings: Vec<Binding>,
}

/// Recorders.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecorderList {
    /// By device id.
    pub items: Vec<RecorderView>,
}

fn view(state: &AppState, r: Recorder) -> RecorderView {
    let live = state.sip.access(&r.device_id);
    let access = match live {
        Some(a) => Access {
            registered: true,
            online: a.online,
            streaming: state.streams.is_streaming(&r.device_id),
            transport: Some(a.transport.to_string()),
            remote_addr: Some(a.remote.to_string()),
            last_seen_at_ms: Some(a.last_seen_ms),
            registered_until_ms: Some(a.registered_until_ms),
        },
        None => Access {
            registered: false,
            online: false,
            streaming: false,
            transport: r.transport.clone(),
            remote_addr: r.remote_addr.clone(),
            last_seen_at_ms: r.last_seen_at_ms,
            registered_until_ms: None,
        },
    };
    RecorderView {
        recorder: r,
        access,
    }
}

/// Body-worn recorders in scope, with the officer each is bound to and the access state.
#[utoipa::path(get, path = "/recorders", tag = "dispatch", responses((status = 200, body = RecorderList)))]
async fn list_recorders(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RecorderList>> {
    caller.require(Perm::RegistryRead)?;
    let items = state.db.recorders().list(&caller.scope).await?;
    Ok(Json(RecorderList {
        items: items.into_iter().map(|r| view(&state, r)).collect(),
    }))
}

/// One recorder with its catalog channels and binding history.
#[utoipa::path(get, path = "/recorders/{id}", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = RecorderDetail), (status = 404, body = ErrorBody)))]
async fn get_recorder(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RecorderDetail>> {
    // The dispatch screen reads a recorder's channels to open its video.
    if caller.require(Perm::RegistryRead).is_err() {
        caller.require(Perm::DispatchView)?;
    }
    let r = state.db.recorders().get(&caller.scope, &id).await?;
    let channel_list = state.db.recorders().channels(&id).await?;
    let bindings = state.db.recorders().bindings(&id).await?;
    Ok(Json(RecorderDetail {
        recorder: view(&state, r),
        channel_list,
        bindings,
    }))
}

async fn check_recorder(state: &AppState, caller: &Caller, i: &mut RecorderInput) -> ApiResult<()> {
    i.normalize();
    check_fields_and_org(state, caller, i.validate(), &i.org_unit_id).await?;
    if let Some(o) = &i.officer_id {
        if state.db.officers().get(&caller.scope, o).await.is_err() {
            return Err(crate::routes::auth::field_error(
                "officer_id",
                "no such officer in your scope",
            ));
        }
    }
    Ok(())
}

async fn after_change(state: &AppState, device_id: &str) -> ApiResult<()> {
    state.hub.refresh_registry().await.map_err(hub_error)?;
    crate::sip::refresh_device(&state.db, &state.sip, &state.cfg, device_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}

/// Register a recorder; with `officer_id` it reports for that officer (one marker per officer).
/// `password` sets its own SIP password (kept only as digest HA1 values); without one the shared
/// `sip.password` applies.
#[utoipa::path(post, path = "/recorders", tag = "dispatch", request_body = RecorderInput,
    responses((status = 200, body = RecorderView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_recorder(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut i): ApiJson<RecorderInput>,
) -> ApiResult<Json<RecorderView>> {
    caller.require(Perm::DeviceManage)?;
    check_recorder(&state, &caller, &mut i).await?;
    let secret = crate::sip::ha1_change(&state.cfg, &i.device_id, i.password.as_deref());
    let r = state
        .db
        .recorders()
        .insert(&i, &secret, &caller.audit("recorder.create", state.now()))
        .await?;
    after_change(&state, &i.device_id).await?;
    Ok(Json(view(&state, r)))
}

/// Recorder update (optimistic lock).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecorderUpdate {
    /// The version read.
    pub version: i64,
    /// New fields (`device_id` must match the path).
    #[serde(flatten)]
    pub input: RecorderInput,
}

/// Change a recorder: bind it to an officer, unbind it (`officer_id: null`), rename, disable,
/// set (`password`) or clear (`password: ""`) its SIP password. Disabling ends a standing
/// registration.
#[utoipa::path(put, path = "/recorders/{id}", tag = "dispatch", params(("id" = String, Path)), request_body = RecorderUpdate,
    responses((status = 200, body = RecorderView), (status = 409, body = ErrorBody)))]
async fn update_recorder(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(mut u): ApiJson<RecorderUpdate>,
) -> ApiResult<Json<RecorderView>> {
    caller.require(Perm::DeviceManage)?;
    if u.input.device_id.trim() != id {
        return Err(crate::routes::auth::field_error(
            "device_id",
            "must match the path",
        ));
    }
    check_recorder(&state, &caller, &mut u.input).await?;
    let secret = crate::sip::ha1_change(&state.cfg, &id, u.input.password.as_deref());
    let r = state
        .db
        .recorders()
        .update(
            &caller.scope,
            u.version,
            &u.input,
            &secret,
            &caller.audit("recorder.update", state.now()),
        )
        .await?;
    after_change(&state, &id).await?;
    Ok(Json(view(&state, r)))
}

/// Ask the device for its catalog and device info again (answers arrive asynchronously).
#[utoipa::path(post, path = "/recorders/{id}/catalog", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 202), (status = 409, body = ErrorBody)))]
async fn refresh_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require(Perm::DeviceManage)?;
    state.db.recorders().get(&caller.scope, &id).await?;
    if !state.sip.query(&id, "Catalog").await {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_registered",
            "the recorder is not registered",
        ));
    }
    let _ = state.sip.query(&id, "DeviceInfo").await;
    Ok(axum::http::StatusCode::ACCEPTED)
}

//! Dispatch calls (调度通话): place, list (with a long poll for the officer's app), answer,
//! hang up, and the console's media (see [`crate::calls`]).
//!
//! Who may do what: operators (`dispatch.command`) place calls to units in their scope and hang
//! up; the console's side is published only by the operator who placed the call; anyone who
//! sees the dispatch map (`dispatch.view`) lists and watches the calls in scope; the called
//! officer's own account (the app) lists its calls, answers, plays the console's side and hangs
//! up (declines while it rings).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_dispatch::coords::Crs;
use shouhu_storage::model::UnitKind;
use shouhu_storage::org_units::Scope;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{grants, Perm};
use crate::auth::Caller;
use crate::calls::{Call, CallError, CallState, NewCall};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, ApiText};
use crate::routes::dispatch::{visible, visible_unit};
use crate::routes::streams::{end_audit, hub_error, require_sdp, sdp_created, webrtc_error};
use crate::state::AppState;

/// The call routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls, place_call))
        .routes(routes!(get_call))
        .routes(routes!(answer_call))
        .routes(routes!(hang_up_call))
        .routes(routes!(console_whip))
        .routes(routes!(console_whep))
}

fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        CallError::NotFound => ApiError::not_found("call"),
        CallError::State(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
    }
}

/// Whether the caller is the called officer (the app's account).
fn is_called_officer(state: &AppState, caller: &Caller, call: &Call) -> bool {
    call.officer_id.is_some() && state.hub.officer_of_account(&caller.account.id) == call.officer_id
}

/// Whether the caller has `perm` over the call's org unit.
async fn in_scope(state: &AppState, caller: &Caller, call: &Call, perm: Perm) -> ApiResult<bool> {
    if !grants(&caller.account.role, perm) {
        return Ok(false);
    }
    Ok(match visible(state, caller).await? {
        None => true,
        Some(v) => v.contains(&call.org_unit_id),
    })
}

/// The call, when the caller may see it: 403 for an account that sees no calls at all (neither
/// dispatch staff nor an officer with the app), 404 for a call that is not there, and 404 with
/// a `denied` audit row for a call outside the caller's scope (or another officer's).
async fn visible_call(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Call> {
    if !grants(&caller.account.role, Perm::DispatchView)
        && state.hub.officer_of_account(&caller.account.id).is_none()
    {
        return Err(ApiError::forbidden(
            "only dispatch staff and officers with the app see calls",
        ));
    }
    let call = state
        .calls
        .get(id)
        .ok_or_else(|| ApiError::not_found("call"))?;
    if is_called_officer(state, caller, &call)
        || in_scope(state, caller, &call, Perm::DispatchView).await?
    {
        Ok(call)
    } else {
        Err(ApiError::out_of_scope("call", id))
    }
}

/// Calls and the change counter.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    /// Pass it back as `after_version` to wait for the next change.
    pub version: u64,
    /// Open calls and the recently ended ones, newest first.
    pub items: Vec<Call>,
}

/// Call filter and long poll.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// `ringing`, `connected`, `ended`, or `open` (ringing or connected).
    pub state: Option<String>,
    /// Answer when the calls changed after this version (or `wait_s` passed).
    pub after_version: Option<u64>,
    /// How long to wait for a change, seconds (at most 30; default 25 with `after_version`).
    pub wait_s: Option<u64>,
}

/// Calls the caller may see: the dispatch map's (in scope), or the app's own. With
/// `after_version` the answer waits until something changed (a long poll: the app learns of an
/// incoming call at once).
#[utoipa::path(get, path = "/calls", tag = "dispatch", params(CallQuery), responses((status = 200, body = CallList)))]
async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CallQuery>,
) -> ApiResult<Json<CallList>> {
    let wanted: Option<&[CallState]> = match q.state.as_deref() {
        None | Some("") => None,
        Some("ringing") => Some(&[CallState::Ringing]),
        Some("connected") => Some(&[CallState::Connected]),
        Some("ended") => Some(&[CallState::Ended]),
        Some("open") => Some(&[CallState::Ringing, CallState::Connected]),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: use ringing, connected, ended or open"
            )))
        }
    };
    let officer = state.hub.officer_of_account(&caller.account.id);
    let operator = grants(&caller.account.role, Perm::DispatchView);
    if officer.is_none() && !operator {
        return Err(ApiError::forbidden(
            "only dispatch staff and officers with the app see calls",
        ));
    }
    if let Some(after) = q.after_version {
        let wait = Duration::from_secs(q.wait_s.unwrap_or(25).min(30));
        state.calls.wait_change(after, wait).await;
    }
    let version = state.calls.version();
    let vis = if operator {
        Some(visible(&state, &caller).await?)
    } else {
        None
    };
    let items = state
        .calls
        .all()
        .into_iter()
        .filter(|c| wanted.is_none_or(|w| w.contains(&c.state)))
        .filter(|c| {
            let own = c.officer_id.is_some() && c.officer_id == officer;
            let scoped = match &vis {
                Some(None) => true,
                Some(Some(v)) => v.contains(&c.org_unit_id),
                None => false,
            };
            own || scoped
        })
        .collect();
    Ok(Json(CallList { version, items }))
}

/// Whom to call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallInput {
    /// An officer's unit (its phone app rings; its body cameras connect at once) or an unbound
    /// recorder.
    pub unit_id: String,
}

/// Call a unit: it turns `in_call` on the map and every stream of its devices is recorded
/// until the call ends. `409` while the unit is in another call; `422` for a unit with no
/// device to call (vehicles, officers with no recorder or phone terminal). Audited
/// (`call.start`).
#[utoipa::path(post, path = "/calls", tag = "dispatch", request_body = CallInput,
    responses((status = 200, body = Call), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn place_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(i): ApiJson<CallInput>,
) -> ApiResult<Json<Call>> {
    caller.require(Perm::DispatchCommand)?;
    let unit = visible_unit(&state, &caller, i.unit_id.trim(), Crs::Wgs84).await?;
    let no_device = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_device", m);
    let (devices, officer_id, answer_needed) = match unit.kind {
        UnitKind::Vehicle => {
            return Err(no_device(
                "vehicles take no calls here: call the officers in it",
            ))
        }
        UnitKind::Recorder => (vec![unit.id.clone()], None, false),
        UnitKind::Officer => {
            let mut devices: Vec<String> = state
                .db
                .recorders()
                .list(&Scope::All)
                .await?
                .into_iter()
                .filter(|r| {
                    r.officer_id.as_deref() == Some(unit.id.as_str()) && r.status == "active"
                })
                .map(|r| r.device_id)
                .collect();
            // The phone terminal (not registered over SIP) first: the console's side goes to
            // the device whose app plays it.
            devices.sort_by_key(|d| state.sip.access(d).is_some());
            let app = state
                .db
                .officers()
                .get(&Scope::All, &unit.id)
                .await
                .ok()
                .and_then(|o| o.account_id)
                .is_some();
            (devices, Some(unit.id.clone()), app)
        }
    };
    if devices.is_empty() {
        return Err(no_device(
            "the officer has no recorder or phone terminal registered to call",
        ));
    }
    let call = state
        .calls
        .place(
            &state,
            NewCall {
                unit_id: unit.id.clone(),
                unit_name: unit.name.clone(),
                org_unit_id: unit.org_unit_id.clone(),
                officer_id,
                devices,
                answer_needed,
            },
            &caller.account.display_name,
            caller.audit("call.start", state.now()),
        )
        .await
        .map_err(call_error)?;
    Ok(Json(call))
}

/// One call.
#[utoipa::path(get, path = "/calls/{id}", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = Call), (status = 404, body = ErrorBody)))]
async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    Ok(Json(visible_call(&state, &caller, &id).await?))
}

/// The called officer's app answers. Audited (`call.answer`).
#[utoipa::path(post, path = "/calls/{id}/answer", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = Call), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn answer_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    let call = visible_call(&state, &caller, &id).await?;
    if !is_called_officer(&state, &caller, &call) {
        return Err(ApiError::forbidden("only the called officer answers"));
    }
    let call = state
        .calls
        .answer(&state, &id, &caller.actor())
        .await
        .map_err(call_error)?;
    Ok(Json(call))
}

/// End a call (the officer declines while it rings). Answers once the call's recordings are
/// stored and closed. Audited (`call.end`, with the reason, the length and the recordings).
#[utoipa::path(post, path = "/calls/{id}/hangup", tag = "dispatch", params(("id" = String, Path)),
    responses((status = 200, body = Call), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn hang_up_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    let call = visible_call(&state, &caller, &id).await?;
    let reason = if is_called_officer(&state, &caller, &call) {
        if call.state == CallState::Ringing {
            "declined"
        } else {
            "hangup_officer"
        }
    } else if in_scope(&state, &caller, &call, Perm::DispatchCommand).await? {
        "hangup"
    } else {
        return Err(ApiError::forbidden(
            "only the operators and the called officer end a call",
        ));
    };
    let call = state.calls.hang_up(&id, reason).await.map_err(call_error)?;
    Ok(Json(call))
}

/// The console's side of the call (the operator's microphone, with a camera or a placard
/// picture) over WHIP: published as the call's `console` channel, which the app plays and the
/// call records. Only by the operator who placed the call. `DELETE` the `Location` to stop; the
/// call's end stops it too. Audited (`stream.publish`, `stream.publish_end`).
#[utoipa::path(post, path = "/calls/{id}/whip", tag = "dispatch", params(("id" = String, Path)),
    request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, content_type = "application/sdp"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn console_whip(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiText(offer): ApiText,
) -> ApiResult<Response> {
    require_sdp(&offer)?;
    let call = visible_call(&state, &caller, &id).await?;
    if !in_scope(&state, &caller, &call, Perm::DispatchCommand).await?
        || call.caller_account_id != caller.account.id
    {
        return Err(ApiError::forbidden(
            "only the operator who placed the call speaks for the command centre",
        ));
    }
    if call.state == CallState::Ended {
        return Err(call_error(CallError::State("the call is over")));
    }
    let [device, channel] = &call.console;
    let publisher = state.streams.publish(device, channel).map_err(hub_error)?;
    let on_end = end_audit(&state, &caller, "stream.publish_end", device);
    let (session, answer) = state
        .whip
        .start(offer, publisher, &caller.account.id, on_end)
        .await
        .map_err(webrtc_error)?;
    if let Err(e) = state.calls.set_console_session(&id, &session) {
        // The call ended meanwhile.
        state.whip.stop(&session);
        return Err(call_error(e));
    }
    let audit = caller
        .audit("stream.publish", state.now())
        .target("recorder", device)
        .details(serde_json::json!({"channel_id": channel, "session": session, "call_id": id}));
    state.db.audit().record(&audit).await?;
    Ok(sdp_created("whip", &session, answer))
}

/// Play the console's side (the called officer's app; operators may listen in) over WHEP.
/// Audited (`stream.view`, `stream.view_end`).
#[utoipa::path(post, path = "/calls/{id}/whep", tag = "dispatch", params(("id" = String, Path)),
    request_body(content = String, content_type = "application/sdp"),
    responses((status = 201, content_type = "application/sdp"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn console_whep(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiText(offer): ApiText,
) -> ApiResult<Response> {
    require_sdp(&offer)?;
    let call = visible_call(&state, &caller, &id).await?;
    if call.state == CallState::Ended {
        return Err(call_error(CallError::State("the call is over")));
    }
    let [device, channel] = &call.console;
    if state.streams.stream(device, channel).is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_published",
            "the command centre has not started speaking yet; try again",
        ));
    }
    let accept_h265 = offer.contains("H265/90000");
    let viewer = state
        .streams
        .watch_web(device, channel, accept_h265, Duration::from_secs(15))
        .await
        .map_err(hub_error)?;
    let on_end = end_audit(&state, &caller, "stream.view_end", device);
    let (session, answer) = state
        .whep
        .start(offer, viewer, &caller.account.id, on_end)
        .await
        .map_err(webrtc_error)?;
    let audit = caller
        .audit("stream.view", state.now())
        .target("recorder", device)
        .details(serde_json::json!({"channel_id": channel, "view": "call", "session": session, "call_id": id}));
    state.db.audit().record(&audit).await?;
    Ok(sdp_created("whep", &session, answer))
}

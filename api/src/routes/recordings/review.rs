//! Links to inspections, suggestions, legal holds and retention per org unit.
//!
//! Adding protection (a link, a confirmed suggestion, a hold) is open to whoever holds
//! [`Perm::RecordingReview`], officers included: it is their normal flow. Removing it (an
//! unlink, a dismissed suggestion, a released hold) lets retention delete the footage, so it
//! needs [`Perm::RecordingProtectionRemove`] (reviewers and case handlers), the recording and the
//! inspection in the caller's scope, and a caller who is not the officer the recording films
//! (refused with 403 and a `denied` audit row whatever the role). Every change is audited in the
//! transaction that makes it. Retention is set per org unit in the caller's subtree, never below
//! `recording.min_retention_days`.

use super::*;
use shouhu_storage::org_units::Scope;

/// These routes.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(link, list_links))
        .routes(routes!(unlink))
        .routes(routes!(suggest))
        .routes(routes!(hold))
        .routes(routes!(set_retention))
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

/// The recording, when the caller may remove its protection (`action` names the attempt in
/// the `denied` row of a refusal): the role grants it (403), the recording is in scope (404),
/// and the caller is not the officer it films (403, audited as `denied`).
async fn unprotectable(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
) -> ApiResult<Recording> {
    caller.require(Perm::RecordingProtectionRemove)?;
    let r = state.db.recordings().get(&caller.scope, id).await?;
    if films_caller(state, caller, &r).await? {
        crate::auth::audit_denied(state, caller, action, "recording", id).await;
        return Err(ApiError::forbidden(
            "the officer a recording films may not remove its protection; a reviewer or case handler does",
        ));
    }
    Ok(r)
}

/// Whether `r` films the caller: its officer's record is bound to the caller's account.
async fn films_caller(state: &AppState, caller: &Caller, r: &Recording) -> ApiResult<bool> {
    let Some(officer) = &r.officer_id else {
        return Ok(false);
    };
    match state.db.officers().get(&Scope::All, officer).await {
        Ok(o) => Ok(o.account_id.as_deref() == Some(caller.account.id.as_str())),
        Err(shouhu_storage::StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The links of recording `id` as the caller may see them: a link to an inspection outside the
/// caller's scope keeps its state and times, but its inspection and enterprise are blanked
/// (`inspection_id`, `inspection_code`, `enterprise_id`, `enterprise_name` empty).
pub(super) async fn links_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Vec<RecordingLink>> {
    let mut links = state.db.recordings().links(id).await?;
    if caller.scope == Scope::All {
        return Ok(links);
    }
    for l in &mut links {
        match state
            .db
            .inspections()
            .get(&caller.scope, &l.inspection_id)
            .await
        {
            Ok(_) => {}
            Err(shouhu_storage::StorageError::NotFound(_)) => {
                l.inspection_id.clear();
                l.inspection_code.clear();
                l.enterprise_id.clear();
                l.enterprise_name.clear();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(links)
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
    Ok(Json(links_in_scope(&state, &caller, &id).await?))
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
    Ok(Json(links_in_scope(&state, &caller, &id).await?))
}

/// Unlink a recording from an inspection, or dismiss a suggestion: reviewers and case
/// handlers (`recording.protection_remove`), the recording and the inspection in their scope
/// (404 otherwise, audited as `denied`), never the officer the recording films (403). Audited
/// (`recording.unlink`).
#[utoipa::path(delete, path = "/recordings/{id}/links/{inspection_id}", tag = "recordings",
    params(("id" = String, Path), ("inspection_id" = String, Path)),
    responses((status = 200, body = Vec<RecordingLink>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlink(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, inspection_id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<RecordingLink>>> {
    caller.require(Perm::RecordingProtectionRemove)?;
    state.db.recordings().get(&caller.scope, &id).await?;
    state
        .db
        .inspections()
        .get(&caller.scope, &inspection_id)
        .await?;
    unprotectable(&state, &caller, &id, "recording.unlink").await?;
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
    Ok(Json(links_in_scope(&state, &caller, &id).await?))
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
    Ok(Json(links_in_scope(&state, &caller, &id).await?))
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

/// Put a recording under a legal hold (kept past its retention until released; whoever links
/// recordings may), or release it (reviewers and case handlers in scope, never the officer the
/// recording films: 403). Audited (`recording.hold`; a refused release as `denied`).
#[utoipa::path(put, path = "/recordings/{id}/hold", tag = "recordings", params(("id" = String, Path)), request_body = HoldInput,
    responses((status = 200, body = Recording), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(i): ApiJson<HoldInput>,
) -> ApiResult<Json<Recording>> {
    if i.held {
        reviewable(&state, &caller, &id).await?;
    } else {
        unprotectable(&state, &caller, &id, "recording.hold").await?;
    }
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
    /// Days (`recording.min_retention_days`, default 365, to 36500).
    pub days: i64,
}

/// Set an org unit's recording retention (its subtree inherits it unless a nearer unit sets
/// its own): administrators, for a unit in their subtree (404 otherwise, audited as
/// `denied`; the corps root is a district administrator's out-of-scope unit like any other),
/// never below `recording.min_retention_days` (422 naming the floor). Audited
/// (`recording.retention`).
#[utoipa::path(put, path = "/recordings/retention/{org_unit_id}", tag = "recordings", params(("org_unit_id" = String, Path)),
    request_body = RetentionInput, responses((status = 200), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiJson(i): ApiJson<RetentionInput>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::OrgWrite)?;
    crate::routes::org_units::unit_in_scope(&state, &caller, &org).await?;
    let floor = state.cfg.recording.min_retention_days;
    if i.days < floor {
        return Err(crate::routes::auth::field_error(
            "days",
            &format!("must be at least {floor} (recording.min_retention_days)"),
        ));
    }
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

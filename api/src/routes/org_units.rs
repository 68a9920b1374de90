//! `/api/v1/org-units`: the org tree.
//!
//! Anyone reads the whole tree (names and codes are not confidential); administrators create
//! and rename units in their own subtree only: a parent or unit outside it answers 404 (audited
//! as `denied`, like any out-of-scope row), and a new root is for corps accounts (403).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::OrgUnitDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::auth::field_error;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(rename))
}

/// The whole org tree (names and codes are not confidential: forms need them).
#[utoipa::path(get, path = "/org-units", tag = "org", responses((status = 200, body = Vec<OrgUnitDto>)))]
async fn list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<OrgUnitDto>>> {
    Ok(Json(
        state
            .db
            .org_units()
            .list()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Org unit `id`, when it lies in the caller's subtree; 404 when it does not exist or lies
/// outside (then audited as `denied`).
pub(crate) async fn unit_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<OrgUnit> {
    let unit = state.db.org_units().get(id).await?;
    if !state.db.org_units().in_scope(&caller.scope, id).await? {
        return Err(ApiError::out_of_scope("org unit", id));
    }
    Ok(unit)
}

/// New org unit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgUnit {
    /// Parent (none only for the corps).
    pub parent_id: Option<String>,
    /// `corps`, `brigade`, `squad`, `town` or `soe_group`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Unique code.
    pub code: String,
}

/// Create an org unit (administrators, under a unit of their subtree; a root only from the
/// corps).
#[utoipa::path(post, path = "/org-units", tag = "org", request_body = CreateOrgUnit,
    responses((status = 200, body = OrgUnitDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateOrgUnit>,
) -> ApiResult<Json<OrgUnitDto>> {
    caller.require(Perm::OrgWrite)?;
    match &req.parent_id {
        Some(parent) => {
            unit_in_scope(&state, &caller, parent).await?;
        }
        None => crate::auth::roles::require_corps(&state, &caller, "org_unit.create", None).await?,
    }
    let kind = OrgKind::parse(&req.kind)
        .ok_or_else(|| field_error("kind", "must be corps, brigade, squad, town or soe_group"))?;
    let new = NewOrgUnit {
        parent_id: req.parent_id,
        kind,
        name: req.name,
        code: req.code,
    };
    let unit = state
        .db
        .org_units()
        .create(&new, &caller.audit("org_unit.create", state.now()))
        .await?;
    Ok(Json(unit.into()))
}

/// Rename.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameOrgUnit {
    /// Name.
    pub name: String,
    /// Code.
    pub code: String,
}

/// Rename an org unit (administrators, a unit of their subtree).
#[utoipa::path(patch, path = "/org-units/{id}", tag = "org", params(("id" = String, Path)), request_body = RenameOrgUnit,
    responses((status = 200, body = OrgUnitDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameOrgUnit>,
) -> ApiResult<Json<OrgUnitDto>> {
    caller.require(Perm::OrgWrite)?;
    unit_in_scope(&state, &caller, &id).await?;
    let unit = state
        .db
        .org_units()
        .rename(
            &id,
            &req.name,
            &req.code,
            &caller.audit("org_unit.update", state.now()),
        )
        .await?;
    Ok(Json(unit.into()))
}

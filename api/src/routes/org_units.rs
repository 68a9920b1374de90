//! `/api/v1/org-units`: the org tree.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::org_units::{NewOrgUnit, OrgKind};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::OrgUnitDto;
use crate::error::{ApiResult, ErrorBody};
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

/// Create an org unit (administrators).
#[utoipa::path(post, path = "/org-units", tag = "org", request_body = CreateOrgUnit,
    responses((status = 200, body = OrgUnitDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateOrgUnit>,
) -> ApiResult<Json<OrgUnitDto>> {
    caller.require(Perm::OrgWrite)?;
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

/// Rename an org unit (administrators).
#[utoipa::path(patch, path = "/org-units/{id}", tag = "org", params(("id" = String, Path)), request_body = RenameOrgUnit,
    responses((status = 200, body = OrgUnitDto)))]
async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameOrgUnit>,
) -> ApiResult<Json<OrgUnitDto>> {
    caller.require(Perm::OrgWrite)?;
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

//! `/api/v1/inspection-items`: the inspection item list, editable and versioned. The list is
//! corps-wide: everyone reads it, only corps accounts edit it (403 elsewhere, audited as
//! `denied`).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::inspection_items::ItemInput;
use shouhu_storage::PageRequest;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::{ItemDto, ItemVersionDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::enterprises::split_versioned_body;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update))
        .routes(routes!(history))
}

/// Item list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of code, title or category.
    pub q: Option<String>,
    /// Sector code (items for all sectors are included).
    pub sector: Option<String>,
    /// Only active (`true`) or inactive (`false`) items.
    pub active: Option<bool>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// List items by code.
#[utoipa::path(get, path = "/inspection-items", tag = "inspection-items", params(ListQuery), responses((status = 200, body = Page<ItemDto>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<ItemDto>>> {
    caller.require(Perm::RegistryRead)?;
    let p = state
        .db
        .inspection_items()
        .list(
            q.q.as_deref(),
            q.sector.as_deref(),
            q.active,
            PageRequest::new(q.page, q.page_size),
        )
        .await?;
    Ok(Json(Page::from(p, ItemDto::from)))
}

/// One item.
#[utoipa::path(get, path = "/inspection-items/{id}", tag = "inspection-items", params(("id" = String, Path)), responses((status = 200, body = ItemDto), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ItemDto>> {
    caller.require(Perm::RegistryRead)?;
    Ok(Json(state.db.inspection_items().get(&id).await?.into()))
}

fn check(i: &ItemInput) -> ApiResult<()> {
    let errs = i.validate();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(
            errs.into_iter().map(Into::into).collect(),
        ))
    }
}

/// Add an item (corps accounts).
#[utoipa::path(post, path = "/inspection-items", tag = "inspection-items", request_body = ItemInput,
    responses((status = 200, body = ItemDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(i): ApiJson<ItemInput>,
) -> ApiResult<Json<ItemDto>> {
    caller.require(Perm::ItemWrite)?;
    crate::auth::roles::require_corps(&state, &caller, "inspection_item.create", None).await?;
    check(&i)?;
    Ok(Json(
        state
            .db
            .inspection_items()
            .create(&i, &caller.audit("inspection_item.create", state.now()))
            .await?
            .into(),
    ))
}

/// Edit an item (with the `version` read; corps accounts); the previous wording is kept in its
/// history.
#[utoipa::path(put, path = "/inspection-items/{id}", tag = "inspection-items", params(("id" = String, Path)), request_body = ItemInput,
    responses((status = 200, body = ItemDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<ItemDto>> {
    caller.require(Perm::ItemWrite)?;
    crate::auth::roles::require_corps(
        &state,
        &caller,
        "inspection_item.update",
        Some(("inspection_item", &id)),
    )
    .await?;
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.remove("builtin");
    }
    let (version, i): (i64, ItemInput) = split_versioned_body(body)?;
    check(&i)?;
    Ok(Json(
        state
            .db
            .inspection_items()
            .update(
                &id,
                version,
                &i,
                &caller.audit("inspection_item.update", state.now()),
            )
            .await?
            .into(),
    ))
}

/// Past versions of an item, newest first.
#[utoipa::path(get, path = "/inspection-items/{id}/history", tag = "inspection-items", params(("id" = String, Path)), responses((status = 200, body = Vec<ItemVersionDto>)))]
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<ItemVersionDto>>> {
    caller.require(Perm::RegistryRead)?;
    Ok(Json(
        state
            .db
            .inspection_items()
            .history(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

//! `/api/v1/account-applications`: a district applies for an account, the corps approves.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::accounts::NewApplication;
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{self, Perm};
use crate::auth::{password, Caller};
use crate::dto::{AccountDto, ApplicationDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::auth::field_error;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, file))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// Application list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// Applications in scope, newest first.
#[utoipa::path(get, path = "/account-applications", tag = "accounts", params(ListQuery), responses((status = 200, body = Page<ApplicationDto>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<ApplicationDto>>> {
    if !roles::grants(&caller.account.role, Perm::ApplicationFile) {
        caller.require(Perm::ApplicationDecide)?;
    }
    let page = state
        .db
        .accounts()
        .applications(
            &caller.scope,
            q.status.as_deref().filter(|s| !s.is_empty()),
            PageRequest::new(q.page, q.page_size),
        )
        .await?;
    Ok(Json(Page::from(page, ApplicationDto::from)))
}

/// New application.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileApplication {
    /// Requested username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Requested role.
    pub role: String,
    /// Org unit (within the applicant's scope).
    pub org_unit_id: String,
    /// Why the account is needed.
    pub reason: String,
}

/// File an application for an account in one's own unit.
#[utoipa::path(post, path = "/account-applications", tag = "accounts", request_body = FileApplication,
    responses((status = 200, body = ApplicationDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn file(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<FileApplication>,
) -> ApiResult<Json<ApplicationDto>> {
    caller.require(Perm::ApplicationFile)?;
    if !roles::is_role(&req.role) {
        return Err(field_error("role", "unknown role"));
    }
    if !caller.at_corps() && !roles::applicable_by_district(&req.role) {
        return Err(field_error("role", "a district cannot apply for this role"));
    }
    if display_empty(&req.display_name) {
        return Err(field_error("display_name", "must not be empty"));
    }
    state
        .db
        .org_units()
        .get(&req.org_unit_id)
        .await
        .map_err(|_| field_error("org_unit_id", "no such org unit"))?;
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &req.org_unit_id)
        .await?
    {
        return Err(ApiError::out_of_scope("org unit", &req.org_unit_id));
    }
    let new = NewApplication {
        username: req.username.trim().to_string(),
        display_name: req.display_name,
        role: req.role,
        org_unit_id: req.org_unit_id,
        reason: req.reason,
        applicant_id: caller.account.id.clone(),
    };
    let app = state
        .db
        .accounts()
        .apply(&new, &caller.audit("account_application.file", state.now()))
        .await?;
    Ok(Json(app.into()))
}

fn display_empty(s: &str) -> bool {
    s.trim().is_empty()
}

/// Approval result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Approved {
    /// The application.
    pub application: ApplicationDto,
    /// The new account.
    pub account: AccountDto,
    /// Temporary password, shown once; the user must change it at first login.
    pub temporary_password: String,
}

/// Approve (corps only): creates the account with a temporary password.
#[utoipa::path(post, path = "/account-applications/{id}/approve", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = Approved), (status = 403, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Approved>> {
    caller.require(Perm::ApplicationDecide)?;
    if !caller.at_corps() {
        return Err(ApiError::forbidden("only the corps approves accounts"));
    }
    let temporary_password = temporary_password();
    let hash = password::hash(&state.cfg.auth, &temporary_password).await?;
    let (app, acc) = state
        .db
        .accounts()
        .approve(
            &id,
            &caller.account.id,
            &hash,
            &caller.audit("account_application.approve", state.now()),
        )
        .await?;
    Ok(Json(Approved {
        application: app.into(),
        account: acc.into(),
        temporary_password,
    }))
}

/// Rejection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// Why.
    pub reason: String,
}

/// Reject (corps only).
#[utoipa::path(post, path = "/account-applications/{id}/reject", tag = "accounts", params(("id" = String, Path)), request_body = Reject,
    responses((status = 200, body = ApplicationDto), (status = 403, body = ErrorBody)))]
async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Reject>,
) -> ApiResult<Json<ApplicationDto>> {
    caller.require(Perm::ApplicationDecide)?;
    if !caller.at_corps() {
        return Err(ApiError::forbidden("only the corps decides applications"));
    }
    let app = state
        .db
        .accounts()
        .reject(
            &id,
            &caller.account.id,
            &req.reason,
            &caller.audit("account_application.reject", state.now()),
        )
        .await?;
    Ok(Json(app.into()))
}

/// A random temporary password that meets the rules (upper, lower, digit, symbol; 14 chars).
pub fn temporary_password() -> String {
    use rand::seq::SliceRandom;
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    let sets: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!@#%*-_+",
    ];
    let mut chars: Vec<u8> = sets.iter().map(|s| s[rng.gen_range(0..s.len())]).collect();
    let all: Vec<u8> = sets.concat();
    while chars.len() < 14 {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ASCII")
}

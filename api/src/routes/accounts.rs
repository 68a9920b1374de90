//! `/api/v1/accounts` (administrators) and `/api/v1/roles`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::accounts::{AccountFilter, NewAccount};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{self, Perm, RoleInfo};
use crate::auth::{password, Caller};
use crate::dto::{AccountDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::auth::{check_new_password, field_error};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(unlock))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(reset_password))
        .routes(routes!(list_roles))
}

/// Account list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of username or display name.
    pub q: Option<String>,
    /// Role code.
    pub role: Option<String>,
    /// Org unit (its subtree).
    pub org_unit_id: Option<String>,
    /// Page (1-based).
    pub page: Option<i64>,
    /// Page size (≤ 500).
    pub page_size: Option<i64>,
}

/// List accounts in the administrator's scope.
#[utoipa::path(get, path = "/accounts", tag = "accounts", params(ListQuery), responses((status = 200, body = Page<AccountDto>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<AccountDto>>> {
    caller.require(Perm::AccountManage)?;
    let f = AccountFilter {
        q: q.q,
        role: q.role,
        org_unit_id: q.org_unit_id,
    };
    let page = state
        .db
        .accounts()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, AccountDto::from)))
}

/// New account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Initial password (the user must change it at first login).
    pub password: String,
    /// Role code.
    pub role: String,
    /// Org unit.
    pub org_unit_id: String,
}

/// Create an account; the user must change the password at first login.
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = CreateAccount,
    responses((status = 200, body = AccountDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<Json<AccountDto>> {
    caller.require(Perm::AccountManage)?;
    if !roles::is_role(&req.role) {
        return Err(field_error("role", "unknown role"));
    }
    password::check_policy(&req.password, &req.username)
        .map_err(|m| field_error("password", &m))?;
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
    let hash = password::hash(&state.cfg.auth, &req.password).await?;
    let new = NewAccount {
        username: req.username.trim().to_string(),
        display_name: req.display_name,
        password_hash: hash,
        role: req.role,
        org_unit_id: req.org_unit_id,
        must_change_password: true,
    };
    let acc = state
        .db
        .accounts()
        .create(&new, &caller.audit("account.create", state.now()))
        .await?;
    Ok(Json(acc.into()))
}

async fn target(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    caller.require(Perm::AccountManage)?;
    let acc = state.db.accounts().get(id).await?;
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &acc.org_unit_id)
        .await?
    {
        return Err(ApiError::not_found("account"));
    }
    Ok(())
}

/// Clear a lockout.
#[utoipa::path(post, path = "/accounts/{id}/unlock", tag = "accounts", params(("id" = String, Path)), responses((status = 200, body = AccountDto)))]
async fn unlock(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountDto>> {
    target(&state, &caller, &id).await?;
    let acc = state
        .db
        .accounts()
        .unlock(&id, &caller.audit("account.unlock", state.now()))
        .await?;
    state.sessions.forget_account(&id);
    Ok(Json(acc.into()))
}

/// Disable an account and end its sessions.
#[utoipa::path(post, path = "/accounts/{id}/disable", tag = "accounts", params(("id" = String, Path)), responses((status = 200, body = AccountDto)))]
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountDto>> {
    target(&state, &caller, &id).await?;
    if id == caller.account.id {
        return Err(ApiError::bad_request("you cannot disable your own account"));
    }
    let now = state.now();
    let acc = state
        .db
        .accounts()
        .set_status(&id, false, &caller.audit("account.disable", now))
        .await?;
    let ended = state.db.sessions().end_all(&id, "disabled", now).await?;
    state.sessions.forget(&ended);
    Ok(Json(acc.into()))
}

/// Enable a disabled account.
#[utoipa::path(post, path = "/accounts/{id}/enable", tag = "accounts", params(("id" = String, Path)), responses((status = 200, body = AccountDto)))]
async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountDto>> {
    target(&state, &caller, &id).await?;
    let acc = state
        .db
        .accounts()
        .set_status(&id, true, &caller.audit("account.enable", state.now()))
        .await?;
    state.sessions.forget_account(&id);
    Ok(Json(acc.into()))
}

/// Password reset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// Temporary password; the user must change it at next login.
    pub new_password: String,
}

/// Reset a password (forced change at next login; the account's sessions end).
#[utoipa::path(post, path = "/accounts/{id}/reset-password", tag = "accounts", params(("id" = String, Path)), request_body = ResetPassword,
    responses((status = 200, body = AccountDto), (status = 422, body = ErrorBody)))]
async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResetPassword>,
) -> ApiResult<Json<AccountDto>> {
    target(&state, &caller, &id).await?;
    let acc = state.db.accounts().get(&id).await?;
    check_new_password(&req.new_password, &acc.username)?;
    let hash = password::hash(&state.cfg.auth, &req.new_password).await?;
    let now = state.now();
    state
        .db
        .accounts()
        .set_password(
            &id,
            &hash,
            true,
            &caller.audit("account.reset_password", now),
        )
        .await?;
    let ended = state
        .db
        .sessions()
        .end_all(&id, "password_reset", now)
        .await?;
    state.sessions.forget(&ended);
    state.sessions.forget_account(&id);
    let acc = state
        .db
        .accounts()
        .unlock(&id, &caller.audit("account.unlock", now))
        .await?;
    Ok(Json(acc.into()))
}

/// The roles.
#[utoipa::path(get, path = "/roles", tag = "accounts", responses((status = 200, body = Vec<RoleInfo>)))]
async fn list_roles(_caller: Caller) -> Json<Vec<RoleInfo>> {
    Json(
        roles::ROLES
            .iter()
            .map(|(code, name)| RoleInfo { code, name })
            .collect(),
    )
}

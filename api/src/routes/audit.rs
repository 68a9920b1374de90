//! `/api/v1/audit`: the audit log, for administrators. A corps administrator reads every row;
//! one of a district (or any unit below the corps) reads the rows about its subtree: those of
//! its subtree's accounts, and those whose target (an org unit, account, enterprise,
//! inspection, case, recording, recorder, vehicle…) belongs to its subtree — so it also sees
//! another unit's refused attempt on its data, but nothing another unit did to its own.
//! Rows of no account (failed logins of unknown names, jobs) stay with the corps.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use shouhu_storage::audit::AuditFilter;
use shouhu_storage::org_units::Scope;
use shouhu_storage::PageRequest;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::clock::parse_time;
use crate::dto::{AuditDto, Page};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::auth::field_error;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Audit query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact username.
    pub username: Option<String>,
    /// Action code, or a prefix ending in `.` (e.g. `auth.`).
    pub action: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// `success`, `failure`, `denied`.
    pub outcome: Option<String>,
    /// From: RFC 3339 or `YYYY-MM-DD` (Asia/Shanghai).
    pub from: Option<String>,
    /// To (exclusive): RFC 3339 or `YYYY-MM-DD` (Asia/Shanghai).
    pub to: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// Query the audit log, newest first (rows about the caller's subtree only, below the corps).
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = Page<AuditDto>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditDto>>> {
    caller.require(Perm::AuditRead)?;
    let time = |field: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_time(s)
                .map(Some)
                .ok_or_else(|| field_error(field, "must be RFC 3339 or YYYY-MM-DD")),
        }
    };
    let nz = |v: Option<String>| v.filter(|s| !s.is_empty());
    let f = AuditFilter {
        from_ms: time("from", &q.from)?,
        to_ms: time("to", &q.to)?,
        username: nz(q.username),
        account_id: None,
        action: nz(q.action),
        target_id: nz(q.target_id),
        outcome: nz(q.outcome),
        subtree: match &caller.scope {
            Scope::All => None,
            Scope::Subtree(root) => Some(root.clone()),
        },
    };
    let page = state
        .db
        .audit()
        .query(&f, PageRequest::new(q.page, q.page_size))
        .await?;
    // Reading the audit log is itself audited.
    let entry = caller.audit("audit.query", state.now()).details(serde_json::json!({
        "username": f.username, "action": f.action, "target_id": f.target_id, "outcome": f.outcome,
        "from_ms": f.from_ms, "to_ms": f.to_ms, "rows": page.items.len(),
    }));
    state.db.audit().record(&entry).await?;
    Ok(Json(Page::from(page, AuditDto::from)))
}

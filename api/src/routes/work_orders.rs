//! `/api/v1/work-orders`: work orders between the corps and the brigades.
//!
//! The caller acts as the sender when the order's sending unit is in its scope, and as a
//! recipient for recipient units in its scope (a unit answers for itself; the corps may act for
//! any unit).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::hazards::parse_deadline;
use shouhu_storage::work_orders::{Mailbox, WorkOrder, WorkOrderInput};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::Page;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::inspections::Problems;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(receive))
        .routes(routes!(reply))
        .routes(routes!(return_reply))
        .routes(routes!(accept))
        .routes(routes!(remind))
        .routes(routes!(close))
}

/// A work order as answered: with attachment keys and the overdue flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderDto {
    /// The order.
    #[serde(flatten)]
    pub order: WorkOrder,
    /// Attachment keys.
    pub attachment_keys: Vec<String>,
    /// Past the deadline with a recipient that has not replied.
    pub overdue: bool,
}

fn dto(order: WorkOrder, now: i64) -> WorkOrderDto {
    WorkOrderDto {
        attachment_keys: order.attachment_keys(),
        overdue: order.overdue(now),
        order,
    }
}

/// Work order list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `inbox` (addressed to the caller's units, default) or `outbox` (sent by them).
    #[serde(rename = "box")]
    pub mailbox: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// The caller's inbox or outbox.
#[utoipa::path(get, path = "/work-orders", tag = "enforcement", params(ListQuery), responses((status = 200, body = Page<WorkOrderDto>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<WorkOrderDto>>> {
    caller.require(Perm::EnforcementRead)?;
    let mut p = Problems::default();
    let which = match q.mailbox.as_deref() {
        None | Some("inbox") => Mailbox::Inbox,
        Some("outbox") => Mailbox::Outbox,
        Some(_) => {
            p.add("box", "must be inbox or outbox");
            Mailbox::Inbox
        }
    };
    if q.status
        .as_deref()
        .is_some_and(|s| s != "open" && s != "closed")
    {
        p.add("status", "must be open or closed");
    }
    p.finish()?;
    let now = state.now();
    let page = state
        .db
        .work_orders()
        .list(
            &caller.scope,
            which,
            q.status.as_deref(),
            PageRequest::new(q.page, q.page_size),
        )
        .await?;
    Ok(Json(Page::from(page, |o| dto(o, now))))
}

/// One work order.
#[utoipa::path(get, path = "/work-orders/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = WorkOrderDto), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::EnforcementRead)?;
    let o = state.db.work_orders().get(&caller.scope, &id).await?;
    Ok(Json(dto(o, state.now())))
}

async fn check_keys(state: &AppState, p: &mut Problems, field: &str, keys: &[String]) {
    if keys.len() > 20 {
        p.add(field, "at most 20 attachments");
    }
    for k in keys {
        if !k.starts_with("attachments/")
            || shouhu_storage::blob::validate_key(k).is_err()
            || !state.blobs.exists(k).await.unwrap_or(false)
        {
            p.add(field, format!("no such attachment: {k}"));
        }
    }
}

/// Dispatch a work order from the caller's unit to one or many units.
#[utoipa::path(post, path = "/work-orders", tag = "enforcement", request_body = WorkOrderInput,
    responses((status = 200, body = WorkOrderDto), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<WorkOrderInput>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let now = state.now();
    let mut p = Problems::default();
    p.text("title", &input.title, true, 200);
    p.text("body", &input.body, true, 10_000);
    let deadline = match parse_deadline("deadline", &input.deadline) {
        Ok(d) if d < now => {
            p.add("deadline", "must not be in the past");
            d
        }
        Ok(d) => d,
        Err(_) => {
            p.add("deadline", "must be a date YYYY-MM-DD");
            0
        }
    };
    let mut seen = std::collections::HashSet::new();
    if input.recipient_unit_ids.is_empty() {
        p.add("recipient_unit_ids", "dispatch to at least one unit");
    }
    for u in &input.recipient_unit_ids {
        if !seen.insert(u) {
            p.add("recipient_unit_ids", format!("listed twice: {u}"));
        } else if u == &caller.account.org_unit_id {
            p.add(
                "recipient_unit_ids",
                "a unit does not send work orders to itself",
            );
        } else if state.db.org_units().get(u).await.is_err() {
            p.add("recipient_unit_ids", format!("no such org unit: {u}"));
        }
    }
    check_keys(&state, &mut p, "attachment_keys", &input.attachment_keys).await;
    p.finish()?;
    let id = state
        .db
        .work_orders()
        .create(
            &caller.account.org_unit_id,
            &input,
            deadline,
            &caller.audit("work_order.create", now),
        )
        .await?;
    let o = state.db.work_orders().get(&caller.scope, &id).await?;
    Ok(Json(dto(o, now)))
}

/// The recipient unit the caller answers for: the given one, or the only one in its scope.
async fn recipient_unit(
    state: &AppState,
    caller: &Caller,
    o: &WorkOrder,
    unit: Option<&str>,
) -> ApiResult<String> {
    let mut mine = Vec::new();
    for r in &o.recipients {
        if state
            .db
            .org_units()
            .in_scope(&caller.scope, &r.unit_id)
            .await?
        {
            mine.push(r.unit_id.clone());
        }
    }
    match unit {
        Some(u) if mine.iter().any(|m| m == u) => Ok(u.to_string()),
        Some(_) => Err(ApiError::not_found("recipient")),
        None if mine.len() == 1 => Ok(mine.remove(0)),
        None if mine.is_empty() => Err(ApiError::forbidden(
            "your unit is not a recipient of this work order",
        )),
        None => Err(crate::routes::auth::field_error(
            "unit_id",
            "several recipient units are in your scope: name one",
        )),
    }
}

/// The sender side: the order's sending unit must be in the caller's scope.
async fn as_sender(state: &AppState, caller: &Caller, o: &WorkOrder) -> ApiResult<()> {
    if state
        .db
        .org_units()
        .in_scope(&caller.scope, &o.from_unit_id)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the sending unit may do this"))
    }
}

/// For which recipient unit (optional when the caller answers for exactly one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitBody {
    /// Recipient unit.
    #[serde(default)]
    pub unit_id: Option<String>,
}

/// Acknowledge receipt (recipient).
#[utoipa::path(post, path = "/work-orders/{id}/receive", tag = "enforcement", params(("id" = String, Path)), request_body = UnitBody,
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody)))]
async fn receive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<UnitBody>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    let unit = recipient_unit(&state, &caller, &o, b.unit_id.as_deref()).await?;
    repo.receive(&o, &unit, &caller.audit("work_order.receive", state.now()))
        .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

/// A reply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// Recipient unit (optional when the caller answers for exactly one).
    #[serde(default)]
    pub unit_id: Option<String>,
    /// Reply text.
    pub text: String,
    /// Attachment keys.
    #[serde(default)]
    pub attachment_keys: Vec<String>,
}

/// Reply (recipient), after receiving or after a return.
#[utoipa::path(post, path = "/work-orders/{id}/reply", tag = "enforcement", params(("id" = String, Path)), request_body = ReplyBody,
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reply(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReplyBody>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let mut p = Problems::default();
    p.text("text", &b.text, true, 10_000);
    check_keys(&state, &mut p, "attachment_keys", &b.attachment_keys).await;
    p.finish()?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    let unit = recipient_unit(&state, &caller, &o, b.unit_id.as_deref()).await?;
    repo.reply(
        &o,
        &unit,
        b.text.trim(),
        &b.attachment_keys,
        &caller.audit("work_order.reply", state.now()),
    )
    .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

/// Why a reply goes back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    /// Reason.
    pub reason: String,
}

/// Return a recipient's reply as insufficient (sender).
#[utoipa::path(post, path = "/work-orders/{id}/recipients/{unit_id}/return", tag = "enforcement",
    params(("id" = String, Path), ("unit_id" = String, Path)), request_body = ReturnBody,
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody)))]
async fn return_reply(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, unit)): Path<(String, String)>,
    ApiJson(b): ApiJson<ReturnBody>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let mut p = Problems::default();
    p.text("reason", &b.reason, true, 2000);
    p.finish()?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    as_sender(&state, &caller, &o).await?;
    repo.return_reply(
        &o,
        &unit,
        b.reason.trim(),
        &caller.audit("work_order.return", state.now()),
    )
    .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

/// Accept a recipient's reply (sender).
#[utoipa::path(post, path = "/work-orders/{id}/recipients/{unit_id}/accept", tag = "enforcement",
    params(("id" = String, Path), ("unit_id" = String, Path)),
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody)))]
async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, unit)): Path<(String, String)>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    as_sender(&state, &caller, &o).await?;
    repo.accept(&o, &unit, &caller.audit("work_order.accept", state.now()))
        .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

/// Remind the recipients that have not replied (sender).
#[utoipa::path(post, path = "/work-orders/{id}/remind", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody)))]
async fn remind(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    as_sender(&state, &caller, &o).await?;
    repo.remind(&o, &caller.audit("work_order.remind", state.now()))
        .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

/// Closing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Note.
    #[serde(default)]
    pub note: String,
    /// Close although some replies are not accepted (the note is then required).
    #[serde(default)]
    pub force: bool,
}

/// Close the order (sender): every reply accepted, or `force` with a note.
#[utoipa::path(post, path = "/work-orders/{id}/close", tag = "enforcement", params(("id" = String, Path)), request_body = CloseBody,
    responses((status = 200, body = WorkOrderDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<CloseBody>,
) -> ApiResult<Json<WorkOrderDto>> {
    caller.require(Perm::WorkOrderWrite)?;
    let mut p = Problems::default();
    p.text("note", &b.note, b.force, 2000);
    p.finish()?;
    let repo = state.db.work_orders();
    let o = repo.get(&caller.scope, &id).await?;
    as_sender(&state, &caller, &o).await?;
    repo.close(
        &o,
        b.note.trim(),
        b.force,
        &caller.audit("work_order.close", state.now()),
    )
    .await?;
    Ok(Json(dto(repo.get(&caller.scope, &id).await?, state.now())))
}

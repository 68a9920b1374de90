//! `/api/v1/plans`: monthly, quarterly and annual inspection plans, the monthly proposal, the
//! publication review, execution tracking and the roll-up to the corps.
//!
//! A plan belongs to a brigade (or the corps); the caller plans for its own brigade unless it
//! names another unit in its scope. Reading follows the org-unit scope like inspections.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::plans::{
    Period, Plan, PlanFilter, PlanInput, PlanUpdate, PlanVisit, ProposedVisit, Rollup,
};
use shouhu_storage::{PageRequest, StorageError};
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
        .routes(routes!(propose))
        .routes(routes!(rollup))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(add_visit))
        .routes(routes!(remove_visit))
        .routes(routes!(submit))
        .routes(routes!(approve))
        .routes(routes!(return_plan))
}

/// A plan with its visits.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanDetail {
    /// The plan and its progress.
    #[serde(flatten)]
    pub plan: Plan,
    /// Planned visits with their execution.
    pub visits: Vec<PlanVisit>,
}

async fn detail(state: &AppState, caller: &Caller, id: &str) -> ApiResult<PlanDetail> {
    let plan = state.db.plans().get(&caller.scope, id).await?;
    let visits = state.db.plans().visits(id).await?;
    Ok(PlanDetail { plan, visits })
}

/// Plan list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `month`, `quarter`, `year`.
    pub period_kind: Option<String>,
    /// `draft`, `review`, `published`.
    pub status: Option<String>,
    /// Plans whose period lies within this one (`2026`, `2026-Q4`, `2026-12`).
    pub period: Option<String>,
    /// Planning unit.
    pub org_unit_id: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

fn period(p: &mut Problems, field: &str, v: &str) -> Option<Period> {
    let r = Period::parse(v);
    if r.is_none() {
        p.add(
            field,
            "must be a month (2026-12), a quarter (2026-Q4) or a year (2026)",
        );
    }
    r
}

/// Plans of the caller's units, newest period first.
#[utoipa::path(get, path = "/plans", tag = "enforcement", params(ListQuery), responses((status = 200, body = Page<Plan>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Plan>>> {
    caller.require(Perm::EnforcementRead)?;
    let mut p = Problems::default();
    if q.period_kind
        .as_deref()
        .is_some_and(|k| !["month", "quarter", "year"].contains(&k))
    {
        p.add("period_kind", "must be month, quarter or year");
    }
    if q.status
        .as_deref()
        .is_some_and(|s| !["draft", "review", "published"].contains(&s))
    {
        p.add("status", "must be draft, review or published");
    }
    let within = match q.period.as_deref() {
        None | Some("") => None,
        Some(v) => period(&mut p, "period", v),
    };
    p.finish()?;
    let f = PlanFilter {
        period_kind: q.period_kind,
        status: q.status,
        within,
        org_unit_id: q.org_unit_id.filter(|s| !s.is_empty()),
    };
    let page = state
        .db
        .plans()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, |p| p)))
}

/// The planning unit: the one named (in scope), else the caller's brigade.
async fn planning_unit(
    state: &AppState,
    caller: &Caller,
    p: &mut Problems,
    named: Option<&str>,
) -> ApiResult<String> {
    match named.filter(|s| !s.is_empty()) {
        Some(u) => {
            if !state.db.org_units().in_scope(&caller.scope, u).await? {
                // Another district's unit: the same 404 as a missing row, audited as denied.
                if state.db.org_units().get(u).await.is_ok() {
                    return Err(ApiError::out_of_scope("org unit", u));
                }
                p.add("org_unit_id", "no such org unit in your scope");
            }
            Ok(u.to_string())
        }
        None => Ok(state
            .db
            .plans()
            .owner_unit(&caller.account.org_unit_id)
            .await?),
    }
}

fn default_title(unit: &str, period: &Period) -> String {
    period.plan_title(unit)
}

fn check_plan_text(p: &mut Problems, title: &str, notes: &str, target: i64) {
    p.text("title", title, true, 100);
    p.text("notes", notes, false, 2000);
    if !(0..=100_000).contains(&target) {
        p.add("target_visits", "must be between 0 and 100000");
    }
}

async fn conflict_on_period(state: &AppState, unit: &str, period: &Period) -> ApiResult<()> {
    let existing = state
        .db
        .plans()
        .list(
            &shouhu_storage::org_units::Scope::Subtree(unit.to_string()),
            &PlanFilter {
                org_unit_id: Some(unit.to_string()),
                within: Some(period.clone()),
                ..Default::default()
            },
            PageRequest::new(None, Some(PageRequest::MAX_PAGE_SIZE)),
        )
        .await?;
    if let Some(p) = existing.items.iter().find(|p| p.period == period.label) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "duplicate",
            format!("the unit already has a plan for {}", period.label),
        )
        .with("field", "period".into())
        .with("plan_id", p.id.clone().into()));
    }
    Ok(())
}

/// Create a draft plan by hand (a month, a quarter or a year), optionally with a target.
#[utoipa::path(post, path = "/plans", tag = "enforcement", request_body = PlanInput,
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<PlanInput>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let mut p = Problems::default();
    let per = period(&mut p, "period", &input.period);
    let unit = planning_unit(&state, &caller, &mut p, input.org_unit_id.as_deref()).await?;
    let unit_name = state.db.org_units().get(&unit).await?.name;
    let title = match (&input.title, &per) {
        (Some(t), _) if !t.trim().is_empty() => t.trim().to_string(),
        (_, Some(per)) => default_title(&unit_name, per),
        _ => String::new(),
    };
    check_plan_text(&mut p, &title, &input.notes, input.target_visits);
    p.finish()?;
    let per = per.expect("checked");
    conflict_on_period(&state, &unit, &per).await?;
    let id = state
        .db
        .plans()
        .create(
            &unit,
            &per,
            &title,
            input.notes.trim(),
            input.target_visits,
            false,
            &[],
            &caller.audit("plan.create", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Generate a monthly plan proposal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// The planning unit (default: the caller's brigade).
    #[serde(default)]
    pub org_unit_id: Option<String>,
    /// The month, `YYYY-MM`.
    pub period: String,
    /// At most this many visits (default 30, at most 500).
    #[serde(default)]
    pub max_visits: Option<i64>,
}

/// Generate a monthly plan as a draft proposal from the data: open hazards due for re-inspection
/// in the month, key units not inspected this year, grade C/D enterprises whose cadence has come
/// round; never an enterprise at its yearly inspect-once cap. The draft is then edited, submitted
/// and reviewed like any plan.
#[utoipa::path(post, path = "/plans/proposal", tag = "enforcement", request_body = ProposalBody,
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn propose(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ProposalBody>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let mut p = Problems::default();
    let per = period(&mut p, "period", &body.period);
    if per.as_ref().is_some_and(|x| x.kind != "month") {
        p.add(
            "period",
            "a proposal is generated for a month (YYYY-MM); quarterly and annual plans are drafted by hand",
        );
    }
    let max = body.max_visits.unwrap_or(30);
    if !(1..=500).contains(&max) {
        p.add("max_visits", "must be between 1 and 500");
    }
    let unit = planning_unit(&state, &caller, &mut p, body.org_unit_id.as_deref()).await?;
    p.finish()?;
    let per = per.expect("checked");
    conflict_on_period(&state, &unit, &per).await?;
    let unit_name = state.db.org_units().get(&unit).await?.name;
    let visits: Vec<ProposedVisit> = state.db.plans().propose(&unit, &per, max as usize).await?;
    let notes = format!(
        "系统根据数据生成的建议：隐患复查{}家，重点单位{}家，高监管等级到期{}家。",
        visits
            .iter()
            .filter(|v| v.reason == "hazard_recheck")
            .count(),
        visits.iter().filter(|v| v.reason == "key_unit").count(),
        visits.iter().filter(|v| v.reason == "grade").count()
    );
    let id = state
        .db
        .plans()
        .create(
            &unit,
            &per,
            &default_title(&unit_name, &per),
            &notes,
            visits.len() as i64,
            true,
            &visits,
            &caller.audit("plan.propose", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Roll-up query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RollupQuery {
    /// `2026-12`, `2026-Q4` or `2026`.
    pub period: String,
}

/// Roll-up of a month, quarter or year: the published plans within it per unit, their visits'
/// execution, the hazards the planned inspections found, and the inspections no plan covered.
#[utoipa::path(get, path = "/plans/rollup", tag = "enforcement", params(RollupQuery),
    responses((status = 200, body = Rollup), (status = 422, body = ErrorBody)))]
async fn rollup(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RollupQuery>,
) -> ApiResult<Json<Rollup>> {
    caller.require(Perm::EnforcementRead)?;
    let mut p = Problems::default();
    let per = period(&mut p, "period", &q.period);
    p.finish()?;
    Ok(Json(
        state
            .db
            .plans()
            .rollup(&caller.scope, &per.expect("checked"))
            .await?,
    ))
}

/// One plan with its visits.
#[utoipa::path(get, path = "/plans/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = PlanDetail), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Edit a draft plan.
#[utoipa::path(put, path = "/plans/{id}", tag = "enforcement", params(("id" = String, Path)), request_body = PlanUpdate,
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PlanUpdate>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    let mut p = Problems::default();
    check_plan_text(&mut p, &body.title, &body.notes, body.target_visits);
    p.finish()?;
    state
        .db
        .plans()
        .update(&plan, &body, &caller.audit("plan.update", state.now()))
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Delete a draft plan.
#[utoipa::path(delete, path = "/plans/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require(Perm::PlanWrite)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    state
        .db
        .plans()
        .delete(&plan, &caller.audit("plan.delete", state.now()))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A visit to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitBody {
    /// The enterprise (supervised by the plan's unit).
    pub enterprise_id: String,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// Add a visit to a draft plan, or to a published plan (an adjustment: the visit gets its
/// inspection code at once).
#[utoipa::path(post, path = "/plans/{id}/visits", tag = "enforcement", params(("id" = String, Path)), request_body = VisitBody,
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_visit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VisitBody>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    let mut p = Problems::default();
    p.text("note", &body.note, false, 500);
    let unit_scope = shouhu_storage::org_units::Scope::Subtree(plan.org_unit_id.clone());
    match state
        .db
        .enterprises()
        .get(&unit_scope, &body.enterprise_id)
        .await
    {
        Ok(e) if e.status != "operating" => {
            p.add("enterprise_id", "the enterprise is not operating")
        }
        Ok(_) => {}
        Err(StorageError::NotFound(_)) => p.add(
            "enterprise_id",
            "no such enterprise supervised by the plan's unit",
        ),
        Err(e) => return Err(e.into()),
    }
    p.finish()?;
    state
        .db
        .plans()
        .add_visit(
            &plan,
            &body.enterprise_id,
            body.note.trim(),
            &caller.audit("plan.visit_add", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Remove a visit from a draft plan, or from a published plan while no inspection executed it.
#[utoipa::path(delete, path = "/plans/{id}/visits/{visit_id}", tag = "enforcement",
    params(("id" = String, Path), ("visit_id" = String, Path)),
    responses((status = 200, body = PlanDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_visit(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, visit_id)): Path<(String, String)>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    let visit = state.db.plans().visit(&visit_id).await?;
    if visit.plan_id != plan.id {
        return Err(ApiError::not_found("plan visit"));
    }
    state
        .db
        .plans()
        .remove_visit(
            &plan,
            &visit,
            &caller.audit("plan.visit_remove", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Submit a draft for the unit's internal review.
#[utoipa::path(post, path = "/plans/{id}/submit", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody)))]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanWrite)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    state
        .db
        .plans()
        .submit(&plan, &caller.audit("plan.submit", state.now()))
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Approve a plan under review: it is published, numbered, and every visit gets its inspection
/// code. Whoever submitted the plan may not approve it.
#[utoipa::path(post, path = "/plans/{id}/approve", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = PlanDetail), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanApprove)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    if plan.status == "review" && plan.submitted_by.as_deref() == Some(caller.account.id.as_str()) {
        return Err(ApiError::forbidden(
            "the account that submitted the plan may not approve it",
        ));
    }
    state
        .db
        .plans()
        .approve(&plan, &caller.audit("plan.approve", state.now()))
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Why a plan goes back to draft.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    /// The reason.
    pub reason: String,
}

/// Return a plan under review to draft with a reason.
#[utoipa::path(post, path = "/plans/{id}/return", tag = "enforcement", params(("id" = String, Path)), request_body = ReturnBody,
    responses((status = 200, body = PlanDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn return_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReturnBody>,
) -> ApiResult<Json<PlanDetail>> {
    caller.require(Perm::PlanApprove)?;
    let plan = state.db.plans().get(&caller.scope, &id).await?;
    let mut p = Problems::default();
    p.text("reason", &body.reason, true, 500);
    p.finish()?;
    state
        .db
        .plans()
        .return_plan(
            &plan,
            body.reason.trim(),
            &caller.audit("plan.return", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

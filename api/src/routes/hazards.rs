//! `/api/v1/hazards`: the rectification loop (report rectification, re-inspect, close or
//! escalate), and `/api/v1/workbench`: a squad leader's tasks.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::cases::{CaseFilter, CaseSummary};
use shouhu_storage::enforcement::DAY_MS;
use shouhu_storage::hazards::{Hazard, HazardCounts, HazardFilter, STATES};
use shouhu_storage::inspections::{Inspection, InspectionFilter, OverCapFiling};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{grants, Perm};
use crate::auth::Caller;
use crate::dto::Page;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::inspections::Problems;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(rectification))
        .routes(routes!(reinspection))
        .routes(routes!(workbench))
}

/// Hazard list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of the description or the enterprise name.
    pub q: Option<String>,
    /// States, comma-separated (`rectifying,rectified`).
    pub status: Option<String>,
    /// `general` or `major`.
    pub level: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Inspection.
    pub inspection_id: Option<String>,
    /// Only hazards needing action within this many days: awaiting re-inspection, or with a
    /// rectification deadline within the days (overdue included).
    pub action_within_days: Option<i64>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// A hazard with what the client needs to show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HazardDto {
    /// The hazard.
    #[serde(flatten)]
    pub hazard: Hazard,
    /// Evidence blob keys.
    pub evidence_keys: Vec<String>,
    /// Open and past its re-inspection due time.
    pub overdue: bool,
}

impl HazardDto {
    fn new(hazard: Hazard, now: i64) -> Self {
        Self {
            evidence_keys: hazard.evidence_keys(),
            overdue: hazard.overdue(now),
            hazard,
        }
    }
}

/// List hazards of the caller's units, soonest re-inspection first.
#[utoipa::path(get, path = "/hazards", tag = "enforcement", params(ListQuery), responses((status = 200, body = Page<HazardDto>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<HazardDto>>> {
    caller.require(Perm::EnforcementRead)?;
    let now = state.now();
    let mut p = Problems::default();
    let statuses: Vec<String> = q
        .status
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if statuses.iter().any(|s| !STATES.iter().any(|(c, _)| c == s)) {
        p.add(
            "status",
            "must be among rectifying, rectified, closed, escalated",
        );
    }
    if q.level
        .as_deref()
        .is_some_and(|l| l != "general" && l != "major")
    {
        p.add("level", "must be general or major");
    }
    if q.action_within_days
        .is_some_and(|d| !(0..=3650).contains(&d))
    {
        p.add("action_within_days", "must be 0–3650");
    }
    p.finish()?;
    let f = HazardFilter {
        q: q.q,
        statuses,
        level: q.level,
        enterprise_id: q.enterprise_id,
        inspection_id: q.inspection_id,
        action_before_ms: q.action_within_days.map(|d| now + d * DAY_MS),
    };
    let page = state
        .db
        .hazards()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, |h| HazardDto::new(h, now))))
}

/// One hazard.
#[utoipa::path(get, path = "/hazards/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = HazardDto), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<HazardDto>> {
    caller.require(Perm::EnforcementRead)?;
    let h = state.db.hazards().get(&caller.scope, &id).await?;
    Ok(Json(HazardDto::new(h, state.now())))
}

/// A rectification report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectificationBody {
    /// What was done.
    pub note: String,
    /// Evidence attachments (keys from `POST /attachments`).
    #[serde(default)]
    pub evidence_keys: Vec<String>,
}

/// Report the rectification done: `rectifying` → `rectified` (awaiting re-inspection).
#[utoipa::path(post, path = "/hazards/{id}/rectification", tag = "enforcement", params(("id" = String, Path)), request_body = RectificationBody,
    responses((status = 200, body = HazardDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rectification(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RectificationBody>,
) -> ApiResult<Json<HazardDto>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    p.text("note", &body.note, true, 2000);
    if body.evidence_keys.len() > 20 {
        p.add("evidence_keys", "at most 20 attachments");
    }
    for k in &body.evidence_keys {
        if !k.starts_with("attachments/")
            || shouhu_storage::blob::validate_key(k).is_err()
            || !state.blobs.exists(k).await.unwrap_or(false)
        {
            p.add("evidence_keys", format!("no such attachment: {k}"));
        }
    }
    p.finish()?;
    let h = state
        .db
        .hazards()
        .report_rectification(
            &caller.scope,
            &id,
            body.note.trim(),
            &body.evidence_keys,
            &caller.audit("hazard.rectification", state.now()),
        )
        .await?;
    Ok(Json(HazardDto::new(h, state.now())))
}

/// A re-inspection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReinspectionBody {
    /// `passed` or `failed`.
    pub result: String,
    /// The re-inspection opinion.
    pub note: String,
    /// After a failed re-inspection: a new deadline (`YYYY-MM-DD`), re-ordering the
    /// rectification; without one the hazard is escalated for case filing.
    #[serde(default)]
    pub new_deadline: Option<String>,
}

/// Record the re-inspection: passed closes the hazard; failed re-orders it or escalates it.
#[utoipa::path(post, path = "/hazards/{id}/reinspection", tag = "enforcement", params(("id" = String, Path)), request_body = ReinspectionBody,
    responses((status = 200, body = HazardDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reinspection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReinspectionBody>,
) -> ApiResult<Json<HazardDto>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    if body.result != "passed" && body.result != "failed" {
        p.add("result", "must be passed or failed");
    }
    p.text("note", &body.note, true, 2000);
    p.finish()?;
    let h = state
        .db
        .hazards()
        .reinspect(
            &caller.scope,
            &id,
            body.result == "passed",
            body.note.trim(),
            body.new_deadline
                .as_deref()
                .filter(|d| !d.trim().is_empty()),
            &caller.audit("hazard.reinspection", state.now()),
        )
        .await?;
    Ok(Json(HazardDto::new(h, state.now())))
}

/// A squad leader's workbench: what is due this week and what waits for the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workbench {
    /// Hazard counts of the caller's units.
    pub hazard_counts: HazardCounts,
    /// Open hazards needing action within 7 days: awaiting re-inspection, or with a rectification
    /// deadline this week (soonest re-inspection first).
    pub hazards_due: Vec<HazardDto>,
    /// Inspections in progress.
    pub inspections_in_progress: Vec<Inspection>,
    /// Cases awaiting the caller's approval (filing or closing).
    pub cases_awaiting_approval: Vec<CaseSummary>,
    /// Open cases of the caller's units.
    pub open_cases: Vec<CaseSummary>,
    /// Over-cap filings awaiting acknowledgement.
    pub filings_pending: Vec<OverCapFiling>,
    /// Closed cases whose electronic case file is still missing 30 days after closing.
    pub cases_missing_file: Vec<CaseSummary>,
    /// Visits of the current published plans not started yet.
    pub planned_visits_open: Vec<shouhu_storage::plans::PlanVisit>,
    /// Plans awaiting the caller's review.
    pub plans_awaiting_review: Vec<shouhu_storage::plans::Plan>,
}

/// The caller's workbench ("my tasks, due this week").
#[utoipa::path(get, path = "/workbench", tag = "enforcement", responses((status = 200, body = Workbench)))]
async fn workbench(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Workbench>> {
    caller.require(Perm::EnforcementRead)?;
    let now = state.now();
    let scope = &caller.scope;
    let page = PageRequest::new(None, Some(50));
    let hazard_counts = state.db.hazards().counts(scope, now).await?;
    let hazards_due = state
        .db
        .hazards()
        .list(
            scope,
            &HazardFilter {
                statuses: vec!["rectifying".into(), "rectified".into()],
                action_before_ms: Some(now + 7 * DAY_MS),
                ..Default::default()
            },
            page,
        )
        .await?
        .items
        .into_iter()
        .map(|h| HazardDto::new(h, now))
        .collect();
    let inspections_in_progress = state
        .db
        .inspections()
        .list(
            scope,
            &InspectionFilter {
                status: Some("in_progress".into()),
                ..Default::default()
            },
            page,
        )
        .await?
        .items;
    let cases = state.db.cases();
    let own = |status: &str| CaseFilter {
        status: Some(status.into()),
        ..Default::default()
    };
    let mut cases_awaiting_approval = Vec::new();
    if grants(&caller.account.role, Perm::CaseApprove) {
        for s in ["filing_review", "closing_review"] {
            cases_awaiting_approval.extend(cases.list(scope, &own(s), page).await?.items);
        }
    }
    let open_cases = cases.list(scope, &own("open"), page).await?.items;
    let filings_pending = if grants(&caller.account.role, Perm::FilingAcknowledge) {
        state
            .db
            .inspections()
            .filings(scope, Some("pending"), page)
            .await?
            .items
    } else {
        Vec::new()
    };
    let mut cases_missing_file = Vec::new();
    for id in state
        .db
        .case_files()
        .missing_files(scope, now, 30, 20)
        .await?
    {
        cases_missing_file.push(cases.get(scope, &id).await?.summary);
    }
    let planned_visits_open = state.db.plans().open_visits(scope, now, 50).await?;
    let plans_awaiting_review = if grants(&caller.account.role, Perm::PlanApprove) {
        state
            .db
            .plans()
            .list(
                scope,
                &shouhu_storage::plans::PlanFilter {
                    status: Some("review".into()),
                    ..Default::default()
                },
                page,
            )
            .await?
            .items
    } else {
        Vec::new()
    };
    Ok(Json(Workbench {
        planned_visits_open,
        plans_awaiting_review,
        cases_missing_file,
        hazard_counts,
        hazards_due,
        inspections_in_progress,
        cases_awaiting_approval,
        open_cases,
        filings_pending,
    }))
}

//! `/api/v1/inspections`, `/api/v1/over-cap-filings`: inspections, their item results and
//! hazards, and the inspect-once over-cap filings.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::hazards::{Hazard, HazardFilter, HazardInput, LEVELS};
use shouhu_storage::inspections::{
    Inspection, InspectionFilter, InspectionInput, ItemResult, OverCapFiling, ResultInput, KINDS,
    RESULTS,
};
use shouhu_storage::{PageRequest, StorageError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::Page;
use crate::error::{ApiError, ApiResult, ErrorBody, RowError};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(set_results))
        .routes(routes!(photo))
        .routes(routes!(add_hazard))
        .routes(routes!(complete))
        .routes(routes!(cancel))
        .routes(routes!(filings))
        .routes(routes!(acknowledge))
}

/// Field problems collected before answering 422 with all of them.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<RowError>);

impl Problems {
    /// Note a problem with `field`.
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(RowError {
            row: None,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Check text length (in characters); `required` rejects empty text.
    pub(crate) fn text(&mut self, field: &str, v: &str, required: bool, max: usize) {
        let n = v.trim().chars().count();
        if required && n == 0 {
            self.add(field, "must not be empty");
        } else if n > max {
            self.add(field, format!("at most {max} characters"));
        }
    }

    /// 422 with every problem, or Ok.
    pub(crate) fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// Inspection list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Inspection code (prefix) or enterprise name (substring).
    pub q: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// `in_progress`, `completed`, `cancelled`.
    pub status: Option<String>,
    /// `planned`, `complaint`, `referral`, `triggered`.
    pub kind: Option<String>,
    /// An officer on site.
    pub officer_id: Option<String>,
    /// Started at or after (RFC 3339, or `YYYY-MM-DD` in Asia/Shanghai).
    pub from: Option<String>,
    /// Started before (RFC 3339, or `YYYY-MM-DD` in Asia/Shanghai).
    pub to: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// List inspections of the caller's units.
#[utoipa::path(get, path = "/inspections", tag = "enforcement", params(ListQuery), responses((status = 200, body = Page<Inspection>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Inspection>>> {
    caller.require(Perm::EnforcementRead)?;
    let mut p = Problems::default();
    if q.status
        .as_deref()
        .is_some_and(|s| !["in_progress", "completed", "cancelled"].contains(&s))
    {
        p.add("status", "must be in_progress, completed or cancelled");
    }
    if q.kind
        .as_deref()
        .is_some_and(|k| !KINDS.iter().any(|(c, _)| *c == k))
    {
        p.add("kind", "must be planned, complaint, referral or triggered");
    }
    let mut time = |field: &str, v: &Option<String>| match v.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let t = crate::clock::parse_time(s);
            if t.is_none() {
                p.add(field, "must be an RFC 3339 time or a date YYYY-MM-DD");
            }
            t
        }
    };
    let (from_ms, to_ms) = (time("from", &q.from), time("to", &q.to));
    p.finish()?;
    let f = InspectionFilter {
        q: q.q,
        enterprise_id: q.enterprise_id,
        status: q.status,
        kind: q.kind,
        officer_id: q.officer_id,
        from_ms,
        to_ms,
    };
    let page = state
        .db
        .inspections()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, |i| i)))
}

/// An inspection with its checked items, hazards, over-cap filing and cases.
#[derive(Debug, Serialize, ToSchema)]
pub struct InspectionDetail {
    /// The inspection.
    #[serde(flatten)]
    pub inspection: Inspection,
    /// Checked items.
    pub results: Vec<ItemResult>,
    /// Hazards found.
    pub hazards: Vec<Hazard>,
    /// The over-cap filing, when the visit was over the cap.
    pub over_cap_filing: Option<OverCapFiling>,
}

async fn detail(state: &AppState, caller: &Caller, id: &str) -> ApiResult<InspectionDetail> {
    let inspection = state.db.inspections().get(&caller.scope, id).await?;
    let results = state.db.inspections().results(id).await?;
    let hazards = state
        .db
        .hazards()
        .list(
            &caller.scope,
            &HazardFilter {
                inspection_id: Some(id.to_string()),
                ..Default::default()
            },
            PageRequest::new(None, Some(PageRequest::MAX_PAGE_SIZE)),
        )
        .await?
        .items;
    let over_cap_filing = state.db.inspections().filing_of(id).await?;
    Ok(InspectionDetail {
        inspection,
        results,
        hazards,
        over_cap_filing,
    })
}

/// One inspection.
#[utoipa::path(get, path = "/inspections/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = InspectionDetail), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InspectionDetail>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Start an inspection: enterprise, kind, at least two officers. Over the enterprise's yearly
/// inspect-once cap it answers 409 `over_cap` unless `over_cap_reason` is given, which files an
/// over-cap report to the enterprise's supervising unit.
#[utoipa::path(post, path = "/inspections", tag = "enforcement", request_body = InspectionInput,
    responses((status = 200, body = InspectionDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<InspectionInput>,
) -> ApiResult<Json<InspectionDetail>> {
    caller.require(Perm::InspectionWrite)?;
    let now = state.now();
    let mut p = Problems::default();
    if !KINDS.iter().any(|(c, _)| *c == input.kind) {
        p.add("kind", "must be planned, complaint, referral or triggered");
    }
    let distinct: HashSet<&String> = input.officer_ids.iter().collect();
    if distinct.len() != input.officer_ids.len() {
        p.add("officer_ids", "an officer is listed twice");
    } else if input.officer_ids.len() < 2 {
        p.add("officer_ids", "at least two officers inspect together");
    } else if input.officer_ids.len() > 10 {
        p.add("officer_ids", "at most 10 officers");
    }
    let started = match input.started_at.as_deref() {
        None => now,
        Some(t) => crate::clock::parse_time(t).unwrap_or_else(|| {
            p.add("started_at", "must be an RFC 3339 time");
            now
        }),
    };
    if started > now + 3_600_000 {
        p.add("started_at", "must not be in the future");
    } else if started < now - 366 * 86_400_000 {
        p.add("started_at", "more than a year ago");
    }
    if let Some(r) = &input.over_cap_reason {
        p.text("over_cap_reason", r, false, 500);
    }
    match state
        .db
        .enterprises()
        .get(&caller.scope, &input.enterprise_id)
        .await
    {
        Ok(e) if e.status == "closed" => p.add("enterprise_id", "the enterprise is closed"),
        Ok(_) => {}
        Err(shouhu_storage::StorageError::NotFound(_)) => {
            // Another district's enterprise: the same 404 as a missing row, audited as denied.
            if state.db.enterprises().exists(&input.enterprise_id).await? {
                return Err(ApiError::out_of_scope("enterprise", &input.enterprise_id));
            }
            p.add("enterprise_id", "no such enterprise in your scope")
        }
        Err(e) => return Err(e.into()),
    }
    for o in &input.officer_ids {
        match state.db.officers().get(&caller.scope, o).await {
            Ok(off) if off.status != "active" => {
                p.add("officer_ids", format!("officer {} is not active", off.name))
            }
            Ok(_) => {}
            Err(shouhu_storage::StorageError::NotFound(_)) => {
                p.add("officer_ids", format!("no such officer in your scope: {o}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The planned visit this inspection executes: named, or found for a planned inspection.
    let mut input = input;
    if input.kind == "planned" && input.plan_visit_id.is_none() {
        let unit = &caller.account.org_unit_id;
        input.plan_visit_id = state
            .db
            .plans()
            .open_visit_for(unit, &input.enterprise_id, started)
            .await?;
    } else if let Some(v) = &input.plan_visit_id {
        match state.db.plans().visit(v).await {
            Ok(visit) => {
                let plan = state.db.plans().get(&caller.scope, &visit.plan_id).await;
                if plan.is_err() {
                    p.add("plan_visit_id", "no such planned visit in your scope");
                } else if plan.is_ok_and(|pl| pl.status != "published") {
                    p.add("plan_visit_id", "the visit's plan is not published");
                } else if visit.enterprise_id != input.enterprise_id {
                    p.add(
                        "plan_visit_id",
                        "the visit is planned for another enterprise",
                    );
                } else if visit.inspection_id.is_some() {
                    p.add(
                        "plan_visit_id",
                        "another inspection already executed this visit",
                    );
                }
                if input.kind != "planned" {
                    p.add(
                        "kind",
                        "an inspection executing a planned visit is of kind planned",
                    );
                }
            }
            Err(StorageError::NotFound(_)) => {
                p.add("plan_visit_id", "no such planned visit in your scope")
            }
            Err(e) => return Err(e.into()),
        }
    }
    p.finish()?;
    let id = state
        .db
        .inspections()
        .create(
            &caller.account.org_unit_id,
            &input,
            started,
            &caller.audit("inspection.create", now),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Item results to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsBody {
    /// Results (upserted by item).
    pub results: Vec<ResultInput>,
}

/// Record item results (pass / hazard / not applicable) while the inspection is in progress.
#[utoipa::path(put, path = "/inspections/{id}/results", tag = "enforcement", params(("id" = String, Path)), request_body = ResultsBody,
    responses((status = 200, body = InspectionDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResultsBody>,
) -> ApiResult<Json<InspectionDetail>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    if body.results.is_empty() {
        p.add("results", "must not be empty");
    }
    if body.results.len() > 300 {
        p.add("results", "at most 300 items at once");
    }
    let mut seen = HashSet::new();
    for (n, r) in body.results.iter().enumerate() {
        let f = |s: &str| format!("results[{n}].{s}");
        if !seen.insert(r.item_id.as_str()) {
            p.add(&f("item_id"), "item listed twice");
        }
        if !RESULTS.contains(&r.result.as_str()) {
            p.add(&f("result"), "must be pass, hazard or not_applicable");
        }
        p.text(&f("note"), &r.note, false, 1000);
        if r.photo_keys.len() > 20 {
            p.add(&f("photo_keys"), "at most 20 photos per item");
        }
        for k in &r.photo_keys {
            if !k.starts_with("attachments/")
                || shouhu_storage::blob::validate_key(k).is_err()
                || !state.blobs.exists(k).await.unwrap_or(false)
            {
                p.add(&f("photo_keys"), format!("no such attachment: {k}"));
            }
        }
        match state.db.inspection_items().get(&r.item_id).await {
            Ok(item) if !item.active => p.add(&f("item_id"), "the item is no longer active"),
            Ok(_) => {}
            Err(_) => p.add(&f("item_id"), "no such inspection item"),
        }
    }
    p.finish()?;
    state
        .db
        .inspections()
        .set_results(
            &caller.scope,
            &id,
            &body.results,
            &caller.audit("inspection.results", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Record a hazard found by an in-progress inspection (issues the numbered rectification order).
#[utoipa::path(post, path = "/inspections/{id}/hazards", tag = "enforcement", params(("id" = String, Path)), request_body = HazardInput,
    responses((status = 200, body = Hazard), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_hazard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<HazardInput>,
) -> ApiResult<Json<Hazard>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    if !LEVELS.iter().any(|(c, _)| *c == input.level) {
        p.add("level", "must be general or major");
    }
    p.text("description", &input.description, true, 1000);
    if let Some(item) = &input.item_id {
        if state.db.inspection_items().get(item).await.is_err() {
            p.add("item_id", "no such inspection item");
        }
    }
    p.finish()?;
    Ok(Json(
        state
            .db
            .hazards()
            .create(
                &caller.scope,
                &id,
                &input,
                &caller.audit("hazard.create", state.now()),
            )
            .await?,
    ))
}

/// Completion of an inspection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// Summary of the visit.
    #[serde(default)]
    pub summary: String,
}

/// Complete the inspection (numbers the on-site inspection record). Every item marked `hazard`
/// must have a hazard recorded.
#[utoipa::path(post, path = "/inspections/{id}/complete", tag = "enforcement", params(("id" = String, Path)), request_body = CompleteBody,
    responses((status = 200, body = InspectionDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> ApiResult<Json<InspectionDetail>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    p.text("summary", &body.summary, false, 2000);
    p.finish()?;
    state
        .db
        .inspections()
        .complete(
            &caller.scope,
            &id,
            body.summary.trim(),
            &caller.audit("inspection.complete", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// A reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
    pub reason: String,
}

/// Cancel an in-progress inspection that recorded no hazard.
#[utoipa::path(post, path = "/inspections/{id}/cancel", tag = "enforcement", params(("id" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = InspectionDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<InspectionDetail>> {
    caller.require(Perm::InspectionWrite)?;
    let mut p = Problems::default();
    p.text("reason", &body.reason, true, 500);
    p.finish()?;
    state
        .db
        .inspections()
        .cancel(
            &caller.scope,
            &id,
            body.reason.trim(),
            &caller.audit("inspection.cancel", state.now()),
        )
        .await?;
    Ok(Json(detail(&state, &caller, &id).await?))
}

/// Over-cap filing list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FilingQuery {
    /// `pending` or `acknowledged`.
    pub status: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// Over-cap filings routed to the caller's units.
#[utoipa::path(get, path = "/over-cap-filings", tag = "enforcement", params(FilingQuery), responses((status = 200, body = Page<OverCapFiling>)))]
async fn filings(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<FilingQuery>,
) -> ApiResult<Json<Page<OverCapFiling>>> {
    caller.require(Perm::EnforcementRead)?;
    if q.status
        .as_deref()
        .is_some_and(|s| s != "pending" && s != "acknowledged")
    {
        return Err(crate::routes::auth::field_error(
            "status",
            "must be pending or acknowledged",
        ));
    }
    let page = state
        .db
        .inspections()
        .filings(
            &caller.scope,
            q.status.as_deref(),
            PageRequest::new(q.page, q.page_size),
        )
        .await?;
    Ok(Json(Page::from(page, |f| f)))
}

/// Acknowledge an over-cap filing routed to the caller's unit.
#[utoipa::path(post, path = "/over-cap-filings/{id}/acknowledge", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = OverCapFiling), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OverCapFiling>> {
    caller.require(Perm::FilingAcknowledge)?;
    Ok(Json(
        state
            .db
            .inspections()
            .acknowledge_filing(
                &caller.scope,
                &id,
                &caller.audit("over_cap_filing.acknowledge", state.now()),
            )
            .await?,
    ))
}

/// Which photo.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PhotoQuery {
    /// The photo's attachment key, as listed in the item result's `photo_keys`.
    pub key: String,
}

/// A photo of an item result of a visible inspection (JPEG or PNG).
#[utoipa::path(get, path = "/inspections/{id}/photo", tag = "enforcement", params(("id" = String, Path), PhotoQuery),
    responses((status = 200, description = "the image"), (status = 404, body = ErrorBody)))]
async fn photo(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PhotoQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    caller.require(Perm::EnforcementRead)?;
    state.db.inspections().get(&caller.scope, &id).await?;
    let listed = state
        .db
        .inspections()
        .results(&id)
        .await?
        .iter()
        .any(|r| r.photo_keys.contains(&q.key));
    if !listed {
        return Err(ApiError::not_found("photo"));
    }
    let bytes = state.blobs.get(&q.key).await?;
    let ct = if q.key.ends_with(".png") {
        "image/png"
    } else if q.key.ends_with(".pdf") {
        "application/pdf"
    } else {
        "image/jpeg"
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ct)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response())
}

//! Case files and their review: `/api/v1/cases/{id}/case-file`, `/api/v1/cases/{id}/reviews`,
//! `/api/v1/case-review-rules`, `/api/v1/exemplary-cases`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::case_files::{CaseFileItem, CaseReview, Finding, ReviewRule, ReviewRuleInput};
use shouhu_storage::cases::CaseSummary;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::inspections::Problems;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(case_file))
        .routes(routes!(download))
        .routes(routes!(reviews, review))
        .routes(routes!(rules, add_rule))
        .routes(routes!(update_rule))
        .routes(routes!(exemplary))
}

pub(crate) fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload))
}

/// A case file: its uploaded parts and its reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseFile {
    /// Uploaded parts (PDF, images).
    pub items: Vec<CaseFileItem>,
    /// Reviews, newest first.
    pub reviews: Vec<CaseReview>,
}

/// The case file of a case the caller may read.
#[utoipa::path(get, path = "/cases/{id}/case-file", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = CaseFile), (status = 404, body = ErrorBody)))]
async fn case_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CaseFile>> {
    caller.require(Perm::EnforcementRead)?;
    state.db.cases().get(&caller.scope, &id).await?;
    let repo = state.db.case_files();
    Ok(Json(CaseFile {
        items: repo.items(&id).await?,
        reviews: repo.reviews(&id).await?,
    }))
}

/// The uploaded file's name.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Original file name (shown and used on download).
    pub filename: String,
}

fn sniff(data: &[u8]) -> Option<(&'static str, &'static str)> {
    if data.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf"))
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else {
        None
    }
}

/// Upload a part of the electronic case file of a closed case (PDF, JPEG or PNG; raw body).
#[utoipa::path(post, path = "/cases/{id}/case-file", tag = "enforcement", params(("id" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = CaseFileItem), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CaseFileItem>)> {
    caller.require(Perm::CaseWrite)?;
    let c = state.db.cases().get(&caller.scope, &id).await?;
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &c.summary.org_unit_id)
        .await?
    {
        return Err(ApiError::not_found("case"));
    }
    if c.summary.status != "closed" {
        return Err(shouhu_storage::StorageError::wrong_state(
            "case",
            c.summary.status,
            "the case file is archived after the case is closed",
        )
        .into());
    }
    let mut p = Problems::default();
    p.text("filename", &q.filename, true, 200);
    if body.is_empty() {
        p.add("body", "the file is empty");
    }
    p.finish()?;
    let (content_type, ext) = sniff(&body).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "case files are PDF, JPEG or PNG files",
        )
    })?;
    let item_id = shouhu_storage::new_id();
    let key = format!("case-files/{id}/{item_id}.{ext}");
    let info = state.blobs.put(&key, &body).await?;
    let item = CaseFileItem {
        id: item_id,
        case_id: id.clone(),
        filename: q.filename.trim().to_string(),
        content_type: content_type.into(),
        blob_key: key,
        size: info.size as i64,
        sha256: info.sha256,
        sm3: info.sm3,
        uploaded_at_ms: state.now(),
    };
    if let Err(e) = state
        .db
        .case_files()
        .add_item(&item, &caller.audit("case_file.upload", state.now()))
        .await
    {
        // Nothing half-written: no index row, so no blob either.
        let _ = state.blobs.delete(&item.blob_key).await;
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, Json(item)))
}

/// Download a part of a case file (audited).
#[utoipa::path(get, path = "/cases/{id}/case-file/{item_id}", tag = "enforcement", params(("id" = String, Path), ("item_id" = String, Path)),
    responses((status = 200, description = "the file; digests in X-Content-SHA256 / X-Content-SM3"), (status = 404, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    state.db.cases().get(&caller.scope, &id).await?;
    let item = state
        .db
        .case_files()
        .items(&id)
        .await?
        .into_iter()
        .find(|i| i.id == item_id)
        .ok_or(ApiError::not_found("case file item"))?;
    let bytes = state.blobs.get(&item.blob_key).await?;
    state
        .db
        .audit()
        .record(
            &caller
                .audit("case_file.download", state.now())
                .target("case", &id)
                .details(serde_json::json!({"item": item.id})),
        )
        .await?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&item.content_type).map_err(ApiError::internal)?,
    );
    h.insert(
        "x-content-sha256",
        HeaderValue::from_str(&item.sha256).map_err(ApiError::internal)?,
    );
    h.insert(
        "x-content-sm3",
        HeaderValue::from_str(&item.sm3).map_err(ApiError::internal)?,
    );
    Ok((StatusCode::OK, h, bytes).into_response())
}

/// The reviews of a case file.
#[utoipa::path(get, path = "/cases/{id}/reviews", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = [CaseReview]), (status = 404, body = ErrorBody)))]
async fn reviews(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CaseReview>>> {
    caller.require(Perm::EnforcementRead)?;
    state.db.cases().get(&caller.scope, &id).await?;
    Ok(Json(state.db.case_files().reviews(&id).await?))
}

/// A review as entered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// One finding per active rule.
    pub findings: Vec<Finding>,
    /// Mark the case exemplary (excellent files only).
    #[serde(default)]
    pub exemplary: bool,
    /// Overall comment.
    #[serde(default)]
    pub comment: String,
}

/// Review a closed case's file against the rule set: corps reviewers only (a closed case is
/// readable everywhere, but a district does not grade another's, nor its own, files; `403
/// corps_only` and a denied row otherwise).
#[utoipa::path(post, path = "/cases/{id}/reviews", tag = "enforcement", params(("id" = String, Path)), request_body = ReviewBody,
    responses((status = 200, body = CaseReview), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReviewBody>,
) -> ApiResult<Json<CaseReview>> {
    caller.require(Perm::CaseReview)?;
    crate::auth::roles::require_corps(&state, &caller, "case_review.create", Some(("case", &id)))
        .await?;
    let c = state.db.cases().get(&caller.scope, &id).await?;
    let repo = state.db.case_files();
    if c.summary.status != "closed" || repo.items(&id).await?.is_empty() {
        return Err(shouhu_storage::StorageError::wrong_state(
            "case",
            c.summary.status,
            "a case file is reviewed once the case is closed and its file uploaded",
        )
        .into());
    }
    let mut p = Problems::default();
    p.text("comment", &b.comment, false, 4000);
    for (n, f) in b.findings.iter().enumerate() {
        p.text(&format!("findings[{n}].finding"), &f.finding, false, 2000);
    }
    p.finish()?;
    Ok(Json(
        repo.review(
            &id,
            &b.findings,
            b.exemplary,
            b.comment.trim(),
            &caller.audit("case.review", state.now()),
        )
        .await?,
    ))
}

/// The review rule set.
#[utoipa::path(get, path = "/case-review-rules", tag = "enforcement", responses((status = 200, body = [ReviewRule])))]
async fn rules(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ReviewRule>>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(state.db.case_files().rules().await?))
}

fn check_rule(r: &ReviewRuleInput) -> ApiResult<()> {
    let mut p = Problems::default();
    p.text("code", &r.code, true, 20);
    p.text("title", &r.title, true, 200);
    if !(1..=100).contains(&r.points) {
        p.add("points", "must be 1–100");
    }
    p.finish()
}

/// Add a review rule (a corps-wide setting: corps accounts only, 403 elsewhere).
#[utoipa::path(post, path = "/case-review-rules", tag = "enforcement", request_body = ReviewRuleInput,
    responses((status = 200, body = ReviewRule), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_rule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<ReviewRuleInput>,
) -> ApiResult<Json<ReviewRule>> {
    caller.require(Perm::RuleManage)?;
    crate::auth::roles::require_corps(&state, &caller, "review_rule.create", None).await?;
    check_rule(&r)?;
    Ok(Json(
        state
            .db
            .case_files()
            .add_rule(&r, &caller.audit("review_rule.create", state.now()))
            .await?,
    ))
}

/// Change a review rule (earlier reviews keep their scores; a corps-wide setting: corps
/// accounts only, 403 elsewhere).
#[utoipa::path(put, path = "/case-review-rules/{id}", tag = "enforcement", params(("id" = String, Path)), request_body = ReviewRuleInput,
    responses((status = 200, body = ReviewRule), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(r): ApiJson<ReviewRuleInput>,
) -> ApiResult<Json<ReviewRule>> {
    caller.require(Perm::RuleManage)?;
    crate::auth::roles::require_corps(
        &state,
        &caller,
        "review_rule.update",
        Some(("review_rule", &id)),
    )
    .await?;
    check_rule(&r)?;
    Ok(Json(
        state
            .db
            .case_files()
            .update_rule(&id, &r, &caller.audit("review_rule.update", state.now()))
            .await?,
    ))
}

/// Exemplary cases (典型案例), readable city-wide.
#[utoipa::path(get, path = "/exemplary-cases", tag = "enforcement", responses((status = 200, body = [CaseSummary])))]
async fn exemplary(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CaseSummary>>> {
    caller.require(Perm::EnforcementRead)?;
    let cases = state.db.cases();
    let mut out = Vec::new();
    for id in state.db.case_files().exemplary(100).await? {
        // Exemplary cases are closed, so every unit may read them.
        if let Ok(c) = cases.get(&caller.scope, &id).await {
            out.push(c.summary);
        }
    }
    Ok(Json(out))
}

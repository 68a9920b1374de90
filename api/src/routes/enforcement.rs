//! Reference data of the enforcement work and its small settings: document types, deadline
//! rules, inspect-once caps, an enterprise's supervision grade, and attachment upload (photos and
//! rectification evidence as blobs with their digests).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::enforcement::{
    shanghai_year, DeadlineRule, DocType, InspectionCap, DOC_TYPES, GRADES,
};
use shouhu_storage::enterprises::SECTORS;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::inspections::Problems;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(doc_types))
        .routes(routes!(deadlines))
        .routes(routes!(set_deadline))
        .routes(routes!(caps, set_caps))
        .routes(routes!(supervision, set_grade))
}

pub(crate) fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload))
}

/// The enforcement-document types.
#[utoipa::path(get, path = "/enforcement/doc-types", tag = "enforcement", responses((status = 200, body = [DocType])))]
async fn doc_types(caller: Caller) -> ApiResult<Json<&'static [DocType]>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(DOC_TYPES))
}

/// The legal deadline table.
#[utoipa::path(get, path = "/enforcement/deadlines", tag = "enforcement", responses((status = 200, body = [DeadlineRule])))]
async fn deadlines(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeadlineRule>>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(state.db.rules().deadlines().await?))
}

/// New days of a deadline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaysBody {
    /// Days (1–3650).
    pub days: i64,
}

/// Change a deadline (when a regulation changes; a corps-wide setting: corps accounts only, 403
/// elsewhere).
#[utoipa::path(put, path = "/enforcement/deadlines/{step}", tag = "enforcement", params(("step" = String, Path)), request_body = DaysBody,
    responses((status = 200, body = [DeadlineRule]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_deadline(
    State(state): State<AppState>,
    caller: Caller,
    Path(step): Path<String>,
    ApiJson(b): ApiJson<DaysBody>,
) -> ApiResult<Json<Vec<DeadlineRule>>> {
    caller.require(Perm::RuleManage)?;
    crate::auth::roles::require_corps(
        &state,
        &caller,
        "deadline_rule.update",
        Some(("deadline_rule", &step)),
    )
    .await?;
    if !(1..=3650).contains(&b.days) {
        return Err(crate::routes::auth::field_error("days", "must be 1–3650"));
    }
    state
        .db
        .rules()
        .set_deadline(
            &step,
            b.days,
            &caller.audit("deadline_rule.update", state.now()),
        )
        .await?;
    Ok(Json(state.db.rules().deadlines().await?))
}

/// The inspect-once cap table (sector × grade).
#[utoipa::path(get, path = "/inspection-caps", tag = "enforcement", responses((status = 200, body = [InspectionCap])))]
async fn caps(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<InspectionCap>>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(state.db.rules().caps().await?))
}

/// Set caps (rows given are replaced; all or nothing; a corps-wide setting: corps accounts
/// only, 403 elsewhere).
#[utoipa::path(put, path = "/inspection-caps", tag = "enforcement", request_body = [InspectionCap],
    responses((status = 200, body = [InspectionCap]), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_caps(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(rows): ApiJson<Vec<InspectionCap>>,
) -> ApiResult<Json<Vec<InspectionCap>>> {
    caller.require(Perm::RuleManage)?;
    crate::auth::roles::require_corps(&state, &caller, "inspection_caps.update", None).await?;
    let mut p = Problems::default();
    if rows.is_empty() || rows.len() > 100 {
        p.add("caps", "1–100 rows");
    }
    for (n, c) in rows.iter().enumerate() {
        if !SECTORS.iter().any(|(s, _)| *s == c.sector) {
            p.add(&format!("[{n}].sector"), "must be one of 01–06");
        }
        if !GRADES.contains(&c.grade.as_str()) {
            p.add(&format!("[{n}].grade"), "must be A, B, C or D");
        }
        if !(0..=365).contains(&c.yearly_cap) {
            p.add(&format!("[{n}].yearly_cap"), "must be 0–365");
        }
    }
    p.finish()?;
    state
        .db
        .rules()
        .set_caps(&rows, &caller.audit("inspection_caps.update", state.now()))
        .await?;
    Ok(Json(state.db.rules().caps().await?))
}

/// An enterprise's supervision grade and where it stands against its yearly cap.
#[derive(Debug, Serialize, ToSchema)]
pub struct Supervision {
    /// Grade A–D.
    pub grade: String,
    /// Its sector.
    pub sector: String,
    /// The yearly cap from the table.
    pub yearly_cap: Option<i64>,
    /// Inspections this calendar year (Asia/Shanghai), cancelled ones excluded.
    pub visits_this_year: i64,
}

async fn supervision_of(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Supervision> {
    let e = state.db.enterprises().get(&caller.scope, id).await?;
    let grade = state.db.rules().grade_of(id).await?;
    let yearly_cap = state
        .db
        .rules()
        .caps()
        .await?
        .into_iter()
        .find(|c| c.sector == e.sector && c.grade == grade)
        .map(|c| c.yearly_cap);
    let visits_this_year = state
        .db
        .inspections()
        .visits_in_year(id, shanghai_year(state.now()))
        .await?;
    Ok(Supervision {
        grade,
        sector: e.sector,
        yearly_cap,
        visits_this_year,
    })
}

/// The enterprise's supervision grade, cap and visits this year.
#[utoipa::path(get, path = "/enterprises/{id}/supervision", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = Supervision), (status = 404, body = ErrorBody)))]
async fn supervision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Supervision>> {
    caller.require(Perm::RegistryRead)?;
    Ok(Json(supervision_of(&state, &caller, &id).await?))
}

/// A new grade.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GradeBody {
    /// A, B, C or D.
    pub grade: String,
}

/// Set the supervision grade (an editable field until a grading model exists).
#[utoipa::path(put, path = "/enterprises/{id}/supervision", tag = "enforcement", params(("id" = String, Path)), request_body = GradeBody,
    responses((status = 200, body = Supervision), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_grade(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<GradeBody>,
) -> ApiResult<Json<Supervision>> {
    caller.require(Perm::EnterpriseWrite)?;
    state
        .db
        .rules()
        .set_grade(
            &caller.scope,
            &id,
            b.grade.trim(),
            &caller.audit("enterprise.grade", state.now()),
        )
        .await?;
    Ok(Json(supervision_of(&state, &caller, &id).await?))
}

/// A stored attachment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attachment {
    /// Blob key, to reference from results, rectifications and documents.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// SM3, hex.
    pub sm3: String,
    /// Detected type.
    pub content_type: &'static str,
}

/// What the bytes are, from their magic numbers (the declared type is not trusted).
fn sniff(data: &[u8]) -> Option<(&'static str, &'static str)> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if data.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf"))
    } else {
        None
    }
}

/// Upload a photo or document (JPEG, PNG or PDF; raw body). Answers its key and digests.
#[utoipa::path(post, path = "/attachments", tag = "enforcement", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Attachment), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    caller.require(Perm::InspectionWrite)?;
    let _ = headers.get(header::CONTENT_TYPE);
    if body.is_empty() {
        return Err(crate::routes::auth::field_error(
            "body",
            "the file is empty",
        ));
    }
    let (content_type, ext) = sniff(&body).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "attachments are JPEG, PNG or PDF files",
        )
    })?;
    let now = state.now();
    let key = format!(
        "attachments/{}/{}.{ext}",
        shanghai_year(now),
        shouhu_storage::new_id()
    );
    let info = state.blobs.put(&key, &body).await?;
    state
        .db
        .audit()
        .record(
            &caller
                .audit("attachment.upload", now)
                .target("attachment", &key)
                .details(
                    serde_json::json!({"size": info.size, "sha256": info.sha256, "sm3": info.sm3}),
                ),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Attachment {
            key,
            size: info.size,
            sha256: info.sha256,
            sm3: info.sm3,
            content_type,
        }),
    ))
}

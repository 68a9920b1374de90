//! `/api/v1/cases`: filing with approval, documents, dual penalty, payment, criminal referral,
//! closing with approval. Open cases are confidential to their handling unit and the corps; a
//! case another unit may not read answers 404, as if it did not exist.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::cases::{Case, CaseDocument, CaseFilter, CaseInput, CaseSummary, STATES};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::Page;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::inspections::Problems;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(filing_decision))
        .routes(routes!(add_document))
        .routes(routes!(approve_document))
        .routes(routes!(penalty))
        .routes(routes!(payment))
        .routes(routes!(referral))
        .routes(routes!(closing_request))
        .routes(routes!(closing_decision))
}

/// Case list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of title, number or enterprise name.
    pub q: Option<String>,
    /// State.
    pub status: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Linked inspection.
    pub inspection_id: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// Cases the caller may read: their units' cases, and every closed case.
#[utoipa::path(get, path = "/cases", tag = "enforcement", params(ListQuery), responses((status = 200, body = Page<CaseSummary>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<CaseSummary>>> {
    caller.require(Perm::EnforcementRead)?;
    if q.status
        .as_deref()
        .is_some_and(|s| !STATES.iter().any(|(c, _)| *c == s))
    {
        return Err(crate::routes::auth::field_error(
            "status",
            "must be filing_review, open, closing_review, closed or not_filed",
        ));
    }
    let f = CaseFilter {
        q: q.q,
        status: q.status,
        enterprise_id: q.enterprise_id,
        inspection_id: q.inspection_id,
    };
    let page = state
        .db
        .cases()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(page, |c| c)))
}

/// One case with its documents (sensitive fields decrypted; the read is audited).
#[utoipa::path(get, path = "/cases/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = Case), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::EnforcementRead)?;
    let c = state.db.cases().get(&caller.scope, &id).await?;
    state
        .db
        .audit()
        .record(&caller.audit("case.view", state.now()).target("case", &id))
        .await?;
    Ok(Json(c))
}

fn valid_id_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x')
}

/// File a case (status `filing_review`) from completed inspections of one enterprise.
#[utoipa::path(post, path = "/cases", tag = "enforcement", request_body = CaseInput,
    responses((status = 200, body = Case), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<CaseInput>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseWrite)?;
    let mut p = Problems::default();
    p.text("title", &input.title, true, 200);
    p.text("violation", &input.violation, true, 4000);
    p.text("responsible_person", &input.responsible_person, false, 50);
    if !input.party_id_number.is_empty() && !valid_id_number(&input.party_id_number) {
        p.add(
            "party_id_number",
            "must be an 18-character resident ID number",
        );
    }
    let phone_digits = input
        .party_phone
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    if !input.party_phone.is_empty()
        && (!(7..=20).contains(&phone_digits)
            || !input
                .party_phone
                .chars()
                .all(|c| c.is_ascii_digit() || "-+ ()".contains(c)))
    {
        p.add("party_phone", "not a phone number");
    }
    if input
        .proposed_fine_cents
        .is_some_and(|c| !(0..=100_000_000_000).contains(&c))
    {
        p.add(
            "proposed_fine_cents",
            "must be between 0 and 1,000,000,000 yuan",
        );
    }
    if input.inspection_ids.is_empty() {
        p.add(
            "inspection_ids",
            "a case comes from at least one inspection",
        );
    }
    if input.inspection_ids.len() > 50 {
        p.add("inspection_ids", "at most 50 inspections");
    }
    match state
        .db
        .enterprises()
        .get(&caller.scope, &input.enterprise_id)
        .await
    {
        Ok(_) => {}
        Err(shouhu_storage::StorageError::NotFound(_)) => {
            // Another district's enterprise: the same 404 as reading it, audited as denied.
            if state.db.enterprises().exists(&input.enterprise_id).await? {
                return Err(crate::error::ApiError::out_of_scope(
                    "enterprise",
                    &input.enterprise_id,
                ));
            }
            p.add("enterprise_id", "no such enterprise in your scope");
        }
        Err(e) => return Err(e.into()),
    }
    let mut seen = std::collections::HashSet::new();
    for i in &input.inspection_ids {
        if !seen.insert(i) {
            p.add("inspection_ids", format!("listed twice: {i}"));
            continue;
        }
        match state.db.inspections().get(&caller.scope, i).await {
            Ok(insp) if insp.enterprise_id != input.enterprise_id => p.add(
                "inspection_ids",
                format!("inspection {} is of another enterprise", insp.code),
            ),
            Ok(insp) if insp.status != "completed" => p.add(
                "inspection_ids",
                format!("inspection {} is not completed", insp.code),
            ),
            Ok(_) => {}
            Err(shouhu_storage::StorageError::NotFound(_)) => {
                if state.db.row_exists("inspections", i).await? {
                    return Err(crate::error::ApiError::out_of_scope("inspection", i));
                }
                p.add(
                    "inspection_ids",
                    format!("no such inspection in your scope: {i}"),
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    p.finish()?;
    let cases = state.db.cases();
    let id = cases
        .create(
            &caller.account.org_unit_id,
            &input,
            &caller.audit("case.create", state.now()),
        )
        .await?;
    Ok(Json(cases.get(&caller.scope, &id).await?))
}

/// An approval decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Reason (required when rejecting).
    #[serde(default)]
    pub reason: String,
}

fn check_decision(b: &DecisionBody) -> ApiResult<()> {
    let mut p = Problems::default();
    p.text("reason", &b.reason, !b.approve, 1000);
    p.finish()
}

/// Decide the filing: approve (→ `open`, numbered) or reject (→ `not_filed`).
#[utoipa::path(post, path = "/cases/{id}/filing-decision", tag = "enforcement", params(("id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = Case), (status = 409, body = ErrorBody)))]
async fn filing_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DecisionBody>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseApprove)?;
    check_decision(&b)?;
    Ok(Json(
        state
            .db
            .cases()
            .decide_filing(
                &caller.scope,
                &id,
                b.approve,
                b.reason.trim(),
                &caller.audit("case.filing_decision", state.now()),
            )
            .await?,
    ))
}

/// A document to draft.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    /// Type code from `GET /enforcement/doc-types` (`D02`…).
    pub doc_type: String,
    /// Text of the document.
    #[serde(default)]
    pub content: String,
}

/// Draft a numbered document of an open case.
#[utoipa::path(post, path = "/cases/{id}/documents", tag = "enforcement", params(("id" = String, Path)), request_body = DocumentBody,
    responses((status = 200, body = CaseDocument), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_document(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DocumentBody>,
) -> ApiResult<Json<CaseDocument>> {
    caller.require(Perm::CaseWrite)?;
    let mut p = Problems::default();
    p.text("content", &b.content, false, 20_000);
    p.finish()?;
    Ok(Json(
        state
            .db
            .cases()
            .add_document(
                &caller.scope,
                &id,
                b.doc_type.trim(),
                b.content.trim(),
                &caller.audit("case.document", state.now()),
            )
            .await?,
    ))
}

/// Approve a drafted document.
#[utoipa::path(post, path = "/cases/{id}/documents/{doc_id}/approve", tag = "enforcement",
    params(("id" = String, Path), ("doc_id" = String, Path)),
    responses((status = 200, body = CaseDocument), (status = 409, body = ErrorBody)))]
async fn approve_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, doc_id)): Path<(String, String)>,
) -> ApiResult<Json<CaseDocument>> {
    caller.require(Perm::CaseApprove)?;
    Ok(Json(
        state
            .db
            .cases()
            .approve_document(
                &caller.scope,
                &id,
                &doc_id,
                &caller.audit("case.document_approve", state.now()),
            )
            .await?,
    ))
}

/// A penalty decision (dual penalty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PenaltyBody {
    /// Fine on the company, fen.
    pub company_fine_cents: i64,
    /// Fine on the responsible person, fen.
    pub person_fine_cents: i64,
}

/// Decide the penalty on the company and the responsible person (needs an approved D15).
#[utoipa::path(post, path = "/cases/{id}/penalty", tag = "enforcement", params(("id" = String, Path)), request_body = PenaltyBody,
    responses((status = 200, body = Case), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn penalty(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PenaltyBody>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseApprove)?;
    let mut p = Problems::default();
    for (f, v) in [
        ("company_fine_cents", b.company_fine_cents),
        ("person_fine_cents", b.person_fine_cents),
    ] {
        if !(0..=100_000_000_000).contains(&v) {
            p.add(f, "must be between 0 and 1,000,000,000 yuan");
        }
    }
    if b.company_fine_cents == 0 && b.person_fine_cents == 0 {
        p.add(
            "company_fine_cents",
            "a penalty fines the company, the person or both",
        );
    }
    p.finish()?;
    Ok(Json(
        state
            .db
            .cases()
            .decide_penalty(
                &caller.scope,
                &id,
                b.company_fine_cents,
                b.person_fine_cents,
                &caller.audit("case.penalty", state.now()),
            )
            .await?,
    ))
}

/// A payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    /// Amount paid, fen.
    pub paid_cents: i64,
    /// When, RFC 3339 (default now).
    #[serde(default)]
    pub paid_at: Option<String>,
}

/// Record the payment of the fines.
#[utoipa::path(post, path = "/cases/{id}/payment", tag = "enforcement", params(("id" = String, Path)), request_body = PaymentBody,
    responses((status = 200, body = Case), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PaymentBody>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseWrite)?;
    let now = state.now();
    let mut p = Problems::default();
    if !(1..=100_000_000_000).contains(&b.paid_cents) {
        p.add("paid_cents", "must be a positive amount");
    }
    let paid_at = match b.paid_at.as_deref() {
        None => now,
        Some(t) => crate::clock::parse_time(t).unwrap_or_else(|| {
            p.add("paid_at", "must be an RFC 3339 time");
            now
        }),
    };
    if paid_at > now + 3_600_000 {
        p.add("paid_at", "must not be in the future");
    }
    p.finish()?;
    Ok(Json(
        state
            .db
            .cases()
            .record_payment(
                &caller.scope,
                &id,
                b.paid_cents,
                paid_at,
                &caller.audit("case.payment", now),
            )
            .await?,
    ))
}

/// A criminal referral.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralBody {
    /// To whom and why.
    pub note: String,
}

/// Refer the case to the judicial organs (needs an approved D32).
#[utoipa::path(post, path = "/cases/{id}/referral", tag = "enforcement", params(("id" = String, Path)), request_body = ReferralBody,
    responses((status = 200, body = Case), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn referral(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReferralBody>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseWrite)?;
    let mut p = Problems::default();
    p.text("note", &b.note, true, 2000);
    p.finish()?;
    Ok(Json(
        state
            .db
            .cases()
            .refer(
                &caller.scope,
                &id,
                b.note.trim(),
                &caller.audit("case.referral", state.now()),
            )
            .await?,
    ))
}

/// Request closing (every document approved, penalty decided or case referred).
#[utoipa::path(post, path = "/cases/{id}/closing-request", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = Case), (status = 409, body = ErrorBody)))]
async fn closing_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseWrite)?;
    Ok(Json(
        state
            .db
            .cases()
            .request_closing(
                &caller.scope,
                &id,
                &caller.audit("case.closing_request", state.now()),
            )
            .await?,
    ))
}

/// Decide closing: approve (→ `closed`, readable by every unit) or send back (→ `open`).
#[utoipa::path(post, path = "/cases/{id}/closing-decision", tag = "enforcement", params(("id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = Case), (status = 409, body = ErrorBody)))]
async fn closing_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<DecisionBody>,
) -> ApiResult<Json<Case>> {
    caller.require(Perm::CaseApprove)?;
    check_decision(&b)?;
    Ok(Json(
        state
            .db
            .cases()
            .decide_closing(
                &caller.scope,
                &id,
                b.approve,
                b.reason.trim(),
                &caller.audit("case.closing_decision", state.now()),
            )
            .await?,
    ))
}

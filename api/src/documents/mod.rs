//! Enforcement documents generated from the data: the on-site inspection record (D09), the
//! rectification order (D11), the re-inspection opinion (D12) and every document of a case, as
//! PDF (Chinese font embedded) and Word (`.docx`).
//!
//! A final document is rendered once, stored as a blob and recorded with its SHA-256 and SM3
//! digests (`rendered_documents`); later downloads serve those same bytes, so a printed copy can
//! be checked against the digest. Drafts of case documents render with "（草稿）" and are not
//! stored.

pub mod batch;
pub mod docx;
pub mod pdf;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shouhu_storage::enforcement::{rfc3339, RenderedDocument, SHANGHAI_OFFSET_MS};
use shouhu_storage::org_units::Scope;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// A document to render: who issues it, its title and number, its content, its date.
#[derive(Debug, Clone)]
pub struct Document {
    /// Issuing authority (the handling unit).
    pub issuer: String,
    /// Document title (the document type's name).
    pub title: String,
    /// Document number.
    pub number: String,
    /// Content.
    pub blocks: Vec<Block>,
    /// Date line, e.g. `2026年12月4日`.
    pub date: String,
}

/// A piece of content.
#[derive(Debug, Clone)]
pub enum Block {
    /// `label：value`.
    Field(String, String),
    /// A paragraph (first-line indent); `\n` separates paragraphs.
    Paragraph(String),
    /// Vertical space.
    Gap,
}

fn field(label: &str, value: impl Into<String>) -> Block {
    let v = value.into();
    Block::Field(label.into(), if v.is_empty() { "—".into() } else { v })
}

/// `2026年12月4日` in Asia/Shanghai.
pub fn chinese_date(ms: i64) -> String {
    use chrono::Datelike;
    let d = chrono::DateTime::from_timestamp_millis(ms + SHANGHAI_OFFSET_MS).unwrap_or_default();
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

fn chinese_time(ms: i64) -> String {
    use chrono::Timelike;
    let d = chrono::DateTime::from_timestamp_millis(ms + SHANGHAI_OFFSET_MS).unwrap_or_default();
    format!("{}{}时{:02}分", chinese_date(ms), d.hour(), d.minute())
}

type FontCache = HashMap<(PathBuf, u32), Arc<pdf::Font>>;

/// Fonts loaded so far, by (path, face).
static FONTS: Mutex<Option<FontCache>> = Mutex::new(None);

/// The configured font, loaded once.
pub(crate) fn font(state: &AppState) -> ApiResult<Arc<pdf::Font>> {
    let key = (
        state.cfg.documents.font_path.clone(),
        state.cfg.documents.font_index,
    );
    let mut g = FONTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(f) = g.get_or_insert_with(HashMap::new).get(&key) {
        return Ok(f.clone());
    }
    let data = std::fs::read(&key.0).map_err(|e| {
        ApiError::internal(format!(
            "documents.font_path {}: {e} (install the Debian package fonts-wqy-microhei or set a font with Chinese glyphs)",
            key.0.display()
        ))
    })?;
    let f = Arc::new(pdf::Font::load(data, key.1).map_err(|e| {
        ApiError::internal(format!("documents.font_path {}: {e}", key.0.display()))
    })?);
    g.get_or_insert_with(HashMap::new).insert(key, f.clone());
    Ok(f)
}

/// Output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PDF (A4, printable).
    Pdf,
    /// Word.
    Docx,
}

impl Format {
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }
}

/// Which format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// `pdf` (default) or `docx`.
    pub format: Option<Format>,
}

async fn render_bytes(
    state: &AppState,
    doc: Document,
    format: Format,
    at_ms: i64,
) -> ApiResult<Vec<u8>> {
    match format {
        Format::Pdf => {
            let font = font(state)?;
            let d = chrono::DateTime::from_timestamp_millis(at_ms + SHANGHAI_OFFSET_MS)
                .unwrap_or_default();
            let created = d.format("D:%Y%m%d%H%M%S+08'00'").to_string();
            tokio::task::spawn_blocking(move || pdf::render(&doc, &font, &created))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)
        }
        Format::Docx => Ok(docx::render(&doc, &rfc3339::format(at_ms))),
    }
}

/// Serve a document: the stored rendering of a final one (rendering and storing it the first
/// time), or a fresh rendering of a draft. Audited.
async fn serve(
    state: &AppState,
    caller: &Caller,
    doc: Document,
    format: Format,
    final_doc: bool,
    issued_at_ms: i64,
) -> ApiResult<Response> {
    let (filename, bytes, sha, sm3) =
        obtain(state, caller, doc, format, final_doc, issued_at_ms).await?;
    respond(filename, format, bytes, sha, sm3)
}

/// The bytes of a document (the stored rendering of a final one, rendered and stored the first
/// time; a fresh rendering of a draft) with its file name and digests. Audited as a download.
pub(crate) async fn obtain(
    state: &AppState,
    caller: &Caller,
    doc: Document,
    format: Format,
    final_doc: bool,
    issued_at_ms: i64,
) -> ApiResult<(String, Vec<u8>, String, String)> {
    let filename = format!("{}-{}.{}", doc.title, doc.number, format.ext());
    let number = doc.number.clone();
    let (bytes, sha, sm3) = if final_doc {
        let rules = state.db.rules();
        let stored = match rules.rendered(&number, format.ext()).await? {
            Some(r) => r,
            None => {
                let bytes = render_bytes(state, doc, format, issued_at_ms).await?;
                let key = {
                    use sha2::Digest;
                    let h = hex::encode(sha2::Sha256::digest(number.as_bytes()));
                    format!("documents/{}/{}.{}", &h[..2], &h[..32], format.ext())
                };
                let info = state.blobs.put(&key, &bytes).await?;
                rules
                    .record_rendered(
                        &RenderedDocument {
                            number: number.clone(),
                            format: format.ext().into(),
                            blob_key: key,
                            size: info.size as i64,
                            sha256: info.sha256,
                            sm3: info.sm3,
                            rendered_at_ms: state.now(),
                        },
                        &caller.audit("document.render", state.now()),
                    )
                    .await?
            }
        };
        let bytes = state.blobs.get(&stored.blob_key).await?;
        (bytes, stored.sha256, stored.sm3)
    } else {
        let bytes = render_bytes(state, doc, format, state.now()).await?;
        let (sha, sm3) = shouhu_storage::blob::digests(&bytes);
        (bytes, sha, sm3)
    };
    state
        .db
        .audit()
        .record(
            &caller
                .audit("document.download", state.now())
                .target("document", &number)
                .details(
                    serde_json::json!({"format": format.ext(), "sha256": sha, "final": final_doc}),
                ),
        )
        .await?;
    Ok((filename, bytes, sha, sm3))
}

fn respond(
    filename: String,
    format: Format,
    bytes: Vec<u8>,
    sha: String,
    sm3: String,
) -> ApiResult<Response> {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = if format == Format::Pdf {
        "inline"
    } else {
        "attachment"
    };
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "{disposition}; filename=\"document.{}\"; filename*=UTF-8''{encoded}",
            format.ext()
        ))
        .map_err(ApiError::internal)?,
    );
    h.insert(
        "x-content-sha256",
        HeaderValue::from_str(&sha).map_err(ApiError::internal)?,
    );
    h.insert(
        "x-content-sm3",
        HeaderValue::from_str(&sm3).map_err(ApiError::internal)?,
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok((StatusCode::OK, h, bytes).into_response())
}

/// The issuing unit's name for documents of `unit_id`: its brigade, else the unit itself.
async fn issuer_of(state: &AppState, unit_id: &str) -> ApiResult<String> {
    use shouhu_storage::org_units::OrgKind;
    if let Some(b) = state
        .db
        .org_units()
        .ancestor_of_kind(unit_id, OrgKind::Brigade)
        .await?
    {
        return Ok(b.name);
    }
    Ok(state.db.org_units().get(unit_id).await?.name)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inspection_record))
        .routes(routes!(rectification_order))
        .routes(routes!(reinspection_opinion))
        .routes(routes!(case_document))
        .merge(batch::router())
}

const KIND_NAMES: &[(&str, &str)] = shouhu_storage::inspections::KINDS;

/// 现场检查记录 (D09) of a completed inspection.
#[utoipa::path(get, path = "/inspections/{id}/record", tag = "enforcement", params(("id" = String, Path), FormatQuery),
    responses((status = 200, description = "PDF or Word file; digests in X-Content-SHA256 / X-Content-SM3"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn inspection_record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    let (doc, at) = inspection_record_doc(&state, &caller.scope, &id).await?;
    serve(
        &state,
        &caller,
        doc,
        q.format.unwrap_or(Format::Pdf),
        true,
        at,
    )
    .await
}

/// The 现场检查记录 of a completed inspection visible in `scope`, with its issue time.
pub(crate) async fn inspection_record_doc(
    state: &AppState,
    scope: &Scope,
    id: &str,
) -> ApiResult<(Document, i64)> {
    let i = state.db.inspections().get(scope, id).await?;
    let Some(number) = i.record_number.clone() else {
        return Err(shouhu_storage::StorageError::wrong_state(
            "inspection",
            i.status,
            "the inspection record is issued when the inspection is completed",
        )
        .into());
    };
    let e = state
        .db
        .enterprises()
        .get(&Scope::All, &i.enterprise_id)
        .await?;
    let results = state.db.inspections().results(id).await?;
    let hazards = state
        .db
        .hazards()
        .list(
            &Scope::All,
            &shouhu_storage::hazards::HazardFilter {
                inspection_id: Some(id.to_string()),
                ..Default::default()
            },
            shouhu_storage::PageRequest::new(None, Some(500)),
        )
        .await?
        .items;
    let result_name = |r: &str| match r {
        "pass" => "符合",
        "hazard" => "存在隐患",
        _ => "不适用",
    };
    let mut checks = String::new();
    for (n, r) in results.iter().enumerate() {
        checks.push_str(&format!(
            "{}. {}（{}）：{}{}\n",
            n + 1,
            r.item_title,
            r.item_code,
            result_name(&r.result),
            if r.note.is_empty() {
                String::new()
            } else {
                format!("。{}", r.note)
            }
        ));
    }
    let found = if hazards.is_empty() {
        "未发现事故隐患。".to_string()
    } else {
        hazards
            .iter()
            .enumerate()
            .map(|(n, h)| {
                format!(
                    "{}. {}（{}），已下达责令限期整改指令书{}，整改期限{}。",
                    n + 1,
                    h.description,
                    if h.level == "major" {
                        "重大事故隐患"
                    } else {
                        "一般隐患"
                    },
                    h.order_number,
                    chinese_date(h.rectification_deadline_ms)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let kind = KIND_NAMES
        .iter()
        .find(|(c, _)| *c == i.kind)
        .map(|(_, n)| *n)
        .unwrap_or("");
    let doc = Document {
        issuer: issuer_of(state, &i.org_unit_id).await?,
        title: "现场检查记录".into(),
        number,
        blocks: vec![
            field("被检查单位", e.name.clone()),
            field("统一社会信用代码", e.uscc.clone()),
            field("地址", e.address.clone()),
            field("主要负责人", e.principal_name.clone()),
            field("检查类型", kind),
            field("检查码", i.code.clone()),
            field(
                "检查时间",
                format!(
                    "{}至{}",
                    chinese_time(i.started_at_ms),
                    i.completed_at_ms.map(chinese_time).unwrap_or_default()
                ),
            ),
            field(
                "检查人员及执法证号",
                i.officers
                    .iter()
                    .map(|o| format!("{}（{}）", o.name, o.certificate_no))
                    .collect::<Vec<_>>()
                    .join("、"),
            ),
            Block::Gap,
            Block::Field("检查情况".into(), String::new()),
            Block::Paragraph(checks.trim_end().to_string()),
            Block::Field("发现的事故隐患".into(), String::new()),
            Block::Paragraph(found),
            field("检查小结", i.summary.clone()),
            Block::Gap,
            Block::Field("被检查单位现场负责人（签名）".into(), String::new()),
            Block::Field("检查人员（签名）".into(), String::new()),
        ],
        date: chinese_date(i.completed_at_ms.unwrap_or(i.started_at_ms)),
    };
    let at = i.completed_at_ms.unwrap_or(i.started_at_ms);
    Ok((doc, at))
}

/// 责令限期整改指令书 (D11) of a hazard.
#[utoipa::path(get, path = "/hazards/{id}/order", tag = "enforcement", params(("id" = String, Path), FormatQuery),
    responses((status = 200, description = "PDF or Word file; digests in X-Content-SHA256 / X-Content-SM3"), (status = 404, body = ErrorBody)))]
async fn rectification_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    let (doc, at) = rectification_order_doc(&state, &caller.scope, &id).await?;
    serve(
        &state,
        &caller,
        doc,
        q.format.unwrap_or(Format::Pdf),
        true,
        at,
    )
    .await
}

/// The 责令限期整改指令书 of a hazard visible in `scope`, with its issue time.
pub(crate) async fn rectification_order_doc(
    state: &AppState,
    scope: &Scope,
    id: &str,
) -> ApiResult<(Document, i64)> {
    let h = state.db.hazards().get(scope, id).await?;
    let doc = Document {
        issuer: issuer_of(state, &h.org_unit_id).await?,
        title: "责令限期整改指令书".into(),
        number: h.order_number.clone(),
        blocks: vec![
            Block::Field(h.enterprise_name.clone(), String::new()),
            Block::Paragraph(format!(
                "经查，你单位存在下列问题：\n{}{}\n现责令你单位于{}前整改完毕，达到有关法律法规规章和标准规定的要求。由此造成事故的，依法追究有关人员的责任。\n整改期间，你单位应当采取措施，确保安全生产。对安全生产违法行为，将依法予以行政处罚。\n如果不服本指令，可以依法在60日内向人民政府或者上一级应急管理部门申请行政复议，或者在6个月内依法向人民法院提起行政诉讼，但本指令不停止执行，法律另有规定的除外。",
                h.description,
                if h.level == "major" { "（重大事故隐患）" } else { "" },
                chinese_date(h.rectification_deadline_ms)
            )),
            field("检查码", h.inspection_code.clone()),
        ],
        date: chinese_date(h.found_at_ms),
    };
    Ok((doc, h.found_at_ms))
}

/// 整改复查意见书 (D12) of a re-inspected hazard.
#[utoipa::path(get, path = "/hazards/{id}/reinspection-opinion", tag = "enforcement", params(("id" = String, Path), FormatQuery),
    responses((status = 200, description = "PDF or Word file; digests in X-Content-SHA256 / X-Content-SM3"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reinspection_opinion(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    let h = state.db.hazards().get(&caller.scope, &id).await?;
    let (Some(number), Some(at)) = (h.reinspection_number.clone(), h.reinspected_at_ms) else {
        return Err(shouhu_storage::StorageError::wrong_state(
            "hazard",
            h.status,
            "the re-inspection opinion is issued when the hazard is re-inspected",
        )
        .into());
    };
    let doc = Document {
        issuer: issuer_of(&state, &h.org_unit_id).await?,
        title: "整改复查意见书".into(),
        number,
        blocks: vec![
            Block::Field(h.enterprise_name.clone(), String::new()),
            Block::Paragraph(format!(
                "本机关于{}作出了《责令限期整改指令书》（{}），经对你单位整改情况进行复查，提出如下意见：\n{}\n复查结论：{}。",
                chinese_date(h.found_at_ms),
                h.order_number,
                h.reinspection_note.clone().unwrap_or_default(),
                if h.reinspection_result.as_deref() == Some("passed") { "整改合格" } else { "整改不合格" }
            )),
        ],
        date: chinese_date(at),
    };
    serve(
        &state,
        &caller,
        doc,
        q.format.unwrap_or(Format::Pdf),
        true,
        at,
    )
    .await
}

/// A document of a case (drafts render marked 草稿 and are not stored).
#[utoipa::path(get, path = "/cases/{id}/documents/{doc_id}/file", tag = "enforcement", params(("id" = String, Path), ("doc_id" = String, Path), FormatQuery),
    responses((status = 200, description = "PDF or Word file; digests in X-Content-SHA256 / X-Content-SM3"), (status = 404, body = ErrorBody)))]
async fn case_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, doc_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    let c = state.db.cases().get(&caller.scope, &id).await?;
    let d = c
        .documents
        .iter()
        .find(|d| d.id == doc_id)
        .ok_or(ApiError::not_found("document"))?;
    let approved = d.status == "approved";
    let (doc, at) = case_document_doc(&state, &c, d).await?;
    serve(
        &state,
        &caller,
        doc,
        q.format.unwrap_or(Format::Pdf),
        approved,
        at,
    )
    .await
}

/// The document `d` of case `c`, and its date (approval, or drafting for a draft).
pub(crate) async fn case_document_doc(
    state: &AppState,
    c: &shouhu_storage::cases::Case,
    d: &shouhu_storage::cases::CaseDocument,
) -> ApiResult<(Document, i64)> {
    let approved = d.status == "approved";
    let at = d.approved_at_ms.unwrap_or(d.created_at_ms);
    let doc = Document {
        issuer: issuer_of(state, &c.summary.org_unit_id).await?,
        title: if approved {
            d.title.clone()
        } else {
            format!("{}（草稿）", d.title)
        },
        number: d.number.clone(),
        blocks: vec![
            field("案号", c.summary.number.clone().unwrap_or_default()),
            field("案由", c.summary.title.clone()),
            field("当事人", c.summary.enterprise_name.clone()),
            field("责任人", c.responsible_person.clone()),
            Block::Gap,
            Block::Paragraph(d.content.clone()),
        ],
        date: chinese_date(at),
    };
    Ok((doc, at))
}

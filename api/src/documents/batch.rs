//! Document batches (`/api/v1/document-batches`): many final documents — the 现场检查记录 of
//! inspections, the 责令限期整改指令书 of hazards, the approved documents of cases (for the case
//! file) — rendered in the background into one ZIP for
//! printing, with progress the page polls. Each document goes through the same path as a single
//! download (stored once with its digests, audited); the ZIP adds a `SHA256SUMS` listing.
//! A batch belongs to the account that started it and is kept for an hour after it finishes.
//!
//! Bounded: the node renders `documents.batch_workers` batches at once (the others wait,
//! `queued`), an account has at most `documents.max_open_batches` queued or running (more is
//! `429 too_many_batches`), and keeps at most that many finished archives too (the oldest goes).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Format;
use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::inspections::Problems;
use crate::state::AppState;

/// How long a finished batch is kept.
const KEEP_MS: i64 = 3_600_000;
/// At most this many inspections, hazards or cases per batch.
const MAX_DOCS: usize = 500;
const KINDS: [&str; 3] = [
    "inspection_records",
    "rectification_orders",
    "case_documents",
];

/// A failed document of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchError {
    /// The inspection or hazard.
    pub id: String,
    /// Why.
    pub message: String,
}

/// A batch's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchStatus {
    /// Id.
    pub id: String,
    /// `inspection_records`, `rectification_orders` or `case_documents`.
    pub kind: String,
    /// `pdf` or `docx`.
    pub format: String,
    /// Inspections, hazards or cases asked for.
    pub total: usize,
    /// Of those, handled so far (rendered or failed).
    pub done: usize,
    /// Documents that could not be produced.
    pub failed: Vec<BatchError>,
    /// Whether the archive is ready.
    pub finished: bool,
    /// Archive size, bytes, once finished.
    pub size: Option<usize>,
    /// Waiting for a free worker (the node renders `documents.batch_workers` at once).
    pub queued: bool,
}

struct Batch {
    owner: String,
    status: BatchStatus,
    archive: Option<Arc<Vec<u8>>>,
    finished_at_ms: Option<i64>,
    /// Order of finishing.
    finished_seq: u64,
}

/// The batches of this node.
pub struct Batches {
    inner: Mutex<HashMap<String, Batch>>,
    /// Batches rendered at once.
    workers: tokio::sync::Semaphore,
    /// Batches an account may have queued or running, and finished archives it keeps.
    per_account: usize,
    /// When each batch finished (for dropping an account's oldest archives).
    seq: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

impl Batches {
    /// `workers` rendered at once; `per_account` open (and kept) per account.
    pub fn new(workers: usize, per_account: usize) -> Self {
        Batches {
            inner: Mutex::new(HashMap::new()),
            workers: tokio::sync::Semaphore::new(workers.max(1)),
            per_account: per_account.max(1),
            seq: Default::default(),
        }
    }

    /// The workers' slots (a test holds them to keep batches queued).
    pub fn worker_slots(&self) -> &tokio::sync::Semaphore {
        &self.workers
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Batch>) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Forget batches finished more than an hour ago.
    fn expire(&self, now_ms: i64) {
        self.with(|m| m.retain(|_, b| b.finished_at_ms.is_none_or(|t| now_ms - t < KEEP_MS)));
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(status))
        .routes(routes!(archive))
}

/// A batch to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// `inspection_records` (completed inspections), `rectification_orders` (hazards) or
    /// `case_documents` (every approved document of each case).
    pub kind: String,
    /// The inspections, hazards or cases (1–500, in the caller's scope).
    pub ids: Vec<String>,
    /// `pdf` (default) or `docx`.
    #[serde(default)]
    pub format: Option<Format>,
}

/// Start rendering a batch of documents into one ZIP; poll `GET /document-batches/{id}`.
#[utoipa::path(post, path = "/document-batches", tag = "enforcement", request_body = BatchRequest,
    responses((status = 202, body = BatchStatus), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<(StatusCode, Json<BatchStatus>)> {
    caller.require(Perm::EnforcementRead)?;
    let mut p = Problems::default();
    if !KINDS.contains(&req.kind.as_str()) {
        p.add(
            "kind",
            "must be inspection_records, rectification_orders or case_documents",
        );
    }
    if req.ids.is_empty() || req.ids.len() > MAX_DOCS {
        p.add("ids", format!("1 to {MAX_DOCS} ids"));
    }
    let mut ids = req.ids.clone();
    ids.sort();
    ids.dedup();
    if ids.len() != req.ids.len() {
        p.add("ids", "an id is listed twice");
    }
    p.finish()?;
    let format = req.format.unwrap_or(Format::Pdf);
    state.batches.expire(state.now());
    let open = state.batches.with(|m| {
        m.values()
            .filter(|b| b.owner == caller.account.id && !b.status.finished)
            .count()
    });
    if open >= state.batches.per_account {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_batches",
            format!(
                "you already have {open} document batches being prepared; download or wait for one before starting another"
            ),
        ));
    }
    let id = shouhu_storage::new_id();
    let st = BatchStatus {
        id: id.clone(),
        kind: req.kind.clone(),
        format: format.ext().into(),
        total: req.ids.len(),
        done: 0,
        failed: Vec::new(),
        finished: false,
        size: None,
        queued: true,
    };
    state.batches.with(|m| {
        m.insert(
            id.clone(),
            Batch {
                owner: caller.account.id.clone(),
                status: st.clone(),
                archive: None,
                finished_at_ms: None,
                finished_seq: 0,
            },
        )
    });
    state
        .db
        .audit()
        .record(
            &caller
                .audit("document.batch", state.now())
                .target("document_batch", &id)
                .details(
                    serde_json::json!({"kind": req.kind, "format": format.ext(), "ids": req.ids}),
                ),
        )
        .await?;
    let bg = state.clone();
    tokio::spawn(async move {
        run(bg, caller, id, req.kind, req.ids, format).await;
    });
    Ok((StatusCode::ACCEPTED, Json(st)))
}

async fn run(
    state: AppState,
    caller: Caller,
    id: String,
    kind: String,
    ids: Vec<String>,
    format: Format,
) {
    let Ok(_worker) = state.batches.workers.acquire().await else {
        return;
    };
    state.batches.with(|m| {
        if let Some(b) = m.get_mut(&id) {
            b.status.queued = false;
        }
    });
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut sums = String::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for doc_id in &ids {
        let docs = documents_of(&state, &caller, &kind, doc_id).await;
        let mut failure = None;
        match docs {
            Ok(docs) => {
                for (doc, at) in docs {
                    match super::obtain(&state, &caller, doc, format, true, at).await {
                        Ok((filename, bytes, sha, _)) => {
                            // Two documents cannot share a name inside the archive.
                            let n = names.entry(filename.clone()).or_insert(0);
                            *n += 1;
                            let name = if *n == 1 {
                                filename
                            } else {
                                format!("{n}-{filename}")
                            };
                            sums.push_str(&format!("{sha}  {name}\n"));
                            if let Err(e) = zip
                                .start_file(name.as_str(), opts)
                                .and_then(|_| zip.write_all(&bytes).map_err(Into::into))
                            {
                                failure = Some(e.to_string());
                            }
                        }
                        Err(e) => failure = Some(e.message),
                    }
                }
            }
            Err(e) => failure = Some(e.message),
        }
        state.batches.with(|m| {
            if let Some(b) = m.get_mut(&id) {
                b.status.done += 1;
                if let Some(message) = failure {
                    b.status.failed.push(BatchError {
                        id: doc_id.clone(),
                        message,
                    });
                }
            }
        });
    }
    let archive = zip
        .start_file("SHA256SUMS", opts)
        .and_then(|_| zip.write_all(sums.as_bytes()).map_err(Into::into))
        .and_then(|_| zip.finish())
        .map(|c| c.into_inner());
    let now = state.now();
    state.batches.with(|m| {
        if let Some(b) = m.get_mut(&id) {
            match archive {
                Ok(bytes) => {
                    b.status.size = Some(bytes.len());
                    b.archive = Some(Arc::new(bytes));
                }
                Err(e) => b.status.failed.push(BatchError {
                    id: String::new(),
                    message: format!("archive: {e}"),
                }),
            }
            b.status.finished = true;
            b.finished_at_ms = Some(now);
            b.finished_seq = state
                .batches
                .seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // The account keeps its newest `per_account` archives.
        let owner = caller.account.id.clone();
        let mut done: Vec<(u64, String)> = m
            .iter()
            .filter(|(_, b)| b.owner == owner && b.status.finished)
            .map(|(k, b)| (b.finished_seq, k.clone()))
            .collect();
        done.sort();
        let extra = done.len().saturating_sub(state.batches.per_account);
        for (_, k) in done.into_iter().take(extra) {
            m.remove(&k);
        }
    });
}

/// The documents one id of a batch stands for, with their dates.
async fn documents_of(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    id: &str,
) -> ApiResult<Vec<(super::Document, i64)>> {
    match kind {
        "inspection_records" => Ok(vec![
            super::inspection_record_doc(state, &caller.scope, id).await?,
        ]),
        "rectification_orders" => Ok(vec![
            super::rectification_order_doc(state, &caller.scope, id).await?,
        ]),
        _ => {
            let c = state.db.cases().get(&caller.scope, id).await?;
            let mut out = Vec::new();
            for d in c.documents.iter().filter(|d| d.status == "approved") {
                out.push(super::case_document_doc(state, &c, d).await?);
            }
            if out.is_empty() {
                return Err(shouhu_storage::StorageError::wrong_state(
                    "case",
                    c.summary.status.clone(),
                    "the case has no approved document yet",
                )
                .into());
            }
            Ok(out)
        }
    }
}

fn mine(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(BatchStatus, Option<Arc<Vec<u8>>>)> {
    state
        .batches
        .with(|m| {
            m.get(id)
                .filter(|b| b.owner == caller.account.id)
                .map(|b| (b.status.clone(), b.archive.clone()))
        })
        .ok_or_else(|| ApiError::not_found("document batch"))
}

/// A batch's progress.
#[utoipa::path(get, path = "/document-batches/{id}", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, body = BatchStatus), (status = 404, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchStatus>> {
    caller.require(Perm::EnforcementRead)?;
    Ok(Json(mine(&state, &caller, &id)?.0))
}

/// The finished batch as a ZIP (the documents and `SHA256SUMS`).
#[utoipa::path(get, path = "/document-batches/{id}/archive", tag = "enforcement", params(("id" = String, Path)),
    responses((status = 200, description = "application/zip"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn archive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Perm::EnforcementRead)?;
    let (st, bytes) = mine(&state, &caller, &id)?;
    let Some(bytes) = bytes else {
        return Err(shouhu_storage::StorageError::wrong_state(
            "document batch",
            if st.finished { "failed" } else { "running" },
            "the archive is not ready",
        )
        .into());
    };
    let name = st.kind.replace('_', "-");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}.zip\""))
                    .map_err(ApiError::internal)?,
            ),
        ],
        bytes.as_ref().clone(),
    )
        .into_response())
}

//! Progress of registry imports (`GET /api/v1/imports/{id}`).
//!
//! An import (`POST /enterprises/import`, `POST /officers/import`) answers only when it is done:
//! every row checked, then all written in one transaction, or none. A client that wants to show
//! progress meanwhile names the import with an `X-Import-Id` header (8–64 letters, digits or
//! `-`, chosen by the client) and polls this resource while its upload request is pending: the
//! phase (`checking`, `writing`, then `finished`, `rejected` or `failed`), the rows of the file
//! and how many are written. An import belongs to the account that sent it and is kept for ten
//! minutes after it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody, RowError};
use crate::state::AppState;

/// How long an ended import's progress is kept.
const KEEP_MS: i64 = 600_000;
/// The request header naming an import.
pub const HEADER: &str = "x-import-id";

const PHASES: [&str; 6] = [
    "reading", "checking", "writing", "finished", "rejected", "failed",
];

/// What one import has done so far; shared by the import's handler and the progress reads.
#[derive(Debug, Default)]
pub struct Tracker {
    phase: AtomicU8,
    rows: AtomicUsize,
    written: AtomicUsize,
}

impl Tracker {
    fn set_phase(&self, phase: &str) {
        let i = PHASES.iter().position(|p| *p == phase).unwrap_or(5);
        self.phase.store(i as u8, Ordering::Relaxed);
    }

    fn ended(&self) -> bool {
        self.phase.load(Ordering::Relaxed) >= 3
    }
}

/// The handler's handle on its import's progress. Dropped before [`ImportRun::finish`] (an
/// error answered with `?`), the import counts as `failed`, or `rejected` after
/// [`ImportRun::reject`].
#[derive(Debug)]
pub struct ImportRun {
    tracker: Option<Arc<Tracker>>,
    imports: Arc<Imports>,
    id: String,
    now_ms: i64,
}

impl ImportRun {
    /// The file's rows are parsed: `rows` of them, now being checked.
    pub fn checking(&self, rows: usize) {
        if let Some(t) = &self.tracker {
            t.rows.store(rows, Ordering::Relaxed);
            t.set_phase("checking");
        }
    }

    /// Every row passed; writing them.
    pub fn writing(&self) {
        if let Some(t) = &self.tracker {
            t.set_phase("writing");
        }
    }

    /// Rows written so far (the storage layer's progress callback).
    pub fn written(&self, n: usize) {
        if let Some(t) = &self.tracker {
            t.written.store(n, Ordering::Relaxed);
        }
    }

    /// Some rows were bad: nothing written.
    pub fn reject(&self) {
        self.end("rejected");
    }

    /// Every row written and committed.
    pub fn finish(&self) {
        self.end("finished");
    }

    fn end(&self, phase: &str) {
        if let Some(t) = &self.tracker {
            if !t.ended() {
                t.set_phase(phase);
                self.imports.ended(&self.id, self.now_ms);
            }
        }
    }
}

impl Drop for ImportRun {
    fn drop(&mut self) {
        self.end("failed");
    }
}

struct Entry {
    owner: String,
    what: &'static str,
    tracker: Arc<Tracker>,
    ended_at_ms: Option<i64>,
}

/// The imports of this node.
#[derive(Default)]
pub struct Imports {
    inner: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Imports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imports").finish_non_exhaustive()
    }
}

impl Imports {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn ended(&self, id: &str, now_ms: i64) {
        self.with(|m| {
            if let Some(e) = m.get_mut(id) {
                e.ended_at_ms = Some(now_ms);
            }
        });
    }

    /// Start tracking the import of a request: with an `X-Import-Id` header, its progress can be
    /// read at `GET /imports/{id}`; without one the run tracks nothing. A malformed id is 422;
    /// an id already in use is 409.
    pub fn begin(
        self: &Arc<Self>,
        headers: &HeaderMap,
        caller: &Caller,
        what: &'static str,
        now_ms: i64,
    ) -> ApiResult<ImportRun> {
        let mut run = ImportRun {
            tracker: None,
            imports: self.clone(),
            id: String::new(),
            now_ms,
        };
        let Some(v) = headers.get(HEADER) else {
            return Ok(run);
        };
        let id = v.to_str().unwrap_or_default();
        if !(8..=64).contains(&id.len())
            || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(ApiError::validation(vec![RowError {
                row: None,
                field: "X-Import-Id".into(),
                message: "8 to 64 letters, digits or '-'".into(),
            }]));
        }
        let tracker = Arc::new(Tracker::default());
        self.with(|m| {
            m.retain(|_, e| e.ended_at_ms.is_none_or(|t| now_ms - t < KEEP_MS));
            if m.contains_key(id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "import_id_in_use",
                    "this X-Import-Id names another import; choose a new one",
                ));
            }
            m.insert(
                id.to_string(),
                Entry {
                    owner: caller.account.id.clone(),
                    what,
                    tracker: tracker.clone(),
                    ended_at_ms: None,
                },
            );
            Ok(())
        })?;
        run.tracker = Some(tracker);
        run.id = id.to_string();
        Ok(run)
    }
}

/// An import's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProgress {
    /// The client's import id.
    pub id: String,
    /// `enterprises` or `officers`.
    pub what: String,
    /// `reading`, `checking`, `writing`, `finished`, `rejected` (bad rows: nothing written) or
    /// `failed`.
    pub phase: String,
    /// Rows in the file.
    pub rows: usize,
    /// Rows written so far (of an uncommitted transaction until `finished`).
    pub written: usize,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(progress))
}

/// The progress of one of the caller's imports (named by its `X-Import-Id`): for the accounts
/// that may import a registry (`403` for the others); another account's import is a `404`.
#[utoipa::path(get, path = "/imports/{id}", tag = "enterprises", params(("id" = String, Path)),
    responses((status = 200, body = ImportProgress), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ImportProgress>> {
    if caller
        .require(crate::auth::roles::Perm::EnterpriseWrite)
        .is_err()
    {
        caller.require(crate::auth::roles::Perm::OfficerWrite)?;
    }
    state
        .imports
        .with(|m| {
            m.get(&id)
                .filter(|e| e.owner == caller.account.id)
                .map(|e| ImportProgress {
                    id: id.clone(),
                    what: e.what.to_string(),
                    phase: PHASES[usize::from(e.tracker.phase.load(Ordering::Relaxed)).min(5)]
                        .to_string(),
                    rows: e.tracker.rows.load(Ordering::Relaxed),
                    written: e.tracker.written.load(Ordering::Relaxed),
                })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found("import"))
}

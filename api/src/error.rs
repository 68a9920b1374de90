//! The one mapping from errors to HTTP answers: a stable JSON body `{code, message}` (plus
//! `errors: [{field, message}]` for validation failures) with the right status. The full error
//! chain of a server error is logged; the client sees only a generic message and the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shouhu_storage::enterprises::FieldError;
use shouhu_storage::StorageError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (names the field where one is at fault).
    pub message: String,
    /// Per-field or per-row problems.
    pub errors: Vec<RowError>,
    /// Extra JSON members of the body.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// For a 404 the handler knows to be a scope refusal: the kind and id of the hidden row
    /// (see [`ApiError::out_of_scope`]).
    /// (Boxed: an `ApiError` travels in every handler's `Result`.)
    pub hidden: Option<Box<(String, String)>>,
}

/// Response extension of every `not_found` answer: what was not found, and, when the handler
/// knows the row exists but lies outside the caller's scope, its id. The out-of-scope audit
/// middleware ([`crate::server`]) reads it and writes the `denied` row; the client sees only the
/// ordinary 404 body.
#[derive(Debug, Clone)]
pub struct NotFoundMark {
    /// The kind named in the message (`enterprise`, `case`, …).
    pub kind: String,
    /// The id of a row known to exist outside the caller's scope.
    pub hidden_id: Option<String>,
}

/// A problem with one field, optionally of one row of an import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RowError {
    /// 1-based data row of an import (header excluded), when the problem is in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// Field (API name).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl From<FieldError> for RowError {
    fn from(e: FieldError) -> Self {
        RowError {
            row: None,
            field: e.field,
            message: e.message,
        }
    }
}

/// The JSON error body (for the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `invalid_credentials`, `validation_failed`, `not_found`.
    pub code: String,
    /// Message.
    pub message: String,
    /// Field problems, when any.
    pub errors: Option<Vec<RowError>>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
            extra: Default::default(),
            hidden: None,
        }
    }

    /// 400 bad request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid session.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: the role does not grant the action.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 404 for a row that exists but lies outside the caller's scope: the same body as
    /// [`ApiError::not_found`] (nothing reveals the row exists); the response carries a
    /// [`NotFoundMark`] so the row is audited as `denied`.
    pub fn out_of_scope(what: &str, id: impl Into<String>) -> Self {
        let mut e = Self::not_found(what);
        e.hidden = Some(Box::new((what.to_string(), id.into())));
        e
    }

    /// 422 with field problems.
    pub fn validation(errors: Vec<RowError>) -> Self {
        let message = errors
            .iter()
            .map(|e| match e.row {
                Some(r) => format!("row {r}: {}: {}", e.field, e.message),
                None => format!("{}: {}", e.field, e.message),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            )
        }
    }

    /// Add an extra member to the body.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// 500, logging the cause.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; see the server log",
        )
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(what) => ApiError::not_found(what),
            StorageError::Duplicate { field } => {
                let mut err = ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate",
                    format!("{field}: already exists"),
                );
                err.errors.push(RowError {
                    row: None,
                    field,
                    message: "already exists".into(),
                });
                err
            }
            StorageError::VersionConflict => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
            }
            StorageError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StorageError::WrongState {
                kind, ref state, ..
            } => {
                let state = state.clone();
                ApiError::new(StatusCode::CONFLICT, "invalid_state", e.to_string())
                    .with("kind", kind.into())
                    .with("state", state.into())
            }
            StorageError::OverCap { visits, cap } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "over_cap", e.to_string())
                    .with("visits", visits.into())
                    .with("cap", cap.into());
                err.errors.push(RowError {
                    row: None,
                    field: "over_cap_reason".into(),
                    message: "required: the visit is over the yearly inspect-once cap".into(),
                });
                err
            }
            StorageError::Invalid { field, message } => ApiError::validation(vec![RowError {
                row: None,
                field,
                message,
            }]),
            other => {
                tracing::error!(error = ?other, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error; see the server log",
                )
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = ?e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(
                code = self.code,
                status = self.status.as_u16(),
                "request failed"
            );
        } else {
            tracing::debug!(code = self.code, status = self.status.as_u16(), message = %self.message, "request rejected");
        }
        let mark = (self.code == "not_found").then(|| match self.hidden.map(|h| *h) {
            Some((kind, id)) => NotFoundMark {
                kind,
                hidden_id: Some(id),
            },
            None => NotFoundMark {
                kind: self
                    .message
                    .strip_suffix(" not found")
                    .unwrap_or_default()
                    .to_string(),
                hidden_id: None,
            },
        });
        let mut body = serde_json::Map::new();
        body.insert("code".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        if !self.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(&self.errors).unwrap_or_default(),
            );
        }
        body.extend(self.extra);
        let mut resp = (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        if let Some(m) = mark {
            resp.extensions_mut().insert(m);
        }
        resp
    }
}

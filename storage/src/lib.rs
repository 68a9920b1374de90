//! Storage for Shouhu: one schema on two engines, the repositories of each domain area, and the
//! blob store.
//!
//! * [`Db`] opens SQLite (the embedded default, a file under the data directory, WAL mode) or
//!   PostgreSQL (production), chosen by the URL scheme, and applies the engine's append-only
//!   migrations (`migrations/sqlite`, `migrations/postgres`).
//! * Each domain area has a repository reached from [`Db`]: [`Db::org_units`], [`Db::accounts`],
//!   [`Db::sessions`], [`Db::audit`], [`Db::enterprises`], [`Db::officers`],
//!   [`Db::inspection_items`], [`Db::vehicles`], [`Db::positions`], [`Db::geofences`],
//!   [`Db::assignments`], [`Db::sos`], [`Db::recorders`], and the enforcement work:
//!   [`Db::rules`] (deadlines, inspect-once caps), [`Db::inspections`], [`Db::hazards`],
//!   [`Db::cases`] (sensitive fields sealed with SM4-GCM, [`crypto::FieldCipher`]),
//!   [`Db::work_orders`]. No SQL lives
//!   outside this crate.
//! * Every mutating repository call that changes business data takes an [`audit::AuditEntry`] and
//!   writes it in the same transaction, so a change and its audit row land together or not at all.
//! * Times are UTC milliseconds since the Unix epoch in every table (`*_at_ms`); ids are UUIDv7
//!   strings unless a standard fixes the id.
//! * [`model`] holds the small shared domain types (`Position`, unit kinds, the unit event sink)
//!   that `media` and `dispatch` both speak without depending on each other.
//!
//! This crate knows no HTTP, no sockets and no codecs.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod assignments;
pub mod audit;
pub mod audit_chain;
pub mod blob;
pub mod bulk;
pub mod case_files;
pub mod cases;
pub mod crypto;
mod db;
pub mod enforcement;
pub mod enterprises;
mod error;
pub mod evidence;
pub mod geofences;
pub mod hazards;
pub mod inspection_items;
pub mod inspections;
pub mod model;
pub mod officers;
pub mod org_units;
pub mod personal_data;
pub mod plans;
pub mod positions;
pub mod private_fs;
pub mod recorders;
pub mod recordings;
pub mod retention;
pub mod search;
pub mod sessions;
pub mod sip_nonces;
pub mod sos;
pub mod uscc;
pub mod vehicles;
pub mod work_orders;

pub use db::{Db, Engine, SqliteTuning};
pub use error::{StorageError, StorageResult};

/// A page of results with the total count of matching rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Total number of rows that match the filter.
    pub total: i64,
    /// 1-based page number.
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
}

/// Paging request, 1-based, bounded to [`PageRequest::MAX_PAGE_SIZE`] rows.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
}

impl PageRequest {
    /// Upper bound on rows per page.
    pub const MAX_PAGE_SIZE: i64 = 500;

    /// Clamp user input to a valid request (page ≥ 1, 1 ≤ size ≤ max; default size 20).
    pub fn new(page: Option<i64>, page_size: Option<i64>) -> Self {
        Self {
            page: page.unwrap_or(1).max(1),
            page_size: page_size.unwrap_or(20).clamp(1, Self::MAX_PAGE_SIZE),
        }
    }

    /// SQL `OFFSET` of this page.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }
}

/// A new UUIDv7 id as a lowercase hyphenated string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

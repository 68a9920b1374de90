//! Body-worn recorders (GB/T 28181 devices, 20-digit ids) and the officer each is bound to.

use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enterprises::FieldError;
use crate::org_units::Scope;
use crate::{Db, StorageError, StorageResult};

/// Recorder fields as entered.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecorderInput {
    /// GB/T 28181 device id (20 digits).
    pub device_id: String,
    /// Label, e.g. `执法记录仪 012`.
    pub name: String,
    /// Owning org unit.
    pub org_unit_id: String,
    /// The officer who wears it (none: the recorder is a unit of its own).
    #[serde(default)]
    pub officer_id: Option<String>,
    /// `active` or `inactive`.
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "active".into()
}

impl RecorderInput {
    /// Trim fields.
    pub fn normalize(&mut self) {
        self.device_id = self.device_id.trim().to_string();
        self.name = self.name.trim().to_string();
        self.org_unit_id = self.org_unit_id.trim().to_string();
        self.status = self.status.trim().to_string();
        if self
            .officer_id
            .as_deref()
            .map(str::trim)
            .is_some_and(str::is_empty)
        {
            self.officer_id = None;
        }
    }

    /// Field rules.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.device_id.len() != 20 || !self.device_id.bytes().all(|b| b.is_ascii_digit()) {
            e.push(FieldError {
                field: "device_id".into(),
                message: "20 digits (GB/T 28181 device id)".into(),
            });
        }
        let n = self.name.chars().count();
        if n == 0 || n > 50 {
            e.push(FieldError {
                field: "name".into(),
                message: "1–50 characters".into(),
            });
        }
        if self.org_unit_id.is_empty() {
            e.push(FieldError {
                field: "org_unit_id".into(),
                message: "must not be empty".into(),
            });
        }
        if !matches!(self.status.as_str(), "active" | "inactive") {
            e.push(FieldError {
                field: "status".into(),
                message: "must be active or inactive".into(),
            });
        }
        e
    }
}

/// A stored recorder.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Recorder {
    /// Device id.
    pub device_id: String,
    /// Label.
    pub name: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Bound officer.
    pub officer_id: Option<String>,
    /// `active` / `inactive`.
    pub status: String,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
    /// Optimistic-lock version.
    pub version: i64,
}

/// The recorder repository.
#[derive(Debug, Clone, Copy)]
pub struct RecorderRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Recorders.
    pub fn recorders(&self) -> RecorderRepo<'_> {
        RecorderRepo { db: self }
    }
}

const SELECT: &str = "SELECT r.device_id, r.name, r.org_unit_id, r.officer_id, r.status, r.created_at_ms, r.updated_at_ms, r.version FROM recorders r";

fn scope_cond(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Subtree(r) => format!(
            "r.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
            b.s(r.clone())
        ),
    }
}

impl RecorderRepo<'_> {
    /// Register a recorder.
    pub async fn insert(&self, i: &RecorderInput, audit: &AuditEntry) -> StorageResult<Recorder> {
        let a = audit
            .clone()
            .target("recorder", &i.device_id)
            .details(serde_json::to_value(i).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO recorders (device_id, name, org_unit_id, officer_id, status, created_at_ms, updated_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6, 1)")
                .bind(&i.device_id).bind(&i.name).bind(&i.org_unit_id).bind(&i.officer_id).bind(&i.status).bind(audit.at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(&Scope::All, &i.device_id).await
    }

    /// Change a recorder (name, org unit, binding, status) if still at `version`.
    pub async fn update(
        &self,
        scope: &Scope,
        version: i64,
        i: &RecorderInput,
        audit: &AuditEntry,
    ) -> StorageResult<Recorder> {
        self.get(scope, &i.device_id).await?;
        let a = audit
            .clone()
            .target("recorder", &i.device_id)
            .details(serde_json::to_value(i).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE recorders SET name = $3, org_unit_id = $4, officer_id = $5, status = $6, updated_at_ms = $7, \
                                 version = version + 1 WHERE device_id = $1 AND version = $2")
                .bind(&i.device_id).bind(version).bind(&i.name).bind(&i.org_unit_id).bind(&i.officer_id).bind(&i.status)
                .bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, &i.device_id).await
    }

    /// One recorder visible in `scope`.
    pub async fn get(&self, scope: &Scope, device_id: &str) -> StorageResult<Recorder> {
        let mut b = SqlBuilder::default();
        let idp = b.s(device_id);
        let cond = scope_cond(scope, &mut b);
        let sql = format!("{SELECT} WHERE r.device_id = {idp} AND {cond}");
        with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, Recorder>(&sql), b.args).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("recorder")))
    }

    /// Every recorder visible in `scope`, by device id.
    pub async fn list(&self, scope: &Scope) -> StorageResult<Vec<Recorder>> {
        let mut b = SqlBuilder::default();
        let cond = scope_cond(scope, &mut b);
        let sql = format!("{SELECT} WHERE {cond} ORDER BY r.device_id");
        with_pool!(self.db, p => Ok(bind_args!(sqlx::query_as::<_, Recorder>(&sql), b.args).fetch_all(p).await?))
    }
}

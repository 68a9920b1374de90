//! Dispatch assignments: a unit sent to an enterprise or a point, its arrival, its release.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::audit::{insert_audit, AuditEntry};
use crate::db::with_pool;
use crate::{Db, StorageError, StorageResult};

/// A stored assignment.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Assignment {
    /// Id.
    pub id: String,
    /// The unit sent.
    pub unit_id: String,
    /// Target enterprise, if the target is one.
    pub enterprise_id: Option<String>,
    /// Target name.
    pub target_name: String,
    /// Target latitude (WGS-84).
    pub target_lat: f64,
    /// Target longitude (WGS-84).
    pub target_lon: f64,
    /// Arrival radius, metres (used when the enterprise has no drawn fence).
    pub radius_m: f64,
    /// `assigned`, `on_scene`, `cleared`.
    pub status: String,
    /// Who sent it.
    pub assigned_by: String,
    /// When, ms.
    pub assigned_at_ms: i64,
    /// When it arrived, ms.
    pub arrived_at_ms: Option<i64>,
    /// Who released it.
    pub cleared_by: Option<String>,
    /// When, ms.
    pub cleared_at_ms: Option<i64>,
}

/// The assignment repository.
#[derive(Debug, Clone, Copy)]
pub struct AssignmentRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Dispatch assignments.
    pub fn assignments(&self) -> AssignmentRepo<'_> {
        AssignmentRepo { db: self }
    }
}

const SELECT: &str = "SELECT id, unit_id, enterprise_id, target_name, target_lat, target_lon, radius_m, status, assigned_by, \
    assigned_at_ms, arrived_at_ms, cleared_by, cleared_at_ms FROM dispatch_assignments";

impl AssignmentRepo<'_> {
    /// Open a new assignment (`a.id` set by the caller). Fails with a conflict when the unit
    /// already has an open one.
    pub async fn assign(&self, a: &Assignment, audit: &AuditEntry) -> StorageResult<()> {
        let au = audit
            .clone()
            .target("unit", &a.unit_id)
            .details(serde_json::json!({
            "assignment_id": a.id, "enterprise_id": a.enterprise_id, "target": a.target_name,
            "lat": a.target_lat, "lon": a.target_lon}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dispatch_assignments WHERE unit_id = $1 AND status <> 'cleared'")
                .bind(&a.unit_id).fetch_one(&mut *tx).await?;
            if open > 0 {
                return Err(StorageError::Conflict("the unit already has an open assignment; clear it first".into()));
            }
            sqlx::query("INSERT INTO dispatch_assignments (id, unit_id, enterprise_id, target_name, target_lat, target_lon, radius_m, status, \
                         assigned_by, assigned_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'assigned', $8, $9)")
                .bind(&a.id).bind(&a.unit_id).bind(&a.enterprise_id).bind(&a.target_name).bind(a.target_lat).bind(a.target_lon)
                .bind(a.radius_m).bind(&a.assigned_by).bind(a.assigned_at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &au)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The open assignment of a unit.
    pub async fn open_of(&self, unit_id: &str) -> StorageResult<Option<Assignment>> {
        let sql = format!("{SELECT} WHERE unit_id = $1 AND status <> 'cleared' ORDER BY assigned_at_ms DESC LIMIT 1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Assignment>(&sql).bind(unit_id).fetch_optional(p).await?))
    }

    /// Every open assignment (to restore live dispatch state after a restart).
    pub async fn open(&self) -> StorageResult<Vec<Assignment>> {
        let sql = format!("{SELECT} WHERE status <> 'cleared' ORDER BY assigned_at_ms");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Assignment>(&sql).fetch_all(p).await?))
    }

    /// Mark the open assignment of a unit as arrived (by a person through the API, or by the
    /// geofence). Returns false when there is none or it already arrived.
    pub async fn arrive(&self, unit_id: &str, audit: &AuditEntry) -> StorageResult<bool> {
        let au = audit.clone().target("unit", unit_id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE dispatch_assignments SET status = 'on_scene', arrived_at_ms = $2 WHERE unit_id = $1 AND status = 'assigned'")
                .bind(unit_id).bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Ok(false); }
            insert_audit!(&mut *tx, &au)?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Release the unit from its open assignment. Returns false when it had none.
    pub async fn clear(&self, unit_id: &str, by: &str, audit: &AuditEntry) -> StorageResult<bool> {
        let au = audit.clone().target("unit", unit_id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE dispatch_assignments SET status = 'cleared', cleared_by = $2, cleared_at_ms = $3 \
                                 WHERE unit_id = $1 AND status <> 'cleared'")
                .bind(unit_id).bind(by).bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Ok(false); }
            insert_audit!(&mut *tx, &au)?;
            tx.commit().await?;
        });
        Ok(true)
    }
}

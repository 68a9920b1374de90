//! Geofences: district polygons, enterprise boundaries or radii, and custom areas.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::with_pool;
use crate::{Db, StorageError, StorageResult};

/// A stored geofence. `geometry` is GeoJSON (Polygon or MultiPolygon, WGS-84) text; a circle
/// has `center_lat`, `center_lon` and `radius_m` instead.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Geofence {
    /// Id.
    pub id: String,
    /// Name shown on the map and in events.
    pub name: String,
    /// `district`, `enterprise` or `custom`.
    pub kind: String,
    /// Owning org unit (the district for district fences).
    pub org_unit_id: String,
    /// The enterprise of an enterprise fence.
    pub enterprise_id: Option<String>,
    /// GeoJSON geometry text.
    pub geometry: Option<String>,
    /// Circle centre latitude.
    pub center_lat: Option<f64>,
    /// Circle centre longitude.
    pub center_lon: Option<f64>,
    /// Circle radius, metres.
    pub radius_m: Option<f64>,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
}

/// The geofence repository.
#[derive(Debug, Clone, Copy)]
pub struct GeofenceRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Geofences.
    pub fn geofences(&self) -> GeofenceRepo<'_> {
        GeofenceRepo { db: self }
    }
}

const SELECT: &str = "SELECT id, name, kind, org_unit_id, enterprise_id, geometry, center_lat, center_lon, radius_m, \
    created_at_ms, updated_at_ms FROM geofences";

impl GeofenceRepo<'_> {
    /// Every geofence, by kind and name.
    pub async fn list(&self) -> StorageResult<Vec<Geofence>> {
        let sql = format!("{SELECT} ORDER BY kind, name, id");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Geofence>(&sql).fetch_all(p).await?))
    }

    /// One geofence.
    pub async fn get(&self, id: &str) -> StorageResult<Geofence> {
        let sql = format!("{SELECT} WHERE id = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, Geofence>(&sql).bind(id).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("geofence")))
    }

    /// The explicit fence of an enterprise, if one was drawn.
    pub async fn of_enterprise(&self, enterprise_id: &str) -> StorageResult<Option<Geofence>> {
        let sql = format!("{SELECT} WHERE enterprise_id = $1 ORDER BY updated_at_ms DESC LIMIT 1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Geofence>(&sql).bind(enterprise_id).fetch_optional(p).await?))
    }

    /// Insert a geofence (the caller has validated the geometry). `g.id` is assigned here.
    pub async fn insert(&self, g: &Geofence, audit: &AuditEntry) -> StorageResult<Geofence> {
        let id = crate::new_id();
        let a = audit
            .clone()
            .target("geofence", &id)
            .details(serde_json::json!({"name": g.name, "kind": g.kind}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO geofences (id, name, kind, org_unit_id, enterprise_id, geometry, center_lat, center_lon, radius_m, \
                         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)")
                .bind(&id).bind(&g.name).bind(&g.kind).bind(&g.org_unit_id).bind(&g.enterprise_id).bind(&g.geometry)
                .bind(g.center_lat).bind(g.center_lon).bind(g.radius_m).bind(audit.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(&id).await
    }

    /// Delete a geofence.
    pub async fn delete(&self, id: &str, audit: &AuditEntry) -> StorageResult<()> {
        let g = self.get(id).await?;
        let a = audit
            .clone()
            .target("geofence", id)
            .details(serde_json::json!({"name": g.name, "kind": g.kind}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM geofences WHERE id = $1").bind(id).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }
}

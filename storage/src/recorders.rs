//! Body-worn recorders (GB/T 28181 devices, 20-digit ids) and the officer each is bound to.

use crate::db::BeginWrite;
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
    /// Model, e.g. `DSJ-V9`.
    #[serde(default)]
    pub model: Option<String>,
    /// Video channels (default 1).
    #[serde(default = "default_channels")]
    pub channels: i64,
    /// SIP password (8–32 characters). Write-only: absent keeps the current one, an empty
    /// string clears it (the shared `sip.password` then applies).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

fn default_channels() -> i64 {
    1
}

/// A password change as digest HA1 values (the `api` computes them for the configured realm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipSecretChange {
    /// Keep what is stored.
    Keep,
    /// Remove the device's own password.
    Clear,
    /// Store these.
    Set {
        /// Realm the HA1 values were computed for.
        realm: String,
        /// MD5 HA1.
        md5: String,
        /// SHA-256 HA1.
        sha256: String,
    },
}

/// A recorder's stored SIP secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SipSecret {
    /// Device id.
    pub device_id: String,
    /// Realm the HA1 values belong to.
    pub sip_realm: Option<String>,
    /// MD5 HA1.
    pub sip_ha1_md5: Option<String>,
    /// SHA-256 HA1.
    pub sip_ha1_sha256: Option<String>,
    /// `active` / `inactive`.
    pub status: String,
}

/// One catalog channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Channel {
    /// Channel id (20 digits).
    pub channel_id: String,
    /// Name as the device reports it.
    pub name: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// `ON` / `OFF`.
    pub status: Option<String>,
    /// When the catalog was last read, ms.
    pub updated_at_ms: i64,
}

/// One period an officer wore a recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Binding {
    /// Officer.
    pub officer_id: String,
    /// From, ms.
    pub bound_at_ms: i64,
    /// Until, ms (none: still bound).
    pub unbound_at_ms: Option<i64>,
    /// Account that bound it.
    pub bound_by: Option<String>,
}

/// What a device reported about itself on registration, for the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessReport {
    /// `UDP` / `TCP`, when registered.
    pub transport: Option<String>,
    /// Remote address, when registered.
    pub remote_addr: Option<String>,
    /// Registration time, ms.
    pub registered_at_ms: Option<i64>,
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
        self.model = self
            .model
            .take()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
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
        if !(1..=64).contains(&self.channels) {
            e.push(FieldError {
                field: "channels".into(),
                message: "1–64".into(),
            });
        }
        if self
            .model
            .as_deref()
            .is_some_and(|m| m.chars().count() > 50)
        {
            e.push(FieldError {
                field: "model".into(),
                message: "at most 50 characters".into(),
            });
        }
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            let n = p.chars().count();
            if !(8..=32).contains(&n) || p.chars().any(|c| c.is_control()) {
                e.push(FieldError {
                    field: "password".into(),
                    message: "8–32 printable characters".into(),
                });
            }
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
    /// Model.
    pub model: Option<String>,
    /// Video channels.
    pub channels: i64,
    /// Whether the device has its own SIP password (else the shared one applies).
    pub has_password: bool,
    /// Manufacturer as the device reported it.
    pub manufacturer: Option<String>,
    /// Firmware as the device reported it.
    pub firmware: Option<String>,
    /// Transport of the last registration.
    pub transport: Option<String>,
    /// Remote address of the last registration.
    pub remote_addr: Option<String>,
    /// Last registration, ms.
    pub registered_at_ms: Option<i64>,
    /// Last heard, ms (updated on registration and link changes).
    pub last_seen_at_ms: Option<i64>,
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

const SELECT: &str = "SELECT r.device_id, r.name, r.org_unit_id, r.officer_id, r.status, r.created_at_ms, r.updated_at_ms, r.version, \
    r.model, r.channels, (r.sip_ha1_md5 IS NOT NULL) AS has_password, r.manufacturer, r.firmware, r.transport, r.remote_addr, \
    r.registered_at_ms, r.last_seen_at_ms FROM recorders r";

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
    pub async fn insert(
        &self,
        i: &RecorderInput,
        secret: &SipSecretChange,
        audit: &AuditEntry,
    ) -> StorageResult<Recorder> {
        let a = audit
            .clone()
            .target("recorder", &i.device_id)
            .details(audit_details(i, secret));
        let (realm, md5, sha) = secret_columns(secret);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO recorders (device_id, name, org_unit_id, officer_id, status, created_at_ms, updated_at_ms, version, \
                         model, channels, sip_realm, sip_ha1_md5, sip_ha1_sha256) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7, $8, $9, $10, $11)")
                .bind(&i.device_id).bind(&i.name).bind(&i.org_unit_id).bind(&i.officer_id).bind(&i.status).bind(audit.at_ms)
                .bind(&i.model).bind(i.channels).bind(realm).bind(md5).bind(sha)
                .execute(&mut *tx).await?;
            if let Some(officer) = &i.officer_id {
                sqlx::query("INSERT INTO recorder_bindings (id, device_id, officer_id, bound_at_ms, unbound_at_ms, bound_by) VALUES ($1, $2, $3, $4, NULL, $5)")
                    .bind(crate::new_id()).bind(&i.device_id).bind(officer).bind(audit.at_ms).bind(audit.actor.account_id.as_deref())
                    .execute(&mut *tx).await?;
            }
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
        secret: &SipSecretChange,
        audit: &AuditEntry,
    ) -> StorageResult<Recorder> {
        let before = self.get(scope, &i.device_id).await?;
        let a = audit
            .clone()
            .target("recorder", &i.device_id)
            .details(audit_details(i, secret));
        let keep = matches!(secret, SipSecretChange::Keep);
        let (realm, md5, sha) = secret_columns(secret);
        let rebind = before.officer_id != i.officer_id;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE recorders SET name = $3, org_unit_id = $4, officer_id = $5, status = $6, updated_at_ms = $7, \
                                 version = version + 1, model = $8, channels = $9, \
                                 sip_realm = CASE WHEN $10 THEN sip_realm ELSE $11 END, \
                                 sip_ha1_md5 = CASE WHEN $10 THEN sip_ha1_md5 ELSE $12 END, \
                                 sip_ha1_sha256 = CASE WHEN $10 THEN sip_ha1_sha256 ELSE $13 END \
                                 WHERE device_id = $1 AND version = $2")
                .bind(&i.device_id).bind(version).bind(&i.name).bind(&i.org_unit_id).bind(&i.officer_id).bind(&i.status)
                .bind(audit.at_ms).bind(&i.model).bind(i.channels).bind(keep).bind(realm).bind(md5).bind(sha)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            if rebind {
                sqlx::query("UPDATE recorder_bindings SET unbound_at_ms = $2 WHERE device_id = $1 AND unbound_at_ms IS NULL")
                    .bind(&i.device_id).bind(audit.at_ms).execute(&mut *tx).await?;
                if let Some(officer) = &i.officer_id {
                    // The officer's previous recorder (if any) lost them by the unique constraint check above.
                    sqlx::query("INSERT INTO recorder_bindings (id, device_id, officer_id, bound_at_ms, unbound_at_ms, bound_by) VALUES ($1, $2, $3, $4, NULL, $5)")
                        .bind(crate::new_id()).bind(&i.device_id).bind(officer).bind(audit.at_ms).bind(audit.actor.account_id.as_deref())
                        .execute(&mut *tx).await?;
                }
            }
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

fn secret_columns(s: &SipSecretChange) -> (Option<&str>, Option<&str>, Option<&str>) {
    match s {
        SipSecretChange::Set { realm, md5, sha256 } => (Some(realm), Some(md5), Some(sha256)),
        _ => (None, None, None),
    }
}

fn audit_details(i: &RecorderInput, s: &SipSecretChange) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        let what = match s {
            SipSecretChange::Keep => "kept",
            SipSecretChange::Clear => "cleared",
            SipSecretChange::Set { .. } => "changed",
        };
        o.insert("password".into(), serde_json::Value::from(what));
    }
    v
}

impl RecorderRepo<'_> {
    /// Every recorder's SIP secret (for the SIP server's registry).
    pub async fn secrets(&self) -> StorageResult<Vec<SipSecret>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, SipSecret>(
            "SELECT device_id, sip_realm, sip_ha1_md5, sip_ha1_sha256, status FROM recorders ORDER BY device_id").fetch_all(p).await?))
    }

    /// One recorder's SIP secret.
    pub async fn secret(&self, device_id: &str) -> StorageResult<Option<SipSecret>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, SipSecret>(
            "SELECT device_id, sip_realm, sip_ha1_md5, sip_ha1_sha256, status FROM recorders WHERE device_id = $1")
            .bind(device_id).fetch_optional(p).await?))
    }

    /// Record a registration, a link change or an unregistration (`report.transport` none).
    pub async fn record_access(
        &self,
        device_id: &str,
        report: &AccessReport,
        at_ms: i64,
    ) -> StorageResult<()> {
        with_pool!(self.db, p => {
            sqlx::query("UPDATE recorders SET transport = COALESCE($2, transport), remote_addr = COALESCE($3, remote_addr), \
                         registered_at_ms = COALESCE($4, registered_at_ms), last_seen_at_ms = $5 WHERE device_id = $1")
                .bind(device_id).bind(&report.transport).bind(&report.remote_addr).bind(report.registered_at_ms).bind(at_ms)
                .execute(p).await?;
        });
        Ok(())
    }

    /// Record what `DeviceInfo` answered.
    pub async fn record_info(
        &self,
        device_id: &str,
        manufacturer: Option<&str>,
        model: Option<&str>,
        firmware: Option<&str>,
    ) -> StorageResult<()> {
        with_pool!(self.db, p => {
            sqlx::query("UPDATE recorders SET manufacturer = COALESCE($2, manufacturer), model = COALESCE(model, $3), \
                         firmware = COALESCE($4, firmware) WHERE device_id = $1")
                .bind(device_id).bind(manufacturer).bind(model).bind(firmware).execute(p).await?;
        });
        Ok(())
    }

    /// Replace a recorder's catalog channels in one transaction.
    pub async fn replace_channels(
        &self,
        device_id: &str,
        channels: &[Channel],
        at_ms: i64,
    ) -> StorageResult<()> {
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM recorder_channels WHERE device_id = $1").bind(device_id).execute(&mut *tx).await?;
            for c in channels {
                sqlx::query("INSERT INTO recorder_channels (device_id, channel_id, name, manufacturer, model, status, updated_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(device_id).bind(&c.channel_id).bind(&c.name).bind(&c.manufacturer).bind(&c.model).bind(&c.status).bind(at_ms)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A recorder's catalog channels.
    pub async fn channels(&self, device_id: &str) -> StorageResult<Vec<Channel>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Channel>(
            "SELECT channel_id, name, manufacturer, model, status, updated_at_ms FROM recorder_channels WHERE device_id = $1 ORDER BY channel_id")
            .bind(device_id).fetch_all(p).await?))
    }

    /// Who wore a recorder, newest first.
    pub async fn bindings(&self, device_id: &str) -> StorageResult<Vec<Binding>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Binding>(
            "SELECT officer_id, bound_at_ms, unbound_at_ms, bound_by FROM recorder_bindings WHERE device_id = $1 ORDER BY bound_at_ms DESC, id DESC")
            .bind(device_id).fetch_all(p).await?))
    }
}

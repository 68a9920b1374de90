//! Enforcement vehicles and their JT/T 808 terminals.
//!
//! A terminal is known by the phone number in its message header. The number is stored without
//! leading zeros ([`normalize_phone`]) so that the 12-digit BCD form of JT/T 808-2013 and the
//! 20-digit form of 2019 name the same terminal.
//!
//! A terminal is bound to its vehicle by its first registration (0x0100), which issues the auth
//! code. A registration for a vehicle whose terminal already holds a code is refused (JT/T 808
//! 0x8100 result 3, "terminal already registered") and recorded on the vehicle, unless a device
//! manager released the vehicle for re-binding ([`VehicleRepo::release_rebind`]). A release
//! names ONE refused attempt the manager approved (the terminal id it gave and the source IP it
//! came from): within the window only a registration with that terminal id from that IP gets a
//! new code (and the old one stops working); any other is refused and recorded like before.
//! Refused attempts are kept per (vehicle, terminal id, source IP) — the latest
//! [`MAX_ATTEMPTS_PER_VEHICLE`] per vehicle, with first and last seen and a count — listed for
//! operators ([`VehicleRepo::pending_rebinds`]) and audited at most once a minute per vehicle.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enterprises::FieldError;
use crate::org_units::Scope;
use crate::{Db, StorageError, StorageResult};

/// The terminal phone number without leading zeros (an all-zero number stays `"0"`).
pub fn normalize_phone(phone: &str) -> String {
    let t = phone.trim().trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// Vehicle fields as entered.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VehicleInput {
    /// Plate number, e.g. `沪A·E1234`.
    pub plate: String,
    /// Owning org unit.
    pub org_unit_id: String,
    /// JT/T 808 terminal phone number (digits).
    #[serde(default)]
    pub terminal_phone: Option<String>,
    /// `active` or `inactive`.
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "active".into()
}

impl VehicleInput {
    /// Trim and normalise.
    pub fn normalize(&mut self) {
        self.plate = self.plate.trim().to_string();
        self.org_unit_id = self.org_unit_id.trim().to_string();
        self.status = self.status.trim().to_string();
        self.terminal_phone = self
            .terminal_phone
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(normalize_phone);
    }

    /// Field rules.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        let n = self.plate.chars().count();
        if n == 0 || n > 16 {
            e.push(FieldError {
                field: "plate".into(),
                message: "1–16 characters".into(),
            });
        }
        if self.org_unit_id.is_empty() {
            e.push(FieldError {
                field: "org_unit_id".into(),
                message: "must not be empty".into(),
            });
        }
        if let Some(p) = &self.terminal_phone {
            if p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                e.push(FieldError {
                    field: "terminal_phone".into(),
                    message: "up to 20 digits".into(),
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

/// A stored vehicle.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Vehicle {
    /// Id (also its dispatch unit id).
    pub id: String,
    /// Plate.
    pub plate: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Terminal phone (normalised). Shown only to roles that manage devices; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_phone: Option<String>,
    /// Terminal id from its registration.
    pub terminal_id: Option<String>,
    /// Terminal model from its registration.
    pub terminal_model: Option<String>,
    /// Manufacturer id from its registration.
    pub manufacturer: Option<String>,
    /// When the terminal last registered, ms.
    pub registered_at_ms: Option<i64>,
    /// `active` / `inactive`.
    pub status: String,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
    /// Optimistic-lock version.
    pub version: i64,
}

/// What a terminal says about itself when it registers (0x0100).
#[derive(Debug, Clone, Default)]
pub struct TerminalRegistration {
    /// Manufacturer id.
    pub manufacturer: String,
    /// Terminal model.
    pub model: String,
    /// Terminal id.
    pub terminal_id: String,
    /// Plate as the terminal reports it (may be empty).
    pub plate: String,
}

/// Result of a registration attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Registered; the terminal must authenticate with this code.
    Registered {
        /// The vehicle (unit) id.
        vehicle_id: String,
        /// Auth code to hand to the terminal.
        auth_code: String,
    },
    /// No vehicle has this terminal and registration is closed.
    UnknownTerminal,
    /// The vehicle's terminal already holds an auth code and no operator released it for
    /// re-binding (0x8100 result 3). The attempt is recorded on the vehicle.
    AlreadyRegistered {
        /// The vehicle.
        vehicle_id: String,
        /// Whether this attempt was written to the audit log (at most once a minute).
        audited: bool,
    },
    /// The vehicle is disabled.
    Inactive,
}

/// How long a refused registration attempt keeps the audit log quiet for its terminal.
pub const REGISTER_AUDIT_INTERVAL_MS: i64 = 60_000;

/// Refused attempts kept per vehicle (the latest by last attempt); older ones are forgotten.
pub const MAX_ATTEMPTS_PER_VEHICLE: i64 = 20;

/// One refused registration: a terminal id from a source IP, for one vehicle.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RegisterAttempt {
    /// Attempt id (name it to release the vehicle for this terminal).
    pub id: String,
    /// The terminal id it gave.
    pub terminal_id: String,
    /// Its source IP (no port).
    pub source_ip: String,
    /// The last attempt's source address (`ip:port`).
    pub addr: String,
    /// The model it gave (last attempt).
    pub model: String,
    /// The manufacturer it gave (last attempt).
    pub manufacturer: String,
    /// First attempt, ms.
    pub first_at_ms: i64,
    /// Last attempt, ms.
    pub last_at_ms: i64,
    /// How many attempts.
    pub count: i64,
}

/// The attempt a release approved: only a registration with this terminal id from this IP
/// gets the new code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovedTerminal {
    /// Terminal id.
    pub terminal_id: String,
    /// Source IP (no port).
    pub source_ip: String,
}

/// A vehicle whose terminal tried to register again, or that an operator released for
/// re-binding: the operator's list of pending re-registrations.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingRebind {
    /// The vehicle.
    pub vehicle_id: String,
    /// Its plate.
    pub plate: String,
    /// Its org unit.
    pub org_unit_id: String,
    /// The terminal phone (normalised).
    pub terminal_phone: Option<String>,
    /// The bound terminal's id (from its registration).
    pub terminal_id: Option<String>,
    /// When the bound terminal registered, ms.
    pub registered_at_ms: Option<i64>,
    /// The latest refused registration, ms.
    pub attempt_at_ms: Option<i64>,
    /// Its source address (`ip:port`).
    pub attempt_addr: Option<String>,
    /// The terminal id it gave.
    pub attempt_terminal_id: Option<String>,
    /// The model it gave.
    pub attempt_model: Option<String>,
    /// The manufacturer it gave.
    pub attempt_manufacturer: Option<String>,
    /// Refused attempts kept (sum of the counts in `recent_attempts`).
    pub attempts: i64,
    /// Released for one re-registration until this time, ms (`None`: not released).
    pub released_until_ms: Option<i64>,
    /// The attempt the release approved (`None`: not released).
    pub released_for: Option<ApprovedTerminal>,
    /// Refused attempts, one per (terminal id, source IP), the latest first.
    pub recent_attempts: Vec<RegisterAttempt>,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    vehicle_id: String,
    plate: String,
    org_unit_id: String,
    terminal_phone: Option<String>,
    terminal_id: Option<String>,
    registered_at_ms: Option<i64>,
    rebind_until_ms: Option<i64>,
    rebind_terminal_id: Option<String>,
    rebind_source_ip: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    vehicle_id: String,
    #[sqlx(flatten)]
    a: RegisterAttempt,
}

/// Which attempt a release approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebindTarget {
    /// A recorded attempt of this vehicle, by id.
    Attempt(String),
    /// A terminal id and source IP (recorded or not).
    Terminal(ApprovedTerminal),
}

/// The source IP of `from` (`ip:port`, or a bare IP), IPv4-mapped IPv6 as IPv4.
pub fn source_ip_of(from: &str) -> String {
    let ip = from
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| from.parse::<std::net::IpAddr>());
    match ip {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => from.to_string(),
    }
}

const SELECT_PENDING: &str =
    "SELECT v.id AS vehicle_id, v.plate, v.org_unit_id, v.terminal_phone, v.terminal_id, \
    v.registered_at_ms, v.rebind_until_ms, v.rebind_terminal_id, v.rebind_source_ip FROM vehicles v";

const SELECT_ATTEMPTS: &str = "SELECT a.vehicle_id, a.id, a.terminal_id, a.source_ip, a.last_addr AS addr, a.model, \
    a.manufacturer, a.first_at_ms, a.last_at_ms, a.attempts AS count FROM terminal_register_attempts a";

/// The vehicle repository.
#[derive(Debug, Clone, Copy)]
pub struct VehicleRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Vehicles and their terminals.
    pub fn vehicles(&self) -> VehicleRepo<'_> {
        VehicleRepo { db: self }
    }
}

const SELECT: &str = "SELECT v.id, v.plate, v.org_unit_id, v.terminal_phone, v.terminal_id, v.terminal_model, v.manufacturer, \
    v.registered_at_ms, v.status, v.created_at_ms, v.updated_at_ms, v.version FROM vehicles v";

fn scope_cond(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Subtree(r) => format!(
            "v.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
            b.s(r.clone())
        ),
    }
}

impl VehicleRepo<'_> {
    /// Insert a vehicle.
    pub async fn insert(&self, i: &VehicleInput, audit: &AuditEntry) -> StorageResult<Vehicle> {
        let id = crate::new_id();
        let a = audit
            .clone()
            .target("vehicle", &id)
            .details(serde_json::json!({"plate": i.plate, "terminal_phone": i.terminal_phone}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO vehicles (id, plate, org_unit_id, terminal_phone, status, created_at_ms, updated_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6, 1)")
                .bind(&id).bind(&i.plate).bind(&i.org_unit_id).bind(&i.terminal_phone).bind(&i.status).bind(audit.at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(&Scope::All, &id).await
    }

    /// Update a vehicle if still at `version`. Changing the terminal drops its auth code (the new
    /// terminal registers as a first registration) and its pending re-registration.
    pub async fn update(
        &self,
        scope: &Scope,
        id: &str,
        version: i64,
        i: &VehicleInput,
        audit: &AuditEntry,
    ) -> StorageResult<Vehicle> {
        let old = self.get(scope, id).await?;
        let a = audit
            .clone()
            .target("vehicle", id)
            .details(serde_json::to_value(i).unwrap_or_default());
        let keep_code = old.terminal_phone == i.terminal_phone;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE vehicles SET plate = $3, org_unit_id = $4, terminal_phone = $5, status = $6, \
                                 auth_code = CASE WHEN $7 THEN auth_code ELSE NULL END, \
                                 rebind_until_ms = CASE WHEN $7 THEN rebind_until_ms ELSE NULL END, \
                                 rebind_terminal_id = CASE WHEN $7 THEN rebind_terminal_id ELSE NULL END, \
                                 rebind_source_ip = CASE WHEN $7 THEN rebind_source_ip ELSE NULL END, \
                                 reregister_at_ms = CASE WHEN $7 THEN reregister_at_ms ELSE NULL END, \
                                 reregister_count = CASE WHEN $7 THEN reregister_count ELSE 0 END, \
                                 updated_at_ms = $8, version = version + 1 \
                                 WHERE id = $1 AND version = $2")
                .bind(id).bind(version).bind(&i.plate).bind(&i.org_unit_id).bind(&i.terminal_phone).bind(&i.status)
                .bind(keep_code).bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            if !keep_code {
                sqlx::query("DELETE FROM terminal_register_attempts WHERE vehicle_id = $1").bind(id).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Delete a vehicle (its position history stays until retention removes it).
    pub async fn delete(&self, scope: &Scope, id: &str, audit: &AuditEntry) -> StorageResult<()> {
        let v = self.get(scope, id).await?;
        let a = audit
            .clone()
            .target("vehicle", id)
            .details(serde_json::json!({"plate": v.plate}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM terminal_register_attempts WHERE vehicle_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM vehicles WHERE id = $1").bind(id).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// One vehicle visible in `scope`.
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Vehicle> {
        let mut b = SqlBuilder::default();
        let idp = b.s(id);
        let cond = scope_cond(scope, &mut b);
        let sql = format!("{SELECT} WHERE v.id = {idp} AND {cond}");
        with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, Vehicle>(&sql), b.args).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("vehicle")))
    }

    /// Every vehicle visible in `scope`, by plate.
    pub async fn list(&self, scope: &Scope) -> StorageResult<Vec<Vehicle>> {
        let mut b = SqlBuilder::default();
        let cond = scope_cond(scope, &mut b);
        let sql = format!("{SELECT} WHERE {cond} ORDER BY v.plate, v.id");
        with_pool!(self.db, p => Ok(bind_args!(sqlx::query_as::<_, Vehicle>(&sql), b.args).fetch_all(p).await?))
    }

    /// The vehicle of a terminal phone number (any form).
    pub async fn by_terminal(&self, phone: &str) -> StorageResult<Option<Vehicle>> {
        let sql = format!("{SELECT} WHERE v.terminal_phone = $1");
        let phone = normalize_phone(phone);
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Vehicle>(&sql).bind(phone).fetch_optional(p).await?))
    }

    /// Register a terminal (0x0100) that connected from `from` (`ip:port`, for the record).
    ///
    /// A known terminal without an auth code (never registered, or its number changed) gets
    /// `new_auth_code`; so does one an operator released for re-binding within the window (the
    /// release is used up, the old code stops working). A known terminal that already holds a
    /// code is refused with [`RegisterOutcome::AlreadyRegistered`] and the attempt is recorded
    /// on the vehicle. An unknown terminal is refused unless `open_org_unit` names the org unit
    /// new vehicles go to (open registration), in which case a vehicle is created for it.
    pub async fn register_terminal(
        &self,
        phone: &str,
        reg: &TerminalRegistration,
        open_org_unit: Option<&str>,
        new_auth_code: &str,
        from: &str,
        at_ms: i64,
    ) -> StorageResult<RegisterOutcome> {
        let phone = normalize_phone(phone);
        let existing = self.by_terminal(&phone).await?;
        let actor = crate::audit::Actor {
            username: Some(format!("jt808:{phone}")),
            ip: Some(from.to_string()),
            ..Default::default()
        };
        match existing {
            Some(v) if v.status != "active" => Ok(RegisterOutcome::Inactive),
            Some(v) => {
                let source_ip = source_ip_of(from);
                type Row = (
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                );
                let (code, released_until, audited_at, ok_tid, ok_ip): Row = with_pool!(self.db, p => sqlx::query_as(
                    "SELECT auth_code, rebind_until_ms, reregister_audited_at_ms, rebind_terminal_id, rebind_source_ip \
                     FROM vehicles WHERE id = $1")
                    .bind(&v.id).fetch_one(p).await?);
                let bound = code.is_some_and(|c| !c.is_empty());
                // A release lets through only the attempt the operator approved: its terminal id
                // from its source IP, within the window.
                let released = released_until.is_some_and(|u| u >= at_ms)
                    && ok_tid.as_deref() == Some(reg.terminal_id.as_str())
                    && ok_ip.as_deref() == Some(source_ip.as_str());
                if bound && !released {
                    return self
                        .refuse_registration(
                            &v.id, reg, from, &source_ip, audited_at, &actor, at_ms,
                        )
                        .await;
                }
                let action = if bound {
                    "vehicle.terminal_rebind"
                } else {
                    "vehicle.terminal_register"
                };
                let a = AuditEntry::new(&actor, action, at_ms)
                    .target("vehicle", &v.id)
                    .details(
                        serde_json::json!({"terminal_id": reg.terminal_id, "model": reg.model,
                        "manufacturer": reg.manufacturer, "from": from, "source_ip": source_ip,
                        "previous_terminal_id": v.terminal_id}),
                    );
                // Guarded: only while still unbound, or still released for exactly this terminal
                // id from this IP (two registrations racing for one release: the second is
                // refused).
                let n = with_pool!(self.db, p => {
                    let mut tx = p.begin_write().await?;
                    let n = sqlx::query("UPDATE vehicles SET auth_code = $2, terminal_id = $3, terminal_model = $4, manufacturer = $5, \
                                 registered_at_ms = $6, rebind_until_ms = NULL, rebind_terminal_id = NULL, rebind_source_ip = NULL, \
                                 reregister_at_ms = NULL, reregister_addr = NULL, \
                                 reregister_terminal_id = NULL, reregister_model = NULL, reregister_manufacturer = NULL, \
                                 reregister_count = 0 \
                                 WHERE id = $1 AND (auth_code IS NULL OR auth_code = '' \
                                 OR (rebind_until_ms >= $6 AND rebind_terminal_id = $3 AND rebind_source_ip = $7))")
                        .bind(&v.id).bind(new_auth_code).bind(&reg.terminal_id).bind(&reg.model).bind(&reg.manufacturer).bind(at_ms)
                        .bind(&source_ip)
                        .execute(&mut *tx).await?.rows_affected();
                    if n == 1 {
                        sqlx::query("DELETE FROM terminal_register_attempts WHERE vehicle_id = $1")
                            .bind(&v.id).execute(&mut *tx).await?;
                        insert_audit!(&mut *tx, &a)?;
                    }
                    tx.commit().await?;
                    n
                });
                if n == 0 {
                    return Ok(RegisterOutcome::AlreadyRegistered {
                        vehicle_id: v.id,
                        audited: false,
                    });
                }
                Ok(RegisterOutcome::Registered {
                    vehicle_id: v.id,
                    auth_code: new_auth_code.to_string(),
                })
            }
            None => {
                let Some(org) = open_org_unit else {
                    return Ok(RegisterOutcome::UnknownTerminal);
                };
                let id = crate::new_id();
                let plate = if reg.plate.trim().is_empty() {
                    format!("终端{phone}")
                } else {
                    reg.plate.trim().chars().take(16).collect()
                };
                let a = AuditEntry::new(&actor, "vehicle.terminal_register", at_ms)
                    .target("vehicle", &id)
                    .details(serde_json::json!({"plate": plate, "terminal_id": reg.terminal_id, "open_registration": true}));
                with_pool!(self.db, p => {
                    let mut tx = p.begin_write().await?;
                    sqlx::query("INSERT INTO vehicles (id, plate, org_unit_id, terminal_phone, auth_code, terminal_id, terminal_model, manufacturer, \
                                 registered_at_ms, status, created_at_ms, updated_at_ms, version) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $9, $9, 1)")
                        .bind(&id).bind(&plate).bind(org).bind(&phone).bind(new_auth_code).bind(&reg.terminal_id)
                        .bind(&reg.model).bind(&reg.manufacturer).bind(at_ms).execute(&mut *tx).await?;
                    insert_audit!(&mut *tx, &a)?;
                    tx.commit().await?;
                });
                Ok(RegisterOutcome::Registered {
                    vehicle_id: id,
                    auth_code: new_auth_code.to_string(),
                })
            }
        }
    }

    /// Check a terminal's auth code (0x0102): the vehicle id when it matches an active vehicle.
    pub async fn authenticate_terminal(
        &self,
        phone: &str,
        code: &str,
    ) -> StorageResult<Option<String>> {
        let phone = normalize_phone(phone);
        let row: Option<(String, Option<String>, String)> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT id, auth_code, status FROM vehicles WHERE terminal_phone = $1").bind(phone).fetch_optional(p).await?);
        Ok(match row {
            Some((id, Some(c), status))
                if status == "active" && !c.is_empty() && constant_eq(&c, code) =>
            {
                Some(id)
            }
            _ => None,
        })
    }

    /// Record a refused registration of a bound vehicle's number: one row per (terminal id,
    /// source IP), the latest [`MAX_ATTEMPTS_PER_VEHICLE`] kept; audited at most once a minute
    /// per vehicle.
    #[allow(clippy::too_many_arguments)]
    async fn refuse_registration(
        &self,
        vehicle_id: &str,
        reg: &TerminalRegistration,
        from: &str,
        source_ip: &str,
        audited_at: Option<i64>,
        actor: &crate::audit::Actor,
        at_ms: i64,
    ) -> StorageResult<RegisterOutcome> {
        let audit_due = audited_at.is_none_or(|t| t <= at_ms - REGISTER_AUDIT_INTERVAL_MS);
        let a = AuditEntry::new(actor, "vehicle.terminal_register_refused", at_ms)
            .outcome(crate::audit::Outcome::Denied)
            .target("vehicle", vehicle_id)
            .details(
                serde_json::json!({"terminal_id": reg.terminal_id, "model": reg.model,
                "manufacturer": reg.manufacturer, "from": from, "source_ip": source_ip,
                "reason": "terminal already registered"}),
            );
        let id = crate::new_id();
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO terminal_register_attempts (id, vehicle_id, terminal_id, source_ip, last_addr, model, \
                         manufacturer, first_at_ms, last_at_ms, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1) \
                         ON CONFLICT (vehicle_id, terminal_id, source_ip) DO UPDATE SET last_addr = excluded.last_addr, \
                         model = excluded.model, manufacturer = excluded.manufacturer, last_at_ms = excluded.last_at_ms, \
                         attempts = terminal_register_attempts.attempts + 1")
                .bind(&id).bind(vehicle_id).bind(&reg.terminal_id).bind(source_ip).bind(from).bind(&reg.model)
                .bind(&reg.manufacturer).bind(at_ms).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM terminal_register_attempts WHERE vehicle_id = $1 AND id NOT IN \
                         (SELECT id FROM terminal_register_attempts WHERE vehicle_id = $1 \
                         ORDER BY last_at_ms DESC, id DESC LIMIT $2)")
                .bind(vehicle_id).bind(MAX_ATTEMPTS_PER_VEHICLE).execute(&mut *tx).await?;
            sqlx::query("UPDATE vehicles SET reregister_at_ms = $2, reregister_count = reregister_count + 1, \
                         reregister_audited_at_ms = CASE WHEN $3 THEN $2 ELSE reregister_audited_at_ms END WHERE id = $1")
                .bind(vehicle_id).bind(at_ms).bind(audit_due).execute(&mut *tx).await?;
            if audit_due {
                insert_audit!(&mut *tx, &a)?;
            }
            tx.commit().await?;
        });
        Ok(RegisterOutcome::AlreadyRegistered {
            vehicle_id: vehicle_id.to_string(),
            audited: audit_due,
        })
    }

    /// Release the vehicle's terminal for one re-registration until `until_ms`, for the one
    /// attempt `target` names: the next 0x0100 for its number with that terminal id from that
    /// source IP gets a new auth code and the old code stops working; any other is refused.
    /// Audited with the approved attempt's details. [`StorageError::NotFound`]`("attempt")`
    /// when `target` names no attempt of this vehicle.
    pub async fn release_rebind(
        &self,
        scope: &Scope,
        id: &str,
        target: &RebindTarget,
        until_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<PendingRebind> {
        let v = self.get(scope, id).await?;
        let attempts = self.attempts_of(&[id.to_string()]).await?;
        let (approved, attempt) = match target {
            RebindTarget::Attempt(aid) => {
                let a = attempts
                    .into_iter()
                    .find(|a| &a.id == aid)
                    .ok_or(StorageError::NotFound("attempt"))?;
                (
                    ApprovedTerminal {
                        terminal_id: a.terminal_id.clone(),
                        source_ip: a.source_ip.clone(),
                    },
                    Some(a),
                )
            }
            RebindTarget::Terminal(t) => {
                let t = ApprovedTerminal {
                    terminal_id: t.terminal_id.clone(),
                    source_ip: source_ip_of(&t.source_ip),
                };
                let a = attempts
                    .into_iter()
                    .find(|a| a.terminal_id == t.terminal_id && a.source_ip == t.source_ip);
                (t, a)
            }
        };
        let a = audit
            .clone()
            .target("vehicle", id)
            .details(serde_json::json!({
            "plate": v.plate, "terminal_phone": v.terminal_phone, "terminal_id": v.terminal_id,
            "until_ms": until_ms, "approved_terminal_id": approved.terminal_id,
            "approved_source_ip": approved.source_ip, "attempt": attempt}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE vehicles SET rebind_until_ms = $2, rebind_terminal_id = $3, rebind_source_ip = $4 WHERE id = $1")
                .bind(id).bind(until_ms).bind(&approved.terminal_id).bind(&approved.source_ip).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        let sql = format!("{SELECT_PENDING} WHERE v.id = $1");
        let row = with_pool!(self.db, p => sqlx::query_as::<_, PendingRow>(&sql).bind(id).fetch_one(p).await?);
        Ok(self.assemble(vec![row]).await?.remove(0))
    }

    async fn attempts_of(&self, vehicle_ids: &[String]) -> StorageResult<Vec<RegisterAttempt>> {
        Ok(self
            .attempt_rows(vehicle_ids)
            .await?
            .into_iter()
            .map(|r| r.a)
            .collect())
    }

    async fn attempt_rows(&self, vehicle_ids: &[String]) -> StorageResult<Vec<AttemptRow>> {
        if vehicle_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = SqlBuilder::default();
        let ps: Vec<String> = vehicle_ids.iter().map(|v| b.s(v.clone())).collect();
        let sql = format!(
            "{SELECT_ATTEMPTS} WHERE a.vehicle_id IN ({}) ORDER BY a.last_at_ms DESC, a.id DESC",
            ps.join(", ")
        );
        with_pool!(self.db, p => Ok(bind_args!(sqlx::query_as::<_, AttemptRow>(&sql), b.args).fetch_all(p).await?))
    }

    async fn assemble(&self, rows: Vec<PendingRow>) -> StorageResult<Vec<PendingRebind>> {
        let ids: Vec<String> = rows.iter().map(|r| r.vehicle_id.clone()).collect();
        let mut by_vehicle: std::collections::HashMap<String, Vec<RegisterAttempt>> =
            std::collections::HashMap::new();
        for ids in ids.chunks(500) {
            for r in self.attempt_rows(ids).await? {
                by_vehicle.entry(r.vehicle_id).or_default().push(r.a);
            }
        }
        let mut out: Vec<PendingRebind> = rows
            .into_iter()
            .map(|r| {
                let recent = by_vehicle.remove(&r.vehicle_id).unwrap_or_default();
                let last = recent.first();
                PendingRebind {
                    attempt_at_ms: last.map(|a| a.last_at_ms),
                    attempt_addr: last.map(|a| a.addr.clone()),
                    attempt_terminal_id: last.map(|a| a.terminal_id.clone()),
                    attempt_model: last.map(|a| a.model.clone()),
                    attempt_manufacturer: last.map(|a| a.manufacturer.clone()),
                    attempts: recent.iter().map(|a| a.count).sum(),
                    released_for: match (
                        &r.rebind_until_ms,
                        r.rebind_terminal_id,
                        r.rebind_source_ip,
                    ) {
                        (Some(_), Some(terminal_id), Some(source_ip)) => Some(ApprovedTerminal {
                            terminal_id,
                            source_ip,
                        }),
                        _ => None,
                    },
                    released_until_ms: r.rebind_until_ms,
                    vehicle_id: r.vehicle_id,
                    plate: r.plate,
                    org_unit_id: r.org_unit_id,
                    terminal_phone: r.terminal_phone,
                    terminal_id: r.terminal_id,
                    registered_at_ms: r.registered_at_ms,
                    recent_attempts: recent,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.attempt_at_ms
                .cmp(&a.attempt_at_ms)
                .then_with(|| a.plate.cmp(&b.plate))
                .then_with(|| a.vehicle_id.cmp(&b.vehicle_id))
        });
        Ok(out)
    }

    /// Vehicles in `scope` whose terminal tried to register again, or that are released for
    /// re-binding, each with its refused attempts; the latest attempt first.
    pub async fn pending_rebinds(&self, scope: &Scope) -> StorageResult<Vec<PendingRebind>> {
        let mut b = SqlBuilder::default();
        let cond = scope_cond(scope, &mut b);
        let sql = format!(
            "{SELECT_PENDING} WHERE (v.rebind_until_ms IS NOT NULL OR EXISTS \
             (SELECT 1 FROM terminal_register_attempts t WHERE t.vehicle_id = v.id)) AND {cond}"
        );
        let rows = with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, PendingRow>(&sql), b.args).fetch_all(p).await?);
        self.assemble(rows).await
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_forms_match() {
        assert_eq!(normalize_phone("013800138000"), "13800138000");
        assert_eq!(normalize_phone("00000000013800138000"), "13800138000");
        assert_eq!(normalize_phone("000000"), "0");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_eq("abc", "abc"));
        assert!(!constant_eq("abc", "abd"));
        assert!(!constant_eq("abc", "ab"));
    }
}

//! The append-only audit log: logins, data changes and reads of sensitive data.
//!
//! Rows are only ever inserted (both engines reject `UPDATE` and `DELETE` with a trigger). Each
//! row says who (account id and username), when, what (action, target kind and id), from where
//! (client address), the outcome and free-form JSON details.

use serde::Serialize;

use crate::db::with_pool;
use crate::{Db, Page, PageRequest, StorageResult};

/// Outcome of an audited event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was tried and failed (e.g. a wrong password).
    Failure,
    /// It was refused for lack of permission or scope.
    Denied,
}

impl Outcome {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acts: the account and the client address.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// Account id, if authenticated.
    pub account_id: Option<String>,
    /// Username (also for failed logins of unknown names).
    pub username: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}

/// One audit row to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who.
    pub actor: Actor,
    /// Dotted action code, e.g. `auth.login`, `enterprise.update`.
    pub action: String,
    /// Kind of the target (`enterprise`, `account`, …).
    pub target_kind: Option<String>,
    /// Id of the target.
    pub target_id: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Details (changed fields, reasons).
    pub details: serde_json::Value,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

impl AuditEntry {
    /// A successful `action` by `actor` at `at_ms`.
    pub fn new(actor: &Actor, action: &str, at_ms: i64) -> Self {
        Self {
            actor: actor.clone(),
            action: action.to_string(),
            target_kind: None,
            target_id: None,
            outcome: Outcome::Success,
            details: serde_json::Value::Null,
            at_ms,
        }
    }

    /// Set the target.
    pub fn target(mut self, kind: &str, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind.to_string());
        self.target_id = Some(id.into());
        self
    }

    /// Set the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Set the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Insert an [`AuditEntry`] with any executor of either engine (a pool or a transaction).
macro_rules! insert_audit {
    ($exec:expr, $entry:expr) => {{
        let e: &$crate::audit::AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, account_id, username, action, target_kind, target_id, ip, outcome, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind($crate::new_id())
        .bind(e.at_ms)
        .bind(e.actor.account_id.as_deref())
        .bind(e.actor.username.as_deref())
        .bind(e.action.as_str())
        .bind(e.target_kind.as_deref())
        .bind(e.target_id.as_deref())
        .bind(e.actor.ip.as_deref())
        .bind(e.outcome.as_str())
        .bind(e.details.to_string())
        .execute($exec)
        .await
    }};
}
pub(crate) use insert_audit;

/// A stored audit row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// Row id.
    pub id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Account id.
    pub account_id: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Action code.
    pub action: String,
    /// Target kind.
    pub target_kind: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// JSON details as text.
    pub details: String,
}

/// Filter of an audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact username.
    pub username: Option<String>,
    /// Exact account id.
    pub account_id: Option<String>,
    /// Action code or prefix ending in `.` (e.g. `auth.`).
    pub action: Option<String>,
    /// Exact target id.
    pub target_id: Option<String>,
    /// Outcome code.
    pub outcome: Option<String>,
    /// From (inclusive), ms.
    pub from_ms: Option<i64>,
    /// To (exclusive), ms.
    pub to_ms: Option<i64>,
    /// Only rows about this org unit's subtree: the acting account belongs to it, or the
    /// target is an org unit, account, account application, officer, enterprise (district,
    /// town or SOE group), inspection, hazard, case, plan, recording, recorder, vehicle,
    /// geofence or SOS alarm of it. Rows without an account (failed logins of unknown names,
    /// jobs) and about corps-wide settings are left to the corps.
    pub subtree: Option<String>,
}

/// The condition (` AND …`) of [`AuditFilter::subtree`], the subtree's root bound as `root`
/// (e.g. `$10`).
fn subtree_sql(root: &str) -> String {
    let units = format!("(SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {root})");
    let mut or = vec![
        format!("account_id IN (SELECT id FROM accounts WHERE org_unit_id IN {units})"),
        format!("(target_kind = 'org_unit' AND target_id IN {units})"),
        format!("(target_kind = 'enterprise' AND target_id IN (SELECT id FROM enterprises \
             WHERE district_id IN {units} OR town_id IN {units} OR soe_group_id IN {units}))"),
        format!("(target_kind = 'recorder' AND target_id IN (SELECT device_id FROM recorders WHERE org_unit_id IN {units}))"),
    ];
    for (kind, table) in [
        ("account", "accounts"),
        ("account_application", "account_applications"),
        ("officer", "officers"),
        ("inspection", "inspections"),
        ("hazard", "hazards"),
        ("case", "cases"),
        ("plan", "plans"),
        ("recording", "recordings"),
        ("vehicle", "vehicles"),
        ("geofence", "geofences"),
        ("sos", "sos_alarms"),
    ] {
        or.push(format!(
            "(target_kind = '{kind}' AND target_id IN (SELECT id FROM {table} WHERE org_unit_id IN {units}))"
        ));
    }
    format!(" AND ({})", or.join(" OR "))
}

/// The audit repository.
#[derive(Debug, Clone, Copy)]
pub struct AuditRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// The audit log.
    pub fn audit(&self) -> AuditRepo<'_> {
        AuditRepo { db: self }
    }
}

impl AuditRepo<'_> {
    /// Append one entry on its own (for events without a data change: logins, reads, denials).
    pub async fn record(&self, entry: &AuditEntry) -> StorageResult<()> {
        with_pool!(self.db, p => { insert_audit!(p, entry)?; });
        Ok(())
    }

    /// Query newest first.
    pub async fn query(
        &self,
        f: &AuditFilter,
        page: PageRequest,
    ) -> StorageResult<Page<AuditRecord>> {
        let action_like = f.action.as_ref().map(|a| {
            if a.ends_with('.') {
                format!("{}%", a.replace('%', ""))
            } else {
                a.replace('%', "")
            }
        });
        let where_sql = "WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR account_id = $2) \
             AND ($3 IS NULL OR action LIKE $3) AND ($4 IS NULL OR target_id = $4) \
             AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR at_ms >= $6) AND ($7 IS NULL OR at_ms < $7)";
        let scoped = |root: &str| match f.subtree {
            Some(_) => subtree_sql(root),
            None => String::new(),
        };
        let count_sql = format!("SELECT COUNT(*) FROM audit_log {where_sql}{}", scoped("$8"));
        let list_sql = format!(
            "SELECT id, at_ms, account_id, username, action, target_kind, target_id, ip, outcome, details \
             FROM audit_log {where_sql}{} ORDER BY seq DESC LIMIT $8 OFFSET $9",
            scoped("$10")
        );
        with_pool!(self.db, p => {
            let count = sqlx::query_scalar(&count_sql)
                .bind(f.username.as_deref())
                .bind(f.account_id.as_deref())
                .bind(action_like.as_deref())
                .bind(f.target_id.as_deref())
                .bind(f.outcome.as_deref())
                .bind(f.from_ms)
                .bind(f.to_ms);
            let count = match &f.subtree {
                Some(root) => count.bind(root.as_str()),
                None => count,
            };
            let total: i64 = count.fetch_one(p).await?;
            let list = sqlx::query_as(&list_sql)
                .bind(f.username.as_deref())
                .bind(f.account_id.as_deref())
                .bind(action_like.as_deref())
                .bind(f.target_id.as_deref())
                .bind(f.outcome.as_deref())
                .bind(f.from_ms)
                .bind(f.to_ms)
                .bind(page.page_size)
                .bind(page.offset());
            let list = match &f.subtree {
                Some(root) => list.bind(root.as_str()),
                None => list,
            };
            let items: Vec<AuditRecord> = list.fetch_all(p).await?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }
}

//! Hazards (隐患) and their rectification loop.
//!
//! Found in an in-progress inspection (general or major), each hazard gets a rectification order
//! (责令限期整改指令书, numbered) with a deadline. The loop:
//!
//! ```text
//! rectifying ──report rectification──▶ rectified ──re-inspection passed──▶ closed
//!     │  ▲                                 │
//!     │  └──re-inspection failed, new deadline (re-ordered)
//!     └──────────re-inspection passed / failed without a new deadline──▶ closed / escalated
//! ```
//!
//! The re-inspection is due within the legal window (`deadline_rules.reinspection`, 10 days) after
//! the rectification deadline or after the rectification report, whichever comes first; the due
//! time is stored so "due this week" and "overdue" are one indexed range.

use crate::db::BeginWrite;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enforcement::{
    doc_prefix, end_of_shanghai_day, next_seq, numbering_unit, shanghai_year, unit_condition,
    DAY_MS,
};
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// Hazard levels.
pub const LEVELS: &[(&str, &str)] = &[("general", "一般隐患"), ("major", "重大事故隐患")];

/// Hazard states.
pub const STATES: &[(&str, &str)] = &[
    ("rectifying", "整改中"),
    ("rectified", "待复查"),
    ("closed", "已销号"),
    ("escalated", "已移交立案"),
];

/// A hazard as recorded on site.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HazardInput {
    /// The inspection item it falls under (optional: not every hazard maps to an item).
    #[serde(default)]
    pub item_id: Option<String>,
    /// `general` or `major`.
    pub level: String,
    /// What was found.
    pub description: String,
    /// Rectification deadline, a date in Asia/Shanghai (`YYYY-MM-DD`, end of that day).
    pub rectification_deadline: String,
}

/// A stored hazard.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Hazard {
    /// Id.
    pub id: String,
    /// The inspection that found it.
    pub inspection_id: String,
    /// That inspection's code.
    pub inspection_code: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Handling unit.
    pub org_unit_id: String,
    /// Inspection item.
    pub item_id: Option<String>,
    /// Inspection item title.
    pub item_title: Option<String>,
    /// `general`, `major`.
    pub level: String,
    /// Description.
    pub description: String,
    /// `rectifying`, `rectified`, `closed`, `escalated`.
    pub status: String,
    /// Number of the rectification order.
    pub order_number: String,
    /// Found, ms.
    #[serde(
        rename = "found_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub found_at_ms: i64,
    /// Rectification deadline, ms.
    #[serde(
        rename = "rectification_deadline",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub rectification_deadline_ms: i64,
    /// Re-inspection due by, ms.
    #[serde(
        rename = "reinspection_due",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub reinspection_due_ms: i64,
    /// The enterprise's (or officer's) rectification report.
    pub rectification_note: Option<String>,
    /// Evidence blob keys (JSON array).
    #[serde(skip)]
    pub rectification_evidence: String,
    /// Reported rectified, ms.
    #[serde(
        rename = "rectified_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rectified_at_ms: Option<i64>,
    /// `passed`, `failed`.
    pub reinspection_result: Option<String>,
    /// Re-inspection opinion.
    pub reinspection_note: Option<String>,
    /// Number of the re-inspection opinion.
    pub reinspection_number: Option<String>,
    /// Re-inspected by (account).
    pub reinspected_by: Option<String>,
    /// Re-inspected, ms.
    #[serde(
        rename = "reinspected_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reinspected_at_ms: Option<i64>,
    /// Closed, ms.
    #[serde(
        rename = "closed_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at_ms: Option<i64>,
    /// Created, ms.
    #[serde(
        rename = "created_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub created_at_ms: i64,
    /// Updated, ms.
    #[serde(
        rename = "updated_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at_ms: i64,
    /// Optimistic-lock version.
    pub version: i64,
}

impl Hazard {
    /// Evidence blob keys.
    pub fn evidence_keys(&self) -> Vec<String> {
        serde_json::from_str(&self.rectification_evidence).unwrap_or_default()
    }

    /// Whether the re-inspection is overdue at `now_ms`.
    pub fn overdue(&self, now_ms: i64) -> bool {
        matches!(self.status.as_str(), "rectifying" | "rectified")
            && self.reinspection_due_ms < now_ms
    }
}

/// Filter of a hazard list.
#[derive(Debug, Clone, Default)]
pub struct HazardFilter {
    /// Substring of description or enterprise name.
    pub q: Option<String>,
    /// States (any of).
    pub statuses: Vec<String>,
    /// Level.
    pub level: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Inspection.
    pub inspection_id: Option<String>,
    /// Needing action before, ms: reported rectified (awaiting re-inspection), or with a
    /// rectification deadline (hence the re-inspection window) before this time.
    pub action_before_ms: Option<i64>,
}

/// The hazard repository.
#[derive(Debug, Clone, Copy)]
pub struct HazardRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Hazards.
    pub fn hazards(&self) -> HazardRepo<'_> {
        HazardRepo { db: self }
    }
}

// The joins compare with `h.… || ''`: the expression keeps the planners from driving the query
// from `enterprises` through `hazards_enterprise` (SQLite scanned every enterprise and two
// million hazards for a district's open ones); hazards come first through `hazards_org_due`.
const SELECT: &str = "SELECT h.id, h.inspection_id, i.code AS inspection_code, h.enterprise_id, e.name AS enterprise_name, h.org_unit_id, \
     h.item_id, it.title AS item_title, h.level, h.description, h.status, h.order_number, h.found_at_ms, h.rectification_deadline_ms, \
     h.reinspection_due_ms, h.rectification_note, h.rectification_evidence, h.rectified_at_ms, h.reinspection_result, h.reinspection_note, \
     h.reinspection_number, h.reinspected_by, h.reinspected_at_ms, h.closed_at_ms, h.created_at_ms, h.updated_at_ms, h.version \
     FROM hazards h JOIN inspections i ON i.id = h.inspection_id || '' JOIN enterprises e ON e.id = h.enterprise_id || '' \
     LEFT JOIN inspection_items it ON it.id = h.item_id";

/// Parse a `YYYY-MM-DD` deadline into the end of that Shanghai day.
pub fn parse_deadline(field: &str, s: &str) -> StorageResult<i64> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(end_of_shanghai_day)
        .map_err(|_| StorageError::invalid(field, "must be a date YYYY-MM-DD"))
}

impl HazardRepo<'_> {
    /// One hazard visible in `scope`.
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Hazard> {
        let mut b = SqlBuilder::default();
        let cond = unit_condition("h", &self.db.scope_units(scope).await?, &mut b);
        let idp = b.s(id);
        let sql = format!("{SELECT} WHERE h.id = {idp} AND {cond}");
        with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, Hazard>(&sql), b.args).fetch_optional(p).await?)
            .ok_or(StorageError::NotFound("hazard"))
    }

    /// A page of hazards in `scope`, by re-inspection due time (soonest first).
    pub async fn list(
        &self,
        scope: &Scope,
        f: &HazardFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Hazard>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![unit_condition(
            "h",
            &self.db.scope_units(scope).await?,
            &mut b,
        )];
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let a = b.s(crate::search::like_pattern(q));
            conds.push(format!(
                "(h.description LIKE {a} ESCAPE '\\' OR e.name LIKE {a} ESCAPE '\\')"
            ));
        }
        if !f.statuses.is_empty() {
            let ph: Vec<String> = f.statuses.iter().map(|s| b.s(s.clone())).collect();
            conds.push(format!("h.status IN ({})", ph.join(", ")));
        }
        if let Some(v) = &f.level {
            conds.push(format!("h.level = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.enterprise_id {
            conds.push(format!("h.enterprise_id = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.inspection_id {
            conds.push(format!("h.inspection_id = {}", b.s(v.clone())));
        }
        if let Some(v) = f.action_before_ms {
            conds.push(format!(
                "(h.status = 'rectified' OR h.rectification_deadline_ms < {})",
                b.i(v)
            ));
        }
        let wh = conds.join(" AND ");
        // Two steps: the page's ids from `hazards` alone (with the covering `hazards_org_due`,
        // the workbench's filter, order and count read only the index), then the page's rows
        // with their joins. Joining first would join every matching hazard before the sort.
        let join = if wh.contains("e.name") {
            " JOIN enterprises e ON e.id = h.enterprise_id || ''"
        } else {
            ""
        };
        let count_sql = format!("SELECT COUNT(*) FROM hazards h{join} WHERE {wh}");
        let n = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let ids_sql = format!(
            "SELECT h.id FROM hazards h{join} WHERE {wh} ORDER BY h.reinspection_due_ms, h.id LIMIT {lim} OFFSET {off}"
        );
        let (total, ids) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n]).fetch_one(p).await?;
            let ids: Vec<String> = bind_args!(sqlx::query_scalar(&ids_sql), b.args).fetch_all(p).await?;
            (total, ids)
        });
        let items = self.by_ids(&ids).await?;
        Ok(Page {
            items,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// The hazards of `ids` (already scoped), in that order.
    async fn by_ids(&self, ids: &[String]) -> StorageResult<Vec<Hazard>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = SqlBuilder::default();
        let ph: Vec<String> = ids.iter().map(|id| b.s(id.clone())).collect();
        let sql = format!("{SELECT} WHERE h.id IN ({})", ph.join(", "));
        let mut rows: Vec<Hazard> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        let pos: std::collections::HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        rows.sort_by_key(|h| pos.get(h.id.as_str()).copied().unwrap_or(usize::MAX));
        Ok(rows)
    }

    /// Record a hazard found by an in-progress inspection; numbers its rectification order.
    pub async fn create(
        &self,
        scope: &Scope,
        inspection_id: &str,
        input: &HazardInput,
        audit: &AuditEntry,
    ) -> StorageResult<Hazard> {
        let insp = self.db.inspections().get(scope, inspection_id).await?;
        if insp.status != "in_progress" {
            return Err(StorageError::wrong_state(
                "inspection",
                insp.status,
                "hazards are recorded while the inspection is in progress",
            ));
        }
        let deadline = parse_deadline("rectification_deadline", &input.rectification_deadline)?;
        let now = audit.at_ms;
        if deadline < now {
            return Err(StorageError::invalid(
                "rectification_deadline",
                "must not be in the past",
            ));
        }
        if deadline > now + 365 * DAY_MS {
            return Err(StorageError::invalid(
                "rectification_deadline",
                "at most one year ahead",
            ));
        }
        let window = self.db.rules().days("reinspection").await? * DAY_MS;
        let (short, _) = numbering_unit(self.db, &insp.org_unit_id).await?;
        let prefix = doc_prefix(&short, "责改", shanghai_year(now));
        let id = crate::new_id();
        let a = audit
            .clone()
            .target("hazard", &id)
            .details(serde_json::to_value(input).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            let number = format!("{prefix}{seq}号");
            sqlx::query("INSERT INTO hazards (id, inspection_id, enterprise_id, org_unit_id, item_id, level, description, status, order_number, \
                         found_at_ms, rectification_deadline_ms, reinspection_due_ms, created_at_ms, updated_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'rectifying', $8, $9, $10, $11, $9, $9, 1)")
                .bind(&id).bind(inspection_id).bind(&insp.enterprise_id).bind(&insp.org_unit_id).bind(&input.item_id)
                .bind(&input.level).bind(input.description.trim()).bind(&number).bind(now).bind(deadline).bind(deadline + window)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, &id).await
    }

    /// Report the rectification done (with a note and evidence blob keys): `rectifying` →
    /// `rectified`; the re-inspection falls due within the window from now if that is sooner.
    pub async fn report_rectification(
        &self,
        scope: &Scope,
        id: &str,
        note: &str,
        evidence_keys: &[String],
        audit: &AuditEntry,
    ) -> StorageResult<Hazard> {
        let h = self.get(scope, id).await?;
        if h.status != "rectifying" {
            return Err(StorageError::wrong_state(
                "hazard",
                h.status,
                "a rectification can be reported only while the hazard is being rectified",
            ));
        }
        let window = self.db.rules().days("reinspection").await? * DAY_MS;
        let now = audit.at_ms;
        let due = h.reinspection_due_ms.min(now + window);
        let keys = serde_json::to_string(evidence_keys).unwrap_or_else(|_| "[]".into());
        let a = audit
            .clone()
            .target("hazard", id)
            .details(serde_json::json!({"note": note, "evidence": evidence_keys}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE hazards SET status = 'rectified', rectification_note = $3, rectification_evidence = $4, rectified_at_ms = $5, \
                                 reinspection_due_ms = $6, updated_at_ms = $5, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(h.version).bind(note).bind(&keys).bind(now).bind(due).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Record the re-inspection (numbered opinion). Passed → `closed`. Failed → re-ordered with
    /// `new_deadline` (back to `rectifying`) or, without one, `escalated` for case filing.
    pub async fn reinspect(
        &self,
        scope: &Scope,
        id: &str,
        passed: bool,
        note: &str,
        new_deadline: Option<&str>,
        audit: &AuditEntry,
    ) -> StorageResult<Hazard> {
        let h = self.get(scope, id).await?;
        if !matches!(h.status.as_str(), "rectifying" | "rectified") {
            return Err(StorageError::wrong_state(
                "hazard",
                h.status,
                "only a hazard under rectification can be re-inspected",
            ));
        }
        let now = audit.at_ms;
        let new_deadline = match (passed, new_deadline) {
            (true, Some(_)) => {
                return Err(StorageError::invalid(
                    "new_deadline",
                    "only a failed re-inspection sets a new deadline",
                ))
            }
            (false, Some(d)) => {
                let d = parse_deadline("new_deadline", d)?;
                if d < now {
                    return Err(StorageError::invalid(
                        "new_deadline",
                        "must not be in the past",
                    ));
                }
                Some(d)
            }
            _ => None,
        };
        let window = self.db.rules().days("reinspection").await? * DAY_MS;
        let (short, _) = numbering_unit(self.db, &h.org_unit_id).await?;
        let prefix = doc_prefix(&short, "复查", shanghai_year(now));
        let (status, deadline, due) = match (passed, new_deadline) {
            (true, _) => ("closed", h.rectification_deadline_ms, h.reinspection_due_ms),
            (false, Some(d)) => ("rectifying", d, d + window),
            (false, None) => (
                "escalated",
                h.rectification_deadline_ms,
                h.reinspection_due_ms,
            ),
        };
        let account = audit.actor.account_id.clone();
        let a = audit.clone().target("hazard", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            let number = format!("{prefix}{seq}号");
            let n = sqlx::query("UPDATE hazards SET status = $3, reinspection_result = $4, reinspection_note = $5, reinspection_number = $6, \
                                 reinspected_by = $7, reinspected_at_ms = $8, closed_at_ms = $9, rectification_deadline_ms = $10, \
                                 reinspection_due_ms = $11, updated_at_ms = $8, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(h.version).bind(status).bind(if passed { "passed" } else { "failed" }).bind(note).bind(&number)
                .bind(&account).bind(now).bind((status == "closed").then_some(now)).bind(deadline).bind(due)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            let a = a.details(serde_json::json!({"passed": passed, "note": note, "number": number, "status": status}));
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Counts by state in `scope` (for the workbench and statistics).
    pub async fn counts(&self, scope: &Scope, now_ms: i64) -> StorageResult<HazardCounts> {
        let mut b = SqlBuilder::default();
        let cond = unit_condition("h", &self.db.scope_units(scope).await?, &mut b);
        let nowp = b.i(now_ms);
        let sql = format!(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN h.status IN ('rectifying','rectified') THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN h.status IN ('rectifying','rectified') AND h.reinspection_due_ms < {nowp} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN h.status = 'closed' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN h.level = 'major' THEN 1 ELSE 0 END), 0) \
             FROM hazards h WHERE {cond}"
        );
        let (total, open, overdue, closed, major): (i64, i64, i64, i64, i64) = with_pool!(self.db, p =>
            bind_args!(sqlx::query_as(&sql), b.args).fetch_one(p).await?);
        Ok(HazardCounts {
            total,
            open,
            overdue,
            closed,
            major,
        })
    }
}

/// Hazard counts.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct HazardCounts {
    /// All hazards.
    pub total: i64,
    /// Not yet closed or escalated.
    pub open: i64,
    /// Open and past the re-inspection due time.
    pub overdue: i64,
    /// Closed after a passed re-inspection.
    pub closed: i64,
    /// Major hazards.
    pub major: i64,
}

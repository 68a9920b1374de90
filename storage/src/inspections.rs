//! Inspections (现场检查): one visit by at least two officers to one enterprise, checked item by
//! item against the inspection item list. An inspection's id is what recordings link to.
//!
//! Inspect-once (综合查一次): a visit beyond the enterprise's yearly cap (from its sector and
//! supervision grade, table `inspection_caps`) needs an over-cap filing with a reason; the filing
//! goes to the enterprise's supervising unit (its district brigade), which acknowledges it. The
//! count and the insert run in one transaction.
//!
//! States: `in_progress` → `completed` (the on-site inspection record gets its number) or
//! `cancelled` (with a reason, only while no hazard was recorded).

use crate::db::BeginWrite;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enforcement::{doc_prefix, next_seq, numbering_unit, shanghai_year, unit_condition};
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// How an inspection came about.
pub const KINDS: &[(&str, &str)] = &[
    ("planned", "计划检查"),
    ("complaint", "投诉举报"),
    ("referral", "转办交办"),
    ("triggered", "触发式监管"),
];

/// Item results.
pub const RESULTS: &[&str] = &["pass", "hazard", "not_applicable"];

/// A new inspection as entered.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionInput {
    /// The inspected enterprise.
    pub enterprise_id: String,
    /// `planned`, `complaint`, `referral`, `triggered`.
    pub kind: String,
    /// The officers on site (at least two, distinct).
    pub officer_ids: Vec<String>,
    /// Start of the visit, RFC 3339 (default: now).
    #[serde(default)]
    pub started_at: Option<String>,
    /// Reason of the over-cap filing, required when the visit is over the yearly cap.
    #[serde(default)]
    pub over_cap_reason: Option<String>,
    /// The planned visit this inspection executes (kind `planned`); the inspection takes the
    /// visit's inspection code. Without it, a planned inspection links itself to the open visit
    /// for the enterprise in the current published plan, if there is one.
    #[serde(default)]
    pub plan_visit_id: Option<String>,
}

/// One checked item.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultInput {
    /// Inspection item id.
    pub item_id: String,
    /// `pass`, `hazard`, `not_applicable`.
    pub result: String,
    /// Note.
    #[serde(default)]
    pub note: String,
    /// Blob keys of photos.
    #[serde(default)]
    pub photo_keys: Vec<String>,
}

/// An officer on an inspection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OfficerRef {
    /// Officer id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Certificate number.
    pub certificate_no: String,
}

/// A stored inspection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Inspection {
    /// Id (what recordings link to).
    pub id: String,
    /// Inspection code (检查码).
    pub code: String,
    /// Handling unit.
    pub org_unit_id: String,
    /// Handling unit's name.
    pub org_unit_name: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// How it came about.
    pub kind: String,
    /// `in_progress`, `completed`, `cancelled`.
    pub status: String,
    /// Calendar year (Asia/Shanghai) counted against the cap.
    pub year: i64,
    /// Start, ms.
    #[serde(
        rename = "started_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub started_at_ms: i64,
    /// Completion, ms.
    #[serde(
        rename = "completed_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at_ms: Option<i64>,
    /// Number of the on-site inspection record (set on completion).
    pub record_number: Option<String>,
    /// Summary.
    pub summary: String,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Whether it was over the yearly cap (and has a filing).
    pub over_cap: bool,
    /// Officers on site.
    pub officers: Vec<OfficerRef>,
    /// Hazards found.
    pub hazard_count: i64,
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

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    code: String,
    org_unit_id: String,
    enterprise_id: String,
    enterprise_name: String,
    kind: String,
    status: String,
    year: i64,
    started_at_ms: i64,
    completed_at_ms: Option<i64>,
    record_number: Option<String>,
    summary: String,
    cancel_reason: Option<String>,
    over_cap: bool,
    hazard_count: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

/// A checked item with its title.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemResult {
    /// Item id.
    pub item_id: String,
    /// Item code.
    pub item_code: String,
    /// Item title.
    pub item_title: String,
    /// `pass`, `hazard`, `not_applicable`.
    pub result: String,
    /// Note.
    pub note: String,
    /// Photo blob keys.
    pub photo_keys: Vec<String>,
}

/// An over-cap filing (超限检查报备).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OverCapFiling {
    /// Id.
    pub id: String,
    /// The inspection over the cap.
    pub inspection_id: String,
    /// Its code.
    pub inspection_code: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// The enterprise's supervising unit, to which the filing is routed.
    pub supervising_unit_id: String,
    /// Reason.
    pub reason: String,
    /// Visits this year before this one.
    pub visits_before: i64,
    /// The cap.
    pub yearly_cap: i64,
    /// `pending`, `acknowledged`.
    pub status: String,
    /// Filed by (account).
    pub filed_by: Option<String>,
    /// Filed, ms.
    #[serde(
        rename = "filed_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub filed_at_ms: i64,
    /// Acknowledged by (account).
    pub acknowledged_by: Option<String>,
    /// Acknowledged, ms.
    #[serde(
        rename = "acknowledged_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at_ms: Option<i64>,
}

/// Filter of an inspection list.
#[derive(Debug, Clone, Default)]
pub struct InspectionFilter {
    /// Code (prefix) or enterprise name (substring).
    pub q: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// An officer on site.
    pub officer_id: Option<String>,
    /// Started at or after, ms.
    pub from_ms: Option<i64>,
    /// Started before, ms.
    pub to_ms: Option<i64>,
}

/// The inspection repository.
#[derive(Debug, Clone, Copy)]
pub struct InspectionRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Inspections and over-cap filings.
    pub fn inspections(&self) -> InspectionRepo<'_> {
        InspectionRepo { db: self }
    }
}

const SELECT: &str = "SELECT i.id, i.code, i.org_unit_id, i.enterprise_id, e.name AS enterprise_name, i.kind, i.status, i.year, \
     i.started_at_ms, i.completed_at_ms, i.record_number, i.summary, i.cancel_reason, i.over_cap, \
     (SELECT COUNT(*) FROM hazards h WHERE h.inspection_id = i.id) AS hazard_count, \
     i.created_at_ms, i.updated_at_ms, i.version \
     FROM inspections i JOIN enterprises e ON e.id = i.enterprise_id || ''";

const FILING_SELECT: &str = "SELECT f.id, f.inspection_id, i.code AS inspection_code, f.enterprise_id, e.name AS enterprise_name, \
     f.supervising_unit_id, f.reason, f.visits_before, f.yearly_cap, f.status, f.filed_by, f.filed_at_ms, f.acknowledged_by, f.acknowledged_at_ms \
     FROM over_cap_filings f JOIN inspections i ON i.id = f.inspection_id JOIN enterprises e ON e.id = f.enterprise_id";

impl InspectionRepo<'_> {
    async fn decorate(&self, rows: Vec<Row>) -> StorageResult<Vec<Inspection>> {
        let names = self.db.org_unit_names().await?;
        let mut officers: HashMap<String, Vec<OfficerRef>> = HashMap::new();
        if !rows.is_empty() {
            let mut b = SqlBuilder::default();
            let ph: Vec<String> = rows.iter().map(|r| b.s(r.id.clone())).collect();
            let sql = format!(
                "SELECT io.inspection_id, o.id, o.name, o.certificate_no FROM inspection_officers io \
                 JOIN officers o ON o.id = io.officer_id WHERE io.inspection_id IN ({}) ORDER BY o.name",
                ph.join(", ")
            );
            let found: Vec<(String, String, String, String)> = with_pool!(self.db, p =>
                bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
            for (iid, id, name, certificate_no) in found {
                officers.entry(iid).or_default().push(OfficerRef {
                    id,
                    name,
                    certificate_no,
                });
            }
        }
        Ok(rows
            .into_iter()
            .map(|r| Inspection {
                org_unit_name: names.get(&r.org_unit_id).cloned().unwrap_or_default(),
                officers: officers.remove(&r.id).unwrap_or_default(),
                id: r.id,
                code: r.code,
                org_unit_id: r.org_unit_id,
                enterprise_id: r.enterprise_id,
                enterprise_name: r.enterprise_name,
                kind: r.kind,
                status: r.status,
                year: r.year,
                started_at_ms: r.started_at_ms,
                completed_at_ms: r.completed_at_ms,
                record_number: r.record_number,
                summary: r.summary,
                cancel_reason: r.cancel_reason,
                over_cap: r.over_cap,
                hazard_count: r.hazard_count,
                created_at_ms: r.created_at_ms,
                updated_at_ms: r.updated_at_ms,
                version: r.version,
            })
            .collect())
    }

    /// One inspection visible in `scope`.
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Inspection> {
        let mut b = SqlBuilder::default();
        let cond = unit_condition("i", &self.db.scope_units(scope).await?, &mut b);
        let idp = b.s(id);
        let sql = format!("{SELECT} WHERE i.id = {idp} AND {cond}");
        let row: Option<Row> = with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_optional(p).await?);
        let row = row.ok_or(StorageError::NotFound("inspection"))?;
        Ok(self.decorate(vec![row]).await?.remove(0))
    }

    /// A page of inspections in `scope`, newest first.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &InspectionFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Inspection>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![unit_condition(
            "i",
            &self.db.scope_units(scope).await?,
            &mut b,
        )];
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let upper = q.to_ascii_uppercase();
            if upper.starts_with("JC")
                && upper.len() > 2
                && upper[2..].bytes().all(|c| c.is_ascii_digit())
            {
                // An inspection code: exact (the unique index), or a prefix of one.
                if upper.len() >= 18 {
                    conds.push(format!("i.code = {}", b.s(upper)));
                } else {
                    conds.push(format!("i.code LIKE {}", b.s(format!("{upper}%"))));
                }
            } else {
                let name = b.s(crate::search::like_pattern(q));
                conds.push(format!("e.name LIKE {name} ESCAPE '\\'"));
            }
        }
        if let Some(v) = &f.enterprise_id {
            conds.push(format!("i.enterprise_id = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.status {
            conds.push(format!("i.status = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.kind {
            conds.push(format!("i.kind = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.officer_id {
            conds.push(format!(
                "i.id IN (SELECT inspection_id FROM inspection_officers WHERE officer_id = {})",
                b.s(v.clone())
            ));
        }
        if let Some(v) = f.from_ms {
            conds.push(format!("i.started_at_ms >= {}", b.i(v)));
        }
        if let Some(v) = f.to_ms {
            conds.push(format!("i.started_at_ms < {}", b.i(v)));
        }
        let wh = conds.join(" AND ");
        // The page's ids from `inspections` alone (joining the enterprise only to match its
        // name), then the page's rows: joining first would join every match before the sort.
        let join = if wh.contains("e.name") {
            " JOIN enterprises e ON e.id = i.enterprise_id || ''"
        } else {
            ""
        };
        let count_sql = format!("SELECT COUNT(*) FROM inspections i{join} WHERE {wh}");
        let n_count_args = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let ids_sql = format!(
            "SELECT i.id FROM inspections i{join} WHERE {wh} ORDER BY i.started_at_ms DESC, i.id DESC LIMIT {lim} OFFSET {off}"
        );
        let (total, ids): (i64, Vec<String>) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n_count_args]).fetch_one(p).await?;
            let ids = bind_args!(sqlx::query_scalar(&ids_sql), b.args).fetch_all(p).await?;
            (total, ids)
        });
        let mut rows: Vec<Row> = Vec::new();
        if !ids.is_empty() {
            let mut b = SqlBuilder::default();
            let ph: Vec<String> = ids.iter().map(|id| b.s(id.clone())).collect();
            let sql = format!("{SELECT} WHERE i.id IN ({})", ph.join(", "));
            rows = with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
            let pos: std::collections::HashMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(k, id)| (id.as_str(), k))
                .collect();
            rows.sort_by_key(|r| pos.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
        }
        Ok(Page {
            items: self.decorate(rows).await?,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Create an inspection for the handling unit `org_unit_id`. The input must be validated
    /// (kind, officers, enterprise in scope). Over the yearly cap without a reason:
    /// [`StorageError::OverCap`].
    pub async fn create(
        &self,
        org_unit_id: &str,
        input: &InspectionInput,
        started_at_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<String> {
        let year = shanghai_year(started_at_ms) as i64;
        let (_, unit_code) = numbering_unit(self.db, org_unit_id).await?;
        let code_prefix = format!("JC{unit_code}{year}");
        let id = crate::new_id();
        let account = audit.actor.account_id.clone();
        let reason = input
            .over_cap_reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let mut details = serde_json::to_value(input).unwrap_or_default();
        let enterprise_sql = format!(
            "SELECT sector, supervision_grade, district_id FROM enterprises WHERE id = $1{}",
            if self.db.engine() == crate::Engine::Postgres {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // Write first: on SQLite this takes the write lock before the cap is counted, so the
            // count and the insert are serialized (a read-then-write transaction could fail with
            // SQLITE_BUSY_SNAPSHOT when another writer commits in between).
            let code = match &input.plan_visit_id {
                // The visit's code, given when its plan was published (the no-op UPDATE takes
                // the write lock as next_seq does).
                Some(v) => {
                    sqlx::query("UPDATE plan_visits SET note = note WHERE id = $1").bind(v).execute(&mut *tx).await?;
                    sqlx::query_scalar::<_, Option<String>>(
                        "SELECT inspection_code FROM plan_visits WHERE id = $1 AND inspection_id IS NULL")
                        .bind(v).fetch_optional(&mut *tx).await?.flatten()
                        .ok_or_else(|| StorageError::invalid("plan_visit_id", "no such open planned visit"))?
                }
                None => format!("{code_prefix}{:06}", next_seq!(&mut *tx, &code_prefix)),
            };
            // PostgreSQL: the enterprise's row lock serializes two creates for one enterprise,
            // so both cannot count the visits before either inserts (read committed).
            let (sector, grade, district): (String, String, String) = sqlx::query_as(&enterprise_sql)
                .bind(&input.enterprise_id).fetch_optional(&mut *tx).await?
                .ok_or_else(|| StorageError::invalid("enterprise_id", "no such enterprise"))?;
            let cap: Option<i64> = sqlx::query_scalar("SELECT yearly_cap FROM inspection_caps WHERE sector = $1 AND grade = $2")
                .bind(&sector).bind(&grade).fetch_optional(&mut *tx).await?;
            let visits: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM inspections WHERE enterprise_id = $1 AND year = $2 AND status <> 'cancelled'")
                .bind(&input.enterprise_id).bind(year).fetch_one(&mut *tx).await?;
            let over = cap.is_some_and(|c| visits >= c);
            if over && reason.is_none() {
                return Err(StorageError::OverCap { visits, cap: cap.unwrap_or_default() });
            }
            sqlx::query("INSERT INTO inspections (id, code, org_unit_id, enterprise_id, kind, status, year, started_at_ms, summary, over_cap, \
                         created_by, created_at_ms, updated_at_ms, version) VALUES ($1, $2, $3, $4, $5, 'in_progress', $6, $7, '', $8, $9, $10, $10, 1)")
                .bind(&id).bind(&code).bind(org_unit_id).bind(&input.enterprise_id).bind(&input.kind).bind(year)
                .bind(started_at_ms).bind(over).bind(&account).bind(audit.at_ms).execute(&mut *tx).await?;
            if let Some(v) = &input.plan_visit_id {
                let n = sqlx::query("UPDATE plan_visits SET inspection_id = $2 WHERE id = $1 AND inspection_id IS NULL")
                    .bind(v).bind(&id).execute(&mut *tx).await?.rows_affected();
                if n == 0 {
                    return Err(StorageError::wrong_state("plan visit", "executed", "another inspection executed this visit meanwhile"));
                }
            }
            for o in &input.officer_ids {
                sqlx::query("INSERT INTO inspection_officers (inspection_id, officer_id) VALUES ($1, $2)")
                    .bind(&id).bind(o).execute(&mut *tx).await?;
            }
            let filing = if over {
                let fid = crate::new_id();
                sqlx::query("INSERT INTO over_cap_filings (id, inspection_id, enterprise_id, supervising_unit_id, reason, visits_before, yearly_cap, \
                             status, filed_by, filed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)")
                    .bind(&fid).bind(&id).bind(&input.enterprise_id).bind(&district).bind(reason.unwrap_or_default())
                    .bind(visits).bind(cap.unwrap_or_default()).bind(&account).bind(audit.at_ms).execute(&mut *tx).await?;
                Some((fid, visits, cap.unwrap_or_default()))
            } else { None };
            details["code"] = code.clone().into();
            if let Some((fid, v, c)) = &filing {
                details["over_cap_filing"] = serde_json::json!({"id": fid, "visits_before": v, "yearly_cap": c});
            }
            let a = audit.clone().target("inspection", &id).details(details.clone());
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    /// Fail with [`StorageError::WrongState`] unless the inspection is `in_progress`.
    fn require_in_progress(i: &Inspection, what: &str) -> StorageResult<()> {
        if i.status != "in_progress" {
            return Err(StorageError::wrong_state(
                "inspection",
                i.status.clone(),
                format!("{what} only while the inspection is in progress"),
            ));
        }
        Ok(())
    }

    /// Record (upsert) item results while in progress. Item ids must exist.
    pub async fn set_results(
        &self,
        scope: &Scope,
        id: &str,
        results: &[ResultInput],
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let i = self.get(scope, id).await?;
        Self::require_in_progress(&i, "results can be recorded")?;
        let a = audit
            .clone()
            .target("inspection", id)
            .details(serde_json::json!({ "results": results }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            for r in results {
                let keys = serde_json::to_string(&r.photo_keys).unwrap_or_else(|_| "[]".into());
                sqlx::query("INSERT INTO inspection_results (inspection_id, item_id, result, note, photo_keys) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (inspection_id, item_id) DO UPDATE SET result = excluded.result, note = excluded.note, photo_keys = excluded.photo_keys")
                    .bind(id).bind(&r.item_id).bind(&r.result).bind(&r.note).bind(&keys).execute(&mut *tx).await?;
            }
            let n = sqlx::query("UPDATE inspections SET updated_at_ms = $2, version = version + 1 WHERE id = $1 AND status = 'in_progress'")
                .bind(id).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("inspection", "changed", "the inspection was completed or cancelled meanwhile")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The checked items of an inspection, in item-code order.
    pub async fn results(&self, id: &str) -> StorageResult<Vec<ItemResult>> {
        let rows: Vec<(String, String, String, String, String, String)> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT r.item_id, it.code, it.title, r.result, r.note, r.photo_keys FROM inspection_results r \
             JOIN inspection_items it ON it.id = r.item_id WHERE r.inspection_id = $1 ORDER BY it.code")
            .bind(id).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(
                |(item_id, item_code, item_title, result, note, keys)| ItemResult {
                    item_id,
                    item_code,
                    item_title,
                    result,
                    note,
                    photo_keys: serde_json::from_str(&keys).unwrap_or_default(),
                },
            )
            .collect())
    }

    /// Complete an in-progress inspection: at least one item checked, and every item marked
    /// `hazard` has a hazard recorded. Numbers the on-site inspection record.
    pub async fn complete(
        &self,
        scope: &Scope,
        id: &str,
        summary: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Inspection> {
        let i = self.get(scope, id).await?;
        Self::require_in_progress(&i, "completion is possible")?;
        let results = self.results(id).await?;
        if results.is_empty() {
            return Err(StorageError::invalid(
                "results",
                "check at least one item before completing the inspection",
            ));
        }
        let with_hazard: Vec<String> = with_pool!(self.db, p => sqlx::query_scalar(
            "SELECT DISTINCT item_id FROM hazards WHERE inspection_id = $1 AND item_id IS NOT NULL")
            .bind(id).fetch_all(p).await?);
        let missing: Vec<&str> = results
            .iter()
            .filter(|r| r.result == "hazard" && !with_hazard.contains(&r.item_id))
            .map(|r| r.item_code.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(StorageError::invalid(
                "results",
                format!(
                    "items marked as hazard have no hazard recorded: {}",
                    missing.join(", ")
                ),
            ));
        }
        let (short, _) = numbering_unit(self.db, &i.org_unit_id).await?;
        let prefix = doc_prefix(
            &short,
            "检记",
            crate::enforcement::shanghai_year(audit.at_ms),
        );
        let a = audit.clone().target("inspection", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            let number = format!("{prefix}{seq}号");
            let n = sqlx::query("UPDATE inspections SET status = 'completed', completed_at_ms = $2, record_number = $3, summary = $4, \
                                 updated_at_ms = $2, version = version + 1 WHERE id = $1 AND status = 'in_progress'")
                .bind(id).bind(a.at_ms).bind(&number).bind(summary).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("inspection", "changed", "the inspection was completed or cancelled meanwhile")); }
            let a = a.details(serde_json::json!({"record_number": number, "summary": summary}));
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Cancel an in-progress inspection that recorded no hazard.
    pub async fn cancel(
        &self,
        scope: &Scope,
        id: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Inspection> {
        let i = self.get(scope, id).await?;
        Self::require_in_progress(&i, "cancelling is possible")?;
        if i.hazard_count > 0 {
            return Err(StorageError::wrong_state(
                "inspection",
                i.status,
                "an inspection that recorded hazards cannot be cancelled; complete it",
            ));
        }
        let a = audit
            .clone()
            .target("inspection", id)
            .details(serde_json::json!({ "reason": reason }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE inspections SET status = 'cancelled', cancel_reason = $2, updated_at_ms = $3, version = version + 1 \
                                 WHERE id = $1 AND status = 'in_progress'")
                .bind(id).bind(reason).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("inspection", "changed", "the inspection was completed or cancelled meanwhile")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Inspections of the enterprise in a calendar year, cancelled ones excluded.
    pub async fn visits_in_year(&self, enterprise_id: &str, year: i32) -> StorageResult<i64> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM inspections WHERE enterprise_id = $1 AND year = $2 AND status <> 'cancelled'")
            .bind(enterprise_id).bind(year as i64).fetch_one(p).await?))
    }

    /// The over-cap filing of an inspection, if any.
    pub async fn filing_of(&self, inspection_id: &str) -> StorageResult<Option<OverCapFiling>> {
        let sql = format!("{FILING_SELECT} WHERE f.inspection_id = $1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OverCapFiling>(&sql).bind(inspection_id).fetch_optional(p).await?))
    }

    /// Over-cap filings routed to units in `scope`, newest first.
    pub async fn filings(
        &self,
        scope: &Scope,
        status: Option<&str>,
        page: PageRequest,
    ) -> StorageResult<Page<OverCapFiling>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![match scope {
            Scope::All => "1 = 1".to_string(),
            Scope::Subtree(root) => format!(
                "f.supervising_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
                b.s(root.clone())
            ),
        }];
        if let Some(s) = status {
            conds.push(format!("f.status = {}", b.s(s)));
        }
        let wh = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM over_cap_filings f WHERE {wh}");
        let n = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let sql = format!(
            "{FILING_SELECT} WHERE {wh} ORDER BY f.filed_at_ms DESC LIMIT {lim} OFFSET {off}"
        );
        let (total, items) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n]).fetch_one(p).await?;
            let items: Vec<OverCapFiling> = bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?;
            (total, items)
        });
        Ok(Page {
            items,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Acknowledge a pending filing routed to a unit in `scope`.
    pub async fn acknowledge_filing(
        &self,
        scope: &Scope,
        filing_id: &str,
        audit: &AuditEntry,
    ) -> StorageResult<OverCapFiling> {
        let sql = format!("{FILING_SELECT} WHERE f.id = $1");
        let f: OverCapFiling = with_pool!(self.db, p => sqlx::query_as::<_, OverCapFiling>(&sql).bind(filing_id).fetch_optional(p).await?)
            .ok_or(StorageError::NotFound("over-cap filing"))?;
        if !self
            .db
            .org_units()
            .in_scope(scope, &f.supervising_unit_id)
            .await?
        {
            return Err(StorageError::NotFound("over-cap filing"));
        }
        if f.status != "pending" {
            return Err(StorageError::wrong_state(
                "over-cap filing",
                f.status,
                "the filing was already acknowledged",
            ));
        }
        let a = audit.clone().target("over_cap_filing", filing_id);
        let account = a.actor.account_id.clone();
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE over_cap_filings SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at_ms = $3 \
                                 WHERE id = $1 AND status = 'pending'")
                .bind(filing_id).bind(&account).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("over-cap filing", "acknowledged", "the filing was already acknowledged")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        let sql = format!("{FILING_SELECT} WHERE f.id = $1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OverCapFiling>(&sql).bind(filing_id).fetch_one(p).await?))
    }
}

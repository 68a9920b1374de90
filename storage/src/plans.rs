//! Inspection plans (执法检查计划): monthly, quarterly and annual plans of an org unit and their
//! planned visits.
//!
//! ```text
//! draft ──submit──▶ review ──approve──▶ published
//!   ▲                  │
//!   └─────return───────┘
//! ```
//!
//! A monthly plan can be generated as a proposal from the data ([`PlanRepo::propose`]): open
//! hazards due for re-inspection in the month, key units not yet inspected this year, and
//! enterprises under a higher supervision grade (C, D) whose cadence (a year ÷ their inspect-once
//! cap) has come round, never an enterprise already at its yearly cap. Publication numbers the plan
//! and gives every planned visit an inspection code from the same counter as inspections; the
//! inspection started for a visit carries that code and links the visit (execution tracking).
//! Roll-up: published plans of a period (a month, a quarter, a year) summed per brigade.

use crate::db::BeginWrite;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enforcement::{
    end_of_shanghai_day, next_seq, numbering_unit, shanghai_year, unit_condition,
    SHANGHAI_OFFSET_MS,
};
use crate::org_units::{OrgKind, Scope};
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// Why a visit is planned.
pub const REASONS: &[(&str, &str)] = &[
    ("hazard_recheck", "隐患复查"),
    ("key_unit", "重点单位年内未检查"),
    ("grade", "高监管等级到期"),
    ("manual", "人工添加"),
];

/// A plan period in Asia/Shanghai: `2026-12` (month), `2026-Q4` (quarter) or `2026` (year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `month`, `quarter` or `year`.
    pub kind: &'static str,
    /// The canonical label (`2026-12`, `2026-Q4`, `2026`).
    pub label: String,
    /// First millisecond (UTC).
    pub start_ms: i64,
    /// First millisecond after the period (UTC).
    pub end_ms: i64,
    /// Calendar year.
    pub year: i32,
}

impl Period {
    /// Parse a period label; `None` if it is not one (or out of 2000–2100).
    pub fn parse(s: &str) -> Option<Period> {
        let s = s.trim();
        let (year, rest) = match s.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (s, None),
        };
        if year.len() != 4 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        if !(2000..=2100).contains(&year) {
            return None;
        }
        let (kind, first_month, months, label) = match rest {
            None => ("year", 1, 12, format!("{year}")),
            Some(q) if q.len() == 2 && (q.starts_with('Q') || q.starts_with('q')) => {
                let n: u32 = q[1..].parse().ok()?;
                if !(1..=4).contains(&n) {
                    return None;
                }
                ("quarter", (n - 1) * 3 + 1, 3, format!("{year}-Q{n}"))
            }
            Some(m) if m.len() == 2 => {
                let m: u32 = m.parse().ok()?;
                if !(1..=12).contains(&m) {
                    return None;
                }
                ("month", m, 1, format!("{year}-{m:02}"))
            }
            Some(_) => return None,
        };
        let start = NaiveDate::from_ymd_opt(year, first_month, 1)?;
        let end_month = first_month + months;
        let end = if end_month > 12 {
            NaiveDate::from_ymd_opt(year + 1, end_month - 12, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, end_month, 1)?
        };
        let day_start = |d: NaiveDate| end_of_shanghai_day(d.pred_opt().unwrap_or(d)) + 1;
        Some(Period {
            kind,
            label,
            start_ms: day_start(start),
            end_ms: day_start(end),
            year,
        })
    }

    /// The month containing an instant.
    pub fn month_of(at_ms: i64) -> Period {
        let d = chrono::DateTime::from_timestamp_millis(at_ms + SHANGHAI_OFFSET_MS)
            .unwrap_or_default()
            .date_naive();
        Period::parse(&format!("{}-{:02}", d.year(), d.month())).expect("a valid month")
    }

    /// The standard title of `unit_name`'s plan for this period
    /// (`黄浦区大队2026年12月执法检查计划`).
    pub fn plan_title(&self, unit_name: &str) -> String {
        let when = match self.kind {
            "month" => format!(
                "{}年{}月",
                self.year,
                self.label[5..].trim_start_matches('0')
            ),
            "quarter" => format!("{}年第{}季度", self.year, &self.label[6..]),
            _ => format!("{}年度", self.year),
        };
        format!("{unit_name}{when}执法检查计划")
    }

    /// Whether `other` lies within this period.
    pub fn contains(&self, other: &Period) -> bool {
        other.start_ms >= self.start_ms && other.end_ms <= self.end_ms
    }
}

/// A new plan.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// The planning unit (default: the caller's unit).
    #[serde(default)]
    pub org_unit_id: Option<String>,
    /// `2026-12`, `2026-Q4` or `2026`.
    pub period: String,
    /// Title (default: generated from the unit and the period).
    #[serde(default)]
    pub title: Option<String>,
    /// Notes (focus of the period, staffing).
    #[serde(default)]
    pub notes: String,
    /// Target number of inspections (quarterly and annual plans mostly set this).
    #[serde(default)]
    pub target_visits: i64,
}

/// Edit of a draft plan.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanUpdate {
    /// Title.
    pub title: String,
    /// Notes.
    #[serde(default)]
    pub notes: String,
    /// Target number of inspections.
    #[serde(default)]
    pub target_visits: i64,
    /// The version read (optimistic lock).
    pub version: i64,
}

/// Execution of a plan's visits.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Planned visits.
    pub visits: i64,
    /// Completed (inspection completed, or the hazard re-inspected).
    pub completed: i64,
    /// Inspection in progress.
    pub in_progress: i64,
    /// Not started (or the inspection was cancelled).
    pub not_started: i64,
    /// Completed ÷ visits, percent (0 with no visits).
    pub completion_pct: f64,
}

impl Progress {
    fn add(&mut self, status: &str) {
        self.visits += 1;
        match status {
            "completed" => self.completed += 1,
            "in_progress" => self.in_progress += 1,
            _ => self.not_started += 1,
        }
        self.completion_pct = if self.visits == 0 {
            0.0
        } else {
            (self.completed as f64 * 1000.0 / self.visits as f64).round() / 10.0
        };
    }
}

/// A stored plan.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Plan {
    /// Id.
    pub id: String,
    /// Number, given on publication.
    pub number: Option<String>,
    /// Planning unit.
    pub org_unit_id: String,
    /// Its name.
    #[sqlx(default)]
    pub unit_name: String,
    /// `month`, `quarter`, `year`.
    pub period_kind: String,
    /// `2026-12`, `2026-Q4`, `2026`.
    pub period: String,
    /// First instant of the period.
    #[serde(
        rename = "period_start",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub period_start_ms: i64,
    /// First instant after the period.
    #[serde(
        rename = "period_end",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub period_end_ms: i64,
    /// Title.
    pub title: String,
    /// Notes.
    pub notes: String,
    /// Target number of inspections.
    pub target_visits: i64,
    /// `draft`, `review`, `published`.
    pub status: String,
    /// Generated as a proposal from the data.
    pub generated: bool,
    /// Why the review returned it (while back in draft).
    pub return_reason: Option<String>,
    /// Who submitted it for review.
    pub submitted_by: Option<String>,
    /// Submitted.
    #[serde(
        rename = "submitted_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at_ms: Option<i64>,
    /// Who approved it.
    pub reviewed_by: Option<String>,
    /// Published.
    #[serde(
        rename = "published_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at_ms: Option<i64>,
    /// Created.
    #[serde(
        rename = "created_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub created_at_ms: i64,
    /// Version (optimistic lock).
    pub version: i64,
    /// Execution of its visits.
    #[sqlx(skip)]
    pub progress: Progress,
}

/// A planned visit with its execution.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PlanVisit {
    /// Id.
    pub id: String,
    /// Plan.
    pub plan_id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Its name.
    pub enterprise_name: String,
    /// Its supervision grade.
    pub supervision_grade: String,
    /// `hazard_recheck`, `key_unit`, `grade`, `manual`.
    pub reason: String,
    /// The hazard to re-inspect (`hazard_recheck`).
    pub hazard_id: Option<String>,
    /// Its rectification order number.
    pub hazard_number: Option<String>,
    /// Why, in words.
    pub note: String,
    /// Inspection code, given on publication.
    pub inspection_code: Option<String>,
    /// The inspection that executed the visit.
    pub inspection_id: Option<String>,
    /// Its state.
    #[serde(skip)]
    pub inspection_status: Option<String>,
    /// When the hazard was last re-inspected.
    #[serde(skip)]
    pub hazard_reinspected_at_ms: Option<i64>,
    /// When the visit was planned (a re-inspection before it does not execute it).
    #[serde(skip)]
    pub created_at_ms: i64,
    /// `not_started`, `in_progress`, `completed`, `cancelled`.
    #[sqlx(default)]
    pub status: String,
}

impl PlanVisit {
    fn derive_status(&mut self) {
        self.status = match self.inspection_status.as_deref() {
            Some("completed") => "completed",
            Some("in_progress") => "in_progress",
            Some("cancelled") => "cancelled",
            _ if self
                .hazard_reinspected_at_ms
                .is_some_and(|t| t >= self.created_at_ms) =>
            {
                "completed"
            }
            _ => "not_started",
        }
        .into();
    }
}

/// A visit the proposal suggests.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProposedVisit {
    /// Enterprise.
    pub enterprise_id: String,
    /// Reason code.
    pub reason: String,
    /// Hazard to re-inspect.
    pub hazard_id: Option<String>,
    /// Why, in words.
    pub note: String,
}

/// One row of the roll-up: a brigade (or the corps) in a period.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RollupRow {
    /// Unit.
    pub org_unit_id: String,
    /// Its name.
    pub unit_name: String,
    /// Published plans in the period.
    pub plans: i64,
    /// Their target inspections.
    pub target_visits: i64,
    /// Planned visits and their execution.
    #[serde(flatten)]
    pub progress: Progress,
    /// Inspections in the period that belong to no plan (complaints, referrals, triggered …).
    pub unplanned_inspections: i64,
    /// Hazards found by the planned inspections.
    pub hazards_found: i64,
}

/// The roll-up of a period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rollup {
    /// The period.
    pub period: String,
    /// `month`, `quarter`, `year`.
    pub period_kind: String,
    /// One row per unit.
    pub rows: Vec<RollupRow>,
    /// All rows summed.
    pub total: RollupRow,
}

/// Plan list filter.
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    /// `month`, `quarter`, `year`.
    pub period_kind: Option<String>,
    /// `draft`, `review`, `published`.
    pub status: Option<String>,
    /// Plans whose period lies within this one.
    pub within: Option<Period>,
    /// Planning unit.
    pub org_unit_id: Option<String>,
}

/// The plan repository.
#[derive(Debug, Clone, Copy)]
pub struct PlanRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Inspection plans.
    pub fn plans(&self) -> PlanRepo<'_> {
        PlanRepo { db: self }
    }
}

const COLS: &str = "p.id, p.number, p.org_unit_id, p.period_kind, p.period, p.period_start_ms, p.period_end_ms, p.title, p.notes, \
     p.target_visits, p.status, p.generated, p.return_reason, p.submitted_by, p.submitted_at_ms, p.reviewed_by, p.published_at_ms, \
     p.created_at_ms, p.version";

const VISIT_SELECT: &str = "SELECT v.id, v.plan_id, v.enterprise_id, e.name AS enterprise_name, e.supervision_grade, v.reason, v.hazard_id, \
     h.order_number AS hazard_number, v.note, v.inspection_code, v.inspection_id, i.status AS inspection_status, \
     h.reinspected_at_ms AS hazard_reinspected_at_ms, v.created_at_ms FROM plan_visits v JOIN enterprises e ON e.id = v.enterprise_id \
     LEFT JOIN inspections i ON i.id = v.inspection_id LEFT JOIN hazards h ON h.id = v.hazard_id";

const DAY_MS: i64 = 86_400_000;

impl PlanRepo<'_> {
    async fn decorate(&self, mut plans: Vec<Plan>) -> StorageResult<Vec<Plan>> {
        let names = self.db.org_unit_names().await?;
        for p in &mut plans {
            p.unit_name = names.get(&p.org_unit_id).cloned().unwrap_or_default();
            let mut progress = Progress::default();
            for v in self.visits(&p.id).await? {
                progress.add(&v.status);
            }
            p.progress = progress;
        }
        Ok(plans)
    }

    /// One plan visible to `scope` (its unit's subtree, or everything for the corps).
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Plan> {
        let mut b = SqlBuilder::default();
        let cond = unit_condition("p", &self.db.scope_units(scope).await?, &mut b);
        let idp = b.s(id);
        let sql = format!("SELECT {COLS} FROM plans p WHERE p.id = {idp} AND {cond}");
        let p: Option<Plan> = with_pool!(self.db, pool => bind_args!(sqlx::query_as(&sql), b.args).fetch_optional(pool).await?);
        let p = p.ok_or(StorageError::NotFound("plan"))?;
        Ok(self.decorate(vec![p]).await?.remove(0))
    }

    /// The visits of a plan, by enterprise name.
    pub async fn visits(&self, plan_id: &str) -> StorageResult<Vec<PlanVisit>> {
        let sql = format!("{VISIT_SELECT} WHERE v.plan_id = $1 ORDER BY v.reason, e.name, v.id");
        let mut vs: Vec<PlanVisit> =
            with_pool!(self.db, p => sqlx::query_as(&sql).bind(plan_id).fetch_all(p).await?);
        for v in &mut vs {
            v.derive_status();
        }
        Ok(vs)
    }

    /// Visits not yet started of the published plans in scope whose period covers `at_ms`
    /// (the workbench's "planned this month"), period end first, at most `limit`.
    pub async fn open_visits(
        &self,
        scope: &Scope,
        at_ms: i64,
        limit: i64,
    ) -> StorageResult<Vec<PlanVisit>> {
        let mut b = SqlBuilder::default();
        let cond = unit_condition("p", &self.db.scope_units(scope).await?, &mut b);
        let at = b.i(at_ms);
        let at2 = b.i(at_ms);
        let lim = b.i(limit);
        let sql = format!(
            "{VISIT_SELECT} JOIN plans p ON p.id = v.plan_id WHERE {cond} AND p.status = 'published' \
             AND p.period_start_ms <= {at} AND p.period_end_ms > {at2} AND v.inspection_id IS NULL AND (h.reinspected_at_ms IS NULL OR h.reinspected_at_ms < v.created_at_ms) \
             ORDER BY p.period_end_ms, e.name, v.id LIMIT {lim}"
        );
        let mut vs: Vec<PlanVisit> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        for v in &mut vs {
            v.derive_status();
        }
        Ok(vs)
    }

    /// One visit (no scope check: callers check the plan).
    pub async fn visit(&self, id: &str) -> StorageResult<PlanVisit> {
        let sql = format!("{VISIT_SELECT} WHERE v.id = $1");
        let v: Option<PlanVisit> =
            with_pool!(self.db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        let mut v = v.ok_or(StorageError::NotFound("plan visit"))?;
        v.derive_status();
        Ok(v)
    }

    /// The open (unexecuted) visit for `enterprise_id` in a published plan of `unit_id`'s
    /// brigade whose period covers `at_ms`, if there is one.
    pub async fn open_visit_for(
        &self,
        unit_id: &str,
        enterprise_id: &str,
        at_ms: i64,
    ) -> StorageResult<Option<String>> {
        let owner = self.owner_unit(unit_id).await?;
        let id: Option<String> = with_pool!(self.db, p => sqlx::query_scalar(
            "SELECT v.id FROM plan_visits v JOIN plans p ON p.id = v.plan_id WHERE v.enterprise_id = $1 AND v.inspection_id IS NULL \
             AND p.status = 'published' AND p.org_unit_id = $2 AND p.period_start_ms <= $3 AND p.period_end_ms > $3 \
             ORDER BY p.period_end_ms - p.period_start_ms, v.id LIMIT 1")
            .bind(enterprise_id).bind(&owner).bind(at_ms).fetch_optional(p).await?);
        Ok(id)
    }

    /// The unit whose plans cover `unit_id`: its brigade, else the unit itself.
    pub async fn owner_unit(&self, unit_id: &str) -> StorageResult<String> {
        Ok(self
            .db
            .org_units()
            .ancestor_of_kind(unit_id, OrgKind::Brigade)
            .await?
            .map(|u| u.id)
            .unwrap_or_else(|| unit_id.to_string()))
    }

    /// A page of plans in scope, newest period first.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &PlanFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Plan>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![unit_condition(
            "p",
            &self.db.scope_units(scope).await?,
            &mut b,
        )];
        if let Some(v) = &f.period_kind {
            conds.push(format!("p.period_kind = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.status {
            conds.push(format!("p.status = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.org_unit_id {
            conds.push(format!("p.org_unit_id = {}", b.s(v.clone())));
        }
        if let Some(w) = &f.within {
            conds.push(format!(
                "p.period_start_ms >= {} AND p.period_end_ms <= {}",
                b.i(w.start_ms),
                b.i(w.end_ms)
            ));
        }
        let wh = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM plans p WHERE {wh}");
        let n = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let sql = format!(
            "SELECT {COLS} FROM plans p WHERE {wh} ORDER BY p.period_start_ms DESC, p.period_end_ms, p.org_unit_id LIMIT {lim} OFFSET {off}"
        );
        let (total, items): (i64, Vec<Plan>) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n]).fetch_one(p).await?;
            let items = bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?;
            (total, items)
        });
        Ok(Page {
            items: self.decorate(items).await?,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Suggest the visits of `unit_id`'s monthly plan for `month`, at most `max` of them, most
    /// pressing first: hazards due for re-inspection by the month's end (overdue ones too), key
    /// units of the year not yet inspected, then grade C/D enterprises whose cadence has come
    /// round. Enterprises at their yearly cap are left out, except for hazard re-inspections
    /// (a re-inspection is not a new inspection).
    pub async fn propose(
        &self,
        unit_id: &str,
        month: &Period,
        max: usize,
    ) -> StorageResult<Vec<ProposedVisit>> {
        let scope = Scope::Subtree(unit_id.to_string());
        let year = month.year as i64;
        let mut out: Vec<ProposedVisit> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();

        // 1. Hazards due for re-inspection.
        let mut b = SqlBuilder::default();
        let cond = unit_condition("h", &self.db.scope_units(&scope).await?, &mut b);
        let end = b.i(month.end_ms);
        let sql = format!(
            "SELECT h.enterprise_id, h.id, h.order_number, h.reinspection_due_ms FROM hazards h \
             WHERE {cond} AND h.status IN ('rectifying','rectified') AND h.reinspection_due_ms < {end} \
             ORDER BY h.reinspection_due_ms, h.id"
        );
        let hazards: Vec<(String, String, String, i64)> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        for (ent, hid, number, due) in hazards {
            if out.len() >= max {
                return Ok(out);
            }
            if seen.insert(ent.clone()) {
                let overdue = if due < month.start_ms {
                    "（已逾期）"
                } else {
                    ""
                };
                out.push(ProposedVisit {
                    enterprise_id: ent,
                    reason: "hazard_recheck".into(),
                    hazard_id: Some(hid),
                    note: format!(
                        "隐患{number}应于{}前复查{overdue}",
                        crate::enforcement::shanghai_date(due)
                    ),
                });
            }
        }

        // Enterprises of the unit with their cap, visits this year and last visit.
        let mut b = SqlBuilder::default();
        let cond = crate::enterprises::scope_condition(&scope, &mut b);
        let y = b.i(year);
        let y2 = b.i(year);
        let sql = format!(
            "SELECT e.id, e.supervision_grade, c.yearly_cap, \
             (SELECT COUNT(*) FROM inspections i WHERE i.enterprise_id = e.id AND i.year = {y} AND i.status <> 'cancelled') AS visits, \
             (SELECT MAX(i.started_at_ms) FROM inspections i WHERE i.enterprise_id = e.id AND i.status <> 'cancelled') AS last_ms, \
             EXISTS (SELECT 1 FROM enterprise_key_units k WHERE k.enterprise_id = e.id AND k.year = {y2}) AS key_unit \
             FROM enterprises e LEFT JOIN inspection_caps c ON c.sector = e.sector AND c.grade = e.supervision_grade \
             WHERE {cond} AND e.status = 'operating' ORDER BY e.supervision_grade DESC, e.name, e.id"
        );
        type Row = (String, String, Option<i64>, i64, Option<i64>, bool);
        let rows: Vec<Row> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        let under_cap = |cap: Option<i64>, visits: i64| cap.is_none_or(|c| visits < c);

        // 2. Key units not inspected this year.
        for (id, grade, cap, visits, _, key) in &rows {
            if out.len() >= max {
                return Ok(out);
            }
            if *key && *visits == 0 && under_cap(*cap, *visits) && seen.insert(id.clone()) {
                out.push(ProposedVisit {
                    enterprise_id: id.clone(),
                    reason: "key_unit".into(),
                    hazard_id: None,
                    note: format!("{}年度重点单位，今年尚未检查（{grade}级）", month.year),
                });
            }
        }

        // 3. Grade C/D enterprises whose cadence has come round, longest unvisited first.
        let mut due: Vec<&Row> = rows
            .iter()
            .filter(|(id, grade, cap, visits, last, _)| {
                let Some(c) = cap.filter(|c| *c > 0) else {
                    return false;
                };
                let interval = 365 * DAY_MS / c;
                matches!(grade.as_str(), "C" | "D")
                    && under_cap(*cap, *visits)
                    && !seen.contains(id)
                    && last.is_none_or(|l| l + interval <= month.end_ms)
            })
            .collect();
        due.sort_by_key(|(_, grade, _, _, last, _)| {
            (std::cmp::Reverse(grade.clone()), last.unwrap_or(0))
        });
        for (id, grade, cap, visits, last, _) in due {
            if out.len() >= max {
                break;
            }
            let last = last
                .map(|l| format!("上次检查{}", crate::enforcement::shanghai_date(l)))
                .unwrap_or_else(|| "从未检查".into());
            out.push(ProposedVisit {
                enterprise_id: id.clone(),
                reason: "grade".into(),
                hazard_id: None,
                note: format!(
                    "{grade}级，年度检查上限{}次，今年已查{visits}次，{last}",
                    cap.unwrap_or_default()
                ),
            });
        }
        Ok(out)
    }

    /// Create a draft plan with `visits` (validated by the caller). A unit has one plan per
    /// period: a second one is [`StorageError::Duplicate`] on `period`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        unit_id: &str,
        period: &Period,
        title: &str,
        notes: &str,
        target_visits: i64,
        generated: bool,
        visits: &[ProposedVisit],
        audit: &AuditEntry,
    ) -> StorageResult<String> {
        let id = crate::new_id();
        let now = audit.at_ms;
        let account = audit.actor.account_id.clone();
        let a = audit.clone().target("plan", &id).details(serde_json::json!({
            "org_unit_id": unit_id, "period": period.label, "title": title, "target_visits": target_visits,
            "generated": generated, "visits": visits.len(),
        }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let exists: Option<String> = sqlx::query_scalar("SELECT status FROM plans WHERE org_unit_id = $1 AND period = $2")
                .bind(unit_id).bind(&period.label).fetch_optional(&mut *tx).await?;
            if exists.is_some() {
                return Err(StorageError::Duplicate { field: "period".into() });
            }
            sqlx::query("INSERT INTO plans (id, org_unit_id, period_kind, period, period_start_ms, period_end_ms, title, notes, target_visits, \
                         status, generated, created_by, created_at_ms, updated_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $11, $12, $12, 1)")
                .bind(&id).bind(unit_id).bind(period.kind).bind(&period.label).bind(period.start_ms).bind(period.end_ms)
                .bind(title).bind(notes).bind(target_visits).bind(generated).bind(&account).bind(now)
                .execute(&mut *tx).await?;
            for v in visits {
                sqlx::query("INSERT INTO plan_visits (id, plan_id, enterprise_id, reason, hazard_id, note, created_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(crate::new_id()).bind(&id).bind(&v.enterprise_id).bind(&v.reason).bind(&v.hazard_id)
                    .bind(&v.note).bind(now).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    fn require(plan: &Plan, states: &[&str], what: &str) -> StorageResult<()> {
        if states.contains(&plan.status.as_str()) {
            Ok(())
        } else {
            Err(StorageError::wrong_state(
                "plan",
                plan.status.clone(),
                format!("{what} needs the plan to be {}", states.join(" or ")),
            ))
        }
    }

    /// Edit a draft plan's title, notes and target.
    pub async fn update(
        &self,
        plan: &Plan,
        u: &PlanUpdate,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        Self::require(plan, &["draft"], "editing")?;
        let a = audit
            .clone()
            .target("plan", &plan.id)
            .details(serde_json::to_value(u).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE plans SET title = $2, notes = $3, target_visits = $4, updated_at_ms = $5, version = version + 1 \
                                 WHERE id = $1 AND version = $6 AND status = 'draft'")
                .bind(&plan.id).bind(u.title.trim()).bind(u.notes.trim()).bind(u.target_visits).bind(a.at_ms).bind(u.version)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Add a visit to a draft plan, or to a published one (a plan adjustment: the visit gets its
    /// inspection code at once).
    pub async fn add_visit(
        &self,
        plan: &Plan,
        enterprise_id: &str,
        note: &str,
        audit: &AuditEntry,
    ) -> StorageResult<String> {
        Self::require(plan, &["draft", "published"], "adding a visit")?;
        let id = crate::new_id();
        let prefix = if plan.status == "published" {
            let (_, unit_code) = numbering_unit(self.db, &plan.org_unit_id).await?;
            Some(format!(
                "JC{unit_code}{}",
                shanghai_year(plan.period_start_ms)
            ))
        } else {
            None
        };
        let mut a = audit.clone().target("plan", &plan.id).details(
            serde_json::json!({"visit_id": id, "enterprise_id": enterprise_id, "note": note}),
        );
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let dup: Option<String> = sqlx::query_scalar("SELECT id FROM plan_visits WHERE plan_id = $1 AND enterprise_id = $2")
                .bind(&plan.id).bind(enterprise_id).fetch_optional(&mut *tx).await?;
            if dup.is_some() {
                return Err(StorageError::Duplicate { field: "enterprise_id".into() });
            }
            let code = match &prefix {
                Some(prefix) => Some(format!("{prefix}{:06}", next_seq!(&mut *tx, prefix))),
                None => None,
            };
            sqlx::query("INSERT INTO plan_visits (id, plan_id, enterprise_id, reason, note, inspection_code, created_at_ms) \
                         VALUES ($1, $2, $3, 'manual', $4, $5, $6)")
                .bind(&id).bind(&plan.id).bind(enterprise_id).bind(note).bind(&code).bind(a.at_ms)
                .execute(&mut *tx).await?;
            let n = sqlx::query("UPDATE plans SET updated_at_ms = $2, version = version + 1 WHERE id = $1 AND status = $3")
                .bind(&plan.id).bind(a.at_ms).bind(&plan.status).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("plan", "changed", "the plan's state changed meanwhile")); }
            a.details["inspection_code"] = code.into();
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    /// Remove a visit: from a draft plan, or from a published one while no inspection executed it.
    pub async fn remove_visit(
        &self,
        plan: &Plan,
        visit: &PlanVisit,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        Self::require(plan, &["draft", "published"], "removing a visit")?;
        if visit.inspection_id.is_some() {
            return Err(StorageError::wrong_state(
                "plan visit",
                visit.status.clone(),
                "an inspection already executed this visit",
            ));
        }
        let a = audit.clone().target("plan", &plan.id).details(serde_json::json!({
            "visit_id": visit.id, "enterprise_id": visit.enterprise_id, "inspection_code": visit.inspection_code,
        }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("DELETE FROM plan_visits WHERE id = $1 AND plan_id = $2 AND inspection_id IS NULL")
                .bind(&visit.id).bind(&plan.id).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("plan visit", "changed", "the visit changed meanwhile")); }
            sqlx::query("UPDATE plans SET updated_at_ms = $2, version = version + 1 WHERE id = $1")
                .bind(&plan.id).bind(a.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Move the plan from one state to another with extra column settings (SQL fragment with
    /// `$3…` parameters bound from `extra`).
    async fn transition(
        &self,
        plan: &Plan,
        from: &str,
        to: &str,
        set_sql: &str,
        extra: Vec<Option<String>>,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        Self::require(plan, &[from], &format!("moving it to {to}"))?;
        let a = audit
            .clone()
            .target("plan", &plan.id)
            .details(serde_json::json!({"from": from, "to": to, "set": extra}));
        let sql = format!(
            "UPDATE plans SET status = '{to}', updated_at_ms = $2, version = version + 1{set_sql} WHERE id = $1 AND status = '{from}'"
        );
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let mut q = sqlx::query(&sql).bind(&plan.id).bind(a.at_ms);
            for v in &extra { q = q.bind(v); }
            let n = q.execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("plan", "changed", "the plan's state changed meanwhile")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Submit a draft for internal review.
    pub async fn submit(&self, plan: &Plan, audit: &AuditEntry) -> StorageResult<()> {
        let visits = self.visits(&plan.id).await?.len();
        if visits == 0 && plan.target_visits == 0 {
            return Err(StorageError::wrong_state(
                "plan",
                plan.status.clone(),
                "the plan has neither planned visits nor a target",
            ));
        }
        self.transition(
            plan,
            "draft",
            "review",
            ", return_reason = NULL, submitted_by = $3, submitted_at_ms = $2",
            vec![audit.actor.account_id.clone()],
            audit,
        )
        .await
    }

    /// Return a plan under review to draft with a reason.
    pub async fn return_plan(
        &self,
        plan: &Plan,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        self.transition(
            plan,
            "review",
            "draft",
            ", return_reason = $3",
            vec![Some(reason.to_string())],
            audit,
        )
        .await
    }

    /// Approve a plan under review: publish it, number it and give every visit its inspection
    /// code.
    pub async fn approve(&self, plan: &Plan, audit: &AuditEntry) -> StorageResult<()> {
        Self::require(plan, &["review"], "approval")?;
        let (_, unit_code) = numbering_unit(self.db, &plan.org_unit_id).await?;
        let number = format!("JH{unit_code}-{}", plan.period);
        let prefix = format!("JC{unit_code}{}", shanghai_year(plan.period_start_ms));
        let account = audit.actor.account_id.clone();
        let mut a = audit
            .clone()
            .target("plan", &plan.id)
            .details(serde_json::json!({"from": "review", "to": "published", "number": number}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE plans SET status = 'published', number = $2, reviewed_by = $3, published_at_ms = $4, \
                                 updated_at_ms = $4, version = version + 1 WHERE id = $1 AND status = 'review'")
                .bind(&plan.id).bind(&number).bind(&account).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("plan", "changed", "the plan's state changed meanwhile")); }
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT v.id FROM plan_visits v JOIN enterprises e ON e.id = v.enterprise_id WHERE v.plan_id = $1 AND v.inspection_code IS NULL \
                 ORDER BY v.reason, e.name, v.id")
                .bind(&plan.id).fetch_all(&mut *tx).await?;
            for vid in &ids {
                let seq = next_seq!(&mut *tx, &prefix);
                sqlx::query("UPDATE plan_visits SET inspection_code = $2 WHERE id = $1")
                    .bind(vid).bind(format!("{prefix}{seq:06}")).execute(&mut *tx).await?;
            }
            a.details["codes"] = ids.len().into();
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Delete a draft plan and its visits.
    pub async fn delete(&self, plan: &Plan, audit: &AuditEntry) -> StorageResult<()> {
        Self::require(plan, &["draft"], "deleting")?;
        let a = audit
            .clone()
            .target("plan", &plan.id)
            .details(serde_json::json!({"period": plan.period, "org_unit_id": plan.org_unit_id}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM plan_visits WHERE plan_id = $1").bind(&plan.id).execute(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM plans WHERE id = $1 AND status = 'draft'")
                .bind(&plan.id).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::wrong_state("plan", "changed", "the plan's state changed meanwhile")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The roll-up of `period` over the published plans in scope whose period lies within it,
    /// one row per planning unit, with the inspections of the period that no plan covers.
    pub async fn rollup(&self, scope: &Scope, period: &Period) -> StorageResult<Rollup> {
        let names = self.db.org_unit_names().await?;
        let mut rows: BTreeMap<String, RollupRow> = BTreeMap::new();

        let mut b = SqlBuilder::default();
        let cond = unit_condition("p", &self.db.scope_units(scope).await?, &mut b);
        let s = b.i(period.start_ms);
        let e = b.i(period.end_ms);
        let sql = format!(
            "SELECT p.org_unit_id, p.target_visits, p.id FROM plans p WHERE {cond} AND p.status = 'published' \
             AND p.period_start_ms >= {s} AND p.period_end_ms <= {e}"
        );
        let plans: Vec<(String, i64, String)> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        fn entry<'r>(
            rows: &'r mut BTreeMap<String, RollupRow>,
            names: &HashMap<String, String>,
            unit: &str,
        ) -> &'r mut RollupRow {
            rows.entry(unit.to_string()).or_insert_with(|| RollupRow {
                org_unit_id: unit.to_string(),
                unit_name: names.get(unit).cloned().unwrap_or_default(),
                ..Default::default()
            })
        }
        let mut plan_unit: HashMap<String, String> = HashMap::new();
        for (unit, target, id) in &plans {
            let r = entry(&mut rows, &names, unit);
            r.plans += 1;
            r.target_visits += target;
            plan_unit.insert(id.clone(), unit.clone());
        }
        // Visits and the hazards their inspections found.
        let mut b = SqlBuilder::default();
        let cond = unit_condition("p", &self.db.scope_units(scope).await?, &mut b);
        let s = b.i(period.start_ms);
        let e = b.i(period.end_ms);
        let sql = format!(
            "SELECT v.plan_id, i.status, h.reinspected_at_ms, v.created_at_ms, \
             (SELECT COUNT(*) FROM hazards hz WHERE hz.inspection_id = v.inspection_id) \
             FROM plan_visits v JOIN plans p ON p.id = v.plan_id LEFT JOIN inspections i ON i.id = v.inspection_id \
             LEFT JOIN hazards h ON h.id = v.hazard_id \
             WHERE {cond} AND p.status = 'published' AND p.period_start_ms >= {s} AND p.period_end_ms <= {e}"
        );
        type VisitRow = (String, Option<String>, Option<i64>, i64, i64);
        let visits: Vec<VisitRow> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        for (plan_id, istatus, reinspected, created, hazards) in visits {
            let Some(unit) = plan_unit.get(&plan_id) else {
                continue;
            };
            let mut v = PlanVisit {
                id: String::new(),
                plan_id,
                enterprise_id: String::new(),
                enterprise_name: String::new(),
                supervision_grade: String::new(),
                reason: String::new(),
                hazard_id: None,
                hazard_number: None,
                note: String::new(),
                inspection_code: None,
                inspection_id: None,
                inspection_status: istatus,
                hazard_reinspected_at_ms: reinspected,
                created_at_ms: created,
                status: String::new(),
            };
            v.derive_status();
            let r = entry(&mut rows, &names, unit);
            r.progress.add(&v.status);
            r.hazards_found += hazards;
        }
        // Inspections of the period that no plan covers, by the brigade that made them.
        let mut b = SqlBuilder::default();
        let cond = unit_condition("i", &self.db.scope_units(scope).await?, &mut b);
        let s = b.i(period.start_ms);
        let e = b.i(period.end_ms);
        let sql = format!(
            "SELECT i.org_unit_id, COUNT(*) FROM inspections i WHERE {cond} AND i.started_at_ms >= {s} AND i.started_at_ms < {e} \
             AND i.status <> 'cancelled' AND NOT EXISTS (SELECT 1 FROM plan_visits v WHERE v.inspection_id = i.id) \
             GROUP BY i.org_unit_id"
        );
        let unplanned: Vec<(String, i64)> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        let mut owners: HashMap<String, String> = HashMap::new();
        for (unit, n) in unplanned {
            let owner = match owners.get(&unit) {
                Some(o) => o.clone(),
                None => {
                    let o = self.owner_unit(&unit).await?;
                    owners.insert(unit.clone(), o.clone());
                    o
                }
            };
            entry(&mut rows, &names, &owner).unplanned_inspections += n;
        }
        let mut rows: Vec<RollupRow> = rows.into_values().collect();
        rows.sort_by(|a, b| a.unit_name.cmp(&b.unit_name));
        let mut total = RollupRow {
            org_unit_id: String::new(),
            unit_name: "合计".into(),
            ..Default::default()
        };
        for r in &rows {
            total.plans += r.plans;
            total.target_visits += r.target_visits;
            total.unplanned_inspections += r.unplanned_inspections;
            total.hazards_found += r.hazards_found;
            total.progress.visits += r.progress.visits;
            total.progress.completed += r.progress.completed;
            total.progress.in_progress += r.progress.in_progress;
            total.progress.not_started += r.progress.not_started;
        }
        if total.progress.visits > 0 {
            total.progress.completion_pct =
                (total.progress.completed as f64 * 1000.0 / total.progress.visits as f64).round()
                    / 10.0;
        }
        Ok(Rollup {
            period: period.label.clone(),
            period_kind: period.kind.into(),
            rows,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_to_shanghai_bounds() {
        let m = Period::parse("2026-12").unwrap();
        assert_eq!(m.kind, "month");
        // 2026-12-01T00:00+08:00 = 2026-11-30T16:00Z
        assert_eq!(
            crate::enforcement::rfc3339::format(m.start_ms),
            "2026-11-30T16:00:00.000Z"
        );
        assert_eq!(
            crate::enforcement::rfc3339::format(m.end_ms),
            "2026-12-31T16:00:00.000Z"
        );
        let q = Period::parse("2026-q4").unwrap();
        assert_eq!(q.label, "2026-Q4");
        assert_eq!(q.start_ms, Period::parse("2026-10").unwrap().start_ms);
        assert_eq!(q.end_ms, m.end_ms);
        let y = Period::parse("2026").unwrap();
        assert_eq!(y.start_ms, Period::parse("2026-01").unwrap().start_ms);
        assert!(y.contains(&q) && q.contains(&m) && !m.contains(&q));
        for bad in [
            "",
            "2026-13",
            "2026-Q5",
            "26-01",
            "2026-1",
            "2026-Q",
            "abcd",
            "1999",
            "2026-12-01",
        ] {
            assert!(Period::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Period::month_of(m.start_ms).label, "2026-12");
        assert_eq!(Period::month_of(m.start_ms - 1).label, "2026-11");
    }

    #[test]
    fn progress_counts_and_rounds() {
        let mut p = Progress::default();
        for s in ["completed", "in_progress", "not_started"] {
            p.add(s);
        }
        assert_eq!(
            (p.visits, p.completed, p.in_progress, p.not_started),
            (3, 1, 1, 1)
        );
        assert_eq!(p.completion_pct, 33.3);
    }
}

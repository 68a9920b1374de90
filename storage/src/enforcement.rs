//! What the enforcement workflows share: legal deadlines (a table, not code), the inspect-once
//! caps, document numbering, the enforcement-document list, calendar years in Asia/Shanghai, and
//! the SQL bounding rows by the handling unit.

use crate::db::BeginWrite;
use chrono::{Datelike, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{with_pool, SqlBuilder};
use crate::org_units::Scope;
use crate::{Db, StorageError, StorageResult};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Offset of Asia/Shanghai from UTC (no daylight saving since 1991).
pub const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;

/// Supervision grades, best first.
pub const GRADES: &[&str] = &["A", "B", "C", "D"];

/// The calendar year in Asia/Shanghai of an instant.
pub fn shanghai_year(at_ms: i64) -> i32 {
    chrono::DateTime::from_timestamp_millis(at_ms + SHANGHAI_OFFSET_MS)
        .map(|d| d.year())
        .unwrap_or(1970)
}

/// The last millisecond of a Shanghai calendar day (`2026-12-10` → 2026-12-10T23:59:59.999+08:00).
pub fn end_of_shanghai_day(date: NaiveDate) -> i64 {
    let start = chrono::Utc
        .from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .timestamp_millis()
        - SHANGHAI_OFFSET_MS;
    start + DAY_MS - 1
}

/// `YYYY-MM-DD` in Asia/Shanghai of an instant.
pub fn shanghai_date(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms + SHANGHAI_OFFSET_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Serde helpers writing `*_ms` fields as RFC 3339 UTC strings, the API's time format.
pub mod rfc3339 {
    /// Milliseconds to `2026-11-22T01:02:03.456Z`.
    pub fn format(ms: i64) -> String {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Serialize ms as RFC 3339.
    pub fn ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    /// Serialize optional ms as RFC 3339 or null.
    pub fn ms_opt<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(v) => s.serialize_str(&format(*v)),
            None => s.serialize_none(),
        }
    }
}

/// A legal deadline rule.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadlineRule {
    /// Step code (`reinspection`, `case_decision`, `fine_payment`, …).
    pub step: String,
    /// Days allowed.
    pub days: i64,
    /// Chinese name of the step.
    pub name: String,
    /// Legal source.
    pub source: String,
}

/// An inspect-once cap: yearly visits of an enterprise of a sector and grade.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InspectionCap {
    /// Supervised sector code (01–06).
    pub sector: String,
    /// Supervision grade A–D.
    pub grade: String,
    /// Inspections allowed per calendar year.
    pub yearly_cap: i64,
}

/// An enforcement document type (the 2016 document set, DOMAIN.md).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct DocType {
    /// Code (`D01`…`D35`, `D36` filing approval, `D37` service receipt).
    pub code: &'static str,
    /// Chinese name.
    pub name: &'static str,
    /// Abbreviation used in its number (`沪黄浦应急罚〔2026〕3号`).
    pub abbr: &'static str,
}

macro_rules! doc {
    ($c:literal, $n:literal, $a:literal) => {
        DocType {
            code: $c,
            name: $n,
            abbr: $a,
        }
    };
}

/// The enforcement documents, numbered as public systems number them.
pub const DOC_TYPES: &[DocType] = &[
    doc!("D01", "询问通知书", "询通"),
    doc!("D02", "询问笔录", "询录"),
    doc!("D03", "勘验笔录", "勘验"),
    doc!("D04", "抽样取证凭证", "抽样"),
    doc!("D05", "先行登记保存证据审批表", "先保审"),
    doc!("D06", "先行登记保存证据通知书", "先保通"),
    doc!("D07", "先行登记保存证据处理审批表", "先处审"),
    doc!("D08", "先行登记保存证据处理决定书", "先处决"),
    doc!("D09", "现场检查记录", "检记"),
    doc!("D10", "现场处理措施决定书", "现决"),
    doc!("D11", "责令限期整改指令书", "责改"),
    doc!("D12", "整改复查意见书", "复查"),
    doc!("D13", "强制措施决定书", "强措"),
    doc!("D14", "鉴定委托书", "鉴委"),
    doc!("D15", "行政处罚告知书", "罚告"),
    doc!("D16", "当事人陈述申辩笔录", "申辩"),
    doc!("D17", "听证告知书", "听告"),
    doc!("D18", "听证会通知书", "听通"),
    doc!("D19", "听证笔录", "听录"),
    doc!("D20", "听证会报告书", "听报"),
    doc!("D21", "案件处理呈批表", "呈批"),
    doc!("D22", "行政处罚集体讨论记录", "集讨"),
    doc!("D23", "行政（当场）处罚决定书（单位）", "当罚"),
    doc!("D24", "行政（当场）处罚决定书（个人）", "当罚个"),
    doc!("D25", "行政处罚决定书（单位）", "罚"),
    doc!("D26", "行政处罚决定书（个人）", "罚个"),
    doc!("D27", "罚款催缴通知书", "催缴"),
    doc!("D28", "延期（分期）缴纳罚款审批表", "延缴审"),
    doc!("D29", "延期（分期）缴纳罚款批准书", "延缴"),
    doc!("D30", "强制执行申请书", "强执"),
    doc!("D31", "结案审批表", "结"),
    doc!("D32", "案件移送审批表", "移审"),
    doc!("D33", "案件移送书", "移"),
    doc!("D34", "调查报告", "调报"),
    doc!("D35", "特殊事项审批表", "特审"),
    doc!("D36", "立案审批表", "立"),
    doc!("D37", "文书送达回执", "送达"),
];

/// The document type of `code`.
pub fn doc_type(code: &str) -> Option<&'static DocType> {
    DOC_TYPES.iter().find(|d| d.code == code)
}

/// The SQL condition bounding rows of alias `alias` (with an `org_unit_id` column) to a scope.
pub(crate) fn unit_condition(
    alias: &str,
    units: &Option<std::sync::Arc<Vec<String>>>,
    b: &mut SqlBuilder,
) -> String {
    match units {
        None => "1 = 1".to_string(),
        Some(ids) if ids.is_empty() => "1 = 0".to_string(),
        Some(ids) => {
            let ph: Vec<String> = ids.iter().map(|u| b.s(u.clone())).collect();
            format!("{alias}.org_unit_id IN ({})", ph.join(", "))
        }
    }
}

/// The short name of a unit used in document numbers: "黄浦区大队" → "黄浦", the corps → "市".
pub fn unit_short_name(name: &str, is_root: bool) -> String {
    if is_root {
        return "市".into();
    }
    let mut s = name.to_string();
    // "浦东新区应急管理局执法大队" → "浦东": the unit word, then the bureau, then the district word.
    for group in [
        &["执法大队", "执法支队", "大队", "支队"][..],
        &["应急管理局"][..],
        &["新区", "区", "县"][..],
    ] {
        if let Some(t) = group.iter().find_map(|suffix| s.strip_suffix(suffix)) {
            s = t.to_string();
        }
    }
    if s.is_empty() {
        name.to_string()
    } else {
        s
    }
}

/// Take the next number of a counter inside a transaction (`RETURNING` on both engines).
macro_rules! next_seq {
    ($tx:expr, $prefix:expr) => {{
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO doc_counters (prefix, next) VALUES ($1, 1) \
             ON CONFLICT (prefix) DO UPDATE SET next = doc_counters.next + 1 RETURNING next",
        )
        .bind($prefix)
        .fetch_one($tx)
        .await?;
        n
    }};
}
pub(crate) use next_seq;

/// The numbering prefix of a document of `abbr` by the unit `unit_short` in `year`:
/// `黄浦应急责改〔2026〕`; the number is the prefix + sequence + `号`.
pub fn doc_prefix(unit_short: &str, abbr: &str, year: i32) -> String {
    format!("{unit_short}应急{abbr}〔{year}〕")
}

/// The unit that numbers the documents of `unit_id`: its brigade (short name, code), or the
/// corps ("市", its code) for units outside any brigade.
pub(crate) async fn numbering_unit(db: &Db, unit_id: &str) -> StorageResult<(String, String)> {
    use crate::org_units::OrgKind;
    if let Some(b) = db
        .org_units()
        .ancestor_of_kind(unit_id, OrgKind::Brigade)
        .await?
    {
        return Ok((unit_short_name(&b.name, false), b.code));
    }
    let u = db.org_units().get(unit_id).await?;
    Ok((unit_short_name(&u.name, true), u.code))
}

/// The deadline and cap repository.
#[derive(Debug, Clone, Copy)]
pub struct RulesRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Deadline rules and inspect-once caps.
    pub fn rules(&self) -> RulesRepo<'_> {
        RulesRepo { db: self }
    }
}

impl RulesRepo<'_> {
    /// All deadline rules.
    pub async fn deadlines(&self) -> StorageResult<Vec<DeadlineRule>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, DeadlineRule>(
            "SELECT step, days, name, source FROM deadline_rules ORDER BY step").fetch_all(p).await?))
    }

    /// Days of the deadline `step`.
    pub async fn days(&self, step: &str) -> StorageResult<i64> {
        with_pool!(self.db, p => {
            let d: Option<i64> = sqlx::query_scalar("SELECT days FROM deadline_rules WHERE step = $1")
                .bind(step).fetch_optional(p).await?;
            d.ok_or_else(|| StorageError::Corrupt(format!("deadline rule {step} is missing")))
        })
    }

    /// Change the days of a deadline rule.
    pub async fn set_deadline(
        &self,
        step: &str,
        days: i64,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let audit = audit
            .clone()
            .target("deadline_rule", step)
            .details(serde_json::json!({ "days": days }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE deadline_rules SET days = $2 WHERE step = $1")
                .bind(step).bind(days).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::NotFound("deadline rule")); }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The whole cap table.
    pub async fn caps(&self) -> StorageResult<Vec<InspectionCap>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, InspectionCap>(
            "SELECT sector, grade, yearly_cap FROM inspection_caps ORDER BY sector, grade").fetch_all(p).await?))
    }

    /// Replace cap values (rows are upserted; all or nothing).
    pub async fn set_caps(&self, caps: &[InspectionCap], audit: &AuditEntry) -> StorageResult<()> {
        let audit = audit
            .clone()
            .target("inspection_caps", "table")
            .details(serde_json::to_value(caps).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            for c in caps {
                sqlx::query("INSERT INTO inspection_caps (sector, grade, yearly_cap, updated_at_ms) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (sector, grade) DO UPDATE SET yearly_cap = excluded.yearly_cap, updated_at_ms = excluded.updated_at_ms")
                    .bind(&c.sector).bind(&c.grade).bind(c.yearly_cap).bind(audit.at_ms).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Set an enterprise's supervision grade.
    pub async fn set_grade(
        &self,
        scope: &Scope,
        enterprise_id: &str,
        grade: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        if !GRADES.contains(&grade) {
            return Err(StorageError::invalid("grade", "must be one of A, B, C, D"));
        }
        let e = self.db.enterprises().get(scope, enterprise_id).await?;
        let audit = audit
            .clone()
            .target("enterprise", enterprise_id)
            .details(serde_json::json!({ "supervision_grade": grade }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE enterprises SET supervision_grade = $2, updated_at_ms = $3, version = version + 1 WHERE id = $1")
                .bind(&e.id).bind(grade).bind(audit.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// An enterprise's supervision grade.
    pub async fn grade_of(&self, enterprise_id: &str) -> StorageResult<String> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar::<_, String>(
            "SELECT supervision_grade FROM enterprises WHERE id = $1").bind(enterprise_id).fetch_one(p).await
            .map_err(|_| StorageError::NotFound("enterprise"))?))
    }
}

/// A rendered document as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RenderedDocument {
    /// Document number.
    pub number: String,
    /// `pdf` or `docx`.
    pub format: String,
    /// Blob key.
    pub blob_key: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// SM3, hex.
    pub sm3: String,
    /// Rendered, ms.
    pub rendered_at_ms: i64,
}

impl RulesRepo<'_> {
    /// The stored rendering of document `number` in `format`, if any.
    pub async fn rendered(
        &self,
        number: &str,
        format: &str,
    ) -> StorageResult<Option<RenderedDocument>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, RenderedDocument>(
            "SELECT number, format, blob_key, size, sha256, sm3, rendered_at_ms FROM rendered_documents WHERE number = $1 AND format = $2")
            .bind(number).bind(format).fetch_optional(p).await?))
    }

    /// Record a rendering; the first one recorded wins (a concurrent second is ignored) and is
    /// returned.
    pub async fn record_rendered(
        &self,
        d: &RenderedDocument,
        audit: &AuditEntry,
    ) -> StorageResult<RenderedDocument> {
        let a = audit
            .clone()
            .target("document", &d.number)
            .details(serde_json::json!({
                "format": d.format, "sha256": d.sha256, "sm3": d.sm3, "size": d.size,
            }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("INSERT INTO rendered_documents (number, format, blob_key, size, sha256, sm3, rendered_at_ms) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (number, format) DO NOTHING")
                .bind(&d.number).bind(&d.format).bind(&d.blob_key).bind(d.size).bind(&d.sha256).bind(&d.sm3).bind(d.rendered_at_ms)
                .execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                insert_audit!(&mut *tx, &a)?;
            }
            tx.commit().await?;
        });
        self.rendered(&d.number, &d.format)
            .await?
            .ok_or(StorageError::NotFound("rendered document"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_calendar() {
        // 2026-12-31T16:30Z is 2027-01-01 00:30 in Shanghai.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 16, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(shanghai_year(t), 2027);
        assert_eq!(shanghai_date(t), "2027-01-01");
        let end = end_of_shanghai_day(NaiveDate::from_ymd_opt(2026, 12, 10).unwrap());
        assert_eq!(shanghai_date(end), "2026-12-10");
        assert_eq!(shanghai_date(end + 1), "2026-12-11");
    }

    #[test]
    fn numbering() {
        assert_eq!(unit_short_name("黄浦区大队", false), "黄浦");
        assert_eq!(unit_short_name("浦东新区应急管理局执法大队", false), "浦东");
        assert_eq!(unit_short_name("崇明区应急管理局执法大队", false), "崇明");
        assert_eq!(unit_short_name("总队", true), "市");
        assert_eq!(doc_prefix("黄浦", "责改", 2026), "黄浦应急责改〔2026〕");
        assert!(DOC_TYPES.iter().all(|d| doc_type(d.code).is_some()));
        let mut abbrs: Vec<_> = DOC_TYPES.iter().map(|d| d.abbr).collect();
        abbrs.sort_unstable();
        abbrs.dedup();
        assert_eq!(abbrs.len(), DOC_TYPES.len(), "abbreviations are unique");
    }
}

//! Case files (案卷) and their review (案卷评查).
//!
//! After a case closes, its electronic case file (PDF and images) is uploaded as blobs with their
//! digests. A reviewer scores the file against the configurable rule set (`review_rules`: what
//! each rule checks and its points), with a finding per rule; the total grades the file
//! (excellent ≥ 90 %, qualified ≥ 70 %, else unqualified) and an excellent file may be marked
//! exemplary for city-wide reading. Closed cases without a case file after the grace period are
//! what the reminder lists.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enforcement::DAY_MS;
use crate::org_units::Scope;
use crate::{Db, StorageError, StorageResult};

/// An uploaded part of a case file.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CaseFileItem {
    /// Id.
    pub id: String,
    /// Case.
    pub case_id: String,
    /// Original file name.
    pub filename: String,
    /// Detected type.
    pub content_type: String,
    /// Blob key.
    pub blob_key: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// SM3, hex.
    pub sm3: String,
    /// Uploaded.
    #[serde(
        rename = "uploaded_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub uploaded_at_ms: i64,
}

/// A review rule.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ReviewRule {
    /// Id.
    pub id: String,
    /// Code (`R01`…).
    pub code: String,
    /// What the rule checks.
    pub title: String,
    /// Points.
    pub points: i64,
    /// In use.
    pub active: bool,
}

/// A rule as entered (new or changed).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRuleInput {
    /// Code (`R01`…), unique.
    pub code: String,
    /// What the rule checks.
    pub title: String,
    /// Points (1–100).
    pub points: i64,
    /// In use.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// One rule's finding in a review.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Rule.
    pub rule_id: String,
    /// Points given (0 … the rule's points).
    pub score: i64,
    /// What the reviewer found.
    #[serde(default)]
    pub finding: String,
}

/// A review.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CaseReview {
    /// Id.
    pub id: String,
    /// Case.
    pub case_id: String,
    /// Reviewer (account).
    pub reviewer_id: Option<String>,
    /// Points given.
    pub total: i64,
    /// Points possible.
    pub max_total: i64,
    /// `excellent`, `qualified`, `unqualified`.
    pub grade: String,
    /// Marked exemplary (典型案例) for city-wide reading.
    pub exemplary: bool,
    /// Overall comment.
    pub comment: String,
    /// When.
    #[serde(
        rename = "created_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub created_at_ms: i64,
    /// Per-rule findings.
    #[sqlx(skip)]
    pub findings: Vec<Finding>,
}

/// The grade of `total` out of `max`.
pub fn grade(total: i64, max: i64) -> &'static str {
    if max <= 0 {
        "unqualified"
    } else if total * 100 >= max * 90 {
        "excellent"
    } else if total * 100 >= max * 70 {
        "qualified"
    } else {
        "unqualified"
    }
}

/// The case-file repository.
#[derive(Debug, Clone, Copy)]
pub struct CaseFileRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Case files and reviews.
    pub fn case_files(&self) -> CaseFileRepo<'_> {
        CaseFileRepo { db: self }
    }
}

impl CaseFileRepo<'_> {
    /// The uploaded parts of a case file.
    pub async fn items(&self, case_id: &str) -> StorageResult<Vec<CaseFileItem>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, CaseFileItem>(
            "SELECT id, case_id, filename, content_type, blob_key, size, sha256, sm3, uploaded_at_ms FROM case_file_items \
             WHERE case_id = $1 ORDER BY uploaded_at_ms, id").bind(case_id).fetch_all(p).await?))
    }

    /// Record an uploaded part (the blob is stored by the caller).
    pub async fn add_item(&self, item: &CaseFileItem, audit: &AuditEntry) -> StorageResult<()> {
        let a = audit.clone().target("case", &item.case_id).details(serde_json::json!({
            "case_file_item": item.id, "filename": item.filename, "sha256": item.sha256, "sm3": item.sm3, "size": item.size,
        }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO case_file_items (id, case_id, filename, content_type, blob_key, size, sha256, sm3, uploaded_by, uploaded_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&item.id).bind(&item.case_id).bind(&item.filename).bind(&item.content_type).bind(&item.blob_key)
                .bind(item.size).bind(&item.sha256).bind(&item.sm3).bind(&a.actor.account_id).bind(item.uploaded_at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The rule set (active rules first, by code).
    pub async fn rules(&self) -> StorageResult<Vec<ReviewRule>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, ReviewRule>(
            "SELECT id, code, title, points, active FROM review_rules ORDER BY active DESC, code").fetch_all(p).await?))
    }

    /// Add a rule.
    pub async fn add_rule(
        &self,
        r: &ReviewRuleInput,
        audit: &AuditEntry,
    ) -> StorageResult<ReviewRule> {
        let id = crate::new_id();
        let a = audit
            .clone()
            .target("review_rule", &id)
            .details(serde_json::to_value(r).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO review_rules (id, code, title, points, active, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&id).bind(r.code.trim()).bind(r.title.trim()).bind(r.points).bind(r.active).bind(a.at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.rules()
            .await?
            .into_iter()
            .find(|x| x.id == id)
            .ok_or(StorageError::NotFound("review rule"))
    }

    /// Change a rule (reviews already made keep their findings and totals).
    pub async fn update_rule(
        &self,
        id: &str,
        r: &ReviewRuleInput,
        audit: &AuditEntry,
    ) -> StorageResult<ReviewRule> {
        let a = audit
            .clone()
            .target("review_rule", id)
            .details(serde_json::to_value(r).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE review_rules SET code = $2, title = $3, points = $4, active = $5, updated_at_ms = $6 WHERE id = $1")
                .bind(id).bind(r.code.trim()).bind(r.title.trim()).bind(r.points).bind(r.active).bind(a.at_ms)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::NotFound("review rule")); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.rules()
            .await?
            .into_iter()
            .find(|x| x.id == id)
            .ok_or(StorageError::NotFound("review rule"))
    }

    /// Record a review of a closed case's file: one finding per active rule (validated here
    /// against the rule set), the total and grade computed, `exemplary` only for an excellent
    /// file.
    pub async fn review(
        &self,
        case_id: &str,
        findings: &[Finding],
        exemplary: bool,
        comment: &str,
        audit: &AuditEntry,
    ) -> StorageResult<CaseReview> {
        let rules: Vec<ReviewRule> = self
            .rules()
            .await?
            .into_iter()
            .filter(|r| r.active)
            .collect();
        for (n, f) in findings.iter().enumerate() {
            match rules.iter().find(|r| r.id == f.rule_id) {
                None => {
                    return Err(StorageError::invalid(
                        format!("findings[{n}].rule_id"),
                        "not an active review rule",
                    ))
                }
                Some(r) if !(0..=r.points).contains(&f.score) => {
                    return Err(StorageError::invalid(
                        format!("findings[{n}].score"),
                        format!("must be 0–{} for rule {}", r.points, r.code),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(missing) = rules
            .iter()
            .find(|r| !findings.iter().any(|f| f.rule_id == r.id))
        {
            return Err(StorageError::invalid(
                "findings",
                format!(
                    "every active rule needs a finding; missing {}",
                    missing.code
                ),
            ));
        }
        if findings.len() != rules.len() {
            return Err(StorageError::invalid("findings", "a rule is scored twice"));
        }
        let total: i64 = findings.iter().map(|f| f.score).sum();
        let max: i64 = rules.iter().map(|r| r.points).sum();
        let g = grade(total, max);
        if exemplary && g != "excellent" {
            return Err(StorageError::invalid(
                "exemplary",
                "only an excellent case file can be marked exemplary",
            ));
        }
        let id = crate::new_id();
        let a = audit
            .clone()
            .target("case", case_id)
            .details(serde_json::json!({
                "review": id, "total": total, "max_total": max, "grade": g, "exemplary": exemplary,
            }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO case_reviews (id, case_id, reviewer_id, total, max_total, grade, exemplary, comment, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&id).bind(case_id).bind(&a.actor.account_id).bind(total).bind(max).bind(g).bind(exemplary).bind(comment)
                .bind(a.at_ms).execute(&mut *tx).await?;
            for f in findings {
                sqlx::query("INSERT INTO case_review_findings (review_id, rule_id, score, finding) VALUES ($1, $2, $3, $4)")
                    .bind(&id).bind(&f.rule_id).bind(f.score).bind(f.finding.trim()).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.reviews(case_id)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(StorageError::NotFound("review"))
    }

    /// The reviews of a case, newest first, with findings.
    pub async fn reviews(&self, case_id: &str) -> StorageResult<Vec<CaseReview>> {
        let mut out: Vec<CaseReview> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT id, case_id, reviewer_id, total, max_total, grade, exemplary, comment, created_at_ms FROM case_reviews \
             WHERE case_id = $1 ORDER BY created_at_ms DESC").bind(case_id).fetch_all(p).await?);
        for r in &mut out {
            r.findings = with_pool!(self.db, p => sqlx::query_as(
                "SELECT f.rule_id, f.score, f.finding FROM case_review_findings f JOIN review_rules r ON r.id = f.rule_id \
                 WHERE f.review_id = $1 ORDER BY r.code").bind(&r.id).fetch_all(p).await?);
        }
        Ok(out)
    }

    /// Ids of closed cases in `scope` without any case-file item `grace_days` after closing
    /// (the reminder list), oldest first.
    pub async fn missing_files(
        &self,
        scope: &Scope,
        now_ms: i64,
        grace_days: i64,
        limit: i64,
    ) -> StorageResult<Vec<String>> {
        let mut b = SqlBuilder::default();
        let cond =
            crate::enforcement::unit_condition("c", &self.db.scope_units(scope).await?, &mut b);
        let cutoff = b.i(now_ms - grace_days * DAY_MS);
        let lim = b.i(limit);
        let sql = format!(
            "SELECT c.id FROM cases c WHERE c.status = 'closed' AND c.closed_at_ms < {cutoff} AND {cond} \
             AND NOT EXISTS (SELECT 1 FROM case_file_items f WHERE f.case_id = c.id) ORDER BY c.closed_at_ms LIMIT {lim}"
        );
        with_pool!(self.db, p => Ok(bind_args!(sqlx::query_scalar(&sql), b.args).fetch_all(p).await?))
    }

    /// Cases marked exemplary (newest review first), for city-wide reading.
    pub async fn exemplary(&self, limit: i64) -> StorageResult<Vec<String>> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar(
            "SELECT case_id FROM case_reviews WHERE exemplary = TRUE GROUP BY case_id ORDER BY MAX(created_at_ms) DESC LIMIT $1")
            .bind(limit).fetch_all(p).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades() {
        assert_eq!(grade(90, 100), "excellent");
        assert_eq!(grade(89, 100), "qualified");
        assert_eq!(grade(70, 100), "qualified");
        assert_eq!(grade(69, 100), "unqualified");
        assert_eq!(grade(0, 0), "unqualified");
    }
}

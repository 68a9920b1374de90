//! Cases (案件): from filing to closing, with their enforcement documents.
//!
//! ```text
//! filing_review ──approved──▶ open ──closing requested──▶ closing_review ──approved──▶ closed
//!       └──rejected──▶ not_filed       ▲                          │
//!                                      └────────rejected──────────┘
//! ```
//!
//! * A case is filed from one or more completed inspections of one enterprise (the link the legal
//!   hold of recordings follows). The filing approval form (立案审批表, D36) is its first document.
//! * While open, documents of the enforcement-document list are drafted and approved; a case
//!   transfer (D33) needs its approved transfer approval form (D32) first; the penalty decision
//!   needs an approved penalty notice (D15) and names the company and the responsible person
//!   (dual penalty); a criminal referral needs an approved D32.
//! * Closing approval (结案审批表, D31) comes only after every other document is approved.
//! * **Open cases are confidential**: only the handling unit's subtree and the corps read them.
//!   Once closed, every unit may read them.
//! * Party ID number, party phone and the proposed fine (the amount before the decision) are
//!   sealed with SM4-GCM ([`crate::crypto::FieldCipher`]); the database never holds them in clear.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enforcement::{doc_prefix, doc_type, next_seq, numbering_unit, shanghai_year, DAY_MS};
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// Case states.
pub const STATES: &[(&str, &str)] = &[
    ("filing_review", "立案审批中"),
    ("open", "办理中"),
    ("closing_review", "结案审批中"),
    ("closed", "已结案"),
    ("not_filed", "不予立案"),
];

/// Documents only the workflow creates (filing approval, closing approval, penalty decision).
pub const WORKFLOW_DOCS: &[&str] = &["D36", "D31", "D25"];

/// A case as filed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseInput {
    /// The enterprise (party).
    pub enterprise_id: String,
    /// The completed inspections the case comes from (at least one, of that enterprise).
    pub inspection_ids: Vec<String>,
    /// Case title (案由).
    pub title: String,
    /// The violation found.
    pub violation: String,
    /// Responsible person (for the dual penalty).
    #[serde(default)]
    pub responsible_person: String,
    /// Responsible person's ID number (sealed at rest).
    #[serde(default)]
    pub party_id_number: String,
    /// Party phone (sealed at rest).
    #[serde(default)]
    pub party_phone: String,
    /// Proposed fine before the decision, fen (sealed at rest).
    #[serde(default)]
    pub proposed_fine_cents: Option<i64>,
}

/// A case as listed (no sensitive fields).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CaseSummary {
    /// Id.
    pub id: String,
    /// Case number (set when filing is approved).
    pub number: Option<String>,
    /// Handling unit.
    pub org_unit_id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Title.
    pub title: String,
    /// State.
    pub status: String,
    /// Filed, ms.
    #[serde(
        rename = "filed_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub filed_at_ms: i64,
    /// Decision due, ms (from the filing approval).
    #[serde(
        rename = "decision_due",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decision_due_ms: Option<i64>,
    /// Decided, ms.
    #[serde(
        rename = "decided_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at_ms: Option<i64>,
    /// Closed, ms.
    #[serde(
        rename = "closed_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at_ms: Option<i64>,
    /// Optimistic-lock version.
    pub version: i64,
}

/// A whole case (sensitive fields opened).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Case {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: CaseSummary,
    /// Handling unit name.
    pub org_unit_name: String,
    /// Violation.
    pub violation: String,
    /// Responsible person.
    pub responsible_person: String,
    /// Responsible person's ID number (decrypted).
    pub party_id_number: String,
    /// Party phone (decrypted).
    pub party_phone: String,
    /// Proposed fine, fen (decrypted).
    pub proposed_fine_cents: Option<i64>,
    /// Fine on the company, fen.
    pub company_fine_cents: Option<i64>,
    /// Fine on the responsible person, fen.
    pub person_fine_cents: Option<i64>,
    /// Penalty decision number.
    pub decision_number: Option<String>,
    /// Payment due, ms.
    #[serde(
        rename = "payment_due",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub payment_due_ms: Option<i64>,
    /// Paid, fen.
    pub paid_cents: Option<i64>,
    /// Paid, ms.
    #[serde(
        rename = "paid_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at_ms: Option<i64>,
    /// Referred to the judicial organs.
    pub criminal_referral: bool,
    /// Referral note.
    pub referral_note: Option<String>,
    /// Filing decided, ms.
    #[serde(
        rename = "filing_decided_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub filing_decided_at_ms: Option<i64>,
    /// Reason of the last decision (filing or closing).
    pub decision_reason: Option<String>,
    /// Inspections the case comes from.
    pub inspection_ids: Vec<String>,
    /// Its documents.
    pub documents: Vec<CaseDocument>,
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    violation: String,
    responsible_person: String,
    party_id_sealed: Option<String>,
    party_phone_sealed: Option<String>,
    proposed_fine_sealed: Option<String>,
    company_fine_cents: Option<i64>,
    person_fine_cents: Option<i64>,
    decision_number: Option<String>,
    payment_due_ms: Option<i64>,
    paid_cents: Option<i64>,
    paid_at_ms: Option<i64>,
    criminal_referral: bool,
    referral_note: Option<String>,
    filing_decided_at_ms: Option<i64>,
    decision_reason: Option<String>,
}

/// An enforcement document of a case.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CaseDocument {
    /// Id.
    pub id: String,
    /// Case.
    pub case_id: String,
    /// Type code (`D01`…).
    pub doc_type: String,
    /// Number.
    pub number: String,
    /// Title.
    pub title: String,
    /// Content (text).
    pub content: String,
    /// `draft`, `approved`.
    pub status: String,
    /// Created, ms.
    #[serde(
        rename = "created_at",
        serialize_with = "crate::enforcement::rfc3339::ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub created_at_ms: i64,
    /// Approved, ms.
    #[serde(
        rename = "approved_at",
        serialize_with = "crate::enforcement::rfc3339::ms_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub approved_at_ms: Option<i64>,
}

/// Filter of a case list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Substring of title, number or enterprise name.
    pub q: Option<String>,
    /// State.
    pub status: Option<String>,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Linked to this inspection.
    pub inspection_id: Option<String>,
}

/// The case repository; it seals and opens sensitive fields with the database's field cipher
/// ([`Db::with_field_cipher`]).
#[derive(Debug, Clone, Copy)]
pub struct CaseRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Cases.
    pub fn cases(&self) -> CaseRepo<'_> {
        CaseRepo { db: self }
    }
}

const SUMMARY: &str = "SELECT c.id, c.number, c.org_unit_id, c.enterprise_id, e.name AS enterprise_name, c.title, c.status, c.filed_at_ms, \
     c.decision_due_ms, c.decided_at_ms, c.closed_at_ms, c.version FROM cases c JOIN enterprises e ON e.id = c.enterprise_id";

const DOC_COLS: &str =
    "id, case_id, doc_type, number, title, content, status, created_at_ms, approved_at_ms";

/// Who may read a case: its unit's subtree and the corps always; everyone once closed.
fn read_condition(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".to_string(),
        Scope::Subtree(root) => format!(
            "(c.status = 'closed' OR c.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {}))",
            b.s(root.clone())
        ),
    }
}

impl CaseRepo<'_> {
    async fn summary(&self, scope: &Scope, id: &str) -> StorageResult<CaseSummary> {
        let mut b = SqlBuilder::default();
        let cond = read_condition(scope, &mut b);
        let idp = b.s(id);
        let sql = format!("{SUMMARY} WHERE c.id = {idp} AND {cond}");
        with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, CaseSummary>(&sql), b.args).fetch_optional(p).await?)
            .ok_or(StorageError::NotFound("case"))
    }

    /// The whole case, if `scope` may read it (an open case of another unit is not found).
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Case> {
        let summary = self.summary(scope, id).await?;
        let d: DetailRow = with_pool!(self.db, p => sqlx::query_as(
            "SELECT violation, responsible_person, party_id_sealed, party_phone_sealed, proposed_fine_sealed, company_fine_cents, \
             person_fine_cents, decision_number, payment_due_ms, paid_cents, paid_at_ms, criminal_referral, referral_note, \
             filing_decided_at_ms, decision_reason FROM cases WHERE id = $1").bind(id).fetch_one(p).await?);
        let inspection_ids: Vec<String> = with_pool!(self.db, p => sqlx::query_scalar(
            "SELECT inspection_id FROM case_inspections WHERE case_id = $1 ORDER BY inspection_id").bind(id).fetch_all(p).await?);
        let documents = self.documents(id).await?;
        let names = self.db.org_unit_names().await?;
        let cipher = self.db.field_cipher()?;
        let fine = cipher.open_opt("proposed_fine", d.proposed_fine_sealed.as_deref())?;
        Ok(Case {
            org_unit_name: names.get(&summary.org_unit_id).cloned().unwrap_or_default(),
            summary,
            violation: d.violation,
            responsible_person: d.responsible_person,
            party_id_number: cipher.open_opt("party_id", d.party_id_sealed.as_deref())?,
            party_phone: cipher.open_opt("party_phone", d.party_phone_sealed.as_deref())?,
            proposed_fine_cents: if fine.is_empty() {
                None
            } else {
                Some(
                    fine.parse()
                        .map_err(|_| StorageError::Corrupt("proposed_fine: not a number".into()))?,
                )
            },
            company_fine_cents: d.company_fine_cents,
            person_fine_cents: d.person_fine_cents,
            decision_number: d.decision_number,
            payment_due_ms: d.payment_due_ms,
            paid_cents: d.paid_cents,
            paid_at_ms: d.paid_at_ms,
            criminal_referral: d.criminal_referral,
            referral_note: d.referral_note,
            filing_decided_at_ms: d.filing_decided_at_ms,
            decision_reason: d.decision_reason,
            inspection_ids,
            documents,
        })
    }

    /// The documents of a case, oldest first.
    pub async fn documents(&self, case_id: &str) -> StorageResult<Vec<CaseDocument>> {
        let sql = format!(
            "SELECT {DOC_COLS} FROM case_documents WHERE case_id = $1 ORDER BY created_at_ms, number"
        );
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, CaseDocument>(&sql).bind(case_id).fetch_all(p).await?))
    }

    /// A page of cases `scope` may read, newest first.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &CaseFilter,
        page: PageRequest,
    ) -> StorageResult<Page<CaseSummary>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![read_condition(scope, &mut b)];
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let a = b.s(crate::search::like_pattern(q));
            conds.push(format!(
                "(c.title LIKE {a} ESCAPE '\\' OR c.number LIKE {a} ESCAPE '\\' OR e.name LIKE {a} ESCAPE '\\')"
            ));
        }
        if let Some(v) = &f.status {
            conds.push(format!("c.status = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.enterprise_id {
            conds.push(format!("c.enterprise_id = {}", b.s(v.clone())));
        }
        if let Some(v) = &f.inspection_id {
            conds.push(format!(
                "c.id IN (SELECT case_id FROM case_inspections WHERE inspection_id = {})",
                b.s(v.clone())
            ));
        }
        let wh = conds.join(" AND ");
        let count_sql = format!(
            "SELECT COUNT(*) FROM cases c JOIN enterprises e ON e.id = c.enterprise_id WHERE {wh}"
        );
        let n = b.args.len();
        let lim = b.i(page.page_size);
        let off = b.i(page.offset());
        let sql = format!(
            "{SUMMARY} WHERE {wh} ORDER BY c.filed_at_ms DESC, c.id DESC LIMIT {lim} OFFSET {off}"
        );
        let (total, items) = with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args[..n]).fetch_one(p).await?;
            let items: Vec<CaseSummary> = bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?;
            (total, items)
        });
        Ok(Page {
            items,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// Whether any open (not closed, not rejected) case links the inspection: recordings linked to
    /// it are then under legal hold.
    pub async fn inspection_under_open_case(&self, inspection_id: &str) -> StorageResult<bool> {
        with_pool!(self.db, p => {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM case_inspections ci JOIN cases c ON c.id = ci.case_id \
                WHERE ci.inspection_id = $1 AND c.status IN ('filing_review','open','closing_review')")
                .bind(inspection_id).fetch_one(p).await?;
            Ok(n > 0)
        })
    }

    /// File a case for the handling unit `org_unit_id` (input validated by the caller: the
    /// inspections exist in scope, are completed and belong to the enterprise). Creates the
    /// filing approval form as a draft.
    pub async fn create(
        &self,
        org_unit_id: &str,
        input: &CaseInput,
        audit: &AuditEntry,
    ) -> StorageResult<String> {
        let now = audit.at_ms;
        let (short, _) = numbering_unit(self.db, org_unit_id).await?;
        let prefix = doc_prefix(&short, "立", shanghai_year(now));
        let id = crate::new_id();
        let account = audit.actor.account_id.clone();
        let cipher = self.db.field_cipher()?;
        let party_id = cipher.seal_opt("party_id", &input.party_id_number);
        let phone = cipher.seal_opt("party_phone", &input.party_phone);
        let fine = input
            .proposed_fine_cents
            .map(|c| cipher.seal("proposed_fine", &c.to_string()));
        // The audit row never carries the sensitive values.
        let a = audit
            .clone()
            .target("case", &id)
            .details(serde_json::json!({
                "enterprise_id": input.enterprise_id, "inspection_ids": input.inspection_ids,
                "title": input.title, "sealed_fields": ["party_id", "party_phone", "proposed_fine"],
            }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO cases (id, org_unit_id, enterprise_id, title, violation, status, responsible_person, party_id_sealed, \
                         party_phone_sealed, proposed_fine_sealed, filed_by, filed_at_ms, created_at_ms, updated_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, 'filing_review', $6, $7, $8, $9, $10, $11, $11, $11, 1)")
                .bind(&id).bind(org_unit_id).bind(&input.enterprise_id).bind(input.title.trim()).bind(input.violation.trim())
                .bind(input.responsible_person.trim()).bind(&party_id).bind(&phone).bind(&fine).bind(&account).bind(now)
                .execute(&mut *tx).await?;
            for i in &input.inspection_ids {
                sqlx::query("INSERT INTO case_inspections (case_id, inspection_id) VALUES ($1, $2)")
                    .bind(&id).bind(i).execute(&mut *tx).await?;
            }
            let seq = next_seq!(&mut *tx, &prefix);
            sqlx::query(&format!("INSERT INTO case_documents ({DOC_COLS}, created_by) VALUES ($1, $2, 'D36', $3, $4, $5, 'draft', $6, NULL, $7)"))
                .bind(crate::new_id()).bind(&id).bind(format!("{prefix}{seq}号")).bind("立案审批表")
                .bind(format!("案由：{}\n违法事实：{}", input.title.trim(), input.violation.trim())).bind(now).bind(&account)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(id)
    }

    /// The case for a write: readable in `scope` *and* handled in `scope` (a closed case of
    /// another unit is readable, not writable).
    async fn writable(&self, scope: &Scope, id: &str) -> StorageResult<Case> {
        let c = self.get(scope, id).await?;
        if !self
            .db
            .org_units()
            .in_scope(scope, &c.summary.org_unit_id)
            .await?
        {
            return Err(StorageError::NotFound("case"));
        }
        Ok(c)
    }

    fn require(c: &Case, state: &str, what: &str) -> StorageResult<()> {
        if c.summary.status != state {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status.clone(),
                what.to_string(),
            ));
        }
        Ok(())
    }

    /// Decide the filing: approved → `open` (numbered, decision due from the deadline table,
    /// filing approval form approved); rejected → `not_filed`.
    pub async fn decide_filing(
        &self,
        scope: &Scope,
        id: &str,
        approve: bool,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(
            &c,
            "filing_review",
            "only a case awaiting filing approval can be decided",
        )?;
        let now = audit.at_ms;
        let days = self.db.rules().days("case_decision").await?;
        let (short, _) = numbering_unit(self.db, &c.summary.org_unit_id).await?;
        let prefix = doc_prefix(&short, "案", shanghai_year(now));
        let account = audit.actor.account_id.clone();
        let a = audit.clone().target("case", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let (status, number) = if approve {
                let seq = next_seq!(&mut *tx, &prefix);
                ("open", Some(format!("{prefix}{seq}号")))
            } else { ("not_filed", None) };
            let n = sqlx::query("UPDATE cases SET status = $3, number = $4, filing_decided_by = $5, filing_decided_at_ms = $6, decision_due_ms = $7, \
                                 decision_reason = $8, updated_at_ms = $6, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(status).bind(&number).bind(&account).bind(now)
                .bind(approve.then_some(now + days * DAY_MS)).bind(reason).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            if approve {
                sqlx::query("UPDATE case_documents SET status = 'approved', approved_by = $2, approved_at_ms = $3 WHERE case_id = $1 AND doc_type = 'D36'")
                    .bind(id).bind(&account).bind(now).execute(&mut *tx).await?;
            }
            let a = a.details(serde_json::json!({"approve": approve, "reason": reason, "number": number}));
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Draft a document of the open case. D33 (transfer) needs an approved D32 first; the
    /// workflow's own documents ([`WORKFLOW_DOCS`]) cannot be drafted by hand.
    pub async fn add_document(
        &self,
        scope: &Scope,
        id: &str,
        doc_code: &str,
        content: &str,
        audit: &AuditEntry,
    ) -> StorageResult<CaseDocument> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "documents are drafted while the case is open")?;
        let dt = doc_type(doc_code)
            .ok_or_else(|| StorageError::invalid("doc_type", "not an enforcement document type"))?;
        if WORKFLOW_DOCS.contains(&doc_code) {
            return Err(StorageError::invalid(
                "doc_type",
                "this document is created by the case workflow (filing, decision, closing)",
            ));
        }
        if doc_code == "D33" && !has_approved(&c, "D32") {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "a case transfer (D33) needs an approved transfer approval form (D32) first",
            ));
        }
        let now = audit.at_ms;
        let (short, _) = numbering_unit(self.db, &c.summary.org_unit_id).await?;
        let prefix = doc_prefix(&short, dt.abbr, shanghai_year(now));
        let doc_id = crate::new_id();
        let account = audit.actor.account_id.clone();
        let a = audit
            .clone()
            .target("case", id)
            .details(serde_json::json!({"document": doc_id, "doc_type": doc_code}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            sqlx::query(&format!("INSERT INTO case_documents ({DOC_COLS}, created_by) VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, NULL, $8)"))
                .bind(&doc_id).bind(id).bind(doc_code).bind(format!("{prefix}{seq}号")).bind(dt.name).bind(content)
                .bind(now).bind(&account).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.document(id, &doc_id).await
    }

    async fn document(&self, case_id: &str, doc_id: &str) -> StorageResult<CaseDocument> {
        let sql = format!("SELECT {DOC_COLS} FROM case_documents WHERE case_id = $1 AND id = $2");
        with_pool!(self.db, p => sqlx::query_as::<_, CaseDocument>(&sql).bind(case_id).bind(doc_id).fetch_optional(p).await?)
            .ok_or(StorageError::NotFound("document"))
    }

    /// Approve a drafted document of an open case.
    pub async fn approve_document(
        &self,
        scope: &Scope,
        id: &str,
        doc_id: &str,
        audit: &AuditEntry,
    ) -> StorageResult<CaseDocument> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "documents are approved while the case is open")?;
        let d = self.document(id, doc_id).await?;
        if d.status != "draft" {
            return Err(StorageError::wrong_state(
                "document",
                d.status,
                "the document is already approved",
            ));
        }
        let account = audit.actor.account_id.clone();
        let a = audit
            .clone()
            .target("case", id)
            .details(serde_json::json!({"document": doc_id, "approved": true}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE case_documents SET status = 'approved', approved_by = $3, approved_at_ms = $4 WHERE case_id = $1 AND id = $2 AND status = 'draft'")
                .bind(id).bind(doc_id).bind(&account).bind(a.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.document(id, doc_id).await
    }

    /// Decide the penalty (dual penalty: company and responsible person). Needs an approved
    /// penalty notice (D15); creates the numbered penalty decision (D25) and sets the payment due
    /// date from the deadline table.
    pub async fn decide_penalty(
        &self,
        scope: &Scope,
        id: &str,
        company_fine_cents: i64,
        person_fine_cents: i64,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "a penalty is decided while the case is open")?;
        if c.decision_number.is_some() {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "the penalty was already decided",
            ));
        }
        if !has_approved(&c, "D15") {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "the penalty notice (D15) must be approved before the decision",
            ));
        }
        let now = audit.at_ms;
        let days = self.db.rules().days("fine_payment").await?;
        let (short, _) = numbering_unit(self.db, &c.summary.org_unit_id).await?;
        let prefix = doc_prefix(&short, "罚", shanghai_year(now));
        let account = audit.actor.account_id.clone();
        let a = audit.clone().target("case", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let seq = next_seq!(&mut *tx, &prefix);
            let number = format!("{prefix}{seq}号");
            let n = sqlx::query("UPDATE cases SET company_fine_cents = $3, person_fine_cents = $4, decision_number = $5, decided_at_ms = $6, \
                                 payment_due_ms = $7, updated_at_ms = $6, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(company_fine_cents).bind(person_fine_cents).bind(&number).bind(now)
                .bind(now + days * DAY_MS).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            let content = format!("对{}罚款{}元；对{}罚款{}元。",
                c.summary.enterprise_name, yuan(company_fine_cents),
                if c.responsible_person.is_empty() { "主要负责人" } else { c.responsible_person.as_str() }, yuan(person_fine_cents));
            sqlx::query(&format!("INSERT INTO case_documents ({DOC_COLS}, created_by, approved_by) VALUES ($1, $2, 'D25', $3, '行政处罚决定书（单位）', $4, 'approved', $5, $5, $6, $6)"))
                .bind(crate::new_id()).bind(id).bind(&number).bind(&content).bind(now).bind(&account).execute(&mut *tx).await?;
            let a = a.details(serde_json::json!({"company_fine_cents": company_fine_cents, "person_fine_cents": person_fine_cents, "decision_number": number}));
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Record the payment of the decided fines.
    pub async fn record_payment(
        &self,
        scope: &Scope,
        id: &str,
        paid_cents: i64,
        paid_at_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "a payment is recorded while the case is open")?;
        if c.decision_number.is_none() {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "no penalty has been decided yet",
            ));
        }
        let a = audit
            .clone()
            .target("case", id)
            .details(serde_json::json!({"paid_cents": paid_cents, "paid_at_ms": paid_at_ms}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE cases SET paid_cents = $3, paid_at_ms = $4, updated_at_ms = $5, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(paid_cents).bind(paid_at_ms).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Refer the case to the judicial organs (行刑衔接); needs an approved D32.
    pub async fn refer(
        &self,
        scope: &Scope,
        id: &str,
        note: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "a referral is made while the case is open")?;
        if !has_approved(&c, "D32") {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "a criminal referral needs an approved transfer approval form (D32)",
            ));
        }
        let a = audit
            .clone()
            .target("case", id)
            .details(serde_json::json!({"criminal_referral": true, "note": note}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE cases SET criminal_referral = TRUE, referral_note = $3, updated_at_ms = $4, version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(note).bind(a.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Request closing: the penalty is decided (or the case referred) and every document is
    /// approved; drafts the closing approval form (D31) → `closing_review`.
    pub async fn request_closing(
        &self,
        scope: &Scope,
        id: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(&c, "open", "closing is requested while the case is open")?;
        if c.decision_number.is_none() && !c.criminal_referral {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                "decide the penalty or refer the case before closing",
            ));
        }
        let drafts: Vec<&str> = c
            .documents
            .iter()
            .filter(|d| d.status != "approved")
            .map(|d| d.number.as_str())
            .collect();
        if !drafts.is_empty() {
            return Err(StorageError::wrong_state(
                "case",
                c.summary.status,
                format!(
                    "every document must be approved before closing; not approved: {}",
                    drafts.join("、")
                ),
            ));
        }
        let now = audit.at_ms;
        let (short, _) = numbering_unit(self.db, &c.summary.org_unit_id).await?;
        let prefix = doc_prefix(&short, "结", shanghai_year(now));
        let account = audit.actor.account_id.clone();
        let a = audit.clone().target("case", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE cases SET status = 'closing_review', closing_requested_at_ms = $3, updated_at_ms = $3, version = version + 1 \
                                 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(now).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            let seq = next_seq!(&mut *tx, &prefix);
            sqlx::query(&format!("INSERT INTO case_documents ({DOC_COLS}, created_by) VALUES ($1, $2, 'D31', $3, '结案审批表', $4, 'draft', $5, NULL, $6)"))
                .bind(crate::new_id()).bind(id).bind(format!("{prefix}{seq}号"))
                .bind(format!("案件{}已办理完毕，申请结案。", c.summary.number.clone().unwrap_or_default())).bind(now).bind(&account)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Decide closing: approved → `closed` (D31 approved); rejected → back to `open` (the draft
    /// D31 is withdrawn).
    pub async fn decide_closing(
        &self,
        scope: &Scope,
        id: &str,
        approve: bool,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Case> {
        let c = self.writable(scope, id).await?;
        Self::require(
            &c,
            "closing_review",
            "only a case awaiting closing approval can be decided",
        )?;
        let now = audit.at_ms;
        let account = audit.actor.account_id.clone();
        let a = audit
            .clone()
            .target("case", id)
            .details(serde_json::json!({"approve": approve, "reason": reason}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE cases SET status = $3, closed_by = $4, closed_at_ms = $5, decision_reason = $6, updated_at_ms = $7, \
                                 version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(c.summary.version).bind(if approve { "closed" } else { "open" })
                .bind(if approve { account.clone() } else { None }).bind(approve.then_some(now)).bind(reason).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            if approve {
                sqlx::query("UPDATE case_documents SET status = 'approved', approved_by = $2, approved_at_ms = $3 WHERE case_id = $1 AND doc_type = 'D31' AND status = 'draft'")
                    .bind(id).bind(&account).bind(now).execute(&mut *tx).await?;
            } else {
                sqlx::query("DELETE FROM case_documents WHERE case_id = $1 AND doc_type = 'D31' AND status = 'draft'")
                    .bind(id).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// The sealed values as stored (for tests and key rotation checks): party ID, phone, fine.
    pub async fn sealed_values(
        &self,
        id: &str,
    ) -> StorageResult<(Option<String>, Option<String>, Option<String>)> {
        with_pool!(self.db, p => Ok(sqlx::query_as(
            "SELECT party_id_sealed, party_phone_sealed, proposed_fine_sealed FROM cases WHERE id = $1")
            .bind(id).fetch_one(p).await?))
    }
}

fn has_approved(c: &Case, code: &str) -> bool {
    c.documents
        .iter()
        .any(|d| d.doc_type == code && d.status == "approved")
}

/// Fen as yuan with two decimals.
pub fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

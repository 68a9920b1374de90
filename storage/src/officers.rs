//! The officer registry: enforcement officers with their certificate, org unit, phone and the
//! account they log in with. The phone is personal data: sealed at rest with its blind indexes
//! (see [`crate::crypto`]), found by its full number or its last four digits, never written to
//! the audit log.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enterprises::FieldError;
use crate::org_units::Scope;
use crate::personal_data::OFFICER_PHONE;
use crate::{search, Db, Page, PageRequest, StorageError, StorageResult};

/// Officer fields as entered.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficerInput {
    /// Name.
    pub name: String,
    /// Enforcement certificate number (unique).
    pub certificate_no: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
    /// Linked account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// `active` or `inactive`.
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "active".into()
}

impl OfficerInput {
    /// Trim fields.
    pub fn normalize(&mut self) {
        self.name = self.name.trim().to_string();
        self.certificate_no = self.certificate_no.trim().to_string();
        self.org_unit_id = self.org_unit_id.trim().to_string();
        self.phone = self.phone.trim().to_string();
        self.status = self.status.trim().to_string();
        if self
            .account_id
            .as_deref()
            .map(str::trim)
            .is_some_and(str::is_empty)
        {
            self.account_id = None;
        }
    }

    /// Field rules.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        let n = self.name.chars().count();
        if n == 0 || n > 50 {
            e.push(FieldError {
                field: "name".into(),
                message: "1–50 characters".into(),
            });
        }
        let c = &self.certificate_no;
        if c.is_empty()
            || c.len() > 32
            || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        {
            e.push(FieldError {
                field: "certificate_no".into(),
                message: "1–32 letters, digits or '-'".into(),
            });
        }
        if self.org_unit_id.is_empty() {
            e.push(FieldError {
                field: "org_unit_id".into(),
                message: "must not be empty".into(),
            });
        }
        let digits = self.phone.chars().filter(char::is_ascii_digit).count();
        if !self.phone.is_empty()
            && (!(7..=20).contains(&digits)
                || !self
                    .phone
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || "-+ ()".contains(ch)))
        {
            e.push(FieldError {
                field: "phone".into(),
                message: "not a phone number".into(),
            });
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

/// A stored officer.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Officer {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Certificate number.
    pub certificate_no: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Org unit name.
    pub org_unit_name: String,
    /// Phone (opened from its sealed column).
    #[sqlx(rename = "phone_sealed")]
    pub phone: String,
    /// Linked account.
    pub account_id: Option<String>,
    /// Status.
    pub status: String,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
    /// Optimistic-lock version.
    pub version: i64,
}

/// Filter of an officer list.
#[derive(Debug, Clone, Default)]
pub struct OfficerFilter {
    /// Substring of name or certificate, or a phone: its full number or its last four digits.
    pub q: Option<String>,
    /// Org unit subtree.
    pub org_unit_id: Option<String>,
    /// Status.
    pub status: Option<String>,
}

/// The officer repository.
#[derive(Debug, Clone, Copy)]
pub struct OfficerRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Officers.
    pub fn officers(&self) -> OfficerRepo<'_> {
        OfficerRepo { db: self }
    }
}

const SELECT: &str = "SELECT f.id, f.name, f.certificate_no, f.org_unit_id, o.name AS org_unit_name, f.phone_sealed, f.account_id, \
    f.status, f.created_at_ms, f.updated_at_ms, f.version FROM officers f JOIN org_units o ON o.id = f.org_unit_id";

fn scope_cond(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Subtree(r) => format!(
            "f.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
            b.s(r.clone())
        ),
    }
}

/// An officer's fields for the audit log: the phone only as "changed" or not.
fn audit_details(i: &OfficerInput, phone_changed: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("phone");
        o.insert("phone_changed".into(), phone_changed.into());
    }
    v
}

impl OfficerRepo<'_> {
    /// The officer with its phone opened.
    fn open(&self, mut o: Officer) -> StorageResult<Officer> {
        o.phone = self.db.open_phone(OFFICER_PHONE, &o.phone)?;
        Ok(o)
    }

    /// Insert officers in one transaction (all or nothing).
    pub async fn insert_many(
        &self,
        inputs: &[OfficerInput],
        audit: &AuditEntry,
        action: &str,
    ) -> StorageResult<Vec<String>> {
        self.insert_many_reporting(inputs, audit, action, &|_| {})
            .await
    }

    /// [`Self::insert_many`], calling `progress` with the number of rows written so far (every
    /// 100 rows and at the end, before the commit).
    pub async fn insert_many_reporting(
        &self,
        inputs: &[OfficerInput],
        audit: &AuditEntry,
        action: &str,
        progress: &(dyn Fn(usize) + Sync),
    ) -> StorageResult<Vec<String>> {
        let mut ids = Vec::new();
        let phones = inputs
            .iter()
            .map(|i| self.db.seal_phone(OFFICER_PHONE, &i.phone))
            .collect::<StorageResult<Vec<_>>>()?;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            for (i, phone) in inputs.iter().zip(&phones) {
                let id = crate::new_id();
                sqlx::query("INSERT INTO officers (id, name, certificate_no, org_unit_id, phone_sealed, phone_index, phone_last4_index, \
                             account_id, status, created_at_ms, updated_at_ms, version) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 1)")
                    .bind(&id).bind(&i.name).bind(&i.certificate_no).bind(&i.org_unit_id)
                    .bind(&phone.sealed).bind(&phone.index).bind(&phone.last4_index).bind(&i.account_id)
                    .bind(&i.status).bind(audit.at_ms).execute(&mut *tx).await?;
                let a = AuditEntry { action: action.to_string(), ..audit.clone() }.target("officer", &id)
                    .details(serde_json::json!({"name": i.name, "certificate_no": i.certificate_no}));
                insert_audit!(&mut *tx, &a)?;
                ids.push(id);
                if ids.len() % 100 == 0 {
                    progress(ids.len());
                }
            }
            progress(ids.len());
            tx.commit().await?;
        });
        Ok(ids)
    }

    /// Update an officer if still at `version`.
    pub async fn update(
        &self,
        scope: &Scope,
        id: &str,
        version: i64,
        i: &OfficerInput,
        audit: &AuditEntry,
    ) -> StorageResult<Officer> {
        let before = self.get(scope, id).await?;
        let audit = audit
            .clone()
            .target("officer", id)
            .details(audit_details(i, before.phone != i.phone));
        let phone = self.db.seal_phone(OFFICER_PHONE, &i.phone)?;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE officers SET name = $3, certificate_no = $4, org_unit_id = $5, phone_sealed = $6, phone_index = $7, \
                                 phone_last4_index = $8, account_id = $9, status = $10, updated_at_ms = $11, version = version + 1 \
                                 WHERE id = $1 AND version = $2")
                .bind(id).bind(version).bind(&i.name).bind(&i.certificate_no).bind(&i.org_unit_id)
                .bind(&phone.sealed).bind(&phone.index).bind(&phone.last4_index)
                .bind(&i.account_id).bind(&i.status).bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Delete an officer.
    pub async fn delete(&self, scope: &Scope, id: &str, audit: &AuditEntry) -> StorageResult<()> {
        let o = self.get(scope, id).await?;
        let audit = audit
            .clone()
            .target("officer", id)
            .details(serde_json::json!({"name": o.name, "certificate_no": o.certificate_no}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM officers WHERE id = $1").bind(id).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// One officer visible in `scope`.
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Officer> {
        let mut b = SqlBuilder::default();
        let idp = b.s(id);
        let cond = scope_cond(scope, &mut b);
        let sql = format!("{SELECT} WHERE f.id = {idp} AND {cond}");
        let o = with_pool!(self.db, p => bind_args!(sqlx::query_as::<_, Officer>(&sql), b.args).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("officer")))?;
        self.open(o)
    }

    /// The phone of `id` as stored: sealed value, full-number index, last-four index (for tests
    /// and audits of the sealing; never for display).
    pub async fn stored_phone(
        &self,
        id: &str,
    ) -> StorageResult<(String, Option<String>, Option<String>)> {
        with_pool!(self.db, p => Ok(sqlx::query_as(
            "SELECT phone_sealed, phone_index, phone_last4_index FROM officers WHERE id = $1")
            .bind(id).fetch_one(p).await?))
    }

    /// The certificate numbers among `codes` already registered.
    pub async fn existing_certificates(&self, codes: &[String]) -> StorageResult<Vec<String>> {
        self.db
            .existing_values("officers", "certificate_no", codes)
            .await
    }

    /// List in `scope`, by name.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &OfficerFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Officer>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec![scope_cond(scope, &mut b)];
        if let Some(q) =
            f.q.as_deref()
                .map(search::normalize)
                .filter(|q| !q.is_empty())
        {
            let pat = b.s(search::like_pattern(&q));
            let phone = self
                .db
                .phone_condition(
                    OFFICER_PHONE,
                    &q,
                    "f.phone_index",
                    "f.phone_last4_index",
                    &mut b,
                )
                .map(|c| format!(" OR {c}"))
                .unwrap_or_default();
            conds.push(format!("(lower(f.name) LIKE {pat} ESCAPE '\\' OR lower(f.certificate_no) LIKE {pat} ESCAPE '\\'{phone})"));
        }
        if let Some(o) = f.org_unit_id.as_ref().filter(|s| !s.is_empty()) {
            conds.push(format!("f.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})", b.s(o.clone())));
        }
        if let Some(s) = f.status.as_ref().filter(|s| !s.is_empty()) {
            conds.push(format!("f.status = {}", b.s(s.clone())));
        }
        let w = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM officers f WHERE {w}");
        let mut lb = SqlBuilder {
            args: b.args.clone(),
        };
        let lim = lb.i(page.page_size);
        let off = lb.i(page.offset());
        let list_sql = format!("{SELECT} WHERE {w} ORDER BY f.name, f.id LIMIT {lim} OFFSET {off}");
        with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args).fetch_one(p).await?;
            let items = bind_args!(sqlx::query_as::<_, Officer>(&list_sql), lb.args).fetch_all(p).await?;
            let items = items.into_iter().map(|o| self.open(o)).collect::<StorageResult<_>>()?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }
}

/// An officer as the dispatch registry needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OfficerUnit {
    /// Officer id (the dispatch unit id).
    pub id: String,
    /// Name.
    pub name: String,
    /// Org unit.
    pub org_unit_id: String,
    /// The account the officer logs in with (the phone app's identity).
    pub account_id: Option<String>,
}

impl OfficerRepo<'_> {
    /// Every active officer, for the dispatch registry.
    pub async fn all_active(&self) -> StorageResult<Vec<OfficerUnit>> {
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OfficerUnit>(
            "SELECT id, name, org_unit_id, account_id FROM officers WHERE status = 'active' ORDER BY id").fetch_all(p).await?))
    }
}

//! The inspection item list (检查事项清单): the 25 industry & trade key items and the 7
//! principal-person duties built in (from `seed/inspection_items.json`), editable and versioned.
//!
//! Every edit bumps `version` and writes the previous state to `inspection_item_history`, so what
//! an inspection checked can always be shown in the wording of its time.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::enterprises::FieldError;
use crate::{search, Db, Page, PageRequest, StorageError, StorageResult};

/// The built-in list.
pub const BUILTIN_JSON: &str = include_str!("../seed/inspection_items.json");

/// Item fields as entered.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// Unique code.
    pub code: String,
    /// Sector code (`*` for all sectors).
    pub sector: String,
    /// Category.
    pub category: String,
    /// The wording of the item.
    pub title: String,
    /// Legal basis.
    pub legal_basis: String,
    /// Source document.
    pub source: String,
    /// Effective date `YYYY-MM-DD`.
    pub effective_date: String,
    /// Active.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

impl ItemInput {
    /// Field rules.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        let mut req = |field: &str, v: &str, max: usize| {
            let n = v.trim().chars().count();
            if n == 0 || n > max {
                e.push(FieldError {
                    field: field.into(),
                    message: format!("1–{max} characters"),
                });
            }
        };
        req("code", &self.code, 32);
        req("category", &self.category, 100);
        req("title", &self.title, 1000);
        req("legal_basis", &self.legal_basis, 500);
        req("source", &self.source, 200);
        if !(self.sector == "*"
            || crate::enterprises::SECTORS
                .iter()
                .any(|(c, _)| *c == self.sector))
        {
            e.push(FieldError {
                field: "sector".into(),
                message: "must be 01–06 or *".into(),
            });
        }
        let d = self.effective_date.as_bytes();
        let date_ok = d.len() == 10
            && d[4] == b'-'
            && d[7] == b'-'
            && d.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !date_ok {
            e.push(FieldError {
                field: "effective_date".into(),
                message: "must be YYYY-MM-DD".into(),
            });
        }
        e
    }
}

/// A stored item.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Item {
    /// Id.
    pub id: String,
    /// Code.
    pub code: String,
    /// Sector.
    pub sector: String,
    /// Category.
    pub category: String,
    /// Wording.
    pub title: String,
    /// Legal basis.
    pub legal_basis: String,
    /// Source.
    pub source: String,
    /// Effective date.
    pub effective_date: String,
    /// Active.
    pub active: bool,
    /// Built in (seeded).
    pub builtin: bool,
    /// Version (1 = as seeded or created).
    pub version: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
}

/// One past version of an item.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ItemVersion {
    /// Version number.
    pub version: i64,
    /// The item as it was (JSON text).
    pub snapshot: String,
    /// Username that replaced it.
    pub changed_by: Option<String>,
    /// When it was replaced, ms.
    pub changed_at_ms: i64,
}

/// The item repository.
#[derive(Debug, Clone, Copy)]
pub struct ItemRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Inspection items.
    pub fn inspection_items(&self) -> ItemRepo<'_> {
        ItemRepo { db: self }
    }
}

const COLS: &str = "id, code, sector, category, title, legal_basis, source, effective_date, active, builtin, version, updated_at_ms";

/// Insert the built-in items that are missing (by code). Runs after migrations.
pub(crate) async fn seed_builtin(db: &Db) -> StorageResult<()> {
    let items: Vec<ItemInput> = serde_json::from_str(BUILTIN_JSON)
        .map_err(|e| StorageError::Corrupt(format!("built-in inspection items: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    with_pool!(db, p => {
        let mut tx = p.begin_write().await?;
        for i in &items {
            sqlx::query("INSERT INTO inspection_items (id, code, sector, category, title, legal_basis, source, effective_date, active, builtin, version, updated_at_ms) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, TRUE, TRUE, 1, $9 WHERE NOT EXISTS (SELECT 1 FROM inspection_items WHERE code = $2)")
                .bind(crate::new_id()).bind(&i.code).bind(&i.sector).bind(&i.category).bind(&i.title).bind(&i.legal_basis)
                .bind(&i.source).bind(&i.effective_date).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

impl ItemRepo<'_> {
    /// Create an item.
    pub async fn create(&self, i: &ItemInput, audit: &AuditEntry) -> StorageResult<Item> {
        let id = crate::new_id();
        let audit = audit
            .clone()
            .target("inspection_item", &id)
            .details(serde_json::to_value(i).unwrap_or_default());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO inspection_items (id, code, sector, category, title, legal_basis, source, effective_date, active, builtin, version, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE, 1, $10)")
                .bind(&id).bind(i.code.trim()).bind(&i.sector).bind(i.category.trim()).bind(i.title.trim()).bind(i.legal_basis.trim())
                .bind(i.source.trim()).bind(&i.effective_date).bind(i.active).bind(audit.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.get(&id).await
    }

    /// Replace an item's wording if still at `version`; the old state goes to the history.
    pub async fn update(
        &self,
        id: &str,
        version: i64,
        i: &ItemInput,
        audit: &AuditEntry,
    ) -> StorageResult<Item> {
        let before = self.get(id).await?;
        let snapshot = serde_json::to_string(&before).expect("item serialises");
        let audit = audit
            .clone()
            .target("inspection_item", id)
            .details(serde_json::json!({"from_version": before.version}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE inspection_items SET code = $3, sector = $4, category = $5, title = $6, legal_basis = $7, source = $8, \
                                 effective_date = $9, active = $10, version = version + 1, updated_at_ms = $11 WHERE id = $1 AND version = $2")
                .bind(id).bind(version).bind(i.code.trim()).bind(&i.sector).bind(i.category.trim()).bind(i.title.trim())
                .bind(i.legal_basis.trim()).bind(i.source.trim()).bind(&i.effective_date).bind(i.active).bind(audit.at_ms)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::VersionConflict); }
            sqlx::query("INSERT INTO inspection_item_history (item_id, version, snapshot, changed_by, changed_at_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(id).bind(before.version).bind(&snapshot).bind(audit.actor.username.as_deref()).bind(audit.at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.get(id).await
    }

    /// One item.
    pub async fn get(&self, id: &str) -> StorageResult<Item> {
        let sql = format!("SELECT {COLS} FROM inspection_items WHERE id = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, Item>(&sql).bind(id).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("inspection item")))
    }

    /// Past versions, newest first.
    pub async fn history(&self, id: &str) -> StorageResult<Vec<ItemVersion>> {
        self.get(id).await?;
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, ItemVersion>(
            "SELECT version, snapshot, changed_by, changed_at_ms FROM inspection_item_history WHERE item_id = $1 ORDER BY version DESC")
            .bind(id).fetch_all(p).await?))
    }

    /// List by code.
    pub async fn list(
        &self,
        q: Option<&str>,
        sector: Option<&str>,
        active: Option<bool>,
        page: PageRequest,
    ) -> StorageResult<Page<Item>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec!["1 = 1".to_string()];
        if let Some(q) = q.map(search::normalize).filter(|q| !q.is_empty()) {
            let pat = b.s(search::like_pattern(&q));
            conds.push(format!("(lower(code) LIKE {pat} ESCAPE '\\' OR title LIKE {pat} ESCAPE '\\' OR category LIKE {pat} ESCAPE '\\')"));
        }
        if let Some(s) = sector.filter(|s| !s.is_empty()) {
            conds.push(format!("(sector = {} OR sector = '*')", b.s(s)));
        }
        if let Some(a) = active {
            conds.push(if a {
                "active = TRUE".into()
            } else {
                "active = FALSE".into()
            });
        }
        let w = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM inspection_items WHERE {w}");
        let mut lb = SqlBuilder {
            args: b.args.clone(),
        };
        let lim = lb.i(page.page_size);
        let off = lb.i(page.offset());
        let list_sql = format!(
            "SELECT {COLS} FROM inspection_items WHERE {w} ORDER BY code LIMIT {lim} OFFSET {off}"
        );
        with_pool!(self.db, p => {
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql), b.args).fetch_one(p).await?;
            let items = bind_args!(sqlx::query_as::<_, Item>(&list_sql), lb.args).fetch_all(p).await?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }
}

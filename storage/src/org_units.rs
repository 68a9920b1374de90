//! Org units: the tree corps → brigade (district) → squad / town, plus SOE groups.
//!
//! The closure table `org_unit_closure` holds every (ancestor, descendant) pair, so "the data of a
//! unit's subtree" is one indexed sub-select. [`Scope`] is how the API bounds queries by the
//! caller's org unit.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::audit::{insert_audit, AuditEntry};
use crate::db::with_pool;
use crate::{Db, StorageError, StorageResult};

/// Kind of org unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// City corps (the root).
    Corps,
    /// District brigade.
    Brigade,
    /// Squad within a brigade.
    Squad,
    /// Street / town / functional zone.
    Town,
    /// State-owned enterprise group.
    SoeGroup,
}

impl OrgKind {
    /// Stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Corps => "corps",
            OrgKind::Brigade => "brigade",
            OrgKind::Squad => "squad",
            OrgKind::Town => "town",
            OrgKind::SoeGroup => "soe_group",
        }
    }

    /// Parse a stored code.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "corps" => OrgKind::Corps,
            "brigade" => OrgKind::Brigade,
            "squad" => OrgKind::Squad,
            "town" => OrgKind::Town,
            "soe_group" => OrgKind::SoeGroup,
            _ => return None,
        })
    }

    /// Which kinds may be the parent of this kind (`None` parent only for the corps).
    fn allowed_parent(self, parent: Option<OrgKind>) -> bool {
        matches!(
            (self, parent),
            (OrgKind::Corps, None)
                | (OrgKind::Brigade, Some(OrgKind::Corps))
                | (OrgKind::SoeGroup, Some(OrgKind::Corps))
                | (OrgKind::Squad, Some(OrgKind::Brigade))
                | (OrgKind::Town, Some(OrgKind::Brigade))
        )
    }
}

/// A stored org unit.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OrgUnit {
    /// Id.
    pub id: String,
    /// Parent unit (none for the corps).
    pub parent_id: Option<String>,
    /// Kind code (see [`OrgKind`]).
    pub kind: String,
    /// Name (Chinese).
    pub name: String,
    /// Unique code (administrative division code for districts).
    pub code: String,
    /// Created, ms.
    pub created_at_ms: i64,
}

impl OrgUnit {
    /// Parsed kind.
    pub fn org_kind(&self) -> OrgKind {
        OrgKind::parse(&self.kind).unwrap_or(OrgKind::Squad)
    }
}

/// A new org unit.
#[derive(Debug, Clone)]
pub struct NewOrgUnit {
    /// Parent.
    pub parent_id: Option<String>,
    /// Kind.
    pub kind: OrgKind,
    /// Name.
    pub name: String,
    /// Unique code.
    pub code: String,
}

/// The data scope of a caller: everything, or the subtree of one org unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No bound (the corps and administrators).
    All,
    /// The subtree rooted at this org unit.
    Subtree(String),
}

/// The org unit repository.
#[derive(Debug, Clone, Copy)]
pub struct OrgUnitRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Org units.
    pub fn org_units(&self) -> OrgUnitRepo<'_> {
        OrgUnitRepo { db: self }
    }
}

const COLS: &str = "id, parent_id, kind, name, code, created_at_ms";

impl OrgUnitRepo<'_> {
    /// Create a unit under its parent (kinds must nest: corps → brigade/SOE group → squad/town).
    pub async fn create(&self, new: &NewOrgUnit, audit: &AuditEntry) -> StorageResult<OrgUnit> {
        let parent = match &new.parent_id {
            Some(pid) => Some(self.get(pid).await?),
            None => None,
        };
        if !new
            .kind
            .allowed_parent(parent.as_ref().map(|p| p.org_kind()))
        {
            return Err(StorageError::invalid(
                "parent_id",
                format!(
                    "a {} cannot be placed under {}",
                    new.kind.as_str(),
                    parent
                        .as_ref()
                        .map(|p| p.kind.as_str())
                        .unwrap_or("nothing")
                ),
            ));
        }
        if new.name.trim().is_empty() {
            return Err(StorageError::invalid("name", "must not be empty"));
        }
        if new.code.trim().is_empty() {
            return Err(StorageError::invalid("code", "must not be empty"));
        }
        let unit = OrgUnit {
            id: crate::new_id(),
            parent_id: new.parent_id.clone(),
            kind: new.kind.as_str().to_string(),
            name: new.name.trim().to_string(),
            code: new.code.trim().to_string(),
            created_at_ms: audit.at_ms,
        };
        let audit = audit.clone().target("org_unit", &unit.id).details(serde_json::json!({
            "name": unit.name, "kind": unit.kind, "code": unit.code, "parent_id": unit.parent_id,
        }));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO org_units (id, parent_id, kind, name, code, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&unit.id).bind(&unit.parent_id).bind(&unit.kind).bind(&unit.name).bind(&unit.code).bind(unit.created_at_ms)
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO org_unit_closure (ancestor_id, descendant_id, depth) VALUES ($1, $1, 0)")
                .bind(&unit.id).execute(&mut *tx).await?;
            if let Some(pid) = &unit.parent_id {
                sqlx::query("INSERT INTO org_unit_closure (ancestor_id, descendant_id, depth) \
                             SELECT ancestor_id, $1, depth + 1 FROM org_unit_closure WHERE descendant_id = $2")
                    .bind(&unit.id).bind(pid).execute(&mut *tx).await?;
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.db.org_names.clear();
        self.db.subtrees.clear();
        Ok(unit)
    }

    /// Rename a unit (name and code); the tree shape does not change.
    pub async fn rename(
        &self,
        id: &str,
        name: &str,
        code: &str,
        audit: &AuditEntry,
    ) -> StorageResult<OrgUnit> {
        if name.trim().is_empty() {
            return Err(StorageError::invalid("name", "must not be empty"));
        }
        let audit = audit
            .clone()
            .target("org_unit", id)
            .details(serde_json::json!({"name": name, "code": code}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE org_units SET name = $1, code = $2 WHERE id = $3")
                .bind(name.trim()).bind(code.trim()).bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StorageError::NotFound("org unit"));
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.db.org_names.clear();
        self.db.subtrees.clear();
        self.get(id).await
    }

    /// One unit.
    pub async fn get(&self, id: &str) -> StorageResult<OrgUnit> {
        let sql = format!("SELECT {COLS} FROM org_units WHERE id = $1");
        with_pool!(self.db, p => {
            sqlx::query_as::<_, OrgUnit>(&sql).bind(id).fetch_optional(p).await?
                .ok_or(StorageError::NotFound("org unit"))
        })
    }

    /// One unit by its code.
    pub async fn by_code(&self, code: &str) -> StorageResult<Option<OrgUnit>> {
        let sql = format!("SELECT {COLS} FROM org_units WHERE code = $1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OrgUnit>(&sql).bind(code).fetch_optional(p).await?))
    }

    /// All units, ordered by code.
    pub async fn list(&self) -> StorageResult<Vec<OrgUnit>> {
        let sql = format!("SELECT {COLS} FROM org_units ORDER BY code");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OrgUnit>(&sql).fetch_all(p).await?))
    }

    /// Whether `descendant` is in the subtree of `ancestor` (a unit is in its own subtree).
    pub async fn is_within(&self, ancestor: &str, descendant: &str) -> StorageResult<bool> {
        with_pool!(self.db, p => {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM org_unit_closure WHERE ancestor_id = $1 AND descendant_id = $2")
                .bind(ancestor).bind(descendant).fetch_one(p).await?;
            Ok(n > 0)
        })
    }

    /// The ids of every unit visible in `scope` (one query; for checks over many rows).
    pub async fn visible_ids(
        &self,
        scope: &Scope,
    ) -> StorageResult<std::collections::HashSet<String>> {
        let rows: Vec<String> = match scope {
            Scope::All => {
                with_pool!(self.db, p => sqlx::query_scalar("SELECT id FROM org_units").fetch_all(p).await?)
            }
            Scope::Subtree(root) => with_pool!(self.db, p => sqlx::query_scalar(
                "SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = $1").bind(root).fetch_all(p).await?),
        };
        Ok(rows.into_iter().collect())
    }

    /// Whether `unit` is visible in `scope`.
    pub async fn in_scope(&self, scope: &Scope, unit: &str) -> StorageResult<bool> {
        match scope {
            Scope::All => Ok(true),
            Scope::Subtree(root) => self.is_within(root, unit).await,
        }
    }

    /// The nearest ancestor (or self) of `id` of the given kind.
    pub async fn ancestor_of_kind(
        &self,
        id: &str,
        kind: OrgKind,
    ) -> StorageResult<Option<OrgUnit>> {
        let sql = "SELECT o.id, o.parent_id, o.kind, o.name, o.code, o.created_at_ms FROM org_unit_closure c \
                   JOIN org_units o ON o.id = c.ancestor_id WHERE c.descendant_id = $1 AND o.kind = $2 ORDER BY c.depth LIMIT 1";
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, OrgUnit>(sql).bind(id).bind(kind.as_str()).fetch_optional(p).await?))
    }
}

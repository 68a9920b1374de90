//! Personal data at rest: sealing the phones stored in clear before migration 0020, and key
//! rotation — every sealed value rewritten under the current field key.
//!
//! Sealed values name the key that sealed them (`v2:<key id>:…`, see [`crate::crypto`]), so both
//! passes select exactly the rows they must change, in batches, each batch one transaction with
//! updates guarded by the value read (a row an officer edits meanwhile is left as the edit wrote
//! it — already under the current key). Neither bumps a row's `version` or `updated_at_ms`: what
//! a user sees does not change.

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{with_pool, BeginWrite};
use crate::{Db, Engine, StorageError, StorageResult};

/// Rows per transaction.
const BATCH: i64 = 500;

/// A sealed phone column with its two blind indexes.
struct PhoneColumn {
    table: &'static str,
    /// The name bound into the ciphertext and the indexes.
    name: &'static str,
    sealed: &'static str,
    index: &'static str,
    last4: &'static str,
}

/// Officers' phones.
pub(crate) const OFFICER_PHONE: &str = "officers.phone";
/// Enterprise principals' phones.
pub(crate) const PRINCIPAL_PHONE: &str = "enterprises.principal_phone";

const PHONES: [PhoneColumn; 2] = [
    PhoneColumn {
        table: "officers",
        name: OFFICER_PHONE,
        sealed: "phone_sealed",
        index: "phone_index",
        last4: "phone_last4_index",
    },
    PhoneColumn {
        table: "enterprises",
        name: PRINCIPAL_PHONE,
        sealed: "principal_phone_sealed",
        index: "principal_phone_index",
        last4: "principal_phone_last4_index",
    },
];

/// Sealed columns without an index: (table, column, the name bound into the ciphertext).
const OTHER_SEALED: [(&str, &str, &str); 3] = [
    ("cases", "party_id_sealed", "party_id"),
    ("cases", "party_phone_sealed", "party_phone"),
    ("cases", "proposed_fine_sealed", "proposed_fine"),
];

/// Values rewritten by [`Db::rotate_field_key`], by `table.column`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// `(table.column, values sealed again)`, one entry per sealed column.
    pub columns: Vec<(String, u64)>,
}

impl RotationReport {
    /// Values sealed again in all.
    pub fn total(&self) -> u64 {
        self.columns.iter().map(|(_, n)| n).sum()
    }
}

impl Db {
    /// Seal the phones still stored in clear (rows written before migration 0020), with their
    /// blind indexes; one audit row (`personal_data.seal`) when there were any. Then the old
    /// clear text is purged from the database file — SQLite's free pages and write-ahead log
    /// (`VACUUM`, checkpoint), PostgreSQL's dead row versions (`VACUUM FULL` of the two tables).
    /// Idempotent: a database with nothing in clear is not touched. Returns the rows sealed.
    pub async fn seal_personal_data(&self, audit: &AuditEntry) -> StorageResult<u64> {
        self.field_cipher()?;
        let mut total = 0;
        let mut details = serde_json::Map::new();
        for c in &PHONES {
            let n = self
                .reseal_phones(
                    c,
                    "NOT LIKE 'v1:%' AND {s} NOT LIKE 'v2:%'",
                    None,
                    |clear| Ok(clear.to_string()),
                )
                .await?;
            if n > 0 {
                details.insert(c.name.to_string(), n.into());
            }
            total += n;
        }
        if total == 0 {
            return Ok(0);
        }
        let a = audit.clone().details(serde_json::Value::Object(details));
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.purge_free_space().await?;
        Ok(total)
    }

    /// Rewrite every sealed value not sealed under the current field key — phones (with their
    /// blind indexes) and the case fields — opening it with the previous key that sealed it.
    /// Run after making a new key `auth.field_key` and the old one `auth.previous_field_keys`;
    /// when it returns, the old key opens nothing still stored. One audit row
    /// (`personal_data.rotate_key`) with the counts. A value no configured key opens stops the
    /// run with an error naming the row (rows already rewritten stay rewritten).
    pub async fn rotate_field_key(&self, audit: &AuditEntry) -> StorageResult<RotationReport> {
        let cipher = self.field_cipher()?;
        let current = format!("v2:{}:%", cipher.key_id());
        let mut report = RotationReport::default();
        for c in &PHONES {
            let n = self
                .reseal_phones(c, "NOT LIKE $1", Some(&current), |old| {
                    cipher.open_phone(c.name, old)
                })
                .await?;
            report
                .columns
                .push((format!("{}.{}", c.table, c.sealed), n));
        }
        for (table, column, name) in OTHER_SEALED {
            let select = format!(
                "SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 ORDER BY id LIMIT {BATCH}"
            );
            let update =
                format!("UPDATE {table} SET {column} = $2 WHERE id = $1 AND {column} = $3");
            let mut n = 0u64;
            loop {
                let rows: Vec<(String, String)> = with_pool!(self, p =>
                    sqlx::query_as(&select).bind(&current).fetch_all(p).await?);
                if rows.is_empty() {
                    break;
                }
                let mut fresh = Vec::with_capacity(rows.len());
                for (id, old) in &rows {
                    let plain = cipher
                        .open(name, old)
                        .map_err(|e| StorageError::Corrupt(format!("{table} row {id}: {e}")))?;
                    fresh.push(cipher.seal(name, &plain));
                }
                with_pool!(self, p => {
                    let mut tx = p.begin_write().await?;
                    for ((id, old), s) in rows.iter().zip(&fresh) {
                        sqlx::query(&update).bind(id).bind(s).bind(old).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                });
                n += rows.len() as u64;
            }
            report.columns.push((format!("{table}.{column}"), n));
        }
        let a = audit.clone().details(serde_json::json!({
            "key_id": cipher.key_id(),
            "rewritten": report.columns.iter().map(|(c, n)| (c.clone(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
        }));
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(report)
    }

    /// Seal again, with fresh indexes, every phone of `c` whose stored value matches `cond`
    /// (`{s}` is the sealed column; `$1` is `param`), its clear number from `plain`; in batches,
    /// each one transaction, updates guarded by the value read. Returns the rows rewritten.
    async fn reseal_phones(
        &self,
        c: &PhoneColumn,
        cond: &str,
        param: Option<&str>,
        plain: impl Fn(&str) -> StorageResult<String>,
    ) -> StorageResult<u64> {
        let cipher = self.field_cipher()?;
        let cond = cond.replace("{s}", c.sealed);
        let select = format!(
            "SELECT id, {s} FROM {t} WHERE {s} <> '' AND {s} {cond} ORDER BY id LIMIT {BATCH}",
            s = c.sealed,
            t = c.table
        );
        let update = format!(
            "UPDATE {t} SET {s} = $2, {i} = $3, {l} = $4 WHERE id = $1 AND {s} = $5",
            t = c.table,
            s = c.sealed,
            i = c.index,
            l = c.last4
        );
        let mut n = 0u64;
        loop {
            let rows: Vec<(String, String)> = with_pool!(self, p => {
                let q = sqlx::query_as(&select);
                let q = match param { Some(v) => q.bind(v.to_string()), None => q };
                q.fetch_all(p).await?
            });
            if rows.is_empty() {
                return Ok(n);
            }
            let mut fresh = Vec::with_capacity(rows.len());
            for (id, old) in &rows {
                let clear = plain(old)
                    .map_err(|e| StorageError::Corrupt(format!("{} row {id}: {e}", c.table)))?;
                fresh.push(cipher.seal_phone(c.name, &clear));
            }
            with_pool!(self, p => {
                let mut tx = p.begin_write().await?;
                for ((id, old), s) in rows.iter().zip(&fresh) {
                    sqlx::query(&update).bind(id).bind(&s.sealed).bind(&s.index).bind(&s.last4_index)
                        .bind(old).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            n += rows.len() as u64;
        }
    }

    /// Rewrite the database so that values overwritten by the sealing pass are gone from disk.
    async fn purge_free_space(&self) -> StorageResult<()> {
        match self.engine() {
            Engine::Sqlite => {
                self.execute_raw("VACUUM").await?;
                self.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            }
            Engine::Postgres => {
                for c in &PHONES {
                    self.execute_raw(&format!("VACUUM FULL {}", c.table))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

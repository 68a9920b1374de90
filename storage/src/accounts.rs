//! Accounts and account applications.
//!
//! Password hashes are produced and checked by the API (argon2id); this repository stores them
//! and keeps the lockout counters with atomic updates, so concurrent failed logins cannot race
//! past the limit. An account application is filed by a district and decided by the corps; the
//! approval creates the account in the same transaction.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::audit::{insert_audit, AuditEntry};
use crate::db::with_pool;
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// A stored account (with its org unit's name).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Account {
    /// Id.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// argon2id PHC string.
    #[serde(skip)]
    pub password_hash: String,
    /// Role code.
    pub role: String,
    /// Org unit that bounds the account's data.
    pub org_unit_id: String,
    /// Org unit name.
    pub org_unit_name: String,
    /// `active` or `disabled`.
    pub status: String,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
    /// Consecutive failed logins since the last success or lock.
    pub failed_attempts: i64,
    /// Locked until, ms (none when not locked).
    pub locked_until_ms: Option<i64>,
    /// Last successful login, ms.
    pub last_login_at_ms: Option<i64>,
    /// Last password change, ms.
    pub password_changed_at_ms: i64,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Updated, ms.
    pub updated_at_ms: i64,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role code.
    pub role: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Force a password change at first login.
    pub must_change_password: bool,
}

/// Filter of an account list.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    /// Substring of username or display name.
    pub q: Option<String>,
    /// Role code.
    pub role: Option<String>,
    /// Org unit subtree.
    pub org_unit_id: Option<String>,
}

/// An account application.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Application {
    /// Id.
    pub id: String,
    /// Requested username.
    pub username: String,
    /// Requested display name.
    pub display_name: String,
    /// Requested role.
    pub role: String,
    /// Org unit the account is for.
    pub org_unit_id: String,
    /// Its name.
    pub org_unit_name: String,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `rejected`.
    pub status: String,
    /// Who applied (username).
    pub applicant_username: String,
    /// Who decided (username).
    pub decided_by_username: Option<String>,
    /// Why it was rejected / notes.
    pub decision_reason: Option<String>,
    /// Account created by the approval.
    pub account_id: Option<String>,
    /// Filed, ms.
    pub created_at_ms: i64,
    /// Decided, ms.
    pub decided_at_ms: Option<i64>,
}

/// A new application.
#[derive(Debug, Clone)]
pub struct NewApplication {
    /// Requested username.
    pub username: String,
    /// Requested display name.
    pub display_name: String,
    /// Requested role.
    pub role: String,
    /// Org unit.
    pub org_unit_id: String,
    /// Why.
    pub reason: String,
    /// Applicant account id.
    pub applicant_id: String,
}

/// Result of recording a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureState {
    /// Failures counted so far (0 right after a lock is set).
    pub failed_attempts: i64,
    /// Lock time if this failure locked the account.
    pub locked_until_ms: Option<i64>,
}

/// A counted failure's outcome from the counter's new `(failed_attempts, locked_until_ms)`, and
/// its audit rows: the login row `audit` with `locked` added, and when this failure locked, an
/// `auth.lockout` row shaped by `lockout`.
fn failure_rows(
    row: (i64, Option<i64>),
    lock_until_ms: i64,
    audit: &AuditEntry,
    lockout: impl FnOnce(AuditEntry) -> AuditEntry,
) -> (FailureState, AuditEntry, Option<AuditEntry>) {
    let locked = row.1 == Some(lock_until_ms);
    let mut login = audit.clone();
    if let serde_json::Value::Object(m) = &mut login.details {
        m.insert("locked".into(), serde_json::Value::Bool(locked));
    }
    let lock_row =
        locked.then(|| lockout(AuditEntry::new(&audit.actor, "auth.lockout", audit.at_ms)));
    let state = FailureState {
        failed_attempts: row.0,
        locked_until_ms: locked.then_some(lock_until_ms),
    };
    (state, login, lock_row)
}

/// The account repository.
#[derive(Debug, Clone, Copy)]
pub struct AccountRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Accounts and applications.
    pub fn accounts(&self) -> AccountRepo<'_> {
        AccountRepo { db: self }
    }
}

const SELECT: &str = "SELECT a.id, a.username, a.display_name, a.password_hash, a.role, a.org_unit_id, \
    o.name AS org_unit_name, a.status, a.must_change_password, a.failed_attempts, a.locked_until_ms, \
    a.last_login_at_ms, a.password_changed_at_ms, a.created_at_ms, a.updated_at_ms \
    FROM accounts a JOIN org_units o ON o.id = a.org_unit_id";

const APP_SELECT: &str =
    "SELECT p.id, p.username, p.display_name, p.role, p.org_unit_id, o.name AS org_unit_name, \
    p.reason, p.status, ap.username AS applicant_username, dc.username AS decided_by_username, \
    p.decision_reason, p.account_id, p.created_at_ms, p.decided_at_ms \
    FROM account_applications p JOIN org_units o ON o.id = p.org_unit_id \
    JOIN accounts ap ON ap.id = p.applicant_id LEFT JOIN accounts dc ON dc.id = p.decided_by_id";

fn validate_username(u: &str) -> StorageResult<()> {
    let ok = (3..=64).contains(&u.chars().count())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "username",
            "3–64 characters of letters, digits, '_', '.', '-', '@'",
        ))
    }
}

impl AccountRepo<'_> {
    /// Create an account.
    pub async fn create(&self, new: &NewAccount, audit: &AuditEntry) -> StorageResult<Account> {
        validate_username(&new.username)?;
        if new.display_name.trim().is_empty() {
            return Err(StorageError::invalid("display_name", "must not be empty"));
        }
        let id = crate::new_id();
        let audit = audit
            .clone()
            .target("account", &id)
            .details(serde_json::json!({
                "username": new.username, "role": new.role, "org_unit_id": new.org_unit_id,
            }));
        let now = audit.at_ms;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO accounts (id, username, display_name, password_hash, role, org_unit_id, status, \
                         must_change_password, failed_attempts, password_changed_at_ms, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, 0, $8, $8, $8)")
                .bind(&id).bind(&new.username).bind(new.display_name.trim()).bind(&new.password_hash)
                .bind(&new.role).bind(&new.org_unit_id).bind(new.must_change_password).bind(now)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.get(&id).await
    }

    /// One account by id.
    pub async fn get(&self, id: &str) -> StorageResult<Account> {
        let sql = format!("{SELECT} WHERE a.id = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, Account>(&sql).bind(id).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("account")))
    }

    /// One account by username.
    pub async fn by_username(&self, username: &str) -> StorageResult<Option<Account>> {
        let sql = format!("{SELECT} WHERE a.username = $1");
        with_pool!(self.db, p => Ok(sqlx::query_as::<_, Account>(&sql).bind(username).fetch_optional(p).await?))
    }

    /// List accounts in `scope`.
    pub async fn list(
        &self,
        scope: &Scope,
        f: &AccountFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Account>> {
        let scope_id = match scope {
            Scope::All => None,
            Scope::Subtree(id) => Some(id.as_str()),
        };
        let q =
            f.q.as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| crate::search::like_pattern(&s.to_lowercase()));
        let where_sql = "WHERE ($1 IS NULL OR a.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = $1)) \
            AND ($2 IS NULL OR lower(a.username) LIKE $2 ESCAPE '\\' OR lower(a.display_name) LIKE $2 ESCAPE '\\') \
            AND ($3 IS NULL OR a.role = $3) \
            AND ($4 IS NULL OR a.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = $4))";
        let count_sql = format!("SELECT COUNT(*) FROM accounts a {where_sql}");
        let list_sql = format!("{SELECT} {where_sql} ORDER BY a.username LIMIT $5 OFFSET $6");
        with_pool!(self.db, p => {
            let total: i64 = sqlx::query_scalar(&count_sql)
                .bind(scope_id).bind(q.as_deref()).bind(f.role.as_deref()).bind(f.org_unit_id.as_deref())
                .fetch_one(p).await?;
            let items = sqlx::query_as::<_, Account>(&list_sql)
                .bind(scope_id).bind(q.as_deref()).bind(f.role.as_deref()).bind(f.org_unit_id.as_deref())
                .bind(page.page_size).bind(page.offset())
                .fetch_all(p).await?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }

    /// Count a failed login; lock the account until `lock_until_ms` when the count reaches
    /// `max_failures` (the counter then starts again). Atomic.
    pub async fn record_failure(
        &self,
        id: &str,
        max_failures: i64,
        lock_until_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<FailureState> {
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let row: (i64, Option<i64>) = sqlx::query_as(
                "UPDATE accounts SET \
                   locked_until_ms = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE locked_until_ms END, \
                   failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 ELSE failed_attempts + 1 END \
                 WHERE id = $1 RETURNING failed_attempts, locked_until_ms")
                .bind(id).bind(max_failures).bind(lock_until_ms)
                .fetch_one(&mut *tx).await?;
            let (state, login, lockout) = failure_rows(row, lock_until_ms, audit, |a| {
                a.target("account", id).details(
                    serde_json::json!({"locked_until_ms": lock_until_ms, "max_failures": max_failures}),
                )
            });
            insert_audit!(&mut *tx, &login)?;
            if let Some(l) = &lockout {
                insert_audit!(&mut *tx, l)?;
            }
            tx.commit().await?;
            Ok(state)
        })
    }

    /// The lock on a username that names no account (`name_key`: a keyed hash of the
    /// normalised name), if one holds at `now_ms`.
    pub async fn unknown_lock(&self, name_key: &str, now_ms: i64) -> StorageResult<Option<i64>> {
        let until: Option<Option<i64>> = with_pool!(self.db, p => {
            sqlx::query_scalar("SELECT locked_until_ms FROM login_failures WHERE name_key = $1")
                .bind(name_key)
                .fetch_optional(p)
                .await?
        });
        Ok(until.flatten().filter(|u| *u > now_ms))
    }

    /// Count a failed login naming no account, as [`Self::record_failure`] counts an
    /// account's: the `max_failures`-th locks the name until `lock_until_ms` (and the counter
    /// restarts). Writes `audit` (with `locked`), and `auth.lockout` when it locks. Rows not
    /// touched for a day are purged.
    pub async fn record_unknown_failure(
        &self,
        name_key: &str,
        max_failures: i64,
        lock_until_ms: i64,
        audit: &AuditEntry,
    ) -> StorageResult<FailureState> {
        let now = audit.at_ms;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM login_failures WHERE updated_at_ms < $1")
                .bind(now - 86_400_000)
                .execute(&mut *tx)
                .await?;
            let row: (i64, Option<i64>) = sqlx::query_as(
                "INSERT INTO login_failures (name_key, failed_attempts, locked_until_ms, updated_at_ms) \
                 VALUES ($1, CASE WHEN 1 >= CAST($2 AS BIGINT) THEN 0 ELSE 1 END, CASE WHEN 1 >= CAST($2 AS BIGINT) THEN CAST($3 AS BIGINT) ELSE NULL END, $4) \
                 ON CONFLICT (name_key) DO UPDATE SET \
                   locked_until_ms = CASE WHEN login_failures.failed_attempts + 1 >= CAST($2 AS BIGINT) THEN CAST($3 AS BIGINT) ELSE login_failures.locked_until_ms END, \
                   failed_attempts = CASE WHEN login_failures.failed_attempts + 1 >= CAST($2 AS BIGINT) THEN 0 ELSE login_failures.failed_attempts + 1 END, \
                   updated_at_ms = $4 \
                 RETURNING failed_attempts, locked_until_ms")
                .bind(name_key).bind(max_failures).bind(lock_until_ms).bind(now)
                .fetch_one(&mut *tx).await?;
            let (state, login, lockout) = failure_rows(row, lock_until_ms, audit, |a| {
                a.details(serde_json::json!({"locked_until_ms": lock_until_ms, "max_failures": max_failures, "unknown_user": true}))
            });
            insert_audit!(&mut *tx, &login)?;
            if let Some(l) = &lockout {
                insert_audit!(&mut *tx, l)?;
            }
            tx.commit().await?;
            Ok(state)
        })
    }

    /// Set a new password hash (clears the forced-change flag unless `must_change` is set).
    pub async fn set_password(
        &self,
        id: &str,
        hash: &str,
        must_change: bool,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let audit = audit.clone().target("account", id);
        let now = audit.at_ms;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE accounts SET password_hash = $2, must_change_password = $3, password_changed_at_ms = $4, updated_at_ms = $4 WHERE id = $1")
                .bind(id).bind(hash).bind(must_change).bind(now).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::NotFound("account")); }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Clear a lock and the failure counter.
    pub async fn unlock(&self, id: &str, audit: &AuditEntry) -> StorageResult<Account> {
        self.update_simple(id, "UPDATE accounts SET locked_until_ms = NULL, failed_attempts = 0, updated_at_ms = $2 WHERE id = $1", audit).await
    }

    /// Disable or enable an account.
    pub async fn set_status(
        &self,
        id: &str,
        active: bool,
        audit: &AuditEntry,
    ) -> StorageResult<Account> {
        let sql = if active {
            "UPDATE accounts SET status = 'active', updated_at_ms = $2 WHERE id = $1"
        } else {
            "UPDATE accounts SET status = 'disabled', updated_at_ms = $2 WHERE id = $1"
        };
        self.update_simple(id, sql, audit).await
    }

    async fn update_simple(
        &self,
        id: &str,
        sql: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Account> {
        let audit = audit.clone().target("account", id);
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(sql).bind(id).bind(audit.at_ms).execute(&mut *tx).await?.rows_affected();
            if n == 0 { return Err(StorageError::NotFound("account")); }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.get(id).await
    }

    /// File an application.
    pub async fn apply(
        &self,
        new: &NewApplication,
        audit: &AuditEntry,
    ) -> StorageResult<Application> {
        validate_username(&new.username)?;
        if self.by_username(&new.username).await?.is_some() {
            return Err(StorageError::Duplicate {
                field: "username".into(),
            });
        }
        if new.reason.trim().is_empty() {
            return Err(StorageError::invalid("reason", "must not be empty"));
        }
        let id = crate::new_id();
        let audit = audit.clone().target("account_application", &id)
            .details(serde_json::json!({"username": new.username, "role": new.role, "org_unit_id": new.org_unit_id}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO account_applications (id, username, display_name, role, org_unit_id, reason, status, applicant_id, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)")
                .bind(&id).bind(&new.username).bind(new.display_name.trim()).bind(&new.role).bind(&new.org_unit_id)
                .bind(new.reason.trim()).bind(&new.applicant_id).bind(audit.at_ms)
                .execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.application(&id).await
    }

    /// One application.
    pub async fn application(&self, id: &str) -> StorageResult<Application> {
        let sql = format!("{APP_SELECT} WHERE p.id = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, Application>(&sql).bind(id).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("account application")))
    }

    /// Applications in `scope`, newest first.
    pub async fn applications(
        &self,
        scope: &Scope,
        status: Option<&str>,
        page: PageRequest,
    ) -> StorageResult<Page<Application>> {
        let scope_id = match scope {
            Scope::All => None,
            Scope::Subtree(id) => Some(id.as_str()),
        };
        let where_sql = "WHERE ($1 IS NULL OR p.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = $1)) \
                         AND ($2 IS NULL OR p.status = $2)";
        let count_sql = format!("SELECT COUNT(*) FROM account_applications p {where_sql}");
        let list_sql =
            format!("{APP_SELECT} {where_sql} ORDER BY p.created_at_ms DESC LIMIT $3 OFFSET $4");
        with_pool!(self.db, p => {
            let total: i64 = sqlx::query_scalar(&count_sql).bind(scope_id).bind(status).fetch_one(p).await?;
            let items = sqlx::query_as::<_, Application>(&list_sql).bind(scope_id).bind(status)
                .bind(page.page_size).bind(page.offset()).fetch_all(p).await?;
            Ok(Page { items, total, page: page.page, page_size: page.page_size })
        })
    }

    /// Approve a pending application: create its account (with `password_hash`, forced change)
    /// and mark the application approved, in one transaction.
    pub async fn approve(
        &self,
        app_id: &str,
        decider_id: &str,
        password_hash: &str,
        audit: &AuditEntry,
    ) -> StorageResult<(Application, Account)> {
        let app = self.application(app_id).await?;
        if app.status != "pending" {
            return Err(StorageError::invalid(
                "status",
                format!("the application is already {}", app.status),
            ));
        }
        let account_id = crate::new_id();
        let now = audit.at_ms;
        let audit_app = audit
            .clone()
            .target("account_application", app_id)
            .details(serde_json::json!({"account_id": account_id}));
        let audit_acc = AuditEntry::new(&audit.actor, "account.create", now).target("account", &account_id)
            .details(serde_json::json!({"username": app.username, "role": app.role, "org_unit_id": app.org_unit_id, "application_id": app_id}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO accounts (id, username, display_name, password_hash, role, org_unit_id, status, \
                         must_change_password, failed_attempts, password_changed_at_ms, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'active', TRUE, 0, $7, $7, $7)")
                .bind(&account_id).bind(&app.username).bind(&app.display_name).bind(password_hash)
                .bind(&app.role).bind(&app.org_unit_id).bind(now)
                .execute(&mut *tx).await?;
            let n = sqlx::query("UPDATE account_applications SET status = 'approved', decided_by_id = $2, decided_at_ms = $3, account_id = $4 \
                                 WHERE id = $1 AND status = 'pending'")
                .bind(app_id).bind(decider_id).bind(now).bind(&account_id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StorageError::VersionConflict);
            }
            insert_audit!(&mut *tx, &audit_app)?;
            insert_audit!(&mut *tx, &audit_acc)?;
            tx.commit().await?;
        });
        Ok((
            self.application(app_id).await?,
            self.get(&account_id).await?,
        ))
    }

    /// Reject a pending application.
    pub async fn reject(
        &self,
        app_id: &str,
        decider_id: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<Application> {
        if reason.trim().is_empty() {
            return Err(StorageError::invalid("reason", "must not be empty"));
        }
        let audit = audit
            .clone()
            .target("account_application", app_id)
            .details(serde_json::json!({"reason": reason}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE account_applications SET status = 'rejected', decided_by_id = $2, decided_at_ms = $3, decision_reason = $4 \
                                 WHERE id = $1 AND status = 'pending'")
                .bind(app_id).bind(decider_id).bind(audit.at_ms).bind(reason.trim()).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StorageError::invalid("status", "the application is not pending"));
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
        });
        self.application(app_id).await
    }

    /// Number of accounts (for first-run checks).
    pub async fn count(&self) -> StorageResult<i64> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(p).await?))
    }
}

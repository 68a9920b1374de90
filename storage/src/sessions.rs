//! Login sessions. Only a SHA-256 of the bearer token is stored.
//!
//! One live session per account: [`SessionRepo::start`] ends every other live session of the
//! account in the same transaction that creates the new one, and writes the login audit row and
//! the account's login bookkeeping with it.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::audit::{insert_audit, AuditEntry};
use crate::db::with_pool;
use crate::{Db, StorageError, StorageResult};

/// A stored session.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Session {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// Account.
    pub account_id: String,
    /// A wall-screen (dispatch screen) session.
    pub wall_screen: bool,
    /// Client address at login.
    pub ip: Option<String>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Started, ms.
    pub created_at_ms: i64,
    /// Last request, ms (updated at most once a minute).
    pub last_seen_at_ms: i64,
    /// Ended, ms.
    pub ended_at_ms: Option<i64>,
    /// `logout`, `superseded`, `idle`, `password_changed`, `disabled`, …
    pub end_reason: Option<String>,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// Account.
    pub account_id: String,
    /// Wall-screen session.
    pub wall_screen: bool,
    /// Client address.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
}

/// The session repository.
#[derive(Debug, Clone, Copy)]
pub struct SessionRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Sessions.
    pub fn sessions(&self) -> SessionRepo<'_> {
        SessionRepo { db: self }
    }
}

const COLS: &str = "token_hash, account_id, wall_screen, ip, user_agent, created_at_ms, last_seen_at_ms, ended_at_ms, end_reason";

impl SessionRepo<'_> {
    /// Start a session: end the account's other live sessions (`superseded`), reset its failure
    /// counter and lock, set its last login, write `audit` (the login); one transaction.
    /// Returns the token hashes of the sessions it ended.
    pub async fn start(&self, new: &NewSession, audit: &AuditEntry) -> StorageResult<Vec<String>> {
        let now = audit.at_ms;
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let ended: Vec<String> = sqlx::query_scalar(
                "UPDATE sessions SET ended_at_ms = $2, end_reason = 'superseded' WHERE account_id = $1 AND ended_at_ms IS NULL RETURNING token_hash")
                .bind(&new.account_id).bind(now).fetch_all(&mut *tx).await?;
            sqlx::query("INSERT INTO sessions (token_hash, account_id, wall_screen, ip, user_agent, created_at_ms, last_seen_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6)")
                .bind(&new.token_hash).bind(&new.account_id).bind(new.wall_screen).bind(&new.ip).bind(&new.user_agent).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("UPDATE accounts SET failed_attempts = 0, locked_until_ms = NULL, last_login_at_ms = $2 WHERE id = $1")
                .bind(&new.account_id).bind(now).execute(&mut *tx).await?;
            let mut audit = audit.clone();
            if let serde_json::Value::Object(m) = &mut audit.details {
                m.insert("superseded_sessions".into(), serde_json::json!(ended.len()));
            }
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
            Ok(ended)
        })
    }

    /// A session by token hash (ended ones too).
    pub async fn get(&self, token_hash: &str) -> StorageResult<Session> {
        let sql = format!("SELECT {COLS} FROM sessions WHERE token_hash = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, Session>(&sql).bind(token_hash).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("session")))
    }

    /// Record activity.
    pub async fn touch(&self, token_hash: &str, now_ms: i64) -> StorageResult<()> {
        with_pool!(self.db, p => {
            sqlx::query("UPDATE sessions SET last_seen_at_ms = $2 WHERE token_hash = $1 AND ended_at_ms IS NULL")
                .bind(token_hash).bind(now_ms).execute(p).await?;
        });
        Ok(())
    }

    /// End one session with a reason, auditing it. Ending an ended session changes nothing.
    pub async fn end(
        &self,
        token_hash: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> StorageResult<bool> {
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE sessions SET ended_at_ms = $2, end_reason = $3 WHERE token_hash = $1 AND ended_at_ms IS NULL")
                .bind(token_hash).bind(audit.at_ms).bind(reason).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// End every live session of an account (password reset, disable). Returns the ended hashes.
    pub async fn end_all(
        &self,
        account_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StorageResult<Vec<String>> {
        with_pool!(self.db, p => {
            Ok(sqlx::query_scalar("UPDATE sessions SET ended_at_ms = $2, end_reason = $3 WHERE account_id = $1 AND ended_at_ms IS NULL RETURNING token_hash")
                .bind(account_id).bind(now_ms).bind(reason).fetch_all(p).await?)
        })
    }
}

//! GB/T 28181 digest nonces, single-use and shared by every signalling node: a nonce is
//! [issued](SipNonceRepo::issue) when a `REGISTER` is challenged and [consumed](SipNonceRepo::consume)
//! by the first `REGISTER` that answers it (an atomic `DELETE … RETURNING`, so of two nodes or
//! two copies of one request exactly one wins). Expired rows are [purged](SipNonceRepo::purge_expired).

use crate::db::with_pool;
use crate::{Db, StorageResult};

/// The nonce table.
pub struct SipNonceRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Single-use SIP digest nonces.
    pub fn sip_nonces(&self) -> SipNonceRepo<'_> {
        SipNonceRepo { db: self }
    }
}

impl SipNonceRepo<'_> {
    /// Record a nonce just issued, good until `expires_at_ms`. Issuing the same nonce twice keeps
    /// the first row.
    pub async fn issue(&self, nonce: &str, expires_at_ms: i64) -> StorageResult<()> {
        with_pool!(self.db, p => {
            sqlx::query(
                "INSERT INTO sip_nonces (nonce, expires_at_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            )
            .bind(nonce)
            .bind(expires_at_ms)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// Use a nonce: `true` exactly once for a nonce issued and not expired at `now_ms`; `false`
    /// for a nonce never issued, already used, or expired (the row goes either way).
    pub async fn consume(&self, nonce: &str, now_ms: i64) -> StorageResult<bool> {
        let expires: Option<i64> = with_pool!(self.db, p => {
            sqlx::query_scalar("DELETE FROM sip_nonces WHERE nonce = $1 RETURNING expires_at_ms")
                .bind(nonce)
                .fetch_optional(p)
                .await?
        });
        Ok(expires.is_some_and(|e| e > now_ms))
    }

    /// Delete the nonces expired at `now_ms`; how many went.
    pub async fn purge_expired(&self, now_ms: i64) -> StorageResult<u64> {
        let n = with_pool!(self.db, p => {
            sqlx::query("DELETE FROM sip_nonces WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}

//! GB/T 28181 digest nonces used, shared by every signalling node: nonces are stateless (an HMAC
//! and an issue time, checked without the database), and only a `REGISTER` whose digest is
//! right [spends](SipNonceRepo::spend) its nonce here — an `INSERT … ON CONFLICT DO NOTHING`,
//! so of two nodes or two copies of one request exactly one records it and the other finds it
//! used. Challenging and forged requests store nothing. Rows past the nonce's expiry (when it
//! is stale anyway) are [purged](SipNonceRepo::purge_expired).

use crate::db::with_pool;
use crate::{Db, StorageResult};

/// The table of used nonces.
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
    /// Record a nonce as used, kept until `expires_at_ms`: `true` when this call recorded it
    /// (its first use), `false` when it was used before.
    pub async fn spend(&self, nonce: &str, expires_at_ms: i64) -> StorageResult<bool> {
        let n = with_pool!(self.db, p => {
            sqlx::query(
                "INSERT INTO sip_used_nonces (nonce, expires_at_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            )
            .bind(nonce)
            .bind(expires_at_ms)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Delete the used nonces expired at `now_ms` (stale by then); how many went.
    pub async fn purge_expired(&self, now_ms: i64) -> StorageResult<u64> {
        let n = with_pool!(self.db, p => {
            sqlx::query("DELETE FROM sip_used_nonces WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}

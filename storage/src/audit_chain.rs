//! The audit log's hash chain: sealing committed audit rows after the fact, and checking them
//! against signed chain heads kept outside the database.
//!
//! The audit log is append-only by trigger, but whoever administers the database can drop the
//! trigger and rewrite or delete rows. The chain makes that visible:
//!
//! * **Link.** `link₀ = SM3("shouhu-audit-chain-v1/genesis")`, and the row sealed at position
//!   `p` gets `linkₚ = SM3("shouhu-audit-chain-v1" ‖ linkₚ₋₁ ‖ p ‖ canonical(row))` (`p` as a
//!   big-endian i64). [`ChainRow::canonical`] encodes **every column** of `audit_log` in the
//!   fixed order of [`COLUMNS`], each as its name, then `n` (NULL), `i` + 8 bytes big-endian
//!   (integers) or `t` + a 4-byte big-endian length + UTF-8 (text). A storage test checks that
//!   [`COLUMNS`] is exactly the table's column set on both engines, so a migration that adds a
//!   column to `audit_log` must extend the encoding (with a new domain) or fail that test.
//! * **Order: sealing order, not commit order.** Ordinary writes are not serialised: the chain is
//!   computed after commit by [`AuditChainRepo::seal`], which takes every committed row not yet in
//!   the chain, in `seq` order, and appends them at the next positions (table `audit_chain`). A
//!   PostgreSQL row whose `seq` was drawn before a higher one but committed after the job sealed
//!   the higher one is therefore sealed by the next run, at a later position, never skipped.
//!   To keep the search for such late rows cheap, a run only looks above a *floor*: the highest
//!   `seq` sealed by a seal at least `settle_ms` old (no transaction stays open that long). A row
//!   below the floor that is not in the chain appeared after its neighbours were sealed — an
//!   insertion — and [`AuditChainRepo::verify`] reports it.
//! * **Heads.** Each seal (one run's batch) records an [`AuditHead`] — seal number, chain length,
//!   last link, highest `seq`, time — signed with the server's Ed25519 evidence key (the key that
//!   signs recordings' chain heads, [`crate::evidence::Signer`]). The caller exports it outside
//!   the database (blob store, an append-only file a deployment ships off the machine); a copy
//!   stays in `audit_seals`.
//! * **Verification** recomputes the chain from the genesis over the rows as they are now and
//!   reports the first break ([`AuditBreak`]): a row changed (with the columns whose fingerprints
//!   differ), a row or link missing, the chain and rows rewritten together (a signed head no
//!   longer matches), the chain cut short of a signed head, a row inserted into the sealed range.
//!
//! Only the exported heads are trusted: the `audit_chain` links in the database serve to name the
//! exact row when only rows were changed, and to make the next seal and verification incremental.

use crate::db::BeginWrite;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sm3::{Digest, Sm3};

use crate::db::with_pool;
use crate::evidence::{verify_signature, EvidenceError, Signer};
use crate::{Db, Engine, StorageResult};

const DOMAIN: &[u8] = b"shouhu-audit-chain-v1";
/// The `format` of an [`AuditHead`].
pub const HEAD_FORMAT: &str = "shouhu-audit-head-v1";
/// Rows sealed per transaction.
pub const SEAL_BATCH: i64 = 5_000;
/// Rows read per page while verifying.
const VERIFY_PAGE: i64 = 2_000;

/// The columns of `audit_log`, in the order the canonical encoding covers them.
pub const COLUMNS: [&str; 11] = [
    "seq",
    "id",
    "at_ms",
    "account_id",
    "username",
    "action",
    "target_kind",
    "target_id",
    "ip",
    "outcome",
    "details",
];

const ROW_SELECT: &str = "a.seq, a.id, a.at_ms, a.account_id, a.username, a.action, \
     a.target_kind, a.target_id, a.ip, a.outcome, a.details";

/// One `audit_log` row with every column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChainRow {
    /// Insertion sequence number.
    pub seq: i64,
    /// Row id (UUIDv7).
    pub id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Account id.
    pub account_id: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Action code.
    pub action: String,
    /// Target kind.
    pub target_kind: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Outcome code.
    pub outcome: String,
    /// JSON details as text.
    pub details: String,
}

enum Value<'a> {
    Int(i64),
    Text(Option<&'a str>),
}

fn encode_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Text(None) => out.push(b'n'),
        Value::Text(Some(s)) => {
            out.push(b't');
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

impl ChainRow {
    fn values(&self) -> [Value<'_>; 11] {
        [
            Value::Int(self.seq),
            Value::Text(Some(&self.id)),
            Value::Int(self.at_ms),
            Value::Text(self.account_id.as_deref()),
            Value::Text(self.username.as_deref()),
            Value::Text(Some(&self.action)),
            Value::Text(self.target_kind.as_deref()),
            Value::Text(self.target_id.as_deref()),
            Value::Text(self.ip.as_deref()),
            Value::Text(Some(&self.outcome)),
            Value::Text(Some(&self.details)),
        ]
    }

    /// The canonical encoding of every column (see the module doc).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.details.len());
        for (name, v) in COLUMNS.iter().zip(self.values().iter()) {
            out.extend_from_slice(name.as_bytes());
            encode_value(&mut out, v);
        }
        out
    }

    /// A 4-byte SM3 fingerprint of each column, hex, concatenated in [`COLUMNS`] order: only to
    /// name the column that changed (the link is what proves it).
    pub fn column_digests(&self) -> String {
        let mut s = String::with_capacity(8 * COLUMNS.len());
        for (name, v) in COLUMNS.iter().zip(self.values().iter()) {
            let mut enc = name.as_bytes().to_vec();
            encode_value(&mut enc, v);
            s.push_str(&hex::encode(&Sm3::digest(&enc)[..4]));
        }
        s
    }
}

/// The names of the columns whose fingerprints differ between two [`ChainRow::column_digests`].
pub fn changed_columns(sealed: &str, now: &str) -> Vec<&'static str> {
    COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| sealed.get(i * 8..i * 8 + 8) != now.get(i * 8..i * 8 + 8))
        .map(|(_, c)| *c)
        .collect()
}

/// The link before position 1.
pub fn genesis() -> [u8; 32] {
    let mut h = Sm3::new();
    h.update(DOMAIN);
    h.update(b"/genesis");
    h.finalize().into()
}

/// The link of `row` sealed at `position` after `prev`.
pub fn link(prev: &[u8; 32], position: i64, row: &ChainRow) -> [u8; 32] {
    let mut h = Sm3::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(position.to_be_bytes());
    h.update(row.canonical());
    h.finalize().into()
}

/// A signed chain head: what one seal exports outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// [`HEAD_FORMAT`].
    pub format: String,
    /// The seal, from 1.
    pub seal_no: i64,
    /// When it was sealed, ms since the epoch.
    pub at_ms: i64,
    /// The first position this seal added.
    pub first_position: i64,
    /// The chain's length after this seal (the position of the last row).
    pub position: i64,
    /// The id of the audit row at `position`.
    pub last_audit_id: String,
    /// The highest `audit_log.seq` sealed so far.
    pub max_audit_seq: i64,
    /// The link at `position`, hex.
    pub link: String,
    /// The signer's public key, hex (informative: verification uses the trusted key).
    pub public_key: String,
    /// Ed25519 signature over [`AuditHead::signed_bytes`], hex.
    pub signature: String,
}

impl AuditHead {
    /// The bytes the signature covers: the domain, then the head as JSON with an empty signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut h = self.clone();
        h.signature.clear();
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(b"/head/");
        out.extend(serde_json::to_vec(&h).expect("a head serialises"));
        out
    }

    /// Sign with the server's key (sets `public_key` and `signature`).
    pub fn sign(mut self, signer: &Signer) -> Self {
        self.public_key = signer.public_key_hex();
        self.signature = signer.sign(&self.signed_bytes());
        self
    }

    /// Check the format and the signature with the trusted key.
    pub fn verify(&self, public_key_hex: &str) -> Result<(), EvidenceError> {
        if self.format != HEAD_FORMAT {
            return Err(EvidenceError::Malformed("format"));
        }
        verify_signature(public_key_hex, &self.signed_bytes(), &self.signature)
    }
}

/// The first thing wrong with the audit log, by chain position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// A head does not verify with the trusted key.
    #[error("exported head of seal {seal_no} does not verify: {reason}")]
    ForgedHead {
        /// Its seal number as written.
        seal_no: i64,
        /// Why.
        reason: String,
    },
    /// Rows were sealed but no exported head was given.
    #[error("{chain_length} row(s) are sealed in the database but no exported head was found to check them against")]
    NoHeads {
        /// Links in `audit_chain`.
        chain_length: i64,
    },
    /// A link is missing from `audit_chain`.
    #[error("position {expected}: the chain link is missing (the next one found is position {found}); the chain table was edited")]
    ChainGap {
        /// The position expected.
        expected: i64,
        /// The one found.
        found: i64,
    },
    /// A sealed row is gone from `audit_log`.
    #[error("position {position}: audit row {id} (seq {seq}) was deleted")]
    RowMissing {
        /// Chain position.
        position: i64,
        /// Its `seq`.
        seq: i64,
        /// Its id.
        id: String,
    },
    /// A sealed row's content changed.
    #[error("position {position}: audit row {id} (seq {seq}) was changed since it was sealed ({})", describe_columns(.columns))]
    RowChanged {
        /// Chain position.
        position: i64,
        /// Its `seq`.
        seq: i64,
        /// Its id.
        id: String,
        /// The columns whose fingerprints differ (empty when the fingerprints were rewritten too).
        columns: Vec<String>,
    },
    /// The rows and the database's links agree, but not with a signed head: rows and links were
    /// rewritten together somewhere in `from_position..=position`.
    #[error("position {position}: the chain no longer leads to the head signed by seal {seal_no}; rows and links between positions {from_position} and {position} were rewritten together (the first of them: audit row {first_id}, seq {first_seq})")]
    HeadMismatch {
        /// The head's position.
        position: i64,
        /// The head's seal.
        seal_no: i64,
        /// The first position after the last head that still matched.
        from_position: i64,
        /// The id of the row now at `from_position`.
        first_id: String,
        /// Its `seq`.
        first_seq: i64,
    },
    /// The chain ends before a signed head.
    #[error("position {missing_from}: the chain ends at position {chain_length} but seal {seal_no} signed {head_position} rows (the last was audit row {last_audit_id}); rows and links from position {missing_from} were deleted")]
    Truncated {
        /// The chain's length now.
        chain_length: i64,
        /// The first missing position.
        missing_from: i64,
        /// The head's position.
        head_position: i64,
        /// The head's seal.
        seal_no: i64,
        /// The id of the head's last row.
        last_audit_id: String,
    },
    /// A row inside the sealed range that is not in the chain: inserted after its neighbours
    /// were sealed.
    #[error("audit row {id} (seq {seq}) is not sealed although rows after it were sealed at least the settle window ago: it was inserted afterwards")]
    Inserted {
        /// Its `seq`.
        seq: i64,
        /// Its id.
        id: String,
    },
}

fn describe_columns(c: &[String]) -> String {
    if c.is_empty() {
        "its content no longer matches its link".to_string()
    } else {
        format!("changed: {}", c.join(", "))
    }
}

/// What [`AuditChainRepo::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sealed rows checked.
    pub rows_checked: i64,
    /// Exported heads checked.
    pub heads_checked: usize,
    /// The position of the newest exported head.
    pub last_head_position: i64,
    /// Rows not sealed yet (newer than the last seal, or committed late).
    pub unsealed_rows: i64,
    /// The first break, if any.
    pub broken: Option<AuditBreak>,
}

/// One link of the chain as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChainLink {
    /// Position, from 1.
    pub position: i64,
    /// The sealed row's `seq`.
    pub audit_seq: i64,
    /// The sealed row's id.
    pub audit_id: String,
    /// The link, hex.
    pub link: String,
    /// The seal that added it.
    pub seal_no: i64,
}

/// The sealing and checking of the audit chain.
#[derive(Debug, Clone, Copy)]
pub struct AuditChainRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// The audit log's hash chain.
    pub fn audit_chain(&self) -> AuditChainRepo<'_> {
        AuditChainRepo { db: self }
    }
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    position: i64,
    audit_seq: i64,
    audit_id: String,
    link: String,
    column_digests: String,
    seq: Option<i64>,
    id: Option<String>,
    at_ms: Option<i64>,
    account_id: Option<String>,
    username: Option<String>,
    action: Option<String>,
    target_kind: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    outcome: Option<String>,
    details: Option<String>,
}

impl LinkRow {
    fn row(&self) -> Option<ChainRow> {
        Some(ChainRow {
            seq: self.seq?,
            id: self.id.clone()?,
            at_ms: self.at_ms?,
            account_id: self.account_id.clone(),
            username: self.username.clone(),
            action: self.action.clone()?,
            target_kind: self.target_kind.clone(),
            target_id: self.target_id.clone(),
            ip: self.ip.clone(),
            outcome: self.outcome.clone()?,
            details: self.details.clone()?,
        })
    }
}

impl AuditChainRepo<'_> {
    /// Seal every committed row not yet in the chain (in batches of [`SEAL_BATCH`], one seal
    /// each), signing each head with `signer` at `now_ms`. Rows are searched above the floor of
    /// seals at least `settle_ms` old (see the module doc). Returns the new heads, oldest first.
    pub async fn seal(
        &self,
        signer: &Signer,
        now_ms: i64,
        settle_ms: i64,
    ) -> StorageResult<Vec<AuditHead>> {
        let mut heads = Vec::new();
        while let Some(h) = self
            .seal_batch(signer, now_ms, settle_ms, SEAL_BATCH)
            .await?
        {
            let full = h.position - h.first_position + 1 >= SEAL_BATCH;
            heads.push(h);
            if !full {
                break;
            }
        }
        Ok(heads)
    }

    /// Seal at most `batch` rows in one transaction; `None` when there was nothing to seal.
    pub async fn seal_batch(
        &self,
        signer: &Signer,
        now_ms: i64,
        settle_ms: i64,
        batch: i64,
    ) -> StorageResult<Option<AuditHead>> {
        let pg = self.db.engine() == Engine::Postgres;
        let select = format!(
            "SELECT {ROW_SELECT} FROM audit_log a WHERE a.seq > $1 \
             AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.audit_seq = a.seq) \
             ORDER BY a.seq LIMIT $2"
        );
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            if pg {
                // One sealer at a time across nodes; ordinary audit writes are not blocked.
                sqlx::query("LOCK TABLE audit_seals IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let last: Option<(i64, String)> = sqlx::query_as(
                "SELECT position, link FROM audit_chain ORDER BY position DESC LIMIT 1")
                .fetch_optional(&mut *tx).await?;
            let (mut position, mut prev) = match last {
                Some((pos, l)) => (pos, parse_link(&l)?),
                None => (0, genesis()),
            };
            let (seal_no, max_seq): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(MAX(seal_no), 0), COALESCE(MAX(max_audit_seq), 0) FROM audit_seals")
                .fetch_one(&mut *tx).await?;
            let floor: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(max_audit_seq), 0) FROM audit_seals WHERE at_ms <= $1")
                .bind(now_ms.saturating_sub(settle_ms))
                .fetch_one(&mut *tx).await?;
            let rows: Vec<ChainRow> = sqlx::query_as(&select)
                .bind(floor).bind(batch).fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let seal_no = seal_no + 1;
            let first_position = position + 1;
            let mut max_seq = max_seq;
            for row in &rows {
                position += 1;
                prev = link(&prev, position, row);
                max_seq = max_seq.max(row.seq);
                sqlx::query("INSERT INTO audit_chain (position, audit_seq, audit_id, link, column_digests, seal_no) \
                             VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(position).bind(row.seq).bind(&row.id).bind(hex::encode(prev))
                    .bind(row.column_digests()).bind(seal_no)
                    .execute(&mut *tx).await?;
            }
            let head = AuditHead {
                format: HEAD_FORMAT.to_string(),
                seal_no,
                at_ms: now_ms,
                first_position,
                position,
                last_audit_id: rows.last().map(|r| r.id.clone()).unwrap_or_default(),
                max_audit_seq: max_seq,
                link: hex::encode(prev),
                public_key: String::new(),
                signature: String::new(),
            }
            .sign(signer);
            sqlx::query("INSERT INTO audit_seals (seal_no, at_ms, first_position, last_position, max_audit_seq, head_json) \
                         VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(seal_no).bind(now_ms).bind(first_position).bind(position).bind(max_seq)
                .bind(serde_json::to_string(&head).expect("a head serialises"))
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some(head))
        })
    }

    /// Audit rows with every column, `seq` above `after_seq`, in `seq` order, at most `limit`.
    pub async fn rows(&self, after_seq: i64, limit: i64) -> StorageResult<Vec<ChainRow>> {
        let sql = format!(
            "SELECT {ROW_SELECT} FROM audit_log a WHERE a.seq > $1 ORDER BY a.seq LIMIT $2"
        );
        with_pool!(self.db, p => Ok(sqlx::query_as(&sql).bind(after_seq).bind(limit).fetch_all(p).await?))
    }

    /// The chain's links from `after_position` on, in position order, at most `limit`.
    pub async fn links(&self, after_position: i64, limit: i64) -> StorageResult<Vec<ChainLink>> {
        with_pool!(self.db, p => Ok(sqlx::query_as(
            "SELECT position, audit_seq, audit_id, link, seal_no FROM audit_chain WHERE position > $1 ORDER BY position LIMIT $2")
            .bind(after_position).bind(limit).fetch_all(p).await?))
    }

    /// The seal numbers recorded in the database (to find their exported heads), oldest first.
    pub async fn seal_numbers(&self) -> StorageResult<Vec<i64>> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar("SELECT seal_no FROM audit_seals ORDER BY seal_no")
            .fetch_all(p).await?))
    }

    /// Recompute the chain from the genesis over the rows as they are now and check it against
    /// the exported `heads`, trusting `public_key_hex`. Rows not in the chain whose `seq` is at
    /// most the highest one sealed by a head at least `settle_ms` older than `now_ms` count as
    /// inserted. The report names the first break by position.
    pub async fn verify(
        &self,
        heads: &[AuditHead],
        public_key_hex: &str,
        now_ms: i64,
        settle_ms: i64,
    ) -> StorageResult<VerifyReport> {
        let mut report = VerifyReport {
            rows_checked: 0,
            heads_checked: heads.len(),
            last_head_position: heads.iter().map(|h| h.position).max().unwrap_or(0),
            unsealed_rows: 0,
            broken: None,
        };
        report.unsealed_rows = with_pool!(self.db, p => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit_log a WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.audit_seq = a.seq)")
            .fetch_one(p).await?);
        for h in heads {
            if let Err(e) = h.verify(public_key_hex) {
                report.broken = Some(AuditBreak::ForgedHead {
                    seal_no: h.seal_no,
                    reason: e.to_string(),
                });
                return Ok(report);
            }
        }
        let mut by_position: BTreeMap<i64, Vec<&AuditHead>> = BTreeMap::new();
        for h in heads {
            by_position.entry(h.position).or_default().push(h);
        }
        let select = format!(
            "SELECT c.position, c.audit_seq, c.audit_id, c.link, c.column_digests, {ROW_SELECT} \
             FROM audit_chain c LEFT JOIN audit_log a ON a.seq = c.audit_seq \
             WHERE c.position > $1 ORDER BY c.position LIMIT $2"
        );
        let mut prev = genesis();
        let mut expected = 1i64;
        // The first row after the last head that matched: where a joint rewrite may start.
        let mut since_head: Option<(i64, i64, String)> = None;
        loop {
            let page: Vec<LinkRow> = with_pool!(self.db, p => sqlx::query_as(&select)
                .bind(expected - 1).bind(VERIFY_PAGE).fetch_all(p).await?);
            if page.is_empty() {
                break;
            }
            for l in &page {
                if l.position != expected {
                    report.broken = Some(AuditBreak::ChainGap {
                        expected,
                        found: l.position,
                    });
                    return Ok(report);
                }
                let Some(row) = l.row() else {
                    report.broken = Some(AuditBreak::RowMissing {
                        position: l.position,
                        seq: l.audit_seq,
                        id: l.audit_id.clone(),
                    });
                    return Ok(report);
                };
                if since_head.is_none() {
                    since_head = Some((l.position, row.seq, row.id.clone()));
                }
                let next = link(&prev, l.position, &row);
                let next_hex = hex::encode(next);
                if next_hex != l.link || row.id != l.audit_id {
                    report.broken = Some(AuditBreak::RowChanged {
                        position: l.position,
                        seq: row.seq,
                        id: l.audit_id.clone(),
                        columns: changed_columns(&l.column_digests, &row.column_digests())
                            .into_iter()
                            .map(String::from)
                            .collect(),
                    });
                    return Ok(report);
                }
                for h in by_position.get(&l.position).into_iter().flatten() {
                    if h.link != next_hex {
                        let (from_position, first_seq, first_id) =
                            since_head.clone().expect("set above");
                        report.broken = Some(AuditBreak::HeadMismatch {
                            position: l.position,
                            seal_no: h.seal_no,
                            from_position,
                            first_id,
                            first_seq,
                        });
                        return Ok(report);
                    }
                }
                if by_position.contains_key(&l.position) {
                    since_head = None;
                }
                prev = next;
                report.rows_checked += 1;
                expected += 1;
            }
        }
        let chain_length = expected - 1;
        if let Some((_, hs)) = by_position.range(chain_length + 1..).next_back() {
            let h = hs[0];
            report.broken = Some(AuditBreak::Truncated {
                chain_length,
                missing_from: chain_length + 1,
                head_position: h.position,
                seal_no: h.seal_no,
                last_audit_id: h.last_audit_id.clone(),
            });
            return Ok(report);
        }
        if heads.is_empty() && chain_length > 0 {
            report.broken = Some(AuditBreak::NoHeads { chain_length });
            return Ok(report);
        }
        let floor = heads
            .iter()
            .filter(|h| h.at_ms <= now_ms.saturating_sub(settle_ms))
            .map(|h| h.max_audit_seq)
            .max()
            .unwrap_or(0);
        let inserted: Option<(i64, String)> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT a.seq, a.id FROM audit_log a WHERE a.seq <= $1 \
             AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.audit_seq = a.seq) ORDER BY a.seq LIMIT 1")
            .bind(floor).fetch_optional(p).await?);
        if let Some((seq, id)) = inserted {
            report.broken = Some(AuditBreak::Inserted { seq, id });
        }
        Ok(report)
    }

    /// The column names of `audit_log` as the engine reports them (for the encoding's test).
    pub async fn table_columns(&self) -> StorageResult<Vec<String>> {
        let sql = match self.db.engine() {
            Engine::Sqlite => "SELECT name FROM pragma_table_info('audit_log') ORDER BY cid",
            Engine::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = 'audit_log' AND table_schema = current_schema() ORDER BY ordinal_position"
            }
        };
        with_pool!(self.db, p => Ok(sqlx::query_scalar(sql).fetch_all(p).await?))
    }
}

fn parse_link(s: &str) -> StorageResult<[u8; 32]> {
    hex::decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            crate::StorageError::Conflict(format!("audit_chain holds a malformed link {s:?}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> ChainRow {
        ChainRow {
            seq,
            id: format!("id-{seq}"),
            at_ms: 1_700_000_000_000 + seq,
            account_id: None,
            username: Some("u".into()),
            action: "auth.login".into(),
            target_kind: None,
            target_id: None,
            ip: Some("10.0.0.1".into()),
            outcome: "success".into(),
            details: "{}".into(),
        }
    }

    #[test]
    fn every_column_changes_the_link_and_is_named() {
        let base = row(1);
        let l = link(&genesis(), 1, &base);
        let variants: Vec<(&str, ChainRow)> = vec![
            (
                "seq",
                ChainRow {
                    seq: 2,
                    ..base.clone()
                },
            ),
            (
                "id",
                ChainRow {
                    id: "x".into(),
                    ..base.clone()
                },
            ),
            (
                "at_ms",
                ChainRow {
                    at_ms: 0,
                    ..base.clone()
                },
            ),
            (
                "account_id",
                ChainRow {
                    account_id: Some(String::new()),
                    ..base.clone()
                },
            ),
            (
                "username",
                ChainRow {
                    username: None,
                    ..base.clone()
                },
            ),
            (
                "action",
                ChainRow {
                    action: "auth.logout".into(),
                    ..base.clone()
                },
            ),
            (
                "target_kind",
                ChainRow {
                    target_kind: Some("x".into()),
                    ..base.clone()
                },
            ),
            (
                "target_id",
                ChainRow {
                    target_id: Some("x".into()),
                    ..base.clone()
                },
            ),
            (
                "ip",
                ChainRow {
                    ip: Some("10.0.0.2".into()),
                    ..base.clone()
                },
            ),
            (
                "outcome",
                ChainRow {
                    outcome: "denied".into(),
                    ..base.clone()
                },
            ),
            (
                "details",
                ChainRow {
                    details: "{\"a\":1}".into(),
                    ..base.clone()
                },
            ),
        ];
        for (col, r) in variants {
            assert_ne!(link(&genesis(), 1, &r), l, "{col}");
            assert_eq!(
                changed_columns(&base.column_digests(), &r.column_digests()),
                vec![col]
            );
        }
        // The position and the previous link are covered too.
        assert_ne!(link(&genesis(), 2, &base), l);
        assert_ne!(link(&[0; 32], 1, &base), l);
    }

    #[test]
    fn fields_cannot_be_shifted_between_columns() {
        let a = ChainRow {
            username: Some("ab".into()),
            ip: Some("c".into()),
            ..row(1)
        };
        let b = ChainRow {
            username: Some("a".into()),
            ip: Some("bc".into()),
            ..row(1)
        };
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn a_head_verifies_and_any_change_fails() {
        let signer = Signer::from_seed(&[7; 32]);
        let head = AuditHead {
            format: HEAD_FORMAT.into(),
            seal_no: 1,
            at_ms: 5,
            first_position: 1,
            position: 3,
            last_audit_id: "x".into(),
            max_audit_seq: 3,
            link: hex::encode([1; 32]),
            public_key: String::new(),
            signature: String::new(),
        }
        .sign(&signer);
        head.verify(&signer.public_key_hex()).unwrap();
        let forged = AuditHead {
            position: 2,
            ..head.clone()
        };
        assert!(forged.verify(&signer.public_key_hex()).is_err());
        let other = Signer::from_seed(&[8; 32]);
        assert!(head.verify(&other.public_key_hex()).is_err());
    }
}

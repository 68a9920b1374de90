//! The recording index: recordings, their segments (each a self-contained fMP4 file in the
//! blob store) with digests and the chain, links to inspections, legal holds and retention.
//!
//! A segment is indexed only after its file is stored, in one transaction that also advances
//! the recording's chain link, so the index never names a file that is not there and the chain
//! in the index always runs without gaps. Times: each segment's span on the recording's 90 kHz
//! timeline (0 = the first frame, at `started_at_ms`) and in UTC ms for search.
//!
//! A segment is indexed at most once: [`RecordingRepo::add_segment`] refuses a file whose
//! digest the recording already holds (reconcile looks it up with
//! [`RecordingRepo::segment_by_digest`] first). A segment the blob store would not take is
//! recorded as a gap ([`RecordingRepo::add_gap`]): the recording is then `incomplete`, and its
//! head is signed over [`evidence::incomplete_head_message`] naming every gap, never as a whole.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::evidence;
use crate::org_units::Scope;
use crate::{Db, Page, PageRequest, StorageError, StorageResult};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A recording about to start.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Its id (the caller's, so blob keys can be made before the row exists).
    pub id: String,
    /// Device (recorder or app) id.
    pub device_id: String,
    /// Channel id.
    pub channel_id: String,
    /// The officer bound to the device now.
    pub officer_id: Option<String>,
    /// The device's org unit.
    pub org_unit_id: String,
    /// `live`, `upload` or `device`.
    pub source: String,
    /// `always`, `on_demand`, `dispatch_call` or `import`.
    pub trigger: String,
    /// UTC ms of the recording's first frame (its 90 kHz time 0).
    pub started_at_ms: i64,
}

/// A recording as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Recording {
    /// Id.
    pub id: String,
    /// Device id.
    pub device_id: String,
    /// Channel id.
    pub channel_id: String,
    /// Officer bound to the device when it started.
    pub officer_id: Option<String>,
    /// Officer's name.
    pub officer_name: Option<String>,
    /// Org unit.
    pub org_unit_id: String,
    /// `live`, `upload`, `device`.
    pub source: String,
    /// Why it records: `always`, `on_demand`, `dispatch_call`, `import`.
    pub trigger_kind: String,
    /// `recording` or `closed`.
    pub status: String,
    /// UTC ms of its time 0.
    pub started_at_ms: i64,
    /// UTC ms of its end (the last segment's end once closed).
    pub ended_at_ms: Option<i64>,
    /// Video codec (`h264`, `h265`).
    pub video_codec: Option<String>,
    /// Audio codec (`g711a`, `g711u`, `aac`).
    pub audio_codec: Option<String>,
    /// Segments indexed.
    pub segment_count: i64,
    /// Bytes of all segments.
    pub bytes: i64,
    /// The chain link after the last segment (the head once closed), hex.
    pub chain_link: String,
    /// The server's signature over the head (once closed), hex.
    pub head_signature: Option<String>,
    /// Under a reviewer's legal hold.
    pub held: bool,
    /// Footage is missing: a segment could not be stored (see its gaps). Its head is signed
    /// as incomplete, never as a whole chain.
    pub incomplete: bool,
    /// Where footage is missing, in order (filled by [`RecordingRepo::get`]; empty in search
    /// results).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<evidence::Gap>,
    /// Why.
    pub hold_reason: Option<String>,
    /// Created by (for on-demand recordings and uploads).
    pub created_by: Option<String>,
    /// Created, ms.
    pub created_at_ms: i64,
}

/// A segment about to be indexed (its file is stored).
#[derive(Debug, Clone)]
pub struct NewSegment {
    /// Position in the recording (must be the next one).
    pub seq: i64,
    /// Span on the recording's timeline, 90 kHz.
    pub start_90k: i64,
    /// End, 90 kHz.
    pub end_90k: i64,
    /// Blob key of the file.
    pub blob_key: String,
    /// File size.
    pub bytes: i64,
    /// Length of its init section (ftyp + moov).
    pub init_bytes: i64,
    /// Elementary-stream bytes it carries.
    pub payload_bytes: i64,
    /// Video codec.
    pub video_codec: Option<String>,
    /// Audio codec.
    pub audio_codec: Option<String>,
    /// SHA-256 of the file, raw.
    pub sha256: [u8; 32],
    /// SM3 of the file, raw.
    pub sm3: [u8; 32],
}

/// An indexed segment.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Segment {
    /// Recording.
    pub recording_id: String,
    /// Position, from 0.
    pub seq: i64,
    /// Start on the recording's timeline, 90 kHz.
    pub start_90k: i64,
    /// End, 90 kHz.
    pub end_90k: i64,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// Blob key.
    pub blob_key: String,
    /// Size.
    pub bytes: i64,
    /// Init section length.
    pub init_bytes: i64,
    /// Elementary-stream bytes.
    pub payload_bytes: i64,
    /// Video codec.
    pub video_codec: Option<String>,
    /// Audio codec.
    pub audio_codec: Option<String>,
    /// SHA-256, hex.
    pub sha256: String,
    /// SM3, hex.
    pub sm3: String,
    /// Chain link after this segment, hex.
    pub link: String,
}

impl Segment {
    /// The chain entry of this segment.
    pub fn chained(&self) -> evidence::ChainedSegment {
        evidence::ChainedSegment {
            seq: self.seq as u32,
            sha256: self.sha256.clone(),
            sm3: self.sm3.clone(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            link: self.link.clone(),
        }
    }
}

/// A gap of a recording: footage the blob store would not take.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RecordingGap {
    /// Segments indexed before it (the next indexed segment's seq).
    pub after_segments: i64,
    /// Start of the missing span on the recording's timeline, 90 kHz.
    pub start_90k: i64,
    /// End, 90 kHz.
    pub end_90k: i64,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// Why it was not stored (the last error).
    pub reason: String,
}

impl RecordingGap {
    /// The gap as the signed head and the manifest name it.
    pub fn gap(&self) -> evidence::Gap {
        evidence::Gap {
            after_segments: self.after_segments as u32,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
        }
    }
}

/// A recording's link to an inspection.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RecordingLink {
    /// Recording.
    pub recording_id: String,
    /// Inspection.
    pub inspection_id: String,
    /// Inspection code.
    pub inspection_code: String,
    /// Enterprise of the inspection.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// `linked`, `suggested` or `dismissed`.
    pub state: String,
    /// Who linked it (none: suggested by the system).
    pub created_by: Option<String>,
    /// When, ms.
    pub created_at_ms: i64,
    /// Last change, ms.
    pub updated_at_ms: i64,
}

/// Search filter of `GET /recordings`.
#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    /// Device id.
    pub device_id: Option<String>,
    /// Officer id.
    pub officer_id: Option<String>,
    /// Org unit (its subtree).
    pub org_unit_id: Option<String>,
    /// Enterprise (of a linked inspection).
    pub enterprise_id: Option<String>,
    /// Linked inspection.
    pub inspection_id: Option<String>,
    /// Overlapping this range, UTC ms.
    pub from_ms: Option<i64>,
    /// Overlapping this range, UTC ms.
    pub to_ms: Option<i64>,
    /// `recording` / `closed`.
    pub status: Option<String>,
    /// Only held ones.
    pub held: Option<bool>,
}

/// The recording repository.
#[derive(Debug, Clone, Copy)]
pub struct RecordingRepo<'a> {
    pub(crate) db: &'a Db,
}

impl Db {
    /// Recordings.
    pub fn recordings(&self) -> RecordingRepo<'_> {
        RecordingRepo { db: self }
    }
}

pub(crate) const SELECT: &str = "SELECT r.id, r.device_id, r.channel_id, r.officer_id, o.name AS officer_name, r.org_unit_id, r.source, \
    r.trigger_kind, r.status, r.started_at_ms, r.ended_at_ms, r.video_codec, r.audio_codec, r.segment_count, r.bytes, \
    r.chain_link, r.head_signature, r.held, r.incomplete, r.hold_reason, r.created_by, r.created_at_ms \
    FROM recordings r LEFT JOIN officers o ON o.id = r.officer_id";

const SEGMENT_COLUMNS: &str = "recording_id, seq, start_90k, end_90k, start_ms, end_ms, blob_key, bytes, init_bytes, payload_bytes, \
    video_codec, audio_codec, sha256, sm3, link";

/// A 90 kHz offset as ms (rounded down).
pub fn ms_of_90k(t: i64) -> i64 {
    t.div_euclid(90)
}

impl RecordingRepo<'_> {
    /// Start a recording (audited when `audit` is given: on-demand starts and uploads).
    pub async fn open(
        &self,
        n: &NewRecording,
        audit: Option<&AuditEntry>,
    ) -> StorageResult<Recording> {
        let genesis = hex::encode(evidence::genesis(&n.id));
        let a = audit.map(|a| {
            a.clone()
                .target("recording", &n.id)
                .details(serde_json::json!({"device_id": n.device_id, "channel_id": n.channel_id, "trigger": n.trigger}))
        });
        let by = audit.and_then(|a| a.actor.account_id.clone());
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO recordings (id, device_id, channel_id, officer_id, org_unit_id, source, trigger_kind, status, \
                         started_at_ms, chain_link, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'recording', $8, $9, $10, $8)")
                .bind(&n.id).bind(&n.device_id).bind(&n.channel_id).bind(&n.officer_id).bind(&n.org_unit_id)
                .bind(&n.source).bind(&n.trigger).bind(n.started_at_ms).bind(&genesis).bind(&by)
                .execute(&mut *tx).await?;
            if let Some(a) = &a {
                insert_audit!(&mut *tx, a)?;
            }
            tx.commit().await?;
        });
        self.get(&Scope::All, &n.id).await
    }

    /// Index the next segment of an open recording: checks its sequence number, computes its
    /// chain link from the recording's current one, and advances the recording, atomically.
    pub async fn add_segment(&self, id: &str, s: &NewSegment) -> StorageResult<Segment> {
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // Take the write lock first (SQLite: a read transaction that later writes fails with
            // SQLITE_BUSY when another writer went first; PostgreSQL: the recording's row lock
            // orders concurrent appends).
            sqlx::query("UPDATE recordings SET segment_count = segment_count WHERE id = $1")
                .bind(id).execute(&mut *tx).await?;
            let row: Option<(String, i64, i64, String)> = sqlx::query_as(
                "SELECT status, started_at_ms, segment_count, chain_link FROM recordings WHERE id = $1")
                .bind(id).fetch_optional(&mut *tx).await?;
            let Some((status, started, count, prev)) = row else {
                return Err(StorageError::NotFound("recording"));
            };
            if status != "recording" {
                return Err(StorageError::WrongState { kind: "recording", state: status, message: "a closed recording takes no more segments".into() });
            }
            if s.seq != count {
                return Err(StorageError::Conflict(format!("segment {} of a recording with {count} segments", s.seq)));
            }
            let twice: Option<i64> = sqlx::query_scalar("SELECT seq FROM recording_segments WHERE recording_id = $1 AND sha256 = $2")
                .bind(id).bind(hex::encode(s.sha256)).fetch_optional(&mut *tx).await?;
            if let Some(seq) = twice {
                return Err(StorageError::Conflict(format!("this file is segment {seq} of the recording already")));
            }
            let prev: [u8; 32] = hex::decode(&prev).ok().and_then(|v| v.try_into().ok())
                .ok_or_else(|| StorageError::Conflict("the recording's chain link is malformed".into()))?;
            let (start_ms, end_ms) = (started + ms_of_90k(s.start_90k), started + ms_of_90k(s.end_90k));
            let link = hex::encode(evidence::link(&prev, s.seq as u32, &s.sha256, &s.sm3, start_ms, end_ms));
            sqlx::query(&format!("INSERT INTO recording_segments ({SEGMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"))
                .bind(id).bind(s.seq).bind(s.start_90k).bind(s.end_90k).bind(start_ms).bind(end_ms).bind(&s.blob_key)
                .bind(s.bytes).bind(s.init_bytes).bind(s.payload_bytes).bind(&s.video_codec).bind(&s.audio_codec)
                .bind(hex::encode(s.sha256)).bind(hex::encode(s.sm3)).bind(&link)
                .execute(&mut *tx).await?;
            sqlx::query("UPDATE recordings SET segment_count = segment_count + 1, bytes = bytes + $2, chain_link = $3, ended_at_ms = $4, \
                         video_codec = COALESCE(video_codec, $5), audio_codec = COALESCE(audio_codec, $6) WHERE id = $1")
                .bind(id).bind(s.bytes).bind(&link).bind(end_ms).bind(&s.video_codec).bind(&s.audio_codec)
                .execute(&mut *tx).await?;
            tx.commit().await?;
        });
        self.segment(id, s.seq).await
    }

    /// Close a recording: its head (the last link) is signed with `sign` over
    /// [`evidence::head_message`], or over [`evidence::incomplete_head_message`] with its gaps
    /// when it is incomplete. A recording without segments (and without gaps) is deleted
    /// instead (nothing was recorded); returns `None` then. One with gaps only stays, closed
    /// unsigned: the record that footage was lost.
    pub async fn close(
        &self,
        id: &str,
        sign: &(dyn Fn(&[u8]) -> String + Send + Sync),
    ) -> StorageResult<Option<Recording>> {
        let r = self.get(&Scope::All, id).await?;
        if r.status == "closed" {
            return Ok(Some(r));
        }
        let gaps: Vec<evidence::Gap> = self.gaps(id).await?.iter().map(RecordingGap::gap).collect();
        if r.segment_count == 0 && !gaps.is_empty() {
            with_pool!(self.db, p => {
                sqlx::query("UPDATE recordings SET status = 'closed', incomplete = TRUE WHERE id = $1 AND status = 'recording' AND segment_count = 0")
                    .bind(id).execute(p).await?;
            });
            return self.get(&Scope::All, id).await.map(Some);
        }
        if r.segment_count == 0 {
            with_pool!(self.db, p => {
                let mut tx = p.begin_write().await?;
                sqlx::query("DELETE FROM recording_links WHERE recording_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM recordings WHERE id = $1 AND segment_count = 0").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
            });
            return Ok(None);
        }
        let head: [u8; 32] = hex::decode(&r.chain_link)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                StorageError::Conflict("the recording's chain link is malformed".into())
            })?;
        let sig = sign(&evidence::signed_head_message(
            id,
            r.segment_count as u32,
            &head,
            &gaps,
        ));
        // Signed over the gaps read above: a gap added since (none should be: the recorder
        // closes after its last segment) leaves the recording open for the next close.
        with_pool!(self.db, p => {
            sqlx::query("UPDATE recordings SET status = 'closed', head_signature = $2 WHERE id = $1 AND status = 'recording' AND chain_link = $3 \
                         AND (SELECT COUNT(*) FROM recording_gaps g WHERE g.recording_id = $1) = $4")
                .bind(id).bind(&sig).bind(&r.chain_link).bind(gaps.len() as i64).execute(p).await?;
        });
        self.get(&Scope::All, id).await.map(Some)
    }

    /// One recording within `scope`.
    pub async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Recording> {
        let mut b = SqlBuilder::default();
        let sql = format!(
            "{SELECT} WHERE r.id = {} AND {}",
            b.s(id),
            scope_cond(scope, &mut b)
        );
        let r: Option<Recording> = with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_optional(p).await?);
        let mut r = r.ok_or(StorageError::NotFound("recording"))?;
        if r.incomplete {
            r.gaps = self.gaps(id).await?.iter().map(RecordingGap::gap).collect();
        }
        Ok(r)
    }

    /// Record a gap in an open recording: the span `[start_90k, end_90k)` of its timeline has
    /// no footage (a segment the blob store would not take; `reason` says why). It lies after
    /// the segments indexed so far; a gap that continues the previous one (no segment between)
    /// extends it. The recording becomes `incomplete`.
    pub async fn add_gap(
        &self,
        id: &str,
        start_90k: i64,
        end_90k: i64,
        reason: &str,
    ) -> StorageResult<RecordingGap> {
        let start_90k_key = with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // The write lock first (see `add_segment`).
            sqlx::query("UPDATE recordings SET incomplete = TRUE WHERE id = $1 AND status = 'recording'")
                .bind(id).execute(&mut *tx).await?;
            let row: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT status, started_at_ms, segment_count FROM recordings WHERE id = $1")
                .bind(id).fetch_optional(&mut *tx).await?;
            let Some((status, started, count)) = row else {
                return Err(StorageError::NotFound("recording"));
            };
            if status != "recording" {
                return Err(StorageError::WrongState { kind: "recording", state: status, message: "a closed recording takes no more gaps".into() });
            }
            let end_ms = started + ms_of_90k(end_90k);
            let last: Option<(i64, i64)> = sqlx::query_as(
                "SELECT start_90k, after_segments FROM recording_gaps WHERE recording_id = $1 AND end_90k = $2 ORDER BY start_90k DESC LIMIT 1")
                .bind(id).bind(start_90k).fetch_optional(&mut *tx).await?;
            let key = match last {
                Some((prev_start, after)) if after == count => {
                    sqlx::query("UPDATE recording_gaps SET end_90k = $3, end_ms = $4, reason = $5 WHERE recording_id = $1 AND start_90k = $2")
                        .bind(id).bind(prev_start).bind(end_90k).bind(end_ms).bind(reason).execute(&mut *tx).await?;
                    prev_start
                }
                _ => {
                    sqlx::query("INSERT INTO recording_gaps (recording_id, after_segments, start_90k, end_90k, start_ms, end_ms, reason) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(id).bind(count).bind(start_90k).bind(end_90k).bind(started + ms_of_90k(start_90k)).bind(end_ms).bind(reason)
                        .execute(&mut *tx).await?;
                    start_90k
                }
            };
            tx.commit().await?;
            key
        });
        self.gaps(id)
            .await?
            .into_iter()
            .find(|g| g.start_90k == start_90k_key)
            .ok_or(StorageError::NotFound("gap"))
    }

    /// A recording's gaps, in order.
    pub async fn gaps(&self, id: &str) -> StorageResult<Vec<RecordingGap>> {
        Ok(with_pool!(self.db, p => sqlx::query_as(
            "SELECT after_segments, start_90k, end_90k, start_ms, end_ms, reason FROM recording_gaps WHERE recording_id = $1 ORDER BY start_90k")
            .bind(id).fetch_all(p).await?))
    }

    /// The segment of a recording whose file has this SHA-256 (raw), if one is indexed.
    pub async fn segment_by_digest(
        &self,
        id: &str,
        sha256: &[u8; 32],
    ) -> StorageResult<Option<Segment>> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM recording_segments WHERE recording_id = $1 AND sha256 = $2 ORDER BY seq LIMIT 1"
        );
        Ok(
            with_pool!(self.db, p => sqlx::query_as(&sql).bind(id).bind(hex::encode(sha256)).fetch_optional(p).await?),
        )
    }

    /// Recordings still marked `recording` (at start-up: interrupted by a crash).
    pub async fn unfinished(&self) -> StorageResult<Vec<Recording>> {
        let sql = format!("{SELECT} WHERE r.status = 'recording' ORDER BY r.started_at_ms");
        Ok(with_pool!(self.db, p => sqlx::query_as(&sql).fetch_all(p).await?))
    }

    /// One segment.
    pub async fn segment(&self, id: &str, seq: i64) -> StorageResult<Segment> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM recording_segments WHERE recording_id = $1 AND seq = $2"
        );
        let s: Option<Segment> = with_pool!(self.db, p => sqlx::query_as(&sql).bind(id).bind(seq).fetch_optional(p).await?);
        s.ok_or(StorageError::NotFound("segment"))
    }

    /// The segments overlapping `[from_90k, to_90k)` on the recording's timeline, in order
    /// (all of them without bounds).
    pub async fn segments(
        &self,
        id: &str,
        from_90k: Option<i64>,
        to_90k: Option<i64>,
    ) -> StorageResult<Vec<Segment>> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM recording_segments WHERE recording_id = $1 AND end_90k > $2 AND start_90k < $3 ORDER BY end_90k"
        );
        Ok(
            with_pool!(self.db, p => sqlx::query_as(&sql).bind(id).bind(from_90k.unwrap_or(i64::MIN)).bind(to_90k.unwrap_or(i64::MAX)).fetch_all(p).await?),
        )
    }

    /// Search, newest first.
    pub async fn search(
        &self,
        scope: &Scope,
        f: &RecordingFilter,
        page: PageRequest,
    ) -> StorageResult<Page<Recording>> {
        let mut b = SqlBuilder::default();
        let mut w = vec![scope_cond(scope, &mut b)];
        if let Some(d) = &f.device_id {
            w.push(format!("r.device_id = {}", b.s(d.clone())));
        }
        if let Some(o) = &f.officer_id {
            w.push(format!("r.officer_id = {}", b.s(o.clone())));
        }
        if let Some(u) = &f.org_unit_id {
            w.push(format!(
                "r.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
                b.s(u.clone())
            ));
        }
        if let Some(i) = &f.inspection_id {
            w.push(format!("r.id IN (SELECT recording_id FROM recording_links WHERE inspection_id = {} AND state = 'linked')", b.s(i.clone())));
        }
        if let Some(e) = &f.enterprise_id {
            w.push(format!("r.id IN (SELECT l.recording_id FROM recording_links l JOIN inspections i ON i.id = l.inspection_id \
                            WHERE i.enterprise_id = {} AND l.state = 'linked')", b.s(e.clone())));
        }
        if let Some(t) = f.from_ms {
            w.push(format!(
                "COALESCE(r.ended_at_ms, r.started_at_ms) >= {}",
                b.i(t)
            ));
        }
        if let Some(t) = f.to_ms {
            w.push(format!("r.started_at_ms < {}", b.i(t)));
        }
        if let Some(s) = &f.status {
            w.push(format!("r.status = {}", b.s(s.clone())));
        }
        if let Some(h) = f.held {
            w.push(if h { "r.held" } else { "NOT r.held" }.into());
        }
        let cond = w.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM recordings r WHERE {cond}");
        let total: i64 = with_pool!(self.db, p => bind_args!(sqlx::query_scalar(&count_sql), b.args).fetch_one(p).await?);
        let sql = format!(
            "{SELECT} WHERE {cond} ORDER BY r.started_at_ms DESC, r.id DESC LIMIT {} OFFSET {}",
            page.page_size,
            page.offset()
        );
        let items: Vec<Recording> =
            with_pool!(self.db, p => bind_args!(sqlx::query_as(&sql), b.args).fetch_all(p).await?);
        Ok(Page {
            items,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// The links of a recording (every state).
    pub async fn links(&self, id: &str) -> StorageResult<Vec<RecordingLink>> {
        Ok(with_pool!(self.db, p => sqlx::query_as(
            "SELECT l.recording_id, l.inspection_id, i.code AS inspection_code, i.enterprise_id, e.name AS enterprise_name, l.state, \
             l.created_by, l.created_at_ms, l.updated_at_ms FROM recording_links l JOIN inspections i ON i.id = l.inspection_id \
             JOIN enterprises e ON e.id = i.enterprise_id WHERE l.recording_id = $1 ORDER BY l.created_at_ms")
            .bind(id).fetch_all(p).await?))
    }

    /// Set a link's state: `linked` (by an officer or reviewer, also confirming a suggestion),
    /// `dismissed` (a suggestion rejected, or a link removed). Audited.
    pub async fn set_link(
        &self,
        id: &str,
        inspection_id: &str,
        state: &str,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        let exists: Option<String> = with_pool!(self.db, p => sqlx::query_scalar("SELECT id FROM inspections WHERE id = $1")
            .bind(inspection_id).fetch_optional(p).await?);
        if exists.is_none() {
            return Err(StorageError::Invalid {
                field: "inspection_id".into(),
                message: "no such inspection".into(),
            });
        }
        let a = audit
            .clone()
            .target("recording", id)
            .details(serde_json::json!({"inspection_id": inspection_id, "state": state}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // The write lock first (see `add_segment`), clearing a retention mark: a claimed
            // recording takes no link (see `retention`).
            sqlx::query("UPDATE recordings SET delete_marked_at_ms = NULL WHERE id = $1").bind(id).execute(&mut *tx).await?;
            let deleting: Option<Option<i64>> = sqlx::query_scalar("SELECT deleting_since_ms FROM recordings WHERE id = $1")
                .bind(id).fetch_optional(&mut *tx).await?;
            if deleting.flatten().is_some() {
                return Err(crate::retention::being_deleted());
            }
            let prev: Option<String> = sqlx::query_scalar("SELECT state FROM recording_links WHERE recording_id = $1 AND inspection_id = $2")
                .bind(id).bind(inspection_id).fetch_optional(&mut *tx).await?;
            match prev {
                None if state == "dismissed" => return Err(StorageError::NotFound("link")),
                None => {
                    sqlx::query("INSERT INTO recording_links (recording_id, inspection_id, state, created_by, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $5)")
                        .bind(id).bind(inspection_id).bind(state).bind(audit.actor.account_id.as_deref()).bind(audit.at_ms)
                        .execute(&mut *tx).await?;
                }
                Some(_) => {
                    sqlx::query("UPDATE recording_links SET state = $3, created_by = COALESCE($4, created_by), updated_at_ms = $5 WHERE recording_id = $1 AND inspection_id = $2")
                        .bind(id).bind(inspection_id).bind(state).bind(audit.actor.account_id.as_deref()).bind(audit.at_ms)
                        .execute(&mut *tx).await?;
                }
            }
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Propose links found by the system; an existing link of any state is left as it is (a
    /// dismissed suggestion is not proposed again). Returns how many were new.
    pub async fn suggest(
        &self,
        id: &str,
        inspections: &[String],
        at_ms: i64,
    ) -> StorageResult<u64> {
        let mut n = 0;
        for i in inspections {
            n += with_pool!(self.db, p => sqlx::query("INSERT INTO recording_links (recording_id, inspection_id, state, created_by, created_at_ms, updated_at_ms) \
                VALUES ($1, $2, 'suggested', NULL, $3, $3) ON CONFLICT (recording_id, inspection_id) DO NOTHING")
                .bind(id).bind(i).bind(at_ms).execute(p).await?.rows_affected());
        }
        Ok(n)
    }

    /// Inspections that could be evidenced by a recording of `officer_id` over
    /// `[from_ms, to_ms]`: open at some point in that span and conducted by the officer (or,
    /// when the officer is on none, any of the org unit's), with the enterprise's location.
    pub async fn candidate_inspections(
        &self,
        officer_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StorageResult<Vec<CandidateInspection>> {
        Ok(with_pool!(self.db, p => sqlx::query_as(
            "SELECT i.id, i.enterprise_id, e.lat, e.lon FROM inspections i JOIN inspection_officers io ON io.inspection_id = i.id \
             JOIN enterprises e ON e.id = i.enterprise_id \
             WHERE io.officer_id = $1 AND i.status <> 'cancelled' AND i.started_at_ms <= $3 \
             AND (i.completed_at_ms IS NULL OR i.completed_at_ms >= $2)")
            .bind(officer_id).bind(from_ms).bind(to_ms).fetch_all(p).await?))
    }

    /// Mark or release a reviewer's legal hold. Audited. Refused (`WrongState`, `deleting`) once
    /// retention has claimed the recording; before that it clears the retention mark, so the
    /// hold wins (see `retention`).
    pub async fn set_hold(
        &self,
        scope: &Scope,
        id: &str,
        held: bool,
        reason: Option<&str>,
        audit: &AuditEntry,
    ) -> StorageResult<Recording> {
        self.get(scope, id).await?;
        let a = audit
            .clone()
            .target("recording", id)
            .details(serde_json::json!({"held": held, "reason": reason}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE recordings SET delete_marked_at_ms = NULL WHERE id = $1").bind(id).execute(&mut *tx).await?;
            let deleting: Option<Option<i64>> = sqlx::query_scalar("SELECT deleting_since_ms FROM recordings WHERE id = $1")
                .bind(id).fetch_optional(&mut *tx).await?;
            if deleting.flatten().is_some() {
                return Err(crate::retention::being_deleted());
            }
            sqlx::query("UPDATE recordings SET held = $2, hold_reason = $3 WHERE id = $1")
                .bind(id).bind(held).bind(if held { reason } else { None }).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        self.get(scope, id).await
    }

    /// Set an org unit's retention (days); it applies to its subtree where no nearer unit has
    /// its own.
    pub async fn set_retention(
        &self,
        org_unit_id: &str,
        days: i64,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        if !(1..=36_500).contains(&days) {
            return Err(StorageError::Invalid {
                field: "days".into(),
                message: "must be between 1 and 36500".into(),
            });
        }
        let a = audit
            .clone()
            .target("org_unit", org_unit_id)
            .details(serde_json::json!({"recording_retention_days": days}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO recording_retention (org_unit_id, days, updated_at_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (org_unit_id) DO UPDATE SET days = excluded.days, updated_at_ms = excluded.updated_at_ms")
                .bind(org_unit_id).bind(days).bind(audit.at_ms).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The retention (days) that applies to an org unit: its own, else the nearest ancestor's,
    /// else `default_days`.
    pub async fn retention_days(&self, org_unit_id: &str, default_days: i64) -> StorageResult<i64> {
        let d: Option<i64> = with_pool!(self.db, p => sqlx::query_scalar(
            "SELECT rr.days FROM org_unit_closure c JOIN recording_retention rr ON rr.org_unit_id = c.ancestor_id \
             WHERE c.descendant_id = $1 ORDER BY c.depth LIMIT 1").bind(org_unit_id).fetch_optional(p).await?);
        Ok(d.unwrap_or(default_days))
    }

    /// Step 4 of retention (see `retention`): remove a claimed recording's index rows (its
    /// blobs are already deleted), with the audit entry. A recording not claimed by
    /// [`RecordingRepo::claim_for_deletion`] is left alone. Returns whether it was removed.
    pub async fn delete(&self, id: &str, audit: &AuditEntry) -> StorageResult<bool> {
        let a = audit.clone().target("recording", id);
        let done = with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE recordings SET deleting_since_ms = deleting_since_ms WHERE id = $1").bind(id).execute(&mut *tx).await?;
            let deleting: Option<Option<i64>> = sqlx::query_scalar("SELECT deleting_since_ms FROM recordings WHERE id = $1")
                .bind(id).fetch_optional(&mut *tx).await?;
            if deleting.flatten().is_none() {
                false
            } else {
                sqlx::query("DELETE FROM recording_links WHERE recording_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM recording_segments WHERE recording_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM recordings WHERE id = $1").bind(id).execute(&mut *tx).await?;
                insert_audit!(&mut *tx, &a)?;
                tx.commit().await?;
                true
            }
        });
        Ok(done)
    }
}

impl RecordingRepo<'_> {
    /// Recorders set to record whenever they are online (active ones), with their catalog
    /// channels.
    pub async fn always_on(&self) -> StorageResult<Vec<(String, String)>> {
        Ok(with_pool!(self.db, p => sqlx::query_as(
            "SELECT r.device_id, c.channel_id FROM recorders r JOIN recorder_channels c ON c.device_id = r.device_id \
             WHERE r.record_always AND r.status = 'active' ORDER BY r.device_id, c.channel_id")
            .fetch_all(p).await?))
    }

    /// Set a recorder's always-on recording. Audited.
    pub async fn set_always(
        &self,
        scope: &Scope,
        device_id: &str,
        always: bool,
        audit: &AuditEntry,
    ) -> StorageResult<()> {
        self.db.recorders().get(scope, device_id).await?;
        let a = audit
            .clone()
            .target("recorder", device_id)
            .details(serde_json::json!({"record_always": always}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("UPDATE recorders SET record_always = $2 WHERE device_id = $1")
                .bind(device_id).bind(always).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &a)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every segment's (blob key, bytes, elementary-stream bytes, start, end), for the
    /// recording benchmark.
    pub async fn segment_summary(&self) -> StorageResult<Vec<(String, i64, i64, i64, i64)>> {
        Ok(with_pool!(self.db, p => sqlx::query_as(
            "SELECT blob_key, bytes, payload_bytes, start_90k, end_90k FROM recording_segments ORDER BY recording_id, seq")
            .fetch_all(p).await?))
    }

    /// Set a recording's note.
    pub async fn set_note(&self, id: &str, note: &str) -> StorageResult<()> {
        with_pool!(self.db, p => { sqlx::query("UPDATE recordings SET note = $2 WHERE id = $1").bind(id).bind(note).execute(p).await?; });
        Ok(())
    }

    /// The recording with this note (an import of the same file).
    pub async fn by_note(&self, note: &str) -> StorageResult<Option<String>> {
        Ok(
            with_pool!(self.db, p => sqlx::query_scalar("SELECT id FROM recordings WHERE note = $1 LIMIT 1")
            .bind(note).fetch_optional(p).await?),
        )
    }

    /// Remove a recording that failed to import (its blobs are deleted by the caller).
    pub async fn discard(&self, id: &str) -> StorageResult<()> {
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM recording_links WHERE recording_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM recording_segments WHERE recording_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM recordings WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether a recorder records always.
    pub async fn is_always(&self, device_id: &str) -> StorageResult<bool> {
        let v: Option<bool> = with_pool!(self.db, p => sqlx::query_scalar("SELECT record_always FROM recorders WHERE device_id = $1")
            .bind(device_id).fetch_optional(p).await?);
        Ok(v.unwrap_or(false))
    }
}

/// An inspection a recording may be evidence of, with its enterprise's location.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CandidateInspection {
    /// Inspection id.
    pub id: String,
    /// Enterprise id.
    pub enterprise_id: String,
    /// Enterprise latitude (WGS-84).
    pub lat: Option<f64>,
    /// Enterprise longitude.
    pub lon: Option<f64>,
}

fn scope_cond(scope: &Scope, b: &mut SqlBuilder) -> String {
    match scope {
        Scope::All => "1 = 1".into(),
        Scope::Subtree(root) => format!(
            "r.org_unit_id IN (SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = {})",
            b.s(root.clone())
        ),
    }
}

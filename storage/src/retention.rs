//! Retention of recordings: which closed recordings have outlived their org unit's retention,
//! and their deletion in guarded steps, so that a legal hold or a link that arrives while a run
//! is under way always wins and no recording is ever left held (or evidencing an open case)
//! without its footage.
//!
//! # Conditions
//!
//! A recording *expires* when it is closed, its end is more than its org unit's retention
//! ([`RecordingRepo::retention_days`]: the unit's own, else the nearest ancestor's, else the
//! configured default) before `now`, no reviewer holds it, and it is not `linked` to an
//! inspection of a case that is still open (any status but `closed` / `not_filed`).
//!
//! # Steps
//!
//! 1. **Mark** ([`RecordingRepo::mark_expired`]), one transaction: the marks an earlier run
//!    left are cleared, then the expired recordings get `delete_marked_at_ms`. The query runs
//!    once per distinct retention period in force, each with its own cutoff and its own bound,
//!    so the old rows of a unit with a long period never crowd out the expired rows of a unit
//!    with a short one.
//! 2. **Claim** ([`RecordingRepo::claim_for_deletion`]), per recording, one transaction: the
//!    recording row's write lock is taken first (SQLite: the database write lock; PostgreSQL:
//!    the row lock), then one statement, seeing everything committed before it, sets
//!    `deleting_since_ms` only if the mark still stands and every condition above still holds.
//!    A claimed recording is past deciding: from here on it is deleted, whatever arrives.
//! 3. **Files**: the caller deletes the segment blobs (missing files count as deleted).
//! 4. **Rows** ([`RecordingRepo::delete`]): links, segments and the recording with its
//!    `recording.delete` audit row, only for a claimed recording.
//!
//! # Why there is no window
//!
//! [`RecordingRepo::set_hold`] and [`RecordingRepo::set_link`] take the same row lock first,
//! clear the mark in that same statement, and refuse (`WrongState`, state `deleting`) when the
//! recording is claimed. The lock orders each such change against the claim:
//!
//! * committed before the claim: the claim finds the mark cleared (and the hold or link) and
//!   leaves the recording alone; the next run decides again from scratch;
//! * arriving while or after the claim commits: it waits for the lock, then finds the recording
//!   claimed and is refused — so a hold or link is never recorded on a recording whose files go.
//!
//! Files are deleted only after a committed claim, and a claim is never undone, so the index
//! never shows a held or evidencing recording without footage. A run interrupted after a claim
//! (a crash, a failed file delete) leaves the recording claimed; the next run resumes it
//! ([`RecordingRepo::deleting`]) before marking anything new.
//!
//! A case opened on an already linked inspection (or an inspection added to an open case)
//! changes no recording row, so it is not ordered by the lock: the claim's statement sees it if
//! it committed before the claim; one committed later comes too late, as the recording was past
//! its retention and unprotected when it was claimed.

use crate::db::with_pool;
use crate::db::BeginWrite;
use crate::recordings::{Recording, RecordingRepo, DAY_MS, SELECT};
use crate::{StorageError, StorageResult};

/// SQL: the retention (days) in force for the org unit in column `unit`: its own, else the
/// nearest ancestor's, else the bound parameter `default` (the rule of
/// [`RecordingRepo::retention_days`]).
fn days_in_force(unit: &str, default: &str) -> String {
    format!(
        "COALESCE((SELECT rr.days FROM org_unit_closure c JOIN recording_retention rr ON rr.org_unit_id = c.ancestor_id \
         WHERE c.descendant_id = {unit} ORDER BY c.depth LIMIT 1), {default})"
    )
}

/// SQL over `recordings r`: closed, not held, and not linked to an inspection of an open case.
const UNPROTECTED: &str = "r.status = 'closed' AND NOT r.held AND NOT EXISTS ( \
    SELECT 1 FROM recording_links l JOIN case_inspections ci ON ci.inspection_id = l.inspection_id \
    JOIN cases c ON c.id = ci.case_id WHERE l.recording_id = r.id AND l.state = 'linked' \
    AND c.status NOT IN ('closed', 'not_filed'))";

/// The refusal of a hold or link change on a claimed recording.
pub(crate) fn being_deleted() -> StorageError {
    StorageError::WrongState {
        kind: "recording",
        state: "deleting".into(),
        message: "its retention has ended and its files are being deleted".into(),
    }
}

impl RecordingRepo<'_> {
    /// Step 1: in one transaction, clear the marks an earlier run left and mark the recordings
    /// expired at `now_ms` (see the module doc), at most `limit_per_period` of each distinct
    /// retention period in force, oldest end first. `default_days` applies where no org unit up
    /// the tree sets a retention. Returns the recordings that are still marked once the
    /// transaction commits, oldest end first.
    pub async fn mark_expired(
        &self,
        now_ms: i64,
        default_days: i64,
        limit_per_period: i64,
    ) -> StorageResult<Vec<Recording>> {
        let periods_sql = format!(
            "SELECT DISTINCT {} FROM org_units ou",
            days_in_force("ou.id", "$1")
        );
        let mark_sql = format!(
            "UPDATE recordings SET delete_marked_at_ms = $1 WHERE id IN ( \
             SELECT r.id FROM recordings r WHERE r.org_unit_id IN (SELECT ou.id FROM org_units ou WHERE {} = $3) \
             AND r.deleting_since_ms IS NULL AND r.ended_at_ms < $4 AND {UNPROTECTED} \
             ORDER BY r.ended_at_ms LIMIT $5)",
            days_in_force("ou.id", "$2")
        );
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // A write first: it takes SQLite's write lock before the reads below (a read
            // transaction that later writes fails when another writer went first).
            sqlx::query("UPDATE recordings SET delete_marked_at_ms = NULL \
                         WHERE delete_marked_at_ms IS NOT NULL AND deleting_since_ms IS NULL")
                .execute(&mut *tx).await?;
            let periods: Vec<i64> = sqlx::query_scalar(&periods_sql)
                .bind(default_days).fetch_all(&mut *tx).await?;
            for days in periods {
                sqlx::query(&mark_sql)
                    .bind(now_ms).bind(default_days).bind(days)
                    .bind(now_ms.saturating_sub(days.saturating_mul(DAY_MS)))
                    .bind(limit_per_period)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        let sql = format!(
            "{SELECT} WHERE r.delete_marked_at_ms IS NOT NULL AND r.deleting_since_ms IS NULL \
             ORDER BY r.ended_at_ms, r.id"
        );
        Ok(with_pool!(self.db, p => sqlx::query_as(&sql).fetch_all(p).await?))
    }

    /// Step 2: claim one marked recording for deletion at `now_ms`, under its row's write
    /// lock, if the mark still stands and it is still expired (its unit's retention read
    /// again, `default_days` where none is set), unheld and not evidencing an open case.
    /// Returns whether it is claimed: `true` means it must be deleted (files, then
    /// [`RecordingRepo::delete`]) and no hold or link can be set on it any more; `false`
    /// means a hold, a link or a change of retention won and nothing is deleted.
    pub async fn claim_for_deletion(
        &self,
        id: &str,
        now_ms: i64,
        default_days: i64,
    ) -> StorageResult<bool> {
        let claim_sql = format!(
            "UPDATE recordings SET deleting_since_ms = $2 WHERE id IN ( \
             SELECT r.id FROM recordings r WHERE r.id = $1 AND r.delete_marked_at_ms IS NOT NULL \
             AND r.deleting_since_ms IS NULL AND r.ended_at_ms < $2 - {} * $4 AND {UNPROTECTED})",
            days_in_force("r.org_unit_id", "$3")
        );
        let claimed = with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            // The lock first, in its own statement: the claim below is a later statement, so it
            // sees every hold and link committed before the lock was granted (PostgreSQL reads
            // each statement at its own snapshot), and none can commit until this one does.
            sqlx::query("UPDATE recordings SET deleting_since_ms = deleting_since_ms WHERE id = $1")
                .bind(id).execute(&mut *tx).await?;
            let n = sqlx::query(&claim_sql)
                .bind(id).bind(now_ms).bind(default_days).bind(DAY_MS)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n == 1
        });
        Ok(claimed)
    }

    /// Recordings claimed for deletion whose deletion has not finished (a run was interrupted,
    /// or a file could not be deleted): the next run resumes them first.
    pub async fn deleting(&self) -> StorageResult<Vec<Recording>> {
        let sql = format!(
            "{SELECT} WHERE r.deleting_since_ms IS NOT NULL ORDER BY r.deleting_since_ms, r.id"
        );
        Ok(with_pool!(self.db, p => sqlx::query_as(&sql).fetch_all(p).await?))
    }

    /// Whether a recording is marked for deletion (step 1) and whether it is claimed (step 2);
    /// `None` when there is no such recording.
    pub async fn deletion_state(&self, id: &str) -> StorageResult<Option<(bool, bool)>> {
        let row: Option<(Option<i64>, Option<i64>)> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT delete_marked_at_ms, deleting_since_ms FROM recordings WHERE id = $1")
            .bind(id).fetch_optional(p).await?);
        Ok(row.map(|(m, d)| (m.is_some(), d.is_some())))
    }
}

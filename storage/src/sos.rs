//! SOS alarms: raised by a device or the phone app, then acknowledged, handled and closed by
//! operators. Every step records who and when, here and in the audit log.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::audit::{insert_audit, AuditEntry};
use crate::db::{bind_args, with_pool, SqlBuilder};
use crate::{Db, StorageError, StorageResult};

/// A stored SOS alarm.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SosAlarm {
    /// Id.
    pub id: String,
    /// Unit that raised it.
    pub unit_id: String,
    /// `vehicle`, `officer` or `recorder`.
    pub unit_kind: String,
    /// Unit name at the time.
    pub unit_name: String,
    /// Unit's org unit.
    pub org_unit_id: String,
    /// `jt808`, `gb28181` or `app`.
    pub source: String,
    /// Device time of the alarm, ms.
    pub raised_at_ms: i64,
    /// Where (WGS-84), if known.
    pub lat: Option<f64>,
    /// Where (WGS-84), if known.
    pub lon: Option<f64>,
    /// `raised`, `acknowledged`, `handled`, `closed`.
    pub status: String,
    /// Who acknowledged.
    pub acknowledged_by: Option<String>,
    /// When, ms.
    pub acknowledged_at_ms: Option<i64>,
    /// Who handled.
    pub handled_by: Option<String>,
    /// When, ms.
    pub handled_at_ms: Option<i64>,
    /// What was done.
    pub handle_note: Option<String>,
    /// Who closed.
    pub closed_by: Option<String>,
    /// When, ms.
    pub closed_at_ms: Option<i64>,
    /// Closing remark.
    pub close_note: Option<String>,
}

/// A step of the SOS workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SosStep {
    /// raised → acknowledged.
    Acknowledge,
    /// raised | acknowledged → handled.
    Handle,
    /// raised | acknowledged | handled → closed.
    Close,
}

impl SosStep {
    /// The status the step leads to.
    pub fn target(self) -> &'static str {
        match self {
            SosStep::Acknowledge => "acknowledged",
            SosStep::Handle => "handled",
            SosStep::Close => "closed",
        }
    }

    fn allowed_from(self) -> &'static [&'static str] {
        match self {
            SosStep::Acknowledge => &["raised"],
            SosStep::Handle => &["raised", "acknowledged"],
            SosStep::Close => &["raised", "acknowledged", "handled"],
        }
    }
}

/// The SOS repository.
#[derive(Debug, Clone, Copy)]
pub struct SosRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// SOS alarms.
    pub fn sos(&self) -> SosRepo<'_> {
        SosRepo { db: self }
    }
}

const SELECT: &str = "SELECT id, unit_id, unit_kind, unit_name, org_unit_id, source, raised_at_ms, lat, lon, status, \
    acknowledged_by, acknowledged_at_ms, handled_by, handled_at_ms, handle_note, closed_by, closed_at_ms, close_note FROM sos_alarms";

impl SosRepo<'_> {
    /// Store a newly raised alarm (`a.id` set by the caller) with its audit row.
    pub async fn raise(&self, a: &SosAlarm, audit: &AuditEntry) -> StorageResult<()> {
        let au = audit
            .clone()
            .target("sos", &a.id)
            .details(serde_json::json!({"unit_id": a.unit_id, "unit_name": a.unit_name, "lat": a.lat, "lon": a.lon}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO sos_alarms (id, unit_id, unit_kind, unit_name, org_unit_id, source, raised_at_ms, lat, lon, status) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'raised')")
                .bind(&a.id).bind(&a.unit_id).bind(&a.unit_kind).bind(&a.unit_name).bind(&a.org_unit_id).bind(&a.source)
                .bind(a.raised_at_ms).bind(a.lat).bind(a.lon).execute(&mut *tx).await?;
            insert_audit!(&mut *tx, &au)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// One alarm.
    pub async fn get(&self, id: &str) -> StorageResult<SosAlarm> {
        let sql = format!("{SELECT} WHERE id = $1");
        with_pool!(self.db, p => sqlx::query_as::<_, SosAlarm>(&sql).bind(id).fetch_optional(p).await?
            .ok_or(StorageError::NotFound("sos alarm")))
    }

    /// Alarms, newest first: `open_only` = not closed; `org_units` = only these (None = all).
    pub async fn list(
        &self,
        open_only: bool,
        org_units: Option<&[String]>,
        limit: i64,
    ) -> StorageResult<Vec<SosAlarm>> {
        let mut b = SqlBuilder::default();
        let mut conds = vec!["1 = 1".to_string()];
        if open_only {
            conds.push("status <> 'closed'".into());
        }
        if let Some(units) = org_units {
            if units.is_empty() {
                return Ok(Vec::new());
            }
            let ph: Vec<String> = units.iter().map(|u| b.s(u.clone())).collect();
            conds.push(format!("org_unit_id IN ({})", ph.join(", ")));
        }
        let lim = b.i(limit);
        let sql = format!(
            "{SELECT} WHERE {} ORDER BY raised_at_ms DESC, id DESC LIMIT {lim}",
            conds.join(" AND ")
        );
        with_pool!(self.db, p => Ok(bind_args!(sqlx::query_as::<_, SosAlarm>(&sql), b.args).fetch_all(p).await?))
    }

    /// Apply a workflow step by `by` (username) at `audit.at_ms`. Fails with
    /// [`StorageError::Conflict`] when the alarm is not in a state the step starts from.
    pub async fn step(
        &self,
        id: &str,
        step: SosStep,
        by: &str,
        note: Option<&str>,
        audit: &AuditEntry,
    ) -> StorageResult<SosAlarm> {
        let cur = self.get(id).await?;
        if !step.allowed_from().contains(&cur.status.as_str()) {
            return Err(StorageError::Conflict(format!(
                "the alarm is {}; it cannot be {}",
                cur.status,
                step.target()
            )));
        }
        let (cols, note_col) = match step {
            SosStep::Acknowledge => ("acknowledged_by = $3, acknowledged_at_ms = $4", None),
            SosStep::Handle => ("handled_by = $3, handled_at_ms = $4", Some("handle_note")),
            SosStep::Close => ("closed_by = $3, closed_at_ms = $4", Some("close_note")),
        };
        let note_set = note_col.map(|c| format!(", {c} = $6")).unwrap_or_default();
        let sql = format!(
            "UPDATE sos_alarms SET status = $2, {cols}{note_set} WHERE id = $1 AND status = $5"
        );
        let au = audit
            .clone()
            .target("sos", id)
            .details(serde_json::json!({"from": cur.status, "to": step.target(), "note": note, "unit_id": cur.unit_id}));
        with_pool!(self.db, p => {
            let mut tx = p.begin_write().await?;
            let mut q = sqlx::query(&sql).bind(id).bind(step.target()).bind(by).bind(audit.at_ms).bind(&cur.status);
            if note_col.is_some() { q = q.bind(note); }
            let n = q.execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StorageError::Conflict("the alarm changed meanwhile; reload it".into()));
            }
            insert_audit!(&mut *tx, &au)?;
            tx.commit().await?;
        });
        self.get(id).await
    }
}

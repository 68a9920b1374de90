//! Position history: every fix of every unit, written in batches, read per unit and time range.

use crate::db::BeginWrite;
use serde::Serialize;

use crate::db::{with_pool, Pool};
use crate::model::{Position, PositionSource};
use crate::{Db, StorageResult};

/// Quality flags of a stored fix (bit set in `positions.flags`).
pub mod flags {
    /// Implausible move from the previous live fix (held back from the live position).
    pub const JUMP: i64 = 1;
    /// Latitude and longitude both zero, or the device said it had no fix.
    pub const ZERO_FIX: i64 = 2;
    /// Blind-area backfill (JT/T 808 0x0704 type 1): history only.
    pub const BACKFILL: i64 = 4;
    /// Older than the live position when it arrived.
    pub const STALE: i64 = 8;
}

/// One row of position history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackPoint {
    /// The fix.
    pub position: Position,
    /// [`flags`] bits.
    pub flags: i64,
    /// When the server received it, ms.
    pub received_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    unit_id: String,
    time_ms: i64,
    source: String,
    lat: f64,
    lon: f64,
    speed_kmh: Option<f64>,
    heading_deg: Option<f64>,
    altitude_m: Option<f64>,
    accuracy_m: Option<f64>,
    alarm_flags: i64,
    flags: i64,
    received_at_ms: i64,
}

/// The stored name of a source.
pub fn source_str(s: PositionSource) -> &'static str {
    match s {
        PositionSource::Jt808 => "jt808",
        PositionSource::Gb28181 => "gb28181",
        PositionSource::App => "app",
    }
}

fn source_of(s: &str) -> PositionSource {
    match s {
        "jt808" => PositionSource::Jt808,
        "gb28181" => PositionSource::Gb28181,
        _ => PositionSource::App,
    }
}

impl From<Row> for TrackPoint {
    fn from(r: Row) -> Self {
        TrackPoint {
            position: Position {
                unit_id: r.unit_id,
                time_ms: r.time_ms,
                lat: r.lat,
                lon: r.lon,
                speed_kmh: r.speed_kmh,
                heading_deg: r.heading_deg,
                altitude_m: r.altitude_m,
                accuracy_m: r.accuracy_m,
                source: source_of(&r.source),
                alarm_flags: r.alarm_flags as u32,
            },
            flags: r.flags,
            received_at_ms: r.received_at_ms,
        }
    }
}

/// The position history repository.
#[derive(Debug, Clone, Copy)]
pub struct PositionRepo<'a> {
    db: &'a Db,
}

impl Db {
    /// Position history.
    pub fn positions(&self) -> PositionRepo<'_> {
        PositionRepo { db: self }
    }
}

const SQLITE_INSERT: &str = "INSERT INTO positions (unit_id, time_ms, source, lat, lon, speed_kmh, heading_deg, altitude_m, \
    accuracy_m, alarm_flags, flags, received_at_ms) VALUES ";

/// Rows per PostgreSQL `UNNEST` statement.
const ROWS_PER_STATEMENT: usize = 5000;

impl PositionRepo<'_> {
    /// Insert a batch in one transaction. A fix already stored (same unit, device time and
    /// source) is skipped. Returns the number of rows inserted.
    ///
    /// SQLite: multi-row statements with anonymous `?` parameters (SQLite looks numbered
    /// `$n` parameters up by name in a list, which makes wide statements quadratic).
    /// PostgreSQL: one `INSERT … SELECT FROM UNNEST` of column arrays per chunk, one round trip
    /// for thousands of rows.
    pub async fn insert_batch(&self, points: &[TrackPoint]) -> StorageResult<u64> {
        if points.is_empty() {
            return Ok(0);
        }
        let mut inserted = 0;
        match &self.db.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_write().await?;
                // Fixed statement sizes (64, 16, 4, 1 rows), so each connection prepares and
                // caches four small statements instead of one per batch length.
                let mut rest = points;
                while !rest.is_empty() {
                    let n = [64, 16, 4, 1]
                        .into_iter()
                        .find(|&n| n <= rest.len())
                        .unwrap_or(1);
                    let (chunk, tail) = rest.split_at(n);
                    rest = tail;
                    let mut sql = String::with_capacity(250 + chunk.len() * 26);
                    sql.push_str(SQLITE_INSERT);
                    for i in 0..chunk.len() {
                        sql.push_str(if i == 0 {
                            "(?,?,?,?,?,?,?,?,?,?,?,?)"
                        } else {
                            ",(?,?,?,?,?,?,?,?,?,?,?,?)"
                        });
                    }
                    sql.push_str(" ON CONFLICT DO NOTHING");
                    let mut q = sqlx::query(&sql);
                    for t in chunk {
                        let x = &t.position;
                        q = q
                            .bind(&x.unit_id)
                            .bind(x.time_ms)
                            .bind(source_str(x.source))
                            .bind(x.lat)
                            .bind(x.lon)
                            .bind(x.speed_kmh)
                            .bind(x.heading_deg)
                            .bind(x.altitude_m)
                            .bind(x.accuracy_m)
                            .bind(i64::from(x.alarm_flags))
                            .bind(t.flags)
                            .bind(t.received_at_ms);
                    }
                    inserted += q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin_write().await?;
                for chunk in points.chunks(ROWS_PER_STATEMENT) {
                    let col = |f: &dyn Fn(&TrackPoint) -> Option<f64>| {
                        chunk.iter().map(f).collect::<Vec<Option<f64>>>()
                    };
                    inserted += sqlx::query(
                        "INSERT INTO positions (unit_id, time_ms, source, lat, lon, speed_kmh, heading_deg, altitude_m, accuracy_m, \
                         alarm_flags, flags, received_at_ms) \
                         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], \
                         $8::float8[], $9::float8[], $10::int8[], $11::int8[], $12::int8[]) ON CONFLICT DO NOTHING")
                        .bind(chunk.iter().map(|t| t.position.unit_id.clone()).collect::<Vec<String>>())
                        .bind(chunk.iter().map(|t| t.position.time_ms).collect::<Vec<i64>>())
                        .bind(chunk.iter().map(|t| source_str(t.position.source).to_string()).collect::<Vec<String>>())
                        .bind(chunk.iter().map(|t| t.position.lat).collect::<Vec<f64>>())
                        .bind(chunk.iter().map(|t| t.position.lon).collect::<Vec<f64>>())
                        .bind(col(&|t| t.position.speed_kmh))
                        .bind(col(&|t| t.position.heading_deg))
                        .bind(col(&|t| t.position.altitude_m))
                        .bind(col(&|t| t.position.accuracy_m))
                        .bind(chunk.iter().map(|t| i64::from(t.position.alarm_flags)).collect::<Vec<i64>>())
                        .bind(chunk.iter().map(|t| t.flags).collect::<Vec<i64>>())
                        .bind(chunk.iter().map(|t| t.received_at_ms).collect::<Vec<i64>>())
                        .execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
        }
        Ok(inserted)
    }

    /// The fixes of one unit with `from_ms <= time < to_ms`, oldest first, at most `limit`.
    pub async fn track(
        &self,
        unit_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> StorageResult<Vec<TrackPoint>> {
        let rows: Vec<Row> = with_pool!(self.db, p => sqlx::query_as(
            "SELECT unit_id, time_ms, source, lat, lon, speed_kmh, heading_deg, altitude_m, accuracy_m, alarm_flags, flags, received_at_ms \
             FROM positions WHERE unit_id = $1 AND time_ms >= $2 AND time_ms < $3 ORDER BY time_ms, source LIMIT $4")
            .bind(unit_id).bind(from_ms).bind(to_ms).bind(limit).fetch_all(p).await?);
        Ok(rows.into_iter().map(TrackPoint::from).collect())
    }

    /// The newest usable fix of each of `unit_ids` (no zero fixes, no jumps), for restoring the
    /// live map after a restart.
    pub async fn latest(&self, unit_ids: &[String]) -> StorageResult<Vec<TrackPoint>> {
        let mut out = Vec::new();
        for id in unit_ids {
            let row: Option<Row> = with_pool!(self.db, p => sqlx::query_as(
                "SELECT unit_id, time_ms, source, lat, lon, speed_kmh, heading_deg, altitude_m, accuracy_m, alarm_flags, flags, received_at_ms \
                 FROM positions WHERE unit_id = $1 AND (flags & 3) = 0 ORDER BY time_ms DESC LIMIT 1")
                .bind(id).fetch_optional(p).await?);
            out.extend(row.map(TrackPoint::from));
        }
        Ok(out)
    }

    /// Delete the history of `unit_ids` older than `cutoff_ms` (retention). Per unit, so each
    /// delete walks the primary key instead of the whole table.
    pub async fn delete_older_than(
        &self,
        unit_ids: &[String],
        cutoff_ms: i64,
    ) -> StorageResult<u64> {
        let mut n = 0;
        for id in unit_ids {
            n += with_pool!(self.db, p => sqlx::query("DELETE FROM positions WHERE unit_id = $1 AND time_ms < $2")
                .bind(id).bind(cutoff_ms).execute(p).await?.rows_affected());
        }
        Ok(n)
    }

    /// Every unit id that has history (for retention of units that no longer exist).
    pub async fn unit_ids(&self) -> StorageResult<Vec<String>> {
        with_pool!(self.db, p => Ok(sqlx::query_scalar("SELECT DISTINCT unit_id FROM positions").fetch_all(p).await?))
    }
}

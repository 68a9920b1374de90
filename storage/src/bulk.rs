//! Bulk seeding of enforcement history for the benchmark (`shouhu bench enforcement`): a year of
//! inspections, hazards and cases inserted with multi-row statements in large transactions, far
//! faster than the workflow calls (which the demo uses). The rows are what the workflow would
//! have written — numbered documents, states at every stage, SM4-sealed case fields — and the
//! document counters are advanced past the seeded numbers so live writes continue the series.

use crate::db::BeginWrite;
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::crypto::FieldCipher;
use crate::db::{bind_args, with_pool, Arg, SqlBuilder};
use crate::enforcement::{doc_prefix, shanghai_year, DAY_MS};
use crate::{Db, StorageResult};

/// One district's seeding inputs.
#[derive(Debug, Clone)]
pub struct DistrictInput {
    /// Brigade org unit id.
    pub unit_id: String,
    /// Its code (administrative division).
    pub unit_code: String,
    /// Short name used in document numbers.
    pub short_name: String,
    /// Its enterprises.
    pub enterprises: Vec<String>,
    /// Its officers (at least two).
    pub officers: Vec<String>,
}

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Inspections in total.
    pub inspections: usize,
    /// Hazards in total.
    pub hazards: usize,
    /// Cases in total.
    pub cases: usize,
    /// The end of the seeded year, ms.
    pub now_ms: i64,
    /// RNG seed.
    pub seed: u64,
}

/// Samples of seeded ids per district, for a workload to pick from.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Inspection ids and codes.
    pub inspections: Vec<(String, String)>,
    /// Open hazard ids (rectifying or rectified).
    pub open_hazards: Vec<String>,
    /// Any hazard ids.
    pub hazards: Vec<String>,
    /// Case ids.
    pub cases: Vec<String>,
}

/// A batch writer: rows of `n` columns into `table`, flushed every `rows_per_stmt`.
struct Batch {
    table: &'static str,
    cols: &'static str,
    n: usize,
    rows: Vec<Vec<Arg>>,
}

impl Batch {
    fn new(table: &'static str, cols: &'static str) -> Self {
        Self {
            table,
            cols,
            n: cols.split(',').count(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Arg>) {
        debug_assert_eq!(row.len(), self.n);
        self.rows.push(row);
    }

    /// Rows per statement: about 1,000 parameters. SQLite would take 32,766, but sqlx binds
    /// each one through `sqlite3_bind_parameter_name`, a linear scan of the statement's
    /// parameters, so binding costs the square of the count (at 30,000 parameters the load
    /// spent 88 % of its time there).
    fn per_stmt(&self) -> usize {
        (1_000 / self.n).max(1)
    }
}

macro_rules! flush {
    ($tx:expr, $batch:expr) => {{
        let per = $batch.per_stmt();
        for chunk in $batch.rows.chunks(per) {
            let mut b = SqlBuilder::default();
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    let ph: Vec<String> = row.iter().map(|a| b.arg(a.clone())).collect();
                    format!("({})", ph.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                $batch.table,
                $batch.cols,
                values.join(", ")
            );
            bind_args!(sqlx::query(&sql), b.args)
                .execute(&mut *$tx)
                .await?;
        }
        $batch.rows.clear();
    }};
}

fn s(v: impl Into<String>) -> Arg {
    Arg::S(Some(v.into()))
}
fn i(v: i64) -> Arg {
    Arg::I(Some(v))
}
fn n_s() -> Arg {
    Arg::S(None)
}
fn n_i() -> Arg {
    Arg::I(None)
}

/// The tables the seeding fills.
const TABLES: &[&str] = &[
    "inspections",
    "inspection_officers",
    "inspection_results",
    "hazards",
    "cases",
    "case_inspections",
];

/// Drop the secondary indexes of the seeded tables (not those backing a primary key or a unique
/// constraint); returns their definitions to re-create. Random-order inserts into a dozen
/// secondary B-trees are what make a naive bulk load crawl; building each index once from the
/// loaded table sorts instead.
async fn drop_secondary_indexes(db: &Db) -> StorageResult<Vec<(String, String)>> {
    let list = TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let defs: Vec<(String, String)> = match db.engine() {
        crate::Engine::Sqlite => with_pool!(db, p => sqlx::query_as(&format!(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({list})"))
            .fetch_all(p).await?),
        crate::Engine::Postgres => with_pool!(db, p => sqlx::query_as(&format!(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN ({list}) \
             AND indexname NOT IN (SELECT conname FROM pg_constraint)"))
            .fetch_all(p).await?),
    };
    for (name, _) in &defs {
        db.execute_raw(&format!("DROP INDEX {name}")).await?;
    }
    Ok(defs)
}

/// Samples of a seeded database as it is now (for a workload run on a database seeded earlier):
/// random inspections, hazards, open hazards and cases of one unit.
pub async fn sample(db: &Db, unit_id: &str) -> StorageResult<Samples> {
    Ok(with_pool!(db, p => Samples {
        inspections: sqlx::query_as("SELECT id, code FROM inspections WHERE org_unit_id = $1 ORDER BY random() LIMIT 2000")
            .bind(unit_id).fetch_all(p).await?,
        open_hazards: sqlx::query_scalar("SELECT id FROM hazards WHERE org_unit_id = $1 AND status IN ('rectifying', 'rectified') ORDER BY random() LIMIT 2000")
            .bind(unit_id).fetch_all(p).await?,
        hazards: sqlx::query_scalar("SELECT id FROM hazards WHERE org_unit_id = $1 ORDER BY random() LIMIT 2000")
            .bind(unit_id).fetch_all(p).await?,
        cases: sqlx::query_scalar("SELECT id FROM cases WHERE org_unit_id = $1 ORDER BY random() LIMIT 500")
            .bind(unit_id).fetch_all(p).await?,
    }))
}

/// Seed the plan across `districts`; returns samples per district (same order).
pub async fn seed(
    db: &Db,
    districts: &[DistrictInput],
    items: &[String],
    plan: Plan,
) -> StorageResult<Vec<Samples>> {
    let cipher = db.field_cipher()?;
    let t = std::time::Instant::now();
    let indexes = drop_secondary_indexes(db).await?;
    let samples = seed_rows(db, cipher, districts, items, plan).await;
    let loaded = t.elapsed();
    // Re-create the indexes even when the load failed, so the database stays whole.
    for (_, sql) in &indexes {
        db.execute_raw(sql).await?;
    }
    let samples = samples?;
    tracing::info!(
        rows_s = loaded.as_secs_f64(),
        indexes = indexes.len(),
        indexes_s = (t.elapsed() - loaded).as_secs_f64(),
        "bulk seeding done"
    );
    // PostgreSQL: VACUUM too, so the loaded tables' visibility map is set and index-only scans
    // (the workbench's hazard list) need not visit the heap, as autovacuum would do in time.
    db.execute_raw(match db.engine() {
        crate::Engine::Postgres => "VACUUM ANALYZE",
        crate::Engine::Sqlite => "ANALYZE",
    })
    .await?;
    Ok(samples)
}

async fn seed_rows(
    db: &Db,
    cipher: &FieldCipher,
    districts: &[DistrictInput],
    items: &[String],
    plan: Plan,
) -> StorageResult<Vec<Samples>> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut samples = vec![Samples::default(); districts.len()];
    let mut counters: HashMap<String, i64> = HashMap::new();
    let mut next = |prefix: String| -> (String, i64) {
        let c = counters.entry(prefix.clone()).or_insert(0);
        *c += 1;
        (prefix, *c)
    };
    let chunk = 20_000usize;
    let mut done = 0usize;
    let hazards_per = plan.hazards as f64 / plan.inspections.max(1) as f64;
    let mut hazards_left = plan.hazards;
    let mut cases_left = plan.cases;
    while done < plan.inspections {
        let this = chunk.min(plan.inspections - done);
        let mut insp = Batch::new(
            "inspections",
            "id, code, org_unit_id, enterprise_id, kind, status, year, started_at_ms, completed_at_ms, record_number, summary, created_at_ms, updated_at_ms, version",
        );
        let mut offs = Batch::new("inspection_officers", "inspection_id, officer_id");
        let mut res = Batch::new(
            "inspection_results",
            "inspection_id, item_id, result, note, photo_keys",
        );
        let mut hz = Batch::new(
            "hazards",
            "id, inspection_id, enterprise_id, org_unit_id, item_id, level, description, status, order_number, found_at_ms, \
             rectification_deadline_ms, reinspection_due_ms, rectification_note, rectified_at_ms, reinspection_result, reinspection_note, \
             reinspection_number, reinspected_at_ms, closed_at_ms, created_at_ms, updated_at_ms, version",
        );
        let mut cs = Batch::new(
            "cases",
            "id, number, org_unit_id, enterprise_id, title, violation, status, responsible_person, party_id_sealed, party_phone_sealed, \
             proposed_fine_sealed, filed_at_ms, filing_decided_at_ms, decision_due_ms, closed_at_ms, created_at_ms, updated_at_ms, version",
        );
        let mut ci = Batch::new("case_inspections", "case_id, inspection_id");
        for k in 0..this {
            let d = (done + k) % districts.len();
            let dist = &districts[d];
            let started = plan.now_ms - rng.gen_range(DAY_MS..365 * DAY_MS);
            let year = shanghai_year(started);
            let id = crate::new_id();
            let (p, seq) = next(format!("JC{}{}", dist.unit_code, year));
            let code = format!("{p}{seq:06}");
            let (p, seq) = next(doc_prefix(&dist.short_name, "检记", year));
            let enterprise = dist
                .enterprises
                .choose(&mut rng)
                .expect("enterprises")
                .clone();
            insp.push(vec![
                s(&id),
                s(&code),
                s(&dist.unit_id),
                s(&enterprise),
                s(["planned", "planned", "planned", "complaint", "referral"][k % 5]),
                s("completed"),
                i(year as i64),
                i(started),
                i(started + 7_200_000),
                s(format!("{p}{seq}号")),
                s("检查完毕"),
                i(started),
                i(started + 7_200_000),
                i(1),
            ]);
            for o in dist.officers.choose_multiple(&mut rng, 2) {
                offs.push(vec![s(&id), s(o)]);
            }
            let picked: Vec<&String> = items.choose_multiple(&mut rng, 2).collect();
            res.push(vec![s(&id), s(picked[0]), s("pass"), s(""), s("[]")]);
            // Hazards: about `hazards_per` per inspection, on the second item.
            let mut nh = hazards_per.floor() as usize;
            if rng.gen_bool(hazards_per.fract().clamp(0.0, 1.0)) {
                nh += 1;
            }
            nh = nh.min(hazards_left);
            res.push(vec![
                s(&id),
                s(picked[1]),
                s(if nh > 0 { "hazard" } else { "pass" }),
                s(""),
                s("[]"),
            ]);
            for _ in 0..nh {
                hazards_left -= 1;
                let hid = crate::new_id();
                let found = started + 3_600_000;
                let deadline = found + rng.gen_range(7..31) * DAY_MS;
                let (p, seq) = next(doc_prefix(&dist.short_name, "责改", shanghai_year(found)));
                let order = format!("{p}{seq}号");
                let open = deadline + 10 * DAY_MS > plan.now_ms && rng.gen_bool(0.5);
                let (status, rectified, re_at, re_no, closed) = if open {
                    if rng.gen_bool(0.5) {
                        ("rectifying", None, None, None, None)
                    } else {
                        ("rectified", Some(deadline - DAY_MS), None, None, None)
                    }
                } else {
                    let re = deadline + rng.gen_range(1..9) * DAY_MS;
                    let (p, seq) = next(doc_prefix(&dist.short_name, "复查", shanghai_year(re)));
                    (
                        "closed",
                        Some(deadline - DAY_MS),
                        Some(re),
                        Some(format!("{p}{seq}号")),
                        Some(re),
                    )
                };
                let due = match rectified {
                    Some(r) => (deadline + 10 * DAY_MS).min(r + 10 * DAY_MS),
                    None => deadline + 10 * DAY_MS,
                };
                hz.push(vec![
                    s(&hid),
                    s(&id),
                    s(&enterprise),
                    s(&dist.unit_id),
                    s(picked[1]),
                    s(if rng.gen_bool(0.05) {
                        "major"
                    } else {
                        "general"
                    }),
                    s("安全出口被货物堵塞"),
                    s(status),
                    s(order),
                    i(found),
                    i(deadline),
                    i(due),
                    if rectified.is_some() {
                        s("已整改")
                    } else {
                        n_s()
                    },
                    rectified.map(i).unwrap_or_else(n_i),
                    if re_at.is_some() { s("passed") } else { n_s() },
                    if re_at.is_some() {
                        s("整改到位")
                    } else {
                        n_s()
                    },
                    re_no.map(s).unwrap_or_else(n_s),
                    re_at.map(i).unwrap_or_else(n_i),
                    closed.map(i).unwrap_or_else(n_i),
                    i(found),
                    i(closed.unwrap_or(found)),
                    i(1),
                ]);
                let smp = &mut samples[d];
                if smp.hazards.len() < 2_000 {
                    smp.hazards.push(hid.clone());
                }
                if status != "closed" && smp.open_hazards.len() < 2_000 {
                    smp.open_hazards.push(hid);
                }
            }
            // Cases: about one in ten inspections.
            if cases_left > 0 && (done + k) % (plan.inspections / plan.cases.max(1)).max(1) == 0 {
                cases_left -= 1;
                let cid = crate::new_id();
                let filed = started + DAY_MS;
                let closed = filed + 60 * DAY_MS < plan.now_ms;
                let (p, seq) = next(doc_prefix(&dist.short_name, "案", shanghai_year(filed)));
                cs.push(vec![
                    s(&cid),
                    s(format!("{p}{seq}号")),
                    s(&dist.unit_id),
                    s(&enterprise),
                    s("未按规定开展安全生产教育和培训案"),
                    s("经查，企业未按规定对从业人员进行安全生产教育和培训。"),
                    s(if closed { "closed" } else { "open" }),
                    s("主要负责人"),
                    s(cipher.seal("party_id", "31010119800101123X")),
                    s(cipher.seal("party_phone", "13800138000")),
                    s(cipher.seal("proposed_fine", "3000000")),
                    i(filed),
                    i(filed + DAY_MS),
                    i(filed + 91 * DAY_MS),
                    if closed {
                        i(filed + 60 * DAY_MS)
                    } else {
                        n_i()
                    },
                    i(filed),
                    i(filed),
                    i(1),
                ]);
                ci.push(vec![s(&cid), s(&id)]);
                if samples[d].cases.len() < 500 {
                    samples[d].cases.push(cid);
                }
            }
            if samples[d].inspections.len() < 2_000 {
                samples[d].inspections.push((id, code));
            }
        }
        let sqlite = db.engine() == crate::Engine::Sqlite;
        with_pool!(db, p => {
            let mut tx = p.begin_write().await?;
            if sqlite {
                // Keep the loaded tables' pages in memory (1 GiB) while the load runs.
                sqlx::query("PRAGMA cache_size = -1048576").execute(&mut *tx).await?;
            } else {
                sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
            }
            flush!(tx, insp);
            flush!(tx, offs);
            flush!(tx, res);
            flush!(tx, hz);
            flush!(tx, cs);
            flush!(tx, ci);
            tx.commit().await?;
        });
        done += this;
        tracing::info!(inspections = done, "bulk seeding");
    }
    // Live writes continue each numbering series after the seeded numbers.
    let mut cnt = Batch::new("doc_counters", "prefix, next");
    for (prefix, n) in counters {
        cnt.push(vec![s(prefix), i(n)]);
    }
    with_pool!(db, p => {
        let mut tx = p.begin_write().await?;
        sqlx::query("DELETE FROM doc_counters").execute(&mut *tx).await?;
        flush!(tx, cnt);
        tx.commit().await?;
    });
    Ok(samples)
}

/// What [`seed_recordings`] makes: one recording a day per recorder, `segments_per_day`
/// consecutive segments each, every segment naming the same real file.
#[derive(Debug, Clone)]
pub struct RecordingPlan {
    /// Recorders.
    pub recorders: u64,
    /// Days.
    pub days: u64,
    /// Segments per recording.
    pub segments_per_day: u64,
    /// Segment length, ms.
    pub segment_ms: i64,
    /// Midnight UTC of the first day, ms.
    pub base_ms: i64,
    /// Org units the recorders are spread over.
    pub org_units: Vec<String>,
    /// The blob every segment names.
    pub blob_key: String,
    /// Its size.
    pub bytes: i64,
    /// Its init section's length.
    pub init_bytes: i64,
}

/// The id of the benchmark's recording of recorder `r` on day `d`.
pub fn bench_recording_id(r: u64, d: u64) -> String {
    format!("bench-r{r:04}-d{d:04}")
}

/// The recording benchmark's index: recordings in multi-row inserts, their segments generated
/// by the database itself (`INSERT … SELECT` over a recursive counter, one statement per
/// recorder), the secondary indexes dropped during the load and made again after it.
pub async fn seed_recordings(db: &Db, plan: &RecordingPlan) -> StorageResult<()> {
    let t = std::time::Instant::now();
    let day = 86_400_000i64;
    let hex64 = "ab".repeat(32);
    let chain = crate::evidence::genesis("bench");
    let mut recs = Batch::new(
        "recordings",
        "id, device_id, channel_id, officer_id, org_unit_id, source, trigger_kind, status, started_at_ms, ended_at_ms, \
         video_codec, audio_codec, segment_count, bytes, chain_link, head_signature, created_at_ms",
    );
    let seg_ms = plan.segment_ms;
    let n_seg = plan.segments_per_day as i64;
    let segs_sql = format!(
        "WITH RECURSIVE s(n) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM s WHERE n < {last}) \
         INSERT INTO recording_segments (recording_id, seq, start_90k, end_90k, start_ms, end_ms, blob_key, bytes, init_bytes, \
         payload_bytes, video_codec, audio_codec, sha256, sm3, link) \
         SELECT r.id, s.n, s.n * {s90}, (s.n + 1) * {s90}, r.started_at_ms + s.n * {seg_ms}, r.started_at_ms + (s.n + 1) * {seg_ms}, \
         $2, $3, $4, $3 - $4, 'h264', NULL, $5, $5, $5 FROM recordings r, s WHERE r.device_id = $1 ORDER BY r.id, s.n",
        last = n_seg - 1,
        s90 = seg_ms * 90,
    );
    let indexes: Vec<(String, String)> = match db.engine() {
        crate::Engine::Sqlite => with_pool!(db, p => sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ('recordings', 'recording_segments')")
            .fetch_all(p).await?),
        crate::Engine::Postgres => with_pool!(db, p => sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename IN ('recordings', 'recording_segments') AND indexname NOT IN (SELECT conname FROM pg_constraint)")
            .fetch_all(p).await?),
    };
    for (name, _) in &indexes {
        db.execute_raw(&format!("DROP INDEX {name}")).await?;
    }
    for r in 0..plan.recorders {
        let device = format!("3101150000132{:07}", r + 1);
        let unit = &plan.org_units[r as usize % plan.org_units.len().max(1)];
        for d in 0..plan.days {
            // 08:00 Asia/Shanghai is 00:00 UTC.
            let start = plan.base_ms + d as i64 * day;
            recs.push(vec![
                s(bench_recording_id(r, d)),
                s(device.clone()),
                s(format!("3101150000131{:07}", r + 1)),
                n_s(),
                s(unit.clone()),
                s("live"),
                s("always"),
                s("closed"),
                i(start),
                i(start + n_seg * seg_ms),
                s("h264"),
                n_s(),
                i(n_seg),
                i(n_seg * plan.bytes),
                s(hex::encode(chain)),
                s("00".repeat(64)),
                i(start),
            ]);
        }
        with_pool!(db, p => {
            let mut tx = p.begin_write().await?;
            flush!(tx, recs);
            sqlx::query(&segs_sql)
                .bind(&device)
                .bind(&plan.blob_key)
                .bind(plan.bytes)
                .bind(plan.init_bytes)
                .bind(&hex64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        if (r + 1) % 25 == 0 {
            tracing::info!(
                recorders = r + 1,
                of = plan.recorders,
                elapsed_s = t.elapsed().as_secs(),
                "seeding recordings"
            );
        }
    }
    let loaded = t.elapsed();
    for (_, sql) in &indexes {
        db.execute_raw(sql).await?;
    }
    match db.engine() {
        crate::Engine::Postgres => {
            db.execute_raw("VACUUM ANALYZE recordings").await?;
            db.execute_raw("VACUUM ANALYZE recording_segments").await?;
        }
        crate::Engine::Sqlite => {
            db.execute_raw("ANALYZE").await?;
        }
    }
    tracing::info!(
        rows_s = loaded.as_secs_f64(),
        total_s = t.elapsed().as_secs_f64(),
        "recording index seeded"
    );
    Ok(())
}

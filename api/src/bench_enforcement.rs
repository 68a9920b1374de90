//! `shouhu bench enforcement`: the daily-work benchmark (figures in docs/benchmarks.md).
//!
//! On a fresh database of the chosen engine: the Shanghai org tree, 100,000 enterprises, 20
//! officers per district, and a bulk-seeded year of 1,000,000 inspections, 2,000,000 hazards and
//! 100,000 cases ([`shouhu_storage::bulk`]). The server runs in this process on 127.0.0.1; 70
//! clients, each logged in as the brigade head of one district (so every query is bounded by a
//! district, as in daily use), run a mixed workload for 60 s, closed loop:
//!
//! | share | operation |
//! |---|---|
//! | 25 % | hazard list: open hazards needing action within 7 days (the workbench query) |
//! | 15 % | inspection detail (items, hazards, filing) |
//! | 15 % | hazard detail |
//! | 10 % | inspections of one enterprise |
//! | 10 % | exact look-up of an inspection by its code |
//! | 5 % | case detail (SM4 fields decrypted, the read audited) |
//! | 10 % | start an inspection (over the cap: with an over-cap filing) |
//! | 5 % | record item results |
//! | 5 % | re-inspection of an open hazard (numbered opinion) |
//!
//! It prints one Markdown row per operation class and one for reads and writes overall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::bulk::{DistrictInput, Plan};
use shouhu_storage::enforcement::unit_short_name;
use shouhu_storage::enterprises::EnterpriseFilter;
use shouhu_storage::officers::OfficerFilter;
use shouhu_storage::org_units::Scope;
use shouhu_storage::{Db, PageRequest};
use tokio::sync::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Secret};

/// Options of the daily-work benchmark.
#[derive(Debug, clap::Args)]
pub struct EnforcementBenchArgs {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// PostgreSQL server URL (a database `shouhu_bench` is created on it, replacing any old one).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// Enterprises.
    #[arg(long, default_value_t = 100_000)]
    pub enterprises: usize,
    /// Inspections.
    #[arg(long, default_value_t = 1_000_000)]
    pub inspections: usize,
    /// Hazards.
    #[arg(long, default_value_t = 2_000_000)]
    pub hazards: usize,
    /// Cases.
    #[arg(long, default_value_t = 100_000)]
    pub cases: usize,
    /// Concurrent users.
    #[arg(long, default_value_t = 70)]
    pub clients: usize,
    /// Seconds of load (per phase).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Mean think time of a user between requests, ms, in the first phase (office users click
    /// every second or so; each pause is drawn from 0.5–1.5 × this, and each user starts at a
    /// random point of its first pause); a second phase runs without think time (saturation).
    #[arg(long, default_value_t = 1000)]
    pub think_ms: u64,
    /// Keep the seeded database for later runs: the data directory (and the SQLite file) goes
    /// here, and a run whose directory holds a database seeded with the same sizes (the
    /// PostgreSQL database `shouhu_bench`, for `--engine postgres`) skips seeding and samples
    /// the workload's ids from it. Without it the database is made afresh and removed.
    #[arg(long)]
    pub keep: Option<std::path::PathBuf>,
}

const PASSWORD: &str = "Bench@2026x";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Op {
    HazardsDue,
    InspectionDetail,
    HazardDetail,
    EnterpriseInspections,
    CodeLookup,
    CaseDetail,
    StartInspection,
    RecordResults,
    Reinspect,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::HazardsDue => "hazard list, action within 7 days (district)",
            Op::InspectionDetail => "inspection detail",
            Op::HazardDetail => "hazard detail",
            Op::EnterpriseInspections => "inspections of one enterprise",
            Op::CodeLookup => "inspection by code (exact)",
            Op::CaseDetail => "case detail (SM4 fields, audited read)",
            Op::StartInspection => "start inspection (write)",
            Op::RecordResults => "record item results (write)",
            Op::Reinspect => "re-inspection (write)",
        }
    }

    fn write(self) -> bool {
        matches!(
            self,
            Op::StartInspection | Op::RecordResults | Op::Reinspect
        )
    }

    fn pick(r: u32) -> Op {
        match r {
            0..25 => Op::HazardsDue,
            25..40 => Op::InspectionDetail,
            40..55 => Op::HazardDetail,
            55..65 => Op::EnterpriseInspections,
            65..75 => Op::CodeLookup,
            75..80 => Op::CaseDetail,
            80..90 => Op::StartInspection,
            90..95 => Op::RecordResults,
            _ => Op::Reinspect,
        }
    }
}

/// What one district's clients pick from.
struct Pool {
    token_of: Vec<String>,
    enterprises: Vec<String>,
    officers: Vec<String>,
    inspections: Vec<(String, String)>,
    hazards: Vec<String>,
    open_hazards: Mutex<Vec<String>>,
    cases: Vec<String>,
    in_progress: Mutex<Vec<String>>,
}

/// Run the benchmark.
pub async fn run(mut cfg: Config, args: EnforcementBenchArgs) -> anyhow::Result<()> {
    let dir = args.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shouhu-bench-enf-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let marker_path = dir.join("seeded.txt");
    let marker = format!(
        "{} {} {} {} {}\n",
        args.engine, args.enterprises, args.inspections, args.hazards, args.cases
    );
    let reuse =
        args.keep.is_some() && std::fs::read_to_string(&marker_path).is_ok_and(|m| m == marker);
    if !reuse {
        let _ = std::fs::remove_file(&marker_path);
        if args.engine == "sqlite" {
            for f in ["shouhu.db", "shouhu.db-wal", "shouhu.db-shm"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
        }
    }
    cfg.server.data_dir = dir.clone();
    cfg.metrics.enabled = false;
    cfg.jt808.enabled = false;
    cfg.sip.enabled = false;
    cfg.database.max_connections = 16;
    cfg.auth.session_cache_secs = 5;
    cfg.database.url = Secret(match args.engine.as_str() {
        "sqlite" => Db::sqlite_url_in(&dir),
        "postgres" if reuse => crate::bench::bench_pg_url(&args.database_url),
        "postgres" => crate::bench::fresh_pg(&args.database_url).await?,
        other => anyhow::bail!("unknown engine {other:?}"),
    });
    let state = crate::server::build_state(cfg.clone(), Arc::new(SystemClock)).await?;
    let db = state.db.clone();
    let t = Instant::now();
    let actor = Actor {
        account_id: None,
        username: Some("bench".into()),
        ip: None,
    };
    let audit = |a: &str| AuditEntry::new(&actor, a, SystemClock.now_ms());
    let brigades: Vec<shouhu_storage::org_units::OrgUnit> = if reuse {
        let mut b: Vec<_> = db
            .org_units()
            .list()
            .await?
            .into_iter()
            .filter(|u| u.kind == "brigade")
            .collect();
        b.sort_by(|x, y| x.code.cmp(&y.code));
        b
    } else {
        let org = crate::demo::seed_org(&db).await?;
        crate::demo::insert_enterprises(&db, &crate::demo::enterprises(&org, args.enterprises, 7))
            .await?;
        let officers = crate::demo::officers(&org, 20, 7);
        db.officers()
            .insert_many(&officers, &audit("officer.import"), "officer.import")
            .await?;
        org.districts.into_iter().map(|d| d.0).collect()
    };
    let items: Vec<String> = db
        .inspection_items()
        .list(None, None, Some(true), PageRequest::new(None, Some(500)))
        .await?
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut districts = Vec::new();
    for b in &brigades {
        let mut enterprises = Vec::new();
        let mut page = 1;
        loop {
            let p = db
                .enterprises()
                .list(
                    &Scope::All,
                    &EnterpriseFilter {
                        district_id: Some(b.id.clone()),
                        ..Default::default()
                    },
                    PageRequest::new(Some(page), Some(500)),
                )
                .await?;
            let n = p.items.len();
            // Closed enterprises are not inspected any more.
            enterprises.extend(
                p.items
                    .into_iter()
                    .filter(|e| e.status != "closed")
                    .map(|e| e.id),
            );
            if n < 500 {
                break;
            }
            page += 1;
        }
        let offs: Vec<String> = db
            .officers()
            .list(
                &Scope::All,
                &OfficerFilter {
                    org_unit_id: Some(b.id.clone()),
                    ..Default::default()
                },
                PageRequest::new(None, Some(500)),
            )
            .await?
            .items
            .into_iter()
            .map(|o| o.id)
            .collect();
        districts.push(DistrictInput {
            unit_id: b.id.clone(),
            unit_code: b.code.clone(),
            short_name: unit_short_name(&b.name, false),
            enterprises,
            officers: offs,
        });
    }
    let seeded_registry = t.elapsed();
    let t = Instant::now();
    let samples = if reuse {
        let mut v = Vec::new();
        for d in &districts {
            v.push(shouhu_storage::bulk::sample(&db, &d.unit_id).await?);
        }
        eprintln!(
            "reusing the database seeded earlier in {} ({:?}); sampled in {:.1} s",
            dir.display(),
            db.engine(),
            t.elapsed().as_secs_f64()
        );
        v
    } else {
        let samples = shouhu_storage::bulk::seed(
            &db,
            &districts,
            &items,
            Plan {
                inspections: args.inspections,
                hazards: args.hazards,
                cases: args.cases,
                now_ms: SystemClock.now_ms(),
                seed: 7,
            },
        )
        .await?;
        eprintln!(
            "seeded {} enterprises in {:.1} s; {} inspections, {} hazards, {} cases in {:.1} s ({:?})",
            args.enterprises,
            seeded_registry.as_secs_f64(),
            args.inspections,
            args.hazards,
            args.cases,
            t.elapsed().as_secs_f64(),
            db.engine()
        );
        samples
    };
    // One brigade head per client, spread over the districts.
    let hash = crate::auth::password::hash(&cfg.auth, PASSWORD).await?;
    let mut users = Vec::new();
    for c in 0..args.clients {
        let d = c % districts.len();
        let username = format!("head{c:03}");
        let created = db
            .accounts()
            .create(
                &NewAccount {
                    username: username.clone(),
                    display_name: username.clone(),
                    password_hash: hash.clone(),
                    role: "brigade_head".into(),
                    org_unit_id: districts[d].unit_id.clone(),
                    must_change_password: false,
                },
                &audit("account.create"),
            )
            .await;
        match created {
            Ok(_) => {}
            // A kept database has the accounts of the earlier run.
            Err(shouhu_storage::StorageError::Duplicate { .. }) if reuse => {}
            Err(e) => return Err(e.into()),
        }
        users.push((d, username));
    }
    if args.keep.is_some() && !reuse {
        std::fs::write(&marker_path, &marker)?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(state, listener, None, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let mut pools: Vec<Pool> = districts
        .iter()
        .zip(samples)
        .map(|(d, s)| Pool {
            token_of: Vec::new(),
            enterprises: d.enterprises.clone(),
            officers: d.officers.clone(),
            inspections: s.inspections,
            hazards: s.hazards,
            open_hazards: Mutex::new(s.open_hazards),
            cases: s.cases,
            in_progress: Mutex::new(Vec::new()),
        })
        .collect();
    let mut client_district = Vec::new();
    for (d, u) in &users {
        let r: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": u, "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let tok = r["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("login failed: {r}"))?
            .to_string();
        pools[*d].token_of.push(tok.clone());
        client_district.push((*d, tok));
    }
    let pools = Arc::new(pools);
    let items = Arc::new(items);
    for think_ms in [args.think_ms, 0] {
        let think = Duration::from_millis(think_ms);
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let mut tasks = Vec::new();
        for (c, (d, token)) in client_district.iter().cloned().enumerate() {
            let pools = pools.clone();
            let items = items.clone();
            let client = client.clone();
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(1000 + c as u64);
                let mut lat: HashMap<Op, Vec<Duration>> = HashMap::new();
                let mut errors: HashMap<Op, u64> = HashMap::new();
                let pool = &pools[d];
                // Users are not in step: each starts at a random point of its first think time
                // and thinks 0.5–1.5 × the think time (in step, 70 users send 70 requests in the
                // same millisecond once a second).
                if think > Duration::ZERO {
                    tokio::time::sleep(think.mul_f64(rng.gen_range(0.0..1.0))).await;
                }
                while Instant::now() < deadline {
                    let op = Op::pick(rng.gen_range(0..100));
                    let auth = format!("Bearer {token}");
                    let (method, path, body): (reqwest::Method, String, Option<serde_json::Value>) = match op {
                        Op::HazardsDue => (reqwest::Method::GET, "/api/v1/hazards?status=rectifying,rectified&action_within_days=7".into(), None),
                        Op::InspectionDetail => {
                            let (id, _) = pool.inspections.choose(&mut rng).expect("inspections");
                            (reqwest::Method::GET, format!("/api/v1/inspections/{id}"), None)
                        }
                        Op::HazardDetail => (reqwest::Method::GET, format!("/api/v1/hazards/{}", pool.hazards.choose(&mut rng).expect("hazards")), None),
                        Op::EnterpriseInspections => (
                            reqwest::Method::GET,
                            format!("/api/v1/inspections?enterprise_id={}", pool.enterprises.choose(&mut rng).expect("enterprises")),
                            None,
                        ),
                        Op::CodeLookup => {
                            let (_, code) = pool.inspections.choose(&mut rng).expect("inspections");
                            (reqwest::Method::GET, format!("/api/v1/inspections?q={code}"), None)
                        }
                        Op::CaseDetail => match pool.cases.choose(&mut rng) {
                            Some(id) => (reqwest::Method::GET, format!("/api/v1/cases/{id}"), None),
                            None => continue,
                        },
                        Op::StartInspection => {
                            let offs: Vec<&String> = pool.officers.choose_multiple(&mut rng, 2).collect();
                            (
                                reqwest::Method::POST,
                                "/api/v1/inspections".into(),
                                Some(serde_json::json!({"enterprise_id": pool.enterprises.choose(&mut rng).expect("e"), "kind": "complaint",
                                    "officer_ids": offs, "over_cap_reason": "群众投诉举报，需现场核查"})),
                            )
                        }
                        Op::RecordResults => {
                            let Some(id) = pool.in_progress.lock().await.last().cloned() else { continue };
                            let picked: Vec<&String> = items.choose_multiple(&mut rng, 3).collect();
                            (
                                reqwest::Method::PUT,
                                format!("/api/v1/inspections/{id}/results"),
                                Some(serde_json::json!({"results": picked.iter().map(|i| serde_json::json!({"item_id": i, "result": "pass"})).collect::<Vec<_>>()})),
                            )
                        }
                        Op::Reinspect => {
                            let Some(id) = pool.open_hazards.lock().await.pop() else { continue };
                            (
                                reqwest::Method::POST,
                                format!("/api/v1/hazards/{id}/reinspection"),
                                Some(serde_json::json!({"result": "passed", "note": "经复查，整改到位。"})),
                            )
                        }
                    };
                    let mut req = client.request(method, format!("{base}{path}")).header("authorization", auth);
                    if let Some(b) = &body {
                        req = req.json(b);
                    }
                    let t = Instant::now();
                    let resp = req.send().await;
                    let (ok, json) = match resp {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            (ok, r.json::<serde_json::Value>().await.ok())
                        }
                        Err(_) => (false, None),
                    };
                    let el = t.elapsed();
                    lat.entry(op).or_default().push(el);
                    if think > Duration::ZERO {
                        tokio::time::sleep(think.mul_f64(rng.gen_range(0.5..1.5))).await;
                    }
                    if !ok {
                        *errors.entry(op).or_default() += 1;
                    } else if op == Op::StartInspection {
                        if let Some(id) = json.as_ref().and_then(|j| j["id"].as_str()) {
                            pool.in_progress.lock().await.push(id.to_string());
                        }
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat: HashMap<Op, Vec<Duration>> = HashMap::new();
        let mut errors: HashMap<Op, u64> = HashMap::new();
        for t in tasks {
            let (l, e) = t.await?;
            for (k, v) in l {
                lat.entry(k).or_default().extend(v);
            }
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
        let engine = db.engine();
        let mut ops: Vec<Op> = lat.keys().copied().collect();
        ops.sort();
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        let (mut read_err, mut write_err) = (0, 0);
        for op in ops {
            let mut v = lat.remove(&op).unwrap_or_default();
            v.sort();
            let e = errors.get(&op).copied().unwrap_or(0);
            println!(
                "| {engine:?} | {} | {} | {:.1} | {:.1} | {e} |",
                op.label(),
                v.len(),
                ms(pct(&v, 0.50)),
                ms(pct(&v, 0.99))
            );
            if op.write() {
                writes.extend(v);
                write_err += e;
            } else {
                reads.extend(v);
                read_err += e;
            }
        }
        for (label, mut v, e) in [
            ("all reads", reads, read_err),
            ("all writes", writes, write_err),
        ] {
            v.sort();
            println!(
                "| {engine:?} | **{label}**, {} users, think {} ms, {} s ({:.0} req/s) | {} | {:.1} | {:.1} | {e} |",
                args.clients,
                think.as_millis(),
                args.duration,
                v.len() as f64 / args.duration as f64,
                v.len(),
                ms(pct(&v, 0.50)),
                ms(pct(&v, 0.99))
            );
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    db.close().await;
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

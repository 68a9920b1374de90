//! A year of daily enforcement work for the demo: inspections by pairs of officers, item results,
//! hazards with their rectification loop at every stage, over-cap filings, and cases from the
//! escalated hazards at every stage from filing review to closed.
//!
//! Everything goes through the storage repositories with audit entries dated in the past (each
//! call's audit time is its "now"), so numbering, deadlines, audit rows and states are exactly
//! what the live workflow produces. Deterministic (seeded RNG); the last days before `now` hold
//! the open work a squad leader sees on the workbench: inspections in progress, hazards whose
//! deadline falls this week, rectifications awaiting re-inspection, overdue re-inspections.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::cases::CaseInput;
use shouhu_storage::enforcement::{shanghai_date, DAY_MS};
use shouhu_storage::enterprises::EnterpriseFilter;
use shouhu_storage::hazards::HazardInput;
use shouhu_storage::inspections::{InspectionInput, ResultInput};
use shouhu_storage::officers::OfficerFilter;
use shouhu_storage::org_units::Scope;
use shouhu_storage::plans::{Period, ProposedVisit};
use shouhu_storage::{Db, PageRequest, StorageError};

use super::DemoOrg;

const HOUR_MS: i64 = 3_600_000;

/// What was seeded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seeded {
    /// Inspections.
    pub inspections: usize,
    /// Hazards.
    pub hazards: usize,
    /// Cases.
    pub cases: usize,
    /// Work orders.
    pub work_orders: usize,
    /// Plans.
    pub plans: usize,
}

fn at(action: &str, ms: i64) -> AuditEntry {
    AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("demo".into()),
            ip: None,
        },
        action,
        ms,
    )
}

const SUMMARIES: &[&str] = &[
    "企业安全管理制度基本健全，现场发现的问题已责令限期整改。",
    "现场检查未发现明显问题，督促企业持续做好隐患排查治理。",
    "企业落实安全生产主体责任情况一般，已下达整改指令。",
];

/// Seed a year of work ending at `now_ms` (roughly 1.5 inspections per enterprise).
pub async fn seed(db: &Db, org: &DemoOrg, now_ms: i64, seed: u64) -> anyhow::Result<Seeded> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Item ids and their titles: a hazard found under an item is described by it (the titles
    // are the hazard-judgement wording, "…未…的").
    let item_titles: HashMap<String, String> = db
        .inspection_items()
        .list(None, None, Some(true), PageRequest::new(None, Some(500)))
        .await?
        .items
        .into_iter()
        .map(|i| (i.id, i.title.trim_end_matches(['的', '。']).to_string()))
        .collect();
    let mut items: Vec<String> = item_titles.keys().cloned().collect();
    items.sort();
    // Enterprises and officers of each district.
    let mut work: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (b, _, _, _) in &org.districts {
        let ents: Vec<String> = db
            .enterprises()
            .list(
                &Scope::All,
                &EnterpriseFilter {
                    district_id: Some(b.id.clone()),
                    ..Default::default()
                },
                PageRequest::new(None, Some(500)),
            )
            .await?
            .items
            .into_iter()
            .filter(|e| e.status == "operating")
            .map(|e| e.id)
            .collect();
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
        if !ents.is_empty() && offs.len() >= 2 {
            work.push((b.id.clone(), ents, offs));
        }
    }
    // Visits spread over the year, in time order; the busiest district (黄浦, the first) gets
    // a guaranteed set of recent ones so the workbench has this week's work.
    // (start, district, must happen: the recent visits the workbench shows)
    let mut visits: Vec<(i64, usize, bool)> = Vec::new();
    for (d, (_, ents, _)) in work.iter().enumerate() {
        let n = ents.len() * 3 / 2;
        for _ in 0..n {
            let age = rng.gen_range(0..365 * DAY_MS);
            visits.push((now_ms - age, d, false));
        }
        if d == 0 {
            for k in 0..8 {
                visits.push((now_ms - (k as i64 * 2 + 1) * DAY_MS - 3 * HOUR_MS, d, true));
            }
            // Today's visits, still under way.
            visits.push((now_ms - 2 * HOUR_MS, d, true));
            visits.push((now_ms - HOUR_MS, d, true));
        }
    }
    visits.sort_unstable();
    let mut out = Seeded::default();
    let mut plan_visits = seed_plans(db, &work, &visits, now_ms, &mut rng, &mut out).await?;
    let kinds = [
        ("planned", 70),
        ("complaint", 15),
        ("referral", 10),
        ("triggered", 5),
    ];
    let mut escalated: Vec<(String, String, String, i64, String)> = Vec::new();
    // A recent completed inspection of the first district, for an open case there.
    let mut recent: Option<(String, String, String, i64)> = None;
    for (started, d, must) in visits {
        let (unit, ents, offs) = &work[d];
        // Office hours in Shanghai: 09:00–16:00 local = 01:00–08:00 UTC.
        let day = started - started.rem_euclid(DAY_MS);
        let started = if now_ms - started < 3 * HOUR_MS {
            started
        } else {
            (day + HOUR_MS + rng.gen_range(0..7 * HOUR_MS)).min(now_ms - 3 * HOUR_MS)
        };
        let enterprise = ents.choose(&mut rng).expect("non-empty").clone();
        let pair: Vec<String> = offs.choose_multiple(&mut rng, 2).cloned().collect();
        let pick = rng.gen_range(0..100);
        let mut acc = 0;
        let kind = kinds
            .iter()
            .find(|(_, w)| {
                acc += w;
                pick < acc
            })
            .map(|(k, _)| *k)
            .unwrap_or("planned");
        // A planned visit executes the next visit of the month's published plan.
        let (enterprise, plan_visit_id) = match plan_visits
            .get_mut(&(d, Period::month_of(started).label))
            .filter(|_| kind == "planned")
            .and_then(|v| v.pop())
        {
            Some((visit, ent)) => (ent, Some(visit)),
            None => (enterprise, None),
        };
        let mut input = InspectionInput {
            enterprise_id: enterprise.clone(),
            kind: kind.into(),
            officer_ids: pair,
            started_at: None,
            over_cap_reason: None,
            plan_visit_id,
        };
        let repo = db.inspections();
        let id = match repo
            .create(unit, &input, started, &at("inspection.create", started))
            .await
        {
            Ok(id) => id,
            Err(StorageError::OverCap { .. }) => {
                if !must && rng.gen_bool(0.7) {
                    continue; // the squad picked another enterprise that day
                }
                input.over_cap_reason = Some("群众投诉举报，需再次现场核查".into());
                repo.create(unit, &input, started, &at("inspection.create", started))
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        out.inspections += 1;
        let n_items = rng.gen_range(5..10);
        let mut checked: Vec<&String> = items.choose_multiple(&mut rng, n_items).collect();
        checked.sort();
        let results: Vec<ResultInput> = checked
            .iter()
            .map(|item| {
                let r = rng.gen_range(0..100);
                ResultInput {
                    item_id: (*item).clone(),
                    result: if r < 80 {
                        "pass"
                    } else if r < 92 {
                        "hazard"
                    } else {
                        "not_applicable"
                    }
                    .into(),
                    note: String::new(),
                    photo_keys: vec![],
                }
            })
            .collect();
        let t = started + HOUR_MS;
        repo.set_results(&Scope::All, &id, &results, &at("inspection.results", t))
            .await?;
        let mut hazards = Vec::new();
        for r in results.iter().filter(|r| r.result == "hazard") {
            let days = *[7i64, 10, 15, 30].choose(&mut rng).expect("days");
            let input = HazardInput {
                item_id: Some(r.item_id.clone()),
                level: if rng.gen_bool(0.06) {
                    "major"
                } else {
                    "general"
                }
                .into(),
                description: item_titles[&r.item_id].clone(),
                rectification_deadline: shanghai_date(t + days * DAY_MS),
            };
            let h = db
                .hazards()
                .create(&Scope::All, &id, &input, &at("hazard.create", t))
                .await?;
            hazards.push(h);
            out.hazards += 1;
        }
        // The last hours' visits are still under way.
        if now_ms - started < 3 * HOUR_MS {
            continue;
        }
        repo.complete(
            &Scope::All,
            &id,
            SUMMARIES[if hazards.is_empty() { 1 } else { 0 }],
            &at("inspection.complete", t + HOUR_MS),
        )
        .await?;
        if must && d == 0 {
            recent = Some((unit.clone(), enterprise.clone(), id.clone(), t + HOUR_MS));
        }
        // The rectification loop of each hazard, as far as time has come.
        for h in hazards {
            let deadline = h.rectification_deadline_ms;
            let fate = rng.gen_range(0..100);
            let reported = deadline - rng.gen_range(0..4) * DAY_MS - 5 * HOUR_MS;
            if reported >= now_ms || (deadline > now_ms && fate < 50) {
                continue; // still being rectified
            }
            if fate >= 95 && deadline < now_ms {
                continue; // never reported: overdue for re-inspection
            }
            db.hazards()
                .report_rectification(
                    &Scope::All,
                    &h.id,
                    "企业已按整改指令完成整改，附整改前后照片。",
                    &[],
                    &at("hazard.rectification", reported),
                )
                .await?;
            let re = reported + rng.gen_range(1..9) * DAY_MS;
            if re >= now_ms {
                continue; // awaiting re-inspection
            }
            let passed = fate < 88;
            let h = db
                .hazards()
                .reinspect(
                    &Scope::All,
                    &h.id,
                    passed,
                    if passed {
                        "经复查，隐患已整改到位，同意销号。"
                    } else {
                        "经复查，企业未按要求完成整改，移交立案查处。"
                    },
                    None,
                    &at("hazard.reinspection", re),
                )
                .await?;
            if !passed {
                escalated.push((
                    unit.clone(),
                    enterprise.clone(),
                    id.clone(),
                    re,
                    h.description,
                ));
            }
        }
    }
    // Cases from the escalated hazards, each as far along as its age allows.
    let cases = db.cases();
    let mut filed: HashMap<String, ()> = HashMap::new();
    for (n, (unit, enterprise, inspection, re, what)) in escalated.into_iter().enumerate() {
        if filed.insert(inspection.clone(), ()).is_some() {
            continue;
        }
        let t0 = re + DAY_MS;
        if t0 >= now_ms {
            continue;
        }
        let input = CaseInput {
            enterprise_id: enterprise,
            inspection_ids: vec![inspection],
            title: format!("{what}案"),
            violation: format!("经现场检查及复查，{what}，逾期未整改。"),
            responsible_person: "企业主要负责人".into(),
            party_id_number: format!(
                "3101011975{:02}{:02}{:03}X",
                1 + n % 12,
                1 + n % 28,
                n % 1000
            ),
            party_phone: format!("1380013{:04}", n % 10_000),
            proposed_fine_cents: Some(rng.gen_range(2..30) * 1_000_000),
        };
        let id = cases.create(&unit, &input, &at("case.create", t0)).await?;
        out.cases += 1;
        let step = |k: i64| t0 + k * 3 * DAY_MS;
        if step(1) >= now_ms {
            continue; // filing review
        }
        cases
            .decide_filing(
                &Scope::All,
                &id,
                true,
                "同意立案",
                &at("case.filing_decision", step(1)),
            )
            .await?;
        if step(3) >= now_ms {
            continue;
        }
        for (code, text) in [
            ("D02", "询问笔录：当事人对违法事实无异议。"),
            ("D15", "拟对当事人处以罚款。"),
        ] {
            let d = cases
                .add_document(&Scope::All, &id, code, text, &at("case.document", step(2)))
                .await?;
            cases
                .approve_document(
                    &Scope::All,
                    &id,
                    &d.id,
                    &at("case.document_approve", step(3)),
                )
                .await?;
        }
        if step(5) >= now_ms {
            continue; // investigating
        }
        let fine = rng.gen_range(2..30) * 1_000_000;
        cases
            .decide_penalty(
                &Scope::All,
                &id,
                fine,
                fine / 10,
                &at("case.penalty", step(5)),
            )
            .await?;
        if step(8) >= now_ms {
            continue; // decided, awaiting payment
        }
        cases
            .record_payment(
                &Scope::All,
                &id,
                fine + fine / 10,
                step(8),
                &at("case.payment", step(8)),
            )
            .await?;
        cases
            .request_closing(&Scope::All, &id, &at("case.closing_request", step(9)))
            .await?;
        if step(10) >= now_ms {
            continue; // closing review
        }
        cases
            .decide_closing(
                &Scope::All,
                &id,
                true,
                "同意结案",
                &at("case.closing_decision", step(10)),
            )
            .await?;
    }
    // Every district sees some open work: make sure the first district has an open case.
    if let Some((unit, enterprise, inspection, t)) = recent {
        let open = cases
            .list(
                &Scope::Subtree(unit.clone()),
                &shouhu_storage::cases::CaseFilter {
                    status: Some("open".into()),
                    ..Default::default()
                },
                PageRequest::new(None, Some(1)),
            )
            .await?;
        if open.total == 0 {
            let input = CaseInput {
                enterprise_id: enterprise,
                inspection_ids: vec![inspection],
                title: "未按规定对从业人员进行安全生产教育和培训案".into(),
                violation: "经现场检查，企业未按规定对从业人员进行安全生产教育和培训。".into(),
                responsible_person: "企业主要负责人".into(),
                party_id_number: "31010119750101123X".into(),
                party_phone: "13800130000".into(),
                proposed_fine_cents: Some(3_000_000),
            };
            let id = cases
                .create(&unit, &input, &at("case.create", t + HOUR_MS))
                .await?;
            cases
                .decide_filing(
                    &Scope::All,
                    &id,
                    true,
                    "同意立案",
                    &at("case.filing_decision", t + 2 * HOUR_MS),
                )
                .await?;
            out.cases += 1;
        }
    }
    out.work_orders = seed_work_orders(db, org, now_ms, &mut rng).await?;
    out.plans += seed_proposal(db, &work, now_ms).await?;
    Ok(out)
}

/// Work orders from the corps to the brigades over the last two months, at every stage.
/// Visits of the published monthly plans still to execute, by (district index, month).
type PlanVisits = HashMap<(usize, String), Vec<(String, String)>>;

/// Create a plan and take it through review to publication, `at_ms` being its drafting time.
async fn publish_plan(
    db: &Db,
    unit: &str,
    period: &Period,
    target: i64,
    visits: &[ProposedVisit],
    at_ms: i64,
) -> anyhow::Result<String> {
    let unit_name = db.org_units().get(unit).await?.name;
    let plans = db.plans();
    let id = plans
        .create(
            unit,
            period,
            &period.plan_title(&unit_name),
            "重点检查危险化学品、工贸企业有限空间作业和粉尘涉爆场所。",
            target,
            false,
            visits,
            &at("plan.create", at_ms),
        )
        .await?;
    let plan = plans.get(&Scope::All, &id).await?;
    plans
        .submit(&plan, &at("plan.submit", at_ms + HOUR_MS))
        .await?;
    let plan = plans.get(&Scope::All, &id).await?;
    plans
        .approve(&plan, &at("plan.approve", at_ms + DAY_MS))
        .await?;
    Ok(id)
}

/// Annual and quarterly plans with targets, and a published monthly plan per district and month
/// whose visits the planned inspections then execute.
async fn seed_plans(
    db: &Db,
    work: &[(String, Vec<String>, Vec<String>)],
    visits: &[(i64, usize, bool)],
    now_ms: i64,
    rng: &mut StdRng,
    out: &mut Seeded,
) -> anyhow::Result<PlanVisits> {
    let mut months = vec![Period::month_of(now_ms - 365 * DAY_MS)];
    while let Some(m) = months.last().filter(|m| m.end_ms <= now_ms) {
        months.push(Period::month_of(m.end_ms));
    }
    let mut longer: Vec<Period> = Vec::new();
    for m in &months {
        let q = format!(
            "{}-Q{}",
            m.year,
            (m.label[5..].parse::<u32>().unwrap_or(1) - 1) / 3 + 1
        );
        for p in [Period::parse(&m.year.to_string()), Period::parse(&q)]
            .into_iter()
            .flatten()
        {
            if !longer.contains(&p) {
                longer.push(p);
            }
        }
    }
    let mut todo = PlanVisits::new();
    for (d, (unit, ents, _)) in work.iter().enumerate() {
        if ents.is_empty() {
            // A brigade without enterprises in the demo has nothing to plan.
            continue;
        }
        for p in &longer {
            let share = if p.kind == "year" { 1.0 } else { 0.25 };
            // A small demo (a handful of firms per district) still plans at least one visit.
            let target = ((ents.len() as f64 * 1.5 * 0.7 * share).round() as i64).max(1);
            publish_plan(db, unit, p, target, &[], p.start_ms - 20 * DAY_MS).await?;
            out.plans += 1;
        }
        for m in &months {
            let n = visits
                .iter()
                .filter(|(t, dd, _)| *dd == d && *t >= m.start_ms && *t < m.end_ms)
                .count();
            let k = (n * 3 / 4 + 1).min(ents.len());
            let chosen: Vec<ProposedVisit> = ents
                .choose_multiple(rng, k)
                .map(|e| ProposedVisit {
                    enterprise_id: e.clone(),
                    reason: if rng.gen_bool(0.3) {
                        "key_unit"
                    } else {
                        "grade"
                    }
                    .into(),
                    hazard_id: None,
                    note: "按分类分级监管频次安排".into(),
                })
                .collect();
            let id = publish_plan(
                db,
                unit,
                m,
                chosen.len() as i64,
                &chosen,
                m.start_ms - 7 * DAY_MS,
            )
            .await?;
            out.plans += 1;
            let mut vs: Vec<(String, String)> = db
                .plans()
                .visits(&id)
                .await?
                .into_iter()
                .map(|v| (v.id, v.enterprise_id))
                .collect();
            vs.shuffle(rng);
            todo.insert((d, m.label.clone()), vs);
        }
    }
    Ok(todo)
}

/// The next month's plan of the first district, proposed from the data (a draft to review).
async fn seed_proposal(
    db: &Db,
    work: &[(String, Vec<String>, Vec<String>)],
    now_ms: i64,
) -> anyhow::Result<usize> {
    let Some((unit, _, _)) = work.first() else {
        return Ok(0);
    };
    let next = Period::month_of(Period::month_of(now_ms).end_ms);
    let visits = db.plans().propose(unit, &next, 30).await?;
    let unit_name = db.org_units().get(unit).await?.name;
    db.plans()
        .create(
            unit,
            &next,
            &next.plan_title(&unit_name),
            "系统根据数据生成的建议，待内部审核。",
            visits.len() as i64,
            true,
            &visits,
            &at("plan.propose", now_ms - HOUR_MS),
        )
        .await?;
    Ok(1)
}

async fn seed_work_orders(
    db: &Db,
    org: &DemoOrg,
    now_ms: i64,
    rng: &mut StdRng,
) -> anyhow::Result<usize> {
    use shouhu_storage::work_orders::WorkOrderInput;
    const TOPICS: &[(&str, &str)] = &[
        (
            "关于开展有限空间作业专项执法检查的通知",
            "请各区大队于期限内完成辖区有限空间作业企业专项检查，报送检查企业清单及发现问题。",
        ),
        (
            "关于报送本季度“三率”统计数据的通知",
            "请报送本季度重点单位检查覆盖率、隐患整改率、行政处罚率及相关明细。",
        ),
        (
            "关于转办群众投诉举报线索的函",
            "现将群众投诉举报线索转你单位核查处理，请于期限内反馈核查结果。",
        ),
        (
            "关于做好节假日期间安全生产执法检查的通知",
            "请加强节日期间重点行业领域执法检查，做好值班值守。",
        ),
        (
            "关于开展粉尘涉爆企业复查的通知",
            "请对辖区粉尘涉爆企业开展复查，重点检查泄爆、隔爆装置设置情况。",
        ),
        (
            "关于核实企业基础信息的函",
            "请核实附件所列企业的统一社会信用代码、地址及监管等级信息。",
        ),
    ];
    let repo = db.work_orders();
    let brigades: Vec<String> = org.districts.iter().map(|d| d.0.id.clone()).collect();
    let mut n = 0;
    for (k, (title, body)) in TOPICS.iter().enumerate() {
        let created = now_ms - (55 - k as i64 * 9) * DAY_MS;
        // The first brigade (黄浦) is always a recipient, so its clerk has work.
        let mut to: Vec<String> = brigades.choose_multiple(rng, 3).cloned().collect();
        if !to.contains(&brigades[0]) {
            to[0] = brigades[0].clone();
        }
        let input = WorkOrderInput {
            title: (*title).into(),
            body: (*body).into(),
            deadline: shanghai_date(created + 14 * DAY_MS),
            recipient_unit_ids: to.clone(),
            attachment_keys: vec![],
        };
        let id = repo
            .create(
                &org.corps.id,
                &input,
                created + 15 * DAY_MS - HOUR_MS,
                &at("work_order.create", created),
            )
            .await?;
        n += 1;
        for (j, unit) in to.iter().enumerate() {
            let t = created + (j as i64 + 1) * HOUR_MS;
            // Older orders are further along; the newest are still waiting.
            let stage = (TOPICS.len() - k) as i64 + j as i64 - 1;
            if stage < 1 || t >= now_ms {
                continue;
            }
            let o = repo.get(&Scope::All, &id).await?;
            repo.receive(&o, unit, &at("work_order.receive", t)).await?;
            if stage < 2 {
                continue;
            }
            let o = repo.get(&Scope::All, &id).await?;
            repo.reply(
                &o,
                unit,
                "已按要求办理，情况如下：已完成辖区相关企业检查，发现问题均已责令整改。",
                &[],
                &at("work_order.reply", t + 3 * DAY_MS),
            )
            .await?;
            if stage < 3 {
                continue;
            }
            let o = repo.get(&Scope::All, &id).await?;
            repo.accept(&o, unit, &at("work_order.accept", t + 4 * DAY_MS))
                .await?;
        }
        let o = repo.get(&Scope::All, &id).await?;
        if o.recipients.iter().all(|r| r.status == "accepted") {
            repo.close(
                &o,
                "全部办结",
                false,
                &at("work_order.close", created + 6 * DAY_MS),
            )
            .await?;
        }
    }
    Ok(n)
}

/// Electronic case files for half of the closed cases (a generated 案卷目录 PDF each), and a
/// review of some of them — the rest stay on the workbench's "not yet archived" reminder.
pub async fn seed_case_files(state: &crate::state::AppState, now_ms: i64) -> anyhow::Result<usize> {
    use crate::documents::{chinese_date, Block, Document};
    use shouhu_storage::case_files::{CaseFileItem, Finding};
    let cases = state.db.cases();
    let closed = cases
        .list(
            &Scope::All,
            &shouhu_storage::cases::CaseFilter {
                status: Some("closed".into()),
                ..Default::default()
            },
            PageRequest::new(None, Some(200)),
        )
        .await?
        .items;
    let font = match crate::documents::font(state) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e.message, "no Chinese font: the demo's case files are skipped");
            return Ok(0);
        }
    };
    let rules = state.db.case_files().rules().await?;
    let mut n = 0;
    for (k, c) in closed.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
        let full = cases.get(&Scope::All, &c.id).await?;
        let closed_at = c.closed_at_ms.unwrap_or(now_ms);
        let doc = Document {
            issuer: state.db.org_units().get(&c.org_unit_id).await?.name,
            title: "案卷目录".into(),
            number: c.number.clone().unwrap_or_default(),
            blocks: full
                .documents
                .iter()
                .enumerate()
                .map(|(i, d)| Block::Field(format!("{}. {}", i + 1, d.title), d.number.clone()))
                .collect(),
            date: chinese_date(closed_at),
        };
        let pdf = crate::documents::pdf::render(&doc, &font, "D:20260101000000+08'00'")
            .map_err(|e| anyhow::anyhow!(e))?;
        let item_id = shouhu_storage::new_id();
        let key = format!("case-files/{}/{item_id}.pdf", c.id);
        let info = state.blobs.put(&key, &pdf).await?;
        let at_ms = closed_at + 2 * DAY_MS;
        state
            .db
            .case_files()
            .add_item(
                &CaseFileItem {
                    id: item_id,
                    case_id: c.id.clone(),
                    filename: format!("{}案卷.pdf", c.number.clone().unwrap_or_default()),
                    content_type: "application/pdf".into(),
                    blob_key: key,
                    size: info.size as i64,
                    sha256: info.sha256,
                    sm3: info.sm3,
                    uploaded_at_ms: at_ms,
                },
                &at("case_file.upload", at_ms),
            )
            .await?;
        n += 1;
        if k % 4 == 0 {
            let findings: Vec<Finding> = rules
                .iter()
                .filter(|r| r.active)
                .enumerate()
                .map(|(i, r)| Finding {
                    rule_id: r.id.clone(),
                    score: if k % 8 == 0 || i > 0 {
                        r.points
                    } else {
                        r.points - 2
                    },
                    finding: "符合要求".into(),
                })
                .collect();
            state
                .db
                .case_files()
                .review(
                    &c.id,
                    &findings,
                    k % 8 == 0,
                    "案卷材料齐全，程序规范。",
                    &at("case.review", at_ms + DAY_MS),
                )
                .await?;
        }
    }
    Ok(n)
}

//! Demo data: Shanghai's 16 districts as brigades (with towns and squads), SOE groups, plausible
//! enterprises (valid USCCs, locations inside their districts), officers, one account per role,
//! a pending account application, and a year of enforcement work ([`enforcement`]). `shouhu demo` seeds a fresh SQLite database with it and
//! serves; the benchmark reuses the generators for 100,000 enterprises.
//!
//! Generation is deterministic (a seeded RNG), so a demo looks the same every time.

use std::collections::HashSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use shouhu_storage::accounts::{NewAccount, NewApplication};
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::enterprises::{EnterpriseInput, OWNERSHIP_TYPES};
use shouhu_storage::officers::OfficerInput;
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit};
use shouhu_storage::{uscc, Db};

use crate::cli::DemoArgs;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;

pub mod enforcement;

const SHANGHAI_JSON: &str = include_str!("demo/shanghai.json");
const NAMES_JSON: &str = include_str!("demo/names.json");

/// The demo password of every seeded account.
pub const DEMO_PASSWORD: &str = "Shouhu@2026";

#[derive(Debug, Deserialize)]
struct Shanghai {
    city: City,
    districts: Vec<District>,
    soe_groups: Vec<Soe>,
}

#[derive(Debug, Deserialize)]
struct City {
    name: String,
    code: String,
}

#[derive(Debug, Deserialize)]
struct District {
    name: String,
    brigade: String,
    code: String,
    center: [f64; 2],
    safe_radius_m: f64,
    towns: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Soe {
    name: String,
    code: String,
}

#[derive(Debug, Deserialize)]
struct Names {
    enterprise_prefixes: Vec<String>,
    enterprise_kinds: Vec<Kind>,
    surnames: Vec<String>,
    given_names: Vec<String>,
    streets: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Kind {
    suffix: String,
    industry_code: String,
    sector: String,
}

/// The seeded org tree.
#[derive(Debug, Clone)]
pub struct DemoOrg {
    /// The corps.
    pub corps: OrgUnit,
    /// One brigade per district, with its towns, and the district's centre and safe radius.
    pub districts: Vec<(OrgUnit, Vec<OrgUnit>, [f64; 2], f64)>,
    /// SOE groups.
    pub soe_groups: Vec<OrgUnit>,
}

fn actor() -> Actor {
    Actor {
        account_id: None,
        username: Some("demo".into()),
        ip: None,
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(&actor(), action, SystemClock.now_ms())
}

/// Create the corps, the 16 district brigades with towns and two squads each, and SOE groups.
pub async fn seed_org(db: &Db) -> anyhow::Result<DemoOrg> {
    let sh: Shanghai = serde_json::from_str(SHANGHAI_JSON)?;
    let o = db.org_units();
    let corps = o
        .create(
            &NewOrgUnit {
                parent_id: None,
                kind: OrgKind::Corps,
                name: sh.city.name.clone(),
                code: sh.city.code.clone(),
            },
            &audit("org_unit.create"),
        )
        .await?;
    let mut districts = Vec::new();
    for d in &sh.districts {
        let b = o
            .create(
                &NewOrgUnit {
                    parent_id: Some(corps.id.clone()),
                    kind: OrgKind::Brigade,
                    name: d.brigade.clone(),
                    code: d.code.clone(),
                },
                &audit("org_unit.create"),
            )
            .await?;
        let mut towns = Vec::new();
        for (i, t) in d.towns.iter().enumerate() {
            towns.push(
                o.create(
                    &NewOrgUnit {
                        parent_id: Some(b.id.clone()),
                        kind: OrgKind::Town,
                        name: t.clone(),
                        code: format!("{}{:03}", d.code, i + 1),
                    },
                    &audit("org_unit.create"),
                )
                .await?,
            );
        }
        for (i, s) in ["第一执法中队", "第二执法中队"].iter().enumerate() {
            o.create(
                &NewOrgUnit {
                    parent_id: Some(b.id.clone()),
                    kind: OrgKind::Squad,
                    name: format!("{}{}", d.name, s),
                    code: format!("{}-S{}", d.code, i + 1),
                },
                &audit("org_unit.create"),
            )
            .await?;
        }
        districts.push((b, towns, d.center, d.safe_radius_m));
    }
    let mut soe_groups = Vec::new();
    for s in &sh.soe_groups {
        soe_groups.push(
            o.create(
                &NewOrgUnit {
                    parent_id: Some(corps.id.clone()),
                    kind: OrgKind::SoeGroup,
                    name: s.name.clone(),
                    code: s.code.clone(),
                },
                &audit("org_unit.create"),
            )
            .await?,
        );
    }
    Ok(DemoOrg {
        corps,
        districts,
        soe_groups,
    })
}

/// A valid USCC for an enterprise registered in `division` (6-digit code).
pub fn random_uscc(rng: &mut impl Rng, division: &str) -> String {
    let alphabet = uscc::ALPHABET;
    let mut s = String::from("91");
    s.push_str(&division[..6.min(division.len())]);
    while s.len() < 17 {
        s.push(alphabet[rng.gen_range(0..alphabet.len())] as char);
    }
    let c = uscc::check_char(&s).expect("17 valid characters");
    s.push(c);
    s
}

/// A point uniformly inside the disc of `radius_m` around `center` (lon, lat).
pub fn point_in_disc(rng: &mut impl Rng, center: [f64; 2], radius_m: f64) -> (f64, f64) {
    let r = radius_m * rng.gen::<f64>().sqrt();
    let th = rng.gen::<f64>() * std::f64::consts::TAU;
    let dlat = r * th.cos() / 111_320.0;
    let dlon = r * th.sin() / (111_320.0 * center[1].to_radians().cos());
    (
        ((center[0] + dlon) * 1e6).round() / 1e6,
        ((center[1] + dlat) * 1e6).round() / 1e6,
    )
}

/// Generate `n` enterprises spread over the districts (deterministic for a seed).
pub fn enterprises(org: &DemoOrg, n: usize, seed: u64) -> Vec<EnterpriseInput> {
    let names: Names = serde_json::from_str(NAMES_JSON).expect("names.json parses");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut used_names = HashSet::new();
    let mut used_codes = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let year = 2026;
    while out.len() < n {
        let (brigade, towns, center, radius) =
            &org.districts[rng.gen_range(0..org.districts.len())];
        let district_short = brigade.name.split("区").next().unwrap_or("").to_string();
        let prefix = names
            .enterprise_prefixes
            .choose(&mut rng)
            .expect("prefixes");
        let kind = names.enterprise_kinds.choose(&mut rng).expect("kinds");
        let mut name = format!("上海{prefix}{}", kind.suffix);
        if used_names.contains(&name) {
            name = format!("上海{prefix}{district_short}{}", kind.suffix);
        }
        if used_names.contains(&name) {
            let extra = names.given_names.choose(&mut rng).expect("given names");
            name = format!("上海{prefix}{extra}{}", kind.suffix);
        }
        if used_names.contains(&name) {
            name = format!(
                "上海{prefix}{}{}号{}",
                district_short,
                out.len(),
                kind.suffix
            );
        }
        let code = random_uscc(&mut rng, &brigade.code);
        if !used_codes.insert(code.clone()) {
            continue;
        }
        used_names.insert(name.clone());
        let (lon, lat) = point_in_disc(&mut rng, *center, *radius);
        let person = |rng: &mut StdRng| {
            format!(
                "{}{}",
                names.surnames.choose(rng).expect("s"),
                names.given_names.choose(rng).expect("g")
            )
        };
        let street = names.streets.choose(&mut rng).expect("streets");
        let key = rng.gen_bool(0.25);
        let mut years = Vec::new();
        if key {
            years.push(year);
            if rng.gen_bool(0.6) {
                years.push(year - 1);
            }
        }
        let mut tags = Vec::new();
        if kind.suffix.contains("粉") || kind.industry_code.starts_with("C33") && rng.gen_bool(0.3)
        {
            tags.push("粉尘涉爆".to_string());
        }
        if rng.gen_bool(0.15) {
            tags.push("有限空间".to_string());
        }
        let mut e = EnterpriseInput {
            name,
            uscc: code,
            district_id: brigade.id.clone(),
            town_id: towns.choose(&mut rng).map(|t| t.id.clone()),
            soe_group_id: if rng.gen_bool(0.06) {
                org.soe_groups.choose(&mut rng).map(|s| s.id.clone())
            } else {
                None
            },
            address: format!(
                "上海市{}{}{}号",
                brigade.name.split("应急").next().unwrap_or(""),
                street,
                rng.gen_range(1..2000)
            ),
            lon: Some(lon),
            lat: Some(lat),
            legal_representative: person(&mut rng),
            principal_name: person(&mut rng),
            principal_phone: format!(
                "1{}{:09}",
                [3, 5, 8, 9][rng.gen_range(0..4)],
                rng.gen_range(0..1_000_000_000u64)
            ),
            ownership_type: OWNERSHIP_TYPES[[2, 3, 3, 3, 4, 0, 7, 6][rng.gen_range(0..8)]]
                .to_string(),
            industry_code: kind.industry_code.clone(),
            sector: kind.sector.clone(),
            key_unit_years: years,
            status: [
                "operating",
                "operating",
                "operating",
                "operating",
                "operating",
                "operating",
                "suspended",
                "closed",
            ][rng.gen_range(0..8)]
            .to_string(),
            tags,
        };
        e.normalize();
        debug_assert!(e.validate().is_empty(), "{:?}", e.validate());
        out.push(e);
    }
    out
}

/// Insert enterprises in batches of 1,000 (one transaction each).
pub async fn insert_enterprises(db: &Db, list: &[EnterpriseInput]) -> anyhow::Result<()> {
    for chunk in list.chunks(1000) {
        db.enterprises()
            .insert_many(chunk, &audit("enterprise.import"), "enterprise.import")
            .await?;
    }
    db.enterprises().refresh_statistics().await?;
    Ok(())
}

/// Officers: `per_district` in each brigade, with certificate numbers `SH<code>-<n>`.
pub fn officers(org: &DemoOrg, per_district: usize, seed: u64) -> Vec<OfficerInput> {
    let names: Names = serde_json::from_str(NAMES_JSON).expect("names.json parses");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (b, _, _, _) in &org.districts {
        for i in 0..per_district {
            out.push(OfficerInput {
                name: format!(
                    "{}{}",
                    names.surnames.choose(&mut rng).expect("s"),
                    names.given_names.choose(&mut rng).expect("g")
                ),
                certificate_no: format!("SH{}-{:04}", b.code, i + 1),
                org_unit_id: b.id.clone(),
                phone: format!("139{:08}", rng.gen_range(0..100_000_000u64)),
                account_id: None,
                status: "active".into(),
            });
        }
    }
    out
}

/// A seeded demo login.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    /// Username.
    pub username: String,
    /// Role code.
    pub role: String,
    /// Org unit name.
    pub org_unit: String,
}

/// Seed everything; returns the logins (all with [`DEMO_PASSWORD`]).
pub async fn seed(
    db: &Db,
    cfg: &Config,
    n_enterprises: usize,
) -> anyhow::Result<(DemoOrg, Vec<DemoLogin>)> {
    let org = seed_org(db).await?;
    insert_enterprises(db, &enterprises(&org, n_enterprises, 2026)).await?;
    let hash = crate::auth::password::hash(&cfg.auth, DEMO_PASSWORD).await?;
    // One phone-app account per district, bound to the district's first officer.
    let mut officer_list = officers(&org, 8, 2026);
    for (d, (b, _, _, _)) in org.districts.iter().enumerate() {
        let acc = db
            .accounts()
            .create(
                &NewAccount {
                    username: format!("app{}", d + 1),
                    display_name: format!("{}执法终端", b.name),
                    password_hash: hash.clone(),
                    role: "officer".into(),
                    org_unit_id: b.id.clone(),
                    must_change_password: false,
                },
                &audit("account.create"),
            )
            .await?;
        officer_list[d * 8].account_id = Some(acc.id);
    }
    db.officers()
        .insert_many(&officer_list, &audit("officer.import"), "officer.import")
        .await?;
    seed_dispatch(db, &org).await?;
    seed_recorders(db, cfg, &org).await?;
    let huangpu = &org.districts[0].0;
    let pudong = org
        .districts
        .iter()
        .find(|d| d.0.code == "310115")
        .map(|d| &d.0)
        .unwrap_or(huangpu);
    let plan: Vec<(&str, &str, &str, &OrgUnit)> = vec![
        ("admin", "系统管理员", "admin", &org.corps),
        ("leader", "总队领导", "corps_leader", &org.corps),
        ("operator", "指挥中心值班员", "operator", &org.corps),
        ("reviewer", "视频审核员", "reviewer", &org.corps),
        ("hp_head", "黄浦区大队负责人", "brigade_head", huangpu),
        ("hp_squad", "黄浦区执法组负责人", "squad_leader", huangpu),
        ("hp_stats", "黄浦区数据统计员", "statistician", huangpu),
        ("hp_clerk", "黄浦区工单维护员", "clerk", huangpu),
        ("hp_officer", "黄浦区执法人员", "officer", huangpu),
        ("pd_head", "浦东新区大队负责人", "brigade_head", pudong),
        (
            "soe_user",
            "国有集团安全管理员",
            "soe_user",
            &org.soe_groups[0],
        ),
    ];
    let mut logins = Vec::new();
    let mut head_id = None;
    for (u, name, role, unit) in plan {
        let acc = db
            .accounts()
            .create(
                &NewAccount {
                    username: u.into(),
                    display_name: name.into(),
                    password_hash: hash.clone(),
                    role: role.into(),
                    org_unit_id: unit.id.clone(),
                    must_change_password: false,
                },
                &audit("account.create"),
            )
            .await?;
        if u == "hp_head" {
            head_id = Some(acc.id.clone());
        }
        logins.push(DemoLogin {
            username: u.into(),
            role: role.into(),
            org_unit: unit.name.clone(),
        });
    }
    if let Some(applicant) = head_id {
        db.accounts()
            .apply(
                &NewApplication {
                    username: "hp_officer2".into(),
                    display_name: "黄浦区新任执法人员".into(),
                    role: "officer".into(),
                    org_unit_id: huangpu.id.clone(),
                    reason: "新入职执法人员，需开通执法终端账号".into(),
                    applicant_id: applicant,
                },
                &audit("account_application.file"),
            )
            .await?;
    }
    Ok((org, logins))
}

/// Demo vehicles per district.
pub const VEHICLES_PER_DISTRICT: u64 = 3;
/// Phone number of the first demo vehicle terminal.
pub const DEMO_PHONE_BASE: u64 = 13_900_000_000;

/// Vehicles with JT/T 808 terminals (three per district) and an approximate outline of each
/// district as a geofence (a 16-gon around its centre: the demo has no surveyed boundaries).
pub async fn seed_dispatch(db: &Db, org: &DemoOrg) -> anyhow::Result<()> {
    for (d, (b, _, center, radius)) in org.districts.iter().enumerate() {
        for k in 0..VEHICLES_PER_DISTRICT {
            let n = d as u64 * VEHICLES_PER_DISTRICT + k;
            db.vehicles()
                .insert(
                    &shouhu_storage::vehicles::VehicleInput {
                        plate: format!("沪A·E{:04}", 1001 + n),
                        org_unit_id: b.id.clone(),
                        terminal_phone: Some((DEMO_PHONE_BASE + n).to_string()),
                        status: "active".into(),
                    },
                    &audit("vehicle.create"),
                )
                .await?;
        }
        let r = radius * 2.5;
        let ring: Vec<[f64; 2]> = (0..=16)
            .map(|i| {
                let a = f64::from(i % 16) / 16.0 * std::f64::consts::TAU;
                let dlat = r * a.cos() / 111_195.0;
                let dlon = r * a.sin() / (111_195.0 * center[1].to_radians().cos());
                [center[0] + dlon, center[1] + dlat]
            })
            .collect();
        let now = SystemClock.now_ms();
        db.geofences()
            .insert(
                &shouhu_storage::geofences::Geofence {
                    id: String::new(),
                    name: b.name.replace("应急管理局执法大队", ""),
                    kind: "district".into(),
                    org_unit_id: b.id.clone(),
                    enterprise_id: None,
                    geometry: Some(
                        serde_json::json!({"type": "Polygon", "coordinates": [ring]}).to_string(),
                    ),
                    center_lat: None,
                    center_lon: None,
                    radius_m: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                },
                &audit("geofence.create"),
            )
            .await?;
    }
    Ok(())
}

/// Password of the demo's recorders.
pub const DEMO_RECORDER_PASSWORD: &str = "Recorder#2026";
/// Device id of the demo's first recorder; one per district follows.
pub const DEMO_RECORDER_BASE: &str = "31010000001320000001";

/// One body-worn recorder per district, bound to the district's second officer (the first
/// carries the phone app).
async fn seed_recorders(db: &Db, cfg: &Config, org: &DemoOrg) -> anyhow::Result<()> {
    let officers = db.officers().all_active().await?;
    let ids = crate::simulate::recorder_ids(DEMO_RECORDER_BASE, org.districts.len() as u64)?;
    for ((b, _, _, _), id) in org.districts.iter().zip(ids) {
        let mut mine = officers
            .iter()
            .filter(|o| o.org_unit_id == b.id && o.account_id.is_none());
        let officer = mine.next().map(|o| o.id.clone());
        let input = shouhu_storage::recorders::RecorderInput {
            device_id: id.clone(),
            name: format!("执法记录仪{}", &id[16..]),
            org_unit_id: b.id.clone(),
            officer_id: officer,
            status: "active".into(),
            model: Some("DSJ-SIM".into()),
            channels: 1,
            password: None,
        };
        let secret = crate::sip::ha1_change(cfg, &id, Some(DEMO_RECORDER_PASSWORD));
        db.recorders()
            .insert(&input, &secret, &audit("recorder.create"))
            .await?;
    }
    Ok(())
}

/// Start the demo's body-worn recorders over GB/T 28181, walking around their districts.
pub fn start_recorders(
    org: &DemoOrg,
    sip: std::net::SocketAddr,
    cfg: &Config,
    drop_first_download: bool,
) {
    let mut rng = StdRng::seed_from_u64(28181);
    let ids = crate::simulate::recorder_ids(DEMO_RECORDER_BASE, org.districts.len() as u64)
        .expect("valid base");
    let last = org.districts.len().saturating_sub(1);
    let specs = org
        .districts
        .iter()
        .zip(ids)
        .enumerate()
        .map(
            |(d, ((_, _, center, radius), device_id))| crate::simulate_gb::RecorderSpec {
                device_id,
                password: DEMO_RECORDER_PASSWORD.into(),
                route: crate::simulate::Route::new(
                    (center[1], center[0]),
                    *radius,
                    rng.gen_range(3.0..6.0),
                    300 + d as u64,
                ),
                // The last one is a newer camera: H.265 with AAC sound (browsers get both
                // transcoded); the others send H.264 with G.711 A-law.
                media: (d == last).then(|| crate::simulate_gb::MediaProfile {
                    video: shouhu_media::ps::Codec::H265,
                    audio: Some(shouhu_media::ps::Codec::Aac),
                    ..Default::default()
                }),
            },
        )
        .collect();
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    crate::simulate_gb::start(
        specs,
        &crate::simulate_gb::GbTarget {
            sip,
            platform_id: cfg.sip.platform_id.clone(),
            domain: cfg.sip.domain.clone(),
            keepalive: std::time::Duration::from_secs(u64::from(cfg.sip.keepalive_interval_secs)),
            position: std::time::Duration::from_secs(5),
            expires_secs: 3600,
            media: Default::default(),
            drop_first_download,
        },
        rx,
    );
}

/// Start the demo's simulated vehicles (over JT/T 808) and officers' phone apps (over the
/// WebSocket), each moving around its district.
pub fn start_simulation(org: &DemoOrg, jt808: std::net::SocketAddr, http: String) {
    use crate::simulate::{AppSpec, Route, TerminalSpec};
    let mut terminals = Vec::new();
    let mut apps = Vec::new();
    let mut rng = StdRng::seed_from_u64(2026);
    for (d, (_, _, center, radius)) in org.districts.iter().enumerate() {
        let home = (center[1], center[0]);
        for k in 0..VEHICLES_PER_DISTRICT {
            let n = d as u64 * VEHICLES_PER_DISTRICT + k;
            terminals.push(TerminalSpec {
                phone: DEMO_PHONE_BASE + n,
                plate: format!("沪A·E{:04}", 1001 + n),
                route: Route::new(home, radius * 2.0, rng.gen_range(25.0..45.0), n),
            });
        }
        apps.push(AppSpec {
            username: format!("app{}", d + 1),
            password: DEMO_PASSWORD.into(),
            route: Route::new(home, *radius, rng.gen_range(4.0..6.0), 100 + d as u64),
        });
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    // The simulation runs for the life of the process.
    std::mem::forget(tx);
    let target = crate::simulate::SimTarget {
        jt808,
        http,
        interval: std::time::Duration::from_secs(1),
        app_interval: std::time::Duration::from_secs(3),
    };
    // The last vehicle's terminal was replaced: the old one registered (and holds the auth code),
    // the new one has none, so its registrations are refused (result 3) until a device manager
    // releases the vehicle on 终端绑定; then it registers, authenticates and reports.
    let replaced = terminals.pop();
    let stats = crate::simulate::start(terminals, apps, &target, None, rx.clone());
    if let Some(spec) = replaced {
        tokio::spawn(async move {
            let old = format!("R{:06}", spec.phone % 1_000_000);
            // The simulation starts before the server listens: try until it answers.
            for _ in 0..60 {
                match crate::simulate::register_once(jt808, spec.phone, &spec.plate, &old).await {
                    Ok(0) => break,
                    Ok(r) => {
                        tracing::warn!(
                            result = r,
                            "demo: the replaced terminal's first registration was refused"
                        );
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "demo: the replaced terminal's first registration failed");
                        break;
                    }
                }
            }
            crate::simulate::run_terminal(spec, jt808, target.interval, stats, None, rx).await;
        });
    }
}

/// `shouhu demo`: a fresh SQLite database under `<data_dir>/demo`, seeded, then served.
pub async fn run(mut cfg: Config, args: DemoArgs) -> anyhow::Result<()> {
    let dir = cfg.server.data_dir.join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    cfg.server.data_dir = dir.clone();
    cfg.database.url = crate::config::Secret(Db::sqlite_url_in(&dir));
    if cfg.recording.segment_secs == crate::config::RecordingConfig::default().segment_secs {
        // Footage to play within seconds of starting the demo (a configured length is kept).
        cfg.recording.segment_secs = 10;
    }
    if cfg.jt808.enabled && cfg.jt808.listen.port() == 0 {
        // The simulator must know the port before the server binds it: take a free one.
        let probe = std::net::TcpListener::bind(cfg.jt808.listen)?;
        cfg.jt808.listen = probe.local_addr()?;
    }
    if cfg.sip.enabled && cfg.sip.listen.port() == 0 {
        // Likewise for SIP: a port free on UDP and TCP.
        for _ in 0..20 {
            let udp = std::net::UdpSocket::bind(cfg.sip.listen)?;
            let a = udp.local_addr()?;
            if std::net::TcpListener::bind(a).is_ok() {
                cfg.sip.listen = a;
                break;
            }
        }
    }
    let state = crate::server::build_state(cfg.clone(), Arc::new(SystemClock)).await?;
    let started = std::time::Instant::now();
    let (org, logins) = seed(&state.db, &cfg, args.enterprises).await?;
    state.hub.refresh_registry().await?;
    state.hub.reload_fences().await?;
    crate::sip::load_registry(&state.db, &state.sip, &cfg).await?;
    let work = enforcement::seed(&state.db, &org, SystemClock.now_ms(), 2026).await?;
    let case_files = enforcement::seed_case_files(&state, SystemClock.now_ms()).await?;
    tracing::info!(
        enterprises = args.enterprises,
        inspections = work.inspections,
        hazards = work.hazards,
        cases = work.cases,
        work_orders = work.work_orders,
        plans = work.plans,
        case_files,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data seeded"
    );
    if args.seed_only {
        return Ok(());
    }
    let http = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on http.listen {}: {e}", cfg.http.listen))?;
    let metrics = if cfg.metrics.enabled {
        tokio::net::TcpListener::bind(cfg.metrics.listen).await.ok()
    } else {
        None
    };
    let addr = http.local_addr()?;
    if !args.no_simulation && cfg.jt808.enabled {
        let jt = cfg.jt808.listen;
        let jt = std::net::SocketAddr::new(
            if jt.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                jt.ip()
            },
            jt.port(),
        );
        start_simulation(&org, jt, format!("http://{addr}"));
    }
    if !args.no_simulation && cfg.sip.enabled {
        let l = cfg.sip.listen;
        let sip = std::net::SocketAddr::new(
            if l.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                l.ip()
            },
            l.port(),
        );
        start_recorders(&org, sip, &cfg, args.drop_first_downloads);
        if args.always_on_recorders > 0 {
            let mut all = state
                .db
                .recorders()
                .list(&shouhu_storage::org_units::Scope::All)
                .await?;
            all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
            let audit = shouhu_storage::audit::AuditEntry::new(
                &shouhu_storage::audit::Actor {
                    account_id: None,
                    username: Some("demo".into()),
                    ip: None,
                },
                "recorder.record_always",
                SystemClock.now_ms(),
            );
            // The last recorder is the H.265 camera, which browsers cannot play back: skip it.
            for r in all.iter().rev().skip(1).take(args.always_on_recorders) {
                state
                    .db
                    .recordings()
                    .set_always(
                        &shouhu_storage::org_units::Scope::All,
                        &r.device_id,
                        true,
                        &audit,
                    )
                    .await?;
            }
        }
    }
    println!();
    println!("  守护 Shouhu demo is running: http://{addr}/");
    println!("  API docs: http://{addr}/api-docs/   health: http://{addr}/healthz");
    if let Some(m) = &metrics {
        println!("  metrics: http://{}/metrics", m.local_addr()?);
    }
    println!("  data: {} (fresh SQLite database)", dir.display());
    println!(
        "  dispatch screen: http://{addr}/#/dispatch  (JT/T 808 on {}, GB/T 28181 SIP on {})",
        cfg.jt808.listen, cfg.sip.listen
    );
    println!();
    println!("  logins (password {DEMO_PASSWORD}):");
    for l in &logins {
        println!("    {:<10} {:<14} {}", l.username, l.role, l.org_unit);
    }
    println!();
    println!("  Ctrl-C stops.");
    crate::server::serve(state, http, metrics, crate::server::shutdown_signal()).await
}

//! Personal data sealed at rest (issue 21 item 6): officers' and enterprise principals' phones
//! sealed with SM4-GCM, found by the full number or the last four digits through keyed SM3
//! indexes, absent from the SQLite file in clear, sealed on upgrade, and carried to a new key by
//! the rotation pass. Each test runs on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter};
use shouhu_storage::cases::CaseInput;
use shouhu_storage::crypto::FieldCipher;
use shouhu_storage::enterprises::{EnterpriseFilter, EnterpriseInput};
use shouhu_storage::officers::{OfficerFilter, OfficerInput};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit, Scope};
use shouhu_storage::{uscc, Db, PageRequest, StorageError};

const OFFICER_PHONE: &str = "13812345678";
const OTHER_PHONE: &str = "13987655678";
const PRINCIPAL_PHONE: &str = "021-6123 4567";
/// Another key, for rotation.
const NEW_KEY: &str = "f0e0d0c0b0a090807060504030201000";

fn audit(action: &str) -> AuditEntry {
    let actor = Actor {
        account_id: None,
        username: Some("tester".into()),
        ip: None,
    };
    AuditEntry::new(&actor, action, 1_700_000_000_000)
}

async fn brigade(db: &Db) -> OrgUnit {
    let o = db.org_units();
    let corps = o
        .create(
            &NewOrgUnit {
                parent_id: None,
                kind: OrgKind::Corps,
                name: "总队".into(),
                code: "310000".into(),
            },
            &audit("org.create"),
        )
        .await
        .unwrap();
    o.create(
        &NewOrgUnit {
            parent_id: Some(corps.id),
            kind: OrgKind::Brigade,
            name: "黄浦区大队".into(),
            code: "310101".into(),
        },
        &audit("org.create"),
    )
    .await
    .unwrap()
}

fn officer(name: &str, cert: &str, phone: &str, unit: &OrgUnit) -> OfficerInput {
    let mut i = OfficerInput {
        name: name.into(),
        certificate_no: cert.into(),
        org_unit_id: unit.id.clone(),
        phone: phone.into(),
        account_id: None,
        status: "active".into(),
    };
    i.normalize();
    assert!(i.validate().is_empty());
    i
}

fn enterprise(unit: &OrgUnit, phone: &str) -> EnterpriseInput {
    let first = "91310000123456789";
    let mut e = EnterpriseInput {
        name: "黄浦钢结构有限公司".into(),
        uscc: format!("{first}{}", uscc::check_char(first).unwrap()),
        district_id: unit.id.clone(),
        address: "中山东一路1号".into(),
        principal_name: "李四".into(),
        principal_phone: phone.into(),
        ownership_type: "私营".into(),
        industry_code: "C3311".into(),
        sector: "05".into(),
        status: "operating".into(),
        ..Default::default()
    };
    e.normalize();
    assert!(e.validate().is_empty(), "{:?}", e.validate());
    e
}

async fn officer_hits(db: &Db, q: &str) -> Vec<String> {
    let f = OfficerFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    let p = db
        .officers()
        .list(&Scope::All, &f, PageRequest::new(None, None))
        .await
        .unwrap();
    let mut names: Vec<String> = p.items.into_iter().map(|o| o.name).collect();
    names.sort();
    names
}

async fn enterprise_hits(db: &Db, phone: &str) -> Result<i64, StorageError> {
    let f = EnterpriseFilter {
        phone: Some(phone.into()),
        ..Default::default()
    };
    Ok(db
        .enterprises()
        .list(&Scope::All, &f, PageRequest::new(None, None))
        .await?
        .total)
}

/// Two officers and an enterprise with phones, one officer without.
async fn fill(db: &Db) -> (OrgUnit, Vec<String>, String) {
    let unit = brigade(db).await;
    let officers = db
        .officers()
        .insert_many(
            &[
                officer("王五", "HP-0001", "138-1234-5678", &unit),
                officer("赵六", "HP-0002", OTHER_PHONE, &unit),
                officer("钱七", "HP-0003", "", &unit),
            ],
            &audit("officer.create"),
            "officer.create",
        )
        .await
        .unwrap();
    let e = db
        .enterprises()
        .create(
            &enterprise(&unit, PRINCIPAL_PHONE),
            &audit("enterprise.create"),
        )
        .await
        .unwrap();
    (unit, officers, e.id)
}

both_engines!(
    phones_are_sealed_and_found_by_full_number_or_last_four,
    |db: Db| async move {
        let (unit, ids, ent) = fill(&db).await;
        let o = db.officers().get(&Scope::All, &ids[0]).await.unwrap();
        assert_eq!(o.phone, "138-1234-5678");
        assert_eq!(
            db.officers().get(&Scope::All, &ids[2]).await.unwrap().phone,
            ""
        );
        let (sealed, index, last4) = db.officers().stored_phone(&ids[0]).await.unwrap();
        assert!(sealed.starts_with("v2:"), "{sealed}");
        assert!(!sealed.contains("5678"));
        assert_eq!(index.as_deref().map(str::len), Some(32));
        assert_ne!(index, last4);
        assert_eq!(
            db.officers().stored_phone(&ids[2]).await.unwrap(),
            (String::new(), None, None)
        );
        let e = db.enterprises().get(&Scope::All, &ent).await.unwrap();
        assert_eq!(e.principal_phone, PRINCIPAL_PHONE);
        let (sealed, _, _) = db.enterprises().stored_phone(&ent).await.unwrap();
        assert!(
            sealed.starts_with("v2:") && !sealed.contains("4567"),
            "{sealed}"
        );

        // The full number in any written form, or the last four digits.
        assert_eq!(officer_hits(&db, OFFICER_PHONE).await, ["王五"]);
        assert_eq!(officer_hits(&db, "+86 138 1234 5678").await, ["王五"]);
        assert_eq!(officer_hits(&db, "5678").await, ["王五", "赵六"]);
        // Other parts of a number find nothing: the database cannot compare them.
        assert!(officer_hits(&db, "1234").await.is_empty());
        assert!(officer_hits(&db, "138123").await.is_empty());
        // Names and certificates are still searched as text.
        assert_eq!(officer_hits(&db, "HP-0003").await, ["钱七"]);
        assert_eq!(enterprise_hits(&db, "02161234567").await.unwrap(), 1);
        assert_eq!(enterprise_hits(&db, "4567").await.unwrap(), 1);
        assert_eq!(enterprise_hits(&db, "5678").await.unwrap(), 0);
        assert_eq!(enterprise_hits(&db, "6123").await.unwrap(), 0);
        match enterprise_hits(&db, "13x").await {
            Err(StorageError::Invalid { field, .. }) => assert_eq!(field, "phone"),
            other => panic!("a phone filter of letters is invalid, not {other:?}"),
        }

        // A changed phone: found by the new number only; the audit row says it changed and
        // carries neither number.
        let mut i = officer("王五", "HP-0001", "13600001111", &unit);
        i.normalize();
        db.officers()
            .update(
                &Scope::All,
                &ids[0],
                o.version,
                &i,
                &audit("officer.update"),
            )
            .await
            .unwrap();
        assert!(officer_hits(&db, OFFICER_PHONE).await.is_empty());
        assert_eq!(officer_hits(&db, "13600001111").await, ["王五"]);
        assert_eq!(officer_hits(&db, "1111").await, ["王五"]);
        let mut ei = enterprise(&unit, "13700002222");
        ei.normalize();
        db.enterprises()
            .update(
                &Scope::All,
                &ent,
                e.version,
                &ei,
                &audit("enterprise.update"),
            )
            .await
            .unwrap();
        assert_eq!(enterprise_hits(&db, "2222").await.unwrap(), 1);
        let rows = db
            .audit()
            .query(&AuditFilter::default(), PageRequest::new(None, Some(100)))
            .await
            .unwrap();
        let updates: Vec<String> = rows
            .items
            .iter()
            .filter(|r| r.action.ends_with(".update"))
            .map(|r| r.details.clone())
            .collect();
        assert_eq!(updates.len(), 2, "{updates:?}");
        for d in &updates {
            for digits in ["5678", "1111", "4567", "2222"] {
                assert!(!d.contains(digits), "audit details hold a phone: {d}");
            }
        }
        assert!(
            updates.iter().any(|d| d.contains("\"phone_changed\":true")),
            "{updates:?}"
        );
        assert!(
            updates.iter().any(|d| d.contains("principal_phone")),
            "{updates:?}"
        );
    }
);

/// Every file of the SQLite database — the main file, its WAL, its shared memory.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_sqlite_file_holds_no_phone_in_clear() {
    let t = common::sqlite().await;
    let (_, ids, _) = fill(&t.db).await;
    t.db.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .unwrap();
    let bytes = database_bytes(t.dir().unwrap());
    // The scan sees what is stored in clear: the certificate number and the principal's name.
    assert!(holds(&bytes, "HP-0002"));
    assert!(holds(&bytes, "李四"));
    for phone in [
        "13812345678",
        "138-1234-5678",
        OTHER_PHONE,
        "61234567",
        PRINCIPAL_PHONE,
    ] {
        assert!(!holds(&bytes, phone), "{phone} is in the database file");
    }
    assert!(!ids.is_empty());
}

/// Migrations 0001–0019 only: the schema of a database from before phones were sealed.
async fn migrate_before_sealing(t: &common::TestDb, engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < "0020" {
            std::fs::copy(&p, dir.path().join(&name)).unwrap();
        }
    }
    let m = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    if engine == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&t.url).await.unwrap();
        m.run(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&t.url).await.unwrap();
        m.run(&pool).await.unwrap();
        pool.close().await;
    }
}

/// A database written before phones were sealed is upgraded: migration 0020 and the sealing
/// pass leave no phone in clear, and every phone is found again.
async fn upgrade(t: common::TestDb, engine: &str) {
    migrate_before_sealing(&t, engine).await;
    let db = &t.db;
    let unit = brigade(db).await;
    db.execute_raw(&format!(
        "INSERT INTO officers (id, name, certificate_no, org_unit_id, phone, account_id, status, created_at_ms, updated_at_ms, version) \
         VALUES ('o1', '王五', 'HP-0001', '{u}', '{OFFICER_PHONE}', NULL, 'active', 1, 1, 1), \
                ('o2', '钱七', 'HP-0003', '{u}', '', NULL, 'active', 1, 1, 1)",
        u = unit.id
    ))
    .await
    .unwrap();
    let e = enterprise(&unit, PRINCIPAL_PHONE);
    db.execute_raw(&format!(
        "INSERT INTO enterprises (id, name, uscc, district_id, address, legal_representative, principal_name, principal_phone, \
         ownership_type, industry_code, sector, status, tags, search_text, created_at_ms, updated_at_ms, version) \
         VALUES ('e1', '{}', '{}', '{}', '', '', '李四', '{PRINCIPAL_PHONE}', '私营', 'C3311', '05', 'operating', '[]', '', 1, 1, 1)",
        e.name, e.uscc, unit.id
    ))
    .await
    .unwrap();
    db.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)").await.ok();
    if let Some(dir) = t.dir() {
        assert!(
            holds(&database_bytes(dir), OFFICER_PHONE),
            "the old file holds it in clear"
        );
    }

    db.migrate().await.unwrap();
    assert_eq!(
        db.seal_personal_data(&audit("personal_data.seal"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        db.seal_personal_data(&audit("personal_data.seal"))
            .await
            .unwrap(),
        0,
        "nothing left in clear"
    );
    let o = db.officers().get(&Scope::All, "o1").await.unwrap();
    assert_eq!(
        (o.phone.as_str(), o.version),
        (OFFICER_PHONE, 1),
        "a user sees no change"
    );
    assert_eq!(
        db.officers().get(&Scope::All, "o2").await.unwrap().phone,
        ""
    );
    assert!(db
        .officers()
        .stored_phone("o1")
        .await
        .unwrap()
        .0
        .starts_with("v2:"));
    assert_eq!(
        db.enterprises()
            .get(&Scope::All, "e1")
            .await
            .unwrap()
            .principal_phone,
        PRINCIPAL_PHONE
    );
    assert_eq!(officer_hits(db, "5678").await, ["王五"]);
    assert_eq!(enterprise_hits(db, "02161234567").await.unwrap(), 1);
    if let Some(dir) = t.dir() {
        let bytes = database_bytes(dir);
        assert!(holds(&bytes, "HP-0001"));
        for phone in [OFFICER_PHONE, PRINCIPAL_PHONE] {
            assert!(
                !holds(&bytes, phone),
                "{phone} survived the upgrade in the file"
            );
        }
    }
    let sealed = db
        .audit()
        .query(
            &AuditFilter {
                action: Some("personal_data.seal".into()),
                ..Default::default()
            },
            PageRequest::new(None, None),
        )
        .await
        .unwrap();
    assert_eq!(sealed.total, 1, "one audit row for the pass that sealed");
}

#[tokio::test]
async fn upgrade_seals_clear_phones_sqlite() {
    upgrade(common::sqlite_unmigrated().await, "sqlite").await;
}

#[tokio::test]
async fn upgrade_seals_clear_phones_postgres() {
    if let Some(t) = common::postgres_unmigrated().await {
        upgrade(t, "postgres").await;
    }
}

/// Everything `fill` and the case wrote reads back, and phones are found.
async fn check(d: &Db, officer: &str, ent: &str, case: &str) {
    assert_eq!(
        d.officers().get(&Scope::All, officer).await.unwrap().phone,
        "138-1234-5678"
    );
    assert_eq!(
        d.enterprises()
            .get(&Scope::All, ent)
            .await
            .unwrap()
            .principal_phone,
        PRINCIPAL_PHONE
    );
    let c = d.cases().get(&Scope::All, case).await.unwrap();
    assert_eq!(
        (
            c.party_id_number.as_str(),
            c.party_phone.as_str(),
            c.proposed_fine_cents
        ),
        ("31010119800101123X", "13500001234", Some(3_000_000))
    );
    assert_eq!(officer_hits(d, OFFICER_PHONE).await, ["王五"]);
    assert_eq!(officer_hits(d, "5678").await, ["王五", "赵六"]);
    assert_eq!(enterprise_hits(d, "4567").await.unwrap(), 1);
}

both_engines!(
    key_rotation_keeps_old_rows_readable_and_rewrites_them,
    |db: Db| async move {
        let (unit, ids, ent) = fill(&db).await;
        let case = db
            .cases()
            .create(
                &unit.id,
                &CaseInput {
                    enterprise_id: ent.clone(),
                    inspection_ids: vec![],
                    title: "未按规定开展安全生产教育培训案".into(),
                    violation: "未对从业人员进行安全生产教育和培训".into(),
                    responsible_person: "李四".into(),
                    party_id_number: "31010119800101123X".into(),
                    party_phone: "13500001234".into(),
                    proposed_fine_cents: Some(3_000_000),
                },
                &audit("case.create"),
            )
            .await
            .unwrap();
        let old = FieldCipher::from_hex(common::TEST_FIELD_KEY).unwrap();
        let rotated = db.clone().with_field_cipher(Arc::new(
            FieldCipher::from_hex(NEW_KEY)
                .unwrap()
                .with_previous_hex([common::TEST_FIELD_KEY])
                .unwrap(),
        ));
        let new_only = db
            .clone()
            .with_field_cipher(Arc::new(FieldCipher::from_hex(NEW_KEY).unwrap()));

        // The new key alone cannot read what the old one sealed, and says which key it needs.
        match new_only.officers().get(&Scope::All, &ids[0]).await {
            Err(StorageError::Corrupt(m)) => assert!(m.contains(old.key_id()), "{m}"),
            other => panic!("expected an error naming the old key, got {other:?}"),
        }
        // With the old key as a previous one, everything reads and is found as before.
        check(&rotated, &ids[0], &ent, &case).await;

        let report = rotated
            .rotate_field_key(&audit("personal_data.rotate_key"))
            .await
            .unwrap();
        let count = |c: &str| report.columns.iter().find(|(n, _)| n == c).unwrap().1;
        assert_eq!(count("officers.phone_sealed"), 2, "{report:?}");
        assert_eq!(count("enterprises.principal_phone_sealed"), 1);
        assert_eq!(count("cases.party_id_sealed"), 1);
        assert_eq!(count("cases.party_phone_sealed"), 1);
        assert_eq!(count("cases.proposed_fine_sealed"), 1);
        assert_eq!(report.total(), 6);

        // Now the new key alone reads and finds everything; the old one opens nothing.
        check(&new_only, &ids[0], &ent, &case).await;
        assert!(db.officers().get(&Scope::All, &ids[0]).await.is_err());
        assert!(db.cases().get(&Scope::All, &case).await.is_err());
        assert!(officer_hits(&db, "5678").await.is_empty());
        // A second run has nothing left to do.
        assert_eq!(
            rotated
                .rotate_field_key(&audit("personal_data.rotate_key"))
                .await
                .unwrap()
                .total(),
            0
        );
    }
);

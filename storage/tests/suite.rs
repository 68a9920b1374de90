//! The storage behaviour suite: every test runs on SQLite and on PostgreSQL.

mod common;

use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter};
use shouhu_storage::enterprises::{EnterpriseFilter, EnterpriseInput};
use shouhu_storage::officers::{OfficerFilter, OfficerInput};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit, Scope};
use shouhu_storage::sessions::NewSession;
use shouhu_storage::{uscc, Db, PageRequest, StorageError};

fn actor() -> Actor {
    Actor {
        account_id: None,
        username: Some("tester".into()),
        ip: Some("127.0.0.1".into()),
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(&actor(), action, 1_700_000_000_000)
}

struct Tree {
    corps: OrgUnit,
    huangpu: OrgUnit,
    xuhui: OrgUnit,
    town: OrgUnit,
    soe: OrgUnit,
}

async fn tree(db: &Db) -> Tree {
    let o = db.org_units();
    let mk = |parent: Option<&OrgUnit>, kind, name: &str, code: &str| NewOrgUnit {
        parent_id: parent.map(|p| p.id.clone()),
        kind,
        name: name.into(),
        code: code.into(),
    };
    let corps = o
        .create(
            &mk(None, OrgKind::Corps, "总队", "310000"),
            &audit("org.create"),
        )
        .await
        .unwrap();
    let huangpu = o
        .create(
            &mk(Some(&corps), OrgKind::Brigade, "黄浦区大队", "310101"),
            &audit("org.create"),
        )
        .await
        .unwrap();
    let xuhui = o
        .create(
            &mk(Some(&corps), OrgKind::Brigade, "徐汇区大队", "310104"),
            &audit("org.create"),
        )
        .await
        .unwrap();
    let town = o
        .create(
            &mk(Some(&huangpu), OrgKind::Town, "外滩街道", "310101001"),
            &audit("org.create"),
        )
        .await
        .unwrap();
    let soe = o
        .create(
            &mk(Some(&corps), OrgKind::SoeGroup, "华谊集团", "SOE-1"),
            &audit("org.create"),
        )
        .await
        .unwrap();
    Tree {
        corps,
        huangpu,
        xuhui,
        town,
        soe,
    }
}

fn code(seed: u32) -> String {
    let first = format!("9131{:013}", seed);
    let first: String = first.chars().take(17).collect();
    format!("{first}{}", uscc::check_char(&first).unwrap())
}

fn enterprise(name: &str, seed: u32, district: &OrgUnit) -> EnterpriseInput {
    let mut e = EnterpriseInput {
        name: name.into(),
        uscc: code(seed),
        district_id: district.id.clone(),
        address: "上海市某路1号".into(),
        lon: Some(121.48),
        lat: Some(31.23),
        legal_representative: "张三".into(),
        principal_name: "李四".into(),
        principal_phone: "13800138000".into(),
        ownership_type: "私营".into(),
        industry_code: "C3311".into(),
        sector: "05".into(),
        key_unit_years: vec![2026],
        status: "operating".into(),
        tags: vec!["粉尘涉爆".into()],
        ..Default::default()
    };
    e.normalize();
    assert!(e.validate().is_empty(), "{:?}", e.validate());
    e
}

both_engines!(
    migrations_are_idempotent_and_keep_data,
    |db: Db| async move {
        let t = tree(&db).await;
        db.migrate().await.unwrap();
        db.migrate().await.unwrap();
        assert_eq!(db.org_units().get(&t.corps.id).await.unwrap().name, "总队");
        // Built-in items are seeded once: 25 key items + 7 principal duties.
        let items = db
            .inspection_items()
            .list(None, None, None, PageRequest::new(None, Some(100)))
            .await
            .unwrap();
        assert_eq!(items.total, 32);
    }
);

both_engines!(org_tree_nests_and_scopes, |db: Db| async move {
    let t = tree(&db).await;
    let o = db.org_units();
    assert!(o.is_within(&t.corps.id, &t.town.id).await.unwrap());
    assert!(o.is_within(&t.huangpu.id, &t.town.id).await.unwrap());
    assert!(!o.is_within(&t.xuhui.id, &t.town.id).await.unwrap());
    let bad = o
        .create(
            &NewOrgUnit {
                parent_id: Some(t.town.id.clone()),
                kind: OrgKind::Brigade,
                name: "x".into(),
                code: "x".into(),
            },
            &audit("org.create"),
        )
        .await;
    assert!(
        matches!(bad, Err(StorageError::Invalid { ref field, .. }) if field == "parent_id"),
        "{bad:?}"
    );
    let brigade = o
        .ancestor_of_kind(&t.town.id, OrgKind::Brigade)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(brigade.id, t.huangpu.id);
});

both_engines!(accounts_lockout_and_single_session, |db: Db| async move {
    let t = tree(&db).await;
    let a = db.accounts();
    let acc = a
        .create(
            &NewAccount {
                username: "hp_head".into(),
                display_name: "黄浦负责人".into(),
                password_hash: "x".into(),
                role: "brigade_head".into(),
                org_unit_id: t.huangpu.id.clone(),
                must_change_password: true,
            },
            &audit("account.create"),
        )
        .await
        .unwrap();
    assert_eq!(acc.org_unit_name, "黄浦区大队");
    let dup = a
        .create(
            &NewAccount {
                username: "hp_head".into(),
                display_name: "x".into(),
                password_hash: "x".into(),
                role: "officer".into(),
                org_unit_id: t.huangpu.id.clone(),
                must_change_password: false,
            },
            &audit("account.create"),
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::Duplicate { ref field }) if field == "username"),
        "{dup:?}"
    );

    let fail = audit("auth.login")
        .outcome(shouhu_storage::audit::Outcome::Failure)
        .details(serde_json::json!({}));
    for i in 1..=4 {
        let s = a.record_failure(&acc.id, 5, 9_999, &fail).await.unwrap();
        assert_eq!(s.failed_attempts, i);
        assert_eq!(s.locked_until_ms, None);
    }
    let s = a.record_failure(&acc.id, 5, 9_999, &fail).await.unwrap();
    assert_eq!(s.locked_until_ms, Some(9_999));
    assert_eq!(a.get(&acc.id).await.unwrap().locked_until_ms, Some(9_999));
    let lockouts = db
        .audit()
        .query(
            &AuditFilter {
                action: Some("auth.lockout".into()),
                ..Default::default()
            },
            PageRequest::new(None, None),
        )
        .await
        .unwrap();
    assert_eq!(lockouts.total, 1);

    let s = db.sessions();
    let login = audit("auth.login").details(serde_json::json!({}));
    let first = NewSession {
        token_hash: "h1".into(),
        account_id: acc.id.clone(),
        wall_screen: false,
        ip: None,
        user_agent: None,
    };
    assert!(s.start(&first, &login).await.unwrap().is_empty());
    let second = NewSession {
        token_hash: "h2".into(),
        ..first.clone()
    };
    assert_eq!(
        s.start(&second, &login).await.unwrap(),
        vec!["h1".to_string()]
    );
    let old = s.get("h1").await.unwrap();
    assert_eq!(old.end_reason.as_deref(), Some("superseded"));
    assert!(s.get("h2").await.unwrap().ended_at_ms.is_none());
    // A successful login clears the lock and the counter.
    let acc = a.get(&acc.id).await.unwrap();
    assert_eq!((acc.failed_attempts, acc.locked_until_ms), (0, None));
});

both_engines!(audit_log_is_append_only, |db: Db| async move {
    db.audit().record(&audit("test.event")).await.unwrap();
    assert!(db
        .execute_raw("UPDATE audit_log SET action = 'x'")
        .await
        .is_err());
    assert!(db.execute_raw("DELETE FROM audit_log").await.is_err());
    let page = db
        .audit()
        .query(
            &AuditFilter {
                username: Some("tester".into()),
                ..Default::default()
            },
            PageRequest::new(None, None),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].action, "test.event");
});

both_engines!(enterprises_search_scope_and_versions, |db: Db| async move {
    let t = tree(&db).await;
    let e = db.enterprises();
    let hx = e
        .create(
            &enterprise("上海华新钢铁有限公司", 1, &t.huangpu),
            &audit("enterprise.create"),
        )
        .await
        .unwrap();
    let mut sd = enterprise("申达化工有限公司", 2, &t.xuhui);
    sd.soe_group_id = Some(t.soe.id.clone());
    let sd = e.create(&sd, &audit("enterprise.create")).await.unwrap();
    let mut twn = enterprise("外滩小厂", 3, &t.huangpu);
    twn.town_id = Some(t.town.id.clone());
    e.create(&twn, &audit("enterprise.create")).await.unwrap();
    assert_eq!(hx.key_unit_years, vec![2026]);
    assert_eq!(hx.district_name, "黄浦区大队");

    let all = Scope::All;
    let pg = PageRequest::new(None, None);
    let q = |s: &str| EnterpriseFilter {
        q: Some(s.into()),
        ..Default::default()
    };
    // Two-character substrings, one character, USCC fragments, no match.
    assert_eq!(e.list(&all, &q("华新"), pg).await.unwrap().total, 1);
    assert_eq!(e.list(&all, &q("有限公司"), pg).await.unwrap().total, 2);
    assert_eq!(e.list(&all, &q("新"), pg).await.unwrap().total, 1);
    assert_eq!(
        e.list(&all, &q(&hx.uscc[13..].to_lowercase()), pg)
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(e.list(&all, &q("华新化工"), pg).await.unwrap().total, 0);
    assert_eq!(e.list(&all, &q("100%"), pg).await.unwrap().total, 0);

    // Scope: Huangpu sees its two, Xuhui one, the town its one, the SOE group its one.
    let n = |s: Scope| async move {
        e.list(&s, &EnterpriseFilter::default(), pg)
            .await
            .unwrap()
            .total
    };
    assert_eq!(n(Scope::Subtree(t.huangpu.id.clone())).await, 2);
    assert_eq!(n(Scope::Subtree(t.xuhui.id.clone())).await, 1);
    assert_eq!(n(Scope::Subtree(t.town.id.clone())).await, 1);
    assert_eq!(n(Scope::Subtree(t.soe.id.clone())).await, 1);
    assert!(matches!(
        e.get(&Scope::Subtree(t.xuhui.id.clone()), &hx.id).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(
        e.get(&Scope::Subtree(t.soe.id.clone()), &sd.id)
            .await
            .unwrap()
            .soe_group_name
            .as_deref(),
        Some("华谊集团")
    );

    // Search within a scope, in both name orders and the other sorts, and with a filter.
    for sort in ["name", "-name", "uscc", "district"] {
        let f = EnterpriseFilter {
            q: Some("有限公司".into()),
            sort: Some(sort.into()),
            ..Default::default()
        };
        assert_eq!(
            e.list(&Scope::Subtree(t.huangpu.id.clone()), &f, pg)
                .await
                .unwrap()
                .total,
            1,
            "{sort}"
        );
        assert_eq!(e.list(&all, &f, pg).await.unwrap().items.len(), 2, "{sort}");
    }
    let f = EnterpriseFilter {
        q: Some("有限".into()),
        sort: Some("-name".into()),
        ..Default::default()
    };
    let names: Vec<String> = e
        .list(&all, &f, pg)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(
        names,
        vec![
            "申达化工有限公司".to_string(),
            "上海华新钢铁有限公司".to_string()
        ]
    );
    let f = EnterpriseFilter {
        q: Some("有限".into()),
        sector: Some("03".into()),
        ..Default::default()
    };
    assert_eq!(e.list(&all, &f, pg).await.unwrap().total, 0);
    // Paging through a gram-driven search.
    let f = EnterpriseFilter {
        q: Some("有限".into()),
        ..Default::default()
    };
    let second = e
        .list(&all, &f, PageRequest::new(Some(2), Some(1)))
        .await
        .unwrap();
    assert_eq!((second.total, second.items.len()), (2, 1));
    assert_eq!(second.items[0].name, "申达化工有限公司");

    // Key-unit year filter and sorting.
    let f = EnterpriseFilter {
        key_unit_year: Some(2026),
        sort: Some("-name".into()),
        ..Default::default()
    };
    let page = e.list(&all, &f, pg).await.unwrap();
    assert_eq!(page.total, 3);
    assert!(page.items.windows(2).all(|w| w[0].name >= w[1].name));
    assert!(e
        .list(
            &all,
            &EnterpriseFilter {
                sort: Some("bogus".into()),
                ..Default::default()
            },
            pg
        )
        .await
        .is_err());

    // Optimistic locking; the search index follows a rename.
    let mut upd = enterprise("上海宝昌机械有限公司", 1, &t.huangpu);
    upd.key_unit_years = vec![2025, 2026];
    let hx2 = e
        .update(&all, &hx.id, hx.version, &upd, &audit("enterprise.update"))
        .await
        .unwrap();
    assert_eq!(hx2.version, hx.version + 1);
    assert_eq!(hx2.key_unit_years, vec![2025, 2026]);
    assert!(matches!(
        e.update(&all, &hx.id, hx.version, &upd, &audit("enterprise.update"))
            .await,
        Err(StorageError::VersionConflict)
    ));
    assert_eq!(e.list(&all, &q("华新"), pg).await.unwrap().total, 0);
    assert_eq!(e.list(&all, &q("宝昌"), pg).await.unwrap().total, 1);
    let changes = db
        .audit()
        .query(
            &AuditFilter {
                target_id: Some(hx.id.clone()),
                action: Some("enterprise.update".into()),
                ..Default::default()
            },
            pg,
        )
        .await
        .unwrap();
    assert_eq!(changes.total, 1);
    assert!(changes.items[0].details.contains("宝昌"));
});

both_engines!(bulk_insert_is_all_or_nothing, |db: Db| async move {
    let t = tree(&db).await;
    let e = db.enterprises();
    let existing = e
        .create(
            &enterprise("已有企业", 10, &t.huangpu),
            &audit("enterprise.create"),
        )
        .await
        .unwrap();
    let batch = vec![
        enterprise("新企业甲", 11, &t.huangpu),
        enterprise("新企业乙", 10, &t.xuhui),
    ];
    let r = e
        .insert_many(&batch, &audit("enterprise.import"), "enterprise.import")
        .await;
    assert!(
        matches!(r, Err(StorageError::Duplicate { ref field }) if field == "uscc"),
        "{r:?}"
    );
    assert_eq!(e.count().await.unwrap(), 1);
    assert_eq!(
        e.existing_usccs(&[existing.uscc.clone(), code(99)])
            .await
            .unwrap(),
        vec![existing.uscc.clone()]
    );
    let ok = e
        .insert_many(
            &batch[..1],
            &audit("enterprise.import"),
            "enterprise.import",
        )
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(e.count().await.unwrap(), 2);
});

both_engines!(officers_and_items, |db: Db| async move {
    let t = tree(&db).await;
    let o = db.officers();
    let input = OfficerInput {
        name: "王五".into(),
        certificate_no: "SH-0001".into(),
        org_unit_id: t.huangpu.id.clone(),
        phone: "13900000000".into(),
        account_id: None,
        status: "active".into(),
    };
    assert!(input.validate().is_empty());
    let ids = o
        .insert_many(
            std::slice::from_ref(&input),
            &audit("officer.create"),
            "officer.create",
        )
        .await
        .unwrap();
    let off = o.get(&Scope::All, &ids[0]).await.unwrap();
    assert_eq!(off.org_unit_name, "黄浦区大队");
    assert!(o
        .get(&Scope::Subtree(t.xuhui.id.clone()), &ids[0])
        .await
        .is_err());
    let list = o
        .list(
            &Scope::All,
            &OfficerFilter {
                q: Some("王五".into()),
                ..Default::default()
            },
            PageRequest::new(None, None),
        )
        .await
        .unwrap();
    assert_eq!(list.total, 1);
    assert!(
        matches!(o.insert_many(&[input], &audit("officer.create"), "officer.create").await, Err(StorageError::Duplicate { ref field }) if field == "certificate_no")
    );

    let items = db.inspection_items();
    let page = items
        .list(
            Some("有限空间"),
            None,
            None,
            PageRequest::new(None, Some(100)),
        )
        .await
        .unwrap();
    assert!(page.total >= 1);
    let it = page.items[0].clone();
    let mut edit: shouhu_storage::inspection_items::ItemInput = serde_json::from_value(serde_json::json!({
        "code": it.code, "sector": it.sector, "category": it.category, "title": format!("{}（修订）", it.title),
        "legal_basis": it.legal_basis, "source": it.source, "effective_date": "2026-02-01"
    })).unwrap();
    edit.active = true;
    let v2 = items
        .update(&it.id, it.version, &edit, &audit("inspection_item.update"))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let hist = items.history(&it.id).await.unwrap();
    assert_eq!(hist.len(), 1);
    assert!(hist[0].snapshot.contains(&it.title));
});

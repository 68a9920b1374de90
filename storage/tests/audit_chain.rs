//! The audit log's hash chain on both engines: sealing after commit, verification against the
//! signed heads, and each way a database administrator can rewrite the log with the triggers
//! dropped (change a row, delete a row, rewrite rows and links together, cut the tail, insert
//! into the sealed past) found and named. Rows committed out of `seq` order (a PostgreSQL
//! transaction that drew its `seq` before a sealed row but committed after the seal) are sealed
//! by the next run at a later position, and the chain still verifies.

mod common;

use shouhu_storage::audit::{Actor, AuditEntry, Outcome};
use shouhu_storage::audit_chain::{self, AuditBreak, AuditHead, ChainRow};
use shouhu_storage::evidence::Signer;
use shouhu_storage::{Db, Engine};

const T0: i64 = 1_700_000_000_000;
const SETTLE_MS: i64 = 600_000;

fn signer() -> Signer {
    Signer::from_seed(&[42; 32])
}

async fn write_rows(db: &Db, n: usize, tag: &str) {
    for i in 0..n {
        let actor = Actor {
            account_id: None,
            username: Some(format!("{tag}{i}")),
            ip: Some("10.1.2.3".into()),
        };
        db.audit()
            .record(
                &AuditEntry::new(&actor, "auth.login", T0 + i as i64)
                    .target("account", format!("acc-{i}"))
                    .outcome(if i % 3 == 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    })
                    .details(serde_json::json!({"i": i, "tag": tag})),
            )
            .await
            .unwrap();
    }
}

fn lit(v: Option<&str>) -> String {
    match v {
        None => "NULL".into(),
        Some(v) => format!("'{}'", v.replace('\'', "''")),
    }
}

/// Insert a row with every column given, as an administrator's console could.
async fn insert_row(db: &Db, r: &ChainRow) {
    db.execute_raw(&format!(
        "INSERT INTO audit_log (seq, id, at_ms, account_id, username, action, target_kind, target_id, ip, outcome, details) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        r.seq,
        lit(Some(&r.id)),
        r.at_ms,
        lit(r.account_id.as_deref()),
        lit(r.username.as_deref()),
        lit(Some(&r.action)),
        lit(r.target_kind.as_deref()),
        lit(r.target_id.as_deref()),
        lit(r.ip.as_deref()),
        lit(Some(&r.outcome)),
        lit(Some(&r.details)),
    ))
    .await
    .unwrap();
}

/// Recompute and store every link from `from_position` on over the rows as they are now (what
/// an administrator who knows the scheme can do: SM3 needs no key).
async fn relink(db: &Db, from_position: i64) {
    let links = db.audit_chain().links(0, 10_000).await.unwrap();
    let rows = db.audit_chain().rows(0, 10_000).await.unwrap();
    let mut prev = audit_chain::genesis();
    for l in &links {
        let row = rows.iter().find(|r| r.seq == l.audit_seq).unwrap();
        let next = audit_chain::link(&prev, l.position, row);
        if l.position >= from_position {
            db.execute_raw(&format!(
                "UPDATE audit_chain SET link = '{}', column_digests = '{}' WHERE position = {}",
                hex::encode(next),
                row.column_digests(),
                l.position
            ))
            .await
            .unwrap();
        }
        prev = next;
    }
}

async fn drop_triggers(db: &Db) {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
             DROP TRIGGER audit_chain_no_update; DROP TRIGGER audit_chain_no_delete;"
        }
        Engine::Postgres => {
            "DROP TRIGGER audit_log_no_update ON audit_log; \
             DROP TRIGGER audit_chain_no_update ON audit_chain;"
        }
    };
    db.execute_raw(sql).await.unwrap();
}

async fn verify(db: &Db, heads: &[AuditHead], now_ms: i64) -> Option<AuditBreak> {
    let r = db
        .audit_chain()
        .verify(heads, &signer().public_key_hex(), now_ms, SETTLE_MS)
        .await
        .unwrap();
    r.broken
}

async fn sealed(db: &Db, now_ms: i64) -> Vec<AuditHead> {
    db.audit_chain()
        .seal(&signer(), now_ms, SETTLE_MS)
        .await
        .unwrap()
}

async fn columns_are_the_encoded_set(db: Db) {
    assert_eq!(
        db.audit_chain().table_columns().await.unwrap(),
        audit_chain::COLUMNS.to_vec(),
        "audit_log's columns changed: extend the chain's canonical encoding"
    );
}
both_engines!(columns, columns_are_the_encoded_set);

async fn story(db: Db) {
    // Nothing sealed, nothing exported: nothing to check.
    assert_eq!(verify(&db, &[], T0).await, None);
    write_rows(&db, 7, "a").await;
    let mut heads = sealed(&db, T0).await;
    assert_eq!(heads.len(), 1);
    assert_eq!(
        (heads[0].seal_no, heads[0].first_position, heads[0].position),
        (1, 1, 7)
    );
    assert!(sealed(&db, T0 + 1).await.is_empty(), "nothing new, no seal");
    assert_eq!(verify(&db, &heads, T0).await, None);
    // Sealed rows without any exported head are not taken on trust.
    assert_eq!(
        verify(&db, &[], T0).await,
        Some(AuditBreak::NoHeads { chain_length: 7 })
    );
    // A head altered after signing is refused.
    let forged = AuditHead {
        position: 6,
        ..heads[0].clone()
    };
    assert!(matches!(
        verify(&db, &[forged], T0).await,
        Some(AuditBreak::ForgedHead { seal_no: 1, .. })
    ));
    write_rows(&db, 5, "b").await;
    heads.extend(sealed(&db, T0 + 1_000).await);
    assert_eq!(
        (heads[1].seal_no, heads[1].first_position, heads[1].position),
        (2, 8, 12)
    );
    assert_eq!(verify(&db, &heads, T0 + 1_000).await, None);
    let all = db.audit_chain().rows(0, 100).await.unwrap();
    assert_eq!(all.len(), 12);
    let links = db.audit_chain().links(0, 100).await.unwrap();
    assert_eq!(
        links.iter().map(|l| l.audit_seq).collect::<Vec<_>>(),
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        "sealed in seq order"
    );

    drop_triggers(&db).await;

    // 1. A row changed in place: the first changed row is named with its column.
    for (i, name) in [(3usize, "mallory"), (9, "eve")] {
        db.execute_raw(&format!(
            "UPDATE audit_log SET username = '{name}' WHERE seq = {}",
            all[i].seq
        ))
        .await
        .unwrap();
    }
    assert_eq!(
        verify(&db, &heads, T0).await,
        Some(AuditBreak::RowChanged {
            position: 4,
            seq: all[3].seq,
            id: all[3].id.clone(),
            columns: vec!["username".into()],
        })
    );
    for i in [3usize, 9] {
        db.execute_raw(&format!(
            "UPDATE audit_log SET username = {} WHERE seq = {}",
            lit(all[i].username.as_deref()),
            all[i].seq
        ))
        .await
        .unwrap();
    }
    assert_eq!(verify(&db, &heads, T0).await, None, "restored exactly");
    db.execute_raw(&format!(
        "UPDATE audit_log SET outcome = 'success', details = '{{}}' WHERE seq = {}",
        all[6].seq
    ))
    .await
    .unwrap();
    assert_eq!(
        verify(&db, &heads, T0).await,
        Some(AuditBreak::RowChanged {
            position: 7,
            seq: all[6].seq,
            id: all[6].id.clone(),
            columns: vec!["outcome".into(), "details".into()],
        })
    );
    db.execute_raw(&format!("DELETE FROM audit_log WHERE seq = {}", all[6].seq))
        .await
        .unwrap();
    insert_row(&db, &all[6]).await;
    assert_eq!(verify(&db, &heads, T0).await, None);

    // 2. A row deleted.
    db.execute_raw(&format!("DELETE FROM audit_log WHERE seq = {}", all[5].seq))
        .await
        .unwrap();
    assert_eq!(
        verify(&db, &heads, T0).await,
        Some(AuditBreak::RowMissing {
            position: 6,
            seq: all[5].seq,
            id: all[5].id.clone(),
        })
    );
    insert_row(&db, &all[5]).await;
    assert_eq!(verify(&db, &heads, T0).await, None);

    // 3. A row changed and every later link recomputed to match: the database agrees with
    // itself, not with the signed head; the range since the last good head is named.
    db.execute_raw(&format!(
        "UPDATE audit_log SET ip = '192.0.2.1' WHERE seq = {}",
        all[9].seq
    ))
    .await
    .unwrap();
    relink(&db, 10).await;
    assert_eq!(
        verify(&db, &heads, T0).await,
        Some(AuditBreak::HeadMismatch {
            position: 12,
            seal_no: 2,
            from_position: 8,
            first_id: all[7].id.clone(),
            first_seq: all[7].seq,
        })
    );
    // Against the first head alone the rewrite past it is not visible: heads are what is trusted.
    assert_eq!(verify(&db, &heads[..1], T0).await, None);
    db.execute_raw(&format!(
        "UPDATE audit_log SET ip = {} WHERE seq = {}",
        lit(all[9].ip.as_deref()),
        all[9].seq
    ))
    .await
    .unwrap();
    relink(&db, 10).await;
    assert_eq!(verify(&db, &heads, T0).await, None);

    // 4. Out-of-order commits: a transaction that drew a higher seq commits and is sealed; one
    // that drew a lower seq commits afterwards and the next run seals it at the next position.
    let max = all.last().unwrap().seq;
    let late = |seq: i64, user: &str| ChainRow {
        seq,
        id: format!("late-{seq}"),
        username: Some(user.into()),
        ..all[0].clone()
    };
    insert_row(&db, &late(max + 10, "early-committer")).await;
    heads.extend(sealed(&db, T0 + 2_000).await);
    insert_row(&db, &late(max + 5, "late-committer")).await;
    let h = sealed(&db, T0 + 3_000).await;
    assert_eq!(h.len(), 1, "the late row is sealed");
    assert_eq!((h[0].first_position, h[0].position), (14, 14));
    heads.extend(h);
    let tail = db.audit_chain().links(12, 10).await.unwrap();
    assert_eq!(
        tail.iter().map(|l| l.audit_seq).collect::<Vec<_>>(),
        vec![max + 10, max + 5]
    );
    assert_eq!(verify(&db, &heads, T0 + 3_000).await, None);

    // 5. A row inserted into the sealed past (its seq below rows sealed longer than the settle
    // window ago) is not sealed and is reported.
    let after = T0 + 3_000 + SETTLE_MS + 1;
    insert_row(&db, &late(max + 3, "backdated")).await;
    assert!(sealed(&db, after).await.is_empty(), "below the floor");
    assert_eq!(
        verify(&db, &heads, after).await,
        Some(AuditBreak::Inserted {
            seq: max + 3,
            id: format!("late-{}", max + 3),
        })
    );
    db.execute_raw(&format!("DELETE FROM audit_log WHERE seq = {}", max + 3))
        .await
        .unwrap();
    assert_eq!(verify(&db, &heads, after).await, None);

    // 6. The tail cut off, rows and links: the chain ends before the newest signed head.
    db.execute_raw("DELETE FROM audit_chain WHERE position >= 13")
        .await
        .unwrap();
    db.execute_raw(&format!(
        "DELETE FROM audit_log WHERE seq IN ({}, {})",
        max + 10,
        max + 5
    ))
    .await
    .unwrap();
    assert_eq!(
        verify(&db, &heads, after).await,
        Some(AuditBreak::Truncated {
            chain_length: 12,
            missing_from: 13,
            head_position: 14,
            seal_no: 4,
            last_audit_id: format!("late-{}", max + 5),
        })
    );
}
both_engines!(chain, story);

//! Retention's guarded steps on both engines (see `shouhu_storage::retention`): a hold set
//! between the mark and the claim wins, a hold after the claim is refused, a longer retention
//! set meanwhile wins, an interrupted deletion is resumed, and the expiry query reaches a
//! short-retention unit's expired recordings however many old rows a long-retention unit has.

mod common;

use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit, Scope};
use shouhu_storage::recordings::{NewRecording, NewSegment, DAY_MS};
use shouhu_storage::{Db, StorageError};

/// Now, on the simulated clock every test uses.
const NOW: i64 = 1_800_000_000_000;
/// The configured default retention.
const DEFAULT_DAYS: i64 = 365;

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("tester".into()),
            ip: None,
        },
        action,
        NOW,
    )
}

/// The corps and two brigades under it.
async fn units(db: &Db) -> (OrgUnit, OrgUnit) {
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
    let mut out = Vec::new();
    for (name, code) in [("黄浦区大队", "310101"), ("徐汇区大队", "310104")] {
        out.push(
            o.create(
                &NewOrgUnit {
                    parent_id: Some(corps.id.clone()),
                    kind: OrgKind::Brigade,
                    name: name.into(),
                    code: code.into(),
                },
                &audit("org.create"),
            )
            .await
            .unwrap(),
        );
    }
    let xuhui = out.pop().unwrap();
    (out.pop().unwrap(), xuhui)
}

/// A closed one-minute recording of `unit` that ended `days_ago` days before [`NOW`]; its id.
async fn recording(db: &Db, unit: &OrgUnit, days_ago: i64) -> String {
    let id = shouhu_storage::new_id();
    let repo = db.recordings();
    repo.open(
        &NewRecording {
            id: id.clone(),
            device_id: "31010000001320000001".into(),
            channel_id: "31010000001310000001".into(),
            officer_id: None,
            org_unit_id: unit.id.clone(),
            source: "live".into(),
            trigger: "on_demand".into(),
            started_at_ms: NOW - days_ago * DAY_MS - 60_000,
        },
        None,
    )
    .await
    .unwrap();
    let data = format!("segment of {id}").into_bytes();
    let (sha256, sm3) = shouhu_storage::evidence::digests(&data);
    repo.add_segment(
        &id,
        &NewSegment {
            seq: 0,
            start_90k: 0,
            end_90k: 60 * 90_000,
            blob_key: format!("recordings/{id}/0.mp4"),
            bytes: data.len() as i64,
            init_bytes: 0,
            payload_bytes: data.len() as i64,
            video_codec: Some("h264".into()),
            audio_codec: None,
            sha256,
            sm3,
        },
    )
    .await
    .unwrap();
    let r = repo
        .close(&id, &|_: &[u8]| "00".repeat(64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, "closed");
    id
}

async fn marked(db: &Db, limit: i64) -> Vec<String> {
    let mut ids: Vec<String> = db
        .recordings()
        .mark_expired(NOW, DEFAULT_DAYS, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

both_engines!(a_hold_between_mark_and_claim_wins, |db: Db| async move {
    let (hp, _) = units(&db).await;
    let repo = db.recordings();
    let held = recording(&db, &hp, 400).await;
    let gone = recording(&db, &hp, 400).await;
    let recent = recording(&db, &hp, 100).await;

    assert_eq!(
        marked(&db, 1000).await,
        sorted(vec![held.clone(), gone.clone()])
    );
    assert_eq!(
        repo.deletion_state(&recent).await.unwrap(),
        Some((false, false))
    );
    // A reviewer's hold arrives after the mark: it clears the mark, and the claim finds it.
    repo.set_hold(
        &Scope::All,
        &held,
        true,
        Some("复核"),
        &audit("recording.hold"),
    )
    .await
    .unwrap();
    assert_eq!(
        repo.deletion_state(&held).await.unwrap(),
        Some((false, false))
    );
    assert!(!repo
        .claim_for_deletion(&held, NOW, DEFAULT_DAYS)
        .await
        .unwrap());
    // Never marked: never claimed, expired or not.
    assert!(!repo
        .claim_for_deletion(&recent, NOW, DEFAULT_DAYS)
        .await
        .unwrap());
    // Rows go only for a claimed recording.
    assert!(!repo
        .delete(&held, &audit("recording.delete"))
        .await
        .unwrap());
    assert!(repo.get(&Scope::All, &held).await.unwrap().held);

    assert!(repo
        .claim_for_deletion(&gone, NOW, DEFAULT_DAYS)
        .await
        .unwrap());
    assert_eq!(
        repo.deletion_state(&gone).await.unwrap(),
        Some((true, true))
    );
    // Claimed: a hold or a link comes too late and is refused, not recorded.
    let e = repo
        .set_hold(
            &Scope::All,
            &gone,
            true,
            Some("迟到"),
            &audit("recording.hold"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StorageError::WrongState { state, .. } if state == "deleting"),
        "{e:?}"
    );
    assert!(!repo.get(&Scope::All, &gone).await.unwrap().held);
    // A later run resumes a claimed recording whose deletion did not finish, and marks
    // nothing new (the held one stays unmarked).
    let resumed: Vec<String> = repo
        .deleting()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(resumed, vec![gone.clone()]);
    assert_eq!(marked(&db, 1000).await, Vec::<String>::new());
    assert!(repo
        .delete(&gone, &audit("recording.delete"))
        .await
        .unwrap());
    assert!(matches!(
        repo.get(&Scope::All, &gone).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(repo.segments(&gone, None, None).await.unwrap().is_empty());
    assert_eq!(repo.deletion_state(&gone).await.unwrap(), None);
    assert!(repo.deleting().await.unwrap().is_empty());

    // Released, it expires again at the next run.
    repo.set_hold(&Scope::All, &held, false, None, &audit("recording.hold"))
        .await
        .unwrap();
    assert_eq!(marked(&db, 1000).await, vec![held.clone()]);
});

both_engines!(
    a_longer_retention_set_after_the_mark_wins,
    |db: Db| async move {
        let (hp, _) = units(&db).await;
        let repo = db.recordings();
        let r = recording(&db, &hp, 400).await;
        assert_eq!(marked(&db, 1000).await, vec![r.clone()]);
        repo.set_retention(&hp.id, 1000, &audit("recording.retention"))
            .await
            .unwrap();
        assert!(!repo
            .claim_for_deletion(&r, NOW, DEFAULT_DAYS)
            .await
            .unwrap());
        // The next run's mark starts afresh: the stale mark is cleared, nothing is expired.
        assert_eq!(marked(&db, 1000).await, Vec::<String>::new());
        assert_eq!(repo.deletion_state(&r).await.unwrap(), Some((false, false)));
    }
);

both_engines!(
    a_long_retention_unit_never_crowds_out_a_short_one,
    |db: Db| async move {
        let (hp, xh) = units(&db).await;
        let repo = db.recordings();
        repo.set_retention(&xh.id, 3000, &audit("recording.retention"))
            .await
            .unwrap();
        // Xuhui's recordings are older than every expired one of Huangpu, but within
        // Xuhui's 3000 days: more than a run's bound of them.
        for _ in 0..12 {
            recording(&db, &xh, 2000).await;
        }
        let mut expired = Vec::new();
        for days in [500, 450, 400] {
            expired.push(recording(&db, &hp, days).await);
        }
        recording(&db, &hp, 300).await;
        // Bounded per retention period, oldest first.
        assert_eq!(
            marked(&db, 2).await,
            sorted(vec![expired[0].clone(), expired[1].clone()])
        );
        assert_eq!(marked(&db, 10).await, sorted(expired.clone()));
        for id in &expired {
            assert!(repo
                .claim_for_deletion(id, NOW, DEFAULT_DAYS)
                .await
                .unwrap());
            assert!(repo.delete(id, &audit("recording.delete")).await.unwrap());
        }
        // Past 3000 days Xuhui's expire too, at most the bound per run.
        let later = NOW + 1001 * DAY_MS;
        let n = repo.mark_expired(later, DEFAULT_DAYS, 10).await.unwrap();
        assert_eq!(n.len(), 11, "10 of Xuhui's and Huangpu's last one");
        assert_eq!(n.iter().filter(|r| r.org_unit_id == xh.id).count(), 10);
    }
);

//! Vehicles, position history, geofences, assignments and SOS alarms on SQLite and PostgreSQL.

mod common;

use shouhu_storage::assignments::Assignment;
use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter};
use shouhu_storage::geofences::Geofence;
use shouhu_storage::model::{Position, PositionSource};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, Scope};
use shouhu_storage::positions::{flags, TrackPoint};
use shouhu_storage::recorders::{AccessReport, Channel, SipSecretChange};
use shouhu_storage::sos::{SosAlarm, SosStep};
use shouhu_storage::vehicles::{RegisterOutcome, TerminalRegistration, VehicleInput};
use shouhu_storage::{Db, PageRequest, StorageError};

const T0: i64 = 1_790_000_000_000;

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(
        &Actor {
            username: Some("tester".into()),
            ..Default::default()
        },
        action,
        T0,
    )
}

async fn corps(db: &Db) -> String {
    db.org_units()
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
        .unwrap()
        .id
}

fn tp(unit: &str, t: i64, lon: f64, fl: i64) -> TrackPoint {
    TrackPoint {
        position: Position {
            unit_id: unit.into(),
            time_ms: t,
            lat: 31.2,
            lon,
            speed_kmh: Some(12.5),
            heading_deg: Some(90.0),
            altitude_m: None,
            accuracy_m: Some(5.0),
            source: PositionSource::Jt808,
            alarm_flags: 1,
        },
        flags: fl,
        received_at_ms: t + 100,
    }
}

both_engines!(terminals_register_and_authenticate, |db: Db| async move {
    let org = corps(&db).await;
    let v = db
        .vehicles()
        .insert(
            &VehicleInput {
                plate: "沪A·E0001".into(),
                org_unit_id: org.clone(),
                terminal_phone: Some("13800138000".into()),
                status: "active".into(),
            },
            &audit("vehicle.create"),
        )
        .await
        .unwrap();
    let reg = TerminalRegistration {
        manufacturer: "M".into(),
        model: "X".into(),
        terminal_id: "T1".into(),
        plate: String::new(),
    };
    // The 12-digit 2013 form of the number finds the vehicle.
    let r = db
        .vehicles()
        .register_terminal("013800138000", &reg, None, "CODE1", "127.0.0.1:5000", T0)
        .await
        .unwrap();
    assert_eq!(
        r,
        RegisterOutcome::Registered {
            vehicle_id: v.id.clone(),
            auth_code: "CODE1".into()
        }
    );
    // Registering again is refused (the terminal holds a code; see terminal_identity.rs).
    let r = db
        .vehicles()
        .register_terminal(
            "00000000013800138000",
            &reg,
            None,
            "CODE2",
            "127.0.0.1:5000",
            T0,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, RegisterOutcome::AlreadyRegistered { ref vehicle_id, .. } if *vehicle_id == v.id),
        "{r:?}"
    );
    assert_eq!(
        db.vehicles()
            .authenticate_terminal("13800138000", "CODE1")
            .await
            .unwrap(),
        Some(v.id.clone())
    );
    assert_eq!(
        db.vehicles()
            .authenticate_terminal("13800138000", "CODE2")
            .await
            .unwrap(),
        None
    );
    // Unknown terminals: refused, or created under open registration.
    let r = db
        .vehicles()
        .register_terminal("13900000000", &reg, None, "C3", "127.0.0.1:5000", T0)
        .await
        .unwrap();
    assert_eq!(r, RegisterOutcome::UnknownTerminal);
    let r = db
        .vehicles()
        .register_terminal("13900000000", &reg, Some(&org), "C3", "127.0.0.1:5000", T0)
        .await
        .unwrap();
    assert!(matches!(r, RegisterOutcome::Registered { .. }));
    assert_eq!(db.vehicles().list(&Scope::All).await.unwrap().len(), 2);
    // A second vehicle may not take a terminal already in use.
    let dup = db
        .vehicles()
        .insert(
            &VehicleInput {
                plate: "沪A·E0002".into(),
                org_unit_id: org.clone(),
                terminal_phone: Some("13800138000".into()),
                status: "active".into(),
            },
            &audit("vehicle.create"),
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::Duplicate { ref field }) if field == "terminal_phone"),
        "{dup:?}"
    );
    // Changing the number revokes the code.
    let mut i = VehicleInput {
        plate: "沪A·E0001".into(),
        org_unit_id: org,
        terminal_phone: Some("13800138001".into()),
        status: "active".into(),
    };
    i.normalize();
    db.vehicles()
        .update(&Scope::All, &v.id, v.version, &i, &audit("vehicle.update"))
        .await
        .unwrap();
    assert_eq!(
        db.vehicles()
            .authenticate_terminal("13800138001", "CODE1")
            .await
            .unwrap(),
        None
    );
});

both_engines!(
    history_is_batched_deduplicated_and_retained,
    |db: Db| async move {
        let batch: Vec<TrackPoint> = (0..2500)
            .map(|k| tp("u1", T0 + k * 1000, 121.4 + k as f64 * 1e-5, 0))
            .collect();
        assert_eq!(db.positions().insert_batch(&batch).await.unwrap(), 2500);
        // The same fixes again: nothing new.
        assert_eq!(db.positions().insert_batch(&batch[..10]).await.unwrap(), 0);
        db.positions()
            .insert_batch(&[tp("u1", T0 + 3_000_000, 0.0, flags::ZERO_FIX)])
            .await
            .unwrap();
        let tr = db
            .positions()
            .track("u1", T0 + 1000, T0 + 4000, 100)
            .await
            .unwrap();
        assert_eq!(
            tr.iter()
                .map(|t| t.position.time_ms - T0)
                .collect::<Vec<_>>(),
            [1000, 2000, 3000]
        );
        assert_eq!(tr[0].position.alarm_flags, 1);
        assert_eq!(tr[0].position.speed_kmh, Some(12.5));
        // The latest usable fix skips the zero fix.
        let last = db.positions().latest(&["u1".into()]).await.unwrap();
        assert_eq!(last[0].position.time_ms, T0 + 2_499_000);
        let n = db
            .positions()
            .delete_older_than(&["u1".into()], T0 + 1_000_000)
            .await
            .unwrap();
        assert_eq!(n, 1000);
        assert_eq!(db.positions().unit_ids().await.unwrap(), ["u1"]);
    }
);

both_engines!(sos_workflow_records_who_and_when, |db: Db| async move {
    let org = corps(&db).await;
    let a = SosAlarm {
        id: shouhu_storage::new_id(),
        unit_id: "u1".into(),
        unit_kind: "vehicle".into(),
        unit_name: "沪A·E0001".into(),
        org_unit_id: org.clone(),
        source: "jt808".into(),
        raised_at_ms: T0,
        lat: Some(31.2),
        lon: Some(121.4),
        status: "raised".into(),
        acknowledged_by: None,
        acknowledged_at_ms: None,
        handled_by: None,
        handled_at_ms: None,
        handle_note: None,
        closed_by: None,
        closed_at_ms: None,
        close_note: None,
    };
    db.sos().raise(&a, &audit("sos.raise")).await.unwrap();
    let s = db
        .sos()
        .step(
            &a.id,
            SosStep::Acknowledge,
            "op1",
            None,
            &audit("sos.acknowledge"),
        )
        .await
        .unwrap();
    assert_eq!(
        (s.status.as_str(), s.acknowledged_by.as_deref()),
        ("acknowledged", Some("op1"))
    );
    let again = db
        .sos()
        .step(
            &a.id,
            SosStep::Acknowledge,
            "op2",
            None,
            &audit("sos.acknowledge"),
        )
        .await;
    assert!(matches!(again, Err(StorageError::Conflict(_))));
    let s = db
        .sos()
        .step(
            &a.id,
            SosStep::Handle,
            "op1",
            Some("已联系"),
            &audit("sos.handle"),
        )
        .await
        .unwrap();
    assert_eq!(s.handle_note.as_deref(), Some("已联系"));
    assert_eq!(
        db.sos()
            .list(true, Some(std::slice::from_ref(&org)), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    db.sos()
        .step(&a.id, SosStep::Close, "op2", None, &audit("sos.close"))
        .await
        .unwrap();
    assert!(db.sos().list(true, None, 10).await.unwrap().is_empty());
    assert!(db
        .sos()
        .list(false, Some(&["elsewhere".into()]), 10)
        .await
        .unwrap()
        .is_empty());
    let f = AuditFilter {
        target_id: Some(a.id.clone()),
        ..Default::default()
    };
    let log = db
        .audit()
        .query(&f, PageRequest::new(None, Some(50)))
        .await
        .unwrap();
    assert_eq!(log.total, 4);
});

both_engines!(assignments_and_geofences, |db: Db| async move {
    let org = corps(&db).await;
    let a = Assignment {
        id: shouhu_storage::new_id(),
        unit_id: "u1".into(),
        enterprise_id: None,
        target_name: "现场".into(),
        target_lat: 31.2,
        target_lon: 121.4,
        radius_m: 150.0,
        status: "assigned".into(),
        assigned_by: "op".into(),
        assigned_at_ms: T0,
        arrived_at_ms: None,
        cleared_by: None,
        cleared_at_ms: None,
    };
    db.assignments()
        .assign(&a, &audit("dispatch.assign"))
        .await
        .unwrap();
    let twice = db
        .assignments()
        .assign(
            &Assignment {
                id: shouhu_storage::new_id(),
                ..a.clone()
            },
            &audit("dispatch.assign"),
        )
        .await;
    assert!(matches!(twice, Err(StorageError::Conflict(_))));
    assert!(db
        .assignments()
        .arrive("u1", &audit("dispatch.arrive"))
        .await
        .unwrap());
    assert!(!db
        .assignments()
        .arrive("u1", &audit("dispatch.arrive"))
        .await
        .unwrap());
    assert_eq!(db.assignments().open().await.unwrap()[0].status, "on_scene");
    assert!(db
        .assignments()
        .clear("u1", "op", &audit("dispatch.clear"))
        .await
        .unwrap());
    assert!(db.assignments().open_of("u1").await.unwrap().is_none());

    let g = db
        .geofences()
        .insert(
            &Geofence {
                id: String::new(),
                name: "圈".into(),
                kind: "custom".into(),
                org_unit_id: org,
                enterprise_id: None,
                geometry: None,
                center_lat: Some(31.2),
                center_lon: Some(121.4),
                radius_m: Some(200.0),
                created_at_ms: T0,
                updated_at_ms: T0,
            },
            &audit("geofence.create"),
        )
        .await
        .unwrap();
    assert_eq!(
        db.geofences().list().await.unwrap()[0].radius_m,
        Some(200.0)
    );
    db.geofences()
        .delete(&g.id, &audit("geofence.delete"))
        .await
        .unwrap();
    assert!(db.geofences().list().await.unwrap().is_empty());
});

both_engines!(recorders_bind_to_one_officer, |db: Db| async move {
    use shouhu_storage::officers::OfficerInput;
    use shouhu_storage::recorders::RecorderInput;
    let org = corps(&db).await;
    let ids = db
        .officers()
        .insert_many(
            &[OfficerInput {
                name: "张三".into(),
                certificate_no: "SH-1".into(),
                org_unit_id: org.clone(),
                phone: String::new(),
                account_id: None,
                status: "active".into(),
            }],
            &audit("officer.create"),
            "officer.create",
        )
        .await
        .unwrap();
    let mk = |dev: &str, officer: Option<String>| RecorderInput {
        device_id: dev.into(),
        name: "记录仪".into(),
        org_unit_id: org.clone(),
        officer_id: officer,
        status: "active".into(),
        channels: 1,
        ..Default::default()
    };
    let set = SipSecretChange::Set {
        realm: "3402000000".into(),
        md5: "a".repeat(32),
        sha256: "b".repeat(64),
    };
    let r = db
        .recorders()
        .insert(
            &mk("34020000001320000001", Some(ids[0].clone())),
            &set,
            &audit("recorder.create"),
        )
        .await
        .unwrap();
    assert_eq!(r.officer_id.as_deref(), Some(ids[0].as_str()));
    assert!(r.has_password);
    // One recorder per officer.
    let dup = db
        .recorders()
        .insert(
            &mk("34020000001320000002", Some(ids[0].clone())),
            &SipSecretChange::Keep,
            &audit("recorder.create"),
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::Duplicate { ref field }) if field == "officer_id"),
        "{dup:?}"
    );
    let r = db
        .recorders()
        .update(
            &Scope::All,
            r.version,
            &mk("34020000001320000001", None),
            &SipSecretChange::Keep,
            &audit("recorder.update"),
        )
        .await
        .unwrap();
    assert_eq!((r.officer_id, r.version, r.has_password), (None, 2, true));
    // Binding history: bound at creation, unbound by the update.
    let hist = db
        .recorders()
        .bindings("34020000001320000001")
        .await
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].officer_id, ids[0]);
    assert!(hist[0].unbound_at_ms.is_some());
    let sec = db
        .recorders()
        .secret("34020000001320000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sec.sip_ha1_md5.as_deref(), Some("a".repeat(32).as_str()));
    let r = db
        .recorders()
        .update(
            &Scope::All,
            r.version,
            &mk("34020000001320000001", Some(ids[0].clone())),
            &SipSecretChange::Clear,
            &audit("recorder.update"),
        )
        .await
        .unwrap();
    assert!(!r.has_password);
    assert_eq!(
        db.recorders()
            .bindings("34020000001320000001")
            .await
            .unwrap()
            .len(),
        2
    );
    // Access state and catalog channels.
    db.recorders()
        .record_access(
            "34020000001320000001",
            &AccessReport {
                transport: Some("UDP".into()),
                remote_addr: Some("10.0.0.9:5060".into()),
                registered_at_ms: Some(1_000),
            },
            1_000,
        )
        .await
        .unwrap();
    let ch = |id: &str, name: &str| Channel {
        channel_id: id.into(),
        name: Some(name.into()),
        manufacturer: None,
        model: None,
        status: Some("ON".into()),
        updated_at_ms: 0,
    };
    db.recorders()
        .replace_channels(
            "34020000001320000001",
            &[
                ch("34020000001310000001", "前置"),
                ch("34020000001310000002", "音频"),
            ],
            2_000,
        )
        .await
        .unwrap();
    db.recorders()
        .replace_channels(
            "34020000001320000001",
            &[ch("34020000001310000001", "前置摄像头")],
            3_000,
        )
        .await
        .unwrap();
    let chans = db
        .recorders()
        .channels("34020000001320000001")
        .await
        .unwrap();
    assert_eq!(chans.len(), 1);
    assert_eq!(
        (chans[0].name.as_deref(), chans[0].updated_at_ms),
        (Some("前置摄像头"), 3_000)
    );
    let r = db
        .recorders()
        .get(&Scope::All, "34020000001320000001")
        .await
        .unwrap();
    assert_eq!(
        (r.transport.as_deref(), r.last_seen_at_ms),
        (Some("UDP"), Some(1_000))
    );
    assert!(mk("123", None)
        .validate()
        .iter()
        .any(|e| e.field == "device_id"));
});

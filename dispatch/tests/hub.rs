//! The hub with a real (in-memory SQLite) database: client sessions stay bounded and a client
//! that falls behind the broadcast is resynchronised with current state.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use shouhu_dispatch::hub::{ClientFilter, ClientSession, Hub, HubConfig};
use shouhu_dispatch::protocol::Subscription;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::model::{Position, PositionSource, UnitEvent, UnitEventSink};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind};
use shouhu_storage::vehicles::VehicleInput;
use shouhu_storage::Db;
use tokio::sync::broadcast::error::TryRecvError;

const T0: i64 = 1_790_000_000_000;

async fn hub_with(n: usize, capacity: usize) -> (Arc<Hub>, Vec<String>, Arc<AtomicI64>) {
    let db = Db::connect("sqlite::memory:", 1).await.unwrap();
    db.migrate().await.unwrap();
    let audit = AuditEntry::new(&Actor::default(), "setup", T0);
    let corps = db
        .org_units()
        .create(
            &NewOrgUnit {
                parent_id: None,
                kind: OrgKind::Corps,
                name: "总队".into(),
                code: "310000".into(),
            },
            &audit,
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let v = db
            .vehicles()
            .insert(
                &VehicleInput {
                    plate: format!("沪A{i:05}"),
                    org_unit_id: corps.id.clone(),
                    terminal_phone: Some(format!("1390000{i:04}")),
                    status: "active".into(),
                },
                &audit,
            )
            .await
            .unwrap();
        ids.push(v.id);
    }
    let now = Arc::new(AtomicI64::new(T0));
    let n2 = now.clone();
    let cfg = HubConfig {
        broadcast_capacity: capacity,
        flush_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let hub = Hub::start(db, cfg, Arc::new(move || n2.load(Ordering::Relaxed)))
        .await
        .unwrap();
    (hub, ids, now)
}

fn fix(id: &str, t: i64, lon: f64) -> UnitEvent {
    UnitEvent::Position {
        position: Position {
            unit_id: id.into(),
            time_ms: t,
            lat: 31.2,
            lon,
            speed_kmh: Some(30.0),
            heading_deg: None,
            altitude_m: None,
            accuracy_m: None,
            source: PositionSource::Jt808,
            alarm_flags: 0,
        },
        live: true,
    }
}

#[tokio::test]
async fn a_session_holds_at_most_one_frame_per_unit() {
    let (hub, ids, now) = hub_with(50, 1024).await;
    let mut rx = hub.batches();
    let mut s = ClientSession::new(ClientFilter::new(&Subscription::default(), None, None));
    s.snapshot(
        ClientFilter::new(&Subscription::default(), None, None),
        &hub.frames(),
        T0,
    );
    for round in 1..=200i64 {
        now.store(T0 + round * 1000, Ordering::Relaxed);
        for id in &ids {
            hub.publish(fix(id, T0 + round * 1000, 121.4 + round as f64 * 1e-4));
        }
        hub.flush();
        while let Ok(b) = rx.try_recv() {
            s.on_batch(&b);
        }
        assert!(s.pending_len() <= ids.len(), "{} pending", s.pending_len());
    }
    let msg: serde_json::Value = serde_json::from_str(&s.take_units().unwrap()).unwrap();
    let units = msg["units"].as_array().unwrap();
    assert_eq!(units.len(), 50);
    assert!(units
        .iter()
        .all(|u| (u["lon"].as_f64().unwrap() - 121.42).abs() < 1e-9));
    assert!(s.take_units().is_none(), "nothing new since");
    hub.close().await;
}

#[tokio::test]
async fn a_lagging_client_is_resynchronised_with_current_state() {
    let (hub, ids, now) = hub_with(5, 4).await;
    let mut rx = hub.batches();
    let mut s = ClientSession::new(ClientFilter::new(&Subscription::default(), None, None));
    for round in 1..=50i64 {
        now.store(T0 + round * 1000, Ordering::Relaxed);
        for id in &ids {
            hub.publish(fix(id, T0 + round * 1000, 121.4 + round as f64 * 1e-4));
        }
        hub.flush();
    }
    // The ring kept 4 batches; the client missed the rest.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(_))));
    s.resync(&hub.frames());
    let msg: serde_json::Value = serde_json::from_str(&s.take_units().unwrap()).unwrap();
    assert_eq!(msg["units"].as_array().unwrap().len(), 5);
    assert!(msg["units"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| (u["lon"].as_f64().unwrap() - 121.405).abs() < 1e-9));
    hub.close().await;
}

#[tokio::test]
async fn history_is_written_in_batches_and_duplicates_once() {
    let (hub, ids, now) = hub_with(3, 16).await;
    for id in &ids {
        for k in 0..10 {
            hub.publish(fix(id, T0 + k * 1000, 121.4 + k as f64 * 1e-4));
        }
        // A duplicate (same device time and source) is stored once.
        hub.publish(fix(id, T0 + 9000, 121.4009));
    }
    hub.close().await;
    assert_eq!(hub.stats.history_written.load(Ordering::Relaxed), 33);
    let batches = hub.stats.history_batches.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&batches),
        "{batches} transactions for 33 fixes"
    );
    // Retention: a year and a day later, everything goes.
    now.store(T0 + 366 * 86_400_000, Ordering::Relaxed);
    assert_eq!(hub.apply_retention().await.unwrap(), 30);
}

#[tokio::test]
async fn a_large_snapshot_is_split_into_bounded_messages() {
    use shouhu_dispatch::hub::MAX_UNITS_PER_MESSAGE;
    let n = MAX_UNITS_PER_MESSAGE + 150;
    let (hub, _, _) = hub_with(n, 16).await;
    let mut s = ClientSession::new(ClientFilter::new(&Subscription::default(), None, None));
    let first: serde_json::Value = serde_json::from_str(&s.snapshot(
        ClientFilter::new(&Subscription::default(), None, None),
        &hub.frames(),
        T0,
    ))
    .unwrap();
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["complete"], false);
    assert_eq!(
        first["units"].as_array().unwrap().len(),
        MAX_UNITS_PER_MESSAGE
    );
    let rest: serde_json::Value = serde_json::from_str(&s.take_units().unwrap()).unwrap();
    assert_eq!(rest["units"].as_array().unwrap().len(), 150);
    assert!(s.take_units().is_none());
    hub.close().await;
}

#[tokio::test]
async fn a_bound_recorder_reports_for_its_officer_and_an_unbound_one_is_a_unit() {
    use shouhu_dispatch::coords::Crs;
    use shouhu_storage::officers::OfficerInput;
    use shouhu_storage::recorders::RecorderInput;
    let (hub, _, now) = hub_with(0, 16).await;
    let audit = AuditEntry::new(&Actor::default(), "setup", T0);
    let hdb = hub.db().clone();
    let org = hdb.org_units().list().await.unwrap()[0].id.clone();
    let ids = hdb
        .officers()
        .insert_many(
            &[OfficerInput {
                name: "张三".into(),
                certificate_no: "SH-0001".into(),
                org_unit_id: org.clone(),
                phone: String::new(),
                account_id: None,
                status: "active".into(),
            }],
            &audit,
            "officer.create",
        )
        .await
        .unwrap();
    for (dev, officer) in [
        ("34020000001320000001", Some(ids[0].clone())),
        ("34020000001320000002", None),
    ] {
        hdb.recorders()
            .insert(
                &RecorderInput {
                    device_id: dev.into(),
                    name: format!("记录仪{}", &dev[18..]),
                    org_unit_id: org.clone(),
                    officer_id: officer,
                    status: "active".into(),
                    channels: 1,
                    ..Default::default()
                },
                &shouhu_storage::recorders::SipSecretChange::Keep,
                &audit,
            )
            .await
            .unwrap();
    }
    hub.refresh_registry().await.unwrap();
    assert_eq!(
        hub.unit_for_device("34020000001320000001").as_deref(),
        Some(ids[0].as_str())
    );
    assert_eq!(
        hub.unit_for_device("34020000001320000002").as_deref(),
        Some("34020000001320000002")
    );
    assert_eq!(hub.unit_for_device("34020000001320000009"), None);
    let (officer, _) = hub.unit(&ids[0], Crs::Wgs84).unwrap();
    assert_eq!(officer.device.as_deref(), Some("34020000001320000001"));
    let (rec, _) = hub.unit("34020000001320000002", Crs::Wgs84).unwrap();
    assert_eq!(format!("{:?}", rec.kind), "Recorder");
    // A MobilePosition of the bound recorder moves the officer's marker.
    now.store(T0 + 1000, Ordering::Relaxed);
    let unit = hub.unit_for_device("34020000001320000001").unwrap();
    let mut ev = fix(&unit, T0 + 1000, 121.45);
    if let UnitEvent::Position { position, .. } = &mut ev {
        position.source = PositionSource::Gb28181;
    }
    hub.publish(ev);
    let (officer, _) = hub.unit(&ids[0], Crs::Wgs84).unwrap();
    assert_eq!(
        (officer.lon, format!("{:?}", officer.link)),
        (Some(121.45), "Online".to_string())
    );
    hub.close().await;
}

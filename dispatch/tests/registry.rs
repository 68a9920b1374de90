//! The hub's registry follows one vehicle at once (issue 19, item 6): a vehicle a terminal's
//! open registration created is a live unit as soon as [`Hub::refresh_vehicle`] returns — its
//! next fix is live — and a vehicle disabled or deleted leaves the live registry the same way.

use std::sync::Arc;

use shouhu_dispatch::coords::Crs;
use shouhu_dispatch::hub::{Hub, HubConfig};
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::model::{Position, PositionSource, UnitEvent, UnitEventSink};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, Scope};
use shouhu_storage::vehicles::{RegisterOutcome, TerminalRegistration, VehicleInput};
use shouhu_storage::Db;

const T0: i64 = 1_790_000_000_000;

fn fix(id: &str, t: i64) -> UnitEvent {
    UnitEvent::Position {
        position: Position {
            unit_id: id.into(),
            time_ms: t,
            lat: 31.2255,
            lon: 121.4755,
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
async fn a_registered_vehicle_is_live_at_once_and_leaves_at_once() {
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
    let hub = Hub::start(db.clone(), HubConfig::default(), Arc::new(|| T0))
        .await
        .unwrap();
    assert_eq!(hub.list(Crs::Wgs84, &|_| true).len(), 0);

    // Open registration creates the vehicle on the running server.
    let r = db
        .vehicles()
        .register_terminal(
            "013700000123",
            &TerminalRegistration {
                manufacturer: "M".into(),
                model: "X".into(),
                terminal_id: "NEW0123".into(),
                plate: "沪A·N0123".into(),
            },
            Some(&corps.id),
            "CODE",
            "127.0.0.1:40000",
            T0,
        )
        .await
        .unwrap();
    let RegisterOutcome::Registered { vehicle_id, .. } = r else {
        panic!("{r:?}")
    };
    // Before the hub is told, the unit is unknown and its fixes are dropped.
    assert!(hub.unit(&vehicle_id, Crs::Wgs84).is_none());
    hub.refresh_vehicle(&vehicle_id).await.unwrap();
    let (v, _) = hub.unit(&vehicle_id, Crs::Wgs84).expect("live at once");
    assert_eq!(
        (v.name.as_str(), v.terminal.as_deref()),
        ("沪A·N0123", Some("13700000123"))
    );
    hub.publish(fix(&vehicle_id, T0 - 1000));
    let (v, _) = hub.unit(&vehicle_id, Crs::Wgs84).unwrap();
    assert_eq!(v.lat, Some(31.2255));

    // Disabled: gone at once; enabled again: back; deleted: gone.
    let cur = db.vehicles().get(&Scope::All, &vehicle_id).await.unwrap();
    let mut input = VehicleInput {
        plate: cur.plate.clone(),
        org_unit_id: cur.org_unit_id.clone(),
        terminal_phone: cur.terminal_phone.clone(),
        status: "inactive".into(),
    };
    let cur = db
        .vehicles()
        .update(&Scope::All, &vehicle_id, cur.version, &input, &audit)
        .await
        .unwrap();
    hub.refresh_vehicle(&vehicle_id).await.unwrap();
    assert!(hub.unit(&vehicle_id, Crs::Wgs84).is_none());
    input.status = "active".into();
    db.vehicles()
        .update(&Scope::All, &vehicle_id, cur.version, &input, &audit)
        .await
        .unwrap();
    hub.refresh_vehicle(&vehicle_id).await.unwrap();
    assert!(hub.unit(&vehicle_id, Crs::Wgs84).is_some());
    db.vehicles()
        .delete(&Scope::All, &vehicle_id, &audit)
        .await
        .unwrap();
    hub.refresh_vehicle(&vehicle_id).await.unwrap();
    assert!(hub.unit(&vehicle_id, Crs::Wgs84).is_none());
    // A full refresh agrees.
    hub.refresh_registry().await.unwrap();
    assert_eq!(hub.list(Crs::Wgs84, &|_| true).len(), 0);
}

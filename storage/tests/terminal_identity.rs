//! JT/T 808 terminal identity on SQLite and PostgreSQL (issue 19): a terminal that holds an auth
//! code cannot register again and take the vehicle over; the refused attempt is recorded for
//! the operator and audited at most once a minute; an operator's release lets exactly one
//! re-registration through within its window, which issues a new code and retires the old one.

mod common;

use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, Scope};
use shouhu_storage::vehicles::{
    ApprovedTerminal, RebindTarget, RegisterOutcome, TerminalRegistration, VehicleInput,
    MAX_ATTEMPTS_PER_VEHICLE,
};
use shouhu_storage::{Db, PageRequest};

const T0: i64 = 1_790_000_000_000;
const DEVICE: &str = "127.0.0.1:40001";
const ATTACKER: &str = "127.0.0.2:40002";

fn audit(action: &str, at_ms: i64) -> AuditEntry {
    AuditEntry::new(
        &Actor {
            username: Some("device-manager".into()),
            ..Default::default()
        },
        action,
        at_ms,
    )
}

fn terminal(id: &str) -> TerminalRegistration {
    TerminalRegistration {
        manufacturer: "M1".into(),
        model: "MODEL-1".into(),
        terminal_id: id.into(),
        plate: String::new(),
    }
}

async fn audit_count(db: &Db, action: &str) -> i64 {
    db.audit()
        .query(
            &AuditFilter {
                action: Some(action.into()),
                ..Default::default()
            },
            PageRequest {
                page: 1,
                page_size: 100,
            },
        )
        .await
        .unwrap()
        .total
}

both_engines!(re_registration_needs_a_release, |db: Db| async move {
    let org = db
        .org_units()
        .create(
            &NewOrgUnit {
                parent_id: None,
                kind: OrgKind::Corps,
                name: "总队".into(),
                code: "310000".into(),
            },
            &audit("org.create", T0),
        )
        .await
        .unwrap()
        .id;
    let v = db
        .vehicles()
        .insert(
            &VehicleInput {
                plate: "沪A·E0001".into(),
                org_unit_id: org,
                terminal_phone: Some("13800138000".into()),
                status: "active".into(),
            },
            &audit("vehicle.create", T0),
        )
        .await
        .unwrap();
    let vehicles = db.vehicles();

    // The first registration binds the terminal.
    let r = vehicles
        .register_terminal(
            "013800138000",
            &terminal("DEV-1"),
            None,
            "CODE1",
            DEVICE,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        RegisterOutcome::Registered {
            vehicle_id: v.id.clone(),
            auth_code: "CODE1".into()
        }
    );

    // Someone else registers with the same number: refused, nothing of the vehicle changes,
    // the real terminal's code still works.
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("EVIL"),
            None,
            "EVIL1",
            ATTACKER,
            T0 + 1000,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        RegisterOutcome::AlreadyRegistered {
            vehicle_id: v.id.clone(),
            audited: true
        }
    );
    let now = vehicles.get(&Scope::All, &v.id).await.unwrap();
    assert_eq!(now.terminal_id.as_deref(), Some("DEV-1"));
    assert_eq!(now.registered_at_ms, Some(T0));
    assert_eq!(
        vehicles
            .authenticate_terminal("13800138000", "CODE1")
            .await
            .unwrap(),
        Some(v.id.clone())
    );
    assert_eq!(
        vehicles
            .authenticate_terminal("13800138000", "EVIL1")
            .await
            .unwrap(),
        None
    );

    // Within the minute: recorded, not audited again; a minute later audited again.
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("EVIL"),
            None,
            "EVIL2",
            ATTACKER,
            T0 + 30_000,
        )
        .await
        .unwrap();
    assert!(matches!(
        r,
        RegisterOutcome::AlreadyRegistered { audited: false, .. }
    ));
    assert_eq!(
        audit_count(&db, "vehicle.terminal_register_refused").await,
        1
    );
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("EVIL"),
            None,
            "EVIL3",
            ATTACKER,
            T0 + 61_001,
        )
        .await
        .unwrap();
    assert!(matches!(
        r,
        RegisterOutcome::AlreadyRegistered { audited: true, .. }
    ));
    assert_eq!(
        audit_count(&db, "vehicle.terminal_register_refused").await,
        2
    );

    // The operator sees who tried, when and from where.
    let pending = vehicles.pending_rebinds(&Scope::All).await.unwrap();
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p.vehicle_id, v.id);
    assert_eq!(
        (
            p.attempt_at_ms,
            p.attempt_addr.as_deref(),
            p.attempt_terminal_id.as_deref(),
            p.attempts,
            p.released_until_ms
        ),
        (Some(T0 + 61_001), Some(ATTACKER), Some("EVIL"), 3, None)
    );
    assert_eq!(
        p.recent_attempts.len(),
        1,
        "one row per terminal id and address"
    );
    assert_eq!(
        (
            p.recent_attempts[0].source_ip.as_str(),
            p.recent_attempts[0].count,
            p.recent_attempts[0].first_at_ms,
            p.recent_attempts[0].last_at_ms
        ),
        ("127.0.0.2", 3, T0 + 1000, T0 + 61_001)
    );
    assert_eq!(p.terminal_id.as_deref(), Some("DEV-1"));

    // A release that has run out lets nothing through.
    vehicles
        .release_rebind(
            &Scope::All,
            &v.id,
            &RebindTarget::Terminal(ApprovedTerminal {
                terminal_id: "DEV-2".into(),
                source_ip: "127.0.0.1".into(),
            }),
            T0 + 70_000,
            &audit("vehicle.rebind", T0 + 65_000),
        )
        .await
        .unwrap();
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("DEV-2"),
            None,
            "LATE",
            DEVICE,
            T0 + 70_001,
        )
        .await
        .unwrap();
    assert!(matches!(r, RegisterOutcome::AlreadyRegistered { .. }));

    // Released: exactly one re-registration gets a new code; the old one stops working.
    let p = vehicles
        .release_rebind(
            &Scope::All,
            &v.id,
            &RebindTarget::Terminal(ApprovedTerminal {
                terminal_id: "DEV-2".into(),
                source_ip: "127.0.0.1".into(),
            }),
            T0 + 200_000,
            &audit("vehicle.rebind", T0 + 100_000),
        )
        .await
        .unwrap();
    assert_eq!(p.released_until_ms, Some(T0 + 200_000));
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("DEV-2"),
            None,
            "CODE2",
            DEVICE,
            T0 + 110_000,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        RegisterOutcome::Registered {
            vehicle_id: v.id.clone(),
            auth_code: "CODE2".into()
        }
    );
    assert_eq!(
        vehicles
            .authenticate_terminal("13800138000", "CODE1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        vehicles
            .authenticate_terminal("13800138000", "CODE2")
            .await
            .unwrap(),
        Some(v.id.clone())
    );
    let now = vehicles.get(&Scope::All, &v.id).await.unwrap();
    assert_eq!(now.terminal_id.as_deref(), Some("DEV-2"));
    assert!(vehicles
        .pending_rebinds(&Scope::All)
        .await
        .unwrap()
        .is_empty());
    let r = vehicles
        .register_terminal(
            "13800138000",
            &terminal("EVIL"),
            None,
            "EVIL4",
            ATTACKER,
            T0 + 120_000,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, RegisterOutcome::AlreadyRegistered { .. }),
        "the release is used up"
    );
    assert_eq!(audit_count(&db, "vehicle.rebind").await, 2);
    assert_eq!(audit_count(&db, "vehicle.terminal_rebind").await, 1);
    assert_eq!(audit_count(&db, "vehicle.terminal_register").await, 1);
});

both_engines!(
    a_release_lets_only_the_approved_attempt_through,
    |db: Db| async move {
        let org = db
            .org_units()
            .create(
                &NewOrgUnit {
                    parent_id: None,
                    kind: OrgKind::Corps,
                    name: "总队".into(),
                    code: "310000".into(),
                },
                &audit("org.create", T0),
            )
            .await
            .unwrap()
            .id;
        let v = db
            .vehicles()
            .insert(
                &VehicleInput {
                    plate: "沪A·E0002".into(),
                    org_unit_id: org,
                    terminal_phone: Some("13800138002".into()),
                    status: "active".into(),
                },
                &audit("vehicle.create", T0),
            )
            .await
            .unwrap();
        let vehicles = db.vehicles();
        let reg = |tid: &'static str, code: &'static str, from: &'static str, at: i64| {
            let vehicles = db.vehicles();
            async move {
                vehicles
                    .register_terminal("13800138002", &terminal(tid), None, code, from, at)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(
            reg("DEV-1", "CODE1", DEVICE, T0).await,
            RegisterOutcome::Registered { .. }
        ));

        // The attacker keeps registering; the replaced device tries once, from its own address.
        for i in 0..5 {
            assert!(matches!(
                reg("EVIL", "X", ATTACKER, T0 + 1000 + i).await,
                RegisterOutcome::AlreadyRegistered { .. }
            ));
        }
        assert!(matches!(
            reg("DEV-2", "X", "127.0.0.1:40100", T0 + 2000).await,
            RegisterOutcome::AlreadyRegistered { .. }
        ));
        assert!(matches!(
            reg("EVIL", "X", ATTACKER, T0 + 3000).await,
            RegisterOutcome::AlreadyRegistered { .. }
        ));
        // Both attempts are listed, each with its own count: the attacker's retries do not hide
        // the device's.
        let p = vehicles.pending_rebinds(&Scope::All).await.unwrap();
        assert_eq!(p.len(), 1);
        let attempts = &p[0].recent_attempts;
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (attempts[0].terminal_id.as_str(), attempts[0].count),
            ("EVIL", 6)
        );
        let dev = attempts
            .iter()
            .find(|a| a.terminal_id == "DEV-2")
            .expect("the device's attempt is kept")
            .clone();
        assert_eq!(
            (dev.source_ip.as_str(), dev.addr.as_str(), dev.count),
            ("127.0.0.1", "127.0.0.1:40100", 1)
        );

        // An attempt of another vehicle cannot be named.
        let err = vehicles
            .release_rebind(
                &Scope::All,
                &v.id,
                &RebindTarget::Attempt("no-such-attempt".into()),
                T0 + 100_000,
                &audit("vehicle.rebind", T0 + 4000),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            shouhu_storage::StorageError::NotFound("attempt")
        ));

        // The operator approves the device's attempt.
        let p = vehicles
            .release_rebind(
                &Scope::All,
                &v.id,
                &RebindTarget::Attempt(dev.id.clone()),
                T0 + 100_000,
                &audit("vehicle.rebind", T0 + 5000),
            )
            .await
            .unwrap();
        assert_eq!(
            p.released_for,
            Some(ApprovedTerminal {
                terminal_id: "DEV-2".into(),
                source_ip: "127.0.0.1".into()
            })
        );
        // During the window: the attacker (its own terminal id, or the device's id from its own
        // address) is refused and recorded; so is another terminal id from the device's address.
        for (tid, from) in [
            ("EVIL", ATTACKER),
            ("DEV-2", ATTACKER),
            ("OTHER", "127.0.0.1:40200"),
        ] {
            assert!(
                matches!(
                    reg(tid, "STOLEN", from, T0 + 6000).await,
                    RegisterOutcome::AlreadyRegistered { .. }
                ),
                "{tid} from {from}"
            );
        }
        assert_eq!(
            vehicles
                .authenticate_terminal("13800138002", "STOLEN")
                .await
                .unwrap(),
            None
        );
        let p = vehicles.pending_rebinds(&Scope::All).await.unwrap();
        assert_eq!(p[0].recent_attempts.len(), 4);
        assert!(p[0].released_for.is_some(), "still released for the device");
        // The device, from the approved address (another port), gets the new code.
        assert_eq!(
            reg("DEV-2", "CODE2", "127.0.0.1:40300", T0 + 7000).await,
            RegisterOutcome::Registered {
                vehicle_id: v.id.clone(),
                auth_code: "CODE2".into()
            }
        );
        assert_eq!(
            vehicles
                .authenticate_terminal("13800138002", "CODE2")
                .await
                .unwrap(),
            Some(v.id.clone())
        );
        assert!(vehicles
            .pending_rebinds(&Scope::All)
            .await
            .unwrap()
            .is_empty());
        // The release audit names the approved attempt.
        let rows = db
            .audit()
            .query(
                &AuditFilter {
                    action: Some("vehicle.rebind".into()),
                    ..Default::default()
                },
                PageRequest {
                    page: 1,
                    page_size: 10,
                },
            )
            .await
            .unwrap();
        let d = serde_json::to_string(&rows.items[0]).unwrap();
        assert!(d.contains("DEV-2") && d.contains("127.0.0.1:40100"), "{d}");

        // Attempts are bounded per vehicle: the latest kept.
        for i in 0..(MAX_ATTEMPTS_PER_VEHICLE + 5) {
            let tid: &'static str = Box::leak(format!("E{i}").into_boxed_str());
            reg(tid, "X", ATTACKER, T0 + 10_000 + i).await;
        }
        let p = vehicles.pending_rebinds(&Scope::All).await.unwrap();
        assert_eq!(p[0].recent_attempts.len() as i64, MAX_ATTEMPTS_PER_VEHICLE);
        assert_eq!(
            p[0].recent_attempts[0].terminal_id,
            format!("E{}", MAX_ATTEMPTS_PER_VEHICLE + 4)
        );
        // Deleting the vehicle removes its attempts.
        vehicles
            .delete(&Scope::All, &v.id, &audit("vehicle.delete", T0 + 20_000))
            .await
            .unwrap();
        assert!(vehicles
            .pending_rebinds(&Scope::All)
            .await
            .unwrap()
            .is_empty());
    }
);

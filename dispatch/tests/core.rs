//! Behaviour of the sans-IO dispatch core.

use shouhu_dispatch::core::{
    Core, CoreConfig, DispatchState, EventKind, FenceDef, Link, Output, Target, UnitInfo,
};
use shouhu_dispatch::fence::Shape;
use shouhu_storage::model::{Position, PositionSource, UnitEvent, UnitKind};
use shouhu_storage::positions::flags;

const T0: i64 = 1_790_000_000_000;

fn core_with(ids: &[&str]) -> Core {
    let mut c = Core::new(CoreConfig::default());
    for id in ids {
        c.upsert_unit(UnitInfo {
            id: id.to_string(),
            kind: UnitKind::Vehicle,
            name: format!("车{id}"),
            org_unit_id: "hp".into(),
            terminal: None,
            device: None,
        });
    }
    c
}

fn pos(id: &str, t: i64, lat: f64, lon: f64) -> Position {
    Position {
        unit_id: id.into(),
        time_ms: t,
        lat,
        lon,
        speed_kmh: Some(30.0),
        heading_deg: Some(90.0),
        altitude_m: None,
        accuracy_m: None,
        source: PositionSource::Jt808,
        alarm_flags: 0,
    }
}

fn feed(c: &mut Core, p: Position, now: i64) -> Vec<Output> {
    let mut out = Vec::new();
    c.apply(
        UnitEvent::Position {
            position: p,
            live: true,
        },
        now,
        &mut out,
    )
    .unwrap();
    out
}

fn events(out: &[Output]) -> Vec<EventKind> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.kind),
            _ => None,
        })
        .collect()
}

fn history_flags(out: &[Output]) -> Vec<i64> {
    out.iter()
        .filter_map(|o| match o {
            Output::History(t) => Some(t.flags),
            _ => None,
        })
        .collect()
}

#[test]
fn nearest_ranks_by_metres_not_degrees() {
    // From (31.2, 121.4): A is 0.010° north (≈1,112 m), B is 0.011° east (≈1,046 m at 31° N).
    // By raw degrees A is nearer; on the ground B is.
    let mut c = core_with(&["a", "b", "far"]);
    feed(&mut c, pos("a", T0, 31.210, 121.400), T0);
    feed(&mut c, pos("b", T0, 31.200, 121.411), T0);
    feed(&mut c, pos("far", T0, 31.250, 121.450), T0);
    let raw_a = 0.010f64;
    let raw_b = 0.011f64;
    assert!(raw_a < raw_b, "the case must be one raw degrees get wrong");
    let got = c.nearest(31.2, 121.4, 2, |u| u.available());
    let ids: Vec<&str> = got
        .iter()
        .map(|(i, _)| c.unit(*i).unwrap().info.id.as_str())
        .collect();
    assert_eq!(ids, ["b", "a"]);
    assert!((got[0].1 - 1046.0).abs() < 10.0, "{}", got[0].1);
    assert!((got[1].1 - 1112.0).abs() < 10.0, "{}", got[1].1);
}

#[test]
fn nearest_skips_busy_and_offline_units() {
    let mut c = core_with(&["a", "b", "c"]);
    for (id, lon) in [("a", 121.401), ("b", 121.402), ("c", 121.403)] {
        feed(&mut c, pos(id, T0, 31.2, lon), T0);
    }
    let mut out = Vec::new();
    c.assign(
        "a",
        Target {
            enterprise_id: None,
            name: "x".into(),
            lat: 31.3,
            lon: 121.5,
            shape: Shape::circle(31.3, 121.5, 100.0).unwrap(),
        },
        T0,
        &mut out,
    )
    .unwrap();
    c.apply(
        UnitEvent::Offline {
            unit_id: "b".into(),
            source: PositionSource::Jt808,
        },
        T0,
        &mut out,
    )
    .unwrap();
    let got = c.nearest(31.2, 121.4, 3, |u| u.available());
    assert_eq!(got.len(), 1);
    assert_eq!(c.unit(got[0].0).unwrap().info.id, "c");
}

#[test]
fn older_and_duplicate_fixes_go_to_history_only() {
    let mut c = core_with(&["a"]);
    feed(&mut c, pos("a", T0 + 10_000, 31.2, 121.4), T0);
    let out = feed(&mut c, pos("a", T0, 31.21, 121.41), T0 + 1);
    assert_eq!(history_flags(&out), [flags::STALE]);
    let out = feed(&mut c, pos("a", T0 + 10_000, 31.2, 121.4), T0 + 2);
    assert_eq!(history_flags(&out), [flags::STALE]);
    let live = c.unit_by_id("a").unwrap().live.clone().unwrap();
    assert_eq!((live.time_ms, live.lat), (T0 + 10_000, 31.2));
}

#[test]
fn backfill_never_moves_the_live_marker() {
    let mut c = core_with(&["a"]);
    feed(&mut c, pos("a", T0, 31.2, 121.4), T0);
    let mut out = Vec::new();
    c.apply(
        UnitEvent::Position {
            position: pos("a", T0 + 60_000, 31.25, 121.45),
            live: false,
        },
        T0 + 1,
        &mut out,
    )
    .unwrap();
    assert_eq!(history_flags(&out), [flags::BACKFILL]);
    assert_eq!(c.unit_by_id("a").unwrap().live.as_ref().unwrap().lat, 31.2);
}

#[test]
fn jumps_are_held_back_until_confirmed_and_zero_fixes_ignored() {
    let mut c = core_with(&["a"]);
    feed(&mut c, pos("a", T0, 31.2, 121.4), T0);
    // 50 km in 10 s.
    let out = feed(&mut c, pos("a", T0 + 10_000, 31.65, 121.4), T0 + 10_000);
    assert_eq!(history_flags(&out), [flags::JUMP]);
    assert_eq!(c.unit_by_id("a").unwrap().last_flags, flags::JUMP);
    assert_eq!(c.unit_by_id("a").unwrap().live.as_ref().unwrap().lat, 31.2);
    // The next fix agrees with the jumped one: the device really is there.
    let out = feed(&mut c, pos("a", T0 + 20_000, 31.6505, 121.4), T0 + 20_000);
    assert_eq!(history_flags(&out), [0]);
    assert_eq!(
        c.unit_by_id("a").unwrap().live.as_ref().unwrap().lat,
        31.6505
    );
    let out = feed(&mut c, pos("a", T0 + 30_000, 0.0, 0.0), T0 + 30_000);
    assert_eq!(history_flags(&out), [flags::ZERO_FIX]);
    assert_eq!(
        c.unit_by_id("a").unwrap().live.as_ref().unwrap().lat,
        31.6505
    );
}

#[test]
fn geofence_enter_and_leave_fire_once_each() {
    let mut c = core_with(&["a"]);
    c.set_fences(vec![FenceDef {
        id: "f1".into(),
        name: "黄浦区".into(),
        kind: "district".into(),
        org_unit_id: "hp".into(),
        shape: Shape::from_geojson(
            r#"{"type":"Polygon","coordinates":[[[121.45,31.20],[121.50,31.20],[121.50,31.25],[121.45,31.25],[121.45,31.20]]]}"#,
        )
        .unwrap(),
    }]);
    let mut all = Vec::new();
    let track = [121.40, 121.44, 121.46, 121.47, 121.48, 121.52, 121.53];
    for (k, lon) in track.iter().enumerate() {
        let t = T0 + k as i64 * 60_000;
        all.extend(events(&feed(&mut c, pos("a", t, 31.22, *lon), t)));
    }
    let fence_events: Vec<_> = all
        .into_iter()
        .filter(|k| matches!(k, EventKind::GeofenceEnter | EventKind::GeofenceLeave))
        .collect();
    assert_eq!(
        fence_events,
        [EventKind::GeofenceEnter, EventKind::GeofenceLeave]
    );
}

#[test]
fn assigned_unit_is_on_scene_when_it_enters_the_target() {
    let mut c = core_with(&["a"]);
    feed(&mut c, pos("a", T0, 31.2, 121.40), T0);
    let mut out = Vec::new();
    c.assign(
        "a",
        Target {
            enterprise_id: Some("e1".into()),
            name: "某化工".into(),
            lat: 31.2,
            lon: 121.42,
            shape: Shape::circle(31.2, 121.42, 150.0).unwrap(),
        },
        T0,
        &mut out,
    )
    .unwrap();
    assert_eq!(c.unit_by_id("a").unwrap().state(), DispatchState::Assigned);
    let out = feed(&mut c, pos("a", T0 + 60_000, 31.2, 121.41), T0 + 60_000);
    assert!(!out.iter().any(|o| matches!(o, Output::Arrived { .. })));
    let out = feed(
        &mut c,
        pos("a", T0 + 120_000, 31.2003, 121.4199),
        T0 + 120_000,
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Arrived { unit_id, .. } if unit_id == "a")));
    assert_eq!(c.unit_by_id("a").unwrap().state(), DispatchState::OnScene);
    let mut out = Vec::new();
    assert!(c.clear("a", T0 + 200_000, &mut out).unwrap());
    assert_eq!(c.unit_by_id("a").unwrap().state(), DispatchState::Idle);
}

#[test]
fn link_goes_unknown_then_offline_and_back_online() {
    let mut c = core_with(&["a"]);
    assert_eq!(c.unit_by_id("a").unwrap().link, Link::Unknown);
    let out = feed(&mut c, pos("a", T0, 31.2, 121.4), T0);
    assert_eq!(events(&out), [EventKind::Online]);
    let cfg = c.config().clone();
    let mut out = Vec::new();
    c.tick(T0 + cfg.online_timeout_ms[0] - 1, &mut out);
    assert!(out.is_empty());
    c.tick(T0 + cfg.online_timeout_ms[0] + 1, &mut out);
    assert_eq!(c.unit_by_id("a").unwrap().link, Link::Unknown);
    assert!(events(&out).is_empty());
    c.tick(T0 + cfg.offline_after_ms + 1, &mut out);
    assert_eq!(c.unit_by_id("a").unwrap().link, Link::Offline);
    assert_eq!(events(&out), [EventKind::Offline]);
    let out = feed(&mut c, pos("a", T0 + 700_000, 31.2, 121.4), T0 + 700_000);
    assert_eq!(events(&out), [EventKind::Online]);
    // A disconnect is offline at once.
    let mut out = Vec::new();
    c.apply(
        UnitEvent::Offline {
            unit_id: "a".into(),
            source: PositionSource::Jt808,
        },
        T0 + 700_001,
        &mut out,
    )
    .unwrap();
    assert_eq!(events(&out), [EventKind::Offline]);
}

#[test]
fn an_officer_stays_online_while_any_of_its_devices_talks() {
    let mut c = core_with(&["o"]);
    let mut out = Vec::new();
    for s in [PositionSource::Gb28181, PositionSource::App] {
        c.apply(
            UnitEvent::Online {
                unit_id: "o".into(),
                source: s,
            },
            T0,
            &mut out,
        )
        .unwrap();
    }
    c.apply(
        UnitEvent::Offline {
            unit_id: "o".into(),
            source: PositionSource::Gb28181,
        },
        T0 + 1,
        &mut out,
    )
    .unwrap();
    assert_eq!(c.unit_by_id("o").unwrap().link, Link::Online);
}

#[test]
fn sos_is_raised_once_per_press() {
    let mut c = core_with(&["a"]);
    let mut p = pos("a", T0, 31.2, 121.4);
    p.alarm_flags = 1;
    let count = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Sos { .. }))
            .count()
    };
    assert_eq!(count(&feed(&mut c, p.clone(), T0)), 1);
    p.time_ms += 10_000;
    assert_eq!(
        count(&feed(&mut c, p.clone(), T0 + 10_000)),
        0,
        "still held"
    );
    assert!(c.unit_by_id("a").unwrap().sos);
    let mut out = Vec::new();
    c.set_sos("a", false, &mut out).unwrap();
    p.alarm_flags = 0;
    p.time_ms += 10_000;
    feed(&mut c, p.clone(), T0 + 20_000);
    p.alarm_flags = 1;
    p.time_ms += 10_000;
    assert_eq!(count(&feed(&mut c, p, T0 + 30_000)), 1, "pressed again");
}

#[test]
fn unknown_units_are_refused() {
    let mut c = core_with(&[]);
    let mut out = Vec::new();
    assert!(c
        .apply(
            UnitEvent::Position {
                position: pos("x", T0, 31.2, 121.4),
                live: true
            },
            T0,
            &mut out,
        )
        .is_err());
    assert!(out.is_empty());
}

#[test]
fn bbox_query_finds_units_inside() {
    let mut c = core_with(&["in", "out"]);
    feed(&mut c, pos("in", T0, 31.22, 121.47), T0);
    feed(&mut c, pos("out", T0, 31.40, 121.47), T0);
    let got: Vec<String> = c
        .in_bbox([121.45, 31.20, 121.50, 31.25])
        .into_iter()
        .map(|i| c.unit(i).unwrap().info.id.clone())
        .collect();
    assert_eq!(got, ["in"]);
}

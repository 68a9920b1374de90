//! Recordings through the HTTP API on both engines: the retention job with a simulated clock
//! (deletes exactly the expired, un-held recordings — a reviewer's hold, an open case and a
//! unit's longer retention keep theirs; a shorter one inherited from the brigade expires a
//! town's), links with the system's suggestions from geofences and positions, their audit
//! rows, and data scope. The recordings are indexed through the repository with their blobs in
//! the server's store (the live recorder is covered end to end in `tests/tests/recording.rs`).

mod common;

use common::{complete_inspection as complete, huangpu_officers, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use shouhu_storage::model::{Position, PositionSource};
use shouhu_storage::positions::TrackPoint;
use shouhu_storage::recordings::DAY_MS;

/// A closed recording (see [`common::closed_recording`]).
async fn recording(
    s: &Server,
    org: &str,
    officer: Option<&str>,
    start_ms: i64,
    minutes: i64,
) -> String {
    common::closed_recording(s, org, officer, start_ms, minutes).await
}

/// An inspection of `enterprise` by `officers`, left in progress; its id.
async fn inspection(s: &Server, token: &str, enterprise: &str, officers: &[String]) -> String {
    let (st, b) = s
        .send(
            Method::POST,
            token,
            "/api/v1/inspections",
            json!({"enterprise_id": enterprise, "kind": "planned", "officer_ids": officers}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn link(s: &Server, token: &str, rec: &str, inspection: &str) -> StatusCode {
    s.send(
        Method::POST,
        token,
        &format!("/api/v1/recordings/{rec}/links"),
        json!({ "inspection_id": inspection }),
    )
    .await
    .0
}

/// Like `on_both!`, on a server whose retention floor (`recording.min_retention_days`, 365 in
/// production) is lowered to one day, so a unit's short retention (30 days) can be exercised.
macro_rules! on_both_short_retention {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            async fn start(engine: common::Engine) -> Option<Server> {
                common::start_with(engine, |c| c.recording.min_retention_days = 1).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(start(common::Engine::Sqlite).await.unwrap()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = start(common::Engine::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

on_both_short_retention!(
    retention_deletes_exactly_the_expired_unheld_recordings,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let head = s.login("hp_head").await;
        let officer = s.login("hp_officer").await;
        let officers = huangpu_officers(&s, &head).await;
        let steel = s.enterprise_id("黄浦钢结构").await;
        let chem = s.enterprise_id("黄浦化工").await;
        let now = s.state.now();
        let ago = |days: i64| now - days * DAY_MS;
        let (hp, xh) = (s.huangpu.id.clone(), s.xuhui.id.clone());
        let town = s
            .state
            .db
            .org_units()
            .list()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.name == "外滩街道")
            .unwrap()
            .id;

        let old = recording(&s, &hp, None, ago(400), 2).await;
        let held = recording(&s, &hp, None, ago(400), 1).await;
        let of_case = recording(&s, &hp, None, ago(400), 1).await;
        let of_inspection = recording(&s, &hp, None, ago(400), 1).await;
        let recent = recording(&s, &hp, None, ago(100), 1).await;
        let long_unit = recording(&s, &xh, None, ago(400), 1).await;
        let town_rec = recording(&s, &town, None, ago(100), 1).await;

        // A reviewer's hold needs a reason.
        let (st, b) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/recordings/{held}/hold"),
                json!({"held": true}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let (st, b) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/recordings/{held}/hold"),
                json!({"held": true, "reason": "举报复核中"}),
            )
            .await;
        assert_eq!((st, &b["held"]), (StatusCode::OK, &json!(true)), "{b}");
        // A recording linked to an inspection whose case is open; another to one without a case.
        let insp = inspection(&s, &officer, &steel, &officers).await;
        let other = inspection(&s, &officer, &chem, &officers).await;
        complete(&s, &officer, &insp).await;
        assert_eq!(link(&s, &head, &of_case, &insp).await, StatusCode::OK);
        assert_eq!(
            link(&s, &head, &of_inspection, &other).await,
            StatusCode::OK
        );
        let (st, c) = s
        .send(
            Method::POST,
            &officer,
            "/api/v1/cases",
            json!({"enterprise_id": steel, "inspection_ids": [insp], "title": "未按规定设置泄爆装置案",
                   "violation": "粉尘爆炸危险场所除尘系统未设泄爆装置", "responsible_person": "王强",
                   "party_id_number": "31010119800101123X", "party_phone": "13800138000", "proposed_fine_cents": 5_000_000}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{c}");
        // Xuhui keeps recordings 1000 days; Huangpu 30 days, which its town inherits.
        for (unit, days) in [(&xh, 1000), (&hp, 30)] {
            let (st, b) = s
                .send(
                    Method::PUT,
                    &admin,
                    &format!("/api/v1/recordings/retention/{unit}"),
                    json!({ "days": days }),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
        let (st, _) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/recordings/retention/{hp}"),
                json!({"days": 1}),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::FORBIDDEN,
            "retention is the administrator's"
        );
        let (st, _) = s
            .send(
                Method::PUT,
                &admin,
                &format!("/api/v1/recordings/retention/{hp}"),
                json!({"days": 0}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        let (_, d) = s
            .get(&admin, &format!("/api/v1/recordings/{town_rec}"))
            .await;
        assert_eq!(d["retention_days"], 30, "{d}");

        let report = shouhu_api::recording_jobs::retention_run(&s.state, s.state.now())
            .await
            .unwrap();
        let mut deleted = report.deleted.clone();
        deleted.sort();
        let mut expected = vec![
            old.clone(),
            of_inspection.clone(),
            town_rec.clone(),
            recent.clone(),
        ];
        // `recent` (100 days) is past Huangpu's 30 days too.
        expected.sort();
        assert_eq!(deleted, expected);
        assert!(report.failed.is_empty());
        for id in &expected {
            let (st, _) = s.get(&admin, &format!("/api/v1/recordings/{id}")).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{id} deleted");
            let key = shouhu_media::recorder::segment_key(id, 0);
            assert!(
                !s.state.blobs.exists(&key).await.unwrap(),
                "{id}'s file deleted"
            );
        }
        for id in [&held, &of_case, &long_unit] {
            let (st, d) = s.get(&admin, &format!("/api/v1/recordings/{id}")).await;
            assert_eq!(st, StatusCode::OK, "{id} kept");
            let key = d["segments"][0]["blob_key"].as_str().unwrap().to_string();
            assert!(
                s.state.blobs.exists(&key).await.unwrap(),
                "{id}'s file kept"
            );
        }
        let rows = s.audit("recording.delete").await;
        assert_eq!(rows.len(), expected.len(), "every deletion on record");
        // Released from the hold, it goes at the next run; the simulated clock moves 700 days on
        // and Xuhui's 1000 days are over too; the open case still keeps its recording.
        let (st, _) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/recordings/{held}/hold"),
                json!({"held": false}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        s.clock.advance(700 * DAY_MS);
        let report = shouhu_api::recording_jobs::retention_run(&s.state, s.state.now())
            .await
            .unwrap();
        let mut deleted = report.deleted;
        deleted.sort();
        let mut expected = vec![held.clone(), long_unit.clone()];
        expected.sort();
        assert_eq!(deleted, expected);
        let admin = s.login("admin").await;
        let (st, _) = s
            .get(&admin, &format!("/api/v1/recordings/{of_case}"))
            .await;
        assert_eq!(st, StatusCode::OK, "the open case's recording is kept");
    }
);

on_both!(links_suggestions_audit_and_scope, |s: Server| async move {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let xh = s.login("xh_head").await;
    let operator = s.login("operator").await;
    let officers = huangpu_officers(&s, &head).await;
    let steel = s.enterprise_id("黄浦钢结构").await;
    let chem = s.enterprise_id("黄浦化工").await;
    let now = s.state.now();
    // The steel works' geofence: 150 m around (31.23, 121.47).
    s.state
        .db
        .geofences()
        .insert(
            &shouhu_storage::geofences::Geofence {
                id: shouhu_storage::new_id(),
                name: "黄浦钢结构".into(),
                kind: "enterprise".into(),
                org_unit_id: s.huangpu.id.clone(),
                enterprise_id: Some(steel.clone()),
                geometry: None,
                center_lat: Some(31.23),
                center_lon: Some(121.47),
                radius_m: Some(150.0),
                created_at_ms: now,
                updated_at_ms: now,
            },
            &shouhu_storage::audit::AuditEntry::new(
                &shouhu_storage::audit::Actor::default(),
                "geofence.create",
                now,
            ),
        )
        .await
        .unwrap();
    // Inspections of both enterprises by the two officers, open from now on.
    let insp = inspection(&s, &officer, &steel, &officers).await;
    let other = inspection(&s, &officer, &chem, &officers).await;
    let fix = |lat: f64, lon: f64, t: i64| TrackPoint {
        position: Position {
            unit_id: officers[0].clone(),
            time_ms: t,
            lat,
            lon,
            speed_kmh: None,
            heading_deg: None,
            altitude_m: None,
            accuracy_m: Some(5.0),
            source: PositionSource::Gb28181,
            alarm_flags: 0,
        },
        flags: 0,
        received_at_ms: t,
    };
    // The officer walks into the steel works 5 minutes into the recording.
    s.state
        .db
        .positions()
        .insert_batch(&[
            fix(31.25, 121.50, now + 60_000),
            fix(31.2301, 121.4701, now + 300_000),
        ])
        .await
        .unwrap();
    let inside = recording(&s, &s.huangpu.id, Some(&officers[0]), now, 10).await;
    // Before the inspections began, and another officer's: nothing to suggest.
    let before = recording(
        &s,
        &s.huangpu.id,
        Some(&officers[0]),
        now - 3 * 3_600_000,
        10,
    )
    .await;
    let others = recording(&s, &s.huangpu.id, Some(&officers[1]), now, 10).await;

    let (st, links) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/recordings/{inside}/suggestions"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{links}");
    let links = links.as_array().unwrap().clone();
    assert_eq!(
        links.len(),
        1,
        "only the steel works' inspection: {links:?}"
    );
    assert_eq!(
        (
            links[0]["inspection_id"].as_str(),
            links[0]["state"].as_str()
        ),
        (Some(insp.as_str()), Some("suggested"))
    );
    assert!(links[0]["created_by"].is_null(), "suggested by the system");
    for r in [&before, &others] {
        let (_, l) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/recordings/{r}/suggestions"),
                json!({}),
            )
            .await;
        assert_eq!(l, json!([]), "{r}");
    }
    // A suggestion is not a link: the inspection's recordings list only confirmed ones.
    let (_, found) = s
        .get(&head, &format!("/api/v1/recordings?inspection_id={insp}"))
        .await;
    assert_eq!(found["total"], 0);
    // The reviewer confirms it, links the other inspection by hand, then unlinks that one.
    assert_eq!(link(&s, &head, &inside, &insp).await, StatusCode::OK);
    assert_eq!(link(&s, &officer, &inside, &other).await, StatusCode::OK);
    let (st, l) = s
        .send(
            Method::DELETE,
            &head,
            &format!("/api/v1/recordings/{inside}/links/{other}"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{l}");
    let (_, found) = s
        .get(&head, &format!("/api/v1/recordings?inspection_id={insp}"))
        .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["id"], json!(inside));
    let (_, found) = s
        .get(&head, &format!("/api/v1/recordings?enterprise_id={steel}"))
        .await;
    assert_eq!(found["total"], 1);
    let (_, found) = s
        .get(&head, &format!("/api/v1/recordings?enterprise_id={chem}"))
        .await;
    assert_eq!(found["total"], 0, "unlinked");
    // A dismissed suggestion is not proposed again.
    let (_, l) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/recordings/{inside}/suggestions"),
            json!({}),
        )
        .await;
    let states: Vec<(&str, &str)> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["inspection_id"].as_str().unwrap(),
                x["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        states.contains(&(insp.as_str(), "linked"))
            && states.contains(&(other.as_str(), "dismissed")),
        "{l}"
    );
    // Every link change on record with the account and the recording.
    let links = s.audit("recording.link").await;
    assert_eq!(links.len(), 2);
    assert!(links
        .iter()
        .all(|a| a.target_id.as_deref() == Some(inside.as_str())));
    assert!(links
        .iter()
        .any(|a| a.username.as_deref() == Some("hp_head")));
    assert!(links
        .iter()
        .any(|a| a.username.as_deref() == Some("hp_officer")));
    let unlinks = s.audit("recording.unlink").await;
    assert_eq!(unlinks.len(), 1);
    assert_eq!(unlinks[0].username.as_deref(), Some("hp_head"));

    // Refusals: an unknown inspection, a role that may only watch, another district.
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/recordings/{inside}/links"),
            json!({"inspection_id": "nope"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "inspection_id");
    assert_eq!(
        link(&s, &operator, &inside, &insp).await,
        StatusCode::FORBIDDEN
    );
    let (st, _) = s
        .get(&operator, &format!("/api/v1/recordings/{inside}"))
        .await;
    assert_eq!(st, StatusCode::OK, "the command centre may watch");
    let (st, _) = s.get(&xh, &format!("/api/v1/recordings/{inside}")).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another district does not see it"
    );
    let (_, l) = s.get(&xh, "/api/v1/recordings").await;
    assert_eq!(l["total"], 0);
    assert_eq!(link(&s, &xh, &inside, &insp).await, StatusCode::NOT_FOUND);
    let (st, b) = s.get(&head, "/api/v1/recordings?status=paused").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // Search by officer and time.
    let (_, l) = s
        .get(
            &head,
            &format!(
                "/api/v1/recordings?officer_id={}&from={}&to={}",
                officers[0],
                now - 60_000,
                now + 60_000
            ),
        )
        .await;
    let ids: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [inside.as_str()]);
});

/// A camera's MP4 file (H.264 baseline without B-frames and AAC, as body cameras write them).
fn camera_file(dir: &std::path::Path, faststart: bool) -> Vec<u8> {
    let out = dir.join(format!("camera-{faststart}.mp4"));
    let mut c = std::process::Command::new("ffmpeg");
    c.args([
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=16000",
        "-t",
        "3.2",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "32k",
    ]);
    if faststart {
        c.args(["-movflags", "+faststart"]);
    }
    let st = c
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg)");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

async fn import(
    s: &Server,
    token: &str,
    query: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let r = s
        .client()
        .post(s.url(&format!("/api/v1/recordings/import?{query}")))
        .bearer_auth(token)
        .header("content-type", "video/mp4")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

async fn camera_files_are_imported(s: Server) {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let officers = huangpu_officers(&s, &head).await;
    let device = "31010100001320000077";
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/recorders",
            json!({"device_id": device, "name": "记录仪077", "org_unit_id": s.huangpu.id, "officer_id": officers[0]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let dir = tempfile::tempdir().unwrap();
    let file = camera_file(dir.path(), false);
    let filmed = s.state.now() - 3_600_000;
    let q = format!("device_id={device}&started_at={filmed}&file_name=20261204_0930.MP4");
    let (st, r) = import(&s, &officer, &q, file.clone()).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            r["source"].as_str(),
            r["trigger_kind"].as_str(),
            r["status"].as_str()
        ),
        (Some("upload"), Some("import"), Some("closed"))
    );
    assert_eq!(r["video_codec"], "h264");
    assert_eq!(r["audio_codec"], "aac");
    assert_eq!(r["started_at_ms"], filmed);
    // Filmed an hour ago, before the recorder was bound: no officer then.
    assert!(r["officer_id"].is_null(), "{r}");
    assert!(r["head_signature"].as_str().is_some());
    let (_, d) = s.get(&head, &format!("/api/v1/recordings/{id}")).await;
    let segs = d["segments"].as_array().unwrap().clone();
    assert!(segs.len() >= 3, "1 s segments of a 3.2 s file: {d}");
    let mut total = 0.0;
    for seg in &segs {
        let n = seg["seq"].as_i64().unwrap();
        let mut bytes = Vec::new();
        for part in ["init.mp4", "media.m4s"] {
            let r = s
                .client()
                .get(s.url(&format!(
                    "/api/v1/recordings/{id}/segments/{n}/{part}?audio=original"
                )))
                .bearer_auth(&head)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            bytes.extend_from_slice(&r.bytes().await.unwrap());
        }
        let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(hex, seg["sha256"].as_str().unwrap());
        let p = dir.path().join(format!("seg{n}.mp4"));
        std::fs::write(&p, &bytes).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,duration",
                "-of",
                "json",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let codecs: Vec<&str> = v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, ["h264", "aac"]);
        // The video's end (an AAC frame may run past the cut by less than its 64 ms).
        let end: f64 = v["streams"][0]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (end - seg["end_90k"].as_f64().unwrap() / 90_000.0).abs() <= 0.041,
            "{v} {seg}"
        );
        total += (seg["end_90k"].as_f64().unwrap() - seg["start_90k"].as_f64().unwrap()) / 90_000.0;
    }
    assert!((total - 3.2).abs() <= 0.041, "{total}");
    // Filmed while bound: the officer of that time.
    let later = camera_file(dir.path(), true);
    let now = s.state.now();
    let (st, r) = import(
        &s,
        &officer,
        &format!("device_id={device}&started_at={now}"),
        later.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["officer_id"], json!(officers[0]));
    // The same file again: refused, pointing at the first import.
    let (st, b) = import(&s, &officer, &q, file.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["recording_id"], json!(id));
    // Not an MP4, an MP4 cut short, no time: 422 with the reason, nothing kept.
    let (st, b) = import(&s, &officer, &q, b"GIF89a not a video at all".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["message"].as_str().unwrap().contains("moov"), "{b}");
    let cut = later[..later.len() / 2].to_vec();
    let (st, b) = import(
        &s,
        &officer,
        &format!("device_id={device}&started_at={now}"),
        cut,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("outside the file"),
        "{b}"
    );
    let (st, b) = import(
        &s,
        &officer,
        &format!("device_id={device}&started_at=x"),
        later.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["message"].as_str().unwrap().contains("started_at"), "{b}");
    let (_, l) = s
        .get(&head, &format!("/api/v1/recordings?device_id={device}"))
        .await;
    assert_eq!(l["total"], 2, "only the two good imports: {l}");
    // Another district cannot import for this recorder; the imports are on record.
    let xh = s.login("xh_head").await;
    let (st, _) = import(
        &s,
        &xh,
        &format!("device_id={device}&started_at={now}"),
        later,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let rows = s.audit("recording.import").await;
    assert_eq!(
        rows.iter()
            .filter(|a| a.username.as_deref() == Some("hp_officer"))
            .count(),
        2,
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_files_are_imported_sqlite() {
    let s = common::start_with(common::Engine::Sqlite, |c| c.recording.segment_secs = 1)
        .await
        .unwrap();
    camera_files_are_imported(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_files_are_imported_postgres() {
    if let Some(s) =
        common::start_with(common::Engine::Postgres, |c| c.recording.segment_secs = 1).await
    {
        camera_files_are_imported(s).await;
    }
}

//! Administrators and reviewers held to their scope (issue 20, items 3 and 5), on both
//! engines. Each attack is performed through the HTTP API and each refusal is checked three
//! ways: the answer (404 out of scope, 403 wrong role or corps-wide setting), the data re-read
//! unchanged, and the `denied` audit row naming the target.
//!
//! - A district administrator (an `admin` account of Huangpu) tries the corps root's and
//!   Xuhui's retention, a retention below `recording.min_retention_days`, org units outside its
//!   subtree, another district's audit rows, and the corps-wide item list, caps, deadlines and
//!   case-review rules.
//! - An officer releases the hold on a recording that films them and unlinks it; a brigade head
//!   filmed by a recording tries the same; a head of another district tries it out of scope; a
//!   reviewer does it (allowed, audited). A link to an inspection outside the caller's scope is
//!   listed blanked and cannot be removed.

mod common;

use common::{huangpu_officers, Server, PW};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter, AuditRecord};
use shouhu_storage::recordings::{NewRecording, NewSegment};
use shouhu_storage::PageRequest;

/// A new account `username` with `role` in `org_unit`; its id.
async fn account(s: &Server, username: &str, role: &str, org_unit: &str) -> String {
    let hash = shouhu_api::auth::password::hash(&s.state.cfg.auth, PW)
        .await
        .unwrap();
    let setup = AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("setup".into()),
            ip: None,
        },
        "setup",
        s.state.now(),
    );
    s.state
        .db
        .accounts()
        .create(
            &NewAccount {
                username: username.into(),
                display_name: username.into(),
                password_hash: hash,
                role: role.into(),
                org_unit_id: org_unit.into(),
                must_change_password: false,
            },
            &setup,
        )
        .await
        .unwrap()
        .id
}

async fn account_id(s: &Server, username: &str) -> String {
    s.state
        .db
        .accounts()
        .by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// `denied` audit rows about `target_id`.
async fn denied(s: &Server, target_id: &str) -> Vec<AuditRecord> {
    s.state
        .db
        .audit()
        .query(
            &AuditFilter {
                outcome: Some("denied".into()),
                target_id: Some(target_id.into()),
                ..Default::default()
            },
            PageRequest::new(None, Some(100)),
        )
        .await
        .unwrap()
        .items
}

/// `denied` audit rows of `username`.
async fn denied_of(s: &Server, username: &str) -> Vec<AuditRecord> {
    s.state
        .db
        .audit()
        .query(
            &AuditFilter {
                outcome: Some("denied".into()),
                username: Some(username.into()),
                ..Default::default()
            },
            PageRequest::new(None, Some(100)),
        )
        .await
        .unwrap()
        .items
}

async fn retention_of(s: &Server, unit: &str) -> i64 {
    s.state
        .db
        .recordings()
        .retention_days(unit, -1)
        .await
        .unwrap()
}

async fn put_retention(s: &Server, token: &str, unit: &str, days: i64) -> (StatusCode, Value) {
    s.send(
        Method::PUT,
        token,
        &format!("/api/v1/recordings/retention/{unit}"),
        json!({ "days": days }),
    )
    .await
}

on_both!(
    district_admin_cannot_set_retention_outside_its_district,
    |s: Server| async move {
        account(&s, "hp_admin", "admin", &s.huangpu.id).await;
        let hp_admin = s.login("hp_admin").await;
        let admin = s.login("admin").await;
        let (corps, hp, xh) = (s.corps.id.clone(), s.huangpu.id.clone(), s.xuhui.id.clone());
        // The corps keeps 400 days everywhere; Xuhui 500.
        assert_eq!(
            put_retention(&s, &admin, &corps, 400).await.0,
            StatusCode::OK
        );
        assert_eq!(put_retention(&s, &admin, &xh, 500).await.0, StatusCode::OK);

        // The corps root and another district: out of scope, 404, audited, unchanged.
        for (unit, before) in [(&corps, 400), (&xh, 500)] {
            let (st, b) = put_retention(&s, &hp_admin, unit, 1).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
            assert_eq!(b["code"], "not_found");
            assert_eq!(retention_of(&s, unit).await, before);
            let rows = denied(&s, unit).await;
            assert_eq!(rows.len(), 1, "one denied row for {unit}: {rows:?}");
            assert_eq!(rows[0].username.as_deref(), Some("hp_admin"));
        }
        // Its own district, below the floor: 422 naming the floor, for the corps too.
        for token in [&hp_admin, &admin] {
            let (st, b) = put_retention(&s, token, &hp, 364).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
            assert!(b["message"].as_str().unwrap().contains("365"), "{b}");
            assert_eq!(b["errors"][0]["field"], "days");
            assert_eq!(retention_of(&s, &hp).await, 400, "inherited, unchanged");
        }
        // At or above the floor in its own subtree: allowed and audited.
        let (st, b) = put_retention(&s, &hp_admin, &hp, 365).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(retention_of(&s, &hp).await, 365);
        assert_eq!(retention_of(&s, &corps).await, 400);
        let rows = s.audit("recording.retention").await;
        assert_eq!(rows[0].username.as_deref(), Some("hp_admin"));
        assert_eq!(rows[0].target_id.as_deref(), Some(hp.as_str()));
        // Not an administrator: 403 before anything else.
        let head = s.login("hp_head").await;
        assert_eq!(
            put_retention(&s, &head, &hp, 400).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(retention_of(&s, &hp).await, 365);
    }
);

on_both!(
    district_admin_edits_org_units_of_its_subtree_only,
    |s: Server| async move {
        account(&s, "hp_admin", "admin", &s.huangpu.id).await;
        let hp_admin = s.login("hp_admin").await;
        let units = || async { s.state.db.org_units().list().await.unwrap() };
        let before = units().await;
        // A brigade under the corps, a town under Xuhui: parents out of scope.
        for (parent, kind, code) in [
            (&s.corps.id, "brigade", "310199"),
            (&s.xuhui.id, "town", "310104099"),
        ] {
            let (st, b) = s
                .send(
                    Method::POST,
                    &hp_admin,
                    "/api/v1/org-units",
                    json!({"parent_id": parent, "kind": kind, "name": "伪造单位", "code": code}),
                )
                .await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
            assert_eq!(denied(&s, parent).await.len(), 1, "denied row for {parent}");
        }
        // A new root: corps-wide.
        let (st, b) = s
            .send(
                Method::POST,
                &hp_admin,
                "/api/v1/org-units",
                json!({"parent_id": null, "kind": "corps", "name": "第二总队", "code": "320000"}),
            )
            .await;
        assert_eq!(
            (st, b["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("corps_only")),
            "{b}"
        );
        assert_eq!(b["message"], "corps-wide settings are for corps accounts");
        // Renaming another district or the corps.
        for unit in [&s.xuhui.id, &s.corps.id] {
            let (st, b) = s
                .send(
                    Method::PATCH,
                    &hp_admin,
                    &format!("/api/v1/org-units/{unit}"),
                    json!({"name": "改名", "code": "999999"}),
                )
                .await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
        }
        assert_eq!(denied(&s, &s.xuhui.id).await.len(), 2);
        assert_eq!(denied(&s, &s.corps.id).await.len(), 2);
        assert_eq!(units().await.len(), before.len(), "nothing created");
        let after = units().await;
        for u in &before {
            let now = after.iter().find(|a| a.id == u.id).unwrap();
            assert_eq!(
                (&now.name, &now.code),
                (&u.name, &u.code),
                "{} unchanged",
                u.name
            );
        }
        // Its own subtree: a town under Huangpu, and renaming it.
        let (st, b) = s
            .send(
                Method::POST,
                &hp_admin,
                "/api/v1/org-units",
                json!({"parent_id": s.huangpu.id, "kind": "town", "name": "南京东路街道", "code": "310101002"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let town = b["id"].as_str().unwrap().to_string();
        let (st, b) = s
            .send(
                Method::PATCH,
                &hp_admin,
                &format!("/api/v1/org-units/{town}"),
                json!({"name": "南京东路街道办", "code": "310101002"}),
            )
            .await;
        assert_eq!(
            (st, &b["name"]),
            (StatusCode::OK, &json!("南京东路街道办")),
            "{b}"
        );
    }
);

on_both!(
    district_admin_reads_the_audit_rows_of_its_subtree,
    |s: Server| async move {
        account(&s, "hp_admin", "admin", &s.huangpu.id).await;
        let hp_admin = s.login("hp_admin").await;
        let admin = s.login("admin").await;
        let xh = s.login("xh_head").await;
        let hp_ent = s.enterprise_id("黄浦钢结构").await;
        let xh_ent = s.enterprise_id("徐汇粉末冶金").await;
        // Xuhui works on its own enterprise, and tries Huangpu's.
        let (_, mut e) = s.get(&xh, &format!("/api/v1/enterprises/{xh_ent}")).await;
        e["principal_name"] = json!("钱七");
        let (st, b) = s
            .send(
                Method::PUT,
                &xh,
                &format!("/api/v1/enterprises/{xh_ent}"),
                e,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, _) = s.get(&xh, &format!("/api/v1/enterprises/{hp_ent}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let _ = s.login("hp_head").await;

        let rows = |token: String, q: &'static str| {
            let s = &s;
            async move {
                let (st, b) = s
                    .get(&token, &format!("/api/v1/audit?page_size=200{q}"))
                    .await;
                assert_eq!(st, StatusCode::OK, "{b}");
                b
            }
        };
        // The corps sees Xuhui's login and edit.
        let all = rows(admin.clone(), "&username=xh_head").await;
        assert!(all["total"].as_i64().unwrap() >= 3, "{all}");
        // Huangpu's administrator: Xuhui's own work is not about Huangpu…
        let b = rows(hp_admin.clone(), "&action=enterprise.update").await;
        assert_eq!(b["total"], 0, "{b}");
        let b = rows(hp_admin.clone(), "&action=auth.login&username=xh_head").await;
        assert_eq!(b["total"], 0, "{b}");
        let b = rows(hp_admin.clone(), "").await;
        for r in b["items"].as_array().unwrap() {
            assert_ne!(r["target_id"], json!(xh_ent), "{r}");
            assert_ne!(r["target_id"], json!(s.xuhui.id), "{r}");
        }
        // …but its attempt on Huangpu's enterprise is, and so are Huangpu's own logins.
        let b = rows(hp_admin.clone(), "&username=xh_head").await;
        let items = b["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{b}");
        assert_eq!(items[0]["outcome"], "denied");
        assert_eq!(items[0]["target_id"], json!(hp_ent));
        let b = rows(hp_admin.clone(), "&action=auth.login&username=hp_head").await;
        assert_eq!(b["total"], 1, "{b}");
        // Filtering by another district's target id finds nothing.
        let b = rows(hp_admin.clone(), "").await;
        let total = b["total"].as_i64().unwrap();
        assert!(total >= 3, "{b}");
        let b = s
            .get(&hp_admin, &format!("/api/v1/audit?target_id={xh_ent}"))
            .await
            .1;
        assert_eq!(b["total"], 0, "{b}");
        let b = s
            .get(&admin, &format!("/api/v1/audit?target_id={xh_ent}"))
            .await
            .1;
        assert!(b["total"].as_i64().unwrap() >= 1, "{b}");
    }
);

on_both!(
    corps_wide_settings_are_for_corps_accounts,
    |s: Server| async move {
        account(&s, "hp_admin", "admin", &s.huangpu.id).await;
        let hp_admin = s.login("hp_admin").await;
        let admin = s.login("admin").await;
        let read = |path: &'static str| {
            let (s, admin) = (&s, admin.clone());
            async move {
                let (st, b) = s.get(&admin, path).await;
                assert_eq!(st, StatusCode::OK, "{b}");
                b
            }
        };
        let items = read("/api/v1/inspection-items?page_size=200").await;
        let caps = read("/api/v1/inspection-caps").await;
        let deadlines = read("/api/v1/enforcement/deadlines").await;
        let (st, rule) = s
            .send(
                Method::POST,
                &admin,
                "/api/v1/case-review-rules",
                json!({"code": "R90", "title": "卷内文书齐全", "points": 5}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{rule}");
        let rules = read("/api/v1/case-review-rules").await;

        let item = &items["items"][0];
        let item_id = item["id"].as_str().unwrap().to_string();
        let mut edited = item.clone();
        edited["title"] = json!("篡改的检查事项");
        let mut new_caps = caps.clone();
        new_caps[0]["yearly_cap"] = json!(0);
        let step = deadlines[0]["step"].as_str().unwrap().to_string();
        let rule_id = rule["id"].as_str().unwrap().to_string();
        let attempts: Vec<(Method, String, Value)> = vec![
            (
                Method::POST,
                "/api/v1/inspection-items".into(),
                json!({"code": "X-99", "sector": "*", "category": "其他", "title": "新增事项",
                       "legal_basis": "无", "source": "无", "effective_date": "2026-01-01"}),
            ),
            (
                Method::PUT,
                format!("/api/v1/inspection-items/{item_id}"),
                edited,
            ),
            (
                Method::PUT,
                "/api/v1/inspection-caps".into(),
                new_caps.clone(),
            ),
            (
                Method::PUT,
                format!("/api/v1/enforcement/deadlines/{step}"),
                json!({"days": 1}),
            ),
            (
                Method::POST,
                "/api/v1/case-review-rules".into(),
                json!({"code": "R91", "title": "新增规则", "points": 1}),
            ),
            (
                Method::PUT,
                format!("/api/v1/case-review-rules/{rule_id}"),
                json!({"code": "R90", "title": "篡改的规则", "points": 100}),
            ),
        ];
        for (m, path, body) in &attempts {
            let (st, b) = s.send(m.clone(), &hp_admin, path, body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}: {b}");
            assert_eq!(b["code"], "corps_only", "{b}");
            assert_eq!(b["message"], "corps-wide settings are for corps accounts");
        }
        assert_eq!(denied_of(&s, "hp_admin").await.len(), attempts.len());
        // Nothing changed.
        assert_eq!(read("/api/v1/inspection-items?page_size=200").await, items);
        assert_eq!(read("/api/v1/inspection-caps").await, caps);
        assert_eq!(read("/api/v1/enforcement/deadlines").await, deadlines);
        assert_eq!(read("/api/v1/case-review-rules").await, rules);
        // A brigade head lacks the role: 403 too.
        let head = s.login("hp_head").await;
        let (st, _) = s
            .send(
                Method::PUT,
                &head,
                "/api/v1/inspection-caps",
                new_caps.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // The corps's administrator may.
        let (st, b) = s
            .send(
                Method::PUT,
                &admin,
                "/api/v1/inspection-caps",
                new_caps.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(read("/api/v1/inspection-caps").await[0]["yearly_cap"], 0);
    }
);

/// A closed one-segment recording of `officer` in `org`; its id.
async fn recording(s: &Server, org: &str, officer: Option<&str>) -> String {
    let id = shouhu_storage::new_id();
    let repo = s.state.db.recordings();
    let start = s.state.now() - 3_600_000;
    repo.open(
        &NewRecording {
            id: id.clone(),
            device_id: "31010000001320000001".into(),
            channel_id: "31010000001310000001".into(),
            officer_id: officer.map(str::to_string),
            org_unit_id: org.into(),
            source: "live".into(),
            trigger: "on_demand".into(),
            started_at_ms: start,
        },
        None,
    )
    .await
    .unwrap();
    let data = format!("segment 0 of {id}").into_bytes();
    let key = shouhu_media::recorder::segment_key(&id, 0);
    s.state.blobs.put(&key, &data).await.unwrap();
    let (sha256, sm3) = shouhu_storage::evidence::digests(&data);
    repo.add_segment(
        &id,
        &NewSegment {
            seq: 0,
            start_90k: 0,
            end_90k: 60 * 90_000,
            blob_key: key,
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
    let signer = s.state.signer.clone();
    repo.close(&id, &move |m: &[u8]| signer.sign(m))
        .await
        .unwrap()
        .unwrap();
    id
}

/// An officer of `unit` bound to `account` (none: unbound), registered by `head`; its id.
async fn officer(s: &Server, head: &str, unit: &str, cert: &str, account: Option<&str>) -> String {
    let (st, b) = s
        .send(
            Method::POST,
            head,
            "/api/v1/officers",
            json!({"name": format!("警员{cert}"), "certificate_no": cert, "org_unit_id": unit, "account_id": account}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["id"].as_str().unwrap().to_string()
}

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

async fn hold(s: &Server, token: &str, rec: &str, held: bool) -> (StatusCode, Value) {
    let body = if held {
        json!({"held": true, "reason": "案件办理中"})
    } else {
        json!({"held": false})
    };
    s.send(
        Method::PUT,
        token,
        &format!("/api/v1/recordings/{rec}/hold"),
        body,
    )
    .await
}

async fn unlink(s: &Server, token: &str, rec: &str, insp: &str) -> (StatusCode, Value) {
    s.send(
        Method::DELETE,
        token,
        &format!("/api/v1/recordings/{rec}/links/{insp}"),
        json!(null),
    )
    .await
}

async fn link_state(s: &Server, rec: &str, insp: &str) -> String {
    s.state
        .db
        .recordings()
        .links(rec)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.inspection_id == insp)
        .map(|l| l.state)
        .unwrap_or_default()
}

async fn held(s: &Server, rec: &str) -> bool {
    s.state
        .db
        .recordings()
        .get(&shouhu_storage::org_units::Scope::All, rec)
        .await
        .unwrap()
        .held
}

on_both!(
    removing_protection_is_for_reviewers_never_the_filmed_officer,
    |s: Server| async move {
        let head = s.login("hp_head").await;
        account(&s, "hp_reviewer", "reviewer", &s.huangpu.id).await;
        let reviewer = s.login("hp_reviewer").await;
        let off = s.login("hp_officer").await;
        let xh = s.login("xh_head").await;
        let hp_officer_acc = account_id(&s, "hp_officer").await;
        let head_acc = account_id(&s, "hp_head").await;
        let others = huangpu_officers(&s, &head).await;
        let filmed = officer(&s, &head, &s.huangpu.id, "HP-0101", Some(&hp_officer_acc)).await;
        let filmed_head = officer(&s, &head, &s.huangpu.id, "HP-0102", Some(&head_acc)).await;
        let steel = s.enterprise_id("黄浦钢结构").await;
        let insp = inspection(&s, &off, &steel, &[filmed.clone(), others[0].clone()]).await;
        let rec = recording(&s, &s.huangpu.id, Some(&filmed)).await;
        let rec_of_head = recording(&s, &s.huangpu.id, Some(&filmed_head)).await;

        // The officer adds protection (the normal flow).
        let (st, b) = s
            .send(
                Method::POST,
                &off,
                &format!("/api/v1/recordings/{rec}/links"),
                json!({"inspection_id": insp}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(hold(&s, &off, &rec, true).await.0, StatusCode::OK);
        assert!(held(&s, &rec).await);
        // …but cannot remove it: the role does not grant it.
        let (st, b) = hold(&s, &off, &rec, false).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let (st, b) = unlink(&s, &off, &rec, &insp).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        assert!(held(&s, &rec).await, "still held");
        assert_eq!(link_state(&s, &rec, &insp).await, "linked", "still linked");

        // A brigade head filmed by a recording may not remove its protection either.
        assert_eq!(hold(&s, &head, &rec_of_head, true).await.0, StatusCode::OK);
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/recordings/{rec_of_head}/links"),
                json!({"inspection_id": insp}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, b) = hold(&s, &head, &rec_of_head, false).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let (st, b) = unlink(&s, &head, &rec_of_head, &insp).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        assert!(held(&s, &rec_of_head).await);
        assert_eq!(link_state(&s, &rec_of_head, &insp).await, "linked");
        let rows = denied(&s, &rec_of_head).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows
            .iter()
            .all(|r| r.username.as_deref() == Some("hp_head")));

        // Another district's head: out of scope, 404, audited.
        let (st, _) = hold(&s, &xh, &rec, false).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = unlink(&s, &xh, &rec, &insp).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(held(&s, &rec).await);
        assert_eq!(link_state(&s, &rec, &insp).await, "linked");
        let rows = denied(&s, &rec).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows
            .iter()
            .all(|r| r.username.as_deref() == Some("xh_head")));

        // A reviewer of the district may; each change is audited.
        let (st, b) = hold(&s, &reviewer, &rec, false).await;
        assert_eq!((st, &b["held"]), (StatusCode::OK, &json!(false)), "{b}");
        let (st, b) = unlink(&s, &reviewer, &rec, &insp).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert!(!held(&s, &rec).await);
        assert_eq!(link_state(&s, &rec, &insp).await, "dismissed");
        let release = s.audit("recording.hold").await;
        assert_eq!(release[0].username.as_deref(), Some("hp_reviewer"));
        assert_eq!(release[0].target_id.as_deref(), Some(rec.as_str()));
        assert!(
            release[0].details.contains("\"held\":false"),
            "{:?}",
            release[0]
        );
        let unlinked: Vec<_> = s
            .audit("recording.unlink")
            .await
            .into_iter()
            .filter(|r| r.outcome == "success")
            .collect();
        assert_eq!(unlinked.len(), 1);
        assert_eq!(unlinked[0].username.as_deref(), Some("hp_reviewer"));
        // The brigade head may for a recording that does not film them.
        assert_eq!(hold(&s, &off, &rec, true).await.0, StatusCode::OK);
        assert_eq!(hold(&s, &head, &rec, false).await.0, StatusCode::OK);
    }
);

on_both!(
    links_to_inspections_outside_the_scope_are_blanked_and_kept,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let head = s.login("hp_head").await;
        let xh = s.login("xh_head").await;
        let xh_officers = [
            officer(&s, &xh, &s.xuhui.id, "XH-0001", None).await,
            officer(&s, &xh, &s.xuhui.id, "XH-0002", None).await,
        ];
        let powder = s.enterprise_id("徐汇粉末冶金").await;
        let xh_insp = inspection(&s, &xh, &powder, &xh_officers).await;
        let xh_code = s
            .get(&xh, &format!("/api/v1/inspections/{xh_insp}"))
            .await
            .1["code"]
            .as_str()
            .unwrap()
            .to_string();
        let rec = recording(&s, &s.huangpu.id, None).await;
        // The corps links a Huangpu recording to a Xuhui inspection.
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                &format!("/api/v1/recordings/{rec}/links"),
                json!({"inspection_id": xh_insp}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b[0]["inspection_code"], json!(xh_code));
        // Huangpu sees that a link exists, not which inspection.
        for path in [
            format!("/api/v1/recordings/{rec}/links"),
            format!("/api/v1/recordings/{rec}"),
        ] {
            let (st, b) = s.get(&head, &path).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            let links = if b.is_array() {
                b.clone()
            } else {
                b["links"].clone()
            };
            assert_eq!(links.as_array().unwrap().len(), 1, "{b}");
            assert_eq!(links[0]["state"], "linked");
            for f in [
                "inspection_id",
                "inspection_code",
                "enterprise_id",
                "enterprise_name",
            ] {
                assert_eq!(links[0][f], "", "{f} blanked: {b}");
            }
            assert!(!b.to_string().contains(&xh_code), "{b}");
            assert!(!b.to_string().contains(&xh_insp), "{b}");
        }
        // …and cannot remove it: the inspection is out of scope.
        let (st, b) = unlink(&s, &head, &rec, &xh_insp).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(link_state(&s, &rec, &xh_insp).await, "linked");
        let rows = denied(&s, &xh_insp).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].username.as_deref(), Some("hp_head"));
        // The corps sees it whole.
        let (_, b) = s
            .get(&admin, &format!("/api/v1/recordings/{rec}/links"))
            .await;
        assert_eq!(b[0]["inspection_code"], json!(xh_code));
    }
);

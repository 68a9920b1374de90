//! The daily enforcement workflows through the HTTP API, on both engines: inspections with the
//! inspect-once cap, the hazard rectification loop, cases from filing to closing, and the
//! open-case confidentiality rule both ways. Each happy path is followed by its refusals (wrong
//! state, wrong role, wrong org unit, missing approval, over the cap).

mod common;

use common::{complete_inspection, huangpu_officers, item_ids, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use shouhu_storage::enforcement::{shanghai_date, DAY_MS};

fn date_in(s: &Server, days: i64) -> String {
    shanghai_date(s.state.now() + days * DAY_MS)
}

/// Start an inspection of `enterprise`; (status, body).
async fn start(
    s: &Server,
    token: &str,
    enterprise: &str,
    officers: &[String],
    reason: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"enterprise_id": enterprise, "kind": "planned", "officer_ids": officers});
    if let Some(r) = reason {
        body["over_cap_reason"] = r.into();
    }
    s.send(Method::POST, token, "/api/v1/inspections", body)
        .await
}

/// A completed inspection with one passed item; its id.
async fn completed_inspection(
    s: &Server,
    token: &str,
    enterprise: &str,
    officers: &[String],
) -> String {
    let (st, b) = start(s, token, enterprise, officers, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    complete_inspection(s, token, &id).await;
    id
}

on_both!(inspection_and_hazard_loop, |s: Server| async move {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let xh = s.login("xh_head").await;
    let officers = huangpu_officers(&s, &head).await;
    let steel = s.enterprise_id("黄浦钢结构").await;
    let xh_firm = s.enterprise_id("徐汇粉末冶金").await;

    // Refusals at the start: one officer, another district's enterprise, an unknown kind.
    let (st, b) = start(&s, &officer, &steel, &officers[..1], None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "officer_ids");
    // Another district's enterprise: 404 as reading it would be (and a denied audit row).
    let (st, b) = start(&s, &officer, &xh_firm, &officers, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            "/api/v1/inspections",
            json!({"enterprise_id": steel, "kind": "whim", "officer_ids": officers}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "kind");

    let (st, b) = start(&s, &officer, &steel, &officers, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert!(b["code"].as_str().unwrap().starts_with("JC310101"), "{b}");
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["officers"].as_array().unwrap().len(), 2);
    // Another district does not see it.
    let (st, _) = s.get(&xh, &format!("/api/v1/inspections/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let items = item_ids(&s, &officer).await;
    let (st, b) = s
        .send(
            Method::PUT,
            &officer,
            &format!("/api/v1/inspections/{id}/results"),
            json!({"results": [
                {"item_id": items[0], "result": "pass"},
                {"item_id": items[1], "result": "hazard", "note": "除尘系统未设泄爆装置"},
                {"item_id": "no-such-item", "result": "maybe"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"results[2].result") && fields.contains(&"results[2].item_id"),
        "{b}"
    );
    // Nothing half-written: the valid rows of the refused request were not stored.
    let (_, b) = s.get(&officer, &format!("/api/v1/inspections/{id}")).await;
    assert_eq!(b["results"].as_array().unwrap().len(), 0);

    let (st, b) = s
        .send(
            Method::PUT,
            &officer,
            &format!("/api/v1/inspections/{id}/results"),
            json!({"results": [
                {"item_id": items[0], "result": "pass"},
                {"item_id": items[1], "result": "hazard", "note": "除尘系统未设泄爆装置"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["results"].as_array().unwrap().len(), 2);

    // An item marked as hazard without a hazard recorded blocks completion.
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/complete"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "results");

    let hz = |deadline: String| json!({"item_id": items[1], "level": "general", "description": "除尘系统未设泄爆装置", "rectification_deadline": deadline});
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/hazards"),
            hz(date_in(&s, -3)),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "rectification_deadline");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/hazards"),
            hz("2026-13-45".into()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (st, hazard) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/hazards"),
            hz(date_in(&s, 5)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{hazard}");
    assert!(
        hazard["order_number"]
            .as_str()
            .unwrap()
            .starts_with("黄浦应急责改〔"),
        "{hazard}"
    );
    assert_eq!(hazard["status"], "rectifying");
    let hid = hazard["id"].as_str().unwrap().to_string();
    // Re-inspection due = deadline + the 10-day window of the deadline table.
    let t = |k: &str| shouhu_api::clock::parse_time(hazard[k].as_str().unwrap()).unwrap();
    assert_eq!(
        t("reinspection_due") - t("rectification_deadline"),
        10 * DAY_MS
    );

    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/complete"),
            json!({"summary": "发现一般隐患1项"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "completed");
    assert!(b["record_number"].as_str().unwrap().contains("检记"), "{b}");
    // Wrong state: no hazards after completion, no second completion, no cancelling.
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/hazards"),
            hz(date_in(&s, 5)),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["code"], "invalid_state");
    assert_eq!(b["state"], "completed");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{id}/cancel"),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");

    // The workbench lists the hazard as due this week.
    let (st, wb) = s.get(&head, "/api/v1/workbench").await;
    assert_eq!(st, StatusCode::OK, "{wb}");
    assert!(
        wb["hazards_due"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == hid.as_str()),
        "{wb}"
    );
    assert_eq!(wb["hazard_counts"]["open"], 1);

    // Rectification loop; another district can neither see nor touch it.
    let (st, _) = s.get(&xh, &format!("/api/v1/hazards/{hid}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .send(
            Method::POST,
            &xh,
            &format!("/api/v1/hazards/{hid}/rectification"),
            json!({"note": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/rectification"),
            json!({"note": ""}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "note");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/rectification"),
            json!({"note": "已加装泄爆片"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "rectified");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/rectification"),
            json!({"note": "again"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["state"], "rectified");

    // A failed re-inspection with a new deadline re-orders the rectification.
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/reinspection"),
            json!({"result": "failed", "note": "泄爆片规格不符", "new_deadline": date_in(&s, 7)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "rectifying");
    s.clock.advance(2 * DAY_MS);
    // Two days later: a new session (the old one ended while idle).
    let officer = s.login("hp_officer").await;
    let op = s.login("operator").await;
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/reinspection"),
            json!({"result": "passed", "note": "整改到位，同意销号"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "closed");
    assert!(
        b["reinspection_number"].as_str().unwrap().contains("复查"),
        "{b}"
    );
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/hazards/{hid}/reinspection"),
            json!({"result": "passed", "note": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["state"], "closed");
    assert_eq!(s.audit("hazard.reinspection").await.len(), 2);
    assert_eq!(s.audit("inspection.complete").await.len(), 1);

    // Roles: the operator reads but does not inspect.
    let (st, _) = start(&s, &op, &steel, &officers, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
});

on_both!(inspect_once_cap, |s: Server| async move {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let xh = s.login("xh_head").await;
    let officers = huangpu_officers(&s, &head).await;
    let steel = s.enterprise_id("黄浦钢结构").await;

    // Industry & trade, grade A: one visit a year.
    let (st, b) = s
        .send(
            Method::PUT,
            &head,
            &format!("/api/v1/enterprises/{steel}/supervision"),
            json!({"grade": "E"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (st, b) = s
        .send(
            Method::PUT,
            &head,
            &format!("/api/v1/enterprises/{steel}/supervision"),
            json!({"grade": "A"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["yearly_cap"], 1);
    assert_eq!(b["visits_this_year"], 0);

    completed_inspection(&s, &officer, &steel, &officers).await;
    let (st, b) = start(&s, &officer, &steel, &officers, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["code"], "over_cap");
    assert_eq!(b["visits"], 1);
    assert_eq!(b["cap"], 1);
    assert_eq!(b["errors"][0]["field"], "over_cap_reason");
    let (st, b) = start(
        &s,
        &officer,
        &steel,
        &officers,
        Some("群众举报粉尘超标，需再次检查"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["over_cap"], true);
    assert_eq!(b["over_cap_filing"]["status"], "pending");
    let filing = b["over_cap_filing"]["id"].as_str().unwrap().to_string();

    // Routed to the supervising unit (Huangpu), not to Xuhui; officers cannot acknowledge.
    let (_, b) = s.get(&xh, "/api/v1/over-cap-filings?status=pending").await;
    assert_eq!(b["total"], 0, "{b}");
    let (_, b) = s
        .get(&head, "/api/v1/over-cap-filings?status=pending")
        .await;
    assert_eq!(b["total"], 1, "{b}");
    let (st, _) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/over-cap-filings/{filing}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .send(
            Method::POST,
            &xh,
            &format!("/api/v1/over-cap-filings/{filing}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/over-cap-filings/{filing}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "acknowledged");
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/over-cap-filings/{filing}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");

    // A cancelled visit does not count; caps are editable by the corps only.
    let (st, _) = s
        .send(
            Method::PUT,
            &head,
            "/api/v1/inspection-caps",
            json!([{"sector": "05", "grade": "A", "yearly_cap": 5}]),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let admin = s.login("admin").await;
    let (st, b) = s
        .send(
            Method::PUT,
            &admin,
            "/api/v1/inspection-caps",
            json!([{"sector": "05", "grade": "A", "yearly_cap": 5}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = start(&s, &officer, &steel, &officers, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["over_cap"], false);

    // One visit left under the cap, four officers start at once: exactly one gets it, the
    // others are over the cap (the count and the insert are serialized on both engines).
    let (st, b) = s
        .send(
            Method::PUT,
            &head,
            &format!("/api/v1/enterprises/{steel}/supervision"),
            json!({"grade": "A"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let visits = b["visits_this_year"].as_i64().unwrap();
    let (st, b) = s
        .send(
            Method::PUT,
            &admin,
            "/api/v1/inspection-caps",
            json!([{"sector": "05", "grade": "A", "yearly_cap": visits + 1}]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let racers = (0..4).map(|_| start(&s, &officer, &steel, &officers, None));
    let results = futures::future::join_all(racers).await;
    let ok = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(st, b)| *st == StatusCode::OK || b["code"] == "over_cap"),
        "{results:?}"
    );
});

on_both!(case_workflow_and_confidentiality, |s: Server| async move {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let xh = s.login("xh_head").await;
    let corps = s.login("admin").await;
    let officers = huangpu_officers(&s, &head).await;
    let steel = s.enterprise_id("黄浦钢结构").await;
    let chem = s.enterprise_id("黄浦化工").await;
    let insp = completed_inspection(&s, &officer, &steel, &officers).await;
    let other = completed_inspection(&s, &officer, &chem, &officers).await;

    let case = |ids: Vec<&String>| {
        json!({"enterprise_id": steel, "inspection_ids": ids, "title": "未按规定设置泄爆装置案",
               "violation": "粉尘爆炸危险场所除尘系统未设泄爆装置", "responsible_person": "王强",
               "party_id_number": "31010119800101123X", "party_phone": "13800138000", "proposed_fine_cents": 5_000_000})
    };
    // Refusals: an inspection of another enterprise; a bad ID number; no inspection at all.
    let (st, b) = s
        .send(Method::POST, &officer, "/api/v1/cases", case(vec![&other]))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "inspection_ids");
    let mut bad = case(vec![&insp]);
    bad["party_id_number"] = "12345".into();
    let (st, b) = s.send(Method::POST, &officer, "/api/v1/cases", bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "party_id_number");

    let (st, c) = s
        .send(Method::POST, &officer, "/api/v1/cases", case(vec![&insp]))
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["status"], "filing_review");
    assert_eq!(c["party_id_number"], "31010119800101123X");
    assert_eq!(c["proposed_fine_cents"], 5_000_000);

    // Sealed at rest with SM4-GCM: the database holds no clear value.
    let (pid, phone, fine) = s.state.db.cases().sealed_values(&id).await.unwrap();
    for v in [&pid, &phone, &fine] {
        let v = v.as_deref().unwrap();
        assert!(v.starts_with("v2:"), "{v}");
        assert!(
            !v.contains("31010119800101123X")
                && !v.contains("13800138000")
                && !v.contains("5000000")
        );
    }
    // Audit rows never carry the sensitive values either.
    let created = s.audit("case.create").await;
    assert!(!created[0]
        .details
        .to_string()
        .contains("31010119800101123X"));

    // Open case: confidential. Xuhui sees nothing; the corps sees it.
    let (st, _) = s.get(&xh, &format!("/api/v1/cases/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, l) = s.get(&xh, "/api/v1/cases").await;
    assert_eq!(l["total"], 0, "{l}");
    let (st, b) = s.get(&corps, &format!("/api/v1/cases/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // Filing approval: not by an officer; approved by the head.
    let (st, _) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/filing-decision"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/filing-decision"),
            json!({"approve": false}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejecting needs a reason: {b}"
    );
    let (st, c) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/filing-decision"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "open");
    assert!(
        c["number"].as_str().unwrap().starts_with("黄浦应急案〔"),
        "{c}"
    );
    assert_eq!(c["documents"][0]["doc_type"], "D36");
    assert_eq!(c["documents"][0]["status"], "approved");

    // Missing approval: no decision before an approved penalty notice; no transfer before D32.
    let pen = json!({"company_fine_cents": 5_000_000, "person_fine_cents": 800_000});
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/penalty"),
            pen.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["state"], "open");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/documents"),
            json!({"doc_type": "D33"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/documents"),
            json!({"doc_type": "D99"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "doc_type");
    let (st, notice) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/documents"),
            json!({"doc_type": "D15", "content": "拟处罚款"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{notice}");
    let (st, record) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/documents"),
            json!({"doc_type": "D02", "content": "询问笔录"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{record}");
    // Another district cannot approve even by guessing the ids.
    let (st, _) = s
        .send(
            Method::POST,
            &xh,
            &format!(
                "/api/v1/cases/{id}/documents/{}/approve",
                notice["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!(
                "/api/v1/cases/{id}/documents/{}/approve",
                notice["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, c) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/penalty"),
            pen.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert!(
        c["decision_number"].as_str().unwrap().contains("应急罚〔"),
        "{c}"
    );
    assert_eq!(c["person_fine_cents"], 800_000);
    let (st, _) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/penalty"),
            pen,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, c) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/payment"),
            json!({"paid_cents": 5_800_000}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");

    // Closing comes after every other document is approved.
    let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/closing-request"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains(record["number"].as_str().unwrap()),
        "{b}"
    );
    let (st, _) = s
        .send(
            Method::POST,
            &head,
            &format!(
                "/api/v1/cases/{id}/documents/{}/approve",
                record["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, c) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/cases/{id}/closing-request"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "closing_review");
    let (st, c) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/closing-decision"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "closed");
    assert!(
        c["documents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "approved"),
        "{c}"
    );

    // Closed: every unit reads it, but only its own unit writes.
    let (st, b) = s.get(&xh, &format!("/api/v1/cases/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (_, l) = s.get(&xh, "/api/v1/cases").await;
    assert_eq!(l["total"], 1, "{l}");
    let (st, _) = s
        .send(
            Method::POST,
            &xh,
            &format!("/api/v1/cases/{id}/closing-decision"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Reads of case details are audited.
    assert!(s.audit("case.view").await.len() >= 2);

    // The closed case's approved documents print as one batch: every document in the ZIP,
    // each listed in SHA256SUMS with its digest.
    let approved = c["documents"].as_array().unwrap().len();
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/document-batches",
            json!({"kind": "case_documents", "ids": [id]}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let batch = b["id"].as_str().unwrap().to_string();
    let status = s.wait_batch(&head, b).await;
    assert_eq!(status["failed"], json!([]), "{status}");
    let r = reqwest::Client::new()
        .get(s.url(&format!("/api/v1/document-batches/{batch}/archive")))
        .bearer_auth(&head)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut sums = String::new();
    std::io::Read::read_to_string(&mut z.by_name("SHA256SUMS").unwrap(), &mut sums).unwrap();
    assert_eq!(sums.lines().count(), approved, "{sums}");
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(name).unwrap(), &mut body).unwrap();
        assert!(body.starts_with(b"%PDF"), "{name}");
        assert_eq!(hex::encode(sha2::Sha256::digest(&body)), digest, "{name}");
    }

    // The electronic case file: uploaded by the handling unit once closed.
    let upload = |token: String, body: Vec<u8>| {
        let url = s.url(&format!(
            "/api/v1/cases/{id}/case-file?filename=%E6%A1%88%E5%8D%B7.pdf"
        ));
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
    let (st, b) = upload(xh.clone(), pdf.clone()).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another district may read a closed case, not add to it: {b}"
    );
    let (st, b) = upload(officer.clone(), b"MZ not a pdf".to_vec()).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    let (st, item) = upload(officer.clone(), pdf.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{item}");
    assert_eq!(item["filename"], "案卷.pdf");
    assert_eq!(
        item["sha256"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&pdf))
    );

    // Review against the rule set: only corps reviewers; every active rule scored.
    let (_, rules) = s.get(&corps, "/api/v1/case-review-rules").await;
    let rules = rules.as_array().unwrap().clone();
    let full: Vec<Value> = rules
        .iter()
        .map(|r| json!({"rule_id": r["id"], "score": r["points"], "finding": "符合要求"}))
        .collect();
    let (st, _) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/cases/{id}/reviews"),
            json!({"findings": full}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, b) = s
        .send(
            Method::POST,
            &corps,
            &format!("/api/v1/cases/{id}/reviews"),
            json!({"findings": full[1..]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "findings");
    let mut over = full.clone();
    over[1]["score"] = json!(rules[1]["points"].as_i64().unwrap() + 1);
    let (st, b) = s
        .send(
            Method::POST,
            &corps,
            &format!("/api/v1/cases/{id}/reviews"),
            json!({"findings": over}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (st, r) = s
        .send(
            Method::POST,
            &corps,
            &format!("/api/v1/cases/{id}/reviews"),
            json!({"findings": full, "exemplary": true, "comment": "案卷规范"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["grade"], "excellent");
    assert_eq!(r["total"], r["max_total"]);
    // Exemplary cases are readable city-wide.
    let (_, ex) = s.get(&xh, "/api/v1/exemplary-cases").await;
    assert!(
        ex.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "{ex}"
    );
});

on_both!(
    work_orders_between_corps_and_brigades,
    |s: Server| async move {
        let corps = s.login("admin").await;
        let hp = s.login("hp_head").await;
        let officer = s.login("hp_officer").await;
        let order = |deadline: String, to: Vec<&String>| {
            json!({"title": "关于开展有限空间作业专项检查的通知", "body": "请于期限内报送检查情况。",
               "deadline": deadline, "recipient_unit_ids": to})
        };
        // Refusals: a role without work orders; a deadline in the past; no recipient.
        let (st, _) = s
            .send(
                Method::POST,
                &officer,
                "/api/v1/work-orders",
                order(date_in(&s, 7), vec![&s.huangpu.id]),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, b) = s
            .send(
                Method::POST,
                &corps,
                "/api/v1/work-orders",
                order(date_in(&s, -1), vec![]),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let fields: Vec<&str> = b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&"deadline") && fields.contains(&"recipient_unit_ids"),
            "{b}"
        );

        let (st, o) = s
            .send(
                Method::POST,
                &corps,
                "/api/v1/work-orders",
                order(date_in(&s, 7), vec![&s.huangpu.id, &s.xuhui.id]),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{o}");
        let id = o["id"].as_str().unwrap().to_string();
        assert!(o["number"].as_str().unwrap().starts_with("GD"), "{o}");
        assert_eq!(o["recipients"].as_array().unwrap().len(), 2);
        // Each brigade sees it in its inbox; the corps in its outbox.
        let (_, inbox) = s.get(&hp, "/api/v1/work-orders?box=inbox").await;
        assert_eq!(inbox["total"], 1, "{inbox}");
        let (_, outbox) = s.get(&corps, "/api/v1/work-orders?box=outbox").await;
        assert_eq!(outbox["total"], 1, "{outbox}");

        // Wrong state: no reply before receipt.
        let (st, b) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{id}/reply"),
                json!({"text": "已完成"}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["state"], "dispatched");
        let (st, _) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{id}/receive"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{id}/reply"),
                json!({"text": "已检查12家企业。"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        // Only the sender returns or accepts.
        let hp_unit = s.huangpu.id.clone();
        let (st, _) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{id}/recipients/{hp_unit}/accept"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, b) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/recipients/{hp_unit}/return"),
                json!({"reason": "请附检查清单"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, _) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{id}/reply"),
                json!({"text": "已检查12家企业，清单见附件。"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/recipients/{hp_unit}/accept"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);

        // Xuhui has not replied: a reminder reaches it, closing without force is refused.
        let (st, b) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/remind"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let xh_row = b["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unit_id"] == s.xuhui.id.as_str())
            .unwrap()
            .clone();
        assert_eq!(xh_row["reminders"], 1);
        let (st, b) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/close"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        // Past the deadline the order shows overdue.
        s.clock.advance(8 * DAY_MS);
        let corps = s.login("admin").await;
        let xh = s.login("xh_head").await;
        let (_, b) = s.get(&corps, &format!("/api/v1/work-orders/{id}")).await;
        assert_eq!(b["overdue"], true, "{b}");
        let (st, _) = s
            .send(
                Method::POST,
                &xh,
                &format!("/api/v1/work-orders/{id}/receive"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = s
            .send(
                Method::POST,
                &xh,
                &format!("/api/v1/work-orders/{id}/reply"),
                json!({"text": "已完成"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let xh_unit = s.xuhui.id.clone();
        let (st, _) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/recipients/{xh_unit}/accept"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, b) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/close"),
                json!({"note": "全部办结"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "closed");
        assert_eq!(b["overdue"], false);
        let (st, _) = s
            .send(
                Method::POST,
                &corps,
                &format!("/api/v1/work-orders/{id}/close"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert!(s.audit("work_order.").await.len() >= 10);
    }
);

on_both!(
    plans_proposal_review_and_execution,
    |s: Server| async move {
        use shouhu_storage::plans::Period;
        let head = s.login("hp_head").await;
        let officer = s.login("hp_officer").await;
        let xh = s.login("xh_head").await;
        let officers = huangpu_officers(&s, &head).await;
        let steel = s.enterprise_id("黄浦钢结构").await;
        let chem = s.enterprise_id("黄浦化工").await;
        let xh_firm = s.enterprise_id("徐汇粉末冶金").await;
        let month = Period::month_of(s.state.now()).label;

        // Data the proposal draws on: a hazard at the steel works due for re-inspection this month,
        // the chemical works under grade D and never inspected.
        let (st, b) = start(&s, &officer, &steel, &officers, None).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let insp = b["id"].as_str().unwrap().to_string();
        let items = item_ids(&s, &officer).await;
        let (st, b) = s
            .send(
                Method::PUT,
                &officer,
                &format!("/api/v1/inspections/{insp}/results"),
                json!({"results": [{"item_id": items[0], "result": "hazard"}]}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, b) = s
        .send(
            Method::POST,
            &officer,
            &format!("/api/v1/inspections/{insp}/hazards"),
            json!({"item_id": items[0], "level": "general", "description": "配电箱未接地", "rectification_deadline": date_in(&s, 3)}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let hazard = b["id"].as_str().unwrap().to_string();
        let (st, b) = s
            .send(
                Method::POST,
                &officer,
                &format!("/api/v1/inspections/{insp}/complete"),
                json!({"summary": "已责令整改"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, b) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/enterprises/{chem}/supervision"),
                json!({"grade": "D"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");

        // Officers do not plan; bad periods are named.
        let (st, _) = s
            .send(
                Method::POST,
                &officer,
                "/api/v1/plans/proposal",
                json!({"period": month}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        for bad in ["2027-13", "2027-Q1", "someday"] {
            let (st, b) = s
                .send(
                    Method::POST,
                    &head,
                    "/api/v1/plans/proposal",
                    json!({"period": bad}),
                )
                .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
            assert_eq!(b["errors"][0]["field"], "period");
        }

        let (st, b) = s
            .send(
                Method::POST,
                &head,
                "/api/v1/plans/proposal",
                json!({"period": month}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let plan = b["id"].as_str().unwrap().to_string();
        assert_eq!(b["status"], "draft");
        assert_eq!(b["generated"], true);
        assert_eq!(b["org_unit_id"], s.huangpu.id.as_str());
        let visits = b["visits"].as_array().unwrap();
        assert_eq!(visits.len(), 2, "{b}");
        let v_steel = visits
            .iter()
            .find(|v| v["enterprise_id"] == steel.as_str())
            .unwrap();
        assert_eq!(v_steel["reason"], "hazard_recheck");
        assert_eq!(v_steel["hazard_id"], hazard.as_str());
        let v_chem = visits
            .iter()
            .find(|v| v["enterprise_id"] == chem.as_str())
            .unwrap();
        assert_eq!(v_chem["reason"], "grade");
        assert!(v_chem["inspection_code"].is_null());
        let (chem_visit, steel_visit) = (
            v_chem["id"].as_str().unwrap().to_string(),
            v_steel["id"].as_str().unwrap().to_string(),
        );

        // One plan per unit and period.
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                "/api/v1/plans/proposal",
                json!({"period": month}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["plan_id"], plan.as_str());
        // Only enterprises the unit supervises; another district does not see the plan.
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/plans/{plan}/visits"),
                json!({"enterprise_id": xh_firm}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "enterprise_id");
        let (st, _) = s.get(&xh, &format!("/api/v1/plans/{plan}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);

        // Review: submit, the submitter may not approve, the corps approves.
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/plans/{plan}/submit"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "review");
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/plans/{plan}/submit"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["state"], "review");
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/plans/{plan}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let admin = s.login("admin").await;
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                &format!("/api/v1/plans/{plan}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "published");
        assert_eq!(b["number"], format!("JH310101-{month}").as_str());
        let codes: Vec<String> = b["visits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["inspection_code"].as_str().unwrap().to_string())
            .collect();
        assert!(codes.iter().all(|c| c.starts_with("JC310101")), "{codes:?}");
        let chem_code = b["visits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == chem_visit.as_str())
            .unwrap()["inspection_code"]
            .clone();
        let (st, b) = s
            .send(
                Method::PUT,
                &head,
                &format!("/api/v1/plans/{plan}"),
                json!({"title": "改", "version": b["version"]}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["state"], "published");

        // Execution: a visit for the wrong enterprise is refused; a planned inspection of the
        // chemical works links itself to its visit and carries the visit's code.
        let (st, b) = s
        .send(
            Method::POST,
            &officer,
            "/api/v1/inspections",
            json!({"enterprise_id": chem, "kind": "planned", "officer_ids": officers, "plan_visit_id": steel_visit}),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "plan_visit_id");
        let (st, b) = start(&s, &officer, &chem, &officers, None).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["code"], chem_code);
        let (_, b) = s.get(&head, &format!("/api/v1/plans/{plan}")).await;
        assert_eq!(b["progress"]["visits"], 2, "{b}");
        assert_eq!(b["progress"]["in_progress"], 1, "{b}");
        assert_eq!(b["progress"]["not_started"], 1, "{b}");
        // An executed visit stays in the plan.
        let (st, b) = s
            .send(
                Method::DELETE,
                &head,
                &format!("/api/v1/plans/{plan}/visits/{chem_visit}"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");

        // Roll-up to the corps: the year holds the month; another district sees none of it.
        let year = &month[..4];
        let (st, b) = s
            .get(&admin, &format!("/api/v1/plans/rollup?period={year}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["total"]["plans"], 1, "{b}");
        assert_eq!(b["total"]["visits"], 2, "{b}");
        assert_eq!(b["total"]["in_progress"], 1, "{b}");
        assert_eq!(b["rows"][0]["unit_name"], "黄浦区大队");
        let (_, b) = s
            .get(&xh, &format!("/api/v1/plans/rollup?period={year}"))
            .await;
        assert_eq!(b["total"]["visits"], 0, "{b}");
        let (st, b) = s.get(&admin, "/api/v1/plans/rollup?period=20x7").await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

        // A quarterly plan by hand, returned by the review with a reason.
        let quarter = format!("{year}-Q1");
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                "/api/v1/plans",
                json!({"period": quarter, "target_visits": 12}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["period_kind"], "quarter");
        assert_eq!(
            b["title"],
            format!("黄浦区大队{year}年第1季度执法检查计划").as_str()
        );
        let q = b["id"].as_str().unwrap().to_string();
        let (st, _) = s
            .send(
                Method::POST,
                &head,
                &format!("/api/v1/plans/{q}/submit"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                &format!("/api/v1/plans/{q}/return"),
                json!({"reason": " "}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "reason");
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                &format!("/api/v1/plans/{q}/return"),
                json!({"reason": "目标偏低"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "draft");
        assert_eq!(b["return_reason"], "目标偏低");
        let (_, b) = s
            .get(
                &head,
                &format!("/api/v1/plans?period={year}&period_kind=quarter"),
            )
            .await;
        assert_eq!(b["total"], 1, "{b}");

        // At its yearly cap an enterprise is not proposed (the steel works stays for its hazard).
        let (st, _) = s
            .send(
                Method::DELETE,
                &head,
                &format!("/api/v1/plans/{q}"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, b) = s
            .send(
                Method::PUT,
                &admin,
                "/api/v1/inspection-caps",
                json!([{"sector": "05", "grade": "D", "yearly_cap": 1}]),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let next = Period::month_of(Period::parse(&month).unwrap().end_ms).label;
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                "/api/v1/plans/proposal",
                json!({"period": next}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let ents: Vec<&str> = b["visits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["enterprise_id"].as_str().unwrap())
            .collect();
        assert_eq!(ents, vec![steel.as_str()], "{b}");
        assert!(s.audit("plan.").await.len() >= 8);
    }
);

on_both!(work_orders_scheduled_reminders, |s: Server| async move {
    let corps = s.login("admin").await;
    let hp = s.login("hp_head").await;
    let mk = |days: i64| {
        json!({"title": "关于报送安全生产月活动总结的通知", "body": "请按期报送。",
               "deadline": date_in(&s, days), "recipient_unit_ids": [s.huangpu.id, s.xuhui.id]})
    };
    // Due tomorrow (end of that day, Shanghai) and due in ten days.
    let (st, soon) = s
        .send(Method::POST, &corps, "/api/v1/work-orders", mk(0))
        .await;
    assert_eq!(st, StatusCode::OK, "{soon}");
    let (st, later) = s
        .send(Method::POST, &corps, "/api/v1/work-orders", mk(10))
        .await;
    assert_eq!(st, StatusCode::OK, "{later}");
    let soon = soon["id"].as_str().unwrap().to_string();
    let later = later["id"].as_str().unwrap().to_string();

    // The order due within a day: both recipients; the other one not yet.
    assert_eq!(
        shouhu_api::server::remind_work_orders(&s.state)
            .await
            .unwrap(),
        2
    );
    // Within the same day nobody is reminded twice.
    assert_eq!(
        shouhu_api::server::remind_work_orders(&s.state)
            .await
            .unwrap(),
        0
    );
    let (_, b) = s.get(&hp, &format!("/api/v1/work-orders/{soon}")).await;
    assert!(
        b["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reminders"] == 1),
        "{b}"
    );
    let (_, b) = s.get(&hp, &format!("/api/v1/work-orders/{later}")).await;
    assert!(
        b["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reminders"] == 0),
        "{b}"
    );

    // Huangpu answers; a day later only Xuhui, now overdue, is reminded again.
    for (path, body) in [("receive", json!({})), ("reply", json!({"text": "已报送"}))] {
        let (st, b) = s
            .send(
                Method::POST,
                &hp,
                &format!("/api/v1/work-orders/{soon}/{path}"),
                body,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{path}: {b}");
    }
    s.clock.advance(DAY_MS + 1);
    assert_eq!(
        shouhu_api::server::remind_work_orders(&s.state)
            .await
            .unwrap(),
        1
    );
    // A day later the sessions have ended (idle timeout): log in again.
    let corps = s.login("admin").await;
    let (st, b) = s.get(&corps, &format!("/api/v1/work-orders/{soon}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["overdue"], true);
    for r in b["recipients"].as_array().unwrap() {
        let want = if r["unit_id"] == s.xuhui.id.as_str() {
            2
        } else {
            1
        };
        assert_eq!(r["reminders"], want, "{b}");
    }
    let rows = s.audit("work_order.remind").await;
    assert_eq!(rows.len(), 2, "one audit row per order and run");
});

//! Walk fixtures: see `fixture_cases`. Cases are walked through their real workflow (filed →
//! filing approved → documents drafted and approved → penalty → payment / referral → closing),
//! every precondition step by the administrator of the district `d`, as its own people would.

use serde_json::{json, Value};
use shouhu_storage::org_units::OrgUnit;

use super::{common, jreq, req, Body, Req, Row, Walk};

/// A minimal PDF (the case file accepts PDF, JPEG, PNG by magic bytes).
const CASES_PDF: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";

fn cases_id(v: &Value) -> String {
    v["id"].as_str().unwrap_or("fixture-failed").to_string()
}

impl Walk {
    /// The concrete request of `row` on a fresh resource of district `d`, or `None` when this
    /// module has no fixture for it.
    pub(super) async fn fixture_cases(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let p = |c: &Value| row.path.replace("{id}", &cases_id(c));
        Some(match (row.method, row.path) {
            ("POST", "/cases") => jreq(row.path.into(), self.cases_body(d).await),
            ("GET", "/cases/{id}" | "/cases/{id}/case-file" | "/cases/{id}/reviews") => {
                req(p(&self.cases_filed(d).await))
            }
            ("POST", "/cases/{id}/filing-decision") => {
                jreq(p(&self.cases_filed(d).await), json!({"approve": true}))
            }
            ("POST", "/cases/{id}/documents") => jreq(
                p(&self.cases_open(d).await),
                json!({"doc_type": "D02", "content": "询问笔录"}),
            ),
            ("POST", "/cases/{id}/documents/{doc_id}/approve") => {
                let c = self.cases_open(d).await;
                let doc = self.cases_document(d, &c, "D02").await;
                req(p(&c).replace("{doc_id}", &cases_id(&doc)))
            }
            ("GET", "/cases/{id}/documents/{doc_id}/file") => {
                // The filing approval form (D36), a draft while the filing awaits approval: it
                // renders marked 草稿 and is not stored.
                let c = self.cases_filed(d).await;
                let doc = cases_id(&c["documents"][0]);
                req(p(&c).replace("{doc_id}", &doc))
            }
            ("POST", "/cases/{id}/penalty") => {
                let c = self.cases_open(d).await;
                self.cases_approved(d, &c, "D15").await;
                jreq(
                    p(&c),
                    json!({"company_fine_cents": 5_000_000, "person_fine_cents": 800_000}),
                )
            }
            ("POST", "/cases/{id}/payment") => jreq(
                p(&self.cases_decided(d).await),
                json!({"paid_cents": 5_800_000}),
            ),
            ("POST", "/cases/{id}/referral") => {
                let c = self.cases_open(d).await;
                self.cases_approved(d, &c, "D32").await;
                jreq(p(&c), json!({"note": "涉嫌重大责任事故罪，移送公安机关"}))
            }
            ("POST", "/cases/{id}/closing-request") => req(p(&self.cases_decided(d).await)),
            ("POST", "/cases/{id}/closing-decision") => {
                jreq(p(&self.cases_closing(d).await), json!({"approve": true}))
            }
            ("POST", "/cases/{id}/case-file") => Req {
                path: format!("{}?filename=case-file.pdf", p(&self.cases_closed(d).await)),
                body: Body::Bytes("application/octet-stream", CASES_PDF.to_vec()),
            },
            ("GET", "/cases/{id}/case-file/{item_id}") => {
                let (c, item) = self.cases_with_file(d).await;
                req(p(&c).replace("{item_id}", &cases_id(&item)))
            }
            ("POST", "/cases/{id}/reviews") => {
                let (c, _) = self.cases_with_file(d).await;
                let rules = self.ok("GET", "/case-review-rules", Value::Null).await;
                let findings: Vec<Value> = rules
                    .as_array()
                    .map(|r| r.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter(|r| r["active"] == true)
                    .map(|r| json!({"rule_id": r["id"], "score": r["points"], "finding": "符合要求"}))
                    .collect();
                jreq(p(&c), json!({"findings": findings, "comment": "案卷规范"}))
            }
            ("POST", "/document-batches") => {
                let c = self.cases_rendered(d).await;
                jreq(
                    row.path.into(),
                    json!({"kind": "case_documents", "ids": [cases_id(&c)]}),
                )
            }
            ("GET", "/document-batches/{id}" | "/document-batches/{id}/archive") => {
                req(row.path.replace("{id}", &self.cases_batch(d).await))
            }
            ("POST", "/over-cap-filings/{id}/acknowledge") => {
                req(row.path.replace("{id}", &self.cases_filing(d).await))
            }
            // Corps-wide settings: `d` does not matter; every call valid and repeatable.
            ("POST", "/case-review-rules") => jreq(row.path.into(), self.cases_rule_body()),
            ("PUT", "/case-review-rules/{id}") => {
                let mut b = self.cases_rule_body();
                let r = self.ok("POST", "/case-review-rules", b.clone()).await;
                b["title"] = json!("卷内文书齐全、编号连续");
                b["points"] = json!(6);
                jreq(p(&r), b)
            }
            // The default of the table: repeatable, and other fixtures' deadlines stay as seeded.
            ("PUT", "/enforcement/deadlines/{step}") => jreq(
                row.path.replace("{step}", "hearing_request"),
                json!({"days": 5}),
            ),
            // The seeded cap of sector 01 grade A (the over-cap fixture uses sector 05).
            ("PUT", "/inspection-caps") => jreq(
                row.path.into(),
                json!([{"sector": "01", "grade": "A", "yearly_cap": 4}]),
            ),
            ("POST", "/inspection-items") => jreq(row.path.into(), self.cases_item_body()),
            ("PUT", "/inspection-items/{id}") => {
                let mut b = self.cases_item_body();
                let i = self.ok("POST", "/inspection-items", b.clone()).await;
                b["title"] = json!("修订后的检查事项");
                b["version"] = i["version"].clone();
                jreq(p(&i), b)
            }
            _ => return None,
        })
    }

    /// A case-review rule, inactive so that reviews need no finding for it; a unique code.
    fn cases_rule_body(&self) -> Value {
        json!({"code": format!("W{:05}", self.next()), "title": "卷内文书齐全", "points": 5,
               "active": false})
    }

    /// An inspection item; its code sorts after the seeded ones (`common::item_ids` reads the
    /// first three by code) and it is inactive, so other fixtures never meet it.
    fn cases_item_body(&self) -> Value {
        json!({"code": format!("ZW-{:05}", self.next()), "sector": "*", "category": "其他",
               "title": "巡检新增事项", "legal_basis": "《安全生产法》第四十一条", "source": "巡检",
               "effective_date": "2026-01-01", "active": false})
    }

    /// A completed inspection of a fresh enterprise of `d`, by `d`'s administrator.
    async fn cases_completed_inspection(&self, d: &OrgUnit) -> Value {
        let i = self.inspection(d).await;
        let id = cases_id(&i);
        let items = common::item_ids(&self.s, &self.admin).await;
        self.okd(
            d,
            "PUT",
            &format!("/inspections/{id}/results"),
            json!({"results": [{"item_id": items[0], "result": "pass"}]}),
        )
        .await;
        self.okd(
            d,
            "POST",
            &format!("/inspections/{id}/complete"),
            json!({"summary": "检查完毕"}),
        )
        .await;
        i
    }

    /// A case to file, from a fresh completed inspection of `d`.
    async fn cases_body(&self, d: &OrgUnit) -> Value {
        let i = self.cases_completed_inspection(d).await;
        json!({"enterprise_id": i["enterprise_id"], "inspection_ids": [cases_id(&i)],
               "title": "未按规定设置泄爆装置案", "violation": "粉尘爆炸危险场所除尘系统未设泄爆装置",
               "responsible_person": "王强", "party_id_number": "31010119800101123X",
               "party_phone": "13800138000", "proposed_fine_cents": 5_000_000})
    }

    /// A case of `d` awaiting its filing approval (`filing_review`, D36 drafted).
    async fn cases_filed(&self, d: &OrgUnit) -> Value {
        let body = self.cases_body(d).await;
        self.okd(d, "POST", "/cases", body).await
    }

    /// An open case of `d` (filing approved, D36 approved).
    async fn cases_open(&self, d: &OrgUnit) -> Value {
        let c = self.cases_filed(d).await;
        self.okd(
            d,
            "POST",
            &format!("/cases/{}/filing-decision", cases_id(&c)),
            json!({"approve": true}),
        )
        .await
    }

    /// A drafted document of type `doc_type` of the open case `c`.
    async fn cases_document(&self, d: &OrgUnit, c: &Value, doc_type: &str) -> Value {
        self.okd(
            d,
            "POST",
            &format!("/cases/{}/documents", cases_id(c)),
            json!({"doc_type": doc_type, "content": "文书内容"}),
        )
        .await
    }

    /// A drafted and approved document of type `doc_type` of the open case `c`.
    async fn cases_approved(&self, d: &OrgUnit, c: &Value, doc_type: &str) -> Value {
        let doc = self.cases_document(d, c, doc_type).await;
        self.okd(
            d,
            "POST",
            &format!(
                "/cases/{}/documents/{}/approve",
                cases_id(c),
                cases_id(&doc)
            ),
            Value::Null,
        )
        .await
    }

    /// An open case of `d` with its penalty decided (D15 approved, D25 issued).
    async fn cases_decided(&self, d: &OrgUnit) -> Value {
        let c = self.cases_open(d).await;
        self.cases_approved(d, &c, "D15").await;
        self.okd(
            d,
            "POST",
            &format!("/cases/{}/penalty", cases_id(&c)),
            json!({"company_fine_cents": 5_000_000, "person_fine_cents": 800_000}),
        )
        .await
    }

    /// A case of `d` awaiting its closing approval (`closing_review`, D31 drafted).
    async fn cases_closing(&self, d: &OrgUnit) -> Value {
        let c = self.cases_decided(d).await;
        self.okd(
            d,
            "POST",
            &format!("/cases/{}/closing-request", cases_id(&c)),
            Value::Null,
        )
        .await
    }

    /// A closed case of `d`.
    async fn cases_closed(&self, d: &OrgUnit) -> Value {
        let c = self.cases_closing(d).await;
        self.okd(
            d,
            "POST",
            &format!("/cases/{}/closing-decision", cases_id(&c)),
            json!({"approve": true}),
        )
        .await
    }

    /// A closed case of `d` with one uploaded part of its case file; (case, item).
    async fn cases_with_file(&self, d: &OrgUnit) -> (Value, Value) {
        let c = self.cases_closed(d).await;
        let path = format!("/cases/{}/case-file?filename=case-file.pdf", cases_id(&c));
        let q = Req {
            path: path.clone(),
            body: Body::Bytes("application/octet-stream", CASES_PDF.to_vec()),
        };
        let token = self.district_admin(d).to_string();
        let (st, b) = self.call("POST", &token, &q).await;
        if !st.is_success() {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture POST {path}: {st} {b}"));
            return (c, json!({"id": "fixture-failed"}));
        }
        (c, b)
    }

    /// An open case of `d` whose approved document (D36) is already rendered and stored, so a
    /// batch of it writes nothing in the background (the walk digests the tables around each
    /// refused call).
    async fn cases_rendered(&self, d: &OrgUnit) -> Value {
        let c = self.cases_open(d).await;
        let doc = cases_id(&c["documents"][0]);
        self.okd(
            d,
            "GET",
            &format!("/cases/{}/documents/{doc}/file", cases_id(&c)),
            Value::Null,
        )
        .await;
        c
    }

    /// A finished document batch of a case of `d`, started by the account the walk is calling as
    /// when it may start one (a batch is its starter's: nobody else reads it), else by `d`'s
    /// administrator; its id.
    async fn cases_batch(&self, d: &OrgUnit) -> String {
        let c = self.cases_rendered(d).await;
        let starter = self.batch_starter(d);
        let b = self
            .ok_as(
                &starter,
                "POST",
                "/document-batches",
                json!({"kind": "case_documents", "ids": [cases_id(&c)]}),
            )
            .await;
        let id = cases_id(&b);
        let mut status = b;
        for _ in 0..400 {
            if status["finished"] == true || id == "fixture-failed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            status = self
                .ok_as(
                    &starter,
                    "GET",
                    &format!("/document-batches/{id}"),
                    Value::Null,
                )
                .await;
        }
        if status["finished"] != true || status["failed"] != json!([]) {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture document batch of {}: {status}", d.name));
        }
        id
    }

    /// A pending over-cap filing routed to `d`: a fresh enterprise of `d` graded A (sector 05:
    /// one visit a year), visited twice by `d`'s people, the second time with a reason; its id.
    async fn cases_filing(&self, d: &OrgUnit) -> String {
        let e = self.enterprise(d).await;
        let eid = cases_id(&e);
        self.ok(
            "PUT",
            &format!("/enterprises/{eid}/supervision"),
            json!({"grade": "A"}),
        )
        .await;
        let o1 = self.officer(d).await;
        let o2 = self.officer(d).await;
        let body =
            json!({"enterprise_id": eid, "kind": "complaint", "officer_ids": [o1["id"], o2["id"]]});
        self.okd(d, "POST", "/inspections", body.clone()).await;
        let mut again = body;
        again["over_cap_reason"] = json!("群众再次投诉，需复查");
        let i = self.okd(d, "POST", "/inspections", again).await;
        i["over_cap_filing"]["id"]
            .as_str()
            .unwrap_or("fixture-failed")
            .to_string()
    }
}

//! Walk fixtures: see `fixture_work`. Hazards, inspection photos and records, plans through their
//! review, registry imports, org units, account applications and work orders, each walked through
//! its real workflow by the people of the district `d` (its administrator, or, where the server
//! keeps the submitter from approving, a squad leader).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};
use shouhu_storage::enforcement::{shanghai_date, DAY_MS};
use shouhu_storage::org_units::OrgUnit;

use super::{common, jreq, req, Body, Req, Row, Walk};

/// Periods handed out so far, per server (base URL) and kind: the quarters and years of
/// [`Walk::work_period`], the months of the proposals.
static WORK_PERIODS: Mutex<BTreeMap<(String, &'static str), u32>> = Mutex::new(BTreeMap::new());
/// Token of the squad leader who submits Huangpu's plans for review, by server base URL.
static WORK_TOKENS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// A tiny PNG (attachments are recognised by their magic bytes).
const WORK_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x07\x07\x07\x07\x07\x07\x07\x07";

fn work_id(v: &Value) -> String {
    v["id"].as_str().unwrap_or("fixture-failed").to_string()
}

impl Walk {
    /// The concrete request of `row` on a fresh resource of district `d`, or `None` when this
    /// module has no fixture for it.
    pub(super) async fn fixture_work(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let p = |v: &Value| row.path.replace("{id}", &work_id(v));
        Some(match (row.method, row.path) {
            // hazards and their documents
            ("GET", "/hazards/{id}" | "/hazards/{id}/order") => req(p(&self.work_hazard(d).await)),
            ("POST", "/hazards/{id}/rectification") => jreq(
                p(&self.work_hazard(d).await),
                json!({"note": "已加装接地线并完成检测"}),
            ),
            ("POST", "/hazards/{id}/reinspection") => jreq(
                p(&self.work_hazard(d).await),
                json!({"result": "passed", "note": "复查合格"}),
            ),
            ("GET", "/hazards/{id}/reinspection-opinion") => {
                let h = self.work_hazard(d).await;
                self.okd(
                    d,
                    "POST",
                    &p(&h).replace("/reinspection-opinion", "/reinspection"),
                    json!({"result": "passed", "note": "复查合格"}),
                )
                .await;
                req(p(&h))
            }
            ("POST", "/inspections/{id}/hazards") => {
                jreq(p(&self.inspection(d).await), self.work_hazard_body())
            }
            ("GET", "/inspections/{id}/photo") => {
                let (i, key) = self.work_photo(d).await;
                req(format!(
                    "{}?key={}",
                    row.path.replace("{id}", &i),
                    common::urlencode(&key)
                ))
            }
            ("GET", "/inspections/{id}/record") => req(p(&self.work_completed_inspection(d).await)),
            // plans
            ("POST", "/plans/proposal") => jreq(
                row.path.into(),
                json!({"org_unit_id": d.id, "period": self.work_month(), "max_visits": 5}),
            ),
            ("PUT", "/plans/{id}") => {
                let plan = self.work_plan(d, 0).await;
                jreq(
                    p(&plan),
                    json!({"title": format!("{}季度检查计划（修订）", d.name),
                           "notes": "重点检查粉尘涉爆企业", "target_visits": 12,
                           "version": plan["version"]}),
                )
            }
            ("POST", "/plans/{id}/visits") => {
                let plan = self.work_plan(d, 0).await;
                let e = self.enterprise(d).await;
                jreq(
                    p(&plan),
                    json!({"enterprise_id": e["id"], "note": "投诉较多"}),
                )
            }
            ("DELETE", "/plans/{id}/visits/{visit_id}") => {
                let plan = self.work_plan(d, 0).await;
                let e = self.enterprise(d).await;
                let detail = self
                    .okd(
                        d,
                        "POST",
                        &format!("/plans/{}/visits", work_id(&plan)),
                        json!({"enterprise_id": e["id"], "note": "投诉较多"}),
                    )
                    .await;
                req(p(&plan).replace("{visit_id}", &work_id(&detail["visits"][0])))
            }
            ("POST", "/plans/{id}/approve") => req(p(&self.work_plan_in_review(d).await)),
            ("POST", "/plans/{id}/return") => jreq(
                p(&self.work_plan_in_review(d).await),
                json!({"reason": "检查对象覆盖不足，请补充重点单位"}),
            ),
            // registry imports and their progress
            ("GET", "/imports/{id}") => req(row.path.replace("{id}", &self.work_import(d).await)),
            ("POST", "/enterprises/import") => Req {
                path: row.path.into(),
                body: Body::Bytes("text/csv", self.work_enterprise_csv(d).into_bytes()),
            },
            ("POST", "/officers/import") => Req {
                path: row.path.into(),
                body: Body::Bytes(
                    "text/csv",
                    format!(
                        "姓名,执法证号,所属单位\n赵敏,WI-{:05},{}\n",
                        self.next(),
                        d.code
                    )
                    .into_bytes(),
                ),
            },
            ("PUT", "/enterprises/{id}/supervision") => {
                jreq(p(&self.enterprise(d).await), json!({"grade": "C"}))
            }
            // org units
            ("POST", "/org-units") => jreq(row.path.into(), self.work_squad_body(d)),
            ("PATCH", "/org-units/{id}") => {
                let u = self.ok("POST", "/org-units", self.work_squad_body(d)).await;
                let n = self.next();
                jreq(
                    p(&u),
                    json!({"name": format!("巡检改名中队{n}"), "code": format!("WKR{n:06}")}),
                )
            }
            // account applications
            ("POST", "/account-applications") => {
                jreq(row.path.into(), self.work_application_body(d))
            }
            ("POST", "/account-applications/{id}/approve") => {
                req(p(&self.work_application(d).await))
            }
            ("POST", "/account-applications/{id}/reject") => jreq(
                p(&self.work_application(d).await),
                json!({"reason": "编制已满"}),
            ),
            // work orders: the recipient's side (an order from the corps to `d`)
            ("POST", "/work-orders/{id}/receive") => {
                let o = self.work_inbound_order(d).await;
                jreq(p(&o), json!({"unit_id": d.id}))
            }
            ("POST", "/work-orders/{id}/reply") => {
                let o = self.work_inbound_order(d).await;
                self.okd(
                    d,
                    "POST",
                    &format!("/work-orders/{}/receive", work_id(&o)),
                    json!({"unit_id": d.id}),
                )
                .await;
                jreq(
                    p(&o),
                    json!({"unit_id": d.id, "text": "已核查，情况属实，已责令整改"}),
                )
            }
            // the sender's side (an order from `d` to a town of `d`)
            (
                "POST",
                "/work-orders/{id}/recipients/{unit_id}/return"
                | "/work-orders/{id}/recipients/{unit_id}/accept",
            ) => {
                let (o, town) = self.work_replied_order(d).await;
                let path = p(&o).replace("{unit_id}", &town);
                if row.path.ends_with("/return") {
                    jreq(path, json!({"reason": "回复未附整改照片"}))
                } else {
                    req(path)
                }
            }
            ("POST", "/work-orders/{id}/remind") => req(p(&self.work_outbound_order(d).await.0)),
            ("POST", "/work-orders/{id}/close") => jreq(
                p(&self.work_outbound_order(d).await.0),
                json!({"note": "专项行动结束", "force": true}),
            ),
            _ => return None,
        })
    }

    /// A draft plan of `d` with a target, ready to be submitted (`POST /plans/{id}/submit`);
    /// the plan as answered (`PlanDetail`). Its period is one no other plan of the walk uses.
    pub(super) async fn work_submittable_plan(&self, d: &OrgUnit) -> Value {
        self.work_plan(d, 10).await
    }

    /// The next of this server's counter `kind`.
    fn work_count(&self, kind: &'static str) -> u32 {
        let mut m = WORK_PERIODS.lock().unwrap();
        let k = m.entry((self.s.base.clone(), kind)).or_insert(0);
        *k += 1;
        *k - 1
    }

    /// A plan period no plan of this server has used: the quarters `2000-Q1` … `2100-Q4`, then
    /// the years 2000 … 2100 (505 in all). `Walk::plan` uses months, and a plan's period only
    /// conflicts with the same label, so these never meet its plans.
    pub(super) fn work_period(&self) -> String {
        let k = self.work_count("period") % 505;
        if k < 404 {
            format!("{}-Q{}", 2000 + k / 4, k % 4 + 1)
        } else {
            format!("{}", 2000 + k - 404)
        }
    }

    /// A month for a plan proposal (proposals are monthly): 2000-01 … 2029-12, before any month
    /// `Walk::plan` uses (2030 on).
    fn work_month(&self) -> String {
        let k = self.work_count("month") % 360;
        format!("{}-{:02}", 2000 + k / 12, k % 12 + 1)
    }

    /// A draft plan of `d` (period from [`Walk::work_period`]) with `target` visits, created by `d`'s administrator.
    async fn work_plan(&self, d: &OrgUnit, target: i64) -> Value {
        self.okd(
            d,
            "POST",
            "/plans",
            json!({"org_unit_id": d.id, "period": self.work_period(), "target_visits": target}),
        )
        .await
    }

    /// A plan of `d` under review. Whoever submitted a plan may not approve it, and every
    /// approver of the walk (corps admin and leader, Huangpu's admin and brigade head) must be
    /// able to: Huangpu's plans are submitted by its squad leader (who may not approve), another
    /// district's by its administrator (only refused callers meet those). The submitter is not a
    /// walked account: signing one in again would end its session.
    async fn work_plan_in_review(&self, d: &OrgUnit) -> Value {
        let plan = self.work_submittable_plan(d).await;
        let token = if d.id == self.s.huangpu.id {
            self.work_squad_token().await
        } else {
            self.district_admin(d).to_string()
        };
        self.ok_as(
            &token,
            "POST",
            &format!("/plans/{}/submit", work_id(&plan)),
            Value::Null,
        )
        .await
    }

    /// A squad leader of Huangpu outside the walked accounts (signing a walked account in again
    /// would end its session), created and signed in once per server; its token.
    async fn work_squad_token(&self) -> String {
        let key = self.s.base.clone();
        if let Some(t) = WORK_TOKENS.lock().unwrap().get(&key) {
            return t.clone();
        }
        let hp = self.s.huangpu.clone();
        let t = super::extra_account(&self.s, "w_work_squad", "squad_leader", &hp).await;
        WORK_TOKENS.lock().unwrap().insert(key, t.clone());
        t
    }

    /// A rectification deadline `days` from now (Asia/Shanghai date).
    fn work_deadline(&self, days: i64) -> String {
        shanghai_date(self.s.state.now() + days * DAY_MS)
    }

    fn work_hazard_body(&self) -> Value {
        json!({"level": "general", "description": "配电箱未可靠接地",
               "rectification_deadline": self.work_deadline(30)})
    }

    /// A hazard (`rectifying`) found by a fresh in-progress inspection of `d`.
    async fn work_hazard(&self, d: &OrgUnit) -> Value {
        let i = self.inspection(d).await;
        self.okd(
            d,
            "POST",
            &format!("/inspections/{}/hazards", work_id(&i)),
            self.work_hazard_body(),
        )
        .await
    }

    /// A fresh inspection of `d`, completed (its on-site record numbered).
    async fn work_completed_inspection(&self, d: &OrgUnit) -> Value {
        let i = self.inspection(d).await;
        let items = common::item_ids(&self.s, &self.admin).await;
        self.okd(
            d,
            "PUT",
            &format!("/inspections/{}/results", work_id(&i)),
            json!({"results": [{"item_id": items[0], "result": "pass"}]}),
        )
        .await;
        self.okd(
            d,
            "POST",
            &format!("/inspections/{}/complete", work_id(&i)),
            json!({"summary": "检查完毕"}),
        )
        .await
    }

    /// A fresh inspection of `d` with a photo on a checked item; (inspection id, photo key).
    async fn work_photo(&self, d: &OrgUnit) -> (String, String) {
        let i = work_id(&self.inspection(d).await);
        let token = self.district_admin(d).to_string();
        let q = Req {
            path: "/attachments".into(),
            body: Body::Bytes("application/octet-stream", WORK_PNG.to_vec()),
        };
        let (st, b) = self.call("POST", &token, &q).await;
        if !st.is_success() {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture POST /attachments: {st} {b}"));
        }
        let key = b["key"].as_str().unwrap_or("fixture-failed").to_string();
        let items = common::item_ids(&self.s, &self.admin).await;
        self.okd(
            d,
            "PUT",
            &format!("/inspections/{i}/results"),
            json!({"results": [{"item_id": items[0], "result": "pass", "photo_keys": [key]}]}),
        )
        .await;
        (i, key)
    }

    /// One new enterprise of `d` as an import file (CSV).
    fn work_enterprise_csv(&self, d: &OrgUnit) -> String {
        format!(
            "企业名称,统一社会信用代码,所属区,国民经济类型,行业代码,监管行业\n导入企业{}有限公司,{},{},私营,C3311,05\n",
            self.next(),
            self.uscc(),
            d.code
        )
    }

    /// An enterprise import into `d` named by an `X-Import-Id`, sent by the account the walk is
    /// about to call as when it may import, else by `d`'s administrator; that id. (An import's
    /// progress is its sender's only.)
    async fn work_import(&self, d: &OrgUnit) -> String {
        let import_id = format!("walk-import-{:06}", self.next());
        let r = reqwest::Client::new()
            .post(self.s.url("/api/v1/enterprises/import"))
            .bearer_auth(self.import_sender(d))
            .header("content-type", "text/csv")
            .header("x-import-id", &import_id)
            .body(self.work_enterprise_csv(d).into_bytes())
            .send()
            .await
            .unwrap();
        let st = r.status();
        if !st.is_success() {
            let b = r.text().await.unwrap_or_default();
            self.broken.lock().unwrap().insert(format!(
                "fixture POST /enterprises/import (X-Import-Id): {st} {b}"
            ));
        }
        import_id
    }

    /// A new squad under `d`.
    fn work_squad_body(&self, d: &OrgUnit) -> Value {
        let n = self.next();
        json!({"parent_id": d.id, "kind": "squad", "name": format!("巡检中队{n}"),
               "code": format!("WKS{n:06}")})
    }

    fn work_application_body(&self, d: &OrgUnit) -> Value {
        json!({"username": format!("wapp{}", self.next()), "display_name": "新执法员",
               "role": "officer", "org_unit_id": d.id, "reason": "新入职"})
    }

    /// A pending account application for `d`, filed by `d`'s administrator.
    async fn work_application(&self, d: &OrgUnit) -> Value {
        let body = self.work_application_body(d);
        self.okd(d, "POST", "/account-applications", body).await
    }

    /// A work order from the corps to `d` (dispatched, not yet received).
    async fn work_inbound_order(&self, d: &OrgUnit) -> Value {
        self.ok(
            "POST",
            "/work-orders",
            json!({"title": "专项检查工单", "body": "请核查辖区粉尘涉爆企业", "deadline": "2030-12-31",
                   "recipient_unit_ids": [d.id]}),
        )
        .await
    }

    /// A town of `d`: the first one under it, else one created by the corps administrator
    /// (once per server: later calls find it in the tree).
    async fn work_town(&self, d: &OrgUnit) -> String {
        let units = self.ok("GET", "/org-units", Value::Null).await;
        let found = units.as_array().and_then(|us| {
            us.iter()
                .find(|u| u["parent_id"] == json!(d.id) && u["kind"] == "town")
                .map(work_id)
        });
        match found {
            Some(id) => id,
            None => work_id(
                &self
                    .ok(
                        "POST",
                        "/org-units",
                        json!({"parent_id": d.id, "kind": "town",
                               "name": format!("{}巡检街道", d.name),
                               "code": format!("{}901", d.code)}),
                    )
                    .await,
            ),
        }
    }

    /// A work order from `d` (its administrator) to a town of `d`; (order, town id).
    async fn work_outbound_order(&self, d: &OrgUnit) -> (Value, String) {
        let town = self.work_town(d).await;
        let o = self
            .okd(
                d,
                "POST",
                "/work-orders",
                json!({"title": "隐患排查工单", "body": "请排查辖区内小微企业", "deadline": "2030-12-31",
                       "recipient_unit_ids": [town]}),
            )
            .await;
        (o, town)
    }

    /// [`Walk::work_outbound_order`] received and replied to by the town; (order, town id).
    async fn work_replied_order(&self, d: &OrgUnit) -> (Value, String) {
        let (o, town) = self.work_outbound_order(d).await;
        let id = work_id(&o);
        self.okd(
            d,
            "POST",
            &format!("/work-orders/{id}/receive"),
            json!({"unit_id": town}),
        )
        .await;
        self.okd(
            d,
            "POST",
            &format!("/work-orders/{id}/reply"),
            json!({"unit_id": town, "text": "已排查完毕"}),
        )
        .await;
        (o, town)
    }
}

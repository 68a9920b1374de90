//! Data scope: a brigade sees its own district only; reads and writes outside it are refused
//! and audited.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

on_both!(
    brigade_cannot_read_another_district,
    |s: common::Server| async move {
        let xh_id = s.enterprise_id("徐汇粉末冶金").await;
        let hp_id = s.enterprise_id("黄浦钢结构").await;
        let hp = s.login("hp_head").await;
        let (st, b) = s.get(&hp, &format!("/api/v1/enterprises/{xh_id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(b["code"], "not_found");
        assert_eq!(
            s.get(&hp, &format!("/api/v1/enterprises/{hp_id}")).await.0,
            StatusCode::OK
        );
        // The list holds the district's own enterprises only, whatever the filter asks.
        let (_, b) = s.get(&hp, "/api/v1/enterprises").await;
        assert_eq!(b["total"], 2);
        assert!(b["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["district_id"] == s.huangpu.id.as_str()));
        let (_, b) = s
            .get(
                &hp,
                &format!("/api/v1/enterprises?district_id={}", s.xuhui.id),
            )
            .await;
        assert_eq!(b["total"], 0);
        // Writes: update, delete and create in the other district answer 404, as if the row or
        // the district did not exist (each audited as denied).
        let (st, _) = s
            .send(
                Method::DELETE,
                &hp,
                &format!("/api/v1/enterprises/{xh_id}"),
                json!(null),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (_, full) = s
            .get(
                &s.login("admin").await,
                &format!("/api/v1/enterprises/{xh_id}"),
            )
            .await;
        let mut body = full.clone();
        body["name"] = json!("改名");
        let hp = s.login("hp_head").await;
        assert_eq!(
            s.send(
                Method::PUT,
                &hp,
                &format!("/api/v1/enterprises/{xh_id}"),
                body.clone()
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        let mut new = full.clone();
        for k in [
            "id",
            "created_at",
            "updated_at",
            "district_name",
            "town_name",
            "soe_group_name",
            "version",
        ] {
            new.as_object_mut().unwrap().remove(k);
        }
        let first = "91310000000000099";
        new["uscc"] = json!(format!(
            "{first}{}",
            shouhu_storage::uscc::check_char(first).unwrap()
        ));
        let (st, b) = s.send(Method::POST, &hp, "/api/v1/enterprises", new).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(b["code"], "not_found");
        let writes = s.audit("enterprise.write").await;
        assert_eq!(writes.len(), 2, "the refused delete and update");
        assert!(writes.iter().all(|r| r.outcome == "denied"));
        assert_eq!(
            s.audit("org_unit.write").await.len(),
            1,
            "the refused create"
        );
        // The corps sees both districts.
        let admin = s.login("admin").await;
        assert_eq!(s.get(&admin, "/api/v1/enterprises").await.1["total"], 3);
        assert_eq!(
            s.get(&admin, &format!("/api/v1/enterprises/{xh_id}"))
                .await
                .0,
            StatusCode::OK
        );
        // The refused read is in the audit log with the account and the target.
        let denied = s.audit("enterprise.read").await;
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].outcome, "denied");
        assert_eq!(denied[0].username.as_deref(), Some("hp_head"));
        assert_eq!(denied[0].target_id.as_deref(), Some(xh_id.as_str()));
        assert!(denied[0].ip.is_some());
    }
);

on_both!(
    edits_are_versioned_and_audited,
    |s: common::Server| async move {
        let hp = s.login("hp_head").await;
        let id = s.enterprise_id("黄浦化工").await;
        let (_, mut e) = s.get(&hp, &format!("/api/v1/enterprises/{id}")).await;
        e["principal_name"] = json!("赵六");
        e["key_unit_years"] = json!([2026]);
        let (st, b) = s
            .send(
                Method::PUT,
                &hp,
                &format!("/api/v1/enterprises/{id}"),
                e.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["version"], 2);
        assert_eq!(b["key_unit_years"], json!([2026]));
        let (st, b) = s
            .send(Method::PUT, &hp, &format!("/api/v1/enterprises/{id}"), e)
            .await;
        assert_eq!(
            (st, b["code"].as_str()),
            (StatusCode::CONFLICT, Some("version_conflict"))
        );
        let rows = s.audit("enterprise.update").await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].details.contains("赵六"));
        // An officer may read but not write.
        let off = s.login("hp_officer").await;
        let (_, e) = s.get(&off, &format!("/api/v1/enterprises/{id}")).await;
        assert_eq!(
            s.send(Method::PUT, &off, &format!("/api/v1/enterprises/{id}"), e)
                .await
                .0,
            StatusCode::FORBIDDEN
        );
    }
);

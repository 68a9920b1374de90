//! Import from CSV and Excel: a file with bad rows reports every bad row and imports nothing; a
//! good file imports; what export writes imports back.

mod common;

use reqwest::StatusCode;
use serde_json::Value;

fn code(seed: u32) -> String {
    let first: String = format!("9131{:013}", seed).chars().take(17).collect();
    format!(
        "{first}{}",
        shouhu_storage::uscc::check_char(&first).unwrap()
    )
}

const HEADER: &str = "企业名称,统一社会信用代码,所属区,街镇,地址,经度,纬度,法定代表人,主要负责人,主要负责人电话,国民经济类型,行业代码,监管行业,重点单位年度,经营状态,标签\n";

async fn upload(s: &common::Server, token: &str, body: Vec<u8>, ct: &str) -> (StatusCode, Value) {
    post_import(s, token, body, ct, None).await
}

/// `POST /enterprises/import`, named by an `X-Import-Id` when `id` is given.
async fn post_import(
    s: &common::Server,
    token: &str,
    body: Vec<u8>,
    ct: &str,
    id: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(s.url("/api/v1/enterprises/import"))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(body);
    if let Some(id) = id {
        req = req.header("x-import-id", id);
    }
    let r = req.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn count(s: &common::Server) -> i64 {
    s.state.db.enterprises().count().await.unwrap()
}

on_both!(
    bad_rows_are_reported_and_nothing_imported,
    |s: common::Server| async move {
        let t = s.login("hp_head").await;
        let before = count(&s).await;
        let existing = code(1); // seeded by the harness
        let csv = format!(
        "{HEADER}\
         好企业甲,{},黄浦区大队,外滩街道,中山东一路1号,121.49,31.24,张三,李四,13800138000,私营,C3311,工贸,2026,在营,粉尘涉爆\n\
         坏代码企业,91310000000000000X,黄浦区大队,,,,,,,,私营,C3311,05,,,\n\
         ,{},黄浦区大队,,,,,,,,私营,C3311,05,,,\n\
         重复企业,{existing},黄浦区大队,,,,,,,,私营,C3311,05,,,\n\
         错区企业,{},不存在区,,,,,,,,私营,C3311,05,,,\n\
         跨区企业,{},徐汇区大队,,,,,,,,私营,C3311,05,,,\n\
         坏坐标企业,{},黄浦区大队,,,abc,31.2,,,,私营,X99,99,20x6,,\n\
         好企业乙,{},黄浦区大队,,,,,,,,私营,C3311,05,,,\n\
         同码企业,{},黄浦区大队,,,,,,,,私营,C3311,05,,,\n",
        code(100), code(101), code(102), code(103), code(104), code(105), code(105)
    );
        let (st, b) = upload(&s, &t, csv.into_bytes(), "text/csv").await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["code"], "import_rejected");
        let errors = b["errors"].as_array().unwrap();
        let has = |row: u64, field: &str| {
            errors
                .iter()
                .any(|e| e["row"] == row && e["field"] == field)
        };
        assert!(has(2, "uscc"), "{errors:?}");
        assert!(has(3, "name"), "{errors:?}");
        assert!(has(4, "uscc"), "{errors:?}");
        assert!(has(5, "district"), "{errors:?}");
        assert!(has(6, "district"), "{errors:?}");
        for f in ["lon", "industry_code", "sector", "key_unit_years"] {
            assert!(has(7, f), "{f}: {errors:?}");
        }
        assert!(has(9, "uscc"), "{errors:?}");
        assert!(
            !errors.iter().any(|e| e["row"] == 1 || e["row"] == 8),
            "good rows flagged: {errors:?}"
        );
        assert_eq!(count(&s).await, before, "nothing may be imported");
        assert!(s
            .audit("enterprise.import")
            .await
            .iter()
            .any(|r| r.outcome == "failure"));

        // The good rows alone import.
        let good = format!(
        "{HEADER}好企业甲,{},黄浦区大队,外滩街道,中山东一路1号,121.49,31.24,张三,李四,13800138000,私营,C3311,工贸,2026,在营,粉尘涉爆\n好企业乙,{},310101,,,,,,,,私营,C3311,05,,,\n",
        code(100),
        code(105)
    );
        let (st, b) = upload(&s, &t, good.into_bytes(), "text/csv").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["imported"], 2);
        assert_eq!(count(&s).await, before + 2);
        let (_, page) = s
            .get(
                &t,
                &format!("/api/v1/enterprises?q={}", common::urlencode("好企业甲")),
            )
            .await;
        let e = &page["items"][0];
        assert_eq!(e["town_name"], "外滩街道");
        assert_eq!(e["sector"], "05");
        assert_eq!(e["key_unit_years"], serde_json::json!([2026]));
        assert_eq!(e["tags"], serde_json::json!(["粉尘涉爆"]));
        assert_eq!(
            s.audit("enterprise.import")
                .await
                .iter()
                .filter(|r| r.outcome == "success")
                .count(),
            2
        );
    }
);

on_both!(
    gbk_csv_and_excel_round_trip,
    |s: common::Server| async move {
        let t = s.login("admin").await;
        let csv = format!(
            "{HEADER}国标编码企业,{},徐汇区大队,,,,,,,,国有集体,C2614,危险化学品,,停产,\n",
            code(300)
        );
        let (gbk, _, _) = encoding_rs::GBK.encode(&csv);
        let (st, b) = upload(&s, &t, gbk.into_owned(), "text/csv").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // Export everything, delete nothing, re-import into a clean registry shape: every exported
        // row must parse (and be rejected only as already registered).
        let r = reqwest::Client::new()
            .get(s.url("/api/v1/enterprises/export.xlsx"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let xlsx = r.bytes().await.unwrap().to_vec();
        assert!(xlsx.starts_with(b"PK"));
        let (st, b) = upload(
            &s,
            &t,
            xlsx,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let errors = b["errors"].as_array().unwrap();
        assert_eq!(errors.len() as i64, count(&s).await, "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|e| e["field"] == "uscc" && e["message"] == "already registered"),
            "{errors:?}"
        );
        assert_eq!(s.audit("enterprise.export").await.len(), 1);
    }
);

on_both!(
    broken_files_are_refused_cleanly,
    |s: common::Server| async move {
        let t = s.login("admin").await;
        for (body, ct) in [
            (Vec::new(), "text/csv"),
            (
                b"PK\x03\x04not really a zip".to_vec(),
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ),
            ("企业名称,颜色\n甲,红\n".as_bytes().to_vec(), "text/csv"),
            (
                "企业名称,统一社会信用代码\n\"unterminated,x\n"
                    .as_bytes()
                    .to_vec(),
                "text/csv",
            ),
        ] {
            let (st, b) = upload(&s, &t, body, ct).await;
            assert!(st.is_client_error(), "{st} {b}");
            assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
        }
        assert_eq!(s.get(&t, "/healthz").await.0, StatusCode::OK);
    }
);

async fn upload_as(s: &common::Server, token: &str, id: &str, body: String) -> (StatusCode, Value) {
    post_import(s, token, body.into_bytes(), "text/csv", Some(id)).await
}

on_both!(
    import_progress_is_reported_under_its_id,
    |s: common::Server| async move {
        let t = s.login("hp_head").await;
        let mut csv = HEADER.to_string();
        for k in 0..300 {
            csv.push_str(&format!(
                "进度企业{k},{},黄浦区大队,,,,,,,,私营,C3311,05,,,\n",
                code(2000 + k)
            ));
        }
        // Read the progress while the import runs: whatever is seen is a known phase, the rows
        // are the file's, and the written count never goes back.
        let id = "progress-test-0001";
        let poller = {
            let (url, t) = (s.url(&format!("/api/v1/imports/{id}")), t.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut seen: Vec<(String, u64, u64)> = Vec::new();
                loop {
                    let r = c.get(&url).bearer_auth(&t).send().await.unwrap();
                    if r.status() == StatusCode::OK {
                        let b: Value = r.json().await.unwrap();
                        let p = b["phase"].as_str().unwrap().to_string();
                        seen.push((
                            p.clone(),
                            b["rows"].as_u64().unwrap(),
                            b["written"].as_u64().unwrap(),
                        ));
                        if !["reading", "checking", "writing"].contains(&p.as_str()) {
                            return seen;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        };
        let (st, b) = upload_as(&s, &t, id, csv).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["imported"], 300);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(30), poller)
            .await
            .expect("the progress reaches an end")
            .unwrap();
        assert_eq!(
            seen.last().unwrap(),
            &("finished".to_string(), 300, 300),
            "{seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0].2 <= w[1].2), "{seen:?}");
        assert!(
            seen.iter().all(|(p, rows, _)| match p.as_str() {
                "reading" => *rows == 0,
                "checking" | "writing" | "finished" => *rows == 300,
                _ => false,
            }),
            "{seen:?}"
        );

        // Only the importing account reads it; an id names one import; ids are checked.
        let other = s.login("xh_head").await;
        let (st, _) = s.get(&other, &format!("/api/v1/imports/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, b) = upload_as(&s, &t, id, HEADER.to_string()).await;
        assert_eq!(st, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["code"], "import_id_in_use");
        let (st, b) = upload_as(&s, &t, "x", HEADER.to_string()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "X-Import-Id");

        // A rejected file ends `rejected` with nothing written.
        let bad =
            format!("{HEADER}坏代码企业,91310000000000000X,黄浦区大队,,,,,,,,私营,C3311,05,,,\n");
        let (st, _) = upload_as(&s, &t, "progress-test-0002", bad).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        let (st, b) = s.get(&t, "/api/v1/imports/progress-test-0002").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(
            (
                b["phase"].as_str(),
                b["rows"].as_u64(),
                b["written"].as_u64()
            ),
            (Some("rejected"), Some(1), Some(0))
        );
    }
);

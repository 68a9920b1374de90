//! Bad input of every class answers 4xx with a message naming the problem, writes nothing and
//! leaves the server serving.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

fn valid(s: &common::Server) -> serde_json::Value {
    json!({
        "name": "测试企业", "uscc": "91310000000000777K", "district_id": s.huangpu.id,
        "ownership_type": "私营", "industry_code": "C3311", "sector": "05"
    })
}

on_both!(every_class_of_bad_input, |s: common::Server| async move {
    let t = s.login("admin").await;
    let before = s.state.db.enterprises().count().await.unwrap();
    let post = |body: String| {
        let url = s.url("/api/v1/enterprises");
        let t = t.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // Malformed JSON.
    let (st, b) = post("{\"name\": ".into()).await;
    assert_eq!(
        (st, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json")),
        "{b}"
    );
    // Wrong type names the field.
    let mut v = valid(&s);
    v["lon"] = json!("east");
    let (st, b) = post(v.to_string()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["message"].as_str().unwrap().contains("lon"), "{b}");
    // Unknown field names the field.
    let mut v = valid(&s);
    v["colour"] = json!("red");
    let (st, b) = post(v.to_string()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["message"].as_str().unwrap().contains("colour"), "{b}");
    // Missing field.
    let mut v = valid(&s);
    v.as_object_mut().unwrap().remove("sector");
    let (st, b) = post(v.to_string()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["message"].as_str().unwrap().contains("sector"), "{b}");
    // Bad USCC (wrong check character) names the field and says why.
    let mut v = valid(&s);
    v["uscc"] = json!("91310000000000777A");
    let (st, b) = post(v.to_string()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "uscc");
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("check character"),
        "{b}"
    );
    // Several problems at once are all listed.
    let mut v = valid(&s);
    v["sector"] = json!("99");
    v["lat"] = json!(91.0);
    v["lon"] = json!(121.0);
    let (_, b) = post(v.to_string()).await;
    let fields: Vec<_> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    assert!(
        fields.contains(&"sector".to_string())
            && fields.contains(&"lat".to_string())
            && fields.contains(&"uscc".to_string()),
        "{fields:?}"
    );
    // Oversize body.
    let big = json!({"name": "x".repeat(200_000)}).to_string();
    let (st, b) = post(big).await;
    assert_eq!(
        (st, b["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")),
        "{b}"
    );
    // Wrong content type.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/enterprises"))
        .bearer_auth(&t)
        .body(valid(&s).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Bad query parameters name the parameter.
    let (st, b) = s.get(&t, "/api/v1/enterprises?page=two").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(b["message"].as_str().unwrap().contains("page"), "{b}");
    let (st, b) = s.get(&t, "/api/v1/enterprises?sort=colour").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"][0]["field"], "sort");
    let (st, _) = s.get(&t, "/api/v1/enterprises?bogus=1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Unknown routes and methods answer JSON too.
    let (st, b) = s.get(&t, "/api/v1/nothing-here").await;
    assert_eq!(
        (st, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, b) = s
        .send(Method::PATCH, &t, "/api/v1/enterprises", json!({}))
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{b}");
    // No token.
    let r = reqwest::Client::new()
        .get(s.url("/api/v1/enterprises"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::Client::new()
        .get(s.url("/api/v1/enterprises"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Nothing was written, and the server still serves.
    assert_eq!(s.state.db.enterprises().count().await.unwrap(), before);
    assert!(s
        .audit("enterprise.create")
        .await
        .iter()
        .all(|r| r.actor_is_setup()));
    let (st, b) = post(valid_fixed(&s).to_string()).await;
    assert_eq!(st, StatusCode::OK, "{b}");
});

trait SetupRow {
    fn actor_is_setup(&self) -> bool;
}

impl SetupRow for shouhu_storage::audit::AuditRecord {
    fn actor_is_setup(&self) -> bool {
        self.username.as_deref() == Some("setup")
    }
}

fn valid_fixed(s: &common::Server) -> serde_json::Value {
    let first = "91310000000000777";
    let mut v = valid(s);
    v["uscc"] = json!(format!(
        "{first}{}",
        shouhu_storage::uscc::check_char(first).unwrap()
    ));
    v
}

on_both!(openapi_and_health, |s: common::Server| async move {
    let r = reqwest::get(s.url("/api/v1/openapi.json")).await.unwrap();
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for p in [
        "/api/v1/auth/login",
        "/api/v1/enterprises",
        "/api/v1/enterprises/{id}",
        "/api/v1/enterprises/import",
        "/api/v1/audit",
        "/api/v1/account-applications/{id}/approve",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-request-id").is_some());
});

//! Malformed request input at every route (issue 21 item 1): for each operation of the served
//! OpenAPI document, as the corps administrator — a malformed escape, invalid UTF-8 in a path
//! parameter or the query, an overlong URL, an odd method, and (for operations with a body) a
//! body that is not UTF-8. Each is answered with a 4xx whose body names the problem, nothing is
//! written, and the server goes on serving. The review's URL (`?media_token=%a` followed by a
//! raw `é`) is also sent byte for byte over a raw TCP connection.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::UNTRACKED;

/// One malformed request: what is wrong, method, URL, body, the expected error code (empty:
/// any 4xx with a message).
type Case<'a> = (&'a str, Method, String, Option<Vec<u8>>, &'a str);

/// `path` with every `{param}` replaced by `with`.
fn fill(path: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map_or(rest.len(), |j| j + i + 1);
        out.push_str(with);
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

on_both!(
    every_route_answers_malformed_input_with_a_4xx,
    |s: common::Server| async move {
        let admin = s.login("admin").await;
        let (st, doc) = s.get(&admin, "/api/v1/openapi.json").await;
        assert_eq!(st, StatusCode::OK);
        let before = s.state.db.table_digests(UNTRACKED).await.unwrap();
        let client = reqwest::Client::new();
        let mut failures = Vec::new();
        let mut sent = 0;
        let long = "9".repeat(9_000);
        for (path, item) in doc["paths"].as_object().unwrap() {
            let templated = path.contains('{');
            for m in ["get", "post", "put", "patch", "delete"] {
                let Some(op) = item.get(m) else { continue };
                let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                let plain = fill(path, "1");
                let mut cases: Vec<Case> = vec![
                    (
                        "a malformed escape in the query",
                        method.clone(),
                        format!("{plain}?media_token=%a\u{e9}"),
                        None,
                        "malformed_uri",
                    ),
                    (
                        "invalid UTF-8 in the query",
                        method.clone(),
                        format!("{plain}?q=%C3%28"),
                        None,
                        "malformed_uri",
                    ),
                    (
                        "an overlong query",
                        method.clone(),
                        format!("{plain}?q={long}"),
                        None,
                        "uri_too_long",
                    ),
                    (
                        "an odd method",
                        Method::from_bytes(b"BREW").unwrap(),
                        plain.clone(),
                        None,
                        "method_not_allowed",
                    ),
                ];
                if templated {
                    cases.push((
                        "invalid UTF-8 in a path parameter",
                        method.clone(),
                        fill(path, "%FF%FE"),
                        None,
                        "malformed_uri",
                    ));
                    cases.push((
                        "a malformed escape in a path parameter",
                        method.clone(),
                        fill(path, "%zz"),
                        None,
                        "malformed_uri",
                    ));
                    cases.push((
                        "an overlong path parameter",
                        method.clone(),
                        fill(path, &long),
                        None,
                        "uri_too_long",
                    ));
                }
                if op.get("requestBody").is_some() {
                    cases.push((
                        "a body that is not UTF-8",
                        method.clone(),
                        fill(path, "00000000000000000000000000000000"),
                        Some(b"{\"name\": \"\xff\xfe\"}".to_vec()),
                        "",
                    ));
                }
                for (what, method, url, body, code) in cases {
                    sent += 1;
                    let mut b = client
                        .request(method.clone(), s.url(&url))
                        .bearer_auth(&admin);
                    if let Some(body) = body {
                        b = b.header("content-type", "application/json").body(body);
                    }
                    let r = match b.send().await {
                        Ok(r) => r,
                        Err(e) => {
                            failures.push(format!("{m} {path}, {what}: no answer ({e})"));
                            continue;
                        }
                    };
                    let st = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if !st.is_client_error() {
                        failures.push(format!("{m} {path}, {what}: {st} {body}"));
                    } else if body["message"].as_str().is_none_or(str::is_empty) {
                        failures.push(format!("{m} {path}, {what}: {st} without a message"));
                    } else if !code.is_empty() && body["code"] != code {
                        failures.push(format!(
                            "{m} {path}, {what}: {st} {body}, expected code {code}"
                        ));
                    }
                }
            }
        }
        // Nothing written, and still serving (this session too).
        let after = s.state.db.table_digests(UNTRACKED).await.unwrap();
        let changed: Vec<_> = after.iter().filter(|a| !before.contains(a)).collect();
        if !changed.is_empty() {
            failures.push(format!("tables changed: {changed:?}"));
        }
        let (st, _) = s.get(&admin, "/api/v1/auth/me").await;
        assert_eq!(st, StatusCode::OK, "the session still works");
        assert!(
            sent > 1_000,
            "{sent} requests: the document lists every route"
        );
        assert!(
            failures.is_empty(),
            "{} of {sent} malformed requests:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
);

on_both!(
    the_review_s_raw_url_is_answered,
    |s: common::Server| async move {
        let addr = s.base.trim_start_matches("http://").to_string();
        for target in [
            &b"/api/v1/auth/me?media_token=%a\xc3\xa9"[..],
            &b"/api/v1/auth/me?media_token=%\xc3\xa9"[..],
            &b"/api/v1/auth/me?media_token=\xff\xfe"[..],
            &b"/api/v1/enterprises/%\xff"[..],
        ] {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(target);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: shouhu\r\nConnection: close\r\n\r\n");
            c.write_all(&req).await.unwrap();
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).await.unwrap();
            let text = String::from_utf8_lossy(&answer);
            let status: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status line for {target:?}: {text:?}"));
            assert!(
                (400..500).contains(&status),
                "{}: {text}",
                String::from_utf8_lossy(target)
            );
        }
        let (st, _) = s.get(&s.login("admin").await, "/api/v1/auth/me").await;
        assert_eq!(st, StatusCode::OK, "still serving");
    }
);

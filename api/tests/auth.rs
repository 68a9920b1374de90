//! Login, lockout, one session per account, idle timeout, forced password change — with the
//! audit rows each writes.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

on_both!(
    lockout_after_five_failures,
    |s: common::Server| async move {
        let c = s.client();
        for i in 1..=4 {
            let (st, b) = s.login_raw(&c, "hp_head", "Wrong@12345").await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
            assert_eq!(b["code"], "invalid_credentials");
            assert_eq!(b["attempts_left"], 5 - i);
        }
        let (st, b) = s.login_raw(&c, "hp_head", "Wrong@12345").await;
        assert_eq!(st, StatusCode::LOCKED, "{b}");
        assert_eq!(b["code"], "account_locked");
        assert!(b["locked_until"].as_str().is_some());
        // Even the right password is refused while locked.
        let (st, _) = s.login_raw(&c, "hp_head", common::PW).await;
        assert_eq!(st, StatusCode::LOCKED);
        // Audit: five failed logins (wrong password), one lockout, one denied login.
        let logins = s.audit("auth.login").await;
        let wrong = logins
            .iter()
            .filter(|r| r.outcome == "failure" && r.details.contains("wrong_password"))
            .count();
        assert_eq!(wrong, 5);
        assert_eq!(logins.iter().filter(|r| r.outcome == "denied").count(), 1);
        assert_eq!(s.audit("auth.lockout").await.len(), 1);
        // 15 minutes later the lock is over.
        s.clock.advance(15 * 60_000 + 1);
        let (st, b) = s.login_raw(&c, "hp_head", common::PW).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // Unknown users fail the same way and are audited by name.
        let (st, b) = s.login_raw(&c, "nobody", common::PW).await;
        assert_eq!(
            (st, b["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
        );
        assert!(
            s.audit("auth.login")
                .await
                .iter()
                .any(|r| r.username.as_deref() == Some("nobody")
                    && r.details.contains("unknown_user"))
        );
    }
);

on_both!(
    second_login_ends_the_first_session,
    |s: common::Server| async move {
        let first = s.login("hp_head").await;
        assert_eq!(s.get(&first, "/api/v1/auth/me").await.0, StatusCode::OK);
        let second = s.login("hp_head").await;
        let (st, b) = s.get(&first, "/api/v1/enterprises").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["code"], "session_ended");
        assert_eq!(b["reason"], "superseded");
        let (st, b) = s.get(&second, "/api/v1/auth/me").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(b["username"], "hp_head");
        let logins: Vec<_> = s
            .audit("auth.login")
            .await
            .into_iter()
            .filter(|r| r.username.as_deref() == Some("hp_head") && r.outcome == "success")
            .collect();
        assert_eq!(logins.len(), 2);
        assert!(
            logins[0].details.contains("\"superseded_sessions\":1"),
            "{}",
            logins[0].details
        );
        // Logout ends the second one too.
        let (st, _) = s
            .send(Method::POST, &second, "/api/v1/auth/logout", json!({}))
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        assert_eq!(
            s.get(&second, "/api/v1/auth/me").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(s.audit("auth.logout").await.len(), 1);
    }
);

on_both!(
    idle_timeout_except_wall_screen_operator,
    |s: common::Server| async move {
        let office = s.login("hp_head").await;
        let c = reqwest::Client::new();
        let r = c
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": "operator", "password": common::PW, "wall_screen": true}))
            .send()
            .await
            .unwrap();
        let b: serde_json::Value = r.json().await.unwrap();
        assert!(b["idle_timeout_secs"].is_null(), "{b}");
        let wall = b["token"].as_str().unwrap().to_string();
        // 29 minutes idle is fine and resets the clock of the session.
        s.clock.advance(29 * 60_000);
        assert_eq!(s.get(&office, "/api/v1/auth/me").await.0, StatusCode::OK);
        s.clock.advance(31 * 60_000);
        let (st, b) = s.get(&office, "/api/v1/auth/me").await;
        assert_eq!(
            (st, b["reason"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("idle")),
            "{b}"
        );
        assert_eq!(s.audit("auth.session_expired").await.len(), 1);
        // The wall screen stays up after hours.
        s.clock.advance(8 * 3_600_000);
        assert_eq!(s.get(&wall, "/api/v1/auth/me").await.0, StatusCode::OK);
    }
);

on_both!(
    cookie_session_and_forced_password_change,
    |s: common::Server| async move {
        let admin = s.login("admin").await;
        let (st, b) = s.send(Method::POST, &admin, "/api/v1/accounts", json!({"username": "new_officer", "display_name": "新人", "password": "Init@12345", "role": "officer", "org_unit_id": s.huangpu.id})).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["must_change_password"], true);
        // A browser: the cookie alone authenticates.
        let c = s.client();
        let (st, _) = s.login_raw(&c, "new_officer", "Init@12345").await;
        assert_eq!(st, StatusCode::OK);
        let r = c.get(s.url("/api/v1/enterprises")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["code"],
            "password_change_required"
        );
        // A cookie-authenticated write without X-Requested-With is refused (CSRF guard).
        let r = c
            .post(s.url("/api/v1/auth/password"))
            .json(&json!({"old_password": "Init@12345", "new_password": "Better@2026x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["code"],
            "csrf_check_failed"
        );
        let r = c
            .post(s.url("/api/v1/auth/password"))
            .header("x-requested-with", "shouhu-web")
            .json(&json!({"old_password": "Init@12345", "new_password": "weakpass"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["errors"][0]["field"], "new_password");
        let r = c
            .post(s.url("/api/v1/auth/password"))
            .header("x-requested-with", "shouhu-web")
            .json(&json!({"old_password": "Init@12345", "new_password": "Better@2026x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = c.get(s.url("/api/v1/enterprises")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Logout clears the cookie.
        let r = c
            .post(s.url("/api/v1/auth/logout"))
            .header("x-requested-with", "shouhu-web")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            c.get(s.url("/api/v1/auth/me"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

on_both!(admin_unlock_reset_disable, |s: common::Server| async move {
    let c = s.client();
    for _ in 0..5 {
        s.login_raw(&c, "hp_officer", "Wrong@12345").await;
    }
    assert_eq!(
        s.login_raw(&c, "hp_officer", common::PW).await.0,
        StatusCode::LOCKED
    );
    let admin = s.login("admin").await;
    let (_, list) = s.get(&admin, "/api/v1/accounts?q=hp_officer").await;
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    assert!(list["items"][0]["locked_until"].is_string());
    let (st, _) = s
        .send(
            Method::POST,
            &admin,
            &format!("/api/v1/accounts/{id}/unlock"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let officer = s.login("hp_officer").await;
    let (st, _) = s
        .send(
            Method::POST,
            &admin,
            &format!("/api/v1/accounts/{id}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        s.get(&officer, "/api/v1/auth/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.login_raw(&c, "hp_officer", common::PW).await.0,
        StatusCode::FORBIDDEN
    );
    s.send(
        Method::POST,
        &admin,
        &format!("/api/v1/accounts/{id}/enable"),
        json!({}),
    )
    .await;
    let (st, b) = s
        .send(
            Method::POST,
            &admin,
            &format!("/api/v1/accounts/{id}/reset-password"),
            json!({"new_password": "Reset@2026x"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["must_change_password"], true);
    assert_eq!(
        s.login_raw(&c, "hp_officer", "Reset@2026x").await.0,
        StatusCode::OK
    );
    // A brigade head may not manage accounts.
    let head = s.login("hp_head").await;
    assert_eq!(
        s.send(
            Method::POST,
            &head,
            &format!("/api/v1/accounts/{id}/unlock"),
            json!({})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    for action in [
        "account.unlock",
        "account.disable",
        "account.enable",
        "account.reset_password",
    ] {
        assert!(!s.audit(action).await.is_empty(), "{action}");
    }
});

on_both!(
    district_applies_corps_approves,
    |s: common::Server| async move {
        let head = s.login("hp_head").await;
        let (st, b) = s.send(Method::POST, &head, "/api/v1/account-applications", json!({"username": "hp_new", "display_name": "新执法员", "role": "officer", "org_unit_id": s.huangpu.id, "reason": "新入职"})).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let app = b["id"].as_str().unwrap().to_string();
        // Not for another district (404, as reading it would be: another district's units are
        // not the caller's to name), not for a corps role.
        assert_eq!(s.send(Method::POST, &head, "/api/v1/account-applications", json!({"username": "x1", "display_name": "x", "role": "officer", "org_unit_id": s.xuhui.id, "reason": "r"})).await.0, StatusCode::NOT_FOUND);
        assert_eq!(s.send(Method::POST, &head, "/api/v1/account-applications", json!({"username": "x2", "display_name": "x", "role": "admin", "org_unit_id": s.huangpu.id, "reason": "r"})).await.0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            s.send(
                Method::POST,
                &head,
                &format!("/api/v1/account-applications/{app}/approve"),
                json!({})
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        let admin = s.login("admin").await;
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                &format!("/api/v1/account-applications/{app}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let pw = b["temporary_password"].as_str().unwrap();
        assert_eq!(b["account"]["must_change_password"], true);
        let (st, b) = s.login_raw(&s.client(), "hp_new", pw).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(
            s.send(
                Method::POST,
                &admin,
                &format!("/api/v1/account-applications/{app}/approve"),
                json!({})
            )
            .await
            .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(s.audit("account_application.approve").await.len(), 1);
    }
);

on_both!(
    media_tokens_open_media_paths_only,
    |s: common::Server| async move {
        let t = s.login("operator").await;
        let (st, b) = s
            .send(
                Method::POST,
                &t,
                "/api/v1/auth/media-token",
                json!({"path_prefix": "/api/v1/enterprises"}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "path_prefix");
        // A whole recorder is not one stream: a token names one channel (the rest of the media
        // token's rules are `tests/media_tokens.rs`).
        let (st, b) = s
            .send(
                Method::POST,
                &t,
                "/api/v1/auth/media-token",
                json!({"path_prefix": "/api/v1/streams/34020000001320000001/"}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "path_prefix");
    }
);

on_both!(
    audit_log_reads_are_audited,
    |s: common::Server| async move {
        let admin = s.login("admin").await;
        let (st, b) = s
            .get(&admin, "/api/v1/audit?action=auth.&outcome=success")
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert!(b["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"].as_str().unwrap().starts_with("auth.")));
        assert_eq!(s.audit("audit.query").await.len(), 1);
        let head = s.login("hp_head").await;
        assert_eq!(s.get(&head, "/api/v1/audit").await.0, StatusCode::FORBIDDEN);
        let (st, b) = s.get(&admin, "/api/v1/audit?from=yesterday").await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    }
);

// Issue 21 item 3: a username that names no account is answered exactly as a known one — the
// same codes, the same attempts left, locked after as many tries for as long, and free again
// as late — so answers reveal nothing about which names exist.
on_both!(
    unknown_and_known_usernames_are_answered_alike,
    configure = |c: &mut shouhu_api::config::Config| c.auth.login_burst = 100,
    |s: common::Server| async move {
        let c = s.client();
        let shape = |st: StatusCode, b: &serde_json::Value| {
            (
                st,
                b["code"].clone(),
                b["attempts_left"].clone(),
                b["locked_until"].is_string(),
            )
        };
        let mut answers: Vec<Vec<_>> = Vec::new();
        for user in ["hp_head", "no_such_user"] {
            let mut seq = Vec::new();
            for _ in 0..6 {
                let (st, b) = s.login_raw(&c, user, "Wrong@12345").await;
                seq.push(shape(st, &b));
            }
            answers.push(seq);
        }
        assert_eq!(answers[0], answers[1], "known and unknown differ");
        assert_eq!(answers[0][0].2, json!(4));
        assert_eq!(answers[0][4].0, StatusCode::LOCKED);
        assert_eq!(answers[0][5].0, StatusCode::LOCKED);
        // The lock's end is the same for both, and both count again from the start after it.
        s.clock.advance(15 * 60_000 + 1);
        let (st, b) = s.login_raw(&c, "hp_head", "Wrong@12345").await;
        let (st2, b2) = s.login_raw(&c, "no_such_user", "Wrong@12345").await;
        assert_eq!(shape(st, &b), shape(st2, &b2));
        assert_eq!(b["attempts_left"], 4, "{b}");
        // Case and spaces do not make a new name.
        let (_, b3) = s.login_raw(&c, " NO_SUCH_USER ", "Wrong@12345").await;
        assert_eq!(b3["attempts_left"], 3, "{b3}");
        // Audited alike: one lockout each.
        assert_eq!(s.audit("auth.lockout").await.len(), 2);
    }
);

// Issue 21 item 3: 100 parallel wrong logins from one address are throttled (at most the
// failure budget plus the attempts allowed at once are checked, the rest `429` with the wait,
// before any hashing), while another address signs in; no more hashes ever run at once than
// the slots allow.
on_both!(
    a_flood_from_one_address_is_throttled_while_another_signs_in,
    |s: common::Server| async move {
        let burst = s.state.cfg.auth.login_burst as usize;
        let flood = reqwest::Client::builder()
            .local_address(Some("127.0.0.1".parse().unwrap()))
            .build()
            .unwrap();
        let url = s.url("/api/v1/auth/login");
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (c, url) = (flood.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let r = c
                    .post(url)
                    .json(
                        &json!({"username": format!("flood{}", i % 7), "password": "Wrong@12345"}),
                    )
                    .send()
                    .await
                    .unwrap();
                let st = r.status();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                (st, retry, r.json::<serde_json::Value>().await.unwrap())
            }));
        }
        let mut throttled = 0;
        let mut answered = 0;
        for t in tasks {
            let (st, retry, b) = t.await.unwrap();
            if st == StatusCode::TOO_MANY_REQUESTS {
                throttled += 1;
                assert_eq!(b["code"], "too_many_attempts", "{b}");
                assert!(retry.is_some_and(|r| r >= 1), "Retry-After");
                assert_eq!(json!(retry.unwrap()), b["retry_after_secs"]);
            } else {
                answered += 1;
                assert!(
                    st == StatusCode::UNAUTHORIZED || st == StatusCode::LOCKED,
                    "{st} {b}"
                );
            }
        }
        let concurrent = s.state.cfg.auth.login_concurrent_per_address as usize;
        assert!(
            answered >= burst && answered <= burst + concurrent,
            "{answered} answered"
        );
        assert_eq!(throttled, 100 - answered);
        // Its failures are spent: the next wrong login from that address waits.
        let (st, b) = s.login_raw(&flood, "hp_head", "Wrong@12345").await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{b}");
        // Another address is not held up.
        let other = reqwest::Client::builder()
            .local_address(Some("127.0.0.2".parse().unwrap()))
            .build()
            .unwrap();
        let (st, b) = s.login_raw(&other, "hp_head", common::PW).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // Hashing stayed within its slots.
        let peak = shouhu_api::auth::password::peak_concurrency();
        assert!(
            peak >= 1 && peak <= shouhu_api::auth::password::concurrency(),
            "peak {peak}"
        );
    }
);

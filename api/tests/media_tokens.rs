//! Media tokens through the HTTP API on both engines: a token opens one recording (or one
//! playlist's segments) for reading, in the session that minted it, for the configured time.
//! Each attack is performed: a write with a token (alone, and riding on a cookie without the
//! CSRF header), a token on another recording and on a segment its playlist does not list, a
//! token after logout, a login elsewhere, a password change and a disabled account, a token past
//! `auth.media_token_ttl_secs` (simulated clock), a bare prefix minted, and a malformed percent
//! escape sent raw (the server answers and keeps serving).

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The configured token lifetime in these tests, seconds.
const TTL_SECS: i64 = 120;

/// Run an async test body against a server on each engine, with `TTL_SECS` and operators
/// idling out after one minute.
macro_rules! on_both_ttl {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            fn cfg(c: &mut shouhu_api::config::Config) {
                c.auth.media_token_ttl_secs = TTL_SECS as u64;
                c.auth
                    .role_idle_timeout_minutes
                    .insert("operator".into(), 1);
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = common::start_with(common::Engine::Sqlite, cfg)
                    .await
                    .unwrap();
                ($body)(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = common::start_with(common::Engine::Postgres, cfg).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

/// A closed recording of Huangpu (call after the server has answered a request: it reconciles
/// the recordings index, closing open ones, before it serves) with `segments` one-minute segments in the server's blob
/// store (each file's bytes: `segment {seq} of {id}`); its id.
async fn recording(s: &Server, segments: i64) -> String {
    let start = s.state.now() - 3_600_000;
    common::closed_recording(s, &s.huangpu.id, None, start, segments).await
}

/// Mint a token for `prefix`: (status, body).
async fn mint(s: &Server, token: &str, prefix: &str) -> (StatusCode, Value) {
    s.send(
        Method::POST,
        token,
        "/api/v1/auth/media-token",
        json!({ "path_prefix": prefix }),
    )
    .await
}

/// Mint a token for recording `id`, which must succeed.
async fn mint_ok(s: &Server, token: &str, id: &str) -> String {
    let (st, b) = mint(s, token, &format!("/api/v1/recordings/{id}/")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["token"].as_str().unwrap().to_string()
}

/// `method path?media_token=t` with no other credential: (status, error code, body bytes).
async fn with_token(
    s: &Server,
    method: Method,
    path: &str,
    t: &str,
) -> (StatusCode, String, Vec<u8>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = reqwest::Client::new().request(
        method.clone(),
        s.url(&format!("{path}{sep}media_token={t}")),
    );
    if !matches!(method, Method::GET | Method::HEAD) {
        req = req.json(&json!({"held": true, "reason": "token", "inspection_id": "x"}));
    }
    let r = req.send().await.unwrap();
    let st = r.status();
    let body = r.bytes().await.unwrap().to_vec();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (st, code, body)
}

/// The playlist of `id` (`query` appended) fetched with the bearer; the media token its URLs
/// carry.
async fn playlist_token(s: &Server, bearer: &str, id: &str, query: &str) -> String {
    let r = reqwest::Client::new()
        .get(s.url(&format!("/api/v1/recordings/{id}/playlist.m3u8{query}")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let t = text
        .split("media_token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {text}"));
    t.split(['&', '"', '\n']).next().unwrap().to_string()
}

fn segment(id: &str, seq: i64) -> String {
    format!("/api/v1/recordings/{id}/segments/{seq}/media.m4s")
}

on_both_ttl!(
    a_token_opens_one_recording_for_reading,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let a = recording(&s, 3).await;
        let b = recording(&s, 1).await;
        let t = mint_ok(&s, &admin, &a).await;

        // Reads of this recording's media.
        let (st, _, body) = with_token(&s, Method::GET, &segment(&a, 1), &t).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, format!("segment 1 of {a}").into_bytes());
        let (st, _, _) = with_token(&s, Method::HEAD, &segment(&a, 0), &t).await;
        assert_eq!(st, StatusCode::OK);
        let (st, _, _) = with_token(
            &s,
            Method::GET,
            &format!("/api/v1/recordings/{a}/playlist.m3u8"),
            &t,
        )
        .await;
        assert_eq!(st, StatusCode::OK);

        // Not another recording, not the JSON API of this one.
        for path in [
            segment(&b, 0),
            format!("/api/v1/recordings/{b}/playlist.m3u8"),
            format!("/api/v1/recordings/{a}"),
            format!("/api/v1/recordings/{a}/links"),
            "/api/v1/enterprises".to_string(),
        ] {
            let (st, code, _) = with_token(&s, Method::GET, &path, &t).await;
            assert_eq!(
                (st, code.as_str()),
                (StatusCode::FORBIDDEN, "media_token_not_for_this_url"),
                "{path}"
            );
        }

        // No write, on the same paths or under them.
        for (m, path) in [
            (Method::PUT, format!("/api/v1/recordings/{a}/hold")),
            (Method::POST, format!("/api/v1/recordings/{a}/links")),
            (Method::DELETE, format!("/api/v1/recordings/{a}/links/x")),
            (Method::POST, segment(&a, 0)),
            (Method::PUT, segment(&a, 0)),
            (Method::DELETE, segment(&a, 0)),
        ] {
            let (st, code, _) = with_token(&s, m.clone(), &path, &t).await;
            if path.ends_with("media.m4s") {
                // A path without that method is refused by the router first.
                assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            } else {
                assert_eq!(
                    (st, code.as_str()),
                    (StatusCode::FORBIDDEN, "media_token_read_only"),
                    "{m} {path}"
                );
            }
        }
        // A token riding on a session cookie does not stand in for the CSRF header, and with the
        // header a write still refuses the token.
        let browser = s.client();
        assert_eq!(
            s.login_raw(&browser, "admin", common::PW).await.0,
            StatusCode::OK
        );
        for csrf in [false, true] {
            let mut req = browser
                .put(s.url(&format!("/api/v1/recordings/{a}/hold?media_token={t}")))
                .json(&json!({"held": true, "reason": "举报复核中"}));
            if csrf {
                req = req.header("x-requested-with", "test");
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "csrf header {csrf}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "media_token_read_only", "{v}");
        }
        let admin = s.login("admin").await;
        let (st, d) = s.get(&admin, &format!("/api/v1/recordings/{a}")).await;
        assert_eq!(st, StatusCode::OK, "{d}");
        assert_eq!(d["held"], false, "nothing was written: {d}");

        // A playlist's token opens its own segments only.
        let p = playlist_token(&s, &admin, &a, "").await;
        let (st, _, body) = with_token(&s, Method::GET, &segment(&a, 2), &p).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, format!("segment 2 of {a}").into_bytes());
        for path in [
            segment(&b, 0),
            segment(&a, 3),
            format!("/api/v1/recordings/{a}/playlist.m3u8"),
            format!("/api/v1/recordings/{a}/export.mp4"),
        ] {
            let (st, code, _) = with_token(&s, Method::GET, &path, &p).await;
            assert_eq!(
                (st, code.as_str()),
                (StatusCode::FORBIDDEN, "media_token_not_for_this_url"),
                "{path}"
            );
        }
        // A playlist of a range lists the second minute only: its token opens segment 1, not 0 or 2.
        let start = d["started_at_ms"].as_i64().unwrap();
        let p = playlist_token(
            &s,
            &admin,
            &a,
            &format!("?from={}&to={}", start + 70_000, start + 100_000),
        )
        .await;
        assert_eq!(
            with_token(&s, Method::GET, &segment(&a, 1), &p).await.0,
            StatusCode::OK
        );
        for seq in [0, 2] {
            let (st, code, _) = with_token(&s, Method::GET, &segment(&a, seq), &p).await;
            assert_eq!(
                (st, code.as_str()),
                (StatusCode::FORBIDDEN, "media_token_not_for_this_url"),
                "seq {seq}"
            );
        }
    }
);

on_both_ttl!(a_token_dies_with_its_session, |s: Server| async move {
    let admin = s.login("admin").await;
    let a = recording(&s, 1).await;
    let seg = segment(&a, 0);
    let refused = |r: (StatusCode, String, Vec<u8>)| {
        let v: Value = serde_json::from_slice(&r.2).unwrap_or(Value::Null);
        assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{v}");
        v
    };

    // Logout: the minted token and the playlist's die with the session.
    let t = mint_ok(&s, &admin, &a).await;
    let p = playlist_token(&s, &admin, &a, "").await;
    assert_eq!(
        with_token(&s, Method::GET, &seg, &t).await.0,
        StatusCode::OK
    );
    assert_eq!(
        with_token(&s, Method::GET, &seg, &p).await.0,
        StatusCode::OK
    );
    let (st, _) = s
        .send(Method::POST, &admin, "/api/v1/auth/logout", json!({}))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for tok in [&t, &p] {
        let v = refused(with_token(&s, Method::GET, &seg, tok).await);
        assert_eq!(
            (&v["code"], &v["reason"]),
            (&json!("session_ended"), &json!("logout"))
        );
    }

    // A login elsewhere ends the session that minted it.
    let admin = s.login("admin").await;
    let t = mint_ok(&s, &admin, &a).await;
    let admin2 = s.login("admin").await;
    let v = refused(with_token(&s, Method::GET, &seg, &t).await);
    assert_eq!(v["reason"], "superseded", "{v}");

    // A password change keeps the session but kills its earlier tokens.
    let head = s.login("hp_head").await;
    let t = mint_ok(&s, &head, &a).await;
    assert_eq!(
        with_token(&s, Method::GET, &seg, &t).await.0,
        StatusCode::OK
    );
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/auth/password",
            json!({"old_password": common::PW, "new_password": "Changed@2026x"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let v = refused(with_token(&s, Method::GET, &seg, &t).await);
    assert_eq!(v["reason"], "password_changed", "{v}");
    let (st, me) = s.get(&head, "/api/v1/auth/me").await;
    assert_eq!(st, StatusCode::OK, "the session itself lives on");
    let fresh = mint_ok(&s, &head, &a).await;
    assert_eq!(
        with_token(&s, Method::GET, &seg, &fresh).await.0,
        StatusCode::OK
    );

    // A disabled account.
    let (st, b) = s
        .send(
            Method::POST,
            &admin2,
            &format!("/api/v1/accounts/{}/disable", me["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    refused(with_token(&s, Method::GET, &seg, &fresh).await);

    // An idle session (operators idle out after a minute here): the token is refused once the
    // session has idled out, and using it does not keep the session alive.
    let operator = s.login("operator").await;
    let t = mint_ok(&s, &operator, &a).await;
    s.clock.advance(40_000);
    assert_eq!(
        with_token(&s, Method::GET, &seg, &t).await.0,
        StatusCode::OK
    );
    s.clock.advance(21_000);
    let v = refused(with_token(&s, Method::GET, &seg, &t).await);
    assert_eq!(
        (&v["code"], &v["reason"]),
        (&json!("session_ended"), &json!("idle")),
        "{v}"
    );
});

on_both_ttl!(
    a_token_expires_per_the_configured_ttl,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let a = recording(&s, 2).await;
        let seg = segment(&a, 0);
        // A longer lifetime asked for is capped at the configured one.
        let (st, b) = s
            .send(
                Method::POST,
                &admin,
                "/api/v1/auth/media-token",
                json!({"path_prefix": format!("/api/v1/recordings/{a}/"), "ttl_secs": 86_400}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let t = b["token"].as_str().unwrap().to_string();
        let p = playlist_token(&s, &admin, &a, "").await;
        s.clock.advance(TTL_SECS * 1000);
        assert_eq!(
            with_token(&s, Method::GET, &seg, &t).await.0,
            StatusCode::OK
        );
        s.clock.advance(1);
        let (st, code, _) = with_token(&s, Method::GET, &seg, &t).await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::UNAUTHORIZED, "media_token_expired")
        );
        // The playlist's token lives the TTL plus the two minutes of footage it lists.
        assert_eq!(
            with_token(&s, Method::GET, &seg, &p).await.0,
            StatusCode::OK
        );
        s.clock.advance(120_000 - 1);
        assert_eq!(
            with_token(&s, Method::GET, &seg, &p).await.0,
            StatusCode::OK
        );
        s.clock.advance(1);
        let (st, code, _) = with_token(&s, Method::GET, &seg, &p).await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::UNAUTHORIZED, "media_token_expired")
        );
    }
);

on_both_ttl!(
    only_one_visible_resource_is_minted,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let xh = s.login("xh_head").await;
        let a = recording(&s, 1).await;
        for prefix in [
            "/api/v1/recordings/".to_string(),
            "/api/v1/recordings".to_string(),
            "/api/v1/streams/".to_string(),
            "/api/v1/streams/34020000001320000001/".to_string(),
            "/api/v1/blobs/".to_string(),
            "/api/v1/enterprises/".to_string(),
            format!("/api/v1/recordings/{a}"),
            format!("/api/v1/recordings/{a}/segments/"),
            format!("/api/v1/recordings/{a}/../"),
            format!("/api/v1/recordings/{}/", shouhu_storage::new_id()),
            "/api/v1/streams/34020000001320000001/34020000001310000001/".to_string(),
        ] {
            let (st, b) = mint(&s, &admin, &prefix).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{prefix}: {b}");
            assert_eq!(b["errors"][0]["field"], "path_prefix", "{prefix}: {b}");
        }
        // Xuhui's head does not see Huangpu's recording: no token for it.
        let (st, b) = mint(&s, &xh, &format!("/api/v1/recordings/{a}/")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["field"], "path_prefix", "{b}");
    }
);

on_both_ttl!(
    a_malformed_escape_is_refused_and_serving_goes_on,
    |s: Server| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let admin = s.login("admin").await;
        let a = recording(&s, 1).await;
        let addr = s.base.trim_start_matches("http://").to_string();
        // Sent raw: a client library would escape the `é`.
        for query in [
            &b"media_token=%a\xc3\xa9"[..],
            b"media_token=%\xc3\xa9",
            b"media_token=%",
        ] {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut req = format!("GET /api/v1/recordings/{a}/segments/0/media.m4s?").into_bytes();
            req.extend_from_slice(query);
            req.extend_from_slice(
                format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            c.write_all(&req).await.unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            let head = String::from_utf8_lossy(&out);
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no answer: {head}"));
            assert!((400..500).contains(&status), "{head}");
        }
        let (st, _) = s.get(&admin, "/api/v1/auth/me").await;
        assert_eq!(st, StatusCode::OK, "still serving");
    }
);

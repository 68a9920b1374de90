//! Who may publish and stop WebRTC sessions, and identifiers parsed once — end to end, with the
//! real binary and its simulated GB/T 28181 cameras.
//!
//! WHIP onto `/streams/…` takes only the `app` channel of a recorder bound to the caller's own
//! officer: a camera's channel or `console` is refused (403), a device manager is refused; the
//! own `app` channel is published (201). A session is stopped only by its owner or a dispatcher
//! who sees the recorder: anyone else's `DELETE` is refused and the session lives on (the
//! owner's `DELETE` then works). Bad `channel_id`s (CR LF, letters, 19 or 21 digits, a code
//! not in the catalog) are answered 4xx with `{code, message}` and start no ingest.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};

const PW: &str = "Shouhu@2026";
/// The demo's first simulated camera (district 0, 黄浦).
const DEVICE: &str = "31010000001320000001";
/// A recorder the test registers for the app's officer (it never connects over SIP).
const APP_DEVICE: &str = "31010000001320000099";

/// A WebRTC offer as a phone app publishing H.264 + Opus sends it (no ICE candidates: the
/// session is answered and waits for a connection that never comes, long enough for the test).
fn offer(direction: &str) -> String {
    let fp = (0..32)
        .map(|i| format!("{:02X}", i * 7 % 256))
        .collect::<Vec<_>>()
        .join(":");
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS s",
        "m=video 9 UDP/TLS/RTP/SAVPF 102",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:e2eT",
        "a=ice-pwd:e2etestpassword0123456789",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {fp}"),
        "a=setup:actpass",
        "a=mid:0",
        &format!("a={direction}"),
        "a=msid:s v",
        "a=rtcp-mux",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=ssrc:1111 cname:e2e",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 8",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:e2eT",
        "a=ice-pwd:e2etestpassword0123456789",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {fp}"),
        "a=setup:actpass",
        "a=mid:1",
        &format!("a={direction}"),
        "a=msid:s a",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:8 PCMA/8000",
        "a=ssrc:2222 cname:e2e",
        "",
    ]
    .join("\r\n")
}

struct Demo {
    run: Running,
    http: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn login(http: &str, user: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{user}: {r}"))
        .to_string()
}

async fn demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    c.args(["demo", "--enterprises", "10", "--always-on-recorders", "0"])
        .env("SHOUHU__MEDIA__GRACE_SECS", "30");
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let admin = login(&http, "admin").await;
    Demo {
        run,
        http,
        admin,
        _dir: dir,
    }
}

impl Demo {
    async fn req(&self, token: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(m, format!("{}/api/v1{path}", self.http))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.req(&self.admin, Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    /// POST an SDP offer; (status, session id from `Location`, body).
    async fn sdp(&self, token: &str, path: &str, offer: &str) -> (u16, Option<String>, String) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1{path}", self.http))
            .bearer_auth(token)
            .header("Content-Type", "application/sdp")
            .body(offer.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let id = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_string);
        (status, id, r.text().await.unwrap_or_default())
    }

    async fn delete(&self, token: &str, path: &str) -> u16 {
        reqwest::Client::new()
            .delete(format!("{}/api/v1{path}", self.http))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (_, v) = self.req(&self.admin, Method::GET, path, None).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The camera's first catalog channel, once it registered and reported its catalog.
    async fn channel(&self) -> String {
        let rec = self
            .wait_for(
                &format!("/recorders/{DEVICE}"),
                "registered with its catalog",
                |v| {
                    v["access"]["online"] == json!(true)
                        && v["channel_list"].as_array().is_some_and(|c| !c.is_empty())
                },
            )
            .await;
        rec["channel_list"][0]["channel_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Whether a stream of (device, channel) runs now.
    async fn streaming(&self, device: &str, channel: &str) -> bool {
        self.get("/streams")
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["device_id"] == device && s["channel_id"] == channel)
    }

    /// A phone app of its own: a fresh officer account (the demo's simulated apps sign in as
    /// `app1`… and would supersede a test's session of theirs), its password changed, bound to
    /// an officer of 黄浦 with the recorder `APP_DEVICE`; the app's session token.
    async fn own_app(&self) -> String {
        let (_, units) = self.req(&self.admin, Method::GET, "/org-units", None).await;
        let list = units["items"]
            .as_array()
            .or(units.as_array())
            .cloned()
            .unwrap_or_default();
        let org = list
            .iter()
            .find(|u| u["name"].as_str().is_some_and(|n| n.contains("黄浦")))
            .and_then(|u| u["id"].as_str())
            .unwrap_or_else(|| panic!("黄浦 in {units}"))
            .to_string();
        let first = "First@2026abc";
        let (s, acc) = self
            .req(
                &self.admin,
                Method::POST,
                "/accounts",
                Some(
                    json!({"username": "rights_app", "display_name": "测试终端", "password": first,
                    "role": "officer", "org_unit_id": org}),
                ),
            )
            .await;
        assert_eq!(s, 200, "{acc}");
        let r: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.http))
            .json(&json!({"username": "rights_app", "password": first}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = r["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string();
        let (s, v) = self
            .req(
                &token,
                Method::POST,
                "/auth/password",
                Some(json!({"old_password": first, "new_password": PW})),
            )
            .await;
        assert!(s < 300, "{v}");
        let (s, officer) = self
            .req(
                &self.admin,
                Method::POST,
                "/officers",
                Some(
                    json!({"name": "测试警员", "certificate_no": "RIGHTS-0001", "org_unit_id": org,
                    "account_id": acc["id"]}),
                ),
            )
            .await;
        assert_eq!(s, 200, "{officer}");
        let (s, v) = self
            .req(
                &self.admin,
                Method::POST,
                "/recorders",
                Some(json!({"device_id": APP_DEVICE, "name": "手机执法终端",
                    "org_unit_id": org, "officer_id": officer["id"]})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        login(&self.http, "rights_app").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_own_officer_publishes_the_app_channel_and_only_owners_stop_sessions() {
    let d = demo().await;
    let camera = d.channel().await;
    let app = d.own_app().await;
    let head = login(&d.http, "hp_head").await; // device manager (and dispatcher) of 黄浦
    let leader = login(&d.http, "leader").await; // sees the map, commands nothing
    let stranger = login(&d.http, "hp_officer").await; // an officer with no recorder
    let operator = login(&d.http, "operator").await; // a dispatcher of the whole corps
    let whip = offer("sendonly");

    // The attack: the app's officer publishes onto a camera's channel of its own recorder, and
    // onto the console channel; a device manager publishes onto an officer's app channel.
    for (who, token, path) in [
        (
            "officer → camera channel",
            &app,
            format!("/streams/{APP_DEVICE}/{camera}/whip"),
        ),
        (
            "officer → console",
            &app,
            format!("/streams/{APP_DEVICE}/console/whip"),
        ),
        (
            "officer → the demo camera",
            &app,
            format!("/streams/{DEVICE}/{camera}/whip"),
        ),
        (
            "device manager → app",
            &head,
            format!("/streams/{APP_DEVICE}/app/whip"),
        ),
        (
            "device manager → console",
            &head,
            format!("/streams/{DEVICE}/console/whip"),
        ),
        (
            "admin → camera channel",
            &d.admin,
            format!("/streams/{DEVICE}/{camera}/whip"),
        ),
    ] {
        let (s, id, body) = d.sdp(token, &path, &whip).await;
        assert!(s == 403 || s == 404, "{who}: {s} {body}");
        assert!(id.is_none(), "{who}");
    }
    assert!(!d.streaming(APP_DEVICE, "console").await);
    assert!(!d.streaming(APP_DEVICE, &camera).await);

    // The legitimate road: the officer's app publishes its own app channel.
    let (s, own, body) = d
        .sdp(&app, &format!("/streams/{APP_DEVICE}/app/whip"), &whip)
        .await;
    assert_eq!(s, 201, "{body}");
    let own = own.expect("Location");
    assert!(d.streaming(APP_DEVICE, "app").await);

    // Someone else's DELETE is refused, and the publication lives on.
    for (who, token) in [
        ("an officer", &stranger),
        ("a viewer without command", &leader),
    ] {
        let s = d.delete(token, &format!("/streams/whip/{own}")).await;
        assert!(s == 403 || s == 404, "{who}: {s}");
        assert!(
            d.streaming(APP_DEVICE, "app").await,
            "{who}: still published"
        );
    }
    // The owner stops it.
    assert_eq!(d.delete(&app, &format!("/streams/whip/{own}")).await, 200);
    d.wait_for("/streams", "the publication ended", |v| {
        !v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["device_id"] == APP_DEVICE && s["channel_id"] == "app")
    })
    .await;

    // WHEP: a dispatcher's live view is stopped neither by an officer nor by a viewer without
    // command; its owner stops it, and so does a dispatcher in charge.
    let whep = offer("recvonly");
    let (s, view, body) = d
        .sdp(&d.admin, &format!("/streams/{DEVICE}/{camera}/whep"), &whep)
        .await;
    assert_eq!(s, 201, "{body}");
    let view = view.unwrap();
    for (who, token) in [
        ("an officer", &stranger),
        ("the app", &app),
        ("a viewer", &leader),
    ] {
        let s = d.delete(token, &format!("/streams/whep/{view}")).await;
        assert!(s == 403 || s == 404, "{who}: {s}");
    }
    let (_, stats) = d.req(&d.admin, Method::GET, "/streams/stats", None).await;
    assert_eq!(stats["sessions"], json!(1), "the view lives on: {stats}");
    assert_eq!(
        d.delete(&d.admin, &format!("/streams/whep/{view}")).await,
        200
    );
    let (s, view, body) = d
        .sdp(&d.admin, &format!("/streams/{DEVICE}/{camera}/whep"), &whep)
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        d.delete(&operator, &format!("/streams/whep/{}", view.unwrap()))
            .await,
        200,
        "a dispatcher who sees the recorder stops a view"
    );
    // Gone: a second DELETE finds nothing.
    assert_eq!(
        d.delete(&d.admin, &format!("/streams/whip/{own}")).await,
        404
    );
    let (st, _) = d.run.stop();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_published_only_by_the_calls_operator() {
    let d = demo().await;
    d.channel().await;
    let (_, rec) = d
        .req(&d.admin, Method::GET, &format!("/recorders/{DEVICE}"), None)
        .await;
    let officer = rec["officer_id"].as_str().expect("bound").to_string();
    let (s, call) = d
        .req(
            &d.admin,
            Method::POST,
            "/calls",
            Some(json!({"unit_id": officer})),
        )
        .await;
    assert_eq!(s, 200, "{call}");
    let call_id = call["id"].as_str().unwrap().to_string();
    let whip = offer("sendonly");
    // Another dispatcher in scope, and the console channel through /streams: refused.
    let operator = login(&d.http, "operator").await;
    let (s, _, body) = d
        .sdp(&operator, &format!("/calls/{call_id}/whip"), &whip)
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = d
        .sdp(&d.admin, &format!("/streams/{DEVICE}/console/whip"), &whip)
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(!d.streaming(DEVICE, "console").await);
    // The call's operator speaks.
    let (s, id, body) = d
        .sdp(&d.admin, &format!("/calls/{call_id}/whip"), &whip)
        .await;
    assert_eq!(s, 201, "{body}");
    assert!(d.streaming(DEVICE, "console").await);
    // The other dispatcher (in charge of the recorder) may end it; an officer may not.
    let stranger = login(&d.http, "hp_officer").await;
    let id = id.unwrap();
    let s = d.delete(&stranger, &format!("/streams/whip/{id}")).await;
    assert!(s == 403 || s == 404, "{s}");
    assert!(d.streaming(DEVICE, "console").await);
    let (s, _) = d
        .req(
            &d.admin,
            Method::POST,
            &format!("/calls/{call_id}/hangup"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let (st, _) = d.run.stop();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channel_ids_are_refused_before_anything_starts() {
    let d = demo().await;
    let camera = d.channel().await;
    let before = d.get("/streams/stats").await;
    let not_in_catalog = format!("{}9", &camera[..19]);
    assert_ne!(not_in_catalog, camera);
    let bad = [
        format!("{}%0d%0aVia:%20SIP%2F2.0%2FUDP%20evil", &camera[..10]),
        format!("{camera}%0d%0a"),
        "abc".to_string(),
        camera[..19].to_string(),
        format!("{camera}1"),
        not_in_catalog.clone(),
    ];
    let whep = offer("recvonly");
    for c in &bad {
        // Snapshot and live view.
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/streams/{DEVICE}/{c}/snapshot.jpg",
                d.http
            ))
            .bearer_auth(&d.admin)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(s == 400 || s == 422, "snapshot {c}: {s} {v}");
        assert!(
            v["code"].is_string() && v["message"].as_str().is_some_and(|m| m.contains("channel")),
            "snapshot {c}: {v}"
        );
        let (s, id, body) = d
            .sdp(&d.admin, &format!("/streams/{DEVICE}/{c}/whep"), &whep)
            .await;
        assert!(
            (s == 400 || s == 422) && id.is_none(),
            "whep {c}: {s} {body}"
        );
        // RecordInfo and download (the id decoded from the query string or the JSON body).
        let (s, v) = d
            .req(
                &d.admin,
                Method::GET,
                &format!("/recorders/{DEVICE}/records?channel_id={c}&from=0&to=3600000"),
                None,
            )
            .await;
        assert!(s == 400 || s == 422, "records {c}: {s} {v}");
        let decoded = c
            .replace("%0d%0a", "\r\n")
            .replace("%20", " ")
            .replace("%2F", "/");
        let (s, v) = d
            .req(
                &d.admin,
                Method::POST,
                "/recordings/download",
                Some(
                    json!({"device_id": DEVICE, "channel_id": decoded, "start": 0, "end": 60_000}),
                ),
            )
            .await;
        assert!(s == 400 || s == 422, "download {c}: {s} {v}");
        let (s, v) = d
            .req(
                &d.admin,
                Method::POST,
                "/recordings/start",
                Some(json!({"device_id": DEVICE, "channel_id": decoded})),
            )
            .await;
        assert!(s == 400 || s == 422, "recording start {c}: {s} {v}");
    }
    // A device id that is not 20 digits.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/streams/{}%0d%0a/{camera}/snapshot.jpg",
            d.http,
            &DEVICE[..19]
        ))
        .bearer_auth(&d.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Nothing started: no ingest, no INVITE, no port.
    let after = d.get("/streams/stats").await;
    assert_eq!(
        after["ingests_started"], before["ingests_started"],
        "{after}"
    );
    assert_eq!(after["streams"], before["streams"], "{after}");
    // The named channels are never asked of a device: nobody publishes `app` → 409, no ingest.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/streams/{DEVICE}/app/snapshot.jpg",
            d.http
        ))
        .bearer_auth(&d.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(
        d.get("/streams/stats").await["ingests_started"],
        before["ingests_started"]
    );
    // The legitimate road: the catalog's channel plays.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/streams/{DEVICE}/{camera}/snapshot.jpg",
            d.http
        ))
        .bearer_auth(&d.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));
    let after = d.get("/streams/stats").await;
    assert_eq!(
        after["ingests_started"].as_u64(),
        before["ingests_started"].as_u64().map(|n| n + 1),
        "{after}"
    );
    let (st, _) = d.run.stop();
    assert!(st.success());
}

/// The same refusals on PostgreSQL (the catalog is read from there): a server on its own
/// database with one recorder that never connected — every bad or unknown channel is refused
/// before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channel_ids_are_refused_on_postgresql_too() {
    let admin_url = std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Some(db) = shouhu_e2e::pg::create_database(&admin_url, "t_rights").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = shouhu(dir.path());
        c.env("SHOUHU__DATABASE__URL", &db.url).args(args);
        c
    };
    shouhu_e2e::run_ok(cmd(&["migrate"]));
    shouhu_e2e::run_ok(cmd(&[
        "admin",
        "create-user",
        "--username",
        "admin",
        "--password",
        PW,
        "--role",
        "admin",
        "--no-force-change",
    ]));
    let run = Running::start(cmd(&["serve"]), "http");
    let http = run.base.clone();
    let admin = login(&http, "admin").await;
    let d = Demo {
        run,
        http,
        admin,
        _dir: tempfile::tempdir().unwrap(),
    };
    let (s, org) = d
        .req(
            &d.admin,
            Method::POST,
            "/org-units",
            Some(json!({"parent_id": null, "kind": "corps", "name": "支队", "code": "RIGHTS"})),
        )
        .await;
    assert_eq!(s, 200, "{org}");
    let (s, v) = d
        .req(
            &d.admin,
            Method::POST,
            "/recorders",
            Some(json!({"device_id": DEVICE, "name": "记录仪", "org_unit_id": org["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let before = d.get("/streams/stats").await;
    for (c, want) in [
        ("3101000000%0d%0aVia:%20x".to_string(), 400),
        ("abc".to_string(), 400),
        (DEVICE[..19].to_string(), 400),
        (format!("{DEVICE}1"), 400),
        ("31010000001310000001".to_string(), 422),
    ] {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/streams/{DEVICE}/{c}/snapshot.jpg",
                d.http
            ))
            .bearer_auth(&d.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "snapshot {c}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("channel_id")),
            "{v}"
        );
        let (s, v) = d
            .req(
                &d.admin,
                Method::GET,
                &format!("/recorders/{DEVICE}/records?channel_id={c}&from=0&to=3600000"),
                None,
            )
            .await;
        assert_eq!(s, want, "records {c}: {v}");
        let decoded = c.replace("%0d%0a", "\r\n").replace("%20", " ");
        let (s, v) = d
            .req(
                &d.admin,
                Method::POST,
                "/recordings/start",
                Some(json!({"device_id": DEVICE, "channel_id": decoded})),
            )
            .await;
        assert_eq!(s, want, "recording start {c}: {v}");
    }
    let after = d.get("/streams/stats").await;
    assert_eq!(
        after["ingests_started"], before["ingests_started"],
        "{after}"
    );
    assert_eq!(after["ingests_started"], json!(0));
    let (st, _) = d.run.stop();
    assert!(st.success());
    db.drop_now().await;
}

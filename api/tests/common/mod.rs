//! Test harness: a real server on 127.0.0.1:0 over a fresh database of either engine, driven
//! with reqwest. Time is a [`ManualClock`] so idle timeouts and lock expiry need no sleeping.

#![allow(dead_code, missing_docs)]

#[path = "../../../storage/tests/common/mod.rs"]
pub mod db;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shouhu_api::clock::ManualClock;
use shouhu_api::config::Config;
use shouhu_api::state::AppState;
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::enterprises::EnterpriseInput;
use shouhu_storage::org_units::{NewOrgUnit, OrgKind, OrgUnit};
use shouhu_storage::Db;

pub const PW: &str = "Test@12345";

#[derive(Debug, Clone, Copy)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct Server {
    pub base: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub corps: OrgUnit,
    pub huangpu: OrgUnit,
    pub xuhui: OrgUnit,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _db: db::TestDb,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn audit() -> AuditEntry {
    AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("setup".into()),
            ip: None,
        },
        "setup",
        1_700_000_000_000,
    )
}

/// Start a server; `None` when the engine is PostgreSQL and none is reachable outside CI.
pub async fn start(engine: Engine) -> Option<Server> {
    start_with(engine, |_| {}).await
}

/// [`start`] with the test configuration changed by `configure` first.
pub async fn start_with(engine: Engine, configure: impl FnOnce(&mut Config)) -> Option<Server> {
    let tdb = match engine {
        Engine::Sqlite => db::sqlite().await,
        Engine::Postgres => db::postgres().await?,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.server.data_dir = dir.path().to_path_buf();
    cfg.http.web_dir = dir.path().join("no-web");
    cfg.http.max_body_bytes = 64 * 1024;
    cfg.auth.argon2_memory_kib = 1024;
    cfg.auth.argon2_iterations = 1;
    cfg.auth.session_cache_secs = 0;
    cfg.jt808.listen = "127.0.0.1:0".parse().unwrap();
    cfg.sip.listen = "127.0.0.1:0".parse().unwrap();
    configure(&mut cfg);
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let state = shouhu_api::server::build_state_with_db(cfg, clock.clone(), tdb.db.clone())
        .await
        .unwrap();
    let (corps, huangpu, xuhui) = seed(&state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let task = tokio::spawn(async move {
        shouhu_api::server::serve(st, listener, None, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Some(Server {
        base,
        state,
        clock,
        corps,
        huangpu,
        xuhui,
        stop: Some(tx),
        task: Some(task),
        _db: tdb,
        _dir: dir,
    })
}

async fn seed(state: &AppState) -> (OrgUnit, OrgUnit, OrgUnit) {
    let db: &Db = &state.db;
    let o = db.org_units();
    let unit = |parent: Option<&OrgUnit>, kind, name: &str, code: &str| NewOrgUnit {
        parent_id: parent.map(|p| p.id.clone()),
        kind,
        name: name.into(),
        code: code.into(),
    };
    let corps = o
        .create(&unit(None, OrgKind::Corps, "总队", "310000"), &audit())
        .await
        .unwrap();
    let hp = o
        .create(
            &unit(Some(&corps), OrgKind::Brigade, "黄浦区大队", "310101"),
            &audit(),
        )
        .await
        .unwrap();
    let xh = o
        .create(
            &unit(Some(&corps), OrgKind::Brigade, "徐汇区大队", "310104"),
            &audit(),
        )
        .await
        .unwrap();
    o.create(
        &unit(Some(&hp), OrgKind::Town, "外滩街道", "310101001"),
        &audit(),
    )
    .await
    .unwrap();
    let hash = shouhu_api::auth::password::hash(&state.cfg.auth, PW)
        .await
        .unwrap();
    for (u, role, unit) in [
        ("admin", "admin", &corps),
        ("operator", "operator", &corps),
        ("hp_head", "brigade_head", &hp),
        ("xh_head", "brigade_head", &xh),
        ("hp_officer", "officer", &hp),
    ] {
        db.accounts()
            .create(
                &NewAccount {
                    username: u.into(),
                    display_name: u.into(),
                    password_hash: hash.clone(),
                    role: role.into(),
                    org_unit_id: unit.id.clone(),
                    must_change_password: false,
                },
                &audit(),
            )
            .await
            .unwrap();
    }
    let mk = |name: &str, seed: u32, d: &OrgUnit| {
        let first: String = format!("9131{:013}", seed).chars().take(17).collect();
        let mut e = EnterpriseInput {
            name: name.into(),
            uscc: format!(
                "{first}{}",
                shouhu_storage::uscc::check_char(&first).unwrap()
            ),
            district_id: d.id.clone(),
            ownership_type: "私营".into(),
            industry_code: "C3311".into(),
            sector: "05".into(),
            status: "operating".into(),
            ..Default::default()
        };
        e.normalize();
        e
    };
    db.enterprises()
        .insert_many(
            &[
                mk("黄浦钢结构有限公司", 1, &hp),
                mk("黄浦化工有限公司", 2, &hp),
                mk("徐汇粉末冶金有限公司", 3, &xh),
            ],
            &audit(),
            "enterprise.create",
        )
        .await
        .unwrap();
    (corps, hp, xh)
}

impl Server {
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Log in; returns (status, body).
    pub async fn login_raw(
        &self,
        c: &reqwest::Client,
        user: &str,
        pw: &str,
    ) -> (StatusCode, Value) {
        let r = c
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Log in successfully; returns the bearer token.
    pub async fn login(&self, user: &str) -> String {
        let (s, b) = self.login_raw(&reqwest::Client::new(), user, PW).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["token"].as_str().unwrap().to_string()
    }

    /// Upload an attachment (`POST /attachments`, 201); its blob key.
    pub async fn upload_attachment(&self, token: &str, body: Vec<u8>) -> String {
        let r = reqwest::Client::new()
            .post(self.url("/api/v1/attachments"))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Poll a document batch (its start answer `started`) until it finishes; its last status.
    pub async fn wait_batch(&self, token: &str, started: Value) -> Value {
        let id = started["id"].as_str().unwrap().to_string();
        let mut status = started;
        for _ in 0..400 {
            if status["finished"] == true {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            status = self
                .get(token, &format!("/api/v1/document-batches/{id}"))
                .await
                .1;
        }
        assert_eq!(status["finished"], true, "{status}");
        status
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Audit rows (newest first) with this action (or prefix ending in `.`), from storage.
    pub async fn audit(&self, action: &str) -> Vec<shouhu_storage::audit::AuditRecord> {
        let f = shouhu_storage::audit::AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        };
        self.state
            .db
            .audit()
            .query(&f, shouhu_storage::PageRequest::new(None, Some(500)))
            .await
            .unwrap()
            .items
    }

    pub async fn enterprise_id(&self, name: &str) -> String {
        let f = shouhu_storage::enterprises::EnterpriseFilter {
            q: Some(name.into()),
            ..Default::default()
        };
        let p = self
            .state
            .db
            .enterprises()
            .list(
                &shouhu_storage::org_units::Scope::All,
                &f,
                shouhu_storage::PageRequest::new(None, None),
            )
            .await
            .unwrap();
        p.items[0].id.clone()
    }
}

/// Two active officers of Huangpu (registered by its brigade head); their ids.
pub async fn huangpu_officers(s: &Server, head: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (name, cert) in [("张伟", "HP-0001"), ("李娜", "HP-0002")] {
        let (st, b) = s
            .send(
                reqwest::Method::POST,
                head,
                "/api/v1/officers",
                json!({"name": name, "certificate_no": cert, "org_unit_id": s.huangpu.id}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    ids
}

pub async fn item_ids(s: &Server, token: &str) -> Vec<String> {
    let (st, b) = s.get(token, "/api/v1/inspection-items?page_size=3").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Record a passed item and complete an inspection (a case needs a completed one).
pub async fn complete_inspection(s: &Server, token: &str, id: &str) {
    let items = item_ids(s, token).await;
    let (st, b) = s
        .send(
            reqwest::Method::PUT,
            token,
            &format!("/api/v1/inspections/{id}/results"),
            json!({"results": [{"item_id": items[0], "result": "pass"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = s
        .send(
            reqwest::Method::POST,
            token,
            &format!("/api/v1/inspections/{id}/complete"),
            json!({"summary": "检查完毕"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Run an async test body against a server on each engine.
#[macro_export]
macro_rules! on_both {
    ($name:ident, configure = $cfg:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = common::start_with(common::Engine::Sqlite, $cfg)
                    .await
                    .unwrap();
                ($body)(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = common::start_with(common::Engine::Postgres, $cfg).await {
                    ($body)(s).await;
                }
            }
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = common::start(common::Engine::Sqlite).await.unwrap();
                ($body)(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = common::start(common::Engine::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

/// A closed recording of `org` (device `31010000001320000001`), `minutes` one-minute segments
/// starting at `start_ms`, each file's bytes `segment {seq} of {id}` in the server's blob store;
/// its id.
pub async fn closed_recording(
    s: &Server,
    org: &str,
    officer: Option<&str>,
    start_ms: i64,
    minutes: i64,
) -> String {
    let id = shouhu_storage::new_id();
    let repo = s.state.db.recordings();
    repo.open(
        &shouhu_storage::recordings::NewRecording {
            id: id.clone(),
            device_id: "31010000001320000001".into(),
            channel_id: "31010000001310000001".into(),
            officer_id: officer.map(str::to_string),
            org_unit_id: org.into(),
            source: "live".into(),
            trigger: "on_demand".into(),
            started_at_ms: start_ms,
        },
        None,
    )
    .await
    .unwrap();
    for seq in 0..minutes {
        let data = format!("segment {seq} of {id}").into_bytes();
        let key = shouhu_media::recorder::segment_key(&id, seq);
        s.state.blobs.put(&key, &data).await.unwrap();
        let (sha256, sm3) = shouhu_storage::evidence::digests(&data);
        repo.add_segment(
            &id,
            &shouhu_storage::recordings::NewSegment {
                seq,
                start_90k: seq * 60 * 90_000,
                end_90k: (seq + 1) * 60 * 90_000,
                blob_key: key,
                bytes: data.len() as i64,
                init_bytes: 0,
                payload_bytes: data.len() as i64,
                video_codec: Some("h264".into()),
                audio_codec: None,
                sha256,
                sm3,
            },
        )
        .await
        .unwrap();
    }
    let signer = s.state.signer.clone();
    let r = repo
        .close(&id, &move |m: &[u8]| signer.sign(m))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, "closed");
    id
}

/// Tables a refused request may still change (the audit log and its chain, sessions, SIP nonces):
/// the rest are compared before and after to prove it wrote nothing.
pub const UNTRACKED: &[&str] = &[
    "audit_log",
    "audit_chain",
    "audit_seals",
    "sessions",
    "sip_nonces",
    "sip_used_nonces",
];

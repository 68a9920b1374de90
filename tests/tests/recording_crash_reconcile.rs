//! `kill -9` between a segment's index commit and its spool file's removal, with the real
//! binary: the server runs with `SHOUHU_FAULT_AFTER_INDEX=pause`, so the recorder stops right
//! after the first segment is indexed, leaving that segment's file in the spool while the
//! following ones keep spooling; then SIGKILL. After a restart, reconcile finds the indexed
//! file by its digest and does not store it again: every digest once, the spans contiguous,
//! the first segment the spooled file, the later spooled ones indexed after it, the recording
//! closed and signed as complete, the spool empty.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};

const PW: &str = "Shouhu@2026";
const DEVICE: &str = "31010000001320000001";

fn env(c: &mut Command) {
    c.env("SHOUHU__RECORDING__SEGMENT_SECS", "1")
        .env("SHOUHU__MEDIA__GRACE_SECS", "1")
        .env("SHOUHU__DISPATCH__HISTORY_FLUSH_MS", "200");
}

struct Api {
    http: String,
    token: String,
}

impl Api {
    async fn new(http: &str) -> Api {
        let r: Value = reqwest::Client::new()
            .post(format!("{http}/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": PW}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            http: http.to_string(),
            token: r["token"].as_str().expect("token").to_string(),
        }
    }

    async fn req(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(m, format!("{}/api/v1{path}", self.http))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.req(reqwest::Method::GET, path, None).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn spooled(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256_hex(b: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_index_and_spool_removal_does_not_duplicate_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    c.args(["demo", "--enterprises", "10", "--always-on-recorders", "0"])
        .env("SHOUHU_FAULT_AFTER_INDEX", "pause");
    env(&mut c);
    let mut run = Running::start(c, "http");
    let api = Api::new(&run.base).await;
    let rec = api
        .wait_for(
            &format!("/recorders/{DEVICE}"),
            "registered with its catalog",
            |v| {
                v["access"]["online"] == json!(true)
                    && v["channel_list"].as_array().is_some_and(|c| !c.is_empty())
            },
        )
        .await;
    let channel = rec["channel_list"][0]["channel_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = api
        .req(
            reqwest::Method::POST,
            "/recordings/start",
            Some(json!({"device_id": DEVICE, "channel_id": channel})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["recording_id"].as_str().unwrap().to_string();
    // The first segment indexed: the recorder pauses right after the commit, its file still in
    // the spool.
    let r = api
        .wait_for(&format!("/recordings/{id}"), "a segment indexed", |v| {
            v["segment_count"].as_i64() >= Some(1)
        })
        .await;
    let first_sha = r["segments"][0]["sha256"].as_str().unwrap().to_string();
    let data = dir.path().join("demo");
    let spool = data.join("spool").join(&id);
    // Two more segments complete in the spool behind it (storing is paused).
    let deadline = Instant::now() + Duration::from_secs(30);
    while spooled(&spool, ".done").len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", spooled(&spool, ""));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = spooled(&spool, ".done");
    assert_eq!(done[0], "000000.done", "{done:?}");
    let file = std::fs::read(spool.join(&done[0])).unwrap();
    assert_eq!(
        sha256_hex(&file),
        first_sha,
        "the indexed file is still spooled"
    );
    let (_, r) = api
        .req(reqwest::Method::GET, &format!("/recordings/{id}"), None)
        .await;
    assert_eq!(
        r["segment_count"], 1,
        "storing stopped after the first: {r}"
    );

    // SIGKILL.
    run.child.kill().unwrap();
    run.child.wait().unwrap();

    // Restart on the same data (serve, without the fault point).
    let mut c = shouhu(&data);
    c.arg("serve");
    env(&mut c);
    let run = Running::start(c, "http");
    let api = Api::new(&run.base).await;
    let (_, r) = api
        .req(reqwest::Method::GET, &format!("/recordings/{id}"), None)
        .await;
    assert_eq!(r["status"], "closed", "closed at start-up: {r}");
    assert_eq!(r["incomplete"], false, "{r}");
    assert!(r["head_signature"].as_str().is_some(), "{r}");
    let segs = r["segments"].as_array().unwrap().clone();
    assert!(
        segs.len() >= done.len(),
        "every spooled segment indexed: {} for {done:?}",
        segs.len()
    );
    let mut digests: Vec<&str> = segs.iter().map(|s| s["sha256"].as_str().unwrap()).collect();
    assert_eq!(digests[0], first_sha);
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), segs.len(), "a segment stored twice: {r}");
    for w in segs.windows(2) {
        assert_eq!(w[0]["end_90k"], w[1]["start_90k"], "contiguous: {r}");
    }
    assert!(!spool.exists(), "the spool was reconciled");
    let (st, lines) = run.stop();
    assert!(st.success());
    let _ = lines;
}

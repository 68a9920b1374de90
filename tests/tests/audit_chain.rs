//! The real binary: audit rows written through the API are sealed (at shutdown, and by
//! `shouhu audit seal`) with their signed heads exported to the heads file and the blob store;
//! `shouhu audit verify` passes on the untouched log, and after an administrator drops the
//! append-only triggers and changes a row, then deletes one, directly in SQLite or PostgreSQL,
//! it names the first broken row and exits non-zero — from the heads file alone and from the
//! blob store alone.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;
use shouhu_e2e::{run_ok, shouhu, Running};
use shouhu_storage::audit_chain::ChainRow;
use shouhu_storage::{Db, Engine};

fn with_db(mut c: Command, url: Option<&str>) -> Command {
    if let Some(u) = url {
        c.env("SHOUHU__DATABASE__URL", u);
    }
    c
}

/// Run `shouhu audit verify ARGS`; (success, stdout, stderr).
fn verify(dir: &Path, url: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut c = with_db(shouhu(dir), url);
    c.args(["audit", "verify"]).args(args);
    let out = c.output().expect("spawn shouhu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_fails_naming(dir: &Path, url: Option<&str>, args: &[&str], needles: &[&str]) {
    let (ok, out, err) = verify(dir, url, args);
    assert!(!ok, "verify {args:?} passed on a tampered log: {out}");
    for n in needles {
        assert!(err.contains(n), "verify {args:?} should name {n:?}: {err}");
    }
}

fn assert_verifies(dir: &Path, url: Option<&str>, args: &[&str]) -> String {
    let (ok, out, err) = verify(dir, url, args);
    assert!(ok, "verify {args:?} failed: {out}\n{err}");
    assert!(out.starts_with("OK: "), "{out}");
    out
}

async fn story(dir: &Path, url: Option<&str>) {
    let mut c = with_db(shouhu(dir), url);
    c.args([
        "admin",
        "create-user",
        "--username",
        "root_admin",
        "--password",
        "Admin@2026x",
        "--role",
        "admin",
        "--no-force-change",
    ]);
    run_ok(c);
    let server = Running::start(
        {
            let mut c = with_db(shouhu(dir), url);
            c.arg("serve");
            c
        },
        "http",
    );
    let http = reqwest::Client::new();
    for (password, status) in [
        ("wrong-password", StatusCode::UNAUTHORIZED),
        ("Admin@2026x", StatusCode::OK),
        ("wrong-again", StatusCode::UNAUTHORIZED),
        ("Admin@2026x", StatusCode::OK),
    ] {
        let r = http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({"username": "root_admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    // The shutdown seals what the API wrote.
    let (status, lines) = server.stop();
    assert!(status.success(), "{lines:?}");
    let heads_file = dir.join("audit-heads.jsonl");
    let heads = std::fs::read_to_string(&heads_file).unwrap();
    assert!(heads.lines().count() >= 1, "a head per seal: {heads}");
    assert!(dir.join("blobs/audit-heads/latest.json").exists());
    let mut c = with_db(shouhu(dir), url);
    c.args(["audit", "seal"]);
    assert!(
        run_ok(c).contains("nothing to seal"),
        "all sealed at shutdown"
    );

    let out = assert_verifies(dir, url, &[]);
    assert!(out.contains("from the blob store"), "{out}");
    assert_verifies(dir, url, &["--no-blob"]);

    // The administrator's console.
    let db = Db::connect(
        &url.map(str::to_string)
            .unwrap_or_else(|| Db::sqlite_url_in(dir)),
        1,
    )
    .await
    .unwrap();
    let rows: Vec<ChainRow> = db.audit_chain().rows(0, 1000).await.unwrap();
    let failed: Vec<&ChainRow> = rows
        .iter()
        .filter(|r| r.action == "auth.login" && r.outcome == "failure")
        .collect();
    assert_eq!(failed.len(), 2, "{rows:?}");
    // The triggers refuse a change until they are dropped.
    assert!(db
        .execute_raw(&format!(
            "UPDATE audit_log SET outcome = 'success' WHERE seq = {}",
            failed[0].seq
        ))
        .await
        .is_err());
    db.execute_raw(match db.engine() {
        Engine::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
        Engine::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log;",
    })
    .await
    .unwrap();
    // A failed login turned into a success.
    db.execute_raw(&format!(
        "UPDATE audit_log SET outcome = 'success' WHERE seq = {}",
        failed[0].seq
    ))
    .await
    .unwrap();
    for args in [&[][..], &["--no-blob"], &["--heads", "/dev/null"]] {
        assert_fails_naming(
            dir,
            url,
            args,
            &[&failed[0].id, "changed", "outcome", "FAILED"],
        );
    }
    db.execute_raw(&format!(
        "UPDATE audit_log SET outcome = 'failure' WHERE seq = {}",
        failed[0].seq
    ))
    .await
    .unwrap();
    assert_verifies(dir, url, &[]);
    // The other failed login deleted.
    db.execute_raw(&format!(
        "DELETE FROM audit_log WHERE seq = {}",
        failed[1].seq
    ))
    .await
    .unwrap();
    assert_fails_naming(dir, url, &[], &[&failed[1].id, "deleted"]);
    // From the shipped file alone (no blob store), and from the blob store alone (file gone).
    assert_fails_naming(dir, url, &["--no-blob"], &[&failed[1].id, "deleted"]);
    std::fs::rename(&heads_file, dir.join("shipped-heads.jsonl")).unwrap();
    assert_fails_naming(dir, url, &[], &[&failed[1].id, "deleted"]);
    assert_fails_naming(
        dir,
        url,
        &[
            "--no-blob",
            "--heads",
            dir.join("shipped-heads.jsonl").to_str().unwrap(),
        ],
        &[&failed[1].id, "deleted"],
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_on_sqlite_is_named() {
    let dir = tempfile::tempdir().unwrap();
    story(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_on_postgres_is_named() {
    let admin = std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let Some(pg) = shouhu_e2e::pg::create_database(&admin, "e2e_audit").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    story(dir.path(), Some(&pg.url)).await;
    pg.drop_now().await;
}

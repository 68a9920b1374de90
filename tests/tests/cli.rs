//! The real binary: migrate on an empty and an existing database, create a user on a stopped and
//! on a running server's database, serve, metrics on their own listener, graceful shutdown, the
//! example configuration, refusal of unknown configuration keys.

use reqwest::StatusCode;
use serde_json::json;
use shouhu_e2e::{run_ok, shouhu, Running};

#[test]
fn config_example_is_the_shipped_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    c.args(["config", "example"]);
    let out = run_ok(c);
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/shouhu.example.toml"
    ))
    .unwrap();
    assert_eq!(out, shipped);
}

#[test]
fn unknown_configuration_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shouhu(dir.path());
    c.env("SHOUHU__HTTP__LISTN", "127.0.0.1:1").arg("migrate");
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listn"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    // A data directory the server creates (its mode is the server's doing).
    let data = tmp.path().join("data");
    let dir = &data;
    // Migrations apply on an empty database and again on the existing one.
    let mut c = shouhu(dir);
    c.arg("migrate");
    assert!(run_ok(c).contains("Sqlite"));
    let mut c = shouhu(dir);
    c.arg("migrate");
    run_ok(c);
    // A user created while the server is stopped.
    let mut c = shouhu(dir);
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
    assert!(run_ok(c).contains("root_admin"));
    // Bad CLI input is refused with a reason.
    let mut c = shouhu(dir);
    c.args([
        "admin",
        "create-user",
        "--username",
        "x_user",
        "--password",
        "short",
        "--role",
        "admin",
    ]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));

    let server = Running::start(
        {
            let mut c = shouhu(dir);
            c.arg("serve");
            c
        },
        "http",
    );
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A user created while it runs can log in at once.
    let mut c = shouhu(dir);
    c.args([
        "admin",
        "create-user",
        "--username",
        "night_operator",
        "--password",
        "Night@2026x",
        "--role",
        "operator",
    ]);
    run_ok(c);
    let r = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "night_operator", "password": "Night@2026x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["account"]["must_change_password"], true);
    let r = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "root_admin", "password": "Admin@2026x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // A blob on disk too.
    let r = http
        .post(format!("{}/api/v1/attachments", server.base))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body([&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 64][..]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, lines) = server.stop();
    assert!(status.success(), "exit status {status}; log: {lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("server stopped")),
        "{lines:?}"
    );
    // Everything under the data directory is the server's alone (issue 21 item 5): the
    // database and its WAL, keys, blobs; directories 0700, files 0600.
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut open = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        seen += 1;
        if meta.is_dir() {
            if mode != 0o700 {
                open.push(format!("{} {mode:o}", p.display()));
            }
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if mode != 0o600 {
            open.push(format!("{} {mode:o}", p.display()));
        }
    }
    assert!(seen > 4, "{seen} entries");
    assert!(
        data.join("shouhu.db").exists() && data.join("blobs").exists(),
        "the database and a blob are there"
    );
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_and_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    // A CA and a server certificate signed by it, as a real deployment has.
    let ca_key = dir.path().join("ca.key");
    let ca = dir.path().join("ca.pem");
    let csr = dir.path().join("srv.csr");
    let ext = dir.path().join("srv.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let openssl = |args: Vec<&std::ffi::OsStr>| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (installed by make test)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    openssl(vec![
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
        os("-days"),
        os("1"),
        os("-subj"),
        os("/CN=Shouhu Test CA"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(vec![
        os("req"),
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ]);
    openssl(vec![
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("1"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    let mut c = shouhu(dir.path());
    c.args([
        "admin",
        "create-user",
        "--username",
        "tls_admin",
        "--password",
        "Admin@2026x",
        "--role",
        "admin",
        "--no-force-change",
    ]);
    run_ok(c);
    // Metrics on a fixed free port so the test knows where to look.
    let mport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = shouhu(dir.path());
    c.env("SHOUHU__HTTP__TLS_CERT", &cert)
        .env("SHOUHU__HTTP__TLS_KEY", &key)
        .env("SHOUHU__METRICS__LISTEN", format!("127.0.0.1:{mport}"))
        .arg("serve");
    let server = Running::start(c, "https");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = https
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "tls_admin", "password": "Admin@2026x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Plain HTTP to the TLS port fails.
    let plain = server.base.replace("https://", "http://");
    assert!(
        reqwest::get(format!("{plain}/healthz")).await.is_err()
            || reqwest::get(format!("{plain}/healthz"))
                .await
                .map(|r| !r.status().is_success())
                .unwrap_or(true)
    );
    let m = reqwest::get(format!("http://127.0.0.1:{mport}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("http_requests_total"), "{m}");
    assert!(m.contains("route=\"/api/v1/auth/login\""), "{m}");
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_serve_on_postgres() {
    let admin_url = std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = match shouhu_e2e::pg::create_database(&admin_url, "t_e2e").await {
        Some(d) => d,
        None => return,
    };
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut c = shouhu(dir.path());
        c.env("SHOUHU__DATABASE__URL", &db.url).arg("migrate");
        assert!(run_ok(c).contains("Postgres"));
    }
    let mut c = shouhu(dir.path());
    c.env("SHOUHU__DATABASE__URL", &db.url).args([
        "admin",
        "create-user",
        "--username",
        "pg_admin",
        "--password",
        "Admin@2026x",
        "--role",
        "admin",
        "--no-force-change",
    ]);
    run_ok(c);
    let mut c = shouhu(dir.path());
    c.env("SHOUHU__DATABASE__URL", &db.url).arg("serve");
    let server = Running::start(c, "http");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "pg_admin", "password": "Admin@2026x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _) = server.stop();
    assert!(status.success());
    db.drop_now().await;
}

/// `shouhu verify FILE MANIFEST`: an intact export passes; a changed file, a changed manifest,
/// a manifest re-signed with another key, and a wrong trusted key all fail with the reason.
#[test]
fn verify_checks_an_export_against_its_manifest() {
    use shouhu_storage::evidence::{append, genesis, head_message, Manifest, SignedHead, Signer};
    let dir = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let server = Signer::from_seed(&seed);
    let other = Signer::from_seed(&[9u8; 32]);
    // Three 60 s segments of a recording, and an export cut from them.
    let mut prev = genesis("rec-cli");
    let mut segments = Vec::new();
    for (i, body) in [&b"segment zero"[..], b"segment one", b"segment two"]
        .iter()
        .enumerate()
    {
        let s = append(
            &prev,
            i as u32,
            body,
            i as i64 * 60_000,
            (i as i64 + 1) * 60_000,
        );
        prev = s.link_bytes().unwrap();
        segments.push(s);
    }
    let export = b"an exported mp4 cut from the three segments".to_vec();
    let (sha, sm3) = shouhu_storage::evidence::digests(&export);
    let manifest = Manifest {
        format: "shouhu-manifest-v1".into(),
        recording_id: "rec-cli".into(),
        from_ms: 0,
        to_ms: 180_000,
        export_sha256: hex::encode(sha),
        export_sm3: hex::encode(sm3),
        export_bytes: export.len() as u64,
        chain_start: hex::encode(genesis("rec-cli")),
        segments,
        head: Some(SignedHead {
            segments: 3,
            head: hex::encode(prev),
            signature: server.sign(&head_message("rec-cli", 3, &prev)),
        }),
        incomplete: false,
        gaps: Vec::new(),
        public_key: String::new(),
        signature: String::new(),
    }
    .sign(&server);
    let file = dir.path().join("export.mp4");
    let mpath = dir.path().join("export.manifest.json");
    std::fs::write(&file, &export).unwrap();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let run = |extra: &[&str], key: Option<&str>| {
        let mut c = shouhu(dir.path());
        if let Some(k) = key {
            c.env("SHOUHU__AUTH__EVIDENCE_KEY", k);
        }
        c.arg("verify").arg(&file).arg(&mpath).args(extra);
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let key = hex::encode(seed);
    let (ok, out) = run(&[], Some(&key));
    assert!(ok, "{out}");
    assert!(out.contains("OK") && out.contains("rec-cli"), "{out}");
    // Without a configured key there is nothing to trust unless one is given.
    let (ok, out) = run(&[], None);
    assert!(!ok && out.contains("--public-key"), "{out}");
    let (ok, out) = run(&["--public-key", &server.public_key_hex()], None);
    assert!(ok, "{out}");
    let (ok, out) = run(&["--public-key", &other.public_key_hex()], None);
    assert!(!ok && out.contains("signature"), "{out}");

    // A changed export.
    let mut changed = export.clone();
    changed[3] ^= 0x20;
    std::fs::write(&file, &changed).unwrap();
    let (ok, out) = run(&[], Some(&key));
    assert!(!ok && out.contains("digest"), "{out}");
    std::fs::write(&file, &export).unwrap();
    // A changed manifest, and the same change re-signed with another key.
    let mut edited = manifest.clone();
    edited.to_ms = 120_000;
    std::fs::write(&mpath, serde_json::to_vec(&edited).unwrap()).unwrap();
    let (ok, out) = run(&[], Some(&key));
    assert!(!ok && out.contains("signature"), "{out}");
    std::fs::write(&mpath, serde_json::to_vec(&edited.sign(&other)).unwrap()).unwrap();
    let (ok, out) = run(&[], Some(&key));
    assert!(!ok && out.contains("signature"), "{out}");
    // Not a manifest at all.
    std::fs::write(&mpath, b"{\"format\": 1}").unwrap();
    let (ok, out) = run(&[], Some(&key));
    assert!(!ok && out.contains("not a manifest"), "{out}");
}

/// Key rotation through the binary (issue 21 item 6): an officer's phone sealed under key A is
/// read by a server configured with key B and A as a previous key, `admin rotate-field-key`
/// seals it again under B, and afterwards a server with B alone reads and finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_key_rotation_through_the_binary() {
    const KEY_A: &str = "00112233445566778899aabbccddeeff";
    const KEY_B: &str = "8899aabbccddeeff0011223344556677";
    const PHONE: &str = "13912345678";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let with_keys = |current: &str, previous: &str| {
        let mut c = shouhu(dir);
        c.env("SHOUHU__AUTH__FIELD_KEY", current)
            .env("SHOUHU__AUTH__PREVIOUS_FIELD_KEYS", previous);
        c
    };
    let mut c = with_keys(KEY_A, "");
    c.args([
        "admin",
        "create-user",
        "--username",
        "key_admin",
        "--password",
        "Admin@2026x",
        "--role",
        "admin",
        "--no-force-change",
    ]);
    run_ok(c);
    let http = reqwest::Client::new();
    let login = |base: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"username": "key_admin", "password": "Admin@2026x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let b: serde_json::Value = r.json().await.unwrap();
            (
                b["token"].as_str().unwrap().to_string(),
                b["account"]["org_unit_id"].as_str().unwrap().to_string(),
            )
        }
    };
    // The officer is written under key A.
    let server = Running::start(
        {
            let mut c = with_keys(KEY_A, "");
            c.arg("serve");
            c
        },
        "http",
    );
    let (token, unit) = login(server.base.clone()).await;
    let r = http
        .post(format!("{}/api/v1/officers", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "孙八", "certificate_no": "KEY-0001", "org_unit_id": unit, "phone": PHONE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    server.stop();

    // Reads the officer and finds it by the last four digits.
    let check = |base: String, token: String| {
        let http = http.clone();
        let id = id.clone();
        async move {
            let o: serde_json::Value = http
                .get(format!("{base}/api/v1/officers/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(o["phone"], PHONE, "{o}");
            let l: serde_json::Value = http
                .get(format!("{base}/api/v1/officers?q=5678"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(l["total"], 1, "{l}");
        }
    };
    // Key B with A as the previous key: still readable before the rotation.
    let server = Running::start(
        {
            let mut c = with_keys(KEY_B, KEY_A);
            c.arg("serve");
            c
        },
        "http",
    );
    let (token, _) = login(server.base.clone()).await;
    check(server.base.clone(), token).await;
    server.stop();

    let mut c = with_keys(KEY_B, KEY_A);
    c.args(["admin", "rotate-field-key"]);
    let out = run_ok(c);
    assert!(
        out.contains("officers.phone_sealed: 1 sealed again"),
        "{out}"
    );
    let mut c = with_keys(KEY_B, KEY_A);
    c.args(["admin", "rotate-field-key"]);
    assert!(
        run_ok(c).contains("0 values now sealed"),
        "a second run has nothing to do"
    );

    // Key B alone now reads and finds it.
    let server = Running::start(
        {
            let mut c = with_keys(KEY_B, "");
            c.arg("serve");
            c
        },
        "http",
    );
    let (token, _) = login(server.base.clone()).await;
    check(server.base.clone(), token).await;
    server.stop();
}

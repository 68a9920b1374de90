//! Exports, manifests and evidence packages streamed from the segments, and imports streamed to
//! a spool file, on both engines: the export of an imported camera file is byte for byte the
//! file assembled independently here from its segments (init section of the first, every
//! fragment of each) and plays (ffprobe); its manifest carries that file's digests; `Range`
//! requests (first bytes, across a segment boundary, a suffix) are slices of it and an invalid
//! one is 416; the evidence package opens with Python's `zipfile` and its `SHA256SUMS` hold. An
//! import is refused (403, 404 out of scope) before its body is read — the answer comes while
//! the client still holds most of the body back — and an over-limit body is 413 with no spool
//! file left behind.

mod common;

use std::time::Duration;

use common::{huangpu_officers, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEVICE: &str = "31010100001320000078";

fn camera_file(dir: &std::path::Path) -> Vec<u8> {
    let out = dir.join("cam.mp4");
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"])
        .args([
            "-t",
            "4.2",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            "25",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k"])
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg)");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

async fn add_recorder(s: &Server, head: &str) -> Vec<String> {
    let officers = huangpu_officers(s, head).await;
    let (st, b) = s
        .send(
            Method::POST,
            head,
            "/api/v1/recorders",
            json!({"device_id": DEVICE, "name": "记录仪078", "org_unit_id": s.huangpu.id, "officer_id": officers[0]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    officers
}

/// The export as the earlier implementation built it in memory, from the segments in the store.
async fn expected_export(s: &Server, id: &str) -> (Vec<u8>, Vec<usize>) {
    let segs = s
        .state
        .db
        .recordings()
        .segments(id, None, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut boundaries = Vec::new();
    let mut init: Option<Vec<u8>> = None;
    for seg in segs {
        let data = s.state.blobs.get(&seg.blob_key).await.unwrap();
        let l = shouhu_media::mp4::recover::layout(&data).expect("fragmented");
        let this_init = &data[..l.init_len];
        match &init {
            None => {
                init = Some(this_init.to_vec());
                out.extend_from_slice(this_init);
            }
            Some(i) => assert_eq!(i.as_slice(), this_init, "one init section"),
        }
        for f in &l.fragments {
            out.extend_from_slice(&data[f.start..f.end]);
        }
        boundaries.push(out.len());
    }
    (out, boundaries)
}

async fn get_range(s: &Server, token: &str, path: &str, range: &str) -> reqwest::Response {
    s.client()
        .get(s.url(path))
        .bearer_auth(token)
        .header("range", range)
        .send()
        .await
        .unwrap()
}

fn spool_files(s: &Server) -> Vec<std::path::PathBuf> {
    let dir = s.state.cfg.server.data_dir.join("spool").join("imports");
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A raw HTTP/1.1 request whose head promises `declared` body bytes (or chunked) of which only
/// `sent` are written before the answer is awaited; the status line's code.
async fn partial_upload(s: &Server, token: &str, declared: Option<u64>, sent: usize) -> u16 {
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
        .await
        .unwrap();
    let len = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".into(),
    };
    let head = format!(
        "POST /api/v1/recordings/import?device_id={DEVICE}&started_at=1 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {token}\r\ncontent-type: video/mp4\r\n{len}\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    while written < sent {
        let n = chunk.len().min(sent - written);
        let r = if declared.is_some() {
            c.write_all(&chunk[..n]).await
        } else {
            let mut framed = format!("{n:x}\r\n").into_bytes();
            framed.extend_from_slice(&chunk[..n]);
            framed.extend_from_slice(b"\r\n");
            c.write_all(&framed).await
        };
        if r.is_err() {
            break; // the server answered and closed
        }
        written += n;
    }
    // Whatever was promised beyond `sent` is never written: the answer must come anyway.
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
        }
    })
    .await
    .expect("an answer before the body was sent");
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1).unwrap_or("0").parse().unwrap()
}

async fn exports_stream_from_the_segments(s: Server) {
    let head = s.login("hp_head").await;
    let officer = s.login("hp_officer").await;
    let officers = add_recorder(&s, &head).await;
    let dir = tempfile::tempdir().unwrap();
    let file = camera_file(dir.path());
    let q = format!(
        "device_id={DEVICE}&started_at={}&file_name=a.MP4",
        s.state.now() - 3_600_000
    );
    let r = s
        .client()
        .post(s.url(&format!("/api/v1/recordings/import?{q}")))
        .bearer_auth(&officer)
        .header("content-type", "video/mp4")
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rec: serde_json::Value = r.json().await.unwrap();
    let id = rec["id"].as_str().unwrap().to_string();
    assert!(spool_files(&s).is_empty(), "the spool file is removed");

    let (expected, boundaries) = expected_export(&s, &id).await;
    assert!(boundaries.len() >= 3, "several segments: {boundaries:?}");
    let path = format!("/api/v1/recordings/{id}/export.mp4");
    let r = s
        .client()
        .get(s.url(&path))
        .bearer_auth(&head)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.content_length(), Some(expected.len() as u64));
    let got = r.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        hex::encode(Sha256::digest(&expected))
    );
    assert!(got == expected, "byte for byte");
    let xp = dir.path().join("export.mp4");
    std::fs::write(&xp, &got).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&xp)
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && codecs.contains("h264"),
        "{codecs}"
    );

    // The manifest: the digests of that file.
    let (st, m) = s
        .get(&head, &format!("/api/v1/recordings/{id}/manifest"))
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    let (sha, sm3) = shouhu_storage::evidence::digests(&expected);
    assert_eq!(m["export_sha256"], hex::encode(sha));
    assert_eq!(m["export_sm3"], hex::encode(sm3));
    assert_eq!(m["export_bytes"], expected.len());
    assert_eq!(m["segments"].as_array().unwrap().len(), boundaries.len());

    // Ranges: slices of the whole.
    let len = expected.len();
    let b = boundaries[0];
    for (range, slice) in [
        ("bytes=0-99".to_string(), &expected[..100]),
        (
            format!("bytes={}-{}", b - 1000, b + 1000),
            &expected[b - 1000..=b + 1000],
        ),
        ("bytes=-777".to_string(), &expected[len - 777..]),
        (format!("bytes={}-", len - 10), &expected[len - 10..]),
        (format!("bytes=5-{}", len * 2), &expected[5..]),
    ] {
        let r = get_range(&s, &head, &path, &range).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let cr = r.headers()["content-range"].to_str().unwrap().to_string();
        assert!(cr.ends_with(&format!("/{len}")), "{cr}");
        let got = r.bytes().await.unwrap();
        assert!(
            got == slice,
            "{range}: {} bytes, want {}",
            got.len(),
            slice.len()
        );
    }
    for bad in [
        format!("bytes={len}-"),
        "bytes=9-3".into(),
        "bytes=0-1,5-9".into(),
    ] {
        let r = get_range(&s, &head, &path, &bad).await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
    }

    // The evidence package.
    let enterprise = s.enterprise_id("黄浦钢结构").await;
    let (st, i) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/inspections",
            json!({"enterprise_id": enterprise, "kind": "planned", "officer_ids": officers}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{i}");
    let inspection = i["id"].as_str().unwrap();
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/recordings/{id}/links"),
            json!({ "inspection_id": inspection }),
        )
        .await;
    assert!(st.is_success(), "{b}");
    let r = s
        .client()
        .get(s.url(&format!("/api/v1/inspections/{inspection}/evidence.zip")))
        .bearer_auth(&head)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let zip = r.bytes().await.unwrap();
    let zp = dir.path().join("evidence.zip");
    std::fs::write(&zp, &zip).unwrap();
    let check = format!(
        r#"
import hashlib, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
names = z.namelist()
sums = z.read("SHA256SUMS").decode().splitlines()
assert len(sums) == len(names) - 1, (sums, names)
for line in sums:
    digest, name = line.split("  ", 1)
    assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
mp4 = z.read("{id}/recording.mp4")
assert hashlib.sha256(mp4).hexdigest() == "{sha}", "the package holds the export"
print(" ".join(sorted(names)))
"#,
        sha = hex::encode(sha)
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&check)
        .arg(&zp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(names.contains(&format!("{id}/manifest.json")), "{names}");
    assert!(names.contains("inspection.json") && names.contains("public_key.txt"));
    if let Ok(o) = std::process::Command::new("unzip")
        .arg("-tq")
        .arg(&zp)
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
}

async fn imports_are_refused_before_the_body(s: Server) {
    let head = s.login("hp_head").await;
    add_recorder(&s, &head).await;
    let operator = s.login("operator").await; // no recording.review
    let xh = s.login("xh_head").await; // the recorder is out of scope
                                       // 1 GiB promised, 128 KiB sent: the answer comes without the rest.
    assert_eq!(
        partial_upload(&s, &operator, Some(1 << 30), 128 << 10).await,
        403
    );
    assert_eq!(partial_upload(&s, &xh, Some(1 << 30), 128 << 10).await, 404);
    assert!(spool_files(&s).is_empty());
}

async fn over_limit_bodies_are_413(s: Server) {
    let head = s.login("hp_head").await;
    add_recorder(&s, &head).await;
    let officer = s.login("hp_officer").await;
    // Declared too large: refused before reading.
    assert_eq!(
        partial_upload(&s, &officer, Some(4 << 20), 64 << 10).await,
        413
    );
    // Chunked, with no length: refused once past the limit while streaming.
    assert_eq!(partial_upload(&s, &officer, None, 3 << 20).await, 413);
    assert!(spool_files(&s).is_empty(), "{:?}", spool_files(&s));
}

macro_rules! both {
    ($name:ident, $cfg:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = common::start_with(common::Engine::Sqlite, $cfg)
                    .await
                    .unwrap();
                super::$name(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = common::start_with(common::Engine::Postgres, $cfg).await {
                    super::$name(s).await;
                }
            }
        }
    };
}

both!(exports_stream_from_the_segments, |c| {
    c.recording.segment_secs = 1;
});
both!(imports_are_refused_before_the_body, |_| {});
both!(over_limit_bodies_are_413, |c| {
    c.recording.max_import_bytes = 1 << 20;
});

//! A 1 GiB export streamed by the real binary in bounded memory: a recording of ~1 GiB of
//! segments (one real fragmented MP4 file from ffmpeg, stored again and again through the blob
//! store's `put_file`, each copy with its own trailing `free` box so no two files are alike, and indexed with its digests
//! through the storage API), downloaded whole while the server's VmRSS is sampled from
//! `/proc/<pid>/status`. The peak growth stays far below the export's size, and the download
//! has the length and SHA-256 of the file assembled independently (init section once, every
//! segment's fragments) — the digest the manifest signs.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};
use shouhu_storage::blob::{BlobStore, LocalBlobStore};
use shouhu_storage::recordings::{NewRecording, NewSegment};

const PW: &str = "Shouhu@2026";
const DEVICE: &str = "31010000001320000001";
const TARGET_BYTES: u64 = 1 << 30;
const MAX_GROWTH: u64 = 150 << 20;

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn sha256_of_cmd(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A fragmented MP4 segment of ~32 MiB: incompressible picture, lossless.
fn big_segment(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("seg.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=25,noise=alls=100:allf=t")
        .args([
            "-frames:v",
            "24",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
        ])
        .args(["-g", "6", "-pix_fmt", "yuv420p"])
        .args(["-movflags", "frag_keyframe+empty_moov+default_base_moof"])
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg)");
    assert!(st.success());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_export_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut c = shouhu(&data);
    c.args(["demo", "--enterprises", "5", "--always-on-recorders", "0"]);
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let pid = run.child.id();
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("token").to_string();

    // The recording, through the storage API of the same database and blob store.
    let seg = big_segment(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    let l = shouhu_media::mp4::recover::layout(&bytes).expect("fragmented");
    assert!(l.fragments.len() >= 2);
    std::fs::write(dir.path().join("init.bin"), &bytes[..l.init_len]).unwrap();
    let frags: Vec<u8> = l
        .fragments
        .iter()
        .flat_map(|f| bytes[f.start..f.end].iter().copied())
        .collect();
    std::fs::write(dir.path().join("frags.bin"), &frags).unwrap();
    let copies = TARGET_BYTES.div_ceil(bytes.len() as u64) as i64;
    // `shouhu demo` serves a fresh database under `<data_dir>/demo`.
    let served = data.join("demo");
    let db = shouhu_storage::Db::connect(&shouhu_storage::Db::sqlite_url_in(&served), 2)
        .await
        .unwrap();
    let blobs = LocalBlobStore::new(served.join("blobs"));
    let unit = db.org_units().list().await.unwrap()[0].id.clone();
    let id = shouhu_storage::new_id();
    let repo = db.recordings();
    let started = 1_700_000_000_000i64;
    repo.open(
        &NewRecording {
            id: id.clone(),
            device_id: DEVICE.into(),
            channel_id: "31010000001310000001".into(),
            officer_id: None,
            org_unit_id: unit,
            source: "live".into(),
            trigger: "on_demand".into(),
            started_at_ms: started,
        },
        None,
    )
    .await
    .unwrap();
    // Each segment is the same picture with its own trailing `free` box (its number), so each
    // file has its own digest (a recording never holds one file twice) while the export, made
    // of the init section and the fragments only, is the same fragments again and again.
    let copy = dir.path().join("copy.mp4");
    for seq in 0..copies {
        let mut file = bytes.clone();
        file.extend_from_slice(&16u32.to_be_bytes());
        file.extend_from_slice(b"free");
        file.extend_from_slice(&(seq as u64).to_be_bytes());
        let (sha, sm3) = shouhu_storage::evidence::digests(&file);
        let size = file.len() as i64;
        std::fs::write(&copy, &file).unwrap();
        drop(file);
        let key = shouhu_media::recorder::segment_key(&id, seq);
        blobs.put_file(&key, &copy, Some((sha, sm3))).await.unwrap();
        // The store may have linked the file: a new one for the next copy.
        std::fs::remove_file(&copy).unwrap();
        repo.add_segment(
            &id,
            &NewSegment {
                seq,
                start_90k: seq * 90_000,
                end_90k: (seq + 1) * 90_000,
                blob_key: key,
                bytes: size,
                init_bytes: l.init_len as i64,
                payload_bytes: size - l.init_len as i64,
                video_codec: Some("h264".into()),
                audio_codec: None,
                sha256: sha,
                sm3,
            },
        )
        .await
        .unwrap();
    }
    drop(bytes);
    let signer = shouhu_storage::evidence::Signer::from_seed(&[7; 32]);
    repo.close(&id, &move |m: &[u8]| signer.sign(m))
        .await
        .unwrap();
    let expected_len = l.init_len as u64 + frags.len() as u64 * copies as u64;
    let d = dir.path().display();
    let expected_sha = sha256_of_cmd(&format!(
        "(cat {d}/init.bin; for i in $(seq {copies}); do cat {d}/frags.bin; done) | sha256sum"
    ));
    drop(frags);

    // Sample the server's RSS while it streams.
    let baseline = rss_bytes(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut r = client
        .get(format!("{http}/api/v1/recordings/{id}/export.mp4"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(expected_len));
    // Streamed to `sha256sum` as it arrives (the test holds no more than a chunk either).
    let mut sum = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = sum.stdin.take().unwrap();
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
        std::io::Write::write_all(&mut stdin, &chunk).unwrap();
    }
    drop(stdin);
    let out = sum.wait_with_output().unwrap();
    let got_sha = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let during_export = peak.load(Ordering::Relaxed);

    // The manifest: the same digest, computed by the server without holding the export.
    let m: Value = client
        .get(format!("{http}/api/v1/recordings/{id}/manifest"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let _ = run.stop();
    assert_eq!(got, expected_len);
    assert_eq!(got_sha, expected_sha);
    assert_eq!(m["export_sha256"], expected_sha, "{m}");
    assert_eq!(m["export_bytes"], expected_len);
    eprintln!(
        "export {expected_len} bytes; server RSS {} MiB at start, peak growth {} MiB (export alone {} MiB)",
        baseline >> 20,
        growth >> 20,
        during_export.saturating_sub(baseline) >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "server RSS grew {} MiB streaming a {} MiB export",
        growth >> 20,
        expected_len >> 20
    );
}

//! Recording end to end, with the real binary: a simulated GB/T 28181 recorder streams PS over
//! RTP (H.264 + G.711 A-law); the recorder writes 1 s fMP4 segments through the blob store and
//! indexes them. Checked by independent readers: ffprobe on every segment and on the export
//! (codec, duration within one frame of the index, no errors), ffmpeg reading the HLS playlist
//! end to end (AAC audio on the way out), `shouhu verify` on the export and its manifest (and
//! failing on a changed export). Linking, audit rows, the evidence package; and `kill -9`
//! during a recording: after a restart the completed segments are intact and indexed, the
//! partial one recovered or dropped, the recording closed and signed, the spool empty.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shouhu_e2e::{shouhu, Running};

const PW: &str = "Shouhu@2026";
/// A demo recorder (the simulation streams it).
const DEVICE: &str = "31010000001320000001";

struct Demo {
    run: Running,
    http: String,
    token: String,
}

async fn login(http: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().expect("token").to_string()
}

fn env(c: &mut Command) {
    c.env("SHOUHU__RECORDING__SEGMENT_SECS", "1")
        .env("SHOUHU__MEDIA__GRACE_SECS", "1")
        .env("SHOUHU__DISPATCH__HISTORY_FLUSH_MS", "200");
}

async fn demo(dir: &Path) -> Demo {
    demo_with(dir, &[]).await
}

async fn demo_with(dir: &Path, extra: &[&str]) -> Demo {
    let mut c = shouhu(dir);
    c.args(["demo", "--enterprises", "10", "--always-on-recorders", "0"]);
    c.args(extra);
    env(&mut c);
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let token = login(&http).await;
    Demo { run, http, token }
}

impl Demo {
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

    async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, None).await
    }

    async fn bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.http))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    /// Download the demo camera's record `start`..`end` at 4× speed; the recording's id and its
    /// state once closed.
    async fn download_closed(&self, start: i64, end: i64) -> (String, Value) {
        let (s, v) = self
            .req(
                reqwest::Method::POST,
                "/recordings/download",
                Some(json!({"device_id": DEVICE, "start": start, "end": end, "speed": 4})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let id = v["recording_id"].as_str().unwrap().to_string();
        let r = self
            .wait_for(&format!("/recordings/{id}"), "the download closed", |v| {
                v["status"] == "closed"
            })
            .await;
        (id, r)
    }

    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (_, v) = self.get(path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

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
}

/// ffprobe a file: (codec names, duration in s, stderr).
fn probe(path: &Path) -> (Vec<String>, f64, f64, String) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration,start_time",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let codecs = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let num = |k: &str| {
        v["format"][k]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    (
        codecs,
        num("start_time"),
        num("duration"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Decode a file or URL completely with ffmpeg; returns stderr (empty when clean).
fn decode(input: &str, headers: Option<&str>) -> (bool, String) {
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-nostdin"]);
    if let Some(h) = headers {
        c.args(["-headers", h]);
    }
    c.args(["-i", input, "-f", "null", "-"]);
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A stored segment, fetched as its HLS parts (init + media) without transcoding: the file as
/// stored, byte for byte.
async fn segment_file(d: &Demo, id: &str, seq: i64) -> Vec<u8> {
    let (s, mut init) = d
        .bytes(&format!(
            "/recordings/{id}/segments/{seq}/init.mp4?audio=original"
        ))
        .await;
    assert_eq!(s, 200);
    let (s, media) = d
        .bytes(&format!(
            "/recordings/{id}/segments/{seq}/media.m4s?audio=original"
        ))
        .await;
    assert_eq!(s, 200);
    init.extend(media);
    init
}

fn check_segment(dir: &Path, seg: &Value, file: &[u8]) {
    use sha2_check::sha256_hex;
    assert_eq!(sha256_hex(file), seg["sha256"].as_str().unwrap(), "digest");
    assert_eq!(file.len() as i64, seg["bytes"].as_i64().unwrap());
    let p = dir.join(format!("seg{}.mp4", seg["seq"]));
    std::fs::write(&p, file).unwrap();
    let (codecs, start, end, err) = probe(&p);
    assert!(err.is_empty(), "segment {}: {err}", seg["seq"]);
    assert_eq!(codecs, ["h264", "pcm_alaw"], "segment {}", seg["seq"]);
    // ffprobe's duration of a fragmented file is its end on the timeline.
    let (s90, e90) = (
        seg["start_90k"].as_f64().unwrap() / 90_000.0,
        seg["end_90k"].as_f64().unwrap() / 90_000.0,
    );
    assert!(
        (start - s90).abs() <= 0.041,
        "segment {} starts at {start}, index {s90}",
        seg["seq"]
    );
    assert!(
        (end - e90).abs() <= 0.041,
        "segment {} ends at {end}, index {e90}",
        seg["seq"]
    );
    let (ok, err) = decode(p.to_str().unwrap(), None);
    assert!(ok && err.is_empty(), "segment {}: {err}", seg["seq"]);
}

mod sha2_check {
    pub fn sha256_hex(b: &[u8]) -> String {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_recording_is_segmented_played_linked_and_exported_with_proof() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path()).await;
    let channel = d.channel().await;
    let (s, v) = d
        .req(
            reqwest::Method::POST,
            "/recordings/start",
            Some(json!({"device_id": DEVICE, "channel_id": channel})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["recording_id"].as_str().unwrap().to_string();
    d.wait_for(&format!("/recordings/{id}"), "three segments", |v| {
        v["segment_count"].as_i64() >= Some(3)
    })
    .await;
    let (s, v) = d
        .req(
            reqwest::Method::POST,
            "/recordings/stop",
            Some(json!({"device_id": DEVICE, "channel_id": channel})),
        )
        .await;
    assert_eq!((s, v["recording_id"].as_str()), (200, Some(id.as_str())));
    let (_, rec) = d.get(&format!("/recordings/{id}")).await;
    assert_eq!(rec["status"], "closed", "{rec}");
    assert!(rec["head_signature"]
        .as_str()
        .is_some_and(|s| s.len() == 128));
    assert_eq!(rec["video_codec"], "h264");
    assert_eq!(rec["audio_codec"], "g711a");
    assert_eq!(rec["retention_days"], 365);
    let segs = rec["segments"].as_array().unwrap().clone();
    assert_eq!(segs.len() as i64, rec["segment_count"].as_i64().unwrap());
    // Contiguous spans, each segment valid on its own.
    for w in segs.windows(2) {
        assert_eq!(w[0]["end_90k"], w[1]["start_90k"], "contiguous");
    }
    for seg in &segs {
        let f = segment_file(&d, &id, seg["seq"].as_i64().unwrap()).await;
        check_segment(dir.path(), seg, &f);
    }

    // Search: by recorder, by time, and nothing for another recorder.
    let (_, found) = d.get(&format!("/recordings?device_id={DEVICE}")).await;
    assert!(found["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == json!(id)));
    let (_, none) = d.get("/recordings?device_id=31010000001320000099").await;
    assert_eq!(none["total"], 0);

    // HLS: ffmpeg reads the playlist end to end, the audio as AAC.
    let header = format!("Authorization: Bearer {}\r\n", d.token);
    let url = format!("{}/api/v1/recordings/{id}/playlist.m3u8", d.http);
    let (ok, err) = decode(&url, Some(&header));
    assert!(ok && err.is_empty(), "playlist: {err}");
    let pl = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pl.contains("#EXT-X-PLAYLIST-TYPE:VOD") && pl.contains("#EXT-X-ENDLIST"),
        "{pl}"
    );
    assert!(pl.contains("audio=aac"), "{pl}");
    // The segment URLs carry a media token: a player needs no header.
    let init = pl
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.split('"').next())
        .unwrap();
    let r = reqwest::get(format!("{}/api/v1/recordings/{id}/{init}", d.http))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{init}");
    let r = reqwest::get(format!(
        "{}/api/v1/recordings/{id}/segments/0/init.mp4",
        d.http
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 401, "no token, no footage");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-headers",
            &header,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&out.stdout);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    // A range seeks into the recording: only the overlapping segments, starting at `from`.
    let start = rec["started_at_ms"].as_i64().unwrap();
    let (s, body) = d
        .bytes(&format!(
            "/recordings/{id}/playlist.m3u8?from={}&to={}",
            start + 1500,
            start + 2500
        ))
        .await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(
        body.matches("#EXTINF").count() <= 2 && body.contains("TIME-OFFSET"),
        "{body}"
    );

    // Export with its manifest; `shouhu verify` passes it and fails a changed export.
    let (s, export) = d.bytes(&format!("/recordings/{id}/export.mp4")).await;
    assert_eq!(s, 200);
    let (s, manifest) = d.get(&format!("/recordings/{id}/manifest")).await;
    assert_eq!(s, 200, "{manifest}");
    assert_eq!(manifest["segments"].as_array().unwrap().len(), segs.len());
    let xp = dir.path().join("export.mp4");
    let mp = dir.path().join("manifest.json");
    std::fs::write(&xp, &export).unwrap();
    std::fs::write(&mp, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (codecs, _, end, err) = probe(&xp);
    assert!(err.is_empty(), "export: {err}");
    assert_eq!(codecs, ["h264", "pcm_alaw"]);
    let last_end = segs.last().unwrap()["end_90k"].as_f64().unwrap() / 90_000.0;
    assert!(
        (end - last_end).abs() <= 0.041,
        "export ends at {end}, index {last_end}"
    );
    let (ok, err) = decode(xp.to_str().unwrap(), None);
    assert!(ok && err.is_empty(), "export: {err}");
    let verify = |file: &Path| {
        let mut c = shouhu(&dir.path().join("demo"));
        c.arg("verify").arg(file).arg(&mp);
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = verify(&xp);
    assert!(ok, "{out}");
    let mut changed = export.clone();
    let n = changed.len();
    changed[n - 10] ^= 0x55;
    let cp = dir.path().join("changed.mp4");
    std::fs::write(&cp, &changed).unwrap();
    let (ok, out) = verify(&cp);
    assert!(!ok && out.contains("digest"), "{out}");
    // Range requests.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/recordings/{id}/export.mp4", d.http))
        .bearer_auth(&d.token)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &export[100..200]);

    // Link to an inspection, unlink, link again; the evidence package carries it.
    let (_, insp) = d.get("/inspections?page_size=1").await;
    let inspection = insp["items"][0]["id"]
        .as_str()
        .expect("a demo inspection")
        .to_string();
    let (s, links) = d
        .req(
            reqwest::Method::POST,
            &format!("/recordings/{id}/links"),
            Some(json!({"inspection_id": inspection})),
        )
        .await;
    assert_eq!(s, 200, "{links}");
    assert_eq!(links[0]["state"], "linked");
    let (s, _) = d
        .req(
            reqwest::Method::POST,
            &format!("/recordings/{id}/links"),
            Some(json!({"inspection_id": "no-such-inspection"})),
        )
        .await;
    assert_eq!(s, 422);
    let (_, found) = d
        .get(&format!("/recordings?inspection_id={inspection}"))
        .await;
    assert_eq!(found["total"], 1, "{found}");
    let (s, zip) = d
        .bytes(&format!("/inspections/{inspection}/evidence.zip"))
        .await;
    assert_eq!(s, 200);
    let zp = dir.path().join("evidence.zip");
    std::fs::write(&zp, &zip).unwrap();
    let list = Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print('\\n'.join(z.namelist())); assert z.testzip() is None"])
        .arg(&zp)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    for n in [
        format!("{id}/recording.mp4"),
        format!("{id}/manifest.json"),
        "inspection.json".into(),
        "SHA256SUMS".into(),
    ] {
        assert!(names.lines().any(|l| l == n), "{n} in {names}");
    }
    let (s, links) = d
        .req(
            reqwest::Method::DELETE,
            &format!("/recordings/{id}/links/{inspection}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(links[0]["state"], "dismissed");
    let (_, found) = d
        .get(&format!("/recordings?inspection_id={inspection}"))
        .await;
    assert_eq!(found["total"], 0);

    // Every playback start, export and link change is on record with the account.
    for action in [
        "recording.start",
        "recording.stop",
        "recording.play",
        "recording.export",
        "recording.link",
        "recording.unlink",
    ] {
        let (_, a) = d.get(&format!("/audit?action={action}")).await;
        let items = a["items"].as_array().cloned().unwrap_or_default();
        assert!(
            items
                .iter()
                .any(|e| e["target_id"] == json!(id) && e["username"] == "admin"),
            "{action}: {a}"
        );
    }
    let (st, _) = d.run.stop();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_completed_segments_are_intact_and_the_index_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = demo(dir.path()).await;
    let channel = d.channel().await;
    let (s, v) = d
        .req(
            reqwest::Method::POST,
            "/recordings/start",
            Some(json!({"device_id": DEVICE, "channel_id": channel})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["recording_id"].as_str().unwrap().to_string();
    let before = d
        .wait_for(&format!("/recordings/{id}"), "segments stored", |v| {
            v["segment_count"].as_i64() >= Some(3)
        })
        .await["segment_count"]
        .as_i64()
        .unwrap();
    // Mid-segment: give the current one a fragment or so, then SIGKILL.
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.run.child.kill().unwrap();
    d.run.child.wait().unwrap();
    let data = dir.path().join("demo");
    let spool = data.join("spool").join(&id);
    assert!(
        spool.exists(),
        "the recording's spool is left behind by the kill"
    );

    // Restart on the same data (serve, not demo: the demo starts afresh).
    let mut c = shouhu(&data);
    c.arg("serve");
    env(&mut c);
    let run = Running::start(c, "http");
    let http = run.base.clone();
    let token = login(&http).await;
    let d = Demo { run, http, token };
    let (_, rec) = d.get(&format!("/recordings/{id}")).await;
    assert_eq!(rec["status"], "closed", "closed at start-up: {rec}");
    assert!(rec["head_signature"].as_str().is_some());
    let segs = rec["segments"].as_array().unwrap().clone();
    assert!(
        segs.len() as i64 >= before,
        "{} segments, {before} before the kill",
        segs.len()
    );
    for w in segs.windows(2) {
        assert_eq!(w[0]["end_90k"], w[1]["start_90k"], "contiguous");
    }
    for seg in &segs {
        let f = segment_file(&d, &id, seg["seq"].as_i64().unwrap()).await;
        check_segment(dir.path(), seg, &f);
    }
    assert!(!spool.exists(), "the spool was reconciled");
    // The chain verifies end to end.
    let (s, manifest) = d.get(&format!("/recordings/{id}/manifest")).await;
    assert_eq!(s, 200, "{manifest}");
    let (_, export) = d.bytes(&format!("/recordings/{id}/export.mp4")).await;
    let xp = dir.path().join("export.mp4");
    let mp = dir.path().join("manifest.json");
    std::fs::write(&xp, &export).unwrap();
    std::fs::write(&mp, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let mut c = shouhu(&data);
    c.arg("verify").arg(&xp).arg(&mp);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, lines) = d.run.stop();
    assert!(st.success());
    let _ = lines;
}

/// Footage filmed while nobody watched: the recorder lists what its card holds (GB/T 28181
/// `RecordInfo`), one record is downloaded (`INVITE` with `s=Download` at 4× speed, ended by
/// the device's `MediaStatus` 121) into a recording whose time 0 is the record's start, cut
/// into valid segments covering the record to within a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_stored_on_a_camera_is_listed_and_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path()).await;
    let channel = d.channel().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let path = format!(
        "/recorders/{DEVICE}/records?from={}&to={now}",
        now - 3_600_000
    );
    let (s, records) = d.get(&path).await;
    assert_eq!(s, 200, "{records}");
    let list = records.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{records}");
    let rec = &list[0];
    assert_eq!(rec["channel_id"], json!(channel));
    assert!(rec["recording_id"].is_null());
    let (start, end) = (
        rec["start_ms"].as_i64().unwrap(),
        rec["end_ms"].as_i64().unwrap(),
    );
    assert_eq!(end - start, 20_000);
    let (id, r) = d.download_closed(start, end).await;
    assert_eq!(r["source"], "device");
    assert_eq!(r["started_at_ms"], start);
    assert!(r["head_signature"].as_str().is_some());
    let segs = r["segments"].as_array().unwrap().clone();
    for w in segs.windows(2) {
        assert_eq!(w[0]["end_90k"], w[1]["start_90k"], "contiguous");
    }
    let span =
        segs.last().unwrap()["end_90k"].as_i64().unwrap() - segs[0]["start_90k"].as_i64().unwrap();
    assert!(
        (span - 20 * 90_000).abs() <= 3600,
        "the record's 20 s, within a frame: {span}"
    );
    for seg in &segs {
        let f = segment_file(&d, &id, seg["seq"].as_i64().unwrap()).await;
        check_segment(dir.path(), seg, &f);
    }
    // The listing now points at the download; the download is on record.
    let (_, records) = d.get(&path).await;
    assert_eq!(records[0]["recording_id"], json!(id), "{records}");
    let (_, a) = d.get("/audit?action=recording.download").await;
    assert!(a.to_string().contains(&id), "{a}");
    // Refusals: a range the wrong way round, an unknown recorder.
    let (s, _) = d
        .req(
            reqwest::Method::POST,
            "/recordings/download",
            Some(json!({"device_id": DEVICE, "start": end, "end": start})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = d
        .get("/recorders/31010000001320000999/records?from=0&to=1")
        .await;
    assert_eq!(s, 404);
    let (st, _) = d.run.stop();
    assert!(st.success());
}

/// A download the camera cuts short (its docking link drops: the camera hangs up half-way
/// with a BYE) resumes from the end of what was stored: the segment cut mid-way is fetched
/// again from its keyframe, the device is asked from that whole second on, and what it sends
/// again is skipped, so the recording covers the record once, without a gap or an overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_from_the_end_of_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo_with(dir.path(), &["--drop-first-downloads"]).await;
    d.channel().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (s, records) = d
        .get(&format!(
            "/recorders/{DEVICE}/records?from={}&to={now}",
            now - 3_600_000
        ))
        .await;
    assert_eq!(s, 200, "{records}");
    let rec = &records[0];
    let (start, end) = (
        rec["start_ms"].as_i64().unwrap(),
        rec["end_ms"].as_i64().unwrap(),
    );
    let (id, r) = d.download_closed(start, end).await;
    assert!(r["head_signature"].as_str().is_some());
    let segs = r["segments"].as_array().unwrap().clone();
    for w in segs.windows(2) {
        assert_eq!(w[0]["end_90k"], w[1]["start_90k"], "contiguous: {segs:?}");
    }
    assert_eq!(segs[0]["start_90k"], 0);
    let span = segs.last().unwrap()["end_90k"].as_i64().unwrap();
    assert!(
        (span - (end - start) * 90).abs() <= 3600,
        "the record once, within a frame: {span}"
    );
    for seg in &segs {
        let f = segment_file(&d, &id, seg["seq"].as_i64().unwrap()).await;
        check_segment(dir.path(), seg, &f);
    }
    let (st, lines) = d.run.stop();
    assert!(st.success());
    let logged = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(
        logged("sip.stream_bye_from_device"),
        1,
        "the camera hung up once"
    );
    assert_eq!(logged("recording.download_interrupted"), 1);
    assert_eq!(logged("recording.download_partial_refetched"), 1);
    assert_eq!(logged("recording.download_incomplete"), 0);
}

/// A dispatch call records every stream of the called unit while it lasts: calling the officer
/// who wears the simulated body camera connects at once (a camera has no answer button), the
/// camera's channel records with the trigger `dispatch_call`, the officer shows `in_call`; a
/// second call to the busy unit is refused; hanging up answers once the recording is closed
/// and signed, its segments pass ffprobe, and the start and end are in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_call_records_every_stream_of_the_called_unit() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path()).await;
    let channel = d.channel().await;
    let (_, rec) = d.get(&format!("/recorders/{DEVICE}")).await;
    let officer = rec["officer_id"].as_str().expect("bound").to_string();
    let post = |path: String, body: Value| {
        let d = &d;
        async move { d.req(reqwest::Method::POST, &path, Some(body)).await }
    };
    let (s, call) = post("/calls".into(), json!({"unit_id": officer})).await;
    assert_eq!(s, 200, "{call}");
    assert_eq!(call["state"], "connected", "{call}");
    assert_eq!(call["answer_needed"], false);
    assert_eq!(call["devices"], json!([DEVICE]));
    let call_id = call["id"].as_str().unwrap().to_string();
    let active = d
        .wait_for(
            "/recordings/active",
            "the camera records for the call",
            |v| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|r| {
                        r["device_id"] == DEVICE
                            && r["channel_id"] == json!(channel)
                            && r["triggers"] == json!(["dispatch_call"])
                            && r["recording_id"].is_string()
                    })
                })
            },
        )
        .await;
    let id = active
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device_id"] == DEVICE)
        .unwrap()["recording_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, unit) = d.get(&format!("/units/{officer}")).await;
    assert_eq!(unit["state"], "in_call", "{unit}");
    // Bad requests: a clear error, the open call untouched.
    let (s, e) = post("/calls".into(), json!({"unit": officer})).await;
    assert!(s == 400 || s == 422, "{s} {e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    let (s, _) = post("/calls".into(), json!({"unit_id": "no-such-unit"})).await;
    assert_eq!(s, 404);
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{call_id}/whip", d.http))
        .bearer_auth(&d.token)
        .header("Content-Type", "application/sdp")
        .body("not an offer")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (_, still) = d.get(&format!("/calls/{call_id}")).await;
    assert_eq!(still["state"], "connected", "{still}");
    // One call per unit at a time; vehicles take no calls.
    let (s, busy) = post("/calls".into(), json!({"unit_id": officer})).await;
    assert_eq!((s, busy["code"].as_str()), (409, Some("busy")), "{busy}");
    let (_, vehicles) = d.get("/units?kind=vehicle").await;
    if let Some(v) = vehicles["items"].as_array().and_then(|a| a.first()) {
        let (s, e) = post("/calls".into(), json!({"unit_id": v["id"]})).await;
        assert_eq!((s, e["code"].as_str()), (422, Some("no_device")), "{e}");
    }
    d.wait_for(&format!("/recordings/{id}"), "two segments", |v| {
        v["segment_count"].as_i64() >= Some(2)
    })
    .await;
    let (s, ended) = post(format!("/calls/{call_id}/hangup"), json!({})).await;
    assert_eq!(s, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "hangup");
    assert_eq!(
        ended["recordings"],
        json!([{"device_id": DEVICE, "channel_id": channel, "recording_id": id}])
    );
    // Closed and signed when the hang-up answered.
    let (_, rec) = d.get(&format!("/recordings/{id}")).await;
    assert_eq!(rec["status"], "closed", "{rec}");
    assert_eq!(rec["trigger_kind"], "dispatch_call");
    assert_eq!(rec["officer_id"], json!(officer));
    assert!(rec["head_signature"]
        .as_str()
        .is_some_and(|s| s.len() == 128));
    let segs = rec["segments"].as_array().unwrap().clone();
    assert!(segs.len() >= 2);
    for seg in &segs {
        let f = segment_file(&d, &id, seg["seq"].as_i64().unwrap()).await;
        check_segment(dir.path(), seg, &f);
    }
    let (_, active) = d.get("/recordings/active").await;
    assert!(
        !active
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["device_id"] == DEVICE),
        "{active}"
    );
    let (_, unit) = d.get(&format!("/units/{officer}")).await;
    assert_ne!(unit["state"], "in_call", "{unit}");
    let (_, listed) = d.get("/calls?state=ended").await;
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == json!(call_id)));
    let details = |e: &Value| e["details"].clone();
    let (_, a) = d.get("/audit?action=call.start").await;
    assert!(
        a["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target_id"] == json!(officer)
                && e["username"] == "admin"
                && details(e)["call_id"] == json!(call_id)),
        "{a}"
    );
    let (_, a) = d.get("/audit?action=call.end").await;
    assert!(
        a["items"].as_array().unwrap().iter().any(|e| {
            let x = details(e);
            x["call_id"] == json!(call_id) && x["recordings"] == json!([id])
        }),
        "{a}"
    );
    // An ended call cannot be answered.
    let (s, _) = post(format!("/calls/{call_id}/answer"), json!({})).await;
    assert_eq!(s, 403, "admin is not the called officer");
    let (st, _) = d.run.stop();
    assert!(st.success());
}

//! A blob store that refuses segments, on both engines: the live recorder (fed real H.264 from
//! a published stream) writes through [`FaultyBlobStore`] wrapping the server's own local store.
//! One segment refused persistently leaves a gap: the recording ends `incomplete`, its head is
//! signed over the incomplete head message (never as a whole chain), the gap is in the index and
//! the manifest, and `shouhu verify` (the real binary) names it and exits 2. A refusal that
//! passes is retried and the recording is complete (`shouhu verify` exits 0).

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shouhu_api::clock::Clock;
use shouhu_media::ps::{Codec, Frame};
use shouhu_media::recorder::{Recorder, RecorderConfig, StoreRetry, Trigger};
use shouhu_storage::blob::{BlobStore, FaultyBlobStore};
use shouhu_storage::evidence::{head_message, signed_head_message, verify_signature, Gap};

const DEVICE: &str = "31010000001320000077";
const CHANNEL: &str = "31010000001310000077";

/// A recorder of the server's, writing through `blobs`, with fast retries.
async fn recorder(s: &common::Server, blobs: Arc<dyn BlobStore>, attempts: u32) -> Recorder {
    let actor = shouhu_storage::audit::Actor {
        account_id: None,
        username: Some("test".into()),
        ip: None,
    };
    s.state
        .db
        .recorders()
        .insert(
            &shouhu_storage::recorders::RecorderInput {
                device_id: DEVICE.into(),
                name: "记录仪 077".into(),
                org_unit_id: s.huangpu.id.clone(),
                officer_id: None,
                status: "active".into(),
                model: None,
                channels: 1,
                password: None,
            },
            &shouhu_storage::recorders::SipSecretChange::Keep,
            &shouhu_storage::audit::AuditEntry::new(&actor, "recorder.create", s.clock.now_ms()),
        )
        .await
        .unwrap();
    let clock = s.clock.clone();
    let r = Recorder::new(
        s.state.streams.clone(),
        s.state.db.clone(),
        blobs,
        s.state.signer.clone(),
        RecorderConfig {
            segment_secs: 1,
            spool_dir: s.state.cfg.server.data_dir.join("spool"),
            start_timeout: Duration::from_secs(20),
            retry: Duration::from_secs(1),
        },
        Arc::new(move || clock.now_ms()),
    );
    r.set_store_retry(StoreRetry {
        attempts,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    });
    r
}

/// Record `seconds` of the simulated camera's H.264 (25 frames a second, a keyframe each
/// second, so one segment a second) through `rec`; the recording's id once it is closed.
async fn record(s: &common::Server, rec: &Recorder, seconds: usize) -> String {
    let profile = shouhu_api::simulate_gb::MediaProfile {
        audio: None,
        ..Default::default()
    };
    let sample = shouhu_api::simulate_gb::sample(&profile)
        .await
        .expect("ffmpeg makes the sample");
    let publisher = s.state.streams.publish(DEVICE, CHANNEL).unwrap();
    let frame = |i: usize| Frame {
        codec: Codec::H264,
        pts_90k: Some(i as u64 * 3600),
        dts_90k: Some(i as u64 * 3600),
        data: sample.video[i % sample.video.len()].clone(),
        keyframe: i % 25 == 0,
        received: None,
        rtp_payloads: Default::default(),
    };
    // The first picture, so the recording starts; then the rest, paced so the recorder keeps up.
    publisher.push(frame(0));
    let start = {
        let rec = rec.clone();
        tokio::spawn(async move { rec.start(DEVICE, CHANNEL, Trigger::OnDemand, None).await })
    };
    let id = start.await.unwrap().expect("the recording starts");
    // Each frame once the recorder has taken the one before: under a loaded CI machine a
    // recorder paced by the clock fell behind the broadcast and lost whole seconds of frames.
    for i in 1..seconds * 25 + 1 {
        publisher.push(frame(i));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while publisher.stream().queued() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the recorder did not take frame {i} in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(
        rec.stop(DEVICE, CHANNEL, Trigger::OnDemand)
            .await
            .as_deref(),
        Some(id.as_str())
    );
    drop(publisher);
    id
}

/// The export and manifest through the API, and `shouhu verify` on them: (exit code, output).
async fn verify(s: &common::Server, token: &str, id: &str) -> (i32, String, Value) {
    let (st, manifest) = s
        .get(token, &format!("/api/v1/recordings/{id}/manifest"))
        .await;
    assert!(st.is_success(), "{manifest}");
    let export = s
        .client()
        .get(s.url(&format!("/api/v1/recordings/{id}/export.mp4")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (xp, mp) = (dir.path().join("x.mp4"), dir.path().join("m.json"));
    std::fs::write(&xp, &export).unwrap();
    std::fs::write(&mp, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shouhu"))
        .env("SHOUHU__SERVER__DATA_DIR", dir.path())
        .arg("verify")
        .arg(&xp)
        .arg(&mp)
        .args(["--public-key", &s.state.signer.public_key_hex()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        manifest,
    )
}

fn contiguous(segs: &[Value]) -> bool {
    segs.windows(2)
        .all(|w| w[0]["end_90k"] == w[1]["start_90k"])
}

on_both!(
    a_segment_the_store_refuses_leaves_an_incomplete_recording_that_verify_names,
    |s: common::Server| async move {
        let local = s.state.blobs.clone();
        // The third segment's file (distinct content 2) is refused every time.
        let faulty = Arc::new(FaultyBlobStore::new(local, 2, u32::MAX));
        let rec = recorder(&s, faulty.clone(), 3).await;
        let id = record(&s, &rec, 6).await;
        assert_eq!(faulty.failures(), 3, "three attempts, then given up");
        assert_eq!(rec.segment_gaps(), 1);

        let token = s.login("admin").await;
        let (st, r) = s.get(&token, &format!("/api/v1/recordings/{id}")).await;
        assert!(st.is_success(), "{r}");
        assert_eq!(r["status"], "closed", "{r}");
        assert_eq!(r["incomplete"], true, "{r}");
        let gaps = r["gaps"].as_array().cloned().unwrap_or_default();
        assert_eq!(gaps.len(), 1, "{r}");
        assert_eq!(
            gaps[0]["after_segments"], 2,
            "between segments 1 and 2: {r}"
        );
        let segs = r["segments"].as_array().unwrap().clone();
        assert!(segs.len() >= 4, "{r}");
        // The gap is exactly the span between the segments around it.
        let (g0, g1) = (
            gaps[0]["start_ms"].as_i64().unwrap(),
            gaps[0]["end_ms"].as_i64().unwrap(),
        );
        assert_eq!(segs[1]["end_ms"].as_i64(), Some(g0), "{r}");
        assert_eq!(segs[2]["start_ms"].as_i64(), Some(g1), "{r}");
        assert!(g1 - g0 >= 900, "a segment of about a second: {g0}..{g1}");
        assert!(!contiguous(&segs));

        // Never signed as a whole: the head's signature verifies only with the gaps.
        let pk = s.state.signer.public_key_hex();
        let head: [u8; 32] = hex::decode(r["chain_link"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sig = r["head_signature"].as_str().unwrap();
        let n = segs.len() as u32;
        assert!(verify_signature(&pk, &head_message(&id, n, &head), sig).is_err());
        let gap = Gap {
            after_segments: 2,
            start_ms: g0,
            end_ms: g1,
        };
        verify_signature(&pk, &signed_head_message(&id, n, &head, &[gap]), sig).unwrap();

        // The manifest carries the flag and the gap; `shouhu verify` names it and exits 2.
        let (code, out, manifest) = verify(&s, &token, &id).await;
        assert_eq!(manifest["incomplete"], true, "{manifest}");
        assert_eq!(manifest["gaps"][0]["start_ms"].as_i64(), Some(g0));
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("OK:") && out.contains("INCOMPLETE"), "{out}");
        let from = chrono::DateTime::from_timestamp_millis(g0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert!(
            out.contains(&format!("gap 1: missing from {from}"))
                && out.contains("between segment 1 and segment 2"),
            "{out}"
        );
        // Its spool file is kept for an operator, and nothing else is left in the spool.
        let spool = s.state.cfg.server.data_dir.join("spool").join(&id);
        let left: Vec<String> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.iter().any(|n| n.ends_with(".lost")) && !left.iter().any(|n| n.ends_with(".done")),
            "{left:?}"
        );
    }
);

on_both!(
    a_refusal_that_passes_is_retried_and_the_recording_is_complete,
    |s: common::Server| async move {
        let local = s.state.blobs.clone();
        // The second segment is refused twice, then taken.
        let faulty = Arc::new(FaultyBlobStore::new(local, 1, 2));
        let rec = recorder(&s, faulty.clone(), 4).await;
        let id = record(&s, &rec, 4).await;
        assert_eq!(faulty.failures(), 2);
        assert_eq!(rec.segment_gaps(), 0);
        let token = s.login("admin").await;
        let (_, r) = s.get(&token, &format!("/api/v1/recordings/{id}")).await;
        assert_eq!(r["status"], "closed", "{r}");
        assert_eq!(r["incomplete"], false, "{r}");
        assert!(r.get("gaps").is_none(), "{r}");
        let segs = r["segments"].as_array().unwrap().clone();
        assert!(segs.len() >= 3 && contiguous(&segs), "{r}");
        let (code, out, manifest) = verify(&s, &token, &id).await;
        assert!(manifest.get("incomplete").is_none(), "{manifest}");
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("INCOMPLETE"), "{out}");
    }
);

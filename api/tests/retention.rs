//! The retention job against protection that arrives during a run, on both engines: a hold or a
//! link to an open case's inspection set between the mark and the deletion (through the API,
//! from the job's test hook) keeps the recording with its files; one that comes after the
//! recording is claimed is refused (409) rather than left holding a recording without footage;
//! an unheld expired recording loses its files and rows; and a unit keeping recordings 3000 days
//! with more old recordings than a run's bound does not stop a 365-day unit's expired ones from
//! going in the same run.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::{complete_inspection as complete, huangpu_officers, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shouhu_api::recording_jobs::{
    retention_run, retention_run_with_hook, RetentionHook, RetentionStep,
    RETENTION_BATCH_PER_PERIOD,
};
use shouhu_storage::org_units::Scope;
use shouhu_storage::recordings::{RecordingFilter, DAY_MS};
use shouhu_storage::PageRequest;

/// A closed recording of `segments` one-minute segments of `org` that ended `days_ago` days
/// ago, its segment files in the server's blob store; its id.
async fn recording(s: &Server, org: &str, days_ago: i64, segments: i64) -> String {
    let start = s.state.now() - days_ago * DAY_MS - segments * 60_000;
    common::closed_recording(s, org, None, start, segments).await
}

/// Whether the recording's rows and every one of its segment files are there (`true`), or
/// none of them (`false`); anything in between fails the test.
async fn footage(s: &Server, id: &str, segments: i64) -> bool {
    let row = match s.state.db.recordings().get(&Scope::All, id).await {
        Ok(_) => true,
        Err(shouhu_storage::StorageError::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    };
    let rows = s
        .state
        .db
        .recordings()
        .segments(id, None, None)
        .await
        .unwrap()
        .len() as i64;
    let mut files = 0;
    for seq in 0..segments {
        let key = shouhu_media::recorder::segment_key(id, seq);
        if s.state.blobs.exists(&key).await.unwrap() {
            files += 1;
        }
    }
    match (row, rows, files) {
        (true, n, f) if n == segments && f == segments => true,
        (false, 0, 0) => false,
        other => panic!("{id}: row, segment rows, files = {other:?}: partly deleted"),
    }
}

/// The API as the hook reaches it: owned, so the hook's future is `'static`.
#[derive(Clone)]
struct Api {
    base: String,
}

impl Api {
    fn of(s: &Server) -> Self {
        Self {
            base: s.base.clone(),
        }
    }

    async fn send(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn hold(&self, token: &str, rec: &str) -> (StatusCode, Value) {
        self.send(
            Method::PUT,
            token,
            &format!("/api/v1/recordings/{rec}/hold"),
            json!({"held": true, "reason": "举报复核中"}),
        )
        .await
    }

    async fn link(&self, token: &str, rec: &str, inspection: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            token,
            &format!("/api/v1/recordings/{rec}/links"),
            json!({ "inspection_id": inspection }),
        )
        .await
    }
}

/// A hook that records every step and runs `act` on it.
fn hook<F, Fut>(seen: Arc<Mutex<Vec<RetentionStep>>>, act: F) -> Box<RetentionHook>
where
    F: Fn(RetentionStep) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |step: RetentionStep| {
        seen.lock().unwrap().push(step.clone());
        Box::pin(act(step)) as Pin<Box<dyn Future<Output = ()> + Send>>
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

on_both!(
    a_hold_after_the_mark_keeps_the_footage_and_a_late_one_is_refused,
    |s: Server| async move {
        let head = s.login("hp_head").await;
        let hp = s.huangpu.id.clone();
        let held = recording(&s, &hp, 400, 2).await;
        let gone = recording(&s, &hp, 400, 3).await;
        let recent = recording(&s, &hp, 100, 1).await;

        let seen = Arc::new(Mutex::new(Vec::new()));
        let (api, token, h, g) = (Api::of(&s), head.clone(), held.clone(), gone.clone());
        let late = Arc::new(Mutex::new(None));
        let late_w = late.clone();
        let hook = hook(seen.clone(), move |step| {
            let (api, token, h, g, late) = (
                api.clone(),
                token.clone(),
                h.clone(),
                g.clone(),
                late_w.clone(),
            );
            async move {
                match step {
                    // Between the mark and the deletion: a reviewer holds one of them.
                    RetentionStep::Marked(ids) => {
                        assert_eq!(sorted(ids), sorted(vec![h.clone(), g]));
                        let (st, b) = api.hold(&token, &h).await;
                        assert_eq!(st, StatusCode::OK, "{b}");
                    }
                    // After the claim the hold comes too late: refused, not recorded.
                    RetentionStep::Claimed(id) => {
                        assert_eq!(id, g);
                        *late.lock().unwrap() = Some(api.hold(&token, &g).await);
                    }
                }
            }
        });
        let report = retention_run_with_hook(&s.state, s.state.now(), Some(&*hook))
            .await
            .unwrap();
        assert_eq!(report.deleted, vec![gone.clone()]);
        assert_eq!(report.kept, vec![held.clone()]);
        assert!(report.failed.is_empty());
        assert_eq!(seen.lock().unwrap().len(), 2, "marked, then one claim");
        let (st, b) = late.lock().unwrap().take().unwrap();
        assert_eq!(
            (st, &b["code"]),
            (StatusCode::CONFLICT, &json!("invalid_state")),
            "{b}"
        );

        // The held recording keeps its rows and files; the unheld expired one has neither.
        assert!(footage(&s, &held, 2).await, "the hold won");
        assert!(!footage(&s, &gone, 3).await, "the expired one is deleted");
        assert!(footage(&s, &recent, 1).await);
        let (st, d) = s.get(&head, &format!("/api/v1/recordings/{held}")).await;
        assert_eq!((st, &d["held"]), (StatusCode::OK, &json!(true)), "{d}");
        let deletes = s.audit("recording.delete").await;
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].target_id.as_deref(), Some(gone.as_str()));
        let holds = s.audit("recording.hold").await;
        assert_eq!(holds.len(), 1, "the refused hold left no row");
        assert_eq!(holds[0].target_id.as_deref(), Some(held.as_str()));

        // A later run leaves the held one alone.
        let report = retention_run(&s.state, s.state.now()).await.unwrap();
        assert_eq!(report, Default::default());
        assert!(footage(&s, &held, 2).await);
    }
);

on_both!(
    a_link_to_an_open_case_after_the_mark_keeps_the_footage,
    |s: Server| async move {
        let head = s.login("hp_head").await;
        let officer = s.login("hp_officer").await;
        let officers = huangpu_officers(&s, &head).await;
        let steel = s.enterprise_id("黄浦钢结构").await;
        let chem = s.enterprise_id("黄浦化工").await;
        let hp = s.huangpu.id.clone();
        let api = Api::of(&s);
        let inspection = |enterprise: String| {
            let (api, officer, officers) = (api.clone(), officer.clone(), officers.clone());
            async move {
                let (st, b) = api
                    .send(
                        Method::POST,
                        &officer,
                        "/api/v1/inspections",
                        json!({"enterprise_id": enterprise, "kind": "planned", "officer_ids": officers}),
                    )
                    .await;
                assert_eq!(st, StatusCode::OK, "{b}");
                b["id"].as_str().unwrap().to_string()
            }
        };
        // An inspection under an open case, and one without a case.
        let of_case = inspection(steel.clone()).await;
        let plain = inspection(chem).await;
        complete(&s, &officer, &of_case).await;
        let (st, c) = s
            .send(
                Method::POST,
                &officer,
                "/api/v1/cases",
                json!({"enterprise_id": steel, "inspection_ids": [of_case], "title": "未按规定设置泄爆装置案",
                       "violation": "粉尘爆炸危险场所除尘系统未设泄爆装置", "responsible_person": "王强",
                       "party_id_number": "31010119800101123X", "party_phone": "13800138000", "proposed_fine_cents": 5_000_000}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{c}");
        let evidence = recording(&s, &hp, 400, 2).await;
        let other = recording(&s, &hp, 400, 1).await;

        let seen = Arc::new(Mutex::new(Vec::new()));
        let (token, e, o, i_case, i_plain) = (
            head.clone(),
            evidence.clone(),
            other.clone(),
            of_case.clone(),
            plain.clone(),
        );
        let hook = hook(seen.clone(), move |step| {
            let (api, token, e, o, i_case, i_plain) = (
                api.clone(),
                token.clone(),
                e.clone(),
                o.clone(),
                i_case.clone(),
                i_plain.clone(),
            );
            async move {
                if let RetentionStep::Marked(ids) = step {
                    assert_eq!(sorted(ids), sorted(vec![e.clone(), o.clone()]));
                    // Between the mark and the deletion: linked as evidence of the open case,
                    // and the other to an inspection without a case.
                    let (st, b) = api.link(&token, &e, &i_case).await;
                    assert_eq!(st, StatusCode::OK, "{b}");
                    let (st, b) = api.link(&token, &o, &i_plain).await;
                    assert_eq!(st, StatusCode::OK, "{b}");
                }
            }
        });
        let report = retention_run_with_hook(&s.state, s.state.now(), Some(&*hook))
            .await
            .unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        assert_eq!(report.kept, sorted(vec![evidence.clone(), other.clone()]));
        assert!(footage(&s, &evidence, 2).await, "the open case's link won");
        assert!(
            footage(&s, &other, 1).await,
            "a link changes the decision: decided again next run"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "nothing claimed");

        // The next run decides again: the open case keeps its evidence; a link to an inspection
        // without a case protects nothing.
        let report = retention_run(&s.state, s.state.now()).await.unwrap();
        assert_eq!(report.deleted, vec![other.clone()]);
        assert!(report.kept.is_empty());
        assert!(footage(&s, &evidence, 2).await);
        assert!(!footage(&s, &other, 1).await);
    }
);

on_both!(
    a_long_retention_unit_does_not_stall_a_short_one,
    |s: Server| async move {
        let admin = s.login("admin").await;
        let (hp, xh) = (s.huangpu.id.clone(), s.xuhui.id.clone());
        let (st, b) = s
            .send(
                Method::PUT,
                &admin,
                &format!("/api/v1/recordings/retention/{xh}"),
                json!({ "days": 3000 }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // More of Xuhui's recordings than a run's bound, all older than any of Huangpu's and
        // past Huangpu's 365 days, yet within Xuhui's 3000.
        let many = RETENTION_BATCH_PER_PERIOD + 1;
        for _ in 0..many {
            recording(&s, &xh, 1000, 1).await;
        }
        let expired = vec![
            recording(&s, &hp, 400, 1).await,
            recording(&s, &hp, 366, 2).await,
        ];
        let report = retention_run(&s.state, s.state.now()).await.unwrap();
        assert_eq!(sorted(report.deleted), sorted(expired.clone()));
        assert!(report.failed.is_empty() && report.kept.is_empty());
        assert!(!footage(&s, &expired[0], 1).await);
        assert!(!footage(&s, &expired[1], 2).await);
        let kept = s
            .state
            .db
            .recordings()
            .search(
                &Scope::All,
                &RecordingFilter {
                    org_unit_id: Some(xh),
                    ..Default::default()
                },
                PageRequest::new(None, Some(1)),
            )
            .await
            .unwrap()
            .total;
        assert_eq!(kept, many, "Xuhui keeps every one of its recordings");
    }
);

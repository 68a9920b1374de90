//! Walk fixtures: see `fixture_media`.
//!
//! Recordings are real footage: a small camera MP4 made once by ffmpeg (cached for the process)
//! imported through `POST /recordings/import` by the district's administrator, on a fresh
//! recorder of the district (the recorder's org unit decides the recording's scope). Each
//! import carries a trailing `free` box with a fresh number, so no two imports are the same file
//! (the import refuses a file it has seen). Dispatch units are fresh vehicles of the district
//! (a vehicle is a unit as soon as it is registered); SOS alarms are raised on them through the
//! storage API, as the hub does when a device raises one.

use std::sync::OnceLock;

use serde_json::{json, Value};
use shouhu_storage::audit::{Actor, AuditEntry};
use shouhu_storage::org_units::OrgUnit;

use super::{jreq, req, Body, Req, Row, Walk};

/// The camera file (H.264 baseline, AAC, two one-second GOPs), made once.
fn media_camera_file() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("walk-camera.mp4");
        let st = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc=size=160x120:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"])
            .args(["-t", "2.2", "-c:v", "libx264", "-profile:v", "baseline"])
            .args([
                "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k",
            ])
            .arg(&out)
            .status()
            .expect("ffmpeg (Debian package ffmpeg)");
        assert!(st.success(), "ffmpeg failed to make the walk's camera file");
        std::fs::read(out).unwrap()
    })
}

impl Walk {
    /// The concrete request of `row` on a fresh resource of district `d`, or `None` when this
    /// module has no fixture for it.
    pub(super) async fn fixture_media(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let id = |v: &Value| v["id"].as_str().unwrap_or("fixture-failed").to_string();
        Some(match (row.method, row.path) {
            ("POST", "/auth/media-token") => {
                let r = self.media_recording(d).await;
                jreq(
                    row.path.into(),
                    json!({"path_prefix": format!("/api/v1/recordings/{r}/")}),
                )
            }
            ("POST", "/recordings/import") => {
                let device = self.media_recorder(d).await;
                self.media_import_req(&device)
            }
            (
                "GET",
                "/recordings/{id}"
                | "/recordings/{id}/playlist.m3u8"
                | "/recordings/{id}/export.mp4"
                | "/recordings/{id}/manifest"
                | "/recordings/{id}/links",
            )
            | ("POST", "/recordings/{id}/suggestions") => {
                req(row.path.replace("{id}", &self.media_recording(d).await))
            }
            (
                "GET",
                "/recordings/{id}/segments/{seq}/init.mp4"
                | "/recordings/{id}/segments/{seq}/media.m4s",
            ) => req(row
                .path
                .replace("{id}", &self.media_recording(d).await)
                .replace("{seq}", "0")),
            ("POST", "/recordings/{id}/links") => {
                let r = self.media_recording(d).await;
                let i = id(&self.inspection(d).await);
                jreq(row.path.replace("{id}", &r), json!({"inspection_id": i}))
            }
            ("DELETE", "/recordings/{id}/links/{inspection_id}") => {
                let (r, i) = self.media_linked(d).await;
                req(row.path.replace("{id}", &r).replace("{inspection_id}", &i))
            }
            ("PUT", "/recordings/{id}/hold") => jreq(
                row.path.replace("{id}", &self.media_recording(d).await),
                json!({"held": true, "reason": "复议期间保全"}),
            ),
            ("PUT", "/recordings/retention/{org_unit_id}") => jreq(
                row.path.replace("{org_unit_id}", &d.id),
                json!({"days": 3650}),
            ),
            ("GET", "/inspections/{id}/evidence.zip") => {
                let (_, i) = self.media_linked(d).await;
                req(row.path.replace("{id}", &i))
            }
            ("GET", "/recorders/{id}") => {
                req(row.path.replace("{id}", &self.media_recorder(d).await))
            }
            ("POST", "/recorders") => jreq(row.path.into(), self.media_recorder_body(d)),
            ("PUT", "/recorders/{id}") => {
                let mut b = self.media_recorder_body(d);
                let v = self.okd(d, "POST", "/recorders", b.clone()).await;
                let device = b["device_id"].as_str().unwrap().to_string();
                b["version"] = v["version"].clone();
                b["name"] = json!(format!("改名记录仪{}", self.next()));
                jreq(row.path.replace("{id}", &device), b)
            }
            ("PUT", "/recorders/{id}/recording") => jreq(
                row.path.replace("{id}", &self.media_recorder(d).await),
                json!({"always": false}),
            ),
            ("GET", "/units/{id}") => req(row.path.replace("{id}", &self.media_unit(d).await)),
            ("GET", "/units/{id}/track") => {
                let u = self.media_unit(d).await;
                req(format!("/units/{u}/track?format=json"))
            }
            ("POST", "/units/{id}/assign") => jreq(
                row.path.replace("{id}", &self.media_unit(d).await),
                json!({"lat": 31.2304, "lon": 121.4737, "name": "外滩现场"}),
            ),
            ("POST", "/units/{id}/arrive") | ("POST", "/units/{id}/clear") => {
                let u = self.media_unit(d).await;
                self.okd(
                    d,
                    "POST",
                    &format!("/units/{u}/assign"),
                    json!({"lat": 31.2304, "lon": 121.4737, "name": "外滩现场"}),
                )
                .await;
                req(row.path.replace("{id}", &u))
            }
            ("POST", "/sos/{id}/{step}") => {
                let a = self.media_sos(d).await;
                jreq(
                    row.path
                        .replace("{id}", &a)
                        .replace("{step}", "acknowledge"),
                    json!({}),
                )
            }
            ("POST", "/positions") => {
                let time = shouhu_dispatch::protocol::rfc3339(self.s.state.now() - 1_000);
                jreq(
                    row.path.into(),
                    json!({"positions": [{"time": time, "lat": 31.2304, "lon": 121.4737, "speed_kmh": 0.0}]}),
                )
            }
            ("POST", "/vehicles/{id}/rebind") => {
                let v = self.okd(d, "POST", "/vehicles", self.vehicle_body(d)).await;
                jreq(
                    row.path.replace("{id}", &id(&v)),
                    json!({"terminal_id": format!("T{:06}", self.next()), "source_ip": "10.8.0.7"}),
                )
            }
            _ => return None,
        })
    }

    /// A fresh recorder's registration body in `d` (no officer: the footage films nobody's
    /// account).
    fn media_recorder_body(&self, d: &OrgUnit) -> Value {
        let n = self.next();
        json!({"device_id": format!("31010100001320{:06}", n), "name": format!("记录仪{n}"),
               "org_unit_id": d.id})
    }

    /// A fresh recorder of `d`, registered by the district's administrator; its device id.
    async fn media_recorder(&self, d: &OrgUnit) -> String {
        let b = self.media_recorder_body(d);
        self.okd(d, "POST", "/recorders", b.clone()).await;
        b["device_id"].as_str().unwrap().to_string()
    }

    /// The import of a fresh copy of the camera file filmed by `device` an hour ago.
    fn media_import_req(&self, device: &str) -> Req {
        let mut file = media_camera_file().to_vec();
        // A trailing `free` box with a fresh number: a different file each time.
        let tag = format!("walk{:012}", self.next());
        file.extend_from_slice(&((8 + tag.len()) as u32).to_be_bytes());
        file.extend_from_slice(b"free");
        file.extend_from_slice(tag.as_bytes());
        let filmed = self.s.state.now() - 3_600_000;
        Req {
            path: format!(
                "/recordings/import?device_id={device}&started_at={filmed}&file_name=WALK.MP4"
            ),
            body: Body::Bytes("video/mp4", file),
        }
    }

    /// A fresh closed recording of `d` with real footage (imported by the district's
    /// administrator on a fresh recorder); its id.
    async fn media_recording(&self, d: &OrgUnit) -> String {
        let device = self.media_recorder(d).await;
        let q = self.media_import_req(&device);
        let token = self.district_admin(d).to_string();
        let (st, b) = self.call("POST", &token, &q).await;
        if !st.is_success() {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture POST /recordings/import: {st} {b}"));
            return "fixture-failed".into();
        }
        b["id"].as_str().unwrap_or("fixture-failed").to_string()
    }

    /// A fresh recording of `d` linked (by the district's administrator) to a fresh inspection
    /// of `d`: (recording id, inspection id).
    async fn media_linked(&self, d: &OrgUnit) -> (String, String) {
        let r = self.media_recording(d).await;
        let i = self.inspection(d).await["id"]
            .as_str()
            .unwrap_or("fixture-failed")
            .to_string();
        self.okd(
            d,
            "POST",
            &format!("/recordings/{r}/links"),
            json!({"inspection_id": i}),
        )
        .await;
        (r, i)
    }

    /// A fresh dispatch unit of `d`: a vehicle registered by the district's administrator.
    async fn media_unit(&self, d: &OrgUnit) -> String {
        let v = self.okd(d, "POST", "/vehicles", self.vehicle_body(d)).await;
        v["id"].as_str().unwrap_or("fixture-failed").to_string()
    }

    /// A fresh SOS alarm raised by a fresh vehicle of `d` (stored as the hub stores a device's
    /// alarm); its id.
    async fn media_sos(&self, d: &OrgUnit) -> String {
        let v = self.okd(d, "POST", "/vehicles", self.vehicle_body(d)).await;
        let unit = v["id"].as_str().unwrap_or("fixture-failed").to_string();
        let now = self.s.state.now();
        let alarm = shouhu_storage::sos::SosAlarm {
            id: shouhu_storage::new_id(),
            unit_id: unit.clone(),
            unit_kind: "vehicle".into(),
            unit_name: v["plate"].as_str().unwrap_or("").into(),
            org_unit_id: d.id.clone(),
            source: "jt808".into(),
            raised_at_ms: now - 10_000,
            lat: Some(31.2304),
            lon: Some(121.4737),
            status: "raised".into(),
            acknowledged_by: None,
            acknowledged_at_ms: None,
            handled_by: None,
            handled_at_ms: None,
            handle_note: None,
            closed_by: None,
            closed_at_ms: None,
            close_note: None,
        };
        let audit = AuditEntry::new(
            &Actor {
                account_id: None,
                username: Some(format!("device:{unit}")),
                ip: None,
            },
            "sos.raise",
            now,
        );
        if let Err(e) = self.s.state.db.sos().raise(&alarm, &audit).await {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture raising an SOS alarm: {e}"));
        }
        alarm.id
    }
}

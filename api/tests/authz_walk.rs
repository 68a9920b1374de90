//! The authorization walk: every operation of the served OpenAPI document, called as every role,
//! from inside and outside the resource's org unit, against [`TABLE`], written by hand from the
//! role definitions (`api/src/auth/roles.rs`), DESIGN.md (a brigade sees its district; open cases
//! only their handling unit and the corps) and issue 20 (removing protection is for reviewers;
//! corps-wide settings for corps accounts only; media tokens read-only). It never asks the server
//! which role may do what.
//!
//! Expected answers: an allowed role inside its scope → 2xx with a valid fixture; a role the
//! table does not allow → 403; an allowed district account on a resource of another district →
//! 404 and one new `denied` audit row; a refused call changes no row (every table but the audit
//! log and the sessions is digested before and after). An operation of the document without a
//! row fails the test; so does a row whose 2xx cannot be shown in-process, unless it names why.

mod common;

// Fixtures by area (each an `impl Walk` block returning `None` for rows it does not know).
#[path = "authz_walk/cases.rs"]
mod cases;
#[path = "authz_walk/live.rs"]
mod live;
#[path = "authz_walk/media.rs"]
mod media;
#[path = "authz_walk/talk.rs"]
mod talk;
#[path = "authz_walk/work.rs"]
mod work;

use std::collections::BTreeSet;

use common::UNTRACKED;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shouhu_storage::accounts::NewAccount;
use shouhu_storage::audit::{Actor, AuditEntry, AuditFilter};
use shouhu_storage::org_units::OrgUnit;

// Role lists, written out from `grants` in api/src/auth/roles.rs (never computed from it).
const ALL: &[&str] = &[
    "admin",
    "corps_leader",
    "operator",
    "reviewer",
    "brigade_head",
    "squad_leader",
    "statistician",
    "clerk",
    "officer",
    "soe_user",
];
const REGISTRY_READ: &[&str] = ALL;
const ENTERPRISE_WRITE: &[&str] = &["admin", "corps_leader", "brigade_head", "squad_leader"];
const OFFICER_WRITE: &[&str] = &["admin", "corps_leader", "brigade_head"];
const ITEM_WRITE: &[&str] = &["admin", "corps_leader"];
const REGISTRY_EXPORT: &[&str] = &[
    "admin",
    "corps_leader",
    "brigade_head",
    "squad_leader",
    "statistician",
];
const ORG_WRITE: &[&str] = &["admin"];
const ACCOUNT_MANAGE: &[&str] = &["admin"];
const APPLICATION_FILE: &[&str] = &["admin", "brigade_head"];
const APPLICATION_DECIDE: &[&str] = &["admin", "corps_leader"];
const APPLICATION_ANY: &[&str] = &["admin", "corps_leader", "brigade_head"];
const AUDIT_READ: &[&str] = &["admin"];
const DISPATCH_VIEW: &[&str] = &[
    "admin",
    "corps_leader",
    "operator",
    "brigade_head",
    "squad_leader",
];
const DISPATCH_COMMAND: &[&str] = &["admin", "operator", "brigade_head", "squad_leader"];
const DEVICE_MANAGE: &[&str] = &["admin", "brigade_head"];
const ENFORCEMENT_READ: &[&str] = &[
    "admin",
    "corps_leader",
    "operator",
    "reviewer",
    "brigade_head",
    "squad_leader",
    "statistician",
    "clerk",
    "officer",
];
const INSPECTION_WRITE: &[&str] = &[
    "admin",
    "corps_leader",
    "brigade_head",
    "squad_leader",
    "officer",
];
const CASE_WRITE: &[&str] = &["admin", "brigade_head", "squad_leader", "officer"];
const CASE_APPROVE: &[&str] = &["admin", "corps_leader", "brigade_head"];
const FILING_ACKNOWLEDGE: &[&str] = CASE_APPROVE;
const RULE_MANAGE: &[&str] = &["admin", "corps_leader"];
const WORK_ORDER_WRITE: &[&str] = &[
    "admin",
    "corps_leader",
    "brigade_head",
    "squad_leader",
    "clerk",
];
const CASE_REVIEW: &[&str] = &["admin", "corps_leader"];
const PLAN_WRITE: &[&str] = &["admin", "corps_leader", "brigade_head", "squad_leader"];
const PLAN_APPROVE: &[&str] = &["admin", "corps_leader", "brigade_head"];
const RECORDING_VIEW: &[&str] = &[
    "admin",
    "corps_leader",
    "operator",
    "reviewer",
    "brigade_head",
    "squad_leader",
    "officer",
];
const RECORDING_REVIEW: &[&str] = &[
    "admin",
    "reviewer",
    "brigade_head",
    "squad_leader",
    "officer",
];
/// Issue 20 item 3: removing a link, releasing a hold, dismissing a suggestion is for reviewers
/// and case handlers, never the filmed officer.
const PROTECTION_REMOVE: &[&str] = &["admin", "reviewer", "brigade_head", "squad_leader"];
/// Accounts bound to an officer record (the officer app): in the walk, `hp_officer` alone.
const BOUND_OFFICER: &[&str] = &["officer"];
/// The dispatch view, or a bound officer's app.
const DISPATCH_VIEW_OR_APP: &[&str] = &[
    "admin",
    "corps_leader",
    "operator",
    "brigade_head",
    "squad_leader",
    "officer",
];
/// Recording review, or dispatch command (an operator records the camera it watches).
const RECORD_ON_DEMAND: &[&str] = &[
    "admin",
    "operator",
    "reviewer",
    "brigade_head",
    "squad_leader",
    "officer",
];
/// Anyone signed in (own session, code lists).
const SIGNED_IN: &[&str] = ALL;

/// One operation's row.
struct Row {
    method: &'static str,
    path: &'static str,
    /// Roles allowed.
    roles: &'static [&'static str],
    /// Whether the resource belongs to an org unit (outside → 404 + denied).
    scoped: bool,
    /// Corps-wide settings: a district account of an allowed role is refused (403).
    corps_only: bool,
    /// Why a 2xx cannot be shown in-process (still checked for 403/404), or `None`.
    no_2xx: Option<&'static str>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    roles: &'static [&'static str],
    scoped: bool,
) -> Row {
    Row {
        method,
        path,
        roles,
        scoped,
        corps_only: false,
        no_2xx: None,
    }
}

const fn corps(method: &'static str, path: &'static str, roles: &'static [&'static str]) -> Row {
    Row {
        method,
        path,
        roles,
        scoped: false,
        corps_only: true,
        no_2xx: None,
    }
}

/// Ending a call: the operators in charge, and the called officer's app (it declines or hangs
/// up; in the walk, `hp_officer` on the calls to its own officer).
const CALL_END: &[&str] = &[
    "admin",
    "operator",
    "brigade_head",
    "squad_leader",
    "officer",
];

/// The table. Paths are relative to `/api/v1`, as the OpenAPI document lists them.
const TABLE: &[Row] = &[
    // auth: every signed-in account, own session only.
    r("POST", "/auth/login", ALL, false),
    r("POST", "/auth/logout", SIGNED_IN, false),
    r("GET", "/auth/me", SIGNED_IN, false),
    r("POST", "/auth/password", SIGNED_IN, false),
    r(
        "POST",
        "/auth/media-token",
        RECORDING_VIEW_OR_DISPATCH,
        false,
    ),
    // accounts and applications
    r("GET", "/accounts", ACCOUNT_MANAGE, false),
    r("POST", "/accounts", ACCOUNT_MANAGE, true),
    r("POST", "/accounts/{id}/unlock", ACCOUNT_MANAGE, true),
    r("POST", "/accounts/{id}/disable", ACCOUNT_MANAGE, true),
    r("POST", "/accounts/{id}/enable", ACCOUNT_MANAGE, true),
    r(
        "POST",
        "/accounts/{id}/reset-password",
        ACCOUNT_MANAGE,
        true,
    ),
    r("GET", "/roles", SIGNED_IN, false),
    r("GET", "/account-applications", APPLICATION_ANY, false),
    // A district applies, the corps decides (DESIGN): deciding is for corps accounts only.
    r("POST", "/account-applications", APPLICATION_FILE, false),
    corps(
        "POST",
        "/account-applications/{id}/approve",
        APPLICATION_DECIDE,
    ),
    corps(
        "POST",
        "/account-applications/{id}/reject",
        APPLICATION_DECIDE,
    ),
    r("GET", "/audit", AUDIT_READ, false),
    // org units: reading the tree is for everyone; creating/renaming is admin within the
    // subtree (the root and units outside the subtree by corps accounts only).
    r("GET", "/org-units", SIGNED_IN, false),
    r("POST", "/org-units", ORG_WRITE, true),
    r("PATCH", "/org-units/{id}", ORG_WRITE, true),
    // registries
    r("GET", "/enterprises", REGISTRY_READ, false),
    r("GET", "/enterprises/{id}", REGISTRY_READ, true),
    r("POST", "/enterprises", ENTERPRISE_WRITE, true),
    r("PUT", "/enterprises/{id}", ENTERPRISE_WRITE, true),
    r("DELETE", "/enterprises/{id}", ENTERPRISE_WRITE, true),
    r("POST", "/enterprises/import", ENTERPRISE_WRITE, false),
    r("GET", "/enterprises/export.xlsx", REGISTRY_EXPORT, false),
    r("GET", "/enterprises/{id}/supervision", REGISTRY_READ, true),
    r(
        "PUT",
        "/enterprises/{id}/supervision",
        ENTERPRISE_WRITE,
        true,
    ),
    r("GET", "/officers", REGISTRY_READ, false),
    r("GET", "/officers/{id}", REGISTRY_READ, true),
    r("POST", "/officers", OFFICER_WRITE, true),
    r("PUT", "/officers/{id}", OFFICER_WRITE, true),
    r("DELETE", "/officers/{id}", OFFICER_WRITE, true),
    r("POST", "/officers/import", OFFICER_WRITE, false),
    r("GET", "/officers/export.xlsx", REGISTRY_EXPORT, false),
    r("GET", "/inspection-items", REGISTRY_READ, false),
    r("GET", "/inspection-items/{id}", REGISTRY_READ, false),
    corps("POST", "/inspection-items", ITEM_WRITE),
    corps("PUT", "/inspection-items/{id}", ITEM_WRITE),
    r(
        "GET",
        "/inspection-items/{id}/history",
        REGISTRY_READ,
        false,
    ),
    r("GET", "/reference/sectors", SIGNED_IN, false),
    r("GET", "/reference/ownership-types", SIGNED_IN, false),
    r("GET", "/reference/industry-codes", SIGNED_IN, false),
    // enforcement settings: corps-wide, corps accounts only (issue 20 item 5)
    r("GET", "/enforcement/doc-types", ENFORCEMENT_READ, false),
    r("GET", "/enforcement/deadlines", ENFORCEMENT_READ, false),
    corps("PUT", "/enforcement/deadlines/{step}", RULE_MANAGE),
    r("GET", "/inspection-caps", ENFORCEMENT_READ, false),
    corps("PUT", "/inspection-caps", RULE_MANAGE),
    r("GET", "/case-review-rules", ENFORCEMENT_READ, false),
    corps("POST", "/case-review-rules", RULE_MANAGE),
    corps("PUT", "/case-review-rules/{id}", RULE_MANAGE),
    r("POST", "/attachments", INSPECTION_WRITE, false),
    // inspections and hazards
    r("GET", "/inspections", ENFORCEMENT_READ, false),
    r("GET", "/inspections/{id}", ENFORCEMENT_READ, true),
    r("POST", "/inspections", INSPECTION_WRITE, true),
    r("PUT", "/inspections/{id}/results", INSPECTION_WRITE, true),
    r("POST", "/inspections/{id}/hazards", INSPECTION_WRITE, true),
    r("POST", "/inspections/{id}/complete", INSPECTION_WRITE, true),
    r("POST", "/inspections/{id}/cancel", INSPECTION_WRITE, true),
    r("GET", "/inspections/{id}/photo", ENFORCEMENT_READ, true),
    r("GET", "/inspections/{id}/record", ENFORCEMENT_READ, true),
    r(
        "GET",
        "/inspections/{id}/evidence.zip",
        RECORDING_VIEW,
        true,
    ),
    r("GET", "/over-cap-filings", ENFORCEMENT_READ, false),
    r(
        "POST",
        "/over-cap-filings/{id}/acknowledge",
        FILING_ACKNOWLEDGE,
        true,
    ),
    r("GET", "/hazards", ENFORCEMENT_READ, false),
    r("GET", "/hazards/{id}", ENFORCEMENT_READ, true),
    r(
        "POST",
        "/hazards/{id}/rectification",
        INSPECTION_WRITE,
        true,
    ),
    r("POST", "/hazards/{id}/reinspection", INSPECTION_WRITE, true),
    r("GET", "/hazards/{id}/order", ENFORCEMENT_READ, true),
    r(
        "GET",
        "/hazards/{id}/reinspection-opinion",
        ENFORCEMENT_READ,
        true,
    ),
    r("GET", "/workbench", ENFORCEMENT_READ, false),
    // cases: open cases only for their handling unit and the corps
    r("GET", "/cases", ENFORCEMENT_READ, false),
    r("GET", "/cases/{id}", ENFORCEMENT_READ, true),
    r("POST", "/cases", CASE_WRITE, true),
    r("POST", "/cases/{id}/filing-decision", CASE_APPROVE, true),
    r("POST", "/cases/{id}/documents", CASE_WRITE, true),
    r(
        "POST",
        "/cases/{id}/documents/{doc_id}/approve",
        CASE_APPROVE,
        true,
    ),
    r(
        "GET",
        "/cases/{id}/documents/{doc_id}/file",
        ENFORCEMENT_READ,
        true,
    ),
    r("POST", "/cases/{id}/penalty", CASE_APPROVE, true),
    r("POST", "/cases/{id}/payment", CASE_WRITE, true),
    r("POST", "/cases/{id}/referral", CASE_WRITE, true),
    r("POST", "/cases/{id}/closing-request", CASE_WRITE, true),
    r("POST", "/cases/{id}/closing-decision", CASE_APPROVE, true),
    r("GET", "/cases/{id}/case-file", ENFORCEMENT_READ, true),
    r("POST", "/cases/{id}/case-file", CASE_WRITE, true),
    // A case file is uploaded once the case is closed, and a closed case is readable by every
    // unit (DESIGN: open cases only for their handling unit and the corps): not scoped.
    r(
        "GET",
        "/cases/{id}/case-file/{item_id}",
        ENFORCEMENT_READ,
        false,
    ),
    r("GET", "/cases/{id}/reviews", ENFORCEMENT_READ, true),
    // Case-file review (评查) is the corps grading the districts' files: corps accounts only.
    corps("POST", "/cases/{id}/reviews", CASE_REVIEW),
    r("GET", "/exemplary-cases", ENFORCEMENT_READ, false),
    r("POST", "/document-batches", ENFORCEMENT_READ, false),
    // A batch is its starter's (another account's batch is a 404 to anyone else, whatever the
    // unit): the fixture starts it as the caller, so not scoped by org unit.
    r("GET", "/document-batches/{id}", ENFORCEMENT_READ, false),
    r(
        "GET",
        "/document-batches/{id}/archive",
        ENFORCEMENT_READ,
        false,
    ),
    // work orders and plans
    r("GET", "/work-orders", ENFORCEMENT_READ, false),
    r("GET", "/work-orders/{id}", ENFORCEMENT_READ, true),
    r("POST", "/work-orders", WORK_ORDER_WRITE, false),
    r("POST", "/work-orders/{id}/receive", WORK_ORDER_WRITE, true),
    r("POST", "/work-orders/{id}/reply", WORK_ORDER_WRITE, true),
    r(
        "POST",
        "/work-orders/{id}/recipients/{unit_id}/return",
        WORK_ORDER_WRITE,
        true,
    ),
    r(
        "POST",
        "/work-orders/{id}/recipients/{unit_id}/accept",
        WORK_ORDER_WRITE,
        true,
    ),
    r("POST", "/work-orders/{id}/remind", WORK_ORDER_WRITE, true),
    r("POST", "/work-orders/{id}/close", WORK_ORDER_WRITE, true),
    r("GET", "/plans", ENFORCEMENT_READ, false),
    r("POST", "/plans", PLAN_WRITE, true),
    r("POST", "/plans/proposal", PLAN_WRITE, true),
    r("GET", "/plans/rollup", ENFORCEMENT_READ, false),
    r("GET", "/plans/{id}", ENFORCEMENT_READ, true),
    r("PUT", "/plans/{id}", PLAN_WRITE, true),
    r("DELETE", "/plans/{id}", PLAN_WRITE, true),
    r("POST", "/plans/{id}/visits", PLAN_WRITE, true),
    r("DELETE", "/plans/{id}/visits/{visit_id}", PLAN_WRITE, true),
    r("POST", "/plans/{id}/submit", PLAN_WRITE, true),
    r("POST", "/plans/{id}/approve", PLAN_APPROVE, true),
    r("POST", "/plans/{id}/return", PLAN_APPROVE, true),
    // An import's progress: for the registry writers, each its own (the fixture imports as the
    // caller), so not scoped by org unit.
    r("GET", "/imports/{id}", ENTERPRISE_WRITE, false),
    // dispatch
    r("GET", "/units", DISPATCH_VIEW, false),
    r("GET", "/units/nearest", DISPATCH_VIEW, false),
    r("GET", "/units/{id}", DISPATCH_VIEW, true),
    r("GET", "/units/{id}/track", DISPATCH_VIEW, true),
    r("POST", "/units/{id}/assign", DISPATCH_COMMAND, true),
    r("POST", "/units/{id}/arrive", DISPATCH_COMMAND, true),
    r("POST", "/units/{id}/clear", DISPATCH_COMMAND, true),
    // A command to the vehicle's online JT/T 808 terminal (the walk runs one per district).
    r("POST", "/units/{id}/locate", DISPATCH_COMMAND, true),
    r("POST", "/units/{id}/track-request", DISPATCH_COMMAND, true),
    r("GET", "/sos", DISPATCH_VIEW, false),
    r("POST", "/sos/{id}/{step}", DISPATCH_COMMAND, true),
    // The officer app's upload: accounts bound to an officer (the walk binds `hp_officer`).
    r("POST", "/positions", BOUND_OFFICER, false),
    r("GET", "/geofences", DISPATCH_VIEW, false),
    r("POST", "/geofences", DEVICE_MANAGE, true),
    r("DELETE", "/geofences/{id}", DEVICE_MANAGE, true),
    r("GET", "/vehicles", REGISTRY_READ, false),
    r("GET", "/vehicles/rebinds", DEVICE_MANAGE, false),
    r("POST", "/vehicles/{id}/rebind", DEVICE_MANAGE, true),
    r("GET", "/vehicles/{id}", REGISTRY_READ, true),
    r("POST", "/vehicles", DEVICE_MANAGE, true),
    r("PUT", "/vehicles/{id}", DEVICE_MANAGE, true),
    r("DELETE", "/vehicles/{id}", DEVICE_MANAGE, true),
    // The dispatch view's feed, and the officer app's own (calls to it): bound officers too.
    // (Allowed: 101 Switching Protocols.)
    r("GET", "/dispatch/ws", DISPATCH_VIEW_OR_APP, false),
    // calls
    // The dispatch map's calls in scope, or the app's own calls.
    r("GET", "/calls", DISPATCH_VIEW_OR_APP, false),
    // Calls to an officer of the district (in Huangpu the walk's bound officer, whose app
    // answers, declines and plays the console; see authz_walk/talk.rs).
    r("POST", "/calls", DISPATCH_COMMAND, true),
    r("GET", "/calls/{id}", DISPATCH_VIEW_OR_APP, true),
    r("POST", "/calls/{id}/answer", BOUND_OFFICER, true),
    r("POST", "/calls/{id}/hangup", CALL_END, true),
    // The console's side: published by the operator who placed the call (the fixture places
    // it as the caller), played by the called officer's app and listened to by dispatch staff.
    r("POST", "/calls/{id}/whip", DISPATCH_COMMAND, true),
    r("POST", "/calls/{id}/whep", DISPATCH_VIEW_OR_APP, true),
    // recorders and streams
    r("GET", "/recorders", REGISTRY_READ, false),
    r("GET", "/recorders/{id}", REGISTRY_READ, true),
    r("POST", "/recorders", DEVICE_MANAGE, true),
    r("PUT", "/recorders/{id}", DEVICE_MANAGE, true),
    r("POST", "/recorders/{id}/catalog", DEVICE_MANAGE, true),
    r("GET", "/recorders/{id}/records", RECORDING_VIEW, true),
    r("PUT", "/recorders/{id}/recording", DEVICE_MANAGE, true),
    r("GET", "/streams", DISPATCH_VIEW, false),
    // The hub's totals are the whole city's (every district's streams): corps accounts only.
    corps("GET", "/streams/stats", DISPATCH_VIEW),
    r(
        "GET",
        "/streams/{device_id}/{channel_id}/snapshot.jpg",
        DISPATCH_VIEW,
        true,
    ),
    r(
        "POST",
        "/streams/{device_id}/{channel_id}/whep",
        DISPATCH_VIEW,
        true,
    ),
    // A session is stopped by its owner or a dispatcher in charge of the recorder (the
    // fixture's sessions are the district administrator's).
    r(
        "DELETE",
        "/streams/whep/{session_id}",
        DISPATCH_COMMAND,
        true,
    ),
    // The app channel, by the officer the recorder is bound to.
    r(
        "POST",
        "/streams/{device_id}/{channel_id}/whip",
        BOUND_OFFICER,
        true,
    ),
    r(
        "DELETE",
        "/streams/whip/{session_id}",
        DISPATCH_COMMAND,
        true,
    ),
    // recordings
    r("GET", "/recordings", RECORDING_VIEW, false),
    r("GET", "/recordings/status", RECORDING_VIEW, false),
    r("GET", "/recordings/active", RECORDING_VIEW, false),
    // On-demand recording: reviewers, and the operators who watch the camera.
    r("POST", "/recordings/start", RECORD_ON_DEMAND, true),
    r("POST", "/recordings/stop", RECORD_ON_DEMAND, true),
    r("POST", "/recordings/download", RECORDING_REVIEW, true),
    r("POST", "/recordings/import", RECORDING_REVIEW, true),
    r("GET", "/recordings/{id}", RECORDING_VIEW, true),
    r(
        "GET",
        "/recordings/{id}/playlist.m3u8",
        RECORDING_VIEW,
        true,
    ),
    r(
        "GET",
        "/recordings/{id}/segments/{seq}/init.mp4",
        RECORDING_VIEW,
        true,
    ),
    r(
        "GET",
        "/recordings/{id}/segments/{seq}/media.m4s",
        RECORDING_VIEW,
        true,
    ),
    r("GET", "/recordings/{id}/export.mp4", RECORDING_VIEW, true),
    r("GET", "/recordings/{id}/manifest", RECORDING_VIEW, true),
    r("POST", "/recordings/{id}/links", RECORDING_REVIEW, true),
    r("GET", "/recordings/{id}/links", RECORDING_VIEW, true),
    r(
        "DELETE",
        "/recordings/{id}/links/{inspection_id}",
        PROTECTION_REMOVE,
        true,
    ),
    r(
        "POST",
        "/recordings/{id}/suggestions",
        RECORDING_REVIEW,
        true,
    ),
    r("PUT", "/recordings/{id}/hold", RECORDING_REVIEW, true),
    r(
        "PUT",
        "/recordings/retention/{org_unit_id}",
        ORG_WRITE,
        true,
    ),
];

/// `/auth/media-token`: a token for what the caller may read (recordings or live streams).
const RECORDING_VIEW_OR_DISPATCH: &[&str] = RECORDING_VIEW;

/// An account of the walk.
struct Account {
    username: String,
    role: &'static str,
    /// At the corps unit (no "outside").
    corps: bool,
    token: String,
}

/// A concrete request.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Bytes(&'static str, Vec<u8>),
    /// No body; the headers of a WebSocket upgrade.
    WsUpgrade,
}

fn req(path: String) -> Req {
    Req {
        path,
        body: Body::None,
    }
}

fn jreq(path: String, body: Value) -> Req {
    Req {
        path,
        body: Body::Json(body),
    }
}

struct Walk {
    s: common::Server,
    /// The corps administrator: corps-wide fixtures (accounts, settings).
    admin: String,
    /// An administrator of each district (Huangpu, Xuhui): a district's own work (inspections,
    /// cases, plans, work orders…) is created by its own people, as in real use.
    hp_admin: String,
    xh_admin: String,
    /// The account the walk is about to call as (token, role): for the few resources that
    /// belong to an account rather than an org unit (document batches).
    calling_as: std::sync::Mutex<Option<(String, &'static str)>>,
    seq: std::sync::atomic::AtomicU32,
    /// Fixture steps that failed (each makes the calls built on it fail too).
    broken: std::sync::Mutex<BTreeSet<String>>,
    /// The officer record `hp_officer` is bound to (its app takes the calls).
    bound_officer: std::sync::OnceLock<String>,
}

impl Walk {
    fn next(&self) -> u32 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    async fn call(&self, method: &str, token: &str, q: &Req) -> (StatusCode, Value) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut b = reqwest::Client::new()
            .request(m, self.s.url(&format!("/api/v1{}", q.path)))
            .bearer_auth(token);
        b = match &q.body {
            Body::None => b,
            Body::Json(v) => b.json(v),
            Body::Bytes(ct, bytes) => b.header("content-type", *ct).body(bytes.clone()),
            Body::WsUpgrade => b
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        };
        let r = b.send().await.unwrap();
        let st = r.status();
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let bytes = r.bytes().await.unwrap_or_default();
        match (serde_json::from_slice(&bytes), location) {
            (Ok(v), _) => (st, v),
            // An SDP answer: what the walk needs of it is the session's URL.
            (Err(_), Some(l)) => (st, json!({ "location": l })),
            (Err(_), None) => (st, Value::Null),
        }
    }

    /// As the corps admin, expecting success; the body.
    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let token = self.admin.clone();
        self.ok_as(&token, method, path, body).await
    }

    /// The administrator of district `d` (the corps admin for any other unit).
    fn district_admin(&self, d: &OrgUnit) -> &str {
        if d.id == self.s.huangpu.id {
            &self.hp_admin
        } else if d.id == self.s.xuhui.id {
            &self.xh_admin
        } else {
            &self.admin
        }
    }

    /// As the administrator of district `d`, expecting success; the body.
    async fn okd(&self, d: &OrgUnit, method: &str, path: &str, body: Value) -> Value {
        let token = self.district_admin(d).to_string();
        self.ok_as(&token, method, path, body).await
    }

    /// Who starts a document batch for the call the walk is about to make: the caller when its
    /// role may (a batch is its starter's alone), else `d`'s administrator.
    fn batch_starter(&self, d: &OrgUnit) -> String {
        match self.calling_as.lock().unwrap().clone() {
            Some((token, role)) if ENFORCEMENT_READ.contains(&role) => token,
            _ => self.district_admin(d).to_string(),
        }
    }

    /// Rows of the position history.
    async fn position_count(&self) -> usize {
        self.s
            .state
            .db
            .table_digests(UNTRACKED)
            .await
            .unwrap()
            .iter()
            .find(|t| t.0 == "positions")
            .map_or(0, |t| t.1)
    }

    /// Wait (at most 10 s) until the position history holds `want` rows.
    async fn wait_positions(&self, want: usize) {
        for _ in 0..400 {
            if self.position_count().await >= want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        self.broken
            .lock()
            .unwrap()
            .insert(format!("positions never reached {want} rows"));
    }

    /// Who sends an import for the call the walk is about to make: the caller when its role
    /// may (an import's progress is its sender's alone), else `d`'s administrator.
    fn import_sender(&self, d: &OrgUnit) -> String {
        match self.calling_as.lock().unwrap().clone() {
            Some((token, role)) if ENTERPRISE_WRITE.contains(&role) => token,
            _ => self.district_admin(d).to_string(),
        }
    }

    /// As `token`, expecting success; the body (a failure is recorded in `broken`).
    async fn ok_as(&self, token: &str, method: &str, path: &str, body: Value) -> Value {
        let q = if body.is_null() {
            req(path.to_string())
        } else {
            jreq(path.to_string(), body)
        };
        let (st, b) = self.call(method, token, &q).await;
        if !st.is_success() {
            self.broken
                .lock()
                .unwrap()
                .insert(format!("fixture {method} {path}: {st} {b}"));
            return json!({"id": "fixture-failed", "version": 0});
        }
        b
    }

    /// The id of a town (street) under district `d`, created by the corps admin the first time.
    async fn town_of(&self, d: &OrgUnit) -> String {
        let (_, units) = self.s.get(&self.admin, "/api/v1/org-units").await;
        let found = units
            .as_array()
            .or(units["items"].as_array())
            .into_iter()
            .flatten()
            .find(|u| u["parent_id"] == json!(d.id) && u["kind"] == "town")
            .and_then(|u| u["id"].as_str().map(str::to_string));
        if let Some(id) = found {
            return id;
        }
        let code = format!("{}900", d.code);
        let t = self
            .ok(
                "POST",
                "/org-units",
                json!({"parent_id": d.id, "kind": "town", "name": format!("{}巡检街道", d.name), "code": code}),
            )
            .await;
        t["id"].as_str().unwrap_or_default().to_string()
    }

    fn uscc(&self) -> String {
        let first: String = format!("9131{:013}", 1000 + self.next())
            .chars()
            .take(17)
            .collect();
        format!(
            "{first}{}",
            shouhu_storage::uscc::check_char(&first).unwrap()
        )
    }

    fn enterprise_body(&self, d: &OrgUnit) -> Value {
        json!({
            "name": format!("巡检企业{}有限公司", self.next()),
            "uscc": self.uscc(),
            "district_id": d.id,
            "ownership_type": "私营",
            "industry_code": "C3311",
            "sector": "05",
            "status": "operating",
        })
    }

    async fn enterprise(&self, d: &OrgUnit) -> Value {
        self.ok("POST", "/enterprises", self.enterprise_body(d))
            .await
    }

    fn officer_body(&self, d: &OrgUnit) -> Value {
        json!({"name": "王强", "certificate_no": format!("W-{:05}", self.next()), "org_unit_id": d.id})
    }

    async fn officer(&self, d: &OrgUnit) -> Value {
        self.ok("POST", "/officers", self.officer_body(d)).await
    }

    async fn plan(&self, d: &OrgUnit) -> Value {
        let period = self.work_period();
        self.okd(
            d,
            "POST",
            "/plans",
            json!({"org_unit_id": d.id, "period": period}),
        )
        .await
    }

    async fn inspection(&self, d: &OrgUnit) -> Value {
        let body = self.inspection_body(d).await;
        self.okd(d, "POST", "/inspections", body).await
    }

    async fn inspection_body(&self, d: &OrgUnit) -> Value {
        let e = self.enterprise(d).await;
        let o1 = self.officer(d).await;
        let o2 = self.officer(d).await;
        json!({"enterprise_id": e["id"], "kind": "complaint", "officer_ids": [o1["id"], o2["id"]]})
    }

    fn vehicle_body(&self, d: &OrgUnit) -> Value {
        json!({"plate": format!("沪A·W{:04}", self.next()), "org_unit_id": d.id})
    }

    fn geofence_body(&self, d: &OrgUnit) -> Value {
        json!({"name": format!("围栏{}", self.next()), "kind": "custom", "org_unit_id": d.id,
               "circle": {"lat": 31.23, "lon": 121.47, "radius_m": 300.0}})
    }

    fn account_body(&self, d: &OrgUnit) -> Value {
        json!({"username": format!("walk{}", self.next()), "display_name": "巡检", "password": "Walk@2026xyz",
               "role": "officer", "org_unit_id": d.id})
    }

    async fn account(&self, d: &OrgUnit) -> Value {
        self.ok("POST", "/accounts", self.account_body(d)).await
    }

    /// The concrete request of `row` on a fresh resource of district `d`, or `None` when the
    /// walk has no fixture for it yet.
    async fn fixture(&self, row: &Row, d: &OrgUnit) -> Option<Req> {
        let id = |v: &Value| v["id"].as_str().unwrap().to_string();
        Some(match (row.method, row.path) {
            ("POST", "/auth/login") => jreq(
                row.path.into(),
                json!({"username": "admin", "password": common::PW}),
            ),
            ("POST", "/auth/logout") | ("POST", "/auth/password") => return None,
            ("POST", "/enterprises") => jreq(row.path.into(), self.enterprise_body(d)),
            ("GET", "/enterprises/{id}") | ("DELETE", "/enterprises/{id}") => {
                req(format!("/enterprises/{}", id(&self.enterprise(d).await)))
            }
            ("GET", "/enterprises/{id}/supervision") => req(format!(
                "/enterprises/{}/supervision",
                id(&self.enterprise(d).await)
            )),
            ("PUT", "/enterprises/{id}") => {
                let mut e = self.enterprise(d).await;
                let p = format!("/enterprises/{}", id(&e));
                e["name"] = json!(format!("改名企业{}有限公司", self.next()));
                jreq(p, e)
            }
            ("POST", "/officers") => jreq(row.path.into(), self.officer_body(d)),
            ("GET", "/officers/{id}") | ("DELETE", "/officers/{id}") => {
                req(format!("/officers/{}", id(&self.officer(d).await)))
            }
            ("PUT", "/officers/{id}") => {
                let mut o = self.officer(d).await;
                let p = format!("/officers/{}", id(&o));
                o["name"] = json!("王刚");
                jreq(p, o)
            }
            ("POST", "/plans") => jreq(
                row.path.into(),
                json!({"org_unit_id": d.id, "period": self.work_period()}),
            ),
            ("GET", "/plans/{id}") | ("DELETE", "/plans/{id}") => {
                req(format!("/plans/{}", id(&self.plan(d).await)))
            }
            ("POST", "/plans/{id}/submit") => req(format!(
                "/plans/{}/submit",
                id(&self.work_submittable_plan(d).await)
            )),
            ("GET", "/inspection-items/{id}") | ("GET", "/inspection-items/{id}/history") => {
                let items = common::item_ids(&self.s, &self.admin).await;
                req(row.path.replace("{id}", &items[0]))
            }
            (
                "GET",
                "/enterprises"
                | "/officers"
                | "/inspection-items"
                | "/reference/sectors"
                | "/reference/ownership-types"
                | "/reference/industry-codes"
                | "/roles"
                | "/org-units"
                | "/auth/me"
                | "/accounts"
                | "/account-applications"
                | "/audit"
                | "/enforcement/doc-types"
                | "/enforcement/deadlines"
                | "/inspection-caps"
                | "/case-review-rules"
                | "/inspections"
                | "/over-cap-filings"
                | "/hazards"
                | "/workbench"
                | "/cases"
                | "/exemplary-cases"
                | "/work-orders"
                | "/plans"
                | "/units"
                | "/sos"
                | "/geofences"
                | "/vehicles"
                | "/vehicles/rebinds"
                | "/calls"
                | "/recorders"
                | "/streams"
                | "/streams/stats"
                | "/recordings"
                | "/recordings/status"
                | "/recordings/active"
                | "/enterprises/export.xlsx"
                | "/officers/export.xlsx",
            ) => req(row.path.into()),
            ("GET", "/dispatch/ws") => Req {
                path: row.path.into(),
                body: Body::WsUpgrade,
            },
            ("GET", "/plans/rollup") => req("/plans/rollup?period=2030".into()),
            ("GET", "/units/nearest") => req("/units/nearest?lat=31.23&lon=121.47".into()),
            ("POST", "/inspections") => jreq(row.path.into(), self.inspection_body(d).await),
            ("GET", "/inspections/{id}") => {
                req(row.path.replace("{id}", &id(&self.inspection(d).await)))
            }
            ("POST", "/inspections/{id}/cancel") => jreq(
                row.path.replace("{id}", &id(&self.inspection(d).await)),
                json!({"reason": "企业停产，改期检查"}),
            ),
            ("PUT", "/inspections/{id}/results") => {
                let items = common::item_ids(&self.s, &self.admin).await;
                jreq(
                    row.path.replace("{id}", &id(&self.inspection(d).await)),
                    json!({"results": [{"item_id": items[0], "result": "pass"}]}),
                )
            }
            ("POST", "/inspections/{id}/complete") => {
                let i = id(&self.inspection(d).await);
                let items = common::item_ids(&self.s, &self.admin).await;
                self.okd(
                    d,
                    "PUT",
                    &format!("/inspections/{i}/results"),
                    json!({"results": [{"item_id": items[0], "result": "pass"}]}),
                )
                .await;
                jreq(row.path.replace("{id}", &i), json!({"summary": "检查完毕"}))
            }
            ("POST", "/vehicles") => jreq(row.path.into(), self.vehicle_body(d)),
            ("GET", "/vehicles/{id}") | ("DELETE", "/vehicles/{id}") => {
                let v = self.ok("POST", "/vehicles", self.vehicle_body(d)).await;
                req(row.path.replace("{id}", &id(&v)))
            }
            ("PUT", "/vehicles/{id}") => {
                let v = self.ok("POST", "/vehicles", self.vehicle_body(d)).await;
                let mut b = self.vehicle_body(d);
                b["version"] = v["version"].clone();
                jreq(row.path.replace("{id}", &id(&v)), b)
            }
            ("POST", "/geofences") => jreq(row.path.into(), self.geofence_body(d)),
            ("DELETE", "/geofences/{id}") => {
                let g = self.ok("POST", "/geofences", self.geofence_body(d)).await;
                req(row.path.replace("{id}", &id(&g)))
            }
            ("POST", "/accounts") => jreq(row.path.into(), self.account_body(d)),
            (
                "POST",
                "/accounts/{id}/unlock" | "/accounts/{id}/disable" | "/accounts/{id}/enable",
            ) => req(row.path.replace("{id}", &id(&self.account(d).await))),
            ("POST", "/accounts/{id}/reset-password") => jreq(
                row.path.replace("{id}", &id(&self.account(d).await)),
                json!({"new_password": "Reset@2026abc"}),
            ),
            ("GET", "/work-orders/{id}") => {
                let o = self
                    .ok(
                        "POST",
                        "/work-orders",
                        json!({"title": "巡检工单", "body": "请核查", "deadline": "2030-12-31",
                           "recipient_unit_ids": [d.id]}),
                    )
                    .await;
                req(row.path.replace("{id}", &id(&o)))
            }
            ("POST", "/work-orders") => {
                // To a town of the district: every caller allowed (corps or the district
                // itself) sends below itself, never to its own unit.
                let town = self.town_of(d).await;
                jreq(
                    row.path.into(),
                    json!({"title": "巡检工单", "body": "请核查", "deadline": "2030-12-31",
                           "recipient_unit_ids": [town]}),
                )
            }
            ("POST", "/attachments") => Req {
                path: row.path.into(),
                body: Body::Bytes(
                    "application/octet-stream",
                    [&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 64][..]].concat(),
                ),
            },
            _ => {
                return match self.fixture_cases(row, d).await {
                    Some(q) => Some(q),
                    None => match self.fixture_work(row, d).await {
                        Some(q) => Some(q),
                        None => match self.fixture_media(row, d).await {
                            Some(q) => Some(q),
                            None => match self.fixture_live(row, d).await {
                                Some(q) => Some(q),
                                None => self.fixture_talk(row, d).await,
                            },
                        },
                    },
                }
            }
        })
    }
}

/// A placeholder request for refusal checks of rows without a fixture (the live rows): every
/// path parameter a fresh id that names no row (20 digits for GB/T 28181 ids), and a body or
/// query of the right shape, so that the only thing wrong with it is the caller.
fn placeholder(row: &Row) -> Req {
    let mut p = String::new();
    let mut rest = row.path;
    while let Some(i) = rest.find('{') {
        p.push_str(&rest[..i]);
        let j = rest[i..].find('}').unwrap() + i;
        p.push_str(match &rest[i + 1..j] {
            "device_id" => "31010000001320000099",
            "channel_id" => "31010000001310000099",
            _ => "00000000000000000000000000000000",
        });
        rest = &rest[j + 1..];
    }
    p.push_str(rest);
    let sdp = || Body::Bytes("application/sdp", PLACEHOLDER_SDP.as_bytes().to_vec());
    let channel =
        json!({"device_id": "31010000001320000099", "channel_id": "31010000001310000099"});
    let body = match (row.method, row.path) {
        ("GET", "/dispatch/ws") => Body::WsUpgrade,
        ("GET", "/recorders/{id}/records") => {
            p.push_str("?from=1700000000000&to=1700000060000");
            Body::None
        }
        ("GET" | "DELETE", _) => Body::None,
        ("POST", "/calls") => Body::Json(json!({"unit_id": "00000000000000000000000000000000"})),
        ("POST", "/units/{id}/track-request") => {
            Body::Json(json!({"interval_s": 5, "duration_s": 60}))
        }
        ("POST", "/recordings/start" | "/recordings/stop") => Body::Json(channel),
        ("POST", "/recordings/download") => {
            let mut c = channel;
            c["start"] = json!(1_700_000_000_000i64);
            c["end"] = json!(1_700_000_060_000i64);
            Body::Json(c)
        }
        ("POST", path) if path.ends_with("/whep") || path.ends_with("/whip") => sdp(),
        _ => Body::Json(json!({})),
    };
    Req { path: p, body }
}

/// An SDP offer of the right shape for the refusal checks of WHEP/WHIP rows (never answered).
const PLACEHOLDER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n";

/// Rows whose resource lives only in memory while a device or a peer is on the line (a call, a
/// WHEP/WHIP session): with no such resource in-process, a wrong role's request names nothing,
/// and "not found" is as true an answer as "forbidden".
fn in_memory_resource(row: &Row) -> bool {
    row.path.starts_with("/calls/{id}")
        || row.path.starts_with("/streams/whep/")
        || row.path.starts_with("/streams/whip/")
}

/// One more account (not walked): created in storage, signed in; its token.
async fn extra_account(s: &common::Server, u: &str, role: &str, unit: &OrgUnit) -> String {
    let hash = shouhu_api::auth::password::hash(&s.state.cfg.auth, common::PW)
        .await
        .unwrap();
    let audit = AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("setup".into()),
            ip: None,
        },
        "setup",
        1_700_000_000_000,
    );
    s.state
        .db
        .accounts()
        .create(
            &NewAccount {
                username: u.into(),
                display_name: u.into(),
                password_hash: hash,
                role: role.into(),
                org_unit_id: unit.id.clone(),
                must_change_password: false,
            },
            &audit,
        )
        .await
        .unwrap();
    s.login(u).await
}

async fn seed_accounts(s: &common::Server) -> Vec<Account> {
    let hash = shouhu_api::auth::password::hash(&s.state.cfg.auth, common::PW)
        .await
        .unwrap();
    let audit = AuditEntry::new(
        &Actor {
            account_id: None,
            username: Some("setup".into()),
            ip: None,
        },
        "setup",
        1_700_000_000_000,
    );
    let mut out = Vec::new();
    let plan: Vec<(&str, &'static str, bool)> = vec![
        ("admin", "admin", true),
        ("w_corps_leader", "corps_leader", true),
        ("operator", "operator", true),
        ("w_reviewer", "reviewer", true),
        ("w_hp_admin", "admin", false),
        ("hp_head", "brigade_head", false),
        ("w_hp_squad", "squad_leader", false),
        ("w_hp_stat", "statistician", false),
        ("w_hp_clerk", "clerk", false),
        ("hp_officer", "officer", false),
        ("w_hp_soe", "soe_user", false),
    ];
    for (u, role, at_corps) in plan {
        if u.starts_with("w_") {
            let unit = if at_corps { &s.corps } else { &s.huangpu };
            s.state
                .db
                .accounts()
                .create(
                    &NewAccount {
                        username: u.into(),
                        display_name: u.into(),
                        password_hash: hash.clone(),
                        role: role.into(),
                        org_unit_id: unit.id.clone(),
                        must_change_password: false,
                    },
                    &audit,
                )
                .await
                .unwrap();
        }
        out.push(Account {
            username: u.into(),
            role,
            corps: at_corps,
            token: s.login(u).await,
        });
    }
    out
}

async fn denied_count(s: &common::Server) -> i64 {
    s.state
        .db
        .audit()
        .query(
            &AuditFilter {
                outcome: Some("denied".into()),
                ..Default::default()
            },
            shouhu_storage::PageRequest::new(None, Some(1)),
        )
        .await
        .unwrap()
        .total
}

async fn walk(s: common::Server) {
    let accounts = seed_accounts(&s).await;
    let admin = accounts[0].token.clone();
    let hp_admin = accounts
        .iter()
        .find(|a| a.username == "w_hp_admin")
        .unwrap()
        .token
        .clone();
    let xh_admin = extra_account(&s, "w_xh_admin", "admin", &s.xuhui.clone()).await;
    let w = Walk {
        s,
        admin,
        hp_admin,
        xh_admin,
        calling_as: Default::default(),
        seq: Default::default(),
        broken: Default::default(),
        bound_officer: Default::default(),
    };
    // The officer role's account is a field officer's: bound to an officer record (its app
    // uploads positions and takes calls). No other walked account is bound.
    let hp_officer = accounts
        .iter()
        .find(|a| a.username == "hp_officer")
        .unwrap();
    let (_, me) = w.s.get(&hp_officer.token, "/api/v1/auth/me").await;
    let account_id = me["id"]
        .as_str()
        .or(me["account"]["id"].as_str())
        .expect("the account id in /auth/me")
        .to_string();
    let hp = w.s.huangpu.clone();
    let bound = w
        .okd(
            &hp,
            "POST",
            "/officers",
            json!({"name": "李明", "certificate_no": "W-BOUND1", "org_unit_id": hp.id, "account_id": account_id}),
        )
        .await;
    let _ = w
        .bound_officer
        .set(bound["id"].as_str().unwrap_or_default().to_string());
    // Every operation of the served document has a row.
    let (st, doc) = w.s.get(&w.admin, "/api/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                ops.insert((
                    m.to_uppercase(),
                    path.trim_start_matches("/api/v1").to_string(),
                ));
            }
        }
    }
    let rows: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = ops.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&ops).collect();
    let mut failures: Vec<String> = Vec::new();
    let mut not_exercised: Vec<String> = Vec::new();
    if !missing.is_empty() {
        failures.push(format!(
            "operations without a row in the table: {missing:?}"
        ));
    }
    if !stale.is_empty() {
        failures.push(format!("rows for operations the document lacks: {stale:?}"));
    }
    let xh = w.s.xuhui.clone();
    for row in TABLE {
        if !ops.contains(&(row.method.to_string(), row.path.to_string())) {
            continue;
        }
        let op = format!("{} {}", row.method, row.path);
        for a in &accounts {
            *w.calling_as.lock().unwrap() = Some((a.token.clone(), a.role));
            let allowed = row.roles.contains(&a.role) && (a.corps || !row.corps_only);
            if row.path == "/auth/login" {
                // Public: a wrong password is refused, the right one signs in; nothing to walk.
                break;
            }
            if !allowed {
                let (q, placeholder_used) = match w.fixture(row, &hp).await {
                    Some(q) => (q, false),
                    None => (placeholder(row), true),
                };
                let before = w.s.state.db.table_digests(UNTRACKED).await.unwrap();
                let (st, b) = w.call(row.method, &a.token, &q).await;
                let nothing_there =
                    placeholder_used && in_memory_resource(row) && st == StatusCode::NOT_FOUND;
                if nothing_there {
                    not_exercised.push(format!(
                        "{op} as {}: refused (404) on a placeholder; {}",
                        a.role,
                        row.no_2xx.unwrap_or("no in-memory resource")
                    ));
                } else if st != StatusCode::FORBIDDEN {
                    failures.push(format!(
                        "{op} as {} ({}): expected 403, got {st} {b}",
                        a.username, a.role
                    ));
                }
                let after = w.s.state.db.table_digests(UNTRACKED).await.unwrap();
                if before != after {
                    failures.push(format!(
                        "{op} as {} ({}): refused yet changed {:?}",
                        a.username,
                        a.role,
                        changed(&before, &after)
                    ));
                }
                w.settle(row, &b).await;
                continue;
            }
            if let Some(why) = row.no_2xx {
                not_exercised.push(format!("{op} as {}: no 2xx in-process ({why})", a.role));
            } else if matches!(row.method, "POST")
                && matches!(row.path, "/auth/logout" | "/auth/password")
            {
                // Their own session: shown on a throwaway account of the same role and unit
                // (the walked account keeps its session for the rows after this one).
                let unit = if a.corps {
                    w.s.corps.clone()
                } else {
                    hp.clone()
                };
                let name = format!("t{}_{}", w.next(), a.role);
                let token = extra_account(&w.s, &name, a.role, &unit).await;
                let q = if row.path == "/auth/password" {
                    jreq(
                        row.path.into(),
                        json!({"old_password": common::PW, "new_password": "Walk@Changed2026"}),
                    )
                } else {
                    req(row.path.into())
                };
                let (st, b) = w.call(row.method, &token, &q).await;
                if !st.is_success() {
                    failures.push(format!(
                        "{op} as a throwaway {} account: expected 2xx, got {st} {b}",
                        a.role
                    ));
                }
            } else {
                match w.fixture(row, &hp).await {
                    Some(q) => {
                        let stored = if row.path == "/positions" {
                            w.position_count().await
                        } else {
                            0
                        };
                        let (st, b) = w.call(row.method, &a.token, &q).await;
                        let upgraded = matches!(q.body, Body::WsUpgrade)
                            && st == StatusCode::SWITCHING_PROTOCOLS;
                        if !st.is_success() && !upgraded {
                            failures.push(format!(
                                "{op} as {} ({}) inside: expected 2xx, got {st} {b}",
                                a.username, a.role
                            ));
                        } else if row.path == "/positions" {
                            // Accepted fixes reach the history through the batch writer: wait
                            // for them, so later refusal checks see no change of their own.
                            let want = stored + b["accepted"].as_u64().unwrap_or(0) as usize;
                            w.wait_positions(want).await;
                        }
                        w.settle(row, &b).await;
                    }
                    None => not_exercised.push(format!("{op} as {}: no fixture yet", a.role)),
                }
            }
            if row.scoped && !a.corps && row.no_2xx.is_none() {
                let Some(q) = w.fixture(row, &xh).await else {
                    not_exercised.push(format!("{op} as {} outside: no fixture yet", a.role));
                    continue;
                };
                let before = w.s.state.db.table_digests(UNTRACKED).await.unwrap();
                let denied = denied_count(&w.s).await;
                let (st, b) = w.call(row.method, &a.token, &q).await;
                if st != StatusCode::NOT_FOUND {
                    failures.push(format!(
                        "{op} as {} ({}) outside: expected 404, got {st} {b}",
                        a.username, a.role
                    ));
                } else if denied_count(&w.s).await != denied + 1 {
                    failures.push(format!(
                        "{op} as {} ({}) outside: 404 without one new denied audit row",
                        a.username, a.role
                    ));
                }
                let after = w.s.state.db.table_digests(UNTRACKED).await.unwrap();
                if before != after {
                    failures.push(format!(
                        "{op} as {} ({}) outside: refused yet changed {:?}",
                        a.username,
                        a.role,
                        changed(&before, &after)
                    ));
                }
                w.settle(row, &b).await;
            }
        }
    }
    let covered = TABLE.len() - not_exercised_ops(&not_exercised);
    eprintln!(
        "authz walk: {} operations in the document, {} rows, {} with every allowed call shown 2xx",
        ops.len(),
        TABLE.len(),
        covered
    );
    for n in &not_exercised {
        eprintln!("  not exercised: {n}");
    }
    failures.extend(w.broken.lock().unwrap().iter().cloned());
    let todo: Vec<_> = not_exercised
        .iter()
        .filter(|n| n.contains("no fixture yet"))
        .collect();
    if !todo.is_empty() {
        failures.push(format!("{} calls without a fixture yet", todo.len()));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn not_exercised_ops(n: &[String]) -> usize {
    n.iter()
        .filter_map(|l| l.split(" as ").next().or(l.split(':').next()))
        .map(|s| s.split(':').next().unwrap_or(s).to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

fn changed(before: &[(String, usize, u64)], after: &[(String, usize, u64)]) -> Vec<String> {
    after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|a| a.0.clone())
        .collect()
}

on_both!(every_operation_as_every_role, walk);

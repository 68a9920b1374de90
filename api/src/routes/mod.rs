//! The HTTP routes, one resource per file, gathered into one router with its OpenAPI document.

pub mod accounts;
pub mod applications;
pub mod audit;
pub mod auth;
pub mod calls;
pub mod case_files;
pub mod cases;
pub mod dispatch;
pub mod dispatch_ws;
pub mod enforcement;
pub mod enterprises;
pub mod hazards;
pub mod health;
pub mod imports;
pub mod inspections;
pub mod items;
pub mod officers;
pub mod org_units;
pub mod plans;
pub mod recorders;
pub mod recordings;
pub mod reference;
pub mod streams;
pub mod work_orders;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The OpenAPI document's frame; paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Shouhu API", description = "Command-and-dispatch and enforcement API of Shouhu (守护). Errors are `{code, message}` JSON with the HTTP status; authenticate with the bearer token from `POST /api/v1/auth/login` or its session cookie."),
    tags(
        (name = "auth", description = "Login, sessions, passwords"),
        (name = "accounts", description = "Accounts, roles and account applications"),
        (name = "org", description = "Org units"),
        (name = "audit", description = "Audit log"),
        (name = "enterprises", description = "Enterprise registry"),
        (name = "officers", description = "Officer registry"),
        (name = "inspection-items", description = "Inspection item list"),
        (name = "reference", description = "Code lists"),
        (name = "enforcement", description = "Daily enforcement work: inspections (inspect-once caps, over-cap filings), hazards and their rectification loop, cases (confidential while open) with their documents, the workbench, attachments"),
        (name = "recordings", description = "Recordings: search, HLS playback, export with a signed manifest, links to inspections, legal holds, retention, evidence packages"),
        (name = "dispatch", description = "Live units, positions, tracks, assignments, SOS alarms, geofences, vehicles; WebSocket at /dispatch/ws"),
    ),
    components(schemas(crate::error::ErrorBody, crate::error::RowError)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the bearer token scheme, so the API page can authorise its requests with the token
/// from `POST /api/v1/auth/login`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("token from POST /api/v1/auth/login"))
                    .build(),
            ),
        );
    }
}

/// The `/api/v1` router and the OpenAPI document.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let json_limit = DefaultBodyLimit::max(state.cfg.http.max_body_bytes);
    let upload_limit = DefaultBodyLimit::max(state.cfg.http.max_upload_bytes);
    let uploads = OpenApiRouter::new()
        .merge(enterprises::upload_router())
        .merge(officers::upload_router())
        .merge(enforcement::upload_router())
        .merge(case_files::upload_router())
        .layer(upload_limit);
    let imports = recordings::import_router()
        .layer(DefaultBodyLimit::max(state.cfg.recording.max_import_bytes));
    let rest = OpenApiRouter::new()
        .nest("/auth", auth::router())
        .merge(accounts::router())
        .merge(applications::router())
        .merge(org_units::router())
        .merge(audit::router())
        .merge(enterprises::router())
        .merge(officers::router())
        .merge(items::router())
        .merge(reference::router())
        .merge(dispatch::router())
        .merge(recorders::router())
        .merge(recordings::router())
        .merge(streams::router())
        .merge(calls::router())
        .merge(dispatch_ws::router())
        .merge(inspections::router())
        .merge(hazards::router())
        .merge(cases::router())
        .merge(enforcement::router())
        .merge(crate::documents::router())
        .merge(work_orders::router())
        .merge(plans::router())
        .merge(case_files::router())
        .merge(imports::router())
        .layer(json_limit);
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", uploads.merge(imports).merge(rest))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    (router, doc)
}

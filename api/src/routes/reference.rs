//! `/api/v1/reference`: code lists for forms (sectors, ownership types, GB/T 4754 codes).

use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::enterprises::{OWNERSHIP_TYPES, SECTORS};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::state::AppState;

/// GB/T 4754-2017 sections, divisions and the classes the demo uses.
pub const INDUSTRY_CODES_JSON: &str = include_str!("../demo/industry_codes.json");

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sectors))
        .routes(routes!(ownership_types))
        .routes(routes!(industry_codes))
}

/// A code and its name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeName {
    /// Code.
    pub code: String,
    /// Chinese name.
    pub name: String,
}

/// Supervised sectors.
#[utoipa::path(get, path = "/reference/sectors", tag = "reference", responses((status = 200, body = Vec<CodeName>)))]
async fn sectors(_c: Caller) -> Json<Vec<CodeName>> {
    Json(
        SECTORS
            .iter()
            .map(|(c, n)| CodeName {
                code: c.to_string(),
                name: n.to_string(),
            })
            .collect(),
    )
}

/// Ownership types.
#[utoipa::path(get, path = "/reference/ownership-types", tag = "reference", responses((status = 200, body = Vec<String>)))]
async fn ownership_types(_c: Caller) -> Json<Vec<&'static str>> {
    Json(OWNERSHIP_TYPES.to_vec())
}

/// GB/T 4754-2017 industry codes.
#[utoipa::path(get, path = "/reference/industry-codes", tag = "reference", responses((status = 200, body = Vec<CodeName>)))]
async fn industry_codes(_c: Caller) -> Json<Vec<CodeName>> {
    Json(serde_json::from_str(INDUSTRY_CODES_JSON).unwrap_or_default())
}

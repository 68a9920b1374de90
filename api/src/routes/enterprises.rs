//! `/api/v1/enterprises`: the enterprise registry — list and search, dossier CRUD, import from
//! CSV/Excel (all or nothing, with a per-row error report), export to Excel.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shouhu_storage::enterprises::{EnterpriseFilter, EnterpriseInput, SECTORS};
use shouhu_storage::org_units::{OrgUnit, Scope};
use shouhu_storage::PageRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::{EnterpriseDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody, RowError};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::tabular::{self, Column};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(export))
        .routes(routes!(get_one, update, delete))
}

/// Upload routes (own body limit).
pub(crate) fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// Enterprise list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of name, USCC, address, legal representative or principal (any length).
    pub q: Option<String>,
    /// District (brigade org unit id).
    pub district_id: Option<String>,
    /// Town id.
    pub town_id: Option<String>,
    /// SOE group id.
    pub soe_group_id: Option<String>,
    /// Sector code.
    pub sector: Option<String>,
    /// `operating`, `suspended`, `closed`.
    pub status: Option<String>,
    /// On the key-unit list of this year.
    pub key_unit_year: Option<i32>,
    /// Exact USCC.
    pub uscc: Option<String>,
    /// The principal's phone: the full number (7–20 digits, separators ignored) or its last
    /// four digits. Phones are sealed at rest and matched through their blind indexes, so parts
    /// of a number other than the last four find nothing.
    pub phone: Option<String>,
    /// `name`, `uscc`, `updated_at`, `district`, `industry_code`, `sector`; `-` prefix for descending.
    pub sort: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size (≤ 500).
    pub page_size: Option<i64>,
}

impl ListQuery {
    fn filter(self) -> (EnterpriseFilter, PageRequest) {
        let nz = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        (
            EnterpriseFilter {
                q: nz(self.q),
                district_id: nz(self.district_id),
                town_id: nz(self.town_id),
                soe_group_id: nz(self.soe_group_id),
                sector: nz(self.sector),
                status: nz(self.status),
                key_unit_year: self.key_unit_year,
                uscc: nz(self.uscc).map(|s| s.trim().to_ascii_uppercase()),
                phone: nz(self.phone),
                sort: nz(self.sort),
            },
            PageRequest::new(self.page, self.page_size),
        )
    }
}

/// Search and list enterprises in the caller's scope.
#[utoipa::path(get, path = "/enterprises", tag = "enterprises", params(ListQuery),
    responses((status = 200, body = Page<EnterpriseDto>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<EnterpriseDto>>> {
    caller.require(Perm::RegistryRead)?;
    let (f, page) = q.filter();
    let p = state.db.enterprises().list(&caller.scope, &f, page).await?;
    Ok(Json(Page::from(p, EnterpriseDto::from)))
}

/// One dossier. Outside the caller's scope answers 404, as if it did not exist.
#[utoipa::path(get, path = "/enterprises/{id}", tag = "enterprises", params(("id" = String, Path)),
    responses((status = 200, body = EnterpriseDto), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<EnterpriseDto>> {
    caller.require(Perm::RegistryRead)?;
    // Out of scope: the 404 is audited as `denied` by the central middleware.
    Ok(Json(
        state.db.enterprises().get(&caller.scope, &id).await?.into(),
    ))
}

/// Check a normalised input: fields, references and the caller's scope.
async fn check_input(state: &AppState, caller: &Caller, input: &EnterpriseInput) -> ApiResult<()> {
    let errs = state.db.enterprises().check(input).await?;
    if !errs.is_empty() {
        return Err(ApiError::validation(
            errs.into_iter().map(Into::into).collect(),
        ));
    }
    if !in_scope(state, &caller.scope, input).await? {
        // Out of scope: the same 404 as a unit that does not exist, audited as denied.
        return Err(ApiError::out_of_scope("org unit", &input.district_id));
    }
    Ok(())
}

async fn in_scope(state: &AppState, scope: &Scope, input: &EnterpriseInput) -> ApiResult<bool> {
    let o = state.db.org_units();
    for unit in [
        Some(&input.district_id),
        input.town_id.as_ref(),
        input.soe_group_id.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if o.in_scope(scope, unit).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Create a dossier.
#[utoipa::path(post, path = "/enterprises", tag = "enterprises", request_body = EnterpriseInput,
    responses((status = 200, body = EnterpriseDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut input): ApiJson<EnterpriseInput>,
) -> ApiResult<Json<EnterpriseDto>> {
    caller.require(Perm::EnterpriseWrite)?;
    input.normalize();
    check_input(&state, &caller, &input).await?;
    let e = state
        .db
        .enterprises()
        .create(&input, &caller.audit("enterprise.create", state.now()))
        .await?;
    Ok(Json(e.into()))
}

/// Update body: the dossier plus the version it was read at.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateEnterprise {
    /// The version the client read (optimistic locking).
    pub version: i64,
    /// The dossier.
    #[serde(flatten)]
    pub input: EnterpriseInput,
}

/// Replace a dossier (409 `version_conflict` if it changed since it was read).
#[utoipa::path(put, path = "/enterprises/{id}", tag = "enterprises", params(("id" = String, Path)), request_body = UpdateEnterprise,
    responses((status = 200, body = EnterpriseDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<EnterpriseDto>> {
    caller.require(Perm::EnterpriseWrite)?;
    let (version, mut input): (i64, EnterpriseInput) = split_versioned_body(body)?;
    input.normalize();
    state.db.enterprises().get(&caller.scope, &id).await?;
    check_input(&state, &caller, &input).await?;
    let e = state
        .db
        .enterprises()
        .update(
            &caller.scope,
            &id,
            version,
            &input,
            &caller.audit("enterprise.update", state.now()),
        )
        .await?;
    Ok(Json(e.into()))
}

/// `#[serde(flatten)]` and `deny_unknown_fields` do not mix, so the version is taken out by hand
/// and the rest is parsed strictly.
pub(crate) fn split_versioned_body<T: serde::de::DeserializeOwned>(
    mut body: serde_json::Value,
) -> ApiResult<(i64, T)> {
    let obj = body.as_object_mut().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "expected a JSON object",
        )
    })?;
    let version = obj
        .remove("version")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| {
            crate::routes::auth::field_error(
                "version",
                "required: the version the record was read at",
            )
        })?;
    for k in [
        "id",
        "created_at",
        "updated_at",
        "district_name",
        "town_name",
        "soe_group_name",
        "org_unit_name",
    ] {
        obj.remove(k);
    }
    let input = parse_strict(body)?;
    Ok((version, input))
}

fn parse_strict<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> ApiResult<T> {
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("Failed to deserialize the JSON body: {e}"),
        )
    })
}

/// Delete a dossier.
#[utoipa::path(delete, path = "/enterprises/{id}", tag = "enterprises", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::EnterpriseWrite)?;
    state
        .db
        .enterprises()
        .delete(
            &caller.scope,
            &id,
            &caller.audit("enterprise.delete", state.now()),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The import/export columns, in export order.
pub const COLUMNS: &[Column] = &[
    Column {
        field: "name",
        header: "企业名称",
        required: true,
    },
    Column {
        field: "uscc",
        header: "统一社会信用代码",
        required: true,
    },
    Column {
        field: "district",
        header: "所属区",
        required: true,
    },
    Column {
        field: "town",
        header: "街镇",
        required: false,
    },
    Column {
        field: "soe_group",
        header: "所属国有集团",
        required: false,
    },
    Column {
        field: "address",
        header: "地址",
        required: false,
    },
    Column {
        field: "lon",
        header: "经度",
        required: false,
    },
    Column {
        field: "lat",
        header: "纬度",
        required: false,
    },
    Column {
        field: "legal_representative",
        header: "法定代表人",
        required: false,
    },
    Column {
        field: "principal_name",
        header: "主要负责人",
        required: false,
    },
    Column {
        field: "principal_phone",
        header: "主要负责人电话",
        required: false,
    },
    Column {
        field: "ownership_type",
        header: "国民经济类型",
        required: true,
    },
    Column {
        field: "industry_code",
        header: "行业代码",
        required: true,
    },
    Column {
        field: "sector",
        header: "监管行业",
        required: true,
    },
    Column {
        field: "key_unit_years",
        header: "重点单位年度",
        required: false,
    },
    Column {
        field: "status",
        header: "经营状态",
        required: false,
    },
    Column {
        field: "tags",
        header: "标签",
        required: false,
    },
];

const STATUS_NAMES: &[(&str, &str)] = &[
    ("operating", "在营"),
    ("suspended", "停产"),
    ("closed", "关闭"),
];

/// Import result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    /// Rows imported.
    pub imported: usize,
}

/// Resolve an org unit cell: id, code or exact name, of the given kind (and parent).
fn resolve<'a>(
    units: &'a [OrgUnit],
    cell: &str,
    kind: &str,
    parent: Option<&str>,
) -> Option<&'a OrgUnit> {
    units.iter().find(|u| {
        u.kind == kind
            && parent.is_none_or(|p| u.parent_id.as_deref() == Some(p))
            && (u.id == cell || u.code == cell || u.name == cell)
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', '，', '、', ';', '；'])
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Turn one table row into an input, or the row's errors.
fn row_input(row: &tabular::Row, units: &[OrgUnit]) -> Result<EnterpriseInput, Vec<RowError>> {
    let mut errs = Vec::new();
    let mut err = |field: &str, message: String| {
        errs.push(RowError {
            row: Some(row.number),
            field: field.into(),
            message,
        })
    };
    let district = resolve(units, row.get("district"), "brigade", None);
    if district.is_none() {
        err(
            "district",
            format!("no district brigade named {:?}", row.get("district")),
        );
    }
    let town = match row.get("town") {
        "" => None,
        t => match district.and_then(|d| resolve(units, t, "town", Some(&d.id))) {
            Some(u) => Some(u.id.clone()),
            None => {
                err("town", format!("no town {t:?} in the district"));
                None
            }
        },
    };
    let soe = match row.get("soe_group") {
        "" => None,
        s => match resolve(units, s, "soe_group", None) {
            Some(u) => Some(u.id.clone()),
            None => {
                err("soe_group", format!("no SOE group {s:?}"));
                None
            }
        },
    };
    let num = |field: &str, errs: &mut Vec<RowError>| -> Option<f64> {
        match row.get(field) {
            "" => None,
            v => match v.parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => {
                    errs.push(RowError {
                        row: Some(row.number),
                        field: field.into(),
                        message: format!("{v:?} is not a number"),
                    });
                    None
                }
            },
        }
    };
    let lon = num("lon", &mut errs);
    let lat = num("lat", &mut errs);
    let sector_cell = row.get("sector");
    let sector = SECTORS
        .iter()
        .find(|(c, n)| *c == sector_cell || *n == sector_cell)
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| sector_cell.to_string());
    let status_cell = row.get("status");
    let status = match status_cell {
        "" => "operating".to_string(),
        s => STATUS_NAMES
            .iter()
            .find(|(c, n)| *c == s || *n == s)
            .map(|(c, _)| c.to_string())
            .unwrap_or_else(|| s.to_string()),
    };
    let mut years = Vec::new();
    for y in split_list(row.get("key_unit_years")) {
        match y.parse::<i32>() {
            Ok(v) => years.push(v),
            Err(_) => errs.push(RowError {
                row: Some(row.number),
                field: "key_unit_years".into(),
                message: format!("{y:?} is not a year"),
            }),
        }
    }
    let mut input = EnterpriseInput {
        name: row.get("name").into(),
        uscc: row.get("uscc").into(),
        district_id: district.map(|d| d.id.clone()).unwrap_or_default(),
        town_id: town,
        soe_group_id: soe,
        address: row.get("address").into(),
        lon,
        lat,
        legal_representative: row.get("legal_representative").into(),
        principal_name: row.get("principal_name").into(),
        principal_phone: row.get("principal_phone").into(),
        ownership_type: row.get("ownership_type").into(),
        industry_code: row.get("industry_code").into(),
        sector,
        key_unit_years: years,
        status,
        tags: split_list(row.get("tags")),
    };
    input.normalize();
    for e in input.validate() {
        if e.field == "district_id" && district.is_none() {
            continue;
        }
        errs.push(RowError {
            row: Some(row.number),
            field: e.field,
            message: e.message,
        });
    }
    if errs.is_empty() {
        Ok(input)
    } else {
        Err(errs)
    }
}

/// Import enterprises from CSV (UTF-8 or GBK) or Excel. The body is the file itself
/// (`Content-Type: text/csv` or the xlsx type). Columns are matched by the Chinese headers of the
/// export or by field names. All rows are checked first; if any row is bad, nothing is imported
/// and the answer (422 `import_rejected`) lists every bad row. With an `X-Import-Id` header its
/// progress can be polled at `GET /imports/{id}` meanwhile.
#[utoipa::path(post, path = "/enterprises/import", tag = "enterprises",
    request_body(content = Vec<u8>, content_type = "text/csv"),
    responses((status = 200, body = Imported), (status = 422, body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Imported>> {
    caller.require(Perm::EnterpriseWrite)?;
    let run = state
        .imports
        .begin(&headers, &caller, "enterprises", state.now())?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let rows = tabular::parse(&body, ct, COLUMNS)?;
    run.checking(rows.len());
    let units = state.db.org_units().list().await?;
    let mut errors = Vec::new();
    let mut inputs = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let visible = state.db.org_units().visible_ids(&caller.scope).await?;
    for row in &rows {
        match row_input(row, &units) {
            Ok(input) => {
                if let Some(first) = seen.insert(input.uscc.clone(), row.number) {
                    errors.push(RowError {
                        row: Some(row.number),
                        field: "uscc".into(),
                        message: format!("same code as row {first}"),
                    });
                }
                let reachable = [
                    Some(&input.district_id),
                    input.town_id.as_ref(),
                    input.soe_group_id.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|u| visible.contains(u));
                if !reachable {
                    errors.push(RowError {
                        row: Some(row.number),
                        field: "district".into(),
                        message: "outside your scope".into(),
                    });
                }
                inputs.push((row.number, input));
            }
            Err(e) => errors.extend(e),
        }
    }
    let codes: Vec<String> = inputs.iter().map(|(_, i)| i.uscc.clone()).collect();
    let existing: HashSet<String> = state
        .db
        .enterprises()
        .existing_usccs(&codes)
        .await?
        .into_iter()
        .collect();
    for (n, i) in &inputs {
        if existing.contains(&i.uscc) {
            errors.push(RowError {
                row: Some(*n),
                field: "uscc".into(),
                message: "already registered".into(),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        let audit = caller
            .audit("enterprise.import", state.now())
            .outcome(shouhu_storage::audit::Outcome::Failure)
            .details(serde_json::json!({"rows": rows.len(), "errors": errors.len()}));
        state.db.audit().record(&audit).await?;
        run.reject();
        return Err(tabular::import_rejected(errors));
    }
    let inputs: Vec<EnterpriseInput> = inputs.into_iter().map(|(_, i)| i).collect();
    run.writing();
    let ids = state
        .db
        .enterprises()
        .insert_many_reporting(
            &inputs,
            &caller.audit("enterprise.import", state.now()),
            "enterprise.import",
            &|n| run.written(n),
        )
        .await?;
    run.finish();
    if ids.len() >= 1000 {
        // A bulk load shifts the registry's statistics; refresh them for the search plans.
        if let Err(e) = state.db.enterprises().refresh_statistics().await {
            tracing::warn!(error = %e, "could not refresh statistics after an import");
        }
    }
    Ok(Json(Imported {
        imported: ids.len(),
    }))
}

/// Export the filtered list (in scope) to Excel, in the import's column layout.
#[utoipa::path(get, path = "/enterprises/export.xlsx", tag = "enterprises", params(ListQuery),
    responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")))]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RegistryExport)?;
    let (f, _) = q.filter();
    let mut rows = Vec::new();
    let mut page = 1;
    let units = state.db.org_units().list().await?;
    let code_of = |id: &Option<String>| {
        id.as_ref()
            .and_then(|i| units.iter().find(|u| &u.id == i))
            .map(|u| u.name.clone())
            .unwrap_or_default()
    };
    loop {
        let p = state
            .db
            .enterprises()
            .list(
                &caller.scope,
                &f,
                PageRequest {
                    page,
                    page_size: PageRequest::MAX_PAGE_SIZE,
                },
            )
            .await?;
        let n = p.items.len();
        for e in p.items {
            rows.push(vec![
                e.name.clone(),
                e.uscc.clone(),
                e.district_name.clone(),
                code_of(&e.town_id),
                code_of(&e.soe_group_id),
                e.address.clone(),
                e.lon.map(|v| v.to_string()).unwrap_or_default(),
                e.lat.map(|v| v.to_string()).unwrap_or_default(),
                e.legal_representative.clone(),
                e.principal_name.clone(),
                e.principal_phone.clone(),
                e.ownership_type.clone(),
                e.industry_code.clone(),
                e.sector.clone(),
                e.key_unit_years
                    .iter()
                    .map(|y| y.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                STATUS_NAMES
                    .iter()
                    .find(|(c, _)| *c == e.status)
                    .map(|(_, n)| n.to_string())
                    .unwrap_or(e.status.clone()),
                e.tags.join(","),
            ]);
        }
        if (n as i64) < PageRequest::MAX_PAGE_SIZE || rows.len() >= 200_000 {
            break;
        }
        page += 1;
    }
    let bytes = tabular::write_xlsx("企业档案", COLUMNS, &rows)?;
    let audit = caller
        .audit("enterprise.export", state.now())
        .details(serde_json::json!({"rows": rows.len()}));
    state.db.audit().record(&audit).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_string()),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"enterprises.xlsx\"; filename*=UTF-8''%E4%BC%81%E4%B8%9A%E6%A1%A3%E6%A1%88.xlsx".to_string()),
        ],
        bytes,
    )
        .into_response())
}

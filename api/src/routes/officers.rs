//! `/api/v1/officers`: the officer registry.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use shouhu_storage::officers::{OfficerFilter, OfficerInput};
use shouhu_storage::PageRequest;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::Caller;
use crate::dto::{OfficerDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody, RowError};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::enterprises::{split_versioned_body, Imported};
use crate::state::AppState;
use crate::tabular::{self, Column};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(export))
        .routes(routes!(get_one, update, delete))
}

pub(crate) fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// Officer list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Substring of name or certificate number, or a phone: its full number or its last four
    /// digits (phones are sealed at rest; other parts of a number find nothing).
    pub q: Option<String>,
    /// Org unit (its subtree).
    pub org_unit_id: Option<String>,
    /// `active` or `inactive`.
    pub status: Option<String>,
    /// Page.
    pub page: Option<i64>,
    /// Page size.
    pub page_size: Option<i64>,
}

/// List officers in scope.
#[utoipa::path(get, path = "/officers", tag = "officers", params(ListQuery), responses((status = 200, body = Page<OfficerDto>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<OfficerDto>>> {
    caller.require(Perm::RegistryRead)?;
    let f = OfficerFilter {
        q: q.q,
        org_unit_id: q.org_unit_id,
        status: q.status,
    };
    let p = state
        .db
        .officers()
        .list(&caller.scope, &f, PageRequest::new(q.page, q.page_size))
        .await?;
    Ok(Json(Page::from(p, OfficerDto::from)))
}

/// One officer.
#[utoipa::path(get, path = "/officers/{id}", tag = "officers", params(("id" = String, Path)), responses((status = 200, body = OfficerDto), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OfficerDto>> {
    caller.require(Perm::RegistryRead)?;
    Ok(Json(
        state.db.officers().get(&caller.scope, &id).await?.into(),
    ))
}

async fn check(state: &AppState, caller: &Caller, i: &OfficerInput) -> ApiResult<()> {
    let errs = i.validate();
    if !errs.is_empty() {
        return Err(ApiError::validation(
            errs.into_iter().map(Into::into).collect(),
        ));
    }
    if state.db.org_units().get(&i.org_unit_id).await.is_err() {
        return Err(crate::routes::auth::field_error(
            "org_unit_id",
            "no such org unit",
        ));
    }
    if !state
        .db
        .org_units()
        .in_scope(&caller.scope, &i.org_unit_id)
        .await?
    {
        return Err(ApiError::out_of_scope("org unit", &i.org_unit_id));
    }
    if let Some(a) = &i.account_id {
        if state.db.accounts().get(a).await.is_err() {
            return Err(crate::routes::auth::field_error(
                "account_id",
                "no such account",
            ));
        }
    }
    Ok(())
}

/// Register an officer.
#[utoipa::path(post, path = "/officers", tag = "officers", request_body = OfficerInput,
    responses((status = 200, body = OfficerDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut i): ApiJson<OfficerInput>,
) -> ApiResult<Json<OfficerDto>> {
    caller.require(Perm::OfficerWrite)?;
    i.normalize();
    check(&state, &caller, &i).await?;
    let ids = state
        .db
        .officers()
        .insert_many(
            std::slice::from_ref(&i),
            &caller.audit("officer.create", state.now()),
            "officer.create",
        )
        .await?;
    refresh_units(&state).await;
    Ok(Json(
        state
            .db
            .officers()
            .get(&caller.scope, &ids[0])
            .await?
            .into(),
    ))
}

/// Update an officer (with the `version` read).
#[utoipa::path(put, path = "/officers/{id}", tag = "officers", params(("id" = String, Path)), request_body = OfficerInput,
    responses((status = 200, body = OfficerDto), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<OfficerDto>> {
    caller.require(Perm::OfficerWrite)?;
    let (version, mut i): (i64, OfficerInput) = split_versioned_body(body)?;
    i.normalize();
    state.db.officers().get(&caller.scope, &id).await?;
    check(&state, &caller, &i).await?;
    let o = state
        .db
        .officers()
        .update(
            &caller.scope,
            &id,
            version,
            &i,
            &caller.audit("officer.update", state.now()),
        )
        .await?;
    refresh_units(&state).await;
    Ok(Json(o.into()))
}

/// Tell the dispatch hub that the officer registry changed (officers are dispatch units).
async fn refresh_units(state: &AppState) {
    if let Err(e) = state.hub.refresh_registry().await {
        tracing::error!(error = %e, "refreshing the dispatch registry failed");
    }
}

/// Delete an officer.
#[utoipa::path(delete, path = "/officers/{id}", tag = "officers", params(("id" = String, Path)), responses((status = 204)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Perm::OfficerWrite)?;
    state
        .db
        .officers()
        .delete(
            &caller.scope,
            &id,
            &caller.audit("officer.delete", state.now()),
        )
        .await?;
    refresh_units(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

const COLUMNS: &[Column] = &[
    Column {
        field: "name",
        header: "姓名",
        required: true,
    },
    Column {
        field: "certificate_no",
        header: "执法证号",
        required: true,
    },
    Column {
        field: "org_unit",
        header: "所属单位",
        required: true,
    },
    Column {
        field: "phone",
        header: "电话",
        required: false,
    },
    Column {
        field: "status",
        header: "状态",
        required: false,
    },
];

/// Import officers from CSV or Excel: all rows or none, with a per-row report. With an
/// `X-Import-Id` header its progress can be polled at `GET /imports/{id}` meanwhile.
#[utoipa::path(post, path = "/officers/import", tag = "officers", request_body(content = Vec<u8>, content_type = "text/csv"),
    responses((status = 200, body = Imported), (status = 422, body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Imported>> {
    caller.require(Perm::OfficerWrite)?;
    let run = state
        .imports
        .begin(&headers, &caller, "officers", state.now())?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let rows = tabular::parse(&body, ct, COLUMNS)?;
    run.checking(rows.len());
    let units = state.db.org_units().list().await?;
    let visible = state.db.org_units().visible_ids(&caller.scope).await?;
    let mut errors = Vec::new();
    let mut inputs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let unit = units.iter().find(|u| {
            u.id == r.get("org_unit") || u.code == r.get("org_unit") || u.name == r.get("org_unit")
        });
        let status = match r.get("status") {
            "" | "在职" | "active" => "active",
            "离职" | "停用" | "inactive" => "inactive",
            other => other,
        };
        let mut i = OfficerInput {
            name: r.get("name").into(),
            certificate_no: r.get("certificate_no").into(),
            org_unit_id: unit.map(|u| u.id.clone()).unwrap_or_default(),
            phone: r.get("phone").into(),
            account_id: None,
            status: status.into(),
        };
        i.normalize();
        match unit {
            None => errors.push(RowError {
                row: Some(r.number),
                field: "org_unit".into(),
                message: format!("no org unit {:?}", r.get("org_unit")),
            }),
            Some(u) if !visible.contains(&u.id) => errors.push(RowError {
                row: Some(r.number),
                field: "org_unit".into(),
                message: "outside your scope".into(),
            }),
            _ => {}
        }
        for e in i.validate() {
            if e.field != "org_unit_id" {
                errors.push(RowError {
                    row: Some(r.number),
                    field: e.field,
                    message: e.message,
                });
            }
        }
        if let Some(first) = seen.insert(i.certificate_no.clone(), r.number) {
            errors.push(RowError {
                row: Some(r.number),
                field: "certificate_no".into(),
                message: format!("same number as row {first}"),
            });
        }
        inputs.push((r.number, i));
    }
    let codes: Vec<String> = inputs
        .iter()
        .map(|(_, i)| i.certificate_no.clone())
        .collect();
    let existing: HashSet<String> = state
        .db
        .officers()
        .existing_certificates(&codes)
        .await?
        .into_iter()
        .collect();
    for (n, i) in &inputs {
        if existing.contains(&i.certificate_no) {
            errors.push(RowError {
                row: Some(*n),
                field: "certificate_no".into(),
                message: "already registered".into(),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        run.reject();
        return Err(tabular::import_rejected(errors));
    }
    let inputs: Vec<OfficerInput> = inputs.into_iter().map(|(_, i)| i).collect();
    run.writing();
    let ids = state
        .db
        .officers()
        .insert_many_reporting(
            &inputs,
            &caller.audit("officer.import", state.now()),
            "officer.import",
            &|n| run.written(n),
        )
        .await?;
    run.finish();
    refresh_units(&state).await;
    Ok(Json(Imported {
        imported: ids.len(),
    }))
}

/// Export officers in scope to Excel.
#[utoipa::path(get, path = "/officers/export.xlsx", tag = "officers", params(ListQuery), responses((status = 200)))]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RegistryExport)?;
    let f = OfficerFilter {
        q: q.q,
        org_unit_id: q.org_unit_id,
        status: q.status,
    };
    let mut rows = Vec::new();
    let mut page = 1;
    loop {
        let p = state
            .db
            .officers()
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
        for o in p.items {
            rows.push(vec![
                o.name,
                o.certificate_no,
                o.org_unit_name,
                o.phone,
                if o.status == "active" {
                    "在职".into()
                } else {
                    "离职".into()
                },
            ]);
        }
        if (n as i64) < PageRequest::MAX_PAGE_SIZE {
            break;
        }
        page += 1;
    }
    let bytes = tabular::write_xlsx("执法人员", COLUMNS, &rows)?;
    state
        .db
        .audit()
        .record(
            &caller
                .audit("officer.export", state.now())
                .details(serde_json::json!({"rows": rows.len()})),
        )
        .await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"officers.xlsx\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

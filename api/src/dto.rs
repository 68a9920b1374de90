#![allow(missing_docs)] // field names are the documentation; see docs/api.
//! The JSON shapes of the API: storage rows with times as RFC 3339 UTC strings.

use serde::Serialize;
use shouhu_storage::{accounts, audit, enterprises, inspection_items, officers, org_units};
use utoipa::ToSchema;

use crate::clock::{rfc3339, rfc3339_opt};

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// Rows.
    pub items: Vec<T>,
    /// Total rows matching.
    pub total: i64,
    /// 1-based page.
    pub page: i64,
    /// Page size.
    pub page_size: i64,
}

impl<T> Page<T> {
    /// Map a storage page.
    pub fn from<S>(p: shouhu_storage::Page<S>, f: impl Fn(S) -> T) -> Self {
        Page {
            items: p.items.into_iter().map(f).collect(),
            total: p.total,
            page: p.page,
            page_size: p.page_size,
        }
    }
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub org_unit_id: String,
    pub org_unit_name: String,
    pub status: String,
    pub must_change_password: bool,
    pub locked_until: Option<String>,
    pub last_login_at: Option<String>,
    pub created_at: String,
}

impl From<accounts::Account> for AccountDto {
    fn from(a: accounts::Account) -> Self {
        Self {
            id: a.id,
            username: a.username,
            display_name: a.display_name,
            role: a.role,
            org_unit_id: a.org_unit_id,
            org_unit_name: a.org_unit_name,
            status: a.status,
            must_change_password: a.must_change_password,
            locked_until: rfc3339_opt(a.locked_until_ms),
            last_login_at: rfc3339_opt(a.last_login_at_ms),
            created_at: rfc3339(a.created_at_ms),
        }
    }
}

/// An account application.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationDto {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub org_unit_id: String,
    pub org_unit_name: String,
    pub reason: String,
    pub status: String,
    pub applicant_username: String,
    pub decided_by_username: Option<String>,
    pub decision_reason: Option<String>,
    pub account_id: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

impl From<accounts::Application> for ApplicationDto {
    fn from(a: accounts::Application) -> Self {
        Self {
            id: a.id,
            username: a.username,
            display_name: a.display_name,
            role: a.role,
            org_unit_id: a.org_unit_id,
            org_unit_name: a.org_unit_name,
            reason: a.reason,
            status: a.status,
            applicant_username: a.applicant_username,
            decided_by_username: a.decided_by_username,
            decision_reason: a.decision_reason,
            account_id: a.account_id,
            created_at: rfc3339(a.created_at_ms),
            decided_at: rfc3339_opt(a.decided_at_ms),
        }
    }
}

/// An org unit.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgUnitDto {
    pub id: String,
    pub parent_id: Option<String>,
    /// `corps`, `brigade`, `squad`, `town`, `soe_group`.
    pub kind: String,
    pub name: String,
    pub code: String,
}

impl From<org_units::OrgUnit> for OrgUnitDto {
    fn from(o: org_units::OrgUnit) -> Self {
        Self {
            id: o.id,
            parent_id: o.parent_id,
            kind: o.kind,
            name: o.name,
            code: o.code,
        }
    }
}

/// An audit row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    pub id: String,
    pub at: String,
    pub account_id: Option<String>,
    pub username: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub outcome: String,
    pub details: serde_json::Value,
}

impl From<audit::AuditRecord> for AuditDto {
    fn from(r: audit::AuditRecord) -> Self {
        Self {
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
            id: r.id,
            at: rfc3339(r.at_ms),
            account_id: r.account_id,
            username: r.username,
            action: r.action,
            target_kind: r.target_kind,
            target_id: r.target_id,
            ip: r.ip,
            outcome: r.outcome,
        }
    }
}

/// An enterprise dossier.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnterpriseDto {
    pub id: String,
    pub name: String,
    pub uscc: String,
    pub district_id: String,
    pub district_name: String,
    pub town_id: Option<String>,
    pub town_name: Option<String>,
    pub soe_group_id: Option<String>,
    pub soe_group_name: Option<String>,
    pub address: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub legal_representative: String,
    pub principal_name: String,
    pub principal_phone: String,
    pub ownership_type: String,
    pub industry_code: String,
    pub sector: String,
    pub key_unit_years: Vec<i32>,
    pub status: String,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl From<enterprises::Enterprise> for EnterpriseDto {
    fn from(e: enterprises::Enterprise) -> Self {
        Self {
            id: e.id,
            name: e.name,
            uscc: e.uscc,
            district_id: e.district_id,
            district_name: e.district_name,
            town_id: e.town_id,
            town_name: e.town_name,
            soe_group_id: e.soe_group_id,
            soe_group_name: e.soe_group_name,
            address: e.address,
            lon: e.lon,
            lat: e.lat,
            legal_representative: e.legal_representative,
            principal_name: e.principal_name,
            principal_phone: e.principal_phone,
            ownership_type: e.ownership_type,
            industry_code: e.industry_code,
            sector: e.sector,
            key_unit_years: e.key_unit_years,
            status: e.status,
            tags: e.tags,
            created_at: rfc3339(e.created_at_ms),
            updated_at: rfc3339(e.updated_at_ms),
            version: e.version,
        }
    }
}

/// An officer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfficerDto {
    pub id: String,
    pub name: String,
    pub certificate_no: String,
    pub org_unit_id: String,
    pub org_unit_name: String,
    pub phone: String,
    pub account_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl From<officers::Officer> for OfficerDto {
    fn from(o: officers::Officer) -> Self {
        Self {
            id: o.id,
            name: o.name,
            certificate_no: o.certificate_no,
            org_unit_id: o.org_unit_id,
            org_unit_name: o.org_unit_name,
            phone: o.phone,
            account_id: o.account_id,
            status: o.status,
            created_at: rfc3339(o.created_at_ms),
            updated_at: rfc3339(o.updated_at_ms),
            version: o.version,
        }
    }
}

/// An inspection item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemDto {
    pub id: String,
    pub code: String,
    pub sector: String,
    pub category: String,
    pub title: String,
    pub legal_basis: String,
    pub source: String,
    pub effective_date: String,
    pub active: bool,
    pub builtin: bool,
    pub version: i64,
    pub updated_at: String,
}

impl From<inspection_items::Item> for ItemDto {
    fn from(i: inspection_items::Item) -> Self {
        Self {
            id: i.id,
            code: i.code,
            sector: i.sector,
            category: i.category,
            title: i.title,
            legal_basis: i.legal_basis,
            source: i.source,
            effective_date: i.effective_date,
            active: i.active,
            builtin: i.builtin,
            version: i.version,
            updated_at: rfc3339(i.updated_at_ms),
        }
    }
}

/// A past version of an item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemVersionDto {
    pub version: i64,
    pub snapshot: serde_json::Value,
    pub changed_by: Option<String>,
    pub changed_at: String,
}

impl From<inspection_items::ItemVersion> for ItemVersionDto {
    fn from(v: inspection_items::ItemVersion) -> Self {
        Self {
            version: v.version,
            snapshot: serde_json::from_str(&v.snapshot).unwrap_or_default(),
            changed_by: v.changed_by,
            changed_at: rfc3339(v.changed_at_ms),
        }
    }
}

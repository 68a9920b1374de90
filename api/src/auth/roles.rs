//! Roles and what they may do. Roles grant actions; the org unit of the account bounds the data
//! (see [`crate::auth::Caller::scope`]).

use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A permission checked by handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Read the registries (enterprises, officers, items) in scope.
    RegistryRead,
    /// Create, edit, import enterprises.
    EnterpriseWrite,
    /// Create, edit, import officers.
    OfficerWrite,
    /// Edit the inspection item list.
    ItemWrite,
    /// Export registries to Excel.
    RegistryExport,
    /// Create and rename org units.
    OrgWrite,
    /// Create, unlock, reset, disable accounts.
    AccountManage,
    /// File account applications for one's unit.
    ApplicationFile,
    /// Approve or reject account applications.
    ApplicationDecide,
    /// Read the audit log.
    AuditRead,
    /// See the live map, units, tracks and SOS alarms in scope.
    DispatchView,
    /// Assign and release units, handle SOS alarms, query terminals.
    DispatchCommand,
    /// Manage vehicles (terminals) and geofences.
    DeviceManage,
    /// Read inspections, hazards and cases in scope (open cases of other units stay hidden).
    EnforcementRead,
    /// Start and record inspections, hazards, rectifications and re-inspections.
    InspectionWrite,
    /// File cases and draft their documents.
    CaseWrite,
    /// Approve case filing, documents and closing.
    CaseApprove,
    /// Acknowledge over-cap filings routed to one's unit.
    FilingAcknowledge,
    /// Edit the inspect-once caps and the deadline table.
    RuleManage,
    /// Dispatch, receive and answer work orders.
    WorkOrderWrite,
    /// Review case files (score them against the rule set, mark exemplary cases).
    CaseReview,
    /// Draft inspection plans, generate proposals, submit them for review.
    PlanWrite,
    /// Approve (publish) or return plans under review.
    PlanApprove,
    /// Find, play and export recordings in scope.
    RecordingView,
    /// Link recordings to inspections, confirm suggestions, set legal holds, start and stop
    /// recording, import camera footage (the ways of adding protection, open to officers).
    RecordingReview,
    /// Remove a recording's protection: release a legal hold, unlink it from an inspection,
    /// dismiss a suggested link. Reviewers and case handlers only (never officers), and never
    /// the officer the recording films, whatever the role (checked by the handler).
    RecordingProtectionRemove,
}

impl Perm {
    /// Every permission.
    pub const ALL: [Perm; 26] = [
        Perm::RegistryRead,
        Perm::EnterpriseWrite,
        Perm::OfficerWrite,
        Perm::ItemWrite,
        Perm::RegistryExport,
        Perm::OrgWrite,
        Perm::AccountManage,
        Perm::ApplicationFile,
        Perm::ApplicationDecide,
        Perm::AuditRead,
        Perm::DispatchView,
        Perm::DispatchCommand,
        Perm::DeviceManage,
        Perm::EnforcementRead,
        Perm::InspectionWrite,
        Perm::CaseWrite,
        Perm::CaseApprove,
        Perm::FilingAcknowledge,
        Perm::RuleManage,
        Perm::WorkOrderWrite,
        Perm::CaseReview,
        Perm::PlanWrite,
        Perm::PlanApprove,
        Perm::RecordingView,
        Perm::RecordingReview,
        Perm::RecordingProtectionRemove,
    ];

    /// The code the API reports (`/auth/me` `permissions`).
    pub fn code(self) -> &'static str {
        match self {
            Perm::RegistryRead => "registry.read",
            Perm::EnterpriseWrite => "enterprise.write",
            Perm::OfficerWrite => "officer.write",
            Perm::ItemWrite => "item.write",
            Perm::RegistryExport => "registry.export",
            Perm::OrgWrite => "org.write",
            Perm::AccountManage => "account.manage",
            Perm::ApplicationFile => "application.file",
            Perm::ApplicationDecide => "application.decide",
            Perm::AuditRead => "audit.read",
            Perm::DispatchView => "dispatch.view",
            Perm::DispatchCommand => "dispatch.command",
            Perm::DeviceManage => "device.manage",
            Perm::EnforcementRead => "enforcement.read",
            Perm::InspectionWrite => "inspection.write",
            Perm::CaseWrite => "case.write",
            Perm::CaseApprove => "case.approve",
            Perm::FilingAcknowledge => "filing.acknowledge",
            Perm::RuleManage => "rule.manage",
            Perm::WorkOrderWrite => "work_order.write",
            Perm::CaseReview => "case.review",
            Perm::PlanWrite => "plan.write",
            Perm::PlanApprove => "plan.approve",
            Perm::RecordingView => "recording.view",
            Perm::RecordingReview => "recording.review",
            Perm::RecordingProtectionRemove => "recording.protection_remove",
        }
    }
}

/// The permission codes `role` holds.
pub fn permissions(role: &str) -> Vec<&'static str> {
    Perm::ALL
        .iter()
        .filter(|p| grants(role, **p))
        .map(|p| p.code())
        .collect()
}

/// Role codes with their Chinese names.
pub const ROLES: &[(&str, &str)] = &[
    ("admin", "系统管理员"),
    ("corps_leader", "总队领导"),
    ("operator", "指挥调度员"),
    ("reviewer", "视频审核员"),
    ("brigade_head", "区大队负责人"),
    ("squad_leader", "区执法组负责人"),
    ("statistician", "区数据统计人员"),
    ("clerk", "区工单维护人员"),
    ("officer", "执法人员"),
    ("soe_user", "国有集团用户"),
];

/// Whether `code` is a role.
pub fn is_role(code: &str) -> bool {
    ROLES.iter().any(|(c, _)| *c == code)
}

/// A role as listed by the API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleInfo {
    /// Code.
    pub code: &'static str,
    /// Chinese name.
    pub name: &'static str,
}

/// Whether `role` grants `perm`.
pub fn grants(role: &str, perm: Perm) -> bool {
    use Perm::*;
    match perm {
        RegistryRead => is_role(role),
        EnterpriseWrite => matches!(
            role,
            "admin" | "corps_leader" | "brigade_head" | "squad_leader"
        ),
        OfficerWrite => matches!(role, "admin" | "corps_leader" | "brigade_head"),
        ItemWrite => matches!(role, "admin" | "corps_leader"),
        RegistryExport => matches!(
            role,
            "admin" | "corps_leader" | "brigade_head" | "squad_leader" | "statistician"
        ),
        OrgWrite => role == "admin",
        AccountManage => role == "admin",
        ApplicationFile => matches!(role, "admin" | "brigade_head"),
        ApplicationDecide => matches!(role, "admin" | "corps_leader"),
        AuditRead => role == "admin",
        DispatchView => matches!(
            role,
            "admin" | "corps_leader" | "operator" | "brigade_head" | "squad_leader"
        ),
        DispatchCommand => matches!(role, "admin" | "operator" | "brigade_head" | "squad_leader"),
        DeviceManage => matches!(role, "admin" | "brigade_head"),
        EnforcementRead => is_role(role) && role != "soe_user",
        InspectionWrite => matches!(
            role,
            "admin" | "corps_leader" | "brigade_head" | "squad_leader" | "officer"
        ),
        CaseWrite => matches!(role, "admin" | "brigade_head" | "squad_leader" | "officer"),
        CaseApprove | FilingAcknowledge => {
            matches!(role, "admin" | "corps_leader" | "brigade_head")
        }
        RuleManage => matches!(role, "admin" | "corps_leader"),
        CaseReview => matches!(role, "admin" | "corps_leader"),
        PlanWrite => matches!(
            role,
            "admin" | "corps_leader" | "brigade_head" | "squad_leader"
        ),
        PlanApprove => matches!(role, "admin" | "corps_leader" | "brigade_head"),
        RecordingView => matches!(
            role,
            "admin"
                | "corps_leader"
                | "operator"
                | "reviewer"
                | "brigade_head"
                | "squad_leader"
                | "officer"
        ),
        RecordingReview => matches!(
            role,
            "admin" | "reviewer" | "brigade_head" | "squad_leader" | "officer"
        ),
        RecordingProtectionRemove => {
            matches!(role, "admin" | "reviewer" | "brigade_head" | "squad_leader")
        }
        WorkOrderWrite => matches!(
            role,
            "admin" | "corps_leader" | "brigade_head" | "squad_leader" | "clerk"
        ),
    }
}

/// The message of a corps-wide setting refused to a district account.
pub const CORPS_ONLY: &str = "corps-wide settings are for corps accounts";

/// Corps-wide settings (the inspection item list, the inspect-once caps, the deadline table,
/// the case-review rules, a new root org unit) are for corps accounts, whatever the role: any
/// other account gets 403 [`CORPS_ONLY`], and the attempt is audited as `denied` (`action`,
/// on `target` = (kind, id) when there is one). Check the role first ([`Caller::require`]).
pub async fn require_corps(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: Option<(&str, &str)>,
) -> Result<(), ApiError> {
    if caller.at_corps() {
        return Ok(());
    }
    let mut entry = caller
        .audit(action, state.clock.now_ms())
        .outcome(shouhu_storage::audit::Outcome::Denied)
        .details(serde_json::json!({"reason": CORPS_ONLY}));
    if let Some((kind, id)) = target {
        entry = entry.target(kind, id);
    }
    if let Err(e) = state.db.audit().record(&entry).await {
        tracing::error!(error = %e, "could not write audit row");
    }
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "corps_only",
        CORPS_ONLY,
    ))
}

/// Roles a district may apply for (command-centre and corps roles are the corps's own).
pub fn applicable_by_district(role: &str) -> bool {
    matches!(
        role,
        "brigade_head" | "squad_leader" | "statistician" | "clerk" | "officer" | "soe_user"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_and_only_admin_audits() {
        for (r, _) in ROLES {
            assert!(grants(r, Perm::RegistryRead));
            assert_eq!(grants(r, Perm::AuditRead), *r == "admin");
        }
        assert!(!grants("nobody", Perm::RegistryRead));
        assert!(!grants("officer", Perm::EnterpriseWrite));
    }

    #[test]
    fn officers_add_protection_but_never_remove_it() {
        assert!(grants("officer", Perm::RecordingReview));
        assert!(!grants("officer", Perm::RecordingProtectionRemove));
        for r in ["admin", "reviewer", "brigade_head", "squad_leader"] {
            assert!(grants(r, Perm::RecordingProtectionRemove), "{r}");
        }
        for (r, _) in ROLES {
            // Whoever may remove protection may also see and add it.
            if grants(r, Perm::RecordingProtectionRemove) {
                assert!(grants(r, Perm::RecordingReview) && grants(r, Perm::RecordingView));
            }
        }
    }
}

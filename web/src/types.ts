// Shapes of the /api/v1 JSON contract used by the office pages.

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}

export type RoleCode =
  | 'admin'
  | 'corps_leader'
  | 'operator'
  | 'reviewer'
  | 'brigade_head'
  | 'squad_leader'
  | 'statistician'
  | 'clerk'
  | 'officer'
  | 'soe_user';

export interface Account {
  id: string;
  username: string;
  display_name: string;
  role: RoleCode | string;
  org_unit_id: string;
  org_unit_name: string;
  status: 'active' | 'disabled';
  must_change_password: boolean;
  locked_until: string | null;
  last_login_at: string | null;
  created_at: string;
}

/** Permission codes of `GET /auth/me` (`permissions`). */
export type Permission =
  | 'registry.read'
  | 'enterprise.write'
  | 'officer.write'
  | 'item.write'
  | 'registry.export'
  | 'org.write'
  | 'account.manage'
  | 'application.file'
  | 'application.decide'
  | 'audit.read'
  | 'dispatch.view'
  | 'dispatch.command'
  | 'enforcement.read'
  | 'inspection.write'
  | 'case.write'
  | 'case.approve'
  | 'filing.acknowledge'
  | 'rule.manage'
  | 'work_order.write'
  | 'plan.write'
  | 'plan.approve'
  | 'case.review'
  | 'recording.view'
  | 'recording.review'
  | 'recording.protection_remove'
  | 'device.manage';

/** `GET /vehicles/rebinds`: a bound terminal's refused re-registration, or a release. */
export interface PendingRebind {
  vehicle_id: string;
  plate: string;
  org_unit_id: string;
  terminal_phone: string | null;
  terminal_id: string | null;
  registered_at_ms: number | null;
  attempt_at_ms: number | null;
  attempt_addr: string | null;
  attempt_terminal_id: string | null;
  attempt_model: string | null;
  attempt_manufacturer: string | null;
  attempts: number;
  released_until_ms: number | null;
  /** The attempt the release lets through (its terminal id and source IP). */
  released_for: { terminal_id: string; source_ip: string } | null;
  /** Refused registrations by terminal id and source IP, latest first. */
  recent_attempts: RegisterAttempt[];
}

/** One (terminal id, source IP) that tried to register a bound vehicle's terminal. */
export interface RegisterAttempt {
  id: string;
  terminal_id: string;
  source_ip: string;
  addr: string | null;
  model: string | null;
  manufacturer: string | null;
  first_at_ms: number;
  last_at_ms: number;
  count: number;
}

/** `GET /auth/me`: the account plus what its role may do. Older servers omit the extras. */
export interface Me extends Account {
  permissions?: string[];
  /** The account's unit is the corps (sees every district). */
  corps_level?: boolean;
}

export interface LoginResponse {
  token: string;
  account: Account;
  idle_timeout_secs?: number | null;
}

export type OrgKind = 'corps' | 'brigade' | 'squad' | 'town' | 'soe_group';

export interface OrgUnit {
  id: string;
  parent_id: string | null;
  kind: OrgKind;
  name: string;
  code: string;
}

export interface Role {
  code: string;
  name: string;
}

export interface CodeName {
  code: string;
  name: string;
}

export interface Application {
  id: string;
  username: string;
  display_name: string;
  role: string;
  org_unit_id: string;
  org_unit_name: string;
  reason: string;
  status: 'pending' | 'approved' | 'rejected';
  applicant_username: string;
  decided_by_username: string | null;
  decision_reason: string | null;
  created_at: string;
  decided_at: string | null;
}

export interface ApproveResponse {
  application: Application;
  account: Account;
  temporary_password: string;
}

export interface AuditEntry {
  id: string;
  at: string;
  username: string | null;
  action: string;
  target_kind: string | null;
  target_id: string | null;
  ip: string | null;
  outcome: string;
  details: unknown;
}

export type EnterpriseStatus = 'operating' | 'suspended' | 'closed';

export interface Enterprise {
  id: string;
  name: string;
  uscc: string;
  district_id: string | null;
  district_name: string | null;
  town_id: string | null;
  town_name: string | null;
  soe_group_id: string | null;
  soe_group_name: string | null;
  address: string | null;
  lon: number | null;
  lat: number | null;
  legal_representative: string | null;
  principal_name: string | null;
  principal_phone: string | null;
  ownership_type: string | null;
  industry_code: string | null;
  sector: string | null;
  key_unit_years: number[];
  status: EnterpriseStatus;
  tags: string[];
  created_at: string;
  updated_at: string;
  version: number;
}

export type EnterpriseInput = Omit<
  Enterprise,
  'id' | 'district_name' | 'town_name' | 'soe_group_name' | 'created_at' | 'updated_at' | 'version'
> & { version?: number };

export interface Officer {
  id: string;
  name: string;
  certificate_no: string;
  org_unit_id: string;
  org_unit_name: string;
  phone: string | null;
  account_id: string | null;
  status: 'active' | 'inactive';
  created_at: string;
  updated_at: string;
  version: number;
}

export interface InspectionItem {
  id: string;
  code: string;
  sector: string;
  category: string;
  title: string;
  legal_basis: string;
  source: string | null;
  effective_date: string | null;
  active: boolean;
  version: number;
  updated_at: string;
}

export interface ItemHistory {
  version: number;
  snapshot: unknown;
  changed_by: string;
  changed_at: string;
}

export interface ImportRowError {
  row: number;
  field: string;
  message: string;
}

// ---- Daily enforcement work -------------------------------------------------------------------

export interface OfficerRef {
  id: string;
  name: string;
  certificate_no: string;
}

export interface Inspection {
  id: string;
  code: string;
  org_unit_id: string;
  org_unit_name: string;
  enterprise_id: string;
  enterprise_name: string;
  kind: string;
  status: string;
  year: number;
  started_at: string;
  completed_at: string | null;
  record_number: string | null;
  summary: string;
  cancel_reason: string | null;
  over_cap: boolean;
  officers: OfficerRef[];
  hazard_count: number;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface ItemResult {
  item_id: string;
  item_code: string;
  item_title: string;
  result: string;
  note: string;
  photo_keys: string[];
}

export interface OverCapFiling {
  id: string;
  inspection_id: string;
  inspection_code: string;
  enterprise_id: string;
  enterprise_name: string;
  supervising_unit_id: string;
  reason: string;
  visits_before: number;
  yearly_cap: number;
  status: string;
  filed_at: string;
  acknowledged_at: string | null;
}

export interface Hazard {
  id: string;
  inspection_id: string;
  inspection_code: string;
  enterprise_id: string;
  enterprise_name: string;
  org_unit_id: string;
  item_id: string | null;
  item_title: string | null;
  level: string;
  description: string;
  status: string;
  order_number: string;
  found_at: string;
  rectification_deadline: string;
  reinspection_due: string;
  rectification_note: string | null;
  rectified_at: string | null;
  reinspection_result: string | null;
  reinspection_note: string | null;
  reinspection_number: string | null;
  reinspected_at: string | null;
  closed_at: string | null;
  evidence_keys: string[];
  overdue: boolean;
  version: number;
}

export interface InspectionDetail extends Inspection {
  results: ItemResult[];
  hazards: Hazard[];
  over_cap_filing: OverCapFiling | null;
}

export interface CaseSummary {
  id: string;
  number: string | null;
  org_unit_id: string;
  enterprise_id: string;
  enterprise_name: string;
  title: string;
  status: string;
  filed_at: string;
  decision_due: string | null;
  decided_at: string | null;
  closed_at: string | null;
  version: number;
}

export interface CaseDocument {
  id: string;
  case_id: string;
  doc_type: string;
  number: string;
  title: string;
  content: string;
  status: string;
  created_at: string;
  approved_at: string | null;
}

export interface CaseDetail extends CaseSummary {
  org_unit_name: string;
  violation: string;
  responsible_person: string;
  party_id_number: string;
  party_phone: string;
  proposed_fine_cents: number | null;
  company_fine_cents: number | null;
  person_fine_cents: number | null;
  decision_number: string | null;
  payment_due: string | null;
  paid_cents: number | null;
  paid_at: string | null;
  criminal_referral: boolean;
  referral_note: string | null;
  filing_decided_at: string | null;
  decision_reason: string | null;
  inspection_ids: string[];
  documents: CaseDocument[];
}

export interface DocType {
  code: string;
  name: string;
  abbr: string;
}

export interface HazardCounts {
  total: number;
  open: number;
  overdue: number;
  closed: number;
  major: number;
}

export interface Workbench {
  hazard_counts: HazardCounts;
  hazards_due: Hazard[];
  inspections_in_progress: Inspection[];
  cases_awaiting_approval: CaseSummary[];
  open_cases: CaseSummary[];
  filings_pending: OverCapFiling[];
  cases_missing_file: CaseSummary[];
  planned_visits_open?: { id: string; plan_id: string; enterprise_id: string; enterprise_name: string; reason: string; note: string; inspection_code: string | null }[];
  plans_awaiting_review?: { id: string; title: string; unit_name: string; period: string }[];
}

// ---- Recordings (录像) --------------------------------------------------------------------------

/** `GET /recordings` item. Times are UTC ms. */
export interface Recording {
  id: string;
  device_id: string;
  channel_id: string;
  officer_id: string | null;
  officer_name: string | null;
  org_unit_id: string;
  /** `live`, `upload`, `device`. */
  source: string;
  /** `always`, `on_demand`, `dispatch_call`, `import`. */
  trigger_kind: string;
  /** `recording` or `closed`. */
  status: string;
  started_at_ms: number;
  ended_at_ms: number | null;
  video_codec: string | null;
  audio_codec: string | null;
  segment_count: number;
  bytes: number;
  chain_link: string;
  head_signature: string | null;
  held: boolean;
  hold_reason: string | null;
  created_by: string | null;
  created_at_ms: number;
}

export interface RecordingSegment {
  recording_id: string;
  seq: number;
  start_90k: number;
  end_90k: number;
  start_ms: number;
  end_ms: number;
  bytes: number;
  video_codec: string | null;
  audio_codec: string | null;
  sha256: string;
  sm3: string;
  link: string;
}

export interface RecordingLink {
  recording_id: string;
  inspection_id: string;
  inspection_code: string;
  enterprise_id: string;
  enterprise_name: string;
  /** `linked`, `suggested`, `dismissed`. */
  state: string;
  created_by: string | null;
  created_at_ms: number;
  updated_at_ms: number;
}

/** `GET /recordings/{id}`. */
export interface RecordingDetail extends Recording {
  segments: RecordingSegment[];
  links: RecordingLink[];
  retention_days: number;
  /** None while recording. */
  expires_at_ms: number | null;
}

/** `GET /recordings/status`. */
export interface RecordingStatus {
  active: { device_id: string; channel_id: string; recording_id: string | null; triggers: string[] }[];
  free_percent: number | null;
  low_disk: boolean;
}

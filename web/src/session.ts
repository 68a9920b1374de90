// The logged-in account and reference data shared across pages.

import { get } from './api';
import { DEFAULT_SECTORS, ROLE_NAMES } from './format';
import type { CodeName, Me, OrgUnit, Permission, Role } from './types';

export const session: { account: Me | null } = { account: null };

export function role(): string {
  return session.account?.role ?? '';
}

export function hasRole(...roles: string[]): boolean {
  return roles.includes(role());
}

/**
 * What each role may do, as the server grants it (api/src/auth/roles.rs). Used only when
 * `/auth/me` does not report `permissions` (an older server); the server checks again anyway.
 */
const ROLE_PERMISSIONS: Record<string, Permission[]> = (() => {
  const all = ['admin', 'corps_leader', 'operator', 'reviewer', 'brigade_head', 'squad_leader', 'statistician', 'clerk', 'officer', 'soe_user'];
  const grants: Record<Permission, string[]> = {
    'registry.read': all,
    'enterprise.write': ['admin', 'corps_leader', 'brigade_head', 'squad_leader'],
    'officer.write': ['admin', 'corps_leader', 'brigade_head'],
    'item.write': ['admin', 'corps_leader'],
    'registry.export': ['admin', 'corps_leader', 'brigade_head', 'squad_leader', 'statistician'],
    'org.write': ['admin'],
    'account.manage': ['admin'],
    'application.file': ['admin', 'brigade_head'],
    'application.decide': ['admin', 'corps_leader'],
    'audit.read': ['admin'],
    'dispatch.view': ['admin', 'corps_leader', 'operator', 'brigade_head', 'squad_leader'],
    'dispatch.command': ['admin', 'operator', 'brigade_head', 'squad_leader'],
    'enforcement.read': all.filter((r) => r !== 'soe_user'),
    'inspection.write': ['admin', 'corps_leader', 'brigade_head', 'squad_leader', 'officer'],
    'case.write': ['admin', 'brigade_head', 'squad_leader', 'officer'],
    'case.approve': ['admin', 'corps_leader', 'brigade_head'],
    'filing.acknowledge': ['admin', 'corps_leader', 'brigade_head'],
    'rule.manage': ['admin', 'corps_leader'],
    'case.review': ['admin', 'corps_leader'],
    'work_order.write': ['admin', 'corps_leader', 'brigade_head', 'squad_leader', 'clerk'],
    'plan.write': ['admin', 'corps_leader', 'brigade_head', 'squad_leader'],
    'plan.approve': ['admin', 'corps_leader', 'brigade_head'],
    'recording.view': ['admin', 'corps_leader', 'operator', 'reviewer', 'brigade_head', 'squad_leader', 'officer'],
    'recording.review': ['admin', 'reviewer', 'brigade_head', 'squad_leader', 'officer'],
    'recording.protection_remove': ['admin', 'reviewer', 'brigade_head', 'squad_leader'],
    'device.manage': ['admin', 'brigade_head'],
  };
  const out: Record<string, Permission[]> = {};
  for (const r of all) out[r] = (Object.keys(grants) as Permission[]).filter((p) => grants[p].includes(r));
  return out;
})();

/** Roles whose accounts sit at the corps (fallback for `corps_level`). */
const CORPS_ROLES = ['admin', 'corps_leader', 'operator', 'reviewer'];

/** Whether `acc` holds `perm` (from `/auth/me` `permissions`, else by role). */
export function hasPermission(acc: Me | null | undefined, perm: Permission): boolean {
  if (!acc) return false;
  if (Array.isArray(acc.permissions)) return acc.permissions.includes(perm);
  return (ROLE_PERMISSIONS[acc.role] ?? []).includes(perm);
}

/** Whether the logged-in account holds every one of `perms`. */
export function can(...perms: Permission[]): boolean {
  return perms.every((p) => hasPermission(session.account, p));
}

/** Whether the logged-in account is at the corps level. */
export function corpsLevel(): boolean {
  const acc = session.account;
  if (!acc) return false;
  return typeof acc.corps_level === 'boolean' ? acc.corps_level : CORPS_ROLES.includes(acc.role);
}

let rolesCache: Promise<Role[]> | null = null;
let orgCache: Promise<OrgUnit[]> | null = null;
let sectorsCache: Promise<CodeName[]> | null = null;
let ownershipCache: Promise<string[]> | null = null;
let industryCache: Promise<CodeName[]> | null = null;

const roleNames: Record<string, string> = { ...ROLE_NAMES };

export function roleName(code: string | null | undefined): string {
  if (!code) return '—';
  return roleNames[code] ?? code;
}

export function loadRoles(): Promise<Role[]> {
  rolesCache ??= get<Role[]>('/roles')
    .then((rs) => {
      for (const r of rs) roleNames[r.code] = r.name;
      return rs;
    })
    .catch((e) => {
      rolesCache = null;
      throw e;
    });
  return rolesCache;
}

/** Roles for selects: the server list, or the built-in names when /roles fails. */
export async function roleOptions(): Promise<Role[]> {
  try {
    return await loadRoles();
  } catch {
    return Object.entries(ROLE_NAMES).map(([code, name]) => ({ code, name }));
  }
}

export function loadOrgUnits(force = false): Promise<OrgUnit[]> {
  if (force) orgCache = null;
  orgCache ??= get<OrgUnit[]>('/org-units').catch((e) => {
    orgCache = null;
    throw e;
  });
  return orgCache;
}

/** Org units, or [] when the caller may not list them. */
export async function orgUnitsOrEmpty(): Promise<OrgUnit[]> {
  try {
    return await loadOrgUnits();
  } catch {
    return [];
  }
}

export async function loadSectors(): Promise<CodeName[]> {
  sectorsCache ??= get<CodeName[]>('/reference/sectors').catch(() => {
    sectorsCache = null;
    return DEFAULT_SECTORS;
  });
  return sectorsCache;
}

export async function loadOwnershipTypes(): Promise<string[]> {
  ownershipCache ??= get<string[]>('/reference/ownership-types').catch(() => {
    ownershipCache = null;
    return ['国有集体', '联营', '私营', '有限责任', '股份有限', '股份合作', '港澳台', '外商投资', '分公司', '其他'];
  });
  return ownershipCache;
}

export async function loadIndustryCodes(): Promise<CodeName[]> {
  industryCache ??= get<CodeName[]>('/reference/industry-codes').catch(() => {
    industryCache = null;
    return [];
  });
  return industryCache;
}

export function clearCaches(): void {
  rolesCache = orgCache = sectorsCache = ownershipCache = industryCache = null;
}

export function sectorName(sectors: CodeName[], code: string | null | undefined): string {
  if (!code) return '—';
  if (code === '*') return '全部行业';
  return sectors.find((s) => s.code === code)?.name ?? code;
}

/** Indented labels for org-unit selects ("　　某大队"), in tree order. */
export function orgOptions(units: OrgUnit[], filter?: (u: OrgUnit) => boolean): { value: string; label: string }[] {
  const byParent = new Map<string | null, OrgUnit[]>();
  const ids = new Set(units.map((u) => u.id));
  for (const u of units) {
    const p = u.parent_id && ids.has(u.parent_id) ? u.parent_id : null;
    const list = byParent.get(p) ?? [];
    list.push(u);
    byParent.set(p, list);
  }
  const out: { value: string; label: string }[] = [];
  const walk = (parent: string | null, depth: number) => {
    const kids = (byParent.get(parent) ?? []).slice().sort((a, b) => a.code.localeCompare(b.code));
    for (const u of kids) {
      if (!filter || filter(u)) out.push({ value: u.id, label: `${'\u3000'.repeat(depth)}${u.name}` });
      walk(u.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

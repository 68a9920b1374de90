// Menu entries and who sees them: the role list, and (when given) a permission the entry needs to
// read its data (any one of `perms`).

import { hasPermission } from './session';
import type { Me, Permission } from './types';

export const ALL_ROLES = [
  'admin',
  'corps_leader',
  'operator',
  'reviewer',
  'brigade_head',
  'squad_leader',
  'statistician',
  'clerk',
  'officer',
  'soe_user',
];

export interface NavItem {
  id: string;
  path: string;
  label: string;
  icon: string;
  roles: string[];
  /** Read permission(s) of the page; any one suffices. */
  perms?: Permission[];
}

const ENFORCEMENT_ROLES = ALL_ROLES.filter((r) => r !== 'soe_user');

export const NAV: NavItem[] = [
  { id: 'workbench', path: '/workbench', label: '工作台', icon: '台', roles: ['brigade_head', 'squad_leader', 'officer'], perms: ['enforcement.read'] },
  { id: 'enterprises', path: '/enterprises', label: '企业档案', icon: '企', roles: ALL_ROLES, perms: ['registry.read'] },
  {
    id: 'officers',
    path: '/officers',
    label: '执法人员',
    icon: '员',
    roles: ALL_ROLES.filter((r) => r !== 'soe_user'),
    perms: ['registry.read'],
  },
  // Not first: the landing page (first allowed entry) stays 企业档案.
  { id: 'dispatch', path: '/dispatch', label: '调度指挥', icon: '调', roles: ALL_ROLES, perms: ['dispatch.view'] },
  { id: 'plans', path: '/plans', label: '执法计划', icon: '计', roles: ENFORCEMENT_ROLES, perms: ['enforcement.read'] },
  { id: 'inspections', path: '/inspections', label: '现场检查', icon: '检', roles: ENFORCEMENT_ROLES, perms: ['enforcement.read'] },
  { id: 'hazards', path: '/hazards', label: '隐患整改', icon: '患', roles: ENFORCEMENT_ROLES, perms: ['enforcement.read'] },
  { id: 'cases', path: '/cases', label: '案件办理', icon: '案', roles: ENFORCEMENT_ROLES, perms: ['enforcement.read'] },
  {
    id: 'recordings',
    path: '/recordings',
    label: '录像管理',
    icon: '像',
    roles: ['admin', 'corps_leader', 'operator', 'reviewer', 'brigade_head', 'squad_leader', 'officer'],
    perms: ['recording.view'],
  },
  { id: 'work-orders', path: '/work-orders', label: '工单', icon: '工', roles: ENFORCEMENT_ROLES, perms: ['enforcement.read'] },
  { id: 'inspection-items', path: '/inspection-items', label: '检查事项清单', icon: '单', roles: ALL_ROLES, perms: ['registry.read'] },
  { id: 'org-units', path: '/org-units', label: '组织架构', icon: '组', roles: ['admin', 'corps_leader'] },
  { id: 'accounts', path: '/accounts', label: '账号管理', icon: '账', roles: ['admin'], perms: ['account.manage'] },
  {
    id: 'applications',
    path: '/applications',
    label: '账号申请',
    icon: '申',
    roles: ['admin', 'corps_leader', 'brigade_head'],
    perms: ['application.file', 'application.decide'],
  },
  {
    id: 'terminal-rebinds',
    path: '/terminal-rebinds',
    label: '终端绑定',
    icon: '终',
    roles: ['admin', 'brigade_head'],
    perms: ['device.manage'],
  },
  { id: 'audit', path: '/audit', label: '审计日志', icon: '审', roles: ['admin'], perms: ['audit.read'] },
];

/** Whether `acc` may open the menu entry `n`. */
export function navAllowed(n: NavItem, acc: Me | null | undefined): boolean {
  if (!acc || !n.roles.includes(acc.role)) return false;
  return !n.perms || n.perms.some((p) => hasPermission(acc, p));
}

export function navFor(acc: Me | null | undefined): NavItem[] {
  return NAV.filter((n) => navAllowed(n, acc));
}

/** The nav entry a path belongs to ("/enterprises/123" → enterprises). */
export function navOf(path: string): NavItem | undefined {
  return NAV.find((n) => path === n.path || path.startsWith(`${n.path}/`));
}

export function homePath(acc: Me | null | undefined): string {
  return navFor(acc)[0]?.path ?? '/enterprises';
}

// Menu entries and which roles see them.

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
}

export const NAV: NavItem[] = [
  { id: 'enterprises', path: '/enterprises', label: '企业档案', icon: '企', roles: ALL_ROLES },
  { id: 'officers', path: '/officers', label: '执法人员', icon: '员', roles: ALL_ROLES.filter((r) => r !== 'soe_user') },
  { id: 'inspection-items', path: '/inspection-items', label: '检查事项清单', icon: '单', roles: ALL_ROLES },
  { id: 'org-units', path: '/org-units', label: '组织架构', icon: '组', roles: ['admin', 'corps_leader'] },
  { id: 'accounts', path: '/accounts', label: '账号管理', icon: '账', roles: ['admin'] },
  { id: 'applications', path: '/applications', label: '账号申请', icon: '申', roles: ['admin', 'corps_leader', 'brigade_head'] },
  { id: 'audit', path: '/audit', label: '审计日志', icon: '审', roles: ['admin'] },
];

export function navFor(role: string): NavItem[] {
  return NAV.filter((n) => n.roles.includes(role));
}

/** The nav entry a path belongs to ("/enterprises/123" → enterprises). */
export function navOf(path: string): NavItem | undefined {
  return NAV.find((n) => path === n.path || path.startsWith(`${n.path}/`));
}

export function homePath(role: string): string {
  return navFor(role)[0]?.path ?? '/enterprises';
}

// Entry point: session probe, route guards, hash routing.

import './styles.css';
import { ApiError, api, setAuthHandlers } from './api';
import { h, mount } from './dom';
import { buildShell, forbidden, type Shell } from './layout';
import { errorText } from './i18n';
import { homePath, navAllowed, navOf } from './nav';
import { currentLocation, hrefFor, match, navigate, type Cleanup, type Route } from './router';
import { can, clearCaches, loadRoles, session } from './session';
import type { Me, Permission } from './types';
import { clearToasts } from './ui/toast';
import { renderLogin } from './pages/login';
import { renderChangePassword } from './pages/change-password';
import { renderEnterpriseList } from './pages/enterprises';
import { renderEnterpriseDetail } from './pages/enterprise-detail';
import { renderOfficerList, renderOfficerDetail } from './pages/officers';
import { renderInspectionItems } from './pages/inspection-items';
import { renderOrgUnits } from './pages/org-units';
import { renderAccounts } from './pages/accounts';
import { renderApplications } from './pages/applications';
import { renderAudit } from './pages/audit';
import { renderTerminalRebinds } from './pages/terminal-rebinds';
import { renderDispatch } from './pages/dispatch';
import { renderWorkbench } from './pages/workbench';
import { renderInspectionDetail, renderInspectionList, renderInspectionNew } from './pages/inspections';
import { renderHazardDetail, renderHazardList } from './pages/hazards';
import { renderCaseDetail, renderCaseList, renderCaseNew } from './pages/cases';
import { renderPlanDetail, renderPlanList } from './pages/plans';
import { renderWorkOrderDetail, renderWorkOrderList, renderWorkOrderNew } from './pages/work-orders';
import { renderRecordingDetail, renderRecordingList } from './pages/recordings';

const app = document.getElementById('app')!;

/** A route only accounts holding `perm` may open (others see 无权访问). */
function needs(perm: Permission, render: Route['render']): Route['render'] {
  return (outlet, ctx) => {
    if (!can(perm)) {
      forbidden(outlet);
      return;
    }
    return render(outlet, ctx);
  };
}

const routes: Route[] = [
  { pattern: '/enterprises', render: renderEnterpriseList },
  { pattern: '/enterprises/new', render: needs('enterprise.write', (o, c) => renderEnterpriseDetail(o, { ...c, params: {} })) },
  { pattern: '/enterprises/:id', render: renderEnterpriseDetail },
  { pattern: '/officers', render: renderOfficerList },
  { pattern: '/officers/new', render: needs('officer.write', (o, c) => renderOfficerDetail(o, { ...c, params: {} })) },
  { pattern: '/officers/:id', render: renderOfficerDetail },
  { pattern: '/inspection-items', render: renderInspectionItems },
  { pattern: '/org-units', render: renderOrgUnits },
  { pattern: '/accounts', render: renderAccounts },
  { pattern: '/applications', render: renderApplications },
  { pattern: '/audit', render: renderAudit },
  { pattern: '/terminal-rebinds', render: renderTerminalRebinds },
  { pattern: '/workbench', render: needs('enforcement.read', (o) => renderWorkbench(o)) },
  { pattern: '/inspections', render: needs('enforcement.read', renderInspectionList) },
  { pattern: '/inspections/new', render: needs('inspection.write', (o) => renderInspectionNew(o)) },
  { pattern: '/inspections/:id', render: needs('enforcement.read', renderInspectionDetail) },
  { pattern: '/hazards', render: needs('enforcement.read', renderHazardList) },
  { pattern: '/hazards/:id', render: needs('enforcement.read', renderHazardDetail) },
  { pattern: '/cases', render: needs('enforcement.read', renderCaseList) },
  { pattern: '/cases/new', render: needs('case.write', renderCaseNew) },
  { pattern: '/cases/:id', render: needs('enforcement.read', renderCaseDetail) },
  { pattern: '/plans', render: needs('enforcement.read', renderPlanList) },
  { pattern: '/plans/:id', render: needs('enforcement.read', renderPlanDetail) },
  { pattern: '/work-orders', render: needs('enforcement.read', renderWorkOrderList) },
  { pattern: '/work-orders/new', render: needs('work_order.write', (o) => renderWorkOrderNew(o)) },
  { pattern: '/work-orders/:id', render: needs('enforcement.read', renderWorkOrderDetail) },
  { pattern: '/dispatch', render: needs('dispatch.view', (o) => renderDispatch(o)) },
  { pattern: '/recordings', render: needs('recording.view', renderRecordingList) },
  { pattern: '/recordings/:id', render: needs('recording.view', renderRecordingDetail) },
  { pattern: '/change-password', render: (o) => renderChangePassword(o, { forced: false, onDone: afterPasswordChange }) },
];

let shell: Shell | null = null;
let cleanup: Cleanup | null = null;
let renderSeq = 0;
/** A notice shown once on the login page ("登录已失效" etc.). */
let loginNotice = '';

function runCleanup(): void {
  const c = cleanup;
  cleanup = null;
  try {
    c?.();
  } catch {
    /* ignore */
  }
  for (const d of Array.from(document.querySelectorAll('dialog'))) d.remove();
}

function setAccount(acc: Me | null): void {
  const changedUser = session.account?.id !== acc?.id;
  session.account = acc;
  if (changedUser) {
    clearCaches();
    clearToasts();
    shell = null;
  }
  if (acc && !acc.must_change_password) void loadRoles().catch(() => undefined);
}

function goLogin(notice = ''): void {
  const { path, query } = currentLocation();
  loginNotice = notice;
  setAccount(null);
  const next = path === '/login' ? (query.get('next') ?? '') : hrefFor(path, query).slice(1);
  navigate('/login', next && next !== '/' ? { next } : undefined);
}

async function logout(): Promise<void> {
  try {
    await api('/auth/logout', { method: 'POST', noAuthRedirect: true });
  } catch {
    /* the session may already be gone */
  }
  loginNotice = '';
  setAccount(null);
  navigate('/login');
}

async function afterPasswordChange(): Promise<void> {
  try {
    const me = await api<Me>('/auth/me', { noAuthRedirect: true });
    setAccount(me);
    if (me.must_change_password) {
      navigate('/change-password');
      return;
    }
    navigate(homePath(me));
  } catch {
    goLogin('密码已修改，请使用新密码重新登录。');
  }
}

setAuthHandlers(
  (err) => {
    if (currentLocation().path === '/login') return;
    // Say why: ended elsewhere, idle, disabled … (a first visit without a session says nothing).
    const why = err.code === 'session_ended' || err.code === 'account_disabled' || session.account ? err.message : '';
    goLogin(why);
  },
  () => {
    if (session.account) session.account.must_change_password = true;
    if (currentLocation().path !== '/change-password') navigate('/change-password');
  },
);

async function render(): Promise<void> {
  const seq = ++renderSeq;
  const { path, query } = currentLocation();
  const acc = session.account;

  if (path === '/login') {
    if (acc && !acc.must_change_password) {
      const next = query.get('next');
      if (next && next.startsWith('/') && !next.startsWith('/login')) window.location.hash = `#${next}`;
      else navigate(homePath(acc));
      return;
    }
    runCleanup();
    shell = null;
    const notice = loginNotice;
    loginNotice = '';
    renderLogin(app, {
      notice,
      onLoggedIn: (a) => {
        setAccount(a);
        if (a.must_change_password) {
          navigate('/change-password');
          return;
        }
        const next = query.get('next');
        if (next && next.startsWith('/') && !next.startsWith('/login')) window.location.hash = `#${next}`;
        else navigate(homePath(a));
      },
    });
    return;
  }

  if (!acc) {
    goLogin();
    return;
  }

  if (acc.must_change_password) {
    if (path !== '/change-password') {
      navigate('/change-password');
      return;
    }
    runCleanup();
    shell = null;
    renderChangePassword(app, { forced: true, onDone: afterPasswordChange, onLogout: logout });
    return;
  }

  if (path === '/' || path === '') {
    navigate(homePath(acc));
    return;
  }

  if (!shell || shell.accountId !== acc.id || !shell.root.isConnected) {
    shell = buildShell(() => void logout());
    mount(app, shell.root);
  }
  runCleanup();
  shell.setActive(path);
  // Each render gets its own container: a slow page that finishes after the user moved on fills a
  // detached element instead of overwriting the page now shown.
  const outlet = h('div', { class: 'route' });
  mount(shell.outlet, outlet);
  shell.outlet.scrollTop = 0;

  const nav = navOf(path);
  if (nav && !navAllowed(nav, acc)) {
    forbidden(outlet);
    return;
  }
  for (const r of routes) {
    const params = match(r.pattern, path);
    if (!params) continue;
    try {
      const c = await r.render(outlet, { path, params, query });
      if (seq === renderSeq && typeof c === 'function') cleanup = c;
      else if (typeof c === 'function') c();
    } catch (e) {
      if (seq !== renderSeq) return;
      mount(outlet, h('div', { class: 'state error', role: 'alert' }, `页面加载失败：${errorText(e)}`));
    }
    return;
  }
  mount(
    outlet,
    h('div', { class: 'state error', testid: 'not-found' }, '页面不存在。', h('a', { href: `#${homePath(acc)}` }, '返回首页')),
  );
}

async function boot(): Promise<void> {
  try {
    const me = await api<Me>('/auth/me', { noAuthRedirect: true });
    setAccount(me);
  } catch (e) {
    setAccount(null);
    if (e instanceof ApiError && e.status === 403 && e.code === 'password_change_required') {
      // The session exists but the password must be changed first; /auth/me refused to say who we are.
      loginNotice = '请先修改密码后再使用系统。';
    } else if (e instanceof ApiError && (e.code === 'session_ended' || e.code === 'account_disabled')) {
      // The cookie belongs to a session that ended (logged in elsewhere, idle, disabled).
      loginNotice = e.message;
    } else if (e instanceof ApiError && e.status !== 401 && e.status !== 0) {
      loginNotice = `无法获取登录状态：${e.message}`;
    } else if (e instanceof ApiError && e.status === 0) {
      loginNotice = e.message;
    }
  }
  window.addEventListener('hashchange', () => void render());
  await render();
}

void boot();

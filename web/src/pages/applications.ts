// 账号申请 — brigades file applications; the corps approves or rejects them.

import { api, get } from '../api';
import { h, mount } from '../dom';
import { APPLICATION_STATUS, fmtDateTime, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import type { RouteContext } from '../router';
import { APPLICATION_FIELDS } from '../i18n';
import { can, corpsLevel, orgOptions, orgUnitsOrEmpty, roleName, roleOptions, session } from '../session';
import type { Application, ApproveResponse, OrgUnit, Page, Role } from '../types';
import { openDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { checkUsername } from '../validate';
import { showSecret } from './accounts';
import { errMsg, latest, readState, writeState } from './list-util';

const DEFAULTS = { status: 'pending' };
/** Roles only the corps itself holds; brigades do not apply for them. */
const CORPS_ROLES = ['admin', 'corps_leader', 'operator', 'reviewer'];

export async function renderApplications(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('账号申请');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  // Approving needs application.decide at the corps level; filing needs application.file.
  const canDecide = can('application.decide') && corpsLevel();
  const canFile = can('application.file');
  const [units, roles] = await Promise.all([orgUnitsOrEmpty(), roleOptions()]);

  const tabs = h(
    'div',
    { class: 'tabs', role: 'tablist' },
    Object.entries(APPLICATION_STATUS).map(([code, name]) =>
      h(
        'button',
        {
          type: 'button',
          role: 'tab',
          class: `tab${state.status === code ? ' active' : ''}`,
          'aria-selected': String(state.status === code),
          testid: `tab-${code}`,
          onclick: (ev: Event) => {
            state.status = code;
            state.page = '1';
            for (const t of Array.from(tabs.children)) {
              t.classList.toggle('active', t === ev.currentTarget);
              t.setAttribute('aria-selected', String(t === ev.currentTarget));
            }
            void load();
          },
        },
        name,
      ),
    ),
  );
  const listBox = h('div', { class: 'list-box' });
  mount(
    outlet,
    pageHeader(
      '账号申请',
      canFile
        ? h('button', { type: 'button', class: 'btn primary', testid: 'application-new', onclick: () => fileApplication(units, roles, () => void load()) }, '提交开通申请')
        : null,
    ),
    h(
      'p',
      { class: 'page-desc' },
      canDecide
        ? '区大队、街镇及国有集团的账号须经总队审核后开通。通过后系统生成临时密码，仅显示一次。'
        : canFile
          ? '提交的账号开通申请由总队审核，结果可在此查看。'
          : '账号开通申请由总队审核，结果可在此查看。',
    ),
    tabs,
    listBox,
  );

  async function approve(a: Application): Promise<void> {
    const ok = h('button', { type: 'button', class: 'btn primary', testid: 'approve-confirm' }, '通过并开通账号');
    const err = h('div', { class: 'form-error', role: 'alert', hidden: true });
    const d = openDialog({
      title: '审核通过',
      testid: 'approve-dialog',
      body: [
        h('p', null, `为 ${a.org_unit_name} 开通账号“${a.display_name}（${a.username}）”，角色：${roleName(a.role)}。`),
        h('p', { class: 'muted' }, `申请理由：${a.reason || '—'}`),
        err,
        h('div', { class: 'form-actions' }, ok, h('button', { type: 'button', class: 'btn', onclick: () => d.close() }, '取消')),
      ],
    });
    ok.addEventListener('click', async () => {
      ok.disabled = true;
      try {
        const res = await api<ApproveResponse>(`/account-applications/${encodeURIComponent(a.id)}/approve`, { method: 'POST', json: {} });
        d.close();
        void load();
        showSecret('已通过，账号已开通', res.account?.username ?? a.username, res.temporary_password);
      } catch (e) {
        err.textContent = errMsg(e);
        err.hidden = false;
        ok.disabled = false;
      }
    });
  }

  function reject(a: Application): void {
    const form = new Form(
      [
        {
          name: 'reason',
          label: '驳回理由',
          type: 'textarea',
          required: true,
          span: 3,
          maxlength: 500,
          testid: 'reject-reason',
          validate: (v) => (v.trim().length < 2 ? '请填写具体的驳回理由' : null),
        },
      ],
      { submitLabel: '驳回', submitTestid: 'reject-submit', errorTestid: 'reject-form-error', columns: 1, testid: 'reject-form', fieldLabels: APPLICATION_FIELDS },
    );
    const d = openDialog({ title: `驳回申请：${a.display_name}（${a.username}）`, body: form.el, testid: 'reject-dialog' });
    form.onSubmit(async (v) => {
      await api(`/account-applications/${encodeURIComponent(a.id)}/reject`, { method: 'POST', json: { reason: v.reason.trim() } });
      d.close();
      toast('已驳回');
      void load();
    });
    form.control('reason').focus();
  }

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<Application>>('/account-applications', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载申请失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    const pending = state.status === 'pending';
    mount(
      listBox,
      dataTable<Application>({
        testid: 'application-table',
        rowTestid: 'application-row',
        rowId: (a) => a.id,
        rows: pg.items,
        empty: pending ? '没有待审核的申请' : '暂无记录',
        columns: [
          { title: '用户名', className: 'mono', width: '110px', render: (a) => a.username },
          { title: '姓名', width: '80px', render: (a) => a.display_name },
          { title: '角色', width: '110px', render: (a) => roleName(a.role) },
          { title: '所属单位', className: 'ellipsis', width: '140px', tooltip: (a) => a.org_unit_name, render: (a) => a.org_unit_name },
          { title: '申请理由', className: 'ellipsis wide', tooltip: (a) => a.reason, render: (a) => a.reason || '—' },
          { title: '申请人', width: '90px', render: (a) => a.applicant_username },
          { title: '申请时间', width: '140px', className: 'nowrap', render: (a) => fmtDateTime(a.created_at) },
          {
            title: '状态',
            width: '76px',
            render: (a) => badge(label(APPLICATION_STATUS, a.status), a.status === 'approved' ? 'ok' : a.status === 'rejected' ? 'bad' : 'warn'),
          },
          ...(pending
            ? []
            : [
                {
                  title: '审核',
                  className: 'ellipsis',
                  width: '200px',
                  tooltip: (a: Application) => a.decision_reason ?? '',
                  render: (a: Application) =>
                    `${a.decided_by_username ?? '—'} ${fmtDateTime(a.decided_at)}${a.decision_reason ? `：${a.decision_reason}` : ''}`,
                },
              ]),
          ...(pending && canDecide
            ? [
                {
                  title: '操作',
                  width: '120px',
                  render: (a: Application) =>
                    h(
                      'span',
                      { class: 'row-actions' },
                      h('button', { type: 'button', class: 'btn small primary', testid: 'application-approve', onclick: () => void approve(a) }, '通过'),
                      h('button', { type: 'button', class: 'btn small danger', testid: 'application-reject', onclick: () => reject(a) }, '驳回'),
                    ),
                },
              ]
            : []),
        ],
      }),
      pager({
        page: pg.page || Number(state.page),
        pageSize: pg.page_size || Number(state.page_size),
        total: pg.total,
        onChange: (p, s) => {
          state.page = String(p);
          state.page_size = String(s);
          void load();
        },
      }),
    );
  }
  await load();
}

function fileApplication(units: OrgUnit[], roles: Role[], onDone: () => void): void {
  const me = session.account!;
  let orgOpts = orgOptions(units, (u) => u.kind !== 'corps');
  if (orgOpts.length === 0) orgOpts = [{ value: me.org_unit_id, label: me.org_unit_name }];
  const form = new Form(
    [
      { name: 'username', label: '用户名', required: true, maxlength: 64, testid: 'app-username', autocomplete: 'off', validate: (v) => checkUsername(v) },
      { name: 'display_name', label: '姓名', required: true, maxlength: 50, testid: 'app-display-name' },
      {
        name: 'role',
        label: '角色',
        type: 'select',
        required: true,
        testid: 'app-role',
        options: [{ value: '', label: '请选择' }, ...roles.filter((r) => !CORPS_ROLES.includes(r.code)).map((r) => ({ value: r.code, label: r.name }))],
      },
      {
        name: 'org_unit_id',
        label: '所属单位',
        type: 'select',
        required: true,
        span: 3,
        testid: 'app-org',
        value: orgOpts.length === 1 ? orgOpts[0].value : '',
        options: [{ value: '', label: '请选择' }, ...orgOpts],
      },
      { name: 'reason', label: '申请理由', type: 'textarea', required: true, span: 3, maxlength: 500, testid: 'app-reason', placeholder: '说明岗位与开通原因' },
    ],
    { submitLabel: '提交申请', submitTestid: 'app-submit', errorTestid: 'app-form-error', testid: 'application-form', fieldLabels: APPLICATION_FIELDS },
  );
  const d = openDialog({ title: '提交账号开通申请', body: form.el, wide: true, testid: 'application-dialog' });
  form.onSubmit(async (v) => {
    await api('/account-applications', {
      method: 'POST',
      json: { username: v.username.trim(), display_name: v.display_name.trim(), role: v.role, org_unit_id: v.org_unit_id, reason: v.reason.trim() },
    });
    d.close();
    toast('申请已提交，等待总队审核');
    onDone();
  });
  form.control('username').focus();
}

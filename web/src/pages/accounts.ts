// 账号管理 — list with filters; create; unlock, reset password, disable, enable.

import { api, get } from '../api';
import { h, mount, select } from '../dom';
import { ACCOUNT_STATUS, fmtDateTime, isFuture, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import type { RouteContext } from '../router';
import { ACCOUNT_FIELDS } from '../i18n';
import { can, orgOptions, orgUnitsOrEmpty, roleName, roleOptions, session } from '../session';
import type { Account, OrgUnit, Page, Role } from '../types';
import { confirmDialog, openDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { checkPassword, checkUsername, generatePassword } from '../validate';
import { errMsg, filter, filterBar, latest, readState, writeState } from './list-util';

const DEFAULTS = { q: '', role: '', org_unit_id: '' };

export async function renderAccounts(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('账号管理');
  const canManage = can('account.manage');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const [units, roles] = await Promise.all([orgUnitsOrEmpty(), roleOptions()]);

  const search = h('input', {
    type: 'search',
    placeholder: '用户名 / 姓名',
    value: state.q,
    testid: 'search-input',
    class: 'search',
    'aria-label': '搜索账号',
    maxlength: 64,
  });
  const role = select([{ value: '', label: '全部' }, ...roles.map((r) => ({ value: r.code, label: r.name }))], { testid: 'filter-role' }, state.role);
  const org = select([{ value: '', label: '全部' }, ...orgOptions(units)], { testid: 'filter-org' }, state.org_unit_id);
  const bar = filterBar(
    h('div', { class: 'search-group' }, search, h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询')),
    filter('角色', role),
    filter('所属单位', org),
  );
  const apply = () => {
    state.q = search.value.trim();
    state.role = role.value;
    state.org_unit_id = org.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  role.addEventListener('change', apply);
  org.addEventListener('change', apply);

  const listBox = h('div', { class: 'list-box' });
  mount(
    outlet,
    pageHeader(
      '账号管理',
      canManage
        ? h('button', { type: 'button', class: 'btn primary', testid: 'account-new', onclick: () => createAccount(units, roles, () => void load()) }, '新建账号')
        : null,
    ),
    bar,
    listBox,
  );

  async function act(a: Account, path: string, done: string, confirmText?: string): Promise<void> {
    if (confirmText && !(await confirmDialog(confirmText))) return;
    try {
      await api<Account>(`/accounts/${encodeURIComponent(a.id)}/${path}`, { method: 'POST', json: {} });
      toast(done);
      void load();
    } catch (e) {
      toast(`操作失败：${errMsg(e)}`, 'error', 6000);
    }
  }

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<Account>>('/accounts', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载账号失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    const me = session.account?.id;
    mount(
      listBox,
      dataTable<Account>({
        testid: 'account-table',
        rowTestid: 'account-row',
        rowId: (a) => a.id,
        rows: pg.items,
        empty: '没有符合条件的账号',
        columns: [
          { title: '用户名', className: 'mono', width: '120px', render: (a) => a.username },
          { title: '姓名', width: '90px', render: (a) => a.display_name },
          { title: '角色', width: '120px', render: (a) => roleName(a.role) },
          { title: '所属单位', className: 'ellipsis wide', tooltip: (a) => a.org_unit_name, render: (a) => a.org_unit_name || '—' },
          {
            title: '状态',
            width: '150px',
            render: (a) => [
              badge(label(ACCOUNT_STATUS, a.status), a.status === 'active' ? 'ok' : 'muted'),
              isFuture(a.locked_until) ? h('span', { title: `锁定至 ${fmtDateTime(a.locked_until)}` }, ' ', badge('已锁定', 'bad')) : null,
              a.must_change_password ? h('span', null, ' ', badge('待改密', 'warn')) : null,
            ],
          },
          { title: '最近登录', width: '140px', className: 'nowrap', render: (a) => fmtDateTime(a.last_login_at) },
          { title: '创建时间', width: '140px', className: 'nowrap', render: (a) => fmtDateTime(a.created_at) },
          ...(canManage
            ? [
                {
                  title: '操作',
                  width: '230px',
                  render: (a: Account) =>
                    h(
                      'span',
                      { class: 'row-actions' },
                      isFuture(a.locked_until)
                        ? h('button', { type: 'button', class: 'btn small', testid: 'account-unlock', onclick: () => void act(a, 'unlock', `已解锁 ${a.username}`) }, '解锁')
                        : null,
                      h('button', { type: 'button', class: 'btn small', testid: 'account-reset', onclick: () => resetPassword(a, () => void load()) }, '重置密码'),
                      a.status === 'active'
                        ? h(
                            'button',
                            {
                              type: 'button',
                              class: 'btn small danger',
                              testid: 'account-disable',
                              disabled: a.id === me,
                              title: a.id === me ? '不能停用当前登录的账号' : undefined,
                              onclick: () => void act(a, 'disable', `已停用 ${a.username}`, `确定停用账号“${a.display_name}（${a.username}）”吗？停用后该账号立即无法登录。`),
                            },
                            '停用',
                          )
                        : h('button', { type: 'button', class: 'btn small', testid: 'account-enable', onclick: () => void act(a, 'enable', `已启用 ${a.username}`) }, '启用'),
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

function passwordField(testid: string) {
  return {
    name: 'password',
    label: '临时密码',
    type: 'text' as const,
    required: true,
    testid,
    autocomplete: 'off',
    value: generatePassword(),
    hint: '首次登录须修改。请通过安全渠道告知本人。',
    validate: (v: string) => checkPassword(v),
  };
}

function createAccount(units: OrgUnit[], roles: Role[], onDone: () => void): void {
  const form = new Form(
    [
      { name: 'username', label: '用户名', required: true, maxlength: 64, testid: 'acc-username', autocomplete: 'off', validate: (v) => checkUsername(v) },
      { name: 'display_name', label: '姓名', required: true, maxlength: 50, testid: 'acc-display-name' },
      passwordField('acc-password'),
      {
        name: 'role',
        label: '角色',
        type: 'select',
        required: true,
        testid: 'acc-role',
        options: [{ value: '', label: '请选择' }, ...roles.map((r) => ({ value: r.code, label: r.name }))],
      },
      {
        name: 'org_unit_id',
        label: '所属单位',
        type: 'select',
        required: true,
        span: 2,
        testid: 'acc-org',
        options: [{ value: '', label: '请选择' }, ...orgOptions(units)],
      },
    ],
    { submitLabel: '创建账号', submitTestid: 'acc-submit', errorTestid: 'acc-form-error', testid: 'account-form', fieldLabels: ACCOUNT_FIELDS },
  );
  const regen = h('button', { type: 'button', class: 'btn small', onclick: () => form.setValue('password', generatePassword()) }, '重新生成');
  form.control('password').after(regen);
  const d = openDialog({ title: '新建账号', body: form.el, wide: true, testid: 'account-dialog' });
  form.onSubmit(async (v) => {
    const acc = await api<Account>('/accounts', {
      method: 'POST',
      json: { username: v.username.trim(), display_name: v.display_name.trim(), password: v.password, role: v.role, org_unit_id: v.org_unit_id },
    });
    d.close();
    onDone();
    showSecret('账号已创建', acc?.username ?? v.username.trim(), v.password);
  });
  form.control('username').focus();
}

function resetPassword(a: Account, onDone: () => void): void {
  const form = new Form([{ ...passwordField('reset-password'), name: 'new_password', label: '新的临时密码', span: 3 }], {
    submitLabel: '重置密码',
    submitTestid: 'reset-submit',
    errorTestid: 'reset-form-error',
    columns: 1,
    testid: 'reset-form',
    fieldLabels: ACCOUNT_FIELDS,
  });
  const d = openDialog({ title: `重置密码：${a.display_name}（${a.username}）`, body: form.el, testid: 'reset-dialog' });
  form.onSubmit(async (v) => {
    await api<Account>(`/accounts/${encodeURIComponent(a.id)}/reset-password`, { method: 'POST', json: { new_password: v.new_password } });
    d.close();
    onDone();
    showSecret('密码已重置', a.username, v.new_password);
  });
}

/** Show a temporary password once, with a copy button. */
export function showSecret(title: string, username: string, password: string): void {
  const pw = h('code', { class: 'secret', testid: 'temporary-password' }, password);
  const copy = h('button', { type: 'button', class: 'btn small' }, '复制');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(password);
      copy.textContent = '已复制';
    } catch {
      const range = document.createRange();
      range.selectNodeContents(pw);
      const sel = window.getSelection();
      sel?.removeAllRanges();
      sel?.addRange(range);
      copy.textContent = '请按 Ctrl+C 复制';
    }
  });
  const d = openDialog({
    title,
    testid: 'secret-dialog',
    body: [
      h('p', null, '用户名：', h('code', null, username)),
      h('p', null, '临时密码：', pw, ' ', copy),
      h('p', { class: 'warn-text' }, '该密码只显示这一次，关闭后无法再次查看。用户首次登录时须修改密码。'),
      h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'btn primary', onclick: () => d.close() }, '我已记下')),
    ],
  });
}

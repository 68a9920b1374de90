// 执法人员 — list, import / export, detail form.

import { ApiError, api, del, download, get } from '../api';
import { h, mount, select } from '../dom';
import { OFFICER_STATUS, fmtDateTime, label } from '../format';
import { OFFICER_FIELDS } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import { navigate, type RouteContext } from '../router';
import { can, orgOptions, orgUnitsOrEmpty } from '../session';
import type { Account, Officer, Page } from '../types';
import { confirmDialog } from '../ui/dialog';
import { Form, orNull } from '../ui/form';
import { importer } from '../ui/importer';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { checkPhone } from '../validate';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';

const DEFAULTS = { q: '', org_unit_id: '', status: '' };

export async function renderOfficerList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('执法人员');
  const canWrite = can('officer.write');
  const canExport = can('registry.export');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const units = await orgUnitsOrEmpty();

  const search = h('input', {
    type: 'search',
    placeholder: '姓名 / 执法证号 / 电话(完整或后四位)',
    title: '电话加密存储：请输入完整号码或号码后四位',
    value: state.q,
    testid: 'search-input',
    class: 'search',
    'aria-label': '搜索执法人员',
    maxlength: 100,
  });
  const org = select([{ value: '', label: '全部' }, ...orgOptions(units)], { testid: 'filter-org' }, state.org_unit_id);
  const status = select(optionsOf(OFFICER_STATUS), { testid: 'filter-status' }, state.status);
  const bar = filterBar(
    h(
      'div',
      { class: 'search-group' },
      search,
      h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询'),
      h(
        'button',
        {
          type: 'button',
          class: 'btn',
          testid: 'search-reset',
          onclick: () => {
            search.value = '';
            org.value = '';
            status.value = '';
            apply();
          },
        },
        '重置',
      ),
    ),
    filter('所属单位', org),
    filter('状态', status),
  );
  const apply = () => {
    state.q = search.value.trim();
    state.org_unit_id = org.value;
    state.status = status.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  org.addEventListener('change', apply);
  status.addEventListener('change', apply);

  const listBox = h('div', { class: 'list-box' });
  const imp = importer({ endpoint: '/officers/import', what: '执法人员', fieldLabels: OFFICER_FIELDS, onImported: () => void load() });
  const exportBtn = h('button', { type: 'button', class: 'btn', testid: 'export-button' }, '导出Excel');
  exportBtn.addEventListener('click', async () => {
    exportBtn.setAttribute('disabled', '');
    try {
      await download('/officers/export.xlsx', { q: state.q, org_unit_id: state.org_unit_id, status: state.status }, `执法人员_${new Date().toISOString().slice(0, 10)}.xlsx`);
    } catch (e) {
      toast(`导出失败：${errMsg(e)}`, 'error', 6000);
    } finally {
      exportBtn.removeAttribute('disabled');
    }
  });

  mount(
    outlet,
    pageHeader(
      '执法人员',
      canWrite ? h('a', { class: 'btn primary', href: '#/officers/new', testid: 'officer-new' }, '新增') : null,
      canWrite ? imp.button : null,
      canExport ? exportBtn : null,
    ),
    bar,
    canWrite ? imp.report : null,
    listBox,
  );

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<Officer>>('/officers', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载执法人员失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    mount(
      listBox,
      dataTable<Officer>({
        testid: 'officer-table',
        rowTestid: 'officer-row',
        rowId: (o) => o.id,
        rows: pg.items,
        onRowClick: (o) => navigate(`/officers/${encodeURIComponent(o.id)}`),
        empty: state.q || state.org_unit_id || state.status ? '没有符合条件的执法人员' : '暂无执法人员',
        columns: [
          { title: '姓名', width: '110px', render: (o) => h('a', { href: `#/officers/${encodeURIComponent(o.id)}`, class: 'row-link' }, o.name) },
          { title: '执法证号', className: 'mono', width: '160px', render: (o) => o.certificate_no },
          { title: '所属单位', className: 'ellipsis wide', tooltip: (o) => o.org_unit_name, render: (o) => o.org_unit_name || '—' },
          { title: '电话', width: '130px', render: (o) => o.phone ?? '—' },
          { title: '绑定账号', width: '90px', render: (o) => (o.account_id ? badge('已绑定', 'info') : badge('未绑定')) },
          { title: '状态', width: '76px', render: (o) => badge(label(OFFICER_STATUS, o.status), o.status === 'active' ? 'ok' : 'muted') },
          { title: '更新时间', width: '140px', className: 'nowrap', render: (o) => fmtDateTime(o.updated_at) },
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

export async function renderOfficerDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  const isNew = !id;
  // Without officer.write the detail is shown read-only (no save / delete).
  const canWrite = can('officer.write');
  setTitle(isNew ? '新增执法人员' : '执法人员');
  const back = h('a', { class: 'btn', href: listHref('/officers'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let off: Officer | null = null;
  let units;
  try {
    [off, units] = await Promise.all([
      isNew ? Promise.resolve(null) : get<Officer>(`/officers/${encodeURIComponent(id)}`),
      orgUnitsOrEmpty(),
    ]);
  } catch (e) {
    mount(
      outlet,
      pageHeader('执法人员', back),
      errorBox(e instanceof ApiError && e.status === 404 ? '该执法人员不存在或已被删除。' : `加载失败：${errMsg(e)}`),
    );
    return;
  }
  // Accounts to bind: only roles allowed to list accounts get a select; others type the id.
  let accounts: Account[] | null = null;
  if (canWrite && can('account.manage')) {
    try {
      accounts = (await api<Page<Account>>('/accounts', { query: { page_size: 200 }, noAuthRedirect: true })).items;
    } catch {
      accounts = null;
    }
  }
  const o = off;
  const orgOpts = orgOptions(units);
  if (o && !orgOpts.some((x) => x.value === o.org_unit_id)) orgOpts.push({ value: o.org_unit_id, label: o.org_unit_name });

  const accountField =
    accounts !== null
      ? {
          name: 'account_id',
          label: '绑定账号（可选）',
          type: 'select' as const,
          value: o?.account_id ?? '',
          testid: 'officer-account',
          options: [
            { value: '', label: '— 不绑定 —' },
            ...accounts.map((a) => ({ value: a.id, label: `${a.display_name}（${a.username}）` })),
            ...(o?.account_id && !accounts.some((a) => a.id === o.account_id) ? [{ value: o.account_id, label: o.account_id }] : []),
          ],
        }
      : {
          name: 'account_id',
          label: '绑定账号 ID（可选）',
          value: o?.account_id ?? '',
          testid: 'officer-account',
          placeholder: '登录账号的编号',
        };

  const form = new Form(
    [
      { name: 'name', label: '姓名', required: true, value: o?.name, maxlength: 50, testid: 'officer-name' },
      {
        name: 'certificate_no',
        label: '执法证号',
        required: true,
        value: o?.certificate_no,
        maxlength: 40,
        testid: 'officer-cert',
        normalize: (v) => v.trim().toUpperCase(),
        validate: (v) => (/^\S{4,40}$/.test(v.trim()) ? null : '执法证号为 4–40 位，不含空格'),
      },
      {
        name: 'org_unit_id',
        label: '所属单位',
        type: 'select',
        required: true,
        value: o?.org_unit_id ?? '',
        testid: 'officer-org',
        options: [{ value: '', label: '请选择' }, ...orgOpts],
      },
      { name: 'phone', label: '电话', type: 'tel', value: o?.phone, maxlength: 20, testid: 'officer-phone', validate: (v) => checkPhone(v) },
      accountField,
      {
        name: 'status',
        label: '状态',
        type: 'select',
        required: true,
        value: o?.status ?? 'active',
        testid: 'officer-status',
        options: Object.entries(OFFICER_STATUS).map(([value, l]) => ({ value, label: l })),
      },
    ],
    {
      submitLabel: isNew ? '创建' : '保存修改',
      submitTestid: 'officer-save',
      errorTestid: 'officer-form-error',
      testid: 'officer-form',
      readonly: !canWrite,
      fieldLabels: OFFICER_FIELDS,
      extraButtons: canWrite
        ? [
            h('a', { class: 'btn', href: listHref('/officers') }, '取消'),
            !isNew ? h('button', { type: 'button', class: 'btn danger right', testid: 'officer-delete', onclick: () => void remove() }, '删除') : null,
          ]
        : [],
    },
  );
  form.onSubmit(async (v) => {
    const body = {
      name: v.name.trim(),
      certificate_no: v.certificate_no.trim(),
      org_unit_id: v.org_unit_id,
      phone: orNull(v.phone),
      account_id: orNull(v.account_id),
      status: v.status,
    };
    try {
      if (isNew) {
        const created = await api<Officer>('/officers', { method: 'POST', json: body });
        toast('执法人员已创建');
        navigate(`/officers/${encodeURIComponent(created.id)}`);
      } else {
        await api<Officer>(`/officers/${encodeURIComponent(id)}`, { method: 'PUT', json: { ...body, version: o!.version } });
        toast('已保存');
        void renderOfficerDetail(outlet, ctx);
      }
    } catch (err) {
      if (err instanceof ApiError && err.code === 'version_conflict') {
        form.showServerError(err);
        form.errorBox.append(
          ' ',
          h('button', { type: 'button', class: 'btn small', onclick: () => void renderOfficerDetail(outlet, ctx) }, '重新加载（放弃本次修改）'),
        );
        return;
      }
      throw err;
    }
  });

  async function remove(): Promise<void> {
    if (!(await confirmDialog(`确定删除执法人员“${o!.name}”吗？`, '删除', true))) return;
    try {
      await del(`/officers/${encodeURIComponent(id)}`);
      toast('已删除');
      window.location.hash = listHref('/officers');
    } catch (err) {
      form.showServerError(err);
    }
  }

  const meta = o
    ? h(
        'dl',
        { class: 'meta' },
        h('dt', null, '所属单位'),
        h('dd', null, o.org_unit_name || '—'),
        h('dt', null, '创建时间'),
        h('dd', null, fmtDateTime(o.created_at)),
        h('dt', null, '更新时间'),
        h('dd', null, fmtDateTime(o.updated_at)),
        h('dt', null, '版本'),
        h('dd', null, String(o.version)),
      )
    : null;
  setTitle(o ? o.name : '新增执法人员');
  mount(
    outlet,
    pageHeader(o ? `执法人员：${o.name}` : '新增执法人员', back),
    h(
      'div',
      { class: 'panel', testid: 'officer-detail' },
      canWrite ? null : h('div', { class: 'form-notice', testid: 'readonly-notice' }, '只读：当前账号没有编辑执法人员的权限。'),
      meta,
      form.el,
    ),
  );
  if (canWrite) form.control('name').focus();
}

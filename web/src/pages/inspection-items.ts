// 检查事项清单 — list, create / edit dialog, version history.

import { ApiError, api, get } from '../api';
import { h, mount, select } from '../dom';
import { fmtDate, fmtDateTime } from '../format';
import { ITEM_FIELDS } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import type { RouteContext } from '../router';
import { can, corpsLevel, loadSectors, sectorName } from '../session';
import type { CodeName, InspectionItem, ItemHistory, Page } from '../types';
import { openDialog } from '../ui/dialog';
import { Form, orNull, type FieldSpec } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, readState, writeState } from './list-util';

const DEFAULTS = { q: '', sector: '', active: '' };

export async function renderInspectionItems(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('检查事项清单');
  // The item list is corps-wide: only corps accounts edit it.
  const canWrite = can('item.write') && corpsLevel();
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const sectors = await loadSectors();

  const search = h('input', {
    type: 'search',
    placeholder: '编码 / 事项 / 法律依据',
    value: state.q,
    testid: 'search-input',
    class: 'search',
    'aria-label': '搜索检查事项',
    maxlength: 100,
  });
  const sector = select([{ value: '', label: '全部' }, ...sectors.map((s) => ({ value: s.code, label: s.name }))], { testid: 'filter-sector' }, state.sector);
  const active = select(
    [
      { value: '', label: '全部' },
      { value: 'true', label: '启用' },
      { value: 'false', label: '停用' },
    ],
    { testid: 'filter-active' },
    state.active,
  );
  const bar = filterBar(
    h(
      'div',
      { class: 'search-group' },
      search,
      h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询'),
    ),
    filter('监管行业', sector),
    filter('状态', active),
  );
  const apply = () => {
    state.q = search.value.trim();
    state.sector = sector.value;
    state.active = active.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  sector.addEventListener('change', apply);
  active.addEventListener('change', apply);

  const listBox = h('div', { class: 'list-box' });
  mount(
    outlet,
    pageHeader(
      '检查事项清单',
      canWrite
        ? h('button', { type: 'button', class: 'btn primary', testid: 'item-new', onclick: () => editItem(null, sectors, () => void load()) }, '新增')
        : null,
    ),
    bar,
    listBox,
  );

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<InspectionItem>>('/inspection-items', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载检查事项失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    mount(
      listBox,
      dataTable<InspectionItem>({
        testid: 'item-table',
        rowTestid: 'item-row',
        rowId: (i) => i.id,
        rows: pg.items,
        onRowClick: (i) => (canWrite ? editItem(i, sectors, () => void load()) : viewItem(i, sectors)),
        empty: '没有符合条件的检查事项',
        columns: [
          { title: '编码', className: 'mono', width: '110px', render: (i) => i.code },
          { title: '监管行业', width: '90px', render: (i) => sectorName(sectors, i.sector) },
          { title: '类别', className: 'ellipsis', width: '120px', tooltip: (i) => i.category, render: (i) => i.category },
          { title: '检查事项', className: 'ellipsis wide', tooltip: (i) => i.title, render: (i) => i.title },
          { title: '法律依据', className: 'ellipsis wide', tooltip: (i) => i.legal_basis, render: (i) => i.legal_basis },
          { title: '版本', width: '56px', render: (i) => `v${i.version}` },
          { title: '状态', width: '64px', render: (i) => (i.active ? badge('启用', 'ok') : badge('停用')) },
          { title: '更新时间', width: '140px', className: 'nowrap', render: (i) => fmtDateTime(i.updated_at) },
          {
            title: '操作',
            width: '110px',
            render: (i) =>
              h(
                'span',
                { class: 'row-actions' },
                canWrite
                  ? h('button', { type: 'button', class: 'btn small', testid: 'item-edit', onclick: () => editItem(i, sectors, () => void load()) }, '编辑')
                  : h('button', { type: 'button', class: 'btn small', testid: 'item-view', onclick: () => viewItem(i, sectors) }, '查看'),
                h('button', { type: 'button', class: 'btn small', testid: 'item-history', onclick: () => void showHistory(i, sectors) }, '历史'),
              ),
          },
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

function itemFields(item: InspectionItem | null, sectors: CodeName[]): FieldSpec[] {
  return [
    { name: 'code', label: '事项编码', required: true, value: item?.code, maxlength: 40, testid: 'item-code' },
    {
      name: 'sector',
      label: '监管行业',
      type: 'select',
      required: true,
      value: item?.sector ?? '',
      testid: 'item-sector',
      options: [
        { value: '', label: '请选择' },
        ...sectors.map((s) => ({ value: s.code, label: `${s.code} ${s.name}` })),
        { value: '*', label: '* 全部行业' },
      ],
    },
    { name: 'category', label: '类别', required: true, value: item?.category, maxlength: 60, testid: 'item-category' },
    { name: 'title', label: '检查事项', type: 'textarea', required: true, value: item?.title, span: 3, maxlength: 1000, testid: 'item-title' },
    { name: 'legal_basis', label: '法律依据', type: 'textarea', required: true, value: item?.legal_basis, span: 3, maxlength: 4000, testid: 'item-legal' },
    { name: 'source', label: '来源', value: item?.source, maxlength: 200, testid: 'item-source' },
    { name: 'effective_date', label: '生效日期', type: 'date', value: item?.effective_date?.slice(0, 10), testid: 'item-effective' },
    { name: 'active', label: '启用', type: 'checkbox', value: item ? item.active : true, testid: 'item-active' },
  ];
}

/** An item shown read-only (accounts without item.write). */
function viewItem(item: InspectionItem, sectors: CodeName[]): void {
  const form = new Form(itemFields(item, sectors), { readonly: true, testid: 'item-form' });
  openDialog({ title: `检查事项 ${item.code}（v${item.version}）`, body: form.el, wide: true, testid: 'item-dialog' });
}

function editItem(item: InspectionItem | null, sectors: CodeName[], onSaved: () => void): void {
  const form = new Form(itemFields(item, sectors), {
    submitLabel: item ? '保存（生成新版本）' : '创建',
    submitTestid: 'item-save',
    errorTestid: 'item-form-error',
    testid: 'item-form',
    fieldLabels: ITEM_FIELDS,
  });
  const d = openDialog({ title: item ? `编辑检查事项 ${item.code}（当前 v${item.version}）` : '新增检查事项', body: form.el, wide: true, testid: 'item-dialog' });
  form.onSubmit(async (v) => {
    const body = {
      code: v.code.trim(),
      sector: v.sector,
      category: v.category.trim(),
      title: v.title.trim(),
      legal_basis: v.legal_basis.trim(),
      source: orNull(v.source),
      effective_date: orNull(v.effective_date),
      active: form.checked('active'),
    };
    try {
      if (item) await api(`/inspection-items/${encodeURIComponent(item.id)}`, { method: 'PUT', json: { ...body, version: item.version } });
      else await api('/inspection-items', { method: 'POST', json: body });
    } catch (e) {
      if (e instanceof ApiError && e.code === 'version_conflict') {
        form.showServerError(e);
        form.errorBox.append('（请关闭对话框，刷新列表后重新编辑）');
        return;
      }
      throw e;
    }
    d.close();
    toast(item ? '已保存' : '已创建');
    onSaved();
  });
  form.control('code').focus();
}

async function showHistory(item: InspectionItem, sectors: CodeName[]): Promise<void> {
  const box = h('div', { class: 'history' }, loadingBox());
  openDialog({ title: `修改历史：${item.code} ${item.title}`, body: box, wide: true, testid: 'history-dialog' });
  try {
    const list = await get<ItemHistory[]>(`/inspection-items/${encodeURIComponent(item.id)}/history`);
    const sorted = list.slice().sort((a, b) => b.version - a.version);
    mount(
      box,
      dataTable<ItemHistory>({
        testid: 'history-table',
        rowTestid: 'history-row',
        rows: sorted,
        empty: '暂无历史版本',
        columns: [
          { title: '版本', width: '56px', render: (r) => `v${r.version}` },
          { title: '修改人', width: '100px', render: (r) => r.changed_by || '—' },
          { title: '修改时间', width: '140px', className: 'nowrap', render: (r) => fmtDateTime(r.changed_at) },
          { title: '内容快照', render: (r) => snapshotView(r.snapshot, sectors) },
        ],
      }),
    );
  } catch (e) {
    mount(box, errorBox(`加载历史失败：${errMsg(e)}`));
  }
}

function snapshotView(snap: unknown, sectors: CodeName[]): HTMLElement {
  if (!snap || typeof snap !== 'object' || Array.isArray(snap)) return h('pre', { class: 'json' }, JSON.stringify(snap, null, 2));
  const rows: HTMLElement[] = [];
  for (const [k, v] of Object.entries(snap as Record<string, unknown>)) {
    if (['id', 'version', 'updated_at', 'created_at'].includes(k)) continue;
    let shown: string;
    if (typeof v === 'boolean') shown = v ? '是' : '否';
    else if (k === 'effective_date' && typeof v === 'string') shown = fmtDate(v);
    else if (k === 'sector' && typeof v === 'string') shown = `${v} ${sectorName(sectors, v)}`;
    else if (v === null || v === undefined) shown = '—';
    else shown = typeof v === 'object' ? JSON.stringify(v) : String(v);
    rows.push(h('dt', null, ITEM_FIELDS[k] ?? k), h('dd', null, shown));
  }
  return h('dl', { class: 'snapshot' }, rows);
}

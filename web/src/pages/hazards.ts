// 隐患整改 — the hazard list and one hazard's rectification loop: rectification report,
// re-inspection (passed → 销号; failed → new deadline or 移交立案).

import { ApiError, get, post } from '../api';
import { h, mount, select } from '../dom';
import { HAZARD_LEVEL, HAZARD_STATUS, fmtDate, fmtDateTime, label, shanghaiDatePlus } from '../format';
import { pageHeader, setTitle } from '../layout';
import { batchPrint } from '../ui/batch';
import { navigate, type RouteContext } from '../router';
import { can } from '../session';
import type { Hazard, Page } from '../types';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';
import { hazardBadge } from './workbench';

const DEFAULTS = { q: '', status: '', level: '', action_within_days: '' };

export async function renderHazardList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('隐患整改');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const search = h('input', { type: 'search', placeholder: '企业名称 / 隐患描述', value: state.q, testid: 'search-input', class: 'search', maxlength: 100, 'aria-label': '搜索隐患' });
  const status = select(
    [
      { value: '', label: '全部' },
      { value: 'rectifying,rectified', label: '未销号' },
      ...Object.entries(HAZARD_STATUS).map(([value, l]) => ({ value, label: l })),
    ],
    { testid: 'filter-status' },
    state.status,
  );
  const level = select(optionsOf(HAZARD_LEVEL), { testid: 'filter-level' }, state.level);
  const due = select(
    [
      { value: '', label: '不限' },
      { value: '7', label: '7 天内' },
      { value: '30', label: '30 天内' },
    ],
    { testid: 'filter-due' },
    state.action_within_days,
  );
  const bar = filterBar(
    h('div', { class: 'search-group' }, search, h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询')),
    filter('状态', status),
    filter('级别', level),
    filter('需办理', due),
  );
  const apply = () => {
    state.q = search.value.trim();
    state.status = status.value;
    state.level = level.value;
    state.action_within_days = due.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const s of [status, level, due]) s.addEventListener('change', apply);
  const listBox = h('div', { class: 'list-box' });
  let shown: Hazard[] = [];
  const printAll = h('button', {
    type: 'button',
    class: 'btn',
    testid: 'hazard-batch-print',
    title: '本页列出的隐患的责令限期整改指令书，打包下载',
    onclick: () => {
      if (!shown.length) return toast('本页没有隐患', 'error');
      void batchPrint('rectification_orders', shown.map((x) => x.id));
    },
  }, '批量打印整改指令书（本页）');
  mount(outlet, pageHeader('隐患整改', printAll), bar, listBox);

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<Hazard>>('/hazards', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载隐患失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    shown = pg.items;
    mount(
      listBox,
      dataTable<Hazard>({
        testid: 'hazard-table',
        rowTestid: 'hazard-row',
        rowId: (x) => x.id,
        rows: pg.items,
        rowClass: (x) => (x.overdue ? 'row-alert' : undefined),
        onRowClick: (x) => navigate(`/hazards/${encodeURIComponent(x.id)}`),
        empty: '没有符合条件的隐患',
        columns: [
          { title: '企业', className: 'ellipsis wide', tooltip: (x) => x.enterprise_name, render: (x) => h('a', { class: 'row-link', href: `#/hazards/${encodeURIComponent(x.id)}` }, x.enterprise_name) },
          { title: '隐患描述', className: 'ellipsis wide', tooltip: (x) => x.description, render: (x) => x.description },
          { title: '级别', width: '110px', render: (x) => badge(label(HAZARD_LEVEL, x.level), x.level === 'major' ? 'bad' : 'muted') },
          { title: '发现日期', width: '100px', render: (x) => fmtDate(x.found_at) },
          { title: '整改期限', width: '100px', render: (x) => fmtDate(x.rectification_deadline) },
          { title: '复查期限', width: '100px', render: (x) => fmtDate(x.reinspection_due) },
          { title: '状态', width: '120px', render: hazardBadge },
        ],
      }),
      pager({
        page: pg.page,
        pageSize: pg.page_size,
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

function dl(pairs: [string, Node | string | null | undefined][]): HTMLElement {
  return h(
    'dl',
    { class: 'meta' },
    pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]),
  );
}

export async function renderHazardDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  setTitle('隐患');
  const back = h('a', { class: 'btn', href: listHref('/hazards'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let x: Hazard;
  try {
    x = await get<Hazard>(`/hazards/${encodeURIComponent(id)}`);
  } catch (e) {
    mount(outlet, pageHeader('隐患', back), errorBox(e instanceof ApiError && e.status === 404 ? '该隐患不存在或不在您的管辖范围内。' : `加载失败：${errMsg(e)}`));
    return;
  }
  const reload = () => void renderHazardDetail(outlet, ctx);
  const open = x.status === 'rectifying' || x.status === 'rectified';
  const canAct = can('inspection.write') && open;

  const facts = dl([
    ['企业', h('a', { href: `#/enterprises/${encodeURIComponent(x.enterprise_id)}` }, x.enterprise_name)],
    ['检查', h('a', { href: `#/inspections/${encodeURIComponent(x.inspection_id)}`, class: 'mono' }, x.inspection_code)],
    ['级别', label(HAZARD_LEVEL, x.level)],
    ['检查事项', x.item_title ?? '—'],
    ['整改指令书', h('span', { class: 'mono', testid: 'hazard-order-number' }, x.order_number)],
    ['状态', h('span', { testid: 'hazard-status' }, hazardBadge(x))],
    ['发现时间', fmtDateTime(x.found_at)],
    ['整改期限', fmtDate(x.rectification_deadline)],
    ['复查期限', h('span', { class: x.overdue ? 'warn-text' : undefined }, fmtDate(x.reinspection_due))],
    ['整改情况', x.rectification_note],
    ['整改上报时间', fmtDateTime(x.rectified_at)],
    ['复查结论', x.reinspection_result ? (x.reinspection_result === 'passed' ? '复查合格' : '复查不合格') : null],
    ['复查意见', x.reinspection_note],
    ['复查意见书', x.reinspection_number ? h('span', { class: 'mono', testid: 'hazard-reinspection-number' }, x.reinspection_number) : null],
    ['复查时间', fmtDateTime(x.reinspected_at)],
    ['销号时间', fmtDateTime(x.closed_at)],
  ]);

  let rectifyForm: Form | null = null;
  if (canAct && x.status === 'rectifying') {
    rectifyForm = new Form(
      [{ name: 'note', label: '整改情况', type: 'textarea', required: true, span: 3, maxlength: 2000, testid: 'rectify-note', placeholder: '企业采取的整改措施' }],
      { submitLabel: '上报整改完成', submitTestid: 'rectify-submit', errorTestid: 'rectify-error', columns: 1 },
    ).onSubmit(async (v) => {
      await post(`/hazards/${encodeURIComponent(id)}/rectification`, { note: v.note.trim() });
      toast('已上报整改情况', 'ok');
      reload();
    });
  }
  let reinspectForm: Form | null = null;
  if (canAct) {
    reinspectForm = new Form(
      [
        {
          name: 'result',
          label: '复查结论',
          type: 'select',
          required: true,
          value: '',
          testid: 'reinspect-result',
          options: [
            { value: '', label: '请选择' },
            { value: 'passed', label: '复查合格，销号' },
            { value: 'failed', label: '复查不合格' },
          ],
          onChange: (val, f) => f.setHidden('new_deadline', val !== 'failed'),
        },
        {
          name: 'new_deadline',
          label: '重新整改期限（不填则移交立案）',
          type: 'date',
          testid: 'reinspect-deadline',
          validate: (v) => (v && v < shanghaiDatePlus(0) ? '期限不能早于今天' : null),
        },
        { name: 'note', label: '复查意见', type: 'textarea', required: true, span: 3, maxlength: 2000, testid: 'reinspect-note' },
      ],
      { submitLabel: '记录复查', submitTestid: 'reinspect-submit', errorTestid: 'reinspect-error' },
    ).onSubmit(async (v) => {
      const body: Record<string, string> = { result: v.result, note: v.note.trim() };
      if (v.result === 'failed' && v.new_deadline) body.new_deadline = v.new_deadline;
      const r = await post<Hazard>(`/hazards/${encodeURIComponent(id)}/reinspection`, body);
      toast(r.status === 'closed' ? '复查合格，隐患已销号' : r.status === 'escalated' ? '复查不合格，已移交立案' : '复查不合格，已重新责令整改', 'ok');
      reload();
    });
    reinspectForm.setHidden('new_deadline', true);
  }

  mount(
    outlet,
    pageHeader(
      `隐患：${x.enterprise_name}`,
      h('a', { class: 'btn', href: `/api/v1/hazards/${encodeURIComponent(x.id)}/order?format=pdf`, target: '_blank', rel: 'noopener', testid: 'order-pdf' }, '整改指令书'),
      x.reinspection_number
        ? h('a', { class: 'btn', href: `/api/v1/hazards/${encodeURIComponent(x.id)}/reinspection-opinion?format=pdf`, target: '_blank', rel: 'noopener', testid: 'opinion-pdf' }, '复查意见书')
        : null,
      back,
    ),
    h(
      'div',
      { class: 'panel', testid: 'hazard-detail', 'data-id': x.id },
      h('p', { class: 'hazard-desc', testid: 'hazard-description' }, x.description),
      facts,
    ),
    rectifyForm ? h('section', { class: 'panel', testid: 'rectify-panel' }, h('h2', { class: 'wb-title' }, '整改情况上报'), rectifyForm.el) : null,
    reinspectForm ? h('section', { class: 'panel', testid: 'reinspect-panel' }, h('h2', { class: 'wb-title' }, '复查'), reinspectForm.el) : null,
  );
}

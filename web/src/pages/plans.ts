// 执法计划 — monthly, quarterly and annual inspection plans: list with filters, the monthly
// proposal generated from the data, drafting by hand, the publication review (submit, approve,
// return), execution tracking of each planned visit, and the roll-up of a period to the corps.

import { ApiError, del, get, post } from '../api';
import { h, mount, select } from '../dom';
import { fmtDateTime, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import { navigate, type RouteContext } from '../router';
import { can, session } from '../session';
import type { Enterprise, Page } from '../types';
import { confirmDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';

interface Progress {
  visits: number;
  completed: number;
  in_progress: number;
  not_started: number;
  completion_pct: number;
}

interface Plan {
  id: string;
  number: string | null;
  org_unit_id: string;
  unit_name: string;
  period_kind: string;
  period: string;
  title: string;
  notes: string;
  target_visits: number;
  status: string;
  generated: boolean;
  return_reason: string | null;
  submitted_by: string | null;
  submitted_at: string | null;
  published_at: string | null;
  created_at: string;
  version: number;
  progress: Progress;
}

interface PlanVisit {
  id: string;
  enterprise_id: string;
  enterprise_name: string;
  supervision_grade: string;
  reason: string;
  hazard_id: string | null;
  hazard_number: string | null;
  note: string;
  inspection_code: string | null;
  inspection_id: string | null;
  status: string;
}

interface PlanDetail extends Plan {
  visits: PlanVisit[];
}

interface RollupRow extends Progress {
  org_unit_id: string;
  unit_name: string;
  plans: number;
  target_visits: number;
  unplanned_inspections: number;
  hazards_found: number;
}

interface Rollup {
  period: string;
  period_kind: string;
  rows: RollupRow[];
  total: RollupRow;
}

export const PLAN_STATUS: Record<string, string> = { draft: '草稿', review: '待审核', published: '已发布' };
export const PERIOD_KIND: Record<string, string> = { month: '月度', quarter: '季度', year: '年度' };
const VISIT_REASON: Record<string, string> = {
  hazard_recheck: '隐患复查',
  key_unit: '重点单位',
  grade: '高监管等级',
  manual: '人工添加',
};
const VISIT_STATUS: Record<string, string> = { not_started: '未开始', in_progress: '检查中', completed: '已完成', cancelled: '已取消' };

function planBadge(p: Plan): HTMLElement {
  return badge(label(PLAN_STATUS, p.status), p.status === 'published' ? 'ok' : p.status === 'review' ? 'warn' : 'muted');
}

function progressBar(p: Progress): HTMLElement {
  return h(
    'span',
    { class: 'progress-cell', title: `已完成 ${p.completed}，检查中 ${p.in_progress}，未开始 ${p.not_started}` },
    h('span', { class: 'progress-track' }, h('span', { class: 'progress-fill', style: `width:${Math.min(100, p.completion_pct)}%` })),
    ` ${p.completed}/${p.visits}（${p.completion_pct}%）`,
  );
}

/** The current month in Asia/Shanghai, `YYYY-MM`, shifted by `months`. */
function shanghaiMonth(months = 0): string {
  const d = new Date(Date.now() + 8 * 3_600_000);
  const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 1));
  return m.toISOString().slice(0, 7);
}

const PERIOD_RE = /^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$/;

const DEFAULTS = { tab: 'list', period_kind: '', status: '', period: '', rollup: '' };

export async function renderPlanList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('执法计划');
  const state = readState(ctx.query, DEFAULTS);
  if (!state.rollup) state.rollup = shanghaiMonth().slice(0, 4);
  const run = latest();
  const tabs = h(
    'div',
    { class: 'tabs' },
    [
      ['list', '计划列表'],
      ['rollup', '执行汇总'],
    ].map(([k, l]) =>
      h('button', { type: 'button', class: `tab${state.tab === k ? ' active' : ''}`, testid: `plan-tab-${k}`, onclick: () => { state.tab = k; writeState(state, DEFAULTS); void renderPlanList(outlet, { ...ctx, query: new URLSearchParams({ ...state }) }); } }, l),
    ),
  );
  const actions = can('plan.write')
    ? h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'btn primary', testid: 'plan-propose-open', onclick: () => openForm('propose') }, '生成月度计划建议'),
        h('button', { type: 'button', class: 'btn', testid: 'plan-new-open', onclick: () => openForm('new') }, '新建计划'))
    : null;
  const formBox = h('div');
  const listBox = h('div', { class: 'list-box' });

  function openForm(which: 'propose' | 'new'): void {
    const close = () => formBox.replaceChildren();
    if (which === 'propose') {
      const f = new Form(
        [
          { name: 'period', label: '计划月份', type: 'month', required: true, value: shanghaiMonth(1), testid: 'plan-propose-period' },
          { name: 'max_visits', label: '最多安排检查（家）', type: 'number', required: true, value: 30, testid: 'plan-propose-max', validate: (v) => (Number(v) >= 1 && Number(v) <= 500 ? null : '1–500') },
        ],
        { submitLabel: '生成建议', submitTestid: 'plan-propose-submit', errorTestid: 'plan-propose-error', fieldLabels: { period: '计划月份', max_visits: '最多安排检查' } },
      ).onSubmit(async (v) => {
        try {
          const p = await post<PlanDetail>('/plans/proposal', { period: v.period, max_visits: Number(v.max_visits) });
          toast(`已生成计划建议：${p.visits.length} 家企业`, 'ok');
          navigate(`/plans/${encodeURIComponent(p.id)}`);
        } catch (e) {
          if (e instanceof ApiError && e.status === 409 && typeof e.body.plan_id === 'string') {
            f.showError('本单位该月已有计划。');
            formBox.appendChild(h('a', { class: 'btn', href: `#/plans/${encodeURIComponent(e.body.plan_id)}`, testid: 'plan-existing' }, '打开已有计划'));
            return;
          }
          throw e;
        }
      });
      mount(formBox, h('section', { class: 'panel', testid: 'plan-propose-form' },
        h('h2', { class: 'wb-title' }, '生成月度计划建议'),
        h('p', { class: 'hint' }, '按数据生成：当月到期需复查的隐患、本年度尚未检查的重点单位、C/D级企业按“综合查一次”频次到期的检查；已达年度检查上限的企业不安排。生成后为草稿，可增删后提交审核。'),
        f.el,
        h('button', { type: 'button', class: 'btn', onclick: close }, '取消')));
    } else {
      const f = new Form(
        [
          { name: 'kind', label: '计划类型', type: 'select', required: true, value: 'quarter', testid: 'plan-new-kind', options: Object.entries(PERIOD_KIND).map(([value, l]) => ({ value, label: l })) },
          { name: 'period', label: '计划期间', required: true, placeholder: '2026-12 / 2026-Q4 / 2026', testid: 'plan-new-period', validate: (v) => (PERIOD_RE.test(v.trim()) ? null : '格式：月度 2026-12，季度 2026-Q4，年度 2026') },
          { name: 'target_visits', label: '计划检查数', type: 'number', value: 0, testid: 'plan-new-target', validate: (v) => (Number(v) >= 0 ? null : '不能为负数') },
          { name: 'title', label: '标题（可空，自动生成）', span: 2, maxlength: 100, testid: 'plan-new-title' },
          { name: 'notes', label: '说明', type: 'textarea', span: 3, maxlength: 2000, testid: 'plan-new-notes' },
        ],
        { submitLabel: '创建草稿', submitTestid: 'plan-new-submit', errorTestid: 'plan-new-error', fieldLabels: { period: '计划期间', target_visits: '计划检查数', title: '标题', notes: '说明' } },
      ).onSubmit(async (v) => {
        const period = v.period.trim().toUpperCase();
        const kind = period.length === 4 ? 'year' : period.includes('Q') ? 'quarter' : 'month';
        if (kind !== v.kind) {
          f.setFieldError('period', `期间格式与计划类型（${label(PERIOD_KIND, v.kind)}）不一致`);
          return;
        }
        const p = await post<PlanDetail>('/plans', { period, target_visits: Number(v.target_visits || 0), title: v.title.trim() || null, notes: v.notes.trim() });
        toast('计划草稿已创建', 'ok');
        navigate(`/plans/${encodeURIComponent(p.id)}`);
      });
      mount(formBox, h('section', { class: 'panel', testid: 'plan-new-form' }, h('h2', { class: 'wb-title' }, '新建计划'), f.el, h('button', { type: 'button', class: 'btn', onclick: close }, '取消')));
    }
  }

  if (state.tab === 'rollup') {
    const period = h('input', { type: 'text', value: state.rollup, testid: 'rollup-period', placeholder: '2026 / 2026-Q4 / 2026-12', maxlength: 7 });
    const bar = filterBar(filter('期间', period), h('button', { type: 'submit', class: 'btn primary', testid: 'rollup-submit' }, '汇总'));
    bar.addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.rollup = period.value.trim().toUpperCase();
      void loadRollup();
    });
    mount(outlet, pageHeader('执法计划', actions), tabs, formBox, bar, listBox);
    await loadRollup();
    return;
  }

  const kind = select(optionsOf(PERIOD_KIND), { testid: 'filter-kind' }, state.period_kind);
  const status = select(optionsOf(PLAN_STATUS), { testid: 'filter-status' }, state.status);
  const period = h('input', { type: 'text', value: state.period, testid: 'filter-period', placeholder: '2026 / 2026-Q4', maxlength: 7, class: 'narrow' });
  const bar = filterBar(filter('类型', kind), filter('状态', status), filter('期间', period), h('button', { type: 'submit', class: 'btn', testid: 'filter-submit' }, '查询'));
  const apply = () => {
    state.period_kind = kind.value;
    state.status = status.value;
    state.period = period.value.trim().toUpperCase();
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const s of [kind, status]) s.addEventListener('change', apply);
  mount(outlet, pageHeader('执法计划', actions), tabs, formBox, bar, listBox);

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    if (state.period && !PERIOD_RE.test(state.period)) {
      mount(listBox, errorBox('期间格式：2026、2026-Q4 或 2026-12'));
      return;
    }
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const { tab: _tab, rollup: _rollup, ...q } = state;
    const r = await run(get<Page<Plan>>('/plans', q));
    if (r.stale) return;
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载计划失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    mount(
      listBox,
      dataTable<Plan>({
        testid: 'plan-table',
        rowTestid: 'plan-row',
        rowId: (p) => p.id,
        rows: pg.items,
        onRowClick: (p) => navigate(`/plans/${encodeURIComponent(p.id)}`),
        empty: '没有符合条件的计划',
        columns: [
          { title: '期间', width: '90px', className: 'mono', render: (p) => p.period },
          { title: '类型', width: '60px', render: (p) => label(PERIOD_KIND, p.period_kind) },
          { title: '标题', className: 'ellipsis wide', tooltip: (p) => p.title, render: (p) => h('a', { class: 'row-link', href: `#/plans/${encodeURIComponent(p.id)}` }, p.title) },
          { title: '单位', className: 'ellipsis', render: (p) => p.unit_name },
          { title: '计划检查', width: '80px', render: (p) => String(p.progress.visits || p.target_visits) },
          { title: '执行进度', width: '190px', render: (p) => (p.progress.visits ? progressBar(p.progress) : '—') },
          { title: '状态', width: '110px', render: (p) => h('span', null, planBadge(p), p.generated && p.status === 'draft' ? badge('建议', 'info') : null, p.return_reason && p.status === 'draft' ? badge('退回', 'warn') : null) },
        ],
      }),
      pager({ page: pg.page, pageSize: pg.page_size, total: pg.total, onChange: (p, s) => { state.page = String(p); state.page_size = String(s); void load(); } }),
    );
  }

  async function loadRollup(): Promise<void> {
    writeState(state, DEFAULTS);
    if (!PERIOD_RE.test(state.rollup)) {
      mount(listBox, errorBox('期间格式：2026、2026-Q4 或 2026-12'));
      return;
    }
    mount(listBox, loadingBox());
    const r = await run(get<Rollup>('/plans/rollup', { period: state.rollup }));
    if (r.stale) return;
    if (r.error !== undefined) {
      mount(listBox, errorBox(`汇总失败：${errMsg(r.error)}`, () => void loadRollup()));
      return;
    }
    const ru = r.value!;
    mount(
      listBox,
      dataTable<RollupRow>({
        testid: 'rollup-table',
        rowTestid: 'rollup-row',
        rowId: (x) => x.org_unit_id || 'total',
        rows: [...ru.rows, ru.total],
        empty: '该期间没有已发布的计划',
        columns: [
          { title: '单位', render: (x) => (x.org_unit_id ? x.unit_name : h('strong', null, x.unit_name)) },
          { title: '计划数', width: '64px', render: (x) => String(x.plans) },
          { title: '目标检查', width: '76px', render: (x) => String(x.target_visits) },
          { title: '计划检查', width: '76px', render: (x) => String(x.visits) },
          { title: '已完成', width: '64px', render: (x) => String(x.completed) },
          { title: '检查中', width: '64px', render: (x) => String(x.in_progress) },
          { title: '未开始', width: '64px', render: (x) => String(x.not_started) },
          { title: '完成率', width: '190px', render: (x) => progressBar(x) },
          { title: '发现隐患', width: '76px', render: (x) => String(x.hazards_found) },
          { title: '计划外检查', width: '86px', render: (x) => String(x.unplanned_inspections) },
        ],
      }),
    );
  }
  await load();
}

export async function renderPlanDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  setTitle('执法计划');
  const back = h('a', { class: 'btn', href: listHref('/plans'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let p: PlanDetail;
  try {
    p = await get<PlanDetail>(`/plans/${encodeURIComponent(id)}`);
  } catch (e) {
    mount(outlet, pageHeader('执法计划', back), errorBox(e instanceof ApiError && e.status === 404 ? '该计划不存在或不在您的管辖范围内。' : `加载失败：${errMsg(e)}`));
    return;
  }
  const reload = () => void renderPlanDetail(outlet, ctx);
  const act = async (path: string, body: unknown, done: string) => {
    try {
      await post(`/plans/${encodeURIComponent(id)}/${path}`, body);
      toast(done, 'ok');
      reload();
    } catch (e) {
      toast(`操作失败：${errMsg(e)}`, 'error', 8000);
    }
  };
  const editable = can('plan.write') && (p.status === 'draft' || p.status === 'published');
  const buttons: HTMLElement[] = [];
  if (p.status === 'draft' && can('plan.write')) {
    buttons.push(h('button', { type: 'button', class: 'btn primary', testid: 'plan-submit', onclick: () => void act('submit', {}, '已提交审核') }, '提交审核'));
    buttons.push(
      h('button', {
        type: 'button',
        class: 'btn danger',
        testid: 'plan-delete',
        onclick: async () => {
          if (!(await confirmDialog('删除该计划草稿？', '删除'))) return;
          try {
            await del(`/plans/${encodeURIComponent(id)}`);
            toast('草稿已删除', 'ok');
            navigate('/plans');
          } catch (e) {
            toast(`删除失败：${errMsg(e)}`, 'error', 8000);
          }
        },
      }, '删除草稿'),
    );
  }
  if (p.status === 'review' && can('plan.approve')) {
    const own = p.submitted_by !== null && p.submitted_by === session.account?.id;
    buttons.push(h('button', { type: 'button', class: 'btn primary', testid: 'plan-approve', disabled: own, title: own ? '提交人不能审核自己提交的计划' : '', onclick: () => void act('approve', {}, '计划已发布，检查编码已生成') }, '审核通过并发布'));
    buttons.push(
      h('button', {
        type: 'button',
        class: 'btn danger',
        testid: 'plan-return',
        onclick: () => {
          const reason = window.prompt('退回理由');
          if (reason && reason.trim()) void act('return', { reason: reason.trim() }, '已退回');
        },
      }, '退回修改'),
    );
  }

  const visits = dataTable<PlanVisit>({
    testid: 'plan-visits',
    rowTestid: 'plan-visit-row',
    rowId: (v) => v.id,
    rows: p.visits,
    empty: '尚未安排检查企业',
    columns: [
      { title: '企业', className: 'ellipsis wide', tooltip: (v) => v.enterprise_name, render: (v) => h('a', { href: `#/enterprises/${encodeURIComponent(v.enterprise_id)}` }, v.enterprise_name) },
      { title: '等级', width: '48px', render: (v) => v.supervision_grade },
      { title: '原因', width: '96px', render: (v) => label(VISIT_REASON, v.reason) },
      { title: '说明', className: 'ellipsis wide', tooltip: (v) => v.note, render: (v) => (v.hazard_id ? h('a', { href: `#/hazards/${encodeURIComponent(v.hazard_id)}` }, v.note) : v.note || '—') },
      { title: '检查编码', width: '170px', className: 'mono', render: (v) => v.inspection_code ?? '发布后生成' },
      {
        title: '执行',
        width: '90px',
        render: (v) => {
          const b = badge(label(VISIT_STATUS, v.status), v.status === 'completed' ? 'ok' : v.status === 'in_progress' ? 'info' : v.status === 'cancelled' ? 'muted' : 'warn');
          return v.inspection_id ? h('a', { href: `#/inspections/${encodeURIComponent(v.inspection_id)}` }, b) : b;
        },
      },
      {
        title: '',
        width: '64px',
        render: (v) =>
          editable && !v.inspection_id
            ? h('button', {
                type: 'button',
                class: 'btn small danger',
                testid: 'plan-visit-remove',
                onclick: async () => {
                  if (!(await confirmDialog(`从计划中移除“${v.enterprise_name}”？`, '移除'))) return;
                  try {
                    await del(`/plans/${encodeURIComponent(id)}/visits/${encodeURIComponent(v.id)}`);
                    reload();
                  } catch (e) {
                    toast(`移除失败：${errMsg(e)}`, 'error', 8000);
                  }
                },
              }, '移除')
            : null,
      },
    ],
  });

  const panels: HTMLElement[] = [];
  if (editable) {
    const found = new Map<string, Enterprise>();
    const f = new Form(
      [
        { name: 'enterprise', label: '企业', required: true, span: 2, testid: 'plan-visit-enterprise', placeholder: '输入企业名称或信用代码搜索', suggestions: [] },
        { name: 'note', label: '说明', maxlength: 500, testid: 'plan-visit-note' },
      ],
      { submitLabel: p.status === 'published' ? '追加检查（生成检查编码）' : '添加', submitTestid: 'plan-visit-add', errorTestid: 'plan-visit-error', fieldLabels: { enterprise_id: '企业', note: '说明' } },
    ).onSubmit(async (v) => {
      const ent = found.get(v.enterprise.trim());
      if (!ent) {
        f.setFieldError('enterprise', '请从搜索结果中选择企业');
        return;
      }
      await post(`/plans/${encodeURIComponent(id)}/visits`, { enterprise_id: ent.id, note: v.note.trim() });
      toast('已添加', 'ok');
      reload();
    });
    const input = f.control('enterprise') as HTMLInputElement;
    let timer = 0;
    input.addEventListener('input', () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(async () => {
        const q = input.value.trim();
        if (q.length < 2 || !input.list) return;
        try {
          const pg = await get<Page<Enterprise>>('/enterprises', { q, page_size: 20 });
          input.list.replaceChildren();
          for (const e of pg.items) {
            found.set(e.name, e);
            input.list.appendChild(h('option', { value: e.name }, e.uscc));
          }
        } catch {
          /* suggestions are a convenience */
        }
      }, 250);
    });
    panels.push(h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, p.status === 'published' ? '计划调整：追加检查' : '添加检查企业'), f.el));
  }

  mount(
    outlet,
    pageHeader(p.title, ...buttons, back),
    h('div', { class: 'panel', testid: 'plan-detail', 'data-id': p.id, 'data-status': p.status },
      h('dl', { class: 'meta' },
        ([
          ['计划编号', p.number ?? '发布后生成'],
          ['单位', p.unit_name],
          ['类型', label(PERIOD_KIND, p.period_kind)],
          ['期间', p.period],
          ['状态', planBadge(p)],
          ['目标检查数', String(p.target_visits)],
          ['执行进度', p.progress.visits ? progressBar(p.progress) : '—'],
          ['提交审核', fmtDateTime(p.submitted_at)],
          ['发布时间', fmtDateTime(p.published_at)],
          ['退回理由', p.return_reason ?? '—'],
        ] as [string, Node | string][]).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
      p.notes ? h('p', { class: 'hazard-desc' }, p.notes) : null),
    h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, `计划检查（${p.visits.length}）`), visits),
    panels,
  );
}

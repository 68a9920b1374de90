// 审计日志 — filters and table.

import { get } from '../api';
import { h, mount, select } from '../dom';
import { AUDIT_OUTCOME, fmtDateTime, label, shanghaiLocalToUtc, utcToShanghaiLocal } from '../format';
import { auditActionLabel } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import type { RouteContext } from '../router';
import type { AuditEntry, Page } from '../types';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { errMsg, filter, filterBar, latest, optionsOf, readState, writeState } from './list-util';

const DEFAULTS = { username: '', action: '', outcome: '', from: '', to: '' };

export async function renderAudit(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('审计日志');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();

  const username = h('input', { type: 'text', value: state.username, testid: 'audit-username', maxlength: 64, class: 'short' });
  const action = h('input', { type: 'text', value: state.action, testid: 'audit-action', maxlength: 64, placeholder: '如 auth.login', class: 'short' });
  const outcome = select(optionsOf(AUDIT_OUTCOME), { testid: 'audit-outcome' }, state.outcome);
  const from = h('input', { type: 'datetime-local', value: state.from ? utcToShanghaiLocal(state.from) : '', testid: 'audit-from', title: '北京时间' });
  const to = h('input', { type: 'datetime-local', value: state.to ? utcToShanghaiLocal(state.to) : '', testid: 'audit-to', title: '北京时间' });
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true, testid: 'audit-filter-error' });
  const bar = filterBar(
    filter('用户名', username),
    filter('操作', action),
    filter('结果', outcome),
    filter('起始（北京时间）', from),
    filter('截止', to),
    h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询'),
    h(
      'button',
      {
        type: 'button',
        class: 'btn',
        onclick: () => {
          username.value = action.value = from.value = to.value = '';
          outcome.value = '';
          bar.requestSubmit();
        },
      },
      '重置',
    ),
  );
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const f = from.value ? shanghaiLocalToUtc(from.value) : '';
    const t = to.value ? shanghaiLocalToUtc(to.value) : '';
    if ((from.value && !f) || (to.value && !t)) {
      err.textContent = '时间格式不正确';
      err.hidden = false;
      return;
    }
    if (f && t && f > t) {
      err.textContent = '起始时间不能晚于截止时间';
      err.hidden = false;
      return;
    }
    state.username = username.value.trim();
    state.action = action.value.trim();
    state.outcome = outcome.value;
    state.from = f;
    state.to = t;
    state.page = '1';
    void load();
  });
  outcome.addEventListener('change', () => bar.requestSubmit());

  const listBox = h('div', { class: 'list-box' });
  mount(outlet, pageHeader('审计日志'), bar, err, listBox);

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<AuditEntry>>('/audit', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载审计日志失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    mount(
      listBox,
      dataTable<AuditEntry>({
        testid: 'audit-table',
        rowTestid: 'audit-row',
        rowId: (a) => a.id,
        rows: pg.items,
        empty: '没有符合条件的审计记录',
        columns: [
          { title: '时间', width: '140px', className: 'nowrap', render: (a) => fmtDateTime(a.at) },
          { title: '用户', width: '100px', className: 'ellipsis', render: (a) => a.username ?? '—' },
          { title: '操作', width: '170px', className: 'ellipsis', tooltip: (a) => a.action, render: (a) => auditActionLabel(a.action) },
          {
            title: '对象',
            width: '180px',
            className: 'ellipsis mono',
            tooltip: (a) => `${a.target_kind ?? ''} ${a.target_id ?? ''}`,
            render: (a) => (a.target_kind || a.target_id ? `${a.target_kind ?? ''}${a.target_id ? `:${a.target_id}` : ''}` : '—'),
          },
          { title: 'IP', width: '120px', className: 'mono', render: (a) => a.ip ?? '—' },
          {
            title: '结果',
            width: '64px',
            render: (a) => badge(label(AUDIT_OUTCOME, a.outcome), a.outcome === 'success' ? 'ok' : a.outcome === 'failure' || a.outcome === 'denied' ? 'bad' : 'muted'),
          },
          { title: '详情', render: (a) => detailsView(a.details) },
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

function detailsView(details: unknown): HTMLElement | string {
  if (details === null || details === undefined) return '—';
  if (typeof details !== 'object') return String(details);
  const compact = JSON.stringify(details);
  if (compact === '{}' || compact === '[]') return '—';
  if (compact.length <= 80) return h('code', { class: 'details' }, compact);
  return h('details', { class: 'details' }, h('summary', null, `${compact.slice(0, 60)}…`), h('pre', { class: 'json' }, JSON.stringify(details, null, 2)));
}

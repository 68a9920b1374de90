// 工单 — inbox / outbox, dispatching to one or many units, receive, reply, return, accept,
// remind, close.

import { ApiError, get, post } from '../api';
import { h, mount } from '../dom';
import { fmtDate, fmtDateTime, shanghaiDatePlus } from '../format';
import { pageHeader, setTitle } from '../layout';
import { navigate, type RouteContext } from '../router';
import { can, orgUnitsOrEmpty, session } from '../session';
import type { Page } from '../types';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, latest, listHref, readState, writeState } from './list-util';

interface Recipient {
  unit_id: string;
  unit_name: string;
  status: string;
  received_at: string | null;
  reply: string | null;
  replied_at: string | null;
  returned_reason: string | null;
  accepted_at: string | null;
  reminded_at: string | null;
  reminders: number;
}

interface WorkOrder {
  id: string;
  number: string;
  title: string;
  body: string;
  from_unit_id: string;
  from_unit_name: string;
  deadline: string;
  status: string;
  close_note: string | null;
  closed_at: string | null;
  created_at: string;
  recipients: Recipient[];
  attachment_keys: string[];
  overdue: boolean;
}

const RECIPIENT_STATUS: Record<string, string> = {
  dispatched: '已派送',
  received: '已签收',
  replied: '已回复',
  returned: '已退回',
  accepted: '已办结',
};

function orderBadge(o: WorkOrder): HTMLElement {
  if (o.status === 'closed') return badge('已关闭', 'muted');
  return o.overdue ? badge('逾期', 'bad') : badge('办理中', 'info');
}

const DEFAULTS = { box: 'inbox', status: '' };

export async function renderWorkOrderList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('工单');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const tabs = h(
    'div',
    { class: 'tabs' },
    [
      ['inbox', '收件箱'],
      ['outbox', '发件箱'],
    ].map(([k, l]) =>
      h('button', { type: 'button', class: `tab${state.box === k ? ' active' : ''}`, testid: `wo-tab-${k}`, onclick: () => { state.box = k; state.page = '1'; void renderWorkOrderList(outlet, { ...ctx, query: new URLSearchParams({ box: k }) }); } }, l),
    ),
  );
  const listBox = h('div', { class: 'list-box' });
  mount(outlet, pageHeader('工单', can('work_order.write') ? h('a', { class: 'btn primary', href: '#/work-orders/new', testid: 'wo-new' }, '派发工单') : null), tabs, listBox);

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<WorkOrder>>('/work-orders', state));
    if (r.stale) return;
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载工单失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    mount(
      listBox,
      dataTable<WorkOrder>({
        testid: 'wo-table',
        rowTestid: 'wo-row',
        rowId: (o) => o.id,
        rows: pg.items,
        onRowClick: (o) => navigate(`/work-orders/${encodeURIComponent(o.id)}`),
        empty: state.box === 'inbox' ? '收件箱为空' : '发件箱为空',
        columns: [
          { title: '编号', className: 'mono', width: '150px', render: (o) => h('a', { class: 'row-link', href: `#/work-orders/${encodeURIComponent(o.id)}` }, o.number) },
          { title: '标题', className: 'ellipsis wide', tooltip: (o) => o.title, render: (o) => o.title },
          { title: '派发单位', className: 'ellipsis', render: (o) => o.from_unit_name },
          { title: '接收单位', className: 'ellipsis', render: (o) => o.recipients.map((r) => `${r.unit_name}（${RECIPIENT_STATUS[r.status] ?? r.status}）`).join('、') },
          { title: '办理期限', width: '100px', render: (o) => fmtDate(o.deadline) },
          { title: '状态', width: '80px', render: orderBadge },
        ],
      }),
      pager({ page: pg.page, pageSize: pg.page_size, total: pg.total, onChange: (p, s) => { state.page = String(p); state.page_size = String(s); void load(); } }),
    );
  }
  await load();
}

export async function renderWorkOrderNew(outlet: HTMLElement): Promise<void> {
  setTitle('派发工单');
  const back = h('a', { class: 'btn', href: listHref('/work-orders'), testid: 'back' }, '← 返回列表');
  const units = (await orgUnitsOrEmpty()).filter((u) => u.kind === 'brigade' || u.kind === 'corps').filter((u) => u.id !== session.account?.org_unit_id);
  const boxes = units.map((u) => h('label', { class: 'chk' }, h('input', { type: 'checkbox', value: u.id, testid: 'wo-recipient' }), ` ${u.name}`));
  const err = h('div', { class: 'field-error' });
  const form = new Form(
    [
      { name: 'title', label: '标题', required: true, span: 2, maxlength: 200, testid: 'wo-title' },
      { name: 'deadline', label: '办理期限', type: 'date', required: true, value: shanghaiDatePlus(7), testid: 'wo-deadline', validate: (v) => (v < shanghaiDatePlus(0) ? '期限不能早于今天' : null) },
      { name: 'body', label: '内容', type: 'textarea', required: true, span: 3, maxlength: 10000, testid: 'wo-body' },
    ],
    { submitLabel: '派发', submitTestid: 'wo-submit', errorTestid: 'wo-error', fieldLabels: { recipient_unit_ids: '接收单位' } },
  ).onSubmit(async (v) => {
    const ids = boxes.map((b) => b.querySelector('input')!).filter((i) => i.checked).map((i) => i.value);
    err.textContent = ids.length ? '' : '请选择至少一个接收单位';
    if (!ids.length) return;
    const o = await post<WorkOrder>('/work-orders', { title: v.title.trim(), body: v.body.trim(), deadline: v.deadline, recipient_unit_ids: ids });
    toast('工单已派发', 'ok');
    navigate(`/work-orders/${encodeURIComponent(o.id)}`);
  });
  form.el.insertBefore(h('div', { class: 'field span-3' }, h('label', { class: 'required' }, '接收单位（可多选）'), h('div', { class: 'officer-picks' }, boxes), err), form.el.querySelector('.form-actions'));
  mount(outlet, pageHeader('派发工单', back), h('div', { class: 'panel' }, form.el));
}

export async function renderWorkOrderDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  setTitle('工单');
  const back = h('a', { class: 'btn', href: listHref('/work-orders'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let o: WorkOrder;
  try {
    o = await get<WorkOrder>(`/work-orders/${encodeURIComponent(id)}`);
  } catch (e) {
    mount(outlet, pageHeader('工单', back), errorBox(e instanceof ApiError && e.status === 404 ? '该工单不存在或与您的单位无关。' : `加载失败：${errMsg(e)}`));
    return;
  }
  const reload = () => void renderWorkOrderDetail(outlet, ctx);
  const act = async (path: string, body: unknown, done: string) => {
    try {
      await post(`/work-orders/${encodeURIComponent(id)}/${path}`, body);
      toast(done, 'ok');
      reload();
    } catch (e) {
      toast(`操作失败：${errMsg(e)}`, 'error', 8000);
    }
  };
  const me = session.account?.org_unit_id;
  const isSender = can('work_order.write') && (o.from_unit_id === me || session.account?.corps_level === true);
  const mine = o.recipients.find((r) => r.unit_id === me);
  const open = o.status === 'open';

  const recipients = dataTable<Recipient>({
    testid: 'wo-recipients',
    rowTestid: 'wo-recipient-row',
    rowId: (r) => r.unit_id,
    rows: o.recipients,
    columns: [
      { title: '接收单位', render: (r) => r.unit_name },
      { title: '状态', width: '80px', render: (r) => badge(RECIPIENT_STATUS[r.status] ?? r.status, r.status === 'accepted' ? 'ok' : r.status === 'returned' ? 'warn' : 'info') },
      { title: '回复', className: 'wide', render: (r) => h('span', null, r.reply ?? '—', r.returned_reason ? h('div', { class: 'warn-text' }, `退回：${r.returned_reason}`) : null) },
      { title: '回复时间', width: '150px', render: (r) => fmtDateTime(r.replied_at) },
      { title: '催办', width: '60px', render: (r) => (r.reminders ? `${r.reminders} 次` : '—') },
      {
        title: '',
        width: '130px',
        render: (r) =>
          isSender && open && r.status === 'replied'
            ? h('span', { class: 'row-actions' },
                h('button', { type: 'button', class: 'btn small', testid: 'wo-accept', onclick: () => void act(`recipients/${encodeURIComponent(r.unit_id)}/accept`, {}, '已办结') }, '办结'),
                h('button', { type: 'button', class: 'btn small danger', testid: 'wo-return', onclick: () => { const reason = window.prompt('退回理由'); if (reason && reason.trim()) void act(`recipients/${encodeURIComponent(r.unit_id)}/return`, { reason: reason.trim() }, '已退回'); } }, '退回'))
            : null,
      },
    ],
  });

  const panels: HTMLElement[] = [];
  if (open && mine && can('work_order.write')) {
    if (mine.status === 'dispatched') {
      panels.push(h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '签收'), h('button', { type: 'button', class: 'btn primary', testid: 'wo-receive', onclick: () => void act('receive', {}, '已签收') }, '签收工单')));
    } else if (mine.status === 'received' || mine.status === 'returned') {
      const f = new Form([{ name: 'text', label: '回复内容', type: 'textarea', required: true, span: 3, maxlength: 10000, testid: 'wo-reply-text' }], { submitLabel: '回复', submitTestid: 'wo-reply-submit', errorTestid: 'wo-reply-error', columns: 1 }).onSubmit(async (v) => {
        await post(`/work-orders/${encodeURIComponent(id)}/reply`, { text: v.text.trim() });
        toast('已回复', 'ok');
        reload();
      });
      panels.push(h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '回复'), f.el));
    }
  }
  if (open && isSender) {
    panels.push(
      h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '办理'),
        h('div', { class: 'form-actions' },
          h('button', { type: 'button', class: 'btn', testid: 'wo-remind', onclick: () => void act('remind', {}, '已催办未回复的单位') }, '催办'),
          h('button', { type: 'button', class: 'btn primary', testid: 'wo-close', onclick: () => void act('close', { note: '已办结' }, '工单已关闭') }, '关闭工单'))),
    );
  }
  mount(
    outlet,
    pageHeader(`工单：${o.title}`, back),
    h('div', { class: 'panel', testid: 'wo-detail', 'data-id': o.id },
      h('dl', { class: 'meta' },
        [['编号', o.number], ['派发单位', o.from_unit_name], ['办理期限', fmtDate(o.deadline)], ['派发时间', fmtDateTime(o.created_at)], ['状态', orderBadge(o)], ['关闭说明', o.close_note ?? '—']]
          .flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
      h('p', { class: 'hazard-desc' }, o.body)),
    h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '接收单位'), recipients),
    panels,
  );
}

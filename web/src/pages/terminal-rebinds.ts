// 终端绑定 — JT/T 808 terminals that tried to register again while their vehicle is bound to a
// terminal (refused, result 3), one row per terminal id and source address, and the release that
// lets exactly one of them through within 30 minutes (a replaced or reset terminal). Anyone else
// registering with the vehicle's number meanwhile is still refused. Device managers only; every
// release is audited.

import { get, post } from '../api';
import { h, mount } from '../dom';
import { fmtMs } from '../format';
import { pageHeader, setTitle } from '../layout';
import { can, orgUnitsOrEmpty } from '../session';
import type { PendingRebind, RegisterAttempt } from '../types';
import { confirmDialog } from '../ui/dialog';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, latest } from './list-util';

interface Row {
  v: PendingRebind;
  a: RegisterAttempt | null;
}

export async function renderTerminalRebinds(outlet: HTMLElement): Promise<void> {
  setTitle('终端绑定');
  const run = latest();
  const units = await orgUnitsOrEmpty();
  const orgName = (id: string) => units.find((u) => u.id === id)?.name ?? id;
  const listBox = h('div', { class: 'list-box' });
  mount(
    outlet,
    pageHeader('终端绑定', h('button', { type: 'button', class: 'btn', testid: 'rebinds-reload', onclick: () => void load() }, '刷新')),
    h(
      'p',
      { class: 'page-desc' },
      '已绑定终端的车辆再次收到注册请求（0x0100）时，平台按标准拒绝（结果 3：车辆已被注册），并按终端ID和来源地址在此列出。' +
        '核实是更换或重置的终端后，对该条记录点击“允许重新绑定”：30 分钟内仅此终端从此地址的注册获得新的鉴权码，旧鉴权码和旧连接随即失效；' +
        '其他来源的注册仍被拒绝。操作记入审计日志。',
    ),
    listBox,
  );

  async function release(v: PendingRebind, a: RegisterAttempt): Promise<void> {
    const ok = await confirmDialog(
      `允许车辆 ${v.plate} 的终端 ${a.terminal_id}（来源 ${a.source_ip}）在 30 分钟内重新注册？旧终端的鉴权码将失效，来源不明请勿操作。`,
      '允许重新绑定',
      true,
    );
    if (!ok) return;
    try {
      await post<PendingRebind>(`/vehicles/${encodeURIComponent(v.vehicle_id)}/rebind`, { attempt_id: a.id });
      toast(`已允许 ${v.plate} 的终端 ${a.terminal_id} 重新绑定（30 分钟内有效）`, 'ok');
    } catch (e) {
      toast(`操作失败：${errMsg(e)}`, 'error');
    }
    await load();
  }

  async function load(): Promise<void> {
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<{ items: PendingRebind[] }>('/vehicles/rebinds'));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const now = Date.now();
    const canRelease = can('device.manage');
    const rows: Row[] = r.value!.items.flatMap((v): Row[] =>
      v.recent_attempts.length ? v.recent_attempts.map((a) => ({ v, a })) : [{ v, a: null }],
    );
    const released = (row: Row) =>
      !!row.a &&
      !!row.v.released_for &&
      (row.v.released_until_ms ?? 0) > now &&
      row.v.released_for.terminal_id === row.a.terminal_id &&
      row.v.released_for.source_ip === row.a.source_ip;
    mount(
      listBox,
      dataTable<Row>({
        testid: 'rebinds-table',
        rowTestid: 'rebind-row',
        rowId: (row) => `${row.v.vehicle_id}:${row.a?.id ?? ''}`,
        rows,
        empty: '没有待处理的重新注册请求',
        columns: [
          { title: '车牌', width: '100px', render: (row) => row.v.plate },
          { title: '所属单位', className: 'ellipsis', tooltip: (row) => orgName(row.v.org_unit_id), render: (row) => orgName(row.v.org_unit_id) },
          { title: '终端号', width: '110px', className: 'mono', render: (row) => row.v.terminal_phone ?? '—' },
          { title: '已绑定终端', width: '120px', className: 'ellipsis mono', tooltip: (row) => `注册于 ${fmtMs(row.v.registered_at_ms)}`, render: (row) => row.v.terminal_id ?? '—' },
          { title: '尝试终端ID', width: '110px', className: 'mono', render: (row) => row.a?.terminal_id ?? '—' },
          { title: '来源地址', width: '140px', className: 'mono', render: (row) => row.a?.addr ?? row.a?.source_ip ?? '—' },
          {
            title: '型号 / 厂商',
            width: '120px',
            className: 'ellipsis',
            tooltip: (row) => [row.a?.model, row.a?.manufacturer].filter((x) => x).join(' / '),
            render: (row) => [row.a?.model, row.a?.manufacturer].filter((x) => x).join(' / ') || '—',
          },
          { title: '最近尝试', width: '140px', className: 'nowrap', render: (row) => fmtMs(row.a?.last_at_ms ?? row.v.attempt_at_ms) },
          { title: '次数', width: '52px', render: (row) => String(row.a?.count ?? row.v.attempts) },
          {
            title: '状态',
            width: '130px',
            render: (row) =>
              released(row) ? badge(`已允许，至 ${fmtMs(row.v.released_until_ms).slice(11, 16)}`, 'ok') : badge('已拒绝', 'bad'),
          },
          {
            title: '操作',
            width: '116px',
            render: (row) =>
              canRelease && row.a && !released(row)
                ? h('button', { type: 'button', class: 'btn small', testid: 'rebind-release', onclick: () => void release(row.v, row.a!) }, '允许重新绑定')
                : '—',
          },
        ],
      }),
    );
  }
  await load();
}

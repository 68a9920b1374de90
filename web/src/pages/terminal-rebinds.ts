// 终端绑定 — JT/T 808 terminals that tried to register again while their vehicle is bound to a
// terminal (refused, result 3), and the release that lets one re-registration through (a replaced
// or reset terminal). Device managers only; every release is audited.

import { get, post } from '../api';
import { h, mount } from '../dom';
import { fmtMs } from '../format';
import { pageHeader, setTitle } from '../layout';
import { can, orgUnitsOrEmpty } from '../session';
import type { PendingRebind } from '../types';
import { confirmDialog } from '../ui/dialog';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, latest } from './list-util';

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
      '已绑定终端的车辆若再次收到注册请求（0x0100），平台按标准拒绝（结果 3：车辆已被注册），并在此列出尝试的时间、来源地址和终端信息。' +
        '确认是更换或重置的终端后，点击“允许重新绑定”：30 分钟内该号码的下一次注册获得新的鉴权码，旧鉴权码随即失效。操作记入审计日志。',
    ),
    listBox,
  );

  async function release(p: PendingRebind): Promise<void> {
    const ok = await confirmDialog(
      `允许车辆 ${p.plate} 的终端在 30 分钟内重新注册？旧终端的鉴权码将失效，若来源不明请勿操作。`,
      '允许重新绑定',
      true,
    );
    if (!ok) return;
    try {
      await post<PendingRebind>(`/vehicles/${encodeURIComponent(p.vehicle_id)}/rebind`);
      toast(`已允许 ${p.plate} 重新绑定（30 分钟内有效）`, 'ok');
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
    mount(
      listBox,
      dataTable<PendingRebind>({
        testid: 'rebinds-table',
        rowTestid: 'rebind-row',
        rowId: (p) => p.vehicle_id,
        rows: r.value!.items,
        empty: '没有待处理的重新注册请求',
        columns: [
          { title: '车牌', width: '110px', render: (p) => p.plate },
          { title: '所属单位', width: '130px', className: 'ellipsis', render: (p) => orgName(p.org_unit_id) },
          { title: '终端号', width: '120px', className: 'mono', render: (p) => p.terminal_phone ?? '—' },
          { title: '已绑定终端', width: '150px', className: 'ellipsis mono', render: (p) => `${p.terminal_id ?? '—'}（${fmtMs(p.registered_at_ms)}）` },
          { title: '最近尝试', width: '140px', className: 'nowrap', render: (p) => fmtMs(p.attempt_at_ms) },
          { title: '来源地址', width: '140px', className: 'mono', render: (p) => p.attempt_addr ?? '—' },
          {
            title: '尝试终端',
            className: 'ellipsis',
            render: (p) =>
              [p.attempt_terminal_id, p.attempt_model, p.attempt_manufacturer].filter((x) => x).join(' / ') || '—',
          },
          { title: '次数', width: '56px', render: (p) => String(p.attempts) },
          {
            title: '状态',
            width: '150px',
            render: (p) =>
              p.released_until_ms && p.released_until_ms > now
                ? badge(`已允许，至 ${fmtMs(p.released_until_ms).slice(11, 16)}`, 'ok')
                : badge('已拒绝', 'bad'),
          },
          {
            title: '操作',
            width: '120px',
            render: (p) =>
              canRelease && !(p.released_until_ms && p.released_until_ms > now)
                ? h('button', { type: 'button', class: 'btn small', testid: 'rebind-release', onclick: () => void release(p) }, '允许重新绑定')
                : '—',
          },
        ],
      }),
    );
  }
  await load();
}

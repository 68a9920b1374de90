// 调度指挥 — the command centre's live map: units over a self-drawn map of Shanghai, SOS alarms,
// events, unit details with dispatch actions, tracks and 就近调度. Live data comes over the
// dispatch WebSocket (docs/api/dispatch-ws.md); actions go through the REST API.

import { get, post } from '../api';
import { h, mount, select } from '../dom';
import { fmtDateTime } from '../format';
import { describeError, errorText } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import type { Cleanup } from '../router';
import { can, orgOptions, orgUnitsOrEmpty, session } from '../session';
import type { Enterprise, Page } from '../types';
import { confirmDialog, openDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { toast } from '../ui/toast';
import { type BBox } from '../dispatch/geo';
import { CallPanel } from '../dispatch/call';
import { LivePlayers } from '../dispatch/live';
import { MapView, type SosPin } from '../dispatch/map';
import {
  KIND_NAMES,
  STATE_NAMES,
  UNIT_KINDS,
  UNIT_STATES,
  hasFix,
  rfc3339,
  type DispatchEvent,
  type Geofence,
  type NearestItem,
  type ServerMessage,
  type SosAlarm,
  type Subscription,
  type TrackCollection,
  type Unit,
} from '../dispatch/model';
import { countsBlock, feedEntry, feedItem, kindGlyph, legend, nearestRow, sosItem, unitDetailsList, unitRow, type FeedEntry } from '../dispatch/panels';
import { DispatchSocket, type SocketState } from '../dispatch/ws';

/** Debug / test handle: `window.__dispatch.units` is the live unit map. */
export interface DispatchDebug {
  readonly units: Map<string, Unit>;
  readonly selectedId: string | null;
  readonly wsState: SocketState;
  readonly subscription: Subscription | null;
  readonly map: MapView;
}

declare global {
  interface Window {
    __dispatch?: DispatchDebug;
  }
}

const FEED_MAX = 100;
const LIST_MAX = 300;
const SUBSCRIBE_DEBOUNCE_MS = 300;
const PANEL_REFRESH_MS = 600;
/** Share of the view added on each side of the subscribed bbox (a small pan needs no resubscribe). */
const BBOX_PAD = 0.15;
/** Resubscribe when the subscribed area is this many times the visible one (zoomed in). */
const BBOX_MAX_RATIO = 6;

type Tab = 'units' | 'sos' | 'events' | 'nearest';
type SosStep = 'acknowledge' | 'handle' | 'close';

type NearestTarget =
  | { kind: 'enterprise'; enterprise_id: string; name: string; lat: number | null; lon: number | null }
  | { kind: 'point'; lat: number; lon: number; name: string };

const collator = new Intl.Collator('zh-CN');

const round6 = (v: number) => Math.round(v * 1e6) / 1e6;

function contains(outer: BBox, inner: BBox): boolean {
  return inner[0] >= outer[0] && inner[1] >= outer[1] && inner[2] <= outer[2] && inner[3] <= outer[3];
}

function area(b: BBox): number {
  return Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
}

/** Three short beeps for a new SOS; does nothing where audio is not allowed. */
function beeper(): { beep: () => void; close: () => void } {
  let ctx: AudioContext | null = null;
  return {
    beep() {
      try {
        ctx ??= new AudioContext();
        if (ctx.state === 'suspended') void ctx.resume().catch(() => undefined);
        const t0 = ctx.currentTime;
        for (let i = 0; i < 3; i++) {
          const osc = ctx.createOscillator();
          const gain = ctx.createGain();
          osc.type = 'square';
          osc.frequency.value = 880;
          gain.gain.value = 0.05;
          osc.connect(gain).connect(ctx.destination);
          osc.start(t0 + i * 0.3);
          osc.stop(t0 + i * 0.3 + 0.18);
        }
      } catch {
        /* no audio */
      }
    },
    close() {
      void ctx?.close().catch(() => undefined);
      ctx = null;
    },
  };
}

/** A request's failure as "操作失败：…" in a toast. */
function failToast(what: string, e: unknown): void {
  toast(`${what}：${errorText(e)}`, 'error', 6000);
}

export function renderDispatch(outlet: HTMLElement): Cleanup {
  setTitle('调度指挥');
  const canCommand = can('dispatch.command');

  // ------------------------------------------------------------------------------------------
  // State

  const units = new Map<string, Unit>();
  let selectedId: string | null = null;
  /** The selected unit as last seen (kept when it leaves the subscription). */
  let selectedLast: Unit | null = null;
  const kinds = new Set<string>(UNIT_KINDS);
  const states = new Set<string>(UNIT_STATES);
  let orgFilter = '';
  let followView = true;
  let wsState: SocketState = 'connecting';
  let lastSub: Subscription | null = null;
  const sos = new Map<string, SosAlarm>();
  const bannerDismissed = new Set<string>();
  const feed: FeedEntry[] = [];
  let feedSeq = 0;
  let tab: Tab = 'units';
  let nearestTarget: NearestTarget | null = null;
  let nearestItems: NearestItem[] = [];
  let nearestSeq = 0;
  let trackUnitId: string | null = null;
  const orgNames = new Map<string, string>();
  let alive = true;
  let soundOn = true;
  const sound = beeper();
  let subTimer = 0;
  let panelTimer = 0;
  let entTimer = 0;
  let entSeq = 0;
  let refusedChecks = 0;

  // ------------------------------------------------------------------------------------------
  // Map

  const map = new MapView(units, {
    onSelect: (id) => selectUnit(id, false),
    onPick: (p) => {
      setPickMode(false);
      setNearestTarget({ kind: 'point', lat: p.lat, lon: p.lon, name: pointName.value.trim() || '地图选点' });
      showTab('nearest');
    },
    onViewChange: () => scheduleSubscribe(false),
    onPickModeChange: (on) => {
      pickBtn.classList.toggle('primary', on);
      pickBtn.textContent = on ? '请在地图上点击…（Esc 取消）' : '地图选点';
    },
  });
  const blinkTimer = window.setInterval(() => map.blink(), 500);

  // ------------------------------------------------------------------------------------------
  // Toolbar

  const wsStatus = h('span', { class: 'ws-status', testid: 'ws-status', 'data-state': 'closed', role: 'status' }, '连接中…');
  const reconnectBtn = h('button', { type: 'button', class: 'btn small', testid: 'ws-reconnect', hidden: true, onclick: () => socket.reconnectNow() }, '立即重连');
  const unitCount = h('b', { testid: 'unit-count' }, '0');
  const soundBox = h('input', { type: 'checkbox', checked: true, testid: 'sos-sound' });
  soundBox.addEventListener('change', () => {
    soundOn = soundBox.checked;
  });
  const root = h('div', { class: 'dispatch', testid: 'dispatch-page' });
  const fullBtn = h('button', { type: 'button', class: 'btn', testid: 'fullscreen', title: '大屏全屏显示（Esc 退出）', onclick: () => void toggleFullscreen() }, '全屏');
  const onFullscreenChange = () => {
    const on = document.fullscreenElement === root;
    fullBtn.textContent = on ? '退出全屏' : '全屏';
    root.classList.toggle('is-fullscreen', on);
  };
  document.addEventListener('fullscreenchange', onFullscreenChange);
  async function toggleFullscreen(): Promise<void> {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await root.requestFullscreen();
    } catch {
      toast('浏览器不允许全屏显示', 'error');
    }
  }

  const header = pageHeader(
    '调度指挥',
    wsStatus,
    reconnectBtn,
    h('span', { class: 'dtool', title: '当前订阅范围内的单元数' }, '单元 ', unitCount),
    h('label', { class: 'dtool', title: '新的紧急报警时发出提示音' }, soundBox, ' 提示音'),
    fullBtn,
  );

  function setWsState(s: SocketState, info?: { retryInMs?: number; code?: number }): void {
    wsState = s;
    wsStatus.setAttribute('data-state', s === 'open' ? 'open' : 'closed');
    wsStatus.classList.toggle('open', s === 'open');
    reconnectBtn.hidden = s !== 'closed';
    if (s === 'open') wsStatus.textContent = '已连接';
    else if (s === 'connecting') wsStatus.textContent = '连接中…';
    else wsStatus.textContent = info?.code === 1008 ? '无权访问，重连中…' : '重连中…';
    wsStatus.title =
      s === 'closed' && info?.retryInMs ? `连接已断开，约 ${Math.max(1, Math.round(info.retryInMs / 1000))} 秒后自动重连` : '';
  }

  // ------------------------------------------------------------------------------------------
  // SOS banner

  const banner = h('div', { class: 'sos-banner', testid: 'sos-banner', role: 'alert', hidden: true });

  function renderBanner(): void {
    const raised = [...sos.values()].filter((a) => a.status === 'raised' && !bannerDismissed.has(a.id));
    raised.sort((a, b) => (b.raised_at ?? '').localeCompare(a.raised_at ?? ''));
    const a = raised[0];
    if (!a) {
      banner.hidden = true;
      banner.removeAttribute('data-sos-id');
      banner.replaceChildren();
      return;
    }
    banner.hidden = false;
    banner.setAttribute('data-sos-id', a.id);
    mount(
      banner,
      h('span', { class: 'sos-banner-icon', 'aria-hidden': 'true' }, '⚠'),
      h('b', null, '紧急报警'),
      h(
        'span',
        { class: 'sos-banner-text' },
        `${a.unit_name || a.unit_id}　${fmtDateTime(a.raised_at)}`,
        raised.length > 1 ? `　另有 ${raised.length - 1} 条待确认` : '',
      ),
      h(
        'span',
        { class: 'sos-banner-actions' },
        h('button', { type: 'button', class: 'btn small', testid: 'sos-banner-locate', onclick: () => locateSos(a) }, '查看'),
        canCommand ? h('button', { type: 'button', class: 'btn small', testid: 'sos-banner-ack', onclick: () => void sosStep(a, 'acknowledge') }, '确认') : null,
        h('button', { type: 'button', class: 'btn small', testid: 'sos-banner-list', onclick: () => showTab('sos') }, '报警列表'),
        h(
          'button',
          {
            type: 'button',
            class: 'icon-btn',
            title: '暂不提示（报警仍待确认）',
            'aria-label': '暂不提示',
            testid: 'sos-banner-dismiss',
            onclick: () => {
              bannerDismissed.add(a.id);
              renderBanner();
            },
          },
          '×',
        ),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Unit details card (over the map)

  const detailGlyph = h('span', { class: 'glyph-box' });
  const detailName = h('span', { class: 'unit-card-name', testid: 'unit-detail-name' });
  const detailNote = h('div', { class: 'unit-card-note', testid: 'unit-detail-note', hidden: true });
  const detailBody = h('div', { class: 'unit-card-body' });
  const trackRange = select(
    [
      { value: '1', label: '近 1 小时' },
      { value: '4', label: '近 4 小时' },
      { value: '12', label: '近 12 小时' },
      { value: '24', label: '近 24 小时' },
    ],
    { testid: 'track-range', 'aria-label': '轨迹时段', class: 'track-range' },
    '1',
  );
  const trackInfo = h('div', { class: 'track-info', testid: 'track-info', hidden: true });
  const actBtn = (text: string, testid: string, fn: () => void, cls = 'btn small') => h('button', { type: 'button', class: cls, testid, onclick: fn }, text);
  const arriveBtn = actBtn('到达', 'unit-arrive', () => void unitAction('arrive'));
  const clearBtn = actBtn('解除', 'unit-clear', () => void unitAction('clear'));
  const locateBtn = actBtn('定位', 'unit-locate', () => void unitAction('locate'));
  const trackBtn = actBtn('轨迹', 'unit-track', () => void loadTrack());
  const trackClearBtn = actBtn('清除轨迹', 'unit-track-clear', () => clearTrack());
  trackClearBtn.hidden = true;
  const live = new LivePlayers();
  const liveBtn = h(
    'button',
    { type: 'button', class: 'btn small', testid: 'live-video', 'data-test': 'live-video', title: '查看该单元记录仪的实时画面', onclick: () => openLive() },
    '实时视频',
  );
  // One call at a time per unit; a call panel docks with the live players.
  const calls = new Map<string, CallPanel>();
  const callBtn = h(
    'button',
    { type: 'button', class: 'btn small', testid: 'unit-call', 'data-test': 'unit-call', title: '与该单元视频通话（通话全程录像）', onclick: () => placeCall() },
    '视频通话',
  );
  const card = h(
    'div',
    { class: 'unit-card', testid: 'unit-details', hidden: true },
    h(
      'div',
      { class: 'unit-card-head' },
      detailGlyph,
      detailName,
      h(
        'button',
        { type: 'button', class: 'btn small', title: '将地图中心移到该单元', testid: 'unit-center', onclick: () => centerOnSelected() },
        '居中',
      ),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': '关闭', title: '取消选择', testid: 'unit-details-close', onclick: () => selectUnit(null, false) }, '×'),
    ),
    detailNote,
    detailBody,
    h('div', { class: 'unit-card-actions' }, canCommand ? [arriveBtn, clearBtn, locateBtn] : null, liveBtn, canCommand ? callBtn : null, h('span', { class: 'track-group' }, trackRange, trackBtn, trackClearBtn)),
    trackInfo,
  );

  function renderDetails(): void {
    const live = selectedId ? units.get(selectedId) : undefined;
    const u = live ?? selectedLast;
    if (!selectedId || !u) {
      card.hidden = true;
      card.removeAttribute('data-unit-id');
      return;
    }
    card.hidden = false;
    card.setAttribute('data-unit-id', u.id);
    mount(detailGlyph, kindGlyph(u));
    detailName.textContent = u.name;
    detailName.title = u.name;
    detailNote.hidden = Boolean(live);
    detailNote.textContent = live ? '' : '该单元已不在当前视野或筛选范围内，显示的是最后收到的状态。';
    mount(detailBody, unitDetailsList(u, u.org_unit_id ? (orgNames.get(u.org_unit_id) ?? '') : ''));
    arriveBtn.disabled = u.state !== 'assigned';
    arriveBtn.title = u.state === 'assigned' ? '标记该单元已到达任务目标' : '仅“已派遣”的单元可标记到达';
    clearBtn.disabled = u.state === 'idle';
    clearBtn.title = u.state === 'idle' ? '该单元没有进行中的任务' : '结束该单元的当前任务，恢复空闲';
    const jt808 = u.source === 'jt808' || u.kind === 'vehicle';
    locateBtn.disabled = !jt808 || u.link === 'offline';
    locateBtn.title = !jt808 ? '仅车载终端（JT/T 808）支持点名定位' : u.link === 'offline' ? '终端离线，无法下发' : '向终端下发位置查询（JT/T 808 0x8201）';
    liveBtn.hidden = !u.device;
    callBtn.hidden = !u.device || u.kind === 'vehicle';
  }

  function placeCall(): void {
    const u = (selectedId && units.get(selectedId)) || selectedLast;
    if (!u?.device || u.kind === 'vehicle') return;
    const open = calls.get(u.id);
    if (open) return open.focus();
    const p = new CallPanel(u.id, u.name, session.account?.display_name ?? '指挥中心', (x) => {
      if (calls.get(x.unitId) === x) calls.delete(x.unitId);
    });
    calls.set(u.id, p);
    live.el.appendChild(p.el);
  }

  function openLive(): void {
    const u = (selectedId && units.get(selectedId)) || selectedLast;
    if (u?.device) live.open(u.device, u.name);
  }

  function selectUnit(id: string | null, center: boolean): void {
    if (id !== selectedId && trackUnitId && trackUnitId !== id) clearTrack();
    selectedId = id;
    selectedLast = id ? (units.get(id) ?? (selectedLast?.id === id ? selectedLast : null)) : null;
    map.selectedId = id;
    map.requestRedraw();
    if (center && id) centerOnSelected();
    renderDetails();
    for (const row of Array.from(listBox.querySelectorAll<HTMLElement>('.unit-row'))) {
      const on = row.getAttribute('data-unit-id') === id;
      row.classList.toggle('selected', on);
      row.setAttribute('aria-selected', on ? 'true' : 'false');
    }
  }

  function centerOnSelected(): void {
    const u = (selectedId && units.get(selectedId)) || selectedLast;
    if (!u) return;
    if (!hasFix(u)) {
      toast('该单元暂无有效定位', 'info');
      return;
    }
    map.centerOn(u.lon, u.lat, 14);
  }

  async function unitAction(kind: 'arrive' | 'clear' | 'locate'): Promise<void> {
    const u = (selectedId && units.get(selectedId)) || selectedLast;
    if (!u) return;
    const names = { arrive: '到达', clear: '解除', locate: '定位' } as const;
    if (kind === 'clear' && !(await confirmDialog(`确定解除“${u.name}”的当前任务吗？解除后该单元恢复空闲。`, '解除'))) return;
    const btn = kind === 'arrive' ? arriveBtn : kind === 'clear' ? clearBtn : locateBtn;
    btn.disabled = true;
    try {
      const res = await post<unknown>(`/units/${encodeURIComponent(u.id)}/${kind}`, {});
      mergeUnitFromResponse(u.id, res);
      toast(kind === 'arrive' ? `已标记“${u.name}”到达` : kind === 'clear' ? `已解除“${u.name}”的任务` : `已向“${u.name}”下发定位指令`);
    } catch (e) {
      failToast(`${names[kind]}失败`, e);
    } finally {
      if (alive) renderDetails();
    }
  }

  /** A write that answers with the unit updates it at once (the socket confirms it soon after). */
  function mergeUnitFromResponse(id: string, res: unknown): void {
    if (!res || typeof res !== 'object') return;
    const r = res as Partial<Unit> & { unit?: Partial<Unit> };
    const u = r.unit && typeof r.unit === 'object' ? r.unit : r;
    if (u.id !== id || typeof u.state !== 'string') return;
    const prev = units.get(id);
    if (!prev) return;
    units.set(id, { ...prev, ...u } as Unit);
    if (selectedId === id) selectedLast = units.get(id) ?? selectedLast;
    map.requestRedraw();
    schedulePanels();
  }

  // ------------------------------------------------------------------------------------------
  // Track

  async function loadTrack(): Promise<void> {
    const u = (selectedId && units.get(selectedId)) || selectedLast;
    if (!u) return;
    const hours = Number(trackRange.value) || 1;
    const to = new Date();
    const from = new Date(to.getTime() - hours * 3_600_000);
    trackBtn.disabled = true;
    try {
      const fc = await get<TrackCollection>(`/units/${encodeURIComponent(u.id)}/track`, { from: rfc3339(from), to: rfc3339(to), format: 'geojson' });
      if (!alive) return;
      const feature = fc?.features?.find((f) => f.geometry && f.geometry.type === 'LineString');
      const coords = (feature?.geometry?.coordinates ?? []).filter(
        (c): c is [number, number] => Array.isArray(c) && typeof c[0] === 'number' && typeof c[1] === 'number',
      );
      const times = Array.isArray(feature?.properties?.times) ? (feature!.properties!.times as string[]) : [];
      if (coords.length === 0) {
        clearTrack();
        toast(`“${u.name}”${trackRange.selectedOptions[0]?.textContent ?? ''}没有轨迹`, 'info');
        return;
      }
      trackUnitId = u.id;
      map.setTrack({ coords, times });
      let b: BBox = [Infinity, Infinity, -Infinity, -Infinity];
      for (const [lon, lat] of coords) b = [Math.min(b[0], lon), Math.min(b[1], lat), Math.max(b[2], lon), Math.max(b[3], lat)];
      map.fitBounds(b, 17);
      trackInfo.hidden = false;
      trackInfo.textContent = `轨迹 ${coords.length} 个点${times.length ? `，${fmtDateTime(times[0])} 至 ${fmtDateTime(times[times.length - 1])}` : ''}`;
      trackClearBtn.hidden = false;
    } catch (e) {
      failToast('加载轨迹失败', e);
    } finally {
      trackBtn.disabled = false;
    }
  }

  function clearTrack(): void {
    trackUnitId = null;
    map.setTrack(null);
    trackInfo.hidden = true;
    trackInfo.textContent = '';
    trackClearBtn.hidden = true;
  }

  // ------------------------------------------------------------------------------------------
  // Side panel: counts and filters

  const countsBox = h('div', { class: 'dside-counts' }, countsBlock([]));

  const kindBoxes = UNIT_KINDS.map((k) => {
    const cb = h('input', { type: 'checkbox', checked: true, value: k, testid: `filter-kind-${k}` });
    cb.addEventListener('change', () => {
      if (cb.checked) kinds.add(k);
      else if (kinds.size === 1) {
        cb.checked = true;
        toast('至少保留一种单元类型', 'info');
        return;
      } else kinds.delete(k);
      scheduleSubscribe(true);
    });
    return h('label', { class: 'chk' }, cb, KIND_NAMES[k]);
  });
  const stateBoxes = UNIT_STATES.map((s) => {
    const cb = h('input', { type: 'checkbox', checked: true, value: s, testid: `filter-state-${s}` });
    cb.addEventListener('change', () => {
      if (cb.checked) states.add(s);
      else if (states.size === 1) {
        cb.checked = true;
        toast('至少保留一种调度状态', 'info');
        return;
      } else states.delete(s);
      scheduleSubscribe(true);
    });
    return h('label', { class: 'chk' }, cb, STATE_NAMES[s]);
  });
  const orgSelect = select([{ value: '', label: '全部单位' }], { testid: 'filter-org', 'aria-label': '所属单位', class: 'org-filter' }, '');
  orgSelect.hidden = true;
  orgSelect.addEventListener('change', () => {
    orgFilter = orgSelect.value;
    scheduleSubscribe(true);
  });
  const viewBox = h('input', { type: 'checkbox', checked: true, testid: 'filter-viewport' });
  viewBox.addEventListener('change', () => {
    followView = viewBox.checked;
    scheduleSubscribe(true);
  });
  const filters = h(
    'div',
    { class: 'dfilters', testid: 'dispatch-filters' },
    h('div', { class: 'dfilter-row' }, h('span', { class: 'dfilter-label' }, '类型'), kindBoxes),
    h('div', { class: 'dfilter-row' }, h('span', { class: 'dfilter-label' }, '状态'), stateBoxes),
    h(
      'div',
      { class: 'dfilter-row' },
      h('span', { class: 'dfilter-label' }, '范围'),
      h('label', { class: 'chk', title: '只接收地图可视范围内的单元；取消后接收管辖范围内全部单元' }, viewBox, '仅视野内'),
      orgSelect,
    ),
  );

  // ------------------------------------------------------------------------------------------
  // Side panel: tabs

  const tabBtns = new Map<Tab, HTMLButtonElement>();
  const tabPanels = new Map<Tab, HTMLElement>();
  const tabLabel = (t: Tab, text: string) => {
    const b = h('button', { type: 'button', class: 'tab', role: 'tab', testid: `tab-${t}`, onclick: () => showTab(t) }, text);
    tabBtns.set(t, b);
    return b;
  };
  const sosTabCount = h('span', { class: 'tab-count', testid: 'sos-count' }, '0');
  const tabs = h(
    'div',
    { class: 'tabs dtabs', role: 'tablist' },
    tabLabel('units', '单元列表'),
    (() => {
      const b = tabLabel('sos', '紧急报警 ');
      b.appendChild(sosTabCount);
      return b;
    })(),
    tabLabel('events', '最近事件'),
    tabLabel('nearest', '就近调度'),
  );

  // Units tab
  const search = h('input', { type: 'search', placeholder: '名称、终端号或设备号', testid: 'unit-search', 'aria-label': '搜索单元', class: 'dsearch', maxlength: 50 });
  search.addEventListener('input', () => renderList());
  const listInfo = h('div', { class: 'list-info muted', testid: 'unit-list-info' });
  const listBox = h('ul', { class: 'unit-list', testid: 'unit-list', role: 'listbox', 'aria-label': '单元列表' });
  listBox.addEventListener('click', (ev) => {
    const row = (ev.target as HTMLElement).closest<HTMLElement>('[data-unit-id]');
    if (row) selectUnit(row.getAttribute('data-unit-id'), true);
  });
  listBox.addEventListener('keydown', (ev: KeyboardEvent) => {
    if (ev.key !== 'Enter') return;
    const row = (ev.target as HTMLElement).closest<HTMLElement>('[data-unit-id]');
    if (row) selectUnit(row.getAttribute('data-unit-id'), true);
  });
  tabPanels.set('units', h('div', { class: 'dpanel', testid: 'units-panel' }, search, listInfo, listBox));

  function renderList(): void {
    const q = search.value.trim().toLowerCase();
    const all: Unit[] = [];
    for (const u of units.values()) {
      if (q && !(u.name.toLowerCase().includes(q) || (u.terminal ?? '').toLowerCase().includes(q) || (u.device ?? '').toLowerCase().includes(q))) continue;
      all.push(u);
    }
    const rank = (u: Unit) => (u.sos ? 0 : u.link === 'online' ? 1 : u.link === 'unknown' ? 2 : 3);
    all.sort((a, b) => rank(a) - rank(b) || collator.compare(a.name, b.name));
    const shown = all.slice(0, LIST_MAX);
    const scroll = listBox.scrollTop;
    listBox.replaceChildren(...shown.map((u) => unitRow(u, u.id === selectedId)));
    listBox.scrollTop = scroll;
    if (units.size === 0) listInfo.textContent = wsState === 'open' ? '当前范围内没有单元' : '等待连接…';
    else if (all.length === 0) listInfo.textContent = '没有符合搜索条件的单元';
    else if (all.length > shown.length) listInfo.textContent = `共 ${all.length} 个，仅显示前 ${LIST_MAX} 个，请输入关键字缩小范围`;
    else listInfo.textContent = `共 ${all.length} 个`;
  }

  // SOS tab
  const sosList = h('ul', { class: 'sos-list', testid: 'sos-list' });
  const sosEmpty = h('div', { class: 'list-info muted' }, '暂无未关闭的紧急报警');
  const sosError = h('div', { class: 'form-error', hidden: true, testid: 'sos-load-error' });
  tabPanels.set(
    'sos',
    h(
      'div',
      { class: 'dpanel', testid: 'sos-panel' },
      h(
        'div',
        { class: 'dpanel-tools' },
        h('span', { class: 'muted' }, '未关闭的报警，最新在前'),
        h('button', { type: 'button', class: 'btn small', testid: 'sos-refresh', onclick: () => void loadSos() }, '刷新'),
      ),
      sosError,
      sosEmpty,
      sosList,
    ),
  );

  function renderSos(): void {
    const list = [...sos.values()].filter((a) => a.status !== 'closed');
    list.sort((a, b) => (b.raised_at ?? '').localeCompare(a.raised_at ?? ''));
    sosList.replaceChildren(...list.map((a) => sosItem(a, { canCommand, onLocate: locateSos, onStep: (x, s) => void sosStep(x, s) })));
    sosEmpty.hidden = list.length > 0;
    const raised = list.filter((a) => a.status === 'raised').length;
    sosTabCount.textContent = String(list.length);
    sosTabCount.classList.toggle('alert', raised > 0);
    const pins: SosPin[] = [];
    for (const a of list) {
      if (a.status !== 'raised' && a.status !== 'acknowledged') continue;
      if (typeof a.lat !== 'number' || typeof a.lon !== 'number') continue;
      pins.push({ id: a.id, unit_id: a.unit_id, unit_name: a.unit_name, lat: a.lat, lon: a.lon, raised: a.status === 'raised' });
    }
    map.setSosPins(pins);
    renderBanner();
  }

  function locateSos(a: SosAlarm): void {
    if (typeof a.lat === 'number' && typeof a.lon === 'number') map.centerOn(a.lon, a.lat, 15);
    selectUnit(a.unit_id, typeof a.lat !== 'number');
    if (!units.has(a.unit_id) && typeof a.lat !== 'number') toast('该报警没有位置信息', 'info');
  }

  async function loadSos(): Promise<void> {
    try {
      const r = await get<{ items: SosAlarm[] }>('/sos', { status: 'open' });
      if (!alive) return;
      sosError.hidden = true;
      const seen = new Set<string>();
      for (const a of r?.items ?? []) {
        seen.add(a.id);
        sos.set(a.id, a);
      }
      // Alarms the list no longer returns were closed meanwhile.
      for (const id of [...sos.keys()]) if (!seen.has(id)) sos.delete(id);
      renderSos();
    } catch (e) {
      if (!alive) return;
      sosError.hidden = false;
      sosError.textContent = `加载紧急报警失败：${errorText(e)}`;
    }
  }

  async function sosStep(a: SosAlarm, step: SosStep): Promise<void> {
    let note: string | undefined;
    if (step === 'handle') {
      const n = await askNote(a);
      if (n === null) return;
      note = n;
    } else if (step === 'close') {
      if (!(await confirmDialog(`确定关闭“${a.unit_name || a.unit_id}”的紧急报警吗？关闭后不再显示在报警列表中。`, '关闭报警', true))) return;
    }
    try {
      const res = await post<unknown>(`/sos/${encodeURIComponent(a.id)}/${step}`, note ? { note } : {});
      applySosResponse(a, step, res);
      toast(step === 'acknowledge' ? '已确认报警' : step === 'handle' ? '已记录处置' : '已关闭报警');
    } catch (e) {
      failToast(step === 'acknowledge' ? '确认失败' : step === 'handle' ? '处置失败' : '关闭失败', e);
      void loadSos();
    }
  }

  /** The note for 处置 (a dialog); null when cancelled. */
  function askNote(a: SosAlarm): Promise<string | null> {
    return new Promise((resolve) => {
      let result: string | null = null;
      const form = new Form(
        [{ name: 'note', label: '处置情况', type: 'textarea', required: true, span: 3, maxlength: 500, testid: 'sos-note', placeholder: '如：已电话联系当事人，现场无危险' }],
        { submitLabel: '提交处置', submitTestid: 'sos-note-submit', errorTestid: 'sos-note-error', columns: 1, testid: 'sos-note-form' },
      );
      const d = openDialog({ title: `处置紧急报警：${a.unit_name || a.unit_id}`, body: form.el, testid: 'sos-note-dialog', onClose: () => resolve(result) });
      form.onSubmit((v) => {
        result = v.note.trim();
        d.close();
      });
      form.control('note').focus();
    });
  }

  function applySosResponse(a: SosAlarm, step: SosStep, res: unknown): void {
    const r = res as Partial<SosAlarm> | null;
    if (r && typeof r === 'object' && r.id === a.id && typeof r.status === 'string') {
      sos.set(a.id, { ...a, ...r } as SosAlarm);
    } else {
      const status = step === 'acknowledge' ? 'acknowledged' : step === 'handle' ? 'handled' : 'closed';
      sos.set(a.id, { ...(sos.get(a.id) ?? a), status });
    }
    if (sos.get(a.id)?.status === 'closed') sos.delete(a.id);
    renderSos();
  }

  // Events tab
  const feedList = h('ul', { class: 'feed-list', testid: 'event-feed' });
  const feedEmpty = h('div', { class: 'list-info muted' }, '暂无事件');
  feedList.addEventListener('click', (ev) => {
    const row = (ev.target as HTMLElement).closest<HTMLElement>('[data-unit-id]');
    if (row) selectUnit(row.getAttribute('data-unit-id'), true);
  });
  tabPanels.set('events', h('div', { class: 'dpanel', testid: 'events-panel' }, h('div', { class: 'dpanel-tools muted' }, `最近 ${FEED_MAX} 条，最新在前`), feedEmpty, feedList));

  function renderFeed(): void {
    feedList.replaceChildren(...feed.map(feedItem));
    feedEmpty.hidden = feed.length > 0;
  }

  // Nearest tab
  const entSearch = h('input', { type: 'search', placeholder: '输入企业名称搜索', testid: 'nearest-enterprise-search', 'aria-label': '搜索企业', class: 'dsearch', maxlength: 100 });
  const entResults = h('ul', { class: 'ent-results', testid: 'enterprise-results', hidden: true });
  const pickBtn = h('button', { type: 'button', class: 'btn small', testid: 'pick-mode', title: '在地图上点击选择目标位置（也可在地图上直接右键）', onclick: () => setPickMode(!map.pickMode) }, '地图选点');
  const pointName = h('input', { type: 'text', placeholder: '目标名称（选点时）', testid: 'nearest-point-name', class: 'dsearch', maxlength: 100, value: '' });
  const targetBox = h('div', { class: 'nearest-target', testid: 'nearest-target', hidden: true });
  const nearestInfo = h('div', { class: 'list-info muted', testid: 'nearest-info' }, '选择企业，或在地图上右键 / “地图选点”选择位置，查找最近的 5 个可用单元。');
  const nearestList = h('ul', { class: 'nearest-list', testid: 'nearest-list' });
  nearestList.addEventListener('click', (ev) => {
    const t = ev.target as HTMLElement;
    if (t.closest('button')) return;
    const row = t.closest<HTMLElement>('[data-unit-id]');
    if (row) selectUnit(row.getAttribute('data-unit-id'), true);
  });
  tabPanels.set(
    'nearest',
    h(
      'div',
      { class: 'dpanel', testid: 'nearest-panel' },
      h('div', { class: 'nearest-search' }, entSearch, entResults),
      h('div', { class: 'dpanel-tools' }, pickBtn, pointName),
      targetBox,
      nearestInfo,
      nearestList,
    ),
  );

  entSearch.addEventListener('input', () => {
    window.clearTimeout(entTimer);
    entTimer = window.setTimeout(() => void searchEnterprises(), 300);
  });
  entSearch.addEventListener('keydown', (ev: KeyboardEvent) => {
    if (ev.key === 'Escape') entResults.hidden = true;
  });

  async function searchEnterprises(): Promise<void> {
    const q = entSearch.value.trim();
    const mine = ++entSeq;
    if (!q) {
      entResults.hidden = true;
      entResults.replaceChildren();
      return;
    }
    try {
      const pg = await get<Page<Enterprise>>('/enterprises', { q, page: 1, page_size: 10 });
      if (!alive || mine !== entSeq) return;
      const items = pg?.items ?? [];
      entResults.replaceChildren(
        ...(items.length
          ? items.map((e) => {
              const hasCoords = typeof e.lat === 'number' && typeof e.lon === 'number';
              const li = h(
                'li',
                { class: 'ent-result', 'data-enterprise-id': e.id, tabindex: 0, role: 'option' },
                h('span', { class: 'ent-name' }, e.name),
                h('span', { class: 'muted' }, e.district_name ?? ''),
                hasCoords ? null : h('span', { class: 'muted', title: '该企业档案未登记经纬度，由服务器按企业围栏计算' }, '（无坐标）'),
              );
              const choose = () => {
                entResults.hidden = true;
                entSearch.value = e.name;
                setNearestTarget({ kind: 'enterprise', enterprise_id: e.id, name: e.name, lat: e.lat, lon: e.lon });
              };
              li.addEventListener('click', choose);
              li.addEventListener('keydown', (ev: KeyboardEvent) => {
                if (ev.key === 'Enter') choose();
              });
              return li;
            })
          : [h('li', { class: 'muted ent-none' }, '没有匹配的企业')]),
      );
      entResults.hidden = false;
    } catch (e) {
      if (!alive || mine !== entSeq) return;
      entResults.replaceChildren(h('li', { class: 'ent-none error' }, `搜索失败：${errorText(e)}`));
      entResults.hidden = false;
    }
  }

  function setPickMode(on: boolean): void {
    map.setPickMode(on);
    if (on) map.canvas.focus({ preventScroll: true });
  }

  function setNearestTarget(t: NearestTarget | null): void {
    nearestTarget = t;
    nearestItems = [];
    nearestList.replaceChildren();
    if (!t) {
      targetBox.hidden = true;
      map.setTarget(null);
      map.setNearest([]);
      nearestInfo.textContent = '选择企业，或在地图上右键 / “地图选点”选择位置，查找最近的 5 个可用单元。';
      return;
    }
    targetBox.hidden = false;
    const coords = typeof t.lat === 'number' && typeof t.lon === 'number' ? `（${t.lon.toFixed(5)}, ${t.lat.toFixed(5)}）` : '';
    mount(
      targetBox,
      h('span', { class: 'muted' }, t.kind === 'enterprise' ? '目标企业：' : '目标位置：'),
      h('b', null, t.name),
      h('span', { class: 'muted' }, coords),
      h('button', { type: 'button', class: 'btn small', testid: 'nearest-refresh', onclick: () => void loadNearest() }, '刷新'),
      h('button', { type: 'button', class: 'btn small', testid: 'nearest-clear', onclick: () => setNearestTarget(null) }, '清除'),
    );
    if (typeof t.lat === 'number' && typeof t.lon === 'number') {
      map.setTarget({ lat: t.lat, lon: t.lon, name: t.name });
      map.centerOn(t.lon, t.lat);
    } else {
      map.setTarget(null);
    }
    void loadNearest();
  }

  async function loadNearest(): Promise<void> {
    const t = nearestTarget;
    if (!t) return;
    const mine = ++nearestSeq;
    nearestInfo.textContent = '正在查找…';
    try {
      const query = t.kind === 'enterprise' ? { enterprise_id: t.enterprise_id, k: 5 } : { lat: round6(t.lat), lon: round6(t.lon), k: 5 };
      const r = await get<{ items: NearestItem[] }>('/units/nearest', query);
      if (!alive || mine !== nearestSeq) return;
      nearestItems = (r?.items ?? []).filter((i) => i && i.unit && typeof i.unit.id === 'string');
      renderNearest();
    } catch (e) {
      if (!alive || mine !== nearestSeq) return;
      nearestItems = [];
      renderNearest();
      nearestInfo.textContent = `查找失败：${errorText(e)}`;
    }
  }

  function renderNearest(): void {
    nearestList.replaceChildren(...nearestItems.map((it, i) => nearestRow(it, i + 1, canCommand, () => void assign(it))));
    nearestInfo.textContent = nearestItems.length ? `最近的 ${nearestItems.length} 个可用单元（直线距离）` : '附近没有可用单元';
    map.setNearest(nearestItems.map((it) => ({ id: it.unit.id, lat: it.unit.lat, lon: it.unit.lon })));
  }

  async function assign(it: NearestItem): Promise<void> {
    const t = nearestTarget;
    if (!t) return;
    const u = it.unit;
    if (!(await confirmDialog(`确定派遣“${u.name}”前往“${t.name}”吗？`, '派遣'))) return;
    const body = t.kind === 'enterprise' ? { enterprise_id: t.enterprise_id } : { lat: round6(t.lat), lon: round6(t.lon), name: t.name };
    try {
      const res = await post<unknown>(`/units/${encodeURIComponent(u.id)}/assign`, body);
      mergeUnitFromResponse(u.id, res);
      toast(`已派遣“${u.name}”前往“${t.name}”`);
      void loadNearest();
    } catch (e) {
      failToast('派遣失败', e);
    }
  }

  function showTab(t: Tab): void {
    tab = t;
    for (const [k, b] of tabBtns) {
      b.classList.toggle('active', k === t);
      b.setAttribute('aria-selected', k === t ? 'true' : 'false');
    }
    for (const [k, p] of tabPanels) p.hidden = k !== t;
    if (t === 'units') renderList();
  }

  // ------------------------------------------------------------------------------------------
  // Layout

  const side = h(
    'aside',
    { class: 'dside', 'aria-label': '调度面板' },
    countsBox,
    filters,
    tabs,
    h('div', { class: 'dpanels' }, [...tabPanels.values()]),
    legend(),
  );
  const mapArea = h('div', { class: 'dmap-area' }, map.el, card, live.el);
  mount(root, header, banner, h('div', { class: 'dispatch-body' }, mapArea, side));
  mount(outlet, root);
  showTab('units');

  // ------------------------------------------------------------------------------------------
  // Panels refresh (throttled: deltas arrive several times a second)

  function schedulePanels(): void {
    unitCount.textContent = String(units.size);
    if (panelTimer) return;
    panelTimer = window.setTimeout(flushPanels, PANEL_REFRESH_MS);
  }

  /** Refresh counts, list and details now (after a snapshot; otherwise through schedulePanels). */
  function flushPanels(): void {
    window.clearTimeout(panelTimer);
    panelTimer = 0;
    if (!alive) return;
    unitCount.textContent = String(units.size);
    mount(countsBox, countsBlock(units.values()));
    if (tab === 'units') renderList();
    if (selectedId) {
      const live = units.get(selectedId);
      if (live) selectedLast = live;
      renderDetails();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Subscription

  function buildSubscription(): Subscription {
    const sub: Subscription = { type: 'subscribe', crs: 'wgs84' };
    if (followView && map.ready) {
      const b = map.view.bounds(BBOX_PAD);
      sub.bbox = [round6(b[0]), round6(b[1]), round6(b[2]), round6(b[3])];
    }
    if (kinds.size < UNIT_KINDS.length) sub.kinds = UNIT_KINDS.filter((k) => kinds.has(k));
    if (states.size < UNIT_STATES.length) sub.states = UNIT_STATES.filter((s) => states.has(s));
    if (orgFilter) sub.org_unit_id = orgFilter;
    return sub;
  }

  /** Whether the last subscription still covers the view well (a pan inside the padding). */
  function subscriptionCoversView(): boolean {
    if (!lastSub) return false;
    if (!followView) return !lastSub.bbox;
    if (!lastSub.bbox || !map.ready) return false;
    const view = map.view.bounds(0);
    return contains(lastSub.bbox, view) && area(lastSub.bbox) <= area(view) * BBOX_MAX_RATIO;
  }

  function sendSubscription(): void {
    window.clearTimeout(subTimer);
    subTimer = 0;
    const sub = buildSubscription();
    if (socket.send(sub)) lastSub = sub;
  }

  /** Filters changed (`force`) or the view moved: resubscribe after a short pause. */
  function scheduleSubscribe(force: boolean): void {
    if (!force && subscriptionCoversView()) return;
    if (force) lastSub = null;
    window.clearTimeout(subTimer);
    subTimer = window.setTimeout(sendSubscription, force ? 50 : SUBSCRIBE_DEBOUNCE_MS);
  }

  // ------------------------------------------------------------------------------------------
  // Socket

  function upsert(u: Unit): void {
    if (!u || typeof u.id !== 'string') return;
    const prev = units.get(u.id);
    units.set(u.id, prev ? { ...prev, ...u } : u);
  }

  function onMessage(m: ServerMessage): void {
    switch (m.type) {
      case 'snapshot': {
        units.clear();
        for (const u of m.units ?? []) upsert(u);
        map.requestRedraw();
        flushPanels();
        break;
      }
      case 'units': {
        for (const u of m.units ?? []) upsert(u);
        for (const id of m.gone ?? []) units.delete(id);
        map.requestRedraw();
        schedulePanels();
        break;
      }
      case 'events':
        onEvents(m.events ?? []);
        break;
      case 'error': {
        const text = describeError(400, m.code, { code: m.code, message: m.message ?? '' });
        toast(`调度连接：${text}`, 'error', 6000);
        break;
      }
      default:
        break;
    }
  }

  function nameOf(unitId: string | undefined): string {
    if (!unitId) return '';
    return units.get(unitId)?.name ?? [...sos.values()].find((a) => a.unit_id === unitId)?.unit_name ?? '';
  }

  function onEvents(events: DispatchEvent[]): void {
    let sosChanged = false;
    let newSos = false;
    for (const e of events) {
      if (!e || typeof e.kind !== 'string') continue;
      if (e.kind === 'sos' && e.id) {
        if (!sos.has(e.id)) newSos = true;
        sos.set(e.id, {
          ...(sos.get(e.id) ?? {}),
          id: e.id,
          unit_id: e.unit_id ?? '',
          unit_name: e.unit_name || nameOf(e.unit_id),
          raised_at: e.time ?? new Date().toISOString(),
          lat: typeof e.lat === 'number' ? e.lat : null,
          lon: typeof e.lon === 'number' ? e.lon : null,
          status: sos.get(e.id)?.status ?? 'raised',
        });
        sosChanged = true;
      } else if (e.kind === 'sos_update' && e.id) {
        const a = sos.get(e.id);
        const status = e.status ?? a?.status ?? 'raised';
        if (status === 'closed') sos.delete(e.id);
        else if (a) {
          const next: SosAlarm = { ...a, status };
          if (status === 'acknowledged') Object.assign(next, { acknowledged_by: e.by ?? null, acknowledged_at: e.time ?? null });
          if (status === 'handled') Object.assign(next, { handled_by: e.by ?? null, handled_at: e.time ?? null });
          if (e.note) next.note = e.note;
          sos.set(e.id, next);
        } else {
          // An alarm raised before this page loaded and missed by the list: fetch it.
          void loadSos();
        }
        sosChanged = true;
      }
      feed.unshift(feedEntry(e, ++feedSeq, nameOf));
    }
    if (feed.length > FEED_MAX) feed.length = FEED_MAX;
    renderFeed();
    if (sosChanged) renderSos();
    if (newSos && soundOn) sound.beep();
  }

  const socket = new DispatchSocket({
    onOpen: () => {
      refusedChecks = 0;
      lastSub = null;
      sendSubscription();
      // Alarms may have changed while disconnected.
      void loadSos();
    },
    onMessage: (m) => {
      if (alive) onMessage(m);
    },
    onState: (s, info) => {
      if (!alive) return;
      setWsState(s, info);
      if (s !== 'open') schedulePanels();
    },
    onRefused: () => {
      // A refused upgrade may be an expired session (401 before the upgrade): ask the API, whose
      // 401 handler sends the user to the login page. Not on every retry.
      if (refusedChecks++ % 3 === 0) void get('/auth/me').catch(() => undefined);
    },
  });

  // ------------------------------------------------------------------------------------------
  // Start

  window.__dispatch = {
    units,
    get selectedId() {
      return selectedId;
    },
    get wsState() {
      return wsState;
    },
    get subscription() {
      return lastSub;
    },
    map,
  };

  setWsState('connecting');
  socket.start();
  void loadSos();

  void (async () => {
    const [districts, others] = await Promise.all([
      get<{ items: Geofence[] }>('/geofences', { kind: 'district' }).catch((e) => {
        if (alive) failToast('加载区界失败', e);
        return { items: [] as Geofence[] };
      }),
      Promise.all([
        get<{ items: Geofence[] }>('/geofences', { kind: 'enterprise' }).catch(() => ({ items: [] as Geofence[] })),
        get<{ items: Geofence[] }>('/geofences', { kind: 'custom' }).catch(() => ({ items: [] as Geofence[] })),
      ]),
    ]);
    if (!alive) return;
    map.setDistricts(districts?.items ?? []);
    map.setFences([...(others[0]?.items ?? []), ...(others[1]?.items ?? [])]);
  })();

  void orgUnitsOrEmpty().then((list) => {
    if (!alive || !list.length) return;
    for (const o of list) orgNames.set(o.id, o.name);
    orgSelect.replaceChildren(h('option', { value: '' }, '全部单位'), ...orgOptions(list).map((o) => h('option', { value: o.value }, o.label)));
    orgSelect.value = orgFilter;
    orgSelect.hidden = false;
    if (selectedId) renderDetails();
  });

  return () => {
    alive = false;
    for (const c of [...calls.values()]) c.close();
    live.destroy();
    socket.stop();
    map.destroy();
    sound.close();
    window.clearInterval(blinkTimer);
    window.clearTimeout(subTimer);
    window.clearTimeout(panelTimer);
    window.clearTimeout(entTimer);
    document.removeEventListener('fullscreenchange', onFullscreenChange);
    if (document.fullscreenElement === root) void document.exitFullscreen().catch(() => undefined);
    if (window.__dispatch?.units === units) delete window.__dispatch;
  };
}

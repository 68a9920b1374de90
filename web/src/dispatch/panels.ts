// DOM builders of the dispatch side panel: counts, unit rows, unit details, SOS entries, the event
// feed, 就近调度 rows and the legend. Pure functions of their input; the page wires the handlers.

import { h, type Child } from '../dom';
import { fmtDateTime, label } from '../format';
import { badge } from '../ui/table';
import {
  EVENT_NAMES,
  FLAG_NAMES,
  KIND_GLYPH,
  KIND_NAMES,
  LINK_COLORS,
  LINK_NAMES,
  SOS_STATUS_NAMES,
  SOURCE_NAMES,
  STATE_COLORS,
  STATE_NAMES,
  UNIT_KINDS,
  UNIT_LINKS,
  UNIT_STATES,
  fmtDistance,
  hasFix,
  type DispatchEvent,
  type NearestItem,
  type SosAlarm,
  type Unit,
} from './model';

export function linkBadge(link: string): HTMLElement {
  return badge(label(LINK_NAMES, link), link === 'online' ? 'ok' : link === 'unknown' ? 'warn' : 'muted');
}

export function stateBadge(state: string): HTMLElement {
  const b = badge(label(STATE_NAMES, state), state === 'idle' ? 'muted' : 'info');
  const c = STATE_COLORS[state];
  if (c) {
    b.style.color = c;
    b.style.borderColor = c;
    b.style.background = '#fff';
  }
  return b;
}

export function sosStatusBadge(status: string): HTMLElement {
  return badge(label(SOS_STATUS_NAMES, status), status === 'raised' ? 'bad' : status === 'acknowledged' ? 'warn' : status === 'handled' ? 'ok' : 'muted');
}

/** A coloured glyph for the unit kind (车, 人, 记), filled by link. */
export function kindGlyph(u: Pick<Unit, 'kind' | 'link' | 'sos'>): HTMLElement {
  return h(
    'span',
    {
      class: `kind-glyph kind-${u.kind}${u.sos ? ' sos' : ''}`,
      style: { background: u.sos ? '' : (LINK_COLORS[u.link] ?? LINK_COLORS.unknown) },
      title: `${label(KIND_NAMES, u.kind)} · ${label(LINK_NAMES, u.link)}`,
      'aria-hidden': 'true',
    },
    KIND_GLYPH[u.kind] ?? '?',
  );
}

// ---------------------------------------------------------------------------------------------
// Counts

export function countsBlock(units: Iterable<Unit>): HTMLElement {
  const by: Record<string, Record<string, number>> = {};
  const states: Record<string, number> = {};
  let sos = 0;
  let noFix = 0;
  for (const k of UNIT_KINDS) by[k] = { online: 0, unknown: 0, offline: 0 };
  for (const u of units) {
    const row = (by[u.kind] ??= { online: 0, unknown: 0, offline: 0 });
    row[u.link] = (row[u.link] ?? 0) + 1;
    states[u.state] = (states[u.state] ?? 0) + 1;
    if (u.sos) sos++;
    if (!hasFix(u)) noFix++;
  }
  const total: Record<string, number> = { online: 0, unknown: 0, offline: 0 };
  const rows = Object.entries(by).map(([kind, c]) => {
    let sum = 0;
    for (const l of UNIT_LINKS) {
      total[l] += c[l] ?? 0;
      sum += c[l] ?? 0;
    }
    return h(
      'tr',
      { 'data-kind': kind },
      h('th', { scope: 'row' }, label(KIND_NAMES, kind)),
      UNIT_LINKS.map((l) => h('td', { 'data-link': l, class: `n-${l}` }, c[l] ?? 0)),
      h('td', { 'data-link': 'all' }, sum),
    );
  });
  const all = UNIT_LINKS.reduce((s, l) => s + total[l], 0);
  return h(
    'div',
    { class: 'dcounts', testid: 'unit-counts' },
    h(
      'table',
      null,
      h('thead', null, h('tr', null, h('th', null, ''), UNIT_LINKS.map((l) => h('th', { class: `n-${l}` }, LINK_NAMES[l])), h('th', null, '合计'))),
      h(
        'tbody',
        null,
        rows,
        h('tr', { class: 'total', 'data-kind': 'all' }, h('th', { scope: 'row' }, '合计'), UNIT_LINKS.map((l) => h('td', { 'data-link': l, class: `n-${l}` }, total[l])), h('td', { 'data-link': 'all' }, all)),
      ),
    ),
    h(
      'div',
      { class: 'dstates' },
      UNIT_STATES.map((s) => h('span', { 'data-state': s }, `${STATE_NAMES[s]} `, h('b', null, states[s] ?? 0))),
      h('span', { class: sos ? 'sos-count on' : 'sos-count' }, 'SOS ', h('b', null, sos)),
      noFix ? h('span', { class: 'muted', title: '尚未上报有效定位的单元，不在地图上显示' }, `无定位 ${noFix}`) : null,
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Unit list

export function unitRow(u: Unit, selected: boolean): HTMLLIElement {
  const speed = typeof u.speed_kmh === 'number' && hasFix(u) ? `${Math.round(u.speed_kmh)} km/h` : '';
  return h(
    'li',
    {
      class: `unit-row${selected ? ' selected' : ''}${u.link === 'offline' ? ' offline' : ''}`,
      'data-unit-id': u.id,
      testid: 'unit-row',
      tabindex: 0,
      role: 'option',
      'aria-selected': selected ? 'true' : 'false',
    },
    kindGlyph(u),
    h('span', { class: 'unit-name', title: u.name }, u.name),
    u.sos ? badge('SOS', 'bad') : null,
    u.state !== 'idle' ? stateBadge(u.state) : null,
    h('span', { class: 'unit-extra' }, hasFix(u) ? speed : '无定位'),
  );
}

// ---------------------------------------------------------------------------------------------
// Unit details

function fmtNumber(v: number | null | undefined, unit: string, digits = 0): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(digits)} ${unit}` : '—';
}

function compass(deg: number | null | undefined): string {
  if (typeof deg !== 'number' || !Number.isFinite(deg)) return '—';
  const names = ['北', '东北', '东', '东南', '南', '西南', '西', '西北'];
  const d = ((deg % 360) + 360) % 360;
  return `${Math.round(d)}°（${names[Math.round(d / 45) % 8]}）`;
}

export function unitDetailsList(u: Unit, orgName: string): HTMLElement {
  const t = u.target;
  const rows: [string, Child, string?][] = [
    ['类型', label(KIND_NAMES, u.kind), 'kind'],
    ['所属单位', orgName || '—', 'org'],
    ['定位时间', fmtDateTime(u.time), 'time'],
    ['速度', fmtNumber(u.speed_kmh, 'km/h', 1), 'speed'],
    ['方向', compass(u.heading_deg), 'heading'],
    ['坐标', hasFix(u) ? `${u.lon.toFixed(6)}, ${u.lat.toFixed(6)}` : '无有效定位', 'coords'],
    ['来源', u.source ? (SOURCE_NAMES[u.source] ?? u.source) : '—', 'source'],
    ['连接', linkBadge(u.link), 'link'],
    ['状态', stateBadge(u.state), 'state'],
    ['任务目标', t && (t.name || t.enterprise_id) ? (t.name ?? t.enterprise_id ?? '') : '—', 'target'],
  ];
  if (u.terminal) rows.push(['终端号', h('span', { class: 'mono' }, u.terminal), 'terminal']);
  if (u.device) rows.push(['设备编号', h('span', { class: 'mono' }, u.device), 'device']);
  if (typeof u.accuracy_m === 'number') rows.push(['精度', fmtNumber(u.accuracy_m, '米'), 'accuracy']);
  if (u.flags && u.flags.length) rows.push(['定位质量', u.flags.map((f) => FLAG_NAMES[f] ?? f).join('、'), 'flags']);
  if (u.sos) rows.push(['紧急报警', badge('SOS 报警中', 'bad'), 'sos']);
  return h(
    'dl',
    { class: 'unit-dl' },
    rows.map(([k, v, id]) => [h('dt', null, k), h('dd', { 'data-field': id }, v)]),
  );
}

// ---------------------------------------------------------------------------------------------
// SOS

export interface SosHandlers {
  canCommand: boolean;
  onLocate: (a: SosAlarm) => void;
  onStep: (a: SosAlarm, step: 'acknowledge' | 'handle' | 'close') => void;
}

export function sosItem(a: SosAlarm, o: SosHandlers): HTMLLIElement {
  const who: string[] = [];
  if (a.acknowledged_by) who.push(`${a.acknowledged_by} 于 ${fmtDateTime(a.acknowledged_at)} 确认`);
  if (a.handled_by) who.push(`${a.handled_by} 于 ${fmtDateTime(a.handled_at)} 处置`);
  const btn = (text: string, step: 'acknowledge' | 'handle' | 'close', enabled: boolean, cls = 'btn small') =>
    h('button', { type: 'button', class: cls, testid: `sos-${step}`, disabled: !enabled, onclick: () => o.onStep(a, step) }, text);
  return h(
    'li',
    { class: `sos-item status-${a.status}`, 'data-sos-id': a.id, 'data-status': a.status, testid: 'sos-item' },
    h(
      'div',
      { class: 'sos-line1' },
      sosStatusBadge(a.status),
      h('b', { class: 'sos-unit' }, a.unit_name || a.unit_id),
      h('span', { class: 'sos-time' }, fmtDateTime(a.raised_at)),
    ),
    h(
      'div',
      { class: 'sos-line2' },
      typeof a.lat === 'number' && typeof a.lon === 'number' ? `位置 ${a.lon.toFixed(5)}, ${a.lat.toFixed(5)}` : '位置未知',
      who.length ? h('div', { class: 'muted' }, who.join('；')) : null,
      a.note ? h('div', { class: 'sos-note' }, `备注：${a.note}`) : null,
    ),
    h(
      'div',
      { class: 'row-actions' },
      h('button', { type: 'button', class: 'btn small', testid: 'sos-locate', onclick: () => o.onLocate(a) }, '定位'),
      o.canCommand
        ? [
            btn('确认', 'acknowledge', a.status === 'raised', 'btn small primary'),
            btn('处置', 'handle', a.status === 'raised' || a.status === 'acknowledged'),
            btn('关闭', 'close', a.status !== 'closed', 'btn small danger'),
          ]
        : null,
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Event feed

export interface FeedEntry {
  seq: number;
  kind: string;
  time: string | null;
  unit_id: string | null;
  unit_name: string;
  text: string;
}

/** A socket event as a feed line. `nameOf` finds a unit's name when the event does not carry it. */
export function feedEntry(e: DispatchEvent, seq: number, nameOf: (unitId: string | undefined) => string): FeedEntry {
  const name = e.unit_name || nameOf(e.unit_id) || '未知单元';
  let text: string;
  switch (e.kind) {
    case 'sos':
      text = '发出紧急报警（SOS）';
      break;
    case 'sos_update':
      text = `报警${label(SOS_STATUS_NAMES, e.status)}${e.by ? `（${e.by}）` : ''}`;
      break;
    case 'geofence_enter':
      text = `进入围栏“${e.geofence_name ?? e.geofence_id ?? ''}”`;
      break;
    case 'geofence_leave':
      text = `离开围栏“${e.geofence_name ?? e.geofence_id ?? ''}”`;
      break;
    case 'online':
      text = '上线';
      break;
    case 'offline':
      text = '离线';
      break;
    case 'state':
      text = `状态变为“${label(STATE_NAMES, e.state)}”`;
      break;
    default:
      text = e.kind;
  }
  return { seq, kind: e.kind, time: e.time ?? null, unit_id: e.unit_id ?? null, unit_name: name, text };
}

export function feedItem(f: FeedEntry): HTMLLIElement {
  const full = fmtDateTime(f.time);
  const kindClass = f.kind === 'sos' ? 'bad' : f.kind === 'offline' ? 'muted' : f.kind === 'online' ? 'ok' : f.kind.startsWith('geofence') ? 'warn' : 'info';
  return h(
    'li',
    { class: `feed-item kind-${f.kind}`, 'data-kind': f.kind, 'data-unit-id': f.unit_id ?? undefined, tabindex: f.unit_id ? 0 : undefined },
    h('span', { class: 'feed-time', title: full }, full.length > 11 ? full.slice(11) : full),
    badge(EVENT_NAMES[f.kind] ?? f.kind, kindClass),
    h('b', { class: 'feed-unit' }, f.unit_name),
    h('span', { class: 'feed-text' }, f.text),
  );
}

// ---------------------------------------------------------------------------------------------
// 就近调度

export function nearestRow(item: NearestItem, rank: number, canCommand: boolean, onAssign: () => void): HTMLLIElement {
  const u = item.unit;
  return h(
    'li',
    { class: 'nearest-row', 'data-unit-id': u.id, testid: 'nearest-row', tabindex: 0 },
    h('span', { class: 'nearest-rank' }, rank),
    kindGlyph(u),
    h('span', { class: 'unit-name', title: u.name }, u.name),
    linkBadge(u.link),
    u.state !== 'idle' ? stateBadge(u.state) : null,
    h('span', { class: 'nearest-dist', testid: 'nearest-distance' }, fmtDistance(item.distance_m)),
    canCommand ? h('button', { type: 'button', class: 'btn small primary', testid: 'nearest-assign', onclick: onAssign }, '派遣') : null,
  );
}

// ---------------------------------------------------------------------------------------------
// Legend

export function legend(): HTMLElement {
  const shape = (cls: string, color: string) => h('span', { class: `lg-shape ${cls}`, style: { background: color } });
  const ring = (color: string) => h('span', { class: 'lg-ring', style: { borderColor: color } });
  return h(
    'details',
    { class: 'dlegend', testid: 'map-legend' },
    h('summary', null, '图例'),
    h(
      'div',
      { class: 'lg-grid' },
      h('span', null, shape('vehicle', '#5b6673'), '车辆（箭头为行驶方向）'),
      h('span', null, shape('officer', '#5b6673'), '执法人员'),
      h('span', null, shape('recorder', '#5b6673'), '记录仪'),
      UNIT_LINKS.map((l) => h('span', null, shape('officer', LINK_COLORS[l]), LINK_NAMES[l])),
      UNIT_STATES.filter((s) => STATE_COLORS[s]).map((s) => h('span', null, ring(STATE_COLORS[s]!), STATE_NAMES[s])),
      h('span', null, h('span', { class: 'lg-shape officer sos' }), 'SOS 报警（闪烁）'),
    ),
  );
}

// 录像管理 — the recordings of the body cameras: search (recorder, officer, time range, status,
// linked inspection, legal hold), the recorder's state (channels recording, low-disk alert,
// on-demand recording), and one recording: HLS playback of the whole or a time range, MP4 export
// with its signed manifest (校验清单), links to inspections with the system's suggestions, legal
// hold, retention, the segments with their digests and the signature of the digest chain.
//
// Times are UTC ms in the API and Asia/Shanghai on screen. Fetching the playlist is what the
// server audits as a playback (`recording.play`), so it is fetched only when 播放 is pressed.

import { ApiError, api, buildQuery, get, post, put } from '../api';
import { h, mount, select, type Child } from '../dom';
import {
  CODEC_NAMES,
  LINK_STATE,
  RECORDING_SOURCE,
  RECORDING_STATUS,
  RECORDING_TRIGGER,
  fmtBytes,
  fmtDateTime,
  fmtDuration,
  fmtMs,
  label,
  msToShanghaiLocal,
  shanghaiLocalToMs,
} from '../format';
import { RECORDING_FIELDS } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import { navigate, type Cleanup, type RouteContext } from '../router';
import { can } from '../session';
import type { Inspection, Officer, Page, Recording, RecordingDetail, RecordingLink, RecordingStatus } from '../types';
import { confirmDialog, openDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { canDecode, playHls, type VodHandle } from '../ui/vod';
import { inspectionBadge } from './inspections';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';

/** The part of `GET /recorders` the page uses. */
interface RecorderRef {
  device_id: string;
  name: string;
  access?: { online?: boolean };
}

const DEFAULTS = { device_id: '', officer_id: '', from: '', to: '', status: '', inspection_id: '', held: '' };

/** Who may start and stop on-demand recording (the server checks again). */
function canControl(): boolean {
  return can('recording.review') || can('dispatch.command');
}

export function recordingBadge(r: Recording): HTMLElement {
  return badge(label(RECORDING_STATUS, r.status), r.status === 'recording' ? 'info' : 'muted');
}

function codecs(r: { video_codec: string | null; audio_codec: string | null }): string {
  const v = r.video_codec ? label(CODEC_NAMES, r.video_codec) : '';
  const a = r.audio_codec ? label(CODEC_NAMES, r.audio_codec) : '';
  return [v, a].filter(Boolean).join(' / ') || '—';
}

/** The span of a recording so far (to its last segment's end while recording). */
function durationOf(r: Recording): string {
  return r.ended_at_ms === null ? '—' : fmtDuration(r.ended_at_ms - r.started_at_ms);
}

/** A long hex digest, shortened, with the whole value as its tooltip. */
function digest(hex: string | null | undefined, testid?: string): Child {
  if (!hex) return '—';
  return h('span', { class: 'mono', title: hex, testid }, `${hex.slice(0, 12)}…${hex.slice(-4)}`);
}

function dl(pairs: [string, Child][]): HTMLElement {
  return h('dl', { class: 'meta' }, pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v === null || v === undefined || v === '' ? '—' : v)]));
}

async function recordersOrEmpty(): Promise<RecorderRef[]> {
  try {
    return (await get<{ items: RecorderRef[] }>('/recorders')).items;
  } catch {
    return [];
  }
}

/** The recorder's first catalog channel (the device id doubles as its channel without a catalog). */
async function channelOf(device: string): Promise<string> {
  try {
    const r = await get<{ channel_list?: { channel_id: string }[] }>(`/recorders/${encodeURIComponent(device)}`);
    return r.channel_list?.[0]?.channel_id || device;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) throw e;
    return device;
  }
}

// ---------------------------------------------------------------------------------------------
// List

export async function renderRecordingList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('录像管理');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  mount(outlet, pageHeader('录像管理'), loadingBox());
  const [officers, recorders, filtered] = await Promise.all([
    get<Page<Officer>>('/officers', { page_size: 500 }).then((p) => p.items, () => [] as Officer[]),
    recordersOrEmpty(),
    state.inspection_id
      ? get<Inspection>(`/inspections/${encodeURIComponent(state.inspection_id)}`).catch(() => null)
      : Promise.resolve(null),
  ]);
  /** The inspection code shown for `state.inspection_id`. */
  let inspectionCode = filtered?.code ?? state.inspection_id;

  const device = h('input', { type: 'text', value: state.device_id, testid: 'rec-filter-device', class: 'short', maxlength: 32, placeholder: '设备编号', list: 'rec-recorder-list' });
  const deviceList = h('datalist', { id: 'rec-recorder-list' }, recorders.map((r) => h('option', { value: r.device_id }, r.name)));
  const officer = select([{ value: '', label: '全部' }, ...officers.map((o) => ({ value: o.id, label: o.name }))], { testid: 'rec-filter-officer' }, state.officer_id);
  const from = h('input', { type: 'datetime-local', step: 1, value: state.from ? msToShanghaiLocal(Number(state.from)) : '', testid: 'rec-filter-from', title: '北京时间' });
  const to = h('input', { type: 'datetime-local', step: 1, value: state.to ? msToShanghaiLocal(Number(state.to)) : '', testid: 'rec-filter-to', title: '北京时间' });
  const status = select(optionsOf(RECORDING_STATUS), { testid: 'rec-filter-status' }, state.status);
  const inspection = h('input', { type: 'search', value: inspectionCode, testid: 'rec-filter-inspection', class: 'short', maxlength: 100, placeholder: '检查码' });
  const held = h('input', { type: 'checkbox', testid: 'rec-filter-held', checked: state.held === 'true' });
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true, testid: 'rec-filter-error' });
  const showErr = (msg: string) => {
    err.textContent = msg;
    err.hidden = false;
  };
  const bar = filterBar(
    filter('记录仪', device),
    deviceList,
    filter('执法人员', officer),
    filter('时间范围（北京时间）', from),
    filter('至', to),
    filter('状态', status),
    filter('关联检查', inspection),
    h('label', { class: 'filter' }, held, h('span', null, '仅显示保全')),
    h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询'),
    h(
      'button',
      {
        type: 'button',
        class: 'btn',
        testid: 'rec-filter-reset',
        onclick: () => {
          device.value = from.value = to.value = inspection.value = '';
          officer.value = status.value = '';
          held.checked = false;
          bar.requestSubmit();
        },
      },
      '重置',
    ),
  );
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void apply();
  });
  for (const c of [officer, status, held]) c.addEventListener('change', () => bar.requestSubmit());

  async function apply(): Promise<void> {
    err.hidden = true;
    const f = from.value ? shanghaiLocalToMs(from.value) : null;
    const t = to.value ? shanghaiLocalToMs(to.value) : null;
    if ((from.value && f === null) || (to.value && t === null)) return showErr('时间格式不正确');
    if (f !== null && t !== null && f > t) return showErr('起始时间不能晚于截止时间');
    // 关联检查: an inspection code (or an enterprise name naming one inspection) → its id.
    const code = inspection.value.trim();
    let inspectionId = state.inspection_id;
    if (!code) inspectionId = '';
    else if (code !== inspectionCode) {
      try {
        const pg = await get<Page<Inspection>>('/inspections', { q: code, page_size: 5 });
        const hit = pg.items.find((x) => x.code === code) ?? (pg.items.length === 1 ? pg.items[0] : undefined);
        if (!hit) return showErr(pg.items.length ? `有多个检查与“${code}”相符，请输入完整的检查码` : `未找到检查码为“${code}”的检查`);
        inspectionId = hit.id;
        inspectionCode = hit.code;
        inspection.value = hit.code;
      } catch (e) {
        return showErr(`查找检查失败：${errMsg(e)}`);
      }
    }
    state.device_id = device.value.trim();
    state.officer_id = officer.value;
    state.from = f === null ? '' : String(f);
    state.to = t === null ? '' : String(t);
    state.status = status.value;
    state.inspection_id = inspectionId;
    state.held = held.checked ? 'true' : '';
    state.page = '1';
    await load();
  }

  const statusBox = h('div', { class: 'rec-status', testid: 'rec-status' });
  const listBox = h('div', { class: 'list-box' });
  const refresh = h('button', { type: 'button', class: 'btn', testid: 'rec-refresh', title: '重新加载录像列表和录制状态', onclick: () => void Promise.all([loadStatus(), load()]) }, '刷新');
  const start = canControl()
    ? h('button', { type: 'button', class: 'btn', testid: 'rec-start', onclick: () => openStartDialog(recorders, () => void Promise.all([loadStatus(), load()])) }, '按需录像')
    : null;
  mount(outlet, pageHeader('录像管理', start, refresh), statusBox, bar, err, listBox);

  async function loadStatus(): Promise<void> {
    let st: RecordingStatus;
    try {
      st = await get<RecordingStatus>('/recordings/status');
    } catch {
      mount(statusBox);
      return;
    }
    const pct = st.free_percent === null ? '' : `（可用 ${st.free_percent.toFixed(1)}%）`;
    mount(
      statusBox,
      st.low_disk
        ? h('div', { class: 'form-error', role: 'alert', testid: 'rec-low-disk' }, `磁盘空间不足${pct}：请尽快清理或扩容录像存储，空间耗尽后将无法继续录像。`)
        : null,
      h(
        'div',
        { class: 'rec-active', testid: 'rec-active', 'data-count': st.active.length },
        h('span', { class: 'muted' }, st.active.length ? `正在录制 ${st.active.length} 路：` : '当前没有正在录制的通道'),
        st.active.map((a) =>
          h(
            'span',
            { class: 'rec-active-item', testid: 'rec-active-item', 'data-device': a.device_id },
            a.recording_id ? h('a', { class: 'mono', href: `#/recordings/${encodeURIComponent(a.recording_id)}` }, a.device_id) : h('span', { class: 'mono' }, a.device_id),
            ' ',
            a.triggers.map((t) => label(RECORDING_TRIGGER, t)).join('、'),
            a.triggers.includes('on_demand') && canControl()
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'btn small',
                    testid: 'rec-stop',
                    onclick: async () => {
                      try {
                        await post('/recordings/stop', { device_id: a.device_id, channel_id: a.channel_id });
                        toast('已停止按需录像，录像已结束并签名', 'ok');
                      } catch (e) {
                        toast(`停止失败：${errMsg(e)}`, 'error', 8000);
                      }
                      await Promise.all([loadStatus(), load()]);
                    },
                  },
                  '停止',
                )
              : null,
          ),
        ),
      ),
    );
  }

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    // The URL state is not the API's query: only its own parameters go out.
    const q = {
      device_id: state.device_id,
      officer_id: state.officer_id,
      from: state.from,
      to: state.to,
      status: state.status,
      inspection_id: state.inspection_id,
      held: state.held,
      page: state.page,
      page_size: state.page_size,
    };
    const r = await run(get<Page<Recording>>('/recordings', q));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载录像失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    const linkCells = new Map<string, HTMLElement>();
    mount(
      listBox,
      dataTable<Recording>({
        testid: 'rec-table',
        rowTestid: 'rec-row',
        rowId: (x) => x.id,
        rows: pg.items,
        onRowClick: (x) => navigate(`/recordings/${encodeURIComponent(x.id)}`),
        empty: '没有符合条件的录像',
        columns: [
          { title: '开始时间', width: '150px', className: 'nowrap', render: (x) => h('a', { class: 'row-link', href: `#/recordings/${encodeURIComponent(x.id)}` }, fmtMs(x.started_at_ms)) },
          { title: '时长', width: '72px', className: 'nowrap', render: durationOf },
          { title: '记录仪', width: '170px', className: 'ellipsis mono', tooltip: (x) => `设备 ${x.device_id}，通道 ${x.channel_id}`, render: (x) => x.device_id },
          { title: '执法人员', width: '90px', className: 'ellipsis', render: (x) => x.officer_name ?? '—' },
          { title: '状态', width: '72px', render: (x) => h('span', { testid: 'rec-status-cell', 'data-status': x.status }, recordingBadge(x)) },
          {
            title: '来源/触发',
            width: '130px',
            className: 'two-line',
            render: (x) => [
              h('span', { class: 'line1' }, `${label(RECORDING_SOURCE, x.source)} · ${label(RECORDING_TRIGGER, x.trigger_kind)}`),
              h('span', { class: 'line2', testid: 'rec-codecs' }, codecs(x)),
            ],
          },
          { title: '片段数', width: '60px', render: (x) => h('span', { testid: 'rec-segments' }, String(x.segment_count)) },
          { title: '大小', width: '76px', className: 'nowrap', render: (x) => fmtBytes(x.bytes) },
          { title: '保全', width: '60px', render: (x) => (x.held ? h('span', { title: x.hold_reason ?? '' }, badge('保全', 'warn')) : '—') },
          {
            title: '关联检查',
            className: 'ellipsis wide',
            render: (x) => {
              const cell = h('span', { testid: 'rec-links', class: 'muted' }, '…');
              linkCells.set(x.id, cell);
              return cell;
            },
          },
          { title: '操作', width: '60px', render: (x) => h('a', { class: 'btn small', href: `#/recordings/${encodeURIComponent(x.id)}`, testid: 'rec-view' }, '查看') },
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
    void fillLinks(linkCells);
  }

  await Promise.all([loadStatus(), load()]);
}

/** Fill the 关联检查 cells of a list page (the list has no links: one request per row, four at a time). */
async function fillLinks(cells: Map<string, HTMLElement>): Promise<void> {
  const queue = [...cells.entries()];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [id, cell] = next;
      if (!cell.isConnected) return;
      try {
        const links = await get<RecordingLink[]>(`/recordings/${encodeURIComponent(id)}/links`);
        const linked = links.filter((l) => l.state === 'linked');
        const suggested = links.filter((l) => l.state === 'suggested').length;
        cell.classList.remove('muted');
        cell.title = linked.map((l) => `${l.inspection_code} ${l.enterprise_name}`).join('\n');
        mount(
          cell,
          linked.length
            ? linked.map((l, n) => [n ? '、' : '', h('a', { class: 'mono', href: `#/inspections/${encodeURIComponent(l.inspection_id)}` }, l.inspection_code)])
            : suggested
              ? null
              : '—',
          suggested ? [' ', badge(`建议 ${suggested}`, 'info')] : null,
        );
      } catch {
        cell.textContent = '—';
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

/** 按需录像: pick a recorder; the server waits for its first picture. */
function openStartDialog(recorders: RecorderRef[], onStarted: () => void): void {
  const form = new Form(
    [
      {
        name: 'device_id',
        label: '执法记录仪',
        type: 'select',
        required: true,
        testid: 'rec-start-device',
        options: [{ value: '', label: '请选择' }, ...recorders.map((r) => ({ value: r.device_id, label: `${r.name}（${r.device_id}）${r.access?.online === false ? ' 离线' : ''}` }))],
      },
    ],
    { submitLabel: '开始录像', submitTestid: 'rec-start-submit', errorTestid: 'rec-start-error', columns: 1, fieldLabels: RECORDING_FIELDS },
  );
  const d = openDialog({
    title: '按需录像',
    testid: 'rec-start-dialog',
    body: [h('p', { class: 'field-hint' }, '开始后持续录像，直到在“正在录制”中停止。须记录仪在线并能推送视频。'), form.el],
  });
  form.onSubmit(async (v) => {
    try {
      const channel_id = await channelOf(v.device_id);
      await post<{ recording_id: string }>('/recordings/start', { device_id: v.device_id, channel_id });
    } catch (e) {
      if (e instanceof ApiError && (e.code === 'no_media' || e.status === 504)) {
        form.showError('未收到记录仪的视频流，未能开始录像（记录仪可能离线或未响应）');
        return;
      }
      throw e;
    }
    toast('已开始录像', 'ok');
    d.close();
    onStarted();
  });
}

// ---------------------------------------------------------------------------------------------
// Detail

/** The player of the recording page now shown (destroyed when the page goes or re-renders). */
let activePlayer: VodHandle | null = null;

function stopPlayer(): void {
  activePlayer?.destroy();
  activePlayer = null;
}

export async function renderRecordingDetail(outlet: HTMLElement, ctx: RouteContext): Promise<Cleanup> {
  stopPlayer();
  const id = ctx.params.id;
  const enc = encodeURIComponent(id);
  setTitle('录像管理');
  const back = h('a', { class: 'btn', href: listHref('/recordings'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let x: RecordingDetail;
  try {
    x = await get<RecordingDetail>(`/recordings/${enc}`);
  } catch (e) {
    mount(outlet, pageHeader('录像', back), errorBox(e instanceof ApiError && e.status === 404 ? '该录像不存在或不在您的管辖范围内。' : `加载失败：${errMsg(e)}`));
    return stopPlayer;
  }
  const review = can('recording.review');
  // Removing protection (unlink, dismiss, release a hold) is for reviewers and case handlers;
  // the server also refuses the officer the recording films.
  const unprotect = can('recording.protection_remove');
  const recording = x.status === 'recording';
  const segs = x.segments;
  const firstStart = segs[0]?.start_ms ?? x.started_at_ms;
  const lastEnd = segs.length ? segs[segs.length - 1].end_ms : (x.ended_at_ms ?? x.started_at_ms);

  const facts = dl([
    ['记录仪', h('span', { class: 'mono', testid: 'rec-device' }, x.device_id)],
    ['通道', h('span', { class: 'mono' }, x.channel_id)],
    ['执法人员', x.officer_name],
    ['状态', h('span', { testid: 'rec-detail-status' }, recordingBadge(x))],
    ['来源', label(RECORDING_SOURCE, x.source)],
    ['触发', label(RECORDING_TRIGGER, x.trigger_kind)],
    ['开始时间', fmtMs(x.started_at_ms)],
    [recording ? '已录至' : '结束时间', fmtMs(x.ended_at_ms)],
    ['时长', durationOf(x)],
    ['编码', codecs(x)],
    ['片段数', String(x.segment_count)],
    ['大小', fmtBytes(x.bytes)],
  ]);

  // ---- Playback and export of the whole recording or a range.
  const video = h('video', { class: 'rec-video', controls: true, playsinline: true, preload: 'none', testid: 'rec-video' });
  const playerStatus = h('div', { class: 'rec-player-status', testid: 'rec-player-status', role: 'status' }, '按“播放”开始回放');
  const setPlayerStatus = (st: string, text: string) => {
    playerStatus.dataset.state = st;
    playerStatus.textContent = text;
  };
  video.addEventListener('playing', () => setPlayerStatus('playing', '播放中'));
  video.addEventListener('waiting', () => setPlayerStatus('loading', '缓冲中…'));
  video.addEventListener('pause', () => {
    if (!video.ended && playerStatus.dataset.state !== 'error' && playerStatus.dataset.state !== 'loading') setPlayerStatus('paused', '已暂停');
  });
  video.addEventListener('ended', () => setPlayerStatus('ended', '播放结束'));

  const fromIn = h('input', { type: 'datetime-local', step: 1, testid: 'rec-range-from', title: '北京时间', min: msToShanghaiLocal(firstStart), max: msToShanghaiLocal(lastEnd) });
  const toIn = h('input', { type: 'datetime-local', step: 1, testid: 'rec-range-to', title: '北京时间', min: msToShanghaiLocal(firstStart), max: msToShanghaiLocal(lastEnd) });
  const rangeErr = h('div', { class: 'field-error', testid: 'rec-range-error', role: 'alert' });

  /** The chosen range (UTC ms), or why it is not usable. */
  const range = (): { from?: number; to?: number } | string => {
    const f = fromIn.value ? shanghaiLocalToMs(fromIn.value) : null;
    const t = toIn.value ? shanghaiLocalToMs(toIn.value) : null;
    if (fromIn.value && f === null) return '起始时间格式不正确';
    if (toIn.value && t === null) return '截止时间格式不正确';
    if (f !== null && t !== null && t <= f) return '截止时间须晚于起始时间';
    if (f !== null && f >= lastEnd) return `起始时间须早于录像的结束时间 ${fmtMs(lastEnd)}`;
    if (t !== null && t <= firstStart) return `截止时间须晚于录像的开始时间 ${fmtMs(firstStart)}`;
    return { from: f ?? undefined, to: t ?? undefined };
  };
  /** The range of an export: while recording, up to the last stored segment, so that the MP4 and its manifest cover the same segments. */
  const exportRange = (r: { from?: number; to?: number }) => ({ from: r.from, to: r.to ?? (recording ? lastEnd : undefined) });

  const exportLink = h('a', { class: 'btn', download: '', testid: 'rec-export' }, '导出MP4');
  const manifestLink = h('a', { class: 'btn', download: '', testid: 'rec-manifest', title: '导出文件的签名校验清单（JSON），可用 shouhu verify 离线校验' }, '下载校验清单');
  const syncLinks = () => {
    const r = range();
    rangeErr.textContent = typeof r === 'string' ? r : '';
    for (const [a, file] of [
      [exportLink, 'export.mp4'],
      [manifestLink, 'manifest'],
    ] as const) {
      if (typeof r === 'string') {
        a.removeAttribute('href');
        a.setAttribute('aria-disabled', 'true');
      } else {
        a.href = `/api/v1/recordings/${enc}/${file}${buildQuery(exportRange(r))}`;
        a.removeAttribute('aria-disabled');
      }
    }
  };
  for (const i of [fromIn, toIn]) i.addEventListener('change', syncLinks);
  syncLinks();

  const play = h('button', { type: 'button', class: 'btn primary', testid: 'rec-play' }, '播放');
  let starting = false;
  const startPlayback = async () => {
    const r = range();
    if (typeof r === 'string') {
      rangeErr.textContent = r;
      return;
    }
    starting = true;
    stopPlayer();
    setPlayerStatus('loading', '正在加载…');
    const url = `/api/v1/recordings/${enc}/playlist.m3u8${buildQuery(r)}`;
    try {
      const handle = await playHls(video, url, (msg) => setPlayerStatus('error', `播放失败：${msg}`));
      activePlayer = handle;
      video.dataset.engine = handle.engine;
    } finally {
      starting = false;
    }
  };
  play.addEventListener('click', () => void startPlayback());
  // The video's own play control before 播放 was pressed: start the playback of the chosen range.
  video.addEventListener('play', () => {
    if (!activePlayer && !starting) void startPlayback();
  });
  const clear = h('button', { type: 'button', class: 'btn', testid: 'rec-range-clear', onclick: () => { fromIn.value = toIn.value = ''; syncLinks(); } }, '整段');

  const playerPanel = segs.length
    ? h(
        'section',
        { class: 'panel rec-player', testid: 'rec-player' },
        h('h2', { class: 'wb-title' }, '回放与导出'),
        !canDecode(x.video_codec)
          ? h('div', { class: 'form-notice', testid: 'rec-codec-notice' }, `当前浏览器不能解码 ${label(CODEC_NAMES, x.video_codec)} 视频，可能无法在线播放；可导出 MP4 后用播放器查看。`)
          : null,
        recording ? h('div', { class: 'form-notice' }, `正在录制：回放和导出包含已保存的 ${segs.length} 个片段（至 ${fmtMs(lastEnd)}），按“刷新”可加载新片段。`) : null,
        video,
        playerStatus,
        h(
          'div',
          { class: 'rec-range' },
          h('label', { class: 'filter' }, h('span', null, '时段（北京时间）'), fromIn),
          h('label', { class: 'filter' }, h('span', null, '至'), toIn),
          clear,
          play,
          exportLink,
          manifestLink,
        ),
        rangeErr,
        h('div', { class: 'field-hint' }, '时段留空为整段录像。导出的 MP4 与校验清单为同一时段，可用“shouhu verify 文件 校验清单”离线校验。'),
      )
    : h(
        'section',
        { class: 'panel rec-player', testid: 'rec-player' },
        h('h2', { class: 'wb-title' }, '回放与导出'),
        h('div', { class: 'state', testid: 'rec-no-segments' }, recording ? '尚无已保存的录像片段，第一个片段保存后即可回放，请稍后刷新。' : '该录像没有片段。'),
      );

  // ---- Links to inspections.
  const linksBox = h('div', { testid: 'rec-links-box' });
  let links = x.links;
  const linkAction = async (p: Promise<RecordingLink[]>, done: string, failed: string): Promise<boolean> => {
    try {
      links = await p;
      showLinks();
      toast(done, 'ok');
      return true;
    } catch (e) {
      toast(`${failed}：${errMsg(e)}`, 'error', 8000);
      return false;
    }
  };
  const linkTo = (inspectionId: string, done: string) => linkAction(post<RecordingLink[]>(`/recordings/${enc}/links`, { inspection_id: inspectionId }), done, '关联失败');
  const unlink = (l: RecordingLink, done: string) =>
    linkAction(api<RecordingLink[]>(`/recordings/${enc}/links/${encodeURIComponent(l.inspection_id)}`, { method: 'DELETE' }), done, '操作失败');
  function showLinks(): void {
    const shown = links.filter((l) => l.state !== 'dismissed').sort((a, b) => Number(b.state === 'linked') - Number(a.state === 'linked'));
    const dismissed = links.length - shown.length;
    mount(
      linksBox,
      dataTable<RecordingLink>({
        testid: 'rec-links-table',
        rowTestid: 'rec-link-row',
        rowId: (l) => l.inspection_id,
        rows: shown,
        empty: '尚未关联检查',
        columns: [
          {
            title: '检查码',
            className: 'mono',
            width: '190px',
            render: (l) =>
              l.inspection_id
                ? h('a', { href: `#/inspections/${encodeURIComponent(l.inspection_id)}`, testid: 'rec-link-code' }, l.inspection_code)
                : h('span', { class: 'muted', testid: 'rec-link-hidden' }, '管辖范围外的检查'),
          },
          { title: '企业', className: 'ellipsis wide', tooltip: (l) => l.enterprise_name, render: (l) => l.enterprise_name || '—' },
          { title: '状态', width: '90px', render: (l) => h('span', { testid: 'rec-link-state', 'data-state': l.state }, badge(label(LINK_STATE, l.state), l.state === 'linked' ? 'ok' : 'info')) },
          { title: '时间', width: '150px', className: 'nowrap', render: (l) => fmtMs(l.updated_at_ms) },
          {
            title: '操作',
            width: '150px',
            render: (l) =>
              !review || !l.inspection_id
                ? null
                : l.state === 'suggested'
                  ? h(
                      'span',
                      { class: 'row-actions' },
                      h('button', { type: 'button', class: 'btn small primary', testid: 'rec-link-confirm', onclick: () => void linkTo(l.inspection_id, `已确认关联 ${l.inspection_code}`) }, '确认关联'),
                      unprotect ? h('button', { type: 'button', class: 'btn small', testid: 'rec-link-dismiss', onclick: () => void unlink(l, '已忽略该建议') }, '忽略') : null,
                    )
                  : !unprotect
                    ? null
                    : h(
                      'button',
                      {
                        type: 'button',
                        class: 'btn small danger',
                        testid: 'rec-unlink',
                        onclick: async () => {
                          if (await confirmDialog(`确定取消与检查 ${l.inspection_code}（${l.enterprise_name}）的关联？`, '取消关联', true)) void unlink(l, '已取消关联');
                        },
                      },
                      '取消关联',
                    ),
          },
        ],
      }),
      dismissed ? h('div', { class: 'field-hint' }, `另有 ${dismissed} 条已忽略的建议或已取消的关联（可重新关联）。`) : null,
    );
  }
  showLinks();
  const linkTools = review
    ? [
        h(
          'button',
          {
            type: 'button',
            class: 'btn small primary',
            testid: 'rec-link-open',
            onclick: () => openLinkPicker(x, new Set(links.filter((l) => l.state === 'linked').map((l) => l.inspection_id)), (i) => linkTo(i.id, `已关联检查 ${i.code}`)),
          },
          '关联检查',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'btn small',
            testid: 'rec-suggest',
            title: '按执法人员的检查、时间和位置重新查找可能相关的检查',
            onclick: () => void linkAction(post<RecordingLink[]>(`/recordings/${enc}/suggestions`), '已重新计算系统建议', '计算建议失败'),
          },
          '重新计算建议',
        ),
      ]
    : [];

  // ---- Legal hold and retention.
  const holdBox = h('div', { testid: 'rec-hold' });
  function showHold(r: Recording): void {
    const retention = dl([
      ['保存期限', `${x.retention_days} 天`],
      ['到期时间', x.expires_at_ms !== null ? fmtMs(x.expires_at_ms) : recording ? '录制结束后起算' : '—'],
      ['法律保全', h('span', { testid: 'rec-hold-state', 'data-held': String(r.held) }, r.held ? badge('已保全', 'warn') : '未保全')],
      ['保全原因', r.held ? r.hold_reason : null],
    ]);
    let control: Child = null;
    if (unprotect && r.held) {
      control = h(
        'div',
        { class: 'form-actions' },
        h(
          'button',
          {
            type: 'button',
            class: 'btn danger',
            testid: 'rec-hold-release',
            onclick: async () => {
              if (!(await confirmDialog('确定解除法律保全？解除后录像将按保存期限到期删除。', '解除保全', true))) return;
              try {
                showHold(await put<Recording>(`/recordings/${enc}/hold`, { held: false }));
                toast('已解除法律保全', 'ok');
              } catch (e) {
                toast(`解除失败：${errMsg(e)}`, 'error', 8000);
              }
            },
          },
          '解除保全',
        ),
      );
    } else if (review && !r.held) {
      const form = new Form([{ name: 'reason', label: '保全原因', type: 'textarea', required: true, span: 3, maxlength: 500, testid: 'rec-hold-reason', placeholder: '如：案件办理中，作为证据保存' }], {
        submitLabel: '设置法律保全',
        submitTestid: 'rec-hold-submit',
        errorTestid: 'rec-hold-error',
        columns: 1,
        fieldLabels: RECORDING_FIELDS,
      }).onSubmit(async (v) => {
        showHold(await put<Recording>(`/recordings/${enc}/hold`, { held: true, reason: v.reason.trim() }));
        toast('已设置法律保全', 'ok');
      });
      control = form.el;
    }
    mount(holdBox, retention, r.held ? h('div', { class: 'field-hint' }, '保全期间录像不会因保存期限到期而删除。') : null, control);
  }
  showHold(x);

  // ---- Integrity: the digest chain and its signature.
  const signature = x.head_signature
    ? h('span', { testid: 'rec-signature', 'data-signed': 'true' }, badge('已签名', 'ok'), ' ', digest(x.head_signature))
    : h('span', { testid: 'rec-signature', 'data-signed': 'false' }, recording ? badge('录制中，未签名', 'info') : badge('未签名', 'warn'));
  const integrity = h(
    'section',
    { class: 'panel' },
    h('h2', { class: 'wb-title' }, '完整性'),
    dl([
      ['签名', signature],
      ['摘要链头', digest(x.chain_link, 'rec-chain-link')],
      ['片段', `${x.segment_count} 个`],
    ]),
    h('div', { class: 'field-hint' }, '每个片段保存时登记 SHA-256 与 SM3 摘要，并依次串成摘要链；录像结束时服务器对链头签名。导出时服务器核对片段摘要，校验清单带有签名。'),
  );

  const segments = h(
    'section',
    { class: 'panel' },
    h('h2', { class: 'wb-title' }, `录像片段（${segs.length}）`),
    h(
      'div',
      { class: 'rec-segments' },
      dataTable({
        testid: 'rec-segments-table',
        rowTestid: 'rec-segment-row',
        rowId: (s) => String(s.seq),
        rows: segs,
        empty: '暂无片段',
        columns: [
          { title: '序号', width: '56px', render: (s) => String(s.seq) },
          { title: '开始', width: '150px', className: 'nowrap', render: (s) => fmtMs(s.start_ms) },
          { title: '结束', width: '150px', className: 'nowrap', render: (s) => fmtMs(s.end_ms) },
          { title: '时长', width: '64px', render: (s) => fmtDuration(s.end_ms - s.start_ms) },
          { title: '大小', width: '80px', className: 'nowrap', render: (s) => fmtBytes(s.bytes) },
          { title: 'SHA-256', render: (s) => digest(s.sha256, 'rec-segment-sha256') },
          { title: 'SM3', render: (s) => digest(s.sm3, 'rec-segment-sm3') },
        ],
      }),
    ),
  );

  const refresh = h('button', { type: 'button', class: 'btn', testid: 'rec-detail-refresh', onclick: () => void renderRecordingDetail(outlet, ctx) }, '刷新');
  mount(
    outlet,
    pageHeader(`录像：${x.officer_name ?? x.device_id} ${fmtDateTime(new Date(x.started_at_ms).toISOString())}`, refresh, back),
    h(
      'div',
      { class: 'rec-detail', testid: 'rec-detail', 'data-id': x.id, 'data-status': x.status },
      h('div', { class: 'panel' }, facts),
      playerPanel,
      h('section', { class: 'panel', testid: 'rec-links-panel' }, h('h2', { class: 'wb-title' }, '关联检查', linkTools), linksBox),
      h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '法律保全与保存期限'), holdBox),
      integrity,
      segments,
    ),
  );
  return stopPlayer;
}

/**
 * 关联检查: pick an inspection by its code or enterprise. Offers first the inspections of the
 * recording's officer (those open during the recording on top), else the latest ones.
 */
function openLinkPicker(rec: Recording, linked: Set<string>, onPick: (i: Inspection) => Promise<boolean>): void {
  const search = h('input', { type: 'search', placeholder: '检查码 / 企业名称', maxlength: 100, testid: 'rec-pick-search', class: 'search', 'aria-label': '搜索检查' });
  const note = h('div', { class: 'field-hint', testid: 'rec-pick-note' });
  const results = h('div', { class: 'list-box rec-pick-results' }, loadingBox());
  const form = h('form', { class: 'search-group', role: 'search', novalidate: true }, search, h('button', { type: 'submit', class: 'btn primary', testid: 'rec-pick-submit' }, '查询'));
  const d = openDialog({ title: '关联检查', wide: true, testid: 'rec-pick-dialog', body: [form, note, results] });
  const run = latest();
  const recEnd = rec.ended_at_ms ?? rec.started_at_ms;
  const overlaps = (i: Inspection) => {
    const s = Date.parse(i.started_at);
    const e = i.completed_at ? Date.parse(i.completed_at) : Number.POSITIVE_INFINITY;
    return s <= recEnd && e >= rec.started_at_ms;
  };
  const show = (items: Inspection[], hint: string) => {
    note.textContent = hint;
    results.classList.remove('loading-overlay');
    mount(
      results,
      dataTable<Inspection>({
        testid: 'rec-pick-table',
        rowTestid: 'rec-pick-row',
        rowId: (i) => i.id,
        rows: items,
        empty: '没有找到检查',
        columns: [
          { title: '检查码', className: 'mono', width: '180px', render: (i) => i.code },
          { title: '企业', className: 'ellipsis wide', tooltip: (i) => i.enterprise_name, render: (i) => i.enterprise_name },
          { title: '执法人员', className: 'ellipsis', width: '120px', render: (i) => i.officers.map((o) => o.name).join('、') },
          { title: '开始时间', width: '150px', className: 'nowrap', render: (i) => h('span', null, fmtDateTime(i.started_at), overlaps(i) ? [' ', badge('时段重叠', 'ok')] : null) },
          { title: '状态', width: '72px', render: (i) => inspectionBadge(i) },
          {
            title: '',
            width: '64px',
            render: (i) => {
              if (linked.has(i.id)) return badge('已关联', 'muted');
              const b = h('button', { type: 'button', class: 'btn small primary', testid: 'rec-pick' }, '关联');
              b.addEventListener('click', async () => {
                b.disabled = true;
                if (await onPick(i)) d.close();
                else b.disabled = false;
              });
              return b;
            },
          },
        ],
      }),
    );
  };
  const fail = (e: unknown) => {
    results.classList.remove('loading-overlay');
    mount(results, errorBox(`加载检查失败：${errMsg(e)}`, () => void initial()));
  };
  async function initial(): Promise<void> {
    results.classList.add('loading-overlay');
    if (rec.officer_id) {
      const r = await run(get<Page<Inspection>>('/inspections', { officer_id: rec.officer_id, page_size: 50 }));
      if (r.stale) return;
      if (r.error !== undefined) return fail(r.error);
      const items = r.value!.items;
      if (items.length) {
        const sorted = [...items.filter(overlaps), ...items.filter((i) => !overlaps(i))];
        show(sorted, `${rec.officer_name ?? '该执法人员'}参与的检查（与录像时段重叠的在前）；也可按检查码或企业名称搜索其他检查。`);
        return;
      }
    }
    const r = await run(get<Page<Inspection>>('/inspections', { page_size: 20 }));
    if (r.stale) return;
    if (r.error !== undefined) return fail(r.error);
    show(r.value!.items, '录像的执法人员没有检查记录，以下为最近的检查；可按检查码或企业名称搜索。');
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = search.value.trim();
    if (!q) return void initial();
    results.classList.add('loading-overlay');
    const r = await run(get<Page<Inspection>>('/inspections', { q, page_size: 20 }));
    if (r.stale) return;
    if (r.error !== undefined) return fail(r.error);
    show(r.value!.items, `“${q}”的搜索结果`);
  });
  search.focus();
  void initial();
}

// 现场检查 — list, start (with the inspect-once over-cap filing), and one inspection: the item
// checklist, hazards found with their rectification orders, completion or cancellation.

import { ApiError, api, get, post, put } from '../api';
import { h, mount, select } from '../dom';
import { HAZARD_LEVEL, INSPECTION_KIND, INSPECTION_STATUS, ITEM_RESULT, RECORDING_STATUS, fmtDate, fmtDateTime, fmtDuration, fmtMs, label, shanghaiDatePlus } from '../format';
import { pageHeader, setTitle } from '../layout';
import { batchPrint } from '../ui/batch';
import { navigate, type RouteContext } from '../router';
import { can } from '../session';
import type { Enterprise, Hazard, InspectionDetail, Inspection, InspectionItem, Officer, Page, Recording } from '../types';
import { confirmDialog } from '../ui/dialog';
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';
import { hazardBadge } from './workbench';

const DEFAULTS = { q: '', status: '', kind: '', from: '', to: '' };

export function inspectionBadge(x: Inspection): HTMLElement {
  return badge(label(INSPECTION_STATUS, x.status), x.status === 'completed' ? 'ok' : x.status === 'cancelled' ? 'muted' : 'info');
}

export async function renderInspectionList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('现场检查');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const search = h('input', { type: 'search', placeholder: '检查码 / 企业名称', value: state.q, testid: 'search-input', class: 'search', maxlength: 100, 'aria-label': '搜索检查' });
  const status = select(optionsOf(INSPECTION_STATUS), { testid: 'filter-status' }, state.status);
  const kind = select(optionsOf(INSPECTION_KIND), { testid: 'filter-kind' }, state.kind);
  const from = h('input', { type: 'date', value: state.from, testid: 'filter-from' });
  const to = h('input', { type: 'date', value: state.to, testid: 'filter-to' });
  const bar = filterBar(
    h('div', { class: 'search-group' }, search, h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询')),
    filter('状态', status),
    filter('类型', kind),
    filter('自', from),
    filter('至', to),
  );
  const apply = () => {
    state.q = search.value.trim();
    state.status = status.value;
    state.kind = kind.value;
    state.from = from.value;
    state.to = to.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const s of [status, kind, from, to]) s.addEventListener('change', apply);
  const listBox = h('div', { class: 'list-box' });
  let shown: Inspection[] = [];
  mount(
    outlet,
    pageHeader(
      '现场检查',
      h('button', {
        type: 'button',
        class: 'btn',
        testid: 'inspection-batch-print',
        title: '本页已完成检查的现场检查记录，打包下载',
        onclick: () => {
          const done = shown.filter((x) => x.status === 'completed');
          if (!done.length) return toast('本页没有已完成的检查', 'error');
          void batchPrint('inspection_records', done.map((x) => x.id));
        },
      }, '批量打印检查记录（本页）'),
      can('inspection.write') ? h('a', { class: 'btn primary', href: '#/inspections/new', testid: 'inspection-new' }, '开始检查') : null,
    ),
    bar,
    listBox,
  );

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    // "至" is inclusive for the user: the API's `to` is exclusive, so send the next day.
    const q: Record<string, string> = { ...state };
    if (state.to) {
      const d = new Date(`${state.to}T00:00:00Z`);
      q.to = new Date(d.getTime() + 86_400_000).toISOString().slice(0, 10);
    }
    const r = await run(get<Page<Inspection>>('/inspections', q));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载检查失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    shown = pg.items;
    mount(
      listBox,
      dataTable<Inspection>({
        testid: 'inspection-table',
        rowTestid: 'inspection-row',
        rowId: (x) => x.id,
        rows: pg.items,
        onRowClick: (x) => navigate(`/inspections/${encodeURIComponent(x.id)}`),
        empty: '没有符合条件的检查',
        columns: [
          { title: '检查码', className: 'mono', width: '190px', render: (x) => h('a', { class: 'row-link', href: `#/inspections/${encodeURIComponent(x.id)}` }, x.code) },
          { title: '企业', className: 'ellipsis wide', tooltip: (x) => x.enterprise_name, render: (x) => x.enterprise_name },
          { title: '类型', width: '96px', render: (x) => label(INSPECTION_KIND, x.kind) },
          { title: '执法人员', className: 'ellipsis', render: (x) => x.officers.map((o) => o.name).join('、') },
          { title: '开始时间', width: '150px', className: 'nowrap', render: (x) => fmtDateTime(x.started_at) },
          { title: '隐患', width: '56px', render: (x) => String(x.hazard_count) },
          { title: '状态', width: '90px', render: (x) => h('span', null, inspectionBadge(x), x.over_cap ? badge('超限', 'warn') : null) },
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

/** 开始检查: enterprise (searched), kind, at least two officers; an over-cap answer asks for the reason. */
export async function renderInspectionNew(outlet: HTMLElement): Promise<void> {
  setTitle('开始检查');
  const back = h('a', { class: 'btn', href: listHref('/inspections'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let officers: Officer[];
  try {
    officers = (await get<Page<Officer>>('/officers', { status: 'active', page_size: 500 })).items;
  } catch (e) {
    mount(outlet, pageHeader('开始检查', back), errorBox(`加载执法人员失败：${errMsg(e)}`));
    return;
  }
  const found = new Map<string, Enterprise>();
  const form = new Form(
    [
      { name: 'enterprise', label: '被检查企业', required: true, span: 2, testid: 'inspection-enterprise', placeholder: '输入企业名称或信用代码搜索', suggestions: [] },
      { name: 'kind', label: '检查类型', type: 'select', required: true, value: 'planned', testid: 'inspection-kind', options: Object.entries(INSPECTION_KIND).map(([value, l]) => ({ value, label: l })) },
      { name: 'over_cap_reason', label: '超限检查报备理由', type: 'textarea', span: 3, maxlength: 500, testid: 'inspection-over-cap-reason' },
    ],
    { submitLabel: '开始检查', submitTestid: 'inspection-start', errorTestid: 'inspection-form-error', testid: 'inspection-form', fieldLabels: { enterprise_id: '被检查企业', officer_ids: '执法人员', kind: '检查类型' } },
  );
  form.setHidden('over_cap_reason', true);
  const entInput = form.control('enterprise') as HTMLInputElement;
  let timer = 0;
  entInput.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      const q = entInput.value.trim();
      if (q.length < 2) return;
      try {
        const pg = await get<Page<Enterprise>>('/enterprises', { q, page_size: 20 });
        const list = entInput.list;
        if (!list) return;
        list.replaceChildren();
        for (const e of pg.items) {
          found.set(e.name, e);
          list.appendChild(h('option', { value: e.name }, e.uscc));
        }
      } catch {
        /* suggestions are a convenience */
      }
    }, 250);
  });
  const boxes = officers.map((o) =>
    h('label', { class: 'chk' }, h('input', { type: 'checkbox', value: o.id, testid: 'inspection-officer' }), ` ${o.name}（${o.certificate_no}）`),
  );
  const officerErr = h('div', { class: 'field-error', testid: 'inspection-officers-error' });
  form.el.insertBefore(
    h('div', { class: 'field span-3' }, h('label', { class: 'required' }, '执法人员（至少两名）'), h('div', { class: 'officer-picks' }, boxes), officerErr),
    form.el.querySelector('.form-actions'),
  );
  form.onSubmit(async (v) => {
    const ent = found.get(v.enterprise.trim());
    if (!ent) {
      form.setFieldError('enterprise', '请从搜索结果中选择企业');
      return;
    }
    const ids = boxes.map((b) => b.querySelector('input')!).filter((i) => i.checked).map((i) => i.value);
    officerErr.textContent = ids.length < 2 ? '请至少选择两名执法人员' : '';
    if (ids.length < 2) return;
    const body: Record<string, unknown> = { enterprise_id: ent.id, kind: v.kind, officer_ids: ids };
    if (v.over_cap_reason.trim()) body.over_cap_reason = v.over_cap_reason.trim();
    try {
      const r = await post<InspectionDetail>('/inspections', body);
      toast(r.over_cap ? '已开始检查，超限检查报备已提交' : '已开始检查', 'ok');
      navigate(`/inspections/${encodeURIComponent(r.id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'over_cap') {
        form.setHidden('over_cap_reason', false);
        form.showError(`该企业本年度已检查 ${String(e.body.visits)} 次，已达“综合查一次”上限 ${String(e.body.cap)} 次。如确需检查，请填写超限检查报备理由后再提交。`);
        form.control('over_cap_reason').focus();
        return;
      }
      throw e;
    }
  });
  mount(outlet, pageHeader('开始检查', back), h('div', { class: 'panel' }, form.el));
}

function dl(pairs: [string, Node | string | null | undefined][]): HTMLElement {
  return h('dl', { class: 'meta' }, pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]));
}

export async function renderInspectionDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  setTitle('现场检查');
  const back = h('a', { class: 'btn', href: listHref('/inspections'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let x: InspectionDetail;
  let items: InspectionItem[] = [];
  try {
    x = await get<InspectionDetail>(`/inspections/${encodeURIComponent(id)}`);
    if (x.status === 'in_progress') items = (await get<Page<InspectionItem>>('/inspection-items', { active: true, page_size: 200 })).items;
  } catch (e) {
    mount(outlet, pageHeader('现场检查', back), errorBox(e instanceof ApiError && e.status === 404 ? '该检查不存在或不在您的管辖范围内。' : `加载失败：${errMsg(e)}`));
    return;
  }
  const reload = () => void renderInspectionDetail(outlet, ctx);
  const editing = x.status === 'in_progress' && can('inspection.write');

  const facts = dl([
    ['检查码', h('span', { class: 'mono', testid: 'inspection-code' }, x.code)],
    ['企业', h('a', { href: `#/enterprises/${encodeURIComponent(x.enterprise_id)}` }, x.enterprise_name)],
    ['类型', label(INSPECTION_KIND, x.kind)],
    ['状态', h('span', { testid: 'inspection-status' }, inspectionBadge(x))],
    ['执法单位', x.org_unit_name],
    ['执法人员', x.officers.map((o) => `${o.name}（${o.certificate_no}）`).join('、')],
    ['开始时间', fmtDateTime(x.started_at)],
    ['完成时间', fmtDateTime(x.completed_at)],
    ['现场检查记录', x.record_number ? h('span', { class: 'mono' }, x.record_number) : null],
    ['检查小结', x.summary || null],
    ['超限检查', x.over_cap_filing ? `已报备（本年第 ${x.over_cap_filing.visits_before + 1} 次，上限 ${x.over_cap_filing.yearly_cap} 次）：${x.over_cap_filing.reason}` : '否'],
    ['取消原因', x.cancel_reason],
  ]);

  // Item checklist: recorded results, or (while in progress) every active item with a choice.
  const recorded = new Map(x.results.map((r) => [r.item_id, r]));
  let checklist: HTMLElement;
  if (editing) {
    const rows = items.map((it) => {
      const cur = recorded.get(it.id);
      const sel = select(
        [{ value: '', label: '未检查' }, ...Object.entries(ITEM_RESULT).map(([value, l]) => ({ value, label: l }))],
        { testid: 'item-result', 'data-item': it.id },
        cur?.result ?? '',
      );
      const note = h('input', { type: 'text', value: cur?.note ?? '', maxlength: 1000, placeholder: '备注', testid: 'item-note' });
      // Photos: uploaded at once (JPEG/PNG), their keys saved with the result.
      const keys: string[] = [...(cur?.photo_keys ?? [])];
      const count = h('span', { class: 'photo-count', testid: 'item-photo-count' });
      const showCount = () => {
        count.textContent = keys.length ? `${keys.length} 张` : '';
      };
      showCount();
      const file = h('input', { type: 'file', accept: 'image/jpeg,image/png', multiple: true, capture: 'environment', testid: 'item-photo', class: 'photo-input', 'aria-label': `${it.code} 现场照片` });
      file.addEventListener('change', async () => {
        const files = Array.from(file.files ?? []);
        for (const [n, f] of files.entries()) {
          if (keys.length >= 20) {
            toast('每个检查事项最多 20 张照片', 'error');
            break;
          }
          count.textContent = `上传中 ${n + 1}/${files.length}…`;
          try {
            const a = await api<{ key: string }>('/attachments', { method: 'POST', body: f, contentType: 'application/octet-stream' });
            keys.push(a.key);
          } catch (e) {
            toast(`照片“${f.name}”上传失败：${errMsg(e)}`, 'error', 6000);
          }
        }
        file.value = '';
        showCount();
      });
      const photo = h('label', { class: 'btn small photo-btn' }, '拍照/上传', file);
      return { it, sel, note, keys, cell: h('span', { class: 'row-actions' }, photo, count) };
    });
    const save = h('button', { type: 'button', class: 'btn primary', testid: 'results-save' }, '保存检查结果');
    save.addEventListener('click', async () => {
      const results = rows.filter((r) => r.sel.value).map((r) => ({ item_id: r.it.id, result: r.sel.value, note: r.note.value.trim(), photo_keys: r.keys }));
      if (!results.length) {
        toast('请至少检查一项', 'error');
        return;
      }
      save.setAttribute('disabled', '');
      try {
        await put(`/inspections/${encodeURIComponent(id)}/results`, { results });
        toast('检查结果已保存', 'ok');
        reload();
      } catch (e) {
        toast(`保存失败：${errMsg(e)}`, 'error', 6000);
      } finally {
        save.removeAttribute('disabled');
      }
    });
    checklist = h(
      'div',
      null,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'data-table', testid: 'checklist' },
          h('thead', null, h('tr', null, h('th', { style: { width: '90px' } }, '编号'), h('th', null, '检查事项'), h('th', { style: { width: '120px' } }, '结果'), h('th', null, '备注'), h('th', { style: { width: '170px' } }, '现场照片'))),
          h('tbody', null, rows.map((r) => h('tr', { testid: 'checklist-row' }, h('td', { class: 'mono' }, r.it.code), h('td', null, r.it.title), h('td', null, r.sel), h('td', null, r.note), h('td', null, r.cell)))),
        ),
      ),
      h('div', { class: 'form-actions' }, save),
    );
  } else {
    checklist = dataTable({
      testid: 'results-table',
      rows: x.results,
      empty: '没有检查记录',
      columns: [
        { title: '编号', className: 'mono', width: '90px', render: (r) => r.item_code },
        { title: '检查事项', className: 'wide', render: (r) => r.item_title },
        { title: '结果', width: '100px', render: (r) => badge(label(ITEM_RESULT, r.result), r.result === 'hazard' ? 'bad' : r.result === 'pass' ? 'ok' : 'muted') },
        { title: '备注', render: (r) => r.note || '—' },
        {
          title: '现场照片',
          width: '150px',
          render: (r) =>
            r.photo_keys.length
              ? h('span', { class: 'row-actions', testid: 'result-photos' }, r.photo_keys.map((k, n) => h('a', { href: `/api/v1/inspections/${encodeURIComponent(x.id)}/photo?key=${encodeURIComponent(k)}`, target: '_blank', rel: 'noopener' }, `照片${n + 1}`)))
              : '—',
        },
      ],
    });
  }

  const hazards = dataTable<Hazard>({
    testid: 'inspection-hazards',
    rowTestid: 'inspection-hazard-row',
    rowId: (hz) => hz.id,
    rows: x.hazards,
    onRowClick: (hz) => navigate(`/hazards/${encodeURIComponent(hz.id)}`),
    empty: '未发现隐患',
    columns: [
      { title: '隐患描述', className: 'ellipsis wide', render: (hz) => h('a', { class: 'row-link', href: `#/hazards/${encodeURIComponent(hz.id)}` }, hz.description) },
      { title: '级别', width: '110px', render: (hz) => label(HAZARD_LEVEL, hz.level) },
      { title: '整改指令书', className: 'mono', width: '220px', render: (hz) => hz.order_number },
      { title: '整改期限', width: '100px', render: (hz) => fmtDate(hz.rectification_deadline) },
      { title: '状态', width: '110px', render: hazardBadge },
    ],
  });

  let hazardForm: Form | null = null;
  let actions: HTMLElement | null = null;
  if (editing) {
    const hazardItems = x.results.filter((r) => r.result === 'hazard');
    hazardForm = new Form(
      [
        { name: 'item_id', label: '对应检查事项', type: 'select', testid: 'hazard-item', value: hazardItems[0]?.item_id ?? '', options: [{ value: '', label: '（无对应事项）' }, ...hazardItems.map((r) => ({ value: r.item_id, label: `${r.item_code} ${r.item_title}` }))] },
        { name: 'level', label: '隐患级别', type: 'select', required: true, value: 'general', testid: 'hazard-level', options: Object.entries(HAZARD_LEVEL).map(([value, l]) => ({ value, label: l })) },
        { name: 'rectification_deadline', label: '整改期限', type: 'date', required: true, value: shanghaiDatePlus(15), testid: 'hazard-deadline', validate: (v) => (v < shanghaiDatePlus(0) ? '期限不能早于今天' : null) },
        { name: 'description', label: '隐患描述', type: 'textarea', required: true, span: 3, maxlength: 1000, testid: 'hazard-description-input' },
      ],
      { submitLabel: '登记隐患并下达整改指令', submitTestid: 'hazard-submit', errorTestid: 'hazard-form-error' },
    ).onSubmit(async (v) => {
      await post(`/inspections/${encodeURIComponent(id)}/hazards`, {
        item_id: v.item_id || null,
        level: v.level,
        description: v.description.trim(),
        rectification_deadline: v.rectification_deadline,
      });
      toast('隐患已登记，整改指令书已生成', 'ok');
      reload();
    });
    const summary = h('textarea', { rows: 2, maxlength: 2000, placeholder: '检查小结', testid: 'inspection-summary', class: 'wide-input' });
    const complete = h('button', { type: 'button', class: 'btn primary', testid: 'inspection-complete' }, '完成检查');
    complete.addEventListener('click', async () => {
      try {
        await post(`/inspections/${encodeURIComponent(id)}/complete`, { summary: summary.value.trim() });
        toast('检查已完成，现场检查记录已编号', 'ok');
        reload();
      } catch (e) {
        toast(`不能完成：${errMsg(e)}`, 'error', 8000);
      }
    });
    const cancel = h('button', { type: 'button', class: 'btn danger', testid: 'inspection-cancel' }, '取消检查');
    cancel.addEventListener('click', async () => {
      if (!(await confirmDialog('确定取消本次检查？已登记隐患的检查不能取消。', '取消检查', true))) return;
      try {
        await post(`/inspections/${encodeURIComponent(id)}/cancel`, { reason: '现场未能开展检查' });
        reload();
      } catch (e) {
        toast(`不能取消：${errMsg(e)}`, 'error', 8000);
      }
    });
    actions = h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '完成检查'), summary, h('div', { class: 'form-actions' }, complete, cancel));
  }
  const docLinks =
    x.status === 'completed'
      ? [
          h('a', { class: 'btn', href: `/api/v1/inspections/${encodeURIComponent(x.id)}/record?format=pdf`, target: '_blank', rel: 'noopener', testid: 'record-pdf' }, '现场检查记录（PDF）'),
          h('a', { class: 'btn', href: `/api/v1/inspections/${encodeURIComponent(x.id)}/record?format=docx`, testid: 'record-docx' }, 'Word'),
        ]
      : [];
  // 证据包: every linked (closed) recording with its signed manifest, the summary, the public key.
  const evidence = can('recording.view')
    ? h('a', { class: 'btn', href: `/api/v1/inspections/${encodeURIComponent(x.id)}/evidence.zip`, download: '', testid: 'inspection-evidence', title: '关联的已结束录像（MP4）及其签名校验清单、检查摘要，打包下载' }, '证据包')
    : null;
  const recordings = can('recording.view') ? linkedRecordings(x.id) : null;
  const fileCase =
    x.status === 'completed' && can('case.write')
      ? h('a', { class: 'btn', href: `#/cases/new?inspection_id=${encodeURIComponent(x.id)}`, testid: 'inspection-file-case' }, '立案')
      : null;

  mount(
    outlet,
    pageHeader(`现场检查：${x.enterprise_name}`, ...docLinks, evidence, fileCase, back),
    h('div', { class: 'panel', testid: 'inspection-detail', 'data-id': x.id }, facts),
    h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '检查事项'), checklist),
    h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '发现的隐患'), hazards, hazardForm ? h('div', { class: 'subform' }, h('h3', null, '登记隐患'), hazardForm.el) : null),
    recordings,
    actions,
  );
}

/** 关联录像: the recordings linked to an inspection, filled in when they arrive. */
function linkedRecordings(inspectionId: string): HTMLElement {
  const title = h('h2', { class: 'wb-title' }, '关联录像');
  const box = h('div', null, loadingBox());
  const all = h('a', { class: 'btn small', href: `#/recordings?inspection_id=${encodeURIComponent(inspectionId)}`, testid: 'inspection-recordings-all' }, '在录像管理中查看');
  void get<Page<Recording>>('/recordings', { inspection_id: inspectionId, page_size: 20 }).then(
    (pg) => {
      title.replaceChildren(`关联录像（${pg.total}）`, all);
      mount(
        box,
        dataTable<Recording>({
          testid: 'inspection-recordings',
          rowTestid: 'inspection-recording-row',
          rowId: (r) => r.id,
          rows: pg.items,
          onRowClick: (r) => navigate(`/recordings/${encodeURIComponent(r.id)}`),
          empty: '没有关联的录像',
          columns: [
            { title: '开始时间', width: '150px', className: 'nowrap', render: (r) => h('a', { class: 'row-link', href: `#/recordings/${encodeURIComponent(r.id)}` }, fmtMs(r.started_at_ms)) },
            { title: '时长', width: '80px', render: (r) => (r.ended_at_ms === null ? '—' : fmtDuration(r.ended_at_ms - r.started_at_ms)) },
            { title: '记录仪', className: 'mono ellipsis', render: (r) => r.device_id },
            { title: '执法人员', width: '100px', className: 'ellipsis', render: (r) => r.officer_name ?? '—' },
            { title: '片段数', width: '64px', render: (r) => String(r.segment_count) },
            { title: '状态', width: '80px', render: (r) => badge(label(RECORDING_STATUS, r.status), r.status === 'recording' ? 'info' : 'muted') },
          ],
        }),
        pg.total > pg.items.length ? h('div', { class: 'field-hint' }, `仅列出前 ${pg.items.length} 条。`) : null,
      );
    },
    (e) => mount(box, errorBox(`加载关联录像失败：${errMsg(e)}`)),
  );
  return h('section', { class: 'panel', testid: 'inspection-recordings-panel' }, title, box);
}

// 案件办理 — list, filing from inspections, and one case: documents with approval, dual penalty,
// payment, criminal referral, closing with approval. Open cases of other units are not listed.

import { ApiError, api, get, post } from '../api';
import { h, mount, select } from '../dom';
import { CASE_STATUS, DOC_STATUS, fmtDate, fmtDateTime, fmtYuan, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import { batchPrint } from '../ui/batch';
import { navigate, type RouteContext } from '../router';
import { can, corpsLevel } from '../session';
import type { CaseDetail, CaseDocument, CaseSummary, DocType, InspectionDetail, Page } from '../types';

interface CaseFileItem {
  id: string;
  filename: string;
  content_type: string;
  size: number;
  sha256: string;
  sm3: string;
  uploaded_at: string;
}

interface ReviewRule {
  id: string;
  code: string;
  title: string;
  points: number;
  active: boolean;
}

interface CaseReview {
  id: string;
  total: number;
  max_total: number;
  grade: string;
  exemplary: boolean;
  comment: string;
  created_at: string;
  findings: { rule_id: string; score: number; finding: string }[];
}

const REVIEW_GRADE: Record<string, string> = { excellent: '优秀', qualified: '合格', unqualified: '不合格' };

/** 案卷: the uploaded electronic case file and its reviews (closed cases). */
async function caseFilePanel(c: CaseDetail, reload: () => void): Promise<HTMLElement | null> {
  if (c.status !== 'closed') return null;
  const id = encodeURIComponent(c.id);
  let file: { items: CaseFileItem[]; reviews: CaseReview[] };
  let rules: ReviewRule[] = [];
  try {
    file = await get(`/cases/${id}/case-file`);
    if (can('case.review')) rules = (await get<ReviewRule[]>('/case-review-rules')).filter((r) => r.active);
  } catch (e) {
    return errorBox(`加载案卷失败：${errMsg(e)}`);
  }
  const items = dataTable<CaseFileItem>({
    testid: 'case-file-items',
    rowTestid: 'case-file-item',
    rowId: (x) => x.id,
    rows: file.items,
    empty: '尚未上传电子案卷',
    columns: [
      { title: '文件', render: (x) => h('a', { href: `/api/v1/cases/${id}/case-file/${encodeURIComponent(x.id)}`, target: '_blank', rel: 'noopener' }, x.filename) },
      { title: '大小', width: '90px', render: (x) => `${Math.ceil(x.size / 1024)} KB` },
      { title: 'SM3', className: 'mono ellipsis', tooltip: (x) => x.sm3, render: (x) => x.sm3 },
      { title: '上传时间', width: '150px', render: (x) => fmtDateTime(x.uploaded_at) },
    ],
  });
  const parts: HTMLElement[] = [h('h2', { class: 'wb-title' }, '电子案卷'), items];
  if (can('case.write')) {
    const input = h('input', { type: 'file', accept: 'application/pdf,image/jpeg,image/png', testid: 'case-file-input' });
    const btn = h('button', { type: 'button', class: 'btn', testid: 'case-file-upload' }, '上传');
    btn.addEventListener('click', async () => {
      const f = input.files?.[0];
      if (!f) return toast('请选择 PDF 或图片文件', 'error');
      btn.setAttribute('disabled', '');
      try {
        await api(`/cases/${id}/case-file`, { method: 'POST', query: { filename: f.name }, body: f, contentType: 'application/octet-stream' });
        toast('已上传', 'ok');
        reload();
      } catch (e) {
        toast(`上传失败：${errMsg(e)}`, 'error', 6000);
      } finally {
        btn.removeAttribute('disabled');
      }
    });
    parts.push(h('div', { class: 'form-actions' }, input, btn));
  }
  for (const r of file.reviews) {
    parts.push(
      h('div', { class: 'subform', testid: 'case-review' },
        h('h3', null, `评查：${r.total} / ${r.max_total} 分，${REVIEW_GRADE[r.grade] ?? r.grade}${r.exemplary ? '，典型案例' : ''}（${fmtDateTime(r.created_at)}）`),
        r.comment ? h('p', null, r.comment) : null),
    );
  }
  // Case-file review is the corps grading the districts' files (the server refuses it below).
  if (can('case.review') && corpsLevel() && file.items.length && rules.length) {
    const rows = rules.map((r) => ({
      r,
      score: h('input', { type: 'number', min: 0, max: r.points, value: r.points, testid: 'review-score', style: { width: '70px' } }),
      note: h('input', { type: 'text', maxlength: 2000, placeholder: '评查意见', testid: 'review-finding' }),
    }));
    const exemplaryBox = h('input', { type: 'checkbox', testid: 'review-exemplary' });
    const comment = h('input', { type: 'text', maxlength: 4000, placeholder: '总体评价', class: 'wide-input', testid: 'review-comment' });
    const submit = h('button', { type: 'button', class: 'btn primary', testid: 'review-submit' }, '提交评查');
    submit.addEventListener('click', async () => {
      try {
        await post(`/cases/${id}/reviews`, {
          findings: rows.map((x) => ({ rule_id: x.r.id, score: Number(x.score.value), finding: x.note.value.trim() })),
          exemplary: exemplaryBox.checked,
          comment: comment.value.trim(),
        });
        toast('评查已提交', 'ok');
        reload();
      } catch (e) {
        toast(`提交失败：${errMsg(e)}`, 'error', 8000);
      }
    });
    parts.push(
      h('div', { class: 'subform' }, h('h3', null, '案卷评查'),
        h('table', { class: 'data-table' }, h('tbody', null, rows.map((x) => h('tr', null, h('td', { class: 'mono' }, x.r.code), h('td', null, x.r.title), h('td', null, x.score, ` / ${x.r.points}`), h('td', null, x.note))))),
        comment, h('label', { class: 'chk' }, exemplaryBox, ' 评为典型案例（仅优秀案卷）'), h('div', { class: 'form-actions' }, submit)),
    );
  }
  return h('section', { class: 'panel', testid: 'case-file-panel' }, parts);
}
import { Form } from '../ui/form';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, listHref, optionsOf, readState, writeState } from './list-util';
import { caseBadge } from './workbench';

const DEFAULTS = { q: '', status: '' };

export async function renderCaseList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('案件办理');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();
  const search = h('input', { type: 'search', placeholder: '案号 / 案由 / 企业', value: state.q, testid: 'search-input', class: 'search', maxlength: 100, 'aria-label': '搜索案件' });
  const status = select(optionsOf(CASE_STATUS), { testid: 'filter-status' }, state.status);
  const bar = filterBar(h('div', { class: 'search-group' }, search, h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询')), filter('状态', status));
  const apply = () => {
    state.q = search.value.trim();
    state.status = status.value;
    state.page = '1';
    void load();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  status.addEventListener('change', apply);
  const listBox = h('div', { class: 'list-box' });
  let shown: CaseSummary[] = [];
  const printAll = h('button', {
    type: 'button',
    class: 'btn',
    testid: 'case-batch-print',
    title: '本页列出的案件中已审批的执法文书，打包下载（用于案卷归档）',
    onclick: () => {
      if (!shown.length) return toast('本页没有案件', 'error');
      void batchPrint('case_documents', shown.map((x) => x.id));
    },
  }, '批量打印案件文书（本页）');
  mount(outlet, pageHeader('案件办理', printAll), h('p', { class: 'page-desc muted' }, '在办案件仅承办单位和总队可见；结案后全市可查阅。'), bar, listBox);

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<CaseSummary>>('/cases', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载案件失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    shown = pg.items;
    mount(
      listBox,
      dataTable<CaseSummary>({
        testid: 'case-table',
        rowTestid: 'case-row',
        rowId: (x) => x.id,
        rows: pg.items,
        onRowClick: (x) => navigate(`/cases/${encodeURIComponent(x.id)}`),
        empty: '没有符合条件的案件',
        columns: [
          { title: '案号', className: 'mono', width: '210px', render: (x) => h('a', { class: 'row-link', href: `#/cases/${encodeURIComponent(x.id)}` }, x.number ?? '（待立案）') },
          { title: '案由', className: 'ellipsis wide', tooltip: (x) => x.title, render: (x) => x.title },
          { title: '当事企业', className: 'ellipsis', render: (x) => x.enterprise_name },
          { title: '立案申请', width: '100px', render: (x) => fmtDate(x.filed_at) },
          { title: '办理期限', width: '100px', render: (x) => fmtDate(x.decision_due) },
          { title: '状态', width: '110px', render: caseBadge },
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

const yuanToCents = (v: string): number => Math.round(Number(v) * 100);
const checkYuan = (v: string): string | null => (v === '' || (/^\d+(\.\d{1,2})?$/.test(v) && Number(v) <= 1e9) ? null : '请输入金额（元，最多两位小数）');

/** 立案 from a completed inspection (`?inspection_id=`). */
export async function renderCaseNew(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('立案');
  const back = h('a', { class: 'btn', href: listHref('/cases'), testid: 'back' }, '← 返回列表');
  const inspectionId = ctx.query.get('inspection_id') ?? '';
  mount(outlet, loadingBox());
  let insp: InspectionDetail;
  try {
    insp = await get<InspectionDetail>(`/inspections/${encodeURIComponent(inspectionId)}`);
  } catch (e) {
    mount(outlet, pageHeader('立案', back), errorBox(`请从一次已完成的检查发起立案（${errMsg(e)}）`));
    return;
  }
  const form = new Form(
    [
      { name: 'title', label: '案由', required: true, span: 3, maxlength: 200, testid: 'case-title', value: insp.hazards[0] ? `${insp.hazards[0].description}案` : '' },
      { name: 'violation', label: '违法事实', type: 'textarea', required: true, span: 3, maxlength: 4000, testid: 'case-violation', value: insp.hazards.map((x) => x.description).join('；') },
      { name: 'responsible_person', label: '责任人', maxlength: 50, testid: 'case-person' },
      { name: 'party_id_number', label: '责任人身份证号', maxlength: 18, testid: 'case-id-number', validate: (v) => (v === '' || /^\d{17}[\dXx]$/.test(v) ? null : '身份证号应为 18 位') },
      { name: 'party_phone', label: '联系电话', type: 'tel', maxlength: 20, testid: 'case-phone' },
      { name: 'proposed_fine', label: '拟罚款金额（元）', testid: 'case-fine', validate: checkYuan },
    ],
    { submitLabel: '提交立案审批', submitTestid: 'case-submit', errorTestid: 'case-form-error', testid: 'case-form', fieldLabels: { proposed_fine_cents: '拟罚款金额', inspection_ids: '关联检查' } },
  ).onSubmit(async (v) => {
    const c = await post<CaseDetail>('/cases', {
      enterprise_id: insp.enterprise_id,
      inspection_ids: [insp.id],
      title: v.title.trim(),
      violation: v.violation.trim(),
      responsible_person: v.responsible_person.trim(),
      party_id_number: v.party_id_number.trim().toUpperCase(),
      party_phone: v.party_phone.trim(),
      proposed_fine_cents: v.proposed_fine ? yuanToCents(v.proposed_fine) : null,
    });
    toast('已提交立案审批', 'ok');
    navigate(`/cases/${encodeURIComponent(c.id)}`);
  });
  mount(
    outlet,
    pageHeader(`立案：${insp.enterprise_name}`, back),
    h('div', { class: 'panel' }, h('p', { class: 'muted' }, `关联检查 ${insp.code}；身份证号、电话和拟罚款金额以国密 SM4 加密存储。`), form.el),
  );
}

function dl(pairs: [string, Node | string | null | undefined][]): HTMLElement {
  return h('dl', { class: 'meta' }, pairs.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]));
}

export async function renderCaseDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  setTitle('案件');
  const back = h('a', { class: 'btn', href: listHref('/cases'), testid: 'back' }, '← 返回列表');
  mount(outlet, loadingBox());
  let c: CaseDetail;
  let docTypes: DocType[] = [];
  try {
    [c, docTypes] = await Promise.all([get<CaseDetail>(`/cases/${encodeURIComponent(id)}`), get<DocType[]>('/enforcement/doc-types')]);
  } catch (e) {
    mount(outlet, pageHeader('案件', back), errorBox(e instanceof ApiError && e.status === 404 ? '该案件不存在，或为其他单位的在办案件（在办案件仅承办单位和总队可见）。' : `加载失败：${errMsg(e)}`));
    return;
  }
  const reload = () => void renderCaseDetail(outlet, ctx);
  const act = (path: string, body: unknown, done: string) => async () => {
    try {
      await post(`/cases/${encodeURIComponent(id)}/${path}`, body);
      toast(done, 'ok');
      reload();
    } catch (e) {
      toast(`操作失败：${errMsg(e)}`, 'error', 8000);
    }
  };
  const btn = (text: string, testid: string, onclick: () => void, cls = 'btn') => h('button', { type: 'button', class: cls, testid, onclick }, text);

  const facts = dl([
    ['案号', h('span', { class: 'mono', testid: 'case-number' }, c.number ?? '（待立案）')],
    ['状态', h('span', { testid: 'case-status' }, caseBadge(c))],
    ['案由', c.title],
    ['当事企业', h('a', { href: `#/enterprises/${encodeURIComponent(c.enterprise_id)}` }, c.enterprise_name)],
    ['承办单位', c.org_unit_name],
    ['违法事实', c.violation],
    ['责任人', c.responsible_person || null],
    ['身份证号', c.party_id_number || null],
    ['联系电话', c.party_phone || null],
    ['拟罚款', fmtYuan(c.proposed_fine_cents)],
    ['立案申请', fmtDateTime(c.filed_at)],
    ['办理期限', fmtDate(c.decision_due)],
    ['处罚决定书', c.decision_number ? h('span', { class: 'mono' }, c.decision_number) : null],
    ['对单位罚款', fmtYuan(c.company_fine_cents)],
    ['对个人罚款', fmtYuan(c.person_fine_cents)],
    ['缴款期限', fmtDate(c.payment_due)],
    ['已缴款', c.paid_cents !== null ? `${fmtYuan(c.paid_cents)}（${fmtDate(c.paid_at)}）` : null],
    ['行刑衔接', c.criminal_referral ? `已移送：${c.referral_note ?? ''}` : '否'],
    ['审批意见', c.decision_reason || null],
    ['结案时间', fmtDateTime(c.closed_at)],
    ['关联检查', h('span', null, c.inspection_ids.map((i) => h('a', { href: `#/inspections/${encodeURIComponent(i)}`, class: 'mono', style: { marginRight: '8px' } }, '查看检查')))],
  ]);

  const open = c.status === 'open';
  const docs = dataTable<CaseDocument>({
    testid: 'case-documents',
    rowTestid: 'case-document-row',
    rowId: (d) => d.id,
    rows: c.documents,
    empty: '暂无文书',
    columns: [
      { title: '文书', width: '220px', render: (d) => d.title },
      { title: '文号', className: 'mono', width: '230px', render: (d) => d.number },
      { title: '内容', className: 'ellipsis wide', tooltip: (d) => d.content, render: (d) => d.content || '—' },
      { title: '状态', width: '80px', render: (d) => badge(label(DOC_STATUS, d.status), d.status === 'approved' ? 'ok' : 'warn') },
      {
        title: '',
        width: '150px',
        render: (d) =>
          h(
            'span',
            { class: 'row-actions' },
            h('a', { class: 'btn small', href: `/api/v1/cases/${encodeURIComponent(id)}/documents/${encodeURIComponent(d.id)}/file?format=pdf`, target: '_blank', rel: 'noopener', testid: 'doc-pdf' }, 'PDF'),
            h('a', { class: 'btn small', href: `/api/v1/cases/${encodeURIComponent(id)}/documents/${encodeURIComponent(d.id)}/file?format=docx`, testid: 'doc-docx' }, 'Word'),
            open && d.status === 'draft' && can('case.approve') ? btn('审批', 'doc-approve', act(`documents/${encodeURIComponent(d.id)}/approve`, {}, '文书已审批'), 'btn small') : null,
          ),
      },
    ],
  });

  const panels: HTMLElement[] = [];
  if (c.status === 'filing_review' && can('case.approve')) {
    const reason = h('input', { type: 'text', placeholder: '审批意见（不予立案时必填）', maxlength: 1000, testid: 'filing-reason', class: 'wide-input' });
    panels.push(
      h('section', { class: 'panel', testid: 'filing-panel' }, h('h2', { class: 'wb-title' }, '立案审批'), reason,
        h('div', { class: 'form-actions' },
          btn('同意立案', 'filing-approve', () => void act('filing-decision', { approve: true, reason: reason.value.trim() }, '已立案')(), 'btn primary'),
          btn('不予立案', 'filing-reject', () => void act('filing-decision', { approve: false, reason: reason.value.trim() }, '已作出不予立案决定')(), 'btn danger'))),
    );
  }
  if (open && can('case.write')) {
    const types = docTypes.filter((d) => !['D36', 'D31', 'D25'].includes(d.code));
    const docForm = new Form(
      [
        { name: 'doc_type', label: '文书类型', type: 'select', required: true, testid: 'doc-type', options: [{ value: '', label: '请选择' }, ...types.map((d) => ({ value: d.code, label: `${d.code.slice(1)} ${d.name}` }))] },
        { name: 'content', label: '内容', type: 'textarea', span: 3, maxlength: 20000, testid: 'doc-content' },
      ],
      { submitLabel: '制作文书', submitTestid: 'doc-submit', errorTestid: 'doc-error', fieldLabels: { doc_type: '文书类型' } },
    ).onSubmit(async (v) => {
      await post(`/cases/${encodeURIComponent(id)}/documents`, { doc_type: v.doc_type, content: v.content.trim() });
      toast('文书已制作，待审批', 'ok');
      reload();
    });
    panels.push(h('section', { class: 'panel', testid: 'doc-panel' }, h('h2', { class: 'wb-title' }, '制作文书'), docForm.el));
  }
  if (open && can('case.approve') && !c.decision_number) {
    const pen = new Form(
      [
        { name: 'company', label: '对单位罚款（元）', required: true, testid: 'penalty-company', validate: checkYuan },
        { name: 'person', label: '对责任人罚款（元）', required: true, value: '0', testid: 'penalty-person', validate: checkYuan },
      ],
      { submitLabel: '作出处罚决定', submitTestid: 'penalty-submit', errorTestid: 'penalty-error', fieldLabels: { company_fine_cents: '对单位罚款', person_fine_cents: '对责任人罚款' } },
    ).onSubmit(async (v) => {
      await post(`/cases/${encodeURIComponent(id)}/penalty`, { company_fine_cents: yuanToCents(v.company), person_fine_cents: yuanToCents(v.person) });
      toast('处罚决定书已生成', 'ok');
      reload();
    });
    panels.push(h('section', { class: 'panel', testid: 'penalty-panel' }, h('h2', { class: 'wb-title' }, '处罚决定（一案双罚；须先审批行政处罚告知书）'), pen.el));
  }
  if (open && can('case.write')) {
    const tools: HTMLElement[] = [];
    if (c.decision_number && c.paid_cents === null) {
      const amount = h('input', { type: 'text', placeholder: '缴款金额（元）', testid: 'payment-amount' });
      tools.push(amount, btn('登记缴款', 'payment-submit', () => {
        const err = checkYuan(amount.value.trim());
        if (err || !amount.value.trim()) {
          toast(err ?? '请输入缴款金额', 'error');
          return;
        }
        void act('payment', { paid_cents: yuanToCents(amount.value.trim()) }, '已登记缴款')();
      }));
    }
    if (!c.criminal_referral) {
      tools.push(btn('移送司法机关', 'referral', () => {
        const note = window.prompt('移送对象及理由');
        if (note && note.trim()) void act('referral', { note: note.trim() }, '已登记移送')();
      }));
    }
    tools.push(btn('申请结案', 'closing-request', () => void act('closing-request', {}, '已提交结案审批')(), 'btn primary'));
    panels.push(h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '办理'), h('div', { class: 'form-actions' }, tools)));
  }
  if (c.status === 'closing_review' && can('case.approve')) {
    const reason = h('input', { type: 'text', placeholder: '审批意见（退回时必填）', maxlength: 1000, testid: 'closing-reason', class: 'wide-input' });
    panels.push(
      h('section', { class: 'panel', testid: 'closing-panel' }, h('h2', { class: 'wb-title' }, '结案审批'), reason,
        h('div', { class: 'form-actions' },
          btn('同意结案', 'closing-approve', () => void act('closing-decision', { approve: true, reason: reason.value.trim() }, '已结案')(), 'btn primary'),
          btn('退回', 'closing-reject', () => void act('closing-decision', { approve: false, reason: reason.value.trim() }, '已退回')(), 'btn danger'))),
    );
  }

  const filePanel = await caseFilePanel(c, reload);
  mount(
    outlet,
    pageHeader(`案件：${c.title}`, back),
    h('div', { class: 'panel', testid: 'case-detail', 'data-id': c.id }, facts),
    h('section', { class: 'panel' }, h('h2', { class: 'wb-title' }, '执法文书'), docs),
    panels,
    filePanel,
  );
}

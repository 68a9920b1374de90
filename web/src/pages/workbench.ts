// 工作台 — a squad leader's day: hazards needing action this week, inspections in progress, cases
// awaiting approval, over-cap filings to acknowledge.

import { get, post } from '../api';
import { h, mount } from '../dom';
import { CASE_STATUS, HAZARD_LEVEL, HAZARD_STATUS, INSPECTION_KIND, fmtDate, fmtDateTime, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import { navigate } from '../router';
import { can } from '../session';
import type { CaseSummary, Hazard, Inspection, OverCapFiling, Workbench } from '../types';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg } from './list-util';

/** The state badge of a hazard, red when its re-inspection is overdue. */
export function hazardBadge(x: Hazard): HTMLElement {
  if (x.overdue) return badge(`${label(HAZARD_STATUS, x.status)}·逾期`, 'bad');
  const kind = x.status === 'closed' ? 'ok' : x.status === 'escalated' ? 'muted' : x.status === 'rectified' ? 'info' : 'warn';
  return badge(label(HAZARD_STATUS, x.status), kind);
}

export function caseBadge(c: CaseSummary): HTMLElement {
  const kind = c.status === 'closed' ? 'ok' : c.status === 'not_filed' ? 'muted' : c.status === 'open' ? 'info' : 'warn';
  return badge(label(CASE_STATUS, c.status), kind);
}

function section(title: string, testid: string, body: HTMLElement, count: number): HTMLElement {
  return h(
    'section',
    { class: 'panel wb-section', testid },
    h('h2', { class: 'wb-title' }, title, h('span', { class: `tab-count${count ? ' alert' : ''}` }, String(count))),
    body,
  );
}

export async function renderWorkbench(outlet: HTMLElement): Promise<void> {
  setTitle('工作台');
  mount(outlet, pageHeader('工作台'), loadingBox());
  let wb: Workbench;
  try {
    wb = await get<Workbench>('/workbench');
  } catch (e) {
    mount(outlet, pageHeader('工作台'), errorBox(`加载工作台失败：${errMsg(e)}`, () => void renderWorkbench(outlet)));
    return;
  }
  const c = wb.hazard_counts;
  const stat = (name: string, value: number, testid: string, kind = '') =>
    h('div', { class: `wb-stat ${kind}`, testid }, h('div', { class: 'wb-stat-value' }, String(value)), h('div', { class: 'wb-stat-name' }, name));

  const hazards = dataTable<Hazard>({
    testid: 'wb-hazards',
    rowTestid: 'wb-hazard-row',
    rowId: (x) => x.id,
    rows: wb.hazards_due,
    rowClass: (x) => (x.overdue ? 'row-alert' : undefined),
    onRowClick: (x) => navigate(`/hazards/${encodeURIComponent(x.id)}`),
    empty: '本周没有待办的隐患',
    columns: [
      { title: '企业', className: 'ellipsis wide', tooltip: (x) => x.enterprise_name, render: (x) => h('a', { class: 'row-link', href: `#/hazards/${encodeURIComponent(x.id)}` }, x.enterprise_name) },
      { title: '隐患', className: 'ellipsis wide', tooltip: (x) => x.description, render: (x) => x.description },
      { title: '级别', width: '100px', render: (x) => badge(label(HAZARD_LEVEL, x.level), x.level === 'major' ? 'bad' : 'muted') },
      { title: '整改期限', width: '100px', render: (x) => fmtDate(x.rectification_deadline) },
      { title: '复查期限', width: '100px', render: (x) => fmtDate(x.reinspection_due) },
      { title: '状态', width: '120px', render: hazardBadge },
    ],
  });
  const inspections = dataTable<Inspection>({
    testid: 'wb-inspections',
    rowTestid: 'wb-inspection-row',
    rowId: (x) => x.id,
    rows: wb.inspections_in_progress,
    onRowClick: (x) => navigate(`/inspections/${encodeURIComponent(x.id)}`),
    empty: '没有进行中的检查',
    columns: [
      { title: '检查码', className: 'mono', width: '190px', render: (x) => x.code },
      { title: '企业', className: 'ellipsis wide', render: (x) => x.enterprise_name },
      { title: '类型', width: '100px', render: (x) => label(INSPECTION_KIND, x.kind) },
      { title: '开始时间', width: '150px', render: (x) => fmtDateTime(x.started_at) },
      { title: '执法人员', className: 'ellipsis', render: (x) => x.officers.map((o) => o.name).join('、') },
    ],
  });
  const caseTable = (rows: CaseSummary[], testid: string, empty: string) =>
    dataTable<CaseSummary>({
      testid,
      rowTestid: `${testid}-row`,
      rowId: (x) => x.id,
      rows,
      onRowClick: (x) => navigate(`/cases/${encodeURIComponent(x.id)}`),
      empty,
      columns: [
        { title: '案号', className: 'mono', width: '200px', render: (x) => x.number ?? '（待立案）' },
        { title: '案由', className: 'ellipsis wide', render: (x) => x.title },
        { title: '当事企业', className: 'ellipsis', render: (x) => x.enterprise_name },
        { title: '办理期限', width: '100px', render: (x) => fmtDate(x.decision_due) },
        { title: '状态', width: '110px', render: caseBadge },
      ],
    });
  const filings = dataTable<OverCapFiling>({
    testid: 'wb-filings',
    rowTestid: 'wb-filing-row',
    rowId: (x) => x.id,
    rows: wb.filings_pending,
    empty: '没有待确认的超限检查报备',
    columns: [
      { title: '企业', className: 'ellipsis wide', render: (x) => x.enterprise_name },
      { title: '检查码', className: 'mono', width: '190px', render: (x) => h('a', { class: 'row-link', href: `#/inspections/${encodeURIComponent(x.inspection_id)}` }, x.inspection_code) },
      { title: '本年已检查', width: '90px', render: (x) => `${x.visits_before} / ${x.yearly_cap}` },
      { title: '报备理由', className: 'ellipsis wide', tooltip: (x) => x.reason, render: (x) => x.reason },
      {
        title: '',
        width: '80px',
        render: (x) =>
          can('filing.acknowledge')
            ? h('button', {
                type: 'button',
                class: 'btn small',
                testid: 'filing-ack',
                onclick: async () => {
                  try {
                    await post(`/over-cap-filings/${encodeURIComponent(x.id)}/acknowledge`);
                    toast('已确认报备', 'ok');
                    void renderWorkbench(outlet);
                  } catch (e) {
                    toast(`确认失败：${errMsg(e)}`, 'error', 6000);
                  }
                },
              }, '确认')
            : null,
      },
    ],
  });

  const visits = wb.planned_visits_open ?? [];
  const plannedTable = dataTable({
    testid: 'wb-planned',
    rowTestid: 'wb-planned-row',
    rowId: (x) => x.id,
    rows: visits,
    onRowClick: (x) => navigate(`/plans/${encodeURIComponent(x.plan_id)}`),
    empty: '本期计划检查均已开始',
    columns: [
      { title: '企业', className: 'ellipsis wide', render: (x) => x.enterprise_name },
      { title: '检查编码', className: 'mono', width: '190px', render: (x) => x.inspection_code ?? '—' },
      { title: '说明', className: 'ellipsis wide', tooltip: (x) => x.note, render: (x) => x.note || '—' },
    ],
  });
  const reviews = wb.plans_awaiting_review ?? [];
  const reviewTable = dataTable({
    testid: 'wb-plan-reviews',
    rowTestid: 'wb-plan-review-row',
    rowId: (x) => x.id,
    rows: reviews,
    onRowClick: (x) => navigate(`/plans/${encodeURIComponent(x.id)}`),
    empty: '没有待审核的计划',
    columns: [
      { title: '计划', className: 'ellipsis wide', render: (x) => x.title },
      { title: '单位', className: 'ellipsis', render: (x) => x.unit_name },
      { title: '期间', width: '90px', render: (x) => x.period },
    ],
  });
  mount(
    outlet,
    pageHeader(
      '工作台',
      can('inspection.write') ? h('a', { class: 'btn primary', href: '#/inspections/new', testid: 'wb-new-inspection' }, '开始检查') : null,
    ),
    h(
      'div',
      { class: 'wb-stats' },
      stat('未销号隐患', c.open, 'wb-open'),
      stat('复查逾期', c.overdue, 'wb-overdue', c.overdue ? 'alert' : ''),
      stat('已销号', c.closed, 'wb-closed'),
      stat('重大事故隐患', c.major, 'wb-major'),
    ),
    section('本周待办隐患（整改到期或待复查）', 'wb-hazards-section', hazards, wb.hazards_due.length),
    section('进行中的检查', 'wb-inspections-section', inspections, wb.inspections_in_progress.length),
    section('本期计划检查（未开始）', 'wb-planned-section', plannedTable, visits.length),
    can('plan.approve') && reviews.length ? section('待我审核的执法计划', 'wb-plan-reviews-section', reviewTable, reviews.length) : null,
    can('case.approve') ? section('待我审批的案件', 'wb-approvals-section', caseTable(wb.cases_awaiting_approval, 'wb-approvals', '没有待审批的案件'), wb.cases_awaiting_approval.length) : null,
    section('办理中的案件', 'wb-cases-section', caseTable(wb.open_cases, 'wb-cases', '没有办理中的案件'), wb.open_cases.length),
    can('filing.acknowledge') ? section('待确认的超限检查报备', 'wb-filings-section', filings, wb.filings_pending.length) : null,
    wb.cases_missing_file.length
      ? section('结案超过 30 天尚未归档案卷', 'wb-missing-files-section', caseTable(wb.cases_missing_file, 'wb-missing-files', ''), wb.cases_missing_file.length)
      : null,
  );
}

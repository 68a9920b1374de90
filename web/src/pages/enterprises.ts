// 企业档案 — list with search, filters, sort, paging, import and export.

import { download, get } from '../api';
import { h, mount, select } from '../dom';
import { ENTERPRISE_STATUS, fmtDateTime, label } from '../format';
import { ENTERPRISE_FIELDS } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import { navigate, type RouteContext } from '../router';
import { can, loadIndustryCodes, loadSectors, orgUnitsOrEmpty, sectorName } from '../session';
import type { CodeName, Enterprise, OrgUnit, Page } from '../types';
import { importer } from '../ui/importer';
import { pager } from '../ui/pager';
import { badge, dataTable, errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg, filter, filterBar, latest, optionsOf, readState, writeState } from './list-util';

const DEFAULTS = { q: '', district_id: '', town_id: '', sector: '', status: '', key_unit_year: '', phone: '', sort: '-updated_at' };

export async function renderEnterpriseList(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  setTitle('企业档案');
  const canWrite = can('enterprise.write');
  const canExport = can('registry.export');
  const state = readState(ctx.query, DEFAULTS);
  const run = latest();

  const [units, sectors, industryList] = await Promise.all([orgUnitsOrEmpty(), loadSectors(), loadIndustryCodes()]);
  const industries = new Map(industryList.map((i: CodeName) => [i.code, i.name]));
  const brigades = units.filter((u) => u.kind === 'brigade');
  const towns = units.filter((u) => u.kind === 'town');

  const search = h('input', {
    type: 'search',
    placeholder: '名称、信用代码或地址',
    value: state.q,
    testid: 'search-input',
    class: 'search',
    'aria-label': '搜索企业',
    maxlength: 100,
  });
  const district = select(
    [{ value: '', label: '全部' }, ...brigades.map((b) => ({ value: b.id, label: b.name }))],
    { testid: 'filter-district' },
    state.district_id,
  );
  const town = select([], { testid: 'filter-town' });
  const fillTowns = () => {
    const list = towns.filter((t: OrgUnit) => !district.value || t.parent_id === district.value);
    town.replaceChildren(h('option', { value: '' }, '全部'), ...list.map((t) => h('option', { value: t.id }, t.name)));
    town.value = list.some((t) => t.id === state.town_id) ? state.town_id : '';
  };
  fillTowns();
  const sector = select([{ value: '', label: '全部' }, ...sectors.map((s) => ({ value: s.code, label: s.name }))], { testid: 'filter-sector' }, state.sector);
  const status = select(optionsOf(ENTERPRISE_STATUS), { testid: 'filter-status' }, state.status);
  const keyYear = h('input', {
    type: 'number',
    min: 2000,
    max: 2100,
    placeholder: '年度 如2025',
    value: state.key_unit_year,
    testid: 'filter-key-year',
    class: 'year',
  });

  // Phones are sealed at rest: the server finds a full number or its last four digits only.
  const phone = h('input', {
    type: 'search',
    inputmode: 'tel',
    placeholder: '完整号码或后四位',
    value: state.phone,
    testid: 'filter-phone',
    class: 'phone',
    maxlength: 24,
    title: '负责人电话：输入完整号码，或号码的后四位',
  });

  const bar = filterBar(
    h(
      'div',
      { class: 'search-group' },
      search,
      h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, '查询'),
      h('button', { type: 'button', class: 'btn', testid: 'search-reset', onclick: () => reset() }, '重置'),
    ),
    filter('所属区', district),
    filter('街镇', town),
    filter('监管行业', sector),
    filter('状态', status),
    filter('重点单位', keyYear),
    filter('负责人电话', phone),
  );

  const readFilters = () => {
    state.q = search.value.trim();
    state.district_id = district.value;
    state.town_id = town.value;
    state.sector = sector.value;
    state.status = status.value;
    const y = keyYear.value.trim();
    state.key_unit_year = /^\d{4}$/.test(y) ? y : '';
    const p = phone.value.trim();
    const digits = p.replace(/\D/g, '').length;
    state.phone = /^[\d\-+ ()]+$/.test(p) && (digits === 4 || (digits >= 7 && digits <= 20)) ? p : '';
    if (p && !state.phone) toast('负责人电话请输入完整号码或后四位', 'error', 4000);
  };
  const apply = () => {
    readFilters();
    state.page = '1';
    void load();
  };
  const reset = () => {
    search.value = '';
    district.value = '';
    fillTowns();
    town.value = '';
    sector.value = '';
    status.value = '';
    keyYear.value = '';
    phone.value = '';
    state.sort = DEFAULTS.sort;
    apply();
  };
  bar.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  district.addEventListener('change', () => {
    fillTowns();
    apply();
  });
  for (const el of [town, sector, status]) el.addEventListener('change', apply);
  keyYear.addEventListener('change', apply);
  phone.addEventListener('change', apply);

  const listBox = h('div', { class: 'list-box' });
  const imp = importer({
    endpoint: '/enterprises/import',
    what: '企业',
    fieldLabels: ENTERPRISE_FIELDS,
    onImported: () => void load(),
  });
  const exportBtn = h('button', { type: 'button', class: 'btn', testid: 'export-button' }, '导出Excel');
  exportBtn.addEventListener('click', async () => {
    exportBtn.setAttribute('disabled', '');
    exportBtn.textContent = '正在导出…';
    try {
      readFilters();
      const { page: _p, page_size: _s, ...filters } = state;
      void _p;
      void _s;
      await download('/enterprises/export.xlsx', filters, `企业档案_${new Date().toISOString().slice(0, 10)}.xlsx`);
    } catch (e) {
      toast(`导出失败：${errMsg(e)}`, 'error', 6000);
    } finally {
      exportBtn.removeAttribute('disabled');
      exportBtn.textContent = '导出Excel';
    }
  });

  mount(
    outlet,
    pageHeader(
      '企业档案',
      canWrite ? h('a', { class: 'btn primary', href: '#/enterprises/new', testid: 'enterprise-new' }, '新增') : null,
      canWrite ? imp.button : null,
      canExport ? exportBtn : null,
    ),
    bar,
    canWrite ? imp.report : null,
    listBox,
  );

  async function load(): Promise<void> {
    writeState(state, DEFAULTS);
    listBox.classList.add('loading-overlay');
    if (!listBox.firstChild) mount(listBox, loadingBox());
    const r = await run(get<Page<Enterprise>>('/enterprises', state));
    if (r.stale) return;
    listBox.classList.remove('loading-overlay');
    if (r.error !== undefined) {
      mount(listBox, errorBox(`加载企业列表失败：${errMsg(r.error)}`, () => void load()));
      return;
    }
    const pg = r.value!;
    // The requested page may be past the end after filtering or deletion.
    const pages = Math.max(1, Math.ceil(pg.total / Number(state.page_size)));
    if (pg.items.length === 0 && Number(state.page) > pages) {
      state.page = String(pages);
      void load();
      return;
    }
    mount(
      listBox,
      dataTable<Enterprise>({
        testid: 'enterprise-table',
        rowTestid: 'enterprise-row',
        rowId: (e) => e.id,
        rows: pg.items,
        sort: state.sort,
        onSort: (s) => {
          state.sort = s;
          state.page = '1';
          void load();
        },
        onRowClick: (e) => navigate(`/enterprises/${encodeURIComponent(e.id)}`),
        empty: state.q || state.district_id || state.town_id || state.sector || state.status || state.key_unit_year || state.phone ? '没有符合条件的企业' : canWrite ? '暂无企业档案，可点击“新增”或“导入”添加' : '暂无企业档案',
        columns: [
          {
            title: '名称 / 地址',
            sort: 'name',
            className: 'two-line',
            tooltip: (e) => `${e.name}\n${e.address ?? ''}`,
            render: (e) => [
              h('a', { href: `#/enterprises/${encodeURIComponent(e.id)}`, class: 'row-link line1', testid: 'enterprise-name' }, e.name),
              h('div', { class: 'line2' }, e.address ?? '—'),
            ],
          },
          { title: '统一社会信用代码', sort: 'uscc', className: 'mono nowrap', width: '150px', render: (e) => e.uscc },
          {
            title: '所属区 / 街镇',
            sort: 'district',
            className: 'two-line',
            width: '120px',
            tooltip: (e) => `${e.district_name ?? ''} ${e.town_name ?? ''}`,
            render: (e) => [h('div', { class: 'line1' }, e.district_name ?? '—'), h('div', { class: 'line2' }, e.town_name ?? '—')],
          },
          {
            title: '行业',
            sort: 'industry_code',
            className: 'ellipsis',
            width: '96px',
            tooltip: (e) => (e.industry_code ? `${e.industry_code} ${industries.get(e.industry_code) ?? ''}` : ''),
            render: (e) => (e.industry_code ? `${e.industry_code}${industries.has(e.industry_code) ? ' ' + industries.get(e.industry_code) : ''}` : '—'),
          },
          { title: '监管行业', sort: 'sector', className: 'ellipsis', width: '92px', render: (e) => sectorName(sectors, e.sector) },
          {
            title: '状态',
            width: '72px',
            render: (e) => badge(label(ENTERPRISE_STATUS, e.status), e.status === 'operating' ? 'ok' : e.status === 'suspended' ? 'warn' : 'muted'),
          },
          {
            title: '重点单位',
            width: '80px',
            className: 'ellipsis',
            tooltip: (e) => e.key_unit_years.join('、'),
            render: (e) => (e.key_unit_years.length ? e.key_unit_years.join('、') : '—'),
          },
          { title: '更新时间', sort: 'updated_at', width: '136px', className: 'nowrap', render: (e) => fmtDateTime(e.updated_at) },
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

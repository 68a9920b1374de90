// Data table with sortable headers, row click and empty / loading / error states.

import { h, type Child } from '../dom';

export interface Column<T> {
  title: string;
  render: (row: T) => Child;
  /** Server sort key; the header becomes clickable (asc → desc → asc). */
  sort?: string;
  width?: string;
  className?: string;
  /** Cell title attribute (tooltip for truncated text). */
  tooltip?: (row: T) => string;
}

export interface TableOptions<T> {
  columns: Column<T>[];
  rows: T[];
  /** Current sort: "name" or "-name". */
  sort?: string;
  onSort?: (sort: string) => void;
  onRowClick?: (row: T) => void;
  rowId?: (row: T) => string;
  testid?: string;
  rowTestid?: string;
  empty?: string;
  rowClass?: (row: T) => string | undefined;
}

export function dataTable<T>(o: TableOptions<T>): HTMLElement {
  const head = h(
    'tr',
    null,
    o.columns.map((c) => {
      const th = h('th', { class: c.className, scope: 'col' }, c.title);
      if (c.width) th.style.width = c.width;
      if (c.sort && o.onSort) {
        const key = c.sort;
        const active = o.sort === key ? 'asc' : o.sort === `-${key}` ? 'desc' : '';
        th.classList.add('sortable');
        if (active) th.classList.add(`sorted-${active}`);
        th.setAttribute('aria-sort', active === 'asc' ? 'ascending' : active === 'desc' ? 'descending' : 'none');
        th.setAttribute('data-sort', key);
        th.tabIndex = 0;
        th.title = '点击排序';
        th.appendChild(h('span', { class: 'sort-mark' }, active === 'asc' ? '▲' : active === 'desc' ? '▼' : '↕'));
        const go = () => o.onSort?.(active === 'asc' ? `-${key}` : key);
        th.addEventListener('click', go);
        th.addEventListener('keydown', (ev: KeyboardEvent) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            go();
          }
        });
      }
      return th;
    }),
  );
  const body = h('tbody');
  if (o.rows.length === 0) {
    body.appendChild(h('tr', { class: 'empty-row' }, h('td', { colspan: o.columns.length, class: 'empty' }, o.empty ?? '暂无数据')));
  }
  for (const row of o.rows) {
    const tr = h(
      'tr',
      { testid: o.rowTestid, 'data-id': o.rowId?.(row), class: o.rowClass?.(row) },
      o.columns.map((c) => h('td', { class: c.className, title: c.tooltip?.(row) }, c.render(row))),
    );
    if (o.onRowClick) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      tr.addEventListener('click', (ev) => {
        const t = ev.target as HTMLElement;
        if (t.closest('button, a, input, select, label')) return;
        o.onRowClick?.(row);
      });
      tr.addEventListener('keydown', (ev: KeyboardEvent) => {
        if (ev.key === 'Enter' && ev.target === tr) o.onRowClick?.(row);
      });
    }
    body.appendChild(tr);
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data-table', testid: o.testid }, h('thead', null, head), body));
}

export function loadingBox(msg = '正在加载…'): HTMLElement {
  return h('div', { class: 'state loading', testid: 'loading' }, msg);
}

export function errorBox(msg: string, retry?: () => void): HTMLElement {
  return h(
    'div',
    { class: 'state error', role: 'alert', testid: 'load-error' },
    msg,
    retry ? h('button', { type: 'button', class: 'btn small', onclick: retry }, '重试') : null,
  );
}

export function badge(textValue: string, kind: 'ok' | 'warn' | 'bad' | 'muted' | 'info' = 'muted'): HTMLElement {
  return h('span', { class: `badge ${kind}` }, textValue);
}

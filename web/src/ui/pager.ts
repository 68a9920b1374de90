// Pager: "共 N 条  上一页 [2] / 9  下一页  每页 [20] 条".

import { h } from '../dom';

export const PAGE_SIZES = [10, 20, 50, 100];

export function pager(opts: {
  page: number;
  pageSize: number;
  total: number;
  onChange: (page: number, pageSize: number) => void;
}): HTMLElement {
  // Back to the top of the content area when the page changes.
  const o = {
    ...opts,
    onChange: (p: number, s: number) => {
      document.getElementById('content')?.scrollTo({ top: 0 });
      opts.onChange(p, s);
    },
  };
  const pages = Math.max(1, Math.ceil(o.total / o.pageSize));
  const jump = h('input', {
    type: 'number',
    min: 1,
    max: pages,
    value: o.page,
    class: 'pager-jump',
    'aria-label': '页码',
    testid: 'pager-jump',
  });
  jump.addEventListener('change', () => {
    const p = Math.min(pages, Math.max(1, Math.floor(Number(jump.value) || 1)));
    if (p !== o.page) o.onChange(p, o.pageSize);
  });
  const size = h('select', { 'aria-label': '每页条数', testid: 'pager-size' });
  const sizes = PAGE_SIZES.includes(o.pageSize) ? PAGE_SIZES : [...PAGE_SIZES, o.pageSize].sort((a, b) => a - b);
  for (const s of sizes) size.appendChild(h('option', { value: s }, String(s)));
  size.value = String(o.pageSize);
  size.addEventListener('change', () => o.onChange(1, Number(size.value)));
  return h(
    'div',
    { class: 'pager', testid: 'pager' },
    h('span', { class: 'pager-total', testid: 'pager-info', 'data-page': o.page, 'data-total': o.total, 'data-pages': pages }, `共 ${o.total} 条`),
    h(
      'button',
      { type: 'button', class: 'btn small', testid: 'pager-prev', disabled: o.page <= 1, onclick: () => o.onChange(o.page - 1, o.pageSize) },
      '上一页',
    ),
    h('span', { class: 'pager-pages' }, '第 ', jump, ` / ${pages} 页`),
    h(
      'button',
      { type: 'button', class: 'btn small', testid: 'pager-next', disabled: o.page >= pages, onclick: () => o.onChange(o.page + 1, o.pageSize) },
      '下一页',
    ),
    h('span', { class: 'pager-size' }, '每页 ', size, ' 条'),
  );
}

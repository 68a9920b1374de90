// Batch printing of enforcement documents: starts a server-side batch, shows its progress in a
// dialog while the documents render, then offers the ZIP (documents + SHA256SUMS).

import { download, get, post } from '../api';
import { h } from '../dom';
import { openDialog } from './dialog';

interface BatchStatus {
  id: string;
  total: number;
  done: number;
  failed: { id: string; message: string }[];
  finished: boolean;
  size: number | null;
  /** Waiting for a free worker (the server renders a few batches at once). */
  queued: boolean;
}

export type BatchKind = 'inspection_records' | 'rectification_orders' | 'case_documents';

const TITLES: Record<BatchKind, string> = {
  inspection_records: '批量打印现场检查记录',
  rectification_orders: '批量打印责令限期整改指令书',
  case_documents: '批量打印案件文书',
};

/** Render the documents of `ids` into one ZIP with a progress dialog. */
export async function batchPrint(kind: BatchKind, ids: string[], format: 'pdf' | 'docx' = 'pdf'): Promise<void> {
  const fill = h('span', { class: 'progress-fill', style: 'width:0%' });
  const text = h('span', { testid: 'batch-progress-text' }, `0 / ${ids.length}`);
  const errors = h('ul', { class: 'batch-errors', testid: 'batch-errors' });
  const actions = h('div', { class: 'form-actions' });
  const d = openDialog({
    title: TITLES[kind],
    testid: 'batch-dialog',
    body: [h('p', null, '正在生成文书，请稍候…'), h('div', { class: 'progress-cell' }, h('span', { class: 'progress-track wide' }, fill), text), errors, actions],
  });
  let st: BatchStatus;
  try {
    st = await post<BatchStatus>('/document-batches', { kind, ids, format });
  } catch (e) {
    text.textContent = `无法开始：${e instanceof Error ? e.message : String(e)}`;
    return;
  }
  while (d.el.isConnected) {
    const pct = st.total ? Math.round((st.done * 100) / st.total) : 100;
    fill.style.width = `${pct}%`;
    text.textContent = st.queued ? '排队等待中，前面的批量打印完成后开始…' : `${st.done} / ${st.total}（${pct}%）`;
    errors.replaceChildren(...st.failed.map((f) => h('li', null, `${f.id || '压缩包'}：${f.message}`)));
    if (st.finished) break;
    await new Promise((r) => setTimeout(r, 400));
    try {
      st = await get<BatchStatus>(`/document-batches/${encodeURIComponent(st.id)}`);
    } catch (e) {
      text.textContent = `查询进度失败：${e instanceof Error ? e.message : String(e)}`;
      return;
    }
  }
  if (!d.el.isConnected) return;
  const ok = st.total - st.failed.filter((f) => f.id).length;
  text.textContent = `已完成：${ok} ${kind === 'case_documents' ? '件案件的文书' : '份文书'}${st.failed.length ? `，${st.failed.length} 份失败` : ''}`;
  if (st.size !== null) {
    actions.replaceChildren(
      h('button', { type: 'button', class: 'btn primary', testid: 'batch-download', onclick: () => void download(`/document-batches/${encodeURIComponent(st.id)}/archive`, undefined, `${kind}.zip`) }, `下载压缩包（${Math.ceil(st.size / 1024)} KB）`),
    );
  }
}

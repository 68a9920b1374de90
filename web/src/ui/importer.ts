// Import (CSV / Excel upload) button + report panel, shared by the registry pages.

import { ApiError, api, get, importContentType } from '../api';
import { h, mount } from '../dom';
import { errorText, fieldLabel, fieldProblems, translateFieldMessage, type FieldProblem } from '../i18n';
import { dataTable } from './table';

const MAX_BYTES = 20 * 1024 * 1024;

interface ImportProgress {
  phase: 'reading' | 'checking' | 'writing' | 'finished' | 'rejected' | 'failed';
  rows: number;
  written: number;
}

/**
 * Returns the toolbar button and the report panel. Upload goes to POST `endpoint` with the raw
 * file as the body; 200 {imported} or 422 {errors: [{row, field, message}]}.
 */
export function importer(o: { endpoint: string; what: string; fieldLabels?: Record<string, string>; onImported: () => void }): {
  button: HTMLElement;
  report: HTMLElement;
} {
  const report = h('div', { class: 'import-report', testid: 'import-report', hidden: true });
  const input = h('input', {
    type: 'file',
    accept: '.csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    class: 'visually-hidden',
    testid: 'import-file',
    'aria-label': `导入${o.what}文件`,
  });
  const button = h(
    'button',
    { type: 'button', class: 'btn', testid: 'import-button', title: '支持 CSV（UTF-8）或 Excel（.xlsx）文件', onclick: () => input.click() },
    '导入',
  );

  const show = (kind: 'ok' | 'error' | 'info', ...children: (Node | string)[]) => {
    report.hidden = false;
    report.className = `import-report ${kind}`;
    mount(
      report,
      h(
        'div',
        { class: 'import-report-head' },
        h('div', null, children.slice(0, 1)),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': '关闭', onclick: () => (report.hidden = true) }, '×'),
      ),
      children.slice(1),
    );
  };

  input.addEventListener('change', async () => {
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    const type = importContentType(file);
    if (!type) {
      show('error', `不支持的文件类型：${file.name}。请选择 .csv 或 .xlsx 文件。`);
      return;
    }
    if (file.size === 0) {
      show('error', `文件为空：${file.name}`);
      return;
    }
    if (file.size > MAX_BYTES) {
      show('error', `文件过大（${(file.size / 1048576).toFixed(1)} MB），请拆分后导入（上限 20 MB）。`);
      return;
    }
    button.setAttribute('disabled', '');
    const fill = h('span', { class: 'progress-fill', style: 'width:0%' });
    const stage = h('span', { testid: 'import-progress-text' }, `正在上传 ${file.name} …`);
    show('info', h('span', null, `正在导入 ${file.name}`), h('div', { class: 'progress-cell', testid: 'import-progress' }, h('span', { class: 'progress-track wide' }, fill), stage));
    // The server reports the import's phase and rows written under this id while the upload
    // request is pending (GET /imports/{id}).
    const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
    let pending = true;
    const poll = async () => {
      while (pending) {
        await new Promise((r) => setTimeout(r, 300));
        if (!pending) break;
        try {
          const p = await get<ImportProgress>(`/imports/${id}`);
          if (!pending) break;
          if (p.phase === 'reading') stage.textContent = `正在读取 ${file.name} …`;
          else if (p.phase === 'checking') stage.textContent = `正在校验 ${p.rows} 行数据…`;
          else if (p.phase === 'writing') {
            const pct = p.rows ? Math.round((p.written * 100) / p.rows) : 100;
            fill.style.width = `${pct}%`;
            stage.textContent = `正在写入：${p.written} / ${p.rows} 行（${pct}%）`;
          }
        } catch {
          /* not registered yet (upload still running), or already gone: keep the last text */
        }
      }
    };
    void poll();
    try {
      const res = await api<{ imported: number }>(o.endpoint, { method: 'POST', body: file, contentType: type, headers: { 'X-Import-Id': id } });
      pending = false;
      show('ok', `已导入 ${res?.imported ?? 0} 条${o.what}（${file.name}）`);
      o.onImported();
    } catch (e) {
      pending = false;
      const errors = e instanceof ApiError ? fieldProblems(e.body) : [];
      if (e instanceof ApiError && errors.length && (e.code === 'import_rejected' || e.code === 'validation_failed')) {
        const rows = new Set(errors.filter((r) => r.row).map((r) => r.row)).size;
        const header = errors.some((r) => r.row === 0);
        const what = [header ? '表头有误' : '', rows ? `${rows} 行数据有错误` : ''].filter(Boolean).join('，');
        show(
          'error',
          `导入被拒绝（${file.name}）：${what ? `${what}，` : ''}共 ${errors.length} 处错误，未导入任何数据。请更正后重新导入。`,
          dataTable<FieldProblem>({
            testid: 'import-errors',
            rowTestid: 'import-error-row',
            columns: [
              { title: '行号', width: '70px', render: (r) => (r.row === 0 ? '表头' : r.row ? String(r.row) : '—') },
              {
                title: '字段',
                width: '180px',
                // Header problems name the column as written in the file ("unknown column") or the field.
                render: (r) => fieldLabel(r.field, o.fieldLabels),
              },
              { title: '错误说明', render: (r) => translateFieldMessage(r.message, r.field) },
            ],
            rows: errors,
          }),
        );
      } else {
        show('error', `导入失败（${file.name}）：${errorText(e)}`);
      }
    } finally {
      pending = false;
      button.removeAttribute('disabled');
    }
  });

  return { button: h('span', { class: 'import-wrap' }, button, input), report };
}

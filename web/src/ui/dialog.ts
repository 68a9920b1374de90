// Modal dialogs on the native <dialog> element.

import { h, type Child } from '../dom';

export interface DialogHandle {
  el: HTMLDialogElement;
  body: HTMLElement;
  close: () => void;
}

export function openDialog(o: { title: string; body: Child; wide?: boolean; testid?: string; onClose?: () => void }): DialogHandle {
  const body = h('div', { class: 'dialog-body' }, o.body);
  const el = h(
    'dialog',
    { class: `dialog${o.wide ? ' wide' : ''}`, testid: o.testid ?? 'dialog', 'aria-label': o.title },
    h(
      'div',
      { class: 'dialog-head' },
      h('h3', null, o.title),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': '关闭', testid: 'dialog-close', onclick: () => close() }, '×'),
    ),
    body,
  );
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (el.open) el.close();
    el.remove();
    o.onClose?.();
  };
  el.addEventListener('close', close);
  document.body.appendChild(el);
  el.showModal();
  return { el, body, close };
}

export function confirmDialog(message: string, okLabel = '确定', danger = false): Promise<boolean> {
  return new Promise((resolve) => {
    let result = false;
    const ok = h('button', { type: 'button', class: `btn ${danger ? 'danger' : 'primary'}`, testid: 'confirm-ok' }, okLabel);
    const cancel = h('button', { type: 'button', class: 'btn', testid: 'confirm-cancel' }, '取消');
    const d = openDialog({
      title: '请确认',
      testid: 'confirm-dialog',
      body: [h('p', { class: 'confirm-text' }, message), h('div', { class: 'form-actions' }, ok, cancel)],
      onClose: () => resolve(result),
    });
    ok.addEventListener('click', () => {
      result = true;
      d.close();
    });
    cancel.addEventListener('click', () => d.close());
    ok.focus();
  });
}

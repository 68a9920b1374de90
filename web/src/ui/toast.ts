// Transient notices in the top-right corner.

import { h } from '../dom';

let host: HTMLElement | null = null;

export function toast(message: string, kind: 'ok' | 'error' | 'info' = 'ok', ms = 3500): void {
  if (!host || !host.isConnected) {
    host = h('div', { class: 'toasts', 'aria-live': 'polite' });
    document.body.appendChild(host);
  }
  const t = h('div', { class: `toast ${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' }, message);
  host.appendChild(t);
  setTimeout(() => t.remove(), ms);
}

export function clearToasts(): void {
  host?.replaceChildren();
}

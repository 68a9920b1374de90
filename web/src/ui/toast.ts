// Transient notices in the top-right corner.

import { h } from '../dom';
import { errorText } from '../i18n';

let host: HTMLElement | null = null;

/** Show a notice; anything not a string (an error) is shown as its Chinese text (i18n.ts). */
export function toast(message: unknown, kind: 'ok' | 'error' | 'info' = 'ok', ms = 3500): void {
  const text = typeof message === 'string' ? message : errorText(message);
  if (!host) host = h('div', { class: 'toasts', 'aria-live': 'polite' });
  // Inside a fullscreen element (the dispatch wall screen) only its subtree is visible.
  const parent = document.fullscreenElement ?? document.body;
  if (host.parentNode !== parent) parent.appendChild(host);
  const t = h('div', { class: `toast ${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' }, text);
  host.appendChild(t);
  setTimeout(() => t.remove(), ms);
}

export function clearToasts(): void {
  host?.replaceChildren();
}

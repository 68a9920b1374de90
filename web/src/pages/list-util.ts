// Shared plumbing for list pages: state in the URL query, stale-response guard, filter bar.

import { h, type Child } from '../dom';
import { errorText } from '../i18n';
import { replaceQuery } from '../router';

export type ListState = Record<string, string> & { page: string; page_size: string };

/** Read list state from the URL query with defaults. */
export function readState(query: URLSearchParams, defaults: Record<string, string>): ListState {
  const s: Record<string, string> = { page: '1', page_size: '20', ...defaults };
  for (const k of Object.keys(s)) {
    const v = query.get(k);
    if (v !== null) s[k] = v;
  }
  const page = Math.max(1, Math.floor(Number(s.page)) || 1);
  const size = Math.min(200, Math.max(1, Math.floor(Number(s.page_size)) || 20));
  s.page = String(page);
  s.page_size = String(size);
  return s as ListState;
}

/** Write the non-default parts of the state into the URL (no re-render). */
export function writeState(state: Record<string, string>, defaults: Record<string, string>): void {
  const all: Record<string, string> = { page: '1', page_size: '20', ...defaults };
  const q: Record<string, string> = {};
  for (const [k, v] of Object.entries(state)) if (v !== '' && v !== all[k]) q[k] = v;
  replaceQuery(q);
  lastHref.set(window.location.hash.replace(/^#/, '').split('?')[0], window.location.hash);
}

const lastHref = new Map<string, string>();

/** The list URL last shown for `path` (keeps filters and page when returning from a detail page). */
export function listHref(path: string): string {
  return lastHref.get(path) ?? `#${path}`;
}

/** Runs loads so that only the latest response is applied. */
export function latest(): <T>(p: Promise<T>) => Promise<{ stale: boolean; value?: T; error?: unknown }> {
  let seq = 0;
  return async <T>(p: Promise<T>) => {
    const mine = ++seq;
    try {
      const value = await p;
      return { stale: mine !== seq, value };
    } catch (error) {
      return { stale: mine !== seq, error };
    }
  };
}

/** Chinese text for a failed request or any other error (see i18n.ts). */
export function errMsg(e: unknown): string {
  return errorText(e);
}

/** A labelled filter control. */
export function filter(labelText: string, control: HTMLElement): HTMLElement {
  return h('label', { class: 'filter' }, h('span', null, labelText), control);
}

export function filterBar(...children: Child[]): HTMLFormElement {
  return h('form', { class: 'filter-bar', role: 'search', novalidate: true }, children);
}

export function optionsOf(map: Record<string, string>, all = '全部'): { value: string; label: string }[] {
  return [{ value: '', label: all }, ...Object.entries(map).map(([value, label]) => ({ value, label }))];
}

// Small hash router: "#/enterprises/123?page=2".

export interface RouteContext {
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
}

export type Cleanup = () => void;

export interface Route {
  pattern: string;
  /** Renders into the outlet; may return a cleanup run on navigation away. */
  render: (outlet: HTMLElement, ctx: RouteContext) => void | Cleanup | Promise<void | Cleanup>;
}

export interface Location {
  path: string;
  query: URLSearchParams;
}

export function currentLocation(): Location {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const i = raw.indexOf('?');
  const path = (i >= 0 ? raw.slice(0, i) : raw) || '/';
  const query = new URLSearchParams(i >= 0 ? raw.slice(i + 1) : '');
  return { path: path.startsWith('/') ? path : `/${path}`, query };
}

export function hrefFor(path: string, query?: Record<string, string | number | null | undefined> | URLSearchParams): string {
  let qs = '';
  if (query instanceof URLSearchParams) qs = query.toString();
  else if (query) {
    const sp = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') sp.set(k, String(v));
    qs = sp.toString();
  }
  return `#${path}${qs ? `?${qs}` : ''}`;
}

export function navigate(path: string, query?: Record<string, string | number | null | undefined> | URLSearchParams): void {
  const target = hrefFor(path, query);
  if (window.location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else window.location.hash = target;
}

/** Update the query part of the current URL without re-rendering (list filters, paging). */
export function replaceQuery(query: Record<string, string | number | null | undefined>): void {
  const { path } = currentLocation();
  history.replaceState(history.state, '', hrefFor(path, query));
}

export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/').filter(Boolean);
  const s = path.split('/').filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) params[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}

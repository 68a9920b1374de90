// fetch wrapper for /api/v1. Auth rides on the HttpOnly session cookie set by login.

import { describeError } from './i18n';

/**
 * A failed request. `message` is the Chinese text for the user (from the error `code`, see
 * i18n.ts); `serverMessage` keeps the server's own (English) message for logs and debugging.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: Record<string, unknown>;
  readonly serverMessage: string;
  readonly requestId: string | null;
  constructor(status: number, code: string, message: string, body: Record<string, unknown>, requestId: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
    this.serverMessage = typeof body.message === 'string' ? body.message : '';
    this.requestId = requestId;
  }
}

type Handler = (err: ApiError) => void;
let onUnauthorized: Handler = () => {};
let onPasswordChangeRequired: Handler = () => {};

/** Hooks wired by main.ts: a 401 goes to login, 403 password_change_required to 修改密码. */
export function setAuthHandlers(unauth: Handler, mustChange: Handler): void {
  onUnauthorized = unauth;
  onPasswordChangeRequired = mustChange;
}

export interface RequestOptions {
  method?: string;
  query?: Record<string, string | number | boolean | null | undefined>;
  json?: unknown;
  body?: BodyInit;
  contentType?: string;
  /** `Accept` header; JSON unless told otherwise (the WHEP answer is `application/sdp`). */
  accept?: string;
  /** Do not run the global 401/403 handlers (login form, session probe). */
  noAuthRedirect?: boolean;
  signal?: AbortSignal;
  /** Extra request headers (`X-Import-Id` of an import whose progress the page polls). */
  headers?: Record<string, string>;
}

export function buildQuery(q?: RequestOptions['query']): string {
  if (!q) return '';
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue;
    sp.set(k, String(v));
  }
  const s = sp.toString();
  return s ? `?${s}` : '';
}

async function toError(res: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    const t = await res.text();
    if (t) {
      const parsed: unknown = JSON.parse(t);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
    }
  } catch {
    /* non-JSON error body (proxy page, plain-text 413, …) */
  }
  const code = typeof body.code === 'string' ? body.code : `http_${res.status}`;
  const requestId = res.headers.get('x-request-id');
  let message = describeError(res.status, code, body);
  if (res.status >= 500 && requestId) message += `（请求编号：${requestId}）`;
  return new ApiError(res.status, code, message, body, requestId);
}

/**
 * Headers every API call carries. The session cookie rides along with `credentials: 'same-origin'`;
 * `X-Requested-With` is what the server's CSRF guard asks of a cookie-authenticated write. For a
 * raw `fetch` (a `keepalive` DELETE on page exit) outside `request`.
 */
export function apiHeaders(accept = 'application/json'): Record<string, string> {
  return { Accept: accept, 'X-Requested-With': 'shouhu-web' };
}

export async function request(path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers = { ...apiHeaders(opts.accept), ...opts.headers };
  let body: BodyInit | undefined = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.contentType) {
    headers['Content-Type'] = opts.contentType;
  }
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}${buildQuery(opts.query)}`, {
      method: opts.method ?? (body !== undefined ? 'POST' : 'GET'),
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', '无法连接服务器，请检查网络', {});
  }
  if (!res.ok) {
    const err = await toError(res);
    if (!opts.noAuthRedirect) {
      if (res.status === 401) onUnauthorized(err);
      else if (res.status === 403 && err.code === 'password_change_required') onPasswordChangeRequired(err);
    }
    throw err;
  }
  return res;
}

export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await request(path, opts);
  if (res.status === 204) return undefined as T;
  const t = await res.text();
  return (t ? JSON.parse(t) : undefined) as T;
}

export const get = <T>(path: string, query?: RequestOptions['query']) => api<T>(path, { query });
export const post = <T>(path: string, json?: unknown) => api<T>(path, { method: 'POST', json: json ?? {} });
export const put = <T>(path: string, json: unknown) => api<T>(path, { method: 'PUT', json });
export const del = (path: string) => api<void>(path, { method: 'DELETE' });

/** Content-Type for an uploaded import file, by extension. */
export function importContentType(file: File): string | null {
  const name = file.name.toLowerCase();
  if (name.endsWith('.csv')) return 'text/csv';
  if (name.endsWith('.xlsx')) return 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
  return null;
}

/** Fetch a file and hand it to the browser as a download. */
export async function download(path: string, query: RequestOptions['query'], fallbackName: string): Promise<void> {
  const res = await request(path, { query });
  const blob = await res.blob();
  let name = fallbackName;
  const cd = res.headers.get('Content-Disposition') ?? '';
  const star = /filename\*=(?:UTF-8'')?([^;]+)/i.exec(cd);
  const plain = /filename="?([^";]+)"?/i.exec(cd);
  try {
    if (star) name = decodeURIComponent(star[1].trim().replace(/^"|"$/g, ''));
    else if (plain) name = plain[1];
  } catch {
    /* keep fallback */
  }
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

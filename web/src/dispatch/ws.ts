// The dispatch WebSocket (docs/api/dispatch-ws.md): connect on the page's origin (the session
// cookie authenticates the upgrade), keep it alive with pings, reconnect with backoff.

import type { ServerMessage } from './model';

export type SocketState = 'connecting' | 'open' | 'closed';

export interface SocketCallbacks {
  /** The socket is open: send the subscription. */
  onOpen: () => void;
  onMessage: (m: ServerMessage) => void;
  /** `retryInMs` when a reconnect is scheduled; `code` / `reason` of the close frame. */
  onState: (s: SocketState, info?: { retryInMs?: number; code?: number; reason?: string }) => void;
  /** A connection failed before it opened (maybe a 401 refused before the upgrade). */
  onRefused?: () => void;
}

const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;

export function dispatchSocketUrl(): string {
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${window.location.host}/api/v1/dispatch/ws`;
}

export class DispatchSocket {
  private ws: WebSocket | null = null;
  private stopped = true;
  private attempt = 0;
  private retryTimer = 0;
  private pingTimer = 0;
  private pongTimer = 0;
  private openedAt = 0;
  private readonly url: string;
  private readonly cb: SocketCallbacks;

  constructor(cb: SocketCallbacks, url = dispatchSocketUrl()) {
    this.cb = cb;
    this.url = url;
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      try {
        ws.close(1000, 'leaving');
      } catch {
        /* already closed */
      }
    }
  }

  /** Send a JSON message; false when the socket is not open (it is then resent by onOpen). */
  send(msg: unknown): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  /** Drop the connection and reconnect now (the 重连 button). */
  reconnectNow(): void {
    if (this.stopped) return;
    this.attempt = 0;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      try {
        ws.close(1000, 'reconnect');
      } catch {
        /* ignore */
      }
    }
    this.connect();
  }

  private clearTimers(): void {
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    window.clearTimeout(this.pongTimer);
    this.retryTimer = this.pingTimer = this.pongTimer = 0;
  }

  private connect(): void {
    if (this.stopped) return;
    this.cb.onState('connecting');
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleRetry(false);
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.openedAt = Date.now();
      this.cb.onState('open');
      this.pingTimer = window.setInterval(() => this.ping(), PING_EVERY_MS);
      this.cb.onOpen();
    };
    ws.onmessage = (ev: MessageEvent) => {
      // Any message proves the connection alive.
      window.clearTimeout(this.pongTimer);
      this.pongTimer = 0;
      if (typeof ev.data !== 'string') return;
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg === 'object' && typeof (msg as { type?: unknown }).type === 'string') {
        // A connection that delivers data is healthy: the next failure starts the backoff afresh.
        if (Date.now() - this.openedAt > 5_000) this.attempt = 0;
        this.cb.onMessage(msg as ServerMessage);
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      window.clearInterval(this.pingTimer);
      window.clearTimeout(this.pongTimer);
      this.pingTimer = this.pongTimer = 0;
      if (!opened) this.cb.onRefused?.();
      this.scheduleRetry(opened, ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  private ping(): void {
    if (!this.send({ type: 'ping' })) return;
    window.clearTimeout(this.pongTimer);
    this.pongTimer = window.setTimeout(() => {
      // No answer: the connection is dead (sleep, network change). Drop it and reconnect.
      const ws = this.ws;
      if (!ws) return;
      this.ws = null;
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      try {
        ws.close(4000, 'ping timeout');
      } catch {
        /* ignore */
      }
      window.clearInterval(this.pingTimer);
      this.pingTimer = 0;
      this.scheduleRetry(true, 4000, 'ping timeout');
    }, PONG_TIMEOUT_MS);
  }

  private scheduleRetry(wasOpen: boolean, code?: number, reason?: string): void {
    if (this.stopped) return;
    if (wasOpen && Date.now() - this.openedAt > 10_000) this.attempt = 0;
    // 1 s, 2 s, 4 s … 30 s, ±20 % so that many screens do not reconnect in step after a restart.
    const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt = Math.min(this.attempt + 1, 10);
    this.cb.onState('closed', { retryInMs: delay, code, reason });
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }
}

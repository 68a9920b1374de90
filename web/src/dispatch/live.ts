// 实时视频: live view of a body-worn recorder (GB/T 28181) over WHEP. The browser offers a
// receive-only video transceiver, POSTs the SDP to /streams/{device}/{channel}/whep and plays the
// answer's track; DELETE on the session's Location ends it. Several players may be open at once,
// docked over the map; the page closes them all when it goes away.

import { ApiError, apiHeaders, get, request } from '../api';
import { h } from '../dom';
import { errorText } from '../i18n';
import { toast } from '../ui/toast';

/** The part of `GET /recorders/{id}` the player needs. */
interface RecorderDetail {
  channel_list?: { channel_id: string; name?: string | null; status?: string | null }[];
  access?: { registered?: boolean; online?: boolean; streaming?: boolean };
}

const MAX_PLAYERS = 4;
const ICE_GATHER_MS = 2000;

type PlayerState = 'connecting' | 'playing' | 'error';

/** Chinese text for a failed live view. */
export function liveError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === 'not_registered') return '记录仪未注册';
    if (e.code === 'device_refused' || e.status === 502) return '设备拒绝了视频请求';
    if (e.code === 'no_media' || e.status === 504) return '未收到视频流';
    if (e.code === 'no_rtp_port') return '服务器暂无可用的视频端口，请稍后再试';
  }
  return errorText(e);
}

/** Resolves when ICE gathering completes, or after `ms` (the offer then carries what was found). */
export function iceGathered(pc: RTCPeerConnection, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const done = () => {
      window.clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = window.setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

class LivePlayer {
  readonly el: HTMLElement;
  private readonly video: HTMLVideoElement;
  private readonly status: HTMLElement;
  private readonly snapBtn: HTMLButtonElement;
  private pc: RTCPeerConnection | null = null;
  /** The WHEP session (absolute URL), to DELETE on close. */
  private session: string | null = null;
  private closed = false;

  constructor(
    readonly device: string,
    name: string,
    private readonly onClosed: (p: LivePlayer) => void,
  ) {
    this.video = h('video', { class: 'live-video', autoplay: true, muted: true, playsinline: true, 'data-test': 'live-video-element' });
    this.video.muted = true; // the property, not just the attribute: autoplay needs it
    // 播放中 only once a picture is there: `playing` can come before the first decoded frame.
    const shown = () => {
      if (this.video.videoWidth > 0 && !this.video.paused) this.setStatus('playing', '播放中');
    };
    this.video.addEventListener('playing', shown);
    this.video.addEventListener('resize', shown);
    this.status = h('div', { class: 'live-status', 'data-test': 'live-status', role: 'status' });
    this.snapBtn = h('button', { type: 'button', class: 'btn small', 'data-test': 'live-snapshot', title: '在新窗口打开当前画面截图', disabled: true }, '截图');
    this.el = h(
      'section',
      { class: 'live-player', 'data-test': 'live-player', 'data-device': device, tabindex: -1, 'aria-label': `${name} 实时视频` },
      h(
        'div',
        { class: 'live-head' },
        h('span', { class: 'live-title', title: `${name}（${device}）` }, h('b', null, name), ' 实时视频'),
        this.snapBtn,
        h('button', { type: 'button', class: 'btn small', 'data-test': 'live-close', onclick: () => this.close() }, '关闭'),
      ),
      this.video,
      this.status,
    );
    this.setStatus('connecting', '正在连接…');
    void this.start();
  }

  private setStatus(state: PlayerState, text: string): void {
    if (this.closed) return;
    this.el.setAttribute('data-state', state);
    this.status.textContent = text;
  }

  private async start(): Promise<void> {
    try {
      const dev = encodeURIComponent(this.device);
      let channel = this.device;
      try {
        const r = await get<RecorderDetail>(`/recorders/${dev}`);
        channel = r?.channel_list?.[0]?.channel_id || this.device;
      } catch (e) {
        // No registry access (403) or no catalog yet: the device id doubles as its channel.
        if (e instanceof ApiError && e.status === 401) throw e;
      }
      if (this.closed) return;
      const path = `/streams/${dev}/${encodeURIComponent(channel)}`;
      this.snapBtn.disabled = false;
      this.snapBtn.onclick = () => window.open(`/api/v1${path}/snapshot.jpg`, '_blank', 'noopener');

      const pc = new RTCPeerConnection();
      this.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      // Sound: G.711 passes through as PCMA/PCMU, AAC arrives transcoded to Opus.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.ontrack = (ev) => {
        if (!this.video.srcObject) this.video.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
        void this.video.play().catch(() => undefined);
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed') this.setStatus('error', '视频连接失败，请检查网络');
        else if (pc.connectionState === 'disconnected') this.setStatus('connecting', '连接中断，正在恢复…');
        else if (pc.connectionState === 'connected' && !this.video.paused && this.video.videoWidth > 0)
          this.setStatus('playing', '播放中');
      };
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_GATHER_MS);
      if (this.closed) return;

      const url = `${path}/whep`;
      const res = await request(url, {
        method: 'POST',
        body: pc.localDescription?.sdp ?? '',
        contentType: 'application/sdp',
        accept: 'application/sdp, application/json',
      });
      const location = res.headers.get('Location');
      if (location) this.session = new URL(location, new URL(`/api/v1${url}`, window.location.href)).href;
      const answer = await res.text();
      if (this.closed) {
        this.endSession(); // closed while the server was setting up: end what it made
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      this.setStatus('error', liveError(e));
      this.pc?.close();
      this.pc = null;
      this.endSession();
    }
  }

  private endSession(): void {
    const url = this.session;
    this.session = null;
    if (url) void fetch(url, { method: 'DELETE', keepalive: true, credentials: 'same-origin', headers: apiHeaders() }).catch(() => undefined);
  }

  /** Bring to the user's attention (opened again). */
  focus(): void {
    this.el.classList.remove('flash');
    void this.el.offsetWidth; // restart the animation
    this.el.classList.add('flash');
    this.el.focus({ preventScroll: true });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pc?.close();
    this.pc = null;
    this.video.srcObject = null;
    this.endSession();
    this.el.remove();
    this.onClosed(this);
  }
}

/** The open players, docked over the map (`el` goes into the map area). */
export class LivePlayers {
  readonly el = h('div', { class: 'live-dock', 'data-test': 'live-dock' });
  private readonly players = new Map<string, LivePlayer>();
  private readonly onPageHide = () => this.closeAll();

  constructor() {
    window.addEventListener('pagehide', this.onPageHide);
  }

  /** Open the live view of `device`, or focus it when already open. */
  open(device: string, name: string): void {
    const open = this.players.get(device);
    if (open) return open.focus();
    if (this.players.size >= MAX_PLAYERS) {
      toast(`最多同时打开 ${MAX_PLAYERS} 路视频，请先关闭其他视频`, 'info');
      return;
    }
    const p = new LivePlayer(device, name, (x) => {
      if (this.players.get(x.device) === x) this.players.delete(x.device);
    });
    this.players.set(device, p);
    this.el.appendChild(p.el);
  }

  closeAll(): void {
    for (const p of [...this.players.values()]) p.close();
  }

  /** Close every player and stop listening (page cleanup). */
  destroy(): void {
    this.closeAll();
    window.removeEventListener('pagehide', this.onPageHide);
  }
}

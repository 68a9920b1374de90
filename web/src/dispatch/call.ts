// 视频通话: an operator calls a unit from the dispatch map. POST /calls places it (the officer's
// phone app rings; a body camera connects at once); the operator's microphone and camera (or,
// without a camera, a placard picture) go out over WHIP to /calls/{id}/whip, and the officer's
// picture and sound come back over WHEP from the unit's streaming channel. The call's state
// follows a long poll of GET /calls. Every stream of the call is recorded by the server until
// it ends (挂断).

import { ApiError, apiHeaders, get, post, request } from '../api';
import { h } from '../dom';
import { errorText } from '../i18n';
import { toast } from '../ui/toast';
import { iceGathered, liveError } from './live';

interface CallRecording {
  device_id: string;
  channel_id: string;
  recording_id?: string | null;
}

export interface Call {
  id: string;
  unit_id: string;
  unit_name: string;
  state: 'ringing' | 'connected' | 'ended';
  answer_needed: boolean;
  console: [string, string];
  devices: string[];
  answered_at_ms?: number | null;
  end_reason?: string | null;
  recordings: CallRecording[];
}

interface CallList {
  version: number;
  items: Call[];
}

const ICE_GATHER_MS = 2000;

const END_TEXT: Record<string, string> = {
  hangup: '已挂断',
  hangup_officer: '对方已挂断',
  declined: '对方拒绝接听',
  no_answer: '无人接听',
  shutdown: '服务器已停止，通话结束',
};

/** A video track showing who speaks, for an operator without a camera. */
function placardTrack(name: string): MediaStreamTrack | null {
  const c = document.createElement('canvas');
  c.width = 640;
  c.height = 360;
  const g = c.getContext('2d');
  if (!g || typeof c.captureStream !== 'function') return null;
  const draw = () => {
    g.fillStyle = '#16324f';
    g.fillRect(0, 0, c.width, c.height);
    g.fillStyle = '#fff';
    g.font = 'bold 40px sans-serif';
    g.textAlign = 'center';
    g.fillText('指挥中心', c.width / 2, 160);
    g.font = '26px sans-serif';
    g.fillText(name, c.width / 2, 220);
    g.fillText(new Date().toLocaleTimeString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false }), c.width / 2, 270);
  };
  draw();
  const timer = window.setInterval(draw, 500);
  const track = c.captureStream(10).getVideoTracks()[0];
  track?.addEventListener('ended', () => window.clearInterval(timer));
  return track ?? null;
}

/** The call with one unit, docked over the map. */
export class CallPanel {
  readonly el: HTMLElement;
  private readonly remote: HTMLVideoElement;
  private readonly local: HTMLVideoElement;
  private readonly status: HTMLElement;
  private readonly rec: HTMLElement;
  private readonly hangupBtn: HTMLButtonElement;
  private call: Call | null = null;
  private media: MediaStream | null = null;
  private publisher: RTCPeerConnection | null = null;
  private viewer: RTCPeerConnection | null = null;
  /** Sessions (absolute URLs) to DELETE when the panel closes. */
  private sessions: string[] = [];
  /** The officer's channel being played (`device/channel`). */
  private playing: string | null = null;
  private closed = false;
  private timer = 0;

  constructor(
    readonly unitId: string,
    name: string,
    private readonly operatorName: string,
    private readonly onClosed: (p: CallPanel) => void,
  ) {
    this.remote = h('video', { class: 'live-video', autoplay: true, playsinline: true, 'data-test': 'call-remote' });
    this.local = h('video', { class: 'call-local', autoplay: true, muted: true, playsinline: true, 'data-test': 'call-local' });
    this.local.muted = true;
    this.status = h('div', { class: 'live-status', 'data-test': 'call-status', role: 'status' });
    this.rec = h('span', { class: 'call-rec', 'data-test': 'call-rec', hidden: true, title: '通话全程录像，可在录像检索中查看' }, '● 录像中');
    this.hangupBtn = h('button', { type: 'button', class: 'btn small danger', 'data-test': 'call-hangup', onclick: () => void this.hangUp() }, '挂断');
    this.el = h(
      'section',
      { class: 'live-player call-panel', 'data-test': 'call-panel', 'data-unit-id': unitId, tabindex: -1, 'aria-label': `与${name}视频通话` },
      h('div', { class: 'live-head' }, h('span', { class: 'live-title', title: name }, h('b', null, name), ' 视频通话'), this.rec, this.hangupBtn),
      h('div', { class: 'call-media' }, this.remote, this.local),
      this.status,
    );
    this.setState('placing', '正在呼叫…');
    void this.start();
  }

  private setState(state: string, text: string): void {
    if (this.closed) return;
    this.el.setAttribute('data-state', state);
    this.status.textContent = text;
  }

  private async start(): Promise<void> {
    try {
      const call = await post<Call>('/calls', { unit_id: this.unitId });
      this.call = call;
      this.el.setAttribute('data-call-id', call.id);
      this.show(call);
      void this.follow();
      await this.speak(call);
    } catch (e) {
      if (this.call) {
        toast(`通话：${liveError(e)}`, 'error');
        return;
      }
      this.setState('error', e instanceof ApiError && e.code === 'busy' ? '该单元正在通话中' : errorText(e));
      this.hangupBtn.textContent = '关闭';
      this.hangupBtn.onclick = () => this.close();
    }
  }

  /** The operator's microphone and camera (or a placard) out over WHIP. */
  private async speak(call: Call): Promise<void> {
    let media: MediaStream;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    } catch {
      try {
        media = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch {
        toast('无法使用麦克风：对方只能看到占位画面，听不到声音', 'error', 6000);
        media = new MediaStream();
      }
    }
    if (media.getVideoTracks().length === 0) {
      const t = placardTrack(this.operatorName);
      if (t) media.addTrack(t);
    }
    this.media = media;
    if (this.closed) return this.stopMedia();
    this.local.srcObject = media;
    void this.local.play().catch(() => undefined);
    const pc = new RTCPeerConnection();
    this.publisher = pc;
    const video = media.getVideoTracks()[0];
    if (video) {
      const t = pc.addTransceiver(video, { direction: 'sendonly' });
      const h264 = RTCRtpSender.getCapabilities('video')?.codecs.filter((c) => c.mimeType === 'video/H264') ?? [];
      if (h264.length) t.setCodecPreferences(h264);
    }
    const audio = media.getAudioTracks()[0];
    if (audio) pc.addTransceiver(audio, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, ICE_GATHER_MS);
    if (this.closed) return;
    const url = `/calls/${encodeURIComponent(call.id)}/whip`;
    const res = await request(url, { method: 'POST', body: pc.localDescription?.sdp ?? '', contentType: 'application/sdp', accept: 'application/sdp, application/json' });
    this.keepSession(res, url);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  }

  /** The officer's picture and sound over WHEP from `device/channel`. */
  private async watch(device: string, channel: string): Promise<void> {
    this.viewer?.close();
    const pc = new RTCPeerConnection();
    this.viewer = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (ev) => {
      if (!this.remote.srcObject) this.remote.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
      void this.remote.play().catch(() => {
        // Sound needs a gesture in some browsers: play muted rather than not at all.
        this.remote.muted = true;
        void this.remote.play().catch(() => undefined);
      });
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, ICE_GATHER_MS);
    if (this.closed) return;
    const url = `/streams/${encodeURIComponent(device)}/${encodeURIComponent(channel)}/whep`;
    const res = await request(url, { method: 'POST', body: pc.localDescription?.sdp ?? '', contentType: 'application/sdp', accept: 'application/sdp, application/json' });
    this.keepSession(res, url);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  }

  private keepSession(res: Response, url: string): void {
    const location = res.headers.get('Location');
    if (location) this.sessions.push(new URL(location, new URL(`/api/v1${url}`, window.location.href)).href);
  }

  /** Follow the call's changes (long poll) until it ends. */
  private async follow(): Promise<void> {
    let version = 0;
    while (!this.closed && this.call && this.call.state !== 'ended') {
      try {
        const list = await get<CallList>('/calls', { after_version: version, wait_s: 20 });
        version = list.version;
        const c = list.items.find((x) => x.id === this.call?.id);
        if (c) this.show(c);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return;
        await new Promise((r) => window.setTimeout(r, 2000));
      }
    }
  }

  private show(c: Call): void {
    this.call = c;
    this.rec.hidden = c.state === 'ended' || !c.recordings.some((r) => r.recording_id);
    window.clearInterval(this.timer);
    if (c.state === 'ringing') {
      this.setState('ringing', '正在呼叫，等待对方接听…');
    } else if (c.state === 'connected') {
      const since = c.answered_at_ms ?? Date.now();
      const tick = () => {
        const s = Math.max(0, Math.floor((Date.now() - since) / 1000));
        this.setState('connected', `通话中 ${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`);
      };
      tick();
      this.timer = window.setInterval(tick, 1000);
      // The officer's side: the first channel of theirs that records (it streams).
      const theirs = c.recordings.find((r) => r.channel_id !== c.console[1] && r.recording_id);
      const key = theirs ? `${theirs.device_id}/${theirs.channel_id}` : null;
      if (theirs && key !== this.playing) {
        this.playing = key;
        void this.watch(theirs.device_id, theirs.channel_id).catch((e) => {
          this.playing = null;
          toast(`对方画面：${liveError(e)}`, 'error');
        });
      }
    } else {
      this.setState('ended', END_TEXT[c.end_reason ?? ''] ?? '通话已结束');
      this.finish();
    }
  }

  private async hangUp(): Promise<void> {
    const c = this.call;
    if (!c || c.state === 'ended') return this.close();
    this.hangupBtn.disabled = true;
    this.setState('ending', '正在挂断，保存录像…');
    try {
      this.show(await post<Call>(`/calls/${encodeURIComponent(c.id)}/hangup`));
    } catch (e) {
      this.hangupBtn.disabled = false;
      toast(`挂断失败：${errorText(e)}`, 'error');
    }
  }

  /** The call is over: media stops, the panel offers to close. */
  private finish(): void {
    window.clearInterval(this.timer);
    this.stopMedia();
    this.hangupBtn.disabled = false;
    this.hangupBtn.textContent = '关闭';
    this.hangupBtn.onclick = () => this.close();
  }

  private stopMedia(): void {
    this.publisher?.close();
    this.publisher = null;
    this.viewer?.close();
    this.viewer = null;
    for (const t of this.media?.getTracks() ?? []) t.stop();
    this.media = null;
    this.local.srcObject = null;
    for (const url of this.sessions.splice(0)) {
      void fetch(url, { method: 'DELETE', keepalive: true, credentials: 'same-origin', headers: apiHeaders() }).catch(() => undefined);
    }
  }

  focus(): void {
    this.el.focus({ preventScroll: true });
  }

  /** Close the panel; an open call is hung up first. */
  close(): void {
    if (this.closed) return;
    const c = this.call;
    if (c && c.state !== 'ended') {
      void fetch(`/api/v1/calls/${encodeURIComponent(c.id)}/hangup`, { method: 'POST', keepalive: true, credentials: 'same-origin', headers: apiHeaders() }).catch(() => undefined);
    }
    this.stopMedia();
    window.clearInterval(this.timer);
    this.closed = true;
    this.el.remove();
    this.onClosed(this);
  }
}

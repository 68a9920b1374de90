// Playback of a recording's HLS playlist (fMP4, VOD) in a <video>: the browser's own HLS player
// where it has one (Safari, recent Chromium), else hls.js over Media Source Extensions. hls.js is
// loaded on first use only (its own chunk). The playlist's segment URLs carry a media token, so
// neither player needs a header; the playlist itself rides on the session cookie.

import type HlsType from 'hls.js';

export interface VodHandle {
  /** Stop loading and detach from the element. */
  destroy: () => void;
  /** `native` or `hls.js`. */
  engine: 'native' | 'hls.js';
}

const MEDIA_ERRORS: Record<number, string> = {
  1: '播放被中止',
  2: '网络错误，无法加载录像',
  3: '录像解码失败',
  4: '浏览器不支持该录像格式',
};

/** Whether the browser's Media Source Extensions can decode `codec` (`h264`, `h265`) in MP4. */
export function canDecode(codec: string | null | undefined): boolean {
  if (!codec || typeof MediaSource === 'undefined') return true;
  if (codec === 'h265') return MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L93.B0"');
  return true;
}

/**
 * Play `url` (an HLS playlist) in `video`. `onError` gets a Chinese message when playback fails
 * (the playback is then over). Resolves once the source is attached.
 */
export async function playHls(video: HTMLVideoElement, url: string, onError: (msg: string) => void): Promise<VodHandle> {
  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    const onErr = () => {
      const code = video.error?.code ?? 0;
      onError(MEDIA_ERRORS[code] ?? '播放失败');
    };
    video.addEventListener('error', onErr);
    video.src = url;
    void video.play().catch(() => undefined);
    return {
      engine: 'native',
      destroy: () => {
        video.removeEventListener('error', onErr);
        video.pause();
        video.removeAttribute('src');
        video.load();
      },
    };
  }
  let Hls: typeof HlsType;
  try {
    Hls = (await import('hls.js')).default;
  } catch {
    onError('播放组件加载失败，请刷新页面后重试');
    return { engine: 'hls.js', destroy: () => undefined };
  }
  if (!Hls.isSupported()) {
    onError('当前浏览器不支持录像回放（需要 Media Source Extensions），请导出 MP4 后播放');
    return { engine: 'hls.js', destroy: () => undefined };
  }
  const hls = new Hls({ enableWorker: true, lowLatencyMode: false });
  hls.on(Hls.Events.ERROR, (_ev, data) => {
    if (!data.fatal) return;
    const status = data.response?.code;
    let msg: string;
    if (status === 401 || status === 403) msg = '无权播放该录像或登录已失效';
    else if (status === 404) msg = '该时段没有录像';
    else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) msg = '网络错误，无法加载录像';
    else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) msg = '录像解码失败';
    else msg = `播放失败（${data.details}）`;
    hls.destroy();
    onError(msg);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    void video.play().catch(() => undefined);
  });
  hls.attachMedia(video);
  hls.loadSource(url);
  return { engine: 'hls.js', destroy: () => hls.destroy() };
}

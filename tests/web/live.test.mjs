// End-to-end test of live video in the browser: headless Chromium (an independent WebRTC stack)
// opens a simulated body camera's picture from the dispatch screen over WHEP and must show frames
// advancing at the camera's size; closing the player ends the session, and the stream is hung up
// after the grace period. An H.265 camera with AAC sound plays too (Chromium takes neither: the
// hub transcodes to H.264 and Opus). A phone app publishes its camera over WHIP (Chromium's fake
// camera, H.264) and an operator watches it over WHEP. An operator calls an officer's phone app
// from the dispatch screen: the app (a second page, with the officer's own account) answers,
// publishes its camera and microphone over WHIP and plays the command centre's side over WHEP;
// the operator sees the officer; both sides are recorded (H.264 + Opus) until the hang-up.
//
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_ADMIN_PASSWORD=... node --test live.test.mjs
//
// SHOUHU_URL is a running `shouhu demo` (with its simulated recorders, which stream H.264 in PS
// over RTP when invited). Without SHOUHU_URL the suite is skipped (a failure under SHOUHU_REQUIRE).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(HERE, 'artifacts');
const BASE = (process.env.SHOUHU_URL ?? '').replace(/\/+$/, '');
const USER = process.env.SHOUHU_OPERATOR_USER ?? 'operator';
const PASSWORD = process.env.SHOUHU_OPERATOR_PASSWORD ?? process.env.SHOUHU_ADMIN_PASSWORD ?? '';
const CHROMIUM = process.env.SHOUHU_CHROMIUM ?? '/usr/bin/chromium';

const skipReason = !BASE
  ? 'SHOUHU_URL is not set (point it at a running shouhu demo server)'
  : !PASSWORD
    ? 'SHOUHU_OPERATOR_PASSWORD (or SHOUHU_ADMIN_PASSWORD) is not set'
    : !existsSync(CHROMIUM)
      ? `chromium not found at ${CHROMIUM}`
      : false;
if (skipReason && process.env.SHOUHU_REQUIRE) {
  throw new Error(`cannot run the live video web suite: ${skipReason}`);
}

describe('live video', { skip: skipReason }, () => {
  let context;
  let page;
  let userDataDir;

  async function step(name, fn) {
    try {
      await fn();
    } catch (e) {
      await page.screenshot({ path: join(ARTIFACTS, `FAILED-live-${name}.png`) }).catch(() => {});
      throw e;
    }
  }

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    userDataDir = await mkdtemp(join(tmpdir(), 'shouhu-e2e-live-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--autoplay-policy=no-user-gesture-required',
        // Plain host candidates instead of mDNS names.
        '--disable-features=WebRtcHideLocalIpsWithMdns',
        // A generated camera for the WHIP publisher, without a permission prompt.
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
      ],
      viewport: { width: 1366, height: 768 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
    });
    context.setDefaultTimeout(30_000);
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  });

  it('an operator opens a body camera live from the dispatch screen and sees it play', async () => {
    await step('login', async () => {
      await page.goto(`${BASE}/`);
      await page.getByTestId('login-username').fill(USER);
      await page.getByTestId('login-password').fill(PASSWORD);
      await page.getByTestId('login-submit').click();
      await page.getByTestId('user-menu').waitFor();
    });
    let unitId;
    let device;
    await step('pick-officer-with-camera', async () => {
      await page.goto(`${BASE}/#/dispatch`);
      // An officer whose bound recorder is registered reports over GB/T 28181.
      const handle = await page.waitForFunction(() => {
        for (const [id, u] of window.__dispatch?.units ?? []) {
          if (u.device && u.source === 'gb28181' && u.link === 'online') return { id, device: u.device };
        }
        return null;
      }, null, { timeout: 60_000 });
      ({ id: unitId, device } = await handle.jsonValue());
      const row = page.locator(`[data-testid=unit-list] [data-unit-id="${unitId}"]`);
      // click() scrolls the row into view and finds it again if the list re-renders meanwhile
      // (the list is rebuilt as positions arrive; a separate scroll call can hit a detached row).
      await row.click();
    });
    await step('open-player', async () => {
      await page.locator('[data-test=live-video]').first().click();
      const player = page.locator(`[data-test=live-player][data-device="${device}"]`);
      await player.waitFor();
      await page.waitForFunction(
        (d) => document.querySelector(`[data-test=live-player][data-device="${d}"]`)?.getAttribute('data-state') === 'playing',
        device,
        { timeout: 45_000 },
      );
      // Frames advance at the camera's size (the simulator streams 640×360 at 25 fps). `playing`
      // can fire before the first frame's size is known: wait for it.
      await page.waitForFunction(
        (d) => document.querySelector(`[data-test=live-player][data-device="${d}"] [data-test=live-video-element]`)?.videoWidth > 0,
        device,
        { timeout: 20_000 },
      );
      const first = await page.evaluate((d) => {
        const v = document.querySelector(`[data-test=live-player][data-device="${d}"] [data-test=live-video-element]`);
        return { w: v.videoWidth, h: v.videoHeight, t: v.currentTime };
      }, device);
      assert.deepEqual([first.w, first.h], [640, 360]);
      await page.waitForFunction(
        ([d, t]) => {
          const v = document.querySelector(`[data-test=live-player][data-device="${d}"] [data-test=live-video-element]`);
          return v && v.currentTime > t + 1.5;
        },
        [device, first.t],
        { timeout: 20_000 },
      );
      const decoded = await page.evaluate((d) => {
        const v = document.querySelector(`[data-test=live-player][data-device="${d}"] [data-test=live-video-element]`);
        return v.getVideoPlaybackQuality().totalVideoFrames;
      }, device);
      assert.ok(decoded >= 25, `frames decoded: ${decoded}`);
      await page.screenshot({ path: join(ARTIFACTS, 'live-player.png') });
    });
    await step('close-player', async () => {
      await page.locator(`[data-test=live-player][data-device="${device}"] [data-test=live-close]`).click();
      await page.locator(`[data-test=live-player][data-device="${device}"]`).waitFor({ state: 'detached' });
      // The session ended and, after the grace period, the hub hung up on the camera.
      await page.waitForFunction(async () => {
        const r = await fetch('/api/v1/streams', { headers: { 'X-Requested-With': 'shouhu-web' } });
        return r.ok && (await r.json()).length === 0;
      }, null, { timeout: 30_000, polling: 500 });
    });
  });

  // In the page: watch a channel over WHEP with receive-only video and audio; resolves to the
  // answer SDP, keeps the peer connection and a <video> in window.__views[key].
  async function whepView(key, device, channel) {
    return page.evaluate(async ([key, device, channel]) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.dataset.test = `view-${key}`;
      document.body.append(video);
      const stream = new MediaStream();
      pc.ontrack = (ev) => {
        stream.addTrack(ev.track);
        video.srcObject = stream;
        video.play().catch(() => {});
      };
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') resolve();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
        setTimeout(resolve, 3000);
      });
      const res = await fetch(`/api/v1/streams/${device}/${channel}/whep`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', 'X-Requested-With': 'shouhu-web' },
        body: pc.localDescription.sdp,
      });
      const body = await res.text();
      if (res.status !== 201) return { error: `${res.status} ${body}` };
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      window.__views = window.__views ?? {};
      window.__views[key] = { pc, video, location: res.headers.get('Location') };
      return { answer: body };
    }, [key, device, channel]);
  }

  // Frames advance in window.__views[key]'s video; returns its size.
  async function framesAdvance(key) {
    await page.waitForFunction((k) => window.__views?.[k]?.video.videoWidth > 0, key, { timeout: 30_000 });
    const t0 = await page.evaluate((k) => window.__views[k].video.currentTime, key);
    await page.waitForFunction(([k, t]) => window.__views[k].video.currentTime > t + 1.5, [key, t0], { timeout: 20_000 });
    return page.evaluate((k) => {
      const v = window.__views[k].video;
      return { w: v.videoWidth, h: v.videoHeight, decoded: v.getVideoPlaybackQuality().totalVideoFrames };
    }, key);
  }

  async function stopView(key) {
    await page.evaluate(async (k) => {
      const v = window.__views[k];
      v.pc.close();
      v.video.remove();
      await fetch(v.location, { method: 'DELETE', headers: { 'X-Requested-With': 'shouhu-web' } });
      delete window.__views[k];
    }, key);
  }

  // The simulated camera that sends H.265 with AAC sound (the demo's last recorder; the
  // simulator's channel id puts type code 131 in place of 132).
  const H265_DEVICE = '31010000001320000016';
  const channelOf = (d) => `${d.slice(0, 10)}131${d.slice(13)}`;

  it('an H.265 camera with AAC sound plays in Chromium, transcoded to H.264 and Opus', async () => {
    await step('h265-view', async () => {
      const r = await whepView('h265', H265_DEVICE, channelOf(H265_DEVICE));
      assert.equal(r.error, undefined, r.error);
      // Chromium offers no H.265: the answer carries H.264 (the transcode) and Opus.
      const video = r.answer.split('m=audio')[0];
      assert.match(video, /H264\/90000/);
      assert.doesNotMatch(video, /H265/);
      assert.match(r.answer, /m=audio[\s\S]*opus\/48000/i);
      const f = await framesAdvance('h265');
      assert.deepEqual([f.w, f.h], [640, 360]);
      assert.ok(f.decoded >= 25, `frames decoded: ${f.decoded}`);
      // Sound arrives as Opus.
      await page.waitForFunction(async () => {
        const stats = await window.__views.h265.pc.getStats();
        let ok = false;
        stats.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 20) {
            const c = stats.get(s.codecId);
            ok = ok || /opus/i.test(c?.mimeType ?? '');
          }
        });
        return ok;
      }, null, { timeout: 20_000, polling: 500 });
      await stopView('h265');
    });
  });

  it('a phone app publishes over WHIP and an operator watches it live', async () => {
    // The phone is registered like a recorder, bound to the officer of the app's account; only
    // that account publishes its `app` channel (a device manager may not).
    const login = async (username) => (await (await fetch(`${BASE}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password: process.env.SHOUHU_ADMIN_PASSWORD }),
    })).json());
    const admin = await login(process.env.SHOUHU_ADMIN_USER ?? 'admin');
    assert.ok(admin.token, 'admin login');
    const auth = { Authorization: `Bearer ${admin.token}` };
    const phoneApp = await login('app2');
    assert.ok(phoneApp.token, 'app login');
    const appAuth = { Authorization: `Bearer ${phoneApp.token}` };
    const appMe = await (await fetch(`${BASE}/api/v1/auth/me`, { headers: appAuth })).json();
    const officers = (await (await fetch(`${BASE}/api/v1/officers?page_size=500`, { headers: auth })).json()).items;
    const officer = officers.find((o) => o.account_id === (appMe.id ?? appMe.account?.id));
    assert.ok(officer, 'the app account is bound to an officer');
    const device = '31010000001320000099';
    const created = await fetch(`${BASE}/api/v1/recorders`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ device_id: device, name: '手机执法终端 099', org_unit_id: officer.org_unit_id, officer_id: officer.id }),
    });
    assert.ok([200, 201, 409].includes(created.status), `create the phone: ${created.status} ${await created.text()}`);
    const channel = 'app';
    let location;
    await step('whip-publish', async () => {
      const r = await page.evaluate(async ([device, channel, token]) => {
        const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
        const pc = new RTCPeerConnection();
        const vt = pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly' });
        vt.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264'));
        pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise((resolve) => {
          if (pc.iceGatheringState === 'complete') resolve();
          pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
          setTimeout(resolve, 3000);
        });
        const res = await fetch(`/api/v1/streams/${device}/${channel}/whip`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
          body: pc.localDescription.sdp,
        });
        const body = await res.text();
        if (res.status !== 201) return { error: `${res.status} ${body}` };
        await pc.setRemoteDescription({ type: 'answer', sdp: body });
        window.__publisher = pc;
        return { location: res.headers.get('Location') };
      }, [device, channel, phoneApp.token]);
      assert.equal(r.error, undefined, r.error);
      location = r.location;
      assert.match(location, /^\/api\/v1\/streams\/whip\//);
    });
    await step('whep-of-published', async () => {
      const r = await whepView('phone', device, channel);
      assert.equal(r.error, undefined, r.error);
      assert.match(r.answer, /H264\/90000/);
      const f = await framesAdvance('phone');
      assert.deepEqual([f.w, f.h], [640, 480]);
      await stopView('phone');
    });
    await step('whip-stop', async () => {
      const del = await fetch(`${BASE}${location}`, { method: 'DELETE', headers: appAuth });
      assert.equal(del.status, 200);
      await page.evaluate(() => window.__publisher.close());
      // The published stream is gone, and both ends are on record.
      await page.waitForFunction(async (d) => {
        const r = await fetch('/api/v1/streams', { headers: { 'X-Requested-With': 'shouhu-web' } });
        return r.ok && !(await r.json()).some((s) => s.device_id === d);
      }, device, { timeout: 20_000, polling: 500 });
      for (const action of ['stream.publish', 'stream.publish_end']) {
        let rows = [];
        for (let i = 0; i < 40 && rows.length === 0; i++) {
          const a = await (await fetch(`${BASE}/api/v1/audit?action=${action}&target_id=${device}`, { headers: auth })).json();
          rows = a.items ?? [];
          if (rows.length === 0) await new Promise((r) => setTimeout(r, 250));
        }
        assert.ok(rows.length > 0, `audit ${action}`);
      }
    });
  });
  it('an operator calls an officer\'s phone app: both sides see each other and the call is recorded', async () => {
    const login = async (username) => {
      const r = await (await fetch(`${BASE}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password: process.env.SHOUHU_ADMIN_PASSWORD }),
      })).json();
      assert.ok(r.token, `login ${username}`);
      return { Authorization: `Bearer ${r.token}`, token: r.token };
    };
    const admin = await login(process.env.SHOUHU_ADMIN_USER ?? 'admin');
    const app = await login('app1');
    const json = async (path, headers, init = {}) => {
      const r = await fetch(`${BASE}/api/v1${path}`, { ...init, headers: { ...headers, ...(init.headers ?? {}) } });
      const t = await r.text();
      return { status: r.status, body: t ? JSON.parse(t) : null };
    };
    const adminH = { Authorization: admin.Authorization };
    const appH = { Authorization: app.Authorization };
    // The app's account belongs to an officer; the officer's phone is registered as a terminal.
    const me = (await json('/auth/me', appH)).body;
    const officers = (await json('/officers?page_size=500', adminH)).body.items;
    const officer = officers.find((o) => o.account_id === me.id);
    assert.ok(officer, 'the app account is bound to an officer');
    const phone = '31010000001320000098';
    const created = await json('/recorders', adminH, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ device_id: phone, name: '手机执法终端 098', org_unit_id: officer.org_unit_id, officer_id: officer.id }),
    });
    assert.ok([200, 409].includes(created.status), `register the phone: ${created.status} ${JSON.stringify(created.body)}`);
    const appPage = await context.newPage();
    await appPage.goto(`${BASE}/healthz`);
    let callId;
    await step('operator-calls', async () => {
      await page.goto(`${BASE}/#/dispatch`);
      await page.waitForFunction((id) => window.__dispatch?.units?.get(id)?.device, officer.id, { timeout: 60_000 });
      const row = page.locator(`[data-testid=unit-list] [data-unit-id="${officer.id}"]`);
      // click() scrolls the row into view and finds it again if the list re-renders meanwhile
      // (the list is rebuilt as positions arrive; a separate scroll call can hit a detached row).
      await row.click();
      await page.getByTestId('unit-call').click();
      const panel = page.locator(`[data-test=call-panel][data-unit-id="${officer.id}"]`);
      await panel.waitFor();
      await page.waitForFunction(
        (id) => document.querySelector(`[data-test=call-panel][data-unit-id="${id}"]`)?.getAttribute('data-state') === 'ringing',
        officer.id,
        { timeout: 20_000 },
      );
      callId = await panel.getAttribute('data-call-id');
      assert.ok(callId);
    });
    await step('app-answers-and-talks', async () => {
      const r = await appPage.evaluate(async ([token, phone]) => {
        const auth = { Authorization: `Bearer ${token}` };
        // The app's long poll: the ringing call arrives.
        let version = 0;
        let call;
        for (let i = 0; i < 10 && !call; i++) {
          const l = await (await fetch(`/api/v1/calls?after_version=${version}&wait_s=10`, { headers: auth })).json();
          version = l.version;
          call = l.items.find((c) => c.state === 'ringing');
        }
        if (!call) return { error: 'no ringing call reached the app' };
        const a = await fetch(`/api/v1/calls/${call.id}/answer`, { method: 'POST', headers: auth });
        if (a.status !== 200) return { error: `answer: ${a.status} ${await a.text()}` };
        const gathered = (pc) => new Promise((resolve) => {
          if (pc.iceGatheringState === 'complete') resolve();
          pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
          setTimeout(resolve, 3000);
        });
        // The officer's camera and microphone (Chromium's fake devices) out over WHIP.
        const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
        const pub = new RTCPeerConnection();
        const vt = pub.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly' });
        vt.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264'));
        pub.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
        await pub.setLocalDescription(await pub.createOffer());
        await gathered(pub);
        const w = await fetch(`/api/v1/streams/${phone}/app/whip`, {
          method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: pub.localDescription.sdp,
        });
        if (w.status !== 201) return { error: `whip: ${w.status} ${await w.text()}` };
        await pub.setRemoteDescription({ type: 'answer', sdp: await w.text() });
        // The command centre's side over WHEP (it may take a moment to start speaking).
        const pc = new RTCPeerConnection();
        pc.addTransceiver('video', { direction: 'recvonly' });
        pc.addTransceiver('audio', { direction: 'recvonly' });
        const video = document.createElement('video');
        video.muted = true;
        video.autoplay = true;
        document.body.append(video);
        const stream = new MediaStream();
        pc.ontrack = (ev) => {
          stream.addTrack(ev.track);
          video.srcObject = stream;
          video.play().catch(() => {});
        };
        await pc.setLocalDescription(await pc.createOffer());
        await gathered(pc);
        let res;
        for (let i = 0; i < 40; i++) {
          res = await fetch(`/api/v1/calls/${call.id}/whep`, {
            method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
          });
          if (res.status !== 409) break;
          await new Promise((r) => setTimeout(r, 500));
        }
        if (res.status !== 201) return { error: `whep: ${res.status} ${await res.text()}` };
        const answer = await res.text();
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
        window.__call = { pub, pc, video, media };
        return { id: call.id, answer };
      }, [app.token, phone]);
      assert.equal(r.error, undefined, r.error);
      assert.equal(r.id, callId);
      assert.match(r.answer, /H264\/90000/);
      // The command centre's picture plays on the phone.
      await appPage.waitForFunction(() => window.__call.video.videoWidth > 0, null, { timeout: 30_000 });
      const t0 = await appPage.evaluate(() => window.__call.video.currentTime);
      await appPage.waitForFunction((t) => window.__call.video.currentTime > t + 1, t0, { timeout: 20_000 });
    });
    await step('operator-sees-the-officer', async () => {
      await page.waitForFunction(
        (id) => {
          const p = document.querySelector(`[data-test=call-panel][data-unit-id="${id}"]`);
          const v = p?.querySelector('[data-test=call-remote]');
          return p?.getAttribute('data-state') === 'connected' && v?.videoWidth === 640 && !p.querySelector('[data-test=call-rec]').hidden;
        },
        officer.id,
        { timeout: 45_000 },
      );
      const t0 = await page.evaluate((id) => document.querySelector(`[data-test=call-panel][data-unit-id="${id}"] [data-test=call-remote]`).currentTime, officer.id);
      await page.waitForFunction(
        ([id, t]) => document.querySelector(`[data-test=call-panel][data-unit-id="${id}"] [data-test=call-remote]`).currentTime > t + 1,
        [officer.id, t0],
        { timeout: 20_000 },
      );
      await page.screenshot({ path: join(ARTIFACTS, 'call-panel.png') });
      // Both sides record for the call.
      let active = [];
      for (let i = 0; i < 60; i++) {
        active = (await json('/recordings/active', adminH)).body.filter((a) => a.device_id === phone && a.recording_id && a.triggers.includes('dispatch_call'));
        if (active.length === 2) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.deepEqual(active.map((a) => a.channel_id).sort(), ['app', 'console']);
    });
    await step('hang-up', async () => {
      await page.locator(`[data-test=call-panel][data-unit-id="${officer.id}"] [data-test=call-hangup]`).click();
      await page.waitForFunction(
        (id) => document.querySelector(`[data-test=call-panel][data-unit-id="${id}"]`)?.getAttribute('data-state') === 'ended',
        officer.id,
        { timeout: 30_000 },
      );
      const call = (await json(`/calls/${callId}`, adminH)).body;
      assert.equal(call.state, 'ended');
      assert.equal(call.end_reason, 'hangup');
      const ids = call.recordings.filter((r) => r.recording_id).map((r) => [r.channel_id, r.recording_id]);
      assert.equal(ids.length, 2, JSON.stringify(call.recordings));
      for (const [channel, id] of ids) {
        const rec = (await json(`/recordings/${id}`, adminH)).body;
        assert.equal(rec.status, 'closed', `${channel}: ${rec.status}`);
        assert.equal(rec.trigger_kind, 'dispatch_call');
        assert.equal(rec.officer_id, officer.id);
        assert.equal(rec.video_codec, 'h264', channel);
        assert.equal(rec.audio_codec, 'opus', channel);
        assert.ok(rec.segment_count >= 1, `${channel}: ${rec.segment_count} segments`);
        // Played back with the Opus sound as AAC.
        const pl = await (await fetch(`${BASE}/api/v1/recordings/${id}/playlist.m3u8`, { headers: adminH })).text();
        assert.match(pl, /audio=aac/, pl);
        const init = pl.split('\n').find((l) => l.startsWith('#EXT-X-MAP:URI="')).slice(16).split('"')[0];
        const bytes = Buffer.from(await (await fetch(`${BASE}/api/v1/recordings/${id}/${init}`)).arrayBuffer());
        assert.ok(bytes.includes(Buffer.from('mp4a')) && bytes.includes(Buffer.from('avc1')), `${channel}: AAC and H.264 in ${init}`);
      }
      const answered = (await json(`/audit?action=call.answer&target_id=${officer.id}`, adminH)).body.items;
      assert.ok(answered.some((e) => e.details?.call_id === callId && e.username === 'app1'), JSON.stringify(answered));
      await appPage.evaluate(() => {
        window.__call.pub.close();
        window.__call.pc.close();
        for (const t of window.__call.media.getTracks()) t.stop();
      });
      await appPage.close();
      await page.locator(`[data-test=call-panel][data-unit-id="${officer.id}"] [data-test=call-hangup]`).click();
      await page.locator(`[data-test=call-panel][data-unit-id="${officer.id}"]`).waitFor({ state: 'detached' });
    });
  });
});


// End-to-end test of live video in the browser: headless Chromium (an independent WebRTC stack)
// opens a simulated body camera's picture from the dispatch screen over WHEP and must show frames
// advancing at the camera's size; closing the player ends the session, and the stream is hung up
// after the grace period.
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
      await row.scrollIntoViewIfNeeded();
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
});

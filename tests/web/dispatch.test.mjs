// End-to-end test of the 调度指挥 (dispatch) screen, driven with playwright-core and the system chromium.
//
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_OPERATOR_PASSWORD=... node --test dispatch.test.mjs
//
// SHOUHU_URL is the base URL of a running `shouhu demo` (it serves the built web/dist at `/` and runs
// the position simulator that moves the demo vehicles and officers). The operator account
// (SHOUHU_OPERATOR_USER, default `operator`) needs dispatch.view and dispatch.command and must not
// have must_change_password set. Its password defaults to SHOUHU_ADMIN_PASSWORD (the demo gives every
// demo account the same one).
// Optional: SHOUHU_CHROMIUM (default /usr/bin/chromium). Screenshots go to ./artifacts/.
// Without SHOUHU_URL the suite is skipped.

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
const TIMEOUT = 20_000;
/** The simulator moves units every few seconds; give it time. */
const MOVE_TIMEOUT = 45_000;

// Under `make test` (SHOUHU_REQUIRE=1) a missing precondition is a failure, never a skip.
const skipReason = !BASE
  ? 'SHOUHU_URL is not set (point it at a running shouhu demo server)'
  : !PASSWORD
    ? 'SHOUHU_OPERATOR_PASSWORD (or SHOUHU_ADMIN_PASSWORD) is not set'
    : !existsSync(CHROMIUM)
      ? `chromium not found at ${CHROMIUM}`
      : false;
if (skipReason && process.env.SHOUHU_REQUIRE) {
  throw new Error(`cannot run the dispatch web suite: ${skipReason}`);
}
const skip = skipReason;

describe('dispatch screen', { skip }, () => {
  let context;
  let page;
  let userDataDir;
  const pageErrors = [];

  async function shot(name) {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  }

  /** Run a step; on failure save a screenshot named after it before rethrowing. */
  async function step(name, fn) {
    try {
      await fn();
    } catch (e) {
      await shot(`FAILED-dispatch-${name}`).catch(() => {});
      throw e;
    }
  }

  /** Positions of the units the page knows: id → "lat,lon,time" (units with a fix only). */
  async function positions() {
    return page.evaluate(() => {
      const out = {};
      for (const [id, u] of window.__dispatch?.units ?? []) {
        if (typeof u.lat === 'number' && typeof u.lon === 'number') out[id] = `${u.lat},${u.lon},${u.time}`;
      }
      return out;
    });
  }

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    userDataDir = await mkdtemp(join(tmpdir(), 'shouhu-e2e-dispatch-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--autoplay-policy=no-user-gesture-required',
      ],
      viewport: { width: 1366, height: 768 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
    });
    context.setDefaultTimeout(TIMEOUT);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => {
      pageErrors.push(err.message);
      console.error('[page error]', err.message);
    });
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  });

  it('logs in as the operator and finds 调度指挥 in the menu', async () => {
    await step('login', async () => {
      await page.goto(`${BASE}/`);
      await page.getByTestId('login-username').fill(USER);
      await page.getByTestId('login-password').fill(PASSWORD);
      await page.getByTestId('login-submit').click();
      await page.getByTestId('user-menu').waitFor();
      const nav = page.getByTestId('nav-dispatch');
      await nav.waitFor();
      assert.ok(((await nav.textContent()) ?? '').includes('调度指挥'));
    });
  });

  it('opens #/dispatch, connects and receives units', async () => {
    await step('connect', async () => {
      await page.goto(`${BASE}/#/dispatch`);
      const canvas = page.getByTestId('dispatch-map');
      await canvas.waitFor();
      const box = await canvas.boundingBox();
      assert.ok(box && box.width > 300 && box.height > 200, `the map has a usable size (${JSON.stringify(box)})`);
      await page.waitForFunction(() => document.querySelector('[data-testid=ws-status]')?.getAttribute('data-state') === 'open');
      assert.equal((await page.getByTestId('ws-status').textContent())?.trim(), '已连接');
      await page.waitForFunction(() => Number(document.querySelector('[data-testid=unit-count]')?.textContent) > 0);
      const known = await page.evaluate(() => window.__dispatch?.units.size ?? 0);
      assert.ok(known > 0, 'window.__dispatch.units holds the units');
      // The subscription the page sent: WGS-84 with the viewport bbox.
      const sub = await page.evaluate(() => window.__dispatch?.subscription);
      assert.equal(sub?.type, 'subscribe');
      assert.equal(sub?.crs, 'wgs84');
      assert.ok(Array.isArray(sub?.bbox) && sub.bbox.length === 4 && sub.bbox[0] < sub.bbox[2] && sub.bbox[1] < sub.bbox[3], 'bbox is [min_lon, min_lat, max_lon, max_lat]');
      // The counts panel adds up to what is known.
      await page.waitForFunction(
        () => document.querySelector('[data-testid=unit-counts] tr[data-kind=all] td[data-link=all]')?.textContent === String(window.__dispatch?.units.size),
      );
      // Unit list rows carry their ids.
      await page.locator('[data-testid=unit-list] [data-unit-id]').first().waitFor();
      await shot('dispatch-01-connected');
    });
  });

  it('sees a unit move (the demo simulator)', async () => {
    await step('movement', async () => {
      const before = await positions();
      assert.ok(Object.keys(before).length > 0, 'some units have a position fix');
      await page.waitForFunction(
        (prev) => {
          for (const [id, u] of window.__dispatch?.units ?? []) {
            const p = prev[id];
            if (p === undefined || typeof u.lat !== 'number' || typeof u.lon !== 'number') continue;
            const [lat, lon] = p.split(',').map(Number);
            if (lat !== u.lat || lon !== u.lon) return true;
          }
          return false;
        },
        before,
        { timeout: MOVE_TIMEOUT, polling: 250 },
      );
    });
  });

  it('selects a unit from the list and shows its details', async () => {
    await step('select', async () => {
      const row = page.locator('[data-testid=unit-list] [data-unit-id]').first();
      const id = await row.getAttribute('data-unit-id');
      assert.ok(id, 'the row has data-unit-id');
      const name = ((await row.locator('.unit-name').textContent()) ?? '').trim();
      await page.locator(`[data-testid=unit-list] [data-unit-id="${id}"]`).click();
      const details = page.getByTestId('unit-details');
      await details.waitFor({ state: 'visible' });
      assert.equal(await details.getAttribute('data-unit-id'), id);
      assert.equal(((await page.getByTestId('unit-detail-name').textContent()) ?? '').trim(), name);
      assert.equal(await page.evaluate(() => window.__dispatch?.selectedId), id);
      // Time in Asia/Shanghai as yyyy-MM-dd HH:mm:ss (or — before the first fix).
      const time = ((await details.locator('dd[data-field=time]').textContent()) ?? '').trim();
      assert.match(time, /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}|—)$/);
      for (const f of ['kind', 'link', 'state', 'source']) {
        assert.ok(((await details.locator(`dd[data-field=${f}]`).textContent()) ?? '').trim().length > 0, `detail ${f} is shown`);
      }
      // The operator holds dispatch.command: the action buttons are there.
      for (const t of ['unit-arrive', 'unit-clear', 'unit-locate', 'unit-track']) await page.getByTestId(t).waitFor();
      await shot('dispatch-02-selected');
    });
  });

  it('selects a unit by clicking it on the map', async () => {
    await step('map-click', async () => {
      await page.getByTestId('unit-details-close').click();
      await page.waitForFunction(() => window.__dispatch?.selectedId === null);
      // Screen position of a unit with a fix inside the canvas.
      const target = await page.evaluate(() => {
        const d = window.__dispatch;
        const v = d.map.view;
        for (const u of d.units.values()) {
          if (typeof u.lat !== 'number' || typeof u.lon !== 'number') continue;
          const [x, y] = v.toScreen(u.lon, u.lat);
          if (x > 60 && y > 60 && x < v.width - 60 && y < v.height - 60) return { id: u.id, x, y };
        }
        return null;
      });
      assert.ok(target, 'a unit is drawn inside the map');
      await page.getByTestId('dispatch-map').click({ position: { x: target.x, y: target.y } });
      await page.waitForFunction(() => window.__dispatch?.selectedId !== null);
      await page.getByTestId('unit-details').waitFor({ state: 'visible' });
    });
  });

  it('loads the selected unit\'s track', async () => {
    await step('track', async () => {
      await page.getByTestId('unit-track').click();
      // Either a polyline (track-info) or a notice that the hour has no track.
      await page.waitForFunction(
        () =>
          !document.querySelector('[data-testid=track-info]')?.hidden ||
          [...document.querySelectorAll('[data-testid=toast]')].some((t) => /轨迹/.test(t.textContent ?? '')),
      );
      const failed = await page.locator('[data-testid=toast]', { hasText: '加载轨迹失败' }).count();
      assert.equal(failed, 0, 'the track request succeeds');
    });
  });

  it('re-subscribes when a kind filter changes', async () => {
    await step('filter', async () => {
      const hasVehicles = await page.evaluate(() => [...(window.__dispatch?.units.values() ?? [])].some((u) => u.kind === 'vehicle'));
      await page.getByTestId('filter-kind-vehicle').uncheck();
      await page.waitForFunction(() => {
        const s = window.__dispatch?.subscription;
        return Array.isArray(s?.kinds) && !s.kinds.includes('vehicle');
      });
      if (hasVehicles) {
        await page.waitForFunction(() => ![...(window.__dispatch?.units.values() ?? [])].some((u) => u.kind === 'vehicle'));
      }
      await page.getByTestId('filter-kind-vehicle').check();
      await page.waitForFunction(() => window.__dispatch?.subscription && window.__dispatch.subscription.kinds === undefined);
      await page.waitForFunction(() => Number(document.querySelector('[data-testid=unit-count]')?.textContent) > 0);
    });
  });

  it('opens the SOS panel', async () => {
    await step('sos', async () => {
      await page.getByTestId('tab-sos').click();
      const panel = page.getByTestId('sos-panel');
      await panel.waitFor({ state: 'visible' });
      assert.ok(await page.getByTestId('sos-load-error').isHidden(), 'GET /sos?status=open succeeded');
      const items = panel.locator('[data-sos-id]');
      const n = await items.count();
      const badge = Number(((await page.getByTestId('sos-count').textContent()) ?? '0').trim());
      assert.equal(n, badge, 'the tab count matches the list');
      for (let i = 0; i < n; i++) assert.ok(await items.nth(i).getAttribute('data-sos-id'));
      await shot('dispatch-03-sos');
    });
  });

  it('finds the nearest units to a point picked on the map', async () => {
    await step('nearest', async () => {
      const canvas = page.getByTestId('dispatch-map');
      const box = await canvas.boundingBox();
      await canvas.click({ button: 'right', position: { x: box.width / 2, y: box.height / 2 } });
      const panel = page.getByTestId('nearest-panel');
      await panel.waitFor({ state: 'visible' });
      await page.waitForFunction(() => {
        const t = document.querySelector('[data-testid=nearest-info]')?.textContent ?? '';
        return t !== '' && !t.startsWith('正在查找');
      });
      const info = ((await page.getByTestId('nearest-info').textContent()) ?? '').trim();
      assert.ok(!info.startsWith('查找失败'), `GET /units/nearest succeeded (${info})`);
      const rows = page.locator('[data-testid=nearest-list] [data-unit-id]');
      const n = await rows.count();
      assert.ok(n <= 5, 'at most k=5 units');
      if (n > 0) assert.match(((await rows.first().getByTestId('nearest-distance').textContent()) ?? '').trim(), /^\d+(\.\d+)? (米|公里)$/);
      await shot('dispatch-04-nearest');
    });
  });

  it('closes the socket when the route is left', async () => {
    await step('leave', async () => {
      await page.getByTestId('nav-enterprises').click();
      await page.waitForFunction(() => window.location.hash.startsWith('#/enterprises'));
      await page.waitForFunction(() => window.__dispatch === undefined);
      assert.deepEqual(pageErrors, [], 'no uncaught errors on the page');
    });
  });
});

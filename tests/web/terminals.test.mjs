// 终端绑定 end to end: the demo's replaced JT/T 808 terminal (沪A·E1048) is refused while the
// vehicle is bound to its old terminal; a device manager allows exactly its attempt on the page, and
// the vehicle goes live over real JT/T 808. Run by run-e2e.sh against `shouhu demo`.
//
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_ADMIN_PASSWORD=... node --test terminals.test.mjs

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
const USER = process.env.SHOUHU_ADMIN_USER ?? 'admin';
const PASSWORD = process.env.SHOUHU_ADMIN_PASSWORD ?? '';
const CHROMIUM = process.env.SHOUHU_CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT = 20_000;

const skipReason = !BASE
  ? 'SHOUHU_URL is not set (point it at a running shouhu demo)'
  : !PASSWORD
    ? 'SHOUHU_ADMIN_PASSWORD is not set (the demo password)'
    : !existsSync(CHROMIUM)
      ? `chromium not found at ${CHROMIUM}`
      : false;
if (skipReason && process.env.SHOUHU_REQUIRE) {
  throw new Error(`cannot run the web suite: ${skipReason}`);
}

const PLATE = '沪A·E1048';

async function apiLogin(username) {
  const r = await fetch(`${BASE}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(r.status, 200, `login ${username}`);
  return (await r.json()).token;
}

async function apiGet(token, path) {
  const r = await fetch(`${BASE}/api/v1${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Poll `fn` until it returns a truthy value or `ms` pass. */
async function until(what, fn, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe('re-binding a replaced vehicle terminal', { skip: skipReason }, () => {
  let context;
  let page;
  let userDataDir;

  async function shot(name) {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  async function step(name, fn) {
    try {
      await fn();
    } catch (e) {
      await shot(`FAILED-terminals-${name}`).catch(() => {});
      throw e;
    }
  }

  async function login(username) {
    await context.clearCookies();
    await page.goto(`${BASE}/#/login`);
    await page.getByTestId('login-username').waitFor();
    await page.getByTestId('login-username').fill(username);
    await page.getByTestId('login-password').fill(PASSWORD);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('login-username').waitFor({ state: 'detached' });
  }

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    userDataDir = await mkdtemp(join(tmpdir(), 'shouhu-e2e-term-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1366, height: 900 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
    });
    context.setDefaultTimeout(TIMEOUT);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => console.error('[page error]', err.message));
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  });

  it('shows the page to device managers only', async () => {
    await step('operator', async () => {
      await login('operator');
      await page.getByTestId('nav-dispatch').waitFor();
      assert.equal(await page.getByTestId('nav-terminal-rebinds').count(), 0, 'no 终端绑定 for an operator');
    });
  });

  it('lists the refused terminal, allows its attempt, and the vehicle goes live', async () => {
    const op = await apiLogin('operator');
    const unitOf = async () => {
      const r = await apiGet(op, `/units?kind=vehicle&q=${encodeURIComponent(PLATE)}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.items.length, 1, `one vehicle ${PLATE}`);
      return r.body.items[0];
    };
    await step('refused', async () => {
      // Refused: the vehicle shows no fix from the new terminal.
      const u = await unitOf();
      assert.notEqual(u.link, 'online', 'the replaced terminal is not let in');
      await login(USER);
      await page.getByTestId('nav-terminal-rebinds').click();
      await page.waitForURL(/#\/terminal-rebinds/);
      // The simulated terminal retries every 2 s: its attempt is listed (reload until it is).
      const row = page.getByTestId('rebind-row').filter({ hasText: PLATE });
      await until('the refused attempt on the page', async () => {
        if ((await row.count()) > 0) return true;
        await page.getByTestId('rebinds-reload').click();
        await page.waitForFunction(() => !document.querySelector('.list-box.loading-overlay'));
        return false;
      });
      const text = await row.first().textContent();
      assert.match(text, /127\.0\.0\.1/, 'the attempt\'s source address is shown');
      assert.match(text, /已拒绝/);
      await shot('terminals-01-refused');
    });
    await step('release', async () => {
      const row = page.getByTestId('rebind-row').filter({ hasText: PLATE }).first();
      await row.getByTestId('rebind-release').click();
      await page.getByTestId('confirm-ok').click();
      // The terminal's next registration goes through: its attempts leave the list.
      await until('the attempt to leave the list', async () => {
        await page.getByTestId('rebinds-reload').click();
        await page.waitForFunction(() => !document.querySelector('.list-box.loading-overlay'));
        return (await page.getByTestId('rebind-row').filter({ hasText: PLATE }).count()) === 0;
      });
      await shot('terminals-02-released');
    });
    await step('live', async () => {
      const u = await until('the vehicle online with a fix', async () => {
        const x = await unitOf();
        return x.link === 'online' && x.lat !== null ? x : null;
      });
      assert.ok(u.lat > 30 && u.lat < 32.5, `a Shanghai fix: ${u.lat}`);
      // The release is in the audit log with the attempt it allowed.
      await page.goto(`${BASE}/#/audit?action=vehicle.rebind`);
      const rows = page.getByTestId('audit-row');
      await rows.first().waitFor();
      assert.ok((await rows.count()) >= 1, 'vehicle.rebind audited');
    });
  });
});

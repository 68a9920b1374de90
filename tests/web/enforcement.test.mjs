// A squad leader's day in the office web UI, driven with playwright-core and the system chromium
// against `shouhu demo` (a year of seeded enforcement work): log in, open the workbench, open a
// hazard due this week, report its rectification if needed, record the re-inspection, and see it
// closed (销号) — on the page, in the list, and through the API. Also the open-case rule from the
// browser: another district's brigade head cannot open an open case of Huangpu.
//
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_ADMIN_PASSWORD=... node --test enforcement.test.mjs

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

/** Log in through the API (the demo password is shared); returns a bearer token. */
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

describe("a squad leader's day", { skip: skipReason }, () => {
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
      await shot(`FAILED-enforcement-${name}`).catch(() => {});
      throw e;
    }
  }

  async function login(username) {
    // A fresh session: the session rides on an HttpOnly cookie.
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
    userDataDir = await mkdtemp(join(tmpdir(), 'shouhu-e2e-enf-'));
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

  it('logs in, opens a hazard due this week, records the re-inspection and closes it', async () => {
    let hazardId = '';
    await step('workbench', async () => {
      await login('hp_squad');
      // The squad leader lands on the workbench.
      await page.waitForURL(/#\/workbench/);
      const rows = page.getByTestId('wb-hazard-row');
      await rows.first().waitFor();
      assert.ok((await rows.count()) > 0, 'the seeded year leaves hazards due this week');
      assert.ok(Number(await page.getByTestId('wb-open').locator('.wb-stat-value').textContent()) > 0);
      await shot('enf-01-workbench');
      hazardId = await rows.first().getAttribute('data-id');
      assert.ok(hazardId);
      await rows.first().locator('a.row-link').click();
    });

    await step('hazard', async () => {
      await page.waitForURL(new RegExp(`#/hazards/${hazardId}`));
      await page.getByTestId('hazard-detail').waitFor();
      assert.match(await page.getByTestId('hazard-order-number').textContent(), /应急责改〔\d{4}〕\d+号/);
      // Not yet reported rectified: report it first (the enterprise's report, entered by the squad).
      if (await page.getByTestId('rectify-panel').count()) {
        await page.getByTestId('rectify-submit').click();
        // Client-side validation names the empty field.
        await page.getByText('请填写整改情况').waitFor();
        await page.getByTestId('rectify-note').fill('企业已更换泄爆片并补充培训记录。');
        await page.getByTestId('rectify-submit').click();
        await page.getByTestId('rectify-panel').waitFor({ state: 'detached' });
      }
      await page.getByTestId('reinspect-panel').waitFor();
      assert.match(await page.getByTestId('hazard-status').textContent(), /待复查|整改中/);
      await shot('enf-02-hazard');
    });

    await step('reinspection', async () => {
      // A failed re-inspection shows the new-deadline field; choose "passed" in the end.
      await page.getByTestId('reinspect-result').selectOption('failed');
      assert.ok(await page.getByTestId('reinspect-deadline').isVisible());
      await page.getByTestId('reinspect-result').selectOption('passed');
      assert.ok(!(await page.getByTestId('reinspect-deadline').isVisible()));
      await page.getByTestId('reinspect-note').fill('经现场复查，隐患已整改到位，同意销号。');
      await page.getByTestId('reinspect-submit').click();
      await page.getByTestId('reinspect-panel').waitFor({ state: 'detached' });
      await page.getByTestId('hazard-status').getByText('已销号').waitFor();
      assert.match(await page.getByTestId('hazard-reinspection-number').textContent(), /应急复查〔\d{4}〕\d+号/);
      await shot('enf-03-closed');
    });

    await step('verify', async () => {
      // The server agrees, and the workbench no longer lists it.
      const token = await apiLogin('hp_head');
      const { status, body } = await apiGet(token, `/hazards/${hazardId}`);
      assert.equal(status, 200);
      assert.equal(body.status, 'closed');
      assert.equal(body.reinspection_result, 'passed');
      await page.goto(`${BASE}/#/workbench`);
      await page.getByTestId('wb-hazards').waitFor();
      assert.equal(await page.locator(`[data-testid="wb-hazard-row"][data-id="${hazardId}"]`).count(), 0);
      // The hazard list filtered to closed ones shows it.
      await page.goto(`${BASE}/#/hazards?status=closed&q=`);
      await page.getByTestId('hazard-table').waitFor();
      await page.waitForFunction(() => !document.querySelector('.list-box.loading-overlay'));
      assert.ok((await page.getByTestId('hazard-row').count()) > 0);
    });
  });

  it('keeps an open case of Huangpu from another district, and shows it to Huangpu', async () => {
    await step('confidential', async () => {
      const hp = await apiLogin('hp_head');
      const open = await apiGet(hp, '/cases?status=open');
      const pending = await apiGet(hp, '/cases?status=filing_review');
      const c = open.body.items[0] ?? pending.body.items[0];
      assert.ok(c, 'the demo seeds open Huangpu cases');
      await login('pd_head');
      await page.goto(`${BASE}/#/cases/${c.id}`);
      await page.getByTestId('load-error').waitFor();
      assert.match(await page.getByTestId('load-error').textContent(), /在办案件仅承办单位和总队可见/);
      await login('hp_head');
      await page.goto(`${BASE}/#/cases/${c.id}`);
      await page.getByTestId('case-detail').waitFor();
      assert.equal(await page.getByTestId('case-detail').getAttribute('data-id'), c.id);
      await shot('enf-04-case');
    });
  });

  it('receives and answers a work order from the corps', async () => {
    await step('work-order', async () => {
      const token = await apiLogin('hp_head');
      const inbox = await apiGet(token, '/work-orders?box=inbox&status=open');
      const hp = inbox.body.items.find((o) => o.recipients.some((r) => r.unit_name.includes('黄浦') && r.status === 'dispatched'));
      assert.ok(hp, 'the demo leaves a work order for Huangpu to receive');
      await login('hp_head');
      await page.goto(`${BASE}/#/work-orders`);
      await page.locator(`[data-testid="wo-row"][data-id="${hp.id}"]`).waitFor();
      await page.locator(`[data-testid="wo-row"][data-id="${hp.id}"] a.row-link`).click();
      await page.getByTestId('wo-detail').waitFor();
      await page.getByTestId('wo-receive').click();
      await page.getByTestId('wo-reply-text').waitFor();
      await page.getByTestId('wo-reply-text').fill('已完成辖区企业核查，情况详见回复。');
      await page.getByTestId('wo-reply-submit').click();
      await page.getByTestId('wo-reply-text').waitFor({ state: 'detached' });
      // One session per account: the browser login ended the API session; the API logs in anew.
      const after = await apiGet(await apiLogin('hp_head'), `/work-orders/${hp.id}`);
      const mine = after.body.recipients.find((r) => r.unit_name.includes('黄浦'));
      assert.equal(mine.status, 'replied');
      assert.equal(mine.reply, '已完成辖区企业核查，情况详见回复。');
      await shot('enf-05-work-order');
    });
  });

  it("reviews next month's proposed plan: the squad adds a firm and submits, the head publishes", async () => {
    let planId = '';
    let extra = null;
    await step('plan-lookup', async () => {
      const token = await apiLogin('hp_head');
      const drafts = await apiGet(token, '/plans?status=draft&period_kind=month');
      const plan = drafts.body.items.find((p) => p.generated);
      assert.ok(plan, 'the demo proposes next month’s plan for Huangpu');
      planId = plan.id;
      const detail = await apiGet(token, `/plans/${planId}`);
      const planned = new Set(detail.body.visits.map((v) => v.enterprise_id));
      const ents = await apiGet(token, '/enterprises?status=operating&page_size=100');
      extra = ents.body.items.find((e) => !planned.has(e.id));
      assert.ok(extra, 'an enterprise outside the proposal');
    });
    await step('plan-draft', async () => {
      await login('hp_squad');
      await page.goto(`${BASE}/#/plans?status=draft`);
      await page.locator(`[data-testid="plan-row"][data-id="${planId}"] a.row-link`).click();
      await page.getByTestId('plan-detail').waitFor();
      assert.equal(await page.getByTestId('plan-detail').getAttribute('data-status'), 'draft');
      const rows = page.getByTestId('plan-visit-row');
      const before = await rows.count();
      assert.ok(before > 0, 'the proposal lists firms');
      // Search-as-you-type picker: the firm appears in the suggestions, then it is added.
      await page.getByTestId('plan-visit-enterprise').fill(extra.name);
      await page.locator(`datalist option[value="${extra.name}"]`).waitFor({ state: 'attached' });
      await page.getByTestId('plan-visit-note').fill('群众反映夜间违规作业');
      await page.getByTestId('plan-visit-add').click();
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="plan-visit-row"]').length === n, before + 1);
      await shot('enf-06-plan-draft');
      await page.getByTestId('plan-submit').click();
      await page.locator('[data-testid="plan-detail"][data-status="review"]').waitFor();
    });
    await step('plan-publish', async () => {
      await login('hp_head');
      await page.goto(`${BASE}/#/plans/${planId}`);
      await page.getByTestId('plan-approve').click();
      await page.locator('[data-testid="plan-detail"][data-status="published"]').waitFor();
      const codes = await page.locator('[data-testid="plan-visit-row"] td.mono').allTextContents();
      assert.ok(codes.length > 1 && codes.every((c) => /^JC\d+$/.test(c.trim())), codes.join(','));
      await shot('enf-07-plan-published');
      // The roll-up of the year lists the district's published plans.
      const year = new Date(Date.now() + 8 * 3_600_000).getUTCFullYear();
      await page.goto(`${BASE}/#/plans?tab=rollup&rollup=${year}`);
      await page.getByTestId('rollup-table').waitFor();
      assert.ok((await page.getByTestId('rollup-row').count()) >= 2, 'a district row and the total');
      await shot('enf-08-plan-rollup');
    });
  });
});

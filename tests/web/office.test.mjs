// End-to-end test of the 守护 office web shell, driven with playwright-core and the system chromium.
//
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_ADMIN_USER=admin SHOUHU_ADMIN_PASSWORD=... npm test
//
// SHOUHU_URL is the base URL of a running shouhu server seeded with the demo data (it serves the
// built web/dist at `/`). The admin account must not have must_change_password set.
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
const USER = process.env.SHOUHU_ADMIN_USER ?? 'admin';
const PASSWORD = process.env.SHOUHU_ADMIN_PASSWORD ?? '';
const CHROMIUM = process.env.SHOUHU_CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT = 20_000;

// Under `make test` (SHOUHU_REQUIRE=1) a missing precondition is a failure, never a skip.
const skipReason = !BASE
  ? 'SHOUHU_URL is not set (point it at a running shouhu server with the demo data)'
  : !PASSWORD
    ? 'SHOUHU_ADMIN_PASSWORD is not set'
    : !existsSync(CHROMIUM)
      ? `chromium not found at ${CHROMIUM}`
      : false;
if (skipReason && process.env.SHOUHU_REQUIRE) {
  throw new Error(`cannot run the web suite: ${skipReason}`);
}
const skip = skipReason;

/** Two consecutive CJK characters at each position of `s`, in order, without duplicates. */
function cjkPairs(s) {
  const out = [];
  const chars = Array.from(s);
  for (let i = 0; i + 1 < chars.length; i++) {
    const pair = chars[i] + chars[i + 1];
    if (/^[\u3400-\u9fff]{2}$/u.test(pair) && !out.includes(pair)) out.push(pair);
  }
  return out;
}

describe('office web shell', { skip }, () => {
  let context;
  let page;
  let userDataDir;

  async function shot(name) {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  /** Run a step; on failure save a screenshot named after it before rethrowing. */
  async function step(name, fn) {
    try {
      await fn();
    } catch (e) {
      await shot(`FAILED-${name}`).catch(() => {});
      throw e;
    }
  }

  /** Total count and current page from the pager of the enterprise list. */
  async function pagerInfo() {
    const info = page.getByTestId('pager-info');
    await info.waitFor();
    return {
      total: Number(await info.getAttribute('data-total')),
      page: Number(await info.getAttribute('data-page')),
      pages: Number(await info.getAttribute('data-pages')),
    };
  }

  /** Wait until the enterprise list is idle (no pending load) and return the row locator. */
  async function settledRows() {
    await page.getByTestId('enterprise-table').waitFor();
    await page.waitForFunction(() => !document.querySelector('.list-box.loading-overlay'));
    return page.getByTestId('enterprise-row');
  }

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    userDataDir = await mkdtemp(join(tmpdir(), 'shouhu-e2e-'));
    // A persistent context on a fresh mkdtemp profile: nothing carries over from earlier runs.
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
      ],
      viewport: { width: 1366, height: 768 },
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

  it('shows the login error for a wrong password', async () => {
    await step('login-error', async () => {
      await page.goto(`${BASE}/`);
      await page.getByTestId('login-username').waitFor();
      // The wall-screen checkbox is always offered on the login form.
      assert.ok(await page.getByTestId('login-wall-screen').isVisible());
      await page.getByTestId('login-username').fill(USER);
      await page.getByTestId('login-password').fill(`${PASSWORD}-wrong-${Date.now()}`);
      await page.getByTestId('login-submit').click();
      const err = page.getByTestId('login-error');
      await err.waitFor({ state: 'visible' });
      const msg = (await err.textContent())?.trim() ?? '';
      assert.ok(msg.length > 0, 'the login error shows a message');
      // Still on the login page.
      assert.ok(await page.getByTestId('login-username').isVisible());
      await shot('01-login-error');
    });
  });

  let firstName = '';
  let baseline = { total: 0, page: 1, pages: 1 };

  it('logs in and lands on the enterprise list with rows', async () => {
    await step('login', async () => {
      await page.getByTestId('login-password').fill(PASSWORD);
      await page.getByTestId('login-submit').click();
      await page.getByTestId('user-menu').waitFor();
      await page.getByTestId('nav-enterprises').waitFor();
      const rows = await settledRows();
      await rows.first().waitFor();
      assert.ok((await rows.count()) > 0, 'the enterprise list has rows');
      assert.match(page.url(), /#\/enterprises/);
      baseline = await pagerInfo();
      assert.ok(baseline.total > 0, 'pager reports a total');
      firstName = ((await rows.first().getByTestId('enterprise-name').textContent()) ?? '').trim();
      assert.ok(firstName, 'first row has a name');
      await shot('02-enterprise-list');
    });
  });

  it('searching a 2-character Chinese substring narrows the list', async () => {
    await step('search', async () => {
      const pairs = cjkPairs(firstName);
      assert.ok(pairs.length > 0, `first row name "${firstName}" has two consecutive Chinese characters`);
      let narrowed = null;
      for (const pair of pairs) {
        await page.getByTestId('search-input').fill(pair);
        await page.getByTestId('search-submit').click();
        await page.waitForFunction((q) => window.location.hash.includes(`q=${encodeURIComponent(q)}`), pair);
        const rows = await settledRows();
        await rows.first().waitFor();
        const info = await pagerInfo();
        assert.ok(info.total >= 1 && info.total <= baseline.total, `search "${pair}" returns a subset`);
        const texts = await rows.allTextContents();
        for (const t of texts) assert.ok(t.includes(pair), `row "${t.slice(0, 60)}" contains "${pair}"`);
        if (info.total < baseline.total) {
          narrowed = pair;
          break;
        }
      }
      assert.ok(narrowed, `one of ${JSON.stringify(pairs)} from "${firstName}" narrows the list below ${baseline.total}`);
      await shot('03-search');
      // Clear the search again.
      await page.getByTestId('search-input').fill('');
      await page.getByTestId('search-submit').click();
      await page.waitForFunction(() => !window.location.hash.includes('q='));
      await settledRows();
      assert.equal((await pagerInfo()).total, baseline.total);
    });
  });

  it('finds an enterprise by its principal phone: the full number or its last four digits', async () => {
    await step('phone-filter', async () => {
      const first = (await settledRows()).first();
      const id = await first.getAttribute('data-id');
      const name = ((await first.getByTestId('enterprise-name').textContent()) ?? '').trim();
      const phone = await page.evaluate(async (eid) => {
        const r = await fetch(`/api/v1/enterprises/${encodeURIComponent(eid)}`);
        return (await r.json()).principal_phone;
      }, id);
      assert.match(phone, /^\d{11}$/, `the demo enterprise ${name} has a mobile number`);
      const digits = phone.replace(/\D/g, '');
      // The number as people write it, then its last four digits.
      for (const [q, exact] of [[`${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`, true], [digits.slice(-4), false]]) {
        await page.getByTestId('filter-phone').fill(q);
        await page.getByTestId('search-submit').click();
        await page.waitForFunction((v) => window.location.hash.includes(`phone=${encodeURIComponent(v)}`), q);
        const rows = await settledRows();
        await rows.first().waitFor();
        const ids = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
        assert.ok(ids.includes(id), `searching "${q}" lists ${name}`);
        if (exact) assert.equal((await pagerInfo()).total, 1, `the full number ${q} is one enterprise's`);
      }
      // Any other part of a number cannot be searched (it is sealed): the page says what to type.
      await page.getByTestId('filter-phone').fill(digits.slice(3, 6));
      await page.getByTestId('search-submit').click();
      await page.getByText('负责人电话请输入完整号码或后四位').first().waitFor();
      await page.waitForFunction(() => !window.location.hash.includes('phone='));
      await shot('03b-phone-filter');
      await page.getByTestId('search-reset').click();
      await page.waitForFunction(() => !window.location.hash.includes('phone='));
      await settledRows();
      assert.equal((await pagerInfo()).total, baseline.total);
    });
  });

  it('pages to page 2', async () => {
    await step('paging', async () => {
      let info = await pagerInfo();
      if (info.pages < 2) {
        // Fewer rows than one page: use the smallest page size offered.
        await page.getByTestId('pager-size').selectOption('10');
        await page.waitForFunction(() => document.querySelector('[data-testid=pager-info]')?.getAttribute('data-pages') !== null);
        await settledRows();
        info = await pagerInfo();
      }
      assert.ok(info.pages >= 2, `demo data has more than one page of enterprises (total ${info.total})`);
      const rows = await settledRows();
      const firstIdPage1 = await rows.first().getAttribute('data-id');
      await page.getByTestId('pager-next').click();
      await page.waitForFunction(() => document.querySelector('[data-testid=pager-info]')?.getAttribute('data-page') === '2');
      const rows2 = await settledRows();
      await rows2.first().waitFor();
      assert.ok((await rows2.count()) > 0, 'page 2 has rows');
      const firstIdPage2 = await rows2.first().getAttribute('data-id');
      assert.notEqual(firstIdPage2, firstIdPage1, 'page 2 shows other enterprises than page 1');
      assert.match(page.url(), /page=2/);
      await shot('04-page-2');
    });
  });

  it('opens a row and shows the detail', async () => {
    await step('detail', async () => {
      const rows = await settledRows();
      const row = rows.first();
      const id = await row.getAttribute('data-id');
      const name = ((await row.getByTestId('enterprise-name').textContent()) ?? '').trim();
      await row.locator('td').nth(1).click();
      const detail = page.getByTestId('enterprise-detail');
      await detail.waitFor();
      assert.equal(await detail.getAttribute('data-id'), id);
      assert.equal(await page.getByTestId('ent-name').inputValue(), name);
      const uscc = await page.getByTestId('ent-uscc').inputValue();
      assert.equal(uscc.length, 18, 'detail shows the 18-character USCC');
      await page.getByTestId('enterprise-meta').waitFor();
      await shot('05-enterprise-detail');
    });
  });

  it('renders the browsable API documentation', async () => {
    await step('api-docs', async () => {
      const docs = await context.newPage();
      try {
        // Swagger UI renders the operations of /api/v1/openapi.json in a virtual list (only
        // those on screen are in the page): the deep link to a tag scrolls to it.
        await docs.goto(`${BASE}/api-docs/#/enterprises`);
        await docs.locator('.opblock-summary-path', { hasText: '/api/v1/enterprises' }).first().waitFor({ timeout: TIMEOUT });
        const n = await docs.evaluate(() => window.ui.specSelectors.specJson().get('paths').size);
        assert.ok(n >= 20, `expected the API's operations, found ${n}`);
        await docs.screenshot({ path: join(ARTIFACTS, '07-api-docs.png') });
      } finally {
        await docs.close();
      }
    });
  });

  it('imports officers from a CSV file, showing the progress, and lists them', async () => {
    await step('import', async () => {
      await page.goto(`${BASE}/#/officers`);
      await page.getByTestId('import-button').waitFor();
      const before = (await pagerInfo()).total;
      // Record every text the import report shows, from the first one on.
      await page.evaluate(() => {
        window.__importTexts = [];
        new MutationObserver(() => {
          const t = document.querySelector('[data-testid=import-report]')?.textContent ?? '';
          if (t && window.__importTexts.at(-1) !== t) window.__importTexts.push(t);
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      const n = 300;
      const stamp = Date.now().toString(36).toUpperCase();
      let csv = '姓名,执法证号,所属单位,电话\n';
      // The first officer has a phone: sealed on import, found by its number and last four digits.
      const phone = `13${String(Date.now() % 1e9).padStart(9, '0')}`;
      for (let i = 0; i < n; i++) csv += `导入测试${i},IMP-${stamp}-${i},310101,${i === 0 ? phone : ''}\n`;
      await page.getByTestId('import-file').setInputFiles({ name: '执法人员.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
      await page.getByTestId('import-report').filter({ hasText: `已导入 ${n} 条执法人员` }).waitFor();
      const texts = await page.evaluate(() => window.__importTexts);
      assert.ok(texts.some((t) => t.includes('正在导入')), `a progress state was shown: ${JSON.stringify(texts)}`);
      await page.waitForFunction((want) => document.querySelector('[data-testid=pager-info]')?.getAttribute('data-total') === String(want), before + n);
      await shot('08-officer-import');
      for (const q of [phone, phone.slice(-4)]) {
        await page.getByTestId('search-input').fill(q);
        await page.getByTestId('search-submit').click();
        await page.getByTestId('officer-row').filter({ hasText: `IMP-${stamp}-0` }).waitFor();
        const texts = await page.getByTestId('officer-row').allTextContents();
        assert.ok(texts.some((t) => t.includes(phone)), `searching "${q}" lists the imported officer with its phone`);
      }
      await page.getByTestId('search-input').fill('');
      await page.getByTestId('search-submit').click();
    });
  });

  it('logs out and returns to login', async () => {
    await step('logout', async () => {
      await page.getByTestId('logout').click();
      await page.getByTestId('login-username').waitFor();
      await page.getByTestId('login-submit').waitFor();
      // The session is gone: a protected page sends us back to login.
      await page.goto(`${BASE}/#/enterprises`);
      await page.getByTestId('login-username').waitFor();
      await shot('06-logged-out');
    });
  });
});

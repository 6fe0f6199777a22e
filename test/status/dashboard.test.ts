/**
 * The dashboard in a real headless Chromium against the StatusServer fed by the fake view:
 * live progress moves the bar, finished files land in the recent list, text is escaped.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startStatus, type Started } from './helpers.js';
import { waitInPage, PAGE_WAIT_MS } from '../helpers/page.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: run scripts/test-deps.sh as root (apt-get install chromium)`;

async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** A page-side expression (tsconfig has no DOM lib, so page code is passed as a string). */
function barAt(selector: string, value: number): string {
  return `document.querySelector(${JSON.stringify(selector)})?.value === ${value}`;
}

async function openDashboard(browser: Browser, s: Started, query = ''): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(PAGE_WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Only our loopback server may be contacted.
  await page.route('**/*', (route) => (route.request().url().startsWith(s.base) ? route.continue() : route.abort()));
  await page.goto(`${s.base}/${query}`);
  await page.waitForSelector('#conn[data-state="open"]', { timeout: PAGE_WAIT_MS });
  assert.deepEqual(errors, []);
  return page;
}

describe('dashboard page in headless Chromium', { skip }, () => {
  test('progress events move the bar to 100 %, then the file shows in the recent list', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-dash-'));
    const s = await startStatus({ sse: { progressIntervalMs: 20 } });
    const browser = await launch();
    t.after(async () => {
      await browser.close();
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    s.view.addPeer({ name: 'playback-1', addresses: ['127.0.0.1'], port: 7770 });
    const page = await openDashboard(browser, s);
    assert.equal(await page.textContent('#agent-name'), 'fake-agent');
    await page.waitForSelector('#health[data-ok="true"]');
    assert.equal(await page.getAttribute('#peers-body tr[data-peer="playback-1"]', 'data-state'), 'up');

    const job = s.view.queueJob('/show/out/hero.mov', 'playback-1', { size: 1_000_000, target: 'takes/hero.mov' });
    s.view.start(job.id);
    const bar = `#active-body tr[data-job-id="${job.id}"] progress.bar`;
    await page.waitForSelector(bar);
    s.view.progress(job.id, 250_000, 500_000);
    await waitInPage(page, barAt(bar, 25));
    assert.equal(await page.textContent(`#active-body tr[data-job-id="${job.id}"] .eta`), '0:02');
    for (let b = 300_000; b <= 1_000_000; b += 100_000) {
      s.view.progress(job.id, b);
      await new Promise((r) => setTimeout(r, 25));
    }
    await waitInPage(page, barAt(bar, 100));
    assert.equal(await page.textContent(`#active-body tr[data-job-id="${job.id}"] .pct`), '100.0 %');

    s.view.finish(job.id);
    const recent = `#recent-list li[data-job-id="${job.id}"][data-state="done"] .file`;
    await page.waitForSelector(recent);
    assert.equal(await page.textContent(recent), 'takes/hero.mov');
    assert.equal(await page.$(bar), null, 'a finished job leaves the active table');

    s.view.receive({ file: 'incoming/clip.mov', from: 'render-2', size: 2048 });
    await page.waitForSelector('#received-list li .file');
    assert.equal(await page.textContent('#received-list li .file'), 'incoming/clip.mov');

    const failed = s.view.queueJob('/show/out/broken.mov', 'playback-1', { size: 10 });
    s.view.fail(failed.id, 'peer refused the connection');
    await page.waitForSelector(`#recent-list li[data-job-id="${failed.id}"][data-state="failed"] .error`);
    assert.equal(await page.textContent(`#recent-list li[data-job-id="${failed.id}"] .error`), 'peer refused the connection');
    await page.waitForSelector('#failures-list li .reason');
    assert.equal(await page.textContent('#failures-list li .reason'), 'CONNECT_FAILED');

    s.view.setPeerState('playback-1', 'unreachable');
    await page.waitForSelector('#peers-body tr[data-peer="playback-1"][data-state="unreachable"]');

    const shot = path.join(dir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = await readFile(shot);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(png.length > 10_000, `screenshot suspiciously small: ${png.length} bytes`);
    assert.ok(png.readUInt32BE(16) >= 1000, 'PNG width should be the viewport width');
  });

  test('untrusted names are shown as text, never parsed as HTML; the token is passed on', async (t) => {
    const s = await startStatus({ token: 'tok en&x' });
    const browser = await launch();
    t.after(async () => {
      await browser.close();
      await s.server.stop();
    });
    const evil = '<img src=x onerror="window.__pwned=1">.mov';
    s.view.receive({ file: evil, from: '<b>bold</b>' });
    const page = await openDashboard(browser, s, `?token=${encodeURIComponent('tok en&x')}`);
    await page.waitForSelector('#received-list li .file');
    assert.equal(await page.textContent('#received-list li .file'), evil);
    assert.equal(await page.$('#received-list img'), null);
    assert.equal(await page.$('#received-list b'), null);
    // Live events also arrive (the EventSource carried the token).
    s.view.receive({ file: 'second.mov' });
    await waitInPage(page, `document.querySelector('#received-list li .file')?.textContent === 'second.mov'`);
    assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
  });
});

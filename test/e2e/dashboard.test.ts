/**
 * Issue #6 end to end: the dashboard of two real agents in a real headless Chromium while
 * a real 40 MB transfer crosses a throttled loopback link (~2.5 s): the sender's page shows
 * the job's bar moving live to 100 % and then the file in its recent list; the receiver's
 * page shows the file in its received list.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { writeRandomFile } from '../helpers/agents.js';
import { startRunning, writePair, type Running } from './status-helpers.js';
import { waitInPage, PAGE_WAIT_MS } from '../helpers/page.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: run scripts/test-deps.sh as root (apt-get install chromium)`;

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const MB = 1024 * 1024;

async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

async function open(browser: Browser, r: Running): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(PAGE_WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Only the agent's own loopback server may be contacted.
  await page.route('**/*', (route) => (route.request().url().startsWith(r.base) ? route.continue() : route.abort()));
  await page.goto(`${r.base}/`);
  await page.waitForSelector('#conn[data-state="open"]', { timeout: PAGE_WAIT_MS });
  return { page, errors };
}

/**
 * Page-side recorder (a string: tsconfig has no DOM lib). Every value a job's progress bar
 * takes is recorded by a MutationObserver (`progress.value` reflects to the `value`
 * attribute), so a bar that is set to 100 and removed in the same task is still seen.
 */
const RECORD_BARS = `(() => {
  window.__bars = {};
  new MutationObserver((list) => {
    for (const m of list) {
      const t = m.target;
      if (m.type === 'attributes' && t.tagName === 'PROGRESS') {
        const id = t.dataset.jobId;
        (window.__bars[id] = window.__bars[id] || []).push(Number(t.getAttribute('value')));
      }
    }
  }).observe(document.getElementById('active-body'), { attributes: true, attributeFilter: ['value'], subtree: true });
})()`;

async function pngCheck(file: string): Promise<void> {
  const png = await fs.readFile(file);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.ok(png.length > 20_000, `screenshot suspiciously small: ${png.length} bytes`);
  assert.equal(png.readUInt32BE(16), 1280, 'PNG width is the viewport width');
}

test('dashboard of real agents: a live bar for a real transfer reaches 100 %, the file shows in the sender\'s recent and the receiver\'s received list', { skip }, async () => {
  const p = await writePair({ throttleBytesPerSec: 16 * MB });
  cleanup.push(() => p.cleanup());
  const b = await startRunning(p.receiverCfg);
  cleanup.push(() => b.stop());
  const a = await startRunning(p.senderCfg);
  cleanup.push(() => a.stop());
  const browser = await launch();
  cleanup.push(() => browser.close());

  const sender = await open(browser, a);
  const receiver = await open(browser, b);
  assert.equal(await sender.page.textContent('#agent-name'), 'render');
  assert.equal(await receiver.page.textContent('#agent-name'), 'playback');
  await sender.page.waitForSelector('#health[data-ok="true"]');
  assert.equal(await sender.page.getAttribute('#peers-body tr[data-peer="playback"]', 'data-peer'), 'playback');
  await sender.page.evaluate(RECORD_BARS);

  const size = 40 * MB;
  const src = path.join(p.root, 'hero.mov');
  await writeRandomFile(src, size);
  await fs.rename(src, path.join(p.outbox, 'hero.mov'));

  const row = '#active-body tr[data-job-id]';
  await sender.page.waitForSelector(row, { timeout: PAGE_WAIT_MS });
  const jobId = (await sender.page.getAttribute(row, 'data-job-id'))!;
  const bar = `#active-body tr[data-job-id="${jobId}"] progress.bar`;
  assert.equal(await sender.page.textContent(`#active-body tr[data-job-id="${jobId}"] .file`), 'hero.mov');
  assert.equal(await sender.page.textContent(`#active-body tr[data-job-id="${jobId}"] .dest`), 'playback/renders');
  // Mid-transfer: a partly filled bar with a rate and an ETA.
  await waitInPage(sender.page, `(() => { const b = document.querySelector(${JSON.stringify(bar)}); return !!b && b.value > 0 && b.value < 100; })()`, 15_000);
  await waitInPage(sender.page, `(document.querySelector(${JSON.stringify(`#active-body tr[data-job-id="${jobId}"] .rate`)})?.textContent || '').endsWith('/s')`, 5000);
  const midShot = path.join(p.root, 'dashboard-mid.png');
  await sender.page.screenshot({ path: midShot, fullPage: true });

  const recent = `#recent-list li[data-job-id="${jobId}"][data-state="done"] .file`;
  await sender.page.waitForSelector(recent, { timeout: PAGE_WAIT_MS });
  assert.equal(await sender.page.textContent(recent), 'hero.mov');
  assert.equal(await sender.page.$(bar), null, 'the finished job left the active table');
  const values = (await sender.page.evaluate(`window.__bars[${JSON.stringify(jobId)}] || []`)) as number[];
  const intermediate = new Set(values.filter((v) => v > 0 && v < 100));
  assert.ok(intermediate.size >= 3, `the bar moved through several values live: ${values.join(', ')}`);
  for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!, `the bar never goes back: ${values.join(', ')}`);
  assert.equal(values.at(-1), 100, `the bar ends at 100: ${values.join(', ')}`);
  // The queue table follows (refreshed from /status shortly after job events).
  await waitInPage(sender.page, `document.querySelector('#queues-body tr[data-destination="playback/renders"] .sending')?.textContent === '0'`, 5000);
  const endShot = path.join(p.root, 'dashboard-end.png');
  await sender.page.screenshot({ path: endShot, fullPage: true });
  await pngCheck(midShot);
  await pngCheck(endShot);

  // The receiver's page got the file live (EventSource), and still lists it after a reload.
  await waitInPage(receiver.page, `[...document.querySelectorAll('#received-list li .file')].some((e) => e.textContent === 'hero.mov')`);
  assert.match((await receiver.page.textContent('#received-list li'))!, /hero\.mov.*in renders.*from render.*41\.9 MB/);
  await receiver.page.reload();
  await receiver.page.waitForSelector('#conn[data-state="open"]');
  await waitInPage(receiver.page, `document.querySelector('#received-list li .file')?.textContent === 'hero.mov'`);
  assert.deepEqual(sender.errors, []);
  assert.deepEqual(receiver.errors, []);
});

/**
 * Issue #11 item 8 in a real headless Chromium: files an outbox will never send (left by
 * include/exclude, or unreadable by the agent's user) are listed on the dashboard with
 * the reason, next to the stuck files.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startRunning, writePair } from './status-helpers.js';
import { waitInPage, PAGE_WAIT_MS } from '../helpers/page.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: run scripts/test-deps.sh as root (apt-get install chromium)`;
const root = process.getuid?.() === 0;

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

test('dashboard: excluded and unreadable outbox files are listed with the reason', { skip }, async () => {
  const p = await writePair({});
  cleanup.push(() => p.cleanup());
  const cfg = JSON.parse(await fs.readFile(p.senderCfg, 'utf8')) as { outboxes: Array<Record<string, unknown>> };
  cfg.outboxes[0]!.exclude = ['*.psd'];
  await fs.writeFile(p.senderCfg, JSON.stringify(cfg));
  await fs.writeFile(path.join(p.outbox, 'layers.psd'), 'left alone');
  if (!root) {
    await fs.writeFile(path.join(p.outbox, 'locked.png'), 'x');
    await fs.chmod(path.join(p.outbox, 'locked.png'), 0o000);
  }
  const a = await startRunning(p.senderCfg);
  cleanup.push(() => a.stop());

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  cleanup.push(() => browser.close());
  const page = await browser.newPage();
  page.setDefaultTimeout(PAGE_WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.route('**/*', (route) => (route.request().url().startsWith(a.base) ? route.continue() : route.abort()));
  await page.goto(`${a.base}/`);
  // The outbox scan is asynchronous: reload until /status carries it.
  const has = (state: string, file: string): string => `[...document.querySelectorAll('#stuck-list li[data-state="${state}"] .file')].some((e) => e.textContent === '${file}')`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await waitInPage(page, has('excluded', 'layers.psd') + (root ? '' : ' && ' + has('unreadable', 'locked.png')), 3000);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${String(err)}; /status outboxes: ${JSON.stringify((await (await fetch(`${a.base}/status`)).json() as { outboxes?: unknown }).outboxes)}`);
      await page.reload();
    }
  }
  const items = await page.evaluate(`[...document.querySelectorAll('#stuck-list li')].map((li) => li.dataset.state + ': ' + li.textContent)`) as string[];
  assert.ok(items.some((t) => /^excluded: layers\.psdnot sent: excluded by include\/exclude$/.test(t)), items.join('\n'));
  if (!root) assert.ok(items.some((t) => /^unreadable: locked\.pngnot sent: unreadable \(EACCES\)./.test(t)), items.join('\n'));
  assert.deepEqual(errors, []);
});

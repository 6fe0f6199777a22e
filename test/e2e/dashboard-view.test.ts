/**
 * Issue #11 items 2, 7 and 13 in a real headless Chromium: the dashboards of two real
 * agents while a transfer is held mid-stream by a fault proxy. The sender's page shows
 * bytes done/total, the queue as "playback/renders", its own row without "last seen
 * never", 24-hour times, the outbox's pending and stuck files with the reason, a dead
 * peer's reason, and the renamed name (CON.png → _CON.png); the receiver's page shows the
 * incoming transfer and its inbox path with free space. Screenshots of both pages are
 * kept (path printed) for a human to look at.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { waitUntil, writeRandomFile } from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';
import { FaultProxy } from '../helpers/proxy.js';
import { startRunning, writePair, type Running } from './status-helpers.js';
import { waitInPage, PAGE_WAIT_MS } from '../helpers/page.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: run scripts/test-deps.sh as root (apt-get install chromium)`;

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const MB = 1024 * 1024;

async function open(browser: Browser, r: Running): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, locale: 'en-US' });
  page.setDefaultTimeout(PAGE_WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.route('**/*', (route) => (route.request().url().startsWith(r.base) ? route.continue() : route.abort()));
  await page.goto(`${r.base}/`);
  await page.waitForSelector('#conn[data-state="open"]', { timeout: PAGE_WAIT_MS });
  return { page, errors };
}

const text = (page: Page, sel: string): Promise<string> => page.evaluate(`document.querySelector(${JSON.stringify(sel)})?.textContent ?? ''`) as Promise<string>;

test('dashboards while a transfer is held: bytes, incoming, folders, stuck files, reasons, renamed names, 24-hour times', { skip }, async () => {
  const deadPort = await reservedPort(); // "stage-left": nothing listens there
  const limits = { limits: { idleTimeoutMs: 300_000, handshakeTimeoutMs: 5000 } };
  const p = await writePair({ senderExtra: { ...limits }, receiverExtra: limits });
  cleanup.push(() => p.cleanup());
  // Connection 0 carries the small files; connection 1 (the big one) is held after 3 MB.
  // Its target is set once the receiver listens (port 0).
  const proxy = await FaultProxy.start({ port: 0 }, (i) => (i === 0 ? {} : { stallAfter: 3 * MB }));
  cleanup.push(() => proxy.close());
  const cfg = JSON.parse(await fs.readFile(p.senderCfg, 'utf8')) as Record<string, unknown> & { peers: Array<Record<string, unknown>>; outboxes: Array<Record<string, unknown>> };
  cfg.peers = [{ name: 'playback', host: '127.0.0.1', port: proxy.port }, { name: 'stage-left', host: '127.0.0.1', port: deadPort }];
  cfg.outboxes.push({ path: 'outbox-stage', to: [{ peer: 'stage-left', inbox: 'renders' }], settleMs: 100 });
  cfg.transfer = { retryInitialMs: 100, retryMaxMs: 1000, connections: 2 };
  await fs.writeFile(p.senderCfg, JSON.stringify(cfg));

  const b = await startRunning(p.receiverCfg);
  cleanup.push(() => b.stop());
  proxy.setTargetPort(b.agent.listenAddress.port);
  const a = await startRunning(p.senderCfg);
  cleanup.push(() => a.stop());
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'] });
  cleanup.push(() => browser.close());

  // A name Windows cannot hold lands renamed; the sender says so.
  await writeRandomFile(path.join(p.outbox, 'CON.png'), 5000);
  await waitUntil(() => existsSync(path.join(p.inbox, '_CON.png')), 30_000, () => 'CON.png landed as _CON.png');
  await waitUntil(() => a.log.records.some((r) => /^sent CON\.png to playback\/renders as _CON\.png/.test(r.msg)), 30_000, () => `sender log: ${a.log.records.map((r) => r.msg).join('\n')}`);
  // A file for a peer that is down: stuck, retried, with the reason.
  await writeRandomFile(path.join(p.senderDir, 'outbox-stage', 'cue-17.png'), 2000);
  // The big one, held mid-stream.
  await writeRandomFile(path.join(p.outbox, 'hero.mov'), 20 * MB);

  const sender = await open(browser, a);
  const receiver = await open(browser, b);
  const activeRow = '#active-body tr[data-job-id]';
  await waitInPage(sender.page, `[...document.querySelectorAll(${JSON.stringify(activeRow)})].some((r) => r.querySelector('.file').textContent === 'hero.mov' && /^[\\d.]+ MB \\/ 21\\.0 MB$/.test(r.querySelector('.bytes').textContent) && r.querySelector('.bytes').textContent !== '0 B / 21.0 MB')`, 60_000);
  await waitInPage(receiver.page, `!!document.querySelector('#incoming-body tr[data-incoming-id] .bytes') && /MB \\/ 21\\.0 MB$/.test(document.querySelector('#incoming-body tr[data-incoming-id] .bytes').textContent)`, 60_000);
  assert.equal(await text(receiver.page, '#incoming-body tr[data-incoming-id] .file'), 'hero.mov');
  assert.equal(await text(receiver.page, '#incoming-body tr[data-incoming-id] .from'), 'render');
  assert.equal(await text(receiver.page, '#incoming-body tr[data-incoming-id] .inbox'), 'renders');

  // Queues by name, self row, dead peer's reason, stuck file, 24-hour times, folders.
  await waitInPage(sender.page, `[...document.querySelectorAll('#queues-body td.name')].some((e) => e.textContent === 'playback/renders')`, 10_000);
  assert.equal(await text(sender.page, '#peers-body tr[data-peer="render"] .seen'), '\u2014');
  await waitInPage(sender.page, `document.querySelector('#peers-body tr[data-peer="stage-left"] .reason')?.textContent === 'connection refused (agent not running?)'`, 30_000);
  await sender.page.reload(); // the stuck list comes with /status
  await sender.page.waitForSelector('#conn[data-state="open"]');
  await waitInPage(sender.page, `[...document.querySelectorAll('#stuck-list li .file')].some((e) => e.textContent === 'cue-17.png')`, 30_000);
  assert.match(await text(sender.page, '#stuck-list li'), /cue-17\.png→ stage-left\/rendersretrying \(\d+ attempts\).*ECONNREFUSED/);
  await waitInPage(sender.page, `document.querySelector('#folders-body tr[data-folder$="outbox-stage"] .stuck')?.textContent === '1'`, 10_000);
  await waitInPage(sender.page, `[...document.querySelectorAll('#recent-list li .file')].some((e) => e.textContent === '_CON.png')`, 10_000);
  assert.match(await text(sender.page, '#recent-list li .when'), /^\d{2}:\d{2}:\d{2}$/);
  await waitInPage(receiver.page, `/ free$/.test(document.querySelector('#folders-body tr[data-folder^="inbox:"] .free')?.textContent || '')`, 10_000);
  assert.equal(await text(receiver.page, '#folders-body tr[data-folder^="inbox:"] .path'), p.inbox);

  const shots = process.env.TDX_SCREENSHOT_DIR ?? p.root;
  await fs.mkdir(shots, { recursive: true });
  await sender.page.screenshot({ path: path.join(shots, 'dashboard-sender.png'), fullPage: true });
  await receiver.page.screenshot({ path: path.join(shots, 'dashboard-receiver.png'), fullPage: true });
  for (const f of ['dashboard-sender.png', 'dashboard-receiver.png']) {
    const png = await fs.readFile(path.join(shots, f));
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    assert.ok(png.length > 20_000, `${f}: ${png.length} bytes`);
  }

  // Released: the incoming row goes away and the file is in the received list.
  proxy.unstall();
  await waitInPage(receiver.page, `[...document.querySelectorAll('#received-list li .file')].some((e) => e.textContent === 'hero.mov')`, 60_000);
  await waitInPage(receiver.page, `document.querySelectorAll('#incoming-body tr[data-incoming-id]').length === 0`, 10_000);
  assert.deepEqual(sender.errors, []);
  assert.deepEqual(receiver.errors, []);
});

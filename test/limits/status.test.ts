/**
 * POST /limits and GET /limits on a real in-process agent's status API: both body forms,
 * the errors, the same access rule as POST /send, and the dashboard's Bandwidth table in
 * headless Chromium.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import { StatusServer } from '../../src/status/server.js';
import { startAgent, tempDir, writeAgentConfig } from '../helpers/agents.js';
import { httpRequest } from '../helpers/http.js';
import { waitInPage, PAGE_WAIT_MS } from '../helpers/page.js';

const CHROMIUM = '/usr/bin/chromium';

let dir = '';
let agent: Agent;
let server: StatusServer;
let base = '';

before(async () => {
  dir = await tempDir('tdx-limits-api-');
  const cfg = await writeAgentConfig({ name: 'limited', dir: path.join(dir, 'a'), port: 0, extra: { transfer: { maxBytesPerSecond: 5_000_000 }, limits: { maxIncomingBytesPerSecond: 7_000_000 } } });
  agent = await startAgent(cfg);
  server = new StatusServer(agent, { host: '127.0.0.1', port: 0, token: null, log: memoryLogger(), version: 'test', defaultMetrics: false });
  base = `http://127.0.0.1:${(await server.start()).port}`;
});
after(async () => {
  await server?.stop();
  await agent?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

const post = (body: string, type = 'application/json', headers: Record<string, string> = {}) =>
  httpRequest(`${base}/limits`, { method: 'POST', headers: { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers }, body });

describe('POST /limits', () => {
  test('the config limits show in GET /limits and /status', async () => {
    const l = (await httpRequest(`${base}/limits`)).json();
    assert.equal(l.outgoing.maxBytesPerSecond, 5_000_000);
    assert.equal(l.incoming.maxBytesPerSecond, 7_000_000);
    assert.equal((await httpRequest(`${base}/status`)).json().limits.outgoing.maxBytesPerSecond, 5_000_000);
  });

  test('JSON and form bodies, agent-wide, per peer (any name, discovered later) and incoming', async () => {
    let r = await post(JSON.stringify({ rate: '160Mbit/s' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().outgoing.maxBytesPerSecond, 20_000_000);
    r = await post('rate=2MB%2Fs&peer=wall-3', 'application/x-www-form-urlencoded');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json().peers.find((p: { name: string }) => p.name === 'wall-3'), { name: 'wall-3', maxBytesPerSecond: 2_000_000, bytesPerSecond: 0, bytesTotal: 0 });
    r = await post(JSON.stringify({ maxBytesPerSecond: 1000, direction: 'incoming' }));
    assert.equal(r.json().incoming.maxBytesPerSecond, 1000);
    r = await post(JSON.stringify({ rate: 'off' }));
    assert.equal(r.json().outgoing.maxBytesPerSecond, 0);
    r = await post(JSON.stringify({ rate: 0, direction: 'incoming' }));
    assert.equal(r.json().incoming.maxBytesPerSecond, 0);
  });

  test('bad input is a 400 that says how to write it; nothing changes', async () => {
    await post(JSON.stringify({ rate: '3MB/s' }));
    const cases: Array<[string, RegExp, string]> = [
      [JSON.stringify({ rate: '20Mb/s' }), /ambiguous/, 'BAD_RATE'],
      [JSON.stringify({ rate: 'fast' }), /20MB\/s/, 'BAD_RATE'],
      [JSON.stringify({ rate: -1 }), /whole number/, 'BAD_RATE'],
      [JSON.stringify({}), /missing `rate`/, 'BAD_REQUEST'],
      [JSON.stringify({ rate: '1MB/s', peer: '../x' }), /not a valid peer name/, 'BAD_REQUEST'],
      [JSON.stringify({ rate: '1MB/s', peer: 'a', direction: 'incoming' }), /agent-wide/, 'BAD_REQUEST'],
      ['{not json', /not a JSON object/, 'BAD_REQUEST'],
    ];
    for (const [body, re, code] of cases) {
      const r = await post(body);
      assert.equal(r.status, 400, body);
      assert.match(r.json().error, re, body);
      assert.equal(r.json().code, code, body);
    }
    assert.equal((await httpRequest(`${base}/limits`)).json().outgoing.maxBytesPerSecond, 3_000_000);
  });

  test('the same access rule as POST /send: a cross-site browser POST is refused', async () => {
    const r = await post(JSON.stringify({ rate: 'off' }), 'application/json', { Origin: 'http://evil.example' });
    assert.equal(r.status, 403);
    const s = await httpRequest(`${base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://evil.example' }, body: '{}' });
    assert.equal(s.status, 403);
    assert.equal((await httpRequest(`${base}/limits`)).json().outgoing.maxBytesPerSecond, 3_000_000);
  });

  test('/metrics has the limits and measured rates', async () => {
    const m = (await httpRequest(`${base}/metrics`)).text;
    assert.match(m, /tdxfer_limit_bytes_per_second\{direction="outgoing",peer=""\} 3000000/);
    assert.match(m, /tdxfer_limit_bytes_per_second\{direction="outgoing",peer="wall-3"\} 2000000/);
    assert.match(m, /tdxfer_rate_bytes_per_second\{direction="incoming",peer=""\} \d/);
  });

  test('the dashboard shows the limits and follows a change', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing` }, async (t) => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] });
    t.after(() => browser.close());
    const page = await browser.newPage();
    page.setDefaultTimeout(PAGE_WAIT_MS);
    await page.route('**/*', (route) => (route.request().url().startsWith(base) ? route.continue() : route.abort()));
    await page.goto(`${base}/`);
    const limitOf = (scope: string) => `document.querySelector('#limits-body tr[data-scope="${scope}"] .limit')?.textContent`;
    await waitInPage(page, `${limitOf('outgoing')} === '3.0 MB/s'`, 20_000);
    assert.equal(await page.evaluate(limitOf('peer:wall-3')), '2.0 MB/s');
    await post(JSON.stringify({ rate: 'off' }));
    await waitInPage(page, `${limitOf('outgoing')} === 'unlimited'`, 20_000);
  });
});

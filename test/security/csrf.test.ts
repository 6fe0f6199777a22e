/**
 * Issue #10 item 1: cross-site request forgery on POST /send, against a real agent process.
 * A web page open on the agent's machine must not be able to queue a file, whatever trick
 * it uses (sandboxed frame -> Origin: null, plain form, text/plain form carrying JSON,
 * fetch no-cors); TouchDesigner's own calls (Python urllib, JSON or form, no Origin) work.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { httpRequest } from '../helpers/http.js';
import { authorizeMutation } from '../../src/status/csrf.js';
import { allJobs, p, runAgent, type RunningAgent } from './util.js';
import { PAGE_WAIT_MS } from '../helpers/page.js';
import { waitUntil } from '../helpers/wait.js';
import { metric } from '../e2e/status-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const run = promisify(execFile);

let agent: RunningAgent;
let secret: string;

before(async () => {
  agent = await runAgent({
    name: 'csrf',
    extra: { peers: [{ name: 'playback', host: '127.0.0.1', port: 9 }] },
  });
  secret = p(agent.dir, 'secret.txt');
  await fs.writeFile(secret, 'the show file an attacker wants');
});
after(() => agent?.stop());

const body = (): string => JSON.stringify({ file: secret, peer: 'playback', inbox: 'renders', as: 'stolen.txt' });
const form = (): string => new URLSearchParams({ file: secret, peer: 'playback', inbox: 'renders', as: 'stolen.txt' }).toString();

describe('CSRF: raw HTTP requests a browser could send are refused', () => {
  const cases: Array<[string, Record<string, string>, () => string, number]> = [
    ['Origin: null (sandboxed frame), JSON', { Origin: 'null', 'Content-Type': 'application/json' }, body, 403],
    ['foreign Origin, JSON', { Origin: 'http://evil.example', 'Content-Type': 'application/json' }, body, 403],
    ['Origin on another port of the same host', { Origin: 'http://127.0.0.1:1', 'Content-Type': 'application/json' }, body, 403],
    ['Sec-Fetch-Site: cross-site', { 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json' }, body, 403],
    ['Sec-Fetch-Site: same-site', { 'Sec-Fetch-Site': 'same-site', 'Content-Type': 'application/json' }, body, 403],
    ['form-encoded from a browser (Mozilla user agent, no Origin)', { 'User-Agent': 'Mozilla/5.0 (X11) Chrome/120', 'Content-Type': 'application/x-www-form-urlencoded' }, form, 415],
    ['text/plain carrying JSON from a browser (Referer)', { Referer: 'http://evil.example/', 'Content-Type': 'text/plain' }, body, 415],
    ['no body type from a browser (Sec-Fetch-Mode)', { 'Sec-Fetch-Mode': 'no-cors' }, body, 415],
  ];
  for (const [name, headers, make, status] of cases) {
    test(name, async () => {
      const r = await httpRequest(`${agent.base}/send`, { method: 'POST', headers, body: make() });
      assert.equal(r.status, status, r.text);
      assert.equal(r.json<{ code: string }>().code, 'CROSS_SITE_REFUSED');
      assert.deepEqual(await allJobs(agent), []);
    });
  }
});

describe('CSRF: a real Chromium page on another site cannot queue a file', () => {
  test('sandboxed iframe auto-submitting a form, plain form, text/plain form, fetch no-cors: all refused', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} missing` }, async (t) => {
    const target = `${agent.base}/send`;
    const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    const jsonName = `{"file":"${secret}","peer":"playback","inbox":"renders","x":"`;
    const fields = `<input name="file" value="${esc(secret)}"><input name="peer" value="playback"><input name="inbox" value="renders">`;
    const onLoad = (js: string): string => `<script>addEventListener('load', () => { ${js} })</script>`;
    // One attack per page, so each answer is attributed to its trick.
    const attacks: Record<string, string> = {
      'sandboxed iframe (Origin: null)': `<iframe sandbox="allow-forms allow-scripts" srcdoc="${esc(`<form method="POST" action="${target}">${fields}</form>${onLoad('document.forms[0].submit()')}`)}"></iframe>`,
      'form, urlencoded': `<iframe name="f"></iframe><form method="POST" action="${target}" target="f">${fields}</form>${onLoad('document.forms[0].submit()')}`,
      'form, text/plain carrying JSON': `<iframe name="f"></iframe><form method="POST" action="${target}" target="f" enctype="text/plain"><input name="${esc(jsonName)}" value='"}'></form>${onLoad('document.forms[0].submit()')}`,
      'fetch no-cors': onLoad(`fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', body: ${JSON.stringify(body())} })`),
    };
    const names = Object.keys(attacks);
    // The attacker's site: "localhost" is another site than "127.0.0.1" for the browser.
    const site = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><body>${attacks[names[Number(req.url?.slice(1))] ?? ''] ?? ''}</body>`);
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    t.after(() => new Promise((r) => site.close(r)));
    const sitePort = (site.address() as net.AddressInfo).port;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    t.after(() => browser.close());
    const ctx = await browser.newContext();
    let answers: number[] = [];
    ctx.on('response', (r) => {
      if (r.url() === target) answers.push(r.status());
    });
    const tab = await ctx.newPage();
    tab.setDefaultTimeout(PAGE_WAIT_MS);
    // Proof from the agent's side: its refusal counter (/metrics). The browser's own report of
    // the answer (a subframe's navigation response) was once not delivered at load average 24.
    const refusedSoFar = async (): Promise<number> =>
      metric((await httpRequest(`${agent.base}/metrics`)).text, 'tdxfer_status_refused_total', { code: 'CROSS_SITE_REFUSED' }) ?? 0;
    for (const [i, name] of names.entries()) {
      answers = [];
      const before = await refusedSoFar();
      await tab.goto(`http://localhost:${sitePort}/${i}`);
      await waitUntil(async () => (await refusedSoFar()) > before, PAGE_WAIT_MS, () => `${name}: the agent refused nothing (no tdxfer_status_refused_total increase)`);
      // Each page sends one request; the browser's view of it, when reported, is a refusal too.
      for (const status of answers) assert.ok(status === 403 || status === 415, `${name}: answered ${status}`);
    }
    assert.deepEqual(await allJobs(agent), [], 'no job was queued');
  });
});

describe('CSRF: TouchDesigner-style calls keep working', () => {
  test('Python urllib with JSON, and a form body without browser headers, are accepted', async () => {
    const py = `import json, urllib.request
req = urllib.request.Request(${JSON.stringify(`${agent.base}/send`)}, data=json.dumps({'file': ${JSON.stringify(secret)}, 'peer': 'playback', 'inbox': 'renders', 'as': 'a.txt'}).encode(), headers={'Content-Type': 'application/json'}, method='POST')
with urllib.request.urlopen(req, timeout=10) as r:
    print(r.status, json.load(r)['state'])`;
    const { stdout } = await run('python3', ['-c', py]);
    assert.match(stdout, /^202 /);
    const f = await httpRequest(`${agent.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': 'TouchDesigner' }, body: new URLSearchParams({ file: secret, peer: 'playback', inbox: 'renders', as: 'b.txt' }).toString() });
    assert.equal(f.status, 202, f.text);
    const targets = (await allJobs(agent)).map((j) => j.target).sort();
    assert.deepEqual(targets, ['a.txt', 'b.txt']);
  });
});

describe('authorizeMutation (the one rule for every state-changing endpoint)', () => {
  test('safe methods always pass; same-origin JSON passes; same-origin form from a page does not', () => {
    assert.equal(authorizeMutation({ method: 'GET', headers: { origin: 'null' } }), null);
    assert.equal(authorizeMutation({ method: 'POST', headers: { host: '127.0.0.1:7771', origin: 'http://127.0.0.1:7771', 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' } }), null);
    assert.equal(authorizeMutation({ method: 'POST', headers: { 'content-type': 'application/json' } }), null);
    assert.equal(authorizeMutation({ method: 'POST', headers: { host: '127.0.0.1:7771', origin: 'http://127.0.0.1:7771', 'content-type': 'application/x-www-form-urlencoded' } })?.status, 415);
    assert.equal(authorizeMutation({ method: 'DELETE', headers: { origin: 'file://' } })?.status, 403);
  });
});

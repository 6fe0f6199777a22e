import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { peersCommand, statusCommand, type CliIo } from '../../src/cli/status-cmd.js';
import { statusUrl } from '../../src/cli/status-client.js';
import { startStatus } from './helpers.js';
import { deadline } from '../helpers/platform.js';

class Capture extends Writable {
  text = '';
  isTTY?: boolean;
  columns?: number;
  constructor(tty = false) {
    super();
    if (tty) {
      this.isTTY = true;
      this.columns = 120;
    }
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

function io(tty = false): CliIo & { out: Capture; err: Capture } {
  return { out: new Capture(tty), err: new Capture() };
}

const noEnv: NodeJS.ProcessEnv = {};

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + deadline(ms);
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('tdxfer status / peers', () => {
  test('status prints agent, peers, queues, active with percent and ETA, recent, received, failures', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    s.view.addPeer({ name: 'playback-1', addresses: ['10.0.0.12'], inboxes: ['renders', 'stills'] });
    const j = s.view.queueJob('/out/hero.mov', 'playback-1', { size: 1_000_000 });
    s.view.start(j.id);
    s.view.progress(j.id, 400_000, 100_000);
    const d = s.view.queueJob('/out/done.mov', 'playback-1', { size: 2_000_000 });
    s.view.finish(d.id);
    s.view.receive({ inbox: 'cues', file: 'cue1.json', from: 'render-2', size: 10 });
    s.view.addFailure({ reason: 'NO_SPACE', message: 'disk full', peer: 'playback-1' });
    const c = io();
    assert.equal(await statusCommand({ url: s.base, env: noEnv }, c), 0, c.err.text);
    const out = c.out.text;
    assert.match(out, /^fake-agent \(tdxfer 0\.1\.0-test\) listening 127\.0\.0\.1:7770, discovery off, up 0:0\d, healthy\n/);
    assert.match(out, /playback-1 +10\.0\.0\.12:7770 +renders,stills +0\.1\.0 +up +\d+ s ago/);
    assert.match(out, /playback-1\/renders +0 +1 +0 +0/);
    assert.match(out, /hero\.mov → playback-1\/renders {2}sending {2}40\.0 % {2}400 KB\/1\.0 MB {2}100 KB\/s {2}ETA 0:06/);
    assert.match(out, /✓ done\.mov → playback-1\/renders {2}2\.0 MB/);
    assert.match(out, /↓ cues\/cue1\.json {2}10 B from render-2/);
    assert.match(out, /! NO_SPACE: disk full \(playback-1\)/);
  });

  test('status --json prints the /status document; peers prints a table and --json', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    s.view.addPeer({ name: 'oldbox', protocol: 'legacy', addresses: ['10.0.0.20'], port: 7000, inboxes: [], version: null, state: 'unreachable', lastSeen: null });
    const c = io();
    assert.equal(await statusCommand({ url: s.base, json: true, env: noEnv }, c), 0);
    const doc = JSON.parse(c.out.text) as { agent: { name: string }; peers: unknown[] };
    assert.equal(doc.agent.name, 'fake-agent');
    assert.equal(doc.peers.length, 1);

    const p = io();
    assert.equal(await peersCommand({ url: s.base, env: noEnv }, p), 0);
    assert.equal(p.out.text, 'NAME    ADDRESS               INBOXES  VERSION  STATE        LAST SEEN\noldbox  10.0.0.20:7000 (TOX)  -        -        unreachable  never\n');
    const pj = io();
    assert.equal(await peersCommand({ url: s.base, json: true, env: noEnv }, pj), 0);
    assert.equal((JSON.parse(pj.out.text) as Array<{ name: string }>)[0]!.name, 'oldbox');
  });

  test('no agent answering: one clear line and exit code 3', async () => {
    const s = await startStatus();
    await s.server.stop();
    for (const run of [(c: CliIo) => statusCommand({ url: s.base, env: noEnv }, c), (c: CliIo) => peersCommand({ url: s.base, env: noEnv }, c)]) {
      const c = io();
      assert.equal(await run(c), 3);
      assert.equal(c.err.text, `no tdxfer agent answering at ${s.base} — start it with \`tdxfer run\` or check status.port\n`);
      assert.equal(c.out.text, '');
    }
  });

  test('the address and token come from the config file; a wrong token says how to pass one', async (t) => {
    const s = await startStatus({ token: 'cfg-token-0123456789' });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-cli-'));
    t.after(async () => {
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const cfg = path.join(dir, 'config.json');
    await writeFile(cfg, JSON.stringify({ name: 'x', dataDir: dir, status: { host: '127.0.0.1', port: s.port, token: 'cfg-token-0123456789' } }));
    const ok = io();
    assert.equal(await peersCommand({ config: cfg, env: noEnv }, ok), 0, ok.err.text);
    const viaEnv = io();
    assert.equal(await peersCommand({ env: { TDXFER_CONFIG: cfg } }, viaEnv), 0, viaEnv.err.text);
    const wrong = io();
    assert.equal(await peersCommand({ config: cfg, token: 'nope', env: noEnv }, wrong), 2);
    assert.match(wrong.err.text, /wants a token: pass --token/);
    const badCfg = io();
    assert.equal(await peersCommand({ config: path.join(dir, 'missing.json'), env: noEnv }, badCfg), 2);
    assert.match(badCfg.err.text, /config file not found/);
  });

  test('statusUrl maps wildcard binds to loopback and brackets IPv6', () => {
    assert.equal(statusUrl('0.0.0.0', 7771), 'http://127.0.0.1:7771');
    assert.equal(statusUrl('::', 7771), 'http://[::1]:7771');
    assert.equal(statusUrl('fe80::1', 1), 'http://[fe80::1]:1');
    assert.equal(statusUrl('10.0.0.5', 80), 'http://10.0.0.5:80');
  });
});

describe('tdxfer status --watch', () => {
  test('plain output (not a terminal): progress steps, done line, peer/received/failure events; Ctrl-C exits 0', async (t) => {
    const s = await startStatus({ sse: { progressIntervalMs: 1 } });
    t.after(() => s.server.stop());
    s.view.addPeer({ name: 'playback-1' });
    const c = io();
    const ac = new AbortController();
    const done = statusCommand({ url: s.base, watch: true, signal: ac.signal, env: noEnv }, c);
    await until(() => c.out.text.includes('fake-agent at'));
    await until(() => s.server.eventClients === 1);
    const j = s.view.queueJob('/out/hero.mov', 'playback-1', { size: 1000 });
    s.view.start(j.id);
    for (let b = 100; b <= 1000; b += 100) {
      s.view.progress(j.id, b);
      await sleep(3);
    }
    s.view.finish(j.id);
    s.view.setPeerState('playback-1', 'unreachable');
    s.view.receive({ inbox: 'renders', file: 'in.mov', from: 'render-2', size: 5 });
    s.view.addFailure({ reason: 'CONNECT_FAILED', message: 'refused', peer: 'playback-1' });
    await until(() => c.out.text.includes('! CONNECT_FAILED'));
    ac.abort();
    assert.equal(await done, 0, c.err.text);
    const out = c.out.text;
    assert.match(out, /^fake-agent at http:\/\/127\.0\.0\.1:\d+ — peers: playback-1 up\n/);
    assert.match(out, /… hero\.mov → playback-1\/renders {2}sending {2}50\.0 %/);
    assert.match(out, /✓ hero\.mov → playback-1\/renders {2}1\.0 KB\npeer playback-1 unreachable \(127\.0\.0\.1:7770\)\n↓ renders\/in\.mov {2}5 B from render-2\n! CONNECT_FAILED: refused \(playback-1\)\n$/);
  });

  test('on a terminal a progress bar per job is drawn; the agent going away exits 3', async () => {
    const s = await startStatus({ sse: { progressIntervalMs: 1 } });
    s.view.addPeer({ name: 'playback-1' });
    const j = s.view.queueJob('/out/big.mov', 'playback-1', { size: 10_000 });
    s.view.start(j.id);
    s.view.progress(j.id, 2500, 1000);
    const c = io(true);
    const done = statusCommand({ url: s.base, watch: true, env: noEnv }, c);
    await until(() => c.out.text.includes('big.mov → playback-1/renders'));
    await until(() => s.server.eventClients === 1);
    s.view.progress(j.id, 7500, 1000);
    await until(() => c.out.text.includes(' 75% | big.mov'));
    assert.match(c.out.text, /█+░+ +25% \| big\.mov → playback-1\/renders \| 1\.0 KB\/s \| ETA 0:08/);
    s.view.finish(j.id);
    await until(() => c.out.text.includes('✓ big.mov'));
    await s.server.stop();
    assert.equal(await done, 3);
    assert.match(c.err.text, /closed the event stream|lost the agent/);
  });
});

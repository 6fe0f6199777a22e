/**
 * Two real agents on loopback, real files: the core promise of issue #2.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import { FrameDecoder, encodeFrame } from '../../src/protocol/index.js';
import {
  hashTree, listFiles, spawnCli, startAgent, tempDir, waitUntil, writeAgentPair, writeRandomFile, verboseLogger, type AgentPair, type AgentPairOptions,
} from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';
import { EXIT_AFTER_KILL, wineFlaw } from '../helpers/platform.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** A sender/receiver pair of configs in a fresh temp folder (helpers/agents.ts writeAgentPair). */
async function pair(opts: AgentPairOptions = {}): Promise<AgentPair> {
  const root = await tempDir('tdx-e2e-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  return writeAgentPair(root, opts);
}

async function start(cfg: string): Promise<Agent> {
  const a = await startAgent(cfg, verboseLogger());
  cleanup.push(() => a.stop(2000));
  return a;
}

test('200 files in nested folders and one 200 MB file arrive byte-identical; nothing partial is ever visible in the inbox', async () => {
  const p = await pair();
  const b = await start(p.bCfg);
  await p.receiverListening(b.listenAddress.port);
  await fs.mkdir(p.outbox, { recursive: true });
  // Build the set outside the outbox, then move it in at once (like a render finishing).
  const src = path.join(p.root, 'src');
  for (let i = 0; i < 200; i++) {
    const rel = `shot${i % 5}/layer${i % 3}/f.${String(i).padStart(4, '0')}.png`;
    await writeRandomFile(path.join(src, rel), 1 + Math.floor(Math.random() * 64 * 1024));
  }
  await writeRandomFile(path.join(src, 'movie', 'take1.mov'), 200 * 1024 * 1024);
  const expected = await hashTree(src);
  const sizes = new Map<string, number>();
  for (const rel of expected.keys()) sizes.set(rel, (await fs.stat(path.join(src, rel))).size);

  // Watch the inbox while files arrive: every name seen must be a final name, whole.
  const violations: string[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const rel of await listFiles(p.inbox)) {
        const want = sizes.get(rel);
        if (want === undefined) violations.push(`unexpected name in inbox: ${rel}`);
        else {
          const st = await fs.stat(path.join(p.inbox, rel)).catch(() => null);
          if (st && st.size !== want) violations.push(`${rel} visible with ${st.size} of ${want} bytes`);
        }
      }
      await new Promise((r) => setImmediate(r));
    }
  })();

  const a = await start(p.aCfg);
  for (const top of await fs.readdir(src)) await fs.rename(path.join(src, top), path.join(p.outbox, top));
  await waitUntil(async () => (await listFiles(p.inbox)).length === expected.size, 120_000, () => 'all files in the inbox');
  watching = false;
  await watcher;
  assert.deepEqual(violations.slice(0, 5), []);
  assert.deepEqual(await hashTree(p.inbox), expected);
  // archive (default): everything moved to sent/ keeping subpaths, once every file is confirmed.
  await waitUntil(async () => (await listFiles(p.outbox)).every((r) => r.startsWith('sent/')), 10_000, () => 'outbox emptied into sent/');
  assert.equal((await listFiles(path.join(p.outbox, 'sent'))).length, expected.size);
  assert.equal(a.snapshot().active.length, 0);
  assert.ok(b.snapshot().received.length >= 100);
});

test('a file written slowly in bursts arrives once, complete', async () => {
  // Pauses of 250 ms against a settle time of 3 s: only a stall of ~2.7 s could split the file.
  const p = await pair({ settleMs: 3000, receiverExtra: { inboxes: [{ name: 'renders', path: 'inbox', onCollision: 'rename' }] } });
  const b = await start(p.bCfg);
  await p.receiverListening(b.listenAddress.port);
  const a = await start(p.aCfg);
  const file = path.join(p.outbox, 'slow.exr');
  const parts = [randomBytes(300_000), randomBytes(10), randomBytes(500_000), randomBytes(1), randomBytes(200_000)];
  const fh = await fs.open(file, 'w');
  for (const part of parts) {
    await fh.write(part);
    await fh.sync();
    await new Promise((r) => setTimeout(r, 250));
  }
  await fh.close();
  await waitUntil(async () => (await listFiles(p.inbox)).includes('slow.exr'), 10_000);
  // A later file, sent and confirmed with nothing else in flight, proves no second version is on its way.
  await fs.writeFile(path.join(p.outbox, 'zz-later.png'), 'later');
  await waitUntil(async () => (await listFiles(p.inbox)).includes('zz-later.png') && a.snapshot().active.length === 0, 10_000, () => 'the later file delivered');
  assert.deepEqual(await listFiles(p.inbox), ['slow.exr', 'zz-later.png']);
  assert.deepEqual(await fs.readFile(path.join(p.inbox, 'slow.exr')), Buffer.concat(parts));
  assert.equal(b.snapshot().received.filter((r) => r.file === 'slow.exr').length, 1);
});

test('a file re-rendered under the same name after it was sent is sent again', async () => {
  const p = await pair({ after: 'keep', settleMs: 150 });
  await p.receiverListening((await start(p.bCfg)).listenAddress.port);
  await start(p.aCfg);
  const f = path.join(p.outbox, 'still.png');
  await fs.writeFile(f, 'version one');
  await waitUntil(async () => (await fs.readFile(path.join(p.inbox, 'still.png'), 'utf8').catch(() => '')) === 'version one', 10_000);
  await new Promise((r) => setTimeout(r, 50));
  await fs.writeFile(f, 'version two, longer');
  await waitUntil(async () => (await fs.readFile(path.join(p.inbox, 'still.png'), 'utf8').catch(() => '')) === 'version two, longer', 10_000);
});

test('receiver down at first: files wait, then all arrive when it starts', async () => {
  // reservedPort: the sender starts first, so its config names the receiver's port before that port is open.
  const p = await pair({ receiverPort: await reservedPort() });
  const a = await start(p.aCfg);
  await fs.mkdir(p.outbox, { recursive: true });
  for (let i = 0; i < 20; i++) await writeRandomFile(path.join(p.outbox, `d/${i}.bin`), 10_000 + i);
  const expected = await hashTree(p.outbox);
  await waitUntil(() => a.snapshot().active.filter((j) => j.state === 'waiting').length === 20, 10_000, () => 'jobs waiting');
  const snap = a.snapshot();
  assert.ok(snap.peers.some((x) => x.name === 'playback' && x.state === 'unreachable'));
  await start(p.bCfg);
  await waitUntil(async () => (await listFiles(p.inbox)).length === 20, 15_000, () => 'all arrive after the receiver starts');
  assert.deepEqual(await hashTree(p.inbox), new Map([...expected].map(([k, v]) => [k, v])));
});

test('sender restarted with files pending: everything arrives exactly once', async () => {
  // reservedPort: the sender starts first, so its config names the receiver's port before that port is open.
  const p = await pair({ receiverPort: await reservedPort(), receiverExtra: { inboxes: [{ name: 'renders', path: 'inbox', onCollision: 'rename' }] } });
  await fs.mkdir(p.outbox, { recursive: true });
  for (let i = 0; i < 30; i++) await writeRandomFile(path.join(p.outbox, `s${i % 3}/${i}.bin`), 5000 + i);
  const expected = await hashTree(p.outbox);
  // First run: the receiver is down, so everything stays pending; stop the sender.
  const first = spawnCli(['run', '--config', p.aCfg]);
  await first.waitFor(/unreachable/);
  // Windows: kill() terminates (no SIGTERM); the outbox is the queue either way. The graceful stop there is e2e/stop.test.ts.
  assert.equal(await first.stop('SIGTERM'), EXIT_AFTER_KILL);
  assert.equal((await listFiles(p.outbox)).length, 30, 'the outbox still holds every pending file');
  // Receiver up, sender restarted: the outbox is the queue.
  await start(p.bCfg);
  const second = spawnCli(['run', '--config', p.aCfg]);
  cleanup.push(() => second.stop());
  await waitUntil(async () => (await listFiles(p.inbox)).length >= 30, 20_000, () => `all arrive; agent said:\n${second.output().slice(-2000)}`);
  // Every file confirmed (archived), then a graceful stop: no transfer can still be under way.
  await waitUntil(async () => (await listFiles(p.outbox)).every((r) => r.startsWith('sent/')), 20_000, () => 'every file archived');
  assert.equal(await second.stop('SIGTERM'), EXIT_AFTER_KILL);
  assert.deepEqual(await hashTree(p.inbox), expected, 'each file once, no "(1)" copies');
});

test('after-actions: archive moves to sent/, delete removes, keep leaves the file and does not resend it after a restart', async () => {
  const root = await tempDir('tdx-after-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  const p = await pair({
    outboxes: ['archive', 'delete', 'keep'].map((mode) => ({ path: `out-${mode}`, to: [{ peer: 'playback', inbox: 'renders' }], after: mode, settleMs: 100 })),
    receiverExtra: { inboxes: [{ name: 'renders', path: 'inbox', onCollision: 'rename' }] },
  });
  const b = await start(p.bCfg);
  await p.receiverListening(b.listenAddress.port);
  const aDir = path.dirname(p.aCfg);
  for (const mode of ['archive', 'delete', 'keep']) await writeRandomFile(path.join(aDir, `out-${mode}`, 'sub', `${mode}.png`), 4096);
  let a = await startAgent(p.aCfg, verboseLogger());
  await waitUntil(async () => (await listFiles(p.inbox)).length === 3, 10_000);
  await waitUntil(async () => (await listFiles(path.join(aDir, 'out-archive'))).join() === 'sent/sub/archive.png', 5000, () => 'archived');
  await waitUntil(async () => (await listFiles(path.join(aDir, 'out-delete'))).length === 0, 5000, () => 'deleted');
  assert.deepEqual(await listFiles(path.join(aDir, 'out-keep')), ['sub/keep.png']);
  await a.stop();
  a = await startAgent(p.aCfg, verboseLogger());
  cleanup.push(() => a.stop());
  // A file added after the restart is found after the kept one would have been: once it has
  // arrived and nothing is in flight, a resend of keep.png would have shown.
  await writeRandomFile(path.join(aDir, 'out-keep', 'sub', 'later.png'), 100);
  await waitUntil(async () => (await listFiles(p.inbox)).includes('sub/later.png') && a.snapshot().active.length === 0 && b.snapshot().received.some((r) => r.file.endsWith('later.png')), 10_000, () => 'later.png delivered');
  assert.equal(b.snapshot().received.length, 4, 'kept file not sent again after restart');
  assert.deepEqual(await listFiles(p.inbox), ['sub/archive.png', 'sub/delete.png', 'sub/keep.png', 'sub/later.png']);
});

// Issue #20's soak: the archive after-action removed the emptied outbox/steady, the writer made it
// again within milliseconds, and on Linux nothing dropped into it afterwards was seen until the
// sender restarted (13 minutes of standstill). Each round: the folder is removed by the agent,
// made again at once (as the soak's writer does), and the next file dropped right away or later.
test('the archive after-action removes an emptied folder and a writer makes it again at once: every file dropped into it arrives', { skip: wineFlaw('watchedFolderDelete') }, async () => {
  const p = await pair({ settleMs: 100 });
  const b = await start(p.bCfg);
  await p.receiverListening(b.listenAddress.port);
  const steady = path.join(p.outbox, 'steady');
  await fs.mkdir(steady, { recursive: true });
  await start(p.aCfg);
  const src = path.join(p.root, 'src');
  await fs.mkdir(src, { recursive: true });
  const exists = (f: string) => fs.stat(f).then(() => true, () => false);
  const drop = async (name: string) => {
    await writeRandomFile(path.join(src, name), 2048);
    await fs.rename(path.join(src, name), path.join(steady, name));
  };
  const waits = [0, 20, 400, 1000];
  for (let i = 0; i < 8; i++) {
    const name = `s.${i}.png`;
    await drop(name);
    await waitUntil(() => exists(path.join(p.inbox, 'steady', name)), undefined, () => `${name} landed (round ${i})`);
    // The agent archives it and removes the emptied folder; the writer makes it again at once.
    await waitUntil(async () => !(await exists(steady)), undefined, () => `outbox/steady removed after ${name} was archived`);
    await fs.mkdir(steady);
    await new Promise((r) => setTimeout(r, waits[i % waits.length]));
  }
  const last = 's.last.png';
  await drop(last);
  await waitUntil(() => exists(path.join(p.inbox, 'steady', last)), undefined, () => `${last} landed`);
  assert.deepEqual((await listFiles(path.join(p.inbox, 'steady'))).length, 9);
});

test('a malformed frame from a raw socket gets an ERROR frame; the agent keeps serving honest peers', async () => {
  const p = await pair({ senderExtra: { security: { key: undefined } } });
  // Plain mode on both ends makes the raw frames reach the decoder directly.
  for (const f of [p.aCfg, p.bCfg]) {
    const c = JSON.parse(await fs.readFile(f, 'utf8'));
    c.security = { key: JSON.parse(await fs.readFile(p.bCfg, 'utf8')).security.key, encrypt: false };
    await fs.writeFile(f, JSON.stringify(c));
  }
  const b = await start(p.bCfg);
  await p.receiverListening(b.listenAddress.port);
  const bad = [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    Buffer.from([0x54, 0x58, 9, 1, 0, 0, 0, 2, 0x7b, 0x7d]), // version 9
    Buffer.from([0x54, 0x58, 1, 0x33, 0, 0, 0, 2, 0x7b, 0x7d]), // unknown type
    Buffer.from([0x54, 0x58, 1, 0x01, 0xff, 0xff, 0xff, 0xff]), // absurd length
    Buffer.concat([Buffer.from([0x54, 0x58, 1, 0x01, 0, 0, 0, 5]), Buffer.from('{nope')]),
  ];
  for (const bytes of bad) {
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect(b.listenAddress.port, '127.0.0.1', () => s.write(bytes));
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 30_000); // hang detector: the agent answers and closes
    });
    const frames = new FrameDecoder().push(reply);
    assert.equal(frames[0]?.type, 'error', `an ERROR frame for ${bytes.subarray(0, 8).toString('hex')}`);
  }
  // The agent is still up and serving: a real transfer works.
  await start(p.aCfg);
  await fs.writeFile(path.join(p.outbox, 'after-garbage.png'), 'fine');
  await waitUntil(async () => (await listFiles(p.inbox)).includes('after-garbage.png'), 10_000);
  // The file is visible at its rename; it is announced once its folder is fsynced and it is acknowledged.
  await waitUntil(() => b.snapshot().received.length > 0, 10_000, () => 'the landing recorded');
  assert.deepEqual(b.snapshot().received.map((r) => r.file), ['after-garbage.png']);
  void encodeFrame;
});

test('transfer.connections > 1: files of one destination spread over several connections, each arrives once', async () => {
  const p = await pair({ senderExtra: { transfer: { connections: 3, retryInitialMs: 100, retryMaxMs: 1000 } }, receiverExtra: { inboxes: [{ name: 'renders', path: 'inbox', onCollision: 'rename' }] } });
  const log = memoryLogger();
  const b = await startAgent(p.bCfg, log);
  await p.receiverListening(b.listenAddress.port);
  cleanup.push(() => b.stop());
  await start(p.aCfg);
  const src = path.join(p.root, 'src');
  for (let i = 0; i < 60; i++) await writeRandomFile(path.join(src, 'seq', `f.${String(i).padStart(4, '0')}.png`), 2000 + i * 100);
  await writeRandomFile(path.join(src, 'seq', 'big.mov'), 30 * 1024 * 1024);
  const expected = await hashTree(src);
  await fs.mkdir(p.outbox, { recursive: true });
  await fs.rename(path.join(src, 'seq'), path.join(p.outbox, 'seq'));
  await waitUntil(async () => (await listFiles(p.inbox)).length >= expected.size, 30_000, () => 'all files arrive');
  assert.deepEqual(await hashTree(p.inbox), expected);
  const connects = log.records.filter((r) => /peer render connected/.test(r.msg)).length;
  assert.equal(connects, 3, 'three connections from the one sender');
});

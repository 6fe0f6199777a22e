/**
 * The bounded admission window (agent/admission.ts, issue #12): the pure queue (FIFO,
 * a newer version keeps its place, exact counts per outbox, nothing dropped), the
 * per-destination counts the status API adds, and two real agents on loopback with a
 * window of 4 and a backlog of 30 files already waiting at start: /status counts every
 * file while the receiver is down, then each arrives exactly once and leaves the outbox.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { OutboxConfig, RouteConfig } from '../../src/config/types.js';
import type { PeerInfo } from '../../src/types.js';
import type { ReadyFile } from '../../src/outbox/index.js';
import type { Agent } from '../../src/agent/agent.js';
import { AdmissionQueue, waitingByDestination } from '../../src/agent/admission.js';
import { hashTree, listFiles, startAgent, tempDir, waitUntil, writeAgentConfig, writeRandomFile, verboseLogger } from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';

function outbox(p: string, to: RouteConfig[] = [{ peer: 'stage', inbox: 'renders' }]): OutboxConfig {
  return { path: p, to, include: [], exclude: [], after: 'archive', settleMs: 0 };
}
function file(ob: OutboxConfig, rel: string, size = 1): ReadyFile {
  return { outbox: ob, rel, abs: `${ob.path}/${rel}`, size, mtimeMs: 1000 };
}
function peer(name: string, source: PeerInfo['source'] = 'static'): PeerInfo {
  return { id: null, name, source, protocol: 'tdxfer', addresses: ['10.0.0.1'], port: 7000, inboxes: ['renders'], version: null, state: 'up', lastSeen: null };
}
const offer = (q: AdmissionQueue, f: ReadyFile) => q.offer(f);

test('admission queue: oldest first within an outbox, outboxes take turns; a newer version keeps its place; counts stay exact', () => {
  const a = outbox('/a');
  const b = outbox('/b');
  const q = new AdmissionQueue();
  offer(q, file(a, '1'));
  offer(q, file(a, '2'));
  offer(q, file(b, '3'));
  offer(q, file(a, '4'));
  offer(q, file(a, '1', 99)); // a newer version of the first
  assert.equal(q.size, 4);
  assert.equal(q.count(a), 3);
  assert.equal(q.count(b), 1);
  const first = q.take()!;
  assert.deepEqual(first, { outbox: a, rel: '1', size: 99, mtimeMs: 1000 }, 'the newest version is admitted, in its place');
  assert.equal(q.count(a), 2);
  assert.equal(q.take()!.rel, '3', "then the other outbox's turn");
  assert.equal(q.count(b), 0);
  assert.deepEqual([...q.counts()].map(([ob, n]) => [ob.path, n]), [['/a', 2]]);
  assert.equal(q.take()!.rel, '2');
  assert.equal(q.take()!.rel, '4');
  assert.equal(q.take(), undefined);
  assert.equal(q.size, 0);
  assert.deepEqual([...q.counts()], []);
});

test('admission queue: remove drops only the named file and reports whether it waited', () => {
  const a = outbox('/a');
  const q = new AdmissionQueue();
  offer(q, file(a, 'x'));
  offer(q, file(a, 'y'));
  assert.equal(q.remove(a, 'nope'), false);
  assert.equal(q.remove(outbox('/a'), 'x'), false, 'outboxes are told apart by their config object');
  assert.equal(q.remove(a, 'x'), true);
  assert.equal(q.has(a, 'x'), false);
  assert.equal(q.count(a), 1);
  assert.equal(q.size, 1);
  assert.equal(q.take()?.rel, 'y');
  assert.equal(q.count(a), 0);
});

test('waiting files are counted per destination as their jobs will be (known peers, named peers not known yet, fan-out to discovered peers)', () => {
  const one = outbox('/one', [{ peer: 'stage', inbox: 'renders' }, { peer: 'later', inbox: 'renders' }]);
  const two = outbox('/two', [{ peer: '*', inbox: 'renders' }]);
  const m = waitingByDestination([[one, 5], [two, 3]], [peer('stage'), peer('wall', 'discovered')], { selfName: 'me' });
  const got = Object.fromEntries([...m].map(([k, v]) => [k, v.files]));
  // A discovered peer's key carries its id (here none: 'wall#'); static and named ones are just the name.
  assert.deepEqual(got, { 'stage/renders': 5, 'later/renders': 5, 'wall#/renders': 3 });
});

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

test('a backlog larger than the window: status counts every file while the receiver is down; then all arrive exactly once and are archived', async () => {
  const root = await tempDir('tdx-admit-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  const pb = await reservedPort();
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(root, 'b'), port: pb, extra: { inboxes: [{ name: 'renders', path: 'inbox', onCollision: 'rename' }] } });
  const aCfg = await writeAgentConfig({
    name: 'render',
    dir: path.join(root, 'a'),
    port: 0,
    extra: {
      outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'archive', settleMs: 100 }],
      peers: [{ name: 'playback', host: '127.0.0.1', port: pb }],
    },
  });
  const outboxDir = path.join(root, 'a', 'outbox');
  const inbox = path.join(root, 'b', 'inbox');
  const n = 30;
  for (let i = 0; i < n; i++) await writeRandomFile(path.join(outboxDir, `seq/f${String(i).padStart(3, '0')}.bin`), 2000 + i);
  const expected = await hashTree(outboxDir);

  const a: Agent = await startAgent(aCfg, verboseLogger(), { admitWindow: 4 });
  cleanup.push(() => a.stop(2000));
  await waitUntil(() => (a.snapshot().outboxes?.[0]?.pending ?? 0) === n, 15_000, () => `all ${n} pending: ${JSON.stringify(a.snapshot().outboxes)}`);
  const snap = a.snapshot();
  assert.ok(snap.active.length <= 4, `at most the window admitted as jobs, got ${snap.active.length}`);
  const q = snap.queues.find((x) => x.destination === 'playback/renders');
  assert.ok(q, JSON.stringify(snap.queues));
  assert.equal(q.queued + q.waiting + q.sending, n, `every file counted for its destination: ${JSON.stringify(q)}`);

  const b: Agent = await startAgent(bCfg, verboseLogger());
  cleanup.push(() => b.stop(2000));
  await waitUntil(async () => (await listFiles(outboxDir)).every((r) => r.startsWith('sent/')), 30_000, () => 'every file archived');
  const landed = await listFiles(inbox);
  assert.equal(landed.length, n, `exactly once (collisions would be renamed): ${landed.join(', ')}`);
  assert.deepEqual(await hashTree(inbox), expected);
  const end = a.snapshot();
  assert.equal(end.outboxes?.[0]?.pending, 0);
  assert.equal(end.queues.reduce((s, x) => s + x.queued + x.waiting + x.sending, 0), 0);
});

/**
 * Issue #5, guarantee 6: SIGTERM / SIGINT to a running agent (the real CLI) in the
 * middle of transfers: it stops, finishes or checkpoints what is in flight, exits 0
 * within a bounded time (< 15 s, the CLI's hard-exit limit), and after a restart
 * everything completes exactly once.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { hashTree, listFiles, spawnCli, waitUntil, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { assertDelivered, dropIntoOutbox, makePair, runCleanup, stagingData, watchInbox, type Cleanup, type Pair } from './util.js';
import { NO_SIGTERM, deadline } from '../helpers/platform.js';

const MB = 1024 * 1024;
// Each test is a hang detector on its own: one that hangs fails by name, not the whole file.
const PER_TEST_MS = deadline(300_000);
const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));

function spawned(cfg: string): Spawned {
  const s = spawnCli(['run', '--config', cfg]);
  cleanup.push(() => s.stop('SIGKILL'));
  return s;
}

async function stopTimed(s: Spawned, signal: NodeJS.Signals): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const code = await s.stop(signal);
  const ms = Date.now() - t0;
  process.stdout.write(`# ${signal}: exit ${code} after ${ms} ms\n`);
  return { code, ms };
}

/** One big file and `small` small ones in the source folder; returns their hashes and sizes. */
async function workload(p: Pair, bigBytes: number, small: number): Promise<{ expected: Map<string, string>; sizes: Map<string, number> }> {
  await writeRandomFile(path.join(p.src, 'big', 'movie.mov'), bigBytes);
  for (let i = 0; i < small; i++) await writeRandomFile(path.join(p.src, 'frames', `f.${String(i).padStart(4, '0')}.png`), 2000 + i * 37);
  const expected = await hashTree(p.src);
  const sizes = new Map<string, number>();
  for (const rel of expected.keys()) sizes.set(rel, (await fs.stat(path.join(p.src, rel))).size);
  return { expected, sizes };
}

/** While stopped: nothing unconfirmed in sent/, and outbox ∪ sent/ still holds every file. */
async function assertNothingLost(p: Pair, sizes: Map<string, number>): Promise<void> {
  const all = await listFiles(p.outbox);
  const sent = all.filter((r) => r.startsWith('sent/')).map((r) => r.slice(5));
  const waiting = all.filter((r) => !r.startsWith('sent/'));
  assert.deepEqual([...sent, ...waiting].sort(), [...sizes.keys()].sort(), 'every file is either archived or still in the outbox');
  const landed = new Set(await listFiles(p.inbox));
  for (const r of sent) assert.ok(landed.has(r), `${r} archived only after it landed`);
}

test('SIGTERM to the receiver mid-file: exits 0 quickly, keeps the partial; after a restart the file resumes and everything arrives once', { skip: NO_SIGTERM, timeout: PER_TEST_MS }, async () => {
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { stallAfter: 50 * MB } : {}) });
  const { expected, sizes } = await workload(p, 150 * MB, 100);
  const rx = spawned(p.bCfg);
  await p.receiverListening(await rx.transferPort());
  const seen = watchInbox(p.inbox, sizes);
  const tx = spawned(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  await waitUntil(() => p.proxy!.conns[0]?.stalled === true, 30_000, () => `mid-file; sender said:\n${tx.output().slice(-1500)}`);
  await waitUntil(async () => (await stagingData(p.staging)).length === 1, 5000, () => 'a partial in staging');

  const { code } = await stopTimed(rx, 'SIGTERM');
  assert.equal(code, 0, `exit code; receiver said:\n${rx.output().slice(-1500)}`);
  // Exit code 0 is the bound: past its 15 s hard limit the agent exits with 1.
  assert.match(rx.output(), /SIGTERM: stopping/);
  assert.match(rx.output(), /agent stopped/);
  const [part] = await stagingData(p.staging);
  assert.ok(part && (await fs.stat(path.join(p.staging, part))).size > 0, 'the partial is kept (checkpoint) for resume');
  await assertNothingLost(p, sizes);

  const rx2 = spawned(p.bCfg);
  await waitUntil(async () => (await listFiles(p.sent)).length === sizes.size, 40_000, () => `all delivered after restart; receiver said:\n${rx2.output().slice(-1500)}`);
  await rx2.waitFor(/resuming big\/movie\.mov from render at byte [1-9]\d* of/, 1000);
  assert.deepEqual(await seen.stop(), []);
  await assertDelivered(p, expected);
  assert.equal(await tx.stop('SIGTERM'), 0);
  assert.equal(await rx2.stop('SIGTERM'), 0);
});

test('SIGINT to the sender mid-transfer: it finishes the file in flight (or keeps it when the grace budget runs out), exits 0 quickly; after a restart everything arrives once', { skip: NO_SIGTERM, timeout: PER_TEST_MS }, async () => {
  const p = await makePair(cleanup);
  const { expected, sizes } = await workload(p, 200 * MB, 100);
  const rx = spawned(p.bCfg);
  await p.receiverListening(await rx.transferPort());
  const seen = watchInbox(p.inbox, sizes);
  const tx = spawned(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  // Signal once the big file is really on its way.
  await waitUntil(async () => {
    const [f] = await stagingData(p.staging);
    const st = f === undefined ? null : await fs.stat(path.join(p.staging, f)).catch(() => null);
    return st !== null && st.size > 20 * MB;
  }, 30_000, () => `big file on its way; sender said:\n${tx.output().slice(-1500)}`);

  const { code } = await stopTimed(tx, 'SIGINT');
  assert.equal(code, 0, `exit code; sender said:\n${tx.output().slice(-1500)}`);
  // Exit code 0 is the bound: past its 15 s hard limit the agent exits with 1.
  assert.match(tx.output(), /SIGINT: stopping/);
  // The file in flight is finished within the graceful budget (12 s), or, on a machine too busy
  // for that, interrupted (and reported) and kept in the outbox: the restart below resumes it.
  if (!(await listFiles(p.inbox)).includes('big/movie.mov')) {
    assert.ok((await listFiles(p.outbox)).includes('big/movie.mov'), 'an unfinished file stays in the outbox');
    assert.match(tx.output(), /big\/movie\.mov to \S+ still in flight after \d+ s: interrupted; it resumes on the next start|unreachable/);
  }
  await assertNothingLost(p, sizes);

  const tx2 = spawned(p.aCfg);
  await waitUntil(async () => (await listFiles(p.sent)).length === sizes.size, 40_000, () => `all delivered after restart; sender said:\n${tx2.output().slice(-1500)}`);
  assert.deepEqual(await seen.stop(), []);
  await assertDelivered(p, expected);
  assert.equal(await tx2.stop('SIGTERM'), 0);
  assert.equal(await rx.stop('SIGTERM'), 0);
});

test('SIGTERM to a sender whose transfer is stuck (peer stalls): still exits 0 within the bound, the file stays in the outbox', { skip: NO_SIGTERM, timeout: PER_TEST_MS }, async () => {
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { stallAfter: 5 * MB } : {}) });
  const { expected, sizes } = await workload(p, 40 * MB, 0);
  const rx = spawned(p.bCfg);
  await p.receiverListening(await rx.transferPort());
  const tx = spawned(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  await waitUntil(() => p.proxy!.conns[0]?.stalled === true, 30_000, () => 'stuck mid-file');

  const { code } = await stopTimed(tx, 'SIGTERM');
  assert.equal(code, 0, `exit code; sender said:\n${tx.output().slice(-1500)}`);
  // Exit code 0 is the bound: past its 15 s hard limit the agent exits with 1.
  await assertNothingLost(p, sizes);
  assert.deepEqual(await listFiles(p.outbox), ['big/movie.mov']);

  p.proxy!.unstall();
  const tx2 = spawned(p.aCfg);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 30_000, () => `delivered after restart; sender said:\n${tx2.output().slice(-1500)}`);
  await assertDelivered(p, expected);
  assert.equal(await tx2.stop('SIGTERM'), 0);
  assert.equal(await rx.stop('SIGTERM'), 0);
});

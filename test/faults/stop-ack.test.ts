/**
 * Issue #20, part 3: a graceful stop of the receiver (SIGTERM to the real CLI) never
 * lands a file without acknowledging it. The receiver is stopped many times during a
 * stream of small and medium files, most of them within milliseconds of a rename seen in
 * the inbox; after each restart the stream continues. In the end every file landed once,
 * was announced ("received") once, and no sender had to send again a file that had
 * already landed (the receiver never answers "already have").
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { hashTree, listFiles, spawnCli, waitUntil, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { assertDelivered, dropIntoOutbox, makePair, runCleanup, seededRandom, type Cleanup } from './util.js';

const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));

const ROUNDS = 8;
/** Small files dropped before the first stop, and in each round (with the six clips at the start). */
const FIRST = 100;
const PER_ROUND = 50;

function spawned(cfg: string): Spawned {
  const s = spawnCli(['run', '--config', cfg]);
  cleanup.push(() => s.stop('SIGKILL'));
  return s;
}

/** Resolves on the first rename event in `dir` after `skip` of them (a file just landed). */
function afterRenames(dir: string, skip: number): { landed: Promise<void>; close: () => void } {
  let seen = 0;
  let done: () => void = () => undefined;
  const landed = new Promise<void>((r) => (done = r));
  const w = fs.watch(dir, (ev) => {
    if (ev === 'rename' && ++seen > skip) done();
  });
  return { landed, close: () => w.close() };
}

test(`SIGTERM to the receiver ${ROUNDS} times, mostly right after a rename: every file acknowledged once, none sent again after it landed`, async () => {
  const rnd = seededRandom('stop-ack');
  const p = await makePair(cleanup, { onCollision: 'rename', encrypt: false });
  // Batch 0 before the first stop, one more batch of PER_ROUND at the start of each round,
  // into its own folder b<k>: a round's stop comes within 26 renames of its batch, so files
  // are still arriving when it falls, however fast this machine moves them.
  const batches: string[] = [];
  for (let b = 0; b <= ROUNDS; b++) {
    const dir = path.join(p.root, `batch${b}`);
    for (let i = 0; i < (b === 0 ? FIRST : PER_ROUND); i++) await writeRandomFile(path.join(dir, `b${b}`, `f.${String(i).padStart(4, '0')}.png`), 1000 + rnd.int(0, 3000));
    if (b === 0) for (let i = 0; i < 6; i++) await writeRandomFile(path.join(dir, 'b0', `clip.${i}.mov`), 2 * 1024 * 1024 + i);
    fs.mkdirSync(path.join(p.inbox, `b${b}`), { recursive: true });
    batches.push(dir);
  }
  const expected = new Map<string, string>();
  for (const dir of batches) for (const [k, v] of await hashTree(dir)) expected.set(k, v);

  const outputs: string[] = [];
  let rx = spawned(p.bCfg);
  await p.receiverListening(await rx.transferPort());
  const tx = spawned(p.aCfg);
  await dropIntoOutbox(batches[0]!, p.outbox);

  let stoppedMidStream = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // Stop right after the n-th rename of this round's batch (most rounds), or at a random moment.
    const watch = afterRenames(path.join(p.inbox, `b${round + 1}`), rnd.int(0, 25));
    await dropIntoOutbox(batches[round + 1]!, p.outbox);
    const rightAfterRename = round % 4 !== 3;
    if (rightAfterRename) await Promise.race([watch.landed, new Promise((r) => setTimeout(r, 30_000))]);
    else await new Promise((r) => setTimeout(r, rnd.int(0, 400)));
    watch.close();
    const code = await rx.stop('SIGTERM');
    outputs.push(rx.output());
    assert.equal(code, 0, `receiver exit code, round ${round}:\n${rx.output().slice(-2000)}`);
    if ((await listFiles(p.inbox)).length < expected.size) stoppedMidStream++;
    rx = spawned(p.bCfg);
    await rx.waitFor(/listening for transfers/);
  }
  await waitUntil(async () => (await listFiles(p.sent)).length === expected.size, 120_000, () => `all delivered; receiver said:\n${rx.output().slice(-2000)}`);
  assert.equal(await tx.stop('SIGTERM'), 0);
  assert.equal(await rx.stop('SIGTERM'), 0);
  outputs.push(rx.output());
  process.stdout.write(`# stopped the receiver ${stoppedMidStream} times while files were still arriving\n`);
  assert.ok(stoppedMidStream >= ROUNDS / 2, `the stops fell mid-stream (${stoppedMidStream} of ${ROUNDS})`);

  await assertDelivered(p, expected);
  const all = outputs.join('\n');
  assert.doesNotMatch(all, /already have /, 'no file was sent again after it had landed (it would have been answered "already have")');
  for (const rel of expected.keys()) {
    const n = all.split(`received ${rel}`).length - 1;
    assert.equal(n, 1, `${rel} announced ${n} times`);
  }
  for (const [i, out] of outputs.entries()) {
    const stopAt = out.indexOf('agent stopped');
    if (stopAt >= 0) assert.doesNotMatch(out.slice(stopAt), /received /, `run ${i}: nothing landed after "agent stopped"`);
  }
});

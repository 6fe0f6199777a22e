/**
 * Issue #5, guarantee 1: an interrupted transfer continues from the bytes the receiver
 * already holds, never from zero, and the SHA-256 still covers the whole file; a
 * partial whose bytes differ from the source is detected and the file is sent again
 * from 0. Interruptions are real: the FaultProxy cuts the TCP connection, or the
 * sending / receiving agent process is killed with SIGKILL.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { memoryLogger } from '../../src/log.js';
import { hashTree, listFiles, spawnCli, startAgent, waitUntil, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { assertDelivered, dropIntoOutbox, makePair, runCleanup, sleep, stagingData, watchInbox, type Cleanup } from './util.js';
import { EXIT_AFTER_KILL, underWine } from '../helpers/platform.js';

const MB = 1024 * 1024;
/**
 * Under wine the files are a quarter of their size: what is proven (the resume offset, the
 * bytes carried after it, the whole-file hash, a differing prefix) does not depend on it,
 * and every MB is written, hashed, proxied and hashed again by a node.exe several times
 * slower than Linux (the Windows lane, issue #14).
 */
const SCALE = underWine ? 4 : 1;
const mb = (n: number): number => Math.round((n * MB) / SCALE);
const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));

type Records = ReturnType<typeof memoryLogger>['records'];

function resumedAt(records: Records, file: string): number[] {
  const re = new RegExp(`^resuming ${file.replace(/\./g, '\\.')} from \\S+ at byte (\\d+) of \\d+$`);
  return records.flatMap((r) => {
    const m = re.exec(r.msg);
    return m ? [Number(m[1])] : [];
  });
}

async function inProcess(cfg: string): Promise<{ records: Records; port: number }> {
  const log = memoryLogger();
  const a = await startAgent(cfg, log);
  cleanup.push(() => a.stop(2000));
  return { records: log.records, port: a.listenAddress.port };
}

function spawned(cfg: string): Spawned {
  const s = spawnCli(['run', '--config', cfg]);
  cleanup.push(() => s.stop('SIGKILL'));
  return s;
}

test(`${mb(300) / MB} MB file, connection cut after ${mb(120) / MB} MB: the retry carries only the missing bytes; whole-file SHA-256 matches`, async () => {
  const size = mb(300);
  const cut = mb(120);
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { cutAfter: cut } : {}) });
  const rx = await inProcess(p.bCfg);
  await p.receiverListening(rx.port);
  await writeRandomFile(path.join(p.src, 'take1.mov'), size);
  const expected = await hashTree(p.src);
  const seen = watchInbox(p.inbox, new Map([['take1.mov', size]]));
  const tx = await inProcess(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  await waitUntil(async () => (await listFiles(p.inbox)).length === 1, 60_000, () => 'take1.mov in the inbox');
  assert.deepEqual(await seen.stop(), [], 'nothing partial ever visible in the inbox');

  const proxy = p.proxy!;
  assert.equal(proxy.conns[0]!.cut, true, 'the first connection was really cut');
  assert.equal(proxy.conns[0]!.up, cut);
  const offsets = resumedAt(rx.records, 'take1.mov');
  assert.equal(offsets.length, 1, `one resume logged by the receiver: ${JSON.stringify(rx.records.filter((r) => /resum/.test(r.msg)))}`);
  const x = offsets[0]!;
  assert.ok(x > 0 && x <= cut, `resumed at byte ${x}, within (0, ${cut}]`);
  assert.ok(tx.records.some((r) => r.msg === `resuming take1.mov at byte ${x} of ${size}`), 'the sender logged the same offset');
  const afterCut = proxy.totalUp - proxy.conns[0]!.up;
  assert.ok(afterCut >= size - x && afterCut < size - x + 2 * MB, `bytes carried after the cut: ${afterCut}, expected ≈ size − X = ${size - x} (not ${size})`);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 10_000, () => 'archived after the ack');
  await assertDelivered(p, expected);
});

test('sending agent killed with SIGKILL mid-file and restarted: the receiver resumes at the bytes it holds', async () => {
  const size = mb(120);
  const stallAt = mb(40);
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { stallAfter: stallAt } : {}) });
  const rx = await inProcess(p.bCfg);
  await p.receiverListening(rx.port);
  await writeRandomFile(path.join(p.src, 'render.exr'), size);
  const expected = await hashTree(p.src);
  await dropIntoOutbox(p.src, p.outbox);
  const first = spawned(p.aCfg);
  const proxy = p.proxy!;
  // The connection is held after stallAt bytes, so the kill certainly lands mid-file.
  await waitUntil(() => proxy.conns[0]?.stalled === true, 30_000, () => `stall reached; sender said:\n${first.output().slice(-2000)}`);
  // The receiver holds some bytes of the partial: the kill lands mid-file.
  await waitUntil(async () => {
    const [f] = await stagingData(p.staging);
    return f !== undefined && (await fs.stat(path.join(p.staging, f))).size > 0;
  }, 5000, () => 'a partial with data in staging');
  first.child.kill('SIGKILL');
  await first.stop();
  assert.deepEqual(await listFiles(p.outbox), ['render.exr'], 'the unconfirmed file is still in the outbox, not in sent/');
  await waitUntil(() => rx.records.some((r) => r.msg.startsWith('connection lost while receiving; keeping')), 5000, () => 'receiver noticed the dead sender');
  assert.deepEqual(await listFiles(p.inbox), []);

  const second = spawned(p.aCfg);
  await waitUntil(async () => (await listFiles(p.inbox)).length === 1, 30_000, () => `arrival after restart; sender said:\n${second.output().slice(-2000)}`);
  const x = resumedAt(rx.records, 'render.exr')[0] ?? 0;
  assert.ok(x > 0 && x <= stallAt, `resumed at byte ${x}, within (0, ${stallAt}]`);
  await second.waitFor(new RegExp(`resuming render\\.exr at byte ${x} of ${size}`), 5000);
  const afterKill = proxy.totalUp - proxy.conns[0]!.up;
  assert.ok(afterKill < size - x + 2 * MB, `bytes carried after the restart: ${afterKill} ≈ ${size - x}, not ${size}`);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 10_000, () => 'archived');
  await assertDelivered(p, expected);
  assert.equal(await second.stop('SIGTERM'), EXIT_AFTER_KILL);
});

test('receiving agent killed with SIGKILL mid-file and restarted: its partial survives and the transfer resumes', async () => {
  const size = mb(100);
  const stallAt = mb(30);
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { stallAfter: stallAt } : {}) });
  const first = spawned(p.bCfg);
  await p.receiverListening(await first.transferPort());
  await writeRandomFile(path.join(p.src, 'clip.mov'), size);
  const expected = await hashTree(p.src);
  await inProcess(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  const proxy = p.proxy!;
  await waitUntil(() => proxy.conns[0]?.stalled === true, 30_000, () => 'stall reached');
  // Wait until the receiver has written what reached it, then kill it.
  let last = -1;
  await waitUntil(async () => {
    const [f] = await stagingData(p.staging);
    const n = f ? (await fs.stat(path.join(p.staging, f))).size : 0;
    const stable = n > 0 && n === last;
    last = n;
    await sleep(100);
    return stable;
  }, 10_000, () => 'the partial stops growing');
  first.child.kill('SIGKILL');
  await first.stop();
  const held = (await fs.stat(path.join(p.staging, (await stagingData(p.staging))[0]!))).size;
  assert.ok(held > 0, 'the partial survived the crash');

  const second = spawned(p.bCfg);
  await waitUntil(async () => (await listFiles(p.inbox)).length === 1, 30_000, () => `arrival after restart; receiver said:\n${second.output().slice(-2000)}`);
  await second.waitFor(new RegExp(`resuming clip\\.mov from render at byte ${held} of ${size}`), 5000);
  const afterKill = proxy.totalUp - proxy.conns[0]!.up;
  assert.ok(afterKill < size - held + 2 * MB, `bytes carried after the restart: ${afterKill} ≈ ${size - held}, not ${size}`);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 10_000, () => 'archived');
  await assertDelivered(p, expected);
  assert.equal(await second.stop('SIGTERM'), EXIT_AFTER_KILL);
});

test('a partial edited in staging (prefix differs from the source) is detected and the file is re-sent from 0', async () => {
  const size = mb(64);
  const cut = mb(20);
  const p = await makePair(cleanup, { proxy: (i) => (i === 0 ? { cutAfter: cut } : { refuse: true }) });
  const rx = await inProcess(p.bCfg);
  await p.receiverListening(rx.port);
  await writeRandomFile(path.join(p.src, 'plate.dpx'), size);
  const expected = await hashTree(p.src);
  const tx = await inProcess(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  const proxy = p.proxy!;
  await waitUntil(() => rx.records.some((r) => r.msg.startsWith('connection lost while receiving; keeping')), 30_000, () => 'the cut');
  // The receiver flushes and closes its partial after logging; done once the file holds what it kept.
  const kept = Number(/keeping (\d+) bytes/.exec(rx.records.find((r) => r.msg.startsWith('connection lost while receiving; keeping'))!.msg)![1]);
  let partPath = '';
  await waitUntil(async () => {
    const [f] = await stagingData(p.staging);
    partPath = f === undefined ? '' : path.join(p.staging, f);
    return f !== undefined && (await fs.stat(partPath)).size === kept;
  }, 30_000, () => `the partial in staging holds the ${kept} bytes kept`);
  const held = (await fs.stat(partPath)).size;
  assert.ok(held > 1000);
  const fh = await fs.open(partPath, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 1000);
  b[0] = b[0]! ^ 0xff;
  await fh.write(b, 0, 1, 1000);
  await fh.close();

  const before = proxy.totalUp;
  proxy.setPlan(() => ({}));
  await waitUntil(async () => (await listFiles(p.inbox)).length === 1, 30_000, () => 'arrival');
  assert.ok(tx.records.some((r) => r.msg === "receiver's partial of plate.dpx differs from ours (XXH3-128): sending it again from the start"), 'the sender detected the differing prefix');
  assert.ok(rx.records.some((r) => /^sender abandoned plate\.dpx: prefix mismatch/.test(r.msg)), 'the receiver dropped its partial');
  assert.ok(proxy.totalUp - before >= size, `the whole file was sent again (${proxy.totalUp - before} bytes)`);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 10_000, () => 'archived');
  await assertDelivered(p, expected);
});

/**
 * Issue #5, guarantee 3: the receiver's disk is full. The inbox and its staging folder
 * (the default sibling `.inbox.tdxfer-staging`) live on a real, small tmpfs mounted
 * for the test (root only; unmounted in cleanup even on failure).
 *
 * The receiver keeps a reserve of 64 MiB beyond the announced size (Inbox
 * DEFAULT_RESERVE_BYTES), so the volume is 100 MiB rather than 20: on a smaller one
 * every file would be refused at OFFER.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import { hashTree, listFiles, startAgent, tempDir, waitUntil, writeRandomFile } from '../helpers/agents.js';
import { assertDelivered, dropIntoOutbox, makePair, runCleanup, stagingData, watchInbox, type Cleanup } from './util.js';

const MB = 1024 * 1024;
const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));

function canMount(): { ok: boolean; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'needs Linux tmpfs' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'mounting a tmpfs needs root (CI runs as root)' };
  return { ok: true, reason: '' };
}
const skip = canMount().ok ? false : canMount().reason;

/** A fresh folder with a tmpfs of `mb` MiB mounted on it; unmounted and removed in cleanup. */
async function smallVolume(mb: number): Promise<string> {
  const dir = await tempDir('tdx-vol-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir]);
  cleanup.push(async () => {
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]); // still busy: detach now, the kernel frees it when unused
    }
    await fs.rm(dir, { recursive: true, force: true });
  });
  return dir;
}

type Records = ReturnType<typeof memoryLogger>['records'];

async function agent(cfg: string): Promise<{ a: Agent; records: Records }> {
  const log = memoryLogger();
  const a = await startAgent(cfg, log);
  cleanup.push(() => a.stop(2000));
  return { a, records: log.records };
}

function jobOf(a: Agent, file: string) {
  return a.snapshot().active.find((j) => j.file === file);
}

test('a file larger than the free space is refused at OFFER with a clear error; it waits in the outbox, others proceed, and it arrives once space is there', { skip }, async () => {
  const vol = await smallVolume(100);
  const p = await makePair(cleanup, { inboxPath: path.join(vol, 'inbox') });
  const rx = await agent(p.bCfg);
  await p.receiverListening(rx.a.listenAddress.port);
  await writeRandomFile(path.join(p.src, 'big.bin'), 60 * MB);
  await writeRandomFile(path.join(p.src, 'small.bin'), 5 * MB);
  const expected = await hashTree(p.src);
  const seen = watchInbox(p.inbox, new Map([['big.bin', 60 * MB], ['small.bin', 5 * MB]]));
  const tx = await agent(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);

  await waitUntil(async () => (jobOf(tx.a, 'big.bin')?.attempts ?? 0) >= 3, 20_000, () => `big.bin refused several times: ${JSON.stringify(jobOf(tx.a, 'big.bin'))}`);
  // Receiver: names the inbox, its path, the free space and what it needs.
  const refusal = rx.records.find((r) => r.msg.startsWith('refused big.bin from render:'));
  assert.ok(refusal, 'the receiver logged the refusal');
  assert.match(refusal.msg, new RegExp(`Inbox "renders" \\(${p.inbox.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) has [\\d.]+ MiB free but needs 124\\.0 MiB for "big\\.bin"`));
  // Sender: the job carries the receiver's reason and keeps waiting (never dropped).
  const job = jobOf(tx.a, 'big.bin')!;
  assert.equal(job.state === 'waiting' || job.state === 'queued' || job.state === 'sending', true, `job state ${job.state}`);
  assert.match(String(job.error), /NO_SPACE.*Inbox "renders".*needs 124\.0 MiB/);
  // Other files are not blocked by it.
  await waitUntil(async () => (await listFiles(p.inbox)).includes('small.bin'), 10_000, () => 'small.bin arrives meanwhile');
  await waitUntil(async () => (await listFiles(p.sent)).includes('small.bin'), 5000, () => 'small.bin archived');
  assert.deepEqual((await listFiles(p.outbox)).filter((r) => !r.startsWith('sent/')), ['big.bin'], 'big.bin stays in the outbox');
  assert.deepEqual(await stagingData(p.staging), [], 'nothing partial in staging');

  // Space freed (the volume grows): the next retry succeeds.
  execFileSync('mount', ['-o', 'remount,size=200m', vol]);
  await waitUntil(async () => (await listFiles(p.sent)).length === 2, 20_000, () => 'big.bin arrives once space is there');
  assert.deepEqual(await seen.stop(), []);
  await assertDelivered(p, expected);
});

test('the disk fills up DURING a transfer: aborted with a clear error, partial deleted, retried until space is freed, then it arrives once', { skip }, async () => {
  const vol = await smallVolume(100);
  const size = 30 * MB;
  const p = await makePair(cleanup, { inboxPath: path.join(vol, 'inbox'), proxy: (i) => (i === 0 ? { stallAfter: 10 * MB } : {}) });
  const rx = await agent(p.bCfg);
  await p.receiverListening(rx.a.listenAddress.port);
  await writeRandomFile(path.join(p.src, 'frame.exr'), size);
  const expected = await hashTree(p.src);
  const seen = watchInbox(p.inbox, new Map([['frame.exr', size]]));
  const tx = await agent(p.aCfg);
  await dropIntoOutbox(p.src, p.outbox);
  const proxy = p.proxy!;
  // 30 MiB + 64 MiB reserve fit at OFFER; hold the stream at 10 MiB, then fill the volume.
  await waitUntil(() => proxy.conns[0]?.stalled === true, 20_000, () => 'stall reached');
  await waitUntil(async () => (await stagingData(p.staging)).length === 1, 5000, () => 'partial in staging');
  const filler = path.join(vol, 'other-app.bin');
  const fh = await fs.open(filler, 'w');
  try {
    for (;;) await fh.write(Buffer.alloc(MB, 7));
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'ENOSPC');
  } finally {
    await fh.close();
  }
  proxy.unstall();

  await waitUntil(() => rx.records.some((r) => r.msg.startsWith('failed writing frame.exr from render:')), 20_000, () => `the receiver hit the full disk; receiver log:\n${rx.records.slice(-15).map((r) => `${r.level} ${r.msg} ${JSON.stringify(r.fields)}`).join('\n')}\nsender log:\n${tx.records.slice(-10).map((r) => `${r.level} ${r.msg}`).join('\n')}`);
  const failure = rx.records.find((r) => r.msg.startsWith('failed writing frame.exr from render:'))!;
  assert.match(failure.msg, new RegExp(`disk is full while writing inbox "renders" \\(${p.inbox.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\), file "frame\\.exr"; free space on that volume`));
  await waitUntil(async () => (await stagingData(p.staging)).length === 0, 5000, () => 'the partial is deleted');
  await waitUntil(async () => (jobOf(tx.a, 'frame.exr')?.attempts ?? 0) >= 3, 20_000, () => 'the sender keeps retrying');
  assert.match(String(jobOf(tx.a, 'frame.exr')?.error), /NO_SPACE/);
  assert.deepEqual(await listFiles(p.outbox), ['frame.exr'], 'still in the outbox, not in sent/');
  assert.deepEqual(await listFiles(p.inbox), []);
  // One more refused attempt, then look again: still nothing left behind.
  const attempts = jobOf(tx.a, 'frame.exr')?.attempts ?? 0;
  await waitUntil(() => (jobOf(tx.a, 'frame.exr')?.attempts ?? 0) > attempts, 20_000, () => 'another attempt');
  assert.deepEqual(await stagingData(p.staging), [], 'no partial left behind while refusing');

  await fs.rm(filler);
  await waitUntil(async () => (await listFiles(p.sent)).length === 1, 20_000, () => 'frame.exr arrives once space is freed');
  assert.deepEqual(await seen.stop(), []);
  assert.equal(rx.a.snapshot().received.filter((r) => r.file === 'frame.exr').length, 1, 'landed once');
  await assertDelivered(p, expected);
});

/**
 * Issue #14, outbox side of Windows locking: a file another program still has open
 * (TouchDesigner's Movie File Out TOP, an encoder, an Explorer copy) is still being
 * written and is never sent on Windows, however long it keeps the same size. The wine
 * lane runs this with the real Windows node.exe; a plain Node `open(..., 'w')` handle is
 * the writer (an exclusive open fails against any open handle).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { OutboxConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { OutboxWatcher, UV_FS_O_EXLOCK, type ReadyFile } from '../../src/outbox/watcher.js';
import { renameRetrying, unlinkQuiet } from '../../src/fsutil.js';
import { waitUntil } from '../helpers/agents.js';
import { isWindows } from '../helpers/platform.js';
import { teardownFor } from '../helpers/tmp.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

test('Windows: a file held open by its writer across several settle windows is not sent; it is sent once closed, in its final version', { skip: isWindows ? false : 'Windows-only: POSIX has no "open elsewhere" signal (settleMs decides there)' }, async (t) => {
  const defer = teardownFor(t);
  const root = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-winlock-'));
  defer(() => rm(root, { recursive: true, force: true, maxRetries: 5 }));
  const outbox: OutboxConfig = { path: root, to: [], include: [], exclude: [], after: 'archive', settleMs: 100 };
  const log = memoryLogger();
  const w = new OutboxWatcher(outbox, { log });
  const ready: ReadyFile[] = [];
  w.on('ready', (f) => ready.push(f));
  defer(() => w.stop());
  await w.start();

  const abs = path.join(root, 'render.mov');
  const writer = await open(abs, 'w');
  let closed = false;
  defer(async () => {
    if (!closed) await writer.close();
  });
  await writer.write(Buffer.alloc(64 * 1024, 1));
  // A control file written and closed at the same time must go out: the watcher is live.
  await writeFile(path.join(root, 'control.png'), 'done');
  await waitUntil(() => ready.some((r) => r.rel === 'control.png'), 30_000, () => 'control.png sent');
  // The writer pauses (same size, same mtime) for many settle windows, still holding the file.
  await waitUntil(() => log.records.some((r) => r.msg.includes('another program has it open') && r.msg.includes('render.mov')), 30_000, () => 'the "waiting for render.mov" log line');
  const seenAt = Date.now();
  while (Date.now() - seenAt < 10 * outbox.settleMs) await sleep(outbox.settleMs);
  assert.deepEqual(ready.filter((r) => r.rel === 'render.mov'), [], 'not sent while its writer holds it open');

  await writer.write(Buffer.alloc(32 * 1024, 2));
  await writer.close();
  closed = true;
  await waitUntil(() => ready.some((r) => r.rel === 'render.mov'), 30_000, () => 'render.mov sent after its writer closed it');
  const sent = ready.filter((r) => r.rel === 'render.mov');
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.size, 96 * 1024, 'the final version, not the one seen while it was written');
  assert.equal(log.records.filter((r) => r.msg.includes('another program has it open')).length, 1, 'one log line per held version');
});

test('POSIX: a file kept open but unchanged for settleMs is sent (settling decides; documented in README "Outboxes")', { skip: isWindows ? 'POSIX behaviour; Windows is the case above' : false }, async (t) => {
  const defer = teardownFor(t);
  const root = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-winlock-'));
  defer(() => rm(root, { recursive: true, force: true, maxRetries: 5 }));
  const w = new OutboxWatcher({ path: root, to: [], include: [], exclude: [], after: 'archive', settleMs: 100 }, { log: memoryLogger() });
  const ready: ReadyFile[] = [];
  w.on('ready', (f) => ready.push(f));
  defer(() => w.stop());
  await w.start();
  const writer = await open(path.join(root, 'render.mov'), 'w');
  defer(() => writer.close());
  await writer.write(Buffer.alloc(1000, 1));
  await waitUntil(() => ready.some((r) => r.rel === 'render.mov'), 30_000, () => 'render.mov sent');
});

test('Windows: renames and removals of the agent\'s files wait out a transient exclusive handle (antivirus, indexer)', { skip: isWindows ? false : 'Windows-only: POSIX has no mandatory file locks' }, async (t) => {
  const defer = teardownFor(t);
  const root = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-winlock-'));
  defer(() => rm(root, { recursive: true, force: true, maxRetries: 5 }));
  const victim = path.join(root, 'partial.bin');
  const target = path.join(root, 'journal.jsonl');
  await writeFile(victim, 'staged');
  await writeFile(target, 'old');
  // A scanner holding both files without sharing for a moment.
  const holdV = await open(victim, constants.O_RDONLY | UV_FS_O_EXLOCK);
  const holdT = await open(target, constants.O_RDONLY | UV_FS_O_EXLOCK);
  await assert.rejects(rename(victim, target), (e: Error & { code?: string }) => ['EBUSY', 'EPERM', 'EACCES'].includes(e.code ?? ''), 'the handle really blocks a plain rename');
  const released = sleep(400).then(async () => {
    await holdV.close();
    await holdT.close();
  });
  await writeFile(path.join(root, 'journal.tmp'), 'new');
  await renameRetrying(path.join(root, 'journal.tmp'), target);
  await unlinkQuiet(victim);
  await released;
  assert.equal(await readFile(target, 'utf8'), 'new');
  assert.deepEqual((await readdir(root)).sort(), ['journal.jsonl']);
});

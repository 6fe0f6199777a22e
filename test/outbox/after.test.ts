import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AfterAction, OutboxConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { applyAfter, archivePath, finishAfterBatch, newAfterBatch, removeEmptyParents } from '../../src/outbox/after.js';
import { SentJournal } from '../../src/outbox/journal.js';
import type { ReadyFile } from '../../src/outbox/watcher.js';
import { linuxOnly } from '../helpers/platform.js';

async function setup(t: { after: (fn: () => Promise<void>) => void }, after: AfterAction) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-after-'));
  const root = path.join(dir, 'outbox');
  await mkdir(root);
  const outbox: OutboxConfig = { path: root, to: [], include: [], exclude: [], after, settleMs: 0 };
  const journal = await SentJournal.open(path.join(dir, 'data', 'sent.jsonl'), { exists: () => true });
  // Close before removing: Windows cannot remove a folder holding an open file (ENOTEMPTY).
  t.after(async () => {
    await journal.close();
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  const log = memoryLogger();
  /** Writes a file and returns it as the watcher would have emitted it. */
  const file = async (rel: string, data = `data of ${rel}`): Promise<ReadyFile> => {
    const abs = path.join(root, ...rel.split('/'));
    await mkdir(path.dirname(abs), { recursive: true });
    await writeFile(abs, data);
    const st = await stat(abs);
    return { outbox, rel, abs, size: st.size, mtimeMs: st.mtimeMs };
  };
  return { dir, root, outbox, journal, log, file };
}

test('archive moves to sent/<rel>, keeps the subpath, removes emptied folders but never the outbox', async (t) => {
  const s = await setup(t, 'archive');
  const f = await s.file('shot1/deep/f.0001.png');
  await s.journal.recordDestination(s.root, f.rel, f.size, f.mtimeMs, 'peerA/in');
  const res = await applyAfter(f, s.journal, s.log);
  const to = path.join(s.root, 'sent', 'shot1', 'deep', 'f.0001.png');
  assert.deepEqual(res, { action: 'archived', to });
  assert.equal(await readFile(to, 'utf8'), 'data of shot1/deep/f.0001.png');
  assert.equal(existsSync(f.abs), false);
  assert.equal(existsSync(path.join(s.root, 'shot1')), false, 'emptied folders are removed');
  assert.deepEqual(await readdir(s.root), ['sent']);
  assert.equal(s.journal.doneDestinations(s.root, f.rel, f.size, f.mtimeMs).size, 0, 'progress records are dropped');

  const g = await s.file('top.png');
  await applyAfter(g, s.journal, s.log);
  assert.deepEqual(await readdir(s.root), ['sent'], 'the outbox itself stays');
  assert.equal(archivePath(s.root, 'a/b.png'), path.join(s.root, 'sent', 'a', 'b.png'));
});

test('archive replaces an older archived file of the same name and keeps non-empty folders', async (t) => {
  const s = await setup(t, 'archive');
  const old = await s.file('shot/f.png', 'old render');
  await applyAfter(old, s.journal, s.log);
  await s.file('shot/other.png');
  const f = await s.file('shot/f.png', 'newest render, longer');
  const res = await applyAfter(f, s.journal, s.log);
  assert.equal(res.action, 'archived');
  assert.equal(await readFile(path.join(s.root, 'sent', 'shot', 'f.png'), 'utf8'), 'newest render, longer');
  assert.deepEqual(await readdir(path.join(s.root, 'shot')), ['other.png']);
});

test('archive and delete leave a file that changed since it was sent', async (t) => {
  for (const action of ['archive', 'delete'] as const) {
    const s = await setup(t, action);
    const f = await s.file('shot/r.png', 'v1');
    await writeFile(f.abs, 'v2 re-rendered');
    const res = await applyAfter(f, s.journal, s.log);
    assert.equal(res.action, 'changed', action);
    assert.equal(res.action === 'changed' && res.size, Buffer.byteLength('v2 re-rendered'));
    assert.equal(await readFile(f.abs, 'utf8'), 'v2 re-rendered');
    assert.equal(existsSync(path.join(s.root, 'sent')), false);
    // same size, only the mtime differs: still a new version
    const g = await s.file('same.png', 'abc');
    await utimes(g.abs, new Date(), new Date(g.mtimeMs + 5000));
    assert.equal((await applyAfter(g, s.journal, s.log)).action, 'changed');
    assert.equal(existsSync(g.abs), true);
  }
});

test('delete removes the file and emptied folders', async (t) => {
  const s = await setup(t, 'delete');
  const f = await s.file('a/b/c.exr');
  await s.file('a/keep.txt');
  assert.deepEqual(await applyAfter(f, s.journal, s.log), { action: 'deleted' });
  assert.equal(existsSync(path.join(s.root, 'a', 'b')), false);
  assert.deepEqual(await readdir(path.join(s.root, 'a')), ['keep.txt']);
  const g = await s.file('x.png');
  await applyAfter(g, s.journal, s.log);
  assert.equal(existsSync(s.root), true);
});

test('keep leaves the file and records it so a restart does not send it again', async (t) => {
  const s = await setup(t, 'keep');
  const f = await s.file('k/kept.png');
  assert.deepEqual(await applyAfter(f, s.journal, s.log), { action: 'kept' });
  assert.equal(await readFile(f.abs, 'utf8'), 'data of k/kept.png');
  assert.equal(s.journal.has(s.root, 'k/kept.png', f.size, f.mtimeMs), true);
  await s.journal.close();
  const reopened = await SentJournal.open(s.journal.file); // default compaction: the file is still there
  try {
    assert.equal(reopened.has(s.root, 'k/kept.png', f.size, f.mtimeMs), true);
  } finally {
    await reopened.close(); // before setup's hook removes the folder (Windows: ENOTEMPTY while open)
  }
});

test('a file already removed by the user is reported missing', async (t) => {
  const s = await setup(t, 'archive');
  const f = await s.file('gone.png');
  await rm(f.abs);
  assert.deepEqual(await applyAfter(f, s.journal, s.log), { action: 'missing' });
});

test('archive failure is a TdxError that says what to do, and the file stays', async (t) => {
  const s = await setup(t, 'archive');
  await mkdir(path.join(s.root, 'sent', 'blocked.png', 'inside'), { recursive: true });
  const f = await s.file('blocked.png');
  await assert.rejects(applyAfter(f, s.journal, s.log, { tries: 1 }), (e: Error & { code?: string }) => e.code === 'AFTER_ARCHIVE_FAILED' && e.message.includes('sent'));
  assert.equal(existsSync(f.abs), true);
});

test('archive across volumes (EXDEV) falls back to copy + unlink', { skip: linuxOnly('/dev/shm as a second file system') }, async (t) => {
  const shm = '/dev/shm';
  const s = await setup(t, 'archive');
  let other: string | null = null;
  try {
    if ((await stat(shm)).dev !== (await stat(s.root)).dev) other = await mkdtemp(path.join(shm, 'tdxfer-after-'));
  } catch {
    other = null;
  }
  if (!other) {
    t.skip('no second file system (/dev/shm) to provoke EXDEV');
    return;
  }
  const otherDir = other;
  t.after(() => rm(otherDir, { recursive: true, force: true }));
  await symlink(otherDir, path.join(s.root, 'sent'));
  const f = await s.file('shot/x.png', 'cross-device');
  const res = await applyAfter(f, s.journal, s.log);
  assert.equal(res.action, 'archived');
  assert.equal(await readFile(path.join(otherDir, 'shot', 'x.png'), 'utf8'), 'cross-device');
  assert.equal(existsSync(f.abs), false);
  assert.deepEqual((await readdir(path.join(otherDir, 'shot'))).filter((n) => n.endsWith('.tmp')), [], 'no temp file left');
});

test('removeEmptyParents stops at the root and at the first non-empty folder', async (t) => {
  const s = await setup(t, 'archive');
  await mkdir(path.join(s.root, 'a', 'b', 'c'), { recursive: true });
  await writeFile(path.join(s.root, 'a', 'file'), '');
  await removeEmptyParents(s.root, path.join(s.root, 'a', 'b', 'c'));
  assert.deepEqual(await readdir(path.join(s.root, 'a')), ['file']);
  await removeEmptyParents(s.root, s.root);
  assert.equal(existsSync(s.root), true);
  await removeEmptyParents(s.root, path.join(s.dir)); // outside: untouched
  assert.equal(existsSync(s.dir), true);
});

test('a batch makes each archive folder once, removes emptied folders only at its end, and copes with a folder removed meanwhile', async (t) => {
  const s = await setup(t, 'archive');
  const batch = newAfterBatch();
  const files = [await s.file('seq/a/f1.png'), await s.file('seq/a/f2.png'), await s.file('seq/b/f3.png')];
  for (const f of files.slice(0, 2)) assert.equal((await applyAfter(f, s.journal, s.log, { batch })).action, 'archived');
  assert.ok(existsSync(path.join(s.root, 'seq', 'a')), 'emptied folders stay until the batch ends');
  // someone removes the archive folder made earlier in this batch
  await rm(path.join(s.root, 'sent', 'seq', 'b'), { recursive: true, force: true });
  await mkdir(path.join(s.root, 'sent', 'seq'), { recursive: true });
  batch.made.add(path.join(s.root, 'sent', 'seq', 'b'));
  assert.equal((await applyAfter(files[2]!, s.journal, s.log, { batch })).action, 'archived');
  assert.equal(await readFile(path.join(s.root, 'sent', 'seq', 'b', 'f3.png'), 'utf8'), 'data of seq/b/f3.png');
  await finishAfterBatch(batch, s.root);
  assert.deepEqual(await readdir(s.root), ['sent'], 'emptied folders removed at the end, the outbox kept');
  assert.deepEqual((await readdir(path.join(s.root, 'sent', 'seq', 'a'))).sort(), ['f1.png', 'f2.png']);
});

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { memoryLogger } from '../../src/log.js';
import { chooseStaging, FALLBACK_DIRNAME } from '../../src/inbox/staging.js';
import { Journal, type LandedRecord } from '../../src/inbox/journal.js';
import { fsyncDir, isInside, renameWithRetry, Mutex } from '../../src/fsutil.js';
import { InboxError } from '../../src/inbox/errors.js';
import { fixture, sha, listFiles, send } from './util.js';
import { linuxOnly } from '../helpers/platform.js';

async function tmp(): Promise<{ dir: string; done: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdxfer-parts-'));
  return { dir, done: () => fs.rm(dir, { recursive: true, force: true }) };
}

describe('staging choice', () => {
  test('same device: the configured folder, no suffix', () => {
    const c = chooseStaging({ inboxPath: '/data/in', configured: '/data/.in.tdxfer-staging', inboxDev: 5, stagingDev: 5 });
    assert.deepEqual(c, { dir: '/data/.in.tdxfer-staging', suffix: '', fallback: false, reason: null });
  });
  test('other device: dot-folder inside the inbox with .part files, reason mentions EXDEV', () => {
    const c = chooseStaging({ inboxPath: '/data/in', configured: '/other/stage', inboxDev: 5n, stagingDev: 6n });
    assert.equal(c.dir, path.join('/data/in', FALLBACK_DIRNAME));
    assert.equal(c.suffix, '.part');
    assert.equal(c.fallback, true);
    assert.match(c.reason!, /another volume.*EXDEV/);
  });
  test('staging cannot be created: fallback with the error in the reason', () => {
    const c = chooseStaging({ inboxPath: '/data/in', configured: '/ro/stage', inboxDev: 5, stagingDev: null, stagingError: 'EROFS' });
    assert.equal(c.fallback, true);
    assert.match(c.reason!, /could not be created \(EROFS\)/);
  });

  test('real fallback when staging is on another device (/dev/shm tmpfs)', { skip: linuxOnly('/dev/shm (a tmpfs)') }, async (t) => {
    const shm = '/dev/shm';
    const shmDev = await fs.stat(shm).then((s) => s.dev, () => null);
    if (shmDev === null || shmDev === (await fs.stat(os.tmpdir())).dev) {
      t.skip('no second device available here');
      return;
    }
    const stagingOnShm = await fs.mkdtemp(path.join(shm, 'tdxfer-test-'));
    const fx = await fixture('overwrite', { staging: stagingOnShm });
    try {
      const ib = await fx.open();
      assert.equal(ib.stagingDir, path.join(fx.inboxDir, FALLBACK_DIRNAME));
      assert.ok(fx.log.records.some((r) => r.level === 'warn' && /another volume/.test(r.msg)));
      const data = Buffer.from('hello over a fallback');
      const f = await send(ib, 'x.txt', data, { upTo: 5 });
      const staged = await fs.readdir(ib.stagingDir);
      assert.ok(staged.some((n) => n.endsWith('.part')), staged.join(','));
      await f.write(data.subarray(5));
      const landed = await f.commit(sha(data));
      assert.deepEqual(await fs.readFile(landed.abs), data);
      assert.deepEqual(await listFiles(fx.inboxDir), ['x.txt']);
      assert.deepEqual(await fs.readdir(stagingOnShm), []);
      // the fallback dot-folder is not a valid target
      await assert.rejects(ib.begin({ source: 's', path: `${FALLBACK_DIRNAME}/y`, size: 1, mtimeMs: 1, resume: true }), (e: unknown) => e instanceof InboxError && e.code === 'BAD_NAME');
    } finally {
      await fx.cleanup();
      await fs.rm(stagingOnShm, { recursive: true, force: true });
    }
  });
});

describe('dedupe journal', () => {
  // A journal keeps its file open while appends keep coming (jsonl.ts); flush() closes it, as
  // an inbox's close() does. Windows cannot remove a folder with a file open in it.
  const opened: Journal[] = [];
  const openJournal = async (...args: Parameters<typeof Journal.open>): Promise<Journal> => {
    const j = await Journal.open(...args);
    opened.push(j);
    return j;
  };
  const flushJournals = async (): Promise<void> => {
    for (const j of opened.splice(0)) await j.flush();
  };
  const rec = (i: number, over: Partial<LandedRecord> = {}): LandedRecord => ({
    source: 's',
    rel: `f${i}`,
    landedRel: `f${i}`,
    size: i,
    mtimeMs: i,
    sha256: 'ab',
    at: i,
    ...over,
  });

  for (const durable of [false, true]) test(`persists, latest record per (source, rel) wins, tolerates a torn last line${durable ? ' (durable: fsync per append)' : ''}`, async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      const j = await openJournal(t.dir, log, undefined, { durable });
      await j.record(rec(1));
      await j.record(rec(2));
      await j.record(rec(1, { size: 99 }));
      await fs.appendFile(j.file, '{"source":"s","rel":"f3","landed');
      await flushJournals(); // the earlier agent stopped (its inbox's close() flushes it)
      const j2 = await openJournal(t.dir, log);
      assert.equal(j2.get('s', 'f1')?.size, 99);
      assert.equal(j2.get('s', 'f2')?.size, 2);
      assert.equal(j2.get('s', 'f3'), undefined);
      assert.equal(j2.get('other', 'f1'), undefined);
      assert.ok(log.records.some((r) => r.level === 'warn' && /unreadable lines/.test(r.msg)));
      // compacted: the torn line is gone, appends continue on a clean line
      await j2.record(rec(4));
      const lines = (await fs.readFile(j2.file, 'utf8')).trimEnd().split('\n');
      assert.equal(lines.length, 3);
      for (const l of lines) JSON.parse(l);
    } finally {
      await flushJournals();
      await t.done();
    }
  });

  test('bounded: keeps the last `limit` records, compacts on open and while running', async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      const j = await openJournal(t.dir, log, 10);
      for (let i = 0; i < 25; i++) await j.record(rec(i));
      assert.equal(j.size, 10);
      assert.ok((await fs.readFile(j.file, 'utf8')).trimEnd().split('\n').length <= 20);
      await flushJournals(); // the earlier agent stopped (its inbox's close() flushes it)
      const j2 = await openJournal(t.dir, log, 5);
      assert.equal(j2.size, 5);
      assert.equal(j2.get('s', 'f24')?.size, 24);
      assert.equal(j2.get('s', 'f19'), undefined);
      assert.equal((await fs.readFile(j2.file, 'utf8')).trimEnd().split('\n').length, 5);
    } finally {
      await flushJournals();
      await t.done();
    }
  });

  test('pending ("landed, not yet announced"): survives a reopen until marked; the mark survives too; a newer landing of the same file keeps its own', async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      const j = await openJournal(t.dir, log);
      await j.recordMany([rec(1, { pending: true, from: 'render' }), rec(2, { pending: true })]);
      await j.record(rec(3));
      assert.deepEqual(j.pending().map((r) => r.rel), ['f1', 'f2']);
      await j.markAnnounced(rec(1));
      assert.deepEqual(j.pending().map((r) => r.rel), ['f2']);
      await flushJournals(); // the earlier agent stopped (its inbox's close() flushes it)
      const j2 = await openJournal(t.dir, log);
      assert.deepEqual(j2.pending().map((r) => [r.rel, r.from]), [['f2', undefined]]);
      assert.equal(j2.get('s', 'f1')?.size, 1, 'the dedupe record stays');
      // The same file lands again before the first landing was announced: two pending landings.
      await j2.record(rec(2, { pending: true, at: 1000, size: 20 }));
      assert.deepEqual(j2.pending().map((r) => r.size), [2, 20]);
      await j2.markAnnounced(rec(2, { at: 1000 }));
      await flushJournals();
      const j3 = await openJournal(t.dir, log);
      assert.deepEqual(j3.pending().map((r) => r.size), [2], 'only the older landing is still pending');
      assert.equal(j3.get('s', 'f2')?.size, 20, 'the latest record still wins for dedupe');
      assert.ok(!log.records.some((r) => r.level === 'warn'), 'mark lines are read, not skipped as unreadable');
    } finally {
      await flushJournals();
      await t.done();
    }
  });

  test('markAnnounced is write-ahead: its mark is in the file when it returns; a journal with marks appended after the announcement (before the write-ahead mark) reads the same', async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      const j = await openJournal(t.dir, log);
      await j.recordMany([rec(1, { pending: true }), rec(2, { pending: true })]);
      void j.markAnnounced(rec(1));
      const lines = readFileSync(j.file, 'utf8').trimEnd().split('\n');
      assert.deepEqual(JSON.parse(lines.at(-1)!), { announced: { source: 's', rel: 'f1', at: 1 } }, 'the mark is in the file before markAnnounced returned');
      await flushJournals();
      assert.deepEqual((await openJournal(t.dir, log)).pending().map((r) => r.rel), ['f2']);
      // A journal written by an agent that marked after the announcement (asynchronously): the same lines.
      const old = path.join(t.dir, 'old');
      await fs.mkdir(old);
      await fs.writeFile(
        path.join(old, 'landed.jsonl'),
        [
          '{"source":"render","rel":"a.mov","landedRel":"a.mov","size":3,"mtimeMs":null,"xxh128":"00","at":10,"pending":true,"from":"render","via":"tdxfer"}',
          '{"source":"render","rel":"b.mov","landedRel":"b.mov","size":4,"mtimeMs":null,"xxh128":"01","at":11,"pending":true,"from":"render","via":"tdxfer"}',
          '{"announced":{"source":"render","rel":"a.mov","at":10}}',
          '',
        ].join('\n'),
      );
      const jo = await openJournal(old, log);
      assert.deepEqual(jo.pending().map((r) => r.rel), ['b.mov']);
      assert.equal(jo.get('render', 'a.mov')?.size, 3);
      assert.ok(!log.records.some((r) => r.level === 'warn'), 'nothing skipped as unreadable');
    } finally {
      await flushJournals();
      await t.done();
    }
  });

  test('pending records survive compaction (also a superseded or evicted one) and stay bounded', async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      const j = await openJournal(t.dir, log, 10);
      await j.record(rec(0, { pending: true }));
      await j.record(rec(0, { pending: true, at: 500, size: 5 }));
      // Enough records and marks to compact several times and evict f0's dedupe record.
      for (let i = 1; i < 40; i++) {
        await j.record(rec(i, { pending: true }));
        if (i !== 7) await j.markAnnounced(rec(i));
      }
      await j.flush(); // a compaction a mark queued
      assert.ok((await fs.readFile(j.file, 'utf8')).trimEnd().split('\n').length <= 20, 'compacted while running');
      await flushJournals(); // the earlier agent stopped (its inbox's close() flushes it)
      const j2 = await openJournal(t.dir, log, 10);
      assert.deepEqual(j2.pending().map((r) => `${r.rel}@${r.at}`), ['f0@0', 'f0@500', 'f7@7']);
      assert.equal(j2.get('s', 'f0'), undefined, 'evicted from dedupe, still pending');
      assert.equal(j2.size, 10);
      // Bounded: never more pending landings than the limit (only an inbox nobody announces gets there).
      for (let i = 100; i < 130; i++) await j2.record(rec(i, { pending: true }));
      assert.equal(j2.pending().length, 10);
    } finally {
      await flushJournals();
      await t.done();
    }
  });
});

describe('fs helpers', () => {
  test('isInside', () => {
    assert.equal(isInside('/a/b', '/a/b'), true);
    assert.equal(isInside('/a/b', '/a/b/c'), true);
    assert.equal(isInside('/a/b', '/a/b/..c'), true);
    assert.equal(isInside('/a/b', '/a/bc'), false);
    assert.equal(isInside('/a/b', '/a'), false);
    assert.equal(isInside('/a/b', '/x/y'), false);
  });

  test('fsyncDir succeeds on a folder', async () => {
    const t = await tmp();
    try {
      await fsyncDir(t.dir);
      await assert.rejects(fsyncDir(path.join(t.dir, 'missing')), /ENOENT/);
    } finally {
      await t.done();
    }
  });

  test('Mutex runs in order, one at a time, and survives rejections', async () => {
    const m = new Mutex();
    const seen: string[] = [];
    let inside = 0;
    const job = (name: string, fail = false) =>
      m.run(async () => {
        inside++;
        assert.equal(inside, 1);
        await new Promise((r) => setTimeout(r, 5));
        seen.push(name);
        inside--;
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')]);
    assert.deepEqual(seen, ['a', 'b', 'c']);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  });

  test('renameWithRetry: non-transient errors are thrown at once', async () => {
    const t = await tmp();
    try {
      const log = memoryLogger();
      await assert.rejects(renameWithRetry(path.join(t.dir, 'missing'), path.join(t.dir, 'x'), log), /ENOENT/);
      assert.equal(log.records.length, 0);
    } finally {
      await t.done();
    }
  });

  const canChattr = ((): boolean => {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
    try {
      execFileSync('chattr', ['--help'], { stdio: 'ignore' });
      return true;
    } catch (err) {
      return (err as { status?: number }).status !== undefined;
    }
  })();

  // An immutable source file makes rename() fail with EPERM, like a Windows lock.
  test('renameWithRetry: retries EPERM with backoff, succeeds once the lock is gone, gives up after N tries', { skip: !canChattr && 'needs root and chattr on Linux' }, async () => {
    const t = await tmp();
    const src = path.join(t.dir, 'src');
    try {
      await fs.writeFile(src, 'x');
      execFileSync('chattr', ['+i', src]);
      const log = memoryLogger();
      const started = Date.now();
      setTimeout(() => execFileSync('chattr', ['-i', src]), 120);
      await renameWithRetry(src, path.join(t.dir, 'dst'), log, { tries: 8, firstDelayMs: 20, maxDelayMs: 80 });
      assert.ok(Date.now() - started >= 100);
      assert.equal(await fs.readFile(path.join(t.dir, 'dst'), 'utf8'), 'x');
      const retries = log.records.filter((r) => r.level === 'debug');
      assert.ok(retries.length >= 2, `retries: ${retries.length}`);
      assert.equal(retries[0]!.fields.code, 'EPERM');

      await fs.writeFile(src, 'y');
      execFileSync('chattr', ['+i', src]);
      const log2 = memoryLogger();
      await assert.rejects(renameWithRetry(src, path.join(t.dir, 'dst2'), log2, { tries: 3, firstDelayMs: 5 }), /EPERM/);
      assert.equal(log2.records.filter((r) => r.level === 'debug').length, 2);
      assert.equal(log2.records.filter((r) => r.level === 'error').length, 1);
    } finally {
      try {
        execFileSync('chattr', ['-i', src], { stdio: 'ignore' });
      } catch {
        // already mutable or gone
      }
      await t.done();
    }
  });
});

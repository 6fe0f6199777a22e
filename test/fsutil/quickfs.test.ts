/**
 * QuickFs (src/quickfs.ts, issue #12): file calls below a registered local folder are made
 * synchronously, with the same results and errors as the thread pool's, never thrown;
 * network volumes, unregistered paths and slow folders go through the thread pool.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { QuickFs } from '../../src/quickfs.js';
import { openFresh } from '../../src/inbox/staged-io.js';
import { localQuickFs } from '../helpers/quickfs.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

async function tmp(): Promise<string> {
  const d = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-quickfs-')));
  dirs.push(d);
  return d;
}

test('below a local root: synchronous, same results and errors as fs.promises, rejected not thrown', async () => {
  const d = await tmp();
  const f = path.join(d, 'a.bin');
  await fs.writeFile(f, Buffer.alloc(10, 1));
  const q = localQuickFs();
  await q.addRoot(d);
  const st = await q.stat(f);
  assert.equal(st.size, 10);
  assert.equal((await q.lstat(f)).mtimeMs, (await fs.lstat(f)).mtimeMs);
  assert.equal(q.counts.sync, 2);
  assert.equal(q.counts.async, 0);
  // An error is a rejection with the usual code and path (the caller's catch sees what fs.promises gives).
  let p: Promise<unknown> | null = null;
  assert.doesNotThrow(() => {
    p = q.stat(path.join(d, 'missing'));
  });
  await assert.rejects(p!, (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && err.path === path.join(d, 'missing'));
  await q.rename(f, path.join(d, 'b.bin'));
  assert.equal((await fs.stat(path.join(d, 'b.bin'))).size, 10);
  assert.equal(q.counts.sync, 4);
  // The root itself is quick too (its lookup walks the same components); paths outside it,
  // and names that only begin like it, go through the thread pool.
  await q.stat(d);
  assert.equal(q.counts.sync, 5);
  await q.stat(os.tmpdir());
  await q.stat(`${d}-sibling`).catch(() => undefined);
  assert.equal(q.counts.async, 2);
  // statBig and realpath: the same answers as fs.promises.
  const big = await q.statBig(path.join(d, 'b.bin'));
  assert.equal(big.ino, (await fs.stat(path.join(d, 'b.bin'), { bigint: true })).ino);
  assert.equal(await q.realpath(d), await fs.realpath(d));
  await assert.rejects(q.realpath(path.join(d, 'missing')), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  assert.equal(q.counts.sync, 8);
});

test('network volumes, roots marked never, unregistered paths and removed roots use the thread pool; the longest root decides', async () => {
  const d = await tmp();
  const inner = path.join(d, 'inner');
  await fs.mkdir(inner);
  await fs.writeFile(path.join(inner, 'x'), 'x');
  await fs.writeFile(path.join(d, 'y'), 'y');
  const nfs = new QuickFs({ fsType: async () => 0x6969 });
  await nfs.addRoot(d);
  await nfs.stat(path.join(d, 'y'));
  assert.deepEqual([nfs.counts.sync, nfs.counts.async], [0, 1]);

  const unknown = new QuickFs({ fsType: async () => null });
  await unknown.addRoot(d);
  await unknown.stat(path.join(d, 'y'));
  assert.deepEqual([unknown.counts.sync, unknown.counts.async], [0, 1]);

  const q = localQuickFs();
  await q.addRoot(d, { never: true });
  await q.addRoot(inner);
  await q.stat(path.join(inner, 'x'));
  await q.stat(path.join(d, 'y'));
  assert.deepEqual([q.counts.sync, q.counts.async], [1, 1]);
  q.removeRoot(inner);
  await q.stat(path.join(inner, 'x'));
  assert.deepEqual([q.counts.sync, q.counts.async], [1, 2]);
});

test('a slow folder goes to the thread pool (a lone slow call does not), and comes back after the cool-down', async () => {
  const d = await tmp();
  const f = path.join(d, 'a');
  // The calls are timed on a clock the test moves: a call "takes" exactly what it says,
  // whatever else runs on the machine (descheduling would make a 0 ms call look slow).
  let clock = 0;
  const q = localQuickFs({ coolMs: 200, now: () => clock });
  await q.addRoot(d);
  let viaPool = 0;
  const call = (ms: number) =>
    q.call(
      f,
      () => {
        clock += ms;
      },
      async () => {
        viaPool++;
      },
    );
  // Slow calls here and there (a garbage collection inside them) change nothing.
  for (let i = 0; i < 64; i++) await call(i % 3 === 0 ? 5 : 0);
  assert.equal(viaPool, 0);
  // Every call a few ms: after 8 of them they go through the pool.
  for (let i = 0; i < 30 && viaPool === 0; i++) await call(3);
  assert.ok(viaPool > 0 && q.counts.sync <= 64 + 8, `switched after ${q.counts.sync - 64} slow calls`);
  // Through the pool for the cool-down (200 ms), then the quick way is tried again.
  const before = q.counts.sync;
  clock += 199;
  await call(0);
  assert.equal(q.counts.sync, before, 'still cooling down');
  clock += 1;
  await call(0);
  assert.equal(q.counts.sync, before + 1, 'quick again after the cool-down');
  // One call that stalls switches at once.
  const pool = viaPool;
  await call(120);
  await call(0);
  assert.equal(viaPool, pool + 1);
});

test('a staged small file opened with QuickFs: writes, fsync and close like a FileHandle; a second close does nothing, a late write is EBADF', async () => {
  const d = await tmp();
  const q = localQuickFs();
  await q.addRoot(d);
  const file = path.join(d, 'staging', 'x.part');
  // The staging folder is gone (deleted by hand): made again, as with a FileHandle.
  const h = await openFresh(file, path.join(d, 'staging'), q);
  assert.ok(h.fd >= 0);
  const r = await h.writev([Buffer.from('abc'), Buffer.from('def')], 0);
  assert.equal(r.bytesWritten, 6);
  await h.sync();
  await h.close();
  assert.equal(h.fd, -1);
  await h.close();
  await assert.rejects(h.writev([Buffer.from('x')], 0), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
  assert.equal(await fs.readFile(file, 'utf8'), 'abcdef');
  assert.ok(q.counts.sync >= 3, `open, writev and close were quick (${JSON.stringify(q.counts)})`);
  // A link planted where the staged file goes is not written through (O_NOFOLLOW; not on Windows).
  if (process.platform !== 'win32') {
    const link = path.join(d, 'staging', 'link.part');
    await fs.symlink(path.join(d, 'elsewhere'), link);
    await assert.rejects(openFresh(link, path.join(d, 'staging'), q), /is a symlink/);
  }
});

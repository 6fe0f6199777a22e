/**
 * fsyncDirShared (group commit of folder fsyncs): every caller is answered, failures reach
 * exactly the callers of the failing fsync, and nothing is left behind for the next burst.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fsyncDirShared } from '../../src/fsutil.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-fsync-shared-'));
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

test('a burst of callers on one folder all resolve, in bursts again afterwards', async () => {
  await withDir(async (dir) => {
    for (let round = 0; round < 3; round++) {
      const calls = [];
      for (let i = 0; i < 50; i++) {
        await fs.writeFile(path.join(dir, `r${round}-${i}`), 'x');
        calls.push(fsyncDirShared(dir));
      }
      const results = await Promise.allSettled(calls);
      assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
    }
  });
});

test('callers on different folders do not wait for each other', async () => {
  await withDir(async (root) => {
    const dirs = await Promise.all(['a', 'b', 'c'].map(async (n) => {
      const d = path.join(root, n);
      await fs.mkdir(d);
      return d;
    }));
    await Promise.all(dirs.flatMap((d) => [fsyncDirShared(d), fsyncDirShared(d), fsyncDirShared(d)]));
  });
});

test('a missing folder rejects its callers with ENOENT; the same path works once it exists', async () => {
  await withDir(async (root) => {
    const dir = path.join(root, 'later');
    const results = await Promise.allSettled([fsyncDirShared(dir), fsyncDirShared(dir), fsyncDirShared(dir)]);
    assert.equal(results.length, 3);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.equal((r.reason as { code?: string }).code, 'ENOENT');
    }
    await fs.mkdir(dir);
    await fsyncDirShared(dir);
    await Promise.all([fsyncDirShared(dir), fsyncDirShared(dir)]);
  });
});

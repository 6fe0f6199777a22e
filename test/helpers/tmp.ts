/**
 * Temp folders for tests, one module (issue #13 item 9): `tempDir` (left for the OS to clean, for
 * agents whose child processes may outlive a test), `tempDirFor(t)` (removed when test `t` ends) and
 * `tempDirForFile` (removed when the test file ends).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

export async function tempDir(prefix = 'tdx-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Teardown in the reverse order of set-up: `t.after` hooks run in the order they were
 * registered, so a temp folder registered first would be removed before the watcher or the
 * open file inside it is closed (Windows: ENOTEMPTY, the folder's files still held). Returns
 * `defer(fn)`; the deferred steps run last-first when `t` ends, each even if one before failed.
 */
export function teardownFor(t: { after: (fn: () => Promise<void>) => void }): (fn: () => unknown) => void {
  const steps: Array<() => unknown> = [];
  t.after(async () => {
    let first: unknown = null;
    for (const step of steps.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  });
  return (fn) => void steps.push(fn);
}

/** A fresh temp folder removed when test `t` ends. */
export async function tempDirFor(t: { after: (fn: () => Promise<void>) => void }, prefix = 'tdx-'): Promise<string> {
  const dir = await tempDir(prefix);
  t.after(() => fs.rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  return dir;
}

const fileDirs: string[] = [];
// Registered at import, i.e. on the file's root test: `after()` called inside a running test
// would attach to that test and remove the folders before the test's own `t.after` closes
// what it opened (ENOTEMPTY on Windows, where an open file's folder cannot be removed).
after(async () => {
  for (const d of fileDirs.splice(0)) await fs.rm(d, { recursive: true, force: true, maxRetries: 5 });
});

/** A fresh temp folder removed when the test file ends. */
export async function tempDirForFile(prefix = 'tdx-'): Promise<string> {
  const dir = await tempDir(prefix);
  fileDirs.push(dir);
  return dir;
}

/**
 * `mkdir` of a folder just removed, as a user re-creating it would (retrying): on Windows a
 * removed folder stays "delete pending" while other handles on it (a watcher, an indexer)
 * close, and mkdir gives EEXIST or EPERM meanwhile. Bounded: about 18 s, then the error is thrown.
 */
export async function mkdirAfterRemove(dir: string, opts: { recursive?: boolean } = {}): Promise<void> {
  let delay = 25;
  for (let attempt = 1; ; attempt++) {
    try {
      await fs.mkdir(dir, opts);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EEXIST too: the pending-delete folder still has its name (it was just removed, so it is not ours).
      const pending = code === 'EPERM' || code === 'EACCES' || code === 'EBUSY' || code === 'EEXIST';
      if (!pending || attempt >= 40) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }
}

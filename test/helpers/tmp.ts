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

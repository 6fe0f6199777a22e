/** mkdirp() names the real errno of a folder it cannot create; folderProblem() turns it into the fix. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { folderProblem, mkdirp } from '../../src/fsutil.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

test('folderProblem: each errno gets its cause and the field to change', () => {
  const ro = folderProblem('inbox "a" (/m/in)', Object.assign(new Error('x'), { code: 'EROFS', path: '/m/in' }), 'inboxes[].path');
  assert.match(ro, /^The inbox "a" \(\/m\/in\) is on a read-only file system \(at \/m\/in\); remount it read-write or change inboxes\[\]\.path/);
  assert.match(folderProblem('outbox /o', Object.assign(new Error('x'), { code: 'EACCES' }), 'outboxes[].path'), /not writable by this user; give the agent's user write access/);
  assert.match(folderProblem('outbox /o', Object.assign(new Error('x'), { code: 'ENOTDIR' }), 'outboxes[].path'), /a file stands where a folder is needed/);
  assert.match(folderProblem('outbox /o', new Error('odd'), 'outboxes[].path'), /cannot be created or written: odd; check the path/);
});

test('mkdirp: a file in the way is ENOTDIR naming it, not ENOENT; a fresh path is created and reported', async () => {
  const r = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-mkdirp-'));
  dirs.push(r);
  await fs.writeFile(path.join(r, 'file'), '');
  await assert.rejects(mkdirp(path.join(r, 'file', 'a', 'b')), (err: NodeJS.ErrnoException) => err.code === 'ENOTDIR');
  assert.equal(await mkdirp(path.join(r, 'x', 'y')), path.join(r, 'x'));
  assert.equal(await mkdirp(path.join(r, 'x', 'y')), undefined);
});

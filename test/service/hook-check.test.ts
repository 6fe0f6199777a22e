/**
 * src/hook-check.ts: would spawn() find an inbox's onReceive command? The lookup logic is
 * driven with an in-memory file table (POSIX and Windows rules), then once on real files.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkCommand, hookProblems, probeFile, type CommandLookup, type FileKind } from '../../src/hook-check.js';
import { isWindows } from '../helpers/platform.js';

function table(platform: NodeJS.Platform, env: NodeJS.ProcessEnv, files: Record<string, FileKind>): CommandLookup & { probed: string[] } {
  const probed: string[] = [];
  return {
    platform,
    env,
    cwd: platform === 'win32' ? 'C:\\show' : '/srv/show',
    probed,
    probe: (f) => {
      probed.push(f);
      return Promise.resolve(files[f] ?? 'missing');
    },
  };
}

describe('checkCommand (POSIX rules)', () => {
  const env = { PATH: '/usr/local/bin:/usr/bin' };
  test('an absolute path that exists and is executable', async () => {
    assert.deepEqual(await checkCommand('/opt/hooks/on-file', table('linux', env, { '/opt/hooks/on-file': 'executable' })), { ok: true, file: '/opt/hooks/on-file' });
  });
  test('an absolute path that does not exist, is not executable, or is a folder', async () => {
    const missing = await checkCommand('/usr/local/bin/notify-td', table('linux', env, {}));
    assert.equal(missing.ok, false);
    assert.match((missing as { problem: string }).problem, /^\/usr\/local\/bin\/notify-td does not exist$/);
    const noX = await checkCommand('/opt/h.sh', table('linux', env, { '/opt/h.sh': 'not-executable' }));
    assert.deepEqual(noX, { ok: false, problem: '/opt/h.sh is not executable', fix: 'chmod +x "/opt/h.sh", or put its interpreter first (["/usr/bin/python3", "/opt/h.sh"])' });
    const dir = await checkCommand('/opt', table('linux', env, { '/opt': 'folder' }));
    assert.match((dir as { problem: string }).problem, /is a folder/);
  });
  test('a relative path is resolved against the working folder, not PATH', async () => {
    const t = table('linux', env, { '/srv/show/hooks/x': 'executable' });
    assert.deepEqual(await checkCommand('hooks/x', t), { ok: true, file: '/srv/show/hooks/x' });
    assert.deepEqual(t.probed, ['/srv/show/hooks/x']);
  });
  test('a bare name is looked up on PATH in order', async () => {
    const t = table('linux', env, { '/usr/bin/python3': 'executable', '/usr/local/bin/python3': 'not-executable' });
    assert.deepEqual(await checkCommand('python3', t), { ok: true, file: '/usr/bin/python3' });
    const none = await checkCommand('notify-td', table('linux', env, {}));
    assert.equal(none.ok, false);
    assert.equal((none as { problem: string }).problem, '"notify-td" was not found on the agent\'s PATH (/usr/local/bin:/usr/bin)');
    assert.match((none as { fix: string }).fix, /absolute path/);
    const onlyNoX = await checkCommand('x', table('linux', env, { '/usr/bin/x': 'not-executable' }));
    assert.match((onlyNoX as { problem: string }).problem, /only as \/usr\/bin\/x, which is not executable/);
    const empty = await checkCommand('x', table('linux', {}, {}));
    assert.match((empty as { problem: string }).problem, /PATH is empty/);
  });
  test('an empty command', async () => {
    assert.equal((await checkCommand('', table('linux', env, {}))).ok, false);
  });
});

describe('checkCommand (Windows rules)', () => {
  const env = { Path: 'C:\\Windows\\system32;C:\\Tools', PATHEXT: '.COM;.EXE;.BAT' };
  test('a bare name is found with a PATHEXT extension (Path in any case)', async () => {
    const t = table('win32', env, { 'C:\\Tools\\notify.BAT': 'executable' });
    assert.deepEqual(await checkCommand('notify', t), { ok: true, file: 'C:\\Tools\\notify.BAT' });
  });
  test('a name with an extension is probed as given', async () => {
    const t = table('win32', env, { 'C:\\Tools\\notify.exe': 'executable' });
    assert.deepEqual(await checkCommand('notify.exe', t), { ok: true, file: 'C:\\Tools\\notify.exe' });
    assert.deepEqual(t.probed, ['C:\\Windows\\system32\\notify.exe', 'C:\\Tools\\notify.exe']);
  });
  test('a backslash path, with or without its extension', async () => {
    const t = table('win32', env, { 'D:\\hooks\\on-file.EXE': 'executable' });
    assert.deepEqual(await checkCommand('D:\\hooks\\on-file', t), { ok: true, file: 'D:\\hooks\\on-file.EXE' });
    const missing = await checkCommand('D:\\hooks\\gone.exe', t);
    assert.equal((missing as { problem: string }).problem, 'D:\\hooks\\gone.exe does not exist');
  });
});

test('hookProblems lists only the inboxes whose command would not start', async () => {
  const t = table('linux', { PATH: '/usr/bin' }, { '/usr/bin/true': 'executable' });
  const problems = await hookProblems(
    [
      { name: 'a', onReceive: { command: ['true'] } },
      { name: 'b' },
      { name: 'c', onReceive: { command: ['/no/such/hook', '--x'] } },
    ],
    t,
  );
  assert.deepEqual(problems.map((p) => [p.inbox, p.command, p.problem]), [['c', '/no/such/hook', '/no/such/hook does not exist']]);
});

test('probeFile on real files: executable, not executable, folder, missing', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-hookcheck-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const exe = path.join(dir, 'hook.sh');
  const plain = path.join(dir, 'data.txt');
  await writeFile(exe, '#!/bin/sh\nexit 0\n');
  await chmod(exe, 0o755);
  await writeFile(plain, 'x');
  await chmod(plain, 0o644);
  await mkdir(path.join(dir, 'sub'));
  assert.equal(await probeFile(exe), 'executable');
  assert.equal(await probeFile(plain), isWindows ? 'executable' : 'not-executable');
  assert.equal(await probeFile(path.join(dir, 'sub')), 'folder');
  assert.equal(await probeFile(path.join(dir, 'nope')), 'missing');
});

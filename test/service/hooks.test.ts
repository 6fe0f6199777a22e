import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hookEnv, runHook, startGatedHook } from '../../src/hooks.js';
import { memoryLogger } from '../../src/log.js';
import { waitUntil } from '../helpers/wait.js';
import { linuxOnly } from '../helpers/platform.js';

async function tmp(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-hook-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const env = hookEnv({
  inbox: 'renders',
  file: 'takes/it\'s "odd" $HOME.mov',
  path: '/srv/tdxfer/renders/takes/it\'s "odd" $HOME.mov',
  size: 5_000_000_000,
  sha256: 'ab'.repeat(32),
  from: 'render-2',
  via: 'tdxfer',
  durationMs: 10,
  at: 0,
});

describe('hookEnv: the file hash variables', () => {
  const base = { inbox: 'i', file: 'f', path: '/i/f', size: 1, from: 'a', via: 'tdxfer' as const, durationMs: 1, at: 0 };
  test('SHA-256 used (a peer of the previous protocol revision, security.hashes ["sha256"]): TDXFER_SHA256, TDXFER_HASH and TDXFER_HASH_ALG', () => {
    const e = hookEnv({ ...base, sha256: 'cd'.repeat(32), hash: 'cd'.repeat(32), hashAlg: 'sha256' });
    assert.equal(e.TDXFER_SHA256, 'cd'.repeat(32));
    assert.equal(e.TDXFER_HASH, 'cd'.repeat(32));
    assert.equal(e.TDXFER_HASH_ALG, 'sha256');
  });
  test('XXH3-128 negotiated: TDXFER_HASH carries it, TDXFER_SHA256 is empty', () => {
    const e = hookEnv({ ...base, sha256: null, hash: 'ef'.repeat(16), hashAlg: 'xxh3-128' });
    assert.deepEqual([e.TDXFER_SHA256, e.TDXFER_HASH, e.TDXFER_HASH_ALG], ['', 'ef'.repeat(16), 'xxh3-128']);
  });
  test('a ReceivedInfo without the hash fields (older producers) still fills TDXFER_HASH from sha256', () => {
    const e = hookEnv({ ...base, sha256: 'ab'.repeat(32) });
    assert.deepEqual([e.TDXFER_SHA256, e.TDXFER_HASH, e.TDXFER_HASH_ALG], ['ab'.repeat(32), 'ab'.repeat(32), 'sha256']);
  });
});

describe('runHook (onReceive)', () => {
  test('passes argv through without a shell and sets the TDXFER_* variables plus the parent env', { skip: linuxOnly('/bin/sh (POSIX hook commands)') }, async (t) => {
    const dir = await tmp(t);
    const out = path.join(dir, 'out.txt');
    process.env.TDXFER_TEST_PARENT = 'inherited';
    t.after(async () => void delete process.env.TDXFER_TEST_PARENT);
    const script =
      'printf "%s\\n" "$1" "$TDXFER_INBOX" "$TDXFER_FILE" "$TDXFER_REL" "$TDXFER_SIZE" "$TDXFER_FROM" "$TDXFER_SHA256" "$TDXFER_TEST_PARENT" "$(pwd)" > "$2"';
    const log = memoryLogger();
    const r = await runHook(['/bin/sh', '-c', script, 'hook', '$(echo not expanded) ; *', out], env, { timeoutMs: 5000, log, cwd: dir });
    assert.deepEqual(r, { code: 0, timedOut: false });
    const lines = (await readFile(out, 'utf8')).split('\n');
    assert.deepEqual(lines.slice(0, 9), [
      '$(echo not expanded) ; *',
      'renders',
      '/srv/tdxfer/renders/takes/it\'s "odd" $HOME.mov',
      'takes/it\'s "odd" $HOME.mov',
      '5000000000',
      'render-2',
      'ab'.repeat(32),
      'inherited',
      dir,
    ]);
    assert.deepEqual(log.records.filter((x) => x.level !== 'debug'), []);
  });

  test('a non-zero exit is reported with the exit code and the first stderr lines', { skip: linuxOnly('/bin/sh (POSIX hook commands)') }, async () => {
    const log = memoryLogger();
    const r = await runHook(['/bin/sh', '-c', 'echo "first problem" >&2; echo second >&2; exit 7'], env, { timeoutMs: 5000, log });
    assert.deepEqual(r, { code: 7, timedOut: false });
    const w = log.records.find((x) => x.level === 'warn');
    assert.ok(w, 'failure not logged');
    assert.equal(w.fields.exitCode, 7);
    assert.equal(w.fields.stderr, 'first problem | second');
  });

  test('a hook past its timeout is stopped, with its children, without waiting for them', { skip: linuxOnly('/bin/sh (POSIX hook commands)') }, async (t) => {
    const dir = await tmp(t);
    const marker = path.join(dir, 'child-survived');
    const pidFile = path.join(dir, 'child.pid');
    const log = memoryLogger();
    const t0 = Date.now();
    // The shell's child keeps stderr open: the result must not wait for it. The child would end
    // after 60 s and the hook after 300 s, so returning before 60 s proves both were stopped
    // (a bound against the hook's own length, not a speed).
    const r = await runHook(['/bin/sh', '-c', `(sleep 60; touch "${marker}") & echo $! > "${pidFile}"; sleep 300`], env, { timeoutMs: 200, log, killGraceMs: 300 });
    const took = Date.now() - t0;
    assert.equal(r.timedOut, true);
    assert.equal(r.code, null);
    assert.ok(took < 60_000, `took ${took} ms: waited for the background child`);
    assert.ok(log.records.some((x) => x.level === 'warn' && x.msg.includes('timed out')));
    // The background child is gone (or a zombie) rather than "not yet done": it cannot write the marker.
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    const alive = async (): Promise<boolean> => {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
      return stat !== null && !/^\d+ \(.*\) Z/.test(stat);
    };
    await waitUntil(async () => !(await alive()), 30_000, () => `the hook's background child ${pid} was not stopped`);
    await assert.rejects(readFile(marker), /ENOENT/, 'the hook\'s background child was not stopped');
  });

  test('a hook that ignores SIGTERM is killed after the grace period', { skip: linuxOnly('/bin/sh (POSIX hook commands)') }, async () => {
    const log = memoryLogger();
    // The hook never ends by itself: that runHook returns at all proves the SIGKILL.
    const r = await runHook(['/bin/sh', '-c', 'trap "" TERM; while true; do sleep 0.05; done'], env, { timeoutMs: 100, log, killGraceMs: 200 });
    assert.equal(r.timedOut, true);
  });

  test('a missing command is ENOENT with a hint, not a throw', async (t) => {
    const dir = await tmp(t);
    const log = memoryLogger();
    const r = await runHook([path.join(dir, 'no-such-hook')], env, { timeoutMs: 1000, log });
    assert.deepEqual(r, { code: null, timedOut: false });
    const e = log.records.find((x) => x.level === 'error');
    assert.ok(e);
    assert.match(String(e.fields.error), /ENOENT/);
    assert.match(String(e.fields.hint), /was not found/);
  });

  test('a non-executable file is EACCES with a hint; an empty command is refused', { skip: linuxOnly('/bin/sh (POSIX hook commands)') }, async (t) => {
    const dir = await tmp(t);
    const script = path.join(dir, 'hook.sh');
    await writeFile(script, '#!/bin/sh\nexit 0\n');
    await chmod(script, 0o644);
    const log = memoryLogger();
    assert.deepEqual(await runHook([script], env, { timeoutMs: 1000, log }), { code: null, timedOut: false });
    assert.match(String(log.records.find((x) => x.level === 'error')?.fields.hint), /not executable/);
    assert.deepEqual(await runHook([], env, { timeoutMs: 1000, log }), { code: null, timedOut: false });
    assert.ok(log.records.some((x) => x.msg.includes('empty command')));
  });
});

describe('startGatedHook (onReceive, forked before the journal mark, released after it)', () => {
  const posix = linuxOnly('/bin/sh (the gate)');

  test('released: the command runs with its argv untouched, the TDXFER_* variables and stdin from /dev/null; its exit code is the result', { skip: posix }, async (t) => {
    const dir = await tmp(t);
    const out = path.join(dir, 'out');
    const log = memoryLogger();
    const script = 'printf "%s|%s|%s\\n" "$1" "$TDXFER_REL" "$(cat)" > "$2"; exit 3';
    const h = startGatedHook(['/bin/sh', '-c', script, 'hook', '$(echo not expanded) ; *', out], env, { timeoutMs: 5000, log });
    h.release();
    h.release(); // once
    assert.deepEqual(await h.result, { code: 3, timedOut: false });
    assert.equal(await readFile(out, 'utf8'), `$(echo not expanded) ; *|takes/it's "odd" $HOME.mov|\n`);
  });

  test('the agent dies before release: the command never runs; released right before dying: it runs', { skip: posix }, async (t) => {
    const dir = await tmp(t);
    const hooks = new URL('../../src/hooks.js', import.meta.url).href;
    const run = async (release: boolean): Promise<string> => {
      const out = path.join(dir, `out-${release}`);
      const script = path.join(dir, `die-${release}.mjs`);
      await writeFile(
        script,
        `import { startGatedHook } from ${JSON.stringify(hooks)};
const log = { debug() {}, info() {}, warn() {}, error() {}, child() { return log; } };
const h = startGatedHook(['/bin/sh', '-c', 'echo ran > "$1"', 'hook', ${JSON.stringify(out)}], {}, { timeoutMs: 5000, log });
${release ? 'h.release();' : ''}
process.kill(process.pid, 'SIGKILL');
`,
      );
      const child = spawn(process.execPath, [script], { stdio: 'ignore' });
      await once(child, 'exit');
      return out;
    };
    const ran = await run(true);
    await waitUntil(async () => (await readFile(ran, 'utf8').catch(() => '')) === 'ran\n');
    // The gate saw the end of its pipe: it exits without running the command (nothing
    // later could prove it never will, so: the gate process is gone and the file absent).
    const notRan = await run(false);
    const gates = (): string => {
      try {
        return execFileSync('pgrep', ['-f', notRan], { encoding: 'utf8' });
      } catch (err) {
        if ((err as { status?: number }).status === 1) return ''; // no such process
        throw err;
      }
    };
    await waitUntil(() => gates() === '', undefined, () => `the gate for ${notRan} exited`);
    assert.equal(await readFile(notRan, 'utf8').catch(() => null), null, 'an unreleased hook never ran');
  });

  test('a missing or non-executable command is reported like a spawn error (ENOENT, EACCES with hints)', { skip: posix }, async (t) => {
    const dir = await tmp(t);
    const log = memoryLogger();
    const missing = startGatedHook([path.join(dir, 'no-such-hook')], env, { timeoutMs: 5000, log });
    missing.release();
    assert.deepEqual(await missing.result, { code: null, timedOut: false });
    const script = path.join(dir, 'hook.sh');
    await writeFile(script, '#!/bin/sh\nexit 0\n');
    await chmod(script, 0o644);
    const noexec = startGatedHook([script], env, { timeoutMs: 5000, log });
    noexec.release();
    assert.deepEqual(await noexec.result, { code: null, timedOut: false });
    const errors = log.records.filter((x) => x.level === 'error');
    assert.equal(errors.length, 2, JSON.stringify(log.records));
    assert.match(String(errors[0]!.fields.error), /ENOENT/);
    assert.match(String(errors[0]!.fields.hint), /was not found/);
    assert.match(String(errors[1]!.fields.error), /EACCES/);
    assert.match(String(errors[1]!.fields.hint), /not executable/);
  });
});

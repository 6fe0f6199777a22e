/** The outbox watcher's pure rules: paths, ignored folders, root identity, what an error means. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OutboxPaths, classifyOpenError, classifyWatchError, diffNames, isGoneError, rescanDelay, sameFolder, SWEEP_MS, sweepDelay } from '../../src/outbox/watch-rules.js';

describe('OutboxPaths (POSIX paths)', () => {
  const p = new OutboxPaths('/srv/out', ['/srv/out/.tdxfer', '/var/lib/tdxfer'], path.posix, false);
  test('relOf: "/"-separated below the root; null for the root itself and anything outside', () => {
    assert.equal(p.relOf('/srv/out/a.png'), 'a.png');
    assert.equal(p.relOf('/srv/out/shots/b.exr'), 'shots/b.exr');
    assert.equal(p.relOf('/srv/out'), null);
    assert.equal(p.relOf('/srv/out/'), null);
    assert.equal(p.relOf('/srv/outer/a.png'), null);
    assert.equal(p.relOf('/srv/out/../etc/passwd'), null);
    assert.equal(p.relOf('/srv/out/x/../y.png'), 'y.png');
  });
  test('absOf is the inverse of relOf', () => {
    assert.equal(p.absOf('shots/b.exr'), '/srv/out/shots/b.exr');
    assert.equal(p.relOf(p.absOf('shots/b.exr')), 'shots/b.exr');
  });
  test('inIgnoredFolder: the folder and everything below it, not a sibling with the same prefix', () => {
    assert.ok(p.inIgnoredFolder('/srv/out/.tdxfer'));
    assert.ok(p.inIgnoredFolder('/srv/out/.tdxfer/staging/x'));
    assert.ok(p.inIgnoredFolder('/srv/out/sub/../.tdxfer/x'));
    assert.ok(!p.inIgnoredFolder('/srv/out/.tdxfer2/x'));
    assert.ok(!p.inIgnoredFolder('/srv/out/a.png'));
  });
  test('case-sensitive volumes: another spelling is another folder', () => {
    assert.ok(!p.inIgnoredFolder('/srv/out/.TDXFER/x'));
  });
});

describe('OutboxPaths (Windows paths, case-insensitive volume)', () => {
  const p = new OutboxPaths('C:\\Show\\Out', ['C:\\Show\\Out\\.tdxfer'], path.win32, true);
  test('relOf uses "/" whatever the platform separator', () => {
    assert.equal(p.relOf('C:\\Show\\Out\\renders\\f1.exr'), 'renders/f1.exr');
    assert.equal(p.relOf('D:\\Show\\Out\\f1.exr'), null);
    assert.equal(p.absOf('renders/f1.exr'), 'C:\\Show\\Out\\renders\\f1.exr');
  });
  test('an ignored folder spelled in another case is still ignored', () => {
    assert.ok(p.inIgnoredFolder('C:\\show\\out\\.TDXFER\\staging\\x'));
    assert.ok(!p.inIgnoredFolder('C:\\Show\\Out\\f1.exr'));
  });
});

describe('sameFolder', () => {
  const a = { dev: 1, ino: 42, birthtimeMs: 1000 };
  test('dev and ino must match everywhere', () => {
    assert.ok(!sameFolder(a, { ...a, ino: 43 }, 'linux'));
    assert.ok(!sameFolder(a, { ...a, dev: 2 }, 'win32'));
  });
  test('Linux: a re-created folder that got the same inode number is told apart by its birth time', () => {
    assert.ok(sameFolder(a, { ...a }, 'linux'));
    assert.ok(!sameFolder(a, { ...a, birthtimeMs: 2000 }, 'linux'));
  });
  test('Windows and macOS: birth time is not compared (wine reports ctime there)', () => {
    assert.ok(sameFolder(a, { ...a, birthtimeMs: 2000 }, 'win32'));
    assert.ok(sameFolder(a, { ...a, birthtimeMs: 2000 }, 'darwin'));
  });
});

describe('what an error means', () => {
  test('classifyOpenError', () => {
    assert.equal(classifyOpenError('ENOENT'), 'gone');
    assert.equal(classifyOpenError('ENOTDIR'), 'gone');
    assert.equal(classifyOpenError('EBUSY'), 'busy');
    assert.equal(classifyOpenError('EACCES'), 'unreadable');
    assert.equal(classifyOpenError('EPERM'), 'unreadable');
    assert.equal(classifyOpenError('ELOOP'), 'retry');
    assert.equal(classifyOpenError('UNKNOWN'), 'retry');
  });
  test('isGoneError reads the code of an fs error', () => {
    assert.ok(isGoneError(Object.assign(new Error('x'), { code: 'ENOENT' })));
    assert.ok(!isGoneError(Object.assign(new Error('x'), { code: 'EACCES' })));
    assert.ok(!isGoneError('not an error'));
  });
  test('classifyWatchError: a sub-folder without permission is skipped, keyed by its path', () => {
    const d = classifyWatchError('EACCES', '/srv/out/private', '/srv/out', 'x');
    assert.equal(d.action, 'skip');
    assert.equal(d.key, 'perm:/srv/out/private');
    assert.equal(d.level, 'warn');
    assert.match(d.msg, /Permission denied watching \/srv\/out\/private.*read access/);
  });
  test('classifyWatchError: permission denied on the root itself (or no path) restarts', () => {
    assert.equal(classifyWatchError('EACCES', '/srv/out', '/srv/out', 'x').action, 'restart');
    assert.equal(classifyWatchError('EPERM', undefined, '/srv/out', 'x').action, 'restart');
  });
  test('classifyWatchError: watch or file limits switch to polling, with the fix', () => {
    const enospc = classifyWatchError('ENOSPC', undefined, '/srv/out', 'x');
    assert.equal(enospc.action, 'poll');
    assert.equal(enospc.level, 'error');
    assert.match(enospc.msg, /max_user_watches/);
    const emfile = classifyWatchError('EMFILE', undefined, '/srv/out', 'x');
    assert.equal(emfile.action, 'poll');
    assert.match(emfile.msg, /ulimit -n|LimitNOFILE/);
    assert.notEqual(enospc.key, emfile.key);
  });
  test('classifyWatchError: anything else restarts, naming the error', () => {
    const d = classifyWatchError('EIO', undefined, '/srv/out', 'EIO: i/o error');
    assert.deepEqual([d.action, d.key, d.level], ['restart', 'chokidar:EIO', 'error']);
    assert.match(d.msg, /\/srv\/out failed: EIO: i\/o error/);
  });
});

describe('native watch rescans (dirwatch.ts)', () => {
  test('diffNames: indexes of new names and the vanished names, nothing for names in both', () => {
    assert.deepEqual(diffNames(new Set(['a', 'b', 'c']), ['b', 'c', 'd', 'e']), { added: [2, 3], removed: ['a'] });
    assert.deepEqual(diffNames(new Set(), ['x']), { added: [0], removed: [] });
    assert.deepEqual(diffNames(new Set(['x']), []), { added: [], removed: ['x'] });
    assert.deepEqual(diffNames(new Set(['x']), ['x']), { added: [], removed: [] });
    // As many names as before, one replaced by another: still seen as removed + added.
    assert.deepEqual(diffNames(new Set(['a', 'b']), ['b', 'c']), { added: [1], removed: ['a'] });
  });
  test('rescanDelay: at least 1 s, else 50 times the last read, so re-reading a big folder stays a small share', () => {
    assert.equal(rescanDelay(0), 1000);
    assert.equal(rescanDelay(5), 1000);
    assert.equal(rescanDelay(100), 5000);
    assert.equal(rescanDelay(NaN), 1000);
    assert.equal(rescanDelay(-3), 1000);
  });

  test('sweepDelay: every SWEEP_MS (30 s), longer only when a sweep took more than 2 % of that', () => {
    assert.equal(SWEEP_MS, 30_000);
    assert.equal(sweepDelay(0), 30_000);
    assert.equal(sweepDelay(100), 30_000);
    assert.equal(sweepDelay(2000), 100_000);
    assert.equal(sweepDelay(NaN), 30_000);
    assert.equal(sweepDelay(0, 500), 1000, 'a shorter interval (tests) is still rate-limited like rescans');
  });
});

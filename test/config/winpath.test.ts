/**
 * Issue #14: Windows paths in the config. The rules (src/config/winpath.ts) are pure and
 * tested everywhere; loading real configs with them runs under the real Windows node.exe
 * in the wine lane (the Windows-only tests).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, prepareConfig } from '../../src/config/index.js';
import { expandWindowsEnv, windowsPathProblem } from '../../src/config/winpath.js';
import { land } from '../../src/inbox/land.js';
import { memoryLogger } from '../../src/log.js';
import { isWindows } from '../helpers/platform.js';
import { baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

const WINDOWS_ONLY = isWindows ? false : 'Windows-only (path.win32 semantics); the wine lane runs it';

describe('windowsPathProblem (pure)', () => {
  for (const ok of ['D:\\show\\inbox', 'D:/show/inbox', 'd:\\', 'inbox', 'renders\\in', '..\\shared\\in', '\\\\?\\D:\\very\\long\\path', '\\show\\inbox', '/show/inbox']) {
    test(`accepts ${JSON.stringify(ok)}`, () => assert.equal(windowsPathProblem(ok), null));
  }
  const refused: Array<[string, RegExp]> = [
    ['\\\\server\\share\\inbox', /network share \(UNC path\).*run on the machine that has the disk/],
    ['//server/share/inbox', /network share \(UNC path\)/],
    ['\\\\?\\UNC\\server\\share', /network share/],
    ['\\\\.\\PhysicalDrive0', /device path/],
    ['D:inbox', /relative to the current folder of drive D:.*"D:\\\\inbox" or "D:\/inbox"/],
    ['%TDXFER_SURELY_UNSET%\\x', /%TDXFER_SURELY_UNSET%, but it is not set/],
  ];
  for (const [p, re] of refused) test(`refuses ${JSON.stringify(p)}`, () => assert.match(windowsPathProblem(p) ?? '(accepted)', re));

  test('expandWindowsEnv: %NAME% case-insensitively; unset names stay', () => {
    assert.equal(expandWindowsEnv('%AppData%\\tdxfer', { APPDATA: 'C:\\Users\\td\\AppData\\Roaming' }), 'C:\\Users\\td\\AppData\\Roaming\\tdxfer');
    assert.equal(expandWindowsEnv('%NOPE%\\x', {}), '%NOPE%\\x');
    assert.equal(expandWindowsEnv('100%', { X: 'y' }), '100%');
  });
});

describe('Windows paths in a real config', () => {
  test('D:\\ and D:/ forms, %VAR% expansion, relative paths against the config folder', { skip: WINDOWS_ONLY }, async () => {
    const dir = await tempDir();
    const drive = path.parse(dir).root; // e.g. "Z:\\" under wine
    const cfg = baseConfig();
    cfg.inboxes = [
      { name: 'back', path: path.join(dir, 'in-back') },
      { name: 'fwd', path: path.join(dir, 'in-fwd').replace(/\\/g, '/') },
      { name: 'env', path: '%TDXFER_TEST_ROOT%\\in-env' },
      { name: 'rel', path: 'in\\rel' },
    ];
    cfg.outboxes = [{ path: `${dir.replace(/\\/g, '/')}/out`, to: [{ peer: 'playback-1', inbox: 'renders' }] }];
    cfg.dataDir = '%TDXFER_TEST_ROOT%\\data';
    process.env.TDXFER_TEST_ROOT = dir;
    try {
      const c = await loadConfig(await writeConfig(dir, cfg));
      assert.ok(drive.endsWith('\\'));
      assert.deepEqual(c.inboxes.map((i) => i.path), [path.join(dir, 'in-back'), path.join(dir, 'in-fwd'), path.join(dir, 'in-env'), path.join(dir, 'in', 'rel')]);
      assert.equal(c.outboxes[0]!.path, path.join(dir, 'out'));
      assert.equal(c.dataDir, path.join(dir, 'data'));
    } finally {
      delete process.env.TDXFER_TEST_ROOT;
    }
  });

  test('UNC and drive-relative paths are refused naming the field, with the form to write; a drive-less path takes the config\'s drive', { skip: WINDOWS_ONLY }, async () => {
    const dir = await tempDir();
    const cases: Array<[string, string[]]> = [
      ['\\\\fileserver\\show\\inbox', ['inboxes[0].path', 'network share (UNC path)']],
      ['D:inbox', ['inboxes[0].path', 'current folder of drive D:', '"D:\\\\inbox"']],
    ];
    for (const [p, parts] of cases) {
      const cfg = baseConfig();
      cfg.inboxes = [{ name: 'renders', path: p }];
      await rejectsConfig(loadConfig(await writeConfig(dir, cfg)), 'inboxes[0].path', parts);
    }
    const cfg = baseConfig();
    cfg.inboxes = [{ name: 'renders', path: '/show/inbox' }];
    const c = await loadConfig(await writeConfig(dir, cfg));
    assert.equal(c.inboxes[0]!.path, path.join(path.parse(dir).root, 'show', 'inbox'));
  });

  test('the default data folder is under %LOCALAPPDATA%', { skip: WINDOWS_ONLY }, async () => {
    const { config: c } = await prepareConfig(null, { env: { LOCALAPPDATA: process.env.LOCALAPPDATA } });
    assert.ok(process.env.LOCALAPPDATA, 'LOCALAPPDATA is set on Windows');
    assert.equal(c.dataDir.toLowerCase().startsWith(process.env.LOCALAPPDATA!.toLowerCase()), true, c.dataDir);
  });

  test('a file lands at a path longer than MAX_PATH (260)', { skip: WINDOWS_ONLY }, async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdxfer-long-'));
    try {
      const inbox = path.join(dir, 'inbox');
      await fs.mkdir(inbox);
      const parts = [...Array.from({ length: 8 }, (_, i) => `shot_${i}_${'x'.repeat(30)}`), 'frame.0001.png'];
      assert.ok(path.join(inbox, ...parts).length > 300);
      const from = path.join(dir, 'staged.bin');
      await fs.writeFile(from, 'long');
      const out = await land({ inboxName: 'renders', inboxPath: inbox, inboxReal: await fs.realpath(inbox), policy: 'overwrite', log: memoryLogger() }, { parts, from });
      assert.equal(out.status, 'landed');
      assert.equal(await fs.readFile(path.join(inbox, ...parts), 'utf8'), 'long');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

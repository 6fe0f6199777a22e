import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fc from 'fast-check';
import { sanitizeRelPath, toWirePath, collisionKey, renameCandidate, isReservedName, type NameErrorCode } from '../../src/names.js';

type Expect = string | NameErrorCode;
const ERR = new Set<string>(['EMPTY', 'ABSOLUTE', 'TRAVERSAL', 'NUL', 'TOO_LONG', 'TOO_DEEP', 'INVALID']);

// [input, expected rel or error code]
const table: Array<[string, Expect]> = [
  // plain
  ['a.png', 'a.png'],
  ['shots/2024/a.png', 'shots/2024/a.png'],
  ['  leading spaces', '  leading spaces'],
  // empty
  ['', 'EMPTY'],
  ['.', 'EMPTY'],
  ['./', 'EMPTY'],
  ['//', 'ABSOLUTE'],
  // traversal
  ['..', 'TRAVERSAL'],
  ['../x', 'TRAVERSAL'],
  ['a/../../x', 'TRAVERSAL'],
  ['a/..', 'TRAVERSAL'],
  ['a/b/../c', 'TRAVERSAL'],
  ['..\\x', 'TRAVERSAL'],
  ['a\\..\\..\\x', 'TRAVERSAL'],
  ['a/..\\b', 'TRAVERSAL'],
  // absolute / UNC / device / drive letters
  ['/etc/passwd', 'ABSOLUTE'],
  ['\\windows\\system32', 'ABSOLUTE'],
  ['//server/share/x', 'ABSOLUTE'],
  ['\\\\server\\share\\x', 'ABSOLUTE'],
  ['\\\\?\\C:\\x', 'ABSOLUTE'],
  ['\\\\.\\PhysicalDrive0', 'ABSOLUTE'],
  ['C:', 'ABSOLUTE'],
  ['C:\\x', 'ABSOLUTE'],
  ['c:x', 'ABSOLUTE'],
  ['z:/x', 'ABSOLUTE'],
  // backslashes
  ['a\\b', 'INVALID'],
  ['dir/file\\name.png', 'INVALID'],
  // NUL
  ['a\u0000b', 'NUL'],
  ['a/\u0000', 'NUL'],
  // dot and empty components dropped
  ['a//b', 'a/b'],
  ['./a', 'a'],
  ['a/./b/', 'a/b'],
  // controls and Windows-invalid characters
  ['a\u0001b', 'a_b'],
  ['tab\there', 'tab_here'],
  ['new\nline', 'new_line'],
  ['del\u007f', 'del_'],
  ['c1\u0085x', 'c1_x'],
  ['a<b>c', 'a_b_c'],
  ['what?.png', 'what_.png'],
  ['star*"q"|p', 'star__q__p'],
  ['a/b:c', 'a/b_c'],
  // bidi and zero-width
  ['evil\u202Egnp.exe', 'evil_gnp.exe'],
  ['iso\u2066x\u2069', 'iso_x_'],
  ['zw\u200Bsp', 'zw_sp'],
  ['\uFEFFbom', '_bom'],
  ['lrm\u200E', 'lrm_'],
  // NFD -> NFC (macOS)
  ['Cafe\u0301.png', 'Caf\u00e9.png'],
  ['dir\u0308/x', 'dir\u0308/x'.normalize('NFC')],
  // trailing dots and spaces
  ['name.', 'name'],
  ['name. . ', 'name'],
  ['dir. /x', 'dir/x'],
  ['...', 'INVALID'],
  ['a/.. /b', 'INVALID'],
  [' ', 'INVALID'],
  // reserved device names
  ['CON', '_CON'],
  ['con.txt', '_con.txt'],
  ['NUL.tar.gz', '_NUL.tar.gz'],
  ['a/Aux', 'a/_Aux'],
  ['prn ', '_prn'],
  ['COM1', '_COM1'],
  ['lpt9.log', '_lpt9.log'],
  ['COM\u00b9', '_COM\u00b9'],
  ['LPT\u00b3.txt', '_LPT\u00b3.txt'],
  ['CON .txt', '_CON .txt'],
  ['CONSOLE', 'CONSOLE'],
  ['COM10', 'COM10'],
  ['xCON', 'xCON'],
  ['_CON', '_CON'],
  // look-alikes are not separators and stay
  ['\uFF0E\uFF0E/x', '\uFF0E\uFF0E/x'],
  ['a\u2215..\u2215b', 'a\u2215..\u2215b'],
  ['a\uFF0Fb', 'a\uFF0Fb'],
  ['\u2024\u2024', '\u2024\u2024'],
  // lengths and depth
  ['x'.repeat(255), 'x'.repeat(255)],
  ['x'.repeat(256), 'TOO_LONG'],
  ['\u00e9'.repeat(128), 'TOO_LONG'], // 256 bytes
  [Array.from({ length: 9 }, () => 'y'.repeat(120)).join('/'), 'TOO_LONG'], // 1088 bytes
  [Array.from({ length: 32 }, () => 'd').join('/'), Array.from({ length: 32 }, () => 'd').join('/')],
  [Array.from({ length: 33 }, () => 'd').join('/'), 'TOO_DEEP'],
  ['a/'.repeat(2000) + 'b', 'TOO_DEEP'],
  ['x'.repeat(100_000), 'TOO_LONG'],
];

describe('sanitizeRelPath: hostile names', () => {
  test('table has enough cases', () => assert.ok(table.length >= 40));
  for (const [input, expected] of table) {
    test(`${JSON.stringify(input.length > 60 ? input.slice(0, 60) + '…' : input)} -> ${expected.length > 40 ? expected.slice(0, 40) + '…' : expected}`, () => {
      const r = sanitizeRelPath(input);
      if (ERR.has(expected)) {
        assert.equal(r.ok, false, `expected ${expected}, got ${JSON.stringify(r)}`);
        if (!r.ok) {
          assert.equal(r.code, expected);
          assert.ok(r.reason.length > 10);
        }
      } else {
        assert.equal(r.ok, true, `expected ok, got ${JSON.stringify(r)}`);
        if (r.ok) {
          assert.equal(r.rel, expected);
          assert.deepEqual(r.parts, expected.split('/'));
          if (input !== expected) assert.ok(r.changes.length > 0, 'every change is reported');
          else assert.deepEqual(r.changes, []);
        }
      }
    });
  }

  test('limits are configurable', () => {
    assert.equal(sanitizeRelPath('a/b/c', { maxDepth: 2 }).ok, false);
    const r = sanitizeRelPath('abcdef', { maxComponentBytes: 5 });
    assert.ok(!r.ok && r.code === 'TOO_LONG');
    const r2 = sanitizeRelPath('ab/cd', { maxBytes: 4 });
    assert.ok(!r2.ok && r2.code === 'TOO_LONG');
    assert.ok(sanitizeRelPath('ab/c', { maxBytes: 4 }).ok);
  });

  test('reasons name the offending input', () => {
    const r = sanitizeRelPath('a\\b');
    assert.ok(!r.ok && r.reason.includes('backslash') && r.reason.includes('a\\\\b'));
  });
});

describe('names properties', () => {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const unsafeChar = /[\u0000-\u001f\u007f-\u009f<>:"|?*\\/\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/u;
  const interesting = fc.constantFrom('/', '\\', '.', '..', ' ', ':', 'C:', '\u0000', '\u0001', '\u202e', '\u200b', 'CON', 'nul', 'e\u0301', '\uff0e', '\u2215', '<', '?', 'a', 'B', '\ud800', '\u0085');
  const hostile = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.array(fc.oneof(interesting, fc.string({ maxLength: 4 })), { maxLength: 12 }).map((xs) => xs.join('')),
  );

  test('output is an error or a confined, clean, idempotent path', () => {
    fc.assert(
      fc.property(hostile, (input) => {
        const r = sanitizeRelPath(input);
        if (!r.ok) {
          assert.ok(ERR.has(r.code));
          return;
        }
        assert.ok(r.parts.length > 0);
        assert.equal(r.rel, r.parts.join('/'));
        for (const p of r.parts) {
          assert.ok(p !== '' && p !== '.' && p !== '..', `bad part ${JSON.stringify(p)}`);
          assert.ok(!unsafeChar.test(p), `unsafe char in ${JSON.stringify(p)}`);
          assert.ok(!/[. ]$/u.test(p), `trailing dot/space in ${JSON.stringify(p)}`);
          assert.ok(!isReservedName(p), `reserved ${JSON.stringify(p)}`);
          assert.equal(p, p.normalize('NFC'));
        }
        const abs = path.posix.resolve('/root', r.rel);
        assert.ok(abs.startsWith('/root/'), abs);
        const again = sanitizeRelPath(r.rel);
        assert.ok(again.ok, `re-sanitising ${JSON.stringify(r.rel)} failed`);
        assert.equal(again.rel, r.rel);
        assert.deepEqual(again.changes, []);
      }),
      { numRuns: 3000 },
    );
  });

  test('win32 resolution also stays inside the root', () => {
    fc.assert(
      fc.property(hostile, (input) => {
        const r = sanitizeRelPath(input);
        if (!r.ok) return;
        const abs = path.win32.resolve('C:\\root', r.rel);
        assert.ok(abs.startsWith('C:\\root\\'), abs);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('toWirePath, collisionKey, renameCandidate', () => {
  test('toWirePath converts native separators', () => {
    assert.equal(toWirePath('a\\b\\c.png', '\\'), 'a/b/c.png');
    assert.equal(toWirePath('a/b/c.png', '/'), 'a/b/c.png');
    assert.equal(toWirePath(path.join('x', 'y')), 'x/y');
  });

  test('collisionKey folds case and normalisation', () => {
    assert.equal(collisionKey('A.PNG'), collisionKey('a.png'));
    assert.equal(collisionKey('Cafe\u0301'), collisionKey('CAF\u00c9'));
    assert.notEqual(collisionKey('a.png'), collisionKey('a.jpg'));
    assert.equal(collisionKey('Shot1'), 'shot1');
  });

  test('renameCandidate', () => {
    assert.equal(renameCandidate('shot.0001.png', 1), 'shot.0001 (1).png');
    assert.equal(renameCandidate('README', 1), 'README (1)');
    assert.equal(renameCandidate('.x', 1), '.x (1)');
    assert.equal(renameCandidate('a.tar.gz', 12), 'a.tar (12).gz');
    const long = 'x'.repeat(250) + '.png';
    const c = renameCandidate(long, 3);
    assert.equal(Buffer.byteLength(c), 255);
    assert.ok(c.endsWith(' (3).png'));
    assert.ok(sanitizeRelPath(c).ok);
  });
});

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { isIgnoredName, isIgnoredRel, makeOutboxFilter, relSegments } from '../../src/filters.js';

describe('isIgnoredName', () => {
  const ignored = [
    '.DS_Store', '.hidden', '.git', '.', '..', '',
    'Thumbs.db', 'thumbs.DB', 'ehthumbs.db', 'desktop.ini', 'Desktop.INI', '$RECYCLE.BIN', 'System Volume Information',
    'render.tmp', 'RENDER.TMP', 'a.temp', 'movie.mov.part', 'x.partial', 'dl.crdownload', 'y.download',
    '~$report.docx', 'file.swp', 'file.swx', 'backup~', 'frame.png~',
  ];
  const kept = [
    'f.0001.png', 'movie.mov', 'README', 'a~b.png', 'tmp', 'part.png', 'temp.exr', 'thumbs.db.png', 'x.tmp.png',
    '~file.png', 'my$file.txt', 'desktop.ini.bak', 'sent', 'swp',
  ];
  for (const n of ignored) test(`ignores ${JSON.stringify(n)}`, () => assert.equal(isIgnoredName(n), true));
  for (const n of kept) test(`keeps ${JSON.stringify(n)}`, () => assert.equal(isIgnoredName(n), false));
});

describe('isIgnoredRel', () => {
  const table: Array<[string, boolean]> = [
    ['', false],
    ['a.png', false],
    ['shot1/f.0001.png', false],
    ['sent', true],
    ['sent/a.png', true],
    ['sent/shot1/a.png', true],
    ['shot1/sent/a.png', false], // only the archive folder at the outbox root
    ['Sent/a.png', false], // exact name on Linux; see the case-insensitive table below
    ['.cache/a.png', true],
    ['shot1/.staging/a.png', true],
    ['shot1/.DS_Store', true],
    ['work.tmp/a.png', true], // ignored names hide folders too
    ['shot1/a.png.part', true],
    ['./a.png', false],
    ['shot1//a.png', false],
  ];
  for (const [rel, want] of table) test(`${JSON.stringify(rel)} -> ${want}`, () => assert.equal(isIgnoredRel(rel, 'linux'), want));

  // Windows and macOS volumes are case-insensitive: `Sent/` is the archive folder there
  // (archiving into `sent/` lands in it), so its files must never be sent again.
  for (const platform of ['win32', 'darwin'] as const) {
    for (const rel of ['Sent/a.png', 'SENT/shot1/a.png', 'sent/a.png']) {
      test(`${JSON.stringify(rel)} -> true on ${platform}`, () => assert.equal(isIgnoredRel(rel, platform), true));
    }
    test(`"shot1/Sent/a.png" -> false on ${platform}`, () => assert.equal(isIgnoredRel('shot1/Sent/a.png', platform), false));
  }
  test('the platform default is this process\'s platform', () => {
    assert.equal(isIgnoredRel('Sent/a.png'), process.platform === 'win32' || process.platform === 'darwin');
  });
});

test('relSegments tolerates ./, leading and doubled slashes', () => {
  assert.deepEqual(relSegments('./a//b/c.png'), ['a', 'b', 'c.png']);
  assert.deepEqual(relSegments('/a'), ['a']);
  assert.deepEqual(relSegments(''), []);
});

describe('makeOutboxFilter', () => {
  const cases: Array<{ include: string[]; exclude: string[]; yes: string[]; no: string[] }> = [
    { include: [], exclude: [], yes: ['a.png', 'shot1/f.0001.png', 'x/y/z.exr', 'noext'], no: ['.x', 'sent/a.png', 'a.tmp', 'shot1/.git/x'] },
    // `**/` also matches at the root
    { include: ['**/*.png'], exclude: [], yes: ['a.png', 'shot1/a.png', 'a/b/c/d.png', 'A.PNG'], no: ['a.exr', 'shot1/a.exr', 'sent/a.png', '.hidden/a.png', 'a.png.tmp'] },
    // `*.png` matches at the root only
    { include: ['*.png'], exclude: [], yes: ['a.png', 'B.Png'], no: ['shot1/a.png', 'a.jpg'] },
    { include: ['*.{png,exr}', 'shot1/**'], exclude: [], yes: ['a.png', 'a.exr', 'shot1/any.mov', 'shot1/sub/x.txt'], no: ['a.mov', 'shot2/a.png'] },
    // exclude wins over include
    { include: ['**/*.png'], exclude: ['**/preview/**', '*_draft.png'], yes: ['a.png', 'shot1/a_draft.png'], no: ['a_draft.png', 'preview/a.png', 'shot1/preview/a.png'] },
    { include: [], exclude: ['**/*.mov'], yes: ['a.png', 'shot/a.png'], no: ['a.mov', 'shot/a.MOV'] },
    // blank globs are ignored rather than matching nothing
    { include: ['', '  '], exclude: [''], yes: ['a.png'], no: [] },
  ];
  for (const c of cases) {
    const f = makeOutboxFilter(c);
    for (const rel of c.yes) test(`inc=${JSON.stringify(c.include)} exc=${JSON.stringify(c.exclude)} sends ${rel}`, () => assert.equal(f(rel), true));
    for (const rel of c.no) test(`inc=${JSON.stringify(c.include)} exc=${JSON.stringify(c.exclude)} skips ${rel}`, () => assert.equal(f(rel), false));
  }
});

/** src/paths.ts: path.join's and path.resolve's answers, built without their copies. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { below, childPath, isPlainRel, resolvedFolder } from '../../src/paths.js';

describe('below, childPath, isPlainRel: path.join without its copies (issue #12)', () => {
  const rels = ['a.png', 'shots/b.exr', 'x/y/z/f 1.tif', 'dots.../..x/.hidden', '..a', 'a..', '.', '..', 'a/./b', 'a/../b', '../up', 'a//b', '/abs', 'trail/', '', 'back\\slash', 'c:/d', 'ünï/cödé.png'];
  for (const [name, p, roots] of [
    ['POSIX', path.posix, ['/srv/out', '/', '/srv/out/']],
    // Long-path forms too: the inbox's real paths on Windows can carry the \\?\ prefix (fsutil realpathLong).
    ['Windows', path.win32, ['C:\\Show\\Out', 'C:\\', '\\\\server\\share\\out', '\\\\?\\C:\\Show\\In', '\\\\?\\UNC\\srv\\share\\in']],
  ] as const) {
    test(`${name}: the same answer as path.join for every rel, plain or not`, () => {
      for (const root of roots) {
        const folder = p.resolve(root);
        for (const rel of rels) assert.equal(below(folder, rel, p), p.join(folder, ...rel.split('/')), `${folder} + ${JSON.stringify(rel)}`);
        for (const entry of ['f.png', '.x', '..x', 'a b', '.', '..', 'a/b', 'a\\b']) {
          assert.equal(childPath(folder, entry, p), p.join(folder, entry), `${folder} + entry ${JSON.stringify(entry)}`);
        }
      }
    });
  }
  test('isPlainRel: names between single "/", none "." or "..", no "\\" for Windows', () => {
    for (const r of ['a', 'a/b', '.x', '..x', 'x..', 'a b/c']) assert.equal(isPlainRel(r, true), true, r);
    for (const r of ['', '.', '..', 'a/.', './a', 'a/../b', '/a', 'a/', 'a//b']) assert.equal(isPlainRel(r, false), false, r);
    assert.equal(isPlainRel('a\\b', false), true);
    assert.equal(isPlainRel('a\\b', true), false);
  });
  test('resolvedFolder: path.resolve, remembered for absolute folders only', () => {
    assert.equal(resolvedFolder('/srv/out/../out2/'), path.resolve('/srv/out/../out2/'));
    assert.equal(resolvedFolder('/srv/out/../out2/'), path.resolve('/srv/out/../out2/'));
    assert.equal(resolvedFolder('rel/x'), path.resolve('rel/x'));
  });
});

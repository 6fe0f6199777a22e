/**
 * The compact name index of a folder (nametable.ts, issue #20): the same answers as a plain
 * map of names by collision key under any sequence of adds and removes, exact round-trips of
 * any JS string, and a bounded size for a folder of 100,000 names.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { NameTable } from '../../src/inbox/nametable.js';
import { Listing } from '../../src/inbox/land-plan.js';
import { collisionKey } from '../../src/names.js';

/** The obvious model: key -> spellings in insertion order. */
class Model {
  readonly m = new Map<string, string[]>();
  add(n: string): void {
    const k = collisionKey(n);
    const v = this.m.get(k) ?? [];
    if (!v.includes(n)) v.push(n);
    this.m.set(k, v);
  }
  remove(n: string): void {
    const k = collisionKey(n);
    const v = (this.m.get(k) ?? []).filter((e) => e !== n);
    if (v.length === 0) this.m.delete(k);
    else this.m.set(k, v);
  }
  names(): string[] {
    return [...this.m.values()].flat();
  }
}

/** Deterministic pseudo-random numbers (a test must not depend on luck). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('NameTable', () => {
  test('agrees with a map of names by collision key over 20,000 random adds and removes (case variants, unicode, churn)', () => {
    const r = rng(20);
    const stems = ['a.png', 'A.png', 'A.PNG', 'Frame.0001.exr', 'frame.0001.EXR', 'Ärger.tox', 'ärger.tox', 'e\u0301.txt', '\u00e9.txt', '日本.mov', 'x'];
    const pick = (): string => {
      const s = stems[Math.floor(r() * stems.length)]!;
      return r() < 0.5 ? s : `${Math.floor(r() * 300)}${s}`;
    };
    const t = new NameTable();
    const m = new Model();
    for (let i = 0; i < 20_000; i++) {
      const n = pick();
      if (r() < 0.6) {
        t.add(n);
        m.add(n);
      } else {
        t.remove(n);
        m.remove(n);
      }
      if (i % 997 === 0 || i === 19_999) {
        assert.deepEqual(t.names().sort(), m.names().sort(), `after ${i} operations`);
        assert.equal(t.size, m.names().length);
      }
      const probe = pick();
      const k = collisionKey(probe);
      assert.deepEqual(t.spellings(k).sort(), (m.m.get(k) ?? []).slice().sort(), `spellings of ${probe} after ${i} operations`);
      assert.equal(t.hasKey(k), m.m.has(k));
    }
  });

  test('every JS string round-trips exactly: latin1, wide characters, astral and lone surrogates', () => {
    const names = ['plain.png', 'café.png', 'ÿ', 'Ω.txt', '😀 shot.mov', 'lone\ud800.bin', 'lone\udc00x', '\u0000odd'];
    const t = new NameTable();
    for (const n of names) t.add(n);
    assert.deepEqual(t.names().sort(), names.slice().sort());
    for (const n of names) assert.equal(t.has(n), true, JSON.stringify(n));
    assert.deepEqual(t.spellings(collisionKey('CAFÉ.PNG')), ['café.png']);
  });

  test('100,000 names of a render folder take under 6 MB, and removing them all frees the slots for reuse', () => {
    const t = new NameTable();
    const name = (i: number): string => `Frame.${String(i).padStart(7, '0')}.png`;
    for (let i = 0; i < 100_000; i++) t.add(name(i));
    assert.equal(t.size, 100_000);
    assert.ok(t.bytes < 6e6, `${t.bytes} bytes for 100,000 names`);
    assert.deepEqual(t.spellings(collisionKey('frame.0054321.PNG')), [name(54_321)]);
    const bytes = t.bytes;
    // a folder that is emptied and filled again (frames replaced) does not grow the table
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100_000; i++) t.remove(name(i));
      assert.equal(t.size, 0);
      for (let i = 0; i < 100_000; i++) t.add(name(i));
    }
    assert.ok(t.bytes <= bytes * 2, `${t.bytes} bytes after churn, ${bytes} before`);
  });

  test('Listing on top of it keeps the case-variant order: exact spelling first, then in insertion order', () => {
    const l = new Listing(['A.png', 'a.png', 'A.PNG']);
    assert.deepEqual(l.variants('a.png', false), ['a.png', 'A.png', 'A.PNG']);
    assert.deepEqual(l.variants('x.png', false), []);
    assert.equal(l.size().names, 3);
  });
});

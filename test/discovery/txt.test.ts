import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeTxt, decodeTxt, txtEntryBytes, TXT_ENTRY_MAX_BYTES, type TxtInfo } from '../../src/discovery/txt.js';
import { TdxError } from '../../src/errors.js';

const base: TxtInfo = { id: 'a1b2c3d4e5f6', name: 'playback-1', version: '0.1.0', protocols: [1], fingerprint: 'sha256:0011aabb', inboxes: ['media', 'cues'] };

/** What goes on the wire: "key=value" Buffers, as multicast-dns hands them to a browser. */
const wire = (txt: Record<string, string>): Buffer[] => Object.entries(txt).map(([k, v]) => Buffer.from(`${k}=${v}`));

describe('encodeTxt', () => {
  test('short keys, exact values', () => {
    assert.deepEqual(encodeTxt(base), { id: 'a1b2c3d4e5f6', name: 'playback-1', ver: '0.1.0', proto: '1', fp: 'sha256:0011aabb', inb: 'media,cues' });
    const noFp = encodeTxt({ ...base, fingerprint: null, inboxes: [], protocols: [1, 2] });
    assert.deepEqual(noFp, { id: 'a1b2c3d4e5f6', name: 'playback-1', ver: '0.1.0', proto: '1,2' });
  });

  test('commas and percent signs in inbox names are escaped and round-trip', () => {
    const info = { ...base, inboxes: ['a,b', '100%', 'x%2Cy', 'plain'] };
    const txt = encodeTxt(info);
    assert.equal(txt.inb, 'a%2Cb,100%25,x%252Cy,plain');
    assert.deepEqual(decodeTxt(wire(txt)).inboxes, info.inboxes);
  });

  test('a long inbox list is split across inb, inb1, inb2… each entry <= 255 bytes, and reassembled', () => {
    const inboxes = Array.from({ length: 40 }, (_, i) => `inbox-number-${String(i).padStart(3, '0')}`); // 16 bytes each
    const txt = encodeTxt({ ...base, inboxes });
    assert.ok(txt.inb1 !== undefined && txt.inb2 !== undefined, 'split into several keys');
    for (const [k, v] of Object.entries(txt)) assert.ok(txtEntryBytes(k, v) <= TXT_ENTRY_MAX_BYTES, `${k} is ${txtEntryBytes(k, v)} bytes`);
    assert.equal(txt.inbt, undefined);
    const d = decodeTxt(wire(txt));
    assert.deepEqual(d.inboxes, inboxes);
    assert.equal(d.inboxesTruncated, false);
  });

  test('too many inboxes: the rest is left out and inbt=1 says so', () => {
    const inboxes = Array.from({ length: 200 }, (_, i) => `inbox-number-${String(i).padStart(3, '0')}`);
    const txt = encodeTxt({ ...base, inboxes }, { maxInboxKeys: 3 });
    assert.deepEqual(Object.keys(txt).filter((k) => k.startsWith('inb')), ['inb', 'inb1', 'inb2', 'inbt']);
    const d = decodeTxt(wire(txt));
    assert.equal(d.inboxesTruncated, true);
    assert.ok(d.inboxes.length > 20 && d.inboxes.length < 200);
    assert.deepEqual(d.inboxes, inboxes.slice(0, d.inboxes.length), 'a prefix, in order');
  });

  test('a single inbox name longer than an entry is left out (flagged), the others still announced', () => {
    const txt = encodeTxt({ ...base, inboxes: ['a', 'x'.repeat(300), 'b'] });
    assert.equal(txt.inb, 'a,b');
    assert.equal(txt.inbt, '1');
  });

  test('multi-byte names count bytes, not characters', () => {
    const inboxes = Array.from({ length: 40 }, (_, i) => `été-${i}-ü`);
    const txt = encodeTxt({ ...base, inboxes });
    for (const [k, v] of Object.entries(txt)) assert.ok(txtEntryBytes(k, v) <= TXT_ENTRY_MAX_BYTES);
    assert.deepEqual(decodeTxt(wire(txt)).inboxes, inboxes);
  });

  test('an agent name that cannot fit throws a TdxError naming the field', () => {
    assert.throws(
      () => encodeTxt({ ...base, name: 'n'.repeat(251) }),
      (e: unknown) => e instanceof TdxError && e.code === 'DISCOVERY_TXT' && /agent name/.test(e.message),
    );
    assert.doesNotThrow(() => encodeTxt({ ...base, name: 'n'.repeat(250) }));
  });

  test('property: any inbox list round-trips (or is a flagged prefix) and never exceeds 255 bytes per entry', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }), { maxLength: 80 }), (inboxes) => {
        const txt = encodeTxt({ ...base, inboxes });
        for (const [k, v] of Object.entries(txt)) if (txtEntryBytes(k, v) > TXT_ENTRY_MAX_BYTES) return false;
        const d = decodeTxt(wire(txt));
        if (!d.inboxesTruncated) return JSON.stringify(d.inboxes) === JSON.stringify(inboxes);
        return d.inboxes.every((n) => inboxes.includes(n));
      }),
    );
  });
});

describe('decodeTxt', () => {
  test('bonjour-service style object (strings, undefined for empty values)', () => {
    const d = decodeTxt({ id: 'abc', name: 'p', ver: undefined, proto: '1,2,x', fp: '', inb: 'a', inb1: 'b,c' });
    assert.deepEqual(d, { id: 'abc', name: 'p', version: null, protocols: [1, 2], fingerprint: null, inboxes: ['a', 'b', 'c'], inboxesTruncated: false });
  });

  test('Buffers (binary mode) and upper-case keys', () => {
    const d = decodeTxt({ ID: Buffer.from('abc'), Name: Buffer.from('été'), inb: Buffer.from('x') });
    assert.equal(d.id, 'abc');
    assert.equal(d.name, 'été');
    assert.deepEqual(d.inboxes, ['x']);
  });

  test('raw entries: values with "=", keys without value, empty and duplicate entries', () => {
    const d = decodeTxt([Buffer.from('id=a=b'), Buffer.from('inbt'), Buffer.alloc(0), Buffer.from('id=second'), 'name=n']);
    assert.equal(d.id, 'a=b', 'first occurrence wins');
    assert.equal(d.name, 'n');
    assert.equal(d.inboxesTruncated, true, 'a bare "inbt" key counts as set');
  });

  test('inb keys are reassembled by number, not by arrival order, duplicates dropped', () => {
    const d = decodeTxt(['inb2=e', 'inb10=f', 'inb=a,b', 'inb1=c,a']);
    assert.deepEqual(d.inboxes, ['a', 'b', 'c', 'e', 'f']);
  });

  test('garbage never throws', () => {
    for (const junk of [undefined, null, 42, 'str', Buffer.from('x'), [null, 5, {}], { id: 5, name: {}, inb: null }]) {
      const d = decodeTxt(junk);
      assert.deepEqual(d.protocols, []);
      assert.deepEqual(d.inboxes, []);
    }
    assert.equal(decodeTxt({ id: 5 }).id, '5');
  });
});

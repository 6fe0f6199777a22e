/**
 * src/xxh3/: XXH3-128 with WebAssembly SIMD must give exactly hash-wasm's digests (peers of
 * the previous version hash with hash-wasm), for every length, every way of feeding the
 * bytes, peek(), save()/restore, and many hashes alive at once; and any flipped bit must
 * change the digest. hash-wasm is the oracle throughout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { createXXHash128, type IHasher } from 'hash-wasm';
import { Xxh3Simd, readyXxh3Simd, xxh3SimdAvailable, type Xxh3Snapshot } from '../../src/xxh3/xxh3.js';
import { createFileHash, forceXxh3Fallback, restoreFileHash, xxh3Backend } from '../../src/hash.js';

const noSimd = !xxh3SimdAvailable && 'this runtime has no WebAssembly SIMD (src/hash.ts uses hash-wasm alone)';
let oracle: IHasher | null = null;
async function want(data: Uint8Array): Promise<string> {
  oracle ??= await createXXHash128();
  return oracle.init().update(data).digest('hex');
}

/** Our digest of `data` fed in the pieces that end at `cuts` (ascending, inside data). */
function ours(data: Uint8Array, cuts: readonly number[] = []): string {
  const h = new Xxh3Simd();
  let o = 0;
  for (const c of [...cuts, data.length]) {
    h.update(data.subarray(o, c));
    o = c;
  }
  return h.digest();
}

/** Lengths where the algorithm changes path or a stripe, block or chunk ends. */
function boundaryLengths(): number[] {
  const set = new Set<number>([0, 1, 2, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 242, 255, 256, 257]);
  for (let m = 64; m <= 4 * 1024 + 64; m += 64) for (const d of [-1, 0, 1]) set.add(m + d);
  const chunk = 4 * 65536 - 576; // the module's input area (src/xxh3/xxh3.ts CHUNK)
  for (const base of [chunk, chunk - 240, 2 * chunk, 1 << 20, 5 * 1024 * 1024]) for (const d of [-65, -64, -63, -1, 0, 1, 63, 64, 65]) set.add(base + d);
  return [...set].sort((a, b) => a - b);
}

test('every boundary length, one-shot and in 1 MiB, 64 KiB and odd pieces, equals hash-wasm', { skip: noSimd }, async () => {
  await readyXxh3Simd();
  const big = randomBytes(5 * 1024 * 1024 + 65);
  for (const len of boundaryLengths()) {
    const data = big.subarray(0, len);
    const w = await want(data);
    assert.equal(ours(data), w, `one-shot, ${len} bytes`);
    for (const step of [1 << 20, 65_536, 1000, 241, 63]) {
      if (len > 300_000 && step < 1000) continue; // cost; the odd steps are covered on the shorter lengths
      const cuts: number[] = [];
      for (let c = step; c < len; c += step) cuts.push(c);
      assert.equal(ours(data, cuts), w, `${len} bytes in steps of ${step}`);
    }
  }
});

test('all lengths 0..2200 byte by byte, and every length 0..3000 one-shot, equal hash-wasm', { skip: noSimd }, async () => {
  await readyXxh3Simd();
  const data = randomBytes(3000);
  for (let len = 0; len <= 3000; len++) {
    const d = data.subarray(0, len);
    assert.equal(ours(d), await want(d), `one-shot, ${len} bytes`);
  }
  // byte by byte: each prefix's peek() is that prefix's digest, so one pass checks every length
  const h = new Xxh3Simd();
  assert.equal(h.peek(), await want(data.subarray(0, 0)));
  for (let i = 0; i < 2200; i++) {
    h.update(data.subarray(i, i + 1));
    assert.equal(h.peek(), await want(data.subarray(0, i + 1)), `byte by byte, ${i + 1} bytes`);
  }
});

test('random lengths up to 5 MB in random pieces, with peek() and save()/restore at random points, equal hash-wasm', { skip: noSimd }, async () => {
  await readyXxh3Simd();
  const pool = randomBytes(5 * 1024 * 1024);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 300_000 }), fc.integer({ min: 0, max: pool.length })),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      async (len, fracs, savedAt) => {
        const data = pool.subarray(pool.length - len); // a different start than the boundary test
        const cuts = [...new Set(fracs.map((f) => Math.floor(f * len)))].filter((c) => c > 0 && c < len).sort((a, b) => a - b);
        const savePoint = Math.floor(savedAt * len);
        const h = new Xxh3Simd();
        let o = 0;
        let saved: Xxh3Snapshot | null = null;
        for (const c of [...cuts, len]) {
          if (saved === null && c > savePoint) {
            h.update(data.subarray(o, savePoint));
            saved = h.save();
            assert.equal(h.peek(), await want(data.subarray(0, savePoint)), `peek at ${savePoint} of ${len}`);
            o = savePoint;
          }
          h.update(data.subarray(o, c));
          o = c;
        }
        const w = await want(data);
        if (saved) {
          // Restored twice while the original is alive (fresh instances), each going on in its
          // own pieces, then once more into a pooled instance that other bytes went through.
          const dirty = new Xxh3Simd();
          dirty.update(pool.subarray(0, 5000));
          const restored = [new Xxh3Simd(saved), new Xxh3Simd(saved)];
          dirty.digest();
          restored.push(new Xxh3Simd(saved));
          for (const [i, r] of restored.entries()) {
            const step = [len - savePoint, 4099, 65_536][i]!;
            for (let p = savePoint; p < len; p += Math.max(1, step)) r.update(data.subarray(p, Math.min(len, p + Math.max(1, step))));
            assert.equal(r.digest(), w, `restored (${i}) at ${savePoint} of ${len}, steps of ${step}`);
          }
        }
        assert.equal(h.digest(), w, `${len} bytes cut at ${cuts.join(',')}`);
      },
    ),
    { numRuns: 60 },
  );
});

test('a flipped bit anywhere changes the digest', { skip: noSimd }, async () => {
  await readyXxh3Simd();
  for (const len of [241, 1025, 4096 + 7]) {
    const data = randomBytes(len);
    const base = ours(data);
    for (let bit = 0; bit < len * 8; bit++) {
      data[bit >> 3]! ^= 1 << (bit & 7);
      assert.notEqual(ours(data), base, `${len} bytes, bit ${bit}`);
      data[bit >> 3]! ^= 1 << (bit & 7);
    }
  }
  const big = randomBytes(3 * 1024 * 1024 + 5);
  const base = ours(big, [1 << 20, 2 << 20]);
  assert.equal(base, await want(big));
  const at = [0, 63, 64, 1023, 1024, 1 << 20, big.length - 65, big.length - 64, big.length - 1];
  for (let i = 0; i < 100; i++) at.push(Math.floor(Math.random() * big.length));
  for (const pos of at) {
    const bit = 1 << Math.floor(Math.random() * 8);
    big[pos]! ^= bit;
    assert.notEqual(ours(big, [1 << 20, 2 << 20]), base, `byte ${pos} of ${big.length}`);
    big[pos]! ^= bit;
  }
});

test('many hashes alive at once, interleaved, through the instance pool, and spent hashes refuse use', { skip: noSimd }, async () => {
  await readyXxh3Simd();
  for (let round = 0; round < 3; round++) {
    const files = Array.from({ length: 80 }, (_, i) => randomBytes((i * 977 + round * 131) % 20_000));
    const hs = files.map(() => new Xxh3Simd());
    for (let o = 0; o < 20_000; o += 1500) hs.forEach((h, i) => h.update(files[i]!.subarray(o, o + 1500)));
    for (const [i, h] of hs.entries()) assert.equal(h.digest(), await want(files[i]!), `file ${i}, round ${round}`);
  }
  const h = new Xxh3Simd();
  h.update(randomBytes(500));
  h.digest();
  assert.throws(() => h.update(new Uint8Array(1)), /after digest/);
  assert.throws(() => h.peek(), /after digest/);
});

test('the public API (createFileHash, save, restoreFileHash) gives hash-wasm digests with either backend', async () => {
  const data = randomBytes(2 * 1024 * 1024 + 333);
  const w = await want(data);
  try {
    for (const fallback of [false, true]) {
      forceXxh3Fallback(fallback);
      if (!fallback && xxh3SimdAvailable) assert.equal(xxh3Backend(), 'wasm-simd');
      if (fallback) assert.equal(xxh3Backend(), 'hash-wasm');
      for (const len of [0, 17, 240, 241, 100_000, data.length]) {
        const d = data.subarray(0, len);
        const h = await createFileHash('xxh3-128');
        h.update(d.subarray(0, len >> 1));
        const state = h.save();
        assert.equal(h.peek(), await want(d.subarray(0, len >> 1)));
        h.update(d.subarray(len >> 1));
        const whole = await want(d);
        assert.equal(h.digest(), whole, `${xxh3Backend()}, ${len} bytes`);
        for (let k = 0; k < 2; k++) {
          const r = await restoreFileHash(state);
          r.update(d.subarray(len >> 1));
          assert.equal(r.digest(), whole, `${xxh3Backend()}, ${len} bytes, restored (${k + 1})`);
        }
      }
      assert.equal(w, await (async () => {
        const h = await createFileHash('xxh3-128');
        h.update(data);
        return h.digest();
      })());
    }
  } finally {
    forceXxh3Fallback(false);
  }
});

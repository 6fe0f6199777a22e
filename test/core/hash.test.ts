/** src/hash.ts: digests against xxhsum / sha256sum test vectors, incremental use, peek, reuse, the server's pick. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { BASELINE_HASH, HASH_ALGS, createFileHash, hashOf, pickHash } from '../../src/hash.js';

test('XXH3-128 matches `xxhsum -H2` (canonical big-endian hex); SHA-256 matches node:crypto', async () => {
  // printf '' | xxhsum -H2; printf abc | xxhsum -H2; printf tdxfer | xxhsum -H2
  assert.equal(await hashOf('xxh3-128', Buffer.alloc(0)), '99aa06d3014798d86001c324468d497f');
  assert.equal(await hashOf('xxh3-128', Buffer.from('abc')), '06b05ab6733a618578af5f94892f3950');
  assert.equal(await hashOf('xxh3-128', Buffer.from('tdxfer')), '1ff453794f619fcc1b72f53485e39966');
  assert.equal(await hashOf('sha256', Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('incremental updates in any split, peek() mid-way, and reused instances give the one-shot digest', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 7);
  for (const alg of HASH_ALGS) {
    const whole = await hashOf(alg, data);
    for (const step of [1 << 20, 65_537, 4096]) {
      const h = await createFileHash(alg);
      for (let o = 0; o < data.length; o += step) {
        h.update(data.subarray(o, Math.min(data.length, o + step)));
        if (o === step * 2) assert.equal(h.peek(), await hashOf(alg, data.subarray(0, o + step)), `${alg}: peek is the prefix digest`);
      }
      assert.equal(h.digest(), whole, `${alg} in steps of ${step}`);
    }
  }
  // Many hashes alive at once (pooled instances are never shared while in use).
  const parts = Array.from({ length: 100 }, () => randomBytes(1000));
  const hs = await Promise.all(parts.map(() => createFileHash('xxh3-128')));
  hs.forEach((h, i) => h.update(parts[i]!));
  for (const [i, h] of hs.entries()) assert.equal(h.digest(), await hashOf('xxh3-128', parts[i]!));
  assert.notEqual(await hashOf('xxh3-128', data), createHash('sha256').update(data).digest('hex').slice(0, 32));
});

test('a spent XXH3-128 hash refuses further use', async () => {
  const h = await createFileHash('xxh3-128');
  h.digest();
  assert.throws(() => h.update(Buffer.from('x')), /after digest/);
});

test("pickHash: the server's order among what the client offers; no list means SHA-256; nothing in common is null", () => {
  assert.equal(BASELINE_HASH, 'sha256');
  assert.equal(pickHash(['xxh3-128', 'sha256'], HASH_ALGS), 'xxh3-128');
  assert.equal(pickHash(['sha256', 'xxh3-128'], HASH_ALGS), 'xxh3-128');
  assert.equal(pickHash(undefined, HASH_ALGS), 'sha256');
  assert.equal(pickHash(['xxh3-128', 'sha256'], ['sha256']), 'sha256');
  assert.equal(pickHash(['blake3-256', 'sha256'], HASH_ALGS), 'sha256');
  assert.equal(pickHash(['blake3-256'], HASH_ALGS), null);
  assert.equal(pickHash([], HASH_ALGS), null);
});

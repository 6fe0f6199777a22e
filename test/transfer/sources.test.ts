/**
 * The agent-wide sources of outgoing bytes (src/transfer/sources.ts, shared-read.ts,
 * eager-files.ts) on real files, without sockets: several destinations reading one file
 * read it from disk once and hash it once per algorithm; a destination that stops
 * consuming is dropped after the grace and still gets the right bytes and the right
 * whole-file digest on its own (re-reading its prefix for the hash); a resumed one
 * hashes from the prefix it brings; small files are read and hashed once for everyone
 * and their buffers come back to be reused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { SendSources, type StreamSource } from '../../src/transfer/sources.js';
import { createFileHash, hashOf, type HashAlg } from '../../src/hash.js';
import { memoryLogger } from '../../src/log.js';
import { tempDirFor } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';
import { BufferPool } from '../../src/transfer/chunks.js';

const CHUNK = 4096;

async function makeFile(dir: string, name: string, size: number): Promise<{ abs: string; size: number; mtimeMs: number; bytes: Buffer }> {
  const abs = path.join(dir, name);
  const bytes = randomBytes(size);
  await fs.writeFile(abs, bytes);
  const st = await fs.stat(abs);
  return { abs, size, mtimeMs: st.mtimeMs, bytes };
}

/** Reads a source to its end, releasing each chunk at once; returns its bytes and digest. */
async function drain(src: StreamSource): Promise<{ bytes: Buffer; digest: string }> {
  const parts: Buffer[] = [];
  for (let c = await src.next(); c !== null; c = await src.next()) {
    parts.push(Buffer.from(c.data)); // a copy: the buffer goes back to the pool
    c.release();
  }
  const digest = src.digest();
  await src.close();
  return { bytes: Buffer.concat(parts), digest };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('three destinations, two algorithms: one read of the file, one hash per algorithm, every byte to each', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 50 * CHUNK + 17);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, graceMs: 60_000 });
  s.expect(f, 3);
  const a = await s.open(f, 'xxh3-128');
  // The others come after the first one started reading: the start is held for them.
  const ra = drain(a);
  const b = await s.open(f, 'sha256');
  const c = await s.open(f, 'xxh3-128');
  const [da, db, dc] = await Promise.all([ra, drain(b), drain(c)]);
  for (const d of [da, db, dc]) assert.ok(d.bytes.equals(f.bytes));
  assert.equal(db.digest, sha256(f.bytes));
  assert.equal(da.digest, await hashOf('xxh3-128', f.bytes));
  assert.equal(dc.digest, da.digest);
  assert.equal(s.stats.read, f.size, 'read from disk once');
  assert.equal(s.stats.hashed, 2 * f.size, 'hashed once per algorithm');
  assert.equal(s.reading, 0);
});

test('a destination that stops consuming is dropped after the grace; alone it still gets every byte and the right digest', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 40 * CHUNK + 5);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, readAheadBytes: 16 * CHUNK, graceMs: 50 });
  const fast = await s.open(f, 'sha256');
  const slow = await s.open(f, 'sha256');
  // slow takes two chunks and holds them (its socket stopped writing), then nothing.
  const held = [await slow.next(), await slow.next()];
  const heldBytes = held.map((h) => Buffer.from(h!.data)); // copied now: released buffers are reused
  const df = await drain(fast); // ends only because slow is dropped
  assert.ok(df.bytes.equals(f.bytes));
  assert.equal(df.digest, sha256(f.bytes));
  for (const h of held) h!.release();
  const rest = await drain(slow);
  assert.ok(Buffer.concat([...heldBytes, rest.bytes]).equals(f.bytes));
  assert.equal(rest.digest, sha256(f.bytes), 'its own hash: the prefix re-read, then its own read');
  assert.ok(s.stats.read > f.size && s.stats.read <= 2 * f.size, `read ${s.stats.read} for ${f.size}`);
  // Every buffer is back: a fresh read of the whole file can take all of the pool.
  const again = await drain(await s.open(f, 'sha256'));
  assert.equal(again.digest, sha256(f.bytes));
});

test('a file within the window: an expected destination coming after the first finished still shares its read', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'mid.bin', 3 * CHUNK + 1);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 8 * CHUNK, graceMs: 60_000 });
  s.expect(f, 2);
  const first = await drain(await s.open(f, 'xxh3-128'));
  assert.equal(s.reading, 1, 'kept for the destination expected');
  const second = await drain(await s.open(f, 'xxh3-128'));
  assert.equal(second.digest, first.digest);
  assert.equal(first.digest, await hashOf('xxh3-128', f.bytes));
  assert.ok(second.bytes.equals(f.bytes));
  assert.equal(s.stats.read, f.size, 'read once');
  assert.equal(s.stats.hashed, f.size, 'hashed once');
  assert.equal(s.reading, 0);
});

test('a dropped destination goes on from the shared hash at its cursor: no re-read of its prefix', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 60 * CHUNK + 9);
  for (const alg of ['sha256', 'xxh3-128'] as const) {
    const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, readAheadBytes: 16 * CHUNK, graceMs: 50 });
    const fast = await s.open(f, alg);
    const slow = await s.open(f, alg);
    // Both go 20 chunks together, then slow holds its last chunk (its socket stopped writing).
    const got: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      for (const src of [fast, slow]) {
        const c = (await src.next())!;
        if (src === slow) got.push(Buffer.from(c.data));
        if (src === fast || i < 19) c.release();
        else (slow as unknown as { last: () => void }).last = c.release;
      }
    }
    const df = await drain(fast); // ends only because slow is dropped (at 20 chunks)
    assert.equal(df.digest, await hashOf(alg, f.bytes));
    (slow as unknown as { last: () => void }).last();
    const rest = await drain(slow);
    assert.ok(Buffer.concat([...got, rest.bytes]).equals(f.bytes));
    assert.equal(rest.digest, await hashOf(alg, f.bytes), `${alg}: its own hash from the saved state`);
    assert.equal(s.stats.read, 2 * f.size - 20 * CHUNK, `${alg}: read once, then only the part slow had left`);
    assert.equal(s.stats.hashed, 2 * f.size - 20 * CHUNK, `${alg}: hashed the same`);
  }
});

test('a destination added while the read runs (a peer appeared): held for if the start is still there, else it reads on its own', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'mid.bin', 5 * CHUNK + 3);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 8 * CHUNK, graceMs: 60_000 });
  s.expect(f, 2);
  const a = await s.open(f, 'xxh3-128');
  const first = (await a.next())!; // a is past byte 0; the expected second destination holds it
  first.release();
  s.expect(f, 1); // a peer appeared: one more destination, while byte 0 is still held
  const b = await drain(await s.open(f, 'xxh3-128'));
  const da = await drain(a);
  assert.equal(s.reading, 1, 'kept for the late destination');
  const late = await drain(await s.open(f, 'xxh3-128'));
  for (const d of [b, late]) {
    assert.ok(d.bytes.equals(f.bytes));
    assert.equal(d.digest, da.digest);
  }
  assert.equal(da.digest, await hashOf('xxh3-128', f.bytes));
  assert.equal(s.stats.read, f.size, 'one read for all three');
  assert.equal(s.stats.hashed, f.size, 'one hash for all three');
  assert.equal(s.reading, 0);
  // Once every reader is past the start, a later destination is not held for: it reads on its own.
  const c = await s.open(f, 'sha256');
  for (let i = 0; i < 2; i++) (await c.next())!.release();
  s.expect(f, 1);
  assert.equal(s.reading, 1);
  const d = await drain(await s.open(f, 'sha256'));
  const dc = await drain(c);
  assert.equal(d.digest, sha256(f.bytes));
  assert.ok(d.bytes.equals(f.bytes));
  assert.equal(dc.digest, d.digest);
  assert.equal(s.stats.read, 3 * f.size, 'the late one read on its own');
  assert.equal(s.reading, 0, 'nothing held for it');
});

test('destinations expected but never coming hold the first one only for the grace', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 30 * CHUNK);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, graceMs: 50 });
  s.expect(f, 3); // two of them never stream it (their peers are gone)
  const only = await drain(await s.open(f, 'sha256'));
  assert.equal(only.digest, sha256(f.bytes));
  assert.equal(s.stats.read, f.size);
  assert.equal(s.reading, 0, 'the read closed with its last reader');
});

test('a resumed destination joins at its offset and hashes from the prefix it brings', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 30 * CHUNK + 100);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, graceMs: 60_000 });
  s.expect(f, 2);
  const whole = await s.open(f, 'xxh3-128');
  const resumed = await s.open(f, 'xxh3-128');
  const offset = 3 * CHUNK + 11;
  const prefix = await createFileHash('xxh3-128');
  prefix.update(f.bytes.subarray(0, offset));
  await resumed.seek(offset, prefix);
  const [dw, dr] = await Promise.all([drain(whole), drain(resumed)]);
  assert.ok(dr.bytes.equals(f.bytes.subarray(offset)));
  assert.equal(dr.digest, await hashOf('xxh3-128', f.bytes));
  assert.equal(dw.digest, dr.digest);
  assert.equal(s.stats.read, f.size, 'still one read');
});

test('a source that changed while being read fails every reader with SOURCE_CHANGED', async (t) => {
  const dir = await tempDirFor(t);
  const f = await makeFile(dir, 'big.bin', 20 * CHUNK);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), windowBytes: 4 * CHUNK, graceMs: 60_000 });
  const a = await s.open(f, 'sha256');
  const first = await a.next();
  await fs.truncate(f.abs, 5 * CHUNK); // a re-render under the same name, shorter
  first!.release();
  await assert.rejects(drain(a), (e: { code?: string }) => e.code === 'SOURCE_CHANGED');
});

test('small files: read and hashed once for every holder, digests per algorithm, buffers reused after release', async (t) => {
  const dir = await tempDirFor(t);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), eagerBytes: 64 * 1024 });
  const files = await Promise.all([0, 1, 2, 3].map((i) => makeFile(dir, `s${i}.bin`, 10_000 + i)));
  const algs: HashAlg[] = ['sha256', 'xxh3-128', 'sha256'];
  for (const f of files) {
    for (const alg of algs) s.eager.prefetch(f, alg);
    const holds = await Promise.all(algs.map(() => s.eager.hold(f)));
    for (const [i, h] of holds.entries()) {
      assert.ok(h.data.equals(f.bytes));
      assert.equal(await h.digest(algs[i]!), await hashOf(algs[i]!, f.bytes));
    }
    for (const h of holds) h.release();
  }
  const total = files.reduce((n, f) => n + f.size, 0);
  assert.equal(s.stats.read, total, 'each small file read once');
  assert.equal(s.stats.hashed, 2 * total, 'once per algorithm');
  assert.ok(s.eager.used <= 64 * 1024, 'within the budget (16 KiB buffers, four of them)');
  // A fifth and sixth file need room: unheld files go, their buffers serve the new ones.
  const more = await Promise.all([4, 5, 6, 7].map((i) => makeFile(dir, `s${i}.bin`, 12_000)));
  const held = await s.eager.hold(more[0]!);
  for (const f of more.slice(1)) {
    const h = await s.eager.hold(f);
    assert.ok(h.data.equals(f.bytes));
    h.release();
  }
  assert.ok(held.data.equals(more[0]!.bytes), 'a held file is never overwritten by a reused buffer');
  held.release();
  assert.ok(s.eager.used <= 64 * 1024);
});

test('small files: the last destination expected drops a file once it sent it; earlier ones and fan-out keep it for the others', async (t) => {
  const dir = await tempDirFor(t);
  const s = new SendSources({ chunkBytes: CHUNK, log: memoryLogger(), eagerBytes: 64 * 1024 });
  const [one, two, kept] = await Promise.all(['one', 'two', 'kept'].map((n) => makeFile(dir, `${n}.bin`, 10_000)));

  // One destination (nothing expect()ed): it is the last; the file leaves the cache on release.
  assert.equal(s.arrived(one!), true, 'no other destination expected');
  s.eager.prefetch(one!, 'xxh3-128');
  const h1 = await s.eager.hold(one!, true);
  assert.ok(h1.data.equals(one!.bytes));
  assert.equal(await h1.digest('xxh3-128'), await hashOf('xxh3-128', one!.bytes));
  assert.ok(s.eager.used > 0, 'held: in the cache');
  h1.release();
  assert.equal(s.eager.used, 0, 'sent to its last destination: gone from the cache at once');
  const again = await s.eager.hold(one!, s.arrived(one!));
  assert.ok(again.data.equals(one!.bytes), 'a later holder (a retry) reads it again, whole');
  again.release();
  assert.equal(s.eager.used, 0, 'and drops it again');
  assert.equal(s.stats.read, 2 * one!.size, 'read again after it was dropped');

  // Fan-out to two: the one arriving last holds first; the file stays until the other held it.
  s.expect(two!, 2);
  assert.equal(s.arrived(two!), false, 'the other destination is still expected');
  s.eager.prefetch(two!, 'sha256');
  assert.equal(s.arrived(two!), true);
  s.eager.prefetch(two!, 'xxh3-128');
  const b = await s.eager.hold(two!, true);
  b.release();
  assert.ok(s.eager.used > 0, 'kept: a destination that prefetched it has not held it yet');
  const a = await s.eager.hold(two!, false);
  assert.ok(a.data.equals(two!.bytes));
  assert.equal(await a.digest('sha256'), await hashOf('sha256', two!.bytes));
  a.release();
  assert.equal(s.stats.read, 3 * one!.size, 'the fan-out read the file once');
  assert.equal(s.eager.used, 0, 'every destination announced held it: gone');

  // Not the last (or unknown): cached as before, for destinations yet to come.
  s.eager.prefetch(kept!, 'sha256');
  const k = await s.eager.hold(kept!);
  k.release();
  assert.ok(s.eager.used > 0, 'kept in the cache');
});

test('read buffers all back and idle are let go; one lent out keeps the others', async () => {
  const pool = new BufferPool(CHUNK, 4, 20);
  const a = await pool.acquire();
  const b = await pool.acquire();
  pool.release(a);
  assert.equal(pool.allocated, 2);
  const c = await pool.acquire(); // a, reused
  assert.equal(pool.allocated, 2, 'a free buffer is reused before a new one is made');
  pool.release(c);
  await new Promise((r) => setTimeout(r, 60)); // b is still lent: nothing goes
  assert.equal(pool.allocated, 2);
  pool.release(b.subarray(0, 10));
  await waitUntil(() => pool.allocated === 0, undefined, () => `allocated ${pool.allocated}`);
  const d = await pool.acquire();
  assert.equal(d.length, CHUNK);
  assert.equal(pool.allocated, 1, 'the next burst allocates again');
  pool.release(b); // a buffer let go is not taken back (a stray second release)
  const e = await pool.acquire();
  assert.notEqual(e.buffer, b.buffer);
  assert.equal(pool.allocated, 2);
});

/**
 * The inbox with the file hash of protocol v1.1 (XXH3-128): verification, the resume
 * prefix in the connection's hash (the whole-file hash still covers every byte), and the
 * dedupe journal across algorithms. Real files in temp folders.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { digestBytes } from '../helpers/hash.js';
import { bytes, fixture, listFiles, sha } from './util.js';

const xxh = (b: Buffer): Promise<string> => digestBytes(b, 'xxh3-128');

describe('Inbox with XXH3-128', () => {
  test('lands a file verified with XXH3-128: Landed names the algorithm, sha256 is null; the journal records xxh128', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(200_000);
      const r = await ib.begin({ source: 'a', path: 'x.bin', size: data.length, mtimeMs: 5, resume: true, hash: 'xxh3-128' });
      assert.ok(r.kind === 'write');
      assert.equal(r.file.hash, 'xxh3-128');
      await r.file.write(data);
      const landed = await r.file.commit(await xxh(data));
      assert.equal(landed.hash, 'xxh3-128');
      assert.equal(landed.digest, await xxh(data));
      assert.equal(landed.sha256, null);
      await ib.close();
      const journal = (await fs.readFile(path.join(fx.stateDir, 'landed.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(journal.at(-1)!.xxh128, await xxh(data));
      assert.equal(journal.at(-1)!.sha256, undefined);
    } finally {
      await fx.cleanup();
    }
  });

  test('a single flipped byte: HASH_MISMATCH naming XXH3-128, nothing lands, the partial is gone', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(100_000);
      const bad = Buffer.from(data);
      bad[54_321] = bad[54_321]! ^ 0x01;
      const r = await ib.begin({ source: 'a', path: 'x.bin', size: data.length, mtimeMs: 5, resume: true, hash: 'xxh3-128' });
      assert.ok(r.kind === 'write');
      await r.file.write(bad);
      await assert.rejects(r.file.commit(await xxh(data)), (e: { code?: string; message?: string }) => e.code === 'HASH_MISMATCH' && /XXH3-128 of the received bytes is [0-9a-f]{32}, the sender announced [0-9a-f]{32}/.test(e.message ?? ''));
      assert.deepEqual(await listFiles(fx.inboxDir), []);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('resume: the prefix digest is XXH3-128 of the bytes held, and the hash over the resumed file covers the whole file', async () => {
    const fx = await fixture();
    try {
      const data = bytes(300_000);
      const req = { source: 'a', path: 'r.bin', size: data.length, mtimeMs: 7, resume: true, hash: 'xxh3-128' as const };
      const ib = await fx.open();
      const first = await ib.begin(req);
      assert.ok(first.kind === 'write');
      await first.file.write(data.subarray(0, 120_000));
      await first.file.abort(true);
      const r = await ib.begin(req);
      assert.ok(r.kind === 'write');
      assert.equal(r.file.offset, 120_000);
      assert.equal(r.file.prefixDigest, await xxh(data.subarray(0, 120_000)));
      assert.equal(r.file.prefixSha256, null, 'no SHA-256 field on an XXH3-128 connection');
      await r.file.write(data.subarray(120_000));
      // Only the whole file's digest verifies: a digest of the part sent is refused.
      const landed = await r.file.commit(await xxh(data));
      assert.equal(landed.digest, await xxh(data));
      assert.deepEqual(await fs.readFile(landed.abs), data);
      // A SHA-256 connection resuming the same kind of partial gets its prefix in SHA-256.
      const s1 = await ib.begin({ ...req, path: 's.bin', hash: 'sha256' });
      assert.ok(s1.kind === 'write');
      await s1.file.write(data.subarray(0, 50_000));
      await s1.file.abort(true);
      const s2 = await ib.begin({ ...req, path: 's.bin', hash: 'sha256' });
      assert.ok(s2.kind === 'write');
      assert.equal(s2.file.prefixSha256, sha(data.subarray(0, 50_000)));
      await s2.file.abort(false);
    } finally {
      await fx.cleanup();
    }
  });

  test('dedupe across algorithms: a version landed over XXH3-128 is a duplicate for a SHA-256 resend (and back), checked against the landed bytes', async () => {
    const fx = await fixture('rename');
    try {
      const ib = await fx.open();
      const data = bytes(4000);
      const r = await ib.begin({ source: 'a', path: 'd.bin', size: data.length, mtimeMs: 9, resume: true, hash: 'xxh3-128' });
      assert.ok(r.kind === 'write');
      await r.file.write(data);
      await r.file.commit(await xxh(data));
      assert.deepEqual(await ib.begin({ source: 'a', path: 'd.bin', size: data.length, mtimeMs: 9, resume: true }), { kind: 'skip', status: 'duplicate', rel: 'd.bin' });
      // The landed file changed on disk (same size): the record no longer matches, the file is received again.
      const other = bytes(4000);
      await fs.writeFile(path.join(fx.inboxDir, 'd.bin'), other);
      const again = await ib.begin({ source: 'a', path: 'd.bin', size: data.length, mtimeMs: 9, resume: true, hash: 'xxh3-128' });
      assert.equal(again.kind, 'write');
      if (again.kind === 'write') await again.file.abort(false);
      // SHA-256 record, XXH3-128 resend.
      const s = await ib.begin({ source: 'a', path: 'e.bin', size: data.length, mtimeMs: 9, resume: true });
      assert.ok(s.kind === 'write');
      await s.file.write(data);
      await s.file.commit(sha(data));
      assert.equal((await ib.begin({ source: 'a', path: 'e.bin', size: data.length, mtimeMs: 9, resume: true, hash: 'xxh3-128' })).kind, 'skip');
    } finally {
      await fx.cleanup();
    }
  });
});

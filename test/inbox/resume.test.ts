import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Staging } from '../../src/inbox/staging.js';
import { fixture, sha, bytes, listFiles, send } from './util.js';

describe('Inbox: resume and stale partials', () => {
  test('abort(keepPartial=true) then begin again: right offset and prefix hash; completing lands the whole file', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(2_500_000);
      const f = await send(ib, 'a/b.bin', data, { upTo: 1_000_000, chunk: 250_000 });
      assert.equal(f.received, 1_000_000);
      await f.abort(true);
      assert.deepEqual(await listFiles(fx.inboxDir), []);
      const g = await send(ib, 'a/b.bin', data);
      assert.equal(g.offset, 1_000_000);
      assert.equal(g.prefixSha256, sha(data.subarray(0, 1_000_000)));
      const landed = await g.commit(sha(data));
      assert.deepEqual(await fs.readFile(landed.abs), data);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('after a crash (new Inbox instance on the same folders) the partial is resumed', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(700_000);
      await send(ib, 'x.bin', data, { upTo: 300_000, chunk: 100_000 });
      // "crash": the first instance and its file are never closed; once the bytes reached
      // the disk, a second instance on the same folders takes over
      const staging = new Staging(fx.stagingDir, '');
      const partial = staging.dataPath(staging.id('agent1', 'x.bin'));
      for (let i = 0; i < 200 && (await fs.stat(partial)).size < 300_000; i++) await new Promise((r) => setTimeout(r, 10));
      const ib2 = await fx.open();
      const r = await ib2.begin({ source: 'agent1', path: 'x.bin', size: data.length, mtimeMs: 1000, resume: true });
      assert.ok(r.kind === 'write');
      assert.equal(r.file.offset, 300_000);
      assert.equal(r.file.prefixSha256, sha(data.subarray(0, 300_000)));
      await r.file.write(data.subarray(300_000));
      assert.deepEqual(await fs.readFile((await r.file.commit(sha(data))).abs), data);
    } finally {
      await fx.cleanup();
    }
  });

  test('resume:false discards the partial and starts at 0', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(10_000);
      await (await send(ib, 'x.bin', data, { upTo: 5000 })).abort(true);
      const r = await ib.begin({ source: 'agent1', path: 'x.bin', size: data.length, mtimeMs: 1000, resume: false });
      assert.ok(r.kind === 'write');
      assert.equal(r.file.offset, 0);
      assert.equal(r.file.prefixSha256, null);
      await r.file.write(data);
      assert.deepEqual(await fs.readFile((await r.file.commit(sha(data))).abs), data);
    } finally {
      await fx.cleanup();
    }
  });

  test('a different version (mtime or size) or another source does not resume', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(10_000);
      for (const req of [
        { source: 'agent1', mtimeMs: 1001, size: 10_000 },
        { source: 'agent1', mtimeMs: 1000, size: 10_001 },
        { source: 'agent2', mtimeMs: 1000, size: 10_000 },
      ]) {
        await (await send(ib, 'x.bin', data, { upTo: 5000 })).abort(true);
        const r = await ib.begin({ ...req, path: 'x.bin', resume: true });
        assert.ok(r.kind === 'write');
        assert.equal(r.file.offset, 0, JSON.stringify(req));
        await r.file.abort(false);
      }
      // control: the same version does resume
      await (await send(ib, 'x.bin', data, { upTo: 5000 })).abort(true);
      assert.equal((await send(ib, 'x.bin', data, { upTo: 5000 })).offset, 5000);
    } finally {
      await fx.cleanup();
    }
  });

  test('abort(false) deletes the partial', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      await (await send(ib, 'x.bin', bytes(10_000), { upTo: 5000 })).abort(false);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('a partial longer than the announced size is truncated to it', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(4000);
      await (await send(ib, 'x.bin', data, { upTo: 4000 })).abort(true);
      const staging = new Staging(fx.stagingDir, '');
      const id = staging.id('agent1', 'x.bin');
      await fs.appendFile(staging.dataPath(id), bytes(500));
      const r = await ib.begin({ source: 'agent1', path: 'x.bin', size: 4000, mtimeMs: 1000, resume: true });
      assert.ok(r.kind === 'write');
      assert.equal(r.file.offset, 4000);
      assert.equal(r.file.prefixSha256, sha(data));
      assert.equal((await fs.stat(staging.dataPath(id))).size, 4000);
      assert.deepEqual(await fs.readFile((await r.file.commit(sha(data))).abs), data);
    } finally {
      await fx.cleanup();
    }
  });

  test('open removes stale partials, partials without meta, orphan meta and temp files; keeps fresh ones', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      await (await send(ib, 'fresh.bin', bytes(1000), { upTo: 500 })).abort(true);
      await (await send(ib, 'old.bin', bytes(1000), { upTo: 500 })).abort(true);
      await ib.close();
      const staging = new Staging(fx.stagingDir, '');
      const old = staging.dataPath(staging.id('agent1', 'old.bin'));
      const past = new Date(Date.now() - 2 * 3600_000);
      await fs.utimes(old, past, past);
      const orphanData = path.join(fx.stagingDir, 'a'.repeat(32));
      await fs.writeFile(orphanData, 'x');
      const badMetaId = 'b'.repeat(32);
      await fs.writeFile(path.join(fx.stagingDir, badMetaId), 'x');
      await fs.writeFile(path.join(fx.stagingDir, `${badMetaId}.json`), '{"v":1,"sour');
      await fs.writeFile(path.join(fx.stagingDir, `${'c'.repeat(32)}.json`), JSON.stringify({ v: 1, source: 's', rel: 'r', size: 1, mtimeMs: 1, createdAt: 1 }));
      await fs.writeFile(path.join(fx.stagingDir, `${'d'.repeat(32)}.json.tmp-1234`), '{}');
      await fs.writeFile(path.join(fx.stagingDir, 'README-not-ours.txt'), 'keep me');
      await fx.open({ resumeTtlMs: 3600_000 });
      const freshId = staging.id('agent1', 'fresh.bin');
      assert.deepEqual(await listFiles(fx.stagingDir), ['README-not-ours.txt', freshId, `${freshId}.json`].sort());
      assert.ok(fx.log.records.some((r) => r.msg === 'removed stale partial file from staging' && r.fields.why === 'older than the resume time limit'));
    } finally {
      await fx.cleanup();
    }
  });
});

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { InboxError } from '../../src/inbox/inbox.js';
import { fixture, sha, bytes, listFiles, send } from './util.js';

async function rejectsWith(p: Promise<unknown>, code: string, msgPart?: RegExp): Promise<InboxError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof InboxError, `expected InboxError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (msgPart) assert.match(err.message, msgPart);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

describe('Inbox: writing and committing', () => {
  test('fresh file lands byte-identical; nothing visible in the inbox before commit; staging empty after', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      assert.equal(ib.path, fx.inboxDir);
      assert.equal(ib.stagingDir, fx.stagingDir);
      const data = bytes(3 * 1024 * 1024 + 17);
      const r = await ib.begin({ source: 'agent1', path: 'shots/a.bin', size: data.length, mtimeMs: 5, resume: true });
      assert.equal(r.kind, 'write');
      if (r.kind !== 'write') return;
      const f = r.file;
      assert.equal(f.offset, 0);
      assert.equal(f.prefixSha256, null);
      assert.equal(f.rel, 'shots/a.bin');
      for (let o = 0; o < data.length; o += 100_000) {
        await f.write(data.subarray(o, o + 100_000));
        assert.deepEqual(await listFiles(fx.inboxDir), [], 'nothing in the inbox while writing');
      }
      assert.equal(f.received, data.length);
      assert.equal((await listFiles(fx.stagingDir)).length, 2, 'data + meta in staging');
      const landed = await f.commit(sha(data));
      const { markAnnounced, ...fields } = landed;
      assert.equal(typeof markAnnounced, 'function');
      assert.deepEqual(fields, {
        inbox: 'main',
        rel: 'shots/a.bin',
        abs: path.join(fx.inboxDir, 'shots', 'a.bin'),
        size: data.length,
        hash: 'sha256',
        digest: sha(data),
        sha256: sha(data),
        renamedFrom: null,
      });
      assert.deepEqual(await fs.readFile(landed.abs), data);
      assert.deepEqual(await listFiles(fx.inboxDir), ['shots/a.bin']);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      // the file is finished: further use is refused
      await rejectsWith(f.write(Buffer.from('x')), 'CLOSED');
    } finally {
      await fx.cleanup();
    }
  });

  test('unknown size (legacy) and null hash: lands with the computed hash', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(1000);
      const r = await ib.begin({ source: 'legacy:10.0.0.5', path: 'x.tox', size: null, mtimeMs: null, resume: true });
      assert.ok(r.kind === 'write');
      await r.file.write(data);
      const landed = await r.file.commit(null);
      assert.equal(landed.sha256, sha(data));
      assert.equal(landed.size, 1000);
      assert.deepEqual(await fs.readFile(path.join(fx.inboxDir, 'x.tox')), data);
    } finally {
      await fx.cleanup();
    }
  });

  test('writeWhole (eager files): several chunks in one positional write land byte-identical; more than announced is TOO_LARGE and leaves nothing', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(300_000);
      const r = await ib.begin({ source: 'agent1', path: 'whole/a.bin', size: data.length, mtimeMs: 1, resume: false });
      assert.equal(r.kind, 'write');
      const f = (r as { file: import('../../src/inbox/inbox.js').IncomingFile }).file;
      await f.writeWhole([data.subarray(0, 1000), Buffer.alloc(0), data.subarray(1000, 200_000), data.subarray(200_000)]);
      assert.equal(f.received, data.length);
      const landed = await f.commit(sha(data));
      assert.deepEqual(await fs.readFile(landed.abs), data);
      const r2 = await ib.begin({ source: 'agent1', path: 'whole/b.bin', size: 10, mtimeMs: 1, resume: false });
      const g = (r2 as { file: import('../../src/inbox/inbox.js').IncomingFile }).file;
      await assert.rejects(g.writeWhole([Buffer.alloc(11)]), (e: unknown) => e instanceof InboxError && e.code === 'TOO_LARGE');
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      assert.deepEqual(await listFiles(fx.inboxDir), ['whole/a.bin']);
    } finally {
      await fx.cleanup();
    }
  });

  test('zero-byte file', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const f = await send(ib, 'empty.txt', Buffer.alloc(0));
      const landed = await f.commit(sha(Buffer.alloc(0)));
      assert.equal((await fs.stat(landed.abs)).size, 0);
    } finally {
      await fx.cleanup();
    }
  });

  test('hash mismatch deletes the partial and rejects (retryable)', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(5000);
      const f = await send(ib, 'a.bin', data);
      const err = await rejectsWith(f.commit(sha(Buffer.from('other'))), 'HASH_MISMATCH', /a\.bin/);
      assert.equal(err.retryable, true);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      assert.deepEqual(await listFiles(fx.inboxDir), []);
      // the writer slot is free again
      const again = await send(ib, 'a.bin', data);
      assert.equal(again.offset, 0);
      await again.commit(sha(data));
    } finally {
      await fx.cleanup();
    }
  });

  test('size mismatch: fewer bytes than announced', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(5000);
      const f = await send(ib, 'a.bin', data, { upTo: 4000 });
      await rejectsWith(f.commit(null), 'SIZE_MISMATCH', /5000.*4000/);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      assert.deepEqual(await listFiles(fx.inboxDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('more bytes than announced -> TOO_LARGE, partial removed', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const f = await send(ib, 'a.bin', bytes(100));
      const err = await rejectsWith(f.write(Buffer.from('!')), 'TOO_LARGE');
      assert.equal(err.retryable, false);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      await rejectsWith(f.commit(null), 'TOO_LARGE');
    } finally {
      await fx.cleanup();
    }
  });

  test('size above maxFileBytes is refused at begin; unknown size is capped while writing', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open({ maxFileBytes: 1000 });
      await rejectsWith(ib.begin({ source: 's', path: 'big', size: 1001, mtimeMs: 1, resume: true }), 'TOO_LARGE', /limits\.maxFileBytes/);
      const r = await ib.begin({ source: 'legacy:1.2.3.4', path: 'big', size: null, mtimeMs: null, resume: true });
      assert.ok(r.kind === 'write');
      await r.file.write(bytes(1000));
      await rejectsWith(r.file.write(bytes(1)), 'TOO_LARGE');
      assert.deepEqual(await listFiles(fx.inboxDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('BAD_NAME for hostile names, nothing created', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      for (const p of ['../evil', '/etc/passwd', 'a/../../b', 'C:\\x', 'a\\b', 'a\u0000b', '', '.tdxfer-staging/x', '.TDXFER-STAGING/x', 'x/'.repeat(40) + 'y']) {
        const err = await rejectsWith(ib.begin({ source: 's', path: p, size: 1, mtimeMs: 1, resume: true }), 'BAD_NAME');
        assert.equal(err.retryable, false);
      }
      assert.deepEqual(await listFiles(fx.inboxDir), []);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      assert.deepEqual(await listFiles(fx.root).then((l) => l.filter((f) => !f.startsWith('state/'))), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('sanitised names land under the safe name and the change is logged once', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(10);
      const f = await send(ib, 'CON.txt', data);
      const landed = await f.commit(sha(data));
      assert.equal(landed.rel, '_CON.txt');
      assert.deepEqual(await listFiles(fx.inboxDir), ['_CON.txt']);
      const logged = fx.log.records.filter((r) => r.msg === 'sanitised incoming file name');
      assert.equal(logged.length, 1);
      assert.equal(logged[0]!.level, 'info');
    } finally {
      await fx.cleanup();
    }
  });

  test('second begin of the same (source, rel) while open -> BUSY; other source is independent', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(100);
      const [a, b] = await Promise.allSettled([
        ib.begin({ source: 's1', path: 'x.bin', size: 100, mtimeMs: 1, resume: true }),
        ib.begin({ source: 's1', path: 'x.bin', size: 100, mtimeMs: 1, resume: true }),
      ]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(b.status, 'rejected');
      const err = (b as PromiseRejectedResult).reason as InboxError;
      assert.equal(err.code, 'BUSY');
      assert.equal(err.retryable, true);
      const other = await ib.begin({ source: 's2', path: 'x.bin', size: 100, mtimeMs: 1, resume: true });
      assert.equal(other.kind, 'write');
      if (other.kind === 'write') await other.file.abort(false);
      const first = (a as PromiseFulfilledResult<Awaited<ReturnType<typeof ib.begin>>>).value;
      assert.ok(first.kind === 'write');
      await first.file.write(data);
      await first.file.commit(sha(data));
      // after commit the slot is free
      const next = await ib.begin({ source: 's1', path: 'x.bin', size: 100, mtimeMs: 2, resume: true });
      assert.equal(next.kind, 'write');
    } finally {
      await fx.cleanup();
    }
  });

  test('NO_SPACE when free space minus reserve is insufficient; message names inbox and sizes', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open({ reserveBytes: 2 ** 62 });
      const err = await rejectsWith(ib.begin({ source: 's', path: 'a.bin', size: 10, mtimeMs: 1, resume: true }), 'NO_SPACE');
      assert.match(err.message, /main/);
      assert.ok(err.message.includes(fx.inboxDir));
      assert.match(err.message, /free but needs/);
      assert.equal(err.retryable, true);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
    } finally {
      await fx.cleanup();
    }
  });

  test('dedupe: the same version already landed -> duplicate; changed mtime or deleted target -> written again', async () => {
    const fx = await fixture('rename');
    try {
      const ib = await fx.open();
      const data = bytes(300);
      await (await send(ib, 'd/a.bin', data, { mtimeMs: 42 })).commit(sha(data));
      const dup = await ib.begin({ source: 'agent1', path: 'd/a.bin', size: 300, mtimeMs: 42, resume: true });
      assert.deepEqual(dup, { kind: 'skip', status: 'duplicate', rel: 'd/a.bin' });
      // survives a restart (journal on disk)
      await ib.close();
      const ib2 = await fx.open();
      const dup2 = await ib2.begin({ source: 'agent1', path: 'd/a.bin', size: 300, mtimeMs: 42, resume: true });
      assert.equal(dup2.kind, 'skip');
      // other source: not a duplicate (rename policy -> lands as copy)
      const other = await send(ib2, 'd/a.bin', data, { source: 'agent2', mtimeMs: 42 });
      assert.equal((await other.commit(sha(data))).rel, 'd/a (1).bin');
      // new version
      const v2 = await ib2.begin({ source: 'agent1', path: 'd/a.bin', size: 300, mtimeMs: 43, resume: true });
      assert.equal(v2.kind, 'write');
      if (v2.kind === 'write') await v2.file.abort(false);
      // target deleted -> received again
      await fs.rm(path.join(fx.inboxDir, 'd', 'a.bin'));
      const again = await ib2.begin({ source: 'agent1', path: 'd/a.bin', size: 300, mtimeMs: 42, resume: true });
      assert.equal(again.kind, 'write');
      if (again.kind === 'write') await again.file.abort(false);
    } finally {
      await fx.cleanup();
    }
  });

  test('close() aborts open files keeping partials, later begin is CLOSED', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const data = bytes(10_000);
      const f = await send(ib, 'a.bin', data, { upTo: 4000 });
      await ib.close();
      await rejectsWith(f.write(Buffer.from('x')), 'CLOSED');
      await rejectsWith(ib.begin({ source: 's', path: 'b', size: 1, mtimeMs: 1, resume: true }), 'CLOSED');
      const ib2 = await fx.open();
      const r = await ib2.begin({ source: 'agent1', path: 'a.bin', size: data.length, mtimeMs: 1000, resume: true });
      assert.ok(r.kind === 'write');
      assert.equal(r.file.offset, 4000);
    } finally {
      await fx.cleanup();
    }
  });

  test('health reports existence, writability and free space', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      const h = await ib.health();
      assert.equal(h.exists, true);
      assert.equal(h.writable, true);
      assert.ok(typeof h.freeBytes === 'number' && h.freeBytes > 0);
      await fs.rm(fx.inboxDir, { recursive: true });
      assert.deepEqual(await ib.health(), { exists: false, writable: false, freeBytes: null });
    } finally {
      await fx.cleanup();
    }
  });

  test('open creates missing inbox, staging and state folders; refuses an inbox that is a file', async () => {
    const fx = await fixture();
    try {
      await fx.open();
      assert.ok((await fs.stat(fx.inboxDir)).isDirectory());
      assert.ok((await fs.stat(fx.stagingDir)).isDirectory());
      assert.ok((await fs.stat(fx.stateDir)).isDirectory());
      assert.ok(fx.log.records.some((r) => r.msg === 'created inbox folder'));
      const filePath = path.join(fx.root, 'notadir');
      await fs.writeFile(filePath, 'x');
      const { Inbox } = await import('../../src/inbox/inbox.js');
      await rejectsWith(Inbox.open({ ...fx.cfg, path: filePath }, { log: fx.log, stateDir: fx.stateDir, maxFileBytes: 10 }), 'IO', /not a folder/);
    } finally {
      await fx.cleanup();
    }
  });
});

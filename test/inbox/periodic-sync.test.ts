/**
 * Issue #12: a big file's durability overlapped with its transfer. While a streamed file
 * is written, a datasync starts every SYNC_EVERY_BYTES (gather-writer.ts); the final fsync
 * before the landing still runs. Real files and real fdatasync calls; the datasync is
 * wrapped only to count the calls, to hold one back, or to report a failure (a disk's
 * writeback error cannot be caused on demand here).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { fdatasync, openSync, closeSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InboxError } from '../../src/inbox/inbox.js';
import { GatherWriter, SYNC_EVERY_BYTES, type GatherOptions } from '../../src/inbox/gather-writer.js';
import { BIG_RECEIVE_BYTES, bigReceiveState } from '../../src/heap-tuning.js';
import { waitUntil } from '../helpers/wait.js';
import { fixture, sha, bytes, listFiles, send } from './util.js';

const MB = 1024 * 1024;

/** The real fdatasync, counted. */
function counting(): { calls: number; opts: GatherOptions['datasync'] } {
  const c = { calls: 0, opts: undefined as GatherOptions['datasync'] };
  c.opts = (fd, done) => {
    c.calls++;
    fdatasync(fd, done);
  };
  return c;
}

describe('Inbox: periodic datasync of a big streamed file', () => {
  test('a file past the step lands intact and verified after datasyncs during the transfer; the log says how many', async () => {
    const fx = await fixture();
    try {
      const c = counting();
      const ib = await fx.open({ gather: { datasync: c.opts, syncEvery: MB } });
      const data = bytes(6 * MB + 123);
      const f = await send(ib, 'big.bin', data);
      assert.ok(c.calls >= 1, `a datasync while writing: ${c.calls}`);
      const landed = await f.commit(sha(data));
      // At most one runs at a time; the bytes written meanwhile get the next one.
      assert.ok(c.calls >= 2, `datasyncs for 6 MiB with a 1 MiB step: ${c.calls}`);
      assert.deepEqual(await fs.readFile(landed.abs), data);
      assert.deepEqual(await listFiles(fx.stagingDir), []);
      const flushed = fx.log.records.find((r) => r.msg === 'file flushed');
      assert.ok(flushed, 'a debug line with the tail of the file');
      assert.equal(flushed.fields['periodicSyncs'], c.calls);
    } finally {
      await fx.cleanup();
    }
  });

  test('the default step: a file just past it gets a datasync while written; one below it gets none (only the final fsync)', async () => {
    const fx = await fixture();
    try {
      const c = counting();
      const ib = await fx.open({ gather: { datasync: c.opts } });
      const small = bytes(SYNC_EVERY_BYTES - 4 * MB);
      const f1 = await send(ib, 'small.bin', small, { chunk: 1 << 20 });
      await f1.commit(sha(small));
      assert.equal(c.calls, 0, 'a file below the step gets no periodic datasync');
      assert.equal(fx.log.records.filter((r) => r.msg === 'file flushed').length, 0);

      const big = bytes(SYNC_EVERY_BYTES + 4 * MB);
      const f2 = await send(ib, 'big.bin', big, { chunk: 1 << 20 });
      const landed = await f2.commit(sha(big));
      assert.ok(c.calls >= 1, `a file past the step gets one: ${c.calls}`);
      assert.equal(readFileSync(landed.abs).length, big.length);
      assert.deepEqual(await fs.readFile(landed.abs), big);
    } finally {
      await fx.cleanup();
    }
  });

  test('a failed datasync fails the file: it does not land, its partial is discarded, the error names the file', async () => {
    const fx = await fixture();
    try {
      let calls = 0;
      const failing: GatherOptions['datasync'] = (fd, done) => {
        calls++;
        if (calls === 2) {
          const err = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
          setImmediate(() => done(err));
        } else fdatasync(fd, done);
      };
      const ib = await fx.open({ gather: { datasync: failing, syncEvery: MB } });
      const data = bytes(8 * MB);
      let failure: unknown = null;
      try {
        const f = await send(ib, 'doomed.bin', data);
        await f.commit(sha(data));
      } catch (err) {
        failure = err;
      }
      assert.ok(calls >= 2, `the failing datasync ran: ${calls}`);
      assert.ok(failure instanceof InboxError, `expected an InboxError, got ${String(failure)}`);
      assert.equal(failure.code, 'IO');
      assert.match(failure.message, /doomed\.bin/);
      assert.match(failure.message, /EIO/);
      assert.deepEqual(await listFiles(fx.inboxDir), [], 'nothing landed');
      await waitUntil(async () => (await listFiles(fx.stagingDir)).length === 0, undefined, () => 'the partial discarded');
      assert.ok(fx.log.records.some((r) => r.level === 'warn' && r.msg === 'incoming file failed'));
      // The same file sent again (healthy disk from here on) lands.
      const again = await send(ib, 'doomed.bin', data);
      const landed = await again.commit(sha(data));
      assert.equal(again.offset, 0, 'nothing of the failed partial was resumed');
      assert.deepEqual(await fs.readFile(landed.abs), data);
    } finally {
      await fx.cleanup();
    }
  });

  test('a resumed file: datasyncs continue from the resume offset and the landed file is verified whole', async () => {
    const fx = await fixture();
    try {
      const c = counting();
      const ib = await fx.open({ gather: { datasync: c.opts, syncEvery: MB } });
      const data = bytes(5 * MB + 7);
      const first = await send(ib, 'r.bin', data, { upTo: 2 * MB + 5 });
      await first.abort(true);
      const before = c.calls;
      const second = await send(ib, 'r.bin', data);
      assert.ok(second.offset > 0, 'resumed');
      assert.ok(c.calls > before, 'datasyncs while writing the rest');
      const landed = await second.commit(sha(data));
      assert.deepEqual(await fs.readFile(landed.abs), data);
    } finally {
      await fx.cleanup();
    }
  });
});

describe('Inbox: the heap\'s big-receive setting (heap-tuning.ts) is held exactly while a big file streams in', () => {
  test('held from the first write to the landing, and to an abort; never for a small file', async () => {
    const fx = await fixture();
    try {
      const ib = await fx.open();
      assert.equal(bigReceiveState().active, 0);
      const small = bytes(2 * MB);
      const s = await send(ib, 'small.bin', small);
      assert.equal(bigReceiveState().active, 0, 'a small file does not hold it');
      await s.commit(sha(small));

      const data = bytes(BIG_RECEIVE_BYTES + MB);
      const cut = await send(ib, 'cut.bin', data, { upTo: MB });
      assert.equal(bigReceiveState().active, 1);
      await cut.abort(true);
      assert.equal(bigReceiveState().active, 0, 'released by the abort');

      const f = await send(ib, 'big.bin', data, { chunk: MB });
      assert.equal(bigReceiveState().active, 1);
      const landed = await f.commit(sha(data));
      assert.equal(bigReceiveState().active, 0, 'released once landed');
      assert.equal((await fs.stat(landed.abs)).size, data.length);

      const bad = await send(ib, 'bad.bin', data, { chunk: MB });
      await assert.rejects(bad.commit('0'.repeat(64)), (err: unknown) => err instanceof InboxError && err.code === 'HASH_MISMATCH');
      assert.equal(bigReceiveState().active, 0, 'released when the file fails');
    } finally {
      await fx.cleanup();
    }
  });
});

describe('GatherWriter: periodic datasync', () => {
  test('drain() waits for a datasync in flight (the descriptor is not closed under it), then resolves', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-gather-'));
    const file = path.join(dir, 'f');
    const fd = openSync(file, 'w');
    try {
      let held: (() => void) | null = null;
      // Holds the first datasync back until the test lets it run; later ones run at once.
      const holding: GatherOptions['datasync'] = (d, done) => {
        if (held === null) held = () => fdatasync(d, done);
        else fdatasync(d, done);
      };
      const errors: string[] = [];
      const w = new GatherWriter(fd, 0, () => undefined, (err, doing) => errors.push(`${doing}: ${err.message}`), { datasync: holding, syncEvery: MB });
      const data = bytes(3 * MB);
      for (let o = 0; o < data.length; o += 64 * 1024) await w.write(data.subarray(o, o + 64 * 1024));
      w.flush();
      await waitUntil(() => held !== null, undefined, () => 'a datasync started');
      let drained = false;
      const d = w.drain().then(() => {
        drained = true;
      });
      // Every write can finish meanwhile; the drain must still wait for the datasync.
      await waitUntil(async () => (await fs.stat(file)).size === data.length, undefined, () => 'all bytes written');
      await new Promise((r) => setImmediate(r));
      assert.equal(drained, false, 'drain() resolved under a datasync in flight');
      (held as unknown as () => void)();
      await d;
      assert.equal(w.syncs >= 1, true);
      assert.deepEqual(errors, []);
      w.release();
      assert.deepEqual(readFileSync(file), data);
    } finally {
      closeSync(fd);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('after a failed datasync every write rejects with its error and drain() rejects', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-gather-'));
    const fd = openSync(path.join(dir, 'f'), 'w');
    try {
      const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      const seen: string[] = [];
      const w = new GatherWriter(fd, 0, () => undefined, (_err, doing) => seen.push(doing), { datasync: (_d, done) => setImmediate(() => done(eio)), syncEvery: MB });
      const data = bytes(4 * MB);
      await assert.rejects(async () => {
        for (let o = 0; o < data.length; o += 64 * 1024) await w.write(data.subarray(o, o + 64 * 1024));
        await w.drain();
      }, /EIO/);
      assert.deepEqual(seen, ['syncing'], 'reported once, as a datasync failure');
      assert.equal(w.failed, eio);
      await assert.rejects(Promise.resolve(w.write(Buffer.alloc(10))), /EIO/);
      await assert.rejects(w.drain(), /EIO/);
      await w.settled();
      w.release();
    } finally {
      closeSync(fd);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { readSse, type SseRecord } from '../../src/cli/sse-stream.js';
import { startStatus } from './helpers.js';
import { waitUntil } from '../helpers/wait.js';
import { reportedCode } from '../../src/errors.js';

/** Connects to /events and collects parsed records (and raw text) until closed. */
function listen(url: string): Promise<{ records: SseRecord[]; raw: () => string; res: http.IncomingMessage; close: () => void; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const records: SseRecord[] = [];
      let raw = '';
      res.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      const ended = (async () => {
        try {
          for await (const r of readSse(res)) records.push(r);
        } catch {
          // aborted by close()
        }
      })();
      resolve({ records, raw: () => raw, res, close: () => req.destroy(), ended });
    });
    req.on('error', reject);
  });
}

const until = (cond: () => boolean): Promise<void> => waitUntil(cond);

describe('status API: /events', () => {
  test('streams job, progress, peer, received and failure with the event name as type', async (t) => {
    const s = await startStatus({ sse: { progressIntervalMs: 100 } });
    t.after(() => s.server.stop());
    const c = await listen(`${s.base}/events`);
    t.after(() => c.close());
    assert.equal(c.res.statusCode, 200);
    assert.match(String(c.res.headers['content-type']), /^text\/event-stream/);
    assert.equal(c.res.headers['cache-control'], 'no-store');
    await until(() => c.raw().includes(': connected'));

    s.view.addPeer({ name: 'playback-1' });
    const j = s.view.queueJob('/out/a.mov', 'playback-1', { size: 100 });
    s.view.start(j.id);
    s.view.progress(j.id, 50, 10);
    s.view.receive({ file: 'in/b.mov', from: 'render-2', size: 7 });
    s.view.addFailure({ reason: 'HASH_MISMATCH', message: 'bad hash', peer: 'playback-1' });
    await until(() => c.records.length >= 6);
    assert.deepEqual(c.records.map((r) => r.event), ['peer', 'job', 'job', 'progress', 'received', 'failure']);
    const progress = JSON.parse(c.records[3]!.data) as { id: string; percent: number; etaSeconds: number };
    assert.equal(progress.id, j.id);
    assert.equal(progress.percent, 50);
    assert.equal(progress.etaSeconds, 5);
    assert.equal((JSON.parse(c.records[4]!.data) as { file: string }).file, 'in/b.mov');
    assert.equal((JSON.parse(c.records[5]!.data) as { reason: string }).reason, 'HASH_MISMATCH');
  });

  test('progress is coalesced per job: a burst yields the first and the latest, no more than ~10/s', async (t) => {
    const s = await startStatus({ sse: { progressIntervalMs: 100 } });
    t.after(() => s.server.stop());
    const c = await listen(`${s.base}/events`);
    t.after(() => c.close());
    await until(() => c.raw().includes(': connected'));
    s.view.addPeer({ name: 'p' });
    const a = s.view.queueJob('/out/a.bin', 'p', { size: 1000 });
    const b = s.view.queueJob('/out/b.bin', 'p', { size: 1000 });
    s.view.start(a.id);
    s.view.start(b.id);
    // One synchronous burst: no timer can run inside it, so exactly the first and the latest.
    for (let i = 1; i <= 200; i++) {
      s.view.progress(a.id, i * 5);
      s.view.progress(b.id, i);
    }
    const prog = (id: string): number[] =>
      c.records.filter((r) => r.event === 'progress').map((r) => JSON.parse(r.data) as { id: string; bytesDone: number }).filter((j) => j.id === id).map((j) => j.bytesDone);
    await until(() => prog(a.id).at(-1) === 1000 && prog(b.id).at(-1) === 200);
    assert.deepEqual(prog(a.id), [5, 1000]);
    assert.deepEqual(prog(b.id), [1, 200]);

    // A steady stream: the cap is one event per progressIntervalMs (100 ms). Timers never fire
    // early, so over a measured span at most span/100 + 1 events can be sent, whatever the
    // load (a slow machine only makes the bound looser). No lower bound on the count: that
    // would be a speed. The latest numbers always arrive.
    const before = prog(a.id).length;
    const t0 = Date.now();
    let n = 1000;
    while (Date.now() - t0 < 600) {
      s.view.progress(a.id, n++);
      await sleep(2);
    }
    await until(() => prog(a.id).at(-1) === n - 1);
    const spanMs = Date.now() - t0;
    const sent = prog(a.id).length - before;
    const calls = n - 1000;
    assert.ok(sent >= 1 && sent <= Math.floor(spanMs / 100) + 1, `${sent} progress events for ${calls} updates in ${spanMs} ms: more than one per 100 ms`);
    assert.ok(calls < 10 || sent < calls, `${sent} events for ${calls} updates: not coalesced`);
  });

  test('a state change drops pending progress: no progress event after done', async (t) => {
    const s = await startStatus({ sse: { progressIntervalMs: 100 } });
    t.after(() => s.server.stop());
    const c = await listen(`${s.base}/events`);
    t.after(() => c.close());
    await until(() => c.raw().includes(': connected'));
    s.view.addPeer({ name: 'p' });
    const j = s.view.queueJob('/out/a.bin', 'p', { size: 10 });
    s.view.start(j.id);
    s.view.progress(j.id, 1);
    s.view.progress(j.id, 9); // pending (throttled)
    s.view.finish(j.id);
    // Proof of ordering instead of a sleep: a second job's throttled progress is scheduled
    // after j's would have been, with the same interval, so it fires after it.
    const k = s.view.queueJob('/out/k.bin', 'p', { size: 10 });
    s.view.start(k.id);
    s.view.progress(k.id, 1);
    s.view.progress(k.id, 2); // pending: sent after the interval
    await until(() => c.records.filter((r) => r.event === 'progress').length === 3);
    const events = c.records.map((r) => r.event);
    assert.deepEqual(events, ['peer', 'job', 'job', 'progress', 'job', 'job', 'job', 'progress', 'progress']);
    assert.equal((JSON.parse(c.records[4]!.data) as { state: string; percent: number }).percent, 100);
    const ids = c.records.filter((r) => r.event === 'progress').map((r) => (JSON.parse(r.data) as { id: string }).id);
    assert.deepEqual(ids, [j.id, k.id, k.id], 'no progress for j after it was done');
  });

  test('heartbeat comments keep the stream alive; disconnected clients are removed', async (t) => {
    const s = await startStatus({ sse: { heartbeatMs: 40 } });
    t.after(() => s.server.stop());
    const c = await listen(`${s.base}/events`);
    await until(() => (c.raw().match(/: heartbeat/g) ?? []).length >= 2);
    assert.equal(s.server.eventClients, 1);
    c.close();
    await until(() => s.server.eventClients === 0);
  });

  test('a client that stops reading is dropped past the buffer limit; others keep receiving', async (t) => {
    const s = await startStatus({ sse: { maxBufferBytes: 256 * 1024 } });
    t.after(() => s.server.stop());
    // A raw socket that sends the request and never reads: the kernel buffers fill, then ours.
    const slow = net.connect(s.port, '127.0.0.1');
    slow.pause();
    slow.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\n\r\n`);
    t.after(() => slow.destroy());
    await until(() => s.server.eventClients === 1);
    const good = await listen(`${s.base}/events`);
    t.after(() => good.close());
    await until(() => s.server.eventClients === 2);

    const message = 'x'.repeat(50_000);
    let sent = 0;
    const maxRounds = 800; // 40 MB: far beyond any loopback socket buffering
    while (s.server.eventClients === 2 && sent < maxRounds) {
      s.view.addFailure({ reason: reportedCode('TEST'), message, peer: null });
      sent++;
      await new Promise((r) => setImmediate(r)); // let the good client drain
    }
    assert.equal(s.server.eventClients, 1, `slow client still attached after ${sent} large events`);
    assert.ok(s.log.records.some((r) => r.level === 'warn' && r.msg.includes('slow event-stream client')));
    s.view.addFailure({ reason: reportedCode('AFTER'), message: 'still alive', peer: null });
    await until(() => good.records.some((r) => r.event === 'failure' && r.data.includes('still alive')));
  });
});

describe('readSse', () => {
  test('parses CRLF/CR/LF line ends split across chunks, multi-line data, comments and default event name', async () => {
    const text = ': hi\r\nevent: job\r\ndata: {"a":1}\r\n\r\ndata: one\rdata: two\r\r\nevent: x\n\nevent: y\ndata:z\n\n';
    const bytes = new TextEncoder().encode(text);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += 3) yield bytes.subarray(i, i + 3);
    }
    const out: SseRecord[] = [];
    for await (const r of readSse(chunks())) out.push(r);
    assert.deepEqual(out, [
      { event: 'job', data: '{"a":1}' },
      { event: 'message', data: 'one\ntwo' },
      { event: 'y', data: 'z' },
    ]);
  });
});

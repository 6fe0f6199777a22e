/**
 * FrameChannel (src/transfer/channel.ts) on its own: two channels over a real TCP
 * connection on 127.0.0.1 (port 0), no agent around them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { FrameChannel } from '../../src/transfer/channel.js';
import { TdxError } from '../../src/errors.js';
import type { Frame } from '../../src/protocol/index.js';
import { waitUntil } from '../helpers/wait.js';

async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => a.once('connect', () => r()));
  const b = await accepted;
  return { a, b, close: () => { a.destroy(); b.destroy(); server.close(); } };
}

test('frames and DATA arrive in order; end() closes both sides', async () => {
  const { a, b, close } = await socketPair();
  try {
    const left = new FrameChannel(a, { idleTimeoutMs: 60_000 });
    const right = new FrameChannel(b, { idleTimeoutMs: 60_000 });
    const got: Frame[] = [];
    right.start((f) => void got.push(f));
    left.start(() => undefined);
    left.send({ type: 'offer', id: 7, inbox: 'renders', path: 'a/b.png', size: 5, mtimeMs: 1, resume: false });
    await left.sendData(Buffer.from('hello'));
    left.send({ type: 'end', id: 7, sha256: 'f'.repeat(64) });
    await waitUntil(() => got.length >= 3, undefined, () => `3 frames (got ${got.length})`);
    assert.deepEqual(got.map((f) => f.type), ['offer', 'data', 'end']);
    assert.equal(Buffer.concat(got.filter((f) => f.type === 'data').map((f) => (f as { data: Buffer }).data)).toString(), 'hello');
    const closes: Array<TdxError | null> = [];
    right.on('close', (e) => closes.push(e));
    left.on('close', (e) => closes.push(e));
    left.end();
    await waitUntil(() => closes.length === 2, undefined, () => `both closed (${closes.length})`);
    assert.ok(left.closed && right.closed);
    left.send({ type: 'ready' }); // after close: ignored, no throw
  } finally {
    close();
  }
});

test('fail(err) sends the peer an ERROR frame with the wire code, then closes', async () => {
  const { a, b, close } = await socketPair();
  try {
    const left = new FrameChannel(a, { idleTimeoutMs: 60_000 });
    const right = new FrameChannel(b, { idleTimeoutMs: 60_000 });
    const got: Frame[] = [];
    right.start((f) => void got.push(f));
    left.start(() => undefined);
    left.fail(new TdxError('TOO_MANY_CONNECTIONS', 'full up'));
    await waitUntil(() => got.some((f) => f.type === 'error'));
    const e = got.find((f) => f.type === 'error') as Extract<Frame, { type: 'error' }>;
    assert.equal(e.code, 'TOO_MANY_CONNECTIONS');
    assert.match(e.message, /full up/);
    await waitUntil(() => right.closed && left.closed);
  } finally {
    close();
  }
});

test('a handler that throws fails the channel with that error; garbage bytes are a PROTOCOL_ERROR', async () => {
  const { a, b, close } = await socketPair();
  try {
    const left = new FrameChannel(a, { idleTimeoutMs: 60_000 });
    const got: Frame[] = [];
    left.start((f) => void got.push(f));
    const right = new FrameChannel(b, { idleTimeoutMs: 60_000 });
    right.start((f) => {
      throw new TdxError('OUT_OF_ORDER', `unexpected ${f.type}`);
    });
    left.send({ type: 'ready' });
    await waitUntil(() => got.some((f) => f.type === 'error'));
    assert.equal((got.find((f) => f.type === 'error') as { code: string }).code, 'OUT_OF_ORDER');
  } finally {
    close();
  }
  const p = await socketPair();
  try {
    const ch = new FrameChannel(p.b, { idleTimeoutMs: 60_000 });
    let closedWith: TdxError | null | undefined;
    ch.on('close', (e) => (closedWith = e));
    ch.start(() => undefined);
    const answer: Buffer[] = [];
    p.a.on('data', (d: Buffer) => answer.push(d));
    p.a.write('GET / HTTP/1.1\r\n\r\n');
    await waitUntil(() => closedWith !== undefined);
    assert.equal(closedWith?.code, 'BAD_MAGIC');
    await waitUntil(() => Buffer.concat(answer).includes('PROTOCOL_ERROR'), undefined, () => 'an ERROR PROTOCOL_ERROR frame back');
  } finally {
    p.close();
  }
});

test('a silent peer: the channel pings, and closes with TIMEOUT when nothing comes back', async () => {
  const { a, b, close } = await socketPair();
  try {
    b.pause(); // the other end reads nothing and answers nothing
    const ch = new FrameChannel(a, { idleTimeoutMs: 300, pingIntervalMs: 100 });
    let closedWith: TdxError | null | undefined;
    ch.on('close', (e) => (closedWith = e));
    ch.start(() => undefined);
    await waitUntil(() => closedWith !== undefined, undefined, () => 'the idle timeout');
    assert.equal(closedWith?.code, 'TIMEOUT');
    assert.match(closedWith!.message, /idleTimeoutMs=300/);
  } finally {
    close();
  }
});

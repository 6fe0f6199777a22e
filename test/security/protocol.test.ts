/**
 * Issue #10 items 8 and 9, against a real agent process with a hand-written client:
 * a reused unfinished eager OFFER id is a sequence error (PROTOCOL.md 6.2), and a name
 * over 1024 bytes is refused with NACK BAD_NAME while the session goes on (README).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/rawclient.js';
import { TEST_KEY, listFiles } from '../helpers/agents.js';
import { encodeDataHeader, encodeFrame } from '../../src/protocol/index.js';
import { createHash } from 'node:crypto';
import { p, runAgent, type RunningAgent } from './util.js';

const key = Buffer.from(TEST_KEY, 'base64');
let agent: RunningAgent;
before(async () => {
  agent = await runAgent({ name: 'proto' });
});
after(() => agent?.stop());

function eagerFile(id: number, path: string, data: Buffer): Buffer {
  return Buffer.concat([
    encodeFrame({ type: 'offer', id, inbox: 'renders', path, size: data.length, mtimeMs: 1_700_000_000_000, resume: false, eager: true }),
    encodeDataHeader(data.length),
    data,
    encodeFrame({ type: 'end', id, sha256: createHash('sha256').update(data).digest('hex') }),
  ]);
}

describe('protocol sequence and names', () => {
  test('two eager OFFERs with the same unfinished id: ERROR OUT_OF_ORDER, the second is not stored', async () => {
    const c = await RawClient.connect({ port: agent.port, tlsKey: key });
    await c.handshake(key);
    // Both in one write: the first is still being committed when the second arrives.
    c.write(Buffer.concat([eagerFile(7, 'first.png', Buffer.from('one')), eagerFile(7, 'second.png', Buffer.from('two'))]));
    const err = await c.errorThenClose(30_000);
    assert.equal(err?.code, 'OUT_OF_ORDER');
    assert.match(err?.message ?? '', /reuses id 7/);
    const acks = c.frames.filter((f) => f.type === 'ack');
    assert.ok(acks.length <= 1, `at most the first file is acknowledged, got ${acks.length} ACKs`);
    assert.ok(!(await listFiles(p(agent.dir, 'inbox'))).includes('second.png'));
  });

  test('a name over 1024 bytes gets NACK BAD_NAME and the connection continues', async () => {
    const c = await RawClient.connect({ port: agent.port, tlsKey: key });
    await c.handshake(key);
    const long = `${'d/'.repeat(10)}${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(200)}/${'w'.repeat(200)}/${'v'.repeat(200)}.png`;
    assert.ok(Buffer.byteLength(long) > 1024);
    const ans = await c.sendFile({ id: 1, inbox: 'renders', path: long, data: Buffer.from('long') }, 30_000);
    assert.equal(ans?.type, 'nack');
    assert.equal((ans as { code: string }).code, 'BAD_NAME');
    const ok = await c.sendFile({ id: 2, inbox: 'renders', path: 'after-long.png', data: Buffer.from('fine') }, 30_000);
    assert.equal(ok?.type, 'ack');
    assert.ok(!c.closed);
    c.destroy();
  });
});

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
import fs from 'node:fs/promises';
import { digestBytes } from '../helpers/hash.js';
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

describe('end-to-end file hash (protocol v1.1)', () => {
  const data = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 2654435761) >>> 24));
  const small = data.subarray(0, 5000);
  const staged = async (): Promise<string[]> => (await fs.readdir(p(agent.dir, '.inbox.tdxfer-staging')).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));

  for (const [what, file, eager] of [['streamed 3 MiB', data, false], ['eager 5 kB', small, true]] as const) {
    test(`XXH3-128 negotiated, one byte flipped mid-stream (${what}): NACK HASH_MISMATCH, nothing lands, nothing stays staged, the session goes on`, async () => {
      const c = await RawClient.connect({ port: agent.port, tlsKey: key });
      const { welcome } = await c.handshake(key, { hashes: ['xxh3-128', 'sha256'] });
      assert.equal(welcome.hash, 'xxh3-128', 'the agent picks XXH3-128');
      const name = `flip-${eager ? 'eager' : 'streamed'}.bin`;
      const stagedBefore = await staged();
      const ans = await c.sendFile({ id: 1, inbox: 'renders', path: name, data: file, eager, flipAt: Math.floor(file.length / 2) }, 30_000);
      assert.equal(ans?.type, 'nack');
      assert.equal((ans as { code: string }).code, 'HASH_MISMATCH');
      assert.match((ans as { message: string }).message, /XXH3-128 of the received bytes is [0-9a-f]{32}, the sender announced [0-9a-f]{32}/);
      assert.ok(!(await listFiles(p(agent.dir, 'inbox'))).includes(name), 'nothing landed');
      assert.deepEqual(await staged(), stagedBefore, 'the corrupt copy was discarded');
      // The same bytes, uncorrupted, on the same connection: stored, with the XXH3-128 in the ACK.
      const ok = await c.sendFile({ id: 2, inbox: 'renders', path: name, data: file, eager }, 30_000);
      assert.ok(ok?.type === 'ack' && ok.status === 'stored', JSON.stringify(ok));
      assert.equal(ok.xxh128, await digestBytes(file, 'xxh3-128'));
      assert.equal(ok.sha256, null);
      assert.deepEqual(await fs.readFile(p(agent.dir, 'inbox', name)), file);
      c.destroy();
    });
  }

  test('a client of the previous version (HELLO without hashes) gets SHA-256: WELCOME without `hash`, ACK with sha256, a flipped byte is caught', async () => {
    const c = await RawClient.connect({ port: agent.port, tlsKey: key });
    const { welcome } = await c.handshake(key);
    assert.equal(welcome.hash, undefined);
    assert.equal(c.hash, 'sha256');
    const bad = await c.sendFile({ id: 1, inbox: 'renders', path: 'old-client.bin', data, flipAt: 12345 }, 30_000);
    assert.ok(bad?.type === 'nack' && bad.code === 'HASH_MISMATCH', JSON.stringify(bad));
    assert.match(bad.message, /SHA-256 of the received bytes is [0-9a-f]{64}/);
    const ok = await c.sendFile({ id: 2, inbox: 'renders', path: 'old-client.bin', data }, 30_000);
    assert.ok(ok?.type === 'ack' && ok.status === 'stored');
    assert.equal(ok.sha256, createHash('sha256').update(data).digest('hex'));
    assert.equal(ok.xxh128, undefined, 'no field the old client does not know');
    c.destroy();
  });

  test('END without the digest field of the negotiated hash is a protocol error', async () => {
    const c = await RawClient.connect({ port: agent.port, tlsKey: key });
    await c.handshake(key, { hashes: ['xxh3-128', 'sha256'] });
    c.send({ type: 'offer', id: 1, inbox: 'renders', path: 'wrong-field.bin', size: 3, mtimeMs: 1, resume: false, eager: true });
    c.sendData(Buffer.from('abc'));
    c.send({ type: 'end', id: 1, sha256: createHash('sha256').update('abc').digest('hex') });
    const err = await c.errorThenClose(30_000);
    assert.equal(err?.code, 'PROTOCOL_ERROR');
    assert.match(err?.message ?? '', /END frame without `xxh128`: this connection negotiated xxh3-128/);
    assert.ok(!(await listFiles(p(agent.dir, 'inbox'))).includes('wrong-field.bin'));
  });
});

/**
 * Eager offers (PROTOCOL.md 6.4) against a real agent over real TLS: small files stream
 * without waiting for ACCEPT and are answered only by ACK/NACK; broken eager sequences
 * get a NACK (file-level) or ERROR (sequence), and the agent keeps serving. A receiver
 * with eager offers off announces 0 and refuses them, and our sender then falls back to
 * OFFER → ACCEPT.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { memoryLogger } from '../../src/log.js';
import { PeerConnection } from '../../src/transfer/sender.js';
import type { Agent } from '../../src/agent/agent.js';
import { TEST_KEY, hashTree, listFiles, startAgent, tempDir, writeAgentConfig } from '../helpers/agents.js';
import { digestBytes } from '../helpers/hash.js';
import { RawClient } from '../helpers/rawclient.js';

const KEY = Buffer.from(TEST_KEY, 'base64');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let root = '';
let on: { agent: Agent; port: number; inbox: string; staging: string };
let off: { agent: Agent; port: number; inbox: string };
let big: { agent: Agent; port: number; inbox: string };

async function agentWith(name: string, eagerMaxBytes?: number) {
  const dir = path.join(root, name);
  const cfg = await writeAgentConfig({
    name,
    dir,
    port: 0,
    extra: { limits: { idleTimeoutMs: 5000, handshakeTimeoutMs: 3000, ...(eagerMaxBytes === undefined ? {} : { eagerMaxBytes }) } },
  });
  const agent = await startAgent(cfg);
  return { agent, port: agent.listenAddress.port, inbox: path.join(dir, 'inbox'), staging: path.join(dir, '.inbox.tdxfer-staging') };
}

async function client(port: number): Promise<{ c: RawClient; eagerMaxBytes: number | undefined }> {
  const c = await RawClient.connect({ port, tlsKey: KEY });
  const { welcome } = await c.handshake(KEY, { agentId: 'raw-eager', name: 'raw eager' });
  return { c, eagerMaxBytes: welcome.eagerMaxBytes };
}

function eager(c: RawClient, id: number, p: string, data: Buffer, opts: { size?: number; hash?: string; split?: number } = {}): void {
  c.send({ type: 'offer', id, inbox: 'renders', path: p, size: opts.size ?? data.length, mtimeMs: 1_700_000_000_000 + id, resume: false, eager: true });
  const step = opts.split ?? data.length;
  for (let o = 0; o < data.length; o += Math.max(1, step)) c.sendData(data.subarray(o, Math.min(data.length, o + Math.max(1, step))));
  c.send({ type: 'end', id, sha256: opts.hash ?? sha(data) });
}

const answer = (c: RawClient, id: number) => c.next(10_000, (x) => 'id' in x && x.id === id && (x.type === 'ack' || x.type === 'nack' || x.type === 'accept'));

before(async () => {
  root = await tempDir('tdx-eager-');
  on = await agentWith('eager-on');
  off = await agentWith('eager-off', 0);
  big = await agentWith('eager-4m', 4 * 1024 * 1024);
});

after(async () => {
  await on?.agent.stop();
  await off?.agent.stop();
  await big?.agent.stop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

test('WELCOME announces eagerMaxBytes (1 MiB by default, 0 when off)', async () => {
  const a = await client(on.port);
  const b = await client(off.port);
  assert.equal(a.eagerMaxBytes, 1024 * 1024);
  assert.equal(b.eagerMaxBytes, 0);
  a.c.destroy();
  b.c.destroy();
});

test('100 eager files written back to back, without reading in between: each answered by exactly one ACK stored, no ACCEPT, all land byte-identical', async () => {
  const { c } = await client(on.port);
  const files = Array.from({ length: 100 }, (_, i) => ({ id: i + 1, p: `burst/f.${String(i).padStart(4, '0')}.png`, data: randomBytes(i === 0 ? 0 : 1000 + i * 97) }));
  // the last one exactly at the limit, split into several DATA frames
  files.push({ id: 101, p: 'burst/limit.bin', data: randomBytes(1024 * 1024) });
  for (const f of files) eager(c, f.id, f.p, f.data, { split: f.id === 101 ? 300_000 : undefined });
  for (const f of files) {
    const a = await answer(c, f.id);
    assert.equal(a?.type, 'ack', `file ${f.id}: ${JSON.stringify(a)}`);
    assert.equal((a as { status: string }).status, 'stored');
  }
  assert.ok(!c.frames.some((f) => f.type === 'accept'), 'no ACCEPT for eager offers');
  c.destroy();
  const tree = await hashTree(on.inbox);
  for (const f of files) assert.equal(tree.get(f.p), sha(f.data), f.p);
});

test('an eager file with a wrong hash or too few bytes gets a NACK, nothing lands, and the same connection goes on', async () => {
  const { c } = await client(on.port);
  const data = randomBytes(5000);
  eager(c, 1, 'bad/hash.bin', data, { hash: sha(Buffer.from('other')) });
  const a1 = await answer(c, 1);
  assert.equal(a1?.type, 'nack');
  assert.equal((a1 as { code: string }).code, 'HASH_MISMATCH');
  eager(c, 2, 'bad/short.bin', data, { size: 6000 });
  const a2 = await answer(c, 2);
  assert.equal(a2?.type, 'nack');
  assert.equal((a2 as { code: string }).code, 'SIZE_MISMATCH');
  // ABORT after eager DATA: no answer at all, nothing kept
  c.send({ type: 'offer', id: 3, inbox: 'renders', path: 'bad/aborted.bin', size: 5000, mtimeMs: 1, resume: false, eager: true });
  c.sendData(data.subarray(0, 2000));
  c.send({ type: 'abort', id: 3, reason: 'source changed' });
  eager(c, 4, 'bad/ok.bin', data);
  const a4 = await answer(c, 4);
  assert.equal(a4?.type, 'ack');
  assert.ok(!c.frames.some((f) => 'id' in f && f.id === 3), 'an aborted eager file gets no answer');
  eager(c, 5, 'bad/ok-2.bin', data);
  c.send({ type: 'offer', id: 6, inbox: 'nope', path: 'x.bin', size: 3, mtimeMs: 1, resume: false, eager: true });
  c.sendData(Buffer.from('abc'));
  c.send({ type: 'end', id: 6, sha256: sha(Buffer.from('abc')) });
  assert.equal((await answer(c, 5))?.type, 'ack');
  const a6 = await answer(c, 6);
  assert.equal((a6 as { code: string }).code, 'NO_SUCH_INBOX');
  c.destroy();
  const files = (await listFiles(on.inbox)).filter((f) => f.startsWith('bad/'));
  assert.deepEqual(files, ['bad/ok-2.bin', 'bad/ok.bin']);
});

test('sequence errors: an eager OFFER over eagerMaxBytes, or to an agent with eager off, is ERROR OUT_OF_ORDER and close; more DATA than offered too', async () => {
  {
    const { c } = await client(on.port);
    c.send({ type: 'offer', id: 1, inbox: 'renders', path: 'big.bin', size: 1024 * 1024 + 1, mtimeMs: 1, resume: false, eager: true });
    const e = await c.errorThenClose();
    assert.equal(e?.code, 'OUT_OF_ORDER');
    assert.match(e!.message, /eagerMaxBytes/);
  }
  {
    const { c } = await client(off.port);
    c.send({ type: 'offer', id: 1, inbox: 'renders', path: 'small.bin', size: 10, mtimeMs: 1, resume: false, eager: true });
    const e = await c.errorThenClose();
    assert.equal(e?.code, 'OUT_OF_ORDER');
  }
  {
    const { c } = await client(on.port);
    c.send({ type: 'offer', id: 1, inbox: 'renders', path: 'over.bin', size: 10, mtimeMs: 1, resume: false, eager: true });
    c.sendData(Buffer.alloc(11));
    const e = await c.errorThenClose();
    assert.ok(e === null || /more DATA than offered/.test(e.message), JSON.stringify(e));
  }
  assert.deepEqual((await listFiles(on.inbox)).filter((f) => /big|small|over/.test(f)), []);
});

test('our sender goes eager when the peer announces it and falls back to OFFER → ACCEPT when it does not; both deliver', async () => {
  const src = path.join(root, 'src');
  await fs.mkdir(src, { recursive: true });
  for (const [target, expectEager] of [[on, true], [off, false]] as const) {
    const conn = await PeerConnection.open({
      host: '127.0.0.1', port: target.port, key: KEY, encrypt: true, self: { id: 'sender-x', name: 'sender x', software: 'test' },
      connectTimeoutMs: 3000, handshakeTimeoutMs: 3000, idleTimeoutMs: 5000, chunkBytes: 1 << 20, log: memoryLogger(),
    });
    try {
      assert.equal(conn.eagerMaxBytes > 0, expectEager);
      const sent = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const data = randomBytes(2000 + i);
          const abs = path.join(src, `${expectEager ? 'e' : 'c'}-${i}.bin`);
          await fs.writeFile(abs, data);
          const st = await fs.stat(abs);
          const r = await conn.sendFile({ abs, inbox: 'renders', path: `sender/${path.basename(abs)}`, size: st.size, mtimeMs: st.mtimeMs });
          assert.equal(r.status, 'stored');
          // Agents of this version negotiate XXH3-128: the ACK carries its digest, no SHA-256.
          assert.equal(r.hashAlg, 'xxh3-128');
          assert.equal(r.hash, await digestBytes(data, 'xxh3-128'));
          assert.equal(r.sha256, null);
          return [`sender/${path.basename(abs)}`, sha(data)] as const;
        }),
      );
      const tree = await hashTree(target.inbox);
      for (const [rel, h] of sent) assert.equal(tree.get(rel), h);
      // the same version again is a duplicate, eager or not
      const [rel] = sent[0]!;
      const abs = path.join(src, path.basename(rel));
      const st = await fs.stat(abs);
      const again = await conn.sendFile({ abs, inbox: 'renders', path: rel, size: st.size, mtimeMs: st.mtimeMs });
      assert.equal(again.status, 'duplicate');
    } finally {
      conn.close();
    }
  }
});

test('our sender: a small file changed after the watcher saw it is not sent (SOURCE_CHANGED), nothing lands', async () => {
  const abs = path.join(root, 'src', 'changing.bin');
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, randomBytes(3000));
  const st = await fs.stat(abs);
  await fs.appendFile(abs, 'more');
  const conn = await PeerConnection.open({
    host: '127.0.0.1', port: on.port, key: KEY, encrypt: true, self: { id: 'sender-y', name: 'sender y', software: 'test' },
    connectTimeoutMs: 3000, handshakeTimeoutMs: 3000, idleTimeoutMs: 5000, chunkBytes: 1 << 20, log: memoryLogger(),
  });
  try {
    await assert.rejects(conn.sendFile({ abs, inbox: 'renders', path: 'changing.bin', size: st.size, mtimeMs: st.mtimeMs }), (e: unknown) => (e as { code?: string }).code === 'SOURCE_CHANGED');
    // the connection is still good
    const ok = path.join(root, 'src', 'after-change.bin');
    await fs.writeFile(ok, 'fine');
    const st2 = await fs.stat(ok);
    assert.equal((await conn.sendFile({ abs: ok, inbox: 'renders', path: 'after-change.bin', size: st2.size, mtimeMs: st2.mtimeMs })).status, 'stored');
  } finally {
    conn.close();
  }
  assert.ok(!(await listFiles(on.inbox)).includes('changing.bin'));
  assert.deepEqual(await listFiles(on.staging), [], 'no partial left in staging');
});

test('our sender: ten 3 MiB eager files at once to a peer taking 4 MiB eagerly pass through its 8 MiB read-ahead budget, all stored', async () => {
  const src = path.join(root, 'src-big');
  await fs.mkdir(src, { recursive: true });
  const conn = await PeerConnection.open({
    host: '127.0.0.1', port: big.port, key: KEY, encrypt: true, self: { id: 'sender-z', name: 'sender z', software: 'test' },
    connectTimeoutMs: 3000, handshakeTimeoutMs: 3000, idleTimeoutMs: 5000, chunkBytes: 1 << 20, log: memoryLogger(),
  });
  try {
    assert.equal(conn.eagerMaxBytes, 4 * 1024 * 1024);
    const files = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const data = randomBytes(3 * 1024 * 1024 + i);
        const abs = path.join(src, `b${i}.bin`);
        await fs.writeFile(abs, data);
        const st = await fs.stat(abs);
        return { abs, rel: `big/b${i}.bin`, data, st };
      }),
    );
    const results = await Promise.all(files.map((f) => conn.sendFile({ abs: f.abs, inbox: 'renders', path: f.rel, size: f.st.size, mtimeMs: f.st.mtimeMs })));
    for (const r of results) assert.equal(r.status, 'stored');
    const tree = await hashTree(big.inbox);
    for (const f of files) assert.equal(tree.get(f.rel), sha(f.data));
  } finally {
    conn.close();
  }
});

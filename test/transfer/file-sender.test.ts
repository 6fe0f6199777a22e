/**
 * The protocol seam (transfer/file-sender.ts) against real listeners: the v1
 * implementation against an agent's transfer listener (TLS-PSK, receiver sessions,
 * inbox), the legacy one against the TOX listener of src/legacy/server.ts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { xxhash128 } from 'hash-wasm';
import { Inbox } from '../../src/inbox/inbox.js';
import { LegacyListener } from '../../src/legacy/server.js';
import { memoryLogger } from '../../src/log.js';
import type { PeerInfo } from '../../src/types.js';
import { fileSenderFor, LegacyFileSender, V1FileSender, type FileSenderDeps } from '../../src/transfer/file-sender.js';
import { TdxError } from '../../src/errors.js';
import { TEST_KEY, startAgent, tempDir, writeAgentConfig } from '../helpers/agents.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

function peerAt(port: number, protocol: 'tdxfer' | 'legacy'): PeerInfo {
  return { id: null, name: 'target', source: 'static', protocol, addresses: ['127.0.0.1'], port, inboxes: [], version: null, state: 'up', lastSeen: null };
}

function deps(peer: PeerInfo | null, inbox: string | null): FileSenderDeps {
  return {
    log: memoryLogger(),
    peer: 'target',
    inbox,
    resolvePeer: () => peer,
    connectBase: {
      key: Buffer.from(TEST_KEY, 'base64'),
      encrypt: true,
      self: { id: 'file-sender-test', name: 'file-sender-test', software: 'test' },
      connectTimeoutMs: 10_000,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      chunkBytes: 64 * 1024,
    },
    window: 4,
  };
}

async function sourceFile(dir: string, name: string, size: number): Promise<{ abs: string; size: number; mtimeMs: number; sha: string; xxh: string }> {
  const abs = path.join(dir, name);
  const data = randomBytes(size);
  await fs.writeFile(abs, data);
  const st = await fs.stat(abs);
  return { abs, size, mtimeMs: st.mtimeMs, sha: createHash('sha256').update(data).digest('hex'), xxh: await xxhash128(data) };
}

test('the implementation is chosen from the protocol, once', () => {
  assert.ok(fileSenderFor('tdxfer', deps(null, 'renders')) instanceof V1FileSender);
  assert.ok(fileSenderFor('legacy', deps(null, null)) instanceof LegacyFileSender);
  assert.equal(fileSenderFor('legacy', deps(null, null)).concurrency, 1);
  assert.equal(fileSenderFor('tdxfer', deps(null, 'renders')).concurrency, 4);
});

test('v1: open() connects to a real agent, send() lands files with progress and the receiver hash; one link carries several files', async () => {
  const dir = await tempDir('tdx-fs-v1-');
  dirs.push(dir);
  const agent = await startAgent(await writeAgentConfig({ name: 'target', dir, port: 0 }));
  try {
    const sender = fileSenderFor('tdxfer', deps(peerAt(agent.listenAddress.port, 'tdxfer'), 'renders'));
    const link = await sender.open();
    assert.equal(link.closed, false);
    for (const [name, size] of [['a.bin', 300_000], ['b.bin', 10]] as const) {
      const f = await sourceFile(dir, name, size);
      const seen: number[] = [];
      const r = await link.send({ abs: f.abs, size: f.size, mtimeMs: f.mtimeMs, target: `sub/${name}` }, (done) => seen.push(done));
      assert.equal(r.status, 'stored');
      assert.equal(r.path, `sub/${name}`);
      // Two agents of this version negotiate XXH3-128; the ACK carries it (and no SHA-256).
      assert.equal(r.hashAlg, 'xxh3-128');
      assert.equal(r.hash, f.xxh);
      assert.equal(r.sha256, null);
      assert.equal(seen.at(-1), size, 'progress reaches the file size');
      const landed = await fs.readFile(path.join(dir, 'inbox', 'sub', name));
      assert.equal(createHash('sha256').update(landed).digest('hex'), f.sha);
    }
    sender.close();
    assert.equal(link.closed, true, 'close() drops the connection');
  } finally {
    await agent.stop();
  }
});

test('v1: an unknown peer and a peer that refuses the connection reject open() with a TdxError', async () => {
  await assert.rejects(fileSenderFor('tdxfer', deps(null, 'renders')).open(), (e: unknown) => e instanceof TdxError && e.code === 'UNKNOWN_PEER');
  await assert.rejects(fileSenderFor('tdxfer', deps({ ...peerAt(1, 'tdxfer'), state: 'gone' }, 'renders')).open(), (e: unknown) => e instanceof TdxError && e.code === 'PEER_GONE');
  // A port nobody listens on: take one from a listener and close it.
  const dir = await tempDir('tdx-fs-v1-closed-');
  dirs.push(dir);
  const agent = await startAgent(await writeAgentConfig({ name: 'target', dir, port: 0 }));
  const port = agent.listenAddress.port;
  await agent.stop();
  await assert.rejects(fileSenderFor('tdxfer', deps(peerAt(port, 'tdxfer'), 'renders')).open());
});

test('legacy: send() delivers to the real TOX listener, flattened name as given, progress to the end', async () => {
  const dir = await tempDir('tdx-fs-legacy-');
  dirs.push(dir);
  const log = memoryLogger();
  const inbox = await Inbox.open(
    { name: 'tox', path: path.join(dir, 'inbox'), onCollision: 'rename', staging: path.join(dir, 'staging') },
    { log, stateDir: path.join(dir, 'state'), maxFileBytes: 50 * 1024 * 1024, reserveBytes: 0 },
  );
  const listener = new LegacyListener({ host: '127.0.0.1', port: 0, inbox, allow: [], maxFileBytes: 50 * 1024 * 1024, log });
  const { port } = await listener.start();
  try {
    const sender = fileSenderFor('legacy', deps(peerAt(port, 'legacy'), null));
    const link = await sender.open();
    for (const [name, size] of [['x.tox', 200_000], ['y.tox', 1]] as const) {
      const f = await sourceFile(dir, name, size);
      let last = 0;
      const r = await link.send({ abs: f.abs, size: f.size, mtimeMs: f.mtimeMs, target: name }, (done) => (last = done));
      assert.deepEqual(r, { status: 'stored', path: name, sha256: null, bytesSent: size, resumedFrom: 0 });
      assert.equal(last, size);
      const landed = await fs.readFile(path.join(dir, 'inbox', name));
      assert.equal(createHash('sha256').update(landed).digest('hex'), f.sha);
    }
    assert.equal(link.closed, false, 'a legacy link connects per file and never closes');
    sender.close();
  } finally {
    await listener.stop();
    await inbox.close();
  }
});

test('legacy: a peer without an address rejects open(); a stopped listener rejects send()', async () => {
  await assert.rejects(fileSenderFor('legacy', deps(null, null)).open(), (e: unknown) => e instanceof TdxError && e.code === 'UNKNOWN_PEER');
  const dir = await tempDir('tdx-fs-legacy-down-');
  dirs.push(dir);
  const log = memoryLogger();
  const inbox = await Inbox.open(
    { name: 'tox', path: path.join(dir, 'inbox'), onCollision: 'rename', staging: path.join(dir, 'staging') },
    { log, stateDir: path.join(dir, 'state'), maxFileBytes: 1024 * 1024, reserveBytes: 0 },
  );
  const listener = new LegacyListener({ host: '127.0.0.1', port: 0, inbox, allow: [], maxFileBytes: 1024 * 1024, log });
  const { port } = await listener.start();
  await listener.stop();
  await inbox.close();
  const link = await fileSenderFor('legacy', deps(peerAt(port, 'legacy'), null)).open();
  const f = await sourceFile(dir, 'z.tox', 100);
  await assert.rejects(link.send({ abs: f.abs, size: f.size, mtimeMs: f.mtimeMs, target: 'z.tox' }, () => undefined));
});

test('legacy: send() asks for the cancel signal and stops when it fires; v1 never asks for it', async () => {
  const dir = await tempDir('tdx-fs-legacy-cancel-');
  dirs.push(dir);
  // A TOX receiver that takes the connection and never answers.
  const net = await import('node:net');
  const held: import('node:net').Socket[] = [];
  const stall = net.createServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
  try {
    const port = (stall.address() as import('node:net').AddressInfo).port;
    const link = await fileSenderFor('legacy', deps(peerAt(port, 'legacy'), null)).open();
    const f = await sourceFile(dir, 'take.mov', 64 * 1024);
    const ac = new AbortController();
    let asked = 0;
    const sending = link.send({ abs: f.abs, size: f.size, mtimeMs: f.mtimeMs, target: 'take.mov', abortSignal: () => (asked++, ac.signal) }, () => undefined);
    ac.abort(); // at once: while the client stats the source (before it listens to the signal), or later
    await assert.rejects(sending, (e: unknown) => e instanceof TdxError && e.code === 'ABORTED');
    assert.equal(asked, 1);
  } finally {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => stall.close(() => r()));
  }
});

/**
 * ReceiverSession, PeerConnection and DestinationQueue on their own (no Agent): a
 * TransportServer on 127.0.0.1 port 0 hands its connections to ReceiverSession with a
 * real Inbox; the sending side is PeerConnection or a DestinationQueue.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Inbox } from '../../src/inbox/inbox.js';
import { TransportServer } from '../../src/transport/server.js';
import { ReceiverSession } from '../../src/transfer/receiver.js';
import { PeerConnection, type OpenOptions } from '../../src/transfer/sender.js';
import { DestinationQueue, type Job } from '../../src/transfer/destination.js';
import { memoryLogger } from '../../src/log.js';
import type { JobInfo, PeerInfo, ReceivedInfo } from '../../src/types.js';
import type { ReportedCode } from '../../src/errors.js';
import { RawClient } from '../helpers/rawclient.js';
import { waitUntil } from '../helpers/wait.js';

const KEY = randomBytes(32);
let tmp: string;
let inbox: Inbox;
let server: TransportServer;
let port: number;
let log: ReturnType<typeof memoryLogger>;
let received: ReceivedInfo[];
let failures: Array<{ reason: ReportedCode; message: string }>;
const sessions = new Set<ReceiverSession>();

beforeEach(async () => {
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'tdxfer-receiver-'));
  log = memoryLogger();
  received = [];
  failures = [];
  inbox = await Inbox.open(
    { name: 'renders', path: path.join(tmp, 'inbox'), onCollision: 'rename', staging: path.join(tmp, 'staging') },
    { log, stateDir: path.join(tmp, 'state'), maxFileBytes: 1 << 30, reserveBytes: 0 },
  );
  server = new TransportServer(
    { host: '127.0.0.1', port: 0, key: KEY, encrypt: false, maxConnections: 8, maxConnectionsPerPeer: 8, handshakeTimeoutMs: 10_000, log },
    (conn) => {
      sessions.add(new ReceiverSession(conn, {
        self: { id: 'receiver-1', name: 'show-01', software: 'tdxfer/test' },
        key: KEY,
        inboxes: new Map([['renders', inbox]]),
        limits: { idleTimeoutMs: 60_000, handshakeTimeoutMs: 10_000, maxFileBytes: 1 << 30 },
        log,
        onReceived: (info) => received.push(info),
        onFailure: (reason, message) => failures.push({ reason, message }),
      }));
    },
  );
  ({ port } = await server.listen());
});

afterEach(async () => {
  for (const s of sessions) s.shutdown();
  sessions.clear();
  server.destroyAll();
  await server.close();
  await inbox.close();
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

function openOptions(key = KEY): OpenOptions {
  return {
    host: '127.0.0.1', port, key, encrypt: false,
    self: { id: 'sender-1', name: 'render-01', software: 'tdxfer/test' },
    connectTimeoutMs: 10_000, handshakeTimeoutMs: 10_000, idleTimeoutMs: 60_000, chunkBytes: 64 * 1024, log,
  };
}

async function source(name: string, bytes: Buffer): Promise<{ abs: string; size: number; mtimeMs: number }> {
  const abs = path.join(tmp, name);
  await fs.promises.writeFile(abs, bytes);
  const st = await fs.promises.stat(abs);
  return { abs, size: st.size, mtimeMs: st.mtimeMs };
}

test('receiver: a streamed and an eager file land, each reported once, after the handshake announced the inbox', async () => {
  const conn = await PeerConnection.open(openOptions());
  try {
    assert.deepEqual(conn.inboxes, ['renders']);
    assert.equal(conn.peerName, 'show-01');
    const big = randomBytes(3 * 1024 * 1024 + 17); // over eagerMaxBytes: OFFER, ACCEPT, DATA…, END
    const small = Buffer.from('small file');
    const a = await source('big.bin', big);
    const b = await source('small.txt', small);
    const [ra, rb] = await Promise.all([
      conn.sendFile({ ...a, inbox: 'renders', path: 'sub/big.bin' }),
      conn.sendFile({ ...b, inbox: 'renders', path: 'small.txt' }),
    ]);
    assert.equal(ra.status, 'stored');
    assert.equal(rb.status, 'stored');
    assert.deepEqual(await fs.promises.readFile(path.join(tmp, 'inbox', 'sub', 'big.bin')), big);
    assert.deepEqual(await fs.promises.readFile(path.join(tmp, 'inbox', 'small.txt')), small);
    assert.deepEqual(received.map((r) => r.file).sort(), ['small.txt', 'sub/big.bin']);
  } finally {
    conn.close();
  }
});

test('receiver: a connection lost while the inbox opens an offered file leaves nothing busy: the same file from the same sender is accepted again', async () => {
  // The inbox's begin() holds the name ("already receiving") from its first step until the
  // file is open. The connection closes in between, so the session has no current file to
  // abort yet: the file it gets afterwards must be aborted too, or the name stays busy
  // (BUSY to every later offer of it from that sender) until the agent restarts.
  const realBegin = inbox.begin.bind(inbox);
  let entered!: () => void;
  const inBegin = new Promise<void>((r) => (entered = r));
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let held = true;
  inbox.begin = (req) => {
    if (!held) return realBegin(req);
    held = false;
    const started = realBegin(req); // runs up to its first await: the name is taken now
    entered();
    return gate.then(() => started);
  };
  const raw = await RawClient.connect({ port });
  await raw.handshake(KEY, { agentId: 'sender-1' });
  raw.send({ type: 'offer', id: 1, inbox: 'renders', path: 'shot/take.mov', size: 3 * 1024 * 1024, mtimeMs: 1_700_000_000_000, resume: true });
  await inBegin;
  raw.destroy();
  await waitUntil(() => log.records.some((r) => /connection from raw test client closed/.test(r.msg)), undefined, () => `the session saw the close: ${JSON.stringify(log.records.map((r) => r.msg))}`);
  open();
  // The same sender (agent id) offers the same file on a new connection, as after a restart,
  // and like a sender retries a BUSY (the abort closes the file first: under wine that can
  // take a moment). Before the fix the answer stayed BUSY for good.
  const again = await RawClient.connect({ port });
  try {
    await again.handshake(KEY, { agentId: 'sender-1' });
    const data = randomBytes(3 * 1024 * 1024);
    let id = 0;
    const last: { answer: Awaited<ReturnType<RawClient['sendFile']>> } = { answer: null };
    const busy = () => last.answer?.type === 'nack' && (last.answer as { code: string }).code === 'BUSY';
    await waitUntil(async () => {
      last.answer = await again.sendFile({ id: ++id, inbox: 'renders', path: 'shot/take.mov', data, resume: true }, 60_000);
      return !busy();
    }, 30_000, () => `an answer other than BUSY: ${JSON.stringify(last.answer)}`);
    assert.equal(last.answer?.type, 'ack', JSON.stringify(last.answer));
    assert.equal((await fs.promises.stat(path.join(tmp, 'inbox', 'shot', 'take.mov'))).size, 3 * 1024 * 1024);
  } finally {
    again.destroy();
  }
});

test('receiver: a NACK for an unknown inbox, and the connection stays usable', async () => {
  const conn = await PeerConnection.open(openOptions());
  try {
    const a = await source('a.txt', Buffer.from('aaa'));
    await assert.rejects(conn.sendFile({ ...a, inbox: 'nope', path: 'a.txt' }), (e: Error & { code?: string; retryable?: boolean }) => e.code === 'NO_SUCH_INBOX' && e.retryable === false);
    const r = await conn.sendFile({ ...a, inbox: 'renders', path: 'a.txt' });
    assert.equal(r.status, 'stored');
  } finally {
    conn.close();
  }
});

test('receiver: a sender with another key is refused with AUTH_FAILED, reported as a failure', async () => {
  await assert.rejects(PeerConnection.open(openOptions(randomBytes(32))), (e: Error & { code?: string }) => e.code === 'AUTH_FAILED');
  // The client refuses the WELCOME (its proof does not verify) before sending AUTH: the
  // receiver sees the connection fail, not a bad AUTH. A raw client that does send one:
  const raw = await RawClient.connect({ port });
  try {
    const { serverProofOk } = await raw.handshake(KEY, { proofKey: randomBytes(32), expectReady: false });
    assert.equal(serverProofOk, true);
    const f = await raw.next(10_000, (x) => x.type === 'error');
    assert.equal((f as { code: string } | null)?.code, 'AUTH_FAILED');
    await waitUntil(() => failures.some((f) => f.reason === 'AUTH_FAILED'), undefined, () => `an AUTH_FAILED failure (got ${JSON.stringify(failures)})`);
  } finally {
    raw.destroy();
  }
});

test('receiver: OFFER before HELLO is answered with ERROR OUT_OF_ORDER', async () => {
  const raw = await RawClient.connect({ port });
  try {
    raw.send({ type: 'offer', id: 1, inbox: 'renders', path: 'x.txt', size: 1, mtimeMs: 1, resume: false });
    const f = await raw.next(10_000);
    assert.equal(f?.type, 'error');
    assert.equal((f as { code: string }).code, 'OUT_OF_ORDER');
    assert.match((f as { message: string }).message, /expected HELLO/);
  } finally {
    raw.destroy();
  }
});

test('destination: an unknown peer waits (UNKNOWN_PEER), then the file goes once the peer is known', async () => {
  let peer: PeerInfo | null = null;
  const problems: string[] = [];
  const q = new DestinationQueue(
    { key: 'show-01/renders', peer: 'show-01', peerKey: 'show-01', inbox: 'renders', protocol: 'tdxfer', flatten: false },
    {
      log,
      resolvePeer: () => peer,
      connectBase: { key: KEY, encrypt: false, self: { id: 'sender-1', name: 'render-01', software: 'tdxfer/test' }, connectTimeoutMs: 10_000, handshakeTimeoutMs: 10_000, idleTimeoutMs: 60_000, chunkBytes: 64 * 1024 },
      window: 4,
      retryInitialMs: 10 * 60_000,
      retryMaxMs: 10 * 60_000,
      onJobChange: () => undefined,
      onProgress: () => undefined,
      onReachability: () => undefined,
      onLinkProblem: (code) => problems.push(code),
    },
  );
  const a = await source('c.txt', Buffer.from('ccc'));
  const info = { id: 'j1', file: 'c.txt', peer: 'show-01', inbox: 'renders', state: 'queued', attempts: 0, bytesDone: 0, bytesTotal: a.size, error: null, startedAt: null, finishedAt: null, landedAs: null } as unknown as JobInfo;
  const job: Job = { info, abs: a.abs, size: a.size, mtimeMs: a.mtimeMs, target: 'c.txt', controller: new AbortController() };
  const outcome = q.add(job);
  try {
    await waitUntil(() => problems.includes('UNKNOWN_PEER') && job.info.state === 'waiting', undefined, () => `waiting on UNKNOWN_PEER (${problems.join(',')}, ${job.info.state})`);
    assert.match(job.info.error ?? '', /not known \(yet\)/);
    peer = { id: 'receiver-1', name: 'show-01', source: 'static', protocol: 'tdxfer', addresses: ['127.0.0.1'], port, inboxes: ['renders'], version: null, state: 'up', lastSeen: Date.now() } as PeerInfo;
    q.wake(); // the retry delay is ten minutes: only wake() can make this pass
    const o = await outcome;
    assert.equal(o.kind, 'done');
    assert.equal(job.info.attempts, 2);
    assert.equal(await fs.promises.readFile(path.join(tmp, 'inbox', 'c.txt'), 'utf8'), 'ccc');
  } finally {
    await q.stop(1000);
  }
});

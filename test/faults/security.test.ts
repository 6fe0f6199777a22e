/**
 * Authentication and encryption between real agents on loopback: another key is refused
 * at the handshake with a clear log line on both sides (TLS and plain mode), an encrypt
 * mismatch is named as such on both sides, TLS hides the file bytes on the wire (a
 * recording proxy), the key never reaches logs, the generated key file is 0600, and a
 * peer without the key cannot put a file into the inbox even in plain mode.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import { explainTlsError } from '../../src/transport/psk.js';
import {
  TEST_KEY, hashTree, listFiles, spawnCli, startAgent, tempDir, waitUntil, writeAgentConfig, writeAgentPair,
} from '../helpers/agents.js';
import { RawClient } from '../helpers/rawclient.js';
import { FaultProxy } from '../helpers/proxy.js';
import { quietWindow } from '../helpers/wait.js';
import { EXIT_AFTER_KILL, isWindows } from '../helpers/platform.js';

type Records = ReturnType<typeof memoryLogger>['records'];

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const OTHER_KEY = randomBytes(32).toString('base64');

async function root(): Promise<string> {
  const r = await tempDir('tdx-sec-');
  cleanup.push(() => fs.rm(r, { recursive: true, force: true }));
  return r;
}

async function start(cfg: string): Promise<{ agent: Agent; records: Records }> {
  const log = memoryLogger();
  const agent = await startAgent(cfg, log);
  cleanup.push(() => agent.stop(1000));
  return { agent, records: log.records };
}

function lines(records: Records): string {
  return records.map((r) => `${r.level} ${r.msg}`).join('\n');
}

async function logged(records: Records, re: RegExp, who: string): Promise<void> {
  await waitUntil(() => records.some((r) => (r.level === 'warn' || r.level === 'error') && re.test(r.msg)), 8000, () => `${who} logs ${re}; it logged:\n${lines(records).slice(-3000)}`);
}

interface PairOpts {
  senderKey?: string;
  receiverKey?: string;
  senderEncrypt?: boolean;
  receiverEncrypt?: boolean;
  /** Sender connects here instead of the receiver's port (a proxy). */
  via?: (receiverPort: number) => Promise<number>;
}

async function pair(o: PairOpts) {
  const r = await root();
  // The receiver first, on port 0: the sender's config names the port it got (or `via`'s).
  const p = await writeAgentPair(r, {
    after: 'delete',
    settleMs: 100,
    receiverExtra: { security: { key: o.receiverKey ?? TEST_KEY, encrypt: o.receiverEncrypt ?? true } },
    senderExtra: { security: { key: o.senderKey ?? TEST_KEY, encrypt: o.senderEncrypt ?? true } },
    ...(o.via ? { via: o.via } : {}),
  });
  const b = await start(p.bCfg);
  const pb = b.agent.listenAddress.port;
  await p.receiverListening(pb);
  const a = await start(p.aCfg);
  return { root: r, a, b, pb, outbox: p.outbox, inbox: p.inbox };
}

/** The refused file stays in the outbox and nothing (not even a temp file) reaches the inbox. */
async function assertNotDelivered(p: { outbox: string; inbox: string }, file: string): Promise<void> {
  // Every caller has seen the refusal logged; this stated window lets the sender's retries
  // (retryInitialMs 500, doubling) meet it again: 2 s covers the next two. Too short a window
  // under load could only miss a bug, never fail a correct agent.
  await quietWindow(2000);
  assert.deepEqual(await listFiles(p.inbox), []);
  assert.ok((await listFiles(p.outbox)).includes(file), `${file} stays in the outbox`);
}

/** An honest agent with the receiver's key still gets a file through. */
async function assertHonestServed(receiverPort: number, encrypt: boolean, inbox: string): Promise<void> {
  const r = await root();
  const cfg = await writeAgentConfig({
    name: 'honest', dir: r, port: 0,
    extra: {
      security: { key: TEST_KEY, encrypt },
      outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'delete', settleMs: 100 }],
      peers: [{ name: 'playback', host: '127.0.0.1', port: receiverPort }],
    },
  });
  await start(cfg);
  const data = randomBytes(70_000);
  await fs.writeFile(path.join(r, 'outbox', 'honest.bin'), data);
  await waitUntil(async () => (await listFiles(inbox)).includes('honest.bin'), 10_000, () => 'honest file delivered');
  assert.deepEqual(await fs.readFile(path.join(inbox, 'honest.bin')), data);
}

test('TLS mode, another key: the TLS handshake fails and BOTH sides log that the key differs; nothing arrives', async () => {
  const p = await pair({ senderKey: OTHER_KEY });
  await fs.writeFile(path.join(p.outbox, 'x.png'), 'nope');
  const want = /TLS handshake failed: the peer does not hold the same installation key/;
  await logged(p.a.records, want, 'the sender');
  await logged(p.b.records, want, 'the receiver');
  // The logged text is exactly what psk.ts produces for OpenSSL's error.
  const msg = p.b.records.find((r) => want.test(r.msg))!.msg;
  assert.ok(msg.endsWith(explainTlsError(new Error('decrypt error'))!), msg);
  await assertNotDelivered(p, 'x.png');
  await assertHonestServed(p.pb, true, p.inbox);
});

test('plain mode on both, another key: the HMAC proof fails (AUTH_FAILED), logged on BOTH sides; nothing arrives', async () => {
  const p = await pair({ senderKey: OTHER_KEY, senderEncrypt: false, receiverEncrypt: false });
  await fs.writeFile(path.join(p.outbox, 'x.png'), 'nope');
  await logged(p.a.records, /does not hold this installation's key: refusing to send to it/, 'the sender');
  await logged(p.b.records, /reported AUTH_FAILED: .*different installation key/, 'the receiver');
  await assertNotDelivered(p, 'x.png');
  await assertHonestServed(p.pb, false, p.inbox);
});

test('plain mode: a peer without the key cannot put a file into the inbox (wrong proof, skipped AUTH, offer before HELLO)', async () => {
  const r = await root();
  const cfg = await writeAgentConfig({ name: 'playback', dir: r, port: 0, extra: { security: { key: TEST_KEY, encrypt: false } } });
  const b = await start(cfg);
  const port = b.agent.listenAddress.port;
  const inbox = path.join(r, 'inbox');
  const wrong = Buffer.from(OTHER_KEY, 'base64');

  // Ignores the server's (failing) proof and answers with one made from its own key.
  const impostor = await RawClient.connect({ port });
  const { serverProofOk } = await impostor.handshake(wrong, { expectReady: false });
  assert.equal(serverProofOk, false, 'the server proof does not verify with another key');
  impostor.send({ type: 'offer', id: 1, inbox: 'renders', path: 'x.png', size: 4, mtimeMs: 1, resume: false });
  const err = await impostor.errorThenClose();
  assert.equal(err?.code, 'AUTH_FAILED');
  assert.ok(!impostor.frames.some((f) => f.type === 'ready' || f.type === 'accept'), 'never READY, never ACCEPT');
  await logged(b.records, /refused raw test client \(127\.0\.0\.1\): authentication failed, it does not hold this installation's key/, 'the receiver');

  // Skips AUTH and offers straight after WELCOME.
  const skipper = await RawClient.connect({ port });
  skipper.send({ type: 'hello', protocol: 1, agentId: 'x', name: 'x', software: 'x', nonce: 'AAAAAAAAAAAAAAAAAAAAAA==' });
  await skipper.expect('welcome');
  skipper.send({ type: 'offer', id: 1, inbox: 'renders', path: 'x.png', size: 4, mtimeMs: 1, resume: false });
  skipper.sendData(Buffer.from('evil'));
  assert.equal((await skipper.errorThenClose())?.code, 'OUT_OF_ORDER');

  // Offers with no handshake at all.
  const rude = await RawClient.connect({ port });
  rude.send({ type: 'offer', id: 1, inbox: 'renders', path: 'x.png', size: 4, mtimeMs: 1, resume: false });
  rude.sendData(Buffer.from('evil'));
  assert.equal((await rude.errorThenClose())?.code, 'OUT_OF_ORDER');

  // The same socket path with the right key works (the test is not refusing everything), and
  // its file landing after the refused ones were answered proves they left nothing behind.
  const honest = await RawClient.connect({ port });
  await honest.handshake(Buffer.from(TEST_KEY, 'base64'));
  const ack = await honest.sendFile({ id: 1, inbox: 'renders', path: 'ok.png', data: Buffer.from('fine') });
  assert.equal(ack?.type, 'ack', JSON.stringify(ack));
  honest.destroy();
  assert.deepEqual(await listFiles(inbox), ['ok.png']);
  assert.deepEqual(await listFiles(path.join(r, '.inbox.tdxfer-staging')), [], 'not even a partial in staging');
});

test('encrypt mismatch, plain sender → TLS receiver: both sides say security.encrypt must match', async () => {
  const p = await pair({ senderEncrypt: false });
  await fs.writeFile(path.join(p.outbox, 'x.png'), 'nope');
  await logged(p.b.records, /refused connection from 127\.0\.0\.1: the peer does not speak TLS but this agent requires encryption: a tdxfer agent with security\.encrypt=false \(set the same security\.encrypt/, 'the receiver');
  await logged(p.a.records, /playback unreachable: .*UNSUPPORTED_PROTOCOL: this agent requires encryption.*same security\.encrypt/, 'the sender');
  assert.ok(!p.a.records.some((r) => /security\.key must be identical/.test(r.msg)), 'the sender is not told the key differs (it does not)');
  await assertNotDelivered(p, 'x.png');
  await assertHonestServed(p.pb, true, p.inbox);
});

test('encrypt mismatch, TLS sender → plain receiver: both sides say security.encrypt must match', async () => {
  const p = await pair({ receiverEncrypt: false });
  await fs.writeFile(path.join(p.outbox, 'x.png'), 'nope');
  await logged(p.b.records, /refused connection from 127\.0\.0\.1: the peer uses encryption but this agent has security\.encrypt=false/, 'the receiver');
  await logged(p.a.records, /playback unreachable: .*security\.encrypt must match/, 'the sender');
  await assertNotDelivered(p, 'x.png');
  await assertHonestServed(p.pb, false, p.inbox);
});

test('encrypt mismatch retried: the receiver names the cause once per peer address, then summarises the repeats', async () => {
  // The summary interval is shortened for this test only (read when the agents start).
  process.env.TDXFER_TEST_REFUSAL_SUMMARY_MS = '3000';
  let proxy: FaultProxy | undefined;
  let p: Awaited<ReturnType<typeof pair>>;
  try {
    p = await pair({
      senderEncrypt: false,
      via: async (port) => {
        const fp = await FaultProxy.start({ port });
        cleanup.push(() => fp.close());
        proxy = fp;
        return fp.port;
      },
    });
  } finally {
    delete process.env.TDXFER_TEST_REFUSAL_SUMMARY_MS;
  }
  await fs.writeFile(path.join(p.outbox, 'x.png'), 'nope');
  // The proxy counts the sender's connection attempts: every one is refused by the receiver.
  await waitUntil(() => (proxy?.conns.length ?? 0) >= 5, 60_000, () => `5 connection attempts through the proxy; saw ${proxy?.conns.length}:\n${lines(p.b.records).slice(-3000)}`);
  const summary = /^repeated \d+ more times? from 127\.0\.0\.1 in the last \d+ s \(peers without TLS\); the latest: refused connection from 127\.0\.0\.1: the peer does not speak TLS/;
  await waitUntil(() => p.b.records.some((r) => r.level === 'warn' && summary.test(r.msg)), 60_000, () => `a summary line ${summary}; the receiver logged:\n${lines(p.b.records).slice(-3000)}`);
  const full = p.b.records.filter((r) => r.level === 'warn' && /^refused connection from/.test(r.msg));
  assert.equal(full.length, 1, `one full refusal line for ${proxy?.conns.length} attempts; the receiver logged:\n${lines(p.b.records)}`);
  assert.match(full[0]!.msg, /does not speak TLS but this agent requires encryption/);
});

/** A pass-through TCP proxy that records every byte in both directions. */
async function recordingProxy(cleanupList: typeof cleanup): Promise<{ via: (port: number) => Promise<number>; bytes: () => Buffer }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let target = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
    upstream.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
    client.pipe(upstream).pipe(client);
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill).on('close', kill);
    upstream.on('error', kill).on('close', kill);
  });
  cleanupList.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return {
    via: async (port) => {
      target = port;
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      return (server.address() as net.AddressInfo).port;
    },
    bytes: () => Buffer.concat(chunks),
  };
}

for (const encrypt of [true, false]) {
  test(`on the wire (${encrypt ? 'TLS' : 'encrypt: false'}): the file's marker string ${encrypt ? 'never appears' : 'appears in clear'}; the key never does`, async () => {
    const proxy = await recordingProxy(cleanup);
    const p = await pair({ senderEncrypt: encrypt, receiverEncrypt: encrypt, via: proxy.via });
    const marker = 'TDXFER-WIRE-MARKER-7f3a9c';
    const body = Buffer.from(`${marker}\n`.repeat(2000) + randomBytes(30_000).toString('hex'));
    await fs.writeFile(path.join(p.outbox, 'secret.txt'), body);
    await waitUntil(async () => (await listFiles(p.inbox)).includes('secret.txt'), 10_000, () => 'file delivered through the proxy');
    assert.deepEqual(await fs.readFile(path.join(p.inbox, 'secret.txt')), body);
    const wire = proxy.bytes();
    assert.ok(wire.length > body.length, `the proxy saw the transfer (${wire.length} bytes)`);
    const seen = wire.includes(Buffer.from(marker));
    assert.equal(seen, !encrypt, encrypt ? 'TLS must hide the file bytes' : 'plain mode sends them in clear (the capture works)');
    assert.equal(wire.includes(Buffer.from(TEST_KEY)), false, 'base64 key on the wire');
    assert.equal(wire.includes(Buffer.from(TEST_KEY, 'base64')), false, 'raw key bytes on the wire');
    if (encrypt) assert.equal(wire.includes(Buffer.from('secret.txt')), false, 'TLS hides the file name too');
    if (!encrypt) await logged(p.a.records, /ENCRYPTION IS OFF \(security\.encrypt=false\)/, 'an agent with encrypt:false');
  });
}


test('the CLI: key file created on first start with mode 0600; the key never reaches the logs (console or log file, debug level); encrypt:false warns loudly', async () => {
  const r = await root();
  const logFile = path.join(r, 'agent.log');
  const cfgFile = path.join(r, 'config.json');
  const base = {
    name: 'keyed', listen: { host: '127.0.0.1', port: 0 }, dataDir: 'data', inboxes: [{ name: 'renders', path: 'inbox' }],
    status: { enabled: false }, log: { level: 'debug', file: logFile },
  };
  await fs.writeFile(cfgFile, JSON.stringify({ ...base, security: { encrypt: false } }));
  const first = spawnCli(['run', '--config', cfgFile]);
  const port = await first.transferPort();
  const keyFile = path.join(r, 'data', 'key');
  const st = await fs.stat(keyFile);
  // Windows has no POSIX mode bits (stat says 666 for any writable file): there the key is
  // protected by its folder's ACL (the user's profile), which tdxfer does not change.
  if (!isWindows) assert.equal(st.mode & 0o777, 0o600, `key file mode is ${(st.mode & 0o777).toString(8)}`);
  const key = (await fs.readFile(keyFile, 'utf8')).trim();
  assert.equal(Buffer.from(key, 'base64').length, 32);
  await first.waitFor(/ENCRYPTION IS OFF/);
  // A peer makes the agent log a handshake at debug level, with this key.
  const rc = await RawClient.connect({ port });
  await rc.handshake(Buffer.from(key, 'base64'));
  rc.destroy();
  await first.waitFor(/peer raw test client connected \(NOT encrypted\)/);
  assert.equal(await first.stop(), EXIT_AFTER_KILL, first.output().slice(-3000));
  const out1 = first.output();
  // Printed once on first start, by design, as the banner telling the operator to copy it.
  assert.equal(out1.split(key).length - 1, 1, 'the new key is shown exactly once (the first-start banner)');
  assert.match(out1, new RegExp(`A new installation key was created in .*key:\\n\\n +${key.replace(/[+/]/g, '\\$&')}`));

  // Later starts (key file and, separately, the key inline in the config): never printed or logged.
  for (const security of [{ encrypt: false }, { key, encrypt: true }]) {
    await fs.writeFile(cfgFile, JSON.stringify({ ...base, security }));
    const again = spawnCli(['run', '--config', cfgFile]);
    const c = await RawClient.connect({ port: await again.transferPort(), ...(security.encrypt ? { tlsKey: Buffer.from(key, 'base64') } : {}) });
    await c.handshake(Buffer.from(key, 'base64'));
    c.destroy();
    await again.waitFor(/peer raw test client connected/);
      const t0 = Date.now();
    const code = await again.stop();
    assert.equal(code, EXIT_AFTER_KILL, `${again.child.signalCode} after ${Date.now() - t0} ms\n${again.output().slice(-3000)}`);
    assert.equal(again.output().includes(key), false, `key printed on a later start (security ${JSON.stringify(Object.keys(security))})`);
    assert.equal(again.output().includes(Buffer.from(key, 'base64').toString('hex')), false, 'key printed as hex');
  }
  // log.file rotates (winston-daily-rotate-file): the lines are in agent-YYYY-MM-DD.log[.n].
  const logNames = (await fs.readdir(r)).filter((n) => /^agent-\d{4}-\d{2}-\d{2}\.log(\.\d+)?$/.test(n));
  assert.ok(logNames.length > 0, `no rotated log file beside ${logFile}: ${(await fs.readdir(r)).join(', ')}`);
  const logText = (await Promise.all(logNames.map((n) => fs.readFile(path.join(r, n), 'utf8')))).join('');
  assert.ok(logText.includes('ENCRYPTION IS OFF'), 'the log file is in use');
  assert.equal(logText.includes(key), false, 'the key is in the log file');
  assert.equal(logText.includes(Buffer.from(key, 'base64').toString('hex')), false, 'the key (hex) is in the log file');
  assert.deepEqual([...(await hashTree(path.join(r, 'inbox'))).keys()], []);
});

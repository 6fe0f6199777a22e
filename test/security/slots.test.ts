/**
 * Issue #10 items 4 and 5: connection slots, against real agent processes.
 * - A flood of connections without the key, from rotating source addresses, must not keep
 *   a real sender out, and costs a few log lines, not one per connection.
 * - Idle authenticated connections from one address do not lock a ninth one out forever.
 * - A refusal is ERROR TOO_MANY_CONNECTIONS, logged by the sender with the field to change.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import { RawClient } from '../helpers/rawclient.js';
import { TEST_KEY, listFiles, waitUntil } from '../helpers/agents.js';
import { p, runAgent, type RunningAgent } from './util.js';

const key = Buffer.from(TEST_KEY, 'base64');

async function senderTo(receiver: RunningAgent, extra: Record<string, unknown> = {}): Promise<RunningAgent> {
  return runAgent({
    name: 'sender',
    extra: {
      outboxes: [{ path: 'outbox', to: [{ peer: 'receiver', inbox: 'renders' }], after: 'keep', settleMs: 100 }],
      peers: [{ name: 'receiver', host: '127.0.0.1', port: receiver.port }],
      transfer: { retryInitialMs: 100, retryMaxMs: 1000 },
      ...extra,
    },
  });
}

/** Silent connections from 127.0.0.2…127.0.0.201, each reopened as soon as the agent drops it. */
function flood(port: number, concurrent: number): { stop(): void; opened(): number } {
  let stopped = false;
  let opened = 0;
  let next = 0;
  const open = (): void => {
    if (stopped) return;
    const addr = `127.0.0.${2 + (next++ % 200)}`;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: addr });
    opened++;
    s.on('error', () => undefined);
    s.on('close', () => setTimeout(open, 5));
  };
  for (let i = 0; i < concurrent; i++) open();
  return {
    stop: () => {
      stopped = true;
    },
    opened: () => opened,
  };
}

describe('connection slots', () => {
  test('a flood without the key from rotating addresses does not keep a real sender out; refusals are logged rate-limited', async (t) => {
    const receiver = await runAgent({ name: 'receiver', extra: { limits: { idleTimeoutMs: 30_000, handshakeTimeoutMs: 10_000 } } });
    t.after(() => receiver.stop());
    const f = flood(receiver.port, 150);
    t.after(() => f.stop());
    await waitUntil(() => f.opened() >= 300, 30_000, () => 'the flood got going');
    const sender = await senderTo(receiver);
    t.after(() => sender.stop());
    await fs.mkdir(p(sender.dir, 'outbox'), { recursive: true });
    for (const n of [1, 2, 3]) await fs.writeFile(p(sender.dir, 'outbox', `shot${n}.png`), `frame ${n}`);
    await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).length === 3, 60_000, () => `3 files landed despite the flood (${f.opened()} flood connections):\n${sender.proc.output().slice(-2000)}`);
    f.stop();
    const lines = receiver.proc.output().split('\n').filter((l) => /connection/.test(l) && /WARN/.test(l));
    assert.ok(f.opened() > 300, `flood connections: ${f.opened()}`);
    assert.ok(lines.length <= 30, `${lines.length} warning lines for ${f.opened()} flood connections:\n${lines.slice(0, 40).join('\n')}`);
  });

  test('eight idle authenticated connections from one address do not lock out a ninth (the sender agent)', async (t) => {
    const receiver = await runAgent({ name: 'receiver', extra: { limits: { idleTimeoutMs: 30_000, handshakeTimeoutMs: 10_000 } } });
    t.after(() => receiver.stop());
    const idle: RawClient[] = [];
    t.after(() => idle.forEach((c) => c.destroy()));
    for (let i = 0; i < 8; i++) {
      const c = await RawClient.connect({ port: receiver.port, tlsKey: key });
      await c.handshake(key);
      idle.push(c);
    }
    const sender = await senderTo(receiver);
    t.after(() => sender.stop());
    await fs.mkdir(p(sender.dir, 'outbox'), { recursive: true });
    await fs.writeFile(p(sender.dir, 'outbox', 'ninth.png'), 'the ninth connection');
    await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('ninth.png'), 60_000, () => `ninth.png landed:\n${sender.proc.output().slice(-2000)}`);
    assert.ok(idle.some((c) => c.closed), 'an idle connection was closed to make room');
  });

  test('when no connection is idle, the refusal is ERROR TOO_MANY_CONNECTIONS and the sender logs the field to change', async (t) => {
    const receiver = await runAgent({ name: 'receiver', extra: { limits: { idleTimeoutMs: 30_000, handshakeTimeoutMs: 10_000, maxConnectionsPerPeer: 1 } } });
    t.after(() => receiver.stop());
    // One connection busy receiving a file (OFFER accepted, half the bytes sent, held).
    const busy = await RawClient.connect({ port: receiver.port, tlsKey: key });
    t.after(() => busy.destroy());
    await busy.handshake(key);
    busy.send({ type: 'offer', id: 1, inbox: 'renders', path: 'held.bin', size: 10, mtimeMs: 1_700_000_000_000, resume: false });
    await busy.expect('accept');
    busy.sendData(Buffer.from('12345'));
    const sender = await senderTo(receiver);
    t.after(() => sender.stop());
    await fs.mkdir(p(sender.dir, 'outbox'), { recursive: true });
    await fs.writeFile(p(sender.dir, 'outbox', 'waiting.png'), 'waits for a slot');
    await sender.proc.waitFor(/TOO_MANY_CONNECTIONS|too many connections.*limits\.maxConnectionsPerPeer/, 60_000);
    assert.match(sender.proc.output(), /raise limits\.maxConnectionsPerPeer/);
    busy.destroy();
    await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('waiting.png'), 60_000, () => `waiting.png landed once the slot was free:\n${sender.proc.output().slice(-2000)}`);
  });
});

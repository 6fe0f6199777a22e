/**
 * Issue #10 item 3: a peer that asks (PING) and never reads the answers (PONG) must not make
 * the agent buffer without end. Real agent process, real sockets, plain and TLS: the
 * connection is dropped once its unsent output passes the bound, and that is logged once.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame } from '../../src/protocol/index.js';
import { RawClient } from '../helpers/rawclient.js';
import { TEST_KEY, waitUntil } from '../helpers/agents.js';
import { runAgent } from './util.js';

const key = Buffer.from(TEST_KEY, 'base64');

/** PINGs as fast as the agent takes them, never reading; resolves when the agent hangs up. */
async function pingWithoutReading(c: RawClient, deadlineMs: number): Promise<{ closed: boolean; how: string }> {
  let error = 'none';
  c.socket.on('error', (e: NodeJS.ErrnoException) => {
    error = `${e.code ?? ''} ${e.message}`;
  });
  let batches = 0;
  const t0 = Date.now();
  c.socket.pause();
  const batch = Buffer.concat(Array.from({ length: 2000 }, (_, i) => encodeFrame({ type: 'ping', t: i })));
  const end = Date.now() + deadlineMs;
  while (!c.closed && !c.socket.destroyed && Date.now() < end) {
    batches++;
    if (!c.socket.write(batch)) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        c.socket.once('drain', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await new Promise((r) => setImmediate(r));
  }
  const how = `after ${Date.now() - t0} ms and ${batches} batches of ${batch.length} bytes; the client's socket error: ${error}; its unsent bytes: ${c.socket.writableLength}`;
  return { closed: c.closed || c.socket.destroyed, how };
}

describe('a peer that does not read its answers is disconnected (bounded output per connection)', () => {
  for (const encrypt of [true, false]) {
    test(`${encrypt ? 'TLS' : 'plain TCP'}, authenticated, PING flood without reading`, async (t) => {
      const a = await runAgent({
        name: 'pongs',
        extra: { security: { key: TEST_KEY, encrypt }, limits: { idleTimeoutMs: 30_000, handshakeTimeoutMs: 10_000 } },
      });
      t.after(() => a.stop());
      const c = await RawClient.connect({ port: a.port, ...(encrypt ? { tlsKey: key } : {}) });
      t.after(() => c.destroy());
      await c.handshake(key);
      const { closed, how } = await pingWithoutReading(c, 90_000);
      t.diagnostic(`the connection ended ${how}`);
      assert.ok(closed, 'the agent kept the connection open and buffered answers for 90 s');
      await waitUntil(() => /does not read what it asks for/.test(a.proc.output()), 30_000, () => `the connection ended ${how}; the agent said:\n${a.proc.output().slice(-2000)}`);
      assert.equal(a.proc.output().match(/does not read what it asks for/g)?.length, 1, 'logged once');
    });
  }
});

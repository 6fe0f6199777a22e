/**
 * Issue #11 item 7: the peer row says why a peer cannot be used ("other installation
 * key", "encryption setting differs", ...) in /status, `tdxfer peers` and the 'peer'
 * events, instead of a bare "unreachable" / "gone". Real agents on loopback.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { waitUntil, writeRandomFile } from '../helpers/agents.js';
import { followEvents, getJson, runCli, startRunning, writePair } from './status-helpers.js';
import type { SnapshotView } from '../../src/status/present.js';
import type { PeerInfo } from '../../src/types.js';
import { PEER_REASON, peerReason } from '../../src/discovery/reasons.js';
import { reportedCode } from '../../src/errors.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function reasonSeen(o: { senderExtra?: Record<string, unknown>; receiverExtra?: Record<string, unknown> }, expected: string): Promise<void> {
  const p = await writePair(o);
  cleanup.push(() => p.cleanup());
  const receiver = await startRunning(p.receiverCfg);
  cleanup.push(() => receiver.stop());
  const sender = await startRunning(p.senderCfg);
  cleanup.push(() => sender.stop());
  const sse = await followEvents(`${sender.base}/events`);
  cleanup.push(async () => sse.close());
  await writeRandomFile(path.join(p.outbox, 'a.png'), 1000);
  let row: PeerInfo | undefined;
  await waitUntil(
    async () => {
      row = (await getJson<SnapshotView>(`${sender.base}/status`)).peers.find((x) => x.name === 'playback');
      return row?.reason === expected;
    },
    30_000,
    () => `peer reason "${expected}", have ${JSON.stringify(row)}`,
  );
  assert.equal(row!.state, 'unreachable');
  assert.ok(sse.events.some((e) => e.event === 'peer' && e.data.name === 'playback' && e.data.reason === expected), 'a peer event carries the reason');
  const cli = await runCli(['peers', '--config', p.senderCfg]);
  assert.equal(cli.code, 0, cli.out);
  assert.match(cli.out, new RegExp(`^playback +\\S+ +- +- +unreachable \\(${expected.replace(/[()]/g, '\\$&')}\\) `, 'm'));
  await sender.stop();
  await receiver.stop();
}

test('a peer with another installation key: "other installation key"', async () => {
  await reasonSeen({ receiverExtra: { security: { key: randomBytes(32).toString('base64') } } }, PEER_REASON.otherKey);
});

test('encryption on here, off there: "encryption setting differs"', async () => {
  await reasonSeen({ receiverExtra: { security: { key: (await import('../helpers/agents.js')).TEST_KEY, encrypt: false } } }, PEER_REASON.encryptDiffers);
});

test('encryption off here, on there: "encryption setting differs"', async () => {
  await reasonSeen({ senderExtra: { security: { key: (await import('../helpers/agents.js')).TEST_KEY, encrypt: false } } }, PEER_REASON.encryptDiffers);
});

test('an agent discovery hears with another key is listed with the reason and never routed to; it goes away when it announces our key', async () => {
  // Discovery stays off (no mDNS on the host network): the announcement is handed to the
  // peer board the composition root shares with the agent, as the discovery part does
  // (src/agent/discovery-link.ts) for a foreign key fingerprint.
  const p = await writePair();
  cleanup.push(() => p.cleanup());
  const sender = await startRunning(p.senderCfg);
  cleanup.push(() => sender.stop());
  const sse = await followEvents(`${sender.base}/events`);
  cleanup.push(async () => sse.close());
  const ann = { instance: 'stage-left._tdxfer._tcp.local', id: 'f'.repeat(32), name: 'stage-left', addresses: ['127.0.0.1'], port: 9, inboxes: ['renders'], version: '0.2.0', protocols: [1], fingerprint: '0123456789abcdef' };
  const board = sender.shared.peers;
  board.noteForeign(ann);
  const row = (await getJson<SnapshotView>(`${sender.base}/status`)).peers.find((x) => x.name === 'stage-left');
  assert.equal(row?.reason, PEER_REASON.otherKey);
  assert.equal(row?.state, 'unreachable');
  await waitUntil(() => sse.events.some((e) => e.event === 'peer' && e.data.name === 'stage-left' && e.data.reason === PEER_REASON.otherKey), 10_000);
  // Never a routing candidate: it is not in the peer table that routes resolve against.
  assert.equal(board.table.list().some((x) => x.name === 'stage-left'), false);
  board.forgetForeign(ann.instance);
  assert.equal((await getJson<SnapshotView>(`${sender.base}/status`)).peers.some((x) => x.name === 'stage-left'), false);
});

test('peerReason: codes and messages to the few words of a peer row', () => {
  assert.equal(peerReason('AUTH_FAILED', 'x refused us'), PEER_REASON.otherKey);
  assert.equal(peerReason('TLS_FAILED', '1.2.3.4:7770: TLS handshake failed: the peer does not hold the same installation key (security.key / keyFile must be identical on every machine)'), PEER_REASON.otherKey);
  assert.equal(peerReason('TLS_FAILED', '1.2.3.4:7770: TLS handshake failed: the peer does not speak TLS here (encryption off on one side? security.encrypt must match on both machines)'), PEER_REASON.encryptDiffers);
  assert.equal(peerReason('UNSUPPORTED_PROTOCOL', 'this agent requires encryption (security.encrypt=true); set the same security.encrypt on both machines'), PEER_REASON.encryptDiffers);
  assert.equal(peerReason('TOO_MANY_CONNECTIONS', 'at the limit'), PEER_REASON.tooManyConnections);
  assert.equal(peerReason('CONNECT_FAILED', 'cannot connect to 127.0.0.1:9: connect ECONNREFUSED 127.0.0.1:9'), PEER_REASON.refused);
  assert.equal(peerReason('CONNECT_TIMEOUT', 'cannot connect'), PEER_REASON.noAnswer);
  assert.equal(peerReason('CONNECTION_LOST', '127.0.0.1:9 closed the connection during the handshake'), PEER_REASON.closedEarly);
  assert.equal(peerReason(reportedCode('X'), 'y'.repeat(200))!.length, 80); // a code this agent does not know: the message speaks
  assert.equal(peerReason(null, null), null);
});

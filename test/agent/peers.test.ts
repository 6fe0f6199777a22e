/** agent/peers.ts: the peer board discovery feeds and the status view reads, alone (no agent, no sockets). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerTable, type Announcement } from '../../src/discovery/table.js';
import { PeerBoard } from '../../src/agent/peers.js';
import type { PeerInfo } from '../../src/types.js';

const ann = (over: Partial<Announcement> = {}): Announcement => ({
  instance: 'wall._tdxfer._tcp.local', id: 'abcdef', name: 'wall', addresses: ['10.0.0.9'], port: 7000, inboxes: ['renders'], version: '1', protocols: [1], fingerprint: 'ff', ...over,
});

test('table changes are emitted as peer events with the link reason; a reason change is emitted once', () => {
  const board = new PeerBoard(new PeerTable());
  const seen: PeerInfo[] = [];
  board.on('peer', (p) => seen.push(p));
  board.table.setStatic([{ name: 'stage', host: '10.0.0.1', port: 7000, protocol: 'tdxfer' }]);
  const before = seen.length;
  board.noteReason('stage', 'connection refused');
  board.noteReason('stage', 'connection refused');
  assert.equal(seen.length, before + 1);
  assert.equal(seen.at(-1)!.reason, 'connection refused');
  assert.equal(board.list().find((p) => p.name === 'stage')!.reason, 'connection refused');
  board.noteReason('stage', null);
  assert.equal(seen.at(-1)!.reason, null);
});

test('agents of another installation are listed (never in the table), replace their stale entry, and go on forget', () => {
  const board = new PeerBoard(new PeerTable());
  board.table.announce(ann());
  board.noteForeign(ann());
  const listed = board.list().filter((p) => p.name === 'wall');
  assert.equal(listed.length, 1, 'the stale table entry is hidden behind the foreign row');
  assert.equal(listed[0]!.state, 'unreachable');
  assert.ok(listed[0]!.reason);
  const gone: PeerInfo[] = [];
  board.on('peer', (p) => gone.push(p));
  board.forgetForeign(ann().instance);
  assert.equal(gone.at(-1)!.state, 'gone');
  assert.equal(board.list().filter((p) => p.name === 'wall').length, 1, 'back to the table entry');
  assert.equal(board.discoveryState, 'off');
});

/**
 * SlotTable (transport/slots.ts, PURE): who makes room for a new unauthenticated connection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PENDING_MAX, PENDING_MAX_PER_ADDRESS, SlotTable } from '../../src/transport/slots.js';

const limits = { maxConnections: 8, maxConnectionsPerPeer: 8 };

/** A deterministic spread of "random" numbers in [0, 1). */
function sequence(): () => number {
  let i = 0;
  return () => ((i++ * 0.618033988749) % 1);
}

test('slots: a flood of silent connections never closes one whose handshake is under way (it has received bytes)', () => {
  const t = new SlotTable<string>(limits, sequence());
  const heard = new Set<string>(['peer']);
  assert.equal(t.open('peer', '10.0.0.1', (k) => heard.has(k)), null);
  for (let i = 0; i < PENDING_MAX - 1; i++) assert.equal(t.open(`f${i}`, `10.1.0.${i}`, (k) => heard.has(k)), null);
  assert.equal(t.pendingCount, PENDING_MAX);
  const closed: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const victim = t.open(`g${i}`, `10.2.${i >> 8}.${i & 255}`, (k) => heard.has(k));
    assert.notEqual(victim, null, 'the budget is full: someone makes room');
    closed.push(victim!);
  }
  assert.ok(!closed.includes('peer'), 'the connection under way kept its place');
  assert.equal(t.pendingCount, PENDING_MAX);
  // Once it is authenticated it leaves the unauthenticated budget.
  assert.deepEqual(t.authenticate('peer', '10.0.0.1', { idleMs: () => 0, busy: () => false }), { admit: true, evict: null });
  assert.equal(t.pendingCount, PENDING_MAX - 1);
});

test('slots: when every waiting connection has sent something, a random one of them makes room (as before)', () => {
  const t = new SlotTable<string>(limits, sequence());
  for (let i = 0; i < PENDING_MAX; i++) t.open(`h${i}`, `10.1.0.${i}`, () => true);
  const victims = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const v = t.open(`n${i}`, `10.3.0.${i}`, (k) => k.startsWith('h') || k.startsWith('n'));
    victims.add(v!);
  }
  assert.ok([...victims].some((v) => v.startsWith('h')), 'heard connections are closed when no silent one is left');
  assert.equal(t.pendingCount, PENDING_MAX);
});

test('slots: per address, a silent connection from that address makes room before one under way', () => {
  const t = new SlotTable<string>(limits, () => 0); // always the first candidate
  t.open('busy', '10.0.0.9', () => true);
  for (let i = 1; i < PENDING_MAX_PER_ADDRESS; i++) t.open(`quiet${i}`, '10.0.0.9');
  const heard = (k: string) => k === 'busy';
  assert.equal(t.open('next', '10.0.0.9', heard), 'quiet1');
  // Another address is not touched by that address's budget.
  assert.equal(t.open('other', '10.0.0.10', heard), null);
  // With only the connection under way left to choose from, it is the one (no other candidate).
  const u = new SlotTable<string>(limits, () => 0);
  for (let i = 0; i < PENDING_MAX_PER_ADDRESS; i++) u.open(`b${i}`, '10.0.0.7', () => true);
  assert.equal(u.open('c', '10.0.0.7', () => true), 'b0');
});

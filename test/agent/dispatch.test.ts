/**
 * Dispatching outbox files to jobs (agent/dispatch.ts) without sockets or files:
 * which destinations a ready file gets, waiting destinations for peers not known yet,
 * "*" fan-out to peers that appear later, the sent-journal's done destinations, and
 * the jobs built for each destination.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { OutboxConfig, RouteConfig } from '../../src/config/types.js';
import type { PeerInfo } from '../../src/types.js';
import type { ReadyFile } from '../../src/outbox/index.js';
import { fanoutAdditions, newJob, outboxBusy, planFile, recordKey, waitingDestination } from '../../src/agent/dispatch.js';

function outbox(to: RouteConfig[]): OutboxConfig {
  return { path: '/ob', to, include: [], exclude: [], after: 'archive', settleMs: 0 };
}
function file(ob: OutboxConfig, rel = 'shots/a.png'): ReadyFile {
  return { outbox: ob, rel, abs: `/ob/${rel}`, size: 42, mtimeMs: 1000 };
}
function peer(name: string, over: Partial<PeerInfo> = {}): PeerInfo {
  return { id: null, name, source: 'static', protocol: 'tdxfer', addresses: ['10.0.0.1'], port: 7000, inboxes: ['renders'], version: null, state: 'up', lastSeen: null, ...over };
}
const ctx = { selfName: 'me', discovery: true };

test('a named known peer gets one destination; the record is keyed by outbox and path', () => {
  const ob = outbox([{ peer: 'stage', inbox: 'renders' }]);
  const { record, destinations } = planFile(file(ob), [peer('stage')], ctx);
  assert.equal(record.key, recordKey('/ob', 'shots/a.png'));
  assert.deepEqual(destinations.map((d) => d.key), ['stage/renders']);
  assert.equal(record.multi, false);
  assert.deepEqual(record.fanout, []);
});

test('a named peer not known yet gets a waiting destination (the job waits visibly)', () => {
  const ob = outbox([{ peer: 'later', inbox: 'renders', flatten: true }]);
  const { destinations } = planFile(file(ob), [], ctx);
  assert.deepEqual(destinations, [waitingDestination('later', 'renders', true)]);
  assert.equal(destinations[0]!.protocol, 'tdxfer');
});

test('destinations the sent journal marks done are left out; several destinations make the record "multi"', () => {
  const ob = outbox([{ peer: 'a', inbox: 'renders' }, { peer: 'b', inbox: 'renders' }]);
  const { record, destinations } = planFile(file(ob), [peer('a'), peer('b')], ctx, new Set(['a/renders']));
  assert.deepEqual(destinations.map((d) => d.key), ['b/renders']);
  assert.equal(record.multi, true);
});

test('"*" routes: no destination until a discovered peer with the inbox comes up; then exactly once', () => {
  const ob = outbox([{ peer: '*', inbox: 'renders' }]);
  const { record, destinations } = planFile(file(ob), [], ctx);
  assert.deepEqual(destinations, []);
  assert.equal(record.multi, true);
  const p = peer('wall', { source: 'discovered', id: 'abc123' });
  const add = fanoutAdditions(record, p, 'me');
  assert.deepEqual(add.map((d) => d.key), ['wall#abc123/renders']);
  // Once the record has that job, the same peer coming up again adds nothing.
  record.jobs.set(add[0]!.key, newJob(record, add[0]!, 'j1', 0));
  assert.deepEqual(fanoutAdditions(record, p, 'me'), []);
  // A peer without the inbox gets nothing; a failed or superseded record gets nothing.
  assert.deepEqual(fanoutAdditions(record, peer('other', { source: 'discovered', id: 'ff', inboxes: ['x'] }), 'me'), []);
  record.failed = true;
  assert.deepEqual(fanoutAdditions(record, peer('w2', { source: 'discovered', id: 'dd' }), 'me'), []);
});

test('jobs: target flattened per destination (legacy peers flatten by default), kind, ids and sizes', () => {
  const ob = outbox([{ peer: 'stage', inbox: 'renders' }, { peer: 'tox' }]);
  const peers = [peer('stage'), peer('tox', { protocol: 'legacy', inboxes: [] })];
  const { record, destinations } = planFile(file(ob), peers, ctx);
  const jobs = destinations.map((d, i) => newJob(record, d, `j${i}`, 5));
  assert.deepEqual(jobs.map((j) => [j.info.peer, j.target]), [['stage', 'shots/a.png'], ['tox', 'a.png']]);
  for (const j of jobs) {
    assert.equal(j.info.kind, 'outbox');
    assert.equal(j.info.state, 'queued');
    assert.equal(j.info.bytesTotal, 42);
    assert.equal(j.info.queuedAt, 5);
    assert.equal(j.info.clientId, undefined);
  }
  const explicit = { ...record, explicit: true };
  const j = newJob(explicit, destinations[0]!, 'j9', 5, 'other/name.png', 'td-1');
  assert.equal(j.info.kind, 'send');
  assert.equal(j.target, 'other/name.png');
  assert.equal(j.info.clientId, 'td-1');
});

test('outboxBusy: true while a live record of that outbox waits for a destination', () => {
  const ob = outbox([{ peer: 'stage', inbox: 'renders' }]);
  const other = outbox([{ peer: 'stage', inbox: 'renders' }]);
  const { record } = planFile(file(ob), [peer('stage')], ctx);
  assert.equal(outboxBusy([record], ob), false);
  record.remaining.add('stage/renders');
  assert.equal(outboxBusy([record], ob), true);
  assert.equal(outboxBusy([record], other), false);
  record.superseded = true;
  assert.equal(outboxBusy([record], ob), false);
});

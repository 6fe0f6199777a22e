import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PeerTable, type Announcement } from '../../src/discovery/table.js';
import type { PeerInfo } from '../../src/types.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function ann(over: Partial<Announcement> = {}): Announcement {
  const id = over.id ?? 'aaaaaa111111';
  const name = over.name ?? 'playback-1';
  return {
    instance: `${name} (${id.slice(0, 6)})`,
    id,
    name,
    addresses: ['10.0.0.2'],
    port: 7000,
    inboxes: ['media'],
    version: '0.1.0',
    protocols: [1],
    fingerprint: 'abcd',
    ...over,
  };
}

function setup(goneAfterMs = 10_000): { t: PeerTable; c: ReturnType<typeof clock>; changes: PeerInfo[] } {
  const c = clock();
  const t = new PeerTable({ now: c.now, goneAfterMs });
  const changes: PeerInfo[] = [];
  t.on('change', (p) => changes.push(p));
  return { t, c, changes };
}

describe('PeerTable', () => {
  test('self is up, on loopback, and resolvable by name and by id prefix', () => {
    const { t, changes } = setup();
    t.setSelf({ id: 'self12345678', name: 'control', port: 7000, inboxes: ['in'], version: '0.1.0' });
    assert.equal(changes.length, 1);
    const [self] = t.resolve('control');
    assert.equal(self?.source, 'self');
    assert.equal(self?.state, 'up');
    assert.deepEqual(self?.addresses, ['127.0.0.1']);
    assert.equal(t.resolve('control#self12')[0]?.source, 'self');
    // same self again: no change event
    t.setSelf({ id: 'self12345678', name: 'control', port: 7000, inboxes: ['in'], version: '0.1.0' });
    assert.equal(changes.length, 1);
  });

  test('announce -> up with lastSeen; seen refreshes; silence -> gone after goneAfterMs', () => {
    const { t, c, changes } = setup(10_000);
    t.announce(ann());
    const [p] = t.resolve('playback-1');
    assert.equal(p?.state, 'up');
    assert.equal(p?.source, 'discovered');
    assert.equal(p?.lastSeen, c.now());
    assert.equal(changes.length, 1);

    c.advance(6_000);
    t.seen(ann().instance);
    assert.equal(changes.length, 1, 'seen alone is not a change');
    c.advance(6_000);
    assert.deepEqual(t.tick(), [], 'seen 6 s ago: still up');
    c.advance(4_000);
    const changed = t.tick();
    assert.equal(changed.length, 1);
    assert.equal(changed[0]?.state, 'gone');
    assert.equal(t.resolve('playback-1')[0]?.state, 'gone');
    assert.deepEqual(t.tick(), [], 'gone only once');
    assert.equal(changes.at(-1)?.state, 'gone');
  });

  test('a re-announce with the same data is not a change, but refreshes lastSeen', () => {
    const { t, c, changes } = setup();
    t.announce(ann());
    c.advance(9_000);
    t.announce(ann());
    assert.equal(changes.length, 1);
    c.advance(9_000);
    assert.deepEqual(t.tick(), []);
  });

  test('goodbye -> gone; a returning peer at a new address is up at once', () => {
    const { t, changes } = setup();
    t.announce(ann());
    t.goodbye(ann().instance);
    assert.equal(t.resolve('playback-1')[0]?.state, 'gone');
    t.goodbye(ann().instance);
    assert.equal(changes.length, 2, 'second goodbye is no change');
    t.announce(ann({ addresses: ['10.0.0.9'] }));
    const [p] = t.resolve('playback-1');
    assert.equal(p?.state, 'up');
    assert.deepEqual(p?.addresses, ['10.0.0.9']);
    assert.equal(changes.length, 3);
  });

  test('seen() revives a peer that timed out; seen of an unknown instance is ignored', () => {
    const { t, c } = setup(1_000);
    t.announce(ann());
    c.advance(2_000);
    t.tick();
    assert.equal(t.resolve('playback-1')[0]?.state, 'gone');
    t.seen(ann().instance);
    assert.equal(t.resolve('playback-1')[0]?.state, 'up');
    t.seen('nobody (000000)');
    assert.equal(t.list().length, 1);
  });

  test('our own announcement (same id as self) is ignored', () => {
    const { t } = setup();
    t.setSelf({ id: 'aaaaaa111111', name: 'playback-1', port: 7000, inboxes: [], version: '0.1.0' });
    t.announce(ann());
    assert.equal(t.list().length, 1);
    assert.equal(t.list()[0]?.source, 'self');
  });

  test('static peers: up, unreachable/reachable from connection attempts, kept across setStatic', () => {
    const { t, changes } = setup();
    t.setStatic([{ name: 'legacy-td', host: '10.0.0.5', port: 9000, protocol: 'legacy' }]);
    const [p] = t.resolve('legacy-td');
    assert.equal(p?.source, 'static');
    assert.equal(p?.state, 'up');
    assert.equal(p?.id, null);
    t.markUnreachable('legacy-td', 'ECONNREFUSED');
    assert.equal(t.resolve('legacy-td')[0]?.state, 'unreachable');
    assert.equal(t.reason('legacy-td'), 'ECONNREFUSED');
    // same config again keeps the state
    t.setStatic([{ name: 'legacy-td', host: '10.0.0.5', port: 9000, protocol: 'legacy' }]);
    assert.equal(t.resolve('legacy-td')[0]?.state, 'unreachable');
    t.markReachable('legacy-td');
    assert.equal(t.resolve('legacy-td')[0]?.state, 'up');
    assert.equal(t.reason('legacy-td'), null);
    // static peers never time out
    assert.deepEqual(t.tick(), []);
    // removed from config -> reported gone once, then unknown
    const before = changes.length;
    t.setStatic([]);
    assert.equal(changes.length, before + 1);
    assert.equal(changes.at(-1)?.state, 'gone');
    assert.deepEqual(t.resolve('legacy-td'), []);
  });

  test('static wins over discovered of the same name; name#id still reaches the discovered one', () => {
    const { t } = setup();
    t.announce(ann({ name: 'stage' }));
    t.setStatic([{ name: 'stage', host: '10.0.0.7', port: 7000, protocol: 'tdxfer' }]);
    const r = t.resolve('stage');
    assert.equal(r.length, 1);
    assert.equal(r[0]?.source, 'static');
    const exact = t.resolve('stage#aaaaaa');
    assert.equal(exact.length, 1);
    assert.equal(exact[0]?.source, 'discovered');
    // markUnreachable by plain name hits the static peer only
    t.markUnreachable('stage');
    assert.equal(t.list().find((p) => p.source === 'static')?.state, 'unreachable');
    assert.equal(t.list().find((p) => p.source === 'discovered')?.state, 'up');
  });

  test('several agents with one name: all resolve, duplicates() reports them, name#id picks one', () => {
    const { t, c } = setup();
    t.announce(ann({ id: 'aaaaaa111111' }));
    t.announce(ann({ id: 'bbbbbb222222', addresses: ['10.0.0.3'] }));
    assert.equal(t.resolve('playback-1').length, 2);
    assert.deepEqual(t.duplicates(), [{ name: 'playback-1', ids: ['aaaaaa111111', 'bbbbbb222222'] }]);
    const one = t.resolve('playback-1#bbb');
    assert.equal(one.length, 1);
    assert.deepEqual(one[0]?.addresses, ['10.0.0.3']);
    t.markUnreachable('playback-1#bbbbbb222222', 'timeout');
    assert.deepEqual(
      t.resolve('playback-1').map((p) => p.state),
      ['up', 'unreachable'],
    );
    assert.equal(t.reason('playback-1#bbbbbb222222'), 'timeout');
    // the unreachable one times out too (liveness is independent of reachability)
    t.seen(ann({ id: 'aaaaaa111111' }).instance);
    c.advance(10_001);
    assert.equal(t.tick().length, 2);
    assert.deepEqual(t.duplicates(), [], 'gone agents are no duplicates');
  });

  test('duplicates() includes self: another agent using our name', () => {
    const { t } = setup();
    t.setSelf({ id: 'ffffff000000', name: 'playback-1', port: 7000, inboxes: [], version: '0.1.0' });
    t.announce(ann());
    assert.deepEqual(t.duplicates(), [{ name: 'playback-1', ids: ['aaaaaa111111', 'ffffff000000'] }]);
    // resolve by plain name is self (self beats discovered)
    assert.equal(t.resolve('playback-1')[0]?.source, 'self');
  });

  test('markReachable revives a gone discovered peer and refreshes lastSeen; gone stays gone on unreachable', () => {
    const { t, c } = setup(1_000);
    t.announce(ann());
    c.advance(1_500);
    t.tick();
    t.markUnreachable('playback-1', 'refused');
    assert.equal(t.resolve('playback-1')[0]?.state, 'gone');
    t.markReachable('playback-1');
    const [p] = t.resolve('playback-1');
    assert.equal(p?.state, 'up');
    assert.equal(p?.lastSeen, c.now());
  });

  test('list(): self, static, discovered; copies cannot mutate the table', () => {
    const { t } = setup();
    t.announce(ann({ name: 'b-agent', id: 'bbbbbb000000' }));
    t.announce(ann({ name: 'a-agent', id: 'aaaaaa000000' }));
    t.setStatic([{ name: 'z-static', host: 'h', port: 1, protocol: 'tdxfer' }]);
    t.setSelf({ id: 'self00000000', name: 'me', port: 1, inboxes: [], version: 'x' });
    const l = t.list();
    assert.deepEqual(
      l.map((p) => `${p.source}:${p.name}`),
      ['self:me', 'static:z-static', 'discovered:a-agent', 'discovered:b-agent'],
    );
    l[2]!.addresses.push('1.2.3.4');
    l[2]!.state = 'gone';
    assert.deepEqual(t.list()[2]?.addresses, ['10.0.0.2']);
    assert.equal(t.list()[2]?.state, 'up');
    assert.equal(t.announcement('a-agent (aaaaaa)')?.fingerprint, 'abcd');
  });

  test('snapshot(): list()\'s answer, shared while nothing changed, rebuilt after every change (lastSeen and states too), frozen', () => {
    const { t, c } = setup(10_000);
    t.setSelf({ id: 'self12345678', name: 'control', port: 7000, inboxes: ['in'], version: '0.1.0' });
    t.setStatic([{ name: 'archive', host: '10.0.0.9', port: 7000, protocol: 'tdxfer' }]);
    t.announce(ann());
    const a = t.snapshot();
    assert.deepEqual(a, t.list());
    assert.equal(t.snapshot(), a, 'the same array while nothing changed');
    assert.ok(Object.isFrozen(a) && a.every((p) => Object.isFrozen(p) && Object.isFrozen(p.addresses) && Object.isFrozen(p.inboxes)));
    assert.throws(() => {
      (a[0] as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => (a[1]!.addresses as string[]).push('x'), TypeError);
    assert.deepEqual(t.list(), a, 'the table is untouched by those attempts');
    // Every change, even one without a change event (lastSeen), gives a new snapshot equal to list().
    const steps: Array<[string, () => void]> = [
      ['seen (lastSeen only)', () => (c.advance(1000), t.seen(ann().instance))],
      ['markReachable (lastSeen)', () => (c.advance(1000), t.markReachable('archive'))],
      ['markUnreachable', () => t.markUnreachable('archive', 'refused')],
      ['learnInboxes', () => t.learnInboxes('archive', ['vault'])],
      ['goodbye', () => t.goodbye(ann().instance)],
      ['announce again', () => t.announce(ann({ addresses: ['10.0.0.3'] }))],
      ['tick (gone after silence)', () => (c.advance(20_000), t.tick())],
      ['setStatic', () => t.setStatic([])],
      ['setSelf', () => t.setSelf({ id: 'self12345678', name: 'control', port: 7001, inboxes: ['in'], version: '0.1.0' })],
    ];
    let before = t.snapshot();
    for (const [what, step] of steps) {
      step();
      const now = t.snapshot();
      assert.notEqual(now, before, `${what}: a new snapshot`);
      assert.deepEqual(now, t.list(), `${what}: equal to list()`);
      before = now;
    }
  });
});

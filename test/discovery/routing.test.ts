import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRoutes, addressOrder, parsePeerRef } from '../../src/routing.js';
import { PeerTable, type Announcement } from '../../src/discovery/table.js';

function ann(name: string, id: string, inboxes: string[], addr = '10.0.0.2'): Announcement {
  return { instance: `${name} (${id.slice(0, 6)})`, id, name, addresses: [addr], port: 7000, inboxes, version: '0.1.0', protocols: [1], fingerprint: null };
}

function table(): { t: PeerTable; advance: (ms: number) => void } {
  let now = 0;
  const t = new PeerTable({ now: () => now, goneAfterMs: 10_000 });
  t.setSelf({ id: 'self00000000', name: 'control', port: 7000, inboxes: ['in'], version: '0.1.0' });
  return { t, advance: (ms) => void (now += ms) };
}

describe('resolveRoutes', () => {
  test('named discovered peer -> destination keyed name#id/inbox', () => {
    const { t } = table();
    t.announce(ann('playback-1', 'aaaaaa111111', ['media']));
    const r = resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(r.waiting, []);
    assert.deepEqual(r.destinations, [
      { key: 'playback-1#aaaaaa111111/media', peer: 'playback-1', peerKey: 'playback-1#aaaaaa111111', inbox: 'media', protocol: 'tdxfer', flatten: false },
    ]);
  });

  test('unknown peer -> waiting with a reason that says why', () => {
    const { t } = table();
    const on = resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control', discovery: true });
    assert.equal(on.destinations.length, 0);
    assert.match(on.waiting[0]!.reason, /peer playback-1 not seen yet \(discovery on\)/);
    const off = resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control', discovery: false });
    assert.match(off.waiting[0]!.reason, /unknown.*discovery is off/);
    const dunno = resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.match(dunno.waiting[0]!.reason, /not seen yet \(discovery on\) \/ unknown/);
    // once it announces, the same route resolves
    t.announce(ann('playback-1', 'aaaaaa111111', ['media']));
    assert.equal(resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control' }).destinations.length, 1);
  });

  test('a known but gone peer keeps its destination (jobs wait in its queue)', () => {
    const { t, advance } = table();
    t.announce(ann('playback-1', 'aaaaaa111111', ['media']));
    advance(20_000);
    t.tick();
    assert.equal(t.resolve('playback-1')[0]?.state, 'gone');
    const r = resolveRoutes([{ peer: 'playback-1', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.equal(r.destinations.length, 1);
    assert.equal(r.destinations[0]?.key, 'playback-1#aaaaaa111111/media');
  });

  test('static over discovered; self by name; static legacy flattens by default, null inbox allowed', () => {
    const { t } = table();
    t.announce(ann('stage', 'aaaaaa111111', ['media']));
    t.setStatic([
      { name: 'stage', host: '10.0.0.7', port: 7000, protocol: 'tdxfer' },
      { name: 'old-td', host: '10.0.0.8', port: 9000, protocol: 'legacy' },
    ]);
    const r = resolveRoutes(
      [{ peer: 'stage', inbox: 'media' }, { peer: 'control', inbox: 'in' }, { peer: 'old-td' }, { peer: 'old-td', inbox: 'x', flatten: false }],
      t.list(),
      { selfName: 'control' },
    );
    assert.deepEqual(r.waiting, []);
    assert.deepEqual(
      r.destinations.map((d) => [d.key, d.protocol, d.flatten]),
      [
        ['stage/media', 'tdxfer', false],
        ['control/in', 'tdxfer', false],
        ['old-td/', 'legacy', true],
        ['old-td/x', 'legacy', false],
      ],
    );
  });

  test('self by name even before setSelf', () => {
    const r = resolveRoutes([{ peer: 'control', inbox: 'in' }], [], { selfName: 'control' });
    assert.deepEqual(r.destinations.map((d) => d.key), ['control/in']);
  });

  test('several agents with one name: one destination each; name#id picks one', () => {
    const { t } = table();
    t.announce(ann('playback', 'aaaaaa111111', ['media']));
    t.announce(ann('playback', 'bbbbbb222222', ['media'], '10.0.0.3'));
    const all = resolveRoutes([{ peer: 'playback', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(all.destinations.map((d) => d.key), ['playback#aaaaaa111111/media', 'playback#bbbbbb222222/media']);
    const one = resolveRoutes([{ peer: 'playback#bbb', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(one.destinations.map((d) => d.key), ['playback#bbbbbb222222/media']);
  });

  test('"*" fans out to discovered, not-gone peers that have the inbox; never static or self', () => {
    const { t, advance } = table();
    t.setStatic([{ name: 'static-1', host: '10.0.0.7', port: 7000, protocol: 'tdxfer' }]);
    t.announce(ann('p1', 'aaaaaa111111', ['media', 'other']));
    t.announce(ann('p2', 'bbbbbb222222', ['other']));
    advance(6_000);
    t.announce(ann('p3', 'cccccc333333', ['media']));
    const r1 = resolveRoutes([{ peer: '*', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(r1.destinations.map((d) => d.key), ['p1#aaaaaa111111/media', 'p3#cccccc333333/media']);
    advance(6_000);
    t.tick(); // p1, p2 silent for 12 s -> gone
    const r2 = resolveRoutes([{ peer: '*', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(r2.destinations.map((d) => d.key), ['p3#cccccc333333/media']);
    const none = resolveRoutes([{ peer: '*', inbox: 'nope' }], t.list(), { selfName: 'control' });
    assert.equal(none.destinations.length, 0);
    assert.match(none.waiting[0]!.reason, /no discovered peer with inbox "nope"/);
    const noInbox = resolveRoutes([{ peer: '*' }], t.list(), { selfName: 'control' });
    assert.match(noInbox.waiting[0]!.reason, /needs an inbox/);
  });

  test('tdxfer route without inbox waits with a reason listing the known inboxes; duplicates are merged', () => {
    const { t } = table();
    t.announce(ann('p1', 'aaaaaa111111', ['media', 'cues']));
    const r = resolveRoutes([{ peer: 'p1' }], t.list(), { selfName: 'control' });
    assert.equal(r.destinations.length, 0);
    assert.match(r.waiting[0]!.reason, /needs an inbox \(its inboxes: media, cues\)/);
    const dup = resolveRoutes([{ peer: 'p1', inbox: 'media' }, { peer: '*', inbox: 'media' }], t.list(), { selfName: 'control' });
    assert.deepEqual(dup.destinations.map((d) => d.key), ['p1#aaaaaa111111/media']);
  });
});

describe('parsePeerRef', () => {
  test('splits on the last #, lowercases the id prefix', () => {
    assert.deepEqual(parsePeerRef('a#B1'), { name: 'a', idPrefix: 'b1' });
    assert.deepEqual(parsePeerRef('a'), { name: 'a', idPrefix: null });
    assert.deepEqual(parsePeerRef('#x'), { name: '#x', idPrefix: null });
    assert.deepEqual(parsePeerRef('a#'), { name: 'a#', idPrefix: null });
    assert.deepEqual(parsePeerRef('a#b#c'), { name: 'a#b', idPrefix: 'c' });
  });
});

describe('addressOrder', () => {
  test('referer first, IPv4 before IPv6, zone-less link-local dropped, duplicates removed', () => {
    assert.deepEqual(
      addressOrder(['fe80::1', '2001:DB8::1', '192.168.1.5', '10.0.0.2', '192.168.1.5', 'fe80::2%eth0'], '10.0.0.2'),
      ['10.0.0.2', '192.168.1.5', '2001:db8::1', 'fe80::2%eth0'],
    );
  });
  test('without referer keeps the announced order within a family', () => {
    assert.deepEqual(addressOrder(['2001:db8::1', '10.0.0.9', '10.0.0.2']), ['10.0.0.9', '10.0.0.2', '2001:db8::1']);
  });
  test('a link-local referer without zone is dropped too; empty input', () => {
    assert.deepEqual(addressOrder(['10.0.0.2'], 'fe80::5'), ['10.0.0.2']);
    assert.deepEqual(addressOrder([]), []);
    assert.deepEqual(addressOrder([], '127.0.0.1'), ['127.0.0.1']);
  });
});

/** PeerBook: mDNS responses -> actions, in memory (no socket: the host namespace stays quiet). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PeerBook, type ResourceRecord, type MdnsPacket } from '../../src/discovery/mdns-packet.js';
import { instanceOf, sameName, SERVICE_DOMAIN } from '../../src/discovery/mdns-names.js';
import { encodeTxt } from '../../src/discovery/txt.js';

const self = { id: 'self00aabbcc', name: 'me', instanceName: 'me (self00)' };
const fqdn = (instance: string): string => `${instance}.${SERVICE_DOMAIN}`;
const txtData = (id: string, name: string): Buffer[] =>
  Object.entries(encodeTxt({ id, name, version: '1.0.0', protocols: [1], fingerprint: null, inboxes: ['in'] })).map(([k, v]) => Buffer.from(`${k}=${v}`));

/** A full answer: PTR + SRV + TXT + A records, like a peer's response to our PTR query. */
function answer(instance: string, opts: { id?: string; name?: string; port?: number; ttl?: number; addrs?: string[] } = {}): MdnsPacket {
  const ttl = opts.ttl ?? 4500;
  const host = 'peer-host.local';
  const answers: ResourceRecord[] = [{ name: SERVICE_DOMAIN, type: 'PTR', ttl, data: fqdn(instance) }];
  const additionals: ResourceRecord[] = [
    { name: fqdn(instance), type: 'SRV', ttl: ttl === 0 ? 0 : 120, data: { port: opts.port ?? 7000, target: host } },
    { name: fqdn(instance), type: 'TXT', ttl: 4500, data: txtData(opts.id ?? 'peer01ffeedd', opts.name ?? 'peer') },
    ...(opts.addrs ?? ['10.0.0.2']).map((a): ResourceRecord => ({ name: host, type: 'A', ttl: 120, data: a })),
  ];
  return { answers, additionals };
}

describe('names', () => {
  test('instanceOf takes the instance from a tdxfer service name, null for others; names compare case-insensitively', () => {
    assert.equal(instanceOf('stage (abc123)._tdxfer._tcp.local.'), 'stage (abc123)');
    assert.equal(instanceOf('x._TDXFER._tcp.local'), 'x');
    assert.equal(instanceOf('x._http._tcp.local'), null);
    assert.equal(instanceOf('_tdxfer._tcp.local'), null);
    assert.ok(sameName('A.local.', 'a.local'));
    assert.ok(!sameName('a.local', 'b.local'));
  });
});

describe('PeerBook.interpret', () => {
  test('a new peer is announced with its addresses (sender first, then announced, in address order) and its TXT', () => {
    const book = new PeerBook(self);
    const acts = book.interpret(0, answer('peer (peer01)', { addrs: ['10.0.0.2', '10.0.0.3'] }), '10.0.0.2');
    assert.deepEqual(acts.map((a) => a.kind), ['alive', 'announce']);
    const ann = acts[1]!.kind === 'announce' ? acts[1]!.ann : assert.fail('no announce');
    assert.equal(ann.instance, 'peer (peer01)');
    assert.equal(ann.id, 'peer01ffeedd');
    assert.equal(ann.name, 'peer');
    assert.equal(ann.port, 7000);
    assert.deepEqual(ann.inboxes, ['in']);
    assert.deepEqual(ann.addresses, ['10.0.0.2', '10.0.0.3']);
    assert.ok(book.has('peer (peer01)'));
  });

  test('the same answer again is only "seen"; a changed port or address is announced again', () => {
    const book = new PeerBook(self);
    book.interpret(0, answer('p'), '10.0.0.2');
    assert.deepEqual(book.interpret(0, answer('p'), '10.0.0.2').map((a) => a.kind), ['alive', 'seen']);
    assert.deepEqual(book.interpret(0, answer('p', { port: 7001 }), '10.0.0.2').map((a) => a.kind), ['alive', 'announce']);
    const moved = book.interpret(0, answer('p', { port: 7001, addrs: ['10.0.0.9'] }), '10.0.0.9');
    assert.equal(moved[1]!.kind, 'announce');
  });

  test('two lanes: addresses follow lane order, not arrival order', () => {
    const book = new PeerBook(self);
    book.interpret(1, answer('p', { addrs: ['192.168.1.5'] }), '192.168.1.5');
    const acts = book.interpret(0, answer('p', { addrs: ['10.0.0.5'] }), '10.0.0.5');
    const ann = acts.find((a) => a.kind === 'announce');
    assert.ok(ann && ann.kind === 'announce');
    assert.equal(ann.ann.addresses.length, 2);
    assert.ok(ann.ann.addresses.includes('10.0.0.5') && ann.ann.addresses.includes('192.168.1.5'));
  });

  test('our own answer only marks the lane as hearing itself; our own goodbye is ignored', () => {
    const book = new PeerBook(self);
    assert.deepEqual(book.interpret(0, answer(self.instanceName, { id: self.id, name: self.name }), '10.0.0.1').map((a) => a.kind), ['alive', 'heardSelf']);
    assert.deepEqual(book.interpret(0, answer(self.instanceName, { id: self.id, ttl: 0 }), '10.0.0.1'), []);
    assert.ok(!book.has(self.instanceName));
  });

  test('a goodbye (TTL 0) is reported only for a known instance; forget() drops it', () => {
    const book = new PeerBook(self);
    assert.deepEqual(book.interpret(0, answer('p', { ttl: 0 }), '10.0.0.2'), []);
    book.interpret(0, answer('p'), '10.0.0.2');
    assert.deepEqual(book.interpret(0, answer('p', { ttl: 0 }), '10.0.0.2'), [{ kind: 'goodbye', instance: 'p' }]);
    assert.ok(book.forget('p'));
    assert.ok(!book.has('p'));
    assert.ok(!book.forget('p'));
  });

  test('an SRV without PTR (answer to a probe) proves a known peer alive; unknown ones are ignored', () => {
    const book = new PeerBook(self);
    const srvOnly: MdnsPacket = { answers: [{ name: fqdn('p'), type: 'SRV', ttl: 120, data: { port: 7000, target: 'h.local' } }] };
    assert.deepEqual(book.interpret(0, srvOnly, '10.0.0.2'), []);
    book.interpret(0, answer('p'), '10.0.0.2');
    assert.deepEqual(book.interpret(0, srvOnly, '10.0.0.2').map((a) => a.kind), ['alive', 'seen']);
  });

  test('a PTR without SRV/TXT: alive, and seen only when known', () => {
    const book = new PeerBook(self);
    const ptrOnly: MdnsPacket = { answers: [{ name: SERVICE_DOMAIN, type: 'PTR', ttl: 4500, data: fqdn('p') }] };
    assert.deepEqual(book.interpret(0, ptrOnly, '10.0.0.2').map((a) => a.kind), ['alive']);
    book.interpret(0, answer('p'), '10.0.0.2');
    assert.deepEqual(book.interpret(0, ptrOnly, '10.0.0.2').map((a) => a.kind), ['alive', 'seen']);
  });

  test('an announcement without agent id or port is warned about (keyed per instance) and not recorded', () => {
    const book = new PeerBook(self);
    const pkt = answer('odd', { port: 0 });
    const acts = book.interpret(0, pkt, '10.0.0.7');
    const warn = acts.find((a) => a.kind === 'warn');
    assert.ok(warn && warn.kind === 'warn');
    assert.equal(warn.key, 'noid:odd');
    assert.match(warn.msg, /10\.0\.0\.7.*no agent id or port/);
    assert.ok(!book.has('odd'));
  });

  test('another agent with our name: a warning keyed by its id, then the announce', () => {
    const book = new PeerBook(self);
    const acts = book.interpret(0, answer('me (other1)', { id: 'other1234567', name: 'me' }), '10.0.0.8');
    assert.deepEqual(acts.map((a) => a.kind), ['alive', 'warn', 'announce']);
    const warn = acts[1]!;
    assert.ok(warn.kind === 'warn' && warn.key === 'dup:other1234567' && /uses our name "me"/.test(warn.msg));
  });

  test('other services and records are ignored', () => {
    const book = new PeerBook(self);
    const pkt: MdnsPacket = { answers: [{ name: '_http._tcp.local', type: 'PTR', ttl: 4500, data: 'web._http._tcp.local' }, { name: 'x', type: 'A', data: '1.2.3.4' }] };
    assert.deepEqual(book.interpret(0, pkt, '10.0.0.2'), []);
    assert.deepEqual(book.interpret(0, {}, '10.0.0.2'), []);
  });
});

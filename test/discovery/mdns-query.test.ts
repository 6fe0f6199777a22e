/** Reading mDNS traffic (mdns-query.ts) and a lane's state (mdns-lane.ts), in memory: no socket is opened. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type os from 'node:os';
import { OWN_QUERY_MEMORY_MS, SentQueries, cacheRefreshes, listedInstances, queryKey } from '../../src/discovery/mdns-query.js';
import { newLane, refreshOwn, socketProblem, upProblem } from '../../src/discovery/mdns-lane.js';
import type { MulticastDns } from '../../src/discovery/mdns-socket.js';
import { SERVICE_DOMAIN } from '../../src/discovery/mdns-names.js';
import { SERVICES_ENUM } from '../../src/discovery/mdns-answer.js';

const fqdn = (instance: string): string => `${instance}.${SERVICE_DOMAIN}`;
const ptrQuery = (id: number, known: Array<{ instance: string; ttl: number }> = []) => ({
  id,
  questions: [{ name: SERVICE_DOMAIN, type: 'PTR' }],
  answers: known.map((k) => ({ name: SERVICE_DOMAIN, type: 'PTR', ttl: k.ttl, data: fqdn(k.instance) })),
});

describe('SentQueries: our own queries when they loop back', () => {
  test('a query we sent is ours within the memory, not after it; another id or content is not ours', () => {
    const sent = new SentQueries();
    const q = ptrQuery(7, [{ instance: 'a (111111)', ttl: 20 }]);
    sent.sent(q, 1000);
    assert.ok(sent.isOwn(q, 1000));
    assert.ok(sent.isOwn(q, 1000 + OWN_QUERY_MEMORY_MS));
    assert.ok(!sent.isOwn(q, 1001 + OWN_QUERY_MEMORY_MS));
    assert.ok(!sent.isOwn({ ...q, id: 8 }, 1000), 'another id');
    assert.ok(!sent.isOwn(ptrQuery(7), 1000), 'other Known-Answers');
  });

  test('names compare case-insensitively and the Known-Answer order does not matter', () => {
    const a = ptrQuery(1, [{ instance: 'a (111111)', ttl: 20 }, { instance: 'b (222222)', ttl: 20 }]);
    const b = { ...a, questions: [{ name: SERVICE_DOMAIN.toUpperCase(), type: 'PTR' }], answers: [...a.answers].reverse() };
    assert.equal(queryKey(a), queryKey(b));
    const sent = new SentQueries();
    sent.sent(a, 0);
    assert.ok(sent.isOwn(b, 10));
  });

  test('old entries are forgotten when the next query is sent (bounded memory)', () => {
    const sent = new SentQueries(100);
    for (let i = 0; i < 50; i++) sent.sent(ptrQuery(i), i * 10);
    assert.ok(sent.size <= 12, `${sent.size} remembered`);
    assert.ok(sent.isOwn(ptrQuery(49), 490));
    assert.ok(!sent.isOwn(ptrQuery(0), 490));
  });
});

describe('listedInstances: the Known-Answers of a query for our type', () => {
  test('a PTR query for _tdxfer._tcp lists its known instances with their TTLs', () => {
    const listed = listedInstances(ptrQuery(1, [{ instance: 'a (111111)', ttl: 20 }, { instance: 'b (222222)', ttl: 7 }]));
    assert.deepEqual(listed && [...listed], [['a (111111)', 20], ['b (222222)', 7]]);
    assert.deepEqual(listedInstances(ptrQuery(1)) && [...listedInstances(ptrQuery(1))!], []);
  });

  test('other questions give null; other services and other record types in the list are ignored', () => {
    assert.equal(listedInstances({ questions: [{ name: SERVICE_DOMAIN, type: 'SRV' }] }), null);
    assert.equal(listedInstances({ questions: [{ name: '_http._tcp.local', type: 'PTR' }] }), null);
    assert.equal(listedInstances({}), null);
    const listed = listedInstances({
      questions: [{ name: `${SERVICE_DOMAIN}.`, type: 'PTR' }],
      answers: [
        { name: '_http._tcp.local', type: 'PTR', ttl: 20, data: 'web._http._tcp.local' },
        { name: SERVICE_DOMAIN, type: 'TXT', ttl: 20, data: fqdn('x (333333)') },
        { name: SERVICE_DOMAIN, type: 'PTR', data: fqdn('c (444444)') },
      ],
    });
    assert.deepEqual(listed && [...listed], [['c (444444)', 0]]);
  });
});

describe('cacheRefreshes: which records of a response refresh our cache', () => {
  test('PTRs of our type add, SRVs only refresh; goodbyes, other services and our own instance are left out', () => {
    const refreshes = cacheRefreshes(
      [
        { name: SERVICE_DOMAIN, type: 'PTR', ttl: 20, data: fqdn('a (111111)') },
        { name: fqdn('a (111111)'), type: 'SRV', ttl: 20, data: { port: 7000, target: 'a.local' } },
        { name: fqdn('b (222222)'), type: 'TXT', ttl: 20, data: [] },
        { name: SERVICE_DOMAIN, type: 'PTR', ttl: 0, data: fqdn('gone (555555)') },
        { name: SERVICE_DOMAIN, type: 'PTR', ttl: 20, data: fqdn('me (000000)') },
        { name: SERVICES_ENUM, type: 'PTR', ttl: 20, data: SERVICE_DOMAIN },
        { name: '_http._tcp.local', type: 'PTR', ttl: 20, data: 'web._http._tcp.local' },
        { name: 'a.local', type: 'A', ttl: 20, data: '10.0.0.2' },
      ],
      'me (000000)',
    );
    assert.deepEqual(refreshes, [
      { instance: 'a (111111)', ttlS: 20, adds: true },
      { instance: 'a (111111)', ttlS: 20, adds: false },
    ]);
  });
});

describe('lane state (mdns-lane.ts)', () => {
  type Nets = ReturnType<typeof os.networkInterfaces>;
  const nic = (address: string, family: 'IPv4' | 'IPv6' = 'IPv4', internal = false): os.NetworkInterfaceInfo =>
    ({ address, family, internal, netmask: '255.255.255.0', mac: '02:00:00:00:00:01', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as os.NetworkInterfaceInfo;
  const nets: Nets = { lo: [nic('127.0.0.1', 'IPv4', true)], eth0: [nic('fe80::1', 'IPv6'), nic('192.168.1.10')], eth1: [nic('10.0.0.5')] };
  const who = { instanceName: 'stage (abc123)', hostName: 'stage-abc123.local', port: 7000, txt: { id: 'abc123' }, ttlS: 20 };
  const lane = (address: string | null) =>
    newLane({ label: address ?? 'default', address, mdns: {} as MulticastDns }, { now: 0, self: who.instanceName, capMs: 60_000, random: () => 0.5 });

  test('a new lane is quiet: not probing, not up, no records until refreshOwn', () => {
    const l = lane(null);
    assert.deepEqual([l.up, l.probing, l.conflict, l.heardSelf, l.own.length, l.timer], [false, false, false, false, 0, null]);
  });

  test('refreshOwn publishes every non-internal IPv4 on the default lane, the lane address on a NIC lane; true only on a change', () => {
    const d = lane(null);
    assert.equal(refreshOwn(d, who, nets), true);
    assert.deepEqual(d.own.filter((r) => r.type === 'A').map((r) => r.data), ['192.168.1.10', '10.0.0.5']);
    assert.equal(refreshOwn(d, who, nets), false, 'same addresses');
    assert.equal(refreshOwn(d, who, { ...nets, eth1: [nic('10.0.0.6')] }), true, 'DHCP gave eth1 another address');
    assert.equal(d.published, '192.168.1.10,10.0.0.6');
    const n = lane('10.0.0.5');
    refreshOwn(n, who, nets);
    assert.deepEqual(n.own.filter((r) => r.type === 'A').map((r) => r.data), ['10.0.0.5']);
    assert.ok(n.own.every((r) => r.ttl === 20));
  });

  test('upProblem: not up names the same-id cause, up but unheard names the multicast route, heard is fine', () => {
    const self = { instanceName: who.instanceName, id: 'abc123ff' };
    assert.match(upProblem({ label: 'eth0', up: false, heardSelf: false }, self, 2500) ?? '', /did not come up on eth0 within 2500 ms.*same id abc123ff/);
    assert.match(upProblem({ label: 'eth0', up: true, heardSelf: false }, self, 2500) ?? '', /never heard our own announcement back on eth0.*224\.0\.0\.0\/4/);
    assert.equal(upProblem({ label: 'eth0', up: true, heardSelf: true }, self, 2500), null);
  });

  test('socketProblem: one key per kind, lane and message; a missing multicast route gets a hint', () => {
    const e = socketProblem('error', 'eth0', new Error('send ENETUNREACH 224.0.0.251:5353'));
    assert.equal(e.key, 'err:eth0:send ENETUNREACH 224.0.0.251:5353');
    assert.equal(e.line, 'mDNS error on eth0: send ENETUNREACH 224.0.0.251:5353');
    assert.match(e.warning, /^mDNS error on eth0: .*multicast has no route here/);
    const w = socketProblem('warning', 'eth0', new Error('send ENETUNREACH 224.0.0.251:5353'));
    assert.equal(w.key, 'warn:eth0:send ENETUNREACH 224.0.0.251:5353');
    assert.equal(w.warning, w.line);
    assert.equal(socketProblem('error', 'eth0', new Error('EPERM')).warning, 'mDNS error on eth0: EPERM');
  });
});

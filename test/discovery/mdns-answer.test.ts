/** The responder side (mdns-answer.ts): our records, which answer a query, when they go out (RFC 6762), on a fake clock. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerQueue, SERVICES_ENUM, conflicts, goodbyeRecords, ownRecords, recordKey, selectAnswers, type OwnRecord } from '../../src/discovery/mdns-answer.js';
import { SERVICE_DOMAIN } from '../../src/discovery/mdns-names.js';
import { PeerBook } from '../../src/discovery/mdns-packet.js';

const me = { instanceName: 'stage (abc123)', hostName: 'stage-abc123.local', port: 7000, txt: { id: 'abc123ff', name: 'stage', proto: '1' }, addresses: ['10.0.0.1'], ttlS: 20 };
const own = ownRecords(me);
const fqdn = `${me.instanceName}.${SERVICE_DOMAIN}`;
const ptrQuery = (known: Array<{ data: string; ttl: number }> = []) => ({
  questions: [{ name: SERVICE_DOMAIN, type: 'PTR' }],
  answers: known.map((k) => ({ name: SERVICE_DOMAIN, type: 'PTR', ttl: k.ttl, data: k.data })),
});
const types = (rs: OwnRecord[]): string[] => rs.map((r) => r.type);

describe('goodbyeRecords', () => {
  test('every record with TTL 0 except the type enumeration, which other agents still hold', () => {
    const bye = goodbyeRecords(own);
    assert.deepEqual(types(bye), ['PTR', 'SRV', 'TXT', 'A']);
    assert.ok(bye.every((r) => r.ttl === 0));
    assert.ok(!bye.some((r) => r.name === SERVICES_ENUM));
    assert.ok(own.every((r) => r.ttl === 20), 'our records are unchanged');
  });
});

describe('ownRecords', () => {
  test('PTR, SRV, TXT, A and the type enumeration, all with our TTL; unique records carry the cache-flush bit', () => {
    assert.deepEqual(types(own), ['PTR', 'SRV', 'TXT', 'A', 'PTR']);
    assert.ok(own.every((r) => r.ttl === 20));
    assert.deepEqual(own.map((r) => r.flush === true), [false, true, true, true, false]);
    assert.equal(own[0]!.data, fqdn);
    assert.equal(own[4]!.name, SERVICES_ENUM);
    assert.deepEqual(own[1]!.data, { priority: 0, weight: 0, port: 7000, target: 'stage-abc123.local' });
  });

  test('what we publish reads back as our announcement (PeerBook, the peers\' side)', () => {
    const book = new PeerBook({ id: 'other', name: 'other', instanceName: 'other (000000)' });
    const acts = book.interpret(0, { answers: own }, '10.0.0.1');
    const ann = acts.find((a) => a.kind === 'announce');
    assert.ok(ann && ann.kind === 'announce');
    assert.equal(ann.ann.id, 'abc123ff');
    assert.equal(ann.ann.port, 7000);
    assert.deepEqual(ann.ann.addresses, ['10.0.0.1']);
  });
});

describe('selectAnswers', () => {
  test('a PTR question gets our PTR, with SRV, TXT and A as additionals: one packet is a whole announcement', () => {
    const sel = selectAnswers(ptrQuery(), own);
    assert.deepEqual(types(sel.answers), ['PTR']);
    assert.deepEqual(types(sel.additionals), ['SRV', 'TXT', 'A']);
    assert.equal(sel.shared, true);
    assert.equal(sel.probe, false);
  });

  test('§7.1 Known-Answer suppression: listed with at least half our TTL -> no answer; with less -> answered', () => {
    assert.deepEqual(selectAnswers(ptrQuery([{ data: fqdn, ttl: 10 }]), own).answers, []);
    assert.deepEqual(selectAnswers(ptrQuery([{ data: fqdn.toUpperCase(), ttl: 15 }]), own).answers, [], 'names compare case-insensitively');
    assert.deepEqual(types(selectAnswers(ptrQuery([{ data: fqdn, ttl: 9 }]), own).answers), ['PTR']);
    assert.deepEqual(types(selectAnswers(ptrQuery([{ data: `other (x).${SERVICE_DOMAIN}`, ttl: 20 }]), own).answers), ['PTR'], 'another instance listed');
  });

  test('SRV/TXT/A/ANY questions (a resolver such as python-zeroconf) and the type enumeration are answered; other names are not', () => {
    assert.deepEqual(types(selectAnswers({ questions: [{ name: fqdn, type: 'SRV' }] }, own).answers), ['SRV']);
    assert.deepEqual(types(selectAnswers({ questions: [{ name: fqdn, type: 'SRV' }] }, own).additionals), ['A']);
    assert.deepEqual(types(selectAnswers({ questions: [{ name: fqdn, type: 'ANY' }] }, own).answers), ['SRV', 'TXT']);
    assert.deepEqual(types(selectAnswers({ questions: [{ name: 'stage-abc123.local', type: 'A' }] }, own).answers), ['A']);
    assert.deepEqual(selectAnswers({ questions: [{ name: SERVICES_ENUM, type: 'PTR' }] }, own).answers.map((r) => r.data), [SERVICE_DOMAIN]);
    assert.deepEqual(selectAnswers({ questions: [{ name: '_http._tcp.local', type: 'PTR' }] }, own).answers, []);
  });

  test('a probe (records in the authority section) is marked for an immediate answer', () => {
    const sel = selectAnswers({ questions: [{ name: fqdn, type: 'ANY' }], authorities: [own[1]!] }, own);
    assert.equal(sel.probe, true);
  });
});

describe('conflicts (probing, §8.1)', () => {
  test('a response holding SRV or TXT of our instance name is a conflict, also with identical data (a copied id); others are not', () => {
    assert.equal(conflicts({ answers: [{ ...own[1]!, data: { port: 7005, target: 'x.local' } }] }, own), true);
    assert.equal(conflicts({ answers: [own[2]!] }, own), true);
    assert.equal(conflicts({ answers: [{ ...own[1]!, ttl: 0 }] }, own), false, 'a goodbye');
    assert.equal(conflicts({ answers: [{ name: `other.${SERVICE_DOMAIN}`, type: 'SRV', ttl: 20, data: {} }] }, own), false);
    assert.equal(conflicts({ answers: [{ name: 'stage-abc123.local', type: 'A', ttl: 20, data: '10.0.0.9' }] }, own), false);
  });
});

describe('AnswerQueue (§6 aggregation and one-second rule, §7.4)', () => {
  test('shared answers wait 20-120 ms; answers to several queries in that time go out in one packet', () => {
    const q = new AnswerQueue(() => 0.5);
    q.add(selectAnswers(ptrQuery(), own), 1000);
    assert.equal(q.sendAt, 1070);
    q.add(selectAnswers({ questions: [{ name: fqdn, type: 'SRV' }] }, own), 1030);
    assert.equal(q.sendAt, 1030, 'unique records need no delay');
    assert.equal(q.take(1029), null);
    const out = q.take(1030)!;
    assert.deepEqual(types(out.answers), ['PTR', 'SRV']);
    assert.deepEqual(types(out.additionals), ['TXT', 'A']);
    assert.equal(q.sendAt, null);
  });

  test('a record is not multicast again within a second; a probe may be answered after 250 ms', () => {
    const q = new AnswerQueue(() => 0);
    q.add(selectAnswers(ptrQuery(), own), 0);
    assert.ok(q.take(20));
    q.add(selectAnswers(ptrQuery(), own), 500);
    assert.equal(q.sendAt, null, 'within 1 s: nothing queued');
    q.add(selectAnswers({ questions: [{ name: fqdn, type: 'ANY' }], authorities: [own[1]!] }, own), 300);
    assert.equal(q.sendAt, 300);
    assert.deepEqual(types(q.take(300)!.answers), ['SRV', 'TXT']);
    q.add(selectAnswers(ptrQuery(), own), 1100);
    assert.ok(q.take(1200));
  });

  test('announcements count as multicast for the one-second rule', () => {
    const q = new AnswerQueue(() => 0);
    q.sent(own, 0);
    q.add(selectAnswers(ptrQuery(), own), 900);
    assert.equal(q.sendAt, null);
  });

  test('§7.4: an answer someone else multicasts first, with a TTL at least ours, counts as ours; a lower TTL does not', () => {
    const q = new AnswerQueue(() => 0.5);
    q.add(selectAnswers(ptrQuery(), own), 0);
    q.heard([{ ...own[0]!, ttl: 5 }]);
    assert.notEqual(q.sendAt, null);
    q.heard([{ ...own[0]!, ttl: 20 }]);
    assert.equal(q.sendAt, null);
    assert.equal(q.take(1000), null);
  });

  test('recordKey: same name, type and data are one record, whatever the TTL and the case of the name', () => {
    assert.equal(recordKey(own[0]!), recordKey({ ...own[0]!, name: SERVICE_DOMAIN.toUpperCase() + '.', ttl: 1 }));
    assert.notEqual(recordKey(own[1]!), recordKey({ ...own[1]!, data: { port: 1, target: 'stage-abc123.local' } }));
  });
});

/**
 * MdnsDiscovery (mdns.ts) on a fake clock and a fake segment: its timers (probes,
 * announcements, query back-off, the up check, goodbye confirmation, record expiry) and
 * the PeerTable's liveness tick, driven by test/helpers/clock.ts instead of waiting. No
 * socket: packets go through dns-packet (multicast-dns's own codec) between fake sockets,
 * so what each agent reads is what a real socket would have handed it. The real sockets
 * are tested in network namespaces (mdns-netns.test.ts, as root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { MdnsDiscovery, PeerTable, encodeTxt, wireDiscovery, type MdnsDiscoveryOptions } from '../../src/discovery/index.js';
import { RECORD_TTL_S, EXPIRY_GRACE_MS } from '../../src/discovery/mdns-schedule.js';
import { SERVICE_DOMAIN } from '../../src/discovery/mdns-names.js';
import type { MulticastDns, OutPacket, RemoteInfo } from '../../src/discovery/mdns-socket.js';
import { memoryLogger } from '../../src/log.js';
import { FakeClock } from '../helpers/clock.js';

// multicast-dns's codec: packets are encoded and decoded as on the wire (flush bits, TXT buffers, names).
const dnsPacket = createRequire(import.meta.url)('dns-packet') as { encode(p: unknown): Buffer; decode(b: Buffer): { type: 'query' | 'response' } & Record<string, unknown> };

interface Sent {
  at: number;
  type: 'query' | 'response';
  packet: OutPacket;
}

/** One multicast segment: a packet one socket sends reaches every plugged socket (itself too, with multicast loopback). */
class Segment {
  readonly sockets = new Set<FakeSocket>();
  constructor(readonly clock: FakeClock) {}
}

class FakeSocket extends EventEmitter implements MulticastDns {
  readonly sent: Sent[] = [];
  plugged = true;

  constructor(
    private readonly segment: Segment,
    readonly address: string,
    private readonly loopback = true,
  ) {
    super();
    segment.sockets.add(this);
  }

  query(packet: OutPacket, cb?: (err: Error | null) => void): void {
    this.send({ ...packet, type: 'query' }, cb);
  }

  respond(packet: OutPacket, rinfo?: RemoteInfo | ((err: Error | null) => void), cb?: (err: Error | null) => void): void {
    assert.equal(typeof rinfo === 'object', false, 'no unicast answers in these tests');
    this.send({ ...packet, type: 'response', flags: (packet.flags ?? 0) | 0x400 }, typeof rinfo === 'function' ? rinfo : cb);
  }

  // EventEmitter's own listener type takes any[]: narrowed to the interface's.
  override removeListener(event: string, listener: (...args: never[]) => void): this {
    return super.removeListener(event, listener as (...args: unknown[]) => void);
  }

  destroy(cb?: () => void): void {
    this.segment.sockets.delete(this);
    setImmediate(() => cb?.());
  }

  private send(packet: OutPacket & { type: 'query' | 'response' }, cb?: (err: Error | null) => void): void {
    const bytes = dnsPacket.encode(packet);
    this.sent.push({ at: this.segment.clock.now(), type: packet.type, packet });
    // Delivered on a later turn of the event loop, as a datagram is.
    setImmediate(() => {
      cb?.(null);
      if (!this.plugged) return;
      for (const s of this.segment.sockets) {
        if (!s.plugged || (s === this && !this.loopback)) continue;
        const msg = dnsPacket.decode(bytes);
        s.emit(msg.type, msg, { address: this.address, port: 5353 });
      }
    });
  }
}

const ptrQueries = (s: FakeSocket): number[] =>
  s.sent.filter((p) => p.type === 'query' && p.packet.questions?.some((q) => q.name === SERVICE_DOMAIN && q.type === 'PTR')).map((p) => p.at);

/** An agent's discovery on `segment` (default interface: no NIC lookup), its socket and its warnings with their times. */
function agent(segment: Segment, id: string, o: { loopback?: boolean; rnd?: number } & Partial<MdnsDiscoveryOptions> = {}) {
  const socket = new FakeSocket(segment, `10.0.0.${segment.sockets.size + 1}`, o.loopback ?? true);
  const warnings: Array<{ at: number; msg: string }> = [];
  const { loopback: _l, rnd, ...rest } = o;
  const d = new MdnsDiscovery({
    id,
    name: `agent-${id.slice(0, 4)}`,
    port: 7000,
    txt: encodeTxt({ id, name: `agent-${id.slice(0, 4)}`, version: '0.0.0', protocols: [1], fingerprint: null, inboxes: ['in'] }),
    interfaces: [],
    log: memoryLogger(),
    clock: segment.clock,
    random: () => rnd ?? 0.5,
    openSocket: () => ({ mdns: socket, bound: Promise.resolve() }),
    ...rest,
  });
  d.on('warning', (msg) => warnings.push({ at: segment.clock.now(), msg }));
  return { d, socket, warnings };
}

const ID_A = 'aaaaaaaa11111111aaaaaaaa11111111';
const ID_B = 'bbbbbbbb22222222bbbbbbbb22222222';

test('probes 250 ms apart, announces at 0, 1 and 3 s, then queries backing off 1 s, 2 s … up to requeryMs (each 70 ms after due: §7.3 delay at random 0.5)', async () => {
  const clock = new FakeClock();
  const seg = new Segment(clock);
  const a = agent(seg, ID_A, { requeryMs: 16_000 });
  const t0 = clock.now();
  await a.d.start();
  await clock.advance(60_000);
  const rel = (ts: number[]) => ts.map((t) => t - t0);
  const probes = a.socket.sent.filter((p) => p.type === 'query' && p.packet.questions?.some((q) => q.type === 'ANY')).map((p) => p.at);
  assert.deepEqual(rel(probes), [0, 250, 500], 'three probes, 250 ms apart (§8.1)');
  // Unsolicited announcements: every record of ours, the PTR among them, before any query of ours was answered.
  const announcements = a.socket.sent.filter((p) => p.type === 'response' && (p.packet.answers ?? []).some((r) => r.type === 'SRV') && (p.packet.answers ?? []).some((r) => r.type === 'PTR'));
  for (const at of [750, 1750, 3750]) assert.ok(announcements.some((p) => p.at - t0 === at), `an announcement at ${at} ms (§8.3)`);
  const queries = rel(ptrQueries(a.socket));
  assert.equal(queries[0], 820, 'first query: at the announcement (750 ms) plus the 20-120 ms delay');
  const gaps = queries.slice(1).map((t, i) => t - queries[i]!);
  assert.deepEqual(gaps.slice(0, 6), [1070, 2070, 4070, 8070, 16_070, 16_070], 'back-off doubles from 1 s and stops at requeryMs');
  assert.equal(a.warnings.length, 0, 'our announcement was heard back: no warning');
  await a.d.stop();
  assert.equal(clock.pending, 0, 'stop() leaves no timer armed');
});

test('the up check fires at upTimeoutMs, once: an announcement never heard back (no multicast loopback) is a warning', async () => {
  const clock = new FakeClock();
  const seg = new Segment(clock);
  const a = agent(seg, ID_A, { loopback: false, upTimeoutMs: 2500 });
  const t0 = clock.now();
  await a.d.start();
  await clock.advance(2499);
  assert.equal(a.warnings.length, 0, 'not before upTimeoutMs');
  await clock.advance(1);
  assert.equal(a.warnings.length, 1);
  assert.equal(a.warnings[0]!.at - t0, 2500);
  assert.match(a.warnings[0]!.msg, /never heard our own announcement back/);
  await clock.advance(60_000);
  assert.equal(a.warnings.length, 1, 'said once');
  await a.d.stop();
});

/** A and B on one segment, each feeding its own PeerTable (tick every second on the same clock). */
async function pair() {
  const clock = new FakeClock();
  const seg = new Segment(clock);
  const a = agent(seg, ID_A);
  const b = agent(seg, ID_B, { rnd: 0.3 });
  const table = new PeerTable({ now: () => clock.now() });
  const wiring = wireDiscovery(a.d, table, { clock });
  const changes: Array<{ at: number; state: string }> = [];
  table.on('change', (p) => {
    if (p.id === ID_B) changes.push({ at: clock.now(), state: p.state });
  });
  await a.d.start();
  await b.d.start();
  await clock.advance(5000);
  const stateOfB = () => table.list().find((p) => p.id === ID_B)?.state;
  assert.equal(stateOfB(), 'up', 'A discovered B');
  const stop = async () => {
    wiring.stop();
    await a.d.stop();
    await b.d.stop();
    assert.equal(clock.pending, 0, 'no timer left armed');
  };
  return { clock, a, b, table, changes, stateOfB, stop };
}

test('goodbye: B stops; A reports it gone exactly goodbyeConfirmMs (400) after the goodbye, once its confirming query went unanswered', async () => {
  const p = await pair();
  const { clock } = p;
  const queriesBefore = ptrQueries(p.a.socket).length;
  const byeAt = clock.now();
  await p.b.d.stop(); // goodbye (TTL 0) first, then the socket closes: nobody answers A's query
  assert.equal(clock.now(), byeAt, 'stopping takes no fake time');
  assert.equal(ptrQueries(p.a.socket).length, queriesBefore + 1, 'the goodbye made A ask at once (§10.1)');
  await clock.advance(399);
  assert.equal(p.stateOfB(), 'up', 'not before the confirmation window ends');
  await clock.advance(1);
  assert.equal(p.stateOfB(), 'gone');
  assert.deepEqual(p.changes.filter((c) => c.state === 'gone').map((c) => c.at - byeAt), [400]);
  await p.stop();
});

test('a silent peer (unplugged, no goodbye) expires from the table within its record TTL + EXPIRY_GRACE_MS (+ one tick), not before half its TTL', async () => {
  const p = await pair();
  const { clock } = p;
  let lastHeard = clock.now();
  p.a.socket.on('response', (_m, rinfo: RemoteInfo) => {
    if (rinfo.address === p.b.socket.address) lastHeard = clock.now();
  });
  await clock.advance(20_000); // a while at rest: B answers A's refresh queries
  assert.equal(p.stateOfB(), 'up');
  assert.ok(clock.now() - lastHeard < RECORD_TTL_S * 1000, 'B was heard within its TTL while plugged in');
  p.b.socket.plugged = false; // kill -9 / cable out: nothing more from B, no goodbye
  const unplugged = clock.now();
  const heard = lastHeard;
  await clock.advance(60_000);
  const gone = p.changes.find((c) => c.state === 'gone' && c.at > unplugged);
  assert.ok(gone, 'B went gone');
  assert.ok(gone.at - heard <= RECORD_TTL_S * 1000 + EXPIRY_GRACE_MS + 1000, `gone ${gone.at - heard} ms after B was last heard (TTL ${RECORD_TTL_S} s)`);
  // Until half its TTL has passed, every query of A lists B as a Known-Answer: nothing B failed to answer yet.
  assert.ok(gone.at - heard >= (RECORD_TTL_S * 1000) / 2, `gone only ${gone.at - heard} ms after B was last heard`);
  assert.equal(p.changes.filter((c) => c.at > unplugged).length, 1, 'one change: up -> gone');
  // Plugged in again: B's next announcement or answer makes it up at once.
  p.b.socket.plugged = true;
  await clock.advance(70_000);
  assert.equal(p.stateOfB(), 'up', 'back once B is heard again');
  await p.stop();
});

test('the table\'s own backstop on the wired tick: a peer announced once and then silent (no mDNS expiry either) is gone at the first tick goneAfterMs after it was last heard; hearing it again revives it', async () => {
  const clock = new FakeClock();
  const seg = new Segment(clock);
  const a = agent(seg, ID_A); // never started: no socket, no schedule; its events are emitted by hand
  const table = new PeerTable({ now: () => clock.now(), goneAfterMs: 25_000 });
  const wiring = wireDiscovery(a.d, table, { clock, tickMs: 1000 });
  const states: Array<{ at: number; state: string }> = [];
  table.on('change', (p) => states.push({ at: clock.now(), state: p.state }));
  const t0 = clock.now();
  a.d.emit('announce', { instance: 'stage', id: ID_B, name: 'stage', addresses: ['10.0.0.2'], port: 7000, inboxes: ['in'], version: '1', protocols: [1], fingerprint: null });
  await clock.advance(24_999);
  assert.equal(table.list().find((p) => p.id === ID_B)?.state, 'up', 'not before goneAfterMs');
  await clock.advance(1);
  assert.equal(table.list().find((p) => p.id === ID_B)?.state, 'gone');
  assert.deepEqual(states.map((s) => [s.at - t0, s.state]), [[0, 'up'], [25_000, 'gone']]);
  await clock.advance(3_000);
  a.d.emit('seen', 'stage');
  assert.equal(table.list().find((p) => p.id === ID_B)?.state, 'up', 'heard again: up at once');
  wiring.stop();
  assert.equal(clock.pending, 0, 'the tick stops with the wiring');
});

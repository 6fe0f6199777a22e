/**
 * mDNS adapter: publishes `_tdxfer._tcp` and reports other agents as `announce` / `seen`
 * / `goodbye` events for the PeerTable. It drives multicast-dns 7.2.5 (the socket and the
 * packet codec that bonjour-service is built on) itself, because bonjour-service 1.4.4
 * cannot be made quiet: its responder answers every question at once with every record,
 * ignores Known-Answers, repeats answers within a second and publishes 75-min / 8-h TTLs,
 * and its Browser never expires anything. At 20 agents that was 140 packets/s (issue #19).
 *
 * What goes on the wire, after RFC 6762 (pure parts: mdns-schedule.ts, mdns-answer.ts):
 * - start: probe our instance name 3 times 250 ms apart (§8.1, only when alone on the
 *   segment: several lanes of ours would hear each other), then announce (§8.3) at 0, 1
 *   and 3 s; a peer that restarts, also at a new address, is known again at once;
 * - records with a short TTL (RECORD_TTL_S): peers re-query at 80-95 % of it, listing
 *   what they know (§7.1), so at rest each agent answers about once per TTL and a silent
 *   (kill -9'd, unplugged) agent expires from every cache within the TTL, sooner by
 *   Passive Observation Of Failures (§10.5);
 * - continuous querying backs off 1 s, 2 s … up to `requeryMs` (§5.2), restarts when our
 *   addresses change (we re-announce then too); duplicate questions (§7.3) and answers
 *   (§7.4) are suppressed, answers aggregated and multicast at most once a second (§6);
 * - stop: a goodbye (TTL 0) for every record (§10.1).
 *
 * Silent failure modes handled (measured, /work/shared/netns/README.md):
 * - multicast-dns 'error' events throw without a listener: turned into `warning`s;
 * - `interface` needs `bind: '0.0.0.0'` to receive multicast (mdns-socket.ts); one socket per configured NIC;
 * - a same-name owner answers our probe: we do not come up and warn (no `up` in time);
 * - not hearing our own announcement back (multicast loopback) means nothing leaves the
 *   NIC (no multicast route, firewall);
 * - a goodbye for a name that someone else still owns (a probe loser's teardown) is only
 *   reported when a query gets no answer;
 * - IPv4 only: IPv6 link-local addresses without a zone are useless to peers.
 *
 * Layout: naming is mdns-names.ts, reading responses is PeerBook (mdns-packet.ts), query
 * timing is QueryPlan (mdns-schedule.ts), reading queries and cache refreshes is
 * mdns-query.ts, answering is mdns-answer.ts, all pure; a lane's state and what it means
 * is mdns-lane.ts; the socket is mdns-socket.ts (the only multicast-dns import). This file
 * keeps the lanes and their timers and executes what those decide.
 */
import { EventEmitter } from 'node:events';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { every, systemClock, type Cancel, type Clock } from '../clock.js';
import type { Announcement } from './table.js';
import { SERVICE_DOMAIN, hostNameFor, instanceNameFor, resolveInterfaces, sameName } from './mdns-names.js';
import { PeerBook, type MdnsPacket, type ResourceRecord } from './mdns-packet.js';
import { QUERY_CAP_MS, RECORD_TTL_S } from './mdns-schedule.js';
import { conflicts, goodbyeRecords, selectAnswers, type OwnRecord } from './mdns-answer.js';
import { openMdnsSocket, withTimeout, type OutPacket, type QueryMessage, type RemoteInfo } from './mdns-socket.js';
import { SentQueries, cacheRefreshes, listedInstances } from './mdns-query.js';
import { newLane, refreshOwn, socketProblem, upProblem, type Lane } from './mdns-lane.js';

export { instanceNameFor, hostNameFor, resolveInterfaces } from './mdns-names.js';

export interface MdnsDiscoveryOptions {
  id: string;
  name: string;
  port: number;
  /** TXT record to publish (see txt.ts encodeTxt); must contain our `id`. */
  txt: Record<string, string>;
  /** NIC names or IPv4 addresses to announce/browse on; empty = the default multicast interface. */
  interfaces: string[];
  log: Logger;
  /** Longest interval of continuous querying, ms (default 60000; it backs off 1 s, 2 s … up to this). */
  requeryMs?: number;
  /** TTL of our records, s (default 20): a silent agent expires from its peers' caches within it. */
  recordTtlS?: number;
  /** Time allowed for our announcement to come up and be heard back, ms (default 2500). */
  upTimeoutMs?: number;
  /** A goodbye is confirmed by a query: reported only if nobody answers within this, ms (default 400). */
  goodbyeConfirmMs?: number;
  /** Time allowed for the goodbye and socket close in stop(), ms (default 1000). */
  stopTimeoutMs?: number;
  /** Time and timers of every schedule here (default systemClock; the composition root passes its own). */
  clock?: Clock;
  /** Jitter of delays and query ids (default Math.random). */
  random?: () => number;
  /** Opens a lane's socket (default mdns-socket.ts openMdnsSocket; unit tests give a fake one). */
  openSocket?: typeof openMdnsSocket;
}

export interface MdnsEvents {
  announce: [Announcement];
  seen: [string];
  goodbye: [string];
  /** A peer stopped answering: its records expired (TTL, or §10.5). The PeerTable treats it like a goodbye. */
  expired: [string];
  warning: [string];
}

const PROBE_COUNT = 3;
const PROBE_INTERVAL_MS = 250;
/** §8.3: at least two announcements a second apart; a third covers a lost one. */
const ANNOUNCE_AT_MS = [0, 1000, 3000];
/** A timer this late means our own process stalled (a loaded machine): expiries wait (see schedule). */
const STALL_MS = 1000;

export class MdnsDiscovery extends EventEmitter<MdnsEvents> {
  readonly instanceName: string;
  readonly hostName: string;
  private readonly opts: MdnsDiscoveryOptions;
  private readonly log: Logger;
  private lanes: Lane[] = [];
  private readonly book: PeerBook;
  private readonly warned = new Set<string>();
  /** Goodbyes heard, waiting for the confirming query to stay unanswered. */
  private readonly pendingGoodbyes = new Map<string, Cancel>();
  /** Queries we sent recently, to tell them apart when they loop back. */
  private readonly sentQueries = new SentQueries();
  private readonly timers = new Set<Cancel>();
  private upTimer: Cancel | null = null;
  private addrTimer: Cancel | null = null;
  private readonly clock: Clock;
  private readonly random: () => number;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  /** After our own event loop stalled, nobody expires until this time: the answers may be waiting unread. */
  private noExpiryUntil = 0;

  constructor(opts: MdnsDiscoveryOptions) {
    super();
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.log.child({ component: 'discovery' });
    this.instanceName = instanceNameFor(opts.name, opts.id);
    this.hostName = hostNameFor(opts.name, opts.id);
    this.book = new PeerBook({ id: opts.id, name: opts.name, instanceName: this.instanceName });
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new TdxError('DISCOVERY_STATE', 'MdnsDiscovery.start() called twice; create a new instance');
    const targets: Array<{ label: string; address: string | null }> =
      this.opts.interfaces.length === 0 ? [{ label: 'default', address: null }] : resolveInterfaces(this.opts.interfaces);
    this.state = 'running';
    try {
      for (const t of targets) this.lanes.push(await this.openLane(t.label, t.address));
    } catch (err) {
      await this.stop();
      throw err;
    }
    // Several lanes on one segment would hear each other's probes: probe only when alone.
    const probe = this.lanes.length === 1;
    for (const lane of this.lanes) {
      if (probe) this.probe(lane, 0);
      else this.announce(lane);
      this.schedule(lane);
    }
    this.upTimer = this.clock.after(this.opts.upTimeoutMs ?? 2500, () => this.checkUp());
    // Our addresses are in our A records: a change (DHCP, another network) is announced, and querying restarts.
    this.addrTimer = every(this.clock, 3000, () => this.checkAddresses());
    this.log.info('mDNS discovery started', {
      instance: this.instanceName,
      host: this.hostName,
      port: this.opts.port,
      interfaces: this.lanes.map((l) => l.label).join(', '),
    });
  }

  /** Goodbye (every record with TTL 0) first, then close the sockets; bounded by stopTimeoutMs each. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.upTimer?.();
    this.addrTimer?.();
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    for (const cancel of this.pendingGoodbyes.values()) cancel();
    this.pendingGoodbyes.clear();
    const ms = this.opts.stopTimeoutMs ?? 1000;
    const lanes = this.lanes;
    this.lanes = [];
    await Promise.all(
      lanes.map(async (lane) => {
        lane.timer?.();
        if (lane.up) {
          const bye = goodbyeRecords(lane.own);
          if (!(await withTimeout(ms, (done) => lane.mdns.respond({ answers: bye }, () => done())))) {
            this.log.warn('mDNS goodbye not sent in time; peers will notice our absence by timeout', { interface: lane.label });
          }
        }
        await withTimeout(ms, (done) => lane.mdns.destroy(done));
      }),
    );
  }

  private async openLane(label: string, address: string | null): Promise<Lane> {
    const { mdns, bound } = (this.opts.openSocket ?? openMdnsSocket)(label, address);
    const lane = newLane({ label, address, mdns }, { now: this.clock.now(), self: this.instanceName, capMs: this.opts.requeryMs ?? QUERY_CAP_MS, random: this.random });
    this.refreshOwn(lane);
    // Send errors repeat with every packet: warn once per distinct message, then debug.
    const trouble = (kind: 'error' | 'warning', err: unknown): void => {
      const p = socketProblem(kind, label, err);
      if (this.warned.has(p.key)) this.log.debug(p.line);
      else this.warnOnce(p.key, p.warning);
    };
    mdns.on('error', (err) => trouble('error', err));
    mdns.on('warning', (err) => trouble('warning', err));
    mdns.on('response', (packet, rinfo) => {
      try {
        this.onResponse(lane, packet, rinfo);
      } catch (err) {
        this.warn(`ignored a malformed mDNS response from ${rinfo.address}: ${describeError(err)}`);
      }
    });
    mdns.on('query', (packet, rinfo) => {
      try {
        this.onQuery(lane, packet, rinfo);
      } catch (err) {
        this.log.debug(`ignored a malformed mDNS query from ${rinfo.address}: ${describeError(err)}`);
      }
    });
    await bound;
    return lane;
  }

  /** Rebuilds our records; true if our addresses changed. */
  private refreshOwn(lane: Lane): boolean {
    const { instanceName, hostName } = this;
    return refreshOwn(lane, { instanceName, hostName, port: this.opts.port, txt: this.opts.txt, ttlS: this.opts.recordTtlS ?? RECORD_TTL_S });
  }

  private checkAddresses(): void {
    if (this.state !== 'running') return;
    for (const lane of this.lanes) {
      if (!this.refreshOwn(lane) || !lane.up) continue;
      this.log.info('our addresses changed: announcing them and querying again', { interface: lane.label, addresses: lane.published });
      lane.plan.reset(this.clock.now());
      this.announce(lane);
      this.schedule(lane);
    }
  }

  private later(ms: number, fn: () => void): void {
    const cancel = this.clock.after(ms, () => {
      this.timers.delete(cancel);
      if (this.state === 'running') fn();
    });
    this.timers.add(cancel);
  }

  /** §8.1: ask for our name 3 times, 250 ms apart; an answer from someone else is a conflict. */
  private probe(lane: Lane, n: number): void {
    if (lane.conflict) return;
    if (n === PROBE_COUNT) {
      lane.probing = false;
      this.announce(lane);
      return;
    }
    lane.probing = true;
    const fqdn = `${this.instanceName}.${SERVICE_DOMAIN}`;
    this.sendQuery(lane, {
      questions: [{ name: fqdn, type: 'ANY' }],
      authorities: lane.own.filter((r) => sameName(r.name, fqdn)),
    });
    this.later(PROBE_INTERVAL_MS, () => this.probe(lane, n + 1));
  }

  /** §8.3: every record, unsolicited, at ANNOUNCE_AT_MS. */
  private announce(lane: Lane): void {
    lane.up = true;
    this.later(0, () => this.schedule(lane));
    for (const at of ANNOUNCE_AT_MS) {
      this.later(at, () => {
        lane.mdns.respond({ answers: lane.own });
        lane.answers.sent(lane.own, this.clock.now());
      });
    }
  }

  private sendQuery(lane: Lane, packet: OutPacket): void {
    const p: OutPacket = { ...packet, id: 1 + Math.floor(this.random() * 0xfffe) };
    this.sentQueries.sent(p, this.clock.now());
    lane.mdns.query(p);
  }

  /** Our PTR query, with the peers we know as Known-Answers (§7.1). */
  private sendServiceQuery(lane: Lane, now: number): void {
    const known = lane.plan.knownAnswers(now).map((k) => ({ name: SERVICE_DOMAIN, type: 'PTR', ttl: k.ttlS, data: `${k.instance}.${SERVICE_DOMAIN}` }));
    this.sendQuery(lane, { questions: [{ name: SERVICE_DOMAIN, type: 'PTR' }], answers: known });
  }

  /** Runs what is due on a lane (expiries, a query, waiting answers) and sets its one timer. */
  private schedule(lane: Lane): void {
    if (this.state !== 'running') return;
    lane.timer?.();
    lane.timer = null;
    const now = this.clock.now();
    for (const instance of now < this.noExpiryUntil ? [] : lane.plan.cache.expire(now)) {
      if (this.lanes.some((l) => l.plan.cache.has(instance))) continue;
      if (this.book.forget(instance)) {
        this.log.debug('mDNS record expired (no answer to our queries)', { instance });
        this.emit('expired', instance);
      }
    }
    let wakeAt = Infinity;
    if (lane.up) {
      const q = lane.plan.poll(now);
      if (q.send) {
        this.sendServiceQuery(lane, now);
        lane.plan.sent(now);
        wakeAt = lane.plan.poll(now).wakeAt;
      } else wakeAt = q.wakeAt;
    }
    const out = lane.answers.take(now);
    if (out !== null) lane.mdns.respond({ answers: out.answers, additionals: out.additionals });
    if (lane.answers.sendAt !== null) wakeAt = Math.min(wakeAt, lane.answers.sendAt);
    if (wakeAt === Infinity) return;
    // setImmediate: packets that arrived meanwhile are read first (timers run before I/O), so a
    // late timer does not expire a peer whose answer sits unread in the socket.
    const wake = (): void => {
      const late = this.clock.now() - wakeAt;
      if (late > STALL_MS) {
        this.noExpiryUntil = this.clock.now() + 2 * STALL_MS;
        this.log.debug('our event loop stalled: no mDNS expiry for a moment', { lateMs: Math.round(late) });
      }
      setImmediate(() => this.schedule(lane));
    };
    lane.timer = this.clock.after(Math.max(0, Math.ceil(Math.min(wakeAt, now < this.noExpiryUntil ? this.noExpiryUntil : Infinity) - this.clock.now())), wake);
  }

  private onQuery(lane: Lane, packet: QueryMessage, rinfo: RemoteInfo): void {
    if (this.state !== 'running') return;
    const now = this.clock.now();
    // Our own query, looped back: not someone else's question (§7.3, §10.5), but answered like
    // any other (it never lists us): our records age in our peers' caches with theirs.
    const own = this.sentQueries.isOwn(packet, now);
    const listed = own ? null : listedInstances(packet);
    if (listed !== null) lane.plan.heardQuery(listed, now, this.book.instancesAt(rinfo.address));
    if (lane.up && !lane.conflict && !(own && lane.probing)) {
      const sel = selectAnswers(packet, lane.own);
      if (sel.answers.length > 0) {
        if (rinfo.port !== 5353) {
          // §6.7 legacy unicast (e.g. dig -p 5353 @224.0.0.251): answer the asker directly, TTL <= 10 s.
          const cap = (r: OwnRecord): ResourceRecord => ({ ...r, ttl: Math.min(r.ttl, 10), flush: false } as ResourceRecord);
          lane.mdns.respond({ id: packet.id ?? 0, questions: packet.questions ?? [], answers: sel.answers.map(cap), additionals: sel.additionals.map(cap) }, rinfo);
        } else lane.answers.add(sel, now);
      }
    }
    this.schedule(lane);
  }

  private checkUp(): void {
    for (const lane of this.lanes) {
      const problem = upProblem(lane, { instanceName: this.instanceName, id: this.opts.id }, this.opts.upTimeoutMs ?? 2500);
      if (problem !== null) this.warn(problem);
    }
  }

  /** Feeds the lane's cache and answer queue, then executes what PeerBook (mdns-packet.ts) read from one response. */
  private onResponse(lane: Lane, packet: MdnsPacket, rinfo: RemoteInfo): void {
    const laneIndex = this.lanes.indexOf(lane);
    if (this.state !== 'running' || laneIndex < 0) return;
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    if (lane.probing && conflicts(packet, lane.own)) {
      lane.probing = false;
      lane.conflict = true;
      this.log.debug('mDNS probe: someone else answers for our name', { instance: this.instanceName, from: rinfo.address });
      return;
    }
    lane.answers.heard(records);
    const now = this.clock.now();
    for (const r of cacheRefreshes(records, this.instanceName)) {
      if (r.adds || lane.plan.cache.has(r.instance)) lane.plan.cache.heard(r.instance, r.ttlS, now);
    }
    for (const act of this.book.interpret(laneIndex, packet, rinfo.address)) {
      switch (act.kind) {
        case 'goodbye':
          this.onGoodbye(act.instance);
          break;
        case 'alive':
          this.alive(act.instance);
          break;
        case 'seen':
          this.emit('seen', act.instance);
          break;
        case 'announce':
          this.emit('announce', act.ann);
          break;
        case 'heardSelf':
          lane.heardSelf = true;
          break;
        case 'warn':
          this.warnOnce(act.key, act.msg);
          break;
      }
    }
    this.schedule(lane);
  }

  /** A goodbye: forget the record and ask; reported unless its owner answers (§10.1). */
  private onGoodbye(instance: string): void {
    if (!this.book.has(instance) || this.pendingGoodbyes.has(instance)) return;
    const cancel = this.clock.after(this.opts.goodbyeConfirmMs ?? 400, () => {
      this.pendingGoodbyes.delete(instance);
      if (this.state === 'running' && this.book.forget(instance)) this.emit('goodbye', instance);
    });
    this.pendingGoodbyes.set(instance, cancel);
    const now = this.clock.now();
    for (const lane of this.lanes) {
      lane.plan.cache.forget(instance);
      if (lane.up) this.sendServiceQuery(lane, now);
    }
  }

  /** Any answer for an instance cancels a pending goodbye: someone still owns the name. */
  private alive(instance: string): void {
    const cancel = this.pendingGoodbyes.get(instance);
    if (cancel === undefined) return;
    cancel();
    this.pendingGoodbyes.delete(instance);
    this.log.debug('mDNS goodbye contradicted by a later answer (name conflict elsewhere?)', { instance });
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(msg);
  }

  private warn(msg: string): void {
    this.log.warn(msg);
    if (this.listenerCount('warning') > 0) this.emit('warning', msg);
  }
}

/**
 * PURE: the responder side of the mDNS adapter (mdns.ts), after RFC 6762 / 6763. Our own
 * records, which of them answer a query, and when answers go out. No socket, no timer:
 * the clock and the randomness are injected.
 *
 * - Answers (§6, RFC 6763 §12.1): a PTR question for `_tdxfer._tcp.local` is answered with
 *   our PTR, plus SRV, TXT and A as additionals, so that one packet is a whole announcement.
 * - Known-Answer suppression (§7.1): a record the query lists with at least half its TTL
 *   left is not sent.
 * - Aggregation and the one-second rule (§6): answers to queries heard within the same
 *   20-120 ms (shared records) go out in one packet, and a record is not multicast again
 *   within a second (250 ms when defending our name against a probe).
 * - Duplicate-answer suppression (§7.4): an answer that someone else multicasts while ours
 *   waits, with a TTL at least ours, counts as ours.
 */
import type { ResourceRecord } from './mdns-packet.js';
import { SERVICE_DOMAIN, sameName } from './mdns-names.js';
import { ANSWER_HOLDOFF_MS, shortDelay, type Random } from './mdns-schedule.js';

/** DNS-SD service type enumeration (RFC 6763 §9): lets `avahi-browse -a` list our type. */
export const SERVICES_ENUM = '_services._dns-sd._udp.local';
/** §6: the one-second rule is 250 ms for answers that defend our name against a probe. */
const PROBE_HOLDOFF_MS = 250;

export interface OwnRecord extends ResourceRecord {
  ttl: number;
  flush?: boolean;
}

export interface Question {
  name: string;
  type: string;
}

export interface QueryPacket {
  questions?: Question[];
  answers?: ResourceRecord[];
  authorities?: ResourceRecord[];
}

export interface OwnInfo {
  instanceName: string;
  hostName: string;
  port: number;
  txt: Record<string, string>;
  /** IPv4 addresses to publish as A records (may be empty: peers then use the packet's source). */
  addresses: string[];
  ttlS: number;
}

/** Our records: PTR, SRV, TXT, A (unique ones with the cache-flush bit) and the type enumeration PTR. */
export function ownRecords(o: OwnInfo): OwnRecord[] {
  const fqdn = `${o.instanceName}.${SERVICE_DOMAIN}`;
  const ttl = o.ttlS;
  return [
    { name: SERVICE_DOMAIN, type: 'PTR', ttl, data: fqdn },
    { name: fqdn, type: 'SRV', ttl, flush: true, data: { priority: 0, weight: 0, port: o.port, target: o.hostName } },
    { name: fqdn, type: 'TXT', ttl, flush: true, data: Object.entries(o.txt).map(([k, v]) => Buffer.from(`${k}=${v}`, 'utf8')) },
    ...o.addresses.map((a): OwnRecord => ({ name: o.hostName, type: 'A', ttl, flush: true, data: a })),
    { name: SERVICES_ENUM, type: 'PTR', ttl, data: SERVICE_DOMAIN },
  ];
}

const lowerName = (s: string): string => s.toLowerCase().replace(/\.$/, '');

function dataKey(type: string, data: unknown): string {
  if (typeof data === 'string') return type === 'PTR' ? lowerName(data) : data;
  if (Buffer.isBuffer(data)) return data.toString('hex');
  if (Array.isArray(data)) return data.map((d) => (Buffer.isBuffer(d) ? d.toString('hex') : Buffer.from(String(d)).toString('hex'))).join('.');
  if (data !== null && typeof data === 'object') {
    const srv = data as { port?: unknown; target?: unknown };
    if (type === 'SRV') return `${String(srv.port)}@${lowerName(String(srv.target ?? ''))}`;
    return JSON.stringify(data);
  }
  return String(data);
}

/** Identity of a record: name, type and data (not the TTL). */
export function recordKey(r: ResourceRecord): string {
  return `${lowerName(r.name)}|${r.type}|${dataKey(r.type, r.data)}`;
}

export interface Selection {
  answers: OwnRecord[];
  additionals: OwnRecord[];
  /** A shared record (PTR) is among the answers: it waits 20-120 ms (§6). */
  shared: boolean;
  /** The query is a probe (it carries proposed records): answer at once. */
  probe: boolean;
}

/** Which of our records answer `query`, after Known-Answer suppression (§7.1). */
export function selectAnswers(query: QueryPacket, own: readonly OwnRecord[]): Selection {
  const known = new Map<string, number>();
  for (const k of query.answers ?? []) {
    const key = recordKey(k);
    known.set(key, Math.max(known.get(key) ?? 0, k.ttl ?? 0));
  }
  const suppressed = (r: OwnRecord): boolean => (known.get(recordKey(r)) ?? -1) >= r.ttl / 2;
  const answers: OwnRecord[] = [];
  for (const q of query.questions ?? []) {
    for (const r of own) {
      if (!sameName(q.name, r.name) || (q.type !== r.type && q.type !== 'ANY')) continue;
      if (!answers.includes(r) && !suppressed(r)) answers.push(r);
    }
  }
  const additionals: OwnRecord[] = [];
  const add = (r: OwnRecord): void => {
    if (!answers.includes(r) && !additionals.includes(r) && !suppressed(r)) additionals.push(r);
  };
  for (const a of answers) {
    if (a.type === 'PTR' && sameName(a.name, SERVICE_DOMAIN)) {
      for (const r of own) if (typeof a.data === 'string' && sameName(r.name, a.data) && (r.type === 'SRV' || r.type === 'TXT')) add(r);
    }
    if (a.type === 'PTR' || a.type === 'SRV') {
      for (const r of own) if (r.type === 'A') add(r);
    }
  }
  return { answers, additionals, shared: answers.some((a) => a.type === 'PTR'), probe: (query.authorities ?? []).length > 0 };
}

/**
 * §10.1 goodbye: every record of ours with TTL 0, except the type enumeration PTR (it is
 * shared with every other agent, which still has the type).
 */
export function goodbyeRecords(own: readonly OwnRecord[]): OwnRecord[] {
  return own.filter((r) => !sameName(r.name, SERVICES_ENUM)).map((r) => ({ ...r, ttl: 0 }));
}

/**
 * While we probe (§8.1), a response with a record of our instance name (SRV or TXT, TTL > 0)
 * means someone else already owns it: we have not answered anything yet, so it is not us.
 * Identical data counts too: it is another process with our id (a copied data folder).
 */
export function conflicts(response: { answers?: ResourceRecord[]; additionals?: ResourceRecord[] }, own: readonly OwnRecord[]): boolean {
  const names = new Set(own.filter((r) => r.type === 'SRV' || r.type === 'TXT').map((r) => lowerName(r.name)));
  return [...(response.answers ?? []), ...(response.additionals ?? [])].some(
    (r) => (r.ttl ?? 0) > 0 && (r.type === 'SRV' || r.type === 'TXT') && names.has(lowerName(r.name)),
  );
}

/** Answers waiting to be multicast, with the one-second rule and §7.4. */
export class AnswerQueue {
  private readonly answers = new Map<string, OwnRecord>();
  private readonly additionals = new Map<string, OwnRecord>();
  private readonly lastSent = new Map<string, number>();
  /** When the waiting answers go out (null: nothing waits). */
  sendAt: number | null = null;

  constructor(private readonly random: Random) {}

  /** Queue a selection heard at `now`. */
  add(sel: Selection, now: number): void {
    const holdoff = sel.probe ? PROBE_HOLDOFF_MS : ANSWER_HOLDOFF_MS;
    const fresh = (r: OwnRecord): boolean => now - (this.lastSent.get(recordKey(r)) ?? -Infinity) >= holdoff;
    let added = false;
    for (const r of sel.answers) {
      if (!fresh(r)) continue;
      this.answers.set(recordKey(r), r);
      this.additionals.delete(recordKey(r));
      added = true;
    }
    if (!added) return;
    for (const r of sel.additionals) if (!this.answers.has(recordKey(r)) && fresh(r)) this.additionals.set(recordKey(r), r);
    const at = sel.shared && !sel.probe ? now + shortDelay(this.random) : now;
    this.sendAt = this.sendAt === null ? at : Math.min(this.sendAt, at);
  }

  /** §7.4: records someone else multicast (a response heard); those we were about to send with no more TTL count as sent. */
  heard(records: readonly ResourceRecord[]): void {
    for (const r of records) {
      const key = recordKey(r);
      const ours = this.answers.get(key);
      if (ours !== undefined && (r.ttl ?? 0) >= ours.ttl) this.answers.delete(key);
    }
    if (this.answers.size === 0) {
      this.additionals.clear();
      this.sendAt = null;
    }
  }

  /** The packet to send now, if one is due; its records count as multicast at `now`. */
  take(now: number): { answers: OwnRecord[]; additionals: OwnRecord[] } | null {
    if (this.sendAt === null || now < this.sendAt) return null;
    const out = { answers: [...this.answers.values()], additionals: [...this.additionals.values()] };
    this.answers.clear();
    this.additionals.clear();
    this.sendAt = null;
    this.sent([...out.answers, ...out.additionals], now);
    return out.answers.length > 0 ? out : null;
  }

  /** Records multicast at `now` by other means (an announcement). */
  sent(records: readonly OwnRecord[], now: number): void {
    for (const r of records) this.lastSent.set(recordKey(r), now);
  }
}

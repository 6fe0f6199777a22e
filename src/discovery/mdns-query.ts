/**
 * PURE: reading mDNS traffic for the adapter in mdns.ts, the parts that feed our query
 * schedule (mdns-schedule.ts QueryPlan): recognising our own queries when multicast
 * loopback brings them back, the Known-Answer list a peer's PTR query carries (§7.1,
 * for duplicate-question suppression §7.3), and which peers' records a response
 * refreshes in our cache. No socket, no timer: the clock is passed in.
 */
import type { ResourceRecord } from './mdns-packet.js';
import type { QueryPacket } from './mdns-answer.js';
import { SERVICE_DOMAIN, instanceOf, sameName } from './mdns-names.js';

/** Our own queries come back (multicast loopback): recognised by id and content for this long. */
export const OWN_QUERY_MEMORY_MS = 2000;

/** A query as sent or heard: its id and what it asks and lists. */
export interface QueryLike extends QueryPacket {
  id?: number;
}

/** Identity of a query, to recognise our own when it loops back (names compare case-insensitively). */
export function queryKey(p: QueryLike): string {
  const q = (p.questions ?? []).map((x) => `${x.name.toLowerCase()}/${x.type}`).join(',');
  const a = (p.answers ?? []).map((x) => `${String(x.data).toLowerCase()}`).sort().join(',');
  return `${p.id ?? 0}:${q}:${a}`;
}

/** The queries we sent recently, to tell our own looped-back query from someone else's. */
export class SentQueries {
  readonly #sent = new Map<string, number>();

  constructor(private readonly memoryMs = OWN_QUERY_MEMORY_MS) {}

  /** Remembers a query we are sending now (and forgets the ones older than the memory). */
  sent(p: QueryLike, now: number): void {
    for (const [k, t] of this.#sent) if (now - t > this.memoryMs) this.#sent.delete(k);
    this.#sent.set(queryKey(p), now);
  }

  /** True if `p` is one we sent within the memory. */
  isOwn(p: QueryLike, now: number): boolean {
    const t = this.#sent.get(queryKey(p));
    return t !== undefined && now - t <= this.memoryMs;
  }

  get size(): number {
    return this.#sent.size;
  }
}

/**
 * A query for our service type (PTR `_tdxfer._tcp.local`): the instances it lists as
 * Known-Answers with their TTLs (s). null when the query does not ask for our type.
 */
export function listedInstances(p: QueryPacket): Map<string, number> | null {
  if (!(p.questions ?? []).some((q) => q.type === 'PTR' && sameName(q.name, SERVICE_DOMAIN))) return null;
  const listed = new Map<string, number>();
  for (const k of p.answers ?? []) {
    const instance = k.type === 'PTR' && typeof k.data === 'string' ? instanceOf(k.data) : null;
    if (instance !== null) listed.set(instance, k.ttl ?? 0);
  }
  return listed;
}

/** A peer's record heard in a response: refreshes our cache entry for `instance` for `ttlS`. */
export interface Refresh {
  instance: string;
  ttlS: number;
  /** A PTR (the service pointer) adds the peer to the cache; other records only refresh a cached one. */
  adds: boolean;
}

/**
 * The peer records in a response that refresh our cache: PTRs of our service type and
 * SRVs of its instances, not goodbyes (TTL 0) and not our own instance.
 */
export function cacheRefreshes(records: readonly ResourceRecord[], self: string): Refresh[] {
  const out: Refresh[] = [];
  for (const r of records) {
    const ttlS = r.ttl ?? 0;
    if (ttlS === 0) continue;
    const instance =
      r.type === 'PTR' && sameName(r.name, SERVICE_DOMAIN) && typeof r.data === 'string' ? instanceOf(r.data) : r.type === 'SRV' ? instanceOf(r.name) : null;
    if (instance === null || instance === self) continue;
    out.push({ instance, ttlS, adds: r.type === 'PTR' });
  }
  return out;
}

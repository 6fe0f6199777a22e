/**
 * PURE: when the mDNS adapter (mdns.ts) sends a query, and what it puts in it, after
 * RFC 6762. No socket and no timer: the clock and the randomness are injected, so every
 * interval and every suppression decision is unit-tested.
 *
 * - Continuous querying backs off (§5.2): first query 20-120 ms after start, then 1 s,
 *   2 s, 4 s … up to QUERY_CAP_MS, each interval jittered; reset() starts over (a change
 *   of our own addresses: we may be on another network).
 * - Cache maintenance (§5.2): a peer's records are refreshed at 80 %, 85 %, 90 % and 95 %
 *   of their TTL (plus 0-3 % random, so that peers holding the same record do not ask in
 *   step); a record not refreshed by 100 % has expired: the peer is gone.
 * - Known-Answer suppression (§7.1): a query lists every peer whose record has more than
 *   half its TTL left; those peers do not answer it. At rest only the peers near the end
 *   of their TTL answer, and each answer (multicast) refreshes every agent's cache at once.
 * - Duplicate-question suppression (§7.3): a query is sent 20-120 ms after it falls due;
 *   if meanwhile another host asks the same question with a Known-Answer list that holds
 *   nothing ours would not, ours counts as sent.
 * - Passive Observation Of Failures (§10.5): queries (anyone's) that a cached peer should
 *   have answered, two or more, with no answer from it within POOF_WINDOW_MS of the first:
 *   the record is flushed, the peer is gone before its TTL runs out.
 */

export type Random = () => number;

/** TTL of every record we publish, s. Short so that a silent peer expires in time (README "Discovery traffic"). */
export const RECORD_TTL_S = 24;
/** First interval of continuous querying (§5.2: at least 1 s). */
export const QUERY_FIRST_MS = 1000;
/** Longest interval of continuous querying. */
export const QUERY_CAP_MS = 60_000;
/** Fractions of a record's TTL at which it is re-queried (§5.2). */
export const REFRESH_STEPS = [0.8, 0.85, 0.9, 0.95] as const;
/** Random extra per refresh step, as a fraction of the TTL (§5.2 says 2 %; a little more spreads 50 agents). */
export const REFRESH_JITTER = 0.03;
/** §10.5: a record is flushed when no answer came this long after the first of 2+ unanswered queries. */
export const POOF_WINDOW_MS = 10_000;
/** §6: a responder multicasts a record at most once a second; queries within this of an answer prove nothing. */
export const ANSWER_HOLDOFF_MS = 1000;
/** Time a peer gets to answer our last query before its expired record is dropped (a loaded peer answers late). */
export const EXPIRY_GRACE_MS = 2000;

/** `ms` scaled by a random factor in [1 - frac, 1 + frac). */
export function jitter(ms: number, frac: number, random: Random): number {
  return ms * (1 - frac + 2 * frac * random());
}

/** A delay of 20-120 ms (§5.2 first query, §6 shared answers, §7.3 question suppression). */
export function shortDelay(random: Random): number {
  return 20 + 100 * random();
}

/** Continuous querying with exponential backoff up to a cap (§5.2). */
export class QueryBackoff {
  private intervalMs: number;
  /** When the next continuous query falls due. */
  nextAt: number;
  /** The interval that led to nextAt (0 before the first query). */
  lastIntervalMs = 0;

  constructor(
    now: number,
    private readonly random: Random,
    private readonly firstMs = QUERY_FIRST_MS,
    private readonly capMs = QUERY_CAP_MS,
  ) {
    this.intervalMs = firstMs;
    this.nextAt = now;
  }

  /** The interval that the next sent() will use (before jitter). */
  get interval(): number {
    return this.intervalMs;
  }

  due(now: number): boolean {
    return now >= this.nextAt;
  }

  /** A query went out (or an equivalent one was heard): the next is one interval away, and the interval doubles. */
  sent(now: number): void {
    this.lastIntervalMs = jitter(this.intervalMs, 0.1, this.random);
    this.nextAt = now + this.lastIntervalMs;
    this.intervalMs = Math.min(this.capMs, this.intervalMs * 2);
  }

  /** Start over: a query now (QueryPlan holds it 20-120 ms), then 1 s, 2 s … */
  reset(now: number): void {
    this.intervalMs = this.firstMs;
    this.lastIntervalMs = 0;
    this.nextAt = now;
  }
}

interface Entry {
  ttlMs: number;
  heardAt: number;
  /** Index into REFRESH_STEPS of the next refresh query. */
  step: number;
  /** When that refresh falls due (Infinity after the last step). */
  dueAt: number;
  /** §10.5: first and last unanswered query that this record should have answered, and how many. */
  poofFirst: number | null;
  poofLast: number;
  poofCount: number;
}

/** A Known-Answer: a peer instance and the TTL its record has left, whole seconds. */
export interface KnownAnswer {
  instance: string;
  ttlS: number;
}

/** What we hold about peers' records (their PTR, refreshed by any answer from them). */
export class PeerCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly random: Random) {}

  has(instance: string): boolean {
    return this.entries.has(instance);
  }

  instances(): string[] {
    return [...this.entries.keys()];
  }

  /** An answer from `instance` with TTL `ttlS` (> 0). True if the instance was not cached. */
  heard(instance: string, ttlS: number, now: number): boolean {
    const isNew = !this.entries.has(instance);
    const ttlMs = Math.max(1, ttlS) * 1000;
    const e: Entry = { ttlMs, heardAt: now, step: 0, dueAt: 0, poofFirst: null, poofLast: 0, poofCount: 0 };
    e.dueAt = this.stepAt(e, 0);
    this.entries.set(instance, e);
    return isNew;
  }

  forget(instance: string): boolean {
    return this.entries.delete(instance);
  }

  /** §7.1: the instances whose record has more than half its TTL left, with the TTL left. */
  knownAnswers(now: number): KnownAnswer[] {
    const out: KnownAnswer[] = [];
    for (const [instance, e] of this.entries) {
      const left = e.heardAt + e.ttlMs - now;
      if (left > e.ttlMs / 2) out.push({ instance, ttlS: Math.floor(left / 1000) });
    }
    return out;
  }

  /** A refresh query falls due for some record. */
  refreshDue(now: number): boolean {
    for (const e of this.entries.values()) if (now >= e.dueAt) return true;
    return false;
  }

  /** A query went out (or an equivalent one was heard): records due move to their next step. */
  refreshed(now: number): void {
    for (const e of this.entries.values()) {
      while (now >= e.dueAt) {
        e.step++;
        e.dueAt = this.stepAt(e, e.step);
      }
    }
  }

  /**
   * §10.5: someone asked for the service; `listed` is its Known-Answer list (instance ->
   * TTL s), `askers` the instances of the host that asked (it does not answer itself).
   * Every other cached record not listed with at least half its TTL should be answered.
   */
  queried(listed: ReadonlyMap<string, number>, now: number, askers: readonly string[] = []): void {
    for (const [instance, e] of this.entries) {
      const ttl = listed.get(instance);
      if ((ttl !== undefined && ttl * 1000 >= e.ttlMs / 2) || askers.includes(instance)) continue;
      if (now - e.heardAt < ANSWER_HOLDOFF_MS) continue; // it just answered: it may not repeat within 1 s
      if (e.poofFirst === null) e.poofFirst = now;
      e.poofLast = now;
      e.poofCount++;
    }
  }

  /**
   * §7.3 per record: a query that does not list a record (with half its TTL) makes its owner
   * answer, and the answer refreshes us too; our own refresh of it, due now or within the
   * next step (5 % of the TTL), counts as done. `askers` do not answer their own query.
   */
  covered(listed: ReadonlyMap<string, number>, now: number, askers: readonly string[] = []): void {
    for (const [instance, e] of this.entries) {
      const ttl = listed.get(instance);
      if ((ttl !== undefined && ttl * 1000 >= e.ttlMs / 2) || askers.includes(instance)) continue;
      if (e.dueAt > now + e.ttlMs * 0.05) continue;
      do {
        e.step++;
        e.dueAt = this.stepAt(e, e.step);
      } while (now >= e.dueAt);
    }
  }

  /**
   * Records whose TTL ran out, or that §10.5 flushes (2+ unanswered queries, the first
   * POOF_WINDOW_MS ago, the last ANSWER_HOLDOFF_MS ago: time enough to answer it): removed
   * from the cache and returned. A record expires only after a query it should have
   * answered went unanswered for EXPIRY_GRACE_MS: if our own refresh queries came too
   * late (a stalled event loop), one is due now instead, and the record waits for it.
   */
  expire(now: number): string[] {
    const out: string[] = [];
    for (const [instance, e] of this.entries) {
      if (now >= this.poofAt(e)) out.push(instance);
      else if (now >= e.heardAt + e.ttlMs) {
        if (e.poofCount >= 1 && now - e.poofLast >= EXPIRY_GRACE_MS) out.push(instance);
        else if (e.poofCount === 0 || e.poofLast < e.heardAt + e.ttlMs - EXPIRY_GRACE_MS) e.dueAt = Math.min(e.dueAt, now);
      }
    }
    for (const i of out) this.entries.delete(i);
    return out;
  }

  /** The earliest time anything here falls due (a refresh, an expiry, a §10.5 flush). */
  nextAt(): number {
    let t = Infinity;
    for (const e of this.entries.values()) {
      const ttlEnd = e.heardAt + e.ttlMs;
      t = Math.min(t, e.dueAt, this.poofAt(e), e.poofCount >= 1 ? Math.max(ttlEnd, e.poofLast + EXPIRY_GRACE_MS) : ttlEnd);
    }
    return t;
  }

  private poofAt(e: Entry): number {
    if (e.poofFirst === null || e.poofCount < 2) return Infinity;
    return Math.max(e.poofFirst + POOF_WINDOW_MS, e.poofLast + ANSWER_HOLDOFF_MS);
  }

  private stepAt(e: Entry, step: number): number {
    const frac = REFRESH_STEPS[step];
    if (frac === undefined) return Infinity;
    return e.heardAt + e.ttlMs * (frac + REFRESH_JITTER * this.random());
  }
}

export interface QueryPlanOptions {
  now: number;
  /** Our own instance: never in our Known-Answers, but known to us (§7.3 compares lists with it). */
  self?: string;
  random?: Random;
  firstMs?: number;
  capMs?: number;
}

/**
 * The querier of one lane: continuous querying (QueryBackoff) plus cache maintenance
 * (PeerCache), with the 20-120 ms hold before a query that lets §7.3 suppress it.
 */
export class QueryPlan {
  readonly cache: PeerCache;
  readonly backoff: QueryBackoff;
  private readonly random: Random;
  private readonly self: string | null;
  /** A query is due and will go out at this time, unless an equivalent one is heard first. */
  private pendingAt: number | null = null;

  constructor(opts: QueryPlanOptions) {
    this.random = opts.random ?? Math.random;
    this.self = opts.self ?? null;
    this.cache = new PeerCache(this.random);
    this.backoff = new QueryBackoff(opts.now, this.random, opts.firstMs, opts.capMs);
  }

  /** Either a query is due now (then build it with knownAnswers() and call sent()), or when to look again. */
  poll(now: number): { send: boolean; wakeAt: number } {
    if (this.pendingAt !== null && now >= this.pendingAt) {
      this.pendingAt = null;
      return { send: true, wakeAt: now };
    }
    if (this.pendingAt === null && (this.backoff.due(now) || this.cache.refreshDue(now))) this.pendingAt = now + shortDelay(this.random);
    if (this.pendingAt !== null) return { send: false, wakeAt: this.pendingAt };
    return { send: false, wakeAt: Math.min(this.backoff.nextAt, this.cache.nextAt()) };
  }

  knownAnswers(now: number): KnownAnswer[] {
    return this.cache.knownAnswers(now);
  }

  /** Our query went out. */
  sent(now: number): void {
    this.pendingAt = null;
    if (this.backoff.due(now)) this.backoff.sent(now);
    this.cache.refreshed(now);
    this.cache.queried(new Map(this.cache.knownAnswers(now).map((k) => [k.instance, k.ttlS])), now);
  }

  /**
   * Another host (whose instances are `askers`) asked for the service with this
   * Known-Answer list; everyone it does not list answers it. §10.5 bookkeeping, and §7.3:
   * - our refreshes of the records it does not list count as done (PeerCache.covered);
   * - if its list holds nothing ours would not (ourselves aside: nobody lists itself), it
   *   also asks what our continuous query would: ours counts as sent if it is due or in
   *   the second half of its interval.
   * A query of ours waiting to go out is dropped when nothing is due any more.
   * Returns true when it suppressed something of ours.
   */
  heardQuery(listed: ReadonlyMap<string, number>, now: number, askers: readonly string[] = []): boolean {
    this.cache.queried(listed, now, askers);
    const ours = new Set(this.cache.knownAnswers(now).map((k) => k.instance));
    if (this.self !== null) ours.add(this.self);
    const wasDue = this.cache.refreshDue(now);
    this.cache.covered(listed, now, askers);
    let suppressed = wasDue && !this.cache.refreshDue(now);
    if ([...listed.keys()].every((i) => ours.has(i)) && this.backoff.nextAt - now <= this.backoff.lastIntervalMs / 2) {
      this.backoff.sent(now);
      suppressed = true;
    }
    if (this.pendingAt !== null && !this.backoff.due(now) && !this.cache.refreshDue(now)) {
      this.pendingAt = null;
      suppressed = true;
    }
    return suppressed;
  }

  /** Our addresses changed (another network?): query again from 1 s (§5.2, §8.3). */
  reset(now: number): void {
    this.backoff.reset(now);
  }
}

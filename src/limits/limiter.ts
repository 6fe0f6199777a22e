/**
 * PURE bandwidth rules: token buckets, the agent-wide + per-peer hierarchy with fair
 * sharing between peers, and a rate meter. No timers and no clock of its own: every
 * call takes `now` (milliseconds), so tests drive time by hand. pacer.ts is the thin
 * adapter that owns the timer and the promises.
 *
 * Model: a bucket refills at `rate` bytes/s up to `burst` bytes and may go into debt:
 * a request is granted while the bucket is not in debt (tokens >= 0) and then takes all
 * its bytes. So requests of any size go through, the long-run rate is exactly `rate`,
 * and the most that can leave at once is burst + one request. Senders ask in slices of
 * `sliceBytes()` (1/40 s of the rate), with a burst of 1/20 s: over any 100 ms window
 * at most 0.175 s worth of the rate goes out (1.75x), and a lowered rate applies to the
 * next slice.
 *
 * Invariants:
 * - rate 0 means unlimited: such a bucket never makes anyone wait and holds no debt;
 * - a request never jumps the queue: while anyone waits, new requests wait too;
 * - between peers waiting on the agent-wide bucket, the one served the fewest bytes
 *   goes first (byte-fair, whatever sizes they ask for); a peer coming back from idle
 *   starts level with the others instead of spending saved-up credit;
 * - within one peer, requests go in arrival order.
 */

/** Slices are this fraction of a second's worth of the rate. */
const SLICE_SECONDS = 1 / 40;
/** A full bucket holds this many seconds' worth of the rate. */
const BURST_SECONDS = 1 / 20;
/** Smallest slice: below this, per-frame overhead dominates. */
const MIN_SLICE_BYTES = 1024;

export class TokenBucket {
  #rate: number;
  #tokens: number;
  #last: number;

  constructor(rate: number, now: number) {
    this.#rate = rate;
    this.#tokens = this.burst;
    this.#last = now;
  }

  get rate(): number {
    return this.#rate;
  }

  get burst(): number {
    return this.#rate === 0 ? 0 : Math.max(sliceFor(this.#rate), this.#rate * BURST_SECONDS);
  }

  /** Tokens now (negative: debt). */
  tokens(now: number): number {
    this.refill(now);
    return this.#tokens;
  }

  setRate(rate: number, now: number): void {
    this.refill(now);
    this.#rate = rate;
    // Lowering never lets an old, larger bucket burst at the new rate; a debt is kept
    // (the bytes did go), but no longer than one second's worth of the new rate.
    this.#tokens = rate === 0 ? 0 : Math.max(-rate, Math.min(this.#tokens, this.burst));
  }

  ready(now: number): boolean {
    return this.#rate === 0 || this.tokens(now) >= 0;
  }

  /** Milliseconds until ready (0 when ready now). */
  msUntilReady(now: number): number {
    if (this.ready(now)) return 0;
    return Math.max(1, Math.ceil((-this.#tokens * 1000) / this.#rate));
  }

  take(bytes: number, now: number): void {
    if (this.#rate === 0) return;
    this.refill(now);
    this.#tokens -= bytes;
  }

  private refill(now: number): void {
    const dt = now - this.#last;
    this.#last = now;
    if (this.#rate === 0 || dt <= 0) return;
    this.#tokens = Math.min(this.burst, this.#tokens + (dt * this.#rate) / 1000);
  }
}

/** Bytes per request for a rate (0: unlimited, send whole chunks). */
export function sliceFor(rate: number): number {
  return rate === 0 ? 0 : Math.max(MIN_SLICE_BYTES, Math.floor(rate * SLICE_SECONDS));
}

interface PeerState {
  bucket: TokenBucket;
  /** FIFO of waiting requests: [ticket, bytes]. */
  queue: Array<[number, number]>;
  /** Bytes granted while competing with others (fair share bookkeeping). */
  served: number;
  /** When it last asked (a peer that asked within ACTIVE_MS still counts for fairness). */
  lastAsk: number;
}

/**
 * A sender asks for its next slice only once the previous one went, so between two asks
 * it is not waiting; for this long after an ask it still counts as competing, or a peer
 * asking for big slices would take every turn the others are between two asks.
 */
const ACTIVE_MS = 100;

export interface PollResult {
  /** Tickets that may go now, in grant order. */
  granted: number[];
  /** Milliseconds until the next poll could grant something; null when nobody waits. */
  waitMs: number | null;
}

/** Agent-wide bucket over per-peer buckets, with byte-fair sharing between peers. */
export class Limiter {
  readonly agent: TokenBucket;
  readonly #peers = new Map<string, PeerState>();
  #nextTicket = 1;
  #waiting = 0;

  constructor(agentRate: number, now: number) {
    this.agent = new TokenBucket(agentRate, now);
  }

  setAgentRate(rate: number, now: number): void {
    this.agent.setRate(rate, now);
  }

  setPeerRate(peer: string, rate: number, now: number): void {
    this.peer(peer, now).bucket.setRate(rate, now);
  }

  peerRate(peer: string): number {
    return this.#peers.get(peer)?.bucket.rate ?? 0;
  }

  /** Peers with a rate of their own (for status). */
  peerRates(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, p] of this.#peers) if (p.bucket.rate > 0) out.set(name, p.bucket.rate);
    return out;
  }

  /** True when a request for this peer can be paced at all (some rate applies). */
  limited(peer: string): boolean {
    return this.agent.rate > 0 || (this.#peers.get(peer)?.bucket.rate ?? 0) > 0;
  }

  /** The size senders to this peer should ask for (0: unlimited, no slicing). */
  sliceBytes(peer: string): number {
    const a = this.agent.rate;
    const p = this.#peers.get(peer)?.bucket.rate ?? 0;
    if (a === 0) return sliceFor(p);
    if (p === 0) return sliceFor(a);
    return sliceFor(Math.min(a, p));
  }

  /**
   * Take `bytes` for `peer` at once if allowed and nobody waits (returns 0), else queue
   * the request and return its ticket (> 0); poll() grants it later.
   */
  request(peer: string, bytes: number, now: number): number {
    const p = this.peer(peer, now);
    const wasIdle = !this.competing(p, now);
    p.lastAsk = now;
    if (wasIdle) {
      // Back from idle: level with the least-served peer that waits, no saved-up credit.
      let min = Infinity;
      for (const q of this.#peers.values()) if (q !== p && this.competing(q, now)) min = Math.min(min, q.served);
      p.served = min === Infinity ? 0 : Math.max(p.served, min);
    }
    if (this.#waiting === 0 && p.bucket.ready(now) && this.agent.ready(now)) {
      p.bucket.take(bytes, now);
      this.agent.take(bytes, now);
      p.served += bytes;
      return 0;
    }
    const ticket = this.#nextTicket++;
    p.queue.push([ticket, bytes]);
    this.#waiting++;
    return ticket;
  }

  /** Grants every waiting request that may go now. */
  poll(now: number): PollResult {
    const granted: number[] = [];
    let holdMs = Infinity;
    for (;;) {
      if (this.#waiting === 0) return { granted, waitMs: null };
      if (!this.agent.ready(now)) break;
      let best: PeerState | null = null;
      let least = Infinity;
      for (const p of this.#peers.values()) {
        // A peer held by its own limit cannot use a turn: it does not hold the others back.
        if (this.competing(p, now) && p.bucket.ready(now)) least = Math.min(least, p.served);
        if (p.queue.length > 0 && p.bucket.ready(now) && (best === null || p.served < best.served)) best = p;
      }
      if (best === null) break;
      // Ahead of a peer that is between two asks: let that one catch up first (bounded by ACTIVE_MS).
      if (this.agent.rate > 0 && best.served > least + sliceFor(this.agent.rate)) {
        for (const p of this.#peers.values()) {
          if (p.queue.length === 0 && p.served < best.served && now - p.lastAsk < ACTIVE_MS && p.bucket.ready(now)) holdMs = Math.min(holdMs, p.lastAsk + ACTIVE_MS - now);
        }
        break;
      }
      const [ticket, bytes] = best.queue.shift()!;
      this.#waiting--;
      best.bucket.take(bytes, now);
      this.agent.take(bytes, now);
      best.served += bytes;
      granted.push(ticket);
    }
    let waitMs = holdMs;
    const agentWait = this.agent.msUntilReady(now);
    for (const p of this.#peers.values()) {
      if (p.queue.length > 0) waitMs = Math.min(waitMs, Math.max(agentWait, p.bucket.msUntilReady(now)));
    }
    return { granted, waitMs: Math.max(1, Math.ceil(waitMs)) };
  }

  private competing(p: PeerState, now: number): boolean {
    return p.queue.length > 0 || now - p.lastAsk < ACTIVE_MS;
  }

  get waiting(): number {
    return this.#waiting;
  }

  private peer(name: string, now: number): PeerState {
    let p = this.#peers.get(name);
    if (!p) {
      p = { bucket: new TokenBucket(0, now), queue: [], served: 0, lastAsk: -Infinity };
      this.#peers.set(name, p);
    }
    return p;
  }
}

/** Bytes per second over the last second, from counts added as they happen (slots of 100 ms). */
export class RateMeter {
  static readonly #N = 11; // the current, partial slot and the ten full ones before it
  readonly #slots = new Float64Array(RateMeter.#N);
  #slot = -1;
  total = 0;

  add(bytes: number, now: number): void {
    this.advance(now);
    const i = this.#slot % RateMeter.#N;
    this.#slots[i] = this.#slots[i]! + bytes;
    this.total += bytes;
  }

  /** Bytes per second over the last full second before `now`'s 100 ms slot. */
  rate(now: number): number {
    this.advance(now);
    let sum = 0;
    for (let i = 1; i < RateMeter.#N; i++) sum += this.#slots[(this.#slot - i + RateMeter.#N) % RateMeter.#N]!;
    return sum;
  }

  private advance(now: number): void {
    const s = Math.floor(now / 100);
    if (this.#slot < 0) this.#slot = s;
    if (s <= this.#slot) return;
    if (s - this.#slot >= RateMeter.#N) this.#slots.fill(0);
    else for (let i = this.#slot + 1; i <= s; i++) this.#slots[i % RateMeter.#N] = 0;
    this.#slot = s;
  }
}

/**
 * The adapter around limiter.ts: owns the clock, the one timer and the waiting promises,
 * and measures what actually goes out and comes in. One per agent; senders get a
 * per-peer handle (`forPeer`), receiving channels get `inbound`.
 *
 * With no limit set the cost is one comparison per chunk and one meter update: `take`
 * returns null (no promise, no timer) and senders keep their whole chunks.
 */
import { performance } from 'node:perf_hooks';
import { Limiter, RateMeter, TokenBucket } from './limiter.js';

/** What a sender needs: how big to slice, and permission per slice. */
export interface PeerPace {
  /** Bytes per slice (0: unlimited, send whole chunks). */
  slice(): number;
  /** null: go now; else a promise that resolves when these bytes may go. */
  take(bytes: number): Promise<void> | null;
  /** Count bytes actually handed to the socket (for the measured rate). */
  sent(bytes: number): void;
}

export interface LimitsSnapshot {
  /** Agent-wide outgoing limit, bytes/s (0 = unlimited) and measured outgoing rate. */
  outgoing: { maxBytesPerSecond: number; bytesPerSecond: number; bytesTotal: number };
  incoming: { maxBytesPerSecond: number; bytesPerSecond: number; bytesTotal: number };
  /** Every peer that has a limit or has been sent to. */
  peers: Array<{ name: string; maxBytesPerSecond: number; bytesPerSecond: number; bytesTotal: number }>;
}

export interface PacerOptions {
  outgoing: number;
  incoming: number;
  peers?: Record<string, number>;
  /** Milliseconds; tests may pass their own. */
  now?: () => number;
}

export class Pacer {
  readonly #now: () => number;
  readonly #limiter: Limiter;
  readonly #incoming: TokenBucket;
  readonly #waiters = new Map<number, () => void>();
  readonly #outMeter = new RateMeter();
  readonly #inMeter = new RateMeter();
  readonly #peerMeters = new Map<string, RateMeter>();
  #timer: NodeJS.Timeout | null = null;

  constructor(opts: PacerOptions) {
    this.#now = opts.now ?? (() => performance.now());
    const now = this.#now();
    this.#limiter = new Limiter(opts.outgoing, now);
    this.#incoming = new TokenBucket(opts.incoming, now);
    for (const [name, rate] of Object.entries(opts.peers ?? {})) this.#limiter.setPeerRate(name, rate, now);
  }

  forPeer(name: string): PeerPace {
    let meter = this.#peerMeters.get(name);
    if (!meter) this.#peerMeters.set(name, (meter = new RateMeter()));
    const m = meter;
    return {
      slice: () => this.#limiter.sliceBytes(name),
      take: (bytes) => this.take(name, bytes),
      sent: (bytes) => {
        const now = this.#now();
        m.add(bytes, now);
        this.#outMeter.add(bytes, now);
      },
    };
  }

  /** Bytes just read from a receiving socket: returns how long to stop reading, ms (0: go on). */
  readonly inbound = (bytes: number): number => {
    const now = this.#now();
    this.#inMeter.add(bytes, now);
    if (this.#incoming.rate === 0) return 0;
    this.#incoming.take(bytes, now);
    return this.#incoming.msUntilReady(now);
  };

  setOutgoing(rate: number): void {
    this.#limiter.setAgentRate(rate, this.#now());
    this.kick();
  }

  setIncoming(rate: number): void {
    this.#incoming.setRate(rate, this.#now());
  }

  setPeer(name: string, rate: number): void {
    this.#limiter.setPeerRate(name, rate, this.#now());
    this.kick();
  }

  snapshot(): LimitsSnapshot {
    const now = this.#now();
    const names = new Set([...this.#peerMeters.keys(), ...this.#limiter.peerRates().keys()]);
    return {
      outgoing: { maxBytesPerSecond: this.#limiter.agent.rate, bytesPerSecond: Math.round(this.#outMeter.rate(now)), bytesTotal: this.#outMeter.total },
      incoming: { maxBytesPerSecond: this.#incoming.rate, bytesPerSecond: Math.round(this.#inMeter.rate(now)), bytesTotal: this.#inMeter.total },
      peers: [...names].sort().map((name) => {
        const m = this.#peerMeters.get(name);
        return { name, maxBytesPerSecond: this.#limiter.peerRate(name), bytesPerSecond: m ? Math.round(m.rate(now)) : 0, bytesTotal: m?.total ?? 0 };
      }),
    };
  }

  /** Stop the timer and let every waiter go (shutdown: their connections are closing). */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const w = [...this.#waiters.values()];
    this.#waiters.clear();
    for (const f of w) f();
  }

  private take(peer: string, bytes: number): Promise<void> | null {
    if (!this.#limiter.limited(peer)) return null;
    const ticket = this.#limiter.request(peer, bytes, this.#now());
    if (ticket === 0) return null;
    const p = new Promise<void>((resolve) => this.#waiters.set(ticket, resolve));
    this.kick(true);
    return p;
  }

  /** Grant what may go now and arm the timer for the next grant. */
  private kick(onlyIfIdle = false): void {
    if (onlyIfIdle && this.#timer) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const { granted, waitMs } = this.#limiter.poll(this.#now());
    for (const t of granted) {
      const f = this.#waiters.get(t);
      this.#waiters.delete(t);
      f?.();
    }
    if (waitMs !== null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.kick();
      }, waitMs);
      this.#timer.unref();
    }
  }
}

import type { Cancel, Clock } from './clock.js';

/** Where a ProgressThrottle's trailing edge delivers the value it held, and the clock of its timers. */
export interface TrailingEdge<T> {
  clock: Clock;
  deliver: (id: string, value: T) => void;
}

interface Entry<T> {
  emitAt: number;
  rateAt: number;
  bytes: number;
  rate: number;
  /** The latest value offered inside the interval, delivered when it ends (trailing edge only). */
  pending: { value: T; cancel: Cancel } | null;
}

/**
 * Progress bookkeeping per id (agent jobs, incoming transfers, OSC progress messages, the
 * status API's event stream): an event at most every `intervalMs`, and a smoothed rate.
 *
 * Two ways to ask, one per throttle (never mixed for one id):
 * - leading edge only, `due(id, now)`: true at most once per interval; what comes in
 *   between is dropped (the next update after the interval goes out);
 * - with a `trailing` edge, `offer(id, value)`: delivered at once when due, else held, and
 *   the latest value held is delivered when the interval ends, so the last numbers of a
 *   burst always go out (one timer per id at most). `drop(id)` discards a held value (a
 *   state change supersedes it).
 */
export class ProgressThrottle<T = never> {
  private readonly last = new Map<string, Entry<T>>();
  constructor(
    private readonly intervalMs: number,
    private readonly trailing?: TrailingEdge<T>,
  ) {}

  private entry(id: string, now: number): Entry<T> {
    let e = this.last.get(id);
    if (!e) {
      e = { emitAt: 0, rateAt: now, bytes: 0, rate: 0, pending: null };
      this.last.set(id, e);
    }
    return e;
  }

  /** Bytes per second, smoothed over roughly the last second. */
  rate(id: string, bytes: number, now: number): number {
    const e = this.entry(id, now);
    const dt = now - e.rateAt;
    if (dt >= 250) {
      const inst = ((bytes - e.bytes) * 1000) / dt;
      e.rate = e.rate === 0 ? inst : e.rate * 0.5 + inst * 0.5;
      e.rateAt = now;
      e.bytes = bytes;
    }
    return Math.max(0, Math.round(e.rate));
  }

  due(id: string, now: number): boolean {
    const e = this.entry(id, now);
    if (now - e.emitAt < this.intervalMs) return false;
    e.emitAt = now;
    return true;
  }

  /** Trailing edge: `value` now if due, else the latest value offered goes out once the interval since the last one ends. */
  offer(id: string, value: T): void {
    if (!this.trailing) throw new Error('ProgressThrottle.offer needs a trailing edge (constructor option)');
    const { clock, deliver } = this.trailing;
    const now = clock.now();
    const e = this.entry(id, now);
    if (e.pending) {
      e.pending.value = value;
      return;
    }
    const wait = e.emitAt + this.intervalMs - now;
    if (wait <= 0) {
      e.emitAt = now;
      deliver(id, value);
      return;
    }
    const pending: { value: T; cancel: Cancel } = {
      value,
      cancel: clock.after(wait, () => {
        if (e.pending !== pending) return;
        e.pending = null;
        e.emitAt = clock.now();
        deliver(id, pending.value);
      }),
    };
    e.pending = pending;
  }

  /** Discards the value held for `id` (trailing edge), if any; its interval goes on. */
  drop(id: string): void {
    const e = this.last.get(id);
    if (!e?.pending) return;
    e.pending.cancel();
    e.pending = null;
  }

  forget(id: string): void {
    this.drop(id);
    this.last.delete(id);
  }

  clear(): void {
    for (const id of this.last.keys()) this.drop(id);
    this.last.clear();
  }
}
